/*
 * queue: durable work queues (DESIGN §5), behind one interface with two
 * backends: RabbitMQ over AMQP 0-9-1 (queue_amqp.c, rabbitmq-c) and a
 * SQLite-backed queue (queue_sqlite.c, DATA_DIR/queue.db).
 *
 * Delivery is at least once. A message lives in queue NAME; a handler ends
 * each delivery with a verdict:
 *   QUEUE_ACK     done: the message is gone;
 *   QUEUE_RETRY   a transient failure: delivered again after a delay that
 *                 doubles with each attempt (retry_base_ms, 2x, 4x ... capped
 *                 at retry_max_ms); after max_attempts deliveries it goes to
 *                 the dead-letter queue NAME.dead instead;
 *   QUEUE_REJECT  a permanent failure: straight to NAME.dead;
 *   QUEUE_RELEASE not done, through no fault of the message (its handler
 *                 was stopped: a graceful shutdown): delivered again at
 *                 once, and the delivery is not counted (the next one has
 *                 the same attempt number), so a message stopped again and
 *                 again is never dead-lettered for it.
 * A consumer that dies without a verdict (kill -9) gets its messages
 * delivered again (RabbitMQ: the connection closes; SQLite: the message's
 * lease expires), and that counts as an attempt: a message that kills its
 * consumer max_attempts times goes to NAME.dead without being handed to a
 * handler again. A graceful stop counts nothing. Handlers must therefore be
 * idempotent; they get the attempt number to tell a first delivery from a
 * repeat.
 *
 * Whoever must act on a dead letter (fail the job and tell its owner)
 * takes it from NAME.dead with drain_dead().
 *
 * publish() returns only once the message is durable (RabbitMQ: the
 * broker's publisher confirm for a persistent message on a durable queue;
 * SQLite: the transaction committed); when it cannot be, it returns an
 * error, never a silent success.
 */
#ifndef VID2MP3_QUEUE_H
#define VID2MP3_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

#define QUEUE_BODY_MAX (64 * 1024) /* larger bodies are refused by publish */
#define QUEUE_NAME_MAX 100         /* [A-Za-z0-9._-], without ".dead"/".retry" suffixes */

enum {
    QUEUE_OK = 0,
    QUEUE_EUNAVAIL = -1, /* broker or file unreachable, or the publish was not confirmed */
    QUEUE_EINVAL = -2,   /* bad queue name, body too large */
    QUEUE_EINTERNAL = -3,
};

struct queue_settings {
    int max_attempts;   /* deliveries before a retried message is dead-lettered (5) */
    long retry_base_ms; /* delay before the 2nd delivery (1000) */
    long retry_max_ms;  /* cap on the delay (60000) */
    long lease_ms;      /* SQLite: how long a taken message stays invisible
                           without a sign of life from its consumer (30000) */
};

/* The defaults in the comments above. */
void queue_settings_default(struct queue_settings *s);

struct queue_msg {
    const char *body; /* valid during the handler call */
    size_t len;
    int attempt;            /* 1 on the first delivery */
    const char *request_id; /* "" when the publisher gave none */
};

enum queue_verdict { QUEUE_ACK, QUEUE_RETRY, QUEUE_REJECT, QUEUE_RELEASE };

/* Runs in a worker thread of the consumer; may block for minutes. */
typedef enum queue_verdict (*queue_handler_fn)(const struct queue_msg *m, void *ctx);

/* Called by drain_dead for one dead letter: 0 removes it from NAME.dead,
 * non-zero keeps it there (and ends the drain). */
typedef int (*queue_dead_fn)(const struct queue_msg *m, void *ctx);

/* A running consumer; every backend's consumer struct starts with this. */
struct queue_consumer {
    /* Stops taking messages, waits for handlers in progress to finish and
     * their verdicts to be applied, then frees the consumer. */
    void (*stop)(struct queue_consumer *c);
};

struct queue_ops {
    const char *name; /* "amqp", "sqlite" */
    /* Creates NAME, its retry machinery and NAME.dead if missing. */
    int (*declare)(void *h, const char *queue);
    int (*publish)(void *h, const char *queue, const void *body, size_t len,
                   const char *request_id);
    /* Starts handling messages of queue, at most prefetch (>= 1) at once,
     * each in a worker thread. Returns at once. */
    int (*consume)(void *h, const char *queue, int prefetch, queue_handler_fn fn, void *ctx,
                   struct queue_consumer **out);
    /* Messages waiting in NAME.dead (for tests, metrics and operators). */
    int (*dead_count)(void *h, const char *queue, long *out);
    /* Hands up to max dead letters of NAME.dead, oldest first, to fn in the
     * calling thread; *drained gets how many were removed. A letter is
     * removed only after fn returned 0 (a crash in between hands it over
     * again). */
    int (*drain_dead)(void *h, const char *queue, int max, queue_dead_fn fn, void *ctx,
                      int *drained);
    /* Messages waiting in NAME, ready or delayed for retry (not in flight). */
    int (*depth)(void *h, const char *queue, long *out);
    int (*ping)(void *h);
    void (*free)(void *h);
};

struct queue {
    const struct queue_ops *ops;
    void *h;
};

/*
 * Opens the backend the configuration selects (RABBITMQ_URL set: RabbitMQ,
 * else SQLite at DATA_DIR/queue.db), with max_attempts from MAX_ATTEMPTS.
 * A broker that is down is not an error here: calls fail with
 * QUEUE_EUNAVAIL until it is back, and consumers reconnect by themselves.
 */
struct queue *queue_open(const struct config *cfg, char *err, size_t errlen);
/* The same with the caller's settings (a consumer that retries on its own
 * schedule, like the notifier). */
struct queue *queue_open_with(const struct config *cfg, const struct queue_settings *s, char *err,
                              size_t errlen);
struct queue *queue_sqlite_new(const char *path, const struct queue_settings *s, char *err,
                               size_t errlen);
struct queue *queue_amqp_new(const char *url, const struct queue_settings *s, char *err,
                             size_t errlen);
void queue_free(struct queue *q);

static inline int queue_declare(struct queue *q, const char *name)
{
    return q->ops->declare(q->h, name);
}
static inline int queue_publish(struct queue *q, const char *name, const void *body, size_t len,
                                const char *request_id)
{
    return q->ops->publish(q->h, name, body, len, request_id);
}
static inline int queue_consume(struct queue *q, const char *name, int prefetch,
                                queue_handler_fn fn, void *ctx, struct queue_consumer **out)
{
    return q->ops->consume(q->h, name, prefetch, fn, ctx, out);
}
static inline void queue_consumer_stop(struct queue_consumer *c)
{
    if (c != NULL)
        c->stop(c);
}
static inline int queue_dead_count(struct queue *q, const char *name, long *out)
{
    return q->ops->dead_count(q->h, name, out);
}
static inline int queue_drain_dead(struct queue *q, const char *name, int max, queue_dead_fn fn,
                                   void *ctx, int *drained)
{
    return q->ops->drain_dead(q->h, name, max, fn, ctx, drained);
}
static inline int queue_depth(struct queue *q, const char *name, long *out)
{
    return q->ops->depth(q->h, name, out);
}
static inline int queue_ping(struct queue *q)
{
    return q->ops->ping(q->h);
}

/* True when name is 1..QUEUE_NAME_MAX of [A-Za-z0-9._-]. */
bool queue_name_valid(const char *name);

/* The delay before delivery number attempt + 1 (attempt >= 1). */
long queue_retry_delay_ms(const struct queue_settings *s, int attempt);

const char *queue_strerror(int code);

#endif
