/* test_match.c - the matcher: by model, by capability, equivalences, residency, ceilings, split,
 * the no-match reason, deterministic ties, and the indexed matcher cross-checked against a
 * brute-force scan (built on cpn_package_fits) over a random book. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "book.h"
#include "match.h"

#define GiB (1ULL << 30)

static void s_key(uint8_t key[CPN_PK_LEN], uint8_t v)
{
    memset(key, 0, CPN_PK_LEN);
    key[0] = v;
}

static cpn_package_t s_gpu(const char *id, const char *vendor, const char *model, uint32_t count,
                           uint32_t tflops, uint64_t mem_each, const char *region, uint64_t price,
                           uint32_t free)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.accel.vendor, sizeof p.accel.vendor, "%s", vendor);
    snprintf(p.accel.model, sizeof p.accel.model, "%s", model);
    p.accel.count = count;
    p.accel.bf16_tflops = tflops;
    p.accel.mem_bytes = mem_each;
    p.cores = 96;
    p.mem_bytes = 1024 * GiB;
    snprintf(p.storage_class, sizeof p.storage_class, "nvme");
    p.storage_bytes = 15000 * GiB;
    snprintf(p.region, sizeof p.region, "%s", region);
    p.price = price;
    p.total = free + 2;
    p.free = free;
    return p;
}

static cpn_package_t s_h100(const char *id, const char *region, uint64_t price, uint32_t free)
{
    return s_gpu(id, "nvidia", "H100-80GB", 8, 989, 80 * GiB, region, price, free);
}

static void s_put(book_t *b, uint8_t who, cpn_package_t *p, uint32_t n, const uint8_t *via)
{
    uint8_t k[CPN_PK_LEN];
    s_key(k, who);
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    ad.ttl_s = 60;
    ad.n_packages = n;
    ad.packages = p;
    const book_peer_t *pe = book_peer(b, k);
    uint64_t seq = pe ? pe->seq + 1 : 1;
    assert_int_equal(book_put_ad(b, k, seq, 1000, &ad, NULL, 0, via, via ? 1 : 0), CPN_OK);
}

static cpn_request_t s_req(uint32_t units)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "job-1");
    r.units = units;
    r.duration_s = 3600;
    return r;
}

static void s_list(cpn_namelist_t *l, const char *a, const char *b)
{
    memset(l, 0, sizeof *l);
    if (a)
        snprintf(l->items[l->n++], CPN_NAME_MAX, "%s", a);
    if (b)
        snprintf(l->items[l->n++], CPN_NAME_MAX, "%s", b);
}

#define NOW 2000

static void test_by_model(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p1[1] = {s_h100("h100x8", "cn-east", 210000, 2)};
    cpn_package_t p2[1] = {
        s_gpu("a100x8", "nvidia", "A100-80GB", 8, 312, 80 * GiB, "cn-east", 90000, 5)};
    s_put(b, 1, p1, 1, NULL);
    s_put(b, 2, p2, 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    snprintf(r.accel_model, sizeof r.accel_model, "h100-80gb"); /* case does not matter */
    match_cand_t out[4];
    size_t n = 99;
    match_fail_t why;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].peer[0], 1);
    assert_string_equal(out[0].package, "h100x8");
    assert_int_equal(out[0].price, 210000);
    assert_int_equal(out[0].free, 2);
    assert_int_equal(out[0].units, 1);
    /* Without a model both fit; the cheaper first. */
    r.accel_model[0] = '\0';
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "a100x8");
    assert_string_equal(out[1].package, "h100x8");
    assert_true(out[0].rank < out[1].rank);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 0, &n, &why), CPN_E_INVAL);
    r.units = 0;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_INVAL);
    book_destroy(&b);
}

/* 8 x H100: 8 x 989 = 7912 TFLOPS, 640 GB. 8 x Ascend 910B: 8 x 800 = 6400 TFLOPS, 512 GiB. */
static void test_by_capability_domestic(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p1[1] = {s_h100("h100x8", "cn-east", 210000, 2)};
    cpn_package_t p2[1] = {
        s_gpu("910bx8", "huawei", "Ascend-910B", 8, 800, 64 * GiB, "cn-east", 120000, 4)};
    s_put(b, 1, p1, 1, NULL);
    s_put(b, 2, p2, 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    r.min_tflops = 6000;
    r.min_accel_mem = 500 * GiB;
    match_cand_t out[4];
    size_t n;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "910bx8"); /* the domestic one is cheaper */
    assert_string_equal(out[1].package, "h100x8");
    /* Asking for more than the Ascend node has leaves the H100. */
    r.min_tflops = 7000;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "h100x8");
    r.min_tflops = 6000;
    r.min_accel_mem = 600 * GiB;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "h100x8");
    /* A preferred vendor can outweigh price: 210 / 1.1 > 120, so not here... */
    r.min_accel_mem = 0;
    s_list(&pol.prefer_vendors, "NVIDIA", NULL);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "910bx8");
    /* ...but with a weight of 100 (210 / 2 = 105 < 120) it does. */
    pol.w_vendor = 100;
    pol.w_local = 0; /* both peers are direct; keep the figure simple */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "h100x8");
    assert_int_equal(out[0].rank, 105000);
    book_destroy(&b);
}

