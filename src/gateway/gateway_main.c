/* `vid2mp3 gateway`: configuration, signals and wiring around gateway.c. */
#include "gateway/gateway.h"

#include "core/log.h"
#include "core/service.h"

#include <stdio.h>

int gateway_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    int rc = service_config(&cfg, "gateway");
    if (rc != 0)
        return rc;
    service_block_signals();

    struct blobs *blobs = NULL;
    struct jobs *jobs = NULL;
    struct queue *queue = NULL;
    struct gateway *gw = NULL;
    struct http_server *srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    blobs = blobs_open(&cfg, err, sizeof(err));
    if (blobs == NULL)
        goto fail;
    jobs = jobs_open(&cfg, err, sizeof(err));
    if (jobs == NULL)
        goto fail;
    queue = queue_open(&cfg, err, sizeof(err));
    if (queue == NULL)
        goto fail;
    struct gateway_deps deps = {
        .blobs = blobs, .jobs = jobs, .queue = queue, .jwt_secret = cfg.jwt_secret};
    gw = gateway_new(&cfg, &deps, err, sizeof(err));
    if (gw == NULL)
        goto fail;
    srv = gateway_serve(gw, &cfg, -1, err, sizeof(err));
    if (srv == NULL)
        goto fail;
    log_info("gateway listening",
             json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "address", cfg.bind_address, "port",
                       http_server_port(srv), "blobs", blobs->ops->name, "jobs", jobs->ops->name,
                       "queue", queue->ops->name, "tokens",
                       cfg.jwt_secret != NULL ? "verified here" : "verified by the auth service",
                       "auth_service", cfg.auth_svc_address));

    int sig = service_wait_signal();
    log_info("stopping",
             json_pack("{s:i, s:i}", "signal", sig, "grace_seconds", (int)cfg.shutdown_grace));
    http_server_stop(srv, (int)cfg.shutdown_grace);
    log_info("stopped", NULL);
    rc = EXIT_OK;
    goto out;
fail:
    log_error("gateway failed to start", json_pack("{s:s}", "reason", err));
out:
    gateway_free(gw);
    queue_free(queue);
    jobs_free(jobs);
    blobs_free(blobs);
    return rc;
}
