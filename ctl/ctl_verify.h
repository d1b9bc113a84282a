/* ctl_verify.h - offline verification of a signed message and every message it embeds.
 *
 * A lease file holds a GRANT (broker) that embeds a LEASE (peer) that embeds a CLAIM
 * (broker) that embeds a REQUEST (tenant): each frame is verified with the key it names,
 * and the chain is checked for consistency (the peer that granted is the peer the CLAIM
 * named; the CLAIM's request is the tenant's). Nothing but the bytes is needed.
 *
 * A lease brokered across the federation has a route: the home broker's CLAIM carries the
 * FORWARD chain (each broker's FORWARD wrapping the previous one) around the originating
 * broker's CLAIM. Verification checks that every FORWARD names the same peer with hops counting
 * down to 1, that the innermost CLAIM is signed by the first forwarder and asks for exactly
 * what the home broker's CLAIM asks for, and that the GRANT is that first broker's.
 */
#ifndef CPN_CTL_VERIFY_H
#define CPN_CTL_VERIFY_H

#include <stdint.h>
#include <stdio.h>

#include "envelope.h"
#include "msg.h"

/* Verify `frame` and its embedded frames; print the whole content as JSON to `out` (may be
 * NULL; valid JSON whatever the bytes: a frame that cannot be shown is {"error": ...}). A
 * GRANT, LEASE, CLAIM or REQUEST is then opened by cpn_chain_open (common/chain.h), which
 * checks every type, signer and link. `pinned` (NULL: none) is the broker key the user
 * trusts: the GRANT must be signed by it (without a GRANT: the CLAIM, or the route's first
 * CLAIM). why gets what failed ("valid" on success). Returns CPN_OK or the first error. */
int ctl_verify_chain_pinned(const uint8_t *frame, size_t len, const uint8_t *pinned, FILE *out,
                            char why[CPN_REASON_MAX]) CPN_WUR;

/* ctl_verify_chain_pinned with no key pinned; *why points to static storage, valid until the
 * next call. */
int ctl_verify_chain(const uint8_t *frame, size_t len, FILE *out, const char **why) CPN_WUR;

/* The brokers a verified lease passed through, origin first, home broker last, as short key
 * ids ("A1b2C3d4E5 -> F6g7H8i9J0 -> ..."), into buf; "" for a lease of one broker. Call after
 * ctl_verify_chain succeeded. CPN_E_TOO_BIG if buf is too small. */
int ctl_verify_route(const uint8_t *frame, size_t len, char *buf, size_t cap) CPN_WUR;

#endif
