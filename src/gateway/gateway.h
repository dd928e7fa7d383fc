/*
 * gateway: the Gateway service (DESIGN §4), the only door users see:
 * login forwarding, streaming uploads into blob storage, the jobs API,
 * downloads with Range, and the storage check.
 *
 * gateway_main.c wires it to configuration, signals and a port; `vid2mp3
 * all` and the tests create it directly.
 */
#ifndef VID2MP3_GATEWAY_H
#define VID2MP3_GATEWAY_H

#include <stddef.h>

#include "core/config.h"
#include "core/http.h"
#include "queue/queue.h"
#include "store/blobs.h"
#include "store/jobs.h"

/* What the gateway runs on. The stores and the queue are borrowed and must
 * outlive the gateway. */
struct gateway_deps {
    struct blobs *blobs;
    struct jobs *jobs;
    struct queue *queue;
    /* The JWT key: tokens are verified in process. NULL: through the auth
     * service's POST /validate at AUTH_SVC_ADDRESS. Copied. */
    const char *jwt_secret;
    /* POST /login served in process by this handler with this ctx (`vid2mp3
     * all`); NULL: forwarded to the auth service at AUTH_SVC_ADDRESS. */
    http_handler_fn login;
    void *login_ctx;
};

struct gateway *gateway_new(const struct config *cfg, const struct gateway_deps *deps, char *err,
                            size_t errlen);
void gateway_free(struct gateway *gw);

/* Starts the gateway's HTTP service on BIND_ADDRESS and GATEWAY_PORT (or
 * port when port >= 0). Returns the server or NULL with err. */
/* The gateway's routes for cfg, written to out (at most max); returns how
 * many there are (more than max: some were left out). */
#define GATEWAY_ROUTES_MAX 16
size_t gateway_routes(const struct config *cfg, struct http_route *out, size_t max);

struct http_server *gateway_serve(struct gateway *gw, const struct config *cfg, int port, char *err,
                                  size_t errlen);

/* `vid2mp3 gateway`: runs the service until SIGTERM or SIGINT. */
int gateway_main(int argc, char **argv);

#endif
