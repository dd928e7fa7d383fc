/*
 * End to end: the user's whole path through the real binaries, and the
 * faults an operator meets, in both topologies.
 *
 * Usage: test_e2e PATH/TO/vid2mp3 embedded|mixed|distributed
 *   embedded     one `vid2mp3 all` process: SQLite users, jobs and queue,
 *                files, emails in DATA_DIR/outbox
 *   mixed        one `vid2mp3 all` process with SQLite users but GridFS,
 *                MongoDB jobs, RabbitMQ and SMTP (any mix works)
 *   distributed  four processes (auth, gateway, converter, notifier) on
 *                the real MariaDB, RabbitMQ, MongoDB-wire and SMTP servers
 *                of scripts/test-services.sh
 * Nothing is reached around the services: users come from the command
 * line and the HTTP API, files from uploads, results from the emails
 * (outbox or SMTP server) and downloads, checked with ffprobe. Only the
 * "exactly once" checks look into storage (MP3 blobs per job).
 */
#include "../integration/server.h"

#include <curl/curl.h>
#include <dirent.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/blobs.h"

enum topo { EMBEDDED, MIXED, DISTRIBUTED };
static enum topo topo;

/* embedded: everything in `all`; distributed: one process each */
static struct server all_s, auth_s, gw_s, conv_s, nt_s;
static int gw_port;
static char gw_base[64];
static char tag[13], video_q[64], mp3_q[64], mysql_db[64];
static char admin[128], user_b[128];
#define ADMIN_PW "admin-password-e2e"
#define USER_PW "user-b-password-e2e"
static char *media;
static char clip_mp4[600], clip_mkv[600], clip_webm[600], long_mp4[600], small_mp4[600],
    medium_mp4[600];

/* ---------- media ---------- */

static void make_media(void)
{
    media = th_tmpdir();
    snprintf(clip_mp4, sizeof(clip_mp4), "%s/holiday talk.mp4", media);
    const char *a[] = {
        "-f",   "lavfi",   "-i",        "testsrc2=s=320x240:d=6:r=15",
        "-f",   "lavfi",   "-i",        "sine=frequency=440:duration=6:sample_rate=44100",
        "-c:v", "libx264", "-preset",   "ultrafast",
        "-c:a", "aac",     "-shortest", NULL};
    th_ffmpeg(a, clip_mp4, NULL);
    snprintf(clip_mkv, sizeof(clip_mkv), "%s/Grüße.mkv", media);
    const char *b[] = {
        "-f",        "lavfi", "-i",   "testsrc=s=160x120:d=5:r=10",
        "-f",        "lavfi", "-i",   "sine=frequency=330:duration=5:sample_rate=48000",
        "-c:v",      "mpeg4", "-c:a", "libopus",
        "-shortest", NULL};
    th_ffmpeg(b, clip_mkv, NULL);
    snprintf(clip_webm, sizeof(clip_webm), "%s/song.webm", media);
    const char *c[] = {
        "-f",        "lavfi",  "-i",   "testsrc=s=160x120:d=4:r=10",
        "-f",        "lavfi",  "-i",   "sine=frequency=550:duration=4:sample_rate=48000",
        "-c:v",      "libvpx", "-c:a", "libvorbis",
        "-shortest", NULL};
    th_ffmpeg(c, clip_webm, NULL);
    /* long enough that a conversion is running for a second or more */
    snprintf(long_mp4, sizeof(long_mp4), "%s/lecture.mp4", media);
    const char *d[] = {
        "-f",        "lavfi", "-i",   "testsrc=s=96x64:d=480:r=1",
        "-f",        "lavfi", "-i",   "sine=frequency=220:duration=480:sample_rate=44100",
        "-c:v",      "mpeg4", "-c:a", "aac",
        "-shortest", NULL};
    th_ffmpeg(d, long_mp4, NULL);
    /* about 1.2 MB: an upload that can be under way for seconds */
    snprintf(medium_mp4, sizeof(medium_mp4), "%s/medium.mp4", media);
    const char *m[] = {"-f",   "lavfi", "-i",        "testsrc2=s=320x240:d=10:r=25",
                       "-f",   "lavfi", "-i",        "sine=frequency=500:duration=10",
                       "-c:v", "mpeg4", "-b:v",      "900k",
                       "-c:a", "aac",   "-shortest", NULL};
    th_ffmpeg(m, medium_mp4, NULL);
    snprintf(small_mp4, sizeof(small_mp4), "%s/small.mp4", media);
    const char *e[] = {"-f",        "lavfi", "-i",   "testsrc=s=96x64:d=3:r=5",
                       "-f",        "lavfi", "-i",   "sine=frequency=660:duration=3",
                       "-c:v",      "mpeg4", "-c:a", "aac",
                       "-shortest", NULL};
    th_ffmpeg(e, small_mp4, NULL);
}

