/* ledger.c - brokered leases and the audit log in SQLite.
 *
 * Statements are prepared once at open, from one table, and reset after each use. Every
 * integer crossing into SQLite is checked to fit its signed 64 bits.
 *
 * Quota usage is kept per tenant between requests (s_usage_*): the query sums every active
 * lease of the tenant, so asking it on each REQUEST made a request cost O(the tenant's active
 * leases); it was the broker's largest cost in scripts/bench/e2e. An entry is exact until
 * the earliest end among the leases it counted; a grant adds to it; a renewal, a release or
 * a rolled-back transaction drops every entry (they are rare, and the next ask recomputes).
 */
#include "ledger.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

#define S_LOG "ledger"
#define S_SCHEMA_VERSION 3 /* 2: intents; 3: notices */
#define S_BUSY_TIMEOUT_MS 2000
#define S_CKPT_PAGES "300" /* log pages that trigger a checkpoint (SQLite's default: 1000) */
/* Prune the audit log every audit_max / S_PRUNE_DIV inserts. */
#define S_PRUNE_DIV 64
#define S_USAGE_SLOTS 256 /* tenants whose usage is kept, direct-mapped by key */

static const char *const s_schema =
    "CREATE TABLE IF NOT EXISTS leases ("
    "  peer BLOB NOT NULL,"
    "  lease_id TEXT NOT NULL,"
    "  tenant BLOB NOT NULL,"
    "  package TEXT NOT NULL,"
    "  units INTEGER NOT NULL,"
    "  accelerators INTEGER NOT NULL,"
    "  price INTEGER NOT NULL,"
    "  start_ms INTEGER NOT NULL,"
    "  end_ms INTEGER NOT NULL,"
    "  request_id TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  renewals INTEGER NOT NULL DEFAULT 0,"
    "  grant_frame BLOB,"
    "  PRIMARY KEY (peer, lease_id));"
    "CREATE INDEX IF NOT EXISTS leases_tenant ON leases (tenant, state, end_ms);"
    "CREATE INDEX IF NOT EXISTS leases_request ON leases (tenant, request_id);"
    "CREATE INDEX IF NOT EXISTS leases_state ON leases (state, end_ms);"
    "CREATE TABLE IF NOT EXISTS audit ("
    "  id INTEGER PRIMARY KEY,"
    "  ts_ms INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  sender BLOB NOT NULL,"
    "  verdict INTEGER NOT NULL,"
    "  frame BLOB);"
    /* Version 2. One row per (request, peer) that a CLAIM may have reached and not yet
     * answered for certain (ledger.h, "Intents"). */
    "CREATE TABLE IF NOT EXISTS intents ("
    "  tenant BLOB NOT NULL,"
    "  request_id TEXT NOT NULL,"
    "  peer BLOB NOT NULL,"
    "  package TEXT NOT NULL,"
    "  units INTEGER NOT NULL,"
    "  claims INTEGER NOT NULL,"
    "  deadline_ms INTEGER NOT NULL,"
    "  duration_s INTEGER NOT NULL,"
    "  via BLOB,"
    "  PRIMARY KEY (tenant, request_id, peer));"
    "CREATE INDEX IF NOT EXISTS intents_end ON intents (deadline_ms + duration_s * 1000);"
    /* Version 3. The peers' NOTICEs (ledger_notice.h); `id` orders them for `cpnctl watch`. */
    "CREATE TABLE IF NOT EXISTS notices ("
    "  id INTEGER PRIMARY KEY,"
    "  peer BLOB NOT NULL,"
    "  lease_id TEXT NOT NULL,"
    "  tenant BLOB NOT NULL,"
    "  code INTEGER NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  effective_ms INTEGER NOT NULL,"
    "  units INTEGER NOT NULL,"
    "  received_ms INTEGER NOT NULL,"
    "  origin BLOB NOT NULL,"
    "  todo INTEGER NOT NULL,"
    "  tries INTEGER NOT NULL DEFAULT 0,"
    "  next_ms INTEGER NOT NULL DEFAULT 0,"
    "  replaced_by TEXT NOT NULL DEFAULT '',"
    "  frame BLOB NOT NULL,"
    "  UNIQUE (peer, lease_id));"
    "CREATE INDEX IF NOT EXISTS notices_tenant ON notices (tenant, id);"
    "CREATE INDEX IF NOT EXISTS notices_todo ON notices (todo, next_ms);";

#define S_LEASE_COLS                                                                           \
    "lease_id, tenant, peer, package, units, accelerators, price, start_ms, end_ms, "          \
    "request_id, state, renewals"

typedef enum {
    S_INSERT,
    S_RENEW,
    S_RELEASE,
    S_EXISTS,
    S_EXPIRE,
    S_USAGE,
    S_GET,
    S_FIND_REQUEST,
    S_LIST_PAGE,
    S_COUNT_ALL,
    S_COUNT_ACTIVE,
    S_AUDIT_INSERT,
    S_AUDIT_PRUNE,
    S_AUDIT_BOUNDS,
    S_AUDIT_ROW,
    S_INTENT_ADD,
    S_INTENT_LIST,
    S_INTENT_DEL,
    S_INTENT_EXPIRE,
    S_INTENT_COUNT,
    S__COUNT
} s_stmt_t;

