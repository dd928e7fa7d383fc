/* router: see router.h. */
#include "core/router.h"

#include <string.h>

int router_match(const char *pattern, const char *path, struct router_params *params)
{
    struct router_params local;
    struct router_params *out = params != NULL ? params : &local;
    out->n = 0;
    if (pattern[0] != '/' || path[0] != '/')
        return 0;
    const char *pp = pattern + 1, *sp = path + 1;
    for (;;) {
        size_t plen = strcspn(pp, "/");
        size_t slen = strcspn(sp, "/");
        if (pp[0] == ':') {
            if (slen == 0 || slen >= ROUTER_PARAM_MAX || out->n == ROUTER_MAX_PARAMS)
                return 0;
            out->p[out->n].name = pp + 1;
            out->p[out->n].name_len = plen - 1;
            memcpy(out->p[out->n].value, sp, slen);
            out->p[out->n].value[slen] = '\0';
            out->n++;
        } else if (plen != slen || memcmp(pp, sp, plen) != 0) {
            return 0;
        }
        pp += plen;
        sp += slen;
        if (*pp == '\0' || *sp == '\0')
            return *pp == '\0' && *sp == '\0';
        pp++; /* both are at a '/' */
        sp++;
    }
}

const char *router_param(const struct router_params *params, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < params->n; i++) {
        if (params->p[i].name_len == len && memcmp(params->p[i].name, name, len) == 0)
            return params->p[i].value;
    }
    return NULL;
}
