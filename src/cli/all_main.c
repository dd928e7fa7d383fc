/*
 * `vid2mp3 all`: every service in one process, embedded backends unless
 * the distributed ones are configured: the auth service, the gateway
 * (which serves /login in process and checks tokens with the same key),
 * the converter's workers and the notifier. The notifier has its own queue
 * handle, because it retries on its own schedule (NOTIFY_*).
 */
#include "cli/cli.h"

#include "auth/auth.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "converter/worker.h"
#include "core/service.h"
#include "gateway/gateway.h"
#include "mail/mail.h"
#include "notifier/notifier.h"
#include "store/blobs.h"
#include "store/sweeper.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The JWT secret: JWT_SECRET, or one generated once and kept in DATA_DIR.
 * Returns a new string (caller wipes and frees) or NULL with err. */
static char *load_secret(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->jwt_secret != NULL)
        return strdup(cfg->jwt_secret);
    char path[4096], out[65];
    int rc = fsutil_mkdirs(cfg->data_dir, 0700);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/jwt-secret", cfg->data_dir);
        rc = fsutil_secret_load_or_create(path, out, sizeof(out));
    }
    if (rc != 0) {
        snprintf(err, errlen, "JWT_SECRET unset and %s/jwt-secret unusable: %s", cfg->data_dir,
                 strerror(-rc));
        return NULL;
    }
    char *secret = strdup(out);
    sodium_memzero(out, sizeof(out));
    return secret;
}

int all_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    char *secret = NULL;
    int rc = service_config(&cfg, "all");
    if (rc != 0)
        return rc;
    if (notifier_check_config(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "vid2mp3: %s\n", err);
        return EXIT_USAGE;
    }
    service_block_signals();

    struct users *users = NULL;
    struct blobs *blobs = NULL;
    struct sweeper *sweeper = NULL;
    struct jobs *jobs = NULL;
    struct queue *queue = NULL, *notify_queue = NULL;
    struct mailer *mail = NULL;
    struct notifier *notifier = NULL;
    struct auth *a = NULL;
    struct gateway *gw = NULL;
    struct converter *conv = NULL;
    struct http_server *auth_srv = NULL, *gw_srv = NULL;
    rc = EXIT_FAILURE_RUNTIME;
    secret = load_secret(&cfg, err, sizeof(err));
    if (secret == NULL)
        goto fail;
    users = users_open(&cfg, err, sizeof(err));
    if (users == NULL)
        goto fail;
    blobs = blobs_open(&cfg, err, sizeof(err));
    if (blobs == NULL)
        goto fail;
    sweeper = sweeper_start(blobs, cfg.gc_interval, cfg.gc_min_age);
    if (sweeper == NULL) {
        snprintf(err, sizeof(err), "cannot start the blob sweeper thread");
        goto fail;
    }
    a = auth_new(&cfg, users, secret, err, sizeof(err));
    if (a == NULL)
        goto fail;
    jobs = jobs_open(&cfg, err, sizeof(err));
    if (jobs == NULL)
        goto fail;
    queue = queue_open(&cfg, err, sizeof(err));
    if (queue == NULL)
        goto fail;
    struct gateway_deps deps = {.blobs = blobs,
                                .jobs = jobs,
                                .queue = queue,
                                .jwt_secret = secret,
                                .login = auth_handle_login,
                                .login_ctx = a};
    gw = gateway_new(&cfg, &deps, err, sizeof(err));
    if (gw == NULL)
        goto fail;
    gw_srv = gateway_serve(gw, &cfg, -1, err, sizeof(err));
    if (gw_srv == NULL)
        goto fail;
    struct converter_deps cdeps = {blobs, jobs, queue};
    conv = converter_start(&cfg, &cdeps, err, sizeof(err));
    if (conv == NULL)
        goto fail;
    mail = mail_open(&cfg, err, sizeof(err));
    if (mail == NULL)
        goto fail;
    struct queue_settings qs;
    notifier_queue_settings(&cfg, &qs);
    notify_queue = queue_open_with(&cfg, &qs, err, sizeof(err));
    if (notify_queue == NULL)
        goto fail;
    struct notifier_deps ndeps = {jobs, notify_queue, mail};
    notifier = notifier_start(&cfg, &ndeps, err, sizeof(err));
    if (notifier == NULL)
        goto fail;
    /* last: once the auth port answers, every part is up */
    auth_srv = auth_serve(a, &cfg, -1, err, sizeof(err));
    if (auth_srv == NULL)
        goto fail;
    log_info("vid2mp3 all running",
             json_pack("{s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s}", "address", cfg.bind_address,
                       "auth_port", http_server_port(auth_srv), "gateway_port",
                       http_server_port(gw_srv), "users", users->ops->name, "blobs",
                       blobs->ops->name, "jobs", jobs->ops->name, "queue", queue->ops->name, "mail",
                       mail->ops->name, "data_dir", cfg.data_dir));

    int sig = service_wait_signal();
    time_t stop_at = time(NULL);
    log_info("stopping", json_pack("{s:i}", "signal", sig));
    http_server_stop(gw_srv, (int)cfg.shutdown_grace);
    gw_srv = NULL;
    converter_stop(conv, (int)cfg.shutdown_grace);
    conv = NULL;
    long left = cfg.shutdown_grace - (long)(time(NULL) - stop_at);
    /* after the converter, in what is left of the grace period: its last
     * outcomes may still go out now (else at the next start) */
    notifier_stop(notifier, (int)(left > 0 ? left : 0));
    notifier = NULL;
    http_server_stop(auth_srv, (int)cfg.shutdown_grace);
    auth_srv = NULL;
    log_info("stopped", NULL);
    rc = EXIT_OK;
    goto out;
fail:
    log_error("vid2mp3 all failed to start", json_pack("{s:s}", "reason", err));
out:
    http_server_stop(gw_srv, 0);
    converter_stop(conv, 0);
    notifier_stop(notifier, 0);
    http_server_stop(auth_srv, 0);
    gateway_free(gw);
    queue_free(notify_queue);
    mail_free(mail);
    queue_free(queue);
    jobs_free(jobs);
    sweeper_stop(sweeper);
    blobs_free(blobs);
    if (secret != NULL) {
        sodium_memzero(secret, strlen(secret));
        free(secret);
    }
    auth_free(a);
    users_free(users);
    return rc;
}
