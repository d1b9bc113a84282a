/* batch.h - batch matching: place a window of waiting requests together, not one by one.
 *
 * The broker's default serves requests one at a time in arrival order, each on its best
 * candidate (match_find). That is fast but blind to what comes next: a request that could run
 * anywhere takes the cheapest offer, which may be the only kind a later request can use, and
 * the later one is refused. On batches of the Alibaba GPU 2023 trace it places ~13 % fewer
 * accelerators than possible (docs/BENCHMARKS.md, "Quality against the ILP optimum").
 * batch_plan looks at a window of requests at once and maximises, in this order:
 *   1. accelerators placed (a request counts units * accel_count),
 *   2. requests placed (so requests without accelerators are placed too),
 *   3. minus the cost: sum of units * the matcher's rank key of the chosen offer (= price
 *      under the default weights; preferences discount it exactly as in match.h).
 *
 * How: every request's candidates come from match_find (its hard constraints, the policy's
 * equivalences, residency and ceilings, at most BATCH_CANDS_MAX best-ranked offers each), so a
 * plan never breaks a constraint the matcher enforces. Requests for one unit are assigned by
 * an exact min-cost flow (source -> request -> offer -> sink, offer capacity = its free units,
 * lexicographic costs for the order above): for them the plan is optimal given the candidate
 * lists. Requests for several units (not split) cannot be split across offers, so they are
 * placed first (most accelerators first, fewest candidates next), each on its best candidate
 * with room; then, if anything is left unplaced, each of them tries up to BATCH_TRIES other
 * offers (or none) and keeps a move when the whole plan improves (the flow is solved again).
 * Split requests are left out: out[] never names them (serve them with match_find after the
 * plan, as the broker does today).
 *
 * Pure: no sockets, no clock (now_ms comes in), the book is only read (free units stay as
 * they are; the caller claims the plan and book_take's each LEASE as usual).
 * Cost: about one match_find per request plus the flow, O(augmentations * E log V) with
 * E <= n * BATCH_CANDS_MAX; a few milliseconds for 200 requests (docs/BENCHMARKS.md).
 */
#ifndef CPN_BATCH_H
#define CPN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "err.h"
#include "match.h"
#include "resource.h"

#define BATCH_MAX 1024      /* requests in one plan */
#define BATCH_CANDS_MAX 128 /* candidates considered per request (the best-ranked ones) */
#define BATCH_TRIES 8       /* other offers a multi-unit request tries when repairing */

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
