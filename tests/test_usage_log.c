/* test_usage_log.c - a broker taking USAGE records into its ledger (broker/usage_log.c) on a
 * real SQLite ledger: in order, re-sent (taken again, unchanged), with one missing, altered,
 * by another key, on other terms; after a restart; and the records it holds make a bill
 * that verifies offline (ctl_bill) and sums to what the log sums.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_bill.h"
#include "harness.h"
#include "identity.h"
#include "ledger.h"
#include "msg.h"
#include "usage.h"
#include "usage_log.h"

#define T0 1796083200000ull
#define MIN_MS 60000ull

typedef struct {
    char dir[256], path[320];
    cpn_identity_t *peer, *other, *tenant;
    uint64_t seq;
} fx_t;

static int s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx || cpn_crypto_init() != CPN_OK)
        return -1;
    *state = fx;
    fx->seq = 1;
    if (h_db_dir(fx->dir, sizeof fx->dir, fx->path, sizeof fx->path, "usagelog", "ledger.db") !=
            0 ||
        cpn_identity_generate(&fx->peer) || cpn_identity_generate(&fx->other) ||
        cpn_identity_generate(&fx->tenant))
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    h_dir_done(fx->dir, true); /* the database, and the bill and CSV exported beside it */
    cpn_identity_destroy(&fx->peer);
    cpn_identity_destroy(&fx->other);
    cpn_identity_destroy(&fx->tenant);
    free(fx);
    return 0;
}

/* Record n (1-based) of a chain of 5-minute periods, signed by id; frames kept in f[]. */
typedef struct {
    cpn_usage_t rec[16];
    uint8_t *f[16];
    size_t len[16];
    size_t n;
} chain_t;

static void s_chain(fx_t *fx, const cpn_identity_t *id, const cpn_usage_t *first, size_t n,
                    chain_t *c)
{
    uint8_t h[CPN_USAGE_HASH_LEN];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cpn_usage_next(i ? &c->rec[i - 1] : NULL, h, first,
                                        first->start_ms + (i + 1) * 5 * MIN_MS, i + 1 == n,
                                        &c->rec[i]),
                         CPN_OK);
        assert_int_equal(
            cpn_msg_build(id, CPN_MSG_USAGE, fx->seq++, T0, &c->rec[i], &c->f[i], &c->len[i]),
            CPN_OK);
        cpn_usage_hash(c->f[i], c->len[i], h);
        c->n++;
    }
}

static void s_chain_free(chain_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->f[i]);
}

static int s_take(usage_log_t *ul, const uint8_t *f, size_t len, bool *dup, const char *want)
{
    cpn_env_t env;
    char why[CPN_REASON_MAX];
    assert_int_equal(cpn_env_open(f, len, NULL, &env), CPN_OK);
    int r = usage_log_take(ul, &env, dup, why);
    if (want && !strstr(why, want))
        fail_msg("reason \"%s\" lacks \"%s\"", why, want);
    return r;
}

static int s_append(const uint8_t *frame, size_t len, void *arg)
{
    void **b = arg;
    return ctl_bill_append((uint8_t **)&b[0], (size_t *)b[1], frame, len);
}

