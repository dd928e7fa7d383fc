/*
 * Contract suite for the users interface: the same tests against every
 * backend. Usage: test_users_contract sqlite|mysql. The mysql run uses the
 * MariaDB that scripts/test-services.sh started, in a database of its own,
 * and fails when that server is missing.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/users.h"

static const char *backend;
static char dbname[64];
static char *tmpdir;
static struct users *store;

static struct users *open_backend(char *err, size_t len)
{
    if (strcmp(backend, "sqlite") == 0) {
        char path[512];
        snprintf(path, sizeof(path), "%s/users.db", tmpdir);
        return users_sqlite_new(path, err, len);
    }
    return users_mysql_new(th_need_env("VID2MP3_TEST_MYSQL_HOST"),
                           (unsigned)strtoul(th_need_env("VID2MP3_TEST_MYSQL_PORT"), NULL, 10),
                           th_need_env("VID2MP3_TEST_MYSQL_USER"),
                           th_need_env("VID2MP3_TEST_MYSQL_PASSWORD"), dbname, err, len);
}

static int setup(void **state)
{
    (void)state;
    tmpdir = th_tmpdir();
    if (strcmp(backend, "mysql") == 0)
        th_mysql_create_db(dbname, sizeof(dbname));
    char err[256] = "";
    store = open_backend(err, sizeof(err));
    if (store == NULL)
        fail_msg("cannot open %s backend: %s", backend, err);
    assert_int_equal(users_migrate(store), USERS_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    users_free(store);
    store = NULL;
    if (strcmp(backend, "mysql") == 0)
        th_mysql_drop_db(dbname);
    th_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

static struct user make(const char *email, bool admin)
{
    struct user u;
    memset(&u, 0, sizeof(u));
    snprintf(u.email, sizeof(u.email), "%s", email);
    snprintf(u.password_hash, sizeof(u.password_hash), "$argon2id$v=19$m=65536,t=2,p=1$hash-of-%s",
             email);
    u.admin = admin;
    return u;
}

static void create_then_get(void **state)
{
    (void)state;
    struct user u = make("alice@example.com", true), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_get(store, "alice@example.com", &got), USERS_OK);
    assert_string_equal(got.email, "alice@example.com");
    assert_string_equal(got.password_hash, u.password_hash);
    assert_true(got.admin);
    assert_true(got.id > 0);
    assert_true(got.created_at > 1700000000);
    u = make("bob@example.com", false);
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_get(store, "bob@example.com", &got), USERS_OK);
    assert_false(got.admin);
}

static void missing_is_not_found(void **state)
{
    (void)state;
    struct user got;
    assert_int_equal(users_get(store, "nobody@example.com", &got), USERS_ENOTFOUND);
    assert_int_equal(users_set_hash(store, "nobody@example.com", "x"), USERS_ENOTFOUND);
    assert_int_equal(users_remove(store, "nobody@example.com"), USERS_ENOTFOUND);
}

static void duplicate_is_exists(void **state)
{
    (void)state;
    struct user u = make("dup@example.com", false);
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_create(store, &u), USERS_EEXIST);
}

static void lookups_are_exact(void **state)
{
    (void)state;
    struct user u = make("case@example.com", false), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    /* callers normalise; the store itself must not match other spellings
     * (MySQL's default collation would) */
    assert_int_equal(users_get(store, "CASE@example.com", &got), USERS_ENOTFOUND);
    assert_int_equal(users_get(store, "case@example.com ", &got), USERS_ENOTFOUND);
    assert_int_equal(users_get(store, "case@example.co", &got), USERS_ENOTFOUND);
    assert_int_equal(users_get(store, "%@example.com", &got), USERS_ENOTFOUND);
    assert_int_equal(users_get(store, "' OR '1'='1", &got), USERS_ENOTFOUND);
}

static void long_and_unicode_emails(void **state)
{
    (void)state;
    char email[USERS_EMAIL_MAX + 1];
    memset(email, 'x', 60);
    email[60] = '@';
    memset(email + 61, 'y', USERS_EMAIL_MAX - 61);
    email[USERS_EMAIL_MAX] = '\0';
    struct user u = make(email, false), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_get(store, email, &got), USERS_OK);
    assert_string_equal(got.email, email);
    u = make("élodie.ñandú@exemple.fr", false);
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_get(store, "élodie.ñandú@exemple.fr", &got), USERS_OK);
    assert_string_equal(got.email, "élodie.ñandú@exemple.fr");
}

static void set_hash_and_remove(void **state)
{
    (void)state;
    struct user u = make("carol@example.com", false), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_set_hash(store, "carol@example.com", "$argon2id$new"), USERS_OK);
    assert_int_equal(users_set_hash(store, "carol@example.com", "$argon2id$new"), USERS_OK);
    assert_int_equal(users_get(store, "carol@example.com", &got), USERS_OK);
    assert_string_equal(got.password_hash, "$argon2id$new");
    assert_int_equal(users_remove(store, "carol@example.com"), USERS_OK);
    assert_int_equal(users_get(store, "carol@example.com", &got), USERS_ENOTFOUND);
}

