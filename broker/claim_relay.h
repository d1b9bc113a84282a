/* claim_relay.h - a tenant's RENEW or RELEASE relayed to the lease's peer, and the peer's
 * answer (a LEASE renewed or released, or a NACK) relayed back as a GRANT or a NACK.
 *
 * Owned by the claim module (claim.c), which hands it the answers it recognises as a
 * relay's; it calls only down (the claim module's services: the ways out, the ledger, the
 * federation's forward), never back.
 * Also home to two things both share: where a peer is reached, and the GRANT countersigning.
 */
#ifndef CPN_CLAIM_RELAY_H
#define CPN_CLAIM_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "claim.h"

typedef struct claim_relay claim_relay_t;

/* Relays calling down to *svc (not owned: the claim module's), reading time through clock.
 * NULL if out of memory. */
claim_relay_t *claim_relay_new(const claim_svc_t *svc, const claim_clock_t *clock);
void claim_relay_destroy(claim_relay_t **self_p);

/* Relay the tenant's RENEW or RELEASE (rx) to `peer`; the tenant gets a NACK if it cannot. */
void claim_relay_on_tenant_op(claim_relay_t *self, const broker_rx_t *rx,
                              const uint8_t peer[CPN_PK_LEN], const char *lease_id);
/* The kind (CPN_MSG_RENEW or RELEASE) of the relay waiting for `peer`'s answer about
 * lease_id; 0 if none. */
int claim_relay_kind(const claim_relay_t *self, const uint8_t peer[CPN_PK_LEN],
                     const char *lease_id);
/* A verified LEASE from `lenv->from`: if it answers a relay, record it, send the tenant its
 * GRANT (request_id names the request of the lease) and return true. */
bool claim_relay_lease(claim_relay_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                       const char *request_id);
/* A NACK from (or about) `peer` naming the tenant's seq: if it answers a relay, pass it on
 * to the tenant and return true. */
bool claim_relay_nack(claim_relay_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t tenant_seq,
                      const cpn_nack_t *nack);
/* Relays past their deadline: the tenant gets NACK timeout. */
void claim_relay_tick(claim_relay_t *self, uint64_t now_mono);

/* Where a peer is reached: through the member its offer came from (*remote, via filled), or
 * its own connection to us (*route). CPN_E_UNREACHABLE if neither. */
int claim_reach(const claim_svc_t *svc, const uint8_t peer[CPN_PK_LEN], bool *remote,
                uint8_t via[CPN_PK_LEN], const broker_route_t **route);
/* GRANT = the peer's LEASE countersigned by us. *frame_p malloc'd (the caller frees it). */
int claim_grant_build(const claim_svc_t *svc, const cpn_env_t *lenv, const char *request_id,
                      uint8_t **frame_p, size_t *len);

#endif
