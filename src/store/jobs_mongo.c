/*
 * jobs_mongo: the jobs backend on MongoDB, collection "jobs" in database
 * "videos" (DESIGN §2), through a libmongoc client pool (thread-safe).
 *
 * Documents: _id ObjectId, owner, video_fid, mp3_fid, filename, options,
 * request_id, status (its name), progress, error, attempts, created_at,
 * updated_at (BSON dates), notified_at (int64 ms, 0 until notified),
 * notify_error, duration (double seconds) and mp3_bytes (int64; both -1
 * until done; documents written before them read as -1), notify_claim
 * (int64 ms: a notifier is sending until then).
 * Guarded updates are one update_one whose filter carries the allowed
 * statuses, so the compare-and-set is the server's. Indexes on
 * {owner, created_at} and {video_fid} are created with the first call that
 * reaches the server. A server that is down answers JOBS_EUNAVAIL within
 * the server-selection timeout, and the next call reconnects by itself.
 */
#include "store/jobs.h"

#include "core/log.h"
#include "store/mongo.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB "videos"
#define COLLECTION "jobs"

struct jm {
    mongoc_client_pool_t *pool;
    atomic_bool indexed;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int map_error(const bson_error_t *e, const char *op)
{
    if (mongo_error_duplicate(e))
        return JOBS_EEXIST;
    if (mongo_error_unavailable(e)) {
        log_warn("jobs store: mongodb unavailable",
                 json_pack("{s:s, s:s}", "op", op, "detail", e->message));
        return JOBS_EUNAVAIL;
    }
    log_error("jobs store: mongodb failed",
              json_pack("{s:s, s:i, s:i, s:s}", "op", op, "domain", (int)e->domain, "code",
                        (int)e->code, "detail", e->message));
    return JOBS_EINTERNAL;
}

/* A pooled client and the collection; release with put(). */
static mongoc_collection_t *take(struct jm *m, mongoc_client_t **client)
{
    *client = mongoc_client_pool_pop(m->pool);
    return mongoc_client_get_collection(*client, DB, COLLECTION);
}

static void put(struct jm *m, mongoc_client_t *client, mongoc_collection_t *coll)
{
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(m->pool, client);
}

/* Creates the indexes once; a failure is retried on the next call. */
static void ensure_indexes(struct jm *m, mongoc_collection_t *coll)
{
    if (atomic_load(&m->indexed))
        return;
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(COLLECTION), "indexes", "[", "{", "key", "{",
                           "owner", BCON_INT32(1), "created_at", BCON_INT32(-1), "}", "name",
                           BCON_UTF8("owner_created"), "}", "{", "key", "{", "video_fid",
                           BCON_INT32(1), "}", "name", BCON_UTF8("video_fid"), "}", "]");
    bson_error_t e;
    if (mongoc_collection_write_command_with_opts(coll, cmd, NULL, NULL, &e))
        atomic_store(&m->indexed, true);
    bson_destroy(cmd);
}

static void copy_str(char *dst, size_t len, const bson_t *doc, const char *key)
{
    bson_iter_t it;
    dst[0] = '\0';
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(dst, len, "%s", bson_iter_utf8(&it, NULL));
}

static int64_t get_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key))
        return 0;
    if (BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : 0;
}

static void doc_to_job(const bson_t *doc, struct job *j)
{
    memset(j, 0, sizeof(*j));
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
        bson_oid_to_string(bson_iter_oid(&it), j->id);
    copy_str(j->owner, sizeof(j->owner), doc, "owner");
    copy_str(j->video_fid, sizeof(j->video_fid), doc, "video_fid");
    copy_str(j->mp3_fid, sizeof(j->mp3_fid), doc, "mp3_fid");
    copy_str(j->filename, sizeof(j->filename), doc, "filename");
    copy_str(j->options, sizeof(j->options), doc, "options");
    copy_str(j->request_id, sizeof(j->request_id), doc, "request_id");
    copy_str(j->error, sizeof(j->error), doc, "error");
    char status[16];
    copy_str(status, sizeof(status), doc, "status");
    enum job_status s = JOB_QUEUED;
    job_status_parse(status, &s);
    j->status = s;
    if (bson_iter_init_find(&it, doc, "progress") && BSON_ITER_HOLDS_NUMBER(&it))
        j->progress = bson_iter_as_double(&it);
    j->attempts = (int)get_i64(doc, "attempts");
    j->created_at = get_i64(doc, "created_at");
    j->updated_at = get_i64(doc, "updated_at");
    j->notified_at = get_i64(doc, "notified_at");
    copy_str(j->notify_error, sizeof(j->notify_error), doc, "notify_error");
    /* documents written before these fields existed: unknown */
    j->duration = -1;
    j->mp3_bytes = -1;
    if (bson_iter_init_find(&it, doc, "duration") && BSON_ITER_HOLDS_NUMBER(&it))
        j->duration = bson_iter_as_double(&it);
    if (bson_iter_init_find(&it, doc, "mp3_bytes") && BSON_ITER_HOLDS_NUMBER(&it))
        j->mp3_bytes = bson_iter_as_int64(&it);
}

