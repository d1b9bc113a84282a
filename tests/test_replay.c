/* test_replay.c - the replay guard: replays, seq jumps, clock skew, bounded capacity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"
#include "replay.h"

#define NOW 1700000000000ull /* ms */
#define SKEW 30000ull

static void s_key(uint8_t k[32], uint32_t n)
{
    memset(k, 0, 32);
    memcpy(k, &n, sizeof n);
    k[31] = 0xaa;
}

static void test_replay_refused(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    assert_non_null(g);
    s_key(k, 1);
    uint64_t seq = cpn_seq_next(0, NOW);
    assert_int_equal(cpn_replay_check(g, k, seq, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, seq, NOW, NOW), CPN_E_REPLAY);     /* the same */
    assert_int_equal(cpn_replay_check(g, k, seq - 1, NOW, NOW), CPN_E_REPLAY); /* older */
    assert_int_equal(cpn_replay_check(g, k, seq + 1, NOW, NOW), CPN_OK);
    /* another sender has its own sequence */
    uint8_t k2[32];
    s_key(k2, 2);
    assert_int_equal(cpn_replay_check(g, k2, seq, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_size(g), 2);
    /* peek does not record */
    assert_int_equal(cpn_replay_peek(g, k, seq + 2, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_peek(g, k, seq + 2, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_peek(g, k, seq + 1, NOW, NOW), CPN_E_REPLAY);
    cpn_replay_destroy(&g);
    assert_null(g);
}

static void test_clock_skew(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 1);
    assert_int_equal(cpn_replay_check(g, k, 1, NOW + SKEW + 1, NOW), CPN_E_TS_SKEW); /* future */
    assert_int_equal(cpn_replay_check(g, k, 1, NOW - SKEW - 1, NOW), CPN_E_TS_SKEW); /* past */
    assert_int_equal(cpn_replay_size(g), 0);
    assert_int_equal(cpn_replay_check(g, k, 1, NOW + SKEW, NOW), CPN_OK); /* the edges pass */
    assert_int_equal(cpn_replay_check(g, k, 2, NOW - SKEW, NOW), CPN_OK);
    cpn_replay_destroy(&g);
}

static void test_seq_jump(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 1);
    uint64_t max = (NOW + SKEW) << 12;
    assert_int_equal(cpn_replay_check(g, k, max + 1, NOW, NOW), CPN_E_SEQ_JUMP);
    assert_int_equal(cpn_replay_check(g, k, max, NOW, NOW), CPN_OK);
    cpn_replay_destroy(&g);
}

static void test_stolen_key_cannot_lock_out_owner(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 7);
    /* The thief tries seq 2^63 and UINT64_MAX with a plausible timestamp: refused. */
    assert_int_equal(cpn_replay_check(g, k, 1ull << 63, NOW, NOW), CPN_E_SEQ_JUMP);
    assert_int_equal(cpn_replay_check(g, k, UINT64_MAX, NOW, NOW), CPN_E_SEQ_JUMP);
    /* ... and with a far-future timestamp to raise the bound: refused for the time. */
    assert_int_equal(cpn_replay_check(g, k, 1ull << 63, 1ull << 51, NOW), CPN_E_TS_SKEW);
    assert_int_equal(cpn_replay_check(g, k, UINT64_MAX, UINT64_MAX, NOW), CPN_E_TS_SKEW);
    /* The most the thief can do: push seq up to the edge of the window. */
    uint64_t thief = (NOW + 2 * SKEW) << 12;
    assert_int_equal(cpn_replay_check(g, k, thief, NOW + SKEW, NOW), CPN_OK);
    /* The owner, whose seq follows its clock, is accepted again within 2 * skew. */
    uint64_t later = NOW + 2 * SKEW + 1;
    uint64_t owner = cpn_seq_next(0, later);
    assert_int_equal(cpn_replay_check(g, k, owner, later, later), CPN_OK);
    cpn_replay_destroy(&g);
}

