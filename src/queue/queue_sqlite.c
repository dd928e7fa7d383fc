/*
 * queue_sqlite: the embedded queue backend, one SQLite file in WAL mode.
 *
 * A message is a row of `messages`. Taking it (BEGIN IMMEDIATE, so two
 * processes never take the same row) counts the attempt and leases the row:
 * visible_at moves lease_ms ahead and `lease` gets a random token. While the
 * handler runs, its consumer's renewer thread keeps pushing visible_at
 * ahead; if the consumer dies, nobody renews, the lease runs out and the row
 * is visible again. A verdict is applied only while the row still carries
 * the delivery's token, so a consumer whose lease ran out (stalled for
 * longer than lease_ms) cannot ack a delivery that now belongs to another.
 * A retry clears the lease and sets visible_at to the retry time. Dead
 * letters move, in one transaction, to the `dead` table.
 *
 * One connection per handle, used under the handle's mutex one transaction
 * at a time; several processes sharing the file each have their own and
 * meet in SQLite's locks (busy_timeout). Consumers in this process are
 * woken at once by a publish through a condition variable; publishes from
 * other processes are seen by polling every POLL_MS.
 *
 * A publish commits with synchronous=FULL: once it returned, it survives
 * power loss. Takes, verdicts and lease renewals commit with NORMAL (no
 * fsync of their own): in WAL mode a power loss can only roll back the
 * latest of them, which redelivers a message, as at-least-once allows, and
 * the next FULL commit syncs them all. That halves the fsyncs per message.
 * Times are wall-clock milliseconds because processes compare them.
 */
#include "queue/queue.h"

#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 200           /* longest wait before looking for other processes' publishes */
#define ERROR_BACKOFF_MS 1000 /* wait after a failed take */
#define REQUEST_ID_MAX 128    /* longer request ids are refused (QUEUE_EINVAL) */

struct sq {
    sqlite3 *db;
    struct queue_settings set;
    pthread_mutex_t db_lock; /* one transaction at a time on db */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC; broadcast on publish and on stop */
    unsigned long seq;   /* publishes by this handle, under wake_lock */
    bool sync_full;      /* the connection's synchronous setting, under db_lock */
};

/* A message taken by a worker. */
struct taken {
    sqlite3_int64 id;
    sqlite3_int64 lease;
    int attempt;
    char *body; /* malloc'd, len + 1 bytes, NUL-terminated for convenience */
    size_t len;
    char request_id[REQUEST_ID_MAX + 1];
};

struct slot {
    sqlite3_int64 id, lease; /* id 0: idle */
};

struct sq_consumer {
    struct queue_consumer base; /* first: queue.h casts to it */
    struct sq *s;
    char queue[QUEUE_NAME_MAX + 1];
    queue_handler_fn fn;
    void *ctx;
    int n;
    pthread_t *workers;
    struct worker_arg *args; /* one per worker: its consumer and slot */
    int started;
    pthread_t renewer;
    bool renewer_started;
    pthread_mutex_t slots_lock;
    struct slot *slots;    /* n; the deliveries whose leases the renewer keeps alive */
    bool stopping;         /* under s->wake_lock */
    bool renewer_stopping; /* set after the workers are joined; under s->wake_lock */
};

struct worker_arg {
    struct sq_consumer *c;
    int i;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
        return QUEUE_EUNAVAIL;
    default:
        return QUEUE_EINTERNAL;
    }
}

static int fail(struct sq *s, int rc, const char *what)
{
    log_error("queue: sqlite failed",
              json_pack("{s:s, s:s}", "op", what, "detail", sqlite3_errmsg(s->db)));
    return map_rc(rc);
}

static int exec(struct sq *s, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? QUEUE_OK : fail(s, rc, what);
}

/* Sets synchronous=FULL or NORMAL for the next commits (db_lock held). */
static void set_sync(struct sq *s, bool full)
{
    if (s->sync_full == full)
        return;
    if (sqlite3_exec(s->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                     NULL, NULL) == SQLITE_OK)
        s->sync_full = full;
}

static sqlite3_int64 new_lease(void)
{
    sqlite3_int64 v = 0;
    while (v <= 0) {
        sqlite3_randomness(sizeof(v), &v);
        v &= INT64_MAX;
    }
    return v;
}

