/* mp.c - strict msgpack: a bounded validator, table-driven map codec, JSON output.
 *
 * mp_validate is the only code that reads untrusted msgpack bytes before they are known
 * to be well formed; msgpack-c sees a buffer only after it passed. The walker keeps an
 * explicit stack of open containers (so its own depth costs no C stack) and a running sum
 * of the element slots every open container still has to fill: each slot needs at least
 * one byte, so that sum may never exceed the bytes left. This is what stops a 5-byte
 * frame declaring 2^24 elements before anything is allocated for them.
 */
#include "mp.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

const cpn_limits_t cpn_limits_default = {
    .max_frame = 64 * 1024,
    .max_depth = 16,
    .max_container = 4096,
    .max_str = 64 * 1024,
    .max_total = 65536,
};

/* ---- validation ---- */

/* Containers open at once without a heap allocation; deeper limits fall back to malloc. */
#define S_STACK_INLINE 32

static uint64_t s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* What a header byte says: how many bytes of fixed payload follow it (`skip`), how many
 * bytes encode a length that follows (`len_bytes`, then that many payload bytes follow, for
 * str/bin), or how many child objects a container declares. */
typedef enum { S_SCALAR, S_RAW, S_ARRAY, S_MAP, S_BAD } s_class_t;

typedef struct {
    s_class_t cls;
    size_t skip;      /* S_SCALAR: bytes after the header byte */
    size_t len_bytes; /* S_RAW/S_ARRAY/S_MAP: bytes of the length field (0 = in the byte) */
    size_t inline_n;  /* fix formats: the length carried in the header byte */
} s_head_t;

static s_head_t s_classify(uint8_t b)
{
    s_head_t h = {S_BAD, 0, 0, 0};
    if (b <= 0x7f || b >= 0xe0) { /* positive / negative fixint */
        h.cls = S_SCALAR;
    } else if (b >= 0x80 && b <= 0x8f) {
        h.cls = S_MAP;
        h.inline_n = b & 0x0f;
    } else if (b >= 0x90 && b <= 0x9f) {
        h.cls = S_ARRAY;
        h.inline_n = b & 0x0f;
    } else if (b >= 0xa0 && b <= 0xbf) {
        h.cls = S_RAW;
        h.inline_n = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0: /* nil */
        case 0xc2: /* false */
        case 0xc3: /* true */
            h.cls = S_SCALAR;
            break;
        case 0xc4: /* bin 8 */
        case 0xd9: /* str 8 */
            h.cls = S_RAW, h.len_bytes = 1;
            break;
        case 0xc5: /* bin 16 */
        case 0xda: /* str 16 */
            h.cls = S_RAW, h.len_bytes = 2;
            break;
        case 0xc6: /* bin 32 */
        case 0xdb: /* str 32 */
            h.cls = S_RAW, h.len_bytes = 4;
            break;
        case 0xca: /* float 32 */
            h.cls = S_SCALAR, h.skip = 4;
            break;
        case 0xcb: /* float 64 */
            h.cls = S_SCALAR, h.skip = 8;
            break;
        case 0xcc: /* uint 8 */
        case 0xd0: /* int 8 */
            h.cls = S_SCALAR, h.skip = 1;
            break;
        case 0xcd:
        case 0xd1:
            h.cls = S_SCALAR, h.skip = 2;
            break;
        case 0xce:
        case 0xd2:
            h.cls = S_SCALAR, h.skip = 4;
            break;
        case 0xcf:
        case 0xd3:
            h.cls = S_SCALAR, h.skip = 8;
            break;
        case 0xdc: /* array 16 */
            h.cls = S_ARRAY, h.len_bytes = 2;
            break;
        case 0xdd: /* array 32 */
            h.cls = S_ARRAY, h.len_bytes = 4;
            break;
        case 0xde: /* map 16 */
            h.cls = S_MAP, h.len_bytes = 2;
            break;
        case 0xdf: /* map 32 */
            h.cls = S_MAP, h.len_bytes = 4;
            break;
        default: /* 0xc1 (never used) and every ext format: cpn carries no ext types */
            h.cls = S_BAD;
            break;
        }
    }
    return h;
}

