/* hints.h - a REQUEST's access hints: a small map of strings the tenant gives the peer's
 * driver (an SSH public key to install, a login name), docs/PROTOCOL.md "REQUEST".
 *
 * Held inline in cpn_request_t, in one canonical form: entries sorted by key, every byte
 * after the last entry zero. So two requests with equal hints have equal bytes, and the
 * hints are part of a request's terms (cpn_chain_same_terms compares the bytes): reusing a
 * request id with other hints is a `conflict`, as with any other term.
 */
#ifndef CPN_HINTS_H
#define CPN_HINTS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CPN_HINTS_MAX 8      /* entries in one REQUEST's hints; more is `schema` */
#define CPN_HINT_KEY_MAX 32  /* a key is 1..31 bytes of a-z, 0-9 and _ */
#define CPN_HINTS_BYTES 2048 /* keys and values, each counted with one byte more, together */

typedef struct {
    uint32_t n;                 /* entries */
    uint32_t used;              /* bytes of text in use */
    char text[CPN_HINTS_BYTES]; /* n pairs "key\0value\0", keys strictly ascending */
} cpn_hints_t;

/* A key: 1..31 bytes of [a-z0-9_]. A value: 1 or more bytes of UTF-8 without control
 * characters (U+0000..U+001F, U+007F), so it is safe in a log line, a driver's JSON, a
 * shell variable. */
bool cpn_hint_key_ok(const char *key, size_t len);
bool cpn_hint_value_ok(const char *value, size_t len);

/* Add key = value, or replace the value of key; the form stays canonical. Errors: CPN_E_INVAL
 * (a bad key or value), CPN_E_TOO_BIG (a ninth key, or over CPN_HINTS_BYTES); h unchanged. */
int cpn_hints_set(cpn_hints_t *h, const char *key, const char *value) CPN_WUR;

/* The value of key, or NULL. Points into h. */
const char *cpn_hints_get(const cpn_hints_t *h, const char *key);

/* Entry i (0 .. n-1), in key order: false past the end. Pointers into h. */
bool cpn_hints_at(const cpn_hints_t *h, uint32_t i, const char **key, const char **value);

/* The msgpack form: a map of str to str, keys in ascending order. Packing empty hints is the
 * caller's choice (the REQUEST leaves the key out). Unpacking accepts any key order, refuses
 * an empty map, a duplicated key and anything out of the bounds above (CPN_E_SCHEMA). */
int cpn_hints_pack(msgpack_packer *pk, const cpn_hints_t *h) CPN_WUR;
int cpn_hints_unpack(const msgpack_object *obj, cpn_hints_t *h) CPN_WUR;

#endif
