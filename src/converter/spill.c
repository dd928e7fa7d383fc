/* spill: see spill.h. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "converter/spill.h"

#include <errno.h>
#include <fcntl.h>
#include <libavformat/avio.h>
#include <libavutil/mem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define AVIO_BUFFER (64 * 1024)

struct spill {
    unsigned char *mem; /* the content while it is in memory */
    size_t cap;
    size_t mem_max;
    int fd; /* the temporary file once the content moved there, else -1 */
    int64_t size;
    int64_t pos;
    int64_t size_max;
    int error;
    char dir[512];
};

struct spill *spill_new(const char *tmp_dir, size_t mem_max, int64_t size_max)
{
    struct spill *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->fd = -1;
    s->mem_max = mem_max;
    s->size_max = size_max;
    if (tmp_dir == NULL || tmp_dir[0] == '\0')
        tmp_dir = getenv("TMPDIR");
    if (tmp_dir == NULL || tmp_dir[0] == '\0')
        tmp_dir = "/tmp";
    snprintf(s->dir, sizeof(s->dir), "%s", tmp_dir);
    return s;
}

void spill_free(struct spill *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->mem);
    free(s);
}

/* A file with no name in s->dir: O_TMPFILE where the file system has it,
 * else mkstemp and unlink at once. Returns the descriptor or -errno. */
static int open_nameless(const struct spill *s)
{
    int fd;
#ifdef O_TMPFILE
    fd = open(s->dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char path[600];
    int n = snprintf(path, sizeof(path), "%s/vid2mp3-spill-XXXXXX", s->dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    unlink(path);
    return fd;
}

static int pwrite_all(int fd, const unsigned char *p, size_t len, int64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Moves the content from memory to a new temporary file. */
static int move_to_file(struct spill *s)
{
    int fd = open_nameless(s);
    if (fd < 0)
        return fd;
    int rc = pwrite_all(fd, s->mem, (size_t)s->size, 0);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    free(s->mem);
    s->mem = NULL;
    s->cap = 0;
    s->fd = fd;
    return 0;
}

/* Makes memory hold at least need bytes, zeroing what is new. */
static int grow(struct spill *s, size_t need)
{
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap > 0 ? s->cap : CHUNK;
    while (cap < need)
        cap *= 2;
    if (cap > s->mem_max)
        cap = s->mem_max;
    unsigned char *p = realloc(s->mem, cap);
    if (p == NULL)
        return -ENOMEM;
    memset(p + s->cap, 0, cap - s->cap);
    s->mem = p;
    s->cap = cap;
    return 0;
}

static int write_at(struct spill *s, const void *buf, size_t len)
{
    if (len > (size_t)INT64_MAX - (size_t)s->pos)
        return -EFBIG;
    int64_t end = s->pos + (int64_t)len;
    if (s->size_max > 0 && end > s->size_max)
        return -EFBIG;
    if (s->fd < 0 && (uint64_t)end > s->mem_max) {
        int rc = move_to_file(s);
        if (rc != 0)
            return rc;
    }
    if (s->fd >= 0) {
        int rc = pwrite_all(s->fd, buf, len, s->pos);
        if (rc != 0)
            return rc;
    } else {
        int rc = grow(s, (size_t)end);
        if (rc != 0)
            return rc;
        /* a gap left by a seek past the end is already zeros (grow) */
        memcpy(s->mem + s->pos, buf, len);
    }
    s->pos = end;
    if (end > s->size)
        s->size = end;
    return 0;
}

int spill_write(struct spill *s, const void *buf, size_t len)
{
    if (s->error != 0)
        return s->error;
    int rc = write_at(s, buf, len);
    if (rc != 0)
        s->error = rc;
    return rc;
}

long spill_read(struct spill *s, void *buf, size_t len)
{
    if (s->pos >= s->size)
        return 0;
    if ((int64_t)len > s->size - s->pos)
        len = (size_t)(s->size - s->pos);
    if (len > CHUNK * 16)
        len = CHUNK * 16;
    if (s->fd < 0) {
        memcpy(buf, s->mem + s->pos, len);
        s->pos += (int64_t)len;
        return (long)len;
    }
    for (;;) {
        ssize_t n = pread(s->fd, buf, len, (off_t)s->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        s->pos += n;
        return (long)n;
    }
}

int64_t spill_seek(struct spill *s, int64_t offset, int whence)
{
    int64_t base;
    switch (whence) {
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = s->pos;
        break;
    case SEEK_END:
        base = s->size;
        break;
    default:
        return -EINVAL;
    }
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0)
        return -EINVAL;
    s->pos = base + offset;
    return s->pos;
}

int64_t spill_size(const struct spill *s)
{
    return s->size;
}

int spill_error(const struct spill *s)
{
    return s->error;
}

int spill_on_disk(const struct spill *s)
{
    return s->fd >= 0;
}

int spill_drain(struct spill *s, int (*write)(void *cls, const void *data, size_t len), void *cls)
{
    spill_seek(s, 0, SEEK_SET);
    if (s->fd < 0) {
        /* in memory: hand it over without a copy */
        for (int64_t off = 0; off < s->size; off += CHUNK) {
            size_t n = s->size - off < CHUNK ? (size_t)(s->size - off) : CHUNK;
            int rc = write(cls, s->mem + off, n);
            if (rc != 0)
                return rc;
        }
        s->pos = s->size;
        return 0;
    }
    unsigned char *buf = malloc(CHUNK);
    if (buf == NULL)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        long n = spill_read(s, buf, CHUNK);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        rc = write(cls, buf, (size_t)n);
        if (rc != 0)
            break;
    }
    free(buf);
    return rc;
}

/* ---- AVIOContext ------------------------------------------------------ */

#if LIBAVFORMAT_VERSION_MAJOR >= 61
static int avio_write_cb(void *opaque, const uint8_t *buf, int len)
#else
static int avio_write_cb(void *opaque, uint8_t *buf, int len)
#endif
{
    int rc = spill_write(opaque, buf, (size_t)len);
    return rc < 0 ? rc : len; /* -errno is AVERROR(errno) */
}

static int avio_read_cb(void *opaque, uint8_t *buf, int len)
{
    long n = spill_read(opaque, buf, (size_t)len);
    if (n == 0)
        return AVERROR_EOF;
    return (int)n;
}

static int64_t avio_seek_cb(void *opaque, int64_t offset, int whence)
{
    struct spill *s = opaque;
    if (whence & AVSEEK_SIZE)
        return s->size;
    return spill_seek(s, offset, whence & ~AVSEEK_FORCE);
}

struct AVIOContext *spill_avio_new(struct spill *s)
{
    unsigned char *buf = av_malloc(AVIO_BUFFER);
    if (buf == NULL)
        return NULL;
    AVIOContext *pb =
        avio_alloc_context(buf, AVIO_BUFFER, 1, s, avio_read_cb, avio_write_cb, avio_seek_cb);
    if (pb == NULL)
        av_free(buf);
    return pb;
}

void spill_avio_free(struct AVIOContext **pb)
{
    if (pb == NULL || *pb == NULL)
        return;
    av_freep(&(*pb)->buffer);
    avio_context_free(pb);
}
