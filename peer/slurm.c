/* slurm.c - Slurm's printed records read into structs (pure). */
#include "slurm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

static int s_fail(char why[SLURM_WHY_MAX], int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fail(char why[SLURM_WHY_MAX], int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, SLURM_WHY_MAX, fmt, ap);
    va_end(ap);
    return code;
}

/* Copy a value of vlen bytes; "(null)" is empty. CPN_E_TOO_BIG if it does not fit. */
static int s_copy(char *dst, size_t cap, const char *v, size_t vlen)
{
    if (vlen == 6 && memcmp(v, "(null)", 6) == 0)
        vlen = 0;
    if (vlen >= cap)
        return CPN_E_TOO_BIG;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return CPN_OK;
}

/* Strict unsigned decimal of vlen bytes. */
static int s_u64(const char *v, size_t vlen, uint64_t *out)
{
    uint64_t x = 0;
    if (vlen == 0 || vlen > 20)
        return CPN_E_INVAL;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return CPN_E_INVAL;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return CPN_E_INVAL;
        x = x * 10 + d;
    }
    *out = x;
    return CPN_OK;
}

static int s_u32(const char *v, size_t vlen, uint32_t *out)
{
    uint64_t x;
    if (s_u64(v, vlen, &x) != CPN_OK || x > UINT32_MAX)
        return CPN_E_INVAL;
    *out = (uint32_t)x;
    return CPN_OK;
}

static bool s_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static bool s_is_key_start(const char *w, size_t wlen, size_t *klen)
{
    size_t i = 0;
    if (wlen == 0 || !((w[0] >= 'A' && w[0] <= 'Z') || (w[0] >= 'a' && w[0] <= 'z')))
        return false;
    while (i < wlen && (s_name_char(w[i]) || w[i] == ':') && w[i] != '.' && w[i] != '-')
        i++;
    if (i >= wlen || w[i] != '=')
        return false;
    *klen = i;
    return true;
}

/* ---- one record line: KEY=VALUE words ---- */

/* A value may hold spaces ("OS=Linux 6.1 #1 SMP"): a word that does not start KEY= belongs to
 * the value before it. Reason= is the last field and takes the rest of the line whatever it
 * holds (an operator's text). */
typedef int (*s_field_fn)(void *ctx, const char *key, size_t klen, const char *v, size_t vlen);

static int s_fields(const char *line, size_t len, s_field_fn fn, void *ctx)
{
    const char *key = NULL, *val = NULL, *vend = NULL;
    size_t klen = 0, i = 0;
    int r;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i >= len)
            break;
        size_t w0 = i;
        while (i < len && line[i] != ' ')
            i++;
        size_t kl;
        if (s_is_key_start(line + w0, i - w0, &kl)) {
            if (key && (r = fn(ctx, key, klen, val, (size_t)(vend - val))) != CPN_OK)
                return r;
            key = line + w0;
            klen = kl;
            val = line + w0 + kl + 1;
            vend = line + i;
            if (klen == 6 && memcmp(key, "Reason", 6) == 0) {
                vend = line + len;
                while (vend > val && vend[-1] == ' ')
                    vend--;
                break;
            }
        } else if (key) {
            vend = line + i;
        } else {
            return CPN_E_INVAL; /* words before the first KEY= */
        }
    }
    if (!key)
        return CPN_E_INVAL;
    return fn(ctx, key, klen, val, (size_t)(vend - val));
}

static bool s_key_is(const char *key, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(key, want, klen) == 0;
}

/* Split text into lines and hand each non-empty one to `line_fn`. */
typedef int (*s_line_fn)(void *ctx, const char *line, size_t len, size_t lineno,
                         char why[SLURM_WHY_MAX]);

