/* claim_fake_send.h - what tests/claim_fake_send.c captured (see there). */
#ifndef CPN_CLAIM_FAKE_SEND_H
#define CPN_CLAIM_FAKE_SEND_H

#include <stddef.h>
#include <stdint.h>

#include "claim.h"
#include "identity.h"
#include "msg.h"

#define FAKE_SENT_MAX 256

typedef enum { FAKE_MSG, FAKE_FRAME, FAKE_NACK, FAKE_CLAIM, FAKE_GRANT } fake_kind_t;

typedef struct {
    fake_kind_t kind;
    cpn_msg_type_t type;
    uint8_t *frame; /* CLAIM, GRANT, FRAME: the frame (owned here) */
    size_t len;
    uint64_t claim_seq; /* CLAIM */
    uint8_t peer[CPN_PK_LEN];
    char ref[CPN_NAME_MAX]; /* NACK, GRANT */
    uint64_t ref_seq;
    int code; /* NACK */
    char reason[CPN_REASON_MAX];
} fake_sent_t;

extern fake_sent_t g_sent[FAKE_SENT_MAX];
extern size_t g_n_sent;
extern uint64_t g_refusals;

/* Forget what was captured and the routes. */
void fake_reset(void);

/* The ways out that capture into g_sent; a NACK is also counted in stats->nacks. No member
 * is reachable (forward: CPN_E_UNREACHABLE) and no answer is carried back. */
claim_out_t fake_out(broker_stats_t *stats);
/* Where `key` is reached (routes for s_route; up to 8). */
void fake_route_set(const uint8_t key[CPN_PK_LEN], const uint8_t *rid, size_t rid_len);

#endif
