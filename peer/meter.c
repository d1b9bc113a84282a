/* meter.c - USAGE records made in committed transactions, re-sent until taken (meter.h). */
#include "meter.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "log.h"
#include "usage.h"

typedef enum {
    M_ADOPT, /* meter rows for leases above the high-water rowid */
    M_MAXROW,
    M_DUE,
    M_DROP,
    M_INSERT,
    M_UPDATE,
    M_PENDING,
    M_SENT,
    M_ACK,
    M_COUNT,
    M_FRAME,
    M_RECEIPT,
    M_OPEN,
    M__COUNT
} s_stmt_t;

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS meter ("
    " lease_id TEXT PRIMARY KEY, n INTEGER NOT NULL, to_ms INTEGER NOT NULL,"
    " total INTEGER NOT NULL, hash BLOB, done INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS meter_open ON meter (done) WHERE done = 0;"
    "CREATE TABLE IF NOT EXISTS usage ("
    " lease_id TEXT NOT NULL, n INTEGER NOT NULL, frame BLOB NOT NULL,"
    " sent_ms INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0, receipt BLOB,"
    " PRIMARY KEY (lease_id, n));"
    "CREATE INDEX IF NOT EXISTS usage_unacked ON usage (sent_ms) WHERE acked = 0;";

static const char *const s_sql[M__COUNT] = {
    [M_ADOPT] = "INSERT OR IGNORE INTO meter (lease_id, n, to_ms, total, done) "
                "SELECT lease_id, 0, start_ms, 0, 0 FROM leases WHERE rowid > ?",
    [M_MAXROW] = "SELECT COALESCE(MAX(rowid), 0) FROM leases",
    /* Not yet granted ("provisioning") is not metered; a lease whose driver failed before it
     * was ever granted ("failed", nothing metered) never is (M_DROP). A lease not metered
     * yet starts at its start as the lease row says now (provisioning may have moved it). */
    [M_DUE] = "SELECT m.lease_id, m.n, m.to_ms, m.total, m.hash, l.tenant, l.package, l.units, "
              "l.price, l.start_ms, l.end_ms, l.state FROM meter m JOIN leases l "
              "USING (lease_id) WHERE m.done = 0 AND l.state != 'provisioning' AND "
              "NOT (l.state = 'failed' AND m.n = 0) AND (l.state != 'active' OR "
              "l.end_ms <= ?1 OR (CASE WHEN m.n = 0 THEN l.start_ms ELSE m.to_ms END) + ?2 <= ?1) "
              "LIMIT ?3",
    [M_DROP] = "UPDATE meter SET done = 1 WHERE done = 0 AND n = 0 AND lease_id IN "
               "(SELECT lease_id FROM leases WHERE state = 'failed')",
    [M_INSERT] = "INSERT INTO usage (lease_id, n, frame) VALUES (?, ?, ?)",
    [M_UPDATE] = "UPDATE meter SET n = ?, to_ms = ?, total = ?, hash = ?, done = ? "
                 "WHERE lease_id = ?",
    [M_PENDING] = "SELECT lease_id, n, frame FROM usage WHERE acked = 0 AND sent_ms <= ? "
                  "ORDER BY sent_ms, rowid LIMIT ?",
    [M_SENT] = "UPDATE usage SET sent_ms = ? WHERE lease_id = ? AND n = ?",
    [M_ACK] = "UPDATE usage SET acked = 1 WHERE lease_id = ? AND n <= ? AND acked = 0",
    [M_COUNT] = "SELECT COUNT(*), COALESCE(SUM(acked = 0), 0) FROM usage",
    [M_FRAME] = "SELECT frame FROM usage WHERE lease_id = ? AND n = ?",
    [M_RECEIPT] = "UPDATE usage SET receipt = ? WHERE lease_id = ? AND n = ?",
    [M_OPEN] = "SELECT COUNT(*) FROM meter WHERE done = 0",
};

struct peer_meter {
    peer_store_t *store;
    peer_sender_t *sender;
    sqlite3 *db;
    sqlite3_stmt *st[M__COUNT];
    uint64_t interval_ms;
};

/* One due lease, read before anything is written. */
typedef struct {
    cpn_usage_t last; /* n = 0: no record yet */
    uint8_t hash[CPN_USAGE_HASH_LEN];
    uint64_t end_ms;
    bool active;
} s_due_t;

static int s_db(peer_meter_t *self, const char *what)
{
    log_error("meter", "%s: %s", what, sqlite3_errmsg(self->db));
    return CPN_E_DB;
}

static void s_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int peer_meter_new(peer_store_t *store, peer_sender_t *sender, uint64_t interval_ms,
                   peer_meter_t **out)
{
    *out = NULL;
    if (!store || !sender || interval_ms == 0)
        return CPN_E_INVAL;
    peer_meter_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->store = store;
    self->sender = sender;
    self->db = peer_store_db(store);
    self->interval_ms = interval_ms;
    int r = CPN_OK;
    if (sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK)
        r = s_db(self, "meter schema");
    for (int i = 0; r == CPN_OK && i < M__COUNT; i++)
        if (sqlite3_prepare_v2(self->db, s_sql[i], -1, &self->st[i], NULL) != SQLITE_OK)
            r = s_db(self, s_sql[i]);
    if (r != CPN_OK)
        peer_meter_destroy(&self);
    *out = self;
    return r;
}

void peer_meter_destroy(peer_meter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (int i = 0; i < M__COUNT; i++)
        sqlite3_finalize((*self_p)->st[i]);
    free(*self_p);
    *self_p = NULL;
}

static int s_exec(peer_meter_t *self, s_stmt_t s)
{
    int r = sqlite3_step(self->st[s]) == SQLITE_DONE ? CPN_OK : s_db(self, s_sql[s]);
    s_done(self->st[s]);
    return r;
}

/* Give every lease granted since the last tick a meter row (n = 0: nothing metered yet). */
static int s_adopt(peer_meter_t *self)
{
    uint64_t hw = 0, max = 0;
    bool found = false;
    int r = peer_store_meta_get(self->store, PEER_META_METER_ROWID, &hw, &found);
    if (r != CPN_OK)
        return r;
    sqlite3_stmt *st = self->st[M_MAXROW];
    if (sqlite3_step(st) != SQLITE_ROW)
        r = s_db(self, "max rowid");
    else
        max = (uint64_t)sqlite3_column_int64(st, 0);
    s_done(st);
    if (r != CPN_OK || max <= hw)
        return r;
    st = self->st[M_ADOPT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)hw);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = s_db(self, "adopt leases");
    s_done(st);
    return r == CPN_OK ? peer_store_meta_set(self->store, PEER_META_METER_ROWID, max) : r;
}

