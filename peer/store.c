/* store.c - leases and meta in SQLite (WAL, synchronous=FULL), prepared statements kept. */
#include "store.h"
#include "store_db.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

static const char *const s_state_names[] = {"active",       "released", "expired",
                                            "provisioning", "failed",   "revoked"};

const char *peer_lease_state_name(peer_lease_state_t s)
{
    if ((unsigned)s >= sizeof s_state_names / sizeof s_state_names[0])
        return "unknown";
    return s_state_names[s];
}

int peer_lease_state_parse(const char *name)
{
    for (size_t i = 0; i < sizeof s_state_names / sizeof s_state_names[0]; i++)
        if (name && strcmp(name, s_state_names[i]) == 0)
            return (int)i;
    return -1;
}

void peer_lease_row_clear(peer_lease_row_t *row)
{
    if (!row)
        return;
    free(row->frame);
    row->frame = NULL;
    row->frame_len = 0;
}

/* Every statement the store runs, prepared once at open. */
typedef enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_INSERT,
    S_UPDATE,
    S_GET,
    S_GET_REQ,
    S_EXPIRE,
    S_NEXT_END,
    S_USED,
    S_COUNT,
    S_META_GET,
    S_META_SET,
    S_SLICE_PUT,
    S_SLICES,
    S_SLICE_GET,
    S_DRIVEN,
    S__COUNT
} s_stmt_t;

#define S_COLS                                                                                     \
    "lease_id, tenant, request_id, package, units, price, start_ms, end_ms, "                      \
    "state, renewals, frame"
/* What the getters read after S_COLS (s_read_row knows the order). */
#define S_MORE ", op_seq, driver, teardown"

