/* Unit tests: mail/message. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/utf8.h"
#include "mail/message.h"

#define JOB "0123456789abcdef01234567"
#define URL "https://mp3.example.com/download?fid=65f0c0ffee0000000000abcd"
#define FID "65f0c0ffee0000000000abcd"

/* ---- helpers ---- */

static struct mail_facts done_facts(const char *filename)
{
    struct mail_facts f = {
        .from = "noreply@mp3.example.com",
        .to = "owner@example.org",
        .job_id = JOB,
        .filename = filename,
        .done = true,
        .mp3_fid = FID,
        .url = URL,
        .duration = 600,
        .bytes = 3400000,
        .date = 1795525544, /* Tue, 24 Nov 2026 13:05:44 UTC */
    };
    return f;
}

static struct mail_facts failed_facts(const char *filename, const char *error)
{
    struct mail_facts f = done_facts(filename);
    f.done = false;
    f.mp3_fid = NULL;
    f.url = NULL;
    f.duration = -1;
    f.bytes = -1;
    f.error = error;
    return f;
}

/* Composes f, which must succeed, and checks what every message must be:
 * 7-bit text of CRLF lines of at most 998 bytes, none starting with '.' or
 * ending in a space or tab. Caller frees. */
static char *compose(const struct mail_facts *f)
{
    char err[128] = "";
    size_t len = 0;
    char *m = mail_compose(f, &len, err, sizeof(err));
    if (m == NULL)
        print_error("mail_compose: %s\n", err);
    assert_non_null(m);
    assert_int_equal(strlen(m), len);
    assert_true(len >= 2);
    assert_memory_equal(m + len - 2, "\r\n", 2);
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)m[i];
        assert_true(c < 0x80);
        if (c == '\r') {
            assert_int_equal(m[i + 1], '\n');
            if (line > 0)
                assert_true(m[i - 1] != ' ' && m[i - 1] != '\t');
            assert_true(line <= 998);
            line = 0;
            i++;
            continue;
        }
        assert_int_not_equal(c, '\n');
        if (line == 0)
            assert_int_not_equal(c, '.');
        line++;
    }
    return m;
}

/* The header block, up to and including its last CRLF. Caller frees. */
static char *headers_of(const char *m)
{
    const char *end = strstr(m, "\r\n\r\n");
    assert_non_null(end);
    size_t n = (size_t)(end - m) + 2;
    char *h = malloc(n + 1);
    assert_non_null(h);
    memcpy(h, m, n);
    h[n] = '\0';
    return h;
}

/* Header lines (not continuation lines) starting with name, any case. */
static int count_fields(const char *headers, const char *name)
{
    int n = 0;
    size_t l = strlen(name);
    for (const char *p = headers; *p != '\0';) {
        if (strncasecmp(p, name, l) == 0)
            n++;
        p = strstr(p, "\r\n");
        assert_non_null(p);
        p += 2;
    }
    return n;
}

/* The field's raw value (folding kept) after "Name: ". Caller frees. */
static char *field(const char *headers, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = headers; *p != '\0'; p = strstr(p, "\r\n") + 2) {
        if (strncmp(p, name, l) == 0 && p[l] == ':' && p[l + 1] == ' ') {
            const char *v = p + l + 2, *e = v;
            for (;;) {
                e = strstr(e, "\r\n");
                if (e[2] != ' ' && e[2] != '\t')
                    break;
                e += 2;
            }
            char *out = malloc((size_t)(e - v) + 1);
            assert_non_null(out);
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return out;
        }
    }
    fail_msg("no %s header", name);
    return NULL;
}

/* Decodes a Subject value: plain text, or RFC 2047 B encoded-words folded
 * with CRLF SP, each at most 75 characters and holding whole UTF-8
 * characters. Caller frees. */
