/* fed_summary.c - summaries for distant brokers (docs/FEDERATION.md): ours made and sent on,
 * and a CLAIM for one of our summary rows resolved to a package of one of our peers.
 */
#include "federation_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "msg_typed.h"
#include "summary.h"

/* ---- ours: made at most every FED_SUMMARY_EVERY_MS, sent when it changed or is a third of
 * its ttl old ---- */

static int s_make(broker_t *self, const cpn_ad_t *rows, uint64_t hash)
{
    struct federation *f = self->fed;
    cpn_ad_t s = *rows;
    snprintf(s.name, sizeof s.name, "%s", self->pol->broker.name);
    s.ttl_s = (uint32_t)self->pol->federation.summary.ttl_s;
    uint8_t *frame = NULL;
    size_t len = 0;
    int r = cpn_signer_build(&self->signer, CPN_MSG_SUMMARY, &s, &frame, &len);
    if (r != CPN_OK)
        return r;
    cpn_env_t env;
    if ((r = cpn_env_parse(frame, len, &self->lim, &env)) != CPN_OK) {
        free(frame);
        return r;
    }
    free(f->sum.frame);
    f->sum.frame = frame;
    f->sum.len = len;
    f->sum.seq = env.seq;
    f->sum.expires_ms = env.ts_ms + (uint64_t)s.ttl_s * 1000;
    f->sum.hash = hash;
    f->sum.rows = rows->n_packages;
    f->st.summaries_out++;
    return CPN_OK;
}

void fed_summary_tick(broker_t *self, uint64_t now_mono)
{
    struct federation *f = self->fed;
    if (!self->pol->federation.summary.publish || now_mono < f->sum.next_mono)
        return;
    f->sum.next_mono = now_mono + FED_SUMMARY_EVERY_MS;
    uint64_t now = cpn_now_ms(), ttl_ms = self->pol->federation.summary.ttl_s * 1000;
    cpn_ad_t rows;
    memset(&rows, 0, sizeof rows);
    uint32_t dropped = 0;
    if (summary_build(self->book, now, &rows, &dropped) != CPN_OK) {
        log_error("fed", "out of memory making our summary");
        return;
    }
    uint64_t hash = summary_hash(&rows);
    /* Nothing to say and nothing said: no summary at all. An empty one after rows ends them
     * at every broker (a tombstone there, as a WITHDRAW is). */
    bool silent = !f->sum.frame && rows.n_packages == 0;
    /* An empty summary is not refreshed: it has said its piece once the rows it ended
     * expire, and their tombstones go with them everywhere. */
    bool stale = f->sum.frame && f->sum.rows && now + ttl_ms * 2 / 3 >= f->sum.expires_ms;
    if (!silent && (!f->sum.frame || hash != f->sum.hash || stale)) {
        if (s_make(self, &rows, hash) == CPN_OK) {
            log_debug("fed", "our summary: %u rows (%u groups left out), seq %" PRIu64,
                      rows.n_packages, dropped, f->sum.seq);
            federation_publish(self, f->sum.frame, f->sum.len, 0, NULL);
        } else
            log_error("fed", "cannot sign our summary");
    }
    cpn_ad_clear(&rows);
}

bool fed_summary_ours(const broker_t *self, uint64_t now_ms, uint64_t *seq)
{
    const struct federation *f = self->fed;
    if (!f || !f->sum.frame || f->sum.expires_ms <= now_ms)
        return false;
    *seq = f->sum.seq;
    return true;
}

/* ---- a CLAIM for a row of ours, resolved ---- */

/* The package to claim for request (tenant, req) at most `price`: the one an open intent of
 * ours names (a CLAIM for it may be granted: the request sticks to that peer until the intent
 * ends, docs/PROTOCOL.md §13), else the best offer of a peer connected to us. */
static int s_pick(broker_t *self, const uint8_t tenant[CPN_PK_LEN], const cpn_request_t *req,
                  const cpn_claim_t *c, match_cand_t *out, bool *stuck)
{
    ledger_intent_t in[BROKER_CANDS_MAX];
    size_t n = 0;
    *stuck = false;
    if (ledger_intents(self->ledger, tenant, req->id, in, BROKER_CANDS_MAX, &n) != CPN_OK)
        return CPN_E_DB;
    if (n > 0) {
        *stuck = true;
        const book_peer_t *bp = book_peer(self->book, in[0].peer);
        memset(out, 0, sizeof *out);
        memcpy(out->peer, in[0].peer, CPN_PK_LEN);
        snprintf(out->package, sizeof out->package, "%s", in[0].package);
        for (uint32_t i = 0; bp && i < bp->n_packages; i++)
            if (strcmp(bp->packages[i].id, in[0].package) == 0)
                out->price = bp->packages[i].price;
        return out->price && out->price <= c->price && broker_route(self, out->peer)
                   ? CPN_OK
                   : CPN_E_UNREACHABLE;
    }
    cpn_request_t q = *req;
    q.units = c->units;
    q.split = false;
    if (!q.max_price || c->price < q.max_price)
        q.max_price = c->price;
    match_cand_t cands[BROKER_CANDS_MAX];
    size_t k = 0;
    int r = match_find(self->book, &q, &self->pol->placement, cpn_now_ms(), cands,
                       BROKER_CANDS_MAX, &k, NULL);
    for (size_t i = 0; r == CPN_OK && i < k; i++) {
        const book_peer_t *bp = book_peer(self->book, cands[i].peer);
        if (bp && fed_zero(bp->via) && broker_route(self, cands[i].peer)) {
            *out = cands[i];
            return CPN_OK;
        }
    }
    return CPN_E_NO_MATCH;
}

