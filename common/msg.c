/* msg.c - message bodies: one field table per type, one codec for all of them.
 *
 * Every type has a row in s_codecs: its field table (key names are the C field names) and
 * the size of its struct. AD and REQUEST carry resource maps (resource.h) and so have
 * their own encode/decode functions around the same tables.
 */
#include "msg.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define F(st, name, kind, req) {#name, (kind), offsetof(st, name), sizeof(((st *)0)->name), (req)}

static const mp_field_t s_hello[] = {
    F(cpn_hello_t, role, MPF_STR, true),
    F(cpn_hello_t, name, MPF_STR, true),
    F(cpn_hello_t, endpoint, MPF_STR, false),
    F(cpn_hello_t, root, MPF_KEY, false),
    F(cpn_hello_t, dist, MPF_U32, false),
    F(cpn_hello_t, parent, MPF_KEY, false),
    F(cpn_hello_t, digest, MPF_U64, false),
};

/* AD on the wire: name, ttl_s and the packages array (decoded by resource.c). */
typedef struct {
    char name[CPN_NAME_MAX];
    uint32_t ttl_s;
    const msgpack_object *packages;
} s_ad_wire_t;

static const mp_field_t s_ad[] = {
    F(s_ad_wire_t, name, MPF_STR, true),
    F(s_ad_wire_t, ttl_s, MPF_U32, true),
    F(s_ad_wire_t, packages, MPF_OBJ, true),
};

static const mp_field_t s_withdraw[] = {
    F(cpn_withdraw_t, reason, MPF_STR, false),
};

static const mp_field_t s_claim[] = {
    F(cpn_claim_t, request, MPF_BIN, true),
    F(cpn_claim_t, peer, MPF_KEY, true),
    F(cpn_claim_t, package, MPF_STR, true),
    F(cpn_claim_t, units, MPF_U32, true),
    F(cpn_claim_t, price, MPF_U64, true),
    F(cpn_claim_t, duration_s, MPF_U64, true),
    F(cpn_claim_t, route, MPF_BIN, false),
    F(cpn_claim_t, deadline, MPF_U64, true),
    F(cpn_claim_t, replaces, MPF_BIN, false),
};

static const mp_field_t s_lease[] = {
    F(cpn_lease_t, claim, MPF_BIN, true),
    F(cpn_lease_t, lease_id, MPF_STR, true),
    F(cpn_lease_t, package, MPF_STR, true),
    F(cpn_lease_t, units, MPF_U32, true),
    F(cpn_lease_t, price, MPF_U64, true),
    F(cpn_lease_t, start_ms, MPF_U64, true),
    F(cpn_lease_t, end_ms, MPF_U64, true),
    F(cpn_lease_t, state, MPF_STR, true),
    F(cpn_lease_t, renewals, MPF_U32, true),
    F(cpn_lease_t, slice, MPF_STR, false),
    F(cpn_lease_t, access, MPF_BIN, false),
};

static const mp_field_t s_grant[] = {
    F(cpn_grant_t, lease, MPF_BIN, true),
    F(cpn_grant_t, request_id, MPF_STR, true),
};

static const mp_field_t s_nack[] = {
    F(cpn_nack_t, ref, MPF_STR, true),
    F(cpn_nack_t, ref_seq, MPF_U64, true),
    F(cpn_nack_t, code, MPF_I32, true),
    F(cpn_nack_t, reason, MPF_STR, false),
};

static const mp_field_t s_renew[] = {
    F(cpn_renew_t, lease_id, MPF_STR, true),
    F(cpn_renew_t, peer, MPF_KEY, true),
    F(cpn_renew_t, extend_s, MPF_U64, true),
};

static const mp_field_t s_release[] = {
    F(cpn_release_t, lease_id, MPF_STR, true),
    F(cpn_release_t, peer, MPF_KEY, true),
};

static const mp_field_t s_query[] = {
    F(cpn_query_t, what, MPF_STR, true),
    F(cpn_query_t, after, MPF_STR, false),
    F(cpn_query_t, limit, MPF_U32, false),
};

static const mp_field_t s_status[] = {
    F(cpn_status_t, what, MPF_STR, true),
    F(cpn_status_t, data, MPF_BIN, true),
    F(cpn_status_t, next, MPF_STR, false),
};

static const mp_field_t s_error[] = {
    F(cpn_error_t, code, MPF_I32, true),
    F(cpn_error_t, ref_seq, MPF_U64, true),
    F(cpn_error_t, reason, MPF_STR, false),
};

static const mp_field_t s_relay[] = {
    F(cpn_relay_t, hops, MPF_U32, true),
    F(cpn_relay_t, msg, MPF_BIN, true),
};

