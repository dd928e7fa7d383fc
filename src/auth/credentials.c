/* credentials: see credentials.h. */
#include "auth/credentials.h"

#include <jansson.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

void credentials_wipe(struct credentials *c)
{
    sodium_memzero(c, sizeof(*c));
}

int credentials_set(struct credentials *out, const char *email, const char *password,
                    const char **why)
{
    credentials_wipe(out);
    if (email[0] == '\0') {
        *why = "email is required";
        return -1;
    }
    if (users_normalize_email(email, out->email) != USERS_OK) {
        *why = "email is not a valid address (at most 254 characters, one @)";
        return -1;
    }
    size_t plen = strnlen(password, PASSWORD_MAX + 1);
    if (plen == 0) {
        *why = "password is required";
        return -1;
    }
    if (plen > PASSWORD_MAX) {
        credentials_wipe(out);
        *why = "password is longer than 1024 bytes";
        return -1;
    }
    memcpy(out->password, password, plen + 1);
    return 0;
}

int credentials_is_basic(const char *header)
{
    return header != NULL && strncasecmp(header, "Basic ", 6) == 0;
}

int credentials_from_basic(const char *header, struct credentials *out, const char **why)
{
    /* base64 of "email:password" at the longest allowed */
    char decoded[USERS_EMAIL_MAX + PASSWORD_MAX + 2];
    size_t len = 0;
    credentials_wipe(out);
    if (!credentials_is_basic(header)) {
        *why = "the Authorization header is not Basic";
        return -1;
    }
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    if (sodium_base642bin((unsigned char *)decoded, sizeof(decoded) - 1, b64, strlen(b64), NULL,
                          &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        *why = "the Basic credentials are not valid base64 or are too long";
        return -1;
    }
    decoded[len] = '\0';
    char *colon = memchr(decoded, ':', len);
    int rc = -1;
    if (colon == NULL || strlen(decoded) != len) {
        *why = "the Basic credentials must be email:password";
    } else {
        *colon = '\0';
        rc = credentials_set(out, decoded, colon + 1, why);
    }
    sodium_memzero(decoded, sizeof(decoded));
    return rc;
}

int credentials_from_json(const char *body, size_t len, struct credentials *out, const char **why)
{
    credentials_wipe(out);
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    int rc = -1;
    if (!json_is_object(o)) {
        *why = "the body must be a JSON object {\"email\": ..., \"password\": ...}";
        goto out;
    }
    json_t *email = json_object_get(o, "email"), *password = json_object_get(o, "password");
    if (email == NULL || password == NULL) {
        *why = "email and password are required";
        goto out;
    }
    if (!json_is_string(email) || !json_is_string(password)) {
        *why = "email and password must be strings";
        goto out;
    }
    if (strlen(json_string_value(password)) != json_string_length(password) ||
        strlen(json_string_value(email)) != json_string_length(email)) {
        *why = "email and password must not contain NUL characters";
        goto out;
    }
    rc = credentials_set(out, json_string_value(email), json_string_value(password), why);
out:
    json_decref(o); /* jansson does not wipe the parsed password; it was short-lived */
    return rc;
}