static void s_text(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

/* Read the due leases (at most PEER_METER_BATCH_MAX) into due[]. */
static int s_read_due(peer_meter_t *self, uint64_t now_ms, s_due_t *due, size_t *n)
{
    sqlite3_stmt *st = self->st[M_DUE];
    int rc, r = CPN_OK;
    *n = 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)self->interval_ms);
    sqlite3_bind_int(st, 3, PEER_METER_BATCH_MAX);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < PEER_METER_BATCH_MAX) {
        s_due_t *d = &due[(*n)++];
        cpn_usage_t *u = &d->last;
        memset(d, 0, sizeof *d);
        s_text(st, 0, u->lease_id, sizeof u->lease_id);
        u->n = (uint32_t)sqlite3_column_int64(st, 1);
        u->to_ms = (uint64_t)sqlite3_column_int64(st, 2);
        u->total = (uint64_t)sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == CPN_USAGE_HASH_LEN)
            memcpy(d->hash, sqlite3_column_blob(st, 4), CPN_USAGE_HASH_LEN);
        if (sqlite3_column_bytes(st, 5) == CPN_PK_LEN)
            memcpy(u->tenant, sqlite3_column_blob(st, 5), CPN_PK_LEN);
        s_text(st, 6, u->package, sizeof u->package);
        u->units = (uint32_t)sqlite3_column_int64(st, 7);
        u->price = (uint64_t)sqlite3_column_int64(st, 8);
        u->start_ms = (uint64_t)sqlite3_column_int64(st, 9);
        d->end_ms = (uint64_t)sqlite3_column_int64(st, 10);
        if (u->n == 0)
            u->to_ms = u->start_ms;
        d->active = strcmp((const char *)sqlite3_column_text(st, 11), "active") == 0;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = s_db(self, "due leases");
    s_done(st);
    return r;
}

