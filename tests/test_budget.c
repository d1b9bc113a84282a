/* test_budget.c - admission against a budget and a cost ceiling (broker/budget.c): exactly at
 * the limit is admitted, a thousandth over is refused naming every figure; the ceiling; the
 * rest of a running lease; sums that would overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "budget.h"
#include "ledger.h"
#include "spend.h"
#include "usage.h"

#define T0 1796083200000ull
#define HOUR_MS 3600000ull

static void test_cost_and_rest(void **state)
{
    (void)state;
    uint64_t c = 0;
    assert_int_equal(budget_request_cost(8, 210000, 3600, &c), CPN_OK);
    assert_int_equal(c, 8ull * 210000);
    assert_int_equal(budget_request_cost(1, 1000, 1, &c), CPN_OK);
    assert_int_equal(c, 0); /* 1.000/h for 1 s: 0.277 thousandths, floored */
    assert_int_equal(budget_request_cost(UINT32_MAX, UINT64_MAX, 3600, &c), CPN_E_INVAL);
    assert_int_equal(budget_request_cost(1, 1, UINT64_MAX, &c), CPN_E_INVAL);
    /* a 2-hour lease of 2 units at 3.000, half run: 6.000 left */
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 + HOUR_MS), 6000);
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 - 5), 12000);
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS), 0);
    /* rest + what was metered = the whole, whatever the cut (the usage rule) */
    uint64_t whole = budget_lease_rest(7, 1234, T0, T0 + 2 * HOUR_MS, T0);
    for (uint64_t at = T0; at < T0 + 2 * HOUR_MS; at += 777777) {
        uint64_t rest = budget_lease_rest(7, 1234, T0, T0 + 2 * HOUR_MS, at), done = 0;
        assert_int_equal(cpn_usage_total(7, 1234, T0, at, &done), CPN_OK);
        assert_int_equal(done + rest, whole);
    }
}

static void test_admit(void **state)
{
    (void)state;
    char why[CPN_REASON_MAX] = "";
    budget_state_t s = {.budget = 100000, .committed = 60000, .running = 30000, .in_flight = 5000};
    assert_int_equal(budget_admit(&s, 5000, 0, why), CPN_OK); /* exactly at the limit */
    assert_int_equal(budget_admit(&s, 5001, 0, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "budget 100.000"));
    assert_non_null(strstr(why, "committed 60.000 + running 30.000 + in flight 5.000 + this "
                                "request 5.001 = 100.001"));
    /* no budget: only the ceiling */
    budget_state_t none = {0};
    assert_int_equal(budget_admit(&none, UINT64_MAX, 0, why), CPN_OK);
    assert_int_equal(budget_admit(&none, 10001, 10000, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "cost 10.001 over the request's ceiling 10.000"));
    assert_int_equal(budget_admit(&none, 10000, 10000, why), CPN_OK);
    /* a sum that would wrap refuses */
    budget_state_t big = {.budget = UINT64_MAX, .committed = UINT64_MAX - 1, .running = 1};
    assert_int_equal(budget_admit(&big, 1, 0, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "overflow"));
    assert_string_equal(cpn_errname(CPN_E_OVER_BUDGET), "over-budget");
}

#define DEC_2026 1796083200000ull
#define JAN_2027 1798761600000ull
#define H_MS 3600000ull

