/* envelope.c - seal, parse and verify the signed envelope (layout in envelope.h).
 *
 * Parsing reads the envelope with a small cursor over bytes mp_validate has already
 * accepted, so it allocates nothing; every read is still bounds-checked. The signature is
 * checked over the payload bytes exactly as received, behind a context naming the type.
 */
#include "envelope.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const char *const s_names[] = {
    NULL,
#define CPN_TYPE(e, name, stem, roles) name,
#include "msg_schema.def"
};

static const unsigned s_roles[] = {
    0,
#define CPN_TYPE(e, name, stem, roles) (roles),
#include "msg_schema.def"
};

const char *cpn_msg_name(cpn_msg_type_t type)
{
    if ((int)type <= CPN_MSG_NONE || type >= CPN_MSG__COUNT)
        return NULL;
    return s_names[type];
}

cpn_msg_type_t cpn_msg_type(const char *name, size_t len)
{
    if (!name)
        return CPN_MSG_NONE;
    for (int t = CPN_MSG_NONE + 1; t < CPN_MSG__COUNT; t++)
        if (strlen(s_names[t]) == len && memcmp(s_names[t], name, len) == 0)
            return (cpn_msg_type_t)t;
    return CPN_MSG_NONE;
}

unsigned cpn_msg_roles(cpn_msg_type_t type)
{
    if ((int)type <= CPN_MSG_NONE || type >= CPN_MSG__COUNT)
        return 0;
    return s_roles[type];
}

uint64_t cpn_seq_next(uint64_t last, uint64_t now_ms)
{
    uint64_t clock_seq = now_ms > (UINT64_MAX >> 12) ? UINT64_MAX : now_ms << 12;
    uint64_t next = last == UINT64_MAX ? UINT64_MAX : last + 1;
    return next > clock_seq ? next : clock_seq;
}

uint64_t cpn_seq_next_rand(uint64_t last, uint64_t now_ms, uint32_t rnd)
{
    uint64_t clock_seq =
        now_ms > (UINT64_MAX >> 12) ? UINT64_MAX : (now_ms << 12) | (uint64_t)(rnd & 0xfffu);
    uint64_t next = last == UINT64_MAX ? UINT64_MAX : last + 1;
    return next > clock_seq ? next : clock_seq;
}

static bool s_is_map_head(uint8_t b)
{
    return (b & 0xf0) == 0x80 || b == 0xde || b == 0xdf;
}

/* ---- the signed message: context || type || 0x00 || payload ---- */

/* Build the bytes Ed25519 signs into a malloc'd buffer. */
static int s_signed_bytes(cpn_msg_type_t type, const uint8_t *payload, size_t payload_len,
                          uint8_t **out, size_t *out_len)
{
    const char *name = cpn_msg_name(type);
    if (!name)
        return CPN_E_TYPE;
    size_t ctx = sizeof CPN_SIG_CONTEXT - 1, tn = strlen(name);
    size_t n = ctx + tn + 1 + payload_len;
    uint8_t *m = malloc(n);
    if (!m)
        return CPN_E_NOMEM;
    memcpy(m, CPN_SIG_CONTEXT, ctx);
    memcpy(m + ctx, name, tn);
    m[ctx + tn] = 0x00;
    memcpy(m + ctx + tn + 1, payload, payload_len);
    *out = m;
    *out_len = n;
    return CPN_OK;
}

