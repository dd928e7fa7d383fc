/*
 * upload: POST /upload, streamed. The multipart body goes through the form
 * parser piece by piece; the file part's first bytes are held back until
 * the format probe has seen them, then everything flows straight into a
 * blob upload stream. Memory per upload: the probe buffer and the form
 * parser's buffer, whatever the file's size.
 *
 * An upload ends in exactly one of: 202 with the video committed, a job
 * recorded and its message confirmed by the queue; or an error with
 * nothing left behind (the blob aborted or removed, the job removed).
 */
#include "gateway/gw.h"

#include "core/form.h"
#include "core/log.h"
#include "core/utf8.h"
#include "gateway/probe.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIELD_VALUE_MAX 15 /* bytes of a bitrate or quality value */

/* MPEG-1 Layer III bitrates LAME encodes at constant bitrate. */
static const int cbr_rates[] = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320};

enum part_kind { PART_NONE, PART_FILE, PART_BITRATE, PART_QUALITY, PART_SKIP };

struct upload {
    struct gateway *gw;
    struct token_claims who;
    struct form *form;
    enum part_kind part;
    int parts; /* parts seen */
    int files; /* file parts seen */
    char filename[BLOB_NAME_MAX + 1];
    char media[64];      /* the probed container format */
    unsigned char *head; /* the file's first bytes, until the probe has run */
    size_t head_len;
    struct blob_writer *writer; /* open once the probe has passed */
    unsigned long long file_bytes;
    char bitrate[FIELD_VALUE_MAX + 1], quality[FIELD_VALUE_MAX + 1];
    size_t bitrate_len, quality_len;
    bool has_bitrate, has_quality, value_too_long;
    /* the first error: replied at the first chance */
    unsigned status;
    char code[40];
    char message[300];
    bool retry;
    bool finished; /* the handler ran to a verdict */
};

static void fail(struct upload *u, unsigned status, const char *code, const char *message)
{
    if (u->status != 0)
        return;
    u->status = status;
    snprintf(u->code, sizeof(u->code), "%s", code);
    snprintf(u->message, sizeof(u->message), "%s", message);
    u->retry = status == 503;
}

static void fail_blob(struct upload *u, int rc)
{
    if (rc == BLOB_EUNAVAIL)
        fail(u, 503, "storage_unavailable", "file storage is unavailable; try again shortly");
    else
        fail(u, 500, "internal_error", "file storage failed");
    log_warn("upload: blob store failed", json_pack("{s:s}", "reason", blobs_strerror(rc)));
}

static void count(struct upload *u, enum upload_outcome o)
{
    atomic_fetch_add(&u->gw->uploads[o], 1);
}

/* The client's file name reduced to a safe display name: the last path
 * component, valid UTF-8, no control characters, at most BLOB_NAME_MAX
 * bytes; "video" when nothing is left. */
static void clean_filename(const char *given, char *out, size_t outlen)
{
    const char *base = given;
    for (const char *p = given; *p != '\0'; p++) {
        if (*p == '/' || *p == '\\')
            base = p + 1;
    }
    char tmp[BLOB_NAME_MAX * 4 + 1];
    size_t n = 0;
    for (const char *p = base; *p != '\0' && n < sizeof(tmp) - 1; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != 0x7f)
            tmp[n++] = (char)c;
    }
    tmp[n] = '\0';
    utf8_clean(tmp, out, outlen); /* whole characters only, within outlen */
    if (out[0] == '\0' || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        snprintf(out, outlen, "video");
}

/* Runs the probe on the held-back head and opens the blob. 0, or -1 with
 * the upload failed. */
static int start_blob(struct upload *u)
{
    if (u->head_len == 0) {
        fail(u, 415, "empty_file", "the uploaded file is empty");
        return -1;
    }
    if (probe_media(u->head, u->head_len, u->media, sizeof(u->media)) != 0) {
        fail(u, 415, "unsupported_media",
             "the file is not a video or audio file that can be converted (its content is "
             "not a known media container)");
        return -1;
    }
    struct blob_meta meta;
    memset(&meta, 0, sizeof(meta));
    snprintf(meta.owner, sizeof(meta.owner), "%s", u->who.sub);
    snprintf(meta.filename, sizeof(meta.filename), "%s", u->filename);
    snprintf(meta.content_type, sizeof(meta.content_type), "application/octet-stream");
    int rc = blobs_open_write(u->gw->blobs, BLOB_VIDEOS, &meta, &u->writer);
    if (rc == BLOB_OK)
        rc = blob_write(u->writer, u->head, u->head_len);
    free(u->head);
    u->head = NULL;
    if (rc != BLOB_OK) {
        fail_blob(u, rc);
        return -1;
    }
    return 0;
}

