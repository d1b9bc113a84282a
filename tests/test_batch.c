/* test_batch.c - batch matching: the scarce offer kept for the request that needs it, the most
 * accelerators first, a multi-unit request moved off an offer others need, cost minimised,
 * requests alike served in arrival order, candidate lists that cover the batch, requests
 * without accelerators placed, split and unmatched requests left out, preferences ranked as
 * the matcher ranks them, the book left untouched, bad arguments refused, and plans of random
 * one-unit batches checked against a brute-force optimum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"
#include "book.h"
#include "match.h"

#define GiB (1ULL << 30)
#define NOW 2000

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
        p.accel.bf16_tflops = 100;
        p.accel.mem_bytes = 16 * GiB;
    }
    p.cores = 16;
    p.mem_bytes = 64 * GiB;
    snprintf(p.region, sizeof p.region, "cn-east");
    p.price = price;
    p.total = free;
    p.free = free;
    return p;
}

/* Peer `who` advertises one package. */
static void s_put(book_t *b, uint8_t who, cpn_package_t p)
{
    uint8_t k[CPN_PK_LEN];
    memset(k, 0, sizeof k);
    k[0] = who;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    ad.ttl_s = 60;
    ad.n_packages = 1;
    ad.packages = &p;
    assert_int_equal(book_put_ad(b, k, 1, 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
}

static cpn_request_t s_req(const char *id, uint32_t units, const char *model, uint32_t accel)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = units;
    r.duration_s = 3600;
    snprintf(r.accel_model, sizeof r.accel_model, "%s", model);
    r.accel_count = accel;
    return r;
}

/* The package request i was placed on, or NULL. */
static const char *s_where(const batch_place_t *out, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        if (out[k].req == i)
            return out[k].cand.package;
    return NULL;
}

/* The broker's way, for comparison: arrival order, best candidate, book_take. */
static uint64_t s_greedy_accel(book_t *b, const cpn_request_t *r, size_t n,
                               const match_policy_t *pol)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        match_cand_t c;
        size_t k = 0;
        if (match_find(b, &r[i], pol, NOW, &c, 1, &k, NULL) != CPN_OK)
            continue;
        assert_int_equal(book_take(b, c.peer, c.package, c.units), CPN_OK);
        acc += (uint64_t)r[i].units * r[i].accel_count;
    }
    return acc;
}

/* A request that runs anywhere must not take the only offer a later request can use. */
static void test_scarce_offer_kept(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("t4", "T4", 1, 1000, 1));
    s_put(b, 2, s_pkg("g2", "G2", 1, 2000, 1));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[2] = {s_req("any", 1, "", 1), s_req("needs-t4", 1, "T4", 1)};
    batch_place_t out[2];
    size_t n = 99;
    assert_int_equal(batch_plan(b, r, 2, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(s_where(out, n, 0), "g2");
    assert_string_equal(s_where(out, n, 1), "t4");
    assert_int_equal(out[0].req, 0); /* request order */
    assert_int_equal(out[0].cand.units, 1);
    assert_int_equal(out[0].cand.price, 2000);
    /* One at a time, the first takes the cheap T4 and the second finds nothing. */
    assert_int_equal(s_greedy_accel(b, r, 2, &pol), 1);
    book_destroy(&b);
}

/* A 4-unit request and a 1-unit request, room for 4: the 4 accelerators win. */
static void test_most_accelerators_first(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("node", "A10", 1, 1000, 4));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[2] = {s_req("small", 1, "", 1), s_req("big", 4, "", 1)};
    batch_place_t out[2];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 2, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].req, 1);
    assert_int_equal(out[0].cand.units, 4);
    assert_int_equal(s_greedy_accel(b, r, 2, &pol), 1);
    book_destroy(&b);
}

/* A 2-unit request first lands on the cheap T4 node, which the T4-only requests need: the
 * repair moves it to the G2 node and all three are placed. */
