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
