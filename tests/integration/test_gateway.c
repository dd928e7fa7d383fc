/*
 * Integration: the real `vid2mp3 auth` and `vid2mp3 gateway` as two
 * processes, driven over HTTP, with the stores opened here as well to
 * check what the gateway left in them.
 *
 * Usage: test_gateway PATH/TO/vid2mp3 embedded|distributed|all
 *   embedded     files + SQLite jobs + SQLite queue; the gateway checks
 *                tokens itself (JWT_SECRET set)
 *   all          the same stores, but `vid2mp3 all`: one process, /login
 *                served in process on the gateway's port
 *   distributed  GridFS + MongoDB jobs + RabbitMQ from
 *                scripts/test-services.sh; the gateway has no JWT_SECRET
 *                and asks the auth service's /validate
 */
#include "server.h"

#include <arpa/inet.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core/token.h"
#include "queue/queue.h"
#include "store/blobs.h"
#include "store/jobs.h"

#define ADMIN "admin@example.com"
#define ADMIN_PW "admin-password-1"
#define PLAIN "plain@example.com"
#define PLAIN_PW "plain-password-1"
#define MAX_UPLOAD 3000000 /* MAX_UPLOAD_BYTES of the gateway under test */
#define IDLE_SECONDS 2     /* HTTP_IDLE_TIMEOUT_SECONDS of the gateway */

static bool distributed;
static bool all_in_one;
static struct server auth, gw;
static char queue_name[64];
static char *admin_token, *plain_token;
static char *media_dir;
static struct blobs *blobs; /* the gateway's stores, opened here too */
static struct jobs *jobs;
static struct queue *queue;

/* ---------- files ---------- */

struct file {
    char *data;
    size_t len;
};

static struct file clip; /* a one-second MP4 made by ffmpeg */

static struct file read_file(const char *path)
{
    struct file f = {0};
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    f.len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f.data = malloc(f.len + 1);
    assert_int_equal(fread(f.data, 1, f.len, fp), f.len);
    fclose(fp);
    return f;
}

static void make_clip(void)
{
    media_dir = th_tmpdir();
    char out[600];
    snprintf(out, sizeof(out), "%s/clip.mp4", media_dir);
    char *argv[] = {"/usr/bin/ffmpeg",
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:duration=1",
                    "-f",
                    "lavfi",
                    "-i",
                    "color=c=blue:s=64x48:d=1",
                    "-shortest",
                    "-c:v",
                    "mpeg4",
                    "-c:a",
                    "aac",
                    out,
                    NULL};
    assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
    clip = read_file(out);
}

/* clip followed by filler bytes up to len: still an MP4 to the probe. */
static struct file padded_clip(size_t len)
{
    struct file f = {malloc(len), len};
    memcpy(f.data, clip.data, clip.len < len ? clip.len : len);
    for (size_t i = clip.len; i < len; i++)
        f.data[i] = (char)(i * 131 + 7);
    return f;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ---------- multipart ---------- */

#define BOUNDARY "vid2mp3-test-boundary-7d1f"

struct body {
    char *data;
    size_t len, cap;
};

static void put(struct body *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void put_str(struct body *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A part: a file when filename is non-NULL, else a plain field. */
static void part(struct body *b, const char *field, const char *filename, const void *data,
                 size_t len)
{
    char head[600];
    if (filename != NULL)
        snprintf(head, sizeof(head),
                 "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"; "
                 "filename=\"%s\"\r\nContent-Type: video/mp4\r\n\r\n",
                 field, filename);
    else
        snprintf(head, sizeof(head),
                 "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n", field);
    put_str(b, head);
    put(b, data, len);
    put_str(b, "\r\n");
}

static void close_body(struct body *b)
{
    put_str(b, "--" BOUNDARY "--\r\n");
}

/* The usual upload body: one file plus optional fields ("name=value"). */
static struct body upload_body(const char *filename, const struct file *f, const char *field1,
                               const char *field2)
{
    struct body b = {0};
    const char *fields[] = {field1, field2};
    for (int i = 0; i < 2; i++) {
        if (fields[i] == NULL)
            continue;
        char name[64];
        const char *eq = strchr(fields[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - fields[i]), fields[i]);
        part(&b, name, NULL, eq + 1, strlen(eq + 1));
    }
    part(&b, "file", filename, f->data, f->len);
    close_body(&b);
    return b;
}

/* ---------- requests ---------- */

static void gw_request(const char *method, const char *path, const char *token,
                       const char *const *more, const char *ctype, const struct body *b,
                       struct th_resp *r)
{
    char url[TOKEN_MAX_LEN + 512], authz[TOKEN_MAX_LEN + 32], ct[160];
    snprintf(url, sizeof(url), "%s%s", gw.base, path);
    const char *h[8];
    int n = 0;
    if (token != NULL) {
        snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
        h[n++] = authz;
    }
    if (ctype != NULL) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        h[n++] = ct;
    }
    for (int i = 0; more != NULL && more[i] != NULL && n < 7; i++)
        h[n++] = more[i];
    h[n] = NULL;
    th_http(method, url, h, b != NULL ? b->data : NULL, b != NULL ? b->len : 0, r);
}

static void get(const char *path, const char *token, struct th_resp *r)
{
    gw_request("GET", path, token, NULL, NULL, NULL, r);
}

static void upload(const char *token, const struct body *b, struct th_resp *r)
{
    gw_request("POST", "/upload", token, NULL, "multipart/form-data; boundary=" BOUNDARY, b, r);
}

/* Uploads f as filename; asserts 202 and returns the job id and video fid. */
static void upload_ok(const char *filename, const struct file *f, const char *field,
                      char job_id[25], char video_fid[25])
{
    struct body b = upload_body(filename, f, field, NULL);
    struct th_resp r;
    upload(admin_token, &b, &r);
    if (r.status != 202)
        fail_msg("upload %s: status %ld: %s", filename, r.status, r.body);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "queued");
    snprintf(job_id, 25, "%s", json_string_value(json_object_get(j, "job_id")));
    snprintf(video_fid, 25, "%s", json_string_value(json_object_get(j, "video_fid")));
    assert_true(blob_id_valid(job_id));
    assert_true(blob_id_valid(video_fid));
    json_decref(j);
    th_resp_free(&r);
    free(b.data);
}

static void expect_error(const char *token, const struct body *b, long status, const char *code)
{
    struct th_resp r;
    upload(token, b, &r);
    th_assert_error(&r, status, code);
    th_resp_free(&r);
}

/* ---------- what the gateway left behind ---------- */

static int count_job(const struct job *j, void *ctx)
{
    (void)j;
    (*(int *)ctx)++;
    return 0;
}

static int admin_jobs(void)
{
    int n = 0;
    assert_int_equal(jobs_list(jobs, ADMIN, 0, NULL, JOB_LIST_MAX, count_job, &n), JOBS_OK);
    return n;
}

/* Messages waiting in VIDEO_QUEUE. In `all` the converter drains it, so
 * its depth says nothing there: 0. */
static long queued(void)
{
    if (all_in_one)
        return 0;
    long n = -1;
    assert_int_equal(queue_depth(queue, queue_name, &n), QUEUE_OK);
    return n;
}

/* Stored video files and upload leftovers: files under the fs backend's
 * videos/ (sidecars, contents, temporaries), or GridFS documents. */
static long stored_objects(void)
{
    if (!distributed) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "find %s/blobs/videos -type f | wc -l", gw.dir);
        FILE *p = popen(cmd, "r");
        long n = -1;
        assert_int_equal(fscanf(p, "%ld", &n), 1);
        pclose(p);
        return n;
    }
    mongoc_client_t *c = mongoc_client_new(th_need_env("VID2MP3_TEST_MONGODB_URI"));
    long n = 0;
    const char *colls[] = {"fs.files", "fs.chunks"};
    for (int i = 0; i < 2; i++) {
        mongoc_collection_t *coll = mongoc_client_get_collection(c, "videos", colls[i]);
        bson_t filter = BSON_INITIALIZER;
        bson_error_t err;
        int64_t k = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &err);
        if (k < 0)
            fail_msg("count %s: %s", colls[i], err.message);
        n += (long)k;
        mongoc_collection_destroy(coll);
    }
    mongoc_client_destroy(c);
    return n;
}

