/*
 * Contract suite for the jobs interface: the same tests against every
 * backend. Usage: test_jobs_contract sqlite|mongo. The mongo run uses the
 * MongoDB-wire server of scripts/test-services.sh (VID2MP3_TEST_MONGODB_URI)
 * and fails when it is missing. The collection is shared, so every test
 * uses owners and ids of its own.
 */
#include "harness.h"

#include <math.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/jobs.h"

static const char *backend;
static char *tmpdir;
static struct jobs *store;
static char owner_a[64], owner_b[64];

static struct jobs *open_backend(char *err, size_t len)
{
    if (strcmp(backend, "sqlite") == 0) {
        char path[512];
        snprintf(path, sizeof(path), "%s/jobs.db", tmpdir);
        return jobs_sqlite_new(path, err, len);
    }
    return jobs_mongo_new(th_need_env("VID2MP3_TEST_MONGODB_URI"), err, len);
}

static int setup(void **state)
{
    (void)state;
    tmpdir = th_tmpdir();
    char err[256] = "", id[BLOB_ID_LEN + 1];
    store = open_backend(err, sizeof(err));
    if (store == NULL)
        fail_msg("cannot open %s backend: %s", backend, err);
    blob_id_new(id);
    snprintf(owner_a, sizeof(owner_a), "a-%s@example.com", id);
    snprintf(owner_b, sizeof(owner_b), "b-%s@example.com", id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jobs_free(store);
    store = NULL;
    th_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Creates a queued job of owner; its id goes to id (25 bytes). */
static void make(const char *owner, const char *filename, char *id)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    blob_id_new(j.id);
    blob_id_new(j.video_fid);
    snprintf(j.owner, sizeof(j.owner), "%s", owner);
    snprintf(j.filename, sizeof(j.filename), "%s", filename);
    snprintf(j.options, sizeof(j.options), "{\"quality\":2}");
    snprintf(j.request_id, sizeof(j.request_id), "req-%s", j.id);
    assert_int_equal(jobs_create(store, &j), JOBS_OK);
    memcpy(id, j.id, sizeof(j.id));
}

static int to(const char *id, unsigned from, enum job_status status)
{
    struct job_update u = {.from = from, .set = JOB_SET_STATUS, .status = status};
    return jobs_update(store, id, &u);
}

#define Q JOB_FROM(JOB_QUEUED)
#define C JOB_FROM(JOB_CONVERTING)
#define D JOB_FROM(JOB_DONE)
#define F JOB_FROM(JOB_FAILED)

static void create_then_get(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1];
    int64_t before = now_ms();
    make(owner_a, "Vidéo de vacances.mp4", id);
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_string_equal(j.id, id);
    assert_string_equal(j.owner, owner_a);
    assert_string_equal(j.filename, "Vidéo de vacances.mp4");
    assert_string_equal(j.options, "{\"quality\":2}");
    assert_true(blob_id_valid(j.video_fid));
    assert_string_equal(j.mp3_fid, "");
    assert_int_equal(j.status, JOB_QUEUED);
    assert_true(j.progress == 0.0);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.notified_at, 0);
    assert_string_equal(j.notify_error, "");
    assert_true(j.duration < 0);
    assert_true(j.mp3_bytes < 0);
    assert_true(j.created_at >= before - 5 && j.created_at <= now_ms() + 5);
    assert_true(j.updated_at >= j.created_at);
    struct job again = j;
    assert_int_equal(jobs_create(store, &again), JOBS_EEXIST);
    struct job by_video;
    assert_int_equal(jobs_find_by_video(store, j.video_fid, &by_video), JOBS_OK);
    assert_string_equal(by_video.id, id);
}

static void missing_and_malformed(void **state)
{
    (void)state;
    struct job j;
    char id[BLOB_ID_LEN + 1];
    blob_id_new(id);
    assert_int_equal(jobs_get(store, id, &j), JOBS_ENOTFOUND);
    assert_int_equal(jobs_find_by_video(store, id, &j), JOBS_ENOTFOUND);
    assert_int_equal(to(id, Q, JOB_CONVERTING), JOBS_ENOTFOUND);
    assert_int_equal(jobs_mark_notified(store, id, now_ms(), NULL), JOBS_ENOTFOUND);
    assert_int_equal(jobs_remove(store, id), JOBS_ENOTFOUND);
    assert_int_equal(jobs_get(store, "nothex", &j), JOBS_EINVAL);
    assert_int_equal(jobs_get(store, "0123456789abcdef0123456g", &j), JOBS_EINVAL);
    assert_int_equal(jobs_get(store, "' OR 1=1 --", &j), JOBS_EINVAL);
    struct job bad;
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.id, sizeof(bad.id), "xyz");
    assert_int_equal(jobs_create(store, &bad), JOBS_EINVAL);
}

