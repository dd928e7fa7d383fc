/* libFuzzer: notification emails built from hostile file names, failure
 * reasons, recipient addresses and links.
 *
 * Input: one flags byte, then NUL-separated filename, error, to, url and
 * fid (missing fields are NULL, or the valid default for to). */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Header lines (not continuations) starting with name, any case. */
static int count_fields(const char *m, size_t hlen, const char *name)
{
    int n = 0;
    size_t l = strlen(name);
    for (size_t i = 0; i < hlen; i++) {
        if ((i == 0 || m[i - 1] == '\n') && strncasecmp(m + i, name, l) == 0)
            n++;
    }
    return n;
}

static void check(const char *m, size_t len, const char *to)
{
    if (len != strlen(m) || len < 2 || memcmp(m + len - 2, "\r\n", 2) != 0)
        abort();
    /* 7-bit CRLF lines of at most 998 bytes, none starting with '.'. */
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c >= 0x80 || c == '\0')
            abort();
        if (c == '\n')
            abort(); /* a bare LF; CRLF is consumed below */
        if (c == '\r') {
            if (m[i + 1] != '\n' || line > 998)
                abort();
            line = 0;
            i++;
            continue;
        }
        if (line == 0 && c == '.')
            abort();
        line++;
    }
    const char *end = strstr(m, "\r\n\r\n");
    if (end == NULL)
        abort();
    size_t hlen = (size_t)(end - m) + 2;
    if (count_fields(m, hlen, "To:") != 1 || count_fields(m, hlen, "Bcc:") != 0 ||
        count_fields(m, hlen, "Cc:") != 0 || count_fields(m, hlen, "Subject:") != 1 ||
        count_fields(m, hlen, "From:") != 1)
        abort();
    const char *t = strstr(m, "\r\nTo: <");
    if (t == NULL || t > end || strncmp(t + 7, to, strlen(to)) != 0 ||
        strncmp(t + 7 + strlen(to), ">\r\n", 3) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    char *buf = malloc(size);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';

    const char *field[5] = {NULL, NULL, NULL, NULL, NULL};
    char *p = buf, *end = buf + size - 1;
    for (size_t i = 0; i < 5 && p <= end; i++) {
        field[i] = p;
        p += strlen(p) + 1;
    }

    static const double durations[] = {-1, 0, 59.5, 600, 3599.9, 1e300};
    static const int64_t sizes[] = {-1, 0, 999, 3400000, 999999999, INT64_MAX};
    struct mail_facts f = {
        .from = "noreply@mp3.example.com",
        .to = field[2] != NULL ? field[2] : "owner@example.org",
        .job_id = "0123456789abcdef01234567",
        .filename = field[0],
        .done = flags & 1,
        .mp3_fid = field[4],
        .url = field[3],
        .duration = durations[(flags >> 1) % 6],
        .bytes = sizes[(flags >> 4) % 6],
        .error = field[1],
        .date = (int64_t)flags * 100000000,
    };
    bool valid = mail_address_valid(f.to);
    /* An accepted address can never carry a second one or a line break. */
    if (valid && strpbrk(f.to, " ,;<>()\"\\\r\n\t:") != NULL)
        abort();
    char err[128] = "";
    size_t len = 0;
    char *m = mail_compose(&f, &len, err, sizeof(err));
    if (m == NULL) {
        if (valid || err[0] == '\0')
            abort();
    } else {
        if (!valid)
            abort();
        check(m, len, f.to);
    }
    free(m);
    free(buf);
    return 0;
}
