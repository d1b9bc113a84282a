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
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "broker.h"
#include "chain.h"
#include "clock.h"
#include "federation.h"
#include "log.h"

/* ---- small helpers ---- */

/* The audit log is a record, not a gate: a failed write is logged and the work goes on. */
static void s_audit(broker_t *self, uint64_t ts, const char *type, const uint8_t *from,
                    int verdict, const uint8_t *frame, size_t len)
{
    int r = ledger_audit(self->ledger, ts, type, from, verdict, frame, len);
    if (r != CPN_OK)
        log_warn("ledger", "audit of a %s not written: %s", type, cpn_errname(r));
}

static void s_progress(broker_t *self, const broker_pending_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Only for a tenant that asked (REQUEST.progress): each note costs a signature here and a
 * verify there, two per request, which a program submitting thousands does not want. */
static void s_progress(broker_t *self, const broker_pending_t *p, const char *fmt, ...)
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
    cpn_status_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.what, sizeof st.what, "progress");
    st.data.ptr = (const uint8_t *)sb.data;
    st.data.len = sb.size;
    (void)broker_send(self, p->rid, p->rid_len, CPN_MSG_STATUS, &st);
    msgpack_sbuffer_destroy(&sb);
}

static const cpn_package_t *s_book_package(const broker_t *self, const uint8_t peer[CPN_PK_LEN],
                                           const char *id)
{
    const book_peer_t *bp = book_peer(self->book, peer);
    for (uint32_t i = 0; bp && i < bp->n_packages; i++)
        if (strcmp(bp->packages[i].id, id) == 0)
            return &bp->packages[i];
    return NULL;
}

static void s_pending_free(broker_t *self, broker_pending_t *p)
{
    free(p->req_frame);
    memset(p, 0, sizeof *p);
    self->n_pending--;
    while (self->pending_top && !self->pending[self->pending_top - 1].used)
        self->pending_top--;
}

static broker_pending_t *s_pending_by_claim(broker_t *self, uint64_t claim_seq)
{
    for (size_t i = 0; i < self->pending_top; i++) {
        broker_pending_t *p = &self->pending[i];
        for (uint32_t k = 0; p->used && k < p->n_claims; k++)
            if (p->claim_seqs[k] == claim_seq)
                return p;
    }
    return NULL;
}

static broker_pending_t *s_pending_by_request(broker_t *self, const uint8_t tenant[CPN_PK_LEN],
                                              const char *id)
{
    for (size_t i = 0; i < self->pending_top; i++) {
        broker_pending_t *p = &self->pending[i];
        if (p->used && memcmp(p->tenant, tenant, CPN_PK_LEN) == 0 && strcmp(p->req.id, id) == 0)
            return p;
    }
    return NULL;
}

/* The lowest free slot, so that every request in flight stays below pending_top and the
 * scans stop there: with max_pending slots of ~4.6 KB each, scanning all of them on every
 * REQUEST and LEASE was a large part of the broker's CPU in scripts/bench/e2e. */
static broker_pending_t *s_pending_alloc(broker_t *self)
{
    for (size_t i = 0; i < self->n_pending_slots; i++)
        if (!self->pending[i].used) {
            self->pending[i].used = true;
            self->n_pending++;
            if (i >= self->pending_top)
                self->pending_top = i + 1;
            return &self->pending[i];
        }
    return NULL;
}

/* The tenant's answer is final: NACK and forget the request. */
static void s_finish_nack(broker_t *self, broker_pending_t *p, int code, const char *reason)
{
    broker_nack(self, p->rid, p->rid_len, p->req.id, p->req_seq, code, reason);
    char kid[CPN_KID_LEN];
    cpn_key_id(p->tenant, kid);
    log_info("claim", "request %s of %s: %s %s", p->req.id, kid, cpn_errname(code),
             reason ? reason : "");
    s_pending_free(self, p);
}

/* Where a peer is reached: through the member its offer came from (*remote, via filled), or
 * its own connection to us (*route). CPN_E_UNREACHABLE if neither. */
static int s_reach(broker_t *self, const uint8_t peer[CPN_PK_LEN], bool *remote,
                   uint8_t via[CPN_PK_LEN], const broker_route_t **route)
{
    const book_peer_t *bp = book_peer(self->book, peer);
    *remote = bp && !sodium_is_zero(bp->via, CPN_PK_LEN);
    *route = NULL;
    if (*remote) {
        memcpy(via, bp->via, CPN_PK_LEN);
        return CPN_OK;
    }
    *route = broker_route(self, peer);
    return *route ? CPN_OK : CPN_E_UNREACHABLE;
}

