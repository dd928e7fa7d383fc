/*
 * netaddr: IP addresses and networks as TRUSTED_PROXIES lists them.
 *
 * IPv4 is held as v4-mapped IPv6, so one comparison covers both families;
 * a v4 prefix length is counted within the v4 part ("10.0.0.0/8").
 */
#ifndef VID2MP3_NETADDR_H
#define VID2MP3_NETADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct netaddr_net {
    struct in6_addr addr; /* host bits cleared */
    int prefix;           /* 0..128, over the (v4-mapped) IPv6 form */
};

/* Parses an IPv4 or IPv6 literal of n bytes into out; 0, or -1. */
int netaddr_parse_ip(const char *text, size_t n, struct in6_addr *out);

/* Parses "IP" (a /32 or /128) or "IP/LEN" of n bytes; 0, or -1 for a bad
 * address, a bad length, or host bits set ("10.0.0.1/8" is refused: the
 * writer probably meant something else). */
int netaddr_parse_net(const char *text, size_t n, struct netaddr_net *out);

bool netaddr_in(const struct netaddr_net *net, const struct in6_addr *a);

/* Calls fn for each entry of a comma- or space-separated list; returns 0,
 * or -1 at the first entry that does not parse (fn is not called for it).
 * fn returns 0 to go on, non-zero to stop with -1. */
int netaddr_each(const char *list, int (*fn)(const struct netaddr_net *net, void *ctx), void *ctx);

#endif