/* if_mp3: an update that holds only while the job's MP3 id is the one the
 * caller saw, so two deliveries cannot take each other's MP3. */
static void mp3_compare_and_set(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], w1[BLOB_ID_LEN + 1], w2[BLOB_ID_LEN + 1];
    make(owner_a, "cas.mp4", id);
    struct job_update start = {.from = Q | C, .set = JOB_SET_STATUS, .status = JOB_CONVERTING};
    assert_int_equal(jobs_update(store, id, &start), JOBS_OK);
    blob_id_new(w1);
    blob_id_new(w2);
    struct job_update a = {.from = C, .set = JOB_SET_MP3, .mp3_fid = w1, .if_mp3 = ""};
    assert_int_equal(jobs_update(store, id, &a), JOBS_OK);
    /* a second delivery that saw no MP3 loses */
    struct job_update b = {.from = C, .set = JOB_SET_MP3, .mp3_fid = w2, .if_mp3 = ""};
    assert_int_equal(jobs_update(store, id, &b), JOBS_ECONFLICT);
    /* one that saw w1 takes over */
    b.if_mp3 = w1;
    assert_int_equal(jobs_update(store, id, &b), JOBS_OK);
    /* and the first cannot finish with w1 any more */
    struct job_update fin = {.from = C,
                             .set = JOB_SET_STATUS | JOB_SET_MP3,
                             .status = JOB_DONE,
                             .mp3_fid = w1,
                             .if_mp3 = w1};
    assert_int_equal(jobs_update(store, id, &fin), JOBS_ECONFLICT);
    fin.mp3_fid = w2;
    fin.if_mp3 = w2;
    assert_int_equal(jobs_update(store, id, &fin), JOBS_OK);
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_DONE);
    assert_string_equal(j.mp3_fid, w2);
    struct job_update bad = {.from = C, .set = JOB_SET_PROGRESS, .progress = 0.1, .if_mp3 = "../x"};
    assert_int_equal(jobs_update(store, id, &bad), JOBS_EINVAL);
}

static void legal_transitions(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], mp3[BLOB_ID_LEN + 1];
    struct job j;
    /* queued -> converting -> converting (progress, attempt) -> done */
    make(owner_a, "a.mp4", id);
    struct job_update start = {
        .from = Q | C, .set = JOB_SET_STATUS | JOB_ADD_ATTEMPT, .status = JOB_CONVERTING};
    assert_int_equal(jobs_update(store, id, &start), JOBS_OK);
    struct job_update prog = {.from = C, .set = JOB_SET_PROGRESS, .progress = 0.5};
    assert_int_equal(jobs_update(store, id, &prog), JOBS_OK);
    assert_int_equal(jobs_update(store, id, &start), JOBS_OK); /* a redelivery */
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_CONVERTING);
    assert_true(j.progress == 0.5);
    assert_int_equal(j.attempts, 2);
    blob_id_new(mp3);
    struct job_update done = {.from = C,
                              .set = JOB_SET_STATUS | JOB_SET_MP3 | JOB_SET_PROGRESS,
                              .status = JOB_DONE,
                              .progress = 1.0,
                              .mp3_fid = mp3};
    assert_int_equal(jobs_update(store, id, &done), JOBS_OK);
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_DONE);
    assert_string_equal(j.mp3_fid, mp3);
    assert_true(j.progress == 1.0);

    /* queued -> failed, and converting -> failed, with a reason */
    struct job_update failed = {.from = Q | C,
                                .set = JOB_SET_STATUS | JOB_SET_ERROR,
                                .status = JOB_FAILED,
                                .error = "the video has no audio track"};
    make(owner_a, "b.mp4", id);
    assert_int_equal(jobs_update(store, id, &failed), JOBS_OK);
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_FAILED);
    assert_string_equal(j.error, "the video has no audio track");
    make(owner_a, "c.mp4", id);
    assert_int_equal(to(id, Q, JOB_CONVERTING), JOBS_OK);
    assert_int_equal(jobs_update(store, id, &failed), JOBS_OK);
}

