/* test_book.c - the offer book: replacement by seq, expiry, withdraw, the bound, take, and the
 * index kept in step through a long random sequence of operations. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "book.h"
#include "book_int.h"

static void s_key(uint8_t key[CPN_PK_LEN], uint8_t v)
{
    memset(key, 0, CPN_PK_LEN);
    key[0] = v;
    key[31] = v;
}

static cpn_package_t s_pkg(const char *id, const char *model, uint32_t count, uint64_t price,
                           uint32_t free)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    if (count > 0) {
        snprintf(p.accel.vendor, sizeof p.accel.vendor, "nvidia");
        snprintf(p.accel.model, sizeof p.accel.model, "%s", model);
        p.accel.count = count;
        p.accel.mem_bytes = 80ULL << 30;
        p.accel.bf16_tflops = 989;
    }
    p.cores = 96;
    p.mem_bytes = 1ULL << 40;
    snprintf(p.region, sizeof p.region, "cn-east");
    p.price = price;
    p.total = free > 4 ? free : 4;
    p.free = free;
    return p;
}

static cpn_ad_t s_ad(cpn_package_t *pkgs, uint32_t n, uint32_t ttl_s)
{
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "dc-test");
    ad.ttl_s = ttl_s;
    ad.n_packages = n;
    ad.packages = pkgs;
    return ad;
}

static const uint8_t s_frame[] = {0x92, 0xc4, 0x03, 'a', 'b', 'c', 0xc4, 0x00};

static void test_newer_seq_replaces_older_refused(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    assert_non_null(b);
    uint8_t k[CPN_PK_LEN];
    s_key(k, 1);
    cpn_package_t p1[2] = {s_pkg("a", "H100", 8, 210000, 3), s_pkg("b", "H100", 8, 220000, 2)};
    cpn_ad_t ad = s_ad(p1, 2, 60);
    assert_int_equal(book_put_ad(b, k, 10, 1000, &ad, s_frame, sizeof s_frame, NULL, 0), CPN_OK);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.packages, 2);
    assert_int_equal(st.free_units, 5);

    /* Older and equal seq: refused, nothing changes. */
    cpn_package_t p2[1] = {s_pkg("c", "A100", 8, 100000, 7)};
    cpn_ad_t ad2 = s_ad(p2, 1, 60);
    assert_int_equal(book_put_ad(b, k, 9, 2000, &ad2, NULL, 0, NULL, 0), CPN_E_REPLAY);
    assert_int_equal(book_put_ad(b, k, 10, 2000, &ad2, NULL, 0, NULL, 0), CPN_E_REPLAY);
    const book_peer_t *pe = book_peer(b, k);
    assert_non_null(pe);
    assert_int_equal(pe->n_packages, 2);
    assert_int_equal(pe->seq, 10);
    assert_memory_equal(pe->frame, s_frame, sizeof s_frame);
    assert_ptr_not_equal(pe->frame, s_frame);

    /* Newer: replaces all packages, via and hops recorded. */
    uint8_t via[CPN_PK_LEN];
    s_key(via, 9);
    assert_int_equal(book_put_ad(b, k, 11, 3000, &ad2, NULL, 0, via, 2), CPN_OK);
    pe = book_peer(b, k);
    assert_int_equal(pe->n_packages, 1);
    assert_string_equal(pe->packages[0].id, "c");
    assert_int_equal(pe->expires_ms, 3000 + 60 * 1000);
    assert_memory_equal(pe->via, via, CPN_PK_LEN);
    assert_int_equal(pe->hops, 2);
    assert_null(pe->frame);
    book_stats(b, &st);
    assert_int_equal(st.packages, 1);
    assert_int_equal(st.free_units, 7);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.classes, 1);
    assert_int_equal(st.shapes, 1);
    book_destroy(&b);
    assert_null(b);
    book_destroy(&b); /* NULL is fine */
}