int fed_summary_resolve(broker_t *self, const broker_rx_t *rx, const cpn_env_t *inner, fed_fwd_t *e,
                        const char **why)
{
    cpn_claim_t c;
    cpn_env_t renv;
    cpn_request_t req;
    match_cand_t pick;
    bool stuck = false;
    int r;
    if ((r = cpn_claim_decode(inner, &self->lim, &c)) != CPN_OK ||
        (r = cpn_env_open(c.request.ptr, c.request.len, &self->lim, &renv)) != CPN_OK ||
        (r = cpn_request_decode(&renv, &self->lim, &req)) != CPN_OK) {
        *why = "the CLAIM for our summary does not decode";
        return r;
    }
    uint64_t now = cpn_now_ms();
    if ((r = s_pick(self, renv.from, &req, &c, &pick, &stuck)) != CPN_OK) {
        /* An open intent we cannot claim again: a NACK of ours would say nothing was granted.
         * Silence: the origin times out and keeps its intent (§13, as for a silent peer). */
        *why = stuck ? "an earlier CLAIM of ours for the request may be granted, and its peer "
                       "cannot be claimed again now"
                     : "no offer of our peers matches the CLAIM any more";
        return stuck ? CPN_E_IN_DOUBT : r;
    }
    if (now > c.deadline) {
        *why = "the CLAIM's deadline has passed";
        return stuck ? CPN_E_IN_DOUBT : CPN_E_CLAIM_EXPIRED;
    }
    cpn_claim_t h = c;
    memcpy(h.peer, pick.peer, CPN_PK_LEN);
    snprintf(h.package, sizeof h.package, "%s", pick.package);
    h.price = pick.price;
    h.route.ptr = rx->env.frame;
    h.route.len = rx->env.frame_len;
    h.replaces.len = 0;
    h.alts[0] = '\0'; /* the origin's alts name rows of our summary, not our peers' packages */
    uint64_t ours = now + (uint64_t)self->pol->limits.claim_timeout_s * 1000;
    if (ours < h.deadline)
        h.deadline = ours;
    /* Our own intent, committed before the CLAIM leaves (outbox): a retried CLAIM for the row
     * goes to this peer again, whatever the book shows then. */
    ledger_intent_t in;
    memset(&in, 0, sizeof in);
    memcpy(in.tenant, renv.from, CPN_PK_LEN);
    snprintf(in.request_id, sizeof in.request_id, "%s", req.id);
    memcpy(in.peer, pick.peer, CPN_PK_LEN);
    snprintf(in.package, sizeof in.package, "%s", pick.package);
    in.units = h.units;
    in.deadline_ms = h.deadline;
    in.duration_s = h.duration_s;
    if (ledger_intent_add(self->ledger, &in) != CPN_OK) {
        *why = "the ledger did not take the intent";
        return CPN_E_DB;
    }
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    if ((r = cpn_signer_build(&self->signer, CPN_MSG_CLAIM, &h, &it.frame, &it.len)) != CPN_OK) {
        *why = "cannot sign the CLAIM";
        return r;
    }
    e->out_seq = self->signer.last_seq;
    cpn_env_t env;
    if (cpn_env_parse(it.frame, it.len, &self->lim, &env) == CPN_OK)
        cpn_sigcache_add(self->sigcache, &env);
    const broker_route_t *route = broker_route(self, pick.peer);
    it.kind = OUTBOX_HOME_CLAIM;
    memcpy(it.rid, route->rid, route->rid_len);
    it.rid_len = route->rid_len;
    memcpy(it.peer, pick.peer, CPN_PK_LEN);
    if ((r = broker_queue(self, &it)) != CPN_OK) {
        *why = "the outbox did not take the CLAIM";
        return r;
    }
    e->home = true;
    memcpy(e->next, pick.peer, CPN_PK_LEN);
    memcpy(e->ref.peer, pick.peer, CPN_PK_LEN);
    if (book_take(self->book, pick.peer, pick.package, h.units) != CPN_OK)
        log_debug("book", "resolved claim: the book had fewer free units");
    self->fed->st.summary_claims++;
    self->stats.claims_sent++;
    return CPN_OK;
}
