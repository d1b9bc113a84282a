/* obs.h - the broker seen from outside: OpenMetrics for Prometheus and the federation
 * dashboard, on the HTTP listener of `broker.http` (off unless set; docs/POLICY.md).
 *
 * Two threads, one direction. The event loop owns every counter and calls obs_turn once per
 * pass: a relaxed atomic load, unless a reader waits, in which case it builds an
 * obs_snapshot_t (counters, the book by accelerator model and region, member links, ledger
 * counts, recent refusals and leases, the free/leased history) and hands it over (snap.h).
 * libmicrohttpd's thread takes that snapshot and renders it (obs_text.c: /metrics,
 * obs_json.c: /api/state and the page at /); it never reads the broker's state. So a scrape
 * costs the loop one snapshot, and a broker without `http` pays one NULL test per pass.
 *
 * Routes: GET /metrics (OpenMetrics text), GET / (the dashboard page, which polls
 * /api/state every OBS_PAGE_POLL_S), GET /api/state (JSON), anything else 404. A loop that
 * does not answer within OBS_SNAP_WAIT_MS: 503.
 */
#ifndef CPN_OBS_H
#define CPN_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "federation.h"
#include "httpd.h"

#define OBS_SNAP_WAIT_MS 2000  /* a reader waits this long for the loop's snapshot */
#define OBS_SAMPLE_MS 10000    /* free vs leased units sampled this often ... */
#define OBS_SAMPLES 1080       /* ... and this many kept: 3 hours */
#define OBS_GROUPS_MAX 256     /* (accelerator model, region) groups; more are summed in one */
#define OBS_LEASES_MAX 50      /* the newest leases on the dashboard */
#define OBS_MEMBERS_MAX POLICY_MEMBERS_MAX
#define OBS_PAGE_POLL_S 5      /* the page asks for /api/state this often */
#define OBS_OTHER "other"      /* the group of what did not fit OBS_GROUPS_MAX */

typedef struct {
    char model[CPN_NAME_MAX];  /* accelerator model, "none" for packages without one */
    char region[CPN_NAME_MAX];
    uint64_t offers;           /* packages in the book */
    uint64_t free_units, total_units;
} obs_group_t;

typedef struct {
    uint64_t ts_ms;
    uint64_t free_units;   /* in the offer book */
    uint64_t leased_units; /* in active leases of the ledger */
} obs_sample_t;

typedef struct {
    char lease_id[CPN_NAME_MAX];
    char tenant[CPN_KID_LEN], peer[CPN_KID_LEN];
    char package[CPN_NAME_MAX];
    char state[LEDGER_STATE_MAX];
    uint32_t units;
    uint64_t start_ms, end_ms;
} obs_lease_t;

/* Everything a reader renders: a copy, made by the loop, owned by whoever holds it. */
typedef struct {
    char name[CPN_NAME_MAX];
    char kid[CPN_KID_LEN];
    uint64_t now_ms, started_ms;
    broker_stats_t stats;
    book_stats_t book;
    bool ledger_ok; /* ledger counts and leases could be read */
    ledger_counts_t ledger;
    uint64_t in_flight, intents;
    federation_counts_t fed;
    size_t n_members;
    federation_link_info_t members[OBS_MEMBERS_MAX];
    size_t n_groups;
    obs_group_t groups[OBS_GROUPS_MAX];
    size_t n_samples; /* oldest first */
    obs_sample_t samples[OBS_SAMPLES];
    size_t n_recent; /* newest first */
    recent_row_t recent[RECENT_MAX];
    size_t n_leases; /* newest first */
    obs_lease_t leases[OBS_LEASES_MAX];
    cpn_http_counts_t http; /* the listener's answers before this one (set by the listener) */
} obs_snapshot_t;

typedef struct obs obs_t;

/* Start the listener on `spec` (policy broker.http) for broker b. CPN_E_INVAL, CPN_E_IO
 * (cannot bind), CPN_E_NOMEM. The caller owns *out. */
int obs_new(broker_t *b, const char *spec, obs_t **out) CPN_WUR;
/* Stop the listener (a reader waiting gets its 503) and free everything. Accepts NULL. */
void obs_destroy(obs_t **self_p);
/* The loop, once per pass: a snapshot if a reader waits for one. */
void obs_turn(obs_t *self, broker_t *b);
/* The loop's tick: a sample of free vs leased units every OBS_SAMPLE_MS. */
void obs_tick(obs_t *self, broker_t *b, uint64_t now_mono);
/* The port the listener bound. */
uint16_t obs_port(const obs_t *self);

/* Renderers, in the listener's thread (obs_text.c, obs_json.c): a malloc'd text the caller
 * frees, or NULL if it could not be built (out of memory, too big). */
char *obs_render_metrics(const obs_snapshot_t *s, size_t *len);
char *obs_render_json(const obs_snapshot_t *s, size_t *len);
/* The dashboard page (generated from broker/dashboard.html at build time). */
extern const char obs_page_html[];

#endif
