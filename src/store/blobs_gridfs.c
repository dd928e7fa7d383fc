/*
 * blobs_gridfs: the blobs backend on MongoDB GridFS (DESIGN §2), databases
 * "videos" and "mp3s", bucket "fs", through a libmongoc client pool.
 *
 * The layout is the GridFS specification's, so any driver reads our files
 * and we read theirs: fs.files {_id ObjectId, length int64, chunkSize,
 * uploadDate, filename, metadata {owner, content_type, job_id, sha256}},
 * fs.chunks {_id, files_id, n, data}, with the spec's indexes
 * {files_id:1, n:1} (unique) and {filename:1, uploadDate:1}.
 *
 * Upload: chunks are inserted as they fill; the fs.files document, inserted
 * at commit, is the commit point, so readers never see a partial file.
 * Commit then counts the file's chunks and, should any be missing (a gc
 * that judged the upload abandoned), takes the files document back and
 * fails: a committed file is always whole. Abort deletes the chunks written
 * so far; a crash leaves them for blobs_gc(), which removes the chunks of a
 * files_id without a files document once its newest chunk (each chunk's
 * _id is an ObjectId made when it was written) is old enough: an upload
 * that is still writing is never swept, however long it has been running.
 *
 * Read: libmongoc's bucket download stream cannot seek, so the reader
 * fetches chunk k itself with a one-document query on {files_id, n}: a
 * reply is one chunk (real servers cap a reply at 16 MiB; the test server
 * does not, see DESIGN §9), a seek costs nothing until the next read, and
 * no pooled client is held between reads. The chunk size is the file's own
 * (other drivers may use another); each chunk's n and size are checked, so
 * a damaged file is BLOB_EIO.
 *
 * A server that is down answers BLOB_EUNAVAIL within the server-selection
 * timeout (store/mongo.h), and the next call reconnects by itself.
 */
#include "store/blobs.h"

#include "core/log.h"
#include "core/sha256.h"
#include "store/mongo.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CHUNK (16 * 1024 * 1024) /* largest chunkSize we accept from other drivers */

static const char *const dbs[] = {"videos", "mp3s"};

struct gfs {
    mongoc_client_pool_t *pool;
    atomic_bool indexed[2];
};

struct gfw {
    struct blob_writer base;
    struct gfs *s;
    enum blob_bucket bucket;
    bson_oid_t oid;
    int32_t n;   /* chunks inserted */
    size_t fill; /* bytes in buf */
    int err;     /* first failure; later writes return it */
    struct blob_meta meta;
    struct sha256 sha;
    unsigned char buf[BLOB_CHUNK_SIZE];
};

