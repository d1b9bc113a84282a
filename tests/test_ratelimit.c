/* test_ratelimit.c - token buckets per sender: burst, refill, the bounded table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"

static void s_key(uint8_t key[CPN_PK_LEN], uint32_t n)
{
    memset(key, 0, CPN_PK_LEN);
    memcpy(key, &n, sizeof n);
}

static void test_burst_then_refused(void **state)
{
    (void)state;
    uint8_t k[CPN_PK_LEN];
    ratelimit_t *rl = ratelimit_new(200, 400, 16);
    assert_non_null(rl);
    s_key(k, 1);
    for (int i = 0; i < 400; i++)
        assert_int_equal(ratelimit_take(rl, k, 1000), CPN_OK);
    assert_int_equal(ratelimit_take(rl, k, 1000), CPN_E_RATE);
    assert_int_equal(ratelimit_refused(rl), 1);
    /* Another sender has its own bucket. */
    s_key(k, 2);
    assert_int_equal(ratelimit_take(rl, k, 1000), CPN_OK);
    assert_int_equal(ratelimit_size(rl), 2);
    ratelimit_destroy(&rl);
    assert_null(rl);
    ratelimit_destroy(&rl); /* NULL is fine */
}

static void test_refill(void **state)
{
    (void)state;
    uint8_t k[CPN_PK_LEN];
    ratelimit_t *rl = ratelimit_new(200, 400, 16);
    assert_non_null(rl);
    s_key(k, 7);
    for (int i = 0; i < 400; i++)
        assert_int_equal(ratelimit_take(rl, k, 0), CPN_OK);
    assert_int_equal(ratelimit_take(rl, k, 0), CPN_E_RATE);
    /* 200/s = one token per 5 ms: 4 ms is not enough, 5 ms is, for exactly one. */
    assert_int_equal(ratelimit_take(rl, k, 4), CPN_E_RATE);
    assert_int_equal(ratelimit_take(rl, k, 5), CPN_OK);
    assert_int_equal(ratelimit_take(rl, k, 5), CPN_E_RATE);
    /* One second later: 200 tokens, not more. */
    for (int i = 0; i < 200; i++)
        assert_int_equal(ratelimit_take(rl, k, 1005), CPN_OK);
    assert_int_equal(ratelimit_take(rl, k, 1005), CPN_E_RATE);
    /* A long pause refills to the burst, never above it (and a huge gap does not overflow). */
    int ok = 0;
    while (ratelimit_take(rl, k, UINT64_MAX / 2) == CPN_OK)
        ok++;
    assert_int_equal(ok, 400);
    /* Time going backwards adds nothing and does not crash. */
    assert_int_equal(ratelimit_take(rl, k, 10), CPN_E_RATE);
    ratelimit_destroy(&rl);
}

static void test_table_bound_and_eviction(void **state)
{
    (void)state;
    uint8_t a[CPN_PK_LEN], b[CPN_PK_LEN], c[CPN_PK_LEN];
    /* 10/s, burst 10: a bucket refills from empty in 1000 ms, so idle = 1000 ms. */
    ratelimit_t *rl = ratelimit_new(10, 10, 2);
    assert_non_null(rl);
    s_key(a, 1);
    s_key(b, 2);
    s_key(c, 3);
    assert_int_equal(ratelimit_take(rl, a, 0), CPN_OK);
    assert_int_equal(ratelimit_take(rl, b, 500), CPN_OK);
    /* Full, and the least recently seen (a) was seen 900 ms ago: not idle. */
    assert_int_equal(ratelimit_take(rl, c, 900), CPN_E_BUSY);
    assert_int_equal(ratelimit_refused_full(rl), 1);
    assert_int_equal(ratelimit_size(rl), 2);
    /* At 1000 ms a is idle and makes room for c; b stays. */
    assert_int_equal(ratelimit_take(rl, c, 1000), CPN_OK);
    assert_int_equal(ratelimit_size(rl), 2);
    /* b was kept with its own bucket: 9 left at 500 ms, +5 by 1000 ms, capped at 10. */
    int ok = 0;
    while (ratelimit_take(rl, b, 1000) == CPN_OK)
        ok++;
    assert_int_equal(ok, 10);
    ratelimit_destroy(&rl);
}