struct snapshot {
    int jobs;
    long queued, objects;
};

static struct snapshot snap(void)
{
    struct snapshot s = {admin_jobs(), queued(), stored_objects()};
    return s;
}

/* Nothing was added since before. */
static void assert_unchanged(const struct snapshot *before)
{
    struct snapshot now = snap();
    assert_int_equal(now.jobs, before->jobs);
    assert_int_equal(now.queued, before->queued);
    assert_int_equal(now.objects, before->objects);
}

/* The value of one series on the gateway's /metrics, or -1. */
static long metric(const char *series)
{
    struct th_resp r;
    get("/metrics", NULL, &r);
    long v = -1;
    const char *p = strstr(r.body, series);
    if (p != NULL)
        v = strtol(p + strlen(series), NULL, 10);
    th_resp_free(&r);
    return v;
}

#define ABORTED "vid2mp3_uploads_total{outcome=\"aborted\"} "

/* Waits up to seconds for the aborted-upload count to exceed before. */
static void wait_aborted(long before, int seconds)
{
    for (int i = 0; i < seconds * 20; i++) {
        if (metric(ABORTED) > before)
            return;
        th_sleep_ms(50);
    }
    fail_msg("the gateway did not give up on the upload within %d s", seconds);
}

/* ---------- set-up ---------- */

static void open_stores(void)
{
    char err[512], path[700];
    if (distributed) {
        const char *uri = th_need_env("VID2MP3_TEST_MONGODB_URI");
        blobs = blobs_gridfs_new(uri, err, sizeof(err));
        jobs = jobs_mongo_new(uri, err, sizeof(err));
        struct queue_settings qs;
        queue_settings_default(&qs);
        queue = queue_amqp_new(th_need_env("VID2MP3_TEST_AMQP_URL"), &qs, err, sizeof(err));
    } else {
        snprintf(path, sizeof(path), "%s/blobs", gw.dir);
        blobs = blobs_fs_new(path, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/jobs.db", gw.dir);
        jobs = jobs_sqlite_new(path, err, sizeof(err));
        struct queue_settings qs;
        queue_settings_default(&qs);
        snprintf(path, sizeof(path), "%s/queue.db", gw.dir);
        queue = queue_sqlite_new(path, &qs, err, sizeof(err));
    }
    if (blobs == NULL || jobs == NULL || queue == NULL)
        fail_msg("opening the gateway's stores: %s", err);
}

static void start_gateway(void)
{
    server_start(&gw, all_in_one ? "all" : "gateway");
}

static int group_setup(void **state)
{
    (void)state;
    make_clip();
    unsigned char rnd[6];
    randombytes_buf(rnd, sizeof(rnd));
    char hex[13];
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(queue_name, sizeof(queue_name), "gwtest-%s", hex);

    server_init(&auth, NULL);
    server_init(&gw, NULL);
    struct server *users = all_in_one ? &gw : &auth;
    assert_int_equal(server_cli(users, ADMIN_PW "\n", "user", "add", ADMIN, "--admin"), 0);
    assert_int_equal(server_cli(users, PLAIN_PW "\n", "user", "add", PLAIN, NULL), 0);
    if (!all_in_one)
        server_start(&auth, "auth");

    server_env(&gw, "GATEWAY_PORT=%d", gw.port);
    server_env(&gw, "AUTH_PORT=%d", all_in_one ? th_free_port() : 0);
    server_env(&gw, "AUTH_SVC_ADDRESS=127.0.0.1:%d", auth.port);
    server_env(&gw, "VIDEO_QUEUE=%s", queue_name);
    server_env(&gw, "MAX_UPLOAD_BYTES=%d", MAX_UPLOAD);
    server_env(&gw, "HTTP_IDLE_TIMEOUT_SECONDS=%d", IDLE_SECONDS);
    if (distributed) {
        server_env(&gw, "JWT_SECRET=");
        server_env(&gw, "MONGODB_URI=%s", th_need_env("VID2MP3_TEST_MONGODB_URI"));
        server_env(&gw, "RABBITMQ_URL=%s", th_need_env("VID2MP3_TEST_AMQP_URL"));
    }
    start_gateway();
    open_stores();
    admin_token = login(&gw, ADMIN, ADMIN_PW);
    plain_token = login(&gw, PLAIN, PLAIN_PW);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_cleanup(&gw);
    server_cleanup(&auth);
    blobs_free(blobs);
    jobs_free(jobs);
    queue_free(queue);
    free(admin_token);
    free(plain_token);
    free(clip.data);
    th_rmtree(media_dir);
    free(media_dir);
    return 0;
}

/* ---------- login through the gateway ---------- */

static void login_forwarded(void **state)
{
    (void)state;
    struct th_resp r;
    post(&gw, "/login", NULL, "application/json",
         "{\"email\":\"" ADMIN "\",\"password\":\"wrong-password\"}", &r);
    th_assert_error(&r, 401, "invalid_credentials");
    char buf[128];
    /* no Basic challenge on a wrong password: browsers would prompt */
    assert_null(th_header(&r, "WWW-Authenticate", buf, sizeof(buf)));
    th_resp_free(&r);
    /* nothing at all: the challenge, as the auth service gives it */
    post(&gw, "/login", NULL, NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_credentials");
    assert_non_null(th_header(&r, "WWW-Authenticate", buf, sizeof(buf)));
    assert_non_null(strstr(buf, "Basic realm=\"vid2mp3\""));
    th_resp_free(&r);
    post(&gw, "/login", NULL, "text/plain", "hello", &r);
    th_assert_error(&r, 415, "unsupported_media_type");
    th_resp_free(&r);

    /* HTTP Basic passes through too */
    char basic[256] = "Authorization: Basic ";
    const char *up = ADMIN ":" ADMIN_PW;
    sodium_bin2base64(basic + 21, sizeof(basic) - 21, (const unsigned char *)up, strlen(up),
                      sodium_base64_VARIANT_ORIGINAL);
    post(&gw, "/login", basic, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "token_type")), "Bearer");
    json_decref(j);
    th_resp_free(&r);

    post(&gw, "/login", NULL, "application/json", "{\"email\":", &r);
    th_assert_error(&r, 400, "invalid_request");
    th_resp_free(&r);
}

/* ---------- upload ---------- */

