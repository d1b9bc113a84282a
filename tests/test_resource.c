/* test_resource.c - packages and requests: validation, totals, the fit test per constraint,
 * msgpack round trips and strict decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mp.h"
#include "resource.h"

#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static void s_set(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    assert_true(n < cap);
    memcpy(dst, src, n + 1);
}
#define SET(field, text) s_set((field), sizeof(field), (text))

/* The 8 x H100 package of the design brief. */
static cpn_package_t s_h100(void)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    SET(p.id, "h100x8-nvme");
    p.cores = 96;
    p.mem_bytes = 1 * TiB;
    SET(p.accel.vendor, "nvidia");
    SET(p.accel.model, "H100-80GB");
    p.accel.count = 8;
    p.accel.mem_bytes = 80 * GiB;
    p.accel.bf16_tflops = 989;
    p.accel.mem_bw_gbs = 3350;
    SET(p.storage_class, "nvme");
    p.storage_bytes = 15000000000000ULL;
    p.storage_iops = 1000000;
    p.fabric_bps = 400000000000ULL;
    p.egress_bps = 25000000000ULL;
    SET(p.region, "cn-east");
    p.price = 210000;
    p.total = 12;
    p.free = 12;
    return p;
}

static cpn_request_t s_req(void)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    SET(r.id, "job-1");
    r.units = 1;
    r.duration_s = 4 * 3600;
    SET(r.accel_model, "H100-80GB");
    r.accel_count = 8;
    return r;
}

static void test_validate_package(void **state)
{
    (void)state;
    const char *why = NULL;
    cpn_package_t p = s_h100();
    assert_int_equal(cpn_package_validate(&p, &why), CPN_OK);
    assert_null(why);

    /* A storage-only package is fine. */
    cpn_package_t s;
    memset(&s, 0, sizeof s);
    SET(s.id, "store");
    SET(s.region, "cn-east");
    SET(s.storage_class, "hdd");
    s.storage_bytes = 100 * TiB;
    s.total = s.free = 3;
    assert_int_equal(cpn_package_validate(&s, NULL), CPN_OK);

    /* Each broken in one way. */
    cpn_package_t b;
#define BAD(stmt)                                                                                  \
    do {                                                                                           \
        b = s_h100();                                                                              \
        stmt;                                                                                      \
        why = NULL;                                                                                \
        assert_int_equal(cpn_package_validate(&b, &why), CPN_E_CONFIG);                            \
        assert_non_null(why);                                                                      \
    } while (0)
    BAD(b.id[0] = '\0');
    BAD(SET(b.id, "has space"));
    BAD(b.id[3] = '\n');
    BAD(memset(b.id, 'a', sizeof b.id)); /* not terminated */
    BAD(b.region[0] = '\0');
    BAD(b.total = 0);
    BAD(b.free = 13);
    BAD(b.accel.model[0] = '\0');
    BAD(b.accel.vendor[0] = '\0');
    BAD(b.accel.mem_bytes = 0);
    BAD(b.accel.bf16_tflops = 0);
    BAD(b.accel.count = 5000);
    BAD((b.accel.count = 0));
    BAD(b.storage_class[0] = '\0');
    BAD(b.storage_bytes = 0);
    BAD((b.storage_bytes = 0, b.storage_class[0] = '\0')); /* iops without storage */
    BAD(b.fabric_bps = UINT64_MAX);
    BAD(b.price = UINT64_MAX);
    BAD(b.mem_bytes = UINT64_MAX);
    BAD((b.cores = 0, memset(&b.accel, 0, sizeof b.accel), b.storage_bytes = 0,
         b.storage_class[0] = '\0', b.storage_iops = 0)); /* nothing to sell */
#undef BAD
    assert_int_equal(cpn_package_validate(NULL, &why), CPN_E_CONFIG);
}

