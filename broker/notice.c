/* notice.c - NOTICE at a broker: check, record, receipt, carry on (notice.h). */
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chain.h"
#include "clock.h"
#include "federation.h"
#include "ledger_notice.h"
#include "log.h"
#include "msg_typed.h"

typedef notice_opened_t s_opened_t;

int notice_open(broker_t *self, const uint8_t *frame, size_t len, const uint8_t *signer,
                notice_opened_t *o, char why[CPN_REASON_MAX])
{
    const uint8_t *me = cpn_identity_pk(self->id);
    int r;
    snprintf(why, CPN_REASON_MAX, "the NOTICE does not parse");
    if ((r = cpn_env_parse(frame, len, &self->lim, &o->env)) != CPN_OK)
        return r;
    snprintf(why, CPN_REASON_MAX, "not a NOTICE");
    if (o->env.type != CPN_MSG_NOTICE)
        return CPN_E_WRONG_TYPE;
    snprintf(why, CPN_REASON_MAX, "the NOTICE is not signed by the peer that sent it");
    if (signer && sodium_memcmp(o->env.from, signer, CPN_PK_LEN) != 0)
        return CPN_E_UNTRUSTED;
    snprintf(why, CPN_REASON_MAX, "the NOTICE's signature or body");
    if ((r = cpn_sigcache_verify(self->sigcache, &o->env)) != CPN_OK ||
        (r = cpn_notice_decode(&o->env, &self->lim, &o->n)) != CPN_OK)
        return r;
    /* The lease it carries, signed by the notice's own signer: a peer speaks only for its
     * own leases. */
    cpn_chain_opts_t co = {.lim = &self->lim, .sigcache = self->sigcache, .peer_pk = o->env.from};
    if ((r = cpn_chain_open(o->n.lease.ptr, o->n.lease.len, CPN_MSG_LEASE, &co, &o->ch)) !=
        CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "the notice's lease: %.200s", o->ch.why);
        return r;
    }
    snprintf(why, CPN_REASON_MAX, "the notice names another lease than the one it carries");
    if (strcmp(o->n.lease_id, o->ch.lease.lease_id) != 0)
        return CPN_E_CHAIN;
    snprintf(why, CPN_REASON_MAX, "the notice names another tenant than the lease's");
    if (sodium_memcmp(o->n.tenant, o->ch.req_env.from, CPN_PK_LEN) != 0)
        return CPN_E_CHAIN;
    snprintf(why, CPN_REASON_MAX, "the notice leaves the lease %" PRIu32 " units of %" PRIu32,
             o->n.units, o->ch.lease.units);
    if (o->n.units >= o->ch.lease.units)
        return CPN_E_CHAIN;
    for (o->at = 0; o->at < o->ch.n_brokers; o->at++)
        if (sodium_memcmp(o->ch.brokers[o->at], me, CPN_PK_LEN) == 0)
            return CPN_OK;
    snprintf(why, CPN_REASON_MAX, "a lease this broker neither claimed nor carried");
    return CPN_E_UNTRUSTED;
}

/* STATUS {what: "notice", data: str lease id}, signed now. */
static int s_receipt(broker_t *self, const char *lease_id, uint8_t **frame_p, size_t *len)
{
    cpn_status_t st;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    memset(&st, 0, sizeof st);
    snprintf(st.what, sizeof st.what, "%s", CPN_NOTICE_WHAT);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mp_pack_str(&pk, lease_id);
    st.data = (mp_bytes_t){(const uint8_t *)sb.data, sb.size};
    int r = cpn_signer_build(&self->signer, CPN_MSG_STATUS, &st, frame_p, len);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

/* The receipt leaves once the transaction that recorded the notice has committed: to a peer
 * on its connection, to a member on our link (where its dispatch reads our messages). */
static void s_answer(broker_t *self, const broker_rx_t *rx, const char *lease_id)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    if (rx->roles & CPN_ROLE_BROKER) {
        if (s_receipt(self, lease_id, &frame, &len) == CPN_OK &&
            federation_send_frame(self, rx->env.from, frame, len) != CPN_OK)
            log_debug("notice", "receipt for %s not sent: the member sends it again", lease_id);
        free(frame);
        return;
    }
    if (s_receipt(self, lease_id, &frame, &len) != CPN_OK)
        return;
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    it.kind = OUTBOX_RECEIPT;
    memcpy(it.rid, rx->rid, rx->rid_len);
    it.rid_len = rx->rid_len;
    it.frame = frame;
    it.len = len;
    (void)broker_queue(self, &it);
}

