/* notifier: see notifier.h. */
#include "notifier/notifier.h"

#include "core/log.h"
#include "core/metrics.h"
#include "core/ticker.h"
#include "mail/message.h"

#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum outcome {
    OUT_SENT,
    OUT_PERMANENT, /* given up at once: the server refused it (5xx) */
    OUT_INVALID,   /* given up at once: the owner's address is not one address */
    OUT_GAVE_UP,   /* given up after NOTIFY_MAX_ATTEMPTS transient failures */
    OUT_RETRIED,
    OUT_REPEATED,
    OUT_DROPPED,
    OUT_DEAD,
    OUT_HANDED_BACK, /* a send stopped at shutdown: back in the queue, no attempt used */
    OUTCOMES
};
static const char *const outcome_names[OUTCOMES] = {"sent",    "permanent",   "invalid",
                                                    "gave_up", "retried",     "repeated",
                                                    "dropped", "dead_letter", "handed_back"};

#define DEAD_SWEEP_MS 3000
#define DEAD_SWEEP_MAX 100
/* How long a sent email's settle is retried while the jobs database is
 * down: past it, the message is retried and the email may go twice. */
#define SETTLE_PATIENCE_MS 15000
/* A claim outlives the longest send and settle by this much. */
#define CLAIM_MARGIN_MS 5000

struct notifier {
    const struct config *cfg;
    struct jobs *jobs;
    struct queue *queue;
    struct mailer *mail;
    struct queue_consumer *consumer;
    const char *from;
    char public_url[256]; /* without a trailing slash */
    atomic_int sending;
    atomic_uint_fast64_t outcomes[OUTCOMES];
    struct metrics_histogram seconds;
    struct ticker *sweeper; /* drains MP3_QUEUE.dead */
    /* set by notifier_stop: the time sends must be over by (monotonic ms,
     * 0: none yet), and the flag that abandons them past it */
    atomic_llong deadline;
    atomic_int cancel;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
    return mono_us() / 1000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Tests only (CRASH_AT): dies at a named phase, as kill -9 would. */
static void maybe_crash(const struct notifier *n, const char *phase)
{
    if (n->cfg->crash_at != NULL && strcmp(n->cfg->crash_at, phase) == 0) {
        log_warn("CRASH_AT: dying here", json_pack("{s:s}", "phase", phase));
        raise(SIGKILL);
    }
}

/*
 * Settles job id's notification: sent (error NULL) or given up with error.
 * A settle that finds it already settled (another delivery got there
 * first) is fine. patient: keep trying for SETTLE_PATIENCE_MS while the
 * database is down (after a send, giving up means sending again). Returns
 * 0 when the job is settled or gone, -1 otherwise.
 */
static int settle(struct notifier *n, const char *id, const char *error, bool patient)
{
    char text[JOB_ERROR_MAX + 1];
    if (error != NULL)
        snprintf(text, sizeof(text), "%s", error);
    long wait = 100, waited = 0;
    for (;;) {
        int rc = jobs_mark_notified(n->jobs, id, wall_ms(), error != NULL ? text : NULL);
        if (rc == JOBS_OK || rc == JOBS_ECONFLICT || rc == JOBS_ENOTFOUND)
            return 0;
        long long deadline = atomic_load(&n->deadline);
        if (!patient || waited >= SETTLE_PATIENCE_MS ||
            (deadline > 0 && mono_ms() + wait >= deadline)) {
            log_error("notification not recorded",
                      json_pack("{s:s, s:s}", "job_id", id, "reason", jobs_strerror(rc)));
            return -1;
        }
        sleep_ms(wait);
        waited += wait;
        wait = wait * 2 > 2000 ? 2000 : wait * 2;
    }
}

/* The job's email, composed. Returns the text (caller frees) or NULL with
 * reason when the job cannot be written to (its owner's address). */
static char *compose(struct notifier *n, const struct job *j, size_t *len, char *reason,
                     size_t reasonlen)
{
    /* the web page, which shows the job with a player and a download
     * button once its reader has logged in (a link to /download would
     * need a token) */
    char url[512];
    snprintf(url, sizeof(url), "%s/#job=%s", n->public_url, j->id);
    struct mail_facts f = {
        .from = n->from,
        .to = j->owner,
        .job_id = j->id,
        .filename = j->filename,
        .done = j->status == JOB_DONE,
        .mp3_fid = j->mp3_fid,
        .url = url,
        .duration = j->duration,
        .bytes = j->mp3_bytes,
        .error = j->error[0] != '\0' ? j->error : "the conversion failed",
        .date = (int64_t)time(NULL),
    };
    return mail_compose(&f, len, reason, reasonlen);
}

/* Gives job j's email up with why, counted as outcome. Returns the
 * message's verdict: give_up (REJECT or, on the last attempt, RETRY, which
 * dead-letters it too), or RETRY when it could not be recorded. */
static enum queue_verdict give_up(struct notifier *n, const struct job *j, const char *why,
                                  enum outcome outcome, enum queue_verdict verdict)
{
    atomic_fetch_add(&n->outcomes[outcome], 1);
    return settle(n, j->id, why, false) == 0 ? verdict : QUEUE_RETRY;
}

/* Sends job j's email and settles it. Returns the message's verdict. */
static enum queue_verdict notify(struct notifier *n, const struct job *j, int attempt)
{
    if (!mail_address_valid(j->owner)) {
        /* never sent: a value that is not one address could be many */
        log_error("email refused: the owner's address is not a valid email address",
                  json_pack("{s:s}", "job_id", j->id));
        return give_up(n, j, "the owner's address is not a valid email address", OUT_INVALID,
                       QUEUE_REJECT);
    }
    /* Only one delivery of the job sends at a time; another one still at
     * it (or one that died and whose claim has not run out) means later. */
    int64_t now = wall_ms();
    int64_t until = now + n->cfg->smtp_timeout * 1000 + SETTLE_PATIENCE_MS + CLAIM_MARGIN_MS;
    int rc = jobs_claim_notify(n->jobs, j->id, now, until);
    if (rc == JOBS_ECONFLICT || rc != JOBS_OK) {
        if (rc != JOBS_ECONFLICT && rc != JOBS_ENOTFOUND)
            log_warn("jobs database unavailable, will retry",
                     json_pack("{s:s, s:s}", "job_id", j->id, "reason", jobs_strerror(rc)));
        atomic_fetch_add(&n->outcomes[rc == JOBS_ENOTFOUND ? OUT_DROPPED : OUT_RETRIED], 1);
        return rc == JOBS_ENOTFOUND ? QUEUE_ACK : QUEUE_RETRY;
    }
    char reason[MAIL_REPLY_MAX + 64] = "";
    size_t len = 0;
    char *text = compose(n, j, &len, reason, sizeof(reason));
    if (text == NULL) {
        log_error("email not composed, will retry",
                  json_pack("{s:s, s:s}", "job_id", j->id, "reason", reason));
        jobs_release_notify(n->jobs, j->id, until);
        atomic_fetch_add(&n->outcomes[OUT_RETRIED], 1);
        return QUEUE_RETRY;
    }
    struct mail_envelope e = {n->from, j->owner, j->id, text, len, &n->cancel};
    char reply[MAIL_REPLY_MAX] = "";
    atomic_fetch_add(&n->sending, 1);
    int64_t t0 = mono_us();
    rc = mail_send(n->mail, &e, reply, sizeof(reply));
    metrics_histogram_observe(&n->seconds, (uint64_t)(mono_us() - t0));
    atomic_fetch_sub(&n->sending, 1);
    free(text);

