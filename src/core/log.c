/* log: see log.h. */
#include "core/log.h"

#include "core/utf8.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = LOG_LEVEL_INFO;
static _Thread_local const char *thread_svc;
static _Thread_local char thread_request_id[65];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    atomic_store(&min_level, level);
}

void log_set_service(const char *svc)
{
    thread_svc = svc;
}

const char *log_request_id(void)
{
    return thread_request_id;
}

void log_set_request_id(const char *id)
{
    if (id == NULL) {
        thread_request_id[0] = '\0';
        return;
    }
    snprintf(thread_request_id, sizeof(thread_request_id), "%s", id);
}

json_t *log_text(const char *s)
{
    char clean[257];
    return json_string(utf8_clean(s != NULL ? s : "", clean, sizeof(clean)));
}

static void format_ts(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

void log_event(enum log_level level, const char *msg, json_t *fields)
{
    if ((int)level < atomic_load(&min_level)) {
        json_decref(fields);
        return;
    }
    char ts[40];
    format_ts(ts, sizeof(ts));
    json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level], "svc",
                             thread_svc != NULL ? thread_svc : "vid2mp3", "msg", msg);
    if (line == NULL) {
        json_decref(fields);
        return;
    }
    if (thread_request_id[0] != '\0')
        json_object_set_new(line, "request_id", json_string(thread_request_id));
    if (json_is_object(fields))
        json_object_update_missing(line, fields);
    json_decref(fields);

    char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(line);
    if (text == NULL)
        return;
    size_t n = strlen(text) + 1;
    text[n - 1] = '\n'; /* json_dumps' terminator becomes the newline */
    /* One write(2) for the whole line when possible; finish a partial one. */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere left to report a failing stderr */
        off += (size_t)w;
    }
    free(text);
}
