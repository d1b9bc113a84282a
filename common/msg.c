/* msg.c - message bodies: one field table per type, one codec for all of them.
 *
 * The field tables and s_codecs come from msg_schema.def (key names are the C field names).
 * AD and REQUEST carry resource maps (resource.h) and so have their own encode/decode
 * functions; LEASE and STATUS have checks beyond their tables (s_checks).
 */
#include "msg.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* One field table per type with rows: s_<stem>_fields[] (s_ad_wire_fields for AD). */
#define CPN_MSG(e, wire, stem, roles) static const mp_field_t s_##stem##_fields[] = {
#define CPN_MSG_WIRE(e, wire, stem, roles) static const mp_field_t s_##stem##_wire_fields[] = {
#define CPN_FIELD(stem, ctype, name, dim, kind, doc, req)                                          \
    {#name, kind, offsetof(cpn_##stem##_t, name), sizeof(((cpn_##stem##_t *)0)->name), req},
#define CPN_END(stem) };
#include "msg_schema.def"

#define S_N(tab) (sizeof tab / sizeof tab[0])

typedef int (*s_enc_fn)(msgpack_packer *pk, const void *body);
typedef int (*s_dec_fn)(const msgpack_object *map, const cpn_limits_t *lim, void *body);

static int s_ad_encode(msgpack_packer *pk, const void *body);
static int s_ad_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);
static int s_request_encode(msgpack_packer *pk, const void *body);
static int s_request_decode(const msgpack_object *map, const cpn_limits_t *lim, void *body);

typedef struct {
    const mp_field_t *fields; /* NULL: the type has its own codec (CPN_MSG_EXT) */
    size_t n_fields;
    size_t size;      /* sizeof the body struct */
    s_enc_fn encode;  /* NULL: mp_encode_map on fields */
    s_dec_fn decode;  /* NULL: mp_decode_map on fields */
} s_codec_t;

/* SUMMARY is an AD's body (msg_schema.def): AD's codec. */
#define s_summary_encode s_ad_encode
#define s_summary_decode s_ad_decode

/* Indexed by type. CPN_MSG_WIRE and CPN_MSG_EXT types name their own codec, s_<stem>_encode
 * and s_<stem>_decode: the compiler says so when a new one lacks them. */
