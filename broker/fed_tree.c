/* fed_tree.c - the federation's spanning tree, along which a RELAY goes, so that an offer
 * change costs about one copy per broker whatever the topology (docs/FEDERATION.md).
 *
 * Each broker says in its HELLOs where it stands (root, distance, parent); the smallest broker
 * key heard of is the root and each broker's parent is the member with the shortest way to it,
 * as in a spanning tree protocol. What is here is pure (no sockets, no clock): federation.c
 * feeds it the members' HELLOs and sends ours again when our place changes. Calls no other
 * file of the federation.
 */
#include "federation_int.h"

#include <string.h>

static bool s_is(const uint8_t a[CPN_PK_LEN], const uint8_t b[CPN_PK_LEN])
{
    return memcmp(a, b, CPN_PK_LEN) == 0;
}

/* Is (root, dist, via) a better place than *best reached through best_via? */
static bool s_better(const uint8_t *root, uint32_t dist, const uint8_t *via, const fed_tree_t *best,
                     const uint8_t *best_via)
{
    int c = memcmp(root, best->root, CPN_PK_LEN);
    if (c != 0)
        return c < 0;
    if (dist != best->dist)
        return dist < best->dist;
    return memcmp(via, best_via, CPN_PK_LEN) < 0;
}

bool fed_tree_choose(const uint8_t self_key[CPN_PK_LEN], const fed_link_t *links, size_t n,
                     uint32_t max_dist, fed_tree_t *out)
{
    fed_tree_t best;
    uint8_t best_via[CPN_PK_LEN];
    memset(&best, 0, sizeof best);
    memcpy(best.root, self_key, CPN_PK_LEN);
    memcpy(best_via, self_key, CPN_PK_LEN);
    for (size_t i = 0; i < n; i++) {
        const fed_link_t *l = &links[i];
        /* A member that chose us as its parent cannot be ours (no loop of two), and one at
         * max_dist from its root stops a root that went away from being counted up for ever. */
        if (!l->up || !l->has_tree || s_is(l->tree.parent, self_key) || l->tree.dist >= max_dist)
            continue;
        if (s_better(l->tree.root, l->tree.dist + 1, l->key, &best, best_via)) {
            memcpy(best.root, l->tree.root, CPN_PK_LEN);
            best.dist = l->tree.dist + 1;
            memcpy(best.parent, l->key, CPN_PK_LEN);
            memcpy(best_via, l->key, CPN_PK_LEN);
        }
    }
    bool changed = memcmp(&best, out, sizeof best) != 0;
    *out = best;
    return changed;
}

bool fed_tree_edge(const fed_tree_t *ours, const uint8_t self_key[CPN_PK_LEN],
                   const fed_link_t *l)
{
    return !l->has_tree || !s_is(l->tree.root, ours->root) || s_is(ours->parent, l->key) ||
           s_is(l->tree.parent, self_key);
}

bool fed_tree_sync_due(bool tree_edge, uint32_t misses, uint64_t differ_ms)
{
    return misses >= FED_DIGEST_MISSES && (tree_edge || differ_ms >= FED_DIGEST_OFFTREE_MS);
}

static uint64_t s_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t fed_tree_fold(uint64_t fp, const uint8_t key[CPN_PK_LEN], uint64_t seq)
{
    uint64_t h = seq;
    for (size_t i = 0; i < CPN_PK_LEN; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = s_mix(h ^ w);
    }
    return fp ^ h;
}
