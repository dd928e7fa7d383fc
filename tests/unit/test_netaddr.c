/* Unit tests: netaddr (TRUSTED_PROXIES entries). */
#include "core/netaddr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static bool in(const char *net, const char *ip)
{
    struct netaddr_net n;
    struct in6_addr a;
    assert_int_equal(netaddr_parse_net(net, strlen(net), &n), 0);
    assert_int_equal(netaddr_parse_ip(ip, strlen(ip), &a), 0);
    return netaddr_in(&n, &a);
}

static void networks_match(void **state)
{
    (void)state;
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("10.244.0.0/16", "10.244.3.7"));
    assert_false(in("10.244.0.0/16", "10.245.0.1"));
    assert_true(in("172.16.0.0/12", "172.31.255.255"));
    assert_false(in("172.16.0.0/12", "172.32.0.0"));
    assert_true(in("192.168.1.128/25", "192.168.1.200"));
    assert_false(in("192.168.1.128/25", "192.168.1.127"));
    assert_true(in("127.0.0.1", "127.0.0.1")); /* a plain address is a /32 */
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_false(in("0.0.0.0/0", "2001:db8::1")); /* v4 networks hold v4 only */
    assert_true(in("fd00::/8", "fd12:3456::1"));
    assert_false(in("fd00::/8", "fe80::1"));
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_true(in("::1", "::1"));
    assert_true(in("::/0", "10.0.0.1")); /* everything, v4-mapped included */
}

static void bad_entries(void **state)
{
    (void)state;
    const char *bad[] = {"10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/1234",
                         "fd00::/129",  "gateway",    "",          "/8",         "10.0.0.0/-1",
                         "10.0.0.0/08x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct netaddr_net n;
        if (netaddr_parse_net(bad[i], strlen(bad[i]), &n) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static int count(const struct netaddr_net *net, void *ctx)
{
    (void)net;
    (*(int *)ctx)++;
    return 0;
}

static void lists(void **state)
{
    (void)state;
    int n = 0;
    assert_int_equal(netaddr_each("10.0.0.0/8, 127.0.0.1,fd00::/8", count, &n), 0);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(netaddr_each("", count, &n), 0);
    assert_int_equal(n, 0);
    n = 0;
    assert_int_equal(netaddr_each("10.0.0.0/8, proxy.local", count, &n), -1);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(networks_match),
        cmocka_unit_test(bad_entries),
        cmocka_unit_test(lists),
    };
    return cmocka_run_group_tests_name("netaddr", tests, NULL, NULL);
}
