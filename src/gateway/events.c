/*
 * events: GET /jobs/events, the caller's jobs as Server-Sent Events, so
 * the web page shows a conversion's progress as it happens.
 *
 * The stream opens with "event: jobs" carrying {"jobs": [...]}, the newest
 * EVENTS_JOBS jobs as GET /jobs lists them, then sends "event: job" with a
 * job's record each time one of those is created or changes (status,
 * progress, notification). The jobs are read from the store every
 * EVENTS_POLL_MS, whatever process changed them; a comment line goes out
 * when nothing else has for EVENTS_PING_SECONDS (or a third of the idle
 * timeout, when shorter), so proxies and the idle timeout keep the
 * connection and a client that went away is noticed.
 *
 * A stream lasts at most EVENTS_MAX_SECONDS, then ends; the client
 * reconnects (retry: 2 s), which also re-checks its token. Each stream
 * holds a connection thread, so a gateway serves at most
 * EVENTS_MAX_STREAMS at once and answers 503 past that (the page then
 * polls GET /jobs). A store failure ends the stream the same way.
 */
#include "gateway/gw.h"

#include "core/log.h"
#include "core/strbuf.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENTS_JOBS 20
#define EVENTS_POLL_MS 500
#define EVENTS_PING_SECONDS 15
#define EVENTS_MAX_SECONDS 300
#define EVENTS_MAX_STREAMS 64

/* What the client was last sent of a job. */
struct seen {
    char id[BLOB_ID_LEN + 1];
    int64_t updated_at;
    int64_t notified_at;
    enum job_status status;
    double progress;
};

struct events {
    struct gateway *gw;
    char owner[BLOB_OWNER_MAX + 1];
    char request_id[65];
    struct seen seen[EVENTS_JOBS], next[EVENTS_JOBS];
    int nseen, nnext;
    struct strbuf out; /* events not yet sent: out.p[sent..out.len) */
    size_t sent;
    struct timespec opened, last_write;
    double ping_seconds; /* a comment after this long without a write */
    json_t *snapshot;    /* the first read's jobs, while it runs */
};

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static bool changed(const struct events *e, const struct job *j)
{
    for (int i = 0; i < e->nseen; i++) {
        const struct seen *s = &e->seen[i];
        if (strcmp(s->id, j->id) == 0)
            return s->updated_at != j->updated_at || s->notified_at != j->notified_at ||
                   s->status != j->status || s->progress != j->progress;
    }
    return true;
}

/* Queues one event: "event: NAME", the JSON on one data line (JSON text
 * has no newline), a blank line. Consumes data. */
static void put_event(struct events *e, const char *name, json_t *data)
{
    char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (text == NULL) {
        e->out.failed = true;
        return;
    }
    strbuf_puts(&e->out, "event: ");
    strbuf_puts(&e->out, name);
    strbuf_puts(&e->out, "\ndata: ");
    strbuf_puts(&e->out, text);
    strbuf_puts(&e->out, "\n\n");
    free(text);
}

/* jobs_list callback: remembers what the client gets of each job, and
 * queues an event for each change (or, for the first read, adds every job
 * to the snapshot: both from the same read, so no change falls between). */
static int on_job(const struct job *j, void *ctx)
{
    struct events *e = ctx;
    if (e->nnext == EVENTS_JOBS)
        return 0;
    if (e->snapshot != NULL)
        json_array_append_new(e->snapshot, gw_job_json(j));
    else if (changed(e, j))
        put_event(e, "job", gw_job_json(j));
    struct seen *s = &e->next[e->nnext++];
    memcpy(s->id, j->id, sizeof(s->id));
    s->updated_at = j->updated_at;
    s->notified_at = j->notified_at;
    s->status = j->status;
    s->progress = j->progress;
    return 0;
}

/* Reads the caller's jobs; queues an event per change. */
static int tick(struct events *e)
{
    e->nnext = 0;
    int rc = jobs_list(e->gw->jobs, e->owner, 0, "", EVENTS_JOBS, on_job, e);
    if (rc != JOBS_OK)
        return rc;
    memcpy(e->seen, e->next, sizeof(e->seen));
    e->nseen = e->nnext;
    return JOBS_OK;
}