static int s_lines(const char *text, size_t len, s_line_fn fn, void *ctx, char why[SLURM_WHY_MAX])
{
    size_t i = 0, lineno = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, l = end - i;
        lineno++;
        if (memchr(text + i, '\0', l))
            return s_fail(why, CPN_E_INVAL, "line %zu: a NUL byte", lineno);
        if (l > SLURM_LINE_MAX)
            return s_fail(why, CPN_E_TOO_BIG, "line %zu: longer than %d bytes (SLURM_LINE_MAX)",
                          lineno, SLURM_LINE_MAX);
        while (l > 0 && (text[i + l - 1] == '\r' || text[i + l - 1] == ' '))
            l--;
        int r = l ? fn(ctx, text + i, l, lineno, why) : CPN_OK;
        if (r != CPN_OK)
            return r;
        i = end + 1;
    }
    return CPN_OK;
}

/* A growing array of records. */
typedef struct {
    void *items;
    size_t n, cap, size;
} s_vec_t;

static void *s_vec_add(s_vec_t *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void *p = realloc(v->items, cap * v->size);
        if (!p)
            return NULL;
        v->items = p;
        v->cap = cap;
    }
    void *it = (char *)v->items + v->n * v->size;
    memset(it, 0, v->size);
    v->n++;
    return it;
}

/* ---- node state ---- */

static const char *const s_base_names[] = {
    [SLURM_BASE_UNKNOWN] = "UNKNOWN",     [SLURM_BASE_IDLE] = "IDLE",
    [SLURM_BASE_ALLOCATED] = "ALLOCATED", [SLURM_BASE_MIXED] = "MIXED",
    [SLURM_BASE_DOWN] = "DOWN",           [SLURM_BASE_FUTURE] = "FUTURE",
    [SLURM_BASE_ERROR] = "ERROR",
};

const char *slurm_base_name(slurm_base_t b)
{
    return (size_t)b < sizeof s_base_names / sizeof s_base_names[0] ? s_base_names[b] : "UNKNOWN";
}

static const struct {
    const char *name;
    uint32_t flag;
} s_flags[] = {
    {"DRAIN", SLURM_F_DRAIN},
    {"DRAINING", SLURM_F_DRAIN},
    {"DRAINED", SLURM_F_DRAIN},
    {"RESERVED", SLURM_F_RESERVED},
    {"COMPLETING", SLURM_F_COMPLETING},
    {"NOT_RESPONDING", SLURM_F_NOT_RESPONDING},
    {"FAIL", SLURM_F_FAIL},
    {"FAILING", SLURM_F_FAIL},
    {"MAINTENANCE", SLURM_F_MAINT},
    {"MAINT", SLURM_F_MAINT},
    {"POWERED_DOWN", SLURM_F_POWER},
    {"POWERING_DOWN", SLURM_F_POWER},
    {"POWERING_UP", SLURM_F_POWER},
    {"POWER_DOWN", SLURM_F_POWER},
    {"REBOOT_REQUESTED", SLURM_F_REBOOT},
    {"REBOOT_ISSUED", SLURM_F_REBOOT},
    {"INVALID_REG", SLURM_F_INVALID_REG},
};

/* "IDLE+DRAIN+RESERVED": the first word is the base state (a trailing '*' or '~' of sinfo
 * style is tolerated), the rest flags. */
static int s_state(slurm_node_t *node, const char *v, size_t vlen)
{
    if (s_copy(node->state, sizeof node->state, v, vlen) != CPN_OK || vlen == 0)
        return CPN_E_INVAL;
    node->base = SLURM_BASE_UNKNOWN;
    node->flags = 0;
    const char *p = v, *end = v + vlen;
    bool first = true;
    while (p < end) {
        const char *q = memchr(p, '+', (size_t)(end - p));
        size_t wl = (size_t)((q ? q : end) - p);
        while (wl > 0 && (p[wl - 1] == '*' || p[wl - 1] == '~' || p[wl - 1] == '#'))
            wl--;
        if (first) {
            for (size_t b = 0; b < sizeof s_base_names / sizeof s_base_names[0]; b++)
                if (strlen(s_base_names[b]) == wl && memcmp(p, s_base_names[b], wl) == 0)
                    node->base = (slurm_base_t)b;
        } else {
            uint32_t f = SLURM_F_OTHER;
            for (size_t k = 0; k < sizeof s_flags / sizeof s_flags[0]; k++)
                if (strlen(s_flags[k].name) == wl && memcmp(p, s_flags[k].name, wl) == 0)
                    f = s_flags[k].flag;
            node->flags |= f;
        }
        first = false;
        p = q ? q + 1 : end;
    }
    return CPN_OK;
}