static void illegal_transitions(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], mp3[BLOB_ID_LEN + 1];
    blob_id_new(mp3);
    make(owner_a, "x.mp4", id);
    /* done is only reached from converting */
    assert_int_equal(to(id, C, JOB_DONE), JOBS_ECONFLICT);
    assert_int_equal(to(id, Q, JOB_CONVERTING), JOBS_OK);
    struct job_update done = {
        .from = C, .set = JOB_SET_STATUS | JOB_SET_MP3, .status = JOB_DONE, .mp3_fid = mp3};
    assert_int_equal(jobs_update(store, id, &done), JOBS_OK);
    /* a redelivered message cannot move a done job back, nor fail it */
    assert_int_equal(to(id, Q | C, JOB_CONVERTING), JOBS_ECONFLICT);
    assert_int_equal(to(id, Q | C, JOB_FAILED), JOBS_ECONFLICT);
    struct job_update prog = {.from = Q | C, .set = JOB_SET_PROGRESS, .progress = 0.1};
    assert_int_equal(jobs_update(store, id, &prog), JOBS_ECONFLICT);
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.status, JOB_DONE);
    assert_true(j.progress == 0.0 || j.progress == 1.0);

    /* updates no job could take are refused before touching storage */
    assert_int_equal(to(id, Q | C, JOB_QUEUED), JOBS_EINVAL);
    assert_int_equal(to(id, Q, JOB_DONE), JOBS_EINVAL);
    assert_int_equal(to(id, D, JOB_CONVERTING), JOBS_EINVAL);
    assert_int_equal(to(id, F, JOB_FAILED), JOBS_EINVAL);
    assert_int_equal(to(id, 0, JOB_FAILED), JOBS_EINVAL);
    struct job_update bad_prog = {.from = C, .set = JOB_SET_PROGRESS, .progress = 1.5};
    assert_int_equal(jobs_update(store, id, &bad_prog), JOBS_EINVAL);
    struct job_update bad_mp3 = {.from = C, .set = JOB_SET_MP3, .mp3_fid = "nope"};
    assert_int_equal(jobs_update(store, id, &bad_mp3), JOBS_EINVAL);
    struct job_update nothing = {.from = C, .set = 0};
    assert_int_equal(jobs_update(store, id, &nothing), JOBS_EINVAL);
}

static void notified_once(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1];
    make(owner_a, "n.mp4", id);
    int64_t t = now_ms();
    assert_int_equal(jobs_mark_notified(store, id, t, NULL), JOBS_OK);
    assert_int_equal(jobs_mark_notified(store, id, t + 1000, "late"), JOBS_ECONFLICT);
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_int_equal(j.notified_at, t);
    assert_string_equal(j.notify_error, "");
    assert_int_equal(jobs_mark_notified(store, id, 0, NULL), JOBS_EINVAL);

    /* a notification given up keeps its reason, once */
    char id2[BLOB_ID_LEN + 1];
    make(owner_a, "m.mp4", id2);
    assert_int_equal(jobs_mark_notified(store, id2, t, "550 5.1.1 Mailbox unavailable"), JOBS_OK);
    assert_int_equal(jobs_mark_notified(store, id2, t + 1, NULL), JOBS_ECONFLICT);
    assert_int_equal(jobs_get(store, id2, &j), JOBS_OK);
    assert_int_equal(j.notified_at, t);
    assert_string_equal(j.notify_error, "550 5.1.1 Mailbox unavailable");
    char toolong[JOB_ERROR_MAX + 2];
    memset(toolong, 'x', sizeof(toolong) - 1);
    toolong[sizeof(toolong) - 1] = '\0';
    assert_int_equal(jobs_mark_notified(store, id, t, toolong), JOBS_EINVAL);
}