/* ---------- statements, each called with db_lock held ---------- */

/*
 * Moves row id (still holding lease) to the dead table. Returns QUEUE_OK,
 * 1 when the row no longer carries that lease (nothing moved), or an error.
 */
static int move_dead_locked(struct sq *s, sqlite3_int64 id, sqlite3_int64 lease, const char *reason)
{
    sqlite3_stmt *st = NULL;
    int result = QUEUE_OK;
    int rc =
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO dead (queue, body, request_id, attempts, reason, dead_at)"
                           " SELECT queue, body, request_id, attempt, ?3, ?4 FROM messages"
                           " WHERE id = ?1 AND lease = ?2",
                           -1, &st, NULL);
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "dead-letter");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, lease);
    sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms());
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        result = fail(s, rc, "dead-letter");
        goto out;
    }
    if (sqlite3_changes(s->db) == 0) {
        result = 1;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = sqlite3_prepare_v2(s->db, "DELETE FROM messages WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "dead-letter");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        result = fail(s, rc, "dead-letter");
out:
    sqlite3_finalize(st);
    return result;
}

/* Runs an UPDATE or DELETE on (id, lease) with an optional time; 1 when no row matched. */
static int change_locked(struct sq *s, const char *sql, sqlite3_int64 id, sqlite3_int64 lease,
                         long long t, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, what);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, lease);
    if (sqlite3_bind_parameter_count(st) >= 3)
        sqlite3_bind_int64(st, 3, t);
    rc = sqlite3_step(st);
    int result = QUEUE_OK;
    if (rc != SQLITE_DONE)
        result = fail(s, rc, what);
    else if (sqlite3_changes(s->db) == 0)
        result = 1;
    sqlite3_finalize(st);
    return result;
}

/*
 * Inside an open transaction: leases the oldest visible message of queue
 * into t. Returns 1 when one was taken, 0 when none is visible (then
 * *next_ms is the earliest time one may become visible, or -1), or an
 * error. Messages whose earlier deliveries all died with their consumers
 * (attempts used up without a verdict) are dead-lettered here instead.
 */
static int take_in_tx(struct sq *s, const char *queue, struct taken *t, long long *next_ms)
{
    sqlite3_stmt *st = NULL;
    int result = 0;
    long long now = now_ms();
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, lease, attempt, body, request_id FROM messages"
                                " WHERE queue = ?1 AND visible_at <= ?2"
                                " ORDER BY visible_at, id LIMIT 1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "take");
    for (int tries = 0; tries < 32; tries++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            result = fail(s, rc, "take");
            goto out;
        }
        sqlite3_int64 id = sqlite3_column_int64(st, 0);
        sqlite3_int64 old_lease = sqlite3_column_int64(st, 1);
        int attempt = sqlite3_column_int(st, 2);
        if (attempt >= s->set.max_attempts) {
            sqlite3_reset(st);
            rc = move_dead_locked(s, id, old_lease, "consumer lost too often");
            if (rc < 0) {
                result = rc;
                goto out;
            }
            log_warn("queue: message dead-lettered after its consumers died",
                     json_pack("{s:s, s:I, s:i}", "queue", queue, "id", (json_int_t)id, "attempts",
                               attempt));
            continue;
        }
        const void *body = sqlite3_column_blob(st, 3);
        int len = sqlite3_column_bytes(st, 3);
        t->body = malloc((size_t)len + 1);
        if (t->body == NULL) {
            result = QUEUE_EINTERNAL;
            goto out;
        }
        if (len > 0)
            memcpy(t->body, body, (size_t)len);
        t->body[len] = '\0';
        t->len = (size_t)len;
        const unsigned char *rid = sqlite3_column_text(st, 4);
        snprintf(t->request_id, sizeof(t->request_id), "%s", rid != NULL ? (const char *)rid : "");
        t->id = id;
        t->lease = new_lease();
        t->attempt = attempt + 1;
        sqlite3_reset(st);
        rc = change_locked(s,
                           "UPDATE messages SET attempt = attempt + 1, lease = ?2,"
                           " visible_at = ?3 WHERE id = ?1",
                           id, t->lease, now + s->set.lease_ms, "take");
        if (rc != QUEUE_OK) {
            free(t->body);
            t->body = NULL;
            result = rc < 0 ? rc : QUEUE_EINTERNAL;
            goto out;
        }
        result = 1;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    *next_ms = -1;
    rc = sqlite3_prepare_v2(s->db, "SELECT MIN(visible_at) FROM messages WHERE queue = ?1", -1, &st,
                            NULL);
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "take");
        goto out;
    }
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *next_ms = sqlite3_column_int64(st, 0);
out:
    sqlite3_finalize(st);
    return result;
}

