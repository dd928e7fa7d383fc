/* gateway: see gateway.h. Wiring, authentication, /login, /check-mongo,
 * readiness and metrics; the other endpoints have a file each. */
#include "gateway/gw.h"

#include "core/bearer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/utf8.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGIN_BODY_MAX (64 * 1024)
/* The multipart framing around the file: boundaries, part headers, the
 * bitrate/quality fields. The file itself is bounded by MAX_UPLOAD_BYTES. */
#define FORM_OVERHEAD (64 * 1024)

/* The caller whose token is tok (NULL: already replied to). */
static int caller_of(struct gateway *gw, struct http_req *req, const char *tok,
                     struct token_claims *who)
{
    if (tok == NULL)
        return -1;
    if (gw->secret != NULL)
        return bearer_check(req, &gw->keys, tok, who);
    int rc = authclient_validate(gw->auth, tok, http_req_id(req), who);
    if (rc == AUTHC_OK)
        return 0;
    if (rc == AUTHC_INVALID || rc == AUTHC_EXPIRED) {
        bearer_reply_invalid(req, rc == AUTHC_EXPIRED ? TOKEN_EEXPIRED : TOKEN_ESIGNATURE);
        return -1;
    }
    log_warn("auth service did not validate a token", NULL);
    http_reply_error_retry(req, 503, "auth_unavailable",
                           "the login service is unavailable; try again shortly",
                           RETRY_UNAVAILABLE);
    return -1;
}

int gw_caller(struct gateway *gw, struct http_req *req, struct token_claims *who)
{
    return caller_of(gw, req, bearer_token(req), who);
}

int gw_caller_link(struct gateway *gw, struct http_req *req, struct token_claims *who)
{
    const char *cookie = http_req_header(req, "Authorization") == NULL
                             ? http_req_cookie(req, GW_DOWNLOAD_COOKIE)
                             : NULL;
    return caller_of(gw, req, cookie != NULL && cookie[0] != '\0' ? cookie : bearer_token(req),
                     who);
}

void gw_reply_blob_error(struct http_req *req, int rc)
{
    log_warn("blob store failed", json_pack("{s:s}", "reason", blobs_strerror(rc)));
    if (rc == BLOB_EUNAVAIL)
        http_reply_error_retry(req, 503, "storage_unavailable",
                               "file storage is unavailable; try again shortly", RETRY_UNAVAILABLE);
    else
        http_reply_error(req, 500, "internal_error", "file storage failed");
}

void gw_reply_jobs_error(struct http_req *req, int rc)
{
    log_warn("jobs store failed", json_pack("{s:s}", "reason", jobs_strerror(rc)));
    if (rc == JOBS_EUNAVAIL)
        http_reply_error_retry(req, 503, "storage_unavailable",
                               "the jobs database is unavailable; try again shortly",
                               RETRY_UNAVAILABLE);
    else
        http_reply_error(req, 500, "internal_error", "the jobs database failed");
}

/* Unix milliseconds as RFC 3339 UTC text with milliseconds. */
static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

/* Text from a store as a JSON string: valid UTF-8 whatever was stored
 * (jansson refuses anything else), or null when empty. */
static json_t *text_or_null(const char *s)
{
    char clean[JOB_ERROR_MAX + 1];
    return s[0] != '\0' ? json_string(utf8_clean(s, clean, sizeof(clean))) : json_null();
}

json_t *gw_job_json(const struct job *j)
{
    json_t *options = json_loads(j->options, 0, NULL);
    char filename[BLOB_NAME_MAX + 1];
    utf8_clean(j->filename, filename, sizeof(filename));
    bool done = j->status == JOB_DONE;
    const char *notification = j->notified_at <= 0          ? "pending"
                               : j->notify_error[0] != '\0' ? "failed"
                                                            : "sent";
    return json_pack("{s:s, s:s, s:f, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o}",
                     "job_id", j->id, "status", job_status_name(j->status), "progress", j->progress,
                     "video_fid", j->video_fid, "mp3_fid", text_or_null(done ? j->mp3_fid : ""),
                     "filename", filename, "error", text_or_null(j->error), "options",
                     options != NULL ? options : json_object(), "duration",
                     done && j->duration >= 0 ? json_real(j->duration) : json_null(), "mp3_bytes",
                     done && j->mp3_bytes >= 0 ? json_integer(j->mp3_bytes) : json_null(),
                     "created_at", time_json(j->created_at), "updated_at", time_json(j->updated_at),
                     "notified_at", time_json(j->notified_at), "notification", notification,
                     "notification_error", text_or_null(j->notify_error));
}

