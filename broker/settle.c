/* settle.c - a broker's statement lines from the USAGE records in its ledger (settle.h). */
#include "settle.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "chain.h"
#include "log.h"
#include "usage_log.h"

/* The records of the period, lease by lease in line order (peer, lease_id bytes). */
static const char s_sql_records[] =
    "SELECT peer, lease_id, tenant, n, amount, hash FROM usage WHERE to_ms > ?1 AND to_ms <= ?2 "
    "ORDER BY peer, CAST(lease_id AS BLOB), n";
/* The LEASE kept with a lease's first record by a broker that carried it. */
static const char s_sql_lease[] =
    "SELECT lease FROM usage WHERE peer = ?1 AND lease_id = ?2 AND lease IS NOT NULL LIMIT 1";

typedef struct {
    ledger_t *ledger;
    sqlite3 *db;
    sqlite3_stmt *lease_st;
    const uint8_t *us, *them;
} s_ctx_t;

/* The direction of a lease for the pair, from the chain of `frame` (type `top`): *dir, true;
 * false if the lease is not between the two of us. */
static bool s_dir_of(const s_ctx_t *c, const uint8_t *frame, size_t len, cpn_msg_type_t top,
                     uint8_t *dir, bool *opened)
{
    cpn_chain_t *ch = malloc(sizeof *ch);
    *opened = ch && cpn_chain_open(frame, len, top, NULL, ch) == CPN_OK && ch->n_brokers > 0;
    bool mine = false;
    if (*opened) {
        const uint8_t *tb = ch->brokers[0], *home = ch->brokers[ch->n_brokers - 1];
        if (!memcmp(tb, c->us, CPN_PK_LEN) && !memcmp(home, c->them, CPN_PK_LEN)) {
            *dir = CPN_STMT_OWE;
            mine = true;
        } else if (!memcmp(tb, c->them, CPN_PK_LEN) && !memcmp(home, c->us, CPN_PK_LEN)) {
            *dir = CPN_STMT_DUE;
            mine = true;
        }
    }
    free(ch);
    return mine;
}

/* Classify one lease: *keep if it is the pair's (with *dir); *unknown if no chain opens. */
static int s_classify(s_ctx_t *c, const cpn_stmt_line_t *l, bool *keep, uint8_t *dir, bool *unknown)
{
    ledger_lease_t row;
    uint8_t *grant = NULL;
    size_t glen = 0;
    bool opened = false;
    *keep = *unknown = false;
    if (ledger_get(c->ledger, l->peer, l->lease_id, &row, &grant, &glen) == CPN_OK && grant)
        *keep = s_dir_of(c, grant, glen, CPN_MSG_GRANT, dir, &opened);
    free(grant);
    if (opened)
        return CPN_OK;
    sqlite3_stmt *st = c->lease_st;
    sqlite3_bind_blob(st, 1, l->peer, CPN_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, l->lease_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *keep = s_dir_of(c, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                         CPN_MSG_LEASE, dir, &opened);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return CPN_E_DB;
    *unknown = !opened;
    return CPN_OK;
}

/* A finished lease group: classified, and appended to *lines if it is the pair's. */
static int s_flush(s_ctx_t *c, cpn_stmt_line_t *l, cpn_stmt_line_t **lines, size_t *n, size_t *cap,
                   size_t *unknown)
{
    bool keep, unk;
    int r = s_classify(c, l, &keep, &l->dir, &unk);
    *unknown += unk;
    if (r != CPN_OK || !keep)
        return r;
    if (*n == CPN_STMT_LINES_MAX)
        return CPN_E_TOO_BIG;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        cpn_stmt_line_t *g = realloc(*lines, nc * sizeof *g);
        if (!g)
            return CPN_E_NOMEM;
        *lines = g;
        *cap = nc;
    }
    (*lines)[(*n)++] = *l;
    return CPN_OK;
}

/* One record row into the current group *cur (a new group if it is another lease). */
static int s_row(s_ctx_t *c, sqlite3_stmt *st, cpn_stmt_line_t *cur, bool *open,
                 cpn_stmt_line_t **lines, size_t *n, size_t *cap, size_t *unknown)
{
    cpn_stmt_line_t l;
    memset(&l, 0, sizeof l);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    if (sqlite3_column_bytes(st, 0) != CPN_PK_LEN || sqlite3_column_bytes(st, 2) != CPN_PK_LEN ||
        sqlite3_column_bytes(st, 5) != CPN_PK_LEN || !id || strlen(id) >= CPN_STMT_ID_MAX)
        return CPN_E_DB; /* usage_log.c wrote no such row */
    memcpy(l.peer, sqlite3_column_blob(st, 0), CPN_PK_LEN);
    memcpy(l.lease_id, id, strlen(id));
    int r = CPN_OK;
    if (*open && cpn_stmt_line_cmp(cur, &l) != 0) {
        r = s_flush(c, cur, lines, n, cap, unknown);
        *open = false;
    }
    if (!*open) {
        *cur = l;
        memcpy(cur->tenant, sqlite3_column_blob(st, 2), CPN_PK_LEN);
        cur->n_first = (uint32_t)sqlite3_column_int64(st, 3);
        *open = true;
    }
    cur->n_last = (uint32_t)sqlite3_column_int64(st, 3);
    cur->amount += (uint64_t)sqlite3_column_int64(st, 4);
    memcpy(cur->last, sqlite3_column_blob(st, 5), CPN_PK_LEN);
    return r;
}

int settle_lines(ledger_t *ledger, const uint8_t us[CPN_PK_LEN], const uint8_t them[CPN_PK_LEN],
                 uint64_t from_ms, uint64_t to_ms, cpn_stmt_line_t **lines, size_t *n,
                 size_t *unknown)
{
    *lines = NULL;
    *n = *unknown = 0;
    usage_log_t *ul = NULL;
    s_ctx_t c = {.ledger = ledger, .db = ledger_db(ledger), .us = us, .them = them};
    sqlite3_stmt *st = NULL;
    int r = usage_log_open(ledger, &ul); /* the usage table, in a ledger that has none yet */
    if (r == CPN_OK && (sqlite3_prepare_v2(c.db, s_sql_records, -1, &st, NULL) != SQLITE_OK ||
                        sqlite3_prepare_v2(c.db, s_sql_lease, -1, &c.lease_st, NULL) != SQLITE_OK))
        r = CPN_E_DB;
    size_t cap = 0;
    cpn_stmt_line_t cur;
    bool open = false;
    int rc = SQLITE_DONE;
    if (r == CPN_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(from_ms > INT64_MAX ? INT64_MAX : from_ms));
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(to_ms > INT64_MAX ? INT64_MAX : to_ms));
        while (r == CPN_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
            r = s_row(&c, st, &cur, &open, lines, n, &cap, unknown);
        if (r == CPN_OK && rc != SQLITE_DONE)
            r = CPN_E_DB;
        if (r == CPN_OK && open)
            r = s_flush(&c, &cur, lines, n, &cap, unknown);
    }
    if (r == CPN_E_DB)
        log_error("settle", "usage records: %s", sqlite3_errmsg(c.db));
    sqlite3_finalize(st);
    sqlite3_finalize(c.lease_st);
    usage_log_destroy(&ul);
    if (r != CPN_OK) {
        free(*lines);
        *lines = NULL;
        *n = 0;
    }
    return r;
}