bool slurm_node_usable(const slurm_node_t *node)
{
    const uint32_t bad = SLURM_F_DRAIN | SLURM_F_FAIL | SLURM_F_NOT_RESPONDING | SLURM_F_MAINT |
                         SLURM_F_POWER | SLURM_F_REBOOT | SLURM_F_INVALID_REG;
    bool up = node->base == SLURM_BASE_IDLE || node->base == SLURM_BASE_ALLOCATED ||
              node->base == SLURM_BASE_MIXED;
    return up && !(node->flags & bad);
}

/* ---- lists inside values ---- */

/* Comma-separated names into a fixed array ("gpu,cpu"). */
static int s_list(const char *v, size_t vlen, char (*out)[SLURM_NAME_MAX], size_t cap, size_t *n)
{
    *n = 0;
    if (vlen == 6 && memcmp(v, "(null)", 6) == 0)
        return CPN_OK;
    const char *p = v, *end = v + vlen;
    while (p < end) {
        const char *q = memchr(p, ',', (size_t)(end - p));
        size_t wl = (size_t)((q ? q : end) - p);
        if (wl > 0) {
            if (*n >= cap)
                return CPN_E_TOO_BIG;
            if (s_copy(out[*n], SLURM_NAME_MAX, p, wl) != CPN_OK)
                return CPN_E_TOO_BIG;
            (*n)++;
        }
        p = q ? q + 1 : end;
    }
    return CPN_OK;
}

/* One GRES entry "gpu:h100:8(S:0-1)" or "gpu:8" or "gpu:h100" (count 1). */
static int s_gres_one(slurm_gres_t *g, const char *p, size_t wl)
{
    const char *paren = memchr(p, '(', wl);
    if (paren)
        wl = (size_t)(paren - p);
    const char *c1 = memchr(p, ':', wl);
    size_t nl = c1 ? (size_t)(c1 - p) : wl;
    if (nl == 0 || s_copy(g->name, sizeof g->name, p, nl) != CPN_OK)
        return CPN_E_INVAL;
    g->count = 1;
    if (!c1)
        return CPN_OK;
    const char *rest = c1 + 1, *end = p + wl;
    const char *c2 = memchr(rest, ':', (size_t)(end - rest));
    if (c2) {
        if (s_copy(g->type, sizeof g->type, rest, (size_t)(c2 - rest)) != CPN_OK)
            return CPN_E_INVAL;
        return s_u32(c2 + 1, (size_t)(end - c2 - 1), &g->count);
    }
    if (s_u32(rest, (size_t)(end - rest), &g->count) == CPN_OK)
        return CPN_OK;
    return s_copy(g->type, sizeof g->type, rest, (size_t)(end - rest)); /* "gpu:h100" */
}

static int s_gres(slurm_node_t *node, const char *v, size_t vlen)
{
    node->n_gres = 0;
    if (vlen == 6 && memcmp(v, "(null)", 6) == 0)
        return CPN_OK;
    size_t i = 0, w0 = 0;
    int depth = 0;
    for (i = 0; i <= vlen; i++) {
        if (i < vlen && v[i] == '(')
            depth++;
        else if (i < vlen && v[i] == ')' && depth > 0)
            depth--;
        if (i < vlen && !(v[i] == ',' && depth == 0))
            continue;
        if (i > w0) {
            if (node->n_gres >= SLURM_NODE_GRES_MAX)
                return CPN_E_TOO_BIG;
            if (s_gres_one(&node->gres[node->n_gres], v + w0, i - w0) != CPN_OK)
                return CPN_E_INVAL;
            node->n_gres++;
        }
        w0 = i + 1;
    }
    return CPN_OK;
}

