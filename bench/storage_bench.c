/*
 * storage_bench: write and read throughput of one blob through the blobs
 * interface, and the process's peak RSS while doing each (for
 * bench/storage.sh). Usage: storage_bench fs DIR|gridfs URI MIB.
 * Streams generated data in 64 KiB pieces, like the gateway does; prints
 * one line of key=value pairs. Exits 1 on any failure.
 */
#include "store/blobs.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIECE (64 * 1024)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM in KiB; reset_peak() starts a new peak (Linux 4.0+). */
static long peak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f != NULL) {
        fputs("5", f);
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long mib = argc == 4 ? strtol(argv[3], &end, 10) : 0;
    if (argc != 4 || end == argv[3] || *end != '\0' || mib <= 0 ||
        (strcmp(argv[1], "fs") != 0 && strcmp(argv[1], "gridfs") != 0)) {
        fprintf(stderr, "usage: %s fs DIR|gridfs URI MIB\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    char err[256] = "";
    struct blobs *s = strcmp(argv[1], "fs") == 0 ? blobs_fs_new(argv[2], err, sizeof(err))
                                                 : blobs_gridfs_new(argv[2], err, sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "storage_bench: %s\n", err);
        return 1;
    }
    static unsigned char buf[PIECE];
    randombytes_buf(buf, sizeof(buf));
    struct blob_meta m = {0}, got;
    snprintf(m.owner, sizeof(m.owner), "bench@example.com");
    snprintf(m.filename, sizeof(m.filename), "bench.bin");
    int64_t total = (int64_t)mib * 1024 * 1024;
    int rc = 1;

    long base = peak_kib();
    reset_peak();
    double t0 = now_s();
    struct blob_writer *w = NULL;
    if (blobs_open_write(s, BLOB_VIDEOS, &m, &w) != BLOB_OK)
        goto out;
    for (int64_t off = 0; off < total; off += PIECE) {
        memcpy(buf, &off, sizeof(off)); /* no two pieces alike */
        if (blob_write(w, buf, PIECE) != BLOB_OK) {
            blob_abort(w);
            goto out;
        }
    }
    if (blob_commit(w, &got) != BLOB_OK)
        goto out;
    double tw = now_s() - t0;
    long wpeak = peak_kib();

    reset_peak();
    t0 = now_s();
    struct blob_reader *r = NULL;
    if (blobs_open_read(s, BLOB_VIDEOS, got.id, &r) != BLOB_OK)
        goto out;
    int64_t n = 0;
    long k;
    while ((k = blob_read(r, buf, PIECE)) > 0)
        n += k;
    blob_close(r);
    double tr = now_s() - t0;
    long rpeak = peak_kib();
    blobs_remove(s, BLOB_VIDEOS, got.id);
    if (k < 0 || n != total)
        goto out;
    printf("backend=%s size_mib=%ld write_mbs=%.0f read_mbs=%.0f rss_before_kib=%ld "
           "writer_peak_rss_kib=%ld reader_peak_rss_kib=%ld\n",
           argv[1], mib, (double)total / 1e6 / tw, (double)total / 1e6 / tr, base, wpeak, rpeak);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "storage_bench: failed\n");
    blobs_free(s);
    return rc;
}
