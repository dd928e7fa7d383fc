/*
 * blobs_fs: the embedded blobs backend, plain files under one directory.
 *
 * Layout, per bucket (videos/, mp3s/):
 *   tmp/ID.tmp, tmp/ID.json.tmp   uploads and sidecars being written
 *   XY/ID                         the content (XY: the id's last two digits)
 *   XY/ID.json                    the metadata sidecar
 * A file exists for readers exactly when its sidecar does: commit fsyncs
 * the content, renames it into XY/, fsyncs XY/, then writes the sidecar the
 * same way (temporary file, fsync, rename, fsync of XY/). So after kill -9
 * or power loss a file is either whole with its sidecar or invisible, and
 * what is left behind (temporary files, content without a sidecar) is what
 * blobs_gc() removes. remove() unlinks the sidecar first for the same
 * reason. Readers hold an open descriptor, so a file removed while it is
 * being read stays readable to them.
 *
 * Ids come from blob_id_new(); the fan-out uses the last two digits (the
 * ObjectId counter) because the first ones are the time and barely vary.
 */
#include "store/blobs.h"

#include "core/fsutil.h"
#include "core/sha256.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SIDECAR_MAX 8192 /* bytes; ours are well under 2 KiB */

static const char *const bucket_dirs[] = {"videos", "mp3s"};

struct fsb {
    char dir[4096];
};

struct fsw {
    struct blob_writer base;
    struct fsb *s;
    enum blob_bucket bucket;
    int fd;
    int err; /* first failure; later writes return it */
    char tmp[4200];
    struct blob_meta meta;
    struct sha256 sha;
};

struct fsr {
    struct blob_reader base;
    int fd;
    int64_t pos;
    struct blob_meta meta;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail_errno(const char *op, const char *path, int e)
{
    log_error(
        "blob store: file operation failed",
        json_pack("{s:s, s:o, s:s}", "op", op, "path", log_text(path), "detail", strerror(e)));
    return BLOB_EIO;
}

/* path = DIR/bucket/sub/name (sub and name may be NULL). */
static int make_path(char *out, size_t len, const struct fsb *s, enum blob_bucket b,
                     const char *sub, const char *name, const char *suffix)
{
    int n = snprintf(out, len, "%s/%s%s%s%s%s%s", s->dir, bucket_dirs[b], sub ? "/" : "",
                     sub ? sub : "", name ? "/" : "", name ? name : "", suffix ? suffix : "");
    return n < 0 || (size_t)n >= len ? BLOB_EINVAL : BLOB_OK;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("open directory", path, errno);
    int rc = BLOB_OK;
    if (fsync(fd) != 0)
        rc = fail_errno("fsync directory", path, errno);
    close(fd);
    return rc;
}

/* Creates path when missing; a new directory's parent is fsync'd so the
 * entry survives a crash along with what is renamed into it. */
static int ensure_dir(const char *path, const char *parent)
{
    if (mkdir(path, 0700) == 0)
        return fsync_dir(parent);
    return errno == EEXIST ? BLOB_OK : fail_errno("mkdir", path, errno);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void fan_of(const char *id, char fan[3])
{
    fan[0] = id[BLOB_ID_LEN - 2];
    fan[1] = id[BLOB_ID_LEN - 1];
    fan[2] = '\0';
}

/* ---------- metadata sidecar ---------- */

static int sidecar_write(struct fsb *s, enum blob_bucket b, const struct blob_meta *m)
{
    char tmp[4200], dst[4200], fandir[4200], fan[3];
    char *text = NULL;
    int fd = -1, rc;
    fan_of(m->id, fan);
    if ((rc = make_path(tmp, sizeof(tmp), s, b, "tmp", m->id, ".json.tmp")) != BLOB_OK ||
        (rc = make_path(dst, sizeof(dst), s, b, fan, m->id, ".json")) != BLOB_OK ||
        (rc = make_path(fandir, sizeof(fandir), s, b, fan, NULL, NULL)) != BLOB_OK)
        return rc;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "id", m->id, "owner",
                          m->owner, "filename", m->filename, "content_type", m->content_type,
                          "job_id", m->job_id, "created_at", (json_int_t)m->created_at, "length",
                          (json_int_t)m->length, "sha256", m->sha256);
    if (j == NULL)
        return BLOB_EINVAL; /* only when a string is not UTF-8, which open_write checked */
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text == NULL) {
        rc = BLOB_EIO;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fail_errno("create sidecar", tmp, errno);
        goto out;
    }
    int e = write_all(fd, text, strlen(text));
    if (e == 0 && fsync(fd) != 0)
        e = -errno;
    if (e != 0) {
        rc = fail_errno("write sidecar", tmp, -e);
        goto out;
    }
    if (rename(tmp, dst) != 0) {
        rc = fail_errno("rename sidecar", dst, errno);
        goto out;
    }
    rc = fsync_dir(fandir);
    if (rc != BLOB_OK)
        unlink(dst); /* the caller removes the content: no sidecar may outlive it */
out:
    if (fd >= 0)
        close(fd);
    if (rc != BLOB_OK)
        unlink(tmp);
    free(text);
    return rc;
}

