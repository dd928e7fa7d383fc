/* Unit tests: auth/password. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "auth/password.h"

static void hash_and_verify(void **state)
{
    (void)state;
    struct password_pool *p = password_pool_new(1);
    char h[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash(p, "correct horse", h), PASSWORD_OK);
    assert_non_null(strstr(h, "$argon2id$"));
    assert_null(strstr(h, "correct horse"));
    assert_int_equal(password_verify(p, h, "correct horse"), PASSWORD_OK);
    assert_int_equal(password_verify(p, h, "correct horsE"), PASSWORD_EMISMATCH);
    assert_int_equal(password_verify(p, "not a hash", "x"), PASSWORD_EMISMATCH);
    assert_false(password_needs_rehash(h));
    password_pool_free(p);
}

static void weak_hash_needs_rehash(void **state)
{
    (void)state;
    char weak[crypto_pwhash_STRBYTES];
    assert_int_equal(
        crypto_pwhash_str(weak, "pw", 2, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN),
        0);
    assert_true(password_needs_rehash(weak));
}

static struct password_pool *shared;

static void *hash_one(void *arg)
{
    (void)arg;
    char h[PASSWORD_HASH_MAX];
    return (void *)(long)password_hash(shared, "parallel password", h);
}

static void concurrency_is_bounded(void **state)
{
    (void)state;
    shared = password_pool_new(2);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, hash_one, NULL);
    for (int i = 0; i < 8; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_int_equal((long)rc, PASSWORD_OK);
    }
    assert_true(password_pool_peak(shared) <= 2);
    assert_true(password_pool_peak(shared) >= 1);
    assert_int_equal(password_pool_active(shared), 0);
    password_pool_free(shared);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_and_verify),
        cmocka_unit_test(weak_hash_needs_rehash),
        cmocka_unit_test(concurrency_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
