/*
 * Integration: the real `vid2mp3 converter` consuming VIDEO_QUEUE. The
 * test plays the gateway's part through the stores and the queue (a video
 * blob, a job, a message), then watches the job, the MP3 blob and
 * MP3_QUEUE. kill -9 at each phase (CRASH_AT) must end with the job done,
 * exactly one MP3 stored for it and at least one message.
 *
 * Usage: test_converter PATH/TO/vid2mp3 embedded|distributed
 *   embedded     files + SQLite jobs + SQLite queue (lease 2 s)
 *   distributed  GridFS + MongoDB jobs + RabbitMQ of scripts/test-services.sh
 */
#include "server.h"

#include <mongoc/mongoc.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"
#include "store/blobs.h"
#include "store/jobs.h"

#define OWNER "owner@example.com"

static bool distributed;
static bool keep_videos = true; /* KEEP_VIDEOS of the next converter started */
static struct server conv;
static char video_queue[64], mp3_queue[64];
static char *media_dir;
static struct blobs *blobs;
static struct jobs *jobs;
static struct queue *queue;

/* ---------- media ---------- */

static char clip_path[600], silent_path[600], long_path[600];
static int grace_seconds = 120; /* the converter's SHUTDOWN_GRACE_SECONDS */
static int threads_per_job;     /* its CONVERTER_THREADS_PER_JOB */

static void make_media(void)
{
    media_dir = th_tmpdir();
    snprintf(clip_path, sizeof(clip_path), "%s/clip.mp4", media_dir);
    const char *clip[] = {"-f",        "lavfi", "-i",    "sine=frequency=440:duration=2",
                          "-f",        "lavfi", "-i",    "testsrc=s=160x120:d=2:r=10",
                          "-shortest", "-c:v",  "mpeg4", "-c:a",
                          "aac",       NULL};
    th_ffmpeg(clip, clip_path, NULL);
    snprintf(silent_path, sizeof(silent_path), "%s/silent.mp4", media_dir);
    const char *silent[] = {"-f",   "lavfi", "-i", "testsrc=s=160x120:d=2:r=10",
                            "-c:v", "mpeg4", NULL};
    th_ffmpeg(silent, silent_path, NULL);
    /* long enough to be mid-conversion a second after it starts */
    snprintf(long_path, sizeof(long_path), "%s/long.wav", media_dir);
    const char *lng[] = {"-f", "lavfi", "-i", "sine=frequency=300:duration=300", "-ac", "1", NULL};
    th_ffmpeg(lng, long_path, NULL);
}

/* ---------- the gateway's part ---------- */

static void put_video(const char *path, const char *name, char fid[25])
{
    struct blob_meta meta;
    memset(&meta, 0, sizeof(meta));
    snprintf(meta.owner, sizeof(meta.owner), "%s", OWNER);
    snprintf(meta.filename, sizeof(meta.filename), "%s", name);
    snprintf(meta.content_type, sizeof(meta.content_type), "application/octet-stream");
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(blobs, BLOB_VIDEOS, &meta, &w), BLOB_OK);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        assert_int_equal(blob_write(w, buf, n), BLOB_OK);
    fclose(f);
    struct blob_meta done;
    assert_int_equal(blob_commit(w, &done), BLOB_OK);
    snprintf(fid, 25, "%s", done.id);
}

static void publish_raw(const char *body)
{
    assert_int_equal(queue_publish(queue, video_queue, body, strlen(body), "conv-test"), QUEUE_OK);
}

/* A video, its job and its message; returns the job id. */
static void submit(const char *path, const char *name, const char *options, char job_id[25])
{
    char fid[25];
    put_video(path, name, fid);
    struct job j;
    memset(&j, 0, sizeof(j));
    blob_id_new(j.id);
    snprintf(j.owner, sizeof(j.owner), "%s", OWNER);
    snprintf(j.video_fid, sizeof(j.video_fid), "%s", fid);
    snprintf(j.filename, sizeof(j.filename), "%s", name);
    snprintf(j.options, sizeof(j.options), "%s", options);
    snprintf(j.request_id, sizeof(j.request_id), "conv-test");
    assert_int_equal(jobs_create(jobs, &j), JOBS_OK);
    char body[512];
    snprintf(body, sizeof(body),
             "{\"job_id\":\"%s\",\"video_fid\":\"%s\",\"mp3_fid\":null,\"username\":\"" OWNER
             "\",\"filename\":\"%s\",\"options\":%s,\"request_id\":\"conv-test\"}",
             j.id, fid, name, options);
    publish_raw(body);
    snprintf(job_id, 25, "%s", j.id);
}

