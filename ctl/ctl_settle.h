/* ctl_settle.h - `cpnctl settle`: this broker's signed settlement statement with another
 * broker for a month, made from its ledger, and its reconciliation with the other broker's
 * statement (docs/PROTOCOL.md "STATEMENT", common/statement.h, broker/settle.h).
 *
 *   cpnctl settle --policy BROKER.yaml --with MEMBER --period YYYY-MM
 *                 [--out FILE] [--theirs FILE] [--json]
 *
 * The policy names this broker's ledger, its key (which signs the statement) and its
 * members (MEMBER is a member's name, or a public key or .pub file). --out writes the signed
 * statement (one frame) for the other operator; --theirs reads the other broker's and
 * reconciles: exit 0 when every lease agrees to the thousandth, 1 listing the leases that
 * differ (or a statement that does not verify), 2 for a usage or local error.
 */
#ifndef CPN_CTL_SETTLE_H
#define CPN_CTL_SETTLE_H

#include <stdbool.h>

#define CTL_SETTLE_FILE_MAX (16u * 1024 * 1024) /* a statement file: one frame, 16 MiB */
#define CTL_SETTLE_DIFFS_SHOWN 1000             /* differing leases listed; more are counted */

/* argv: the command's own arguments (after "settle"). Returns the exit code. */
int ctl_settle(int argc, char **argv, bool json);

#endif
