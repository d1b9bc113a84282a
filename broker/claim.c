/* claim.c - from a tenant's REQUEST to a GRANT or a NACK, and the RENEW/RELEASE relays.
 *
 * The broker proposes, the peer decides. A request is matched against the book; the best
 * candidate gets a CLAIM (embedding the REQUEST verbatim). A NACK moves on to the next
 * candidate, up to the policy's claim_tries. A peer silent for claim_timeout gets the same
 * claim again under a new seq rather than the request moving elsewhere: the peer answers a
 * repeated (tenant, request id) with the same lease, so a slow peer can never leave the
 * tenant holding two leases for one request. When the tries are spent the tenant gets a NACK
 * (never silence); a LEASE that arrives later is still recorded, and the tenant gets it by
 * sending the same request again.
 *
 * A candidate whose offer came through a federation member (its book entry has a `via`) is
 * claimed through that member: the CLAIM travels in a FORWARD to the peer's home broker, which
 * claims from the peer under its own signature with our CLAIM in the route; the answer comes
 * back the same way (federation.c) and ends here like a local one.
 *
 * The request state machine (STYLE rule 16). Each request slot is in one state:
 *   FREE      no request in the slot.
 *   MATCHING  being started: its intents read, matched, filtered by quota. Only ever within
 *             the event that put it there (a REQUEST, the window's flush, a settled in-doubt
 *             claim): every event ends with the request in another state.
 *   QUEUED    in the batch window (placement.batch): not matched, no CLAIM, no timer.
 *   CLAIMING  a CLAIM to cands[next - 1] is queued in the outbox or out, deadline_mono set;
 *             the other candidates wait their turn. A refusal moves on to the next one.
 *   IN_DOUBT  the same, but the CLAIM goes to the peer of an unresolved intent (a CLAIM for
 *             this request may have been granted there: ledger.h, docs/PROTOCOL.md §13): no
 *             other peer may be tried until that peer settles it, and every failure ends in
 *             a NACK that says so.
 * There is no DONE: the final answer (the GRANT for the last units, or a NACK) frees the slot
 * within the same event. Matching is a state and not only a step because the quota filter
 * reads the other requests: it must not count the one being matched.
 *
 * Events: REQUEST, FLUSH (the window is matched), LEASE, NACK_SETTLED (the refusal settles
 * the intent at that peer, or there is none), NACK_OPEN (an earlier CLAIM to that peer may
 * still be granted), TIMEOUT, UNSENT (committed, the send failed), UNRECORDED (the ledger
 * commit of its intent failed), STOP. s_table says what each does in each state; an event
 * with no row is logged, counted (claim_stats) and ignored. An answer is matched to its
 * request by one lookup in the table of CLAIMs waiting (by_seq: the seq of every CLAIM sent
 * for a request in flight), not by scanning the slots.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "batch.h"
#include "budget.h"
#include "chain.h"
#include "claim_index.h"
#include "claim_relay.h"
#include "clock.h"
#include "log.h"
#include "match.h"
#include "msg_typed.h"
#include "spend.h"
#include "spill.h"
#include "window.h"

typedef enum {
    CS_FREE = 0, /* a zeroed slot is free */
    CS_MATCHING,
    CS_QUEUED,
    CS_CLAIMING,
    CS_IN_DOUBT,
    CS_N
} s_state_t;

typedef enum {
    CE_REQUEST,
    CE_FLUSH,
    CE_LEASE,
    CE_NACK_SETTLED,
    CE_NACK_OPEN,
    CE_TIMEOUT,
    CE_UNSENT,
    CE_UNRECORDED,
    CE_STOP,
    CE_N
} s_event_t;

static const char *const s_state_name[CS_N] = {"free", "matching", "queued", "claiming",
                                               "in-doubt"};
static const char *const s_event_name[CE_N] = {"request",      "flush",      "lease",
                                               "nack-settled", "nack-open",  "timeout",
                                               "unsent",       "unrecorded", "stop"};

/* A request between REQUEST and its last GRANT or NACK. */
typedef struct {
    s_state_t state;
    uint8_t rid[CPN_RID_MAX]; /* the tenant's connection */
    size_t rid_len;
    uint8_t tenant[CPN_PK_LEN];
    uint8_t *req_frame; /* the tenant's REQUEST, verbatim (owned) */
    size_t req_len;
    cpn_request_t req;
    uint64_t req_seq;
    match_cand_t cands[BROKER_CANDS_MAX];
    size_t n_cands, next; /* cands[next - 1] is being claimed */
    uint32_t units_left;
    uint64_t claim_seqs[BROKER_TRIES_MAX]; /* every CLAIM sent for it (each in by_seq); an
                                              answer may come to any of them */
    bool claim_fenced[BROKER_TRIES_MAX];   /* its NACK settles its intent: no other CLAIM to
                                              that peer could be granted after it */
    uint32_t n_claims;
    uint64_t deadline_mono;
    uint32_t tries;
    uint32_t held; /* units the book holds for the CLAIM to cands[next - 1] (book_take) */
    int last_code; /* the last refusal, for the final NACK */
    char last_reason[CPN_REASON_MAX];
    uint64_t t0_us; /* when the REQUEST arrived (cpn_mono_us), if latencies are observed */
} claim_pending_t;

#define S_SEQS_PER_REQUEST 4 /* room in by_seq per request slot (claim_new) */

struct claim {
    claim_svc_t svc; /* the services called down to (claim.h) */
    claim_clock_t clock;
    claim_pending_t *pending; /* n_pending_slots slots */
    size_t n_pending_slots, n_pending;
    size_t pending_top; /* every request in flight is in pending[0 .. pending_top) */
    /* The CLAIMs waiting for an answer: seq -> slot, for every seq in a request's
     * claim_seqs (at most n_pending_slots x BROKER_TRIES_MAX). And (tenant, request id) ->
     * slot, keyed by a hash of the pair (s_req_key): a REQUEST already being served, and a
     * LEASE that answers a new CLAIM with an older one. */
    claim_index_t *by_seq, *by_req;
    claim_relay_t *relay; /* RENEW/RELEASE relays (claim_relay.h) */
    window_t window;      /* requests waiting to be matched together (placement.batch) */
    claim_stats_t cstats;
};

/* The policy of the moment (a reload replaces it). */
static policy_t *s_pol(const claim_t *self)
{
    return *self->svc.pol;
}

/* Our key. */
static const uint8_t *s_us(const claim_t *self)
{
    return cpn_identity_pk(self->svc.signer->id);
}

/* Are latencies observed (the HTTP listener is on)? The clock is read then and only then. */
static bool s_observed(const claim_t *self)
{
    return self->svc.obs && *self->svc.obs;
}

/* What an event carries (the fields its actions read). */
typedef struct {
    const match_cand_t *planned; /* FLUSH: the batch plan's offer, or NULL */
    const cpn_nack_t *nack;      /* NACK_*: the refusal */
    const uint8_t *peer;         /* NACK_*: who refused; LEASE: who granted */
    uint64_t claim_seq;          /* NACK_*, UNSENT: the CLAIM answered */
    int code;                    /* NACK_SETTLED: the intent read; UNSENT: the send error */
    bool found;                  /* NACK_*: an intent at peer (in) */
    ledger_intent_t in;
    /* LEASE: the tenant's GRANT (taken by the action), recorded or not */
    const cpn_lease_t *lease;
    const char *request_id;
    uint8_t **grant_p;
    size_t grant_len;
    bool recorded;
} s_arg_t;

