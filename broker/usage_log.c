/* usage_log.c - USAGE records taken into the ledger, link by link (usage_log.h). */
#include "usage_log.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "msg_typed.h"
#include "usage.h"

typedef enum { U_LAST, U_HAS, U_INSERT, U_EACH, U_SUM, U__COUNT } s_stmt_t;

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS usage ("
    " peer BLOB NOT NULL, lease_id TEXT NOT NULL, n INTEGER NOT NULL, tenant BLOB NOT NULL,"
    " package TEXT NOT NULL, to_ms INTEGER NOT NULL, amount INTEGER NOT NULL,"
    " total INTEGER NOT NULL, final INTEGER NOT NULL, hash BLOB NOT NULL,"
    " frame BLOB NOT NULL, PRIMARY KEY (peer, lease_id, n));"
    "CREATE INDEX IF NOT EXISTS usage_tenant ON usage (tenant, to_ms);";

/* ?4 IS NULL selects every tenant. */
static const char *const s_sql[U__COUNT] = {
    [U_LAST] = "SELECT n, frame FROM usage WHERE peer = ? AND lease_id = ? "
               "ORDER BY n DESC LIMIT 1",
    [U_HAS] = "SELECT hash FROM usage WHERE peer = ? AND lease_id = ? AND n = ?",
    [U_INSERT] = "INSERT INTO usage (peer, lease_id, n, tenant, package, to_ms, amount, total, "
                 "final, hash, frame) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    [U_EACH] = "SELECT frame FROM usage WHERE to_ms > ?1 AND (?2 = 0 OR to_ms <= ?2) AND "
               "(?3 IS NULL OR tenant = ?3) ORDER BY lease_id, peer, n",
    [U_SUM] = "SELECT COALESCE(SUM(amount), 0) FROM usage WHERE to_ms > ?1 AND "
              "(?2 = 0 OR to_ms <= ?2) AND (?3 IS NULL OR tenant = ?3)",
};

struct usage_log {
    ledger_t *ledger;
    sqlite3 *db;
    sqlite3_stmt *st[U__COUNT];
};

static int s_db(usage_log_t *self, const char *what)
{
    log_error("usage", "%s: %s", what, sqlite3_errmsg(self->db));
    return CPN_E_DB;
}

static void s_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int usage_log_open(ledger_t *ledger, usage_log_t **out)
{
    *out = NULL;
    usage_log_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->ledger = ledger;
    self->db = ledger_db(ledger);
    int r = CPN_OK;
    if (sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK)
        r = s_db(self, "usage schema");
    for (int i = 0; r == CPN_OK && i < U__COUNT; i++)
        if (sqlite3_prepare_v2(self->db, s_sql[i], -1, &self->st[i], NULL) != SQLITE_OK)
            r = s_db(self, s_sql[i]);
    if (r != CPN_OK)
        usage_log_destroy(&self);
    *out = self;
    return r;
}

void usage_log_destroy(usage_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (int i = 0; i < U__COUNT; i++)
        sqlite3_finalize((*self_p)->st[i]);
    free(*self_p);
    *self_p = NULL;
}

static int s_why(char why[CPN_REASON_MAX], int r, const char *what, const char *lease)
{
    snprintf(why, CPN_REASON_MAX, "lease %s: %.180s", lease, what);
    return r;
}

/* The record on the brokered lease's terms, signed by its peer. */
static int s_check_terms(usage_log_t *self, const cpn_env_t *env, const cpn_usage_t *u,
                         char why[CPN_REASON_MAX])
{
    ledger_lease_t l;
    int r = ledger_get(self->ledger, env->from, u->lease_id, &l, NULL, NULL);
    if (r == CPN_E_NO_LEASE)
        return s_why(why, r, "no lease of this peer brokered here", u->lease_id);
    if (r != CPN_OK)
        return s_why(why, r, "ledger lookup failed", u->lease_id);
    if (memcmp(l.tenant, u->tenant, CPN_PK_LEN) != 0 || strcmp(l.package, u->package) != 0 ||
        l.units != u->units || l.price != u->price || l.start_ms != u->start_ms)
        return s_why(why, CPN_E_CHAIN,
                     "tenant, package, units, price or start differ from the lease's", u->lease_id);
    return CPN_OK;
}

/* The record held last for the lease (n 0: none) and its frame's hash. */
static int s_last(usage_log_t *self, const cpn_env_t *env, const char *lease_id, cpn_usage_t *last,
                  uint8_t hash[CPN_USAGE_HASH_LEN])
{
    sqlite3_stmt *st = self->st[U_LAST];
    int rc, r = CPN_OK;
    memset(last, 0, sizeof *last);
    sqlite3_bind_blob(st, 1, env->from, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_TRANSIENT);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *f = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        cpn_env_t e;
        /* Our own row, verified when taken: parsed again, not verified again. */
        if (cpn_env_parse(f, len, NULL, &e) != CPN_OK || cpn_usage_decode(&e, NULL, last))
            r = CPN_E_INTERNAL;
        else
            cpn_usage_hash(f, len, hash);
    } else if (rc != SQLITE_DONE) {
        r = s_db(self, "last usage");
    }
    s_done(st);
    return r;
}

