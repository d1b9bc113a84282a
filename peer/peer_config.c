/* peer_config.c - peer.yaml bound by tables (yconf), paths resolved against its directory. */
#include "peer_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "devices.h"
#include "log.h"
#include "provision.h"
#include "units.h"
#include "usage.h"

/* What the custom binders need beyond their destination. */
typedef struct {
    char dir[PEER_PATH_MAX]; /* directory of the configuration file, "" for the cwd */
    const char *default_region;
    const ynode_t *provision; /* bound after the packages, whatever the key order */
} s_ctx_t;

/* Resolve a relative path against the configuration's directory. */
static int s_resolve(const s_ctx_t *ctx, const char *path, char *out, size_t cap)
{
    int n;
    if (path[0] == '/' || ctx->dir[0] == '\0')
        n = snprintf(out, cap, "%s", path);
    else
        n = snprintf(out, cap, "%s/%s", ctx->dir, path);
    return n < 0 || (size_t)n >= cap ? CPN_E_TOO_BIG : CPN_OK;
}

static int s_scalar(yconf_t *doc, const ynode_t *node, const char *path, const char *what)
{
    if (!node || node->kind != YNODE_SCALAR || !node->value) {
        yconf_error(doc, node, path, "expected %s", what);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

/* A public key: its text, or a .pub file (relative to the configuration's directory). */
static int s_key(yconf_t *doc, const ynode_t *node, const char *path, const s_ctx_t *ctx,
                 uint8_t pk[CPN_PK_LEN])
{
    char file[PEER_PATH_MAX];
    if (s_scalar(doc, node, path, "a public key or a .pub file") != CPN_OK)
        return CPN_E_CONFIG;
    if (cpn_pk_from_text(node->value, pk) == CPN_OK)
        return CPN_OK;
    if (s_resolve(ctx, node->value, file, sizeof file) == CPN_OK && cpn_pk_load(file, pk) == CPN_OK)
        return CPN_OK;
    yconf_error(doc, node, path,
                "not a public key (43 base64url characters) nor a readable "
                ".pub file: %s",
                node->value);
    return CPN_E_CONFIG;
}

/* A path to a file of ours (key, database), resolved. */
static int s_path(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    if (s_scalar(doc, node, path, "a path") != CPN_OK)
        return CPN_E_CONFIG;
    if (node->value[0] == '\0' || s_resolve(arg, node->value, dst, PEER_PATH_MAX) != CPN_OK) {
        yconf_error(doc, node, path, "expected a path of at most %d bytes", PEER_PATH_MAX - 1);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

static int s_broker_key(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    return s_key(doc, node, path, arg, dst);
}

static int s_brokers(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    peer_config_t *cfg = dst;
    /* clang-format off */
    const yfield_t fields[] = {
        {.key = "endpoint", .kind = YF_STR, .off = offsetof(peer_broker_cfg_t, endpoint),
         .size = sizeof cfg->brokers[0].endpoint, .required = true},
        {.key = "key", .kind = YF_CUSTOM, .off = offsetof(peer_broker_cfg_t, key),
         .required = true, .custom = s_broker_key, .arg = arg},
        {.key = "curve", .kind = YF_BOOL, .off = offsetof(peer_broker_cfg_t, curve)},
    };
    /* clang-format on */
    if (!node || node->kind != YNODE_SEQ || node->n == 0) {
        yconf_error(doc, node, path, "expected a list of brokers");
        return CPN_E_CONFIG;
    }
    if (node->n > PEER_BROKERS_MAX) {
        yconf_error(doc, node, path, "at most %d brokers", PEER_BROKERS_MAX);
        return CPN_E_CONFIG;
    }
    int r = CPN_OK;
    for (size_t i = 0; i < node->n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        peer_broker_cfg_t *b = &cfg->brokers[i];
        memset(b, 0, sizeof *b);
        if (!node->items[i] || node->items[i]->kind != YNODE_MAP) {
            yconf_error(doc, node->items[i], ipath, "expected a map");
            r = CPN_E_CONFIG;
            continue;
        }
        bool bound = yconf_bind(doc, node->items[i], ipath, fields,
                                sizeof fields / sizeof fields[0], b) == CPN_OK;
        if (!bound)
            r = CPN_E_CONFIG;
        if (b->endpoint[0] && strncmp(b->endpoint, "tcp://", 6) != 0 &&
            strncmp(b->endpoint, "ipc://", 6) != 0) {
            char epath[300];
            snprintf(epath, sizeof epath, "%s.endpoint", ipath);
            yconf_error(doc, yconf_get(node->items[i], "endpoint"), epath,
                        "expected tcp://HOST:PORT or ipc://PATH");
            r = CPN_E_CONFIG;
        }
        for (size_t j = 0; bound && j < i; j++)
            if (sodium_memcmp(cfg->brokers[j].key, b->key, CPN_PK_LEN) == 0) {
                yconf_error(doc, yconf_get(node->items[i], "key"), ipath,
                            "key: same broker key as %s[%zu]", path, j);
                r = CPN_E_CONFIG;
            }
    }
    cfg->n_brokers = node->n;
    return r;
}

static int s_tenants(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    peer_config_t *cfg = dst;
    if (node && node->kind == YNODE_SCALAR && node->value && strcmp(node->value, "any") == 0) {
        cfg->tenants_any = true;
        return CPN_OK;
    }
    if (!node || node->kind != YNODE_SEQ) {
        yconf_error(doc, node, path, "expected `any` or a list of tenant keys");
        return CPN_E_CONFIG;
    }
    if (node->n > PEER_TENANTS_MAX) {
        yconf_error(doc, node, path, "at most %d tenant keys", PEER_TENANTS_MAX);
        return CPN_E_CONFIG;
    }
    cfg->tenants_any = false;
    cfg->tenants = calloc(node->n ? node->n : 1, CPN_PK_LEN);
    if (!cfg->tenants)
        return CPN_E_NOMEM;
    int r = CPN_OK;
    for (size_t i = 0; i < node->n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (s_key(doc, node->items[i], ipath, arg, cfg->tenants[i]) != CPN_OK)
            r = CPN_E_CONFIG;
    }
    cfg->n_tenants = node->n;
    return r;
}

/* One package: the resource model's keys (yconf_package_ex) plus our own `floor`. When
 * the package names no region, the binder sees a shallow copy of the map with the
 * configuration's default region added. */
static int s_package(yconf_t *doc, const ynode_t *item, const char *path, const s_ctx_t *ctx,
                     cpn_package_t *pkg, uint64_t *floor)
{
    static const char *const extra[] = {"floor", NULL};
    int r = CPN_OK;
    ynode_t copy = *item, region = {0};
    const ynode_t *node = item;
    *floor = 0;
    const ynode_t *fl = yconf_get(item, "floor");
    if (fl) {
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.floor", path);
        if (fl->kind != YNODE_SCALAR || !fl->value || cpn_parse_price(fl->value, floor) != CPN_OK) {
            yconf_error(doc, fl, fpath, "expected a price such as \"150.0\"");
            r = CPN_E_CONFIG;
        }
    }
    if (!yconf_get(item, "region") && ctx->default_region && ctx->default_region[0]) {
        size_t cap = item->n + 1;
        copy.keys = calloc(cap, sizeof *copy.keys);
        copy.key_line = calloc(cap, sizeof *copy.key_line);
        copy.key_col = calloc(cap, sizeof *copy.key_col);
        copy.items = calloc(cap, sizeof *copy.items);
        node = &copy; /* freed at out */
        if (!copy.keys || !copy.key_line || !copy.key_col || !copy.items) {
            r = CPN_E_NOMEM;
            goto out;
        }
        for (size_t k = 0; k < item->n; k++) {
            copy.keys[k] = item->keys[k];
            copy.key_line[k] = item->key_line ? item->key_line[k] : item->line;
            copy.key_col[k] = item->key_col ? item->key_col[k] : item->col;
            copy.items[k] = item->items[k];
        }
        region.kind = YNODE_SCALAR;
        region.line = item->line;
        region.col = item->col;
        region.value = (char *)ctx->default_region;
        copy.keys[item->n] = (char *)"region";
        copy.key_line[item->n] = item->line;
        copy.key_col[item->n] = item->col;
        copy.items[item->n] = &region;
        copy.n = item->n + 1;
    }
    if (yconf_package_ex(doc, node, path, pkg, extra) != CPN_OK)
        r = CPN_E_CONFIG;
    else if (r == CPN_OK && *floor > pkg->price) {
        yconf_error(doc, fl, path,
                    "floor: above the package's price (the floor is the lowest price the peer "
                    "accepts)");
        r = CPN_E_CONFIG;
    }
out:
    if (node == &copy) {
        free(copy.keys);
        free(copy.key_line);
        free(copy.key_col);
        free(copy.items);
    }
    return r;
}

static int s_packages(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    peer_config_t *cfg = dst;
    if (!node || node->kind != YNODE_SEQ || node->n == 0) {
        yconf_error(doc, node, path, "expected a list of packages");
        return CPN_E_CONFIG;
    }
    if (node->n > CPN_PACKAGES_MAX) {
        yconf_error(doc, node, path, "at most %d packages", CPN_PACKAGES_MAX);
        return CPN_E_CONFIG;
    }
    cfg->packages = calloc(node->n, sizeof *cfg->packages);
    cfg->floors = calloc(node->n, sizeof *cfg->floors);
    if (!cfg->packages || !cfg->floors)
        return CPN_E_NOMEM;
    int r = CPN_OK;
    for (size_t i = 0; i < node->n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        const ynode_t *item = node->items[i];
        if (!item || item->kind != YNODE_MAP) {
            yconf_error(doc, item, ipath, "expected a map");
            r = CPN_E_CONFIG;
            continue;
        }
        int pr = s_package(doc, item, ipath, arg, &cfg->packages[i], &cfg->floors[i]);
        if (pr == CPN_E_NOMEM)
            return pr;
        if (pr != CPN_OK) {
            r = CPN_E_CONFIG;
            continue;
        }
        cfg->packages[i].free = cfg->packages[i].total;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->packages[j].id, cfg->packages[i].id) == 0) {
                yconf_error(doc, yconf_get(item, "id"), ipath, "id: \"%s\" used twice",
                            cfg->packages[i].id);
                r = CPN_E_CONFIG;
            }
    }
    cfg->n_packages = node->n;
    return r;
}

/* ---- workload: the federation's workload mix ---- */

/* A class as written, before it becomes a slice's ask. */
typedef struct {
    uint32_t share; /* thousandths of one accelerator; 0 = not given */
    uint32_t count; /* accelerators; 0 = not given */
    uint32_t cores;
    uint64_t mem_bytes;
    double weight;
} s_class_t;

/* A weight: a decimal number such as 0.12 or 120, above 0, at most PEER_WORKLOAD_WEIGHT_MAX.
 * Digits with an optional fraction, as every quantity of the configuration (no sign, no
 * exponent), so that what strtod reads is what was written. */
static int s_weight(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    (void)arg;
    const char *t = node && node->kind == YNODE_SCALAR ? node->value : NULL;
    size_t len = t ? strlen(t) : 0, dots = 0;
    bool ok = len > 0 && len <= 32;
    for (size_t i = 0; ok && i < len; i++) {
        if (t[i] == '.')
            ok = ++dots == 1 && i > 0 && i + 1 < len; /* a digit on both sides */
        else
            ok = t[i] >= '0' && t[i] <= '9';
    }
    double w = ok ? strtod(t, NULL) : 0;
    if (!(w > 0 && w <= PEER_WORKLOAD_WEIGHT_MAX)) {
        yconf_error(doc, node, path,
                    "expected a weight above 0 and at most %.0f, such as 0.12 or 120 (how "
                    "often the class comes)",
                    PEER_WORKLOAD_WEIGHT_MAX);
        return CPN_E_CONFIG;
    }
    *(double *)dst = w;
    return CPN_OK;
}

/* One class of the list: its keys bound, the ask checked and made a slice's ask. */
static int s_workload_class(yconf_t *doc, const ynode_t *item, const char *path, fgd_task_t *out,
                            double *weight)
{
    /* clang-format off */
    const yfield_t fields[] = {
        {.key = "share", .kind = YF_CUSTOM, .off = offsetof(s_class_t, share),
         .custom = yconf_bind_share},
        {.key = "count", .kind = YF_U32, .off = offsetof(s_class_t, count), .min = 1,
         .max = FGD_DEV_MAX},
        {.key = "cores", .kind = YF_U32, .off = offsetof(s_class_t, cores), .min = 0,
         .max = 1u << 20},
        {.key = "memory", .kind = YF_BYTES, .off = offsetof(s_class_t, mem_bytes), .min = 0,
         .max = 1ULL << 60},
        {.key = "weight", .kind = YF_CUSTOM, .off = offsetof(s_class_t, weight),
         .required = true, .custom = s_weight},
    };
    /* clang-format on */
    s_class_t c = {0};
    if (!item || item->kind != YNODE_MAP) {
        yconf_error(doc, item, path, "expected a map {share or count, cores, memory, weight}");
        return CPN_E_CONFIG;
    }
    if (yconf_bind(doc, item, path, fields, sizeof fields / sizeof fields[0], &c) != CPN_OK)
        return CPN_E_CONFIG;
    if (c.share == 0 && c.count == 0) {
        yconf_error(doc, item, path,
                    "expected `share` (of one accelerator, such as 0.46) or `count` (whole "
                    "accelerators)");
        return CPN_E_CONFIG;
    }
    if (c.count > 1 && c.share != 0 && c.share < FGD_MILLI) {
        char cpath[300];
        snprintf(cpath, sizeof cpath, "%s.count", path);
        yconf_error(doc, yconf_get(item, "count"), cpath,
                    "a share below 1 is of one accelerator; %u whole ones are share 1", c.count);
        return CPN_E_CONFIG;
    }
    /* The ask a slice request of this shape makes (peer_devices_ask): the same classes. */
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    r.share = c.share ? c.share : FGD_MILLI;
    r.accel_count = c.count ? c.count : 1;
    r.cores = c.cores;
    r.mem_bytes = c.mem_bytes;
    if (peer_devices_ask(&r, out) != CPN_OK) {
        yconf_error(doc, item, path, "not an accelerator ask a slice can make");
        return CPN_E_CONFIG;
    }
    *weight = c.weight;
    return CPN_OK;
}

/* workload: [{share | count, cores, memory, weight}, ...], at most PEER_WORKLOAD_MAX classes
 * and PEER_WORKLOAD_ASKS_MAX distinct asks (what fgd_workload_add takes: a trial proves it). */
static int s_workload(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    peer_config_t *cfg = dst;
    (void)arg;
    if (!node || node->kind != YNODE_SEQ || node->n == 0 || node->n > PEER_WORKLOAD_MAX) {
        yconf_error(doc, node, path, "expected a list of 1 to %d classes", PEER_WORKLOAD_MAX);
        return CPN_E_CONFIG;
    }
    cfg->workload = calloc(node->n, sizeof *cfg->workload);
    cfg->workload_weight = calloc(node->n, sizeof *cfg->workload_weight);
    fgd_workload_t *trial = fgd_workload_new();
    int r = cfg->workload && cfg->workload_weight && trial ? CPN_OK : CPN_E_NOMEM;
    for (size_t i = 0; r != CPN_E_NOMEM && i < node->n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (s_workload_class(doc, node->items[i], ipath, &cfg->workload[i],
                             &cfg->workload_weight[i]) != CPN_OK) {
            r = CPN_E_CONFIG;
            continue;
        }
        int a = fgd_workload_add(trial, &cfg->workload[i], cfg->workload_weight[i]);
        if (a == CPN_E_TOO_BIG) {
            yconf_error(doc, node->items[i], ipath,
                        "more than %d distinct accelerator asks (share, count) in the list",
                        PEER_WORKLOAD_ASKS_MAX);
            r = CPN_E_CONFIG;
            break;
        }
        if (a != CPN_OK)
            r = a;
    }
    fgd_workload_destroy(&trial);
    cfg->n_workload = r == CPN_OK ? node->n : 0;
    return r;
}

/* ---- provision: drivers and which package uses which ---- */

static int s_note_provision(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                            void *arg)
{
    (void)dst;
    if (!node || node->kind != YNODE_MAP) {
        yconf_error(doc, node, path, "expected a map with `drivers` and `packages`");
        return CPN_E_CONFIG;
    }
    ((s_ctx_t *)arg)->provision = node;
    return CPN_OK;
}

static int s_driver_options(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                            void *arg)
{
    drv_config_t *d = dst;
    (void)arg;
    if (!node || node->kind != YNODE_MAP || node->n > DRV_OPTIONS_MAX) {
        yconf_error(doc, node, path, "expected a map of at most %d driver options",
                    DRV_OPTIONS_MAX);
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < node->n; i++) {
        const ynode_t *v = node->items[i];
        if (!v || v->kind != YNODE_SCALAR || !v->value || strlen(node->keys[i]) >= CPN_NAME_MAX ||
            strlen(v->value) >= DRV_OPTION_LEN) {
            yconf_error(doc, v, path, "%s: expected a value of at most %d bytes", node->keys[i],
                        DRV_OPTION_LEN - 1);
            return CPN_E_CONFIG;
        }
        snprintf(d->options[i].key, sizeof d->options[i].key, "%s", node->keys[i]);
        snprintf(d->options[i].value, sizeof d->options[i].value, "%s", v->value);
    }
    d->n_options = node->n;
    return CPN_OK;
}

/* A driver's program: resolved like the other paths, may be absent (slurm). */
static int s_program(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    if (s_scalar(doc, node, path, "a program path") != CPN_OK)
        return CPN_E_CONFIG;
    if (s_resolve(arg, node->value, dst, sizeof ((drv_config_t *)0)->program) != CPN_OK) {
        yconf_error(doc, node, path, "path too long");
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

static int s_driver(yconf_t *doc, const ynode_t *item, const char *path, s_ctx_t *ctx,
                    drv_config_t *d)
{
    /* clang-format off */
    const yfield_t fields[] = {
        {.key = "name", .kind = YF_STR, .off = offsetof(drv_config_t, name),
         .size = sizeof d->name, .required = true, .min = 1},
        {.key = "type", .kind = YF_STR, .off = offsetof(drv_config_t, type),
         .size = sizeof d->type, .required = true, .min = 1},
        {.key = "program", .kind = YF_CUSTOM, .off = offsetof(drv_config_t, program),
         .custom = s_program, .arg = ctx},
        {.key = "timeout", .kind = YF_DURATION, .off = offsetof(drv_config_t, timeout_s),
         .min = 1, .max = PROVISION_TIMEOUT_MAX_S},
        {.key = "concurrency", .kind = YF_U32, .off = offsetof(drv_config_t, concurrency),
         .min = 1, .max = PROVISION_CONCURRENCY_MAX},
        {.key = "retries", .kind = YF_U32, .off = offsetof(drv_config_t, retries),
         .min = 0, .max = PROVISION_RETRIES_MAX},
        {.key = "backoff", .kind = YF_DURATION, .off = offsetof(drv_config_t, backoff_s),
         .min = 1, .max = PROVISION_BACKOFF_MAX_S},
        {.key = "inventory", .kind = YF_DURATION, .off = offsetof(drv_config_t, inventory_s),
         .min = 0, .max = 24 * 3600},
        {.key = "options", .kind = YF_CUSTOM, .off = 0, .custom = s_driver_options},
    };
    /* clang-format on */
    memset(d, 0, sizeof *d);
    d->timeout_s = PEER_DRIVER_TIMEOUT_DEFAULT_S;
    d->concurrency = PEER_DRIVER_CONCURRENCY_DEFAULT;
    d->retries = PEER_DRIVER_RETRIES_DEFAULT;
    d->backoff_s = PEER_DRIVER_BACKOFF_DEFAULT_S;
    if (yconf_bind(doc, item, path, fields, sizeof fields / sizeof fields[0], d) != CPN_OK)
        return CPN_E_CONFIG;
    const drv_ops_t *ops = driver_find(d->type);
    char why[CPN_REASON_MAX] = "";
    if (!ops) {
        yconf_error(doc, yconf_get(item, "type"), path, "type: unknown driver type \"%s\"",
                    d->type);
        return CPN_E_CONFIG;
    }
    if (ops->check && ops->check(d, why) != CPN_OK) {
        yconf_error(doc, item, path, "%s", why);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

static int s_provision_drivers(yconf_t *doc, const ynode_t *node, const char *path,
                               peer_config_t *cfg, s_ctx_t *ctx)
{
    if (!node || node->kind != YNODE_SEQ || node->n == 0 || node->n > PEER_DRIVERS_MAX) {
        yconf_error(doc, node, path, "expected a list of 1 to %d drivers", PEER_DRIVERS_MAX);
        return CPN_E_CONFIG;
    }
    if (!(cfg->drivers = calloc(node->n, sizeof *cfg->drivers)))
        return CPN_E_NOMEM;
    int r = CPN_OK;
    for (size_t i = 0; i < node->n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (!node->items[i] || node->items[i]->kind != YNODE_MAP) {
            yconf_error(doc, node->items[i], ipath, "expected a map");
            r = CPN_E_CONFIG;
            continue;
        }
        if (s_driver(doc, node->items[i], ipath, ctx, &cfg->drivers[i]) != CPN_OK)
            r = CPN_E_CONFIG;
        for (size_t j = 0; r == CPN_OK && j < i; j++)
            if (strcmp(cfg->drivers[j].name, cfg->drivers[i].name) == 0) {
                yconf_error(doc, node->items[i], ipath, "name: \"%s\" used twice",
                            cfg->drivers[i].name);
                r = CPN_E_CONFIG;
            }
    }
    cfg->n_drivers = node->n;
    return r;
}

/* provision: {drivers: [...], packages: {package id: driver name}}. */
static int s_provision(yconf_t *doc, const ynode_t *node, peer_config_t *cfg, s_ctx_t *ctx)
{
    int r = CPN_OK;
    for (size_t i = 0; i < node->n; i++)
        if (strcmp(node->keys[i], "drivers") != 0 && strcmp(node->keys[i], "packages") != 0) {
            yconf_error(doc, node->items[i], "provision", "unknown key \"%s\"", node->keys[i]);
            r = CPN_E_CONFIG;
        }
    if (s_provision_drivers(doc, yconf_get(node, "drivers"), "provision.drivers", cfg, ctx) !=
        CPN_OK)
        return CPN_E_CONFIG;
    const ynode_t *pk = yconf_get(node, "packages");
    if (!pk || pk->kind != YNODE_MAP) {
        yconf_error(doc, pk ? pk : node, "provision.packages",
                    "expected a map of package id: driver name");
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < pk->n; i++) {
        char ipath[300];
        snprintf(ipath, sizeof ipath, "provision.packages.%s", pk->keys[i]);
        size_t p = 0;
        while (p < cfg->n_packages && strcmp(cfg->packages[p].id, pk->keys[i]) != 0)
            p++;
        const ynode_t *v = pk->items[i];
        int d = v && v->kind == YNODE_SCALAR && v->value ? peer_config_driver(cfg, v->value) : -1;
        if (p == cfg->n_packages) {
            yconf_error(doc, v, ipath, "no package with this id");
            r = CPN_E_CONFIG;
        } else if (d < 0) {
            yconf_error(doc, v, ipath, "expected the name of a driver in provision.drivers");
            r = CPN_E_CONFIG;
        } else {
            cfg->pkg_driver[p] = d;
        }
    }
    return r;
}

int peer_config_driver(const peer_config_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_drivers; i++)
        if (strcmp(self->drivers[i].name, name) == 0)
            return (int)i;
    return -1;
}

int peer_config_load(const char *path, peer_config_t **out, yconf_t **doc_out)
{
    int r;
    yconf_t *doc = NULL;
    s_ctx_t ctx = {0};
    peer_config_t *cfg = calloc(1, sizeof *cfg);
    *out = NULL;
    if (doc_out)
        *doc_out = NULL;
    if (!cfg)
        return CPN_E_NOMEM;
    if (snprintf(cfg->path, sizeof cfg->path, "%s", path) >= (int)sizeof cfg->path) {
        r = CPN_E_TOO_BIG;
        goto out;
    }
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(ctx.dir, sizeof ctx.dir, "%.*s", (int)(slash - path == 0 ? 1 : slash - path),
                 path);
    cfg->refresh_s = PEER_REFRESH_DEFAULT_S;
    cfg->usage_interval_s = CPN_USAGE_INTERVAL_DEFAULT_S;
    cfg->max_lease_s = PEER_MAX_LEASE_DEFAULT_S;
    cfg->request_age_s = PEER_REQUEST_AGE_DEFAULT_S;
    cfg->tenants_any = false;

    if ((r = yconf_load_file(path, &doc)) != CPN_OK)
        goto out;
    const ynode_t *root = yconf_root(doc);
    if (!root || root->kind != YNODE_MAP) {
        yconf_error(doc, root, "", "expected a map of settings");
        r = CPN_E_CONFIG;
        goto out;
    }
    /* The default region is needed while binding packages, whatever the key order. */
    const ynode_t *region = yconf_get(root, "region");
    if (region && region->kind == YNODE_SCALAR)
        ctx.default_region = region->value;

    /* clang-format off */
    const yfield_t fields[] = {
        {.key = "name", .kind = YF_STR, .off = offsetof(peer_config_t, name),
         .size = sizeof cfg->name, .required = true, .min = 1},
        {.key = "key", .kind = YF_CUSTOM, .off = offsetof(peer_config_t, key_path),
         .required = true, .custom = s_path, .arg = &ctx},
        {.key = "database", .kind = YF_CUSTOM, .off = offsetof(peer_config_t, database),
         .required = true, .custom = s_path, .arg = &ctx},
        {.key = "region", .kind = YF_STR, .off = offsetof(peer_config_t, region),
         .size = sizeof cfg->region},
        {.key = "log_level", .kind = YF_STR, .off = offsetof(peer_config_t, log_level),
         .size = sizeof cfg->log_level},
        {.key = "http", .kind = YF_STR, .off = offsetof(peer_config_t, http),
         .size = sizeof cfg->http, .min = 1},
        {.key = "refresh", .kind = YF_DURATION, .off = offsetof(peer_config_t, refresh_s),
         .min = PEER_REFRESH_MIN_S, .max = PEER_REFRESH_MAX_S},
        {.key = "usage_interval", .kind = YF_DURATION,
         .off = offsetof(peer_config_t, usage_interval_s), .min = CPN_USAGE_INTERVAL_MIN_S,
         .max = CPN_USAGE_INTERVAL_MAX_S},
        {.key = "max_lease", .kind = YF_DURATION, .off = offsetof(peer_config_t, max_lease_s),
         .min = 1, .max = PEER_MAX_LEASE_MAX_S},
        {.key = "request_age", .kind = YF_DURATION,
         .off = offsetof(peer_config_t, request_age_s), .min = PEER_REQUEST_AGE_MIN_S,
         .max = PEER_REQUEST_AGE_MAX_S},
        {.key = "brokers", .kind = YF_CUSTOM, .off = 0, .required = true, .custom = s_brokers,
         .arg = &ctx},
        {.key = "tenants", .kind = YF_CUSTOM, .off = 0, .required = true, .custom = s_tenants,
         .arg = &ctx},
        {.key = "packages", .kind = YF_CUSTOM, .off = 0, .required = true,
         .custom = s_packages, .arg = &ctx},
        {.key = "provision", .kind = YF_CUSTOM, .off = 0, .custom = s_note_provision,
         .arg = &ctx},
        {.key = "workload", .kind = YF_CUSTOM, .off = 0, .custom = s_workload},
    };
    /* clang-format on */
    r = yconf_bind(doc, root, "", fields, sizeof fields / sizeof fields[0], cfg);
    if (cfg->log_level[0] && cpn_log_level_parse(cfg->log_level) < 0) {
        yconf_error(doc, yconf_get(root, "log_level"), "log_level",
                    "expected debug, info, warn or error");
        r = CPN_E_CONFIG;
    }
    struct sockaddr_in sa;
    const char *why = NULL;
    if (cfg->http[0] && cpn_hostport_parse(cfg->http, &sa, &why) != CPN_OK) {
        yconf_error(doc, yconf_get(root, "http"), "http",
                    "%s (such as 9465 for 127.0.0.1:9465, or 0.0.0.0:9465)", why);
        r = CPN_E_CONFIG;
    }
    if (cfg->n_packages > 0) {
        if (!(cfg->pkg_driver = malloc(cfg->n_packages * sizeof *cfg->pkg_driver))) {
            r = CPN_E_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < cfg->n_packages; i++)
            cfg->pkg_driver[i] = -1; /* no driver: today's path */
        if (ctx.provision && s_provision(doc, ctx.provision, cfg, &ctx) != CPN_OK)
            r = CPN_E_CONFIG;
    }
    if (r == CPN_OK && yconf_error_count(doc) > 0)
        r = CPN_E_CONFIG;
out:
    if (r != CPN_OK)
        peer_config_destroy(&cfg);
    if (doc_out)
        *doc_out = doc;
    else
        yconf_destroy(&doc);
    *out = cfg;
    return r;
}

void peer_config_destroy(peer_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_config_t *self = *self_p;
    free(self->tenants);
    free(self->packages);
    free(self->floors);
    free(self->drivers);
    free(self->pkg_driver);
    free(self->workload);
    free(self->workload_weight);
    free(self);
    *self_p = NULL;
}

bool peer_config_tenant_ok(const peer_config_t *self, const uint8_t pk[CPN_PK_LEN])
{
    if (self->tenants_any)
        return true;
    for (size_t i = 0; i < self->n_tenants; i++)
        if (sodium_memcmp(self->tenants[i], pk, CPN_PK_LEN) == 0)
            return true;
    return false;
}
