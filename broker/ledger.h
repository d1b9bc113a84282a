/* ledger.h - the broker's durable record: the leases it brokered and an audit log of the
 * signed messages it acted on, in SQLite.
 *
 * Quotas are computed from the ledger: a tenant's usage is the sum over its ACTIVE leases
 * (state "active" and end_ms > now) of accelerators, units and price * units.
 *
 * Durability: WAL with synchronous=FULL: a commit is on disk when it returns. The broker
 * (server.c, outbox.h) sends no GRANT and no CLAIM before the transaction that recorded the
 * grant or the CLAIM's intent has committed, so a crash loses nothing a tenant or a peer has
 * seen. FULL rather than NORMAL also keeps the checkpoints short, which is what the request
 * latency's tail depends on (ledger.c).
 *
 * Intents: before a CLAIM leaves, a row (tenant, request id, peer) says that this peer may
 * grant that request: how many CLAIMs went to it for the request (across restarts) and the
 * latest deadline among them. The row goes when the peer's answer settles it (a LEASE, or a
 * NACK after which no CLAIM to it can still be granted: docs/PROTOCOL.md, "Exactly one lease
 * per request"), or when every lease it could have led to has ended (ledger_intent_expire).
 *
 * Bounds: the audit log keeps the most recent `audit_max` rows (default
 * LEDGER_AUDIT_MAX_DEFAULT). Rows are pruned in batches of `audit_max / 64` (at least 1)
 * inserts, so between prunings it may hold up to audit_max + batch - 1 rows.
 *
 * Transactions: each call commits by itself unless the caller opened one with
 * ledger_begin; a caller doing several writes (one event-loop pass) wraps them in
 * ledger_begin / ledger_commit so they cost one commit.
 *
 * Integers: SQLite stores signed 64-bit integers, so prices and times above INT64_MAX are
 * refused with CPN_E_INVAL. Not thread-safe: one ledger per thread.
 */
#ifndef CPN_LEDGER_H
#define CPN_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "resource.h"
#include "ledger_types.h"

#define LEDGER_STATE_MAX 16

typedef struct ledger ledger_t;

/* One brokered lease. (peer, lease_id) is its key: lease ids are chosen by peers. */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t tenant[CPN_PK_LEN];
    uint8_t peer[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t accelerators; /* accelerators per unit x units */
    uint64_t price;        /* per unit-hour, thousandths */
    uint64_t start_ms;
    uint64_t end_ms;
    char request_id[CPN_NAME_MAX];
    char state[LEDGER_STATE_MAX]; /* "active", "released", "expired", "revoked" */
    uint32_t renewals;
} ledger_lease_t;

typedef struct {
    uint64_t leases;        /* all leases ever recorded (still in the file) */
    uint64_t active;        /* active now */
    uint64_t active_units;
    uint64_t active_accelerators;
    uint64_t tenants_active; /* distinct tenants with an active lease */
    uint64_t audit_rows;
} ledger_counts_t;

/* Open (creating if needed) the ledger at path. CPN_E_DB if SQLite cannot open it or the
 * schema is of a newer version. The caller owns *out. */
int ledger_open(const char *path, ledger_t **out) CPN_WUR;
/* Close; commits nothing left open (an open transaction is rolled back). Accepts NULL. */
void ledger_destroy(ledger_t **self_p);

/* The connection, for modules that keep tables of their own in the ledger inside the same
 * transactions (usage_log.c). Borrowed. */
struct sqlite3;
struct sqlite3 *ledger_db(ledger_t *self);

/* Audit rows to keep (>= 1); from the policy, may change on reload. */
void ledger_set_audit_max(ledger_t *self, uint64_t audit_max);

/* Group writes: begin, then commit (or rollback). Nesting is an error (CPN_E_INVAL). */
int ledger_begin(ledger_t *self) CPN_WUR;
int ledger_commit(ledger_t *self) CPN_WUR;
int ledger_rollback(ledger_t *self);

/* Record a lease granted through this broker, state "active" (lease->state is ignored),
 * with the GRANT frame the tenant got (may be NULL/0). Recording the same (peer, lease_id)
 * again (an idempotent retry) changes nothing and is CPN_OK. */
int ledger_record_grant(ledger_t *self, const ledger_lease_t *lease, const uint8_t *grant,
                        size_t grant_len) CPN_WUR;

/* A RENEW went through: the lease now ends at end_ms and has `renewals` renewals; it is
 * active again if it had expired in the ledger only. CPN_E_NO_LEASE if unknown. */
int ledger_renew(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                 uint64_t end_ms, uint32_t renewals) CPN_WUR;
/* A RELEASE went through at now_ms: state "released", end_ms lowered to now_ms.
 * CPN_E_NO_LEASE if unknown, CPN_E_EXPIRED if it was not active. */
int ledger_release(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                   uint64_t now_ms) CPN_WUR;
/* The lease's peer revoked it (a NOTICE): state "revoked", end_ms lowered to effective_ms.
 * CPN_E_NO_LEASE if unknown, CPN_E_EXPIRED if it was not active. */
int ledger_revoke(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                  uint64_t effective_ms) CPN_WUR;
/* Mark every active lease with end_ms <= now_ms "expired"; *n_out (may be NULL) = how many. */
int ledger_expire(ledger_t *self, uint64_t now_ms, uint64_t *n_out) CPN_WUR;