/* take_in_tx() in its own BEGIN IMMEDIATE .. COMMIT under db_lock. */
static int take(struct sq *s, const char *queue, struct taken *t, long long *next_ms)
{
    pthread_mutex_lock(&s->db_lock);
    set_sync(s, false);
    int rc = exec(s, "BEGIN IMMEDIATE", "take");
    if (rc != QUEUE_OK)
        goto out;
    rc = take_in_tx(s, queue, t, next_ms);
    if (rc >= 0) {
        int c = exec(s, "COMMIT", "take");
        if (c != QUEUE_OK) {
            if (rc == 1) {
                free(t->body);
                t->body = NULL;
            }
            rc = c;
        }
    }
    if (rc < 0)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&s->db_lock);
    return rc;
}

static const char *verdict_name(enum queue_verdict v)
{
    return v == QUEUE_ACK       ? "ack"
           : v == QUEUE_RETRY   ? "retry"
           : v == QUEUE_RELEASE ? "release"
                                : "reject";
}

/* Applies a handler's verdict. A delivery whose lease was lost is left to
 * whoever holds it now. Failures are logged: the lease then runs out and
 * the message comes again, which at-least-once allows. */
static void apply_verdict(struct sq *s, const char *queue, const struct taken *t,
                          enum queue_verdict v)
{
    int rc;
    pthread_mutex_lock(&s->db_lock);
    set_sync(s, false);
    if (v == QUEUE_ACK) {
        rc = change_locked(s, "DELETE FROM messages WHERE id = ?1 AND lease = ?2", t->id, t->lease,
                           0, "ack");
    } else if (v == QUEUE_RELEASE) { /* visible now, this delivery uncounted */
        rc = change_locked(s,
                           "UPDATE messages SET lease = 0, visible_at = ?3,"
                           " attempt = MAX(attempt - 1, 0) WHERE id = ?1 AND lease = ?2",
                           t->id, t->lease, now_ms(), "release");
    } else if (v == QUEUE_RETRY && t->attempt < s->set.max_attempts) {
        long long at = now_ms() + queue_retry_delay_ms(&s->set, t->attempt);
        rc = change_locked(s,
                           "UPDATE messages SET lease = 0, visible_at = ?3"
                           " WHERE id = ?1 AND lease = ?2",
                           t->id, t->lease, at, "retry");
    } else {
        rc = exec(s, "BEGIN IMMEDIATE", "dead-letter");
        if (rc == QUEUE_OK) {
            rc = move_dead_locked(s, t->id, t->lease,
                                  v == QUEUE_REJECT ? "rejected" : "attempts exhausted");
            if (rc >= 0) {
                int c = exec(s, "COMMIT", "dead-letter");
                rc = c != QUEUE_OK ? c : rc;
            }
            if (rc < 0)
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    pthread_mutex_unlock(&s->db_lock);
    if (rc == 1)
        log_warn("queue: verdict dropped, the message's lease was lost",
                 json_pack("{s:s, s:s, s:I}", "queue", queue, "verdict", verdict_name(v), "id",
                           (json_int_t)t->id));
    else if (rc < 0)
        log_warn("queue: verdict not stored, the message will come again",
                 json_pack("{s:s, s:s, s:s}", "queue", queue, "verdict", verdict_name(v), "error",
                           queue_strerror(rc)));
    else if (v == QUEUE_REJECT || (v == QUEUE_RETRY && t->attempt >= s->set.max_attempts))
        log_warn("queue: message dead-lettered",
                 json_pack("{s:s, s:s, s:i}", "queue", queue, "reason", verdict_name(v), "attempts",
                           t->attempt));
}

/* ---------- consumers ---------- */

static void deadline_in(struct timespec *ts, long long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    struct sq_consumer *c = wa->c;
    struct sq *s = c->s;
    for (;;) {
        pthread_mutex_lock(&s->wake_lock);
        bool stopping = c->stopping;
        unsigned long seen = s->seq;
        pthread_mutex_unlock(&s->wake_lock);
        if (stopping)
            break;

        struct taken t = {0};
        long long next = -1;
        int rc = take(s, c->queue, &t, &next);
        if (rc == 1) {
            pthread_mutex_lock(&c->slots_lock);
            c->slots[wa->i] = (struct slot){t.id, t.lease};
            pthread_mutex_unlock(&c->slots_lock);
            struct queue_msg m = {t.body, t.len, t.attempt, t.request_id};
            log_set_request_id(t.request_id[0] != '\0' ? t.request_id : NULL);
            enum queue_verdict v = c->fn(&m, c->ctx);
            log_set_request_id(NULL);
            apply_verdict(s, c->queue, &t, v);
            pthread_mutex_lock(&c->slots_lock);
            c->slots[wa->i] = (struct slot){0, 0};
            pthread_mutex_unlock(&c->slots_lock);
            free(t.body);
            continue;
        }

        long long wait = POLL_MS;
        if (rc < 0) {
            wait = ERROR_BACKOFF_MS;
        } else if (next >= 0) {
            long long d = next - now_ms();
            if (d < wait)
                wait = d < 1 ? 1 : d;
        }
        struct timespec dl;
        deadline_in(&dl, wait);
        pthread_mutex_lock(&s->wake_lock);
        while (!c->stopping && s->seq == seen) {
            if (pthread_cond_timedwait(&s->wake, &s->wake_lock, &dl) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&s->wake_lock);
    }
    return NULL;
}

/* Keeps the leases of the deliveries in progress alive, every lease_ms / 3. */
static void *renewer_main(void *arg)
{
    struct sq_consumer *c = arg;
    struct sq *s = c->s;
    long long period = s->set.lease_ms / 3 > 0 ? s->set.lease_ms / 3 : 1;
    struct slot *snap = calloc((size_t)c->n, sizeof(*snap));
    if (snap == NULL)
        return NULL;
    for (;;) {
        struct timespec dl;
        deadline_in(&dl, period);
        /* Not c->stopping: the workers still finishing their handlers after a
         * stop need their leases kept alive until they are joined. */
        pthread_mutex_lock(&s->wake_lock);
        while (!c->renewer_stopping) {
            if (pthread_cond_timedwait(&s->wake, &s->wake_lock, &dl) == ETIMEDOUT)
                break;
        }
        bool stopping = c->renewer_stopping;
        pthread_mutex_unlock(&s->wake_lock);
        if (stopping)
            break;
        pthread_mutex_lock(&c->slots_lock);
        memcpy(snap, c->slots, (size_t)c->n * sizeof(*snap));
        pthread_mutex_unlock(&c->slots_lock);
        for (int i = 0; i < c->n; i++) {
            if (snap[i].id == 0)
                continue;
            pthread_mutex_lock(&s->db_lock);
            set_sync(s, false);
            int rc =
                change_locked(s, "UPDATE messages SET visible_at = ?3 WHERE id = ?1 AND lease = ?2",
                              snap[i].id, snap[i].lease, now_ms() + s->set.lease_ms, "renew");
            pthread_mutex_unlock(&s->db_lock);
            if (rc < 0)
                log_warn("queue: cannot renew a lease",
                         json_pack("{s:s, s:s}", "queue", c->queue, "error", queue_strerror(rc)));
        }
    }
    free(snap);
    return NULL;
}

static void consumer_stop(struct queue_consumer *base)
{
    struct sq_consumer *c = (struct sq_consumer *)base;
    struct sq *s = c->s;
    pthread_mutex_lock(&s->wake_lock);
    c->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->wake_lock);
    /* workers finish their handler and apply its verdict before they exit;
     * the renewer keeps their leases alive until then, and only then stops */
    for (int i = 0; i < c->started; i++)
        pthread_join(c->workers[i], NULL);
    pthread_mutex_lock(&s->wake_lock);
    c->renewer_stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->wake_lock);
    if (c->renewer_started)
        pthread_join(c->renewer, NULL);
    pthread_mutex_destroy(&c->slots_lock);
    free(c->workers);
    free(c->args);
    free(c->slots);
    free(c);
}

/* ---------- ops ---------- */

static int sq_declare(void *h, const char *queue)
{
    (void)h;
    /* one table holds every queue: nothing to create */
    return queue_name_valid(queue) ? QUEUE_OK : QUEUE_EINVAL;
}

static int sq_publish(void *h, const char *queue, const void *body, size_t len,
                      const char *request_id)
{
    struct sq *s = h;
    if (request_id == NULL)
        request_id = "";
    if (!queue_name_valid(queue) || len > QUEUE_BODY_MAX || (body == NULL && len > 0) ||
        strnlen(request_id, REQUEST_ID_MAX + 1) > REQUEST_ID_MAX)
        return QUEUE_EINVAL;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->db_lock);
    set_sync(s, true);
    int result = QUEUE_OK;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO messages (queue, body, request_id, attempt, lease,"
                                " visible_at, created_at) VALUES (?1, ?2, ?3, 0, 0, ?4, ?4)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "publish");
        goto out;
    }
    long long now = now_ms();
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    /* a non-NULL pointer: an empty body is an empty blob, not NULL */
    sqlite3_bind_blob(st, 2, len > 0 ? body : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        result = fail(s, rc, "publish");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->db_lock);
    if (result == QUEUE_OK) {
        pthread_mutex_lock(&s->wake_lock);
        s->seq++;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->wake_lock);
    }
    return result;
}

