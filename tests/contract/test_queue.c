/*
 * Contract suite for the queue interface: the same tests against every
 * backend. Usage: test_queue_contract sqlite|amqp. The amqp run uses the
 * RabbitMQ that scripts/test-services.sh started (VID2MP3_TEST_AMQP_URL),
 * stops and restarts it for the outage tests, and fails when it is missing.
 * Every test uses queue names of its own.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

#define RETRY_BASE_MS 200
#define LEASE_MS 500

static const char *backend;
static char *tmpdir;
static struct queue *q;
static struct queue_settings settings;
static char qname[64];

static bool is_amqp(void)
{
    return strcmp(backend, "amqp") == 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static struct queue *open_backend(const struct queue_settings *s)
{
    char err[256] = "";
    struct queue *h;
    if (is_amqp()) {
        h = queue_amqp_new(th_need_env("VID2MP3_TEST_AMQP_URL"), s, err, sizeof(err));
    } else {
        char path[512];
        snprintf(path, sizeof(path), "%s/queue.db", tmpdir);
        h = queue_sqlite_new(path, s, err, sizeof(err));
    }
    if (h == NULL)
        fail_msg("cannot open %s backend: %s", backend, err);
    return h;
}

static void unique_name(char *out, size_t len, const char *tag)
{
    static atomic_int counter;
    unsigned r = 0;
    FILE *f = fopen("/dev/urandom", "r");
    assert_non_null(f);
    assert_int_equal(fread(&r, sizeof(r), 1, f), 1);
    fclose(f);
    snprintf(out, len, "t-%s-%d-%d-%08x", tag, (int)getpid(), atomic_fetch_add(&counter, 1), r);
}

static int setup(void **state)
{
    (void)state;
    tmpdir = th_tmpdir();
    queue_settings_default(&settings);
    settings.max_attempts = 3;
    settings.retry_base_ms = RETRY_BASE_MS;
    settings.retry_max_ms = 2000;
    settings.lease_ms = LEASE_MS;
    q = open_backend(&settings);
    unique_name(qname, sizeof(qname), "q");
    assert_int_equal(queue_declare(q, qname), QUEUE_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    queue_free(q);
    q = NULL;
    th_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/* ---------- a recording handler ---------- */

#define REC_MAX 4096

struct delivery {
    char *body;
    size_t len;
    int attempt;
    char request_id[80];
    long long at_ms;
};

struct rec {
    pthread_mutex_t lock;
    int n;
    struct delivery d[REC_MAX];
    enum queue_verdict verdict;
    long sleep_ms; /* per handler call */
    atomic_int running, max_running;
    unsigned char *seen; /* for numbered bodies "m<i>": seen[i] counts */
    int seen_n;
};

static struct rec *rec_new(enum queue_verdict v, long sleep)
{
    struct rec *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    pthread_mutex_init(&r->lock, NULL);
    r->verdict = v;
    r->sleep_ms = sleep;
    return r;
}