static int jm_create(void *h, const struct job *j)
{
    struct jm *m = h;
    if (!blob_id_valid(j->id) || !blob_id_valid(j->video_fid) || j->owner[0] == '\0')
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, j->id);
    int64_t now = now_ms();
    bson_t *doc = BCON_NEW(
        "_id", BCON_OID(&oid), "owner", BCON_UTF8(j->owner), "video_fid", BCON_UTF8(j->video_fid),
        "mp3_fid", BCON_UTF8(""), "filename", BCON_UTF8(j->filename), "options",
        BCON_UTF8(j->options[0] != '\0' ? j->options : "{}"), "request_id",
        BCON_UTF8(j->request_id), "status", BCON_UTF8("queued"), "progress", BCON_DOUBLE(0.0),
        "error", BCON_UTF8(""), "attempts", BCON_INT32(0), "created_at", BCON_DATE_TIME(now),
        "updated_at", BCON_DATE_TIME(now), "notified_at", BCON_INT64(0), "notify_error",
        BCON_UTF8(""), "duration", BCON_DOUBLE(-1.0), "mp3_bytes", BCON_INT64(-1), "notify_claim",
        BCON_INT64(0));
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    ensure_indexes(m, coll);
    bson_error_t e;
    int rc =
        mongoc_collection_insert_one(coll, doc, NULL, NULL, &e) ? JOBS_OK : map_error(&e, "create");
    put(m, client, coll);
    bson_destroy(doc);
    return rc;
}

/* Finds one document by filter (sorted when sort is not NULL). */
static int find_one(struct jm *m, const bson_t *filter, const bson_t *sort, struct job *out,
                    const char *op)
{
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (sort != NULL)
        BSON_APPEND_DOCUMENT(&opts, "sort", sort);
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
    const bson_t *doc;
    int rc = JOBS_ENOTFOUND;
    if (mongoc_cursor_next(cur, &doc)) {
        doc_to_job(doc, out);
        rc = JOBS_OK;
    }
    bson_error_t e;
    if (rc != JOBS_OK && mongoc_cursor_error(cur, &e))
        rc = map_error(&e, op);
    mongoc_cursor_destroy(cur);
    put(m, client, coll);
    bson_destroy(&opts);
    return rc;
}

static int jm_get(void *h, const char *id, struct job *out)
{
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
    int rc = find_one(h, filter, NULL, out, "get");
    bson_destroy(filter);
    return rc;
}

static int jm_find_by_video(void *h, const char *video_fid, struct job *out)
{
    if (!blob_id_valid(video_fid))
        return JOBS_EINVAL;
    bson_t *filter = BCON_NEW("video_fid", BCON_UTF8(video_fid));
    bson_t *sort = BCON_NEW("created_at", BCON_INT32(-1));
    int rc = find_one(h, filter, sort, out, "find_by_video");
    bson_destroy(filter);
    bson_destroy(sort);
    return rc;
}

