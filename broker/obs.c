/* obs.c - the loop's side of the HTTP listener: snapshots on demand, the free/leased history,
 * and the routes (answered in the listener's thread from a snapshot only). */
#include "obs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "httpd.h"
#include "log.h"
#include "snap.h"

#define S_HTML "text/html; charset=utf-8"
#define S_JSON "application/json"
#define S_TEXT "text/plain; charset=utf-8"

struct obs {
    cpn_http_t *http;
    cpn_snap_t *snap;
    recent_t recent;
    obs_sample_t ring[OBS_SAMPLES]; /* the history, a ring */
    size_t ring_next, ring_n;
    uint64_t next_sample_mono;
};

/* ---- the loop's side ---- */

/* The group of a package: its accelerator model ("none") and region; past OBS_GROUPS_MAX
 * groups, OBS_OTHER. Linear: the groups are few (models x regions) and this runs per scrape. */
static obs_group_t *s_group(obs_snapshot_t *s, const cpn_package_t *p)
{
    const char *model = p->accel.count && p->accel.model[0] ? p->accel.model : "none";
    for (size_t i = 0; i < s->n_groups; i++)
        if (strcmp(s->groups[i].model, model) == 0 && strcmp(s->groups[i].region, p->region) == 0)
            return &s->groups[i];
    if (s->n_groups == OBS_GROUPS_MAX) /* the last group collects the rest */
        return &s->groups[OBS_GROUPS_MAX - 1];
    obs_group_t *g = &s->groups[s->n_groups++];
    if (s->n_groups == OBS_GROUPS_MAX) {
        model = OBS_OTHER;
        p = NULL;
    }
    snprintf(g->model, sizeof g->model, "%s", model);
    snprintf(g->region, sizeof g->region, "%s", p ? p->region : OBS_OTHER);
    return g;
}

static void s_collect_book(obs_snapshot_t *s, const book_t *book)
{
    size_t cur = 0;
    const book_peer_t *bp;
    book_stats(book, &s->book);
    while ((bp = book_next(book, &cur)) != NULL) {
        if (bp->withdrawn)
            continue;
        for (uint32_t k = 0; k < bp->n_packages; k++) {
            obs_group_t *g = s_group(s, &bp->packages[k]);
            g->offers++;
            g->free_units += bp->packages[k].free;
            g->total_units += bp->packages[k].total;
        }
    }
}

static int s_lease_row(const ledger_lease_t *l, void *arg)
{
    obs_snapshot_t *s = arg;
    if (s->n_leases >= OBS_LEASES_MAX)
        return 1;
    obs_lease_t *o = &s->leases[s->n_leases++];
    snprintf(o->lease_id, sizeof o->lease_id, "%s", l->lease_id);
    cpn_key_id(l->tenant, o->tenant);
    cpn_key_id(l->peer, o->peer);
    snprintf(o->package, sizeof o->package, "%s", l->package);
    snprintf(o->state, sizeof o->state, "%s", l->state);
    o->units = l->units;
    o->start_ms = l->start_ms;
    o->end_ms = l->end_ms;
    return 0;
}

static obs_snapshot_t *s_collect(obs_t *self, broker_t *b)
{
    obs_snapshot_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->name, sizeof s->name, "%s", b->pol->broker.name);
    cpn_key_id(cpn_identity_pk(b->id), s->kid);
    s->now_ms = cpn_now_ms();
    s->started_ms = b->started_ms;
    s->stats = b->stats;
    s->in_flight = claim_in_flight(b->claim);
    s_collect_book(s, b->book);
    s->ledger_ok = ledger_counts(b->ledger, s->now_ms, &s->ledger) == CPN_OK &&
                   ledger_intent_count(b->ledger, &s->intents) == CPN_OK &&
                   ledger_list(b->ledger, NULL, false, s->now_ms, OBS_LEASES_MAX, s_lease_row,
                               s) == CPN_OK;
    federation_counts(b, &s->fed);
    for (size_t i = 0; i < OBS_MEMBERS_MAX && federation_link_info(b, i, &s->members[i]); i++)
        s->n_members = i + 1;
    for (size_t i = 0; i < self->ring_n; i++)
        s->samples[i] = self->ring[(self->ring_next + OBS_SAMPLES - self->ring_n + i) % OBS_SAMPLES];
    s->n_samples = self->ring_n;
    s->n_recent = recent_copy(&self->recent, s->recent);
    return s;
}