int mp_validate(const uint8_t *buf, size_t len, const cpn_limits_t *lim)
{
    size_t inline_stack[S_STACK_INLINE];
    size_t *stack = inline_stack; /* remaining slots of each open container */
    size_t depth = 0, pos = 0, objects = 0, pending = 0;
    int r = CPN_OK;
    if (!lim)
        lim = &cpn_limits_default;
    if (!buf && len)
        return CPN_E_INVAL;
    if (len > lim->max_frame)
        return CPN_E_FRAME_SIZE;
    if (len == 0)
        return CPN_E_MSGPACK;
    /* Each open container holds at least its header byte, so depth never exceeds len. */
    size_t cap = lim->max_depth < len ? lim->max_depth : len;
    if (cap > S_STACK_INLINE) {
        stack = malloc(cap * sizeof *stack);
        if (!stack)
            return CPN_E_NOMEM;
    }

    /* Loop invariant: one more object is expected at buf[pos] (the root, or a slot of the
     * innermost open container); `pending` counts slots not yet started, across all open
     * containers, and pending <= len - pos. */
    for (;;) {
        if (pos >= len) {
            r = CPN_E_MSGPACK; /* truncated */
            goto out;
        }
        if (++objects > lim->max_total) {
            r = CPN_E_COUNT;
            goto out;
        }
        uint8_t b = buf[pos++];
        s_head_t h = s_classify(b);
        size_t left = len - pos;
        size_t n = h.inline_n;
        if (h.cls == S_BAD) {
            r = CPN_E_MSGPACK;
            goto out;
        }
        if (h.cls == S_SCALAR) {
            if (h.skip > left) {
                r = CPN_E_MSGPACK;
                goto out;
            }
            pos += h.skip;
        } else {
            if (h.len_bytes > left) {
                r = CPN_E_MSGPACK;
                goto out;
            }
            if (h.len_bytes) {
                n = (size_t)s_be(buf + pos, h.len_bytes);
                pos += h.len_bytes;
                left -= h.len_bytes;
            }
            if (h.cls == S_RAW) {
                if (n > lim->max_str || n > left) {
                    r = CPN_E_COUNT;
                    goto out;
                }
                pos += n;
            } else {
                size_t slots = h.cls == S_MAP ? 2 * n : n; /* n < 2^32: no overflow */
                /* Every declared slot needs >= 1 byte: check before anything descends. */
                if (n > lim->max_container || pending > left || slots > left - pending) {
                    r = CPN_E_COUNT;
                    goto out;
                }
                if (slots > 0) {
                    if (depth >= lim->max_depth) {
                        r = CPN_E_DEPTH;
                        goto out;
                    }
                    stack[depth++] = slots;
                    pending += slots;
                    goto next;
                } else if (depth >= lim->max_depth) {
                    /* An empty container still nests one level. */
                    r = CPN_E_DEPTH;
                    goto out;
                }
            }
        }
        /* An object is complete: close every container it completes. */
        while (depth > 0 && stack[depth - 1] == 0)
            depth--;
        if (depth == 0)
            break;
    next:
        /* The next object starts a slot of the innermost open container. */
        if (pending > len - pos) {
            r = CPN_E_COUNT;
            goto out;
        }
        stack[depth - 1]--;
        pending--;
    }
    if (pos != len)
        r = CPN_E_TRAILING;
out:
    if (stack != inline_stack)
        free(stack);
    return r;
}

int mp_parse(const uint8_t *buf, size_t len, const cpn_limits_t *lim, msgpack_zone *zone,
             msgpack_object *out)
{
    size_t off = 0;
    int r;
    if (!zone || !out)
        return CPN_E_INVAL;
    if ((r = mp_validate(buf, len, lim)) != CPN_OK)
        return r;
    msgpack_unpack_return ur = msgpack_unpack((const char *)buf, len, &off, zone, out);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        return CPN_E_NOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return CPN_E_MSGPACK; /* cannot happen after mp_validate; refuse all the same */
    return CPN_OK;
}

/* ---- table-driven maps ---- */

#define S_FIELDS_MAX 128

/* Holds a copy of an unknown key for *bad_key (the key in the map is not NUL-terminated). */
static _Thread_local char s_bad_key[64];

