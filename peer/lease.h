/* lease.h - the peer's handling of what brokers send it: CLAIM (broker-signed, embedding a
 * tenant's REQUEST), RENEW and RELEASE (tenant-signed, relayed verbatim), in batches.
 *
 * Verify before read: for each frame the envelope is parsed, the sender checked (a CLAIM
 * must come from the key configured for the broker whose connection it arrived on; a
 * RENEW/RELEASE from an accepted tenant), the signature verified, the replay guard applied,
 * and only then the body decoded and decided (grant.h).
 *
 * Group commit: the daemon feeds up to PEER_BATCH_MAX frames into one batch; grants,
 * renewals and releases are written into one transaction, tentatively reserved in the
 * inventory; peer_lease_batch_end commits once and only then are the replies (LEASEs and
 * NACKs) handed back for sending. If the commit fails, nothing was granted: the LEASEs
 * become NACK "database" and the inventory is recounted from the store.
 *
 * Refused input is never answered before it verified (it is dropped); once verified, every
 * refusal gets a NACK with its code. Either way it is counted per error code and logged at
 * warn with the sender's key id and the error slug.
 */
#ifndef PEER_LEASE_H
#define PEER_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inventory.h"
#include "peer_config.h"
#include "replay.h"
#include "sender.h"
#include "store.h"

#define PEER_BATCH_MAX 256 /* messages decided and committed together */
#define PEER_ERR_SLOTS 128 /* counters indexed by -cpn_err_t */

typedef struct {
    size_t broker;  /* index of the broker connection to answer on */
    uint8_t *frame; /* owned by the batch */
    size_t len;
    bool lease; /* a LEASE: turned into a NACK if the commit fails */
    char ref[CPN_NAME_MAX];
    uint64_t ref_seq;
} peer_reply_t;

typedef struct {
    size_t n;
    peer_reply_t replies[PEER_BATCH_MAX];
    bool wrote;   /* the store transaction is open */
    bool changed; /* some lease's end changed (the expiry timer needs a new look) */
} peer_batch_t;

typedef struct peer_lease peer_lease_t;

/* All borrowed; they must outlive the handler. */
peer_lease_t *peer_lease_new(const peer_config_t *cfg, const cpn_identity_t *id,
                             peer_inventory_t *inv, peer_store_t *store, peer_sender_t *sender);
void peer_lease_destroy(peer_lease_t **self_p);

void peer_lease_batch_begin(peer_lease_t *self, peer_batch_t *batch);
/* Decide one frame received on broker connection `broker` (at most PEER_BATCH_MAX per
 * batch; beyond that the frame is refused with CPN_E_BUSY). Never fails: refusals are
 * counted and, where due, answered. */
void peer_lease_handle(peer_lease_t *self, peer_batch_t *batch, size_t broker, const uint8_t *frame,
                       size_t len);
/* Commit the batch's writes. CPN_OK, or CPN_E_DB when the commit failed (the replies then
 * say so). The replies are ready to send afterwards. */
int peer_lease_batch_end(peer_lease_t *self, peer_batch_t *batch) CPN_WUR;
/* Free the replies' frames. */
void peer_batch_clear(peer_batch_t *batch);

/* Recount the inventory's used units from the active leases in the store. */
int peer_lease_recount(peer_lease_t *self) CPN_WUR;
/* Expire active leases whose end passed (their units return); *n how many (may be NULL). */
int peer_lease_expire(peer_lease_t *self, uint64_t now_ms, size_t *n) CPN_WUR;

/* How many frames were refused with `code` (a cpn_err_t), and the total refused. */
uint64_t peer_lease_refused(const peer_lease_t *self, int code);
uint64_t peer_lease_refused_total(const peer_lease_t *self);
/* Leases granted, retried (answered from the store), renewed and released so far. */
typedef struct {
    uint64_t granted, retried, renewed, released, expired;
    uint64_t notices_acked; /* NOTICEs a broker sent its receipt for */
} peer_lease_stats_t;
void peer_lease_stats(const peer_lease_t *self, peer_lease_stats_t *out);

#endif
