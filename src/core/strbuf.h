/*
 * strbuf: a string that grows as text is appended, for output built piece
 * by piece (an email, a stream of events). An allocation failure is
 * remembered instead of reported at each call: the string stops growing,
 * failed is set, and the caller checks once at the end.
 */
#ifndef VID2MP3_STRBUF_H
#define VID2MP3_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p;     /* NUL-terminated once anything was appended; the owner frees */
    size_t len;  /* bytes in p, without the NUL */
    size_t cap;  /* bytes allocated */
    bool failed; /* an append ran out of memory: p lacks it and what followed */
};

/* Appends n bytes of s. */
void strbuf_put(struct strbuf *b, const char *s, size_t n);

/* Appends the string s. */
void strbuf_puts(struct strbuf *b, const char *s);

#endif
