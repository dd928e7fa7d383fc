/*
 * Integration: `vid2mp3 convert` (converter/transcode.h) on a corpus the
 * ffmpeg command-line tool makes at the start, in the test's own
 * directory (nothing binary is committed). Each MP3 is checked with
 * ffprobe (codec, duration against the source's audio, channels, rate,
 * title, picture) and by reading its first frame (Xing/Info header).
 *
 * Truncated files: a faststart MP4 cut at 60% still has its index, so
 * what can be read is converted (like the ffmpeg command line does); an
 * MP4 with its index at the end, cut, has no index and fails cleanly.
 *
 * Usage: test_convert PATH/TO/vid2mp3 (needs /usr/bin/ffmpeg, ffprobe)
 */
#include "harness.h"

#include "converter/spill.h"
#include "converter/transcode.h"

#include <limits.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *bin;
static char *dir; /* the corpus, made once for the whole group */

static char *path_of(const char *name)
{
    return th_path(dir, name);
}

static void spew(const char *name, const void *data, size_t len)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(p);
}

/* ffmpeg with these arguments (the output last), its log in the test dir. */
static void ffmpeg(const char *const args[])
{
    char *log = path_of("ffmpeg.log");
    th_ffmpeg(args, NULL, log);
    free(log);
}

/* ffprobe's JSON for a file (caller decrefs). */
static json_t *probe(const char *name)
{
    char *p = path_of(name);
    char *log = path_of("ffprobe.json");
    unlink(log); /* th_run appends */
    char *argv[] = {
        "/usr/bin/ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", p, NULL};
    int rc = th_run(argv, NULL, NULL, log);
    char *out = th_slurp(log, NULL);
    if (rc != 0 || out == NULL)
        fail_msg("ffprobe %s: exit %d: %s", name, rc, out != NULL ? out : "");
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (j == NULL)
        fail_msg("ffprobe %s: not JSON: %s", name, out);
    free(out);
    free(log);
    free(p);
    return j;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return strtod(json_string_value(v), NULL);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* The first stream of this type in ffprobe's JSON (borrowed), or NULL;
 * with attached == 1, only attached pictures, with 0 none of them. */
static json_t *stream_of(json_t *j, const char *type, int attached)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "streams"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "codec_type")), type) != 0)
            continue;
        json_t *d = json_object_get(json_object_get(s, "disposition"), "attached_pic");
        if (attached < 0 || (json_integer_value(d) != 0) == attached)
            return s;
    }
    return NULL;
}

static const char *tag(json_t *o, const char *key)
{
    json_t *tags = json_object_get(o, "tags");
    const char *k;
    json_t *v;
    json_object_foreach(tags, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return json_string_value(v);
    }
    return NULL;
}

/* The duration of the audio the converter will pick (the first default
 * one: the first audio stream in this corpus), else the file's. */
static double source_duration(const char *name)
{
    json_t *j = probe(name);
    json_t *a = stream_of(j, "audio", -1);
    double d = a != NULL ? num(a, "duration") : -1;
    if (d <= 0)
        d = num(json_object_get(j, "format"), "duration");
    json_decref(j);
    return d;
}

/* "Xing" (VBR) or "Info" (CBR) at its place in the first MPEG audio frame
 * after the ID3v2 tag, or "" when there is no such header. */
static const char *xing_tag(const char *name)
{
    char *p = path_of(name);
    static char found[5];
    th_xing_tag(p, found);
    free(p);
    return found;
}

/* ---- the corpus ------------------------------------------------------- */

#define V "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"
#define SINE(rate) "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=" rate
#define X264 "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"

