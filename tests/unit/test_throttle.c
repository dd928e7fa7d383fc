/* Unit tests: auth/throttle. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "auth/throttle.h"

static void blocks_after_max_failures(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(10, 300);
    time_t now = 1000000;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(throttle_check(t, "e:a@b.c", now + i), 0);
        throttle_fail(t, "e:a@b.c", now + i);
    }
    /* the 11th attempt waits until the first failure leaves the window */
    assert_int_equal(throttle_check(t, "e:a@b.c", now + 10), 290);
    assert_int_equal(throttle_check(t, "e:a@b.c", now + 299), 1);
    assert_int_equal(throttle_check(t, "e:a@b.c", now + 300), 0);
    /* other keys are not affected */
    assert_int_equal(throttle_check(t, "e:other@b.c", now + 10), 0);
    throttle_free(t);
}

static void failures_outside_window_do_not_count(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(3, 60);
    throttle_fail(t, "k", 100);
    throttle_fail(t, "k", 110);
    throttle_fail(t, "k", 200); /* the first two are out of the window by now */
    assert_int_equal(throttle_check(t, "k", 200), 0);
    throttle_fail(t, "k", 201);
    throttle_fail(t, "k", 202);
    assert_true(throttle_check(t, "k", 203) > 0);
    throttle_free(t);
}

static void reset_forgets(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(2, 60);
    throttle_fail(t, "k", 100);
    throttle_fail(t, "k", 101);
    assert_true(throttle_check(t, "k", 102) > 0);
    throttle_reset(t, "k");
    assert_int_equal(throttle_check(t, "k", 102), 0);
    throttle_free(t);
}

static void flood_of_keys_stays_bounded(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(2, 600);
    throttle_fail(t, "victim", 100);
    throttle_fail(t, "victim", 100);
    char key[32];
    /* far more keys than slots: memory is fixed, nothing crashes, and an
     * innocent key that never failed is never blocked */
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "a:%d", i);
        throttle_fail(t, key, 200 + i / 1000);
    }
    assert_int_equal(throttle_check(t, "innocent", 400), 0);
    throttle_free(t);
}

static void attempts_in_progress_count(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(3, 60);
    const char *k[] = {"e:a@b.c", "a:1.2.3.4"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(throttle_begin(t, k, 2, 100), 0);
    /* three in progress: a fourth would wait; let them fail */
    for (int i = 0; i < 3; i++)
        throttle_end(t, k, 2, 100, true);
    assert_int_equal(throttle_begin(t, k, 2, 101), 59); /* refused, nothing started */
    assert_int_equal(throttle_begin(t, k + 1, 1, 101), 59);
    const char *other[] = {"e:other@b.c"};
    assert_int_equal(throttle_begin(t, other, 1, 101), 0);
    throttle_end(t, other, 1, 101, false); /* success counts nothing */
    assert_int_equal(throttle_check(t, "e:other@b.c", 101), 0);
    throttle_end(t, other, 1, 101, false); /* unmatched end: harmless */
    throttle_free(t);
}

struct waiter {
    struct throttle *t;
    long result;
};

static void *begin_then_fail(void *arg)
{
    struct waiter *w = arg;
    const char *k[] = {"burst"};
    w->result = throttle_begin(w->t, k, 1, 500);
    if (w->result == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* "hashing" */
        throttle_end(w->t, k, 1, 500, true);
    }
    return NULL;
}

static void parallel_burst_is_bounded(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(5, 60);
    pthread_t th[20];
    struct waiter w[20];
    for (int i = 0; i < 20; i++) {
        w[i].t = t;
        pthread_create(&th[i], NULL, begin_then_fail, &w[i]);
    }
    int started = 0;
    for (int i = 0; i < 20; i++) {
        pthread_join(th[i], NULL);
        started += w[i].result == 0;
    }
    assert_int_equal(started, 5);
    throttle_free(t);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_after_max_failures),
        cmocka_unit_test(failures_outside_window_do_not_count),
        cmocka_unit_test(reset_forgets),
        cmocka_unit_test(flood_of_keys_stays_bounded),
        cmocka_unit_test(attempts_in_progress_count),
        cmocka_unit_test(parallel_burst_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