void obs_turn(obs_t *self, broker_t *b)
{
    if (!cpn_snap_wanted(self->snap))
        return;
    void *s = s_collect(self, b);
    if (!s)
        log_warn("http", "no memory for a snapshot: the reader gets 503");
    cpn_snap_publish(self->snap, &s); /* NULL wakes the reader too, with nothing */
}

void obs_tick(obs_t *self, broker_t *b, uint64_t now_mono)
{
    if (now_mono < self->next_sample_mono)
        return;
    self->next_sample_mono = now_mono + OBS_SAMPLE_MS;
    book_stats_t bs;
    ledger_counts_t lc;
    uint64_t now = cpn_now_ms();
    book_stats(b->book, &bs);
    if (ledger_counts(b->ledger, now, &lc) != CPN_OK)
        return; /* a gap in the plot, not a false zero */
    self->ring[self->ring_next] =
        (obs_sample_t){.ts_ms = now, .free_units = bs.free_units, .leased_units = lc.active_units};
    self->ring_next = (self->ring_next + 1) % OBS_SAMPLES;
    if (self->ring_n < OBS_SAMPLES)
        self->ring_n++;
}

/* ---- the listener's side: a snapshot, then a renderer ---- */

typedef char *(*s_render_fn)(const obs_snapshot_t *s, size_t *len);

static const struct {
    const char *path;
    const char *type;
    s_render_fn render; /* NULL: the static page */
} s_routes[] = {
    {"/metrics", CPN_OM_CONTENT_TYPE, obs_render_metrics},
    {"/api/state", S_JSON, obs_render_json},
    {"/", S_HTML, NULL},
};

static void s_serve(void *arg, const char *path, const cpn_http_counts_t *counts,
                    cpn_http_reply_t *out)
{
    obs_t *self = arg;
    size_t i = 0, n = sizeof s_routes / sizeof s_routes[0];
    while (i < n && strcmp(path, s_routes[i].path) != 0)
        i++;
    if (i == n) {
        cpn_http_text(out, 404, S_TEXT, "not found: try /, /metrics or /api/state\n");
        return;
    }
    if (!s_routes[i].render) {
        cpn_http_text(out, 200, s_routes[i].type, obs_page_html);
        return;
    }
    void *s = NULL;
    if (cpn_snap_take(self->snap, OBS_SNAP_WAIT_MS, &s) != CPN_OK || !s) {
        free(s);
        cpn_http_text(out, 503, S_TEXT, "the broker's event loop did not answer in time\n");
        return;
    }
    ((obs_snapshot_t *)s)->http = *counts;
    out->body = s_routes[i].render(s, &out->len);
    free(s);
    if (!out->body) {
        cpn_http_text(out, 503, S_TEXT, "out of memory, or the answer is over its size limit\n");
        return;
    }
    out->status = 200;
    out->type = s_routes[i].type;
}

int obs_new(broker_t *b, const char *spec, obs_t **out)
{
    obs_t *self = calloc(1, sizeof *self);
    int r = CPN_E_NOMEM;
    *out = NULL;
    if (!self || !(self->snap = cpn_snap_new(free)))
        goto fail;
    if ((r = cpn_http_start(spec, s_serve, self, &self->http)) != CPN_OK)
        goto fail;
    b->recent = &self->recent;
    log_info("http", "listening on %s (port %u): /metrics, /api/state, the dashboard at /", spec,
             (unsigned)cpn_http_port(self->http));
    *out = self;
    return CPN_OK;
fail:
    obs_destroy(&self);
    return r;
}

void obs_destroy(obs_t **self_p)
{
    obs_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    void *none = NULL;
    if (self->snap)
        cpn_snap_publish(self->snap, &none); /* a reader waiting now gets its 503 at once */
    cpn_http_stop(&self->http); /* then no reader is left to wait for the snapshot */
    cpn_snap_destroy(&self->snap);
    free(self);
    *self_p = NULL;
}

uint16_t obs_port(const obs_t *self)
{
    return cpn_http_port(self->http);
}