static void test_validate_request(void **state)
{
    (void)state;
    const char *why = NULL;
    cpn_request_t r = s_req();
    assert_int_equal(cpn_request_validate(&r, &why), CPN_OK);

    cpn_request_t b;
#define BAD(stmt)                                                                                  \
    do {                                                                                           \
        b = s_req();                                                                               \
        stmt;                                                                                      \
        why = NULL;                                                                                \
        assert_int_equal(cpn_request_validate(&b, &why), CPN_E_CONFIG);                            \
        assert_non_null(why);                                                                      \
    } while (0)
    BAD(b.id[0] = '\0');
    BAD(b.units = 0);
    BAD(b.duration_s = 0);
    BAD(b.duration_s = 400 * 86400ULL);
    BAD(b.accel_count = 0); /* model without count */
    BAD(b.regions.n = CPN_LIST_MAX + 1);
    BAD((b.regions.n = 1, b.regions.items[0][0] = '\0'));
    BAD((b.prefer_vendors.n = 1, SET(b.prefer_vendors.items[0], "a b")));
    BAD((b.accel_model[0] = '\0', b.accel_count = 0)); /* asks for nothing */
    BAD(b.max_price = UINT64_MAX);
#undef BAD
}

static void test_totals(void **state)
{
    (void)state;
    cpn_package_t p = s_h100();
    assert_int_equal(cpn_package_tflops(&p), 8 * 989);
    assert_int_equal(cpn_package_accel_mem(&p), 640 * GiB);
    p.accel.count = 0;
    assert_int_equal(cpn_package_tflops(&p), 0);
    assert_int_equal(cpn_package_accel_mem(&p), 0);
    p.accel.count = UINT32_MAX;
    p.accel.mem_bytes = UINT64_MAX / 2; /* saturates instead of wrapping */
    assert_int_equal(cpn_package_accel_mem(&p), UINT64_MAX);
}

static void test_fits_each_constraint(void **state)
{
    (void)state;
    cpn_package_t p = s_h100();
    cpn_request_t r = s_req();
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);
    SET(r.accel_model, "h100-80gb"); /* case does not matter */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);

#define FAILS(stmt, want)                                                                          \
    do {                                                                                           \
        r = s_req();                                                                               \
        stmt;                                                                                      \
        assert_int_equal(cpn_package_fits(&p, &r), (want));                                        \
    } while (0)
    FAILS(SET(r.accel_model, "H800-80GB"), CPN_C_ACCEL_MODEL); /* literal: no equivalences */
    FAILS(SET(r.accel_vendor, "huawei"), CPN_C_ACCEL_VENDOR);
    FAILS(r.accel_count = 16, CPN_C_ACCEL_COUNT);
    FAILS(r.min_tflops = 8 * 989 + 1, CPN_C_TFLOPS);
    FAILS(r.min_accel_mem = 640 * GiB + 1, CPN_C_ACCEL_MEM);
    FAILS(r.cores = 97, CPN_C_CORES);
    FAILS(r.mem_bytes = 2 * TiB, CPN_C_MEMORY);
    FAILS(SET(r.storage_class, "hdd"), CPN_C_STORAGE_CLASS);
    FAILS(r.storage_bytes = 16000000000000ULL, CPN_C_STORAGE_SIZE);
    FAILS(r.fabric_bps = 800000000000ULL, CPN_C_FABRIC);
    FAILS(r.egress_bps = 100000000000ULL, CPN_C_EGRESS);
    FAILS((r.regions.n = 1, SET(r.regions.items[0], "eu-west")), CPN_C_REGION);
    FAILS(r.max_price = 209999, CPN_C_PRICE);
    FAILS(r.units = 13, CPN_C_UNITS);
    /* The first failing constraint in enum order is the one reported. */
    FAILS((r.cores = 1000, r.max_price = 1, r.units = 100), CPN_C_CORES);
    FAILS((r.accel_count = 100, SET(r.accel_model, "B200")), CPN_C_ACCEL_MODEL);
    /* Bounds are inclusive. */
    FAILS((r.min_tflops = 8 * 989, r.min_accel_mem = 640 * GiB, r.cores = 96, r.mem_bytes = TiB,
           r.max_price = 210000, r.units = 12),
          CPN_C_OK);
    FAILS((r.regions.n = 2, SET(r.regions.items[0], "eu-west"), SET(r.regions.items[1], "CN-EAST")),
          CPN_C_OK);
    /* Split requests need one free unit, not all of them. */
    FAILS((r.units = 100, r.split = true), CPN_C_OK);
    p.free = 0;
    FAILS((r.units = 1, r.split = true), CPN_C_UNITS);