static void upload_stores_bytes_and_queues(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct file big = padded_clip(MAX_UPLOAD); /* exactly the limit: accepted */
    char sent[65];
    sha256_hex(big.data, big.len, sent);

    struct body b = upload_body("holiday.mp4", &big, "quality=3", NULL);
    struct th_resp r;
    const char *more[] = {"X-Request-Id: gw-test-upload-1", NULL};
    gw_request("POST", "/upload", admin_token, more, "multipart/form-data; boundary=" BOUNDARY, &b,
               &r);
    assert_int_equal(r.status, 202);
    json_t *j = th_json(&r);
    const char *job_id = json_string_value(json_object_get(j, "job_id"));
    const char *fid = json_string_value(json_object_get(j, "video_fid"));

    /* the stored bytes are the bytes sent */
    struct blob_reader *rd = NULL;
    assert_int_equal(blobs_open_read(blobs, BLOB_VIDEOS, fid, &rd), BLOB_OK);
    const struct blob_meta *m = blob_reader_meta(rd);
    assert_string_equal(m->owner, ADMIN);
    assert_string_equal(m->filename, "holiday.mp4");
    assert_int_equal(m->length, (int64_t)big.len);
    assert_string_equal(m->sha256, sent);
    char *back = malloc(big.len + 1);
    size_t got = 0;
    long n;
    while ((n = blob_read(rd, back + got, big.len + 1 - got)) > 0)
        got += (size_t)n;
    assert_int_equal(n, 0);
    blob_close(rd);
    char read_back[65];
    sha256_hex(back, got, read_back);
    assert_string_equal(read_back, sent);
    free(back);

    /* the job */
    struct job job;
    assert_int_equal(jobs_get(jobs, job_id, &job), JOBS_OK);
    assert_true(job.status == JOB_QUEUED || all_in_one); /* `all` converts it at once */
    assert_string_equal(job.owner, ADMIN);
    assert_string_equal(job.video_fid, fid);
    assert_string_equal(job.filename, "holiday.mp4");
    assert_string_equal(job.request_id, "gw-test-upload-1");
    json_t *opts = json_loads(job.options, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(opts, "quality")), 3);
    json_decref(opts);

    struct snapshot after = snap();
    assert_int_equal(after.jobs, before.jobs + 1);
    assert_int_equal(after.queued, before.queued + (all_in_one ? 0 : 1));
    if (all_in_one) {
        /* `all` converts it and its notifier writes the owner's email to
         * the outbox (DATA_DIR/outbox/JOB_ID.eml) */
        for (int i = 0; i < 1200 && job.notified_at == 0; i++) {
            th_sleep_ms(50);
            assert_int_equal(jobs_get(jobs, job_id, &job), JOBS_OK);
        }
        assert_int_equal(job.status, JOB_DONE);
        assert_true(job.notified_at > 0);
        assert_string_equal(job.notify_error, "");
        assert_true(job.duration > 0 && job.mp3_bytes > 0);
        char path[700];
        snprintf(path, sizeof(path), "%s/outbox/%s.eml", gw.dir, job_id);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char text[8192];
        size_t len = fread(text, 1, sizeof(text) - 1, f);
        text[len] = '\0';
        fclose(f);
        assert_non_null(strstr(text, "To: <" ADMIN ">\r\n"));
        assert_non_null(strstr(text, "Subject: Your MP3 is ready: holiday.mp3\r\n"));
    }
    json_decref(j);
    th_resp_free(&r);
    free(b.data);
    free(big.data);
}

/* The queued message carries the specified fields. */
static enum queue_verdict take_msg(const struct queue_msg *m, void *ctx)
{
    json_t **out = ctx;
    json_t *j = json_loadb(m->body, m->len, 0, NULL);
    if (*out == NULL && j != NULL &&
        strcmp(json_string_value(json_object_get(j, "filename")), "message.mp4") == 0) {
        *out = j;
        return QUEUE_ACK;
    }
    json_decref(j);
    return QUEUE_RETRY;
}

static void upload_message_fields(void **state)
{
    (void)state;
    char job_id[25], fid[25];
    upload_ok("message.mp4", &clip, "bitrate=192", job_id, fid);
    json_t *msg = NULL;
    struct queue_consumer *c = NULL;
    assert_int_equal(queue_consume(queue, queue_name, 1, take_msg, &msg, &c), QUEUE_OK);
    for (int i = 0; i < 200 && msg == NULL; i++)
        th_sleep_ms(50);
    queue_consumer_stop(c);
    assert_non_null(msg);
    assert_string_equal(json_string_value(json_object_get(msg, "job_id")), job_id);
    assert_string_equal(json_string_value(json_object_get(msg, "video_fid")), fid);
    assert_true(json_is_null(json_object_get(msg, "mp3_fid")));
    assert_string_equal(json_string_value(json_object_get(msg, "username")), ADMIN);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(msg, "options"), "bitrate")), 192);
    assert_non_null(json_string_value(json_object_get(msg, "request_id")));
    json_decref(msg);
}

static void upload_needs_a_valid_token(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct body b = upload_body("a.mp4", &clip, NULL, NULL);
    expect_error(NULL, &b, 401, "missing_token");
    expect_error("not-a-token", &b, 401, "invalid_token");

    char claims[256];
    long long now = (long long)time(NULL);
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" ADMIN "\",\"username\":\"" ADMIN "\","
             "\"admin\":true,\"iat\":%lld,\"exp\":%lld}",
             now - 7200, now - 3600);
    char *expired = th_forge_jwt("HS256", TEST_SECRET, claims);
    struct th_resp r;
    upload(expired, &b, &r);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"vid2mp3\",\"sub\":\"" ADMIN "\",\"username\":\"" ADMIN "\","
             "\"admin\":true,\"iat\":%lld,\"exp\":%lld}",
             now, now + 3600);
    char *forged = th_forge_jwt("HS256", "another-secret-0123456789abcdef0123", claims);
    expect_error(forged, &b, 401, "invalid_token");
    char *none = th_forge_jwt("none", NULL, claims);
    expect_error(none, &b, 401, "invalid_token");

    expect_error(plain_token, &b, 403, "forbidden");
    assert_unchanged(&before);
    free(expired);
    free(forged);
    free(none);
    free(b.data);
}

static void upload_refuses_bad_forms(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct th_resp r;

    /* not multipart at all */
    struct body raw = {0};
    put(&raw, clip.data, clip.len);
    gw_request("POST", "/upload", admin_token, NULL, "video/mp4", &raw, &r);
    th_assert_error(&r, 415, "unsupported_media_type");
    th_resp_free(&r);
    /* multipart without a boundary */
    gw_request("POST", "/upload", admin_token, NULL, "multipart/form-data", &raw, &r);
    th_assert_error(&r, 400, "malformed_multipart");
    th_resp_free(&r);
    /* a boundary that never appears */
    gw_request("POST", "/upload", admin_token, NULL, "multipart/form-data; boundary=nothere", &raw,
               &r);
    th_assert_error(&r, 400, "malformed_multipart");
    th_resp_free(&r);
    free(raw.data);

    /* no file: only a field */
    struct body b = {0};
    part(&b, "quality", NULL, "2", 1);
    close_body(&b);
    expect_error(admin_token, &b, 400, "missing_file");
    free(b.data);
    /* an empty form */
    memset(&b, 0, sizeof(b));
    close_body(&b);
    expect_error(admin_token, &b, 400, "malformed_multipart");
    free(b.data);
    /* two files */
    memset(&b, 0, sizeof(b));
    part(&b, "file", "a.mp4", clip.data, clip.len);
    part(&b, "file", "b.mp4", clip.data, clip.len);
    close_body(&b);
    expect_error(admin_token, &b, 400, "too_many_files");
    free(b.data);
    /* the file under another name */
    memset(&b, 0, sizeof(b));
    part(&b, "video", "a.mp4", clip.data, clip.len);
    close_body(&b);
    expect_error(admin_token, &b, 400, "wrong_field");
    free(b.data);
    /* "file" as a plain field */
    memset(&b, 0, sizeof(b));
    part(&b, "file", NULL, "hello", 5);
    close_body(&b);
    expect_error(admin_token, &b, 400, "invalid_file_field");
    free(b.data);
    /* an unknown field */
    b = upload_body("a.mp4", &clip, "colour=blue", NULL);
    expect_error(admin_token, &b, 400, "unknown_field");
    free(b.data);
    /* cut short: no closing boundary */
    memset(&b, 0, sizeof(b));
    part(&b, "file", "a.mp4", clip.data, clip.len);
    expect_error(admin_token, &b, 400, "malformed_multipart");
    free(b.data);
    /* cut in the middle of the file */
    memset(&b, 0, sizeof(b));
    part(&b, "file", "a.mp4", clip.data, clip.len);
    b.len = b.len / 2;
    expect_error(admin_token, &b, 400, "malformed_multipart");
    free(b.data);
    assert_unchanged(&before);
}

