/* test_summary.c - a broker's summary of its own offers (broker/summary.c), from a real book:
 * rows by shape, region and price band, with summed counts and the lowest price; relayed,
 * withdrawn, expired and shared offers left out; row ids stable, the fingerprint following
 * the counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "book.h"
#include "summary.h"

#define NOW 1000000u

static void s_key(uint8_t k[CPN_PK_LEN], uint8_t first)
{
    memset(k, 0x22, CPN_PK_LEN);
    k[0] = first;
}

static cpn_package_t s_pkg(const char *id, uint32_t cores, const char *region, uint64_t price,
                           uint32_t free)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.region, sizeof p.region, "%s", region);
    p.cores = cores;
    p.mem_bytes = (uint64_t)cores << 32;
    p.price = price;
    p.total = 10;
    p.free = free;
    return p;
}

/* Peer `first` advertises pkgs (seq 1, ttl 600 s at NOW), through `via` (NULL: directly). */
static void s_put(book_t *b, uint8_t first, cpn_package_t *pkgs, uint32_t n, const uint8_t *via)
{
    static const uint8_t frame[] = {0x92, 0xc4, 0x00, 0xc4, 0x00};
    uint8_t k[CPN_PK_LEN];
    s_key(k, first);
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "p%u", first);
    ad.ttl_s = 600;
    ad.packages = pkgs;
    ad.n_packages = n;
    assert_int_equal(book_put_ad(b, k, 1, NOW, &ad, frame, sizeof frame, via, via ? 1 : 0),
                     CPN_OK);
}

static const cpn_package_t *s_row(const cpn_ad_t *s, uint32_t cores, uint64_t price)
{
    for (uint32_t i = 0; i < s->n_packages; i++)
        if (s->packages[i].cores == cores && s->packages[i].price == price)
            return &s->packages[i];
    return NULL;
}

static void test_bands(void **state)
{
    (void)state;
    assert_int_equal(summary_band(0), 0);
    assert_int_equal(summary_band(1), 1);
    assert_int_equal(summary_band(1000), 10); /* 512 .. 1023 */
    assert_int_equal(summary_band(1023), 10);
    assert_int_equal(summary_band(1024), 11);
    assert_int_equal(summary_band_top(10), 1023);
    assert_true(summary_band_top(64) == UINT64_MAX);
}