static const char *const s_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT] = "INSERT INTO leases (" S_COLS ", driver, teardown) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_UPDATE] = "UPDATE leases SET end_ms = ?, state = ?, renewals = ?, frame = ?, op_seq = ?, "
                 "teardown = ? WHERE lease_id = ?",
    [S_GET] = "SELECT " S_COLS S_MORE " FROM leases WHERE lease_id = ?",
    [S_GET_REQ] = "SELECT " S_COLS S_MORE " FROM leases WHERE tenant = ? AND request_id = ?",
    /* A lease with a driver keeps its units until the driver tore it down. */
    [S_EXPIRE] = "UPDATE leases SET state = 'expired', teardown = (driver <> '') "
                 "WHERE state = 'active' AND end_ms <= ?",
    [S_NEXT_END] = "SELECT MIN(end_ms) FROM leases WHERE state = 'active'",
    /* Two indexed halves: leases running or being provisioned, and ended ones whose driver
     * has not torn them down yet (a failed grant's units are free at once). */
    [S_USED] = "SELECT package, SUM(units) FROM ("
               "SELECT package, units FROM leases WHERE state IN ('active', 'provisioning') "
               "UNION ALL SELECT package, units FROM leases WHERE teardown = 1 AND "
               "state NOT IN ('active', 'provisioning', 'failed')) "
               "GROUP BY package ORDER BY package",
    [S_COUNT] = "SELECT COUNT(*) FROM leases WHERE state = ?",
    [S_META_GET] = "SELECT v FROM meta WHERE k = ?",
    [S_META_SET] = "INSERT INTO meta (k, v) VALUES (?, ?) "
                   "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    [S_SLICE_PUT] = "INSERT INTO slices (lease_id, package, node, devmask, share, cpu, mem) "
                    "VALUES (?,?,?,?,?,?,?)",
    [S_SLICES] = "SELECT s.package, s.node, s.devmask, s.share, s.cpu, s.mem FROM slices s "
                 "JOIN leases l ON l.lease_id = s.lease_id "
                 /* held exactly when S_USED counts the lease's units */
                 "WHERE l.state IN ('active', 'provisioning') OR (l.teardown = 1 AND "
                 "l.state NOT IN ('active', 'provisioning', 'failed')) "
                 "ORDER BY l.start_ms, s.lease_id",
    [S_SLICE_GET] = "SELECT node, devmask, share, cpu, mem FROM slices WHERE lease_id = ?",
    [S_DRIVEN] = "SELECT " S_COLS S_MORE " FROM leases WHERE driver <> '' AND "
                 "(state IN ('active', 'provisioning') OR teardown = 1) ORDER BY start_ms",
};

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS leases ("
    " lease_id TEXT PRIMARY KEY,"
    " tenant BLOB NOT NULL,"
    " request_id TEXT NOT NULL,"
    " package TEXT NOT NULL,"
    " units INTEGER NOT NULL,"
    " price INTEGER NOT NULL,"
    " start_ms INTEGER NOT NULL,"
    " end_ms INTEGER NOT NULL,"
    " state TEXT NOT NULL,"
    " renewals INTEGER NOT NULL DEFAULT 0,"
    " frame BLOB NOT NULL,"
    " UNIQUE (tenant, request_id));"
    "CREATE INDEX IF NOT EXISTS leases_state_end ON leases (state, end_ms);"
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
    /* where each slice of a shared package sits (issue 16), written in the lease's
     * transaction; a lease's state decides whether its slice is held */
    "CREATE TABLE IF NOT EXISTS slices ("
    " lease_id TEXT PRIMARY KEY REFERENCES leases (lease_id),"
    " package TEXT NOT NULL,"
    " node INTEGER NOT NULL,"
    " devmask INTEGER NOT NULL,"
    " share INTEGER NOT NULL,"
    " cpu INTEGER NOT NULL,"
    " mem INTEGER NOT NULL);";

/* Columns added after the first release: a database made by an older peer lacks them. */
static const char s_has_op_seq[] = "SELECT COUNT(*) FROM pragma_table_info('leases') "
                                   "WHERE name = 'op_seq'";
static const char s_add_op_seq[] = "ALTER TABLE leases ADD COLUMN op_seq INTEGER NOT NULL "
                                   "DEFAULT 0";
static const char s_has_driver[] = "SELECT COUNT(*) FROM pragma_table_info('leases') "
                                   "WHERE name = 'driver'";
static const char s_add_driver[] =
    "ALTER TABLE leases ADD COLUMN driver TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE leases ADD COLUMN teardown INTEGER NOT NULL DEFAULT 0;";
/* The rows the reconciliation and the teardown sweep read (few: ended ones leave it). */
static const char s_index_teardown[] =
    "CREATE INDEX IF NOT EXISTS leases_teardown ON leases (teardown) WHERE teardown = 1";

struct peer_store {
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    bool in_txn;
};

static int s_db_error(peer_store_t *self, const char *what)
{
    log_error("store", "%s: %s", what, sqlite3_errmsg(self->db));
    return CPN_E_DB;
}

/* Run `add` if `has` counts 0 (a column missing): idempotent. */
static int s_add_column(peer_store_t *self, const char *has, const char *add, const char *what)
{
    sqlite3_stmt *st = NULL;
    int r = CPN_E_DB;
    if (sqlite3_prepare_v2(self->db, has, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        r = s_db_error(self, has);
        goto out;
    }
    if (sqlite3_column_int64(st, 0) == 0) {
        if (sqlite3_exec(self->db, add, NULL, NULL, NULL) != SQLITE_OK) {
            r = s_db_error(self, add);
            goto out;
        }
        log_info("store", "added %s (database of an older peer)", what);
    }
    r = CPN_OK;
out:
    sqlite3_finalize(st);
    return r;
}

/* Bring a database of an older peer up to this schema. */
static int s_migrate(peer_store_t *self)
{
    int r;
    if ((r = s_add_column(self, s_has_op_seq, s_add_op_seq, "column leases.op_seq")) != CPN_OK ||
        (r = s_add_column(self, s_has_driver, s_add_driver, "columns leases.driver, teardown")) !=
            CPN_OK)
        return r;
    if (sqlite3_exec(self->db, s_index_teardown, NULL, NULL, NULL) != SQLITE_OK)
        return s_db_error(self, s_index_teardown);
    return CPN_OK;
}

int peer_store_open(const char *path, peer_store_t **out)
{
    int r = CPN_E_DB;
    peer_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        log_error("store", "open %s: %s", path,
                  self->db ? sqlite3_errmsg(self->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(self->db, PEER_STORE_BUSY_MS);
    /* WAL: readers do not block the writer; FULL: a commit is on disk when it returns. */
    if (sqlite3_exec(self->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(self->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK) {
        s_db_error(self, path);
        goto out;
    }
    if (s_migrate(self) != CPN_OK)
        goto out;
    for (int i = 0; i < S__COUNT; i++)
        if (sqlite3_prepare_v2(self->db, s_sql[i], -1, &self->st[i], NULL) != SQLITE_OK) {
            s_db_error(self, s_sql[i]);
            goto out;
        }
    r = CPN_OK;
out:
    if (r != CPN_OK)
        peer_store_destroy(&self);
    *out = self;
    return r;
}

void peer_store_destroy(peer_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_store_t *self = *self_p;
    if (self->in_txn)
        peer_store_rollback(self);
    for (int i = 0; i < S__COUNT; i++)
        sqlite3_finalize(self->st[i]);
    sqlite3_close(self->db);
    free(self);
    *self_p = NULL;
}

/* Step a statement that returns no rows, then reset it. */
static int s_exec(peer_store_t *self, s_stmt_t s)
{
    sqlite3_stmt *st = self->st[s];
    int rc = sqlite3_step(st);
    int r = rc == SQLITE_DONE ? CPN_OK : s_db_error(self, s_sql[s]);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_begin(peer_store_t *self)
{
    if (self->in_txn)
        return CPN_E_INTERNAL;
    int r = s_exec(self, S_BEGIN);
    if (r == CPN_OK)
        self->in_txn = true;
    return r;
}

int peer_store_commit(peer_store_t *self)
{
    if (!self->in_txn)
        return CPN_E_INTERNAL;
    int r = s_exec(self, S_COMMIT);
    if (r != CPN_OK) {
        peer_store_rollback(self);
        return r;
    }
    self->in_txn = false;
    return CPN_OK;
}

void peer_store_rollback(peer_store_t *self)
{
    if (!self->in_txn)
        return;
    /* A failed COMMIT may already have rolled back; ROLLBACK then fails harmlessly. */
    if (sqlite3_get_autocommit(self->db) == 0)
        (void)s_exec(self, S_ROLLBACK);
    self->in_txn = false;
}

struct sqlite3 *peer_store_db(peer_store_t *self)
{
    return self->db;
}

bool peer_store_in_txn(const peer_store_t *self)
{
    return self->in_txn;
}

static void s_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

int peer_store_insert(peer_store_t *self, const peer_lease_row_t *row)
{
    sqlite3_stmt *st = self->st[S_INSERT];
    s_bind_text(st, 1, row->lease_id);
    sqlite3_bind_blob(st, 2, row->tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    s_bind_text(st, 3, row->request_id);
    s_bind_text(st, 4, row->package);
    sqlite3_bind_int64(st, 5, row->units);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)row->price);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)row->start_ms);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)row->end_ms);
    s_bind_text(st, 9, peer_lease_state_name(row->state));
    sqlite3_bind_int64(st, 10, row->renewals);
    sqlite3_bind_blob(st, 11, row->frame, (int)row->frame_len, SQLITE_TRANSIENT);
    s_bind_text(st, 12, row->driver);
    sqlite3_bind_int(st, 13, row->teardown ? 1 : 0);
    int rc = sqlite3_step(st);
    int r = CPN_OK;
    if (rc == SQLITE_CONSTRAINT)
        r = CPN_E_CONFLICT;
    else if (rc != SQLITE_DONE)
        r = s_db_error(self, "insert lease");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_update(peer_store_t *self, const peer_lease_row_t *row)
{
    sqlite3_stmt *st = self->st[S_UPDATE];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)row->end_ms);
    s_bind_text(st, 2, peer_lease_state_name(row->state));
    sqlite3_bind_int64(st, 3, row->renewals);
    sqlite3_bind_blob(st, 4, row->frame, (int)row->frame_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)row->op_seq);
    sqlite3_bind_int(st, 6, row->teardown ? 1 : 0);
    s_bind_text(st, 7, row->lease_id);
    int r = s_exec(self, S_UPDATE);
    if (r == CPN_OK && sqlite3_changes(self->db) == 0)
        r = CPN_E_NO_LEASE;
    return r;
}

