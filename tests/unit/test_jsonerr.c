/* Unit tests: core/jsonerr. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>

#include "core/jsonerr.h"

static void shape(void **state)
{
    (void)state;
    json_t *e = jsonerr_new("invalid_request", "email is required");
    char *text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(
        text, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"email is required\"}}");
    free(text);
    assert_int_equal(json_object_size(e), 1);
    json_decref(e);
}

static void escapes_hostile_text(void **state)
{
    (void)state;
    json_t *e = jsonerr_new("x", "quote \" backslash \\ newline \n");
    char *text = json_dumps(e, JSON_COMPACT);
    json_t *back = json_loads(text, 0, NULL);
    assert_non_null(back);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(back, "error"), "message")),
        "quote \" backslash \\ newline \n");
    json_decref(back);
    json_decref(e);
    free(text);
}

static void codes_for_statuses(void **state)
{
    (void)state;
    assert_string_equal(jsonerr_code_for_status(404), "not_found");
    assert_string_equal(jsonerr_code_for_status(413), "payload_too_large");
    assert_string_equal(jsonerr_code_for_status(503), "service_unavailable");
    assert_string_equal(jsonerr_code_for_status(502), "internal_error");
    assert_string_equal(jsonerr_code_for_status(418), "bad_request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shape),
        cmocka_unit_test(escapes_hostile_text),
        cmocka_unit_test(codes_for_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