static void test_capacity_and_eviction(void **state)
{
    (void)state;
    const size_t cap = 8;
    cpn_replay_t *g = cpn_replay_new(cap, SKEW);
    uint8_t k[32];
    for (uint32_t i = 0; i < cap; i++) {
        s_key(k, 100 + i);
        assert_int_equal(cpn_replay_check(g, k, 5, NOW, NOW + i), CPN_OK);
    }
    assert_int_equal(cpn_replay_size(g), cap);
    /* full, nobody idle long enough: a new sender is refused, nothing changes */
    s_key(k, 999);
    assert_int_equal(cpn_replay_peek(g, k, 5, NOW, NOW), CPN_E_REPLAY_FULL);
    assert_int_equal(cpn_replay_check(g, k, 5, NOW, NOW), CPN_E_REPLAY_FULL);
    assert_int_equal(cpn_replay_check(g, k, 5, NOW + 2 * SKEW, NOW + 2 * SKEW),
                     CPN_E_REPLAY_FULL); /* idle exactly 2 * skew is not enough */
    assert_int_equal(cpn_replay_size(g), cap);
    /* known senders still pass */
    s_key(k, 103);
    assert_int_equal(cpn_replay_check(g, k, 6, NOW, NOW + 10), CPN_OK);

    /* Later, sender 100 (the least recently used) has been idle > 2 * skew: evicted. */
    uint64_t later = NOW + 2 * SKEW + 1;
    s_key(k, 999);
    assert_int_equal(cpn_replay_check(g, k, 5, later, later), CPN_OK);
    assert_int_equal(cpn_replay_size(g), cap);
    /* 101 next; 103 was used at NOW + 10, so it outlives 102, 104.. */
    for (uint32_t i = 0; i < 6; i++) {
        s_key(k, 2000 + i);
        assert_int_equal(cpn_replay_check(g, k, 5, later + 2 + i, later + 2 + i), CPN_OK);
    }
    /* Now 103 (NOW + 10) is the only old one left and is idle enough; then nobody is. */
    s_key(k, 3000);
    assert_int_equal(cpn_replay_check(g, k, 5, later + 10, later + 10), CPN_OK);
    s_key(k, 3001);
    assert_int_equal(cpn_replay_check(g, k, 5, later + 11, later + 11), CPN_E_REPLAY_FULL);
    /* The evicted senders are gone; the ones kept are still guarded. */
    s_key(k, 2003);
    assert_int_equal(cpn_replay_check(g, k, 5, later + 12, later + 12), CPN_E_REPLAY);
    s_key(k, 999);
    assert_int_equal(cpn_replay_check(g, k, 5, later + 12, later + 12), CPN_E_REPLAY);
    cpn_replay_destroy(&g);
}

static void test_many_senders_and_churn(void **state)
{
    (void)state;
    /* Fill, then keep replacing under time pressure: the table never exceeds capacity, and
     * every present sender is still found (exercises the index's deletions). */
    const size_t cap = 1000;
    cpn_replay_t *g = cpn_replay_new(cap, 10);
    uint8_t k[32];
    uint64_t t = NOW;
    for (uint32_t i = 0; i < 20000; i++) {
        t += 1;
        s_key(k, i);
        int r = cpn_replay_check(g, k, 1, t, t);
        assert_true(r == CPN_OK || r == CPN_E_REPLAY_FULL);
        assert_true(cpn_replay_size(g) <= cap);
        if (i >= 50) { /* a recent sender is still known */
            s_key(k, i - 5);
            int rr = cpn_replay_peek(g, k, 1, t, t);
            assert_true(rr == CPN_E_REPLAY);
        }
    }
    assert_int_equal(cpn_replay_size(g), cap);
    cpn_replay_destroy(&g);
    assert_null(cpn_replay_new(0, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_clock_skew),
        cmocka_unit_test(test_seq_jump),
        cmocka_unit_test(test_stolen_key_cannot_lock_out_owner),
        cmocka_unit_test(test_capacity_and_eviction),
        cmocka_unit_test(test_many_senders_and_churn),
    };
    return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
