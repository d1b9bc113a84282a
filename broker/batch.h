/* batch.h - batch matching: place a window of waiting requests together, not one by one.
 *
 * The broker serves requests one at a time in arrival order, each on its best candidate
 * (match_find). That is fast but blind to what comes next: a request that could run anywhere
 * takes the cheapest offer, which may be the only kind a later request can use, and the later
 * one is refused. On batches of the Alibaba GPU 2023 trace (200 requests x 100 nodes) that
 * places ~14 % fewer accelerators than the optimum; batch_plan reaches the optimum there
 * (docs/BENCHMARKS.md, "Quality against the ILP optimum"). It maximises, in this order:
 *   1. accelerators placed (a request counts units * accel_count),
 *   2. requests placed (so requests without accelerators are placed too),
 *   3. minus the cost: sum of units * the matcher's rank key of the chosen offer (= price
 *      under the default weights; preferences discount it exactly as in match.h).
 *
 * How: every request's candidates come from match_find (its hard constraints, the policy's
 * equivalences, residency and ceilings), so a plan never breaks a constraint the matcher
 * enforces; requests alike (all fields but id and duration equal) share one list, of the
 * best-ranked offers whose free units cover all the units the batch asks for, or one offer per
 * request of the batch (at least BATCH_CANDS_MIN offers, at most BATCH_CANDS_MAX). Requests
 * for one unit are assigned by an exact min-cost flow (source -> request shape -> offer ->
 * sink, offer capacity = its free units, lexicographic costs for the order above): for them
 * the plan is optimal (when no list is cut at BATCH_CANDS_MAX), and requests alike get their
 * offers in arrival order, best first. Requests for several units (not split) cannot be
 * spread over offers, so they are placed first (most accelerators first, fewest candidates
 * next), each on its best candidate with room; then,
 * while a request is left out, each of them that holds an offer a left-out request could use
 * (or is left out itself) tries up to BATCH_TRIES other offers (or none) and keeps a move
 * when the whole plan improves (the flow is solved again). That part is a heuristic.
 * Split requests are left out: out[] never names them (serve them with match_find after the
 * plan, as the broker does today).
 *
 * Pure: no sockets, no clock (now_ms comes in), the book is only read (free units stay as
 * they are; the caller claims the plan and book_take's each LEASE as usual).
 * Cost: one match_find per distinct request shape, then the flow; about 5 million
 * instructions for 200 trace requests over 100 packages (docs/BENCHMARKS.md).
 */
#ifndef CPN_BATCH_H
#define CPN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "err.h"
#include "match.h"
#include "resource.h"

#define BATCH_MAX 1024       /* requests in one plan */
#define BATCH_CANDS_MIN 128  /* candidates first asked for per request shape */
#define BATCH_CANDS_MAX 4096 /* most candidates asked for per request shape */
#define BATCH_TRIES 8        /* other offers a multi-unit request tries when repairing */

/* One planned placement: all of request reqs[req]'s units on cand's offer. */
typedef struct {
    size_t req;        /* index into reqs[] */
    match_cand_t cand; /* the offer (peer, package, price, free, rank); units = the request's */
} batch_place_t;

/* Plan placements for reqs[0..n) (arrival order; it breaks ties) against the book.
 * out must have room for n entries; *n_out placements are written, in request order, each
 * request at most once, never more units on an offer than it has free. Requests that fit no
 * offer, lose out, or are split are absent. An empty plan is CPN_OK.
 * Errors: CPN_E_INVAL (NULL argument, n > BATCH_MAX, an invalid request or policy: nothing
 * planned), CPN_E_NOMEM. */
int batch_plan(const book_t *book, const cpn_request_t *reqs, size_t n, const match_policy_t *pol,
               uint64_t now_ms, batch_place_t *out, size_t *n_out) CPN_WUR;

#endif