static int file_data(struct upload *u, const char *data, size_t len)
{
    if (len > (unsigned long long)u->gw->cfg->max_upload_bytes - u->file_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the file is larger than the %ld bytes allowed",
                 u->gw->cfg->max_upload_bytes);
        fail(u, 413, "file_too_large", msg);
        return -1;
    }
    u->file_bytes += len;
    if (u->writer == NULL) {
        size_t take = PROBE_BYTES - u->head_len;
        if (take > len)
            take = len;
        memcpy(u->head + u->head_len, data, take);
        u->head_len += take;
        data += take;
        len -= take;
        if (u->head_len < PROBE_BYTES)
            return 0;
        if (start_blob(u) != 0)
            return -1;
    }
    if (len == 0)
        return 0;
    int rc = blob_write(u->writer, data, len);
    if (rc != BLOB_OK) {
        fail_blob(u, rc);
        return -1;
    }
    return 0;
}

static int start_part(struct upload *u, const char *field, const char *filename)
{
    char msg[200];
    char shown[64];
    utf8_clean(field, shown, sizeof(shown));
    if (strcmp(field, "file") == 0) {
        if (filename == NULL) {
            fail(u, 400, "invalid_file_field",
                 "the field \"file\" must be a file (Content-Disposition with a filename)");
            return -1;
        }
        if (++u->files > 1) {
            fail(u, 400, "too_many_files", "send exactly one file per upload");
            return -1;
        }
        clean_filename(filename, u->filename, sizeof(u->filename));
        u->head = malloc(PROBE_BYTES);
        if (u->head == NULL) {
            fail(u, 500, "internal_error", "out of memory");
            return -1;
        }
        u->part = PART_FILE;
        return 0;
    }
    if (filename != NULL) {
        snprintf(msg, sizeof(msg), "the file must be sent in the field named \"file\", not \"%s\"",
                 shown);
        fail(u, 400, "wrong_field", msg);
        return -1;
    }
    if (strcmp(field, "bitrate") == 0 || strcmp(field, "quality") == 0) {
        bool br = field[0] == 'b';
        if (br ? u->has_bitrate : u->has_quality) {
            snprintf(msg, sizeof(msg), "the field \"%s\" is given twice", field);
            fail(u, 400, "invalid_options", msg);
            return -1;
        }
        *(br ? &u->has_bitrate : &u->has_quality) = true;
        u->part = br ? PART_BITRATE : PART_QUALITY;
        return 0;
    }
    snprintf(msg, sizeof(msg), "unknown form field \"%s\": expected file, bitrate or quality",
             shown);
    fail(u, 400, "unknown_field", msg);
    return -1;
}

static int value_data(char *buf, size_t *used, const char *data, size_t len, bool *too_long)
{
    if (len > FIELD_VALUE_MAX - *used) {
        *too_long = true;
        return 0;
    }
    memcpy(buf + *used, data, len);
    *used += len;
    buf[*used] = '\0';
    return 0;
}

static int on_part(void *cls, const char *field, const char *filename, const char *content_type,
                   uint64_t off, const char *data, size_t len)
{
    (void)content_type;
    struct upload *u = cls;
    if (off == 0) {
        u->parts++;
        if (start_part(u, field, filename) != 0)
            return -1;
    }
    switch (u->part) {
    case PART_FILE:
        return file_data(u, data, len);
    case PART_BITRATE:
        return value_data(u->bitrate, &u->bitrate_len, data, len, &u->value_too_long);
    case PART_QUALITY:
        return value_data(u->quality, &u->quality_len, data, len, &u->value_too_long);
    default:
        return 0;
    }
}

