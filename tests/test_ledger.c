/* test_ledger.c - the broker's ledger: quota math over grant, renew, release and expiry,
 * persistence across reopen, idempotent grants, transactions, usage kept between asks, the
 * bounded audit log; intents (add, list, resolve, expire, rollback, reopen) and opening a
 * ledger file of schema version 1 (before intents). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"
#include "ledger.h"

#define S_HOUR_MS 3600000ull
#define S_T0 1700000000000ull

typedef struct {
    char dir[256];
    char path[300];
} s_fixture_t;

static int s_setup(void **state)
{
    s_fixture_t *f = calloc(1, sizeof *f);
    if (!f ||
        h_db_dir(f->dir, sizeof f->dir, f->path, sizeof f->path, "ledger", "ledger.db") != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fixture_t *f = *state;
    h_dir_done(f->dir, true);
    free(f);
    return 0;
}

static void s_pk(uint8_t pk[CPN_PK_LEN], uint8_t v)
{
    memset(pk, v, CPN_PK_LEN);
}

/* A lease of `units` units of an 8-accelerator package at `price` per unit-hour. */
static ledger_lease_t s_lease(const char *id, uint8_t tenant, uint8_t peer, uint32_t units,
                              uint64_t price, uint64_t start, uint64_t end, const char *req)
{
    ledger_lease_t l;
    memset(&l, 0, sizeof l);
    snprintf(l.lease_id, sizeof l.lease_id, "%s", id);
    s_pk(l.tenant, tenant);
    s_pk(l.peer, peer);
    snprintf(l.package, sizeof l.package, "h100x8-nvme");
    l.units = units;
    l.accelerators = 8ull * units;
    l.price = price;
    l.start_ms = start;
    l.end_ms = end;
    snprintf(l.request_id, sizeof l.request_id, "%s", req);
    return l;
}

static void s_usage_is(ledger_t *lg, uint8_t tenant, uint64_t now, uint64_t accels,
                       uint64_t units, uint64_t spend)
{
    uint8_t pk[CPN_PK_LEN];
    ledger_usage_t u;
    s_pk(pk, tenant);
    assert_int_equal(ledger_quota_usage(lg, pk, now, &u), CPN_OK);
    assert_int_equal(u.accelerators, accels);
    assert_int_equal(u.units, units);
    assert_int_equal(u.spend_rate, spend);
}

static void test_quota_math(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t peer[CPN_PK_LEN];
    uint64_t n;
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    s_pk(peer, 0xB1);

    ledger_lease_t a1 = s_lease("L1", 0xA1, 0xB1, 2, 210000, S_T0, S_T0 + S_HOUR_MS, "r1");
    ledger_lease_t a2 = s_lease("L2", 0xA1, 0xB1, 1, 95500, S_T0, S_T0 + 2 * S_HOUR_MS, "r2");
    ledger_lease_t b1 = s_lease("L3", 0xA2, 0xB1, 3, 1000, S_T0, S_T0 + S_HOUR_MS, "r1");
    assert_int_equal(ledger_record_grant(lg, &a1, NULL, 0), CPN_OK);
    assert_int_equal(ledger_record_grant(lg, &a2, NULL, 0), CPN_OK);
    assert_int_equal(ledger_record_grant(lg, &b1, NULL, 0), CPN_OK);

    /* Tenant A: 16 + 8 accelerators, 3 units, 2 * 210.000 + 95.500 per hour. */
    s_usage_is(lg, 0xA1, S_T0 + 1, 24, 3, 2 * 210000 + 95500);
    s_usage_is(lg, 0xA2, S_T0 + 1, 24, 3, 3000);
    s_usage_is(lg, 0xA3, S_T0 + 1, 0, 0, 0);

    /* Release L2: A keeps only L1. Releasing it again is refused. */
    assert_int_equal(ledger_release(lg, peer, "L2", S_T0 + 1000), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + 1001, 16, 2, 420000);
    assert_int_equal(ledger_release(lg, peer, "L2", S_T0 + 2000), CPN_E_EXPIRED);
    assert_int_equal(ledger_release(lg, peer, "nope", S_T0 + 2000), CPN_E_NO_LEASE);
    ledger_lease_t got;
    assert_int_equal(ledger_get(lg, peer, "L2", &got, NULL, NULL), CPN_OK);
    assert_string_equal(got.state, "released");
    assert_int_equal(got.end_ms, S_T0 + 1000);

    /* At L1's end it stops counting, before and after ledger_expire marks it. */
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS - 1, 16, 2, 420000);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS, 0, 0, 0);
    assert_int_equal(ledger_expire(lg, S_T0 + S_HOUR_MS, &n), CPN_OK);
    assert_int_equal(n, 2); /* L1 and L3; L2 was released */
    assert_int_equal(ledger_get(lg, peer, "L1", &got, NULL, NULL), CPN_OK);
    assert_string_equal(got.state, "expired");

    /* A renewal the peer granted makes it count again; a released lease cannot renew. */
    assert_int_equal(ledger_renew(lg, peer, "L1", S_T0 + 3 * S_HOUR_MS, 1), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS + 5, 16, 2, 420000);
    assert_int_equal(ledger_get(lg, peer, "L1", &got, NULL, NULL), CPN_OK);
    assert_string_equal(got.state, "active");
    assert_int_equal(got.renewals, 1);
    assert_int_equal(ledger_renew(lg, peer, "L2", S_T0 + 3 * S_HOUR_MS, 1), CPN_E_EXPIRED);
    assert_int_equal(ledger_renew(lg, peer, "L9", S_T0 + 3 * S_HOUR_MS, 1), CPN_E_NO_LEASE);

    ledger_counts_t c;
    assert_int_equal(ledger_counts(lg, S_T0 + S_HOUR_MS + 5, &c), CPN_OK);
    assert_int_equal(c.leases, 3);
    assert_int_equal(c.active, 1);
    assert_int_equal(c.active_units, 2);
    assert_int_equal(c.active_accelerators, 16);
    assert_int_equal(c.tenants_active, 1);
    ledger_destroy(&lg);
    assert_null(lg);
}