static void upload_refuses_bad_options(void **state)
{
    (void)state;
    struct snapshot before = snap();
    const char *bad[][2] = {
        {"bitrate=100", "invalid_bitrate"},
        {"bitrate=0", "invalid_bitrate"},
        {"bitrate=-128", "invalid_bitrate"},
        {"bitrate=abc", "invalid_bitrate"},
        {"bitrate=", "invalid_bitrate"},
        {"bitrate=1280", "invalid_bitrate"},
        {"quality=10", "invalid_quality"},
        {"quality=-1", "invalid_quality"},
        {"quality=2.5", "invalid_quality"},
        {"quality=x", "invalid_quality"},
        {"quality=99999999999999999999", "invalid_options"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct body b = upload_body("a.mp4", &clip, bad[i][0], NULL);
        struct th_resp r;
        upload(admin_token, &b, &r);
        if (r.status != 400 || strstr(r.body, bad[i][1]) == NULL)
            fail_msg("%s: status %ld: %s", bad[i][0], r.status, r.body);
        th_resp_free(&r);
        free(b.data);
    }
    struct body b = upload_body("a.mp4", &clip, "bitrate=128", "quality=2");
    expect_error(admin_token, &b, 400, "invalid_options");
    free(b.data);
    b = upload_body("a.mp4", &clip, "quality=2", "quality=3");
    expect_error(admin_token, &b, 400, "invalid_options");
    free(b.data);
    assert_unchanged(&before);
}

static void upload_refuses_what_is_not_media(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct file empty = {"", 0};
    struct body b = upload_body("empty.mp4", &empty, NULL, NULL);
    expect_error(admin_token, &b, 415, "empty_file");
    free(b.data);

    const char *text = "This is not a video.\nJust some text that claims to be one.\n";
    struct file t = {(char *)text, strlen(text)};
    b = upload_body("notes.mp4", &t, NULL, NULL);
    expect_error(admin_token, &b, 415, "unsupported_media");
    free(b.data);

    /* random bytes, small and larger than the probe's window */
    size_t sizes[] = {1000, 300000};
    for (int i = 0; i < 2; i++) {
        struct file rnd = {malloc(sizes[i]), sizes[i]};
        randombytes_buf(rnd.data, rnd.len);
        b = upload_body("random.mp4", &rnd, NULL, NULL);
        expect_error(admin_token, &b, 415, "unsupported_media");
        free(b.data);
        free(rnd.data);
    }
    assert_unchanged(&before);
}

static void upload_over_the_limit(void **state)
{
    (void)state;
    struct snapshot before = snap();
    /* Content-Length far past the limit: refused before the body is read */
    struct file big = padded_clip(MAX_UPLOAD * 2);
    struct body b = upload_body("big.mp4", &big, NULL, NULL);
    expect_error(admin_token, &b, 413, "payload_too_large");
    free(b.data);
    free(big.data);
    /* a body within the framing allowance whose file is one byte too many */
    big = padded_clip(MAX_UPLOAD + 1);
    b = upload_body("big.mp4", &big, NULL, NULL);
    expect_error(admin_token, &b, 413, "file_too_large");
    free(b.data);
    free(big.data);
    assert_unchanged(&before);
}

/* Opens a raw connection and sends an upload's headers and the first
 * part of its body (declared length total). Returns the socket. */
static int partial_upload(const struct body *b, size_t send_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gw.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char head[TOKEN_MAX_LEN + 512];
    int n = snprintf(head, sizeof(head),
                     "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: multipart/form-data; boundary=" BOUNDARY "\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     admin_token, b->len);
    assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    size_t off = 0;
    while (off < send_len) {
        ssize_t k = send(fd, b->data + off, send_len - off, MSG_NOSIGNAL);
        assert_true(k > 0);
        off += (size_t)k;
    }
    return fd;
}

/* Reads the reply on fd until the server closes or 4 KiB arrived. */
static void read_reply(int fd, char *reply, size_t len)
{
    size_t got = 0;
    ssize_t n;
    while (got < len - 1 && (n = recv(fd, reply + got, len - 1 - got, 0)) > 0) {
        got += (size_t)n;
        if (strstr(reply, "\r\n\r\n") != NULL && strchr(strstr(reply, "\r\n\r\n"), '}'))
            break;
        reply[got] = '\0';
    }
    reply[got] = '\0';
}

/* A client that writes the body a few bytes at a time: every part must be
 * seen once, however the body is cut (libmicrohttpd announces a part
 * twice when a piece ends just inside its value). */
static void upload_in_small_writes(void **state)
{
    (void)state;
    struct body b = upload_body("small-writes.mp4", &clip, "bitrate=128", NULL);
    int one = 1;
    for (size_t step = 1; step <= 7; step += 3) {
        int fd = partial_upload(&b, 0);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        size_t sent = 0;
        while (sent < b.len) {
            size_t n = sent < 600 ? step : b.len - sent; /* part headers and first bytes */
            if (n > b.len - sent)
                n = b.len - sent;
            assert_int_equal(send(fd, b.data + sent, n, MSG_NOSIGNAL), (ssize_t)n);
            sent += n;
            if (sent < 600)
                th_sleep_ms(1);
        }
        char reply[4096];
        read_reply(fd, reply, sizeof(reply));
        close(fd);
        if (strncmp(reply, "HTTP/1.1 202", 12) != 0)
            fail_msg("upload in %zu-byte writes: %s", step, reply);
    }
    free(b.data);
}

static void upload_client_goes_away(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct file f = padded_clip(2000000);
    struct body b = upload_body("gone.mp4", &f, NULL, NULL);
    long aborted = metric(ABORTED);
    int fd = partial_upload(&b, b.len / 2);
    th_sleep_ms(200);
    close(fd);
    wait_aborted(aborted, 10);
    assert_unchanged(&before);
    free(b.data);
    free(f.data);
}

static void upload_client_stalls(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct file f = padded_clip(2000000);
    struct body b = upload_body("stalled.mp4", &f, NULL, NULL);
    long aborted = metric(ABORTED);
    int fd = partial_upload(&b, b.len / 2);
    /* no byte for the idle timeout: the gateway closes and forgets it */
    wait_aborted(aborted, IDLE_SECONDS + 8);
    close(fd);
    assert_unchanged(&before);
    free(b.data);
    free(f.data);
}

/* ---------- jobs ---------- */

static void jobs_list_and_get(void **state)
{
    (void)state;
    char ids[3][25], fid[25];
    upload_ok("one.mp4", &clip, NULL, ids[0], fid);
    th_sleep_ms(5); /* distinct creation times */
    upload_ok("two.mp4", &clip, NULL, ids[1], fid);
    th_sleep_ms(5);
    upload_ok("three.mp4", &clip, NULL, ids[2], fid);

    struct th_resp r;
    get("/jobs?limit=2", admin_token, &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    json_t *list = json_object_get(j, "jobs");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "job_id")),
                        ids[2]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "job_id")),
                        ids[1]);
    json_t *next = json_object_get(j, "next_before");
    assert_true(json_is_string(next));
    char path[128];
    snprintf(path, sizeof(path), "/jobs?limit=1&before=%s", json_string_value(next));
    json_decref(j);
    th_resp_free(&r);
    get(path, admin_token, &r);
    j = th_json(&r);
    list = json_object_get(j, "jobs");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "job_id")),
                        ids[0]);
    json_decref(j);
    th_resp_free(&r);

    /* one job: the record of DESIGN §4 */
    snprintf(path, sizeof(path), "/jobs/%s", ids[1]);
    get(path, admin_token, &r);
    assert_int_equal(r.status, 200);
    j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "job_id")), ids[1]);
    const char *status = json_string_value(json_object_get(j, "status"));
    if (all_in_one) /* the converter may have taken it already */
        assert_true(strcmp(status, "queued") == 0 || strcmp(status, "converting") == 0 ||
                    strcmp(status, "done") == 0);
    else
        assert_string_equal(status, "queued");
    assert_string_equal(json_string_value(json_object_get(j, "filename")), "two.mp4");
    assert_true(json_is_number(json_object_get(j, "progress")));
    assert_true(json_is_null(json_object_get(j, "mp3_fid")) || all_in_one);
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_true(json_is_string(json_object_get(j, "video_fid")));
    assert_true(json_is_string(json_object_get(j, "created_at")));
    assert_true(json_is_string(json_object_get(j, "updated_at")));
    json_decref(j);
    th_resp_free(&r);

    /* someone else's job does not exist for them; the plain user has none */
    get(path, plain_token, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    get("/jobs", plain_token, &r);
    assert_int_equal(r.status, 200);
    j = th_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "jobs")), 0);
    json_decref(j);
    th_resp_free(&r);

    get("/jobs/000000000000000000000000", admin_token, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    const char *bad_paths[] = {"/jobs/123", "/jobs/ZZZZZZZZZZZZZZZZZZZZZZZZ",
                               "/jobs/6b05607300bedc90b40e0c9%00", "/jobs/%2e%2e"};
    for (int i = 0; i < 4; i++) {
        get(bad_paths[i], admin_token, &r);
        th_assert_error(&r, 400, "invalid_job_id");
        th_resp_free(&r);
    }
    /* an encoded slash is a path separator: no such endpoint */
    get("/jobs/..%2F..%2Fetc%2Fpasswd", admin_token, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    const char *bad_queries[][2] = {
        {"/jobs?limit=0", "invalid_limit"},     {"/jobs?limit=101", "invalid_limit"},
        {"/jobs?limit=x", "invalid_limit"},     {"/jobs?before=-5", "invalid_cursor"},
        {"/jobs?before=123", "invalid_cursor"}, {"/jobs?before=123.xyz", "invalid_cursor"}};
    for (int i = 0; i < 6; i++) {
        get(bad_queries[i][0], admin_token, &r);
        th_assert_error(&r, 400, bad_queries[i][1]);
        th_resp_free(&r);
    }
    get("/jobs", NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
}

/* ---------- download ---------- */

static struct file mp3;    /* the content of the MP3 blob under test */
static char mp3_fid[25];   /* admin's */
static char plain_fid[25]; /* the plain user's, named with non-ASCII */

static void put_mp3(const char *owner, const char *filename, char out[25])
{
    struct blob_meta meta;
    memset(&meta, 0, sizeof(meta));
    snprintf(meta.owner, sizeof(meta.owner), "%s", owner);
    snprintf(meta.filename, sizeof(meta.filename), "%s", filename);
    snprintf(meta.content_type, sizeof(meta.content_type), "audio/mpeg");
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(blobs, BLOB_MP3S, &meta, &w), BLOB_OK);
    assert_int_equal(blob_write(w, mp3.data, mp3.len), BLOB_OK);
    struct blob_meta done;
    assert_int_equal(blob_commit(w, &done), BLOB_OK);
    snprintf(out, 25, "%s", done.id);
}

static void download_path(char *path, size_t len, const char *fid)
{
    snprintf(path, len, "/download?fid=%s", fid);
}

static void download_whole(void **state)
{
    (void)state;
    mp3.len = 600 * 1000 + 17; /* a few chunks, not a multiple of one */
    mp3.data = malloc(mp3.len);
    randombytes_buf(mp3.data, mp3.len);
    put_mp3(ADMIN, "holiday.mp4", mp3_fid);
    put_mp3(PLAIN, "r\xc3\xa9sum\xc3\xa9 \"final\".mkv", plain_fid);

    char path[128], buf[256];
    download_path(path, sizeof(path), mp3_fid);
    struct th_resp r;
    get(path, admin_token, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, mp3.len);
    assert_memory_equal(r.body, mp3.data, mp3.len);
    assert_string_equal(th_header(&r, "Content-Type", buf, sizeof(buf)), "audio/mpeg");
    assert_string_equal(th_header(&r, "Accept-Ranges", buf, sizeof(buf)), "bytes");
    assert_string_equal(th_header(&r, "Content-Disposition", buf, sizeof(buf)),
                        "attachment; filename=\"holiday.mp3\"");
    snprintf(path, sizeof(path), "%zu", mp3.len);
    assert_string_equal(th_header(&r, "Content-Length", buf, sizeof(buf)), path);
    char etag[80];
    assert_non_null(th_header(&r, "ETag", etag, sizeof(etag)));
    assert_int_equal(etag[0], '"');
    th_resp_free(&r);

    /* HEAD: the same headers, no body */
    download_path(path, sizeof(path), mp3_fid);
    gw_request("HEAD", path, admin_token, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    char len_text[32];
    snprintf(len_text, sizeof(len_text), "%zu", mp3.len);
    assert_string_equal(th_header(&r, "Content-Length", buf, sizeof(buf)), len_text);
    th_resp_free(&r);

    /* a matching If-None-Match: 304 */
    char inm[128];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *more[] = {inm, NULL};
    gw_request("GET", path, admin_token, more, NULL, NULL, &r);
    assert_int_equal(r.status, 304);
    th_resp_free(&r);

    /* a non-ASCII name with quotes: ASCII fallback plus RFC 8187 */
    download_path(path, sizeof(path), plain_fid);
    get(path, plain_token, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Content-Disposition", buf, sizeof(buf)),
                        "attachment; filename=\"r__sum__ _final_.mp3\"; "
                        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.mp3");
    th_resp_free(&r);
}

static void expect_range(const char *range, long status, size_t first, size_t last)
{
    char path[128], hdr[128], buf[128], want[128];
    download_path(path, sizeof(path), mp3_fid);
    snprintf(hdr, sizeof(hdr), "Range: %s", range);
    const char *more[] = {hdr, NULL};
    struct th_resp r;
    gw_request("GET", path, admin_token, more, NULL, NULL, &r);
    if (r.status != status)
        fail_msg("Range %s: status %ld, want %ld", range, r.status, status);
    if (status == 206) {
        assert_int_equal(r.len, last - first + 1);
        assert_memory_equal(r.body, mp3.data + first, r.len);
        snprintf(want, sizeof(want), "bytes %zu-%zu/%zu", first, last, mp3.len);
        assert_string_equal(th_header(&r, "Content-Range", buf, sizeof(buf)), want);
    } else if (status == 416) {
        snprintf(want, sizeof(want), "bytes */%zu", mp3.len);
        assert_string_equal(th_header(&r, "Content-Range", buf, sizeof(buf)), want);
        th_assert_error(&r, 416, "range_not_satisfiable");
    } else {
        assert_int_equal(r.len, mp3.len);
    }
    th_resp_free(&r);
}

static void download_ranges(void **state)
{
    (void)state;
    size_t n = mp3.len;
    expect_range("bytes=0-0", 206, 0, 0);
    expect_range("bytes=0-99", 206, 0, 99);
    expect_range("bytes=-100", 206, n - 100, n - 1);
    expect_range("bytes=500-", 206, 500, n - 1);
    expect_range("bytes=300000-300010", 206, 300000, 300010); /* inside a later chunk */
    expect_range("bytes=500-99999999", 206, 500, n - 1);      /* end clamped */
    expect_range("bytes=-99999999", 206, 0, n - 1);
    char r[64];
    snprintf(r, sizeof(r), "bytes=%zu-", n);
    expect_range(r, 416, 0, 0);
    expect_range("bytes=99999999-", 416, 0, 0);
    expect_range("bytes=-0", 416, 0, 0);
    expect_range("bytes=0-1,5-6", 200, 0, 0); /* several ranges: the whole file */
    expect_range("items=0-1", 200, 0, 0);
    expect_range("bytes=5-1", 200, 0, 0);
    expect_range("garbage", 200, 0, 0);

    /* If-Range with another version's tag: the whole file */
    char path[128];
    download_path(path, sizeof(path), mp3_fid);
    const char *more[] = {"Range: bytes=0-0", "If-Range: \"other\"", NULL};
    struct th_resp resp;
    gw_request("GET", path, admin_token, more, NULL, NULL, &resp);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.len, n);
    th_resp_free(&resp);
}

static void download_isolation(void **state)
{
    (void)state;
    char path[160];
    struct th_resp r, unknown;
    /* the plain user asking for the admin's file gets what an unknown id gets */
    download_path(path, sizeof(path), mp3_fid);
    get(path, plain_token, &r);
    get("/download?fid=000000000000000000000000", plain_token, &unknown);
    th_assert_error(&r, 404, "not_found");
    assert_int_equal(unknown.status, 404);
    assert_string_equal(r.body, unknown.body);
    th_resp_free(&r);
    th_resp_free(&unknown);
    /* an administrator may download anyone's */
    download_path(path, sizeof(path), plain_fid);
    get(path, admin_token, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* a video id is not an MP3 id */
    char job_id[25], video_fid[25];
    upload_ok("video-not-mp3.mp4", &clip, NULL, job_id, video_fid);
    download_path(path, sizeof(path), video_fid);
    get(path, admin_token, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);

    const char *bad[] = {"/download?fid=../../etc/passwd", "/download?fid=123",
                         "/download?fid=6b05607300bedc90b40e0c9G",
                         "/download?fid=6b05607300bedc90b40e0c91aa", "/download?fid=%2e%2e%2f"};
    for (int i = 0; i < 5; i++) {
        get(bad[i], admin_token, &r);
        th_assert_error(&r, 400, "invalid_fid");
        th_resp_free(&r);
    }
    get("/download", admin_token, &r);
    th_assert_error(&r, 400, "missing_fid");
    th_resp_free(&r);
    download_path(path, sizeof(path), mp3_fid);
    get(path, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    free(mp3.data);
}

/* The web page's <audio> and download links carry no header: POST
 * /download-session turns the caller's token into an HttpOnly cookie for
 * /download alone, which DELETE clears. No token in any URL. */
static void download_with_cookie(void **state)
{
    (void)state;
    char path[128], cookie[TOKEN_MAX_LEN + 64], buf[TOKEN_MAX_LEN + 256], want[TOKEN_MAX_LEN + 128];
    struct th_resp r;
    gw_request("POST", "/download-session", admin_token, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "Set-Cookie", buf, sizeof(buf)));
    snprintf(want, sizeof(want), "vid2mp3_download=%s; Path=/download; HttpOnly; SameSite=Strict",
             admin_token);
    assert_string_equal(buf, want); /* a session cookie: no Max-Age */
    json_t *j = th_json(&r);
    json_int_t left = json_integer_value(json_object_get(j, "expires_in"));
    assert_true(left > 3600 && left <= 24 * 3600); /* the token's lifetime */
    json_decref(j);
    assert_null(strstr(buf, "Secure")); /* plain HTTP here */
    th_resp_free(&r);
    const char *https[] = {"X-Forwarded-Proto: https", NULL};
    gw_request("POST", "/download-session", admin_token, https, NULL, NULL, &r);
    assert_non_null(strstr(th_header(&r, "Set-Cookie", buf, sizeof(buf)), "; Secure"));
    th_resp_free(&r);

    /* the cookie is what the browser sends back */
    download_path(path, sizeof(path), mp3_fid);
    snprintf(cookie, sizeof(cookie), "Cookie: theme=dark; vid2mp3_download=%s", admin_token);
    const char *with_range[] = {cookie, "Range: bytes=100-199", NULL};
    gw_request("GET", path, NULL, with_range, NULL, NULL, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.len, 100);
    assert_memory_equal(r.body, mp3.data + 100, 100);
    th_resp_free(&r);
    /* checked like the header: someone else's file, bad tokens */
    snprintf(cookie, sizeof(cookie), "Cookie: vid2mp3_download=%s", plain_token);
    const char *plain[] = {cookie, NULL};
    gw_request("GET", path, NULL, plain, NULL, NULL, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);
    char *forged = th_forge_jwt("none", NULL, "{\"sub\":\"" ADMIN "\",\"admin\":true}");
    const char *bad[] = {"x", "a.b.c", forged};
    for (int i = 0; i < 3; i++) {
        snprintf(cookie, sizeof(cookie), "Cookie: vid2mp3_download=%s", bad[i]);
        const char *h[] = {cookie, NULL};
        gw_request("GET", path, NULL, h, NULL, NULL, &r);
        if (r.status != 401)
            fail_msg("cookie '%s': status %ld", bad[i], r.status);
        th_resp_free(&r);
    }
    free(forged);
    /* the header wins over the cookie */
    gw_request("GET", path, plain_token, with_range, NULL, NULL, &r);
    th_assert_error(&r, 404, "not_found");
    th_resp_free(&r);

    /* nowhere else, and never a token in the query */
    snprintf(cookie, sizeof(cookie), "Cookie: vid2mp3_download=%s", admin_token);
    const char *admin_cookie[] = {cookie, NULL};
    gw_request("GET", "/jobs", NULL, admin_cookie, NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    char qpath[TOKEN_MAX_LEN + 128];
    snprintf(qpath, sizeof(qpath), "/download?fid=%s&access_token=%s", mp3_fid, admin_token);
    get(qpath, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);

    /* setting it needs a valid token; clearing it does not */
    gw_request("POST", "/download-session", NULL, NULL, NULL, NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    gw_request("POST", "/download-session", "a.b.c", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_null(th_header(&r, "Set-Cookie", buf, sizeof(buf)));
    th_resp_free(&r);
    gw_request("DELETE", "/download-session", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Set-Cookie", buf, sizeof(buf)),
                        "vid2mp3_download=; Path=/download; HttpOnly; SameSite=Strict; Max-Age=0");
    th_resp_free(&r);
}

/* ---------- the web page ---------- */

/* The page, its script and style sheet, and the API description: built
 * in, byte for byte the repository's files, revalidated by ETag, with a
 * Content-Security-Policy that allows no inline script. */
static void web_page(void **state)
{
    (void)state;
    static const struct {
        const char *path, *file, *type;
    } files[] = {
        {"/", "web/index.html", "text/html; charset=utf-8"},
        {"/app.js", "web/app.js", "text/javascript; charset=utf-8"},
        {"/app.css", "web/app.css", "text/css; charset=utf-8"},
        {"/openapi.json", "docs/openapi.json", "application/json"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char fpath[600], buf[512], etag[80], inm[120];
        snprintf(fpath, sizeof(fpath), "%s/%s", VID2MP3_SOURCE_DIR, files[i].file);
        size_t len = 0;
        char *want = th_slurp(fpath, &len);
        assert_non_null(want);
        struct th_resp r;
        get(files[i].path, NULL, &r);
        if (r.status != 200)
            fail_msg("GET %s: %ld", files[i].path, r.status);
        assert_int_equal(r.len, len);
        assert_memory_equal(r.body, want, len);
        assert_string_equal(th_header(&r, "Content-Type", buf, sizeof(buf)), files[i].type);
        assert_string_equal(th_header(&r, "Cache-Control", buf, sizeof(buf)), "no-cache");
        assert_string_equal(th_header(&r, "X-Content-Type-Options", buf, sizeof(buf)), "nosniff");
        const char *csp = th_header(&r, "Content-Security-Policy", buf, sizeof(buf));
        assert_non_null(csp);
        assert_non_null(strstr(csp, "default-src 'none'"));
        assert_non_null(strstr(csp, "script-src 'self';"));
        assert_null(strstr(csp, "unsafe"));
        assert_non_null(th_header(&r, "ETag", etag, sizeof(etag)));
        th_resp_free(&r);
        /* revalidation: the same tag gets 304 and no body */
        snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
        const char *more[] = {inm, NULL};
        gw_request("GET", files[i].path, NULL, more, NULL, NULL, &r);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.len, 0);
        th_resp_free(&r);
        const char *stale[] = {"If-None-Match: \"0123\"", NULL};
        gw_request("GET", files[i].path, NULL, stale, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        gw_request("HEAD", files[i].path, NULL, NULL, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        th_resp_free(&r);
        free(want);
    }
    struct th_resp r;
    /* the page names its script and style sheet, and has no inline script */
    get("/", NULL, &r);
    assert_non_null(strstr(r.body, "src=\"/app.js\""));
    assert_non_null(strstr(r.body, "href=\"/app.css\""));
    assert_null(strstr(r.body, "<script>"));
    assert_null(strstr(r.body, " style=\""));
    th_resp_free(&r);
    const char *missing[] = {"/index.html", "/app.js/", "/web/app.js", "/../web/app.js", "//"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        get(missing[i], NULL, &r);
        if (r.status != 404)
            fail_msg("GET %s: %ld, want 404", missing[i], r.status);
        th_resp_free(&r);
    }
    gw_request("POST", "/", NULL, NULL, "text/plain", NULL, &r);
    th_assert_error(&r, 405, "method_not_allowed");
    th_resp_free(&r);
}

/* ---------- the event stream ---------- */

struct stream {
    int fd;
    char buf[128 * 1024]; /* what arrived, NUL-terminated; oldest half dropped when full */
    size_t len;
};

static void events_open(struct stream *s, const char *token)
{
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    s->len = 0;
    s->buf[0] = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gw.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char head[TOKEN_MAX_LEN + 256];
    int n = snprintf(head, sizeof(head),
                     "GET /jobs/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Accept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n",
                     token);
    assert_int_equal(send(s->fd, head, (size_t)n, MSG_NOSIGNAL), n);
}

/* Reads until needle has arrived (true), the server closed, or ms passed. */
static bool events_wait(struct stream *s, const char *needle, int ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (needle != NULL && strstr(s->buf, needle) != NULL)
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = ms - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        if (s->len > sizeof(s->buf) - 4096) {
            size_t half = s->len / 2;
            memmove(s->buf, s->buf + half, s->len - half + 1);
            s->len -= half;
        }
        ssize_t k = recv(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len, 0);
        if (k <= 0)
            return false;
        s->len += (size_t)k;
        s->buf[s->len] = '\0';
    }
}

/* The stream's first event: the caller's newest jobs, then an event for
 * each job created or changed, only the caller's, for longer than the
 * idle timeout (pings keep it open). */
static void events_stream(void **state)
{
    (void)state;
    static struct stream admin_s, plain_s;
    events_open(&admin_s, admin_token);
    events_open(&plain_s, plain_token);
    assert_true(events_wait(&admin_s, "\r\n\r\n", 5000));
    if (strncmp(admin_s.buf, "HTTP/1.1 200", 12) != 0)
        fail_msg("GET /jobs/events: %s", admin_s.buf);
    assert_non_null(strstr(admin_s.buf, "Content-Type: text/event-stream"));
    assert_non_null(strstr(admin_s.buf, "Cache-Control: no-cache"));
    assert_true(events_wait(&admin_s, "retry: 2000\n", 5000));
    assert_true(events_wait(&admin_s, "event: jobs\ndata: {\"jobs\":[", 5000));
    /* the snapshot is GET /jobs's first page: the newest job first */
    struct th_resp r;
    get("/jobs?limit=1", admin_token, &r);
    json_t *j = th_json(&r);
    const char *newest =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "jobs"), 0), "job_id"));
    char want[80];
    snprintf(want, sizeof(want), "data: {\"jobs\":[{\"job_id\":\"%s\"", newest);
    assert_non_null(strstr(admin_s.buf, want));
    json_decref(j);
    th_resp_free(&r);
    assert_true(events_wait(&plain_s, "event: jobs\n", 5000));

    char job_id[25], video_fid[25];
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            th_sleep_ms(IDLE_SECONDS * 1000 * 2); /* past the idle timeout */
        upload_ok("live.mp4", &clip, NULL, job_id, video_fid);
        snprintf(want, sizeof(want), "event: job\ndata: {\"job_id\":\"%s\"", job_id);
        if (!events_wait(&admin_s, want, 5000))
            fail_msg("round %d: no event for job %s; the stream has: %s", round, job_id,
                     admin_s.buf);
    }
    if (all_in_one) {
        /* the converter's changes, made in its own thread, arrive */
        snprintf(want, sizeof(want), "\"job_id\":\"%s\",\"status\":\"done\"", job_id);
        if (!events_wait(&admin_s, want, 60000))
            fail_msg("no event for %s done: %s", job_id, admin_s.buf);
    } else {
        /* a change the gateway did not make (the converter's, in another
         * process) arrives too */
        struct job_update u = {
            .from = JOB_FROM(JOB_QUEUED), .set = JOB_SET_PROGRESS, .progress = 0.25};
        assert_int_equal(jobs_update(jobs, job_id, &u), JOBS_OK);
        snprintf(want, sizeof(want), "\"job_id\":\"%s\",\"status\":\"queued\",\"progress\":0.25",
                 job_id);
        if (!events_wait(&admin_s, want, 5000))
            fail_msg("no event for the progress of %s: %s", job_id, admin_s.buf);
    }
    /* the plain user saw none of the admin's jobs */
    assert_false(events_wait(&plain_s, job_id, 1000));
    assert_null(strstr(plain_s.buf, "event: job\n"));
    close(admin_s.fd);
    close(plain_s.fd);
}

/* Each stream holds a thread: past EVENTS_MAX_STREAMS (64) the gateway
 * answers 503, and a closed stream frees its place. */
static void events_limits(void **state)
{
    (void)state;
    struct th_resp r;
    get("/jobs/events", NULL, &r);
    th_assert_error(&r, 401, "missing_token");
    th_resp_free(&r);
    get("/jobs/events", "not-a-token", &r);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);

    enum { MAX = 64 };
    static struct stream s[MAX + 1];
    /* the streams the tests before closed are gone once the gateway has
     * written to them again (a ping within a third of the idle timeout) */
    th_sleep_ms(IDLE_SECONDS * 1000);
    for (int i = 0; i < MAX; i++) {
        events_open(&s[i], plain_token);
        if (!events_wait(&s[i], "event: jobs\n", 10000))
            fail_msg("stream %d did not open: %s", i, s[i].buf);
    }
    events_open(&s[MAX], plain_token);
    assert_true(events_wait(&s[MAX], "}}", 5000));
    if (strncmp(s[MAX].buf, "HTTP/1.1 503", 12) != 0 ||
        strstr(s[MAX].buf, "too_many_streams") == NULL ||
        strstr(s[MAX].buf, "Retry-After: ") == NULL)
        fail_msg("stream %d: %s", MAX, s[MAX].buf);
    close(s[MAX].fd);
    for (int i = 0; i < MAX; i++)
        close(s[i].fd);
    /* the gateway notices at its next write (a ping within the idle timeout) */
    for (int tries = 0;; tries++) {
        events_open(&s[0], plain_token);
        bool ok = events_wait(&s[0], "event: jobs\n", 5000);
        close(s[0].fd);
        if (ok)
            break;
        if (tries == 10)
            fail_msg("no stream could open again after the others closed: %s", s[0].buf);
        th_sleep_ms(1000);
    }
}

/* ---------- dependencies ---------- */

/* GET /openapi.json: the built-in API description, no token needed. */
static void openapi_document(void **state)
{
    (void)state;
    struct th_resp r;
    get("/openapi.json", NULL, &r);
    assert_int_equal(r.status, 200);
    char buf[128];
    assert_string_equal(th_header(&r, "Content-Type", buf, sizeof(buf)), "application/json");
    assert_string_equal(th_header(&r, "Cache-Control", buf, sizeof(buf)), "no-cache");
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "openapi")), "3.1.0");
    assert_non_null(json_object_get(json_object_get(j, "paths"), "/upload"));
    json_decref(j);
    th_resp_free(&r);
}