/* POST /login: in process, or passed through from the auth service. */
static void handle_login(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    if (gw->login != NULL) {
        gw->login(req, gw->login_ctx);
        return;
    }
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    struct auth_reply r;
    if (authclient_post(gw->auth, "/login", http_req_header(req, "Content-Type"),
                        http_req_header(req, "Authorization"), body, len, http_req_id(req),
                        http_req_client_ip(req), &r) != 0) {
        log_warn("auth service did not answer a login", NULL);
        http_reply_error_retry(req, 503, "auth_unavailable",
                               "the login service is unavailable; try again shortly",
                               RETRY_UNAVAILABLE);
        return;
    }
    if (r.retry_after[0] != '\0')
        http_reply_header(req, "Retry-After", r.retry_after);
    /* as the auth service gave it: only a login without credentials asks
     * for Basic (on a wrong password it would make browsers prompt) */
    if (r.www_authenticate[0] != '\0')
        http_reply_header(req, "WWW-Authenticate", r.www_authenticate);
    http_reply_text(req, (unsigned)r.status, r.ctype[0] != '\0' ? r.ctype : "application/json",
                    r.body, r.len);
    auth_reply_free(&r);
}

/* GET /check-mongo: the storage backend and whether it answers. */
static void handle_check(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    int rc = blobs_ping(gw->blobs);
    if (rc != BLOB_OK) {
        char msg[160];
        snprintf(msg, sizeof(msg), "file storage (%s) does not answer: %s", gw->blobs->ops->name,
                 blobs_strerror(rc));
        http_reply_error_retry(req, 503, "storage_unavailable", msg, RETRY_UNAVAILABLE);
        return;
    }
    http_reply_json(req, 200, json_pack("{s:s, s:b}", "storage", gw->blobs->ops->name, "ok", 1));
}

static int gateway_ready(void *ctx, char *why, size_t whylen)
{
    struct gateway *gw = ctx;
    if (blobs_ping(gw->blobs) != BLOB_OK) {
        snprintf(why, whylen, "file storage (%s) does not answer", gw->blobs->ops->name);
        return -1;
    }
    if (jobs_ping(gw->jobs) != JOBS_OK) {
        snprintf(why, whylen, "the jobs database (%s) does not answer", gw->jobs->ops->name);
        return -1;
    }
    if (queue_ping(gw->queue) != QUEUE_OK) {
        snprintf(why, whylen, "the queue (%s) does not answer", gw->queue->ops->name);
        return -1;
    }
    return 0;
}

static void write_metrics(FILE *out, void *ctx)
{
    struct gateway *gw = ctx;
    static const char *const names[UPLOAD_OUTCOMES] = {"accepted", "refused", "unavailable",
                                                       "aborted"};
    fprintf(out, "# HELP vid2mp3_uploads_total Uploads by outcome.\n"
                 "# TYPE vid2mp3_uploads_total counter\n");
    for (int i = 0; i < UPLOAD_OUTCOMES; i++)
        fprintf(out, "vid2mp3_uploads_total{outcome=\"%s\"} %llu\n", names[i],
                (unsigned long long)atomic_load(&gw->uploads[i]));
    fprintf(out,
            "# HELP vid2mp3_upload_bytes_total Video bytes stored by accepted uploads.\n"
            "# TYPE vid2mp3_upload_bytes_total counter\n"
            "vid2mp3_upload_bytes_total %llu\n"
            "# HELP vid2mp3_download_bytes_total MP3 bytes sent.\n"
            "# TYPE vid2mp3_download_bytes_total counter\n"
            "vid2mp3_download_bytes_total %llu\n",
            (unsigned long long)atomic_load(&gw->upload_bytes),
            (unsigned long long)atomic_load(&gw->download_bytes));
}

