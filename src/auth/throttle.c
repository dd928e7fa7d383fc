/* throttle: see throttle.h. */
#include "auth/throttle.h"

#include <pthread.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 16384 /* power of two */
#define PROBES 16

struct slot {
    uint64_t key; /* 0: empty */
    time_t last;  /* newest failure */
    int pending;  /* attempts in progress */
};

struct throttle {
    pthread_mutex_t lock;
    pthread_cond_t ended; /* an attempt in progress ended */
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    int max;
    int window;
    struct slot *slots;
    time_t *times; /* SLOTS arrays of max failure times; 0 = unused */
};

struct throttle *throttle_new(int max_failures, int window)
{
    struct throttle *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->max = max_failures < 1 ? 1 : (max_failures > 100 ? 100 : max_failures);
    t->window = window;
    t->slots = calloc(SLOTS, sizeof(*t->slots));
    t->times = calloc((size_t)SLOTS * (size_t)t->max, sizeof(*t->times));
    if (t->slots == NULL || t->times == NULL) {
        throttle_free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->ended, NULL);
    crypto_shorthash_keygen(t->hash_key);
    return t;
}

void throttle_free(struct throttle *t)
{
    if (t == NULL)
        return;
    if (t->slots != NULL && t->times != NULL) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->ended);
    }
    free(t->slots);
    free(t->times);
    free(t);
}

static uint64_t key_hash(const struct throttle *t, const char *key)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)key, strlen(key), t->hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h != 0 ? h : 1;
}

/* The slot holding h, or NULL; with create, a slot made for it. Locked. */
static struct slot *find(struct throttle *t, uint64_t h, bool create)
{
    struct slot *victim = NULL;
    for (int i = 0; i < PROBES; i++) {
        struct slot *s = &t->slots[(h + (uint64_t)i) & (SLOTS - 1)];
        if (s->key == h)
            return s;
        if (s->key == 0) { /* prefer an empty slot */
            if (victim == NULL || victim->key != 0)
                victim = s;
        } else if (s->pending == 0 &&
                   (victim == NULL || (victim->key != 0 && s->last < victim->last))) {
            victim = s; /* else the idle one whose last failure is oldest */
        }
    }
    if (!create || victim == NULL) /* NULL: every neighbour has attempts in progress */
        return NULL;
    size_t idx = (size_t)(victim - t->slots);
    memset(&t->times[idx * (size_t)t->max], 0, (size_t)t->max * sizeof(time_t));
    victim->key = h;
    victim->last = 0;
    victim->pending = 0;
    return victim;
}

static time_t *times_of(struct throttle *t, const struct slot *s)
{
    return &t->times[(size_t)(s - t->slots) * (size_t)t->max];
}

/* Seconds key must wait at now, from its slot (may be NULL). Locked. */
static long wait_for(struct throttle *t, const struct slot *s, time_t now)
{
    if (s == NULL)
        return 0;
    const time_t *times = times_of(t, s);
    int recent = 0;
    time_t oldest = now;
    for (int i = 0; i < t->max; i++) {
        if (times[i] != 0 && times[i] > now - t->window) {
            recent++;
            if (times[i] < oldest)
                oldest = times[i];
        }
    }
    if (recent < t->max)
        return 0;
    long wait = (long)(oldest + t->window - now);
    return wait > 0 ? wait : 1;
}

/* Records a failure at now in place of the oldest (or an unused) entry. Locked. */
static void record(struct throttle *t, struct slot *s, time_t now)
{
    time_t *times = times_of(t, s);
    int oldest = 0;
    for (int i = 1; i < t->max; i++) {
        if (times[i] < times[oldest])
            oldest = i;
    }
    times[oldest] = now;
    if (now > s->last)
        s->last = now;
}

long throttle_check(struct throttle *t, const char *key, time_t now)
{
    uint64_t h = key_hash(t, key);
    pthread_mutex_lock(&t->lock);
    long wait = wait_for(t, find(t, h, false), now);
    pthread_mutex_unlock(&t->lock);
    return wait;
}

void throttle_fail(struct throttle *t, const char *key, time_t now)
{
    uint64_t h = key_hash(t, key);
    pthread_mutex_lock(&t->lock);
    struct slot *s = find(t, h, true);
    if (s != NULL)
        record(t, s, now);
    pthread_mutex_unlock(&t->lock);
}

/* Failures of s within the window at now. Locked. */
static int recent_failures(struct throttle *t, const struct slot *s, time_t now)
{
    const time_t *times = times_of(t, s);
    int recent = 0;
    for (int i = 0; i < t->max; i++)
        recent += times[i] != 0 && times[i] > now - t->window;
    return recent;
}

long throttle_begin(struct throttle *t, const char *const *keys, int n, time_t now)
{
    uint64_t h[THROTTLE_MAX_KEYS];
    for (int i = 0; i < n; i++)
        h[i] = key_hash(t, keys[i]);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += THROTTLE_WAIT_SECONDS;

    pthread_mutex_lock(&t->lock);
    long wait = 0;
    for (;;) {
        struct slot *s[THROTTLE_MAX_KEYS];
        bool room = true;
        for (int i = 0; i < n && wait == 0; i++) {
            s[i] = find(t, h[i], true);
            if (s[i] == NULL) { /* no slot free for it: wait for one */
                room = false;
                continue;
            }
            long w = wait_for(t, s[i], now);
            if (w > 0)
                wait = w;
            else if (recent_failures(t, s[i], now) + s[i]->pending >= t->max)
                room = false;
        }
        if (wait > 0)
            break;
        if (room) {
            for (int i = 0; i < n; i++)
                s[i]->pending++;
            break;
        }
        if (pthread_cond_timedwait(&t->ended, &t->lock, &deadline) != 0) {
            wait = 1; /* attempts in progress did not end in time */
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return wait;
}

void throttle_end(struct throttle *t, const char *const *keys, int n, time_t now, bool failed)
{
    uint64_t h[THROTTLE_MAX_KEYS];
    for (int i = 0; i < n; i++)
        h[i] = key_hash(t, keys[i]);
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < n; i++) {
        struct slot *s = find(t, h[i], false);
        if (s == NULL)
            continue;
        if (s->pending > 0)
            s->pending--;
        if (failed)
            record(t, s, now);
    }
    pthread_cond_broadcast(&t->ended);
    pthread_mutex_unlock(&t->lock);
}

void throttle_reset(struct throttle *t, const char *key)
{
    uint64_t h = key_hash(t, key);
    pthread_mutex_lock(&t->lock);
    struct slot *s = find(t, h, false);
    if (s != NULL) {
        memset(times_of(t, s), 0, (size_t)t->max * sizeof(time_t));
        s->last = 0;
        if (s->pending == 0)
            s->key = 0; /* else keep it: attempts in progress will end on it */
    }
    pthread_mutex_unlock(&t->lock);
}
