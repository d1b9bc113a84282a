/* identity.h - Ed25519 identities: key files, signing, printable keys and key ids.
 *
 * File formats (docs/PROTOCOL.md): NAME.key holds the 32-byte seed, NAME.pub the 32-byte
 * public key, each as unpadded URL-safe base64 (43 characters) and a newline. The secret
 * lives in sodium_malloc'd memory and is wiped on destroy.
 */
#ifndef CPN_IDENTITY_H
#define CPN_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CPN_PK_LEN 32
#define CPN_SIG_LEN 64
#define CPN_SEED_LEN 32
#define CPN_PK_TEXT_LEN 44 /* 43 base64url characters + NUL */
#define CPN_KID_LEN 11     /* 10 characters + NUL */

typedef struct cpn_identity cpn_identity_t;

/* Initialise libsodium once; every program calls this before anything else here. */
int cpn_crypto_init(void) CPN_WUR;

int cpn_identity_generate(cpn_identity_t **out) CPN_WUR;
int cpn_identity_from_seed(const uint8_t seed[CPN_SEED_LEN], cpn_identity_t **out) CPN_WUR;
/* Load NAME.key (the path as given). CPN_E_KEY_PERM if group or others may read it. */
int cpn_identity_load(const char *key_path, cpn_identity_t **out) CPN_WUR;
/* Write BASE.key (mode 0600, refuses to overwrite) and BASE.pub. */
int cpn_identity_save(const cpn_identity_t *self, const char *base) CPN_WUR;
void cpn_identity_destroy(cpn_identity_t **self_p);

const uint8_t *cpn_identity_pk(const cpn_identity_t *self);
/* Ed25519 detached signature over msg. */
void cpn_identity_sign(const cpn_identity_t *self, const uint8_t *msg, size_t len,
                       uint8_t sig[CPN_SIG_LEN]);
/* The X25519 key pair for CURVE, derived from the Ed25519 identity. */
int cpn_identity_curve(const cpn_identity_t *self, uint8_t curve_pk[32],
                       uint8_t curve_sk[32]) CPN_WUR;

/* Public keys as text (base64url, unpadded) and back. */
void cpn_pk_to_text(const uint8_t pk[CPN_PK_LEN], char out[CPN_PK_TEXT_LEN]);
int cpn_pk_from_text(const char *text, uint8_t pk[CPN_PK_LEN]) CPN_WUR;
/* Load a NAME.pub file, or accept the key text itself. */
int cpn_pk_load(const char *path_or_text, uint8_t pk[CPN_PK_LEN]) CPN_WUR;
/* Short printable key id for logs and tables: the first 10 characters of the text form. */
void cpn_key_id(const uint8_t pk[CPN_PK_LEN], char out[CPN_KID_LEN]);

#endif
