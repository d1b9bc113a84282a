/* seal.h - signed frames from fuzz input, for targets whose code sits behind a signature check.
 *
 * A mutated signed frame never verifies, so a target that only fed raw bytes would stop at
 * the first signature. Instead its input is an unsigned description of a frame (a "spec"),
 * which fz_seal signs with one of FZ_KEYS fixed keys, recursively:
 *
 *   spec  = type (1 byte: index into msg_schema.def, modulo the number of types)
 *           who  (1 byte: bits 0-2 the signer, fz_key(i); bits 3-4 the timestamp: now,
 *                 an hour ago, an hour ahead, 0)
 *           body (the rest: bytes of a msgpack map)
 *
 * If the body is one valid msgpack map, every bin value under a key that embeds a frame
 * ("request", "claim", "lease", "msg", "route") is itself a spec and becomes the frame it
 * seals to (at most FZ_DEPTH deep), and the map is encoded again; any other body is sealed as
 * it is, so malformed bodies still reach the decoders. Sequence numbers rise per key from the
 * clock (cpn_seq_next), as a real sender's do. Within one fz_seal call the same spec seals to
 * the same frame, as a REQUEST that a CLAIM and its route both carry is one frame.
 *
 * fuzz/gen_seeds.c writes specs of real chains; fz_spec_* below build them.
 * Header-only: each target is one translation unit (scripts/fuzz).
 */
#ifndef CPN_FUZZ_SEAL_H
#define CPN_FUZZ_SEAL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "envelope.h"
#include "identity.h"
#include "mp.h"

#define FZ_KEYS 8
#define FZ_DEPTH 80 /* deeper than any chain a verifier accepts (64 FORWARDs + 6) */
#define FZ_MAX_FRAME (16u * 1024 * 1024)

/* Fixed roles of the keys, for seeds and configurations. */
enum { FZ_TENANT = 0, FZ_BROKER_A, FZ_BROKER_B, FZ_BROKER_C, FZ_PEER, FZ_TENANT2, FZ_OTHER };

static cpn_identity_t *fz_ids[FZ_KEYS];
static uint64_t fz_last_seq[FZ_KEYS];

/* Frames sealed during the current fz_seal call, by the spec they came from. */
#define FZ_MEMO 16
static struct {
    uint8_t *spec;
    size_t spec_len;
    uint8_t *frame;
    size_t frame_len;
} fz_memo[FZ_MEMO];
static size_t fz_n_memo;

static inline void fz_memo_clear(void)
{
    for (size_t i = 0; i < fz_n_memo; i++) {
        free(fz_memo[i].frame);
        free(fz_memo[i].spec);
    }
    fz_n_memo = 0;
}

/* A copy of the frame `spec` sealed to earlier in this call, if any. */
static inline int fz_memo_find(const uint8_t *spec, size_t len, uint8_t **frame_p,
                               size_t *frame_len)
{
    for (size_t i = 0; i < fz_n_memo; i++) {
        if (fz_memo[i].spec_len != len || memcmp(fz_memo[i].spec, spec, len) != 0)
            continue;
        if (!(*frame_p = malloc(fz_memo[i].frame_len)))
            abort();
        memcpy(*frame_p, fz_memo[i].frame, fz_memo[i].frame_len);
        *frame_len = fz_memo[i].frame_len;
        return 1;
    }
    return 0;
}

static inline void fz_memo_add(const uint8_t *spec, size_t len, const uint8_t *frame,
                               size_t frame_len)
{
    if (fz_n_memo == FZ_MEMO)
        return;
    if (!(fz_memo[fz_n_memo].frame = malloc(frame_len)) ||
        !(fz_memo[fz_n_memo].spec = malloc(len))) {
        free(fz_memo[fz_n_memo].frame);
        return;
    }
    memcpy(fz_memo[fz_n_memo].frame, frame, frame_len);
    fz_memo[fz_n_memo].frame_len = frame_len;
    memcpy(fz_memo[fz_n_memo].spec, spec, len);
    fz_memo[fz_n_memo].spec_len = len;
    fz_n_memo++;
}

/* Load the fixed keys (seeds "cpn-fuzz-key-N"); aborts on failure (a harness bug). */
static inline void fz_keys_init(void)
{
    if (cpn_crypto_init() != CPN_OK)
        abort();
    for (int i = 0; i < FZ_KEYS; i++) {
        uint8_t seed[CPN_SEED_LEN];
        memset(seed, 0, sizeof seed);
        memcpy(seed, "cpn-fuzz-key-", 13);
        seed[13] = (uint8_t)('0' + i);
        if (!fz_ids[i] && cpn_identity_from_seed(seed, &fz_ids[i]) != CPN_OK)
            abort();
    }
}

static inline const cpn_identity_t *fz_key(int i)
{
    return fz_ids[i % FZ_KEYS];
}

