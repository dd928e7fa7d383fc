/*
 * blobs: file storage for videos and MP3s (DESIGN §2), behind one
 * interface with two backends: MongoDB GridFS (blobs_gridfs.c, databases
 * "videos" and "mp3s", bucket "fs", 255 KiB chunks, the standard
 * fs.files/fs.chunks layout) and files under DATA_DIR (blobs_fs.c).
 *
 * Files are written through an upload stream and become visible only at
 * commit; an aborted or crashed upload leaves nothing that a reader can see
 * (its leftovers are removed by blobs_gc()). Files are read through a read
 * stream that can seek anywhere, so libavformat can read an MP4 whose index
 * is at the end. Memory use of both streams is bounded by one chunk,
 * whatever the file's size.
 *
 * Ids are 24 lower-case hex digits (an ObjectId in GridFS). Every function
 * may block on the backend; a store and its streams are safe to use from
 * several threads, but one stream only from one thread at a time.
 */
#ifndef VID2MP3_BLOBS_H
#define VID2MP3_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define BLOB_ID_LEN 24
#define BLOB_CHUNK_SIZE (255 * 1024)
#define BLOB_NAME_MAX 255  /* bytes of the original file name */
#define BLOB_OWNER_MAX 254 /* an email */
#define BLOB_TYPE_MAX 127  /* content type */

enum {
    BLOB_OK = 0,
    BLOB_ENOTFOUND = -1,
    BLOB_EUNAVAIL = -2, /* the backend cannot be reached: try again later */
    BLOB_EINVAL = -3,   /* bad id, bad seek, bad metadata */
    BLOB_EIO = -4,      /* the backend failed or the stored data is damaged */
    BLOB_ESTATE = -5,   /* stream used after commit/abort */
};

/* The two GridFS databases of the specified system. */
enum blob_bucket { BLOB_VIDEOS = 0, BLOB_MP3S = 1 };

struct blob_meta {
    char id[BLOB_ID_LEN + 1];
    char owner[BLOB_OWNER_MAX + 1];
    char filename[BLOB_NAME_MAX + 1];
    char content_type[BLOB_TYPE_MAX + 1];
    char job_id[BLOB_ID_LEN + 1]; /* may be empty */
    int64_t created_at;           /* unix milliseconds */
    int64_t length;               /* bytes */
    char sha256[65];              /* hex of the content */
};

struct blob_writer;
struct blob_reader;

struct blobs_gc_stats {
    long files_removed;  /* expired or half-written files */
    long chunks_removed; /* orphan chunks (GridFS) or temp files (fs) */
};

struct blobs_ops {
    const char *name; /* "gridfs", "fs" */
    /* meta: owner, filename, content_type, job_id are taken; the rest is
     * computed. *out is a new writer. */
    int (*open_write)(void *h, enum blob_bucket b, const struct blob_meta *meta,
                      struct blob_writer **out);
    int (*open_read)(void *h, enum blob_bucket b, const char *id, struct blob_reader **out);
    int (*stat)(void *h, enum blob_bucket b, const char *id, struct blob_meta *out);
    int (*remove)(void *h, enum blob_bucket b, const char *id);
    /* Removes leftovers of uploads that never committed and started more
     * than older_than seconds ago. */
    int (*gc)(void *h, long older_than, struct blobs_gc_stats *out);
    int (*ping)(void *h);
    void (*free)(void *h);
};

struct blob_writer_ops {
    int (*write)(struct blob_writer *w, const void *data, size_t len);
    int (*commit)(struct blob_writer *w, struct blob_meta *out); /* frees w */
    void (*abort)(struct blob_writer *w);                        /* frees w */
};

struct blob_reader_ops {
    /* Returns bytes read (0 at the end) or a negative BLOB_E* code. */
    long (*read)(struct blob_reader *r, void *buf, size_t len);
    /* whence: SEEK_SET, SEEK_CUR or SEEK_END. Returns the new offset or a
     * negative BLOB_E* code; offsets past the end are BLOB_EINVAL. */
    int64_t (*seek)(struct blob_reader *r, int64_t offset, int whence);
    const struct blob_meta *(*meta)(struct blob_reader *r);
    void (*close)(struct blob_reader *r);
};