static void test_equivalence(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p[2] = {
        s_gpu("h800x8", "nvidia", "H800", 8, 989, 80 * GiB, "cn-east", 150000, 3),
        s_gpu("910bx8", "huawei", "Ascend-910B", 8, 800, 64 * GiB, "cn-east", 100000, 3)};
    s_put(b, 1, p, 2, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    snprintf(r.accel_model, sizeof r.accel_model, "H100-80GB");
    match_cand_t out[4];
    size_t n;
    match_fail_t why;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(n, 0);
    assert_int_equal(why.constraint, CPN_C_ACCEL_MODEL);
    assert_int_equal(why.excluded, 2);
    /* "H100 may be served by H800": one level, case-insensitive. */
    pol.n_equiv = 1;
    snprintf(pol.equiv[0].model, CPN_NAME_MAX, "h100-80gb");
    s_list(&pol.equiv[0].accept, "h800", NULL);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "h800x8");
    /* Adding the Ascend as an equivalent: the cheaper one comes first. */
    s_list(&pol.equiv[0].accept, "H800", "Ascend-910B");
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "910bx8");
    /* A vendor constraint still holds over an equivalence. */
    snprintf(r.accel_vendor, sizeof r.accel_vendor, "nvidia");
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "h800x8");
    /* Not transitive: a rule for H800 does not extend H100's. */
    r.accel_vendor[0] = '\0';
    pol.n_equiv = 2;
    s_list(&pol.equiv[0].accept, "H800", NULL);
    snprintf(pol.equiv[1].model, CPN_NAME_MAX, "H800");
    s_list(&pol.equiv[1].accept, "Ascend-910B", NULL);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    book_destroy(&b);
}

static void test_region_residency(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p[3] = {s_h100("east", "cn-east", 200000, 1),
                          s_h100("north", "cn-north", 100000, 1),
                          s_h100("us", "us-west", 50000, 1)};
    s_put(b, 1, p, 3, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    match_cand_t out[4];
    size_t n;
    match_fail_t why;
    s_list(&r.regions, "cn-east", "CN-NORTH");
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "north");
    /* The policy's residency narrows the request's. */
    s_list(&pol.allowed_regions, "cn-east", "us-west");
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "east");
    /* No overlap: nothing, and region is why. */
    s_list(&pol.allowed_regions, "us-west", NULL);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_REGION);
    assert_int_equal(why.excluded, 3);
    /* Policy alone. */
    memset(&r.regions, 0, sizeof r.regions);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "us");
    /* A preferred region: 200 / 1.2 = 166.7 > 100, so north still wins at w_region 20... */
    memset(&pol.allowed_regions, 0, sizeof pol.allowed_regions);
    s_list(&r.regions, "cn-east", "cn-north");
    s_list(&r.prefer_regions, "cn-east", NULL);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_string_equal(out[0].package, "north");
    /* ...and east at w_region 150 (200 / 2.5 = 80 < 100). */
    pol.w_region = 150;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_string_equal(out[0].package, "east");
    book_destroy(&b);
}

static void test_price_ceiling(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p[3] = {s_h100("a", "cn-east", 100000, 1), s_h100("b", "cn-east", 200000, 1),
                          s_h100("c", "cn-east", 300000, 1)};
    s_put(b, 1, p, 3, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    match_cand_t out[4];
    size_t n;
    match_fail_t why;
    r.max_price = 250000;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 2);
    pol.max_price = 150000; /* the smaller ceiling holds */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    r.max_price = 0;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    r.max_price = 99999;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_PRICE);
    assert_int_equal(why.excluded, 3);
    assert_int_equal(why.total, 3);
    book_destroy(&b);
}

