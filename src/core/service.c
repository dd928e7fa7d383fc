/* service: see service.h. */
#include "core/service.h"

#include "core/log.h"

#include <signal.h>
#include <stdio.h>

int service_config(struct config *cfg, const char *svc)
{
    char err[512];
    log_set_service(svc);
    if (config_load(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "vid2mp3: %s\n", err);
        return EXIT_USAGE;
    }
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(cfg->log_level, &level);
    log_set_level(level);
    return 0;
}

static void stop_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

void service_block_signals(void)
{
    sigset_t set;
    stop_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int service_wait_signal(void)
{
    sigset_t set;
    stop_set(&set);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}
