/* sigcache.h - remembers frames whose signature already verified, so the same bytes are
 * never verified twice (a LEASE returning to a broker embeds the CLAIM it signed and the
 * REQUEST it verified). Keyed by BLAKE2b-128 of the signed bytes and signature; a fixed
 * number of slots (direct-mapped), so memory is bounded and an eviction only costs a
 * re-verification.
 */
#ifndef CPN_SIGCACHE_H
#define CPN_SIGCACHE_H

#include <stddef.h>

#include "envelope.h"

typedef struct cpn_sigcache cpn_sigcache_t;

cpn_sigcache_t *cpn_sigcache_new(size_t slots);
void cpn_sigcache_destroy(cpn_sigcache_t **self_p);

/* cpn_env_verify with the cache in front: CPN_OK or CPN_E_SIG. self may be NULL. */
int cpn_sigcache_verify(cpn_sigcache_t *self, const cpn_env_t *env) CPN_WUR;
/* Record a frame this process signed itself. */
void cpn_sigcache_add(cpn_sigcache_t *self, const cpn_env_t *env);
size_t cpn_sigcache_hits(const cpn_sigcache_t *self);

#endif