static void test_multi_unit_moved(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("t4", "T4", 1, 1000, 2));
    s_put(b, 2, s_pkg("g2", "G2", 1, 2000, 8));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[3] = {s_req("pair", 2, "", 1), s_req("t4-a", 1, "T4", 1),
                          s_req("t4-b", 1, "T4", 1)};
    batch_place_t out[3];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 3, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 3);
    assert_string_equal(s_where(out, n, 0), "g2");
    assert_string_equal(s_where(out, n, 1), "t4");
    assert_string_equal(s_where(out, n, 2), "t4");
    assert_int_equal(s_greedy_accel(b, r, 3, &pol), 2);
    book_destroy(&b);
}

/* Everything fits everywhere: everyone on the cheapest offers, up to their units. */
static void test_cheapest(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("dear", "A10", 1, 5000, 5));
    s_put(b, 2, s_pkg("cheap", "A10", 1, 1000, 2));
    s_put(b, 3, s_pkg("mid", "A10", 1, 3000, 1));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[4] = {s_req("a", 1, "", 1), s_req("b", 1, "", 1), s_req("c", 1, "", 1),
                          s_req("d", 1, "", 1)};
    batch_place_t out[4];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 4, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 4);
    uint64_t cost = 0;
    for (size_t i = 0; i < n; i++)
        cost += out[i].cand.price;
    assert_int_equal(cost, 1000 + 1000 + 3000 + 5000);
    book_destroy(&b);
}

/* Requests alike share one node of the flow; the earlier ones get the better offers. */
static void test_alike_in_arrival_order(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("dear", "A10", 1, 5000, 1));
    s_put(b, 2, s_pkg("cheap", "A10", 1, 1000, 1));
    s_put(b, 3, s_pkg("mid", "A10", 1, 3000, 1));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[4] = {s_req("a", 1, "", 1), s_req("b", 1, "", 1), s_req("c", 1, "", 1),
                          s_req("d", 1, "", 1)};
    r[2].duration_s = 60; /* the duration does not change where a request may go */
    batch_place_t out[4];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 4, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 3);
    assert_string_equal(s_where(out, n, 0), "cheap");
    assert_string_equal(s_where(out, n, 1), "mid");
    assert_string_equal(s_where(out, n, 2), "dear");
    assert_null(s_where(out, n, 3));
    book_destroy(&b);
}

/* The highest price among n placements. */
static uint64_t s_dearest(const batch_place_t *out, size_t n)
{
    uint64_t most = 0;
    for (size_t i = 0; i < n; i++)
        most = out[i].cand.price > most ? out[i].cand.price : most;
    return most;
}

/* `offers` peers, each with one T4 unit; peer i's costs 1000 + i. */
static book_t *s_t4_book(int offers)
{
    book_t *b = book_new((size_t)offers);
    assert_non_null(b);
    for (int i = 0; i < offers; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%03d", i);
        uint8_t k[CPN_PK_LEN];
        memset(k, 0, sizeof k);
        k[0] = (uint8_t)(i & 0xff);
        k[1] = (uint8_t)(i >> 8);
        cpn_package_t pk = s_pkg(id, "T4", 1, 1000 + (uint64_t)i, 1);
        cpn_ad_t ad;
        memset(&ad, 0, sizeof ad);
        ad.ttl_s = 60;
        ad.n_packages = 1;
        ad.packages = &pk;
        assert_int_equal(book_put_ad(b, k, 1, 1000, &ad, NULL, 0, NULL, 0), CPN_OK);
    }
    return b;
}

/* More requests alike than BATCH_CANDS_MIN offers of one unit: the list grows until its units
 * cover the batch, so every request is placed, on the cheapest offers. */