/* ---------- HTTP ---------- */

struct buf {
    char *data;
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;
    char *d = realloc(b->data, b->len + add + 1);
    assert_non_null(d);
    memcpy(d + b->len, p, add);
    b->len += add;
    d[b->len] = '\0';
    b->data = d;
    return add;
}

/* POST /upload of path as a multipart form, at most max_speed bytes/s
 * (0: no limit). Returns the status (0: no answer); job_id gets the id on
 * 202. */
/* Uploads that have sent more than sending_threshold body bytes (the
 * tests wait for them to be under way). */
static atomic_int uploads_sending;
static atomic_long sending_threshold = 1;

static int count_sending(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    bool *counted = arg;
    if (ulnow >= atomic_load(&sending_threshold) && !*counted) {
        *counted = true;
        atomic_fetch_add(&uploads_sending, 1);
    }
    return 0;
}

static long upload(const char *token, const char *path, long max_speed, char job_id[25])
{
    CURL *c = curl_easy_init();
    curl_mime *form = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(form);
    curl_mime_name(part, "file");
    curl_mime_filedata(part, path);
    char url[128], auth[1200];
    snprintf(url, sizeof(url), "%s/upload", gw_base);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    struct buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, form);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (max_speed > 0) { /* in small writes, or the first one is the whole file */
        curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)max_speed);
        curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    }
    /* an early refusal (a 503 before the body) must not be lost to a reset */
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 15000L);
    bool counted = false;
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, count_sending);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &counted);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    long status = 0;
    curl_easy_perform(c); /* a reset after the answer still leaves its status */
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (job_id != NULL)
        job_id[0] = '\0';
    if (status == 202 && job_id != NULL) {
        json_t *j = json_loads(b.data, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "job_id"));
        snprintf(job_id, 25, "%s", id != NULL ? id : "");
        json_decref(j);
    }
    free(b.data);
    curl_slist_free_all(h);
    curl_mime_free(form);
    curl_easy_cleanup(c);
    return status;
}

static void gw_get(const char *path, const char *token, const char *extra, struct th_resp *r)
{
    char url[512], auth[1200];
    snprintf(url, sizeof(url), "%s%s", gw_base, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *h[] = {auth, extra, NULL};
    th_http("GET", url, h, NULL, 0, r);
}

/* Logs in at the gateway with JSON (basic false) or HTTP Basic. Returns
 * the token (caller frees) or NULL, with the status in *status. */
static char *gw_login(const char *email, const char *password, bool basic, long *status)
{
    char url[128], body[400], hdr[400];
    snprintf(url, sizeof(url), "%s/login", gw_base);
    struct th_resp r;
    if (basic) {
        char up[300];
        snprintf(up, sizeof(up), "%s:%s", email, password);
        snprintf(hdr, sizeof(hdr), "Authorization: Basic ");
        sodium_bin2base64(hdr + strlen(hdr), sizeof(hdr) - strlen(hdr), (unsigned char *)up,
                          strlen(up), sodium_base64_VARIANT_ORIGINAL);
        const char *h[] = {hdr, NULL};
        th_http("POST", url, h, NULL, 0, &r);
    } else {
        snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
        const char *h[] = {"Content-Type: application/json", NULL};
        th_http("POST", url, h, body, strlen(body), &r);
    }
    *status = r.status;
    char *tok = NULL;
    if (r.status == 200) {
        json_t *j = th_json(&r);
        tok = strdup(json_string_value(json_object_get(j, "token")));
        json_decref(j);
    }
    th_resp_free(&r);
    return tok;
}

static char *must_login(const char *email, const char *password)
{
    long st = 0;
    char *tok = gw_login(email, password, false, &st);
    if (tok == NULL)
        fail_msg("login %s: status %ld", email, st);
    return tok;
}

/* GET /jobs/ID as JSON (caller owns), or NULL when not 200. */
static json_t *job_json(const char *token, const char *id)
{
    char path[80];
    snprintf(path, sizeof(path), "/jobs/%.24s", id);
    struct th_resp r;
    gw_get(path, token, NULL, &r);
    json_t *j = r.status == 200 ? th_json(&r) : NULL;
    th_resp_free(&r);
    return j;
}

static const char *jstr(json_t *j, const char *k)
{
    const char *v = json_string_value(json_object_get(j, k));
    return v != NULL ? v : "";
}

/* Waits until job id is done or failed and its email settled; returns it. */
static json_t *wait_settled(const char *token, const char *id, int seconds)
{
    json_t *j = NULL;
    for (int i = 0; i < seconds * 10; i++) {
        json_decref(j);
        j = job_json(token, id);
        if (j != NULL && strcmp(jstr(j, "notification"), "pending") != 0)
            return j;
        th_sleep_ms(100);
    }
    fail_msg("job %s not finished and notified within %d s: %s", id, seconds,
             j != NULL ? json_dumps(j, 0) : "(no answer)");
    return NULL;
}

/* ---------- emails ---------- */

/* The emails about job id that reached the admin: their count, and the
 * last one's text in *text (caller frees) when text is not NULL. */
static int emails_about(const char *id, char **text)
{
    if (text != NULL)
        *text = NULL;
    if (topo == EMBEDDED) {
        /* The outbox replaces a job's file, so the file cannot show a
         * second send: the sends are counted in the log (appended to by
         * every start of `all`), the text read from the file. */
        char path[700], want[80];
        snprintf(path, sizeof(path), "%s/outbox/%s.eml", all_s.dir, id);
        char *t = th_slurp(path, NULL);
        if (t == NULL)
            return 0;
        if (text != NULL)
            *text = t;
        else
            free(t);
        char *log = th_slurp(all_s.log, NULL);
        assert_non_null(log);
        snprintf(want, sizeof(want), "\"msg\":\"notified\",");
        int n = 0;
        for (char *p = log; (p = strstr(p, want)) != NULL; p++) {
            char *eol = strchr(p, '\n');
            char job[60];
            snprintf(job, sizeof(job), "\"job_id\":\"%s\"", id);
            char *hit = strstr(p, job);
            if (hit != NULL && (eol == NULL || hit < eol))
                n++;
        }
        free(log);
        return n;
    }
    char dir[700], want[80];
    snprintf(dir, sizeof(dir), "%s/mail/%s", th_need_env("VID2MP3_TEST_SMTP_SPOOL"), admin);
    snprintf(want, sizeof(want), "Message-ID: <job-%s@", id);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1000];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *t = th_slurp(path, NULL);
        if (t != NULL && strstr(t, want) != NULL) {
            n++;
            if (text != NULL) {
                free(*text);
                *text = t;
                t = NULL;
            }
        }
        free(t);
    }
    closedir(d);
    return n;
}