static void result_recorded(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], mp3[BLOB_ID_LEN + 1];
    make(owner_a, "r.mp4", id);
    blob_id_new(mp3);
    struct job_update bad = {.from = Q, .set = JOB_SET_RESULT, .duration = NAN, .mp3_bytes = 1};
    assert_int_equal(jobs_update(store, id, &bad), JOBS_EINVAL);
    bad.duration = 1;
    bad.mp3_bytes = -1;
    assert_int_equal(jobs_update(store, id, &bad), JOBS_EINVAL);
    assert_int_equal(to(id, Q, JOB_CONVERTING), JOBS_OK);
    struct job_update fin = {.from = C,
                             .set = JOB_SET_STATUS | JOB_SET_MP3 | JOB_SET_RESULT,
                             .status = JOB_DONE,
                             .mp3_fid = mp3,
                             .duration = 600.25,
                             .mp3_bytes = 9876543210LL};
    assert_int_equal(jobs_update(store, id, &fin), JOBS_OK);
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_true(j.duration == 600.25);
    assert_int_equal(j.mp3_bytes, 9876543210LL);
    assert_string_equal(j.mp3_fid, mp3);

    /* an unknown duration (any negative) reads back as -1 */
    char id2[BLOB_ID_LEN + 1];
    make(owner_a, "r2.mp4", id2);
    struct job_update unknown = {.from = Q, .set = JOB_SET_RESULT, .duration = -7, .mp3_bytes = 5};
    assert_int_equal(jobs_update(store, id2, &unknown), JOBS_OK);
    assert_int_equal(jobs_get(store, id2, &j), JOBS_OK);
    assert_true(j.duration == -1.0);
    assert_int_equal(j.mp3_bytes, 5);
}

/* One claim at a time; none once settled; an expired claim is free. */
static void notify_claims(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], missing[BLOB_ID_LEN + 1];
    make(owner_a, "c.mp4", id);
    blob_id_new(missing);
    int64_t t = now_ms();
    assert_int_equal(jobs_claim_notify(store, id, t, t + 1000), JOBS_OK);
    assert_int_equal(jobs_claim_notify(store, id, t + 10, t + 2000), JOBS_ECONFLICT);
    assert_int_equal(jobs_claim_notify(store, id, t + 1000, t + 3000), JOBS_OK); /* ran out */
    assert_int_equal(jobs_claim_notify(store, id, t + 1001, t + 4000), JOBS_ECONFLICT);
    /* its holder ends it early; someone else's end is refused */
    assert_int_equal(jobs_release_notify(store, id, t + 2999), JOBS_ECONFLICT);
    assert_int_equal(jobs_release_notify(store, id, t + 3000), JOBS_OK);
    assert_int_equal(jobs_claim_notify(store, id, t + 1001, t + 3000), JOBS_OK);
    assert_int_equal(jobs_mark_notified(store, id, t + 1002, NULL), JOBS_OK);
    assert_int_equal(jobs_claim_notify(store, id, t + 9000, t + 9999), JOBS_ECONFLICT);
    assert_int_equal(jobs_claim_notify(store, missing, t, t + 1), JOBS_ENOTFOUND);
    assert_int_equal(jobs_claim_notify(store, id, t, t), JOBS_EINVAL);
    assert_int_equal(jobs_claim_notify(store, "nope", t, t + 1), JOBS_EINVAL);
}

struct claimer {
    const char *id;
    int64_t now;
    atomic_int *won;
};

static void *claim_thread(void *arg)
{
    struct claimer *c = arg;
    if (jobs_claim_notify(store, c->id, c->now, c->now + 60000) == JOBS_OK)
        atomic_fetch_add(c->won, 1);
    return NULL;
}

/* Eight notifiers racing for one job: exactly one gets it. */
static void notify_claim_race(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1];
    make(owner_a, "race.mp4", id);
    atomic_int won = 0;
    pthread_t t[8];
    struct claimer c = {id, now_ms(), &won};
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, claim_thread, &c), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&won), 1);
}

struct collected {
    int n;
    char ids[16][BLOB_ID_LEN + 1];
    char owners[16][BLOB_OWNER_MAX + 1];
    int64_t created[16];
};

static int collect(const struct job *j, void *ctx)
{
    struct collected *c = ctx;
    if (c->n < 16) {
        memcpy(c->ids[c->n], j->id, sizeof(j->id));
        snprintf(c->owners[c->n], sizeof(c->owners[0]), "%s", j->owner);
        c->created[c->n] = j->created_at;
    }
    c->n++;
    return 0;
}