static void test_lru_order(void **state)
{
    (void)state;
    uint8_t a[CPN_PK_LEN], b[CPN_PK_LEN], c[CPN_PK_LEN];
    ratelimit_t *rl = ratelimit_new(10, 10, 2);
    assert_non_null(rl);
    s_key(a, 1);
    s_key(b, 2);
    s_key(c, 3);
    assert_int_equal(ratelimit_take(rl, a, 0), CPN_OK);
    assert_int_equal(ratelimit_take(rl, b, 0), CPN_OK);
    /* a seen again later: b becomes the least recently seen. */
    assert_int_equal(ratelimit_take(rl, a, 600), CPN_OK);
    /* At 1000 ms b is idle, a is not: c evicts b. */
    assert_int_equal(ratelimit_take(rl, c, 1000), CPN_OK);
    /* b is gone: taking b now needs room, and neither a (600) nor c (1000) is idle. */
    assert_int_equal(ratelimit_take(rl, b, 1001), CPN_E_BUSY);
    ratelimit_destroy(&rl);
}

static void test_set_and_disabled(void **state)
{
    (void)state;
    uint8_t k[CPN_PK_LEN];
    ratelimit_t *rl = ratelimit_new(0, 0, 1);
    assert_non_null(rl);
    s_key(k, 9);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(ratelimit_take(rl, k, 0), CPN_OK);
    assert_int_equal(ratelimit_size(rl), 0);
    /* Enabled on reload; a lowered burst caps tokens already held. */
    assert_int_equal(ratelimit_set(rl, 1, 0), CPN_E_INVAL);
    assert_int_equal(ratelimit_set(rl, 100, 50), CPN_OK);
    assert_int_equal(ratelimit_take(rl, k, 0), CPN_OK);
    assert_int_equal(ratelimit_set(rl, 100, 3), CPN_OK);
    int ok = 0;
    while (ratelimit_take(rl, k, 0) == CPN_OK)
        ok++;
    assert_int_equal(ok, 3);
    ratelimit_destroy(&rl);
    /* Bad arguments. */
    assert_null(ratelimit_new(10, 0, 4));
    assert_null(ratelimit_new(10, 10, 0));
    assert_int_equal(ratelimit_take(NULL, k, 0), CPN_E_INVAL);
}

static void test_many_senders(void **state)
{
    (void)state;
    uint8_t k[CPN_PK_LEN];
    const uint32_t n = 5000;
    ratelimit_t *rl = ratelimit_new(1, 2, n);
    assert_non_null(rl);
    for (uint32_t i = 0; i < n; i++) {
        s_key(k, i);
        assert_int_equal(ratelimit_take(rl, k, 0), CPN_OK);
    }
    assert_int_equal(ratelimit_size(rl), n);
    for (uint32_t i = 0; i < n; i++) {
        s_key(k, i);
        assert_int_equal(ratelimit_take(rl, k, 0), CPN_OK);   /* second token */
        assert_int_equal(ratelimit_take(rl, k, 0), CPN_E_RATE); /* none left */
    }
    s_key(k, n);
    assert_int_equal(ratelimit_take(rl, k, 1999), CPN_E_BUSY);
    /* After 2 s all are idle; new senders replace the oldest one by one. */
    for (uint32_t i = n; i < 2 * n; i++) {
        s_key(k, i);
        assert_int_equal(ratelimit_take(rl, k, 2000), CPN_OK);
    }
    assert_int_equal(ratelimit_size(rl), n);
    ratelimit_destroy(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_table_bound_and_eviction),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_set_and_disabled),
        cmocka_unit_test(test_many_senders),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