/* Copy a text column into a fixed buffer; a value that does not fit is a corrupt row. */
static int s_col_text(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (!t || n >= cap)
        return CPN_E_DB;
    memcpy(out, t, n);
    out[n] = '\0';
    return CPN_OK;
}

static int s_read_row(peer_store_t *self, sqlite3_stmt *st, peer_lease_row_t *row)
{
    memset(row, 0, sizeof *row);
    char state[16];
    const void *tenant = sqlite3_column_blob(st, 1);
    int r;
    if ((r = s_col_text(st, 0, row->lease_id, sizeof row->lease_id)) != CPN_OK ||
        (r = s_col_text(st, 2, row->request_id, sizeof row->request_id)) != CPN_OK ||
        (r = s_col_text(st, 3, row->package, sizeof row->package)) != CPN_OK ||
        (r = s_col_text(st, 8, state, sizeof state)) != CPN_OK)
        goto bad;
    if (!tenant || sqlite3_column_bytes(st, 1) != CPN_PK_LEN || peer_lease_state_parse(state) < 0)
        goto bad;
    memcpy(row->tenant, tenant, CPN_PK_LEN);
    row->state = (peer_lease_state_t)peer_lease_state_parse(state);
    row->units = (uint32_t)sqlite3_column_int64(st, 4);
    row->price = (uint64_t)sqlite3_column_int64(st, 5);
    row->start_ms = (uint64_t)sqlite3_column_int64(st, 6);
    row->end_ms = (uint64_t)sqlite3_column_int64(st, 7);
    row->renewals = (uint32_t)sqlite3_column_int64(st, 9);
    const void *frame = sqlite3_column_blob(st, 10);
    size_t n = (size_t)sqlite3_column_bytes(st, 10);
    row->frame = malloc(n ? n : 1);
    if (!row->frame)
        return CPN_E_NOMEM;
    if (n)
        memcpy(row->frame, frame, n);
    row->frame_len = n;
    row->op_seq = (uint64_t)sqlite3_column_int64(st, 11); /* S_MORE, in its order */
    if (s_col_text(st, 12, row->driver, sizeof row->driver) != CPN_OK) {
        peer_lease_row_clear(row);
        goto bad;
    }
    row->teardown = sqlite3_column_int(st, 13) != 0;
    return CPN_OK;
bad:
    log_error("store", "corrupt lease row");
    (void)self;
    return CPN_E_DB;
}

