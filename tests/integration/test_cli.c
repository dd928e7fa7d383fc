/*
 * Integration: the command line (DESIGN §1) and `vid2mp3 all`.
 * Usage: test_cli PATH/TO/vid2mp3
 */
#include "server.h"

#include <signal.h>
#include <sodium.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The combined output of the last command run with s (and truncates it). */
static char *take_log(struct server *s)
{
    FILE *f = fopen(s->log, "r");
    char *all = calloc(1, 65536);
    if (f != NULL) {
        size_t n = fread(all, 1, 65535, f);
        all[n] = '\0';
        fclose(f);
    }
    f = fopen(s->log, "w"); /* empty it for the next command */
    if (f != NULL)
        fclose(f);
    return all;
}

static void expect(struct server *s, int status, const char *stdin_text, const char *a1,
                   const char *a2, const char *a3, const char *a4, const char *needle)
{
    int rc = server_cli(s, stdin_text, a1, a2, a3, a4);
    char *out = take_log(s);
    if (rc != status || (needle != NULL && strstr(out, needle) == NULL))
        fail_msg("vid2mp3 %s %s: status %d (want %d), output: %s", a1, a2 ? a2 : "", rc, status,
                 out);
    free(out);
}

static void version_help_usage(void **state)
{
    (void)state;
    struct server s;
    server_init(&s, NULL);
    expect(&s, 0, NULL, "version", NULL, NULL, NULL, "vid2mp3 0.");
    expect(&s, 0, NULL, "--version", NULL, NULL, NULL, "vid2mp3 0.");
    expect(&s, 0, NULL, "--help", NULL, NULL, NULL, "user add EMAIL [--admin]");
    expect(&s, 2, NULL, NULL, NULL, NULL, NULL, "usage: vid2mp3");
    expect(&s, 2, NULL, "frobnicate", NULL, NULL, NULL, "unknown command 'frobnicate'");
    server_cleanup(&s);
}

/* The gateway's settings are checked at start: one line, exit 2. */
static void gateway_bad_config(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"MAX_UPLOAD_BYTES=lots", "MAX_UPLOAD_BYTES: must be an integer"},
        {"MAX_UPLOAD_BYTES=0", "MAX_UPLOAD_BYTES: must be an integer"},
        {"UPLOAD_ADMIN_ONLY=maybe", "UPLOAD_ADMIN_ONLY: must be true or false"},
        {"GATEWAY_PORT=70000", "GATEWAY_PORT: must be an integer"},
        {"HTTP_IDLE_TIMEOUT_SECONDS=0", "HTTP_IDLE_TIMEOUT_SECONDS: must be an integer"},
        {"AUTH_SVC_ADDRESS=ftp://x/y", "AUTH_SVC_ADDRESS: must be HOST:PORT"},
        {"CONVERTER_WORKERS=-1", "CONVERTER_WORKERS: must be an integer"},
        {"KEEP_VIDEOS=sometimes", "KEEP_VIDEOS: must be true or false"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *env[] = {bad[i][0], NULL};
        struct server s;
        server_init(&s, env);
        expect(&s, 2, NULL, "gateway", NULL, NULL, NULL, bad[i][1]);
        server_cleanup(&s);
    }
}

/* The notifier's settings are checked at start: one line, exit 2. */
static void notifier_bad_config(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"MAIL_FROM=a@example.com, b@example.com", "MAIL_FROM: "},
        {"MAIL_FROM=Robot <robot@example.com>", "MAIL_FROM: "},
        {"GMAIL_ADDRESS=not-an-address", "GMAIL_ADDRESS: "},
        {"SMTP_URL=http://mail.example.com", "SMTP_URL: must start with smtp://"},
        {"SMTP_TLS=never", "SMTP_TLS: must be auto, required or optional"},
        {"SMTP_TIMEOUT_SECONDS=0", "SMTP_TIMEOUT_SECONDS: must be an integer"},
        {"PUBLIC_URL=javascript:alert(1)", "PUBLIC_URL: must be an http://"},
        {"PUBLIC_URL=http://x.example/\"><script>", "PUBLIC_URL: must be an http://"},
        {"NOTIFIER_WORKERS=0", "NOTIFIER_WORKERS: must be an integer"},
        {"NOTIFY_MAX_ATTEMPTS=0", "NOTIFY_MAX_ATTEMPTS: must be an integer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *env[] = {bad[i][0], NULL};
        struct server s;
        server_init(&s, env);
        expect(&s, 2, NULL, "notifier", NULL, NULL, NULL, bad[i][1]);
        server_cleanup(&s);
    }
    /* a login is only ever sent over TLS: optional TLS with one is refused */
    const char *login_env[] = {"SMTP_URL=smtp://mail.example.com", "SMTP_TLS=optional",
                               "SMTP_USER=robot", NULL};
    struct server s;
    server_init(&s, login_env);
    expect(&s, 2, NULL, "notifier", NULL, NULL, NULL, "SMTP_TLS: optional may send in the clear");
    server_cleanup(&s);
}

