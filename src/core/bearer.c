/* bearer: see bearer.h. */
#include "core/bearer.h"

#include <time.h>

const char *bearer_token(struct http_req *req)
{
    const char *tok = token_bearer(http_req_header(req, "Authorization"));
    if (tok == NULL) {
        http_reply_header(req, "WWW-Authenticate", "Bearer");
        http_reply_error(req, 401, "missing_token", "send the header Authorization: Bearer TOKEN");
    }
    return tok;
}

void bearer_reply_invalid(struct http_req *req, int rc)
{
    http_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    http_reply_error(req, 401, rc == TOKEN_EEXPIRED ? "token_expired" : "invalid_token",
                     token_strerror(rc));
}

int bearer_check(struct http_req *req, const struct token_keys *k, const char *tok,
                 struct token_claims *out)
{
    if (tok == NULL)
        return -1;
    int rc = token_verify(k, tok, time(NULL), out);
    if (rc != TOKEN_OK) {
        bearer_reply_invalid(req, rc);
        return -1;
    }
    return 0;
}

int bearer_verify(struct http_req *req, const struct token_keys *k, struct token_claims *out)
{
    return bearer_check(req, k, bearer_token(req), out);
}