/* Waits up to seconds for the job to be done or failed. */
static struct job wait_job(const char *id, int seconds)
{
    struct job j;
    for (int i = 0; i < seconds * 10; i++) {
        assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
        if (j.status == JOB_DONE || j.status == JOB_FAILED)
            return j;
        th_sleep_ms(100);
    }
    fail_msg("job %s not finished within %d s (status %s)", id, seconds, job_status_name(j.status));
    return j;
}

/* ---------- MP3_QUEUE ---------- */

struct outcomes {
    char job_id[25];
    int n;
    char status[16];
    char mp3_fid[25];
    char error[300];
};

static enum queue_verdict take_outcome(const struct queue_msg *m, void *ctx)
{
    struct outcomes *o = ctx;
    json_t *j = json_loadb(m->body, m->len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "job_id"));
    if (id != NULL && strcmp(id, o->job_id) == 0) {
        o->n++;
        snprintf(o->status, sizeof(o->status), "%s",
                 json_string_value(json_object_get(j, "status")));
        const char *fid = json_string_value(json_object_get(j, "mp3_fid"));
        snprintf(o->mp3_fid, sizeof(o->mp3_fid), "%s", fid != NULL ? fid : "");
        const char *e = json_string_value(json_object_get(j, "error"));
        snprintf(o->error, sizeof(o->error), "%s", e != NULL ? e : "");
    }
    json_decref(j);
    return QUEUE_ACK;
}

/* Drains MP3_QUEUE for a moment; returns the messages about job_id. */
static struct outcomes outcomes_of(const char *job_id)
{
    struct outcomes o;
    memset(&o, 0, sizeof(o));
    snprintf(o.job_id, sizeof(o.job_id), "%s", job_id);
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(queue, mp3_queue, 4, take_outcome, &o, &c), QUEUE_OK);
    for (int i = 0; i < 300 && o.n == 0; i++) /* a redelivery may take a lease */
        th_sleep_ms(100);
    th_sleep_ms(500); /* a repeat, if any, arrives too */
    queue_consumer_stop(c);
    return o;
}

/* ---------- the converter process ---------- */

static void start_converter(const char *crash_at)
{
    server_init(&conv, NULL);
    server_env(&conv, "METRICS_PORT=%d", conv.port);
    server_env(&conv, "VIDEO_QUEUE=%s", video_queue);
    server_env(&conv, "MP3_QUEUE=%s", mp3_queue);
    server_env(&conv, "CONVERTER_WORKERS=2");
    server_env(&conv, "QUEUE_LEASE_SECONDS=2");
    server_env(&conv, "MAX_ATTEMPTS=3");
    server_env(&conv, "SHUTDOWN_GRACE_SECONDS=%d", grace_seconds);
    server_env(&conv, "CONVERTER_THREADS_PER_JOB=%d", threads_per_job);
    server_env(&conv, "CRASH_AT=%s", crash_at != NULL ? crash_at : "");
    server_env(&conv, "KEEP_VIDEOS=%s", keep_videos ? "true" : "false");
    if (distributed) {
        server_env(&conv, "MONGODB_URI=%s", th_need_env("VID2MP3_TEST_MONGODB_URI"));
        server_env(&conv, "RABBITMQ_URL=%s", th_need_env("VID2MP3_TEST_AMQP_URL"));
    }
}

/* The data dir is kept across restarts: the same stores. With a message
 * waiting and crash_at set it may die before it answers /healthz: then
 * spawn it without waiting (wait false). */
static void respawn_converter(const char *crash_at, bool wait)
{
    char keep[400];
    snprintf(keep, sizeof(keep), "%.399s", conv.dir);
    free(conv.dir);
    start_converter(crash_at);
    th_rmtree(conv.dir);
    free(conv.dir);
    conv.dir = strdup(keep);
    snprintf(conv.env[0], sizeof(conv.env[0]), "DATA_DIR=%s", keep);
    snprintf(conv.log, sizeof(conv.log), "%s/server.log", keep);
    if (wait) {
        server_start(&conv, "converter");
        return;
    }
    char *argv[] = {(char *)vid2mp3_bin, "converter", NULL};
    conv.pid = th_spawn(argv, conv.envp, NULL, conv.log);
}

