/* meter.h - the peer's USAGE records: made durably, kept until a broker takes them.
 *
 * Every lease the store holds is metered (common/usage.h): a record every `interval` while it
 * runs and a `final` one at its end (expiry, the release time, or the end a lease that
 * failed after it was granted was given). A lease still "provisioning" is not metered yet; one
 * that "failed" before it was ever metered never is. A record is made, signed
 * and written in one store transaction together with the lease's metering state (its last
 * n, to_ms, total and the record's hash), and only sent after that commit. So a peer killed
 * with -9 at any point either has the record (and sends it after the restart) or has not
 * made it (and makes it then, from the same committed state): a period is never metered
 * twice nor skipped, because each record starts where the last committed one ended and
 * totals are cumulative from the lease's start.
 *
 * Tables (in the peer's database, beside leases):
 *   meter(lease_id PK, n, to_ms, total, hash BLOB, done)  -- per lease, where metering stands
 *   usage(lease_id, n, frame BLOB, sent_ms, acked, receipt BLOB, PK(lease_id, n))
 *     -- every record made, and the broker's RECEIPT once one took it
 *   meta "meter_rowid": the leases rowid up to which leases have a meter row
 * New leases are found by rowid above the high-water mark, so metering never scans the
 * leases that ended long ago and costs nothing on the grant path.
 *
 * The clock is the caller's (now_ms), so tests drive time.
 */
#ifndef PEER_METER_H
#define PEER_METER_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "sender.h"
#include "store.h"
#include "usage.h"

/* Records made per tick at most: a backlog (a peer that was down for a long time) is worked
 * off over several ticks, so one tick never holds the write lock long. */
#define PEER_METER_BATCH_MAX 512
/* Unacknowledged records handed out per call of peer_meter_pending at most. */
#define PEER_METER_PENDING_MAX 256
#define PEER_META_METER_ROWID "meter_rowid"

typedef struct peer_meter peer_meter_t;

/* store and sender are borrowed. interval_ms: time between a running lease's records (> 0).
 * Creates the tables if needed. CPN_E_DB, CPN_E_NOMEM, CPN_E_INVAL. */
int peer_meter_new(peer_store_t *store, peer_sender_t *sender, uint64_t interval_ms,
                   peer_meter_t **out) CPN_WUR;
void peer_meter_destroy(peer_meter_t **self_p);

/* Make the records due at now_ms (at most PEER_METER_BATCH_MAX), in one committed
 * transaction; *made (may be NULL) = how many. Must be called outside a store transaction.
 * On an error nothing of the tick is kept (rolled back). */
int peer_meter_tick(peer_meter_t *self, uint64_t now_ms, size_t *made) CPN_WUR;

/* Call fn for each record not yet acknowledged whose last send is at or before
 * now_ms - resend_ms (never sent: always), oldest first, at most PEER_METER_PENDING_MAX; each
 * handed out is marked sent at now_ms. fn gets the frame (valid during the call) and the
 * lease's frame's CLAIM signer is not looked up here: the caller routes. */
typedef void (*peer_meter_send_fn)(const char *lease_id, uint32_t n, const uint8_t *frame,
                                   size_t len, void *arg);
int peer_meter_pending(peer_meter_t *self, uint64_t now_ms, uint64_t resend_ms,
                       peer_meter_send_fn fn, void *arg, size_t *handed) CPN_WUR;

/* A broker took record n of the lease (and so every earlier one): not sent again. */
int peer_meter_acked(peer_meter_t *self, const char *lease_id, uint32_t n) CPN_WUR;

/* A broker's RECEIPT for record n of the lease, naming the record's hash: if it is the hash
 * of our record n, the receipt (the broker's countersignature, `receipt`) is kept with it and
 * n and every earlier record count as taken (*found true); a receipt for another record
 * changes nothing (*found false). */
int peer_meter_receipt(peer_meter_t *self, const char *lease_id, uint32_t n,
                       const uint8_t hash[CPN_USAGE_HASH_LEN], const uint8_t *receipt,
                       size_t receipt_len, bool *found) CPN_WUR;

/* Leases whose metering has not ended (a lease running, or one whose final record is still
 * to be made): 0 lets the daemon stop ticking until a lease is granted. */
int peer_meter_open(peer_meter_t *self, uint64_t *open) CPN_WUR;

/* Counts for status and tests: records made, records not acknowledged. */
int peer_meter_counts(peer_meter_t *self, uint64_t *records, uint64_t *unacked) CPN_WUR;

#endif
