/*
 * Integration: the real `vid2mp3 notifier` consuming MP3_QUEUE. The test
 * plays the converter's part through the jobs store and the queue (a
 * finished job, an outcome message), then watches what reaches the mail
 * backend and what the job records.
 *
 * Usage: test_notifier PATH/TO/vid2mp3 outbox|smtp|distributed
 *   outbox       SQLite jobs and queue, .eml files in DATA_DIR/outbox
 *   smtp         SQLite jobs and queue, the SMTP server of
 *                scripts/test-services.sh (STARTTLS, AUTH, injected 4xx/5xx)
 *   distributed  MongoDB jobs, RabbitMQ and that SMTP server
 * Every test writes to its own recipient addresses, so the SMTP server's
 * spool (one directory per recipient) tells exactly who got what.
 */
#include "server.h"

#include <ctype.h>
#include <dirent.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"
#include "store/jobs.h"

enum mode { OUTBOX, SMTP, DISTRIBUTED };
static enum mode mode;
static struct server nt;
static char mp3_queue[64];
static struct jobs *jobs;
static struct queue *queue;
static char tag[13]; /* random, in every address of this run */

#define FROM "robot@vid2mp3.example"
#define PUBLIC "https://mp3.example.org/"

/* ---------- helpers ---------- */

/* A fresh recipient: LOCAL+TAG+N[+EXTRA]@example.com. */
static void address(char *out, size_t len, const char *local, const char *extra)
{
    static int n;
    snprintf(out, len, "%s+%s%d%s%s@example.com", local, tag, ++n, extra != NULL ? "+" : "",
             extra != NULL ? extra : "");
}

/* Creates a finished job for owner: done (with an MP3) or failed. */
static void make_job(const char *owner, const char *filename, bool done, const char *error,
                     char id[25])
{
    struct job j;
    memset(&j, 0, sizeof(j));
    blob_id_new(j.id);
    blob_id_new(j.video_fid);
    snprintf(j.owner, sizeof(j.owner), "%s", owner);
    snprintf(j.filename, sizeof(j.filename), "%s", filename);
    snprintf(j.options, sizeof(j.options), "{}");
    assert_int_equal(jobs_create(jobs, &j), JOBS_OK);
    char mp3[25];
    blob_id_new(mp3);
    struct job_update u = {.from = JOB_FROM(JOB_QUEUED),
                           .set = JOB_SET_STATUS |
                                  (done ? JOB_SET_MP3 | JOB_SET_RESULT : (unsigned)JOB_SET_ERROR),
                           .status = done ? JOB_DONE : JOB_FAILED,
                           .mp3_fid = mp3,
                           .duration = 605.4,
                           .mp3_bytes = 3456789,
                           .error = error};
    if (done) {
        struct job_update c = {
            .from = JOB_FROM(JOB_QUEUED), .set = JOB_SET_STATUS, .status = JOB_CONVERTING};
        assert_int_equal(jobs_update(jobs, j.id, &c), JOBS_OK);
        u.from = JOB_FROM(JOB_CONVERTING);
    }
    assert_int_equal(jobs_update(jobs, j.id, &u), JOBS_OK);
    snprintf(id, 25, "%s", j.id);
}

static void publish_raw(const char *body)
{
    assert_int_equal(queue_publish(queue, mp3_queue, body, strlen(body), "req-notify-test"),
                     QUEUE_OK);
}

/* The converter's outcome message for job id (fields as DESIGN §5). */
static void publish_outcome(const char *id)
{
    struct job j;
    assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
    json_t *m = json_pack("{s:s, s:s, s:o, s:s, s:s, s:{}, s:s, s:s, s:o}", "job_id", j.id,
                          "video_fid", j.video_fid, "mp3_fid",
                          j.status == JOB_DONE ? json_string(j.mp3_fid) : json_null(), "username",
                          j.owner, "filename", j.filename, "options", "request_id", "req-1",
                          "status", j.status == JOB_DONE ? "done" : "failed", "error",
                          j.status == JOB_FAILED ? json_string(j.error) : json_null());
    char *text = json_dumps(m, JSON_COMPACT);
    publish_raw(text);
    free(text);
    json_decref(m);
}

