/*
 * range: the HTTP Range header of a download (RFC 9110 §14), one range of
 * bytes. Several ranges, other units and malformed headers are ignored (the
 * whole file is sent with 200), as the RFC allows.
 */
#ifndef VID2MP3_RANGE_H
#define VID2MP3_RANGE_H

#include <stdint.h>

enum range_result {
    RANGE_NONE,          /* no usable Range: send everything */
    RANGE_OK,            /* send bytes first..last (inclusive) with 206 */
    RANGE_UNSATISFIABLE, /* 416 */
};

/* Parses header (may be NULL) against a file of size bytes. */
enum range_result range_parse(const char *header, uint64_t size, uint64_t *first, uint64_t *last);

#endif