static void test_invalid_ad_refused(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    uint8_t k[CPN_PK_LEN];
    s_key(k, 1);
    cpn_package_t dup[2] = {s_pkg("a", "H100", 8, 1, 1), s_pkg("a", "H100", 8, 2, 1)};
    cpn_ad_t ad = s_ad(dup, 2, 60);
    assert_int_equal(book_put_ad(b, k, 1, 0, &ad, NULL, 0, NULL, 0), CPN_E_INVAL);
    cpn_package_t noid[1] = {s_pkg("", "H100", 8, 1, 1)};
    ad = s_ad(noid, 1, 60);
    assert_int_equal(book_put_ad(b, k, 1, 0, &ad, NULL, 0, NULL, 0), CPN_E_INVAL);
    cpn_package_t over[1] = {s_pkg("x", "H100", 8, 1, 1)};
    over[0].total = 0; /* free > total */
    ad = s_ad(over, 1, 60);
    assert_int_equal(book_put_ad(b, k, 1, 0, &ad, NULL, 0, NULL, 0), CPN_E_INVAL);
    assert_null(book_peer(b, k));
    book_destroy(&b);
}

static void test_ttl_expiry(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    uint8_t k1[CPN_PK_LEN], k2[CPN_PK_LEN];
    s_key(k1, 1);
    s_key(k2, 2);
    cpn_package_t p[1] = {s_pkg("a", "H100", 8, 1000, 1)};
    cpn_ad_t ad = s_ad(p, 1, 30);
    assert_int_equal(book_put_ad(b, k1, 1, 10000, &ad, NULL, 0, NULL, 0), CPN_OK);
    ad.ttl_s = 60;
    assert_int_equal(book_put_ad(b, k2, 1, 10000, &ad, NULL, 0, NULL, 0), CPN_OK);
    assert_int_equal(book_expire(b, 39999), 0);
    assert_int_equal(book_expire(b, 40000), 1); /* 10000 + 30 s */
    assert_null(book_peer(b, k1));
    assert_non_null(book_peer(b, k2));
    assert_int_equal(book_expire(b, 70000), 1);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.peers, 0);
    assert_int_equal(st.packages, 0);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.classes, 0); /* empty groups are released */
    assert_int_equal(st.shapes, 0);
    /* An expired peer may come back with any seq. */
    assert_int_equal(book_put_ad(b, k1, 1, 80000, &ad, NULL, 0, NULL, 0), CPN_OK);
    book_destroy(&b);
}

/* Expiry looks only at what is due (issue 17): 2,000 peers expiring one second apart, half of
 * them re-advertised (their first expiry is stale) and 100 forgotten, expired one second at a
 * time. The old book scanned every peer slot on each call that had something due: ~2 million
 * looks here; the heap looks at each entry it ever held once: at most 3,000. */
