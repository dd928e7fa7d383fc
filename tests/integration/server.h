/*
 * server: starts the real `vid2mp3` binary as a child process for a test,
 * on a free port, in its own data directory, and stops it.
 */
#ifndef VID2MP3_TEST_SERVER_H
#define VID2MP3_TEST_SERVER_H

#include "harness.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SECRET "test-secret-0123456789abcdef0123456789"

struct server {
    pid_t pid;
    int port;
    char *dir;
    char log[600];
    char base[64];
    char env[48][600]; /* NAME=value strings handed to the child */
    char *envp[49];
    int nenv;
};

static const char *vid2mp3_bin;

/* The start of every integration test's main: takes the binary's path. */
static inline int server_args(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/TO/vid2mp3\n", argv[0]);
        return -1;
    }
    vid2mp3_bin = argv[1];
    return sodium_init() < 0 ? -1 : 0;
}

/* Prepares s: a fresh data dir, a free port, the default environment plus
 * extra ("NAME=value", NULL-terminated, may be NULL). */
static inline void server_init(struct server *s, const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    s->dir = th_tmpdir();
    s->port = th_free_port();
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
    int n = 0;
    snprintf(s->env[n++], sizeof(s->env[0]), "DATA_DIR=%s", s->dir);
    snprintf(s->env[n++], sizeof(s->env[0]), "AUTH_PORT=%d", s->port);
    /* `all` also starts the gateway: never on the default 8080 */
    snprintf(s->env[n++], sizeof(s->env[0]), "GATEWAY_PORT=%d", th_free_port());
    snprintf(s->env[n++], sizeof(s->env[0]), "BIND_ADDRESS=127.0.0.1");
    snprintf(s->env[n++], sizeof(s->env[0]), "JWT_SECRET=%s", TEST_SECRET);
    snprintf(s->env[n++], sizeof(s->env[0]), "MYSQL_HOST=");
    snprintf(s->env[n++], sizeof(s->env[0]), "SHUTDOWN_GRACE_SECONDS=10");
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 48; i++)
        snprintf(s->env[n++], sizeof(s->env[0]), "%s", extra[i]);
    for (int i = 0; i < n; i++)
        s->envp[i] = s->env[i];
    s->envp[n] = NULL;
    s->nenv = n;
}

/* Adds one more "NAME=value" to s's environment (later entries win). */
__attribute__((format(printf, 2, 3))) static inline void server_env(struct server *s,
                                                                    const char *fmt, ...)
{
    if (s->nenv == 48)
        fail_msg("server_env: too many variables");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->env[s->nenv], sizeof(s->env[0]), fmt, ap);
    va_end(ap);
    s->envp[s->nenv] = s->env[s->nenv];
    s->nenv++;
    s->envp[s->nenv] = NULL;
}

/* Runs `vid2mp3 ARGS...` with s's environment; returns the exit status. */
static inline int server_cli(struct server *s, const char *stdin_text, const char *a1,
                             const char *a2, const char *a3, const char *a4)
{
    char *argv[] = {(char *)vid2mp3_bin, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    return th_run(argv, s->envp, stdin_text, s->log);
}

/* Prints the last 20 lines of s's log to stderr: what a failing test shows. */
static inline void server_print_log(const struct server *s)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "tail -20 %s >&2", s->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

static inline void server_start(struct server *s, const char *target)
{
    char *argv[] = {(char *)vid2mp3_bin, (char *)target, NULL};
    s->pid = th_spawn(argv, s->envp, NULL, s->log);
    if (th_wait_healthy(s->port, 30) != 0) {
        server_print_log(s);
        fail_msg("vid2mp3 %s did not become healthy on port %d", target, s->port);
    }
}

/* Stops with sig; returns the exit status. */
static inline int server_stop(struct server *s, int sig)
{
    int rc = s->pid > 0 ? th_stop(s->pid, sig, 30) : 0;
    s->pid = 0;
    return rc;
}

static inline void server_cleanup(struct server *s)
{
    if (s->pid > 0)
        server_stop(s, SIGKILL);
    if (s->dir != NULL) {
        th_rmtree(s->dir);
        free(s->dir);
        s->dir = NULL;
    }
}

/* POSTs a JSON body (may be NULL) with optional extra header to base+path. */
static inline void post(struct server *s, const char *path, const char *header, const char *ctype,
                        const char *body, struct th_resp *r)
{
    char url[256], ct[128];
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype != NULL ? ctype : "application/json");
    const char *h[] = {ct, header, NULL};
    if (ctype == NULL && body == NULL) {
        h[0] = header;
        h[1] = NULL;
    }
    th_http("POST", url, h, body, body != NULL ? strlen(body) : 0, r);
}

/* Logs in with JSON; returns the token (caller frees) or fails the test. */
static inline char *login(struct server *s, const char *email, const char *password)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    struct th_resp r;
    post(s, "/login", NULL, "application/json", body, &r);
    if (r.status != 200)
        fail_msg("login %s: status %ld: %s", email, r.status, r.body);
    json_t *j = th_json(&r);
    char *tok = strdup(json_string_value(json_object_get(j, "token")));
    json_decref(j);
    th_resp_free(&r);
    return tok;
}

#endif