static void rec_free(struct rec *r)
{
    for (int i = 0; i < r->n && i < REC_MAX; i++)
        free(r->d[i].body);
    free(r->seen);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static int rec_count(struct rec *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static enum queue_verdict record(const struct queue_msg *m, void *ctx)
{
    struct rec *r = ctx;
    int now = atomic_fetch_add(&r->running, 1) + 1;
    int max = atomic_load(&r->max_running);
    while (now > max && !atomic_compare_exchange_weak(&r->max_running, &max, now))
        ;
    if (r->sleep_ms > 0)
        sleep_ms(r->sleep_ms);
    pthread_mutex_lock(&r->lock);
    if (r->seen != NULL && m->len > 1 && m->body[0] == 'm') {
        long i = strtol(m->body + 1, NULL, 10);
        if (i >= 0 && i < r->seen_n && r->seen[i] < 255)
            r->seen[i]++;
    } else if (r->n < REC_MAX) {
        struct delivery *d = &r->d[r->n];
        d->body = malloc(m->len + 1);
        assert_non_null(d->body);
        memcpy(d->body, m->body, m->len);
        d->len = m->len;
        d->attempt = m->attempt;
        snprintf(d->request_id, sizeof(d->request_id), "%s", m->request_id);
        d->at_ms = now_ms();
    }
    r->n++;
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_sub(&r->running, 1);
    return r->verdict;
}

/* Waits up to ms for r to have at least n deliveries. */
static bool wait_count(struct rec *r, int n, long ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end) {
        if (rec_count(r) >= n)
            return true;
        sleep_ms(10);
    }
    return rec_count(r) >= n;
}

static bool wait_dead(struct queue *h, const char *name, long want, long ms)
{
    long long end = now_ms() + ms;
    long n = -1;
    do {
        assert_int_equal(queue_dead_count(h, name, &n), QUEUE_OK);
        if (n >= want)
            return true;
        sleep_ms(20);
    } while (now_ms() < end);
    return false;
}

static void services(const char *cmd)
{
    assert_int_equal(th_services(cmd), 0);
}

/* ---------- tests ---------- */

static void round_trip(void **state)
{
    (void)state;
    static char big[QUEUE_BODY_MAX + 1];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    const char bin[] = {'a', '\0', 'b', '\0', '\xff', '\n'};
    assert_int_equal(queue_publish(q, qname, "{\"video_fid\":\"v1\"}", 18, "req-1"), QUEUE_OK);
    assert_int_equal(queue_publish(q, qname, bin, sizeof(bin), NULL), QUEUE_OK);
    assert_int_equal(queue_publish(q, qname, big, QUEUE_BODY_MAX, "req-big"), QUEUE_OK);
    assert_int_equal(queue_publish(q, qname, "", 0, "req-empty"), QUEUE_OK);
    /* refused: too large, bad names */
    assert_int_equal(queue_publish(q, qname, big, QUEUE_BODY_MAX + 1, "x"), QUEUE_EINVAL);
    assert_int_equal(queue_publish(q, "bad name", "x", 1, NULL), QUEUE_EINVAL);
    assert_int_equal(queue_publish(q, "", "x", 1, NULL), QUEUE_EINVAL);
    assert_int_equal(queue_declare(q, "a/b"), QUEUE_EINVAL);
    assert_false(queue_name_valid("x\xc3\xa9"));
    assert_true(queue_name_valid("video.v2_x-1"));
    long depth = -1;
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 4);

    struct rec *r = rec_new(QUEUE_ACK, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 4, 10000));
    queue_consumer_stop(c);
    assert_int_equal(r->n, 4);
    /* prefetch 1 on a fresh queue: in publish order */
    assert_int_equal(r->d[0].len, 18);
    assert_memory_equal(r->d[0].body, "{\"video_fid\":\"v1\"}", 18);
    assert_string_equal(r->d[0].request_id, "req-1");
    assert_int_equal(r->d[0].attempt, 1);
    assert_int_equal(r->d[1].len, sizeof(bin));
    assert_memory_equal(r->d[1].body, bin, sizeof(bin));
    assert_string_equal(r->d[1].request_id, "");
    assert_int_equal(r->d[2].len, QUEUE_BODY_MAX);
    assert_memory_equal(r->d[2].body, big, QUEUE_BODY_MAX);
    assert_string_equal(r->d[2].request_id, "req-big");
    assert_int_equal(r->d[3].len, 0);
    assert_string_equal(r->d[3].request_id, "req-empty");
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 0);
    long dead = -1;
    assert_int_equal(queue_dead_count(q, qname, &dead), QUEUE_OK);
    assert_int_equal(dead, 0);
    assert_int_equal(queue_ping(q), QUEUE_OK);
    rec_free(r);
}

static enum queue_verdict hang(const struct queue_msg *m, void *ctx)
{
    (void)m;
    int fd = *(int *)ctx;
    if (write(fd, "x", 1) != 1)
        _exit(3);
    for (;;)
        pause();
    return QUEUE_ACK;
}

/* A consumer in another process takes the message and is killed (-9)
 * before its verdict: the message comes again, with a higher attempt. */
/* A consumer in another process takes the next message of qname and is
 * killed (kill -9) while its handler holds it. */
