/* test_usage.c - metering: the pricing rule (common/usage.c), the USAGE codec, and bills
 * checked offline (ctl/ctl_bill.c) on records signed with real keys: a lease cut into any
 * periods sums to the price of its whole duration to the thousandth; an altered, dropped,
 * repeated or foreign record is refused with its code and a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "clock.h"
#include "ctl_bill.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "usage.h"

#define HOUR_MS 3600000ull
#define T0 1796083200000ull /* 2026-12-01T00:00:00Z */

static cpn_identity_t *s_peer, *s_other, *s_tenant, *s_broker;
static uint64_t s_seq = 1;

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || cpn_identity_generate(&s_peer) != CPN_OK ||
        cpn_identity_generate(&s_other) != CPN_OK || cpn_identity_generate(&s_tenant) != CPN_OK ||
        cpn_identity_generate(&s_broker) != CPN_OK)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    cpn_identity_destroy(&s_peer);
    cpn_identity_destroy(&s_other);
    cpn_identity_destroy(&s_tenant);
    cpn_identity_destroy(&s_broker);
    return 0;
}

/* ---- the pricing rule ---- */

static void test_total_vectors(void **state)
{
    (void)state;
    uint64_t t = 0;
    /* 2 units at 210.000 per unit-hour for 90 minutes: 630.000 */
    assert_int_equal(cpn_usage_total(2, 210000, T0, T0 + 90 * 60000, &t), CPN_OK);
    assert_int_equal(t, 630000);
    /* floor: 1 unit at 0.001 per hour is 0 until the full hour */
    assert_int_equal(cpn_usage_total(1, 1, T0, T0 + HOUR_MS - 1, &t), CPN_OK);
    assert_int_equal(t, 0);
    assert_int_equal(cpn_usage_total(1, 1, T0, T0 + HOUR_MS, &t), CPN_OK);
    assert_int_equal(t, 1);
    /* 3 units at 1.000 for 1 s: 3 * 1000 * 1000 / 3600000 = 0.833 -> 0 thousandths */
    assert_int_equal(cpn_usage_total(3, 1000, T0, T0 + 1000, &t), CPN_OK);
    assert_int_equal(t, 0);
    assert_int_equal(cpn_usage_total(3, 1000, T0, T0 + 2000, &t), CPN_OK);
    assert_int_equal(t, 1);
    /* a year of a million units at 10,000 per unit-hour: the intermediate needs 128 bits ... */
    assert_int_equal(cpn_usage_total(1u << 20, 10000000, T0, T0 + 366 * 24 * HOUR_MS, &t), CPN_OK);
    assert_int_equal(t, (1ull << 20) * 10000000ull * 366 * 24);
    /* ... what cannot be a bill is refused, not wrapped */
    assert_int_equal(cpn_usage_total(UINT32_MAX, UINT64_MAX, T0, T0 + HOUR_MS, &t), CPN_E_INVAL);
    assert_int_equal(cpn_usage_total(1, 1, T0, T0 - 1, &t), CPN_E_INVAL);
}

static void s_first(cpn_usage_t *f, const char *lease, uint32_t units, uint64_t price)
{
    memset(f, 0, sizeof *f);
    snprintf(f->lease_id, sizeof f->lease_id, "%s", lease);
    memcpy(f->tenant, cpn_identity_pk(s_tenant), CPN_PK_LEN);
    snprintf(f->package, sizeof f->package, "%s", "h100x8-nvme");
    f->units = units;
    f->price = price;
    f->start_ms = T0;
}

/* A chain of signed records for one lease, cut at `cuts` (ms after start), the last final. */
typedef struct {
    uint8_t *frame[64];
    size_t len[64];
    cpn_usage_t rec[64];
    size_t n;
} recs_t;

static void s_chain(recs_t *c, const cpn_identity_t *id, const cpn_usage_t *first,
                    const uint64_t *cuts, size_t n_cuts, bool final)
{
    uint8_t h[CPN_USAGE_HASH_LEN];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < n_cuts; i++) {
        cpn_usage_t *r = &c->rec[i];
        assert_int_equal(cpn_usage_next(i ? &c->rec[i - 1] : NULL, h, first,
                                        first->start_ms + cuts[i], final && i + 1 == n_cuts, r),
                         CPN_OK);
        assert_int_equal(cpn_msg_build(id, CPN_MSG_USAGE, s_seq++, first->start_ms + cuts[i], r,
                                       &c->frame[i], &c->len[i]),
                         CPN_OK);
        cpn_usage_hash(c->frame[i], c->len[i], h);
        c->n++;
    }
}

static void s_chain_free(recs_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->frame[i]);
}

