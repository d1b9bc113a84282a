/* fuzz_verify.c - libFuzzer target for `cpnctl verify`: the offline walk of a signed chain
 * (GRANT > LEASE > CLAIM > REQUEST, and FORWARD routes inside a federated CLAIM), its JSON
 * printer and the route summary.
 *
 * The input is used twice: as the frame itself (what a file holds), and as a spec that
 * seal.h signs with fixed keys, so mutations reach the link and route checks behind the
 * signatures. A lease that verifies must also yield its route; pinning the broker key
 * (`cpnctl verify -B`) may refuse more, never less.
 *
 *   scripts/fuzz verify 60
 * fuzz-sources: ctl/ctl_verify.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl_verify.h"
#include "seal.h"

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_keys_init();
    s_null = fopen("/dev/null", "w");
    return 0;
}

static void s_walk(const uint8_t *frame, size_t len)
{
    const char *why = NULL;
    char route[(CPN_KID_LEN + 4) * 80], reason[CPN_REASON_MAX];
    cpn_env_t env;
    int r = ctl_verify_chain(frame, len, s_null, &why);
    if (!why)
        abort(); /* every outcome is explained */
    int rr = ctl_verify_route(frame, len, route, sizeof route);
    /* a lease that verified has a route (empty for one broker) */
    if (r == CPN_OK && cpn_env_parse(frame, len, NULL, &env) == CPN_OK &&
        (env.type == CPN_MSG_GRANT || env.type == CPN_MSG_LEASE) && rr != CPN_OK)
        abort();
    /* the same walk with the first broker's key pinned (`cpnctl verify -B`) */
    int rp =
        ctl_verify_chain_pinned(frame, len, cpn_identity_pk(fz_key(FZ_BROKER_A)), NULL, reason);
    if (rp == CPN_OK && r != CPN_OK)
        abort(); /* pinning a key only ever refuses more */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    s_walk(data, size);
    if (fz_seal(data, size, &frame, &len) == CPN_OK)
        s_walk(frame, len);
    free(frame);
    return 0;
}
