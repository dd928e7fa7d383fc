/* `vid2mp3 converter`: configuration, signals and wiring around worker.c,
 * with /healthz, /readyz and /metrics on METRICS_PORT (9102). */
#include "converter/converter.h"

#include "converter/worker.h"
#include "core/http.h"
#include "core/log.h"
#include "core/service.h"
#include "store/stores.h"

#include <stdio.h>

int converter_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    int rc = service_config(&cfg, "converter");
    if (rc != 0)
        return rc;
    service_block_signals();

    struct stores st = {0};
    struct converter *conv = NULL;
    struct http_server *srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    if (stores_open(&cfg, &st, err, sizeof(err)) != 0)
        goto fail;
    struct converter_deps deps = {st.blobs, st.jobs, st.queue};
    conv = converter_start(&cfg, &deps, err, sizeof(err));
    if (conv == NULL)
        goto fail;
    struct http_server_opts opts = {
        .svc = "converter",
        .bind_address = cfg.bind_address,
        .port = cfg.metrics_port > 0 ? (int)cfg.metrics_port : CONVERTER_METRICS_PORT,
        .ctx = conv,
        .ready = converter_ready,
        .idle_timeout = (int)cfg.http_idle_timeout,
    };
    srv = http_server_start(&opts, err, sizeof(err));
    if (srv == NULL)
        goto fail;
    log_info("converter running",
             json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "address", cfg.bind_address,
                       "metrics_port", http_server_port(srv), "queue", st.queue->ops->name, "blobs",
                       st.blobs->ops->name, "jobs", st.jobs->ops->name, "video_queue",
                       cfg.video_queue));

    int sig = service_wait_signal();
    log_info("stopping",
             json_pack("{s:i, s:i}", "signal", sig, "grace_seconds", (int)cfg.shutdown_grace));
    converter_stop(conv, (int)cfg.shutdown_grace);
    conv = NULL;
    http_server_stop(srv, 1);
    srv = NULL;
    log_info("stopped", NULL);
    rc = EXIT_OK;
    goto out;
fail:
    log_error("converter failed to start", json_pack("{s:s}", "reason", err));
out:
    converter_stop(conv, 0);
    http_server_stop(srv, 0);
    stores_close(&st);
    return rc;
}
