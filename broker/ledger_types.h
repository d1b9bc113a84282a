/* ledger_types.h - the plain types and defaults of the broker's ledger that pure modules
 * need: what a tenant holds now (ledger_usage_t, which the ledger computes and the policy's
 * quota check reads) and the audit log's default bound (a policy default). A header of its
 * own so that the policy, a pure core, need not include the ledger (SQLite). */
#ifndef CPN_LEDGER_TYPES_H
#define CPN_LEDGER_TYPES_H

#include <stdint.h>

#define LEDGER_AUDIT_MAX_DEFAULT 1000000

typedef struct {
    uint64_t accelerators;
    uint64_t units;
    uint64_t spend_rate; /* sum of price * units, thousandths per hour */
} ledger_usage_t;

#endif
