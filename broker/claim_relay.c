/* claim_relay.c - RENEW and RELEASE relays (see claim_relay.h).
 *
 * The tenant's frame goes to the peer verbatim (the peer checks the tenant's signature); the
 * broker remembers the relay until the peer answers or claim_timeout passes. At most
 * BROKER_OPS_MAX at once: a tenant past that gets NACK busy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "claim_relay.h"
#include "log.h"

/* A tenant's RENEW or RELEASE relayed to a peer, waiting for its answer. */
typedef struct {
    bool used;
    uint8_t rid[CPN_RID_MAX];
    size_t rid_len;
    uint8_t tenant[CPN_PK_LEN];
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_NAME_MAX];
    uint64_t tenant_seq;
    uint64_t deadline_mono;
    cpn_msg_type_t kind;
} s_op_t;

struct claim_relay {
    const claim_svc_t *svc; /* the claim module's (claim.h), not owned */
    claim_clock_t clock;
    s_op_t ops[BROKER_OPS_MAX];
    size_t ops_top; /* every op in use is in ops[0 .. ops_top) (claim_relay_tick lowers it) */
};

claim_relay_t *claim_relay_new(const claim_svc_t *svc, const claim_clock_t *clock)
{
    claim_relay_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->svc = svc;
    self->clock = *clock;
    return self;
}

