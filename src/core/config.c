/* config: see config.h. One table row per variable; no other code reads env. */
#include "core/config.h"

#include "core/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum var_type { VAR_STR, VAR_LONG, VAR_LEVEL, VAR_ADDR, VAR_ADDRLIST, VAR_BOOL };

struct var {
    const char *name;
    enum var_type type;
    size_t offset;      /* into struct config */
    const char *defval; /* NULL: unset unless given */
    long min, max;      /* VAR_LONG bounds */
    bool secret;
};

#define STR(n, f, d, s)                                                                            \
    {                                                                                              \
        n, VAR_STR, offsetof(struct config, f), d, 0, 0, s                                         \
    }
#define NUM(n, f, d, lo, hi)                                                                       \
    {                                                                                              \
        n, VAR_LONG, offsetof(struct config, f), d, lo, hi, false                                  \
    }

static const struct var vars[] = {
    {"BIND_ADDRESS", VAR_ADDR, offsetof(struct config, bind_address), "0.0.0.0", 0, 0, false},
    {"TRUSTED_PROXIES", VAR_ADDRLIST, offsetof(struct config, trusted_proxies), "", 0, 0, false},
    NUM("AUTH_PORT", auth_port, "5000", 0, 65535),
    NUM("GATEWAY_PORT", gateway_port, "8080", 0, 65535),
    STR("AUTH_SVC_ADDRESS", auth_svc_address, "localhost:5000", false),
    NUM("MAX_UPLOAD_BYTES", max_upload_bytes, "2147483648", 1, 1099511627776),
    {"UPLOAD_ADMIN_ONLY", VAR_BOOL, offsetof(struct config, upload_admin_only), "true", 0, 0,
     false},
    NUM("HTTP_IDLE_TIMEOUT_SECONDS", http_idle_timeout, "30", 1, 3600),
    NUM("METRICS_PORT", metrics_port, "0", 0, 65535),
    NUM("CONVERTER_WORKERS", converter_workers, "0", 0, 256),
    NUM("CONVERTER_THREADS_PER_JOB", converter_threads_per_job, "0", 0, 256),
    {"KEEP_VIDEOS", VAR_BOOL, offsetof(struct config, keep_videos), "true", 0, 0, false},
    NUM("CONVERT_CPU_SECONDS", convert_cpu_seconds, "3600", 1, 604800),
    NUM("CONVERT_MAX_MP3_BYTES", convert_max_mp3_bytes, "2147483648", 1024, 1099511627776),
    STR("CRASH_AT", crash_at, NULL, false),
    STR("SMTP_URL", smtp_url, NULL, false),
    STR("SMTP_USER", smtp_user, NULL, false),
    STR("SMTP_PASSWORD", smtp_password, NULL, true),
    STR("SMTP_CA_FILE", smtp_ca_file, NULL, false),
    STR("SMTP_TLS", smtp_tls, "auto", false),
    NUM("SMTP_TIMEOUT_SECONDS", smtp_timeout, "30", 1, 3600),
    STR("GMAIL_ADDRESS", gmail_address, NULL, false),
    STR("GMAIL_PASSWORD", gmail_password, NULL, true),
    STR("MAIL_FROM", mail_from, NULL, false),
    STR("PUBLIC_URL", public_url, NULL, false),
    NUM("NOTIFIER_WORKERS", notifier_workers, "4", 1, 64),
    NUM("NOTIFY_MAX_ATTEMPTS", notify_max_attempts, "12", 1, 100),
    NUM("NOTIFY_RETRY_MAX_SECONDS", notify_retry_max, "300", 1, 86400),
    STR("DATA_DIR", data_dir, "./data", false),
    {"LOG_LEVEL", VAR_LEVEL, offsetof(struct config, log_level), "info", 0, 0, false},
    NUM("SHUTDOWN_GRACE_SECONDS", shutdown_grace, "25", 0, 3600),
    STR("MYSQL_HOST", mysql_host, NULL, false),
    STR("MYSQL_USER", mysql_user, NULL, false),
    STR("MYSQL_PASSWORD", mysql_password, "", true),
    STR("MYSQL_DB", mysql_db, NULL, false),
    NUM("MYSQL_PORT", mysql_port, "3306", 1, 65535),
    STR("MONGODB_URI", mongodb_uri, NULL, true),
    STR("RABBITMQ_URL", rabbitmq_url, NULL, true),
    STR("VIDEO_QUEUE", video_queue, "video", false),
    STR("MP3_QUEUE", mp3_queue, "mp3", false),
    NUM("MAX_ATTEMPTS", max_attempts, "5", 1, 100),
    NUM("QUEUE_LEASE_SECONDS", queue_lease, "30", 1, 3600),
    NUM("GC_INTERVAL_SECONDS", gc_interval, "600", 1, 604800),
    NUM("GC_MIN_AGE_SECONDS", gc_min_age, "3600", 0, 31536000),
    STR("JWT_SECRET", jwt_secret, NULL, true),
    STR("JWT_ISSUER", jwt_issuer, "vid2mp3", false),
    NUM("JWT_TTL_SECONDS", jwt_ttl, "86400", 60, 2592000),
    NUM("LOGIN_MAX_FAILURES", login_max_failures, "10", 1, 100),
    NUM("LOGIN_WINDOW_SECONDS", login_window, "300", 1, 86400),
    NUM("HASH_CONCURRENCY", hash_concurrency, "2", 1, 64),
};

