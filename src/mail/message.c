/* message: see message.h. */
#include "mail/message.h"

#include "core/strbuf.h"
#include "core/utf8.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Byte caps on the outside values, applied after cleaning. */
#define NAME_MAX_BYTES 200
#define ERROR_MAX_BYTES 500
#define URL_MAX_BYTES 4096
#define FID_MAX_BYTES 256

/* Text bytes per RFC 2047 encoded-word: 39 bytes are 52 base64 characters,
 * so "=?UTF-8?B?...?=" is 64 and even the first line, after "Subject: ",
 * stays within 76. */
#define WORD_BYTES 39

/* Quoted-printable output lines, soft break '=' included (RFC 2045 6.7). */
#define QP_LINE_MAX 76

/* A growing text. A failed allocation sets failed and turns every later
 * append into a no-op, so composing code checks once at the end. */
__attribute__((format(printf, 2, 3))) static void putf(struct strbuf *o, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* Only short fixed-size fields go through here; anything longer is a bug. */
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        o->failed = true;
        return;
    }
    strbuf_put(o, buf, (size_t)n);
}

static void seterr(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* ---- addresses ---- */

static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* RFC 5322 dot-atom of s[0..n). */
static bool dot_atom_valid(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return false;
        } else if (!is_atext((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* "[a.b.c.d]" with four decimal octets 0..255, no leading zeros. */
static bool ipv4_literal_valid(const char *s, size_t n)
{
    if (n < 9 || s[0] != '[' || s[n - 1] != ']')
        return false;
    size_t i = 1;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (s[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n - 1 && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
            return false;
    }
    return i == n - 1;
}

/* Dot-separated labels of letters, digits and '-', 1..63 each, no '-' at
 * either end of a label. */
static bool hostname_valid(const char *s, size_t n)
{
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - label] == '-' || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_ldh((unsigned char)s[i])) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

bool mail_address_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, MAIL_ADDRESS_MAX + 1);
    if (n == 0 || n > MAIL_ADDRESS_MAX)
        return false;
    const char *at = memchr(s, '@', n);
    if (at == NULL)
        return false;
    size_t local = (size_t)(at - s);
    const char *domain = at + 1;
    size_t dlen = n - local - 1;
    if (local > 64 || !dot_atom_valid(s, local) || dlen == 0)
        return false;
    if (domain[0] == '[')
        return ipv4_literal_valid(domain, dlen);
    return hostname_valid(domain, dlen);
}

/* ---- outside text ---- */

/* Bytes of the UTF-8 character starting with lead byte c (valid input). */
static size_t char_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c < 0xE0)
        return 2;
    if (c < 0xF0)
        return 3;
    return 4;
}

/* True for the character at p (l bytes of valid UTF-8) that must not reach
 * a reader: C0 controls, DEL, C1 controls, and the invisible characters that
 * break or reorder a line (U+061C, U+200E/F, U+2028..U+202E, U+2066..U+2069)
 * so a name cannot pretend to be another. */
static bool is_hidden(const unsigned char *p, size_t l)
{
    if (l == 1)
        return p[0] < 0x20 || p[0] == 0x7f;
    if (l == 2)
        return (p[0] == 0xC2 && p[1] <= 0x9F) || (p[0] == 0xD8 && p[1] == 0x9C);
    if (l == 3 && p[0] == 0xE2 && p[1] == 0x80)
        return p[2] == 0x8E || p[2] == 0x8F || (p[2] >= 0xA8 && p[2] <= 0xAE);
    if (l == 3 && p[0] == 0xE2 && p[1] == 0x81)
        return p[2] >= 0xA6 && p[2] <= 0xA9;
    return false;
}

/*
 * A copy of s (NULL reads as "") that is valid UTF-8 (utf8_clean), holds no
 * hidden characters (is_hidden; removed, or made spaces when as_space),
 * has no leading or trailing spaces, and is at most max bytes, cut on a
 * character boundary. NULL when out of memory; caller frees.
 */
