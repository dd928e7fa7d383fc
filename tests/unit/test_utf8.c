/* Unit tests: core/utf8 and log_text. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/log.h"
#include "core/utf8.h"

static void valid_and_invalid(void **state)
{
    (void)state;
    assert_true(utf8_valid("plain", 5));
    assert_true(utf8_valid("\xc3\xa9lodie", 7));    /* é */
    assert_true(utf8_valid("\xf0\x9f\x8e\xb5", 4)); /* U+1F3B5 */
    assert_false(utf8_valid("\xff", 1));
    assert_false(utf8_valid("\xc3", 1));             /* truncated */
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}

static void clean_replaces_and_bounds(void **state)
{
    (void)state;
    char out[16];
    assert_string_equal(utf8_clean("/\xff\xfe/ok", out, sizeof(out)), "/?\?/ok");
    assert_string_equal(utf8_clean("\xc3\xa9\xc3\xa9", out, 4), "\xc3\xa9"); /* whole chars */
    assert_string_equal(utf8_clean("abcdefghijklmnopqrstuvwxyz", out, sizeof(out)),
                        "abcdefghijklmno");
}

static void log_text_is_always_encodable(void **state)
{
    (void)state;
    char big[2000];
    memset(big, '\xff', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_t *j = log_text(big);
    assert_non_null(j);
    assert_int_equal(json_string_length(j), 256);
    json_decref(j);
    j = log_text(NULL);
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_and_invalid),
        cmocka_unit_test(clean_replaces_and_bounds),
        cmocka_unit_test(log_text_is_always_encodable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
