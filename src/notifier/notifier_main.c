/* `vid2mp3 notifier`: configuration, signals and wiring around
 * notifier.c, with /healthz, /readyz and /metrics on METRICS_PORT (9103). */
#include "notifier/notifier.h"

#include "core/http.h"
#include "core/log.h"
#include "core/service.h"

#include <stdio.h>

int notifier_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    int rc = service_config(&cfg, "notifier");
    if (rc != 0)
        return rc;
    if (notifier_check_config(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "vid2mp3: %s\n", err);
        return EXIT_USAGE;
    }
    service_block_signals();

    struct jobs *jobs = NULL;
    struct queue *queue = NULL;
    struct mailer *mail = NULL;
    struct notifier *n = NULL;
    struct http_server *srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    mail = mail_open(&cfg, err, sizeof(err));
    if (mail == NULL)
        goto fail;
    jobs = jobs_open(&cfg, err, sizeof(err));
    if (jobs == NULL)
        goto fail;
    struct queue_settings qs;
    notifier_queue_settings(&cfg, &qs);
    queue = queue_open_with(&cfg, &qs, err, sizeof(err));
    if (queue == NULL)
        goto fail;
    struct notifier_deps deps = {jobs, queue, mail};
    n = notifier_start(&cfg, &deps, err, sizeof(err));
    if (n == NULL)
        goto fail;
    struct http_server_opts opts = {
        .svc = "notifier",
        .bind_address = cfg.bind_address,
        .port = cfg.metrics_port > 0 ? (int)cfg.metrics_port : NOTIFIER_METRICS_PORT,
        .ctx = n,
        .ready = notifier_ready,
        .idle_timeout = (int)cfg.http_idle_timeout,
    };
    srv = http_server_start(&opts, err, sizeof(err));
    if (srv == NULL)
        goto fail;
    log_info("notifier running",
             json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "address", cfg.bind_address,
                       "metrics_port", http_server_port(srv), "queue", queue->ops->name, "jobs",
                       jobs->ops->name, "mail", mail->ops->name, "mp3_queue", cfg.mp3_queue, "from",
                       mail_from_address(&cfg)));

    int sig = service_wait_signal();
    log_info("stopping", json_pack("{s:i}", "signal", sig));
    notifier_stop(n, (int)cfg.shutdown_grace);
    n = NULL;
    http_server_stop(srv, 1);
    srv = NULL;
    log_info("stopped", NULL);
    rc = EXIT_OK;
    goto out;
fail:
    log_error("notifier failed to start", json_pack("{s:s}", "reason", err));
out:
    notifier_stop(n, 0);
    http_server_stop(srv, 0);
    queue_free(queue);
    jobs_free(jobs);
    mail_free(mail);
    return rc;
}