/* Any cut of a lease sums to the charge of its whole duration: rounding never drifts. */
static void test_cuts_sum_exactly(void **state)
{
    (void)state;
    cpn_usage_t first;
    s_first(&first, "Lcuts", 3, 1000); /* 3.000/h: 0.833... per second */
    uint64_t cuts[60], whole = 0, sum = 0, at = 0;
    srand(14);
    for (size_t i = 0; i < 60; i++) {
        at += 1 + (uint64_t)(rand() % 7777);
        cuts[i] = at;
    }
    recs_t c;
    s_chain(&c, s_peer, &first, cuts, 60, true);
    uint8_t h[CPN_USAGE_HASH_LEN];
    for (size_t i = 0; i < c.n; i++) {
        char why[CPN_REASON_MAX];
        assert_int_equal(cpn_usage_check_link(i ? &c.rec[i - 1] : NULL, h, &c.rec[i], why), CPN_OK);
        cpn_usage_hash(c.frame[i], c.len[i], h);
        sum += c.rec[i].amount;
        assert_int_equal(c.rec[i].unit_ms, 3 * (c.rec[i].to_ms - c.rec[i].from_ms));
    }
    assert_int_equal(cpn_usage_total(3, 1000, T0, T0 + at, &whole), CPN_OK);
    assert_int_equal(sum, whole);
    assert_int_equal(c.rec[59].total, whole);
    /* nothing follows the final record */
    cpn_usage_t after;
    assert_int_equal(cpn_usage_next(&c.rec[59], NULL, &first, T0 + at + 1, false, &after),
                     CPN_E_INVAL);
    s_chain_free(&c);
}

/* The codec: a record round-trips; the decoder is the strict one. */
static void test_codec(void **state)
{
    (void)state;
    cpn_usage_t first, rec, back;
    s_first(&first, "Lcodec", 8, 210000);
    assert_int_equal(cpn_usage_next(NULL, NULL, &first, T0 + 5 * 60000, false, &rec), CPN_OK);
    uint8_t *f = NULL;
    size_t len = 0;
    assert_int_equal(cpn_msg_build(s_peer, CPN_MSG_USAGE, s_seq++, T0, &rec, &f, &len), CPN_OK);
    cpn_env_t env;
    assert_int_equal(cpn_env_open(f, len, NULL, &env), CPN_OK);
    assert_int_equal(env.type, CPN_MSG_USAGE);
    assert_int_equal(cpn_usage_decode(&env, NULL, &back), CPN_OK);
    assert_memory_equal(&rec, &back, sizeof rec);
    assert_int_equal(back.amount, 8ull * 210000 * 5 / 60); /* 140.000 */
    cpn_claim_t claim;
    assert_int_equal(cpn_claim_decode(&env, NULL, &claim), CPN_E_WRONG_TYPE);
    char why[CPN_REASON_MAX];
    assert_int_equal(ctl_bill_verify_record(f, len, NULL, why), CPN_OK);
    f[len - 1] ^= 1; /* the signature */
    assert_int_equal(ctl_bill_verify_record(f, len, NULL, why), CPN_E_SIG);
    free(f);
    /* a correctly signed record that prices wrongly */
    rec.amount++;
    assert_int_equal(cpn_msg_build(s_peer, CPN_MSG_USAGE, s_seq++, T0, &rec, &f, &len), CPN_OK);
    assert_int_equal(ctl_bill_verify_record(f, len, NULL, why), CPN_E_CHAIN);
    assert_non_null(strstr(why, "amount"));
    free(f);
}

/* ---- bills ---- */

static void s_file(uint8_t **buf, size_t *len, recs_t *c, size_t skip)
{
    for (size_t i = 0; i < c->n; i++)
        if (i != skip)
            assert_int_equal(ctl_bill_append(buf, len, c->frame[i], c->len[i]), CPN_OK);
}

/* Load a bill file; the code, and `why` checked to contain want_why (NULL: anything). */
static int s_load(const uint8_t *buf, size_t len, const char *want_why, uint64_t *total)
{
    ctl_bill_t *b = NULL;
    char why[CPN_REASON_MAX];
    int r = ctl_bill_load(buf, len, 0, 0, &b, why);
    if (want_why && !strstr(why, want_why))
        fail_msg("reason \"%s\" lacks \"%s\"", why, want_why);
    if (r == CPN_OK) {
        if (total)
            *total = ctl_bill_total(b);
        FILE *devnull = fopen("/dev/null", "w");
        assert_non_null(devnull);
        ctl_bill_print(b, CTL_BILL_JSON, devnull);
        ctl_bill_print(b, CTL_BILL_CSV, devnull);
        ctl_bill_print(b, CTL_BILL_TEXT, devnull);
        fclose(devnull);
    } else {
        assert_null(b);
    }
    ctl_bill_destroy(&b);
    return r;
}