static char *clean_text(const char *s, size_t max, bool as_space)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return NULL;
    /* Cleaning first: removing a byte from invalid text could join its
     * neighbours into a new character, a C1 control among them. */
    utf8_clean(s, buf, n + 1);
    unsigned char *p = (unsigned char *)buf;
    size_t r = 0, w = 0;
    while (p[r] != '\0') {
        size_t l = char_len(p[r]);
        if (is_hidden(p + r, l)) {
            if (as_space)
                p[w++] = ' ';
        } else {
            memmove(p + w, p + r, l);
            w += l;
        }
        r += l;
    }
    size_t start = 0;
    while (start < w && p[start] == ' ')
        start++;
    w -= start;
    memmove(p, p + start, w);
    if (w > max) {
        w = max;
        while (w > 0 && (p[w] & 0xC0) == 0x80)
            w--;
    }
    while (w > 0 && p[w - 1] == ' ')
        w--;
    p[w] = '\0';
    return buf;
}

/* The MP3's name: name with a short alphanumeric extension replaced by
 * ".mp3" ("talk.mp4" -> "talk.mp3"), or ".mp3" appended; "audio.mp3" for
 * an empty name. Caller frees; NULL when out of memory. */
static char *mp3_name(const char *name)
{
    size_t n = strlen(name), stem = n;
    const char *dot = strrchr(name, '.');
    if (dot != NULL && dot != name) {
        size_t ext = n - (size_t)(dot - name) - 1;
        bool alnum = ext <= 8;
        for (size_t i = 1; alnum && i <= ext; i++)
            alnum = is_ldh((unsigned char)dot[i]) && dot[i] != '-';
        if (alnum)
            stem = (size_t)(dot - name);
    }
    if (stem == 0) {
        name = "audio";
        stem = 5;
    }
    char *out = malloc(stem + sizeof(".mp3"));
    if (out == NULL)
        return NULL;
    memcpy(out, name, stem);
    memcpy(out + stem, ".mp3", sizeof(".mp3"));
    return out;
}

/* "M:SS" or "H:MM:SS" for a duration in seconds; "" when unknown. */
static void format_duration(double seconds, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!(seconds >= 0) || seconds > 1e9) /* NaN too */
        return;
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, len, "%lld:%02lld", s / 60, s % 60);
}

/* "3.4 MB" (decimal units, one decimal, no locale) or "512 bytes"; ""
 * when unknown. */
static void format_size(int64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KB", "MB", "GB", "TB", "PB", "EB"};
    buf[0] = '\0';
    if (bytes < 0)
        return;
    if (bytes < 1000) {
        snprintf(buf, len, "%lld byte%s", (long long)bytes, bytes == 1 ? "" : "s");
        return;
    }
    int64_t unit = 1000;
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        int64_t whole = bytes / unit;
        int64_t tenth = (bytes % unit * 10 + unit / 2) / unit;
        if (tenth == 10) {
            whole++;
            tenth = 0;
        }
        /* 999.96 KB prints as 1.0 MB, not 1000.0 KB. */
        if (whole < 1000 || u + 1 == sizeof(units) / sizeof(units[0])) {
            snprintf(buf, len, "%lld.%lld %s", (long long)whole, (long long)tenth, units[u]);
            return;
        }
        unit *= 1000;
    }
}

/* ---- encodings ---- */

/* Appends s with & < > " ' as HTML character references. */
static void put_html(struct strbuf *o, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            strbuf_puts(o, "&amp;");
            break;
        case '<':
            strbuf_puts(o, "&lt;");
            break;
        case '>':
            strbuf_puts(o, "&gt;");
            break;
        case '"':
            strbuf_puts(o, "&quot;");
            break;
        case '\'':
            strbuf_puts(o, "&#39;");
            break;
        default:
            strbuf_put(o, s, 1);
        }
    }
}