static void test_split(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p1[1] = {s_h100("a", "cn-east", 100000, 3)};
    cpn_package_t p2[1] = {s_h100("b", "cn-east", 110000, 4)};
    s_put(b, 1, p1, 1, NULL);
    s_put(b, 2, p2, 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(5);
    match_cand_t out[4];
    size_t n;
    match_fail_t why;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_UNITS);
    assert_int_equal(why.excluded, 2);
    r.split = true;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "a");
    assert_int_equal(out[0].units, 3);
    assert_string_equal(out[1].package, "b");
    assert_int_equal(out[1].units, 4);
    /* Too few units even together. */
    r.units = 8;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_UNITS);
    /* max too small to cover is a no-match too (the caller asks for enough). */
    r.units = 5;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 1, &n, &why), CPN_E_NO_MATCH);
    /* Not split, 4 units: only b. */
    r.split = false;
    r.units = 4;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "b");
    book_destroy(&b);
}

static void test_no_match_reason(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t p[14];
    for (int i = 0; i < 12; i++) {
        char id[24];
        snprintf(id, sizeof id, "a100-%d", i);
        p[i] = s_gpu(id, "nvidia", "A100-80GB", 8, 312, 80 * GiB, "cn-east", 90000, 1);
    }
    p[12] = s_h100("h100-a", "us-west", 200000, 1);
    p[13] = s_h100("h100-b", "us-west", 210000, 1);
    s_put(b, 1, p, 14, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    snprintf(r.accel_model, sizeof r.accel_model, "H100-80GB");
    s_list(&r.regions, "cn-east", NULL);
    match_cand_t out[4];
    size_t n;
    match_fail_t why;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_ACCEL_MODEL);
    assert_int_equal(why.excluded, 12);
    assert_int_equal(why.total, 14);
    char buf[128];
    match_fail_format(&why, buf, sizeof buf);
    /* and the runner-up: the two H100 offers are in the wrong region */
    assert_int_equal(why.next, CPN_C_REGION);
    assert_int_equal(why.next_excluded, 2);
    assert_string_equal(buf, "accelerator.model excluded 12 of 14 offers; region excluded 2");
    /* Each offer counts once, under its first failing constraint: cores comes before region. */
    r.accel_model[0] = '\0';
    r.cores = 200;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.constraint, CPN_C_CORES);
    assert_int_equal(why.excluded, 14);
    /* An empty book. */
    book_t *e = book_new(10);
    assert_int_equal(match_find(e, &r, &pol, NOW, out, 4, &n, &why), CPN_E_NO_MATCH);
    assert_int_equal(why.total, 0);
    match_fail_format(&why, buf, sizeof buf);
    assert_string_equal(buf, "no offers in the book");
    book_destroy(&e);
    book_destroy(&b);
}

static void test_deterministic_ties(void **state)
{
    (void)state;
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    match_cand_t out[8];
    size_t n;
    /* Same offers put in two orders give the same ranking: price, then key, then id. */
    for (int order = 0; order < 2; order++) {
        book_t *b = book_new(100);
        cpn_package_t p1[2] = {s_h100("z", "cn-east", 100000, 1),
                               s_h100("y", "cn-east", 100000, 1)};
        cpn_package_t p2[1] = {s_h100("x", "cn-east", 100000, 1)};
        cpn_package_t p3[1] = {s_h100("w", "cn-east", 90000, 1)};
        if (order == 0) {
            s_put(b, 7, p1, 2, NULL);
            s_put(b, 3, p2, 1, NULL);
            s_put(b, 9, p3, 1, NULL);
        } else {
            s_put(b, 9, p3, 1, NULL);
            s_put(b, 3, p2, 1, NULL);
            s_put(b, 7, p1, 2, NULL);
        }
        assert_int_equal(match_find(b, &r, &pol, NOW, out, 8, &n, NULL), CPN_OK);
        assert_int_equal(n, 4);
        assert_string_equal(out[0].package, "w");
        assert_string_equal(out[1].package, "x");
        assert_int_equal(out[1].peer[0], 3);
        assert_string_equal(out[2].package, "y");
        assert_string_equal(out[3].package, "z");
        /* max = 2 keeps the two best. */
        assert_int_equal(match_find(b, &r, &pol, NOW, out, 2, &n, NULL), CPN_OK);
        assert_int_equal(n, 2);
        assert_string_equal(out[1].package, "x");
        book_destroy(&b);
    }
}

static void test_local_expired_take(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    uint8_t via[CPN_PK_LEN];
    s_key(via, 200);
    cpn_package_t p1[1] = {s_h100("remote", "cn-east", 100000, 1)};
    cpn_package_t p2[1] = {s_h100("direct", "cn-east", 104000, 1)};
    s_put(b, 1, p1, 1, via);
    s_put(b, 2, p2, 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol); /* w_local 5: 104 / 1.05 = 99.05 < 100 */
    cpn_request_t r = s_req(1);
    match_cand_t out[4];
    size_t n;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "direct");
    pol.w_local = 0;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "remote");
    /* Taken units are not offered again. */
    assert_int_equal(book_take(b, out[0].peer, out[0].package, 1), CPN_OK);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "direct");
    /* An expired AD is ignored even before book_expire runs (ttl 60 s from ts 1000). */
    assert_int_equal(match_find(b, &r, &pol, 61000, out, 4, &n, NULL), CPN_E_NO_MATCH);
    book_destroy(&b);
}

