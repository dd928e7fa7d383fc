/*
 * download: GET /download?fid=ID (and HEAD), the MP3 streamed from blob
 * storage, one range at a time. Only the owner or an administrator gets
 * the file; to anyone else it does not exist.
 */
#include "gateway/gw.h"

#include "core/log.h"
#include "gateway/range.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct download {
    struct gateway *gw;
    struct blob_reader *reader;
    unsigned long long first; /* offset of the body's first byte in the file */
};

static long read_part(void *cls, unsigned long long pos, char *buf, size_t max)
{
    struct download *d = cls;
    (void)pos; /* libmicrohttpd reads in order from the seek done before */
    long n = blob_read(d->reader, buf, max);
    if (n > 0)
        atomic_fetch_add(&d->gw->download_bytes, (uint_fast64_t)n);
    else
        log_warn("download: blob read failed",
                 json_pack("{s:s}", "reason",
                           n == 0 ? "file shorter than recorded" : blobs_strerror((int)n)));
    return n > 0 ? n : -1;
}

static void download_done(void *cls)
{
    struct download *d = cls;
    blob_close(d->reader);
    free(d);
}

/* The download's file name: the stored name with its extension replaced
 * by .mp3. */
static void mp3_name(const char *stored, char *out, size_t outlen)
{
    char base[BLOB_NAME_MAX + 1];
    snprintf(base, sizeof(base), "%s", stored[0] != '\0' ? stored : "audio");
    char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base)
        *dot = '\0';
    snprintf(out, outlen, "%s.mp3", base);
}

/* Content-Disposition with an ASCII fallback and, for other names, the
 * UTF-8 name percent-encoded (RFC 6266, RFC 8187). */
static void disposition(const char *name, char *out, size_t outlen)
{
    char ascii[BLOB_NAME_MAX + 8];
    char encoded[(BLOB_NAME_MAX + 8) * 3 + 1];
    bool plain = true;
    size_t a = 0, e = 0;
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        bool printable = *p >= 0x20 && *p < 0x7f;
        plain = plain && printable && *p != '"' && *p != '\\' && *p != '%';
        ascii[a++] = printable && *p != '"' && *p != '\\' ? (char)*p : '_';
        bool attr = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p) != NULL;
        if (attr) {
            encoded[e++] = (char)*p;
        } else {
            encoded[e++] = '%';
            encoded[e++] = hex[*p >> 4];
            encoded[e++] = hex[*p & 15];
        }
    }
    ascii[a] = '\0';
    encoded[e] = '\0';
    if (plain)
        snprintf(out, outlen, "attachment; filename=\"%s\"", ascii);
    else
        snprintf(out, outlen, "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, encoded);
}

static void not_found(struct http_req *req)
{
    http_reply_error(req, 404, "not_found", "no such file");
}

