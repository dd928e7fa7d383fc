/*
 * queue_amqp: the queue backend on RabbitMQ, AMQP 0-9-1 through rabbitmq-c.
 *
 * Topology, all on the default exchange and all durable:
 *   NAME              the work queue;
 *   NAME.dead         dead letters, published there by the consumer;
 *   NAME.retry.<ms>   one delay queue per retry delay, x-message-ttl <ms>,
 *                     dead-lettering back to NAME when the TTL runs out.
 *                     Every message in one of them has the same TTL, so the
 *                     head always expires first and a long delay never holds
 *                     up a short one.
 * Messages are persistent and carry two headers: x-attempt, the delivery
 * number the publish is for (1, then 2 for the first retry ...), and
 * x-request-id. A delivery the broker marks redelivered (its consumer died
 * without an ack, or the connection dropped) is not handed to a handler:
 * it is published again with x-attempt one higher (to NAME.dead once past
 * max_attempts) and the redelivery acked. The broker does not count
 * redeliveries on classic queues, so without this a message that crashes
 * its consumer every time would be redelivered forever.
 *
 * rabbitmq-c connections are not thread-safe and service heartbeats only
 * inside library calls, so every connection has one owner:
 *   - publishes, declares and counts share the handle's publisher
 *     connection under a mutex. It has no heartbeat (nobody would service
 *     it between calls); a stale one shows itself on the next call, which
 *     then retries once on a fresh connection. Every publish waits for the
 *     broker's confirm: a nack, a timeout or a lost connection is
 *     QUEUE_EUNAVAIL, never success.
 *   - each consumer has one I/O thread owning its connection (heartbeat
 *     HEARTBEAT_S). It hands deliveries to prefetch worker threads and
 *     applies their verdicts itself: an ack, or a confirmed publish to a
 *     retry or dead queue followed by the ack of the original, so a crash
 *     in between duplicates a message but never loses one. Between frames
 *     it sleeps in poll() on the socket and on a pipe the workers write
 *     to, never longer than a second, so heartbeats flow however long a
 *     handler runs. A lost connection is reopened with backoff from
 *     BACKOFF_MIN_MS to BACKOFF_MAX_MS; verdicts for deliveries of the lost
 *     connection are dropped, since the broker delivers those again.
 */
#include "queue/queue.h"

#include "core/log.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL 1
#define CONNECT_TIMEOUT_S 3
#define RPC_TIMEOUT_S 5
#define CONFIRM_TIMEOUT_MS 10000
#define HEARTBEAT_S 10
#define FRAME_MAX 131072
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REQUEST_ID_MAX 128
#define DECLARED_MAX 32 /* queue names remembered as declared, per connection */
#define HDR_ATTEMPT "x-attempt"
#define CONSUMER_TAG "vid2mp3" /* one consumer per connection: any fixed tag will do */
#define HDR_REQUEST_ID "x-request-id"

struct conn {
    amqp_connection_state_t st; /* NULL: not connected */
    bool broken;                /* must be closed without a handshake */
    uint64_t next_tag;          /* delivery tag of the next publish on CHANNEL */
    char declared[DECLARED_MAX][QUEUE_NAME_MAX + 1];
    int ndeclared;
};

struct aq {
    char *url_buf; /* amqp_parse_url points into it */
    struct amqp_connection_info info;
    struct queue_settings set;
    pthread_mutex_t pub_lock;
    struct conn pub;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- connections ---------- */

static void log_reply(const char *what, amqp_rpc_reply_t r)
{
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        log_warn("queue: amqp call failed", json_pack("{s:s, s:s}", "op", what, "detail",
                                                      amqp_error_string2(r.library_error)));
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        const amqp_bytes_t *text = NULL;
        int code = 0;
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            text = &m->reply_text;
            code = m->reply_code;
        } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            text = &m->reply_text;
            code = m->reply_code;
        }
        log_warn("queue: amqp broker refused",
                 json_pack("{s:s, s:i, s:s#}", "op", what, "code", code, "detail",
                           text != NULL ? (const char *)text->bytes : "",
                           text != NULL ? (int)text->len : 0));
    }
}

/* The last RPC's outcome: QUEUE_OK, or an error with the connection marked
 * broken (a library failure is EUNAVAIL, a broker refusal EINTERNAL). */
static int rpc_check(struct conn *c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c->st);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return QUEUE_OK;
    log_reply(what, r);
    c->broken = true;
    return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ? QUEUE_EINTERNAL : QUEUE_EUNAVAIL;
}

