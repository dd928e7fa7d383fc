/*
 * router: matches a request path against route patterns.
 *
 * A pattern is a path whose segments are literal ("/jobs") or a parameter
 * (":id"), which matches one non-empty segment of at most
 * ROUTER_PARAM_MAX - 1 bytes. Matching is exact: no prefix matches, no
 * trailing-slash folding.
 */
#ifndef VID2MP3_ROUTER_H
#define VID2MP3_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 4
#define ROUTER_PARAM_MAX 128

struct router_params {
    int n;
    struct {
        const char *name; /* points into the pattern, without the ':' */
        size_t name_len;
        char value[ROUTER_PARAM_MAX];
    } p[ROUTER_MAX_PARAMS];
};

/* Returns 1 when path matches pattern (filling *params when not NULL), else 0. */
int router_match(const char *pattern, const char *path, struct router_params *params);

/* The value of parameter name in params, or NULL. Valid as long as params. */
const char *router_param(const struct router_params *params, const char *name);

#endif
