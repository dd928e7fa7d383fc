/*
 * worker: the converter's consumption of VIDEO_QUEUE (DESIGN §5): for each
 * message, the job's video becomes an MP3 in blob storage, the job is
 * marked done (or failed, with a reason) and a message goes to MP3_QUEUE.
 *
 * Delivery is at least once; effects are exactly once:
 *   - the MP3's future id is recorded in the job (still converting) before
 *     a byte is written, so a retry after a crash removes what the crashed
 *     attempt may have committed before writing its own;
 *   - the job becomes done with its mp3_fid in one guarded update, so two
 *     deliveries cannot both finish it;
 *   - a delivery whose job is already done or failed converts nothing: it
 *     publishes the outcome again (the earlier attempt may have died before
 *     publishing) and acks. The notifier absorbs the repeat;
 *   - a message whose job does not exist (the gateway took the upload back)
 *     is acked and dropped.
 * A permanent failure (not a media file, no audio track, over a limit)
 * fails the job at once; a transient one (storage or broker down) is
 * retried with backoff, and the last attempt fails the job and
 * dead-letters the message.
 */
#ifndef VID2MP3_WORKER_H
#define VID2MP3_WORKER_H

#include <stddef.h>

#include "core/config.h"
#include "queue/queue.h"
#include "store/blobs.h"
#include "store/jobs.h"

struct converter;

/* The stores and the queue are borrowed and must outlive the converter. */
struct converter_deps {
    struct blobs *blobs;
    struct jobs *jobs;
    struct queue *queue;
};

/* Starts CONVERTER_WORKERS workers (one per core when 0) on VIDEO_QUEUE.
 * Returns NULL with err when the queue cannot be consumed. */
struct converter *converter_start(const struct config *cfg, const struct converter_deps *deps,
                                  char *err, size_t errlen);

/* Stops taking messages and waits up to grace_seconds for conversions in
 * progress; past that, they are cancelled and handed back to the queue.
 * Frees c. NULL is a no-op. */
void converter_stop(struct converter *c, int grace_seconds);

/* /readyz of the converter: blobs, jobs and queue answer. ctx: converter. */
int converter_ready(void *ctx, char *why, size_t whylen);

#endif
