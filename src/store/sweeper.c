/* sweeper: see sweeper.h. */
#include "store/sweeper.h"

#include "core/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct sweeper {
    struct blobs *blobs;
    long interval, min_age;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
};

static void *run(void *arg)
{
    struct sweeper *s = arg;
    log_set_service("sweeper");
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->interval;
        while (!s->stopping && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
            ;
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        struct blobs_gc_stats st = {0};
        int rc = blobs_gc(s->blobs, s->min_age, &st);
        if (rc != BLOB_OK)
            log_warn("blob sweep failed", json_pack("{s:s}", "reason", blobs_strerror(rc)));
        else if (st.files_removed > 0 || st.chunks_removed > 0)
            log_info("blob sweep",
                     json_pack("{s:I, s:I}", "files_removed", (json_int_t)st.files_removed,
                               "chunks_removed", (json_int_t)st.chunks_removed));
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

struct sweeper *sweeper_start(struct blobs *b, long interval, long min_age)
{
    struct sweeper *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->blobs = b;
    s->interval = interval > 0 ? interval : 1;
    s->min_age = min_age;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free(s);
        return NULL;
    }
    return s;
}

void sweeper_stop(struct sweeper *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}
