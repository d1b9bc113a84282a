/* policy.c - the broker's policy from YAML: binding tables, cross-field validation, lookups.
 *
 * Binding is three layers: yconf tables for maps (one table per YAML map, all writing into
 * policy_t, so nested YAML maps bind with offset 0), custom binders for the few values that
 * are not a plain kind (lists of maps, `trusted: any`, priorities, "unlimited" quotas, rates),
 * then s_validate for rules across fields, which walks the YAML tree again so that every
 * error it finds points at the line of the value at fault.
 */
#include "policy.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sodium.h>

#include "batch.h"
#include "ratelimit.h"
#include "units.h"

#define S_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S_KEYPATH_MAX 256

/* A table entry for a plain field of `type`. */
#define S_Y(k, kd, type, field, req, lo, hi)                                                   \
    {.key = (k), .kind = (kd), .off = offsetof(type, field),                                  \
     .size = sizeof(((type *)0)->field), .required = (req), .min = (lo), .max = (hi)}
/* A plain field that a reload cannot change: the daemon built a socket, a file or a table
 * from it at start (policy_restart_needed finds these rows; any other key applies live). */
#define S_YR(k, kd, type, field, req, lo, hi)                                                  \
    {.key = (k), .kind = (kd), .off = offsetof(type, field),                                  \
     .size = sizeof(((type *)0)->field), .required = (req), .min = (lo), .max = (hi),         \
     .restart = true}
/* A nested YAML map bound by `table` into the struct at offset off_. */
#define S_YMAP(k, off_, table, req)                                                            \
    {.key = (k), .kind = YF_MAP, .off = (off_), .sub = (table),                                \
     .n_sub = S_ARRAY_LEN(table), .required = (req)}
#define S_YCUSTOM(k, type, field, fn, arg_, req)                                               \
    {.key = (k), .kind = YF_CUSTOM, .off = offsetof(type, field), .custom = (fn),              \
     .arg = (void *)(arg_), .required = (req)}
/* A custom binder that receives the whole policy_t. */
#define S_YPOLICY(k, fn, arg_)                                                                 \
    {.key = (k), .kind = YF_CUSTOM, .off = 0, .custom = (fn), .arg = (void *)(arg_)}

/* ---- custom binders ---- */

static const char *s_kind_name(const ynode_t *n)
{
    return n->kind == YNODE_MAP ? "a map" : n->kind == YNODE_SEQ ? "a list" : "a scalar";
}

static bool s_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static const struct {
    const char *name;
    uint32_t value;
} s_prio_classes[] = {
    {"high", POLICY_PRIO_HIGH},
    {"normal", POLICY_PRIO_NORMAL},
    {"low", POLICY_PRIO_LOW},
};

/* priority: "high" | "normal" | "low" | 0..POLICY_PRIO_MAX -> uint32_t */
static int s_bind_priority(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                           void *arg)
{
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        for (size_t i = 0; i < S_ARRAY_LEN(s_prio_classes); i++) {
            if (strcmp(node->value, s_prio_classes[i].name) == 0) {
                *(uint32_t *)dst = s_prio_classes[i].value;
                return CPN_OK;
            }
        }
        if (s_parse_uint(node->value, POLICY_PRIO_MAX, &v)) {
            *(uint32_t *)dst = (uint32_t)v;
            return CPN_OK;
        }
    }
    yconf_error(doc, node, path, "expected high, normal, low or an integer from 0 to %d",
                POLICY_PRIO_MAX);
    return CPN_E_CONFIG;
}

/* quota count: a non-negative integer or "unlimited" -> uint64_t */
static int s_bind_quota_count(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                              void *arg)
{
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        if (strcmp(node->value, "unlimited") == 0) {
            *(uint64_t *)dst = POLICY_UNLIMITED;
            return CPN_OK;
        }
        if (s_parse_uint(node->value, POLICY_UNLIMITED - 1, &v)) {
            *(uint64_t *)dst = v;
            return CPN_OK;
        }
    }
    yconf_error(doc, node, path, "expected a non-negative integer or unlimited");
    return CPN_E_CONFIG;
}

/* quota spend rate: a price per hour ("500.0") or "unlimited" -> thousandths */
static int s_bind_quota_price(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                              void *arg)
{
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        if (strcmp(node->value, "unlimited") == 0) {
            *(uint64_t *)dst = POLICY_UNLIMITED;
            return CPN_OK;
        }
        if (cpn_parse_price(node->value, &v) == CPN_OK && v != POLICY_UNLIMITED) {
            *(uint64_t *)dst = v;
            return CPN_OK;
        }
    }
    yconf_error(doc, node, path,
                "expected a price per hour such as 500.0 (at most 3 decimals) or unlimited");
    return CPN_E_CONFIG;
}

#define S_RATE_MAX 1000000 /* messages per second per sender */

/* rate: "200/s" or "200" (per second); 0 = no limit -> uint32_t */
static int s_bind_rate(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                       void *arg)
{
    char num[16];
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        const char *slash = strchr(node->value, '/');
        size_t len = slash ? (size_t)(slash - node->value) : strlen(node->value);
        if (len < sizeof num && (!slash || strcmp(slash, "/s") == 0)) {
            memcpy(num, node->value, len);
            num[len] = '\0';
            if (s_parse_uint(num, S_RATE_MAX, &v)) {
                *(uint32_t *)dst = (uint32_t)v;
                return CPN_OK;
            }
        }
    }
    yconf_error(doc, node, path,
                "expected a rate such as 200/s (0 to %d per second; 0 = no limit)", S_RATE_MAX);
    return CPN_E_CONFIG;
}