static char *decode_subject(const char *v)
{
    if (strncmp(v, "=?", 2) != 0)
        return strdup(v);
    char *out = calloc(1, strlen(v) + 1);
    assert_non_null(out);
    size_t olen = 0;
    const char *p = v;
    for (;;) {
        assert_memory_equal(p, "=?UTF-8?B?", 10);
        const char *b = p + 10, *e = strstr(b, "?=");
        assert_non_null(e);
        assert_true(e + 2 - p <= 75);
        unsigned char bin[64];
        size_t blen = 0;
        assert_int_equal(sodium_base642bin(bin, sizeof(bin), b, (size_t)(e - b), NULL, &blen, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        assert_true(utf8_valid((const char *)bin, blen)); /* no character split */
        memcpy(out + olen, bin, blen);
        olen += blen;
        p = e + 2;
        if (*p == '\0')
            break;
        assert_memory_equal(p, "\r\n ", 3);
        p += 3;
    }
    out[olen] = '\0';
    return out;
}

static char *subject_of(const char *m)
{
    char *h = headers_of(m);
    char *raw = field(h, "Subject");
    char *s = decode_subject(raw);
    free(raw);
    free(h);
    return s;
}

/* The quoted-printable part of the given type, decoded, after checking its
 * lines are at most 76 characters. Caller frees. */
static char *part_of(const char *m, const char *type)
{
    char *h = headers_of(m);
    char *ct = field(h, "Content-Type");
    free(h);
    const char *b = strstr(ct, "boundary=\"");
    assert_non_null(b);
    b += 10;
    char delim[128];
    int n = snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)strcspn(b, "\""), b);
    assert_true(n > 0 && (size_t)n < sizeof(delim));
    free(ct);

    char want[128];
    snprintf(want, sizeof(want), "Content-Type: %s; charset=UTF-8\r\n", type);
    const char *start = strstr(m, want);
    assert_non_null(start);
    assert_non_null(strstr(start, "Content-Transfer-Encoding: quoted-printable\r\n"));
    start = strstr(start, "\r\n\r\n") + 4;
    const char *end = strstr(start, delim);
    assert_non_null(end);
    end += 2; /* the body's last CRLF; the delimiter starts after it */

    char *out = malloc((size_t)(end - start) + 1);
    assert_non_null(out);
    size_t o = 0, col = 0;
    for (const char *p = start; p < end;) {
        if (p[0] == '\r') {
            assert_true(col <= 76);
            out[o++] = '\n';
            p += 2;
            col = 0;
        } else if (p[0] == '=' && p[1] == '\r') {
            assert_true(col + 1 <= 76);
            p += 3;
            col = 0;
        } else if (p[0] == '=') {
            unsigned v = 0;
            assert_int_equal(sscanf(p + 1, "%2X", &v), 1);
            assert_non_null(strchr("0123456789ABCDEF", p[1]));
            assert_non_null(strchr("0123456789ABCDEF", p[2]));
            out[o++] = (char)v;
            p += 3;
            col += 3;
        } else {
            out[o++] = *p++;
            col++;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- addresses ---- */

static void addresses_valid(void **state)
{
    (void)state;
    assert_true(mail_address_valid("a@b.c"));
    assert_true(mail_address_valid("admin@localhost"));
    assert_true(mail_address_valid("first.last+tag@mail.example.com"));
    assert_true(mail_address_valid("!#$%&'*+-/=?^_`{|}~@x-y.example"));
    assert_true(mail_address_valid("a@[127.0.0.1]"));
    assert_true(mail_address_valid("a@[255.255.255.255]"));
    assert_true(mail_address_valid("a@0.example"));

    char local[80];
    memset(local, 'l', 64);
    memcpy(local + 64, "@b.c", 5);
    assert_true(mail_address_valid(local)); /* 64 bytes of local part */

    /* 254 bytes in all, labels of 63. */
    char big[300];
    memset(big, 'x', sizeof(big));
    big[0] = 'a';
    big[1] = '@';
    for (size_t i = 2 + 63; i < 254; i += 64)
        big[i] = '.';
    big[254] = '\0';
    assert_true(mail_address_valid(big));
    big[254] = 'x';
    big[255] = '\0';
    assert_false(mail_address_valid(big)); /* 255 */
}

static void addresses_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "a",
        "@b.c",
        "a@",
        "a@@b.c",
        "a@b@c.d",
        "a@b.c\r\n",
        "a@b.c\n",
        "a\r@b.c",
        "a@b.c\r\nBcc: x@y.z",
        "a@b.c, d@e.f",
        "a@b.c,d@e.f",
        "a@b.c;d@e.f",
        "X <a@b.c>",
        "<a@b.c>",
        "\"a\"@b.c",
        "\"a b\"@b.c",
        "a b@c.d",
        " a@b.c",
        "a@b.c ",
        "a@b .c",
        "a\t@b.c",
        "a@b.c(comment)",
        "(comment)a@b.c",
        ".a@b.c",
        "a.@b.c",
        "a..b@c.d",
        "a@-b.c",
        "a@b-.c",
        "a@b.-c",
        "a@b.c.",
        "a@.b.c",
        "a@b..c",
        "a@b_c.d",
        "a@[127.0.0.1",
        "a@[127.0.0]",
        "a@[127.0.0.256]",
        "a@[127.0.0.01]",
        "a@[127.0.0.1.5]",
        "a@[::1]",
        "a@[IPv6:::1]",
        "a@[1.2.3.4]x",
        "\xc3\xa9@b.c",
        "a@b\xc3\xa9.c",
        "a\x7f@b.c",
        "a\\b@c.d",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (mail_address_valid(bad[i]))
            print_error("accepted \"%s\"\n", bad[i]);
        assert_false(mail_address_valid(bad[i]));
    }
    assert_false(mail_address_valid(NULL));

    char local[80];
    memset(local, 'l', 65);
    memcpy(local + 65, "@b.c", 5);
    assert_false(mail_address_valid(local)); /* local part of 65 */

    char label[80] = "a@";
    memset(label + 2, 'd', 64);
    memcpy(label + 66, ".com", 5);
    assert_false(mail_address_valid(label)); /* label of 64 */
}

/* ---- refusals ---- */

static void refuses_bad_facts(void **state)
{
    (void)state;
    char err[128];
    size_t len = 42;
    struct mail_facts f = done_facts("talk.mp4");

    f.to = "owner@example.org\r\nBcc: evil@example.com";
    err[0] = '\0';
    assert_null(mail_compose(&f, &len, err, sizeof(err)));
    assert_string_equal(err, "recipient address is not a single valid address");
    assert_int_equal(len, 42);

    f = done_facts("talk.mp4");
    f.to = "a@b.c, d@e.f";
    assert_null(mail_compose(&f, &len, err, sizeof(err)));
    f.to = NULL;
    assert_null(mail_compose(&f, &len, err, sizeof(err)));

    f = done_facts("talk.mp4");
    f.from = "vid2mp3 <noreply@mp3.example.com>";
    assert_null(mail_compose(&f, &len, err, sizeof(err)));
    assert_string_equal(err, "sender address is not a single valid address");

    static const char *const jobs[] = {NULL,
                                       "",
                                       "0123456789ABCDEF01234567",
                                       "0123456789abcdef0123456",
                                       "0123456789abcdef012345678",
                                       "0123456789abcdef0123456g"};
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        f = done_facts("talk.mp4");
        f.job_id = jobs[i];
        err[0] = '\0';
        assert_null(mail_compose(&f, &len, err, sizeof(err)));
        assert_string_equal(err, "job id is not 24 lowercase hex digits");
    }
    assert_null(mail_compose(NULL, &len, NULL, 0));
}

