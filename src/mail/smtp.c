/*
 * smtp: the SMTP mail backend (mail.h) on libcurl.
 *
 * TLS: smtps:// is TLS from the first byte. smtp:// upgrades with STARTTLS,
 * and unless the host is a loopback address (and SMTP_TLS is not
 * "required"), or SMTP_TLS is "optional", the upgrade is mandatory
 * (CURLUSESSL_ALL): against a server
 * that does not offer it libcurl stops after EHLO, before AUTH, MAIL FROM
 * or a byte of the message. Certificates are always verified (SMTP_CA_FILE
 * adds a private CA).
 *
 * Easy handles are kept in a small pool: a handle keeps its connection
 * open, so back-to-back sends skip the TCP, TLS and AUTH round trips.
 *
 * The conversation is watched through libcurl's debug callback: the last
 * reply (and the command it answered) is what a failure reports and what
 * decides its class (5xx to MAIL FROM, RCPT TO or DATA: permanent;
 * everything else: transient). A send can be abandoned mid-way through
 * the envelope's cancel flag (shutdown).
 */
#include "mail/mail.h"

#include "core/log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 16

struct smtp {
    char *url, *user, *password, *ca_file;
    bool loopback;
    enum mail_tls tls;
    long connect_timeout, timeout;
    pthread_mutex_t lock;
    CURL *idle[POOL_MAX];
    int nidle;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* One send's state for the callbacks. */
struct transfer {
    const char *data;
    size_t len, off;
    const atomic_int *cancel;
    char command[12];           /* the verb of the last command sent: "MAIL", "RCPT" ... */
    char reply[MAIL_REPLY_MAX]; /* the last reply line, except to QUIT */
    int reply_code;
    char reply_to[12]; /* the command that reply answered ("" for the greeting) */
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct transfer *t = arg;
    size_t room = size * nitems, left = t->len - t->off;
    size_t n = left < room ? left : room;
    memcpy(buf, t->data + t->off, n);
    t->off += n;
    return n;
}

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
    (void)h;
    struct transfer *t = arg;
    if (type == CURLINFO_HEADER_OUT) {
        size_t n = 0;
        while (n < size && n < sizeof(t->command) - 1 && data[n] >= 'A' && data[n] <= 'Z') {
            t->command[n] = data[n];
            n++;
        }
        t->command[n] = '\0';
        return 0;
    }
    if (type != CURLINFO_HEADER_IN || size < 3)
        return 0;
    /* The goodbye to QUIT says nothing about how the send went. */
    if (strcmp(t->command, "QUIT") == 0)
        return 0;
    int code = 0;
    if (data[0] >= '2' && data[0] <= '5' && data[1] >= '0' && data[1] <= '9' && data[2] >= '0' &&
        data[2] <= '9')
        code = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');
    /* one line, without its line break; a multi-line reply ("250-...")
     * ends with the line that carries the final code */
    size_t n = size;
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    if (n >= sizeof(t->reply))
        n = sizeof(t->reply) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        t->reply[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    t->reply[n] = '\0';
    t->reply_code = code;
    snprintf(t->reply_to, sizeof(t->reply_to), "%s", t->command);
    return 0;
}

static int progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const struct transfer *t = arg;
    return t->cancel != NULL && atomic_load(t->cancel) ? 1 : 0; /* non-zero aborts the transfer */
}

/* True when the server refused this message for good: a 5xx answering the
 * sender, a recipient or the message itself. A 5xx anywhere else (the
 * greeting, EHLO, AUTH, STARTTLS) is about the server or our settings,
 * and so is 530 ("authentication required"): the message must wait for
 * them to be fixed, not be thrown away. */
static bool refused_for_good(const struct transfer *t)
{
    if (t->reply_code < 500 || t->reply_code > 599 || t->reply_code == 530)
        return false;
    return strcmp(t->reply_to, "MAIL") == 0 || strcmp(t->reply_to, "RCPT") == 0 ||
           strcmp(t->reply_to, "DATA") == 0;
}

static CURL *take_handle(struct smtp *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->nidle > 0)
        h = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->lock);
    return h != NULL ? h : curl_easy_init();
}