struct gfr {
    struct blob_reader base;
    struct gfs *s;
    enum blob_bucket bucket;
    bson_oid_t oid;
    struct blob_meta meta;
    int32_t chunk_size;
    int64_t pos;
    /* the chunk in buf */
    int64_t cur_n; /* -1: none */
    size_t cur_len;
    unsigned char *buf; /* chunk_size bytes */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool bucket_ok(enum blob_bucket b)
{
    return b == BLOB_VIDEOS || b == BLOB_MP3S;
}

static int map_error(const bson_error_t *e, const char *op)
{
    if (mongo_error_unavailable(e)) {
        log_warn("blob store: mongodb unavailable",
                 json_pack("{s:s, s:s}", "op", op, "detail", e->message));
        return BLOB_EUNAVAIL;
    }
    log_error("blob store: mongodb failed",
              json_pack("{s:s, s:i, s:i, s:s}", "op", op, "domain", (int)e->domain, "code",
                        (int)e->code, "detail", e->message));
    return BLOB_EIO;
}

/* A pooled client and one collection of bucket b; release with put(). */
static mongoc_collection_t *take(struct gfs *s, enum blob_bucket b, const char *coll,
                                 mongoc_client_t **client)
{
    *client = mongoc_client_pool_pop(s->pool);
    return mongoc_client_get_collection(*client, dbs[b], coll);
}

static void put(struct gfs *s, mongoc_client_t *client, mongoc_collection_t *coll)
{
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(s->pool, client);
}

/* The spec's indexes, with the names other drivers give them, so that
 * theirs and ours are the same index. Created once per bucket; a failure
 * is retried by the next upload. */
static int ensure_indexes(struct gfs *s, enum blob_bucket b)
{
    if (atomic_load(&s->indexed[b]))
        return BLOB_OK;
    mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
    mongoc_database_t *db = mongoc_client_get_database(client, dbs[b]);
    bson_t *chunks = BCON_NEW("createIndexes", BCON_UTF8("fs.chunks"), "indexes", "[", "{", "key",
                              "{", "files_id", BCON_INT32(1), "n", BCON_INT32(1), "}", "name",
                              BCON_UTF8("files_id_1_n_1"), "unique", BCON_BOOL(true), "}", "]");
    bson_t *files = BCON_NEW("createIndexes", BCON_UTF8("fs.files"), "indexes", "[", "{", "key",
                             "{", "filename", BCON_INT32(1), "uploadDate", BCON_INT32(1), "}",
                             "name", BCON_UTF8("filename_1_uploadDate_1"), "}", "]");
    bson_error_t e;
    int rc = BLOB_OK;
    if (!mongoc_database_write_command_with_opts(db, chunks, NULL, NULL, &e) ||
        !mongoc_database_write_command_with_opts(db, files, NULL, NULL, &e))
        rc = map_error(&e, "create indexes");
    else
        atomic_store(&s->indexed[b], true);
    bson_destroy(chunks);
    bson_destroy(files);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

/* ---------- writer ---------- */

static int insert_chunk(struct gfw *w)
{
    bson_t doc = BSON_INITIALIZER;
    bson_oid_t cid;
    bson_oid_init(&cid, NULL);
    BSON_APPEND_OID(&doc, "_id", &cid);
    BSON_APPEND_OID(&doc, "files_id", &w->oid);
    BSON_APPEND_INT32(&doc, "n", w->n);
    BSON_APPEND_BINARY(&doc, "data", BSON_SUBTYPE_BINARY, w->buf, (uint32_t)w->fill);
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(w->s, w->bucket, "fs.chunks", &client);
    bson_error_t e;
    int rc = BLOB_OK;
    if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &e)) {
        w->n++;
        w->fill = 0;
    } else {
        rc = map_error(&e, "insert chunk");
    }
    put(w->s, client, coll);
    bson_destroy(&doc);
    return rc;
}

/* Deletes the chunks of files_id oid (best effort: gc removes what stays). */
static void delete_chunks(struct gfs *s, enum blob_bucket b, const bson_oid_t *oid)
{
    bson_t *filter = BCON_NEW("files_id", BCON_OID(oid));
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(s, b, "fs.chunks", &client);
    bson_error_t e;
    if (!mongoc_collection_delete_many(coll, filter, NULL, NULL, &e))
        map_error(&e, "delete chunks");
    put(s, client, coll);
    bson_destroy(filter);
}