/* ---- nodes ---- */

typedef struct {
    slurm_node_t *node;
    bool have_active; /* ActiveFeatures seen: AvailableFeatures no longer used */
    const char *bad;  /* the key whose value was refused */
    int code;
} s_node_ctx_t;

static int s_node_field(void *vctx, const char *k, size_t kl, const char *v, size_t vl)
{
    s_node_ctx_t *c = vctx;
    slurm_node_t *nd = c->node;
    int r = CPN_OK;
    if (s_key_is(k, kl, "NodeName")) {
        c->bad = "NodeName";
        r = s_copy(nd->name, sizeof nd->name, v, vl);
        if (r == CPN_OK && nd->name[0] == '\0')
            r = CPN_E_INVAL;
    } else if (s_key_is(k, kl, "State")) {
        c->bad = "State";
        r = s_state(nd, v, vl);
    } else if (s_key_is(k, kl, "CPUTot")) {
        c->bad = "CPUTot";
        r = s_u32(v, vl, &nd->cpus);
    } else if (s_key_is(k, kl, "RealMemory")) {
        c->bad = "RealMemory";
        r = s_u64(v, vl, &nd->memory_mib);
    } else if (s_key_is(k, kl, "Partitions")) {
        c->bad = "Partitions";
        r = s_list(v, vl, nd->parts, SLURM_NODE_PARTS_MAX, &nd->n_parts);
    } else if (s_key_is(k, kl, "ActiveFeatures") ||
               (s_key_is(k, kl, "AvailableFeatures") && !c->have_active)) {
        c->bad = "ActiveFeatures";
        c->have_active = c->have_active || s_key_is(k, kl, "ActiveFeatures");
        r = s_list(v, vl, nd->features, SLURM_NODE_FEATURES_MAX, &nd->n_features);
    } else if (s_key_is(k, kl, "Gres")) {
        c->bad = "Gres";
        r = s_gres(nd, v, vl);
    } else if (s_key_is(k, kl, "Reason")) {
        c->bad = "Reason";
        if (vl >= sizeof nd->reason)
            vl = sizeof nd->reason - 1; /* an operator's text: keep its start */
        r = s_copy(nd->reason, sizeof nd->reason, v, vl);
    }
    c->code = r;
    return r;
}

static int s_node_line(void *ctx, const char *line, size_t len, size_t lineno,
                       char why[SLURM_WHY_MAX])
{
    s_vec_t *vec = ctx;
    if (vec->n >= SLURM_NODES_MAX)
        return s_fail(why, CPN_E_TOO_BIG, "more than %d nodes (SLURM_NODES_MAX)", SLURM_NODES_MAX);
    slurm_node_t *nd = s_vec_add(vec);
    if (!nd)
        return s_fail(why, CPN_E_NOMEM, "out of memory");
    s_node_ctx_t c = {.node = nd, .bad = NULL, .code = CPN_OK};
    nd->state[0] = '\0';
    int r = s_fields(line, len, s_node_field, &c);
    if (r != CPN_OK && c.bad)
        return s_fail(why, r == CPN_E_TOO_BIG ? r : CPN_E_INVAL, "line %zu: bad %s value", lineno,
                      c.bad);
    if (r != CPN_OK || nd->name[0] == '\0' || len < 9 || memcmp(line, "NodeName=", 9) != 0)
        return s_fail(why, CPN_E_INVAL, "line %zu: not a node record (NodeName=...)", lineno);
    if (nd->state[0] == '\0')
        return s_fail(why, CPN_E_INVAL, "line %zu: node %s has no State", lineno, nd->name);
    return CPN_OK;
}