static void test_survives_reopen(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t tenant[CPN_PK_LEN], peer[CPN_PK_LEN], *grant = NULL;
    size_t grant_len = 0;
    const uint8_t frame[] = {0x92, 0xc4, 0x01, 0x80, 0xc4, 0x00};
    s_pk(tenant, 0xA1);
    s_pk(peer, 0xB2);

    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    ledger_lease_t l = s_lease("LX", 0xA1, 0xB2, 4, 50000, S_T0, S_T0 + S_HOUR_MS, "req-7");
    assert_int_equal(ledger_record_grant(lg, &l, frame, sizeof frame), CPN_OK);
    assert_int_equal(ledger_audit(lg, S_T0, "REQUEST", tenant, CPN_OK, frame, sizeof frame),
                     CPN_OK);
    ledger_destroy(&lg);

    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + 10, 32, 4, 200000);
    ledger_lease_t got;
    assert_int_equal(ledger_find_request(lg, tenant, "req-7", &got, &grant, &grant_len),
                     CPN_OK);
    assert_string_equal(got.lease_id, "LX");
    assert_memory_equal(got.peer, peer, CPN_PK_LEN);
    assert_string_equal(got.package, "h100x8-nvme");
    assert_int_equal(got.start_ms, S_T0);
    assert_int_equal(grant_len, sizeof frame);
    assert_memory_equal(grant, frame, sizeof frame);
    free(grant);
    assert_int_equal(ledger_find_request(lg, tenant, "req-8", &got, NULL, NULL),
                     CPN_E_NO_LEASE);
    ledger_counts_t c;
    assert_int_equal(ledger_counts(lg, S_T0 + 10, &c), CPN_OK);
    assert_int_equal(c.audit_rows, 1);
    ledger_destroy(&lg);
}

