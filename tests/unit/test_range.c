/* Unit tests: gateway/range. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>

#include "gateway/range.h"

/* What range_parse leaves in first and last when it does not set them. */
#define UNTOUCHED UINT64_C(0xdeadbeefdeadbeef)

/* Parses header against size and checks the result, and for RANGE_OK the
 * bytes; for anything else first and last must be left alone. */
static void check(const char *header, uint64_t size, enum range_result want, uint64_t want_first,
                  uint64_t want_last)
{
    uint64_t first = UNTOUCHED, last = UNTOUCHED;
    enum range_result got = range_parse(header, size, &first, &last);
    if (got != want)
        print_error("header \"%s\", size %llu\n", header ? header : "(null)",
                    (unsigned long long)size);
    assert_int_equal(got, want);
    if (want == RANGE_OK) {
        assert_int_equal(first, want_first);
        assert_int_equal(last, want_last);
        assert_true(first <= last);
        assert_true(last < size);
    } else {
        assert_int_equal(first, UNTOUCHED);
        assert_int_equal(last, UNTOUCHED);
    }
}

static void ok(const char *header, uint64_t size, uint64_t first, uint64_t last)
{
    check(header, size, RANGE_OK, first, last);
}

static void none(const char *header, uint64_t size)
{
    check(header, size, RANGE_NONE, 0, 0);
}

static void unsatisfiable(const char *header, uint64_t size)
{
    check(header, size, RANGE_UNSATISFIABLE, 0, 0);
}

static void first_last(void **state)
{
    (void)state;
    ok("bytes=0-0", 1000, 0, 0);
    ok("bytes=0-499", 1000, 0, 499);
    ok("bytes=500-999", 1000, 500, 999);
    ok("bytes=999-999", 1000, 999, 999);
    ok("bytes=0-999", 1000, 0, 999);
    ok("bytes=0-0", 1, 0, 0);
    ok("bytes=42-42", 1000, 42, 42);
}

static void suffix(void **state)
{
    (void)state;
    ok("bytes=-100", 1000, 900, 999);
    ok("bytes=-1", 1000, 999, 999);
    ok("bytes=-1000", 1000, 0, 999);
    ok("bytes=-1001", 1000, 0, 999); /* larger than the file: all of it */
    ok("bytes=-18446744073709551000", 1000, 0, 999);
    ok("bytes=-5", 1, 0, 0);
    unsatisfiable("bytes=-0", 1000);
    unsatisfiable("bytes=-00", 1000);
    unsatisfiable("bytes=-0", 0);
}

static void open_end(void **state)
{
    (void)state;
    ok("bytes=500-", 1000, 500, 999);
    ok("bytes=0-", 1000, 0, 999);
    ok("bytes=999-", 1000, 999, 999);
    ok("bytes=0-", 1, 0, 0);
}

static void end_beyond_size_is_clamped(void **state)
{
    (void)state;
    ok("bytes=0-1000", 1000, 0, 999);
    ok("bytes=0-99999", 1000, 0, 999);
    ok("bytes=900-18446744073709551000", 1000, 900, 999);
    ok("bytes=999-1000", 1000, 999, 999);
}

static void start_at_or_past_end(void **state)
{
    (void)state;
    unsatisfiable("bytes=1000-", 1000);
    unsatisfiable("bytes=1000-1000", 1000);
    unsatisfiable("bytes=1000-2000", 1000);
    unsatisfiable("bytes=1001-", 1000);
    unsatisfiable("bytes=5000-6000", 1000);
    unsatisfiable("bytes=1-1", 1);
}

static void empty_file(void **state)
{
    (void)state;
    unsatisfiable("bytes=0-0", 0);
    unsatisfiable("bytes=0-", 0);
    unsatisfiable("bytes=0-499", 0);
    unsatisfiable("bytes=-100", 0);
    unsatisfiable("bytes=5-10", 0);
    none(NULL, 0);
    none("bytes=0-1,2-3", 0);
}

static void several_ranges_are_ignored(void **state)
{
    (void)state;
    none("bytes=0-1,5-6", 1000);
    none("bytes=0-1, 5-6", 1000);
    none("bytes=-5,0-1", 1000);
    none("bytes=0-1,", 1000);
    none("bytes=,0-1", 1000);
    none("bytes=2000-3000,0-1", 1000);
}

static void other_units_are_ignored(void **state)
{
    (void)state;
    none("items=0-1", 1000);
    none("byte=0-1", 1000);
    none("bits=0-1", 1000);
    none("bytesx=0-1", 1000);
    none("xbytes=0-1", 1000);
    none("=0-1", 1000);
    none("0-1", 1000);
    none("none", 1000);
}