static const char *const levels[] = {"debug", "info", "warn", "error"};

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* True when s is a comma-separated list of IP literals (spaces allowed). */
static int accept_net(const struct netaddr_net *net, void *ctx)
{
    (void)net;
    (void)ctx;
    return 0;
}

/* A comma-separated list of addresses and CIDR networks. */
static bool addr_list_ok(const char *s)
{
    return netaddr_each(s, accept_net, NULL) == 0;
}

/* True when s is an http(s) URL that can go into an email's link as it is:
 * printable ASCII without spaces, quotes, angle brackets or backslashes. */
static bool url_plain(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return false;
    if (strlen(s) > 200)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p <= ' ' || *p >= 0x7f || strchr("\"'<>\\`", *p) != NULL)
            return false;
    }
    return true;
}

static int load_var(const struct var *v, struct config *c, char *err, size_t errlen)
{
    const char *s = getenv(v->name);
    if (s != NULL && s[0] == '\0')
        s = NULL; /* an empty variable means "not set", as in most shells' idiom */
    if (s == NULL)
        s = v->defval;
    char *field = (char *)c + v->offset;

    switch (v->type) {
    case VAR_STR:
        *(const char **)field = s;
        return 0;
    case VAR_LONG:
        if (parse_long(s, v->min, v->max, (long *)field) != 0) {
            snprintf(err, errlen, "%s: must be an integer from %ld to %ld, got \"%.40s\"", v->name,
                     v->min, v->max, s);
            return -1;
        }
        return 0;
    case VAR_LEVEL:
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
            if (strcmp(s, levels[i]) == 0) {
                *(const char **)field = levels[i];
                return 0;
            }
        }
        snprintf(err, errlen, "%s: must be one of debug, info, warn, error, got \"%.40s\"", v->name,
                 s);
        return -1;
    case VAR_ADDR: {
        unsigned char buf[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, s, buf) != 1 && inet_pton(AF_INET6, s, buf) != 1) {
            snprintf(err, errlen, "%s: must be an IPv4 or IPv6 address, got \"%.60s\"", v->name, s);
            return -1;
        }
        *(const char **)field = s;
        return 0;
    }
    case VAR_BOOL:
        if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0) {
            *(bool *)field = true;
            return 0;
        }
        if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "no") == 0) {
            *(bool *)field = false;
            return 0;
        }
        snprintf(err, errlen, "%s: must be true or false, got \"%.40s\"", v->name, s);
        return -1;
    case VAR_ADDRLIST:
        if (s != NULL && !addr_list_ok(s)) {
            snprintf(err, errlen,
                     "%s: must be a comma-separated list of IP addresses or networks (10.0.0.0/8), "
                     "got \"%.60s\"",
                     v->name, s);
            return -1;
        }
        *(const char **)field = s;
        return 0;
    }
    return -1;
}