static struct job wait_settled(const char *id, int seconds)
{
    struct job j;
    for (int i = 0; i < seconds * 20; i++) {
        assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
        if (j.notified_at > 0)
            return j;
        th_sleep_ms(50);
    }
    fail_msg("job %s: notification not settled within %d s", id, seconds);
    return j;
}

/* The value of one series on the notifier's /metrics, or -1. */
static long metric(const char *outcome)
{
    char url[128], series[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", nt.port);
    snprintf(series, sizeof(series), "vid2mp3_notifications_total{outcome=\"%s\"} ", outcome);
    struct th_resp r;
    th_http("GET", url, NULL, NULL, 0, &r);
    long v = -1;
    const char *p = r.body != NULL ? strstr(r.body, series) : NULL;
    if (p != NULL)
        v = strtol(p + strlen(series), NULL, 10);
    th_resp_free(&r);
    return v;
}

static void wait_metric(const char *outcome, long at_least, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        if (metric(outcome) >= at_least)
            return;
        th_sleep_ms(100);
    }
    fail_msg("metric %s: %ld, want at least %ld", outcome, metric(outcome), at_least);
}

/* The notifier drains MP3_QUEUE.dead every 3 s: waits until it is empty. */
static void wait_no_dead_letters(int seconds)
{
    long n = -1;
    for (int i = 0; i < seconds * 10; i++) {
        assert_int_equal(queue_dead_count(queue, mp3_queue, &n), QUEUE_OK);
        if (n == 0)
            return;
        th_sleep_ms(100);
    }
    fail_msg("%ld dead letters left after %d s", n, seconds);
}

static const char *spool(void)
{
    return th_need_env("VID2MP3_TEST_SMTP_SPOOL");
}

/*
 * The messages that reached rcpt: in SMTP modes the files in the server's
 * spool for that recipient, in outbox mode the job's .eml file. *last gets
 * the newest one's text (caller frees) when last is not NULL.
 */
static int mails_for(const char *rcpt, const char *job_id, char **last)
{
    char dir[700];
    if (mode == OUTBOX) {
        snprintf(dir, sizeof(dir), "%s/outbox/%s.eml", nt.dir, job_id);
        char *text = th_slurp(dir, NULL);
        if (last != NULL)
            *last = text;
        else
            free(text);
        return text != NULL ? 1 : 0;
    }
    snprintf(dir, sizeof(dir), "%s/mail/%s", spool(), rcpt);
    DIR *d = opendir(dir);
    int n = 0;
    char newest[256] = "";
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".eml") != 0)
                continue;
            n++;
            if (strcmp(e->d_name, newest) > 0)
                snprintf(newest, sizeof(newest), "%s", e->d_name);
        }
        closedir(d);
    }
    if (last != NULL) {
        *last = NULL;
        if (n > 0) {
            char path[1000];
            snprintf(path, sizeof(path), "%s/%s", dir, newest);
            *last = th_slurp(path, NULL);
        }
    }
    return n;
}

static char *wait_mail(const char *rcpt, const char *job_id, int seconds)
{
    for (int i = 0; i < seconds * 20; i++) {
        char *text = NULL;
        if (mails_for(rcpt, job_id, &text) > 0)
            return text;
        th_sleep_ms(50);
    }
    fail_msg("no email for %s within %d s", rcpt, seconds);
    return NULL;
}

/* Lines of the SMTP server's events.log that contain both needles. */
static int events(const char *spool_dir, const char *a, const char *b)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/events.log", spool_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL))
            n++;
    }
    fclose(f);
    return n;
}

/* The message's header block (up to the first empty line), as a new string. */
static char *headers_of(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");
    assert_non_null(end);
    return strndup(msg, (size_t)(end - msg) + 2);
}

