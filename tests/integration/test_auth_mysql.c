/*
 * Integration: `vid2mp3 auth` on the real MariaDB of test-services.sh,
 * including the database going away and coming back mid-run.
 * Usage: test_auth_mysql PATH/TO/vid2mp3
 */
#include "server.h"

#include <signal.h>
#include <sodium.h>

static char db[64];

/* A fresh database on the test MariaDB, and s configured to use it. */
static void server_init_mysql(struct server *s)
{
    th_mysql_create_db(db, sizeof(db));
    char env[5][128];
    snprintf(env[0], 128, "MYSQL_HOST=%s", th_need_env("VID2MP3_TEST_MYSQL_HOST"));
    snprintf(env[1], 128, "MYSQL_PORT=%s", th_need_env("VID2MP3_TEST_MYSQL_PORT"));
    snprintf(env[2], 128, "MYSQL_USER=%s", th_need_env("VID2MP3_TEST_MYSQL_USER"));
    snprintf(env[3], 128, "MYSQL_PASSWORD=%s", th_need_env("VID2MP3_TEST_MYSQL_PASSWORD"));
    snprintf(env[4], 128, "MYSQL_DB=%s", db);
    const char *extra[] = {env[0], env[1], env[2], env[3], env[4], NULL};
    server_init(s, extra); /* copies the strings */
}

static int services(const char *cmd)
{
    char *argv[] = {(char *)th_need_env("VID2MP3_TEST_SERVICES"), (char *)cmd,
                    (char *)th_need_env("VID2MP3_TEST_STATE"), NULL};
    return th_run(argv, NULL, NULL, NULL);
}

/* Whatever happened in a test, the shared server runs again afterwards. */
static int restore_mariadb(void **state)
{
    (void)state;
    return services("mariadb-start");
}

static void login_status(struct server *s, long want, const char *code)
{
    struct th_resp r;
    post(s, "/login", NULL, NULL, "{\"email\":\"my@example.com\",\"password\":\"mysql-pass\"}", &r);
    if (code != NULL)
        th_assert_error(&r, want, code);
    else if (r.status != want)
        fail_msg("login: expected %ld, got %ld: %s", want, r.status, r.body);
    th_resp_free(&r);
}

static void outage_and_recovery(void **state)
{
    (void)state;
    struct server s;
    server_init_mysql(&s);

    assert_int_equal(server_cli(&s, NULL, "migrate", NULL, NULL, NULL), 0);
    assert_int_equal(server_cli(&s, "mysql-pass\n", "user", "add", "my@example.com", "--admin"), 0);
    server_start(&s, "auth");
    login_status(&s, 200, NULL);

    assert_int_equal(services("mariadb-stop"), 0);
    login_status(&s, 503, "users_unavailable");
    struct th_resp r;
    post(&s, "/login", NULL, NULL, "{\"email\":\"my@example.com\",\"password\":\"mysql-pass\"}",
         &r);
    char buf[32];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof(buf)));
    th_resp_free(&r);
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", s.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    th_assert_error(&r, 503, "not_ready");
    th_resp_free(&r);
    /* liveness is not readiness: the process itself is fine */
    snprintf(url, sizeof(url), "%s/healthz", s.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    assert_int_equal(services("mariadb-start"), 0);
    login_status(&s, 200, NULL); /* no restart of the service */
    snprintf(url, sizeof(url), "%s/readyz", s.base);
    th_http("GET", url, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
    th_mysql_drop_db(db);
}

static void starts_before_its_database(void **state)
{
    (void)state;
    struct server s;
    server_init_mysql(&s);
    assert_int_equal(services("mariadb-stop"), 0);
    server_start(&s, "auth"); /* alive, though not ready */
    login_status(&s, 503, "users_unavailable");
    assert_int_equal(services("mariadb-start"), 0);
    /* the schema is created on the first connection that works */
    login_status(&s, 401, "invalid_credentials");
    assert_int_equal(server_cli(&s, "mysql-pass\n", "user", "add", "my@example.com", NULL), 0);
    login_status(&s, 200, NULL);
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
    th_mysql_drop_db(db);
}

static void cli_on_mysql(void **state)
{
    (void)state;
    struct server s;
    server_init_mysql(&s);
    assert_int_equal(server_cli(&s, "password-1\n", "user", "add", "u1@example.com", NULL), 0);
    assert_int_equal(server_cli(&s, "password-1\n", "user", "add", "u1@example.com", NULL), 1);
    assert_int_equal(server_cli(&s, NULL, "user", "list", NULL, NULL), 0);
    assert_int_equal(server_cli(&s, NULL, "user", "del", "U1@example.com", NULL), 0);
    assert_int_equal(server_cli(&s, NULL, "user", "del", "u1@example.com", NULL), 1);
    FILE *f = fopen(s.log, "r");
    char all[8192] = "";
    size_t n = fread(all, 1, sizeof(all) - 1, f);
    all[n] = '\0';
    fclose(f);
    assert_non_null(strstr(all, "u1@example.com\tuser\t"));
    assert_non_null(strstr(all, "already exists"));
    assert_null(strstr(all, th_need_env("VID2MP3_TEST_MYSQL_PASSWORD")));
    server_cleanup(&s);
    th_mysql_drop_db(db);
}

int main(int argc, char **argv)
{
    if (server_args(argc, argv) != 0)
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_on_mysql),
        cmocka_unit_test_teardown(outage_and_recovery, restore_mariadb),
        cmocka_unit_test_teardown(starts_before_its_database, restore_mariadb),
    };
    return cmocka_run_group_tests_name("auth on MariaDB", tests, NULL, NULL);
}
