/*
 * users_mysql: the users backend on MySQL/MariaDB (MariaDB Connector/C).
 *
 * A small pool of connections, each used by one thread at a time. Every
 * statement with a value in it is a prepared statement. A connection that
 * fails at the connection level (server gone, restarted, timed out) is
 * closed and the operation retried once on a fresh one, so a restarted
 * server is picked up without restarting us; when the fresh connection
 * fails too, the answer is USERS_EUNAVAIL and the caller says 503.
 */
#include "store/users.h"

#include "core/log.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_SIZE 4
#define CONNECT_TIMEOUT 3     /* seconds */
#define IO_TIMEOUT 5          /* seconds, each of read and write */
#define ACQUIRE_TIMEOUT 10    /* seconds waiting for a free connection */
#define EDISCONNECTED (-100)  /* internal: connection lost before the statement ran */
#define ELOSTAFTERSEND (-101) /* internal: lost after sending; a write may have happened */

struct slot {
    MYSQL *conn; /* NULL: not connected */
    bool busy;
};

struct my {
    char *host, *user, *password, *db;
    unsigned port;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct slot slots[POOL_SIZE];
    atomic_bool migrated; /* schema known to exist; until then each new connection checks */
    /* While the server is known to be down, one caller at a time probes it
     * with a connect; the others answer "unavailable" at once instead of
     * queueing on connect timeouts. The first call after it is back probes
     * and succeeds, so recovery needs no restart and no waiting period. */
    atomic_bool down;
    atomic_bool probing;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
    mysql_library_init(0, NULL, NULL);
}

static bool is_connection_error(unsigned err)
{
    return (err >= 2000 && err < 3000) || err == ER_SERVER_SHUTDOWN || err == 1927 /* killed */ ||
           err == 4031 /* idle timeout */;
}

/* Maps a failed call's error number to a result, logging it. */
static int classify(unsigned err, const char *msg, const char *op)
{
    if (err == ER_DUP_ENTRY)
        return USERS_EEXIST;
    if (is_connection_error(err))
        return EDISCONNECTED;
    log_error("users store: mysql failed",
              json_pack("{s:s, s:i, s:s}", "op", op, "errno", (int)err, "detail", msg));
    return USERS_EINTERNAL;
}

static int stmt_fail(MYSQL_STMT *st, const char *op)
{
    return classify(mysql_stmt_errno(st), mysql_stmt_error(st), op);
}

