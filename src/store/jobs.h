/*
 * jobs: the record of each conversion (DESIGN §4-5), behind one interface
 * with two backends: a MongoDB collection "jobs" in the "videos" database
 * (jobs_mongo.c, indexed on owner+created_at and on video_fid) and SQLite
 * (jobs_sqlite.c, DATA_DIR/jobs.db).
 *
 * Status moves only forward:
 *
 *     queued -> converting -> done
 *        |          |  ^
 *        |          +--+ (progress, attempts, a redelivery)
 *        +----------+----> failed
 *
 * done and failed are final. An update names the statuses it may start
 * from; one that does not apply (a done job told to become converting by a
 * redelivered message) changes nothing and answers JOBS_ECONFLICT, so
 * messages that arrive twice or late cannot move a job backwards. Every
 * update is one atomic compare-and-set in the backend.
 */
#ifndef VID2MP3_JOBS_H
#define VID2MP3_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "store/blobs.h"

#define JOB_ERROR_MAX 511
#define JOB_OPTIONS_MAX 127
#define JOB_LIST_MAX 100 /* largest page */

enum {
    JOBS_OK = 0,
    JOBS_ENOTFOUND = -1,
    JOBS_EEXIST = -2,
    JOBS_ECONFLICT = -3, /* the job is not in a status the update may start from */
    JOBS_EUNAVAIL = -4,
    JOBS_EINVAL = -5,
    JOBS_EINTERNAL = -6,
};

enum job_status { JOB_QUEUED = 0, JOB_CONVERTING = 1, JOB_DONE = 2, JOB_FAILED = 3 };

/* Bit masks of statuses, for job_update.from. */
#define JOB_FROM(s) (1u << (s))

struct job {
    char id[BLOB_ID_LEN + 1];
    char owner[BLOB_OWNER_MAX + 1];
    char video_fid[BLOB_ID_LEN + 1];
    char mp3_fid[BLOB_ID_LEN + 1]; /* empty until done */
    char filename[BLOB_NAME_MAX + 1];
    char options[JOB_OPTIONS_MAX + 1]; /* JSON object text, e.g. {"quality":2} */
    char request_id[65];
    enum job_status status;
    double progress; /* 0..1 */
    char error[JOB_ERROR_MAX + 1];
    int attempts;
    int64_t created_at; /* unix milliseconds */
    int64_t updated_at; /* unix milliseconds */
    /* The owner's email: notified_at is set once, when it was sent or
     * given up (then notify_error says why); 0 while pending. */
    int64_t notified_at; /* unix milliseconds */
    char notify_error[JOB_ERROR_MAX + 1];
    /* done only, from the conversion: < 0 when unknown */
    double duration;   /* seconds of audio */
    int64_t mp3_bytes; /* the MP3's size */
};

/* A guarded update: applied only when the job's status is in from. Fields
 * flagged in set are written; updated_at always is. */
enum {
    JOB_SET_STATUS = 1 << 0,
    JOB_SET_PROGRESS = 1 << 1,
    JOB_SET_MP3 = 1 << 2,
    JOB_SET_ERROR = 1 << 3,
    JOB_ADD_ATTEMPT = 1 << 4, /* attempts + 1 */
    JOB_SET_RESULT = 1 << 5,  /* duration and mp3_bytes */
};

struct job_update {
    unsigned from; /* JOB_FROM(...) | ... */
    unsigned set;  /* JOB_SET_* */
    enum job_status status;
    double progress;
    const char *mp3_fid;
    const char *error;
    double duration;
    int64_t mp3_bytes;
    /* Non-NULL: the update applies only while the job's mp3_fid equals
     * this ("" for none), so two deliveries of one job cannot take each
     * other's MP3 (JOBS_ECONFLICT otherwise). */
    const char *if_mp3;
};

/* Called once per job by list, newest first; non-zero stops early. */
typedef int (*jobs_list_fn)(const struct job *j, void *ctx);

