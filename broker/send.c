/* send.c - the broker's ways out, below every handler: which connection reaches a key
 * (routes), signing and sending a message to a connection, NACKs, refusal counters, and the
 * outbox of frames that wait for the ledger's commit (outbox.h).
 *
 * The handlers (claim, federation, query, zap) and the event loop (server.c) call down to
 * it; it calls none of them back, so no file of broker/ calls round a loop (STYLE rule 15,
 * tests/test_structure.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "log.h"

/* ---- routes: which connection reaches a key ---- */

static size_t s_route_slot(const uint8_t key[CPN_PK_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* keys are uniformly random */
    return (size_t)(h % BROKER_ROUTES_MAX);
}

void broker_route_set(broker_t *self, const uint8_t key[CPN_PK_LEN], const uint8_t *rid,
                      size_t rid_len)
{
    size_t i = s_route_slot(key), oldest = i;
    for (size_t probe = 0; probe < 64; probe++, i = (i + 1) % BROKER_ROUTES_MAX) {
        broker_route_t *r = &self->routes[i];
        if (!r->used || memcmp(r->key, key, CPN_PK_LEN) == 0) {
            oldest = i;
            break;
        }
        if (r->seen_mono < self->routes[oldest].seen_mono)
            oldest = i;
    }
    /* A full probe window replaces its least recently seen route: that key reconnects and
     * is learnt again from its next message. */
    broker_route_t *r = &self->routes[oldest];
    r->used = true;
    memcpy(r->key, key, CPN_PK_LEN);
    memcpy(r->rid, rid, rid_len);
    r->rid_len = rid_len;
    r->seen_mono = cpn_mono_ms();
}

const broker_route_t *broker_route(const broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    size_t i = s_route_slot(key);
    for (size_t probe = 0; probe < 64; probe++, i = (i + 1) % BROKER_ROUTES_MAX) {
        const broker_route_t *r = &self->routes[i];
        if (r->used && memcmp(r->key, key, CPN_PK_LEN) == 0)
            return r;
    }
    return NULL;
}

/* ---- sending ---- */

void broker_count_refusal(broker_t *self, int code)
{
    int slot = -code;
    if (slot > 0 && slot < BROKER_ERR_SLOTS)
        self->stats.refused[slot]++;
}

int broker_send_frame(broker_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                      size_t len)
{
    int r = cpn_send_to(self->router, rid, rid_len, frame, len);
    if (r != CPN_OK)
        log_warn("net", "send of %zu bytes dropped: %s", len, cpn_errname(r));
    return r;
}

int broker_send(broker_t *self, const uint8_t *rid, size_t rid_len, cpn_msg_type_t type,
                const void *body)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    int r = cpn_signer_build(&self->signer, type, body, &frame, &len);
    if (r == CPN_OK)
        r = broker_send_frame(self, rid, rid_len, frame, len);
    else
        log_error("net", "cannot build %s: %s", cpn_msg_name(type), cpn_errname(r));
    free(frame);
    return r;
}

void broker_error(broker_t *self, const uint8_t *rid, size_t rid_len, uint64_t ref_seq, int code,
                  const char *reason)
{
    cpn_error_t e;
    memset(&e, 0, sizeof e);
    e.code = code;
    e.ref_seq = ref_seq;
    snprintf(e.reason, sizeof e.reason, "%s", reason && reason[0] ? reason : cpn_strerror(code));
    (void)broker_send(self, rid, rid_len, CPN_MSG_ERROR, &e);
}

void broker_nack(broker_t *self, const uint8_t *rid, size_t rid_len, const char *ref,
                 uint64_t ref_seq, int code, const char *reason)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "%s", ref ? ref : "");
    n.ref_seq = ref_seq;
    n.code = code;
    snprintf(n.reason, sizeof n.reason, "%s", reason && reason[0] ? reason : cpn_strerror(code));
    self->stats.nacks++;
    if (-code > 0 && -code < BROKER_ERR_SLOTS)
        self->stats.nacks_by_code[-code]++;
    if (self->recent)
        recent_add(self->recent, cpn_now_ms(), code, n.ref, n.reason);
    (void)broker_send(self, rid, rid_len, CPN_MSG_NACK, &n);
}

int broker_queue(broker_t *self, outbox_item_t *item)
{
    int r = outbox_push(self->outbox, item);
    if (r != CPN_OK)
        log_error("net", "outbox: %s", cpn_errname(r));
    return r;
}

void broker_queue_grant(broker_t *self, const uint8_t *rid, size_t rid_len, uint8_t **frame_p,
                        size_t len, const char *ref, uint64_t ref_seq)
{
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    it.kind = OUTBOX_GRANT;
    memcpy(it.rid, rid, rid_len);
    it.rid_len = rid_len;
    it.frame = *frame_p;
    it.len = len;
    *frame_p = NULL;
    snprintf(it.ref, sizeof it.ref, "%s", ref ? ref : "");
    it.ref_seq = ref_seq;
    if (broker_queue(self, &it) != CPN_OK)
        broker_nack(self, rid, rid_len, ref, ref_seq, CPN_E_BUSY,
                    "the broker cannot queue the answer; send the request again");
}