static MYSQL *connect_new(struct my *m)
{
    MYSQL *c = mysql_init(NULL);
    if (c == NULL)
        return NULL;
    unsigned ct = CONNECT_TIMEOUT, io = IO_TIMEOUT;
    my_bool off = 0;
    mysql_options(c, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_options(c, MYSQL_OPT_READ_TIMEOUT, &io);
    mysql_options(c, MYSQL_OPT_WRITE_TIMEOUT, &io);
    mysql_options(c, MYSQL_OPT_RECONNECT, &off);
    mysql_options(c, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* CLIENT_FOUND_ROWS: an UPDATE to the same value still counts its row */
    if (mysql_real_connect(c, m->host, m->user, m->password, m->db, m->port, NULL,
                           CLIENT_FOUND_ROWS) == NULL) {
        log_warn("users store: cannot connect to mysql",
                 json_pack("{s:s, s:i, s:i, s:s}", "host", m->host, "port", (int)m->port, "errno",
                           (int)mysql_errno(c), "detail", mysql_error(c)));
        mysql_close(c);
        return NULL;
    }
    return c;
}

/* A free slot, or NULL when none frees up within ACQUIRE_TIMEOUT. */
static struct slot *acquire(struct my *m)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ACQUIRE_TIMEOUT;
    pthread_mutex_lock(&m->lock);
    for (;;) {
        for (int i = 0; i < POOL_SIZE; i++) {
            if (!m->slots[i].busy) {
                m->slots[i].busy = true;
                pthread_mutex_unlock(&m->lock);
                return &m->slots[i];
            }
        }
        if (pthread_cond_timedwait(&m->freed, &m->lock, &deadline) != 0) {
            pthread_mutex_unlock(&m->lock);
            return NULL;
        }
    }
}

static void release(struct my *m, struct slot *s)
{
    pthread_mutex_lock(&m->lock);
    s->busy = false;
    pthread_cond_signal(&m->freed);
    pthread_mutex_unlock(&m->lock);
}

/* One attempt of an operation on a live connection: USERS_* or EDISCONNECTED. */
typedef int (*op_fn)(MYSQL *c, void *arg);

static int op_migrate(MYSQL *c, void *arg);

/*
 * Runs fn on a pooled connection. A connection lost before the statement
 * ran is replaced and the operation retried once; one lost after it was
 * sent is retried only when the operation is idempotent, since a write may
 * have been committed (the caller then says "unavailable": outcome unknown).
 */
static int with_conn(struct my *m, op_fn fn, void *arg, bool idempotent)
{
    struct slot *s = acquire(m);
    if (s == NULL)
        return USERS_EUNAVAIL;
    int rc = USERS_EUNAVAIL;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = false;
        if (s->conn == NULL) {
            bool down = atomic_load(&m->down);
            if (down && atomic_exchange(&m->probing, true))
                break; /* another caller is probing the server */
            s->conn = connect_new(m);
            if (down)
                atomic_store(&m->probing, false);
            atomic_store(&m->down, s->conn == NULL);
            if (s->conn == NULL)
                break;
            fresh = true;
            /* A service may start before its database: create the schema
             * on the first connection that works. */
            if (!atomic_load(&m->migrated) && fn != op_migrate &&
                op_migrate(s->conn, NULL) == USERS_OK)
                atomic_store(&m->migrated, true);
        }
        rc = fn(s->conn, arg);
        if (rc != EDISCONNECTED && rc != ELOSTAFTERSEND)
            break;
        bool retry = !fresh && (rc == EDISCONNECTED || idempotent);
        mysql_close(s->conn);
        s->conn = NULL;
        rc = USERS_EUNAVAIL;
        if (!retry)
            break;
    }
    release(m, s);
    return rc;
}

/* Prepares sql and binds string parameters (NULL ends the list early). */
static MYSQL_STMT *prepare(MYSQL *c, const char *sql, const char *const *params, int n, int *rc,
                           const char *op)
{
    MYSQL_STMT *st = mysql_stmt_init(c);
    if (st == NULL) {
        *rc = classify(mysql_errno(c), mysql_error(c), op);
        return NULL;
    }
    MYSQL_BIND b[4];
    memset(b, 0, sizeof(b));
    for (int i = 0; i < n; i++) {
        b[i].buffer_type = MYSQL_TYPE_STRING;
        b[i].buffer = (void *)params[i];
        b[i].buffer_length = strlen(params[i]);
    }
    if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0 ||
        (n > 0 && mysql_stmt_bind_param(st, b) != 0)) {
        *rc = stmt_fail(st, op);
        mysql_stmt_close(st);
        return NULL;
    }
    if (mysql_stmt_execute(st) != 0) {
        *rc = stmt_fail(st, op);
        if (*rc == EDISCONNECTED)
            *rc = ELOSTAFTERSEND;
        mysql_stmt_close(st);
        return NULL;
    }
    *rc = USERS_OK;
    return st;
}

/* ---------- row reading ---------- */

struct row {
    MYSQL_BIND b[5];
    long long id, created;
    signed char admin;
    char email[USERS_EMAIL_MAX + 2];
    char hash[USERS_HASH_MAX + 2];
    unsigned long email_len, hash_len;
};

static int bind_row(MYSQL_STMT *st, struct row *r)
{
    memset(r, 0, sizeof(*r));
    r->b[0].buffer_type = MYSQL_TYPE_LONGLONG;
    r->b[0].buffer = &r->id;
    r->b[1].buffer_type = MYSQL_TYPE_STRING;
    r->b[1].buffer = r->email;
    r->b[1].buffer_length = sizeof(r->email) - 1;
    r->b[1].length = &r->email_len;
    r->b[2].buffer_type = MYSQL_TYPE_STRING;
    r->b[2].buffer = r->hash;
    r->b[2].buffer_length = sizeof(r->hash) - 1;
    r->b[2].length = &r->hash_len;
    r->b[3].buffer_type = MYSQL_TYPE_TINY;
    r->b[3].buffer = &r->admin;
    r->b[4].buffer_type = MYSQL_TYPE_LONGLONG;
    r->b[4].buffer = &r->created;
    return mysql_stmt_bind_result(st, r->b) == 0 ? 0 : -1;
}

