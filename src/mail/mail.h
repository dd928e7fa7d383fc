/*
 * mail: sending one composed message (message.h) to one recipient, behind
 * one interface with two backends (DESIGN §2):
 *   - SMTP through libcurl (smtp.c), chosen when SMTP_URL or GMAIL_ADDRESS
 *     is set. GMAIL_ADDRESS/GMAIL_PASSWORD mean smtp.gmail.com:587 with that
 *     account. Credentials are only ever sent after STARTTLS (or over
 *     smtps://): on a non-loopback host, or with SMTP_TLS=required, a server
 *     that does not offer STARTTLS gets nothing, not even the envelope.
 *   - the outbox (outbox.c), the embedded default: DATA_DIR/outbox/ID.eml,
 *     written to a temporary file, fsync'd and renamed, so a reader never
 *     sees half a message and a repeat of ID replaces, never duplicates.
 *
 * A send's outcome says what to do next:
 *   MAIL_OK          accepted by the server (or stored in the outbox);
 *   MAIL_ETRANSIENT  try again later: the server is down or slow, answered
 *                    4xx, TLS or login failed (a setting that an operator
 *                    fixes, after which the message must still go);
 *   MAIL_EPERMANENT  the server refused this message for good (5xx to
 *                    MAIL FROM, RCPT TO or DATA): sending it again cannot
 *                    help;
 *   MAIL_EINVAL      the arguments are not usable (an address that is not
 *                    one valid address, an empty message).
 * The server's last reply ("550 5.1.1 Mailbox unavailable") or the reason
 * is written to reply. Sends are thread-safe and block for at most the
 * configured timeouts.
 */
#ifndef VID2MP3_MAIL_H
#define VID2MP3_MAIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

enum {
    MAIL_OK = 0,
    MAIL_ETRANSIENT = -1,
    MAIL_EPERMANENT = -2,
    MAIL_EINVAL = -3,
};

#define MAIL_REPLY_MAX 256

/* One message for one recipient. id names it in the outbox and in logs:
 * [A-Za-z0-9._-]{1,64}. data is the whole RFC 5322 text, CRLF lines. */
struct mail_envelope {
    const char *from;
    const char *to;
    const char *id;
    const char *data;
    size_t len;
    const atomic_int *cancel; /* may be NULL; non-zero: give up now (transient) */
};

struct mail_ops {
    const char *name; /* "smtp", "outbox" */
    int (*send)(void *h, const struct mail_envelope *e, char *reply, size_t replylen);
    void (*free)(void *h);
};

struct mailer {
    const struct mail_ops *ops;
    void *h;
};

/* SMTP_TLS: when an smtp:// connection must upgrade with STARTTLS. */
enum mail_tls {
    MAIL_TLS_AUTO,     /* mandatory unless the host is a loopback address */
    MAIL_TLS_REQUIRED, /* mandatory everywhere */
    MAIL_TLS_OPTIONAL, /* used when offered, else plain: a local mail catcher */
};

/* Whether a connection to a host (loopback or not) must be TLS under mode;
 * when not, STARTTLS is still used if the server offers it. */
bool mail_tls_mandatory(enum mail_tls mode, bool loopback);

/* SMTP settings; strings are borrowed and must outlive the mailer. */
struct mail_smtp_settings {
    const char *url;  /* smtp://host[:port] or smtps://host[:port] */
    const char *user; /* NULL: no AUTH */
    const char *password;
    const char *ca_file;  /* NULL: the system's CAs */
    enum mail_tls tls;    /* when STARTTLS is mandatory (SMTP_TLS) */
    long connect_timeout; /* seconds */
    long timeout;         /* seconds for one whole send */
};

/*
 * Opens the backend the configuration selects. Returns a mailer, or NULL
 * with a one-line reason in err (an SMTP_URL that is not smtp:// or
 * smtps://, an outbox directory that cannot be made).
 */
struct mailer *mail_open(const struct config *cfg, char *err, size_t errlen);
struct mailer *mail_smtp_new(const struct mail_smtp_settings *s, char *err, size_t errlen);
struct mailer *mail_outbox_new(const char *dir, char *err, size_t errlen);
void mail_free(struct mailer *m);

static inline int mail_send(struct mailer *m, const struct mail_envelope *e, char *reply,
                            size_t replylen)
{
    return m->ops->send(m->h, e, reply, replylen);
}

/* Parses an SMTP_URL: 0 with *out true when its host is this machine
 * (localhost, an IPv4 address in 127.0.0.0/8, [::1]; a name that merely
 * starts with "127." is not), or -1 with err when it is not an smtp:// or
 * smtps:// URL with a host. */
int mail_smtp_url_loopback(const char *url, bool *out, char *err, size_t errlen);

/* The sender address the configuration gives: MAIL_FROM, else
 * GMAIL_ADDRESS, else SMTP_USER when it is an address, else
 * "vid2mp3@localhost". */
const char *mail_from_address(const struct config *cfg);

/* True when id is usable as a message id: [A-Za-z0-9._-]{1,64}, not "." or
 * "..". */
bool mail_id_valid(const char *id);

const char *mail_strerror(int code);

#endif
