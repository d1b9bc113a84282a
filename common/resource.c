/* resource.c - packages and requests: validation, totals, the fit test, msgpack forms.
 *
 * msgpack forms (docs/PROTOCOL.md; keys in table order, optional zero/empty fields left out):
 *   package: {"id", "region", "price", "total", "free", "cores"?, "mem"?, "accel"?,
 *             "storage_class"?, "storage_size"?, "storage_iops"?, "fabric_bps"?,
 *             "egress_bps"?}
 *            "slice_max"?, "frag"?, "fit"? (shared packages: the fragmentation summary;
 *            fit = [[accel, cpu, mem], ...], 1..CPN_FIT_MAX points, after "accel")
 *            accel = {"vendor", "model", "count", "mem", "bf16_tflops"?, "mem_bw_gbs"?,
 *                     "share_min"?},
 *            present exactly when the package has accelerators.
 *   request: {"id", "units", "duration", "split"?, "model"?, "vendor"?, "accel_count"?,
 *             "min_tflops"?, "min_accel_mem"?, "cores"?, "mem"?, "storage_class"?,
 *             "storage_size"?, "fabric_bps"?, "egress_bps"?, "max_price"?, "max_cost"?, "progress"?, "share"?,
 *             "regions"?, "prefer_regions"?, "prefer_vendors"?, "access"?}, name lists as
 *            arrays of str, access hints a map of str to str (hints.h).
 * Sizes are bytes, rates bits per second, prices thousandths per unit-hour, durations
 * seconds. Decoding validates too, so whatever unpack returns is a valid value.
 */
#include "resource.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "mp.h"

/* Sanity caps: far above any real machine, low enough that per-unit totals and sums over
 * a book of a million packages stay well inside uint64. */
#define S_CORES_MAX (1u << 20)
#define S_MEM_MAX (1ULL << 60) /* 1 EiB */
#define S_ACCEL_COUNT_MAX 1024u
#define S_ACCEL_MEM_MAX (1ULL << 44) /* 16 TiB per accelerator */
#define S_TFLOPS_MAX 1000000u        /* per accelerator */
#define S_BW_MAX 1000000u            /* GB/s per accelerator */
#define S_STORAGE_MAX (1ULL << 60)
#define S_RATE_MAX 100000000000000ULL /* 100 Tbit/s */
#define S_PRICE_MAX 1000000000000ULL  /* 10^9 currency units per unit-hour */
#define S_COST_MAX 1000000000000000ULL /* max_cost: 10^12 currency units for one lease */
#define S_UNITS_MAX 1000000u
#define S_DURATION_MAX (366ULL * 86400) /* a lease asks for at most a year; renewals extend */

/* Names are printable ASCII without spaces: they appear in logs, tables and NACK reasons,
 * where spaces and control characters would let a sender forge or garble output. */
