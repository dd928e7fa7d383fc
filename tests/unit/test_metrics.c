/* Unit: metrics histogram: each observation lands in the first bucket whose
 * bound holds it, the series are cumulative and end in +Inf, and the bounds
 * reach the minutes conversions and event streams take. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

/* Renders h as name "t" with no labels into a new string (caller frees). */
static char *render(const struct metrics_histogram *h)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    metrics_histogram_write(f, "t", "", h);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* The count of the bucket line with bound le, or -1 when there is none. */
static long long bucket(const char *text, const char *le)
{
    char key[64];
    snprintf(key, sizeof key, "t_bucket{le=\"%s\"} ", le);
    const char *p = strstr(text, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void observations_land_in_their_buckets(void **state)
{
    (void)state;
    static struct metrics_histogram h;
    metrics_histogram_observe(&h, 500);           /* 0.5 ms */
    metrics_histogram_observe(&h, 1000);          /* exactly 1 ms: le="0.001" */
    metrics_histogram_observe(&h, 2000000);       /* 2 s */
    metrics_histogram_observe(&h, 45000000);      /* 45 s: a conversion */
    metrics_histogram_observe(&h, 299000000);     /* an event stream */
    metrics_histogram_observe(&h, 3600000000ULL); /* an hour: +Inf only */
    char *text = render(&h);
    assert_int_equal(bucket(text, "0.001"), 2);
    assert_int_equal(bucket(text, "1"), 2);
    assert_int_equal(bucket(text, "5"), 3);
    assert_int_equal(bucket(text, "30"), 3);
    assert_int_equal(bucket(text, "60"), 4);
    assert_int_equal(bucket(text, "300"), 5);
    assert_int_equal(bucket(text, "1800"), 5);
    assert_int_equal(bucket(text, "+Inf"), 6);
    assert_non_null(strstr(text, "t_count{} 6\n"));
    assert_non_null(strstr(text, "t_sum{} 3946.001500\n"));
    free(text);
}

static void series_are_cumulative_and_ordered(void **state)
{
    (void)state;
    static struct metrics_histogram h;
    for (uint64_t us = 1; us < 4000000000ULL; us *= 3)
        metrics_histogram_observe(&h, us);
    char *text = render(&h);
    int lines = 0;
    long long last = -1;
    double last_le = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "t_bucket{le=\"", 13) != 0)
            continue;
        lines++;
        const char *le = line + 13;
        long long n = strtoll(strstr(line, "} ") + 2, NULL, 10);
        assert_true(n >= last);
        last = n;
        if (strncmp(le, "+Inf", 4) != 0) {
            double v = strtod(le, NULL);
            assert_true(v > last_le);
            last_le = v;
        }
    }
    assert_int_equal(lines, METRICS_BUCKETS);
    assert_true(last_le >= 1800);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(observations_land_in_their_buckets),
        cmocka_unit_test(series_are_cumulative_and_ordered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