static void test_take(void **state)
{
    fx_t *fx = *state;
    ledger_t *lg = NULL;
    usage_log_t *ul = NULL;
    assert_int_equal(ledger_open(fx->path, &lg), CPN_OK);
    assert_int_equal(usage_log_open(lg, &ul), CPN_OK);
    ledger_lease_t l;
    memset(&l, 0, sizeof l);
    snprintf(l.lease_id, sizeof l.lease_id, "%s", "Lmeter1");
    memcpy(l.tenant, cpn_identity_pk(fx->tenant), CPN_PK_LEN);
    memcpy(l.peer, cpn_identity_pk(fx->peer), CPN_PK_LEN);
    snprintf(l.package, sizeof l.package, "%s", "h100x8-nvme");
    l.units = 3;
    l.accelerators = 24;
    l.price = 210007;
    l.start_ms = T0;
    l.end_ms = T0 + 30 * MIN_MS;
    snprintf(l.request_id, sizeof l.request_id, "%s", "job-1");
    assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);

    cpn_usage_t first;
    memset(&first, 0, sizeof first);
    snprintf(first.lease_id, sizeof first.lease_id, "%s", l.lease_id);
    memcpy(first.tenant, l.tenant, CPN_PK_LEN);
    snprintf(first.package, sizeof first.package, "%s", l.package);
    first.units = l.units;
    first.price = l.price;
    first.start_ms = l.start_ms;
    chain_t c, o, bad;
    s_chain(fx, fx->peer, &first, 6, &c);
    bool dup = true;
    assert_int_equal(s_take(ul, c.f[0], c.len[0], &dup, "taken"), CPN_OK);
    assert_false(dup);
    assert_int_equal(s_take(ul, c.f[1], c.len[1], &dup, NULL), CPN_OK);
    /* re-sent: taken again, nothing changes */
    assert_int_equal(s_take(ul, c.f[1], c.len[1], &dup, NULL), CPN_OK);
    assert_true(dup);
    /* one missing before it */
    assert_int_equal(s_take(ul, c.f[3], c.len[3], &dup, "missing"), CPN_E_CHAIN);
    /* another key */
    s_chain(fx, fx->other, &first, 6, &o);
    assert_int_equal(s_take(ul, o.f[2], o.len[2], &dup, "no lease"), CPN_E_NO_LEASE);
    /* the same n with other bytes (a second version of record 2, re-signed) */
    cpn_usage_t alt = first;
    alt.price++;
    s_chain(fx, fx->peer, &alt, 3, &bad);
    assert_int_equal(s_take(ul, bad.f[0], bad.len[0], &dup, "differ from the lease"), CPN_E_CHAIN);
    chain_t again;
    s_chain(fx, fx->peer, &first, 2, &again); /* same figures, new seq: other bytes */
    assert_int_equal(s_take(ul, again.f[1], again.len[1], &dup, "differs"), CPN_E_CHAIN);

    /* a restart in the middle */
    usage_log_destroy(&ul);
    ledger_destroy(&lg);
    assert_int_equal(ledger_open(fx->path, &lg), CPN_OK);
    assert_int_equal(usage_log_open(lg, &ul), CPN_OK);
    for (size_t i = 2; i < 6; i++)
        assert_int_equal(s_take(ul, c.f[i], c.len[i], &dup, NULL), CPN_OK);

    uint64_t sum = 0, want = 0;
    assert_int_equal(usage_log_sum(ul, l.tenant, 0, 0, &sum), CPN_OK);
    assert_int_equal(cpn_usage_total(3, 210007, T0, T0 + 30 * MIN_MS, &want), CPN_OK);
    assert_int_equal(sum, want);
    uint8_t *buf = NULL;
    size_t len = 0;
    void *b[2] = {NULL, &len};
    assert_int_equal(usage_log_each(ul, l.tenant, 0, 0, s_append, b), CPN_OK);
    buf = b[0];
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    assert_int_equal(ctl_bill_load(buf, len, 0, 0, &bill, why), CPN_OK);
    assert_int_equal(ctl_bill_total(bill), want);
    assert_int_equal(ctl_bill_records(bill), 6);
    ctl_bill_destroy(&bill);
    free(buf);
    /* the operator's export through the real cpnctl: CSV of the checked records, and a bill
     * file that `cpnctl verify-bill` accepts; the bill altered by one byte is refused */
    const char *bin = getenv("CPN_BUILDDIR");
    char cmd[1500], billf[400], csv[400];
    h_path(billf, sizeof billf, fx->dir, "bill");
    h_path(csv, sizeof csv, fx->dir, "ledger.csv");
    snprintf(cmd, sizeof cmd, "'%s/cpnctl' ledger export '%s' --out '%s' > /dev/null 2>&1",
             bin && *bin ? bin : ".", fx->path, billf);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s/cpnctl' ledger export '%s' > '%s' 2>/dev/null",
             bin && *bin ? bin : ".", fx->path, csv);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    char line[512], last[512] = "";
    int lines = 0;
    while (lines < 100 && fgets(line, sizeof line, f)) {
        lines++;
        snprintf(last, sizeof last, "%s", line);
    }
    fclose(f);
    assert_int_equal(lines, 2); /* the header and the one lease */
    char want_amount[64];
    snprintf(want_amount, sizeof want_amount, ",%" PRIu64 ",", want);
    assert_non_null(strstr(last, want_amount));
    snprintf(cmd, sizeof cmd, "'%s/cpnctl' verify-bill '%s' 2>/dev/null", bin && *bin ? bin : ".",
             billf);
    assert_int_equal(system(cmd), 0);
    f = fopen(billf, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    int ch = fgetc(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    fputc(ch ^ 0x01, f);
    fclose(f);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    unlink(billf);
    unlink(csv);

    /* another tenant has nothing */
    assert_int_equal(usage_log_sum(ul, cpn_identity_pk(fx->other), 0, 0, &sum), CPN_OK);
    assert_int_equal(sum, 0);

    s_chain_free(&c);
    s_chain_free(&o);
    s_chain_free(&bad);
    s_chain_free(&again);
    usage_log_destroy(&ul);
    ledger_destroy(&lg);
}

/* ---- a broker that only carried the lease: terms from record 1's LEASE, the relay ---- */

typedef struct {
    size_t n;
    uint32_t ns[16];
    bool lease[16];
    uint8_t via[CPN_PK_LEN];
} s_seen_t;

static void s_relay_fn(const usage_relay_t *rel, void *arg)
{
    s_seen_t *s = arg;
    if (s->n < 16) {
        s->lease[s->n] = rel->lease != NULL && rel->lease_len == 3;
        s->ns[s->n++] = rel->n;
        memcpy(s->via, rel->via, CPN_PK_LEN);
    }
}

static int s_page_fn(const usage_cursor_t *c, const uint8_t *frame, size_t len, void *arg)
{
    usage_cursor_t *last = arg;
    (void)frame;
    (void)len;
    *last = *c;
    return 0;
}

static void test_relay(void **state)
{
    fx_t *fx = *state;
    ledger_t *lg = NULL;
    usage_log_t *ul = NULL;
    assert_int_equal(ledger_open(fx->path, &lg), CPN_OK);
    assert_int_equal(usage_log_open(lg, &ul), CPN_OK);
    cpn_usage_t first;
    memset(&first, 0, sizeof first);
    snprintf(first.lease_id, sizeof first.lease_id, "%s", "Lcarried");
    memcpy(first.tenant, cpn_identity_pk(fx->tenant), CPN_PK_LEN);
    snprintf(first.package, sizeof first.package, "%s", "cpu");
    first.units = 2;
    first.price = 1000;
    first.start_ms = T0;
    chain_t c;
    s_chain(fx, fx->peer, &first, 4, &c);
    usage_terms_t t;
    memset(&t, 0, sizeof t);
    memcpy(t.tenant, first.tenant, CPN_PK_LEN);
    snprintf(t.package, sizeof t.package, "%s", first.package);
    t.units = 2;
    t.price = 1000;
    t.start_ms = T0;
    t.has_via = true;
    memcpy(t.via, cpn_identity_pk(fx->other), CPN_PK_LEN); /* the member before us */
    static const uint8_t lease[3] = {1, 2, 3};
    t.lease = lease;
    t.lease_len = sizeof lease;
    cpn_env_t env;
    bool dup = false;
    char why[CPN_REASON_MAX];
    /* Neither recorded nor carried: no-lease. */
    assert_int_equal(cpn_env_open(c.f[0], c.len[0], NULL, &env), CPN_OK);
    assert_int_equal(usage_log_take_terms(ul, &env, NULL, &dup, why), CPN_E_NO_LEASE);
    /* Other terms than the LEASE's: refused. */
    t.price = 999;
    assert_int_equal(usage_log_take_terms(ul, &env, &t, &dup, why), CPN_E_CHAIN);
    t.price = 1000;
    assert_int_equal(usage_log_take_terms(ul, &env, &t, &dup, why), CPN_OK);
    /* The rest follow the chain without terms, and go where record 1 went. */
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(cpn_env_open(c.f[i], c.len[i], NULL, &env), CPN_OK);
        assert_int_equal(usage_log_take_terms(ul, &env, NULL, &dup, why), CPN_OK);
    }
    s_seen_t seen;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(usage_log_relay_due(ul, T0, 2000, 16, s_relay_fn, &seen), CPN_OK);
    assert_int_equal(seen.n, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(seen.ns[i], i + 1);
    assert_true(seen.lease[0]);
    assert_false(seen.lease[1]);
    assert_memory_equal(seen.via, cpn_identity_pk(fx->other), CPN_PK_LEN);
    /* Not again before the retry time. */
    memset(&seen, 0, sizeof seen);
    assert_int_equal(usage_log_relay_due(ul, T0 + 1999, 2000, 16, s_relay_fn, &seen), CPN_OK);
    assert_int_equal(seen.n, 0);
    /* A receipt from another member, or naming another hash, changes nothing. */
    uint8_t h3[CPN_USAGE_HASH_LEN];
    bool found = true;
    cpn_usage_hash(c.f[2], c.len[2], h3);
    assert_int_equal(usage_log_relayed(ul, cpn_identity_pk(fx->peer), "Lcarried", 3, h3,
                                       cpn_identity_pk(fx->tenant), &found),
                     CPN_OK);
    assert_false(found);
    uint8_t h2[CPN_USAGE_HASH_LEN];
    cpn_usage_hash(c.f[1], c.len[1], h2);
    assert_int_equal(usage_log_relayed(ul, cpn_identity_pk(fx->peer), "Lcarried", 3, h2,
                                       cpn_identity_pk(fx->other), &found),
                     CPN_OK);
    assert_false(found);
    /* Record 3 taken by that member: 1..3 done, 4 still goes. */
    assert_int_equal(usage_log_relayed(ul, cpn_identity_pk(fx->peer), "Lcarried", 3, h3,
                                       cpn_identity_pk(fx->other), &found),
                     CPN_OK);
    assert_true(found);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(usage_log_relay_due(ul, T0 + 2000, 2000, 16, s_relay_fn, &seen), CPN_OK);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.ns[0], 4);
    /* Pages in (peer, lease id, n) order: Lcarried's 4 records come before test_take's
     * Lmeter1 of the same peer and tenant. */
    usage_cursor_t last;
    memset(&last, 0, sizeof last);
    assert_int_equal(usage_log_page(ul, first.tenant, NULL, 3, s_page_fn, &last), CPN_OK);
    assert_int_equal(last.n, 3);
    usage_cursor_t after = last;
    assert_int_equal(usage_log_page(ul, first.tenant, &after, 2, s_page_fn, &last), CPN_OK);
    assert_string_equal(last.lease_id, "Lmeter1");
    assert_int_equal(last.n, 1);
    s_chain_free(&c);
    usage_log_destroy(&ul);
    ledger_destroy(&lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_take), cmocka_unit_test(test_relay)};
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