static bool s_name_ok(const char *s, size_t cap, bool required)
{
    size_t n = strnlen(s, cap);
    if (n == cap || (required && n == 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static bool s_list_ok(const cpn_namelist_t *l)
{
    if (l->n > CPN_LIST_MAX)
        return false;
    for (uint32_t i = 0; i < l->n; i++)
        if (!s_name_ok(l->items[i], CPN_NAME_MAX, true))
            return false;
    return true;
}

uint64_t cpn_package_tflops(const cpn_package_t *p)
{
    return (uint64_t)p->accel.count * p->accel.bf16_tflops;
}

uint64_t cpn_package_accel_mem(const cpn_package_t *p)
{
    /* Saturate rather than wrap, so an unvalidated package cannot look small. */
    if (p->accel.count && p->accel.mem_bytes > UINT64_MAX / p->accel.count)
        return UINT64_MAX;
    return (uint64_t)p->accel.count * p->accel.mem_bytes;
}

static uint64_t s_mib(uint64_t bytes)
{
    return (bytes + (1u << 20) - 1) >> 20;
}

static uint32_t s_clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* What a package without a summary (sum NULL) reads as: no lists, no note. */
static const cpn_slice_sum_t s_no_sum;

static const cpn_slice_sum_t *s_sum(const cpn_package_t *p)
{
    return p->sum ? p->sum : &s_no_sum;
}

/* Is x before y in the fit list's order ((accel, cpu, mem) descending)? */
static bool s_fit_before(const cpn_fit_t *x, const cpn_fit_t *y)
{
    if (x->accel != y->accel)
        return x->accel > y->accel;
    if (x->cpu != y->cpu)
        return x->cpu > y->cpu;
    return x->mem > y->mem;
}

/* Each point within one node of p, in order, none equal: one encoding per value. */
static const char *s_fit_invalid(const cpn_package_t *p)
{
    const cpn_slice_sum_t *s = s_sum(p);
    if (s->n_fit > CPN_FIT_MAX)
        return "at most 8 fit points";
    for (uint32_t i = 0; i < s->n_fit; i++) {
        const cpn_fit_t *f = &s->fit[i];
        if (f->accel == 0 || f->accel > p->accel.count * CPN_SHARE_WHOLE ||
            (f->accel > CPN_SHARE_WHOLE && f->accel % CPN_SHARE_WHOLE != 0))
            return "a fit point's accel is a fraction of one accelerator or whole ones of a unit";
        if (f->cpu > p->cores * 1000u || f->mem > s_clamp32(s_mib(p->mem_bytes)))
            return "a fit point has more CPU or memory than a unit";
        if (i > 0 && !s_fit_before(&s->fit[i - 1], f))
            return "fit points are sorted by (accel, cpu, mem) descending, none equal";
    }
    if (s->n_grad > CPN_GRAD_MAX)
        return "at most 8 gradients";
    for (uint32_t i = 0; i < s->n_grad; i++) {
        const cpn_grad_t *g = &s->grad[i];
        int64_t lim = (int64_t)p->accel.count * CPN_SHARE_WHOLE;
        if (g->accel == 0 || g->accel > p->accel.count * CPN_SHARE_WHOLE ||
            (g->accel > CPN_SHARE_WHOLE && g->accel % CPN_SHARE_WHOLE != 0))
            return "a gradient's accel is a fraction of one accelerator or whole ones of a unit";
        if (g->delta > lim || g->delta < -lim)
            return "a gradient is at most a unit's accelerators";
        if (i > 0 && s->grad[i - 1].accel >= g->accel)
            return "gradients are sorted by accel ascending, none equal";
    }
    return NULL;
}

#define S_FAIL(msg)                                                                                \
    do {                                                                                           \
        reason = (msg);                                                                            \
        goto out;                                                                                  \
    } while (0)

int cpn_package_validate(const cpn_package_t *p, const char **why)
{
    const char *reason = NULL;
    const cpn_accel_t *a;
    if (!p)
        S_FAIL("no package");
    a = &p->accel;
    if (!s_name_ok(p->id, sizeof p->id, true))
        S_FAIL("id must be 1-63 printable characters without spaces");
    if (!s_name_ok(p->region, sizeof p->region, true))
        S_FAIL("region must be 1-63 printable characters without spaces");
    if (p->total < 1 || p->total > S_UNITS_MAX)
        S_FAIL("count (total units) must be from 1 to 1000000");
    if (p->free > p->total)
        S_FAIL("free units exceed the total");
    if (p->price > S_PRICE_MAX)
        S_FAIL("price too large");
    if (p->cores > S_CORES_MAX)
        S_FAIL("cores too large");
    if (p->mem_bytes > S_MEM_MAX)
        S_FAIL("memory too large");
    if (!s_name_ok(a->vendor, sizeof a->vendor, false) ||
        !s_name_ok(a->model, sizeof a->model, false))
        S_FAIL("accelerator vendor and model must be printable without spaces");
    if (a->count == 0) {
        if (a->vendor[0] || a->model[0] || a->mem_bytes || a->bf16_tflops || a->mem_bw_gbs)
            S_FAIL("accelerator figures given with an accelerator count of 0");
    } else {
        if (a->count > S_ACCEL_COUNT_MAX)
            S_FAIL("accelerator count too large (at most 1024 per unit)");
        if (!a->model[0] || !a->vendor[0])
            S_FAIL("accelerators need a vendor and a model");
        if (a->mem_bytes == 0 || a->mem_bytes > S_ACCEL_MEM_MAX)
            S_FAIL("accelerator memory must be above 0 and at most 16TiB");
        if (a->bf16_tflops == 0 || a->bf16_tflops > S_TFLOPS_MAX)
            S_FAIL("accelerator bf16_tflops must be from 1 to 1000000");
        if (a->mem_bw_gbs > S_BW_MAX)
            S_FAIL("accelerator memory bandwidth too large");
    }
    if (a->share_min > CPN_SHARE_WHOLE)
        S_FAIL("accelerator share_min must be at most 1 (a whole accelerator)");
    if (a->share_min && (a->count == 0 || a->count > CPN_SHARE_DEVS_MAX))
        S_FAIL("a shared package needs 1 to 8 accelerators per unit");
    if (a->share_min && p->total > CPN_SHARE_UNITS_MAX)
        S_FAIL("a shared package has at most 4096 units");
    if (p->slice_max > CPN_SHARE_WHOLE || p->frag > 1000)
        S_FAIL("slice_max and frag are thousandths (at most 1000)");
    if (!a->share_min && (p->slice_max || p->frag || s_sum(p)->n_fit || s_sum(p)->n_grad))
        S_FAIL("slice_max, frag, fit and grad belong to shared packages");
    if ((reason = s_fit_invalid(p)) != NULL)
        goto out;
    if (!s_name_ok(p->storage_class, sizeof p->storage_class, false))
        S_FAIL("storage class must be printable without spaces, at most 15 characters");
    if ((p->storage_class[0] != '\0') != (p->storage_bytes != 0))
        S_FAIL("storage needs both a class and a size");
    if (p->storage_bytes > S_STORAGE_MAX)
        S_FAIL("storage size too large");
    if (p->storage_iops && !p->storage_bytes)
        S_FAIL("storage iops given without storage");
    if (p->fabric_bps > S_RATE_MAX || p->egress_bps > S_RATE_MAX)
        S_FAIL("network rate too large (at most 100Tbps)");
    if (p->cores == 0 && a->count == 0 && p->storage_bytes == 0)
        S_FAIL("a package needs cores, accelerators or storage");
out:
    if (why)
        *why = reason;
    return reason ? CPN_E_CONFIG : CPN_OK;
}

int cpn_request_validate(const cpn_request_t *r, const char **why)
{
    const char *reason = NULL;
    if (!r)
        S_FAIL("no request");
    if (!s_name_ok(r->id, sizeof r->id, true))
        S_FAIL("id must be 1-63 printable characters without spaces");
    if (r->units < 1 || r->units > S_UNITS_MAX)
        S_FAIL("units must be from 1 to 1000000");
    if (r->duration_s < 1 || r->duration_s > S_DURATION_MAX)
        S_FAIL("duration must be above 0 and at most 366d");
    if (!s_name_ok(r->accel_model, sizeof r->accel_model, false) ||
        !s_name_ok(r->accel_vendor, sizeof r->accel_vendor, false))
        S_FAIL("accelerator vendor and model must be printable without spaces");
    if (r->accel_model[0] && r->accel_count == 0 && !r->share) /* a slice: of one */
        S_FAIL("an accelerator model needs a count");
    if (r->accel_count > S_ACCEL_COUNT_MAX)
        S_FAIL("accelerator count too large (at most 1024 per unit)");
    if (r->min_tflops > (uint64_t)S_ACCEL_COUNT_MAX * S_TFLOPS_MAX)
        S_FAIL("min_bf16_tflops too large");
    if (r->min_accel_mem > S_ACCEL_COUNT_MAX * S_ACCEL_MEM_MAX)
        S_FAIL("accelerator min_memory too large");
    if (r->cores > S_CORES_MAX)
        S_FAIL("cores too large");
    if (r->mem_bytes > S_MEM_MAX)
        S_FAIL("memory too large");
    if (!s_name_ok(r->storage_class, sizeof r->storage_class, false))
        S_FAIL("storage class must be printable without spaces, at most 15 characters");
    if (r->storage_bytes > S_STORAGE_MAX)
        S_FAIL("storage size too large");
    if (r->fabric_bps > S_RATE_MAX || r->egress_bps > S_RATE_MAX)
        S_FAIL("network rate too large (at most 100Tbps)");
    if (r->max_price > S_PRICE_MAX)
        S_FAIL("max_price too large");
    if (r->max_cost > S_COST_MAX)
        S_FAIL("max_cost too large");
    if (!s_list_ok(&r->regions) || !s_list_ok(&r->prefer_regions) || !s_list_ok(&r->prefer_vendors))
        S_FAIL("name lists hold at most 8 names of 1-63 printable characters");
    if (r->share > CPN_SHARE_WHOLE)
        S_FAIL("accelerator share must be at most 1 (a whole accelerator)");
    if (r->share && (r->units != 1 || r->split))
        S_FAIL("a slice request asks for one unit and is not split");
    if (r->share && (r->min_tflops || r->min_accel_mem))
        S_FAIL("a slice request names a model or vendor, not capability figures");
    if (r->share && r->share < CPN_SHARE_WHOLE && r->accel_count > 1)
        S_FAIL("a fraction comes from one accelerator (count 1)");
    if (r->share && r->accel_count > CPN_SHARE_DEVS_MAX)
        S_FAIL("a slice request asks for at most 8 whole accelerators");
    /* One encoding per value: "end", the default, is written by leaving the key out. */
    if (r->on_failure[0] && strcmp(r->on_failure, CPN_ON_FAILURE_REMATCH) != 0)
        S_FAIL("on_failure must be end or rematch");
    /* A request with no resource at all is almost surely a mistake in the file. */
    if (!r->share && !r->accel_count && !r->min_tflops && !r->min_accel_mem && !r->cores && !r->mem_bytes &&
        !r->storage_bytes && !r->accel_vendor[0] && !r->storage_class[0] && !r->fabric_bps &&
        !r->egress_bps)
        S_FAIL("a request must ask for some resource (accelerators, cores, memory, storage, "
               "network)");
out:
    if (why)
        *why = reason;
    return reason ? CPN_E_CONFIG : CPN_OK;
}

#undef S_FAIL

/* ---- the fit test ---- */

static const char *const s_constraint_names[CPN_C__COUNT] = {
    [CPN_C_OK] = "ok",
    [CPN_C_ACCEL_MODEL] = "accelerator.model",
    [CPN_C_ACCEL_VENDOR] = "accelerator.vendor",
    [CPN_C_ACCEL_COUNT] = "accelerator.count",
    [CPN_C_TFLOPS] = "tflops",
    [CPN_C_ACCEL_MEM] = "accelerator.memory",
    [CPN_C_CORES] = "cores",
    [CPN_C_MEMORY] = "memory",
    [CPN_C_STORAGE_CLASS] = "storage.class",
    [CPN_C_STORAGE_SIZE] = "storage.size",
    [CPN_C_FABRIC] = "network.fabric",
    [CPN_C_EGRESS] = "network.egress",
    [CPN_C_REGION] = "region",
    [CPN_C_PRICE] = "price",
    [CPN_C_SHARE] = "accelerator.share",
    [CPN_C_UNITS] = "units",
};

const char *cpn_constraint_name(cpn_constraint_t c)
{
    if ((unsigned)c >= CPN_C__COUNT)
        return "unknown";
    return s_constraint_names[c];
}

static bool s_in_list(const cpn_namelist_t *l, const char *name)
{
    for (uint32_t i = 0; i < l->n && i < CPN_LIST_MAX; i++)
        if (strcasecmp(l->items[i], name) == 0)
            return true;
    return false;
}

/* Checked in enum order so that the first failure is deterministic: a broker counting which
 * constraint excluded the most offers gets the same answer for the same book. */
cpn_constraint_t cpn_package_fits(const cpn_package_t *p, const cpn_request_t *r)
{
    if (r->accel_model[0] && strcasecmp(p->accel.model, r->accel_model) != 0)
        return CPN_C_ACCEL_MODEL;
    if (r->accel_vendor[0] && strcasecmp(p->accel.vendor, r->accel_vendor) != 0)
        return CPN_C_ACCEL_VENDOR;
    if (p->accel.count < r->accel_count)
        return CPN_C_ACCEL_COUNT;
    if (cpn_package_tflops(p) < r->min_tflops)
        return CPN_C_TFLOPS;
    if (cpn_package_accel_mem(p) < r->min_accel_mem)
        return CPN_C_ACCEL_MEM;
    if (p->cores < r->cores)
        return CPN_C_CORES;
    if (p->mem_bytes < r->mem_bytes)
        return CPN_C_MEMORY;
    if (r->storage_class[0] && strcasecmp(p->storage_class, r->storage_class) != 0)
        return CPN_C_STORAGE_CLASS;
    if (p->storage_bytes < r->storage_bytes)
        return CPN_C_STORAGE_SIZE;
    if (p->fabric_bps < r->fabric_bps)
        return CPN_C_FABRIC;
    if (p->egress_bps < r->egress_bps)
        return CPN_C_EGRESS;
    if (r->regions.n > 0 && !s_in_list(&r->regions, p->region))
        return CPN_C_REGION;
    if (r->max_price > 0 && p->price > r->max_price)
        return CPN_C_PRICE;
    /* Whole units and slices are different goods: one compare on the whole-unit path. */
    if (r->share == 0 ? p->accel.share_min != 0
                      : (p->accel.share_min == 0 || r->share < p->accel.share_min ||
                         !cpn_package_slice_open(p, r)))
        return CPN_C_SHARE;
    if (p->free < (r->split ? 1u : r->units))
        return CPN_C_UNITS;
    return CPN_C_OK;
}

/* ---- msgpack ---- */

#define S_F(key, kind, type, field, req)                                                           \
    {                                                                                              \
        (key), (kind), offsetof(type, field), sizeof(((type *)0)->field), (req)                    \
    }

static const mp_field_t s_accel_fields[] = {
    S_F("vendor", MPF_STR, cpn_accel_t, vendor, true),
    S_F("model", MPF_STR, cpn_accel_t, model, true),
    S_F("count", MPF_U32, cpn_accel_t, count, true),
    S_F("mem", MPF_U64, cpn_accel_t, mem_bytes, true),
    S_F("bf16_tflops", MPF_U32, cpn_accel_t, bf16_tflops, false),
    S_F("mem_bw_gbs", MPF_U32, cpn_accel_t, mem_bw_gbs, false),
    S_F("share_min", MPF_U32, cpn_accel_t, share_min, false),
};

/* The package with slots for its nested objects while decoding. */
typedef struct {
    cpn_package_t p;
    const msgpack_object *accel, *fit, *grad;
} s_package_dec_t;

/* Scalar fields first: encoding uses the first S_PKG_SCALARS entries, decoding all. */
static const mp_field_t s_package_fields[] = {
    S_F("id", MPF_STR, s_package_dec_t, p.id, true),
    S_F("region", MPF_STR, s_package_dec_t, p.region, true),
    S_F("price", MPF_U64, s_package_dec_t, p.price, true),
    S_F("total", MPF_U32, s_package_dec_t, p.total, true),
    S_F("free", MPF_U32, s_package_dec_t, p.free, true),
    S_F("cores", MPF_U32, s_package_dec_t, p.cores, false),
    S_F("mem", MPF_U64, s_package_dec_t, p.mem_bytes, false),
    S_F("storage_class", MPF_STR, s_package_dec_t, p.storage_class, false),
    S_F("storage_size", MPF_U64, s_package_dec_t, p.storage_bytes, false),
    S_F("storage_iops", MPF_U32, s_package_dec_t, p.storage_iops, false),
    S_F("fabric_bps", MPF_U64, s_package_dec_t, p.fabric_bps, false),
    S_F("egress_bps", MPF_U64, s_package_dec_t, p.egress_bps, false),
    S_F("slice_max", MPF_U32, s_package_dec_t, p.slice_max, false),
    S_F("frag", MPF_U32, s_package_dec_t, p.frag, false),
    S_F("accel", MPF_OBJ, s_package_dec_t, accel, false),
    S_F("fit", MPF_OBJ, s_package_dec_t, fit, false),
    S_F("grad", MPF_OBJ, s_package_dec_t, grad, false),
};
#define S_PKG_SCALARS (sizeof s_package_fields / sizeof s_package_fields[0] - 3)

typedef struct {
    cpn_request_t r;
    const msgpack_object *regions, *prefer_regions, *prefer_vendors, *access;
} s_request_dec_t;

static const mp_field_t s_request_fields[] = {
    S_F("id", MPF_STR, s_request_dec_t, r.id, true),
    S_F("units", MPF_U32, s_request_dec_t, r.units, true),
    S_F("duration", MPF_U64, s_request_dec_t, r.duration_s, true),
    S_F("split", MPF_BOOL, s_request_dec_t, r.split, false),
    S_F("model", MPF_STR, s_request_dec_t, r.accel_model, false),
    S_F("vendor", MPF_STR, s_request_dec_t, r.accel_vendor, false),
    S_F("accel_count", MPF_U32, s_request_dec_t, r.accel_count, false),
    S_F("min_tflops", MPF_U64, s_request_dec_t, r.min_tflops, false),
    S_F("min_accel_mem", MPF_U64, s_request_dec_t, r.min_accel_mem, false),
    S_F("cores", MPF_U32, s_request_dec_t, r.cores, false),
    S_F("mem", MPF_U64, s_request_dec_t, r.mem_bytes, false),
    S_F("storage_class", MPF_STR, s_request_dec_t, r.storage_class, false),
    S_F("storage_size", MPF_U64, s_request_dec_t, r.storage_bytes, false),
    S_F("fabric_bps", MPF_U64, s_request_dec_t, r.fabric_bps, false),
    S_F("egress_bps", MPF_U64, s_request_dec_t, r.egress_bps, false),
    S_F("max_price", MPF_U64, s_request_dec_t, r.max_price, false),
    S_F("max_cost", MPF_U64, s_request_dec_t, r.max_cost, false),
    S_F("progress", MPF_BOOL, s_request_dec_t, r.progress, false),
    S_F("share", MPF_U32, s_request_dec_t, r.share, false),
    S_F("on_failure", MPF_STR, s_request_dec_t, r.on_failure, false),
    S_F("regions", MPF_OBJ, s_request_dec_t, regions, false),
    S_F("prefer_regions", MPF_OBJ, s_request_dec_t, prefer_regions, false),
    S_F("prefer_vendors", MPF_OBJ, s_request_dec_t, prefer_vendors, false),
    S_F("access", MPF_OBJ, s_request_dec_t, access, false),
};
#define S_REQ_SCALARS (sizeof s_request_fields / sizeof s_request_fields[0] - 4)

#undef S_F

int cpn_package_pack(msgpack_packer *pk, const cpn_package_t *p)
{
    s_package_dec_t tmp;
    int r;
    if (!pk || !p)
        return CPN_E_INVAL;
    if ((r = cpn_package_validate(p, NULL)) != CPN_OK)
        return CPN_E_INVAL;
    memset(&tmp, 0, sizeof tmp);
    tmp.p = *p;
    const cpn_slice_sum_t *s = s_sum(p);
    bool accel = p->accel.count > 0;
    if ((r = mp_encode_map(pk, s_package_fields, S_PKG_SCALARS, &tmp,
                           (accel ? 1u : 0u) + (s->n_fit ? 1u : 0u) + (s->n_grad ? 1u : 0u))) !=
        CPN_OK)
        return r;
    if (accel) {
        mp_pack_str(pk, "accel");
        r = mp_encode_map(pk, s_accel_fields, sizeof s_accel_fields / sizeof s_accel_fields[0],
                          &p->accel, 0);
    }
    if (r == CPN_OK && s->n_fit) {
        mp_pack_str(pk, "fit");
        msgpack_pack_array(pk, s->n_fit);
        for (uint32_t i = 0; i < s->n_fit; i++) {
            msgpack_pack_array(pk, 3);
            msgpack_pack_uint32(pk, s->fit[i].accel);
            msgpack_pack_uint32(pk, s->fit[i].cpu);
            msgpack_pack_uint32(pk, s->fit[i].mem);
        }
    }
    if (r == CPN_OK && s->n_grad) {
        mp_pack_str(pk, "grad");
        msgpack_pack_array(pk, s->n_grad);
        for (uint32_t i = 0; i < s->n_grad; i++) {
            msgpack_pack_array(pk, 2);
            msgpack_pack_uint32(pk, s->grad[i].accel);
            msgpack_pack_int32(pk, s->grad[i].delta);
        }
    }
    return r;
}

/* "grad": 1..CPN_GRAD_MAX arrays [uint32 accel, int32 delta] (absent when empty); bounds and
 * order are cpn_package_validate's. msgpack writes a non-negative delta as a positive int. */
static int s_unpack_grad(const msgpack_object *o, cpn_slice_sum_t *p)
{
    if (!o)
        return CPN_OK;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
        o->via.array.size > CPN_GRAD_MAX)
        return CPN_E_SCHEMA;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *t = &o->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_ARRAY || t->via.array.size != 2)
            return CPN_E_SCHEMA;
        const msgpack_object *a = &t->via.array.ptr[0], *d = &t->via.array.ptr[1];
        if (a->type != MSGPACK_OBJECT_POSITIVE_INTEGER || a->via.u64 > UINT32_MAX)
            return CPN_E_SCHEMA;
        int64_t v;
        if (d->type == MSGPACK_OBJECT_POSITIVE_INTEGER && d->via.u64 <= INT32_MAX)
            v = (int64_t)d->via.u64;
        else if (d->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && d->via.i64 >= INT32_MIN)
            v = d->via.i64;
        else
            return CPN_E_SCHEMA;
        p->grad[i] = (cpn_grad_t){.accel = (uint32_t)a->via.u64, .delta = (int32_t)v};
    }
    p->n_grad = o->via.array.size;
    return CPN_OK;
}

