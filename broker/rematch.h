/* rematch.h - `on_failure: rematch`: the tenant's broker places the rest of a revoked lease
 * elsewhere (docs/PROTOCOL.md §14, "Re-match").
 *
 * A notice recorded at the tenant's broker for a REQUEST that asked on_failure: rematch has
 * `todo` REMATCH in the ledger (ledger_notice.h). Each tick, for each such notice due:
 *   - past the old lease's end: nothing is left to place; done (replaced_by stays empty);
 *   - an intent of the request at a peer other than the revoked one is open (a replacement
 *     CLAIM went out, maybe before a restart): claim that peer again, and only it (§13);
 *   - else the best offer of a peer connected to us directly, not the revoked peer nor one
 *     that refused this rematch, for the units the lease lost, is claimed.
 * The CLAIM embeds the tenant's REQUEST verbatim, asks for the rest of the lease (the
 * REQUEST's duration at most) and carries the NOTICE in `replaces`, so the peer can check
 * that the request and the duration are legitimate (peer/grant.h). Its intent is committed
 * before it leaves, as for any CLAIM; the peer grants a (tenant, request id) once, so a notice
 * gets exactly one replacement, through restarts of either side. The LEASE is recorded with a
 * GRANT of ours in the ledger (the tenant finds it in `cpnctl leases`, and the notice's
 * `replaced_by` names it); a NACK for a fenced CLAIM moves on to the next offer. At most
 * REMATCH_TRIES tries per notice and REMATCH_MAX notices in flight at once.
 */
#ifndef CPN_REMATCH_H
#define CPN_REMATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

#define REMATCH_MAX 64       /* replacement CLAIMs waiting for an answer at once */
#define REMATCH_TRIES 16     /* CLAIMs per notice before it is given up */
#define REMATCH_EXCLUDE 8    /* peers that refused a notice's replacement, remembered */
#define REMATCH_IDLE_MS 1000 /* no offer now: look again this much later */

typedef struct rematch rematch_t;

rematch_t *rematch_new(void);
void rematch_destroy(rematch_t **self_p);

/* Work on the notices due (each tick). */
void rematch_tick(broker_t *self, uint64_t now_ms);
/* A verified LEASE or NACK from a peer: true if it answered a replacement CLAIM (handled
 * here), false if it is the claim module's. Costs nothing while no replacement waits. */
bool rematch_on_lease(broker_t *self, const broker_rx_t *rx, const cpn_lease_t *lease);
bool rematch_on_nack(broker_t *self, const broker_rx_t *rx, const cpn_nack_t *nack);

#endif
