/* ledger_notice.h - the peers' NOTICEs in the broker's ledger (table `notices`, schema
 * version 3), one per (peer, lease id), written in the loop pass's transaction like the rest.
 *
 * A notice is recorded by every broker it reaches: the peer's home broker (which answers the
 * peer with a receipt once the row is committed), each broker that carries it on towards the
 * tenant's broker (the route's origin), and the origin itself, which shows it to the tenant
 * (`cpnctl leases`, `cpnctl watch`) and, if the REQUEST asked `on_failure: rematch`, places
 * the rest of the lease elsewhere. What is left to do for a notice is its `todo`:
 *   LEDGER_NOTICE_DONE     nothing (delivered: the tenant is ours; or carried on and taken)
 *   LEDGER_NOTICE_FORWARD  carry it on towards `origin` (re-tried until a receipt comes)
 *   LEDGER_NOTICE_REMATCH  place the rest of the lease elsewhere (re-tried until a lease or
 *                          a final refusal; `replaced_by` names the new lease)
 * `tries` and `next_ms` pace the re-tries; both end at the lease's old end at the latest.
 */
#ifndef CPN_LEDGER_NOTICE_H
#define CPN_LEDGER_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "msg.h"

enum { LEDGER_NOTICE_DONE = 0, LEDGER_NOTICE_FORWARD = 1, LEDGER_NOTICE_REMATCH = 2 };

typedef struct {
    int64_t id; /* arrival order at this broker: the `notices` query's cursor */
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_NAME_MAX];
    uint8_t tenant[CPN_PK_LEN];
    int32_t code;
    char reason[CPN_REASON_MAX];
    uint64_t effective_ms;
    uint32_t units;
    uint64_t received_ms;
    uint8_t origin[CPN_PK_LEN]; /* the tenant's broker (this one for our own tenants) */
    int todo;                   /* LEDGER_NOTICE_* */
    uint32_t tries;
    uint64_t next_ms;               /* wall clock: the next try of `todo` */
    char replaced_by[CPN_NAME_MAX]; /* rematch: the new lease's id */
} ledger_notice_t;

/* Record a notice with its NOTICE frame (as the peer signed it). Recording the same (peer,
 * lease id) again changes nothing: *fresh (may be NULL) says whether it was new. */
int ledger_notice_put(ledger_t *self, const ledger_notice_t *n, const uint8_t *frame, size_t len,
                      bool *fresh) CPN_WUR;
/* One notice by (peer, lease id); CPN_E_NO_LEASE if none. frame_p (may be NULL): a malloc'd
 * copy of the NOTICE frame the caller frees. */
int ledger_notice_get(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      ledger_notice_t *out, uint8_t **frame_p, size_t *len) CPN_WUR;
/* The notices of `tenant` whose origin is `origin` (this broker: its own tenants' notices, not
 * those it only carries on) with id > after, in id order, at most max; cb non-zero stops. */
typedef int (*ledger_notice_cb)(const ledger_notice_t *n, void *arg);
int ledger_notice_list(ledger_t *self, const uint8_t tenant[CPN_PK_LEN],
                       const uint8_t origin[CPN_PK_LEN], int64_t after, size_t max,
                       ledger_notice_cb cb, void *arg) CPN_WUR;
/* The notices whose `todo` is `todo` and due (next_ms <= now_ms), oldest first, at most max,
 * with their frames (valid during cb only; cb may write to the ledger). */
typedef int (*ledger_notice_due_cb)(const ledger_notice_t *n, const uint8_t *frame, size_t len,
                                    void *arg);
int ledger_notice_due(ledger_t *self, int todo, uint64_t now_ms, size_t max,
                      ledger_notice_due_cb cb, void *arg) CPN_WUR;
/* The notice of lease_id we still carry on (todo FORWARD), with a malloc'd copy of its frame
 * (the caller frees it), for a receipt: CPN_E_NO_LEASE if none. Lease ids name one (peer,
 * tenant, request) each (a 96-bit hash, §7 LEASE). */
int ledger_notice_forwarding(ledger_t *self, const char *lease_id, ledger_notice_t *out,
                             uint8_t **frame_p, size_t *len) CPN_WUR;
/* Set what is left to do for a notice, when next, and (not NULL) the replacing lease id;
 * tries is counted up by one unless todo is DONE. */
int ledger_notice_set(ledger_t *self, const uint8_t peer[CPN_PK_LEN], const char *lease_id,
                      int todo, uint64_t next_ms, const char *replaced_by) CPN_WUR;

#endif
