/* http: see http.h. */
#include "core/http.h"
#include "core/http_mhd.h"

#include "core/jsonerr.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "core/router.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXTRA_HEADERS 8
#define REQUEST_ID_MAX 64
/* Bytes of an oversized body read and thrown away before the connection is
 * closed instead, so a 413 can usually be delivered without reading an
 * unbounded body. */
#define DISCARD_MAX (1024 * 1024)
#define IDLE_TIMEOUT_SECONDS 30

#define MAX_TRUSTED 16

/* Status codes counted per route: 100..599. */
#define STATUS_MIN 100
#define STATUS_SLOTS 500

struct route_stats {
    atomic_uint_fast64_t by_status[STATUS_SLOTS];
    struct metrics_histogram latency;
};

struct http_server {
    const char *svc;
    struct MHD_Daemon *daemon;
    struct http_route *routes; /* the caller's routes, then the built-ins */
    size_t nroutes;
    struct route_stats *stats; /* nroutes + 1; the last counts unmatched paths */
    void *ctx;
    http_ready_fn ready;
    atomic_int in_flight;
    atomic_bool stopping; /* set by http_server_stop: open-ended streams end */
    unsigned idle_timeout;
    int port;
    int ntrusted;
    struct netaddr_net trusted[MAX_TRUSTED]; /* addresses and networks */
};

