/* form: see form.h. */
#include "core/form.h"

#include "core/http_mhd.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* MHD's buffer for field names, headers and small values. */
#define FORM_BUFFER 16384

/*
 * libmicrohttpd 0.9.75 announces a part with an empty piece (off 0, len 0)
 * when a body piece ends just inside the part's value, and then reports the
 * part's first bytes at off 0 again. So an empty piece is held back: the
 * next piece at off 0 with the same field and file name is the same part;
 * anything else (or the end) means the announced part was empty.
 */
struct form {
    struct MHD_PostProcessor *pp;
    form_part_fn fn;
    void *cls;
    bool pending;
    char *pend_field, *pend_filename, *pend_ctype;
};

static void clear_pending(struct form *f)
{
    free(f->pend_field);
    free(f->pend_filename);
    free(f->pend_ctype);
    f->pend_field = f->pend_filename = f->pend_ctype = NULL;
    f->pending = false;
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Reports the held-back part as an empty one. */
static int flush_pending(struct form *f)
{
    if (!f->pending)
        return 0;
    int rc = f->fn(f->cls, f->pend_field, f->pend_filename, f->pend_ctype, 0, "", 0);
    clear_pending(f);
    return rc;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    (void)kind;
    (void)transfer_encoding;
    struct form *f = cls;
    const char *field = key != NULL ? key : "";
    if (off == 0 && f->pending) {
        if (same_str(f->pend_field, field) && same_str(f->pend_filename, filename)) {
            clear_pending(f); /* the announced part, now with its bytes (or announced again) */
        } else if (flush_pending(f) != 0) {
            return MHD_NO;
        }
    }
    if (off == 0 && size == 0) {
        f->pending = true;
        f->pend_field = strdup(field);
        f->pend_filename = dup_or_null(filename);
        f->pend_ctype = dup_or_null(content_type);
        if (f->pend_field == NULL || (filename != NULL && f->pend_filename == NULL))
            return MHD_NO;
        return MHD_YES;
    }
    return f->fn(f->cls, field, filename, content_type, off, data, size) == 0 ? MHD_YES : MHD_NO;
}

struct form *form_new(struct http_req *req, form_part_fn fn, void *cls)
{
    if (!http_req_content_type_is(req, "multipart/form-data"))
        return NULL;
    struct form *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->fn = fn;
    f->cls = cls;
    f->pp = MHD_create_post_processor(http_req_connection(req), FORM_BUFFER, on_part, f);
    if (f->pp == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

int form_feed(struct form *f, const char *data, size_t len)
{
    return MHD_post_process(f->pp, data, len) == MHD_YES ? 0 : -1;
}

int form_finish(struct form *f)
{
    if (f == NULL)
        return -1;
    enum MHD_Result rc = MHD_destroy_post_processor(f->pp);
    int flushed = flush_pending(f);
    free(f);
    return rc == MHD_YES && flushed == 0 ? 0 : -1;
}
