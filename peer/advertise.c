/* advertise.c - HELLO, AD and WITHDRAW bodies from the configuration and inventory. */
#include "advertise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void advertise_hello(const peer_config_t *cfg, cpn_hello_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->role, sizeof out->role, "peer");
    snprintf(out->name, sizeof out->name, "%s", cfg->name);
    out->endpoint[0] = '\0'; /* a peer connects outward and listens nowhere */
}

void advertise_ad(const peer_config_t *cfg, const peer_inventory_t *inv, cpn_ad_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", cfg->name);
    uint64_t ttl = cfg->refresh_s * PEER_AD_TTL_REFRESHES;
    out->ttl_s = ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl;
    out->n_packages = (uint32_t)peer_inventory_count(inv);
    /* The inventory keeps its packages in one array with `free` current. */
    out->packages = (cpn_package_t *)peer_inventory_get(inv, 0);
}

void advertise_withdraw(const char *reason, cpn_withdraw_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->reason, sizeof out->reason, "%s", reason ? reason : "");
}

int advertise_check_size(const peer_config_t *cfg, const peer_inventory_t *inv,
                         size_t max_frame, size_t *len)
{
    cpn_ad_t ad;
    uint8_t *body = NULL;
    size_t n = 0;
    advertise_ad(cfg, inv, &ad);
    int r = cpn_msg_encode(CPN_MSG_AD, &ad, &body, &n);
    free(body);
    if (r != CPN_OK)
        return r;
    if (len)
        *len = n + PEER_ENVELOPE_OVERHEAD;
    return n + PEER_ENVELOPE_OVERHEAD > max_frame ? CPN_E_TOO_BIG : CPN_OK;
}