static void copy_field(char *dst, size_t len, json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(dst, len, "%s", v != NULL ? v : "");
}

static int sidecar_read(struct fsb *s, enum blob_bucket b, const char *id, struct blob_meta *out)
{
    char path[4200], fan[3];
    char buf[SIDECAR_MAX + 1];
    fan_of(id, fan);
    int rc = make_path(path, sizeof(path), s, b, fan, id, ".json");
    if (rc != BLOB_OK)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? BLOB_ENOTFOUND : fail_errno("open sidecar", path, errno);
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail_errno("read sidecar", path, errno);
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rc != BLOB_OK)
        return rc;
    json_error_t je;
    json_t *j = json_loadb(buf, len, 0, &je);
    json_t *length = json_object_get(j, "length"), *created = json_object_get(j, "created_at");
    if (j == NULL || !json_is_integer(length) || !json_is_integer(created) ||
        json_integer_value(length) < 0) {
        log_error("blob store: damaged sidecar", json_pack("{s:o}", "path", log_text(path)));
        json_decref(j);
        return BLOB_EIO;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    copy_field(out->owner, sizeof(out->owner), j, "owner");
    copy_field(out->filename, sizeof(out->filename), j, "filename");
    copy_field(out->content_type, sizeof(out->content_type), j, "content_type");
    copy_field(out->job_id, sizeof(out->job_id), j, "job_id");
    copy_field(out->sha256, sizeof(out->sha256), j, "sha256");
    out->length = json_integer_value(length);
    out->created_at = json_integer_value(created);
    json_decref(j);
    return BLOB_OK;
}

/* ---------- writer ---------- */

static void fsw_free(struct fsw *w)
{
    if (w->fd >= 0)
        close(w->fd);
    sha256_free(&w->sha);
    free(w);
}

static int fsw_write(struct blob_writer *base, const void *data, size_t len)
{
    struct fsw *w = (struct fsw *)base;
    if (w->err != BLOB_OK)
        return w->err;
    if (len == 0)
        return BLOB_OK;
    int e = write_all(w->fd, data, len);
    if (e != 0)
        return w->err = fail_errno("write", w->tmp, -e);
    sha256_update(&w->sha, data, len);
    w->meta.length += (int64_t)len;
    return BLOB_OK;
}

static void fsw_abort(struct blob_writer *base)
{
    struct fsw *w = (struct fsw *)base;
    unlink(w->tmp);
    fsw_free(w);
}

