/* fed_forward.c - FORWARD: CLAIMs, RENEWs and RELEASEs carried towards a peer's home broker,
 * and their answers carried back, through a bounded table of what we forwarded.
 */
#include "federation_int.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "msg_typed.h"

/* For logs: the request (a claim) or the lease (a renewal or release) it is about. */
static const char *s_what(const fed_fwd_t *e)
{
    return e->req_id[0] ? e->req_id : e->ref.lease_id;
}

static fed_fwd_t *s_fwd_alloc(broker_t *self)
{
    struct federation *f = self->fed;
    if (f->n_fwd >= FED_FWD_MAX)
        return NULL;
    for (size_t i = 0; i < FED_FWD_MAX; i++)
        if (!f->fwd[i].used) {
            memset(&f->fwd[i], 0, sizeof f->fwd[i]);
            f->fwd[i].used = true;
            f->fwd[i].deadline_mono =
                cpn_mono_ms() + self->pol->limits.claim_timeout_s * 2000 + 1000;
            f->n_fwd++;
            return &f->fwd[i];
        }
    return NULL;
}

static void s_fwd_free(broker_t *self, fed_fwd_t *e)
{
    memset(e, 0, sizeof *e);
    self->fed->n_fwd--;
}

/* Forwarded messages whose answer did not come in time leave the table. */
void fed_forward_expire(broker_t *self, uint64_t now)
{
    struct federation *f = self->fed;
    for (size_t i = 0; i < FED_FWD_MAX && f->n_fwd; i++) {
        fed_fwd_t *e = &f->fwd[i];
        if (e->used && now >= e->deadline_mono) {
            log_debug("fed", "forwarded %s for %s: no answer in time", cpn_msg_name(e->ref.kind),
                      s_what(e));
            memset(e, 0, sizeof *e);
            f->n_fwd--;
        }
    }
}

int federation_route_open(broker_t *self, const uint8_t *route, size_t len,
                          const uint8_t peer[CPN_PK_LEN], cpn_env_t *inner, uint32_t *hops)
{
    return fed_route_open(&self->lim, self->sigcache, self->pol->federation.max_hops, route, len,
                          peer, inner, hops);
}

/* A refusal goes back the way the FORWARD came: our NACK inside a FORWARD naming it. */
static void s_nack_back(broker_t *self, fed_link_t *l, uint64_t in_seq,
                        const uint8_t peer[CPN_PK_LEN], const char *ref, int code,
                        const char *reason)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "%s", ref ? ref : "");
    n.ref_seq = in_seq;
    n.code = code;
    snprintf(n.reason, sizeof n.reason, "broker %s: %s", self->pol->broker.name,
             reason ? reason : cpn_strerror(code));
    uint8_t *frame = NULL;
    size_t len = 0;
    if (cpn_signer_build(&self->signer, CPN_MSG_NACK, &n, &frame, &len) == CPN_OK) {
        cpn_forward_t b = {.hops = 1, .msg = {frame, len}, .ref_seq = in_seq};
        memcpy(b.to, peer, CPN_PK_LEN);
        (void)fed_link_build(self, l, CPN_MSG_FORWARD, &b, NULL);
    }
    free(frame);
}

/* What a forwarded frame is, for matching its answer later. */
static int s_describe(broker_t *self, const cpn_env_t *inner, const uint8_t peer[CPN_PK_LEN],
                      fed_fwd_t *e)
{
    int r = CPN_OK;
    e->ref.kind = inner->type;
    memcpy(e->ref.peer, peer, CPN_PK_LEN);
    if (inner->type == CPN_MSG_CLAIM) {
        cpn_claim_t c;
        cpn_env_t renv;
        cpn_request_t req;
        if ((r = cpn_claim_decode(inner, &self->lim, &c)) != CPN_OK ||
            (r = cpn_env_open(c.request.ptr, c.request.len, &self->lim, &renv)) != CPN_OK ||
            (r = cpn_request_decode(&renv, &self->lim, &req)) != CPN_OK)
            return r;
        e->ref.claim_seq = inner->seq;
        memcpy(e->tenant, renv.from, CPN_PK_LEN);
        snprintf(e->req_id, sizeof e->req_id, "%s", req.id);
    } else if (inner->type == CPN_MSG_RENEW) {
        cpn_renew_t rn;
        if ((r = cpn_renew_decode(inner, &self->lim, &rn)) != CPN_OK)
            return r;
        snprintf(e->ref.lease_id, sizeof e->ref.lease_id, "%s", rn.lease_id);
    } else {
        cpn_release_t rl;
        if ((r = cpn_release_decode(inner, &self->lim, &rl)) != CPN_OK)
            return r;
        snprintf(e->ref.lease_id, sizeof e->ref.lease_id, "%s", rl.lease_id);
    }
    if (inner->type != CPN_MSG_CLAIM) {
        e->ref.tenant_seq = inner->seq;
        memcpy(e->tenant, inner->from, CPN_PK_LEN);
    }
    return CPN_OK;
}

