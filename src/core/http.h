/*
 * http: the HTTP server every service runs, on libmicrohttpd.
 *
 * A server owns a route table (method + router pattern -> handler) and adds
 * GET /healthz, GET /readyz and GET /metrics to it. Each connection has its
 * own thread, so handlers may block (hash a password, query a database).
 *
 * For every request the server:
 *   - takes X-Request-Id from the request when it is well formed, else
 *     generates one, echoes it in the response and sets it as the thread's
 *     log context while the handler runs;
 *   - buffers the body up to the route's max_body (413 past it, checked
 *     against Content-Length before any byte is read; a chunked body that
 *     runs more than 1 MiB past the limit has its connection closed
 *     instead, so an endless body cannot keep a thread busy);
 *   - answers unknown paths 404 and known paths with another method 405, as
 *     JSON error objects;
 *   - writes one access log line and counts the request in the metrics by
 *     route and status, with a latency histogram and an in-flight gauge.
 *
 * A handler ends every request with exactly one http_reply_*() call; a
 * handler that returns without one yields a 500.
 */
#ifndef VID2MP3_HTTP_H
#define VID2MP3_HTTP_H

#include <jansson.h>
#include <stddef.h>

struct http_req;
struct http_server;

typedef void (*http_handler_fn)(struct http_req *req, void *ctx);

/*
 * A streaming route takes its body piece by piece as it arrives instead of
 * buffered (an upload of any size in bounded memory). For such a route:
 *   begin  runs once the headers are in, before any body byte is read; it
 *          may reply at once (401, 413 ...): the body is then never read.
 *          It usually sets per-request state with http_req_set_state();
 *   data   runs for each piece of the body; returning -1 stops delivery:
 *          the rest of the body (up to max_body) is read and thrown away,
 *          and then the handler's reply is sent (libmicrohttpd cannot send
 *          one while a body is arriving). Time spent in data does not
 *          count as the client's idleness;
 *   fn     (the route's handler) runs when the body is complete, and
 *          replies as usual;
 *   end    runs exactly once when the request is over, whether it
 *          completed, failed, timed out (no byte for the idle timeout) or
 *          the client went away; completed tells which. It frees the state.
 * max_body still bounds the body, checked against Content-Length at once
 * (413 before any byte is read) and counted as it arrives: a chunked body
 * that runs more than 1 MiB past it has its connection closed.
 */
struct http_stream_ops {
    void (*begin)(struct http_req *req, void *ctx);
    int (*data)(struct http_req *req, void *ctx, const char *data, size_t len);
    void (*end)(struct http_req *req, void *ctx, int completed);
};

/* Returns 0 when the service's dependencies answer, else -1 with a reason
 * in why (no secrets). */
typedef int (*http_ready_fn)(void *ctx, char *why, size_t whylen);

struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* see router.h, e.g. "/jobs/:id" */
    http_handler_fn fn;
    size_t max_body;                      /* largest accepted body in bytes; 0 accepts none */
    const struct http_stream_ops *stream; /* NULL: the body is buffered */
};

/* The routes every server answers besides its own (/healthz, /readyz,
 * /metrics); *n is set to their number. Static. */
const struct http_route *http_builtin_routes(size_t *n);

struct http_server_opts {
    const char *svc;          /* service name for logs and metrics, a literal */
    const char *bind_address; /* IPv4 or IPv6 literal */
    int port;                 /* 0: any free port, see http_server_port() */
    const struct http_route *routes;
    size_t nroutes;
    const char *trusted_proxies; /* comma-separated IPs; see http_req_client_ip() */
    void *ctx;                   /* handed to every handler and to ready */
    http_ready_fn ready;         /* NULL: always ready */
    int idle_timeout;            /* seconds without a byte before a connection is
                                    closed; 0: 30 */
};

/*
 * Starts listening and serving in background threads. The route table is
 * copied. Returns NULL with a message in err when the port cannot be bound.
 */
struct http_server *http_server_start(const struct http_server_opts *opts, char *err,
                                      size_t errlen);

/* The port the server listens on. */
int http_server_port(const struct http_server *srv);

/*
 * Graceful stop: stops accepting connections, waits up to grace_seconds for
 * requests in progress to finish, then closes everything and frees srv.
 * Blocks. NULL is a no-op.
 */
void http_server_stop(struct http_server *srv, int grace_seconds);

/* --- inside a handler: the request (strings valid until the reply) --- */

const char *http_req_method(const struct http_req *req);
const char *http_req_path(const struct http_req *req);
/* Header value by case-insensitive name, or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
/* Query-string argument, or NULL. */
const char *http_req_query(const struct http_req *req, const char *name);
/* Cookie value by name, from the Cookie header, or NULL. */
const char *http_req_cookie(const struct http_req *req, const char *name);
/* Route parameter (":id" in the pattern), or NULL. */
const char *http_req_param(const struct http_req *req, const char *name);
/* The body, NUL-terminated (the length excludes the NUL); "" when none. */
const char *http_req_body(const struct http_req *req, size_t *len);
/* The client's IP address as text: the TCP peer, or, when the peer is one
 * of the trusted proxies, the right-most address in X-Forwarded-For that is
 * not itself a trusted proxy. */
const char *http_req_client_ip(const struct http_req *req);
const char *http_req_id(const struct http_req *req);

/* Per-request state of a streaming route (owned by the route's ops). */
void http_req_set_state(struct http_req *req, void *state);
void *http_req_state(const struct http_req *req);

/* True once a reply has been queued for req. */
int http_req_replied(const struct http_req *req);

/* True when the Content-Type's media type (before any ';') equals type,
 * ignoring case. */
int http_req_content_type_is(const struct http_req *req, const char *type);

/* --- inside a handler: the reply --- */

/* Adds a header to the coming reply (at most 8; both strings copied).
 * Returns 0, or -1 when full or malformed. */
int http_reply_header(struct http_req *req, const char *name, const char *value);

/* Replies status with body serialised as JSON; consumes body's reference. */
void http_reply_json(struct http_req *req, unsigned status, json_t *body);

/* Replies with the DESIGN §4 error object. */
void http_reply_error(struct http_req *req, unsigned status, const char *code, const char *message);

/* Same, with Retry-After: seconds (for 429 and 503). */
void http_reply_error_retry(struct http_req *req, unsigned status, const char *code,
                            const char *message, long retry_after);

/* Replies with a body of the given content type; copies body. */
void http_reply_text(struct http_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len);

/*
 * Streams a body of exactly size bytes produced by read: it is called with
 * the offset reached so far and fills at most max bytes of buf, returning
 * how many (> 0), or -1 on an error (the connection is then closed, since
 * the length was promised). done(cls) runs once when the response is
 * released, whether or not it was sent; it also runs when this call fails.
 * Content-Length is size; a HEAD request gets the headers only.
 *
 * With size HTTP_SIZE_UNKNOWN the body is open-ended (chunked, for event
 * streams): read returns how many bytes it wrote, 0 when it has nothing
 * yet (after waiting up to a second for something: it is called again at
 * once), or -1 to end the body. Once the server is stopping, the body ends
 * instead of calling read again.
 */
#define HTTP_SIZE_UNKNOWN (~0ULL)
typedef long (*http_read_fn)(void *cls, unsigned long long pos, char *buf, size_t max);
void http_reply_stream(struct http_req *req, unsigned status, const char *content_type,
                       unsigned long long size, http_read_fn read, void *cls,
                       void (*done)(void *cls));

#endif
