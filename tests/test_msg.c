/* test_msg.c - message bodies: every type round-trips; unknown, duplicated and mistyped keys
 * are refused; embedded frames travel verbatim and still verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"

static cpn_identity_t *s_tenant, *s_broker, *s_peer;

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || cpn_identity_generate(&s_tenant) != CPN_OK ||
        cpn_identity_generate(&s_broker) != CPN_OK || cpn_identity_generate(&s_peer) != CPN_OK)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    cpn_identity_destroy(&s_tenant);
    cpn_identity_destroy(&s_broker);
    cpn_identity_destroy(&s_peer);
    return 0;
}

/* Bodies are large structs: decode into a buffer big enough for any of them. */
typedef union {
    cpn_hello_t hello;
    cpn_ad_t ad;
    cpn_withdraw_t withdraw;
    cpn_request_t request;
    cpn_claim_t claim;
    cpn_lease_t lease;
    cpn_grant_t grant;
    cpn_nack_t nack;
    cpn_renew_t renew;
    cpn_release_t release;
    cpn_query_t query;
    cpn_status_t status;
    cpn_error_t error;
    cpn_relay_t relay;
    cpn_resend_t resend;
    cpn_forward_t forward;
    cpn_notice_t notice;
} s_any_t;

/* Build, open, decode; then check that re-encoding the decoded body gives the same bytes
 * as the original encoding (a full round trip of every field). Returns the frame (caller
 * frees) so embedded bytes can be checked against it. */
static uint8_t *s_round(const cpn_identity_t *id, cpn_msg_type_t type, const void *body,
                        s_any_t *out, size_t *frame_len)
{
    uint8_t *frame = NULL, *enc1 = NULL, *enc2 = NULL;
    size_t len = 0, n1 = 0, n2 = 0;
    cpn_env_t env;
    assert_int_equal(cpn_msg_build(id, type, 77, 1700000000000ull, body, &frame, &len), CPN_OK);
    assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);
    assert_int_equal(env.type, type);
    assert_int_equal(cpn_msg_decode(&env, NULL, out), CPN_OK);
    assert_int_equal(cpn_msg_encode(type, body, &enc1, &n1), CPN_OK);
    assert_int_equal(cpn_msg_encode(type, out, &enc2, &n2), CPN_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(enc1, enc2, n1);
    assert_memory_equal(env.body, enc1, n1); /* the body travels as encoded */
    free(enc1);
    free(enc2);
    if (frame_len)
        *frame_len = len;
    return frame;
}

static cpn_package_t s_package(const char *id)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.region, sizeof p.region, "cn-east");
    snprintf(p.accel.vendor, sizeof p.accel.vendor, "nvidia");
    snprintf(p.accel.model, sizeof p.accel.model, "H100-80GB");
    p.accel.count = 8;
    p.accel.mem_bytes = 80ull << 30;
    p.accel.bf16_tflops = 989;
    p.accel.mem_bw_gbs = 3350;
    p.cores = 96;
    p.mem_bytes = 1ull << 40;
    snprintf(p.storage_class, sizeof p.storage_class, "nvme");
    p.storage_bytes = 15000000000000ull;
    p.fabric_bps = 400000000000ull;
    p.egress_bps = 25000000000ull;
    p.price = 210000;
    p.total = 12;
    p.free = 12;
    return p;
}

static cpn_request_t s_request(void)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "job-42");
    r.units = 2;
    r.duration_s = 3600;
    r.min_tflops = 6000;
    r.min_accel_mem = 640ull << 30;
    r.regions.n = 1;
    snprintf(r.regions.items[0], sizeof r.regions.items[0], "cn-east");
    return r;
}