static const char *const s_sql[S__COUNT] = {
    [S_INSERT] = "INSERT INTO leases (" S_LEASE_COLS ", grant_frame) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'active', ?11, ?12) "
                 "ON CONFLICT (peer, lease_id) DO NOTHING",
    [S_RENEW] = "UPDATE leases SET end_ms = ?3, renewals = ?4, state = 'active' "
                "WHERE peer = ?1 AND lease_id = ?2 AND state IN ('active', 'expired')",
    [S_RELEASE] = "UPDATE leases SET state = 'released', end_ms = MIN(end_ms, ?3) "
                  "WHERE peer = ?1 AND lease_id = ?2 AND state = 'active' AND end_ms > ?3",
    [S_EXISTS] = "SELECT 1 FROM leases WHERE peer = ?1 AND lease_id = ?2",
    [S_EXPIRE] = "UPDATE leases SET state = 'expired' WHERE state = 'active' AND end_ms <= ?1",
    [S_USAGE] = "SELECT COALESCE(SUM(accelerators), 0), COALESCE(SUM(units), 0), "
                "COALESCE(SUM(price * units), 0), MIN(end_ms) FROM leases "
                "WHERE tenant = ?1 AND state = 'active' AND end_ms > ?2",
    [S_GET] = "SELECT " S_LEASE_COLS ", grant_frame FROM leases "
              "WHERE peer = ?1 AND lease_id = ?2",
    [S_FIND_REQUEST] = "SELECT " S_LEASE_COLS ", grant_frame FROM leases "
                       "WHERE tenant = ?1 AND request_id = ?2 "
                       "ORDER BY state = 'revoked', start_ms, lease_id LIMIT 1",
    /* Keyset paging (query.c): rows strictly after the cursor (?5, ?6, ?7) in the order
     * (start_ms DESC, peer, lease_id), which is total because (peer, lease_id) is the key. */
    [S_LIST_PAGE] = "SELECT " S_LEASE_COLS " FROM leases "
                    "WHERE (?1 IS NULL OR tenant = ?1) "
                    "AND (?2 = 0 OR (state = 'active' AND end_ms > ?3)) "
                    "AND (?5 IS NULL OR start_ms < ?5 OR (start_ms = ?5 AND "
                    "(peer > ?6 OR (peer = ?6 AND lease_id > ?7)))) "
                    "ORDER BY start_ms DESC, peer, lease_id LIMIT ?4",
    [S_COUNT_ALL] = "SELECT COUNT(*) FROM leases",
    [S_COUNT_ACTIVE] = "SELECT COUNT(*), COALESCE(SUM(units), 0), "
                       "COALESCE(SUM(accelerators), 0), COUNT(DISTINCT tenant) FROM leases "
                       "WHERE state = 'active' AND end_ms > ?1",
    [S_AUDIT_INSERT] = "INSERT INTO audit (ts_ms, type, sender, verdict, frame) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_AUDIT_PRUNE] = "DELETE FROM audit WHERE id <= ?1",
    [S_AUDIT_BOUNDS] = "SELECT MIN(id), MAX(id) FROM audit",
    [S_AUDIT_ROW] = "SELECT id, ts_ms, type, sender, verdict, length(frame) FROM audit "
                    "WHERE id = ?1",
    [S_INTENT_ADD] = "INSERT INTO intents (tenant, request_id, peer, package, units, claims, "
                     "deadline_ms, duration_s, via) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8) "
                     "ON CONFLICT (tenant, request_id, peer) DO UPDATE SET "
                     "claims = claims + 1, deadline_ms = MAX(deadline_ms, excluded.deadline_ms), "
                     "package = excluded.package, units = excluded.units, via = excluded.via",
    [S_INTENT_LIST] = "SELECT tenant, request_id, peer, package, units, claims, deadline_ms, "
                      "duration_s, via FROM intents WHERE tenant = ?1 AND request_id = ?2 "
                      "ORDER BY deadline_ms, peer",
    [S_INTENT_DEL] = "DELETE FROM intents WHERE tenant = ?1 AND request_id = ?2 AND peer = ?3",
    [S_INTENT_EXPIRE] = "DELETE FROM intents WHERE deadline_ms + duration_s * 1000 <= ?1",
    [S_INTENT_COUNT] = "SELECT COUNT(*) FROM intents",
};

/* One tenant's usage as the query found it at since_ms, plus the grants recorded since. */
typedef struct {
    bool valid;
    uint8_t tenant[CPN_PK_LEN];
    ledger_usage_t usage;
    uint64_t since_ms;
    uint64_t until_ms; /* earliest end_ms counted: exact while since_ms <= now < until_ms */
} s_usage_slot_t;

struct ledger {
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    bool in_tx;
    uint64_t audit_max;
    uint64_t prune_batch;
    s_usage_slot_t usage[S_USAGE_SLOTS];
};