#define EXP_PEERS 2000u
static void test_expiry_visits(void **state)
{
    (void)state;
    book_t *b = book_new(4 * EXP_PEERS);
    cpn_package_t p[1] = {s_pkg("a", "H100", 8, 1000, 1)};
    cpn_ad_t ad = s_ad(p, 1, 60);
    uint8_t k[CPN_PK_LEN];
    uint64_t pushes = 0;
    for (uint32_t i = 0; i < EXP_PEERS; i++) {
        memset(k, 0, sizeof k);
        memcpy(k, &i, sizeof i);
        assert_int_equal(book_put_ad(b, k, 1, (uint64_t)i * 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
        pushes++;
    }
    for (uint32_t i = 0; i < EXP_PEERS; i += 2) { /* re-advertised half a second later */
        memset(k, 0, sizeof k);
        memcpy(k, &i, sizeof i);
        assert_int_equal(book_put_ad(b, k, 2, (uint64_t)i * 1000 + 500, &ad, NULL, 0, NULL, 0),
                         CPN_OK);
        pushes++;
    }
    for (uint32_t i = 1; i < 200; i += 2) { /* 100 forgotten */
        memset(k, 0, sizeof k);
        memcpy(k, &i, sizeof i);
        assert_int_equal(book_forget(b, k), CPN_OK);
    }
    size_t gone = 0;
    book_stats_t st;
    uint64_t worst = 0;
    for (uint64_t now = 60000; now <= 60000 + (uint64_t)EXP_PEERS * 1000; now += 1000) {
        book_stats(b, &st);
        uint64_t v0 = st.expire_visits;
        size_t n = book_expire(b, now);
        gone += n;
        book_stats(b, &st);
        if (st.expire_visits - v0 > worst)
            worst = st.expire_visits - v0;
        /* what is due went, what is not stayed */
        uint32_t next = (uint32_t)((now - 60000) / 1000) + 1;
        if (next < EXP_PEERS && next >= 200) {
            memset(k, 0, sizeof k);
            memcpy(k, &next, sizeof next);
            assert_non_null(book_peer(b, k));
        }
    }
    book_stats(b, &st);
    assert_int_equal(gone, EXP_PEERS - 100);
    assert_int_equal(st.peers, 0);
    assert_true(st.expire_visits <= pushes); /* old: ~EXP_PEERS^2 / 2 */
    assert_true(worst <= 3);                 /* one due, one or two stale: old: EXP_PEERS */
    book_destroy(&b);
}

static void test_withdraw(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    uint8_t k[CPN_PK_LEN], other[CPN_PK_LEN];
    s_key(k, 1);
    s_key(other, 2);
    cpn_package_t p[2] = {s_pkg("a", "H100", 8, 1000, 1), s_pkg("b", "A100", 4, 500, 2)};
    cpn_ad_t ad = s_ad(p, 2, 60);
    assert_int_equal(book_put_ad(b, k, 5, 0, &ad, s_frame, sizeof s_frame, NULL, 0), CPN_OK);
    assert_int_equal(book_withdraw(b, k, 5), CPN_E_REPLAY);
    assert_int_equal(book_withdraw(b, other, 9), CPN_E_NO_PACKAGE);
    assert_int_equal(book_withdraw(b, k, 6), CPN_OK);
    assert_int_equal(book_withdraw(b, k, 7), CPN_E_NO_PACKAGE);
    const book_peer_t *pe = book_peer(b, k);
    assert_non_null(pe);
    assert_true(pe->withdrawn);
    assert_int_equal(pe->n_packages, 0);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.peers, 0);
    assert_int_equal(st.packages, 0);
    assert_int_equal(st.free_units, 0);
    /* The tombstone refuses the old AD replayed, accepts a newer one. */
    assert_int_equal(book_put_ad(b, k, 5, 0, &ad, NULL, 0, NULL, 0), CPN_E_REPLAY);
    assert_int_equal(book_put_ad(b, k, 8, 0, &ad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.packages, 2);
    /* Tombstones go at expiry without being counted as expired offers. */
    assert_int_equal(book_withdraw(b, k, 9), CPN_OK);
    assert_int_equal(book_expire(b, 60000), 0);
    assert_null(book_peer(b, k));
    book_destroy(&b);
}

/* A member that carried an offer went down: the book forgets the peer entirely, so the same AD
 * (same seq) is accepted again when another member brings it back. */
static void test_forget(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    uint8_t k[CPN_PK_LEN], via[CPN_PK_LEN], other[CPN_PK_LEN];
    s_key(k, 1);
    s_key(via, 7);
    s_key(other, 2);
    cpn_package_t p[2] = {s_pkg("a", "H100", 8, 1000, 1), s_pkg("b", "A100", 4, 500, 2)};
    cpn_ad_t ad = s_ad(p, 2, 60);
    assert_int_equal(book_forget(b, k), CPN_E_NO_PACKAGE);
    assert_int_equal(book_put_ad(b, k, 5, 0, &ad, s_frame, sizeof s_frame, via, 2), CPN_OK);
    assert_int_equal(book_put_ad(b, other, 5, 0, &ad, s_frame, sizeof s_frame, NULL, 0), CPN_OK);
    assert_int_equal(book_forget(b, k), CPN_OK);
    assert_null(book_peer(b, k));
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.packages, 2);
    assert_int_equal(st.free_units, 3);
    assert_int_equal(book_put_ad(b, k, 5, 0, &ad, s_frame, sizeof s_frame, via, 3), CPN_OK);
    assert_int_equal(book_peer(b, k)->hops, 3);
    /* A tombstone is forgotten as well. */
    assert_int_equal(book_withdraw(b, k, 6), CPN_OK);
    assert_int_equal(book_forget(b, k), CPN_OK);
    assert_int_equal(book_put_ad(b, k, 5, 0, &ad, s_frame, sizeof s_frame, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.peers, 2);
    assert_int_equal(st.packages, 4);
    book_destroy(&b);
}

static void test_bound(void **state)
{
    (void)state;
    book_t *b = book_new(4);
    uint8_t ka[CPN_PK_LEN], kb[CPN_PK_LEN];
    s_key(ka, 1);
    s_key(kb, 2);
    cpn_package_t p[4] = {s_pkg("a", "H100", 8, 1, 1), s_pkg("b", "H100", 8, 2, 1),
                          s_pkg("c", "H100", 8, 3, 1), s_pkg("d", "H100", 8, 4, 1)};
    cpn_ad_t ad3 = s_ad(p, 3, 60), ad2 = s_ad(p, 2, 60), ad1 = s_ad(p, 1, 60);
    cpn_ad_t ad4 = s_ad(p, 4, 60);
    assert_int_equal(book_put_ad(b, ka, 1, 0, &ad3, NULL, 0, NULL, 0), CPN_OK);
    assert_int_equal(book_put_ad(b, kb, 1, 0, &ad2, NULL, 0, NULL, 0), CPN_E_BUSY);
    assert_null(book_peer(b, kb));
    assert_int_equal(book_put_ad(b, kb, 1, 0, &ad1, NULL, 0, NULL, 0), CPN_OK);
    /* A known peer growing past the bound keeps its old entry. */
    assert_int_equal(book_put_ad(b, ka, 2, 0, &ad4, NULL, 0, NULL, 0), CPN_E_BUSY);
    assert_int_equal(book_peer(b, ka)->n_packages, 3);
    assert_int_equal(book_put_ad(b, ka, 3, 0, &ad2, NULL, 0, NULL, 0), CPN_OK);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.refused_full, 2);
    assert_int_equal(st.packages, 3);
    assert_int_equal(st.max_offers, 4);
    book_destroy(&b);
    assert_null(book_new(0));
}

/* The one listed class of a book that has one. */
static const book_class_t *s_only_class(const book_t *b)
{
    for (uint32_t pi = 0; pi < BOOK_PARTS; pi++)
        if (b->part[pi].n > 0)
            return &b->cls[b->part[pi].order[0].cls];
    fail();
    return NULL;
}

static void test_take(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    uint8_t k[CPN_PK_LEN], other[CPN_PK_LEN];
    s_key(k, 1);
    s_key(other, 2);
    cpn_package_t p[1] = {s_pkg("a", "H100", 8, 1000, 3)};
    cpn_ad_t ad = s_ad(p, 1, 60);
    assert_int_equal(book_put_ad(b, k, 1, 0, &ad, NULL, 0, NULL, 0), CPN_OK);
    assert_int_equal(book_take(b, k, "a", 2), CPN_OK);
    assert_int_equal(book_peer(b, k)->packages[0].free, 1);
    assert_int_equal(book_take(b, k, "a", 2), CPN_E_NO_UNITS);
    assert_int_equal(book_take(b, k, "zz", 1), CPN_E_NO_PACKAGE);
    assert_int_equal(book_take(b, other, "a", 1), CPN_E_NO_PACKAGE);
    assert_int_equal(book_take(b, k, "a", 1), CPN_OK);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.free_units, 0);
    assert_int_equal(s_only_class(b)->h.n_free, 0);
    /* Units given back (a refused CLAIM) are free again, never above the total. */
    assert_int_equal(book_give(b, k, "a", 2), CPN_OK);
    assert_int_equal(book_peer(b, k)->packages[0].free, 2);
    assert_int_equal(s_only_class(b)->h.n_free, 1);
    assert_int_equal(book_give(b, k, "a", 5), CPN_OK); /* total: 4 */
    assert_int_equal(book_peer(b, k)->packages[0].free, 4);
    book_stats(b, &st);
    assert_int_equal(st.free_units, 4);
    assert_int_equal(book_give(b, k, "zz", 1), CPN_E_NO_PACKAGE);
    assert_int_equal(book_take(b, k, "a", 4), CPN_OK);
    assert_int_equal(s_only_class(b)->h.n_free, 0);
    /* The peer's next AD restores the truth, in place. */
    assert_int_equal(book_put_ad(b, k, 2, 0, &ad, NULL, 0, NULL, 0), CPN_OK);
    assert_int_equal(book_peer(b, k)->packages[0].free, 3);
    book_stats(b, &st);
    assert_int_equal(st.free_units, 3);
    assert_int_equal(s_only_class(b)->h.n_free, 1);
    book_destroy(&b);
}