/* Step a prepared lookup: one row or CPN_E_NO_LEASE. */
static int s_get(peer_store_t *self, s_stmt_t s, peer_lease_row_t *row)
{
    sqlite3_stmt *st = self->st[s];
    int rc = sqlite3_step(st);
    int r;
    if (rc == SQLITE_ROW)
        r = s_read_row(self, st, row);
    else if (rc == SQLITE_DONE)
        r = CPN_E_NO_LEASE;
    else
        r = s_db_error(self, s_sql[s]);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_get(peer_store_t *self, const char *lease_id, peer_lease_row_t *row)
{
    s_bind_text(self->st[S_GET], 1, lease_id);
    return s_get(self, S_GET, row);
}

int peer_store_get_by_request(peer_store_t *self, const uint8_t tenant[CPN_PK_LEN],
                              const char *request_id, peer_lease_row_t *row)
{
    sqlite3_stmt *st = self->st[S_GET_REQ];
    sqlite3_bind_blob(st, 1, tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    s_bind_text(st, 2, request_id);
    return s_get(self, S_GET_REQ, row);
}

int peer_store_expire(peer_store_t *self, uint64_t now_ms, size_t *n)
{
    sqlite3_bind_int64(self->st[S_EXPIRE], 1, (sqlite3_int64)now_ms);
    int r = s_exec(self, S_EXPIRE);
    if (n)
        *n = r == CPN_OK ? (size_t)sqlite3_changes(self->db) : 0;
    return r;
}

int peer_store_next_end(peer_store_t *self, uint64_t *end_ms, bool *found)
{
    sqlite3_stmt *st = self->st[S_NEXT_END];
    int rc = sqlite3_step(st);
    int r = CPN_OK;
    *found = false;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *end_ms = (uint64_t)sqlite3_column_int64(st, 0);
            *found = true;
        }
    } else if (rc != SQLITE_DONE) {
        r = s_db_error(self, s_sql[S_NEXT_END]);
    }
    sqlite3_reset(st);
    return r;
}

int peer_store_used(peer_store_t *self, int (*fn)(const char *, uint64_t, void *), void *arg)
{
    sqlite3_stmt *st = self->st[S_USED];
    int r = CPN_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *pkg = (const char *)sqlite3_column_text(st, 0);
        sqlite3_int64 units = sqlite3_column_int64(st, 1);
        if ((r = fn(pkg ? pkg : "", units > 0 ? (uint64_t)units : 0, arg)) != 0)
            break;
    }
    if (r == CPN_OK && rc != SQLITE_DONE)
        r = s_db_error(self, s_sql[S_USED]);
    sqlite3_reset(st);
    return r;
}

