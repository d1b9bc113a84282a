/* usage_log.c - USAGE records taken into the ledger, link by link (usage_log.h). */
#include "usage_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "msg_typed.h"
#include "usage.h"

typedef enum {
    U_LAST,
    U_HAS,
    U_INSERT,
    U_EACH,
    U_SUM,
    U_DUE,
    U_LATER,
    U_RELAYED,
    U_PAGE,
    U__COUNT
} s_stmt_t;

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS usage ("
    " peer BLOB NOT NULL, lease_id TEXT NOT NULL, n INTEGER NOT NULL, tenant BLOB NOT NULL,"
    " package TEXT NOT NULL, to_ms INTEGER NOT NULL, amount INTEGER NOT NULL,"
    " total INTEGER NOT NULL, final INTEGER NOT NULL, hash BLOB NOT NULL,"
    " frame BLOB NOT NULL, via BLOB, relay INTEGER NOT NULL DEFAULT 0,"
    " next_ms INTEGER NOT NULL DEFAULT 0, lease BLOB, PRIMARY KEY (peer, lease_id, n));"
    "CREATE INDEX IF NOT EXISTS usage_tenant ON usage (tenant, to_ms);"
    "CREATE INDEX IF NOT EXISTS usage_relay ON usage (next_ms) WHERE relay = 1;";

/* ?4 IS NULL selects every tenant. */
static const char *const s_sql[U__COUNT] = {
    [U_LAST] = "SELECT n, frame, via FROM usage WHERE peer = ? AND lease_id = ? "
               "ORDER BY n DESC LIMIT 1",
    [U_HAS] = "SELECT hash FROM usage WHERE peer = ? AND lease_id = ? AND n = ?",
    [U_INSERT] = "INSERT INTO usage (peer, lease_id, n, tenant, package, to_ms, amount, total, "
                 "final, hash, frame, via, relay, lease) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [U_EACH] = "SELECT frame FROM usage WHERE to_ms > ?1 AND (?2 = 0 OR to_ms <= ?2) AND "
               "(?3 IS NULL OR tenant = ?3) ORDER BY lease_id, peer, n",
    [U_SUM] = "SELECT COALESCE(SUM(amount), 0) FROM usage WHERE to_ms > ?1 AND "
              "(?2 = 0 OR to_ms <= ?2) AND (?3 IS NULL OR tenant = ?3)",
    [U_DUE] = "SELECT rowid, peer, lease_id, n, frame, lease, via FROM usage "
              "WHERE relay = 1 AND next_ms <= ? ORDER BY next_ms, rowid LIMIT ?",
    [U_LATER] = "UPDATE usage SET next_ms = ? WHERE rowid = ?",
    /* Taken by the member we carry it to: this record and the ones before it. */
    [U_RELAYED] = "UPDATE usage SET relay = 0 WHERE peer = ?1 AND lease_id = ?2 AND n <= ?3 "
                  "AND relay = 1 AND via = ?4 AND EXISTS (SELECT 1 FROM usage WHERE peer = ?1 "
                  "AND lease_id = ?2 AND n = ?3 AND hash = ?5)",
    [U_PAGE] = "SELECT peer, lease_id, n, frame FROM usage WHERE (?1 IS NULL OR tenant = ?1) AND "
               "(peer, lease_id, n) > (?2, ?3, ?4) ORDER BY peer, lease_id, n LIMIT ?5",
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

/* The record on the lease's terms, signed by its peer: the lease the ledger recorded (we are
 * the tenant's broker), else the terms the caller proved (a LEASE carried with record 1),
 * else those of the record held before it (the chain repeats them: cpn_usage_check_link).
 * *known: the ledger or the caller gave terms. */
static int s_check_terms(usage_log_t *self, const cpn_env_t *env, const cpn_usage_t *u,
                         const usage_terms_t *t, bool *known, char why[CPN_REASON_MAX])
{
    ledger_lease_t l;
    usage_terms_t lt;
    *known = true;
    int r = ledger_get(self->ledger, env->from, u->lease_id, &l, NULL, NULL);
    if (r == CPN_OK) {
        memset(&lt, 0, sizeof lt);
        memcpy(lt.tenant, l.tenant, CPN_PK_LEN);
        snprintf(lt.package, sizeof lt.package, "%s", l.package);
        lt.units = l.units;
        lt.price = l.price;
        lt.start_ms = l.start_ms;
        t = &lt;
    } else if (r != CPN_E_NO_LEASE)
        return s_why(why, r, "ledger lookup failed", u->lease_id);
    if (!t) {
        *known = false;
        return CPN_OK;
    }
    if (memcmp(t->tenant, u->tenant, CPN_PK_LEN) != 0 || strcmp(t->package, u->package) != 0 ||
        t->units != u->units || t->price != u->price || t->start_ms != u->start_ms)
        return s_why(why, CPN_E_CHAIN,
                     "tenant, package, units, price or start differ from the lease's", u->lease_id);
    return CPN_OK;
}

/* The record held last for the lease (n 0: none) and its frame's hash. */
static int s_last(usage_log_t *self, const cpn_env_t *env, const char *lease_id, cpn_usage_t *last,
                  uint8_t hash[CPN_USAGE_HASH_LEN], uint8_t via[CPN_PK_LEN], bool *has_via)
{
    *has_via = false;
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
        if (sqlite3_column_bytes(st, 2) == CPN_PK_LEN) {
            memcpy(via, sqlite3_column_blob(st, 2), CPN_PK_LEN);
            *has_via = true;
        }
    } else if (rc != SQLITE_DONE) {
        r = s_db(self, "last usage");
    }
    s_done(st);
    return r;
}

static int s_insert(usage_log_t *self, const cpn_env_t *env, const cpn_usage_t *u,
                    const uint8_t *via, const usage_terms_t *t)
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
    if (via)
        sqlite3_bind_blob(st, 12, via, CPN_PK_LEN, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 12);
    sqlite3_bind_int(st, 13, via != NULL);
    if (u->n == 1 && t && t->lease && t->lease_len)
        sqlite3_bind_blob(st, 14, t->lease, (int)t->lease_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 14);
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
    return usage_log_take_terms(self, env, NULL, dup, why);
}

