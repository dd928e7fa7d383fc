/*
 * notify_bench: plays the converter's part for bench/notify.sh, in the
 * embedded stores of one DATA_DIR that a `vid2mp3 notifier` also uses.
 *
 *   notify_bench make DATA_DIR N RUNID
 *       Creates N finished (done) jobs in DATA_DIR/jobs.db, owned by
 *       u<i>-RUNID@bench.example (i = 1..N), each with an MP3 fid, a
 *       duration and a size, as the converter leaves them. Prints
 *       "JOB_ID OWNER" per job.
 *   notify_bench publish DATA_DIR QUEUE JOBSFILE RATE
 *       Publishes the outcome message {"job_id":"..."} of each job of
 *       JOBSFILE (lines "JOB_ID OWNER", as make printed them) on QUEUE of
 *       DATA_DIR/queue.db: RATE per second on a fixed schedule, or as fast
 *       as the commits go with RATE 0. Prints "OWNER NS" per job, NS the
 *       CLOCK_REALTIME nanoseconds at which its publish returned (committed:
 *       from then on the notifier may take it), after the last publish.
 *
 * A second process on the SQLite files is fine (WAL), but the notifier
 * sees another process's publishes only when it polls (every 200 ms when
 * idle, see queue_sqlite.c): that floors the latency of this embedded set-up.
 */
#include "queue/queue.h"
#include "store/jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
    char id[BLOB_ID_LEN + 1];
    char owner[BLOB_OWNER_MAX + 1];
    int64_t ns;
};

