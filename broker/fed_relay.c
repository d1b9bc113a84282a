/* fed_relay.c - RELAY: an AD or WITHDRAW the book accepted goes on to the other members;
 * one that comes in is opened, checked, deduplicated (by the book, on (peer, seq)) and put in
 * the book.
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

/* ---- the rules, pure ---- */

int fed_relay_admit(cpn_msg_type_t type, uint32_t hops, uint32_t max_hops)
{
    if (type != CPN_MSG_AD && type != CPN_MSG_WITHDRAW && type != CPN_MSG_SUMMARY)
        return CPN_E_TYPE;
    if (hops == 0 || hops > max_hops)
        return CPN_E_INVAL;
    return CPN_OK;
}

bool fed_relay_goes_on(uint32_t hops, uint32_t max_hops)
{
    return hops < max_hops; /* hops + 1 <= max_hops, without the overflow */
}

bool fed_relay_shadowed(const book_peer_t *bp, uint64_t now_ms, bool routed)
{
    return bp && !bp->withdrawn && fed_zero(bp->via) && bp->expires_ms > now_ms && routed;
}

/* ---- RELAY out and in ---- */

void federation_publish(broker_t *self, const uint8_t *frame, size_t len, uint32_t hops,
                        const uint8_t *from)
{
    struct federation *f = self->fed;
    uint32_t out = hops + 1;
    if (!f || !f->n_links || !fed_relay_goes_on(hops, self->pol->federation.max_hops))
        return;
    cpn_relay_t rel = {.hops = out, .msg = {frame, len}};
    uint8_t *relay = NULL;
    size_t relay_len = 0;
    /* One signed RELAY for every member it goes to: nothing in it depends on the receiver. A
     * member whose link is down misses it and catches up by SYNC when it comes back. */
    if (cpn_signer_build(&self->signer, CPN_MSG_RELAY, &rel, &relay, &relay_len) != CPN_OK) {
        log_error("fed", "cannot build a RELAY");
        return;
    }
    const uint8_t *me = cpn_identity_pk(self->id);
    for (size_t i = 0; i < f->n_links; i++) {
        fed_link_t *l = &f->links[i];
        if (from && memcmp(l->key, from, CPN_PK_LEN) == 0)
            continue;
        /* Along the spanning tree only: one copy per broker. A member it misses (the tree
         * being rebuilt) learns it from the digests (federation_on_hello). */
        if (!fed_tree_edge(&f->tree, me, l)) {
            f->st.relays_pruned++;
            continue;
        }
        if (fed_link_send(l, relay, relay_len) == CPN_OK) {
            l->relays_out++;
            l->relay_bytes_out += relay_len;
        }
    }
    free(relay);
}

/* ---- summaries (docs/FEDERATION.md, "Summaries for distant brokers") ---- */

/* Is a SUMMARY signed by `key` accepted: a member's, or any broker's under trust_any? */
static bool s_summary_trusted(const broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    return self->pol->federation.summary.trust_any || policy_member(self->pol, key) != NULL;
}

/* Would an AD of n packages from `peer`, `hops` brokers away, take the book over its budget?
 * Only ADs from beyond summary.distance are left out; an AD replacing one in the book is not
 * (the peer's offer stays current, and max_offers still bounds its growth). */
static bool s_over_budget(broker_t *self, const uint8_t peer[CPN_PK_LEN], uint32_t hops,
                          uint32_t n)
{
    uint32_t budget = self->pol->federation.summary.budget;
    if (!budget || hops <= self->pol->federation.summary.distance)
        return false;
    const book_peer_t *bp = book_peer(self->book, peer);
    if (bp && !bp->withdrawn)
        return false;
    book_stats_t st;
    book_stats(self->book, &st);
    return st.packages + n > budget;
}

/* A relayed SUMMARY (trusted, verified) into the book under its broker's key: rows replace
 * the older summary's, no rows end it (a tombstone, as a WITHDRAW leaves). The book's
 * (key, seq) check refuses older or repeated ones. */
static int s_summary_in(broker_t *self, const cpn_env_t *in, uint32_t hops, const fed_link_t *l,
                        uint32_t *n_rows)
{
    cpn_ad_t sum;
    int r;
    if ((r = cpn_summary_decode(in, &self->lim, &sum)) != CPN_OK)
        return r;
    *n_rows = sum.n_packages;
    if (in->ts_ms + (uint64_t)sum.ttl_s * 1000 <= cpn_now_ms())
        r = CPN_E_EXPIRED;
    else if (sum.n_packages)
        r = book_put_ad(self->book, in->from, in->seq, in->ts_ms, &sum, in->frame, in->frame_len,
                        l->key, hops);
    else /* a tombstone even for a broker we never heard of: its rows may come late, and
          * live no longer than this one (a broker's summaries share federation.summary.ttl) */
        r = book_withdraw_unknown(self->book, in->from, in->seq, in->ts_ms,
                                  in->ts_ms + (uint64_t)sum.ttl_s * 1000, in->frame,
                                  in->frame_len, l->key, hops);
    cpn_ad_clear(&sum);
    if (r == CPN_OK)
        self->fed->st.summaries_in++;
    return r;
}

