/* netaddr: see netaddr.h. */
#include "core/netaddr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int netaddr_parse_ip(const char *text, size_t n, struct in6_addr *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        memset(out, 0, sizeof(*out));
        out->s6_addr[10] = 0xff;
        out->s6_addr[11] = 0xff;
        memcpy(&out->s6_addr[12], &v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

/* Whether the bits of a past the first prefix bits are all zero. */
static bool host_bits_clear(const struct in6_addr *a, int prefix)
{
    for (int bit = prefix; bit < 128; bit++) {
        if (a->s6_addr[bit / 8] & (0x80 >> (bit % 8)))
            return false;
    }
    return true;
}

int netaddr_parse_net(const char *text, size_t n, struct netaddr_net *out)
{
    const char *slash = memchr(text, '/', n);
    size_t iplen = slash != NULL ? (size_t)(slash - text) : n;
    if (netaddr_parse_ip(text, iplen, &out->addr) != 0)
        return -1;
    bool v4 = IN6_IS_ADDR_V4MAPPED(&out->addr) && memchr(text, ':', iplen) == NULL;
    int max = v4 ? 32 : 128;
    int len = max;
    if (slash != NULL) {
        size_t digits = n - iplen - 1;
        if (digits == 0 || digits > 3)
            return -1;
        len = 0;
        for (size_t i = 0; i < digits; i++) {
            char c = slash[1 + i];
            if (c < '0' || c > '9')
                return -1;
            len = len * 10 + (c - '0');
        }
        if (len > max)
            return -1;
    }
    out->prefix = v4 ? 96 + len : len;
    return host_bits_clear(&out->addr, out->prefix) ? 0 : -1;
}

bool netaddr_in(const struct netaddr_net *net, const struct in6_addr *a)
{
    int full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr.s6_addr, a->s6_addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (net->addr.s6_addr[full] & mask) == (a->s6_addr[full] & mask);
}

int netaddr_each(const char *list, int (*fn)(const struct netaddr_net *net, void *ctx), void *ctx)
{
    while (list != NULL && *list != '\0') {
        while (*list == ' ' || *list == ',')
            list++;
        size_t n = strcspn(list, ", ");
        if (n == 0)
            break;
        struct netaddr_net net;
        if (netaddr_parse_net(list, n, &net) != 0 || fn(&net, ctx) != 0)
            return -1;
        list += n;
    }
    return 0;
}
