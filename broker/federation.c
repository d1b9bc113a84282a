/* federation.c - the federation's life cycle and membership: links opened at start and after
 * a reload, members marked up when they speak and down when silent, the periodic tick. The
 * protocol is described in federation.h and docs/PROTOCOL.md ("Federation"); the jobs live in
 * fed_link.c (links), fed_sync.c (digests), fed_relay.c (offers), fed_forward.c (forwarded
 * claims) and fed_status.c (rows for queries).
 */
#include "federation_int.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "link.h"
#include "log.h"

/* Our book's fingerprint, recomputed if older than FED_DIGEST_EVERY_MS (a pass over the book:
 * done only when a HELLO goes out or comes in, never per message). */
static uint64_t s_digest(broker_t *self, uint64_t now_mono)
{
    struct federation *f = self->fed;
    if (!f->digest || now_mono - f->digest_mono >= FED_DIGEST_EVERY_MS) {
        f->digest = fed_sync_fingerprint(self, cpn_now_ms());
        f->digest_mono = now_mono;
    }
    return f->digest;
}

/* Our place in the spanning tree after a member spoke, came or went: when it moves, every
 * member hears it at once (a HELLO), so the tree settles in about one round trip per level. */
static void s_tree_update(broker_t *self)
{
    struct federation *f = self->fed;
    if (!fed_tree_choose(cpn_identity_pk(self->id), f->links, f->n_links,
                         self->pol->federation.max_hops, &f->tree))
        return;
    f->st.tree_changes++;
    char root[CPN_KID_LEN];
    cpn_key_id(f->tree.root, root);
    log_debug("fed", "spanning tree: root %s at %u links", root, f->tree.dist);
    for (size_t i = 0; i < f->n_links; i++)
        if (f->links[i].tx_ok && fed_link_hello(self, &f->links[i]) == CPN_OK)
            f->links[i].last_hello_mono = cpn_mono_ms();
}

int federation_new(broker_t *self)
{
    const policy_t *pol = self->pol;
    struct federation *f = calloc(1, sizeof *f);
    if (!f)
        return CPN_E_NOMEM;
    self->fed = f;
    f->fwd = calloc(FED_FWD_MAX, sizeof *f->fwd);
    f->links = calloc(pol->federation.n_members ? pol->federation.n_members : 1, sizeof *f->links);
    if (!f->fwd || !f->links)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < pol->federation.n_members; i++) {
        fed_link_t *l = &f->links[f->n_links];
        fed_link_from_member(l, &pol->federation.members[i]);
        if (fed_link_open(self, l) == CPN_OK)
            f->n_links++;
    }
    (void)fed_tree_choose(cpn_identity_pk(self->id), f->links, 0, pol->federation.max_hops,
                          &f->tree); /* our own root until members speak */
    /* The first HELLOs go out from the first tick, once connections are up. */
    return CPN_OK;
}

void federation_destroy(broker_t *self)
{
    struct federation *f = self->fed;
    if (!f)
        return;
    for (size_t i = 0; i < f->n_links; i++)
        cpn_link_destroy(&f->links[i].link);
    free(f->links);
    free(f->fwd);
    free(f->sum.frame);
    free(f);
    self->fed = NULL;
}

void federation_reload(broker_t *self)
{
    struct federation *f = self->fed;
    const policy_t *pol = self->pol;
    size_t n = pol->federation.n_members;
    fed_link_t *neu = calloc(n ? n : 1, sizeof *neu);
    if (!f || !neu) {
        free(neu);
        log_error("fed", "out of memory: links unchanged after the reload");
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const policy_member_t *m = &pol->federation.members[i];
        fed_link_t *old = fed_link_find(self, m->key), *l = &neu[kept];
        if (old && old->sock && strcmp(old->endpoint, m->endpoint) == 0) {
            *l = *old;
            old->sock = NULL; /* moved */
            old->link = NULL;
            fed_link_from_member(l, m);
            if (!l->use_offers)
                (void)fed_forget_via(self, l->key);
            kept++;
            continue;
        }
        fed_link_from_member(l, m);
        if (fed_link_open(self, l) == CPN_OK)
            kept++;
    }
    for (size_t i = 0; i < f->n_links; i++)
        if (f->links[i].sock)
            fed_link_close(self, &f->links[i]);
    free(f->links);
    f->links = neu;
    f->n_links = kept;
    s_tree_update(self);
}

