/* harness: see harness.h. */
#define _XOPEN_SOURCE 700 /* nftw, putenv */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jwt.h>
#include <mongoc/mongoc.h>
#include <mysql.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct buf {
    char *p;
    size_t len;
};

static size_t on_data(char *data, size_t size, size_t n, void *ctx)
{
    struct buf *b = ctx;
    size_t add = size * n;
    char *np = realloc(b->p, b->len + add + 1);
    if (np == NULL)
        return 0;
    memcpy(np + b->len, data, add);
    b->p = np;
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

int th_http(const char *method, const char *url, const char *const *headers, const char *body,
            size_t len, struct th_resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct buf b = {calloc(1, 1), 0}, h = {calloc(1, 1), 0};
    struct curl_slist *hl = NULL;
    for (int i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);
    /* Bodies over 1 MiB go with "Expect: 100-continue" (see below), so a
     * refusal before the body (413) is read before any of it is sent;
     * smaller ones without. */
    if (len <= 1024 * 1024)
        hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /* Bodies over 1 MiB go with "Expect: 100-continue". A server that
     * refuses one (413) answers instead of "100 Continue"; curl's default
     * 1 s wait, on a loaded machine, may run out first, and then a body
     * sent into a closing connection resets it before the 413 is read. */
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 15000L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.p;
    out->len = b.len;
    out->headers = h.p;
    return rc == CURLE_OK ? 0 : -1;
}

void th_resp_free(struct th_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *th_header(const struct th_resp *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        size_t ll = end != NULL ? (size_t)(end - line) : strlen(line);
        if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = ll - (size_t)(v - line);
            snprintf(buf, len, "%.*s", (int)vl, v);
            return buf;
        }
        line = end != NULL ? end + 2 : NULL;
    }
    return NULL;
}

json_t *th_json(const struct th_resp *r)
{
    json_error_t e;
    json_t *j = json_loads(r->body != NULL ? r->body : "", 0, &e);
    if (j == NULL)
        fail_msg("response is not JSON (%s): %.200s", e.text, r->body != NULL ? r->body : "");
    return j;
}

void th_assert_error(const struct th_resp *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected status %ld, got %ld: %.300s", status, r->status, r->body);
    json_t *j = th_json(r);
    json_t *err = json_object_get(j, "error");
    assert_true(json_is_object(err));
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 5);
    json_decref(j);
}

