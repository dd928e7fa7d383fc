/*
 * embedded: files built into the binary (cmake/embed.cmake generates the
 * table from the list in CMakeLists.txt), so the service needs nothing on
 * disk to serve them.
 */
#ifndef VID2MP3_EMBEDDED_H
#define VID2MP3_EMBEDDED_H

#include <stddef.h>

struct embedded_file {
    const char *name;          /* path in the repository, e.g. "docs/openapi.json" */
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
    const char *sha256; /* of the data, 64 hex digits (an ETag) */
};

/* The file of that name, or NULL. Static: valid for the program's life. */
const struct embedded_file *embedded_find(const char *name);

#endif
