/*
 * bearer: the caller of an HTTP request, from "Authorization: Bearer
 * TOKEN", with the 401 replies every service gives the same way.
 */
#ifndef VID2MP3_BEARER_H
#define VID2MP3_BEARER_H

#include "core/http.h"
#include "core/token.h"

/* The request's bearer token, or NULL after replying 401 missing_token. */
const char *bearer_token(struct http_req *req);

/*
 * The same, but a request without the header may carry the token as the
 * access_token query parameter (RFC 6750 §2.3): for links that cannot send
 * headers (an <audio> source, a download link). A request with both gets
 * 400 invalid_request. Only for GETs whose answer is the caller's own
 * data: a URL can end up in a history or a proxy's log.
 */
const char *bearer_token_or_query(struct http_req *req);

/* Replies 401 for a token that failed verification with TOKEN_E* code rc. */
void bearer_reply_invalid(struct http_req *req, int rc);

/* Verifies the request's token with k. Returns 0 with the claims, or
 * replies 401 and returns -1. */
int bearer_verify(struct http_req *req, const struct token_keys *k, struct token_claims *out);

/* Verifies tok (from one of the two above; NULL: they replied) with k.
 * Returns 0 with the claims, or replies 401 and returns -1. */
int bearer_check(struct http_req *req, const struct token_keys *k, const char *tok,
                 struct token_claims *out);

#endif
