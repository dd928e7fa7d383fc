/* authclient: see authclient.h. */
#include "gateway/authclient.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REPLY_MAX (64 * 1024)    /* larger auth replies are cut off: none is this big */
#define CONNECT_TIMEOUT_MS 2000L /* a down service fails fast */
#define TOTAL_TIMEOUT_MS 15000L  /* /login may wait for a password hash slot */

struct authclient {
    char base[512]; /* no trailing slash */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct authclient *authclient_new(const char *address, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    struct authclient *ac = calloc(1, sizeof(*ac));
    if (ac == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    bool url = strncmp(address, "http://", 7) == 0 || strncmp(address, "https://", 8) == 0;
    int n = snprintf(ac->base, sizeof(ac->base), "%s%s", url ? "" : "http://", address);
    if (n <= 0 || (size_t)n >= sizeof(ac->base)) {
        snprintf(err, errlen, "AUTH_SVC_ADDRESS: too long");
        free(ac);
        return NULL;
    }
    size_t len = strlen(ac->base);
    while (len > 0 && ac->base[len - 1] == '/')
        ac->base[--len] = '\0';
    return ac;
}

void authclient_free(struct authclient *ac)
{
    free(ac);
}

void auth_reply_free(struct auth_reply *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
    struct auth_reply *r = cls;
    size_t len = size * n;
    if (r->len + len > REPLY_MAX)
        return 0; /* aborts the transfer */
    char *nb = realloc(r->body, r->len + len + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, data, len);
    r->body = nb;
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* Copies header "Name: value" into out when its name is name. */
static void take_header(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return;
    const char *v = line + n + 1;
    size_t vlen = len - n - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= outlen)
        vlen = outlen - 1;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
}

static size_t on_header(char *data, size_t size, size_t n, void *cls)
{
    struct auth_reply *r = cls;
    size_t len = size * n;
    take_header(data, len, "Content-Type", r->ctype, sizeof(r->ctype));
    take_header(data, len, "Retry-After", r->retry_after, sizeof(r->retry_after));
    take_header(data, len, "WWW-Authenticate", r->www_authenticate, sizeof(r->www_authenticate));
    return len;
}

/* Appends "Name: value" to list unless value is NULL; "" appends "Name:",
 * which stops curl from sending one of its own. Header text was checked
 * by the HTTP layer (no CR or LF). */
static struct curl_slist *add(struct curl_slist *list, const char *name, const char *value)
{
    if (value == NULL || list == NULL)
        return list;
    char line[TOKEN_MAX_LEN + 64];
    snprintf(line, sizeof(line), "%s:%s%s", name, value[0] != '\0' ? " " : "", value);
    struct curl_slist *l = curl_slist_append(list, line);
    if (l == NULL)
        curl_slist_free_all(list);
    return l;
}

int authclient_post(struct authclient *ac, const char *path, const char *ctype,
                    const char *authorization, const char *body, size_t len, const char *request_id,
                    const char *client_ip, struct auth_reply *out)
{
    memset(out, 0, sizeof(*out));
    char url[600];
    snprintf(url, sizeof(url), "%s%s", ac->base, path);
    CURL *c = curl_easy_init();
    /* "Expect:" stops curl from waiting for a 100 Continue on larger bodies. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    /* the client's Content-Type, or none ("Content-Type:" stops curl from
     * adding its form type): the auth service tells a login without
     * credentials (401) from a body of the wrong type (415) by it */
    h = add(h, "Content-Type", ctype != NULL ? ctype : "");
    h = add(h, "Authorization", authorization);
    h = add(h, "X-Request-Id", request_id);
    h = add(h, "X-Forwarded-For", client_ip);
    if (c == NULL || h == NULL) {
        curl_slist_free_all(h);
        if (c != NULL)
            curl_easy_cleanup(c);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body != NULL ? len : 0));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || out->status == 0) {
        auth_reply_free(out);
        out->status = 0;
        return -1;
    }
    if (out->body == NULL)
        out->body = strdup("");
    return out->body != NULL ? 0 : -1;
}

int authclient_validate(struct authclient *ac, const char *token, const char *request_id,
                        struct token_claims *claims)
{
    char authz[TOKEN_MAX_LEN + 16];
    if (strlen(token) > TOKEN_MAX_LEN)
        return AUTHC_INVALID;
    snprintf(authz, sizeof(authz), "Bearer %s", token);
    struct auth_reply r;
    if (authclient_post(ac, "/validate", NULL, authz, NULL, 0, request_id, NULL, &r) != 0)
        return AUTHC_UNAVAIL;
    int result = AUTHC_UNAVAIL;
    if (r.status == 401) {
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        result = code != NULL && strcmp(code, "token_expired") == 0 ? AUTHC_EXPIRED : AUTHC_INVALID;
        json_decref(j);
    } else if (r.status == 200) {
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        const char *sub = json_string_value(json_object_get(j, "sub"));
        json_t *admin = json_object_get(j, "admin");
        if (sub != NULL && strlen(sub) <= TOKEN_SUB_MAX && json_is_boolean(admin)) {
            memset(claims, 0, sizeof(*claims));
            snprintf(claims->sub, sizeof(claims->sub), "%s", sub);
            claims->admin = json_is_true(admin);
            claims->iat = json_integer_value(json_object_get(j, "iat"));
            claims->exp = json_integer_value(json_object_get(j, "exp"));
            result = AUTHC_OK;
        }
        json_decref(j);
    }
    auth_reply_free(&r);
    return result;
}