#undef FAILS
}

static void test_capability_request(void **state)
{
    (void)state;
    /* By capability: 2000 TFLOPS and 256 GiB per unit, any vendor. The Ascend package
     * (8 x 320 TFLOPS, 8 x 64 GiB) qualifies; so does the H100 one, and price decides. */
    cpn_package_t a = s_h100();
    SET(a.id, "ascend910b-x8");
    SET(a.accel.vendor, "huawei");
    SET(a.accel.model, "Ascend-910B");
    a.accel.bf16_tflops = 320;
    a.accel.mem_bytes = 64 * GiB;
    a.accel.mem_bw_gbs = 1600;
    a.price = 90000;
    cpn_request_t r = s_req();
    r.accel_model[0] = '\0';
    r.accel_count = 0;
    r.min_tflops = 2000;
    r.min_accel_mem = 256 * GiB;
    r.max_price = 120000;
    assert_int_equal(cpn_package_fits(&a, &r), CPN_C_OK);
    cpn_package_t h = s_h100();
    assert_int_equal(cpn_package_fits(&h, &r), CPN_C_PRICE);
}

/* Shared accelerators (issue 16): slices only from shared packages, never above the largest
 * free slice, whole units never from shared packages; bounds; the wire round trip. */
static void test_shared(void **state)
{
    (void)state;
    cpn_package_t p = s_h100();
    cpn_request_t r = s_req();
    const char *why = NULL;
    p.accel.share_min = 100;
    p.slice_max = 460;
    p.frag = 120;
    assert_int_equal(cpn_package_validate(&p, &why), CPN_OK);
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE); /* whole units: not sold here */
    r.accel_count = 1;
    r.share = 460;
    assert_int_equal(cpn_request_validate(&r, &why), CPN_OK);
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);
    r.share = 461; /* above the largest free slice */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE);
    r.share = 50; /* below the smallest slice sold */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE);
    cpn_package_t whole = s_h100();
    r.share = 460;
    assert_int_equal(cpn_package_fits(&whole, &r), CPN_C_SHARE); /* not shared */
    /* bounds */
    r.units = 2;
    assert_int_equal(cpn_request_validate(&r, &why), CPN_E_CONFIG);
    r.units = 1;
    r.accel_count = 2; /* a fraction of two devices */
    assert_int_equal(cpn_request_validate(&r, &why), CPN_E_CONFIG);
    r.share = 1000; /* two whole devices of one node: fine */
    assert_int_equal(cpn_request_validate(&r, &why), CPN_OK);
    r.share = 1001;
    assert_int_equal(cpn_request_validate(&r, &why), CPN_E_CONFIG);
    p.accel.share_min = 0; /* a summary without sharing */
    assert_int_equal(cpn_package_validate(&p, &why), CPN_E_CONFIG);
    p.accel.share_min = 100;
    p.total = CPN_SHARE_UNITS_MAX + 1;
    assert_int_equal(cpn_package_validate(&p, &why), CPN_E_CONFIG);
    p.total = 12;
    /* round trips */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj),
                     CPN_OK);
    cpn_package_t back;
    cpn_slice_sum_t back_sum;
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_OK);
    assert_ptr_equal(back.sum, &back_sum); /* a shared package gets room for its lists */
    assert_int_equal(back_sum.n_fit + back_sum.n_grad + back_sum.refused.accel, 0);
    assert_int_equal(cpn_package_unpack(&obj, &back, NULL), CPN_OK); /* none to keep */
    assert_null(back.sum);
    assert_int_equal(back.accel.share_min, 100);
    assert_int_equal(back.slice_max, 460);
    assert_int_equal(back.frag, 120);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_clear(&sb);
    r.accel_count = 1;
    r.share = 460;
    assert_int_equal(cpn_request_pack(&pk, &r), CPN_OK);
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj),
                     CPN_OK);
    cpn_request_t rb;
    assert_int_equal(cpn_request_unpack(&obj, &rb), CPN_OK);
    assert_int_equal(rb.share, 460);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* *bad = *p with a copy of p's lists of its own, to spoil without touching p's. */