static void consumer_dies_holding_message(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        struct queue *cq = open_backend(&settings);
        struct queue_consumer *c = NULL;
        if (queue_consume(cq, qname, 1, hang, &p[1], &c) != QUEUE_OK)
            _exit(2);
        for (;;)
            pause();
    }
    close(p[1]);
    struct pollfd pfd = {p[0], POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 15000), 1);
    char b;
    assert_int_equal(read(p[0], &b, 1), 1);
    close(p[0]);
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void redelivered_after_consumer_dies(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "job", 3, "req-kill"), QUEUE_OK);
    consumer_dies_holding_message();

    struct rec *r = rec_new(QUEUE_ACK, 0);
    struct queue_consumer *c = NULL;
    long long t0 = now_ms();
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 1, 15000));
    queue_consumer_stop(c);
    assert_int_equal(r->n, 1);
    assert_memory_equal(r->d[0].body, "job", 3);
    assert_string_equal(r->d[0].request_id, "req-kill");
    assert_int_equal(r->d[0].attempt, 2);
    if (!is_amqp())
        assert_true(r->d[0].at_ms - t0 <= LEASE_MS + 3000);
    rec_free(r);
}

/* A message that kills its consumer every time (a poison message) is
 * dead-lettered after max_attempts deliveries instead of looping forever. */
static void poison_message_dead_lettered(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "poison", 6, NULL), QUEUE_OK);
    for (int i = 0; i < settings.max_attempts; i++)
        consumer_dies_holding_message();
    long dead = 0, depth = -1;
    for (int i = 0; i < 150 && dead == 0; i++) {
        if (!is_amqp())
            sleep_ms(100); /* SQLite: the last lease has to run out first */
        struct rec *r = rec_new(QUEUE_ACK, 0);
        struct queue_consumer *c = NULL;
        assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
        sleep_ms(is_amqp() ? 300 : 50);
        queue_consumer_stop(c);
        assert_int_equal(r->n, 0); /* never handed to a handler again */
        rec_free(r);
        assert_int_equal(queue_dead_count(q, qname, &dead), QUEUE_OK);
    }
    assert_int_equal(dead, 1);
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 0);
}

/* Stopping a consumer waits for its running handler and keeps that
 * message's lease alive meanwhile: another consumer never gets it. */
static void stop_keeps_running_message(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "held", 4, NULL), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_ACK, 3 * LEASE_MS);
    struct queue_consumer *c1 = NULL, *c2 = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c1), QUEUE_OK);
    for (int i = 0; i < 1500 && atomic_load(&r->running) == 0; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&r->running), 1);
    struct queue *q2 = open_backend(&settings);
    assert_int_equal(queue_consume(q2, qname, 1, record, r, &c2), QUEUE_OK);
    queue_consumer_stop(c1); /* returns after the handler, 3 leases later */
    assert_int_equal(r->n, 1);
    sleep_ms(2 * LEASE_MS);
    queue_consumer_stop(c2);
    queue_free(q2);
    assert_int_equal(r->n, 1);
    assert_int_equal(atomic_load(&r->max_running), 1);
    long depth = -1;
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 0);
    rec_free(r);
}

/* A graceful stop hands back what no handler started without counting an
 * attempt: every message is then handled exactly once, at attempt 1. */
static void graceful_stop_counts_no_attempts(void **state)
{
    (void)state;
    for (int i = 0; i < 8; i++) {
        char body[8];
        int n = snprintf(body, sizeof(body), "g%d", i);
        assert_int_equal(queue_publish(q, qname, body, (size_t)n, NULL), QUEUE_OK);
    }
    struct rec *r = rec_new(QUEUE_ACK, 150);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 2, record, r, &c), QUEUE_OK);
    sleep_ms(250); /* two handled or running, more prefetched */
    queue_consumer_stop(c);
    int first = r->n;
    assert_true(first >= 1 && first < 8);
    assert_int_equal(queue_consume(q, qname, 2, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 8, 15000));
    sleep_ms(300);
    queue_consumer_stop(c);
    assert_int_equal(r->n, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(r->d[i].attempt, 1);
    rec_free(r);
}

/* A handler that runs for several leases keeps its message: it is not
 * handed to another worker meanwhile. */