static void conn_close(struct conn *c)
{
    if (c->st == NULL)
        return;
    if (!c->broken) {
        amqp_channel_close(c->st, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(c->st, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c->st);
    c->st = NULL;
    c->broken = false;
    c->ndeclared = 0;
}

/* Opens c with a confirm-mode channel. QUEUE_OK or QUEUE_EUNAVAIL. */
static int conn_open(struct aq *a, struct conn *c, int heartbeat)
{
    c->broken = false;
    c->ndeclared = 0;
    c->next_tag = 1;
    c->st = amqp_new_connection();
    if (c->st == NULL)
        return QUEUE_EUNAVAIL;
    amqp_socket_t *sock = a->info.ssl ? amqp_ssl_socket_new(c->st) : amqp_tcp_socket_new(c->st);
    if (sock == NULL)
        goto fail;
    if (a->info.ssl) {
        amqp_ssl_socket_set_verify_peer(sock, 1);
        amqp_ssl_socket_set_verify_hostname(sock, 1);
    }
    struct timeval ct = {CONNECT_TIMEOUT_S, 0}, rt = {RPC_TIMEOUT_S, 0};
    int rc = amqp_socket_open_noblock(sock, a->info.host, a->info.port, &ct);
    if (rc != AMQP_STATUS_OK) {
        log_warn("queue: cannot connect to rabbitmq",
                 json_pack("{s:s, s:i, s:s}", "host", a->info.host, "port", a->info.port, "detail",
                           amqp_error_string2(rc)));
        goto fail;
    }
    amqp_set_handshake_timeout(c->st, &ct);
    amqp_set_rpc_timeout(c->st, &rt);
    amqp_rpc_reply_t r = amqp_login(c->st, a->info.vhost, 0, FRAME_MAX, heartbeat,
                                    AMQP_SASL_METHOD_PLAIN, a->info.user, a->info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        log_reply("login", r);
        goto fail;
    }
    amqp_channel_open(c->st, CHANNEL);
    if (rpc_check(c, "channel.open") != QUEUE_OK)
        goto fail;
    amqp_confirm_select(c->st, CHANNEL);
    if (rpc_check(c, "confirm.select") != QUEUE_OK)
        goto fail;
    return QUEUE_OK;
fail:
    c->broken = true;
    conn_close(c);
    return QUEUE_EUNAVAIL;
}

/* ---------- declarations ---------- */

static void retry_name(char *out, size_t len, const char *queue, long delay_ms)
{
    snprintf(out, len, "%s.retry.%ld", queue, delay_ms);
}

/* queue.declare of one durable queue; *count gets its ready messages. */
static int declare_one(struct conn *c, const char *name, amqp_table_t args, long *count)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(c->st, CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    if (ok == NULL)
        return rpc_check(c, "queue.declare");
    if (count != NULL)
        *count += (long)ok->message_count;
    return QUEUE_OK;
}

/*
 * Declares NAME, its retry queues and NAME.dead. When ready is not NULL it
 * gets the messages waiting in NAME and the retry queues, and dead those
 * in NAME.dead.
 */
static int declare_all(struct aq *a, struct conn *c, const char *queue, long *ready, long *dead)
{
    char name[QUEUE_NAME_MAX + 64];
    amqp_table_t none = amqp_empty_table;
    long sink = 0;
    int rc = declare_one(c, queue, none, ready != NULL ? ready : &sink);
    long prev = -1;
    for (int k = 1; rc == QUEUE_OK && k < a->set.max_attempts; k++) {
        long d = queue_retry_delay_ms(&a->set, k);
        if (d == prev)
            continue;
        prev = d;
        amqp_table_entry_t e[3];
        e[0].key = amqp_cstring_bytes("x-message-ttl");
        e[0].value.kind = AMQP_FIELD_KIND_I64;
        e[0].value.value.i64 = d;
        e[1].key = amqp_cstring_bytes("x-dead-letter-exchange");
        e[1].value.kind = AMQP_FIELD_KIND_UTF8;
        e[1].value.value.bytes = amqp_cstring_bytes("");
        e[2].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        e[2].value.kind = AMQP_FIELD_KIND_UTF8;
        e[2].value.value.bytes = amqp_cstring_bytes(queue);
        amqp_table_t args = {3, e};
        retry_name(name, sizeof(name), queue, d);
        rc = declare_one(c, name, args, ready != NULL ? ready : &sink);
    }
    if (rc == QUEUE_OK) {
        snprintf(name, sizeof(name), "%s.dead", queue);
        rc = declare_one(c, name, none, dead != NULL ? dead : &sink);
    }
    return rc;
}

/* declare_all once per connection and queue. */
static int ensure_declared(struct aq *a, struct conn *c, const char *queue)
{
    for (int i = 0; i < c->ndeclared; i++)
        if (strcmp(c->declared[i], queue) == 0)
            return QUEUE_OK;
    int rc = declare_all(a, c, queue, NULL, NULL);
    if (rc != QUEUE_OK)
        return rc;
    int slot = c->ndeclared < DECLARED_MAX ? c->ndeclared++ : (int)(c->next_tag % DECLARED_MAX);
    snprintf(c->declared[slot], sizeof(c->declared[slot]), "%s", queue);
    return QUEUE_OK;
}

/* ---------- publishing with confirms ---------- */

/* Called for a basic.deliver met while waiting for a confirm. Returns 0, or
 * -1 when the connection failed. */
typedef int (*deliver_fn)(void *ctx, struct conn *c, const amqp_frame_t *f);

/*
 * Waits for the confirm of delivery tag `tag`. Deliveries arriving meanwhile
 * go to on_deliver (NULL: read and dropped, which a publisher connection
 * never sees). Returns QUEUE_OK, or QUEUE_EUNAVAIL with the connection
 * marked broken (nack, returned as unroutable, timeout, lost connection).
 */
static int wait_confirm(struct conn *c, uint64_t tag, deliver_fn on_deliver, void *ctx)
{
    long long deadline = mono_ms() + CONFIRM_TIMEOUT_MS;
    bool returned = false;
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0) {
            log_warn("queue: no publisher confirm in time", NULL);
            break;
        }
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
        amqp_frame_t f;
        int rc = amqp_simple_wait_frame_noblock(c->st, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            continue;
        if (rc != AMQP_STATUS_OK) {
            log_warn("queue: rabbitmq connection lost",
                     json_pack("{s:s}", "detail", amqp_error_string2(rc)));
            break;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        amqp_method_number_t id = f.payload.method.id;
        if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
            uint64_t t;
            bool multiple;
            if (id == AMQP_BASIC_ACK_METHOD) {
                amqp_basic_ack_t *m = f.payload.method.decoded;
                t = m->delivery_tag;
                multiple = m->multiple;
            } else {
                amqp_basic_nack_t *m = f.payload.method.decoded;
                t = m->delivery_tag;
                multiple = m->multiple;
            }
            if (!(t == tag || (multiple && t >= tag)))
                continue; /* an earlier publish's */
            if (id == AMQP_BASIC_NACK_METHOD)
                log_warn("queue: rabbitmq refused a message (nack)", NULL);
            else if (returned)
                log_warn("queue: message unroutable, its queue is missing", NULL);
            else
                return QUEUE_OK;
            break;
        }
        if (id == AMQP_BASIC_RETURN_METHOD || id == AMQP_BASIC_DELIVER_METHOD) {
            if (id == AMQP_BASIC_DELIVER_METHOD && on_deliver != NULL) {
                if (on_deliver(ctx, c, &f) != 0)
                    break;
                continue;
            }
            returned = returned || id == AMQP_BASIC_RETURN_METHOD;
            amqp_message_t msg;
            amqp_rpc_reply_t r = amqp_read_message(c->st, f.channel, &msg, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL) {
                log_reply("read returned message", r);
                break;
            }
            amqp_destroy_message(&msg);
            continue;
        }
        if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_rpc_reply_t r = {AMQP_RESPONSE_SERVER_EXCEPTION, f.payload.method, 0};
            log_reply("publish", r);
            break;
        }
    }
    c->broken = true;
    return QUEUE_EUNAVAIL;
}