/* Usage of a tenant from its active leases at now_ms (end_ms > now_ms counts as active even
 * before ledger_expire has run). */
int ledger_quota_usage(ledger_t *self, const uint8_t tenant[CPN_PK_LEN], uint64_t now_ms,
                       ledger_usage_t *out) CPN_WUR;

/* One lease by key. CPN_E_NO_LEASE if unknown. If grant_p is not NULL, *grant_p receives a
 * malloc'd copy of the GRANT frame (NULL if none was stored) the caller frees. */
int ledger_get(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
               ledger_lease_t *out, uint8_t **grant_p, size_t *grant_len) CPN_WUR;
/* The lease a tenant's request id got (for a REQUEST sent again), like ledger_get: the first
 * one not revoked (a replacement, on_failure: rematch), else the revoked one. */
int ledger_find_request(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                        const char *request_id, ledger_lease_t *out, uint8_t **grant_p,
                        size_t *grant_len) CPN_WUR;

/* Call cb for each lease of `tenant` (NULL: every tenant), newest start first, at most
 * `max` of them (0: no bound); with active_only, only those active at now_ms. cb returning
 * non-zero stops the walk (not an error). */
typedef int (*ledger_lease_cb)(const ledger_lease_t *lease, void *arg);
int ledger_list(ledger_t *self, const uint8_t *tenant, bool active_only, uint64_t now_ms,
                size_t max, ledger_lease_cb cb, void *arg) CPN_WUR;

/* A position in the order (start_ms descending, peer, lease_id): ledger_list_page walks the
 * leases strictly after it, so pages never repeat a lease, and a lease recorded or gone between
 * two pages is simply there or not in the later page. */
typedef struct {
    uint64_t start_ms;
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_NAME_MAX];
} ledger_cursor_t;
/* ledger_list in that order, after `after` (NULL: from the first). CPN_E_INVAL for a
 * lease_id without its NUL. */
int ledger_list_page(ledger_t *self, const uint8_t *tenant, bool active_only, uint64_t now_ms,
                     const ledger_cursor_t *after, size_t max, ledger_lease_cb cb,
                     void *arg) CPN_WUR;

/* Counts for status, at now_ms. */
int ledger_counts(ledger_t *self, uint64_t now_ms, ledger_counts_t *out) CPN_WUR;

/* Append to the audit log: when, the message type ("REQUEST"), its signer, the verdict
 * (CPN_OK or the cpn_err_t it was refused with) and the signed frame as received. */
int ledger_audit(ledger_t *self, uint64_t ts_ms, const char *type,
                 const uint8_t from[CPN_PK_LEN], int verdict, const uint8_t *frame,
                 size_t frame_len) CPN_WUR;

/* A CLAIM's durable trace (see "Intents" above). */
typedef struct {
    uint8_t tenant[CPN_PK_LEN];
    char request_id[CPN_NAME_MAX];
    uint8_t peer[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint32_t claims;         /* CLAIMs sent to this peer for this request (read only) */
    uint64_t deadline_ms;    /* the latest deadline among them, wall clock */
    uint64_t duration_s;     /* the request's duration: a lease ends by deadline + this */
    uint8_t via[CPN_PK_LEN]; /* the member the CLAIMs went through; all zero: direct */
} ledger_intent_t;

/* One more CLAIM for (tenant, request id) is about to go to peer: insert the intent with
 * claims = 1, or add 1 to claims and raise deadline_ms to in->deadline_ms if later (package,
 * units and via take the new values). in->claims is ignored. CPN_E_INVAL for an empty id or
 * a deadline + duration beyond 64-bit signed ms. */
int ledger_intent_add(ledger_t *self, const ledger_intent_t *in) CPN_WUR;
/* The intents of a request, earliest deadline first: up to cap into out, *n_out = how many
 * there are (may exceed cap). */
int ledger_intents(ledger_t *self, const uint8_t tenant[CPN_PK_LEN], const char *request_id,
                   ledger_intent_t *out, size_t cap, size_t *n_out) CPN_WUR;
/* The peer's answer settled it: delete the intent (none: CPN_OK). */
int ledger_intent_resolve(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                          const char *request_id, const uint8_t peer[CPN_PK_LEN]) CPN_WUR;
/* Delete every intent with deadline_ms + duration_s * 1000 <= before_ms (the caller passes
 * now - skew: any lease it could have led to has ended); *n_out (may be NULL) = how many. */
int ledger_intent_expire(ledger_t *self, uint64_t before_ms, uint64_t *n_out) CPN_WUR;
/* How many intents the ledger holds. */
int ledger_intent_count(ledger_t *self, uint64_t *n_out) CPN_WUR;

/* The SQLite handle, for ledger_notice.c (its statements join the open transaction).
 * Borrowed. */
struct sqlite3 *ledger_sqlite(ledger_t *self);

/* One audit row, for tests and tools. */
typedef struct {
    int64_t id;
    uint64_t ts_ms;
    char type[32];
    uint8_t from[CPN_PK_LEN];
    int verdict;
    size_t frame_len;
} ledger_audit_row_t;
/* The oldest and newest audit rows kept; CPN_E_INVAL if the log is empty. */
int ledger_audit_bounds(ledger_t *self, ledger_audit_row_t *oldest,
                        ledger_audit_row_t *newest) CPN_WUR;

#endif