static s_usage_slot_t *s_usage_slot(ledger_t *self, const uint8_t tenant[CPN_PK_LEN])
{
    uint64_t h;
    memcpy(&h, tenant, sizeof h); /* keys are uniformly random */
    return &self->usage[h % S_USAGE_SLOTS];
}

static void s_usage_drop_all(ledger_t *self)
{
    for (size_t i = 0; i < S_USAGE_SLOTS; i++)
        self->usage[i].valid = false;
}

/* A lease just inserted (state active): add it to its tenant's entry, if there is one. */
static void s_usage_add(ledger_t *self, const ledger_lease_t *l)
{
    s_usage_slot_t *u = s_usage_slot(self, l->tenant);
    uint64_t spend;
    if (!u->valid || memcmp(u->tenant, l->tenant, CPN_PK_LEN) != 0 || l->end_ms <= u->since_ms)
        return; /* no entry, or a lease that ended before it was computed: counts nowhere */
    /* The query raises an error on overflow; so does the next ask after a drop. */
    if (__builtin_mul_overflow(l->price, (uint64_t)l->units, &spend) ||
        __builtin_add_overflow(u->usage.spend_rate, spend, &u->usage.spend_rate) ||
        __builtin_add_overflow(u->usage.units, (uint64_t)l->units, &u->usage.units) ||
        __builtin_add_overflow(u->usage.accelerators, l->accelerators, &u->usage.accelerators)) {
        u->valid = false;
        return;
    }
    if (l->end_ms < u->until_ms)
        u->until_ms = l->end_ms;
}

static int s_db_error(ledger_t *self, const char *what)
{
    log_error(S_LOG, "%s: %s", what, self && self->db ? sqlite3_errmsg(self->db) : "no db");
    return CPN_E_DB;
}

static int s_exec(ledger_t *self, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error(S_LOG, "%s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return CPN_E_DB;
    }
    return CPN_OK;
}

/* Reset a statement for its next use; returns it. */
static sqlite3_stmt *s_stmt(ledger_t *self, s_stmt_t which)
{
    sqlite3_stmt *st = self->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int s_bind_u64(sqlite3_stmt *st, int col, uint64_t v)
{
    if (v > (uint64_t)INT64_MAX)
        return CPN_E_INVAL;
    return sqlite3_bind_int64(st, col, (sqlite3_int64)v) == SQLITE_OK ? CPN_OK : CPN_E_DB;
}

static int s_bind_key(sqlite3_stmt *st, int col, const uint8_t key[CPN_PK_LEN])
{
    return sqlite3_bind_blob(st, col, key, CPN_PK_LEN, SQLITE_TRANSIENT) == SQLITE_OK
               ? CPN_OK
               : CPN_E_DB;
}

/* Text fields come from fixed arrays that may lack a NUL: refuse those. */
static int s_bind_name(sqlite3_stmt *st, int col, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        return CPN_E_INVAL;
    return sqlite3_bind_text(st, col, s, (int)n, SQLITE_TRANSIENT) == SQLITE_OK ? CPN_OK
                                                                                : CPN_E_DB;
}

static uint64_t s_col_u64(sqlite3_stmt *st, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    return v < 0 ? 0 : (uint64_t)v;
}

static void s_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!t)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

static void s_col_key(sqlite3_stmt *st, int col, uint8_t key[CPN_PK_LEN])
{
    const void *b = sqlite3_column_blob(st, col);
    memset(key, 0, CPN_PK_LEN);
    if (b && sqlite3_column_bytes(st, col) == CPN_PK_LEN)
        memcpy(key, b, CPN_PK_LEN);
}

/* Columns in S_LEASE_COLS order. */
static void s_row_lease(sqlite3_stmt *st, ledger_lease_t *l)
{
    memset(l, 0, sizeof *l);
    s_col_text(st, 0, l->lease_id, sizeof l->lease_id);
    s_col_key(st, 1, l->tenant);
    s_col_key(st, 2, l->peer);
    s_col_text(st, 3, l->package, sizeof l->package);
    l->units = (uint32_t)s_col_u64(st, 4);
    l->accelerators = s_col_u64(st, 5);
    l->price = s_col_u64(st, 6);
    l->start_ms = s_col_u64(st, 7);
    l->end_ms = s_col_u64(st, 8);
    s_col_text(st, 9, l->request_id, sizeof l->request_id);
    s_col_text(st, 10, l->state, sizeof l->state);
    l->renewals = (uint32_t)s_col_u64(st, 11);
}

static int s_col_blob_copy(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
    const void *b = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    *out = NULL;
    if (len)
        *len = 0;
    if (!b || n <= 0)
        return CPN_OK;
    *out = malloc((size_t)n);
    if (!*out)
        return CPN_E_NOMEM;
    memcpy(*out, b, (size_t)n);
    if (len)
        *len = (size_t)n;
    return CPN_OK;
}