static void test_candidates_cover_the_batch(void **state)
{
    (void)state;
    enum { OFFERS = 300, REQS = 250 };
    book_t *b = s_t4_book(OFFERS);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t *r = calloc(REQS, sizeof *r);
    batch_place_t *out = calloc(REQS, sizeof *out);
    assert_non_null(r);
    assert_non_null(out);
    for (int i = 0; i < REQS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        r[i] = s_req(id, 1, "", 1);
    }
    size_t n = 0;
    assert_true(REQS > BATCH_CANDS_MIN);
    assert_int_equal(batch_plan(b, r, REQS, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, REQS);
    uint64_t most = s_dearest(out, n);
    assert_int_equal(most, 1000 + REQS - 1);   /* the 250 cheapest, none dearer */
    assert_int_equal(out[0].cand.price, 1000); /* the first request, the cheapest */
    free(r);
    free(out);
    book_destroy(&b);
}

/* One request for a million units (it fits no offer) beside 300 one-unit requests of 300
 * shapes: the lists stop at one offer per request instead of growing toward the million, and
 * the one-unit requests still get the 300 cheapest offers. */
static void test_huge_request_bounded(void **state)
{
    (void)state;
    enum { OFFERS = 600, REQS = 301 };
    book_t *b = s_t4_book(OFFERS);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t *r = calloc(REQS, sizeof *r);
    batch_place_t *out = calloc(REQS, sizeof *out);
    assert_non_null(r);
    assert_non_null(out);
    r[0] = s_req("huge", 1000000, "", 1);
    for (int i = 1; i < REQS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        r[i] = s_req(id, 1, "", 1);
        r[i].max_price = 100000 + (uint64_t)i; /* a shape of its own; excludes no offer */
    }
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, REQS, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, REQS - 1);
    assert_null(s_where(out, n, 0));
    uint64_t most = s_dearest(out, n);
    assert_int_equal(most, 1000 + REQS - 2); /* the 300 cheapest, none dearer */
    free(r);
    free(out);
    book_destroy(&b);
}

/* Requests without accelerators count as placed requests: they are placed, cheapest first. */
static void test_cpu_only_placed(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("cpu-a", "", 0, 300, 1));
    s_put(b, 2, s_pkg("cpu-b", "", 0, 100, 1));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[2] = {s_req("x", 1, "", 0), s_req("y", 1, "", 0)};
    r[0].cores = 8;
    r[1].cores = 8;
    batch_place_t out[2];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 2, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 2);
    assert_non_null(s_where(out, n, 0));
    assert_non_null(s_where(out, n, 1));
    book_destroy(&b);
}

/* Split requests and requests nothing fits are left out; the others are planned. */
static void test_left_out(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("t4", "T4", 1, 1000, 4));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[3] = {s_req("split", 2, "", 1), s_req("h100", 1, "H100", 1),
                          s_req("ok", 1, "T4", 1)};
    r[0].split = true;
    batch_place_t out[3];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 3, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].req, 2);
    book_destroy(&b);
}