static void test_iterate(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p[1] = {s_pkg("a", "H100", 8, 1000, 3)};
    cpn_ad_t ad = s_ad(p, 1, 60);
    for (uint8_t i = 1; i <= 5; i++) {
        uint8_t k[CPN_PK_LEN];
        s_key(k, i);
        assert_int_equal(book_put_ad(b, k, 1, 0, &ad, NULL, 0, NULL, 0), CPN_OK);
    }
    size_t cur = 0, n = 0;
    unsigned seen = 0;
    const book_peer_t *pe;
    while ((pe = book_next(b, &cur)) != NULL) {
        n++;
        seen |= 1u << pe->key[0];
    }
    assert_int_equal(n, 5);
    assert_int_equal(seen, 0x3e);
    book_destroy(&b);
}

/* Buckets must be monotone, or a request would skip partitions holding machines that fit. */
static void test_buckets_monotone(void **state)
{
    (void)state;
    uint32_t last = 0;
    for (uint32_t v = 0; v < 5000000; v += 1 + v / 1000) {
        uint32_t k = book__hbucket(v, BOOK_CB);
        assert_true(k >= last && k < BOOK_CB);
        last = k;
    }
    assert_int_equal(book__hbucket(UINT32_MAX, BOOK_CB), BOOK_CB - 1);
    assert_int_equal(book__hbucket(11, BOOK_CB), book__hbucket(8, BOOK_CB));
    assert_true(book__hbucket(12, BOOK_CB) > book__hbucket(11, BOOK_CB));
    assert_true(book__mem_bucket(UINT64_MAX) == BOOK_MB - 1);
    assert_true(book__mem_bucket(320ULL << 30) >= book__mem_bucket((320ULL << 30) - 1));
}

