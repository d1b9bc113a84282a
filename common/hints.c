/* hints.c - access hints in their canonical form: "key\0value\0" pairs, sorted by key. */
#include "hints.h"

#include <string.h>

#include "mp.h"

bool cpn_hint_key_ok(const char *key, size_t len)
{
    if (!key || len == 0 || len >= CPN_HINT_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

bool cpn_hint_value_ok(const char *value, size_t len)
{
    if (!value || len == 0 || len >= CPN_HINTS_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return mp_utf8_ok((const uint8_t *)value, len);
}

/* Offset of entry i's key in text (i <= n: n gives `used`). */
static size_t s_offset(const cpn_hints_t *h, uint32_t i)
{
    size_t off = 0;
    for (uint32_t k = 0; k < i; k++) {
        off += strlen(h->text + off) + 1; /* key */
        off += strlen(h->text + off) + 1; /* value */
    }
    return off;
}

bool cpn_hints_at(const cpn_hints_t *h, uint32_t i, const char **key, const char **value)
{
    if (!h || i >= h->n)
        return false;
    size_t off = s_offset(h, i);
    *key = h->text + off;
    *value = *key + strlen(*key) + 1;
    return true;
}

const char *cpn_hints_get(const cpn_hints_t *h, const char *key)
{
    const char *k, *v;
    for (uint32_t i = 0; key && cpn_hints_at(h, i, &k, &v); i++)
        if (strcmp(k, key) == 0)
            return v;
    return NULL;
}

int cpn_hints_set(cpn_hints_t *h, const char *key, const char *value)
{
    if (!h || !key || !value)
        return CPN_E_INVAL;
    size_t kl = strlen(key), vl = strlen(value);
    if (!cpn_hint_key_ok(key, kl) || !cpn_hint_value_ok(value, vl))
        return CPN_E_INVAL;
    /* Find the place: the entry with this key (replaced) or the first with a greater one. */
    uint32_t i = 0;
    const char *k = NULL, *v = NULL;
    int cmp = 1;
    while (cpn_hints_at(h, i, &k, &v) && (cmp = strcmp(k, key)) < 0)
        i++;
    bool replace = i < h->n && cmp == 0;
    size_t at = s_offset(h, i);
    size_t old = replace ? kl + 1 + strlen(v) + 1 : 0;
    size_t add = kl + 1 + vl + 1;
    if ((!replace && h->n == CPN_HINTS_MAX) || h->used - old + add > CPN_HINTS_BYTES)
        return CPN_E_TOO_BIG;
    memmove(h->text + at + add, h->text + at + old, h->used - at - old);
    memcpy(h->text + at, key, kl + 1);
    memcpy(h->text + at + kl + 1, value, vl + 1);
    size_t used = h->used - old + add;
    if (used < h->used)
        memset(h->text + used, 0, h->used - used);
    h->used = (uint32_t)used;
    h->n += replace ? 0 : 1;
    return CPN_OK;
}

int cpn_hints_pack(msgpack_packer *pk, const cpn_hints_t *h)
{
    const char *k, *v;
    if (!pk || !h || h->n > CPN_HINTS_MAX)
        return CPN_E_INVAL;
    msgpack_pack_map(pk, h->n);
    for (uint32_t i = 0; cpn_hints_at(h, i, &k, &v); i++) {
        mp_pack_str(pk, k);
        mp_pack_str(pk, v);
    }
    return CPN_OK;
}

/* A msgpack str as a C string into buf (cap bytes), if it fits with its terminator and has
 * no zero byte. */
static bool s_str(const msgpack_object *o, char *buf, size_t cap)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
        return false;
    if (o->via.str.size) { /* an empty str may come with a NULL pointer */
        if (memchr(o->via.str.ptr, '\0', o->via.str.size))
            return false;
        memcpy(buf, o->via.str.ptr, o->via.str.size);
    }
    buf[o->via.str.size] = '\0';
    return true;
}

int cpn_hints_unpack(const msgpack_object *obj, cpn_hints_t *h)
{
    char key[CPN_HINT_KEY_MAX], value[CPN_HINTS_BYTES];
    cpn_hints_t tmp;
    if (!obj || !h)
        return CPN_E_INVAL;
    memset(&tmp, 0, sizeof tmp);
    /* Empty hints are written by leaving the key out: one encoding per value. */
    if (obj->type != MSGPACK_OBJECT_MAP || obj->via.map.size == 0 ||
        obj->via.map.size > CPN_HINTS_MAX)
        return CPN_E_SCHEMA;
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        if (!s_str(&kv->key, key, sizeof key) || !s_str(&kv->val, value, sizeof value) ||
            cpn_hints_get(&tmp, key) != NULL || cpn_hints_set(&tmp, key, value) != CPN_OK)
            return CPN_E_SCHEMA;
    }
    *h = tmp;
    return CPN_OK;
}