static const s_codec_t s_codecs[CPN_MSG__COUNT] = {
#define CPN_MSG(e, wire, stem, roles)                                                              \
    [CPN_MSG_##e] = {s_##stem##_fields, S_N(s_##stem##_fields), sizeof(cpn_##stem##_t), NULL, NULL},
#define CPN_MSG_WIRE(e, wire, stem, roles)                                                         \
    [CPN_MSG_##e] = {s_##stem##_wire_fields, S_N(s_##stem##_wire_fields), sizeof(cpn_##stem##_t), \
                     s_##stem##_encode, s_##stem##_decode},
#define CPN_MSG_EXT(e, wire, stem, roles)                                                          \
    [CPN_MSG_##e] = {NULL, 0, sizeof(cpn_##stem##_t), s_##stem##_encode, s_##stem##_decode},
#include "msg_schema.def"
};

/* Checks beyond the field table, for the table types that need them: before encoding (only
 * what the decoder accepts back) and after decoding (`map` is the decoded body map). */
typedef int (*s_pre_fn)(const void *body);
typedef int (*s_post_fn)(const msgpack_object *map, const cpn_limits_t *lim, void *body,
                         const char **bad);
static int s_lease_pre(const void *body);
static int s_lease_post(const msgpack_object *map, const cpn_limits_t *lim, void *body,
                        const char **bad);
static int s_status_post(const msgpack_object *map, const cpn_limits_t *lim, void *body,
                         const char **bad);
static const struct {
    s_pre_fn pre;
    s_post_fn post;
} s_checks[CPN_MSG__COUNT] = {
    [CPN_MSG_LEASE] = {s_lease_pre, s_lease_post},
    [CPN_MSG_STATUS] = {NULL, s_status_post},
};

static const s_codec_t *s_codec(cpn_msg_type_t type)
{
    if ((int)type <= CPN_MSG_NONE || type >= CPN_MSG__COUNT)
        return NULL;
    return &s_codecs[type];
}

/* ---- AD ---- */

static int s_ad_encode(msgpack_packer *pk, const void *body)
{
    const cpn_ad_t *ad = body;
    cpn_ad_wire_t w;
    int r;
    if (ad->n_packages > CPN_PACKAGES_MAX || (ad->n_packages && !ad->packages))
        return CPN_E_INVAL;
    memset(&w, 0, sizeof w);
    memcpy(w.name, ad->name, sizeof w.name);
    w.ttl_s = ad->ttl_s;
    if ((r = mp_encode_map(pk, s_ad_wire_fields, S_N(s_ad_wire_fields), &w, 1)) != CPN_OK)
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
    cpn_ad_wire_t w;
    const char *bad = NULL;
    int r;
    (void)lim;
    memset(&w, 0, sizeof w);
    if ((r = mp_decode_map(map, s_ad_wire_fields, S_N(s_ad_wire_fields), &w, &bad)) != CPN_OK)
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
    /* One block, freed by cpn_ad_clear: the packages, then room for their summaries' lists
     * (cpn_package_t `sum` points there; CPN_PACKAGES_MAX bounds the product). */
    size_t cap = n ? n : 1;
    ad->packages = calloc(cap, sizeof *ad->packages + sizeof(cpn_slice_sum_t));
    if (!ad->packages) {
        r = CPN_E_NOMEM;
        goto out;
    }
    cpn_slice_sum_t *sums = (cpn_slice_sum_t *)(void *)(ad->packages + cap);
    ad->n_packages = n;
    for (uint32_t i = 0; i < n; i++) {
        if ((r = cpn_package_unpack(&w.packages->via.array.ptr[i], &ad->packages[i],
                                    &sums[i])) != CPN_OK) {
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

static int s_status_post(const msgpack_object *map, const cpn_limits_t *lim, void *body,
                         const char **bad)
{
    const cpn_status_t *st = body;
    int r = mp_validate(st->data.ptr, st->data.len, lim);
    (void)map;
    if (r != CPN_OK)
        *bad = "data";
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
static int s_lease_pre(const void *body)
{
    const cpn_lease_t *l = body;
    if (l->access.len && (l->access.len < CPN_ACCESS_BOX_MIN ||
                          l->access.len > CPN_ACCESS_BOX_MAX || !l->access.ptr))
        return CPN_E_INVAL;
    return CPN_OK;
}

static int s_lease_post(const msgpack_object *map, const cpn_limits_t *lim, void *body,
                        const char **bad)
{
    const cpn_lease_t *l = body;
    (void)lim;
    /* An empty box would be a second encoding of "no access" (the key left out); a box
     * outside the bounds holds no valid access details, so it is refused unopened. */
    if (l->access.len > CPN_ACCESS_BOX_MAX ||
        (s_has_key(map, "access") && l->access.len < CPN_ACCESS_BOX_MIN)) {
        *bad = "access";
        return CPN_E_SCHEMA;
    }
    return CPN_OK;
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
    if (c->encode)
        r = c->encode(&pk, body);
    else if (!s_checks[type].pre || (r = s_checks[type].pre(body)) == CPN_OK)
        r = mp_encode_map(&pk, c->fields, c->n_fields, body, 0);
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
    if (c->decode) {
        r = c->decode(&obj, lim, body);
        goto out;
    }
    if ((r = mp_decode_map(&obj, c->fields, c->n_fields, body, &bad)) == CPN_OK &&
        s_checks[env->type].post)
        r = s_checks[env->type].post(&obj, lim, body, &bad);
    if (r != CPN_OK)
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
