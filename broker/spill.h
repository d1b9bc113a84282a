/* spill.h - ordered spill-over (federation.spill): the order in which a request's candidates
 * are tried when the policy sets one.
 *
 * Offers of peers connected to us come first (the claim module matches them in a pass of
 * their own, so they are found even when remote offers rank better), in rank order. Then the
 * offers that came through members, member by member (all of one member's candidates, in rank
 * order, before the next member's), the members ordered by the policy:
 *   cost     the member whose best candidate ranks best first;
 *   latency  the member with the fewest hops to its nearest candidate's peer first (the AD's
 *            hop count: brokers between us and the peer's home), ties by cost;
 *   list     the members the list names, in its order; the others are not spilled to.
 * The claim module tries one candidate at a time (a CLAIM, or a FORWARD through one member)
 * and moves on only when it is refused, so a request is never at two brokers at once.
 *
 * Pure: the book and the policy are read, nothing else.
 */
#ifndef CPN_SPILL_H
#define CPN_SPILL_H

#include <stddef.h>

#include "book.h"
#include "match.h"
#include "policy.h"

#define SPILL_CANDS_MAX 64 /* candidates spill_order sorts; more are left as they are */

/* Reorder cands[0..n) (local ones first, in rank order, then the rest in rank order, as the
 * claim module merges them) by pol->federation.spill and return how many are kept: a `list`
 * drops the candidates of members it does not name (*dropped counts them; may be NULL). A
 * candidate whose peer the book no longer knows (a batch plan's) counts as local, as with
 * local_first. POLICY_SPILL_RANK, or n > SPILL_CANDS_MAX: nothing changes. */
size_t spill_order(const book_t *book, const policy_t *pol, match_cand_t *cands, size_t n,
                   size_t *dropped);

#endif