bool federation_on_relay(broker_t *self, const broker_rx_t *rx, const cpn_relay_t *relay,
                         uint8_t ad_peer[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    fed_link_t *l = fed_link_find(self, rx->env.from);
    cpn_env_t in;
    bool parsed = false;
    char why[CPN_REASON_MAX] = "";
    int r;
    if (!l)
        return false;
    l->relays_in++;
    if (!l->use_offers) { /* federation.use_members leaves it out */
        f->st.relays_ignored++;
        return false;
    }
    uint64_t now = cpn_now_ms(), skew = self->pol->limits.skew_s * 1000;
    if ((r = cpn_env_parse(relay->msg.ptr, relay->msg.len, &self->lim, &in)) != CPN_OK)
        goto refuse;
    parsed = true;
    if ((r = fed_relay_admit(in.type, relay->hops, self->pol->federation.max_hops)) != CPN_OK) {
        if (r == CPN_E_INVAL)
            snprintf(why, sizeof why, "hops %u outside 1..max_hops", relay->hops);
        goto refuse;
    }
    if (in.type == CPN_MSG_SUMMARY ? !s_summary_trusted(self, in.from)
                                   : !policy_peer_trusted(self->pol, in.from)) {
        r = CPN_E_UNTRUSTED;
        goto refuse;
    }
    if ((r = cpn_sigcache_verify(self->sigcache, &in)) != CPN_OK) {
        snprintf(why, sizeof why, "the peer's signature does not verify: forged or altered");
        goto refuse;
    }
    if (in.ts_ms > now + skew) {
        r = CPN_E_TS_SKEW;
        goto refuse;
    }
    /* A peer connected to us directly is ours to hear from: its relayed copies would only
     * move the offer's route away from the direct connection. */
    const book_peer_t *bp = book_peer(self->book, in.from);
    if (fed_relay_shadowed(bp, now, bp && broker_route(self, in.from))) {
        f->st.relays_dup++;
        return false;
    }
    uint32_t n_packages = 0;
    if (in.type == CPN_MSG_SUMMARY) {
        if (memcmp(in.from, cpn_identity_pk(self->id), CPN_PK_LEN) == 0) {
            f->st.relays_dup++; /* ours, come round */
            return false;
        }
        r = s_summary_in(self, &in, relay->hops, l, &n_packages);
    } else if (in.type == CPN_MSG_AD) {
        cpn_ad_t ad;
        if ((r = cpn_ad_decode(&in, &self->lim, &ad)) != CPN_OK)
            goto refuse;
        if (in.ts_ms + (uint64_t)ad.ttl_s * 1000 <= now) {
            cpn_ad_clear(&ad);
            r = CPN_E_EXPIRED;
            goto refuse;
        }
        n_packages = ad.n_packages;
        if (s_over_budget(self, in.from, relay->hops, n_packages)) {
            cpn_ad_clear(&ad);
            f->st.relays_over_budget++; /* its broker's summary stands for it */
            return false;
        }
        r = book_put_ad(self->book, in.from, in.seq, in.ts_ms, &ad, in.frame, in.frame_len, l->key,
                        relay->hops);
        cpn_ad_clear(&ad);
    } else {
        cpn_withdraw_t w;
        if ((r = cpn_withdraw_decode(&in, &self->lim, &w)) != CPN_OK)
            goto refuse;
        /* A peer we do not know: a tombstone all the same, so its AD, late, is refused. */
        r = book_withdraw_unknown(self->book, in.from, in.seq, in.ts_ms,
                                  in.ts_ms + FED_TOMB_UNKNOWN_MS + skew, in.frame, in.frame_len,
                                  l->key, relay->hops);
    }
    if (r == CPN_E_REPLAY || r == CPN_E_NO_PACKAGE) { /* seen already: the flood ends here */
        f->st.relays_dup++;
        return false;
    }
    if (r != CPN_OK)
        goto refuse;
    f->st.relays_accepted++;
    {
        char kid[CPN_KID_LEN];
        cpn_key_id(in.from, kid);
        log_debug("fed",
                  "%s of %s seq %" PRIu64 " via %s, hops %u, %u packages, %" PRIu64
                  " ms after it was signed",
                  cpn_msg_name(in.type), kid, in.seq, l->name, relay->hops, n_packages,
                  now > in.ts_ms ? now - in.ts_ms : 0);
    }
    federation_publish(self, in.frame, in.frame_len, relay->hops, l->key);
    if (in.type != CPN_MSG_AD)
        return false;
    memcpy(ad_peer, in.from, CPN_PK_LEN);
    return true;
refuse:
    f->st.relays_refused++;
    broker_count_refusal(self, r);
    {
        char kid[CPN_KID_LEN] = "?";
        if (parsed)
            cpn_key_id(in.from, kid);
        log_warn("fed", "RELAY from member %s: %s of peer %s refused: %s%s%s", l->name,
                 parsed ? cpn_msg_name(in.type) : "frame", kid, cpn_errname(r), why[0] ? ": " : "",
                 why);
        broker_error(self, rx->rid, rx->rid_len, rx->env.seq, r, why);
    }
    return false;
}