static int s_schema_init(ledger_t *self)
{
    int r;
    int version = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return s_db_error(self, "user_version");
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0)
        return s_db_error(self, "user_version");
    if (version > S_SCHEMA_VERSION) {
        log_error(S_LOG, "ledger schema version %d is newer than this broker's (%d)", version,
                  S_SCHEMA_VERSION);
        return CPN_E_DB;
    }
    if (version == S_SCHEMA_VERSION)
        return CPN_OK;
    if ((r = s_exec(self, "BEGIN IMMEDIATE")) != CPN_OK)
        return r;
    if ((r = s_exec(self, s_schema)) != CPN_OK ||
        (r = s_exec(self, "PRAGMA user_version = 3")) != CPN_OK) {
        (void)s_exec(self, "ROLLBACK");
        return r;
    }
    return s_exec(self, "COMMIT");
}

int ledger_open(const char *path, ledger_t **out)
{
    int r = CPN_OK;
    ledger_t *self = NULL;
    sqlite3_stmt *st = NULL;
    if (!path || !out)
        return CPN_E_INVAL;
    *out = NULL;
    self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    ledger_set_audit_max(self, LEDGER_AUDIT_MAX_DEFAULT);
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        log_error(S_LOG, "cannot open %s: %s", path,
                  self->db ? sqlite3_errmsg(self->db) : "out of memory");
        r = CPN_E_DB;
        goto out;
    }
    sqlite3_busy_timeout(self->db, S_BUSY_TIMEOUT_MS);
    /* journal_mode answers with the mode in force: a file system that cannot do WAL says
     * so here rather than silently running another mode. */
    if (sqlite3_prepare_v2(self->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        r = s_db_error(self, "journal_mode WAL");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* FULL: each COMMIT syncs the log, so a checkpoint has only the database pages to write
     * and sync; with NORMAL it also flushed all the log written since the last one (~4 MB
     * at 1,000 pages), stalling the event loop ~11 ms every ~110 commits. Smaller
     * checkpoints (S_CKPT_PAGES) keep each stall short. In scripts/bench/e2e, with the 5 ms
     * transactions of server.c: p99 at half of saturation 22 -> 10 ms (docs/BENCHMARKS.md). */
    if ((r = s_exec(self, "PRAGMA synchronous = FULL")) != CPN_OK ||
        (r = s_exec(self, "PRAGMA wal_autocheckpoint = " S_CKPT_PAGES)) != CPN_OK ||
        (r = s_schema_init(self)) != CPN_OK)
        goto out;
    for (int i = 0; i < S__COUNT; i++) {
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->st[i],
                               NULL) != SQLITE_OK) {
            r = s_db_error(self, s_sql[i]);
            goto out;
        }
    }
    *out = self;
    self = NULL;
out:
    sqlite3_finalize(st);
    ledger_destroy(&self);
    return r;
}

void ledger_destroy(ledger_t **self_p)
{
    ledger_t *self;
    if (!self_p || !*self_p)
        return;
    self = *self_p;
    if (self->in_tx)
        (void)ledger_rollback(self);
    for (int i = 0; i < S__COUNT; i++)
        sqlite3_finalize(self->st[i]);
    if (self->db && sqlite3_close(self->db) != SQLITE_OK)
        log_error(S_LOG, "close: %s", sqlite3_errmsg(self->db));
    free(self);
    *self_p = NULL;
}

void ledger_set_audit_max(ledger_t *self, uint64_t audit_max)
{
    if (!self)
        return;
    if (audit_max < 1)
        audit_max = 1;
    if (audit_max > (uint64_t)INT64_MAX)
        audit_max = (uint64_t)INT64_MAX;
    self->audit_max = audit_max;
    self->prune_batch = audit_max / S_PRUNE_DIV ? audit_max / S_PRUNE_DIV : 1;
}

int ledger_begin(ledger_t *self)
{
    int r;
    if (!self || self->in_tx)
        return CPN_E_INVAL;
    if ((r = s_exec(self, "BEGIN IMMEDIATE")) == CPN_OK)
        self->in_tx = true;
    return r;
}

int ledger_commit(ledger_t *self)
{
    int r;
    if (!self || !self->in_tx)
        return CPN_E_INVAL;
    r = s_exec(self, "COMMIT");
    if (r != CPN_OK) {
        /* A failed COMMIT may leave the transaction open; end it either way. */
        if (!sqlite3_get_autocommit(self->db))
            (void)s_exec(self, "ROLLBACK");
        s_usage_drop_all(self);
    }
    self->in_tx = false;
    return r;
}

int ledger_rollback(ledger_t *self)
{
    int r;
    if (!self || !self->in_tx)
        return CPN_E_INVAL;
    r = sqlite3_get_autocommit(self->db) ? CPN_OK : s_exec(self, "ROLLBACK");
    self->in_tx = false;
    s_usage_drop_all(self);
    return r;
}

/* Step a statement that returns no row. */
static int s_step_done(ledger_t *self, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int r = rc == SQLITE_DONE ? CPN_OK : s_db_error(self, what);
    sqlite3_reset(st);
    return r;
}

