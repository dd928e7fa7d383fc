/* worker: see worker.h. */
#include "converter/worker.h"

#include "converter/transcode.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/ticker.h"
#include "core/utf8.h"

#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum outcome {
    OUT_DONE,
    OUT_FAILED,
    OUT_RETRIED,
    OUT_DROPPED,
    OUT_REPEATED,
    OUT_DEAD,
    OUT_HANDED_BACK, /* stopped at shutdown: back in the queue, no attempt used */
    OUTCOMES
};
static const char *const outcome_names[OUTCOMES] = {
    "done", "failed", "retried", "dropped", "repeated", "dead_letter", "handed_back"};

/* How often VIDEO_QUEUE.dead is looked at, and how many letters a look takes. */
#define DEAD_SWEEP_MS 3000
#define DEAD_SWEEP_MAX 100

struct converter {
    const struct config *cfg;
    struct blobs *blobs;
    struct jobs *jobs;
    struct queue *queue;
    struct queue_consumer *consumer;
    int workers;
    int cores;
    atomic_int cancel; /* set when the grace period is over */
    atomic_int running;
    atomic_uint_fast64_t outcomes[OUTCOMES];
    struct metrics_histogram seconds;
    struct ticker *sweeper; /* drains VIDEO_QUEUE.dead */
};

