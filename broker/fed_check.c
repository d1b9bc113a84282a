/* fed_check.c - checks of what federation members send; see fed_check.h. */
#include "fed_check.h"
#include "msg_typed.h"

#include <string.h>

int fed_route_open(const cpn_limits_t *lim, cpn_sigcache_t *sc, uint32_t max_hops,
                   const uint8_t *route, size_t len, const uint8_t peer[CPN_PK_LEN],
                   cpn_env_t *inner, uint32_t *hops)
{
    const uint8_t *cur = route;
    size_t cur_len = len;
    uint8_t signer[CPN_PK_LEN];
    uint32_t n = 0;
    cpn_env_t env;
    int r;
    for (;;) {
        if ((r = cpn_env_parse(cur, cur_len, lim, &env)) != CPN_OK ||
            (r = cpn_sigcache_verify(sc, &env)) != CPN_OK)
            return r;
        if (env.type != CPN_MSG_FORWARD)
            break;
        if (++n > max_hops)
            return CPN_E_DEPTH;
        cpn_forward_t fw;
        if ((r = cpn_forward_decode(&env, lim, &fw)) != CPN_OK)
            return r;
        if (memcmp(fw.to, peer, CPN_PK_LEN) != 0 || fw.ref_seq != 0)
            return CPN_E_SCHEMA;
        memcpy(signer, env.from, CPN_PK_LEN);
        cur = fw.msg.ptr;
        cur_len = fw.msg.len;
    }
    if (n == 0)
        return CPN_E_SCHEMA;
    if (env.type == CPN_MSG_CLAIM) {
        cpn_claim_t c;
        if ((r = cpn_claim_decode(&env, lim, &c)) != CPN_OK)
            return r;
        /* The originating broker signs both its CLAIM and the first FORWARD. */
        if (memcmp(env.from, signer, CPN_PK_LEN) != 0 || memcmp(c.peer, peer, CPN_PK_LEN) != 0)
            return CPN_E_SCHEMA;
    } else if (env.type == CPN_MSG_RENEW) {
        cpn_renew_t rn;
        if ((r = cpn_renew_decode(&env, lim, &rn)) != CPN_OK)
            return r;
        if (memcmp(rn.peer, peer, CPN_PK_LEN) != 0)
            return CPN_E_SCHEMA;
    } else if (env.type == CPN_MSG_RELEASE) {
        cpn_release_t rl;
        if ((r = cpn_release_decode(&env, lim, &rl)) != CPN_OK)
            return r;
        if (memcmp(rl.peer, peer, CPN_PK_LEN) != 0)
            return CPN_E_SCHEMA;
    } else
        return CPN_E_SCHEMA;
    *inner = env;
    if (hops)
        *hops = n;
    return CPN_OK;
}

int fed_answer_open(const cpn_limits_t *lim, cpn_sigcache_t *sc, uint32_t max_hops,
                    const uint8_t *msg, size_t len, cpn_env_t *answer)
{
    /* Each FORWARD of the way back wraps the next; the innermost is the answer (the peer's
     * LEASE or NACK, or a NACK of a broker on the path). */
    const uint8_t *cur = msg;
    size_t cur_len = len;
    cpn_env_t env;
    int r;
    for (uint32_t depth = 0;; depth++) {
        cpn_forward_t in;
        if (depth > max_hops + 1)
            return CPN_E_DEPTH;
        if ((r = cpn_env_parse(cur, cur_len, lim, &env)) != CPN_OK ||
            (r = cpn_sigcache_verify(sc, &env)) != CPN_OK)
            return r;
        if (env.type != CPN_MSG_FORWARD)
            break;
        if ((r = cpn_forward_decode(&env, lim, &in)) != CPN_OK)
            return r;
        if (in.ref_seq == 0)
            return CPN_E_SCHEMA;
        cur = in.msg.ptr;
        cur_len = in.msg.len;
    }
    if (env.type != CPN_MSG_LEASE && env.type != CPN_MSG_NACK)
        return CPN_E_SCHEMA;
    *answer = env;
    return CPN_OK;
}

int fed_sync_check(const cpn_sync_t *s)
{
    if (s->entries.len % CPN_SYNC_ENTRY_LEN || memcmp(s->lo, s->hi, CPN_PK_LEN) > 0)
        return CPN_E_SCHEMA;
    size_t n = s->entries.len / CPN_SYNC_ENTRY_LEN;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = s->entries.ptr + i * CPN_SYNC_ENTRY_LEN;
        if (memcmp(e, s->lo, CPN_PK_LEN) < 0 || memcmp(e, s->hi, CPN_PK_LEN) > 0 ||
            (i && memcmp(e - CPN_SYNC_ENTRY_LEN, e, CPN_PK_LEN) >= 0))
            return CPN_E_SCHEMA;
    }
    return CPN_OK;
}

static uint64_t s_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

bool fed_sync_find(const cpn_sync_t *s, const uint8_t key[CPN_PK_LEN], uint64_t *seq)
{
    size_t lo = 0, hi = s->entries.len / CPN_SYNC_ENTRY_LEN;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = s->entries.ptr + mid * CPN_SYNC_ENTRY_LEN;
        int c = memcmp(e, key, CPN_PK_LEN);
        if (c == 0) {
            *seq = s_get_be64(e + CPN_PK_LEN);
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}