/* ---- headers ---- */

static void headers_are_fixed(void **state)
{
    (void)state;
    struct mail_facts f = done_facts("talk.mp4");
    char *m = compose(&f);
    char *h = headers_of(m);
    assert_true(strncmp(h, "From: vid2mp3 <noreply@mp3.example.com>\r\n", 41) == 0);
    assert_non_null(strstr(h, "\r\nTo: <owner@example.org>\r\n"));
    assert_non_null(strstr(h, "\r\nSubject: Your MP3 is ready: talk.mp3\r\n"));
    assert_non_null(strstr(h, "\r\nDate: Tue, 24 Nov 2026 13:05:44 +0000\r\n"));
    assert_non_null(strstr(h, "\r\nMessage-ID: <job-" JOB "@mp3.example.com>\r\n"));
    assert_non_null(strstr(h, "\r\nMIME-Version: 1.0\r\n"));
    assert_non_null(strstr(h, "\r\nAuto-Submitted: auto-generated\r\n"));
    assert_non_null(strstr(h, "\r\nX-Auto-Response-Suppress: All\r\n"));
    char *ct = field(h, "Content-Type");
    assert_true(strncmp(ct, "multipart/alternative;\r\n boundary=\"=_vid2mp3_" JOB "_", 46 + 24) ==
                0);
    for (const char *name = "From:\0To:\0Subject:\0Date:\0Message-ID:\0"; *name != '\0';
         name += strlen(name) + 1)
        assert_int_equal(count_fields(h, name), 1);
    free(ct);
    free(h);

    /* The boundary differs between two messages of the same job. */
    char *m2 = compose(&f);
    char *b1 = strstr(m, "boundary=\""), *b2 = strstr(m2, "boundary=\"");
    assert_true(strncmp(b1, b2, 60) != 0);
    free(m2);
    free(m);
}

