/* yresource.c - the resource model from YAML (docs/POLICY.md lists the keys): a package as a
 * peer declares it, a request as a tenant writes it. Tables of fields, bound by ybind.c; the
 * cross-field rules are resource.c's validators, run once every field parsed.
 */
#include "yconf.h"

#include <stddef.h>
#include <string.h>

#include "units.h"
#include "yconf_int.h"

#define S_Y(k, kd, type, field, req, lo, hi)                                                       \
    {                                                                                              \
        .key = (k), .kind = (kd), .off = offsetof(type, field),                                    \
        .size = sizeof(((type *)0)->field), .required = (req), .min = (lo), .max = (hi)            \
    }
#define S_YMAP(k, off_, table)                                                                     \
    {                                                                                              \
        .key = (k), .kind = YF_MAP, .off = (off_), .sub = (table),                                 \
        .n_sub = sizeof(table) / sizeof((table)[0])                                                \
    }

/* "3350GB/s", "3.35TB/s" or a plain number of GB/s. */
static int s_bind_gbs(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    static const struct {
        const char *suffix;
        const char *as;
    } forms[] = {{"GB/s", "GB"}, {"TB/s", "TB"}};
    char buf[64];
    uint64_t bytes = 0, gbs = 0;
    bool ok = false;
    (void)arg;
    if (node->kind == YNODE_SCALAR && strlen(node->value) < sizeof buf - 4) {
        const char *t = node->value;
        if (yconf_parse_uint(t, &gbs)) /* a plain number is GB/s already */
            ok = true;
        for (size_t i = 0; !ok && i < sizeof forms / sizeof forms[0]; i++) {
            if (!yconf_ends_with(t, forms[i].suffix))
                continue;
            size_t len = strlen(t) - strlen(forms[i].suffix);
            if (yconf_fmt(buf, sizeof buf, "%.*s%s", (int)len, t, forms[i].as) &&
                cpn_parse_bytes(buf, &bytes) == CPN_OK && bytes % 1000000000ULL == 0) {
                gbs = bytes / 1000000000ULL;
                ok = true;
            }
        }
    }
    if (!ok || gbs > 1000000) {
        yconf_error(doc, node, path,
                    "expected a bandwidth such as 3350GB/s (whole GB/s, at most 1000000)");
        return CPN_E_CONFIG;
    }
    *(uint32_t *)dst = (uint32_t)gbs;
    return CPN_OK;
}

/* A share of one accelerator, stored in thousandths: a fraction "0.46" (at most three
 * decimals, above 0, at most 1), thousandths "460m", or a named slice profile: NVIDIA MIG
 * profiles are sevenths of a GPU's compute ("1g.10gb" = 1/7, rounded down to 142m), so a
 * profile stands for its compute share; other vendors' templates are written as fractions. */
static const struct {
    const char *name;
    uint32_t milli;
} s_profiles[] = {
    {"1g.5gb", 142},  {"1g.10gb", 142}, {"1g.12gb", 142}, {"1g.20gb", 142}, {"2g.10gb", 285},
    {"2g.20gb", 285}, {"2g.24gb", 285}, {"3g.20gb", 428}, {"3g.40gb", 428}, {"3g.47gb", 428},
    {"4g.20gb", 571}, {"4g.40gb", 571}, {"4g.47gb", 571}, {"7g.40gb", 1000}, {"7g.80gb", 1000},
};

static bool s_parse_share(const char *t, uint32_t *milli)
{
    uint64_t v = 0;
    size_t len = strlen(t);
    for (size_t i = 0; i < sizeof s_profiles / sizeof s_profiles[0]; i++)
        if (strcmp(t, s_profiles[i].name) == 0) {
            *milli = s_profiles[i].milli;
            return true;
        }
    if (len >= 2 && len < 8 && t[len - 1] == 'm') {
        char buf[8];
        memcpy(buf, t, len - 1);
        buf[len - 1] = '\0';
        if (!yconf_parse_uint(buf, &v))
            return false;
    } else if (strcmp(t, "1") == 0) {
        v = 1000;
    } else if (t[0] == '0' && t[1] == '.' && len >= 3 && len <= 5) {
        for (size_t i = 2; i < 5; i++) {
            if (i < len && (t[i] < '0' || t[i] > '9'))
                return false;
            v = v * 10 + (i < len ? (uint64_t)(t[i] - '0') : 0);
        }
    } else {
        return false;
    }
    if (v == 0 || v > CPN_SHARE_WHOLE)
        return false;
    *milli = (uint32_t)v;
    return true;
}

