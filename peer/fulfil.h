/* fulfil.h - the peer's reconciliation of its store with what the drivers hold.
 *
 * At start (fulfil_reconcile), after a kill -9 at any point: leases still `provisioning` run
 * their grant again (drivers are idempotent by lease id), `active` ones are checked with the
 * driver's status (missing: the grant recreates it; if that fails, peer_lease_lost), due
 * teardowns run again, and each driver's `list` is compared with the store: a resource held
 * for a lease id that is not provisioning, active or due a teardown is an orphan and is
 * released. Every PEER_SWEEP_MS (fulfil_tick) due teardowns and unanswered grants are
 * submitted again (the engine ignores those already queued), so a teardown that ran out of
 * tries or did not fit the queue is retried until it succeeds; drivers with `inventory` are
 * polled at that period.
 *
 * fulfil_done receives every final outcome from the engine (the daemon wires it) and hands
 * grant, renew and release to lease.c; status, list and inventory are handled here.
 */
#ifndef PEER_FULFIL_H
#define PEER_FULFIL_H

#include <stdint.h>

#include "lease.h"
#include "peer_config.h"
#include "provision.h"
#include "store.h"

#define PEER_SWEEP_MS 30000 /* due teardowns and grants submitted again at least this often */

typedef struct peer_fulfil peer_fulfil_t;

/* All borrowed. */
peer_fulfil_t *fulfil_new(const peer_config_t *cfg, peer_store_t *store, peer_lease_t *lease,
                          provision_t *prov);
void fulfil_destroy(peer_fulfil_t **self_p);

/* Submit what the store says is due, and every driver's list (see above). */
int fulfil_reconcile(peer_fulfil_t *self) CPN_WUR;
/* Submit due teardowns and grants again (also after leases expired). */
int fulfil_sweep(peer_fulfil_t *self) CPN_WUR;
/* The sweep and the inventory polls when due; ms until the next (for the poll timeout). */
uint64_t fulfil_tick(peer_fulfil_t *self, uint64_t now_mono);

/* A call's final outcome (provision_done_fn's arguments), inside a batch. */
void fulfil_done(peer_fulfil_t *self, peer_batch_t *batch, size_t driver, const drv_call_t *call,
                 const drv_result_t *res);

typedef struct {
    uint64_t orphans, recreated, missing;
} fulfil_stats_t;
void fulfil_stats(const peer_fulfil_t *self, fulfil_stats_t *out);

#endif
