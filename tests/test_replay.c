/* test_replay.c - the replay guard: replays, the window of seen seqs (clients sharing a key),
 * seq jumps, clock skew, bounded capacity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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
    assert_int_equal(cpn_replay_check(g, k, seq, NOW, NOW), CPN_E_REPLAY); /* the same */
    assert_int_equal(cpn_replay_check(g, k, seq + 1, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, seq + 1, NOW, NOW), CPN_E_REPLAY);
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

/* Two clients of one key: the later-signed message arrives first; the earlier one is still
 * accepted, once. (The old guard, "seq above the last accepted", refused it.) */
static void test_window_out_of_order(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 1);
    uint64_t base = NOW << 12;
    assert_int_equal(cpn_replay_check(g, k, base + 100, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_peek(g, k, base + 50, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 50, NOW, NOW), CPN_OK); /* below top */
    assert_int_equal(cpn_replay_check(g, k, base + 50, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_peek(g, k, base + 50, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 75, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 200, NOW, NOW), CPN_OK); /* new top */
    /* every seq taken once stays refused after the top moved */
    assert_int_equal(cpn_replay_check(g, k, base + 100, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 75, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 50, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 200, NOW, NOW), CPN_E_REPLAY);
    /* a clock 20 s behind the others is still inside (the window counts seqs, not time) */
    uint64_t behind = (NOW - 20000) << 12;
    assert_int_equal(cpn_replay_check(g, k, behind, NOW - 20000, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, behind, NOW - 20000, NOW), CPN_E_REPLAY);
    cpn_replay_destroy(&g);
}

/* The window holds CPN_REPLAY_WINDOW seqs: below a full window is refused, and the seq that
 * leaves the window (the lowest) is refused from then on. */
static void test_window_full(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 1);
    const uint64_t w = CPN_REPLAY_WINDOW;
    uint64_t base = NOW << 12;
    /* top = base + 1000, then w - 1 seqs below it: base + 1 .. base + w - 1 */
    assert_int_equal(cpn_replay_check(g, k, base + 1000, NOW, NOW), CPN_OK);
    for (uint64_t i = 1; i < w; i++)
        assert_int_equal(cpn_replay_check(g, k, base + i, NOW, NOW), CPN_OK);
    /* full: below its lowest (base + 1) is refused, not recorded */
    assert_int_equal(cpn_replay_check(g, k, base, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base - 5000, NOW, NOW), CPN_E_REPLAY);
    /* a new seq inside (above the lowest) pushes the lowest out */
    assert_int_equal(cpn_replay_check(g, k, base + 500, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 1, NOW, NOW), CPN_E_REPLAY); /* left */
    assert_int_equal(cpn_replay_check(g, k, base + 2, NOW, NOW), CPN_E_REPLAY); /* seen */
    /* a new top pushes the lowest out too */
    assert_int_equal(cpn_replay_check(g, k, base + 2000, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 2, NOW, NOW), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 3, NOW, NOW), CPN_E_REPLAY);
    /* between the lowest held (base + 4) and the top, unseen: accepted */
    assert_int_equal(cpn_replay_check(g, k, base + 1500, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 4, NOW, NOW), CPN_E_REPLAY);
    cpn_replay_destroy(&g);
}

/* The window stores 32-bit distances below the top: a seq more than UINT32_MAX below it is
 * outside, and a top that jumps that far leaves every older seq refused. */
static void test_window_distance_bound(void **state)
{
    (void)state;
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 1);
    uint64_t base = NOW << 12, far = (uint64_t)UINT32_MAX;
    assert_int_equal(cpn_replay_check(g, k, base + far + 1, NOW, NOW + 0), CPN_E_SEQ_JUMP);
    /* with a clock 2^20 ms (17.5 min) later, the seq-jump rule allows it */
    uint64_t later = NOW + (1ull << 20) + 1;
    assert_int_equal(cpn_replay_check(g, k, base, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + 7, NOW, NOW), CPN_OK);
    assert_int_equal(cpn_replay_check(g, k, base + far + 10, later, later), CPN_OK);
    /* base + 10 is exactly UINT32_MAX below the top: inside; base + 9 is not */
    assert_int_equal(cpn_replay_check(g, k, base + 9, later, later), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 10, later, later), CPN_OK);
    /* the two seqs the jump pushed out stay refused */
    assert_int_equal(cpn_replay_check(g, k, base, later, later), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 7, later, later), CPN_E_REPLAY);
    assert_int_equal(cpn_replay_check(g, k, base + 10, later, later), CPN_E_REPLAY);
    cpn_replay_destroy(&g);
}