/* The low end of the kernel's ephemeral port range (32768 by default). */
static int ephemeral_low(void)
{
    int lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d", &lo) != 1)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

/* Whether a listening socket can bind 127.0.0.1:port now. */
static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* A port below the ephemeral range: between this call and the server's
 * bind, no outgoing connection (of this test or a parallel one) can take it
 * as its local port, as it could take one that bind(0) handed out. Random,
 * so parallel tests rarely draw the same; scripts/free-port does the same
 * for the shell scripts. */
int th_free_port(void)
{
    int lo = ephemeral_low(), base = 10000;
    if (lo - base >= 1000) {
        for (int i = 0; i < 500; i++) {
            uint32_t r = 0;
            if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
                break;
            int port = base + (int)(r % (uint32_t)(lo - base));
            if (port_bindable(port))
                return port;
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

char *th_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *th_tmpdir(void)
{
    char *t = strdup("/tmp/vid2mp3-test-XXXXXX");
    assert_non_null(mkdtemp(t));
    return t;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void th_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

pid_t th_spawn(char *const argv[], char *const env[], const char *stdin_text, const char *log_path)
{
    int in[2] = {-1, -1};
    if (stdin_text != NULL)
        assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv(env[i]);
        if (stdin_text != NULL) {
            dup2(in[0], 0);
            close(in[0]);
            close(in[1]);
        } else {
            int nul = open("/dev/null", O_RDONLY);
            dup2(nul, 0);
        }
        if (log_path != NULL) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (stdin_text != NULL) {
        close(in[0]);
        ssize_t n = write(in[1], stdin_text, strlen(stdin_text));
        (void)n;
        close(in[1]);
    }
    return pid;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int th_run(char *const argv[], char *const env[], const char *stdin_text, const char *log_path)
{
    pid_t pid = th_spawn(argv, env, stdin_text, log_path);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return status_code(st);
}

int th_wait_healthy(int port, int seconds)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    for (int i = 0; i < seconds * 20; i++) {
        struct th_resp r;
        int ok = th_http("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200;
        th_resp_free(&r);
        if (ok)
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int th_stop(pid_t pid, int sig, int seconds)
{
    kill(pid, sig);
    for (int i = 0; i < seconds * 20; i++) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return status_code(st);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

const char *th_need_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        fail_msg("%s is not set: start the test servers with scripts/test-services.sh "
                 "(make test does)",
                 name);
    return v;
}

static MYSQL *admin_conn(void)
{
    MYSQL *m = mysql_init(NULL);
    assert_non_null(m);
    unsigned port = (unsigned)strtoul(th_need_env("VID2MP3_TEST_MYSQL_PORT"), NULL, 10);
    if (mysql_real_connect(m, th_need_env("VID2MP3_TEST_MYSQL_HOST"),
                           th_need_env("VID2MP3_TEST_MYSQL_USER"),
                           th_need_env("VID2MP3_TEST_MYSQL_PASSWORD"), NULL, port, NULL, 0) == NULL)
        fail_msg("cannot reach the test MariaDB: %s", mysql_error(m));
    return m;
}

void th_mysql_create_db(char *name, size_t len)
{
    unsigned r = 0;
    FILE *f = fopen("/dev/urandom", "r");
    assert_non_null(f);
    assert_int_equal(fread(&r, sizeof(r), 1, f), 1);
    fclose(f);
    snprintf(name, len, "t_%d_%08x", (int)getpid(), r);
    MYSQL *m = admin_conn();
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (mysql_query(m, sql) != 0)
        fail_msg("CREATE DATABASE failed: %s", mysql_error(m));
    mysql_close(m);
}

void th_mysql_drop_db(const char *name)
{
    MYSQL *m = admin_conn();
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
    mysql_query(m, sql);
    mysql_close(m);
}

char *th_forge_jwt(const char *alg, const char *key, const char *claims)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    assert_int_equal(jwt_set_alg(j, jwt_str_alg(alg), (const unsigned char *)key,
                                 key != NULL ? (int)strlen(key) : 0),
                     0);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    assert_non_null(t);
    return t;
}

int th_services(const char *cmd)
{
    const char *state = th_need_env("VID2MP3_TEST_STATE");
    char *argv[] = {(char *)th_need_env("VID2MP3_TEST_SERVICES"), (char *)cmd, (char *)state, NULL};
    char log[512];
    snprintf(log, sizeof(log), "%s/services-%s.log", state, cmd);
    return th_run(argv, NULL, NULL, log);
}

void th_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

char *th_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc(n > 0 ? (size_t)n + 1 : 1);
    assert_non_null(d);
    size_t got = n > 0 ? fread(d, 1, (size_t)n, f) : 0;
    fclose(f);
    d[got] = '\0';
    if (len != NULL)
        *len = got;
    return d;
}

void th_ffmpeg(const char *const args[], const char *out, const char *log_path)
{
    char *argv[64] = {"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y"};
    int n = 5;
    for (int i = 0; args[i] != NULL; i++) {
        assert_true(n < 61);
        argv[n++] = (char *)args[i];
    }
    if (out != NULL)
        argv[n++] = (char *)out;
    argv[n] = NULL;
    int rc = th_run(argv, NULL, NULL, log_path);
    if (rc != 0)
        fail_msg("ffmpeg ... %s: exit %d (log: %s)", argv[n - 1], rc,
                 log_path != NULL ? log_path : "none");
}

int th_wait_exit(pid_t *pid, int seconds)
{
    for (int i = 0; i < seconds * 20; i++) {
        int st;
        if (waitpid(*pid, &st, WNOHANG) == *pid) {
            *pid = 0;
            return status_code(st);
        }
        th_sleep_ms(50);
    }
    fail_msg("process %d did not exit within %d s", (int)*pid, seconds);
    return -1;
}

int th_mp3s_of(const char *job_id, const char *data_dir)
{
    if (data_dir != NULL) {
        char cmd[800];
        snprintf(cmd, sizeof(cmd),
                 "grep -l '\"job_id\":\"%s\"' %s/blobs/mp3s/*/*.json 2>/dev/null | wc -l", job_id,
                 data_dir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        int n = -1;
        assert_int_equal(fscanf(p, "%d", &n), 1);
        pclose(p);
        return n;
    }
    mongoc_client_t *c = mongoc_client_new(th_need_env("VID2MP3_TEST_MONGODB_URI"));
    mongoc_collection_t *coll = mongoc_client_get_collection(c, "mp3s", "fs.files");
    bson_t *filter = BCON_NEW("metadata.job_id", BCON_UTF8(job_id));
    bson_error_t err;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &err);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
    if (n < 0)
        fail_msg("count: %s", err.message);
    return (int)n;
}

void th_xing_tag(const char *path, char found[5])
{
    size_t len;
    unsigned char *d = (unsigned char *)th_slurp(path, &len);
    assert_non_null(d);
    found[0] = '\0';
    size_t off = 0;
    if (len >= 10 && memcmp(d, "ID3", 3) == 0)
        off = 10 + (((size_t)d[6] & 0x7f) << 21 | ((size_t)d[7] & 0x7f) << 14 |
                    ((size_t)d[8] & 0x7f) << 7 | ((size_t)d[9] & 0x7f));
    if (off + 64 < len && d[off] == 0xff && (d[off + 1] & 0xe0) == 0xe0) {
        int mpeg1 = ((d[off + 1] >> 3) & 3) == 3;
        int mono = (d[off + 3] >> 6) == 3;
        size_t at = off + 4 + (mpeg1 ? (mono ? 17 : 32) : (mono ? 9 : 17));
        memcpy(found, d + at, 4);
        found[4] = '\0';
    }
    free(d);
}
