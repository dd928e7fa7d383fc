/* Unit tests: core/fsutil. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vid2mp3-fsutil-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void mkdirs_nested(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    assert_int_equal(fsutil_mkdirs(path, 0700), 0);
    assert_int_equal(fsutil_mkdirs(path, 0700), 0); /* exists: fine */
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(fsutil_mkdirs(path, 0700), -ENOTDIR);
}

static void secret_created_once(void **state)
{
    (void)state;
    char path[128], a[65], b[65];
    snprintf(path, sizeof(path), "%s/jwt-secret", dir);
    assert_int_equal(fsutil_secret_load_or_create(path, a, sizeof(a)), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(fsutil_secret_load_or_create(path, b, sizeof(b)), 0);
    assert_string_equal(a, b);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void corrupt_secret_refused(void **state)
{
    (void)state;
    char path[128], out[65];
    snprintf(path, sizeof(path), "%s/jwt-secret", dir);
    FILE *f = fopen(path, "w");
    fputs("not-hex\n", f);
    fclose(f);
    assert_int_equal(fsutil_secret_load_or_create(path, out, sizeof(out)), -EINVAL);
}

static char race_path[128];
static char race_out[8][65];

static void *race(void *arg)
{
    long i = (long)arg;
    return (void *)(long)fsutil_secret_load_or_create(race_path, race_out[i], 65);
}

static void concurrent_creators_agree(void **state)
{
    (void)state;
    snprintf(race_path, sizeof(race_path), "%s/raced-secret", dir);
    pthread_t t[8];
    for (long i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, race, (void *)i);
    for (int i = 0; i < 8; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_int_equal((long)rc, 0);
        assert_string_equal(race_out[i], race_out[0]);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(mkdirs_nested, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(secret_created_once, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(corrupt_secret_refused, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(concurrent_creators_agree, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