static int sq_consume(void *h, const char *queue, int prefetch, queue_handler_fn fn, void *ctx,
                      struct queue_consumer **out)
{
    struct sq *s = h;
    *out = NULL;
    if (!queue_name_valid(queue) || prefetch < 1 || prefetch > 1024 || fn == NULL)
        return QUEUE_EINVAL;
    struct sq_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return QUEUE_EINTERNAL;
    c->base.stop = consumer_stop;
    c->s = s;
    snprintf(c->queue, sizeof(c->queue), "%s", queue);
    c->fn = fn;
    c->ctx = ctx;
    c->n = prefetch;
    pthread_mutex_init(&c->slots_lock, NULL);
    c->workers = calloc((size_t)prefetch, sizeof(*c->workers));
    c->slots = calloc((size_t)prefetch, sizeof(*c->slots));
    c->args = calloc((size_t)prefetch, sizeof(*c->args));
    if (c->workers == NULL || c->slots == NULL || c->args == NULL)
        goto fail;
    if (pthread_create(&c->renewer, NULL, renewer_main, c) != 0)
        goto fail;
    c->renewer_started = true;
    for (int i = 0; i < prefetch; i++) {
        c->args[i] = (struct worker_arg){c, i};
        if (pthread_create(&c->workers[i], NULL, worker_main, &c->args[i]) != 0)
            goto fail;
        c->started++;
    }
    *out = &c->base;
    return QUEUE_OK;
fail:
    consumer_stop(&c->base);
    return QUEUE_EINTERNAL;
}

