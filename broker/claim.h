/* claim.h - the claim module: from a tenant's REQUEST to a GRANT or a NACK, and the
 * RENEW/RELEASE relays (claim.c explains the request state machine).
 *
 * An object of its own: it owns the requests in flight (their slots, the batch window, the
 * table of CLAIMs waiting for an answer) and the relays. It is created with the services it
 * calls down to and nothing more (claim_svc_t: the ways out, the book, the ledger, the
 * signer, the policy of the moment, the counters) and a clock it reads time through; it
 * never sees the broker. Nothing calls it but the event loop (server.c, which wires the
 * services) and, through a callback the server wires, the federation.
 */
#ifndef CPN_CLAIM_H
#define CPN_CLAIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "broker_types.h"
#include "envelope.h"
#include "identity.h"
#include "ledger.h"
#include "msg.h"
#include "outbox.h"
#include "policy.h"
#include "sigcache.h"
#include "transport.h"

typedef struct claim claim_t;

/* The ways out, each called with `ctx` (server.c: the broker, its send.c and federation.c;
 * tests: a fake that captures). They call nothing of this module back. */
typedef struct {
    void *ctx;
    /* Sign and send a message to a connection; send a frame built already. */
    int (*send)(void *ctx, const uint8_t *rid, size_t rid_len, cpn_msg_type_t type,
                const void *body);
    int (*send_frame)(void *ctx, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                      size_t len);
    void (*nack)(void *ctx, const uint8_t *rid, size_t rid_len, const char *ref, uint64_t ref_seq,
                 int code, const char *reason);
    /* Frames that leave only once the ledger has committed (outbox.h); see broker_queue and
     * broker_queue_grant in broker.h. */
    int (*queue)(void *ctx, outbox_item_t *item);
    void (*queue_grant)(void *ctx, const uint8_t *rid, size_t rid_len, uint8_t **frame_p,
                        size_t len, const char *ref, uint64_t ref_seq);
    /* A refused message, counted by its code. */
    void (*count_refusal)(void *ctx, int code);
    /* Where a key's connection is (NULL: none). */
    const broker_route_t *(*route)(void *ctx, const uint8_t key[CPN_PK_LEN]);
    /* The federation: send `frame` to `peer` through member `via` (federation_forward), and
     * pass back an answer we carried for another broker (federation_peer_answer). */
    int (*forward)(void *ctx, const uint8_t via[CPN_PK_LEN], const uint8_t *frame, size_t len,
                   const broker_fwd_ref_t *ref);
    bool (*peer_answer)(void *ctx, const cpn_env_t *answer, uint64_t claim_seq,
                        const uint8_t *tenant, const char *req_id, const char *lease_id);
} claim_out_t;

struct obs;

/* What the claim module touches, and only that; none of it owned. The policy, the limits and
 * the HTTP listener are reached through the owner's pointer, as a reload replaces them. */
typedef struct {
    claim_out_t out;
    ledger_t *ledger;
    struct spend *spend; /* tenants' spend in their budget period (spend.h) */
    book_t *book;
    policy_t *const *pol;     /* the policy of the moment: *pol */
    const cpn_limits_t *lim;  /* frame limits of the moment */
    cpn_sigcache_t *sigcache; /* signatures verified already */
    cpn_signer_t *signer;     /* signs as the broker (signer->id: our identity) */
    broker_stats_t *stats;    /* the broker's counters */
    struct obs *const *obs;   /* latencies are observed while *obs is not NULL */
} claim_svc_t;

/* The time seam: wall-clock and monotonic milliseconds (common/clock.h by default). */
typedef struct {
    uint64_t (*now_ms)(void);
    uint64_t (*mono_ms)(void);
} claim_clock_t;

/* What the module counts beyond the broker's stats (STATUS, tests). */
typedef struct {
    uint64_t ignored; /* events with no row for the request's state: logged and dropped */
    uint64_t late;    /* answers (LEASE, NACK) for no request waiting */
} claim_stats_t;

/* A claim module for up to max_pending requests in flight, calling down to the services in
 * *svc (copied; what they point to outlives the module). clock NULL: common/clock.h. NULL if
 * out of memory. */
claim_t *claim_new(const claim_svc_t *svc, size_t max_pending, const claim_clock_t *clock);
/* Free it and every request still held (no answer is sent: claim_stop does that). Accepts
 * NULL; clears *self_p. */
void claim_destroy(claim_t **self_p);

/* Messages from the event loop, verified by it. */
void claim_on_request(claim_t *self, const broker_rx_t *rx, const cpn_request_t *req);
void claim_on_lease(claim_t *self, const broker_rx_t *rx, const cpn_lease_t *lease);
void claim_on_nack(claim_t *self, const broker_rx_t *rx, const cpn_nack_t *nack);
/* A RENEW (extend_s > 0) or RELEASE (extend_s 0) of the tenant's lease: relayed to the peer;
 * a RENEW that would take a tenant with a budget over it is refused over-budget first. */
void claim_on_tenant_op(claim_t *self, const broker_rx_t *rx, const uint8_t peer[CPN_PK_LEN],
                        const char *lease_id, uint64_t extend_s);
/* Timers: CLAIMs and relays past their deadline. */
void claim_tick(claim_t *self, uint64_t now_mono);
/* Batch mode (placement.batch): when the window must be matched (monotonic ms, WINDOW_NEVER
 * if empty), for the loop's poll timeout; match it if that time has come. */
uint64_t claim_window_deadline(const claim_t *self);
void claim_window_poll(claim_t *self, uint64_t now_mono);
/* At stop: NACK busy every request in flight (in the window or claimed); how many. */
size_t claim_stop(claim_t *self);
/* A peer's AD just replaced its offers in the book: hold again the units of CLAIMs to it
 * that are still unanswered. */
void claim_on_ad(claim_t *self, const uint8_t peer[CPN_PK_LEN]);
/* The answer (a verified LEASE or NACK) to a CLAIM, RENEW or RELEASE we sent through the
 * federation, back at the broker that sent it. */
void claim_on_remote_answer(claim_t *self, const cpn_env_t *answer, const broker_fwd_ref_t *ref);
/* A CLAIM queued in the outbox did not leave: `committed` false if the ledger commit failed
 * (its intent is not durable: the request gets NACK `database`), true if the send itself
 * failed with `code` (the request moves on as if the peer had been unreachable). */
void claim_on_unsent(claim_t *self, uint64_t claim_seq, bool committed, int code);

/* Requests in flight (in the window or claimed). */
size_t claim_in_flight(const claim_t *self);
/* Is the CLAIM with this seq still waiting for its answer (one lookup)? For tests and
 * diagnostics. */
bool claim_waiting(const claim_t *self, uint64_t claim_seq);
const claim_stats_t *claim_stats(const claim_t *self);

/* Tests: the state of the request (tenant, id), by name ("free" if none). */
const char *claim_request_state(const claim_t *self, const uint8_t tenant[CPN_PK_LEN],
                                const char *id);

#endif