/* Publishes one persistent message to routing_key and waits for its confirm. */
static int publish_confirmed(struct conn *c, const char *routing_key, const void *body, size_t len,
                             const char *request_id, int attempt, deliver_fn on_deliver, void *ctx)
{
    amqp_table_entry_t h[2];
    h[0].key = amqp_cstring_bytes(HDR_ATTEMPT);
    h[0].value.kind = AMQP_FIELD_KIND_I32;
    h[0].value.value.i32 = attempt;
    h[1].key = amqp_cstring_bytes(HDR_REQUEST_ID);
    h[1].value.kind = AMQP_FIELD_KIND_UTF8;
    h[1].value.value.bytes = amqp_cstring_bytes(request_id);
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.headers.num_entries = 2;
    props.headers.entries = h;
    amqp_bytes_t b = {len, (void *)body};
    uint64_t tag = c->next_tag++;
    /* mandatory: a message no queue takes comes back instead of vanishing */
    int rc = amqp_basic_publish(c->st, CHANNEL, amqp_empty_bytes, amqp_cstring_bytes(routing_key),
                                1, 0, &props, b);
    if (rc != AMQP_STATUS_OK) {
        log_warn("queue: publish failed", json_pack("{s:s}", "detail", amqp_error_string2(rc)));
        c->broken = true;
        return QUEUE_EUNAVAIL;
    }
    return wait_confirm(c, tag, on_deliver, ctx);
}

/* ---------- the publisher connection ---------- */

typedef int (*pub_op)(struct aq *a, struct conn *c, void *arg);

/*
 * Runs op on the publisher connection, opening it when needed. When op
 * fails on a connection that was already open (it may have gone stale
 * while idle), it runs once more on a fresh one; a publish may then be
 * stored twice, which at-least-once allows.
 */
static int with_pub(struct aq *a, pub_op op, void *arg)
{
    int rc = QUEUE_EUNAVAIL;
    pthread_mutex_lock(&a->pub_lock);
    for (int tries = 0; tries < 2; tries++) {
        bool fresh = false;
        if (a->pub.st == NULL) {
            if (conn_open(a, &a->pub, 0) != QUEUE_OK) {
                rc = QUEUE_EUNAVAIL;
                break;
            }
            fresh = true;
        }
        rc = op(a, &a->pub, arg);
        if (!a->pub.broken)
            break;
        conn_close(&a->pub);
        if (fresh || rc != QUEUE_EUNAVAIL)
            break;
    }
    pthread_mutex_unlock(&a->pub_lock);
    return rc;
}