/* Occurrences of needle at the start of a header line. */
static int header_lines(const char *headers, const char *needle)
{
    int n = 0;
    size_t len = strlen(needle);
    for (const char *p = headers; p != NULL && *p != '\0';) {
        if (strncasecmp(p, needle, len) == 0)
            n++;
        p = strstr(p, "\r\n");
        if (p != NULL)
            p += 2;
    }
    return n;
}

/* Undoes quoted-printable (soft breaks and =XX) in place. */
static void qp_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0';) {
        if (r[0] == '=' && r[1] == '\r' && r[2] == '\n') {
            r += 3;
        } else if (r[0] == '=' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* ---------- the notifier process ---------- */

static void notifier_env(struct server *s, const char *crash_at)
{
    server_env(s, "METRICS_PORT=%d", s->port);
    server_env(s, "MP3_QUEUE=%s", mp3_queue);
    server_env(s, "QUEUE_LEASE_SECONDS=2");
    server_env(s, "NOTIFY_RETRY_MAX_SECONDS=1");
    server_env(s, "NOTIFY_MAX_ATTEMPTS=40");
    server_env(s, "NOTIFIER_WORKERS=2");
    server_env(s, "MAIL_FROM=" FROM);
    server_env(s, "PUBLIC_URL=" PUBLIC);
    server_env(s, "SMTP_TIMEOUT_SECONDS=5"); /* claims last 5 + 20 s */
    server_env(s, "CRASH_AT=%s", crash_at != NULL ? crash_at : "");
    if (mode != OUTBOX) {
        server_env(s, "SMTP_URL=smtp://127.0.0.1:%s", th_need_env("VID2MP3_TEST_SMTP_PORT"));
        server_env(s, "SMTP_USER=%s", th_need_env("VID2MP3_TEST_SMTP_USER"));
        server_env(s, "SMTP_PASSWORD=%s", th_need_env("VID2MP3_TEST_SMTP_PASSWORD"));
        server_env(s, "SMTP_CA_FILE=%s", th_need_env("VID2MP3_TEST_SMTP_CA"));
        server_env(s, "SMTP_TLS=required"); /* STARTTLS even on loopback */
    }
    if (mode == DISTRIBUTED) {
        server_env(s, "MONGODB_URI=%s", th_need_env("VID2MP3_TEST_MONGODB_URI"));
        server_env(s, "RABBITMQ_URL=%s", th_need_env("VID2MP3_TEST_AMQP_URL"));
    }
}

/* Starts the notifier again on the same data dir (the same stores). With a
 * message waiting and crash_at set it may die before /healthz answers:
 * then it is spawned without waiting. */
static void restart_notifier(const char *crash_at, bool wait)
{
    if (nt.pid > 0)
        assert_int_equal(server_stop(&nt, SIGTERM), 0);
    char keep[400];
    snprintf(keep, sizeof(keep), "%.399s", nt.dir);
    free(nt.dir);
    server_init(&nt, NULL);
    th_rmtree(nt.dir);
    free(nt.dir);
    nt.dir = strdup(keep);
    snprintf(nt.env[0], sizeof(nt.env[0]), "DATA_DIR=%s", keep);
    snprintf(nt.log, sizeof(nt.log), "%s/server.log", keep);
    notifier_env(&nt, crash_at);
    if (wait) {
        server_start(&nt, "notifier");
        return;
    }
    char *argv[] = {(char *)vid2mp3_bin, "notifier", NULL};
    nt.pid = th_spawn(argv, nt.envp, NULL, nt.log);
}

/* ---------- set-up ---------- */

static int group_setup(void **state)
{
    (void)state;
    unsigned char rnd[6];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(tag, sizeof(tag), rnd, sizeof(rnd));
    snprintf(mp3_queue, sizeof(mp3_queue), "notifytest-mp3-%s", tag);
    server_init(&nt, NULL);
    notifier_env(&nt, NULL);
    char err[512], path[700];
    struct queue_settings qs;
    queue_settings_default(&qs);
    if (mode == DISTRIBUTED) {
        jobs = jobs_mongo_new(th_need_env("VID2MP3_TEST_MONGODB_URI"), err, sizeof(err));
        queue = queue_amqp_new(th_need_env("VID2MP3_TEST_AMQP_URL"), &qs, err, sizeof(err));
    } else {
        snprintf(path, sizeof(path), "%s/jobs.db", nt.dir);
        jobs = jobs_sqlite_new(path, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/queue.db", nt.dir);
        queue = queue_sqlite_new(path, &qs, err, sizeof(err));
    }
    if (jobs == NULL || queue == NULL)
        fail_msg("opening the stores: %s", err);
    assert_int_equal(queue_declare(queue, mp3_queue), QUEUE_OK);
    server_start(&nt, "notifier");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_cleanup(&nt);
    jobs_free(jobs);
    queue_free(queue);
    return 0;
}

/* ---------- tests ---------- */

/* A done job: one email with the name, duration, size, link and fid;
 * repeats of the message send nothing more. */
static void done_job_gets_one_email(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "alice", NULL);
    make_job(to, "Holiday talk.mp4", true, NULL, id);
    long repeated = metric("repeated"), sent = metric("sent");
    /* three copies at once (the converter republishes after a crash):
     * the workers race for them, one sends */
    publish_outcome(id);
    publish_outcome(id);
    publish_outcome(id);
    char *msg = wait_mail(to, id, 30);
    struct job j = wait_settled(id, 30);
    wait_metric("repeated", repeated + 2, 60);
    assert_int_equal(metric("sent"), sent + 1);
    repeated = metric("repeated");
    assert_string_equal(j.notify_error, "");

    char *h = headers_of(msg);
    char want[256];
    snprintf(want, sizeof(want), "To: <%s>\r\n", to);
    assert_non_null(strstr(h, want));
    assert_int_equal(header_lines(h, "To:"), 1);
    assert_non_null(strstr(h, "From: vid2mp3 <" FROM ">\r\n"));
    assert_non_null(strstr(h, "Subject: Your MP3 is ready: Holiday talk.mp3\r\n"));
    snprintf(want, sizeof(want), "Message-ID: <job-%s@vid2mp3.example>", id);
    assert_non_null(strstr(h, want));
    assert_non_null(strstr(h, "MIME-Version: 1.0"));
    assert_non_null(strstr(h, "Date: "));
    assert_non_null(strstr(h, "multipart/alternative"));
    free(h);
    qp_decode(msg);
    snprintf(want, sizeof(want), "https://mp3.example.org/#job=%s", id);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, j.mp3_fid));
    assert_non_null(strstr(msg, "10:05"));  /* 605.4 s */
    assert_non_null(strstr(msg, "3.5 MB")); /* 3456789 bytes */
    assert_non_null(strstr(msg, "text/html"));
    free(msg);
    if (mode != OUTBOX) {
        assert_true(events(spool(), "starttls", NULL) > 0);
        assert_true(events(spool(), "auth", " ok") > 0);
    }

    publish_outcome(id);
    publish_outcome(id);
    wait_metric("repeated", repeated + 2, 30);
    assert_int_equal(mails_for(to, id, NULL), 1);
    assert_int_equal(metric("sent"), sent + 1);
    struct job again;
    assert_int_equal(jobs_get(jobs, id, &again), JOBS_OK);
    assert_int_equal(again.notified_at, j.notified_at);
}

