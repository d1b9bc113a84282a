/* rematch.c - replacement leases for revoked ones (rematch.h). */
#include "rematch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chain.h"
#include "clock.h"
#include "ledger_notice.h"
#include "log.h"
#include "msg_typed.h"
#include "notice.h"

/* One notice being re-matched: its replacement CLAIM in flight (seq 0: none) and the peers
 * that refused it. */
typedef struct {
    bool used;
    uint8_t npeer[CPN_PK_LEN];   /* the revoked lease's peer */
    char lease_id[CPN_NAME_MAX]; /* the revoked lease */
    uint64_t seq;                /* the CLAIM in flight */
    uint8_t peer[CPN_PK_LEN];    /* its peer */
    uint8_t tenant[CPN_PK_LEN];  /* and its request: a peer that granted before answers a */
    char req_id[CPN_NAME_MAX];   /* CLAIM again with the LEASE of the first CLAIM (RESEND) */
    bool fenced;                 /* a refusal of it is final (§13 rule 6) */
    uint64_t deadline_ms;
    uint8_t excluded[REMATCH_EXCLUDE][CPN_PK_LEN];
    uint32_t n_excluded;
} s_slot_t;

struct rematch {
    s_slot_t slots[REMATCH_MAX];
    size_t n_waiting; /* slots with a CLAIM in flight */
};

rematch_t *rematch_new(void)
{
    return calloc(1, sizeof(rematch_t));
}