struct pub_args {
    const char *queue;
    const void *body;
    size_t len;
    const char *request_id;
    long *ready, *dead;
};

static int op_publish(struct aq *a, struct conn *c, void *arg)
{
    struct pub_args *p = arg;
    int rc = ensure_declared(a, c, p->queue);
    if (rc != QUEUE_OK)
        return rc;
    return publish_confirmed(c, p->queue, p->body, p->len, p->request_id, 1, NULL, NULL);
}

static int op_declare(struct aq *a, struct conn *c, void *arg)
{
    struct pub_args *p = arg;
    *p->ready = 0;
    *p->dead = 0;
    return declare_all(a, c, p->queue, p->ready, p->dead);
}

static int op_ping(struct aq *a, struct conn *c, void *arg)
{
    (void)a;
    (void)arg;
    /* a round trip proves the connection is alive, not only open */
    if (amqp_basic_qos(c->st, CHANNEL, 0, 0, 0) == NULL)
        return rpc_check(c, "basic.qos");
    return QUEUE_OK;
}

static int aq_declare(void *h, const char *queue)
{
    if (!queue_name_valid(queue))
        return QUEUE_EINVAL;
    long ready, dead;
    struct pub_args p = {.queue = queue, .ready = &ready, .dead = &dead};
    return with_pub(h, op_declare, &p);
}

static int aq_publish(void *h, const char *queue, const void *body, size_t len,
                      const char *request_id)
{
    if (request_id == NULL)
        request_id = "";
    if (!queue_name_valid(queue) || len > QUEUE_BODY_MAX || (body == NULL && len > 0) ||
        strnlen(request_id, REQUEST_ID_MAX + 1) > REQUEST_ID_MAX)
        return QUEUE_EINVAL;
    struct pub_args p = {queue, len > 0 ? body : "", len, request_id, NULL, NULL};
    return with_pub(h, op_publish, &p);
}

static int aq_counts(void *h, const char *queue, long *ready, long *dead)
{
    if (!queue_name_valid(queue))
        return QUEUE_EINVAL;
    struct pub_args p = {.queue = queue, .ready = ready, .dead = dead};
    return with_pub(h, op_declare, &p);
}

static int aq_dead_count(void *h, const char *queue, long *out)
{
    long ready;
    return aq_counts(h, queue, &ready, out);
}

static int aq_depth(void *h, const char *queue, long *out)
{
    long dead;
    return aq_counts(h, queue, out, &dead);
}

static int aq_ping(void *h)
{
    return with_pub(h, op_ping, NULL);
}

/* ---------- consumers ---------- */

struct job {
    struct job *next;
    unsigned gen; /* the connection it came on */
    uint64_t tag;
    int attempt;
    enum queue_verdict verdict;
    bool recount; /* a redelivery: republish with attempt + 1, no handler */
    char *body;   /* malloc'd, len + 1 bytes, NUL-terminated */
    size_t len;
    char request_id[REQUEST_ID_MAX + 1];
};

struct jobq {
    struct job *head, *tail;
};

struct aq_consumer {
    struct queue_consumer base; /* first: queue.h casts to it */
    struct aq *a;
    char queue[QUEUE_NAME_MAX + 1];
    int prefetch;
    queue_handler_fn fn;
    void *ctx;
    pthread_t io;
    bool io_started;
    pthread_t *workers;
    int started;
    int wake[2]; /* workers and stop() write a byte; the I/O thread polls it */

    pthread_mutex_t lock; /* the fields below */
    pthread_cond_t work;
    struct jobq todo; /* deliveries for the workers */
    struct jobq done; /* verdicts for the I/O thread */
    bool stopping;    /* workers take no more deliveries */
    bool workers_done;

    /* owned by the I/O thread */
    struct conn conn;
    unsigned gen;
};

static void jobq_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail != NULL)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static struct job *jobq_pop(struct jobq *q)
{
    struct job *j = q->head;
    if (j != NULL) {
        q->head = j->next;
        if (q->head == NULL)
            q->tail = NULL;
    }
    return j;
}

static void job_free(struct job *j)
{
    if (j != NULL)
        free(j->body);
    free(j);
}

static void wake_io(struct aq_consumer *c)
{
    ssize_t n = write(c->wake[1], "x", 1);
    (void)n; /* a full pipe already holds a wake-up */
}

static bool bytes_is(amqp_bytes_t b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && memcmp(b.bytes, s, n) == 0;
}

static long field_int(const amqp_field_value_t *v, long dflt)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        return v->value.i8;
    case AMQP_FIELD_KIND_U8:
        return v->value.u8;
    case AMQP_FIELD_KIND_I16:
        return v->value.i16;
    case AMQP_FIELD_KIND_U16:
        return v->value.u16;
    case AMQP_FIELD_KIND_I32:
        return v->value.i32;
    case AMQP_FIELD_KIND_U32:
        return (long)v->value.u32;
    case AMQP_FIELD_KIND_I64:
        return (long)v->value.i64;
    case AMQP_FIELD_KIND_U64:
        return (long)v->value.u64;
    default:
        return dflt;
    }
}