/* Make, sign and write the next record of one due lease (inside the tick's transaction). */
static int s_record(peer_meter_t *self, const s_due_t *d, uint64_t now_ms)
{
    bool final = !d->active || d->end_ms <= now_ms;
    uint64_t to = final ? d->end_ms : now_ms;
    if (to < d->last.to_ms) /* an end before what is metered already: nothing more to bill */
        to = d->last.to_ms;
    cpn_usage_t rec;
    uint8_t *frame = NULL, hash[CPN_USAGE_HASH_LEN];
    size_t len = 0;
    int r = cpn_usage_next(d->last.n ? &d->last : NULL, d->hash, &d->last, to, final, &rec);
    if (r != CPN_OK) {
        log_error("meter", "lease %s: record %u cannot be priced", d->last.lease_id, d->last.n + 1);
        return r;
    }
    if ((r = peer_sender_build(self->sender, CPN_MSG_USAGE, &rec, &frame, &len)) != CPN_OK)
        return r;
    cpn_usage_hash(frame, len, hash);
    sqlite3_stmt *st = self->st[M_INSERT];
    sqlite3_bind_text(st, 1, rec.lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, rec.n);
    sqlite3_bind_blob(st, 3, frame, (int)len, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = s_db(self, "insert usage");
    s_done(st);
    free(frame);
    if (r != CPN_OK)
        return r;
    st = self->st[M_UPDATE];
    sqlite3_bind_int64(st, 1, rec.n);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)rec.to_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)rec.total);
    sqlite3_bind_blob(st, 4, hash, sizeof hash, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, final);
    sqlite3_bind_text(st, 6, rec.lease_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = s_db(self, "update meter");
    s_done(st);
    return r;
}

int peer_meter_tick(peer_meter_t *self, uint64_t now_ms, size_t *made)
{
    size_t n = 0, k = 0;
    s_due_t *due = malloc(PEER_METER_BATCH_MAX * sizeof *due);
    int r = due ? peer_store_begin(self->store) : CPN_E_NOMEM;
    if (r != CPN_OK) {
        free(due);
        return r;
    }
    if ((r = s_adopt(self)) == CPN_OK && (r = s_exec(self, M_DROP)) == CPN_OK)
        r = s_read_due(self, now_ms, due, &n);
    for (; r == CPN_OK && k < n; k++)
        r = s_record(self, &due[k], now_ms);
    if (r == CPN_OK)
        r = peer_store_commit(self->store);
    else
        peer_store_rollback(self->store);
    if (r == CPN_OK)
        peer_sender_commit(self->sender);
    else
        peer_sender_rollback(self->sender);
    free(due);
    if (made)
        *made = r == CPN_OK ? n : 0;
    return r;
}

/* One record handed out by peer_meter_pending: read first, then sent and marked, so that the
 * marking never moves rows under the running SELECT. */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint32_t n;
    uint8_t *frame;
    size_t len;
} s_out_t;