int slurm_nodes_parse(const char *text, size_t len, slurm_node_t **out, size_t *n,
                      char why[SLURM_WHY_MAX])
{
    s_vec_t vec = {.size = sizeof(slurm_node_t)};
    *out = NULL;
    *n = 0;
    why[0] = '\0';
    int r = s_lines(text, len, s_node_line, &vec, why);
    if (r != CPN_OK) {
        free(vec.items);
        return r;
    }
    *out = vec.items;
    *n = vec.n;
    return CPN_OK;
}

/* ---- reservations ---- */

typedef struct {
    slurm_resv_t *resv;
    const char *bad;
} s_resv_ctx_t;

static int s_resv_field(void *vctx, const char *k, size_t kl, const char *v, size_t vl)
{
    s_resv_ctx_t *c = vctx;
    slurm_resv_t *rv = c->resv;
    static const struct {
        const char *key;
        size_t off, size;
    } text[] = {
        {"ReservationName", offsetof(slurm_resv_t, name), sizeof rv->name},
        {"StartTime", offsetof(slurm_resv_t, start), sizeof rv->start},
        {"EndTime", offsetof(slurm_resv_t, end), sizeof rv->end},
        {"Nodes", offsetof(slurm_resv_t, nodes), sizeof rv->nodes},
        {"PartitionName", offsetof(slurm_resv_t, partition), sizeof rv->partition},
        {"Features", offsetof(slurm_resv_t, features), sizeof rv->features},
        {"Users", offsetof(slurm_resv_t, users), sizeof rv->users},
        {"Accounts", offsetof(slurm_resv_t, accounts), sizeof rv->accounts},
        {"Flags", offsetof(slurm_resv_t, flags), sizeof rv->flags},
        {"State", offsetof(slurm_resv_t, state), sizeof rv->state},
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        if (s_key_is(k, kl, text[i].key)) {
            c->bad = text[i].key;
            return s_copy((char *)rv + text[i].off, text[i].size, v, vl);
        }
    if (s_key_is(k, kl, "NodeCnt")) {
        c->bad = "NodeCnt";
        return s_u32(v, vl, &rv->node_cnt);
    }
    return CPN_OK;
}

static int s_resv_line(void *ctx, const char *line, size_t len, size_t lineno,
                       char why[SLURM_WHY_MAX])
{
    s_vec_t *vec = ctx;
    static const char none[] = "No reservations in the system";
    if (len == sizeof none - 1 && memcmp(line, none, len) == 0)
        return CPN_OK;
    if (vec->n >= SLURM_NODES_MAX)
        return s_fail(why, CPN_E_TOO_BIG, "more than %d reservations (SLURM_NODES_MAX)",
                      SLURM_NODES_MAX);
    slurm_resv_t *rv = s_vec_add(vec);
    if (!rv)
        return s_fail(why, CPN_E_NOMEM, "out of memory");
    s_resv_ctx_t c = {.resv = rv, .bad = NULL};
    int r = s_fields(line, len, s_resv_field, &c);
    if (r != CPN_OK && c.bad)
        return s_fail(why, r == CPN_E_TOO_BIG ? r : CPN_E_INVAL, "line %zu: bad %s value", lineno,
                      c.bad);
    if (r != CPN_OK || rv->name[0] == '\0' || len < 16 || memcmp(line, "ReservationName=", 16) != 0)
        return s_fail(why, CPN_E_INVAL, "line %zu: not a reservation record", lineno);
    return CPN_OK;
}

int slurm_resvs_parse(const char *text, size_t len, slurm_resv_t **out, size_t *n,
                      char why[SLURM_WHY_MAX])
{
    s_vec_t vec = {.size = sizeof(slurm_resv_t)};
    *out = NULL;
    *n = 0;
    why[0] = '\0';
    int r = s_lines(text, len, s_resv_line, &vec, why);
    if (r != CPN_OK) {
        free(vec.items);
        return r;
    }
    *out = vec.items;
    *n = vec.n;
    return CPN_OK;
}

const slurm_resv_t *slurm_resv_find(const slurm_resv_t *resvs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(resvs[i].name, name) == 0)
            return &resvs[i];
    return NULL;
}