static int make_corpus(void **state)
{
    (void)state;
    dir = th_tmpdir();
    /* ffmpeg writes the corpus by bare names */
    if (chdir(dir) != 0)
        fail_msg("chdir %s failed", dir);
    ffmpeg((const char *[]){V, SINE("44100"), "-t", "3", X264, "-c:a", "aac", "-ac", "2",
                            "index-at-end.mp4", NULL});
    ffmpeg((const char *[]){V, SINE("44100"), "-t", "3", X264, "-c:a", "aac", "-ac", "2",
                            "-movflags", "+faststart", "faststart.mp4", NULL});
    ffmpeg((const char *[]){V, SINE("48000"), "-t", "3", X264, "-c:a", "libopus", "-ac", "2",
                            "opus.mkv", NULL});
    ffmpeg((const char *[]){V, SINE("44100"), "-t", "3", "-c:v", "libvpx", "-deadline", "realtime",
                            "-cpu-used", "8", "-b:v", "200k", "-c:a", "libvorbis", "-ac", "2",
                            "vorbis.webm", NULL});
    ffmpeg((const char *[]){V, SINE("48000"), "-t", "3", X264, "-c:a", "pcm_s16le", "-ac", "2",
                            "pcm.mov", NULL});
    ffmpeg((const char *[]){V, SINE("44100"), "-t", "3", "-c:v", "mpeg4", "-c:a", "libmp3lame",
                            "-ac", "2", "mp3.avi", NULL});
    ffmpeg((const char *[]){V, SINE("48000"), "-t", "3", X264, "-c:a", "aac", "-ac", "6",
                            "surround.mp4", NULL});
    ffmpeg(
        (const char *[]){SINE("96000"), "-t", "3", "-c:a", "flac", "-ac", "2", "hires.flac", NULL});
    /* two tracks: the first (default) mono 44.1 kHz, the second stereo
     * 48 kHz, so the output tells which one was converted */
    ffmpeg((const char *[]){V,      SINE("44100"),
                            "-f",   "lavfi",
                            "-i",   "sine=frequency=880:sample_rate=48000",
                            "-t",   "3",
                            "-map", "0:v",
                            "-map", "1:a",
                            "-map", "2:a",
                            X264,   "-c:a",
                            "aac",  "-ac:a:0",
                            "1",    "-ac:a:1",
                            "2",    "two-tracks.mp4",
                            NULL});
    ffmpeg((const char *[]){SINE("44100"), "-t", "3", "-c:a", "aac", "-metadata",
                            "title=A Song Title", "-metadata", "artist=Some Artist", "-metadata",
                            "album=Some Album", "song.m4a", NULL});
    ffmpeg((const char *[]){V, "-t", "3", X264, "silent.mp4", NULL});

    /* cut at 60% */
    const char *whole[] = {"faststart.mp4", "index-at-end.mp4"};
    const char *cut[] = {"cut-faststart.mp4", "cut-index-at-end.mp4"};
    for (int i = 0; i < 2; i++) {
        char *p = path_of(whole[i]);
        size_t len;
        char *d = th_slurp(p, &len);
        assert_non_null(d);
        spew(cut[i], d, len * 6 / 10);
        free(d);
        free(p);
    }
    const char *text = "This is not a video.\nJust some words in a file.\n";
    spew("notes.txt", text, strlen(text));
    spew("empty.mp4", "", 0);
    return 0;
}

static int remove_corpus(void **state)
{
    (void)state;
    if (chdir("/") != 0)
        return -1;
    th_rmtree(dir);
    free(dir);
    return 0;
}

/* ---- running the command ---------------------------------------------- */

/* Runs `vid2mp3 convert IN OUT [a1 a2]`; returns the status, the combined
 * output in *out (caller frees). */
static int convert(const char *in, const char *out, const char *a1, const char *a2, char **log)
{
    char *ip = path_of(in), *op = path_of(out), *lp = path_of("convert.log");
    char *argv[] = {(char *)bin, "convert", ip, op, (char *)a1, (char *)a2, NULL};
    unlink(lp); /* th_run appends */
    int rc = th_run(argv, NULL, NULL, lp);
    *log = th_slurp(lp, NULL);
    if (*log == NULL)
        *log = strdup("");
    free(ip);
    free(op);
    free(lp);
    return rc;
}

static int exists(const char *name)
{
    char *p = path_of(name);
    struct stat st;
    int r = stat(p, &st) == 0;
    free(p);
    return r;
}

struct good {
    const char *in;
    int rate, channels;
    const char *title;
    int picture; /* a video frame or attached picture is expected */
    int copied;
    const char *artist;
};

static const struct good goods[] = {
    {"index-at-end.mp4", 44100, 2, "index-at-end", 1, 0, NULL},
    {"faststart.mp4", 44100, 2, "faststart", 1, 0, NULL},
    {"opus.mkv", 48000, 2, "opus", 1, 0, NULL},
    {"vorbis.webm", 44100, 2, "vorbis", 1, 0, NULL},
    {"pcm.mov", 48000, 2, "pcm", 1, 0, NULL},
    {"mp3.avi", 44100, 2, "mp3", 1, 1, NULL},
    {"surround.mp4", 48000, 2, "surround", 1, 0, NULL},
    {"hires.flac", 48000, 2, "hires", 0, 0, NULL},
    {"two-tracks.mp4", 44100, 1, "two-tracks", 1, 0, NULL},
    {"song.m4a", 44100, 1, "A Song Title", 0, 0, "Some Artist"},
};

