/*
 * jobs_api: GET /jobs (the caller's jobs, newest first, a page at a time)
 * and GET /jobs/ID (one job; someone else's does not exist for the caller
 * unless the caller is an administrator).
 */
#include "gateway/gw.h"

#include <stdlib.h>
#include <string.h>

#define PAGE_DEFAULT 20

struct page {
    json_t *jobs;
    int64_t last_created;
    int n;
};

static int add_job(const struct job *j, void *ctx)
{
    struct page *p = ctx;
    json_array_append_new(p->jobs, gw_job_json(j));
    p->last_created = j->created_at;
    p->n++;
    return 0;
}

/* A whole decimal number in lo..hi, or -1. */
static long long query_num(const char *s, long long lo, long long hi)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v >= lo && v <= hi ? v : -1;
}

void gw_handle_jobs(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    struct token_claims who;
    if (gw_caller(gw, req, &who) != 0)
        return;
    const char *limit_s = http_req_query(req, "limit");
    const char *before_s = http_req_query(req, "before");
    long long limit = limit_s != NULL ? query_num(limit_s, 1, JOB_LIST_MAX) : PAGE_DEFAULT;
    long long before = before_s != NULL ? query_num(before_s, 1, INT64_MAX) : 0;
    if (limit < 0) {
        http_reply_error(req, 400, "invalid_limit", "limit must be a whole number from 1 to 100");
        return;
    }
    if (before < 0) {
        http_reply_error(req, 400, "invalid_cursor",
                         "before must be the next_before value of a previous page");
        return;
    }
    struct page p = {.jobs = json_array()};
    int rc = jobs_list(gw->jobs, who.sub, (int64_t)before, (int)limit, add_job, &p);
    if (rc != JOBS_OK) {
        json_decref(p.jobs);
        gw_reply_jobs_error(req, rc);
        return;
    }
    json_t *next = p.n == limit ? json_integer((json_int_t)p.last_created) : json_null();
    http_reply_json(req, 200, json_pack("{s:o, s:o}", "jobs", p.jobs, "next_before", next));
}

void gw_handle_job(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    struct token_claims who;
    if (gw_caller(gw, req, &who) != 0)
        return;
    const char *id = http_req_param(req, "id");
    if (id == NULL || !blob_id_valid(id)) {
        http_reply_error(req, 400, "invalid_job_id", "a job id is 24 lower-case hex digits");
        return;
    }
    struct job j;
    int rc = jobs_get(gw->jobs, id, &j);
    if (rc == JOBS_ENOTFOUND || (rc == JOBS_OK && !who.admin && strcmp(j.owner, who.sub) != 0)) {
        http_reply_error(req, 404, "not_found", "no such job");
        return;
    }
    if (rc != JOBS_OK) {
        gw_reply_jobs_error(req, rc);
        return;
    }
    http_reply_json(req, 200, gw_job_json(&j));
}