/* Slices (issue 16): at one price, a package whose fit points cover the slice with its CPU
 * and memory comes before one whose summary only bounds the share (even if more fragmented);
 * a refusal for want of units (book_slice_refused) drops the covering point and lowers the
 * package's bound until its next AD, which restores it. */
static void test_slices_fit_and_refusal(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t pa[1] = {s_gpu("a10-a", "nvidia", "A10", 2, 125, 24 * GiB, "cn-east", 1000, 3)};
    pa[0].accel.share_min = 50;
    pa[0].cores = 16, pa[0].mem_bytes = 64 * GiB;
    pa[0].storage_class[0] = '\0', pa[0].storage_bytes = 0;
    cpn_package_t pb[1] = {pa[0]};
    snprintf(pb[0].id, sizeof pb[0].id, "a10-b");
    pa[0].slice_max = 1000, pa[0].frag = 600; /* more fragmented, but no core left by a GPU */
    pa[0].n_fit = 1, pa[0].fit[0] = (cpn_fit_t){2000, 0, 60000};
    pb[0].slice_max = 1000, pb[0].frag = 100;
    pb[0].n_fit = 1, pb[0].fit[0] = (cpn_fit_t){1000, 8000, 30000};
    s_put(b, 1, pa, 1, NULL);
    s_put(b, 2, pb, 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    r.share = 500, r.accel_count = 1, r.cores = 4, r.mem_bytes = 8 * GiB;
    match_cand_t out[4];
    size_t n;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "a10-b"); /* covered beside its CPU */
    r.cores = 0; /* both cover it now: the more fragmented one */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "a10-a");
    /* a10-a refuses half a GPU: not offered for that share until its next AD */
    assert_int_equal(book_slice_refused(b, out[0].peer, out[0].package, &r), CPN_OK);
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].package, "a10-b");
    r.mem_bytes = 9 * GiB; /* nor one larger in every dimension */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 1);
    r.mem_bytes = 8 * GiB;
    r.share = 400; /* a smaller slice is still offered there, without the point */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "a10-b");
    uint8_t k[CPN_PK_LEN];
    s_key(k, 9);
    assert_int_equal(book_slice_refused(b, k, "a10-a", &r), CPN_E_NO_PACKAGE);
    s_put(b, 1, pa, 1, NULL); /* the next AD */
    r.share = 500;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].package, "a10-a");
    book_destroy(&b);
}

/* Slices ranked by the gradients of the summaries: among covering packages at one price the
 * least growth of fragmentation for the slice's size wins, whatever `frag` says; a package
 * without a gradient for that size comes after those with one. */
static void test_slices_by_gradient(void **state)
{
    (void)state;
    book_t *b = book_new(100);
    cpn_package_t pk[3];
    for (int i = 0; i < 3; i++) {
        pk[i] = s_gpu("a10-x", "nvidia", "A10", 2, 125, 24 * GiB, "cn-east", 1000, 3);
        snprintf(pk[i].id, sizeof pk[i].id, "a10-%c", 'a' + i);
        pk[i].accel.share_min = 50;
        pk[i].cores = 16, pk[i].mem_bytes = 64 * GiB;
        pk[i].storage_class[0] = '\0', pk[i].storage_bytes = 0;
        pk[i].slice_max = 1000;
        pk[i].n_fit = 1, pk[i].fit[0] = (cpn_fit_t){2000, 16000, 65536};
    }
    pk[0].frag = 900, pk[0].n_grad = 1, pk[0].grad[0] = (cpn_grad_t){500, 40};
    pk[1].frag = 100, pk[1].n_grad = 2;
    pk[1].grad[0] = (cpn_grad_t){500, -250}, pk[1].grad[1] = (cpn_grad_t){1000, 0};
    pk[2].frag = 1000; /* no gradients at all */
    for (int i = 0; i < 3; i++)
        s_put(b, (uint8_t)(1 + i), &pk[i], 1, NULL);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r = s_req(1);
    r.share = 500, r.accel_count = 1, r.cores = 4, r.mem_bytes = 8 * GiB;
    match_cand_t out[4];
    size_t n;
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].package, "a10-b"); /* -250 */
    assert_string_equal(out[1].package, "a10-a"); /* +40 */
    assert_string_equal(out[2].package, "a10-c"); /* none */
    r.share = 1000; /* only a10-b has a gradient for a whole GPU */
    assert_int_equal(match_find(b, &r, &pol, NOW, out, 4, &n, NULL), CPN_OK);
    assert_string_equal(out[0].package, "a10-b");
    assert_string_equal(out[1].package, "a10-c"); /* then by frag */
    book_destroy(&b);
}