static void test_simple_bodies_round_trip(void **state)
{
    (void)state;
    s_any_t out;
    uint8_t *f;
    uint8_t key[32];
    memset(key, 0x5a, sizeof key);

    cpn_hello_t hello = {.role = "broker", .name = "b1", .endpoint = "tcp://127.0.0.1:7000"};
    f = s_round(s_broker, CPN_MSG_HELLO, &hello, &out, NULL);
    assert_string_equal(out.hello.role, "broker");
    assert_string_equal(out.hello.endpoint, "tcp://127.0.0.1:7000");
    free(f);

    cpn_withdraw_t wd = {"shutdown"};
    f = s_round(s_peer, CPN_MSG_WITHDRAW, &wd, &out, NULL);
    assert_string_equal(out.withdraw.reason, "shutdown");
    free(f);

    cpn_nack_t nack;
    memset(&nack, 0, sizeof nack);
    snprintf(nack.ref, sizeof nack.ref, "job-42");
    nack.ref_seq = UINT64_MAX;
    nack.code = CPN_E_NO_MATCH;
    snprintf(nack.reason, sizeof nack.reason, "accelerator.model");
    f = s_round(s_broker, CPN_MSG_NACK, &nack, &out, NULL);
    assert_int_equal(out.nack.code, CPN_E_NO_MATCH);
    assert_true(out.nack.ref_seq == UINT64_MAX);
    free(f);

    cpn_renew_t renew;
    memset(&renew, 0, sizeof renew);
    snprintf(renew.lease_id, sizeof renew.lease_id, "L1");
    memcpy(renew.peer, key, 32);
    renew.extend_s = 600;
    f = s_round(s_tenant, CPN_MSG_RENEW, &renew, &out, NULL);
    assert_memory_equal(out.renew.peer, key, 32);
    assert_true(out.renew.extend_s == 600);
    free(f);

    cpn_release_t rel;
    memset(&rel, 0, sizeof rel);
    snprintf(rel.lease_id, sizeof rel.lease_id, "L1");
    memcpy(rel.peer, key, 32);
    f = s_round(s_tenant, CPN_MSG_RELEASE, &rel, &out, NULL);
    assert_string_equal(out.release.lease_id, "L1");
    free(f);

    cpn_query_t q = {"offers", "", 0};
    f = s_round(s_tenant, CPN_MSG_QUERY, &q, &out, NULL);
    assert_string_equal(out.query.what, "offers");
    assert_string_equal(out.query.after, "");
    assert_int_equal(out.query.limit, 0);
    free(f);
    cpn_query_t qp = {"leases", "1700000000000/ab/L1", 50};
    f = s_round(s_tenant, CPN_MSG_QUERY, &qp, &out, NULL);
    assert_string_equal(out.query.after, "1700000000000/ab/L1");
    assert_int_equal(out.query.limit, 50);
    free(f);

    const uint8_t data[] = {0x82, 0xa5, 'p', 'e', 'e', 'r', 's', 3, 0xa2, 'u', 'p', 0xc3};
    cpn_status_t st = {"status", {data, sizeof data}, ""};
    f = s_round(s_broker, CPN_MSG_STATUS, &st, &out, NULL);
    assert_int_equal(out.status.data.len, sizeof data);
    assert_memory_equal(out.status.data.ptr, data, sizeof data);
    assert_string_equal(out.status.next, "");
    free(f);
    cpn_status_t sn = {"offers", {data, sizeof data}, "00ff/cpu8"};
    f = s_round(s_broker, CPN_MSG_STATUS, &sn, &out, NULL);
    assert_string_equal(out.status.next, "00ff/cpu8");
    free(f);

    cpn_error_t err;
    memset(&err, 0, sizeof err);
    err.code = CPN_E_RATE;
    err.ref_seq = 9;
    f = s_round(s_broker, CPN_MSG_ERROR, &err, &out, NULL);
    assert_int_equal(out.error.code, CPN_E_RATE);
    assert_string_equal(out.error.reason, "");
    free(f);
}

