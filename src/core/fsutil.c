/* fsutil: see fsutil.h. */
#include "core/fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsutil_mkdirs(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -errno;
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int read_secret(int fd, char *out, size_t outlen)
{
    char buf[80];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return -errno;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n != 64)
        return -EINVAL;
    for (int i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)buf[i]))
            return -EINVAL;
    }
    buf[n] = '\0';
    snprintf(out, outlen, "%s", buf);
    return 0;
}

/* fsyncs the directory holding path, so a new entry in it survives a crash. */
static int sync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int fsutil_secret_load_or_create(const char *path, char *out, size_t outlen)
{
    if (outlen < 65)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        int rc = read_secret(fd, out, outlen);
        close(fd);
        return rc;
    }
    if (errno != ENOENT)
        return -errno;

    /* Written whole to a temporary file, then linked into place: nobody ever
     * sees a partial secret, even after kill -9, and of two processes
     * starting at once the second link fails and that one reads the winner's. */
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%08x", path, (long)getpid(),
                 (unsigned)randombytes_random()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    unsigned char raw[32];
    char hex[66];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    hex[64] = '\n';
    int rc = 0;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, hex, 65);
    if (n != 65)
        rc = n < 0 ? -errno : -EIO;
    else if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && link(tmp, path) != 0)
        rc = -errno;
    unlink(tmp);
    if (rc == -EEXIST) { /* another process won: use its secret */
        sodium_memzero(hex, sizeof(hex));
        return fsutil_secret_load_or_create(path, out, outlen);
    }
    if (rc == 0)
        rc = sync_parent(path);
    if (rc == 0) {
        hex[64] = '\0';
        snprintf(out, outlen, "%s", hex);
    }
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%08x", path, (long)getpid(),
                 (unsigned)randombytes_random()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int rc = 0;
    const char *p = data;
    while (rc == 0 && len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = n < 0 ? -errno : -EIO;
        else {
            p += n;
            len -= (size_t)n;
        }
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return sync_parent(path);
}
