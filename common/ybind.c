/* ybind.c - binding a YAML map to a C struct by a table of fields (yconf.h): kinds, bounds,
 * units ("80GiB", "400Gbps", "2h", "210.0"), public keys, nested maps; unknown keys refused with
 * a "did you mean". Binding records every error and goes on, so one pass reports them all.
 */
#include "yconf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "units.h"
#include "yconf_int.h"

#define S_FIELDS_MAX 64 /* entries in one binding table */

const ynode_t *yconf_get(const ynode_t *map, const char *key)
{
    if (!map || map->kind != YNODE_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

static bool s_errors_full(const yconf_t *doc)
{
    return doc->n_errors >= YCONF_MAX_ERRORS;
}

/* Edit distance for "did you mean"; only ever run on short keys. */
static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[YCONF_KEY_SHOWN + 1];
    if (la > YCONF_KEY_SHOWN || lb > YCONF_KEY_SHOWN)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *s_suggest(const char *key, const yfield_t *fields, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3; /* at most two edits away */
    if (strlen(key) > YCONF_KEY_SHOWN)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = s_distance(key, fields[i].key);
        if (d < best_d) {
            best_d = d;
            best = fields[i].key;
        }
    }
    return best;
}

static const char *s_kind_name(ynode_kind_t k)
{
    return k == YNODE_MAP ? "a map" : k == YNODE_SEQ ? "a list" : "a scalar";
}

bool yconf_parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static void s_int_expect(const yfield_t *f, uint64_t max, char *buf, size_t cap)
{
    if (f->min == 0 && f->max == 0)
        yconf_fmt(buf, cap, "expected a non-negative integer");
    else if (f->min == 1 && f->max == 0)
        yconf_fmt(buf, cap, "expected a positive integer");
    else if (f->max == 0)
        yconf_fmt(buf, cap, "expected an integer of at least %llu", (unsigned long long)f->min);
    else
        yconf_fmt(buf, cap, "expected an integer from %llu to %llu", (unsigned long long)f->min,
              (unsigned long long)max);
}

typedef struct {
    int (*parse)(const char *, uint64_t *);
    void (*fmt)(uint64_t, char *, size_t);
    const char *expect;
} s_unit_kind_t;

static const s_unit_kind_t *s_unit_kind(yfield_kind_t k)
{
    static const s_unit_kind_t bytes = {cpn_parse_bytes, cpn_fmt_bytes,
                                        "expected a size such as 80GiB, 1.5TB or 4096"};
    static const s_unit_kind_t rate = {cpn_parse_bitrate, cpn_fmt_bitrate,
                                       "expected a bit rate such as 400Gbps or 25Gbps"};
    static const s_unit_kind_t dur = {cpn_parse_duration, cpn_fmt_duration,
                                      "expected a duration such as 90s, 30m, 4h or 1h30m"};
    static const s_unit_kind_t price = {cpn_parse_price, cpn_fmt_price,
                                        "expected a price such as 210.0 (at most 3 decimals)"};
    switch (k) {
    case YF_BYTES:
        return &bytes;
    case YF_BITRATE:
        return &rate;
    case YF_DURATION:
        return &dur;
    case YF_PRICE:
        return &price;
    default:
        return NULL;
    }
}

bool yconf_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void s_bind_key(yconf_t *doc, const ynode_t *node, const char *path, uint8_t *pk)
{
    const char *text = node->value;
    char full[4096];
    int r;
    if (!yconf_ends_with(text, ".pub")) {
        if (cpn_pk_from_text(text, pk) != CPN_OK)
            yconf_error(doc, node, path,
                        "expected a public key (43 base64url characters) or a .pub file");
        return;
    }
    /* Relative key paths are relative to the file that names them, not to the cwd of
     * whoever started the daemon. */
    if (text[0] != '/' && doc->dir[0]) {
        if (!yconf_fmt(full, sizeof full, "%s/%s", doc->dir, text)) {
            yconf_error(doc, node, path, "key file path too long");
            return;
        }
    } else if (!yconf_fmt(full, sizeof full, "%s", text)) {
        yconf_error(doc, node, path, "key file path too long");
        return;
    }
    if ((r = cpn_pk_load(full, pk)) != CPN_OK)
        yconf_error(doc, node, path, "cannot load public key %.200s: %s", full, cpn_strerror(r));
}

static void s_bind_names(yconf_t *doc, const ynode_t *node, const char *path, cpn_namelist_t *l)
{
    char ip[YCONF_PATH_MAX];
    memset(l, 0, sizeof *l);
    if (node->kind == YNODE_MAP) {
        yconf_error(doc, node, path, "expected a list of names, found a map");
        return;
    }
    size_t n = node->kind == YNODE_SCALAR ? 1 : node->n;
    if (n > CPN_LIST_MAX) {
        yconf_error(doc, node, path, "at most %d names", CPN_LIST_MAX);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ynode_t *it = node->kind == YNODE_SCALAR ? node : node->items[i];
        yconf_index_path(ip, sizeof ip, path, i);
        if (it->kind != YNODE_SCALAR) {
            yconf_error(doc, it, ip, "expected a name, found %s", s_kind_name(it->kind));
            continue;
        }
        size_t len = strlen(it->value);
        if (len == 0 || len >= CPN_NAME_MAX) {
            yconf_error(doc, it, ip, "expected a name of 1 to %d characters", CPN_NAME_MAX - 1);
            continue;
        }
        memcpy(l->items[l->n++], it->value, len + 1);
    }
}

static void s_bind_value(yconf_t *doc, const ynode_t *node, const char *path, const yfield_t *f,
                         uint8_t *dst)
{
    void *at = dst + f->off;
    char expect[160];
    uint64_t v, max;
    const s_unit_kind_t *uk;

    if (f->kind == YF_MAP) {
        int r = yconf_bind_ignoring(doc, node, path, f->sub, f->n_sub, at, NULL);
        (void)r; /* errors are recorded; the caller compares counts */
        return;
    }
    if (f->kind == YF_NAMES) {
        s_bind_names(doc, node, path, at);
        return;
    }
    if (f->kind == YF_CUSTOM) {
        size_t before = doc->n_total;
        if (f->custom(doc, node, path, at, f->arg) != CPN_OK && doc->n_total == before)
            yconf_error(doc, node, path, "invalid value");
        return;
    }
    if (node->kind != YNODE_SCALAR) {
        yconf_error(doc, node, path, "expected a value, found %s", s_kind_name(node->kind));
        return;
    }
    const char *text = node->value;
    switch (f->kind) {
    case YF_STR: {
        size_t len = strlen(text);
        if (len >= f->size) {
            yconf_error(doc, node, path, "longer than %zu characters", f->size - 1);
            return;
        }
        if (len < f->min) {
            if (f->min == 1)
                yconf_error(doc, node, path, "must not be empty");
            else
                yconf_error(doc, node, path, "shorter than %llu characters",
                            (unsigned long long)f->min);
            return;
        }
        for (size_t i = 0; i < len; i++) {
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) {
                yconf_error(doc, node, path, "control character in text");
                return;
            }
        }
        memcpy(at, text, len + 1);
        return;
    }
    case YF_U32:
    case YF_U64:
        max = f->kind == YF_U32 ? UINT32_MAX : UINT64_MAX;
        if (f->max && f->max < max)
            max = f->max;
        if (!yconf_parse_uint(text, &v) || v < f->min || v > max) {
            s_int_expect(f, max, expect, sizeof expect);
            yconf_error(doc, node, path, "%s", expect);
            return;
        }
        if (f->kind == YF_U32)
            *(uint32_t *)at = (uint32_t)v;
        else
            *(uint64_t *)at = v;
        return;
    case YF_BOOL:
        if (strcmp(text, "true") == 0)
            *(bool *)at = true;
        else if (strcmp(text, "false") == 0)
            *(bool *)at = false;
        else
            yconf_error(doc, node, path, "expected true or false");
        return;
    case YF_BYTES:
    case YF_BITRATE:
    case YF_DURATION:
    case YF_PRICE:
        uk = s_unit_kind(f->kind);
        if (uk->parse(text, &v) != CPN_OK) {
            yconf_error(doc, node, path, "%s", uk->expect);
            return;
        }
        if (v < f->min || (f->max && v > f->max)) {
            char lo[32], hi[32];
            uk->fmt(f->min, lo, sizeof lo);
            uk->fmt(f->max, hi, sizeof hi);
            if (f->max)
                yconf_error(doc, node, path, "must be from %s to %s", lo, hi);
            else
                yconf_error(doc, node, path, "must be at least %s", lo);
            return;
        }
        *(uint64_t *)at = v;
        return;
    case YF_KEY:
        s_bind_key(doc, node, path, at);
        return;
    case YF_NAMES:
    case YF_MAP:
    case YF_CUSTOM:
        break;
    }
}

