/* fuzz_envelope.c - libFuzzer target for everything that reads untrusted wire bytes:
 * the msgpack validator, the envelope parser and verifier, every body decoder, and the
 * JSON printer cpnctl uses on verified messages.
 *
 * Signatures never verify on mutated input, so the body decoders are also driven directly:
 * first with the body of a frame that parsed, then with the raw input as a body. Build and
 * run with scripts/fuzz envelope SECONDS.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

/* Big enough for any body struct of msg.h: one member per type of msg_schema.def. */
typedef union {
#define CPN_TYPE(e, wire, stem, roles) cpn_##stem##_t stem;
#include "msg_schema.def"
} s_any_t;

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (cpn_crypto_init() != CPN_OK)
        abort();
    s_null = fopen("/dev/null", "w");
    return 0;
}

/* Decode `body` as every type; AD allocates, everything else points into body. */
static void s_decode_all(const uint8_t *body, size_t len, const uint8_t from[CPN_PK_LEN])
{
    cpn_env_t env;
    s_any_t out;
    memset(&env, 0, sizeof env);
    memcpy(env.from, from, CPN_PK_LEN);
    env.body = body;
    env.body_len = len;
    /* Bytes that are not one valid value are refused alike by every type: one is enough. */
    int last = mp_validate(body, len, NULL) == CPN_OK ? CPN_MSG__COUNT - 1 : CPN_MSG_NONE + 1;
    for (int t = CPN_MSG_NONE + 1; t <= last; t++) {
        env.type = (cpn_msg_type_t)t;
        if (cpn_msg_decode(&env, NULL, &out) == CPN_OK &&
            (t == CPN_MSG_AD || t == CPN_MSG_SUMMARY)) { /* both decode to cpn_ad_t */
            if (out.ad.n_packages > CPN_PACKAGES_MAX)
                abort(); /* the limit must hold */
            cpn_ad_clear(&out.ad);
        }
        if (t == CPN_MSG_STATUS && cpn_msg_decode(&env, NULL, &out) == CPN_OK) {
            /* STATUS data is promised to be one valid value: it must parse and print */
            msgpack_zone z;
            msgpack_object o;
            if (!msgpack_zone_init(&z, 1024))
                abort();
            if (mp_parse(out.status.data.ptr, out.status.data.len, NULL, &z, &o) != CPN_OK)
                abort();
            if (s_null && mp_to_json(&o, s_null, 2) != CPN_OK)
                abort();
            msgpack_zone_destroy(&z);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cpn_env_t env;
    static const uint8_t zero_key[CPN_PK_LEN];

    /* 1. The envelope, as a receiver sees it. */
    int r = cpn_env_parse(data, size, NULL, &env);
    if (r == CPN_OK) {
        /* what parse promises */
        if (!env.body || env.body_len == 0 || env.body < data || env.body + env.body_len >
            data + size || env.payload < data || env.sig + CPN_SIG_LEN > data + size)
            abort();
        if (mp_validate(env.body, env.body_len, NULL) != CPN_OK)
            abort();
        (void)cpn_env_verify(&env);
        s_decode_all(env.body, env.body_len, env.from);
    }
    (void)cpn_env_open(data, size, NULL, &env);

    /* 2. The input as a body of every type, and as any msgpack value printed as JSON. */
    s_decode_all(data, size, zero_key);
    msgpack_zone z;
    msgpack_object o;
    if (!msgpack_zone_init(&z, 2048))
        abort();
    if (mp_parse(data, size, NULL, &z, &o) == CPN_OK && s_null && mp_to_json(&o, s_null, 0) !=
        CPN_OK)
        abort();
    msgpack_zone_destroy(&z);
    return 0;
}