/* "fit": 1..CPN_FIT_MAX arrays of three uint32 (absent when empty: one encoding per value);
 * their bounds and order are cpn_package_validate's. */
static int s_unpack_fit(const msgpack_object *o, cpn_slice_sum_t *p)
{
    if (!o)
        return CPN_OK;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
        o->via.array.size > CPN_FIT_MAX)
        return CPN_E_SCHEMA;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *t = &o->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_ARRAY || t->via.array.size != 3)
            return CPN_E_SCHEMA;
        uint32_t v[3];
        for (uint32_t k = 0; k < 3; k++) {
            const msgpack_object *x = &t->via.array.ptr[k];
            if (x->type != MSGPACK_OBJECT_POSITIVE_INTEGER || x->via.u64 > UINT32_MAX)
                return CPN_E_SCHEMA;
            v[k] = (uint32_t)x->via.u64;
        }
        p->fit[i] = (cpn_fit_t){.accel = v[0], .cpu = v[1], .mem = v[2]};
    }
    p->n_fit = o->via.array.size;
    return CPN_OK;
}

int cpn_package_unpack(const msgpack_object *obj, cpn_package_t *p, cpn_slice_sum_t *sum)
{
    s_package_dec_t tmp;
    cpn_slice_sum_t lists; /* read here, so that *sum changes only with *p */
    int r;
    if (!obj || !p)
        return CPN_E_INVAL;
    memset(&tmp, 0, sizeof tmp);
    memset(&lists, 0, sizeof lists);
    if ((r = mp_decode_map(obj, s_package_fields,
                           sizeof s_package_fields / sizeof s_package_fields[0], &tmp, NULL)) !=
        CPN_OK)
        return r;
    if (tmp.accel && (r = mp_decode_map(tmp.accel, s_accel_fields,
                                        sizeof s_accel_fields / sizeof s_accel_fields[0],
                                        &tmp.p.accel, NULL)) != CPN_OK)
        return r;
    /* "accel" is present exactly when there are accelerators: one encoding per value. */
    if ((tmp.accel != NULL) != (tmp.p.accel.count > 0))
        return CPN_E_SCHEMA;
    if ((r = s_unpack_fit(tmp.fit, &lists)) != CPN_OK ||
        (r = s_unpack_grad(tmp.grad, &lists)) != CPN_OK)
        return r;
    if (tmp.fit || tmp.grad || tmp.p.accel.share_min)
        tmp.p.sum = &lists;
    if (cpn_package_validate(&tmp.p, NULL) != CPN_OK)
        return CPN_E_SCHEMA;
    if ((tmp.fit || tmp.grad) && !sum)
        return CPN_E_INVAL; /* no room for the lists */
    tmp.p.sum = tmp.p.sum && sum ? sum : NULL;
    if (tmp.p.sum)
        *sum = lists;
    *p = tmp.p;
    return CPN_OK;
}