static int s_insert(usage_log_t *self, const cpn_env_t *env, const cpn_usage_t *u)
{
    uint8_t hash[CPN_USAGE_HASH_LEN];
    cpn_usage_hash(env->frame, env->frame_len, hash);
    sqlite3_stmt *st = self->st[U_INSERT];
    sqlite3_bind_blob(st, 1, env->from, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, u->lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, u->n);
    sqlite3_bind_blob(st, 4, u->tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, u->package, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)u->to_ms);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)u->amount);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)u->total);
    sqlite3_bind_int(st, 9, u->final);
    sqlite3_bind_blob(st, 10, hash, sizeof hash, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 11, env->frame, (int)env->frame_len, SQLITE_TRANSIENT);
    int r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_db(self, "insert usage");
    s_done(st);
    return r;
}

/* Whether record n of the lease is held with exactly this frame's hash. */
static int s_held(usage_log_t *self, const cpn_env_t *env, const cpn_usage_t *u, bool *same)
{
    uint8_t hash[CPN_USAGE_HASH_LEN];
    cpn_usage_hash(env->frame, env->frame_len, hash);
    sqlite3_stmt *st = self->st[U_HAS];
    sqlite3_bind_blob(st, 1, env->from, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, u->lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, u->n);
    int rc = sqlite3_step(st), r = CPN_OK;
    *same = rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == CPN_USAGE_HASH_LEN &&
            memcmp(sqlite3_column_blob(st, 0), hash, sizeof hash) == 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = s_db(self, "usage held");
    s_done(st);
    return r;
}

int usage_log_take(usage_log_t *self, const cpn_env_t *env, bool *dup, char why[CPN_REASON_MAX])
{
    cpn_usage_t u, last;
    uint8_t hash[CPN_USAGE_HASH_LEN];
    bool same = false;
    int r;
    if (dup)
        *dup = false;
    snprintf(why, CPN_REASON_MAX, "%s", "taken");
    if ((r = cpn_usage_decode(env, NULL, &u)) != CPN_OK)
        return s_why(why, r, "USAGE body does not decode", "-");
    if ((r = s_check_terms(self, env, &u, why)) != CPN_OK ||
        (r = s_last(self, env, u.lease_id, &last, hash)) != CPN_OK)
        return r;
    if (u.n <= last.n) { /* held already: the same bytes are a re-send, other bytes a lie */
        if ((r = s_held(self, env, &u, &same)) != CPN_OK)
            return r;
        if (!same)
            return s_why(why, CPN_E_CHAIN, "differs from the record held with that n", u.lease_id);
        if (dup)
            *dup = true;
        return CPN_OK;
    }
    char w[CPN_REASON_MAX];
    if ((r = cpn_usage_check_link(last.n ? &last : NULL, hash, &u, w)) != CPN_OK)
        return s_why(why, r, w, u.lease_id);
    return s_insert(self, env, &u);
}

static void s_bind_range(sqlite3_stmt *st, const uint8_t *tenant, uint64_t from, uint64_t to)
{
    sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)to);
    if (tenant)
        sqlite3_bind_blob(st, 3, tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 3);
}

int usage_log_each(usage_log_t *self, const uint8_t *tenant, uint64_t from_ms, uint64_t to_ms,
                   usage_log_fn fn, void *arg)
{
    sqlite3_stmt *st = self->st[U_EACH];
    int rc, r = CPN_OK;
    s_bind_range(st, tenant, from_ms, to_ms);
    while (r == CPN_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        r = fn(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), arg);
    if (r == CPN_OK && rc != SQLITE_DONE)
        r = s_db(self, "usage records");
    s_done(st);
    return r;
}

int usage_log_sum(usage_log_t *self, const uint8_t *tenant, uint64_t from_ms, uint64_t to_ms,
                  uint64_t *sum)
{
    sqlite3_stmt *st = self->st[U_SUM];
    int r = CPN_OK;
    s_bind_range(st, tenant, from_ms, to_ms);
    if (sqlite3_step(st) == SQLITE_ROW)
        *sum = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = s_db(self, "usage sum");
    s_done(st);
    return r;
}