static inline int fz_is_embedding_key(const msgpack_object *k)
{
    static const char *const keys[] = {"request", "claim", "lease", "msg", "route"};
    if (k->type != MSGPACK_OBJECT_STR)
        return 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (k->via.str.size == strlen(keys[i]) &&
            memcmp(k->via.str.ptr, keys[i], k->via.str.size) == 0)
            return 1;
    return 0;
}

static int fz_seal_depth(const uint8_t *spec, size_t len, int depth, uint8_t **frame_p,
                         size_t *frame_len);

/* The body with embedded specs sealed, into sb. */
static inline int fz_body(const uint8_t *body, size_t len, int depth, msgpack_sbuffer *sb)
{
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_packer pk;
    int r = CPN_OK;
    if (!msgpack_zone_init(&zone, 1024))
        return CPN_E_NOMEM;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (mp_parse(body, len, NULL, &zone, &obj) != CPN_OK || obj.type != MSGPACK_OBJECT_MAP) {
        if (len) /* an empty sbuffer has no data to copy into */
            msgpack_sbuffer_write(sb, (const char *)body, len);
        goto out;
    }
    msgpack_pack_map(&pk, obj.via.map.size);
    for (uint32_t i = 0; i < obj.via.map.size && r == CPN_OK; i++) {
        const msgpack_object_kv *kv = &obj.via.map.ptr[i];
        msgpack_pack_object(&pk, kv->key);
        if (!fz_is_embedding_key(&kv->key) || kv->val.type != MSGPACK_OBJECT_BIN) {
            msgpack_pack_object(&pk, kv->val);
            continue;
        }
        uint8_t *inner = NULL;
        size_t inner_len = 0;
        if ((r = fz_seal_depth((const uint8_t *)kv->val.via.bin.ptr, kv->val.via.bin.size,
                               depth + 1, &inner, &inner_len)) == CPN_OK)
            mp_pack_bin(&pk, inner, inner_len);
        free(inner);
    }
out:
    msgpack_zone_destroy(&zone);
    return r;
}

static int fz_seal_depth(const uint8_t *spec, size_t len, int depth, uint8_t **frame_p,
                         size_t *frame_len)
{
    msgpack_sbuffer sb;
    int r;
    *frame_p = NULL;
    *frame_len = 0;
    /* Too short to be a spec, or too deep: the bytes themselves stand for the frame. */
    if (len < 2 || depth > FZ_DEPTH) {
        if (!(*frame_p = malloc(len ? len : 1)))
            return CPN_E_NOMEM;
        if (len)
            memcpy(*frame_p, spec, len);
        *frame_len = len;
        return CPN_OK;
    }
    if (fz_memo_find(spec, len, frame_p, frame_len))
        return CPN_OK;
    cpn_msg_type_t type = (cpn_msg_type_t)(1 + spec[0] % (CPN_MSG__COUNT - 1));
    int who = spec[1] & 7;
    uint64_t now = cpn_now_ms(), ts;
    switch ((spec[1] >> 3) & 3) {
    case 0:
        ts = now;
        break;
    case 1:
        ts = now - 3600 * 1000;
        break;
    case 2:
        ts = now + 3600 * 1000;
        break;
    default:
        ts = 0;
        break;
    }
    msgpack_sbuffer_init(&sb);
    if ((r = fz_body(spec + 2, len - 2, depth, &sb)) == CPN_OK) {
        if (sb.size > FZ_MAX_FRAME)
            r = CPN_E_TOO_BIG;
        else {
            fz_last_seq[who] = cpn_seq_next(fz_last_seq[who], now);
            r = cpn_env_seal(fz_ids[who], type, fz_last_seq[who], ts, (const uint8_t *)sb.data,
                             sb.size, frame_p, frame_len);
            if (r == CPN_OK)
                fz_memo_add(spec, len, *frame_p, *frame_len);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    return r;
}

/* Seal a spec (and every spec embedded in it). *frame_p malloc'd, the caller's. */
static inline int fz_seal(const uint8_t *spec, size_t len, uint8_t **frame_p, size_t *frame_len)
{
    int r = fz_seal_depth(spec, len, 0, frame_p, frame_len);
    fz_memo_clear();
    return r;
}

/* ---- building specs (seed generator) ---- */

/* A spec of `type` signed by key `who` around an encoded body. malloc'd, the caller's. */
static inline uint8_t *fz_spec(cpn_msg_type_t type, int who, const uint8_t *body, size_t len,
                               size_t *out_len)
{
    uint8_t *s = malloc(len + 2);
    if (!s)
        abort();
    s[0] = (uint8_t)(type - 1);
    s[1] = (uint8_t)who;
    memcpy(s + 2, body, len);
    *out_len = len + 2;
    return s;
}

#endif
