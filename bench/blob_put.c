/*
 * blob_put: stores standard input as one MP3 blob, for bench/upload.sh to
 * download through the gateway before a converter exists to make one.
 * Usage: blob_put fs DIR|gridfs URI OWNER < DATA. The blob goes in bucket
 * BLOB_MP3S with owner OWNER and file name "x.mp4" (the video's name, as
 * the converter will record it). Prints the new id, then a tab and the
 * length in bytes. Exits 1 on any failure, leaving no blob behind.
 */
#include "store/blobs.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define PIECE (64 * 1024)

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "fs") != 0 && strcmp(argv[1], "gridfs") != 0)) {
        fprintf(stderr, "usage: %s fs DIR|gridfs URI OWNER < DATA\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    char err[256] = "";
    struct blobs *s = strcmp(argv[1], "fs") == 0 ? blobs_fs_new(argv[2], err, sizeof(err))
                                                 : blobs_gridfs_new(argv[2], err, sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "blob_put: %s\n", err);
        return 1;
    }
    static unsigned char buf[PIECE];
    struct blob_meta m = {0}, got;
    snprintf(m.owner, sizeof(m.owner), "%s", argv[3]);
    snprintf(m.filename, sizeof(m.filename), "x.mp4");
    snprintf(m.content_type, sizeof(m.content_type), "audio/mpeg");
    int rc = 1, brc;
    struct blob_writer *w = NULL;
    brc = blobs_open_write(s, BLOB_MP3S, &m, &w);
    if (brc != BLOB_OK)
        goto out;
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
        brc = blob_write(w, buf, n);
        if (brc != BLOB_OK)
            goto out;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "blob_put: reading standard input failed\n");
        goto out;
    }
    brc = blob_commit(w, &got);
    w = NULL; /* commit frees it, whatever the outcome */
    if (brc != BLOB_OK)
        goto out;
    printf("%s\t%lld\n", got.id, (long long)got.length);
    rc = 0;
out:
    blob_abort(w);
    if (rc != 0 && brc != BLOB_OK)
        fprintf(stderr, "blob_put: %s\n", blobs_strerror(brc));
    blobs_free(s);
    return rc;
}
