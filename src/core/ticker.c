/* ticker: see ticker.h. */
#include "core/ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct ticker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    bool stopping;       /* under lock */
    long first_ms, period_ms;
    ticker_fn fn;
    void *ctx;
};

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *ticker_main(void *arg)
{
    struct ticker *t = arg;
    long wait = t->first_ms;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        struct timespec until;
        deadline_in(&until, wait);
        /* 0: woken (by stop, or spuriously); anything else ends the wait */
        while (!t->stopping && pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0)
            ;
        if (t->stopping)
            break;
        pthread_mutex_unlock(&t->lock);
        t->fn(t->ctx);
        pthread_mutex_lock(&t->lock);
        wait = t->period_ms;
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct ticker *ticker_start(long first_ms, long period_ms, ticker_fn fn, void *ctx)
{
    struct ticker *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->first_ms = first_ms > 0 ? first_ms : 0;
    t->period_ms = period_ms > 0 ? period_ms : 1;
    t->fn = fn;
    t->ctx = ctx;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* deadlines are monotonic: a cond on another clock would see them past */
    int clock_rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (clock_rc != 0 || pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return NULL;
    }
    return t;
}

void ticker_stop(struct ticker *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}