static int gfw_write(struct blob_writer *base, const void *data, size_t len)
{
    struct gfw *w = (struct gfw *)base;
    const unsigned char *p = data;
    if (w->err != BLOB_OK)
        return w->err;
    sha256_update(&w->sha, p, len);
    w->meta.length += (int64_t)len;
    while (len > 0) {
        size_t n = sizeof(w->buf) - w->fill;
        if (n > len)
            n = len;
        memcpy(w->buf + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
        if (w->fill == sizeof(w->buf) && (w->err = insert_chunk(w)) != BLOB_OK)
            return w->err;
    }
    return BLOB_OK;
}

static void gfw_abort(struct blob_writer *base)
{
    struct gfw *w = (struct gfw *)base;
    if (w->n > 0)
        delete_chunks(w->s, w->bucket, &w->oid);
    sha256_free(&w->sha);
    free(w);
}

/* After the files document is in: are all w->n chunks still there? If not,
 * takes the document back (the file was never whole) and says BLOB_EIO. */
static int verify_chunks(struct gfw *w)
{
    bson_t *filter = BCON_NEW("files_id", BCON_OID(&w->oid));
    mongoc_client_t *client;
    mongoc_collection_t *chunks = take(w->s, w->bucket, "fs.chunks", &client);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(chunks, filter, NULL, NULL, NULL, &e);
    put(w->s, client, chunks);
    bson_destroy(filter);
    if (n < 0)
        return map_error(&e, "verify chunks"); /* outcome unknown: left for gc */
    if (n == w->n)
        return BLOB_OK;
    log_error("blob store: upload lost chunks before commit",
              json_pack("{s:s, s:s, s:i, s:I}", "bucket", dbs[w->bucket], "id", w->meta.id,
                        "written", (int)w->n, "found", (json_int_t)n));
    bson_t *id = BCON_NEW("_id", BCON_OID(&w->oid));
    mongoc_collection_t *files = take(w->s, w->bucket, "fs.files", &client);
    if (!mongoc_collection_delete_one(files, id, NULL, NULL, &e))
        map_error(&e, "take back file");
    put(w->s, client, files);
    bson_destroy(id);
    delete_chunks(w->s, w->bucket, &w->oid);
    return BLOB_EIO;
}

static int gfw_commit(struct blob_writer *base, struct blob_meta *out)
{
    struct gfw *w = (struct gfw *)base;
    int rc = w->err;
    if (rc == BLOB_OK && w->fill > 0)
        rc = insert_chunk(w);
    if (rc != BLOB_OK) {
        gfw_abort(base);
        return rc;
    }
    sha256_hex(&w->sha, w->meta.sha256);
    w->meta.created_at = now_ms();
    bson_t *doc =
        BCON_NEW("_id", BCON_OID(&w->oid), "length", BCON_INT64(w->meta.length), "chunkSize",
                 BCON_INT32(BLOB_CHUNK_SIZE), "uploadDate", BCON_DATE_TIME(w->meta.created_at),
                 "filename", BCON_UTF8(w->meta.filename), "metadata", "{", "owner",
                 BCON_UTF8(w->meta.owner), "content_type", BCON_UTF8(w->meta.content_type),
                 "job_id", BCON_UTF8(w->meta.job_id), "sha256", BCON_UTF8(w->meta.sha256), "}");
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(w->s, w->bucket, "fs.files", &client);
    bson_error_t e;
    if (!mongoc_collection_insert_one(coll, doc, NULL, NULL, &e))
        rc = map_error(&e, "insert file");
    put(w->s, client, coll);
    bson_destroy(doc);
    if (rc == BLOB_OK)
        rc = verify_chunks(w);
    if (rc != BLOB_OK) {
        /* not committed as far as we know; if the insert did land after
         * all, the chunks must stay, so they are left for gc to judge */
        sha256_free(&w->sha);
        free(w);
        return rc;
    }
    if (out != NULL)
        *out = w->meta;
    log_info("blob stored", json_pack("{s:s, s:s, s:I}", "bucket", dbs[w->bucket], "id", w->meta.id,
                                      "length", (json_int_t)w->meta.length));
    sha256_free(&w->sha);
    free(w);
    return BLOB_OK;
}

static const struct blob_writer_ops gfw_ops = {gfw_write, gfw_commit, gfw_abort};

static int gf_open_write(void *h, enum blob_bucket b, const struct blob_meta *meta,
                         struct blob_writer **out)
{
    struct gfs *s = h;
    *out = NULL;
    if (!bucket_ok(b) || blob_meta_check(meta) != BLOB_OK)
        return BLOB_EINVAL;
    /* also tells a caller that the server is down before it takes an upload */
    int rc = ensure_indexes(s, b);
    if (rc != BLOB_OK)
        return rc;
    struct gfw *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return BLOB_EIO;
    w->base.ops = &gfw_ops;
    w->s = s;
    w->bucket = b;
    memcpy(w->meta.owner, meta->owner, sizeof(w->meta.owner));
    memcpy(w->meta.filename, meta->filename, sizeof(w->meta.filename));
    memcpy(w->meta.content_type, meta->content_type, sizeof(w->meta.content_type));
    memcpy(w->meta.job_id, meta->job_id, sizeof(w->meta.job_id));
    blob_id_new(w->meta.id);
    memcpy(w->base.id, w->meta.id, sizeof(w->base.id));
    bson_oid_init_from_string(&w->oid, w->meta.id);
    if (sha256_init(&w->sha) != 0) {
        free(w);
        return BLOB_EIO;
    }
    *out = &w->base;
    return BLOB_OK;
}

/* ---------- files documents ---------- */

static void copy_str(char *dst, size_t len, const bson_t *doc, const char *path)
{
    bson_iter_t it, sub;
    dst[0] = '\0';
    if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &sub) &&
        BSON_ITER_HOLDS_UTF8(&sub))
        snprintf(dst, len, "%s", bson_iter_utf8(&sub, NULL));
}