struct http_req {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    long route; /* index into srv->routes, or -1 */
    struct router_params params;
    char id[REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    char *body; /* NUL-terminated, at most max_body bytes */
    size_t body_len, body_cap, max_body;
    size_t discarded;
    size_t streamed; /* body bytes handed to a streaming route */
    size_t overflow; /* bytes past max_body of a streaming route, thrown away */
    const struct http_stream_ops *stream;
    void *state;
    bool stream_stopped;
    bool too_large;
    bool replied;
    unsigned status;
    struct timespec start;
    int nextra;
    char *extra[MAX_EXTRA_HEADERS][2];
};

/* ---------- request accessors ---------- */

const char *http_req_method(const struct http_req *req)
{
    return req->method;
}

const char *http_req_path(const struct http_req *req)
{
    return req->path;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_req_query(const struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_req_cookie(const struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}

const char *http_req_param(const struct http_req *req, const char *name)
{
    return router_param(&req->params, name);
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
    if (len != NULL)
        *len = req->body_len;
    return req->body != NULL ? req->body : "";
}

const char *http_req_client_ip(const struct http_req *req)
{
    return req->client_ip;
}

const char *http_req_id(const struct http_req *req)
{
    return req->id;
}

struct MHD_Connection *http_req_connection(const struct http_req *req)
{
    return req->conn;
}

void http_req_set_state(struct http_req *req, void *state)
{
    req->state = state;
}

void *http_req_state(const struct http_req *req)
{
    return req->state;
}

int http_req_replied(const struct http_req *req)
{
    return req->replied;
}

int http_req_content_type_is(const struct http_req *req, const char *type)
{
    const char *ct = http_req_header(req, "Content-Type");
    if (ct == NULL)
        return 0;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

/* ---------- replies ---------- */

static bool header_text_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

int http_reply_header(struct http_req *req, const char *name, const char *value)
{
    if (req->nextra == MAX_EXTRA_HEADERS || !header_text_ok(name) || !header_text_ok(value))
        return -1;
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return -1;
    }
    req->extra[req->nextra][0] = n;
    req->extra[req->nextra][1] = v;
    req->nextra++;
    return 0;
}

/* Adds the headers every response carries, then the handler's; queues r
 * and releases the reference. Cache-Control defaults to no-store. Marks
 * req replied when libmicrohttpd took the response (it refuses one while
 * a body is still arriving, in some states: the handler is then run again
 * at the end of the body). */
static void send_response(struct http_req *req, unsigned status, const char *content_type,
                          struct MHD_Response *r)
{
    bool cache_set = false;
    MHD_add_response_header(r, "Content-Type", content_type);
    MHD_add_response_header(r, "X-Request-Id", req->id);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < req->nextra; i++) {
        MHD_add_response_header(r, req->extra[i][0], req->extra[i][1]);
        cache_set = cache_set || strcasecmp(req->extra[i][0], "Cache-Control") == 0;
    }
    if (!cache_set)
        MHD_add_response_header(r, "Cache-Control", "no-store");
    if (MHD_queue_response(req->conn, status, r) == MHD_YES) {
        req->replied = true;
        req->status = status;
    }
    MHD_destroy_response(r);
}

/* Queues body (malloc'd, ownership taken) as the response. */
static void queue(struct http_req *req, unsigned status, const char *content_type, char *body,
                  size_t len)
{
    if (req->replied) {
        free(body);
        return;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return;
    }
    send_response(req, status, content_type, r);
}

struct stream_reply {
    http_read_fn read;
    void *cls;
    void (*done)(void *cls);
    bool open_ended;             /* HTTP_SIZE_UNKNOWN */
    const atomic_bool *stopping; /* the server's */
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_reply *s = cls;
    for (;;) {
        if (s->open_ended && atomic_load(s->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        long n = s->read(s->cls, (unsigned long long)pos, buf, max);
        if (n > 0)
            return (ssize_t)n;
        if (!s->open_ended)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
    }
}

static void stream_free(void *cls)
{
    struct stream_reply *s = cls;
    if (s->done != NULL)
        s->done(s->cls);
    free(s);
}

void http_reply_stream(struct http_req *req, unsigned status, const char *content_type,
                       unsigned long long size, http_read_fn read, void *cls,
                       void (*done)(void *cls))
{
    struct stream_reply *s = req->replied ? NULL : malloc(sizeof(*s));
    if (s == NULL) {
        if (done != NULL)
            done(cls);
        return;
    }
    s->read = read;
    s->cls = cls;
    s->done = done;
    s->open_ended = size == HTTP_SIZE_UNKNOWN;
    s->stopping = &req->srv->stopping;
    struct MHD_Response *r = MHD_create_response_from_callback(
        s->open_ended ? MHD_SIZE_UNKNOWN : size, 64 * 1024, stream_read, s, stream_free);
    if (r == NULL) {
        stream_free(s);
        return;
    }
    send_response(req, status, content_type, r);
}

void http_reply_text(struct http_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return;
    memcpy(copy, body, len);
    queue(req, status, content_type, copy, len);
}

void http_reply_json(struct http_req *req, unsigned status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
        http_reply_text(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    queue(req, status, "application/json", text, strlen(text));
}

void http_reply_error(struct http_req *req, unsigned status, const char *code, const char *message)
{
    http_reply_json(req, status, jsonerr_new(code, message));
}

void http_reply_error_retry(struct http_req *req, unsigned status, const char *code,
                            const char *message, long retry_after)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%ld", retry_after > 0 ? retry_after : 1);
    http_reply_header(req, "Retry-After", secs);
    http_reply_error(req, status, code, message);
}

/* ---------- built-in routes ---------- */

static void handle_healthz(struct http_req *req, void *ctx)
{
    (void)ctx;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void handle_readyz(struct http_req *req, void *ctx)
{
    char why[256] = "";
    if (req->srv->ready != NULL && req->srv->ready(ctx, why, sizeof(why)) != 0) {
        char msg[320];
        snprintf(msg, sizeof(msg), "not ready: %s", why[0] != '\0' ? why : "dependency down");
        http_reply_error_retry(req, 503, "not_ready", msg, 5);
        return;
    }
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

static void handle_metrics(struct http_req *req, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    char *text = metrics_render(&len);
    if (text == NULL) {
        http_reply_error(req, 500, "internal_error", "metrics could not be rendered");
        return;
    }
    queue(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static const struct http_route builtin_routes[] = {
    {"GET", "/healthz", handle_healthz, 0, NULL},
    {"GET", "/readyz", handle_readyz, 0, NULL},
    {"GET", "/metrics", handle_metrics, 0, NULL},
};
#define NBUILTIN (sizeof(builtin_routes) / sizeof(builtin_routes[0]))

const struct http_route *http_builtin_routes(size_t *n)
{
    *n = NBUILTIN;
    return builtin_routes;
}

/* ---------- metrics ---------- */

static void write_metrics(FILE *out, void *ctx)
{
    struct http_server *srv = ctx;
    fprintf(out, "# HELP http_requests_total HTTP requests answered, by route and status.\n"
                 "# TYPE http_requests_total counter\n");
    for (size_t r = 0; r <= srv->nroutes; r++) {
        const char *route = r < srv->nroutes ? srv->routes[r].pattern : "unmatched";
        const char *method = r < srv->nroutes ? srv->routes[r].method : "any";
        for (int s = 0; s < STATUS_SLOTS; s++) {
            uint64_t n = atomic_load_explicit(&srv->stats[r].by_status[s], memory_order_relaxed);
            if (n > 0)
                fprintf(out,
                        "http_requests_total{svc=\"%s\",method=\"%s\",route=\"%s\",status=\"%d\"} "
                        "%llu\n",
                        srv->svc, method, route, s + STATUS_MIN, (unsigned long long)n);
        }
    }
    fprintf(out, "# HELP http_request_duration_seconds Time from request to completed response.\n"
                 "# TYPE http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= srv->nroutes; r++) {
        if (atomic_load(&srv->stats[r].latency.count) == 0)
            continue;
        char labels[256];
        snprintf(labels, sizeof(labels), "svc=\"%s\",method=\"%s\",route=\"%s\"", srv->svc,
                 r < srv->nroutes ? srv->routes[r].method : "any",
                 r < srv->nroutes ? srv->routes[r].pattern : "unmatched");
        metrics_histogram_write(out, "http_request_duration_seconds", labels,
                                &srv->stats[r].latency);
    }
    fprintf(out,
            "# HELP http_requests_in_flight Requests being received or handled.\n"
            "# TYPE http_requests_in_flight gauge\n"
            "http_requests_in_flight{svc=\"%s\"} %d\n",
            srv->svc, atomic_load(&srv->in_flight));
}

/* ---------- request lifecycle ---------- */

static bool request_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok || n == REQUEST_ID_MAX)
            return false;
    }
    return n > 0;
}

static bool is_trusted(const struct http_server *srv, const struct in6_addr *a)
{
    for (int i = 0; i < srv->ntrusted; i++) {
        if (netaddr_in(&srv->trusted[i], a))
            return true;
    }
    return false;
}

static void format_ip(const struct in6_addr *a, char *out, size_t len)
{
    if (IN6_IS_ADDR_V4MAPPED(a))
        inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)len);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)len);
}

/* From a trusted peer: the right-most X-Forwarded-For entry that is not a
 * trusted proxy (entries to its left are the client's to forge). */
static bool forwarded_for(struct http_req *req, struct in6_addr *client)
{
    const char *xff = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Forwarded-For");
    if (xff == NULL)
        return false;
    size_t end = strlen(xff);
    bool found = false;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && xff[a] == ' ')
            a++;
        while (b > a && xff[b - 1] == ' ')
            b--;
        struct in6_addr ip;
        if (netaddr_parse_ip(xff + a, b - a, &ip) != 0)
            break; /* garbage: trust nothing further left */
        *client = ip;
        found = true;
        if (!is_trusted(req->srv, &ip))
            break;
        end = start > 0 ? start - 1 : 0;
    }
    return found;
}

