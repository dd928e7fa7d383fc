/* token: see token.h. */
#include "core/token.h"

#include <jwt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int token_issue(const struct token_keys *k, const char *email, bool admin, time_t now, char **out)
{
    int rc = TOKEN_ENOMEM;
    jwt_t *jwt = NULL;
    char *grants = NULL;
    *out = NULL;
    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:b, s:I, s:I}", "iss", k->issuer, "sub", email, "username",
                  email, "admin", admin, "iat", (json_int_t)now, "exp", (json_int_t)(now + k->ttl));
    if (claims == NULL)
        goto out;
    grants = json_dumps(claims, JSON_COMPACT);
    if (grants == NULL || jwt_new(&jwt) != 0)
        goto out;
    if (jwt_add_grants_json(jwt, grants) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, k->secret, (int)k->secret_len) != 0)
        goto out;
    *out = jwt_encode_str(jwt);
    rc = *out != NULL ? TOKEN_OK : TOKEN_ENOMEM;
out:
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return rc;
}

/* Checks the header before libjwt sees the token: exactly HS256, no "crit". */
static int check_header(const char *token, size_t dot)
{
    unsigned char raw[512];
    size_t len = 0;
    if (dot == 0 || dot > 600 ||
        sodium_base642bin(raw, sizeof(raw) - 1, token, dot, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return TOKEN_EMALFORMED;
    json_t *h = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(h)) {
        json_decref(h);
        return TOKEN_EMALFORMED;
    }
    const char *alg = json_string_value(json_object_get(h, "alg"));
    json_t *typ = json_object_get(h, "typ");
    int rc = TOKEN_OK;
    if (alg == NULL || strcmp(alg, "HS256") != 0)
        rc = TOKEN_EALG;
    else if (json_object_get(h, "crit") != NULL ||
             (typ != NULL && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0)))
        rc = TOKEN_EMALFORMED;
    json_decref(h);
    return rc;
}

static int read_claims(const struct token_keys *k, jwt_t *jwt, time_t now, struct token_claims *c)
{
    char *text = jwt_get_grants_json(jwt, NULL);
    if (text == NULL)
        return TOKEN_ECLAIMS;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    int rc = TOKEN_ECLAIMS;
    json_t *iss = json_object_get(o, "iss"), *sub = json_object_get(o, "sub");
    json_t *admin = json_object_get(o, "admin"), *iat = json_object_get(o, "iat");
    json_t *exp = json_object_get(o, "exp"), *nbf = json_object_get(o, "nbf");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), k->issuer) != 0 ||
        !json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) > TOKEN_SUB_MAX || !json_is_boolean(admin) ||
        !json_is_integer(iat) || !json_is_integer(exp) || (nbf != NULL && !json_is_integer(nbf)))
        goto out;
    c->iat = json_integer_value(iat);
    c->exp = json_integer_value(exp);
    if ((long long)now > c->exp + TOKEN_LEEWAY) {
        rc = TOKEN_EEXPIRED;
        goto out;
    }
    if (c->iat > (long long)now + TOKEN_LEEWAY ||
        (nbf != NULL && json_integer_value(nbf) > (long long)now + TOKEN_LEEWAY))
        goto out; /* not valid yet */
    snprintf(c->sub, sizeof(c->sub), "%s", json_string_value(sub));
    c->admin = json_is_true(admin);
    rc = TOKEN_OK;
out:
    json_decref(o);
    return rc;
}

int token_verify(const struct token_keys *k, const char *token, time_t now,
                 struct token_claims *claims)
{
    size_t len = strnlen(token, TOKEN_MAX_LEN + 1);
    if (len > TOKEN_MAX_LEN)
        return TOKEN_ETOOLONG;
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL || dot2[1] == '\0')
        return TOKEN_EMALFORMED;
    int rc = check_header(token, (size_t)(dot1 - token));
    if (rc != TOKEN_OK)
        return rc;

    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, k->secret, (int)k->secret_len) != 0 || jwt == NULL)
        return TOKEN_ESIGNATURE; /* libjwt does not tell bad JSON from a bad signature */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        rc = TOKEN_EALG;
    else
        rc = read_claims(k, jwt, now, claims);
    jwt_free(jwt);
    return rc;
}

json_t *token_claims_json(const struct token_keys *k, const struct token_claims *c)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:I, s:I}", "iss", k->issuer, "sub", c->sub, "username",
                     c->sub, "admin", c->admin, "iat", (json_int_t)c->iat, "exp",
                     (json_int_t)c->exp);
}

const char *token_strerror(int code)
{
    switch (code) {
    case TOKEN_OK:
        return "valid";
    case TOKEN_EMALFORMED:
        return "the token is malformed";
    case TOKEN_EALG:
        return "the token uses an algorithm that is not accepted";
    case TOKEN_ESIGNATURE:
        return "the token's signature is invalid";
    case TOKEN_EEXPIRED:
        return "the token has expired";
    case TOKEN_ECLAIMS:
        return "the token lacks a required claim or is not valid yet";
    case TOKEN_ETOOLONG:
        return "the token is too long";
    case TOKEN_ENOMEM:
        return "out of memory";
    default:
        return "unknown token error";
    }
}

const char *token_bearer(const char *header)
{
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    header += 7;
    while (*header == ' ')
        header++;
    return *header != '\0' ? header : NULL;
}