static void test_bill(void **state)
{
    (void)state;
    cpn_usage_t fa, fb;
    s_first(&fa, "La", 2, 210000);
    s_first(&fb, "Lb", 1, 999);
    const uint64_t ca[] = {300000, 600000, 900000, 1000001}; /* released early at 1000.001 s */
    const uint64_t cb[] = {1234, 5678, 3 * HOUR_MS};
    recs_t a, b;
    s_chain(&a, s_peer, &fa, ca, 4, true);
    s_chain(&b, s_peer, &fb, cb, 3, false);
    uint8_t *buf = NULL;
    size_t len = 0;
    /* interleaved and out of order: the file's order does not matter */
    s_file(&buf, &len, &b, SIZE_MAX);
    s_file(&buf, &len, &a, SIZE_MAX);
    uint64_t total = 0, ta = 0, tb = 0;
    assert_int_equal(s_load(buf, len, "valid", &total), CPN_OK);
    assert_int_equal(cpn_usage_total(2, 210000, T0, T0 + 1000001, &ta), CPN_OK);
    assert_int_equal(cpn_usage_total(1, 999, T0, T0 + 3 * HOUR_MS, &tb), CPN_OK);
    assert_int_equal(total, ta + tb);
    /* a period: only records ending in (from, to] are summed */
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    assert_int_equal(ctl_bill_load(buf, len, T0 + 300000, T0 + 900000, &bill, why), CPN_OK);
    assert_int_equal(ctl_bill_total(bill), a.rec[1].amount + a.rec[2].amount);
    assert_int_equal(ctl_bill_open_leases(bill), 1);
    ctl_bill_destroy(&bill);
    free(buf);

    /* a dropped record: middle, first */
    buf = NULL, len = 0;
    s_file(&buf, &len, &a, 2);
    assert_int_equal(s_load(buf, len, "missing", NULL), CPN_E_CHAIN);
    free(buf);
    buf = NULL, len = 0;
    s_file(&buf, &len, &a, 0);
    assert_int_equal(s_load(buf, len, "record 1", NULL), CPN_E_CHAIN);
    free(buf);
    /* a repeated record */
    buf = NULL, len = 0;
    s_file(&buf, &len, &a, SIZE_MAX);
    assert_int_equal(ctl_bill_append(&buf, &len, a.frame[1], a.len[1]), CPN_OK);
    assert_int_equal(s_load(buf, len, NULL, NULL), CPN_E_CHAIN);
    free(buf);
    /* an altered byte: the signature */
    buf = NULL, len = 0;
    s_file(&buf, &len, &a, SIZE_MAX);
    buf[len - 70] ^= 0x20;
    assert_true(s_load(buf, len, NULL, NULL) != CPN_OK);
    free(buf);
    /* truncated */
    buf = NULL, len = 0;
    s_file(&buf, &len, &a, SIZE_MAX);
    assert_int_equal(s_load(buf, len - 1, "truncated", NULL), CPN_E_MSGPACK);
    assert_int_equal(s_load(buf, 3, "truncated", NULL), CPN_E_MSGPACK);
    free(buf);
    /* a record re-signed with other figures by the peer still breaks the next link */
    recs_t a2;
    s_chain(&a2, s_peer, &fa, ca, 4, true);
    cpn_usage_t altered = a2.rec[1];
    altered.to_ms += 1000;
    altered.unit_ms = altered.units * (altered.to_ms - altered.from_ms);
    assert_int_equal(cpn_usage_total(2, 210000, T0, altered.to_ms, &altered.total), CPN_OK);
    altered.amount = altered.total - a2.rec[0].total;
    free(a2.frame[1]);
    assert_int_equal(
        cpn_msg_build(s_peer, CPN_MSG_USAGE, s_seq++, T0, &altered, &a2.frame[1], &a2.len[1]),
        CPN_OK);
    buf = NULL, len = 0;
    s_file(&buf, &len, &a2, SIZE_MAX);
    assert_int_equal(s_load(buf, len, "prev", NULL), CPN_E_CHAIN);
    free(buf);
    s_chain_free(&a2);
    /* another key's records in one chain */
    recs_t o;
    s_chain(&o, s_other, &fa, ca, 4, true);
    buf = NULL, len = 0;
    assert_int_equal(ctl_bill_append(&buf, &len, a.frame[0], a.len[0]), CPN_OK);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(ctl_bill_append(&buf, &len, o.frame[i], o.len[i]), CPN_OK);
    assert_int_equal(s_load(buf, len, "different keys", NULL), CPN_E_UNTRUSTED);
    free(buf);
    s_chain_free(&o);
    s_chain_free(&a);
    s_chain_free(&b);
}