static void s_spoil(cpn_package_t *bad, cpn_slice_sum_t *bs, const cpn_package_t *p)
{
    *bad = *p;
    *bs = *p->sum;
    bad->sum = bs;
}

/* The summary's fit points: bounds and order checked, the wire round trip keeps them, a
 * malformed "fit" is refused, a point covers a slice only with its CPU and memory, and a
 * refusal lowers the bound and drops the points that covered the refused slice. */
static void test_fit_points(void **state)
{
    (void)state;
    cpn_package_t p = s_h100();
    const char *why = NULL;
    p.accel.share_min = 50;
    p.slice_max = 1000;
    cpn_slice_sum_t ps = {.n_fit = 3,
                          .fit = {{8000, 96000, 1048576}, /* an empty node */
                                  {1000, 4000, 8192},
                                  {300, 64000, 500000}}};
    p.sum = &ps;
    assert_int_equal(cpn_package_validate(&p, &why), CPN_OK);
    cpn_package_t bad;
    cpn_slice_sum_t bs;
    s_spoil(&bad, &bs, &p), bs.fit[1] = ps.fit[2], bs.fit[2] = ps.fit[1]; /* out of order */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.fit[0].accel = 9000; /* more devices than a unit has */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.fit[1].accel = 1500; /* neither a fraction nor whole devices */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.fit[2].cpu = 96001; /* more CPU than a unit */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.n_fit = CPN_FIT_MAX + 1;
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bad.accel.share_min = 0, bad.slice_max = 0; /* points, no sharing */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj),
                     CPN_OK);
    cpn_package_t back;
    cpn_slice_sum_t back_sum;
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_OK);
    assert_ptr_equal(back.sum, &back_sum);
    assert_int_equal(back_sum.n_fit, 3);
    assert_memory_equal(back_sum.fit, ps.fit, 3 * sizeof ps.fit[0]);
    /* lists with no room for them: refused, *back untouched */
    memset(&back, 0, sizeof back);
    assert_int_equal(cpn_package_unpack(&obj, &back, NULL), CPN_E_INVAL);
    assert_int_equal(back.total, 0);
    /* "fit" as a map entry of the wrong shape: refused */
    msgpack_object *fit = NULL;
    for (uint32_t i = 0; i < obj.via.map.size; i++)
        if (obj.via.map.ptr[i].key.via.str.size == 3 &&
            memcmp(obj.via.map.ptr[i].key.via.str.ptr, "fit", 3) == 0)
            fit = &obj.via.map.ptr[i].val;
    assert_non_null(fit);
    fit->via.array.ptr[1].via.array.size = 2; /* [accel, cpu] */
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    fit->via.array.ptr[1].via.array.size = 3;
    fit->via.array.ptr[1].via.array.ptr[2].type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    fit->via.array.ptr[1].via.array.ptr[2].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    fit->via.array.size = 0; /* empty is written by leaving the key out */
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);

    cpn_request_t r = s_req();
    memset(&r.regions, 0, sizeof r.regions);
    r.accel_count = 1;
    r.share = 500;
    r.cores = 8;
    r.mem_bytes = 16 * GiB;
    assert_true(cpn_package_fit_covers(&p, &r)); /* the empty node */
    r.share = 300, r.cores = 60, r.mem_bytes = 400000ULL << 20;
    assert_true(cpn_package_fit_covers(&p, &r)); /* point 2 */
    r.cores = 97;
    assert_false(cpn_package_fit_covers(&p, &r)); /* no node has that many cores */
    r.cores = 8, r.share = 1000, r.accel_count = 2;
    assert_true(cpn_package_fit_covers(&p, &r));
    cpn_package_slice_refused(&p, &r); /* the empty node is gone */
    assert_int_equal(ps.n_fit, 2);
    assert_false(cpn_package_fit_covers(&p, &r));
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE); /* not offered until the next AD */
    r.cores = 9; /* nor anything larger in every dimension */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE);
    r.cores = 7; /* but a slice with fewer cores may still fit */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);
    r.share = 200, r.accel_count = 1, r.cores = 2, r.mem_bytes = 1 * GiB;
    assert_true(cpn_package_fit_covers(&p, &r)); /* point 1 (a whole device) still covers */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);
    cpn_package_slice_refused(&p, &r);
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_SHARE);
    assert_int_equal(ps.n_fit, 0);
    r.share = 199; /* below the refused share: open */
    assert_int_equal(cpn_package_fits(&p, &r), CPN_C_OK);
    assert_int_equal(p.slice_max, 1000); /* the advertised bound itself is the AD's */
    /* the bound is the broker's note: never on the wire */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj),
                     CPN_OK);
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_OK);
    assert_int_equal(ps.refused.accel, 200); /* held by the package's holder */
    assert_int_equal(back_sum.refused.accel, 0);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* The summary's gradients: bounds and order checked, negative growths survive the wire, a
 * malformed "grad" is refused, and a request finds the gradient of its own size only. */
