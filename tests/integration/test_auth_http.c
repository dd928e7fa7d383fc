/*
 * Integration: the real `vid2mp3 auth` (SQLite users) driven over HTTP.
 * Usage: test_auth_http PATH/TO/vid2mp3
 */
#include "server.h"

#include <jwt.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "store/users.h"

#define ADMIN "admin@example.com"
#define ADMIN_PW "admin-password-1"
#define PLAIN "plain@example.com"
#define PLAIN_PW "plain-password-1"

static struct server srv;

static int group_setup(void **state)
{
    (void)state;
    server_init(&srv, NULL);
    assert_int_equal(server_cli(&srv, ADMIN_PW "\n", "user", "add", ADMIN, "--admin"), 0);
    assert_int_equal(server_cli(&srv, PLAIN_PW "\n", "user", "add", PLAIN, NULL), 0);
    server_start(&srv, "auth");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_cleanup(&srv);
    return 0;
}

static char *basic_header(const char *userpass)
{
    char *h = malloc(4096);
    memcpy(h, "Authorization: Basic ", 21);
    sodium_bin2base64(h + 21, 4096 - 21, (const unsigned char *)userpass, strlen(userpass),
                      sodium_base64_VARIANT_ORIGINAL);
    return h;
}

static char *bearer_header(const char *token)
{
    size_t n = strlen(token) + 32;
    char *h = malloc(n);
    snprintf(h, n, "Authorization: Bearer %s", token);
    return h;
}

/* ---------- login ---------- */

static void login_json(void **state)
{
    (void)state;
    struct th_resp r;
    post(&srv, "/login", NULL, "application/json",
         "{\"email\":\"Admin@Example.com\",\"password\":\"" ADMIN_PW "\"}", &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "token_type")), "Bearer");
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")), 86400);
    assert_true(strlen(json_string_value(json_object_get(j, "token"))) > 50);
    char buf[128];
    assert_non_null(th_header(&r, "X-Request-Id", buf, sizeof(buf)));
    assert_non_null(th_header(&r, "Content-Type", buf, sizeof(buf)));
    assert_string_equal(buf, "application/json");
    json_decref(j);
    th_resp_free(&r);
}

static void login_basic(void **state)
{
    (void)state;
    char *h = basic_header(PLAIN ":" PLAIN_PW);
    struct th_resp r;
    post(&srv, "/login", h, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    assert_non_null(json_string_value(json_object_get(j, "token")));
    json_decref(j);
    th_resp_free(&r);
    free(h);
}

static void wrong_password_and_unknown_user_look_alike(void **state)
{
    (void)state;
    struct th_resp a, b;
    post(&srv, "/login", NULL, NULL, "{\"email\":\"" PLAIN "\",\"password\":\"nope-nope\"}", &a);
    post(&srv, "/login", NULL, NULL, "{\"email\":\"ghost@example.com\",\"password\":\"nope\"}", &b);
    th_assert_error(&a, 401, "invalid_credentials");
    th_assert_error(&b, 401, "invalid_credentials");
    assert_string_equal(a.body, b.body);
    th_resp_free(&a);
    th_resp_free(&b);
}

static void login_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        long status;
        const char *code;
    } cases[] = {
        {"{not json", 400, "invalid_request"},
        {"[1,2]", 400, "invalid_request"},
        {"{\"email\":42,\"password\":\"x\"}", 400, "invalid_request"},
        {"{\"email\":\"a@b.c\",\"password\":[\"x\"]}", 400, "invalid_request"},
        {"{\"email\":\"a@b.c\"}", 400, "invalid_request"},
        {"{}", 400, "invalid_request"},
        {"{\"email\":\"\",\"password\":\"\"}", 400, "invalid_request"},
        {"{\"email\":\"a@b.c\",\"password\":\"\"}", 400, "invalid_request"},
        {"{\"email\":\"no-at-sign\",\"password\":\"x\"}", 400, "invalid_request"},
        {"", 400, "invalid_request"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct th_resp r;
        post(&srv, "/login", NULL, "application/json", cases[i].body, &r);
        th_assert_error(&r, cases[i].status, cases[i].code);
        th_resp_free(&r);
    }
}