static void restart_converter(const char *crash_at)
{
    respawn_converter(crash_at, true);
}

/* ---------- set-up ---------- */

static int group_setup(void **state)
{
    (void)state;
    make_media();
    unsigned char rnd[6];
    randombytes_buf(rnd, sizeof(rnd));
    char hex[13];
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(video_queue, sizeof(video_queue), "convtest-video-%s", hex);
    snprintf(mp3_queue, sizeof(mp3_queue), "convtest-mp3-%s", hex);
    start_converter(NULL);
    char err[512], path[700];
    struct queue_settings qs;
    queue_settings_default(&qs);
    qs.max_attempts = 3;
    if (distributed) {
        const char *uri = th_need_env("VID2MP3_TEST_MONGODB_URI");
        blobs = blobs_gridfs_new(uri, err, sizeof(err));
        jobs = jobs_mongo_new(uri, err, sizeof(err));
        queue = queue_amqp_new(th_need_env("VID2MP3_TEST_AMQP_URL"), &qs, err, sizeof(err));
    } else {
        snprintf(path, sizeof(path), "%s/blobs", conv.dir);
        blobs = blobs_fs_new(path, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/jobs.db", conv.dir);
        jobs = jobs_sqlite_new(path, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/queue.db", conv.dir);
        queue = queue_sqlite_new(path, &qs, err, sizeof(err));
    }
    if (blobs == NULL || jobs == NULL || queue == NULL)
        fail_msg("opening the stores: %s", err);
    assert_int_equal(queue_declare(queue, video_queue), QUEUE_OK);
    assert_int_equal(queue_declare(queue, mp3_queue), QUEUE_OK);
    server_start(&conv, "converter");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_cleanup(&conv);
    blobs_free(blobs);
    jobs_free(jobs);
    queue_free(queue);
    th_rmtree(media_dir);
    free(media_dir);
    return 0;
}

/* ---------- tests ---------- */

static void converts_a_job(void **state)
{
    (void)state;
    char id[25];
    submit(clip_path, "holiday clip.mp4", "{\"quality\":4}", id);
    struct job j = wait_job(id, 60);
    if (j.status != JOB_DONE)
        fail_msg("job failed: %s", j.error);
    assert_true(blob_id_valid(j.mp3_fid));
    assert_true(j.progress > 0.99);
    struct blob_meta m;
    assert_int_equal(blobs_stat(blobs, BLOB_MP3S, j.mp3_fid, &m), BLOB_OK);
    assert_string_equal(m.owner, OWNER);
    assert_string_equal(m.filename, "holiday clip.mp3");
    assert_string_equal(m.content_type, "audio/mpeg");
    assert_string_equal(m.job_id, id);
    assert_true(m.length > 1000);
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 1);
    struct outcomes o = outcomes_of(id);
    assert_int_equal(o.n, 1);
    assert_string_equal(o.status, "done");
    assert_string_equal(o.mp3_fid, j.mp3_fid);

    /* the stored MP3 is one: ffprobe says so */
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_open_read(blobs, BLOB_MP3S, j.mp3_fid, &r), BLOB_OK);
    char path[700];
    snprintf(path, sizeof(path), "%s/out.mp3", media_dir);
    FILE *f = fopen(path, "wb");
    char buf[65536];
    long n;
    while ((n = blob_read(r, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    blob_close(r);
    char cmd[900];
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -select_streams a -show_entries stream=codec_name -of csv=p=0 %s",
             path);
    FILE *p = popen(cmd, "r");
    char codec[32] = "";
    assert_non_null(fgets(codec, sizeof(codec), p));
    pclose(p);
    assert_string_equal(codec, "mp3\n");
}

/* The converter's "converted" log line of job id (caller frees), or NULL. */
static char *converted_line(const char *id)
{
    char *log = th_slurp(conv.log, NULL);
    assert_non_null(log);
    char *line = NULL;
    for (char *l = log; l != NULL && line == NULL;) {
        char *nl = strchr(l, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (strstr(l, "\"msg\":\"converted\"") != NULL && strstr(l, id) != NULL)
            line = strdup(l);
        l = nl != NULL ? nl + 1 : NULL;
    }
    free(log);
    return line;
}

/* A job alone on a machine of several cores uses them all
 * (CONVERTER_THREADS_PER_JOB=0): the 300 s input is encoded in segments
 * on one thread per core, and the MP3 is whole. */
static void long_job_uses_every_core(void **state)
{
    (void)state;
    char id[25];
    submit(long_path, "long.wav", "{}", id);
    struct job j = wait_job(id, 120);
    if (j.status != JOB_DONE)
        fail_msg("job failed: %s", j.error);
    char *line = converted_line(id);
    if (line == NULL)
        fail_msg("no \"converted\" log line for %s", id);
    json_error_t e;
    json_t *log = json_loads(line, 0, &e);
    if (log == NULL)
        fail_msg("not JSON: %s", line);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    json_int_t threads = json_integer_value(json_object_get(log, "threads"));
    json_int_t segments = json_integer_value(json_object_get(log, "segments"));
    if (cores > 1 && (threads != cores || segments < 2))
        fail_msg("%ld cores: threads %lld, segments %lld: %s", cores, (long long)threads,
                 (long long)segments, line);
    if (cores == 1 && (threads != 1 || segments != 0))
        fail_msg("one core: %s", line);
    assert_true(json_real_value(json_object_get(log, "duration")) > 299.9);
    json_decref(log);
    free(line);
}

static void no_audio_fails_with_a_reason(void **state)
{
    (void)state;
    char id[25];
    submit(silent_path, "silent.mp4", "{}", id);
    struct job j = wait_job(id, 60);
    assert_int_equal(j.status, JOB_FAILED);
    assert_non_null(strstr(j.error, "no audio"));
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 0);
    struct outcomes o = outcomes_of(id);
    assert_int_equal(o.n, 1);
    assert_string_equal(o.status, "failed");
    assert_non_null(strstr(o.error, "no audio"));
}

static void unknown_job_is_dropped(void **state)
{
    (void)state;
    char fid[25], id[25];
    blob_id_new(id);
    put_video(clip_path, "orphan.mp4", fid);
    char body[256];
    snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"video_fid\":\"%s\"}", id, fid);
    publish_raw(body);
    long depth = -1;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(queue_depth(queue, video_queue, &depth), QUEUE_OK);
        if (depth == 0)
            break;
        th_sleep_ms(100);
    }
    assert_int_equal(depth, 0);
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 0);
    long dead = -1;
    assert_int_equal(queue_dead_count(queue, video_queue, &dead), QUEUE_OK);
    assert_int_equal(dead, 0);
}