void rematch_destroy(rematch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

static s_slot_t *s_slot(rematch_t *m, const uint8_t npeer[CPN_PK_LEN], const char *lease_id,
                        bool make)
{
    s_slot_t *free_slot = NULL;
    for (size_t i = 0; i < REMATCH_MAX; i++) {
        s_slot_t *s = &m->slots[i];
        if (s->used && memcmp(s->npeer, npeer, CPN_PK_LEN) == 0 &&
            strcmp(s->lease_id, lease_id) == 0)
            return s;
        if (!s->used && !free_slot)
            free_slot = s;
    }
    if (!make || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    memcpy(free_slot->npeer, npeer, CPN_PK_LEN);
    snprintf(free_slot->lease_id, sizeof free_slot->lease_id, "%s", lease_id);
    return free_slot;
}

static void s_forget(rematch_t *m, s_slot_t *s)
{
    if (s->seq)
        m->n_waiting--;
    memset(s, 0, sizeof *s);
}

static bool s_excluded(const s_slot_t *s, const uint8_t peer[CPN_PK_LEN])
{
    if (memcmp(peer, s->npeer, CPN_PK_LEN) == 0)
        return true; /* never on the capacity that was lost */
    for (uint32_t i = 0; i < s->n_excluded; i++)
        if (memcmp(peer, s->excluded[i], CPN_PK_LEN) == 0)
            return true;
    return false;
}

/* The notice is settled: nothing more to do for it, `replaced_by` the new lease or "". */
static void s_done(broker_t *self, s_slot_t *s, const uint8_t npeer[CPN_PK_LEN],
                   const char *lease_id, const char *replaced_by)
{
    if (ledger_notice_set(self->ledger, npeer, lease_id, LEDGER_NOTICE_DONE, 0, replaced_by) !=
        CPN_OK)
        log_error("rematch", "cannot settle the notice of %s", lease_id);
    if (s)
        s_forget(self->rematch, s);
}

/* A candidate for the lost units: an open intent at a peer we may claim again, else the best
 * offer of a directly connected peer not excluded. *units and *price from it. */
static int s_candidate(broker_t *self, const notice_opened_t *o, s_slot_t *s, uint32_t lost,
                       match_cand_t *out, bool *fenced)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    uint64_t now = cpn_now_ms(), skew = (uint64_t)self->pol->limits.skew_s * 1000;
    const cpn_request_t *req = &o->ch.req;
    if (ledger_intents(self->ledger, o->n.tenant, req->id, in, BROKER_CANDS_MAX, &n) != CPN_OK)
        return CPN_E_DB;
    for (size_t i = 0; i < n && i < BROKER_CANDS_MAX; i++) {
        if (memcmp(in[i].peer, s->npeer, CPN_PK_LEN) == 0)
            continue;
        /* A CLAIM may have reached that peer: it alone may serve the request now (§13). */
        memset(out, 0, sizeof *out);
        memcpy(out->peer, in[i].peer, CPN_PK_LEN);
        snprintf(out->package, sizeof out->package, "%s", in[i].package);
        out->units = in[i].units;
        const book_peer_t *bp = book_peer(self->book, in[i].peer);
        for (uint32_t k = 0; bp && k < bp->n_packages; k++)
            if (strcmp(bp->packages[k].id, in[i].package) == 0)
                out->price = bp->packages[k].price;
        *fenced = now > in[i].deadline_ms + skew;
        return out->price ? CPN_OK : CPN_E_UNREACHABLE;
    }
    cpn_request_t want = *req;
    want.units = lost;
    want.split = false;
    match_cand_t cands[BROKER_CANDS_MAX];
    match_fail_t fail;
    if (match_find(self->book, &want, &self->pol->placement, now, cands, BROKER_CANDS_MAX, &n,
                   &fail) != CPN_OK)
        return CPN_E_NO_MATCH;
    for (size_t i = 0; i < n; i++) {
        const book_peer_t *bp = book_peer(self->book, cands[i].peer);
        /* A home broker would claim with a CLAIM of its own, without `replaces`: only peers
         * connected to us directly serve a replacement in this version. */
        if (s_excluded(s, cands[i].peer) || !bp || !sodium_is_zero(bp->via, CPN_PK_LEN) ||
            !broker_route(self, cands[i].peer))
            continue;
        *out = cands[i];
        out->units = lost;
        *fenced = true; /* no intent: the first CLAIM to this peer for the request */
        return CPN_OK;
    }
    return CPN_E_NO_MATCH;
}

/* Sign the replacement CLAIM, record its intent in the open transaction, queue it. */
static int s_claim(broker_t *self, const notice_opened_t *o, const uint8_t *nframe, size_t nlen,
                   s_slot_t *s, const match_cand_t *c, bool fenced)
{
    const broker_route_t *route = broker_route(self, c->peer);
    uint64_t now = cpn_now_ms();
    uint64_t rest_ms = o->ch.lease.end_ms - now; /* > 0: checked by the caller */
    if (!route)
        return CPN_E_UNREACHABLE;
    cpn_claim_t claim;
    memset(&claim, 0, sizeof claim);
    claim.request = o->ch.claim.request; /* the tenant's REQUEST, verbatim */
    memcpy(claim.peer, c->peer, CPN_PK_LEN);
    snprintf(claim.package, sizeof claim.package, "%s", c->package);
    claim.units = c->units;
    claim.price = c->price;
    claim.duration_s = (rest_ms + 999) / 1000;
    if (claim.duration_s > o->ch.req.duration_s)
        claim.duration_s = o->ch.req.duration_s;
    claim.deadline = now + (uint64_t)self->pol->limits.claim_timeout_s * 1000;
    claim.replaces = (mp_bytes_t){nframe, nlen};
    ledger_intent_t in;
    memset(&in, 0, sizeof in);
    memcpy(in.tenant, o->n.tenant, CPN_PK_LEN);
    snprintf(in.request_id, sizeof in.request_id, "%s", o->ch.req.id);
    memcpy(in.peer, c->peer, CPN_PK_LEN);
    snprintf(in.package, sizeof in.package, "%s", c->package);
    in.units = claim.units;
    in.deadline_ms = claim.deadline;
    in.duration_s = claim.duration_s;
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    int r;
    if ((r = ledger_intent_add(self->ledger, &in)) != CPN_OK ||
        (r = cpn_signer_build(&self->signer, CPN_MSG_CLAIM, &claim, &it.frame, &it.len)) != CPN_OK)
        return r;
    it.kind = OUTBOX_CLAIM;
    it.claim_seq = self->signer.last_seq;
    memcpy(it.peer, c->peer, CPN_PK_LEN);
    memcpy(it.rid, route->rid, route->rid_len);
    it.rid_len = route->rid_len;
    if ((r = broker_queue(self, &it)) != CPN_OK)
        return r;
    if (!s->seq)
        self->rematch->n_waiting++;
    s->seq = self->signer.last_seq;
    memcpy(s->peer, c->peer, CPN_PK_LEN);
    memcpy(s->tenant, o->n.tenant, CPN_PK_LEN);
    snprintf(s->req_id, sizeof s->req_id, "%s", o->ch.req.id);
    s->fenced = fenced;
    s->deadline_ms = claim.deadline;
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    log_info("rematch", "lease %s: %" PRIu32 " x %s at %s for %" PRIu64 " s (request %s)",
             s->lease_id, claim.units, c->package, kid, claim.duration_s, o->ch.req.id);
    return CPN_OK;
}

static int s_due(const ledger_notice_t *n, const uint8_t *frame, size_t len, void *arg)
{
    broker_t *self = arg;
    uint64_t now = cpn_now_ms(), next = now + REMATCH_IDLE_MS;
    char why[CPN_REASON_MAX];
    notice_opened_t *o = calloc(1, sizeof *o);
    if (!o)
        return 1;
    s_slot_t *s = s_slot(self->rematch, n->peer, n->lease_id, true);
    match_cand_t c;
    bool fenced = true;
    if (notice_open(self, frame, len, NULL, o, why) != CPN_OK || o->at != 0) {
        log_error("rematch", "stored notice of %s: %s (dropped)", n->lease_id, why);
        s_done(self, s, n->peer, n->lease_id, NULL);
    } else if (o->ch.lease.end_ms <= now + 1000 || n->tries >= REMATCH_TRIES) {
        log_warn("rematch", "lease %s: not replaced (%s)", n->lease_id,
                 n->tries >= REMATCH_TRIES ? "no peer took it" : "its end has come");
        s_done(self, s, n->peer, n->lease_id, NULL);
    } else if (!s) {
        next = now; /* every slot busy: the next tick */
    } else if (s->seq && now <= s->deadline_ms) {
        next = s->deadline_ms; /* its CLAIM is out */
    } else if (s_candidate(self, o, s, o->ch.lease.units - o->n.units, &c, &fenced) == CPN_OK &&
               s_claim(self, o, frame, len, s, &c, fenced) == CPN_OK) {
        next = s->deadline_ms + 1;
    }
    if (o->at == 0 && s && s->used &&
        ledger_notice_set(self->ledger, n->peer, n->lease_id, LEDGER_NOTICE_REMATCH, next, NULL) !=
            CPN_OK)
        log_error("rematch", "cannot update the notice of %s", n->lease_id);
    free(o);
    return 0;
}

void rematch_tick(broker_t *self, uint64_t now_ms)
{
    if (ledger_notice_due(self->ledger, LEDGER_NOTICE_REMATCH, now_ms, REMATCH_MAX, s_due, self) !=
        CPN_OK)
        log_error("rematch", "cannot list the notices to re-match");
}

/* The slot whose CLAIM in flight has this seq and peer. */
static s_slot_t *s_by_seq(rematch_t *m, uint64_t seq, const uint8_t peer[CPN_PK_LEN])
{
    for (size_t i = 0; seq && i < REMATCH_MAX; i++)
        if (m->slots[i].used && m->slots[i].seq == seq &&
            memcmp(m->slots[i].peer, peer, CPN_PK_LEN) == 0)
            return &m->slots[i];
    return NULL;
}

/* Record the replacement lease (the LEASE in lenv, its chain ch) with a GRANT of ours. */
static int s_record(broker_t *self, s_slot_t *s, const cpn_env_t *lenv, const cpn_chain_t *ch)
{
    ledger_lease_t rec;
    cpn_grant_t g;
    uint8_t *grant = NULL;
    size_t glen = 0;
    memset(&rec, 0, sizeof rec);
    memset(&g, 0, sizeof g);
    g.lease = (mp_bytes_t){lenv->frame, lenv->frame_len};
    snprintf(g.request_id, sizeof g.request_id, "%s", ch->req.id);
    snprintf(rec.lease_id, sizeof rec.lease_id, "%s", ch->lease.lease_id);
    memcpy(rec.tenant, ch->req_env.from, CPN_PK_LEN);
    memcpy(rec.peer, lenv->from, CPN_PK_LEN);
    snprintf(rec.package, sizeof rec.package, "%s", ch->lease.package);
    rec.units = ch->lease.units;
    const book_peer_t *bp = book_peer(self->book, lenv->from);
    for (uint32_t k = 0; bp && k < bp->n_packages; k++)
        if (strcmp(bp->packages[k].id, rec.package) == 0)
            rec.accelerators = (uint64_t)rec.units * bp->packages[k].accel.count;
    rec.price = ch->lease.price;
    rec.start_ms = ch->lease.start_ms;
    rec.end_ms = ch->lease.end_ms;
    snprintf(rec.request_id, sizeof rec.request_id, "%s", ch->req.id);
    int r;
    if ((r = cpn_signer_build(&self->signer, CPN_MSG_GRANT, &g, &grant, &glen)) == CPN_OK &&
        (r = ledger_record_grant(self->ledger, &rec, grant, glen)) == CPN_OK &&
        (r = ledger_intent_resolve(self->ledger, rec.tenant, rec.request_id, rec.peer)) == CPN_OK)
        s_done(self, NULL, s->npeer, s->lease_id, rec.lease_id);
    free(grant);
    return r;
}

/* Is a replacement CLAIM to `peer` in flight? */
static bool s_waiting_on(const rematch_t *m, const uint8_t peer[CPN_PK_LEN])
{
    for (size_t i = 0; i < REMATCH_MAX; i++)
        if (m->slots[i].used && m->slots[i].seq && memcmp(m->slots[i].peer, peer, CPN_PK_LEN) == 0)
            return true;
    return false;
}

bool rematch_on_lease(broker_t *self, const broker_rx_t *rx, const cpn_lease_t *lease)
{
    rematch_t *m = self->rematch;
    (void)lease;
    if (!m || m->n_waiting == 0 || !s_waiting_on(m, rx->env.from))
        return false; /* the path of every other LEASE: one compare, or a short scan */
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t co = {.lim = &self->lim,
                           .sigcache = self->sigcache,
                           .claim_pk = cpn_identity_pk(self->id),
                           .peer_pk = rx->env.from};
    s_slot_t *s = NULL;
    if (!ch || cpn_chain_open(rx->env.frame, rx->env.frame_len, CPN_MSG_LEASE, &co, ch) != CPN_OK ||
        ch->claim.replaces.len == 0) {
        free(ch);
        return false; /* not a replacement: the claim module's */
    }
    for (size_t i = 0; i < REMATCH_MAX && !s; i++) {
        s_slot_t *x = &m->slots[i];
        if (x->used && x->seq && memcmp(x->peer, rx->env.from, CPN_PK_LEN) == 0 &&
            memcmp(x->tenant, ch->req_env.from, CPN_PK_LEN) == 0 &&
            strcmp(x->req_id, ch->req.id) == 0)
            s = x;
    }
    if (!s) {
        free(ch);
        return false;
    }
    int r = strcmp(ch->lease.state, "active") == 0 ? s_record(self, s, &rx->env, ch) : CPN_E_CHAIN;
    if (r == CPN_OK) {
        char kid[CPN_KID_LEN];
        cpn_key_id(rx->env.from, kid);
        log_info("rematch", "lease %s replaced by %s at %s", s->lease_id, ch->lease.lease_id, kid);
        self->stats.rematched++;
        s_forget(m, s);
    } else {
        broker_count_refusal(self, r);
        log_warn("rematch", "replacement LEASE for %s refused: %s", s->lease_id, cpn_errname(r));
    }
    free(ch);
    return true;
}

bool rematch_on_nack(broker_t *self, const broker_rx_t *rx, const cpn_nack_t *nack)
{
    rematch_t *m = self->rematch;
    if (!m || m->n_waiting == 0)
        return false;
    s_slot_t *s = s_by_seq(m, nack->ref_seq, rx->env.from);
    if (!s)
        return false;
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    log_info("rematch", "lease %s: %s refused the replacement: %s (%s)", s->lease_id, kid,
             cpn_errname(nack->code), nack->reason);
    /* Final only for a fenced CLAIM (§13): then the intent goes and another offer is tried. */
    if (s->fenced) {
        char req_id[CPN_NAME_MAX] = "";
        ledger_notice_t n;
        uint8_t *nframe = NULL;
        size_t nlen = 0;
        notice_opened_t *o = calloc(1, sizeof *o);
        char why[CPN_REASON_MAX];
        if (o &&
            ledger_notice_get(self->ledger, s->npeer, s->lease_id, &n, &nframe, &nlen) == CPN_OK &&
            notice_open(self, nframe, nlen, NULL, o, why) == CPN_OK) {
            snprintf(req_id, sizeof req_id, "%s", o->ch.req.id);
            if (ledger_intent_resolve(self->ledger, n.tenant, req_id, rx->env.from) != CPN_OK)
                log_error("rematch", "cannot resolve the intent of %s", req_id);
        }
        if (s->n_excluded < REMATCH_EXCLUDE)
            memcpy(s->excluded[s->n_excluded++], rx->env.from, CPN_PK_LEN);
        free(nframe);
        free(o);
        if (ledger_notice_set(self->ledger, s->npeer, s->lease_id, LEDGER_NOTICE_REMATCH,
                              cpn_now_ms(), NULL) != CPN_OK)
            log_error("rematch", "cannot update the notice of %s", s->lease_id);
    }
    m->n_waiting--;
    s->seq = 0;
    return true;
}
