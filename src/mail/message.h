/*
 * message: the notification email of one finished job, as RFC 5322 text
 * ready for SMTP DATA or an .eml file.
 *
 * Everything that reaches a header comes from outside (the owner's address,
 * the uploaded file's name, a failure reason) and is treated as hostile:
 *   - addresses must be one plain addr-spec (mail_address_valid) or the
 *     message is refused, so a value can never add recipients;
 *   - the subject is built from the file name with every control character
 *     (CR, LF, TAB, DEL, C1) and every invisible line-breaking or
 *     reordering character (U+061C, U+200E/F, U+2028..U+202E,
 *     U+2066..U+2069) removed, and is RFC 2047 encoded (UTF-8,
 *     base64 encoded-words of at most 75 characters, folded) whenever it
 *     holds anything but printable ASCII, or "=?", or is longer than fits
 *     one line;
 *   - no other header carries outside text.
 * Bodies: multipart/alternative with a text/plain and a text/html part,
 * both UTF-8 and quoted-printable (lines <= 76, CRLF); text that is not
 * valid UTF-8 is cleaned (utf8_clean), HTML is escaped.
 * The Message-ID is derived from the job id and the sender's domain, so a
 * repeat of the same notification carries the same id and receivers that
 * deduplicate on it (Gmail does) show it once.
 */
#ifndef VID2MP3_MESSAGE_H
#define VID2MP3_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAIL_ADDRESS_MAX 254 /* RFC 5321 path limit, less the brackets */

/* What one notification says. Strings are borrowed for the call. */
struct mail_facts {
    const char *from;     /* sender addr-spec (MAIL_FROM) */
    const char *to;       /* recipient addr-spec (the job's owner) */
    const char *job_id;   /* [0-9a-f]{24}: the Message-ID's left part */
    const char *filename; /* the uploaded file's name, any bytes */
    bool done;            /* true: the MP3 is ready; false: the conversion failed */
    /* done only */
    const char *mp3_fid; /* the MP3's id */
    const char *url;     /* the download link, PUBLIC_URL/download?fid=ID */
    double duration;     /* seconds; < 0 when unknown */
    int64_t bytes;       /* the MP3's size; < 0 when unknown */
    /* failed only */
    const char *error; /* the reason, in plain words, any bytes */
    /* both */
    int64_t date; /* unix seconds, for the Date header */
};

/*
 * True when s is one addr-spec a mail server can take: "local@domain",
 * printable ASCII only, at most MAIL_ADDRESS_MAX bytes, local part at most
 * 64 bytes of dot-atom (RFC 5322 atext and single dots, not first or last),
 * domain of dot-separated labels of [A-Za-z0-9-] (1..63 each, not starting
 * or ending with '-'), or an address literal [IPv4]. No display names,
 * comments, quotes, angle brackets, commas, spaces or control characters.
 */
bool mail_address_valid(const char *s);

/*
 * Composes the message. Returns a NUL-terminated CRLF text the caller
 * frees, with its length in *len (len may be NULL); NULL with a one-line
 * reason in err (may be NULL) when f is NULL, an address is not valid
 * (mail_address_valid), job_id is not 24 lowercase hex digits, or memory
 * runs out. NULL strings other than the addresses and job_id read as "".
 * Uses libsodium's random source for the MIME boundary, so sodium_init()
 * must have run (main does it). Does not block.
 */
char *mail_compose(const struct mail_facts *f, size_t *len, char *err, size_t errlen);

#endif
