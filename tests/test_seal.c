/* test_seal.c - sealed access details (common/seal.c), the access hints of a REQUEST
 * (common/hints.c), the LEASE and REQUEST `access` fields on the wire (common/msg.c,
 * common/resource.c), and the JSON check the plaintext must pass (common/json_check.c). */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "chain.h"
#include "hints.h"
#include "json_check.h"
#include "msg.h"
#include "msg_typed.h"
#include "seal.h"

#define S_DETAILS "{\"login\": \"acme@login.dc-1.example\", \"reservation\": \"cpn-L1\"}"

static cpn_identity_t *s_tenant, *s_other;

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || cpn_identity_generate(&s_tenant) != CPN_OK ||
        cpn_identity_generate(&s_other) != CPN_OK)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    cpn_identity_destroy(&s_tenant);
    cpn_identity_destroy(&s_other);
    return 0;
}

/* ---- sealing ---- */

static void test_seal_opens_with_the_tenant_key_only(void **state)
{
    (void)state;
    uint8_t box[CPN_ACCESS_BOX_MAX], box2[CPN_ACCESS_BOX_MAX];
    char text[CPN_ACCESS_MAX + 1];
    size_t n = 0, n2 = 0, tl = 0;
    const size_t len = strlen(S_DETAILS);
    assert_int_equal(cpn_seal(cpn_identity_pk(s_tenant), S_DETAILS, len, box, sizeof box, &n),
                     CPN_OK);
    assert_int_equal(n, len + CPN_SEAL_OVERHEAD);
    assert_null(memmem(box, n, "acme", 4)); /* the plaintext is not in the box */
    assert_int_equal(cpn_seal_open(s_tenant, box, n, text, sizeof text, &tl), CPN_OK);
    assert_int_equal(tl, len);
    assert_string_equal(text, S_DETAILS);
    /* another key: a clear code, nothing written */
    memset(text, 0, sizeof text);
    assert_int_equal(cpn_seal_open(s_other, box, n, text, sizeof text, &tl), CPN_E_SEALED);
    assert_string_equal(text, "");
    /* a fresh ephemeral key each time */
    assert_int_equal(cpn_seal(cpn_identity_pk(s_tenant), S_DETAILS, len, box2, sizeof box2, &n2),
                     CPN_OK);
    assert_int_equal(n2, n);
    assert_memory_not_equal(box, box2, n);
    /* any changed byte, or a cut box: sealed */
    for (size_t i = 0; i < n; i += 7) {
        box[i] ^= 0x01;
        assert_int_equal(cpn_seal_open(s_tenant, box, n, text, sizeof text, &tl), CPN_E_SEALED);
        box[i] ^= 0x01;
    }
    assert_int_equal(cpn_seal_open(s_tenant, box, n - 1, text, sizeof text, &tl), CPN_E_SEALED);
    assert_int_equal(cpn_seal_open(s_tenant, box, 10, text, sizeof text, &tl), CPN_E_SEALED);
    assert_int_equal(cpn_seal_open(s_tenant, box, n, text, 8, &tl), CPN_E_INVAL);
}