/* With the lease in the file, its records must be its peer's, on its terms. */
static void s_lease(const cpn_identity_t *peer, const char *req_id, uint8_t **lf, size_t *ll,
                    cpn_usage_t *first)
{
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", req_id);
    req.units = 2;
    req.duration_s = 3600;
    req.cores = 8;
    uint8_t *rf = NULL, *cf = NULL;
    size_t rl = 0, cl = 0;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(s_tenant, CPN_MSG_REQUEST, s_seq++, now, &req, &rf, &rl),
                     CPN_OK);
    cpn_claim_t claim;
    memset(&claim, 0, sizeof claim);
    claim.request = (mp_bytes_t){rf, rl};
    memcpy(claim.peer, cpn_identity_pk(peer), CPN_PK_LEN);
    snprintf(claim.package, sizeof claim.package, "%s", "h100x8-nvme");
    claim.units = 2;
    claim.price = 210000;
    claim.duration_s = 3600;
    claim.deadline = now + 10000;
    assert_int_equal(cpn_msg_build(s_broker, CPN_MSG_CLAIM, s_seq++, now, &claim, &cf, &cl),
                     CPN_OK);
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim = (mp_bytes_t){cf, cl};
    cpn_chain_lease_id(claim.peer, cpn_identity_pk(s_tenant), req.id, l.lease_id);
    snprintf(l.package, sizeof l.package, "%s", claim.package);
    l.units = 2;
    l.price = 210000;
    l.start_ms = now;
    l.end_ms = now + 3600 * 1000;
    snprintf(l.state, sizeof l.state, "%s", "active");
    assert_int_equal(cpn_msg_build(peer, CPN_MSG_LEASE, s_seq++, now, &l, lf, ll), CPN_OK);
    s_first(first, l.lease_id, 2, 210000);
    first->start_ms = now;
    free(rf);
    free(cf);
}

static void test_bill_with_lease(void **state)
{
    (void)state;
    uint8_t *lf = NULL, *buf = NULL;
    size_t ll = 0, len = 0;
    cpn_usage_t first;
    s_lease(s_peer, "job-bill", &lf, &ll, &first);
    const uint64_t cuts[] = {60000, 120000};
    recs_t c;
    s_chain(&c, s_peer, &first, cuts, 2, true);
    assert_int_equal(ctl_bill_append(&buf, &len, lf, ll), CPN_OK);
    s_file(&buf, &len, &c, SIZE_MAX);
    uint64_t total = 0;
    assert_int_equal(s_load(buf, len, "valid", &total), CPN_OK);
    assert_int_equal(total, 2ull * 210000 * 2 / 60);
    free(buf);
    s_chain_free(&c);
    /* signed by a key that did not grant the lease */
    s_chain(&c, s_other, &first, cuts, 2, true);
    buf = NULL, len = 0;
    assert_int_equal(ctl_bill_append(&buf, &len, lf, ll), CPN_OK);
    s_file(&buf, &len, &c, SIZE_MAX);
    assert_int_equal(s_load(buf, len, "peer that granted", NULL), CPN_E_UNTRUSTED);
    free(buf);
    s_chain_free(&c);
    /* on other terms (a higher price) */
    first.price++;
    s_chain(&c, s_peer, &first, cuts, 2, true);
    buf = NULL, len = 0;
    assert_int_equal(ctl_bill_append(&buf, &len, lf, ll), CPN_OK);
    s_file(&buf, &len, &c, SIZE_MAX);
    assert_int_equal(s_load(buf, len, "differ from the lease", NULL), CPN_E_CHAIN);
    free(buf);
    s_chain_free(&c);
    /* a frame that is not a record or a lease */
    buf = NULL, len = 0;
    cpn_hello_t hello;
    memset(&hello, 0, sizeof hello);
    snprintf(hello.role, sizeof hello.role, "%s", "peer");
    snprintf(hello.name, sizeof hello.name, "%s", "p");
    uint8_t *hf = NULL;
    size_t hl = 0;
    assert_int_equal(cpn_msg_build(s_peer, CPN_MSG_HELLO, s_seq++, T0, &hello, &hf, &hl), CPN_OK);
    assert_int_equal(ctl_bill_append(&buf, &len, hf, hl), CPN_OK);
    assert_int_equal(s_load(buf, len, "neither", NULL), CPN_E_WRONG_TYPE);
    free(hf);
    free(buf);
    free(lf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_vectors),   cmocka_unit_test(test_cuts_sum_exactly),
        cmocka_unit_test(test_codec),           cmocka_unit_test(test_bill),
        cmocka_unit_test(test_bill_with_lease),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