/* Every backend's stream structs start with these. */
struct blob_writer {
    const struct blob_writer_ops *ops;
    char id[BLOB_ID_LEN + 1]; /* the id the file will have once committed */
};
struct blob_reader {
    const struct blob_reader_ops *ops;
};

struct blobs {
    const struct blobs_ops *ops;
    void *h;
};

/*
 * Opens the backend the configuration selects (MONGODB_URI set: GridFS,
 * else files under DATA_DIR/blobs). A GridFS server that is down is not an
 * error here. Returns a store (free with blobs_free()) or NULL with err.
 */
struct blobs *blobs_open(const struct config *cfg, char *err, size_t errlen);
struct blobs *blobs_fs_new(const char *dir, char *err, size_t errlen);
struct blobs *blobs_gridfs_new(const char *uri, char *err, size_t errlen);
void blobs_free(struct blobs *b);

static inline int blobs_open_write(struct blobs *s, enum blob_bucket b,
                                   const struct blob_meta *meta, struct blob_writer **out)
{
    return s->ops->open_write(s->h, b, meta, out);
}
static inline int blobs_open_read(struct blobs *s, enum blob_bucket b, const char *id,
                                  struct blob_reader **out)
{
    return s->ops->open_read(s->h, b, id, out);
}
static inline int blobs_stat(struct blobs *s, enum blob_bucket b, const char *id,
                             struct blob_meta *out)
{
    return s->ops->stat(s->h, b, id, out);
}
static inline int blobs_remove(struct blobs *s, enum blob_bucket b, const char *id)
{
    return s->ops->remove(s->h, b, id);
}
static inline int blobs_gc(struct blobs *s, long older_than, struct blobs_gc_stats *out)
{
    return s->ops->gc(s->h, older_than, out);
}
static inline int blobs_ping(struct blobs *s)
{
    return s->ops->ping(s->h);
}

static inline int blob_write(struct blob_writer *w, const void *data, size_t len)
{
    return w->ops->write(w, data, len);
}
/* The id the file gets at commit, known from the start (so a caller can
 * record it before writing, and remove a file a crash left committed). */
static inline const char *blob_writer_id(const struct blob_writer *w)
{
    return w->id;
}
static inline int blob_commit(struct blob_writer *w, struct blob_meta *out)
{
    return w->ops->commit(w, out);
}
static inline void blob_abort(struct blob_writer *w)
{
    if (w != NULL)
        w->ops->abort(w);
}
static inline long blob_read(struct blob_reader *r, void *buf, size_t len)
{
    return r->ops->read(r, buf, len);
}
static inline int64_t blob_seek(struct blob_reader *r, int64_t offset, int whence)
{
    return r->ops->seek(r, offset, whence);
}
static inline const struct blob_meta *blob_reader_meta(struct blob_reader *r)
{
    return r->ops->meta(r);
}
static inline void blob_close(struct blob_reader *r)
{
    if (r != NULL)
        r->ops->close(r);
}

/* True when id is 24 lower-case hex digits. */
bool blob_id_valid(const char *id);

/* A new id: 24 hex digits laid out as an ObjectId (4-byte seconds, 5 random
 * bytes, 3-byte counter), so ids sort by creation time. out: 25 bytes. */
void blob_id_new(char *out);

const char *blobs_strerror(int code);

/* --- for backends --- */

/* BLOB_OK when the caller-supplied parts of meta (owner, filename,
 * content_type, job_id) are within bounds and well formed, else BLOB_EINVAL. */
int blob_meta_check(const struct blob_meta *m);

/* The offset a seek from pos in a file of length bytes lands on, or
 * BLOB_EINVAL for a bad whence or a target outside 0..length. */
int64_t blob_seek_target(int64_t pos, int64_t length, int64_t offset, int whence);

#endif
