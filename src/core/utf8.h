/* utf8: checking and cleaning text that arrives from outside. */
#ifndef VID2MP3_UTF8_H
#define VID2MP3_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t n);

/*
 * Copies s into out (outlen bytes, NUL-terminated) as valid UTF-8: each
 * byte that is not part of a well-formed sequence becomes '?', and the copy
 * stops at a character boundary before outlen. Returns out.
 */
char *utf8_clean(const char *s, char *out, size_t outlen);

#endif
