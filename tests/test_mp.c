/* test_mp.c - the bounded msgpack validator, table-driven maps, JSON output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mp.h"

#define V(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static int s_val(const uint8_t *p, size_t n)
{
    return mp_validate(p, n, &cpn_limits_default);
}

static void test_every_format_accepted(void **state)
{
    (void)state;
    assert_int_equal(s_val(V(0x00)), CPN_OK);                   /* positive fixint */
    assert_int_equal(s_val(V(0x7f)), CPN_OK);
    assert_int_equal(s_val(V(0xe0)), CPN_OK);                   /* negative fixint */
    assert_int_equal(s_val(V(0xc0)), CPN_OK);                   /* nil */
    assert_int_equal(s_val(V(0xc2)), CPN_OK);                   /* false */
    assert_int_equal(s_val(V(0xc3)), CPN_OK);                   /* true */
    assert_int_equal(s_val(V(0xc4, 0x01, 0xaa)), CPN_OK);       /* bin 8 */
    assert_int_equal(s_val(V(0xc5, 0x00, 0x01, 0xaa)), CPN_OK); /* bin 16 */
    assert_int_equal(s_val(V(0xc6, 0, 0, 0, 1, 0xaa)), CPN_OK); /* bin 32 */
    assert_int_equal(s_val(V(0xca, 0, 0, 0, 0)), CPN_OK);       /* float 32 */
    assert_int_equal(s_val(V(0xcb, 0, 0, 0, 0, 0, 0, 0, 0)), CPN_OK);
    assert_int_equal(s_val(V(0xcc, 1)), CPN_OK);
    assert_int_equal(s_val(V(0xcd, 1, 2)), CPN_OK);
    assert_int_equal(s_val(V(0xce, 1, 2, 3, 4)), CPN_OK);
    assert_int_equal(s_val(V(0xcf, 1, 2, 3, 4, 5, 6, 7, 8)), CPN_OK);
    assert_int_equal(s_val(V(0xd0, 1)), CPN_OK);
    assert_int_equal(s_val(V(0xd1, 1, 2)), CPN_OK);
    assert_int_equal(s_val(V(0xd2, 1, 2, 3, 4)), CPN_OK);
    assert_int_equal(s_val(V(0xd3, 1, 2, 3, 4, 5, 6, 7, 8)), CPN_OK);
    assert_int_equal(s_val(V(0xa1, 'x')), CPN_OK);               /* fixstr */
    assert_int_equal(s_val(V(0xd9, 1, 'x')), CPN_OK);            /* str 8 */
    assert_int_equal(s_val(V(0xda, 0, 1, 'x')), CPN_OK);         /* str 16 */
    assert_int_equal(s_val(V(0xdb, 0, 0, 0, 1, 'x')), CPN_OK);   /* str 32 */
    assert_int_equal(s_val(V(0x90)), CPN_OK);                    /* empty fixarray */
    assert_int_equal(s_val(V(0x92, 1, 2)), CPN_OK);
    assert_int_equal(s_val(V(0xdc, 0, 2, 1, 2)), CPN_OK);        /* array 16 */
    assert_int_equal(s_val(V(0xdd, 0, 0, 0, 2, 1, 2)), CPN_OK);  /* array 32 */
    assert_int_equal(s_val(V(0x80)), CPN_OK);                    /* empty fixmap */
    assert_int_equal(s_val(V(0x81, 0xa1, 'k', 1)), CPN_OK);
    assert_int_equal(s_val(V(0xde, 0, 1, 0xa1, 'k', 1)), CPN_OK);
    assert_int_equal(s_val(V(0xdf, 0, 0, 0, 1, 0xa1, 'k', 1)), CPN_OK);
    /* nested */
    assert_int_equal(s_val(V(0x82, 0xa1, 'a', 0x92, 1, 0x81, 2, 3, 0xa1, 'b', 0x90)), CPN_OK);
}