struct gateway *gateway_new(const struct config *cfg, const struct gateway_deps *deps, char *err,
                            size_t errlen)
{
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (gw == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gw->cfg = cfg;
    gw->blobs = deps->blobs;
    gw->jobs = deps->jobs;
    gw->queue = deps->queue;
    gw->login = deps->login;
    gw->login_ctx = deps->login_ctx;
    if (deps->jwt_secret != NULL) {
        gw->secret = strdup(deps->jwt_secret);
        if (gw->secret == NULL) {
            snprintf(err, errlen, "out of memory");
            gateway_free(gw);
            return NULL;
        }
        gw->keys.secret = (const unsigned char *)gw->secret;
        gw->keys.secret_len = strlen(gw->secret);
        gw->keys.issuer = cfg->jwt_issuer;
        gw->keys.ttl = cfg->jwt_ttl;
    }
    gw->auth = authclient_new(cfg->auth_svc_address, err, errlen);
    if (gw->auth == NULL) {
        gateway_free(gw);
        return NULL;
    }
    int rc = queue_declare(gw->queue, cfg->video_queue);
    if (rc != QUEUE_OK && rc != QUEUE_EUNAVAIL) {
        snprintf(err, errlen, "cannot declare queue %s: %s", cfg->video_queue, queue_strerror(rc));
        gateway_free(gw);
        return NULL;
    }
    metrics_register(write_metrics, gw);
    return gw;
}

void gateway_free(struct gateway *gw)
{
    if (gw == NULL)
        return;
    metrics_unregister(gw);
    authclient_free(gw->auth);
    if (gw->secret != NULL) {
        sodium_memzero(gw->secret, strlen(gw->secret));
        free(gw->secret);
    }
    free(gw);
}

size_t gateway_routes(const struct config *cfg, struct http_route *out, size_t max)
{
    const struct http_route routes[] = {
        {"POST", "/login", handle_login, LOGIN_BODY_MAX, NULL},
        {"POST", "/upload", gw_handle_upload, (size_t)cfg->max_upload_bytes + FORM_OVERHEAD,
         &gw_upload_stream},
        {"GET", "/download", gw_handle_download, 0, NULL},
        {"POST", "/download-session", gw_handle_download_session, 0, NULL},
        {"DELETE", "/download-session", gw_handle_download_session, 0, NULL},
        {"GET", "/jobs", gw_handle_jobs, 0, NULL},
        {"GET", "/jobs/events", gw_handle_events, 0, NULL}, /* before /jobs/:id */
        {"GET", "/jobs/:id", gw_handle_job, 0, NULL},
        {"GET", "/check-mongo", handle_check, 0, NULL},
        {"GET", "/openapi.json", gw_handle_web, 0, NULL},
        {"GET", "/", gw_handle_web, 0, NULL},
        {"GET", "/app.js", gw_handle_web, 0, NULL},
        {"GET", "/app.css", gw_handle_web, 0, NULL},
    };
    size_t n = sizeof(routes) / sizeof(routes[0]);
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = routes[i];
    return n;
}

struct http_server *gateway_serve(struct gateway *gw, const struct config *cfg, int port, char *err,
                                  size_t errlen)
{
    struct http_route routes[GATEWAY_ROUTES_MAX];
    size_t nroutes = gateway_routes(cfg, routes, GATEWAY_ROUTES_MAX);
    struct http_server_opts opts = {
        .svc = "gateway",
        .bind_address = cfg->bind_address,
        .port = port >= 0 ? port : (int)cfg->gateway_port,
        .routes = routes,
        .nroutes = nroutes,
        .trusted_proxies = cfg->trusted_proxies,
        .ctx = gw,
        .ready = gateway_ready,
        .idle_timeout = (int)cfg->http_idle_timeout,
    };
    return http_server_start(&opts, err, errlen);
}