int peer_store_slice_put(peer_store_t *self, const char *lease_id, const char *package,
                         const peer_slice_t *sl)
{
    if (!self->in_txn)
        return CPN_E_INTERNAL;
    sqlite3_stmt *st = self->st[S_SLICE_PUT];
    s_bind_text(st, 1, lease_id);
    s_bind_text(st, 2, package);
    sqlite3_bind_int64(st, 3, sl->node);
    sqlite3_bind_int64(st, 4, sl->devmask);
    sqlite3_bind_int64(st, 5, sl->share);
    sqlite3_bind_int64(st, 6, sl->cpu);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)sl->mem);
    return s_exec(self, S_SLICE_PUT);
}

int peer_store_slice_get(peer_store_t *self, const char *lease_id, peer_slice_t *sl, bool *found)
{
    sqlite3_stmt *st = self->st[S_SLICE_GET];
    int r = CPN_OK, rc;
    s_bind_text(st, 1, lease_id);
    *found = false;
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *sl = (peer_slice_t){
            .node = (uint32_t)sqlite3_column_int64(st, 0),
            .devmask = (uint32_t)sqlite3_column_int64(st, 1),
            .share = (uint32_t)sqlite3_column_int64(st, 2),
            .cpu = (uint32_t)sqlite3_column_int64(st, 3),
            .mem = (uint64_t)sqlite3_column_int64(st, 4),
        };
        *found = true;
    } else if (rc != SQLITE_DONE) {
        r = s_db_error(self, s_sql[S_SLICE_GET]);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_slices(peer_store_t *self,
                      int (*fn)(const char *package, const peer_slice_t *sl, void *arg), void *arg)
{
    sqlite3_stmt *st = self->st[S_SLICES];
    int r = CPN_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *pkg = (const char *)sqlite3_column_text(st, 0);
        peer_slice_t sl = {
            .node = (uint32_t)sqlite3_column_int64(st, 1),
            .devmask = (uint32_t)sqlite3_column_int64(st, 2),
            .share = (uint32_t)sqlite3_column_int64(st, 3),
            .cpu = (uint32_t)sqlite3_column_int64(st, 4),
            .mem = (uint64_t)sqlite3_column_int64(st, 5),
        };
        if ((r = fn(pkg ? pkg : "", &sl, arg)) != 0)
            break;
    }
    if (r == CPN_OK && rc != SQLITE_DONE)
        r = s_db_error(self, s_sql[S_SLICES]);
    sqlite3_reset(st);
    return r;
}

int peer_store_each_driven(peer_store_t *self, int (*fn)(const peer_lease_row_t *, void *),
                           void *arg)
{
    sqlite3_stmt *st = self->st[S_DRIVEN];
    int r = CPN_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        peer_lease_row_t row;
        if ((r = s_read_row(self, st, &row)) != CPN_OK)
            break;
        r = fn(&row, arg);
        peer_lease_row_clear(&row);
        if (r != 0)
            break;
    }
    if (r == CPN_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = s_db_error(self, s_sql[S_DRIVEN]);
    sqlite3_reset(st);
    return r;
}

int peer_store_count(peer_store_t *self, peer_lease_state_t state, uint64_t *n)
{
    sqlite3_stmt *st = self->st[S_COUNT];
    s_bind_text(st, 1, peer_lease_state_name(state));
    int r = CPN_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = s_db_error(self, s_sql[S_COUNT]);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_meta_get(peer_store_t *self, const char *k, uint64_t *v, bool *found)
{
    sqlite3_stmt *st = self->st[S_META_GET];
    s_bind_text(st, 1, k);
    int rc = sqlite3_step(st);
    int r = CPN_OK;
    *found = false;
    if (rc == SQLITE_ROW) {
        *v = (uint64_t)sqlite3_column_int64(st, 0);
        *found = true;
    } else if (rc != SQLITE_DONE) {
        r = s_db_error(self, s_sql[S_META_GET]);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int peer_store_meta_set(peer_store_t *self, const char *k, uint64_t v)
{
    sqlite3_stmt *st = self->st[S_META_SET];
    s_bind_text(st, 1, k);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
    return s_exec(self, S_META_SET);
}

sqlite3 *peer_store_sqlite(peer_store_t *self)
{
    return self->db;
}