/* Fills out from an fs.files document; BLOB_EIO when it is not one. */
static int doc_to_meta(const bson_t *doc, struct blob_meta *out, int32_t *chunk_size)
{
    bson_iter_t it;
    memset(out, 0, sizeof(*out));
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
        return BLOB_EIO;
    bson_oid_to_string(bson_iter_oid(&it), out->id);
    if (!bson_iter_init_find(&it, doc, "length") || !BSON_ITER_HOLDS_NUMBER(&it) ||
        (out->length = bson_iter_as_int64(&it)) < 0)
        return BLOB_EIO;
    int64_t cs = 0;
    if (bson_iter_init_find(&it, doc, "chunkSize") && BSON_ITER_HOLDS_NUMBER(&it))
        cs = bson_iter_as_int64(&it);
    if (cs <= 0 || cs > MAX_CHUNK)
        return BLOB_EIO;
    *chunk_size = (int32_t)cs;
    if (bson_iter_init_find(&it, doc, "uploadDate") && BSON_ITER_HOLDS_DATE_TIME(&it))
        out->created_at = bson_iter_date_time(&it);
    copy_str(out->filename, sizeof(out->filename), doc, "filename");
    copy_str(out->owner, sizeof(out->owner), doc, "metadata.owner");
    copy_str(out->content_type, sizeof(out->content_type), doc, "metadata.content_type");
    copy_str(out->job_id, sizeof(out->job_id), doc, "metadata.job_id");
    copy_str(out->sha256, sizeof(out->sha256), doc, "metadata.sha256");
    return BLOB_OK;
}

static int find_file(struct gfs *s, enum blob_bucket b, const bson_oid_t *oid,
                     struct blob_meta *out, int32_t *chunk_size)
{
    bson_t *filter = BCON_NEW("_id", BCON_OID(oid));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(s, b, "fs.files", &client);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = BLOB_ENOTFOUND;
    if (mongoc_cursor_next(cur, &doc)) {
        rc = doc_to_meta(doc, out, chunk_size);
        if (rc != BLOB_OK)
            log_error("blob store: damaged files document",
                      json_pack("{s:s, s:s}", "bucket", dbs[b], "op", "find"));
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = map_error(&e, "find file");
    }
    mongoc_cursor_destroy(cur);
    put(s, client, coll);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

/* ---------- reader ---------- */

static int damaged(struct gfr *r, int64_t k, const char *why)
{
    log_error("blob store: damaged file",
              json_pack("{s:s, s:s, s:I, s:s}", "bucket", dbs[r->bucket], "id", r->meta.id, "chunk",
                        (json_int_t)k, "detail", why));
    return BLOB_EIO;
}

/* Takes doc as chunk k into buf, checking its number and size. */
static int take_chunk(struct gfr *r, const bson_t *doc, int64_t k)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "n") || !BSON_ITER_HOLDS_NUMBER(&it) ||
        bson_iter_as_int64(&it) != k)
        return damaged(r, k, "missing chunk");
    int64_t want = r->meta.length - k * r->chunk_size;
    if (want > r->chunk_size)
        want = r->chunk_size;
    const uint8_t *data = NULL;
    uint32_t len = 0;
    bson_subtype_t sub;
    if (!bson_iter_init_find(&it, doc, "data") || !BSON_ITER_HOLDS_BINARY(&it))
        return damaged(r, k, "chunk without data");
    bson_iter_binary(&it, &sub, &len, &data);
    if ((int64_t)len != want)
        return damaged(r, k, "chunk of the wrong size");
    memcpy(r->buf, data, len);
    r->cur_n = k;
    r->cur_len = len;
    return BLOB_OK;
}

