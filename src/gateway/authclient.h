/*
 * authclient: the gateway's HTTP client for the auth service at
 * AUTH_SVC_ADDRESS (libcurl): token validation through POST /validate and
 * forwarding of POST /login. Safe to use from several threads.
 */
#ifndef VID2MP3_AUTHCLIENT_H
#define VID2MP3_AUTHCLIENT_H

#include <stddef.h>

#include "core/token.h"

struct authclient;

/* address: HOST:PORT, or an http:// or https:// URL. Returns NULL with err. */
struct authclient *authclient_new(const char *address, char *err, size_t errlen);
void authclient_free(struct authclient *ac);

/* A reply from the auth service, passed through as it came. */
struct auth_reply {
    long status; /* 0 when the service could not be reached */
    char *body;  /* NUL-terminated; caller frees with auth_reply_free() */
    size_t len;
    char ctype[128];           /* Content-Type, "" when none */
    char retry_after[24];      /* Retry-After, "" when none */
    char www_authenticate[96]; /* WWW-Authenticate, "" when none */
};
void auth_reply_free(struct auth_reply *r);

/*
 * POSTs body to path on the auth service with the given Content-Type and
 * Authorization (either may be NULL: the header is then not sent), X-Request-Id request_id and
 * X-Forwarded-For client_ip. Returns 0 with the reply in *out, or -1 when
 * the service did not answer (out->status 0).
 */
int authclient_post(struct authclient *ac, const char *path, const char *ctype,
                    const char *authorization, const char *body, size_t len, const char *request_id,
                    const char *client_ip, struct auth_reply *out);

enum { AUTHC_OK = 0, AUTHC_INVALID = -1, AUTHC_EXPIRED = -2, AUTHC_UNAVAIL = -3 };

/*
 * Validates a bearer token through POST /validate and fills *claims from
 * its answer. Returns AUTHC_OK, AUTHC_EXPIRED (401 token_expired),
 * AUTHC_INVALID (any other 401) or AUTHC_UNAVAIL (no answer, or one that
 * is not a 200 or a 401).
 */
int authclient_validate(struct authclient *ac, const char *token, const char *request_id,
                        struct token_claims *claims);

#endif