/* We hold the peer's connection: the CLAIM to the peer is ours, carrying the chain as route;
 * a tenant's RENEW or RELEASE goes to the peer as it is. */
static int s_home(broker_t *self, const broker_rx_t *rx, const cpn_env_t *inner,
                  const broker_route_t *route, fed_fwd_t *e)
{
    int r;
    uint8_t *frame = NULL;
    size_t len = 0;
    if (inner->type != CPN_MSG_CLAIM) {
        r = broker_send_frame(self, route->rid, route->rid_len, inner->frame, inner->frame_len);
        e->out_seq = 0;
        goto out;
    }
    cpn_claim_t c;
    if ((r = cpn_claim_decode(inner, &self->lim, &c)) != CPN_OK)
        goto out;
    c.route.ptr = rx->env.frame;
    c.route.len = rx->env.frame_len;
    /* Never later than the deadline of the CLAIM we carry: the broker that sent it counts on
     * no grant after it (docs/PROTOCOL.md, "Exactly one lease per request"). */
    uint64_t ours = cpn_now_ms() + (uint64_t)self->pol->limits.claim_timeout_s * 1000;
    if (ours < c.deadline)
        c.deadline = ours;
    if ((r = cpn_signer_build(&self->signer, CPN_MSG_CLAIM, &c, &frame, &len)) != CPN_OK)
        goto out;
    e->out_seq = self->signer.last_seq;
    cpn_env_t env;
    /* The LEASE will carry this CLAIM back: remember it is ours and already good. */
    if (cpn_env_parse(frame, len, &self->lim, &env) == CPN_OK)
        cpn_sigcache_add(self->sigcache, &env);
    r = broker_send_frame(self, route->rid, route->rid_len, frame, len);
    self->fed->st.home_claims++;
    self->stats.claims_sent++;
out:
    free(frame);
    return r;
}

