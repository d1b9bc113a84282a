/* notice_store.c - notices and drains in the store's SQLite file (notice_store.h). Statements
 * are prepared per call: none of this is on the path of a CLAIM. */
#include "notice_store.h"

#include <string.h>

#include "log.h"
#include "store_db.h"

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS notices ("
    " lease_id TEXT PRIMARY KEY,"
    " broker BLOB NOT NULL,"
    " frame BLOB NOT NULL,"
    " until_ms INTEGER NOT NULL,"
    " acked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS drains (package TEXT PRIMARY KEY, since_ms INTEGER NOT NULL);";

static int s_err(sqlite3 *db, const char *what)
{
    log_error("store", "%s: %s", what, sqlite3_errmsg(db));
    return CPN_E_DB;
}

int peer_nstore_init(peer_store_t *store)
{
    sqlite3 *db = peer_store_sqlite(store);
    if (sqlite3_exec(db, s_schema, NULL, NULL, NULL) != SQLITE_OK)
        return s_err(db, "create notices");
    return CPN_OK;
}

/* Prepare sql; CPN_E_DB with a log line if it does not. */
static int s_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return s_err(db, sql);
    return CPN_OK;
}

/* Step a statement that returns no rows, then finalize it. */
static int s_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_err(db, what);
    sqlite3_finalize(st);
    return r;
}

int peer_nstore_put(peer_store_t *store, const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                    const uint8_t *frame, size_t len, uint64_t until_ms)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   "INSERT OR REPLACE INTO notices (lease_id, broker, frame, until_ms, acked) "
                   "VALUES (?1, ?2, ?3, ?4, 0)",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_text(st, 1, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, broker, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, frame, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)until_ms);
    return s_done(db, st, "insert notice");
}

int peer_nstore_ack(peer_store_t *store, const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                    bool *found)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   "UPDATE notices SET acked = 1 WHERE lease_id = ?1 AND broker = ?2 "
                   "AND acked = 0",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_text(st, 1, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, broker, CPN_PK_LEN, SQLITE_TRANSIENT);
    r = s_done(db, st, "ack notice");
    if (found)
        *found = r == CPN_OK && sqlite3_changes(db) > 0;
    return r;
}

int peer_nstore_pending(peer_store_t *store, uint64_t now_ms, size_t max, peer_nstore_fn fn,
                        void *arg)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   "SELECT lease_id, broker, frame FROM notices WHERE acked = 0 AND until_ms > ?1 "
                   "ORDER BY rowid LIMIT ?2",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const void *broker = sqlite3_column_blob(st, 1);
        const void *frame = sqlite3_column_blob(st, 2);
        int n = sqlite3_column_bytes(st, 2);
        if (!id || !broker || sqlite3_column_bytes(st, 1) != CPN_PK_LEN || !frame || n <= 0) {
            log_error("store", "corrupt notice row");
            continue;
        }
        fn(id, broker, frame, (size_t)n, arg);
    }
    if (rc != SQLITE_DONE)
        r = s_err(db, "list notices");
    sqlite3_finalize(st);
    return r;
}

int peer_nstore_count(peer_store_t *store, bool acked, uint64_t *n)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(
        db, acked ? "SELECT COUNT(*) FROM notices WHERE acked = 1" : "SELECT COUNT(*) FROM notices",
        &st);
    if (r != CPN_OK)
        return r;
    if (sqlite3_step(st) == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = s_err(db, "count notices");
    sqlite3_finalize(st);
    return r;
}

int peer_nstore_drain_set(peer_store_t *store, const char *package, bool on, uint64_t now_ms)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   on ? "INSERT OR IGNORE INTO drains (package, since_ms) VALUES (?1, ?2)"
                      : "DELETE FROM drains WHERE package = ?1",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_text(st, 1, package, -1, SQLITE_TRANSIENT);
    if (on)
        sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
    return s_done(db, st, on ? "drain" : "undrain");
}

/* Call fn with column 0 (text) of each row of a one-column query whose ?1 is `bind` (if not
 * NULL) and ?2 is `max` (if not 0). */
static int s_each_text(sqlite3 *db, const char *sql, const char *bind, size_t max,
                       void (*fn)(const char *, void *), void *arg)
{
    sqlite3_stmt *st = NULL;
    int r = s_prep(db, sql, &st), rc;
    if (r != CPN_OK)
        return r;
    if (bind)
        sqlite3_bind_text(st, 1, bind, -1, SQLITE_TRANSIENT);
    if (max)
        sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t)
            fn(t, arg);
    }
    if (rc != SQLITE_DONE)
        r = s_err(db, sql);
    sqlite3_finalize(st);
    return r;
}

int peer_nstore_drains(peer_store_t *store, void (*fn)(const char *package, void *arg), void *arg)
{
    return s_each_text(peer_store_sqlite(store), "SELECT package FROM drains ORDER BY package",
                       NULL, 0, fn, arg);
}

int peer_nstore_active_leases(peer_store_t *store, const char *package, size_t max,
                              void (*fn)(const char *lease_id, void *arg), void *arg)
{
    return s_each_text(peer_store_sqlite(store),
                       "SELECT lease_id FROM leases WHERE state = 'active' AND package = ?1 "
                       "ORDER BY lease_id LIMIT ?2",
                       package, max ? max : 1, fn, arg);
}

int peer_nstore_prune(peer_store_t *store, uint64_t now_ms, uint64_t *n)
{
    sqlite3 *db = peer_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db, "DELETE FROM notices WHERE until_ms <= ?1", &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    r = s_done(db, st, "prune notices");
    if (n)
        *n = r == CPN_OK ? (uint64_t)sqlite3_changes(db) : 0;
    return r;
}
