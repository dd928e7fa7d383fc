/*
 * log: one JSON object per line on stderr.
 *
 * Each line has ts, level, svc, msg, request_id (when the calling thread has
 * one), then the caller's fields. The service name and request id are
 * per-thread context, so call sites never format them. A line is written
 * with one write(2), so lines from several threads never interleave.
 *
 * Never pass passwords, tokens, secrets or file contents as fields.
 */
#ifndef VID2MP3_LOG_H
#define VID2MP3_LOG_H

#include <jansson.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* Lines below this level are dropped. Process-wide; default info. */
void log_set_level(enum log_level level);

/* The calling thread's service name ("auth", ...); the string must outlive
 * the thread's use of it (pass a literal). Default "vid2mp3". */
void log_set_service(const char *svc);

/* The calling thread's request id; copied (at most 64 bytes). NULL clears. */
void log_set_request_id(const char *id);

/* The calling thread's request id, "" when none (valid until it changes):
 * for threads that work on the caller's behalf to set as theirs. */
const char *log_request_id(void);

/*
 * Writes one line. fields is a JSON object or NULL; it is consumed (its
 * reference is stolen), so json_pack(...) can be passed directly. Fields
 * never overwrite ts, level, svc, msg or request_id. Never blocks on more
 * than one write to stderr.
 */
void log_event(enum log_level level, const char *msg, json_t *fields);

/* A JSON string of outside text for a field: invalid UTF-8 bytes become
 * '?' and the text is cut at 256 bytes, so hostile input can neither make a
 * line unencodable (and so lost) nor make it huge. Use with json_pack "o". */
json_t *log_text(const char *s);

#define log_debug(msg, fields) log_event(LOG_LEVEL_DEBUG, (msg), (fields))
#define log_info(msg, fields) log_event(LOG_LEVEL_INFO, (msg), (fields))
#define log_warn(msg, fields) log_event(LOG_LEVEL_WARN, (msg), (fields))
#define log_error(msg, fields) log_event(LOG_LEVEL_ERROR, (msg), (fields))

#endif
