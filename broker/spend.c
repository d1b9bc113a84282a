/* spend.c - a tenant's committed and running spend in a period, from the ledger (spend.h). */
#include "spend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "usage.h"
#include "usage_log.h"

/* The tenant's leases that end after the period starts and start before it ends, each with
 * the end of its last USAGE record (NULL: none yet). */
static const char s_sql[] =
    "SELECT l.units, l.price, l.start_ms, l.end_ms, l.state,"
    " (SELECT MAX(u.to_ms) FROM usage u WHERE u.peer = l.peer AND u.lease_id = l.lease_id)"
    " FROM leases l WHERE l.tenant = ?1 AND l.end_ms > ?2 AND l.start_ms < ?3";

/* What the tenant's records of the period bill, for leases this broker brokered (its ledger
 * holds them): records it only carried for another broker's lease do not count here. */
static const char s_sql_billed[] =
    "SELECT COALESCE(SUM(u.amount), 0) FROM usage u JOIN leases l ON l.peer = u.peer AND "
    "l.lease_id = u.lease_id WHERE u.tenant = ?1 AND u.to_ms > ?2 AND u.to_ms <= ?3";

struct spend {
    sqlite3 *db;
    sqlite3_stmt *st, *billed;
    usage_log_t *usage;
};

int spend_open(ledger_t *ledger, spend_t **out)
{
    *out = NULL;
    spend_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->db = ledger_db(ledger);
    int r = usage_log_open(ledger, &self->usage); /* the usage table exists from here on */
    if (r == CPN_OK &&
        (sqlite3_prepare_v2(self->db, s_sql, -1, &self->st, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(self->db, s_sql_billed, -1, &self->billed, NULL) != SQLITE_OK)) {
        log_error("spend", "prepare: %s", sqlite3_errmsg(self->db));
        r = CPN_E_DB;
    }
    if (r != CPN_OK)
        spend_destroy(&self);
    *out = self;
    return r;
}

void spend_destroy(spend_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sqlite3_finalize((*self_p)->st);
    sqlite3_finalize((*self_p)->billed);
    usage_log_destroy(&(*self_p)->usage);
    free(*self_p);
    *self_p = NULL;
}

static uint64_t s_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* total(to) - total(from) of one lease by the usage rule; 0 if empty or out of range. */
static uint64_t s_part(uint32_t units, uint64_t price, uint64_t start, uint64_t from, uint64_t to)
{
    uint64_t a = 0, b = 0;
    if (to <= from || cpn_usage_total(units, price, start, from, &a) != CPN_OK ||
        cpn_usage_total(units, price, start, to, &b) != CPN_OK)
        return to <= from ? 0 : UINT64_MAX; /* a charge beyond 64 bits: over any budget */
    return b - a;
}

int spend_tenant(spend_t *self, const uint8_t tenant[CPN_PK_LEN], uint64_t from_ms, uint64_t to_ms,
                 uint64_t now_ms, uint64_t *committed, uint64_t *running)
{
    sqlite3_int64 from = (sqlite3_int64)(from_ms > INT64_MAX ? INT64_MAX : from_ms);
    sqlite3_int64 to = (sqlite3_int64)(to_ms > INT64_MAX ? INT64_MAX : to_ms);
    sqlite3_stmt *st = self->billed;
    sqlite3_bind_blob(st, 1, tenant, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    int rc = sqlite3_step(st);
    *committed = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    *running = 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW) {
        log_error("spend", "records of a tenant: %s", sqlite3_errmsg(self->db));
        return CPN_E_DB;
    }
    st = self->st;
    sqlite3_bind_blob(st, 1, tenant, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t units = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t price = (uint64_t)sqlite3_column_int64(st, 1);
        uint64_t start = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t end = (uint64_t)sqlite3_column_int64(st, 3);
        const char *state = (const char *)sqlite3_column_text(st, 4);
        uint64_t metered = (uint64_t)sqlite3_column_int64(st, 5); /* NULL reads 0 */
        uint64_t a = metered > start ? metered : start;
        a = a > from_ms ? a : from_ms;
        bool runs = state && strcmp(state, "active") == 0 && end > now_ms;
        if (runs)
            *running = s_add(*running, s_part(units, price, start, a, end));
        else
            *committed =
                s_add(*committed, s_part(units, price, start, a, end < to_ms ? end : to_ms));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        log_error("spend", "leases of a tenant: %s", sqlite3_errmsg(self->db));
        return CPN_E_DB;
    }
    return CPN_OK;
}

int spend_state(spend_t *self, const policy_budget_t *b, const uint8_t tenant[CPN_PK_LEN],
                uint64_t now_ms, budget_state_t *s)
{
    uint64_t from, to;
    if (b->period == POLICY_BUDGET_DAY)
        cpn_usage_day(now_ms, &from, &to);
    else
        cpn_usage_month(now_ms, &from, &to);
    s->budget = b->amount;
    return spend_tenant(self, tenant, from, to, now_ms, &s->committed, &s->running);
}

int spend_renew(spend_t *self, ledger_t *ledger, const policy_budget_t *b,
                const uint8_t tenant[CPN_PK_LEN], const uint8_t peer[CPN_PK_LEN],
                const char *lease_id, uint64_t extend_s, uint64_t now_ms, uint64_t in_flight,
                char why[CPN_REASON_MAX])
{
    ledger_lease_t l;
    budget_state_t s = {.in_flight = in_flight};
    if (ledger_get(ledger, peer, lease_id, &l, NULL, NULL) != CPN_OK)
        return CPN_OK;
    if (spend_state(self, b, tenant, now_ms, &s) != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "the broker cannot read its ledger");
        return CPN_E_DB;
    }
    return budget_admit(&s, budget_cost(l.units, l.price, extend_s), 0, why);
}