static void unit_is_case_insensitive(void **state)
{
    (void)state;
    ok("BYTES=0-9", 1000, 0, 9);
    ok("Bytes=0-9", 1000, 0, 9);
    ok("bYtEs=-10", 1000, 990, 999);
}

static void whitespace(void **state)
{
    (void)state;
    ok(" bytes=0-9", 1000, 0, 9);
    ok("bytes=0-9 ", 1000, 0, 9);
    ok("\tbytes=0-9\t", 1000, 0, 9);
    ok("bytes = 0 - 9", 1000, 0, 9);
    ok("bytes=\t10\t-\t19", 1000, 10, 19);
    ok("bytes= -10", 1000, 990, 999);
    ok("bytes=500- ", 1000, 500, 999);
    none("bytes=0-9\n", 1000);
    none("bytes=0-9\r\n", 1000);
    none("\nbytes=0-9", 1000);
    none("bytes=0 9", 1000);
    none("bytes=1 0-20", 1000);
    none("bytes=0-1 9", 1000);
}

static void garbage(void **state)
{
    (void)state;
    none("", 1000);
    none(" ", 1000);
    none("bytes", 1000);
    none("bytes ", 1000);
    none("bytes=", 1000);
    none("bytes= ", 1000);
    none("bytes=-", 1000);
    none("bytes=--", 1000);
    none("bytes=--5", 1000);
    none("bytes=0--5", 1000);
    none("bytes=5", 1000);
    none("bytes=a-b", 1000);
    none("bytes=0-b", 1000);
    none("bytes=a-9", 1000);
    none("bytes=0x10-0x20", 1000);
    none("bytes=+1-2", 1000);
    none("bytes=1-+2", 1000);
    none("bytes=-+5", 1000);
    none("bytes=-1-", 1000);
    none("bytes=1-2-3", 1000);
    none("bytes=1.5-2", 1000);
    none("bytes==0-1", 1000);
    none("bytes=0-1;", 1000);
    none("bytes=\xff-1", 1000);
    none("bytes 0-1", 1000);
}

static void last_before_first_is_ignored(void **state)
{
    (void)state;
    none("bytes=5-4", 1000);
    none("bytes=1-0", 1000);
    none("bytes=999-0", 1000);
    /* Invalid beats unsatisfiable: the RFC says to ignore the header. */
    none("bytes=2000-1000", 1000);
    none("bytes=5-4", 0);
}

static void huge_numbers(void **state)
{
    (void)state;
    /* Too big for 64 bits: not a number, so not a range. */
    none("bytes=99999999999999999999999", 1000);
    none("bytes=99999999999999999999999-", 1000);
    none("bytes=0-99999999999999999999999", 1000);
    none("bytes=-99999999999999999999999", 1000);
    none("bytes=99999999999999999999999-99999999999999999999999", 1000);
    none("bytes=18446744073709551616-", 1000); /* UINT64_MAX + 1 */
    none("bytes=0-184467440737095516150", 1000);
    /* Large but representable. */
    unsatisfiable("bytes=18446744073709551000-", 1000);
    ok("bytes=18446744073709551000-", UINT64_MAX, UINT64_C(18446744073709551000), UINT64_MAX - 1);
    ok("bytes=1844674407370955160-", UINT64_C(1844674407370955161), UINT64_C(1844674407370955160),
       UINT64_C(1844674407370955160));
    ok("bytes=0-", UINT64_MAX, 0, UINT64_MAX - 1);
    ok("bytes=-1", UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 1);
    ok("bytes=-18446744073709551000", UINT64_MAX, UINT64_MAX - UINT64_C(18446744073709551000),
       UINT64_MAX - 1);
    /* Leading zeros are digits, not a reason to overflow. */
    ok("bytes=000000000000000000000000000010-000000000000000000000000000019", 1000, 10, 19);
    ok("bytes=-000000000000000000000000000100", 1000, 900, 999);
}

static void no_header(void **state)
{
    (void)state;
    none(NULL, 1000);
    none(NULL, UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_last),
        cmocka_unit_test(suffix),
        cmocka_unit_test(open_end),
        cmocka_unit_test(end_beyond_size_is_clamped),
        cmocka_unit_test(start_at_or_past_end),
        cmocka_unit_test(empty_file),
        cmocka_unit_test(several_ranges_are_ignored),
        cmocka_unit_test(other_units_are_ignored),
        cmocka_unit_test(unit_is_case_insensitive),
        cmocka_unit_test(whitespace),
        cmocka_unit_test(garbage),
        cmocka_unit_test(last_before_first_is_ignored),
        cmocka_unit_test(huge_numbers),
        cmocka_unit_test(no_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