    if (rc == MAIL_OK) {
        maybe_crash(n, "sent");
        if (settle(n, j->id, NULL, true) != 0) {
            atomic_fetch_add(&n->outcomes[OUT_RETRIED], 1);
            return QUEUE_RETRY;
        }
        maybe_crash(n, "notified");
        log_info("notified", json_pack("{s:s, s:s, s:s, s:s}", "job_id", j->id, "status",
                                       job_status_name(j->status), "backend", n->mail->ops->name,
                                       "reply", reply));
        atomic_fetch_add(&n->outcomes[OUT_SENT], 1);
        return QUEUE_ACK;
    }
    if (rc == MAIL_ETRANSIENT && atomic_load(&n->cancel)) {
        /* stopped at shutdown: the next notifier sends it, and this
         * delivery does not count towards NOTIFY_MAX_ATTEMPTS */
        log_info("email handed back", json_pack("{s:s}", "job_id", j->id));
        jobs_release_notify(n->jobs, j->id, until);
        atomic_fetch_add(&n->outcomes[OUT_HANDED_BACK], 1);
        return QUEUE_RELEASE;
    }
    if (rc == MAIL_ETRANSIENT && attempt < (int)n->cfg->notify_max_attempts) {
        log_warn("email not sent, will retry",
                 json_pack("{s:s, s:s, s:i}", "job_id", j->id, "reply", reply, "attempt", attempt));
        jobs_release_notify(n->jobs, j->id, until); /* best effort: else it runs out */
        atomic_fetch_add(&n->outcomes[OUT_RETRIED], 1);
        return QUEUE_RETRY;
    }
    char why[JOB_ERROR_MAX + 1];
    if (rc == MAIL_ETRANSIENT)
        snprintf(why, sizeof(why), "the email could not be sent after %d attempts: %s", attempt,
                 reply);
    else
        snprintf(why, sizeof(why), "the mail server refused the email: %s", reply);
    log_error("email given up", json_pack("{s:s, s:s, s:s, s:i}", "job_id", j->id, "reply", reply,
                                          "kind", mail_strerror(rc), "attempt", attempt));
    if (rc == MAIL_ETRANSIENT) /* the last attempt's RETRY dead-letters it */
        return give_up(n, j, why, OUT_GAVE_UP, QUEUE_RETRY);
    return give_up(n, j, why, rc == MAIL_EINVAL ? OUT_INVALID : OUT_PERMANENT, QUEUE_REJECT);
}

/* The job id a message or dead letter names, or "" (id has room for
 * BLOB_ID_LEN + 1). */
static void message_job_id(const struct queue_msg *m, char *id)
{
    id[0] = '\0';
    json_t *msg = json_loadb(m->body, m->len, 0, NULL);
    const char *job_id = json_string_value(json_object_get(msg, "job_id"));
    if (job_id != NULL && blob_id_valid(job_id))
        snprintf(id, BLOB_ID_LEN + 1, "%s", job_id);
    json_decref(msg);
}

static enum queue_verdict handle(const struct queue_msg *m, void *ctx)
{
    struct notifier *n = ctx;
    char id[BLOB_ID_LEN + 1];
    message_job_id(m, id);
    if (id[0] == '\0') {
        log_error("message without a valid job_id: dead-lettered",
                  json_pack("{s:I}", "bytes", (json_int_t)m->len));
        atomic_fetch_add(&n->outcomes[OUT_DROPPED], 1);
        return QUEUE_REJECT;
    }
    log_set_request_id(m->request_id[0] != '\0' ? m->request_id : NULL);
    enum queue_verdict v = QUEUE_RETRY;
    struct job j;
    int rc = jobs_get(n->jobs, id, &j);
    if (rc == JOBS_ENOTFOUND) {
        log_warn("no such job: dropped", json_pack("{s:s}", "job_id", id));
        atomic_fetch_add(&n->outcomes[OUT_DROPPED], 1);
        v = QUEUE_ACK;
    } else if (rc != JOBS_OK) {
        log_warn("jobs database unavailable, will retry",
                 json_pack("{s:s, s:s}", "job_id", id, "reason", jobs_strerror(rc)));
        atomic_fetch_add(&n->outcomes[OUT_RETRIED], 1);
    } else if (j.notified_at > 0) {
        atomic_fetch_add(&n->outcomes[OUT_REPEATED], 1); /* an earlier delivery told them */
        v = QUEUE_ACK;
    } else if (j.status != JOB_DONE && j.status != JOB_FAILED) {
        /* the converter publishes again once it is finished */
        log_warn("job not finished: dropped",
                 json_pack("{s:s, s:s}", "job_id", id, "status", job_status_name(j.status)));
        atomic_fetch_add(&n->outcomes[OUT_DROPPED], 1);
        v = QUEUE_ACK;
    } else {
        v = notify(n, &j, m->attempt);
    }
    log_set_request_id(NULL);
    return v;
}

/* ---------- dead letters ---------- */

/* A dead letter of MP3_QUEUE: its job's notification, unless already
 * settled (the usual case: a 5xx), is given up now. Returns 0 to remove
 * the letter, 1 to keep it (jobs database down). */
static int on_dead_letter(const struct queue_msg *m, void *ctx)
{
    struct notifier *n = ctx;
    char id[BLOB_ID_LEN + 1];
    message_job_id(m, id);
    if (id[0] == '\0') {
        log_error("dead letter without a valid job_id: removed",
                  json_pack("{s:I}", "bytes", (json_int_t)m->len));
        atomic_fetch_add(&n->outcomes[OUT_DEAD], 1);
        return 0;
    }
    struct job j;
    int rc = jobs_get(n->jobs, id, &j);
    if (rc == JOBS_ENOTFOUND || (rc == JOBS_OK && j.notified_at > 0)) {
        atomic_fetch_add(&n->outcomes[OUT_DEAD], 1);
        return 0;
    }
    if (rc != JOBS_OK)
        return 1;
    /* another copy of the message may be sending right now: not while
     * its claim runs */
    int64_t now = wall_ms();
    if (jobs_claim_notify(n->jobs, id, now, now + CLAIM_MARGIN_MS) != JOBS_OK)
        return 1;
    atomic_fetch_add(&n->outcomes[OUT_DEAD], 1);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "the email was given up after %d deliveries (the notifier stopped on it each time)",
             m->attempt);
    log_error("dead letter: giving up its email",
              json_pack("{s:s, s:i}", "job_id", id, "attempts", m->attempt));
    return settle(n, id, reason, false) == 0 ? 0 : 1;
}