static const char *s_key_copy(const char *p, size_t n)
{
    size_t k = n < sizeof s_bad_key - 1 ? n : sizeof s_bad_key - 1;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)p[i];
        s_bad_key[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    s_bad_key[k] = '\0';
    return s_bad_key;
}

/* Valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool s_utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (k > n - i - 1)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

bool mp_utf8_ok(const uint8_t *s, size_t n)
{
    return s_utf8_ok(s, n);
}

static int s_decode_value(const msgpack_object *v, const mp_field_t *f, uint8_t *dst)
{
    void *at = dst + f->off;
    switch (f->kind) {
    case MPF_U8:
    case MPF_U32:
    case MPF_U64: {
        uint64_t max = f->kind == MPF_U8 ? UINT8_MAX : f->kind == MPF_U32 ? UINT32_MAX
                                                                        : UINT64_MAX;
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > max)
            return CPN_E_SCHEMA;
        if (f->kind == MPF_U8)
            *(uint8_t *)at = (uint8_t)v->via.u64;
        else if (f->kind == MPF_U32)
            *(uint32_t *)at = (uint32_t)v->via.u64;
        else
            *(uint64_t *)at = v->via.u64;
        return CPN_OK;
    }
    case MPF_I32:
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX)
            *(int32_t *)at = (int32_t)v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v->via.i64 >= INT32_MIN)
            *(int32_t *)at = (int32_t)v->via.i64;
        else
            return CPN_E_SCHEMA;
        return CPN_OK;
    case MPF_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return CPN_E_SCHEMA;
        *(bool *)at = v->via.boolean;
        return CPN_OK;
    case MPF_STR: {
        if (v->type != MSGPACK_OBJECT_STR || f->size == 0 || v->via.str.size >= f->size)
            return CPN_E_SCHEMA;
        const uint8_t *p = (const uint8_t *)v->via.str.ptr;
        size_t n = v->via.str.size;
        if ((n && memchr(p, '\0', n)) || !s_utf8_ok(p, n))
            return CPN_E_SCHEMA;
        if (n)
            memcpy(at, p, n);
        ((char *)at)[n] = '\0';
        return CPN_OK;
    }
    case MPF_BIN: {
        if (v->type != MSGPACK_OBJECT_BIN)
            return CPN_E_SCHEMA;
        mp_bytes_t *b = at;
        b->ptr = (const uint8_t *)v->via.bin.ptr;
        b->len = v->via.bin.size;
        return CPN_OK;
    }
    case MPF_KEY:
        if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != 32)
            return CPN_E_SCHEMA;
        memcpy(at, v->via.bin.ptr, 32);
        return CPN_OK;
    case MPF_OBJ:
        *(const msgpack_object **)at = v;
        return CPN_OK;
    }
    return CPN_E_INTERNAL;
}

int mp_decode_map(const msgpack_object *map, const mp_field_t *fields, size_t n, void *dst,
                  const char **bad_key)
{
    bool seen[S_FIELDS_MAX] = {false};
    int r = CPN_OK;
    const char *bad = NULL;
    if (!map || !fields || !dst || n > S_FIELDS_MAX) {
        r = CPN_E_INVAL;
        goto out;
    }
    if (map->type != MSGPACK_OBJECT_MAP) {
        r = CPN_E_SCHEMA;
        goto out;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        size_t j;
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            bad = "(non-string key)";
            r = CPN_E_SCHEMA;
            goto out;
        }
        const char *kp = kv->key.via.str.ptr;
        size_t kn = kv->key.via.str.size;
        for (j = 0; j < n; j++)
            if (strlen(fields[j].key) == kn && memcmp(fields[j].key, kp, kn) == 0)
                break;
        if (j == n || seen[j]) { /* unknown or duplicated */
            bad = j == n ? s_key_copy(kp, kn) : fields[j].key;
            r = CPN_E_SCHEMA;
            goto out;
        }
        seen[j] = true;
        if ((r = s_decode_value(&kv->val, &fields[j], dst)) != CPN_OK) {
            bad = fields[j].key;
            goto out;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if (fields[j].required && !seen[j]) {
            bad = fields[j].key;
            r = CPN_E_SCHEMA;
            goto out;
        }
    }