static void listing_is_per_owner_newest_first(void **state)
{
    (void)state;
    char a[5][BLOB_ID_LEN + 1], b[BLOB_ID_LEN + 1];
    for (int i = 0; i < 5; i++) {
        make(owner_a, "a.mp4", a[i]);
        struct timespec ts = {0, 3 * 1000 * 1000}; /* distinct milliseconds */
        nanosleep(&ts, NULL);
    }
    make(owner_b, "b.mp4", b);
    struct collected c = {0};
    assert_int_equal(jobs_list(store, owner_a, 0, NULL, 10, collect, &c), JOBS_OK);
    assert_int_equal(c.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(c.owners[i], owner_a);
        assert_string_equal(c.ids[i], a[4 - i]); /* newest first */
    }
    struct collected page = {0};
    assert_int_equal(jobs_list(store, owner_a, 0, NULL, 2, collect, &page), JOBS_OK);
    assert_int_equal(page.n, 2);
    struct collected next = {0};
    assert_int_equal(jobs_list(store, owner_a, page.created[1], NULL, 2, collect, &next), JOBS_OK);
    assert_int_equal(next.n, 2);
    assert_string_equal(next.ids[0], a[2]);
    assert_string_equal(next.ids[1], a[1]);
    struct collected other = {0};
    assert_int_equal(jobs_list(store, owner_b, 0, NULL, 10, collect, &other), JOBS_OK);
    assert_int_equal(other.n, 1);
    assert_string_equal(other.ids[0], b);
    struct collected none = {0};
    assert_int_equal(jobs_list(store, "nobody@example.com", 0, NULL, 10, collect, &none), JOBS_OK);
    assert_int_equal(none.n, 0);
    assert_int_equal(jobs_list(store, owner_a, 0, NULL, 0, collect, &none), JOBS_EINVAL);
    assert_int_equal(jobs_list(store, owner_a, 0, NULL, JOB_LIST_MAX + 1, collect, &none),
                     JOBS_EINVAL);
}

/* Paging by (created_at, id) sees every job once, even jobs created in the
 * same millisecond on both sides of a page boundary. */
static void paging_sees_every_job_once(void **state)
{
    (void)state;
    enum { N = 20 };
    char made[N][BLOB_ID_LEN + 1];
    const char *owner = "pager@example.com";
    for (int i = 0; i < N; i++)
        make(owner, "p.mp4", made[i]); /* as fast as the store goes: ties likely */
    int seen = 0;
    bool found[N] = {false};
    int64_t before = 0;
    char before_id[BLOB_ID_LEN + 1] = "";
    for (int pages = 0; pages < N + 1; pages++) {
        struct collected page = {0};
        assert_int_equal(jobs_list(store, owner, before, before_id, 3, collect, &page), JOBS_OK);
        if (page.n == 0)
            break;
        for (int k = 0; k < page.n; k++) {
            for (int i = 0; i < N; i++) {
                if (strcmp(page.ids[k], made[i]) == 0) {
                    assert_false(found[i]);
                    found[i] = true;
                }
            }
            seen++;
        }
        before = page.created[page.n - 1];
        memcpy(before_id, page.ids[page.n - 1], sizeof(before_id));
    }
    assert_int_equal(seen, N);
    struct collected none = {0};
    assert_int_equal(jobs_list(store, owner, 1, "not-an-id", 3, collect, &none), JOBS_EINVAL);
}

#define THREADS 8
static char race_id[BLOB_ID_LEN + 1];
static char race_mp3[THREADS][BLOB_ID_LEN + 1];
static atomic_int race_won;

static void *finish_race(void *arg)
{
    long i = (long)arg;
    struct job_update done = {
        .from = C, .set = JOB_SET_STATUS | JOB_SET_MP3, .status = JOB_DONE, .mp3_fid = race_mp3[i]};
    int rc = jobs_update(store, race_id, &done);
    if (rc == JOBS_OK)
        atomic_fetch_add(&race_won, 1);
    else if (rc != JOBS_ECONFLICT)
        return (void *)1;
    return NULL;
}