/* ---- the index stays in step: sorted arrays, bitmaps and counters match the peers ------- */

static uint64_t s_rng;
static uint32_t s_rand(void)
{
    s_rng = s_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(s_rng >> 33);
}

static void s_check_index(const book_t *b)
{
    size_t ents = 0, listed_cls = 0;
    uint64_t freeu = 0;
    for (uint32_t pi = 0; pi < BOOK_PARTS; pi++) {
        const book_part_t *pt = &b->part[pi];
        assert_true(pt->n <= pt->n_cls && pt->n_cls <= pt->cap);
        for (uint32_t oi = 0; oi < pt->n; oi++) {
            const book_class_t *c = &b->cls[pt->order[oi].cls];
            const book_hot_t *h = &pt->order[oi]; /* the partition's copy is in step */
            assert_true(h->min_price == c->h.min_price && h->max_mem == c->h.max_mem &&
                        h->max_cores == c->h.max_cores && h->n_free == c->h.n_free &&
                        h->cls == c->h.cls && h->count == c->h.count && h->model == c->h.model &&
                        h->vendor == c->h.vendor && h->region == c->h.region &&
                        h->sclass == c->h.sclass && h->local == c->h.local);
            assert_true(c->used);
            assert_int_equal(c->pos, oi);
            assert_int_equal(c->part, pi);
            assert_true(c->n_shapes > 0);
            if (oi > 0)
                assert_true(book__class_min(b, &b->cls[pt->order[oi - 1].cls]) <=
                            book__class_min(b, c));
            uint32_t cn = 0, cf = 0, mc = 0;
            uint64_t mm = 0;
            for (uint32_t si = 0; si < c->n_shapes; si++) {
                const book_shape_t *s = &b->shp[c->shapes[si]];
                assert_true(s->used);
                assert_int_equal(s->pos, si);
                assert_int_equal(s->cls, pt->order[oi].cls);
                assert_int_equal(book__part(s->cores, s->mem_bytes, c->h.count), pi);
                assert_int_equal(s->pending, 0);
                assert_true(s->n > 0);
                uint64_t fm = UINT64_MAX; /* the cheapest entry with free units */
                for (uint32_t i = s->n; i-- > 0;)
                    if (s->ents[i].free > 0)
                        fm = s->ents[i].price;
                assert_true(s->min_price == fm);
                if (si == 0)
                    assert_int_equal(c->h.min_price, s->min_price);
                if (si > 0)
                    assert_true(book__shape_min(&b->shp[c->shapes[si - 1]]) <= book__shape_min(s));
                uint32_t nf = 0;
                for (uint32_t i = 0; i < s->n; i++) {
                    const book_ent_t *e = &s->ents[i];
                    if (i > 0)
                        assert_true(book__ent_cmp(b, &s->ents[i - 1], e) < 0);
                    assert_int_equal((s->mask[i / 64] >> (i % 64)) & 1u, e->free > 0);
                    const book_pslot_t *ps = &b->peers[e->peer];
                    assert_true(ps->used);
                    assert_int_equal(ps->shape_of[e->pkg], c->shapes[si]);
                    assert_int_equal(ps->pkgs[e->pkg].free, e->free);
                    assert_int_equal(ps->pkgs[e->pkg].price, e->price);
                    nf += e->free > 0;
                    freeu += e->free;
                }
                for (uint32_t i = s->n; i < (s->n + 63) / 64 * 64; i++)
                    assert_int_equal((s->mask[i / 64] >> (i % 64)) & 1u, 0);
                assert_int_equal(nf, s->n_free);
                cn += s->n;
                cf += nf;
                mc = s->cores > mc ? s->cores : mc;
                mm = s->mem_bytes > mm ? s->mem_bytes : mm;
            }
            assert_int_equal(cn, c->n_ents);
            assert_int_equal(mc, c->h.max_cores);
            assert_int_equal(mm, c->h.max_mem);
            assert_int_equal(cf, c->h.n_free);
            assert_int_equal(c->n_owned, c->n_shapes);
            ents += cn;
            listed_cls++;
        }
    }
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(ents, st.packages);
    assert_int_equal(freeu, st.free_units);
    assert_int_equal(listed_cls, st.classes);
    size_t pk = 0;
    for (uint32_t i = 0; i < b->n_peers; i++)
        if (b->peers[i].used)
            pk += b->peers[i].pub.n_packages;
    assert_int_equal(pk, st.packages);
}

