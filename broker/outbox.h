/* outbox.h - frames that may leave only once the ledger transaction they depend on has
 * committed (issue 10: "no CLAIM before its intent, no GRANT before its record, is durable").
 *
 * Handlers queue; the event loop (server.c) commits the open ledger transaction once per
 * pass and then drains the queue, in order: each item is sent if the commit succeeded, or
 * refused (the item says to whom and how) if it failed. The module is a queue and nothing
 * else: it sends nothing and knows no socket, so it calls no module back.
 */
#ifndef CPN_OUTBOX_H
#define CPN_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "resource.h"
#include "transport.h"

typedef enum {
    OUTBOX_GRANT, /* to a tenant; on failure the tenant gets NACK `database` instead */
    OUTBOX_CLAIM, /* to a peer (or through a member); on failure its request is refused */
    OUTBOX_RECEIPT, /* a NOTICE's receipt to the peer or member that sent it; on failure
                       nothing: without it the sender sends the notice again */
    OUTBOX_HOME_CLAIM, /* our CLAIM for a summary row another broker claimed (fed_summary.c),
                          to our peer; on failure nothing: the origin times out, its intent
                          open */
} outbox_kind_t;

typedef struct {
    outbox_kind_t kind;
    uint8_t rid[CPN_RID_MAX]; /* the connection it goes to (a remote CLAIM: unused) */
    size_t rid_len;
    uint8_t *frame; /* owned by the outbox once queued */
    size_t len;
    /* GRANT: what a NACK in its place names (the request id or lease id, the tenant's seq). */
    char ref[CPN_NAME_MAX];
    uint64_t ref_seq;
    /* CLAIM: its seq (the request waiting for it), its peer, and the member it goes through
     * when `remote`. */
    uint64_t claim_seq;
    uint8_t peer[CPN_PK_LEN];
    bool remote;
    uint8_t via[CPN_PK_LEN];
} outbox_item_t;

typedef struct outbox outbox_t;

/* An empty outbox; NULL if out of memory. The caller owns it. */
outbox_t *outbox_new(void);
/* Free it and every frame still queued (not sent). Accepts NULL; clears *self_p. */
void outbox_destroy(outbox_t **self_p);

/* Queue a copy of *item; the outbox takes item->frame (item->frame becomes NULL) whatever
 * the result. CPN_E_NOMEM if it cannot grow (the frame is freed). */
int outbox_push(outbox_t *self, outbox_item_t *item) CPN_WUR;
/* Items queued. */
size_t outbox_len(const outbox_t *self);

/* Call fn for every item in the order queued, then free their frames. The queue is emptied
 * before the first call: what fn pushes stays queued for the next drain. Returns how many
 * items there were. */
typedef void (*outbox_fn)(const outbox_item_t *item, void *arg);
size_t outbox_drain(outbox_t *self, outbox_fn fn, void *arg);

#endif