/* The checks every converted file gets; returns ffprobe's JSON. */
static json_t *check_mp3(const char *out, const struct good *g, double want_duration)
{
    json_t *j = probe(out);
    json_t *fmt = json_object_get(j, "format");
    assert_string_equal(json_string_value(json_object_get(fmt, "format_name")), "mp3");
    json_t *a = stream_of(j, "audio", -1);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a, "codec_name")), "mp3");
    assert_int_equal((int)num(a, "sample_rate"), g->rate);
    assert_int_equal((int)num(a, "channels"), g->channels);
    double d = num(fmt, "duration");
    if (want_duration > 0 && (d < want_duration - 0.1 || d > want_duration + 0.1))
        fail_msg("%s: duration %.3f s, source's audio %.3f s", out, d, want_duration);
    const char *title = tag(fmt, "title");
    if (title == NULL || strcmp(title, g->title) != 0)
        fail_msg("%s: title '%s', want '%s'", out, title ? title : "(none)", g->title);
    if (g->artist != NULL) {
        const char *artist = tag(fmt, "artist");
        assert_non_null(artist);
        assert_string_equal(artist, g->artist);
    }
    return j;
}

static void converts(void **state)
{
    const struct good *g = *state;
    char out[128];
    snprintf(out, sizeof(out), "%s.mp3", g->in);
    char *log;
    int rc = convert(g->in, out, NULL, NULL, &log);
    if (rc != 0)
        fail_msg("convert %s: exit %d: %s", g->in, rc, log);
    /* the summary line */
    assert_non_null(strstr(log, g->copied ? "copied" : "encoded (VBR quality 2)"));
    assert_non_null(strstr(log, g->picture ? "picture: yes" : "picture: no"));
    free(log);
    json_t *j = check_mp3(out, g, source_duration(g->in));
    /* VBR: "Xing"; the copied source (mp3.avi) is CBR: "Info" */
    assert_string_equal(xing_tag(out), g->copied ? "Info" : "Xing");
    /* the picture: a frame of the video or the attached picture */
    json_t *pic = stream_of(j, "video", 1);
    if (g->picture && pic == NULL)
        fail_msg("%s: no attached picture", out);
    if (!g->picture && pic != NULL)
        fail_msg("%s: a picture where none was expected", out);
    if (pic != NULL) {
        const char *codec = json_string_value(json_object_get(pic, "codec_name"));
        assert_true(strcmp(codec, "mjpeg") == 0 || strcmp(codec, "png") == 0);
        assert_string_equal(tag(pic, "comment"), "Cover (front)");
    }
    json_decref(j);
    snprintf(out, sizeof(out), "%s.mp3.tmp", g->in);
    assert_false(exists(out));
}

struct bad {
    const char *in;
    const char *reason;
};

static const struct bad bads[] = {
    {"silent.mp4", "the video has no audio track"},
    {"cut-index-at-end.mp4", "not a video or audio file that can be read"},
    {"notes.txt", "not a video or audio file that can be read"},
    {"empty.mp4", "not a video or audio file that can be read"},
    {"no-such-file.mp4", "No such file"},
};

static void fails(void **state)
{
    const struct bad *b = *state;
    char *log;
    int rc = convert(b->in, "failed.mp3", NULL, NULL, &log);
    if (rc != 1 || strstr(log, "vid2mp3: convert: ") == NULL || strstr(log, b->reason) == NULL)
        fail_msg("convert %s: exit %d (want 1, '%s'): %s", b->in, rc, b->reason, log);
    free(log);
    assert_false(exists("failed.mp3"));
    assert_false(exists("failed.mp3.tmp"));
}

/* A faststart MP4 cut at 60% keeps its index: what can be read is
 * converted, and the MP3 is shorter than the source. */
static void cut_faststart_converts_the_rest(void **state)
{
    (void)state;
    char *log;
    int rc = convert("cut-faststart.mp4", "cut.mp3", NULL, NULL, &log);
    if (rc != 0)
        fail_msg("convert cut-faststart.mp4: exit %d: %s", rc, log);
    free(log);
    json_t *j = probe("cut.mp3");
    double d = num(json_object_get(j, "format"), "duration");
    if (d < 0.5 || d > source_duration("faststart.mp4") - 0.3)
        fail_msg("cut.mp3: duration %.3f s", d);
    json_decref(j);
    assert_string_equal(xing_tag("cut.mp3"), "Xing");
}

