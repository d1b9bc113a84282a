/* msg.h - message bodies: one C struct per type, encoded as a msgpack map by a field table
 * (msg.c) and decoded strictly (unknown, duplicated or mistyped keys are CPN_E_SCHEMA).
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

typedef struct {
    char role[16]; /* "peer", "broker", "tenant" */
    char name[CPN_NAME_MAX];
    char endpoint[CPN_ENDPOINT_MAX]; /* where the sender listens, "" if it does not */
    /* Broker to member only (docs/PROTOCOL.md, "Dissemination"); absent (zero) otherwise. */
    uint8_t root[CPN_PK_LEN];   /* the root of the sender's spanning tree */
    uint32_t dist;              /* the sender's distance to it, in links */
    uint8_t parent[CPN_PK_LEN]; /* the member the sender chose as its parent (zero: none) */
    uint64_t digest;            /* fingerprint of the sender's offer book (zero: none) */
} cpn_hello_t;

typedef struct {
    char name[CPN_NAME_MAX]; /* the peer's name, for people */
    uint32_t ttl_s;          /* the offer expires this long after ts */
    uint32_t n_packages;
    cpn_package_t *packages; /* malloc'd by decode; free with cpn_ad_clear */
} cpn_ad_t;

typedef struct {
    char reason[CPN_REASON_MAX];
} cpn_withdraw_t;

/* REQUEST body is cpn_request_t (resource.h). */

typedef struct {
    mp_bytes_t request;          /* the tenant's REQUEST frame, verbatim */
    uint8_t peer[CPN_PK_LEN];    /* the peer asked to grant */
    char package[CPN_NAME_MAX];  /* which of its packages */
    uint32_t units;
    uint64_t price;              /* agreed per unit-hour, thousandths */
    uint64_t duration_s;
    mp_bytes_t route;            /* optional: FORWARD frame chain that carried the request */
    uint64_t deadline;           /* wall-clock ms: the peer refuses the CLAIM after this */
    mp_bytes_t replaces;         /* optional: the NOTICE of the lease this one replaces (the
                                    request asked on_failure: rematch), verbatim */
} cpn_claim_t;

typedef struct {
    mp_bytes_t claim;            /* the broker's CLAIM frame, verbatim */
    char lease_id[CPN_NAME_MAX];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t price;
    uint64_t start_ms;
    uint64_t end_ms;
    char state[16];              /* "active", "released", "expired" */
    uint32_t renewals;
    char slice[CPN_NAME_MAX];    /* a shared package's slice: "UNIT:DEV[,DEV...]" (0-based
                                    unit and accelerators of it); "" otherwise */
    mp_bytes_t access;           /* optional: access details sealed to the tenant (seal.h);
                                    absent (len 0) for a package without a driver */
} cpn_lease_t;

typedef struct {
    mp_bytes_t lease;            /* the peer's LEASE frame, verbatim */
    char request_id[CPN_NAME_MAX];
} cpn_grant_t;

typedef struct {
    char ref[CPN_NAME_MAX];      /* request id or lease id it answers */
    uint64_t ref_seq;            /* seq of the message it answers */
    int32_t code;                /* cpn_err_t */
    char reason[CPN_REASON_MAX]; /* readable detail, e.g. the excluding constraint */
} cpn_nack_t;

typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t peer[CPN_PK_LEN];
    uint64_t extend_s;
} cpn_renew_t;

typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t peer[CPN_PK_LEN];
} cpn_release_t;

/* Answers that are lists come in pages (docs/PROTOCOL.md, "Queries"): `after` is the `next` of
 * the previous page's STATUS, opaque to the client; "" asks for the first page. */
#define CPN_CURSOR_MAX 256
typedef struct {
    char what[32]; /* "status", "offers", "leases", "federation" */
    char after[CPN_CURSOR_MAX]; /* optional: rows strictly after this cursor */
    uint32_t limit;             /* optional: at most this many rows (0: as many as fit) */
} cpn_query_t;

typedef struct {
    char what[32];
    mp_bytes_t data; /* one msgpack object, for display (cpnctl prints it as JSON) */
    char next[CPN_CURSOR_MAX]; /* optional: more rows remain; QUERY `after` for them */
} cpn_status_t;

typedef struct {
    int32_t code;
    uint64_t ref_seq;
    char reason[CPN_REASON_MAX];
} cpn_error_t;

typedef struct {
    uint32_t hops;      /* brokers this AD/WITHDRAW has crossed */
    mp_bytes_t msg;     /* the peer's frame, verbatim */
} cpn_relay_t;

typedef struct {
    uint8_t to[CPN_PK_LEN]; /* the peer the inner message is for */
    uint32_t hops;
    mp_bytes_t msg;         /* inner frame: CLAIM/RENEW/RELEASE going out, LEASE/NACK back,
                               or another FORWARD (each hop wraps, keeping provenance) */
    uint64_t ref_seq;       /* optional, on the way back only: seq of the FORWARD (or CLAIM)
                               this answers, so each broker finds where it came from */
} cpn_forward_t;

/* SYNC: a digest of the sender's offer book for the peer keys in [lo, hi] (inclusive, compared
 * as big-endian byte strings). `entries` holds n * CPN_SYNC_ENTRY_LEN bytes: key (32) then seq
 * (uint64, big-endian), keys strictly increasing. The receiver answers with a RELAY of every AD
 * it holds in that range that the digest lacks or lists with an older seq. */
#define CPN_SYNC_ENTRY_LEN (CPN_PK_LEN + 8)
typedef struct {
    uint8_t lo[CPN_PK_LEN];
    uint8_t hi[CPN_PK_LEN];
    mp_bytes_t entries;
} cpn_sync_t;