static void test_idempotent_grant_and_limits(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    ledger_lease_t l = s_lease("L1", 0xA1, 0xB1, 1, 1000, S_T0, S_T0 + S_HOUR_MS, "r1");
    assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0, 8, 1, 1000);
    /* The same lease id from another peer is another lease. */
    ledger_lease_t other = s_lease("L1", 0xA1, 0xB9, 1, 1000, S_T0, S_T0 + S_HOUR_MS, "r2");
    assert_int_equal(ledger_record_grant(lg, &other, NULL, 0), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0, 16, 2, 2000);
    /* Values SQLite cannot hold, and empty or unterminated ids, are refused. */
    ledger_lease_t bad = s_lease("L2", 0xA1, 0xB1, 1, UINT64_MAX, S_T0, S_T0 + 1, "r3");
    assert_int_equal(ledger_record_grant(lg, &bad, NULL, 0), CPN_E_INVAL);
    bad = s_lease("", 0xA1, 0xB1, 1, 1, S_T0, S_T0 + 1, "r3");
    assert_int_equal(ledger_record_grant(lg, &bad, NULL, 0), CPN_E_INVAL);
    bad = s_lease("L3", 0xA1, 0xB1, 1, 1, S_T0, S_T0 + 1, "r3");
    memset(bad.package, 'x', sizeof bad.package);
    assert_int_equal(ledger_record_grant(lg, &bad, NULL, 0), CPN_E_INVAL);
    s_usage_is(lg, 0xA1, S_T0, 16, 2, 2000);
    ledger_destroy(&lg);
    /* A file that is not a database. */
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("this is not sqlite, just text long enough to look like a header.......\n", fp);
    fclose(fp);
    assert_int_equal(ledger_open(f->path, &lg), CPN_E_DB);
    assert_null(lg);
}

static void test_transactions(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    char id[16];
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    assert_int_equal(ledger_commit(lg), CPN_E_INVAL);
    assert_int_equal(ledger_begin(lg), CPN_OK);
    assert_int_equal(ledger_begin(lg), CPN_E_INVAL);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "T%d", i);
        ledger_lease_t l = s_lease(id, 0xA1, 0xB1, 1, 10, S_T0, S_T0 + S_HOUR_MS, id);
        assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    }
    assert_int_equal(ledger_rollback(lg), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0, 0, 0, 0);

    assert_int_equal(ledger_begin(lg), CPN_OK);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "T%d", i);
        ledger_lease_t l = s_lease(id, 0xA1, 0xB1, 1, 10, S_T0 + (uint64_t)i,
                                   S_T0 + S_HOUR_MS, id);
        assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    }
    assert_int_equal(ledger_commit(lg), CPN_OK);
    /* An open transaction at close is rolled back, not committed. */
    assert_int_equal(ledger_begin(lg), CPN_OK);
    ledger_lease_t l = s_lease("T9", 0xA1, 0xB1, 1, 10, S_T0, S_T0 + S_HOUR_MS, "T9");
    assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    ledger_destroy(&lg);
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0, 40, 5, 50);
    ledger_destroy(&lg);
}

/* The usage kept between asks agrees with a fresh ledger on the same file (which asks
 * SQLite) through grants, a duplicate, a rollback, an early end and a release. */
static void s_usage_agrees(ledger_t *lg, const char *path, uint8_t tenant, uint64_t now)
{
    ledger_t *fresh = NULL;
    uint8_t pk[CPN_PK_LEN];
    ledger_usage_t a, b;
    s_pk(pk, tenant);
    assert_int_equal(ledger_quota_usage(lg, pk, now, &a), CPN_OK);
    assert_int_equal(ledger_open(path, &fresh), CPN_OK);
    assert_int_equal(ledger_quota_usage(fresh, pk, now, &b), CPN_OK);
    ledger_destroy(&fresh);
    assert_int_equal(a.units, b.units);
    assert_int_equal(a.accelerators, b.accelerators);
    assert_int_equal(a.spend_rate, b.spend_rate);
}

static void test_usage_kept(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t peer[CPN_PK_LEN];
    s_pk(peer, 0xB1);
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0, 0, 0, 0); /* an entry for A1 now exists */
    ledger_lease_t l1 = s_lease("K1", 0xA1, 0xB1, 2, 1000, S_T0, S_T0 + 3 * S_HOUR_MS, "k1");
    ledger_lease_t l2 = s_lease("K2", 0xA1, 0xB1, 1, 500, S_T0, S_T0 + S_HOUR_MS, "k2");
    assert_int_equal(ledger_record_grant(lg, &l1, NULL, 0), CPN_OK);
    assert_int_equal(ledger_record_grant(lg, &l1, NULL, 0), CPN_OK); /* counted once */
    assert_int_equal(ledger_record_grant(lg, &l2, NULL, 0), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + 1, 24, 3, 2500);
    s_usage_agrees(lg, f->path, 0xA1, S_T0 + 1);
    /* K2 ends first: from its end on, only K1 counts. */
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS, 16, 2, 2000);
    s_usage_agrees(lg, f->path, 0xA1, S_T0 + S_HOUR_MS);
    /* A lease that had ended before the entry was made never counts. */
    ledger_lease_t old = s_lease("K0", 0xA1, 0xB1, 5, 1, S_T0 - 10, S_T0, "k0");
    assert_int_equal(ledger_record_grant(lg, &old, NULL, 0), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS + 1, 16, 2, 2000);
    /* Grants rolled back leave no trace. */
    assert_int_equal(ledger_begin(lg), CPN_OK);
    ledger_lease_t l3 = s_lease("K3", 0xA1, 0xB1, 4, 10, S_T0, S_T0 + 5 * S_HOUR_MS, "k3");
    assert_int_equal(ledger_record_grant(lg, &l3, NULL, 0), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS + 2, 48, 6, 2040);
    assert_int_equal(ledger_rollback(lg), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS + 3, 16, 2, 2000);
    s_usage_agrees(lg, f->path, 0xA1, S_T0 + S_HOUR_MS + 3);
    /* A release takes K1 out at once. */
    assert_int_equal(ledger_release(lg, peer, "K1", S_T0 + S_HOUR_MS + 4), CPN_OK);
    s_usage_is(lg, 0xA1, S_T0 + S_HOUR_MS + 5, 0, 0, 0);
    s_usage_agrees(lg, f->path, 0xA1, S_T0 + S_HOUR_MS + 5);
    ledger_destroy(&lg);
}

