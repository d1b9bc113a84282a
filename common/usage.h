/* usage.h - metering: the USAGE record chain of one lease, priced in integer thousandths.
 *
 * A pure core (no clock, no sockets, no files): the peer makes records with it, brokers and
 * `cpnctl verify-bill` check them with it.
 *
 * Pricing (docs/PROTOCOL.md "USAGE"): a lease of `units` at `price` thousandths per unit-hour
 * that started at start_ms has, at time t, the cumulative charge
 *     total(t) = floor(units * price * (t - start_ms) / 3 600 000)      thousandths
 * computed exactly (128-bit intermediate). A record for the period [from, to) carries
 * total = total(to) and amount = total(to) - total(from). Rounding happens once, on the
 * cumulative figure, so however a lease is cut into periods (interval, renewal, early
 * release, a restart of the peer) its records add up to total(end): the sum never drifts.
 *
 * Chain: record n (from 1) names in `prev` the BLAKE2b-256 of record n-1's whole signed frame
 * (32 zero bytes for n = 1); it starts where n-1 ended (n = 1 at start_ms); lease, tenant,
 * package, units, price and start never change along it; nothing follows a `final` record.
 * A dropped record breaks n or prev; an altered one breaks its signature or the next prev.
 */
#ifndef CPN_USAGE_H
#define CPN_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "msg.h"

#define CPN_USAGE_MS_PER_HOUR 3600000u
#define CPN_USAGE_HASH_LEN 32
/* The peer's default record interval (peer config `usage_interval_s`), and its bounds. */
#define CPN_USAGE_INTERVAL_DEFAULT_S 300
#define CPN_USAGE_INTERVAL_MIN_S 1
#define CPN_USAGE_INTERVAL_MAX_S 86400

/* total(at_ms) as above into *out. CPN_E_INVAL if at_ms < start_ms or the charge does not
 * fit in 64 bits (more than 1.8e16 currency units: a corrupt record, not a bill). */
int cpn_usage_total(uint32_t units, uint64_t price, uint64_t start_ms, uint64_t at_ms,
                    uint64_t *out) CPN_WUR;

/* BLAKE2b-256 of a record's whole frame: what the next record names as `prev`. */
void cpn_usage_hash(const uint8_t *frame, size_t len, uint8_t out[CPN_USAGE_HASH_LEN]);

/* Fill `rec` as the record after `prev` (NULL: the first of the lease, whose terms come from
 * `first`, which must have lease_id, tenant, package, units, price and start_ms set) for the
 * period ending at to_ms; prev_hash is the hash of prev's frame (ignored for the first).
 * CPN_E_INVAL if to_ms is before the period's start, prev is final, or the amount overflows. */
int cpn_usage_next(const cpn_usage_t *prev, const uint8_t prev_hash[CPN_USAGE_HASH_LEN],
                   const cpn_usage_t *first, uint64_t to_ms, bool final, cpn_usage_t *rec) CPN_WUR;

/* Check one record on its own: period inside [start, ...), unit_ms, total and amount as the
 * pricing rule says. CPN_OK or CPN_E_CHAIN with why. */
int cpn_usage_check(const cpn_usage_t *rec, char why[CPN_REASON_MAX]) CPN_WUR;

/* Check that `rec` follows `prev` (NULL: rec must be the first record) whose frame hashes to
 * prev_hash: cpn_usage_check, then n, prev, period and the unchanging terms. CPN_OK or
 * CPN_E_CHAIN with why. */
int cpn_usage_check_link(const cpn_usage_t *prev, const uint8_t prev_hash[CPN_USAGE_HASH_LEN],
                         const cpn_usage_t *rec, char why[CPN_REASON_MAX]) CPN_WUR;

/* Calendar periods (UTC) for budgets and settlements: [from_ms, to_ms).
 * cpn_usage_month: the month holding at_ms; cpn_usage_day: the day holding it. */
void cpn_usage_month(uint64_t at_ms, uint64_t *from_ms, uint64_t *to_ms);
void cpn_usage_day(uint64_t at_ms, uint64_t *from_ms, uint64_t *to_ms);
/* "2026-12" (years 1970 .. 9999) -> that month's bounds. CPN_E_INVAL for anything else. */
int cpn_usage_month_parse(const char *text, uint64_t *from_ms, uint64_t *to_ms) CPN_WUR;

#endif