static void row_to_user(const struct row *r, struct user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = r->id;
    size_t el = r->email_len < USERS_EMAIL_MAX ? r->email_len : USERS_EMAIL_MAX;
    size_t hl = r->hash_len < USERS_HASH_MAX ? r->hash_len : USERS_HASH_MAX;
    memcpy(u->email, r->email, el);
    memcpy(u->password_hash, r->hash, hl);
    u->admin = r->admin != 0;
    u->created_at = r->created;
}

#define SELECT_USER "SELECT id, email, password_hash, admin, created_at FROM users"

/* ---------- operations ---------- */

static int op_migrate(MYSQL *c, void *arg)
{
    (void)arg;
    static const char sql[] = "CREATE TABLE IF NOT EXISTS users ("
                              " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
                              " email VARBINARY(254) NOT NULL," /* byte-exact: no PAD SPACE */
                              " password_hash VARCHAR(255) NOT NULL,"
                              " admin BOOLEAN NOT NULL DEFAULT FALSE,"
                              " created_at BIGINT NOT NULL,"
                              " UNIQUE KEY users_email (email)"
                              ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
    if (mysql_real_query(c, sql, sizeof(sql) - 1) != 0)
        return classify(mysql_errno(c), mysql_error(c), "migrate");
    return USERS_OK;
}

struct get_arg {
    const char *email;
    struct user *out;
};

static int op_get(MYSQL *c, void *arg)
{
    struct get_arg *a = arg;
    int rc;
    MYSQL_STMT *st = prepare(c, SELECT_USER " WHERE email = ?", &a->email, 1, &rc, "get");
    if (st == NULL)
        return rc;
    struct row r;
    if (bind_row(st, &r) != 0) {
        rc = stmt_fail(st, "get");
    } else {
        int f = mysql_stmt_fetch(st);
        if (f == 0 || f == MYSQL_DATA_TRUNCATED) {
            row_to_user(&r, a->out);
            rc = USERS_OK;
        } else {
            rc = f == MYSQL_NO_DATA ? USERS_ENOTFOUND : stmt_fail(st, "get");
        }
    }
    mysql_stmt_close(st);
    return rc;
}

static int op_create(MYSQL *c, void *arg)
{
    const struct user *u = arg;
    char admin[2] = {u->admin ? '1' : '0', '\0'};
    char created[24];
    snprintf(created, sizeof(created), "%lld", (long long)time(NULL));
    const char *p[] = {u->email, u->password_hash, admin, created};
    int rc;
    MYSQL_STMT *st = prepare(
        c, "INSERT INTO users (email, password_hash, admin, created_at) VALUES (?, ?, ?, ?)", p, 4,
        &rc, "create");
    if (st != NULL)
        mysql_stmt_close(st);
    return rc;
}

struct change_arg {
    const char *sql;
    const char *params[2];
    int n;
    const char *op;
};

static int op_change(MYSQL *c, void *arg)
{
    struct change_arg *a = arg;
    int rc;
    MYSQL_STMT *st = prepare(c, a->sql, a->params, a->n, &rc, a->op);
    if (st == NULL)
        return rc;
    rc = mysql_stmt_affected_rows(st) > 0 ? USERS_OK : USERS_ENOTFOUND;
    mysql_stmt_close(st);
    return rc;
}

struct list_arg {
    users_list_fn fn;
    void *ctx;
};

static int op_list(MYSQL *c, void *arg)
{
    struct list_arg *a = arg;
    int rc;
    MYSQL_STMT *st = prepare(c, SELECT_USER " ORDER BY email", NULL, 0, &rc, "list");
    if (st == NULL)
        return rc;
    struct row r;
    struct user u;
    if (bind_row(st, &r) != 0 || mysql_stmt_store_result(st) != 0) {
        rc = stmt_fail(st, "list");
        goto out;
    }
    int f;
    while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
        row_to_user(&r, &u);
        if (a->fn(&u, a->ctx) != 0)
            break;
    }
    rc = f == 1 ? stmt_fail(st, "list") : USERS_OK;
