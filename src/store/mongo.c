/* mongo: see mongo.h. */
#include "store/mongo.h"

#include "core/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* libmongoc's messages as our JSON lines. Its debug chatter is dropped; a
 * server without sessions (the test server) makes it warn about
 * endSessions at every pool teardown, which is noise, not a fault. */
static void on_driver_log(mongoc_log_level_t level, const char *domain, const char *message,
                          void *ctx)
{
    (void)ctx;
    enum log_level ours;
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        ours = LOG_LEVEL_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        ours = strstr(message, "endSessions") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        ours = LOG_LEVEL_DEBUG;
        break;
    default:
        return;
    }
    log_event(ours, "mongodb driver",
              json_pack("{s:o, s:o}", "domain", log_text(domain), "detail", log_text(message)));
}

static void init_driver(void)
{
    mongoc_init();
    mongoc_log_set_handler(on_driver_log, NULL);
}

mongoc_client_pool_t *mongo_pool_new(const char *uri_text, char *err, size_t errlen)
{
    pthread_once(&init_once, init_driver);
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &e);
    if (uri == NULL) {
        snprintf(err, errlen, "MONGODB_URI: not a valid connection string");
        return NULL;
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MONGO_TIMEOUT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, MONGO_TIMEOUT_MS);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    if (pool == NULL) {
        snprintf(err, errlen, "MONGODB_URI: cannot create a client pool");
        return NULL;
    }
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(pool, "vid2mp3");
    return pool;
}

bool mongo_error_unavailable(const bson_error_t *e)
{
    return e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
           e->domain == MONGOC_ERROR_CLIENT;
}

bool mongo_error_duplicate(const bson_error_t *e)
{
    return e->code == 11000;
}
