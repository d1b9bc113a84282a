/* grant.h - the peer's decisions on CLAIM, RENEW and RELEASE: pure functions of the
 * configuration, the inventory, the lease row and the time given. No I/O, no clock.
 *
 * The daemon verifies the signatures and the replay guard first, looks the lease up in the
 * store, asks here, and only then writes. Every refusal is a cpn_err_t code that travels in
 * the NACK, with *why a static readable reason.
 */
#ifndef PEER_GRANT_H
#define PEER_GRANT_H

#include <stdint.h>

#include "chain.h"
#include "inventory.h"
#include "msg.h"
#include "peer_config.h"
#include "lease_row.h"

/* The lease id for (peer, tenant, request id): "L" + the first 16 characters of
 * base64url(BLAKE2b-256(peer pk || tenant pk || request id)). Deterministic, so a retried
 * claim maps to the same lease wherever it comes from. */
void grant_lease_id(const uint8_t peer[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                    const char *request_id, char out[CPN_NAME_MAX]);

/* Terms of a new claim, all but the free units (the caller reserves them in the inventory,
 * which refuses with CPN_E_NO_UNITS):
 *   tenant accepted by config                          else CPN_E_TENANT_REFUSED
 *   claim for this peer, request id set                else CPN_E_INVAL
 *   1 <= claim units <= requested units                else CPN_E_INVAL
 *   claim units = requested units unless split         else CPN_E_CHAIN
 *   0 < duration <= max_lease                          else CPN_E_INVAL
 *   duration = requested duration                      else CPN_E_CHAIN
 *   package configured                                 else CPN_E_NO_PACKAGE
 *   price >= package floor                             else CPN_E_PRICE_FLOOR
 *   price <= the tenant's ceiling (if it set one)      else CPN_E_INVAL
 *   package meets every hard constraint of the REQUEST
 *   (cpn_package_fits) but the accelerator model,
 *   which a broker's equivalences may widen to other
 *   models (the package must have accelerators)        else CPN_E_NO_MATCH
 * On CPN_OK *pkg is the package's index in the inventory. */
int grant_check_claim(const peer_config_t *cfg, const peer_inventory_t *inv,
                      const uint8_t self_pk[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                      const cpn_claim_t *claim, const cpn_request_t *req, int *pkg,
                      const char **why) CPN_WUR;

/* Alternatives a slice CLAIM names (`alts`, chain.h) beyond this: ignored. A broker names at
 * most its other candidates at the same peer and price. */
#define GRANT_ALTS_MAX 16

/* The packages a slice CLAIM may be placed on, written to out: out[0] = pkg (the CLAIM's
 * package, already checked by grant_check_claim), then each of its `alts` that is a shared
 * package passing grant_check_claim with the same terms (the others are passed over, not
 * refused: the CLAIM's own package stands). Only pkg for a request that asks for no slice or
 * a package that is not shared. Returns how many (1 .. GRANT_ALTS_MAX + 1). */
size_t grant_claim_packages(const peer_config_t *cfg, const peer_inventory_t *inv,
                            const uint8_t self_pk[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                            const cpn_claim_t *claim, const cpn_request_t *req, int pkg,
                            size_t out[GRANT_ALTS_MAX + 1]);

/* A CLAIM that replaces a lease another peer revoked (CLAIM `replaces`: that peer's NOTICE,
 * whose signature and lease chain the caller opened: `notice_from` its signer, `old` the chain
 * of the LEASE it carries, signed by notice_from). The replacement is legitimate only as the
 * rest of that lease:
 *   not on the peer that lost the capacity           else CPN_E_INVAL
 *   the same REQUEST, byte for byte                  else CPN_E_CHAIN
 *   that REQUEST asked on_failure: rematch           else CPN_E_CHAIN
 *   1 <= units <= the lease's units - those it keeps else CPN_E_CHAIN
 *   the old lease's end still ahead of now_ms        else CPN_E_EXPIRED
 *   duration_s <= the rest of the old lease from the
 *   notice's effective time (rounded up to a second)
 *   and <= the REQUEST's duration                    else CPN_E_CHAIN
 * On CPN_OK grant_check_claim follows with the request's units and duration taken as the
 * claim's (a replacement is shorter and may be smaller than the request). */
int grant_check_replacement(const uint8_t self_pk[CPN_PK_LEN],
                            const uint8_t notice_from[CPN_PK_LEN], const cpn_notice_t *notice,
                            const cpn_chain_t *old, const cpn_claim_t *claim, uint64_t now_ms,
                            const char **why) CPN_WUR;

/* A RENEW of `row` by `tenant` at now_ms:
 *   lease belongs to tenant                       else CPN_E_NO_LEASE
 *   lease active and end_ms > now_ms              else CPN_E_EXPIRED
 *   extend_s > 0                                  else CPN_E_INVAL
 *   new end - start <= max_lease                  else CPN_E_RENEW_REFUSED
 * On CPN_OK *new_end_ms = end_ms + extend_s * 1000. */
int grant_check_renew(const peer_config_t *cfg, const peer_lease_row_t *row,
                      const uint8_t tenant[CPN_PK_LEN], uint64_t extend_s, uint64_t now_ms,
                      uint64_t *new_end_ms, const char **why) CPN_WUR;

/* A RELEASE of `row` by `tenant` at now_ms: the first two checks of a RENEW. */
int grant_check_release(const peer_lease_row_t *row, const uint8_t tenant[CPN_PK_LEN],
                        uint64_t now_ms, const char **why) CPN_WUR;

#endif