static void cbr_and_vbr(void **state)
{
    (void)state;
    static const struct good g = {"faststart.mp4", 44100, 2, "faststart", 1, 0, NULL};
    char *log;
    int rc = convert("faststart.mp4", "cbr.mp3", "--bitrate", "128", &log);
    if (rc != 0 || strstr(log, "encoded (CBR 128 kbit/s)") == NULL)
        fail_msg("convert --bitrate 128: exit %d: %s", rc, log);
    free(log);
    json_t *j = check_mp3("cbr.mp3", &g, source_duration("faststart.mp4"));
    double br = num(stream_of(j, "audio", -1), "bit_rate");
    if (br < 126000 || br > 130000)
        fail_msg("cbr.mp3: bit_rate %.0f, want 128000", br);
    json_decref(j);
    assert_string_equal(xing_tag("cbr.mp3"), "Info");

    rc = convert("faststart.mp4", "q0.mp3", "--quality", "0", &log);
    if (rc != 0 || strstr(log, "encoded (VBR quality 0)") == NULL)
        fail_msg("convert --quality 0: exit %d: %s", rc, log);
    free(log);
    rc = convert("faststart.mp4", "q9.mp3", "--quality", "9", &log);
    assert_int_equal(rc, 0);
    free(log);
    assert_string_equal(xing_tag("q0.mp3"), "Xing");
    assert_string_equal(xing_tag("q9.mp3"), "Xing");
    struct stat s0, s9;
    char *p0 = path_of("q0.mp3"), *p9 = path_of("q9.mp3");
    assert_int_equal(stat(p0, &s0), 0);
    assert_int_equal(stat(p9, &s9), 0);
    if (s0.st_size <= s9.st_size)
        fail_msg("quality 0 (%lld bytes) not larger than quality 9 (%lld bytes)",
                 (long long)s0.st_size, (long long)s9.st_size);
    free(p0);
    free(p9);
}

static void usage_errors(void **state)
{
    (void)state;
    const char *args[][2] = {
        {"--quality", "10"}, {"--quality", "two"}, {"--bitrate", "100"},
        {"--bitrate", NULL}, {"--loud", "1"},
    };
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        char *log;
        int rc = convert("faststart.mp4", "usage.mp3", args[i][0], args[i][1], &log);
        if (rc != 2 || strstr(log, "usage: vid2mp3 convert") == NULL)
            fail_msg("convert %s %s: exit %d (want 2): %s", args[i][0],
                     args[i][1] ? args[i][1] : "", rc, log);
        free(log);
    }
    char *lp = path_of("convert.log");
    char *argv[] = {(char *)bin, "convert", "only-in.mp4", NULL};
    assert_int_equal(th_run(argv, NULL, NULL, lp), 2);
    free(lp);
    assert_false(exists("usage.mp3"));
}

/* ---- the function itself, in process ----------------------------------- */

/* A file in memory read through the callbacks; reads fail once fail_after
 * bytes have been delivered (-1: never). */
struct mem {
    char *data;
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
    memcpy(buf, m->data + m->pos, n);
    m->pos += (int64_t)n;
    m->delivered += n;
    return (long)n;
}

static int64_t mem_seek(void *cls, int64_t offset, int whence)
{
    struct mem *m = cls;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : (int64_t)m->len;
    if (whence == TRANSCODE_SEEK_SIZE)
        return (int64_t)m->len;
    if (base + offset < 0)
        return -1;
    m->pos = base + offset;
    return m->pos;
}

struct sink {
    size_t bytes;
    int calls;
    int fail;
};

static int sink_write(void *cls, const void *data, size_t len)
{
    struct sink *k = cls;
    (void)data;
    k->calls++;
    k->bytes += len;
    return k->fail;
}

struct watch {
    int calls;
    double last;
    atomic_int *cancel_at_first;
};

static void on_progress(void *cls, double f)
{
    struct watch *w = cls;
    assert_true(f >= 0 && f <= 1);
    w->calls++;
    w->last = f;
    if (w->cancel_at_first != NULL)
        atomic_store(w->cancel_at_first, 1);
}