static char *wait_email(const char *id, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        char *t = NULL;
        if (emails_about(id, &t) > 0)
            return t;
        th_sleep_ms(100);
    }
    fail_msg("no email about job %s within %d s", id, seconds);
    return NULL;
}

/* The MP3's id as the email gives it ("File id: ..." in the text part). */
static void fid_from_email(const char *email, char fid[25])
{
    /* quoted-printable: the id is hex, never encoded, never split (short line) */
    const char *p = strstr(email, "File id: ");
    assert_non_null(p);
    p += strlen("File id: ");
    size_t n = strspn(p, "0123456789abcdef");
    assert_int_equal(n, 24);
    memcpy(fid, p, 24);
    fid[24] = '\0';
}

/* Downloads the MP3 into path; returns the status. */
static long download(const char *token, const char *fid, const char *range, const char *path,
                     struct th_resp *keep)
{
    char p[80], rh[80];
    snprintf(p, sizeof(p), "/download?fid=%s", fid);
    snprintf(rh, sizeof(rh), "Range: %s", range != NULL ? range : "");
    struct th_resp r;
    gw_get(p, token, range != NULL ? rh : NULL, &r);
    if (path != NULL && (r.status == 200 || r.status == 206)) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(r.body, 1, r.len, f), r.len);
        fclose(f);
    }
    long st = r.status;
    if (keep != NULL)
        *keep = r;
    else
        th_resp_free(&r);
    return st;
}

/* ffprobe's codec name and duration of the file's first audio stream. */
static void probe(const char *path, char *codec, size_t len, double *duration)
{
    char cmd[900];
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -select_streams a:0 -show_entries stream=codec_name:format=duration "
             "-of default=nw=1 '%s'",
             path);
    FILE *p = popen(cmd, "r");
    char line[256];
    codec[0] = '\0';
    *duration = -1;
    while (fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "codec_name=", 11) == 0)
            snprintf(codec, len, "%.31s", line + 11);
        else if (strncmp(line, "duration=", 9) == 0)
            *duration = strtod(line + 9, NULL);
    }
    pclose(p);
}

/* ---------- the services ---------- */