static void long_handler_keeps_message(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "slow", 4, NULL), QUEUE_OK);
    /* Longer than what keeps a consumer alive: 4 leases (SQLite), or 35 s,
     * past the broker's limit of two missed 10 s heartbeats (RabbitMQ), so
     * a handler that starved its connection's heartbeats would lose it. */
    long handler_ms = is_amqp() ? 35000 : 4 * LEASE_MS;
    struct rec *r = rec_new(QUEUE_ACK, handler_ms);
    struct queue_consumer *c1 = NULL, *c2 = NULL;
    assert_int_equal(queue_consume(q, qname, 2, record, r, &c1), QUEUE_OK);
    assert_int_equal(queue_consume(q, qname, 2, record, r, &c2), QUEUE_OK);
    assert_true(wait_count(r, 1, handler_ms + 15000));
    sleep_ms(LEASE_MS);
    queue_consumer_stop(c1);
    queue_consumer_stop(c2);
    assert_int_equal(r->n, 1);
    assert_int_equal(atomic_load(&r->max_running), 1);
    long depth = -1;
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 0);
    rec_free(r);
}

static void prefetch_respected(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++)
        assert_int_equal(queue_publish(q, qname, "p", 1, NULL), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_ACK, 100);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 2, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 10, 15000));
    queue_consumer_stop(c);
    assert_int_equal(r->n, 10);
    assert_int_equal(atomic_load(&r->max_running), 2);
    struct queue_consumer *bad = NULL;
    assert_int_equal(queue_consume(q, qname, 0, record, r, &bad), QUEUE_EINVAL);
    assert_null(bad);
    rec_free(r);
}

/* Always retrying: deliveries 1..max_attempts, each after the backoff
 * delay, then the dead-letter queue. */
static void retry_delays_then_dead(void **state)
{
    (void)state;
    assert_int_equal(queue_retry_delay_ms(&settings, 1), RETRY_BASE_MS);
    assert_int_equal(queue_retry_delay_ms(&settings, 2), 2 * RETRY_BASE_MS);
    assert_int_equal(queue_retry_delay_ms(&settings, 30), 2000);
    assert_int_equal(queue_publish(q, qname, "again", 5, "req-retry"), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_RETRY, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 3, 15000));
    assert_true(wait_dead(q, qname, 1, 10000));
    sleep_ms(3 * RETRY_BASE_MS); /* no fourth delivery */
    queue_consumer_stop(c);
    assert_int_equal(r->n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r->d[i].attempt, i + 1);
        assert_string_equal(r->d[i].request_id, "req-retry");
        assert_memory_equal(r->d[i].body, "again", 5);
    }
    long gap1 = (long)(r->d[1].at_ms - r->d[0].at_ms);
    long gap2 = (long)(r->d[2].at_ms - r->d[1].at_ms);
    /* 2 ms of slack: the queue times in whole ms of wall-clock time, the test
     * in whole ms of monotonic time, and the two truncations can disagree */
    if (gap1 < RETRY_BASE_MS - 2 || gap2 < 2 * RETRY_BASE_MS - 2)
        fail_msg("retried too early: gaps %ld ms and %ld ms", gap1, gap2);
    if (gap1 > RETRY_BASE_MS + 3000 || gap2 > 2 * RETRY_BASE_MS + 3000)
        fail_msg("retried too late: gaps %ld ms and %ld ms", gap1, gap2);
    long n = -1;
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(queue_depth(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    rec_free(r);
}

/* A retry waits its delay while a message behind it flows at once, and
 * the delayed one counts in depth. */
static void retry_does_not_block_others(void **state)
{
    (void)state;
    settings.retry_base_ms = 1500;
    struct queue *h = open_backend(&settings);
    assert_int_equal(queue_publish(h, qname, "first", 5, NULL), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_RETRY, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(h, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 1, 10000));
    r->verdict = QUEUE_ACK;
    assert_int_equal(queue_publish(h, qname, "second", 6, NULL), QUEUE_OK);
    assert_true(wait_count(r, 2, 10000));
    /* the order is the point: "second" did not wait behind the retry */
    assert_memory_equal(r->d[1].body, "second", 6);
    long depth = -1;
    assert_int_equal(queue_depth(h, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 1); /* "first", waiting for its retry */
    assert_true(wait_count(r, 3, 10000));
    queue_consumer_stop(c);
    assert_memory_equal(r->d[2].body, "first", 5);
    assert_int_equal(r->d[2].attempt, 2);
    /* 2 ms of slack, as in retry_delays_then_dead: wall-clock ms in the
     * queue, monotonic ms here */
    long gap = (long)(r->d[2].at_ms - r->d[0].at_ms);
    if (gap < 1500 - 2)
        fail_msg("retried too early: after %ld ms", gap);
    queue_free(h);
    rec_free(r);
}

/* Releases the first RELEASES deliveries (more than max_attempts), then
 * acks. */
#define RELEASES 5
static enum queue_verdict release_then_ack(const struct queue_msg *m, void *ctx)
{
    record(m, ctx);
    return rec_count(ctx) <= RELEASES ? QUEUE_RELEASE : QUEUE_ACK;
}

/* A released delivery comes again at once and uncounted: released more
 * often than max_attempts, the message is still delivered as attempt 1
 * and never dead-lettered (a retry would be, after 3). */
static void release_counts_no_attempt(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "handed", 6, "req-release"), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_ACK, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, release_then_ack, r, &c), QUEUE_OK);
    assert_true(wait_count(r, RELEASES + 1, 15000));
    sleep_ms(2 * RETRY_BASE_MS); /* nothing more comes */
    queue_consumer_stop(c);
    assert_int_equal(r->n, RELEASES + 1);
    for (int i = 0; i < RELEASES + 1; i++) {
        assert_int_equal(r->d[i].attempt, 1);
        assert_string_equal(r->d[i].request_id, "req-release");
        assert_memory_equal(r->d[i].body, "handed", 6);
    }
    long n = -1;
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(queue_depth(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    rec_free(r);
}

/* Release keeps a message's earlier count: after one retry it is attempt
 * 2, and stays 2 however often it is released. */
static enum queue_verdict retry_then_release_then_ack(const struct queue_msg *m, void *ctx)
{
    record(m, ctx);
    int n = rec_count(ctx);
    return n == 1 ? QUEUE_RETRY : n <= 3 ? QUEUE_RELEASE : QUEUE_ACK;
}

static void release_keeps_earlier_attempts(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "again", 5, NULL), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_ACK, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, retry_then_release_then_ack, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 4, 15000));
    sleep_ms(2 * RETRY_BASE_MS);
    queue_consumer_stop(c);
    assert_int_equal(r->n, 4);
    assert_int_equal(r->d[0].attempt, 1);
    for (int i = 1; i < 4; i++)
        assert_int_equal(r->d[i].attempt, 2);
    long n = -1;
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    rec_free(r);
}

