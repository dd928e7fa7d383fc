/* password: see password.h. */
#include "auth/password.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPSLIMIT crypto_pwhash_OPSLIMIT_INTERACTIVE
#define MEMLIMIT crypto_pwhash_MEMLIMIT_INTERACTIVE

struct password_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int free_slots;
    int active;
    int peak;
};

struct password_pool *password_pool_new(int concurrency)
{
    struct password_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->free_slots = concurrency > 0 ? concurrency : 1;
    return p;
}

void password_pool_free(struct password_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p);
}

static int take(struct password_pool *p)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PASSWORD_WAIT_SECONDS;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (p->free_slots == 0 && rc == 0)
        rc = pthread_cond_timedwait(&p->freed, &p->lock, &deadline);
    if (p->free_slots > 0) {
        p->free_slots--;
        p->active++;
        if (p->active > p->peak)
            p->peak = p->active;
        rc = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc == 0 ? 0 : PASSWORD_EBUSY;
}

static void give(struct password_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->free_slots++;
    p->active--;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

int password_pool_active(struct password_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->active;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int password_pool_peak(struct password_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->peak;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int password_hash(struct password_pool *p, const char *pw, char *out)
{
    if (take(p) != 0)
        return PASSWORD_EBUSY;
    int rc = crypto_pwhash_str(out, pw, strlen(pw), OPSLIMIT, MEMLIMIT);
    give(p);
    return rc == 0 ? PASSWORD_OK : PASSWORD_ENOMEM;
}

int password_verify(struct password_pool *p, const char *hash, const char *pw)
{
    if (take(p) != 0)
        return PASSWORD_EBUSY;
    int rc = crypto_pwhash_str_verify(hash, pw, strlen(pw));
    give(p);
    return rc == 0 ? PASSWORD_OK : PASSWORD_EMISMATCH;
}

bool password_needs_rehash(const char *hash)
{
    return crypto_pwhash_str_needs_rehash(hash, OPSLIMIT, MEMLIMIT) != 0;
}
