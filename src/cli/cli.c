/* cli: see cli.h. */
#include "cli/cli.h"

#include "auth/accounts.h"
#include "auth/password.h"
#include "core/config.h"
#include "core/service.h"
#include "store/blobs.h"
#include "store/jobs.h"
#include "store/users.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

void cli_usage(FILE *out)
{
    fputs("usage: vid2mp3 COMMAND [ARGS]\n"
          "\n"
          "Services (each also answers /healthz, /readyz and /metrics):\n"
          "  auth                      the auth service, on AUTH_PORT (5000)\n"
          "  gateway                   the gateway (web page, uploads, jobs,\n"
          "                            downloads), on GATEWAY_PORT (8080)\n"
          "  converter                 the converter workers (CONVERTER_WORKERS, one per\n"
          "                            core by default); metrics on METRICS_PORT (9102)\n"
          "  notifier                  the email notifier (SMTP when SMTP_URL or\n"
          "                            GMAIL_ADDRESS is set, else .eml files in\n"
          "                            DATA_DIR/outbox); metrics on METRICS_PORT (9103)\n"
          "  all                       every service in one process: auth, the gateway,\n"
          "                            the converter and the notifier (with a generated\n"
          "                            JWT secret kept in DATA_DIR when JWT_SECRET is\n"
          "                            unset) and the sweeper of unfinished uploads\n"
          "\n"
          "Conversion:\n"
          "  convert IN OUT [--quality N|--bitrate K] [--threads N]\n"
          "                            convert a local video or audio file to MP3 (LAME\n"
          "                            VBR quality 0-9, default 2, or a constant bitrate;\n"
          "                            inputs of 60 s or more on N encoder threads,\n"
          "                            default every core)\n"
          "\n"
          "Administration:\n"
          "  user add EMAIL [--admin]  create an account; the password is read from\n"
          "                            standard input (one line)\n"
          "  user list                 list accounts: email, role, creation time\n"
          "  user del EMAIL            delete an account\n"
          "  migrate                   create or upgrade the schemas, then exit\n"
          "  gc [--older-than SECONDS] remove what uploads that never finished left in\n"
          "                            blob storage (default GC_MIN_AGE_SECONDS, 3600)\n"
          "  config                    print the effective configuration, secrets redacted\n"
          "  version                   print the version\n"
          "  probe [SERVICE] [--ready]\n"
          "                            ask SERVICE (auth, gateway, converter, notifier\n"
          "                            or all) on this host for /healthz (or /readyz);\n"
          "                            exit 0 when it answers 200. Without SERVICE: the\n"
          "                            first of those ports where something listens\n"
          "\n"
          "Configuration comes from environment variables (see README.md).\n"
          "Exit status: 0 success, 1 failure, 2 usage or configuration error.\n",
          out);
}

int cli_version_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("vid2mp3 %s\n", VID2MP3_VERSION);
    return EXIT_OK;
}

int cli_config_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    int rc = service_config(&cfg, "cli");
    if (rc != 0)
        return rc;
    config_print(&cfg, stdout);
    return EXIT_OK;
}

/* Opens the configured users store for a command; NULL after printing why. */
static struct users *open_users(struct config *cfg, int *rc)
{
    char err[512];
    *rc = service_config(cfg, "cli");
    if (*rc != 0)
        return NULL;
    struct users *u = users_open(cfg, err, sizeof(err));
    if (u == NULL) {
        fprintf(stderr, "vid2mp3: %s\n", err);
        *rc = EXIT_FAILURE_RUNTIME;
    }
    return u;
}

/* Reads one line from stdin into buf without its line ending; no echo on a
 * terminal. Returns 0, or -1 when the line is missing or too long. */