static const mp_field_t s_forward[] = {
    F(cpn_forward_t, to, MPF_KEY, true),
    F(cpn_forward_t, hops, MPF_U32, true),
    F(cpn_forward_t, msg, MPF_BIN, true),
    F(cpn_forward_t, ref_seq, MPF_U64, false),
};

static const mp_field_t s_sync[] = {
    F(cpn_sync_t, lo, MPF_KEY, true),
    F(cpn_sync_t, hi, MPF_KEY, true),
    F(cpn_sync_t, entries, MPF_BIN, true),
};

static const mp_field_t s_resend[] = {
    F(cpn_resend_t, frame, MPF_BIN, true),
};

static const mp_field_t s_notice[] = {
    F(cpn_notice_t, lease, MPF_BIN, true),
    F(cpn_notice_t, lease_id, MPF_STR, true),
    F(cpn_notice_t, tenant, MPF_KEY, true),
    F(cpn_notice_t, code, MPF_I32, true),
    F(cpn_notice_t, reason, MPF_STR, false),
    F(cpn_notice_t, effective_ms, MPF_U64, true),
    F(cpn_notice_t, units, MPF_U32, false),
};

static const mp_field_t s_usage[] = {
    F(cpn_usage_t, lease_id, MPF_STR, true),
    F(cpn_usage_t, tenant, MPF_KEY, true),
    F(cpn_usage_t, n, MPF_U32, true),
    F(cpn_usage_t, prev, MPF_KEY, true),
    F(cpn_usage_t, package, MPF_STR, true),
    F(cpn_usage_t, units, MPF_U32, true),
    F(cpn_usage_t, price, MPF_U64, true),
    F(cpn_usage_t, start_ms, MPF_U64, true),
    F(cpn_usage_t, from_ms, MPF_U64, true),
    F(cpn_usage_t, to_ms, MPF_U64, true),
    F(cpn_usage_t, unit_ms, MPF_U64, true),
    F(cpn_usage_t, amount, MPF_U64, true),
    F(cpn_usage_t, total, MPF_U64, true),
    F(cpn_usage_t, final, MPF_BOOL, false),
};

static const mp_field_t s_meter[] = {
    F(cpn_meter_t, usage, MPF_BIN, true),
    F(cpn_meter_t, lease, MPF_BIN, false),
};

static const mp_field_t s_receipt[] = {
    F(cpn_receipt_t, peer, MPF_KEY, true),
    F(cpn_receipt_t, lease_id, MPF_STR, true),
    F(cpn_receipt_t, n, MPF_U32, true),
    F(cpn_receipt_t, hash, MPF_KEY, true),
};

static const mp_field_t s_statement[] = {
    F(cpn_statement_t, with, MPF_KEY, true),
    F(cpn_statement_t, period, MPF_STR, true),
    F(cpn_statement_t, part, MPF_U32, true),
    F(cpn_statement_t, parts, MPF_U32, true),
    F(cpn_statement_t, from_ms, MPF_U64, true),
    F(cpn_statement_t, to_ms, MPF_U64, true),
    F(cpn_statement_t, owe, MPF_U64, true),
    F(cpn_statement_t, due, MPF_U64, true),
    F(cpn_statement_t, lines, MPF_BIN, true),
};

#undef F

typedef int (*s_enc_fn)(msgpack_packer *pk, const void *body);
typedef int (*s_dec_fn)(const msgpack_object *map, const cpn_limits_t *lim, void *body);

static int s_ad_encode(msgpack_packer *pk, const void *body);
static int s_ad_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);
static int s_request_encode(msgpack_packer *pk, const void *body);
static int s_request_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);
static int s_status_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);
static int s_lease_encode(msgpack_packer *pk, const void *body);
static int s_lease_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);

typedef struct {
    cpn_msg_type_t type;
    const mp_field_t *fields; /* NULL: the type has its own codec */
    size_t n_fields;
    size_t size; /* sizeof the body struct */
    s_enc_fn encode; /* NULL: mp_encode_map on fields */
    s_dec_fn decode; /* NULL: mp_decode_map on fields */
} s_codec_t;