/* NOTICE (issue 13) and the fields of re-match: REQUEST on_failure, CLAIM replaces. */
static void test_notice_round_trip(void **state)
{
    (void)state;
    s_any_t out;
    uint8_t *f;
    const uint8_t lease[] = {0x92, 0xc4, 0x01, 0x80, 0xc4, 0x00}; /* bytes, carried verbatim */
    cpn_notice_t n;
    memset(&n, 0, sizeof n);
    n.lease = (mp_bytes_t){lease, sizeof lease};
    snprintf(n.lease_id, sizeof n.lease_id, "LRuywK9v14eKsV4z1");
    memset(n.tenant, 0x11, sizeof n.tenant);
    n.code = CPN_E_CAPACITY_LOST;
    snprintf(n.reason, sizeof n.reason, "package drained by the peer's operator");
    n.effective_ms = 1700000000000ULL;
    f = s_round(s_peer, CPN_MSG_NOTICE, &n, &out, NULL);
    assert_int_equal(out.notice.lease.len, sizeof lease);
    assert_memory_equal(out.notice.lease.ptr, lease, sizeof lease);
    assert_string_equal(out.notice.lease_id, "LRuywK9v14eKsV4z1");
    assert_int_equal(out.notice.code, CPN_E_CAPACITY_LOST);
    assert_int_equal(out.notice.units, 0);
    assert_true(out.notice.effective_ms == 1700000000000ULL);
    free(f);
    assert_string_equal(cpn_errname(CPN_E_CAPACITY_LOST), "capacity-lost");

    /* on_failure: "rematch" travels; anything else is refused; "end" is the absent key. */
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "job-r");
    r.units = 1;
    r.duration_s = 60;
    r.cores = 1;
    snprintf(r.on_failure, sizeof r.on_failure, "rematch");
    f = s_round(s_tenant, CPN_MSG_REQUEST, &r, &out, NULL);
    assert_string_equal(out.request.on_failure, "rematch");
    free(f);
    snprintf(r.on_failure, sizeof r.on_failure, "end");
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_int_equal(cpn_msg_encode(CPN_MSG_REQUEST, &r, &enc, &len), CPN_E_INVAL);
    free(enc);
}

static void test_ad_and_request_round_trip(void **state)
{
    (void)state;
    s_any_t out;
    cpn_package_t pk[3] = {s_package("h100x8"), s_package("h100x8-b"), s_package("cpu")};
    memset(&pk[2].accel, 0, sizeof pk[2].accel);
    cpn_ad_t ad = {"dc-shanghai-1", 90, 3, pk};
    uint8_t *f = s_round(s_peer, CPN_MSG_AD, &ad, &out, NULL);
    assert_string_equal(out.ad.name, "dc-shanghai-1");
    assert_int_equal(out.ad.ttl_s, 90);
    assert_int_equal(out.ad.n_packages, 3);
    assert_string_equal(out.ad.packages[1].id, "h100x8-b");
    assert_int_equal(out.ad.packages[0].accel.count, 8);
    assert_int_equal(out.ad.packages[2].accel.count, 0);
    cpn_ad_clear(&out.ad);
    assert_null(out.ad.packages);
    free(f);

    cpn_ad_t empty = {"idle", 30, 0, NULL};
    f = s_round(s_peer, CPN_MSG_AD, &empty, &out, NULL);
    assert_int_equal(out.ad.n_packages, 0);
    cpn_ad_clear(&out.ad);
    free(f);

    cpn_request_t req = s_request();
    f = s_round(s_tenant, CPN_MSG_REQUEST, &req, &out, NULL);
    assert_string_equal(out.request.id, "job-42");
    assert_int_equal(out.request.units, 2);
    assert_true(out.request.min_tflops == 6000);
    assert_int_equal(out.request.regions.n, 1);
    free(f);
}

/* An AD whose ttl_s is outside CPN_AD_TTL_MIN_S..CPN_AD_TTL_MAX_S, or that names one package id
 * twice, is refused as schema: a ttl of 0 would expire on arrival and one of 136 years would
 * keep a dead peer's offers for good; two packages under one id make a CLAIM ambiguous. */