int ledger_record_grant(ledger_t *self, const ledger_lease_t *l, const uint8_t *grant,
                        size_t grant_len)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !l || (!grant && grant_len) || grant_len > (size_t)INT32_MAX)
        return CPN_E_INVAL;
    st = s_stmt(self, S_INSERT);
    if ((r = s_bind_name(st, 1, l->lease_id, sizeof l->lease_id)) != CPN_OK ||
        (r = s_bind_key(st, 2, l->tenant)) != CPN_OK ||
        (r = s_bind_key(st, 3, l->peer)) != CPN_OK ||
        (r = s_bind_name(st, 4, l->package, sizeof l->package)) != CPN_OK ||
        (r = s_bind_u64(st, 5, l->units)) != CPN_OK ||
        (r = s_bind_u64(st, 6, l->accelerators)) != CPN_OK ||
        (r = s_bind_u64(st, 7, l->price)) != CPN_OK ||
        (r = s_bind_u64(st, 8, l->start_ms)) != CPN_OK ||
        (r = s_bind_u64(st, 9, l->end_ms)) != CPN_OK ||
        (r = s_bind_name(st, 10, l->request_id, sizeof l->request_id)) != CPN_OK ||
        (r = s_bind_u64(st, 11, l->renewals)) != CPN_OK)
        goto out;
    if (l->lease_id[0] == '\0') {
        r = CPN_E_INVAL;
        goto out;
    }
    if (grant_len &&
        sqlite3_bind_blob(st, 12, grant, (int)grant_len, SQLITE_STATIC) != SQLITE_OK) {
        r = s_db_error(self, "bind grant");
        goto out;
    }
    r = s_step_done(self, st, "record grant");
    if (r == CPN_OK && sqlite3_changes(self->db) == 1)
        s_usage_add(self, l); /* 0 changes: the lease was there already */
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* SQLITE_STATIC: drop the pointer to the caller's frame */
    return r;
}

/* After an UPDATE changed nothing: why? */
static int s_missing_or(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                        int if_exists)
{
    int r;
    sqlite3_stmt *st = s_stmt(self, S_EXISTS);
    if ((r = s_bind_key(st, 1, peer)) != CPN_OK ||
        (r = s_bind_name(st, 2, lease_id, CPN_NAME_MAX)) != CPN_OK)
        goto out;
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        r = if_exists;
        break;
    case SQLITE_DONE:
        r = CPN_E_NO_LEASE;
        break;
    default:
        r = s_db_error(self, "lease lookup");
    }
out:
    sqlite3_reset(st);
    return r;
}

int ledger_renew(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                 uint64_t end_ms, uint32_t renewals)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !peer || !lease_id)
        return CPN_E_INVAL;
    st = s_stmt(self, S_RENEW);
    if ((r = s_bind_key(st, 1, peer)) != CPN_OK ||
        (r = s_bind_name(st, 2, lease_id, CPN_NAME_MAX)) != CPN_OK ||
        (r = s_bind_u64(st, 3, end_ms)) != CPN_OK || (r = s_bind_u64(st, 4, renewals)) != CPN_OK ||
        (r = s_step_done(self, st, "renew")) != CPN_OK)
        return r;
    s_usage_drop_all(self);
    if (sqlite3_changes(self->db) == 0)
        return s_missing_or(self, peer, lease_id, CPN_E_EXPIRED);
    return CPN_OK;
}

int ledger_release(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                   uint64_t now_ms)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !peer || !lease_id)
        return CPN_E_INVAL;
    st = s_stmt(self, S_RELEASE);
    if ((r = s_bind_key(st, 1, peer)) != CPN_OK ||
        (r = s_bind_name(st, 2, lease_id, CPN_NAME_MAX)) != CPN_OK ||
        (r = s_bind_u64(st, 3, now_ms)) != CPN_OK ||
        (r = s_step_done(self, st, "release")) != CPN_OK)
        return r;
    s_usage_drop_all(self);
    if (sqlite3_changes(self->db) == 0)
        return s_missing_or(self, peer, lease_id, CPN_E_EXPIRED);
    return CPN_OK;
}

int ledger_revoke(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                  uint64_t effective_ms)
{
    int r;
    sqlite3_stmt *st = NULL;
    if (!self || !peer || !lease_id)
        return CPN_E_INVAL;
    if (sqlite3_prepare_v2(self->db,
                           "UPDATE leases SET state = 'revoked', end_ms = MIN(end_ms, ?3) "
                           "WHERE peer = ?1 AND lease_id = ?2 AND state = 'active'",
                           -1, &st, NULL) != SQLITE_OK)
        return s_db_error(self, "prepare revoke");
    if ((r = s_bind_key(st, 1, peer)) == CPN_OK &&
        (r = s_bind_name(st, 2, lease_id, CPN_NAME_MAX)) == CPN_OK &&
        (r = s_bind_u64(st, 3, effective_ms)) == CPN_OK)
        r = s_step_done(self, st, "revoke");
    sqlite3_finalize(st);
    if (r != CPN_OK)
        return r;
    s_usage_drop_all(self);
    if (sqlite3_changes(self->db) == 0)
        return s_missing_or(self, peer, lease_id, CPN_E_EXPIRED);
    return CPN_OK;
}

sqlite3 *ledger_sqlite(ledger_t *self)
{
    return self->db;
}

