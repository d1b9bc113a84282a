/* notice.h - the broker's side of NOTICE (docs/PROTOCOL.md §7 NOTICE, §14): a peer says the
 * capacity under a lease is gone; the broker checks the notice against the lease it proves,
 * records it, answers its sender with a receipt, and carries it on to the tenant's broker.
 *
 * Checks, each refusal counted under its code, logged, answered with ERROR and changing
 * nothing: the NOTICE verifies and is signed by the peer that signed the LEASE it carries
 * (else `untrusted`); that LEASE's chain opens (every signature and link, chain.h) and names
 * the same lease id and tenant as the notice (else `inconsistent`); `units` is below the
 * lease's; and this broker claimed the lease or carried its REQUEST (it is in the route),
 * else `untrusted`. A notice that arrives again (a peer's RESEND, a member's re-try) is
 * recorded once and answered again.
 *
 * Where it goes: the tenant's broker is the route's origin (the CLAIM's signer for a lease
 * that crossed no federation). The broker that is not the origin records the notice with
 * `todo` FORWARD and sends it, in a FORWARD {to: peer, hops: 1, msg: NOTICE}, to the broker
 * before it on the route, every NOTICE_RETRY_MS until that broker's receipt (or the lease's
 * old end). The origin ends the lease in its ledger (`revoked`), and the tenant sees the
 * notice in `cpnctl leases` and `cpnctl watch` (QUERY `notices`).
 *
 * Receipts: STATUS {what: "notice", data: str lease id}, sent only after the ledger
 * transaction that recorded the notice committed (the outbox), to the peer (its connection)
 * or the member (our link to it).
 */
#ifndef CPN_NOTICE_H
#define CPN_NOTICE_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "chain.h"

#define NOTICE_RETRY_MS 2000 /* a notice not yet taken by the next broker goes again */
#define NOTICE_DUE_MAX 64    /* notices worked on per tick */

/* A NOTICE opened: its envelope and body, the chain of the lease it carries, and where this
 * broker stands on the lease's route (ch.brokers[], origin first). Points into the frame. */
typedef struct {
    cpn_env_t env;
    cpn_notice_t n;
    cpn_chain_t ch;
    uint32_t at; /* our index in ch.brokers: 0 = we are the tenant's broker */
} notice_opened_t;

/* Open and check a NOTICE frame as "Checks" above says. `signer` (may be NULL): who must have
 * signed it (the peer that sent it, or its RESEND). CPN_OK, or the code with why set. */
int notice_open(broker_t *self, const uint8_t *frame, size_t len, const uint8_t *signer,
                notice_opened_t *o, char why[CPN_REASON_MAX]) CPN_WUR;

/* A NOTICE frame (`frame`, from a peer directly, inside a peer's RESEND, or inside a member's
 * FORWARD) arrived in the verified message rx. */
void notice_on_frame(broker_t *self, const broker_rx_t *rx, const uint8_t *frame, size_t len);
/* A member's receipt (STATUS what "notice") for a notice we carried on to it. */
void notice_on_receipt(broker_t *self, const broker_rx_t *rx, const cpn_status_t *st);
/* Carry on the notices that are due (each tick). */
void notice_tick(broker_t *self, uint64_t now_ms);

#endif
