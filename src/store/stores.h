/*
 * stores: the three kinds of state the gateway and the converter work on
 * (blobs, job records, queues), opened together from the configuration.
 */
#ifndef VID2MP3_STORES_H
#define VID2MP3_STORES_H

#include <stddef.h>

#include "core/config.h"
#include "queue/queue.h"
#include "store/blobs.h"
#include "store/jobs.h"

struct stores {
    struct blobs *blobs;
    struct jobs *jobs;
    struct queue *queue;
};

/* Opens the backends cfg selects (see each header). Returns 0, or -1 with
 * err and nothing left open. */
int stores_open(const struct config *cfg, struct stores *s, char *err, size_t errlen);

/* Closes what is open; safe on a zeroed struct. */
void stores_close(struct stores *s);

#endif
