/* ratelimit.h - a token bucket per sender key, in a table of bounded size.
 *
 * Each sender (an Ed25519 public key) has a bucket of at most `burst` tokens that refills at
 * `rate` tokens per second; a message costs one token. A sender seen for the first time
 * starts with a full bucket.
 *
 * Bound: the table holds at most `capacity` senders (policy limits.rate.senders). When it is
 * full, the least recently seen sender is evicted if it is idle, i.e. not seen for at least
 * the time its bucket takes to refill from empty (burst / rate seconds): its bucket is full
 * again, exactly what a new bucket would be, so forgetting it changes nothing. If even that
 * sender is not idle, the new sender is refused with CPN_E_BUSY and nothing changes.
 *
 * Keys may be chosen by an attacker (limiting happens before the signature is checked, to
 * keep verification cost bounded), so the table hashes them with a secret random key.
 *
 * Pure: no clock, no I/O; the caller passes the time in. Not thread-safe.
 */
#ifndef CPN_RATELIMIT_H
#define CPN_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"

#define RATELIMIT_DEFAULT_RATE 200       /* tokens per second */
#define RATELIMIT_DEFAULT_BURST 400      /* tokens */
#define RATELIMIT_DEFAULT_CAPACITY 65536 /* senders */
#define RATELIMIT_MAX_CAPACITY (1u << 24)

typedef struct ratelimit ratelimit_t;

/* A table for `capacity` senders (1 .. RATELIMIT_MAX_CAPACITY). rate 0 disables limiting
 * (every take succeeds and nothing is stored). burst >= 1 unless rate is 0.
 * Returns NULL on bad arguments or out of memory. The caller owns the result. */
ratelimit_t *ratelimit_new(uint32_t rate, uint32_t burst, size_t capacity);
void ratelimit_destroy(ratelimit_t **self_p);

/* Take one token for `key` at time now_ms (any monotonic milliseconds; time going backwards
 * is treated as no time passing). CPN_OK if the message may pass, CPN_E_RATE if the sender's
 * bucket is empty, CPN_E_BUSY if the sender is new and the table is full of active senders. */
int ratelimit_take(ratelimit_t *self, const uint8_t key[CPN_PK_LEN], uint64_t now_ms) CPN_WUR;

/* Change rate and burst (policy reload). Buckets keep their tokens, capped at the new burst.
 * CPN_E_INVAL for rate > 0 with burst 0. */
int ratelimit_set(ratelimit_t *self, uint32_t rate, uint32_t burst) CPN_WUR;

/* Senders in the table now. */
size_t ratelimit_size(const ratelimit_t *self);
/* Senders refused so far because their bucket was empty / because the table was full. */
uint64_t ratelimit_refused(const ratelimit_t *self);
uint64_t ratelimit_refused_full(const ratelimit_t *self);

#endif