/* Reads a delivery's content and queues it for the workers. */
static int on_deliver(void *ctx, struct conn *conn, const amqp_frame_t *f)
{
    struct aq_consumer *c = ctx;
    const amqp_basic_deliver_t *d = f->payload.method.decoded;
    uint64_t tag = d->delivery_tag;
    bool redelivered = d->redelivered;
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(conn->st, f->channel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        log_reply("read delivery", r);
        conn->broken = true;
        return -1;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        goto oom;
    j->gen = c->gen;
    j->tag = tag;
    j->attempt = 1;
    if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
        const amqp_table_t *t = &msg.properties.headers;
        for (int i = 0; i < t->num_entries; i++) {
            const amqp_table_entry_t *e = &t->entries[i];
            if (bytes_is(e->key, HDR_ATTEMPT)) {
                long v = field_int(&e->value, 1);
                j->attempt = v >= 1 && v < 1000000 ? (int)v : 1;
            } else if (bytes_is(e->key, HDR_REQUEST_ID) &&
                       (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
                        e->value.kind == AMQP_FIELD_KIND_BYTES) &&
                       e->value.value.bytes.len <= REQUEST_ID_MAX) {
                size_t n = e->value.value.bytes.len;
                if (n > 0) /* an empty amqp_bytes_t may have a NULL pointer */
                    memcpy(j->request_id, e->value.value.bytes.bytes, n);
                j->request_id[n] = '\0';
            }
        }
    }
    if (redelivered) {
        j->attempt++;
        j->recount = true;
    }
    j->len = msg.body.len;
    j->body = malloc(j->len + 1);
    if (j->body == NULL)
        goto oom;
    if (j->len > 0)
        memcpy(j->body, msg.body.bytes, j->len);
    j->body[j->len] = '\0';
    amqp_destroy_message(&msg);
    pthread_mutex_lock(&c->lock);
    if (j->len > QUEUE_BODY_MAX) {
        /* no handler would accept it: straight to the dead letters */
        j->verdict = QUEUE_REJECT;
        jobq_push(&c->done, j);
    } else if (j->recount) {
        jobq_push(&c->done, j); /* apply() republishes it with its new count */
        wake_io(c);
    } else {
        jobq_push(&c->todo, j);
        pthread_cond_signal(&c->work);
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
oom:
    amqp_destroy_message(&msg);
    job_free(j);
    conn->broken = true; /* the broker delivers it again on the next connection */
    return -1;
}

/* Applies one verdict on the current connection. 0, or -1 when the
 * connection failed (the delivery then comes again). */
static int apply(struct aq_consumer *c, struct job *j)
{
    struct conn *conn = &c->conn;
    const struct queue_settings *s = &c->a->set;
    if (j->recount) {
        char target[QUEUE_NAME_MAX + 64];
        if (j->attempt <= s->max_attempts) {
            snprintf(target, sizeof(target), "%s", c->queue);
        } else {
            snprintf(target, sizeof(target), "%s.dead", c->queue);
            log_warn("queue: message dead-lettered",
                     json_pack("{s:s, s:s, s:i}", "queue", c->queue, "reason",
                               "redelivered too often", "attempts", j->attempt - 1));
        }
        if (publish_confirmed(conn, target, j->body, j->len, j->request_id, j->attempt, on_deliver,
                              c) != QUEUE_OK)
            return -1;
    } else if (j->verdict == QUEUE_RELEASE) {
        /* back to NAME at once with the same x-attempt, as hand_back does */
        if (publish_confirmed(conn, c->queue, j->body, j->len, j->request_id, j->attempt,
                              on_deliver, c) != QUEUE_OK)
            return -1;
    } else if (j->verdict != QUEUE_ACK) {
        char target[QUEUE_NAME_MAX + 64];
        int next_attempt = j->attempt;
        if (j->verdict == QUEUE_RETRY && j->attempt < s->max_attempts) {
            retry_name(target, sizeof(target), c->queue, queue_retry_delay_ms(s, j->attempt));
            next_attempt = j->attempt + 1;
        } else {
            snprintf(target, sizeof(target), "%s.dead", c->queue);
            log_warn("queue: message dead-lettered",
                     json_pack("{s:s, s:s, s:i}", "queue", c->queue, "reason",
                               j->verdict == QUEUE_REJECT ? "reject" : "retry", "attempts",
                               j->attempt));
        }
        if (publish_confirmed(conn, target, j->body, j->len, j->request_id, next_attempt,
                              on_deliver, c) != QUEUE_OK)
            return -1;
    }
    int rc = amqp_basic_ack(conn->st, CHANNEL, j->tag, 0);
    if (rc != AMQP_STATUS_OK) {
        log_warn("queue: ack failed", json_pack("{s:s}", "detail", amqp_error_string2(rc)));
        conn->broken = true;
        return -1;
    }
    return 0;
}

/* Applies the verdicts the workers left; those of an older connection are
 * dropped (the broker already gave their messages back). */
static void apply_done(struct aq_consumer *c)
{
    pthread_mutex_lock(&c->lock);
    struct jobq done = c->done;
    c->done.head = c->done.tail = NULL;
    pthread_mutex_unlock(&c->lock);
    struct job *j;
    while ((j = jobq_pop(&done)) != NULL) {
        if (c->conn.st != NULL && !c->conn.broken && j->gen == c->gen)
            apply(c, j);
        job_free(j);
    }
}

static int consumer_connect(struct aq_consumer *c)
{
    if (conn_open(c->a, &c->conn, HEARTBEAT_S) != QUEUE_OK)
        return -1;
    if (declare_all(c->a, &c->conn, c->queue, NULL, NULL) != QUEUE_OK)
        goto fail;
    if (amqp_basic_qos(c->conn.st, CHANNEL, 0, (uint16_t)c->prefetch, 0) == NULL) {
        rpc_check(&c->conn, "basic.qos");
        goto fail;
    }
    if (amqp_basic_consume(c->conn.st, CHANNEL, amqp_cstring_bytes(c->queue),
                           amqp_cstring_bytes(CONSUMER_TAG), 0, 0, 0, amqp_empty_table) == NULL) {
        rpc_check(&c->conn, "basic.consume");
        goto fail;
    }
    c->gen++;
    return 0;
fail:
    c->conn.broken = true;
    conn_close(&c->conn);
    return -1;
}

static void drain_wake(struct aq_consumer *c)
{
    char buf[64];
    while (read(c->wake[0], buf, sizeof(buf)) > 0)
        ;
}

/* Sleeps up to ms, or until something is written to the wake pipe. */
static void wait_wake(struct aq_consumer *c, int ms)
{
    struct pollfd p = {c->wake[0], POLLIN, 0};
    if (poll(&p, 1, ms) > 0)
        drain_wake(c);
}

static bool io_should_exit(struct aq_consumer *c)
{
    pthread_mutex_lock(&c->lock);
    bool done = c->workers_done;
    pthread_mutex_unlock(&c->lock);
    return done;
}

/* One pass of a connected I/O loop: wait for frames or verdicts, then
 * handle every frame already readable. */
static void io_pass(struct aq_consumer *c)
{
    amqp_connection_state_t st = c->conn.st;
    if (!amqp_frames_enqueued(st) && !amqp_data_in_buffer(st)) {
        /* with TLS, bytes may wait decrypted inside OpenSSL where poll()
         * cannot see them: wake up often */
        struct pollfd p[2] = {{amqp_get_sockfd(st), POLLIN, 0}, {c->wake[0], POLLIN, 0}};
        int n = poll(p, 2, c->a->info.ssl ? 50 : 1000);
        if (n > 0 && (p[1].revents & POLLIN))
            drain_wake(c);
    }
    for (;;) {
        struct timeval zero = {0, 0};
        amqp_frame_t f;
        int rc = amqp_simple_wait_frame_noblock(st, &f, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return;
        if (rc != AMQP_STATUS_OK) {
            log_warn("queue: consumer lost its rabbitmq connection",
                     json_pack("{s:s, s:s}", "queue", c->queue, "detail", amqp_error_string2(rc)));
            c->conn.broken = true;
            return;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD:
            if (on_deliver(c, &c->conn, &f) != 0)
                return;
            break;
        case AMQP_BASIC_CANCEL_METHOD: /* the queue was deleted */
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_rpc_reply_t r = {AMQP_RESPONSE_SERVER_EXCEPTION, f.payload.method, 0};
            log_reply("consume", r);
            c->conn.broken = true;
            return;
        }
        default:
            break; /* late confirms and the like */
        }
    }
}

/*
 * Stopping: hands back the deliveries no handler started. Closing the
 * connection would return them too, but marked redelivered, which counts
 * as an attempt (see the top of this file): a graceful stop would push
 * messages towards the dead letters without any handler having seen them.
 * So the consumer is cancelled (no new deliveries), and each unstarted one
 * is published again with its attempt count unchanged, then acked. What
 * cannot be handed back this way goes back with the connection.
 */
static void hand_back(struct aq_consumer *c)
{
    amqp_connection_state_t st = c->conn.st;
    if (st == NULL || c->conn.broken)
        return;
    if (amqp_basic_cancel(st, CHANNEL, amqp_cstring_bytes(CONSUMER_TAG)) == NULL) {
        rpc_check(&c->conn, "basic.cancel");
        return;
    }
    /* deliveries sent before cancel-ok were queued by the library */
    while (amqp_frames_enqueued(st)) {
        struct timeval zero = {0, 0};
        amqp_frame_t f;
        if (amqp_simple_wait_frame_noblock(st, &f, &zero) != AMQP_STATUS_OK)
            return;
        if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_DELIVER_METHOD &&
            on_deliver(c, &c->conn, &f) != 0)
            return;
    }
    apply_done(c); /* recounts that arrived meanwhile */
    for (;;) {
        pthread_mutex_lock(&c->lock);
        struct job *j = jobq_pop(&c->todo);
        pthread_mutex_unlock(&c->lock);
        if (j == NULL)
            return;
        bool ok = j->gen == c->gen &&
                  publish_confirmed(&c->conn, c->queue, j->body, j->len, j->request_id, j->attempt,
                                    on_deliver, c) == QUEUE_OK &&
                  amqp_basic_ack(st, CHANNEL, j->tag, 0) == AMQP_STATUS_OK;
        job_free(j);
        if (!ok)
            return;
    }
}

