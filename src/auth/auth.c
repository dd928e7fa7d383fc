/* auth: see auth.h. */
#include "auth/auth.h"

#include "auth/accounts.h"
#include "auth/credentials.h"
#include "auth/password.h"
#include "auth/throttle.h"
#include "core/bearer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/token.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX (64 * 1024)
#define RETRY_UNAVAILABLE 5 /* seconds, Retry-After when the store is down */

struct auth {
    struct users *users; /* borrowed */
    char *secret;        /* owned, wiped on free */
    struct token_keys keys;
    struct password_pool *pool;
    struct throttle *throttle;
    char dummy_hash[PASSWORD_HASH_MAX]; /* verified against for unknown users */
    atomic_uint_fast64_t logins[4];     /* by enum login_result */
};

enum login_result { LOGIN_OK, LOGIN_INVALID, LOGIN_THROTTLED, LOGIN_UNAVAILABLE };
static const char *const login_result_names[] = {"ok", "invalid_credentials", "throttled",
                                                 "unavailable"};

static void count_login(struct auth *a, enum login_result r)
{
    atomic_fetch_add_explicit(&a->logins[r], 1, memory_order_relaxed);
}

static void write_metrics(FILE *out, void *ctx)
{
    struct auth *a = ctx;
    fputs("# HELP auth_logins_total Login attempts by outcome (malformed requests excluded).\n"
          "# TYPE auth_logins_total counter\n",
          out);
    for (int i = 0; i < 4; i++)
        fprintf(out, "auth_logins_total{result=\"%s\"} %llu\n", login_result_names[i],
                (unsigned long long)atomic_load(&a->logins[i]));
    fprintf(out,
            "# HELP auth_password_hashes_active Argon2id computations running now.\n"
            "# TYPE auth_password_hashes_active gauge\n"
            "auth_password_hashes_active %d\n"
            "# HELP auth_password_hashes_peak Most Argon2id computations ever running at once.\n"
            "# TYPE auth_password_hashes_peak gauge\n"
            "auth_password_hashes_peak %d\n",
            password_pool_active(a->pool), password_pool_peak(a->pool));
}

static void reply_store_error(struct http_req *req, int rc)
{
    if (rc == USERS_EUNAVAIL)
        http_reply_error_retry(req, 503, "users_unavailable",
                               "the users database is unavailable; try again shortly",
                               RETRY_UNAVAILABLE);
    else
        http_reply_error(req, 500, "internal_error", "the users database failed");
}

/* Checks the Bearer token; on failure replies 401 and returns -1. */
static int authenticate(struct auth *a, struct http_req *req, struct token_claims *claims)
{
    return bearer_verify(req, &a->keys, claims);
}

/* Reads credentials from Basic or JSON; on failure replies and returns -1. */
static int read_credentials(struct http_req *req, struct credentials *c)
{
    const char *why = NULL;
    const char *authz = http_req_header(req, "Authorization");
    if (credentials_is_basic(authz)) {
        if (credentials_from_basic(authz, c, &why) == 0)
            return 0;
        http_reply_error(req, 400, "invalid_request", why);
        return -1;
    }
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    if (len == 0 && http_req_header(req, "Content-Type") == NULL) {
        http_reply_header(req, "WWW-Authenticate", "Basic realm=\"vid2mp3\", charset=\"UTF-8\"");
        http_reply_error(req, 401, "missing_credentials",
                         "send email and password as JSON or with HTTP Basic authentication");
        return -1;
    }
    if (!http_req_content_type_is(req, "application/json")) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send credentials as application/json or with HTTP Basic "
                         "authentication");
        return -1;
    }
    if (credentials_from_json(body, len, c, &why) == 0)
        return 0;
    http_reply_error(req, 400, "invalid_request", why);
    return -1;
}

/* After a successful login with a hash made under weaker limits. */
static void upgrade_hash(struct auth *a, const struct credentials *c)
{
    char hash[PASSWORD_HASH_MAX];
    if (password_hash(a->pool, c->password, hash) != PASSWORD_OK)
        return; /* next login tries again */
    int rc = users_set_hash(a->users, c->email, hash);
    if (rc == USERS_OK)
        log_info("password hash upgraded", json_pack("{s:s}", "email", c->email));
    else
        log_warn("password hash upgrade failed", json_pack("{s:s}", "reason", users_strerror(rc)));
    sodium_memzero(hash, sizeof(hash));
}

