/*
 * form: multipart/form-data bodies parsed as they stream in, on
 * libmicrohttpd's post processor, for streaming routes (see http.h).
 *
 * Each part's value arrives in pieces: fn is called with the part's field
 * name, its file name (NULL for a plain field), its Content-Type (may be
 * NULL), the offset of the piece within the part and the piece itself. A
 * new part starts when off is 0 (each part is started exactly once); an
 * empty part is one call with len 0. Returning non-zero from fn stops the
 * parse. (Two empty parts in a row with the same field and file name are
 * reported as one.)
 */
#ifndef VID2MP3_FORM_H
#define VID2MP3_FORM_H

#include <stddef.h>
#include <stdint.h>

#include "core/http.h"

struct form;

typedef int (*form_part_fn)(void *cls, const char *field, const char *filename,
                            const char *content_type, uint64_t off, const char *data, size_t len);

/* Parses req's body as multipart/form-data. Returns NULL when the request's
 * Content-Type is not multipart/form-data with a boundary. */
struct form *form_new(struct http_req *req, form_part_fn fn, void *cls);

/* Feeds body bytes; returns 0, or -1 when the body is malformed or fn
 * stopped the parse. */
int form_feed(struct form *f, const char *data, size_t len);

/* Frees f; returns 0 when the body ended where a well-formed multipart body
 * ends (the closing boundary seen), else -1. NULL is a no-op returning -1. */
int form_finish(struct form *f);

#endif
