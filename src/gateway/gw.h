/*
 * gw: what the gateway's handler files (gateway.c, upload.c, download.c,
 * jobs_api.c) share: the service state, caller authentication and the
 * mapping of store errors to replies.
 */
#ifndef VID2MP3_GW_H
#define VID2MP3_GW_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/token.h"
#include "gateway/authclient.h"
#include "gateway/gateway.h"

#define RETRY_UNAVAILABLE 5 /* seconds, in Retry-After of the gateway's 503s */

enum upload_outcome {
    UPLOAD_ACCEPTED,
    UPLOAD_REFUSED,     /* 4xx: the client's fault */
    UPLOAD_UNAVAILABLE, /* 503: storage, database or broker down */
    UPLOAD_ABORTED,     /* the client went away or stalled */
    UPLOAD_OUTCOMES
};

struct gateway {
    const struct config *cfg;
    struct blobs *blobs;
    struct jobs *jobs;
    struct queue *queue;
    char *secret; /* NULL: tokens are checked by the auth service */
    struct token_keys keys;
    struct authclient *auth;
    http_handler_fn login;
    void *login_ctx;
    atomic_uint_fast64_t uploads[UPLOAD_OUTCOMES];
    atomic_uint_fast64_t upload_bytes;   /* file bytes stored */
    atomic_uint_fast64_t download_bytes; /* MP3 bytes sent */
    atomic_int event_streams;            /* GET /jobs/events open now */
};

/*
 * Who is calling, from Authorization: Bearer TOKEN. Returns 0 with the
 * claims, or replies (401, or 503 when the auth service cannot answer) and
 * returns -1.
 */
int gw_caller(struct gateway *gw, struct http_req *req, struct token_claims *who);

/* The same, but a request without Authorization may carry the token in
 * the cookie GW_DOWNLOAD_COOKIE (set by POST /download-session, sent by
 * the browser to /download only): for GET /download, which <audio> and
 * download links reach without headers. */
#define GW_DOWNLOAD_COOKIE "vid2mp3_download"
int gw_caller_link(struct gateway *gw, struct http_req *req, struct token_claims *who);

/* Reply for a failed blob or jobs store call (503 when unreachable, else
 * 500). */
void gw_reply_blob_error(struct http_req *req, int rc);
void gw_reply_jobs_error(struct http_req *req, int rc);

/* The job record of DESIGN §4 as JSON (caller owns). */
json_t *gw_job_json(const struct job *j);

/* The streaming POST /upload (upload.c). */
extern const struct http_stream_ops gw_upload_stream;
void gw_handle_upload(struct http_req *req, void *ctx);

/* GET /, /app.js, /app.css and /openapi.json: the files built into the
 * binary (web.c). */
void gw_handle_web(struct http_req *req, void *ctx);

/* True when If-None-Match (a list of entity tags, or "*") names etag. */
bool gw_etag_matches(const char *inm, const char *etag);

/* GET /jobs/events: the caller's jobs as Server-Sent Events (events.c). */
void gw_handle_events(struct http_req *req, void *ctx);

/* GET /download, and POST and DELETE /download-session, which set and
 * clear the cookie gw_caller_link takes (download.c). */
void gw_handle_download(struct http_req *req, void *ctx);
void gw_handle_download_session(struct http_req *req, void *ctx);

/* GET /jobs and GET /jobs/:id (jobs_api.c). */
void gw_handle_jobs(struct http_req *req, void *ctx);
void gw_handle_job(struct http_req *req, void *ctx);

#endif