static void reject_goes_dead_at_once(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "poison", 6, NULL), QUEUE_OK);
    assert_int_equal(queue_publish(q, qname, "poison", 6, NULL), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_REJECT, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_dead(q, qname, 2, 5000));
    sleep_ms(2 * RETRY_BASE_MS);
    queue_consumer_stop(c);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->d[0].attempt, 1);
    assert_int_equal(r->d[1].attempt, 1);
    long n = -1;
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(queue_depth(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    /* dead letters of one queue are not another's */
    char other[64];
    unique_name(other, sizeof(other), "o");
    assert_int_equal(queue_declare(q, other), QUEUE_OK);
    assert_int_equal(queue_dead_count(q, other, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    rec_free(r);
}

struct drain {
    int keep; /* what the callback answers */
    int seen;
    char body[32];
    char request_id[32];
};

static int on_dead(const struct queue_msg *m, void *ctx)
{
    struct drain *d = ctx;
    d->seen++;
    snprintf(d->body, sizeof(d->body), "%.*s", (int)m->len, m->body);
    snprintf(d->request_id, sizeof(d->request_id), "%s", m->request_id);
    return d->keep;
}

static void dead_letters_are_drained(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "first", 5, "req-dead-1"), QUEUE_OK);
    assert_int_equal(queue_publish(q, qname, "second", 6, "req-dead-2"), QUEUE_OK);
    struct rec *r = rec_new(QUEUE_REJECT, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_dead(q, qname, 2, 5000));
    queue_consumer_stop(c);
    rec_free(r);

    /* kept: stays, and the drain ends at it */
    struct drain d = {.keep = 1};
    int drained = -1;
    assert_int_equal(queue_drain_dead(q, qname, 10, on_dead, &d, &drained), QUEUE_OK);
    assert_int_equal(drained, 0);
    assert_int_equal(d.seen, 1);
    assert_string_equal(d.body, "first");
    assert_string_equal(d.request_id, "req-dead-1");
    long n = -1;
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 2);
    /* removed, oldest first, up to max */
    struct drain one = {.keep = 0};
    assert_int_equal(queue_drain_dead(q, qname, 1, on_dead, &one, &drained), QUEUE_OK);
    assert_int_equal(drained, 1);
    assert_string_equal(one.body, "first");
    struct drain rest = {.keep = 0};
    assert_int_equal(queue_drain_dead(q, qname, 10, on_dead, &rest, &drained), QUEUE_OK);
    assert_int_equal(drained, 1);
    assert_string_equal(rest.body, "second");
    assert_int_equal(queue_dead_count(q, qname, &n), QUEUE_OK);
    assert_int_equal(n, 0);
    /* nothing left: nothing called */
    struct drain none = {.keep = 0};
    assert_int_equal(queue_drain_dead(q, qname, 10, on_dead, &none, &drained), QUEUE_OK);
    assert_int_equal(drained, 0);
    assert_int_equal(none.seen, 0);
}