/* The unresolved intent of p's request at `peer`; *found false if none. */
static int s_intent_of(broker_t *self, const broker_pending_t *p, const uint8_t peer[CPN_PK_LEN],
                       ledger_intent_t *out, bool *found)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    *found = false;
    int r = ledger_intents(self->ledger, p->tenant, p->req.id, in, BROKER_CANDS_MAX, &n);
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
static int s_send_claim(broker_t *self, broker_pending_t *p, const match_cand_t *c)
{
    const broker_route_t *route = NULL;
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    int r = s_reach(self, c->peer, &it.remote, it.via, &route);
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
    claim.deadline = cpn_now_ms() + (uint64_t)self->pol->limits.claim_timeout_s * 1000;
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
    uint64_t skew_ms = (uint64_t)self->pol->limits.skew_s * 1000;
    if ((r = s_intent_of(self, p, c->peer, &prev, &found)) != CPN_OK)
        return CPN_E_DB;
    bool fenced = !found || cpn_now_ms() > prev.deadline_ms + skew_ms;
    if ((r = ledger_intent_add(self->ledger, &in)) != CPN_OK)
        return r == CPN_E_INVAL ? r : CPN_E_DB; /* no intent, no CLAIM */
    r = cpn_signer_build(&self->signer, CPN_MSG_CLAIM, &claim, &it.frame, &it.len);
    if (r != CPN_OK)
        return r; /* the intent stays: harmless, the peer never saw a CLAIM for it */
    uint64_t seq = self->signer.last_seq;
    cpn_env_t env;
    /* The LEASE will carry this CLAIM back: remember it is ours and already good. */
    if (cpn_env_parse(it.frame, it.len, &self->lim, &env) == CPN_OK)
        cpn_sigcache_add(self->sigcache, &env);
    it.kind = OUTBOX_CLAIM;
    it.claim_seq = seq;
    memcpy(it.peer, c->peer, CPN_PK_LEN);
    if (route) {
        memcpy(it.rid, route->rid, route->rid_len);
        it.rid_len = route->rid_len;
    }
    if ((r = broker_queue(self, &it)) != CPN_OK)
        return r;
    p->claim_fenced[p->n_claims] = fenced;
    p->claim_seqs[p->n_claims++] = seq;
    p->tries++;
    p->deadline_mono = cpn_mono_ms() + self->pol->limits.claim_timeout_s * 1000;
    return CPN_OK; /* stats.claims_sent counts it when it leaves (server.c) */
}

/* Claim the next candidate, or give the tenant its final NACK. The book holds the claimed
 * units from the CLAIM on, not from the LEASE: otherwise every request arriving while CLAIMs
 * are out matches the same last free units, and under load most CLAIMs end in no-units
 * (scripts/bench/e2e at 1000 requests/s: 2,376 of 5,000 requests NACKed that way while
 * capacity was left). A refusal other than no-units gives them back (s_nack_in); the peer's
 * next AD corrects the rest. */