static int jm_list(void *h, const char *owner, int64_t before_ms, const char *before_id, int limit,
                   jobs_list_fn fn, void *ctx)
{
    struct jm *m = h;
    if (limit < 1 || limit > JOB_LIST_MAX)
        return JOBS_EINVAL;
    if (before_id != NULL && before_id[0] != '\0' && !blob_id_valid(before_id))
        return JOBS_EINVAL;
    bson_t *filter;
    if (before_ms > 0 && before_id != NULL && before_id[0] != '\0') {
        bson_oid_t oid;
        bson_oid_init_from_string(&oid, before_id);
        filter =
            BCON_NEW("owner", BCON_UTF8(owner), "$or", "[", "{", "created_at", "{", "$lt",
                     BCON_DATE_TIME(before_ms), "}", "}", "{", "created_at",
                     BCON_DATE_TIME(before_ms), "_id", "{", "$lt", BCON_OID(&oid), "}", "}", "]");
    } else if (before_ms > 0) {
        filter = BCON_NEW("owner", BCON_UTF8(owner), "created_at", "{", "$lt",
                          BCON_DATE_TIME(before_ms), "}");
    } else {
        filter = BCON_NEW("owner", BCON_UTF8(owner));
    }
    bson_t *opts = BCON_NEW("sort", "{", "created_at", BCON_INT32(-1), "_id", BCON_INT32(-1), "}",
                            "limit", BCON_INT64(limit), "batchSize", BCON_INT32(limit));
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    struct job j;
    while (mongoc_cursor_next(cur, &doc)) {
        doc_to_job(doc, &j);
        if (fn(&j, ctx) != 0)
            break;
    }
    bson_error_t e;
    int rc = mongoc_cursor_error(cur, &e) ? map_error(&e, "list") : JOBS_OK;
    mongoc_cursor_destroy(cur);
    put(m, client, coll);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

/* Runs update_one; on no match tells a missing job from a guarded one. */
static int guarded_update(struct jm *m, const char *id, const bson_t *filter, const bson_t *update,
                          const char *op)
{
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    bson_t reply;
    bson_error_t e;
    int rc = JOBS_OK;
    int64_t matched = -1;
    if (!mongoc_collection_update_one(coll, filter, update, NULL, &reply, &e)) {
        rc = map_error(&e, op);
    } else {
        bson_iter_t it;
        matched = bson_iter_init_find(&it, &reply, "matchedCount") ? bson_iter_as_int64(&it) : 0;
    }
    bson_destroy(&reply);
    put(m, client, coll);
    if (rc == JOBS_OK && matched == 0) {
        struct job j;
        rc = jm_get(m, id, &j);
        rc = rc == JOBS_OK ? JOBS_ECONFLICT : rc;
    }
    return rc;
}

static int jm_update(void *h, const char *id, const struct job_update *u)
{
    struct jm *m = h;
    if (!blob_id_valid(id) || job_update_check(u) != JOBS_OK)
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t filter = BSON_INITIALIZER, in;
    BSON_APPEND_OID(&filter, "_id", &oid);
    bson_t status_doc;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "status", &status_doc);
    BSON_APPEND_ARRAY_BEGIN(&status_doc, "$in", &in);
    int k = 0;
    for (int st = JOB_QUEUED; st <= JOB_FAILED; st++) {
        if (u->from & JOB_FROM(st)) {
            char key[12];
            snprintf(key, sizeof(key), "%d", k++);
            BSON_APPEND_UTF8(&in, key, job_status_name((enum job_status)st));
        }
    }
    bson_append_array_end(&status_doc, &in);
    bson_append_document_end(&filter, &status_doc);
    if (u->if_mp3 != NULL)
        BSON_APPEND_UTF8(&filter, "mp3_fid", u->if_mp3);

    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_DATE_TIME(&set, "updated_at", now_ms());
    if (u->set & JOB_SET_STATUS)
        BSON_APPEND_UTF8(&set, "status", job_status_name(u->status));
    if (u->set & JOB_SET_PROGRESS)
        BSON_APPEND_DOUBLE(&set, "progress", u->progress);
    if (u->set & JOB_SET_MP3)
        BSON_APPEND_UTF8(&set, "mp3_fid", u->mp3_fid);
    if (u->set & JOB_SET_ERROR)
        BSON_APPEND_UTF8(&set, "error", u->error);
    if (u->set & JOB_SET_RESULT) {
        BSON_APPEND_DOUBLE(&set, "duration", u->duration < 0 ? -1.0 : u->duration);
        BSON_APPEND_INT64(&set, "mp3_bytes", u->mp3_bytes);
    }
    bson_append_document_end(&update, &set);
    if (u->set & JOB_ADD_ATTEMPT) {
        bson_t inc;
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
        BSON_APPEND_INT32(&inc, "attempts", 1);
        bson_append_document_end(&update, &inc);
    }
    int rc = guarded_update(m, id, &filter, &update, "update");
    bson_destroy(&filter);
    bson_destroy(&update);
    return rc;
}

