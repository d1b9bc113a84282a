/* test_fed_sync.c - the pure rules of SYNC (broker/fed_sync.c): whether a digest is well
 * formed, finding a peer in it, and which of our offers answer a member's digest (split
 * horizon, hop limit, newer seq only), against a real book.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "book.h"
#include "federation_int.h"

#define MAX_HOPS 4
#define NOW 1000000u

static const uint8_t s_frame[] = {0x92, 0xc4, 0x03, 'a', 'b', 'c', 0xc4, 0x00};

static void s_key(uint8_t k[CPN_PK_LEN], uint8_t first)
{
    memset(k, 0x11, CPN_PK_LEN);
    k[0] = first;
}

/* Entry i of a digest: key, then seq in 8 bytes big-endian. */
static void s_entry(uint8_t *ents, size_t i, uint8_t first, uint64_t seq)
{
    uint8_t *e = ents + i * CPN_SYNC_ENTRY_LEN;
    s_key(e, first);
    for (int b = 7; b >= 0; b--, seq >>= 8)
        e[CPN_PK_LEN + b] = (uint8_t)seq;
}

/* A digest over the whole key space of the n entries in ents. */
static cpn_sync_t s_digest(const uint8_t *ents, size_t n)
{
    static const uint8_t none[1];
    cpn_sync_t s;
    memset(&s, 0, sizeof s);
    memset(s.hi, 0xff, sizeof s.hi);
    s.entries.ptr = n ? ents : none;
    s.entries.len = n * CPN_SYNC_ENTRY_LEN;
    return s;
}

static void test_digest_check_accepts(void **state)
{
    (void)state;
    uint8_t ents[3 * CPN_SYNC_ENTRY_LEN] = {0};
    cpn_sync_t s = s_digest(ents, 0);
    assert_int_equal(fed_sync_check(&s), CPN_OK); /* empty: "I have nothing" */
    s_entry(ents, 0, 0x10, 1);
    s_entry(ents, 1, 0x20, 2);
    s_entry(ents, 2, 0x30, 3);
    s = s_digest(ents, 3);
    assert_int_equal(fed_sync_check(&s), CPN_OK);
    /* a range exactly around its entries */
    s_key(s.lo, 0x10);
    s_key(s.hi, 0x30);
    assert_int_equal(fed_sync_check(&s), CPN_OK);
}

static void test_digest_check_refuses(void **state)
{
    (void)state;
    uint8_t ents[3 * CPN_SYNC_ENTRY_LEN];
    s_entry(ents, 0, 0x10, 1);
    s_entry(ents, 1, 0x20, 2);
    s_entry(ents, 2, 0x30, 3);
    cpn_sync_t s = s_digest(ents, 3);
    s.entries.len--; /* a partial entry */
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
    s = s_digest(ents, 3);
    s_key(s.lo, 0x40); /* lo above hi */
    s_key(s.hi, 0x30);
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
    s = s_digest(ents, 3);
    s_key(s.lo, 0x11); /* the first entry below lo */
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
    s = s_digest(ents, 3);
    s_key(s.hi, 0x2f); /* the last entry above hi */
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
    s_entry(ents, 1, 0x10, 2); /* a key twice */
    s = s_digest(ents, 3);
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
    s_entry(ents, 1, 0x05, 2); /* out of order */
    s = s_digest(ents, 3);
    assert_int_equal(fed_sync_check(&s), CPN_E_SCHEMA);
}

static void test_digest_find(void **state)
{
    (void)state;
    uint8_t ents[3 * CPN_SYNC_ENTRY_LEN], k[CPN_PK_LEN];
    s_entry(ents, 0, 0x10, 7);
    s_entry(ents, 1, 0x20, 0x0102030405060708ull);
    s_entry(ents, 2, 0x30, UINT64_MAX);
    cpn_sync_t s = s_digest(ents, 3);
    uint64_t seq = 0;
    s_key(k, 0x10);
    assert_true(fed_sync_find(&s, k, &seq));
    assert_int_equal(seq, 7);
    s_key(k, 0x20);
    assert_true(fed_sync_find(&s, k, &seq));
    assert_int_equal(seq, 0x0102030405060708ull);
    s_key(k, 0x30);
    assert_true(fed_sync_find(&s, k, &seq));
    assert_int_equal(seq, UINT64_MAX);
    static const uint8_t absent[] = {0x00, 0x0f, 0x11,
                                     0x2f, 0x31, 0xff}; /* before, between, after */
    for (size_t i = 0; i < sizeof absent; i++) {
        s_key(k, absent[i]);
        assert_false(fed_sync_find(&s, k, &seq));
    }
    s_key(k, 0x10);
    k[CPN_PK_LEN - 1] ^= 1; /* differs in the last byte only */
    assert_false(fed_sync_find(&s, k, &seq));
    s = s_digest(ents, 0);
    s_key(k, 0x10);
    assert_false(fed_sync_find(&s, k, &seq));
}