/*
 * Makes chunk k the one in buf. One query per chunk, with the pooled client
 * given back before returning: a reader holds no connection between reads,
 * so a hundred slow downloads cannot take the whole pool (they did when
 * each kept a cursor open). The query's reply is that one chunk.
 */
static int load_chunk(struct gfr *r, int64_t k)
{
    if (r->cur_n == k)
        return BLOB_OK;
    r->cur_n = -1;
    bson_t *filter = BCON_NEW("files_id", BCON_OID(&r->oid), "n", BCON_INT32((int32_t)k));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "batchSize", BCON_INT32(1));
    mongoc_client_t *client;
    mongoc_collection_t *chunks = take(r->s, r->bucket, "fs.chunks", &client);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc;
    if (mongoc_cursor_next(cur, &doc))
        rc = take_chunk(r, doc, k);
    else if (mongoc_cursor_error(cur, &e))
        rc = map_error(&e, "read chunk");
    else
        rc = damaged(r, k, "missing chunk");
    mongoc_cursor_destroy(cur);
    put(r->s, client, chunks);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

static long gfr_read(struct blob_reader *base, void *buf, size_t len)
{
    struct gfr *r = (struct gfr *)base;
    size_t done = 0;
    while (done < len && r->pos < r->meta.length) {
        int64_t k = r->pos / r->chunk_size;
        int rc = load_chunk(r, k);
        if (rc != BLOB_OK)
            return done > 0 ? (long)done : rc;
        size_t off = (size_t)(r->pos - k * r->chunk_size);
        size_t n = r->cur_len - off;
        if (n > len - done)
            n = len - done;
        memcpy((char *)buf + done, r->buf + off, n);
        done += n;
        r->pos += (int64_t)n;
    }
    return (long)done;
}

static int64_t gfr_seek(struct blob_reader *base, int64_t offset, int whence)
{
    struct gfr *r = (struct gfr *)base;
    int64_t to = blob_seek_target(r->pos, r->meta.length, offset, whence);
    if (to < 0)
        return to;
    r->pos = to;
    return r->pos;
}

static const struct blob_meta *gfr_meta(struct blob_reader *base)
{
    return &((struct gfr *)base)->meta;
}

static void gfr_close(struct blob_reader *base)
{
    struct gfr *r = (struct gfr *)base;
    free(r->buf);
    free(r);
}

static const struct blob_reader_ops gfr_ops = {gfr_read, gfr_seek, gfr_meta, gfr_close};

static int gf_open_read(void *h, enum blob_bucket b, const char *id, struct blob_reader **out)
{
    struct gfs *s = h;
    *out = NULL;
    if (!bucket_ok(b) || !blob_id_valid(id))
        return BLOB_EINVAL;
    struct gfr *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return BLOB_EIO;
    r->base.ops = &gfr_ops;
    r->s = s;
    r->bucket = b;
    r->cur_n = -1;
    bson_oid_init_from_string(&r->oid, id);
    int rc = find_file(s, b, &r->oid, &r->meta, &r->chunk_size);
    if (rc != BLOB_OK)
        goto fail;
    r->buf = malloc((size_t)r->chunk_size);
    if (r->buf == NULL) {
        rc = BLOB_EIO;
        goto fail;
    }
    *out = &r->base;
    return BLOB_OK;
fail:
    free(r->buf);
    free(r);
    return rc;
}