#define T(e, tab, st) {CPN_MSG_##e, tab, sizeof tab / sizeof tab[0], sizeof(st), NULL, NULL}
static const s_codec_t s_codecs[] = {
    T(HELLO, s_hello, cpn_hello_t),
    {CPN_MSG_AD, NULL, 0, sizeof(cpn_ad_t), s_ad_encode, s_ad_decode},
    T(WITHDRAW, s_withdraw, cpn_withdraw_t),
    {CPN_MSG_REQUEST, NULL, 0, sizeof(cpn_request_t), s_request_encode, s_request_decode},
    T(CLAIM, s_claim, cpn_claim_t),
    {CPN_MSG_LEASE, s_lease, sizeof s_lease / sizeof s_lease[0], sizeof(cpn_lease_t),
     s_lease_encode, s_lease_decode},
    T(GRANT, s_grant, cpn_grant_t),
    T(NACK, s_nack, cpn_nack_t),
    T(RENEW, s_renew, cpn_renew_t),
    T(RELEASE, s_release, cpn_release_t),
    T(QUERY, s_query, cpn_query_t),
    {CPN_MSG_STATUS, s_status, sizeof s_status / sizeof s_status[0], sizeof(cpn_status_t), NULL,
     s_status_decode},
    T(ERROR, s_error, cpn_error_t),
    T(RELAY, s_relay, cpn_relay_t),
    T(FORWARD, s_forward, cpn_forward_t),
    T(SYNC, s_sync, cpn_sync_t),
    T(RESEND, s_resend, cpn_resend_t),
    T(NOTICE, s_notice, cpn_notice_t),
    T(USAGE, s_usage, cpn_usage_t),
    T(METER, s_meter, cpn_meter_t),
    T(RECEIPT, s_receipt, cpn_receipt_t),
    T(STATEMENT, s_statement, cpn_statement_t),
};
#undef T

_Static_assert(sizeof s_codecs / sizeof s_codecs[0] == CPN_MSG__COUNT - 1,
               "every message type in msg_schema.def needs a codec row");

static const s_codec_t *s_codec(cpn_msg_type_t type)
{
    for (size_t i = 0; i < sizeof s_codecs / sizeof s_codecs[0]; i++)
        if (s_codecs[i].type == type)
            return &s_codecs[i];
    return NULL;
}

/* ---- AD ---- */

static int s_ad_encode(msgpack_packer *pk, const void *body)
{
    const cpn_ad_t *ad = body;
    s_ad_wire_t w;
    int r;
    if (ad->n_packages > CPN_PACKAGES_MAX || (ad->n_packages && !ad->packages))
        return CPN_E_INVAL;
    memset(&w, 0, sizeof w);
    memcpy(w.name, ad->name, sizeof w.name);
    w.ttl_s = ad->ttl_s;
    if ((r = mp_encode_map(pk, s_ad, sizeof s_ad / sizeof s_ad[0], &w, 1)) != CPN_OK)
        return r;
    mp_pack_str(pk, "packages");
    msgpack_pack_array(pk, ad->n_packages);
    for (uint32_t i = 0; i < ad->n_packages; i++)
        if ((r = cpn_package_pack(pk, &ad->packages[i])) != CPN_OK)
            return r;
    return CPN_OK;
}

static int s_ad_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body)
{
    cpn_ad_t *ad = body;
    s_ad_wire_t w;
    const char *bad = NULL;
    int r;
    (void)lim;
    memset(&w, 0, sizeof w);
    if ((r = mp_decode_map(map, s_ad, sizeof s_ad / sizeof s_ad[0], &w, &bad)) != CPN_OK)
        goto out;
    if (w.packages->type != MSGPACK_OBJECT_ARRAY) {
        bad = "packages";
        r = CPN_E_SCHEMA;
        goto out;
    }
    uint32_t n = w.packages->via.array.size;
    if (n > CPN_PACKAGES_MAX) {
        bad = "packages";
        r = CPN_E_COUNT;
        goto out;
    }
    if (w.ttl_s < CPN_AD_TTL_MIN_S || w.ttl_s > CPN_AD_TTL_MAX_S) {
        bad = "ttl_s";
        r = CPN_E_SCHEMA;
        goto out;
    }
    memcpy(ad->name, w.name, sizeof ad->name);
    ad->ttl_s = w.ttl_s;
    ad->packages = calloc(n ? n : 1, sizeof *ad->packages);
    if (!ad->packages) {
        r = CPN_E_NOMEM;
        goto out;
    }
    ad->n_packages = n;
    for (uint32_t i = 0; i < n; i++) {
        if ((r = cpn_package_unpack(&w.packages->via.array.ptr[i], &ad->packages[i])) !=
            CPN_OK) {
            bad = "packages[]";
            goto out;
        }
        /* A CLAIM names a package by id: two under one id would make it ambiguous. At most
         * CPN_PACKAGES_MAX, so the quadratic scan stays under 33k short compares. */
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(ad->packages[j].id, ad->packages[i].id) == 0) {
                bad = "packages[].id (duplicate)";
                r = CPN_E_SCHEMA;
                goto out;
            }
    }
out:
    if (r != CPN_OK) {
        log_debug("msg", "AD body refused: %s (%s)", cpn_errname(r), bad ? bad : "-");
        cpn_ad_clear(ad);
    }
    return r;
}

void cpn_ad_clear(cpn_ad_t *ad)
{
    if (!ad)
        return;
    free(ad->packages);
    ad->packages = NULL;
    ad->n_packages = 0;
}

/* ---- REQUEST: the body is the request map itself ---- */

