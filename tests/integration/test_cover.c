/*
 * Integration: cover_extract (converter/cover.h) on short clips the ffmpeg
 * command-line tool makes at the start (videos, audio with cover art,
 * audio only, playlists), read through transcode_input callbacks over
 * memory. The JPEGs it returns are checked with ffprobe.
 * Usage: test_cover (needs /usr/bin/ffmpeg and /usr/bin/ffprobe)
 */
#include "harness.h"

#include <libavformat/avformat.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "converter/cover.h"

static char *dir; /* the clips, made once for the whole group */

/* A file in memory read through the callbacks; a read fails once
 * fail_after bytes have been delivered (-1: never). */
struct mem {
    unsigned char *data;
    size_t len;
    int64_t pos;
    long fail_after;
    size_t delivered;
};

static long mem_read(void *cls, void *buf, size_t len)
{
    struct mem *m = cls;
    if (m->fail_after >= 0 && m->delivered >= (size_t)m->fail_after)
        return -1;
    if (m->pos >= (int64_t)m->len)
        return 0;
    size_t n = m->len - (size_t)m->pos;
    if (n > len)
        n = len;
    if (m->fail_after >= 0 && n > (size_t)m->fail_after - m->delivered)
        n = (size_t)m->fail_after - m->delivered;
    memcpy(buf, m->data + m->pos, n);
    m->pos += (int64_t)n;
    m->delivered += n;
    return (long)n;
}

static int64_t mem_seek(void *cls, int64_t offset, int whence)
{
    struct mem *m = cls;
    int64_t to;
    switch (whence) {
    case TRANSCODE_SEEK_SIZE:
        return (int64_t)m->len;
    case SEEK_SET:
        to = offset;
        break;
    case SEEK_CUR:
        to = m->pos + offset;
        break;
    case SEEK_END:
        to = (int64_t)m->len + offset;
        break;
    default:
        return -1;
    }
    if (to < 0)
        return -1;
    m->pos = to;
    return to;
}

static char *path_of(const char *name)
{
    return th_path(dir, name);
}

/* The whole file (caller frees); fails the test when it cannot be read. */
static unsigned char *slurp(const char *name, size_t *len)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", p);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    unsigned char *data = malloc((size_t)n);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(p);
    *len = (size_t)n;
    return data;
}

static void write_file(const char *name, const void *data, size_t len)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(p);
}

struct asked {
    int count;   /* times the stop callback was called */
    int stop_at; /* it says stop at this call (0: never) */
};

static int stop_cb(void *cls)
{
    struct asked *a = cls;
    return ++a->count == a->stop_at || (a->stop_at > 0 && a->count > a->stop_at);
}

struct how {
    const char *format; /* the demuxer to pass, by name; NULL: cover_extract probes */
    bool ask;           /* pass a stop callback */
    int stop_at;        /* the call at which it says stop (0: never) */
    int asked;          /* out: times it was called */
    size_t delivered;   /* out: bytes the source delivered */
};

/* cover_extract on the named file, its first len bytes when len is not 0,
 * with reads failing after fail_after bytes (-1: never), as h says (may
 * be NULL). */
static int extract_how(const char *name, size_t len, long fail_after, struct how *h,
                       struct cover *c)
{
    struct mem m = {.fail_after = fail_after};
    m.data = slurp(name, &m.len);
    if (len != 0 && len < m.len)
        m.len = len;
    struct transcode_input in = {.read = mem_read, .seek = mem_seek, .cls = &m, .filename = name};
    const AVInputFormat *fmt = NULL;
    struct asked a = {.stop_at = h != NULL ? h->stop_at : 0};
    if (h != NULL && h->format != NULL) {
        fmt = av_find_input_format(h->format);
        if (fmt == NULL)
            fail_msg("no demuxer %s in this libavformat", h->format);
    }
    int rc = cover_extract(&in, fmt, h != NULL && h->ask ? stop_cb : NULL, &a, c);
    free(m.data);
    if (h != NULL) {
        h->asked = a.count;
        h->delivered = m.delivered;
    }
    return rc;
}

static int extract(const char *name, size_t len, long fail_after, struct cover *c)
{
    return extract_how(name, len, fail_after, NULL, c);
}

/* ffmpeg with these arguments (the output last), its log in the test dir. */
static void ffmpeg(const char *const args[])
{
    char *log = path_of("ffmpeg.log");
    th_ffmpeg(args, NULL, log);
    free(log);
}