static int run_api(const char *name, long fail_after, struct transcode_options *o, struct sink *k,
                   struct transcode_result *res)
{
    char *p = path_of(name);
    struct mem m = {.fail_after = fail_after};
    m.data = th_slurp(p, &m.len);
    free(p);
    assert_non_null(m.data);
    struct transcode_input in = {mem_read, mem_seek, &m, name};
    struct transcode_output out = {sink_write, k};
    int rc = transcode(&in, &out, o, res);
    free(m.data);
    return rc;
}

static void api_success_and_progress(void **state)
{
    (void)state;
    struct transcode_options o;
    transcode_options_default(&o);
    struct watch w = {0};
    o.progress = on_progress;
    o.progress_cls = &w;
    struct sink k = {0};
    struct transcode_result r;
    int rc = run_api("index-at-end.mp4", -1, &o, &k, &r);
    if (rc != TRANSCODE_OK)
        fail_msg("transcode: %d: %s", rc, r.reason);
    assert_int_equal(k.bytes, (size_t)r.bytes);
    assert_int_equal(r.sample_rate, 44100);
    assert_int_equal(r.channels, 2);
    assert_false(r.copied);
    assert_true(r.duration > 2.9 && r.duration < 3.1);
    assert_true(w.calls >= 1); /* at most twice a second: the run is short */
}

static void api_input_fails(void **state)
{
    (void)state;
    /* at several points: while the cover is read, the header, the audio */
    const long at[] = {0, 100, 5000, 60000, 120000};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        struct sink k = {0};
        struct transcode_result r;
        int rc = run_api("index-at-end.mp4", at[i], NULL, &k, &r);
        if (rc != TRANSCODE_EIO)
            fail_msg("read fails after %ld bytes: %d (want EIO): %s", at[i], rc, r.reason);
        assert_int_equal(k.calls, 0);
        assert_non_null(strstr(r.reason, "could not be read"));
    }
}

static void api_output_fails(void **state)
{
    (void)state;
    struct sink k = {.fail = -1};
    struct transcode_result r;
    assert_int_equal(run_api("faststart.mp4", -1, NULL, &k, &r), TRANSCODE_EIO);
    assert_int_equal(k.calls, 1);
}

static void api_limits_and_cancel(void **state)
{
    (void)state;
    struct transcode_options o;
    struct transcode_result r;
    struct sink k = {0};

    transcode_options_default(&o);
    o.output_bytes_max = 10000;
    assert_int_equal(run_api("faststart.mp4", -1, &o, &k, &r), TRANSCODE_ELIMIT);
    assert_non_null(strstr(r.reason, "larger than allowed"));

    transcode_options_default(&o);
    o.cpu_seconds_max = 1e-6;
    assert_int_equal(run_api("opus.mkv", -1, &o, &k, &r), TRANSCODE_ELIMIT);
    assert_non_null(strstr(r.reason, "processing time"));

    atomic_int cancel = 0;
    struct watch w = {.cancel_at_first = &cancel};
    transcode_options_default(&o);
    o.cancel = &cancel;
    o.progress = on_progress;
    o.progress_cls = &w;
    assert_int_equal(run_api("pcm.mov", -1, &o, &k, &r), TRANSCODE_ECANCELED);
    assert_int_equal(w.calls, 1);
    assert_int_equal(k.calls, 0);
}

/* Segment-parallel options (segments.h): many small segments on 3 threads. */
static void parallel_options(struct transcode_options *o)
{
    transcode_options_default(o);
    o->threads = 3;
    o->parallel_min_seconds = 0;
    o->segment_frames = 8;
}

/* The unlucky cases above through the segment-parallel path: nothing
 * reaches the output, the threads stop, nothing leaks (sanitizer build). */