/* The rank key decides, preferences included: same price, the preferred region wins. */
static void test_preferences_rank(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    cpn_package_t west = s_pkg("west", "A10", 1, 1000, 1);
    cpn_package_t east = s_pkg("east", "A10", 1, 1100, 1);
    snprintf(west.region, sizeof west.region, "cn-west");
    s_put(b, 1, west);
    s_put(b, 2, east);
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[1] = {s_req("pref", 1, "", 1)};
    snprintf(r[0].prefer_regions.items[0], CPN_NAME_MAX, "cn-east");
    r[0].prefer_regions.n = 1;
    batch_place_t out[1];
    size_t n = 0;
    assert_int_equal(batch_plan(b, r, 1, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 1);
    match_cand_t best;
    size_t k = 0;
    assert_int_equal(match_find(b, &r[0], &pol, NOW, &best, 1, &k, NULL), CPN_OK);
    assert_string_equal(out[0].cand.package, best.package); /* 1100 preferred beats 1000 */
    assert_string_equal(out[0].cand.package, "east");
    book_destroy(&b);
}

static void test_book_untouched_deterministic(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("t4", "T4", 1, 1000, 3));
    s_put(b, 2, s_pkg("g2", "G2", 1, 2000, 3));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[4] = {s_req("a", 1, "", 1), s_req("b", 2, "", 1), s_req("c", 1, "T4", 1),
                          s_req("d", 1, "G2", 1)};
    book_stats_t before, after;
    book_stats(b, &before);
    batch_place_t o1[4], o2[4];
    size_t n1 = 0, n2 = 0;
    assert_int_equal(batch_plan(b, r, 4, &pol, NOW, o1, &n1), CPN_OK);
    assert_int_equal(batch_plan(b, r, 4, &pol, NOW, o2, &n2), CPN_OK);
    book_stats(b, &after);
    assert_int_equal(before.free_units, after.free_units);
    assert_int_equal(n1, 4);
    assert_int_equal(n1, n2);
    for (size_t i = 0; i < n1; i++) {
        assert_int_equal(o1[i].req, o2[i].req);
        assert_string_equal(o1[i].cand.package, o2[i].cand.package);
    }
    book_destroy(&b);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    book_t *b = book_new(10);
    s_put(b, 1, s_pkg("t4", "T4", 1, 1000, 3));
    match_policy_t pol;
    match_policy_default(&pol);
    cpn_request_t r[1] = {s_req("a", 1, "", 1)};
    batch_place_t out[1];
    size_t n = 7;
    assert_int_equal(batch_plan(b, r, 0, &pol, NOW, out, &n), CPN_OK);
    assert_int_equal(n, 0);
    assert_int_equal(batch_plan(NULL, r, 1, &pol, NOW, out, &n), CPN_E_INVAL);
    assert_int_equal(batch_plan(b, NULL, 1, &pol, NOW, out, &n), CPN_E_INVAL);
    assert_int_equal(batch_plan(b, r, 1, NULL, NOW, out, &n), CPN_E_INVAL);
    assert_int_equal(batch_plan(b, r, 1, &pol, NOW, NULL, &n), CPN_E_INVAL);
    assert_int_equal(batch_plan(b, r, 1, &pol, NOW, out, NULL), CPN_E_INVAL);
    assert_int_equal(batch_plan(b, r, BATCH_MAX + 1, &pol, NOW, out, &n), CPN_E_INVAL);
    r[0].units = 0;
    assert_int_equal(batch_plan(b, r, 1, &pol, NOW, out, &n), CPN_E_INVAL);
    assert_int_equal(n, 0);
    r[0].units = 1;
    pol.w_price = MATCH_WEIGHT_MAX + 1;
    assert_int_equal(batch_plan(b, r, 1, &pol, NOW, out, &n), CPN_E_INVAL);
    book_destroy(&b);
}

/* ---- random one-unit batches against a brute-force optimum ------------------------------- */

#define R_REQS 7
#define R_OFFS 4

static uint32_t s_rng = 12345;

static uint32_t s_rand(uint32_t n)
{
    s_rng = s_rng * 1103515245u + 12345u;
    return (s_rng >> 16) % n;
}

typedef struct {
    int64_t acc, placed, cost; /* better: more acc, then more placed, then less cost */
} s_val_t;

static int s_better(s_val_t a, s_val_t b)
{
    if (a.acc != b.acc)
        return a.acc > b.acc;
    if (a.placed != b.placed)
        return a.placed > b.placed;
    return a.cost < b.cost;
}