/* Parses a decimal integer of the whole text. */
static int parse_int(const char *s, long *out)
{
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    long v = strtol(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Validates bitrate/quality into the job's options JSON text. */
static int make_options(struct upload *u, char *out, size_t outlen)
{
    if (u->value_too_long) {
        fail(u, 400, "invalid_options", "bitrate and quality are short numbers");
        return -1;
    }
    if (u->has_bitrate && u->has_quality) {
        fail(u, 400, "invalid_options", "give bitrate or quality, not both");
        return -1;
    }
    long v = 0;
    if (u->has_bitrate) {
        bool ok = parse_int(u->bitrate, &v) == 0;
        size_t i = 0;
        for (; ok && i < sizeof(cbr_rates) / sizeof(cbr_rates[0]); i++) {
            if (cbr_rates[i] == v)
                break;
        }
        if (!ok || i == sizeof(cbr_rates) / sizeof(cbr_rates[0])) {
            fail(u, 400, "invalid_bitrate",
                 "bitrate must be one of 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, "
                 "256, 320 (kbit/s)");
            return -1;
        }
        snprintf(out, outlen, "{\"bitrate\":%ld}", v);
    } else if (u->has_quality) {
        if (parse_int(u->quality, &v) != 0 || v < 0 || v > 9) {
            fail(u, 400, "invalid_quality", "quality must be a whole number from 0 (best) to 9");
            return -1;
        }
        snprintf(out, outlen, "{\"quality\":%ld}", v);
    } else {
        snprintf(out, outlen, "{}");
    }
    return 0;
}

/* Undoing an upload that will be refused. A video that cannot be removed
 * is logged for `vid2mp3 gc`-style cleanup by hand; a job that cannot be
 * removed is failed instead, so it never looks queued. */
static void undo_blob(struct gateway *gw, const char *fid)
{
    int rc = blobs_remove(gw->blobs, BLOB_VIDEOS, fid);
    if (rc != BLOB_OK && rc != BLOB_ENOTFOUND)
        log_error("upload refused but its video could not be removed",
                  json_pack("{s:s, s:s}", "video_fid", fid, "reason", blobs_strerror(rc)));
}

static void undo_job(struct gateway *gw, const char *job_id)
{
    int rc = jobs_remove(gw->jobs, job_id);
    if (rc == JOBS_OK || rc == JOBS_ENOTFOUND)
        return;
    struct job_update fail_it = {.from = JOB_FROM(JOB_QUEUED),
                                 .set = JOB_SET_STATUS | JOB_SET_ERROR,
                                 .status = JOB_FAILED,
                                 .error = "the upload could not be queued"};
    int frc = jobs_update(gw->jobs, job_id, &fail_it);
    log_error("upload refused but its job could not be removed",
              json_pack("{s:s, s:s, s:b}", "job_id", job_id, "reason", jobs_strerror(rc),
                        "marked_failed", frc == JOBS_OK));
}

/* Commit, record, publish; undoes what it did when a later step fails. */
static void accept_upload(struct upload *u, struct http_req *req, const char *options)
{
    struct gateway *gw = u->gw;
    struct blob_meta meta;
    int rc = blob_commit(u->writer, &meta);
    u->writer = NULL;
    if (rc != BLOB_OK) {
        fail_blob(u, rc);
        return;
    }
    struct job j;
    memset(&j, 0, sizeof(j));
    blob_id_new(j.id);
    snprintf(j.owner, sizeof(j.owner), "%s", u->who.sub);
    snprintf(j.video_fid, sizeof(j.video_fid), "%s", meta.id);
    snprintf(j.filename, sizeof(j.filename), "%s", u->filename);
    snprintf(j.options, sizeof(j.options), "%s", options);
    snprintf(j.request_id, sizeof(j.request_id), "%s", http_req_id(req));
    int jrc = jobs_create(gw->jobs, &j);
    if (jrc != JOBS_OK) {
        undo_blob(gw, meta.id);
        log_warn("upload: job not recorded", json_pack("{s:s}", "reason", jobs_strerror(jrc)));
        if (jrc == JOBS_EUNAVAIL)
            fail(u, 503, "storage_unavailable",
                 "the jobs database is unavailable; try again shortly");
        else
            fail(u, 500, "internal_error", "the job could not be recorded");
        return;
    }
    json_t *msg = json_pack("{s:s, s:s, s:n, s:s, s:s, s:o, s:s}", "job_id", j.id, "video_fid",
                            j.video_fid, "mp3_fid", "username", j.owner, "filename", j.filename,
                            "options", json_loads(options, 0, NULL), "request_id", j.request_id);
    char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    int qrc = text != NULL ? queue_publish(gw->queue, gw->cfg->video_queue, text, strlen(text),
                                           http_req_id(req))
                           : QUEUE_EINTERNAL;
    free(text);
    if (qrc != QUEUE_OK) {
        /* Refused, so nothing may stay behind. */
        undo_job(gw, j.id);
        undo_blob(gw, meta.id);
        log_warn("upload: job not queued", json_pack("{s:s}", "reason", queue_strerror(qrc)));
        fail(u, 503, "queue_unavailable",
             "the job queue is unavailable; the upload was not kept, try again shortly");
        return;
    }
    atomic_fetch_add(&gw->upload_bytes, (uint_fast64_t)meta.length);
    count(u, UPLOAD_ACCEPTED);
    u->finished = true;
    log_info("upload accepted",
             json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "job_id", j.id, "video_fid", meta.id,
                       "owner", j.owner, "bytes", (json_int_t)meta.length, "format", u->media,
                       "sha256", meta.sha256));
    http_reply_json(
        req, 202,
        json_pack("{s:s, s:s, s:s}", "job_id", j.id, "video_fid", meta.id, "status", "queued"));
}

static void reply_failure(struct upload *u, struct http_req *req)
{
    if (u->retry)
        http_reply_error_retry(req, u->status, u->code, u->message, RETRY_UNAVAILABLE);
    else
        http_reply_error(req, u->status, u->code, u->message);
    if (http_req_replied(req) && !u->finished) {
        u->finished = true;
        count(u, u->status == 503 ? UPLOAD_UNAVAILABLE : UPLOAD_REFUSED);
    }
}

static void upload_begin(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    struct token_claims who;
    if (gw_caller(gw, req, &who) != 0)
        return;
    if (gw->cfg->upload_admin_only && !who.admin) {
        http_reply_error(req, 403, "forbidden", "uploads are limited to administrators");
        return;
    }
    if (!http_req_content_type_is(req, "multipart/form-data")) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send the video as multipart/form-data with a field named \"file\"");
        return;
    }
    /* Refuse before the body is sent when the job could not be queued. */
    int qrc = queue_ping(gw->queue);
    if (qrc != QUEUE_OK) {
        http_reply_error_retry(req, 503, "queue_unavailable",
                               "the job queue is unavailable; try again shortly",
                               RETRY_UNAVAILABLE);
        return;
    }
    struct upload *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        http_reply_error(req, 500, "internal_error", "out of memory");
        return;
    }
    u->gw = gw;
    u->who = who;
    u->form = form_new(req, on_part, u);
    if (u->form == NULL) {
        free(u);
        http_reply_error(req, 400, "malformed_multipart",
                         "the multipart body has no boundary in its Content-Type");
        return;
    }
    http_req_set_state(req, u);
}

