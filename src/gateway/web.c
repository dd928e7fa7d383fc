/*
 * web: the files the gateway serves from the binary (DESIGN §7): the web
 * page at / with its script and style sheet, and the API's description at
 * /openapi.json. cmake/embed.cmake builds them in, with their SHA-256.
 *
 * Every answer may be cached but is revalidated (no-cache, with an ETag
 * from the content, so a new binary is seen at once), and carries a
 * Content-Security-Policy that allows only this origin's script, style,
 * media and requests: no inline script or style, no framing.
 */
#include "gateway/gw.h"

#include "core/embedded.h"

#include <string.h>

#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "                  \
    "frame-ancestors 'none'"

static const struct web_file {
    const char *path; /* the route */
    const char *name; /* in the repository, as embedded */
    const char *type;
} files[] = {
    {"/", "web/index.html", "text/html; charset=utf-8"},
    {"/app.js", "web/app.js", "text/javascript; charset=utf-8"},
    {"/app.css", "web/app.css", "text/css; charset=utf-8"},
    {"/openapi.json", "docs/openapi.json", "application/json"},
};

bool gw_etag_matches(const char *inm, const char *etag)
{
    return inm != NULL && (strstr(inm, etag) != NULL || strcmp(inm, "*") == 0);
}

void gw_handle_web(struct http_req *req, void *ctx)
{
    (void)ctx;
    const char *path = http_req_path(req);
    const struct web_file *w = NULL;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && w == NULL; i++) {
        if (strcmp(files[i].path, path) == 0)
            w = &files[i];
    }
    const struct embedded_file *f = w != NULL ? embedded_find(w->name) : NULL;
    if (f == NULL) {
        http_reply_error(req, 500, "internal_error", "this file is not built in");
        return;
    }
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%.32s\"", f->sha256);
    http_reply_header(req, "ETag", etag);
    http_reply_header(req, "Cache-Control", "no-cache");
    http_reply_header(req, "Content-Security-Policy", CSP);
    http_reply_header(req, "Referrer-Policy", "no-referrer");
    if (gw_etag_matches(http_req_header(req, "If-None-Match"), etag)) {
        http_reply_text(req, 304, w->type, "", 0);
        return;
    }
    http_reply_text(req, 200, w->type, (const char *)f->data, f->len);
}