out:
    if (bad_key)
        *bad_key = bad;
    return r;
}

static bool s_all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Is this field present in an encoding? Required fields always are. */
static bool s_field_present(const mp_field_t *f, const uint8_t *src)
{
    const void *at = src + f->off;
    if (f->kind == MPF_OBJ)
        return false;
    if (f->required)
        return true;
    switch (f->kind) {
    case MPF_U8:
        return *(const uint8_t *)at != 0;
    case MPF_U32:
        return *(const uint32_t *)at != 0;
    case MPF_U64:
        return *(const uint64_t *)at != 0;
    case MPF_I32:
        return *(const int32_t *)at != 0;
    case MPF_BOOL:
        return *(const bool *)at;
    case MPF_STR:
        return f->size > 0 && ((const char *)at)[0] != '\0';
    case MPF_BIN:
        return ((const mp_bytes_t *)at)->len > 0;
    case MPF_KEY:
        return !s_all_zero(at, 32);
    case MPF_OBJ:
        break;
    }
    return false;
}

int mp_encode_map(msgpack_packer *pk, const mp_field_t *fields, size_t n, const void *src,
                  size_t extra_entries)
{
    const uint8_t *s = src;
    size_t count = extra_entries;
    int w = 0;
    if (!pk || !fields || !src)
        return CPN_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        const mp_field_t *f = &fields[i];
        if (!s_field_present(f, s))
            continue;
        if (f->kind == MPF_STR) {
            /* Only what the decoder would accept back. */
            const char *str = (const char *)(s + f->off);
            const char *nul = memchr(str, '\0', f->size);
            if (!nul || !s_utf8_ok((const uint8_t *)str, (size_t)(nul - str)))
                return CPN_E_INVAL;
        }
        count++;
    }
    if (count > UINT32_MAX)
        return CPN_E_INVAL;
    w |= msgpack_pack_map(pk, count);
    for (size_t i = 0; i < n; i++) {
        const mp_field_t *f = &fields[i];
        const void *at = s + f->off;
        if (!s_field_present(f, s))
            continue;
        mp_pack_str(pk, f->key);
        switch (f->kind) {
        case MPF_U8:
            w |= msgpack_pack_uint64(pk, *(const uint8_t *)at);
            break;
        case MPF_U32:
            w |= msgpack_pack_uint64(pk, *(const uint32_t *)at);
            break;
        case MPF_U64:
            w |= msgpack_pack_uint64(pk, *(const uint64_t *)at);
            break;
        case MPF_I32:
            w |= msgpack_pack_int64(pk, *(const int32_t *)at);
            break;
        case MPF_BOOL:
            w |= *(const bool *)at ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
            break;
        case MPF_STR:
            mp_pack_str(pk, at);
            break;
        case MPF_BIN: {
            const mp_bytes_t *b = at;
            mp_pack_bin(pk, b->ptr, b->len);
            break;
        }
        case MPF_KEY:
            mp_pack_bin(pk, at, 32);
            break;
        case MPF_OBJ:
            break;
        }
    }
    return w ? CPN_E_NOMEM : CPN_OK;
}

/* The pack helpers return nothing: the only failure of the buffers cpn packs into is
 * running out of memory, which the caller sees as a short or NULL buffer. */
void mp_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mp_pack_bin(msgpack_packer *pk, const uint8_t *p, size_t len)
{
    msgpack_pack_bin(pk, len);
    if (len)
        msgpack_pack_bin_body(pk, p, len);
}

void mp_pack_kstr(msgpack_packer *pk, const char *key, const char *val)
{
    mp_pack_str(pk, key);
    mp_pack_str(pk, val);
}

void mp_pack_ku64(msgpack_packer *pk, const char *key, uint64_t val)
{
    mp_pack_str(pk, key);
    msgpack_pack_uint64(pk, val);
}

/* ---- JSON ---- */

static int s_json(const msgpack_object *o, FILE *out, int indent, int level);

/* A JSON string from bytes: escapes quotes, backslashes and control characters; bytes that
 * are not valid UTF-8 become U+FFFD so the output is always valid JSON. */