static void test_rows_group_and_sum(void **state)
{
    (void)state;
    book_t *b = book_new(1000);
    uint8_t member[CPN_PK_LEN];
    s_key(member, 0x99);
    /* Band 11 is 1024 .. 2047 thousandths. b has no free unit: its price is not the row's. */
    cpn_package_t p1[] = {s_pkg("a", 8, "cn-east", 2000, 3), s_pkg("b", 8, "cn-east", 1100, 0),
                          s_pkg("c", 8, "cn-west", 2000, 1)};
    cpn_package_t p2[] = {s_pkg("x", 8, "cn-east", 1500, 4), s_pkg("y", 8, "cn-east", 9000, 2)};
    cpn_package_t p3[] = {s_pkg("far", 16, "cn-east", 100, 7)}; /* relayed: not ours */
    cpn_package_t p4[] = {s_pkg("sh", 8, "cn-east", 2000, 5)};
    p4[0].accel.count = 1;
    p4[0].accel.share_min = 250; /* shared: a slice is the peer's to place */
    snprintf(p4[0].accel.vendor, sizeof p4[0].accel.vendor, "nvidia");
    snprintf(p4[0].accel.model, sizeof p4[0].accel.model, "L4");
    p4[0].accel.mem_bytes = (uint64_t)24 << 30;
    s_put(b, 1, p1, 3, NULL);
    s_put(b, 2, p2, 2, NULL);
    s_put(b, 3, p3, 1, member);
    s_put(b, 4, p4, 1, NULL);

    cpn_ad_t s;
    memset(&s, 0, sizeof s);
    uint32_t dropped = 9;
    assert_int_equal(summary_build(b, NOW, &s, &dropped), CPN_OK);
    assert_int_equal(dropped, 0);
    /* 8 cores cn-east band 11 (a, b, x: at x's 1500), cn-west (c), band 14 (y). */
    assert_int_equal(s.n_packages, 3);
    assert_null(s_row(&s, 8, 1100));
    const cpn_package_t *r = s_row(&s, 8, 1500);
    assert_non_null(r);
    assert_string_equal(r->region, "cn-east");
    assert_int_equal(r->free, 3 + 0 + 4);
    assert_int_equal(r->total, 30);
    assert_int_equal(r->id[0], 's');
    assert_int_equal(strlen(r->id), 17);
    /* The id hashes the key's fields in a fixed encoding, not the struct's bytes: every build
     * (and every layout of cpn_package_t) names this row the same. */
    assert_string_equal(r->id, "s64b1a9b8f6bac3a1"); /* BLAKE2b-64, by hand in Python */
    assert_non_null(s_row(&s, 8, 9000));
    assert_null(s_row(&s, 16, 100));
    char id[CPN_NAME_MAX];
    snprintf(id, sizeof id, "%s", r->id);
    uint64_t h1 = summary_hash(&s);
    cpn_ad_clear(&s);

    /* A unit taken: same rows, same ids, another fingerprint. */
    uint8_t k1[CPN_PK_LEN];
    s_key(k1, 1);
    assert_int_equal(book_take(b, k1, "a", 1), CPN_OK);
    assert_int_equal(summary_build(b, NOW, &s, NULL), CPN_OK);
    r = s_row(&s, 8, 1500);
    assert_non_null(r);
    assert_string_equal(r->id, id);
    assert_int_equal(r->free, 6);
    assert_true(summary_hash(&s) != h1);
    cpn_ad_clear(&s);

    /* Withdrawn and expired peers are not counted: nothing left, no rows. */
    uint8_t k2[CPN_PK_LEN];
    s_key(k2, 2);
    assert_int_equal(book_withdraw(b, k2, 2), CPN_OK);
    assert_int_equal(summary_build(b, NOW, &s, NULL), CPN_OK);
    assert_int_equal(s.n_packages, 2);
    assert_null(s_row(&s, 8, 9000));
    assert_non_null(s_row(&s, 8, 2000)); /* x gone: a's price is the row's */
    cpn_ad_clear(&s);
    assert_int_equal(summary_build(b, NOW + 600 * 1000, &s, NULL), CPN_OK);
    assert_int_equal(s.n_packages, 0);
    assert_null(s.packages);
    book_destroy(&b);
}

static void test_rows_bounded(void **state)
{
    (void)state;
    book_t *b = book_new(100000);
    /* 300 distinct shapes: 256 rows, 44 groups left out and counted. */
    for (uint32_t peer = 0; peer < 3; peer++) {
        cpn_package_t p[100];
        for (uint32_t i = 0; i < 100; i++) {
            char id[16];
            snprintf(id, sizeof id, "p%u", i);
            p[i] = s_pkg(id, 1 + peer * 100 + i, "cn-east", 1000, 1);
        }
        s_put(b, (uint8_t)(10 + peer), p, 100, NULL);
    }
    cpn_ad_t s;
    memset(&s, 0, sizeof s);
    uint32_t dropped = 0;
    assert_int_equal(summary_build(b, NOW, &s, &dropped), CPN_OK);
    assert_int_equal(s.n_packages, SUMMARY_ROWS_MAX);
    assert_int_equal(dropped, 300 - SUMMARY_ROWS_MAX);
    cpn_ad_clear(&s);
    book_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bands),
        cmocka_unit_test(test_rows_group_and_sum),
        cmocka_unit_test(test_rows_bounded),
    };
    return cmocka_run_group_tests_name("summary", tests, NULL, NULL);
}
