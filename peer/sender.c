/* sender.c - seq with a durable ceiling, then cpn_msg_build. */
#include "sender.h"

#include <inttypes.h>

#include "clock.h"
#include "log.h"
#include "msg.h"

int peer_sender_init(peer_sender_t *self, const cpn_identity_t *id, peer_store_t *store)
{
    uint64_t ceiling = 0;
    bool found = false;
    int r = peer_store_meta_get(store, PEER_META_SEQ_CEILING, &ceiling, &found);
    if (r != CPN_OK)
        return r;
    self->signer.id = id;
    self->signer.last_seq = found ? ceiling : 0;
    self->store = store;
    self->ceiling = self->durable_ceiling = found ? ceiling : 0;
    return CPN_OK;
}

int peer_sender_build(peer_sender_t *self, cpn_msg_type_t type, const void *body, uint8_t **frame_p,
                      size_t *len)
{
    uint64_t now = cpn_now_ms();
    uint64_t seq = cpn_seq_next(self->signer.last_seq, now);
    if (seq > self->ceiling) {
        uint64_t ceiling = seq + PEER_SEQ_RESERVE;
        int r = peer_store_meta_set(self->store, PEER_META_SEQ_CEILING, ceiling);
        if (r != CPN_OK) {
            log_error("peer", "cannot reserve sequence numbers: not sending");
            return r;
        }
        self->ceiling = ceiling;
        if (!peer_store_in_txn(self->store))
            self->durable_ceiling = ceiling;
    }
    int r = cpn_msg_build(self->signer.id, type, seq, now, body, frame_p, len);
    if (r == CPN_OK)
        self->signer.last_seq = seq;
    return r;
}

void peer_sender_commit(peer_sender_t *self)
{
    self->durable_ceiling = self->ceiling;
}

void peer_sender_rollback(peer_sender_t *self)
{
    self->ceiling = self->durable_ceiling;
}