static void test_index_random_ops(void **state)
{
    (void)state;
    enum { PEERS = 40, STEPS = 4000 };
    static const char *models[] = {"H100", "h100", "A100", "Ascend-910B"};
    s_rng = 42;
    book_t *b = book_new(150);
    uint64_t seq[PEERS] = {0};
    uint64_t now = 1000000;
    size_t max_pk = 0;
    for (int step = 0; step < STEPS; step++) {
        uint8_t k[CPN_PK_LEN];
        uint32_t who = s_rand() % PEERS;
        memset(k, 0, sizeof k);
        k[0] = (uint8_t)(who % 3); /* many keys share their first 8 bytes */
        k[20] = (uint8_t)who;
        uint32_t op = s_rand() % 10;
        now += s_rand() % 500;
        if (op < 6) {
            cpn_package_t p[12];
            uint32_t n = s_rand() % 12;
            for (uint32_t i = 0; i < n; i++) {
                p[i] = s_pkg("x", models[s_rand() % 4], 1u << (s_rand() % 4),
                             1000u * (1 + s_rand() % 5), s_rand() % 3);
                p[i].cores = 32u << (s_rand() % 2);
                if (s_rand() % 4 == 0)
                    snprintf(p[i].region, sizeof p[i].region, "us-west");
            }
            /* Unique ids within one AD. */
            for (uint32_t i = 0; i < n; i++)
                snprintf(p[i].id, sizeof p[i].id, "p%u-%u", i, s_rand() % 2);
            cpn_ad_t ad = s_ad(p, n, 1 + s_rand() % 20);
            uint8_t via[CPN_PK_LEN] = {0};
            via[0] = (uint8_t)(s_rand() % 2);
            int r = book_put_ad(b, k, ++seq[who], now, &ad, s_frame, s_rand() % sizeof s_frame, via,
                                via[0]);
            assert_true(r == CPN_OK || r == CPN_E_BUSY);
        } else if (op < 7) {
            int r = book_withdraw(b, k, ++seq[who]);
            assert_true(r == CPN_OK || r == CPN_E_NO_PACKAGE);
        } else if (op < 9) {
            const book_peer_t *pe = book_peer(b, k);
            if (pe != NULL && pe->n_packages > 0) {
                char id[CPN_NAME_MAX];
                snprintf(id, sizeof id, "%s", pe->packages[s_rand() % pe->n_packages].id);
                int r = book_take(b, k, id, 1);
                assert_true(r == CPN_OK || r == CPN_E_NO_UNITS);
            }
        } else {
            (void)book_expire(b, now);
        }
        if (step % 50 == 0)
            s_check_index(b);
        book_stats_t st;
        book_stats(b, &st);
        if (st.packages > max_pk)
            max_pk = st.packages;
    }
    s_check_index(b);
    printf("# max packages %zu, refused %" PRIu64 ", replaced %" PRIu64 "\n", max_pk,
           b->refused_full, b->replaced);
    assert_true(max_pk > 120);                             /* the run did fill the book... */
    assert_true(b->refused_full > 0 && b->replaced > 100); /* ...and hit the bound */
    (void)book_expire(b, UINT64_MAX);
    s_check_index(b);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.packages, 0);
    assert_int_equal(st.classes, 0);
    assert_int_equal(st.shapes, 0);
    book_destroy(&b);
}

