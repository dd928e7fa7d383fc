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
    /* libmongoc waits 5 minutes for a reply by default; a hung server would
     * hold a pooled client that long, and every caller queues behind it */
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, MONGO_SOCKET_TIMEOUT_MS);
    /* Atlas and operator connection strings often name the app already */
    bool named = mongoc_uri_has_option(uri, MONGOC_URI_APPNAME);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    if (pool == NULL) {
        snprintf(err, errlen, "MONGODB_URI: cannot create a client pool");
        return NULL;
    }
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    if (!named)
        mongoc_client_pool_set_appname(pool, "vid2mp3");
    return pool;
}

/* Server error codes that mean "not now" (elections, shutdowns, timeouts),
 * from the drivers' retryable-error list. */
static const uint32_t transient_codes[] = {
    6,     /* HostUnreachable */
    7,     /* HostNotFound */
    50,    /* MaxTimeMSExpired */
    89,    /* NetworkTimeout */
    91,    /* ShutdownInProgress */
    189,   /* PrimarySteppedDown */
    262,   /* ExceededTimeLimit */
    9001,  /* SocketException */
    10107, /* NotWritablePrimary */
    11600, /* InterruptedAtShutdown */
    11602, /* InterruptedDueToReplStateChange */
    13435, /* NotPrimaryNoSecondaryOk */
    13436, /* NotPrimaryOrSecondary */
    64,    /* WriteConcernFailed (wtimeout) */
};

bool mongo_error_unavailable(const bson_error_t *e)
{
    switch (e->domain) {
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_STREAM:
        return true;
    case MONGOC_ERROR_CLIENT:
        /* a wrong password or an oversized document will not get better */
        return e->code != MONGOC_ERROR_CLIENT_AUTHENTICATE &&
               e->code != MONGOC_ERROR_CLIENT_TOO_BIG;
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_WRITE_CONCERN:
        for (size_t i = 0; i < sizeof(transient_codes) / sizeof(transient_codes[0]); i++) {
            if (e->code == transient_codes[i])
                return true;
        }
        return false;
    default:
        return false;
    }
}

bool mongo_error_duplicate(const bson_error_t *e)
{
    return e->code == 11000;
}