int ledger_expire(ledger_t *self, uint64_t now_ms, uint64_t *n_out)
{
    int r;
    sqlite3_stmt *st;
    if (n_out)
        *n_out = 0;
    if (!self)
        return CPN_E_INVAL;
    st = s_stmt(self, S_EXPIRE);
    if ((r = s_bind_u64(st, 1, now_ms)) != CPN_OK ||
        (r = s_step_done(self, st, "expire")) != CPN_OK)
        return r;
    /* An entry counting a lease now marked expired is exact only for times before its end;
     * an ask dated earlier than this expiry would disagree with the table: drop those. */
    if (sqlite3_changes(self->db) > 0)
        for (size_t i = 0; i < S_USAGE_SLOTS; i++)
            if (self->usage[i].until_ms <= now_ms)
                self->usage[i].valid = false;
    if (n_out)
        *n_out = (uint64_t)sqlite3_changes(self->db);
    return CPN_OK;
}

int ledger_quota_usage(ledger_t *self, const uint8_t tenant[CPN_PK_LEN], uint64_t now_ms,
                       ledger_usage_t *out)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !tenant || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    s_usage_slot_t *u = s_usage_slot(self, tenant);
    if (u->valid && memcmp(u->tenant, tenant, CPN_PK_LEN) == 0 && u->since_ms <= now_ms &&
        now_ms < u->until_ms) {
        *out = u->usage;
        return CPN_OK;
    }
    st = s_stmt(self, S_USAGE);
    if ((r = s_bind_key(st, 1, tenant)) != CPN_OK || (r = s_bind_u64(st, 2, now_ms)) != CPN_OK)
        goto out;
    /* SUM raises "integer overflow" rather than wrapping: that lands here as CPN_E_DB. */
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, "quota usage");
        goto out;
    }
    out->accelerators = s_col_u64(st, 0);
    out->units = s_col_u64(st, 1);
    out->spend_rate = s_col_u64(st, 2);
    u->valid = true;
    memcpy(u->tenant, tenant, CPN_PK_LEN);
    u->usage = *out;
    u->since_ms = now_ms;
    u->until_ms = sqlite3_column_type(st, 3) == SQLITE_NULL ? UINT64_MAX : s_col_u64(st, 3);
out:
    sqlite3_reset(st);
    return r;
}

/* Step a lookup that yields at most one lease (with its grant in column 12). */
static int s_one_lease(ledger_t *self, sqlite3_stmt *st, ledger_lease_t *out,
                       uint8_t **grant_p, size_t *grant_len)
{
    int r = CPN_OK;
    if (grant_p)
        *grant_p = NULL;
    if (grant_len)
        *grant_len = 0;
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        if (out)
            s_row_lease(st, out);
        if (grant_p)
            r = s_col_blob_copy(st, 12, grant_p, grant_len);
        break;
    case SQLITE_DONE:
        r = CPN_E_NO_LEASE;
        break;
    default:
        r = s_db_error(self, "lease lookup");
    }
    sqlite3_reset(st);
    return r;
}

struct sqlite3 *ledger_db(ledger_t *self)
{
    return self->db;
}

int ledger_get(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
               ledger_lease_t *out, uint8_t **grant_p, size_t *grant_len)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !peer || !lease_id)
        return CPN_E_INVAL;
    st = s_stmt(self, S_GET);
    if ((r = s_bind_key(st, 1, peer)) != CPN_OK ||
        (r = s_bind_name(st, 2, lease_id, CPN_NAME_MAX)) != CPN_OK)
        return r;
    return s_one_lease(self, st, out, grant_p, grant_len);
}

int ledger_find_request(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                        const char *request_id, ledger_lease_t *out, uint8_t **grant_p,
                        size_t *grant_len)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !tenant || !request_id)
        return CPN_E_INVAL;
    st = s_stmt(self, S_FIND_REQUEST);
    if ((r = s_bind_key(st, 1, tenant)) != CPN_OK ||
        (r = s_bind_name(st, 2, request_id, CPN_NAME_MAX)) != CPN_OK)
        return r;
    return s_one_lease(self, st, out, grant_p, grant_len);
}

int ledger_list(ledger_t *self, const uint8_t *tenant, bool active_only, uint64_t now_ms,
                size_t max, ledger_lease_cb cb, void *arg)
{
    /* The first page of the keyset walk, with no cursor: one statement for both. */
    return ledger_list_page(self, tenant, active_only, now_ms, NULL, max, cb, arg);
}