static void *io_main(void *arg)
{
    struct aq_consumer *c = arg;
    int backoff = BACKOFF_MIN_MS;
    while (!io_should_exit(c)) {
        if (c->conn.st == NULL) {
            if (consumer_connect(c) != 0) {
                wait_wake(c, backoff);
                backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
                apply_done(c); /* drops them: their connection is gone */
                continue;
            }
            if (backoff > BACKOFF_MIN_MS)
                log_info("queue: consumer reconnected", json_pack("{s:s}", "queue", c->queue));
            backoff = BACKOFF_MIN_MS;
        }
        apply_done(c);
        if (!c->conn.broken)
            io_pass(c);
        if (c->conn.broken)
            conn_close(&c->conn);
    }
    apply_done(c); /* the last handlers' verdicts */
    hand_back(c);
    conn_close(&c->conn);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct aq_consumer *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->stopping && c->todo.head == NULL)
            pthread_cond_wait(&c->work, &c->lock);
        struct job *j = c->stopping ? NULL : jobq_pop(&c->todo);
        pthread_mutex_unlock(&c->lock);
        if (j == NULL)
            break;
        struct queue_msg m = {j->body, j->len, j->attempt, j->request_id};
        log_set_request_id(j->request_id[0] != '\0' ? j->request_id : NULL);
        j->verdict = c->fn(&m, c->ctx);
        log_set_request_id(NULL);
        pthread_mutex_lock(&c->lock);
        jobq_push(&c->done, j);
        pthread_mutex_unlock(&c->lock);
        wake_io(c);
    }
    return NULL;
}

