/* envelope.h - the signed envelope every cpn message travels in.
 *
 * One ZeroMQ frame = msgpack array(2) [payload: bin, signature: bin(64)].
 * payload = msgpack map, keys in this order and no others:
 *   "v": 1, "type": str, "from": bin(32), "seq": uint, "ts": uint (ms since epoch),
 *   "body": bin (a msgpack map, the type's body)
 * signature = Ed25519(from's key, "cpn/1/" || type || 0x00 || payload bytes as received).
 * Exact layout and test vectors: docs/PROTOCOL.md.
 *
 * Verify before read: cpn_env_parse checks size and structure and returns the header
 * fields; the caller looks `from` up in its trust rules; cpn_env_verify checks the
 * signature over the received bytes; only then is the body decoded (msg.h).
 */
#ifndef CPN_ENVELOPE_H
#define CPN_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "mp.h"

#define CPN_PROTO_VERSION 1
#define CPN_SIG_CONTEXT "cpn/1/"

typedef enum {
    CPN_ROLE_PEER = 1u << 0,
    CPN_ROLE_BROKER = 1u << 1,
    CPN_ROLE_TENANT = 1u << 2,
} cpn_role_t;

typedef enum {
    CPN_MSG_NONE = 0,
#define CPN_TYPE(e, name, stem, roles) CPN_MSG_##e,
#include "msg_schema.def"
    CPN_MSG__COUNT
} cpn_msg_type_t;

/* Wire name of a type ("AD"), NULL if out of range. */
const char *cpn_msg_name(cpn_msg_type_t type);
/* Type for a wire name, CPN_MSG_NONE if unknown. */
cpn_msg_type_t cpn_msg_type(const char *name, size_t len);
/* Roles allowed to send a type directly (msg_schema.def). */
unsigned cpn_msg_roles(cpn_msg_type_t type);

/* A parsed envelope. All pointers point into the frame, which must outlive it. */
typedef struct {
    cpn_msg_type_t type;
    uint8_t from[CPN_PK_LEN];
    uint64_t seq;
    uint64_t ts_ms;
    const uint8_t *body; /* a msgpack map, not yet decoded */
    size_t body_len;
    const uint8_t *payload; /* the signed payload bytes */
    size_t payload_len;
    const uint8_t *sig;
    const uint8_t *frame;
    size_t frame_len;
} cpn_env_t;

/* Build and sign a frame. `body` is an encoded msgpack map. *frame_p is malloc'd; the caller
 * owns it. */
int cpn_env_seal(const cpn_identity_t *id, cpn_msg_type_t type, uint64_t seq, uint64_t ts_ms,
                 const uint8_t *body, size_t body_len, uint8_t **frame_p,
                 size_t *frame_len) CPN_WUR;

/* Check frame size and structure strictly and fill `env` (signature not yet checked).
 * Errors: CPN_E_FRAME_SIZE, CPN_E_MSGPACK, CPN_E_COUNT, CPN_E_DEPTH, CPN_E_TRAILING,
 * CPN_E_SCHEMA, CPN_E_VERSION, CPN_E_TYPE. */
int cpn_env_parse(const uint8_t *frame, size_t len, const cpn_limits_t *lim,
                  cpn_env_t *env) CPN_WUR;

/* Check the signature of a parsed envelope: CPN_OK or CPN_E_SIG. */
int cpn_env_verify(const cpn_env_t *env) CPN_WUR;

/* cpn_env_parse then cpn_env_verify, for callers with no trust lookup between them
 * (offline verification, embedded messages). */
int cpn_env_open(const uint8_t *frame, size_t len, const cpn_limits_t *lim,
                 cpn_env_t *env) CPN_WUR;

/* Next sequence number for a sender: max(last + 1, now_ms << 12). Tying seq to the clock
 * means a restarted sender continues above anything it sent before without having stored
 * it, and a receiver can bound how far ahead a seq may be (see replay.h). */
uint64_t cpn_seq_next(uint64_t last, uint64_t now_ms);
/* A client's next seq: as cpn_seq_next, but the clock seq's low 12 bits are rnd's instead of
 * 0, so that clients sharing one key (several cpnctl at once) pick distinct seqs within one
 * millisecond: two collide with probability 1/4096. Still strictly above `last`; the clock
 * part stays below (now_ms + 1) << 12, well within a receiver's seq-jump bound. The caller
 * supplies the randomness (tests can fix it). */
uint64_t cpn_seq_next_rand(uint64_t last, uint64_t now_ms, uint32_t rnd);

#endif
