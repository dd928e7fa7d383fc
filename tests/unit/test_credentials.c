/* Unit tests: auth/credentials and users_normalize_email. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/credentials.h"

static char *basic(const char *userpass)
{
    size_t n = sodium_base64_ENCODED_LEN(strlen(userpass), sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(n + 6);
    memcpy(out, "Basic ", 6);
    sodium_bin2base64(out + 6, n, (const unsigned char *)userpass, strlen(userpass),
                      sodium_base64_VARIANT_ORIGINAL);
    return out;
}

static void basic_ok(void **state)
{
    (void)state;
    struct credentials c;
    const char *why = NULL;
    char *h = basic("Alice@Example.COM:pa:ss word");
    assert_int_equal(credentials_from_basic(h, &c, &why), 0);
    assert_string_equal(c.email, "alice@example.com");
    assert_string_equal(c.password, "pa:ss word"); /* only the first colon splits */
    free(h);
    assert_true(credentials_is_basic("basic abc"));
    assert_false(credentials_is_basic("Bearer abc"));
    assert_false(credentials_is_basic(NULL));
}

static void basic_broken(void **state)
{
    (void)state;
    struct credentials c;
    const char *why = NULL;
    assert_int_equal(credentials_from_basic("Basic !!!not-base64", &c, &why), -1);
    assert_non_null(why);
    char *h = basic("no-colon-here");
    assert_int_equal(credentials_from_basic(h, &c, &why), -1);
    assert_non_null(strstr(why, "email:password"));
    free(h);
    h = basic("a@b.c:");
    assert_int_equal(credentials_from_basic(h, &c, &why), -1);
    assert_string_equal(why, "password is required");
    free(h);
    h = basic(":pw");
    assert_int_equal(credentials_from_basic(h, &c, &why), -1);
    free(h);
    assert_int_equal(credentials_from_basic("Basic ", &c, &why), -1);
    /* a NUL byte inside the decoded credentials */
    assert_int_equal(credentials_from_basic("Basic YUBiLmMAOnB3", &c, &why), -1);
    /* longer than any allowed email:password */
    char *big = malloc(5000);
    memset(big, 'a', 4999);
    big[4999] = '\0';
    memcpy(big, "Basic ", 6);
    assert_int_equal(credentials_from_basic(big, &c, &why), -1);
    free(big);
}

static void json_ok(void **state)
{
    (void)state;
    struct credentials c;
    const char *why = NULL;
    const char *b = "{\"email\":\"bob@example.com\",\"password\":\"s3cret\",\"extra\":1}";
    assert_int_equal(credentials_from_json(b, strlen(b), &c, &why), 0);
    assert_string_equal(c.email, "bob@example.com");
    assert_string_equal(c.password, "s3cret");
}

static void json_bad(void **state)
{
    (void)state;
    struct credentials c;
    const char *why = NULL;
    const char *bad[] = {
        "",
        "{",
        "[]",
        "\"x\"",
        "{\"email\":\"a@b.c\"}",
        "{\"password\":\"x\"}",
        "{\"email\":1,\"password\":\"x\"}",
        "{\"email\":\"a@b.c\",\"password\":true}",
        "{\"email\":\"a@b.c\",\"password\":null}",
        "{\"email\":\"\",\"password\":\"x\"}",
        "{\"email\":\"a@b.c\",\"password\":\"\"}",
        "{\"email\":\"not-an-email\",\"password\":\"x\"}",
        "{\"email\":\"a@@b.c\",\"password\":\"x\"}",
        "{\"email\":\"a b@c.d\",\"password\":\"x\"}",
        "{\"email\":\"a@b.c\\r\\nBcc: x@y.z\",\"password\":\"x\"}",
        "{\"email\":\"a@b.c\",\"password\":\"a\\u0000b\"}",
        "{\"email\":\"a@b.c\",\"email\":\"d@e.f\",\"password\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (credentials_from_json(bad[i], strlen(bad[i]), &c, &why) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
    }
}

static void lengths_are_bounded(void **state)
{
    (void)state;
    struct credentials c;
    const char *why = NULL;
    char email[400], pw[PASSWORD_MAX + 2];
    memset(email, 'a', sizeof(email));
    memcpy(email + 300, "@example.com", 13);
    assert_int_equal(credentials_set(&c, email, "pw", &why), -1);
    /* exactly 254 bytes is fine */
    memset(email, 'b', 60);
    email[60] = '@';
    memset(email + 61, 'c', 193);
    email[254] = '\0';
    assert_int_equal(credentials_set(&c, email, "pw", &why), 0);
    memset(pw, 'p', sizeof(pw));
    pw[PASSWORD_MAX] = '\0';
    assert_int_equal(credentials_set(&c, "a@b.c", pw, &why), 0);
    pw[PASSWORD_MAX] = 'p';
    pw[PASSWORD_MAX + 1] = '\0';
    assert_int_equal(credentials_set(&c, "a@b.c", pw, &why), -1);
    assert_non_null(strstr(why, "1024"));
}

static void email_normalization(void **state)
{
    (void)state;
    char out[USERS_EMAIL_MAX + 1];
    assert_int_equal(users_normalize_email("MiXeD@Example.ORG", out), USERS_OK);
    assert_string_equal(out, "mixed@example.org");
    assert_int_equal(users_normalize_email("élodie@exemple.fr", out), USERS_OK);
    assert_string_equal(out, "élodie@exemple.fr");
    assert_int_equal(users_normalize_email("@b.c", out), USERS_EINVAL);
    assert_int_equal(users_normalize_email("a@", out), USERS_EINVAL);
    assert_int_equal(users_normalize_email("a<b>@c.d", out), USERS_EINVAL);
    assert_int_equal(users_normalize_email("a@b.c\n", out), USERS_EINVAL);
    assert_int_equal(users_normalize_email("\xff@b.c", out), USERS_EINVAL);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basic_ok),
        cmocka_unit_test(basic_broken),
        cmocka_unit_test(json_ok),
        cmocka_unit_test(json_bad),
        cmocka_unit_test(lengths_are_bounded),
        cmocka_unit_test(email_normalization),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
