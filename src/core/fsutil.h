/* fsutil: small file-system helpers shared by the embedded backends. */
#ifndef VID2MP3_FSUTIL_H
#define VID2MP3_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p: creates path and its missing parents with mode. Returns 0, or
 * -errno (an existing non-directory is -ENOTDIR). */
int fsutil_mkdirs(const char *path, mode_t mode);

/*
 * Reads the secret kept in file path, or, when there is none, creates the
 * file (mode 0600) holding 64 hex digits of a new 256-bit random secret:
 * written to a temporary file, fsync'd and linked into place, so the file
 * is never seen partial, even after kill -9, and two processes starting at
 * once end with the same secret. Either way out gets the secret as text
 * (outlen >= 65). Returns 0, or -errno; a file that is not 64 hex digits
 * is -EINVAL.
 */
int fsutil_secret_load_or_create(const char *path, char *out, size_t outlen);

/*
 * Writes data to path so that path is always either its old self or all of
 * data, even after kill -9 or power loss: a temporary file beside it,
 * fsync'd, renamed over path, and the directory fsync'd. mode applies to a
 * new file. Returns 0, or -errno (the temporary file is removed).
 */
int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

#endif
