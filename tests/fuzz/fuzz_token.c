/* libFuzzer: token_verify() on arbitrary text (the Authorization header). */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char secret[] = "fuzz-secret-0123456789abcdef01234";
    static const struct token_keys keys = {(const unsigned char *)secret, sizeof(secret) - 1,
                                           "vid2mp3", 86400};
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct token_claims c;
    if (token_verify(&keys, text, 1800000000, &c) == TOKEN_OK) {
        /* only a token signed with the secret may pass */
        char *again = NULL;
        if (token_issue(&keys, c.sub, c.admin, 1800000000, &again) != TOKEN_OK)
            abort();
        free(again);
    }
    token_bearer(text);
    free(text);
    return 0;
}
