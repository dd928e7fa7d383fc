/*
 * ticker: a thread that calls a function after a first delay and then
 * every period, until it is stopped. For the services' periodic chores
 * (draining dead letters) and deadlines (abandoning work at the end of a
 * grace period).
 */
#ifndef VID2MP3_TICKER_H
#define VID2MP3_TICKER_H

typedef void (*ticker_fn)(void *ctx);

struct ticker;

/*
 * Starts the thread: fn(ctx) runs first_ms from now, then every
 * period_ms (measured from the end of a call). Returns NULL when the
 * thread cannot be started. fn runs on the ticker's thread; ctx must
 * outlive the ticker.
 */
struct ticker *ticker_start(long first_ms, long period_ms, ticker_fn fn, void *ctx);

/* Stops the ticker, waiting for a call in progress, and frees it. A call
 * not yet due does not happen. Never call it from fn. NULL is a no-op. */
void ticker_stop(struct ticker *t);

#endif
