/*
 * auth: the Auth service's logic (DESIGN §4): login, token validation and
 * account creation, as HTTP handlers over a users store.
 *
 * auth_main.c wires it to configuration, signals and a port; `vid2mp3 all`
 * and the tests create it directly.
 */
#ifndef VID2MP3_AUTH_H
#define VID2MP3_AUTH_H

#include <stddef.h>

#include "core/config.h"
#include "core/http.h"
#include "store/users.h"

struct auth;

/*
 * Creates the service state. users is borrowed (must outlive the result);
 * secret (the JWT key, NUL-terminated) is copied. Computes a dummy Argon2id hash, so it
 * takes a few tens of milliseconds. Returns NULL with err on failure.
 */
struct auth *auth_new(const struct config *cfg, struct users *users, const char *secret, char *err,
                      size_t errlen);
void auth_free(struct auth *a);

/* The service's routes; their ctx is the struct auth. */
const struct http_route *auth_routes(size_t *n);

/* POST /login as a handler of its own, so `vid2mp3 all` can serve it on
 * the gateway's port in process; ctx is the struct auth. */
void auth_handle_login(struct http_req *req, void *ctx);

/* /readyz: the users store answers. ctx is the struct auth. */
int auth_ready(void *ctx, char *why, size_t whylen);

/*
 * Starts the auth HTTP service on cfg's BIND_ADDRESS and AUTH_PORT (or port
 * when port >= 0). Returns the server or NULL with err.
 */
struct http_server *auth_serve(struct auth *a, const struct config *cfg, int port, char *err,
                               size_t errlen);

/* `vid2mp3 auth`: runs the service until SIGTERM or SIGINT. Returns the
 * process exit status. */
int auth_main(int argc, char **argv);

#endif
