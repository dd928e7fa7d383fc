/*
 * jobs_sqlite: the embedded jobs backend, one SQLite file in WAL mode with
 * synchronous=FULL (a job the gateway acknowledged survives power loss).
 *
 * One serialized connection shared by all threads; each operation holds
 * the connection's mutex from prepare to finalize, so sqlite3_changes()
 * belongs to its own statement. Guarded updates are single UPDATE
 * statements whose WHERE clause carries the allowed statuses: the
 * compare-and-set is the database's, not ours.
 */
#include "store/jobs.h"

#include "core/log.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct jsq {
    sqlite3 *db;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int map_rc(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return JOBS_OK;
    case SQLITE_CONSTRAINT:
        return JOBS_EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
        return JOBS_EUNAVAIL;
    default:
        return JOBS_EINTERNAL;
    }
}

static int fail(struct jsq *s, int rc, const char *op)
{
    if (rc != SQLITE_CONSTRAINT)
        log_error("jobs store: sqlite failed",
                  json_pack("{s:s, s:s}", "op", op, "detail", sqlite3_errmsg(s->db)));
    return map_rc(rc);
}

static void lock(struct jsq *s)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(s->db));
}

static void unlock(struct jsq *s)
{
    sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
}

#define COLUMNS                                                                                    \
    "id, owner, video_fid, mp3_fid, filename, options, request_id, status, progress, error, "      \
    "attempts, created_at, updated_at, notified_at, notify_error, duration, mp3_bytes"

static void text(char *dst, size_t len, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, len, "%s", v != NULL ? (const char *)v : "");
}

static void copy_row(sqlite3_stmt *st, struct job *j)
{
    memset(j, 0, sizeof(*j));
    text(j->id, sizeof(j->id), st, 0);
    text(j->owner, sizeof(j->owner), st, 1);
    text(j->video_fid, sizeof(j->video_fid), st, 2);
    text(j->mp3_fid, sizeof(j->mp3_fid), st, 3);
    text(j->filename, sizeof(j->filename), st, 4);
    text(j->options, sizeof(j->options), st, 5);
    text(j->request_id, sizeof(j->request_id), st, 6);
    j->status = (enum job_status)sqlite3_column_int(st, 7);
    j->progress = sqlite3_column_double(st, 8);
    text(j->error, sizeof(j->error), st, 9);
    j->attempts = sqlite3_column_int(st, 10);
    j->created_at = sqlite3_column_int64(st, 11);
    j->updated_at = sqlite3_column_int64(st, 12);
    j->notified_at = sqlite3_column_int64(st, 13);
    text(j->notify_error, sizeof(j->notify_error), st, 14);
    j->duration = sqlite3_column_double(st, 15);
    j->mp3_bytes = sqlite3_column_int64(st, 16);
}

static int migrate(struct jsq *s)
{
    static const char sql[] = "CREATE TABLE IF NOT EXISTS jobs ("
                              " id TEXT PRIMARY KEY,"
                              " owner TEXT NOT NULL,"
                              " video_fid TEXT NOT NULL,"
                              " mp3_fid TEXT NOT NULL DEFAULT '',"
                              " filename TEXT NOT NULL,"
                              " options TEXT NOT NULL DEFAULT '{}',"
                              " request_id TEXT NOT NULL DEFAULT '',"
                              " status INTEGER NOT NULL,"
                              " progress REAL NOT NULL DEFAULT 0,"
                              " error TEXT NOT NULL DEFAULT '',"
                              " attempts INTEGER NOT NULL DEFAULT 0,"
                              " created_at INTEGER NOT NULL,"
                              " updated_at INTEGER NOT NULL,"
                              " notified_at INTEGER NOT NULL DEFAULT 0,"
                              " notify_error TEXT NOT NULL DEFAULT '',"
                              " duration REAL NOT NULL DEFAULT -1,"
                              " mp3_bytes INTEGER NOT NULL DEFAULT -1,"
                              " notify_claim INTEGER NOT NULL DEFAULT 0);"
                              "CREATE INDEX IF NOT EXISTS jobs_owner_created"
                              " ON jobs (owner, created_at DESC, id DESC);"
                              "CREATE INDEX IF NOT EXISTS jobs_video ON jobs (video_fid);";
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "migrate");
    /* Columns added since the first release: a database made before them
     * gets them here, with the defaults above. */
    static const char *const added[][2] = {
        {"notify_error", "TEXT NOT NULL DEFAULT ''"},
        {"duration", "REAL NOT NULL DEFAULT -1"},
        {"mp3_bytes", "INTEGER NOT NULL DEFAULT -1"},
        {"notify_claim", "INTEGER NOT NULL DEFAULT 0"},
    };
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM pragma_table_info('jobs') WHERE name = ?1",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
            return fail(s, rc, "migrate");
        sqlite3_bind_text(st, 1, added[i][0], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_ROW)
            continue;
        if (rc != SQLITE_DONE)
            return fail(s, rc, "migrate");
        char alter[160];
        snprintf(alter, sizeof(alter), "ALTER TABLE jobs ADD COLUMN %s %s", added[i][0],
                 added[i][1]);
        rc = sqlite3_exec(s->db, alter, NULL, NULL, NULL);
        /* another process opening the same file may have added it first */
        if (rc != SQLITE_OK && strstr(sqlite3_errmsg(s->db), "duplicate column") == NULL)
            return fail(s, rc, "migrate");
    }
    return JOBS_OK;
}

