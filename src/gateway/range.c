/* range: see range.h. */
#include "gateway/range.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Reads digits at *p into *out; false when there are none or they overflow. */
static bool read_num(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

static void skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

enum range_result range_parse(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (header == NULL)
        return RANGE_NONE;
    const char *p = header;
    skip_ws(&p);
    if (strncasecmp(p, "bytes", 5) != 0)
        return RANGE_NONE;
    p += 5;
    skip_ws(&p);
    if (*p++ != '=')
        return RANGE_NONE;
    skip_ws(&p);
    if (strchr(p, ',') != NULL)
        return RANGE_NONE; /* several ranges: the whole file instead */
    uint64_t a = 0, b = 0;
    bool has_a = read_num(&p, &a);
    skip_ws(&p);
    if (*p++ != '-')
        return RANGE_NONE;
    skip_ws(&p);
    bool has_b = read_num(&p, &b);
    skip_ws(&p);
    if (*p != '\0' || (!has_a && !has_b))
        return RANGE_NONE;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return RANGE_OK;
    }
    if (has_b && b < a)
        return RANGE_NONE; /* invalid: ignored */
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *last = !has_b || b >= size ? size - 1 : b;
    return RANGE_OK;
}