/* ffprobe's view of a JPEG the test wrote: mjpeg of w x h. */
static void assert_jpeg(const struct cover *c, const char *name, int w, int h)
{
    assert_non_null(c->data);
    assert_true(c->len > 2);
    assert_int_equal(c->data[0], 0xFF);
    assert_int_equal(c->data[1], 0xD8);
    assert_string_equal(c->mime, "image/jpeg");
    assert_int_equal(c->width, w);
    assert_int_equal(c->height, h);
    write_file(name, c->data, c->len);
    char *jpg = path_of(name), *log = path_of("ffprobe.log");
    remove(log);
    char *argv[] = {"/usr/bin/ffprobe", "-v", "error",     "-show_streams", "-of",
                    "default=nw=1",     jpg,  (char *)NULL};
    assert_int_equal(th_run(argv, NULL, NULL, log), 0);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    char want[64];
    assert_non_null(strstr(out, "codec_name=mjpeg\n"));
    snprintf(want, sizeof(want), "\nwidth=%d\n", w);
    if (strstr(out, want) == NULL)
        fail_msg("%s: want width %d, ffprobe says:\n%s", name, w, out);
    snprintf(want, sizeof(want), "\nheight=%d\n", h);
    if (strstr(out, want) == NULL)
        fail_msg("%s: want height %d, ffprobe says:\n%s", name, h, out);
    free(jpg);
    free(log);
}

static int make_clips(void **state)
{
    (void)state;
    dir = th_tmpdir();
    /* ffmpeg's inputs and outputs below are named relative to dir */
    assert_int_equal(chdir(dir), 0);
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25:duration=3", "-f",
                            "lavfi", "-i", "sine=frequency=440:duration=3", "-c:v", "libx264",
                            "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "wide.mp4", NULL});
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2", "-c:v",
                            "libx264", "-pix_fmt", "yuv420p", "small.mp4", NULL});
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "testsrc=size=360x640:rate=25:duration=2", "-c:v",
                            "libx264", "-pix_fmt", "yuv420p", "portrait.mp4", NULL});
    ffmpeg(
        (const char *[]){"-f", "lavfi", "-i", "sine=frequency=440:duration=2", "tone.wav", NULL});
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "color=red:s=300x300", "-frames:v", "1",
                            "cover.png", NULL});
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "testsrc=size=400x300", "-frames:v", "1",
                            "-pix_fmt", "yuvj420p", "cover.jpg", NULL});
    ffmpeg((const char *[]){"-f", "lavfi", "-i", "color=blue:s=200x100", "-frames:v", "1",
                            "cover.bmp", NULL});
    ffmpeg((const char *[]){"-i", "tone.wav", "-i", "cover.png", "-map", "0", "-map", "1", "-c:a",
                            "libmp3lame", "-c:v", "copy", "-disposition:v", "attached_pic",
                            "-id3v2_version", "3", "png.mp3", NULL});
    ffmpeg((const char *[]){"-i", "tone.wav", "-i", "cover.jpg", "-map", "0", "-map", "1", "-c:a",
                            "aac", "-c:v", "copy", "-disposition:v", "attached_pic", "jpg.m4a",
                            NULL});
    ffmpeg((const char *[]){"-i", "tone.wav", "-i", "cover.bmp", "-map", "0", "-map", "1", "-c:a",
                            "libmp3lame", "-c:v", "copy", "-disposition:v", "attached_pic",
                            "-id3v2_version", "3", "bmp.mp3", NULL});
    static const char text[] = "These are not the frames you are looking for.\n"
                               "Just some notes, saved with a video's name.\n";
    write_file("notes.txt", text, sizeof(text) - 1);
    static const char concat[] = "ffconcat version 1.0\nfile wide.mp4\n";
    write_file("list.ffconcat", concat, sizeof(concat) - 1);
    static const char hls[] = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                              "#EXTINF:2.0,\nwide.mp4\n#EXT-X-ENDLIST\n";
    write_file("list.m3u8", hls, sizeof(hls) - 1);
    return 0;
}

static int remove_clips(void **state)
{
    (void)state;
    assert_int_equal(chdir("/"), 0);
    th_rmtree(dir);
    free(dir);
    return 0;
}

/* 1280x720 -> 600 px wide, the height kept in proportion and even. */
static void video_frame_scaled(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("wide.mp4", 0, -1, &c), 1);
    assert_jpeg(&c, "wide.jpg", 600, 338);
    cover_free(&c);
    assert_null(c.data);
}

static void small_video_not_enlarged(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("small.mp4", 0, -1, &c), 1);
    assert_jpeg(&c, "small.jpg", 320, 240);
    cover_free(&c);
}

static void portrait_video(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("portrait.mp4", 0, -1, &c), 1);
    assert_jpeg(&c, "portrait.jpg", 338, 600);
    cover_free(&c);
}

/* JPEG and PNG cover art comes back byte for byte. */
static void attached_png_as_is(void **state)
{
    (void)state;
    size_t len;
    unsigned char *png = slurp("cover.png", &len);
    struct cover c;
    assert_int_equal(extract("png.mp3", 0, -1, &c), 1);
    assert_string_equal(c.mime, "image/png");
    assert_int_equal(c.width, 300);
    assert_int_equal(c.height, 300);
    assert_int_equal(c.len, len);
    assert_memory_equal(c.data, png, len);
    cover_free(&c);
    free(png);
}

