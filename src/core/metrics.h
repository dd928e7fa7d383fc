/*
 * metrics: Prometheus text exposition for the whole process.
 *
 * Modules own their numbers (usually atomics) and register a writer that
 * prints them; GET /metrics on any service port renders every registered
 * writer, so in `vid2mp3 all` one scrape sees all four services. The
 * registry is process-wide and thread-safe.
 */
#ifndef VID2MP3_METRICS_H
#define VID2MP3_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*metrics_writer_fn)(FILE *out, void *ctx);

/* Adds a writer. Returns 0, or -1 when the registry is full. ctx must stay
 * valid until metrics_unregister(ctx). */
int metrics_register(metrics_writer_fn fn, void *ctx);

/* Removes every writer registered with ctx; returns once no render uses it. */
void metrics_unregister(void *ctx);

/* Renders all writers plus process metrics into a new buffer (caller frees
 * with free()); *len gets its length. Returns NULL when out of memory. */
char *metrics_render(size_t *len);

/* Latency histogram with fixed bucket bounds (seconds), lock-free. */
#define METRICS_BUCKETS 16
struct metrics_histogram {
    atomic_uint_fast64_t buckets[METRICS_BUCKETS]; /* non-cumulative counts */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

/* Records one observation of us microseconds. */
void metrics_histogram_observe(struct metrics_histogram *h, uint64_t us);

/* Writes h as the _bucket/_sum/_count series of name, with labels (a
 * preformatted `k="v",...` list, may be empty). */
void metrics_histogram_write(FILE *out, const char *name, const char *labels,
                             const struct metrics_histogram *h);

#endif
