/* claim.h - the claim module: from a tenant's REQUEST to a GRANT or a NACK, and the
 * RENEW/RELEASE relays (claim.c explains the request state machine).
 *
 * An object of its own: it owns the requests in flight (their slots, the batch window, the
 * table of CLAIMs waiting for an answer) and the relays. It is created with the broker whose
 * services it calls down to (send.c's ways out, the book, the ledger, the signer, the policy
 * of the moment) and a clock it reads time through. Nothing calls it but the event loop
 * (server.c) and, through a callback the server wires, the federation.
 */
#ifndef CPN_CLAIM_H
#define CPN_CLAIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "identity.h"
#include "msg.h"

typedef struct broker broker_t;
typedef struct broker_rx broker_rx_t;
typedef struct broker_fwd_ref broker_fwd_ref_t;
typedef struct claim claim_t;

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

/* A claim module for up to max_pending requests in flight, calling down to `broker` (not
 * owned; it outlives the module). clock NULL: common/clock.h. NULL if out of memory. */
claim_t *claim_new(broker_t *broker, size_t max_pending, const claim_clock_t *clock);
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
