/*
 * mongo: what every MongoDB-backed store shares: driver set-up, client
 * pools with our timeouts, libmongoc's log routed into ours, and error
 * classification.
 */
#ifndef VID2MP3_MONGO_H
#define VID2MP3_MONGO_H

#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stddef.h>

#define MONGO_TIMEOUT_MS 3000         /* server selection and connect, unless the URI says */
#define MONGO_SOCKET_TIMEOUT_MS 60000 /* one reply, unless the URI says otherwise */

/*
 * A client pool for uri (a mongodb:// string): error API v2, appname
 * "vid2mp3", serverSelectionTimeoutMS and connectTimeoutMS of
 * MONGO_TIMEOUT_MS unless the URI sets them. Initialises the driver once
 * per process. Returns NULL with a reason in err (no credentials in it).
 */
mongoc_client_pool_t *mongo_pool_new(const char *uri, char *err, size_t errlen);

/* True when e means "try again later": the server could not be reached, or
 * answered with a transient error (an election, a shutdown, a timeout). */
bool mongo_error_unavailable(const bson_error_t *e);

/* True when e is a duplicate key error (E11000). */
bool mongo_error_duplicate(const bson_error_t *e);

#endif
