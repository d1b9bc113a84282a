/* chain.h - the one opener of signed chains: GRANT > LEASE > CLAIM > REQUEST, and the route of
 * FORWARDed CLAIMs a federated CLAIM carries.
 *
 * A lease is a chain of signed frames, each embedding the next verbatim. Every party that
 * signs, records or accepts one opens it here, so every link is checked the same way:
 *   - each frame: envelope structure, then its type (before any body is decoded), then its
 *     signature (through the caller's sigcache: bytes verified once are not verified again),
 *     then who signed it, and only then its body, with a typed decoder (msg_typed.h);
 *   - signers: GRANT by the pinned broker (when given) and by the broker that sent the CLAIM
 *     (the route's origin for a federated one); LEASE by the CLAIM's `peer`; CLAIM by the
 *     expected broker (when given); REQUEST by the expected tenant (when given);
 *   - links: GRANT request_id = REQUEST id; LEASE units and price = the CLAIM's, LEASE
 *     package the CLAIM's or, for a slice REQUEST only, one of the CLAIM's `alts`;
 *     lease_id = cpn_chain_lease_id(CLAIM peer, REQUEST signer, REQUEST id); state one of
 *     "active", "released", "expired"; start <= end, and for a lease never renewed
 *     (renewals = 0) end = start + duration_s * 1000 while "active" or "expired", end <=
 *     start + duration_s * 1000 once "released" (the release time); a renewed "active" lease
 *     ends at least renewals seconds after start + duration (each RENEW adds >= 1 s);
 *     CLAIM units in 1..REQUEST units, duration in 1..REQUEST duration, price <= the REQUEST's
 *     max_price when it set one; unless the CLAIM `replaces` a revoked lease, units = the
 *     REQUEST's when it is not split, and duration = the REQUEST's;
 *   - a route: FORWARDs only, each naming the CLAIM's peer, no ref_seq, hops counting down to
 *     1 at the innermost, at most max_hops of them, around one CLAIM (no route of its own)
 *     signed by the innermost FORWARD's signer, asking for exactly what the outer CLAIM asks
 *     (same REQUEST bytes, peer, package, alts, units, price, duration). Or a resolved summary
 *     row (docs/PROTOCOL.md §12): the first CLAIM's `peer` is the broker that signed the
 *     outer CLAIM, every FORWARD names that broker, and the outer CLAIM has the same REQUEST
 *     bytes, units and duration, another peer and package, and a price no higher.
 * Everything refused says why in ch->why. A pure function of the bytes and the options: no
 * sockets, no clock but opts->now_ms.
 */
#ifndef CPN_CHAIN_H
#define CPN_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"
#include "sigcache.h"

#define CPN_CHAIN_ROUTE_MAX 64 /* FORWARDs in a route (a policy's max_hops is at most 64) */

enum {
    /* The lease must be a new grant: state "active", renewals 0 (and its start within
     * max_start_skew_ms of now_ms when both are set). */
    CPN_CHAIN_NEW = 1u << 0,
    /* The outermost frame's signature was already verified by the caller: not again. */
    CPN_CHAIN_TOP_VERIFIED = 1u << 1,
};

typedef struct {
    const cpn_limits_t *lim;     /* NULL: cpn_limits_default */
    cpn_sigcache_t *sigcache;    /* NULL: every signature verified */
    const uint8_t *broker_pk;    /* pinned: the GRANT's signer; NULL: any */
    const uint8_t *claim_pk;     /* the CLAIM's signer; NULL: any */
    const uint8_t *peer_pk;      /* the CLAIM's `peer`; NULL: any */
    const uint8_t *tenant_pk;    /* the REQUEST's signer; NULL: any */
    uint32_t max_hops;           /* FORWARDs a route may hold; 0: CPN_CHAIN_ROUTE_MAX */
    uint64_t now_ms;             /* the time the bounds below are taken at */
    uint64_t max_request_age_ms; /* REQUEST ts within now_ms +- this; 0: not checked */
    uint64_t max_start_skew_ms;  /* with CPN_CHAIN_NEW: LEASE start in [REQUEST ts, now_ms],
                                    give or take this; 0: not checked */
    unsigned flags;
} cpn_chain_opts_t;

/* An opened chain. Levels above the outermost frame are absent (has_grant, has_lease false);
 * every pointer points into the frame given to cpn_chain_open, which must outlive it. */
typedef struct {
    cpn_msg_type_t top;
    bool has_grant, has_lease;
    cpn_env_t grant_env, lease_env, claim_env, req_env;
    cpn_grant_t grant;
    cpn_lease_t lease;
    cpn_claim_t claim;
    cpn_request_t req;
    uint32_t n_forwards;  /* FORWARDs in the CLAIM's route; 0: not federated */
    cpn_env_t origin_env; /* with a route: the originating broker's CLAIM */
    cpn_claim_t origin;
    /* The brokers the request passed, origin first, the CLAIM's signer last. */
    uint8_t brokers[CPN_CHAIN_ROUTE_MAX + 1][CPN_PK_LEN];
    uint32_t n_brokers;
    char why[CPN_REASON_MAX];
} cpn_chain_t;

/* Open `frame` (outermost type `top`: GRANT, LEASE, CLAIM or REQUEST; CPN_MSG_NONE: whichever
 * of these the frame is) down to its REQUEST, checking everything listed above. opts NULL:
 * defaults, nothing pinned. Errors: envelope codes (cpn_env_parse), CPN_E_WRONG_TYPE (a frame
 * of the wrong type at some level), CPN_E_SIG, CPN_E_UNTRUSTED (a signer not the one
 * pinned or expected), body codes (cpn_msg_decode), CPN_E_DEPTH (route too long),
 * CPN_E_CHAIN (a link does not hold), CPN_E_STALE (REQUEST outside the age bound).
 * ch->why always says what failed. */
int cpn_chain_open(const uint8_t *frame, size_t len, cpn_msg_type_t top,
                   const cpn_chain_opts_t *opts, cpn_chain_t *ch) CPN_WUR;

/* The check CPN_CHAIN_NEW makes, for a caller that learns only after opening that the LEASE
 * must be a new grant: state "active", renewals 0, and (max_start_skew_ms > 0) a start no
 * later than now_ms and no earlier than the REQUEST's ts, each give or take max_start_skew_ms
 * (a retried CLAIM is answered with the LEASE granted the first time: it may have started a
 * while ago). CPN_OK or CPN_E_CHAIN with ch->why. */
int cpn_chain_check_new(cpn_chain_t *ch, uint64_t now_ms, uint64_t max_start_skew_ms) CPN_WUR;

/* The lease id a peer gives the lease for (peer, tenant, request id): "L" + the first 16
 * characters of base64url-without-padding(BLAKE2b-256(peer pk || tenant pk || request id
 * bytes)), no key, 17 characters. */
void cpn_chain_lease_id(const uint8_t peer[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                        const char *request_id, char out[CPN_NAME_MAX]);

/* Is `package` one of a CLAIM's `alts` ("id,id,...")? */
bool cpn_claim_alt(const char *alts, const char *package);
/* A CLAIM's `alts` split into out (at most max ids): how many. An empty id or one of
 * CPN_NAME_MAX bytes or more is skipped. */
size_t cpn_claim_alts_split(const char *alts, char (*out)[CPN_NAME_MAX], size_t max);

/* Whether two REQUEST bodies ask for the same thing: every field equal but `progress` (a
 * display wish, not a term). A reused request id with other terms is a CPN_E_CONFLICT. */
bool cpn_chain_same_terms(const cpn_request_t *a, const cpn_request_t *b);

#endif