static void common_env(struct server *s)
{
    server_env(s, "VIDEO_QUEUE=%s", video_q);
    server_env(s, "MP3_QUEUE=%s", mp3_q);
    server_env(s, "MAIL_FROM=vid2mp3@e2e.example");
    server_env(s, "PUBLIC_URL=https://mp3.e2e.example");
    server_env(s, "GATEWAY_PORT=%d", gw_port);
    server_env(s, "QUEUE_LEASE_SECONDS=2");
    /* the kill test kills 10 times on purpose: more than the crash-loop
     * protection (MAX_ATTEMPTS) would let one job live through */
    server_env(s, "MAX_ATTEMPTS=20");
    server_env(s, "SMTP_TIMEOUT_SECONDS=5");
    server_env(s, "NOTIFY_RETRY_MAX_SECONDS=5");
    server_env(s, "NOTIFY_MAX_ATTEMPTS=60");
    server_env(s, "CONVERTER_WORKERS=2");
    server_env(s, "UPLOAD_ADMIN_ONLY=true");
    if (topo == DISTRIBUTED) {
        server_env(s, "MYSQL_HOST=%s", th_need_env("VID2MP3_TEST_MYSQL_HOST"));
        server_env(s, "MYSQL_PORT=%s", th_need_env("VID2MP3_TEST_MYSQL_PORT"));
        server_env(s, "MYSQL_USER=%s", th_need_env("VID2MP3_TEST_MYSQL_USER"));
        server_env(s, "MYSQL_PASSWORD=%s", th_need_env("VID2MP3_TEST_MYSQL_PASSWORD"));
        server_env(s, "MYSQL_DB=%s", mysql_db);
    }
    if (topo != EMBEDDED) {
        server_env(s, "MONGODB_URI=%s", th_need_env("VID2MP3_TEST_MONGODB_URI"));
        server_env(s, "RABBITMQ_URL=%s", th_need_env("VID2MP3_TEST_AMQP_URL"));
        server_env(s, "SMTP_URL=smtp://127.0.0.1:%s", th_need_env("VID2MP3_TEST_SMTP_PORT"));
        server_env(s, "SMTP_USER=%s", th_need_env("VID2MP3_TEST_SMTP_USER"));
        server_env(s, "SMTP_PASSWORD=%s", th_need_env("VID2MP3_TEST_SMTP_PASSWORD"));
        server_env(s, "SMTP_CA_FILE=%s", th_need_env("VID2MP3_TEST_SMTP_CA"));
        server_env(s, "SMTP_TLS=required");
    }
}

/* (Re)starts s as target and waits for /healthz on its port. */
static void spawn(struct server *s, const char *target)
{
    server_start(s, target);
    /* `all` answers on the auth port before its gateway listens */
    if (strcmp(target, "all") == 0 && th_wait_healthy(gw_port, 30) != 0) {
        server_print_log(s);
        fail_msg("the gateway of `all` did not come up on port %d", gw_port);
    }
}

static bool one_process(void)
{
    return topo != DISTRIBUTED;
}

static struct server *converter_proc(void)
{
    return one_process() ? &all_s : &conv_s;
}

static const char *converter_target(void)
{
    return one_process() ? "all" : "converter";
}

static void start_all(void)
{
    if (one_process()) {
        spawn(&all_s, "all");
        return;
    }
    spawn(&auth_s, "auth");
    spawn(&gw_s, "gateway");
    spawn(&conv_s, "converter");
    spawn(&nt_s, "notifier");
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mongoc_init();
    make_media();
    unsigned char rnd[6];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(tag, sizeof(tag), rnd, sizeof(rnd));
    snprintf(video_q, sizeof(video_q), "e2e-video-%s", tag);
    snprintf(mp3_q, sizeof(mp3_q), "e2e-mp3-%s", tag);
    snprintf(admin, sizeof(admin), "admin-%s@e2e.example", tag);
    snprintf(user_b, sizeof(user_b), "bob-%s@e2e.example", tag);
    gw_port = th_free_port();
    snprintf(gw_base, sizeof(gw_base), "http://127.0.0.1:%d", gw_port);
    if (topo == DISTRIBUTED)
        th_mysql_create_db(mysql_db, sizeof(mysql_db));

    struct server *first = one_process() ? &all_s : &auth_s;
    server_init(first, NULL);
    common_env(first);
    if (topo == DISTRIBUTED) {
        server_init(&gw_s, NULL);
        common_env(&gw_s);
        server_env(&gw_s, "GATEWAY_PORT=%d", gw_port);
        gw_s.port = gw_port; /* /healthz of the gateway */
        server_env(&gw_s, "AUTH_SVC_ADDRESS=127.0.0.1:%d", auth_s.port);
        server_init(&conv_s, NULL);
        common_env(&conv_s);
        server_env(&conv_s, "METRICS_PORT=%d", conv_s.port);
        server_init(&nt_s, NULL);
        common_env(&nt_s);
        server_env(&nt_s, "METRICS_PORT=%d", nt_s.port);
    }
    /* the first administrator, from the command line as an operator would */
    char line[200];
    snprintf(line, sizeof(line), "%s\n", ADMIN_PW);
    assert_int_equal(server_cli(first, line, "user", "add", admin, "--admin"), 0);
    start_all();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (topo == DISTRIBUTED) {
        /* a test that failed between a stop and its start must not leave
         * the shared servers down for the suites after it */
        th_services("rabbitmq-start");
        th_services("mariadb-start");
        th_services("smtp-start");
    }
    server_cleanup(&all_s);
    server_cleanup(&auth_s);
    server_cleanup(&gw_s);
    server_cleanup(&conv_s);
    server_cleanup(&nt_s);
    if (topo == DISTRIBUTED)
        th_mysql_drop_db(mysql_db);
    th_rmtree(media);
    free(media);
    curl_global_cleanup();
    mongoc_cleanup();
    return 0;
}