/*
 * Appends text (lines ending in '\n') as quoted-printable with CRLF line
 * ends (RFC 2045 6.7). Escaped: '=', controls, bytes >= 0x7f, a space or tab
 * before a line end, a '.' or the 'F' of "From " starting an output line
 * (dot-stuffing and mbox "From " mangling cannot touch it). Soft breaks keep
 * every line within QP_LINE_MAX and never split an escape.
 */
static void put_qp(struct strbuf *o, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)text;
    size_t col = 0;
    while (*p != '\0') {
        if (*p == '\n') {
            strbuf_puts(o, "\r\n");
            col = 0;
            p++;
            continue;
        }
        bool last = p[1] == '\n' || p[1] == '\0';
        for (;;) {
            unsigned char c = *p;
            bool esc =
                c == '=' || c < 0x20 || c >= 0x7f || ((c == ' ' || c == '\t') && last) ||
                (col == 0 && (c == '.' || (c == 'F' && strncmp((const char *)p, "From ", 5) == 0)));
            size_t w = esc ? 3 : 1;
            /* The last character of a line may take the column a soft
             * break would need. */
            if (col + w > (last ? QP_LINE_MAX : QP_LINE_MAX - 1)) {
                strbuf_puts(o, "=\r\n");
                col = 0;
                continue; /* at column 0 the escaping may differ */
            }
            if (esc) {
                char e[3] = {'=', hex[c >> 4], hex[c & 15]};
                strbuf_put(o, e, 3);
            } else {
                strbuf_put(o, (const char *)p, 1);
            }
            col += w;
            break;
        }
        p++;
    }
}

/* Appends "Subject: s" and CRLF: plain when it is printable ASCII without
 * "=?" and fits 78 columns, else as folded RFC 2047 B encoded-words, each
 * holding whole characters of s (valid UTF-8). */