static void set_client_ip(struct http_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(req->client_ip, sizeof(req->client_ip), "unknown");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    struct in6_addr peer;
    memset(&peer, 0, sizeof(peer));
    if (sa->sa_family == AF_INET) {
        peer.s6_addr[10] = 0xff;
        peer.s6_addr[11] = 0xff;
        memcpy(&peer.s6_addr[12], &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        peer = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    } else {
        return;
    }
    struct in6_addr client = peer;
    if (req->srv->ntrusted > 0 && is_trusted(req->srv, &peer))
        forwarded_for(req, &client);
    format_ip(&client, req->client_ip, sizeof(req->client_ip));
}

static int add_trusted(const struct netaddr_net *net, void *ctx)
{
    struct http_server *srv = ctx;
    if (srv->ntrusted == MAX_TRUSTED)
        return -1;
    srv->trusted[srv->ntrusted++] = *net;
    return 0;
}

/* Fills srv->trusted from a comma-separated list; -1 on a bad entry. */
static int parse_trusted(struct http_server *srv, const char *list)
{
    return netaddr_each(list, add_trusted, srv);
}

static struct http_req *req_new(struct http_server *srv, struct MHD_Connection *conn,
                                const char *url, const char *method)
{
    struct http_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->srv = srv;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->route = -1;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given != NULL && request_id_ok(given)) {
        snprintf(req->id, sizeof(req->id), "%s", given);
    } else {
        unsigned char raw[16];
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(req->id, sizeof(req->id), raw, sizeof(raw));
    }
    set_client_ip(req);
    return req;
}

