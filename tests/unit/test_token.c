/* Unit tests: core/token (JWT). Hostile tokens are forged with libjwt and
 * by hand, so each refusal is checked against a token a real attacker
 * could send. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include "harness.h"
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/token.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define NOW ((time_t)1800000000)

static const struct token_keys keys = {
    (const unsigned char *)SECRET,
    sizeof(SECRET) - 1,
    "vid2mp3",
    86400,
};

static char *b64url(const char *s)
{
    size_t n = sodium_base64_ENCODED_LEN(strlen(s), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(n);
    sodium_bin2base64(out, n, (const unsigned char *)s, strlen(s),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

static void round_trip(void **state)
{
    (void)state;
    char *t = NULL;
    assert_int_equal(token_issue(&keys, "a@example.com", true, NOW, &t), TOKEN_OK);
    struct token_claims c;
    assert_int_equal(token_verify(&keys, t, NOW + 10, &c), TOKEN_OK);
    assert_string_equal(c.sub, "a@example.com");
    assert_true(c.admin);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 86400);
    json_t *j = token_claims_json(&keys, &c);
    assert_string_equal(json_string_value(json_object_get(j, "username")), "a@example.com");
    assert_true(json_is_true(json_object_get(j, "admin")));
    json_decref(j);
    free(t);
}

static void expiry_with_leeway(void **state)
{
    (void)state;
    char *t = NULL;
    struct token_claims c;
    assert_int_equal(token_issue(&keys, "a@example.com", false, NOW, &t), TOKEN_OK);
    assert_int_equal(token_verify(&keys, t, NOW + 86400 + TOKEN_LEEWAY, &c), TOKEN_OK);
    assert_int_equal(token_verify(&keys, t, NOW + 86400 + TOKEN_LEEWAY + 1, &c), TOKEN_EEXPIRED);
    /* issued in the future beyond the leeway */
    assert_int_equal(token_verify(&keys, t, NOW - TOKEN_LEEWAY - 1, &c), TOKEN_ECLAIMS);
    free(t);
}

static void other_secret(void **state)
{
    (void)state;
    char *t =
        th_forge_jwt("HS256", "another-secret-another-secret-xx",
                     "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000,"
                     "\"exp\":1800086400}");
    struct token_claims c;
    assert_int_equal(token_verify(&keys, t, NOW, &c), TOKEN_ESIGNATURE);
    free(t);
}

static void algorithm_switch(void **state)
{
    (void)state;
    const char *claims = "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,"
                         "\"iat\":1800000000,\"exp\":1800086400}";
    struct token_claims c;
    char *t = th_forge_jwt("HS512", SECRET, claims);
    assert_int_equal(token_verify(&keys, t, NOW, &c), TOKEN_EALG);
    free(t);
    t = th_forge_jwt("HS384", SECRET, claims);
    assert_int_equal(token_verify(&keys, t, NOW, &c), TOKEN_EALG);
    free(t);
}

static void alg_none(void **state)
{
    (void)state;
    struct token_claims c;
    const char *claims = "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,"
                         "\"iat\":1800000000,\"exp\":1800086400}";
    char *t = th_forge_jwt("none", NULL, claims);
    assert_int_not_equal(token_verify(&keys, t, NOW, &c), TOKEN_OK);
    free(t);
    /* by hand, with a signature part present and several spellings */
    const char *headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}",
                             "{\"alg\":\"None\"}",
                             "{\"alg\":\"NONE\"}",
                             "{\"typ\":\"JWT\"}",
                             "{\"alg\":null}",
                             "{\"alg\":\"HS256\",\"alg\":\"none\"}"};
    char *p = b64url(claims);
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *h = b64url(headers[i]);
        char tok[1024];
        snprintf(tok, sizeof(tok), "%s.%s.c2lnbmF0dXJl", h, p);
        int rc = token_verify(&keys, tok, NOW, &c);
        assert_true(rc == TOKEN_EALG || rc == TOKEN_EMALFORMED);
        free(h);
    }
    free(p);
}

static void required_claims(void **state)
{
    (void)state;
    struct token_claims c;
    const char *bad[] = {
        "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000}", /* no exp */
        "{\"iss\":\"other\",\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000,\"exp\":"
        "1800086400}",
        "{\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000,\"exp\":1800086400}",   /* no iss */
        "{\"iss\":\"vid2mp3\",\"admin\":true,\"iat\":1800000000,\"exp\":1800086400}", /* no sub */
        "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":\"yes\",\"iat\":1800000000,"
        "\"exp\":1800086400}",
        "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000,"
        "\"exp\":\"1800086400\"}",
        "{\"iss\":\"vid2mp3\",\"sub\":\"a@b.c\",\"admin\":true,\"iat\":1800000000,"
        "\"exp\":1800086400,\"nbf\":1900000000}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *t = th_forge_jwt("HS256", SECRET, bad[i]);
        int rc = token_verify(&keys, t, NOW, &c);
        if (rc == TOKEN_OK)
            fail_msg("accepted claims %s", bad[i]);
        free(t);
    }
}

static void malformed_and_long(void **state)
{
    (void)state;
    struct token_claims c;
    const char *bad[] = {"",    "garbage",  "a.b",         "a.b.c.d",
                         "...", "e30.e30.", "!!!.e30.sig", "eyJhbGciOiJIUzI1NiJ9.!!!.sig"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(token_verify(&keys, bad[i], NOW, &c), TOKEN_OK);
    char *t = NULL;
    assert_int_equal(token_issue(&keys, "a@example.com", false, NOW, &t), TOKEN_OK);
    char *big = malloc(TOKEN_MAX_LEN + 100);
    memset(big, 'a', TOKEN_MAX_LEN + 99);
    big[TOKEN_MAX_LEN + 99] = '\0';
    memcpy(big, t, strlen(t));
    assert_int_equal(token_verify(&keys, big, NOW, &c), TOKEN_ETOOLONG);
    free(big);
    free(t);
}

static void bearer_header(void **state)
{
    (void)state;
    assert_string_equal(token_bearer("Bearer abc"), "abc");
    assert_string_equal(token_bearer("bearer  abc"), "abc");
    assert_null(token_bearer("Bearer "));
    assert_null(token_bearer("Basic abc"));
    assert_null(token_bearer("Bearerabc"));
    assert_null(token_bearer(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),         cmocka_unit_test(expiry_with_leeway),
        cmocka_unit_test(other_secret),       cmocka_unit_test(algorithm_switch),
        cmocka_unit_test(alg_none),           cmocka_unit_test(required_claims),
        cmocka_unit_test(malformed_and_long), cmocka_unit_test(bearer_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
