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

/* Returns 0 when the service's dependencies answer, else -1 with a reason
 * in why (no secrets). */
typedef int (*http_ready_fn)(void *ctx, char *why, size_t whylen);

struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* see router.h, e.g. "/jobs/:id" */
    http_handler_fn fn;
    size_t max_body; /* largest accepted body in bytes; 0 accepts none */
};

struct http_server_opts {
    const char *svc;          /* service name for logs and metrics, a literal */
    const char *bind_address; /* IPv4 or IPv6 literal */
    int port;                 /* 0: any free port, see http_server_port() */
    const struct http_route *routes;
    size_t nroutes;
    const char *trusted_proxies; /* comma-separated IPs; see http_req_client_ip() */
    void *ctx;                   /* handed to every handler and to ready */
    http_ready_fn ready;         /* NULL: always ready */
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
/* Route parameter (":id" in the pattern), or NULL. */
const char *http_req_param(const struct http_req *req, const char *name);
/* The body, NUL-terminated (the length excludes the NUL); "" when none. */
const char *http_req_body(const struct http_req *req, size_t *len);
/* The client's IP address as text: the TCP peer, or, when the peer is one
 * of the trusted proxies, the right-most address in X-Forwarded-For that is
 * not itself a trusted proxy. */
const char *http_req_client_ip(const struct http_req *req);
const char *http_req_id(const struct http_req *req);

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

#endif
