/* fed_sync.c - SYNC: our book's digest to a member, the member's digest answered with the
 * RELAYs it lacks, and the offers through it that its digest no longer has forgotten.
 */
#include "federation_int.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

static int s_key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, CPN_PK_LEN);
}

static void s_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* key + 1 as a big-endian number; false if key was all 0xff. */
static bool s_key_inc(uint8_t key[CPN_PK_LEN])
{
    for (int i = CPN_PK_LEN - 1; i >= 0; i--)
        if (++key[i] != 0)
            return true;
    return false;
}

/* Our book's digest, in key ranges that each fit a frame. */
int fed_sync_send(broker_t *self, fed_link_t *l)
{
    static const uint8_t none[1];
    size_t cur = 0, n = 0;
    const book_peer_t *bp;
    uint64_t own_seq = 0;
    bool own = fed_summary_ours(self, cpn_now_ms(), &own_seq); /* our summary is in it too */
    while (book_next(self->book, &cur))
        n++;
    n += own;
    uint8_t *ents = malloc(n ? n * CPN_SYNC_ENTRY_LEN : 1);
    if (!ents)
        return CPN_E_NOMEM;
    size_t k = 0;
    cur = 0;
    while ((bp = book_next(self->book, &cur)) != NULL && k < n) {
        memcpy(ents + k * CPN_SYNC_ENTRY_LEN, bp->key, CPN_PK_LEN);
        s_put_be64(ents + k * CPN_SYNC_ENTRY_LEN + CPN_PK_LEN, bp->seq);
        k++;
    }
    if (own && k < n) {
        memcpy(ents + k * CPN_SYNC_ENTRY_LEN, cpn_identity_pk(self->id), CPN_PK_LEN);
        s_put_be64(ents + k * CPN_SYNC_ENTRY_LEN + CPN_PK_LEN, own_seq);
        k++;
    }
    qsort(ents, k, CPN_SYNC_ENTRY_LEN, s_key_cmp);
    size_t room = self->lim.max_frame > FED_SYNC_OVERHEAD * 2
                      ? (self->lim.max_frame - FED_SYNC_OVERHEAD) / CPN_SYNC_ENTRY_LEN
                      : 1;
    if (room * CPN_SYNC_ENTRY_LEN > self->lim.max_str)
        room = self->lim.max_str / CPN_SYNC_ENTRY_LEN;
    cpn_sync_t s;
    memset(&s, 0, sizeof s);
    memset(s.hi, 0xff, sizeof s.hi);
    int r = CPN_OK;
    size_t i = 0, frames = 0;
    do {
        size_t take = k - i < room ? k - i : room;
        bool last = i + take == k;
        memset(s.hi, 0xff, sizeof s.hi);
        if (!last)
            memcpy(s.hi, ents + (i + take - 1) * CPN_SYNC_ENTRY_LEN, CPN_PK_LEN);
        s.entries.ptr = take ? ents + i * CPN_SYNC_ENTRY_LEN : none;
        s.entries.len = take * CPN_SYNC_ENTRY_LEN;
        if ((r = fed_link_build(self, l, CPN_MSG_SYNC, &s, NULL)) != CPN_OK)
            break;
        frames++;
        i += take;
        memcpy(s.lo, s.hi, CPN_PK_LEN);
        if (!last)
            (void)s_key_inc(s.lo);
    } while (i < k);
    free(ents);
    if (r == CPN_OK) {
        l->sync_due = false;
        log_info("fed", "sent %s a SYNC digest of %zu peers in %zu frame%s", l->name, k, frames,
                 frames == 1 ? "" : "s");
    }
    return r;
}

uint64_t fed_sync_fingerprint(broker_t *self, uint64_t now_ms)
{
    uint64_t fp = FED_DIGEST_SEED;
    size_t cur = 0;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL)
        if (bp->expires_ms > now_ms + FED_DIGEST_MARGIN_MS)
            fp = fed_tree_fold(fp, bp->key, bp->seq);
    uint64_t own_seq = 0;
    if (fed_summary_ours(self, now_ms + FED_DIGEST_MARGIN_MS, &own_seq))
        fp = fed_tree_fold(fp, cpn_identity_pk(self->id), own_seq);
    return fp ? fp : 1; /* 0 on the wire means "no fingerprint" */
}

/* Forget the offers that came through member l, lie in the digest's range and are not in
 * it: l no longer has them (it lost the link they came by, or forgot them), so they cannot be
 * reached through l. The digest is l's book when it sent it, and what l relays to us comes
 * in order on the same link: an offer it relayed before the SYNC is in the digest. */
