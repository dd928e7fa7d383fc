/*
 * queue_bench: confirmed publishes per second and consumed messages per
 * second of one queue backend. bench/queue.sh runs it for each backend.
 *
 *   queue_bench sqlite PATH|amqp URL MESSAGES PUBLISHERS PREFETCH
 *
 * Publishes MESSAGES bodies of 200 bytes from PUBLISHERS threads into a
 * fresh queue (each publish waits for its confirm or commit), then starts
 * one consumer with PREFETCH workers that acks each message, and prints
 * "PUBLISHES_PER_S CONSUMED_PER_S".
 */
#include "queue/queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct queue *q;
static char qname[64];
static long per_thread;
static atomic_long consumed, failed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *publisher(void *arg)
{
    (void)arg;
    char body[200];
    memset(body, 'b', sizeof(body));
    for (long i = 0; i < per_thread; i++)
        if (queue_publish(q, qname, body, sizeof(body), "bench") != QUEUE_OK)
            atomic_fetch_add(&failed, 1);
    return NULL;
}

static enum queue_verdict ack(const struct queue_msg *m, void *ctx)
{
    (void)m;
    (void)ctx;
    atomic_fetch_add(&consumed, 1);
    return QUEUE_ACK;
}

static long arg_long(const char *s, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "queue_bench: bad number %s\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s sqlite PATH|amqp URL MESSAGES PUBLISHERS PREFETCH\n", argv[0]);
        return 2;
    }
    long total = arg_long(argv[3], 1, 10000000);
    long pubs = arg_long(argv[4], 1, 256);
    int prefetch = (int)arg_long(argv[5], 1, 1024);
    per_thread = total / pubs;
    total = per_thread * pubs;
    struct queue_settings s;
    queue_settings_default(&s);
    char err[256] = "";
    q = strcmp(argv[1], "amqp") == 0 ? queue_amqp_new(argv[2], &s, err, sizeof(err))
                                     : queue_sqlite_new(argv[2], &s, err, sizeof(err));
    if (q == NULL) {
        fprintf(stderr, "queue_bench: %s\n", err);
        return 1;
    }
    snprintf(qname, sizeof(qname), "bench-%d-%ld", (int)getpid(), (long)time(NULL));
    int rc = 1;
    pthread_t *t = calloc((size_t)pubs, sizeof(*t));
    if (t == NULL || queue_declare(q, qname) != QUEUE_OK) {
        fprintf(stderr, "queue_bench: cannot declare %s\n", qname);
        goto out;
    }
    double t0 = now_s();
    for (long i = 0; i < pubs; i++)
        pthread_create(&t[i], NULL, publisher, NULL);
    for (long i = 0; i < pubs; i++)
        pthread_join(t[i], NULL);
    double pub_s = now_s() - t0;
    if (atomic_load(&failed) > 0) {
        fprintf(stderr, "queue_bench: %ld publishes failed\n", atomic_load(&failed));
        goto out;
    }
    struct queue_consumer *c = NULL;
    t0 = now_s();
    if (queue_consume(q, qname, prefetch, ack, NULL, &c) != QUEUE_OK) {
        fprintf(stderr, "queue_bench: cannot consume\n");
        goto out;
    }
    while (atomic_load(&consumed) < total && now_s() - t0 < 300) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double con_s = now_s() - t0;
    queue_consumer_stop(c);
    if (atomic_load(&consumed) < total) {
        fprintf(stderr, "queue_bench: only %ld of %ld consumed\n", atomic_load(&consumed), total);
        goto out;
    }
    printf("%.0f %.0f\n", (double)total / pub_s, (double)total / con_s);
    rc = 0;
out:
    free(t);
    queue_free(q);
    return rc;
}