static bool s_listed(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
}

int yconf_bind_ignoring(yconf_t *doc, const ynode_t *map, const char *path,
                        const yfield_t *fields, size_t n, void *dst, const char *const *ignore)
{
    bool seen[S_FIELDS_MAX] = {false};
    char kp[YCONF_PATH_MAX];
    size_t before;
    if (!doc || !fields || !dst || n > S_FIELDS_MAX)
        return CPN_E_INVAL;
    if (!path)
        path = "";
    before = doc->n_total;
    if (!map || map->kind != YNODE_MAP) {
        yconf_error(doc, map, path, "expected a map, found %s",
                    map ? s_kind_name(map->kind) : "nothing");
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < map->n; i++) {
        const char *key = map->keys[i];
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(fields[j].key, key) == 0)
                break;
        if (j == n) {
            if (s_listed(key, ignore))
                continue;
            const char *hint = s_errors_full(doc) ? NULL : s_suggest(key, fields, n);
            yconf_error_pos(doc, map->key_line[i], map->key_col[i], path, "unknown key \"%.*s\"%s%s%s",
                       YCONF_KEY_SHOWN, key, hint ? " (did you mean \"" : "", hint ? hint : "",
                       hint ? "\"?)" : "");
            continue;
        }
        seen[j] = true;
        yconf_child_path(kp, sizeof kp, path, key);
        s_bind_value(doc, map->items[i], kp, &fields[j], dst);
    }
    for (size_t j = 0; j < n; j++)
        if (fields[j].required && !seen[j])
            yconf_error(doc, map, path, "missing required key \"%s\"", fields[j].key);
    return doc->n_total == before ? CPN_OK : CPN_E_CONFIG;
}

int yconf_bind(yconf_t *doc, const ynode_t *map, const char *path, const yfield_t *fields, size_t n,
               void *dst)
{
    return yconf_bind_ignoring(doc, map, path, fields, n, dst, NULL);
}
