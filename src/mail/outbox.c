/* outbox: the embedded mail backend (mail.h): one .eml file per message in
 * a directory, DATA_DIR/outbox by default. A user reads them with any mail
 * program; a repeat of one message id replaces its file. */
#include "mail/mail.h"

#include "core/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outbox {
    char dir[4096];
};

static int outbox_send(void *h, const struct mail_envelope *e, char *reply, size_t replylen)
{
    struct outbox *o = h;
    if (!mail_id_valid(e->id) || e->len == 0) {
        snprintf(reply, replylen, "the message has no usable id or is empty");
        return MAIL_EINVAL;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.eml", o->dir, e->id);
    int rc = fsutil_write_atomic(path, e->data, e->len, 0600);
    if (rc != 0) {
        /* a full or read-only disk is fixed by an operator; the message waits */
        snprintf(reply, replylen, "cannot write %s: %s", path, strerror(-rc));
        return MAIL_ETRANSIENT;
    }
    snprintf(reply, replylen, "stored in %s", path);
    return MAIL_OK;
}

static void outbox_free(void *h)
{
    free(h);
}

static const struct mail_ops outbox_ops = {
    .name = "outbox",
    .send = outbox_send,
    .free = outbox_free,
};

struct mailer *mail_outbox_new(const char *dir, char *err, size_t errlen)
{
    struct outbox *o = calloc(1, sizeof(*o));
    struct mailer *m = calloc(1, sizeof(*m));
    if (o == NULL || m == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (snprintf(o->dir, sizeof(o->dir), "%s", dir) >= (int)sizeof(o->dir)) {
        snprintf(err, errlen, "outbox directory path too long");
        goto fail;
    }
    int rc = fsutil_mkdirs(dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the outbox %s: %s", dir, strerror(-rc));
        goto fail;
    }
    m->ops = &outbox_ops;
    m->h = o;
    return m;
fail:
    free(o);
    free(m);
    return NULL;
}
