/* mail: backend choice and helpers shared by both backends; see mail.h. */
#include "mail/mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GMAIL_URL "smtp://smtp.gmail.com:587"
#define CONNECT_TIMEOUT_S 10

struct mailer *mail_open(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->smtp_url == NULL && cfg->gmail_address == NULL) {
        char dir[4096];
        if (snprintf(dir, sizeof(dir), "%s/outbox", cfg->data_dir) >= (int)sizeof(dir)) {
            snprintf(err, errlen, "DATA_DIR: path too long");
            return NULL;
        }
        return mail_outbox_new(dir, err, errlen);
    }
    struct mail_smtp_settings s = {
        .url = cfg->smtp_url != NULL ? cfg->smtp_url : GMAIL_URL,
        .user = cfg->smtp_user,
        .password = cfg->smtp_password,
        .ca_file = cfg->smtp_ca_file,
        .tls = strcmp(cfg->smtp_tls, "required") == 0   ? MAIL_TLS_REQUIRED
               : strcmp(cfg->smtp_tls, "optional") == 0 ? MAIL_TLS_OPTIONAL
                                                        : MAIL_TLS_AUTO,
        .connect_timeout =
            cfg->smtp_timeout < CONNECT_TIMEOUT_S ? cfg->smtp_timeout : CONNECT_TIMEOUT_S,
        .timeout = cfg->smtp_timeout,
    };
    if (s.user == NULL && cfg->gmail_address != NULL) {
        /* as specified: the Gmail account signs in with its app password */
        s.user = cfg->gmail_address;
        s.password = cfg->gmail_password;
    }
    if (s.user != NULL && s.password == NULL)
        s.password = "";
    return mail_smtp_new(&s, err, errlen);
}

void mail_free(struct mailer *m)
{
    if (m == NULL)
        return;
    m->ops->free(m->h);
    free(m);
}

const char *mail_from_address(const struct config *cfg)
{
    if (cfg->mail_from != NULL)
        return cfg->mail_from;
    if (cfg->gmail_address != NULL)
        return cfg->gmail_address;
    if (cfg->smtp_user != NULL && strchr(cfg->smtp_user, '@') != NULL)
        return cfg->smtp_user;
    return "vid2mp3@localhost";
}

bool mail_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *mail_strerror(int code)
{
    switch (code) {
    case MAIL_OK:
        return "sent";
    case MAIL_ETRANSIENT:
        return "temporary failure";
    case MAIL_EPERMANENT:
        return "refused by the mail server";
    case MAIL_EINVAL:
        return "invalid message";
    default:
        return "unknown error";
    }
}
