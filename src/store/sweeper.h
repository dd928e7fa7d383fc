/*
 * sweeper: a background thread that runs blobs_gc() every interval, so
 * leftovers of uploads that never finished (a client that went away, a
 * process killed mid-upload) do not pile up between manual `vid2mp3 gc`
 * runs. Results are logged when something was removed.
 */
#ifndef VID2MP3_SWEEPER_H
#define VID2MP3_SWEEPER_H

#include "store/blobs.h"

struct sweeper;

/* Starts sweeping b (borrowed; must outlive the sweeper) every interval
 * seconds, removing leftovers older than min_age seconds. The first sweep
 * runs after one interval. NULL when the thread cannot be started. */
struct sweeper *sweeper_start(struct blobs *b, long interval, long min_age);

/* Stops the thread (waiting for a sweep in progress) and frees s. NULL is a
 * no-op. */
void sweeper_stop(struct sweeper *s);

#endif
