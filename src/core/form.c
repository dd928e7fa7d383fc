/* form: see form.h. */
#include "core/form.h"

#include "core/http_mhd.h"

#include <microhttpd.h>
#include <stdlib.h>

/* MHD's buffer for field names, headers and small values. */
#define FORM_BUFFER 16384

struct form {
    struct MHD_PostProcessor *pp;
    form_part_fn fn;
    void *cls;
};

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    (void)kind;
    (void)transfer_encoding;
    struct form *f = cls;
    return f->fn(f->cls, key != NULL ? key : "", filename, content_type, off, data, size) == 0
               ? MHD_YES
               : MHD_NO;
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
    free(f);
    return rc == MHD_YES ? 0 : -1;
}