typedef struct {
    int n;
    char first[CPN_NAME_MAX];
} s_walk_t;

static int s_walk(const ledger_lease_t *l, void *arg)
{
    s_walk_t *w = arg;
    if (w->n++ == 0)
        snprintf(w->first, sizeof w->first, "%s", l->lease_id);
    return 0;
}

static int s_stop_after_one(const ledger_lease_t *l, void *arg)
{
    (void)l;
    (*(int *)arg)++;
    return 1;
}

static void test_list(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t tenant[CPN_PK_LEN];
    uint8_t peer[CPN_PK_LEN];
    s_pk(tenant, 0xA1);
    s_pk(peer, 0xB1);
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "K%d", i);
        ledger_lease_t l = s_lease(id, i < 4 ? 0xA1 : 0xA2, 0xB1, 1, 10, S_T0 + (uint64_t)i,
                                   S_T0 + S_HOUR_MS, id);
        assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    }
    assert_int_equal(ledger_release(lg, peer, "K3", S_T0 + 100), CPN_OK);
    s_walk_t w = {0};
    assert_int_equal(ledger_list(lg, tenant, false, S_T0 + 200, 0, s_walk, &w), CPN_OK);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.first, "K3"); /* newest start first */
    memset(&w, 0, sizeof w);
    assert_int_equal(ledger_list(lg, tenant, true, S_T0 + 200, 0, s_walk, &w), CPN_OK);
    assert_int_equal(w.n, 3);
    assert_string_equal(w.first, "K2");
    memset(&w, 0, sizeof w);
    assert_int_equal(ledger_list(lg, NULL, false, S_T0 + 200, 5, s_walk, &w), CPN_OK);
    assert_int_equal(w.n, 5);
    int stops = 0;
    assert_int_equal(ledger_list(lg, NULL, false, 0, 0, s_stop_after_one, &stops), CPN_OK);
    assert_int_equal(stops, 1);
    ledger_destroy(&lg);
}

/* Pages of a tenant's leases by keyset (query.c's `leases` cursor): every lease of the tenant
 * exactly once, in (start_ms descending, peer, lease_id) order, also when several share a
 * start_ms and a peer, and when leases come and go between two pages. */
typedef struct {
    ledger_lease_t rows[64];
    size_t n;
} s_page_walk_t;

static int s_page_row(const ledger_lease_t *l, void *arg)
{
    s_page_walk_t *w = arg;
    if (w->n < 64)
        w->rows[w->n++] = *l;
    return 0;
}

static int s_order(const ledger_lease_t *a, const ledger_lease_t *b)
{
    if (a->start_ms != b->start_ms)
        return a->start_ms > b->start_ms ? -1 : 1;
    int c = memcmp(a->peer, b->peer, CPN_PK_LEN);
    return c ? c : strcmp(a->lease_id, b->lease_id);
}