struct jobs_ops {
    const char *name;                            /* "mongo", "sqlite" */
    int (*create)(void *h, const struct job *j); /* status queued; times set by the store */
    int (*get)(void *h, const char *id, struct job *out);
    int (*find_by_video)(void *h, const char *video_fid, struct job *out);
    /* owner's jobs, newest first (by created_at, then id), at most limit
     * (<= JOB_LIST_MAX), starting after the cursor (before_ms, before_id):
     * jobs created before before_ms, or at before_ms with a smaller id.
     * before_ms 0: from the newest; before_id NULL or "": created before
     * before_ms. A page's last job is the next page's cursor. */
    int (*list)(void *h, const char *owner, int64_t before_ms, const char *before_id, int limit,
                jobs_list_fn fn, void *ctx);
    int (*update)(void *h, const char *id, const struct job_update *u);
    /* Settles the job's notification once: sets notified_at, and
     * notify_error to error (NULL or "": the email was sent). JOBS_ECONFLICT
     * when it was already settled. */
    int (*mark_notified)(void *h, const char *id, int64_t at_ms, const char *error);
    /* Claims the job's notification for whoever is about to send it, until
     * until_ms: JOBS_OK, or JOBS_ECONFLICT when it is settled or another
     * claim is still running at now_ms. Two deliveries of one job at once
     * thus cannot both send; a claim whose holder died runs out. */
    int (*claim_notify)(void *h, const char *id, int64_t now_ms, int64_t until_ms);
    /* Ends the claim that runs until until_ms (the holder's own: a newer
     * claim is left alone), so the next delivery need not wait it out. */
    int (*release_notify)(void *h, const char *id, int64_t until_ms);
    int (*remove)(void *h, const char *id);
    int (*ping)(void *h);
    void (*free)(void *h);
};

struct jobs {
    const struct jobs_ops *ops;
    void *h;
};

/*
 * Opens the backend that follows the blob backend (MONGODB_URI set: the
 * "jobs" collection, else SQLite at DATA_DIR/jobs.db). A MongoDB server that
 * is down is not an error here. Returns a store or NULL with err.
 */
struct jobs *jobs_open(const struct config *cfg, char *err, size_t errlen);
struct jobs *jobs_sqlite_new(const char *path, char *err, size_t errlen);
struct jobs *jobs_mongo_new(const char *uri, char *err, size_t errlen);
void jobs_free(struct jobs *j);

static inline int jobs_create(struct jobs *s, const struct job *j)
{
    return s->ops->create(s->h, j);
}
static inline int jobs_get(struct jobs *s, const char *id, struct job *out)
{
    return s->ops->get(s->h, id, out);
}
static inline int jobs_find_by_video(struct jobs *s, const char *video_fid, struct job *out)
{
    return s->ops->find_by_video(s->h, video_fid, out);
}
static inline int jobs_list(struct jobs *s, const char *owner, int64_t before_ms,
                            const char *before_id, int limit, jobs_list_fn fn, void *ctx)
{
    return s->ops->list(s->h, owner, before_ms, before_id, limit, fn, ctx);
}
static inline int jobs_update(struct jobs *s, const char *id, const struct job_update *u)
{
    return s->ops->update(s->h, id, u);
}
static inline int jobs_mark_notified(struct jobs *s, const char *id, int64_t at_ms,
                                     const char *error)
{
    return s->ops->mark_notified(s->h, id, at_ms, error);
}
static inline int jobs_claim_notify(struct jobs *s, const char *id, int64_t now_ms,
                                    int64_t until_ms)
{
    return s->ops->claim_notify(s->h, id, now_ms, until_ms);
}
static inline int jobs_release_notify(struct jobs *s, const char *id, int64_t until_ms)
{
    return s->ops->release_notify(s->h, id, until_ms);
}
static inline int jobs_remove(struct jobs *s, const char *id)
{
    return s->ops->remove(s->h, id);
}
static inline int jobs_ping(struct jobs *s)
{
    return s->ops->ping(s->h);
}

/* Checks an update against the state machine above: JOBS_OK, or
 * JOBS_EINVAL for an update no job could ever take (a move to queued, a
 * from-set that includes a final status with a status change, progress
 * outside 0..1). Backends call it before touching storage. */
int job_update_check(const struct job_update *u);

const char *job_status_name(enum job_status s);
int job_status_parse(const char *name, enum job_status *out);
const char *jobs_strerror(int code);

#endif