static void test_grad(void **state)
{
    (void)state;
    cpn_package_t p = s_h100();
    const char *why = NULL;
    p.accel.share_min = 50;
    p.slice_max = 1000;
    cpn_slice_sum_t ps = {.n_grad = 3, .grad = {{250, -480}, {1000, 0}, {8000, 1250}}};
    p.sum = &ps;
    assert_int_equal(cpn_package_validate(&p, &why), CPN_OK);
    cpn_package_t bad;
    cpn_slice_sum_t bs;
    s_spoil(&bad, &bs, &p), bs.grad[1].accel = 250; /* two of one size */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.grad[2].delta = -8001; /* more than the unit's accelerators */
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.grad[2].accel = 9000;
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);
    s_spoil(&bad, &bs, &p), bs.n_grad = CPN_GRAD_MAX + 1;
    assert_int_equal(cpn_package_validate(&bad, &why), CPN_E_CONFIG);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj),
                     CPN_OK);
    cpn_package_t back;
    cpn_slice_sum_t back_sum;
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_OK);
    assert_int_equal(back_sum.n_grad, 3);
    assert_memory_equal(back_sum.grad, ps.grad, 3 * sizeof ps.grad[0]);
    msgpack_object *g = NULL;
    for (uint32_t i = 0; i < obj.via.map.size; i++)
        if (obj.via.map.ptr[i].key.via.str.size == 4 &&
            memcmp(obj.via.map.ptr[i].key.via.str.ptr, "grad", 4) == 0)
            g = &obj.via.map.ptr[i].val;
    assert_non_null(g);
    g->via.array.ptr[0].via.array.ptr[1].type = MSGPACK_OBJECT_STR; /* not an integer */
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    g->via.array.ptr[0].via.array.ptr[1].type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
    g->via.array.ptr[0].via.array.ptr[1].via.i64 = INT64_MIN; /* beyond int32 */
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    g->via.array.ptr[0].via.array.ptr[1].via.i64 = -480;
    g->via.array.ptr[1].via.array.size = 3; /* [accel, delta, ?] */
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_E_SCHEMA);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);

    cpn_request_t r = s_req();
    r.accel_count = 1, r.share = 250;
    int32_t d = 0;
    assert_true(cpn_package_grad(&p, &r, &d));
    assert_int_equal(d, -480);
    r.share = 1000, r.accel_count = 8;
    assert_true(cpn_package_grad(&p, &r, &d));
    assert_int_equal(d, 1250);
    r.share = 300, r.accel_count = 1;
    assert_false(cpn_package_grad(&p, &r, &d)); /* no gradient of that size */
    p.accel.share_min = 0, p.slice_max = 0; /* gradients without sharing */
    assert_int_equal(cpn_package_validate(&p, &why), CPN_E_CONFIG);
}

static void test_constraint_names(void **state)
{
    (void)state;
    static const char *const want[CPN_C__COUNT] = {
        "ok",
        "accelerator.model",
        "accelerator.vendor",
        "accelerator.count",
        "tflops",
        "accelerator.memory",
        "cores",
        "memory",
        "storage.class",
        "storage.size",
        "network.fabric",
        "network.egress",
        "region",
        "price",
        "accelerator.share",
        "units",
    };
    for (int c = 0; c < CPN_C__COUNT; c++)
        assert_string_equal(cpn_constraint_name((cpn_constraint_t)c), want[c]);
    assert_string_equal(cpn_constraint_name(CPN_C__COUNT), "unknown");
    assert_string_equal(cpn_constraint_name((cpn_constraint_t)-1), "unknown");
}