static void s_json_str(const uint8_t *p, size_t n, FILE *out)
{
    fputc('"', out);
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '"':
                fputs("\\\"", out);
                break;
            case '\\':
                fputs("\\\\", out);
                break;
            case '\n':
                fputs("\\n", out);
                break;
            case '\r':
                fputs("\\r", out);
                break;
            case '\t':
                fputs("\\t", out);
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    fprintf(out, "\\u%04x", c);
                else
                    fputc(c, out);
            }
            i++;
            continue;
        }
        size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (k <= n - i && s_utf8_ok(p + i, k)) {
            fwrite(p + i, 1, k, out);
            i += k;
        } else {
            fputs("\\ufffd", out);
            i++;
        }
    }
    fputc('"', out);
}

static int s_json_b64(const uint8_t *p, size_t n, FILE *out)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *b = malloc(cap);
    if (!b)
        return CPN_E_NOMEM;
    sodium_bin2base64(b, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    fputs("\"b64:", out);
    fputs(b, out);
    fputc('"', out);
    free(b);
    return CPN_OK;
}

static void s_newline(FILE *out, int indent, int level)
{
    if (indent <= 0)
        return;
    fputc('\n', out);
    for (int i = 0; i < indent * level; i++)
        fputc(' ', out);
}

static int s_json_key(const msgpack_object *k, FILE *out)
{
    if (k->type == MSGPACK_OBJECT_STR) {
        s_json_str((const uint8_t *)k->via.str.ptr, k->via.str.size, out);
        return CPN_OK;
    }
    if (k->type == MSGPACK_OBJECT_BIN)
        return s_json_b64((const uint8_t *)k->via.bin.ptr, k->via.bin.size, out);
    /* Any other key: its compact JSON text, as a string. */
    char *text = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&text, &n);
    if (!mem)
        return CPN_E_NOMEM;
    int r = s_json(k, mem, 0, 0);
    if (fclose(mem) != 0 && r == CPN_OK)
        r = CPN_E_NOMEM;
    if (r == CPN_OK)
        s_json_str((const uint8_t *)text, n, out);
    free(text);
    return r;
}

static int s_json(const msgpack_object *o, FILE *out, int indent, int level)
{
    int r = CPN_OK;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("null", out);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(o->via.boolean ? "true" : "false", out);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(out, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(out, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        double d = o->via.f64;
        if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308)
            fputs("null", out); /* JSON has no NaN or infinity */
        else
            fprintf(out, "%.17g", d);
        break;
    }
    case MSGPACK_OBJECT_STR:
        s_json_str((const uint8_t *)o->via.str.ptr, o->via.str.size, out);
        break;
    case MSGPACK_OBJECT_BIN:
        r = s_json_b64((const uint8_t *)o->via.bin.ptr, o->via.bin.size, out);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', out);
        for (uint32_t i = 0; i < o->via.array.size && r == CPN_OK; i++) {
            if (i)
                fputc(',', out);
            s_newline(out, indent, level + 1);
            r = s_json(&o->via.array.ptr[i], out, indent, level + 1);
        }
        if (o->via.array.size)
            s_newline(out, indent, level);
        fputc(']', out);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', out);
        for (uint32_t i = 0; i < o->via.map.size && r == CPN_OK; i++) {
            if (i)
                fputc(',', out);
            s_newline(out, indent, level + 1);
            if ((r = s_json_key(&o->via.map.ptr[i].key, out)) != CPN_OK)
                break;
            fputs(indent > 0 ? ": " : ":", out);
            r = s_json(&o->via.map.ptr[i].val, out, indent, level + 1);
        }
        if (o->via.map.size)
            s_newline(out, indent, level);
        fputc('}', out);
        break;
    default: /* ext: never produced by mp_parse */
        fputs("null", out);
        break;
    }
    return r;
}

int mp_to_json(const msgpack_object *obj, FILE *out, int indent)
{
    if (!obj || !out)
        return CPN_E_INVAL;
    int r = s_json(obj, out, indent, 0);
    if (r == CPN_OK && ferror(out))
        r = CPN_E_IO;
    return r;
}
