/* advertise.h - the bodies a peer says about itself: HELLO, AD and WITHDRAW. Pure. */
#ifndef PEER_ADVERTISE_H
#define PEER_ADVERTISE_H

#include "inventory.h"
#include "msg.h"
#include "peer_config.h"

/* Minimum interval between two ADs caused by free-capacity changes (changes in between
 * are coalesced into the next AD). */
#define PEER_AD_COALESCE_MS 100
/* A learnt workload moves with every slice placed, and with it every shared package's
 * gradients: they are all recomputed for an AD at most this often (each time costs
 * CPN_GRAD_MAX placements' scoring on every shared node); in between, an AD refreshes the
 * packages whose slices changed. */
#define PEER_RESUMMARIZE_MS 100
/* An AD's ttl is this many refresh intervals, so a broker keeps the offer across a lost AD
 * or two and drops it soon after the peer goes silent. */
#define PEER_AD_TTL_REFRESHES 3

void advertise_hello(const peer_config_t *cfg, cpn_hello_t *out);
/* The AD body: every configured package with its total and current free count. `out`
 * points into the inventory (no allocation); valid until the inventory changes. */
void advertise_ad(const peer_config_t *cfg, const peer_inventory_t *inv, cpn_ad_t *out);
void advertise_withdraw(const char *reason, cpn_withdraw_t *out);

/* Bytes a sealed envelope adds around a body, at most (keys, sender key, seq, ts, the
 * signature and the headers). */
#define PEER_ENVELOPE_OVERHEAD 256
/* Does the AD of this inventory fit in a frame of max_frame bytes? CPN_OK, or CPN_E_TOO_BIG
 * (many packages with long names: split them over several peers). *len (may be NULL) is the
 * frame size, at most. */
int advertise_check_size(const peer_config_t *cfg, const peer_inventory_t *inv,
                         size_t max_frame, size_t *len) CPN_WUR;

#endif