static void s_claim_next(broker_t *self, broker_pending_t *p)
{
    uint32_t tries = self->pol->limits.claim_tries;
    while (p->next < p->n_cands && p->tries < tries) {
        const match_cand_t *c = &p->cands[p->next++];
        int r = s_send_claim(self, p, c);
        char kid[CPN_KID_LEN];
        cpn_key_id(c->peer, kid);
        if (r == CPN_OK) {
            uint32_t units = c->units < p->units_left ? c->units : p->units_left;
            p->held = book_take(self->book, c->peer, c->package, units) == CPN_OK ? units : 0;
            s_progress(self, p, "claiming %u x %s from peer %s at %" PRIu64 ".%03" PRIu64
                                "/h (try %u of %u)",
                       c->units < p->units_left ? c->units : p->units_left, c->package, kid,
                       c->price / 1000, c->price % 1000, p->tries, tries);
            return;
        }
        p->last_code = r;
        snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %s", kid, cpn_strerror(r));
        if (p->in_doubt) {
            /* Served elsewhere, the request could end with two leases: that is how they
             * happened (issue 10). */
            self->stats.in_doubt++;
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
static void s_nack_in_doubt(broker_t *self, broker_pending_t *p, const ledger_intent_t *in)
{
    char kid[CPN_KID_LEN], when[40] = "?";
    cpn_key_id(in->peer, kid);
    uint64_t until = in->deadline_ms + (uint64_t)self->pol->limits.skew_s * 1000;
    time_t t = (time_t)(until / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char reason[CPN_REASON_MAX];
    snprintf(reason, sizeof reason,
             "a claim for this request may still be granted by peer %s until %s "
             "(%" PRIu64 " ms since the epoch); send it again after that",
             kid, when, until);
    self->stats.in_doubt++;
    s_finish_nack(self, p, CPN_E_IN_DOUBT, reason);
}

static void s_serve(broker_t *self, broker_pending_t *p, const match_cand_t *planned);
static void s_queue(broker_t *self, broker_pending_t *p);

/* Serve a request from its start: if a CLAIM for it may have been granted by some peer (an
 * unresolved intent, say from before a restart), claim from that peer only, the same package
 * and units: it answers with the lease it holds, grants now, or refuses. Otherwise match it
 * (through the batch window if `may_queue` and batch mode is on). */
static void s_start(broker_t *self, broker_pending_t *p, bool may_queue)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    if (ledger_intents(self->ledger, p->tenant, p->req.id, in, BROKER_CANDS_MAX, &n) != CPN_OK) {
        s_finish_nack(self, p, CPN_E_DB, "the broker cannot read its ledger");
        return;
    }
    p->in_doubt = false;
    p->next = p->n_cands = 0;
    p->tries = 0;
    p->held = 0;
    if (n == 0) {
        if (may_queue && self->pol->batch.on)
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
    p->in_doubt = true;
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    log_info("claim",
             "request %s: in doubt at peer %s (%u claims, deadline %" PRIu64 "): asking it",
             p->req.id, kid, in[0].claims, in[0].deadline_ms);
    s_progress(self, p, "a claim for this request went to peer %s before: asking it again", kid);
    s_claim_next(self, p);
}

/* Drop candidates that would take the tenant over quota; the first refusal is the reason. */
static int s_quota_filter(broker_t *self, broker_pending_t *p, const policy_tenant_t *t,
                          char *why, size_t cap)
{
    ledger_usage_t used;
    int r = ledger_quota_usage(self->ledger, p->tenant, cpn_now_ms(), &used);
    if (r != CPN_OK)
        return r;
    /* Requests still in flight count as if granted, so a burst cannot overrun a quota: their
     * units, and the accelerators and spend of the candidate being claimed for them. */
    for (size_t i = 0; i < self->pending_top; i++) {
        const broker_pending_t *q = &self->pending[i];
        /* Requests still in the batch window count once they are matched, as they would
         * have one after another without the window. */
        if (!q->used || q->queued || q == p || memcmp(q->tenant, p->tenant, CPN_PK_LEN) != 0)
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
        uint32_t units = p->req.split ? (c->units < p->units_left ? c->units : p->units_left)
                                      : p->req.units;
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

/* Policy local_first: candidates of peers connected to us first, each group in rank order. */
static void s_local_first(broker_t *self, broker_pending_t *p)
{
    match_cand_t sorted[BROKER_CANDS_MAX];
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p->n_cands && k < BROKER_CANDS_MAX; i++) {
            const book_peer_t *bp = book_peer(self->book, p->cands[i].peer);
            bool local = !bp || sodium_is_zero(bp->via, CPN_PK_LEN);
            if (local == (pass == 0))
                sorted[k++] = p->cands[i];
        }
    memcpy(p->cands, sorted, k * sizeof sorted[0]);
}

/* ---- REQUEST ---- */

/* The planned offer first; the matcher's other candidates follow in their order, for the
 * retries should the peer refuse. */
static void s_plan_first(broker_pending_t *p, const match_cand_t *planned)
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
static void s_serve(broker_t *self, broker_pending_t *p, const match_cand_t *planned)
{
    const policy_tenant_t *t = policy_tenant(self->pol, p->tenant);
    match_fail_t fail;
    char reason[CPN_REASON_MAX];
    p->queued = false;
    if (!t) { /* a reload dropped the tenant while its request waited in the window */
        s_finish_nack(self, p, CPN_E_UNKNOWN_TENANT, "no longer a tenant of this broker");
        return;
    }
    int r = match_find(self->book, &p->req, &self->pol->placement, cpn_now_ms(), p->cands,
                       BROKER_CANDS_MAX, &p->n_cands, &fail);
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
    if (self->pol->federation.local_first)
        s_local_first(self, p);
    if (planned)
        s_plan_first(p, planned);
    if ((r = s_quota_filter(self, p, t, reason, sizeof reason)) != CPN_OK) {
        s_finish_nack(self, p, r, reason);
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
static void s_window_flush(broker_t *self)
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
        r = batch_plan(self->book, reqs, n, &self->pol->placement, cpn_now_ms(), plan, &n_plan);
    }
    if (r != CPN_OK) {
        log_warn("claim", "batch plan of %zu requests failed (%s): each is matched alone", n,
                 cpn_errname(r));
        n_plan = 0;
    }
    log_debug("claim", "batch window of %zu requests: %zu placed by the plan", n, n_plan);
    for (size_t k = 0; k < n_plan; k++)
        s_serve(self, &self->pending[slots[plan[k].req]], &plan[k].cand);
    for (size_t i = 0, k = 0; i < n; i++) {
        if (k < n_plan && plan[k].req == i) {
            k++; /* plan[] is in request order */
            continue;
        }
        s_serve(self, &self->pending[slots[i]], NULL);
    }
    free(plan);
    free(reqs);
}

/* Batch mode: the request waits in the window; a full window is matched at once. */
static void s_queue(broker_t *self, broker_pending_t *p)
{
    uint64_t now = cpn_mono_ms();
    if (self->window.n >= WINDOW_CAP)
        s_window_flush(self);
    if (window_add(&self->window, (size_t)(p - self->pending), now) != CPN_OK) {
        s_serve(self, p, NULL);
        return;
    }
    p->queued = true;
    s_progress(self, p, "waiting up to %" PRIu64 " ms to be matched with other requests",
               self->pol->batch.wait_ms);
    claim_window_poll(self, now);
}

uint64_t claim_window_deadline(const broker_t *self)
{
    const policy_batch_t *b = &self->pol->batch;
    /* max 0 when batch mode was switched off by a reload: what still waits goes now */
    return window_deadline(&self->window, b->on ? b->max : 0, b->wait_ms);
}

void claim_window_poll(broker_t *self, uint64_t now_mono)
{
    if (claim_window_deadline(self) <= now_mono)
        s_window_flush(self);
}

/* Every request still in flight gets a NACK busy: those in the batch window (pending slots
 * too) and those whose CLAIM is out. A peer that grants after we stop keeps the lease under
 * (tenant, request id), so the same request sent again, to this broker restarted or another,
 * gets that lease. */
size_t claim_stop(broker_t *self)
{
    size_t slots[WINDOW_CAP], n = 0;
    (void)window_take(&self->window, slots);
    for (size_t i = 0; i < self->pending_top; i++)
        if (self->pending[i].used) {
            s_finish_nack(self, &self->pending[i], CPN_E_BUSY,
                          "the broker is stopping; send the request again");
            n++;
        }
    return n;
}

/* The same request id again, with a lease in the ledger. The same terms and the lease still
 * active: CPN_OK, the GRANT it got is sent again unchanged (idempotent). Other terms:
 * CPN_E_CONFLICT. The lease released or ended: CPN_E_EXPIRED naming it, never the old GRANT
 * that says "active". *why says which. */
static int s_prior_check(broker_t *self, const ledger_lease_t *prior, const uint8_t *grant,
                         size_t len, const cpn_request_t *req, char *why, size_t cap)
{
    cpn_chain_opts_t o = {.lim = &self->lim, .sigcache = self->sigcache};
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
    } else if (strcmp(prior->state, "active") != 0 || prior->end_ms <= cpn_now_ms()) {
        r = CPN_E_EXPIRED;
        snprintf(why, cap, "request id %s had lease %s, now %s", req->id, prior->lease_id,
                 strcmp(prior->state, "active") == 0 ? "ended" : prior->state);
    }
    free(ch);
    return r;
}

void claim_on_request(broker_t *self, const broker_rx_t *rx, const cpn_request_t *req)
{
    const char *why = NULL;
    self->stats.requests++;
    s_audit(self, rx->env.ts_ms, "REQUEST", rx->env.from, CPN_OK,
                       rx->env.frame, rx->env.frame_len);
    /* The same request again: the lease it got, unchanged (idempotent). */
    ledger_lease_t prior;
    uint8_t *grant = NULL;
    size_t grant_len = 0;
    if (ledger_find_request(self->ledger, rx->env.from, req->id, &prior, &grant, &grant_len) ==
            CPN_OK &&
        grant) {
        char why_prior[CPN_REASON_MAX];
        int rp = s_prior_check(self, &prior, grant, grant_len, req, why_prior, sizeof why_prior);
        if (rp == CPN_OK) /* through the outbox: the record may be in the open transaction */
            broker_queue_grant(self, rx->rid, rx->rid_len, &grant, grant_len, req->id,
                               rx->env.seq);
        else
            broker_nack(self, rx->rid, rx->rid_len, req->id, rx->env.seq, rp, why_prior);
        free(grant); /* NULL if the outbox took it */
        return;
    }
    free(grant);
    if (s_pending_by_request(self, rx->env.from, req->id)) {
        broker_nack(self, rx->rid, rx->rid_len, req->id, rx->env.seq, CPN_E_BUSY,
                    "this request id is already being served");
        return;
    }
    if (cpn_request_validate(req, &why) != CPN_OK) {
        broker_nack(self, rx->rid, rx->rid_len, req->id, rx->env.seq, CPN_E_INVAL, why);
        return;
    }
    broker_pending_t *p = s_pending_alloc(self);
    if (!p) {
        broker_nack(self, rx->rid, rx->rid_len, req->id, rx->env.seq, CPN_E_BUSY,
                    "too many requests in flight (limits.max_pending)");
        return;
    }
    memcpy(p->rid, rx->rid, rx->rid_len);
    p->rid_len = rx->rid_len;
    memcpy(p->tenant, rx->env.from, CPN_PK_LEN);
    p->req = *req;
    p->req_seq = rx->env.seq;
    p->units_left = req->units;
    p->req_frame = malloc(rx->env.frame_len);
    if (!p->req_frame) {
        s_finish_nack(self, p, CPN_E_NOMEM, NULL);
        return;
    }
    memcpy(p->req_frame, rx->env.frame, rx->env.frame_len);
    p->req_len = rx->env.frame_len;
    s_start(self, p, true);
}

/* ---- LEASE ---- */

/* The CLAIM and REQUEST a LEASE carries, opened by the one chain opener (common/chain.h):
 * claim_env, req_env, claim and req are its fields. */
typedef cpn_chain_t s_chain_t;

static broker_op_t *s_op_find(broker_t *self, const uint8_t peer[CPN_PK_LEN],
                              const char *lease_id, uint64_t tenant_seq);

/* Open the chain of a LEASE from a peer: every type, signature, signer and term (chain.h),
 * the CLAIM signed by claim_pk (NULL: anyone, the route decides). A LEASE we countersign as
 * the answer to a CLAIM must be a new grant (active, never renewed, starting now within the
 * skew window); only one answering a RENEW or RELEASE we relayed may be renewed or released,
 * and one answering a CLAIM we carried for another broker goes back there to be judged. */
static int s_open_request(broker_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                          const uint8_t *claim_pk, unsigned flags, s_chain_t *ch)
{
    const uint8_t *us = cpn_identity_pk(self->id);
    uint64_t now = cpn_now_ms(), skew_ms = self->pol->limits.skew_s * 1000;
    cpn_chain_opts_t o = {.lim = &self->lim,
                          .sigcache = self->sigcache,
                          .claim_pk = claim_pk,
                          .max_hops = self->pol->federation.max_hops,
                          .flags = flags};
    int r = cpn_chain_open(lenv->frame, lenv->frame_len, CPN_MSG_LEASE, &o, ch);
    bool carried = r == CPN_OK && ch->n_forwards && memcmp(ch->origin_env.from, us, CPN_PK_LEN);
    const broker_op_t *op = r == CPN_OK ? s_op_find(self, lenv->from, lease->lease_id, 0) : NULL;
    if (r == CPN_OK && !carried && !op)
        r = cpn_chain_check_new(ch, now, skew_ms);
    /* The answer to a RENEW is a renewed active lease, to a RELEASE a released one. */
    if (r == CPN_OK && op &&
        (op->kind == CPN_MSG_RELEASE ? strcmp(ch->lease.state, "released") != 0
                                     : strcmp(ch->lease.state, "active") != 0 ||
                                           ch->lease.renewals == 0)) {
        r = CPN_E_CHAIN;
        snprintf(ch->why, sizeof ch->why, "LEASE %s (state %s, renewals %u) does not answer the %s",
                 lease->lease_id, ch->lease.state, ch->lease.renewals,
                 cpn_msg_name(op->kind));
    }
    if (r != CPN_OK) {
        char kid[CPN_KID_LEN];
        cpn_key_id(lenv->from, kid);
        log_warn("claim", "LEASE %s from %s: %s", lease->lease_id, kid, ch->why);
    }
    return r;
}

static int s_open_chain(broker_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                        s_chain_t *ch)
{
    /* A CLAIM of ours, directly: the server verified the LEASE itself. */
    return s_open_request(self, lenv, lease, cpn_identity_pk(self->id), CPN_CHAIN_TOP_VERIFIED,
                          ch);
}

/* A LEASE that came back through the federation embeds the home broker's CLAIM, whose route
 * must start at a CLAIM of ours (the opener checks the terms are the same). *own_seq gets the
 * seq of that CLAIM of ours. */
static int s_open_remote_chain(broker_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                               s_chain_t *ch, uint64_t *own_seq)
{
    int r = s_open_request(self, lenv, lease, NULL, 0, ch);
    if (r != CPN_OK)
        return r;
    if (ch->n_forwards == 0 || memcmp(ch->origin_env.from, cpn_identity_pk(self->id),
                                      CPN_PK_LEN) != 0)
        return CPN_E_UNTRUSTED; /* neither ours nor carried for us */
    *own_seq = ch->origin_env.seq;
    return CPN_OK;
}

/* GRANT = the peer's LEASE countersigned by us. *frame_p malloc'd. */
static int s_build_grant(broker_t *self, const cpn_env_t *lenv, const char *request_id,
                         uint8_t **frame_p, size_t *len)
{
    cpn_grant_t g;
    memset(&g, 0, sizeof g);
    g.lease.ptr = lenv->frame;
    g.lease.len = lenv->frame_len;
    snprintf(g.request_id, sizeof g.request_id, "%s", request_id);
    return cpn_signer_build(&self->signer, CPN_MSG_GRANT, &g, frame_p, len);
}

static broker_op_t *s_op_find(broker_t *self, const uint8_t peer[CPN_PK_LEN],
                              const char *lease_id, uint64_t tenant_seq)
{
    for (size_t i = 0; i < self->ops_top; i++) {
        broker_op_t *op = &self->ops[i];
        if (op->used && memcmp(op->peer, peer, CPN_PK_LEN) == 0 &&
            (lease_id ? strcmp(op->lease_id, lease_id) == 0 : op->tenant_seq == tenant_seq))
            return op;
    }
    return NULL;
}

/* A LEASE answering a RENEW or RELEASE we relayed. */
static void s_op_lease(broker_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                       broker_op_t *op, const char *request_id)
{
    uint8_t *grant = NULL;
    size_t len = 0;
    int r = strcmp(lease->state, "released") == 0
                ? ledger_release(self->ledger, lenv->from, lease->lease_id, cpn_now_ms())
                : ledger_renew(self->ledger, lenv->from, lease->lease_id, lease->end_ms,
                               lease->renewals);
    if (r != CPN_OK && r != CPN_E_EXPIRED)
        log_warn("ledger", "lease %s: %s", lease->lease_id, cpn_errname(r));
    if (r == CPN_E_DB)
        broker_nack(self, op->rid, op->rid_len, lease->lease_id, op->tenant_seq, CPN_E_DB,
                    "the peer answered but the broker could not record it");
    else if (s_build_grant(self, lenv, request_id, &grant, &len) == CPN_OK)
        broker_queue_grant(self, op->rid, op->rid_len, &grant, len, lease->lease_id,
                           op->tenant_seq);
    free(grant);
    memset(op, 0, sizeof *op);
}

/* A LEASE for one of our CLAIMs, its chain checked: countersign, record, tell the tenant. */
static void s_lease_in(broker_t *self, const cpn_env_t *lenv, const cpn_lease_t *lease,
                       const s_chain_t *ch, uint64_t claim_seq)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(lenv->from, kid);
    uint8_t *grant = NULL;
    size_t len = 0;
    int r;
    if ((r = s_build_grant(self, lenv, ch->req.id, &grant, &len)) != CPN_OK) {
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
    bool recorded = (r = ledger_record_grant(self->ledger, &rec, grant, len)) == CPN_OK;
    if (!recorded)
        log_error("ledger", "lease %s not recorded: %s", lease->lease_id, cpn_errname(r));
    /* The lease settles the intent (if recording it failed, the intent stays: the next
     * REQUEST asks the peer again and records it then). */
    else if ((r = ledger_intent_resolve(self->ledger, rec.tenant, rec.request_id, rec.peer)) !=
             CPN_OK)
        log_error("ledger", "intent of request %s not resolved: %s", rec.request_id,
                  cpn_errname(r));
    /* The book already holds these units: taken when the CLAIM went out (s_claim_next). */
    s_audit(self, cpn_now_ms(), "GRANT", cpn_identity_pk(self->id), CPN_OK, grant, len);
    broker_pending_t *p = s_pending_by_claim(self, claim_seq);
    /* A LEASE the peer held already answers our new CLAIM with the first one it carries,
     * perhaps from before our restart: match it by the request, if we are claiming it from
     * that peer now. */
    if (!p && (p = s_pending_by_request(self, rec.tenant, rec.request_id)) != NULL &&
        (p->next == 0 || memcmp(p->cands[p->next - 1].peer, lenv->from, CPN_PK_LEN) != 0))
        p = NULL;
    if (p && !recorded) {
        /* No GRANT for a lease we could not record (issue 10, defect 4). */
        free(grant);
        s_finish_nack(self, p, CPN_E_DB,
                      "the broker could not record the lease; the peer holds it: send the same "
                      "request again");
        return;
    }
    if (!p) {
        /* Late: the tenant already had its NACK; the lease is recorded and a resubmission
         * of the same request id returns it. */
        log_warn("claim", "late LEASE %s from %s recorded for request %s", lease->lease_id, kid,
                 ch->req.id);
        free(grant);
        return;
    }
    broker_queue_grant(self, p->rid, p->rid_len, &grant, len, ch->req.id, p->req_seq);
    self->stats.grants++;
    log_info("claim", "lease %s: %u x %s from %s for request %s", lease->lease_id, lease->units,
             lease->package, kid, ch->req.id);
    p->units_left = lease->units >= p->units_left ? 0 : p->units_left - lease->units;
    p->held = 0;
    if (p->units_left == 0) {
        s_pending_free(self, p);
        return;
    }
    if (p->in_doubt) {
        s_start(self, p, false); /* the rest: another intent, or matched afresh */
        return;
    }
    s_claim_next(self, p); /* a split request: the rest from the next candidate */
}

void claim_on_lease(broker_t *self, const broker_rx_t *rx, const cpn_lease_t *lease)
{
    s_chain_t ch;
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    int r = s_open_chain(self, &rx->env, lease, &ch);
    s_audit(self, rx->env.ts_ms, "LEASE", rx->env.from, r, rx->env.frame, rx->env.frame_len);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("claim", "LEASE %s from %s refused: %s", lease->lease_id, kid, cpn_errname(r));
        return;
    }
    broker_op_t *op = s_op_find(self, rx->env.from, lease->lease_id, 0);
    if (op) {
        s_op_lease(self, &rx->env, lease, op, ch.req.id);
        return;
    }
    /* We claimed as the peer's home broker for another broker: the lease goes back there. */
    if (!s_pending_by_claim(self, ch.claim_env.seq) &&
        federation_peer_answer(self, &rx->env, ch.claim_env.seq, ch.req_env.from, ch.req.id,
                               lease->lease_id)) {
        /* A new lease (not a renewal) took units: the book shows it until the next AD. */
        if (strcmp(lease->state, "active") == 0 && lease->renewals == 0 &&
            book_take(self->book, rx->env.from, lease->package, lease->units) != CPN_OK)
            log_debug("book", "lease %s: book had fewer free units", lease->lease_id);
        return;
    }
    s_lease_in(self, &rx->env, lease, &ch, ch.claim_env.seq);
}

/* ---- NACK ---- */

/* The peer refused a CLAIM of ours (or a broker on the way to it could not deliver it): try
 * the next candidate. */
static void s_nack_in(broker_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t claim_seq,
                      const cpn_nack_t *nack, bool from_peer)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(peer, kid);
    broker_pending_t *p = s_pending_by_claim(self, claim_seq);
    if (!p || p->next == 0 || memcmp(p->cands[p->next - 1].peer, peer, CPN_PK_LEN)) {
        log_debug("claim", "NACK for peer %s for no claim in flight (seq %" PRIu64 ")", kid,
                  claim_seq);
        return;
    }
    log_info("claim", "peer %s refused request %s: %s (%s)", kid, p->req.id,
             cpn_errname(nack->code), nack->reason);
    /* No units: the book was wrong and stays lowered until the next AD. Any other refusal
     * leaves the units free at the peer. */
    const match_cand_t *c = &p->cands[p->next - 1];
    if (p->held && nack->code != CPN_E_NO_UNITS &&
        book_give(self->book, c->peer, c->package, p->held) != CPN_OK)
        log_debug("book", "peer %s: package %s gone from the book", kid, c->package);
    p->held = 0;
    p->last_code = nack->code;
    snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %.200s", kid, nack->reason);
    /* The refusal settles the intent only if no other CLAIM to this peer can still be
     * granted, or have been granted after this one was refused (docs/PROTOCOL.md §13);
     * otherwise going elsewhere could end in two leases. */
    bool fenced = false;
    for (uint32_t k = 0; k < p->n_claims; k++)
        if (p->claim_seqs[k] == claim_seq)
            fenced = p->claim_fenced[k];
    ledger_intent_t in;
    bool found = false;
    int r = s_intent_of(self, p, peer, &in, &found);
    /* A broker on the way that could not deliver the CLAIM proves nothing about earlier ones
     * the peer did read: it settles the intent only if this was the only CLAIM to the peer. */
    if (!from_peer)
        fenced = found && in.claims <= 1;
    if (r != CPN_OK ||
        (found && fenced &&
         ledger_intent_resolve(self->ledger, p->tenant, p->req.id, peer) != CPN_OK)) {
        s_finish_nack(self, p, CPN_E_DB, "the broker cannot update its ledger");
        return;
    }
    if (found && !fenced) {
        s_nack_in_doubt(self, p, &in);
        return;
    }
    if (p->in_doubt) {
        s_start(self, p, false); /* settled: another intent, or matched afresh */
        return;
    }
    s_claim_next(self, p);
}

void claim_on_unsent(broker_t *self, uint64_t claim_seq, bool committed, int code)
{
    broker_pending_t *p = s_pending_by_claim(self, claim_seq);
    if (!p || p->next == 0)
        return;
    const match_cand_t *c = &p->cands[p->next - 1];
    char kid[CPN_KID_LEN];
    cpn_key_id(c->peer, kid);
    if (p->held && book_give(self->book, c->peer, c->package, p->held) != CPN_OK)
        log_debug("book", "peer %s: package %s gone from the book", kid, c->package);
    p->held = 0;
    if (!committed) {
        /* The intent was rolled back with the transaction: the CLAIM must not leave. */
        s_finish_nack(self, p, CPN_E_DB,
                      "the broker could not record its claim (ledger commit failed); nothing "
                      "was claimed: send the request again");
        return;
    }
    /* Committed but never sent: if it was the only CLAIM to that peer, or no earlier one
     * could still be granted (fenced), nothing is in doubt there. */
    bool fenced = false;
    for (uint32_t k = 0; k < p->n_claims; k++)
        if (p->claim_seqs[k] == claim_seq)
            fenced = p->claim_fenced[k];
    ledger_intent_t in;
    bool found = false;
    if (s_intent_of(self, p, c->peer, &in, &found) == CPN_OK && found &&
        (in.claims <= 1 || fenced) &&
        ledger_intent_resolve(self->ledger, p->tenant, p->req.id, c->peer) != CPN_OK)
        log_warn("ledger", "intent of request %s at %s stays", p->req.id, kid);
    p->last_code = code;
    snprintf(p->last_reason, sizeof p->last_reason, "peer %s: %s", kid, cpn_strerror(code));
    if (p->in_doubt) {
        self->stats.in_doubt++;
        s_finish_nack(self, p, CPN_E_UNREACHABLE, p->last_reason);
        return;
    }
    s_claim_next(self, p);
}

void claim_on_nack(broker_t *self, const broker_rx_t *rx, const cpn_nack_t *nack)
{
    broker_op_t *op = s_op_find(self, rx->env.from, NULL, nack->ref_seq);
    if (op) {
        broker_nack(self, op->rid, op->rid_len, nack->ref, op->tenant_seq, nack->code,
                    nack->reason);
        memset(op, 0, sizeof *op);
        return;
    }
    if (!s_pending_by_claim(self, nack->ref_seq) &&
        federation_peer_answer(self, &rx->env, nack->ref_seq, NULL, NULL, NULL))
        return;
    s_nack_in(self, rx->env.from, nack->ref_seq, nack, true);
}

/* ---- answers that came back through the federation ---- */

void claim_on_remote_answer(broker_t *self, const cpn_env_t *answer, const broker_fwd_ref_t *ref)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(ref->peer, kid);
    if (answer->type == CPN_MSG_NACK) {
        cpn_nack_t nack;
        if (cpn_msg_decode(answer, &self->lim, &nack) != CPN_OK) {
            broker_count_refusal(self, CPN_E_SCHEMA);
            return;
        }
        if (ref->kind == CPN_MSG_CLAIM) {
            /* A broker on the way that could not deliver it says nothing about the peer. */
            s_nack_in(self, ref->peer, ref->claim_seq, &nack,
                      memcmp(answer->from, ref->peer, CPN_PK_LEN) == 0);
            return;
        }
        broker_op_t *op = s_op_find(self, ref->peer, NULL, ref->tenant_seq);
        if (op) {
            broker_nack(self, op->rid, op->rid_len, nack.ref, op->tenant_seq, nack.code,
                        nack.reason);
            memset(op, 0, sizeof *op);
        }
        return;
    }
    cpn_lease_t lease;
    s_chain_t ch;
    uint64_t own_seq = 0;
    int r = CPN_E_SCHEMA;
    if (answer->type == CPN_MSG_LEASE && memcmp(answer->from, ref->peer, CPN_PK_LEN) == 0 &&
        (r = cpn_msg_decode(answer, &self->lim, &lease)) == CPN_OK)
        r = s_open_remote_chain(self, answer, &lease, &ch, &own_seq);
    s_audit(self, answer->ts_ms, cpn_msg_name(answer->type), answer->from, r, answer->frame,
            answer->frame_len);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("claim", "%s for peer %s, back through the federation, refused: %s",
                 cpn_msg_name(answer->type), kid, cpn_errname(r));
        return;
    }
    if (ref->kind != CPN_MSG_CLAIM) {
        broker_op_t *op = s_op_find(self, ref->peer, lease.lease_id, 0);
        if (op)
            s_op_lease(self, answer, &lease, op, ch.req.id);
        return;
    }
    s_lease_in(self, answer, &lease, &ch, own_seq);
}

