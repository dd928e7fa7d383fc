/* `vid2mp3 gateway`: configuration, signals and wiring around gateway.c. */
#include "gateway/gateway.h"

#include "core/log.h"
#include "core/service.h"
#include "store/stores.h"

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

    struct stores st = {0};
    struct gateway *gw = NULL;
    struct http_server *srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    if (stores_open(&cfg, &st, err, sizeof(err)) != 0)
        goto fail;
    struct gateway_deps deps = {
        .blobs = st.blobs, .jobs = st.jobs, .queue = st.queue, .jwt_secret = cfg.jwt_secret};
    gw = gateway_new(&cfg, &deps, err, sizeof(err));
    if (gw == NULL)
        goto fail;
    srv = gateway_serve(gw, &cfg, -1, err, sizeof(err));
    if (srv == NULL)
        goto fail;
    log_info("gateway listening",
             json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "address", cfg.bind_address, "port",
                       http_server_port(srv), "blobs", st.blobs->ops->name, "jobs",
                       st.jobs->ops->name, "queue", st.queue->ops->name, "tokens",
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
    stores_close(&st);
    return rc;
}