static void failed_job_gets_the_reason(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "bob", NULL);
    make_job(to, "silent.mp4", false, "the video has no audio track", id);
    publish_outcome(id);
    char *msg = wait_mail(to, id, 30);
    assert_non_null(strstr(msg, "Subject: Conversion failed: silent.mp4\r\n"));
    qp_decode(msg);
    assert_non_null(strstr(msg, "the video has no audio track"));
    assert_null(strstr(msg, "#job="));
    free(msg);
    struct job j = wait_settled(id, 10);
    assert_string_equal(j.notify_error, "");
}

/* CR/LF in the owner's address: nothing is sent to anyone, the job says
 * why, the message is dead-lettered (and drained). */
static void owner_address_with_crlf_is_refused(void **state)
{
    (void)state;
    char good[128], evil[128], owner[300], id[25];
    address(good, sizeof(good), "carol", NULL);
    address(evil, sizeof(evil), "evil", NULL);
    snprintf(owner, sizeof(owner), "%s\r\nBcc: %s", good, evil);
    long dead = metric("dead_letter");
    make_job(owner, "a.mp4", true, NULL, id);
    publish_outcome(id);
    struct job j = wait_settled(id, 30);
    assert_non_null(strstr(j.notify_error, "not a valid email address"));
    wait_metric("dead_letter", dead + 1, 30);
    assert_int_equal(mails_for(good, id, NULL), 0);
    if (mode != OUTBOX) {
        assert_int_equal(mails_for(evil, id, NULL), 0);
        assert_int_equal(events(spool(), "rcpt", evil), 0);
    }
    wait_no_dead_letters(30);
}