/* ---- RENEW, RELEASE: the tenant's frame goes to the peer verbatim ---- */

void claim_on_tenant_op(broker_t *self, const broker_rx_t *rx, const uint8_t peer[CPN_PK_LEN],
                        const char *lease_id)
{
    s_audit(self, rx->env.ts_ms, cpn_msg_name(rx->env.type), rx->env.from, CPN_OK,
            rx->env.frame, rx->env.frame_len);
    const broker_route_t *route = NULL;
    uint8_t via[CPN_PK_LEN];
    bool remote = false;
    if (s_reach(self, peer, &remote, via, &route) != CPN_OK) {
        broker_nack(self, rx->rid, rx->rid_len, lease_id, rx->env.seq, CPN_E_UNREACHABLE,
                    "the lease's peer is not reachable from this broker");
        return;
    }
    broker_op_t *op = NULL;
    for (size_t i = 0; i < BROKER_OPS_MAX && !op; i++)
        if (!self->ops[i].used) {
            op = &self->ops[i];
            if (i >= self->ops_top)
                self->ops_top = i + 1;
        }
    if (!op) {
        broker_nack(self, rx->rid, rx->rid_len, lease_id, rx->env.seq, CPN_E_BUSY,
                    "too many renewals and releases in flight");
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
    op->deadline_mono = cpn_mono_ms() + self->pol->limits.claim_timeout_s * 1000;
    int r;
    if (remote) {
        broker_fwd_ref_t ref = {.kind = rx->env.type, .tenant_seq = rx->env.seq};
        memcpy(ref.peer, peer, CPN_PK_LEN);
        snprintf(ref.lease_id, sizeof ref.lease_id, "%s", lease_id);
        r = federation_forward(self, via, rx->env.frame, rx->env.frame_len, &ref);
    } else
        r = broker_send_frame(self, route->rid, route->rid_len, rx->env.frame,
                              rx->env.frame_len);
    if (r != CPN_OK) {
        broker_nack(self, rx->rid, rx->rid_len, lease_id, rx->env.seq,
                    r == CPN_E_UNREACHABLE ? r : CPN_E_BUSY, NULL);
        memset(op, 0, sizeof *op);
    }
}

/* ---- a peer's AD ---- */

/* The peer answers the CLAIMs of a batch before it advertises, on the same connection, so
 * every CLAIM to it still unanswered when its AD arrives was not yet decided when the AD was
 * written: the AD counts those units as free. Hold them again, or every request arriving
 * until the answers come back matches them (under load most CLAIMs then end in no-units). */
void claim_on_ad(broker_t *self, const uint8_t peer[CPN_PK_LEN])
{
    for (size_t i = 0; i < self->pending_top; i++) {
        broker_pending_t *p = &self->pending[i];
        if (!p->used || !p->held || p->next == 0 ||
            memcmp(p->cands[p->next - 1].peer, peer, CPN_PK_LEN) != 0)
            continue;
        const match_cand_t *c = &p->cands[p->next - 1];
        if (book_take(self->book, peer, c->package, p->held) != CPN_OK)
            p->held = 0; /* the AD says they are gone: nothing to give back later */
    }
}

/* ---- timers ---- */

void claim_tick(broker_t *self, uint64_t now_mono)
{
    for (size_t i = 0; i < self->pending_top; i++) {
        broker_pending_t *p = &self->pending[i];
        if (!p->used || p->queued || now_mono < p->deadline_mono)
            continue;
        self->stats.claim_timeouts++;
        if (p->next == 0 || p->tries >= self->pol->limits.claim_tries) {
            /* Its intent stays in doubt: the same request sent again asks this peer first. */
            if (p->in_doubt) {
                char kid[CPN_KID_LEN], why[CPN_REASON_MAX];
                cpn_key_id(p->cands[0].peer, kid);
                snprintf(why, sizeof why,
                         "a claim for this request may have been granted by peer %s, which did "
                         "not answer; it is not served elsewhere until %s answers: send it "
                         "again later",
                         kid, kid);
                self->stats.in_doubt++;
                s_finish_nack(self, p, CPN_E_TIMEOUT, why);
                continue;
            }
            s_finish_nack(self, p, CPN_E_TIMEOUT,
                          "the peer did not answer; sending the same request again is safe: "
                          "it returns the lease if the peer granted one");
            continue;
        }
        /* Same candidate again (see the top of this file). */
        const match_cand_t c = p->cands[p->next - 1];
        if (s_send_claim(self, p, &c) != CPN_OK)
            s_finish_nack(self, p, CPN_E_UNREACHABLE, "the peer is not connected");
    }
    /* ops_top only grows as ops are taken; here it comes down to the highest one in use. */
    size_t top = 0;
    for (size_t i = 0; i < self->ops_top; i++) {
        broker_op_t *op = &self->ops[i];
        if (op->used && now_mono < op->deadline_mono)
            top = i + 1;
        if (op->used && now_mono >= op->deadline_mono) {
            broker_nack(self, op->rid, op->rid_len, op->lease_id, op->tenant_seq, CPN_E_TIMEOUT,
                        "the peer did not answer");
            memset(op, 0, sizeof *op);
        }
    }
    self->ops_top = top;
}