static int fsw_commit(struct blob_writer *base, struct blob_meta *out)
{
    struct fsw *w = (struct fsw *)base;
    char fandir[4200], dst[4200], fan[3];
    int rc = w->err;
    if (rc != BLOB_OK)
        goto fail;
    fan_of(w->meta.id, fan);
    if ((rc = make_path(fandir, sizeof(fandir), w->s, w->bucket, fan, NULL, NULL)) != BLOB_OK ||
        (rc = make_path(dst, sizeof(dst), w->s, w->bucket, fan, w->meta.id, NULL)) != BLOB_OK)
        goto fail;
    /* the mtime is what gc ages by: a slow upload that commits now must not
     * look old to a sweep that runs between the two renames below */
    if (futimens(w->fd, NULL) != 0 || fsync(w->fd) != 0) {
        rc = fail_errno("fsync", w->tmp, errno);
        goto fail;
    }
    close(w->fd);
    w->fd = -1;
    sha256_hex(&w->sha, w->meta.sha256);
    w->meta.created_at = now_ms();

    char bdir[4200];
    if ((rc = make_path(bdir, sizeof(bdir), w->s, w->bucket, NULL, NULL, NULL)) != BLOB_OK ||
        (rc = ensure_dir(fandir, bdir)) != BLOB_OK)
        goto fail;
    if (rename(w->tmp, dst) != 0) {
        rc = fail_errno("rename", dst, errno);
        goto fail;
    }
    /* the content's entry is durable before the sidecar can be */
    if ((rc = fsync_dir(fandir)) != BLOB_OK ||
        (rc = sidecar_write(w->s, w->bucket, &w->meta)) != BLOB_OK) {
        unlink(dst);
        goto fail;
    }
    if (out != NULL)
        *out = w->meta;
    log_info("blob stored", json_pack("{s:s, s:s, s:I}", "bucket", bucket_dirs[w->bucket], "id",
                                      w->meta.id, "length", (json_int_t)w->meta.length));
    fsw_free(w);
    return BLOB_OK;
fail:
    unlink(w->tmp);
    fsw_free(w);
    return rc;
}

static const struct blob_writer_ops fsw_ops = {fsw_write, fsw_commit, fsw_abort};

static int fs_open_write(void *h, enum blob_bucket b, const struct blob_meta *meta,
                         struct blob_writer **out)
{
    struct fsb *s = h;
    *out = NULL;
    if ((b != BLOB_VIDEOS && b != BLOB_MP3S) || blob_meta_check(meta) != BLOB_OK)
        return BLOB_EINVAL;
    struct fsw *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return BLOB_EIO;
    w->base.ops = &fsw_ops;
    w->s = s;
    w->bucket = b;
    w->fd = -1;
    memcpy(w->meta.owner, meta->owner, sizeof(w->meta.owner));
    memcpy(w->meta.filename, meta->filename, sizeof(w->meta.filename));
    memcpy(w->meta.content_type, meta->content_type, sizeof(w->meta.content_type));
    memcpy(w->meta.job_id, meta->job_id, sizeof(w->meta.job_id));
    blob_id_new(w->meta.id);
    memcpy(w->base.id, w->meta.id, sizeof(w->base.id));
    int rc = sha256_init(&w->sha) == 0 ? BLOB_OK : BLOB_EIO;
    if (rc != BLOB_OK)
        goto fail;
    rc = make_path(w->tmp, sizeof(w->tmp), s, b, "tmp", w->meta.id, ".tmp");
    if (rc != BLOB_OK)
        goto fail;
    /* O_EXCL: an id is never reused, so an existing file is a fault */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        rc = fail_errno("create", w->tmp, errno);
        goto fail;
    }
    *out = &w->base;
    return BLOB_OK;
fail:
    fsw_free(w);
    return rc;
}

/* ---------- reader ---------- */