/* The value of one series on the converter's /metrics, or -1. */
static long metric(const char *series)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", conv.port);
    struct th_resp r;
    th_http("GET", url, NULL, NULL, 0, &r);
    long v = -1;
    const char *p = r.body != NULL ? strstr(r.body, series) : NULL;
    if (p != NULL)
        v = strtol(p + strlen(series), NULL, 10);
    th_resp_free(&r);
    return v;
}

#define DEAD_LETTERS "vid2mp3_conversions_total{outcome=\"dead_letter\"} "

/* Dead letters are taken from VIDEO_QUEUE.dead by the converter's sweeper
 * (every 3 s): waits until count more were seen and none is left. */
static void wait_dead_letters(long before, int count, int seconds)
{
    long dead = -1;
    for (int i = 0; i < seconds * 10; i++) {
        assert_int_equal(queue_dead_count(queue, video_queue, &dead), QUEUE_OK);
        if (metric(DEAD_LETTERS) >= before + count && dead == 0)
            return;
        th_sleep_ms(100);
    }
    fail_msg("dead letters: %ld seen (want %ld), %ld left", metric(DEAD_LETTERS), before + count,
             dead);
}

static void poison_message_is_dead_lettered(void **state)
{
    (void)state;
    long before = metric(DEAD_LETTERS);
    assert_true(before >= 0);
    publish_raw("this is not JSON");
    publish_raw("{\"job_id\":\"../../etc/passwd\"}");
    wait_dead_letters(before, 2, 30);
}

/* A file that kills the converter every time: after MAX_ATTEMPTS (3) the
 * queue dead-letters it without a handler, and the sweeper fails the job
 * and tells its owner. */
