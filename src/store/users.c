/* users: backend choice and helpers shared by both backends; see users.h. */
#include "store/users.h"

#include "core/fsutil.h"
#include "core/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct users *users_open(const struct config *cfg, char *err, size_t errlen)
{
    struct users *u = NULL;
    if (config_uses_mysql(cfg)) {
        u = users_mysql_new(cfg->mysql_host, (unsigned)cfg->mysql_port, cfg->mysql_user,
                            cfg->mysql_password, cfg->mysql_db, err, errlen);
    } else {
        char path[4096];
        int rc = fsutil_mkdirs(cfg->data_dir, 0700);
        if (rc != 0) {
            snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", cfg->data_dir, strerror(-rc));
            return NULL;
        }
        snprintf(path, sizeof(path), "%s/users.db", cfg->data_dir);
        u = users_sqlite_new(path, err, errlen);
    }
    if (u == NULL)
        return NULL;
    int rc = users_migrate(u);
    if (rc != USERS_OK && rc != USERS_EUNAVAIL) {
        snprintf(err, errlen, "users store: schema migration failed: %s", users_strerror(rc));
        users_free(u);
        return NULL;
    }
    return u;
}

void users_free(struct users *u)
{
    if (u == NULL)
        return;
    u->ops->free(u->h);
    free(u);
}

int users_normalize_email(const char *email, char *out)
{
    size_t len = strnlen(email, USERS_EMAIL_MAX + 1);
    if (len == 0 || len > USERS_EMAIL_MAX)
        return USERS_EINVAL;
    const char *at = strchr(email, '@');
    if (at == NULL || at == email || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        at - email > 64 || !utf8_valid(email, len))
        return USERS_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' ||
            c == '\\')
            return USERS_EINVAL;
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[len] = '\0';
    return USERS_OK;
}

const char *users_strerror(int code)
{
    switch (code) {
    case USERS_OK:
        return "ok";
    case USERS_ENOTFOUND:
        return "no such user";
    case USERS_EEXIST:
        return "a user with this email already exists";
    case USERS_EUNAVAIL:
        return "the users database is unavailable";
    case USERS_EINVAL:
        return "invalid value";
    case USERS_EINTERNAL:
        return "internal error in the users database";
    default:
        return "unknown error";
    }
}