static void config_redacts(void **state)
{
    (void)state;
    const char *env[] = {"MYSQL_PASSWORD=swordfish", "SMTP_PASSWORD=hunter2-smtp",
                         "GMAIL_PASSWORD=gmail-app-pass", NULL};
    struct server s;
    server_init(&s, env);
    expect(&s, 0, NULL, "config", NULL, NULL, NULL, "JWT_SECRET=<redacted>");
    server_cli(&s, NULL, "config", NULL, NULL, NULL);
    char *out = take_log(&s);
    assert_null(strstr(out, TEST_SECRET));
    assert_null(strstr(out, "swordfish"));
    assert_null(strstr(out, "hunter2-smtp"));
    assert_null(strstr(out, "gmail-app-pass"));
    assert_non_null(strstr(out, "MYSQL_PASSWORD=<redacted>"));
    assert_non_null(strstr(out, "SMTP_PASSWORD=<redacted>"));
    free(out);
    server_cleanup(&s);
}

static void user_commands(void **state)
{
    (void)state;
    struct server s;
    server_init(&s, NULL);
    expect(&s, 0, NULL, "migrate", NULL, NULL, NULL, "jobs schema (sqlite): up to date");
    expect(&s, 0, "first-password\n", "user", "add", "First@Example.com", "--admin",
           "created first@example.com (admin)");
    expect(&s, 0, "second-password\r\n", "user", "add", "second@example.com", NULL,
           "created second@example.com");
    expect(&s, 1, "second-password\n", "user", "add", "second@example.com", NULL, "already exists");
    expect(&s, 2, NULL, "user", "add", "third@example.com", NULL, "password on standard input");
    expect(&s, 2, "\n", "user", "add", "third@example.com", NULL, "password is required");
    expect(&s, 2, "short\n", "user", "add", "third@example.com", NULL, "at least 8");
    expect(&s, 2, "long-enough\n", "user", "add", "not-an-email", NULL, "not a valid address");
    expect(&s, 2, NULL, "user", "add", "x@example.com", "--root", "usage:");
    expect(&s, 2, NULL, "user", NULL, NULL, NULL, "usage:");
    expect(&s, 0, NULL, "user", "list", NULL, NULL, "first@example.com\tadmin\t");
    expect(&s, 0, NULL, "user", "del", "second@example.com", NULL, "deleted second@example.com");
    expect(&s, 1, NULL, "user", "del", "second@example.com", NULL, "no such user");
    server_cli(&s, NULL, "user", "list", NULL, NULL);
    char *out = take_log(&s);
    assert_null(strstr(out, "second@"));
    assert_null(strstr(out, "argon2")); /* hashes are never printed */
    free(out);
    server_cleanup(&s);
}

static void gc_command(void **state)
{
    (void)state;
    struct server s;
    server_init(&s, NULL);
    expect(&s, 0, NULL, "gc", NULL, NULL, NULL, "gc (fs): removed 0 unfinished files");
    expect(&s, 0, NULL, "gc", "--older-than", "0", NULL, "gc (fs): removed");
    expect(&s, 2, NULL, "gc", "--older-than", "soon", NULL, "--older-than takes a number");
    expect(&s, 2, NULL, "gc", "now", NULL, NULL, "usage: vid2mp3 gc");
    server_cleanup(&s);

    /* against GridFS, with a connection string that names its app (as
     * Atlas's do): used as given, no driver error in the log */
    char uri[600];
    const char *base = th_need_env("VID2MP3_TEST_MONGODB_URI");
    snprintf(uri, sizeof(uri), "MONGODB_URI=%s%sappName=Cluster0", base,
             strchr(base, '?') != NULL ? "&" : "/?");
    const char *env[] = {uri, NULL};
    server_init(&s, env);
    assert_int_equal(server_cli(&s, NULL, "gc", NULL, NULL, NULL), 0);
    char *out = take_log(&s);
    if (strstr(out, "gc (gridfs): removed") == NULL || strstr(out, "appname") != NULL)
        fail_msg("gc with appName in MONGODB_URI: %s", out);
    free(out);
    server_cleanup(&s);
}