/* Two addresses in one: refused the same way. */
static void owner_with_two_addresses_is_refused(void **state)
{
    (void)state;
    char a[128], b[128], owner[300], id[25];
    address(a, sizeof(a), "dave", NULL);
    address(b, sizeof(b), "eve", NULL);
    snprintf(owner, sizeof(owner), "%s, %s", a, b);
    make_job(owner, "a.mp4", true, NULL, id);
    publish_outcome(id);
    struct job j = wait_settled(id, 30);
    assert_non_null(strstr(j.notify_error, "not a valid email address"));
    assert_int_equal(mails_for(a, id, NULL), 0);
    assert_int_equal(mails_for(b, id, NULL), 0);
}

/* A file name that tries to add a header reaches the subject as text. */
static void filename_with_crlf_bcc_stays_in_the_subject(void **state)
{
    (void)state;
    char to[128], evil[128], name[300], id[25];
    address(to, sizeof(to), "frank", NULL);
    address(evil, sizeof(evil), "evil", NULL);
    snprintf(name, sizeof(name), "x\r\nBcc: %s\r\n\r\nbody.mp4", evil);
    make_job(to, name, true, NULL, id);
    publish_outcome(id);
    char *msg = wait_mail(to, id, 30);
    char *h = headers_of(msg);
    assert_int_equal(header_lines(h, "Bcc:"), 0);
    assert_int_equal(header_lines(h, "Cc:"), 0);
    assert_int_equal(header_lines(h, "To:"), 1);
    assert_int_equal(header_lines(h, "Subject:"), 1);
    free(h);
    free(msg);
    wait_settled(id, 10);
    if (mode != OUTBOX) {
        assert_int_equal(mails_for(evil, id, NULL), 0);
        assert_int_equal(events(spool(), "rcpt", evil), 0);
    }
}

/* A non-ASCII name: an RFC 2047 subject, UTF-8 bodies. */
static void non_ascii_filename(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "grace", NULL);
    make_job(to, "Grüße aus Köln – 日本語.mkv", true, NULL, id);
    publish_outcome(id);
    char *msg = wait_mail(to, id, 30);
    char *h = headers_of(msg);
    assert_non_null(strstr(h, "Subject: =?UTF-8?B?"));
    for (const char *p = h; *p != '\0'; p++)
        assert_true((unsigned char)*p < 0x80); /* headers stay ASCII */
    free(h);
    qp_decode(msg);
    assert_non_null(strstr(msg, "Grüße aus Köln – 日本語.mkv"));
    assert_non_null(strstr(msg, "charset=UTF-8"));
    free(msg);
}

static void missing_job_is_dropped(void **state)
{
    (void)state;
    long dropped = metric("dropped");
    char body[200], id[25];
    blob_id_new(id);
    snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"status\":\"done\"}", id);
    publish_raw(body);
    wait_metric("dropped", dropped + 1, 30);
    wait_no_dead_letters(30); /* acked, not dead-lettered */
}

static void malformed_messages_are_dead_lettered(void **state)
{
    (void)state;
    long dead = metric("dead_letter");
    publish_raw("this is not JSON");
    publish_raw("{\"job_id\":\"../../etc/passwd\"}");
    publish_raw("{\"job_id\":42}");
    publish_raw("[]");
    wait_metric("dead_letter", dead + 4, 30);
}

