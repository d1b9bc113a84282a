/* claim_index.h - a bounded hash table from a 64-bit key to a slot number: how the claim
 * module finds the request a LEASE or NACK answers with one lookup (by the seq of the CLAIM
 * it names), and a request by (tenant, request id) (by a hash of the pair; the caller checks
 * the slot really holds that pair, since two pairs may share a hash).
 *
 * Open addressing with linear probing, at most half full: the capacity is fixed at creation
 * (a power of two >= 2 x the most keys the caller will ever hold at once), so a lookup is a
 * few probes and an insert never fails for a caller that keeps its bound. Deletion shifts
 * the following entries back (no tombstones), so a table that sees millions of keys come and
 * go never slows down. Several entries may share a key (a hash of a pair): a lookup walks
 * them with a cursor. Pure: no I/O, no clock.
 */
#ifndef CPN_CLAIM_INDEX_H
#define CPN_CLAIM_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct claim_index claim_index_t;

/* A table for up to max_keys keys at once; NULL if out of memory (or max_keys is 0 or too
 * large). The caller owns it. */
claim_index_t *claim_index_new(size_t max_keys);
/* Accepts NULL; clears *self_p. */
void claim_index_destroy(claim_index_t **self_p);

/* Add (key, slot). CPN_E_BUSY if the table holds max_keys keys already. */
int claim_index_put(claim_index_t *self, uint64_t key, uint32_t slot) CPN_WUR;
/* The slots stored under key, one per call: *cursor starts at 0; returns 1 and fills *slot
 * while there is one, 0 when there are no more. */
int claim_index_next(const claim_index_t *self, uint64_t key, size_t *cursor, uint32_t *slot);
/* Remove the entry (key, slot); 0 if there was none. */
int claim_index_del(claim_index_t *self, uint64_t key, uint32_t slot);
/* Keys held now. */
size_t claim_index_len(const claim_index_t *self);

#endif