static void give_handle(struct smtp *s, CURL *h, bool reusable)
{
    if (reusable) {
        pthread_mutex_lock(&s->lock);
        if (s->nidle < POOL_MAX) {
            s->idle[s->nidle++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (h != NULL)
        curl_easy_cleanup(h);
}

static int smtp_send(void *h, const struct mail_envelope *e, char *reply, size_t replylen)
{
    struct smtp *s = h;
    if (e->len == 0 || strpbrk(e->from, "<>\r\n") != NULL || strpbrk(e->to, "<>\r\n") != NULL) {
        snprintf(reply, replylen, "the message is empty or an address is not usable");
        return MAIL_EINVAL;
    }
    char from[300], to[300];
    if (snprintf(from, sizeof(from), "<%s>", e->from) >= (int)sizeof(from) ||
        snprintf(to, sizeof(to), "<%s>", e->to) >= (int)sizeof(to)) {
        snprintf(reply, replylen, "an address is too long");
        return MAIL_EINVAL;
    }
    CURL *c = take_handle(s);
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    if (c == NULL || rcpt == NULL) {
        curl_slist_free_all(rcpt);
        if (c != NULL)
            curl_easy_cleanup(c);
        snprintf(reply, replylen, "out of memory");
        return MAIL_ETRANSIENT;
    }
    struct transfer t = {.data = e->data, .len = e->len, .cancel = e->cancel};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(c); /* options only: the connection cache stays */
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USE_SSL,
                     mail_tls_mandatory(s->tls, s->loopback) ? (long)CURLUSESSL_ALL
                                                             : (long)CURLUSESSL_TRY);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_file);
    if (s->user != NULL) {
        curl_easy_setopt(c, CURLOPT_USERNAME, s->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->password);
    }
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)e->len);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, s->timeout);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, debug_cb);
    curl_easy_setopt(c, CURLOPT_DEBUGDATA, &t);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 1L); /* feeds debug_cb; nothing is printed */
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(c);
    /* Nothing may point at this stack frame once it returns: the handle may
     * still talk to the server (QUIT) when it is cleaned up later. */
    curl_easy_setopt(c, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, NULL);
    curl_easy_setopt(c, CURLOPT_DEBUGDATA, NULL);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, NULL);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c, CURLOPT_READDATA, NULL);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, NULL);
    curl_slist_free_all(rcpt);
    int result;
    if (rc == CURLE_OK) {
        snprintf(reply, replylen, "%s", t.reply);
        result = MAIL_OK;
    } else {
        const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
        if (t.reply_code >= 400)
            snprintf(reply, replylen, "%s (%s)", t.reply, why);
        else
            snprintf(reply, replylen, "%s", why);
        result = refused_for_good(&t) ? MAIL_EPERMANENT : MAIL_ETRANSIENT;
    }
    give_handle(s, c, rc == CURLE_OK);
    return result;
}

static void smtp_free(void *h)
{
    struct smtp *s = h;
    if (s == NULL)
        return;
    for (int i = 0; i < s->nidle; i++)
        curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    free(s->url);
    free(s->user);
    if (s->password != NULL) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    free(s->ca_file);
    free(s);
}

static const struct mail_ops smtp_ops = {
    .name = "smtp",
    .send = smtp_send,
    .free = smtp_free,
};

bool mail_tls_mandatory(enum mail_tls mode, bool loopback)
{
    switch (mode) {
    case MAIL_TLS_REQUIRED:
        return true;
    case MAIL_TLS_OPTIONAL:
        return false;
    case MAIL_TLS_AUTO:
        break;
    }
    return !loopback;
}

int mail_smtp_url_loopback(const char *url, bool *out, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *host = NULL, *scheme = NULL;
    int rc = -1;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(err, errlen, "SMTP_URL: not a URL with a host");
        goto out;
    }
    if (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0) {
        snprintf(err, errlen, "SMTP_URL: must start with smtp:// or smtps://");
        goto out;
    }
    struct in_addr v4;
    *out = strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
           (inet_pton(AF_INET, host, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127);
    rc = 0;
out:
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

struct mailer *mail_smtp_new(const struct mail_smtp_settings *set, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (v == NULL || (v->features & CURL_VERSION_SSL) == 0) {
        snprintf(err, errlen, "libcurl was built without TLS: SMTP cannot be used safely");
        return NULL;
    }
    struct smtp *s = calloc(1, sizeof(*s));
    struct mailer *m = calloc(1, sizeof(*m));
    if (s == NULL || m == NULL) {
        free(s);
        free(m);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->url = strdup(set->url);
    s->user = set->user != NULL ? strdup(set->user) : NULL;
    s->password = set->user != NULL ? strdup(set->password != NULL ? set->password : "") : NULL;
    s->ca_file = set->ca_file != NULL ? strdup(set->ca_file) : NULL;
    if (s->url == NULL || (set->user != NULL && (s->user == NULL || s->password == NULL)) ||
        (set->ca_file != NULL && s->ca_file == NULL))
        goto oom;
    if (mail_smtp_url_loopback(s->url, &s->loopback, err, errlen) != 0)
        goto fail;
    s->tls = set->tls;
    s->connect_timeout = set->connect_timeout > 0 ? set->connect_timeout : 10;
    s->timeout = set->timeout > 0 ? set->timeout : 30;
    m->ops = &smtp_ops;
    m->h = s;
    return m;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    smtp_free(s);
    free(m);
    return NULL;
}