/* ---- host lists ---- */

static int s_host_add(char (*names)[SLURM_NAME_MAX], size_t cap, size_t *n, const char *pre,
                      size_t pl, const char *num, const char *suf, size_t sl)
{
    if (*n >= cap)
        return CPN_E_TOO_BIG;
    int w = snprintf(names[*n], SLURM_NAME_MAX, "%.*s%s%.*s", (int)pl, pre, num, (int)sl, suf);
    if (w < 0 || w >= SLURM_NAME_MAX)
        return CPN_E_TOO_BIG;
    for (int i = 0; i < w; i++)
        if (!s_name_char(names[*n][i]))
            return CPN_E_INVAL;
    (*n)++;
    return CPN_OK;
}

/* "lo" or "lo-hi" of a bracket, with lo's width kept. */
static int s_host_range(char (*names)[SLURM_NAME_MAX], size_t cap, size_t *n, const char *pre,
                        size_t pl, const char *p, size_t len, const char *suf, size_t sl)
{
    const char *dash = memchr(p, '-', len);
    size_t ll = dash ? (size_t)(dash - p) : len;
    uint64_t lo, hi;
    if (s_u64(p, ll, &lo) != CPN_OK || ll > 18)
        return CPN_E_INVAL;
    hi = lo;
    if (dash && s_u64(dash + 1, len - ll - 1, &hi) != CPN_OK)
        return CPN_E_INVAL;
    if (hi < lo)
        return CPN_E_INVAL;
    if (hi - lo >= cap)
        return CPN_E_TOO_BIG;
    for (uint64_t x = lo; x <= hi; x++) {
        char num[24];
        snprintf(num, sizeof num, "%0*llu", (int)ll, (unsigned long long)x);
        int r = s_host_add(names, cap, n, pre, pl, num, suf, sl);
        if (r != CPN_OK)
            return r;
    }
    return CPN_OK;
}

/* One element of the list: "c7" or "c[1-3,5]x". */
static int s_host_elem(char (*names)[SLURM_NAME_MAX], size_t cap, size_t *n, const char *p,
                       size_t len)
{
    const char *lb = memchr(p, '[', len);
    if (!lb)
        return s_host_add(names, cap, n, p, len, "", "", 0);
    const char *rb = memchr(lb, ']', len - (size_t)(lb - p));
    if (!rb || memchr(lb + 1, '[', (size_t)(rb - lb - 1)) ||
        memchr(rb + 1, '[', len - (size_t)(rb + 1 - p)))
        return CPN_E_INVAL; /* unclosed, nested, or several groups */
    const char *q = lb + 1, *suf = rb + 1;
    size_t sl = len - (size_t)(suf - p);
    while (q < rb) {
        const char *c = memchr(q, ',', (size_t)(rb - q));
        size_t wl = (size_t)((c ? c : rb) - q);
        int r = s_host_range(names, cap, n, p, (size_t)(lb - p), q, wl, suf, sl);
        if (r != CPN_OK)
            return r;
        q = c ? c + 1 : rb;
    }
    return CPN_OK;
}

int slurm_hostlist_expand(const char *list, char (*names)[SLURM_NAME_MAX], size_t cap, size_t *n)
{
    *n = 0;
    if (strcmp(list, "(null)") == 0)
        return CPN_OK;
    const char *p = list;
    int depth = 0;
    for (const char *q = list;; q++) {
        if (*q == '[')
            depth++;
        else if (*q == ']')
            depth--;
        if (*q != '\0' && !(*q == ',' && depth == 0))
            continue;
        if (q > p) {
            int r = s_host_elem(names, cap, n, p, (size_t)(q - p));
            if (r != CPN_OK)
                return r;
        }
        if (*q == '\0')
            break;
        p = q + 1;
    }
    return depth == 0 ? CPN_OK : CPN_E_INVAL;
}

