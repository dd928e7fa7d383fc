/* queue: backend choice and helpers shared by both backends; see queue.h. */
#include "queue/queue.h"

#include "core/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void queue_settings_default(struct queue_settings *s)
{
    s->max_attempts = 5;
    s->retry_base_ms = 1000;
    s->retry_max_ms = 60000;
    s->lease_ms = 30000;
}

struct queue *queue_open(const struct config *cfg, char *err, size_t errlen)
{
    struct queue_settings s;
    queue_settings_default(&s);
    s.max_attempts = (int)cfg->max_attempts;
    s.lease_ms = cfg->queue_lease * 1000;
    return queue_open_with(cfg, &s, err, errlen);
}

struct queue *queue_open_with(const struct config *cfg, const struct queue_settings *set, char *err,
                              size_t errlen)
{
    struct queue_settings s = *set;
    if (cfg->rabbitmq_url != NULL && cfg->rabbitmq_url[0] != '\0')
        return queue_amqp_new(cfg->rabbitmq_url, &s, err, errlen);
    int rc = fsutil_mkdirs(cfg->data_dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", cfg->data_dir, strerror(-rc));
        return NULL;
    }
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/queue.db", cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(err, errlen, "DATA_DIR: path too long");
        return NULL;
    }
    return queue_sqlite_new(path, &s, err, errlen);
}

void queue_free(struct queue *q)
{
    if (q == NULL)
        return;
    q->ops->free(q->h);
    free(q);
}

bool queue_name_valid(const char *name)
{
    return name != NULL && config_queue_name_valid(name);
}

long queue_retry_delay_ms(const struct queue_settings *s, int attempt)
{
    long d = s->retry_base_ms;
    /* doubling stops at the cap, so a large attempt number cannot overflow */
    for (int i = 1; i < attempt && d < s->retry_max_ms; i++)
        d *= 2;
    return d < s->retry_max_ms ? d : s->retry_max_ms;
}

const char *queue_strerror(int code)
{
    switch (code) {
    case QUEUE_OK:
        return "ok";
    case QUEUE_EUNAVAIL:
        return "the queue is unavailable";
    case QUEUE_EINVAL:
        return "invalid queue name or message";
    case QUEUE_EINTERNAL:
        return "internal error in the queue";
    default:
        return "unknown error";
    }
}
