/* Unit tests: store/sweeper, on the files backend in a temporary directory. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/sweeper.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Entries in DIR/videos/tmp. */
static int temp_files(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/videos/tmp", dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void sweeps_leftovers_periodically(void **state)
{
    (void)state;
    char dir[] = "/tmp/vid2mp3-sweeper-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[256];
    struct blobs *b = blobs_fs_new(dir, err, sizeof(err));
    assert_non_null(b);

    /* an upload left unfinished, as by a client that went away */
    struct blob_meta m;
    memset(&m, 0, sizeof(m));
    snprintf(m.owner, sizeof(m.owner), "a@example.com");
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(b, BLOB_VIDEOS, &m, &w), BLOB_OK);
    assert_int_equal(blob_write(w, "partial", 7), BLOB_OK);
    assert_int_equal(temp_files(dir), 1);

    struct sweeper *s = sweeper_start(b, 1, 0);
    assert_non_null(s);
    for (int i = 0; i < 50 && temp_files(dir) > 0; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(temp_files(dir), 0); /* swept within about one interval */
    sweeper_stop(s);                      /* returns promptly, mid-interval */
    sweeper_stop(NULL);

    blob_abort(w); /* frees the writer; its file is already gone */
    blobs_free(b);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void stop_is_prompt(void **state)
{
    (void)state;
    char dir[] = "/tmp/vid2mp3-sweeper-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[256];
    struct blobs *b = blobs_fs_new(dir, err, sizeof(err));
    assert_non_null(b);
    struct sweeper *s = sweeper_start(b, 3600, 3600);
    time_t t0 = time(NULL);
    sweeper_stop(s);
    assert_true(time(NULL) - t0 <= 1); /* does not wait out the hour */
    blobs_free(b);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sweeps_leftovers_periodically),
        cmocka_unit_test(stop_is_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
