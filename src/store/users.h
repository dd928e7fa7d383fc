/*
 * users: the accounts store (DESIGN §2), behind one interface with two
 * backends: MySQL/MariaDB (users_mysql.c) and SQLite (users_sqlite.c).
 *
 * Emails are stored and looked up as given after users_normalize_email()
 * (ASCII lower case); callers normalise first. A password is only ever
 * stored as an Argon2id hash string. Every function is thread-safe and may
 * block on the backend; none takes longer than the backend's timeouts.
 */
#ifndef VID2MP3_USERS_H
#define VID2MP3_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define USERS_EMAIL_MAX 254
#define USERS_HASH_MAX 127 /* crypto_pwhash_STRBYTES - 1 */

enum {
    USERS_OK = 0,
    USERS_ENOTFOUND = -1,
    USERS_EEXIST = -2,
    USERS_EUNAVAIL = -3, /* the backend cannot be reached: try again later */
    USERS_EINVAL = -4,
    USERS_EINTERNAL = -5,
};

struct user {
    int64_t id;
    char email[USERS_EMAIL_MAX + 1];
    char password_hash[USERS_HASH_MAX + 1];
    bool admin;
    int64_t created_at; /* unix seconds */
};

/* Called once per user by list; return non-zero to stop early. */
typedef int (*users_list_fn)(const struct user *u, void *ctx);

struct users_ops {
    const char *name; /* "mysql", "sqlite" */
    int (*migrate)(void *h);
    int (*get)(void *h, const char *email, struct user *out);
    int (*create)(void *h, const struct user *u); /* id and created_at are set by the store */
    int (*set_hash)(void *h, const char *email, const char *hash);
    int (*remove)(void *h, const char *email);
    int (*list)(void *h, users_list_fn fn, void *ctx);
    int (*count_admins)(void *h, long *out);
    int (*ping)(void *h);
    void (*free)(void *h);
};

/* A store: the backend's operations and its opaque handle. */
struct users {
    const struct users_ops *ops;
    void *h;
};

/*
 * Opens the backend the configuration selects (MYSQL_HOST set: MySQL, else
 * SQLite at DATA_DIR/users.db) and creates or upgrades its schema. A MySQL
 * server that is down is not an error here: calls answer USERS_EUNAVAIL
 * until it is back. Returns a store (free with users_free()) or NULL with a
 * reason in err.
 */
struct users *users_open(const struct config *cfg, char *err, size_t errlen);

/* Backend constructors, for tests and users_open(). NULL with err on failure. */
struct users *users_sqlite_new(const char *path, char *err, size_t errlen);
struct users *users_mysql_new(const char *host, unsigned port, const char *user,
                              const char *password, const char *db, char *err, size_t errlen);

void users_free(struct users *u);

static inline int users_migrate(struct users *u)
{
    return u->ops->migrate(u->h);
}
static inline int users_get(struct users *u, const char *email, struct user *out)
{
    return u->ops->get(u->h, email, out);
}
static inline int users_create(struct users *u, const struct user *user)
{
    return u->ops->create(u->h, user);
}
static inline int users_set_hash(struct users *u, const char *email, const char *hash)
{
    return u->ops->set_hash(u->h, email, hash);
}
static inline int users_remove(struct users *u, const char *email)
{
    return u->ops->remove(u->h, email);
}
static inline int users_list(struct users *u, users_list_fn fn, void *ctx)
{
    return u->ops->list(u->h, fn, ctx);
}
static inline int users_count_admins(struct users *u, long *out)
{
    return u->ops->count_admins(u->h, out);
}
static inline int users_ping(struct users *u)
{
    return u->ops->ping(u->h);
}

/*
 * Checks that email is one plausible address (one '@', non-empty parts, at
 * most USERS_EMAIL_MAX bytes of valid UTF-8, no spaces or control characters) and writes
 * it lower-cased to out (USERS_EMAIL_MAX + 1 bytes). Returns 0 or
 * USERS_EINVAL.
 */
int users_normalize_email(const char *email, char *out);

const char *users_strerror(int code);

#endif