static void bad_data_dir(void **state)
{
    (void)state;
    const char *env[] = {"DATA_DIR=/proc/no/such/place", NULL};
    struct server s;
    server_init(&s, env);
    expect(&s, 1, NULL, "user", "list", NULL, NULL, "DATA_DIR");
    server_cleanup(&s);
}

static void all_generates_and_keeps_secret(void **state)
{
    (void)state;
    const char *env[] = {"JWT_SECRET=", NULL};
    struct server s;
    server_init(&s, env);
    assert_int_equal(server_cli(&s, "all-password\n", "user", "add", "a@example.com", "--admin"),
                     0);
    server_start(&s, "all");
    char path[700];
    snprintf(path, sizeof(path), "%s/jwt-secret", s.dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *tok = login(&s, "a@example.com", "all-password");
    assert_int_equal(server_stop(&s, SIGTERM), 0);

    /* restarted: same secret, so the old token still validates */
    server_start(&s, "all");
    char h[2048];
    snprintf(h, sizeof(h), "Authorization: Bearer %s", tok);
    struct th_resp r;
    post(&s, "/validate", h, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGINT), 0);
    free(tok);
    server_cleanup(&s);
}

/* A child that listens on 127.0.0.1:port, answers one connection with
 * reply and exits 0; returned once it listens. */
static pid_t answer_once(int port, const char *reply)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int c = accept(fd, NULL, NULL);
        char buf[4096];
        if (c < 0 || read(c, buf, sizeof(buf)) <= 0 ||
            write(c, reply, strlen(reply)) != (ssize_t)strlen(reply))
            _exit(1);
        close(c);
        _exit(0);
    }
    close(fd);
    return pid;
}

/* `vid2mp3 probe`, the container health check: asks the service on the
 * port it reads from the same environment; 0 only for a 200. */
static void probe_command(void **state)
{
    (void)state;
    char metrics[64];
    snprintf(metrics, sizeof(metrics), "METRICS_PORT=%d", th_free_port());
    const char *env[] = {metrics, NULL};
    struct server s;
    server_init(&s, env);
    /* nothing listens: every port is tried, each named */
    expect(&s, 1, NULL, "probe", NULL, NULL, NULL, "Couldn't connect");
    char *out = NULL;
    assert_int_equal(server_cli(&s, NULL, "probe", NULL, NULL, NULL), 1);
    out = take_log(&s);
    char want[128];
    snprintf(want, sizeof(want), "127.0.0.1:%d/healthz", s.port);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, metrics + strlen("METRICS_PORT=")));
    free(out);
    expect(&s, 2, NULL, "probe", "frontend", NULL, NULL, "unknown service 'frontend'");
    expect(&s, 2, NULL, "probe", "auth", "--live", NULL, "unexpected argument '--live'");
    expect(&s, 2, NULL, "probe", "auth", "gateway", NULL, "unexpected argument 'gateway'");
    server_start(&s, "all");
    expect(&s, 0, NULL, "probe", NULL, NULL, NULL, NULL);
    expect(&s, 0, NULL, "probe", "all", "--ready", NULL, NULL);
    expect(&s, 0, NULL, "probe", "auth", NULL, NULL, NULL);
    expect(&s, 0, NULL, "probe", "gateway", "--ready", NULL, NULL);
    /* a port where something answers, but not 200 */
    int port = th_free_port();
    pid_t pid = answer_once(port, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    server_env(&s, "METRICS_PORT=%d", port);
    expect(&s, 1, NULL, "probe", "converter", "--ready", NULL, "/readyz: HTTP 503");
    assert_int_equal(th_wait_exit(&pid, 10), 0);
    expect(&s, 1, NULL, "probe", "notifier", NULL, NULL, "/healthz: Couldn't connect");
    assert_int_equal(server_stop(&s, SIGTERM), 0);
    server_cleanup(&s);
}

int main(int argc, char **argv)
{
    if (server_args(argc, argv) != 0)
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_help_usage),  cmocka_unit_test(config_redacts),
        cmocka_unit_test(user_commands),       cmocka_unit_test(gc_command),
        cmocka_unit_test(bad_data_dir),        cmocka_unit_test(gateway_bad_config),
        cmocka_unit_test(notifier_bad_config), cmocka_unit_test(all_generates_and_keeps_secret),
        cmocka_unit_test(probe_command),
    };
    return cmocka_run_group_tests_name("command line", tests, NULL, NULL);
}