static int jm_mark_notified(void *h, const char *id, int64_t at_ms, const char *error)
{
    if (!blob_id_valid(id) || at_ms <= 0 || (error != NULL && strlen(error) > JOB_ERROR_MAX))
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "notified_at", BCON_INT64(0));
    bson_t *update = BCON_NEW("$set", "{", "notified_at", BCON_INT64(at_ms), "notify_error",
                              BCON_UTF8(error != NULL ? error : ""), "}");
    int rc = guarded_update(h, id, filter, update, "mark_notified");
    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}

static int jm_claim_notify(void *h, const char *id, int64_t now, int64_t until)
{
    if (!blob_id_valid(id) || until <= now)
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    /* documents written before notify_claim existed have none: free */
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "notified_at", BCON_INT64(0), "$or", "[", "{",
                              "notify_claim", "{", "$lte", BCON_INT64(now), "}", "}", "{",
                              "notify_claim", "{", "$exists", BCON_BOOL(false), "}", "}", "]");
    bson_t *update = BCON_NEW("$set", "{", "notify_claim", BCON_INT64(until), "}");
    int rc = guarded_update(h, id, filter, update, "claim_notify");
    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}

static int jm_release_notify(void *h, const char *id, int64_t until)
{
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "notify_claim", BCON_INT64(until));
    bson_t *update = BCON_NEW("$set", "{", "notify_claim", BCON_INT64(0), "}");
    int rc = guarded_update(h, id, filter, update, "release_notify");
    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}

static int jm_remove(void *h, const char *id)
{
    struct jm *m = h;
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    bson_t reply;
    bson_error_t e;
    int rc;
    if (!mongoc_collection_delete_one(coll, filter, NULL, &reply, &e)) {
        rc = map_error(&e, "remove");
    } else {
        bson_iter_t it;
        rc = bson_iter_init_find(&it, &reply, "deletedCount") && bson_iter_as_int64(&it) > 0
                 ? JOBS_OK
                 : JOBS_ENOTFOUND;
    }
    bson_destroy(&reply);
    put(m, client, coll);
    bson_destroy(filter);
    return rc;
}

/* Also creates the indexes when they are not yet (so `vid2mp3 migrate` and
 * readiness checks leave the collection ready). */
static int jm_ping(void *h)
{
    struct jm *m = h;
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(m, &client);
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t e;
    bool ok = mongoc_client_command_simple(client, DB, cmd, NULL, NULL, &e);
    if (ok)
        ensure_indexes(m, coll);
    bson_destroy(cmd);
    put(m, client, coll);
    return ok ? JOBS_OK : map_error(&e, "ping");
}

static void jm_free(void *h)
{
    struct jm *m = h;
    if (m == NULL)
        return;
    if (m->pool != NULL)
        mongoc_client_pool_destroy(m->pool);
    free(m);
}

static const struct jobs_ops mongo_ops = {
    .name = "mongo",
    .create = jm_create,
    .get = jm_get,
    .find_by_video = jm_find_by_video,
    .list = jm_list,
    .update = jm_update,
    .mark_notified = jm_mark_notified,
    .claim_notify = jm_claim_notify,
    .release_notify = jm_release_notify,
    .remove = jm_remove,
    .ping = jm_ping,
    .free = jm_free,
};

struct jobs *jobs_mongo_new(const char *uri, char *err, size_t errlen)
{
    struct jm *m = calloc(1, sizeof(*m));
    struct jobs *j = calloc(1, sizeof(*j));
    if (m == NULL || j == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    m->pool = mongo_pool_new(uri, err, errlen);
    if (m->pool == NULL)
        goto fail;
    j->ops = &mongo_ops;
    j->h = m;
    return j;
fail:
    jm_free(m);
    free(j);
    return NULL;
}
