/* notice.h - the peer ends a lease whose capacity is gone and tells the broker that claimed
 * it, in a signed NOTICE, until that broker took it (docs/PROTOCOL.md §7 NOTICE, §14).
 *
 * What takes capacity away: an operator's drain (cpn-peer --drain PACKAGE writes the store's
 * drains table and wakes the daemon with SIGUSR1; the daemon also reads the table every
 * PEER_DRAIN_POLL_MS and at start), and the provisioning drivers (a node DOWN, a `status`
 * saying failed) through peer_notice_lost, the one hook for all of them.
 *
 * Ending a lease is one store transaction: the lease becomes `revoked` with its end at the
 * notice's effective time (its units are free again, or gone with a drained package), and the
 * signed NOTICE is recorded in the notices table (notice_store.h) with the key of the broker
 * that signed the lease's CLAIM. Only after the commit the NOTICE leaves, to that broker; it
 * is re-sent (in a RESEND, its bytes unchanged) every PEER_NOTICE_RESEND_MS and whenever a
 * broker link comes up, until the broker answers STATUS {what: "notice", data: lease id}
 * (lease.c) or the lease's old end passes (nothing is left to tell or re-match).
 * So a broker restart or a cut link loses no notice, and a peer restart neither. A notice is
 * deleted once the lease's old end has passed (peer_nstore_prune), taken or not.
 *
 * The module sends nothing itself: frames go out through the send callback the daemon gives.
 */
#ifndef PEER_NOTICE_H
#define PEER_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "inventory.h"
#include "meter.h"
#include "peer_config.h"
#include "sender.h"
#include "store.h"

#define PEER_NOTICE_RESEND_MS 2000 /* unacknowledged notices go again this often */
#define PEER_NOTICE_BATCH 256      /* notices (re-)sent per pass at most; the rest next pass */
#define PEER_REVOKE_BATCH 1024     /* leases of drained packages revoked per pass at most */
#define PEER_DRAIN_POLL_MS 1000    /* the drains table is read this often (and on SIGUSR1) */
#define PEER_META_PID "daemon_pid" /* meta key: the running daemon's pid, for --drain */

/* Send `frame` to broker connection `broker` (an index into cfg->brokers). */
typedef void (*peer_notice_send_fn)(size_t broker, const uint8_t *frame, size_t len, void *arg);

typedef struct peer_notice peer_notice_t;

/* All borrowed; they must outlive the module. Creates the store's tables if missing. */
int peer_notice_new(const peer_config_t *cfg, const cpn_identity_t *id, peer_inventory_t *inv,
                    peer_store_t *store, peer_sender_t *sender, peer_notice_send_fn send, void *arg,
                    peer_notice_t **out) CPN_WUR;
void peer_notice_destroy(peer_notice_t **self_p);

/* The capacity under lease `lease_id` is lost (code: a cpn_err_t, CPN_E_CAPACITY_LOST; reason
 * for people): revoke it durably, record and send the NOTICE. A lease that is not active
 * (unknown, already ended) is left alone: CPN_OK. Runs its own transaction: call it outside
 * a batch. CPN_E_DB if the commit failed (nothing changed). */
int peer_notice_lost(peer_notice_t *self, const char *lease_id, int code,
                     const char *reason) CPN_WUR;

/* Read the drains table: mark drained packages (0 free) and undrained ones, and revoke up to
 * PEER_REVOKE_BATCH active leases of drained packages. *more (may be NULL): leases remain. */
int peer_notice_drains(peer_notice_t *self, bool *more) CPN_WUR;

/* USAGE records (meter.h) travel the same way: to the broker that signed the lease's CLAIM,
 * each in a METER (with the LEASE for record 1), re-sent every PEER_NOTICE_RESEND_MS and
 * when a link comes up, until that broker's RECEIPT (lease.c, peer_meter_receipt). `meter`
 * is borrowed; NULL sends none. peer_notice_usage sends what was never sent (and what waited
 * PEER_NOTICE_RESEND_MS) now: the daemon calls it after a meter tick made records. */
void peer_notice_set_meter(peer_notice_t *self, peer_meter_t *meter);
void peer_notice_usage(peer_notice_t *self);

/* Re-send the unacknowledged notices now (a link came up), or when PEER_NOTICE_RESEND_MS
 * passed since the last time (tick). */
void peer_notice_resend(peer_notice_t *self);
void peer_notice_tick(peer_notice_t *self, uint64_t now_mono);
/* Milliseconds until the next tick has something to do. */
uint64_t peer_notice_timeout(const peer_notice_t *self, uint64_t now_mono);

/* Notices sent (the first time), re-sent; leases revoked. (Receipts are lease.c's: a broker's
 * STATUS is verified there, and peer_nstore_ack records it.) */
typedef struct {
    uint64_t sent, resent, revoked;
    uint64_t usage_sent; /* METERs sent (a record re-sent counts again) */
} peer_notice_stats_t;
void peer_notice_stats(const peer_notice_t *self, peer_notice_stats_t *out);

#endif
