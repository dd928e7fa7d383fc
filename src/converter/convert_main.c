/* `vid2mp3 convert IN OUT [--quality N|--bitrate K] [--threads N]`:
 * transcode.h on local files, for users and for the benchmark. OUT appears
 * whole or not at all: the MP3 is written to OUT.tmp and renamed. Inputs
 * of 60 s and more are encoded on --threads threads (default: every core;
 * 1: one pass). */
#include "converter/converter.h"

#include "converter/transcode.h"
#include "core/log.h"
#include "core/service.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USAGE "usage: vid2mp3 convert IN OUT [--quality N|--bitrate K] [--threads N]"

/* The constant bitrates MPEG-1 layer III allows, in kbit/s. */
static const int bitrates[] = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320};

static long file_read(void *cls, void *buf, size_t len)
{
    int fd = *(int *)cls;
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -1 : (long)n;
    }
}

static int64_t file_seek(void *cls, int64_t offset, int whence)
{
    int fd = *(int *)cls;
    if (whence == TRANSCODE_SEEK_SIZE) {
        struct stat st;
        return fstat(fd, &st) == 0 ? (int64_t)st.st_size : -1;
    }
    off_t r = lseek(fd, (off_t)offset, whence);
    return r < 0 ? -1 : (int64_t)r;
}

static int file_write(void *cls, const void *data, size_t len)
{
    int fd = *(int *)cls;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A whole decimal number in [min, max], or -1. */
static int parse_int(const char *s, int min, int max, int *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int usage(const char *why)
{
    fprintf(stderr, "vid2mp3: convert: %s (%s)\n", why, USAGE);
    return EXIT_USAGE;
}

/* Fills o from the options after IN and OUT; returns 0 or EXIT_USAGE
 * after printing why. */
static int parse_options(int argc, char **argv, struct transcode_options *o)
{
    int quality_set = 0;
    for (int i = 0; i < argc; i += 2) { /* NAME VALUE pairs */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--quality") == 0) {
            if (parse_int(v, 0, 9, &o->quality) != 0)
                return usage("--quality must be a whole number from 0 (best) to 9");
            quality_set = 1;
        } else if (strcmp(argv[i], "--bitrate") == 0) {
            int k = 0;
            if (parse_int(v, 1, 320, &k) == 0) {
                for (size_t j = 0; j < sizeof(bitrates) / sizeof(bitrates[0]); j++) {
                    if (bitrates[j] == k)
                        o->bitrate = k;
                }
            }
            if (o->bitrate == 0)
                return usage("--bitrate must be one of 32, 40, 48, 56, 64, 80, 96, 112, 128, "
                             "160, 192, 224, 256, 320");
        } else if (strcmp(argv[i], "--threads") == 0) {
            if (parse_int(v, 1, 256, &o->threads) != 0)
                return usage("--threads must be a whole number from 1 to 256");
        } else {
            return usage("unknown argument");
        }
    }
    if (quality_set && o->bitrate != 0)
        return usage("--quality and --bitrate exclude each other");
    return 0;
}

static void print_summary(const char *path, const struct transcode_options *o,
                          const struct transcode_result *r)
{
    char how[64];
    if (r->copied)
        snprintf(how, sizeof(how), "copied (not re-encoded)");
    else if (o->bitrate > 0)
        snprintf(how, sizeof(how), "encoded (CBR %d kbit/s)", o->bitrate);
    else
        snprintf(how, sizeof(how), "encoded (VBR quality %d)", o->quality);
    char segs[64] = "";
    if (r->segments > 0)
        snprintf(segs, sizeof(segs), " in %d segments on %d threads", r->segments, o->threads);
    printf("%s: %.2f s, %d Hz, %s, %lld bytes, %s%s, picture: %s\n", path, r->duration,
           r->sample_rate, r->channels == 1 ? "mono" : "stereo", (long long)r->bytes, how, segs,
           r->picture ? "yes" : "no");
}

int convert_main(int argc, char **argv)
{
    if (argc < 3 || argv[1][0] == '\0' || argv[2][0] == '\0')
        return usage("IN and OUT are required");
    const char *in_path = argv[1], *out_path = argv[2];
    struct transcode_options o;
    transcode_options_default(&o);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = cores > 1 ? (int)(cores < 256 ? cores : 256) : 1;
    int rc = parse_options(argc - 3, argv + 3, &o);
    if (rc != 0)
        return rc;

    /* libav's complaints about a damaged file would bury the one line of
     * the reason; LOG_LEVEL=warn shows them */
    enum log_level level = LOG_LEVEL_ERROR;
    const char *env = getenv("LOG_LEVEL");
    if (env != NULL && log_level_parse(env, &level) != 0)
        level = LOG_LEVEL_ERROR;
    log_set_level(level);
    log_set_service("convert");

    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", out_path) >= (int)sizeof(tmp)) {
        fprintf(stderr, "vid2mp3: convert: %s: file name too long\n", out_path);
        return EXIT_FAILURE_RUNTIME;
    }
    int in_fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        fprintf(stderr, "vid2mp3: convert: %s: %s\n", in_path, strerror(errno));
        return EXIT_FAILURE_RUNTIME;
    }
    int out_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        fprintf(stderr, "vid2mp3: convert: %s: %s\n", tmp, strerror(errno));
        close(in_fd);
        return EXIT_FAILURE_RUNTIME;
    }

    struct transcode_input in = {
        .read = file_read, .seek = file_seek, .cls = &in_fd, .filename = in_path};
    struct transcode_output out = {.write = file_write, .cls = &out_fd};
    struct transcode_result res;
    int trc = transcode(&in, &out, &o, &res);
    close(in_fd);
    const char *why = NULL;
    if (trc != TRANSCODE_OK)
        why = res.reason;
    else if (fsync(out_fd) != 0)
        why = strerror(errno);
    if (close(out_fd) != 0 && why == NULL)
        why = strerror(errno);
    if (why == NULL && rename(tmp, out_path) != 0)
        why = strerror(errno);
    if (why != NULL) {
        unlink(tmp);
        fprintf(stderr, "vid2mp3: convert: %s\n", why);
        return EXIT_FAILURE_RUNTIME;
    }
    print_summary(out_path, &o, &res);
    return EXIT_OK;
}
