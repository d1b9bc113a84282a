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

#include "driver.h"
#include "inventory.h"
#include "peer_config.h"
#include "provision.h"
#include "replay.h"
#include "sender.h"
#include "store.h"

#define PEER_BATCH_MAX 256 /* messages decided and committed together */
#define PEER_ERR_SLOTS 128 /* counters indexed by -cpn_err_t */

typedef struct {
    size_t broker;  /* index of the broker connection to answer on */
    uint8_t *frame; /* owned by the batch */
    size_t len;
    bool lease;     /* a LEASE: turned into a NACK if the commit fails */
    bool committed; /* the answer of a driver's outcome: not sent if the commit fails (the
                       lease is still provisioning in the store; it is answered later) */
    char ref[CPN_NAME_MAX];
    uint64_t ref_seq;
} peer_reply_t;

/* A driver call to submit once the batch committed (never before: a driver must not act on
 * a row that may not exist). */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    drv_verb_t verb;
} peer_call_t;

typedef struct {
    size_t n;
    peer_reply_t replies[PEER_BATCH_MAX];
    bool wrote;   /* the store transaction is open */
    bool changed; /* some lease's end changed (the expiry timer needs a new look) */
    size_t n_calls;
    peer_call_t calls[PEER_BATCH_MAX];
} peer_batch_t;

typedef struct peer_lease peer_lease_t;

/* All borrowed; they must outlive the handler. */
peer_lease_t *peer_lease_new(const peer_config_t *cfg, const cpn_identity_t *id,
                             peer_inventory_t *inv, peer_store_t *store, peer_sender_t *sender);
void peer_lease_destroy(peer_lease_t **self_p);
/* Serve the packages that have a driver (cfg->pkg_driver) through `prov` (borrowed). Without
 * it (no `provision:` section) every package takes the path of a package without driver. */
void peer_lease_set_provision(peer_lease_t *self, provision_t *prov);
/* Record the brokers' RECEIPTs for USAGE records in `meter` (borrowed; NULL: ignore them). */
struct peer_meter;
void peer_lease_set_meter(peer_lease_t *self, struct peer_meter *meter);

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

/* ---- provisioning (docs/PROVISIONING.md) ----
 *
 * A CLAIM for a package with a driver commits the lease `provisioning` (units reserved, the
 * CLAIM kept as its frame, no answer yet) and submits the driver's grant after the commit.
 * A CLAIM again for a lease still provisioning gets no answer: a NACK would tell the broker
 * the peer holds no lease for the request (docs/PROTOCOL.md §13); the LEASE (or the NACK
 * provision-failed) goes to the broker that signed the stored CLAIM when the grant ends, and
 * the broker records a LEASE that comes after its claim timed out. RELEASE and expiry of a
 * lease with a driver keep its units until the driver's release succeeded (`teardown`). */

/* The driver call `verb` for the lease of `row`, its REQUEST's access hints written as JSON
 * into `hints` (call->hints points there; NULL if the REQUEST has none). */
void peer_lease_call_of(const peer_lease_row_t *row, drv_verb_t verb, drv_call_t *call,
                        char hints[DRV_HINTS_MAX]);
/* Submit `verb` for the lease `lease_id` (read from the store) to its driver. CPN_E_BUSY when
 * the engine's queue is full; CPN_E_NO_PACKAGE when its driver is no longer configured. */
int peer_lease_submit(peer_lease_t *self, const peer_lease_row_t *row, drv_verb_t verb) CPN_WUR;
/* The final outcome of a grant, renew or release call (provision.h's callback, routed by the
 * daemon): commits `active` and queues the LEASE, or `failed` and the NACK; ends a teardown;
 * replies and writes go into `batch` (between peer_lease_batch_begin and _end). */
void peer_lease_driver_done(peer_lease_t *self, peer_batch_t *batch, const drv_call_t *call,
                            const drv_result_t *res);
/* A lease whose resource the driver lost (status: not present and the grant to recreate it
 * failed, a renew that failed for good, a driver's inventory naming it lost). Logged, counted
 * (stats.lost) and queued (at most PEER_LOST_MAX; a lease queued already is not queued again):
 * after the batch's commit the daemon takes each (peer_lease_take_lost) and ends it with a
 * NOTICE (notice.h, peer_notice_lost). */
#define PEER_LOST_MAX 64
void peer_lease_lost(peer_lease_t *self, peer_batch_t *batch, const char *lease_id,
                     const char *why);
bool peer_lease_take_lost(peer_lease_t *self, char lease_id[CPN_NAME_MAX],
                          char why[CPN_REASON_MAX]);

/* A driver's inventory: `package` really has `units` now. Its total becomes that, at most the
 * configured count (an operator may sell part of a partition); a change makes a new AD. An
 * unknown package is logged and ignored. */
void peer_lease_set_units(peer_lease_t *self, const char *package, uint32_t units);

/* How many frames were refused with `code` (a cpn_err_t), and the total refused. */
uint64_t peer_lease_refused(const peer_lease_t *self, int code);
uint64_t peer_lease_refused_total(const peer_lease_t *self);
/* Leases granted, retried (answered from the store), renewed and released so far. */
typedef struct {
    uint64_t granted, retried, renewed, released, expired;
    uint64_t notices_acked; /* NOTICEs a broker sent its receipt for */
    uint64_t usage_acked;   /* USAGE records a broker sent its RECEIPT for */
    uint64_t provisioning, provisioned, provision_failed, held, torn_down, lost;
} peer_lease_stats_t;
void peer_lease_stats(const peer_lease_t *self, peer_lease_stats_t *out);

#endif
