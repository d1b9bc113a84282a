/* grant.c - pure checks on claims, renewals and releases. */
#include "grant.h"

#include "chain.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

/* The rule lives with the chain opener, which checks it on every LEASE it opens. */
void grant_lease_id(const uint8_t peer[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                    const char *request_id, char out[CPN_NAME_MAX])
{
    cpn_chain_lease_id(peer, tenant, request_id, out);
}

/* Why a package does not satisfy a constraint, by cpn_package_fits's answer. */
static const char *const s_unfit[CPN_C__COUNT] = {
    [CPN_C_OK] = "",
    [CPN_C_ACCEL_MODEL] = "package does not satisfy the request's accelerator.model",
    [CPN_C_ACCEL_VENDOR] = "package does not satisfy the request's accelerator.vendor",
    [CPN_C_ACCEL_COUNT] = "package does not satisfy the request's accelerator.count",
    [CPN_C_TFLOPS] = "package does not satisfy the request's tflops",
    [CPN_C_ACCEL_MEM] = "package does not satisfy the request's accelerator.memory",
    [CPN_C_CORES] = "package does not satisfy the request's cores",
    [CPN_C_MEMORY] = "package does not satisfy the request's memory",
    [CPN_C_STORAGE_CLASS] = "package does not satisfy the request's storage.class",
    [CPN_C_STORAGE_SIZE] = "package does not satisfy the request's storage.size",
    [CPN_C_FABRIC] = "package does not satisfy the request's network.fabric",
    [CPN_C_EGRESS] = "package does not satisfy the request's network.egress",
    [CPN_C_REGION] = "package does not satisfy the request's region",
    [CPN_C_PRICE] = "package does not satisfy the request's price",
    [CPN_C_UNITS] = "package does not satisfy the request's units",
};

/* The package claimed meets every hard constraint of the REQUEST, at the claimed price (the
 * ceiling was checked against it) and whatever its free units (the inventory reserves them).
 * The accelerator model is checked only as far as the peer can: a broker's policy may accept
 * other models for it (equivalences the peer does not know), but only accelerators. */
static int s_check_fits(const peer_inventory_t *inv, size_t i, const cpn_claim_t *claim,
                        const cpn_request_t *req, const char **why)
{
    const cpn_package_t *have = peer_inventory_get(inv, i);
    if (!have) {
        *why = "no such package at this peer";
        return CPN_E_NO_PACKAGE;
    }
    cpn_package_t p = *have;
    cpn_request_t q = *req;
    p.price = claim->price;
    p.free = UINT32_MAX;
    q.accel_model[0] = '\0';
    cpn_constraint_t c = req->accel_model[0] && p.accel.count == 0 ? CPN_C_ACCEL_MODEL
                                                                   : cpn_package_fits(&p, &q);
    if (c == CPN_C_OK)
        return CPN_OK;
    *why = (unsigned)c < CPN_C__COUNT ? s_unfit[c] : "package does not satisfy the request";
    return CPN_E_NO_MATCH;
}

int grant_check_claim(const peer_config_t *cfg, const peer_inventory_t *inv,
                      const uint8_t self_pk[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                      const cpn_claim_t *claim, const cpn_request_t *req, int *pkg,
                      const char **why)
{
    int r;
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
    /* Only a split request may be served in parts: otherwise the tenant would hold a lease
     * for fewer units than it asked, and its retries would get that same lease back. */
    if (!req->split && claim->units != req->units) {
        *why = "claimed units not the units of an unsplit request";
        return CPN_E_CHAIN;
    }
    if (claim->duration_s == 0 || claim->duration_s > cfg->max_lease_s) {
        *why = "duration zero or beyond the peer's max_lease";
        return CPN_E_INVAL;
    }
    /* A broker claims for the duration the tenant asked (it has no reason to shorten it). */
    if (claim->duration_s != req->duration_s) {
        *why = "claimed duration not the duration requested";
        return CPN_E_CHAIN;
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
    if ((r = s_check_fits(inv, (size_t)i, claim, req, why)) != CPN_OK)
        return r;
    *pkg = i;
    return CPN_OK;
}

size_t grant_claim_packages(const peer_config_t *cfg, const peer_inventory_t *inv,
                            const uint8_t self_pk[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                            const cpn_claim_t *claim, const cpn_request_t *req, int pkg,
                            size_t out[GRANT_ALTS_MAX + 1])
{
    size_t n = 0;
    out[n++] = (size_t)pkg;
    if (!req->share || !claim->alts[0] || !peer_inventory_shared(inv, (size_t)pkg))
        return n;
    char ids[GRANT_ALTS_MAX][CPN_NAME_MAX];
    size_t k = cpn_claim_alts_split(claim->alts, ids, GRANT_ALTS_MAX);
    cpn_claim_t alt = *claim;
    for (size_t a = 0; a < k; a++) {
        const char *why;
        int j;
        snprintf(alt.package, sizeof alt.package, "%s", ids[a]);
        if (grant_check_claim(cfg, inv, self_pk, tenant, &alt, req, &j, &why) != CPN_OK ||
            !peer_inventory_shared(inv, (size_t)j))
            continue;
        bool seen = false;
        for (size_t m = 0; m < n; m++)
            seen = seen || out[m] == (size_t)j;
        if (!seen)
            out[n++] = (size_t)j;
    }
    return n;
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

int grant_check_replacement(const uint8_t self_pk[CPN_PK_LEN],
                            const uint8_t notice_from[CPN_PK_LEN], const cpn_notice_t *notice,
                            const cpn_chain_t *old, const cpn_claim_t *claim, uint64_t now_ms,
                            const char **why)
{
    const cpn_lease_t *l = &old->lease;
    uint64_t rest_ms = l->end_ms > notice->effective_ms ? l->end_ms - notice->effective_ms : 0;
    if (memcmp(notice_from, self_pk, CPN_PK_LEN) == 0) {
        *why = "a replacement on the peer that lost the capacity";
        return CPN_E_INVAL;
    }
    if (claim->request.len != old->claim.request.len ||
        memcmp(claim->request.ptr, old->claim.request.ptr, claim->request.len) != 0) {
        *why = "the replaced lease was made for another request";
        return CPN_E_CHAIN;
    }
    if (strcmp(old->req.on_failure, CPN_ON_FAILURE_REMATCH) != 0) {
        *why = "the request did not ask on_failure: rematch";
        return CPN_E_CHAIN;
    }
    if (claim->units < 1 || notice->units >= l->units || claim->units > l->units - notice->units) {
        *why = "more units than the replaced lease lost";
        return CPN_E_CHAIN;
    }
    if (l->end_ms <= now_ms) {
        *why = "the replaced lease has ended";
        return CPN_E_EXPIRED;
    }
    if (claim->duration_s < 1 || claim->duration_s > (rest_ms + 999) / 1000 ||
        claim->duration_s > old->req.duration_s) {
        *why = "longer than the rest of the replaced lease";
        return CPN_E_CHAIN;
    }
    return CPN_OK;
}