static void test_ad_ttl_bounds_and_duplicate_ids_refused(void **state)
{
    (void)state;
    s_any_t out;
    cpn_package_t pk[2] = {s_package("h100x8"), s_package("h100x8")};
    const uint32_t ttls[] = {0, CPN_AD_TTL_MAX_S + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        cpn_ad_t ad = {"dc", ttls[i], 1, pk};
        uint8_t *f = NULL;
        size_t len = 0;
        cpn_env_t env;
        assert_int_equal(cpn_msg_build(s_peer, CPN_MSG_AD, 1, 1, &ad, &f, &len), CPN_OK);
        assert_int_equal(cpn_env_open(f, len, NULL, &env), CPN_OK);
        assert_int_equal(cpn_msg_decode(&env, NULL, &out), CPN_E_SCHEMA);
        assert_null(out.ad.packages);
        free(f);
    }
    cpn_ad_t edge = {"dc", CPN_AD_TTL_MAX_S, 1, pk};
    uint8_t *f = s_round(s_peer, CPN_MSG_AD, &edge, &out, NULL);
    assert_int_equal(out.ad.ttl_s, CPN_AD_TTL_MAX_S);
    cpn_ad_clear(&out.ad);
    free(f);

    cpn_ad_t dup = {"dc", 30, 2, pk};
    size_t len = 0;
    cpn_env_t env;
    assert_int_equal(cpn_msg_build(s_peer, CPN_MSG_AD, 1, 1, &dup, &f, &len), CPN_OK);
    assert_int_equal(cpn_env_open(f, len, NULL, &env), CPN_OK);
    assert_int_equal(cpn_msg_decode(&env, NULL, &out), CPN_E_SCHEMA);
    assert_null(out.ad.packages);
    free(f);
}

/* PROTOCOL.md §7 REQUEST: a body outside the wire bounds is refused when decoded, as schema
 * (the broker answers such a frame with an ERROR at intake). Packed by hand: the encoder
 * itself refuses to write one. */
static void test_request_wire_bounds_refused_as_schema(void **state)
{
    (void)state;
    const struct {
        uint64_t units, duration;
        int want;
    } cases[] = {
        {1, 1, CPN_OK},
        {1000000, 366ull * 86400, CPN_OK},
        {0, 3600, CPN_E_SCHEMA},
        {1000001, 3600, CPN_E_SCHEMA},
        {1, 0, CPN_E_SCHEMA},
        {1, 366ull * 86400 + 1, CPN_E_SCHEMA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        mp_pack_kstr(&pk, "id", "bounds");
        mp_pack_ku64(&pk, "units", cases[i].units);
        mp_pack_ku64(&pk, "duration", cases[i].duration);
        mp_pack_ku64(&pk, "cores", 1);
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        s_any_t out;
        assert_int_equal(cpn_env_seal(s_tenant, CPN_MSG_REQUEST, 1, 1, (const uint8_t *)sb.data,
                                      sb.size, &frame, &len),
                         CPN_OK);
        assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);
        assert_int_equal(cpn_msg_decode(&env, NULL, &out), cases[i].want);
        free(frame);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_ad_package_limit(void **state)
{
    (void)state;
    /* An AD body with CPN_PACKAGES_MAX + 1 packages, packed by hand. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint8_t *frame = NULL;
    size_t len;
    cpn_env_t env;
    s_any_t out;
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "p");
    snprintf(p.region, sizeof p.region, "r");
    p.cores = 1, p.total = 1;
    for (uint32_t n = CPN_PACKAGES_MAX; n <= CPN_PACKAGES_MAX + 1; n++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        mp_pack_kstr(&pk, "name", "x");
        mp_pack_ku64(&pk, "ttl_s", 60);
        mp_pack_str(&pk, "packages");
        msgpack_pack_array(&pk, n);
        for (uint32_t i = 0; i < n; i++) {
            snprintf(p.id, sizeof p.id, "p%u", i); /* ids are unique within an AD */
            assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
        }
        assert_int_equal(cpn_env_seal(s_peer, CPN_MSG_AD, 1, 1, (const uint8_t *)sb.data,
                                      sb.size, &frame, &len),
                         CPN_OK);
        assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);
        int r = cpn_msg_decode(&env, NULL, &out);
        if (n <= CPN_PACKAGES_MAX) {
            assert_int_equal(r, CPN_OK);
            assert_int_equal(out.ad.n_packages, n);
            cpn_ad_clear(&out.ad);
        } else {
            assert_int_equal(r, CPN_E_COUNT);
            assert_null(out.ad.packages);
        }
        free(frame);
        msgpack_sbuffer_destroy(&sb);
    }
    /* and the encoder will not write one */
    static cpn_package_t many[CPN_PACKAGES_MAX + 1];
    for (size_t i = 0; i < CPN_PACKAGES_MAX + 1; i++)
        many[i] = p;
    cpn_ad_t ad = {"x", 60, CPN_PACKAGES_MAX + 1, many};
    uint8_t *enc = NULL;
    size_t n = 0;
    assert_int_equal(cpn_msg_encode(CPN_MSG_AD, &ad, &enc, &n), CPN_E_INVAL);
}