static void api_parallel_unlucky(void **state)
{
    (void)state;
    struct transcode_options o;
    struct transcode_result r;

    parallel_options(&o);
    struct sink ok = {0};
    int rc = run_api("index-at-end.mp4", -1, &o, &ok, &r);
    if (rc != TRANSCODE_OK)
        fail_msg("transcode: %d: %s", rc, r.reason);
    assert_true(r.segments > 10);
    assert_int_equal(ok.bytes, (size_t)r.bytes);
    assert_true(r.duration > 2.9 && r.duration < 3.1);

    const long at[] = {60000, 120000};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        struct sink k = {0};
        rc = run_api("index-at-end.mp4", at[i], &o, &k, &r);
        if (rc != TRANSCODE_EIO)
            fail_msg("read fails after %ld bytes: %d (want EIO): %s", at[i], rc, r.reason);
        assert_int_equal(k.calls, 0);
    }

    struct sink bad = {.fail = -1};
    assert_int_equal(run_api("faststart.mp4", -1, &o, &bad, &r), TRANSCODE_EIO);
    assert_int_equal(bad.calls, 1);

    struct sink k = {0};
    parallel_options(&o);
    o.output_bytes_max = 10000;
    assert_int_equal(run_api("faststart.mp4", -1, &o, &k, &r), TRANSCODE_ELIMIT);
    assert_non_null(strstr(r.reason, "larger than allowed"));

    parallel_options(&o);
    o.cpu_seconds_max = 1e-6;
    assert_int_equal(run_api("opus.mkv", -1, &o, &k, &r), TRANSCODE_ELIMIT);
    assert_non_null(strstr(r.reason, "processing time"));

    atomic_int cancel = 0;
    struct watch w = {.cancel_at_first = &cancel};
    parallel_options(&o);
    o.cancel = &cancel;
    o.progress = on_progress;
    o.progress_cls = &w;
    assert_int_equal(run_api("pcm.mov", -1, &o, &k, &r), TRANSCODE_ECANCELED);
    assert_int_equal(k.calls, 0);
}

static int collect(void *cls, const void *data, size_t len)
{
    FILE *f = cls;
    return fwrite(data, 1, len, f) == len ? 0 : -1;
}

/* Past its memory bound the spill moves to a file with no name; seeking
 * back and overwriting works on both sides of the move. */
static void spill_moves_to_disk(void **state)
{
    (void)state;
    struct spill *s = spill_new(dir, 4096, 1 << 20);
    assert_non_null(s);
    unsigned char block[1000];
    for (int i = 0; i < 10; i++) {
        memset(block, 'a' + i, sizeof(block));
        assert_int_equal(spill_write(s, block, sizeof(block)), 0);
        if (i == 2) { /* in memory: rewrite the start */
            assert_false(spill_on_disk(s));
            assert_int_equal(spill_seek(s, 0, SEEK_SET), 0);
            assert_int_equal(spill_write(s, "HEAD", 4), 0);
            assert_int_equal(spill_seek(s, 0, SEEK_END), 3000);
        }
    }
    assert_true(spill_on_disk(s));
    assert_int_equal(spill_seek(s, 4, SEEK_SET), 4);
    assert_int_equal(spill_write(s, "MORE", 4), 0);
    assert_int_equal(spill_seek(s, 12000, SEEK_SET), 12000); /* a gap of zeros */
    assert_int_equal(spill_write(s, "END", 3), 0);
    assert_int_equal(spill_size(s), 12003);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(spill_drain(s, collect, f), 0);
    fclose(f);
    assert_int_equal(len, 12003);
    assert_memory_equal(buf, "HEADMOREaaaa", 12);
    assert_int_equal(buf[2999], 'c');
    assert_int_equal(buf[3000], 'd');
    assert_int_equal(buf[9999], 'j');
    assert_int_equal(buf[11999], 0);
    assert_memory_equal(buf + 12000, "END", 3);
    free(buf);
    assert_int_equal(spill_seek(s, (1 << 20) - 1, SEEK_SET), (1 << 20) - 1);
    assert_int_equal(spill_write(s, "xy", 2), -EFBIG);
    assert_int_equal(spill_error(s), -EFBIG);
    spill_free(s);
    spill_free(NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3\n", argv[0]);
        return 2;
    }
    /* absolute: the tests run in the corpus directory */
    static char abs_bin[2 * PATH_MAX + 2];
    char cwd[PATH_MAX];
    if (argv[1][0] == '/')
        snprintf(abs_bin, sizeof(abs_bin), "%s", argv[1]);
    else if (getcwd(cwd, sizeof(cwd)) != NULL)
        snprintf(abs_bin, sizeof(abs_bin), "%s/%s", cwd, argv[1]);
    bin = abs_bin;
    struct CMUnitTest tests[32];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(converts, (void *)&goods[i]);
        tests[n++].name = goods[i].in;
    }
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(fails, (void *)&bads[i]);
        tests[n++].name = bads[i].in;
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(cut_faststart_converts_the_rest);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(cbr_and_vbr);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(usage_errors);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(api_success_and_progress);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(api_input_fails);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(api_output_fails);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(api_limits_and_cancel);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(api_parallel_unlucky);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(spill_moves_to_disk);
    return _cmocka_run_group_tests("convert", tests, n, make_corpus, remove_corpus);
}