/* 451 twice, then accepted: one email, after two retries. */
static void temporary_failure_is_retried(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "heidi", "t451x2");
    make_job(to, "a.mp4", true, NULL, id);
    publish_outcome(id);
    char *msg = wait_mail(to, id, 60);
    free(msg);
    struct job j = wait_settled(id, 10);
    assert_string_equal(j.notify_error, "");
    assert_int_equal(events(spool(), "reply 451", to), 2);
    assert_int_equal(mails_for(to, id, NULL), 1);
}

/* 452 at the end of DATA is temporary too. */
static void temporary_data_failure_is_retried(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "ivan", "t452data");
    make_job(to, "a.mp4", true, NULL, id);
    publish_outcome(id);
    free(wait_mail(to, id, 60));
    wait_settled(id, 10);
    assert_int_equal(mails_for(to, id, NULL), 1);
}

/* 550: no retry, the job records the server's reply, dead-lettered. */
static void permanent_failure_is_not_retried(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "judy", "t550");
    long dead = metric("dead_letter");
    make_job(to, "a.mp4", true, NULL, id);
    publish_outcome(id);
    struct job j = wait_settled(id, 30);
    assert_non_null(strstr(j.notify_error, "550"));
    assert_non_null(strstr(j.notify_error, "Mailbox unavailable"));
    wait_metric("dead_letter", dead + 1, 30);
    th_sleep_ms(1500); /* a retry would have come by now */
    assert_int_equal(events(spool(), "rcpt", to), 1);
    assert_int_equal(mails_for(to, id, NULL), 0);

    /* 554 after DATA: the same */
    address(to, sizeof(to), "judy", "t554data");
    make_job(to, "b.mp4", true, NULL, id);
    publish_outcome(id);
    j = wait_settled(id, 30);
    assert_non_null(strstr(j.notify_error, "554"));
    th_sleep_ms(1500);
    assert_int_equal(events(spool(), "rcpt", to), 1);
}

/* The SMTP server is down for a while: every email goes once it is back. */
static void server_down_then_back(void **state)
{
    (void)state;
    char to[5][128], id[5][25];
    assert_int_equal(th_services("smtp-stop"), 0);
    long retried = metric("retried");
    for (int i = 0; i < 5; i++) {
        address(to[i], sizeof(to[i]), "kate", NULL);
        make_job(to[i], "a.mp4", true, NULL, id[i]);
        publish_outcome(id[i]);
    }
    wait_metric("retried", retried + 5, 30);
    th_sleep_ms(2000);
    for (int i = 0; i < 5; i++) {
        struct job j;
        assert_int_equal(jobs_get(jobs, id[i], &j), JOBS_OK);
        assert_int_equal(j.notified_at, 0); /* still pending, not given up */
    }
    assert_int_equal(th_services("smtp-start"), 0);
    for (int i = 0; i < 5; i++) {
        free(wait_mail(to[i], id[i], 60));
        struct job j = wait_settled(id[i], 30);
        assert_string_equal(j.notify_error, "");
    }
    th_sleep_ms(2000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mails_for(to[i], id[i], NULL), 1);
}

/* Killed after the job was marked notified and before the ack: the
 * redelivery sends nothing. */
static void crash_after_settling_sends_nothing_more(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "leo", NULL);
    restart_notifier("notified", true);
    make_job(to, "a.mp4", true, NULL, id);
    publish_outcome(id);
    assert_int_equal(th_wait_exit(&nt.pid, 60), 128 + SIGKILL);
    free(wait_mail(to, id, 10));
    wait_settled(id, 10);
    restart_notifier(NULL, true);
    wait_metric("repeated", 1, 60); /* a new process: the redelivery came and was absorbed */
    assert_int_equal(mails_for(to, id, NULL), 1);
}

/* Killed after sending and before settling: the redelivery sends again,
 * with the same Message-ID (documented: receivers can deduplicate). */