static void consumer_stop(struct queue_consumer *base)
{
    struct aq_consumer *c = (struct aq_consumer *)base;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < c->started; i++)
        pthread_join(c->workers[i], NULL);
    /* the I/O thread applies the verdicts of the handlers that just
     * finished, then closes; deliveries nobody started go back to the
     * broker with the connection */
    pthread_mutex_lock(&c->lock);
    c->workers_done = true;
    pthread_mutex_unlock(&c->lock);
    if (c->io_started) {
        wake_io(c);
        pthread_join(c->io, NULL);
    }
    struct job *j;
    while ((j = jobq_pop(&c->todo)) != NULL)
        job_free(j);
    while ((j = jobq_pop(&c->done)) != NULL)
        job_free(j);
    conn_close(&c->conn);
    if (c->wake[0] >= 0)
        close(c->wake[0]);
    if (c->wake[1] >= 0)
        close(c->wake[1]);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->work);
    free(c->workers);
    free(c);
}

static int aq_consume(void *h, const char *queue, int prefetch, queue_handler_fn fn, void *ctx,
                      struct queue_consumer **out)
{
    *out = NULL;
    if (!queue_name_valid(queue) || prefetch < 1 || prefetch > 1024 || fn == NULL)
        return QUEUE_EINVAL;
    struct aq_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return QUEUE_EINTERNAL;
    c->base.stop = consumer_stop;
    c->a = h;
    snprintf(c->queue, sizeof(c->queue), "%s", queue);
    c->prefetch = prefetch;
    c->fn = fn;
    c->ctx = ctx;
    c->wake[0] = c->wake[1] = -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->work, NULL);
    c->workers = calloc((size_t)prefetch, sizeof(*c->workers));
    if (c->workers == NULL || pipe(c->wake) != 0)
        goto fail;
    for (int i = 0; i < 2; i++) {
        fcntl(c->wake[i], F_SETFL, fcntl(c->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(c->wake[i], F_SETFD, FD_CLOEXEC);
    }
    for (int i = 0; i < prefetch; i++) {
        if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0)
            goto fail;
        c->started++;
    }
    if (pthread_create(&c->io, NULL, io_main, c) != 0)
        goto fail;
    c->io_started = true;
    *out = &c->base;
    return QUEUE_OK;
fail:
    consumer_stop(&c->base);
    return QUEUE_EINTERNAL;
}

/* ---------- the handle ---------- */

static void aq_free(void *h)
{
    struct aq *a = h;
    if (a == NULL)
        return;
    conn_close(&a->pub);
    pthread_mutex_destroy(&a->pub_lock);
    free(a->url_buf);
    free(a);
}

/* ---------- dead letters ---------- */

struct dead_args {
    const char *queue;
    bool found;
    uint64_t tag;
    char *body;
    size_t len;
    int attempt;
    char request_id[REQUEST_ID_MAX + 1];
    bool ack; /* settle: ack, or reject with requeue */
};

