/*
 * token: the service's JWTs (DESIGN §4), on libjwt.
 *
 * HS256 only: the algorithm is fixed here, never taken from a token, so
 * "none" and every other algorithm are refused before a signature is
 * checked. Claims: iss, sub and username (the email), admin, iat, exp; iss
 * and exp are required on verification, with TOKEN_LEEWAY seconds of clock
 * skew allowed.
 */
#ifndef VID2MP3_TOKEN_H
#define VID2MP3_TOKEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define TOKEN_MAX_LEN 8192 /* longer tokens are refused unread */
#define TOKEN_LEEWAY 30    /* seconds */
#define TOKEN_SUB_MAX 254

enum {
    TOKEN_OK = 0,
    TOKEN_EMALFORMED = -1, /* not three base64url parts of JSON */
    TOKEN_EALG = -2,       /* header names another algorithm */
    TOKEN_ESIGNATURE = -3, /* signature does not match */
    TOKEN_EEXPIRED = -4,
    TOKEN_ECLAIMS = -5, /* a required claim is missing or of the wrong type */
    TOKEN_ETOOLONG = -6,
    TOKEN_ENOMEM = -7,
};

/* Signing settings; the secret is borrowed and must outlive the struct. */
struct token_keys {
    const unsigned char *secret;
    size_t secret_len;
    const char *issuer;
    long ttl; /* seconds */
};

struct token_claims {
    char sub[TOKEN_SUB_MAX + 1];
    bool admin;
    long long iat;
    long long exp;
};

/*
 * Issues a token for email at time now. Returns 0 and a new string in *out
 * (caller frees with free()), or a negative TOKEN_E* code.
 */
int token_issue(const struct token_keys *k, const char *email, bool admin, time_t now, char **out);

/*
 * Checks token (algorithm, signature, issuer, expiry, claim types) at time
 * now and fills *claims. Returns 0 or a negative TOKEN_E* code.
 */
int token_verify(const struct token_keys *k, const char *token, time_t now,
                 struct token_claims *claims);

/* The claims as the JSON object /validate returns (caller owns it). */
json_t *token_claims_json(const struct token_keys *k, const struct token_claims *c);

/* The token in an Authorization header value "Bearer TOKEN" (scheme in any
 * case), or NULL when header is NULL or another scheme. Points into header. */
const char *token_bearer(const char *header);

/* A sentence for a TOKEN_E* code. */
const char *token_strerror(int code);

#endif