int usage_log_take_terms(usage_log_t *self, const cpn_env_t *env, const usage_terms_t *t,
                         bool *dup, char why[CPN_REASON_MAX])
{
    cpn_usage_t u, last;
    uint8_t hash[CPN_USAGE_HASH_LEN], via[CPN_PK_LEN];
    bool same = false, known = false, has_via = false;
    int r;
    if (dup)
        *dup = false;
    snprintf(why, CPN_REASON_MAX, "%s", "taken");
    if ((r = cpn_usage_decode(env, NULL, &u)) != CPN_OK)
        return s_why(why, r, "USAGE body does not decode", "-");
    if ((r = s_check_terms(self, env, &u, t, &known, why)) != CPN_OK ||
        (r = s_last(self, env, u.lease_id, &last, hash, via, &has_via)) != CPN_OK)
        return r;
    if (!known && last.n == 0)
        return s_why(why, CPN_E_NO_LEASE, "no lease of this peer brokered or carried here",
                     u.lease_id);
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
    /* Where it goes on: the caller's word (it opened the lease's route), else where the
     * record before it went. */
    const uint8_t *to = t ? (t->has_via ? t->via : NULL) : has_via ? via : NULL;
    return s_insert(self, env, &u, to, t);
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

/* ---- the relay towards the tenant's broker ---- */

typedef struct {
    int64_t rowid;
    uint8_t *frame, *lease;
    size_t len, lease_len;
    usage_relay_t rel;
} s_due_row_t;

static uint8_t *s_blob_dup(sqlite3_stmt *st, int col, size_t *len)
{
    *len = (size_t)sqlite3_column_bytes(st, col);
    const void *b = sqlite3_column_blob(st, col);
    uint8_t *p = *len && b ? malloc(*len) : NULL;
    if (p)
        memcpy(p, b, *len);
    else
        *len = 0;
    return p;
}

int usage_log_relay_due(usage_log_t *self, uint64_t now_ms, uint64_t retry_ms, size_t max,
                        usage_relay_fn fn, void *arg)
{
    s_due_row_t *rows = calloc(max ? max : 1, sizeof *rows);
    size_t k = 0;
    int rc = SQLITE_DONE, r = rows ? CPN_OK : CPN_E_NOMEM;
    sqlite3_stmt *st = self->st[U_DUE];
    if (r == CPN_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
        while (k < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            s_due_row_t *d = &rows[k++];
            d->rowid = sqlite3_column_int64(st, 0);
            if (sqlite3_column_bytes(st, 1) == CPN_PK_LEN)
                memcpy(d->rel.peer, sqlite3_column_blob(st, 1), CPN_PK_LEN);
            const unsigned char *id = sqlite3_column_text(st, 2);
            snprintf(d->rel.lease_id, sizeof d->rel.lease_id, "%s", id ? (const char *)id : "");
            d->rel.n = (uint32_t)sqlite3_column_int64(st, 3);
            d->frame = s_blob_dup(st, 4, &d->len);
            d->lease = s_blob_dup(st, 5, &d->lease_len);
            if (sqlite3_column_bytes(st, 6) == CPN_PK_LEN)
                memcpy(d->rel.via, sqlite3_column_blob(st, 6), CPN_PK_LEN);
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            r = s_db(self, "usage to relay");
        s_done(st);
    }
    /* Read first, then sent and rescheduled: no write moves rows under the SELECT. */
    for (size_t i = 0; i < k; i++) {
        s_due_row_t *d = &rows[i];
        if (r == CPN_OK && d->frame) {
            d->rel.frame = d->frame;
            d->rel.len = d->len;
            d->rel.lease = d->lease;
            d->rel.lease_len = d->lease_len;
            fn(&d->rel, arg);
            st = self->st[U_LATER];
            sqlite3_bind_int64(st, 1, (sqlite3_int64)(now_ms + retry_ms));
            sqlite3_bind_int64(st, 2, d->rowid);
            if (sqlite3_step(st) != SQLITE_DONE)
                r = s_db(self, "usage relay later");
            s_done(st);
        }
        free(d->frame);
        free(d->lease);
    }
    free(rows);
    return r;
}

int usage_log_relayed(usage_log_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      uint32_t n, const uint8_t hash[CPN_USAGE_HASH_LEN],
                      const uint8_t by[CPN_PK_LEN], bool *found)
{
    sqlite3_stmt *st = self->st[U_RELAYED];
    sqlite3_bind_blob(st, 1, peer, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_blob(st, 4, by, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 5, hash, CPN_USAGE_HASH_LEN, SQLITE_TRANSIENT);
    int r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_db(self, "usage relayed");
    *found = r == CPN_OK && sqlite3_changes(self->db) > 0;
    s_done(st);
    return r;
}

int usage_log_page(usage_log_t *self, const uint8_t *tenant, const usage_cursor_t *after,
                   size_t limit, usage_page_fn fn, void *arg)
{
    static const uint8_t zero[CPN_PK_LEN];
    sqlite3_stmt *st = self->st[U_PAGE];
    int rc, r = CPN_OK;
    if (tenant)
        sqlite3_bind_blob(st, 1, tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 1);
    /* No cursor: before every row (an empty blob sorts before any 32-byte key). */
    sqlite3_bind_blob(st, 2, after ? after->peer : zero, after ? CPN_PK_LEN : 0, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, after ? after->lease_id : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, after ? after->n : 0);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)limit);
    while (r == CPN_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        usage_cursor_t c;
        memset(&c, 0, sizeof c);
        if (sqlite3_column_bytes(st, 0) == CPN_PK_LEN)
            memcpy(c.peer, sqlite3_column_blob(st, 0), CPN_PK_LEN);
        const unsigned char *id = sqlite3_column_text(st, 1);
        snprintf(c.lease_id, sizeof c.lease_id, "%s", id ? (const char *)id : "");
        c.n = (uint32_t)sqlite3_column_int64(st, 2);
        r = fn(&c, sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), arg);
        if (r > 0) /* the page is full: not an error */
            break;
    }
    if (r == CPN_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = s_db(self, "usage page");
    s_done(st);
    return r > 0 ? CPN_OK : r;
}