static void check_storage(void **state)
{
    (void)state;
    struct th_resp r;
    get("/check-mongo", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "storage")),
                        distributed ? "gridfs" : "fs");
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    th_resp_free(&r);
    get("/readyz", NULL, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void auth_service_down(void **state)
{
    (void)state;
    assert_int_equal(server_stop(&auth, SIGTERM), 0);
    struct th_resp r;
    post(&gw, "/login", NULL, "application/json",
         "{\"email\":\"" ADMIN "\",\"password\":\"" ADMIN_PW "\"}", &r);
    th_assert_error(&r, 503, "auth_unavailable");
    char buf[32];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof(buf)));
    th_resp_free(&r);
    const char *paths[] = {"/jobs", "/jobs/events", "/download-session"};
    for (int i = 0; i < 3; i++) {
        gw_request(i == 2 ? "POST" : "GET", paths[i], admin_token, NULL, NULL, NULL, &r);
        if (distributed) /* tokens are checked by the auth service */
            th_assert_error(&r, 503, "auth_unavailable");
        else if (i != 1) /* tokens are checked here */
            assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    server_start(&auth, "auth");
    get("/jobs", admin_token, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void *stop_broker(void *arg)
{
    atomic_int *stopped = arg;
    atomic_store(stopped, th_services("rabbitmq-stop") == 0 ? 1 : -1);
    return NULL;
}

static void broker_down_mid_upload(void **state)
{
    (void)state;
    struct snapshot before = snap();
    struct file f = padded_clip(1000000);
    struct body b = upload_body("broker-down.mp4", &f, NULL, NULL);
    size_t sent = b.len - 4000;
    int fd = partial_upload(&b, sent);
    /* the broker stops while the body is still arriving (a byte now and
     * then keeps the connection inside the idle timeout) */
    pthread_t t;
    atomic_int stopped = 0;
    assert_int_equal(pthread_create(&t, NULL, stop_broker, &stopped), 0);
    while (!atomic_load(&stopped) && sent < b.len - 100) {
        assert_int_equal(send(fd, b.data + sent, 10, MSG_NOSIGNAL), 10);
        sent += 10;
        th_sleep_ms(300);
    }
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&stopped), 1);
    ssize_t k = send(fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
    assert_int_equal(k, (ssize_t)(b.len - sent));
    char reply[4096];
    read_reply(fd, reply, sizeof(reply));
    close(fd);
    if (strncmp(reply, "HTTP/1.1 503", 12) != 0 || strstr(reply, "queue_unavailable") == NULL)
        fail_msg("upload with the broker down: %s", reply);
    /* refused before the body while it is down */
    struct th_resp r;
    upload(admin_token, &b, &r);
    th_assert_error(&r, 503, "queue_unavailable");
    th_resp_free(&r);
    assert_int_equal(th_services("rabbitmq-start"), 0);
    struct snapshot now = {admin_jobs(), before.queued, stored_objects()};
    assert_int_equal(now.jobs, before.jobs);
    assert_int_equal(now.objects, before.objects);
    assert_int_equal(queued(), before.queued);
    /* and back: uploads are accepted again without a restart */
    char job_id[25], fid[25];
    for (int i = 0; i < 100; i++) {
        upload(admin_token, &b, &r);
        long st = r.status;
        th_resp_free(&r);
        if (st == 202)
            break;
        assert_int_equal(st, 503);
        th_sleep_ms(200);
    }
    upload_ok("broker-back.mp4", &clip, NULL, job_id, fid);
    free(b.data);
    free(f.data);
}

static void storage_down(void **state)
{
    (void)state;
    assert_int_equal(th_services("mongo-stop"), 0);
    struct body b = upload_body("storage-down.mp4", &clip, NULL, NULL);
    struct th_resp r;
    upload(admin_token, &b, &r);
    th_assert_error(&r, 503, "storage_unavailable");
    th_resp_free(&r);
    get("/check-mongo", NULL, &r);
    th_assert_error(&r, 503, "storage_unavailable");
    th_resp_free(&r);
    get("/jobs", admin_token, &r);
    th_assert_error(&r, 503, "storage_unavailable");
    th_resp_free(&r);
    get("/jobs/events", admin_token, &r);
    th_assert_error(&r, 503, "storage_unavailable");
    th_resp_free(&r);
    get("/readyz", NULL, &r);
    assert_int_equal(r.status, 503);
    th_resp_free(&r);
    assert_int_equal(th_services("mongo-start"), 0);
    /* back without a restart (the test server starts empty) */
    char job_id[25], fid[25];
    upload_ok("storage-back.mp4", &clip, NULL, job_id, fid);
    free(b.data);
}

static void gateway_stops_cleanly(void **state)
{
    (void)state;
    /* an open event stream ends at once rather than holding the stop for
     * the grace period (SHUTDOWN_GRACE_SECONDS=10) */
    static struct stream s;
    events_open(&s, admin_token);
    assert_true(events_wait(&s, "event: jobs\n", 5000));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(server_stop(&gw, SIGTERM), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (t1.tv_sec - t0.tv_sec > 5)
        fail_msg("the gateway took %lld s to stop with an event stream open",
                 (long long)(t1.tv_sec - t0.tv_sec));
    events_wait(&s, NULL, 2000);
    if (strstr(s.buf, "\r\n0\r\n\r\n") == NULL) /* the last chunk: a clean end */
        fail_msg("the event stream did not end cleanly: %s",
                 s.buf + (s.len > 200 ? s.len - 200 : 0));
    close(s.fd);
    assert_int_equal(server_stop(&auth, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "embedded") != 0 && strcmp(argv[2], "distributed") != 0 &&
                      strcmp(argv[2], "all") != 0)) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3 embedded|distributed|all\n", argv[0]);
        return 2;
    }
    if (server_args(2, argv) != 0)
        return 2;
    distributed = strcmp(argv[2], "distributed") == 0;
    all_in_one = strcmp(argv[2], "all") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(login_forwarded),
        cmocka_unit_test(upload_stores_bytes_and_queues),
        cmocka_unit_test(upload_message_fields),
        cmocka_unit_test(upload_needs_a_valid_token),
        cmocka_unit_test(upload_refuses_bad_forms),
        cmocka_unit_test(upload_refuses_bad_options),
        cmocka_unit_test(upload_refuses_what_is_not_media),
        cmocka_unit_test(upload_over_the_limit),
        cmocka_unit_test(upload_in_small_writes),
        cmocka_unit_test(upload_client_goes_away),
        cmocka_unit_test(upload_client_stalls),
        cmocka_unit_test(jobs_list_and_get),
        cmocka_unit_test(download_whole),
        cmocka_unit_test(download_ranges),
        cmocka_unit_test(download_with_cookie),
        cmocka_unit_test(download_isolation),
        cmocka_unit_test(web_page),
        cmocka_unit_test(events_stream),
        cmocka_unit_test(events_limits),
        cmocka_unit_test(check_storage),
        cmocka_unit_test(openapi_document),
        cmocka_unit_test(auth_service_down),
        /* distributed only: the servers of scripts/test-services.sh stop */
        cmocka_unit_test(broker_down_mid_upload),
        cmocka_unit_test(storage_down),
        /* last: SIGTERM, exit 0 (and, in the sanitizer build, no leak) */
        cmocka_unit_test(gateway_stops_cleanly),
    };
    struct CMUnitTest run[sizeof(tests) / sizeof(tests[0])];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        bool fault = strcmp(tests[i].name, "broker_down_mid_upload") == 0 ||
                     strcmp(tests[i].name, "storage_down") == 0;
        /* in `all` there is no auth process to stop, and the converter
         * takes the queued messages */
        bool not_in_all = strcmp(tests[i].name, "auth_service_down") == 0 ||
                          strcmp(tests[i].name, "upload_message_fields") == 0;
        if ((distributed || !fault) && (!all_in_one || !not_in_all))
            run[n++] = tests[i];
    }
    int rc = _cmocka_run_group_tests("gateway", run, n, group_setup, group_teardown);
    return rc;
}
