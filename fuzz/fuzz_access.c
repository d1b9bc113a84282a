/* fuzz_access.c - libFuzzer target for what sealed access details and access hints accept
 * (issue 13): the input as access details (the JSON check, then seal and open: what is
 * accepted must come back byte for byte, what is refused must be refused by cpn_seal with the
 * same code), as a box to open (never accepted: no one can forge a box to a fixed key), and
 * as msgpack access hints (what unpacks must pack to a canonical form that unpacks to the
 * same hints).
 *
 *   scripts/fuzz access 60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hints.h"
#include "json_check.h"
/* fuzz/seal.h (signing specs) would shadow common/seal.h under its plain name */
#include "../common/seal.h"

static cpn_identity_t *s_tenant;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint8_t seed[CPN_SEED_LEN];
    (void)argc;
    (void)argv;
    memset(seed, 0x2a, sizeof seed);
    if (cpn_crypto_init() != CPN_OK || cpn_identity_from_seed(seed, &s_tenant) != CPN_OK)
        abort();
    return 0;
}

static void s_as_details(const uint8_t *data, size_t size)
{
    static uint8_t box[CPN_ACCESS_BOX_MAX];
    static char text[CPN_ACCESS_MAX + 1];
    size_t n = 0, tl = 0;
    const char *t = (const char *)data;
    int checked = cpn_access_check(t, size);
    int sealed = cpn_seal(cpn_identity_pk(s_tenant), t, size, box, sizeof box, &n);
    if (sealed != checked)
        abort(); /* cpn_seal refuses exactly what the check refuses */
    if (sealed != CPN_OK)
        return;
    if (n != size + CPN_SEAL_OVERHEAD ||
        cpn_seal_open(s_tenant, box, n, text, sizeof text, &tl) != CPN_OK || tl != size ||
        memcmp(text, data, size) != 0 || text[size] != '\0')
        abort();
}

static void s_as_box(const uint8_t *data, size_t size)
{
    static char text[CPN_ACCESS_MAX + 1];
    size_t tl = 0;
    if (cpn_seal_open(s_tenant, data, size, text, sizeof text, &tl) == CPN_OK)
        abort();
}

static void s_as_hints(const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_object obj;
    cpn_hints_t h, back;
    if (!msgpack_zone_init(&zone, 1024))
        abort();
    if (mp_parse(data, size, NULL, &zone, &obj) == CPN_OK &&
        cpn_hints_unpack(&obj, &h) == CPN_OK) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_zone z2;
        msgpack_object o2;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (h.n == 0 || h.n > CPN_HINTS_MAX || h.used > CPN_HINTS_BYTES ||
            cpn_hints_pack(&pk, &h) != CPN_OK || !msgpack_zone_init(&z2, 1024))
            abort();
        if (mp_parse((const uint8_t *)sb.data, sb.size, NULL, &z2, &o2) != CPN_OK ||
            cpn_hints_unpack(&o2, &back) != CPN_OK || memcmp(&h, &back, sizeof h) != 0)
            abort();
        msgpack_zone_destroy(&z2);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_zone_destroy(&zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_as_details(data, size);
    s_as_box(data, size);
    s_as_hints(data, size);
    return 0;
}
