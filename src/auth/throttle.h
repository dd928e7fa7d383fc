/*
 * throttle: counts failed logins per key (an email, a client address) in a
 * sliding window, in bounded memory.
 *
 * The table has a fixed number of slots; a key that finds no room evicts
 * the slot whose last failure is oldest, so memory never grows with the
 * number of attackers (a flood of distinct keys can only make the throttle
 * forget, never make it refuse the innocent). Keys are hashed with a
 * per-process random key (SipHash), so collisions cannot be aimed.
 * Thread-safe.
 */
#ifndef VID2MP3_THROTTLE_H
#define VID2MP3_THROTTLE_H

#include <stdbool.h>
#include <time.h>

struct throttle;

/* At most max_failures (1..100) failures per key per window seconds. NULL
 * when out of memory. */
struct throttle *throttle_new(int max_failures, int window);
void throttle_free(struct throttle *t);

/* 0 when key may try now, else the seconds until it may (for Retry-After). */
long throttle_check(struct throttle *t, const char *key, time_t now);

/* Records one failure of key at now. */
void throttle_fail(struct throttle *t, const char *key, time_t now);

#define THROTTLE_MAX_KEYS 4
#define THROTTLE_WAIT_SECONDS 10

/*
 * Starts an attempt on every key (an email and a client address) at once.
 * An attempt in progress counts against the limit until throttle_end():
 * when failures plus attempts in progress would pass max, the call waits
 * (up to THROTTLE_WAIT_SECONDS) for attempts in progress to end. So a burst
 * of parallel guesses cannot all pass the check while the first ones are
 * still hashing, yet parallel logins that succeed are never refused.
 * Returns 0 (attempt started on every key), or the seconds to wait (for
 * Retry-After; nothing started). n <= THROTTLE_MAX_KEYS. Blocks.
 */
long throttle_begin(struct throttle *t, const char *const *keys, int n, time_t now);

/* Ends an attempt started by throttle_begin() with the same keys; failed
 * records a failure at now on each. */
void throttle_end(struct throttle *t, const char *const *keys, int n, time_t now, bool failed);

/* Forgets key's failures (after a successful login). */
void throttle_reset(struct throttle *t, const char *key);

#endif
