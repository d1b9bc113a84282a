/* grant.c - pure checks on claims, renewals and releases. */
#include "grant.h"

#include "chain.h"

#include <string.h>

#include <sodium.h>

/* The rule lives with the chain opener, which checks it on every LEASE it opens. */
void grant_lease_id(const uint8_t peer[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                    const char *request_id, char out[CPN_NAME_MAX])
{
    cpn_chain_lease_id(peer, tenant, request_id, out);
}

int grant_check_claim(const peer_config_t *cfg, const peer_inventory_t *inv,
                      const uint8_t self_pk[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                      const cpn_claim_t *claim, const cpn_request_t *req, int *pkg,
                      const char **why)
{
    *why = "";
    if (!peer_config_tenant_ok(cfg, tenant)) {
        *why = "tenant not accepted by this peer";
        return CPN_E_TENANT_REFUSED;
    }
    if (sodium_memcmp(claim->peer, self_pk, CPN_PK_LEN) != 0) {
        *why = "claim names another peer";
        return CPN_E_INVAL;
    }
    if (req->id[0] == '\0') {
        *why = "request has no id";
        return CPN_E_INVAL;
    }
    if (claim->units == 0 || claim->units > req->units) {
        *why = "claimed units not between 1 and the units requested";
        return CPN_E_INVAL;
    }
    if (claim->duration_s == 0 || claim->duration_s > cfg->max_lease_s) {
        *why = "duration zero or beyond the peer's max_lease";
        return CPN_E_INVAL;
    }
    if (req->duration_s && claim->duration_s > req->duration_s) {
        *why = "duration longer than requested";
        return CPN_E_INVAL;
    }
    int i = peer_inventory_find(inv, claim->package);
    if (i < 0) {
        *why = "no such package at this peer";
        return CPN_E_NO_PACKAGE;
    }
    if (claim->price < peer_inventory_floor(inv, (size_t)i)) {
        *why = "price below the package's floor";
        return CPN_E_PRICE_FLOOR;
    }
    if (req->max_price && claim->price > req->max_price) {
        *why = "price above the tenant's ceiling";
        return CPN_E_INVAL;
    }
    *pkg = i;
    return CPN_OK;
}

/* Shared by renew and release: the lease is the tenant's and still running. */
static int s_check_live(const peer_lease_row_t *row, const uint8_t tenant[CPN_PK_LEN],
                        uint64_t now_ms, const char **why)
{
    if (sodium_memcmp(row->tenant, tenant, CPN_PK_LEN) != 0) {
        *why = "no such lease for this tenant";
        return CPN_E_NO_LEASE;
    }
    if (row->state != PEER_LEASE_ACTIVE || row->end_ms <= now_ms) {
        *why = "lease already ended";
        return CPN_E_EXPIRED;
    }
    return CPN_OK;
}

int grant_check_renew(const peer_config_t *cfg, const peer_lease_row_t *row,
                      const uint8_t tenant[CPN_PK_LEN], uint64_t extend_s, uint64_t now_ms,
                      uint64_t *new_end_ms, const char **why)
{
    int r;
    *why = "";
    if ((r = s_check_live(row, tenant, now_ms, why)) != CPN_OK)
        return r;
    if (extend_s == 0) {
        *why = "extension of zero seconds";
        return CPN_E_INVAL;
    }
    /* Bound before multiplying, so the sum cannot wrap. */
    if (extend_s > cfg->max_lease_s) {
        *why = "lease would exceed the peer's max_lease";
        return CPN_E_RENEW_REFUSED;
    }
    uint64_t end = row->end_ms + extend_s * 1000u;
    if (end < row->start_ms || end - row->start_ms > cfg->max_lease_s * 1000u) {
        *why = "lease would exceed the peer's max_lease";
        return CPN_E_RENEW_REFUSED;
    }
    *new_end_ms = end;
    return CPN_OK;
}

int grant_check_release(const peer_lease_row_t *row, const uint8_t tenant[CPN_PK_LEN],
                        uint64_t now_ms, const char **why)
{
    *why = "";
    return s_check_live(row, tenant, now_ms, why);
}