/* A slice CLAIM's alts: the other candidates of the same peer at the same price, in order;
 * none for a whole-unit request; ids with a ',' and ids that would not fit are left out. */
static void test_slice_alts(void **state)
{
    (void)state;
    match_cand_t c[6];
    memset(c, 0, sizeof c);
    const char *ids[] = {"a", "b", "c,d", "e", "f", "g"};
    for (int i = 0; i < 6; i++) {
        snprintf(c[i].package, sizeof c[i].package, "%s", ids[i]);
        c[i].peer[0] = 1;
        c[i].price = 1000;
    }
    c[3].price = 2000; /* "e": another price */
    c[4].peer[0] = 2;  /* "f": another peer */
    cpn_request_t slice, whole;
    memset(&slice, 0, sizeof slice);
    memset(&whole, 0, sizeof whole);
    slice.share = 500;
    char out[CPN_ALTS_LEN];
    assert_int_equal(match_alts(&slice, c, 6, &c[1], out, sizeof out), 2);
    assert_string_equal(out, "a,g");
    assert_int_equal(match_alts(&whole, c, 6, &c[1], out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(match_alts(&slice, c, 6, &c[1], out, 3), 1); /* "a" fits, "a,g" not */
    assert_string_equal(out, "a");
    /* "a" refused no-units with alts "b,g": of the candidates still to try (b .. g), b and g
     * go, "c,d" (never named), e (another price) and f (another peer) stay. */
    assert_int_equal(match_drop_alts(&slice, c, 6, 1), 4);
    assert_string_equal(c[1].package, "c,d");
    assert_string_equal(c[2].package, "e");
    assert_string_equal(c[3].package, "f");
    assert_int_equal(match_drop_alts(&whole, c, 4, 1), 4);
}

static void test_policy_validate(void **state)
{
    (void)state;
    match_policy_t pol;
    const char *why = NULL;
    match_policy_default(&pol);
    assert_int_equal(match_policy_validate(&pol, &why), CPN_OK);
    assert_null(why);
    pol.w_price = MATCH_WEIGHT_MAX + 1;
    assert_int_equal(match_policy_validate(&pol, &why), CPN_E_CONFIG);
    assert_non_null(why);
    match_policy_default(&pol);
    pol.n_equiv = 1; /* a rule with no model */
    assert_int_equal(match_policy_validate(&pol, &why), CPN_E_CONFIG);
    match_policy_default(&pol);
    pol.prefer_vendors.n = CPN_LIST_MAX + 1;
    assert_int_equal(match_policy_validate(&pol, &why), CPN_E_CONFIG);
}

/* ---- cross-check against a brute-force scan ---------------------------------------------- */

static uint64_t s_rng;
static uint32_t s_rand(void)
{
    s_rng = s_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(s_rng >> 33);
}

static const char *s_pick(const char *const *v, size_t n)
{
    return v[s_rand() % n];
}
#define PICK(v) s_pick((v), sizeof(v) / sizeof(v)[0])

static const char *const s_vendors[] = {"nvidia", "huawei", "NVIDIA", "amd"};
static const char *const s_models[] = {"H100", "h100", "A100", "Ascend-910B", "H800", "MI300X"};
static const char *const s_regions[] = {"cn-east", "cn-north", "us-west", "EU-central"};
static const char *const s_classes[] = {"", "nvme", "ssd"};

typedef struct {
    uint8_t key[CPN_PK_LEN];
    bool local;
    uint64_t expires;
    cpn_package_t p;
} s_ref_t;

/* The brute force: every package, cpn_package_fits for the literal constraints. */
static bool s_ref_fits(const s_ref_t *o, const cpn_request_t *r, const match_policy_t *pol,
                       uint64_t now, cpn_constraint_t *fail)
{
    cpn_constraint_t f = CPN_C_OK;
    if (r->accel_model[0]) {
        bool ok = o->p.accel.count > 0 && strcasecmp(o->p.accel.model, r->accel_model) == 0;
        for (uint32_t i = 0; !ok && o->p.accel.count > 0 && i < pol->n_equiv; i++) {
            if (strcasecmp(pol->equiv[i].model, r->accel_model) != 0)
                continue;
            for (uint32_t j = 0; j < pol->equiv[i].accept.n; j++)
                ok = ok || strcasecmp(pol->equiv[i].accept.items[j], o->p.accel.model) == 0;
        }
        if (!ok)
            f = CPN_C_ACCEL_MODEL;
    }
    if (f == CPN_C_OK) {
        cpn_request_t c = *r;
        cpn_package_t p = o->p;
        c.accel_model[0] = '\0';
        memset(&c.regions, 0, sizeof c.regions);
        c.max_price = 0;
        p.free = UINT32_MAX;
        f = cpn_package_fits(&p, &c);
    }
    if (f == CPN_C_OK) {
        bool in_r = r->regions.n == 0, in_p = pol->allowed_regions.n == 0;
        for (uint32_t i = 0; i < r->regions.n; i++)
            in_r = in_r || strcasecmp(r->regions.items[i], o->p.region) == 0;
        for (uint32_t i = 0; i < pol->allowed_regions.n; i++)
            in_p = in_p || strcasecmp(pol->allowed_regions.items[i], o->p.region) == 0;
        if (!in_r || !in_p)
            f = CPN_C_REGION;
    }
    if (f == CPN_C_OK) {
        uint64_t ceil = UINT64_MAX;
        if (r->max_price)
            ceil = r->max_price;
        if (pol->max_price && pol->max_price < ceil)
            ceil = pol->max_price;
        if (o->p.price > ceil)
            f = CPN_C_PRICE;
    }
    if (f == CPN_C_OK && (o->p.free < (r->split ? 1u : r->units) || o->expires <= now))
        f = CPN_C_UNITS;
    *fail = f;
    return f == CPN_C_OK;
}

typedef struct {
    uint64_t rank, price;
    uint32_t bonus;
    const s_ref_t *o;
} s_rcand_t;

static int s_rcand_cmp(const void *x, const void *y)
{
    const s_rcand_t *a = x, *b = y;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->bonus != b->bonus)
        return a->bonus > b->bonus ? -1 : 1;
    if (a->price != b->price)
        return a->price < b->price ? -1 : 1;
    int c = memcmp(a->o->key, b->o->key, CPN_PK_LEN);
    return c != 0 ? c : strcmp(a->o->p.id, b->o->p.id);
}

static bool s_in_list(const cpn_namelist_t *l, const char *s)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i], s) == 0)
            return true;
    return false;
}