/* RESEND: a peer's earlier LEASE or NOTICE, verbatim, in a fresh envelope (its own seq), so
 * that a lease re-sent for a repeated CLAIM, or a notice re-sent until a broker took it,
 * passes the receiver's replay guard. */
typedef struct {
    mp_bytes_t frame; /* the original LEASE or NOTICE frame, verbatim */
} cpn_resend_t;

/* NOTICE: the peer lost the capacity under a live lease (a node down, a driver's status
 * saying failed, an operator's drain) and says so, signed. `lease` is the lease's latest
 * LEASE frame, verbatim: it proves which lease, which tenant (its REQUEST's signer) and which
 * broker claimed it, so any party can check the notice against the lease it holds. From
 * `effective_ms` on the lease keeps `units` units (0: it ends). */
#define CPN_NOTICE_WHAT "notice" /* STATUS `what` of a broker's receipt for a NOTICE */
typedef struct {
    mp_bytes_t lease;            /* the lease's latest LEASE frame, verbatim */
    char lease_id[CPN_NAME_MAX]; /* = the LEASE's */
    uint8_t tenant[CPN_PK_LEN];  /* = the REQUEST's signer */
    int32_t code;                /* cpn_err_t: capacity-lost */
    char reason[CPN_REASON_MAX]; /* for people: "package cpu drained by the operator" */
    uint64_t effective_ms;       /* wall clock ms when the capacity went */
    uint32_t units;              /* units the lease keeps from then on; 0: it ends */
} cpn_notice_t;
/* USAGE: what a peer signs per lease, at an interval and at the lease's end (usage.h,
 * docs/PROTOCOL.md "USAGE"). Records of one lease form a chain: `n` counts from 1 and `prev`
 * is the BLAKE2b-256 of the previous record's whole frame (32 zero bytes for n = 1). Money
 * in integer thousandths: `total` is the lease's cumulative charge at to_ms, `amount` this
 * period's share of it. */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t tenant[CPN_PK_LEN];
    uint32_t n;
    uint8_t prev[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t price;    /* agreed, thousandths per unit-hour (the LEASE's) */
    uint64_t start_ms; /* the lease's start */
    uint64_t from_ms;  /* this period: [from_ms, to_ms) */
    uint64_t to_ms;
    uint64_t unit_ms;  /* units * (to_ms - from_ms): unit-milliseconds of this period */
    uint64_t amount;
    uint64_t total;
    bool final;        /* the lease ended at to_ms: no record follows */
} cpn_usage_t;

/* METER: a USAGE record on its way to the brokers (docs/PROTOCOL.md "USAGE: delivery"). The
 * record keeps its bytes (and its seq: a re-sent record passes the receiver's replay guard
 * because the METER around it is new). A peer sends it to the broker that claimed the lease;
 * a broker carries it on to the broker before it on the lease's route. `lease` (the lease's
 * LEASE frame, verbatim) comes with record 1: a broker that did not record the lease (one
 * that only carried it across the federation) checks the record's terms against it. */
typedef struct {
    mp_bytes_t usage; /* the USAGE frame, verbatim */
    mp_bytes_t lease; /* record 1 only: a LEASE frame of the lease, verbatim; else empty */
} cpn_meter_t;

/* RECEIPT: a broker's countersignature of a USAGE record it took into its ledger: it names
 * the record by its signer, lease, n and the BLAKE2b-256 of its whole frame (usage.h), so the
 * receipt and the record together prove offline that this broker took this record. */
typedef struct {
    uint8_t peer[CPN_PK_LEN];    /* the record's signer */
    char lease_id[CPN_NAME_MAX]; /* = the record's */
    uint32_t n;                  /* = the record's */
    uint8_t hash[CPN_PK_LEN];    /* BLAKE2b-256 of the record's frame (32 bytes) */
} cpn_receipt_t;

/* STATEMENT: a broker's signed settlement statement with another broker for one calendar
 * month (docs/PROTOCOL.md "STATEMENT", common/statement.h): per lease, what the USAGE records
 * of the period bill, in lines of fixed size. */
typedef struct {
    uint8_t with[CPN_PK_LEN]; /* the other broker */
    char period[16];          /* "2026-12" */
    uint32_t part, parts;     /* this frame is part `part` (from 1) of `parts` */
    uint64_t from_ms, to_ms;  /* the month, UTC: [from_ms, to_ms) */
    uint64_t owe;             /* sum of this part's lines the signer owes (its tenants, their
                                 peers) */
    uint64_t due;             /* sum of this part's lines due to the signer (their tenants, its
                                 peers) */
    mp_bytes_t lines;         /* n x CPN_STMT_LINE_LEN bytes (statement.h) */
} cpn_statement_t;

/* Encode a body as a msgpack map into a malloc'd buffer the caller owns. */
int cpn_msg_encode(cpn_msg_type_t type, const void *body, uint8_t **out, size_t *len) CPN_WUR;
/* Decode env->body strictly into `body`, which must be the struct of env->type.
 * Call only after the envelope verified. */
int cpn_msg_decode(const cpn_env_t *env, const cpn_limits_t *lim, void *body) CPN_WUR;
/* Free what decode allocated (only AD allocates). */
void cpn_ad_clear(cpn_ad_t *ad);

/* Encode body, then seal: *frame_p malloc'd, caller owns. */
int cpn_msg_build(const cpn_identity_t *id, cpn_msg_type_t type, uint64_t seq, uint64_t ts_ms,
                  const void *body, uint8_t **frame_p, size_t *frame_len) CPN_WUR;

#endif