static int upload_data(struct http_req *req, void *ctx, const char *data, size_t len)
{
    (void)ctx;
    struct upload *u = http_req_state(req);
    if (u == NULL || u->status != 0)
        return -1;
    if (form_feed(u->form, data, len) != 0) {
        fail(u, 400, "malformed_multipart", "the multipart body is malformed");
        return -1;
    }
    return 0;
}

void gw_handle_upload(struct http_req *req, void *ctx)
{
    (void)ctx;
    struct upload *u = http_req_state(req);
    if (u == NULL) {
        http_reply_error(req, 500, "internal_error", "the upload was not set up");
        return;
    }
    if (u->status == 0 && !u->finished) {
        int complete = form_finish(u->form);
        u->form = NULL;
        char options[JOB_OPTIONS_MAX + 1];
        if (complete != 0 || u->parts == 0)
            fail(u, 400, "malformed_multipart",
                 u->parts == 0 ? "the multipart body has no parts: is the boundary right?"
                               : "the multipart body is malformed or cut short (no closing "
                                 "boundary)");
        else if (u->files == 0)
            fail(u, 400, "missing_file", "send the video in a form field named \"file\"");
        else if (make_options(u, options, sizeof(options)) == 0 &&
                 (u->writer != NULL || start_blob(u) == 0))
            accept_upload(u, req, options);
    }
    if (u->status != 0)
        reply_failure(u, req);
}

static void upload_end(struct http_req *req, void *ctx, int completed)
{
    (void)ctx;
    struct upload *u = http_req_state(req);
    if (u == NULL)
        return;
    http_req_set_state(req, NULL);
    if (u->writer != NULL) {
        blob_abort(u->writer);
        u->writer = NULL;
    }
    if (!u->finished) {
        count(u, UPLOAD_ABORTED);
        log_warn("upload abandoned", json_pack("{s:I, s:b}", "bytes_received",
                                               (json_int_t)u->file_bytes, "completed", completed));
    }
    if (u->form != NULL)
        form_finish(u->form);
    free(u->head);
    free(u);
}

const struct http_stream_ops gw_upload_stream = {upload_begin, upload_data, upload_end};