static void dates(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        const char *want;
    } cases[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 +0000"},
        {951782400, "Tue, 29 Feb 2000 00:00:00 +0000"},
        {1767225599, "Wed, 31 Dec 2025 23:59:59 +0000"},
        {-5, "Thu, 01 Jan 1970 00:00:00 +0000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_facts f = done_facts("x.mp4");
        f.date = cases[i].t;
        char *m = compose(&f);
        char *h = headers_of(m);
        char *d = field(h, "Date");
        assert_string_equal(d, cases[i].want);
        free(d);
        free(h);
        free(m);
    }
}

static void message_id_uses_sender_domain(void **state)
{
    (void)state;
    struct mail_facts f = done_facts("x.mp4");
    f.from = "a@[10.0.0.1]";
    char *m = compose(&f);
    assert_non_null(strstr(m, "\r\nMessage-ID: <job-" JOB "@[10.0.0.1]>\r\n"));
    free(m);
}

static void no_header_injection(void **state)
{
    (void)state;
    static const char *const names[] = {
        "x\r\nBcc: evil@example.com.mp4",
        "x\nBcc: evil@example.com.mp4",
        "x\rCc: evil@example.com.mp4",
        "\r\nTo: evil@example.com\r\n\r\nbody.mp4",
        "x\xc2\x85"
        "Bcc: evil@example.com.mp4", /* NEL */
        "x\xe2\x80\xa8"
        "Bcc: evil@example.com.mp4", /* LINE SEPARATOR */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct mail_facts f = done_facts(names[i]);
        for (int done = 0; done < 2; done++) {
            f.done = done;
            f.error = names[i];
            char *m = compose(&f);
            char *h = headers_of(m);
            assert_int_equal(count_fields(h, "To:"), 1);
            assert_int_equal(count_fields(h, "Bcc:"), 0);
            assert_int_equal(count_fields(h, "Cc:"), 0);
            char *s = subject_of(m);
            assert_null(strchr(s, '\r'));
            assert_null(strchr(s, '\n'));
            free(s);
            free(h);
            free(m);
        }
    }
    struct mail_facts f = done_facts("x\r\nBcc: evil@example.com.mp4");
    char *m = compose(&f);
    char *s = subject_of(m);
    assert_string_equal(s, "Your MP3 is ready: xBcc: evil@example.com.mp3");
    free(s);
    char *text = part_of(m, "text/plain");
    assert_non_null(strstr(text, "\nFile: xBcc: evil@example.com.mp4\n"));
    free(text);
    free(m);
}

/* ---- subject ---- */

static void mp3_names(void **state)
{
    (void)state;
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"talk.mp4", "Your MP3 is ready: talk.mp3"},
        {"talk", "Your MP3 is ready: talk.mp3"},
        {"", "Your MP3 is ready: audio.mp3"},
        {NULL, "Your MP3 is ready: audio.mp3"},
        {"\r\n\t", "Your MP3 is ready: audio.mp3"},
        {"a.tar.gz", "Your MP3 is ready: a.tar.mp3"},
        {"song.MP3", "Your MP3 is ready: song.mp3"},
        {"name.", "Your MP3 is ready: name.mp3"},
        {".mkv", "Your MP3 is ready: .mkv.mp3"},
        {"Part 1. The start", "Your MP3 is ready: Part 1. The start.mp3"},
        {"  spaced  .webm  ", "Your MP3 is ready: spaced  .mp3"},
        {"bad\xff.mov", "Your MP3 is ready: bad?.mp3"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_facts f = done_facts(cases[i].name);
        char *m = compose(&f);
        char *s = subject_of(m);
        assert_string_equal(s, cases[i].want);
        free(s);
        free(m);
    }
}

static void subject_non_ascii_is_encoded(void **state)
{
    (void)state;
    const char *name = "Gr\xc3\xbc\xc3\x9f"
                       "e \xe2\x80\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.mkv";
    struct mail_facts f = done_facts(name);
    char *m = compose(&f);
    assert_non_null(strstr(m, "\r\nSubject: =?UTF-8?B?"));
    char *s = subject_of(m);
    assert_string_equal(s, "Your MP3 is ready: Gr\xc3\xbc\xc3\x9f"
                           "e \xe2\x80\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.mp3");
    free(s);
    free(m);

    /* "=?" and a header line over 78 are encoded too, though ASCII. */
    f = done_facts("=?UTF-8?B?QmNjOiBldmls?=.mp4");
    m = compose(&f);
    assert_non_null(strstr(m, "\r\nSubject: =?UTF-8?B?"));
    s = subject_of(m);
    assert_string_equal(s, "Your MP3 is ready: =?UTF-8?B?QmNjOiBldmls?=.mp3");
    free(s);
    free(m);
}