static void s_on_outbound(broker_t *self, const broker_rx_t *rx, fed_link_t *l,
                          const cpn_forward_t *fwd)
{
    struct federation *f = self->fed;
    cpn_env_t inner;
    uint32_t hops = 0;
    fed_fwd_t *e = NULL;
    char kid[CPN_KID_LEN];
    const char *why = NULL;
    int r;
    cpn_key_id(fwd->to, kid);
    f->st.forwards_in++;
    if ((r = federation_route_open(self, rx->env.frame, rx->env.frame_len, fwd->to, &inner,
                                   &hops)) != CPN_OK) {
        why = "the FORWARD chain does not verify";
        goto refuse;
    }
    if (fwd->hops != hops) {
        r = CPN_E_SCHEMA;
        why = "hops differs from the FORWARDs nested";
        goto refuse;
    }
    if (!(e = s_fwd_alloc(self))) {
        r = CPN_E_BUSY;
        why = "too many forwarded messages in flight";
        goto refuse;
    }
    if ((r = s_describe(self, &inner, fwd->to, e)) != CPN_OK) {
        why = "the forwarded message does not decode";
        goto refuse;
    }
    memcpy(e->from, l->key, CPN_PK_LEN);
    e->in_seq = rx->env.seq;
    if (ledger_audit(self->ledger, rx->env.ts_ms, "FORWARD", rx->env.from, CPN_OK, rx->env.frame,
                     rx->env.frame_len) != CPN_OK)
        log_warn("ledger", "audit of a FORWARD not written");
    /* A CLAIM for a row of our summary: we pick the package (fed_summary.c). */
    if (inner.type == CPN_MSG_CLAIM &&
        memcmp(fwd->to, cpn_identity_pk(self->id), CPN_PK_LEN) == 0) {
        if ((r = fed_summary_resolve(self, rx, &inner, e, &why)) == CPN_E_IN_DOUBT) {
            log_warn("fed", "CLAIM from %s for our summary (%s): no answer: %s", l->name,
                     s_what(e), why);
            s_fwd_free(self, e);
            return;
        }
        if (r != CPN_OK)
            goto refuse;
        log_info("fed", "CLAIM from %s for our summary (%s), %u hops: resolved", l->name,
                 s_what(e), hops);
        return;
    }
    const book_peer_t *bp = book_peer(self->book, fwd->to);
    const broker_route_t *route = broker_route(self, fwd->to);
    if (route && (!bp || fed_zero(bp->via))) {
        e->home = true;
        memcpy(e->next, fwd->to, CPN_PK_LEN);
        if ((r = s_home(self, rx, &inner, route, e)) != CPN_OK) {
            why = "the peer's connection did not take it";
            goto refuse;
        }
        log_info("fed", "%s from %s for peer %s (%s), %u hops: sent to the peer",
                 cpn_msg_name(inner.type), l->name, kid, s_what(e), hops);
        return;
    }
    fed_link_t *next = bp && !bp->withdrawn ? fed_link_find(self, bp->via) : NULL;
    if (!next || next == l) {
        r = CPN_E_UNREACHABLE;
        why = "no route to the peer from here";
        goto refuse;
    }
    if (hops + 1 > self->pol->federation.max_hops) {
        r = CPN_E_UNREACHABLE;
        why = "the peer is more than max_hops away";
        goto refuse;
    }
    cpn_forward_t w = {.hops = hops + 1, .msg = {rx->env.frame, rx->env.frame_len}};
    memcpy(w.to, fwd->to, CPN_PK_LEN);
    if ((r = fed_link_build(self, next, CPN_MSG_FORWARD, &w, &e->out_seq)) != CPN_OK) {
        why = "the next member's link is down";
        goto refuse;
    }
    memcpy(e->next, next->key, CPN_PK_LEN);
    f->st.forwards_out++;
    log_info("fed", "%s from %s for peer %s (%s): on to %s", cpn_msg_name(inner.type), l->name, kid,
             s_what(e), next->name);
    return;
refuse:
    log_warn("fed", "FORWARD from %s for peer %s refused: %s (%s)", l->name, kid, cpn_errname(r),
             why ? why : "-");
    broker_count_refusal(self, r);
    s_nack_back(self, l, rx->env.seq, fwd->to, e ? e->req_id : NULL, r, why);
    if (e)
        s_fwd_free(self, e);
}

static fed_fwd_t *s_fwd_by_out(broker_t *self, uint64_t seq, const uint8_t next[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; i < FED_FWD_MAX && f->n_fwd; i++) {
        fed_fwd_t *e = &f->fwd[i];
        if (e->used && !e->home && e->out_seq == seq && memcmp(e->next, next, CPN_PK_LEN) == 0)
            return e;
    }
    return NULL;
}

/* An answer coming back: pass it on towards where the FORWARD came from, or, at the origin,
 * open it and hand it to claim.c. */
static void s_on_return(broker_t *self, const broker_rx_t *rx, fed_link_t *l,
                        const cpn_forward_t *fwd)
{
    struct federation *f = self->fed;
    fed_fwd_t *e = s_fwd_by_out(self, fwd->ref_seq, l->key);
    if (!e) {
        /* Never sent, or given up on: refused like any answer that does not match our CLAIM. */
        broker_count_refusal(self, CPN_E_CHAIN);
        log_warn("fed", "answer from %s for nothing we forwarded (seq %" PRIu64 ")", l->name,
                 fwd->ref_seq);
        return;
    }
    if (!e->origin) {
        fed_link_t *back = fed_link_find(self, e->from);
        cpn_forward_t b = {
            .hops = fwd->hops + 1, .msg = {rx->env.frame, rx->env.frame_len}, .ref_seq = e->in_seq};
        memcpy(b.to, fwd->to, CPN_PK_LEN);
        if (back && fed_link_build(self, back, CPN_MSG_FORWARD, &b, NULL) == CPN_OK)
            f->st.answers_back++;
        else
            log_warn("fed", "answer for %s could not go back: link down", s_what(e));
        s_fwd_free(self, e);
        return;
    }
    /* At the origin: the answer inside the FORWARDs of the way back (fed_check.h). */
    cpn_env_t env;
    int r = fed_answer_open(&self->lim, self->sigcache, self->pol->federation.max_hops,
                            fwd->msg.ptr, fwd->msg.len, &env);
    broker_fwd_ref_t ref = e->ref;
    s_fwd_free(self, e);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("fed", "answer from %s refused: %s", l->name, cpn_errname(r));
        return;
    }
    if (self->on_remote_answer)
        self->on_remote_answer(self, &env, &ref);
}

