/* Unit tests: core/router. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/router.h"

static void literal_paths(void **state)
{
    (void)state;
    assert_int_equal(router_match("/login", "/login", NULL), 1);
    assert_int_equal(router_match("/login", "/login/", NULL), 0);
    assert_int_equal(router_match("/login", "/loginx", NULL), 0);
    assert_int_equal(router_match("/login", "/logi", NULL), 0);
    assert_int_equal(router_match("/login", "/", NULL), 0);
    assert_int_equal(router_match("/", "/", NULL), 1);
    assert_int_equal(router_match("/a/b", "/a/b", NULL), 1);
    assert_int_equal(router_match("/a/b", "/a", NULL), 0);
    assert_int_equal(router_match("/a", "/a/b", NULL), 0);
    assert_int_equal(router_match("/login", "login", NULL), 0);
    assert_int_equal(router_match("/login", "", NULL), 0);
}

static void parameters(void **state)
{
    (void)state;
    struct router_params p;
    assert_int_equal(router_match("/jobs/:id", "/jobs/abc123", &p), 1);
    assert_int_equal(p.n, 1);
    assert_string_equal(router_param(&p, "id"), "abc123");
    assert_null(router_param(&p, "i"));
    assert_null(router_param(&p, "idx"));
    assert_int_equal(router_match("/jobs/:id", "/jobs/", &p), 0);
    assert_int_equal(router_match("/jobs/:id", "/jobs", &p), 0);
    assert_int_equal(router_match("/jobs/:id", "/jobs/a/b", &p), 0);
    assert_int_equal(router_match("/a/:x/b/:y", "/a/1/b/2", &p), 1);
    assert_string_equal(router_param(&p, "x"), "1");
    assert_string_equal(router_param(&p, "y"), "2");
}

static void oversized_parameter_is_no_match(void **state)
{
    (void)state;
    char path[400] = "/jobs/";
    memset(path + 6, 'a', 200);
    path[206] = '\0';
    struct router_params p;
    assert_int_equal(router_match("/jobs/:id", path, &p), 0);
    path[6 + ROUTER_PARAM_MAX - 1] = '\0';
    assert_int_equal(router_match("/jobs/:id", path, &p), 1);
    assert_int_equal(strlen(router_param(&p, "id")), ROUTER_PARAM_MAX - 1);
}

static void too_many_parameters(void **state)
{
    (void)state;
    struct router_params p;
    assert_int_equal(router_match("/:a/:b/:c/:d/:e", "/1/2/3/4/5", &p), 0);
    assert_int_equal(router_match("/:a/:b/:c/:d", "/1/2/3/4", &p), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_paths),
        cmocka_unit_test(parameters),
        cmocka_unit_test(oversized_parameter_is_no_match),
        cmocka_unit_test(too_many_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