static void reopen_keeps_messages(void **state)
{
    (void)state;
    assert_int_equal(queue_publish(q, qname, "durable", 7, "req-d"), QUEUE_OK);
    queue_free(q);
    q = open_backend(&settings);
    long depth = -1;
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 1);
    struct rec *r = rec_new(QUEUE_ACK, 0);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 1, record, r, &c), QUEUE_OK);
    assert_true(wait_count(r, 1, 10000));
    queue_consumer_stop(c);
    assert_string_equal(r->d[0].request_id, "req-d");
    rec_free(r);
}

/* ---------- many publishers and consumers ---------- */

#define PUBLISHERS 4
#define PER_PUBLISHER 250

struct pub_arg {
    int first;
    atomic_int *failures;
};

static void *publisher(void *arg)
{
    struct pub_arg *a = arg;
    char body[32];
    for (int i = 0; i < PER_PUBLISHER; i++) {
        int n = snprintf(body, sizeof(body), "m%d", a->first + i);
        if (queue_publish(q, qname, body, (size_t)n, NULL) != QUEUE_OK)
            atomic_fetch_add(a->failures, 1);
    }
    return NULL;
}

static int seen_all(struct rec *r)
{
    int missing = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->seen_n; i++)
        missing += r->seen[i] == 0;
    pthread_mutex_unlock(&r->lock);
    return missing;
}

static void many_publishers_and_consumers(void **state)
{
    (void)state;
    const int total = PUBLISHERS * PER_PUBLISHER;
    struct rec *r = rec_new(QUEUE_ACK, 0);
    r->seen = calloc((size_t)total, 1);
    r->seen_n = total;
    /* Leases long enough that no message is taken again because a
     * consumer stalled on a loaded machine (the 500 ms lease of the other
     * tests did, under ASan): this test is about concurrency, not leases. */
    struct queue_settings patient = settings;
    patient.lease_ms = 20000;
    struct queue *h1 = open_backend(&patient), *h2 = open_backend(&patient);
    struct queue_consumer *c[3] = {NULL, NULL, NULL};
    assert_int_equal(queue_consume(h1, qname, 4, record, r, &c[0]), QUEUE_OK);
    assert_int_equal(queue_consume(h1, qname, 2, record, r, &c[1]), QUEUE_OK);
    assert_int_equal(queue_consume(h2, qname, 3, record, r, &c[2]), QUEUE_OK);
    pthread_t t[PUBLISHERS];
    struct pub_arg a[PUBLISHERS];
    atomic_int failures = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        a[i] = (struct pub_arg){i * PER_PUBLISHER, &failures};
        assert_int_equal(pthread_create(&t[i], NULL, publisher, &a[i]), 0);
    }
    for (int i = 0; i < PUBLISHERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    long long end = now_ms() + 30000;
    while (seen_all(r) > 0 && now_ms() < end)
        sleep_ms(20);
    for (int i = 0; i < 3; i++)
        queue_consumer_stop(c[i]);
    if (seen_all(r) > 0)
        fail_msg("%d of %d messages never delivered", seen_all(r), total);
    if (!is_amqp()) /* acked in one process: nothing twice */
        assert_int_equal(r->n, total);
    long depth = -1;
    assert_int_equal(queue_depth(q, qname, &depth), QUEUE_OK);
    assert_int_equal(depth, 0);
    queue_free(h1);
    queue_free(h2);
    rec_free(r);
}

