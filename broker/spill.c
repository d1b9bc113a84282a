/* spill.c - ordered spill-over: local offers, then member by member (spill.h). */
#include "spill.h"

#include <string.h>

#include "identity.h"

#define S_NO_MEMBER UINT32_MAX

/* The group of one member's candidates and the key it is ordered by. */
typedef struct {
    uint8_t via[CPN_PK_LEN];
    uint32_t first; /* index of its best-ranked candidate: cost order, and the tie-break */
    uint32_t key;   /* latency: fewest hops; list: position in the list */
    bool drop;
} s_group_t;

static bool s_zero(const uint8_t *k)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < CPN_PK_LEN; i++)
        acc |= k[i];
    return acc == 0;
}

static uint32_t s_list_pos(const policy_t *pol, const uint8_t via[CPN_PK_LEN])
{
    for (size_t i = 0; i < pol->federation.n_members; i++)
        if (memcmp(pol->federation.members[i].key, via, CPN_PK_LEN) == 0)
            return pol->federation.members[i].spill_pos;
    return POLICY_SPILL_UNLISTED;
}

/* Is group x tried before group y? */
static bool s_before(policy_spill_t mode, const s_group_t *x, const s_group_t *y)
{
    if (mode != POLICY_SPILL_COST && x->key != y->key)
        return x->key < y->key;
    return x->first < y->first;
}

size_t spill_order(const book_t *book, const policy_t *pol, match_cand_t *cands, size_t n,
                   size_t *dropped)
{
    policy_spill_t mode = pol->federation.spill;
    if (dropped)
        *dropped = 0;
    if (mode == POLICY_SPILL_RANK || n > SPILL_CANDS_MAX)
        return n;
    uint32_t group_of[SPILL_CANDS_MAX];
    s_group_t g[SPILL_CANDS_MAX];
    size_t n_g = 0;
    for (size_t i = 0; i < n; i++) {
        const book_peer_t *bp = book_peer(book, cands[i].peer);
        group_of[i] = S_NO_MEMBER;
        if (!bp || s_zero(bp->via))
            continue;
        const uint8_t *via = bp->via;
        size_t k = 0;
        while (k < n_g && memcmp(g[k].via, via, CPN_PK_LEN) != 0)
            k++;
        if (k == n_g) {
            memcpy(g[k].via, via, CPN_PK_LEN);
            g[k].first = (uint32_t)i;
            g[k].key = mode == POLICY_SPILL_LIST ? s_list_pos(pol, via) : UINT32_MAX;
            g[k].drop = mode == POLICY_SPILL_LIST && g[k].key == POLICY_SPILL_UNLISTED;
            n_g++;
        }
        if (mode == POLICY_SPILL_LATENCY && bp->hops < g[k].key)
            g[k].key = bp->hops;
        group_of[i] = (uint32_t)k;
    }
    /* Groups in their order (insertion sort: at most SPILL_CANDS_MAX). */
    uint32_t order[SPILL_CANDS_MAX];
    for (size_t k = 0; k < n_g; k++) {
        size_t j = k;
        while (j > 0 && s_before(mode, &g[k], &g[order[j - 1]])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint32_t)k;
    }
    match_cand_t out[SPILL_CANDS_MAX];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (group_of[i] == S_NO_MEMBER)
            out[m++] = cands[i];
    for (size_t k = 0; k < n_g; k++) {
        const s_group_t *gr = &g[order[k]];
        for (size_t i = 0; i < n; i++) {
            if (group_of[i] != order[k])
                continue;
            if (gr->drop) {
                if (dropped)
                    (*dropped)++;
                continue;
            }
            out[m++] = cands[i];
        }
    }
    memcpy(cands, out, m * sizeof *out);
    return m;
}