static int count_locked(struct sq *s, const char *sql, const char *queue, long *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "count");
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, now_ms());
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? QUEUE_OK : fail(s, rc, "count");
}

static int count(struct sq *s, const char *sql, const char *queue, long *out)
{
    if (!queue_name_valid(queue))
        return QUEUE_EINVAL;
    pthread_mutex_lock(&s->db_lock);
    int rc = count_locked(s, sql, queue, out);
    pthread_mutex_unlock(&s->db_lock);
    return rc;
}

static int sq_dead_count(void *h, const char *queue, long *out)
{
    return count(h, "SELECT COUNT(*) FROM dead WHERE queue = ?1", queue, out);
}

/* The oldest dead letter of queue after id after: copies it out. Returns
 * QUEUE_OK with *id 0 when there is none. */
static int take_dead(struct sq *s, const char *queue, sqlite3_int64 *id, char **body, size_t *len,
                     char *request_id, size_t rlen, int *attempts)
{
    *id = 0;
    pthread_mutex_lock(&s->db_lock);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, body, request_id, attempts FROM dead WHERE queue = ?1"
                                " ORDER BY id LIMIT 1",
                                -1, &st, NULL);
    int result = QUEUE_OK;
    if (rc != SQLITE_OK) {
        result = fail(s, rc, "dead letters");
        goto out;
    }
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(st, 1);
        *len = (size_t)sqlite3_column_bytes(st, 1);
        *body = malloc(*len + 1);
        if (*body == NULL) {
            result = QUEUE_EINTERNAL;
            goto out;
        }
        if (*len > 0)
            memcpy(*body, b, *len);
        (*body)[*len] = '\0';
        const unsigned char *r = sqlite3_column_text(st, 2);
        snprintf(request_id, rlen, "%s", r != NULL ? (const char *)r : "");
        *attempts = sqlite3_column_int(st, 3);
        *id = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
        result = fail(s, rc, "dead letters");
    }
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->db_lock);
    return result;
}

