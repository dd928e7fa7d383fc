/* accounts: see accounts.h. */
#include "auth/accounts.h"

#include "auth/credentials.h"

#include <sodium.h>
#include <string.h>

int accounts_create(struct users *users, struct password_pool *pool, const char *email,
                    const char *password, bool admin, const char **why)
{
    struct credentials c;
    struct user u;
    memset(&u, 0, sizeof(u));
    int rc = USERS_EINVAL;
    if (credentials_set(&c, email, password, why) != 0)
        goto out;
    if (strlen(c.password) < PASSWORD_MIN_NEW) {
        *why = "password must be at least 8 characters";
        goto out;
    }
    int h = password_hash(pool, c.password, u.password_hash);
    if (h != PASSWORD_OK) {
        *why = "the server is too busy to hash the password";
        rc = h == PASSWORD_EBUSY ? USERS_EUNAVAIL : USERS_EINTERNAL;
        goto out;
    }
    memcpy(u.email, c.email, sizeof(u.email));
    u.admin = admin;
    rc = users_create(users, &u);
out:
    credentials_wipe(&c);
    sodium_memzero(&u, sizeof(u));
    return rc;
}