static void test_seal_limits_and_content(void **state)
{
    (void)state;
    static char big[CPN_ACCESS_MAX + 2];
    static uint8_t box[CPN_ACCESS_BOX_MAX + 16];
    char text[CPN_ACCESS_MAX + 1];
    size_t n = 0, tl = 0;
    const uint8_t *pk = cpn_identity_pk(s_tenant);
    /* exactly at the limit: {"k":"xxx..."} of CPN_ACCESS_MAX bytes */
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"k\":\"", 6);
    big[CPN_ACCESS_MAX - 2] = '"';
    big[CPN_ACCESS_MAX - 1] = '}';
    assert_int_equal(cpn_seal(pk, big, CPN_ACCESS_MAX, box, sizeof box, &n), CPN_OK);
    assert_int_equal(n, CPN_ACCESS_BOX_MAX);
    assert_int_equal(cpn_seal_open(s_tenant, box, n, text, sizeof text, &tl), CPN_OK);
    assert_int_equal(tl, CPN_ACCESS_MAX);
    /* one byte more: refused before sealing, and a box that large is refused unopened */
    big[CPN_ACCESS_MAX - 1] = 'x';
    big[CPN_ACCESS_MAX] = '"';
    big[CPN_ACCESS_MAX + 1] = '}';
    big[CPN_ACCESS_MAX - 2] = 'x';
    assert_int_equal(cpn_seal(pk, big, CPN_ACCESS_MAX + 1, box, sizeof box, &n), CPN_E_TOO_BIG);
    assert_int_equal(cpn_seal_open(s_tenant, box, CPN_ACCESS_BOX_MAX + 1, text, sizeof text, &tl),
                     CPN_E_TOO_BIG);
    /* not one JSON object */
    const char *bad[] = {"", "[]", "\"x\"", "{", "{} {}", "{\"a\":1,}", "{\"a\":\"\x01\"}",
                         "{\"a\":\"\xc3\x28\"}", "{'a':1}", "{\"a\":01}", "{\"a\":tru}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cpn_seal(pk, bad[i], strlen(bad[i]), box, sizeof box, &n), CPN_E_SCHEMA);
    /* a box too small for the text, a key that is not a curve point */
    assert_int_equal(cpn_seal(pk, S_DETAILS, strlen(S_DETAILS), box, 10, &n), CPN_E_INVAL);
    uint8_t not_a_point[CPN_PK_LEN];
    memset(not_a_point, 0xff, sizeof not_a_point);
    assert_int_equal(cpn_seal(not_a_point, "{}", 2, box, sizeof box, &n), CPN_E_KEY);
    /* a box that opens but holds no JSON object (sealed by hand, past cpn_seal's check) */
    uint8_t xpk[32];
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(xpk, pk), 0);
    assert_int_equal(crypto_box_seal(box, (const uint8_t *)"hello", 5, xpk), 0);
    assert_int_equal(cpn_seal_open(s_tenant, box, 5 + CPN_SEAL_OVERHEAD, text, sizeof text, &tl),
                     CPN_E_SCHEMA);
}