int ledger_list_page(ledger_t *self, const uint8_t *tenant, bool active_only, uint64_t now_ms,
                     const ledger_cursor_t *after, size_t max, ledger_lease_cb cb, void *arg)
{
    int r = CPN_OK;
    int rc;
    sqlite3_stmt *st;
    ledger_lease_t l;
    if (!self || !cb || (after && after->lease_id[sizeof after->lease_id - 1] != '\0'))
        return CPN_E_INVAL;
    st = s_stmt(self, S_LIST_PAGE);
    if ((tenant && (r = s_bind_key(st, 1, tenant)) != CPN_OK) ||
        (r = s_bind_u64(st, 2, active_only ? 1 : 0)) != CPN_OK ||
        (r = s_bind_u64(st, 3, now_ms)) != CPN_OK)
        goto out;
    if (after && ((r = s_bind_u64(st, 5, after->start_ms)) != CPN_OK ||
                  (r = s_bind_key(st, 6, after->peer)) != CPN_OK ||
                  sqlite3_bind_text(st, 7, after->lease_id, -1, SQLITE_TRANSIENT) != SQLITE_OK)) {
        r = r != CPN_OK ? r : s_db_error(self, "bind cursor");
        goto out;
    }
    if (sqlite3_bind_int64(st, 4, max && max <= (size_t)INT64_MAX ? (sqlite3_int64)max : -1) !=
        SQLITE_OK) {
        r = s_db_error(self, "bind limit");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s_row_lease(st, &l);
        if (cb(&l, arg) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE)
        r = s_db_error(self, "list leases");
out:
    sqlite3_reset(st);
    return r;
}

int ledger_counts(ledger_t *self, uint64_t now_ms, ledger_counts_t *out)
{
    int r = CPN_OK;
    sqlite3_stmt *st;
    if (!self || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    st = s_stmt(self, S_COUNT_ALL);
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, "count leases");
        goto out;
    }
    out->leases = s_col_u64(st, 0);
    sqlite3_reset(st);
    st = s_stmt(self, S_COUNT_ACTIVE);
    if ((r = s_bind_u64(st, 1, now_ms)) != CPN_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, "count active");
        goto out;
    }
    out->active = s_col_u64(st, 0);
    out->active_units = s_col_u64(st, 1);
    out->active_accelerators = s_col_u64(st, 2);
    out->tenants_active = s_col_u64(st, 3);
    sqlite3_reset(st);
    /* Audit ids are contiguous (rows are only ever deleted from the oldest end), so the
     * count is max - min + 1 without scanning a million rows. */
    st = s_stmt(self, S_AUDIT_BOUNDS);
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, "audit bounds");
        goto out;
    }
    if (sqlite3_column_type(st, 0) != SQLITE_NULL)
        out->audit_rows = s_col_u64(st, 1) - s_col_u64(st, 0) + 1;
out:
    sqlite3_reset(st);
    return r;
}

int ledger_audit(ledger_t *self, uint64_t ts_ms, const char *type,
                 const uint8_t from[CPN_PK_LEN], int verdict, const uint8_t *frame,
                 size_t frame_len)
{
    int r;
    sqlite3_stmt *st;
    sqlite3_int64 id;
    if (!self || !type || !from || (!frame && frame_len) || frame_len > (size_t)INT32_MAX)
        return CPN_E_INVAL;
    st = s_stmt(self, S_AUDIT_INSERT);
    if ((r = s_bind_u64(st, 1, ts_ms)) != CPN_OK ||
        (r = s_bind_name(st, 2, type, 32)) != CPN_OK || (r = s_bind_key(st, 3, from)) != CPN_OK)
        goto out;
    if (sqlite3_bind_int(st, 4, verdict) != SQLITE_OK ||
        (frame_len &&
         sqlite3_bind_blob(st, 5, frame, (int)frame_len, SQLITE_STATIC) != SQLITE_OK)) {
        r = s_db_error(self, "bind audit");
        goto out;
    }
    if ((r = s_step_done(self, st, "audit")) != CPN_OK)
        goto out;
    id = sqlite3_last_insert_rowid(self->db);
    /* Prune once per batch: one DELETE of many rows costs far less than one per insert. */
    if (id > 0 && (uint64_t)id % self->prune_batch == 0 && (uint64_t)id > self->audit_max) {
        sqlite3_stmt *pr = s_stmt(self, S_AUDIT_PRUNE);
        if ((r = s_bind_u64(pr, 1, (uint64_t)id - self->audit_max)) == CPN_OK)
            r = s_step_done(self, pr, "audit prune");
    }
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

static int s_audit_row(ledger_t *self, sqlite3_int64 id, ledger_audit_row_t *row)
{
    int r = CPN_OK;
    sqlite3_stmt *st = s_stmt(self, S_AUDIT_ROW);
    memset(row, 0, sizeof *row);
    if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, "audit row");
        goto out;
    }
    row->id = sqlite3_column_int64(st, 0);
    row->ts_ms = s_col_u64(st, 1);
    s_col_text(st, 2, row->type, sizeof row->type);
    s_col_key(st, 3, row->from);
    row->verdict = sqlite3_column_int(st, 4);
    row->frame_len = (size_t)s_col_u64(st, 5);
out:
    sqlite3_reset(st);
    return r;
}

int ledger_audit_bounds(ledger_t *self, ledger_audit_row_t *oldest, ledger_audit_row_t *newest)
{
    int r = CPN_OK;
    sqlite3_int64 lo, hi;
    sqlite3_stmt *st;
    if (!self || !oldest || !newest)
        return CPN_E_INVAL;
    st = s_stmt(self, S_AUDIT_BOUNDS);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return s_db_error(self, "audit bounds");
    }
    if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
        sqlite3_reset(st);
        return CPN_E_INVAL;
    }
    lo = sqlite3_column_int64(st, 0);
    hi = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if ((r = s_audit_row(self, lo, oldest)) == CPN_OK)
        r = s_audit_row(self, hi, newest);
    return r;
}