/* Pack with fn into a fresh buffer, parse it back strictly. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_zone zone;
    msgpack_object obj;
} s_packed_t;

static void s_parse(s_packed_t *pk)
{
    msgpack_zone_init(&pk->zone, 1024);
    assert_int_equal(mp_parse((const uint8_t *)pk->sb.data, pk->sb.size, &cpn_limits_default,
                              &pk->zone, &pk->obj),
                     CPN_OK);
}

static void s_packed_free(s_packed_t *pk)
{
    msgpack_zone_destroy(&pk->zone);
    msgpack_sbuffer_destroy(&pk->sb);
}

static void test_package_roundtrip(void **state)
{
    (void)state;
    cpn_package_t variants[2];
    variants[0] = s_h100();
    memset(&variants[1], 0, sizeof variants[1]); /* no accelerators: no "accel" key */
    SET(variants[1].id, "cpu-ssd");
    SET(variants[1].region, "cn-north");
    variants[1].cores = 64;
    variants[1].mem_bytes = 256 * GiB;
    variants[1].total = 40;
    variants[1].free = 0;
    variants[1].price = 0; /* required fields travel even when zero */
    for (size_t i = 0; i < 2; i++) {
        s_packed_t pk;
        msgpack_packer packer;
        msgpack_sbuffer_init(&pk.sb);
        msgpack_packer_init(&packer, &pk.sb, msgpack_sbuffer_write);
        assert_int_equal(cpn_package_pack(&packer, &variants[i]), CPN_OK);
        s_parse(&pk);
        cpn_package_t back;
        memset(&back, 0xa5, sizeof back); /* unpack must set every field */
        cpn_slice_sum_t back_sum;
        assert_int_equal(cpn_package_unpack(&pk.obj, &back, &back_sum), CPN_OK);
        assert_null(back.sum); /* unshared: no summary lists */
        assert_string_equal(back.id, variants[i].id);
        assert_string_equal(back.region, variants[i].region);
        assert_string_equal(back.accel.model, variants[i].accel.model);
        assert_string_equal(back.accel.vendor, variants[i].accel.vendor);
        assert_string_equal(back.storage_class, variants[i].storage_class);
        assert_int_equal(back.cores, variants[i].cores);
        assert_int_equal(back.mem_bytes, variants[i].mem_bytes);
        assert_int_equal(back.accel.count, variants[i].accel.count);
        assert_int_equal(back.accel.mem_bytes, variants[i].accel.mem_bytes);
        assert_int_equal(back.accel.bf16_tflops, variants[i].accel.bf16_tflops);
        assert_int_equal(back.accel.mem_bw_gbs, variants[i].accel.mem_bw_gbs);
        assert_int_equal(back.storage_bytes, variants[i].storage_bytes);
        assert_int_equal(back.storage_iops, variants[i].storage_iops);
        assert_int_equal(back.fabric_bps, variants[i].fabric_bps);
        assert_int_equal(back.egress_bps, variants[i].egress_bps);
        assert_int_equal(back.price, variants[i].price);
        assert_int_equal(back.total, variants[i].total);
        assert_int_equal(back.free, variants[i].free);
        s_packed_free(&pk);
    }
    /* An invalid package is not packed. */
    cpn_package_t bad = s_h100();
    bad.free = 99;
    msgpack_sbuffer sb;
    msgpack_packer packer;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&packer, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&packer, &bad), CPN_E_INVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void test_request_roundtrip(void **state)
{
    (void)state;
    cpn_request_t r = s_req();
    r.units = 3;
    r.split = true;
    r.min_tflops = 6000;
    r.min_accel_mem = 640 * GiB;
    r.cores = 32;
    r.mem_bytes = 512 * GiB;
    SET(r.storage_class, "nvme");
    r.storage_bytes = 2000000000000ULL;
    r.fabric_bps = 200000000000ULL;
    r.egress_bps = 10000000000ULL;
    r.max_price = 250000;
    r.regions.n = 2;
    SET(r.regions.items[0], "cn-east");
    SET(r.regions.items[1], "cn-north");
    r.prefer_vendors.n = 1;
    SET(r.prefer_vendors.items[0], "huawei");
    SET(r.accel_vendor, "nvidia");

    s_packed_t pk;
    msgpack_packer packer;
    msgpack_sbuffer_init(&pk.sb);
    msgpack_packer_init(&packer, &pk.sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_request_pack(&packer, &r), CPN_OK);
    s_parse(&pk);
    cpn_request_t back;
    memset(&back, 0x5a, sizeof back);
    assert_int_equal(cpn_request_unpack(&pk.obj, &back), CPN_OK);
    assert_memory_equal(&back.id, &r.id, strlen(r.id) + 1);
    assert_int_equal(back.units, 3);
    assert_true(back.split);
    assert_int_equal(back.duration_s, r.duration_s);
    assert_string_equal(back.accel_model, r.accel_model);
    assert_string_equal(back.accel_vendor, r.accel_vendor);
    assert_int_equal(back.accel_count, r.accel_count);
    assert_int_equal(back.min_tflops, r.min_tflops);
    assert_int_equal(back.min_accel_mem, r.min_accel_mem);
    assert_int_equal(back.cores, r.cores);
    assert_int_equal(back.mem_bytes, r.mem_bytes);
    assert_string_equal(back.storage_class, r.storage_class);
    assert_int_equal(back.storage_bytes, r.storage_bytes);
    assert_int_equal(back.fabric_bps, r.fabric_bps);
    assert_int_equal(back.egress_bps, r.egress_bps);
    assert_int_equal(back.max_price, r.max_price);
    assert_int_equal(back.regions.n, 2);
    assert_string_equal(back.regions.items[1], "cn-north");
    assert_int_equal(back.prefer_regions.n, 0);
    assert_int_equal(back.prefer_vendors.n, 1);
    assert_string_equal(back.prefer_vendors.items[0], "huawei");
    s_packed_free(&pk);
}