static void test_list_pages(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t tenant[CPN_PK_LEN];
    s_pk(tenant, 0xA1);
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    /* 20 leases of A1: 5 start times x 2 peers x 2 ids; 3 of A2 in between. */
    for (int i = 0; i < 23; i++) {
        char id[16];
        snprintf(id, sizeof id, "P%02d", i);
        ledger_lease_t l = s_lease(id, i < 20 ? 0xA1 : 0xA2, (uint8_t)(0xB1 + (i / 2) % 2), 1,
                                   10, S_T0 + (uint64_t)(i % 5), S_T0 + S_HOUR_MS, id);
        assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    }
    ledger_lease_t all[64];
    size_t n = 0, pages = 0;
    ledger_cursor_t cur;
    bool have = false;
    for (; pages < 20; pages++) {
        s_page_walk_t w;
        memset(&w, 0, sizeof w);
        assert_int_equal(ledger_list_page(lg, tenant, false, S_T0, have ? &cur : NULL, 3,
                                          s_page_row, &w),
                         CPN_OK);
        assert_true(w.n <= 3);
        if (w.n == 0)
            break;
        for (size_t i = 0; i < w.n; i++)
            all[n++] = w.rows[i];
        cur.start_ms = w.rows[w.n - 1].start_ms;
        memcpy(cur.peer, w.rows[w.n - 1].peer, CPN_PK_LEN);
        snprintf(cur.lease_id, sizeof cur.lease_id, "%s", w.rows[w.n - 1].lease_id);
        have = true;
        if (pages == 1) {
            /* Between pages: one newer than the cursor (not seen: it sorts before), one older
             * (seen: it sorts after). */
            ledger_lease_t l = s_lease("NEW", 0xA1, 0xB1, 1, 10, S_T0 + 99, S_T0 + S_HOUR_MS, "n");
            ledger_lease_t o = s_lease("OLD", 0xA1, 0xB1, 1, 10, S_T0 - 99, S_T0 + S_HOUR_MS, "o");
            assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
            assert_int_equal(ledger_record_grant(lg, &o, NULL, 0), CPN_OK);
        }
    }
    assert_int_equal(n, 21); /* the 20, then OLD last */
    assert_string_equal(all[20].lease_id, "OLD");
    for (size_t i = 1; i < n; i++)
        assert_true(s_order(&all[i - 1], &all[i]) < 0);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(all[i].tenant, tenant, CPN_PK_LEN);
    ledger_cursor_t bad;
    memset(&bad, 'x', sizeof bad); /* a lease id without its NUL */
    s_page_walk_t w;
    memset(&w, 0, sizeof w);
    assert_int_equal(ledger_list_page(lg, tenant, false, S_T0, &bad, 3, s_page_row, &w),
                     CPN_E_INVAL);
    ledger_destroy(&lg);
}

