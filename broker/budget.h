/* budget.h - a tenant's budget and a request's cost ceiling: may this request be admitted?
 *
 * A pure core (no clock, no ledger): the caller gathers the figures, this decides and says
 * which figure refused. Amounts are thousandths of the currency unit, as everywhere.
 *
 * For a period (a calendar month, docs/POLICY.md), a tenant's exposure is
 *     committed   what its USAGE records of the period already bill,
 *   + running     the rest of its running leases, to their current end, at their prices,
 *   + in_flight   the cost of its requests admitted but not yet granted or refused,
 * and a request of cost C (its units x max price x duration, priced by the usage rule) is
 * admitted only if exposure + C <= budget (budget 0: none set) and C <= the request's own
 * cost ceiling (0: none).
 */
#ifndef CPN_BUDGET_H
#define CPN_BUDGET_H

#include <stdint.h>

#include "err.h"
#include "match.h"
#include "msg.h"

typedef struct {
    uint64_t budget;    /* per period; 0: no budget */
    uint64_t committed; /* billed so far in the period */
    uint64_t running;   /* rest of the running leases */
    uint64_t in_flight; /* requests admitted, not yet answered */
} budget_state_t;

/* The most a request can cost: floor(units x price x duration_s x 1000 / 3 600 000), the
 * usage rule (usage.h) over its whole duration. CPN_E_INVAL if it does not fit 64 bits. */
int budget_request_cost(uint32_t units, uint64_t price, uint64_t duration_s,
                        uint64_t *cost) CPN_WUR;

/* The rest of a running lease at now_ms: total(end) - total(max(now, start)) by the usage
 * rule; 0 for a lease that has ended. */
uint64_t budget_lease_rest(uint32_t units, uint64_t price, uint64_t start_ms, uint64_t end_ms,
                           uint64_t now_ms);

/* CPN_OK, or CPN_E_OVER_BUDGET with why naming the figure ("cost 12.000 over the request's
 * ceiling 10.000", "budget 100.000: committed 60.000 + running 30.000 + in flight 5.000 +
 * this request 12.000 = 107.000"). Sums that would overflow refuse too. */
int budget_admit(const budget_state_t *s, uint64_t cost, uint64_t ceiling,
                 char why[CPN_REASON_MAX]) CPN_WUR;

/* budget_request_cost saturating: UINT64_MAX for a cost beyond 64 bits (over any budget). */
uint64_t budget_cost(uint32_t units, uint64_t price, uint64_t duration_s);

/* Keep the candidates a request of `units` for duration_s may take: each priced at its own
 * price (budget_cost), admitted by budget_admit against s and the request's ceiling (0: none).
 * *n becomes how many are kept, in their order. CPN_OK if any is, else the first refusal,
 * why naming its figures. */
int budget_filter(const budget_state_t *s, match_cand_t *cands, size_t *n, uint32_t units,
                  uint64_t duration_s, uint64_t ceiling, char why[CPN_REASON_MAX]) CPN_WUR;

#endif