typedef void (*s_action_fn)(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_start(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_serve(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_lease(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_nack_next(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_nack_restart(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_nack_open(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_timeout(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_unsent(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_unrecorded(claim_t *self, claim_pending_t *p, const s_arg_t *a);
static void s_act_stop(claim_t *self, claim_pending_t *p, const s_arg_t *a);

/* (state, event) -> action, and the states the request may be in after it (FREE: answered
 * and forgotten). */
typedef struct {
    s_action_fn action;
    unsigned next; /* bit per state */
} s_row_t;

#define S_(st) (1u << (st))
#define S_ANY_CLAIM (S_(CS_CLAIMING) | S_(CS_IN_DOUBT) | S_(CS_FREE))
static const s_row_t s_table[CS_N][CE_N] =
    {
        [CS_MATCHING] =
            {
                [CE_REQUEST] = {s_act_start, S_ANY_CLAIM | S_(CS_QUEUED)},
            },
        [CS_QUEUED] =
            {
                [CE_FLUSH] = {s_act_serve, S_(CS_CLAIMING) | S_(CS_FREE)},
                [CE_STOP] = {s_act_stop, S_(CS_FREE)},
            },
        [CS_CLAIMING] =
            {
                [CE_LEASE] = {s_act_lease, S_(CS_CLAIMING) | S_(CS_FREE)}, /* split: the rest */
                [CE_NACK_SETTLED] = {s_act_nack_next, S_(CS_CLAIMING) | S_(CS_FREE)},
                [CE_NACK_OPEN] = {s_act_nack_open, S_(CS_FREE)},
                [CE_TIMEOUT] = {s_act_timeout, S_(CS_CLAIMING) | S_(CS_FREE)}, /* same peer */
                [CE_UNSENT] = {s_act_unsent, S_(CS_CLAIMING) | S_(CS_FREE)},
                [CE_UNRECORDED] = {s_act_unrecorded, S_(CS_FREE)},
                [CE_STOP] = {s_act_stop, S_(CS_FREE)},
            },
        [CS_IN_DOUBT] =
            {
                [CE_LEASE] = {s_act_lease, S_ANY_CLAIM}, /* the rest: afresh */
                [CE_NACK_SETTLED] = {s_act_nack_restart, S_ANY_CLAIM},
                [CE_NACK_OPEN] = {s_act_nack_open, S_(CS_FREE)},
                [CE_TIMEOUT] = {s_act_timeout, S_(CS_IN_DOUBT) | S_(CS_FREE)},
                [CE_UNSENT] = {s_act_unsent, S_(CS_FREE)},
                [CE_UNRECORDED] = {s_act_unrecorded, S_(CS_FREE)},
                [CE_STOP] = {s_act_stop, S_(CS_FREE)},
            },
};

/* Run event ev for request p: its row's action, or nothing (logged, counted) if its state has
 * none. A state outside the row's `next` is a bug of this file: logged loudly. */
static void s_fire(claim_t *self, claim_pending_t *p, s_event_t ev, const s_arg_t *a)
{
    s_state_t from = p->state;
    const s_row_t *row = &s_table[from][ev];
    char id[CPN_NAME_MAX];
    snprintf(id, sizeof id, "%s", p->req.id); /* the action may free the slot */
    if (!row->action) {
        self->cstats.ignored++;
        log_warn("claim", "request %s: event %s ignored in state %s", id, s_event_name[ev],
                 s_state_name[from]);
        return;
    }
    row->action(self, p, a);
    if (!(row->next & S_(p->state)))
        log_error("claim", "request %s: %s --%s--> %s is not in the table", id, s_state_name[from],
                  s_event_name[ev], s_state_name[p->state]);
}

/* ---- the object ---- */

claim_t *claim_new(const claim_svc_t *svc, size_t max_pending, const claim_clock_t *clock)
{
    claim_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->svc = *svc;
    self->clock = clock ? *clock : (claim_clock_t){.now_ms = cpn_now_ms, .mono_ms = cpn_mono_ms};
    self->n_pending_slots = max_pending;
    self->pending = calloc(max_pending ? max_pending : 1, sizeof *self->pending);
    /* by_seq: a request has one CLAIM waiting at a time, but every CLAIM it sent stays until
     * it ends (a late answer to any of them is still its answer): claim_tries of them (3 by
     * default), more after an in-doubt restart, never more than BROKER_TRIES_MAX. Room for
     * S_SEQS_PER_REQUEST on average, at 16 bytes an entry and at most half full: 2 MiB for the
     * default max_pending of 10,000. Full, a CLAIM is refused busy (s_send_claim). */
    self->by_seq = claim_index_new(max_pending * S_SEQS_PER_REQUEST);
    self->by_req = claim_index_new(max_pending);
    self->relay = claim_relay_new(&self->svc, &self->clock);
    if (!self->pending || !self->by_seq || !self->by_req || !self->relay)
        claim_destroy(&self);
    return self;
}

void claim_destroy(claim_t **self_p)
{
    claim_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    /* Only slots below pending_top hold frames: walking all max_pending slots would touch
     * every page of a large, mostly never-used array (seconds at shutdown). */
    for (size_t i = 0; self->pending && i < self->pending_top; i++)
        free(self->pending[i].req_frame);
    free(self->pending);
    claim_index_destroy(&self->by_seq);
    claim_index_destroy(&self->by_req);
    claim_relay_destroy(&self->relay);
    free(self);
    *self_p = NULL;
}

size_t claim_in_flight(const claim_t *self)
{
    return self->n_pending;
}

const claim_stats_t *claim_stats(const claim_t *self)
{
    return &self->cstats;
}

/* ---- small helpers ---- */

/* The audit log is a record, not a gate: a failed write is logged and the work goes on. */
static void s_audit(claim_t *self, uint64_t ts, const char *type, const uint8_t *from, int verdict,
                    const uint8_t *frame, size_t len)
{
    int r = ledger_audit(self->svc.ledger, ts, type, from, verdict, frame, len);
    if (r != CPN_OK)
        log_warn("ledger", "audit of a %s not written: %s", type, cpn_errname(r));
}

static void s_progress(claim_t *self, const claim_pending_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Only for a tenant that asked (REQUEST.progress): each note costs a signature here and a
 * verify there, two per request, which a program submitting thousands does not want. */
static void s_progress(claim_t *self, const claim_pending_t *p, const char *fmt, ...)
{
    if (!p->req.progress)
        return;
    char text[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mp_pack_str(&pk, text);
    cpn_status_t st = {.data = {.ptr = (const uint8_t *)sb.data, .len = sb.size}};
    snprintf(st.what, sizeof st.what, "progress");
    (void)self->svc.out.send(self->svc.out.ctx, p->rid, p->rid_len, CPN_MSG_STATUS, &st);
    msgpack_sbuffer_destroy(&sb);
}

static const cpn_package_t *s_book_package(const claim_t *self, const uint8_t peer[CPN_PK_LEN],
                                           const char *id)
{
    const book_peer_t *bp = book_peer(self->svc.book, peer);
    for (uint32_t i = 0; bp && i < bp->n_packages; i++)
        if (strcmp(bp->packages[i].id, id) == 0)
            return &bp->packages[i];
    return NULL;
}

/* The key of (tenant, request id) in by_req: a hash of the pair (FNV-1a), so two pairs may
 * share it and a hit is checked against the slot. */
static uint64_t s_req_key(const uint8_t tenant[CPN_PK_LEN], const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < CPN_PK_LEN; i++)
        h = (h ^ tenant[i]) * 0x100000001b3ULL;
    for (const char *c = id; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ULL;
    return h;
}

static void s_pending_free(claim_t *self, claim_pending_t *p)
{
    uint32_t slot = (uint32_t)(p - self->pending);
    for (uint32_t k = 0; k < p->n_claims; k++)
        (void)claim_index_del(self->by_seq, p->claim_seqs[k], slot);
    (void)claim_index_del(self->by_req, s_req_key(p->tenant, p->req.id), slot);
    free(p->req_frame);
    memset(p, 0, sizeof *p); /* CS_FREE */
    self->n_pending--;
    while (self->pending_top && self->pending[self->pending_top - 1].state == CS_FREE)
        self->pending_top--;
}

/* The request a CLAIM of ours was sent for, if it still waits: one lookup. */
static claim_pending_t *s_pending_by_claim(const claim_t *self, uint64_t claim_seq)
{
    size_t cur = 0;
    uint32_t slot;
    if (claim_index_next(self->by_seq, claim_seq, &cur, &slot))
        return &self->pending[slot];
    return NULL;
}

static claim_pending_t *s_pending_by_request(const claim_t *self, const uint8_t tenant[CPN_PK_LEN],
                                             const char *id)
{
    size_t cur = 0;
    uint32_t slot;
    while (claim_index_next(self->by_req, s_req_key(tenant, id), &cur, &slot)) {
        claim_pending_t *p = &self->pending[slot];
        if (memcmp(p->tenant, tenant, CPN_PK_LEN) == 0 && strcmp(p->req.id, id) == 0)
            return p;
    }
    return NULL;
}

/* The lowest free slot, so that every request in flight stays below pending_top and the
 * scans that remain (quota, AD, timers) stop there. The request is MATCHING from now until
 * its REQUEST event ends; indexed by (tenant, id). */
static claim_pending_t *s_pending_alloc(claim_t *self, const uint8_t tenant[CPN_PK_LEN],
                                        const cpn_request_t *req)
{
    for (size_t i = 0; i < self->n_pending_slots; i++)
        if (self->pending[i].state == CS_FREE) {
            claim_pending_t *p = &self->pending[i];
            if (claim_index_put(self->by_req, s_req_key(tenant, req->id), (uint32_t)i) != CPN_OK)
                return NULL; /* cannot happen: by_req holds one key per slot */
            p->state = CS_MATCHING;
            memcpy(p->tenant, tenant, CPN_PK_LEN);
            p->req = *req;
            self->n_pending++;
            if (i >= self->pending_top)
                self->pending_top = i + 1;
            return p;
        }
    return NULL;
}

bool claim_waiting(const claim_t *self, uint64_t claim_seq)
{
    return s_pending_by_claim(self, claim_seq) != NULL;
}

const char *claim_request_state(const claim_t *self, const uint8_t tenant[CPN_PK_LEN],
                                const char *id)
{
    const claim_pending_t *p = s_pending_by_request(self, tenant, id);
    return s_state_name[p ? p->state : CS_FREE];
}

/* The tenant's answer is final: NACK and forget the request. */
static void s_finish_nack(claim_t *self, claim_pending_t *p, int code, const char *reason)
{
    self->svc.out.nack(self->svc.out.ctx, p->rid, p->rid_len, p->req.id, p->req_seq, code, reason);
    char kid[CPN_KID_LEN];
    cpn_key_id(p->tenant, kid);
    log_info("claim", "request %s of %s: %s %s", p->req.id, kid, cpn_errname(code),
             reason ? reason : "");
    s_pending_free(self, p);
}

/* The unresolved intent of p's request at `peer`; *found false if none. */
static int s_intent_of(claim_t *self, const claim_pending_t *p, const uint8_t peer[CPN_PK_LEN],
                       ledger_intent_t *out, bool *found)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    *found = false;
    int r = ledger_intents(self->svc.ledger, p->tenant, p->req.id, in, BROKER_CANDS_MAX, &n);
    for (size_t i = 0; r == CPN_OK && i < n && i < BROKER_CANDS_MAX && !*found; i++)
        if (memcmp(in[i].peer, peer, CPN_PK_LEN) == 0) {
            *out = in[i];
            *found = true;
        }
    return r;
}

/* Sign a CLAIM for candidate c, record its intent in the open ledger transaction and queue
 * it: it leaves for the peer's connection, or through the member its offer came from, once
 * that transaction has committed (server.c). Its deadline is claim_timeout from now: the peer
 * refuses it after that (docs/PROTOCOL.md, "Exactly one lease per request"). */
static int s_send_claim(claim_t *self, claim_pending_t *p, const match_cand_t *c)
{
    const broker_route_t *route = NULL;
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    int r = claim_reach(&self->svc, c->peer, &it.remote, it.via, &route);
    if (r != CPN_OK)
        return r;
    if (p->n_claims >= BROKER_TRIES_MAX)
        return CPN_E_BUSY;
    cpn_claim_t claim;
    memset(&claim, 0, sizeof claim);
    claim.request.ptr = p->req_frame;
    claim.request.len = p->req_len;
    memcpy(claim.peer, c->peer, CPN_PK_LEN);
    snprintf(claim.package, sizeof claim.package, "%s", c->package);
    claim.units = c->units < p->units_left ? c->units : p->units_left;
    claim.price = c->price;
    claim.duration_s = p->req.duration_s;
    claim.deadline = self->clock.now_ms() + (uint64_t)s_pol(self)->limits.claim_timeout_s * 1000;
    (void)match_alts(&p->req, p->cands, p->n_cands, c, claim.alts, CPN_ALTS_LEN);
    ledger_intent_t in;
    memset(&in, 0, sizeof in);
    memcpy(in.tenant, p->tenant, CPN_PK_LEN);
    snprintf(in.request_id, sizeof in.request_id, "%s", p->req.id);
    memcpy(in.peer, c->peer, CPN_PK_LEN);
    snprintf(in.package, sizeof in.package, "%s", c->package);
    in.units = claim.units;
    in.deadline_ms = claim.deadline;
    in.duration_s = p->req.duration_s;
    if (it.remote)
        memcpy(in.via, it.via, CPN_PK_LEN);
    /* Fenced: a refusal of this CLAIM is final for this peer if no earlier CLAIM to it for
     * the request can still be granted when the peer reads this one (s_nack_in). */
    ledger_intent_t prev;
    bool found = false;
    uint64_t skew_ms = (uint64_t)s_pol(self)->limits.skew_s * 1000;
    if ((r = s_intent_of(self, p, c->peer, &prev, &found)) != CPN_OK)
        return CPN_E_DB;
    bool fenced = !found || self->clock.now_ms() > prev.deadline_ms + skew_ms;
    if ((r = ledger_intent_add(self->svc.ledger, &in)) != CPN_OK)
        return r == CPN_E_INVAL ? r : CPN_E_DB; /* no intent, no CLAIM */
    r = cpn_signer_build(self->svc.signer, CPN_MSG_CLAIM, &claim, &it.frame, &it.len);
    if (r != CPN_OK)
        return r; /* the intent stays: harmless, the peer never saw a CLAIM for it */
    uint64_t seq = self->svc.signer->last_seq;
    cpn_env_t env;
    /* The LEASE will carry this CLAIM back: remember it is ours and already good. */
    if (cpn_env_parse(it.frame, it.len, self->svc.lim, &env) == CPN_OK)
        cpn_sigcache_add(self->svc.sigcache, &env);
    it.kind = OUTBOX_CLAIM;
    it.claim_seq = seq;
    memcpy(it.peer, c->peer, CPN_PK_LEN);
    if (route) {
        memcpy(it.rid, route->rid, route->rid_len);
        it.rid_len = route->rid_len;
    }
    /* The table of CLAIMs waiting is bounded (claim_new): full, the CLAIM does not leave,
     * as if the peer were busy; the intent stays, harmless (the peer never saw it). */
    uint32_t slot = (uint32_t)(p - self->pending);
    if (claim_index_put(self->by_seq, seq, slot) != CPN_OK) {
        free(it.frame);
        log_warn("claim", "request %s: too many CLAIMs waiting for an answer", p->req.id);
        return CPN_E_BUSY;
    }
    if ((r = self->svc.out.queue(self->svc.out.ctx, &it)) != CPN_OK) {
        (void)claim_index_del(self->by_seq, seq, slot);
        return r;
    }
    p->claim_fenced[p->n_claims] = fenced;
    p->claim_seqs[p->n_claims++] = seq;
    p->tries++;
    p->deadline_mono = self->clock.mono_ms() + s_pol(self)->limits.claim_timeout_s * 1000;
    return CPN_OK; /* stats.claims_sent counts it when it leaves (server.c) */
}

/* Claim the next candidate, or give the tenant its final NACK. The book holds the claimed
 * units from the CLAIM on, not from the LEASE: otherwise every request arriving while CLAIMs
 * are out matches the same last free units, and under load most CLAIMs end in no-units
 * (scripts/bench/e2e at 1000 requests/s: 2,376 of 5,000 requests NACKed that way while
 * capacity was left). A refusal other than no-units gives them back (s_nack_in); the peer's
 * next AD corrects the rest. */
static void s_claim_next(claim_t *self, claim_pending_t *p)
{
    uint32_t tries = s_pol(self)->limits.claim_tries;
    while (p->next < p->n_cands && p->tries < tries) {
        const match_cand_t *c = &p->cands[p->next++];
        int r = s_send_claim(self, p, c);
        char kid[CPN_KID_LEN];
        cpn_key_id(c->peer, kid);
        if (r == CPN_OK) {
            uint32_t units = c->units < p->units_left ? c->units : p->units_left;
            p->held = book_take(self->svc.book, c->peer, c->package, units) == CPN_OK ? units : 0;
            p->state = p->state == CS_IN_DOUBT ? CS_IN_DOUBT : CS_CLAIMING;
            s_progress(self, p,
                       "claiming %u x %s from peer %s at %" PRIu64 ".%03" PRIu64
                       "/h (try %u of %u)",
                       c->units < p->units_left ? c->units : p->units_left, c->package, kid,
                       c->price / 1000, c->price % 1000, p->tries, tries);
            return;
        }
        p->last_code = r;
        snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %s", kid, cpn_strerror(r));
        if (p->state == CS_IN_DOUBT) {
            /* Served elsewhere, the request could end with two leases: that is how they
             * happened (issue 10). */
            self->svc.stats->in_doubt++;
            snprintf(p->last_reason, sizeof p->last_reason,
                     "a claim for this request may have been granted by peer %s, which is not "
                     "reachable (%s); it is not served elsewhere until %s answers: send it "
                     "again later",
                     kid, cpn_strerror(r), kid);
            s_finish_nack(self, p, r == CPN_E_DB ? r : CPN_E_UNREACHABLE, p->last_reason);
            return;
        }
    }
    s_finish_nack(self, p, p->last_code ? p->last_code : CPN_E_NO_MATCH, p->last_reason);
}

/* ---- intents: a CLAIM's durable trace (ledger.h) ---- */

/* NACK in-doubt: when the tenant may send the request again. */
static void s_nack_in_doubt(claim_t *self, claim_pending_t *p, const ledger_intent_t *in)
{
    char kid[CPN_KID_LEN], when[40] = "?";
    cpn_key_id(in->peer, kid);
    uint64_t until = in->deadline_ms + (uint64_t)s_pol(self)->limits.skew_s * 1000;
    time_t t = (time_t)(until / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char reason[CPN_REASON_MAX];
    snprintf(reason, sizeof reason,
             "a claim for this request may still be granted by peer %s until %s "
             "(%" PRIu64 " ms since the epoch); send it again after that",
             kid, when, until);
    self->svc.stats->in_doubt++;
    s_finish_nack(self, p, CPN_E_IN_DOUBT, reason);
}

static void s_serve(claim_t *self, claim_pending_t *p, const match_cand_t *planned);
static void s_queue(claim_t *self, claim_pending_t *p);

/* Serve a request from its start: if a CLAIM for it may have been granted by some peer (an
 * unresolved intent, say from before a restart), claim from that peer only, the same package
 * and units: it answers with the lease it holds, grants now, or refuses. Otherwise match it
 * (through the batch window if `may_queue` and batch mode is on). */
static void s_start(claim_t *self, claim_pending_t *p, bool may_queue)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    if (ledger_intents(self->svc.ledger, p->tenant, p->req.id, in, BROKER_CANDS_MAX, &n) !=
        CPN_OK) {
        s_finish_nack(self, p, CPN_E_DB, "the broker cannot read its ledger");
        return;
    }
    p->state = CS_MATCHING;
    p->next = p->n_cands = 0;
    p->tries = 0;
    p->held = 0;
    if (n == 0) {
        if (may_queue && s_pol(self)->batch.on)
            s_queue(self, p);
        else
            s_serve(self, p, NULL);
        return;
    }
    match_cand_t *c = &p->cands[0];
    memset(c, 0, sizeof *c);
    memcpy(c->peer, in[0].peer, CPN_PK_LEN);
    snprintf(c->package, sizeof c->package, "%s", in[0].package);
    c->units = in[0].units;
    const cpn_package_t *pkg = s_book_package(self, c->peer, c->package);
    c->price = pkg ? pkg->price : 0; /* a peer holding the lease answers whatever the price */
    c->free = pkg ? pkg->free : 0;
    p->n_cands = 1;
    p->state = CS_IN_DOUBT;
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    log_info("claim",
             "request %s: in doubt at peer %s (%u claims, deadline %" PRIu64 "): asking it",
             p->req.id, kid, in[0].claims, in[0].deadline_ms);
    s_progress(self, p, "a claim for this request went to peer %s before: asking it again", kid);
    s_claim_next(self, p);
}

/* Drop candidates that would take the tenant over quota; the first refusal is the reason. */
static int s_quota_filter(claim_t *self, claim_pending_t *p, const policy_tenant_t *t, char *why,
                          size_t cap)
{
    ledger_usage_t used;
    int r = ledger_quota_usage(self->svc.ledger, p->tenant, self->clock.now_ms(), &used);
    if (r != CPN_OK)
        return r;
    /* Requests still in flight count as if granted, so a burst cannot overrun a quota: their
     * units, and the accelerators and spend of the candidate being claimed for them. */
    for (size_t i = 0; i < self->pending_top; i++) {
        const claim_pending_t *q = &self->pending[i];
        /* Requests still in the batch window count once they are matched, as they would
         * have one after another without the window. */
        if (q->state < CS_CLAIMING || q == p || memcmp(q->tenant, p->tenant, CPN_PK_LEN) != 0)
            continue;
        used.units += q->units_left;
        if (q->next == 0)
            continue;
        const match_cand_t *qc = &q->cands[q->next - 1];
        const cpn_package_t *qpkg = s_book_package(self, qc->peer, qc->package);
        used.accelerators += (uint64_t)q->units_left * (qpkg ? qpkg->accel.count : 0);
        used.spend_rate += (uint64_t)q->units_left * qc->price;
    }
    size_t kept = 0;
    int first = CPN_OK;
    for (size_t i = 0; i < p->n_cands; i++) {
        const match_cand_t *c = &p->cands[i];
        const cpn_package_t *pkg = s_book_package(self, c->peer, c->package);
        uint32_t units =
            p->req.split ? (c->units < p->units_left ? c->units : p->units_left) : p->req.units;
        ledger_usage_t add = {.units = units,
                              .accelerators = (uint64_t)units * (pkg ? pkg->accel.count : 0),
                              .spend_rate = (uint64_t)units * c->price};
        char w[CPN_REASON_MAX];
        int q = policy_quota_check(t, &used, &add, w, sizeof w);
        if (q == CPN_OK)
            p->cands[kept++] = *c;
        else if (first == CPN_OK) {
            first = q;
            snprintf(why, cap, "%s", w);
        }
    }
    p->n_cands = kept;
    return kept ? CPN_OK : first;
}

/* The cost of the tenant's requests being claimed here (but `except`), whichever broker
 * their CLAIMs wait at (a CLAIM forwarded to a member counts until its answer comes back or
 * the request ends): units left x the price of the offer claimed x duration. */
static uint64_t s_in_flight(const claim_t *self, const uint8_t tenant[CPN_PK_LEN],
                            const claim_pending_t *except)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < self->pending_top; i++) {
        const claim_pending_t *q = &self->pending[i];
        if (q->state < CS_CLAIMING || q == except || q->next == 0 ||
            memcmp(q->tenant, tenant, CPN_PK_LEN) != 0)
            continue;
        uint64_t c = budget_cost(q->units_left, q->cands[q->next - 1].price, q->req.duration_s);
        sum = c > UINT64_MAX - sum ? UINT64_MAX : sum + c;
    }
    return sum;
}

/* Drop candidates that would take the tenant over its budget or the request over its
 * max_cost (budget.h; a split request counts all its units left at each candidate's price).
 * Tenants without a budget and requests without max_cost leave at the first test: their path
 * is what it was before budgets. */
static int s_budget_filter(claim_t *self, claim_pending_t *p, const policy_tenant_t *t,
                           char why[CPN_REASON_MAX])
{
    if (!t->budget.amount && !p->req.max_cost)
        return CPN_OK;
    budget_state_t s = {0};
    if (t->budget.amount) {
        if (spend_state(self->svc.spend, &t->budget, p->tenant, self->clock.now_ms(), &s) != CPN_OK)
            return CPN_E_DB;
        s.in_flight = s_in_flight(self, p->tenant, p);
    }
    return budget_filter(&s, p->cands, &p->n_cands, p->units_left, p->req.duration_s,
                         p->req.max_cost, why);
}

/* Policy local_first: candidates of peers connected to us first, each group in rank order. */
static void s_local_first(claim_t *self, claim_pending_t *p)
{
    match_cand_t sorted[BROKER_CANDS_MAX];
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p->n_cands && k < BROKER_CANDS_MAX; i++) {
            const book_peer_t *bp = book_peer(self->svc.book, p->cands[i].peer);
            bool local = !bp || sodium_is_zero(bp->via, CPN_PK_LEN);
            if (local == (pass == 0))
                sorted[k++] = p->cands[i];
        }
    memcpy(p->cands, sorted, k * sizeof sorted[0]);
}

/* Policy federation.spill: local offers first, matched in a pass of their own (so they are
 * tried even when remote offers rank better), then the matcher's remote candidates member
 * by member in the policy's order (spill.h). One candidate is claimed at a time, so the
 * request is at one broker at a time. CPN_E_NO_MATCH with `why` if a list left nothing. */
_Static_assert(BROKER_CANDS_MAX <= SPILL_CANDS_MAX, "spill_order sorts every candidate");
static int s_spill(claim_t *self, claim_pending_t *p, char *why, size_t cap)
{
    match_policy_t lp = s_pol(self)->placement;
    lp.local_only = true;
    match_cand_t all[BROKER_CANDS_MAX];
    size_t n_local = 0, n = 0, dropped = 0;
    int r = match_find(self->svc.book, &p->req, &lp, self->clock.now_ms(), all, BROKER_CANDS_MAX,
                       &n_local, NULL);
    if (r != CPN_OK)
        n_local = 0; /* no local offer fits: spill at once */
    n = n_local;
    for (size_t i = 0; i < p->n_cands && n < BROKER_CANDS_MAX; i++) {
        const book_peer_t *bp = book_peer(self->svc.book, p->cands[i].peer);
        if (bp && !sodium_is_zero(bp->via, CPN_PK_LEN))
            all[n++] = p->cands[i];
    }
    n = spill_order(self->svc.book, s_pol(self), all, n, &dropped);
    memcpy(p->cands, all, n * sizeof all[0]);
    p->n_cands = n;
    if (n > 0)
        return CPN_OK;
    snprintf(why, cap, "%zu offer%s fit, all through members federation.spill does not list",
             dropped, dropped == 1 ? "" : "s");
    return CPN_E_NO_MATCH;
}

/* ---- REQUEST ---- */

/* The planned offer first; the matcher's other candidates follow in their order, for the
 * retries should the peer refuse. */
static void s_plan_first(claim_pending_t *p, const match_cand_t *planned)
{
    match_cand_t rest[BROKER_CANDS_MAX];
    size_t k = 0;
    for (size_t i = 0; i < p->n_cands && k + 1 < BROKER_CANDS_MAX; i++)
        if (memcmp(p->cands[i].peer, planned->peer, CPN_PK_LEN) != 0 ||
            strcmp(p->cands[i].package, planned->package) != 0)
            rest[k++] = p->cands[i];
    p->cands[0] = *planned;
    memcpy(p->cands + 1, rest, k * sizeof rest[0]);
    p->n_cands = k + 1;
}

/* Match a request now, and claim its first candidate or NACK it. `planned` (NULL: none) is
 * the offer a batch plan chose for it: it goes first, even if the book no longer shows it,
 * since the plan counted its units. */
static void s_serve(claim_t *self, claim_pending_t *p, const match_cand_t *planned)
{
    const policy_tenant_t *t = policy_tenant(s_pol(self), p->tenant);
    match_fail_t fail;
    char reason[CPN_REASON_MAX];
    p->state = CS_MATCHING;
    if (!t) { /* a reload dropped the tenant while its request waited in the window */
        s_finish_nack(self, p, CPN_E_UNKNOWN_TENANT, "no longer a tenant of this broker");
        return;
    }
    uint64_t t0 = s_observed(self) ? cpn_mono_us() : 0; /* the clock only while observed */
    int r = match_find(self->svc.book, &p->req, &s_pol(self)->placement, self->clock.now_ms(),
                       p->cands, BROKER_CANDS_MAX, &p->n_cands, &fail);
    if (t0)
        cpn_hist_observe(&self->svc.stats->match, cpn_mono_us() - t0);
    if (r == CPN_E_NO_MATCH && planned) {
        p->n_cands = 0;
        r = CPN_OK;
    }
    if (r == CPN_E_NO_MATCH) {
        match_fail_format(&fail, reason, sizeof reason);
        s_finish_nack(self, p, CPN_E_NO_MATCH, reason);
        return;
    }
    if (r != CPN_OK) {
        s_finish_nack(self, p, r, NULL);
        return;
    }
    if (s_pol(self)->federation.spill != POLICY_SPILL_RANK) {
        if ((r = s_spill(self, p, reason, sizeof reason)) != CPN_OK && !planned) {
            s_finish_nack(self, p, r, reason);
            return;
        }
    } else if (s_pol(self)->federation.local_first) {
        s_local_first(self, p);
    }
    if (planned)
        s_plan_first(p, planned);
    if ((r = s_quota_filter(self, p, t, reason, sizeof reason)) != CPN_OK ||
        (r = s_budget_filter(self, p, t, reason)) != CPN_OK) {
        s_finish_nack(self, p, r, r == CPN_E_DB ? "the broker cannot read its ledger" : reason);
        return;
    }
    s_progress(self, p, "matched %zu candidate offer%s", p->n_cands, p->n_cands == 1 ? "" : "s");
    s_claim_next(self, p);
}

/* Match the whole window together. batch_plan first; then every planned request is claimed
 * on its planned offer, before anything else touches the book, so the plan holds: it never
 * puts more units on an offer than the book shows free, and each CLAIM takes its units from
 * the book as it goes out (s_claim_next). Then the requests the plan left out (split ones,
 * and those it could not place) are matched one by one on what is left, as without batch. */
static void s_window_flush(claim_t *self)
{
    size_t slots[WINDOW_CAP];
    size_t n = window_take(&self->window, slots), n_plan = 0;
    if (n == 0)
        return;
    cpn_request_t *reqs = malloc(n * sizeof *reqs);
    batch_place_t *plan = malloc(n * sizeof *plan);
    int r = CPN_E_NOMEM;
    if (reqs && plan) {
        for (size_t i = 0; i < n; i++)
            reqs[i] = self->pending[slots[i]].req;
        uint64_t t0 = s_observed(self) ? cpn_mono_us() : 0;
        r = batch_plan(self->svc.book, reqs, n, &s_pol(self)->placement, self->clock.now_ms(), plan,
                       &n_plan);
        if (t0)
            cpn_hist_observe(&self->svc.stats->match, cpn_mono_us() - t0);
    }
    if (r != CPN_OK) {
        log_warn("claim", "batch plan of %zu requests failed (%s): each is matched alone", n,
                 cpn_errname(r));
        n_plan = 0;
    }
    log_debug("claim", "batch window of %zu requests: %zu placed by the plan", n, n_plan);
    for (size_t k = 0; k < n_plan; k++) {
        s_arg_t a = {.planned = &plan[k].cand};
        s_fire(self, &self->pending[slots[plan[k].req]], CE_FLUSH, &a);
    }
    for (size_t i = 0, k = 0; i < n; i++) {
        if (k < n_plan && plan[k].req == i) {
            k++; /* plan[] is in request order */
            continue;
        }
        s_arg_t a = {.planned = NULL};
        s_fire(self, &self->pending[slots[i]], CE_FLUSH, &a);
    }
    free(plan);
    free(reqs);
}

/* Batch mode: the request waits in the window; a full window is matched at once. */
static void s_queue(claim_t *self, claim_pending_t *p)
{
    uint64_t now = self->clock.mono_ms();
    if (self->window.n >= WINDOW_CAP)
        s_window_flush(self);
    if (window_add(&self->window, (size_t)(p - self->pending), now) != CPN_OK) {
        s_serve(self, p, NULL);
        return;
    }
    p->state = CS_QUEUED;
    s_progress(self, p, "waiting up to %" PRIu64 " ms to be matched with other requests",
               s_pol(self)->batch.wait_ms);
    claim_window_poll(self, now);
}

uint64_t claim_window_deadline(const claim_t *self)
{
    const policy_batch_t *b = &s_pol(self)->batch;
    /* max 0 when batch mode was switched off by a reload: what still waits goes now */
    return window_deadline(&self->window, b->on ? b->max : 0, b->wait_ms);
}

void claim_window_poll(claim_t *self, uint64_t now_mono)
{
    if (claim_window_deadline(self) <= now_mono)
        s_window_flush(self);
}

/* Every request still in flight gets a NACK busy: those in the batch window (pending slots
 * too) and those whose CLAIM is out. A peer that grants after we stop keeps the lease under
 * (tenant, request id), so the same request sent again, to this broker restarted or another,
 * gets that lease. */
size_t claim_stop(claim_t *self)
{
    size_t slots[WINDOW_CAP], n = 0;
    (void)window_take(&self->window, slots);
    for (size_t i = 0; i < self->pending_top; i++)
        if (self->pending[i].state != CS_FREE) {
            s_fire(self, &self->pending[i], CE_STOP, NULL);
            n++;
        }
    return n;
}

static void s_act_stop(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    (void)a;
    s_finish_nack(self, p, CPN_E_BUSY, "the broker is stopping; send the request again");
}

static void s_act_start(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    (void)a;
    s_start(self, p, true);
}

static void s_act_serve(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    s_serve(self, p, a->planned);
}

/* The same request id again, with a lease in the ledger. The same terms and the lease still
 * active: CPN_OK, the GRANT it got is sent again unchanged (idempotent). Other terms:
 * CPN_E_CONFLICT. The lease released or ended: CPN_E_EXPIRED naming it, never the old GRANT
 * that says "active". *why says which. */
static int s_prior_check(claim_t *self, const ledger_lease_t *prior, const uint8_t *grant,
                         size_t len, const cpn_request_t *req, char *why, size_t cap)
{
    cpn_chain_opts_t o = {.lim = self->svc.lim, .sigcache = self->svc.sigcache};
    cpn_chain_t *ch = malloc(sizeof *ch);
    int r = ch ? cpn_chain_open(grant, len, CPN_MSG_GRANT, &o, ch) : CPN_E_NOMEM;
    snprintf(why, cap, "%s", "");
    if (r != CPN_OK) {
        /* Our own record: unreadable is our fault, not the tenant's; answer as before. */
        log_error("claim", "GRANT of lease %s in the ledger does not open: %s", prior->lease_id,
                  ch ? ch->why : cpn_strerror(r));
        r = CPN_OK;
    } else if (!cpn_chain_same_terms(&ch->req, req)) {
        r = CPN_E_CONFLICT;
        snprintf(why, cap, "request id %s was used for other terms (lease %s)", req->id,
                 prior->lease_id);
    } else if (strcmp(prior->state, "active") != 0 || prior->end_ms <= self->clock.now_ms()) {
        r = CPN_E_EXPIRED;
        snprintf(why, cap, "request id %s had lease %s, now %s", req->id, prior->lease_id,
                 strcmp(prior->state, "active") == 0 ? "ended" : prior->state);
    }
    free(ch);
    return r;
}

void claim_on_request(claim_t *self, const broker_rx_t *rx, const cpn_request_t *req)
{
    const char *why = NULL;
    self->svc.stats->requests++;
    s_audit(self, rx->env.ts_ms, "REQUEST", rx->env.from, CPN_OK, rx->env.frame, rx->env.frame_len);
    /* The same request again: the lease it got, unchanged (idempotent). */
    ledger_lease_t prior;
    uint8_t *grant = NULL;
    size_t grant_len = 0;
    if (ledger_find_request(self->svc.ledger, rx->env.from, req->id, &prior, &grant, &grant_len) ==
            CPN_OK &&
        grant) {
        char why_prior[CPN_REASON_MAX];
        int rp = s_prior_check(self, &prior, grant, grant_len, req, why_prior, sizeof why_prior);
        if (rp == CPN_OK) /* through the outbox: the record may be in the open transaction */
            self->svc.out.queue_grant(self->svc.out.ctx, rx->rid, rx->rid_len, &grant, grant_len,
                                      req->id, rx->env.seq);
        else
            self->svc.out.nack(self->svc.out.ctx, rx->rid, rx->rid_len, req->id, rx->env.seq, rp,
                               why_prior);
        free(grant); /* NULL if the outbox took it */
        return;
    }
    free(grant);
    if (s_pending_by_request(self, rx->env.from, req->id)) {
        self->svc.out.nack(self->svc.out.ctx, rx->rid, rx->rid_len, req->id, rx->env.seq,
                           CPN_E_BUSY, "this request id is already being served");
        return;
    }
    if (cpn_request_validate(req, &why) != CPN_OK) {
        self->svc.out.nack(self->svc.out.ctx, rx->rid, rx->rid_len, req->id, rx->env.seq,
                           CPN_E_INVAL, why);
        return;
    }
    claim_pending_t *p = s_pending_alloc(self, rx->env.from, req);
    if (!p) {
        self->svc.out.nack(self->svc.out.ctx, rx->rid, rx->rid_len, req->id, rx->env.seq,
                           CPN_E_BUSY, "too many requests in flight (limits.max_pending)");
        return;
    }
    memcpy(p->rid, rx->rid, rx->rid_len);
    p->rid_len = rx->rid_len;
    p->req_seq = rx->env.seq;
    p->units_left = req->units;
    p->t0_us = s_observed(self) ? cpn_mono_us() : 0;
    p->req_frame = malloc(rx->env.frame_len);
    if (!p->req_frame) {
        s_finish_nack(self, p, CPN_E_NOMEM, NULL);
        return;
    }
    memcpy(p->req_frame, rx->env.frame, rx->env.frame_len);
    p->req_len = rx->env.frame_len;
    s_fire(self, p, CE_REQUEST, NULL);
}

/* ---- LEASE ---- */

/* The CLAIM and REQUEST a LEASE carries, opened by the one chain opener (common/chain.h):
 * claim_env, req_env, claim and req are its fields. */
typedef cpn_chain_t s_chain_t;

/* Open the chain of a LEASE from a peer: every type, signature, signer and term (chain.h),
 * the CLAIM signed by claim_pk (NULL: anyone, the route decides). A LEASE we countersign as
 * the answer to a CLAIM must be a new grant (active, never renewed, starting now within the
 * skew window); only one answering a RENEW or RELEASE we relayed may be renewed or released,
 * and one answering a CLAIM we carried for another broker goes back there to be judged. */
static int s_open_request(claim_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                          const uint8_t *claim_pk, unsigned flags, s_chain_t *ch)
{
    const uint8_t *us = s_us(self);
    uint64_t now = self->clock.now_ms(), skew_ms = s_pol(self)->limits.skew_s * 1000;
    cpn_chain_opts_t o = {.lim = self->svc.lim,
                          .sigcache = self->svc.sigcache,
                          .claim_pk = claim_pk,
                          .max_hops = s_pol(self)->federation.max_hops,
                          .flags = flags};
    int r = cpn_chain_open(lenv->frame, lenv->frame_len, CPN_MSG_LEASE, &o, ch);
    bool carried = r == CPN_OK && ch->n_forwards && memcmp(ch->origin_env.from, us, CPN_PK_LEN);
    int op = r == CPN_OK ? claim_relay_kind(self->relay, lenv->from, lease->lease_id) : 0;
    if (r == CPN_OK && !carried && !op)
        r = cpn_chain_check_new(ch, now, skew_ms);
    /* The answer to a RENEW is a renewed active lease, to a RELEASE a released one. */
    if (r == CPN_OK && op &&
        (op == CPN_MSG_RELEASE
             ? strcmp(ch->lease.state, "released") != 0
             : strcmp(ch->lease.state, "active") != 0 || ch->lease.renewals == 0)) {
        r = CPN_E_CHAIN;
        snprintf(ch->why, sizeof ch->why, "LEASE %s (state %s, renewals %u) does not answer the %s",
                 lease->lease_id, ch->lease.state, ch->lease.renewals,
                 cpn_msg_name((cpn_msg_type_t)op));
    }
    if (r != CPN_OK) {
        char kid[CPN_KID_LEN];
        cpn_key_id(lenv->from, kid);
        log_warn("claim", "LEASE %s from %s: %s", lease->lease_id, kid, ch->why);
    }
    return r;
}

static int s_open_chain(claim_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                        s_chain_t *ch)
{
    /* A CLAIM of ours, directly: the server verified the LEASE itself. */
    return s_open_request(self, lenv, lease, s_us(self), CPN_CHAIN_TOP_VERIFIED, ch);
}

/* A LEASE that came back through the federation embeds the home broker's CLAIM, whose route
 * must start at a CLAIM of ours (the opener checks the terms are the same). *own_seq gets the
 * seq of that CLAIM of ours. */
static int s_open_remote_chain(claim_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                               s_chain_t *ch, uint64_t *own_seq)
{
    int r = s_open_request(self, lenv, lease, NULL, 0, ch);
    if (r != CPN_OK)
        return r;
    if (ch->n_forwards == 0 || memcmp(ch->origin_env.from, s_us(self), CPN_PK_LEN) != 0)
        return CPN_E_UNTRUSTED; /* neither ours nor carried for us */
    *own_seq = ch->origin_env.seq;
    return CPN_OK;
}

/* A LEASE for one of our CLAIMs, its chain checked: countersign, record, tell the tenant. */
static void s_lease_in(claim_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                       const s_chain_t *ch, uint64_t claim_seq)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(lenv->from, kid);
    uint8_t *grant = NULL;
    size_t len = 0;
    int r;
    if ((r = claim_grant_build(&self->svc, lenv, ch->req.id, &grant, &len)) != CPN_OK) {
        log_error("claim", "cannot countersign lease %s: %s", lease->lease_id, cpn_errname(r));
        return;
    }
    const cpn_package_t *pkg = s_book_package(self, lenv->from, lease->package);
    ledger_lease_t rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.lease_id, sizeof rec.lease_id, "%s", lease->lease_id);
    memcpy(rec.tenant, ch->req_env.from, CPN_PK_LEN);
    memcpy(rec.peer, lenv->from, CPN_PK_LEN);
    snprintf(rec.package, sizeof rec.package, "%s", lease->package);
    rec.units = lease->units;
    rec.accelerators = (uint64_t)lease->units * (pkg ? pkg->accel.count : 0);
    rec.price = lease->price;
    rec.start_ms = lease->start_ms;
    rec.end_ms = lease->end_ms;
    snprintf(rec.request_id, sizeof rec.request_id, "%s", ch->req.id);
    bool recorded = (r = ledger_record_grant(self->svc.ledger, &rec, grant, len)) == CPN_OK;
    if (!recorded)
        log_error("ledger", "lease %s not recorded: %s", lease->lease_id, cpn_errname(r));
    /* The lease settles the intent (if recording it failed, the intent stays: the next
     * REQUEST asks the peer again and records it then). */
    else if ((r = ledger_intent_resolve(self->svc.ledger, rec.tenant, rec.request_id,
                                        ch->n_forwards ? ch->origin.peer : rec.peer)) != CPN_OK)
        log_error("ledger", "intent of request %s not resolved: %s", rec.request_id,
                  cpn_errname(r));
    /* The book already holds these units: taken when the CLAIM went out (s_claim_next). */
    s_audit(self, self->clock.now_ms(), "GRANT", s_us(self), CPN_OK, grant, len);
    claim_pending_t *p = s_pending_by_claim(self, claim_seq);
    /* A LEASE the peer held already answers our new CLAIM with the first one it carries,
     * perhaps from before our restart: match it by the request, if we are claiming it from
     * that peer now. */
    if (!p && (p = s_pending_by_request(self, rec.tenant, rec.request_id)) != NULL &&
        (p->next == 0 || memcmp(p->cands[p->next - 1].peer,
                                ch->n_forwards ? ch->origin.peer : lenv->from, CPN_PK_LEN) != 0))
        p = NULL;
    if (!p) {
        /* Late: the tenant already had its NACK; the lease is recorded and a resubmission
         * of the same request id returns it. */
        self->cstats.late++;
        log_warn("claim", "late LEASE %s from %s recorded for request %s", lease->lease_id, kid,
                 ch->req.id);
        free(grant);
        return;
    }
    s_arg_t a = {.lease = lease,
                 .peer = lenv->from,
                 .request_id = ch->req.id,
                 .grant_p = &grant,
                 .grant_len = len,
                 .recorded = recorded};
    s_fire(self, p, CE_LEASE, &a);
    free(grant); /* NULL if the outbox took it */
}

/* A LEASE for the CLAIM out: the tenant gets its GRANT; a split request claims the rest. */
static void s_act_lease(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    const cpn_lease_t *lease = a->lease;
    if (!a->recorded) {
        /* No GRANT for a lease we could not record (issue 10, defect 4). */
        s_finish_nack(self, p, CPN_E_DB,
                      "the broker could not record the lease; the peer holds it: send the same "
                      "request again");
        return;
    }
    char kid[CPN_KID_LEN];
    cpn_key_id(a->peer, kid);
    self->svc.out.queue_grant(self->svc.out.ctx, p->rid, p->rid_len, a->grant_p, a->grant_len,
                              a->request_id, p->req_seq);
    self->svc.stats->grants++;
    if (p->t0_us)
        cpn_hist_observe(&self->svc.stats->request_to_lease, cpn_mono_us() - p->t0_us);
    log_info("claim", "lease %s: %u x %s from %s for request %s", lease->lease_id, lease->units,
             lease->package, kid, a->request_id);
    p->units_left = lease->units >= p->units_left ? 0 : p->units_left - lease->units;
    p->held = 0;
    if (p->units_left == 0) {
        s_pending_free(self, p);
        return;
    }
    if (p->state == CS_IN_DOUBT) {
        s_start(self, p, false); /* the rest: another intent, or matched afresh */
        return;
    }
    s_claim_next(self, p); /* a split request: the rest from the next candidate */
}

void claim_on_lease(claim_t *self, const broker_rx_t *rx, const cpn_lease_t *lease)
{
    s_chain_t ch;
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    int r = s_open_chain(self, &rx->env, lease, &ch);
    s_audit(self, rx->env.ts_ms, "LEASE", rx->env.from, r, rx->env.frame, rx->env.frame_len);
    if (r != CPN_OK) {
        self->svc.out.count_refusal(self->svc.out.ctx, r);
        log_warn("claim", "LEASE %s from %s refused: %s", lease->lease_id, kid, cpn_errname(r));
        return;
    }
    if (claim_relay_lease(self->relay, &rx->env, lease, ch.req.id))
        return;
    /* We claimed as the peer's home broker for another broker: the lease goes back there. */
    if (!s_pending_by_claim(self, ch.claim_env.seq) &&
        self->svc.out.peer_answer(self->svc.out.ctx, &rx->env, ch.claim_env.seq, ch.req_env.from,
                                  ch.req.id, lease->lease_id)) {
        /* A new lease (not a renewal) took units: the book shows it until the next AD. */
        if (strcmp(lease->state, "active") == 0 && lease->renewals == 0 &&
            book_take(self->svc.book, rx->env.from, lease->package, lease->units) != CPN_OK)
            log_debug("book", "lease %s: book had fewer free units", lease->lease_id);
        return;
    }
    s_lease_in(self, &rx->env, lease, &ch, ch.claim_env.seq);
}

/* ---- NACK ---- */

/* The peer refused a CLAIM of ours (or a broker on the way to it could not deliver it). The
 * refusal settles the intent at that peer only if no other CLAIM to it can still be granted,
 * or have been granted after this one was refused (docs/PROTOCOL.md §13): NACK_SETTLED, the
 * request moves on; otherwise NACK_OPEN, going elsewhere could end in two leases. */
static void s_nack_in(claim_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t claim_seq,
                      const cpn_nack_t *nack, bool from_peer)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(peer, kid);
    claim_pending_t *p = s_pending_by_claim(self, claim_seq);
    if (!p || p->next == 0 || memcmp(p->cands[p->next - 1].peer, peer, CPN_PK_LEN)) {
        self->cstats.late++;
        log_debug("claim", "NACK for peer %s for no claim in flight (seq %" PRIu64 ")", kid,
                  claim_seq);
        return;
    }
    s_arg_t a = {.nack = nack, .peer = peer, .claim_seq = claim_seq};
    bool fenced = false;
    for (uint32_t k = 0; k < p->n_claims; k++)
        if (p->claim_seqs[k] == claim_seq)
            fenced = p->claim_fenced[k];
    a.code = s_intent_of(self, p, peer, &a.in, &a.found);
    /* A broker on the way that could not deliver the CLAIM proves nothing about earlier ones
     * the peer did read: it settles the intent only if this was the only CLAIM to the peer. */
    if (!from_peer)
        fenced = a.found && a.in.claims <= 1;
    bool open = a.code == CPN_OK && a.found && !fenced;
    s_fire(self, p, open ? CE_NACK_OPEN : CE_NACK_SETTLED, &a);
}

/* What every refusal does first: the held units back to the book, the reason kept. */
static void s_refused(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(a->peer, kid);
    log_info("claim", "peer %s refused request %s: %s (%s)", kid, p->req.id,
             cpn_errname(a->nack->code), a->nack->reason);
    /* No units: the book was wrong and stays lowered until the next AD; a slice fits none of
     * the CLAIM's alts either. Any other refusal leaves the units free at the peer. */
    const match_cand_t *c = &p->cands[p->next - 1];
    bool slice = a->nack->code == CPN_E_NO_UNITS && p->req.share;
    if ((p->held && a->nack->code != CPN_E_NO_UNITS &&
         book_give(self->svc.book, c->peer, c->package, p->held) != CPN_OK) ||
        (slice && book_slice_refused(self->svc.book, c->peer, c->package, &p->req) != CPN_OK))
        log_debug("book", "peer %s: package %s gone from the book", kid, c->package);
    if (slice)
        p->n_cands = match_drop_alts(&p->req, p->cands, p->n_cands, p->next);
    p->held = 0;
    p->last_code = a->nack->code;
    snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %.200s", kid, a->nack->reason);
}

/* NACK_SETTLED: resolve the intent (if any); false if the ledger failed (request answered). */
static bool s_settle(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    s_refused(self, p, a);
    if (a->code != CPN_OK || (a->found && ledger_intent_resolve(self->svc.ledger, p->tenant,
                                                                p->req.id, a->peer) != CPN_OK)) {
        s_finish_nack(self, p, CPN_E_DB, "the broker cannot update its ledger");
        return false;
    }
    return true;
}

static void s_act_nack_next(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    if (s_settle(self, p, a))
        s_claim_next(self, p);
}

static void s_act_nack_restart(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    if (s_settle(self, p, a))
        s_start(self, p, false); /* settled: another intent, or matched afresh */
}

static void s_act_nack_open(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    s_refused(self, p, a);
    s_nack_in_doubt(self, p, &a->in);
}

void claim_on_unsent(claim_t *self, uint64_t claim_seq, bool committed, int code)
{
    claim_pending_t *p = s_pending_by_claim(self, claim_seq);
    if (!p || p->next == 0)
        return;
    s_arg_t a = {.claim_seq = claim_seq, .code = code};
    s_fire(self, p, committed ? CE_UNSENT : CE_UNRECORDED, &a);
}

/* The units held for a CLAIM that did not leave go back to the book. */
static void s_unsent_give_back(claim_t *self, claim_pending_t *p)
{
    const match_cand_t *c = &p->cands[p->next - 1];
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    if (p->held && book_give(self->svc.book, c->peer, c->package, p->held) != CPN_OK)
        log_debug("book", "peer %s: package %s gone from the book", kid, c->package);
    p->held = 0;
}

static void s_act_unrecorded(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    (void)a;
    s_unsent_give_back(self, p);
    /* The intent was rolled back with the transaction: the CLAIM must not leave. */
    s_finish_nack(self, p, CPN_E_DB,
                  "the broker could not record its claim (ledger commit failed); nothing "
                  "was claimed: send the request again");
}

static void s_act_unsent(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    s_unsent_give_back(self, p);
    const match_cand_t *c = &p->cands[p->next - 1];
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    /* Committed but never sent: if it was the only CLAIM to that peer, or no earlier one
     * could still be granted (fenced), nothing is in doubt there. */
    bool fenced = false;
    for (uint32_t k = 0; k < p->n_claims; k++)
        if (p->claim_seqs[k] == a->claim_seq)
            fenced = p->claim_fenced[k];
    ledger_intent_t in;
    bool found = false;
    if (s_intent_of(self, p, c->peer, &in, &found) == CPN_OK && found &&
        (in.claims <= 1 || fenced) &&
        ledger_intent_resolve(self->svc.ledger, p->tenant, p->req.id, c->peer) != CPN_OK)
        log_warn("ledger", "intent of request %s at %s stays", p->req.id, kid);
    p->last_code = a->code;
    snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %s", kid, cpn_strerror(a->code));
    if (p->state == CS_IN_DOUBT) {
        self->svc.stats->in_doubt++;
        s_finish_nack(self, p, CPN_E_UNREACHABLE, p->last_reason);
        return;
    }
    s_claim_next(self, p);
}

void claim_on_nack(claim_t *self, const broker_rx_t *rx, const cpn_nack_t *nack)
{
    if (claim_relay_nack(self->relay, rx->env.from, nack->ref_seq, nack))
        return;
    if (!s_pending_by_claim(self, nack->ref_seq) &&
        self->svc.out.peer_answer(self->svc.out.ctx, &rx->env, nack->ref_seq, NULL, NULL, NULL))
        return;
    s_nack_in(self, rx->env.from, nack->ref_seq, nack, true);
}

/* ---- answers that came back through the federation ---- */

void claim_on_remote_answer(claim_t *self, const cpn_env_t *answer, const broker_fwd_ref_t *ref)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(ref->peer, kid);
    if (answer->type == CPN_MSG_NACK) {
        cpn_nack_t nack;
        if (cpn_nack_decode(answer, self->svc.lim, &nack) != CPN_OK) {
            self->svc.out.count_refusal(self->svc.out.ctx, CPN_E_SCHEMA);
            return;
        }
        if (ref->kind == CPN_MSG_CLAIM) {
            /* A broker on the way that could not deliver it says nothing about the peer. */
            s_nack_in(self, ref->peer, ref->claim_seq, &nack,
                      memcmp(answer->from, ref->peer, CPN_PK_LEN) == 0);
            return;
        }
        (void)claim_relay_nack(self->relay, ref->peer, ref->tenant_seq, &nack);
        return;
    }
    cpn_lease_t lease;
    s_chain_t ch;
    uint64_t own_seq = 0;
    int r = cpn_lease_decode(answer, self->svc.lim, &lease);
    if (r == CPN_OK)
        r = s_open_remote_chain(self, answer, &lease, &ch, &own_seq);
    /* The peer we claimed, or, for a summary row, a peer of the broker that made it, which
     * resolved our CLAIM (the chain opener checked the route says so). */
    if (r == CPN_OK && memcmp(answer->from, ref->peer, CPN_PK_LEN) != 0 &&
        !(memcmp(ch.origin.peer, ref->peer, CPN_PK_LEN) == 0 &&
          memcmp(ch.claim_env.from, ref->peer, CPN_PK_LEN) == 0))
        r = CPN_E_UNTRUSTED;
    s_audit(self, answer->ts_ms, cpn_msg_name(answer->type), answer->from, r, answer->frame,
            answer->frame_len);
    if (r != CPN_OK) {
        self->svc.out.count_refusal(self->svc.out.ctx, r);
        log_warn("claim", "%s for peer %s, back through the federation, refused: %s",
                 cpn_msg_name(answer->type), kid, cpn_errname(r));
        return;
    }
    if (ref->kind != CPN_MSG_CLAIM) {
        (void)claim_relay_lease(self->relay, answer, &lease, ch.req.id);
        return;
    }
    s_lease_in(self, answer, &lease, &ch, own_seq);
}

/* ---- RENEW, RELEASE: relayed (claim_relay.c) ---- */

void claim_on_tenant_op(claim_t *self, const broker_rx_t *rx, const uint8_t peer[CPN_PK_LEN],
                        const char *lease_id, uint64_t extend_s)
{
    /* A RENEW of a tenant with a budget is admitted like a request (spend_renew). */
    char why[CPN_REASON_MAX];
    const policy_tenant_t *t = extend_s ? policy_tenant(s_pol(self), rx->env.from) : NULL;
    int r = t && t->budget.amount
                ? spend_renew(self->svc.spend, self->svc.ledger, &t->budget, rx->env.from, peer,
                              lease_id, extend_s, self->clock.now_ms(),
                              s_in_flight(self, rx->env.from, NULL), why)
                : CPN_OK;
    if (r != CPN_OK) {
        self->svc.out.nack(self->svc.out.ctx, rx->rid, rx->rid_len, lease_id, rx->env.seq, r, why);
        return;
    }
    claim_relay_on_tenant_op(self->relay, rx, peer, lease_id);
}

/* ---- a peer's AD ---- */

/* The peer answers the CLAIMs of a batch before it advertises, on the same connection, so
 * every CLAIM to it still unanswered when its AD arrives was not yet decided when the AD was
 * written: the AD counts those units as free. Hold them again, or every request arriving
 * until the answers come back matches them (under load most CLAIMs then end in no-units). */
void claim_on_ad(claim_t *self, const uint8_t peer[CPN_PK_LEN])
{
    for (size_t i = 0; i < self->pending_top; i++) {
        claim_pending_t *p = &self->pending[i];
        if (p->state < CS_CLAIMING || !p->held || p->next == 0 ||
            memcmp(p->cands[p->next - 1].peer, peer, CPN_PK_LEN) != 0)
            continue;
        const match_cand_t *c = &p->cands[p->next - 1];
        if (book_take(self->svc.book, peer, c->package, p->held) != CPN_OK)
            p->held = 0; /* the AD says they are gone: nothing to give back later */
    }
}

/* ---- timers ---- */

/* A CLAIM past its deadline: the same candidate again under a new seq while tries are left
 * (see the top of this file), else the final NACK. */
static void s_act_timeout(claim_t *self, claim_pending_t *p, const s_arg_t *a)
{
    (void)a;
    if (p->next == 0 || p->tries >= s_pol(self)->limits.claim_tries) {
        /* Its intent stays in doubt: the same request sent again asks this peer first. */
        if (p->state == CS_IN_DOUBT) {
            char kid[CPN_KID_LEN], why[CPN_REASON_MAX];
            cpn_key_id(p->cands[0].peer, kid);
            snprintf(why, sizeof why,
                     "a claim for this request may have been granted by peer %s, which did "
                     "not answer; it is not served elsewhere until %s answers: send it "
                     "again later",
                     kid, kid);
            self->svc.stats->in_doubt++;
            s_finish_nack(self, p, CPN_E_TIMEOUT, why);
            return;
        }
        s_finish_nack(self, p, CPN_E_TIMEOUT,
                      "the peer did not answer; sending the same request again is safe: "
                      "it returns the lease if the peer granted one");
        return;
    }
    const match_cand_t c = p->cands[p->next - 1];
    if (s_send_claim(self, p, &c) != CPN_OK)
        s_finish_nack(self, p, CPN_E_UNREACHABLE, "the peer is not connected");
}

void claim_tick(claim_t *self, uint64_t now_mono)
{
    for (size_t i = 0; i < self->pending_top; i++) {
        claim_pending_t *p = &self->pending[i];
        if (p->state < CS_CLAIMING || now_mono < p->deadline_mono)
            continue;
        self->svc.stats->claim_timeouts++;
        s_fire(self, p, CE_TIMEOUT, NULL);
    }
    claim_relay_tick(self->relay, now_mono);
}