static void s_rand_list(cpn_namelist_t *l, const char *const *v, size_t nv, uint32_t max)
{
    memset(l, 0, sizeof *l);
    uint32_t n = s_rand() % (max + 1);
    for (uint32_t i = 0; i < n; i++)
        snprintf(l->items[l->n++], CPN_NAME_MAX, "%s", v[s_rand() % nv]);
}

enum { CC_PEERS = 250, CC_PER = 8 };

/* (Re)advertise random packages for peer i of the cross-check; the reference follows. */
static void s_cc_put(book_t *b, s_ref_t *ref, uint32_t i, uint64_t seq)
{
    uint8_t key[CPN_PK_LEN];
    if (seq == 1) {
        for (int j = 0; j < CPN_PK_LEN; j++)
            key[j] = (uint8_t)s_rand();
        if (i % 5 == 0)
            memset(key, 0x11, 8); /* ties past the first 8 key bytes */
    } else {
        memcpy(key, ref[i * CC_PER].key, CPN_PK_LEN);
    }
    uint8_t via[CPN_PK_LEN] = {0};
    bool local = s_rand() % 2;
    if (!local)
        via[3] = 1;
    cpn_package_t p[CC_PER];
    for (uint32_t j = 0; j < CC_PER; j++) {
        cpn_package_t *q = &p[j];
        memset(q, 0, sizeof *q);
        snprintf(q->id, sizeof q->id, "pkg-%u", (j * 7 + i + (uint32_t)seq) % 13 + 100 * j);
        q->accel.count = s_rand() % 3 == 0 ? 0 : 1u << (s_rand() % 4);
        if (q->accel.count > 0) {
            snprintf(q->accel.vendor, sizeof q->accel.vendor, "%s", PICK(s_vendors));
            snprintf(q->accel.model, sizeof q->accel.model, "%s", PICK(s_models));
            q->accel.bf16_tflops = 300 + 100 * (s_rand() % 8);
            q->accel.mem_bytes = (32ULL << (s_rand() % 3)) * GiB;
        }
        q->cores = 16u << (s_rand() % 4);
        q->mem_bytes = (64ULL << (s_rand() % 5)) * GiB;
        snprintf(q->storage_class, sizeof q->storage_class, "%s", PICK(s_classes));
        q->storage_bytes = q->storage_class[0] ? (1000ULL << (s_rand() % 3)) * GiB : 0;
        q->fabric_bps = (s_rand() % 2) * 400000000000ULL;
        q->egress_bps = (1 + s_rand() % 4) * 10000000000ULL;
        snprintf(q->region, sizeof q->region, "%s", PICK(s_regions));
        q->price = 1000 * (1 + s_rand() % 40); /* few prices: many ties */
        q->total = 4;
        q->free = s_rand() % 5;
    }
    cpn_ad_t ad = {.ttl_s = 30 + s_rand() % 60, .n_packages = CC_PER, .packages = p};
    uint64_t ts = 1000;
    assert_int_equal(book_put_ad(b, key, seq, ts, &ad, NULL, 0, via, local ? 0 : 1), CPN_OK);
    for (uint32_t j = 0; j < CC_PER; j++) {
        s_ref_t *o = &ref[i * CC_PER + j];
        memcpy(o->key, key, CPN_PK_LEN);
        o->local = local;
        o->expires = ts + ad.ttl_s * 1000ULL;
        o->p = p[j];
    }
}

