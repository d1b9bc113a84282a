/* fuzz_federation.c - libFuzzer target for the checks a broker applies to what federation
 * members send (broker/fed_check.h): the FORWARD chain of an outbound claim, renewal or
 * release (fed_route_open), the answer a FORWARD carries back (fed_answer_open), and a SYNC
 * digest (fed_sync_check, fed_sync_find).
 *
 * Each input goes in raw (as a member could send it) and as a spec that seal.h signs with
 * fixed keys, so mutations get past the signatures into the chain checks; and as a SYNC body.
 * What a check accepts must hold what it promises.
 *
 *   scripts/fuzz federation 60
 * fuzz-sources: broker/fed_check.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fed_check.h"
#include "msg_typed.h"
#include "seal.h"

#define S_MAX_HOPS 8 /* the policy's default federation.max_hops */

static cpn_sigcache_t *s_sc;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_keys_init();
    if (!(s_sc = cpn_sigcache_new(1024)))
        abort();
    return 0;
}

static void s_inside(const cpn_env_t *e, const uint8_t *frame, size_t len)
{
    if (e->frame < frame || e->frame + e->frame_len > frame + len)
        abort(); /* what the check hands back points into what it was given */
}

static void s_chains(const uint8_t *frame, size_t len)
{
    cpn_env_t inner;
    uint32_t hops = 0;
    const uint8_t *peer = cpn_identity_pk(fz_key(FZ_PEER));
    if (fed_route_open(&cpn_limits_default, s_sc, S_MAX_HOPS, frame, len, peer, &inner, &hops) ==
        CPN_OK) {
        s_inside(&inner, frame, len);
        if (hops < 1 || hops > S_MAX_HOPS ||
            (inner.type != CPN_MSG_CLAIM && inner.type != CPN_MSG_RENEW &&
             inner.type != CPN_MSG_RELEASE) ||
            cpn_env_verify(&inner) != CPN_OK)
            abort();
    }
    /* Without the cache: the same verdicts from the signatures alone. */
    (void)fed_route_open(&cpn_limits_default, NULL, S_MAX_HOPS, frame, len, peer, &inner, NULL);
    if (fed_answer_open(&cpn_limits_default, s_sc, S_MAX_HOPS, frame, len, &inner) == CPN_OK) {
        s_inside(&inner, frame, len);
        if ((inner.type != CPN_MSG_LEASE && inner.type != CPN_MSG_NACK) ||
            cpn_env_verify(&inner) != CPN_OK)
            abort();
    }
}

static void s_sync(const uint8_t *body, size_t len)
{
    cpn_env_t env;
    cpn_sync_t s;
    memset(&env, 0, sizeof env);
    env.type = CPN_MSG_SYNC;
    env.body = body;
    env.body_len = len;
    if (cpn_sync_decode(&env, &cpn_limits_default, &s) != CPN_OK || fed_sync_check(&s) != CPN_OK)
        return;
    /* A digest that passed is sorted: every entry is found, with its own seq. */
    for (size_t i = 0; i < s.entries.len / CPN_SYNC_ENTRY_LEN; i++) {
        const uint8_t *e = s.entries.ptr + i * CPN_SYNC_ENTRY_LEN;
        uint64_t seq = 0, want = 0;
        for (int b = 0; b < 8; b++)
            want = want << 8 | e[CPN_PK_LEN + b];
        if (!fed_sync_find(&s, e, &seq) || seq != want)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    s_chains(data, size);
    if (fz_seal(data, size, &frame, &len) == CPN_OK)
        s_chains(frame, len);
    free(frame);
    s_sync(data, size);
    return 0;
}