/* Seal a hand-packed body as `type` and decode it. */
static int s_decode_raw(cpn_msg_type_t type, const uint8_t *body, size_t n)
{
    uint8_t *frame = NULL;
    size_t len;
    cpn_env_t env;
    s_any_t out;
    int r = cpn_env_seal(s_tenant, type, 1, 1, body, n, &frame, &len);
    if (r != CPN_OK)
        return r;
    r = cpn_env_open(frame, len, NULL, &env);
    if (r == CPN_OK)
        r = cpn_msg_decode(&env, NULL, &out);
    if (r == CPN_OK && type == CPN_MSG_AD)
        cpn_ad_clear(&out.ad);
    free(frame);
    return r;
}

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
#define QUERY_OK 0xa4, 'w', 'h', 'a', 't', 0xa1, 's'

static void test_refusals(void **state)
{
    (void)state;
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x81, QUERY_OK)), CPN_OK);
    /* unknown key */
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x82, QUERY_OK, 0xa1, 'x', 1)), CPN_E_SCHEMA);
    /* duplicated key */
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x82, QUERY_OK, QUERY_OK)), CPN_E_SCHEMA);
    /* wrong type */
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x81, 0xa4, 'w', 'h', 'a', 't', 1)),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x81, 0xa4, 'w', 'h', 'a', 't', 0xc4, 1, 's')),
                     CPN_E_SCHEMA);
    /* missing required key */
    assert_int_equal(s_decode_raw(CPN_MSG_QUERY, B(0x80)), CPN_E_SCHEMA);
    /* numbers out of range: code is an i32 */
    assert_int_equal(s_decode_raw(CPN_MSG_ERROR, B(0x82, 0xa4, 'c', 'o', 'd', 'e', 0xce, 0x80, 0,
                                                   0, 0, 0xa7, 'r', 'e', 'f', '_', 's', 'e', 'q',
                                                   1)),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_raw(CPN_MSG_ERROR, B(0x82, 0xa4, 'c', 'o', 'd', 'e', 0xd0, 0xec,
                                                   0xa7, 'r', 'e', 'f', '_', 's', 'e', 'q', 1)),
                     CPN_OK);
    /* a key of 32 bytes must be exactly that */
    assert_int_equal(s_decode_raw(CPN_MSG_RELEASE, B(0x82, 0xa8, 'l', 'e', 'a', 's', 'e', '_', 'i',
                                                     'd', 0xa1, 'L', 0xa4, 'p', 'e', 'e', 'r',
                                                     0xc4, 2, 1, 2)),
                     CPN_E_SCHEMA);
    /* AD: packages not an array, a package with an unknown key */
    assert_int_equal(s_decode_raw(CPN_MSG_AD, B(0x83, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x', 0xa5,
                                                't', 't', 'l', '_', 's', 1, 0xa8, 'p', 'a', 'c',
                                                'k', 'a', 'g', 'e', 's', 0x80)),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_raw(CPN_MSG_AD, B(0x83, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x', 0xa5,
                                                't', 't', 'l', '_', 's', 1, 0xa8, 'p', 'a', 'c',
                                                'k', 'a', 'g', 'e', 's', 0x91, 0x81, 0xa1, 'q',
                                                1)),
                     CPN_E_SCHEMA);
    /* STATUS data must itself be one msgpack object */
    assert_int_equal(s_decode_raw(CPN_MSG_STATUS, B(0x82, 0xa4, 'w', 'h', 'a', 't', 0xa1, 's',
                                                    0xa4, 'd', 'a', 't', 'a', 0xc4, 2, 1, 2)),
                     CPN_E_TRAILING);
    /* REQUEST: invalid request (units 0) */
    assert_int_equal(s_decode_raw(CPN_MSG_REQUEST, B(0x84, 0xa2, 'i', 'd', 0xa1, 'r', 0xa5, 'u',
                                                     'n', 'i', 't', 's', 0, 0xa8, 'd', 'u', 'r',
                                                     'a', 't', 'i', 'o', 'n', 1, 0xa5, 'c', 'o',
                                                     'r', 'e', 's', 1)),
                     CPN_E_SCHEMA);
}

