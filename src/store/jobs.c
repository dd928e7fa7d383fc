/* jobs: backend choice and the state machine shared by both backends. */
#include "store/jobs.h"

#include "core/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jobs *jobs_open(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->mongodb_uri != NULL)
        return jobs_mongo_new(cfg->mongodb_uri, err, errlen);
    int rc = fsutil_mkdirs(cfg->data_dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", cfg->data_dir, strerror(-rc));
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/jobs.db", cfg->data_dir);
    return jobs_sqlite_new(path, err, errlen);
}

void jobs_free(struct jobs *j)
{
    if (j == NULL)
        return;
    j->ops->free(j->h);
    free(j);
}

#define Q JOB_FROM(JOB_QUEUED)
#define C JOB_FROM(JOB_CONVERTING)
#define ALL (Q | C | JOB_FROM(JOB_DONE) | JOB_FROM(JOB_FAILED))

/* The statuses each target status may be reached from (the diagram in
 * jobs.h); an update without a status change may only touch a running job. */
static const unsigned allowed_from[] = {
    [JOB_QUEUED] = 0,
    [JOB_CONVERTING] = Q | C,
    [JOB_DONE] = C,
    [JOB_FAILED] = Q | C,
};

int job_update_check(const struct job_update *u)
{
    if (u->from == 0 || (u->from & ~(unsigned)ALL) != 0 || u->set == 0)
        return JOBS_EINVAL;
    unsigned allowed = Q | C;
    if (u->set & JOB_SET_STATUS) {
        if ((unsigned)u->status > JOB_FAILED)
            return JOBS_EINVAL;
        allowed = allowed_from[u->status];
    }
    if ((u->from & ~allowed) != 0)
        return JOBS_EINVAL;
    if ((u->set & JOB_SET_PROGRESS) && !(u->progress >= 0.0 && u->progress <= 1.0))
        return JOBS_EINVAL;
    if (u->if_mp3 != NULL && u->if_mp3[0] != '\0' && !blob_id_valid(u->if_mp3))
        return JOBS_EINVAL;
    if ((u->set & JOB_SET_MP3) && (u->mp3_fid == NULL || !blob_id_valid(u->mp3_fid)))
        return JOBS_EINVAL;
    if ((u->set & JOB_SET_ERROR) && (u->error == NULL || strlen(u->error) > JOB_ERROR_MAX))
        return JOBS_EINVAL;
    /* a negative duration means unknown (stored as -1) */
    if ((u->set & JOB_SET_RESULT) && !(u->duration < 1e9 && u->mp3_bytes >= 0))
        return JOBS_EINVAL;
    return JOBS_OK;
}

static const char *const status_names[] = {"queued", "converting", "done", "failed"};

const char *job_status_name(enum job_status s)
{
    return (unsigned)s < 4 ? status_names[s] : "unknown";
}

int job_status_parse(const char *name, enum job_status *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (enum job_status)i;
            return 0;
        }
    }
    return -1;
}

const char *jobs_strerror(int code)
{
    switch (code) {
    case JOBS_OK:
        return "ok";
    case JOBS_ENOTFOUND:
        return "no such job";
    case JOBS_EEXIST:
        return "a job with this id already exists";
    case JOBS_ECONFLICT:
        return "the job is not in a state this change applies to";
    case JOBS_EUNAVAIL:
        return "the jobs database is unavailable";
    case JOBS_EINVAL:
        return "invalid value";
    case JOBS_EINTERNAL:
        return "internal error in the jobs database";
    default:
        return "unknown error";
    }
}