/* basic.get of one letter from NAME.dead (unacked until settled). */
static int op_get_dead(struct aq *a, struct conn *c, void *arg)
{
    struct dead_args *d = arg;
    int rc = ensure_declared(a, c, d->queue);
    if (rc != QUEUE_OK)
        return rc;
    char name[QUEUE_NAME_MAX + 16];
    snprintf(name, sizeof(name), "%s.dead", d->queue);
    amqp_rpc_reply_t r = amqp_basic_get(c->st, CHANNEL, amqp_cstring_bytes(name), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        log_reply("basic.get", r);
        c->broken = true;
        return QUEUE_EUNAVAIL;
    }
    d->found = r.reply.id == AMQP_BASIC_GET_OK_METHOD;
    if (!d->found)
        return QUEUE_OK;
    d->tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    amqp_message_t msg;
    r = amqp_read_message(c->st, CHANNEL, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        log_reply("read dead letter", r);
        c->broken = true;
        return QUEUE_EUNAVAIL;
    }
    d->attempt = 0;
    d->request_id[0] = '\0';
    if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
        const amqp_table_t *t = &msg.properties.headers;
        for (int i = 0; i < t->num_entries; i++) {
            const amqp_table_entry_t *e = &t->entries[i];
            if (bytes_is(e->key, HDR_ATTEMPT)) {
                d->attempt = (int)field_int(&e->value, 0);
            } else if (bytes_is(e->key, HDR_REQUEST_ID) &&
                       (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
                        e->value.kind == AMQP_FIELD_KIND_BYTES) &&
                       e->value.value.bytes.len <= REQUEST_ID_MAX) {
                size_t n = e->value.value.bytes.len;
                if (n > 0)
                    memcpy(d->request_id, e->value.value.bytes.bytes, n);
                d->request_id[n] = '\0';
            }
        }
    }
    d->len = msg.body.len;
    d->body = malloc(d->len + 1);
    if (d->body != NULL) {
        if (d->len > 0)
            memcpy(d->body, msg.body.bytes, d->len);
        d->body[d->len] = '\0';
    }
    amqp_destroy_message(&msg);
    return d->body != NULL ? QUEUE_OK : QUEUE_EINTERNAL;
}

static int op_settle_dead(struct aq *a, struct conn *c, void *arg)
{
    (void)a;
    struct dead_args *d = arg;
    int rc = d->ack ? amqp_basic_ack(c->st, CHANNEL, d->tag, 0)
                    : amqp_basic_reject(c->st, CHANNEL, d->tag, 1);
    if (rc != AMQP_STATUS_OK) {
        c->broken = true;
        return QUEUE_EUNAVAIL;
    }
    return QUEUE_OK;
}

/* An unsettled letter returns to NAME.dead when its connection closes, so
 * a failed settle loses nothing. */
static int aq_drain_dead(void *h, const char *queue, int max, queue_dead_fn fn, void *ctx,
                         int *drained)
{
    *drained = 0;
    if (!queue_name_valid(queue) || max < 1 || fn == NULL)
        return QUEUE_EINVAL;
    for (int i = 0; i < max; i++) {
        struct dead_args d = {.queue = queue};
        int rc = with_pub(h, op_get_dead, &d);
        if (rc != QUEUE_OK || !d.found) {
            free(d.body);
            return rc;
        }
        struct queue_msg m = {d.body, d.len, d.attempt, d.request_id};
        d.ack = fn(&m, ctx) == 0;
        free(d.body);
        d.body = NULL;
        rc = with_pub(h, op_settle_dead, &d);
        if (rc != QUEUE_OK || !d.ack)
            return rc;
        (*drained)++;
    }
    return QUEUE_OK;
}

static const struct queue_ops amqp_ops = {
    .name = "amqp",
    .declare = aq_declare,
    .publish = aq_publish,
    .consume = aq_consume,
    .dead_count = aq_dead_count,
    .drain_dead = aq_drain_dead,
    .depth = aq_depth,
    .ping = aq_ping,
    .free = aq_free,
};

struct queue *queue_amqp_new(const char *url, const struct queue_settings *s, char *err,
                             size_t errlen)
{
    struct aq *a = calloc(1, sizeof(*a));
    struct queue *q = calloc(1, sizeof(*q));
    if (a == NULL || q == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    a->set = *s;
    pthread_mutex_init(&a->pub_lock, NULL);
    a->url_buf = strdup(url);
    if (a->url_buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    amqp_default_connection_info(&a->info);
    /* the message never repeats the URL: it holds the password */
    if (amqp_parse_url(a->url_buf, &a->info) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "RABBITMQ_URL: not an amqp:// or amqps:// URL");
        goto fail;
    }
    /* "amqp://host/" names the empty vhost by the letter of the spec; every
     * broker and client means the default one */
    if (a->info.vhost == NULL || a->info.vhost[0] == '\0')
        a->info.vhost = "/";
    q->ops = &amqp_ops;
    q->h = a;
    return q;
fail:
    aq_free(a);
    free(q);
    return NULL;
}
