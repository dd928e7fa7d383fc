/* Unit tests: core/config. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

static const char *const all_vars[] = {
    "BIND_ADDRESS",
    "AUTH_PORT",
    "DATA_DIR",
    "LOG_LEVEL",
    "SHUTDOWN_GRACE_SECONDS",
    "MYSQL_HOST",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DB",
    "MYSQL_PORT",
    "JWT_SECRET",
    "JWT_ISSUER",
    "JWT_TTL_SECONDS",
    "LOGIN_MAX_FAILURES",
    "LOGIN_WINDOW_SECONDS",
    "HASH_CONCURRENCY",
    "MONGODB_URI",
    "RABBITMQ_URL",
    "VIDEO_QUEUE",
    "MP3_QUEUE",
    "MAX_ATTEMPTS",
    "GC_INTERVAL_SECONDS",
    "GC_MIN_AGE_SECONDS",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
        unsetenv(all_vars[i]);
    return 0;
}

static void defaults(void **state)
{
    (void)state;
    struct config c;
    char err[256] = "";
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.bind_address, "0.0.0.0");
    assert_int_equal(c.auth_port, 5000);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.mysql_port, 3306);
    assert_null(c.jwt_secret);
    assert_int_equal(c.jwt_ttl, 86400);
    assert_int_equal(c.login_max_failures, 10);
    assert_int_equal(c.login_window, 300);
    assert_false(config_uses_mysql(&c));
    assert_string_equal(c.video_queue, "video");
    assert_string_equal(c.mp3_queue, "mp3");
    assert_int_equal(c.max_attempts, 5);
    assert_null(c.mongodb_uri);
    assert_null(c.rabbitmq_url);
}

static void expect_error(const char *var, const char *value, const char *needle)
{
    struct config c;
    char err[256] = "";
    setenv(var, value, 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, needle));
    assert_null(strchr(err, '\n'));
    unsetenv(var);
}

static void bad_values_name_the_variable(void **state)
{
    (void)state;
    expect_error("AUTH_PORT", "abc", "AUTH_PORT: must be an integer from 0 to 65535");
    expect_error("AUTH_PORT", "70000", "AUTH_PORT:");
    expect_error("AUTH_PORT", "50x", "AUTH_PORT:");
    expect_error("AUTH_PORT", "-1", "AUTH_PORT:");
    expect_error("MYSQL_PORT", "0", "MYSQL_PORT:");
    expect_error("LOG_LEVEL", "loud", "LOG_LEVEL: must be one of");
    expect_error("BIND_ADDRESS", "localhost", "BIND_ADDRESS: must be an IPv4 or IPv6");
    expect_error("TRUSTED_PROXIES", "10.0.0.1,gateway", "TRUSTED_PROXIES: must be a comma");
    expect_error("JWT_SECRET", "short", "JWT_SECRET: must be at least 32");
    expect_error("JWT_TTL_SECONDS", "5", "JWT_TTL_SECONDS:");
    expect_error("LOGIN_MAX_FAILURES", "1000", "LOGIN_MAX_FAILURES:");
    expect_error("MONGODB_URI", "http://db", "MONGODB_URI: must start with mongodb://");
    expect_error("RABBITMQ_URL", "rabbit:5672", "RABBITMQ_URL: must start with amqp://");
    expect_error("VIDEO_QUEUE", "video queue", "VIDEO_QUEUE: must be");
    expect_error("MP3_QUEUE", "mp3/../x", "MP3_QUEUE: must be");
    expect_error("MAX_ATTEMPTS", "0", "MAX_ATTEMPTS:");
}

static void mysql_needs_user_and_db(void **state)
{
    (void)state;
    struct config c;
    char err[256] = "";
    setenv("MYSQL_HOST", "db", 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MYSQL_USER"));
    setenv("MYSQL_USER", "auth", 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MYSQL_DB"));
    setenv("MYSQL_DB", "auth", 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    assert_true(config_uses_mysql(&c));
}

static void empty_means_unset(void **state)
{
    (void)state;
    struct config c;
    char err[256] = "";
    setenv("AUTH_PORT", "", 1);
    setenv("MYSQL_HOST", "", 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth_port, 5000);
    assert_false(config_uses_mysql(&c));
}

static void print_redacts_secrets(void **state)
{
    (void)state;
    struct config c;
    char err[256] = "";
    setenv("JWT_SECRET", "this-is-a-very-secret-value-0123456789", 1);
    setenv("MYSQL_PASSWORD", "hunter2", 1);
    setenv("MONGODB_URI", "mongodb://admin:topsecret@db:27017", 1);
    setenv("RABBITMQ_URL", "amqp://guest:rabbitpass@mq:5672/", 1);
    setenv("AUTH_PORT", "6000", 1);
    setenv("BIND_ADDRESS", "::1", 1);
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_print(&c, f);
    fclose(f);
    assert_null(strstr(out, "very-secret"));
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "topsecret"));
    assert_null(strstr(out, "rabbitpass"));
    assert_non_null(strstr(out, "JWT_SECRET=<redacted>\n"));
    assert_non_null(strstr(out, "MYSQL_PASSWORD=<redacted>\n"));
    assert_non_null(strstr(out, "AUTH_PORT=6000\n"));
    assert_non_null(strstr(out, "BIND_ADDRESS=::1\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(defaults, clear_env),
        cmocka_unit_test_setup(bad_values_name_the_variable, clear_env),
        cmocka_unit_test_setup(mysql_needs_user_and_db, clear_env),
        cmocka_unit_test_setup(empty_means_unset, clear_env),
        cmocka_unit_test_setup(print_redacts_secrets, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
