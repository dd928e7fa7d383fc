/* libFuzzer: login credentials as JSON bodies and as Basic headers. */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/credentials.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    struct credentials c;
    const char *why = NULL;
    if (credentials_from_json((const char *)data, size, &c, &why) == 0) {
        if (strlen(c.password) == 0 || strlen(c.password) > PASSWORD_MAX ||
            strchr(c.email, '@') == NULL)
            abort();
    } else if (why == NULL) {
        abort();
    }
    char *header = malloc(size + 7);
    if (header == NULL)
        return 0;
    memcpy(header, "Basic ", 6);
    memcpy(header + 6, data, size);
    header[size + 6] = '\0';
    if (credentials_from_basic(header, &c, &why) == 0 && strchr(c.email, '@') == NULL)
        abort();
    char norm[USERS_EMAIL_MAX + 1];
    users_normalize_email(header + 6, norm);
    free(header);
    return 0;
}