int cpn_env_seal(const cpn_identity_t *id, cpn_msg_type_t type, uint64_t seq, uint64_t ts_ms,
                 const uint8_t *body, size_t body_len, uint8_t **frame_p, size_t *frame_len)
{
    int r = CPN_OK;
    msgpack_sbuffer pay, frame;
    msgpack_packer pk;
    uint8_t *m = NULL, sig[CPN_SIG_LEN];
    size_t m_len = 0;
    const char *name = cpn_msg_name(type);
    cpn_limits_t lim = cpn_limits_default;
    msgpack_sbuffer_init(&pay);
    msgpack_sbuffer_init(&frame);
    if (!id || !body || !frame_p || !frame_len) {
        r = CPN_E_INVAL;
        goto out;
    }
    if (!name) {
        r = CPN_E_TYPE;
        goto out;
    }
    /* Never emit what a receiver must refuse: the body is one msgpack map. */
    lim.max_frame = body_len;
    if (body_len == 0 || !s_is_map_head(body[0])) {
        r = CPN_E_INVAL;
        goto out;
    }
    if ((r = mp_validate(body, body_len, &lim)) != CPN_OK)
        goto out;

    msgpack_packer_init(&pk, &pay, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mp_pack_str(&pk, "v");
    msgpack_pack_uint64(&pk, CPN_PROTO_VERSION);
    mp_pack_kstr(&pk, "type", name);
    mp_pack_str(&pk, "from");
    mp_pack_bin(&pk, cpn_identity_pk(id), CPN_PK_LEN);
    mp_pack_ku64(&pk, "seq", seq);
    mp_pack_ku64(&pk, "ts", ts_ms);
    mp_pack_str(&pk, "body");
    mp_pack_bin(&pk, body, body_len);
    if (!pay.data || pay.size < body_len) {
        r = CPN_E_NOMEM;
        goto out;
    }

    if ((r = s_signed_bytes(type, (const uint8_t *)pay.data, pay.size, &m, &m_len)) != CPN_OK)
        goto out;
    cpn_identity_sign(id, m, m_len, sig);

    msgpack_packer_init(&pk, &frame, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    mp_pack_bin(&pk, (const uint8_t *)pay.data, pay.size);
    mp_pack_bin(&pk, sig, sizeof sig);
    if (!frame.data || frame.size < pay.size + sizeof sig) {
        r = CPN_E_NOMEM;
        goto out;
    }
    *frame_len = frame.size;
    *frame_p = (uint8_t *)msgpack_sbuffer_release(&frame);
out:
    free(m);
    msgpack_sbuffer_destroy(&pay);
    msgpack_sbuffer_destroy(&frame);
    return r;
}

/* ---- parsing ---- */

typedef struct {
    const uint8_t *p;
    size_t left;
} s_cur_t;

static int s_take(s_cur_t *c, size_t n, const uint8_t **out)
{
    if (n > c->left)
        return CPN_E_MSGPACK;
    if (out)
        *out = c->p;
    c->p += n;
    c->left -= n;
    return CPN_OK;
}

static uint64_t s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read a header whose formats are (fix, 8-bit, 16-bit, 32-bit) lengths; CPN_E_SCHEMA if the
 * next object is of another kind. fix_lo/fix_mask describe the fix format (0 if none). */
static int s_rd_len(s_cur_t *c, uint8_t fix_lo, uint8_t fix_mask, const uint8_t fmt[3],
                    uint64_t *n)
{
    const uint8_t *h, *lp;
    int r;
    if ((r = s_take(c, 1, &h)) != CPN_OK)
        return r;
    if (fix_mask && (h[0] & (uint8_t)~fix_mask) == fix_lo) {
        *n = h[0] & fix_mask;
        return CPN_OK;
    }
    for (size_t i = 0; i < 3; i++) {
        if (fmt[i] && h[0] == fmt[i]) {
            size_t w = (size_t)1 << i;
            if ((r = s_take(c, w, &lp)) != CPN_OK)
                return r;
            *n = s_be(lp, w);
            return CPN_OK;
        }
    }
    return CPN_E_SCHEMA;
}

static const uint8_t s_fmt_bin[3] = {0xc4, 0xc5, 0xc6};
static const uint8_t s_fmt_str[3] = {0xd9, 0xda, 0xdb};
static const uint8_t s_fmt_array[3] = {0, 0xdc, 0xdd};
static const uint8_t s_fmt_map[3] = {0, 0xde, 0xdf};

static int s_rd_raw(s_cur_t *c, bool str, const uint8_t **p, size_t *n)
{
    uint64_t len;
    int r = str ? s_rd_len(c, 0xa0, 0x1f, s_fmt_str, &len) : s_rd_len(c, 0, 0, s_fmt_bin, &len);
    if (r != CPN_OK)
        return r;
    if (len > c->left)
        return CPN_E_MSGPACK;
    *n = (size_t)len;
    return s_take(c, *n, p);
}

/* A non-negative integer in any msgpack integer format (msgpack-c accepts the signed
 * formats for non-negative values too). */
static int s_rd_uint(s_cur_t *c, uint64_t *v)
{
    const uint8_t *h, *p;
    int r;
    if ((r = s_take(c, 1, &h)) != CPN_OK)
        return r;
    if (h[0] <= 0x7f) {
        *v = h[0];
        return CPN_OK;
    }
    /* uint 8/16/32/64 are 0xcc..0xcf, int 8/16/32/64 are 0xd0..0xd3 */
    if (h[0] < 0xcc || h[0] > 0xd3)
        return CPN_E_SCHEMA;
    size_t w = (size_t)1 << (h[0] & 0x03);
    bool is_signed = h[0] >= 0xd0;
    if ((r = s_take(c, w, &p)) != CPN_OK)
        return r;
    if (is_signed && (p[0] & 0x80))
        return CPN_E_SCHEMA; /* negative */
    *v = s_be(p, w);
    return CPN_OK;
}

/* Read the next map key and require it to be `want`. */
static int s_rd_key(s_cur_t *c, const char *want)
{
    const uint8_t *p;
    size_t n;
    int r = s_rd_raw(c, true, &p, &n);
    if (r != CPN_OK)
        return r;
    if (n != strlen(want) || memcmp(p, want, n) != 0)
        return CPN_E_SCHEMA;
    return CPN_OK;
}

int cpn_env_parse(const uint8_t *frame, size_t len, const cpn_limits_t *lim, cpn_env_t *env)
{
    int r;
    uint64_t n, v, seq, ts;
    s_cur_t c, pc;
    const uint8_t *payload, *sig, *type, *from, *body;
    size_t payload_len, sig_len, type_len, from_len, body_len;
    cpn_msg_type_t t;
    if (!lim)
        lim = &cpn_limits_default;
    if (!env || (!frame && len))
        return CPN_E_INVAL;
    memset(env, 0, sizeof *env);
    /* Size first: nothing else is looked at in an oversize frame. */
    if (len > lim->max_frame)
        return CPN_E_FRAME_SIZE;
    if ((r = mp_validate(frame, len, lim)) != CPN_OK)
        return r;

    c = (s_cur_t){frame, len};
    if ((r = s_rd_len(&c, 0x90, 0x0f, s_fmt_array, &n)) != CPN_OK)
        return r;
    if (n != 2)
        return CPN_E_SCHEMA;
    if ((r = s_rd_raw(&c, false, &payload, &payload_len)) != CPN_OK ||
        (r = s_rd_raw(&c, false, &sig, &sig_len)) != CPN_OK)
        return r;
    if (sig_len != CPN_SIG_LEN)
        return CPN_E_SCHEMA;
    if (c.left != 0)
        return CPN_E_TRAILING; /* mp_validate already refused this */

    if ((r = mp_validate(payload, payload_len, lim)) != CPN_OK)
        return r;
    pc = (s_cur_t){payload, payload_len};
    if ((r = s_rd_len(&pc, 0x80, 0x0f, s_fmt_map, &n)) != CPN_OK)
        return r;
    /* The version comes first, so a newer layout is reported as a version, not a schema,
     * mismatch. */
    if (n < 1 || (r = s_rd_key(&pc, "v")) != CPN_OK || (r = s_rd_uint(&pc, &v)) != CPN_OK)
        return r != CPN_OK ? r : CPN_E_SCHEMA;
    if (v != CPN_PROTO_VERSION)
        return CPN_E_VERSION;
    if (n != 6)
        return CPN_E_SCHEMA;
    if ((r = s_rd_key(&pc, "type")) != CPN_OK ||
        (r = s_rd_raw(&pc, true, &type, &type_len)) != CPN_OK)
        return r;
    if ((t = cpn_msg_type((const char *)type, type_len)) == CPN_MSG_NONE)
        return CPN_E_TYPE;
    if ((r = s_rd_key(&pc, "from")) != CPN_OK ||
        (r = s_rd_raw(&pc, false, &from, &from_len)) != CPN_OK)
        return r;
    if (from_len != CPN_PK_LEN)
        return CPN_E_SCHEMA;
    if ((r = s_rd_key(&pc, "seq")) != CPN_OK || (r = s_rd_uint(&pc, &seq)) != CPN_OK ||
        (r = s_rd_key(&pc, "ts")) != CPN_OK || (r = s_rd_uint(&pc, &ts)) != CPN_OK ||
        (r = s_rd_key(&pc, "body")) != CPN_OK ||
        (r = s_rd_raw(&pc, false, &body, &body_len)) != CPN_OK)
        return r;
    if (pc.left != 0)
        return CPN_E_TRAILING;
    /* The body is one msgpack map within the limits, checked now so no handler ever sees
     * anything else. */
    if (body_len == 0 || !s_is_map_head(body[0]))
        return CPN_E_SCHEMA;
    if ((r = mp_validate(body, body_len, lim)) != CPN_OK)
        return r;

    env->type = t;
    memcpy(env->from, from, CPN_PK_LEN);
    env->seq = seq;
    env->ts_ms = ts;
    env->body = body;
    env->body_len = body_len;
    env->payload = payload;
    env->payload_len = payload_len;
    env->sig = sig;
    env->frame = frame;
    env->frame_len = len;
    return CPN_OK;
}

int cpn_env_verify(const cpn_env_t *env)
{
    uint8_t *m = NULL;
    size_t m_len = 0;
    int r;
    if (!env || !env->payload || !env->sig)
        return CPN_E_INVAL;
    if ((r = s_signed_bytes(env->type, env->payload, env->payload_len, &m, &m_len)) != CPN_OK)
        return r;
    r = crypto_sign_verify_detached(env->sig, m, m_len, env->from) == 0 ? CPN_OK : CPN_E_SIG;
    free(m);
    return r;
}

int cpn_env_open(const uint8_t *frame, size_t len, const cpn_limits_t *lim, cpn_env_t *env)
{
    int r = cpn_env_parse(frame, len, lim, env);
    if (r == CPN_OK)
        r = cpn_env_verify(env);
    if (r != CPN_OK && env)
        memset(env, 0, sizeof *env);
    return r;
}
