/* observe.h - the peer seen from outside: OpenMetrics for Prometheus on the listener of the
 * config's `http` key (off unless set; docs/POLICY.md).
 *
 * As in the broker (broker/obs.h): the event loop owns every counter; once per pass it asks
 * peer_obs_wanted (a relaxed atomic load) and, only if a scrape waits, fills a
 * peer_obs_snapshot_t and publishes it; libmicrohttpd's thread renders the snapshot and never
 * reads the daemon's state. GET /metrics only (anything else 404); a loop that does not answer
 * within PEER_OBS_WAIT_MS: 503.
 */
#ifndef PEER_OBSERVE_H
#define PEER_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpd.h"
#include "lease.h"
#include "metrics.h"
#include "peer_config.h"

#define PEER_OBS_WAIT_MS 2000 /* a scrape waits this long for the loop's snapshot */

typedef struct {
    char id[CPN_NAME_MAX];
    char model[CPN_NAME_MAX]; /* accelerator model, "none" without accelerators */
    char region[CPN_NAME_MAX];
    uint32_t free, total;
} peer_obs_pkg_t;

typedef struct {
    char endpoint[CPN_ENDPOINT_MAX];
    bool connected;
} peer_obs_broker_t;

/* What a scrape renders: a copy made by the loop. */
typedef struct {
    char name[CPN_NAME_MAX];
    char kid[CPN_KID_LEN];
    uint64_t started_ms;
    peer_lease_stats_t leases;
    uint64_t refused[PEER_ERR_SLOTS]; /* frames refused, per code (index = -code) */
    uint64_t recv_errors;
    uint64_t ads_sent;
    bool store_ok; /* the store's count could be read */
    uint64_t active; /* active leases in the store */
    cpn_hist_t commit; /* one batch's commit of the lease store */
    size_t n_pkgs;
    peer_obs_pkg_t pkgs[CPN_PACKAGES_MAX];
    size_t n_brokers;
    peer_obs_broker_t brokers[PEER_BROKERS_MAX];
    cpn_http_counts_t http; /* the listener's answers before this one (set by the listener) */
} peer_obs_snapshot_t;

typedef struct peer_obs peer_obs_t;

/* Start the listener on `spec`. CPN_E_INVAL, CPN_E_IO (cannot bind), CPN_E_NOMEM. */
int peer_obs_new(const char *spec, peer_obs_t **out) CPN_WUR;
/* Stop the listener (a waiting scrape gets 503) and free. Accepts NULL. */
void peer_obs_destroy(peer_obs_t **self_p);
/* The loop, once per pass: does a scrape wait for a snapshot? */
bool peer_obs_wanted(peer_obs_t *self);
/* The loop: hand *snap_p over (taken; NULL tells the scrape there is none). */
void peer_obs_publish(peer_obs_t *self, peer_obs_snapshot_t **snap_p);
uint16_t peer_obs_port(const peer_obs_t *self);

/* The snapshot as OpenMetrics text (malloc'd, the caller frees), or NULL. */
char *peer_obs_render(const peer_obs_snapshot_t *s, size_t *len);

#endif