out:
    mysql_stmt_close(st);
    return rc;
}

static int op_count_admins(MYSQL *c, void *arg)
{
    long *out = arg;
    int rc;
    MYSQL_STMT *st = prepare(c, "SELECT COUNT(*) FROM users WHERE admin", NULL, 0, &rc, "count");
    if (st == NULL)
        return rc;
    long long n = 0;
    MYSQL_BIND b;
    memset(&b, 0, sizeof(b));
    b.buffer_type = MYSQL_TYPE_LONGLONG;
    b.buffer = &n;
    if (mysql_stmt_bind_result(st, &b) != 0 || mysql_stmt_fetch(st) != 0) {
        rc = stmt_fail(st, "count");
    } else {
        *out = (long)n;
        rc = USERS_OK;
    }
    mysql_stmt_close(st);
    return rc;
}

static int op_ping(MYSQL *c, void *arg)
{
    (void)arg;
    if (mysql_ping(c) != 0)
        return classify(mysql_errno(c), mysql_error(c), "ping");
    return USERS_OK;
}

/* ---------- ops table ---------- */

static int my_migrate(void *h)
{
    struct my *m = h;
    int rc = with_conn(m, op_migrate, NULL, true);
    if (rc == USERS_OK)
        atomic_store(&m->migrated, true);
    return rc;
}

static int my_get(void *h, const char *email, struct user *out)
{
    struct get_arg a = {email, out};
    return with_conn(h, op_get, &a, true);
}

static int my_create(void *h, const struct user *u)
{
    return with_conn(h, op_create, (void *)u, false);
}

static int my_set_hash(void *h, const char *email, const char *hash)
{
    struct change_arg a = {
        "UPDATE users SET password_hash = ? WHERE email = ?", {hash, email}, 2, "set_hash"};
    return with_conn(h, op_change, &a, true); /* same value twice: idempotent */
}

static int my_remove(void *h, const char *email)
{
    struct change_arg a = {"DELETE FROM users WHERE email = ?", {email, NULL}, 1, "remove"};
    return with_conn(h, op_change, &a, false);
}

static int my_list(void *h, users_list_fn fn, void *ctx)
{
    struct list_arg a = {fn, ctx};
    return with_conn(h, op_list, &a, true);
}

static int my_count_admins(void *h, long *out)
{
    return with_conn(h, op_count_admins, out, true);
}

static int my_ping(void *h)
{
    return with_conn(h, op_ping, NULL, true);
}

static void my_free(void *h)
{
    struct my *m = h;
    if (m == NULL)
        return;
    for (int i = 0; i < POOL_SIZE; i++) {
        if (m->slots[i].conn != NULL)
            mysql_close(m->slots[i].conn);
    }
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->freed);
    free(m->host);
    free(m->user);
    if (m->password != NULL) {
        memset(m->password, 0, strlen(m->password));
        free(m->password);
    }
    free(m->db);
    free(m);
}

static const struct users_ops mysql_ops = {
    .name = "mysql",
    .migrate = my_migrate,
    .get = my_get,
    .create = my_create,
    .set_hash = my_set_hash,
    .remove = my_remove,
    .list = my_list,
    .count_admins = my_count_admins,
    .ping = my_ping,
    .free = my_free,
};

struct users *users_mysql_new(const char *host, unsigned port, const char *user,
                              const char *password, const char *db, char *err, size_t errlen)
{
    pthread_once(&library_once, library_init);
    struct my *m = calloc(1, sizeof(*m));
    struct users *u = calloc(1, sizeof(*u));
    if (m == NULL || u == NULL)
        goto oom;
    m->host = strdup(host);
    m->user = strdup(user);
    m->password = strdup(password != NULL ? password : "");
    m->db = strdup(db);
    m->port = port;
    if (m->host == NULL || m->user == NULL || m->password == NULL || m->db == NULL)
        goto oom;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->freed, NULL);
    u->ops = &mysql_ops;
    u->h = m;
    return u;
oom:
    snprintf(err, errlen, "out of memory");
    if (m != NULL) {
        free(m->host);
        free(m->user);
        free(m->password);
        free(m->db);
        free(m);
    }
    free(u);
    return NULL;
}