/* Against a model that keeps every accepted seq: accept iff never accepted and (fewer than
 * CPN_REPLAY_WINDOW accepted, or above the CPN_REPLAY_WINDOW-th highest accepted). Random
 * seqs in a narrow range make every case frequent: duplicates, out of order, below. */
static int s_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void test_window_model(void **state)
{
    (void)state;
    enum { OPS = 4000 };
    cpn_replay_t *g = cpn_replay_new(4, SKEW);
    uint64_t *acc = calloc(OPS, sizeof *acc), *sorted = calloc(OPS, sizeof *sorted);
    size_t n_acc = 0, n_ok = 0, n_refused = 0;
    uint8_t k[32];
    s_key(k, 9);
    assert_non_null(acc);
    assert_non_null(sorted);
    uint64_t base = NOW << 12, drift = 0;
    srand(12345);
    for (int op = 0; op < OPS; op++) {
        drift += (uint64_t)(rand() % 3);                        /* the clock moves on */
        uint64_t seq = base + drift + (uint64_t)(rand() % 400); /* some behind, some ahead */
        bool seen = false;
        for (size_t i = 0; i < n_acc && !seen; i++)
            seen = acc[i] == seq;
        memcpy(sorted, acc, n_acc * sizeof *acc);
        qsort(sorted, n_acc, sizeof *sorted, s_cmp_desc);
        bool inside = n_acc < CPN_REPLAY_WINDOW || seq > sorted[CPN_REPLAY_WINDOW - 1];
        int want = !seen && inside ? CPN_OK : CPN_E_REPLAY;
        assert_int_equal(cpn_replay_peek(g, k, seq, NOW, NOW), want);
        assert_int_equal(cpn_replay_check(g, k, seq, NOW, NOW), want);
        if (want == CPN_OK) {
            acc[n_acc++] = seq;
            n_ok++;
        } else
            n_refused++;
    }
    /* both outcomes happened often */
    assert_true(n_ok > OPS / 10 && n_refused > OPS / 10);
    free(acc);
    free(sorted);
    cpn_replay_destroy(&g);
}

/* Eight clients of one key, each with its own random low bits and a clock up to 25 ms off,
 * 20 messages each, arriving interleaved in whatever order: every one is accepted once. */
static void test_shared_key_clients(void **state)
{
    (void)state;
    enum { CLIENTS = 8, EACH = 20 };
    cpn_replay_t *g = cpn_replay_new(16, SKEW);
    uint8_t k[32];
    s_key(k, 3);
    uint64_t seqs[CLIENTS * EACH], last[CLIENTS] = {0};
    srand(777);
    for (int m = 0; m < EACH; m++)
        for (int c = 0; c < CLIENTS; c++) {
            uint64_t t = NOW + (uint64_t)m * 3 + (uint64_t)(c * 7 % 25); /* skewed clocks */
            last[c] = cpn_seq_next_rand(last[c], t, (uint32_t)rand());
            seqs[m * CLIENTS + c] = last[c];
        }
    /* shuffle within runs of 48: a message overtaken by up to 47 others of its key */
    for (size_t s0 = 0; s0 < CLIENTS * EACH; s0 += 48) {
        size_t len = CLIENTS * EACH - s0 < 48 ? CLIENTS * EACH - s0 : 48;
        for (size_t i = len - 1; i > 0; i--) {
            size_t j = (size_t)rand() % (i + 1);
            uint64_t tmp = seqs[s0 + i];
            seqs[s0 + i] = seqs[s0 + j];
            seqs[s0 + j] = tmp;
        }
    }
    for (size_t i = 0; i < CLIENTS * EACH; i++)
        assert_int_equal(cpn_replay_check(g, k, seqs[i], NOW, NOW + 30), CPN_OK);
    for (size_t i = 0; i < CLIENTS * EACH; i++)
        assert_int_equal(cpn_replay_check(g, k, seqs[i], NOW, NOW + 30), CPN_E_REPLAY);
    /* the bytes per sender the docs state */
    assert_int_equal(cpn_replay_entry_bytes(), CPN_REPLAY_ENTRY_BYTES);
    cpn_replay_destroy(&g);
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
        cmocka_unit_test(test_window_out_of_order),
        cmocka_unit_test(test_window_full),
        cmocka_unit_test(test_window_distance_bound),
        cmocka_unit_test(test_window_model),
        cmocka_unit_test(test_shared_key_clients),
        cmocka_unit_test(test_clock_skew),
        cmocka_unit_test(test_seq_jump),
        cmocka_unit_test(test_stolen_key_cannot_lock_out_owner),
        cmocka_unit_test(test_capacity_and_eviction),
        cmocka_unit_test(test_many_senders_and_churn),
    };
    return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
