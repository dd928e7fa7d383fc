/*
 * notifier: the Email notifier (DESIGN §5): consumes MP3_QUEUE and tells
 * each finished job's owner, once, that the MP3 is ready or why the
 * conversion failed.
 *
 * For each message: read the job (the message only names it; the job is
 * the truth), and unless its notification is already settled (notified_at
 * set), claim it (jobs_claim_notify: two copies of the message handled at
 * once cannot both send), compose the email (message.h), send it
 * (mail.h), settle the notification, then ack. Delivery is at least once,
 * so the order matters:
 *   - a repeat of a settled job's message sends nothing;
 *   - a crash after the settle and before the ack sends nothing more;
 *   - a crash after the send and before the settle sends the email again
 *     on redelivery, with the same Message-ID (receivers that deduplicate
 *     show it once). That window is one database write wide.
 * A transient failure (server down, 4xx, TLS or login trouble) is retried
 * through the queue with backoff, NOTIFY_MAX_ATTEMPTS deliveries capped at
 * NOTIFY_RETRY_MAX_SECONDS apart (12 deliveries over about 18 minutes by
 * default); the last one settles the notification as failed. A permanent
 * one (5xx, an owner address that is not one valid address) settles it as
 * failed at once and dead-letters the message. MP3_QUEUE.dead is drained:
 * a letter whose job is still unsettled (the notifier died on it too
 * often) settles it as failed.
 */
#ifndef VID2MP3_NOTIFIER_H
#define VID2MP3_NOTIFIER_H

#include <stddef.h>

#include "core/config.h"
#include "mail/mail.h"
#include "queue/queue.h"
#include "store/jobs.h"

struct notifier;

/* Borrowed; they must outlive the notifier. The queue should be opened
 * with notifier_queue_settings(). */
struct notifier_deps {
    struct jobs *jobs;
    struct queue *queue;
    struct mailer *mail;
};

/* The queue settings the notifier retries with (from NOTIFY_*). */
void notifier_queue_settings(const struct config *cfg, struct queue_settings *s);

/* Checks MAIL_FROM and PUBLIC_URL for use in emails. Returns 0, or -1 with
 * "VAR: reason" in err. */
int notifier_check_config(const struct config *cfg, char *err, size_t errlen);

/* Starts NOTIFIER_WORKERS senders on MP3_QUEUE and the dead-letter drain.
 * Returns NULL with err when the queue cannot be consumed. */
struct notifier *notifier_start(const struct config *cfg, const struct notifier_deps *deps,
                                char *err, size_t errlen);

/* Stops taking messages and waits for the sends in progress; those still
 * running after grace_seconds are abandoned and handed back to the queue.
 * Frees n. NULL is a no-op. */
void notifier_stop(struct notifier *n, int grace_seconds);

/* /readyz of the notifier: jobs and queue answer. ctx: notifier. */
int notifier_ready(void *ctx, char *why, size_t whylen);

/* `vid2mp3 notifier`: runs until SIGTERM. */
int notifier_main(int argc, char **argv);

#endif
