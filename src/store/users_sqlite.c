/*
 * users_sqlite: the embedded users backend, one SQLite file in WAL mode.
 *
 * One connection opened in serialized mode is shared by all threads; user
 * operations are few and short (a login spends its time hashing, not
 * here). Each operation holds the connection's mutex from prepare to
 * finalize, so sqlite3_changes() and sqlite3_errmsg() read its own results,
 * not another thread's. synchronous=FULL: an acknowledged account survives power loss.
 */
#include "store/users.h"

#include "core/log.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sq {
    sqlite3 *db;
};

static int map_rc(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return USERS_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
        return USERS_EUNAVAIL;
    default:
        return USERS_EINTERNAL;
    }
}

static int fail(struct sq *s, int rc, const char *what)
{
    log_error("users store: sqlite failed",
              json_pack("{s:s, s:s}", "op", what, "detail", sqlite3_errmsg(s->db)));
    return map_rc(rc);
}

static int sq_migrate_locked(void *h)
{
    struct sq *s = h;
    static const char sql[] = "CREATE TABLE IF NOT EXISTS users ("
                              " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                              " email TEXT NOT NULL UNIQUE,"
                              " password_hash TEXT NOT NULL,"
                              " admin INTEGER NOT NULL DEFAULT 0,"
                              " created_at INTEGER NOT NULL);"
                              "PRAGMA user_version = 1;";
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? USERS_OK : fail(s, rc, "migrate");
}

static void copy_row(sqlite3_stmt *st, struct user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(st, 0);
    snprintf(u->email, sizeof(u->email), "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(u->password_hash, sizeof(u->password_hash), "%s",
             (const char *)sqlite3_column_text(st, 2));
    u->admin = sqlite3_column_int(st, 3) != 0;
    u->created_at = sqlite3_column_int64(st, 4);
}

#define SELECT_USER "SELECT id, email, password_hash, admin, created_at FROM users"

static int sq_get_locked(void *h, const char *email, struct user *out)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, SELECT_USER " WHERE email = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "get");
    sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int result = USERS_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        copy_row(st, out);
        result = USERS_OK;
    } else if (rc != SQLITE_DONE) {
        result = fail(s, rc, "get");
    }
    sqlite3_finalize(st);
    return result;
}

static int sq_create_locked(void *h, const struct user *u)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db,
        "INSERT INTO users (email, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4)", -1,
        &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "create");
    sqlite3_bind_text(st, 1, u->email, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, u->password_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, u->admin ? 1 : 0);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st);
    int result = USERS_OK;
    if (rc == SQLITE_CONSTRAINT)
        result = USERS_EEXIST;
    else if (rc != SQLITE_DONE)
        result = fail(s, rc, "create");
    sqlite3_finalize(st);
    return result;
}

/* Runs a one-row UPDATE or DELETE with text parameters; ENOTFOUND when no row changed. */
static int exec_change(struct sq *s, const char *sql, const char *a, const char *b,
                       const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, what);
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b != NULL)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int result = USERS_OK;
    if (rc != SQLITE_DONE)
        result = fail(s, rc, what);
    else if (sqlite3_changes(s->db) == 0)
        result = USERS_ENOTFOUND;
    sqlite3_finalize(st);
    return result;
}

static int sq_set_hash_locked(void *h, const char *email, const char *hash)
{
    return exec_change(h, "UPDATE users SET password_hash = ?2 WHERE email = ?1", email, hash,
                       "set_hash");
}

static int sq_remove_locked(void *h, const char *email)
{
    return exec_change(h, "DELETE FROM users WHERE email = ?1", email, NULL, "remove");
}

static int sq_list_locked(void *h, users_list_fn fn, void *ctx)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, SELECT_USER " ORDER BY email", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "list");
    struct user u;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        copy_row(st, &u);
        if (fn(&u, ctx) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? USERS_OK : fail(s, rc, "list");
}

static int sq_count_admins_locked(void *h, long *out)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT COUNT(*) FROM users WHERE admin = 1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "count_admins");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? USERS_OK : fail(s, rc, "count_admins");
}

static int sq_ping_locked(void *h)
{
    struct sq *s = h;
    int rc = sqlite3_exec(s->db, "SELECT 1 FROM users LIMIT 1", NULL, NULL, NULL);
    return rc == SQLITE_OK ? USERS_OK : map_rc(rc);
}

/* ---------- the ops, each under the connection's mutex ---------- */

#define LOCKED(call)                                                                               \
    do {                                                                                           \
        struct sq *s_ = h;                                                                         \
        sqlite3_mutex_enter(sqlite3_db_mutex(s_->db));                                             \
        int rc_ = (call);                                                                          \
        sqlite3_mutex_leave(sqlite3_db_mutex(s_->db));                                             \
        return rc_;                                                                                \
    } while (0)

static int sq_migrate(void *h)
{
    LOCKED(sq_migrate_locked(h));
}

static int sq_get(void *h, const char *email, struct user *out)
{
    LOCKED(sq_get_locked(h, email, out));
}

static int sq_create(void *h, const struct user *u)
{
    LOCKED(sq_create_locked(h, u));
}

static int sq_set_hash(void *h, const char *email, const char *hash)
{
    LOCKED(sq_set_hash_locked(h, email, hash));
}

static int sq_remove(void *h, const char *email)
{
    LOCKED(sq_remove_locked(h, email));
}

static int sq_list(void *h, users_list_fn fn, void *ctx)
{
    LOCKED(sq_list_locked(h, fn, ctx));
}

static int sq_count_admins(void *h, long *out)
{
    LOCKED(sq_count_admins_locked(h, out));
}

static int sq_ping(void *h)
{
    LOCKED(sq_ping_locked(h));
}

static void sq_free(void *h)
{
    struct sq *s = h;
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    free(s);
}

static const struct users_ops sqlite_ops = {
    .name = "sqlite",
    .migrate = sq_migrate,
    .get = sq_get,
    .create = sq_create,
    .set_hash = sq_set_hash,
    .remove = sq_remove,
    .list = sq_list,
    .count_admins = sq_count_admins,
    .ping = sq_ping,
    .free = sq_free,
};

struct users *users_sqlite_new(const char *path, char *err, size_t errlen)
{
    struct sq *s = calloc(1, sizeof(*s));
    struct users *u = calloc(1, sizeof(*u));
    if (s == NULL || u == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "users store: cannot open %s: %s", path,
                 s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "users store: cannot set up %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    u->ops = &sqlite_ops;
    u->h = s;
    return u;
fail:
    if (s != NULL)
        sq_free(s);
    free(u);
    return NULL;
}