static void test_refusals(void **state)
{
    (void)state;
    assert_int_equal(s_val(NULL, 0), CPN_E_MSGPACK);
    assert_int_equal(s_val(V(0xc1)), CPN_E_MSGPACK);                   /* never used */
    assert_int_equal(s_val(V(0xd4, 1, 2)), CPN_E_MSGPACK);             /* fixext 1 */
    assert_int_equal(s_val(V(0xc7, 1, 1, 2)), CPN_E_MSGPACK);          /* ext 8 */
    assert_int_equal(s_val(V(0xd6, 0xff, 0, 0, 0, 0)), CPN_E_MSGPACK); /* timestamp */
    assert_int_equal(s_val(V(0xcd, 1)), CPN_E_MSGPACK);                /* short uint16 */
    assert_int_equal(s_val(V(0xc5, 0)), CPN_E_MSGPACK);                /* short length */
    assert_int_equal(s_val(V(0xa2, 'x')), CPN_E_COUNT);                /* str past the end */
    assert_int_equal(s_val(V(0x92, 1)), CPN_E_COUNT);                  /* missing element */
    assert_int_equal(s_val(V(0x81, 1)), CPN_E_COUNT);                  /* missing value */
    assert_int_equal(s_val(V(0x91, 0x91)), CPN_E_COUNT);
    assert_int_equal(s_val(V(0x01, 0x02)), CPN_E_TRAILING);
    assert_int_equal(s_val(V(0x91, 1, 2)), CPN_E_TRAILING);
    /* declared counts that cannot fit in the bytes left, before anything descends */
    assert_int_equal(s_val(V(0xdd, 0x01, 0, 0, 0)), CPN_E_COUNT);
    assert_int_equal(s_val(V(0xdf, 0xff, 0xff, 0xff, 0xff)), CPN_E_COUNT);
    assert_int_equal(s_val(V(0xdb, 0xff, 0xff, 0xff, 0xff)), CPN_E_COUNT);
    /* the sum over open containers counts too: [[x, x, x], ...] in too few bytes */
    assert_int_equal(s_val(V(0x93, 0x93, 1, 1, 1)), CPN_E_COUNT);
}

static void test_limits(void **state)
{
    (void)state;
    cpn_limits_t lim = cpn_limits_default;
    uint8_t buf[64];

    lim.max_container = 2;
    assert_int_equal(mp_validate(V(0x92, 1, 2), &lim), CPN_OK);
    assert_int_equal(mp_validate(V(0x93, 1, 2, 3), &lim), CPN_E_COUNT);
    assert_int_equal(mp_validate(V(0x82, 1, 1, 2, 2), &lim), CPN_OK);
    assert_int_equal(mp_validate(V(0x83, 1, 1, 2, 2, 3, 3), &lim), CPN_E_COUNT);

    lim = cpn_limits_default;
    lim.max_str = 3;
    assert_int_equal(mp_validate(V(0xa3, 'a', 'b', 'c'), &lim), CPN_OK);
    assert_int_equal(mp_validate(V(0xa4, 'a', 'b', 'c', 'd'), &lim), CPN_E_COUNT);
    assert_int_equal(mp_validate(V(0xc4, 4, 1, 2, 3, 4), &lim), CPN_E_COUNT);

    lim = cpn_limits_default;
    lim.max_total = 3;
    assert_int_equal(mp_validate(V(0x92, 1, 2), &lim), CPN_OK);
    assert_int_equal(mp_validate(V(0x93, 1, 2, 3), &lim), CPN_E_COUNT);

    lim = cpn_limits_default;
    lim.max_frame = 2;
    assert_int_equal(mp_validate(V(0x91, 1), &lim), CPN_OK);
    assert_int_equal(mp_validate(V(0x92, 1, 2), &lim), CPN_E_FRAME_SIZE);

    /* depth: 16 nested arrays pass, 17 do not (also when the innermost is empty) */
    lim = cpn_limits_default;
    memset(buf, 0x91, sizeof buf);
    buf[15] = 0x90;
    assert_int_equal(mp_validate(buf, 16, &lim), CPN_OK);
    buf[15] = 0x91;
    buf[16] = 0x90;
    assert_int_equal(mp_validate(buf, 17, &lim), CPN_E_DEPTH);
    buf[16] = 0x01; /* 16 arrays around a scalar: fine */
    assert_int_equal(mp_validate(buf, 17, &lim), CPN_OK);
    buf[16] = 0x91;
    buf[17] = 0x01;
    assert_int_equal(mp_validate(buf, 18, &lim), CPN_E_DEPTH);
}

