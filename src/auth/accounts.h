/* accounts: creating an account, shared by POST /users and `vid2mp3 user add`. */
#ifndef VID2MP3_ACCOUNTS_H
#define VID2MP3_ACCOUNTS_H

#include <stdbool.h>

#include "auth/password.h"
#include "store/users.h"

/*
 * Validates email and password (at least PASSWORD_MIN_NEW bytes), hashes
 * the password and stores the account. Returns USERS_OK; USERS_EINVAL with
 * *why set (a static sentence); USERS_EEXIST; USERS_EUNAVAIL (store down or
 * hashing too busy); USERS_EINTERNAL. Blocks for a hash computation.
 */
int accounts_create(struct users *users, struct password_pool *pool, const char *email,
                    const char *password, bool admin, const char **why);

#endif