void federation_seen(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    fed_link_t *l = fed_link_find(self, key);
    if (!l)
        return;
    uint64_t now = cpn_mono_ms();
    l->last_rx_mono = now;
    if (l->up)
        return;
    l->up = true;
    l->up_since_mono = now;
    log_info("fed", "member %s up", l->name);
    /* Back after a restart: our link may be in its reconnect backoff (up to
     * FED_RECONNECT_MAX_MS) and would refuse FORWARDs until then; a fresh socket connects now. */
    if (!l->tx_ok) {
        cpn_link_t *old = l->link;
        void *old_sock = l->sock;
        l->link = NULL;
        if (fed_link_open(self, l) == CPN_OK)
            cpn_link_destroy(&old);
        else { /* keep the one in backoff: it still connects, later */
            l->link = old;
            l->sock = old_sock;
        }
    }
    /* What we lack of its book: ask now, and again on every tick until the link takes it. */
    l->sync_due = l->use_offers;
    if (l->sync_due)
        (void)fed_sync_send(self, l);
}

/* A member's fingerprint differs from ours in FED_DIGEST_MISSES HELLOs in a row, half a
 * HELLO period apart at least (the HELLOs a tree change sends at once count as one), and, off
 * the tree, for FED_DIGEST_OFFTREE_MS: what one of us missed, it gets by SYNC. */
static void s_compare_digest(broker_t *self, fed_link_t *l, uint64_t theirs)
{
    struct federation *f = self->fed;
    uint64_t now = cpn_mono_ms(), half = fed_timeout_ms(self) / 6;
    if (!theirs || !l->use_offers || theirs == s_digest(self, now)) {
        l->digest_misses = 0;
        return;
    }
    if (l->digest_misses && now - l->digest_miss_mono < half)
        return;
    l->digest_miss_mono = now;
    if (!l->digest_misses++)
        l->digest_diff_mono = now;
    bool edge = fed_tree_edge(&f->tree, cpn_identity_pk(self->id), l);
    if (!fed_tree_sync_due(edge, l->digest_misses, now - l->digest_diff_mono) ||
        (l->digest_sync_mono && now - l->digest_sync_mono < FED_DIGEST_SYNC_MIN_MS))
        return;
    l->digest_misses = 0;
    l->digest_sync_mono = now;
    l->sync_due = true;
    f->st.digest_syncs++;
    log_info("fed", "member %s: its book's fingerprint differs from ours: SYNC", l->name);
}

void federation_on_hello(broker_t *self, const broker_rx_t *rx, const cpn_hello_t *hello)
{
    fed_link_t *l = fed_link_find(self, rx->env.from);
    if (!l)
        return;
    log_debug("fed", "HELLO from member %s (%s, %s)", l->name, hello->name, hello->endpoint);
    l->digest = hello->digest;
    s_compare_digest(self, l, hello->digest);
    bool had = l->has_tree;
    fed_tree_t was = l->tree;
    l->has_tree = !fed_zero(hello->root);
    memcpy(l->tree.root, hello->root, CPN_PK_LEN);
    l->tree.dist = hello->dist;
    memcpy(l->tree.parent, hello->parent, CPN_PK_LEN);
    if (had != l->has_tree || memcmp(&was, &l->tree, sizeof was) != 0)
        s_tree_update(self);
}

void federation_tick(broker_t *self, uint64_t now)
{
    struct federation *f = self->fed;
    if (!f)
        return;
    uint64_t timeout = fed_timeout_ms(self), period = timeout / 3;
    for (size_t i = 0; i < f->n_links; i++) {
        fed_link_t *l = &f->links[i];
        /* A connection lost, even to an oversize frame or one that failed to decrypt (which
         * libzmq does not redial), comes back; HELLO as soon as it does (below). */
        if (cpn_link_tick(l->link, now) & CPN_LINK_DOWN)
            l->tx_ok = false;
        l->sock = cpn_link_socket(l->link);
        /* Until a send goes through, every tick looks whether the link came up: a restarted
         * member hears from us at once. */
        bool due = l->tx_ok ? now - l->last_hello_mono >= period : fed_link_writable(l);
        if (due)
            (void)s_digest(self, now);
        if (due && fed_link_hello(self, l) == CPN_OK)
            l->last_hello_mono = now;
        if (l->up && now - l->last_rx_mono > timeout) {
            fed_link_mark_down(self, l, now - l->last_rx_mono);
            s_tree_update(self);
        }
        if (l->up && l->sync_due && l->tx_ok)
            (void)fed_sync_send(self, l);
    }
    fed_forward_expire(self, now);
    fed_summary_tick(self, now);
}