static void sweep(void *arg)
{
    struct notifier *n = arg;
    int drained = 0;
    queue_drain_dead(n->queue, n->cfg->mp3_queue, DEAD_SWEEP_MAX, on_dead_letter, n, &drained);
}

/* ---------- service ---------- */

static void write_metrics(FILE *out, void *ctx)
{
    struct notifier *n = ctx;
    fprintf(out, "# HELP vid2mp3_notifications_total Notification deliveries, by outcome.\n"
                 "# TYPE vid2mp3_notifications_total counter\n");
    for (int i = 0; i < OUTCOMES; i++)
        fprintf(out, "vid2mp3_notifications_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                (unsigned long long)atomic_load(&n->outcomes[i]));
    fprintf(out,
            "# HELP vid2mp3_notifications_sending Emails being sent now.\n"
            "# TYPE vid2mp3_notifications_sending gauge\n"
            "vid2mp3_notifications_sending %d\n"
            "# HELP vid2mp3_notification_send_seconds Time to hand one email to the mail "
            "backend.\n"
            "# TYPE vid2mp3_notification_send_seconds histogram\n",
            atomic_load(&n->sending));
    metrics_histogram_write(out, "vid2mp3_notification_send_seconds", "", &n->seconds);
}

int notifier_ready(void *ctx, char *why, size_t whylen)
{
    struct notifier *n = ctx;
    if (jobs_ping(n->jobs) != JOBS_OK) {
        snprintf(why, whylen, "the jobs database (%s) does not answer", n->jobs->ops->name);
        return -1;
    }
    if (queue_ping(n->queue) != QUEUE_OK) {
        snprintf(why, whylen, "the queue (%s) does not answer", n->queue->ops->name);
        return -1;
    }
    return 0;
}

void notifier_queue_settings(const struct config *cfg, struct queue_settings *s)
{
    queue_settings_default(s);
    s->max_attempts = (int)cfg->notify_max_attempts;
    s->retry_max_ms = cfg->notify_retry_max * 1000;
    s->lease_ms = cfg->queue_lease * 1000;
}

int notifier_check_config(const struct config *cfg, char *err, size_t errlen)
{
    if (!mail_address_valid(mail_from_address(cfg))) {
        snprintf(err, errlen, "%s: \"%.60s\" is not one valid email address",
                 cfg->mail_from != NULL       ? "MAIL_FROM"
                 : cfg->gmail_address != NULL ? "GMAIL_ADDRESS"
                                              : "SMTP_USER",
                 mail_from_address(cfg));
        return -1;
    }
    return 0;
}

struct notifier *notifier_start(const struct config *cfg, const struct notifier_deps *deps,
                                char *err, size_t errlen)
{
    if (notifier_check_config(cfg, err, errlen) != 0)
        return NULL;
    struct notifier *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->cfg = cfg;
    n->jobs = deps->jobs;
    n->queue = deps->queue;
    n->mail = deps->mail;
    n->from = mail_from_address(cfg);
    if (cfg->public_url != NULL)
        snprintf(n->public_url, sizeof(n->public_url), "%s", cfg->public_url);
    else
        snprintf(n->public_url, sizeof(n->public_url), "http://localhost:%ld",
                 cfg->gateway_port > 0 ? cfg->gateway_port : 8080);
    size_t len = strlen(n->public_url);
    while (len > 0 && n->public_url[len - 1] == '/')
        n->public_url[--len] = '\0';
    int rc = queue_consume(n->queue, cfg->mp3_queue, (int)cfg->notifier_workers, handle, n,
                           &n->consumer);
    if (rc != QUEUE_OK) {
        snprintf(err, errlen, "cannot consume %s: %s", cfg->mp3_queue, queue_strerror(rc));
        free(n);
        return NULL;
    }
    n->sweeper = ticker_start(0, DEAD_SWEEP_MS, sweep, n);
    if (n->sweeper == NULL)
        log_warn("dead-letter sweeper not started: dead letters stay in the queue", NULL);
    metrics_register(write_metrics, n);
    return n;
}

/* At the end of the grace period: the sends still running are abandoned
 * (they go back to the queue), so a stop takes at most that long. */
static void abandon_sends(void *arg)
{
    struct notifier *n = arg;
    atomic_store(&n->cancel, 1);
}

void notifier_stop(struct notifier *n, int grace_seconds)
{
    if (n == NULL)
        return;
    atomic_store(&n->deadline, mono_ms() + (long long)grace_seconds * 1000);
    struct ticker *deadline = ticker_start((long)grace_seconds * 1000, 3600000, abandon_sends, n);
    if (deadline == NULL)
        atomic_store(&n->cancel, 1);
    queue_consumer_stop(n->consumer);
    ticker_stop(deadline);
    ticker_stop(n->sweeper);
    metrics_unregister(n);
    free(n);
}