/* placement.batch.wait: "10ms" or "1s". A unit is required: a bare number means seconds in
 * every other duration of the file, and milliseconds here would be a trap. */
static int s_bind_wait_ms(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                          void *arg)
{
    char num[10];
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        size_t len = strspn(node->value, "0123456789");
        const char *unit = node->value + len;
        uint64_t scale = strcmp(unit, "ms") == 0 ? 1 : strcmp(unit, "s") == 0 ? 1000 : 0;
        if (scale && len > 0 && len < sizeof num) {
            memcpy(num, node->value, len);
            num[len] = '\0';
            if (s_parse_uint(num, UINT32_MAX, &v) && v * scale >= POLICY_BATCH_WAIT_MIN_MS &&
                v * scale <= POLICY_BATCH_WAIT_MAX_MS) {
                *(uint64_t *)dst = v * scale;
                return CPN_OK;
            }
        }
    }
    yconf_error(doc, node, path, "expected a time from %dms to %ds such as 10ms",
                POLICY_BATCH_WAIT_MIN_MS, POLICY_BATCH_WAIT_MAX_MS / 1000);
    return CPN_E_CONFIG;
}

static const yfield_t s_batch_fields[] = {
    S_Y("max", YF_U32, policy_batch_t, max, false, 1, BATCH_MAX),
    S_YCUSTOM("wait", policy_batch_t, wait_ms, s_bind_wait_ms, NULL, false),
};

/* placement.batch: the map turns batch matching on; a key left out keeps its default. */
static int s_bind_batch(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                        void *arg)
{
    policy_batch_t *b = dst;
    (void)arg;
    b->on = true;
    if (node->kind != YNODE_MAP) {
        yconf_error(doc, node, path, "expected a map such as {max: 200, wait: 10ms}, found %s",
                    s_kind_name(node));
        return CPN_E_CONFIG;
    }
    return yconf_bind(doc, node, path, s_batch_fields, S_ARRAY_LEN(s_batch_fields), b);
}

/* A list of maps bound item by item into a malloc'd vector of the policy. */
typedef struct {
    const char *what; /* for messages: "tenant" */
    const yfield_t *fields;
    size_t n_fields;
    size_t item_size;
    size_t max;
    void (*init)(void *item);
    size_t vec_off;   /* offsetof(policy_t, <vector pointer>) */
    size_t count_off; /* offsetof(policy_t, <size_t count>) */
} s_list_t;

static int s_bind_list(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                       void *arg)
{
    const s_list_t *spec = arg;
    uint8_t *pol = dst;
    void **vec_p = (void **)(pol + spec->vec_off);
    size_t *count_p = (size_t *)(pol + spec->count_off);
    uint8_t *vec;
    char ip[S_KEYPATH_MAX];
    int r = CPN_OK;
    if (node->kind != YNODE_SEQ) {
        yconf_error(doc, node, path, "expected a list of %ss, found %s", spec->what,
                    s_kind_name(node));
        return CPN_E_CONFIG;
    }
    if (node->n > spec->max) {
        yconf_error(doc, node, path, "%zu %ss, more than the limit of %zu", node->n, spec->what,
                    spec->max);
        return CPN_E_CONFIG;
    }
    free(*vec_p);
    *vec_p = NULL;
    *count_p = 0;
    if (node->n == 0)
        return CPN_OK;
    vec = calloc(node->n, spec->item_size);
    if (!vec) {
        yconf_error(doc, node, path, "out of memory");
        return CPN_E_NOMEM;
    }
    for (size_t i = 0; i < node->n; i++) {
        uint8_t *item = vec + i * spec->item_size;
        if (spec->init)
            spec->init(item);
        snprintf(ip, sizeof ip, "%.200s[%zu]", path, i);
        if (yconf_bind(doc, node->items[i], ip, spec->fields, spec->n_fields, item) != CPN_OK)
            r = CPN_E_CONFIG;
    }
    *vec_p = vec;
    *count_p = node->n;
    return r;
}

static const yfield_t s_quota_fields[] = {
    S_YCUSTOM("accelerators", policy_quota_t, accelerators, s_bind_quota_count, NULL, false),
    S_YCUSTOM("units", policy_quota_t, units, s_bind_quota_count, NULL, false),
    S_YCUSTOM("spend_rate", policy_quota_t, spend_rate, s_bind_quota_price, NULL, false),
};

/* budget.amount: a price ("2500.0"), more than 0 */
static int s_bind_budget_amount(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                                void *arg)
{
    uint64_t v;
    (void)arg;
    if (node->kind == YNODE_SCALAR && cpn_parse_price(node->value, &v) == CPN_OK && v > 0 &&
        v <= POLICY_BUDGET_MAX) {
        *(uint64_t *)dst = v;
        return CPN_OK;
    }
    yconf_error(doc, node, path,
                "expected an amount such as 2500.0 (above 0, at most 10^12, 3 decimals)");
    return CPN_E_CONFIG;
}