static void req_free(struct http_req *req)
{
    for (int i = 0; i < req->nextra; i++) {
        free(req->extra[i][0]);
        free(req->extra[i][1]);
    }
    free(req->body);
    free(req);
}

/* Finds the route; on no match replies 404 or 405 and returns -1. */
static long route_request(struct http_req *req)
{
    struct http_server *srv = req->srv;
    char allow[128] = "";
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct http_route *r = &srv->routes[i];
        if (!router_match(r->pattern, req->path, &req->params))
            continue;
        if (strcmp(r->method, req->method) == 0 ||
            (strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
            return (long)i;
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s", used > 0 ? ", " : "", r->method);
    }
    req->params.n = 0;
    if (allow[0] != '\0') {
        http_reply_header(req, "Allow", allow);
        http_reply_error(req, 405, "method_not_allowed", "this method is not allowed here");
    } else {
        http_reply_error(req, 404, "not_found", "no such endpoint");
    }
    return -1;
}

static void reply_too_large(struct http_req *req)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "the request body is larger than the %zu bytes allowed here",
             req->max_body);
    http_reply_error(req, 413, "payload_too_large", msg);
}

/* First call for a request: route it and check the declared length. */
static void on_headers(struct http_req *req)
{
    req->route = route_request(req);
    if (req->route < 0)
        return;
    req->max_body = req->srv->routes[req->route].max_body;
    const char *cl = http_req_header(req, "Content-Length");
    if (cl != NULL) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && *end == '\0' && n > req->max_body) {
            reply_too_large(req);
            return;
        }
    }
    req->stream = req->srv->routes[req->route].stream;
    if (req->stream != NULL && req->stream->begin != NULL)
        req->stream->begin(req, req->srv->ctx);
}

/* Hands body bytes to a streaming route; returns -1 to drop the connection.
 * Once the route has refused the body, the rest is read and thrown away
 * (up to max_body: no more than an accepted body would cost), so the client
 * still gets the reply that says why: libmicrohttpd 0.9.75 refuses to queue
 * a response while a body is arriving. */
static int on_stream(struct http_req *req, const char *data, size_t len)
{
    size_t seen = req->streamed + req->discarded;
    if (req->too_large || len > req->max_body - seen) {
        req->too_large = !req->replied;
        req->stream_stopped = true;
        req->overflow += len;
        return req->overflow > DISCARD_MAX ? -1 : 0;
    }
    if (req->replied || req->stream_stopped) {
        req->discarded += len;
        return 0;
    }
    req->streamed += len;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (req->stream->data != NULL && req->stream->data(req, req->srv->ctx, data, len) != 0)
        req->stream_stopped = true;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (t1.tv_sec - t0.tv_sec >= 1) {
        /* Time spent in the route (a slow storage write) is not the
         * client's idleness: setting the timeout again restarts its clock. */
        MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, req->srv->idle_timeout);
    }
    return 0;
}

