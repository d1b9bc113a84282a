/* mp.h - strict msgpack: bounded validation before msgpack-c sees a byte, then
 * table-driven decoding of maps into C structs, and packing helpers.
 *
 * Why validate first: msgpack-c's unpacker reserves memory for every element a map or
 * array header *declares* before reading any of them, so a 5-byte input can make it
 * reserve hundreds of MiB. mp_validate walks the bytes, refusing any declared count that
 * could not fit in the bytes left, any length over the limits, nesting deeper than the
 * limit, and trailing bytes; only then is msgpack_unpack called.
 */
#ifndef CPN_MP_H
#define CPN_MP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct {
    size_t max_frame;     /* bytes in one frame; larger is CPN_E_FRAME_SIZE */
    size_t max_depth;     /* nesting of maps/arrays; deeper is CPN_E_DEPTH */
    size_t max_container; /* elements in one map or array; more is CPN_E_COUNT */
    size_t max_str;       /* bytes in one str/bin; more is CPN_E_COUNT */
    size_t max_total;     /* objects in one frame; more is CPN_E_COUNT */
} cpn_limits_t;

/* 64 KiB frames, depth 16, 4096 elements per container, 64 KiB strings, 65536 objects. */
extern const cpn_limits_t cpn_limits_default;

/* Exactly one msgpack object filling buf[0..len) within lim. */
int mp_validate(const uint8_t *buf, size_t len, const cpn_limits_t *lim) CPN_WUR;

/* mp_validate, then unpack into `out`, allocated in `zone`. str/bin in `out` point into
 * buf, which must outlive `out`. */
int mp_parse(const uint8_t *buf, size_t len, const cpn_limits_t *lim, msgpack_zone *zone,
             msgpack_object *out) CPN_WUR;

/* Field kinds for table-driven decoding. */
typedef enum {
    MPF_U8,     /* uint8_t */
    MPF_U32,    /* uint32_t; positive integer that fits */
    MPF_U64,    /* uint64_t */
    MPF_I32,    /* int32_t; positive or negative integer that fits */
    MPF_BOOL,   /* bool */
    MPF_STR,    /* char[size], NUL-terminated; longer than size-1 is an error */
    MPF_BIN,    /* mp_bytes_t pointing into the input */
    MPF_KEY,    /* uint8_t[32]: bin of exactly 32 bytes */
    MPF_OBJ,    /* const msgpack_object * (any type), for nested tables */
} mp_kind_t;

typedef struct {
    const uint8_t *ptr;
    size_t len;
} mp_bytes_t;

typedef struct {
    const char *key;
    mp_kind_t kind;
    size_t off;  /* offsetof the destination in the struct */
    size_t size; /* for MPF_STR: sizeof the char array */
    bool required;
} mp_field_t;

/* Decode `map` into `dst` by `fields`: every required key present, no unknown or duplicated
 * key, every value of its kind. Absent optional fields are left as they were. On error
 * *bad_key (if not NULL) names the offending key. CPN_E_SCHEMA on any mismatch. */
int mp_decode_map(const msgpack_object *map, const mp_field_t *fields, size_t n, void *dst,
                  const char **bad_key) CPN_WUR;

/* Encode `src` by `fields` as a map, in table order; skips optional fields that are zero or
 * empty. MPF_OBJ fields are not packable here (the caller packs them). */
int mp_encode_map(msgpack_packer *pk, const mp_field_t *fields, size_t n, const void *src,
                  size_t extra_entries) CPN_WUR;

/* Valid UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF (what MPF_STR accepts). */
bool mp_utf8_ok(const uint8_t *s, size_t n);

/* Pack helpers. */
void mp_pack_str(msgpack_packer *pk, const char *s);
void mp_pack_bin(msgpack_packer *pk, const uint8_t *p, size_t len);
void mp_pack_kstr(msgpack_packer *pk, const char *key, const char *val);
void mp_pack_ku64(msgpack_packer *pk, const char *key, uint64_t val);

/* Write `obj` as JSON to `out` (bin as base64url strings prefixed "b64:"; map keys that
 * are not strings are stringified). Returns CPN_OK or CPN_E_NOMEM/CPN_E_IO. */
#include <stdio.h>
int mp_to_json(const msgpack_object *obj, FILE *out, int indent) CPN_WUR;

#endif