/* Hand-built maps that must be refused. */
static int s_unpack_request_map(void (*build)(msgpack_packer *))
{
    s_packed_t pk;
    msgpack_packer packer;
    msgpack_sbuffer_init(&pk.sb);
    msgpack_packer_init(&packer, &pk.sb, msgpack_sbuffer_write);
    build(&packer);
    s_parse(&pk);
    cpn_request_t r;
    int rc = cpn_request_unpack(&pk.obj, &r);
    s_packed_free(&pk);
    return rc;
}

static void s_base(msgpack_packer *pk, uint32_t extra)
{
    msgpack_pack_map(pk, 4 + extra);
    mp_pack_kstr(pk, "id", "r1");
    mp_pack_ku64(pk, "units", 1);
    mp_pack_ku64(pk, "duration", 3600);
    mp_pack_ku64(pk, "cores", 4);
}

static void s_good(msgpack_packer *pk)
{
    s_base(pk, 0);
}
static void s_unknown_key(msgpack_packer *pk)
{
    s_base(pk, 1);
    mp_pack_ku64(pk, "colour", 1);
}
static void s_missing_id(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mp_pack_ku64(pk, "units", 1);
    mp_pack_ku64(pk, "duration", 3600);
}
static void s_zero_units(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    mp_pack_kstr(pk, "id", "r1");
    mp_pack_ku64(pk, "units", 0);
    mp_pack_ku64(pk, "duration", 3600);
    mp_pack_ku64(pk, "cores", 4);
}
static void s_too_many_regions(msgpack_packer *pk)
{
    s_base(pk, 1);
    mp_pack_str(pk, "regions");
    msgpack_pack_array(pk, CPN_LIST_MAX + 1);
    for (int i = 0; i < CPN_LIST_MAX + 1; i++)
        mp_pack_str(pk, "r");
}
static void s_region_not_str(msgpack_packer *pk)
{
    s_base(pk, 1);
    mp_pack_str(pk, "regions");
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint64(pk, 7);
}
static void s_region_nul(msgpack_packer *pk)
{
    s_base(pk, 1);
    mp_pack_str(pk, "regions");
    msgpack_pack_array(pk, 1);
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}
static void s_empty_regions(msgpack_packer *pk)
{
    s_base(pk, 1);
    mp_pack_str(pk, "regions");
    msgpack_pack_array(pk, 0);
}
static void s_units_negative(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    mp_pack_kstr(pk, "id", "r1");
    mp_pack_str(pk, "units");
    msgpack_pack_int64(pk, -1);
    mp_pack_ku64(pk, "duration", 3600);
    mp_pack_ku64(pk, "cores", 4);
}