/* ---------- tests ---------- */

static char converted[3][25]; /* the user path's jobs, for the isolation test */
static char converted_fid[25];

/* Admin and plain user, logins both ways, three uploads, emails, the fid
 * from an email, download checked by ffprobe, a Range, the jobs list. */
static void user_path(void **state)
{
    (void)state;
    long st = 0;
    char *tok = gw_login(admin, ADMIN_PW, true, &st); /* HTTP Basic */
    assert_int_equal(st, 200);
    free(tok);
    tok = must_login(admin, ADMIN_PW); /* JSON */

    /* the plain user, made by the administrator through the API */
    char url[128], auth[1200], body[300];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/users",
             one_process() ? all_s.port : auth_s.port);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"admin\":false}", user_b,
             USER_PW);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    struct th_resp r;
    th_http("POST", url, h, body, strlen(body), &r);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    char *btok = must_login(user_b, USER_PW);
    char id[25];
    assert_int_equal(upload(btok, clip_mp4, 0, id), 403); /* uploads: administrators only */
    free(btok);

    const char *files[3] = {clip_mp4, clip_mkv, clip_webm};
    const double seconds[3] = {6, 5, 4};
    const char *names[3] = {"holiday talk.mp3", "Grüße.mp3", "song.mp3"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(upload(tok, files[i], 0, converted[i]), 202);
    for (int i = 0; i < 3; i++) {
        json_t *j = wait_settled(tok, converted[i], 120);
        assert_string_equal(jstr(j, "status"), "done");
        assert_string_equal(jstr(j, "notification"), "sent");
        char *email = wait_email(converted[i], 30);
        char fid[25];
        fid_from_email(email, fid);
        assert_string_equal(fid, jstr(j, "mp3_fid"));
        char path[700];
        snprintf(path, sizeof(path), "%s/out-%d.mp3", media, i);
        struct th_resp d;
        assert_int_equal(download(tok, fid, NULL, path, &d), 200);
        char cd[400], ct[100];
        assert_non_null(th_header(&d, "Content-Type", ct, sizeof(ct)));
        assert_string_equal(ct, "audio/mpeg");
        assert_non_null(th_header(&d, "Content-Disposition", cd, sizeof(cd)));
        if (i != 1)
            assert_non_null(strstr(cd, names[i]));
        else /* the non-ASCII name travels as filename*= (RFC 8187) */
            assert_non_null(strstr(cd, "filename*=UTF-8''Gr%C3%BC%C3%9Fe.mp3"));
        size_t whole = d.len;
        char *all_bytes = malloc(whole);
        memcpy(all_bytes, d.body, whole);
        th_resp_free(&d);
        char codec[32];
        double dur;
        probe(path, codec, sizeof(codec), &dur);
        assert_string_equal(codec, "mp3");
        if (dur < seconds[i] - 0.2 || dur > seconds[i] + 0.2)
            fail_msg("%s: MP3 of %.2f s, want %.0f", names[i], dur, seconds[i]);
        /* a range */
        assert_true(whole > 1124);
        assert_int_equal(download(tok, fid, "bytes=100-1123", NULL, &d), 206);
        assert_int_equal(d.len, 1024);
        assert_memory_equal(d.body, all_bytes + 100, 1024);
        char cr[100], want_cr[100];
        snprintf(want_cr, sizeof(want_cr), "bytes 100-1123/%zu", whole);
        assert_non_null(th_header(&d, "Content-Range", cr, sizeof(cr)));
        assert_string_equal(cr, want_cr);
        th_resp_free(&d);
        free(all_bytes);
        if (i == 0)
            snprintf(converted_fid, sizeof(converted_fid), "%s", fid);
        free(email);
        json_decref(j);
    }
    /* the list, newest first */
    gw_get("/jobs?limit=10", tok, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *list = th_json(&r);
    json_t *jobs = json_object_get(list, "jobs");
    assert_true(json_array_size(jobs) >= 3);
    assert_string_equal(jstr(json_array_get(jobs, 0), "job_id"), converted[2]);
    assert_string_equal(jstr(json_array_get(jobs, 2), "job_id"), converted[0]);
    json_decref(list);
    th_resp_free(&r);
    free(tok);
}

/* User B can neither list, see nor download A's jobs and files. */
static void isolation(void **state)
{
    (void)state;
    assert_true(converted_fid[0] != '\0');
    char *btok = must_login(user_b, USER_PW);
    struct th_resp r;
    gw_get("/jobs", btok, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *list = th_json(&r);
    assert_int_equal(json_array_size(json_object_get(list, "jobs")), 0);
    json_decref(list);
    th_resp_free(&r);

    char unknown[25];
    blob_id_new(unknown);
    char p1[80], p2[80];
    snprintf(p1, sizeof(p1), "/jobs/%s", converted[0]);
    snprintf(p2, sizeof(p2), "/jobs/%s", unknown);
    struct th_resp theirs, none;
    gw_get(p1, btok, NULL, &theirs);
    gw_get(p2, btok, NULL, &none);
    th_assert_error(&theirs, 404, "not_found");
    assert_string_equal(theirs.body, none.body); /* nothing tells them apart */
    th_resp_free(&theirs);
    th_resp_free(&none);

    struct th_resp d1, d2;
    assert_int_equal(download(btok, converted_fid, NULL, NULL, &d1), 404);
    assert_int_equal(download(btok, unknown, NULL, NULL, &d2), 404);
    th_assert_error(&d1, 404, "not_found");
    assert_string_equal(d1.body, d2.body);
    th_resp_free(&d1);
    th_resp_free(&d2);
    free(btok);
}

/* Job id's status, or "" when it cannot be read. */
static void job_status(const char *token, const char *id, char *out, size_t len)
{
    json_t *j = job_json(token, id);
    snprintf(out, len, "%s", j != NULL ? jstr(j, "status") : "");
    json_decref(j);
}

/* Waits until one of the n jobs converts; returns its index, or -1 when
 * none did within seconds. */
static int wait_converting(const char *token, char (*ids)[25], int n, int seconds)
{
    for (int k = 0; k < seconds * 20; k++) {
        for (int i = 0; i < n; i++) {
            char st[32];
            job_status(token, ids[i], st, sizeof(st));
            if (strcmp(st, "converting") == 0)
                return i;
        }
        th_sleep_ms(50);
    }
    return -1;
}

/* Waits until no conversion or email is in flight, so that a duplicate,
 * if any, has had its chance: the notifier has nothing pending or sending
 * and the queue leases (2 s) and retries (5 s at most) have run out. */
static void settle_down(void)
{
    th_sleep_ms(8000);
}

/* kill -9 the converter (embedded: the whole `all` process) 10 times, each
 * at a random moment while a job converts: every job ends done, with one
 * MP3 and one email. */
static void kill9_during_conversions(void **state)
{
    (void)state;
    char *tok = must_login(admin, ADMIN_PW);
    enum { N = 6 };
    char ids[N][25];
    for (int i = 0; i < N; i++) /* each takes seconds to convert */
        assert_int_equal(upload(tok, long_mp4, 0, ids[i]), 202);
    struct server *victim = converter_proc();
    for (int k = 0; k < 10; k++) {
        int busy = wait_converting(tok, ids, N, 60);
        if (busy < 0)
            fail_msg("kill %d: no job was converting", k + 1);
        th_sleep_ms((long)randombytes_uniform(400));
        assert_true(victim->pid > 0);
        kill(victim->pid, SIGKILL);
        assert_int_equal(th_wait_exit(&victim->pid, 10), 128 + SIGKILL);
        spawn(victim, converter_target());
    }
    for (int i = 0; i < N; i++) {
        json_t *j = wait_settled(tok, ids[i], 240);
        assert_string_equal(jstr(j, "status"), "done");
        assert_string_equal(jstr(j, "notification"), "sent");
        json_decref(j);
    }
    settle_down();
    for (int i = 0; i < N; i++) {
        assert_int_equal(th_mp3s_of(ids[i], topo == EMBEDDED ? all_s.dir : NULL), 1);
        assert_int_equal(emails_about(ids[i], NULL), 1);
    }
    free(tok);
}

struct slow_upload {
    const char *tok;
    long status;
    char id[25];
};

static void *slow_upload_thread(void *arg)
{
    struct slow_upload *u = arg;
    u->status = upload(u->tok, medium_mp4, 250 * 1024, u->id); /* about 5 s */
    return NULL;
}

/* SIGTERM to each service in the middle of work: exit 0, nothing lost. A
 * conversion under way finishes (or goes back to the queue), an upload
 * under way is answered before the gateway exits. */
static void sigterm_mid_work(void **state)
{
    (void)state;
    char *tok = must_login(admin, ADMIN_PW);
    char ids[1][25];
    assert_int_equal(upload(tok, long_mp4, 0, ids[0]), 202);
    if (wait_converting(tok, ids, 1, 60) != 0)
        fail_msg("the job never started converting");
    struct slow_upload u = {tok, 0, ""};
    pthread_t t;
    /* under way: far past what socket buffers take before the gateway
     * reads (the body goes after its "100 Continue") */
    atomic_store(&uploads_sending, 0);
    atomic_store(&sending_threshold, 400 * 1024);
    assert_int_equal(pthread_create(&t, NULL, slow_upload_thread, &u), 0);
    for (int i = 0; i < 400 && atomic_load(&uploads_sending) == 0; i++)
        th_sleep_ms(25);
    atomic_store(&sending_threshold, 1);
    if (atomic_load(&uploads_sending) == 0)
        fail_msg("the upload did not get under way");
    /* every process at once, each mid-work: a conversion, an upload */
    struct server *procs[4] = {&all_s, NULL, NULL, NULL};
    if (!one_process()) {
        procs[0] = &conv_s;
        procs[1] = &gw_s;
        procs[2] = &nt_s;
        procs[3] = &auth_s;
    }
    for (int i = 0; i < 4 && procs[i] != NULL; i++)
        kill(procs[i]->pid, SIGTERM);
    for (int i = 0; i < 4 && procs[i] != NULL; i++)
        assert_int_equal(th_wait_exit(&procs[i]->pid, 60), 0);
    pthread_join(t, NULL);
    assert_int_equal(u.status, 202); /* answered within the grace period */
    start_all();
    free(tok);
    tok = must_login(admin, ADMIN_PW);
    const char *both[2] = {ids[0], u.id};
    for (int i = 0; i < 2; i++) {
        json_t *j = wait_settled(tok, both[i], 180);
        assert_string_equal(jstr(j, "status"), "done");
        assert_string_equal(jstr(j, "notification"), "sent");
        json_decref(j);
    }
    settle_down();
    for (int i = 0; i < 2; i++) {
        assert_int_equal(th_mp3s_of(both[i], topo == EMBEDDED ? all_s.dir : NULL), 1);
        assert_int_equal(emails_about(both[i], NULL), 1);
    }
    free(tok);
}

/* ---------- distributed only ---------- */

struct uploader {
    const char *tok;
    long speed;
    long status;
    char id[25];
};

static void *upload_thread(void *arg)
{
    struct uploader *u = arg;
    u->status = upload(u->tok, small_mp4, u->speed, u->id);
    return NULL;
}

/* RabbitMQ restarts while 50 uploads are in flight (each sending its body
 * slowly when the broker stops): every upload that got 202 is converted
 * and notified exactly once, every other one got a 5xx. */
static void broker_restart_during_uploads(void **state)
{
    (void)state;
    char *tok = must_login(admin, ADMIN_PW);
    enum { N = 50 };
    static struct uploader u[N];
    pthread_t t[N];
    atomic_store(&uploads_sending, 0);
    for (int i = 0; i < N; i++) {
        /* 4 to 28 s each: some end while the broker is down (about 12 s
         * with its restart), some after */
        u[i] = (struct uploader){.tok = tok, .speed = 1500 + 200 * i};
        assert_int_equal(pthread_create(&t[i], NULL, upload_thread, &u[i]), 0);
    }
    for (int i = 0; i < 400 && atomic_load(&uploads_sending) < N; i++)
        th_sleep_ms(25);
    int in_flight = atomic_load(&uploads_sending);
    int rc = th_services("rabbitmq-stop");
    th_sleep_ms(3000);
    int rc2 = th_services("rabbitmq-start");
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(rc2, 0);
    assert_int_equal(in_flight, N); /* all 50 were sending when it stopped */
    int ok = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        if (u[i].status == 202)
            ok++;
        else if (u[i].status >= 500 && u[i].status <= 599)
            refused++;
        else
            fail_msg("upload %d: status %ld (want 202 or 5xx)", i, u[i].status);
    }
    fprintf(stderr, "broker restart: %d uploads accepted, %d refused with 5xx\n", ok, refused);
    for (int i = 0; i < N; i++) {
        if (u[i].status != 202)
            continue;
        json_t *j = wait_settled(tok, u[i].id, 180);
        assert_string_equal(jstr(j, "status"), "done");
        assert_string_equal(jstr(j, "notification"), "sent");
        json_decref(j);
    }
    settle_down();
    for (int i = 0; i < N; i++) {
        if (u[i].status != 202)
            continue;
        assert_int_equal(th_mp3s_of(u[i].id, topo == EMBEDDED ? all_s.dir : NULL), 1);
        assert_int_equal(emails_about(u[i].id, NULL), 1);
    }
    free(tok);
}

/* The SMTP server is down for a minute, and MariaDB stops in the middle
 * of it: logins answer 503 and work again when it is back, without a
 * restart; the emails go when the SMTP server is back, once each. */
static void mariadb_and_smtp_outages(void **state)
{
    (void)state;
    char *tok = must_login(admin, ADMIN_PW);
    time_t down = time(NULL);
    assert_int_equal(th_services("smtp-stop"), 0);
    char ids[2][25];
    for (int i = 0; i < 2; i++)
        assert_int_equal(upload(tok, small_mp4, 0, ids[i]), 202);

    assert_int_equal(th_services("mariadb-stop"), 0);
    long st = 0;
    char *none = gw_login(admin, ADMIN_PW, false, &st);
    assert_null(none);
    assert_int_equal(st, 503);
    assert_int_equal(th_services("mariadb-start"), 0);
    char *again = NULL;
    for (int i = 0; i < 300 && again == NULL; i++) {
        again = gw_login(admin, ADMIN_PW, false, &st);
        if (again == NULL)
            th_sleep_ms(100);
    }
    assert_non_null(again);
    free(again);

    for (int i = 0; i < 2; i++) { /* converted meanwhile; emails waiting */
        for (int k = 0; k < 600; k++) {
            json_t *j = job_json(tok, ids[i]);
            bool done = j != NULL && strcmp(jstr(j, "status"), "done") == 0;
            json_decref(j);
            if (done)
                break;
            th_sleep_ms(100);
        }
    }
    while (time(NULL) - down < 60)
        th_sleep_ms(500);
    for (int i = 0; i < 2; i++) {
        json_t *j = job_json(tok, ids[i]);
        assert_string_equal(jstr(j, "status"), "done");
        assert_string_equal(jstr(j, "notification"), "pending");
        json_decref(j);
        assert_int_equal(emails_about(ids[i], NULL), 0);
    }
    assert_int_equal(th_services("smtp-start"), 0);
    for (int i = 0; i < 2; i++) {
        json_t *j = wait_settled(tok, ids[i], 60);
        assert_string_equal(jstr(j, "notification"), "sent");
        json_decref(j);
    }
    settle_down();
    for (int i = 0; i < 2; i++)
        assert_int_equal(emails_about(ids[i], NULL), 1);
    free(tok);
}

/* Last: SIGTERM to every process, exit 0 (and no leak under ASan). */
static void stops_cleanly(void **state)
{
    (void)state;
    if (one_process()) {
        assert_int_equal(server_stop(&all_s, SIGTERM), 0);
        return;
    }
    assert_int_equal(server_stop(&gw_s, SIGTERM), 0);
    assert_int_equal(server_stop(&conv_s, SIGTERM), 0);
    assert_int_equal(server_stop(&nt_s, SIGTERM), 0);
    assert_int_equal(server_stop(&auth_s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "embedded") != 0 && strcmp(argv[2], "mixed") != 0 &&
                      strcmp(argv[2], "distributed") != 0)) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3 embedded|mixed|distributed\n", argv[0]);
        return 2;
    }
    if (server_args(2, argv) != 0)
        return 2;
    topo = strcmp(argv[2], "embedded") == 0 ? EMBEDDED
           : strcmp(argv[2], "mixed") == 0  ? MIXED
                                            : DISTRIBUTED;
    const struct CMUnitTest embedded[] = {
        cmocka_unit_test(user_path),
        cmocka_unit_test(isolation),
        cmocka_unit_test(kill9_during_conversions),
        cmocka_unit_test(sigterm_mid_work),
        cmocka_unit_test(stops_cleanly),
    };
    const struct CMUnitTest distributed[] = {
        cmocka_unit_test(user_path),
        cmocka_unit_test(isolation),
        cmocka_unit_test(kill9_during_conversions),
        cmocka_unit_test(sigterm_mid_work),
        cmocka_unit_test(broker_restart_during_uploads),
        cmocka_unit_test(mariadb_and_smtp_outages),
        cmocka_unit_test(stops_cleanly),
    };
    const struct CMUnitTest mixed[] = {
        cmocka_unit_test(user_path),
        cmocka_unit_test(isolation),
        cmocka_unit_test(stops_cleanly),
    };
    if (topo == EMBEDDED)
        return cmocka_run_group_tests_name("e2e-embedded", embedded, group_setup, group_teardown);
    if (topo == MIXED)
        return cmocka_run_group_tests_name("e2e-mixed", mixed, group_setup, group_teardown);
    return cmocka_run_group_tests_name("e2e-distributed", distributed, group_setup, group_teardown);
}