static long fsr_read(struct blob_reader *base, void *buf, size_t len)
{
    struct fsr *r = (struct fsr *)base;
    int64_t left = r->meta.length - r->pos;
    if (left <= 0 || len == 0)
        return 0;
    if ((int64_t)len > left)
        len = (size_t)left;
    if (len > (size_t)BLOB_CHUNK_SIZE * 64)
        len = (size_t)BLOB_CHUNK_SIZE * 64; /* the result must fit a long everywhere */
    for (;;) {
        ssize_t n = pread(r->fd, buf, len, (off_t)r->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("read", r->meta.id, errno);
        if (n == 0) {
            log_error("blob store: file shorter than its metadata",
                      json_pack("{s:s, s:I}", "id", r->meta.id, "at", (json_int_t)r->pos));
            return BLOB_EIO;
        }
        r->pos += n;
        return (long)n;
    }
}

static int64_t fsr_seek(struct blob_reader *base, int64_t offset, int whence)
{
    struct fsr *r = (struct fsr *)base;
    int64_t to = blob_seek_target(r->pos, r->meta.length, offset, whence);
    if (to < 0)
        return to;
    r->pos = to;
    return r->pos;
}

static const struct blob_meta *fsr_meta(struct blob_reader *base)
{
    return &((struct fsr *)base)->meta;
}

static void fsr_close(struct blob_reader *base)
{
    struct fsr *r = (struct fsr *)base;
    close(r->fd);
    free(r);
}

static const struct blob_reader_ops fsr_ops = {fsr_read, fsr_seek, fsr_meta, fsr_close};

static int fs_open_read(void *h, enum blob_bucket b, const char *id, struct blob_reader **out)
{
    struct fsb *s = h;
    char path[4200], fan[3];
    *out = NULL;
    if ((b != BLOB_VIDEOS && b != BLOB_MP3S) || !blob_id_valid(id))
        return BLOB_EINVAL;
    struct fsr *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return BLOB_EIO;
    r->base.ops = &fsr_ops;
    r->fd = -1;
    int rc = sidecar_read(s, b, id, &r->meta);
    if (rc != BLOB_OK)
        goto fail;
    fan_of(id, fan);
    if ((rc = make_path(path, sizeof(path), s, b, fan, id, NULL)) != BLOB_OK)
        goto fail;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        /* removed between the two opens: gone, not damaged */
        rc = errno == ENOENT ? BLOB_ENOTFOUND : fail_errno("open", path, errno);
        goto fail;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0 || st.st_size != r->meta.length) {
        log_error("blob store: file size differs from its metadata",
                  json_pack("{s:s, s:I}", "id", id, "length", (json_int_t)r->meta.length));
        rc = BLOB_EIO;
        goto fail;
    }
    *out = &r->base;
    return BLOB_OK;
fail:
    if (r->fd >= 0)
        close(r->fd);
    free(r);
    return rc;
}

/* ---------- store ---------- */

static int fs_stat(void *h, enum blob_bucket b, const char *id, struct blob_meta *out)
{
    if ((b != BLOB_VIDEOS && b != BLOB_MP3S) || !blob_id_valid(id))
        return BLOB_EINVAL;
    return sidecar_read(h, b, id, out);
}

static int fs_remove(void *h, enum blob_bucket b, const char *id)
{
    struct fsb *s = h;
    char side[4200], data[4200], fandir[4200], fan[3];
    if ((b != BLOB_VIDEOS && b != BLOB_MP3S) || !blob_id_valid(id))
        return BLOB_EINVAL;
    fan_of(id, fan);
    int rc;
    if ((rc = make_path(side, sizeof(side), s, b, fan, id, ".json")) != BLOB_OK ||
        (rc = make_path(data, sizeof(data), s, b, fan, id, NULL)) != BLOB_OK ||
        (rc = make_path(fandir, sizeof(fandir), s, b, fan, NULL, NULL)) != BLOB_OK)
        return rc;
    /* the sidecar first: once it is gone the file is gone for everyone,
     * and content left by a crash here is gc's */
    if (unlink(side) != 0)
        return errno == ENOENT ? BLOB_ENOTFOUND : fail_errno("unlink", side, errno);
    if ((rc = fsync_dir(fandir)) != BLOB_OK)
        return rc;
    if (unlink(data) != 0 && errno != ENOENT)
        fail_errno("unlink", data, errno); /* the file is removed all the same */
    return BLOB_OK;
}

static bool is_old(const struct stat *st, time_t now, long older_than)
{
    return (long long)(now - st->st_mtime) >= (long long)older_than;
}

/* Removes old temporary files in tmp/. */
static void gc_tmp(struct fsb *s, enum blob_bucket b, time_t now, long older_than,
                   struct blobs_gc_stats *st)
{
    char dir[4200];
    if (make_path(dir, sizeof(dir), s, b, "tmp", NULL, NULL) != BLOB_OK)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    struct stat sb;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            is_old(&sb, now, older_than) && unlinkat(dirfd(d), e->d_name, 0) == 0)
            st->chunks_removed++;
    }
    closedir(d);
}