static void s_put(book_t *b, uint8_t first, uint64_t seq, const uint8_t *via, uint32_t hops)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "cpu");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 8;
    p.mem_bytes = 8ull << 30;
    p.price = 1000;
    p.total = p.free = 2;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "p%02x", first);
    ad.ttl_s = 60;
    ad.n_packages = 1;
    ad.packages = &p;
    uint8_t k[CPN_PK_LEN];
    s_key(k, first);
    assert_int_equal(book_put_ad(b, k, seq, NOW, &ad, s_frame, sizeof s_frame, via, hops), CPN_OK);
}

static const book_peer_t *s_peer(book_t *b, uint8_t first)
{
    uint8_t k[CPN_PK_LEN];
    s_key(k, first);
    const book_peer_t *bp = book_peer(b, k);
    assert_non_null(bp);
    return bp;
}

/* Which of our offers answer a member's digest. */
static void test_sync_offers(void **state)
{
    (void)state;
    uint8_t asker[CPN_PK_LEN], other[CPN_PK_LEN], ents[2 * CPN_SYNC_ENTRY_LEN] = {0};
    memset(asker, 0xa5, sizeof asker);
    memset(other, 0x5a, sizeof other);
    book_t *b = book_new(100);
    assert_non_null(b);
    s_put(b, 0x10, 5, NULL, 0);             /* our own peer */
    s_put(b, 0x20, 5, asker, 1);            /* came through the asker */
    s_put(b, 0x30, 5, other, MAX_HOPS - 1); /* one more hop: max_hops */
    s_put(b, 0x40, 5, other, MAX_HOPS);     /* one more would be too many */
    s_put(b, 0x50, 5, NULL, 0);             /* withdrawn below */
    uint8_t k[CPN_PK_LEN];
    s_key(k, 0x50);
    assert_int_equal(book_withdraw(b, k, 6), CPN_OK);
    s_put(b, 0x60, 5, other, 1); /* withdrawn below, the WITHDRAW frame kept */
    s_key(k, 0x60);
    assert_int_equal(book_withdraw_from(b, k, 7, s_frame, sizeof s_frame, other, 2), CPN_OK);
    assert_non_null(s_peer(b, 0x60)->frame);
    assert_int_equal(s_peer(b, 0x60)->seq, 7);

    cpn_sync_t none = s_digest(ents, 0);
    assert_true(fed_sync_offers(s_peer(b, 0x10), &none, asker, NOW, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x20), &none, asker, NOW, MAX_HOPS));
    assert_true(fed_sync_offers(s_peer(b, 0x20), &none, other, NOW, MAX_HOPS));
    assert_true(fed_sync_offers(s_peer(b, 0x30), &none, asker, NOW, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x40), &none, asker, NOW, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x50), &none, asker, NOW, MAX_HOPS)); /* no frame */
    /* A tombstone with its WITHDRAW goes to a member that lacks it, not back where it came
     * from, and not to one that holds it already. */
    assert_true(fed_sync_offers(s_peer(b, 0x60), &none, asker, NOW, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x60), &none, other, NOW, MAX_HOPS));
    /* expired: ttl 60 s after NOW */
    assert_true(fed_sync_offers(s_peer(b, 0x10), &none, asker, NOW + 59999, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x10), &none, asker, NOW + 60000, MAX_HOPS));

    /* the asker holds 0x10 at an older seq, 0x30 at the same: only 0x10 goes */
    s_entry(ents, 0, 0x10, 4);
    s_entry(ents, 1, 0x30, 5);
    cpn_sync_t s = s_digest(ents, 2);
    assert_int_equal(fed_sync_check(&s), CPN_OK);
    assert_true(fed_sync_offers(s_peer(b, 0x10), &s, asker, NOW, MAX_HOPS));
    assert_false(fed_sync_offers(s_peer(b, 0x30), &s, asker, NOW, MAX_HOPS));
    s_entry(ents, 0, 0x10, 9); /* ... or a newer one: nothing to send */
    assert_false(fed_sync_offers(s_peer(b, 0x10), &s, asker, NOW, MAX_HOPS));
    /* the asker still holds 0x60's AD (seq 5): the WITHDRAW (seq 7) goes; at 7 it does not */
    s_entry(ents, 0, 0x60, 5);
    s = s_digest(ents, 1);
    assert_true(fed_sync_offers(s_peer(b, 0x60), &s, asker, NOW, MAX_HOPS));
    s_entry(ents, 0, 0x60, 7);
    assert_false(fed_sync_offers(s_peer(b, 0x60), &s, asker, NOW, MAX_HOPS));
    book_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_check_accepts),
        cmocka_unit_test(test_digest_check_refuses),
        cmocka_unit_test(test_digest_find),
        cmocka_unit_test(test_sync_offers),
    };
    return cmocka_run_group_tests_name("fed_sync", tests, NULL, NULL);
}
