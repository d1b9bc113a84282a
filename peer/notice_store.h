/* notice_store.h - what the peer must still tell (NOTICEs) and what the operator took away
 * (drained packages), kept durably in the store's SQLite file beside the leases.
 *
 * Tables (created when missing, so a database of an older peer gains them):
 *   notices(lease_id PK, broker BLOB, frame BLOB, until_ms, acked)
 *     one NOTICE per revoked lease: the signed frame, the broker that claimed the lease (its
 *     key), and until when it is worth delivering (the lease's old end). `acked` becomes 1
 *     when that broker answers that it took the notice; until then it is re-sent.
 *   drains(package PK, since_ms)
 *     packages the operator drained (cpn-peer --drain): they advertise 0 free units and
 *     their leases are revoked. `cpn-peer --undrain` deletes the row.
 * Writes join the store's open transaction if there is one (peer_store_begin).
 */
#ifndef PEER_NOTICE_STORE_H
#define PEER_NOTICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "store.h"

/* Create the two tables if missing. CPN_E_DB on failure. */
int peer_nstore_init(peer_store_t *store) CPN_WUR;

/* Record a NOTICE for lease_id (replacing one recorded before, unacknowledged). */
int peer_nstore_put(peer_store_t *store, const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                    const uint8_t *frame, size_t len, uint64_t until_ms) CPN_WUR;
/* The broker `broker` took the notice of lease_id: stop re-sending it. *found (may be NULL):
 * whether an unacknowledged notice of that lease for that broker existed. */
int peer_nstore_ack(peer_store_t *store, const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                    bool *found) CPN_WUR;
/* Call fn for each unacknowledged notice with until_ms > now_ms, oldest first, at most max.
 * fn's frame is valid during the call only. */
typedef void (*peer_nstore_fn)(const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                               const uint8_t *frame, size_t len, void *arg);
int peer_nstore_pending(peer_store_t *store, uint64_t now_ms, size_t max, peer_nstore_fn fn,
                        void *arg) CPN_WUR;
/* Delete the notices whose lease's old end (until_ms) has passed, taken or not: nothing is
 * left to tell or to re-match then. So the table holds at most the notices of leases that
 * would still be running. *n (may be NULL): how many went. */
int peer_nstore_prune(peer_store_t *store, uint64_t now_ms, uint64_t *n) CPN_WUR;
/* Notices in the store: all (acked false) or only acknowledged ones (acked true). */
int peer_nstore_count(peer_store_t *store, bool acked, uint64_t *n) CPN_WUR;

/* Drain (on) or undrain (off) a package. */
int peer_nstore_drain_set(peer_store_t *store, const char *package, bool on,
                          uint64_t now_ms) CPN_WUR;
/* Call fn for each drained package. */
int peer_nstore_drains(peer_store_t *store, void (*fn)(const char *package, void *arg),
                       void *arg) CPN_WUR;
/* Call fn with the id of each active lease of `package`, at most max. */
int peer_nstore_active_leases(peer_store_t *store, const char *package, size_t max,
                              void (*fn)(const char *lease_id, void *arg), void *arg) CPN_WUR;

#endif
