/*
 * sha256: streaming SHA-256 for stored content, on OpenSSL's EVP (it uses
 * the CPU's SHA instructions: about 4x libsodium's portable code here,
 * which made hashing the limit of an upload's speed).
 */
#ifndef VID2MP3_SHA256_H
#define VID2MP3_SHA256_H

#include <stddef.h>

struct sha256 {
    void *ctx; /* EVP_MD_CTX, owned */
};

/* Starts a digest. Returns 0, or -1 when out of memory. */
int sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t len);
/* Finishes the digest into 64 hex digits and a NUL. */
void sha256_hex(struct sha256 *h, char out[65]);
/* Releases h; safe on a zeroed struct and more than once. */
void sha256_free(struct sha256 *h);

#endif
