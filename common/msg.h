/* msg.h - message bodies: one C struct per type, encoded as a msgpack map by a field table
 * (msg.c) and decoded strictly (unknown, duplicated or mistyped keys are CPN_E_SCHEMA). The
 * structs and tables come from the rows of msg_schema.def, which also say what each field is.
 *
 * Embedded messages (a REQUEST inside a CLAIM, a CLAIM inside a LEASE, ...) are carried as
 * the complete signed frame, verbatim, in a bin field, so their signatures survive
 * forwarding. mp_bytes_t fields point into the frame being decoded.
 *
 * Helper: cpn_msg_build() encodes a body and seals it in one step.
 */
#ifndef CPN_MSG_H
#define CPN_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "envelope.h"
#include "mp.h"
#include "resource.h"

#define CPN_REASON_MAX 256
#define CPN_ENDPOINT_MAX 256

/* Sealed access details (seal.h, docs/PROTOCOL.md "Sealed access details"): the plaintext is
 * one JSON object of at most CPN_ACCESS_MAX bytes (a login, an endpoint, a reservation name;
 * a driver that hands out more is refused as provision-failed), nested at most
 * CPN_ACCESS_DEPTH deep; the box adds CPN_SEAL_OVERHEAD bytes (crypto_box_SEALBYTES:
 * ephemeral key 32 + MAC 16). A LEASE `access` outside [CPN_ACCESS_BOX_MIN, CPN_ACCESS_BOX_MAX]
 * is refused as schema. */
#define CPN_ACCESS_MAX 4096
#define CPN_ACCESS_DEPTH 8
#define CPN_SEAL_OVERHEAD 48
#define CPN_ACCESS_BOX_MIN (CPN_SEAL_OVERHEAD + 2) /* "{}" */
#define CPN_ACCESS_BOX_MAX (CPN_ACCESS_MAX + CPN_SEAL_OVERHEAD)

/* Answers that are lists come in pages: QUERY `after` / STATUS `next` (msg_schema.def). */
#define CPN_CURSOR_MAX 256
/* SYNC `entries`: n of these, key (32) then seq (uint64, big-endian) (msg_schema.def). */
#define CPN_SYNC_ENTRY_LEN (CPN_PK_LEN + 8)
#define CPN_NOTICE_WHAT "notice" /* STATUS `what` of a broker's receipt for a NOTICE */

/* AD's body: the wire rows (cpn_ad_wire_t, msg_schema.def) with the packages decoded. */
typedef struct {
    char name[CPN_NAME_MAX]; /* the peer's name, for people */
    uint32_t ttl_s;          /* the offer expires this long after ts */
    uint32_t n_packages;
    cpn_package_t *packages; /* malloc'd by decode, with the room their `sum`s point into
                                (one block); free with cpn_ad_clear */
} cpn_ad_t;

/* SUMMARY's body is an AD's (msg_schema.def). */
typedef cpn_ad_t cpn_summary_t;

/* REQUEST's body is cpn_request_t (resource.h). */

/* The body struct of every other type, from its rows in msg_schema.def (see the field
 * comments there): cpn_hello_t, cpn_claim_t, cpn_lease_t, ... and cpn_ad_wire_t. */
#define CPN_MSG(e, wire, stem, roles) typedef struct {
#define CPN_MSG_WIRE(e, wire, stem, roles) typedef struct {
#define CPN_FIELD(stem, ctype, name, dim, kind, doc, req) ctype name dim;
#define CPN_END(stem) } cpn_##stem##_t;
#include "msg_schema.def"


/* Encode a body as a msgpack map into a malloc'd buffer the caller owns. */
int cpn_msg_encode(cpn_msg_type_t type, const void *body, uint8_t **out, size_t *len) CPN_WUR;
/* Decode env->body strictly into `body`, which must be the struct of env->type.
 * Call only after the envelope verified. */
int cpn_msg_decode(const cpn_env_t *env, const cpn_limits_t *lim, void *body) CPN_WUR;
/* Free what decode allocated (only AD and SUMMARY allocate). */
void cpn_ad_clear(cpn_ad_t *ad);

/* Encode body, then seal: *frame_p malloc'd, caller owns. */
int cpn_msg_build(const cpn_identity_t *id, cpn_msg_type_t type, uint64_t seq, uint64_t ts_ms,
                  const void *body, uint8_t **frame_p, size_t *frame_len) CPN_WUR;

#endif
