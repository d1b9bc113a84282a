/* ctl_verify.h - offline verification of a signed message and every message it embeds.
 *
 * A lease file holds a GRANT (broker) that embeds a LEASE (peer) that embeds a CLAIM
 * (broker) that embeds a REQUEST (tenant): each frame is verified with the key it names,
 * and the chain is checked for consistency (the peer that granted is the peer the CLAIM
 * named; the CLAIM's request is the tenant's). Nothing but the bytes is needed.
 */
#ifndef CPN_CTL_VERIFY_H
#define CPN_CTL_VERIFY_H

#include <stdint.h>
#include <stdio.h>

#include "envelope.h"

/* Verify `frame` and its embedded frames; print the whole content as JSON to `out` (may be
 * NULL). On failure *why names what failed. Returns CPN_OK or the first error. */
int ctl_verify_chain(const uint8_t *frame, size_t len, FILE *out, const char **why) CPN_WUR;

#endif