static void s_pack_list(msgpack_packer *pk, const char *key, const cpn_namelist_t *l)
{
    mp_pack_str(pk, key);
    msgpack_pack_array(pk, l->n);
    for (uint32_t i = 0; i < l->n; i++)
        mp_pack_str(pk, l->items[i]);
}

static int s_unpack_list(const msgpack_object *o, cpn_namelist_t *l)
{
    memset(l, 0, sizeof *l);
    if (!o)
        return CPN_OK;
    /* An empty list is written by leaving the key out: one encoding per value. */
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
        o->via.array.size > CPN_LIST_MAX)
        return CPN_E_SCHEMA;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *s = &o->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR || s->via.str.size == 0 ||
            s->via.str.size >= CPN_NAME_MAX || memchr(s->via.str.ptr, '\0', s->via.str.size))
            return CPN_E_SCHEMA;
        memcpy(l->items[i], s->via.str.ptr, s->via.str.size);
        l->items[i][s->via.str.size] = '\0';
    }
    l->n = o->via.array.size;
    return CPN_OK;
}

const mp_field_t *cpn_request_fields(size_t *n)
{
    *n = sizeof s_request_fields / sizeof s_request_fields[0];
    return s_request_fields;
}

int cpn_request_pack(msgpack_packer *pk, const cpn_request_t *r)
{
    s_request_dec_t tmp;
    int rc;
    if (!pk || !r)
        return CPN_E_INVAL;
    if (cpn_request_validate(r, NULL) != CPN_OK)
        return CPN_E_INVAL;
    memset(&tmp, 0, sizeof tmp);
    tmp.r = *r;
    size_t extra = (r->regions.n > 0) + (r->prefer_regions.n > 0) + (r->prefer_vendors.n > 0) +
                   (r->access.n > 0);
    if ((rc = mp_encode_map(pk, s_request_fields, S_REQ_SCALARS, &tmp, extra)) != CPN_OK)
        return rc;
    if (r->regions.n > 0)
        s_pack_list(pk, "regions", &r->regions);
    if (r->prefer_regions.n > 0)
        s_pack_list(pk, "prefer_regions", &r->prefer_regions);
    if (r->prefer_vendors.n > 0)
        s_pack_list(pk, "prefer_vendors", &r->prefer_vendors);
    if (r->access.n > 0) {
        mp_pack_str(pk, "access");
        return cpn_hints_pack(pk, &r->access);
    }
    return CPN_OK;
}

