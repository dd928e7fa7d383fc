/* Unit tests: auth/throttle. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>

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

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_after_max_failures),
        cmocka_unit_test(failures_outside_window_do_not_count),
        cmocka_unit_test(reset_forgets),
        cmocka_unit_test(flood_of_keys_stays_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