void claim_relay_destroy(claim_relay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

int claim_reach(const claim_svc_t *svc, const uint8_t peer[CPN_PK_LEN], bool *remote,
                uint8_t via[CPN_PK_LEN], const broker_route_t **route)
{
    const book_peer_t *bp = book_peer(svc->book, peer);
    *remote = bp && !sodium_is_zero(bp->via, CPN_PK_LEN);
    *route = NULL;
    if (*remote) {
        memcpy(via, bp->via, CPN_PK_LEN);
        return CPN_OK;
    }
    *route = svc->out.route(svc->out.ctx, peer);
    return *route ? CPN_OK : CPN_E_UNREACHABLE;
}

int claim_grant_build(const claim_svc_t *svc, const cpn_env_t *lenv, const char *request_id,
                      uint8_t **frame_p, size_t *len)
{
    cpn_grant_t g;
    memset(&g, 0, sizeof g);
    g.lease.ptr = lenv->frame;
    g.lease.len = lenv->frame_len;
    snprintf(g.request_id, sizeof g.request_id, "%s", request_id);
    return cpn_signer_build(svc->signer, CPN_MSG_GRANT, &g, frame_p, len);
}

static s_op_t *s_op_find(const claim_relay_t *self, const uint8_t peer[CPN_PK_LEN],
                         const char *lease_id, uint64_t tenant_seq)
{
    for (size_t i = 0; i < self->ops_top; i++) {
        const s_op_t *op = &self->ops[i];
        if (op->used && memcmp(op->peer, peer, CPN_PK_LEN) == 0 &&
            (lease_id ? strcmp(op->lease_id, lease_id) == 0 : op->tenant_seq == tenant_seq))
            return (s_op_t *)op;
    }
    return NULL;
}

int claim_relay_kind(const claim_relay_t *self, const uint8_t peer[CPN_PK_LEN],
                     const char *lease_id)
{
    const s_op_t *op = s_op_find(self, peer, lease_id, 0);
    return op ? (int)op->kind : 0;
}

bool claim_relay_lease(claim_relay_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                       const char *request_id)
{
    s_op_t *op = s_op_find(self, lenv->from, lease->lease_id, 0);
    if (!op)
        return false;
    uint8_t *grant = NULL;
    size_t len = 0;
    int r =
        strcmp(lease->state, "released") == 0
            ? ledger_release(self->svc->ledger, lenv->from, lease->lease_id, self->clock.now_ms())
            : ledger_renew(self->svc->ledger, lenv->from, lease->lease_id, lease->end_ms,
                           lease->renewals);
    if (r != CPN_OK && r != CPN_E_EXPIRED)
        log_warn("ledger", "lease %s: %s", lease->lease_id, cpn_errname(r));
    if (r == CPN_E_DB)
        self->svc->out.nack(self->svc->out.ctx, op->rid, op->rid_len, lease->lease_id,
                            op->tenant_seq, CPN_E_DB,
                            "the peer answered but the broker could not record it");
    else if (claim_grant_build(self->svc, lenv, request_id, &grant, &len) == CPN_OK)
        self->svc->out.queue_grant(self->svc->out.ctx, op->rid, op->rid_len, &grant, len,
                                   lease->lease_id, op->tenant_seq);
    free(grant);
    memset(op, 0, sizeof *op);
    return true;
}

bool claim_relay_nack(claim_relay_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t tenant_seq,
                      const cpn_nack_t *nack)
{
    s_op_t *op = s_op_find(self, peer, NULL, tenant_seq);
    if (!op)
        return false;
    self->svc->out.nack(self->svc->out.ctx, op->rid, op->rid_len, nack->ref, op->tenant_seq,
                        nack->code, nack->reason);
    memset(op, 0, sizeof *op);
    return true;
}

void claim_relay_on_tenant_op(claim_relay_t *self, const broker_rx_t *rx,
                              const uint8_t peer[CPN_PK_LEN], const char *lease_id)
{
    /* The audit log is a record, not a gate: a failed write is logged and the work goes on. */
    int ra = ledger_audit(self->svc->ledger, rx->env.ts_ms, cpn_msg_name(rx->env.type),
                          rx->env.from, CPN_OK, rx->env.frame, rx->env.frame_len);
    if (ra != CPN_OK)
        log_warn("ledger", "audit of a %s not written: %s", cpn_msg_name(rx->env.type),
                 cpn_errname(ra));
    const broker_route_t *route = NULL;
    uint8_t via[CPN_PK_LEN];
    bool remote = false;
    if (claim_reach(self->svc, peer, &remote, via, &route) != CPN_OK) {
        self->svc->out.nack(self->svc->out.ctx, rx->rid, rx->rid_len, lease_id, rx->env.seq,
                            CPN_E_UNREACHABLE,
                            "the lease's peer is not reachable from this broker");
        return;
    }
    s_op_t *op = NULL;
    for (size_t i = 0; i < BROKER_OPS_MAX && !op; i++)
        if (!self->ops[i].used) {
            op = &self->ops[i];
            if (i >= self->ops_top)
                self->ops_top = i + 1;
        }
    if (!op) {
        self->svc->out.nack(self->svc->out.ctx, rx->rid, rx->rid_len, lease_id, rx->env.seq,
                            CPN_E_BUSY, "too many renewals and releases in flight");
        return;
    }
    op->used = true;
    memcpy(op->rid, rx->rid, rx->rid_len);
    op->rid_len = rx->rid_len;
    memcpy(op->tenant, rx->env.from, CPN_PK_LEN);
    memcpy(op->peer, peer, CPN_PK_LEN);
    snprintf(op->lease_id, sizeof op->lease_id, "%s", lease_id);
    op->tenant_seq = rx->env.seq;
    op->kind = rx->env.type;
    op->deadline_mono = self->clock.mono_ms() + (*self->svc->pol)->limits.claim_timeout_s * 1000;
    int r;
    if (remote) {
        broker_fwd_ref_t ref = {.kind = rx->env.type, .tenant_seq = rx->env.seq};
        memcpy(ref.peer, peer, CPN_PK_LEN);
        snprintf(ref.lease_id, sizeof ref.lease_id, "%s", lease_id);
        r = self->svc->out.forward(self->svc->out.ctx, via, rx->env.frame, rx->env.frame_len, &ref);
    } else
        r = self->svc->out.send_frame(self->svc->out.ctx, route->rid, route->rid_len, rx->env.frame,
                                      rx->env.frame_len);
    if (r != CPN_OK) {
        self->svc->out.nack(self->svc->out.ctx, rx->rid, rx->rid_len, lease_id, rx->env.seq,
                            r == CPN_E_UNREACHABLE ? r : CPN_E_BUSY, NULL);
        memset(op, 0, sizeof *op);
    }
}

void claim_relay_tick(claim_relay_t *self, uint64_t now_mono)
{
    /* ops_top only grows as ops are taken; here it comes down to the highest one in use. */
    size_t top = 0;
    for (size_t i = 0; i < self->ops_top; i++) {
        s_op_t *op = &self->ops[i];
        if (op->used && now_mono < op->deadline_mono)
            top = i + 1;
        if (op->used && now_mono >= op->deadline_mono) {
            self->svc->out.nack(self->svc->out.ctx, op->rid, op->rid_len, op->lease_id,
                                op->tenant_seq, CPN_E_TIMEOUT, "the peer did not answer");
            memset(op, 0, sizeof *op);
        }
    }
    self->ops_top = top;
}