int cpn_request_unpack(const msgpack_object *obj, cpn_request_t *r)
{
    s_request_dec_t tmp;
    int rc;
    if (!obj || !r)
        return CPN_E_INVAL;
    memset(&tmp, 0, sizeof tmp);
    if ((rc = mp_decode_map(obj, s_request_fields,
                            sizeof s_request_fields / sizeof s_request_fields[0], &tmp, NULL)) !=
            CPN_OK ||
        (rc = s_unpack_list(tmp.regions, &tmp.r.regions)) != CPN_OK ||
        (rc = s_unpack_list(tmp.prefer_regions, &tmp.r.prefer_regions)) != CPN_OK ||
        (rc = s_unpack_list(tmp.prefer_vendors, &tmp.r.prefer_vendors)) != CPN_OK ||
        (tmp.access && (rc = cpn_hints_unpack(tmp.access, &tmp.r.access)) != CPN_OK))
        return rc;
    if (cpn_request_validate(&tmp.r, NULL) != CPN_OK)
        return CPN_E_SCHEMA;
    *r = tmp.r;
    return CPN_OK;
}

/* ---- the fragmentation summary's fit points ---- */

cpn_fit_t cpn_slice_ask(const cpn_request_t *r)
{
    cpn_fit_t a = {0, 0, 0};
    if (r->share == 0)
        return a;
    a.accel = r->share < CPN_SHARE_WHOLE
                  ? r->share
                  : (r->accel_count ? r->accel_count : 1u) * CPN_SHARE_WHOLE;
    a.cpu = s_clamp32((uint64_t)r->cores * 1000u);
    a.mem = s_clamp32(s_mib(r->mem_bytes));
    return a;
}

