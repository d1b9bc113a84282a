/* usage_log.h - the USAGE records a broker took from its peers, in its ledger.
 *
 * A record is taken only if it is the next link of its lease's chain (common/usage.h) as the
 * broker already holds it, and on the terms of the lease the broker brokered: signed by that
 * lease's peer, for its tenant, package, units, price and start. A record the broker holds
 * already (a peer re-sending after a lost acknowledgement or a restart) is taken again
 * without change, so re-sending is safe; a record beyond the next (one missing between) is
 * refused, and the peer re-sends in order.
 *
 * Table (in the ledger's database):
 *   usage(peer BLOB, lease_id, n, tenant BLOB, package, to_ms, amount, total, final, hash
 *         BLOB, frame BLOB, via BLOB, relay, next_ms, lease BLOB, PK(peer, lease_id, n))
 *   via/relay/next_ms: a record to carry on to the member `via` (relay 1) until it took it;
 *   lease: record 1's LEASE frame, carried with it.
 * Each record costs one row with its frame (about 330 bytes).
 */
#ifndef CPN_USAGE_LOG_H
#define CPN_USAGE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "err.h"
#include "ledger.h"
#include "msg.h"
#include "usage.h"

typedef struct usage_log usage_log_t;

/* Open on a ledger (borrowed; must outlive the log); creates the table if needed. */
int usage_log_open(ledger_t *ledger, usage_log_t **out) CPN_WUR;
void usage_log_destroy(usage_log_t **self_p);

/* Take one USAGE record (env verified, any signer). *dup (may be NULL) tells whether it was
 * held already. Errors, with why: CPN_E_WRONG_TYPE, body codes, CPN_E_NO_LEASE (the broker
 * brokered no such lease of that peer), CPN_E_UNTRUSTED (signed by another key than the
 * lease's peer), CPN_E_CHAIN (terms, pricing or link do not hold; a record missing before
 * it), CPN_E_DB. */
int usage_log_take(usage_log_t *self, const cpn_env_t *env, bool *dup,
                   char why[CPN_REASON_MAX]) CPN_WUR;

/* What a record must repeat of its lease, when the ledger holds no such lease (a broker that
 * only carried the lease across the federation): proved by the LEASE that came with record 1
 * (`lease`, kept with the record to carry it on). via: the member to carry the record on to
 * (the broker before us on the lease's route), if has_via (else we are the tenant's broker). */
typedef struct {
    uint8_t tenant[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t price;
    uint64_t start_ms;
    bool has_via;
    uint8_t via[CPN_PK_LEN];
    const uint8_t *lease;
    size_t lease_len;
} usage_terms_t;

/* usage_log_take, with terms: `t` (may be NULL) is used when the ledger holds no lease of the
 * record's peer and id; a record after the first needs neither (it continues a chain held
 * here, whose terms it must repeat) and goes on to the member its predecessor went to. A
 * record taken with a `via` waits to be carried on (usage_log_relay_due). */
int usage_log_take_terms(usage_log_t *self, const cpn_env_t *env, const usage_terms_t *t,
                         bool *dup, char why[CPN_REASON_MAX]) CPN_WUR;

/* Records waiting to be carried on: at most max whose time has come (never tried, or tried
 * retry_ms ago), oldest first; each is handed to fn (valid during the call) and tried again
 * after retry_ms unless usage_log_relayed is called for it meanwhile. */
typedef struct {
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_NAME_MAX];
    uint32_t n;
    uint8_t via[CPN_PK_LEN];
    const uint8_t *frame, *lease; /* lease: record 1's LEASE, or NULL */
    size_t len, lease_len;
} usage_relay_t;
typedef void (*usage_relay_fn)(const usage_relay_t *rel, void *arg);
int usage_log_relay_due(usage_log_t *self, uint64_t now_ms, uint64_t retry_ms, size_t max,
                        usage_relay_fn fn, void *arg) CPN_WUR;
/* Member `by` took record n (whose frame hashes to `hash`) of the peer's lease: that record
 * and the ones before it are no longer carried on to it. *found: something was waiting. */
int usage_log_relayed(usage_log_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      uint32_t n, const uint8_t hash[CPN_USAGE_HASH_LEN],
                      const uint8_t by[CPN_PK_LEN], bool *found) CPN_WUR;

/* A page of records of a tenant (NULL: all), in (peer, lease id, n) order, strictly after
 * `after` (NULL: from the first), at most limit. fn gets each record's key and frame; fn
 * returning > 0 ends the page (not an error), < 0 is returned. */
typedef struct {
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_NAME_MAX];
    uint32_t n;
} usage_cursor_t;
typedef int (*usage_page_fn)(const usage_cursor_t *c, const uint8_t *frame, size_t len,
                             void *arg);
int usage_log_page(usage_log_t *self, const uint8_t *tenant, const usage_cursor_t *after,
                   size_t limit, usage_page_fn fn, void *arg) CPN_WUR;

/* Call fn with every record of a tenant (NULL: all) whose period ends in (from_ms, to_ms]
 * (to_ms 0: no bound), by lease then n: what a bill file holds (ctl_bill.h). fn returning
 * non-zero stops the walk and is returned. */
typedef int (*usage_log_fn)(const uint8_t *frame, size_t len, void *arg);
int usage_log_each(usage_log_t *self, const uint8_t *tenant, uint64_t from_ms, uint64_t to_ms,
                   usage_log_fn fn, void *arg) CPN_WUR;

/* Sum of `amount` over a tenant's records (NULL: all) ending in (from_ms, to_ms]. */
int usage_log_sum(usage_log_t *self, const uint8_t *tenant, uint64_t from_ms, uint64_t to_ms,
                  uint64_t *sum) CPN_WUR;

#endif