static void test_request_unpack_strict(void **state)
{
    (void)state;
    assert_int_equal(s_unpack_request_map(s_good), CPN_OK);
    assert_int_equal(s_unpack_request_map(s_unknown_key), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_missing_id), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_zero_units), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_too_many_regions), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_region_not_str), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_region_nul), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_empty_regions), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_request_map(s_units_negative), CPN_E_SCHEMA);
}

static void s_pkg_accel_without_count(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    mp_pack_kstr(pk, "id", "p");
    mp_pack_kstr(pk, "region", "cn-east");
    mp_pack_ku64(pk, "price", 1000);
    mp_pack_ku64(pk, "total", 1);
    mp_pack_ku64(pk, "free", 1);
    mp_pack_ku64(pk, "cores", 8);
    mp_pack_str(pk, "accel");
    msgpack_pack_map(pk, 4);
    mp_pack_kstr(pk, "vendor", "nvidia");
    mp_pack_kstr(pk, "model", "H100-80GB");
    mp_pack_ku64(pk, "count", 0);
    mp_pack_ku64(pk, "mem", 80 * GiB);
}

static void s_pkg_free_above_total(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 6);
    mp_pack_kstr(pk, "id", "p");
    mp_pack_kstr(pk, "region", "cn-east");
    mp_pack_ku64(pk, "price", 1000);
    mp_pack_ku64(pk, "total", 1);
    mp_pack_ku64(pk, "free", 2);
    mp_pack_ku64(pk, "cores", 8);
}

static void s_pkg_accel_not_map(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    mp_pack_kstr(pk, "id", "p");
    mp_pack_kstr(pk, "region", "cn-east");
    mp_pack_ku64(pk, "price", 1000);
    mp_pack_ku64(pk, "total", 1);
    mp_pack_ku64(pk, "free", 1);
    mp_pack_ku64(pk, "cores", 8);
    mp_pack_kstr(pk, "accel", "H100");
}

static int s_unpack_package_map(void (*build)(msgpack_packer *))
{
    s_packed_t pk;
    msgpack_packer packer;
    msgpack_sbuffer_init(&pk.sb);
    msgpack_packer_init(&packer, &pk.sb, msgpack_sbuffer_write);
    build(&packer);
    s_parse(&pk);
    cpn_package_t p;
    cpn_slice_sum_t sum;
    int rc = cpn_package_unpack(&pk.obj, &p, &sum);
    s_packed_free(&pk);
    return rc;
}

static void test_package_unpack_strict(void **state)
{
    (void)state;
    assert_int_equal(s_unpack_package_map(s_pkg_accel_without_count), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_package_map(s_pkg_free_above_total), CPN_E_SCHEMA);
    assert_int_equal(s_unpack_package_map(s_pkg_accel_not_map), CPN_E_SCHEMA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_package),
        cmocka_unit_test(test_validate_request),
        cmocka_unit_test(test_totals),
        cmocka_unit_test(test_fits_each_constraint),
        cmocka_unit_test(test_capability_request),
        cmocka_unit_test(test_shared),
        cmocka_unit_test(test_fit_points),
        cmocka_unit_test(test_grad),
        cmocka_unit_test(test_constraint_names),
        cmocka_unit_test(test_package_roundtrip),
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_request_unpack_strict),
        cmocka_unit_test(test_package_unpack_strict),
    };
    return cmocka_run_group_tests_name("resource", tests, NULL, NULL);
}