static int read_password(char *buf, size_t len)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fputs("password: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rc = fgets(buf, (int)len, stdin) != NULL ? 0 : -1;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (rc != 0)
        return -1;
    size_t n = strlen(buf);
    if (n == len - 1 && buf[n - 1] != '\n')
        return -1; /* longer than the buffer */
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int user_add(struct users *u, const char *email, bool admin)
{
    char password[PASSWORD_MAX + 2];
    if (read_password(password, sizeof(password)) != 0) {
        fprintf(stderr,
                "vid2mp3: user add: expected the password on standard input, one line "
                "of at most %d bytes\n",
                PASSWORD_MAX);
        return EXIT_USAGE;
    }
    struct password_pool *pool = password_pool_new(1);
    const char *why = NULL;
    int rc =
        pool != NULL ? accounts_create(u, pool, email, password, admin, &why) : USERS_EINTERNAL;
    sodium_memzero(password, sizeof(password));
    password_pool_free(pool);
    if (rc == USERS_OK) {
        char norm[USERS_EMAIL_MAX + 1];
        users_normalize_email(email, norm);
        printf("created %s%s\n", norm, admin ? " (admin)" : "");
        return EXIT_OK;
    }
    fprintf(stderr, "vid2mp3: user add: %s\n", rc == USERS_EINVAL ? why : users_strerror(rc));
    return rc == USERS_EINVAL ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
}

static int print_user(const struct user *u, void *ctx)
{
    (void)ctx;
    char when[32];
    time_t t = (time_t)u->created_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s\t%s\t%s\n", u->email, u->admin ? "admin" : "user", when);
    return 0;
}

int cli_user_main(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    bool add = strcmp(sub, "add") == 0, del = strcmp(sub, "del") == 0;
    bool list = strcmp(sub, "list") == 0;
    bool admin = argc == 4 && strcmp(argv[3], "--admin") == 0;
    if (!((add && (argc == 3 || admin)) || (del && argc == 3) || (list && argc == 2))) {
        fputs("usage: vid2mp3 user add EMAIL [--admin]   (password on standard input)\n"
              "       vid2mp3 user list\n"
              "       vid2mp3 user del EMAIL\n",
              stderr);
        return EXIT_USAGE;
    }
    struct config cfg;
    int rc = 0;
    struct users *u = open_users(&cfg, &rc);
    if (u == NULL)
        return rc;
    if (add) {
        rc = user_add(u, argv[2], admin);
    } else if (list) {
        int r = users_list(u, print_user, NULL);
        if (r != USERS_OK)
            fprintf(stderr, "vid2mp3: user list: %s\n", users_strerror(r));
        rc = r == USERS_OK ? EXIT_OK : EXIT_FAILURE_RUNTIME;
    } else {
        char norm[USERS_EMAIL_MAX + 1];
        int r = users_normalize_email(argv[2], norm);
        if (r == USERS_OK)
            r = users_remove(u, norm);
        if (r == USERS_OK)
            printf("deleted %s\n", norm);
        else
            fprintf(stderr, "vid2mp3: user del: %s\n", users_strerror(r));
        rc = r == USERS_OK ? EXIT_OK : EXIT_FAILURE_RUNTIME;
    }
    users_free(u);
    return rc;
}

int cli_migrate_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct config cfg;
    char err[512];
    int rc = 0;
    struct users *u = open_users(&cfg, &rc);
    if (u == NULL)
        return rc;
    int r = users_migrate(u);
    if (r == USERS_OK)
        printf("users schema (%s): up to date\n", u->ops->name);
    else
        fprintf(stderr, "vid2mp3: migrate: users (%s): %s\n", u->ops->name, users_strerror(r));
    users_free(u);
    if (r != USERS_OK)
        return EXIT_FAILURE_RUNTIME;

    struct jobs *j = jobs_open(&cfg, err, sizeof(err));
    if (j == NULL) {
        fprintf(stderr, "vid2mp3: migrate: %s\n", err);
        return EXIT_FAILURE_RUNTIME;
    }
    r = jobs_ping(j); /* SQLite: created on open; MongoDB: indexes made by the ping */
    if (r == JOBS_OK)
        printf("jobs schema (%s): up to date\n", j->ops->name);
    else
        fprintf(stderr, "vid2mp3: migrate: jobs (%s): %s\n", j->ops->name, jobs_strerror(r));
    jobs_free(j);
    return r == JOBS_OK ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

int cli_gc_main(int argc, char **argv)
{
    long older_than = -1; /* GC_MIN_AGE_SECONDS unless given */
    if (argc == 3 && strcmp(argv[1], "--older-than") == 0) {
        char *end = NULL;
        older_than = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || older_than < 0) {
            fputs("vid2mp3 gc: --older-than takes a number of seconds\n", stderr);
            return EXIT_USAGE;
        }
    } else if (argc != 1) {
        fputs("usage: vid2mp3 gc [--older-than SECONDS]\n", stderr);
        return EXIT_USAGE;
    }
    struct config cfg;
    char err[512];
    int rc = service_config(&cfg, "cli");
    if (rc != 0)
        return rc;
    if (older_than < 0)
        older_than = cfg.gc_min_age;
    struct blobs *b = blobs_open(&cfg, err, sizeof(err));
    if (b == NULL) {
        fprintf(stderr, "vid2mp3: %s\n", err);
        return EXIT_FAILURE_RUNTIME;
    }
    struct blobs_gc_stats st = {0};
    int r = blobs_gc(b, older_than, &st);
    if (r == BLOB_OK)
        printf("gc (%s): removed %ld unfinished files and %ld orphan chunks\n", b->ops->name,
               st.files_removed, st.chunks_removed);
    else
        fprintf(stderr, "vid2mp3: gc: %s\n", blobs_strerror(r));
    blobs_free(b);
    return r == BLOB_OK ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}