/* Copies queued bytes out; 0 when there are none. */
static long drain(struct events *e, char *buf, size_t max)
{
    if (e->sent == e->out.len)
        return 0;
    size_t n = e->out.len - e->sent < max ? e->out.len - e->sent : max;
    memcpy(buf, e->out.p + e->sent, n);
    e->sent += n;
    if (e->sent == e->out.len) /* all out: start the buffer again */
        e->sent = e->out.len = 0;
    clock_gettime(CLOCK_MONOTONIC, &e->last_write);
    return (long)n;
}

static long read_events(void *cls, unsigned long long pos, char *buf, size_t max)
{
    (void)pos;
    struct events *e = cls;
    long n = drain(e, buf, max);
    if (n > 0)
        return n;
    if (seconds_since(&e->opened) >= EVENTS_MAX_SECONDS)
        return -1;
    struct timespec pause = {0, EVENTS_POLL_MS * 1000L * 1000L};
    nanosleep(&pause, NULL);
    log_set_request_id(e->request_id);
    int rc = tick(e);
    log_set_request_id(NULL);
    if (rc != JOBS_OK) {
        log_warn("event stream ends: the jobs store failed",
                 json_pack("{s:s}", "reason", jobs_strerror(rc)));
        return -1;
    }
    if (e->out.failed)
        return -1; /* an event was lost: end, the client reconnects */
    if (seconds_since(&e->last_write) >= e->ping_seconds)
        strbuf_puts(&e->out, ": ping\n\n");
    return drain(e, buf, max);
}

static void events_done(void *cls)
{
    struct events *e = cls;
    free(e->out.p);
    atomic_fetch_sub(&e->gw->event_streams, 1);
    free(e);
}

void gw_handle_events(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    struct token_claims who;
    if (gw_caller(gw, req, &who) != 0)
        return;
    if (atomic_fetch_add(&gw->event_streams, 1) >= EVENTS_MAX_STREAMS) {
        atomic_fetch_sub(&gw->event_streams, 1);
        http_reply_error_retry(req, 503, "too_many_streams",
                               "too many event streams are open; poll GET /jobs instead",
                               RETRY_UNAVAILABLE);
        return;
    }
    struct events *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        atomic_fetch_sub(&gw->event_streams, 1);
        http_reply_error(req, 500, "internal_error", "out of memory");
        return;
    }
    e->gw = gw;
    snprintf(e->owner, sizeof(e->owner), "%s", who.sub);
    snprintf(e->request_id, sizeof(e->request_id), "%s", http_req_id(req));
    /* well inside the idle timeout, which counts from the last write */
    long idle = gw->cfg->http_idle_timeout > 0 ? (long)gw->cfg->http_idle_timeout : 30;
    e->ping_seconds = idle / 3.0 < EVENTS_PING_SECONDS ? idle / 3.0 : EVENTS_PING_SECONDS;
    clock_gettime(CLOCK_MONOTONIC, &e->opened);
    e->last_write = e->opened;

    /* The snapshot, read before answering so a store that is down gets
     * the usual 503 rather than a stream that ends at once. */
    e->snapshot = json_array();
    int rc = tick(e);
    json_t *jobs = e->snapshot;
    e->snapshot = NULL;
    if (rc != JOBS_OK) {
        json_decref(jobs);
        events_done(e);
        gw_reply_jobs_error(req, rc);
        return;
    }
    strbuf_puts(&e->out, "retry: 2000\n\n");
    put_event(e, "jobs", json_pack("{s:o}", "jobs", jobs));
    if (e->out.failed) {
        events_done(e);
        http_reply_error(req, 500, "internal_error", "out of memory");
        return;
    }
    http_reply_header(req, "Cache-Control", "no-cache");
    http_reply_header(req, "X-Accel-Buffering", "no"); /* nginx: pass events at once */
    http_reply_stream(req, 200, "text/event-stream", HTTP_SIZE_UNKNOWN, read_events, e,
                      events_done);
}
