/* fed_check.h - the checks a broker applies to what a federation member sends it (a FORWARD's
 * chain on the way out, the answer it carries back, a SYNC digest) before anything acts on it.
 *
 * Pure: no sockets, no clock, no broker state; everything they need is an argument, so they
 * are unit-testable and fuzzable on their own (fuzz/fuzz_federation.c). federation.c calls
 * them and acts on the result.
 */
#ifndef CPN_FED_CHECK_H
#define CPN_FED_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "msg.h"
#include "sigcache.h"

/* Walk a FORWARD chain (outermost first) to what it carries: every signature verifies (through
 * `sc`, which may be NULL), every FORWARD names `peer` in `to` and has no ref_seq, at most
 * max_hops FORWARDs nest, and the innermost frame is a CLAIM for `peer` signed by whoever
 * signed the innermost FORWARD (the originating broker), or a tenant's RENEW or RELEASE (naming
 * `peer`, or, when `peer` is the broker that claimed the lease for a row of its summary, that
 * broker's peer). *inner points into `route`; *hops (may be NULL) gets the number of FORWARDs.
 * CPN_E_SCHEMA, CPN_E_SIG, CPN_E_DEPTH or a parse error. */
int fed_route_open(const cpn_limits_t *lim, cpn_sigcache_t *sc, uint32_t max_hops,
                   const uint8_t *route, size_t len, const uint8_t peer[CPN_PK_LEN],
                   cpn_env_t *inner, uint32_t *hops) CPN_WUR;

/* Open an answer that came back to the broker that originated a forward: `msg` (the `msg` of
 * the FORWARD that reached us) is FORWARDs, each with a ref_seq and wrapping the next, at most
 * max_hops + 1 deep, around the answer: a LEASE or NACK, every signature verified. *answer
 * points into `msg`. CPN_E_SCHEMA, CPN_E_SIG, CPN_E_DEPTH or a parse error. */
int fed_answer_open(const cpn_limits_t *lim, cpn_sigcache_t *sc, uint32_t max_hops,
                    const uint8_t *msg, size_t len, cpn_env_t *answer) CPN_WUR;

/* A SYNC digest is well formed: whole entries, lo <= hi, keys strictly increasing and inside
 * [lo, hi]. CPN_OK or CPN_E_SCHEMA. */
int fed_sync_check(const cpn_sync_t *s) CPN_WUR;

/* Is `key` in a digest that passed fed_sync_check, and with which seq (*seq)? */
bool fed_sync_find(const cpn_sync_t *s, const uint8_t key[CPN_PK_LEN], uint64_t *seq);

#endif