/* Removes old content files without a sidecar in one fan-out directory. */
static void gc_fan(const char *dir, time_t now, long older_than, struct blobs_gc_stats *st)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    struct stat sb;
    char side[BLOB_ID_LEN + 8];
    while ((e = readdir(d)) != NULL) {
        if (!blob_id_valid(e->d_name))
            continue;                         /* sidecars, dot entries, anything not ours */
        memcpy(side, e->d_name, BLOB_ID_LEN); /* valid: exactly BLOB_ID_LEN bytes */
        memcpy(side + BLOB_ID_LEN, ".json", sizeof(".json"));
        if (fstatat(dirfd(d), side, &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
            continue;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            is_old(&sb, now, older_than) && unlinkat(dirfd(d), e->d_name, 0) == 0)
            st->files_removed++;
    }
    closedir(d);
}

static int fs_gc(void *h, long older_than, struct blobs_gc_stats *out)
{
    struct fsb *s = h;
    struct blobs_gc_stats st = {0};
    time_t now = time(NULL);
    for (int b = BLOB_VIDEOS; b <= BLOB_MP3S; b++) {
        gc_tmp(s, (enum blob_bucket)b, now, older_than, &st);
        char bdir[4200], fandir[4200];
        if (make_path(bdir, sizeof(bdir), s, (enum blob_bucket)b, NULL, NULL, NULL) != BLOB_OK)
            continue;
        DIR *d = opendir(bdir);
        if (d == NULL)
            continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
                continue;
            if (make_path(fandir, sizeof(fandir), s, (enum blob_bucket)b, e->d_name, NULL, NULL) ==
                BLOB_OK)
                gc_fan(fandir, now, older_than, &st);
        }
        closedir(d);
    }
    if (st.files_removed > 0 || st.chunks_removed > 0)
        log_info("blob store: removed unfinished uploads",
                 json_pack("{s:i, s:i}", "files", (int)st.files_removed, "temp_files",
                           (int)st.chunks_removed));
    if (out != NULL)
        *out = st;
    return BLOB_OK;
}

static int fs_ping(void *h)
{
    struct fsb *s = h;
    return access(s->dir, R_OK | W_OK | X_OK) == 0 ? BLOB_OK : BLOB_EUNAVAIL;
}

static void fs_free(void *h)
{
    free(h);
}

static const struct blobs_ops fs_ops = {
    "fs", fs_open_write, fs_open_read, fs_stat, fs_remove, fs_gc, fs_ping, fs_free,
};

struct blobs *blobs_fs_new(const char *dir, char *err, size_t errlen)
{
    struct blobs *b = NULL;
    struct fsb *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "blob store: out of memory");
        goto fail;
    }
    /* room for "/videos/tmp/ID.json.tmp" within the paths built later */
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(s->dir) - 64) {
        snprintf(err, errlen, "blob store: directory name too long");
        goto fail;
    }
    memcpy(s->dir, dir, n + 1);
    int e = fsutil_mkdirs(dir, 0700);
    if (e != 0) {
        snprintf(err, errlen, "blob store: cannot create %s: %s", dir, strerror(-e));
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        char bdir[4200], tdir[4200];
        if (make_path(bdir, sizeof(bdir), s, (enum blob_bucket)i, NULL, NULL, NULL) != BLOB_OK ||
            make_path(tdir, sizeof(tdir), s, (enum blob_bucket)i, "tmp", NULL, NULL) != BLOB_OK ||
            ensure_dir(bdir, s->dir) != BLOB_OK || ensure_dir(tdir, bdir) != BLOB_OK) {
            snprintf(err, errlen, "blob store: cannot create the directories under %s", dir);
            goto fail;
        }
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errlen, "blob store: out of memory");
        goto fail;
    }
    b->ops = &fs_ops;
    b->h = s;
    return b;
fail:
    free(s);
    return NULL;
}
