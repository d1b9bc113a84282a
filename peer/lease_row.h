/* lease_row.h - one lease as the peer keeps it: the row type the store reads and writes and
 * the grant decisions (a pure core) judge, in a header of its own so that grant.h need not
 * include the store (SQLite). The functions are defined in store.c. */
#ifndef PEER_LEASE_ROW_H
#define PEER_LEASE_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "resource.h"

/* A lease of a package with a driver (docs/PROVISIONING.md) is first `provisioning`: units
 * reserved, committed, no LEASE yet, the driver's grant running; then `active` (LEASE
 * signed) or `failed` (the grant failed: units back, NACK provision-failed). A lease that
 * ended (released, expired) with a driver keeps its units until the driver's release
 * succeeded: `teardown` says that release is still due. */
typedef enum {
    PEER_LEASE_ACTIVE = 0,
    PEER_LEASE_RELEASED,
    PEER_LEASE_EXPIRED,
    PEER_LEASE_PROVISIONING,
    PEER_LEASE_FAILED,
    PEER_LEASE_REVOKED, /* ended by the peer: its capacity was lost, a NOTICE says so */
} peer_lease_state_t;

/* "active", "released", "expired", "provisioning", "failed", "revoked". */
const char *peer_lease_state_name(peer_lease_state_t s);
/* Parse a state name; -1 if unknown. */
int peer_lease_state_parse(const char *name);

/* One lease row. `frame` is malloc'd by the store's getters; free with peer_lease_row_clear. */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t tenant[CPN_PK_LEN];
    char request_id[CPN_NAME_MAX];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t price;
    uint64_t start_ms;
    uint64_t end_ms;
    peer_lease_state_t state;
    uint32_t renewals;
    uint8_t *frame; /* the latest LEASE; while provisioning (no LEASE yet): the CLAIM */
    size_t frame_len;
    uint64_t op_seq;             /* seq of the last RENEW/RELEASE applied; insert leaves it 0 */
    char driver[CPN_NAME_MAX];   /* the driver that serves the lease ("": none) */
    bool teardown;               /* the driver's release is due (units still used) */
} peer_lease_row_t;

void peer_lease_row_clear(peer_lease_row_t *row);

#endif