static void *bump_attempts(void *arg)
{
    (void)arg;
    struct job_update u = {
        .from = Q | C, .set = JOB_ADD_ATTEMPT | JOB_SET_PROGRESS, .progress = 0.3};
    for (int k = 0; k < 10; k++) {
        if (jobs_update(store, race_id, &u) != JOBS_OK)
            return (void *)1;
    }
    return NULL;
}

static void concurrent_updates(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    make(owner_a, "race.mp4", race_id);
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, bump_attempts, NULL);
    for (int i = 0; i < THREADS; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    struct job j;
    assert_int_equal(jobs_get(store, race_id, &j), JOBS_OK);
    assert_int_equal(j.attempts, THREADS * 10); /* no increment lost */

    assert_int_equal(to(race_id, Q, JOB_CONVERTING), JOBS_OK);
    atomic_store(&race_won, 0);
    for (long i = 0; i < THREADS; i++) {
        blob_id_new(race_mp3[i]);
        pthread_create(&t[i], NULL, finish_race, (void *)i);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    assert_int_equal(atomic_load(&race_won), 1); /* exactly one conversion counts */
    assert_int_equal(jobs_get(store, race_id, &j), JOBS_OK);
    int winners = 0;
    for (int i = 0; i < THREADS; i++)
        winners += strcmp(j.mp3_fid, race_mp3[i]) == 0;
    assert_int_equal(winners, 1);
}

static void remove_and_reopen(void **state)
{
    (void)state;
    char gone[BLOB_ID_LEN + 1], kept[BLOB_ID_LEN + 1];
    make(owner_a, "gone.mp4", gone);
    make(owner_a, "kept.mp4", kept);
    assert_int_equal(jobs_remove(store, gone), JOBS_OK);
    jobs_free(store);
    char err[256];
    store = open_backend(err, sizeof(err));
    assert_non_null(store);
    struct job j;
    assert_int_equal(jobs_get(store, gone, &j), JOBS_ENOTFOUND);
    assert_int_equal(jobs_get(store, kept, &j), JOBS_OK);
    assert_string_equal(j.filename, "kept.mp4");
    assert_int_equal(jobs_ping(store), JOBS_OK);
}

static void *open_thread(void *arg)
{
    char err[256];
    *(struct jobs **)arg = open_backend(err, sizeof(err));
    if (*(struct jobs **)arg == NULL)
        fprintf(stderr, "open: %s\n", err);
    return NULL;
}

/* A database made by the first release (no notify_error, duration,
 * mp3_bytes) is upgraded when opened, its rows kept. MongoDB documents
 * without the fields read as unknown. */
static void older_schema_is_upgraded(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1], vid[BLOB_ID_LEN + 1];
    blob_id_new(id);
    blob_id_new(vid);
    if (strcmp(backend, "sqlite") != 0) {
        mongoc_client_t *c = mongoc_client_new(th_need_env("VID2MP3_TEST_MONGODB_URI"));
        mongoc_collection_t *col = mongoc_client_get_collection(c, "videos", "jobs");
        bson_oid_t oid;
        bson_oid_init_from_string(&oid, id);
        bson_t *doc =
            BCON_NEW("_id", BCON_OID(&oid), "owner", BCON_UTF8(owner_a), "video_fid",
                     BCON_UTF8(vid), "mp3_fid", BCON_UTF8(""), "filename", BCON_UTF8("old.mp4"),
                     "options", BCON_UTF8("{}"), "request_id", BCON_UTF8(""), "status",
                     BCON_UTF8("queued"), "progress", BCON_DOUBLE(0), "error", BCON_UTF8(""),
                     "attempts", BCON_INT32(0), "created_at", BCON_DATE_TIME(now_ms()),
                     "updated_at", BCON_DATE_TIME(now_ms()), "notified_at", BCON_INT64(0));
        assert_true(mongoc_collection_insert_one(col, doc, NULL, NULL, NULL));
        bson_destroy(doc);
        mongoc_collection_destroy(col);
        mongoc_client_destroy(c);
    } else {
        jobs_free(store);
        char path[600];
        snprintf(path, sizeof(path), "%s/jobs.db", tmpdir);
        unlink(path);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        char sql[1500];
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
                 " video_fid TEXT NOT NULL, mp3_fid TEXT NOT NULL DEFAULT '',"
                 " filename TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}',"
                 " request_id TEXT NOT NULL DEFAULT '', status INTEGER NOT NULL,"
                 " progress REAL NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',"
                 " attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
                 " updated_at INTEGER NOT NULL, notified_at INTEGER NOT NULL DEFAULT 0);"
                 "INSERT INTO jobs (id, owner, video_fid, filename, status, created_at,"
                 " updated_at) VALUES ('%s', '%s', '%s', 'old.mp4', 0, 1, 1);",
                 id, owner_a, vid);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        /* services starting together open it at once: all must succeed */
        pthread_t t[4];
        struct jobs *opened[4] = {0};
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&t[i], NULL, open_thread, &opened[i]), 0);
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            assert_non_null(opened[i]);
        }
        store = opened[0];
        for (int i = 1; i < 4; i++)
            jobs_free(opened[i]);
    }
    struct job j;
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_string_equal(j.filename, "old.mp4");
    assert_string_equal(j.notify_error, "");
    assert_true(j.duration < 0);
    assert_true(j.mp3_bytes < 0);
    assert_int_equal(jobs_mark_notified(store, id, now_ms(), "given up"), JOBS_OK);
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_string_equal(j.notify_error, "given up");
    assert_int_equal(jobs_remove(store, id), JOBS_OK);
}