void gw_handle_download(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    struct token_claims who;
    if (gw_caller_link(gw, req, &who) != 0)
        return;
    const char *fid = http_req_query(req, "fid");
    if (fid == NULL || fid[0] == '\0') {
        http_reply_error(req, 400, "missing_fid", "give the file id: /download?fid=ID");
        return;
    }
    if (!blob_id_valid(fid)) {
        http_reply_error(req, 400, "invalid_fid", "a file id is 24 lower-case hex digits");
        return;
    }
    struct blob_meta meta;
    int rc = blobs_stat(gw->blobs, BLOB_MP3S, fid, &meta);
    if (rc == BLOB_ENOTFOUND || (rc == BLOB_OK && !who.admin && strcmp(meta.owner, who.sub) != 0)) {
        not_found(req);
        return;
    }
    if (rc != BLOB_OK) {
        gw_reply_blob_error(req, rc);
        return;
    }

    char etag[40];
    snprintf(etag, sizeof(etag), "\"%.32s\"", meta.sha256);
    char name[BLOB_NAME_MAX + 8], disp[1200];
    mp3_name(meta.filename, name, sizeof(name));
    disposition(name, disp, sizeof(disp));
    http_reply_header(req, "ETag", etag);
    http_reply_header(req, "Accept-Ranges", "bytes");
    http_reply_header(req, "Cache-Control", "private, no-cache");
    if (gw_etag_matches(http_req_header(req, "If-None-Match"), etag)) {
        http_reply_text(req, 304, "audio/mpeg", "", 0);
        return;
    }
    http_reply_header(req, "Content-Disposition", disp);

    uint64_t size = (uint64_t)meta.length, first = 0, last = size > 0 ? size - 1 : 0;
    const char *range = http_req_header(req, "Range");
    const char *if_range = http_req_header(req, "If-Range");
    if (if_range != NULL && strcmp(if_range, etag) != 0)
        range = NULL; /* the client's copy is another version: send it all */
    enum range_result rr = range_parse(range, size, &first, &last);
    char cr[96];
    if (rr == RANGE_UNSATISFIABLE) {
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
        http_reply_header(req, "Content-Range", cr);
        http_reply_error(req, 416, "range_not_satisfiable",
                         "the requested range is outside the file");
        return;
    }
    unsigned status = 200;
    uint64_t length = size;
    if (rr == RANGE_OK) {
        status = 206;
        length = last - first + 1;
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
        http_reply_header(req, "Content-Range", cr);
    }

    struct download *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        http_reply_error(req, 500, "internal_error", "out of memory");
        return;
    }
    d->gw = gw;
    d->first = first;
    rc = blobs_open_read(gw->blobs, BLOB_MP3S, fid, &d->reader);
    if (rc == BLOB_OK && first > 0) {
        int64_t at = blob_seek(d->reader, (int64_t)first, SEEK_SET);
        rc = at < 0 ? (int)at : BLOB_OK;
    }
    if (rc != BLOB_OK) {
        download_done(d);
        if (rc == BLOB_ENOTFOUND)
            not_found(req);
        else
            gw_reply_blob_error(req, rc);
        return;
    }
    http_reply_stream(req, status, "audio/mpeg", length, read_part, d, download_done);
}

/*
 * POST /download-session: the caller's token (Authorization: Bearer) as an
 * HttpOnly, SameSite=Strict cookie for the path /download alone, so the
 * web page's <audio> and download links reach their MP3s without a token
 * in the URL (where it would stay in the browser's history and download
 * list, and in proxies' logs). It is a session cookie, and the token in
 * it expires as usual. DELETE clears it (no token needed: logging out).
 */
void gw_handle_download_session(struct http_req *req, void *ctx)
{
    struct gateway *gw = ctx;
    /* Secure when the client reached a proxy over HTTPS (it can only make
     * the cookie stricter) */
    const char *proto = http_req_header(req, "X-Forwarded-Proto");
    const char *secure = proto != NULL && strcasecmp(proto, "https") == 0 ? "; Secure" : "";
    char cookie[TOKEN_MAX_LEN + 160];
    if (strcmp(http_req_method(req), "DELETE") == 0) {
        snprintf(cookie, sizeof(cookie),
                 GW_DOWNLOAD_COOKIE "=; Path=/download; HttpOnly; SameSite=Strict; Max-Age=0%s",
                 secure);
        http_reply_header(req, "Set-Cookie", cookie);
        http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    struct token_claims who;
    if (gw_caller(gw, req, &who) != 0)
        return;
    const char *tok = token_bearer(http_req_header(req, "Authorization"));
    long long left = who.exp - (long long)time(NULL);
    /* no Max-Age: the cookie goes when the browser closes, or before with
     * the token inside it (the page's token lives in one tab's
     * sessionStorage; a day-long cookie would outlive it) */
    snprintf(cookie, sizeof(cookie),
             GW_DOWNLOAD_COOKIE "=%s; Path=/download; HttpOnly; SameSite=Strict%s", tok, secure);
    if (strlen(tok) > TOKEN_MAX_LEN || http_reply_header(req, "Set-Cookie", cookie) != 0) {
        http_reply_error(req, 400, "invalid_request", "the token cannot be kept in a cookie");
        return;
    }
    http_reply_json(req, 200, json_pack("{s:b, s:I}", "ok", 1, "expires_in", (json_int_t)left));
}
