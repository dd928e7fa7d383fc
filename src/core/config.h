/*
 * config: the program's settings, read once from the environment (12-factor).
 *
 * Every variable is described by one row of a table in config.c: its name,
 * type, default, bounds and whether it is a secret. config_load() fills a
 * struct config from that table and validates each value; the first bad one
 * is reported as one line that names the variable. Strings in a loaded
 * struct point into the environment or into static defaults: they stay valid
 * as long as the environment is not changed, and nobody frees them.
 */
#ifndef VID2MP3_CONFIG_H
#define VID2MP3_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Where the converter and the notifier serve /healthz, /readyz and /metrics
 * when METRICS_PORT is 0 (unset). */
#define CONVERTER_METRICS_PORT 9102
#define NOTIFIER_METRICS_PORT 9103

struct config {
    /* service */
    const char *bind_address;
    const char *trusted_proxies; /* comma-separated IPs whose X-Forwarded-For is believed */
    long auth_port;
    long gateway_port;
    const char *auth_svc_address; /* HOST:PORT or URL of the auth service, for the gateway */
    long max_upload_bytes;        /* largest video the gateway takes */
    bool upload_admin_only;       /* only administrators may upload (as specified) */
    long http_idle_timeout;       /* seconds without a byte before a connection is dropped */
    long metrics_port;            /* converter/notifier /metrics port; 0: the defaults below */

    /* converter */
    long converter_workers;         /* conversions at once; 0: one per core */
    long converter_threads_per_job; /* encoder threads of one conversion; 0: the idle cores */
    bool keep_videos;               /* keep a video once its MP3 is stored (as specified) */
    long convert_cpu_seconds;       /* CPU time one conversion may take */
    long convert_max_mp3_bytes;     /* largest MP3 one conversion may write */
    const char *crash_at;           /* tests only: a phase at which to die with SIGKILL */

    /* mail: SMTP_URL or GMAIL_ADDRESS set selects SMTP, else the outbox */
    const char *smtp_url;  /* smtp://host:port (STARTTLS) or smtps://host:port */
    const char *smtp_user; /* NULL: no AUTH */
    const char *smtp_password;
    const char *smtp_ca_file;  /* NULL: the system's CAs */
    const char *smtp_tls;      /* "auto": STARTTLS except on loopback; "required" */
    long smtp_timeout;         /* seconds for one send */
    const char *gmail_address; /* as specified: smtp.gmail.com:587 with this account */
    const char *gmail_password;
    const char *mail_from;    /* sender; NULL: GMAIL_ADDRESS, SMTP_USER or vid2mp3@localhost */
    const char *public_url;   /* base of links in emails; NULL: http://localhost:GATEWAY_PORT */
    long notifier_workers;    /* emails sent at once */
    long notify_max_attempts; /* deliveries of one notification before it is given up */
    long notify_retry_max;    /* seconds: cap on the wait between two deliveries */
    const char *data_dir;
    const char *log_level;
    long shutdown_grace; /* seconds a SIGTERM waits for in-flight requests */

    /* users: MYSQL_HOST set selects MySQL/MariaDB, else SQLite in data_dir */
    const char *mysql_host;
    const char *mysql_user;
    const char *mysql_password;
    const char *mysql_db;
    long mysql_port;

    /* blobs and jobs: MONGODB_URI set selects GridFS and the jobs collection,
     * else files and SQLite under DATA_DIR */
    const char *mongodb_uri;
    /* queues: RABBITMQ_URL set selects RabbitMQ, else SQLite under DATA_DIR */
    const char *rabbitmq_url;
    const char *video_queue;
    const char *mp3_queue;
    long max_attempts;
    long queue_lease; /* SQLite queue: seconds a taken message waits for a sign of life */
    long gc_interval; /* seconds between sweeps of unfinished uploads */
    long gc_min_age;  /* leftovers younger than this are left alone (uploads in progress) */

    /* tokens */
    const char *jwt_secret; /* NULL when unset */
    const char *jwt_issuer;
    long jwt_ttl; /* seconds */

    /* login protection */
    long login_max_failures; /* failures allowed per email or address per window */
    long login_window;       /* seconds */
    long hash_concurrency;   /* Argon2id computations at once */
};

/* Minimum JWT_SECRET length in bytes: HS256 wants a key of 256 bits. */
#define CONFIG_JWT_SECRET_MIN 32

/*
 * Fills *c from the environment. Returns 0, or -1 with a one-line message in
 * err (no trailing newline) naming the first variable that is wrong.
 */
int config_load(struct config *c, char *err, size_t errlen);

/* True when s is a valid queue name: 1..100 of [A-Za-z0-9._-]. */
bool config_queue_name_valid(const char *s);

/* True when the users live in MySQL/MariaDB rather than SQLite. */
bool config_uses_mysql(const struct config *c);

/*
 * Writes the effective configuration to out as NAME=value lines, one per
 * known variable, with secrets shown as "<redacted>" when set.
 */
void config_print(const struct config *c, FILE *out);

#endif