static void login_oversized_fields(void **state)
{
    (void)state;
    char *body = malloc(8000);
    char *big = malloc(3000);
    memset(big, 'a', 2999);
    big[2999] = '\0';
    snprintf(body, 8000, "{\"email\":\"%s@example.com\",\"password\":\"x\"}", big);
    struct th_resp r;
    post(&srv, "/login", NULL, NULL, body, &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
    snprintf(body, 8000, "{\"email\":\"a@b.c\",\"password\":\"%s\"}", big);
    post(&srv, "/login", NULL, NULL, body, &r);
    th_assert_error(&r, 400, "invalid_request");
    assert_non_null(strstr(r.body, "1024"));
    th_resp_free(&r);
    free(body);
    free(big);
}

static void login_body_over_64k(void **state)
{
    (void)state;
    size_t n = 70 * 1024;
    char *body = malloc(n + 1);
    memset(body, ' ', n);
    body[0] = '{';
    body[n - 1] = '}';
    body[n] = '\0';
    struct th_resp r;
    post(&srv, "/login", NULL, NULL, body, &r);
    th_assert_error(&r, 413, "payload_too_large");
    th_resp_free(&r);
    /* the same without Content-Length (chunked): refused while reading */
    char url[128];
    snprintf(url, sizeof(url), "%s/login", srv.base);
    const char *h[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    th_http("POST", url, h, body, n, &r);
    th_assert_error(&r, 413, "payload_too_large");
    th_resp_free(&r);
    free(body);
}

static void login_wrong_content_type(void **state)
{
    (void)state;
    struct th_resp r;
    post(&srv, "/login", NULL, "text/plain", "email=a@b.c&password=x", &r);
    th_assert_error(&r, 415, "unsupported_media_type");
    th_resp_free(&r);
    post(&srv, "/login", NULL, "application/x-www-form-urlencoded", "email=a", &r);
    th_assert_error(&r, 415, "unsupported_media_type");
    th_resp_free(&r);
    /* parameters on the media type are fine */
    post(&srv, "/login", NULL, "application/json; charset=utf-8",
         "{\"email\":\"" PLAIN "\",\"password\":\"" PLAIN_PW "\"}", &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void login_broken_basic(void **state)
{
    (void)state;
    const char *headers[] = {"Authorization: Basic !!!!", "Authorization: Basic ",
                             "Authorization: Basic bm8tY29sb24=" /* "no-colon" */};
    for (size_t i = 0; i < 3; i++) {
        struct th_resp r;
        post(&srv, "/login", headers[i], NULL, NULL, &r);
        th_assert_error(&r, 400, "invalid_request");
        th_resp_free(&r);
    }
    struct th_resp r;
    post(&srv, "/login", NULL, NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_credentials");
    char buf[128];
    assert_non_null(th_header(&r, "WWW-Authenticate", buf, sizeof(buf)));
    th_resp_free(&r);
}

/* ---------- validate ---------- */

static void validate_good_token(void **state)
{
    (void)state;
    char *tok = login(&srv, ADMIN, ADMIN_PW);
    char *h = bearer_header(tok);
    struct th_resp r;
    post(&srv, "/validate", h, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "sub")), ADMIN);
    assert_string_equal(json_string_value(json_object_get(j, "username")), ADMIN);
    assert_true(json_is_true(json_object_get(j, "admin")));
    assert_true(json_integer_value(json_object_get(j, "exp")) >
                json_integer_value(json_object_get(j, "iat")));
    json_decref(j);
    th_resp_free(&r);
    free(h);
    free(tok);
    /* a plain user's claims say admin: false, from the stored user */
    tok = login(&srv, PLAIN, PLAIN_PW);
    h = bearer_header(tok);
    post(&srv, "/validate", h, NULL, NULL, &r);
    j = th_json(&r);
    assert_true(json_is_false(json_object_get(j, "admin")));
    json_decref(j);
    th_resp_free(&r);
    free(h);
    free(tok);
}

static void expect_invalid(const char *token, const char *code)
{
    char *h = bearer_header(token);
    struct th_resp r;
    post(&srv, "/validate", h, NULL, NULL, &r);
    th_assert_error(&r, 401, code);
    th_resp_free(&r);
    free(h);
}

static void validate_hostile_tokens(void **state)
{
    (void)state;
    long now = (long)time(NULL);
    char claims[512];

    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" ADMIN "\",\"admin\":true,\"iat\":%ld,\"exp\":%ld}",
             now - 7200, now - 3600);
    char *t = th_forge_jwt("HS256", TEST_SECRET, claims);
    expect_invalid(t, "token_expired");
    free(t);

    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" ADMIN "\",\"admin\":true,\"iat\":%ld,\"exp\":%ld}",
             now, now + 3600);
    t = th_forge_jwt("HS256", "some-other-secret-0123456789abcdef", claims);
    expect_invalid(t, "invalid_token");
    free(t);
    t = th_forge_jwt("HS512", TEST_SECRET, claims);
    expect_invalid(t, "invalid_token");
    free(t);
    t = th_forge_jwt("none", NULL, claims);
    expect_invalid(t, "invalid_token");
    free(t);

    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" ADMIN "\",\"admin\":true,\"iat\":%ld}", now);
    t = th_forge_jwt("HS256", TEST_SECRET, claims);
    expect_invalid(t, "invalid_token"); /* no exp */
    free(t);

    expect_invalid("garbage", "invalid_token");
    expect_invalid("a.b.c", "invalid_token");
    char *big = malloc(9000);
    memset(big, 'A', 8999);
    big[8999] = '\0';
    expect_invalid(big, "invalid_token");
    free(big);

    struct th_resp r;
    post(&srv, "/validate", NULL, NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    post(&srv, "/validate", "Authorization: Basic YTpi", NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
}

/* ---------- accounts ---------- */

static void create_user_as_admin(void **state)
{
    (void)state;
    char *tok = login(&srv, ADMIN, ADMIN_PW);
    char *h = bearer_header(tok);
    struct th_resp r;
    post(&srv, "/users", h, NULL,
         "{\"email\":\"New@Example.com\",\"password\":\"new-password\",\"admin\":false}", &r);
    assert_int_equal(r.status, 201);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "email")), "new@example.com");
    json_decref(j);
    th_resp_free(&r);
    free(login(&srv, "new@example.com", "new-password"));

    post(&srv, "/users", h, NULL, "{\"email\":\"new@example.com\",\"password\":\"new-password\"}",
         &r);
    th_assert_error(&r, 409, "user_exists");
    th_resp_free(&r);
    post(&srv, "/users", h, NULL, "{\"email\":\"short@example.com\",\"password\":\"short\"}", &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
    post(&srv, "/users", h, NULL,
         "{\"email\":\"x@example.com\",\"password\":\"long-enough\","
         "\"admin\":\"yes\"}",
         &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
    post(&srv, "/users", h, NULL, "[]", &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
    post(&srv, "/users", h, "text/plain", "hello", &r);
    th_assert_error(&r, 415, "unsupported_media_type");
    th_resp_free(&r);
    free(h);
    free(tok);
}

static void create_user_refused_to_others(void **state)
{
    (void)state;
    const char *body = "{\"email\":\"sneaky@example.com\",\"password\":\"sneaky-pass\"}";
    char *tok = login(&srv, PLAIN, PLAIN_PW);
    char *h = bearer_header(tok);
    struct th_resp r;
    post(&srv, "/users", h, NULL, body, &r);
    th_assert_error(&r, 403, "forbidden");
    th_resp_free(&r);
    post(&srv, "/users", NULL, NULL, body, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    /* a forged admin claim for a user who is not an admin in the store */
    long now = (long)time(NULL);
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" PLAIN "\",\"username\":\"" PLAIN "\","
             "\"admin\":true,\"iat\":%ld,\"exp\":%ld}",
             now, now + 600);
    char *forged = th_forge_jwt("HS256", TEST_SECRET, claims);
    char *fh = bearer_header(forged);
    post(&srv, "/users", fh, NULL, body, &r);
    th_assert_error(&r, 403, "forbidden");
    th_resp_free(&r);
    free(fh);
    free(forged);
    free(h);
    free(tok);
}

/* ---------- service core over HTTP ---------- */

static void request_ids(void **state)
{
    (void)state;
    char url[128], buf[128];
    snprintf(url, sizeof(url), "%s/healthz", srv.base);
    const char *given[] = {"X-Request-Id: trace-abc.123", NULL};
    struct th_resp r;
    th_http("GET", url, given, NULL, 0, &r);
    assert_string_equal(th_header(&r, "X-Request-Id", buf, sizeof(buf)), "trace-abc.123");
    th_resp_free(&r);
    const char *hostile[] = {"X-Request-Id: has spaces\"and quotes", NULL};
    th_http("GET", url, hostile, NULL, 0, &r);
    assert_non_null(th_header(&r, "X-Request-Id", buf, sizeof(buf)));
    assert_int_equal(strlen(buf), 32); /* replaced by a generated id */
    th_resp_free(&r);
}

static void unknown_paths_and_methods(void **state)
{
    (void)state;
    char url[128], buf[64];
    struct th_resp r;
    snprintf(url, sizeof(url), "%s/nope", srv.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    snprintf(url, sizeof(url), "%s/login", srv.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    th_assert_error(&r, 405, "method_not_allowed");
    assert_string_equal(th_header(&r, "Allow", buf, sizeof(buf)), "POST");
    th_resp_free(&r);
}

static void health_ready_metrics(void **state)
{
    (void)state;
    char url[128];
    struct th_resp r;
    snprintf(url, sizeof(url), "%s/readyz", srv.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(url, sizeof(url), "%s/metrics", srv.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(
        r.body,
        "http_requests_total{svc=\"auth\",method=\"POST\",route=\"/login\",status=\"200\"}"));
    assert_non_null(strstr(
        r.body,
        "http_requests_total{svc=\"auth\",method=\"POST\",route=\"/login\",status=\"401\"}"));
    assert_non_null(strstr(r.body, "http_request_duration_seconds_bucket{svc=\"auth\""));
    assert_non_null(strstr(r.body, "http_requests_in_flight{svc=\"auth\"}"));
    assert_non_null(strstr(r.body, "auth_logins_total{result=\"ok\"}"));
    assert_non_null(strstr(r.body, "auth_password_hashes_peak "));
    th_resp_free(&r);
}

static void logs_are_json_without_secrets(void **state)
{
    (void)state;
    /* hostile bytes must not cost the line its fields */
    char url[128];
    snprintf(url, sizeof(url), "%s/%%FF%%FEx", srv.base);
    struct th_resp r;
    th_http("GET", url, NULL, NULL, 0, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    char *h = basic_header("\xff\xfe@example.com:password");
    post(&srv, "/login", h, NULL, NULL, &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
    free(h);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* the access line is written after the response */

    bool saw_hostile_path = false;
    FILE *f = fopen(srv.log, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "created ", 8) == 0)
            continue; /* `user add` output in the same file */
        json_t *j = json_loads(line, 0, NULL);
        if (j == NULL)
            fail_msg("log line is not JSON: %s", line);
        assert_non_null(json_object_get(j, "ts"));
        assert_non_null(json_object_get(j, "level"));
        assert_non_null(json_object_get(j, "msg"));
        json_decref(j);
        assert_null(strstr(line, ADMIN_PW));
        assert_null(strstr(line, PLAIN_PW));
        assert_null(strstr(line, TEST_SECRET));
        assert_null(strstr(line, "eyJ")); /* no token */
        saw_hostile_path |= strstr(line, "\"path\":\"/?\?x\"") != NULL;
        n++;
    }
    fclose(f);
    assert_true(n > 10);
    assert_true(saw_hostile_path);
}

static void rehash_weak_hash_on_login(void **state)
{
    (void)state;
    char path[600], err[256], weak[crypto_pwhash_STRBYTES];
    snprintf(path, sizeof(path), "%s/users.db", srv.dir);
    struct users *u = users_sqlite_new(path, err, sizeof(err));
    assert_non_null(u);
    assert_int_equal(crypto_pwhash_str(weak, "old-weak-pw", 11, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    struct user nu;
    memset(&nu, 0, sizeof(nu));
    snprintf(nu.email, sizeof(nu.email), "legacy@example.com");
    snprintf(nu.password_hash, sizeof(nu.password_hash), "%s", weak);
    assert_int_equal(users_create(u, &nu), USERS_OK);
    free(login(&srv, "legacy@example.com", "old-weak-pw"));
    struct user got;
    assert_int_equal(users_get(u, "legacy@example.com", &got), USERS_OK);
    assert_string_not_equal(got.password_hash, weak);
    assert_int_equal(crypto_pwhash_str_needs_rehash(got.password_hash,
                                                    crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                                    crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    users_free(u);
    free(login(&srv, "legacy@example.com", "old-weak-pw")); /* still the same password */
}

struct par {
    int status;
};

static void *parallel_login(void *arg)
{
    struct par *p = arg;
    struct th_resp r;
    post(&srv, "/login", NULL, NULL, "{\"email\":\"" PLAIN "\",\"password\":\"" PLAIN_PW "\"}", &r);
    p->status = (int)r.status;
    th_resp_free(&r);
    return NULL;
}

static void fifty_parallel_logins_bounded(void **state)
{
    (void)state;
    pthread_t t[50];
    struct par p[50];
    for (int i = 0; i < 50; i++)
        pthread_create(&t[i], NULL, parallel_login, &p[i]);
    for (int i = 0; i < 50; i++)
        pthread_join(t[i], NULL);
    int ok = 0;
    for (int i = 0; i < 50; i++)
        ok += p[i].status == 200;
    /* all are served (waiting for a hashing slot), none exceeds the bound */
    assert_int_equal(ok, 50);
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", srv.base);
    struct th_resp r;
    th_http("GET", url, NULL, NULL, 0, &r);
    const char *peak = strstr(r.body, "\nauth_password_hashes_peak ");
    assert_non_null(peak);
    long n = strtol(peak + strlen("\nauth_password_hashes_peak "), NULL, 10);
    assert_true(n >= 1 && n <= 2); /* HASH_CONCURRENCY default 2 */
    th_resp_free(&r);
}

/* ---------- separate servers ---------- */

static void throttle_failed_logins(void **state)
{
    (void)state;
    struct server s;
    server_init(&s, NULL);
    assert_int_equal(server_cli(&s, "victim-password\n", "user", "add", "victim@example.com", NULL),
                     0);
    server_start(&s, "auth");
    struct th_resp r;
    for (int i = 0; i < 10; i++) {
        post(&s, "/login", NULL, NULL, "{\"email\":\"victim@example.com\",\"password\":\"guess\"}",
             &r);
        th_assert_error(&r, 401, "invalid_credentials");
        th_resp_free(&r);
    }
    /* the 11th, even with the right password, is refused before hashing */
    post(&s, "/login", NULL, NULL,
         "{\"email\":\"victim@example.com\",\"password\":\"victim-password\"}", &r);
    th_assert_error(&r, 429, "too_many_attempts");
    char buf[32];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof(buf)));
    long secs = strtol(buf, NULL, 10);
    assert_true(secs > 250 && secs <= 300);
    th_resp_free(&r);
    /* the same client address is throttled for other emails too */
    post(&s, "/login", NULL, NULL, "{\"email\":\"other@example.com\",\"password\":\"guess\"}", &r);
    th_assert_error(&r, 429, "too_many_attempts");
    th_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
}

static struct server *burst_server;

static void *wrong_login(void *arg)
{
    long *status = arg;
    struct th_resp r;
    post(burst_server, "/login", NULL, NULL,
         "{\"email\":\"victim@example.com\",\"password\":\"guess\"}", &r);
    *status = r.status;
    th_resp_free(&r);
    return NULL;
}

/* Guesses sent in parallel must not slip past the count while they hash. */
static void throttle_parallel_burst(void **state)
{
    (void)state;
    struct server s;
    server_init(&s, NULL);
    assert_int_equal(server_cli(&s, "victim-password\n", "user", "add", "victim@example.com", NULL),
                     0);
    server_start(&s, "auth");
    burst_server = &s;
    pthread_t t[40];
    long status[40];
    for (int i = 0; i < 40; i++)
        pthread_create(&t[i], NULL, wrong_login, &status[i]);
    int unauthorized = 0, throttled = 0;
    for (int i = 0; i < 40; i++) {
        pthread_join(t[i], NULL);
        unauthorized += status[i] == 401;
        throttled += status[i] == 429;
    }
    assert_int_equal(unauthorized, 10);
    assert_int_equal(throttled, 30);
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
}

static void login_from(struct server *s, const char *xff, const char *email, long want)
{
    char h[256], body[256];
    snprintf(h, sizeof(h), "X-Forwarded-For: %s", xff);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"wrong-guess\"}", email);
    struct th_resp r;
    post(s, "/login", h, NULL, body, &r);
    if (r.status != want)
        fail_msg("X-Forwarded-For %s, %s: want %ld, got %ld", xff, email, want, r.status);
    th_resp_free(&r);
}

/* Behind a trusted proxy the client is the forwarded address, so one
 * guesser does not lock out everyone behind the same proxy. */
static void forwarded_for_from_trusted_proxy(void **state)
{
    (void)state;
    /* networks, as a Kubernetes pod network is given */
    const char *env[] = {"TRUSTED_PROXIES=10.9.0.0/16, 127.0.0.0/8", "LOGIN_MAX_FAILURES=3", NULL};
    struct server s;
    server_init(&s, env);
    server_start(&s, "auth");
    login_from(&s, "203.0.113.5", "g1@example.com", 401);
    login_from(&s, "203.0.113.5", "g2@example.com", 401);
    login_from(&s, "198.51.100.1, 203.0.113.5", "g3@example.com", 401); /* left is forgeable */
    login_from(&s, "203.0.113.5", "g4@example.com", 429);
    login_from(&s, "203.0.113.5, 10.9.9.9", "g5@example.com", 429); /* through two proxies */
    login_from(&s, "203.0.113.5, 10.8.9.9", "g8@example.com", 401); /* 10.8/16 is not trusted */
    login_from(&s, "203.0.113.77", "g6@example.com", 401);          /* someone else */
    login_from(&s, "not-an-ip", "g7@example.com", 401);             /* falls back to the peer */
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
}

static void *slow_login(void *arg)
{
    struct server *s = arg;
    struct th_resp r;
    post(s, "/login", NULL, NULL, "{\"email\":\"w@example.com\",\"password\":\"waiting-pw\"}", &r);
    long status = r.status;
    th_resp_free(&r);
    return (void *)status;
}

static void sigterm_drains_in_flight(void **state)
{
    (void)state;
    struct server s;
    const char *env[] = {"HASH_CONCURRENCY=1", NULL};
    server_init(&s, env);
    assert_int_equal(server_cli(&s, "waiting-pw\n", "user", "add", "w@example.com", NULL), 0);
    server_start(&s, "auth");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, slow_login, &s);
    /* wait until all four are in (the metrics request itself is the fifth) */
    char murl[128];
    snprintf(murl, sizeof(murl), "%s/metrics", s.base);
    int in_flight = 0;
    for (int i = 0; i < 500 && in_flight < 5; i++) {
        struct th_resp m;
        th_http("GET", murl, NULL, NULL, 0, &m);
        const char *p =
            m.body != NULL ? strstr(m.body, "http_requests_in_flight{svc=\"auth\"} ") : NULL;
        in_flight = p != NULL ? atoi(p + strlen("http_requests_in_flight{svc=\"auth\"} ")) : 0;
        th_resp_free(&m);
        if (in_flight < 5)
            th_sleep_ms(10);
    }
    assert_true(in_flight >= 5); /* the logins are now hashing, one at a time */
    kill(s.pid, SIGTERM);
    for (int i = 0; i < 4; i++) {
        void *status = NULL;
        pthread_join(t[i], &status);
        assert_int_equal((long)status, 200);
    }
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    /* and it no longer accepts connections */
    struct th_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", s.base);
    assert_int_equal(th_http("GET", url, NULL, NULL, 0, &r), -1);
    th_resp_free(&r);
    server_cleanup(&s);
}

static void config_errors_exit_2(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *needle;
    } cases[] = {
        {"AUTH_PORT=http", "AUTH_PORT:"},
        {"JWT_SECRET=short", "JWT_SECRET:"},
        {"JWT_SECRET=", "JWT_SECRET: required"},
        {"LOG_LEVEL=verbose", "LOG_LEVEL:"},
        {"MYSQL_HOST=127.0.0.1", "MYSQL_USER:"},
        {"TRUSTED_PROXIES=10.0.0.1,proxy.local", "TRUSTED_PROXIES:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *env[] = {cases[i].env, NULL};
        struct server s;
        server_init(&s, env);
        char *argv[] = {(char *)vid2mp3_bin, "auth", NULL};
        assert_int_equal(th_run(argv, s.envp, NULL, s.log), 2);
        FILE *f = fopen(s.log, "r");
        char line[512] = "";
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);
        if (strstr(line, cases[i].needle) == NULL)
            fail_msg("for %s expected '%s' in: %s", cases[i].env, cases[i].needle, line);
        server_cleanup(&s);
    }
}

static void port_in_use_fails_cleanly(void **state)
{
    (void)state;
    struct server s;
    char env0[64];
    snprintf(env0, sizeof(env0), "AUTH_PORT=%d", srv.port); /* the shared server has it */
    const char *env[] = {env0, NULL};
    server_init(&s, env);
    char *argv[] = {(char *)vid2mp3_bin, "auth", NULL};
    assert_int_equal(th_run(argv, s.envp, NULL, s.log), 1);
    server_cleanup(&s);
}

int main(int argc, char **argv)
{
    if (server_args(argc, argv) != 0)
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(login_json),
        cmocka_unit_test(login_basic),
        cmocka_unit_test(wrong_password_and_unknown_user_look_alike),
        cmocka_unit_test(login_bad_input),
        cmocka_unit_test(login_oversized_fields),
        cmocka_unit_test(login_body_over_64k),
        cmocka_unit_test(login_wrong_content_type),
        cmocka_unit_test(login_broken_basic),
        cmocka_unit_test(validate_good_token),
        cmocka_unit_test(validate_hostile_tokens),
        cmocka_unit_test(create_user_as_admin),
        cmocka_unit_test(create_user_refused_to_others),
        cmocka_unit_test(request_ids),
        cmocka_unit_test(unknown_paths_and_methods),
        cmocka_unit_test(rehash_weak_hash_on_login),
        cmocka_unit_test(fifty_parallel_logins_bounded),
        cmocka_unit_test(health_ready_metrics),
        cmocka_unit_test(logs_are_json_without_secrets),
        cmocka_unit_test(throttle_failed_logins),
        cmocka_unit_test(throttle_parallel_burst),
        cmocka_unit_test(forwarded_for_from_trusted_proxy),
        cmocka_unit_test(sigterm_drains_in_flight),
        cmocka_unit_test(config_errors_exit_2),
        cmocka_unit_test(port_in_use_fails_cleanly),
    };
    return cmocka_run_group_tests_name("auth over HTTP", tests, group_setup, group_teardown);
}
