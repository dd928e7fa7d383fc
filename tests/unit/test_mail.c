/* Unit: the mail backends' pure parts (SMTP URL parsing, message ids,
 * the sender address) and the outbox on a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/mail.h"

static void loopback_hosts(void **state)
{
    (void)state;
    const char *yes[] = {"smtp://localhost:25", "smtp://127.0.0.1:2525", "smtps://127.1.2.3",
                         "smtp://[::1]:587",    "SMTP://127.0.0.1",      NULL};
    const char *no[] = {"smtp://127.relay.example:25",
                        "smtp://mail.example.com:587",
                        "smtps://10.0.0.1",
                        "smtp://128.0.0.1",
                        "smtp://localhost.evil.example",
                        "smtp://[::2]:25",
                        NULL};
    char err[128];
    for (int i = 0; yes[i] != NULL; i++) {
        bool lo = false;
        assert_int_equal(mail_smtp_url_loopback(yes[i], &lo, err, sizeof(err)), 0);
        if (!lo)
            fail_msg("%s: not seen as loopback", yes[i]);
    }
    for (int i = 0; no[i] != NULL; i++) {
        bool lo = true;
        assert_int_equal(mail_smtp_url_loopback(no[i], &lo, err, sizeof(err)), 0);
        if (lo)
            fail_msg("%s: seen as loopback", no[i]);
    }
    bool lo;
    assert_int_equal(mail_smtp_url_loopback("http://127.0.0.1", &lo, err, sizeof(err)), -1);
    assert_int_equal(mail_smtp_url_loopback("not a url", &lo, err, sizeof(err)), -1);
}

/* SMTP_TLS: when STARTTLS must succeed before anything else is sent. */
static void tls_modes(void **state)
{
    (void)state;
    assert_true(mail_tls_mandatory(MAIL_TLS_AUTO, false));
    assert_false(mail_tls_mandatory(MAIL_TLS_AUTO, true));
    assert_true(mail_tls_mandatory(MAIL_TLS_REQUIRED, false));
    assert_true(mail_tls_mandatory(MAIL_TLS_REQUIRED, true));
    assert_false(mail_tls_mandatory(MAIL_TLS_OPTIONAL, false));
    assert_false(mail_tls_mandatory(MAIL_TLS_OPTIONAL, true));
}

static void message_ids(void **state)
{
    (void)state;
    assert_true(mail_id_valid("0123456789abcdef01234567"));
    assert_true(mail_id_valid("a.b_c-D"));
    assert_false(mail_id_valid(""));
    assert_false(mail_id_valid("."));
    assert_false(mail_id_valid(".."));
    assert_false(mail_id_valid("../x"));
    assert_false(mail_id_valid("a/b"));
    assert_false(mail_id_valid("a b"));
    char big[80];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(mail_id_valid(big));
}

static void outbox_writes_one_file_per_id(void **state)
{
    (void)state;
    char dir[] = "/tmp/vid2mp3-outbox-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char box[600], err[256], reply[MAIL_REPLY_MAX];
    snprintf(box, sizeof(box), "%s/outbox/nested", dir);
    struct mailer *m = mail_outbox_new(box, err, sizeof(err));
    assert_non_null(m);
    assert_string_equal(m->ops->name, "outbox");
    struct mail_envelope e = {"a@example.com", "b@example.com", "job1", "first\r\n", 7, NULL};
    assert_int_equal(mail_send(m, &e, reply, sizeof(reply)), MAIL_OK);
    e.data = "second\r\n";
    e.len = 8;
    assert_int_equal(mail_send(m, &e, reply, sizeof(reply)), MAIL_OK); /* replaces */
    char path[700], buf[64] = "";
    snprintf(path, sizeof(path), "%s/job1.eml", box);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "second\r\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    e.id = "../escape";
    assert_int_equal(mail_send(m, &e, reply, sizeof(reply)), MAIL_EINVAL);
    e.id = "job2";
    e.len = 0;
    assert_int_equal(mail_send(m, &e, reply, sizeof(reply)), MAIL_EINVAL);
    mail_free(m);
    mail_free(NULL);
    unlink(path);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

static void smtp_settings_checked(void **state)
{
    (void)state;
    char err[256];
    struct mail_smtp_settings s = {.url = "ftp://mail.example.com", .timeout = 5};
    assert_null(mail_smtp_new(&s, err, sizeof(err)));
    assert_non_null(strstr(err, "SMTP_URL"));
    s.url = "smtp://mail.example.com:587";
    s.user = "u";
    s.password = "p";
    struct mailer *m = mail_smtp_new(&s, err, sizeof(err));
    assert_non_null(m);
    assert_string_equal(m->ops->name, "smtp");
    /* a refused address never reaches the network */
    char reply[MAIL_REPLY_MAX];
    struct mail_envelope e = {
        "a@example.com", "b@example.com>\r\nRCPT TO:<c@example.com", "j", "x\r\n", 3, NULL};
    assert_int_equal(mail_send(m, &e, reply, sizeof(reply)), MAIL_EINVAL);
    mail_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loopback_hosts),        cmocka_unit_test(tls_modes),
        cmocka_unit_test(message_ids),           cmocka_unit_test(outbox_writes_one_file_per_id),
        cmocka_unit_test(smtp_settings_checked),
    };
    return cmocka_run_group_tests_name("mail", tests, NULL, NULL);
}
