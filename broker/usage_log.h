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
 *         BLOB, frame BLOB, PK(peer, lease_id, n))
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
