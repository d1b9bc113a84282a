/* ledger_notice.c - notices in the ledger's SQLite file (ledger_notice.h). Statements are
 * prepared per call: notices are rare, and none of this is on a REQUEST's path. */
#include "ledger_notice.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

#define S_COLS                                                                                     \
    "id, peer, lease_id, tenant, code, reason, effective_ms, units, received_ms, origin, "         \
    "todo, tries, next_ms, replaced_by"

static int s_err(sqlite3 *db, const char *what)
{
    log_error("ledger", "%s: %s", what, sqlite3_errmsg(db));
    return CPN_E_DB;
}

static int s_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? CPN_OK : s_err(db, sql);
}

static int64_t s_i64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static void s_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

static void s_key(sqlite3_stmt *st, int col, uint8_t key[CPN_PK_LEN])
{
    const void *b = sqlite3_column_blob(st, col);
    memset(key, 0, CPN_PK_LEN);
    if (b && sqlite3_column_bytes(st, col) == CPN_PK_LEN)
        memcpy(key, b, CPN_PK_LEN);
}

static uint64_t s_u64(sqlite3_stmt *st, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Columns in S_COLS order. */
static void s_row(sqlite3_stmt *st, ledger_notice_t *n)
{
    memset(n, 0, sizeof *n);
    n->id = sqlite3_column_int64(st, 0);
    s_key(st, 1, n->peer);
    s_text(st, 2, n->lease_id, sizeof n->lease_id);
    s_key(st, 3, n->tenant);
    n->code = (int32_t)sqlite3_column_int64(st, 4);
    s_text(st, 5, n->reason, sizeof n->reason);
    n->effective_ms = s_u64(st, 6);
    n->units = (uint32_t)s_u64(st, 7);
    n->received_ms = s_u64(st, 8);
    s_key(st, 9, n->origin);
    n->todo = (int)sqlite3_column_int64(st, 10);
    n->tries = (uint32_t)s_u64(st, 11);
    n->next_ms = s_u64(st, 12);
    s_text(st, 13, n->replaced_by, sizeof n->replaced_by);
}

int ledger_notice_put(ledger_t *self, const ledger_notice_t *n, const uint8_t *frame, size_t len,
                      bool *fresh)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    if (fresh)
        *fresh = false;
    if (!frame || !len || len > (size_t)INT32_MAX || strnlen(n->lease_id, CPN_NAME_MAX) == 0 ||
        strnlen(n->lease_id, CPN_NAME_MAX) == CPN_NAME_MAX)
        return CPN_E_INVAL;
    int r = s_prep(db,
                   "INSERT INTO notices (peer, lease_id, tenant, code, reason, effective_ms, "
                   "units, received_ms, origin, todo, tries, next_ms, replaced_by, frame) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, '', ?12) "
                   "ON CONFLICT (peer, lease_id) DO NOTHING",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_blob(st, 1, n->peer, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, n->lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, n->tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, n->code);
    sqlite3_bind_text(st, 5, n->reason, (int)strnlen(n->reason, CPN_REASON_MAX), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, s_i64(n->effective_ms));
    sqlite3_bind_int64(st, 7, n->units);
    sqlite3_bind_int64(st, 8, s_i64(n->received_ms));
    sqlite3_bind_blob(st, 9, n->origin, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 10, n->todo);
    sqlite3_bind_int64(st, 11, s_i64(n->next_ms));
    sqlite3_bind_blob(st, 12, frame, (int)len, SQLITE_TRANSIENT);
    r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_err(db, "insert notice");
    sqlite3_finalize(st);
    if (r == CPN_OK && fresh)
        *fresh = sqlite3_changes(db) == 1;
    return r;
}

int ledger_notice_get(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      ledger_notice_t *out, uint8_t **frame_p, size_t *len)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    if (frame_p)
        *frame_p = NULL;
    int r =
        s_prep(db, "SELECT " S_COLS ", frame FROM notices WHERE peer = ?1 AND lease_id = ?2", &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_blob(st, 1, peer, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s_row(st, out);
        const void *b = sqlite3_column_blob(st, 14);
        int n = sqlite3_column_bytes(st, 14);
        if (frame_p && b && n > 0) {
            if (!(*frame_p = malloc((size_t)n)))
                r = CPN_E_NOMEM;
            else {
                memcpy(*frame_p, b, (size_t)n);
                *len = (size_t)n;
            }
        }
    } else
        r = rc == SQLITE_DONE ? CPN_E_NO_LEASE : s_err(db, "get notice");
    sqlite3_finalize(st);
    return r;
}

int ledger_notice_list(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                       const uint8_t origin[CPN_PK_LEN], int64_t after, size_t max,
                       ledger_notice_cb cb, void *arg)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   "SELECT " S_COLS " FROM notices WHERE tenant = ?1 AND origin = ?4 AND id > ?2 "
                   "ORDER BY id LIMIT ?3",
                   &st),
        rc;
    if (r != CPN_OK)
        return r;
    sqlite3_bind_blob(st, 1, tenant, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, s_i64(max ? max : 1));
    sqlite3_bind_blob(st, 4, origin, CPN_PK_LEN, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_notice_t n;
        s_row(st, &n);
        if (cb(&n, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        r = s_err(db, "list notices");
    sqlite3_finalize(st);
    return r;
}

/* A due notice copied out of its row, so the callbacks may write while none is read. */
typedef struct {
    ledger_notice_t n;
    uint8_t *frame;
    size_t len;
} s_due_t;

int ledger_notice_due(ledger_t *self, int todo, uint64_t now_ms, size_t max,
                      ledger_notice_due_cb cb, void *arg)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    s_due_t *due = calloc(max ? max : 1, sizeof *due);
    size_t n = 0;
    if (!due)
        return CPN_E_NOMEM;
    int r = s_prep(db,
                   "SELECT " S_COLS ", frame FROM notices WHERE todo = ?3 AND next_ms <= ?1 "
                   "ORDER BY next_ms, id LIMIT ?2",
                   &st),
        rc = SQLITE_DONE;
    if (r == CPN_OK) {
        sqlite3_bind_int64(st, 1, s_i64(now_ms));
        sqlite3_bind_int64(st, 2, s_i64(max ? max : 1));
        sqlite3_bind_int64(st, 3, todo);
        while (n < (max ? max : 1) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const void *b = sqlite3_column_blob(st, 14);
            int len = sqlite3_column_bytes(st, 14);
            if (!b || len <= 0 || !(due[n].frame = malloc((size_t)len)))
                continue;
            s_row(st, &due[n].n);
            memcpy(due[n].frame, b, (size_t)len);
            due[n++].len = (size_t)len;
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            r = s_err(db, "notices due");
        sqlite3_finalize(st);
    }
    bool stop = false;
    for (size_t i = 0; i < n; i++) {
        if (r == CPN_OK && !stop)
            stop = cb(&due[i].n, due[i].frame, due[i].len, arg) != 0;
        free(due[i].frame);
    }
    free(due);
    return r;
}

int ledger_notice_forwarding(ledger_t *self, const char *lease_id, ledger_notice_t *out,
                             uint8_t **frame_p, size_t *len)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    *frame_p = NULL;
    int r = s_prep(db,
                   "SELECT " S_COLS ", frame FROM notices WHERE lease_id = ?1 AND todo = 1 "
                   "LIMIT 1",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_text(st, 1, lease_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    const void *b = rc == SQLITE_ROW ? sqlite3_column_blob(st, 14) : NULL;
    int n = rc == SQLITE_ROW ? sqlite3_column_bytes(st, 14) : 0;
    if (rc == SQLITE_ROW && b && n > 0 && (*frame_p = malloc((size_t)n)) != NULL) {
        s_row(st, out);
        memcpy(*frame_p, b, (size_t)n);
        *len = (size_t)n;
    } else if (rc == SQLITE_ROW)
        r = CPN_E_NOMEM;
    else
        r = rc == SQLITE_DONE ? CPN_E_NO_LEASE : s_err(db, "notice forwarding");
    sqlite3_finalize(st);
    return r;
}

int ledger_notice_set(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      int todo, uint64_t next_ms, const char *replaced_by)
{
    sqlite3 *db = ledger_sqlite(self);
    sqlite3_stmt *st = NULL;
    int r = s_prep(db,
                   "UPDATE notices SET todo = ?3, next_ms = ?4, "
                   "tries = CASE WHEN ?3 = 0 THEN tries ELSE tries + 1 END, "
                   "replaced_by = COALESCE(?5, replaced_by) WHERE peer = ?1 AND lease_id = ?2",
                   &st);
    if (r != CPN_OK)
        return r;
    sqlite3_bind_blob(st, 1, peer, CPN_PK_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, todo);
    sqlite3_bind_int64(st, 4, s_i64(next_ms));
    if (replaced_by)
        sqlite3_bind_text(st, 5, replaced_by, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 5);
    r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_err(db, "set notice");
    sqlite3_finalize(st);
    return r;
}