static void subject_plain_up_to_78(void **state)
{
    (void)state;
    /* "Subject: Your MP3 is ready: " is 28, ".mp3" 4: 46 more fit. */
    char name[64];
    memset(name, 'n', 46);
    name[46] = '\0';
    struct mail_facts f = done_facts(name);
    char *m = compose(&f);
    char *h = headers_of(m);
    char *raw = field(h, "Subject");
    assert_int_equal(strlen("Subject: ") + strlen(raw), 78);
    free(raw);
    free(h);
    free(m);

    name[46] = 'n';
    name[47] = '\0';
    f = done_facts(name);
    m = compose(&f);
    assert_non_null(strstr(m, "\r\nSubject: =?UTF-8?B?"));
    free(m);
}

static void long_subject_folds(void **state)
{
    (void)state;
    /* 300 characters: ASCII, then two- and three-byte characters that
     * cannot all fall on word boundaries. */
    static const char *const units[] = {"a", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x8e\xb5"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        char name[1300] = "";
        size_t n = 0, ul = strlen(units[u]);
        for (int i = 0; i < 300; i++) {
            memcpy(name + n, units[u], ul);
            n += ul;
        }
        name[n] = '\0';
        struct mail_facts f = failed_facts(name, "no audio stream");
        char *m = compose(&f);
        char *h = headers_of(m);
        char *raw = field(h, "Subject");
        assert_non_null(strstr(raw, "?=\r\n =?UTF-8?B?")); /* folded */
        for (const char *p = raw; p != NULL; p = strstr(p, "\r\n")) {
            p += p == raw ? 0 : 3;
            size_t l = strcspn(p, "\r");
            assert_true(l <= 75);
            assert_true(l + (p == raw ? strlen("Subject: ") : 1) <= 76);
        }
        char *s = subject_of(m); /* checks each word: <= 75, whole characters */
        assert_true(strncmp(s, "Conversion failed: ", 19) == 0);
        assert_true(strlen(s) - 19 <= 200);
        assert_true(strlen(s) - 19 > 200 - 4);
        assert_true(utf8_valid(s, strlen(s)));
        free(s);
        free(raw);
        free(h);
        free(m);
    }
}

/* ---- bodies ---- */

static void plain_part_done(void **state)
{
    (void)state;
    struct mail_facts f = done_facts("talk.mp4");
    char *m = compose(&f);
    char *t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "Hello,\n"));
    assert_non_null(strstr(t, "\nFile: talk.mp4\n"));
    assert_non_null(strstr(t, "\nDuration: 10:00\n"));
    assert_non_null(strstr(t, "\nSize: 3.4 MB\n"));
    assert_non_null(strstr(t, "\n" URL "\n"));
    assert_non_null(strstr(t, "\nFile id: " FID "\n"));
    free(t);
    free(m);

    /* Long hours, kilobytes; unknowns are left out. */
    f.duration = 3661.4;
    f.bytes = 999949;
    m = compose(&f);
    t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "\nDuration: 1:01:01\n"));
    assert_non_null(strstr(t, "\nSize: 999.9 KB\n"));
    free(t);
    free(m);
    f.duration = -1;
    f.bytes = -1;
    m = compose(&f);
    t = part_of(m, "text/plain");
    assert_null(strstr(t, "Duration:"));
    assert_null(strstr(t, "Size:"));
    free(t);
    free(m);
    f.duration = 59.6;
    f.bytes = 999999;
    m = compose(&f);
    t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "\nDuration: 1:00\n"));
    assert_non_null(strstr(t, "\nSize: 1.0 MB\n"));
    free(t);
    free(m);
    f.bytes = 512;
    m = compose(&f);
    t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "\nSize: 512 bytes\n"));
    free(t);
    free(m);
}

