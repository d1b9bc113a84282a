/* summary.h - a broker's summary of its own peers' offers, for brokers beyond
 * federation.summary.distance (docs/FEDERATION.md, "Summaries for distant brokers").
 *
 * A summary is an AD's body signed by the broker: one row (a package map) per (shape, region,
 * price band) of the offers of the peers connected to it directly. A row's `free` and `total`
 * are the sums of the packages it counts, its `price` the lowest among those with free units
 * (among all while none has any); its `id` names
 * the group ("s" and 16 hex digits of a hash of the shape, the region and the band), the same
 * in every summary the broker makes. A distant broker matches a request against the rows and
 * sends its CLAIM for the row to the broker that made it, which picks the package.
 *
 * Pure: no sockets, no clock (now_ms comes in), no SQLite.
 */
#ifndef CPN_SUMMARY_H
#define CPN_SUMMARY_H

#include <stdint.h>

#include "book.h"
#include "msg.h"

#define SUMMARY_ROWS_MAX CPN_PACKAGES_MAX /* rows in one SUMMARY (an AD's bound) */

/* The price band of a price in thousandths: its bit length (0 for 0). Every price of band
 * b > 0 lies in [2^(b-1), 2^b). */
uint32_t summary_band(uint64_t price);
/* The highest price of band b: 2^b - 1 (0 for band 0). */
uint64_t summary_band_top(uint32_t band);

/* Rows of the book's offers that came to us directly (not relayed, not withdrawn, not expired
 * by now_ms, not shared accelerators: a slice is placed by the peer, not by a count) into
 * out->packages (allocated; free with cpn_ad_clear; zero rows: packages NULL). Groups beyond
 * SUMMARY_ROWS_MAX are left out and counted in *dropped (may be NULL). out->name and ttl_s are
 * the caller's. CPN_OK or CPN_E_NOMEM. */
int summary_build(const book_t *book, uint64_t now_ms, cpn_ad_t *out, uint32_t *dropped) CPN_WUR;

/* A fingerprint of the rows (their order counts: summary_build's order is deterministic for a
 * given book), so an unchanged summary is not sent again. */
uint64_t summary_hash(const cpn_ad_t *s);

#endif