void auth_handle_login(struct http_req *req, void *ctx)
{
    struct auth *a = ctx;
    struct credentials c;
    struct user u;
    memset(&u, 0, sizeof(u));
    if (read_credentials(req, &c) != 0)
        return;

    time_t now = time(NULL);
    char email_key[USERS_EMAIL_MAX + 3], addr_key[80];
    snprintf(email_key, sizeof(email_key), "e:%s", c.email);
    snprintf(addr_key, sizeof(addr_key), "a:%s", http_req_client_ip(req));
    /* The attempt counts against both limits while it runs (see throttle.h). */
    const char *keys[2] = {email_key, addr_key};
    long wait = throttle_begin(a->throttle, keys, 2, now);
    if (wait > 0) {
        log_warn("login throttled",
                 json_pack("{s:s, s:s}", "email", c.email, "client", http_req_client_ip(req)));
        count_login(a, LOGIN_THROTTLED);
        http_reply_error_retry(req, 429, "too_many_attempts",
                               "too many failed logins; wait before trying again", wait);
        goto out;
    }

    int rc = users_get(a->users, c.email, &u);
    if (rc != USERS_OK && rc != USERS_ENOTFOUND) {
        count_login(a, LOGIN_UNAVAILABLE);
        throttle_end(a->throttle, keys, 2, now, false);
        reply_store_error(req, rc);
        goto out;
    }
    /* Unknown users cost the same hash as known ones, so timing tells nothing. */
    int v = password_verify(a->pool, rc == USERS_OK ? u.password_hash : a->dummy_hash, c.password);
    if (v == PASSWORD_EBUSY) {
        count_login(a, LOGIN_UNAVAILABLE);
        throttle_end(a->throttle, keys, 2, now, false);
        http_reply_error_retry(req, 503, "busy", "the server is busy; try again shortly", 2);
        goto out;
    }
    if (rc != USERS_OK || v != PASSWORD_OK) {
        count_login(a, LOGIN_INVALID);
        throttle_end(a->throttle, keys, 2, now, true);
        log_info("login failed", json_pack("{s:s, s:s}", "email", c.email, "reason",
                                           rc != USERS_OK ? "unknown_user" : "wrong_password"));
        http_reply_error(req, 401, "invalid_credentials", "the email or password is wrong");
        goto out;
    }
    throttle_end(a->throttle, keys, 2, now, false);
    throttle_reset(a->throttle, email_key);
    if (password_needs_rehash(u.password_hash))
        upgrade_hash(a, &c);

    char *token = NULL;
    if (token_issue(&a->keys, u.email, u.admin, now, &token) != TOKEN_OK) {
        http_reply_error(req, 500, "internal_error", "the token could not be issued");
        goto out;
    }
    count_login(a, LOGIN_OK);
    log_info("login", json_pack("{s:s, s:b}", "email", u.email, "admin", u.admin));
    http_reply_json(req, 200,
                    json_pack("{s:s, s:s, s:I}", "token", token, "token_type", "Bearer",
                              "expires_in", (json_int_t)a->keys.ttl));
    free(token);
out:
    credentials_wipe(&c);
    sodium_memzero(&u, sizeof(u));
}

static void handle_validate(struct http_req *req, void *ctx)
{
    struct auth *a = ctx;
    struct token_claims claims;
    if (authenticate(a, req, &claims) != 0)
        return;
    http_reply_json(req, 200, token_claims_json(&a->keys, &claims));
}

/* The token's subject must still be a stored administrator. */
static int require_admin(struct auth *a, struct http_req *req)
{
    struct token_claims claims;
    if (authenticate(a, req, &claims) != 0)
        return -1;
    struct user caller;
    int rc = claims.admin ? users_get(a->users, claims.sub, &caller) : USERS_ENOTFOUND;
    if (rc != USERS_OK && rc != USERS_ENOTFOUND) {
        reply_store_error(req, rc);
        return -1;
    }
    if (rc != USERS_OK || !caller.admin) {
        http_reply_error(req, 403, "forbidden", "only administrators can create accounts");
        return -1;
    }
    return 0;
}