static void test_random_against_brute_force(void **state)
{
    (void)state;
    static const char *models[] = {"T4", "G2", "V100"};
    int greedy_short = 0;
    for (int round = 0; round < 200; round++) {
        book_t *b = book_new(R_OFFS);
        uint32_t cap[R_OFFS];
        for (uint8_t o = 0; o < R_OFFS; o++) {
            char id[16];
            snprintf(id, sizeof id, "p%u", o);
            cap[o] = s_rand(3);
            cpn_package_t p =
                s_pkg(id, models[s_rand(3)], 1 + s_rand(2), 1000 + 100 * s_rand(20), cap[o]);
            p.total = cap[o] + 1;
            p.cores = 4 + 4 * s_rand(3);
            s_put(b, (uint8_t)(o + 1), p);
        }
        match_policy_t pol;
        match_policy_default(&pol);
        cpn_request_t r[R_REQS];
        for (int i = 0; i < R_REQS; i++) {
            char id[16];
            snprintf(id, sizeof id, "r%d", i);
            uint32_t accel = s_rand(3); /* 0: a CPU-only request, which needs cores */
            r[i] = s_req(id, 1, accel == 0 || s_rand(2) ? "" : models[s_rand(3)], accel);
            r[i].cores = 4 * s_rand(4) + (accel == 0 ? 4 : 0);
        }
        /* Feasible offers and their rank per request, from the matcher on the empty book. */
        int64_t rank[R_REQS][R_OFFS];
        for (int i = 0; i < R_REQS; i++) {
            match_cand_t c[R_OFFS];
            size_t n = 0;
            for (int o = 0; o < R_OFFS; o++)
                rank[i][o] = -1;
            if (match_find(b, &r[i], &pol, NOW, c, R_OFFS, &n, NULL) != CPN_OK)
                continue;
            for (size_t k = 0; k < n; k++)
                rank[i][c[k].package[1] - '0'] = (int64_t)c[k].rank;
        }
        /* Brute force: each request on nothing or one feasible offer with room. */
        s_val_t best = {0, 0, 0};
        uint32_t pick[R_REQS] = {0};
        for (;;) {
            uint32_t used[R_OFFS] = {0};
            s_val_t v = {0, 0, 0};
            int ok = 1;
            for (int i = 0; i < R_REQS && ok; i++) {
                if (pick[i] == 0)
                    continue;
                int o = (int)pick[i] - 1;
                if (rank[i][o] < 0 || ++used[o] > cap[o])
                    ok = 0;
                v.acc += r[i].accel_count;
                v.placed++;
                v.cost += rank[i][o];
            }
            if (ok && s_better(v, best))
                best = v;
            int i = 0;
            while (i < R_REQS && ++pick[i] > R_OFFS)
                pick[i++] = 0;
            if (i == R_REQS)
                break;
        }
        batch_place_t out[R_REQS];
        size_t n = 0;
        assert_int_equal(batch_plan(b, r, R_REQS, &pol, NOW, out, &n), CPN_OK);
        uint32_t used[R_OFFS] = {0};
        s_val_t got = {0, 0, 0};
        for (size_t k = 0; k < n; k++) {
            size_t i = out[k].req;
            int o = out[k].cand.package[1] - '0';
            assert_true(i < R_REQS);
            assert_true(k == 0 || out[k - 1].req < i); /* request order, each once */
            assert_true(rank[i][o] >= 0);              /* a constraint the matcher enforces */
            assert_true(++used[o] <= cap[o]);          /* never more than free */
            assert_int_equal(out[k].cand.units, 1);
            got.acc += r[i].accel_count;
            got.placed++;
            got.cost += rank[i][o];
        }
        assert_int_equal(got.acc, best.acc);
        assert_int_equal(got.placed, best.placed);
        assert_int_equal(got.cost, best.cost);
        /* Count the batches where one at a time does worse: the test must have some. */
        s_val_t one = {0, 0, 0};
        for (int i = 0; i < R_REQS; i++) {
            match_cand_t c;
            size_t k = 0;
            if (match_find(b, &r[i], &pol, NOW, &c, 1, &k, NULL) != CPN_OK)
                continue;
            assert_int_equal(book_take(b, c.peer, c.package, 1), CPN_OK);
            one.acc += r[i].accel_count;
            one.placed++;
            one.cost += (int64_t)c.rank;
        }
        assert_false(s_better(one, best));
        greedy_short += s_better(best, one);
        book_destroy(&b);
    }
    assert_true(greedy_short >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scarce_offer_kept),
        cmocka_unit_test(test_most_accelerators_first),
        cmocka_unit_test(test_multi_unit_moved),
        cmocka_unit_test(test_cheapest),
        cmocka_unit_test(test_alike_in_arrival_order),
        cmocka_unit_test(test_candidates_cover_the_batch),
        cmocka_unit_test(test_huge_request_bounded),
        cmocka_unit_test(test_cpu_only_placed),
        cmocka_unit_test(test_left_out),
        cmocka_unit_test(test_preferences_rank),
        cmocka_unit_test(test_book_untouched_deterministic),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_random_against_brute_force),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
