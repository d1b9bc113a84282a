/* spend.h - what a tenant's leases cost in a budget period, read from the broker's ledger:
 * the `committed` and `running` figures broker/budget.h admits a request against.
 *
 * For each lease of the tenant in the ledger (leases this broker brokered, the tenant's home
 * broker: docs/POLICY.md "budget") that overlaps the period [from_ms, to_ms):
 *   - what its USAGE records ending in (from_ms, to_ms] bill is committed (records this
 *     broker only carried for another broker's lease are not the tenant's spend here);
 *   - the part not metered yet, from max(its last record's to_ms, start, from_ms) to its
 *     current end, is committed if the lease has ended (released, expired, revoked: its last
 *     records will bill exactly that, by the usage rule) and running if it still runs.
 * Rounding is the usage rule's (common/usage.h), applied to each lease's cumulative charge,
 * so the figures do not depend on when USAGE records arrive. Everything comes from the
 * ledger file, so a restarted broker computes the same figures.
 *
 * Cost: one indexed query over the tenant's leases that end after from_ms and one sum over
 * its USAGE records of the period, per request of a tenant with a budget; nothing for the
 * others (claim.c never calls this for them).
 */
#ifndef CPN_SPEND_H
#define CPN_SPEND_H

#include <stdint.h>

#include "budget.h"
#include "err.h"
#include "identity.h"
#include "ledger.h"
#include "policy.h"

typedef struct spend spend_t;

/* Prepared on `ledger` (borrowed; must outlive it); creates the usage table if needed. */
int spend_open(ledger_t *ledger, spend_t **out) CPN_WUR;
void spend_destroy(spend_t **self_p);

/* The tenant's committed and running figures (thousandths) for [from_ms, to_ms) at now_ms.
 * CPN_E_DB if the ledger cannot be read. Sums saturate at UINT64_MAX (an over-budget). */
int spend_tenant(spend_t *self, const uint8_t tenant[CPN_PK_LEN], uint64_t from_ms, uint64_t to_ms,
                 uint64_t now_ms, uint64_t *committed, uint64_t *running) CPN_WUR;

/* The tenant's budget state at now_ms for the period of `b` (calendar month or day, UTC):
 * s->budget, committed and running (spend_tenant); s->in_flight is left to the caller. */
int spend_state(spend_t *self, const policy_budget_t *b, const uint8_t tenant[CPN_PK_LEN],
                uint64_t now_ms, budget_state_t *s) CPN_WUR;

/* May the tenant renew `lease_id` of `peer` (in `ledger`) by extend_s, with in_flight of its
 * requests being claimed? The extension costs the lease's units at its price (budget_cost).
 * CPN_OK also for a lease the ledger does not know (the peer decides); else CPN_E_OVER_BUDGET
 * or CPN_E_DB, with why. */
int spend_renew(spend_t *self, ledger_t *ledger, const policy_budget_t *b,
                const uint8_t tenant[CPN_PK_LEN], const uint8_t peer[CPN_PK_LEN],
                const char *lease_id, uint64_t extend_s, uint64_t now_ms, uint64_t in_flight,
                char why[CPN_REASON_MAX]) CPN_WUR;

#endif