static void crash_loop_fails_the_job(void **state)
{
    (void)state;
    char id[25];
    assert_int_equal(server_stop(&conv, SIGTERM), 0);
    restart_converter("converting");
    submit(clip_path, "deadly.mp4", "{}", id);
    for (int k = 0; k < 3; k++) {
        int st = th_wait_exit(&conv.pid, 60);
        assert_int_equal(st, 128 + SIGKILL);
        respawn_converter(k < 2 ? "converting" : NULL, k == 2);
    }
    struct job j = wait_job(id, 60);
    assert_int_equal(j.status, JOB_FAILED);
    assert_non_null(strstr(j.error, "it was given up"));
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 0);
    struct outcomes o = outcomes_of(id);
    assert_true(o.n >= 1);
    assert_string_equal(o.status, "failed");
}

static void crash_at(const char *phase, const char *path)
{
    server_stop(&conv, SIGTERM);
    restart_converter(phase);
    char id[25];
    submit(path, "crash.mp4", "{}", id);
    int st = th_wait_exit(&conv.pid, 60);
    if (st != 128 + SIGKILL)
        fail_msg("CRASH_AT=%s: the converter ended with %d, not SIGKILL", phase, st);
    restart_converter(NULL);
    struct job j = wait_job(id, 90);
    if (j.status != JOB_DONE)
        fail_msg("CRASH_AT=%s: job %s: %s", phase, job_status_name(j.status), j.error);
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 1);
    struct blob_meta m;
    assert_int_equal(blobs_stat(blobs, BLOB_MP3S, j.mp3_fid, &m), BLOB_OK);
    struct outcomes o = outcomes_of(id);
    assert_true(o.n >= 1);
    assert_string_equal(o.status, "done");
    assert_string_equal(o.mp3_fid, j.mp3_fid);
}

static void crash_while_converting(void **state)
{
    (void)state;
    crash_at("converting", clip_path);
}

static void crash_while_decoding(void **state)
{
    (void)state;
    crash_at("decoding", long_path); /* long enough to report progress */
}

static void crash_after_storing(void **state)
{
    (void)state;
    crash_at("stored", clip_path);
}

static void crash_after_done(void **state)
{
    (void)state;
    crash_at("done", clip_path);
}

static void crash_after_publishing(void **state)
{
    (void)state;
    crash_at("published", clip_path);
}

static void sigterm_finishes_the_running_job(void **state)
{
    (void)state;
    char id[25];
    submit(long_path, "long.wav", "{}", id);
    /* wait until it is converting, then ask it to stop */
    struct job j;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
        if (j.status != JOB_QUEUED)
            break;
        th_sleep_ms(20);
    }
    assert_int_equal(j.status, JOB_CONVERTING);
    assert_int_equal(server_stop(&conv, SIGTERM), 0);
    assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_DONE);
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 1);
    restart_converter(NULL);
}

/* Prints the last 4000 bytes of the converter's log to stderr. */
static void print_log_tail(void)
{
    size_t len = 0;
    char *log = th_slurp(conv.log, &len);
    if (log != NULL)
        fprintf(stderr, "--- %s (end)\n%s\n", conv.log, log + (len > 4000 ? len - 4000 : 0));
    free(log);
}

/* A converter stopped with a conversion running past its grace period hands
 * the job back, and that uses no attempt: stopped mid-conversion more often
 * than MAX_ATTEMPTS (3), the job is neither failed nor dead-lettered, and
 * the next converter finishes it. (Counted as attempts, the third stop
 * dead-lettered it and the job failed.) */
