/* Unit: ticker: first call after its delay, then every period; stop is
 * prompt, waits for a call in progress, and cancels one not yet due. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdatomic.h>
#include <time.h>

#include "core/ticker.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

struct count {
    atomic_int n;
    atomic_llong first_at;
    long busy_ms;
};

static void tick(void *arg)
{
    struct count *c = arg;
    if (atomic_fetch_add(&c->n, 1) == 0)
        atomic_store(&c->first_at, now_ms());
    if (c->busy_ms > 0)
        nap(c->busy_ms);
}

static void first_then_every_period(void **state)
{
    (void)state;
    struct count c = {0};
    int64_t t0 = now_ms();
    struct ticker *t = ticker_start(100, 50, tick, &c);
    assert_non_null(t);
    nap(60);
    assert_int_equal(atomic_load(&c.n), 0); /* not before its first delay */
    nap(400);
    ticker_stop(t);
    int n = atomic_load(&c.n);
    assert_true(atomic_load(&c.first_at) - t0 >= 100);
    assert_true(n >= 2); /* 100 ms, then every 50 ms (more under load is fine) */
}

static void stop_cancels_a_call_not_due(void **state)
{
    (void)state;
    struct count c = {0};
    int64_t t0 = now_ms();
    struct ticker *t = ticker_start(60000, 60000, tick, &c);
    assert_non_null(t);
    ticker_stop(t);
    assert_true(now_ms() - t0 < 1000); /* prompt */
    assert_int_equal(atomic_load(&c.n), 0);
    ticker_stop(NULL);
}

static void stop_waits_for_a_call_in_progress(void **state)
{
    (void)state;
    struct count c = {.busy_ms = 1000};
    struct ticker *t = ticker_start(0, 1000, tick, &c);
    assert_non_null(t);
    for (int i = 0; i < 1000 && atomic_load(&c.n) == 0; i++)
        nap(5); /* until the first call is running */
    assert_int_equal(atomic_load(&c.n), 1);
    int64_t t0 = now_ms();
    ticker_stop(t);
    assert_true(now_ms() - t0 >= 100); /* it waited for the call's remaining time */
    assert_int_equal(atomic_load(&c.n), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_then_every_period),
        cmocka_unit_test(stop_cancels_a_call_not_due),
        cmocka_unit_test(stop_waits_for_a_call_in_progress),
    };
    return cmocka_run_group_tests_name("ticker", tests, NULL, NULL);
}