static int s_request_encode(msgpack_packer *pk, const void *body)
{
    return cpn_request_pack(pk, body);
}

static int s_request_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body)
{
    (void)lim;
    return cpn_request_unpack(map, body);
}

/* ---- STATUS: `data` must itself be one msgpack object, so cpnctl can print it ---- */

static int s_status_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body)
{
    cpn_status_t *st = body;
    const char *bad = NULL;
    int r = mp_decode_map(map, s_status, sizeof s_status / sizeof s_status[0], st, &bad);
    if (r == CPN_OK && (r = mp_validate(st->data.ptr, st->data.len, lim)) != CPN_OK)
        bad = "data";
    if (r != CPN_OK)
        log_debug("msg", "STATUS body refused: %s (%s)", cpn_errname(r), bad ? bad : "-");
    return r;
}

/* ---- LEASE: a present `access` is a sealed box within its bounds ---- */

/* Whether `map` has the key `key` (a decoded map: keys are unique). */
static bool s_has_key(const msgpack_object *map, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return true;
    }
    return false;
}

/* Only what the decoder accepts back: a peer never signs a LEASE a broker must refuse. */
static int s_lease_encode(msgpack_packer *pk, const void *body)
{
    const cpn_lease_t *l = body;
    if (l->access.len && (l->access.len < CPN_ACCESS_BOX_MIN ||
                          l->access.len > CPN_ACCESS_BOX_MAX || !l->access.ptr))
        return CPN_E_INVAL;
    return mp_encode_map(pk, s_lease, sizeof s_lease / sizeof s_lease[0], body, 0);
}

static int s_lease_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body)
{
    cpn_lease_t *l = body;
    const char *bad = NULL;
    int r = mp_decode_map(map, s_lease, sizeof s_lease / sizeof s_lease[0], l, &bad);
    (void)lim;
    /* An empty box would be a second encoding of "no access" (the key left out); a box
     * outside the bounds holds no valid access details, so it is refused unopened. */
    if (r == CPN_OK && (l->access.len > CPN_ACCESS_BOX_MAX ||
                        (s_has_key(map, "access") && l->access.len < CPN_ACCESS_BOX_MIN))) {
        bad = "access";
        r = CPN_E_SCHEMA;
    }
    if (r != CPN_OK)
        log_debug("msg", "LEASE body refused: %s (%s)", cpn_errname(r), bad ? bad : "-");
    return r;
}

/* ---- the codec ---- */

int cpn_msg_encode(cpn_msg_type_t type, const void *body, uint8_t **out, size_t *len)
{
    const s_codec_t *c = s_codec(type);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int r;
    if (!c)
        return CPN_E_TYPE;
    if (!body || !out || !len)
        return CPN_E_INVAL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    r = c->encode ? c->encode(&pk, body) : mp_encode_map(&pk, c->fields, c->n_fields, body, 0);
    if (r == CPN_OK && (!sb.data || sb.size == 0))
        r = CPN_E_NOMEM;
    if (r != CPN_OK) {
        msgpack_sbuffer_destroy(&sb);
        return r;
    }
    *len = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    return CPN_OK;
}

int cpn_msg_decode(const cpn_env_t *env, const cpn_limits_t *lim, void *body)
{
    const s_codec_t *c;
    msgpack_zone zone;
    msgpack_object obj;
    const char *bad = NULL;
    int r;
    if (!env || !body)
        return CPN_E_INVAL;
    if (!(c = s_codec(env->type)))
        return CPN_E_TYPE;
    if (!lim)
        lim = &cpn_limits_default;
    memset(body, 0, c->size);
    /* Refuse malformed bytes before allocating anything for them. */
    if ((r = mp_validate(env->body, env->body_len, lim)) != CPN_OK)
        return r;
    if (!msgpack_zone_init(&zone, 2048))
        return CPN_E_NOMEM;
    if ((r = mp_parse(env->body, env->body_len, lim, &zone, &obj)) != CPN_OK)
        goto out;
    if (c->decode)
        r = c->decode(&obj, lim, body);
    else if ((r = mp_decode_map(&obj, c->fields, c->n_fields, body, &bad)) != CPN_OK)
        log_debug("msg", "%s body refused: %s (%s)", cpn_msg_name(env->type), cpn_errname(r),
                  bad ? bad : "-");
out:
    msgpack_zone_destroy(&zone);
    return r;
}

int cpn_msg_build(const cpn_identity_t *id, cpn_msg_type_t type, uint64_t seq, uint64_t ts_ms,
                  const void *body, uint8_t **frame_p, size_t *frame_len)
{
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    int r = cpn_msg_encode(type, body, &enc, &enc_len);
    if (r == CPN_OK)
        r = cpn_env_seal(id, type, seq, ts_ms, enc, enc_len, frame_p, frame_len);
    free(enc);
    return r;
}
