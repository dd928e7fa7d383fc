/*
 * credentials: reads an email and password from a request, as JSON
 * {"email": ..., "password": ...} or as an HTTP Basic Authorization
 * header. Pure functions over strings, so they are unit-tested and fuzzed
 * without a server.
 */
#ifndef VID2MP3_CREDENTIALS_H
#define VID2MP3_CREDENTIALS_H

#include <stddef.h>

#include "auth/password.h"
#include "store/users.h"

struct credentials {
    char email[USERS_EMAIL_MAX + 1]; /* normalised (lower case) */
    char password[PASSWORD_MAX + 1];
};

/* Each returns 0, or -1 with *why set to a sentence for a 400 answer
 * (a static string). *out is wiped on failure. */

/* header is the whole Authorization value, "Basic base64(email:password)". */
int credentials_from_basic(const char *header, struct credentials *out, const char **why);

/* body is a JSON object with string members email and password. */
int credentials_from_json(const char *body, size_t len, struct credentials *out, const char **why);

/* True when header's scheme is Basic (case-insensitive). */
int credentials_is_basic(const char *header);

/* Checks and copies email and password (password length 1..PASSWORD_MAX). */
int credentials_set(struct credentials *out, const char *email, const char *password,
                    const char **why);

/* Overwrites the password in memory. */
void credentials_wipe(struct credentials *c);

#endif
