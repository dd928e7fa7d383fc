/*
 * password: Argon2id hashing (libsodium crypto_pwhash_str) with a bound on
 * how many hashes run at once.
 *
 * Each hash takes PASSWORD_MEMLIMIT bytes of memory for tens of
 * milliseconds, so without a bound fifty parallel logins would take three
 * gigabytes. A pool lets `concurrency` computations run and makes the rest
 * wait, up to PASSWORD_WAIT_SECONDS, after which they fail with
 * PASSWORD_EBUSY (the caller answers 503).
 */
#ifndef VID2MP3_PASSWORD_H
#define VID2MP3_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_MAX 1024  /* bytes; longer ones are refused before hashing */
#define PASSWORD_MIN_NEW 8 /* bytes, for new passwords */
#define PASSWORD_HASH_MAX 128
#define PASSWORD_WAIT_SECONDS 10

enum {
    PASSWORD_OK = 0,
    PASSWORD_EMISMATCH = -1,
    PASSWORD_EBUSY = -2,
    PASSWORD_ENOMEM = -3,
};

struct password_pool;

/* A pool allowing concurrency (>= 1) hashes at once; NULL when out of memory. */
struct password_pool *password_pool_new(int concurrency);
void password_pool_free(struct password_pool *p);

/* Computations running now, and the most ever running at once. */
int password_pool_active(struct password_pool *p);
int password_pool_peak(struct password_pool *p);

/* Hashes pw into out (PASSWORD_HASH_MAX bytes) with the OPSLIMIT/MEMLIMIT
 * INTERACTIVE limits. Blocks while the pool is full. */
int password_hash(struct password_pool *p, const char *pw, char *out);

/* PASSWORD_OK when pw matches hash, PASSWORD_EMISMATCH when not (also for a
 * malformed hash). Blocks while the pool is full. */
int password_verify(struct password_pool *p, const char *hash, const char *pw);

/* True when hash was made with weaker limits than the current ones. */
bool password_needs_rehash(const char *hash);

#endif
