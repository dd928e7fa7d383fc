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
    char last_id[BLOB_ID_LEN + 1];
    int n;
};

static int add_job(const struct job *j, void *ctx)
{
    struct page *p = ctx;
    json_array_append_new(p->jobs, gw_job_json(j));
    p->last_created = j->created_at;
    memcpy(p->last_id, j->id, sizeof(p->last_id));
    p->n++;
    return 0;
}

/* A whole decimal number in lo..hi, or -1. */
static long long query_num(const char *s, long long lo, long long hi)
{
    if (s == NULL || s[0] < '0' || s[0] > '9' || strlen(s) > 18)
        return -1;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v >= lo && v <= hi ? v : -1;
}

/* A page cursor "MS.ID" (the last job's creation time and id). */
static int parse_cursor(const char *s, int64_t *ms, char id[BLOB_ID_LEN + 1])
{
    const char *dot = strchr(s, '.');
    char num[24];
    if (dot == NULL || (size_t)(dot - s) >= sizeof(num) || !blob_id_valid(dot + 1))
        return -1;
    memcpy(num, s, (size_t)(dot - s));
    num[dot - s] = '\0';
    long long v = query_num(num, 1, INT64_MAX);
    if (v < 0)
        return -1;
    *ms = (int64_t)v;
    memcpy(id, dot + 1, BLOB_ID_LEN + 1);
    return 0;
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
    int64_t before = 0;
    char before_id[BLOB_ID_LEN + 1] = "";
    if (limit < 0) {
        http_reply_error(req, 400, "invalid_limit", "limit must be a whole number from 1 to 100");
        return;
    }
    if (before_s != NULL && parse_cursor(before_s, &before, before_id) != 0) {
        http_reply_error(req, 400, "invalid_cursor",
                         "before must be the next_before value of a previous page");
        return;
    }
    struct page p = {.jobs = json_array()};
    int rc = jobs_list(gw->jobs, who.sub, before, before_id, (int)limit, add_job, &p);
    if (rc != JOBS_OK) {
        json_decref(p.jobs);
        gw_reply_jobs_error(req, rc);
        return;
    }
    char cursor[48];
    snprintf(cursor, sizeof(cursor), "%lld.%s", (long long)p.last_created, p.last_id);
    json_t *next = p.n == limit ? json_string(cursor) : json_null();
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