static void dead_backend(void **state)
{
    (void)state;
    char err[256] = "";
    if (strcmp(backend, "mongo") == 0) {
        char uri[128];
        snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=500",
                 th_free_port());
        struct jobs *dead = jobs_mongo_new(uri, err, sizeof(err));
        assert_non_null(dead);
        struct job j;
        char id[BLOB_ID_LEN + 1];
        blob_id_new(id);
        time_t start = time(NULL);
        assert_int_equal(dead->ops->get(dead->h, id, &j), JOBS_EUNAVAIL);
        assert_int_equal(dead->ops->ping(dead->h), JOBS_EUNAVAIL);
        assert_true(time(NULL) - start < 10); /* fails fast, no hang */
        jobs_free(dead);
        assert_null(jobs_mongo_new("not a uri", err, sizeof(err)));
    } else {
        assert_null(jobs_sqlite_new("/nonexistent-dir/x/jobs.db", err, sizeof(err)));
        assert_non_null(strstr(err, "cannot open"));
    }
}

static int services(const char *cmd)
{
    return th_services(cmd);
}

static int restore_mongo(void **state)
{
    if (strcmp(backend, "mongo") == 0)
        services("mongo-start");
    return teardown(state);
}

/* The server goes away and comes back: clean errors meanwhile, then the same
 * store works again without being reopened. (The test server keeps its
 * data in memory, so what was stored before is gone; real MongoDB keeps it.) */
static void server_restart(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1];
    struct job j;
    if (strcmp(backend, "mongo") != 0) {
        /* SQLite: another process's store sees the same file at once */
        make(owner_a, "shared.mp4", id);
        char err[256], path[512];
        snprintf(path, sizeof(path), "%s/jobs.db", tmpdir);
        struct jobs *other = jobs_sqlite_new(path, err, sizeof(err));
        assert_non_null(other);
        assert_int_equal(other->ops->get(other->h, id, &j), JOBS_OK);
        jobs_free(other);
        return;
    }
    make(owner_a, "before.mp4", id);
    assert_int_equal(services("mongo-stop"), 0);
    assert_int_equal(jobs_get(store, id, &j), JOBS_EUNAVAIL);
    assert_int_equal(jobs_ping(store), JOBS_EUNAVAIL);
    assert_int_equal(services("mongo-start"), 0);
    make(owner_a, "after.mp4", id);
    assert_int_equal(jobs_get(store, id, &j), JOBS_OK);
    assert_string_equal(j.filename, "after.mp4");
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "sqlite") != 0 && strcmp(argv[1], "mongo") != 0)) {
        fprintf(stderr, "usage: %s sqlite|mongo\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_then_get, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(legal_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(mp3_compare_and_set, setup, teardown),
        cmocka_unit_test_setup_teardown(illegal_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(notified_once, setup, teardown),
        cmocka_unit_test_setup_teardown(result_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_claim_race, setup, teardown),
        cmocka_unit_test_setup_teardown(listing_is_per_owner_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(paging_sees_every_job_once, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(remove_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(older_schema_is_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(server_restart, setup, restore_mongo),
    };
    return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}
