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

/* Verify `frame` and its embedded frames; print the whole content as JSON to `out` (may be
 * NULL). On failure *why names what failed. Returns CPN_OK or the first error. */
int ctl_verify_chain(const uint8_t *frame, size_t len, FILE *out, const char **why) CPN_WUR;

/* The brokers a verified lease passed through, origin first, home broker last, as short key
 * ids ("A1b2C3d4E5 -> F6g7H8i9J0 -> ..."), into buf; "" for a lease of one broker. Call after
 * ctl_verify_chain succeeded. CPN_E_TOO_BIG if buf is too small. */
int ctl_verify_route(const uint8_t *frame, size_t len, char *buf, size_t cap) CPN_WUR;

#endif