static void test_periods(void **state)
{
    (void)state;
    uint64_t f = 0, t = 0;
    cpn_usage_month(DEC_2026 + 5 * H_MS, &f, &t);
    assert_true(f == DEC_2026 && t == JAN_2027);
    cpn_usage_month(JAN_2027 - 1, &f, &t);
    assert_true(f == DEC_2026 && t == JAN_2027);
    cpn_usage_month(JAN_2027, &f, &t);
    assert_true(f == JAN_2027);
    cpn_usage_month(1709251200000ull - 1, &f, &t); /* February of a leap year */
    assert_true(f == 1706745600000ull && t == 1709251200000ull);
    cpn_usage_day(DEC_2026 + 25 * H_MS, &f, &t);
    assert_true(f == DEC_2026 + 24 * H_MS && t == DEC_2026 + 48 * H_MS);
    assert_int_equal(cpn_usage_month_parse("2026-12", &f, &t), CPN_OK);
    assert_true(f == DEC_2026 && t == JAN_2027);
    assert_int_equal(cpn_usage_month_parse("1970-01", &f, &t), CPN_OK);
    assert_true(f == 0);
    const char *bad[] = {"2026-13", "2026-00", "2026-1", "2026-123", "26-12", "1969-12", "",
                         "2026/12", "2026-1x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cpn_usage_month_parse(bad[i], &f, &t), CPN_E_INVAL);
}

static void s_lease(ledger_t *lg, const char *id, uint8_t tenant, uint64_t start, uint64_t end)
{
    ledger_lease_t l;
    memset(&l, 0, sizeof l);
    snprintf(l.lease_id, sizeof l.lease_id, "%s", id);
    snprintf(l.request_id, sizeof l.request_id, "%s", id);
    snprintf(l.package, sizeof l.package, "p");
    memset(l.tenant, tenant, CPN_PK_LEN);
    memset(l.peer, 9, CPN_PK_LEN);
    l.units = 2;
    l.price = 1000; /* 2 units at 1.000 an hour: 2.000 an hour */
    l.start_ms = start;
    l.end_ms = end;
    assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
}

/* A USAGE row of tenant 1 for peer 9's lease `id` ending at to_ms, as usage_log.c keeps it
 * (the frame is not read here). */
static void s_record(ledger_t *lg, const char *id, uint64_t to_ms, uint64_t amount)
{
    sqlite3_stmt *st = NULL;
    uint8_t peer[CPN_PK_LEN], tenant[CPN_PK_LEN], zero[CPN_PK_LEN] = {0};
    memset(peer, 9, sizeof peer);
    memset(tenant, 1, sizeof tenant);
    assert_int_equal(sqlite3_prepare_v2(ledger_db(lg),
                                        "INSERT INTO usage (peer, lease_id, n, tenant, package, "
                                        "to_ms, amount, total, final, hash, frame) VALUES "
                                        "(?, ?, 1, ?, 'p', ?, ?, ?, 0, ?, ?)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(st, 1, peer, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, tenant, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)to_ms);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)amount);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)amount);
    sqlite3_bind_blob(st, 7, zero, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, zero, 1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* committed and running from a real ledger file: what ended is committed (the part in the
 * period), what runs is running to its end, other tenants and periods do not count, and the
 * figures are read again the same after the file is reopened (a restarted broker). */
static void test_spend(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpn-test-budget-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/l.db", dir);
    uint64_t now = DEC_2026 + 100 * H_MS, c = 0, r = 0;
    for (int round = 0; round < 2; round++) {
        ledger_t *lg = NULL;
        spend_t *sp = NULL;
        assert_int_equal(ledger_open(path, &lg), CPN_OK);
        assert_int_equal(spend_open(lg, &sp), CPN_OK);
        if (round == 0) {
            s_lease(lg, "a", 1, DEC_2026 - 2 * H_MS, DEC_2026 + 3 * H_MS);  /* ended: 3 h in */
            s_lease(lg, "b", 1, now - H_MS, now + 4 * H_MS);                 /* runs: 5 h */
            s_lease(lg, "c", 1, DEC_2026 - 9 * H_MS, DEC_2026 - 1 * H_MS);  /* November */
            s_lease(lg, "d", 2, now - H_MS, now + 4 * H_MS);                 /* another tenant */
            s_lease(lg, "e", 1, now - 2 * H_MS, now + H_MS);
            assert_int_equal(ledger_release(lg, (uint8_t[32]){[0 ... 31] = 9}, "e",
                                            now - H_MS + H_MS / 2), CPN_OK); /* 1.5 h */
            /* b's first half hour is billed by a record; a record of a lease this broker
             * only carried (not in its ledger) is not the tenant's spend here */
            s_record(lg, "b", now - H_MS / 2, 1000);
            s_record(lg, "zz", now - H_MS / 2, 5555);
        }
        uint8_t t1[CPN_PK_LEN];
        memset(t1, 1, sizeof t1);
        assert_int_equal(spend_tenant(sp, t1, DEC_2026, JAN_2027, now, &c, &r), CPN_OK);
        assert_int_equal(c, 6000 + 3000 + 1000); /* a: 3 h, e: 1.5 h, b: 0.5 h, x 2.000 */
        assert_int_equal(r, 9000);               /* b: the 4.5 h not billed yet */
        spend_destroy(&sp);
        assert_null(sp);
        ledger_destroy(&lg);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_spend),
        cmocka_unit_test(test_cost_and_rest),
        cmocka_unit_test(test_admit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
