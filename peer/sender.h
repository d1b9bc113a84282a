/* sender.h - the peer's signer with a durable sequence ceiling.
 *
 * Sequence numbers come from cpn_seq_next (max(last + 1, now_ms << 12)), which already
 * continues above the past after a restart as long as the clock does not go back. To hold
 * even when it does, the store keeps a reserved ceiling (meta "seq_ceiling"): before a seq
 * above the stored ceiling is used, ceiling = seq + PEER_SEQ_RESERVE is written; at start
 * the signer continues from the stored ceiling. PEER_SEQ_RESERVE = 2^20 is 256 ms of clock
 * (seq advances 4096 per ms), so a restarted peer is never more than that ahead of its
 * clock, well inside the brokers' skew window, and the write costs one small row update at
 * most every 256 ms while the peer is sending (or per 2^20 messages).
 *
 * Inside a store transaction the ceiling is written into that transaction: the caller must
 * send the frames built there only after the commit (the daemon does: a batch is answered
 * after its commit) and call peer_sender_rollback if the transaction is rolled back.
 */
#ifndef PEER_SENDER_H
#define PEER_SENDER_H

#include <stdint.h>

#include "envelope.h"
#include "store.h"
#include "transport.h"

#define PEER_SEQ_RESERVE (UINT64_C(1) << 20)
#define PEER_META_SEQ_CEILING "seq_ceiling"

typedef struct {
    cpn_signer_t signer;      /* identity borrowed */
    peer_store_t *store;      /* borrowed */
    uint64_t ceiling;         /* highest seq we may use (possibly not yet committed) */
    uint64_t durable_ceiling; /* the committed one */
} peer_sender_t;

/* Continue from the stored ceiling (0 if none). */
int peer_sender_init(peer_sender_t *self, const cpn_identity_t *id, peer_store_t *store) CPN_WUR;
/* Encode body and seal it with the next seq and the current time; reserves a new ceiling
 * first when needed (CPN_E_DB if that write fails: nothing is built). */
int peer_sender_build(peer_sender_t *self, cpn_msg_type_t type, const void *body, uint8_t **frame_p,
                      size_t *len) CPN_WUR;
/* The transaction the ceiling went into committed / rolled back. */
void peer_sender_commit(peer_sender_t *self);
void peer_sender_rollback(peer_sender_t *self);

#endif