static void test_seal_with_seed_is_a_sealed_box(void **state)
{
    (void)state;
    uint8_t seed[CPN_SEAL_EPH_SEED_LEN], box[CPN_ACCESS_BOX_MAX], box2[CPN_ACCESS_BOX_MAX];
    uint8_t xpk[32], xsk[32], plain[256];
    size_t n = 0, n2 = 0;
    const size_t len = strlen(S_DETAILS);
    memset(seed, 7, sizeof seed);
    assert_int_equal(cpn_seal_with(cpn_identity_pk(s_tenant), seed, S_DETAILS, len, box,
                                   sizeof box, &n),
                     CPN_OK);
    assert_int_equal(cpn_seal_with(cpn_identity_pk(s_tenant), seed, S_DETAILS, len, box2,
                                   sizeof box2, &n2),
                     CPN_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(box, box2, n); /* deterministic from the seed */
    /* and libsodium's own opener takes it: the layout is crypto_box_seal's */
    assert_int_equal(cpn_identity_curve(s_tenant, xpk, xsk), CPN_OK);
    assert_int_equal(crypto_box_seal_open(plain, box, n, xpk, xsk), 0);
    assert_memory_equal(plain, S_DETAILS, len);
}

/* ---- the LEASE field ---- */

static cpn_lease_t s_lease(void)
{
    static const uint8_t claim[] = {1, 2, 3};
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim.ptr = claim;
    l.claim.len = sizeof claim;
    snprintf(l.lease_id, sizeof l.lease_id, "LRuywK9v14eKsV4z1");
    snprintf(l.package, sizeof l.package, "h100x8");
    l.units = 1;
    l.price = 210000;
    l.start_ms = 1700000000000ull;
    l.end_ms = l.start_ms + 3600000;
    snprintf(l.state, sizeof l.state, "active");
    return l;
}

/* Decode a LEASE body signed into a frame; *out points into the frame, which the caller
 * frees (*frame_p) once done with *out. */
static int s_decode_lease(const uint8_t *body, size_t len, cpn_lease_t *out, uint8_t **frame_p)
{
    size_t flen = 0;
    cpn_env_t env;
    *frame_p = NULL;
    int r = cpn_env_seal(s_other, CPN_MSG_LEASE, 1, 1, body, len, frame_p, &flen);
    if (r == CPN_OK && (r = cpn_env_open(*frame_p, flen, NULL, &env)) == CPN_OK)
        r = cpn_lease_decode(&env, NULL, out);
    return r;
}

static void test_lease_access_field(void **state)
{
    (void)state;
    uint8_t box[CPN_ACCESS_BOX_MAX];
    uint8_t *plain_enc = NULL, *enc = NULL;
    size_t plain_len = 0, len = 0, tl = 0;
    char text[CPN_ACCESS_MAX + 1];
    cpn_lease_t l = s_lease(), back;

    /* no driver: the field is absent, the bytes are those of a LEASE without it */
    assert_int_equal(cpn_lease_seal_access(&l, cpn_identity_pk(s_tenant), NULL, 0, box), CPN_OK);
    assert_int_equal(l.access.len, 0);
    assert_int_equal(cpn_msg_encode(CPN_MSG_LEASE, &l, &plain_enc, &plain_len), CPN_OK);
    assert_null(memmem(plain_enc, plain_len, "access", 6));
    assert_int_equal(plain_enc[0], 0x89); /* the nine fields of a LEASE before `access` */

    /* sealed details: the field is there, decodes to the same box, opens for the tenant */
    assert_int_equal(cpn_lease_seal_access(&l, cpn_identity_pk(s_tenant), S_DETAILS,
                                           strlen(S_DETAILS), box),
                     CPN_OK);
    assert_ptr_equal(l.access.ptr, box);
    assert_int_equal(cpn_msg_encode(CPN_MSG_LEASE, &l, &enc, &len), CPN_OK);
    assert_int_equal(enc[0], 0x8a);
    assert_int_equal(len, plain_len + 7 + 2 + l.access.len); /* fixstr "access", bin 8 */
    uint8_t *frame = NULL;
    assert_int_equal(s_decode_lease(enc, len, &back, &frame), CPN_OK);
    assert_int_equal(back.access.len, l.access.len);
    assert_memory_equal(back.access.ptr, box, l.access.len);
    assert_int_equal(cpn_seal_open(s_tenant, back.access.ptr, back.access.len, text, sizeof text,
                                   &tl),
                     CPN_OK);
    assert_string_equal(text, S_DETAILS);
    free(frame);
    free(enc);
    free(plain_enc);

    /* a driver's garbage is refused with a code, the lease left without the field */
    assert_int_equal(cpn_lease_seal_access(&l, cpn_identity_pk(s_tenant), "oops", 4, box),
                     CPN_E_SCHEMA);
    assert_int_equal(l.access.len, 0);

    /* bounds: the encoder refuses what the decoder would */
    l.access.ptr = box;
    l.access.len = CPN_ACCESS_BOX_MIN - 1;
    assert_int_equal(cpn_msg_encode(CPN_MSG_LEASE, &l, &enc, &len), CPN_E_INVAL);
}

/* LEASE bodies built by hand: an empty, a short and an oversized `access` are schema. */
static void test_lease_access_bounds_refused(void **state)
{
    (void)state;
    static uint8_t junk[CPN_ACCESS_BOX_MAX + 1];
    const size_t sizes[] = {0, 1, CPN_ACCESS_BOX_MIN - 1, CPN_ACCESS_BOX_MIN,
                            CPN_ACCESS_BOX_MAX, CPN_ACCESS_BOX_MAX + 1};
    const int want[] = {CPN_E_SCHEMA, CPN_E_SCHEMA, CPN_E_SCHEMA, CPN_OK, CPN_OK, CPN_E_SCHEMA};
    cpn_lease_t l = s_lease(), back;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *enc = NULL;
        size_t len = 0;
        assert_int_equal(cpn_msg_encode(CPN_MSG_LEASE, &l, &enc, &len), CPN_OK);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        /* the same map with one more entry: bump the fixmap count, append the pair */
        enc[0]++;
        msgpack_sbuffer_write(&sb, (const char *)enc, len);
        mp_pack_str(&pk, "access");
        mp_pack_bin(&pk, junk, sizes[i]);
        uint8_t *frame = NULL;
        assert_int_equal(s_decode_lease((const uint8_t *)sb.data, sb.size, &back, &frame),
                         want[i]);
        free(frame);
        msgpack_sbuffer_destroy(&sb);
        free(enc);
    }
}

/* ---- hints ---- */