static void attached_jpeg_as_is(void **state)
{
    (void)state;
    size_t len;
    unsigned char *jpg = slurp("cover.jpg", &len);
    struct cover c;
    assert_int_equal(extract("jpg.m4a", 0, -1, &c), 1);
    assert_string_equal(c.mime, "image/jpeg");
    assert_int_equal(c.width, 400);
    assert_int_equal(c.height, 300);
    assert_int_equal(c.len, len);
    assert_memory_equal(c.data, jpg, len);
    cover_free(&c);
    free(jpg);
}

/* Other picture formats are re-encoded as JPEG. */
static void attached_bmp_reencoded(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("bmp.mp3", 0, -1, &c), 1);
    assert_jpeg(&c, "bmp.jpg", 200, 100);
    cover_free(&c);
}

static void no_picture(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("tone.wav", 0, -1, &c), 0);
    assert_null(c.data);
    assert_int_equal(c.len, 0);
    assert_int_equal(extract("notes.txt", 0, -1, &c), 0);
    assert_null(c.data);
    /* the index of an MP4 written without faststart is at its end */
    size_t len;
    free(slurp("wide.mp4", &len));
    assert_int_equal(extract("wide.mp4", len / 2, -1, &c), 0);
    assert_null(c.data);
}

/* A source that fails is an I/O error (transient), not "no picture". */
static void input_fails(void **state)
{
    (void)state;
    struct cover c;
    assert_int_equal(extract("wide.mp4", 0, 4096, &c), TRANSCODE_EIO);
    assert_null(c.data);
    assert_int_equal(extract("png.mp3", 0, 100, &c), TRANSCODE_EIO);
    assert_null(c.data);
    assert_int_equal(extract("tone.wav", 0, 0, &c), TRANSCODE_EIO);
    assert_null(c.data);
}

/* The caller's format is used as it is: no probe, the same picture. */
static void format_given(void **state)
{
    (void)state;
    struct cover a, b;
    struct how h = {.format = "mp4"};
    assert_int_equal(extract_how("wide.mp4", 0, -1, &h, &a), 1);
    assert_int_equal(extract("wide.mp4", 0, -1, &b), 1);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    cover_free(&a);
    cover_free(&b);
}

/* Playlists and scripts are refused before their demuxer reads a byte:
 * given as the format, nothing is read at all; probed, they are not on
 * the allow-list. */
static void playlists_refused(void **state)
{
    (void)state;
    struct cover c;
    struct how h = {.format = "concat"};
    assert_int_equal(extract_how("list.ffconcat", 0, -1, &h, &c), 0);
    assert_null(c.data);
    assert_int_equal(h.delivered, 0);
    h = (struct how){.format = "hls"};
    assert_int_equal(extract_how("list.m3u8", 0, -1, &h, &c), 0);
    assert_int_equal(h.delivered, 0);
    assert_int_equal(extract("list.ffconcat", 0, -1, &c), 0);
    assert_null(c.data);
    assert_int_equal(extract("list.m3u8", 0, -1, &c), 0);
    assert_null(c.data);
}

/* The caller's stop ends the extraction, early or late, with no picture. */
static void stopped(void **state)
{
    (void)state;
    struct cover c;
    struct how h = {.format = "mp4", .ask = true};
    assert_int_equal(extract_how("wide.mp4", 0, -1, &h, &c), 1);
    cover_free(&c);
    int all = h.asked;
    assert_true(all > 2);
    h = (struct how){.ask = true, .stop_at = 1};
    assert_int_equal(extract_how("wide.mp4", 0, -1, &h, &c), TRANSCODE_ECANCELED);
    assert_null(c.data);
    assert_int_equal(h.delivered, 0);
    h = (struct how){.format = "mp4", .ask = true, .stop_at = all / 2};
    assert_int_equal(extract_how("wide.mp4", 0, -1, &h, &c), TRANSCODE_ECANCELED);
    assert_null(c.data);
}

static void *extract_wide(void *arg)
{
    struct cover *c = arg;
    intptr_t rc = extract("wide.mp4", 0, -1, c);
    return (void *)rc;
}

/* No shared state: two extractions at once give the same pictures. */
static void concurrent(void **state)
{
    (void)state;
    struct cover c[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, extract_wide, &c[i]), 0);
    for (int i = 0; i < 2; i++) {
        void *rc;
        assert_int_equal(pthread_join(t[i], &rc), 0);
        assert_int_equal((intptr_t)rc, 1);
    }
    assert_int_equal(c[0].len, c[1].len);
    assert_memory_equal(c[0].data, c[1].data, c[0].len);
    cover_free(&c[0]);
    cover_free(&c[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(video_frame_scaled),
        cmocka_unit_test(small_video_not_enlarged),
        cmocka_unit_test(portrait_video),
        cmocka_unit_test(attached_png_as_is),
        cmocka_unit_test(attached_jpeg_as_is),
        cmocka_unit_test(attached_bmp_reencoded),
        cmocka_unit_test(no_picture),
        cmocka_unit_test(input_fails),
        cmocka_unit_test(format_given),
        cmocka_unit_test(playlists_refused),
        cmocka_unit_test(stopped),
        cmocka_unit_test(concurrent),
    };
    return cmocka_run_group_tests_name("cover", tests, make_clips, remove_clips);
}