/* ---------- store ---------- */

static int gf_stat(void *h, enum blob_bucket b, const char *id, struct blob_meta *out)
{
    if (!bucket_ok(b) || !blob_id_valid(id))
        return BLOB_EINVAL;
    bson_oid_t oid;
    int32_t cs;
    bson_oid_init_from_string(&oid, id);
    return find_file(h, b, &oid, out, &cs);
}

static int gf_remove(void *h, enum blob_bucket b, const char *id)
{
    struct gfs *s = h;
    if (!bucket_ok(b) || !blob_id_valid(id))
        return BLOB_EINVAL;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
    bson_t reply;
    bson_error_t e;
    mongoc_client_t *client;
    mongoc_collection_t *coll = take(s, b, "fs.files", &client);
    int rc = BLOB_OK;
    /* the files document first, as the spec says: the file is gone for
     * readers at once, and chunks left by a failure here are gc's */
    if (!mongoc_collection_delete_one(coll, filter, NULL, &reply, &e)) {
        rc = map_error(&e, "remove");
    } else {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, &reply, "deletedCount") || bson_iter_as_int64(&it) == 0)
            rc = BLOB_ENOTFOUND;
    }
    bson_destroy(&reply);
    put(s, client, coll);
    bson_destroy(filter);
    if (rc == BLOB_OK)
        delete_chunks(s, b, &oid);
    return rc;
}