/* Appends body bytes up to max_body; returns -1 to drop the connection. */
static int on_body(struct http_req *req, const char *data, size_t len)
{
    if (req->replied || req->too_large || len > req->max_body - req->body_len) {
        req->too_large = !req->replied;
        req->discarded += len;
        return req->discarded > DISCARD_MAX ? -1 : 0;
    }
    if (req->body_len + len + 1 > req->body_cap) {
        size_t cap = req->body_cap > 0 ? req->body_cap : 4096;
        while (cap < req->body_len + len + 1)
            cap *= 2;
        if (cap > req->max_body + 1)
            cap = req->max_body + 1;
        char *nb = realloc(req->body, cap);
        if (nb == NULL)
            return -1;
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (req == NULL) {
        req = req_new(srv, conn, url, method);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&srv->in_flight, 1);
        log_set_service(srv->svc);
        log_set_request_id(req->id);
        on_headers(req);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        int rc = req->stream != NULL ? on_stream(req, upload_data, *upload_data_size)
                                     : on_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    if (req->replied)
        return MHD_YES;
    log_set_service(srv->svc);
    log_set_request_id(req->id);
    if (req->too_large) {
        reply_too_large(req);
    } else {
        srv->routes[req->route].fn(req, srv->ctx);
        if (!req->replied) {
            log_error("handler returned without a reply", NULL);
            http_reply_error(req, 500, "internal_error", "the server failed to answer");
        }
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    if (req->stream != NULL && req->stream->end != NULL) {
        log_set_service(srv->svc);
        log_set_request_id(req->id);
        req->stream->end(req, srv->ctx, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t us = (uint64_t)(now.tv_sec - req->start.tv_sec) * 1000000u +
                  (uint64_t)((now.tv_nsec - req->start.tv_nsec) / 1000);
    size_t slot = req->route >= 0 ? (size_t)req->route : srv->nroutes;
    unsigned status = req->replied ? req->status : 499; /* client went away */
    if (status >= STATUS_MIN && status < STATUS_MIN + STATUS_SLOTS)
        atomic_fetch_add_explicit(&srv->stats[slot].by_status[status - STATUS_MIN], 1,
                                  memory_order_relaxed);
    metrics_histogram_observe(&srv->stats[slot].latency, us);

    log_set_service(srv->svc);
    log_set_request_id(req->id);
    log_info("request",
             json_pack("{s:o, s:o, s:i, s:f, s:I, s:s, s:b}", "method", log_text(req->method),
                       "path", log_text(req->path), "status", (int)status, "duration_ms",
                       (double)us / 1000.0, "bytes_in",
                       (json_int_t)(req->body_len + req->streamed + req->discarded + req->overflow),
                       "client", req->client_ip, "completed",
                       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
    log_set_request_id(NULL);
    req_free(req);
    atomic_fetch_sub(&srv->in_flight, 1);
}

/* MHD's messages, as our log lines. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_warn("http server", json_pack("{s:s}", "detail", msg));
}

/* ---------- server ---------- */

static int parse_bind(const char *addr, int port, struct sockaddr_storage *ss, bool *v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return 0;
    }
    return -1;
}

struct http_server *http_server_start(const struct http_server_opts *opts, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    if (parse_bind(opts->bind_address, opts->port, &ss, &v6) != 0) {
        snprintf(err, errlen, "bind address %s is not an IP address", opts->bind_address);
        return NULL;
    }
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        goto oom;
    srv->svc = opts->svc;
    srv->ctx = opts->ctx;
    if (parse_trusted(srv, opts->trusted_proxies) != 0) {
        snprintf(err, errlen, "TRUSTED_PROXIES: at most %d IP addresses", MAX_TRUSTED);
        free(srv);
        return NULL;
    }
    srv->ready = opts->ready;
    srv->idle_timeout =
        opts->idle_timeout > 0 ? (unsigned)opts->idle_timeout : IDLE_TIMEOUT_SECONDS;
    srv->nroutes = opts->nroutes + NBUILTIN;
    srv->routes = calloc(srv->nroutes, sizeof(*srv->routes));
    srv->stats = calloc(srv->nroutes + 1, sizeof(*srv->stats));
    if (srv->routes == NULL || srv->stats == NULL)
        goto oom;
    if (opts->nroutes > 0)
        memcpy(srv->routes, opts->routes, opts->nroutes * sizeof(*srv->routes));
    memcpy(srv->routes + opts->nroutes, builtin_routes, sizeof(builtin_routes));

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)opts->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, srv->idle_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1000, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        snprintf(err, errlen, "cannot listen on %s port %d (in use, or not allowed)",
                 opts->bind_address, opts->port);
        free(srv->routes);
        free(srv->stats);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di != NULL ? di->port : opts->port;
    metrics_register(write_metrics, srv);
    return srv;
oom:
    snprintf(err, errlen, "out of memory");
    if (srv != NULL) {
        free(srv->routes);
        free(srv->stats);
        free(srv);
    }
    return NULL;
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_stop(struct http_server *srv, int grace_seconds)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int n = atomic_load(&srv->in_flight);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (n == 0)
            break;
        if (now.tv_sec - start.tv_sec >= grace_seconds) {
            log_warn("shutdown grace period over, closing requests in progress",
                     json_pack("{s:i}", "in_flight", n));
            break;
        }
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    metrics_unregister(srv);
    free(srv->routes);
    free(srv->stats);
    free(srv);
}