/* Tests only (CRASH_AT): dies at a named phase, as kill -9 would. */
static void maybe_crash(const struct converter *c, const char *phase)
{
    if (c->cfg->crash_at != NULL && strcmp(c->cfg->crash_at, phase) == 0) {
        log_warn("CRASH_AT: dying here", json_pack("{s:s}", "phase", phase));
        raise(SIGKILL);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- adapters: blob streams as transcode input and output ---------- */

struct source {
    struct blob_reader *r;
    int err; /* the first blob error */
};

static long src_read(void *cls, void *buf, size_t len)
{
    struct source *s = cls;
    long n = blob_read(s->r, buf, len);
    if (n < 0 && s->err == BLOB_OK)
        s->err = (int)n;
    return n;
}

static int64_t src_seek(void *cls, int64_t offset, int whence)
{
    struct source *s = cls;
    if (whence == TRANSCODE_SEEK_SIZE)
        return blob_reader_meta(s->r)->length;
    int64_t at = blob_seek(s->r, offset, whence);
    if (at < 0 && at != BLOB_EINVAL && s->err == BLOB_OK)
        s->err = (int)at;
    return at;
}

struct sink {
    struct blob_writer *w;
    int err;
};

static int sink_write(void *cls, const void *data, size_t len)
{
    struct sink *s = cls;
    int rc = blob_write(s->w, data, len);
    if (rc != BLOB_OK)
        s->err = rc;
    return rc != BLOB_OK;
}

struct progress {
    struct converter *c;
    const char *job_id;
};

static void on_progress(void *cls, double fraction)
{
    struct progress *p = cls;
    maybe_crash(p->c, "decoding");
    struct job_update u = {.from = JOB_FROM(JOB_CONVERTING),
                           .set = JOB_SET_PROGRESS,
                           .progress = fraction < 0   ? 0
                                       : fraction > 1 ? 1
                                                      : fraction};
    jobs_update(p->c->jobs, p->job_id, &u); /* best effort: progress is advisory */
}

/* ---------- messages ---------- */

/* Publishes the job's outcome on MP3_QUEUE. Returns QUEUE_OK or an error. */
static int publish_outcome(struct converter *c, const struct job *j, const char *request_id)
{
    json_t *opts = json_loads(j->options, 0, NULL);
    json_t *msg = json_pack(
        "{s:s, s:s, s:o, s:s, s:s, s:o, s:s, s:s, s:o}", "job_id", j->id, "video_fid", j->video_fid,
        "mp3_fid", j->status == JOB_DONE ? json_string(j->mp3_fid) : json_null(), "username",
        j->owner, "filename", j->filename, "options", opts != NULL ? opts : json_object(),
        "request_id", request_id, "status", j->status == JOB_DONE ? "done" : "failed", "error",
        j->status == JOB_FAILED ? json_string(j->error) : json_null());
    char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    int rc = text != NULL
                 ? queue_publish(c->queue, c->cfg->mp3_queue, text, strlen(text), request_id)
                 : QUEUE_EINTERNAL;
    free(text);
    if (rc != QUEUE_OK)
        log_warn("outcome not published; will retry",
                 json_pack("{s:s, s:s}", "job_id", j->id, "reason", queue_strerror(rc)));
    return rc;
}

/* Encoder threads for a job starting now: CONVERTER_THREADS_PER_JOB, or
 * else the cores shared among the conversions running (this one
 * included): a job alone uses them all, two starting together on two
 * cores one each. A job keeps its threads to its end. */
static int job_threads(struct converter *c)
{
    if (c->cfg->converter_threads_per_job > 0)
        return (int)c->cfg->converter_threads_per_job;
    int running = atomic_load(&c->running);
    int n = c->cores / (running > 0 ? running : 1);
    return n > 0 ? n : 1;
}

/* The job's options: quality 0..9 or a bitrate; anything else: defaults. */
static void read_options(const char *text, struct transcode_options *o)
{
    json_t *j = json_loads(text, 0, NULL);
    json_t *q = json_object_get(j, "quality"), *b = json_object_get(j, "bitrate");
    if (json_is_integer(b) && json_integer_value(b) >= 8 && json_integer_value(b) <= 320)
        o->bitrate = (int)json_integer_value(b);
    else if (json_is_integer(q) && json_integer_value(q) >= 0 && json_integer_value(q) <= 9)
        o->quality = (int)json_integer_value(q);
    json_decref(j);
}

/* The MP3's stored name: the video's without its extension, plus .mp3. */
static void mp3_filename(const char *video, char *out, size_t len)
{
    char base[BLOB_NAME_MAX + 1], cut[BLOB_NAME_MAX - 3];
    snprintf(base, sizeof(base), "%s", video[0] != '\0' ? video : "audio");
    char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base)
        *dot = '\0';
    utf8_clean(base, cut, sizeof(cut)); /* room for ".mp3", whole characters */
    snprintf(out, len, "%s.mp3", cut);
}

/* ---------- one delivery ---------- */

static int remove_leftover(struct converter *c, const char *fid);

/* Fails the job with reason (from queued or converting) and publishes it.
 * Returns the verdict for the message. */
static enum queue_verdict fail_job(struct converter *c, struct job *j, const char *reason,
                                   const char *request_id, enum queue_verdict done_verdict)
{
    struct job_update u = {.from = JOB_FROM(JOB_QUEUED) | JOB_FROM(JOB_CONVERTING),
                           .set = JOB_SET_STATUS | JOB_SET_ERROR,
                           .status = JOB_FAILED,
                           .error = reason};
    int rc = jobs_update(c->jobs, j->id, &u);
    if (rc != JOBS_OK && rc != JOBS_ECONFLICT)
        return QUEUE_RETRY;
    if (jobs_get(c->jobs, j->id, j) != JOBS_OK)
        return QUEUE_RETRY;
    if (j->status == JOB_DONE) { /* another delivery finished it meanwhile */
        if (publish_outcome(c, j, request_id) != QUEUE_OK)
            return QUEUE_RETRY;
        atomic_fetch_add(&c->outcomes[OUT_REPEATED], 1);
        return QUEUE_ACK;
    }
    /* A failed job keeps no MP3: one an attempt committed before dying. */
    if (rc == JOBS_OK && j->mp3_fid[0] != '\0')
        remove_leftover(c, j->mp3_fid);
    log_warn("job failed", json_pack("{s:s, s:s}", "job_id", j->id, "reason", j->error));
    if (publish_outcome(c, j, request_id) != QUEUE_OK)
        return QUEUE_RETRY;
    atomic_fetch_add(&c->outcomes[OUT_FAILED], 1);
    return done_verdict;
}

/* Removes a committed MP3 an earlier, crashed attempt may have left. */
static int remove_leftover(struct converter *c, const char *fid)
{
    int rc = blobs_remove(c->blobs, BLOB_MP3S, fid);
    if (rc == BLOB_OK)
        log_info("removed an earlier attempt's MP3", json_pack("{s:s}", "mp3_fid", fid));
    return rc == BLOB_OK || rc == BLOB_ENOTFOUND ? 0 : -1;
}

/* Converts the job's video into a new MP3 blob and marks the job done.
 * Returns TRANSCODE_OK, or a TRANSCODE_E* code with reason filled. */
static int convert_job(struct converter *c, struct job *j, char *reason, size_t reasonlen)
{
    struct source src = {0};
    struct sink dst = {0};
    struct blob_meta meta, done;
    memset(&meta, 0, sizeof(meta));
    snprintf(meta.owner, sizeof(meta.owner), "%s", j->owner);
    mp3_filename(j->filename, meta.filename, sizeof(meta.filename));
    snprintf(meta.content_type, sizeof(meta.content_type), "audio/mpeg");
    snprintf(meta.job_id, sizeof(meta.job_id), "%s", j->id);

    int brc = blobs_open_read(c->blobs, BLOB_VIDEOS, j->video_fid, &src.r);
    if (brc == BLOB_ENOTFOUND) {
        snprintf(reason, reasonlen, "the uploaded video is no longer stored");
        return TRANSCODE_EMEDIA;
    }
    if (brc == BLOB_OK)
        brc = blobs_open_write(c->blobs, BLOB_MP3S, &meta, &dst.w);
    if (brc != BLOB_OK) {
        blob_close(src.r);
        snprintf(reason, reasonlen, "file storage is unavailable (%s)", blobs_strerror(brc));
        return TRANSCODE_EIO;
    }
    /* The MP3's id goes into the job first: a retry after a crash removes
     * whatever this attempt commits if it dies before the job is done. */
    char mine[BLOB_ID_LEN + 1];
    snprintf(mine, sizeof(mine), "%s", blob_writer_id(dst.w));
    struct job_update pending = {.from = JOB_FROM(JOB_CONVERTING),
                                 .set = JOB_SET_MP3,
                                 .mp3_fid = mine,
                                 .if_mp3 = j->mp3_fid};
    int jrc = jobs_update(c->jobs, j->id, &pending);
    if (jrc != JOBS_OK) {
        /* ECONFLICT: another delivery of this job is at work */
        blob_abort(dst.w);
        blob_close(src.r);
        snprintf(reason, reasonlen, "the jobs database is unavailable (%s)", jobs_strerror(jrc));
        return jrc == JOBS_ECONFLICT ? TRANSCODE_ECANCELED : TRANSCODE_EIO;
    }
    /* The job is ours now: an earlier attempt's MP3 goes. That attempt, if
     * it still runs, fails its finishing update and removes its own. */
    if (j->mp3_fid[0] != '\0' && remove_leftover(c, j->mp3_fid) != 0)
        log_error("an earlier attempt's MP3 could not be removed",
                  json_pack("{s:s, s:s}", "job_id", j->id, "mp3_fid", j->mp3_fid));
    maybe_crash(c, "converting");

    struct transcode_options o;
    transcode_options_default(&o);
    read_options(j->options, &o);
    o.cpu_seconds_max = (double)c->cfg->convert_cpu_seconds;
    o.threads = job_threads(c);
    o.output_bytes_max = c->cfg->convert_max_mp3_bytes;
    struct progress p = {c, j->id};
    o.progress = on_progress;
    o.progress_cls = &p;
    o.cancel = &c->cancel;
    struct transcode_input in = {src_read, src_seek, &src, j->filename};
    struct transcode_output out = {sink_write, &dst};
    struct transcode_result res;
    int64_t t0 = mono_ms();
    int rc = transcode(&in, &out, &o, &res);
    blob_close(src.r);
    if (rc == TRANSCODE_OK)
        brc = blob_commit(dst.w, &done);
    else
        blob_abort(dst.w);
    if (rc == TRANSCODE_OK && brc != BLOB_OK) {
        rc = TRANSCODE_EIO;
        snprintf(res.reason, sizeof(res.reason), "the MP3 could not be stored (%s)",
                 blobs_strerror(brc));
    }
    if (rc != TRANSCODE_OK) {
        /* A storage error behind a transcode failure is transient whatever
         * the decoder made of it. */
        if (src.err != BLOB_OK || dst.err != BLOB_OK)
            rc = TRANSCODE_EIO;
        snprintf(reason, reasonlen, "%s", res.reason);
        return rc;
    }
    maybe_crash(c, "stored");
    struct job_update finish = {.from = JOB_FROM(JOB_CONVERTING),
                                .set = JOB_SET_STATUS | JOB_SET_MP3 | JOB_SET_PROGRESS |
                                       JOB_SET_RESULT,
                                .status = JOB_DONE,
                                .mp3_fid = done.id,
                                .progress = 1.0,
                                .duration = res.duration > 0 ? res.duration : -1, /* unknown */
                                .mp3_bytes = done.length,
                                .if_mp3 = mine};
    jrc = jobs_update(c->jobs, j->id, &finish);
    if (jrc == JOBS_ECONFLICT || jrc == JOBS_ENOTFOUND) {
        /* Another delivery took the job over, or it is gone: ours goes. */
        remove_leftover(c, done.id);
        snprintf(reason, reasonlen, "another delivery of the job took it over");
        return TRANSCODE_ECANCELED;
    }
    if (jrc != JOBS_OK) {
        /* Not done as far as anyone knows: the next attempt removes it. */
        snprintf(reason, reasonlen, "the jobs database is unavailable (%s)", jobs_strerror(jrc));
        return TRANSCODE_EIO;
    }
    metrics_histogram_observe(&c->seconds, (uint64_t)(mono_ms() - t0) * 1000u);
    log_info("converted", json_pack("{s:s, s:s, s:f, s:I, s:i, s:i, s:b, s:b, s:i, s:i, s:I}",
                                    "job_id", j->id, "mp3_fid", done.id, "duration", res.duration,
                                    "bytes", (json_int_t)res.bytes, "sample_rate", res.sample_rate,
                                    "channels", res.channels, "copied", res.copied, "picture",
                                    res.picture, "threads", res.segments > 0 ? o.threads : 1,
                                    "segments", res.segments, "ms", (json_int_t)(mono_ms() - t0)));
    return TRANSCODE_OK;
}

static enum queue_verdict handle(const struct queue_msg *m, void *ctx)
{
    struct converter *c = ctx;
    json_t *msg = json_loadb(m->body, m->len, 0, NULL);
    const char *job_id = json_string_value(json_object_get(msg, "job_id"));
    if (job_id == NULL || !blob_id_valid(job_id)) {
        log_error("message without a valid job_id: dead-lettered", NULL);
        json_decref(msg);
        return QUEUE_REJECT;
    }
    char id[BLOB_ID_LEN + 1], request_id[65];
    snprintf(id, sizeof(id), "%s", job_id);
    snprintf(request_id, sizeof(request_id), "%s", m->request_id);
    json_decref(msg);
    log_set_request_id(request_id[0] != '\0' ? request_id : NULL);
    atomic_fetch_add(&c->running, 1);

    enum queue_verdict v = QUEUE_RETRY;
    struct job j;
    int rc = jobs_get(c->jobs, id, &j);
    if (rc == JOBS_ENOTFOUND) {
        log_warn("no such job (the upload was taken back): dropped",
                 json_pack("{s:s}", "job_id", id));
        atomic_fetch_add(&c->outcomes[OUT_DROPPED], 1);
        v = QUEUE_ACK;
        goto out;
    }
    if (rc != JOBS_OK)
        goto retry;
    if (j.status == JOB_DONE || j.status == JOB_FAILED) {
        /* Finished by an earlier delivery, which may have died before
         * publishing: publish again (the notifier absorbs repeats). */
        if (publish_outcome(c, &j, request_id) != QUEUE_OK)
            goto retry;
        atomic_fetch_add(&c->outcomes[OUT_REPEATED], 1);
        v = QUEUE_ACK;
        goto out;
    }
    struct job_update start = {.from = JOB_FROM(JOB_QUEUED) | JOB_FROM(JOB_CONVERTING),
                               .set = JOB_SET_STATUS | JOB_ADD_ATTEMPT,
                               .status = JOB_CONVERTING};
    rc = jobs_update(c->jobs, id, &start);
    if (rc != JOBS_OK)
        goto retry; /* a conflict means it just finished: the next delivery publishes */

    char reason[256] = "";
    rc = convert_job(c, &j, reason, sizeof(reason));
    if (rc == TRANSCODE_OK) {
        maybe_crash(c, "done");
        if (jobs_get(c->jobs, id, &j) != JOBS_OK || publish_outcome(c, &j, request_id) != QUEUE_OK)
            goto retry; /* done: the next delivery only publishes */
        maybe_crash(c, "published");
        if (!c->cfg->keep_videos) {
            int brc = blobs_remove(c->blobs, BLOB_VIDEOS, j.video_fid);
            if (brc != BLOB_OK && brc != BLOB_ENOTFOUND)
                log_warn("video not removed (KEEP_VIDEOS=false)",
                         json_pack("{s:s, s:s}", "video_fid", j.video_fid, "reason",
                                   blobs_strerror(brc)));
        }
        atomic_fetch_add(&c->outcomes[OUT_DONE], 1);
        v = QUEUE_ACK;
        goto out;
    }
    if (rc == TRANSCODE_EMEDIA || rc == TRANSCODE_ELIMIT) {
        v = fail_job(c, &j, reason, request_id, QUEUE_ACK);
        goto out;
    }
    if (rc == TRANSCODE_ECANCELED) {
        /* a shutdown, not the video: the next converter starts it afresh,
         * and the delivery does not count towards MAX_ATTEMPTS */
        log_info("conversion handed back", json_pack("{s:s}", "job_id", id));
        atomic_fetch_add(&c->outcomes[OUT_HANDED_BACK], 1);
        v = QUEUE_RELEASE;
        goto out;
    }
    log_warn("conversion failed, will retry",
             json_pack("{s:s, s:s, s:i}", "job_id", id, "reason", reason, "attempt", m->attempt));
    if (m->attempt >= c->cfg->max_attempts) {
        char last[320];
        snprintf(last, sizeof(last),
                 "the conversion kept failing (%s); giving up after %d attempts", reason,
                 m->attempt);
        v = fail_job(c, &j, last, request_id, QUEUE_REJECT);
        goto out;
    }
retry:
    atomic_fetch_add(&c->outcomes[OUT_RETRIED], 1);
    v = QUEUE_RETRY;
out:
    atomic_fetch_sub(&c->running, 1);
    log_set_request_id(NULL);
    return v;
}

/* ---------- dead letters ---------- */

/* A dead letter of VIDEO_QUEUE: the last attempts crashed the converter or
 * kept failing. Its job, unless already finished, fails now and its owner
 * is told. Returns 0 to remove the letter, 1 to keep it (stores down). */
static int on_dead_letter(const struct queue_msg *m, void *ctx)
{
    struct converter *c = ctx;
    atomic_fetch_add(&c->outcomes[OUT_DEAD], 1);
    json_t *msg = json_loadb(m->body, m->len, 0, NULL);
    const char *job_id = json_string_value(json_object_get(msg, "job_id"));
    char id[BLOB_ID_LEN + 1] = "";
    if (job_id != NULL && blob_id_valid(job_id))
        snprintf(id, sizeof(id), "%s", job_id);
    json_decref(msg);
    if (id[0] == '\0') {
        log_error("dead letter without a valid job_id: removed",
                  json_pack("{s:I}", "bytes", (json_int_t)m->len));
        return 0;
    }
    struct job j;
    int rc = jobs_get(c->jobs, id, &j);
    if (rc == JOBS_ENOTFOUND || (rc == JOBS_OK && (j.status == JOB_DONE || j.status == JOB_FAILED)))
        return 0; /* nothing to do: gone, or its outcome was published */
    if (rc != JOBS_OK)
        return 1;
    char reason[200];
    snprintf(reason, sizeof(reason),
             "the conversion failed %d times (the file may crash the converter); it was given up",
             m->attempt > 0 ? m->attempt : (int)c->cfg->max_attempts);
    log_error("dead letter: failing its job",
              json_pack("{s:s, s:i}", "job_id", id, "attempts", m->attempt));
    return fail_job(c, &j, reason, m->request_id, QUEUE_ACK) == QUEUE_ACK ? 0 : 1;
}

static void sweep(void *arg)
{
    struct converter *c = arg;
    int drained = 0;
    queue_drain_dead(c->queue, c->cfg->video_queue, DEAD_SWEEP_MAX, on_dead_letter, c, &drained);
}

/* ---------- service ---------- */

static void write_metrics(FILE *out, void *ctx)
{
    struct converter *c = ctx;
    fprintf(out, "# HELP vid2mp3_conversions_total Deliveries handled, by outcome.\n"
                 "# TYPE vid2mp3_conversions_total counter\n");
    for (int i = 0; i < OUTCOMES; i++)
        fprintf(out, "vid2mp3_conversions_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                (unsigned long long)atomic_load(&c->outcomes[i]));
    fprintf(out,
            "# HELP vid2mp3_conversions_running Conversions in progress.\n"
            "# TYPE vid2mp3_conversions_running gauge\n"
            "vid2mp3_conversions_running %d\n"
            "# HELP vid2mp3_converter_workers Conversions allowed at once.\n"
            "# TYPE vid2mp3_converter_workers gauge\n"
            "vid2mp3_converter_workers %d\n"
            "# HELP vid2mp3_conversion_seconds Time to convert and store one MP3.\n"
            "# TYPE vid2mp3_conversion_seconds histogram\n",
            atomic_load(&c->running), c->workers);
    metrics_histogram_write(out, "vid2mp3_conversion_seconds", "", &c->seconds);
}

int converter_ready(void *ctx, char *why, size_t whylen)
{
    struct converter *c = ctx;
    if (blobs_ping(c->blobs) != BLOB_OK) {
        snprintf(why, whylen, "file storage (%s) does not answer", c->blobs->ops->name);
        return -1;
    }
    if (jobs_ping(c->jobs) != JOBS_OK) {
        snprintf(why, whylen, "the jobs database (%s) does not answer", c->jobs->ops->name);
        return -1;
    }
    if (queue_ping(c->queue) != QUEUE_OK) {
        snprintf(why, whylen, "the queue (%s) does not answer", c->queue->ops->name);
        return -1;
    }
    return 0;
}

struct converter *converter_start(const struct config *cfg, const struct converter_deps *deps,
                                  char *err, size_t errlen)
{
    struct converter *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->blobs = deps->blobs;
    c->jobs = deps->jobs;
    c->queue = deps->queue;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->cores = cores > 0 ? (int)cores : 1;
    c->workers =
        cfg->converter_workers > 0 ? (int)cfg->converter_workers : (int)(cores > 0 ? cores : 1);
    int rc = queue_declare(c->queue, cfg->mp3_queue);
    if (rc == QUEUE_OK || rc == QUEUE_EUNAVAIL)
        rc = queue_consume(c->queue, cfg->video_queue, c->workers, handle, c, &c->consumer);
    if (rc != QUEUE_OK) {
        snprintf(err, errlen, "cannot consume %s: %s", cfg->video_queue, queue_strerror(rc));
        free(c);
        return NULL;
    }
    c->sweeper = ticker_start(0, DEAD_SWEEP_MS, sweep, c);
    if (c->sweeper == NULL)
        log_warn("dead-letter sweeper not started: jobs of dead letters stay unfinished", NULL);
    metrics_register(write_metrics, c);
    return c;
}

/* At the end of the grace period: conversions still running are
 * cancelled and handed back to the queue. */
static void cancel_conversions(void *arg)
{
    struct converter *c = arg;
    log_warn("grace period over: handing running conversions back",
             json_pack("{s:i}", "running", atomic_load(&c->running)));
    atomic_store(&c->cancel, 1);
}

void converter_stop(struct converter *c, int grace_seconds)
{
    if (c == NULL)
        return;
    struct ticker *deadline =
        ticker_start((long)grace_seconds * 1000, 3600000, cancel_conversions, c);
    if (deadline == NULL)
        atomic_store(&c->cancel, 1);
    queue_consumer_stop(c->consumer); /* waits for the conversions in progress */
    ticker_stop(deadline);
    ticker_stop(c->sweeper);
    metrics_unregister(c);
    free(c);
}