static void test_audit_bounded(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *lg = NULL;
    uint8_t from[CPN_PK_LEN];
    ledger_audit_row_t lo, hi;
    ledger_counts_t c;
    const uint8_t frame[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    s_pk(from, 0xC1);
    assert_int_equal(ledger_open(f->path, &lg), CPN_OK);
    assert_int_equal(ledger_audit_bounds(lg, &lo, &hi), CPN_E_INVAL);
    /* Keep 10: batch 1, so exactly the last 10 after every insert. */
    ledger_set_audit_max(lg, 10);
    for (uint64_t i = 1; i <= 25; i++)
        assert_int_equal(ledger_audit(lg, S_T0 + i, "AD", from, i % 2 ? CPN_OK : CPN_E_SIG,
                                      frame, sizeof frame),
                         CPN_OK);
    assert_int_equal(ledger_counts(lg, S_T0, &c), CPN_OK);
    assert_int_equal(c.audit_rows, 10);
    assert_int_equal(ledger_audit_bounds(lg, &lo, &hi), CPN_OK);
    assert_int_equal(lo.id, 16);
    assert_int_equal(lo.ts_ms, S_T0 + 16);
    assert_int_equal(lo.verdict, CPN_E_SIG);
    assert_int_equal(hi.id, 25);
    assert_string_equal(hi.type, "AD");
    assert_memory_equal(hi.from, from, CPN_PK_LEN);
    assert_int_equal(hi.frame_len, sizeof frame);

    /* Keep 640: pruned every 10 inserts, never more than 640 + 9 rows. */
    ledger_set_audit_max(lg, 640);
    assert_int_equal(ledger_begin(lg), CPN_OK);
    for (uint64_t i = 0; i < 2000; i++) {
        assert_int_equal(ledger_audit(lg, S_T0, "REQUEST", from, CPN_OK, NULL, 0), CPN_OK);
        assert_int_equal(ledger_counts(lg, S_T0, &c), CPN_OK);
        assert_true(c.audit_rows <= 649);
    }
    assert_int_equal(ledger_commit(lg), CPN_OK);
    assert_true(c.audit_rows >= 640);
    assert_int_equal(ledger_audit_bounds(lg, &lo, &hi), CPN_OK);
    assert_int_equal(hi.id, 2025);
    assert_int_equal(hi.frame_len, 0);
    ledger_destroy(&lg);
}

static ledger_intent_t s_intent(uint8_t tenant, const char *id, uint8_t peer, uint64_t deadline)
{
    ledger_intent_t in;
    memset(&in, 0, sizeof in);
    s_pk(in.tenant, tenant);
    snprintf(in.request_id, sizeof in.request_id, "%s", id);
    s_pk(in.peer, peer);
    snprintf(in.package, sizeof in.package, "h100x8");
    in.units = 2;
    in.deadline_ms = deadline;
    in.duration_s = 3600;
    return in;
}

static void test_intents(void **state)
{
    s_fixture_t *f = *state;
    ledger_t *l = NULL;
    ledger_intent_t out[4];
    size_t n = 99;
    uint8_t tenant[CPN_PK_LEN], p1[CPN_PK_LEN], p2[CPN_PK_LEN];
    s_pk(tenant, 1);
    s_pk(p1, 0xa1);
    s_pk(p2, 0xa2);
    assert_int_equal(ledger_open(f->path, &l), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r1", out, 4, &n), CPN_OK);
    assert_int_equal(n, 0);

    /* Two CLAIMs to p1 (the later deadline stays, whatever the order), one to p2 through a
     * member. */
    ledger_intent_t a = s_intent(1, "r1", 0xa1, S_T0 + 5000);
    assert_int_equal(ledger_intent_add(l, &a), CPN_OK);
    a.deadline_ms = S_T0 + 9000;
    assert_int_equal(ledger_intent_add(l, &a), CPN_OK);
    a.deadline_ms = S_T0 + 7000;
    a.units = 1;
    assert_int_equal(ledger_intent_add(l, &a), CPN_OK);
    ledger_intent_t b = s_intent(1, "r1", 0xa2, S_T0 + 6000);
    s_pk(b.via, 0xbb);
    assert_int_equal(ledger_intent_add(l, &b), CPN_OK);
    ledger_intent_t other = s_intent(2, "r1", 0xa1, S_T0 + 1000); /* another tenant's r1 */
    assert_int_equal(ledger_intent_add(l, &other), CPN_OK);

    assert_int_equal(ledger_intents(l, tenant, "r1", out, 4, &n), CPN_OK);
    assert_int_equal(n, 2);
    /* earliest deadline first: p2 (6000), then p1 (9000) */
    assert_memory_equal(out[0].peer, p2, CPN_PK_LEN);
    assert_int_equal(out[0].claims, 1);
    assert_int_equal(out[0].via[0], 0xbb);
    assert_memory_equal(out[1].peer, p1, CPN_PK_LEN);
    assert_int_equal(out[1].claims, 3);
    assert_int_equal(out[1].deadline_ms, S_T0 + 9000);
    assert_int_equal(out[1].units, 1);
    assert_int_equal(out[1].duration_s, 3600);
    assert_string_equal(out[1].package, "h100x8");
    assert_int_equal(out[1].via[0], 0); /* direct */
    /* a smaller buffer: counted, not copied past cap */
    assert_int_equal(ledger_intents(l, tenant, "r1", out, 1, &n), CPN_OK);
    assert_int_equal(n, 2);
    uint64_t count = 0;
    assert_int_equal(ledger_intent_count(l, &count), CPN_OK);
    assert_int_equal(count, 3);

    /* Resolve p2's; resolving what is not there is fine. */
    assert_int_equal(ledger_intent_resolve(l, tenant, "r1", p2), CPN_OK);
    assert_int_equal(ledger_intent_resolve(l, tenant, "r1", p2), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r1", out, 4, &n), CPN_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(out[0].peer, p1, CPN_PK_LEN);

    /* A rolled-back transaction leaves no intent behind. */
    assert_int_equal(ledger_begin(l), CPN_OK);
    ledger_intent_t c = s_intent(1, "r2", 0xa1, S_T0);
    assert_int_equal(ledger_intent_add(l, &c), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r2", out, 4, &n), CPN_OK);
    assert_int_equal(n, 1); /* the transaction sees its own row */
    assert_int_equal(ledger_rollback(l), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r2", out, 4, &n), CPN_OK);
    assert_int_equal(n, 0);

    /* Refused: empty id, deadline + duration beyond 63 bits. */
    c = s_intent(1, "", 0xa1, S_T0);
    assert_int_equal(ledger_intent_add(l, &c), CPN_E_INVAL);
    c = s_intent(1, "r3", 0xa1, (uint64_t)INT64_MAX - 1000);
    assert_int_equal(ledger_intent_add(l, &c), CPN_E_INVAL);
    assert_int_equal(ledger_intents(l, tenant, "r3", out, 4, &n), CPN_OK);
    assert_int_equal(n, 0);

    /* Kept across a reopen. */
    ledger_destroy(&l);
    assert_int_equal(ledger_open(f->path, &l), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r1", out, 4, &n), CPN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].claims, 3);

    /* Expiry: an intent goes when deadline + duration <= before (not a millisecond sooner). */
    uint64_t gone = 99;
    uint64_t end1 = S_T0 + 9000 + 3600 * 1000, end_other = S_T0 + 1000 + 3600 * 1000;
    assert_int_equal(ledger_intent_expire(l, end_other - 1, &gone), CPN_OK);
    assert_int_equal(gone, 0);
    assert_int_equal(ledger_intent_expire(l, end_other, &gone), CPN_OK);
    assert_int_equal(gone, 1); /* the other tenant's */
    assert_int_equal(ledger_intent_expire(l, end1 - 1, &gone), CPN_OK);
    assert_int_equal(gone, 0);
    assert_int_equal(ledger_intent_expire(l, end1, NULL), CPN_OK);
    assert_int_equal(ledger_intents(l, tenant, "r1", out, 4, &n), CPN_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ledger_intent_count(l, &count), CPN_OK);
    assert_int_equal(count, 0);
    ledger_destroy(&l);
}

/* A ledger written by the broker before intents (schema version 1) opens, keeps its leases
 * and gains the intents table. */
static void test_old_schema_upgrade(void **state)
{
    s_fixture_t *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "PRAGMA journal_mode = WAL;"
                     "CREATE TABLE leases (peer BLOB NOT NULL, lease_id TEXT NOT NULL,"
                     " tenant BLOB NOT NULL, package TEXT NOT NULL, units INTEGER NOT NULL,"
                     " accelerators INTEGER NOT NULL, price INTEGER NOT NULL,"
                     " start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,"
                     " request_id TEXT NOT NULL, state TEXT NOT NULL,"
                     " renewals INTEGER NOT NULL DEFAULT 0, grant_frame BLOB,"
                     " PRIMARY KEY (peer, lease_id));"
                     "CREATE TABLE audit (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,"
                     " type TEXT NOT NULL, sender BLOB NOT NULL, verdict INTEGER NOT NULL,"
                     " frame BLOB);"
                     "INSERT INTO leases VALUES (x'0101010101010101010101010101010101010101010101"
                     "010101010101010101', 'L-old', x'0202020202020202020202020202020202020202020"
                     "20202020202020202020202', 'cpu', 1, 0, 1000, 1700000000000, 1700003600000,"
                     " 'r-old', 'active', 0, NULL);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    ledger_t *l = NULL;
    assert_int_equal(ledger_open(f->path, &l), CPN_OK);
    uint8_t peer[CPN_PK_LEN], tenant[CPN_PK_LEN];
    s_pk(peer, 1);
    s_pk(tenant, 2);
    ledger_lease_t got;
    assert_int_equal(ledger_get(l, peer, "L-old", &got, NULL, NULL), CPN_OK);
    assert_string_equal(got.request_id, "r-old");
    ledger_intent_t in = s_intent(2, "r-new", 1, S_T0);
    assert_int_equal(ledger_intent_add(l, &in), CPN_OK);
    ledger_intent_t out[2];
    size_t n = 0;
    assert_int_equal(ledger_intents(l, tenant, "r-new", out, 2, &n), CPN_OK);
    assert_int_equal(n, 1);
    ledger_destroy(&l);

    /* And the upgrade is recorded: version 3 now (2: intents, 3: notices), with the table of
     * notices there. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 3);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM notices", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quota_math, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_grant_and_limits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_transactions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_usage_kept, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_list, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_audit_bounded, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_intents, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_old_schema_upgrade, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
}