/* Record a checked notice; the origin also ends the lease. */
static int s_record(broker_t *self, const s_opened_t *o, const uint8_t *frame, size_t len)
{
    ledger_notice_t ln;
    bool fresh = false;
    uint64_t now = cpn_now_ms();
    memset(&ln, 0, sizeof ln);
    memcpy(ln.peer, o->env.from, CPN_PK_LEN);
    snprintf(ln.lease_id, sizeof ln.lease_id, "%s", o->n.lease_id);
    memcpy(ln.tenant, o->n.tenant, CPN_PK_LEN);
    ln.code = o->n.code;
    snprintf(ln.reason, sizeof ln.reason, "%s", o->n.reason);
    ln.effective_ms = o->n.effective_ms;
    ln.units = o->n.units;
    ln.received_ms = now;
    memcpy(ln.origin, o->ch.brokers[0], CPN_PK_LEN);
    /* The tenant's broker places the rest elsewhere if the REQUEST asked it (rematch.h). */
    bool rematch = strcmp(o->ch.req.on_failure, CPN_ON_FAILURE_REMATCH) == 0;
    ln.todo = o->at != 0 ? LEDGER_NOTICE_FORWARD
              : rematch  ? LEDGER_NOTICE_REMATCH
                         : LEDGER_NOTICE_DONE;
    ln.next_ms = now;
    int r = ledger_notice_put(self->ledger, &ln, frame, len, &fresh);
    if (r != CPN_OK || !fresh)
        return r;
    if (o->at == 0 && o->n.units == 0) {
        r = ledger_revoke(self->ledger, o->env.from, o->n.lease_id, o->n.effective_ms);
        if (r == CPN_E_NO_LEASE || r == CPN_E_EXPIRED)
            r = CPN_OK; /* not recorded here (a GRANT lost in a crash), or ended already */
    }
    char kid[CPN_KID_LEN], tkid[CPN_KID_LEN];
    cpn_key_id(o->env.from, kid);
    cpn_key_id(o->n.tenant, tkid);
    log_info("notice", "NOTICE from peer %s: lease %s of tenant %s: %s (%s)%s", kid, o->n.lease_id,
             tkid, cpn_errname(o->n.code), o->n.reason,
             o->at == 0 ? "" : "; carried on towards the tenant's broker");
    self->stats.notices++;
    return r;
}

void notice_on_frame(broker_t *self, const broker_rx_t *rx, const uint8_t *frame, size_t len)
{
    char why[CPN_REASON_MAX];
    s_opened_t *o = calloc(1, sizeof *o);
    int r = CPN_E_NOMEM;
    snprintf(why, sizeof why, "out of memory");
    /* From a peer the notice is its own; from a member, any trusted peer's. */
    if (o &&
        (r = notice_open(self, frame, len, (rx->roles & CPN_ROLE_BROKER) ? NULL : rx->env.from, o,
                         why)) == CPN_OK &&
        (r = ledger_audit(self->ledger, o->env.ts_ms, "NOTICE", o->env.from, CPN_OK, frame, len)) ==
            CPN_OK &&
        (r = s_record(self, o, frame, len)) == CPN_OK) {
        s_answer(self, rx, o->n.lease_id);
        free(o);
        return;
    }
    broker_count_refusal(self, r);
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    log_warn("notice", "NOTICE via %s refused: %s: %s", kid, cpn_errname(r), why);
    broker_error(self, rx->rid, rx->rid_len, rx->env.seq, r, why);
    free(o);
}