/* budget.period: month or day -> policy_budget_period_t */
static int s_bind_budget_period(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                                void *arg)
{
    (void)arg;
    if (node->kind == YNODE_SCALAR && strcmp(node->value, "month") == 0)
        *(uint32_t *)dst = POLICY_BUDGET_MONTH;
    else if (node->kind == YNODE_SCALAR && strcmp(node->value, "day") == 0)
        *(uint32_t *)dst = POLICY_BUDGET_DAY;
    else {
        yconf_error(doc, node, path, "expected month or day");
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

static const yfield_t s_budget_fields[] = {
    S_YCUSTOM("amount", policy_budget_t, amount, s_bind_budget_amount, NULL, true),
    S_YCUSTOM("period", policy_budget_t, period, s_bind_budget_period, NULL, false),
};

static const yfield_t s_tenant_fields[] = {
    S_Y("name", YF_STR, policy_tenant_t, name, true, 1, 0),
    S_Y("key", YF_KEY, policy_tenant_t, key, true, 0, 0),
    S_YCUSTOM("priority", policy_tenant_t, priority, s_bind_priority, NULL, false),
    S_Y("operator", YF_BOOL, policy_tenant_t, is_operator, false, 0, 0),
    S_YMAP("quota", offsetof(policy_tenant_t, quota), s_quota_fields, false),
    S_YMAP("budget", offsetof(policy_tenant_t, budget), s_budget_fields, false),
};

static void s_tenant_init(void *item)
{
    policy_tenant_t *t = item;
    t->priority = POLICY_PRIO_NORMAL;
    t->quota.accelerators = t->quota.units = t->quota.spend_rate = POLICY_UNLIMITED;
}

static const s_list_t s_tenants_list = {
    .what = "tenant",
    .fields = s_tenant_fields,
    .n_fields = S_ARRAY_LEN(s_tenant_fields),
    .item_size = sizeof(policy_tenant_t),
    .max = POLICY_TENANTS_MAX,
    .init = s_tenant_init,
    .vec_off = offsetof(policy_t, tenants),
    .count_off = offsetof(policy_t, n_tenants),
};

static const yfield_t s_peer_fields[] = {
    S_Y("name", YF_STR, policy_peer_t, name, true, 1, 0),
    S_Y("key", YF_KEY, policy_peer_t, key, true, 0, 0),
};

static const s_list_t s_peers_list = {
    .what = "peer",
    .fields = s_peer_fields,
    .n_fields = S_ARRAY_LEN(s_peer_fields),
    .item_size = sizeof(policy_peer_t),
    .max = POLICY_PEERS_MAX,
    .vec_off = offsetof(policy_t, peers.trusted),
    .count_off = offsetof(policy_t, peers.n_trusted),
};

static const yfield_t s_member_fields[] = {
    S_Y("name", YF_STR, policy_member_t, name, true, 1, 0),
    S_Y("key", YF_KEY, policy_member_t, key, true, 0, 0),
    S_Y("endpoint", YF_STR, policy_member_t, endpoint, true, 1, 0),
};

static const s_list_t s_members_list = {
    .what = "member",
    .fields = s_member_fields,
    .n_fields = S_ARRAY_LEN(s_member_fields),
    .item_size = sizeof(policy_member_t),
    .max = POLICY_MEMBERS_MAX,
    .vec_off = offsetof(policy_t, federation.members),
    .count_off = offsetof(policy_t, federation.n_members),
};

/* peers.trusted: `any`, or a list of {name, key}. */
static int s_bind_trusted(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                          void *arg)
{
    policy_t *pol = dst;
    (void)arg;
    if (node->kind == YNODE_SCALAR) {
        if (strcmp(node->value, "any") == 0) {
            pol->peers.any = true;
            return CPN_OK;
        }
        yconf_error(doc, node, path, "expected any or a list of peers ({name, key})");
        return CPN_E_CONFIG;
    }
    pol->peers.any = false;
    return s_bind_list(doc, node, path, dst, (void *)&s_peers_list);
}

/* federation.use_members: a list of member names. Only the shape is checked here; the names
 * are matched to members in s_validate, once every member is bound. */
static int s_bind_names_shape(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                              void *arg)
{
    char ip[S_KEYPATH_MAX];
    int r = CPN_OK;
    (void)dst;
    (void)arg;
    if (node->kind != YNODE_SEQ) {
        yconf_error(doc, node, path, "expected a list of member names, found %s",
                    s_kind_name(node));
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < node->n; i++) {
        const ynode_t *it = node->items[i];
        if (it->kind != YNODE_SCALAR || !it->value[0] ||
            strlen(it->value) >= CPN_NAME_MAX) {
            snprintf(ip, sizeof ip, "%.200s[%zu]", path, i);
            yconf_error(doc, it, ip, "expected a member name of 1 to %d characters",
                        CPN_NAME_MAX - 1);
            r = CPN_E_CONFIG;
        }
    }
    return r;
}

/* federation.spill: `rank`, `cost`, `latency`, or a list of member names (matched to members
 * in s_check_spill, once every member is bound). */
static int s_bind_spill(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    static const char *const names[] = {"rank", "cost", "latency"};
    policy_t *pol = dst;
    (void)arg;
    if (node->kind == YNODE_SEQ) {
        pol->federation.spill = POLICY_SPILL_LIST;
        return s_bind_names_shape(doc, node, path, dst, arg);
    }
    for (size_t i = 0; node->kind == YNODE_SCALAR && i < S_ARRAY_LEN(names); i++)
        if (strcmp(node->value, names[i]) == 0) {
            pol->federation.spill = (policy_spill_t)i;
            return CPN_OK;
        }
    yconf_error(doc, node, path, "expected rank, cost, latency or a list of member names");
    return CPN_E_CONFIG;
}

static const yfield_t s_equiv_fields[] = {
    S_Y("model", YF_STR, match_equiv_t, model, true, 1, 0),
    S_Y("accept", YF_NAMES, match_equiv_t, accept, true, 0, 0),
};

/* placement.equivalences: a list of {model, accept: [models]} into match_policy_t. */
static int s_bind_equivalences(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                               void *arg)
{
    match_policy_t *mp = dst;
    char ip[S_KEYPATH_MAX];
    int r = CPN_OK;
    (void)arg;
    if (node->kind != YNODE_SEQ) {
        yconf_error(doc, node, path, "expected a list of {model, accept}, found %s",
                    s_kind_name(node));
        return CPN_E_CONFIG;
    }
    if (node->n > MATCH_EQUIV_MAX) {
        yconf_error(doc, node, path, "%zu rules, more than the limit of %d", node->n,
                    MATCH_EQUIV_MAX);
        return CPN_E_CONFIG;
    }
    memset(mp->equiv, 0, sizeof mp->equiv);
    for (size_t i = 0; i < node->n; i++) {
        snprintf(ip, sizeof ip, "%.200s[%zu]", path, i);
        if (yconf_bind(doc, node->items[i], ip, s_equiv_fields, S_ARRAY_LEN(s_equiv_fields),
                       &mp->equiv[i]) != CPN_OK) {
            r = CPN_E_CONFIG;
            continue;
        }
        if (mp->equiv[i].accept.n == 0) {
            char ap[S_KEYPATH_MAX];
            snprintf(ap, sizeof ap, "%.200s[%zu].accept", path, i);
            yconf_error(doc, yconf_get(node->items[i], "accept"), ap,
                        "expected at least one model");
            r = CPN_E_CONFIG;
        }
    }
    mp->n_equiv = (uint32_t)node->n;
    return r;
}

/* ---- the tables, one per YAML map ---- */

static const yfield_t s_transport_fields[] = {
    S_YR("curve", YF_BOOL, policy_t, broker.curve, false, 0, 0),
};

static const yfield_t s_broker_fields[] = {
    S_Y("name", YF_STR, policy_t, broker.name, false, 1, 0),
    S_YR("key", YF_STR, policy_t, broker.key_path, true, 1, 0),
    S_YR("listen", YF_STR, policy_t, broker.listen, true, 1, 0),
    S_YR("ledger", YF_STR, policy_t, broker.ledger_path, false, 1, 0),
    S_YR("http", YF_STR, policy_t, broker.http, false, 1, 0),
    S_YMAP("transport", 0, s_transport_fields, false),
};

static const yfield_t s_summary_fields[] = {
    S_Y("publish", YF_BOOL, policy_t, federation.summary.publish, false, 0, 0),
    S_Y("trust_any", YF_BOOL, policy_t, federation.summary.trust_any, false, 0, 0),
    S_Y("budget", YF_U32, policy_t, federation.summary.budget, false, 0, 100000000),
    S_Y("distance", YF_U32, policy_t, federation.summary.distance, false, 1, 64),
    S_Y("ttl", YF_DURATION, policy_t, federation.summary.ttl_s, false, 10, 86400),
};

static const yfield_t s_federation_fields[] = {
    S_Y("local_first", YF_BOOL, policy_t, federation.local_first, false, 0, 0),
    S_YPOLICY("use_members", s_bind_names_shape, NULL),
    S_YPOLICY("spill", s_bind_spill, NULL),
    S_Y("hello_timeout", YF_DURATION, policy_t, federation.hello_timeout_s, false, 1, 3600),
    S_Y("max_hops", YF_U32, policy_t, federation.max_hops, false, 1, 64),
    S_YMAP("summary", 0, s_summary_fields, false),
    S_YPOLICY("members", s_bind_list, &s_members_list),
};

static const yfield_t s_peers_fields[] = {
    S_YPOLICY("trusted", s_bind_trusted, NULL),
};

static const yfield_t s_weights_fields[] = {
    S_Y("price", YF_U32, policy_t, placement.w_price, false, 0, MATCH_WEIGHT_MAX),
    S_Y("region", YF_U32, policy_t, placement.w_region, false, 0, MATCH_WEIGHT_MAX),
    S_Y("vendor", YF_U32, policy_t, placement.w_vendor, false, 0, MATCH_WEIGHT_MAX),
    S_Y("local", YF_U32, policy_t, placement.w_local, false, 0, MATCH_WEIGHT_MAX),
};

static const yfield_t s_placement_fields[] = {
    S_Y("regions", YF_NAMES, policy_t, placement.allowed_regions, false, 0, 0),
    S_Y("prefer_vendors", YF_NAMES, policy_t, placement.prefer_vendors, false, 0, 0),
    S_YCUSTOM("equivalences", policy_t, placement, s_bind_equivalences, NULL, false),
    S_Y("max_price", YF_PRICE, policy_t, placement.max_price, false, 0, 0),
    S_YMAP("weights", 0, s_weights_fields, false),
    S_YCUSTOM("batch", policy_t, batch, s_bind_batch, NULL, false),
};

static const yfield_t s_rate_fields[] = {
    S_YCUSTOM("per_sender", policy_t, limits.rate_per_sender, s_bind_rate, NULL, false),
    S_Y("burst", YF_U32, policy_t, limits.rate_burst, false, 1, 1000000),
    S_YR("senders", YF_U32, policy_t, limits.rate_senders, false, 1, RATELIMIT_MAX_CAPACITY),
    S_YCUSTOM("refusals", policy_t, limits.rate_refusals, s_bind_rate, NULL, false),
};

#define S_FRAME_MIN (1024u)
#define S_FRAME_MAX (16u * 1024 * 1024)

static const yfield_t s_limits_fields[] = {
    S_YR("frame_size", YF_BYTES, policy_t, limits.frame_size, false, S_FRAME_MIN, S_FRAME_MAX),
    S_YMAP("rate", 0, s_rate_fields, false),
    S_YR("max_offers", YF_U32, policy_t, limits.max_offers, false, 1, 10000000),
    S_YR("max_pending", YF_U32, policy_t, limits.max_pending, false, 1, 1000000),
    S_Y("claim_timeout", YF_DURATION, policy_t, limits.claim_timeout_s, false, 1, 300),
    S_Y("claim_tries", YF_U32, policy_t, limits.claim_tries, false, 1, 16),
    S_YR("skew", YF_DURATION, policy_t, limits.skew_s, false, 1, 3600),
    S_YR("replay_capacity", YF_U32, policy_t, limits.replay_capacity, false, 16, 16777216),
    S_Y("audit_rows", YF_U64, policy_t, limits.audit_rows, false, 1000, 1000000000),
};

static const yfield_t s_root_fields[] = {
    S_YMAP("broker", 0, s_broker_fields, true),
    S_YMAP("federation", 0, s_federation_fields, false),
    S_YMAP("peers", 0, s_peers_fields, false),
    S_YPOLICY("tenants", s_bind_list, &s_tenants_list),
    S_YMAP("placement", 0, s_placement_fields, false),
    S_YMAP("limits", 0, s_limits_fields, false),
};

static void s_defaults(policy_t *pol)
{
    snprintf(pol->broker.name, sizeof pol->broker.name, "cpn-broker");
    snprintf(pol->broker.ledger_path, sizeof pol->broker.ledger_path, "ledger.db");
    pol->broker.curve = true;
    pol->federation.local_first = false;
    pol->federation.spill = POLICY_SPILL_RANK;
    pol->federation.hello_timeout_s = 15;
    pol->federation.max_hops = 8;
    pol->federation.summary.distance = 2;
    pol->federation.summary.ttl_s = 60;
    match_policy_default(&pol->placement);
    pol->batch = (policy_batch_t){.on = false,
                                  .max = POLICY_BATCH_MAX_DEFAULT,
                                  .wait_ms = POLICY_BATCH_WAIT_DEFAULT_MS};
    pol->limits = (policy_limits_t){
        .frame_size = 64 * 1024,
        .rate_per_sender = RATELIMIT_DEFAULT_RATE,
        .rate_burst = RATELIMIT_DEFAULT_BURST,
        .rate_senders = RATELIMIT_DEFAULT_CAPACITY,
        .rate_refusals = POLICY_REFUSALS_DEFAULT,
        .max_offers = 1000000,
        .max_pending = 10000,
        .claim_timeout_s = 5,
        .claim_tries = 3,
        .skew_s = 30,
        .replay_capacity = 65536,
        .audit_rows = LEDGER_AUDIT_MAX_DEFAULT,
    };
}

/* ---- validation across fields ---- */

/* The node at a dotted path of map keys from root, or NULL. */
static const ynode_t *s_node(const ynode_t *root, const char *a, const char *b)
{
    const ynode_t *n = yconf_get(root, a);
    return b ? yconf_get(n, b) : n;
}

/* The i-th item of a list node, or the list itself if it is not that long (positions only). */
static const ynode_t *s_item(const ynode_t *list, size_t i)
{
    if (list && list->kind == YNODE_SEQ && i < list->n)
        return list->items[i];
    return list;
}

/* A relative path in the file becomes relative to the file's directory. */
static void s_resolve(yconf_t *doc, const policy_t *pol, const ynode_t *node, const char *path,
                      char *buf, size_t cap)
{
    char full[POLICY_PATH_MAX];
    int k;
    if (!buf[0] || buf[0] == '/')
        return;
    k = snprintf(full, sizeof full, "%s/%s", pol->dir, buf);
    if (k < 0 || (size_t)k >= sizeof full || (size_t)k >= cap) {
        yconf_error(doc, node, path, "path too long once made relative to %s", pol->dir);
        return;
    }
    memcpy(buf, full, (size_t)k + 1);
}

static bool s_endpoint_ok(const char *ep)
{
    static const char *const schemes[] = {"tcp://", "ipc://"};
    for (size_t i = 0; i < S_ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(ep, schemes[i], n) == 0 && ep[n])
            return true;
    }
    return false;
}

static bool s_key_zero(const uint8_t key[CPN_PK_LEN])
{
    return sodium_is_zero(key, CPN_PK_LEN) != 0;
}

/* The member of federation.members named `name` (the last one, as before; names are unique
 * once the binder checked them), or NULL. */
static policy_member_t *s_member_named(policy_t *pol, const char *name)
{
    policy_member_t *m = NULL;
    for (size_t j = 0; j < pol->federation.n_members; j++)
        if (strcmp(pol->federation.members[j].name, name) == 0)
            m = &pol->federation.members[j];
    return m;
}

/* Keys across roles: a key is one tenant, one peer or one member, never two of them, so the
 * role of a sender is never ambiguous. */
typedef struct {
    const uint8_t *key;
    const char *name;
    const char *list; /* "tenants", "peers.trusted", "federation.members" */
    const ynode_t *list_node;
    size_t index;
} s_keyref_t;

static int s_keyref_cmp(const void *a, const void *b)
{
    const s_keyref_t *x = a, *y = b;
    int c = memcmp(x->key, y->key, CPN_PK_LEN);
    if (c)
        return c;
    c = strcmp(x->list, y->list);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int s_nameref_cmp(const void *a, const void *b)
{
    const s_keyref_t *x = a, *y = b;
    int c = strcmp(x->list, y->list);
    if (c)
        return c;
    c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void s_add_refs(s_keyref_t *refs, size_t *n, const void *vec, size_t count, size_t size,
                       size_t key_off, const char *list, const ynode_t *list_node)
{
    const uint8_t *base = vec;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *item = base + i * size;
        refs[*n] = (s_keyref_t){.key = item + key_off,
                                .name = (const char *)item, /* name is each struct's first */
                                .list = list,
                                .list_node = list_node,
                                .index = i};
        (*n)++;
    }
}

static void s_check_duplicates(yconf_t *doc, const policy_t *pol, const ynode_t *root)
{
    size_t total = pol->n_tenants + pol->peers.n_trusted + pol->federation.n_members;
    size_t n = 0;
    char path[S_KEYPATH_MAX];
    s_keyref_t *refs;
    if (total < 2)
        return;
    refs = calloc(total, sizeof *refs);
    if (!refs) {
        yconf_error(doc, root, "", "out of memory");
        return;
    }
    s_add_refs(refs, &n, pol->tenants, pol->n_tenants, sizeof(policy_tenant_t),
               offsetof(policy_tenant_t, key), "tenants", s_node(root, "tenants", NULL));
    s_add_refs(refs, &n, pol->peers.trusted, pol->peers.n_trusted, sizeof(policy_peer_t),
               offsetof(policy_peer_t, key), "peers.trusted", s_node(root, "peers", "trusted"));
    s_add_refs(refs, &n, pol->federation.members, pol->federation.n_members,
               sizeof(policy_member_t), offsetof(policy_member_t, key), "federation.members",
               s_node(root, "federation", "members"));

    /* Same key twice: reported at the later one (in list, then file order). Items whose key
     * did not bind are all-zero and already have their error. */
    qsort(refs, n, sizeof *refs, s_keyref_cmp);
    for (size_t i = 1; i < n; i++) {
        const s_keyref_t *a = &refs[i - 1], *b = &refs[i];
        if (s_key_zero(b->key) || memcmp(a->key, b->key, CPN_PK_LEN) != 0)
            continue;
        snprintf(path, sizeof path, "%s[%zu].key", b->list, b->index);
        yconf_error(doc, yconf_get(s_item(b->list_node, b->index), "key"), path,
                    "same key as %s[%zu] (%s)%s", a->list, a->index, a->name,
                    a->list == b->list ? "" : ": a key has one role only");
    }
    /* Same name twice within one list. */
    qsort(refs, n, sizeof *refs, s_nameref_cmp);
    for (size_t i = 1; i < n; i++) {
        const s_keyref_t *a = &refs[i - 1], *b = &refs[i];
        if (!b->name[0] || strcmp(a->list, b->list) != 0 || strcmp(a->name, b->name) != 0)
            continue;
        snprintf(path, sizeof path, "%s[%zu].name", b->list, b->index);
        yconf_error(doc, yconf_get(s_item(b->list_node, b->index), "name"), path,
                    "same name as %s[%zu]", a->list, a->index);
    }
    free(refs);
}

static void s_check_use_members(yconf_t *doc, policy_t *pol, const ynode_t *root)
{
    const ynode_t *use = s_node(root, "federation", "use_members");
    char path[S_KEYPATH_MAX];
    bool all = !use || use->kind != YNODE_SEQ;
    for (size_t i = 0; i < pol->federation.n_members; i++)
        pol->federation.members[i].use_offers = all;
    if (all)
        return;
    for (size_t i = 0; i < use->n; i++) {
        const ynode_t *it = use->items[i];
        if (it->kind != YNODE_SCALAR)
            continue; /* reported by the binder */
        policy_member_t *m = s_member_named(pol, it->value);
        if (m) {
            m->use_offers = true;
            continue;
        }
        snprintf(path, sizeof path, "federation.use_members[%zu]", i);
        yconf_error(doc, it, path, "no member named \"%.63s\" in federation.members",
                    it->value);
    }
}

/* federation.spill as a list: each name a member, once; the others are not spilled to. */
static void s_check_spill(yconf_t *doc, policy_t *pol, const ynode_t *root)
{
    const ynode_t *list = s_node(root, "federation", "spill");
    char path[S_KEYPATH_MAX];
    for (size_t i = 0; i < pol->federation.n_members; i++)
        pol->federation.members[i].spill_pos = POLICY_SPILL_UNLISTED;
    if (!list || list->kind != YNODE_SEQ)
        return;
    for (size_t i = 0; i < list->n; i++) {
        const ynode_t *it = list->items[i];
        if (it->kind != YNODE_SCALAR)
            continue; /* reported by the binder */
        policy_member_t *m = s_member_named(pol, it->value);
        snprintf(path, sizeof path, "federation.spill[%zu]", i);
        if (!m)
            yconf_error(doc, it, path, "no member named \"%.63s\" in federation.members",
                        it->value);
        else if (m->spill_pos != POLICY_SPILL_UNLISTED)
            yconf_error(doc, it, path, "member \"%.63s\" is already listed at [%u]", it->value,
                        m->spill_pos);
        else
            m->spill_pos = (uint32_t)i;
    }
}

static void s_check_equivalences(yconf_t *doc, const policy_t *pol, const ynode_t *root)
{
    const ynode_t *list = s_node(root, "placement", "equivalences");
    const match_policy_t *mp = &pol->placement;
    char path[S_KEYPATH_MAX];
    for (uint32_t i = 0; i < mp->n_equiv; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (!mp->equiv[i].model[0] || strcasecmp(mp->equiv[i].model, mp->equiv[j].model))
                continue;
            snprintf(path, sizeof path, "placement.equivalences[%u].model", i);
            yconf_error(doc, yconf_get(s_item(list, i), "model"), path,
                        "a rule for %s already exists at placement.equivalences[%u]; merge "
                        "their accept lists",
                        mp->equiv[i].model, j);
            break;
        }
    }
}

static void s_validate(yconf_t *doc, policy_t *pol, const ynode_t *root)
{
    const char *why = NULL;
    char path[S_KEYPATH_MAX];
    struct stat st;
    const ynode_t *members = s_node(root, "federation", "members");
    const ynode_t *keynode = s_node(root, "broker", "key");

    s_resolve(doc, pol, keynode, "broker.key", pol->broker.key_path,
              sizeof pol->broker.key_path);
    s_resolve(doc, pol, s_node(root, "broker", "ledger"), "broker.ledger",
              pol->broker.ledger_path, sizeof pol->broker.ledger_path);
    /* The secret key itself is the daemon's to load (and to refuse if others can read it);
     * here we only say early that it is missing. */
    if (keynode && pol->broker.key_path[0] && stat(pol->broker.key_path, &st) != 0)
        yconf_error(doc, keynode, "broker.key", "cannot use %.300s: %s", pol->broker.key_path,
                    strerror(errno));
    if (pol->broker.listen[0] && !s_endpoint_ok(pol->broker.listen))
        yconf_error(doc, s_node(root, "broker", "listen"), "broker.listen",
                    "expected an endpoint such as tcp://127.0.0.1:7400 or ipc:///path");
    struct sockaddr_in sa;
    if (pol->broker.http[0] && cpn_hostport_parse(pol->broker.http, &sa, &why) != CPN_OK)
        yconf_error(doc, s_node(root, "broker", "http"), "broker.http",
                    "%s (such as 9464 for 127.0.0.1:9464, or 0.0.0.0:9464)", why);
    why = NULL;
    for (size_t i = 0; i < pol->federation.n_members; i++) {
        const policy_member_t *m = &pol->federation.members[i];
        if (!m->endpoint[0] || s_endpoint_ok(m->endpoint))
            continue;
        snprintf(path, sizeof path, "federation.members[%zu].endpoint", i);
        yconf_error(doc, yconf_get(s_item(members, i), "endpoint"), path,
                    "expected an endpoint such as tcp://10.0.0.2:7400");
    }
    s_check_duplicates(doc, pol, root);
    s_check_use_members(doc, pol, root);
    s_check_spill(doc, pol, root);
    s_check_equivalences(doc, pol, root);
    if (match_policy_validate(&pol->placement, &why) != CPN_OK) {
        const ynode_t *pn = s_node(root, "placement", NULL);
        yconf_error(doc, pn ? pn : root, "placement", "%s", why ? why : "invalid");
    }
}

/* ---- indexes and lookups ---- */

#define S_INDEX_FNS(T, suffix)                                                                 \
    static int s_cmp_##suffix(const void *a, const void *b)                                   \
    {                                                                                          \
        return memcmp((*(const T *const *)a)->key, (*(const T *const *)b)->key, CPN_PK_LEN);   \
    }                                                                                          \
    static int s_find_##suffix(const void *pk, const void *elem)                              \
    {                                                                                          \
        return memcmp(pk, (*(const T *const *)elem)->key, CPN_PK_LEN);                         \
    }                                                                                          \
    static const T **s_index_##suffix(const T *vec, size_t n)                                  \
    {                                                                                          \
        const T **idx = calloc(n ? n : 1, sizeof *idx);                                        \
        if (!idx)                                                                              \
            return NULL;                                                                       \
        for (size_t i = 0; i < n; i++)                                                         \
            idx[i] = &vec[i];                                                                  \
        qsort(idx, n, sizeof *idx, s_cmp_##suffix);                                            \
        return idx;                                                                            \
    }

S_INDEX_FNS(policy_tenant_t, tenant)
S_INDEX_FNS(policy_peer_t, peer)
S_INDEX_FNS(policy_member_t, member)

static int s_paths(policy_t *pol, const char *path)
{
    char dir[POLICY_PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int k = snprintf(pol->path, sizeof pol->path, "%s", path);
    if (k < 0 || (size_t)k >= sizeof pol->path)
        return CPN_E_INVAL;
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    /* Absolute, so that paths stay right if the daemon changes directory. */
    if (realpath(dir, real) && strlen(real) < sizeof pol->dir)
        memcpy(pol->dir, real, strlen(real) + 1);
    else
        memcpy(pol->dir, dir, strlen(dir) + 1);
    return CPN_OK;
}

int policy_load(const char *path, policy_t **out, yconf_t **doc_out)
{
    int r;
    yconf_t *doc = NULL;
    policy_t *pol = NULL;
    const ynode_t *root;
    if (doc_out)
        *doc_out = NULL;
    if (!path || !out)
        return CPN_E_INVAL;
    *out = NULL;
    if ((r = yconf_load_file(path, &doc)) != CPN_OK)
        goto out;
    if (!(pol = calloc(1, sizeof *pol))) {
        r = CPN_E_NOMEM;
        goto out;
    }
    s_defaults(pol);
    if (s_paths(pol, path) != CPN_OK) {
        yconf_error(doc, NULL, NULL, "path too long");
        r = CPN_E_CONFIG;
        goto out;
    }
    root = yconf_root(doc);
    /* Binding goes on after an error, and validation runs even then: one pass of `policy
     * check` shows every problem in the file. */
    r = yconf_bind(doc, root, "", s_root_fields, S_ARRAY_LEN(s_root_fields), pol);
    if (root && root->kind == YNODE_MAP)
        s_validate(doc, pol, root);
    if (r != CPN_OK || yconf_error_count(doc) > 0) {
        r = CPN_E_CONFIG;
        goto out;
    }
    pol->by_key_tenant = s_index_tenant(pol->tenants, pol->n_tenants);
    pol->by_key_peer = s_index_peer(pol->peers.trusted, pol->peers.n_trusted);
    pol->by_key_member = s_index_member(pol->federation.members, pol->federation.n_members);
    if (!pol->by_key_tenant || !pol->by_key_peer || !pol->by_key_member) {
        r = CPN_E_NOMEM;
        goto out;
    }
    *out = pol;
    pol = NULL;
out:
    policy_destroy(&pol);
    if (doc_out)
        *doc_out = doc;
    else
        yconf_destroy(&doc);
    return r;
}

void policy_destroy(policy_t **self_p)
{
    policy_t *self;
    if (!self_p || !*self_p)
        return;
    self = *self_p;
    free(self->tenants);
    free(self->peers.trusted);
    free(self->federation.members);
    free(self->by_key_tenant);
    free(self->by_key_peer);
    free(self->by_key_member);
    free(self);
    *self_p = NULL;
}

const policy_tenant_t *policy_tenant(const policy_t *self, const uint8_t pk[CPN_PK_LEN])
{
    const policy_tenant_t *const *hit;
    if (!self || !pk || !self->n_tenants)
        return NULL;
    hit = bsearch(pk, self->by_key_tenant, self->n_tenants, sizeof *hit, s_find_tenant);
    return hit ? *hit : NULL;
}

const policy_peer_t *policy_peer(const policy_t *self, const uint8_t pk[CPN_PK_LEN])
{
    const policy_peer_t *const *hit;
    if (!self || !pk || !self->peers.n_trusted)
        return NULL;
    hit = bsearch(pk, self->by_key_peer, self->peers.n_trusted, sizeof *hit, s_find_peer);
    return hit ? *hit : NULL;
}

bool policy_peer_trusted(const policy_t *self, const uint8_t pk[CPN_PK_LEN])
{
    if (!self || !pk)
        return false;
    return self->peers.any || policy_peer(self, pk) != NULL;
}

const policy_member_t *policy_member(const policy_t *self, const uint8_t pk[CPN_PK_LEN])
{
    const policy_member_t *const *hit;
    if (!self || !pk || !self->federation.n_members)
        return NULL;
    hit = bsearch(pk, self->by_key_member, self->federation.n_members, sizeof *hit,
                  s_find_member);
    return hit ? *hit : NULL;
}

const policy_member_t *policy_member_by_name(const policy_t *self, const char *name)
{
    if (!self || !name)
        return NULL;
    for (size_t i = 0; i < self->federation.n_members; i++)
        if (strcmp(self->federation.members[i].name, name) == 0)
            return &self->federation.members[i];
    return NULL;
}

static bool s_over(uint64_t quota, uint64_t used, uint64_t add)
{
    if (quota == POLICY_UNLIMITED)
        return false;
    return add > quota || used > quota - add;
}

int policy_quota_check(const policy_tenant_t *t, const ledger_usage_t *used,
                       const ledger_usage_t *add, char *why, size_t cap)
{
    char a[32], b[32], c[32];
    if (why && cap)
        why[0] = '\0';
    if (!t || !used || !add)
        return CPN_E_INVAL;
    if (s_over(t->quota.accelerators, used->accelerators, add->accelerators)) {
        if (why && cap)
            snprintf(why, cap, "accelerators: %" PRIu64 " in use + %" PRIu64 " asked > quota %"
                     PRIu64, used->accelerators, add->accelerators, t->quota.accelerators);
        return CPN_E_OVER_QUOTA;
    }
    if (s_over(t->quota.units, used->units, add->units)) {
        if (why && cap)
            snprintf(why, cap, "units: %" PRIu64 " in use + %" PRIu64 " asked > quota %" PRIu64,
                     used->units, add->units, t->quota.units);
        return CPN_E_OVER_QUOTA;
    }
    if (s_over(t->quota.spend_rate, used->spend_rate, add->spend_rate)) {
        if (why && cap) {
            cpn_fmt_price(used->spend_rate, a, sizeof a);
            cpn_fmt_price(add->spend_rate, b, sizeof b);
            cpn_fmt_price(t->quota.spend_rate, c, sizeof c);
            snprintf(why, cap, "spend_rate: %s/h in use + %s/h asked > quota %s/h", a, b, c);
        }
        return CPN_E_OVER_QUOTA;
    }
    return CPN_OK;
}

/* The first row marked restart (S_YR) under `fields` whose value differs, its key path
 * written into buf after `prefix`; NULL if none. Nested maps bind into the same struct at
 * their offset, so a and b move along with them. */
static const char *s_restart_row(const yfield_t *fields, size_t n, const char *prefix,
                                 const uint8_t *a, const uint8_t *b, char *buf, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        const yfield_t *f = &fields[i];
        if (f->kind == YF_MAP && f->sub) {
            char sub[S_KEYPATH_MAX];
            snprintf(sub, sizeof sub, "%s%s.", prefix, f->key);
            if (s_restart_row(f->sub, f->n_sub, sub, a + f->off, b + f->off, buf, cap))
                return buf;
            continue;
        }
        if (!f->restart)
            continue;
        /* text compares up to its end: bytes after it are whatever the buffer held */
        bool differs = f->kind == YF_STR
                           ? strncmp((const char *)a + f->off, (const char *)b + f->off, f->size)
                           : memcmp(a + f->off, b + f->off, f->size);
        if (differs) {
            snprintf(buf, cap, "%s%s", prefix, f->key);
            return buf;
        }
    }
    return NULL;
}

const char *policy_restart_needed(const policy_t *old, const policy_t *neu)
{
    static char path[S_KEYPATH_MAX]; /* the daemon reloads from its one thread */
    if (!old || !neu)
        return "policy";
    return s_restart_row(s_root_fields, S_ARRAY_LEN(s_root_fields), "", (const uint8_t *)old,
                         (const uint8_t *)neu, path, sizeof path);
}

const char *policy_priority_name(uint32_t priority)
{
    for (size_t i = 0; i < S_ARRAY_LEN(s_prio_classes); i++)
        if (s_prio_classes[i].value == priority)
            return s_prio_classes[i].name;
    return NULL;
}