static void test_hints_canonical(void **state)
{
    (void)state;
    cpn_hints_t a, b;
    const char *k, *v;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(cpn_hints_set(&a, "ssh_key", "ssh-ed25519 AAAA acme@laptop"), CPN_OK);
    assert_int_equal(cpn_hints_set(&a, "user", "acme"), CPN_OK);
    assert_int_equal(cpn_hints_set(&a, "group", "x"), CPN_OK);
    /* other order, a replaced value: the same bytes */
    assert_int_equal(cpn_hints_set(&b, "user", "someone-else-entirely"), CPN_OK);
    assert_int_equal(cpn_hints_set(&b, "group", "x"), CPN_OK);
    assert_int_equal(cpn_hints_set(&b, "ssh_key", "ssh-ed25519 AAAA acme@laptop"), CPN_OK);
    assert_int_equal(cpn_hints_set(&b, "user", "acme"), CPN_OK);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(a.n, 3);
    assert_true(cpn_hints_at(&a, 0, &k, &v));
    assert_string_equal(k, "group");
    assert_true(cpn_hints_at(&a, 2, &k, &v));
    assert_string_equal(k, "user");
    assert_string_equal(v, "acme");
    assert_false(cpn_hints_at(&a, 3, &k, &v));
    assert_string_equal(cpn_hints_get(&a, "ssh_key"), "ssh-ed25519 AAAA acme@laptop");
    assert_null(cpn_hints_get(&a, "nope"));
    /* bad keys and values, too many, too long: refused, nothing changed */
    cpn_hints_t before = a;
    assert_int_equal(cpn_hints_set(&a, "Upper", "x"), CPN_E_INVAL);
    assert_int_equal(cpn_hints_set(&a, "", "x"), CPN_E_INVAL);
    assert_int_equal(cpn_hints_set(&a, "k", ""), CPN_E_INVAL);
    assert_int_equal(cpn_hints_set(&a, "k", "line\nbreak"), CPN_E_INVAL);
    assert_int_equal(cpn_hints_set(&a, "k", "\xff"), CPN_E_INVAL);
    assert_int_equal(cpn_hints_set(&a, "a_key_of_thirty_two_bytes_xxxxxx", "x"), CPN_E_INVAL);
    assert_memory_equal(&a, &before, sizeof a);
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(cpn_hints_set(&a, key, "v"), CPN_OK);
    }
    assert_int_equal(cpn_hints_set(&a, "k9", "v"), CPN_E_TOO_BIG);
    char long_value[CPN_HINTS_BYTES];
    memset(long_value, 'x', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    memset(&b, 0, sizeof b);
    assert_int_equal(cpn_hints_set(&b, "k", long_value), CPN_E_TOO_BIG);
    long_value[CPN_HINTS_BYTES - 3] = '\0'; /* "k\0" + value + "\0" = exactly the bytes */
    assert_int_equal(cpn_hints_set(&b, "k", long_value), CPN_OK);
    assert_int_equal(b.used, CPN_HINTS_BYTES);
    assert_int_equal(cpn_hints_set(&b, "j", "v"), CPN_E_TOO_BIG);
}

static cpn_request_t s_request(void)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "job-1");
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 8;
    return r;
}

/* Decode a REQUEST body (msgpack bytes) signed by the tenant. */
static int s_decode_request(const uint8_t *body, size_t len, cpn_request_t *out)
{
    uint8_t *frame = NULL;
    size_t flen = 0;
    cpn_env_t env;
    int r = cpn_env_seal(s_tenant, CPN_MSG_REQUEST, 1, 1, body, len, &frame, &flen);
    if (r == CPN_OK && (r = cpn_env_open(frame, flen, NULL, &env)) == CPN_OK)
        r = cpn_request_decode(&env, NULL, out);
    free(frame);
    return r;
}

static void test_request_access_round_trip_and_terms(void **state)
{
    (void)state;
    cpn_request_t r = s_request(), back, other;
    uint8_t *enc = NULL, *plain = NULL;
    size_t len = 0, plain_len = 0;
    assert_int_equal(cpn_msg_encode(CPN_MSG_REQUEST, &r, &plain, &plain_len), CPN_OK);
    assert_null(memmem(plain, plain_len, "access", 6)); /* no hints: no key */
    assert_int_equal(cpn_hints_set(&r.access, "ssh_key", "ssh-ed25519 AAAAC3 acme"), CPN_OK);
    assert_int_equal(cpn_msg_encode(CPN_MSG_REQUEST, &r, &enc, &len), CPN_OK);
    assert_int_equal(s_decode_request(enc, len, &back), CPN_OK);
    assert_string_equal(cpn_hints_get(&back.access, "ssh_key"), "ssh-ed25519 AAAAC3 acme");
    assert_true(cpn_chain_same_terms(&r, &back));
    /* the hints are terms: other hints, or none, under the same id are not the same request */
    other = r;
    assert_int_equal(cpn_hints_set(&other.access, "ssh_key", "ssh-ed25519 BBBB acme"), CPN_OK);
    assert_false(cpn_chain_same_terms(&r, &other));
    assert_int_equal(s_decode_request(plain, plain_len, &other), CPN_OK);
    assert_false(cpn_chain_same_terms(&r, &other));
    free(enc);
    free(plain);
}

/* A REQUEST body with an `access` value built by `fill`. */
typedef void (*s_fill_fn)(msgpack_packer *pk);