static size_t s_forget_missing(broker_t *self, const fed_link_t *l, const cpn_sync_t *sync)
{
    size_t cur = 0, n = 0, cap = 0, gone = 0;
    uint64_t seq = 0;
    const book_peer_t *bp;
    uint8_t(*keys)[CPN_PK_LEN] = NULL;
    for (int pass = 0; pass < 2; pass++) {
        cur = 0;
        while ((bp = book_next(self->book, &cur)) != NULL) {
            /* A tombstone stays whatever the route: the WITHDRAW is the peer's own word, and
             * forgetting it would let a late copy of the AD it ended come back. */
            if (bp->withdrawn || memcmp(bp->via, l->key, CPN_PK_LEN) != 0 ||
                memcmp(bp->key, sync->lo, CPN_PK_LEN) < 0 ||
                memcmp(bp->key, sync->hi, CPN_PK_LEN) > 0 || fed_sync_find(sync, bp->key, &seq))
                continue;
            if (pass == 0)
                cap++;
            else if (n < cap)
                memcpy(keys[n++], bp->key, CPN_PK_LEN);
        }
        if (pass == 0 && (!cap || !(keys = malloc(cap * sizeof *keys))))
            break;
    }
    if (cap && !keys)
        log_error("fed", "out of memory forgetting offers");
    for (size_t i = 0; i < n; i++)
        gone += book_forget(self->book, keys[i]) == CPN_OK;
    free(keys);
    return gone;
}

static int s_send_relay(broker_t *self, fed_link_t *l, const uint8_t *frame, size_t len,
                        uint32_t hops)
{
    cpn_relay_t rel = {.hops = hops, .msg = {frame, len}};
    uint8_t *out = NULL;
    size_t out_len = 0;
    int r = cpn_signer_build(&self->signer, CPN_MSG_RELAY, &rel, &out, &out_len);
    if (r == CPN_OK && (r = fed_link_send(l, out, out_len)) == CPN_OK) {
        l->relays_out++;
        l->relay_bytes_out += out_len;
    }
    free(out);
    return r;
}

bool fed_sync_offers(const book_peer_t *bp, const cpn_sync_t *sync, const uint8_t asker[CPN_PK_LEN],
                     uint64_t now_ms, uint32_t max_hops)
{
    uint64_t theirs = 0;
    /* Split horizon: what came through the asker is never sent back to it. A tombstone goes
     * with its WITHDRAW frame: the asker may still hold the offer it ends. */
    return !(!bp->frame || bp->expires_ms <= now_ms ||
             memcmp(bp->via, asker, CPN_PK_LEN) == 0 || !fed_relay_goes_on(bp->hops, max_hops) ||
             (fed_sync_find(sync, bp->key, &theirs) && theirs >= bp->seq));
}

void federation_on_sync(broker_t *self, const broker_rx_t *rx, const cpn_sync_t *sync)
{
    struct federation *f = self->fed;
    fed_link_t *l = fed_link_find(self, rx->env.from);
    if (!l)
        return;
    f->st.syncs_in++;
    int r = fed_sync_check(sync);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("fed", "SYNC from %s refused: %s", l->name, cpn_errname(r));
        return;
    }
    uint64_t now = cpn_now_ms();
    uint32_t max_hops = self->pol->federation.max_hops;
    size_t cur = 0, in_range = 0, sent = 0;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL) {
        if (memcmp(bp->key, sync->lo, CPN_PK_LEN) < 0 || memcmp(bp->key, sync->hi, CPN_PK_LEN) > 0)
            continue;
        in_range++;
        if (!fed_sync_offers(bp, sync, l->key, now, max_hops))
            continue;
        if (s_send_relay(self, l, bp->frame, bp->frame_len, bp->hops + 1) != CPN_OK)
            break; /* link down: it asks again when it comes back */
        sent++;
    }
    /* Our own summary, if the digest lacks it or lists an older one. */
    uint64_t own_seq = 0, theirs = 0;
    const uint8_t *me = cpn_identity_pk(self->id);
    if (fed_summary_ours(self, now, &own_seq) && memcmp(me, sync->lo, CPN_PK_LEN) >= 0 &&
        memcmp(me, sync->hi, CPN_PK_LEN) <= 0 &&
        !(fed_sync_find(sync, me, &theirs) && theirs >= own_seq) &&
        s_send_relay(self, l, f->sum.frame, f->sum.len, 1) == CPN_OK)
        sent++;
    f->st.sync_relays += sent;
    size_t gone = s_forget_missing(self, l, sync);
    log_info("fed",
             "SYNC from %s: %zu of our peers in its range, %zu offers sent, %zu that "
             "came through it and it no longer has forgotten",
             l->name, in_range, sent, gone);
    if (gone)
        fed_tell_members(self, l->key);
}
