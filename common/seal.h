/* seal.h - access details only the tenant can read: a libsodium sealed box to the X25519 key
 * derived from the tenant's Ed25519 identity (docs/PROTOCOL.md, "Sealed access details").
 *
 * A peer seals what its driver handed out (a login, a reservation, an endpoint: one JSON
 * object, UTF-8) to the key that signed the REQUEST and puts the box in the LEASE's `access`
 * field. Brokers relay the LEASE verbatim and cannot open it; `cpnctl access` opens it with the
 * tenant's key. The sender is anonymous inside the box: who wrote it is proven by the LEASE's
 * signature around it, not by the box.
 *
 * Box layout (crypto_box_seal): ephemeral X25519 public key (32) || XSalsa20-Poly1305 of the
 * plaintext under nonce = BLAKE2b-192(ephemeral pk || tenant X25519 pk) (16-byte MAC first).
 */
#ifndef CPN_SEAL_H
#define CPN_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "msg.h"

#define CPN_SEAL_EPH_SEED_LEN 32 /* seed of the ephemeral key pair (cpn_seal_with) */

/* Is `text` (len bytes, not NUL-terminated) acceptable access details: at most
 * CPN_ACCESS_MAX bytes of UTF-8 forming exactly one JSON object (RFC 8259, nesting at most
 * CPN_ACCESS_DEPTH)? CPN_OK, CPN_E_TOO_BIG, or CPN_E_SCHEMA. */
int cpn_access_check(const char *text, size_t len) CPN_WUR;

/* Seal `text` (checked by cpn_access_check) to the tenant's Ed25519 public key into box
 * (capacity cap, at least len + CPN_SEAL_OVERHEAD); *box_len gets the size. Errors:
 * CPN_E_TOO_BIG (text over CPN_ACCESS_MAX), CPN_E_SCHEMA (not one JSON object), CPN_E_KEY (not
 * an Ed25519 point that converts to X25519), CPN_E_INVAL (box too small). A fresh ephemeral
 * key each call: two seals of the same text differ. */
int cpn_seal(const uint8_t tenant_pk[CPN_PK_LEN], const char *text, size_t len, uint8_t *box,
             size_t cap, size_t *box_len) CPN_WUR;

/* cpn_seal with the ephemeral key pair from `eph_seed` (crypto_box_seed_keypair) instead of a
 * random one: the same inputs give the same box. For test vectors only; a seed used twice
 * lets anyone who sees both boxes learn how the texts differ. */
int cpn_seal_with(const uint8_t tenant_pk[CPN_PK_LEN],
                  const uint8_t eph_seed[CPN_SEAL_EPH_SEED_LEN], const char *text, size_t len,
                  uint8_t *box, size_t cap, size_t *box_len) CPN_WUR;

/* Open `box` with the tenant's identity into text (capacity cap, at least CPN_ACCESS_MAX + 1
 * to be safe; NUL-terminated), *len the text's length. The opened text is checked too
 * (cpn_access_check). Errors: CPN_E_SEALED (sealed to another key, or altered),
 * CPN_E_TOO_BIG (box over CPN_ACCESS_BOX_MAX), CPN_E_SCHEMA (opens, but is not access details),
 * CPN_E_INVAL (cap too small). The caller wipes text when done (sodium_memzero): it may hold
 * a credential. */
int cpn_seal_open(const cpn_identity_t *tenant, const uint8_t *box, size_t box_len, char *text,
                  size_t cap, size_t *len) CPN_WUR;

/* For a peer's grant: seal the driver's access details `json` to the tenant whose key signed
 * the REQUEST (`tenant_pk`), writing the box into `box` (the caller's, CPN_ACCESS_BOX_MAX
 * bytes, which must outlive the encoding of *lease) and pointing lease->access at it. With
 * len 0 (a package without a driver) lease->access is cleared and the LEASE encodes exactly
 * as without the field. Errors as cpn_seal. */
int cpn_lease_seal_access(cpn_lease_t *lease, const uint8_t tenant_pk[CPN_PK_LEN], const char *json,
                          size_t len, uint8_t box[CPN_ACCESS_BOX_MAX]) CPN_WUR;

#endif