/* ---------- an unreachable backend ---------- */

static void unavailable_backend(void **state)
{
    (void)state;
    char err[256] = "";
    if (!is_amqp()) {
        assert_null(queue_sqlite_new("/nonexistent-dir/x/queue.db", &settings, err, sizeof(err)));
        assert_non_null(strstr(err, "cannot open"));
        return;
    }
    char url[128];
    snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d/", th_free_port());
    struct queue *dead = queue_amqp_new(url, &settings, err, sizeof(err));
    assert_non_null(dead);
    assert_int_equal(queue_publish(dead, qname, "x", 1, NULL), QUEUE_EUNAVAIL);
    assert_int_equal(queue_ping(dead), QUEUE_EUNAVAIL);
    long n;
    assert_int_equal(queue_depth(dead, qname, &n), QUEUE_EUNAVAIL);
    queue_free(dead);
    /* a consumer of a dead broker starts and stops cleanly */
    dead = queue_amqp_new(url, &settings, err, sizeof(err));
    struct queue_consumer *c = NULL;
    struct rec *r = rec_new(QUEUE_ACK, 0);
    assert_int_equal(queue_consume(dead, qname, 2, record, r, &c), QUEUE_OK);
    sleep_ms(300);
    queue_consumer_stop(c);
    queue_free(dead);
    rec_free(r);
    assert_null(queue_amqp_new("http://x/", &settings, err, sizeof(err)));
}

/* The real broker stops and comes back: publishing fails while it is down
 * (never a false success), every confirmed message is consumed, and the
 * consumer resumes by itself. */
static void broker_restart_mid_stream(void **state)
{
    (void)state;
    const int total = 400;
    struct rec *r = rec_new(QUEUE_ACK, 2);
    r->seen = calloc((size_t)total, 1);
    r->seen_n = total;
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(q, qname, 4, record, r, &c), QUEUE_OK);
    char body[32];
    int confirmed = 0;
    for (int i = 0; i < total / 2; i++) {
        int n = snprintf(body, sizeof(body), "m%d", i);
        assert_int_equal(queue_publish(q, qname, body, (size_t)n, NULL), QUEUE_OK);
        confirmed++;
    }
    services("rabbitmq-stop");
    int n = snprintf(body, sizeof(body), "m%d", total - 1);
    assert_int_equal(queue_publish(q, qname, body, (size_t)n, NULL), QUEUE_EUNAVAIL);
    assert_int_equal(queue_ping(q), QUEUE_EUNAVAIL);
    services("rabbitmq-start");
    for (int i = total / 2; i < total; i++) {
        n = snprintf(body, sizeof(body), "m%d", i);
        int rc = queue_publish(q, qname, body, (size_t)n, NULL);
        assert_int_equal(rc, QUEUE_OK);
        confirmed++;
    }
    assert_int_equal(confirmed, total);
    long long end = now_ms() + 60000;
    while (seen_all(r) > 0 && now_ms() < end)
        sleep_ms(50);
    int missing = seen_all(r);
    queue_consumer_stop(c);
    if (missing > 0)
        fail_msg("%d of %d confirmed messages lost across the restart", missing, total);
    rec_free(r);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "sqlite") != 0 && strcmp(argv[1], "amqp") != 0)) {
        fprintf(stderr, "usage: %s sqlite|amqp\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(redelivered_after_consumer_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(poison_message_dead_lettered, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_keeps_running_message, setup, teardown),
        cmocka_unit_test_setup_teardown(graceful_stop_counts_no_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(long_handler_keeps_message, setup, teardown),
        cmocka_unit_test_setup_teardown(prefetch_respected, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_delays_then_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_does_not_block_others, setup, teardown),
        cmocka_unit_test_setup_teardown(reject_goes_dead_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(release_counts_no_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(release_keeps_earlier_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_letters_are_drained, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(many_publishers_and_consumers, setup, teardown),
        cmocka_unit_test_setup_teardown(unavailable_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(broker_restart_mid_stream, setup, teardown),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);
    if (!is_amqp())
        n--; /* the last test restarts the broker: there is none */
    return _cmocka_run_group_tests(backend, tests, n, NULL, NULL);
}
