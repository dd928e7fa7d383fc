/*
 * harness: what the integration and contract tests share: an HTTP client
 * (libcurl), child processes (the real vid2mp3 binary), free ports, temp
 * directories, and the addresses of the servers scripts/test-services.sh
 * started. Every failure here fails the test: nothing is skipped.
 */
#ifndef VID2MP3_HARNESS_H
#define VID2MP3_HARNESS_H

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <sys/types.h>

struct th_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* raw header block */
};

/*
 * Sends one request. headers is a NULL-terminated list of "Name: value"
 * (may be NULL); body may be NULL. Returns 0, or -1 when the connection
 * failed (status 0). Free the response with th_resp_free().
 */
int th_http(const char *method, const char *url, const char *const *headers, const char *body,
            size_t len, struct th_resp *out);
void th_resp_free(struct th_resp *r);

/* A response header's value (copied into buf), or NULL. */
const char *th_header(const struct th_resp *r, const char *name, char *buf, size_t len);

/* The body parsed as JSON (caller owns), failing the test when it is not. */
json_t *th_json(const struct th_resp *r);

/* Asserts the body is the DESIGN §4 error object with this code. */
void th_assert_error(const struct th_resp *r, long status, const char *code);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int th_free_port(void);

/* A new empty directory under /tmp (caller frees the string). */
char *th_tmpdir(void);

/* dir/name, newly allocated (the caller frees). */
char *th_path(const char *dir, const char *name);

/* rm -rf dir. */
void th_rmtree(const char *dir);

/*
 * Starts argv[0] with extra environment entries ("NAME=value", NULL-ended)
 * added to the inherited environment, stdout and stderr to log_path (may
 * be NULL: inherited), stdin from stdin_text (may be NULL: /dev/null).
 * Returns the pid.
 */
pid_t th_spawn(char *const argv[], char *const env[], const char *stdin_text, const char *log_path);

/* Runs a command to completion as th_spawn does; returns its exit status
 * (or 128 + signal). */
int th_run(char *const argv[], char *const env[], const char *stdin_text, const char *log_path);

/* Waits up to seconds for GET http://127.0.0.1:port/healthz to answer 200. */
int th_wait_healthy(int port, int seconds);

/* Sends sig to pid and waits up to seconds; returns the exit status, or
 * 128 + signal, or -1 on timeout (then kills it). */
int th_stop(pid_t pid, int sig, int seconds);

/* A JWT with any algorithm ("HS256", "HS512", "none"...), key (may be
 * NULL for none) and claims (JSON text), for hostile-token tests. Caller
 * frees. */
char *th_forge_jwt(const char *alg, const char *key, const char *claims);

/* An environment variable the test needs; fails the test when unset. */
const char *th_need_env(const char *name);

/* Sleeps ms milliseconds. */
void th_sleep_ms(long ms);

/* Runs `scripts/test-services.sh CMD STATE` (e.g. "rabbitmq-stop") on the
 * test servers, its output in STATE/services-CMD.log (a restarted server
 * keeps its starter's output open). Returns the exit status. */
int th_services(const char *cmd);

/* The whole file, NUL-terminated (caller frees), its length in *len when
 * len is not NULL; NULL when it cannot be read. */
char *th_slurp(const char *path, size_t *len);

/* The MP3 file's "Xing" (VBR) or "Info" (CBR) tag, at its place in the
 * first audio frame after the ID3v2 tag, into found; "" when it has none. */
void th_xing_tag(const char *path, char found[5]);

/* Runs `ffmpeg -nostdin -v error -y ARGS [OUT]` (out may be NULL when args
 * name it), its output to log_path (may be NULL); fails the test when it
 * fails. */
void th_ffmpeg(const char *const args[], const char *out, const char *log_path);

/* Waits up to seconds for child *pid to exit; returns its status (128 +
 * signal when killed) and sets *pid to 0, or fails the test. */
int th_wait_exit(pid_t *pid, int seconds);

/* The MP3 blobs stored for job_id (exactly-once checks): in the files
 * backend under data_dir, or, when data_dir is NULL, in GridFS at
 * $VID2MP3_TEST_MONGODB_URI. Fails the test when it cannot count. */
int th_mp3s_of(const char *job_id, const char *data_dir);

/* Makes a fresh MariaDB database on the test server; name gets its name. */
void th_mysql_create_db(char *name, size_t len);
void th_mysql_drop_db(const char *name);

#endif