static void crash_after_sending_repeats_the_same_message_id(void **state)
{
    (void)state;
    char to[128], id[25];
    address(to, sizeof(to), "mia", NULL);
    restart_notifier("sent", true);
    make_job(to, "a.mp4", true, NULL, id);
    publish_outcome(id);
    assert_int_equal(th_wait_exit(&nt.pid, 60), 128 + SIGKILL);
    restart_notifier(NULL, true);
    wait_settled(id, 60);
    assert_int_equal(metric("sent"), 1); /* the new process sent it again */
    char want[100];
    snprintf(want, sizeof(want), "Message-ID: <job-%s@vid2mp3.example>", id);
    if (mode == OUTBOX) { /* the outbox replaced its file: still one */
        char *msg = NULL;
        assert_int_equal(mails_for(to, id, &msg), 1);
        assert_non_null(strstr(msg, want));
        free(msg);
        return;
    }
    /* both copies carry the same Message-ID */
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/mail/%s", spool(), to);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1000];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *msg = th_slurp(path, NULL);
        assert_non_null(strstr(msg, want));
        free(msg);
        n++;
    }
    closedir(d);
    assert_int_equal(n, 2);
}

/* A wrong SMTP password (535) is a setting to fix, not the email's fault:
 * nothing is given up, the email waits. */
static void wrong_password_keeps_the_email_waiting(void **state)
{
    (void)state;
    struct server p;
    server_init(&p, NULL);
    notifier_env(&p, NULL);
    char q[80];
    snprintf(q, sizeof(q), "%s-badpw", mp3_queue);
    server_env(&p, "MP3_QUEUE=%s", q);
    server_env(&p, "SMTP_PASSWORD=not-the-password");
    if (mode != DISTRIBUTED)
        snprintf(p.env[0], sizeof(p.env[0]), "DATA_DIR=%s", nt.dir);
    server_start(&p, "notifier");
    char to[128], id[25];
    address(to, sizeof(to), "olga", NULL);
    make_job(to, "a.mp4", true, NULL, id);
    int fails = events(spool(), "auth", " fail");
    char body[200];
    snprintf(body, sizeof(body), "{\"job_id\":\"%s\"}", id);
    assert_int_equal(queue_publish(queue, q, body, strlen(body), NULL), QUEUE_OK);
    for (int i = 0; i < 200 && events(spool(), "auth", " fail") < fails + 2; i++)
        th_sleep_ms(50);
    assert_true(events(spool(), "auth", " fail") >= fails + 2); /* refused, tried again */
    assert_int_equal(events(spool(), "rcpt", to), 0);
    struct job j;
    assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
    assert_int_equal(j.notified_at, 0);
    assert_int_equal(server_stop(&p, SIGTERM), 0);
    char *log = th_slurp(p.log, NULL);
    assert_null(strstr(log, "not-the-password"));
    assert_null(strstr(log, "email given up"));
    free(log);
    server_cleanup(&p);
}

/* SMTP_TLS=required against a server without STARTTLS: credentials are
 * never sent, nothing is sent, the email waits. */