static int js_create(void *h, const struct job *j)
{
    struct jsq *s = h;
    if (!blob_id_valid(j->id) || !blob_id_valid(j->video_fid) || j->owner[0] == '\0')
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO jobs (id, owner, video_fid, filename, options,"
                                " request_id, status, created_at, updated_at)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
                                -1, &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "create");
        goto out;
    }
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, j->video_fid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, j->filename, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, j->options[0] != '\0' ? j->options : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, j->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now_ms());
    rc = sqlite3_step(st);
    result = rc == SQLITE_DONE ? JOBS_OK : fail(s, rc, "create");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

/* Runs a one-row SELECT with one text parameter. */
static int select_one(struct jsq *s, const char *sql, const char *param, struct job *out,
                      const char *op)
{
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, op);
        goto out;
    }
    sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_row(st, out);
        result = JOBS_OK;
    } else {
        result = rc == SQLITE_DONE ? JOBS_ENOTFOUND : fail(s, rc, op);
    }
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_get(void *h, const char *id, struct job *out)
{
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    return select_one(h, "SELECT " COLUMNS " FROM jobs WHERE id = ?1", id, out, "get");
}

static int js_find_by_video(void *h, const char *video_fid, struct job *out)
{
    if (!blob_id_valid(video_fid))
        return JOBS_EINVAL;
    return select_one(h,
                      "SELECT " COLUMNS " FROM jobs WHERE video_fid = ?1"
                      " ORDER BY created_at DESC LIMIT 1",
                      video_fid, out, "find_by_video");
}

static int js_list(void *h, const char *owner, int64_t before_ms, const char *before_id, int limit,
                   jobs_list_fn fn, void *ctx)
{
    struct jsq *s = h;
    if (limit < 1 || limit > JOB_LIST_MAX ||
        (before_id != NULL && before_id[0] != '\0' && !blob_id_valid(before_id)))
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT " COLUMNS " FROM jobs WHERE owner = ?1 AND (created_at < ?2"
                                " OR (created_at = ?2 AND id < ?4))"
                                " ORDER BY created_at DESC, id DESC LIMIT ?3",
                                -1, &st, NULL);
    int result = JOBS_OK;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "list");
        goto out;
    }
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, before_ms > 0 ? before_ms : INT64_MAX);
    sqlite3_bind_int(st, 3, limit);
    sqlite3_bind_text(st, 4, before_ms > 0 && before_id != NULL ? before_id : "", -1,
                      SQLITE_STATIC);
    struct job j;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        copy_row(st, &j);
        if (fn(&j, ctx) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        result = fail(s, rc, "list");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

/* After an UPDATE that changed nothing: was the row missing or guarded? Locked. */
static int missing_or_conflict(struct jsq *s, const char *id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM jobs WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "exists");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return JOBS_ECONFLICT;
    return rc == SQLITE_DONE ? JOBS_ENOTFOUND : fail(s, rc, "exists");
}

/* Runs a prepared guarded UPDATE of job id: JOBS_OK when it changed the
 * row, else JOBS_ENOTFOUND or JOBS_ECONFLICT. Locked. */
static int step_guarded(struct jsq *s, sqlite3_stmt *st, const char *id, const char *op)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return fail(s, rc, op);
    return sqlite3_changes(s->db) > 0 ? JOBS_OK : missing_or_conflict(s, id);
}

