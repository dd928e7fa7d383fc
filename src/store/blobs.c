/* blobs: backend choice and helpers shared by both backends; see blobs.h. */
#include "store/blobs.h"

#include "core/fsutil.h"
#include "core/utf8.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct blobs *blobs_open(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->mongodb_uri != NULL && cfg->mongodb_uri[0] != '\0')
        return blobs_gridfs_new(cfg->mongodb_uri, err, errlen);
    char dir[4096];
    int n = snprintf(dir, sizeof(dir), "%s/blobs", cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        snprintf(err, errlen, "DATA_DIR: path too long");
        return NULL;
    }
    int rc = fsutil_mkdirs(dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", dir, strerror(-rc));
        return NULL;
    }
    return blobs_fs_new(dir, err, errlen);
}

void blobs_free(struct blobs *b)
{
    if (b == NULL)
        return;
    b->ops->free(b->h);
    free(b);
}

bool blob_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    for (int i = 0; i < BLOB_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return id[BLOB_ID_LEN] == '\0';
}

void blob_id_new(char *out)
{
    /* libbson's default context is thread-safe and fork-aware, and lays
     * the bytes out as an ObjectId, so an fs id is also a valid GridFS id */
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_oid_to_string(&oid, out);
}

const char *blobs_strerror(int code)
{
    switch (code) {
    case BLOB_OK:
        return "ok";
    case BLOB_ENOTFOUND:
        return "no such file";
    case BLOB_EUNAVAIL:
        return "the file store is unavailable";
    case BLOB_EINVAL:
        return "invalid value";
    case BLOB_EIO:
        return "the file store failed or the stored file is damaged";
    case BLOB_ESTATE:
        return "stream already finished";
    default:
        return "unknown error";
    }
}

/* Each string must end inside its array and be UTF-8 (JSON and BSON both
 * need that), the owner must be set, the job id empty or an id. */

static bool text_ok(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    return n < size && utf8_valid(s, n);
}

int blob_meta_check(const struct blob_meta *m)
{
    if (m == NULL || !text_ok(m->owner, sizeof(m->owner)) || m->owner[0] == '\0' ||
        !text_ok(m->filename, sizeof(m->filename)) ||
        !text_ok(m->content_type, sizeof(m->content_type)) ||
        strnlen(m->job_id, sizeof(m->job_id)) >= sizeof(m->job_id) ||
        (m->job_id[0] != '\0' && !blob_id_valid(m->job_id)))
        return BLOB_EINVAL;
    return BLOB_OK;
}

int64_t blob_seek_target(int64_t pos, int64_t length, int64_t offset, int whence)
{
    int64_t from;
    switch (whence) {
    case SEEK_SET:
        from = 0;
        break;
    case SEEK_CUR:
        from = pos;
        break;
    case SEEK_END:
        from = length;
        break;
    default:
        return BLOB_EINVAL;
    }
    if ((offset > 0 && offset > length - from) || (offset < 0 && -offset > from))
        return BLOB_EINVAL;
    return from + offset;
}
