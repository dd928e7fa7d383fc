/*
 * jsonerr: the error object every endpoint answers with (DESIGN §4):
 *   {"error": {"code": "snake_case_code", "message": "human sentence"}}
 */
#ifndef VID2MP3_JSONERR_H
#define VID2MP3_JSONERR_H

#include <jansson.h>

/* Returns a new object (caller owns the reference), or NULL when out of
 * memory. code must be snake_case; message a sentence a person can act on. */
json_t *jsonerr_new(const char *code, const char *message);

/* The reason phrase's snake_case code for an HTTP status ("not_found" for
 * 404), for errors that have no more specific code. Never NULL. */
const char *jsonerr_code_for_status(unsigned status);

#endif