static void handle_create_user(struct http_req *req, void *ctx)
{
    struct auth *a = ctx;
    if (require_admin(a, req) != 0)
        return;
    if (!http_req_content_type_is(req, "application/json")) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send the account as application/json");
        return;
    }
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *email = json_object_get(o, "email"), *password = json_object_get(o, "password");
    json_t *admin = json_object_get(o, "admin");
    const char *why = NULL;
    if (!json_is_object(o))
        why = "the body must be a JSON object {\"email\", \"password\", \"admin\"}";
    else if (!json_is_string(email) || !json_is_string(password))
        why = "email and password are required and must be strings";
    else if (strlen(json_string_value(email)) != json_string_length(email) ||
             strlen(json_string_value(password)) != json_string_length(password))
        why = "email and password must not contain NUL characters";
    else if (admin != NULL && !json_is_boolean(admin))
        why = "admin must be true or false";
    if (why != NULL) {
        http_reply_error(req, 400, "invalid_request", why);
        json_decref(o);
        return;
    }
    int rc = accounts_create(a->users, a->pool, json_string_value(email),
                             json_string_value(password), json_is_true(admin), &why);
    char normalized[USERS_EMAIL_MAX + 1] = "";
    users_normalize_email(json_string_value(email), normalized);
    if (rc == USERS_OK) {
        log_info("account created",
                 json_pack("{s:s, s:b}", "email", normalized, "admin", json_is_true(admin)));
        http_reply_json(req, 201,
                        json_pack("{s:s, s:b}", "email", normalized, "admin", json_is_true(admin)));
    } else if (rc == USERS_EINVAL) {
        http_reply_error(req, 400, "invalid_request", why);
    } else if (rc == USERS_EEXIST) {
        http_reply_error(req, 409, "user_exists", "an account with this email already exists");
    } else {
        reply_store_error(req, rc);
    }
    json_decref(o);
}

static const struct http_route routes[] = {
    {"POST", "/login", auth_handle_login, BODY_MAX, NULL},
    {"POST", "/validate", handle_validate, BODY_MAX, NULL},
    {"POST", "/users", handle_create_user, BODY_MAX, NULL},
};

const struct http_route *auth_routes(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

int auth_ready(void *ctx, char *why, size_t whylen)
{
    struct auth *a = ctx;
    int rc = users_ping(a->users);
    if (rc == USERS_OK)
        return 0;
    snprintf(why, whylen, "users store (%s): %s", a->users->ops->name, users_strerror(rc));
    return -1;
}

struct auth *auth_new(const struct config *cfg, struct users *users, const char *secret, char *err,
                      size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (a == NULL)
        goto oom;
    a->users = users;
    a->secret = strdup(secret);
    a->pool = password_pool_new((int)cfg->hash_concurrency);
    a->throttle = throttle_new((int)cfg->login_max_failures, (int)cfg->login_window);
    if (a->secret == NULL || a->pool == NULL || a->throttle == NULL)
        goto oom;
    a->keys.secret = (const unsigned char *)a->secret;
    a->keys.secret_len = strlen(a->secret);
    a->keys.issuer = cfg->jwt_issuer;
    a->keys.ttl = cfg->jwt_ttl;

    unsigned char raw[24];
    char random_pw[49];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(random_pw, sizeof(random_pw), raw, sizeof(raw));
    if (password_hash(a->pool, random_pw, a->dummy_hash) != PASSWORD_OK)
        goto oom;
    metrics_register(write_metrics, a);
    return a;
oom:
    snprintf(err, errlen, "out of memory");
    auth_free(a);
    return NULL;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    metrics_unregister(a);
    if (a->secret != NULL) {
        sodium_memzero(a->secret, strlen(a->secret));
        free(a->secret);
    }
    password_pool_free(a->pool);
    throttle_free(a->throttle);
    free(a);
}

struct http_server *auth_serve(struct auth *a, const struct config *cfg, int port, char *err,
                               size_t errlen)
{
    size_t n = 0;
    const struct http_route *r = auth_routes(&n);
    struct http_server_opts o = {
        .svc = "auth",
        .bind_address = cfg->bind_address,
        .trusted_proxies = cfg->trusted_proxies,
        .port = port >= 0 ? port : (int)cfg->auth_port,
        .routes = r,
        .nroutes = n,
        .ctx = a,
        .ready = auth_ready,
        .idle_timeout = (int)cfg->http_idle_timeout,
    };
    return http_server_start(&o, err, errlen);
}
