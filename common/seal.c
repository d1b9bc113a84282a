/* seal.c - sealed access details: libsodium's crypto_box_seal to the X25519 form of the
 * tenant's Ed25519 key, and the check of what may be inside (one JSON object). */
#include "seal.h"

#include <sodium.h>
#include <string.h>

#include "json_check.h"

_Static_assert(CPN_SEAL_OVERHEAD == crypto_box_SEALBYTES, "msg.h's box overhead is libsodium's");
_Static_assert(CPN_SEAL_EPH_SEED_LEN == crypto_box_SEEDBYTES, "ephemeral seed size");

int cpn_access_check(const char *text, size_t len)
{
    if (len > CPN_ACCESS_MAX)
        return CPN_E_TOO_BIG;
    return cpn_json_object_check(text, len, CPN_ACCESS_DEPTH);
}

/* The checks both ways of sealing share; the tenant's key converted into xpk. */
static int s_seal_prepare(const uint8_t tenant_pk[CPN_PK_LEN], const char *text, size_t len,
                          size_t cap, uint8_t xpk[crypto_box_PUBLICKEYBYTES])
{
    int r;
    if (!tenant_pk || !text)
        return CPN_E_INVAL;
    if ((r = cpn_access_check(text, len)) != CPN_OK)
        return r;
    if (cap < len + crypto_box_SEALBYTES)
        return CPN_E_INVAL;
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, tenant_pk) != 0)
        return CPN_E_KEY;
    return CPN_OK;
}

int cpn_seal(const uint8_t tenant_pk[CPN_PK_LEN], const char *text, size_t len, uint8_t *box,
             size_t cap, size_t *box_len)
{
    uint8_t xpk[crypto_box_PUBLICKEYBYTES];
    int r = s_seal_prepare(tenant_pk, text, len, cap, xpk);
    if (r != CPN_OK || !box || !box_len)
        return r != CPN_OK ? r : CPN_E_INVAL;
    if (crypto_box_seal(box, (const uint8_t *)text, len, xpk) != 0)
        return CPN_E_KEY;
    *box_len = len + crypto_box_SEALBYTES;
    return CPN_OK;
}

/* What crypto_box_seal does, with the ephemeral key pair from a seed: epk || box_easy(text,
 * nonce = BLAKE2b-192(epk || xpk), xpk, esk). */
int cpn_seal_with(const uint8_t tenant_pk[CPN_PK_LEN],
                  const uint8_t eph_seed[CPN_SEAL_EPH_SEED_LEN], const char *text, size_t len,
                  uint8_t *box, size_t cap, size_t *box_len)
{
    uint8_t xpk[crypto_box_PUBLICKEYBYTES], epk[crypto_box_PUBLICKEYBYTES];
    uint8_t esk[crypto_box_SECRETKEYBYTES], nonce[crypto_box_NONCEBYTES];
    crypto_generichash_state st;
    int r = s_seal_prepare(tenant_pk, text, len, cap, xpk);
    if (r != CPN_OK || !eph_seed || !box || !box_len)
        return r != CPN_OK ? r : CPN_E_INVAL;
    crypto_box_seed_keypair(epk, esk, eph_seed);
    crypto_generichash_init(&st, NULL, 0, sizeof nonce);
    crypto_generichash_update(&st, epk, sizeof epk);
    crypto_generichash_update(&st, xpk, sizeof xpk);
    crypto_generichash_final(&st, nonce, sizeof nonce);
    memcpy(box, epk, sizeof epk);
    r = crypto_box_easy(box + sizeof epk, (const uint8_t *)text, len, nonce, xpk, esk) == 0
            ? CPN_OK
            : CPN_E_KEY;
    sodium_memzero(esk, sizeof esk);
    if (r == CPN_OK)
        *box_len = len + crypto_box_SEALBYTES;
    return r;
}

int cpn_seal_open(const cpn_identity_t *tenant, const uint8_t *box, size_t box_len, char *text,
                  size_t cap, size_t *len)
{
    uint8_t xpk[crypto_box_PUBLICKEYBYTES], xsk[crypto_box_SECRETKEYBYTES];
    int r;
    if (!tenant || !box || !text || !len)
        return CPN_E_INVAL;
    if (box_len > CPN_ACCESS_BOX_MAX)
        return CPN_E_TOO_BIG;
    if (box_len < crypto_box_SEALBYTES)
        return CPN_E_SEALED;
    size_t n = box_len - crypto_box_SEALBYTES;
    if (cap < n + 1)
        return CPN_E_INVAL;
    if ((r = cpn_identity_curve(tenant, xpk, xsk)) != CPN_OK)
        return r;
    r = crypto_box_seal_open((uint8_t *)text, box, box_len, xpk, xsk) == 0 ? CPN_OK : CPN_E_SEALED;
    sodium_memzero(xsk, sizeof xsk);
    if (r == CPN_OK && (r = cpn_access_check(text, n)) != CPN_OK)
        sodium_memzero(text, n);
    if (r != CPN_OK)
        return r;
    text[n] = '\0';
    *len = n;
    return CPN_OK;
}

int cpn_lease_seal_access(cpn_lease_t *lease, const uint8_t tenant_pk[CPN_PK_LEN], const char *json,
                          size_t len, uint8_t box[CPN_ACCESS_BOX_MAX])
{
    size_t n = 0;
    int r;
    if (!lease || !box)
        return CPN_E_INVAL;
    lease->access.ptr = NULL;
    lease->access.len = 0;
    if (len == 0)
        return CPN_OK;
    if ((r = cpn_seal(tenant_pk, json, len, box, CPN_ACCESS_BOX_MAX, &n)) != CPN_OK)
        return r;
    lease->access.ptr = box;
    lease->access.len = n;
    return CPN_OK;
}
