/* match.h - the matcher: a request against the offer book under the broker's policy.
 *
 * Pure: no sockets, no clock (now_ms comes in), no SQLite. The matcher proposes; the peer
 * decides (a CLAIM may still be refused), so the caller tries the candidates in order.
 *
 * Hard constraints (all must hold, per unit; see resource.h): accelerator model by name, where
 * a request naming model M is also served by any model the policy's equivalence rule for M
 * accepts (names compared case-insensitively, one level, not transitive); accelerator vendor;
 * accelerator count (at least); total BF16 TFLOPS and total accelerator memory (at least);
 * cores, memory, storage class (same class) and size, fabric, egress (at least); region in the
 * request's allowed regions AND the policy's (empty = any); price <= the smaller of the
 * request's and the policy's non-zero ceilings; free units >= the request's units (a split
 * request: >= 1). Offers of peers whose AD expired by now_ms are ignored.
 *
 * Ranking (best first). With bonus = w_region [region in the request's prefer_regions]
 *                                  + w_vendor [vendor in the policy's or the request's
 *                                              prefer_vendors]
 *                                  + w_local  [peer connected to us directly (via all-zero)],
 * the rank key is  price * w_price * 100 / (100 + bonus)  (lower is better): a weight is the
 * percentage by which a preference discounts the price it is judged at (w_region = 25 and
 * w_price = 1: a preferred region at 125.000 ties with another region at 100.000).
 * Ties on the key go to the larger bonus, then the lower price, then the lower peer key
 * (bytes), then the lower package id (bytes): the order is total and deterministic.
 */
#ifndef CPN_MATCH_H
#define CPN_MATCH_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "err.h"
#include "identity.h"
#include "resource.h"

#define MATCH_EQUIV_MAX 32
#define MATCH_WEIGHT_MAX 10000 /* bound for each weight (keeps the arithmetic in 64 bits) */

/* A request naming `model` may also be served by any model in `accept`. */
typedef struct {
    char model[CPN_NAME_MAX];
    cpn_namelist_t accept;
} match_equiv_t;

/* The placement part of the broker's policy (filled by the policy parser). */
typedef struct {
    uint32_t w_price;  /* weight of price; 0 = rank by preferences only (then price) */
    uint32_t w_region; /* bonus for a region the tenant prefers */
    uint32_t w_vendor; /* bonus for a preferred vendor (policy's list or the tenant's) */
    uint32_t w_local;  /* bonus for a peer connected to this broker directly */
    cpn_namelist_t prefer_vendors;
    match_equiv_t equiv[MATCH_EQUIV_MAX];
    uint32_t n_equiv;
    uint64_t max_price;             /* ceiling for everyone, thousandths; 0 = none */
    cpn_namelist_t allowed_regions; /* residency for everyone; empty = any */
    bool local_only; /* only offers of peers connected to us directly (not from the policy:
                        the first pass of ordered spill-over, broker/spill.h) */
} match_policy_t;

/* Defaults: w_price 1, w_region 20, w_vendor 10, w_local 5, no lists, no ceiling. */
void match_policy_default(match_policy_t *pol);

/* Check the weights' bounds and the equivalence rules: CPN_E_CONFIG with *why static text. */
int match_policy_validate(const match_policy_t *pol, const char **why) CPN_WUR;

/* One candidate: claim `units` of `package` from `peer` at `price`. */
typedef struct {
    uint8_t peer[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units; /* request's units; split: min(free, request's units) - take min(units,
                       units still needed) */
    uint64_t price; /* per unit-hour, thousandths */
    uint32_t free;  /* free units the book shows */
    uint64_t rank;  /* the rank key (see above); lower is better */
} match_cand_t;

/* Why nothing matched: the constraint that excluded the most offers (each offer counted once,
 * under the first constraint it fails in cpn_constraint_t order), and the one that excluded
 * the next most. The second is often the one to act on: "accelerator.model excluded 110 of
 * 127 offers; units excluded 17" says the offers of the right model are all taken. */
typedef struct {
    cpn_constraint_t constraint;
    uint32_t excluded;        /* offers that constraint excluded */
    uint32_t total;           /* offers in the book */
    cpn_constraint_t next;    /* CPN_C_OK if no other constraint excluded any */
    uint32_t next_excluded;
} match_fail_t;

/* A slice CLAIM's `alts` (chain.h; none unless req asks for a slice) for candidate c: the other candidates in cands[0..n) of
 * c's peer at c's price, in order, joined by ',' into out (cap bytes, at least 1);
 * ids with a ',' and ids that would not fit whole are left out. The peer places the slice on
 * whichever of them grows its fragmentation least: it sees every node, the broker only each
 * package's summary. Returns how many were named. */
size_t match_alts(const cpn_request_t *req, const match_cand_t *cands, size_t n,
                  const match_cand_t *c, char *out, size_t cap);

/* The peer refused with no-units the slice CLAIM for cands[k - 1]: it had room neither there
 * nor on any alt that CLAIM named (match_alts), so those leave the candidates still to try,
 * cands[k..n). Returns the new n. */
size_t match_drop_alts(const cpn_request_t *req, match_cand_t *cands, size_t n, size_t k);

/* Find up to `max` candidates for `req`, best first, into out[0..*n).
 * Not split: each candidate has free >= req->units and is a full alternative (try the next one
 * if the peer refuses). Split: candidates have free >= 1; the caller takes them in order until
 * req->units are covered; CPN_OK only if the `max` returned cover req->units (pass max >= units
 * plus the retries wanted).
 * Errors: CPN_E_NO_MATCH (*n = 0, *why filled if why != NULL: e.g. "accelerator.model excluded
 * 12 of 14 offers"), CPN_E_INVAL (max == 0 or a NULL argument). */
int match_find(const book_t *book, const cpn_request_t *req, const match_policy_t *pol,
               uint64_t now_ms, match_cand_t *out, size_t max, size_t *n,
               match_fail_t *why) CPN_WUR;

/* "accelerator.model excluded 12 of 14 offers" into buf (truncated safely). */
void match_fail_format(const match_fail_t *why, char *buf, size_t cap);

#endif