static void no_starttls_means_no_credentials(void **state)
{
    (void)state;
    const char *plain_spool = th_need_env("VID2MP3_TEST_SMTP_PLAIN_SPOOL");
    struct server p;
    server_init(&p, NULL);
    notifier_env(&p, NULL);
    char q[80];
    snprintf(q, sizeof(q), "%s-plain", mp3_queue);
    server_env(&p, "MP3_QUEUE=%s", q);
    server_env(&p, "SMTP_URL=smtp://127.0.0.1:%s", th_need_env("VID2MP3_TEST_SMTP_PLAIN_PORT"));
    if (mode != DISTRIBUTED) /* the test's SQLite files; p.dir keeps only its log */
        snprintf(p.env[0], sizeof(p.env[0]), "DATA_DIR=%s", nt.dir);
    server_start(&p, "notifier");
    char to[128], id[25];
    address(to, sizeof(to), "nick", NULL);
    make_job(to, "a.mp4", true, NULL, id);
    int conns = events(plain_spool, "connect", NULL);
    char body[200];
    snprintf(body, sizeof(body), "{\"job_id\":\"%s\"}", id);
    assert_int_equal(queue_publish(queue, q, body, strlen(body), NULL), QUEUE_OK);
    for (int i = 0; i < 200 && events(plain_spool, "connect", NULL) < conns + 2; i++)
        th_sleep_ms(50);
    assert_true(events(plain_spool, "connect", NULL) >= conns + 2); /* it tried, twice */
    assert_int_equal(events(plain_spool, "auth", NULL), 0);
    assert_int_equal(events(plain_spool, "mail", NULL), 0);
    assert_int_equal(events(plain_spool, "rcpt", to), 0);
    struct job j;
    assert_int_equal(jobs_get(jobs, id, &j), JOBS_OK);
    assert_int_equal(j.notified_at, 0);
    assert_int_equal(server_stop(&p, SIGTERM), 0);
    char *log = th_slurp(p.log, NULL);
    assert_non_null(strstr(log, "STARTTLS"));
    assert_null(strstr(log, th_need_env("VID2MP3_TEST_SMTP_PASSWORD")));
    free(log);
    server_cleanup(&p);
}

static void sigterm_exits_cleanly(void **state)
{
    (void)state;
    assert_int_equal(server_stop(&nt, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "outbox") != 0 && strcmp(argv[2], "smtp") != 0 &&
                      strcmp(argv[2], "distributed") != 0)) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3 outbox|smtp|distributed\n", argv[0]);
        return 2;
    }
    if (server_args(2, argv) != 0)
        return 2;
    mode = strcmp(argv[2], "outbox") == 0 ? OUTBOX
           : strcmp(argv[2], "smtp") == 0 ? SMTP
                                          : DISTRIBUTED;
    const struct CMUnitTest common[] = {
        cmocka_unit_test(done_job_gets_one_email),
        cmocka_unit_test(failed_job_gets_the_reason),
        cmocka_unit_test(owner_address_with_crlf_is_refused),
        cmocka_unit_test(owner_with_two_addresses_is_refused),
        cmocka_unit_test(filename_with_crlf_bcc_stays_in_the_subject),
        cmocka_unit_test(non_ascii_filename),
        cmocka_unit_test(missing_job_is_dropped),
        cmocka_unit_test(malformed_messages_are_dead_lettered),
        cmocka_unit_test(crash_after_settling_sends_nothing_more),
        cmocka_unit_test(crash_after_sending_repeats_the_same_message_id),
        cmocka_unit_test(sigterm_exits_cleanly),
    };
    const struct CMUnitTest smtp[] = {
        cmocka_unit_test(done_job_gets_one_email),
        cmocka_unit_test(failed_job_gets_the_reason),
        cmocka_unit_test(owner_address_with_crlf_is_refused),
        cmocka_unit_test(owner_with_two_addresses_is_refused),
        cmocka_unit_test(filename_with_crlf_bcc_stays_in_the_subject),
        cmocka_unit_test(non_ascii_filename),
        cmocka_unit_test(missing_job_is_dropped),
        cmocka_unit_test(malformed_messages_are_dead_lettered),
        cmocka_unit_test(temporary_failure_is_retried),
        cmocka_unit_test(temporary_data_failure_is_retried),
        cmocka_unit_test(permanent_failure_is_not_retried),
        cmocka_unit_test(server_down_then_back),
        cmocka_unit_test(no_starttls_means_no_credentials),
        cmocka_unit_test(wrong_password_keeps_the_email_waiting),
        cmocka_unit_test(crash_after_settling_sends_nothing_more),
        cmocka_unit_test(crash_after_sending_repeats_the_same_message_id),
        cmocka_unit_test(sigterm_exits_cleanly),
    };
    const char *name = mode == OUTBOX ? "notifier-outbox"
                       : mode == SMTP ? "notifier-smtp"
                                      : "notifier-distributed";
    if (mode == OUTBOX)
        return cmocka_run_group_tests_name(name, common, group_setup, group_teardown);
    return cmocka_run_group_tests_name(name, smtp, group_setup, group_teardown);
}