/* A member's receipt for the notice of lease_id: it counts only from the broker we carry the
 * notice to (the one before us on its route), so no other member can stop its delivery. */
static void s_taken(broker_t *self, const broker_rx_t *rx, const char *lease_id)
{
    ledger_notice_t n;
    uint8_t *frame = NULL;
    size_t len = 0;
    char why[CPN_REASON_MAX];
    s_opened_t *o = calloc(1, sizeof *o);
    if (o && ledger_notice_forwarding(self->ledger, lease_id, &n, &frame, &len) == CPN_OK &&
        notice_open(self, frame, len, NULL, o, why) == CPN_OK && o->at > 0) {
        if (sodium_memcmp(o->ch.brokers[o->at - 1], rx->env.from, CPN_PK_LEN) != 0) {
            broker_count_refusal(self, CPN_E_UNTRUSTED);
            log_warn("notice", "receipt for %s from a member it was not sent to", lease_id);
        } else if (ledger_notice_set(self->ledger, n.peer, lease_id, LEDGER_NOTICE_DONE, 0, NULL) !=
                   CPN_OK)
            log_error("notice", "cannot record the receipt for %s", lease_id);
    }
    free(frame);
    free(o);
}

void notice_on_receipt(broker_t *self, const broker_rx_t *rx, const cpn_status_t *st)
{
    msgpack_zone zone;
    msgpack_object obj;
    char lease_id[CPN_NAME_MAX];
    if (strcmp(st->what, CPN_NOTICE_WHAT) != 0 || !msgpack_zone_init(&zone, 256))
        return;
    if (mp_parse(st->data.ptr, st->data.len, &self->lim, &zone, &obj) == CPN_OK &&
        obj.type == MSGPACK_OBJECT_STR && obj.via.str.size > 0 &&
        obj.via.str.size < sizeof lease_id) {
        memcpy(lease_id, obj.via.str.ptr, obj.via.str.size);
        lease_id[obj.via.str.size] = '\0';
        s_taken(self, rx, lease_id);
    } else
        broker_count_refusal(self, CPN_E_SCHEMA);
    msgpack_zone_destroy(&zone);
}

/* One notice due: carry it on to the broker before us on its route. */
static int s_due(const ledger_notice_t *n, const uint8_t *frame, size_t len, void *arg)
{
    broker_t *self = arg;
    uint64_t now = cpn_now_ms();
    s_opened_t *o = calloc(1, sizeof *o);
    char why[CPN_REASON_MAX];
    if (!o)
        return 1;
    int r = notice_open(self, frame, len, NULL, o, why);
    int todo = n->todo;
    if (r != CPN_OK || o->at == 0 || n->todo != LEDGER_NOTICE_FORWARD) {
        log_error("notice", "stored notice of %s: %s (dropped)", n->lease_id, why);
        todo = LEDGER_NOTICE_DONE;
    } else if (o->ch.lease.end_ms <= now) {
        log_warn("notice", "notice of %s not taken before the lease's end: given up", n->lease_id);
        todo = LEDGER_NOTICE_DONE;
    } else {
        cpn_forward_t f = {.hops = 1, .msg = {frame, len}};
        memcpy(f.to, o->env.from, CPN_PK_LEN);
        if (federation_send(self, o->ch.brokers[o->at - 1], CPN_MSG_FORWARD, &f) != CPN_OK)
            log_debug("notice", "notice of %s: the link back is down; again later", n->lease_id);
    }
    if (ledger_notice_set(self->ledger, n->peer, n->lease_id, todo, now + NOTICE_RETRY_MS, NULL) !=
        CPN_OK)
        log_error("notice", "cannot update the notice of %s", n->lease_id);
    free(o);
    return 0;
}

void notice_tick(broker_t *self, uint64_t now_ms)
{
    if (ledger_notice_due(self->ledger, LEDGER_NOTICE_FORWARD, now_ms, NOTICE_DUE_MAX, s_due,
                          self) != CPN_OK)
        log_error("notice", "cannot list the notices due");
}
