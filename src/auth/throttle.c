/* throttle: see throttle.h. */
#include "auth/throttle.h"

#include <pthread.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16384 /* power of two */
#define PROBES 16

struct slot {
    uint64_t key; /* 0: empty */
    time_t last;  /* newest failure */
    int head;     /* next ring position */
};

struct throttle {
    pthread_mutex_t lock;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    int max;
    int window;
    struct slot *slots;
    time_t *times; /* SLOTS rings of max timestamps; 0 = unused */
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
    crypto_shorthash_keygen(t->hash_key);
    return t;
}

void throttle_free(struct throttle *t)
{
    if (t == NULL)
        return;
    if (t->slots != NULL && t->times != NULL)
        pthread_mutex_destroy(&t->lock);
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
        } else if (victim == NULL || (victim->key != 0 && s->last < victim->last)) {
            victim = s; /* else the one whose last failure is oldest */
        }
    }
    if (!create)
        return NULL;
    size_t idx = (size_t)(victim - t->slots);
    memset(&t->times[idx * (size_t)t->max], 0, (size_t)t->max * sizeof(time_t));
    victim->key = h;
    victim->last = 0;
    victim->head = 0;
    return victim;
}

long throttle_check(struct throttle *t, const char *key, time_t now)
{
    uint64_t h = key_hash(t, key);
    long wait = 0;
    pthread_mutex_lock(&t->lock);
    struct slot *s = find(t, h, false);
    if (s != NULL) {
        const time_t *ring = &t->times[(size_t)(s - t->slots) * (size_t)t->max];
        int recent = 0;
        time_t oldest = now;
        for (int i = 0; i < t->max; i++) {
            if (ring[i] != 0 && ring[i] > now - t->window) {
                recent++;
                if (ring[i] < oldest)
                    oldest = ring[i];
            }
        }
        if (recent >= t->max)
            wait = (long)(oldest + t->window - now);
        if (recent >= t->max && wait < 1)
            wait = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return wait;
}

void throttle_fail(struct throttle *t, const char *key, time_t now)
{
    uint64_t h = key_hash(t, key);
    pthread_mutex_lock(&t->lock);
    struct slot *s = find(t, h, true);
    t->times[(size_t)(s - t->slots) * (size_t)t->max + (size_t)s->head] = now;
    s->head = (s->head + 1) % t->max;
    s->last = now;
    pthread_mutex_unlock(&t->lock);
}

void throttle_reset(struct throttle *t, const char *key)
{
    uint64_t h = key_hash(t, key);
    pthread_mutex_lock(&t->lock);
    struct slot *s = find(t, h, false);
    if (s != NULL) {
        memset(&t->times[(size_t)(s - t->slots) * (size_t)t->max], 0,
               (size_t)t->max * sizeof(time_t));
        s->key = 0;
        s->last = 0;
        s->head = 0;
    }
    pthread_mutex_unlock(&t->lock);
}
