/*
 * Unit test: docs/openapi.json (built into the binary, served at
 * /openapi.json) describes exactly the routes the services' routers know:
 * auth's, the gateway's and the built-in ones. A route added without its
 * description, or a description left behind by a removed route, fails.
 */
#include "auth/auth.h"
#include "core/config.h"
#include "core/embedded.h"
#include "core/http.h"
#include "gateway/gateway.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define MAX_OPS 64

struct op {
    char method[8]; /* lower case, as OpenAPI writes it */
    char path[96];  /* OpenAPI's template: /jobs/{id} */
};

static int nops;
static struct op ops[MAX_OPS];

/* Adds a router route, in OpenAPI's spelling, once. */
static void add_route(const struct http_route *r)
{
    struct op o = {{0}, {0}};
    for (size_t i = 0; r->method[i] != '\0' && i < sizeof(o.method) - 1; i++)
        o.method[i] = (char)(r->method[i] | 0x20);
    size_t w = 0;
    for (const char *p = r->pattern; *p != '\0' && w < sizeof(o.path) - 3; p++) {
        if (*p == ':' && p[-1] == '/') { /* ":id" -> "{id}" */
            o.path[w++] = '{';
            while (p[1] != '\0' && p[1] != '/' && w < sizeof(o.path) - 2)
                o.path[w++] = *++p;
            o.path[w++] = '}';
        } else {
            o.path[w++] = *p;
        }
    }
    for (int i = 0; i < nops; i++) {
        if (strcmp(ops[i].method, o.method) == 0 && strcmp(ops[i].path, o.path) == 0)
            return;
    }
    assert_true(nops < MAX_OPS);
    ops[nops++] = o;
}

static int known(const char *method, const char *path)
{
    for (int i = 0; i < nops; i++) {
        if (strcmp(ops[i].method, method) == 0 && strcmp(ops[i].path, path) == 0)
            return 1;
    }
    return 0;
}

static void collect_routes(void)
{
    nops = 0;
    struct config cfg;
    char err[256];
    assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
    size_t n;
    const struct http_route *r = auth_routes(&n);
    for (size_t i = 0; i < n; i++)
        add_route(&r[i]);
    r = http_builtin_routes(&n);
    for (size_t i = 0; i < n; i++)
        add_route(&r[i]);
    struct http_route gw[GATEWAY_ROUTES_MAX];
    n = gateway_routes(&cfg, gw, GATEWAY_ROUTES_MAX);
    assert_true(n <= GATEWAY_ROUTES_MAX);
    for (size_t i = 0; i < n; i++)
        add_route(&gw[i]);
}

static json_t *load_doc(void)
{
    const struct embedded_file *f = embedded_find("docs/openapi.json");
    assert_non_null(f);
    json_error_t e;
    json_t *doc = json_loadb((const char *)f->data, f->len, 0, &e);
    if (doc == NULL)
        fail_msg("docs/openapi.json: line %d: %s", e.line, e.text);
    return doc;
}

static void every_route_is_described(void **state)
{
    (void)state;
    collect_routes();
    json_t *doc = load_doc();
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    for (int i = 0; i < nops; i++) {
        json_t *item = json_object_get(paths, ops[i].path);
        if (item == NULL || json_object_get(item, ops[i].method) == NULL)
            fail_msg("%s %s is routed but not in docs/openapi.json", ops[i].method, ops[i].path);
        json_t *op = json_object_get(item, ops[i].method);
        if (!json_is_string(json_object_get(op, "operationId")) ||
            !json_is_object(json_object_get(op, "responses")))
            fail_msg("%s %s: no operationId or responses", ops[i].method, ops[i].path);
    }
    json_decref(doc);
}

static void every_description_is_routed(void **state)
{
    (void)state;
    collect_routes();
    json_t *doc = load_doc();
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            static const char *const verbs[] = {"get",  "put",     "post",  "delete",
                                                "head", "options", "patch", "trace"};
            int verb = 0;
            for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
                verb |= strcmp(method, verbs[i]) == 0;
            if (!verb)
                continue; /* summary, servers, parameters ... */
            /* HEAD is answered wherever GET is */
            if (!known(method, path) && !(strcmp(method, "head") == 0 && known("get", path)))
                fail_msg("docs/openapi.json describes %s %s, which no router has", method, path);
        }
    }
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_described),
        cmocka_unit_test(every_description_is_routed),
    };
    return cmocka_run_group_tests_name("openapi", tests, NULL, NULL);
}