static int s_request_with(s_fill_fn fill)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    cpn_request_t out;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_kstr(&pk, "id", "hints");
    mp_pack_ku64(&pk, "units", 1);
    mp_pack_ku64(&pk, "duration", 60);
    mp_pack_ku64(&pk, "cores", 1);
    mp_pack_str(&pk, "access");
    fill(&pk);
    int r = s_decode_request((const uint8_t *)sb.data, sb.size, &out);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static void s_fill_ok_unsorted(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mp_pack_kstr(pk, "user", "acme");
    mp_pack_kstr(pk, "ssh_key", "ssh-ed25519 AAAA");
}
static void s_fill_empty(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void s_fill_dup(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mp_pack_kstr(pk, "user", "a");
    mp_pack_kstr(pk, "user", "b");
}
static void s_fill_bad_key(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mp_pack_kstr(pk, "User", "a");
}
static void s_fill_control(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mp_pack_kstr(pk, "user", "a\tb");
}
static void s_fill_not_str(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mp_pack_ku64(pk, "user", 7);
}
static void s_fill_empty_value(msgpack_packer *pk) /* an empty str: a NULL pointer (fuzz) */
{
    msgpack_pack_map(pk, 1);
    mp_pack_kstr(pk, "user", "");
}
static void s_fill_not_map(msgpack_packer *pk) { mp_pack_str(pk, "ssh-ed25519 AAAA"); }
static void s_fill_nine(msgpack_packer *pk)
{
    msgpack_pack_map(pk, CPN_HINTS_MAX + 1);
    for (int i = 0; i < CPN_HINTS_MAX + 1; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        mp_pack_kstr(pk, k, "v");
    }
}
static void s_fill_too_many_bytes(msgpack_packer *pk)
{
    static char v[1100];
    memset(v, 'x', sizeof v - 1);
    msgpack_pack_map(pk, 2);
    mp_pack_kstr(pk, "a", v);
    mp_pack_kstr(pk, "b", v);
}

static void test_request_access_strict(void **state)
{
    (void)state;
    assert_int_equal(s_request_with(s_fill_ok_unsorted), CPN_OK);
    s_fill_fn bad[] = {s_fill_empty, s_fill_dup, s_fill_bad_key, s_fill_control,
                       s_fill_not_str, s_fill_not_map, s_fill_nine, s_fill_too_many_bytes,
                       s_fill_empty_value};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(s_request_with(bad[i]), CPN_E_SCHEMA);
}

/* ---- the JSON check ---- */

static void test_json_object_check(void **state)
{
    (void)state;
    const char *good[] = {"{}", " {\"a\" : [1, -2.5e3, true, false, null, \"\\u00e9\\n\"]}\n",
                          "{\"a\":{\"b\":{\"c\":0}}}", "{\"\xc3\xa9\":\"\xe2\x82\xac\"}"};
    const char *bad[] = {"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1 \"b\":2}", "{a:1}",
                         "{\"a\":-}", "{\"a\":1.}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
                         "{\"a\":[1,]}", "{\"a\":nul}", "{} x", "[{}]", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(cpn_json_object_check(good[i], strlen(good[i]), 8), CPN_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cpn_json_object_check(bad[i], strlen(bad[i]), 8), CPN_E_SCHEMA);
    /* depth: the object is 1, each level one more; a NUL inside is refused */
    assert_int_equal(cpn_json_object_check("{\"a\":[[1]]}", 11, 3), CPN_OK);
    assert_int_equal(cpn_json_object_check("{\"a\":[[1]]}", 11, 2), CPN_E_SCHEMA);
    assert_int_equal(cpn_json_object_check("{\"a\":\"\0\"}", 9, 8), CPN_E_SCHEMA);
    char deep[4000];
    size_t n = 0;
    deep[n++] = '{';
    deep[n++] = '"';
    deep[n++] = 'a';
    deep[n++] = '"';
    deep[n++] = ':';
    for (int i = 0; i < 1500; i++)
        deep[n++] = '[';
    assert_int_equal(cpn_json_object_check(deep, n, CPN_ACCESS_DEPTH), CPN_E_SCHEMA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_opens_with_the_tenant_key_only),
        cmocka_unit_test(test_seal_limits_and_content),
        cmocka_unit_test(test_seal_with_seed_is_a_sealed_box),
        cmocka_unit_test(test_lease_access_field),
        cmocka_unit_test(test_lease_access_bounds_refused),
        cmocka_unit_test(test_hints_canonical),
        cmocka_unit_test(test_request_access_round_trip_and_terms),
        cmocka_unit_test(test_request_access_strict),
        cmocka_unit_test(test_json_object_check),
    };
    return cmocka_run_group_tests_name("seal", tests, s_setup, s_teardown);
}