bool config_queue_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int config_load(struct config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        if (load_var(&vars[i], c, err, errlen) != 0)
            return -1;
    }
    if (c->mysql_host != NULL) {
        if (c->mysql_user == NULL) {
            snprintf(err, errlen, "MYSQL_USER: required when MYSQL_HOST is set");
            return -1;
        }
        if (c->mysql_db == NULL) {
            snprintf(err, errlen, "MYSQL_DB: required when MYSQL_HOST is set");
            return -1;
        }
    }
    if (c->mongodb_uri != NULL && strncmp(c->mongodb_uri, "mongodb://", 10) != 0 &&
        strncmp(c->mongodb_uri, "mongodb+srv://", 14) != 0) {
        snprintf(err, errlen, "MONGODB_URI: must start with mongodb:// or mongodb+srv://");
        return -1;
    }
    if (c->rabbitmq_url != NULL && strncmp(c->rabbitmq_url, "amqp://", 7) != 0 &&
        strncmp(c->rabbitmq_url, "amqps://", 8) != 0) {
        snprintf(err, errlen, "RABBITMQ_URL: must start with amqp:// or amqps://");
        return -1;
    }
    if (!config_queue_name_valid(c->video_queue) || !config_queue_name_valid(c->mp3_queue)) {
        snprintf(err, errlen, "%s: must be 1 to 100 of A-Z a-z 0-9 . _ -",
                 config_queue_name_valid(c->video_queue) ? "MP3_QUEUE" : "VIDEO_QUEUE");
        return -1;
    }
    if (strchr(c->auth_svc_address, '/') != NULL &&
        strncmp(c->auth_svc_address, "http://", 7) != 0 &&
        strncmp(c->auth_svc_address, "https://", 8) != 0) {
        snprintf(err, errlen, "AUTH_SVC_ADDRESS: must be HOST:PORT or an http:// or https:// URL");
        return -1;
    }
    if (c->smtp_url != NULL && strncmp(c->smtp_url, "smtp://", 7) != 0 &&
        strncmp(c->smtp_url, "smtps://", 8) != 0) {
        snprintf(err, errlen, "SMTP_URL: must start with smtp:// or smtps://");
        return -1;
    }
    if (strcmp(c->smtp_tls, "auto") != 0 && strcmp(c->smtp_tls, "required") != 0 &&
        strcmp(c->smtp_tls, "optional") != 0) {
        snprintf(err, errlen, "SMTP_TLS: must be auto, required or optional, got \"%.40s\"",
                 c->smtp_tls);
        return -1;
    }
    if (strcmp(c->smtp_tls, "optional") == 0 &&
        (c->smtp_user != NULL || c->gmail_address != NULL)) {
        snprintf(err, errlen,
                 "SMTP_TLS: optional may send in the clear, so it cannot be used with a login "
                 "(SMTP_USER or GMAIL_ADDRESS)");
        return -1;
    }
    if (c->public_url != NULL && !url_plain(c->public_url)) {
        snprintf(err, errlen,
                 "PUBLIC_URL: must be an http:// or https:// URL without spaces, quotes or "
                 "angle brackets");
        return -1;
    }
    if (c->jwt_secret != NULL && strlen(c->jwt_secret) < CONFIG_JWT_SECRET_MIN) {
        snprintf(err, errlen, "JWT_SECRET: must be at least %d characters", CONFIG_JWT_SECRET_MIN);
        return -1;
    }
    return 0;
}

bool config_uses_mysql(const struct config *c)
{
    return c->mysql_host != NULL;
}

void config_print(const struct config *c, FILE *out)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const struct var *v = &vars[i];
        const char *field = (const char *)c + v->offset;
        if (v->type == VAR_LONG) {
            fprintf(out, "%s=%ld\n", v->name, *(const long *)field);
            continue;
        }
        if (v->type == VAR_BOOL) {
            fprintf(out, "%s=%s\n", v->name, *(const bool *)field ? "true" : "false");
            continue;
        }
        const char *s = *(const char *const *)field;
        if (s == NULL)
            fprintf(out, "%s=\n", v->name);
        else if (v->secret && s[0] != '\0')
            fprintf(out, "%s=<redacted>\n", v->name);
        else
            fprintf(out, "%s=%s\n", v->name, s);
    }
}