static void test_deep_and_wide_inputs(void **state)
{
    (void)state;
    /* A megabyte of nesting: refused at the depth limit, without recursion. */
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 0x91, n);
    cpn_limits_t lim = cpn_limits_default;
    lim.max_frame = n;
    assert_int_equal(mp_validate(buf, n, &lim), CPN_E_DEPTH);
    lim.max_depth = n; /* even with no depth limit to speak of: bytes run out, no crash */
    lim.max_total = n;
    assert_int_equal(mp_validate(buf, n, &lim), CPN_E_COUNT);
    buf[n - 1] = 0x90;
    assert_int_equal(mp_validate(buf, n, &lim), CPN_OK);
    free(buf);
}

static void test_parse_points_into_buffer(void **state)
{
    (void)state;
    const uint8_t buf[] = {0x82, 0xa1, 'k', 0xc4, 2, 0xaa, 0xbb, 0xa1, 'n', 0xcd, 1, 0};
    msgpack_zone z;
    msgpack_object o;
    assert_true(msgpack_zone_init(&z, 256));
    assert_int_equal(mp_parse(buf, sizeof buf, NULL, &z, &o), CPN_OK);
    assert_int_equal(o.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(o.via.map.size, 2);
    assert_ptr_equal(o.via.map.ptr[0].val.via.bin.ptr, (const char *)buf + 5);
    assert_int_equal(o.via.map.ptr[1].val.via.u64, 256);
    assert_int_equal(mp_parse(buf, sizeof buf - 1, NULL, &z, &o), CPN_E_MSGPACK);
    msgpack_zone_destroy(&z);
}

typedef struct {
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    bool flag;
    char name[8];
    mp_bytes_t blob;
    uint8_t key[32];
    const msgpack_object *any;
} s_rec_t;

static const mp_field_t s_rec_fields[] = {
    {"u8", MPF_U8, offsetof(s_rec_t, u8), 0, true},
    {"u32", MPF_U32, offsetof(s_rec_t, u32), 0, true},
    {"u64", MPF_U64, offsetof(s_rec_t, u64), 0, true},
    {"i32", MPF_I32, offsetof(s_rec_t, i32), 0, true},
    {"flag", MPF_BOOL, offsetof(s_rec_t, flag), 0, false},
    {"name", MPF_STR, offsetof(s_rec_t, name), sizeof(((s_rec_t *)0)->name), true},
    {"blob", MPF_BIN, offsetof(s_rec_t, blob), 0, false},
    {"key", MPF_KEY, offsetof(s_rec_t, key), 0, false},
    {"any", MPF_OBJ, offsetof(s_rec_t, any), 0, false},
};
#define N_REC (sizeof s_rec_fields / sizeof s_rec_fields[0])

/* Encode `src` (plus `extra` hand-packed entries), then decode into `dst`. */
static int s_round(const s_rec_t *src, s_rec_t *dst, msgpack_sbuffer *sb, msgpack_zone *z,
                   const char **bad)
{
    msgpack_packer pk;
    msgpack_object o;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int r = mp_encode_map(&pk, s_rec_fields, N_REC, src, 0);
    if (r != CPN_OK)
        return r;
    if ((r = mp_parse((const uint8_t *)sb->data, sb->size, NULL, z, &o)) != CPN_OK)
        return r;
    memset(dst, 0, sizeof *dst);
    return mp_decode_map(&o, s_rec_fields, N_REC, dst, bad);
}

static void test_map_round_trip(void **state)
{
    (void)state;
    s_rec_t a, b;
    msgpack_sbuffer sb;
    msgpack_zone z;
    const uint8_t blob[3] = {1, 2, 3};
    assert_true(msgpack_zone_init(&z, 1024));
    memset(&a, 0, sizeof a);
    a.u8 = 200, a.u32 = UINT32_MAX, a.u64 = UINT64_MAX, a.i32 = INT32_MIN, a.flag = true;
    snprintf(a.name, sizeof a.name, "h\xc3\xa9llo"); /* 6 bytes of UTF-8 */
    a.blob.ptr = blob, a.blob.len = 3;
    memset(a.key, 7, 32);
    assert_int_equal(s_round(&a, &b, &sb, &z, NULL), CPN_OK);
    assert_int_equal(b.u8, 200);
    assert_int_equal(b.u32, UINT32_MAX);
    assert_true(b.u64 == UINT64_MAX);
    assert_int_equal(b.i32, INT32_MIN);
    assert_true(b.flag);
    assert_string_equal(b.name, a.name);
    assert_int_equal(b.blob.len, 3);
    assert_memory_equal(b.blob.ptr, blob, 3);
    assert_memory_equal(b.key, a.key, 32);
    msgpack_sbuffer_destroy(&sb);

    /* Optional zero fields are left out, required ones stay. */
    memset(&a, 0, sizeof a);
    assert_int_equal(s_round(&a, &b, &sb, &z, NULL), CPN_OK);
    assert_int_equal((uint8_t)sb.data[0], 0x85); /* u8 u32 u64 i32 name */
    msgpack_sbuffer_destroy(&sb);

    /* A string that does not fit or is not UTF-8 is not encoded. */
    memcpy(a.name, "12345678", 8); /* no NUL */
    assert_int_equal(s_round(&a, &b, &sb, &z, NULL), CPN_E_INVAL);
    msgpack_sbuffer_destroy(&sb);
    snprintf(a.name, sizeof a.name, "\xff");
    assert_int_equal(s_round(&a, &b, &sb, &z, NULL), CPN_E_INVAL);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone_destroy(&z);
}

/* Decode a hand-made map body; returns the code and the bad key. */
static int s_decode_bytes(const uint8_t *p, size_t n, const char **bad)
{
    msgpack_zone z;
    msgpack_object o;
    s_rec_t rec;
    int r;
    if (!msgpack_zone_init(&z, 1024))
        return CPN_E_NOMEM;
    r = mp_parse(p, n, NULL, &z, &o);
    if (r == CPN_OK)
        r = mp_decode_map(&o, s_rec_fields, N_REC, &rec, bad);
    msgpack_zone_destroy(&z);
    return r;
}

#define BASE 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 1, 0xa3, 'u', '6', '4', 1, \
             0xa3, 'i', '3', '2', 0xff, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x'

static void test_map_refusals(void **state)
{
    (void)state;
    const char *bad = NULL;
    assert_int_equal(s_decode_bytes(V(0x85, BASE), &bad), CPN_OK);
    assert_null(bad);
    /* unknown key, named */
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 0xa3, 'z', 'z', 'z', 1), &bad), CPN_E_SCHEMA);
    assert_string_equal(bad, "zzz");
    /* duplicated key */
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 0xa2, 'u', '8', 1), &bad), CPN_E_SCHEMA);
    assert_string_equal(bad, "u8");
    /* missing required key */
    assert_int_equal(s_decode_bytes(V(0x84, 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 1, 0xa3, 'u',
                                      '6', '4', 1, 0xa3, 'i', '3', '2', 1),
                                    &bad),
                     CPN_E_SCHEMA);
    assert_string_equal(bad, "name");
    /* wrong types and ranges */
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 0xa4, 'f', 'l', 'a', 'g', 1), &bad),
                     CPN_E_SCHEMA);
    assert_string_equal(bad, "flag");
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 0xa3, 'k', 'e', 'y', 0xc4, 1, 0), &bad),
                     CPN_E_SCHEMA);
    assert_string_equal(bad, "key");
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 0xa4, 'b', 'l', 'o', 'b', 0xa1, 'x'), &bad),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_bytes(V(0x85, 0xa2, 'u', '8', 0xcd, 1, 0, 0xa3, 'u', '3', '2', 1,
                                      0xa3, 'u', '6', '4', 1, 0xa3, 'i', '3', '2', 1, 0xa4, 'n',
                                      'a', 'm', 'e', 0xa1, 'x'),
                                    &bad),
                     CPN_E_SCHEMA);
    assert_string_equal(bad, "u8");
    assert_int_equal(s_decode_bytes(V(0x85, 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 0xff, 0xa3, 'u',
                                      '6', '4', 1, 0xa3, 'i', '3', '2', 1, 0xa4, 'n', 'a', 'm',
                                      'e', 0xa1, 'x'),
                                    &bad),
                     CPN_E_SCHEMA); /* negative into unsigned */
    assert_string_equal(bad, "u32");
    /* strings: too long for the field, NUL inside, not UTF-8 */
    assert_int_equal(s_decode_bytes(V(0x85, 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 1, 0xa3, 'u',
                                      '6', '4', 1, 0xa3, 'i', '3', '2', 1, 0xa4, 'n', 'a', 'm',
                                      'e', 0xa8, '1', '2', '3', '4', '5', '6', '7', '8'),
                                    &bad),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_bytes(V(0x85, 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 1, 0xa3, 'u',
                                      '6', '4', 1, 0xa3, 'i', '3', '2', 1, 0xa4, 'n', 'a', 'm',
                                      'e', 0xa3, 'a', 0, 'b'),
                                    &bad),
                     CPN_E_SCHEMA);
    assert_int_equal(s_decode_bytes(V(0x85, 0xa2, 'u', '8', 1, 0xa3, 'u', '3', '2', 1, 0xa3, 'u',
                                      '6', '4', 1, 0xa3, 'i', '3', '2', 1, 0xa4, 'n', 'a', 'm',
                                      'e', 0xa2, 0xc0, 0x80),
                                    &bad),
                     CPN_E_SCHEMA); /* overlong encoding */
    /* non-string key, not a map */
    assert_int_equal(s_decode_bytes(V(0x86, BASE, 1, 1), &bad), CPN_E_SCHEMA);
    assert_int_equal(s_decode_bytes(V(0x91, 1), &bad), CPN_E_SCHEMA);
}