void federation_on_forward(broker_t *self, const broker_rx_t *rx, const cpn_forward_t *fwd)
{
    fed_link_t *l = fed_link_find(self, rx->env.from);
    cpn_env_t inner;
    if (!l)
        return;
    /* A peer's NOTICE on its way to the tenant's broker: the notice module's (through the
     * pointer server_new wires, so that the two files do not call each other). */
    if (!fwd->ref_seq &&
        cpn_env_parse(fwd->msg.ptr, fwd->msg.len, &self->lim, &inner) == CPN_OK &&
        inner.type == CPN_MSG_NOTICE && self->on_notice) {
        self->on_notice(self, rx, fwd->msg.ptr, fwd->msg.len);
        return;
    }
    if (fwd->ref_seq)
        s_on_return(self, rx, l, fwd);
    else
        s_on_outbound(self, rx, l, fwd);
}

int federation_forward(broker_t *self, const uint8_t via[CPN_PK_LEN], const uint8_t *frame,
                       size_t len, const broker_fwd_ref_t *ref)
{
    fed_link_t *l = fed_link_find(self, via);
    if (!l)
        return CPN_E_UNREACHABLE;
    fed_fwd_t *e = s_fwd_alloc(self);
    if (!e)
        return CPN_E_BUSY;
    cpn_forward_t f = {.hops = 1, .msg = {frame, len}};
    memcpy(f.to, ref->peer, CPN_PK_LEN);
    int r = fed_link_build(self, l, CPN_MSG_FORWARD, &f, &e->out_seq);
    if (r != CPN_OK) {
        s_fwd_free(self, e);
        return CPN_E_UNREACHABLE;
    }
    e->origin = true;
    e->ref = *ref;
    memcpy(e->next, via, CPN_PK_LEN);
    self->fed->st.forwards_out++;
    return CPN_OK;
}

bool federation_peer_answer(broker_t *self, const cpn_env_t *answer, uint64_t claim_seq,
                            const uint8_t *tenant, const char *req_id, const char *lease_id)
{
    struct federation *f = self->fed;
    fed_fwd_t *hit = NULL;
    bool lease = answer->type == CPN_MSG_LEASE;
    for (size_t i = 0; f && i < FED_FWD_MAX && f->n_fwd && !hit; i++) {
        fed_fwd_t *e = &f->fwd[i];
        if (!e->used || !e->home || memcmp(e->ref.peer, answer->from, CPN_PK_LEN) != 0)
            continue;
        if (e->ref.kind == CPN_MSG_CLAIM) {
            /* A retried claim is answered with the lease of the first one: match it by the
             * tenant's request too. */
            if (e->out_seq == claim_seq ||
                (lease && tenant && req_id && memcmp(e->tenant, tenant, CPN_PK_LEN) == 0 &&
                 strcmp(e->req_id, req_id) == 0))
                hit = e;
        } else if (lease ? lease_id && strcmp(e->ref.lease_id, lease_id) == 0
                         : e->ref.tenant_seq == claim_seq)
            hit = e;
    }
    if (!hit)
        return false;
    fed_link_t *back = fed_link_find(self, hit->from);
    cpn_forward_t b = {
        .hops = 1, .msg = {answer->frame, answer->frame_len}, .ref_seq = hit->in_seq};
    memcpy(b.to, answer->from, CPN_PK_LEN);
    if (back && fed_link_build(self, back, CPN_MSG_FORWARD, &b, NULL) == CPN_OK) {
        f->st.answers_back++;
        log_info("fed", "%s for %s passed back to %s", cpn_msg_name(answer->type), s_what(hit),
                 back->name);
    } else
        log_warn("fed", "%s for %s could not go back: link down", cpn_msg_name(answer->type),
                 s_what(hit));
    s_fwd_free(self, hit);
    return true;
}

int federation_send(broker_t *self, const uint8_t key[CPN_PK_LEN], cpn_msg_type_t type,
                    const void *body)
{
    fed_link_t *l = fed_link_find(self, key);
    return l ? fed_link_build(self, l, type, body, NULL) : CPN_E_UNREACHABLE;
}

int federation_send_frame(broker_t *self, const uint8_t key[CPN_PK_LEN], const uint8_t *frame,
                          size_t len)
{
    fed_link_t *l = fed_link_find(self, key);
    return l ? fed_link_send(l, frame, len) : CPN_E_UNREACHABLE;
}