/* Does fs.files hold files_id? 1 yes, 0 no, or a negative BLOB_E* code. */
static int file_exists(mongoc_collection_t *files, const bson_value_t *files_id)
{
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "_id", files_id);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(files, &filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = mongoc_cursor_next(cur, &doc) ? 1 : 0;
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = map_error(&e, "gc");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

/* Was the newest chunk of files_id written at or after cutoff (the upload
 * may still be running)? 1 yes, 0 no, or a negative BLOB_E* code. */
static int recently_written(mongoc_collection_t *chunks, const bson_oid_t *files_id,
                            const bson_oid_t *cutoff)
{
    bson_t *filter = BCON_NEW("files_id", BCON_OID(files_id));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "sort", "{", "_id", BCON_INT32(-1), "}",
                            "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    bson_error_t e;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        rc = bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it) &&
             bson_oid_compare(bson_iter_oid(&it), cutoff) >= 0;
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = map_error(&e, "gc");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

/*
 * Removes the orphan chunks of one bucket. Walks the distinct files_id
 * values older than the cut-off one at a time (each step is one seek on
 * the {files_id, n} index), so its cost is the number of files, not of
 * chunks, and no reply holds more than one document.
 */
static int gc_bucket(struct gfs *s, enum blob_bucket b, const bson_oid_t *cutoff,
                     struct blobs_gc_stats *st)
{
    mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
    mongoc_collection_t *chunks = mongoc_client_get_collection(client, dbs[b], "fs.chunks");
    mongoc_collection_t *files = mongoc_client_get_collection(client, dbs[b], "fs.files");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "sort", "{", "files_id", BCON_INT32(1), "n",
                            BCON_INT32(1), "}", "projection", "{", "files_id", BCON_INT32(1), "}");
    bson_oid_t last;
    bool have_last = false;
    int rc = BLOB_OK;
    for (;;) {
        bson_t *filter = have_last ? BCON_NEW("files_id", "{", "$gt", BCON_OID(&last), "$lt",
                                              BCON_OID(cutoff), "}")
                                   : BCON_NEW("files_id", "{", "$lt", BCON_OID(cutoff), "}");
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, opts, NULL);
        bson_destroy(filter);
        const bson_t *doc;
        bson_iter_t it;
        bson_error_t e;
        if (!mongoc_cursor_next(cur, &doc)) {
            if (mongoc_cursor_error(cur, &e))
                rc = map_error(&e, "gc");
            mongoc_cursor_destroy(cur);
            break;
        }
        if (!bson_iter_init_find(&it, doc, "files_id") || !BSON_ITER_HOLDS_OID(&it)) {
            mongoc_cursor_destroy(cur); /* $lt on an ObjectId matches only ObjectIds */
            break;
        }
        bson_oid_copy(bson_iter_oid(&it), &last);
        have_last = true;
        mongoc_cursor_destroy(cur);
        bson_value_t id = {.value_type = BSON_TYPE_OID};
        bson_oid_copy(&last, &id.value.v_oid);
        int exists = file_exists(files, &id);
        if (exists == 0)
            exists = recently_written(chunks, &last, cutoff);
        if (exists < 0) {
            rc = exists;
            break;
        }
        if (exists)
            continue; /* committed, or an upload still writing */
        bson_t *del = BCON_NEW("files_id", BCON_OID(&last));
        bson_t reply;
        if (mongoc_collection_delete_many(chunks, del, NULL, &reply, &e)) {
            if (bson_iter_init_find(&it, &reply, "deletedCount"))
                st->chunks_removed += (long)bson_iter_as_int64(&it);
            st->files_removed++;
        } else {
            rc = map_error(&e, "gc");
        }
        bson_destroy(&reply);
        bson_destroy(del);
        if (rc != BLOB_OK)
            break;
    }
    bson_destroy(opts);
    mongoc_collection_destroy(files);
    mongoc_collection_destroy(chunks);
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

static int gf_gc(void *h, long older_than, struct blobs_gc_stats *out)
{
    struct gfs *s = h;
    struct blobs_gc_stats st = {0};
    /* An ObjectId (a files_id, a chunk's _id) made at second t is old enough
     * when now - t >= older_than, i.e. t < cut below. An ObjectId of cut with
     * the other bytes zero sorts before every id made at or after cut. */
    int64_t cut = (int64_t)time(NULL) - (older_than > 0 ? older_than : 0) + 1;
    if (cut < 0)
        cut = 0;
    uint8_t raw[12] = {0};
    raw[0] = (uint8_t)(cut >> 24);
    raw[1] = (uint8_t)(cut >> 16);
    raw[2] = (uint8_t)(cut >> 8);
    raw[3] = (uint8_t)cut;
    bson_oid_t cutoff;
    bson_oid_init_from_data(&cutoff, raw);
    int rc = BLOB_OK;
    for (int b = BLOB_VIDEOS; b <= BLOB_MP3S && rc == BLOB_OK; b++)
        rc = gc_bucket(s, (enum blob_bucket)b, &cutoff, &st);
    if (st.files_removed > 0)
        log_info("blob store: removed unfinished uploads",
                 json_pack("{s:i, s:i}", "files", (int)st.files_removed, "chunks",
                           (int)st.chunks_removed));
    if (out != NULL)
        *out = st;
    return rc;
}

static int gf_ping(void *h)
{
    struct gfs *s = h;
    mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t e;
    int rc = mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &e)
                 ? BLOB_OK
                 : map_error(&e, "ping");
    bson_destroy(cmd);
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

static void gf_free(void *h)
{
    struct gfs *s = h;
    if (s == NULL)
        return;
    mongoc_client_pool_destroy(s->pool);
    free(s);
}

static const struct blobs_ops gf_ops = {
    "gridfs", gf_open_write, gf_open_read, gf_stat, gf_remove, gf_gc, gf_ping, gf_free,
};

struct blobs *blobs_gridfs_new(const char *uri, char *err, size_t errlen)
{
    struct gfs *s = calloc(1, sizeof(*s));
    struct blobs *b = calloc(1, sizeof(*b));
    if (s == NULL || b == NULL) {
        snprintf(err, errlen, "blob store: out of memory");
        goto fail;
    }
    s->pool = mongo_pool_new(uri, err, errlen);
    if (s->pool == NULL)
        goto fail;
    atomic_init(&s->indexed[0], false);
    atomic_init(&s->indexed[1], false);
    b->ops = &gf_ops;
    b->h = s;
    return b;
fail:
    free(s);
    free(b);
    return NULL;
}