static void test_trailing_and_type(void **state)
{
    (void)state;
    /* An env whose body has trailing bytes (parse would have refused it; decode does too). */
    const uint8_t body[] = {0x81, QUERY_OK, 0x00};
    cpn_env_t env;
    s_any_t out;
    memset(&env, 0, sizeof env);
    env.type = CPN_MSG_QUERY;
    env.body = body;
    env.body_len = sizeof body;
    assert_int_equal(cpn_msg_decode(&env, NULL, &out), CPN_E_TRAILING);
    env.body_len = sizeof body - 1;
    assert_int_equal(cpn_msg_decode(&env, NULL, &out), CPN_OK);
    env.type = CPN_MSG_NONE;
    assert_int_equal(cpn_msg_decode(&env, NULL, &out), CPN_E_TYPE);
    uint8_t *enc = NULL;
    size_t n;
    assert_int_equal(cpn_msg_encode(CPN_MSG__COUNT, &out, &enc, &n), CPN_E_TYPE);
}

static void test_embedded_frames_verbatim(void **state)
{
    (void)state;
    s_any_t out1, out2, out3;
    cpn_env_t env;
    size_t req_len, claim_len, lease_len, grant_len;

    /* tenant -> REQUEST */
    cpn_request_t req = s_request();
    uint8_t *req_f = s_round(s_tenant, CPN_MSG_REQUEST, &req, &out1, &req_len);

    /* broker -> CLAIM embeds it */
    cpn_claim_t claim;
    memset(&claim, 0, sizeof claim);
    claim.request = (mp_bytes_t){req_f, req_len};
    memcpy(claim.peer, cpn_identity_pk(s_peer), 32);
    snprintf(claim.package, sizeof claim.package, "h100x8");
    claim.units = 2, claim.price = 210000, claim.duration_s = 3600;
    claim.deadline = 1700000005000;
    uint8_t *claim_f = s_round(s_broker, CPN_MSG_CLAIM, &claim, &out1, &claim_len);
    assert_int_equal(out1.claim.deadline, 1700000005000);
    assert_int_equal(out1.claim.request.len, req_len);
    assert_memory_equal(out1.claim.request.ptr, req_f, req_len);
    assert_int_equal(out1.claim.route.len, 0);
    /* the embedded REQUEST still verifies, from the bytes inside the CLAIM */
    assert_int_equal(cpn_env_open(out1.claim.request.ptr, out1.claim.request.len, NULL, &env),
                     CPN_OK);
    assert_memory_equal(env.from, cpn_identity_pk(s_tenant), 32);
    assert_int_equal(cpn_msg_decode(&env, NULL, &out3), CPN_OK);
    assert_string_equal(out3.request.id, "job-42");

    /* peer -> LEASE embeds the CLAIM */
    cpn_lease_t lease;
    memset(&lease, 0, sizeof lease);
    lease.claim = (mp_bytes_t){claim_f, claim_len};
    snprintf(lease.lease_id, sizeof lease.lease_id, "L-0001");
    snprintf(lease.package, sizeof lease.package, "h100x8");
    lease.units = 2, lease.price = 210000, lease.start_ms = 1700000000000ull;
    lease.end_ms = lease.start_ms + 3600000;
    snprintf(lease.state, sizeof lease.state, "active");
    uint8_t *lease_f = s_round(s_peer, CPN_MSG_LEASE, &lease, &out2, &lease_len);
    assert_memory_equal(out2.lease.claim.ptr, claim_f, claim_len);

    /* broker -> GRANT embeds the LEASE; unwrap the whole chain from the outermost frame */
    cpn_grant_t grant;
    memset(&grant, 0, sizeof grant);
    grant.lease = (mp_bytes_t){lease_f, lease_len};
    snprintf(grant.request_id, sizeof grant.request_id, "job-42");
    uint8_t *grant_f = s_round(s_broker, CPN_MSG_GRANT, &grant, &out3, &grant_len);

    cpn_env_t e_lease, e_claim, e_req;
    assert_int_equal(cpn_env_open(out3.grant.lease.ptr, out3.grant.lease.len, NULL, &e_lease),
                     CPN_OK);
    assert_memory_equal(e_lease.from, cpn_identity_pk(s_peer), 32);
    assert_int_equal(cpn_msg_decode(&e_lease, NULL, &out2), CPN_OK);
    assert_int_equal(cpn_env_open(out2.lease.claim.ptr, out2.lease.claim.len, NULL, &e_claim),
                     CPN_OK);
    assert_memory_equal(e_claim.from, cpn_identity_pk(s_broker), 32);
    assert_int_equal(cpn_msg_decode(&e_claim, NULL, &out1), CPN_OK);
    assert_int_equal(cpn_env_open(out1.claim.request.ptr, out1.claim.request.len, NULL, &e_req),
                     CPN_OK);
    assert_memory_equal(e_req.from, cpn_identity_pk(s_tenant), 32);
    /* the innermost bytes are the tenant's original frame, byte for byte */
    assert_int_equal(out1.claim.request.len, req_len);
    assert_memory_equal(out1.claim.request.ptr, req_f, req_len);

    /* RELAY and FORWARD carry frames the same way */
    cpn_relay_t relay = {2, {lease_f, lease_len}};
    uint8_t *f = s_round(s_broker, CPN_MSG_RELAY, &relay, &out1, NULL);
    assert_int_equal(out1.relay.hops, 2);
    assert_int_equal(cpn_env_open(out1.relay.msg.ptr, out1.relay.msg.len, NULL, &env), CPN_OK);
    free(f);
    cpn_forward_t fwd;
    memset(&fwd, 0, sizeof fwd);
    memcpy(fwd.to, cpn_identity_pk(s_peer), 32);
    fwd.hops = 1;
    fwd.msg = (mp_bytes_t){claim_f, claim_len};
    f = s_round(s_broker, CPN_MSG_FORWARD, &fwd, &out1, NULL);
    assert_int_equal(cpn_env_open(out1.forward.msg.ptr, out1.forward.msg.len, NULL, &env), CPN_OK);
    assert_int_equal(env.type, CPN_MSG_CLAIM);
    free(f);

    /* a tampered embedded frame is caught when opened, even though the outer one verifies */
    uint8_t *bad = malloc(req_len);
    assert_non_null(bad);
    memcpy(bad, req_f, req_len);
    bad[req_len / 2] ^= 0x01;
    claim.request = (mp_bytes_t){bad, req_len};
    f = s_round(s_broker, CPN_MSG_CLAIM, &claim, &out1, NULL);
    assert_int_not_equal(cpn_env_open(out1.claim.request.ptr, out1.claim.request.len, NULL, &env),
                         CPN_OK);
    free(f);
    free(bad);

    free(req_f);
    free(claim_f);
    free(lease_f);
    free(grant_f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_bodies_round_trip),
        cmocka_unit_test(test_notice_round_trip),
        cmocka_unit_test(test_ad_and_request_round_trip),
        cmocka_unit_test(test_ad_package_limit),
        cmocka_unit_test(test_request_wire_bounds_refused_as_schema),
        cmocka_unit_test(test_ad_ttl_bounds_and_duplicate_ids_refused),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_trailing_and_type),
        cmocka_unit_test(test_embedded_frames_verbatim),
    };
    return cmocka_run_group_tests_name("msg", tests, s_setup, s_teardown);
}
