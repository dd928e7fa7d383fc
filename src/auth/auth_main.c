/* `vid2mp3 auth`: configuration, signals and wiring around auth.c. */
#include "auth/auth.h"

#include "core/log.h"
#include "core/service.h"

#include <stdio.h>
#include <string.h>

int auth_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    int rc = service_config(&cfg, "auth");
    if (rc != 0)
        return rc;
    if (cfg.jwt_secret == NULL) {
        fprintf(stderr,
                "vid2mp3: JWT_SECRET: required by the auth service (at least %d "
                "characters; `vid2mp3 all` generates one when unset)\n",
                CONFIG_JWT_SECRET_MIN);
        return EXIT_USAGE;
    }
    service_block_signals();

    struct users *users = NULL;
    struct auth *a = NULL;
    struct http_server *srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    users = users_open(&cfg, err, sizeof(err));
    if (users == NULL)
        goto fail;
    a = auth_new(&cfg, users, cfg.jwt_secret, err, sizeof(err));
    if (a == NULL)
        goto fail;
    srv = auth_serve(a, &cfg, -1, err, sizeof(err));
    if (srv == NULL)
        goto fail;
    log_info("auth service listening",
             json_pack("{s:s, s:i, s:s}", "address", cfg.bind_address, "port",
                       http_server_port(srv), "users", users->ops->name));

    int sig = service_wait_signal();
    log_info("stopping",
             json_pack("{s:i, s:i}", "signal", sig, "grace_seconds", (int)cfg.shutdown_grace));
    http_server_stop(srv, (int)cfg.shutdown_grace);
    log_info("stopped", NULL);
    rc = EXIT_OK;
    goto out;
fail:
    log_error("auth service failed to start", json_pack("{s:s}", "reason", err));
out:
    auth_free(a);
    users_free(users);
    return rc;
}