static int s_read_pending(peer_meter_t *self, uint64_t before_ms, s_out_t *out, size_t *k)
{
    sqlite3_stmt *st = self->st[M_PENDING];
    int rc = SQLITE_DONE, r = CPN_OK;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)before_ms);
    sqlite3_bind_int(st, 2, PEER_METER_PENDING_MAX);
    while (r == CPN_OK && *k < PEER_METER_PENDING_MAX && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        s_out_t *o = &out[*k];
        s_text(st, 0, o->lease_id, sizeof o->lease_id);
        o->n = (uint32_t)sqlite3_column_int64(st, 1);
        o->len = (size_t)sqlite3_column_bytes(st, 2);
        if (!(o->frame = malloc(o->len ? o->len : 1)))
            r = CPN_E_NOMEM;
        else
            memcpy(o->frame, sqlite3_column_blob(st, 2), o->len);
        (*k)++;
    }
    if (r == CPN_OK && *k < PEER_METER_PENDING_MAX && rc != SQLITE_DONE)
        r = s_db(self, "pending usage");
    s_done(st);
    return r;
}

int peer_meter_pending(peer_meter_t *self, uint64_t now_ms, uint64_t resend_ms,
                       peer_meter_send_fn fn, void *arg, size_t *handed)
{
    s_out_t *out = calloc(PEER_METER_PENDING_MAX, sizeof *out);
    size_t k = 0;
    int r = out ? s_read_pending(self, now_ms >= resend_ms ? now_ms - resend_ms : 0, out, &k)
                : CPN_E_NOMEM;
    sqlite3_stmt *up = self->st[M_SENT];
    for (size_t i = 0; i < k; i++) {
        if (r == CPN_OK && out[i].frame) {
            fn(out[i].lease_id, out[i].n, out[i].frame, out[i].len, arg);
            sqlite3_bind_int64(up, 1, (sqlite3_int64)now_ms);
            sqlite3_bind_text(up, 2, out[i].lease_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(up, 3, out[i].n);
            if (sqlite3_step(up) != SQLITE_DONE)
                r = s_db(self, "mark usage sent");
            s_done(up);
        }
        free(out[i].frame);
    }
    free(out);
    if (handed)
        *handed = r == CPN_OK ? k : 0;
    return r;
}

int peer_meter_acked(peer_meter_t *self, const char *lease_id, uint32_t n)
{
    sqlite3_stmt *st = self->st[M_ACK];
    sqlite3_bind_text(st, 1, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, n);
    int r = sqlite3_step(st) == SQLITE_DONE ? CPN_OK : s_db(self, "ack usage");
    s_done(st);
    return r;
}

int peer_meter_receipt(peer_meter_t *self, const char *lease_id, uint32_t n,
                       const uint8_t hash[CPN_USAGE_HASH_LEN], const uint8_t *receipt,
                       size_t receipt_len, bool *found)
{
    sqlite3_stmt *st = self->st[M_FRAME];
    uint8_t mine[CPN_USAGE_HASH_LEN];
    int rc, r = CPN_OK;
    *found = false;
    sqlite3_bind_text(st, 1, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, n);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cpn_usage_hash(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), mine);
        *found = sodium_memcmp(mine, hash, sizeof mine) == 0;
    } else if (rc != SQLITE_DONE)
        r = s_db(self, "usage frame");
    s_done(st);
    if (r != CPN_OK || !*found)
        return r;
    st = self->st[M_RECEIPT];
    sqlite3_bind_blob(st, 1, receipt, (int)receipt_len, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, n);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = s_db(self, "usage receipt");
    s_done(st);
    return r == CPN_OK ? peer_meter_acked(self, lease_id, n) : r;
}

int peer_meter_open(peer_meter_t *self, uint64_t *open)
{
    sqlite3_stmt *st = self->st[M_OPEN];
    int r = CPN_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *open = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = s_db(self, "open meters");
    s_done(st);
    return r;
}

int peer_meter_counts(peer_meter_t *self, uint64_t *records, uint64_t *unacked)
{
    sqlite3_stmt *st = self->st[M_COUNT];
    int r = CPN_OK;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *records = (uint64_t)sqlite3_column_int64(st, 0);
        *unacked = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        r = s_db(self, "count usage");
    }
    s_done(st);
    return r;
}