static void stopped_conversions_are_handed_back(void **state)
{
    (void)state;
    enum { STOPS = 4 };
    long dead_before = metric(DEAD_LETTERS);
    assert_int_equal(server_stop(&conv, SIGTERM), 0);
    /* no grace, and a conversion slow enough (one thread, LAME's slowest
     * quality: a second or two) to be stopped in the middle */
    grace_seconds = 0;
    threads_per_job = 1;
    restart_converter(NULL);
    char id[25];
    submit(long_path, "long.wav", "{\"quality\":0}", id);
    struct job j;
    for (int stop = 1; stop <= STOPS; stop++) {
        /* this converter has started it (each start adds an attempt) */
        bool started = false;
        for (int i = 0; i < 500 && !started; i++) {
            assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
            started = j.status == JOB_CONVERTING && j.attempts >= stop;
            if (!started)
                th_sleep_ms(10);
        }
        if (!started) {
            print_log_tail();
            fail_msg("stop %d: the job is %s after %d starts", stop, job_status_name(j.status),
                     j.attempts);
        }
        assert_int_equal(server_stop(&conv, SIGTERM), 0);
        assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
        if (j.status != JOB_CONVERTING)
            fail_msg("stop %d: the job is %s (%s), not handed back", stop,
                     job_status_name(j.status), j.error);
        size_t len = 0;
        char *log = th_slurp(conv.log, &len);
        assert_non_null(log);
        if (strstr(log, "conversion handed back") == NULL) {
            print_log_tail();
            fail_msg("stop %d: no \"conversion handed back\" in %s", stop, conv.log);
        }
        free(log);
        if (stop < STOPS)
            restart_converter(NULL);
    }
    grace_seconds = 120;
    threads_per_job = 0;
    restart_converter(NULL);
    j = wait_job(id, 120);
    if (j.status != JOB_DONE)
        fail_msg("job %s after %d stops: %s", job_status_name(j.status), STOPS, j.error);
    assert_int_equal(j.attempts, STOPS + 1);
    assert_int_equal(th_mp3s_of(id, distributed ? NULL : conv.dir), 1);
    th_sleep_ms(3500); /* a sweep of VIDEO_QUEUE.dead */
    assert_int_equal(metric(DEAD_LETTERS), dead_before);
}

static void videos_kept_or_not(void **state)
{
    (void)state;
    char id[25];
    submit(clip_path, "kept.mp4", "{}", id);
    struct job j = wait_job(id, 60);
    assert_int_equal(j.status, JOB_DONE);
    struct blob_meta m;
    assert_int_equal(blobs_stat(blobs, BLOB_VIDEOS, j.video_fid, &m), BLOB_OK);

    assert_int_equal(server_stop(&conv, SIGTERM), 0);
    keep_videos = false;
    restart_converter(NULL);
    submit(clip_path, "not-kept.mp4", "{}", id);
    j = wait_job(id, 60);
    assert_int_equal(j.status, JOB_DONE);
    /* removed right after the job is done and its outcome published */
    int rc = BLOB_OK;
    for (int i = 0; i < 100 && rc == BLOB_OK; i++) {
        rc = blobs_stat(blobs, BLOB_VIDEOS, j.video_fid, &m);
        if (rc == BLOB_OK)
            th_sleep_ms(100);
    }
    assert_int_equal(rc, BLOB_ENOTFOUND);
    assert_int_equal(blobs_stat(blobs, BLOB_MP3S, j.mp3_fid, &m), BLOB_OK);
    assert_int_equal(server_stop(&conv, SIGTERM), 0);
    keep_videos = true;
    restart_converter(NULL);
}

static void converter_stops_cleanly(void **state)
{
    (void)state;
    assert_int_equal(server_stop(&conv, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "embedded") != 0 && strcmp(argv[2], "distributed") != 0)) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3 embedded|distributed\n", argv[0]);
        return 2;
    }
    if (server_args(2, argv) != 0)
        return 2;
    distributed = strcmp(argv[2], "distributed") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(converts_a_job),
        cmocka_unit_test(long_job_uses_every_core),
        cmocka_unit_test(no_audio_fails_with_a_reason),
        cmocka_unit_test(unknown_job_is_dropped),
        cmocka_unit_test(poison_message_is_dead_lettered),
        cmocka_unit_test(crash_while_converting),
        cmocka_unit_test(crash_while_decoding),
        cmocka_unit_test(crash_after_storing),
        cmocka_unit_test(crash_after_done),
        cmocka_unit_test(crash_after_publishing),
        cmocka_unit_test(crash_loop_fails_the_job),
        cmocka_unit_test(sigterm_finishes_the_running_job),
        cmocka_unit_test(stopped_conversions_are_handed_back),
        cmocka_unit_test(videos_kept_or_not),
        cmocka_unit_test(converter_stops_cleanly),
    };
    return cmocka_run_group_tests_name(distributed ? "converter-distributed" : "converter-embedded",
                                       tests, group_setup, group_teardown);
}