struct collected {
    int n;
    int stop_after;
    char emails[8][USERS_EMAIL_MAX + 1];
};

static int collect(const struct user *u, void *ctx)
{
    struct collected *c = ctx;
    if (c->n < 8)
        snprintf(c->emails[c->n], sizeof(c->emails[0]), "%s", u->email);
    c->n++;
    return c->stop_after > 0 && c->n >= c->stop_after;
}

static void list_sorted_and_stoppable(void **state)
{
    (void)state;
    const char *emails[] = {"m@x.io", "a@x.io", "z@x.io"};
    for (int i = 0; i < 3; i++) {
        struct user u = make(emails[i], i == 1);
        assert_int_equal(users_create(store, &u), USERS_OK);
    }
    struct collected c = {0};
    assert_int_equal(users_list(store, collect, &c), USERS_OK);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.emails[0], "a@x.io");
    assert_string_equal(c.emails[1], "m@x.io");
    assert_string_equal(c.emails[2], "z@x.io");
    struct collected s = {.stop_after = 2};
    assert_int_equal(users_list(store, collect, &s), USERS_OK);
    assert_int_equal(s.n, 2);
    long admins = -1;
    assert_int_equal(users_count_admins(store, &admins), USERS_OK);
    assert_int_equal(admins, 1);
}

static void migrate_is_idempotent(void **state)
{
    (void)state;
    struct user u = make("keep@example.com", false), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    assert_int_equal(users_migrate(store), USERS_OK);
    assert_int_equal(users_migrate(store), USERS_OK);
    assert_int_equal(users_get(store, "keep@example.com", &got), USERS_OK);
    assert_int_equal(users_ping(store), USERS_OK);
}

static void reopen_keeps_data(void **state)
{
    (void)state;
    struct user u = make("durable@example.com", true), got;
    assert_int_equal(users_create(store, &u), USERS_OK);
    users_free(store);
    char err[256];
    store = open_backend(err, sizeof(err));
    assert_non_null(store);
    assert_int_equal(users_get(store, "durable@example.com", &got), USERS_OK);
    assert_true(got.admin);
}

#define THREADS 8
static atomic_int created_ok, created_exists;

static void *create_same(void *arg)
{
    (void)arg;
    struct user u = make("race@example.com", false);
    int rc = users_create(store, &u);
    if (rc == USERS_OK)
        atomic_fetch_add(&created_ok, 1);
    else if (rc == USERS_EEXIST)
        atomic_fetch_add(&created_exists, 1);
    return NULL;
}

static void *create_distinct(void *arg)
{
    char email[64];
    for (int i = 0; i < 10; i++) {
        snprintf(email, sizeof(email), "t%ld-%d@example.com", (long)arg, i);
        struct user u = make(email, false), got;
        if (users_create(store, &u) != USERS_OK || users_get(store, email, &got) != USERS_OK)
            return (void *)1;
    }
    return NULL;
}

static void concurrent_creates(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    atomic_store(&created_ok, 0);
    atomic_store(&created_exists, 0);
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, create_same, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&created_ok), 1);
    assert_int_equal(atomic_load(&created_exists), THREADS - 1);
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, create_distinct, (void *)i);
    for (int i = 0; i < THREADS; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    struct collected c = {0};
    assert_int_equal(users_list(store, collect, &c), USERS_OK);
    assert_int_equal(c.n, 1 + THREADS * 10);
}

/* The dead dependency: a backend whose server or file is not there gives a
 * clean error, never a crash or a hang. */
static void dead_backend(void **state)
{
    (void)state;
    char err[256] = "";
    struct user got;
    if (strcmp(backend, "mysql") == 0) {
        int port = th_free_port(); /* nothing listens there */
        struct users *dead =
            users_mysql_new("127.0.0.1", (unsigned)port, "u", "p", "d", err, sizeof(err));
        assert_non_null(dead);
        assert_int_equal(users_get(dead, "a@b.c", &got), USERS_EUNAVAIL);
        assert_int_equal(users_ping(dead), USERS_EUNAVAIL);
        users_free(dead);
        /* wrong password: also unavailable, not a crash */
        dead = users_mysql_new(th_need_env("VID2MP3_TEST_MYSQL_HOST"),
                               (unsigned)strtoul(th_need_env("VID2MP3_TEST_MYSQL_PORT"), NULL, 10),
                               "vid2mp3", "wrong-password", dbname, err, sizeof(err));
        assert_int_equal(users_get(dead, "a@b.c", &got), USERS_EUNAVAIL);
        users_free(dead);
    } else {
        struct users *dead = users_sqlite_new("/nonexistent-dir/x/users.db", err, sizeof(err));
        assert_null(dead);
        assert_non_null(strstr(err, "cannot open"));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "sqlite") != 0 && strcmp(argv[1], "mysql") != 0)) {
        fprintf(stderr, "usage: %s sqlite|mysql\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_then_get, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_is_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(lookups_are_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(long_and_unicode_emails, setup, teardown),
        cmocka_unit_test_setup_teardown(set_hash_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(list_sorted_and_stoppable, setup, teardown),
        cmocka_unit_test_setup_teardown(migrate_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_creates, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_backend, setup, teardown),
    };
    return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}
