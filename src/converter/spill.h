/*
 * spill: a seekable byte buffer that stays in memory up to a bound and
 * then moves to an unlinked temporary file, for output that must be
 * rewritten before it is sent: the MP3 muxer seeks back to the start to
 * fill in the Xing/LAME header once the last frame is known.
 *
 * Invariants: the content is bytes [0, size); writing past size fills the
 * gap with zeros; once the content has moved to the file, memory holds
 * none of it. Not thread-safe: one spill per conversion.
 */
#ifndef VID2MP3_SPILL_H
#define VID2MP3_SPILL_H

#include <stddef.h>
#include <stdint.h>

struct AVIOContext;
struct spill;

/* Memory kept before the content moves to a file. */
#define SPILL_MEM_MAX_DEFAULT (16 * 1024 * 1024)

/*
 * A new empty spill. The temporary file is created in tmp_dir (NULL:
 * $TMPDIR, else /tmp) only when the content grows past mem_max bytes; it
 * has no name (O_TMPFILE, or mkstemp then unlink), so nothing is left
 * behind even after kill -9. size_max > 0 bounds the content: a write
 * past it fails with -EFBIG. Returns NULL when out of memory.
 */
struct spill *spill_new(const char *tmp_dir, size_t mem_max, int64_t size_max);

/* Frees the memory and closes the file. NULL is a no-op. */
void spill_free(struct spill *s);

/* Writes len bytes at the current position and moves past them. Returns
 * 0, -EFBIG past size_max, -ENOMEM, or -errno of the temporary file. */
int spill_write(struct spill *s, const void *buf, size_t len);

/* Reads up to len bytes from the current position: returns how many (0
 * at the end) or -errno. */
long spill_read(struct spill *s, void *buf, size_t len);

/* Moves the position (SEEK_SET, SEEK_CUR, SEEK_END; it may go past the
 * end). Returns the new position, or -EINVAL for a negative one. */
int64_t spill_seek(struct spill *s, int64_t offset, int whence);

/* Bytes of content. */
int64_t spill_size(const struct spill *s);

/* The first error a write returned (sticky: an AVIOContext hides it
 * until it is flushed), or 0. */
int spill_error(const struct spill *s);

/* Whether the content has moved to the temporary file (for tests). */
int spill_on_disk(const struct spill *s);

/*
 * Hands the whole content, from the start and in order, to write in
 * pieces of at most 64 KiB; stops at the first non-zero return. Returns
 * 0, -errno when reading the file failed, or the callback's non-zero
 * value. Moves the position.
 */
int spill_drain(struct spill *s, int (*write)(void *cls, const void *data, size_t len), void *cls);

/*
 * A seekable, writable AVIOContext over s (for a muxer's pb), with its
 * own buffer. s must outlive it. Free with spill_avio_free() after
 * avio_flush(). Returns NULL when out of memory.
 */
struct AVIOContext *spill_avio_new(struct spill *s);
void spill_avio_free(struct AVIOContext **pb);

#endif