static int sq_drain_dead(void *h, const char *queue, int max, queue_dead_fn fn, void *ctx,
                         int *drained)
{
    struct sq *s = h;
    *drained = 0;
    if (!queue_name_valid(queue) || max < 1 || fn == NULL)
        return QUEUE_EINVAL;
    for (int i = 0; i < max; i++) {
        sqlite3_int64 id = 0;
        char *body = NULL, request_id[REQUEST_ID_MAX + 1];
        size_t len = 0;
        int attempts = 0;
        int rc = take_dead(s, queue, &id, &body, &len, request_id, sizeof(request_id), &attempts);
        if (rc != QUEUE_OK || id == 0)
            return rc;
        struct queue_msg m = {body, len, attempts, request_id};
        int keep = fn(&m, ctx);
        free(body);
        if (keep != 0)
            return QUEUE_OK;
        pthread_mutex_lock(&s->db_lock);
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM dead WHERE id = ?1", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->db_lock);
        if (rc != SQLITE_DONE)
            return fail(s, rc, "dead letters");
        (*drained)++;
    }
    return QUEUE_OK;
}

static int sq_depth(void *h, const char *queue, long *out)
{
    /* in flight: leased and the lease not yet run out */
    return count(
        h, "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND (lease = 0 OR visible_at <= ?2)",
        queue, out);
}

static int sq_ping(void *h)
{
    struct sq *s = h;
    pthread_mutex_lock(&s->db_lock);
    int rc = sqlite3_exec(s->db, "SELECT 1 FROM messages LIMIT 1", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->db_lock);
    return rc == SQLITE_OK ? QUEUE_OK : map_rc(rc);
}

static void sq_free(void *h)
{
    struct sq *s = h;
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->db_lock);
    pthread_mutex_destroy(&s->wake_lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}

static const struct queue_ops sqlite_ops = {
    .name = "sqlite",
    .declare = sq_declare,
    .publish = sq_publish,
    .consume = sq_consume,
    .dead_count = sq_dead_count,
    .drain_dead = sq_drain_dead,
    .depth = sq_depth,
    .ping = sq_ping,
    .free = sq_free,
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " queue TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " request_id TEXT NOT NULL,"
    " attempt INTEGER NOT NULL," /* deliveries so far */
    " lease INTEGER NOT NULL,"   /* 0: not taken; else the current delivery's token */
    " visible_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, id);"
    "CREATE TABLE IF NOT EXISTS dead ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " queue TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " request_id TEXT NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " reason TEXT NOT NULL,"
    " dead_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dead_queue ON dead (queue);";

struct queue *queue_sqlite_new(const char *path, const struct queue_settings *set, char *err,
                               size_t errlen)
{
    struct sq *s = calloc(1, sizeof(*s));
    struct queue *q = calloc(1, sizeof(*q));
    if (s == NULL || q == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->set = *set;
    pthread_mutex_init(&s->db_lock, NULL);
    pthread_mutex_init(&s->wake_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "queue: cannot open %s: %s", path,
                 s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* the schema is created under a write lock, so processes starting
     * together do not trip over each other's CREATE */
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
        rc = rc == SQLITE_OK ? sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) : rc;
        if (rc != SQLITE_OK)
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "queue: cannot set up %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    s->sync_full = true;
    q->ops = &sqlite_ops;
    q->h = s;
    return q;
fail:
    if (s != NULL)
        sq_free(s);
    free(q);
    return NULL;
}
