/* usage_in.h - USAGE records at a broker (docs/PROTOCOL.md §7 USAGE, "Delivery"): a peer's
 * record arrives in a METER (or bare), is checked, taken into the ledger (usage_log.h),
 * countersigned in a RECEIPT to whoever brought it, and carried on towards the tenant's
 * broker along the lease's route, where it is checked against the lease recorded there.
 *
 * Checks, each refusal counted under its code, logged and answered with ERROR, nothing
 * taken: the record is a USAGE frame that verifies; from a peer, it is that peer's own
 * (else `untrusted`); a LEASE that comes with it opens (its chain, every signature) with the
 * record's signer as the granting peer, names the same lease, and has this broker on its
 * route (else `untrusted`); the record is on the lease's terms and the next link of its
 * chain as held here (usage_log.h: a re-send is taken again unchanged, a gap or a second
 * version is refused `inconsistent`, a record of a lease neither recorded nor carried here
 * `no-lease`). Who carries a record does not matter: it is the peer's signature that proves
 * it, so any member may bring it.
 *
 * Carrying on: a broker that is not the tenant's (it is not the route's origin) keeps the
 * record marked for the broker before it on the route and sends it there in a METER of its
 * own (with the LEASE for record 1) every USAGE_RELAY_RETRY_MS until that member's RECEIPT,
 * USAGE_RELAY_BATCH per tick. The tenant's broker holds the lease in its ledger and checks
 * the terms against it.
 */
#ifndef CPN_USAGE_IN_H
#define CPN_USAGE_IN_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

#define USAGE_RELAY_RETRY_MS 2000 /* a record not yet taken by the next broker goes again */
#define USAGE_RELAY_BATCH 256     /* records carried on per tick at most */

/* A USAGE frame (`frame`) arrived, in the verified message rx (a METER around it, or the
 * USAGE itself), with the lease's LEASE frame when `lease_len` > 0. */
void usage_in_frame(broker_t *self, const broker_rx_t *rx, const uint8_t *frame, size_t len,
                    const uint8_t *lease, size_t lease_len);
/* A member's RECEIPT for a record we carried on to it. */
void usage_in_receipt(broker_t *self, const broker_rx_t *rx, const cpn_receipt_t *rc);
/* Carry on the records that are due (each tick). */
void usage_in_tick(broker_t *self, uint64_t now_ms);

#endif