static int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps until the CLOCK_MONOTONIC instant at_ns. */
static void sleep_until(int64_t at_ns)
{
    struct timespec ts = {(time_t)(at_ns / 1000000000), (long)(at_ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int arg_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "notify_bench: not a number in %ld..%ld: %s\n", lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* One done job for owner, moved queued -> converting -> done as the
 * converter moves it. id: BLOB_ID_LEN + 1 bytes. */
static int make_job(struct jobs *jobs, const char *owner, long i, char *id)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    blob_id_new(j.id);
    blob_id_new(j.video_fid);
    snprintf(j.owner, sizeof(j.owner), "%s", owner);
    snprintf(j.filename, sizeof(j.filename), "bench-video-%ld.mp4", i);
    snprintf(j.options, sizeof(j.options), "{}");
    int rc = jobs_create(jobs, &j);
    if (rc != JOBS_OK)
        goto fail;
    struct job_update c = {
        .from = JOB_FROM(JOB_QUEUED), .set = JOB_SET_STATUS, .status = JOB_CONVERTING};
    rc = jobs_update(jobs, j.id, &c);
    if (rc != JOBS_OK)
        goto fail;
    char mp3[BLOB_ID_LEN + 1];
    blob_id_new(mp3);
    struct job_update d = {.from = JOB_FROM(JOB_CONVERTING),
                           .set = JOB_SET_STATUS | JOB_SET_MP3 | JOB_SET_RESULT,
                           .status = JOB_DONE,
                           .mp3_fid = mp3,
                           .duration = 605.4,
                           .mp3_bytes = 3456789};
    rc = jobs_update(jobs, j.id, &d);
    if (rc != JOBS_OK)
        goto fail;
    snprintf(id, BLOB_ID_LEN + 1, "%s", j.id);
    return 0;
fail:
    fprintf(stderr, "notify_bench: job %ld for %s: %s\n", i, owner, jobs_strerror(rc));
    return -1;
}

static int cmd_make(const char *data_dir, const char *count, const char *runid)
{
    long n = 0;
    if (arg_long(count, 1, 1000000, &n) != 0)
        return 2;
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/jobs.db", data_dir);
    struct jobs *jobs = jobs_sqlite_new(path, err, sizeof(err));
    if (jobs == NULL) {
        fprintf(stderr, "notify_bench: %s: %s\n", path, err);
        return 1;
    }
    int rc = 1;
    for (long i = 1; i <= n; i++) {
        char owner[BLOB_OWNER_MAX + 1], id[BLOB_ID_LEN + 1];
        if (snprintf(owner, sizeof(owner), "u%ld-%s@bench.example", i, runid) >=
            (int)sizeof(owner)) {
            fprintf(stderr, "notify_bench: RUNID too long\n");
            goto out;
        }
        if (make_job(jobs, owner, i, id) != 0)
            goto out;
        printf("%s %s\n", id, owner);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    jobs_free(jobs);
    return rc;
}

/* Reads "JOB_ID OWNER" lines. Returns the entries (caller frees) and their
 * count in *n, or NULL. */
static struct entry *read_jobs(const char *file, long *n)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "notify_bench: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    struct entry *e = NULL;
    long len = 0, cap = 0;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (len == cap) {
            cap = cap > 0 ? cap * 2 : 256;
            struct entry *grown = realloc(e, (size_t)cap * sizeof(*e));
            if (grown == NULL)
                goto fail;
            e = grown;
        }
        char *sp = strchr(line, ' ');
        char *nl = strchr(line, '\n');
        if (sp == NULL || nl == NULL || sp - line != BLOB_ID_LEN || nl - sp - 1 > BLOB_OWNER_MAX ||
            nl - sp - 1 < 1) {
            fprintf(stderr, "notify_bench: %s: not a \"JOB_ID OWNER\" line: %.80s\n", file, line);
            goto fail;
        }
        memcpy(e[len].id, line, BLOB_ID_LEN);
        e[len].id[BLOB_ID_LEN] = '\0';
        memcpy(e[len].owner, sp + 1, (size_t)(nl - sp - 1));
        e[len].owner[nl - sp - 1] = '\0';
        e[len].ns = 0;
        len++;
    }
    fclose(f);
    if (len == 0) {
        fprintf(stderr, "notify_bench: %s: no jobs\n", file);
        free(e);
        return NULL;
    }
    *n = len;
    return e;
fail:
    fclose(f);
    free(e);
    return NULL;
}

static int cmd_publish(const char *data_dir, const char *qname, const char *file,
                       const char *rate_arg)
{
    long rate = 0, n = 0;
    if (arg_long(rate_arg, 0, 1000000, &rate) != 0)
        return 2;
    struct entry *e = read_jobs(file, &n);
    if (e == NULL)
        return 1;
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/queue.db", data_dir);
    struct queue_settings s;
    queue_settings_default(&s);
    struct queue *q = queue_sqlite_new(path, &s, err, sizeof(err));
    int rc = 1;
    if (q == NULL) {
        fprintf(stderr, "notify_bench: %s: %s\n", path, err);
        goto out;
    }
    if (queue_declare(q, qname) != QUEUE_OK) {
        fprintf(stderr, "notify_bench: cannot declare %s\n", qname);
        goto out;
    }
    int64_t t0 = clock_ns(CLOCK_MONOTONIC), late = 0;
    for (long i = 0; i < n; i++) {
        if (rate > 0) {
            int64_t at = t0 + (int64_t)((double)i * 1e9 / (double)rate);
            int64_t now = clock_ns(CLOCK_MONOTONIC);
            if (now > at + 5000000)
                late++;
            else
                sleep_until(at);
        }
        char body[64];
        int len = snprintf(body, sizeof(body), "{\"job_id\":\"%s\"}", e[i].id);
        int prc = queue_publish(q, qname, body, (size_t)len, "notify-bench");
        if (prc != QUEUE_OK) {
            fprintf(stderr, "notify_bench: publish %ld: %s\n", i + 1, queue_strerror(prc));
            goto out;
        }
        e[i].ns = clock_ns(CLOCK_REALTIME);
    }
    double secs = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    fprintf(stderr, "notify_bench: %ld publishes in %.2f s (%.0f/s)", n, secs, (double)n / secs);
    if (rate > 0)
        fprintf(stderr, ", %ld more than 5 ms behind the %ld/s schedule", late, rate);
    fprintf(stderr, "\n");
    for (long i = 0; i < n; i++)
        printf("%s %" PRId64 "\n", e[i].owner, e[i].ns);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    queue_free(q);
    free(e);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "make") == 0)
        return cmd_make(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "publish") == 0)
        return cmd_publish(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr,
            "usage: %s make DATA_DIR N RUNID\n"
            "       %s publish DATA_DIR QUEUE JOBSFILE RATE\n",
            argv[0], argv[0]);
    return 2;
}