static bool s_fit_covers(const cpn_fit_t *f, const cpn_fit_t *a)
{
    return f->accel >= a->accel && f->cpu >= a->cpu && f->mem >= a->mem;
}

bool cpn_package_grad(const cpn_package_t *p, const cpn_request_t *r, int32_t *delta)
{
    const cpn_slice_sum_t *s = s_sum(p);
    uint32_t a = cpn_slice_ask(r).accel;
    for (uint32_t i = 0; i < s->n_grad && i < CPN_GRAD_MAX; i++)
        if (s->grad[i].accel == a) {
            *delta = s->grad[i].delta;
            return true;
        }
    return false;
}

bool cpn_package_fit_covers(const cpn_package_t *p, const cpn_request_t *r)
{
    const cpn_slice_sum_t *s = s_sum(p);
    cpn_fit_t a = cpn_slice_ask(r);
    for (uint32_t i = 0; i < s->n_fit && i < CPN_FIT_MAX; i++)
        if (s_fit_covers(&s->fit[i], &a))
            return true;
    return false;
}

bool cpn_package_slice_open(const cpn_package_t *p, const cpn_request_t *r)
{
    if (p->slice_max < r->share)
        return false;
    const cpn_slice_sum_t *s = s_sum(p);
    if (s->refused.accel == 0)
        return true;
    cpn_fit_t a = cpn_slice_ask(r);
    return !s_fit_covers(&a, &s->refused);
}

/* The refused slice bounds the package from above in three dimensions at once: one smaller
 * in CPU or memory may still fit where this one did not (slice_max alone would shut it out). */
void cpn_package_slice_refused(cpn_package_t *p, const cpn_request_t *r)
{
    cpn_slice_sum_t *s = p->sum;
    if (!p->accel.share_min || !r->share || !s)
        return;
    cpn_fit_t a = cpn_slice_ask(r);
    if (s->refused.accel == 0 || !s_fit_covers(&a, &s->refused))
        s->refused = a; /* the latest, unless it is larger than the one held in all three */
    uint32_t k = 0; /* the points left keep their order */
    for (uint32_t i = 0; i < s->n_fit && i < CPN_FIT_MAX; i++)
        if (!s_fit_covers(&s->fit[i], &a))
            s->fit[k++] = s->fit[i];
    s->n_fit = k;
}
