/*
 * service: what every long-running target does around its own logic:
 * configuration, logging set-up, signals.
 */
#ifndef VID2MP3_SERVICE_H
#define VID2MP3_SERVICE_H

#include "core/config.h"

/* Exit statuses of every command. */
enum { EXIT_OK = 0, EXIT_FAILURE_RUNTIME = 1, EXIT_USAGE = 2 };

/*
 * Loads the configuration and sets the log level and the thread's service
 * name. Returns 0, or prints "vid2mp3: VAR: reason" to stderr and returns
 * EXIT_USAGE.
 */
int service_config(struct config *cfg, const char *svc);

/*
 * Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread
 * it creates afterwards, and ignores SIGPIPE. Call before starting threads.
 */
void service_block_signals(void);

/* Waits for SIGTERM, SIGINT or SIGHUP; returns the signal number. */
int service_wait_signal(void);

#endif