/* Random ADs whose packages keep their ids but change places, prices, free units and
 * sometimes their shape: the re-pricing and re-indexing paths of book_put_ad keep the index in
 * step (s_check_index after every AD). */
static void test_index_random_reprice(void **state)
{
    (void)state;
    enum { PEERS = 40, STEPS = 3000, POOL = 8 };
    s_rng = 7;
    book_t *b = book_new(1000);
    uint64_t seq[PEERS] = {0};
    uint64_t moved0 = 0;
    for (int step = 0; step < STEPS; step++) {
        uint8_t k[CPN_PK_LEN];
        uint32_t who = s_rand() % PEERS;
        memset(k, 0, sizeof k);
        k[0] = (uint8_t)(who % 2);
        k[20] = (uint8_t)who;
        uint32_t ids[POOL];
        for (uint32_t i = 0; i < POOL; i++)
            ids[i] = i;
        for (uint32_t i = POOL - 1; i > 0; i--) { /* a random order of the pool */
            uint32_t j = s_rand() % (i + 1), t = ids[i];
            ids[i] = ids[j];
            ids[j] = t;
        }
        cpn_package_t p[POOL];
        uint32_t n = s_rand() % (POOL + 1);
        for (uint32_t i = 0; i < n; i++) {
            /* Two shapes per id, the first most of the time; a few prices, often equal. */
            p[i] = s_pkg("x", "H100", 8, 1000u * (1 + s_rand() % 4), s_rand() % 3);
            p[i].cores = s_rand() % 5 == 0 ? 64 : 96;
            snprintf(p[i].id, sizeof p[i].id, "q%u", ids[i]);
        }
        cpn_ad_t ad = s_ad(p, n, 600);
        assert_int_equal(book_put_ad(b, k, ++seq[who], 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
        if (step % 3 == 0 && n > 0) {
            int r = book_take(b, k, p[s_rand() % n].id, 1);
            assert_true(r == CPN_OK || r == CPN_E_NO_UNITS);
        }
        s_check_index(b);
        if (step == 0)
            moved0 = b->ent_moves;
    }
    assert_true(b->ent_moves > moved0); /* re-pricing did move entries */
    book_destroy(&b);
}

/* The work of an AD that changes prices, counted in entries shifted (book_stats.ent_moves):
 * one shape of 2,000 entries (200 peers x 10 packages). Re-pricing a package to a price next
 * to its old one shifts at most the entries priced in between (here none or one); the same
 * AD with its packages in another order shifts none; a package re-priced across the whole
 * shape shifts every entry it passes, and no more. Before (a package leaving and entering its
 * shape's sorted array), each of these shifted the entries after its old and its new place:
 * about 2,000 for the first case, 20,000 for the second. */
static void test_reprice_moves(void **state)
{
    (void)state;
    enum { PEERS = 200, PKGS = 10 };
    book_t *b = book_new(PEERS * PKGS);
    assert_non_null(b);
    cpn_package_t p[PKGS];
    uint8_t k[CPN_PK_LEN];
    for (uint32_t who = 0; who < PEERS; who++) {
        memset(k, 0, sizeof k);
        k[0] = (uint8_t)(who >> 8);
        k[1] = (uint8_t)who;
        for (uint32_t i = 0; i < PKGS; i++) {
            p[i] = s_pkg("x", "H100", 8, 100000u + 10u * (who * PKGS + i), (who + i) % 3);
            snprintf(p[i].id, sizeof p[i].id, "pk%u", i);
        }
        cpn_ad_t ad = s_ad(p, PKGS, 600);
        assert_int_equal(book_put_ad(b, k, 1, 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
    }
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.shapes, 1);
    assert_int_equal(st.packages, PEERS * PKGS);

    /* Peer 0 (the cheapest entries, at the front of the array): package 0 up by 5 (between
     * itself and package 1: no entry passed), then package 1 up by 15 (past package 2). */
    memset(k, 0, sizeof k);
    for (uint32_t i = 0; i < PKGS; i++) {
        p[i] = s_pkg("x", "H100", 8, 100000u + 10u * i, 2);
        snprintf(p[i].id, sizeof p[i].id, "pk%u", i);
    }
    p[0].price += 5;
    uint64_t m0 = st.ent_moves;
    cpn_ad_t ad = s_ad(p, PKGS, 600);
    assert_int_equal(book_put_ad(b, k, 2, 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.ent_moves - m0, 0);
    p[1].price += 15;
    m0 = st.ent_moves;
    assert_int_equal(book_put_ad(b, k, 3, 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.ent_moves - m0, 1);
    s_check_index(b);

    /* The same packages in reverse order, free units changed: nothing shifts. */
    cpn_package_t r[PKGS];
    for (uint32_t i = 0; i < PKGS; i++) {
        r[i] = p[PKGS - 1 - i];
        r[i].free = i % 2;
    }
    cpn_ad_t rad = s_ad(r, PKGS, 600);
    m0 = st.ent_moves;
    assert_int_equal(book_put_ad(b, k, 4, 1000, &rad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.ent_moves - m0, 0);
    s_check_index(b);

    /* Across the whole shape: it passes every other entry, once. */
    r[PKGS - 1].price = 1000000; /* pk0: from the front to the end */
    m0 = st.ent_moves;
    assert_int_equal(book_put_ad(b, k, 5, 1000, &rad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.ent_moves - m0, PEERS * PKGS - 1);
    s_check_index(b);
    book_destroy(&b);
}

/* A WITHDRAW of a peer the book never knew (RELAYs reordered): a tombstone all the same, so
 * the peer's older AD, arriving late, is refused; a newer AD is taken; the tombstone leaves at
 * its expiry. */
static void test_withdraw_unknown_keeps_tombstone(void **state)
{
    (void)state;
    book_t *b = book_new(2);
    uint8_t k[CPN_PK_LEN], k2[CPN_PK_LEN], k3[CPN_PK_LEN];
    s_key(k, 0x51);
    s_key(k2, 0x52);
    s_key(k3, 0x53);
    assert_int_equal(book_withdraw_unknown(b, k, 20, 1000, 50000, s_frame, sizeof s_frame, NULL, 1),
                     CPN_OK);
    const book_peer_t *bp = book_peer(b, k);
    assert_non_null(bp);
    assert_true(bp->withdrawn);
    assert_int_equal(bp->frame_len, sizeof s_frame);
    book_stats_t st;
    book_stats(b, &st);
    assert_int_equal(st.peers, 0);
    cpn_package_t p = s_pkg("p", "H100", 8, 1000, 4);
    cpn_ad_t ad = s_ad(&p, 1, 60);
    assert_int_equal(book_put_ad(b, k, 10, 900, &ad, NULL, 0, NULL, 0), CPN_E_REPLAY);
    book_stats(b, &st);
    assert_int_equal(st.packages, 0);
    /* A known peer: as book_withdraw_from (an older seq refused, a repeated one too). */
    assert_int_equal(book_withdraw_unknown(b, k, 20, 1000, 50000, NULL, 0, NULL, 1),
                     CPN_E_NO_PACKAGE);
    /* Slots are bounded: two in a book of max_offers 2, the third refused. */
    assert_int_equal(book_withdraw_unknown(b, k2, 5, 1000, 50000, NULL, 0, NULL, 1), CPN_OK);
    assert_int_equal(book_withdraw_unknown(b, k3, 5, 1000, 50000, NULL, 0, NULL, 1), CPN_E_BUSY);
    /* The peer back with a newer AD: taken. */
    assert_int_equal(book_put_ad(b, k, 30, 2000, &ad, NULL, 0, NULL, 0), CPN_OK);
    book_stats(b, &st);
    assert_int_equal(st.peers, 1);
    /* k2's tombstone leaves at its expiry. */
    assert_int_equal(book_expire(b, 50000), 0);
    assert_null(book_peer(b, k2));
    book_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_withdraw_unknown_keeps_tombstone),
        cmocka_unit_test(test_newer_seq_replaces_older_refused),
        cmocka_unit_test(test_invalid_ad_refused),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_expiry_visits),
        cmocka_unit_test(test_withdraw),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_iterate),
        cmocka_unit_test(test_buckets_monotone),
        cmocka_unit_test(test_index_random_ops),
        cmocka_unit_test(test_index_random_reprice),
        cmocka_unit_test(test_reprice_moves),
    };
    return cmocka_run_group_tests_name("book", tests, NULL, NULL);
}