static void test_cross_check_brute_force(void **state)
{
    (void)state;
    enum { PEERS = CC_PEERS, PER = CC_PER, REQS = 500, K = 5 };
    s_rng = 20240601;
    book_t *b = book_new(PEERS * PER);
    s_ref_t *ref = calloc(PEERS * PER, sizeof *ref);
    s_rcand_t *rc = calloc(PEERS * PER, sizeof *rc);
    assert_non_null(ref);
    assert_non_null(rc);
    size_t nref = 0;
    for (uint32_t i = 0; i < PEERS; i++)
        s_cc_put(b, ref, i, 1);
    nref = PEERS * PER;
    size_t matched = 0, fail_checked = 0;
    for (uint32_t q = 0; q < REQS; q++) {
        match_policy_t pol;
        match_policy_default(&pol);
        pol.w_price = s_rand() % 4 == 0 ? 0 : 1 + s_rand() % 3;
        pol.w_region = s_rand() % 60;
        pol.w_vendor = s_rand() % 60;
        pol.w_local = s_rand() % 30;
        s_rand_list(&pol.prefer_vendors, s_vendors, 4, 1);
        s_rand_list(&pol.allowed_regions, s_regions, 4, s_rand() % 3 == 0 ? 2 : 0);
        pol.max_price = s_rand() % 4 == 0 ? 1000 * (5 + s_rand() % 30) : 0;
        pol.n_equiv = s_rand() % 3;
        for (uint32_t e = 0; e < pol.n_equiv; e++) {
            snprintf(pol.equiv[e].model, CPN_NAME_MAX, "%s", PICK(s_models));
            s_rand_list(&pol.equiv[e].accept, s_models, 6, 2);
            if (pol.equiv[e].accept.n == 0)
                snprintf(pol.equiv[e].accept.items[pol.equiv[e].accept.n++], CPN_NAME_MAX, "%s",
                         PICK(s_models));
        }
        cpn_request_t r = s_req(1 + (s_rand() % 4 == 0 ? s_rand() % 4 : 0));
        r.split = s_rand() % 5 == 0;
        if (s_rand() % 2)
            snprintf(r.accel_model, sizeof r.accel_model, "%s", PICK(s_models));
        if (s_rand() % 6 == 0)
            snprintf(r.accel_vendor, sizeof r.accel_vendor, "%s", PICK(s_vendors));
        r.accel_count = s_rand() % 3 == 0 ? 1u << (s_rand() % 4) : 0;
        r.min_tflops = s_rand() % 5 == 0 ? 1000 * (s_rand() % 6) : 0;
        r.min_accel_mem = s_rand() % 5 == 0 ? (100ULL * (s_rand() % 6)) * GiB : 0;
        r.cores = s_rand() % 2 ? 16u << (s_rand() % 4) : 0;
        r.mem_bytes = s_rand() % 2 ? (64ULL << (s_rand() % 5)) * GiB : 0;
        if (s_rand() % 5 == 0)
            snprintf(r.storage_class, sizeof r.storage_class, "%s", PICK(s_classes));
        r.storage_bytes = s_rand() % 5 == 0 ? 1500ULL * GiB : 0;
        r.fabric_bps = s_rand() % 6 == 0 ? 100000000000ULL : 0;
        r.egress_bps = s_rand() % 6 == 0 ? 25000000000ULL : 0;
        s_rand_list(&r.regions, s_regions, 4, s_rand() % 3 == 0 ? 3 : 0);
        s_rand_list(&r.prefer_regions, s_regions, 4, 2);
        s_rand_list(&r.prefer_vendors, s_vendors, 4, 1);
        r.max_price = s_rand() % 4 == 0 ? 1000 * (5 + s_rand() % 30) : 0;
        uint64_t now = 1000 + (s_rand() % 3 == 0 ? 60000 : 0); /* sometimes some expired */

        /* Brute force. */
        size_t nrc = 0;
        uint64_t cnt[CPN_C__COUNT] = {0}, covered = 0;
        for (size_t i = 0; i < nref; i++) {
            cpn_constraint_t f;
            if (!s_ref_fits(&ref[i], &r, &pol, now, &f)) {
                cnt[f]++;
                continue;
            }
            uint32_t bonus = 0;
            if (s_in_list(&r.prefer_regions, ref[i].p.region))
                bonus += pol.w_region;
            if (s_in_list(&pol.prefer_vendors, ref[i].p.accel.vendor) ||
                s_in_list(&r.prefer_vendors, ref[i].p.accel.vendor))
                bonus += pol.w_vendor;
            if (ref[i].local)
                bonus += pol.w_local;
            rc[nrc].rank = ref[i].p.price * pol.w_price * 100 / (100 + bonus);
            rc[nrc].price = ref[i].p.price;
            rc[nrc].bonus = bonus;
            rc[nrc].o = &ref[i];
            nrc++;
        }
        qsort(rc, nrc, sizeof *rc, s_rcand_cmp);
        for (size_t i = 0; i < nrc && i < K; i++)
            covered += r.split ? (rc[i].o->p.free < r.units ? rc[i].o->p.free : r.units) : r.units;
        bool ref_ok = nrc > 0 && covered >= r.units;

        match_cand_t out[K];
        size_t n = 0;
        match_fail_t why;
        int rr = match_find(b, &r, &pol, now, out, K, &n, &why);
        assert_int_equal(rr, ref_ok ? CPN_OK : CPN_E_NO_MATCH);
        if (ref_ok) {
            matched++;
            assert_int_equal(n, nrc < K ? nrc : K);
            for (size_t i = 0; i < n; i++) {
                assert_memory_equal(out[i].peer, rc[i].o->key, CPN_PK_LEN);
                assert_string_equal(out[i].package, rc[i].o->p.id);
                assert_int_equal(out[i].rank, rc[i].rank);
            }
        } else if (nrc == 0) {
            int best = 0, second = 0; /* the most excluding, the next; enum order on ties */
            for (int c = 1; c < CPN_C__COUNT; c++)
                if (cnt[c] > (best ? cnt[best] : 0))
                    best = c;
            for (int c = 1; c < CPN_C__COUNT; c++)
                if (c != best && cnt[c] > (second ? cnt[second] : 0))
                    second = c;
            assert_int_equal(why.total, nref);
            assert_int_equal(why.constraint, best);
            assert_int_equal(why.excluded, cnt[best]);
            assert_int_equal(why.next, second);
            assert_int_equal(why.next_excluded, second ? cnt[second] : 0);
            fail_checked++;
        }
        /* Peers re-advertise now and then (new shapes, prices, free counts). */
        if (q % 10 == 9)
            s_cc_put(b, ref, s_rand() % PEERS, 2 + q);
        /* The broker takes what it leased: the index must follow. */
        if (rr == CPN_OK && s_rand() % 2 == 0) {
            assert_int_equal(book_take(b, out[0].peer, out[0].package, out[0].units), CPN_OK);
            for (size_t i = 0; i < nref; i++)
                if (memcmp(ref[i].key, out[0].peer, CPN_PK_LEN) == 0 &&
                    strcmp(ref[i].p.id, out[0].package) == 0)
                    ref[i].p.free -= out[0].units;
        }
    }
    printf("# cross-check: %zu matched, %zu no-match reasons compared\n", matched, fail_checked);
    /* The random mix exercised both outcomes. */
    assert_true(matched > 300);
    assert_true(fail_checked > 20);
    book_destroy(&b);
    free(ref);
    free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_model),
        cmocka_unit_test(test_by_capability_domestic),
        cmocka_unit_test(test_equivalence),
        cmocka_unit_test(test_region_residency),
        cmocka_unit_test(test_price_ceiling),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_no_match_reason),
        cmocka_unit_test(test_deterministic_ties),
        cmocka_unit_test(test_local_expired_take),
        cmocka_unit_test(test_slices_fit_and_refusal),
        cmocka_unit_test(test_slices_by_gradient),
        cmocka_unit_test(test_slice_alts),
        cmocka_unit_test(test_policy_validate),
        cmocka_unit_test(test_cross_check_brute_force),
    };
    return cmocka_run_group_tests_name("match", tests, NULL, NULL);
}