static char *s_json(const uint8_t *p, size_t n, int indent)
{
    msgpack_zone z;
    msgpack_object o;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_true(msgpack_zone_init(&z, 1024));
    assert_int_equal(mp_parse(p, n, NULL, &z, &o), CPN_OK);
    assert_int_equal(mp_to_json(&o, f, indent), CPN_OK);
    fclose(f);
    msgpack_zone_destroy(&z);
    return text;
}

static void test_json(void **state)
{
    (void)state;
    char *s = s_json(V(0x87, 0xa1, 'a', 0x93, 0xc0, 0xc3, 0xff,         /* [null,true,-1] */
                       0xa1, 'b', 0xa4, '"', '\\', '\n', 0x01,           /* escapes */
                       0xa1, 'c', 0xc4, 3, 0xfb, 0xff, 0x00,             /* bin */
                       0x05, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* int key */
                       0xa1, 'e', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,   /* 1.5 */
                       0xa1, 'f', 0xa2, 0xc3, 0xa9,                      /* UTF-8 kept */
                       0xa1, 'g', 0xa1, 0xff),                           /* invalid: U+FFFD */
                     0);
    assert_string_equal(s, "{\"a\":[null,true,-1],\"b\":\"\\\"\\\\\\n\\u0001\",\"c\":\"b64:-_8A\","
                           "\"5\":18446744073709551615,\"e\":1.5,\"f\":\"\xc3\xa9\","
                           "\"g\":\"\\ufffd\"}");
    free(s);
    s = s_json(V(0x81, 0xa1, 'k', 0x92, 1, 0x80), 2);
    assert_string_equal(s, "{\n  \"k\": [\n    1,\n    {}\n  ]\n}");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_format_accepted),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_deep_and_wide_inputs),
        cmocka_unit_test(test_parse_points_into_buffer),
        cmocka_unit_test(test_map_round_trip),
        cmocka_unit_test(test_map_refusals),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
