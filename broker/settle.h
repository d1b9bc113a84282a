/* settle.h - the lines of this broker's settlement statement with another broker, from the
 * USAGE records in its ledger (docs/PROTOCOL.md "STATEMENT", common/statement.h).
 *
 * A lease belongs to the pair (us, them) when its tenant's broker (the first broker of its
 * chain: the origin of the CLAIM's route, or the CLAIM's signer when it has none) and its
 * peer's home broker (the signer of the CLAIM the peer answered) are the two of them: ours
 * served by theirs (we owe), or theirs served by ours (due to us). Brokers that only carried
 * the lease in between are not parties to it. The chain comes from the ledger: the lease's
 * GRANT (we are its tenant's broker) or the LEASE kept with its first USAGE record (we
 * carried it, usage_log.h). A lease whose chain is in neither, or does not open, cannot be
 * attributed: it is counted in *unknown and left out.
 *
 * The records counted are those whose period ends in (from_ms, to_ms], as for bills.
 */
#ifndef CPN_SETTLE_H
#define CPN_SETTLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "ledger.h"
#include "statement.h"

/* *lines (malloc'd, the caller frees; NULL if none) gets one line per lease of the pair,
 * *n how many. CPN_E_TOO_BIG past CPN_STMT_LINES_MAX leases, CPN_E_DB, CPN_E_NOMEM. */
int settle_lines(ledger_t *ledger, const uint8_t us[CPN_PK_LEN], const uint8_t them[CPN_PK_LEN],
                 uint64_t from_ms, uint64_t to_ms, cpn_stmt_line_t **lines, size_t *n,
                 size_t *unknown) CPN_WUR;

#endif