static void put_subject(struct strbuf *o, const char *s)
{
    static const char name[] = "Subject:";
    size_t n = strlen(s);
    /* sizeof(name) counts the NUL, standing in for the space after ':'. */
    bool plain = sizeof(name) + n <= 78 && strstr(s, "=?") == NULL;
    for (size_t i = 0; plain && i < n; i++)
        plain = s[i] >= 0x20 && s[i] < 0x7f;
    strbuf_puts(o, name);
    if (plain) {
        strbuf_puts(o, " ");
        strbuf_puts(o, s);
        strbuf_puts(o, "\r\n");
        return;
    }
    size_t i = 0;
    while (i < n) {
        size_t take = 0;
        while (i + take < n) {
            size_t l = char_len((unsigned char)s[i + take]);
            if (take + l > WORD_BYTES)
                break;
            take += l;
        }
        char b64[sodium_base64_ENCODED_LEN(WORD_BYTES, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)s + i, take,
                          sodium_base64_VARIANT_ORIGINAL);
        strbuf_puts(o, i == 0 ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
        strbuf_puts(o, b64);
        strbuf_puts(o, "?=");
        i += take;
    }
    strbuf_puts(o, "\r\n");
}

/* RFC 5322 date-time in UTC with English names, whatever the locale. */
static void put_date(struct strbuf *o, int64_t date)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    /* Years 1970..9999 keep the four-digit year. */
    if (date < 0 || date > INT64_C(253402300799))
        date = 0;
    time_t t = (time_t)date;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    putf(o, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- composing ---- */

/* The cleaned outside values a message shows. */
struct view {
    char *name;    /* the uploaded file's name */
    char *mp3name; /* done: the MP3's name */
    char *error;   /* failed: the reason */
    char *url;     /* done: the download link */
    char *fid;     /* done: the MP3's id */
    char duration[64];
    char size[64];
};

static void view_free(struct view *v)
{
    free(v->name);
    free(v->mp3name);
    free(v->error);
    free(v->url);
    free(v->fid);
}

static int view_init(struct view *v, const struct mail_facts *f)
{
    memset(v, 0, sizeof(*v));
    v->name = clean_text(f->filename, NAME_MAX_BYTES, false);
    v->error = clean_text(f->error, ERROR_MAX_BYTES, true);
    v->url = clean_text(f->url, URL_MAX_BYTES, false);
    v->fid = clean_text(f->mp3_fid, FID_MAX_BYTES, false);
    if (v->name == NULL || v->error == NULL || v->url == NULL || v->fid == NULL)
        return -1;
    v->mp3name = mp3_name(v->name);
    if (v->mp3name == NULL)
        return -1;
    format_duration(f->duration, v->duration, sizeof(v->duration));
    format_size(f->bytes, v->size, sizeof(v->size));
    return 0;
}

/* Only web links become <a href>; anything else is shown as text. */
static bool is_web_link(const char *url)
{
    return strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0;
}

static void subject_text(struct strbuf *o, const struct view *v, bool done)
{
    if (done) {
        strbuf_puts(o, "Your MP3 is ready: ");
        strbuf_puts(o, v->mp3name);
    } else if (v->name[0] == '\0') {
        strbuf_puts(o, "Conversion failed");
    } else {
        strbuf_puts(o, "Conversion failed: ");
        strbuf_puts(o, v->name);
    }
}

/* Both bodies use '\n' line ends; put_qp turns them into CRLF. */
static void plain_body(struct strbuf *o, const struct view *v, bool done)
{
    const char *name = v->name[0] != '\0' ? v->name : "(no name)";
    strbuf_puts(o, "Hello,\n\n");
    if (done) {
        strbuf_puts(o, "your MP3 is ready.\n\nFile: ");
        strbuf_puts(o, name);
        strbuf_puts(o, "\n");
        if (v->duration[0] != '\0') {
            strbuf_puts(o, "Duration: ");
            strbuf_puts(o, v->duration);
            strbuf_puts(o, "\n");
        }
        if (v->size[0] != '\0') {
            strbuf_puts(o, "Size: ");
            strbuf_puts(o, v->size);
            strbuf_puts(o, "\n");
        }
        if (v->url[0] != '\0') {
            strbuf_puts(o, "\nDownload it here:\n");
            strbuf_puts(o, v->url);
            strbuf_puts(o, "\n");
        }
        if (v->fid[0] != '\0') {
            strbuf_puts(o, "\nFile id: ");
            strbuf_puts(o, v->fid);
            strbuf_puts(o, "\n");
        }
    } else {
        strbuf_puts(o, "we could not convert your file to MP3.\n\nFile: ");
        strbuf_puts(o, name);
        strbuf_puts(o, "\nReason: ");
        strbuf_puts(o, v->error[0] != '\0' ? v->error : "unknown");
        strbuf_puts(o, "\n\nPlease upload it again, or try another file.\n");
    }
    strbuf_puts(o, "\nvid2mp3\n");
}

static void html_body(struct strbuf *o, const struct view *v, bool done)
{
    const char *name = v->name[0] != '\0' ? v->name : "(no name)";
    struct strbuf subject = {0};
    subject_text(&subject, v, done);
    if (subject.failed) {
        o->failed = true;
        return;
    }
    strbuf_puts(o, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>");
    put_html(o, subject.p);
    free(subject.p);
    strbuf_puts(o, "</title>\n</head>\n<body>\n<p>Hello,</p>\n");
    if (done) {
        strbuf_puts(o, "<p>your MP3 is ready.</p>\n<p>File: ");
        put_html(o, name);
        if (v->duration[0] != '\0') {
            strbuf_puts(o, "<br>\nDuration: ");
            strbuf_puts(o, v->duration);
        }
        if (v->size[0] != '\0') {
            strbuf_puts(o, "<br>\nSize: ");
            strbuf_puts(o, v->size);
        }
        strbuf_puts(o, "</p>\n");
        if (v->url[0] != '\0' && is_web_link(v->url)) {
            strbuf_puts(o, "<p><a href=\"");
            put_html(o, v->url);
            strbuf_puts(o, "\">Download ");
            put_html(o, v->mp3name);
            strbuf_puts(o, "</a></p>\n");
        } else if (v->url[0] != '\0') {
            strbuf_puts(o, "<p>Download it here: ");
            put_html(o, v->url);
            strbuf_puts(o, "</p>\n");
        }
        if (v->fid[0] != '\0') {
            strbuf_puts(o, "<p>File id: ");
            put_html(o, v->fid);
            strbuf_puts(o, "</p>\n");
        }
    } else {
        strbuf_puts(o, "<p>we could not convert your file to MP3.</p>\n<p>File: ");
        put_html(o, name);
        strbuf_puts(o, "<br>\nReason: ");
        put_html(o, v->error[0] != '\0' ? v->error : "unknown");
        strbuf_puts(o, "</p>\n<p>Please upload it again, or try another file.</p>\n");
    }
    strbuf_puts(o, "<p>vid2mp3</p>\n</body>\n</html>\n");
}

static bool job_id_valid(const char *s)
{
    if (s == NULL || strnlen(s, 25) != 24)
        return false;
    for (size_t i = 0; i < 24; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static void put_part(struct strbuf *o, const char *boundary, const char *type, const char *text)
{
    strbuf_puts(o, "--");
    strbuf_puts(o, boundary);
    strbuf_puts(o, "\r\nContent-Type: ");
    strbuf_puts(o, type);
    strbuf_puts(o, "; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    put_qp(o, text);
}

char *mail_compose(const struct mail_facts *f, size_t *len, char *err, size_t errlen)
{
    struct view v = {0};
    struct strbuf msg = {0}, text = {0}, html = {0}, subject = {0};
    char *ret = NULL;

    if (f == NULL || !mail_address_valid(f->from)) {
        seterr(err, errlen, "sender address is not a single valid address");
        goto out;
    }
    if (!mail_address_valid(f->to)) {
        seterr(err, errlen, "recipient address is not a single valid address");
        goto out;
    }
    if (!job_id_valid(f->job_id)) {
        seterr(err, errlen, "job id is not 24 lowercase hex digits");
        goto out;
    }
    if (view_init(&v, f) != 0) {
        seterr(err, errlen, "out of memory");
        goto out;
    }

    /* The job id and random hex: unique per message, and "=_" cannot occur
     * in quoted-printable text, so no body line can look like a boundary. */
    unsigned char raw[8];
    char rnd[sizeof(raw) * 2 + 1];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(rnd, sizeof(rnd), raw, sizeof(raw));
    char boundary[64];
    snprintf(boundary, sizeof(boundary), "=_vid2mp3_%s_%s", f->job_id, rnd);

    subject_text(&subject, &v, f->done);
    plain_body(&text, &v, f->done);
    html_body(&html, &v, f->done);
    if (subject.failed || text.failed || html.failed) {
        seterr(err, errlen, "out of memory");
        goto out;
    }

    strbuf_puts(&msg, "From: vid2mp3 <");
    strbuf_puts(&msg, f->from);
    strbuf_puts(&msg, ">\r\nTo: <");
    strbuf_puts(&msg, f->to);
    strbuf_puts(&msg, ">\r\n");
    put_subject(&msg, subject.p);
    put_date(&msg, f->date);
    strbuf_puts(&msg, "Message-ID: <job-");
    strbuf_puts(&msg, f->job_id);
    strbuf_puts(&msg, strchr(f->from, '@'));
    strbuf_puts(&msg, ">\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: multipart/alternative;\r\n boundary=\"");
    strbuf_puts(&msg, boundary);
    strbuf_puts(&msg, "\"\r\nAuto-Submitted: auto-generated\r\n"
                      "X-Auto-Response-Suppress: All\r\n\r\n");
    put_part(&msg, boundary, "text/plain", text.p);
    put_part(&msg, boundary, "text/html", html.p);
    strbuf_puts(&msg, "--");
    strbuf_puts(&msg, boundary);
    strbuf_puts(&msg, "--\r\n");
    if (msg.failed) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    if (len != NULL)
        *len = msg.len;
    ret = msg.p;
    msg.p = NULL;
out:
    free(msg.p);
    free(text.p);
    free(html.p);
    free(subject.p);
    view_free(&v);
    return ret;
}