/* ---- packages of nodes ---- */

bool slurm_set_has(const slurm_set_t *set, const slurm_node_t *node)
{
    bool ok = set->partition[0] == '\0';
    for (size_t i = 0; !ok && i < node->n_parts; i++)
        ok = strcmp(node->parts[i], set->partition) == 0;
    if (!ok)
        return false;
    ok = set->feature[0] == '\0';
    for (size_t i = 0; !ok && i < node->n_features; i++)
        ok = strcmp(node->features[i], set->feature) == 0;
    if (!ok)
        return false;
    ok = set->gres[0] == '\0';
    for (size_t i = 0; !ok && i < node->n_gres; i++)
        ok = strcmp(node->gres[i].type, set->gres) == 0 && node->gres[i].count > 0 &&
             node->gres[i].count >= set->gres_min;
    return ok;
}

static int s_name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The sorted names of every node in a reservation of cpn (malloc'd into *out). */
static int s_cpn_nodes(const slurm_resv_t *resvs, size_t n_resvs, size_t cap,
                       char (**out)[SLURM_NAME_MAX], size_t *n)
{
    char(*names)[SLURM_NAME_MAX] = calloc(cap ? cap : 1, SLURM_NAME_MAX);
    *out = NULL;
    *n = 0;
    if (!names)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < n_resvs; i++) {
        size_t k = 0;
        if (strncmp(resvs[i].name, SLURM_RESV_PREFIX, strlen(SLURM_RESV_PREFIX)) != 0)
            continue;
        int r = slurm_hostlist_expand(resvs[i].nodes, names + *n, cap - *n, &k);
        if (r != CPN_OK) {
            free(names);
            *n = 0;
            return r;
        }
        *n += k;
    }
    qsort(names, *n, SLURM_NAME_MAX, s_name_cmp);
    *out = names;
    return CPN_OK;
}

int slurm_set_count(const slurm_set_t *set, const slurm_node_t *nodes, size_t n_nodes,
                    const slurm_resv_t *resvs, size_t n_resvs, uint32_t *units)
{
    char(*ours)[SLURM_NAME_MAX];
    size_t n_ours;
    *units = 0;
    int r = s_cpn_nodes(resvs, n_resvs, SLURM_NODES_MAX, &ours, &n_ours);
    if (r != CPN_OK)
        return r;
    for (size_t i = 0; i < n_nodes; i++) {
        const slurm_node_t *nd = &nodes[i];
        if (!slurm_set_has(set, nd) || !slurm_node_usable(nd))
            continue;
        bool leased = bsearch(nd->name, ours, n_ours, SLURM_NAME_MAX, s_name_cmp) != NULL;
        bool free_now = nd->base == SLURM_BASE_IDLE && !(nd->flags & SLURM_F_RESERVED);
        if (leased || free_now)
            (*units)++;
    }
    free(ours);
    return CPN_OK;
}

int slurm_resv_lost(const slurm_resv_t *resv, const slurm_node_t *nodes, size_t n_nodes,
                    uint32_t *lost)
{
    char(*names)[SLURM_NAME_MAX] = calloc(SLURM_NODES_MAX, SLURM_NAME_MAX);
    size_t n = 0;
    *lost = 0;
    if (!names)
        return CPN_E_NOMEM;
    int r = slurm_hostlist_expand(resv->nodes, names, SLURM_NODES_MAX, &n);
    for (size_t i = 0; r == CPN_OK && i < n; i++) {
        const slurm_node_t *nd = NULL;
        for (size_t k = 0; !nd && k < n_nodes; k++)
            if (strcmp(nodes[k].name, names[i]) == 0)
                nd = &nodes[k];
        if (!nd || !slurm_node_usable(nd))
            (*lost)++;
    }
    free(names);
    return r;
}