/* ---- intents ---- */

static bool s_key_is_zero(const uint8_t key[CPN_PK_LEN])
{
    uint8_t acc = 0;
    for (size_t i = 0; i < CPN_PK_LEN; i++)
        acc |= key[i];
    return acc == 0;
}

int ledger_intent_add(ledger_t *self, const ledger_intent_t *in)
{
    int r;
    sqlite3_stmt *st;
    if (!self || !in || in->request_id[0] == '\0')
        return CPN_E_INVAL;
    st = s_stmt(self, S_INTENT_ADD);
    if ((r = s_bind_key(st, 1, in->tenant)) != CPN_OK ||
        (r = s_bind_name(st, 2, in->request_id, sizeof in->request_id)) != CPN_OK ||
        (r = s_bind_key(st, 3, in->peer)) != CPN_OK ||
        (r = s_bind_name(st, 4, in->package, sizeof in->package)) != CPN_OK ||
        (r = s_bind_u64(st, 5, in->units)) != CPN_OK ||
        (r = s_bind_u64(st, 6, in->deadline_ms)) != CPN_OK ||
        (r = s_bind_u64(st, 7, in->duration_s)) != CPN_OK)
        goto out;
    if (in->duration_s > (uint64_t)INT64_MAX / 1000 ||
        in->deadline_ms > (uint64_t)INT64_MAX - in->duration_s * 1000) {
        r = CPN_E_INVAL; /* deadline + duration must fit the expiry's arithmetic */
        goto out;
    }
    if (!s_key_is_zero(in->via) && (r = s_bind_key(st, 8, in->via)) != CPN_OK)
        goto out;
    r = s_step_done(self, st, "intent add");
out:
    sqlite3_reset(st);
    return r;
}

int ledger_intents(ledger_t *self, const uint8_t tenant[CPN_PK_LEN], const char *request_id,
                   ledger_intent_t *out, size_t cap, size_t *n_out)
{
    int r, rc;
    size_t n = 0;
    sqlite3_stmt *st;
    if (n_out)
        *n_out = 0;
    if (!self || !tenant || !request_id || (!out && cap) || !n_out)
        return CPN_E_INVAL;
    st = s_stmt(self, S_INTENT_LIST);
    if ((r = s_bind_key(st, 1, tenant)) != CPN_OK ||
        (r = s_bind_name(st, 2, request_id, CPN_NAME_MAX)) != CPN_OK)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n >= cap) {
            n++; /* counted, not copied */
            continue;
        }
        ledger_intent_t *in = &out[n++];
        memset(in, 0, sizeof *in);
        s_col_key(st, 0, in->tenant);
        s_col_text(st, 1, in->request_id, sizeof in->request_id);
        s_col_key(st, 2, in->peer);
        s_col_text(st, 3, in->package, sizeof in->package);
        in->units = (uint32_t)s_col_u64(st, 4);
        in->claims = (uint32_t)s_col_u64(st, 5);
        in->deadline_ms = s_col_u64(st, 6);
        in->duration_s = s_col_u64(st, 7);
        if (sqlite3_column_type(st, 8) == SQLITE_BLOB)
            s_col_key(st, 8, in->via);
    }
    if (rc != SQLITE_DONE)
        r = s_db_error(self, "intent list");
    *n_out = n;
out:
    sqlite3_reset(st);
    return r;
}

int ledger_intent_resolve(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                          const char *request_id, const uint8_t peer[CPN_PK_LEN])
{
    int r;
    sqlite3_stmt *st;
    if (!self || !tenant || !request_id || !peer)
        return CPN_E_INVAL;
    st = s_stmt(self, S_INTENT_DEL);
    if ((r = s_bind_key(st, 1, tenant)) != CPN_OK ||
        (r = s_bind_name(st, 2, request_id, CPN_NAME_MAX)) != CPN_OK ||
        (r = s_bind_key(st, 3, peer)) != CPN_OK)
        goto out;
    r = s_step_done(self, st, "intent resolve");
out:
    sqlite3_reset(st);
    return r;
}

int ledger_intent_expire(ledger_t *self, uint64_t before_ms, uint64_t *n_out)
{
    int r;
    sqlite3_stmt *st;
    if (n_out)
        *n_out = 0;
    if (!self)
        return CPN_E_INVAL;
    st = s_stmt(self, S_INTENT_EXPIRE);
    if ((r = s_bind_u64(st, 1, before_ms)) != CPN_OK ||
        (r = s_step_done(self, st, "intent expire")) != CPN_OK)
        return r;
    if (n_out)
        *n_out = (uint64_t)sqlite3_changes(self->db);
    return CPN_OK;
}

int ledger_intent_count(ledger_t *self, uint64_t *n_out)
{
    int r = CPN_OK;
    sqlite3_stmt *st;
    if (!self || !n_out)
        return CPN_E_INVAL;
    st = s_stmt(self, S_INTENT_COUNT);
    if (sqlite3_step(st) == SQLITE_ROW)
        *n_out = s_col_u64(st, 0);
    else
        r = s_db_error(self, "intent count");
    sqlite3_reset(st);
    return r;
}