static int s_bind_share(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    (void)arg;
    if (node->kind != YNODE_SCALAR || !s_parse_share(node->value, (uint32_t *)dst)) {
        yconf_error(doc, node, path,
                    "expected a share of one accelerator: 0.46, 460m, 1 or a MIG profile "
                    "such as 1g.10gb");
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

int yconf_bind_share(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    return s_bind_share(doc, node, path, dst, arg);
}

/* access: {ssh_key: "ssh-ed25519 AAAA... me@laptop", user: acme}: hints for the peer's driver
 * (hints.h), a map of scalars, each key and value checked as the wire checks them. */
static int s_bind_hints(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    cpn_hints_t *h = dst;
    char kp[YCONF_PATH_MAX];
    int r = CPN_OK;
    (void)arg;
    if (node->kind != YNODE_MAP || node->n == 0) {
        yconf_error(doc, node, path, "expected a map of access hints such as {ssh_key: \"...\"}");
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < node->n; i++) {
        const char *key = node->keys[i];
        const ynode_t *v = node->items[i];
        yconf_child_path(kp, sizeof kp, path, key);
        if (!cpn_hint_key_ok(key, strlen(key))) {
            yconf_error_pos(doc, node->key_line[i], node->key_col[i], kp,
                            "an access hint's name is 1-%d characters of a-z, 0-9 and _",
                            CPN_HINT_KEY_MAX - 1);
            r = CPN_E_CONFIG;
        } else if (v->kind != YNODE_SCALAR || !cpn_hint_value_ok(v->value, strlen(v->value))) {
            yconf_error(doc, v, kp, "expected a non-empty line of text (no control characters)");
            r = CPN_E_CONFIG;
        } else if (cpn_hints_get(h, key)) {
            yconf_error(doc, v, kp, "given twice");
            r = CPN_E_CONFIG;
        } else if (cpn_hints_set(h, key, v->value) != CPN_OK) {
            yconf_error(doc, v, kp, "more than %d access hints or %d bytes in all", CPN_HINTS_MAX,
                        CPN_HINTS_BYTES);
            r = CPN_E_CONFIG;
        }
    }
    return r;
}

static const yfield_t s_pkg_accel[] = {
    S_Y("vendor", YF_STR, cpn_accel_t, vendor, true, 1, 0),
    S_Y("model", YF_STR, cpn_accel_t, model, true, 1, 0),
    S_Y("count", YF_U32, cpn_accel_t, count, true, 1, 1024),
    S_Y("memory", YF_BYTES, cpn_accel_t, mem_bytes, true, 1, 1ULL << 44),
    S_Y("bf16_tflops", YF_U32, cpn_accel_t, bf16_tflops, true, 1, 1000000),
    {.key = "memory_bandwidth",
     .kind = YF_CUSTOM,
     .off = offsetof(cpn_accel_t, mem_bw_gbs),
     .custom = s_bind_gbs},
    {.key = "share_min", .kind = YF_CUSTOM, .off = offsetof(cpn_accel_t, share_min),
     .custom = s_bind_share},
};

static const yfield_t s_pkg_storage[] = {
    S_Y("class", YF_STR, cpn_package_t, storage_class, true, 1, 0),
    S_Y("size", YF_BYTES, cpn_package_t, storage_bytes, true, 1, 0),
    S_Y("iops", YF_U32, cpn_package_t, storage_iops, false, 0, 0),
};

static const yfield_t s_pkg_network[] = {
    S_Y("fabric", YF_BITRATE, cpn_package_t, fabric_bps, false, 0, 0),
    S_Y("egress", YF_BITRATE, cpn_package_t, egress_bps, false, 0, 0),
};

static const yfield_t s_pkg_fields[] = {
    S_Y("id", YF_STR, cpn_package_t, id, true, 1, 0),
    S_Y("count", YF_U32, cpn_package_t, total, true, 1, 1000000),
    S_Y("region", YF_STR, cpn_package_t, region, true, 1, 0),
    S_Y("price", YF_PRICE, cpn_package_t, price, true, 0, 0),
    S_Y("cores", YF_U32, cpn_package_t, cores, false, 1, 1u << 20),
    S_Y("memory", YF_BYTES, cpn_package_t, mem_bytes, false, 1, 0),
    S_YMAP("accelerators", offsetof(cpn_package_t, accel), s_pkg_accel),
    S_YMAP("storage", 0, s_pkg_storage),
    S_YMAP("network", 0, s_pkg_network),
};

static const yfield_t s_req_accel[] = {
    S_Y("model", YF_STR, cpn_request_t, accel_model, false, 1, 0),
    S_Y("vendor", YF_STR, cpn_request_t, accel_vendor, false, 1, 0),
    S_Y("count", YF_U32, cpn_request_t, accel_count, false, 1, 1024),
    S_Y("min_bf16_tflops", YF_U64, cpn_request_t, min_tflops, false, 1, 0),
    S_Y("min_memory", YF_BYTES, cpn_request_t, min_accel_mem, false, 1, 0),
    {.key = "share", .kind = YF_CUSTOM, .off = offsetof(cpn_request_t, share),
     .custom = s_bind_share},
};

static const yfield_t s_req_storage[] = {
    S_Y("class", YF_STR, cpn_request_t, storage_class, false, 1, 0),
    S_Y("size", YF_BYTES, cpn_request_t, storage_bytes, false, 1, 0),
};

static const yfield_t s_req_network[] = {
    S_Y("fabric", YF_BITRATE, cpn_request_t, fabric_bps, false, 0, 0),
    S_Y("egress", YF_BITRATE, cpn_request_t, egress_bps, false, 0, 0),
};

static const yfield_t s_req_prefer[] = {
    S_Y("regions", YF_NAMES, cpn_request_t, prefer_regions, false, 0, 0),
    S_Y("vendors", YF_NAMES, cpn_request_t, prefer_vendors, false, 0, 0),
};

static const yfield_t s_req_fields[] = {
    S_Y("id", YF_STR, cpn_request_t, id, true, 1, 0),
    S_Y("units", YF_U32, cpn_request_t, units, false, 1, 1000000),
    S_Y("split", YF_BOOL, cpn_request_t, split, false, 0, 0),
    S_Y("duration", YF_DURATION, cpn_request_t, duration_s, true, 1, 366ULL * 86400),
    S_YMAP("accelerators", 0, s_req_accel),
    S_Y("cores", YF_U32, cpn_request_t, cores, false, 1, 1u << 20),
    S_Y("memory", YF_BYTES, cpn_request_t, mem_bytes, false, 1, 0),
    S_YMAP("storage", 0, s_req_storage),
    S_YMAP("network", 0, s_req_network),
    S_Y("regions", YF_NAMES, cpn_request_t, regions, false, 0, 0),
    S_Y("max_price", YF_PRICE, cpn_request_t, max_price, false, 1, 0),
    S_Y("max_cost", YF_PRICE, cpn_request_t, max_cost, false, 1, 0),
    S_YMAP("prefer", 0, s_req_prefer),
    S_Y("on_failure", YF_STR, cpn_request_t, on_failure, false, 0, 0),
    {.key = "access",
     .kind = YF_CUSTOM,
     .off = offsetof(cpn_request_t, access),
     .custom = s_bind_hints},
};

#undef S_Y
#undef S_YMAP

/* Vendors are compared ignoring case anyway; lower case keeps tables and logs uniform. */
static void s_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

int yconf_package_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_package_t *out,
                     const char *const *extra_keys)
{
    const char *why = NULL;
    int r;
    if (!doc || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    r = yconf_bind_ignoring(doc, node, path, s_pkg_fields, sizeof s_pkg_fields / sizeof s_pkg_fields[0], out,
               extra_keys);
    if (r != CPN_OK)
        return r;
    out->free = out->total;
    s_lower(out->accel.vendor);
    /* Cross-field rules only once every field parsed, so one mistake is one message. */
    if (cpn_package_validate(out, &why) != CPN_OK) {
        yconf_error(doc, node, path, "%s", why);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

int yconf_package(yconf_t *doc, const ynode_t *node, const char *path, cpn_package_t *out)
{
    return yconf_package_ex(doc, node, path, out, NULL);
}

int yconf_request_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_request_t *out,
                     const char *const *extra_keys)
{
    const char *why = NULL;
    int r;
    if (!doc || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    out->units = 1;
    r = yconf_bind_ignoring(doc, node, path, s_req_fields, sizeof s_req_fields / sizeof s_req_fields[0], out,
               extra_keys);
    if (r != CPN_OK)
        return r;
    s_lower(out->accel_vendor);
    for (uint32_t i = 0; i < out->prefer_vendors.n; i++)
        s_lower(out->prefer_vendors.items[i]);
    if (strcmp(out->on_failure, "end") == 0) /* the default: absent on the wire */
        out->on_failure[0] = '\0';
    if (cpn_request_validate(out, &why) != CPN_OK) {
        yconf_error(doc, node, path, "%s", why);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

int yconf_request(yconf_t *doc, const ynode_t *node, const char *path, cpn_request_t *out)
{
    return yconf_request_ex(doc, node, path, out, NULL);
}

int yconf_request_file(const char *path, cpn_request_t *out, yconf_t **doc_out)
{
    yconf_t *doc = NULL;
    int r;
    if (doc_out)
        *doc_out = NULL;
    if (!path || !out)
        return CPN_E_INVAL;
    r = yconf_load_file(path, &doc);
    if (r == CPN_OK)
        r = yconf_request(doc, yconf_root(doc), "", out);
    if (doc_out)
        *doc_out = doc;
    else
        yconf_destroy(&doc);
    return r;
}