static void quoted_printable(void **state)
{
    (void)state;
    /* A long name of escapes and '=', a URL that starts a line with '.',
     * a name of 199 ASCII bytes: every line stays <= 76 (part_of checks) and
     * decodes back. */
    static const char tail[] = "\xc3\xa9\xc3\xa9 . x.mp4";
    char name[256];
    memset(name, '=', 150);
    memcpy(name + 150, tail, sizeof(tail));
    struct mail_facts f = done_facts(name);
    f.url = ".example/download?fid=1";
    f.mp3_fid = "a=b";
    char *m = compose(&f);
    assert_non_null(strstr(m, "\r\n=2Eexample/download?fid=3D1\r\n"));
    char *t = part_of(m, "text/plain");
    assert_non_null(strstr(t, name));
    assert_non_null(strstr(t, "\n.example/download?fid=1\n"));
    assert_non_null(strstr(t, "\nFile id: a=b\n"));
    free(t);
    t = part_of(m, "text/html");
    assert_non_null(strstr(t, "Download it here: .example/download?fid=1<"));
    assert_null(strstr(t, "href"));
    free(t);
    free(m);

    memset(name, 'x', 199);
    name[199] = '\0';
    f = done_facts(name);
    m = compose(&f);
    t = part_of(m, "text/plain");
    assert_non_null(strstr(t, name));
    free(t);
    free(m);
}

static void html_part_escapes(void **state)
{
    (void)state;
    struct mail_facts f = done_facts("<script>alert('x\"y')</script>&.mp4");
    f.url = "https://mp3.example.com/download?fid=1&x=\"><script>";
    char *m = compose(&f);
    char *h = part_of(m, "text/html");
    assert_null(strstr(h, "<script"));
    assert_non_null(strstr(h, "&lt;script&gt;alert(&#39;x&quot;y&#39;)&lt;/script&gt;&amp;.mp4"));
    assert_non_null(strstr(
        h, "<a href=\"https://mp3.example.com/download?fid=1&amp;x=&quot;&gt;&lt;script&gt;\">"));
    assert_non_null(strstr(h, "Duration: 10:00"));
    assert_non_null(strstr(h, "Size: 3.4 MB"));
    assert_non_null(strstr(h, "File id: " FID));
    assert_null(strstr(h, "<img"));
    free(h);
    free(m);

    f = done_facts("x.mp4");
    f.url = "javascript:alert(1)";
    m = compose(&f);
    h = part_of(m, "text/html");
    assert_null(strstr(h, "href"));
    free(h);
    free(m);
}

static void failed_message(void **state)
{
    (void)state;
    struct mail_facts f =
        failed_facts("talk.mp4", "the file has no audio stream\r\nBcc: evil@example.com");
    char *m = compose(&f);
    char *s = subject_of(m);
    assert_string_equal(s, "Conversion failed: talk.mp4");
    free(s);
    char *t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "\nFile: talk.mp4\n"));
    assert_non_null(strstr(t, "\nReason: the file has no audio stream  Bcc: evil@example.com\n"));
    assert_non_null(strstr(t, "upload it again, or try another file"));
    assert_null(strstr(t, "Download"));
    free(t);
    t = part_of(m, "text/html");
    assert_non_null(strstr(t, "Reason: the file has no audio stream  Bcc: evil@example.com"));
    free(t);
    free(m);

    f = failed_facts("", NULL);
    m = compose(&f);
    s = subject_of(m);
    assert_string_equal(s, "Conversion failed");
    free(s);
    t = part_of(m, "text/plain");
    assert_non_null(strstr(t, "\nReason: unknown\n"));
    free(t);
    free(m);
}

static void invalid_utf8_is_cleaned(void **state)
{
    (void)state;
    struct mail_facts f = failed_facts("\xff\xfe\xc3(.mp4", "bad \xed\xa0\x80 byte");
    char *m = compose(&f);
    char *s = subject_of(m);
    assert_string_equal(s, "Conversion failed: ??\?(.mp4");
    free(s);
    char *t = part_of(m, "text/plain");
    assert_true(utf8_valid(t, strlen(t)));
    assert_non_null(strstr(t, "\nReason: bad ??? byte\n"));
    free(t);
    free(m);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_valid),
        cmocka_unit_test(addresses_invalid),
        cmocka_unit_test(refuses_bad_facts),
        cmocka_unit_test(headers_are_fixed),
        cmocka_unit_test(dates),
        cmocka_unit_test(message_id_uses_sender_domain),
        cmocka_unit_test(no_header_injection),
        cmocka_unit_test(mp3_names),
        cmocka_unit_test(subject_non_ascii_is_encoded),
        cmocka_unit_test(subject_plain_up_to_78),
        cmocka_unit_test(long_subject_folds),
        cmocka_unit_test(plain_part_done),
        cmocka_unit_test(quoted_printable),
        cmocka_unit_test(html_part_escapes),
        cmocka_unit_test(failed_message),
        cmocka_unit_test(invalid_utf8_is_cleaned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
