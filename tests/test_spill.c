/* test_spill.c - ordered spill-over's order (broker/spill.c): local offers first, then member by
 * member, by cost, by hops or by the policy's list; a list drops the members it leaves out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "book.h"
#include "spill.h"

/* Peers 1..6: 1 and 2 local, 3 and 4 through member M1 (hops 3 and 4), 5 and 6 through M2
 * (hops 1 and 5). Candidates come in rank order: 3 (M1), 5 (M2), 1 (local), 4 (M1), 6 (M2),
 * 2 (local), as the claim module hands them over: local first, then the rest. */
enum { S_N = 6 };
static const uint8_t s_via_of[S_N + 1] = {0, 0, 0, 0xA1, 0xA1, 0xA2, 0xA2};
static const uint32_t s_hops_of[S_N + 1] = {0, 0, 0, 3, 4, 1, 5};

static void s_key(uint8_t key[CPN_PK_LEN], uint8_t v)
{
    memset(key, 0, CPN_PK_LEN);
    key[0] = v;
    key[31] = v;
}

static book_t *s_book(void)
{
    book_t *b = book_new(100);
    assert_non_null(b);
    for (uint8_t i = 1; i <= S_N; i++) {
        cpn_package_t p;
        memset(&p, 0, sizeof p);
        snprintf(p.id, sizeof p.id, "p%u", i);
        snprintf(p.region, sizeof p.region, "cn-east");
        p.cores = 8;
        p.mem_bytes = 8ULL << 30;
        p.price = 1000u * i;
        p.total = p.free = 2;
        cpn_ad_t ad;
        memset(&ad, 0, sizeof ad);
        snprintf(ad.name, sizeof ad.name, "dc%u", i);
        ad.ttl_s = 600;
        ad.n_packages = 1;
        ad.packages = &p;
        uint8_t k[CPN_PK_LEN], via[CPN_PK_LEN];
        s_key(k, i);
        s_key(via, s_via_of[i]);
        assert_int_equal(book_put_ad(b, k, 1, 1000, &ad, NULL, 0, s_via_of[i] ? via : NULL,
                                     s_hops_of[i]),
                         CPN_OK);
    }
    return b;
}

static size_t s_cands(match_cand_t *c)
{
    static const uint8_t order[] = {1, 2, 3, 5, 4, 6};
    for (size_t i = 0; i < sizeof order; i++) {
        memset(&c[i], 0, sizeof c[i]);
        s_key(c[i].peer, order[i]);
        snprintf(c[i].package, sizeof c[i].package, "p%u", order[i]);
    }
    return sizeof order;
}

/* The order as a string of peer numbers, "123546". */
static void s_run(policy_spill_t mode, const uint32_t pos[2], const char *want, size_t want_drop)
{
    book_t *b = s_book();
    policy_member_t m[2];
    memset(m, 0, sizeof m);
    s_key(m[0].key, 0xA1);
    s_key(m[1].key, 0xA2);
    m[0].spill_pos = pos[0];
    m[1].spill_pos = pos[1];
    policy_t pol;
    memset(&pol, 0, sizeof pol);
    pol.federation.spill = mode;
    pol.federation.members = m;
    pol.federation.n_members = 2;
    match_cand_t c[S_N];
    size_t n = s_cands(c), dropped = 99;
    n = spill_order(b, &pol, c, n, &dropped);
    char got[S_N + 1];
    for (size_t i = 0; i < n; i++)
        got[i] = (char)('0' + c[i].peer[0]);
    got[n] = '\0';
    if (strcmp(got, want) != 0)
        fprintf(stderr, "# mode %d: %s, expected %s\n", (int)mode, got, want);
    assert_string_equal(got, want);
    assert_int_equal(dropped, want_drop);
    book_destroy(&b);
}

static void test_rank_unchanged(void **state)
{
    (void)state;
    const uint32_t pos[2] = {POLICY_SPILL_UNLISTED, POLICY_SPILL_UNLISTED};
    s_run(POLICY_SPILL_RANK, pos, "123546", 0);
}

static void test_cost(void **state)
{
    (void)state;
    const uint32_t pos[2] = {POLICY_SPILL_UNLISTED, POLICY_SPILL_UNLISTED};
    s_run(POLICY_SPILL_COST, pos, "123456", 0); /* M1's best (3) ranks before M2's (5) */
}

static void test_latency(void **state)
{
    (void)state;
    const uint32_t pos[2] = {POLICY_SPILL_UNLISTED, POLICY_SPILL_UNLISTED};
    s_run(POLICY_SPILL_LATENCY, pos, "125634", 0); /* M2 has a peer 1 hop away, M1 3 */
}

static void test_list(void **state)
{
    (void)state;
    const uint32_t both[2] = {1, 0};
    s_run(POLICY_SPILL_LIST, both, "125634", 0);
    const uint32_t only_m1[2] = {0, POLICY_SPILL_UNLISTED};
    s_run(POLICY_SPILL_LIST, only_m1, "1234", 2);
    const uint32_t none[2] = {POLICY_SPILL_UNLISTED, POLICY_SPILL_UNLISTED};
    s_run(POLICY_SPILL_LIST, none, "12", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_unchanged),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests_name("spill", tests, NULL, NULL);
}