static int js_update(void *h, const char *id, const struct job_update *u)
{
    struct jsq *s = h;
    if (!blob_id_valid(id) || job_update_check(u) != JOBS_OK)
        return JOBS_EINVAL;
    char sql[512], in[32] = "";
    size_t n = 0;
    for (int st = JOB_QUEUED; st <= JOB_FAILED; st++) {
        if (u->from & JOB_FROM(st))
            n += (size_t)snprintf(in + n, sizeof(in) - n, "%s%d", n > 0 ? "," : "", st);
    }
    snprintf(sql, sizeof(sql),
             "UPDATE jobs SET updated_at = ?2%s%s%s%s%s%s WHERE id = ?1 AND status IN (%s)%s",
             (u->set & JOB_SET_STATUS) ? ", status = ?3" : "",
             (u->set & JOB_SET_PROGRESS) ? ", progress = ?4" : "",
             (u->set & JOB_SET_MP3) ? ", mp3_fid = ?5" : "",
             (u->set & JOB_SET_ERROR) ? ", error = ?6" : "",
             (u->set & JOB_ADD_ATTEMPT) ? ", attempts = attempts + 1" : "",
             (u->set & JOB_SET_RESULT) ? ", duration = ?8, mp3_bytes = ?9" : "", in,
             u->if_mp3 != NULL ? " AND mp3_fid = ?7" : "");
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "update");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    if (u->set & JOB_SET_STATUS)
        sqlite3_bind_int(st, 3, (int)u->status);
    if (u->set & JOB_SET_PROGRESS)
        sqlite3_bind_double(st, 4, u->progress);
    if (u->set & JOB_SET_MP3)
        sqlite3_bind_text(st, 5, u->mp3_fid, -1, SQLITE_STATIC);
    if (u->set & JOB_SET_ERROR)
        sqlite3_bind_text(st, 6, u->error, -1, SQLITE_STATIC);
    if (u->if_mp3 != NULL)
        sqlite3_bind_text(st, 7, u->if_mp3, -1, SQLITE_STATIC);
    if (u->set & JOB_SET_RESULT) {
        sqlite3_bind_double(st, 8, u->duration < 0 ? -1.0 : u->duration);
        sqlite3_bind_int64(st, 9, u->mp3_bytes);
    }
    result = step_guarded(s, st, id, "update");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_mark_notified(void *h, const char *id, int64_t at_ms, const char *error)
{
    struct jsq *s = h;
    if (!blob_id_valid(id) || at_ms <= 0 || (error != NULL && strlen(error) > JOB_ERROR_MAX))
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db,
        "UPDATE jobs SET notified_at = ?2, notify_error = ?3 WHERE id = ?1 AND notified_at = 0", -1,
        &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "mark_notified");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, at_ms);
    sqlite3_bind_text(st, 3, error != NULL ? error : "", -1, SQLITE_STATIC);
    result = step_guarded(s, st, id, "mark_notified");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_claim_notify(void *h, const char *id, int64_t now, int64_t until)
{
    struct jsq *s = h;
    if (!blob_id_valid(id) || until <= now)
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "UPDATE jobs SET notify_claim = ?3"
                                " WHERE id = ?1 AND notified_at = 0 AND notify_claim <= ?2",
                                -1, &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "claim_notify");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, until);
    result = step_guarded(s, st, id, "claim_notify");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_release_notify(void *h, const char *id, int64_t until)
{
    struct jsq *s = h;
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db, "UPDATE jobs SET notify_claim = 0 WHERE id = ?1 AND notify_claim = ?2", -1, &st,
        NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "release_notify");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, until);
    result = step_guarded(s, st, id, "release_notify");
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_remove(void *h, const char *id)
{
    struct jsq *s = h;
    if (!blob_id_valid(id))
        return JOBS_EINVAL;
    lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "DELETE FROM jobs WHERE id = ?1", -1, &st, NULL);
    int result;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "remove");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        result = fail(s, rc, "remove");
    else
        result = sqlite3_changes(s->db) > 0 ? JOBS_OK : JOBS_ENOTFOUND;
out:
    sqlite3_finalize(st);
    unlock(s);
    return result;
}

static int js_ping(void *h)
{
    struct jsq *s = h;
    int rc = sqlite3_exec(s->db, "SELECT 1 FROM jobs LIMIT 1", NULL, NULL, NULL);
    return rc == SQLITE_OK ? JOBS_OK : map_rc(rc);
}

static void js_free(void *h)
{
    struct jsq *s = h;
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    free(s);
}

static const struct jobs_ops sqlite_ops = {
    .name = "sqlite",
    .create = js_create,
    .get = js_get,
    .find_by_video = js_find_by_video,
    .list = js_list,
    .update = js_update,
    .mark_notified = js_mark_notified,
    .claim_notify = js_claim_notify,
    .release_notify = js_release_notify,
    .remove = js_remove,
    .ping = js_ping,
    .free = js_free,
};

struct jobs *jobs_sqlite_new(const char *path, char *err, size_t errlen)
{
    struct jsq *s = calloc(1, sizeof(*s));
    struct jobs *j = calloc(1, sizeof(*j));
    if (s == NULL || j == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "jobs store: cannot open %s: %s", path,
                 s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        migrate(s) != JOBS_OK) {
        snprintf(err, errlen, "jobs store: cannot set up %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    j->ops = &sqlite_ops;
    j->h = s;
    return j;
fail:
    if (s != NULL)
        js_free(s);
    free(j);
    return NULL;
}
