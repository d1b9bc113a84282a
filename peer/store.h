/* store.h - the peer's durable state in SQLite: leases and a small key/value table.
 *
 * The database is the authority on what the peer has granted. It runs in WAL mode with
 * synchronous=FULL, so a transaction that COMMIT returned for survives kill -9 and power
 * loss; the daemon answers a claim only after its row committed. Writes are grouped: the
 * caller opens one transaction per batch of messages (peer_store_begin), writes every
 * grant into it and commits once.
 *
 * Tables:
 *   leases(lease_id PK, tenant BLOB, request_id, package, units, price, start_ms, end_ms,
 *          state, renewals, frame BLOB, op_seq, driver, teardown,
 *          UNIQUE(tenant, request_id))
 *   meta(k PK, v)
 * `frame` is the latest LEASE frame the peer signed for the lease, so an idempotent retry
 * gets exactly the bytes it got before. `op_seq` is the seq of the last RENEW or RELEASE
 * applied to the lease (0: none), written with it, so a replayed one is refused after a
 * restart too; a database made before the column existed gets it (0) when opened.
 * `driver` names the provisioning driver of the lease ("" for none) and `teardown` (0/1) says
 * its release by the driver is still due: the units stay used until then (lease_row.h).
 */
#ifndef PEER_STORE_H
#define PEER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices.h"
#include "err.h"
#include "identity.h"
#include "lease_row.h"
#include "resource.h"

/* How long a statement waits for a lock held by another connection (a tool reading the
 * database) before failing with CPN_E_DB. */
#define PEER_STORE_BUSY_MS 5000


typedef struct peer_store peer_store_t;

/* Open (creating if needed) the database at path and set WAL, synchronous=FULL and the busy
 * timeout. CPN_E_DB with a log line on failure. */
int peer_store_open(const char *path, peer_store_t **out) CPN_WUR;
/* Rolls back an open transaction, closes. Accepts NULL. */
void peer_store_destroy(peer_store_t **self_p);

/* The connection, for modules that keep tables of their own in the peer's database inside
 * the same transactions (meter.c). Borrowed. */
struct sqlite3;
struct sqlite3 *peer_store_db(peer_store_t *self);

/* Transactions: begin takes the write lock at once (BEGIN IMMEDIATE). */
int peer_store_begin(peer_store_t *self) CPN_WUR;
int peer_store_commit(peer_store_t *self) CPN_WUR;
void peer_store_rollback(peer_store_t *self);
bool peer_store_in_txn(const peer_store_t *self);

/* Insert a new lease. CPN_E_CONFLICT if the lease id or (tenant, request id) exists. */
int peer_store_insert(peer_store_t *self, const peer_lease_row_t *row) CPN_WUR;
/* Update end, state, renewals, frame and op_seq of an existing lease. CPN_E_NO_LEASE if
 * none. */
int peer_store_update(peer_store_t *self, const peer_lease_row_t *row) CPN_WUR;

/* Look a lease up by id or by (tenant, request id). CPN_E_NO_LEASE if none; on CPN_OK the
 * caller owns row->frame. */
int peer_store_get(peer_store_t *self, const char *lease_id, peer_lease_row_t *row) CPN_WUR;
int peer_store_get_by_request(peer_store_t *self, const uint8_t tenant[CPN_PK_LEN],
                              const char *request_id, peer_lease_row_t *row) CPN_WUR;

/* Mark every active lease with end_ms <= now_ms expired; *n (may be NULL) = how many. */
int peer_store_expire(peer_store_t *self, uint64_t now_ms, size_t *n) CPN_WUR;
/* Earliest end_ms of the active leases; *found false if there is none. */
int peer_store_next_end(peer_store_t *self, uint64_t *end_ms, bool *found) CPN_WUR;

/* Call fn(package, units, arg) once per package with active leases, with the sum of their
 * units. A non-zero return from fn stops the walk and is returned. */
/* Record where the slice of lease_id (a shared package's lease) sits, inside the open
 * transaction of its insert: durable exactly when the lease is. */
int peer_store_slice_put(peer_store_t *self, const char *lease_id, const char *package,
                         const peer_slice_t *sl) CPN_WUR;
/* The slice recorded for lease_id, if any (*found). */
int peer_store_slice_get(peer_store_t *self, const char *lease_id, peer_slice_t *sl,
                         bool *found) CPN_WUR;
/* Call fn for the slice of every lease whose units are held (active, provisioning, or torn
 * down by its driver still), oldest first; stops at fn's first non-zero. */
int peer_store_slices(peer_store_t *self,
                      int (*fn)(const char *package, const peer_slice_t *sl, void *arg),
                      void *arg) CPN_WUR;
int peer_store_used(peer_store_t *self, int (*fn)(const char *package, uint64_t units, void *arg),
                    void *arg) CPN_WUR;

/* Call fn(row, arg) for every lease with a driver that is provisioning or active or whose
 * teardown is due, oldest first (the reconciliation at start and the teardown sweep). fn
 * must not write to the store. A non-zero return from fn stops the walk and is returned. */
int peer_store_each_driven(peer_store_t *self, int (*fn)(const peer_lease_row_t *row, void *arg),
                           void *arg) CPN_WUR;

/* Number of leases in a state (for status and tests). */
int peer_store_count(peer_store_t *self, peer_lease_state_t state, uint64_t *n) CPN_WUR;

/* meta table: unsigned integers by key. peer_store_meta_get sets *found false (and leaves
 * *v) when the key is absent. */
int peer_store_meta_get(peer_store_t *self, const char *k, uint64_t *v, bool *found) CPN_WUR;
int peer_store_meta_set(peer_store_t *self, const char *k, uint64_t v) CPN_WUR;

#endif
