/* observe.c - the peer's /metrics: the listener, the snapshot handoff and the text
 * (docs/METRICS.md lists every family). */
#include "observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "log.h"
#include "snap.h"

#define S_TEXT "text/plain; charset=utf-8"
#define S_LABELS(...) ((const cpn_om_label_t[]){__VA_ARGS__})

struct peer_obs {
    cpn_http_t *http;
    cpn_snap_t *snap;
};

static void s_counter(cpn_om_t *om, const char *name, const char *help, uint64_t v)
{
    char metric[96];
    snprintf(metric, sizeof metric, "%s_total", name);
    cpn_om_family(om, name, "counter", NULL, help);
    cpn_om_u64(om, metric, NULL, 0, v);
}

static void s_leases(cpn_om_t *om, const peer_obs_snapshot_t *s)
{
    const struct {
        const char *event;
        uint64_t v;
    } ev[] = {{"granted", s->leases.granted}, {"retried", s->leases.retried},
              {"renewed", s->leases.renewed}, {"released", s->leases.released},
              {"expired", s->leases.expired}};
    cpn_om_family(om, "cpn_peer_lease_events", "counter", NULL,
                  "leases granted, answered again from the store (retried), renewed, released, "
                  "expired");
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
        cpn_om_u64(om, "cpn_peer_lease_events_total", S_LABELS({"event", ev[i].event}), 1,
                   ev[i].v);
    if (s->store_ok) {
        cpn_om_family(om, "cpn_peer_leases_active", "gauge", NULL, "active leases in the store");
        cpn_om_u64(om, "cpn_peer_leases_active", NULL, 0, s->active);
    }
    cpn_om_family(om, "cpn_peer_refusals", "counter", NULL,
                  "CLAIMs, RENEWs and RELEASEs refused, by code");
    for (int i = 1; i < PEER_ERR_SLOTS; i++)
        if (s->refused[i])
            cpn_om_u64(om, "cpn_peer_refusals_total", S_LABELS({"code", cpn_errname(-i)}), 1,
                       s->refused[i]);
    cpn_om_family(om, "cpn_peer_store_commit_seconds", "histogram", "seconds",
                  "one batch's commit of the lease store (group commit, fsync included)");
    cpn_om_hist(om, "cpn_peer_store_commit_seconds", NULL, 0, &s->commit);
}

static void s_inventory(cpn_om_t *om, const peer_obs_snapshot_t *s)
{
    cpn_om_family(om, "cpn_peer_free_units", "gauge", NULL,
                  "free units per package (accelerator model and region as labels)");
    for (size_t i = 0; i < s->n_pkgs; i++)
        cpn_om_u64(om, "cpn_peer_free_units",
                   S_LABELS({"package", s->pkgs[i].id}, {"model", s->pkgs[i].model},
                            {"region", s->pkgs[i].region}),
                   3, s->pkgs[i].free);
    cpn_om_family(om, "cpn_peer_total_units", "gauge", NULL, "units per package");
    for (size_t i = 0; i < s->n_pkgs; i++)
        cpn_om_u64(om, "cpn_peer_total_units",
                   S_LABELS({"package", s->pkgs[i].id}, {"model", s->pkgs[i].model},
                            {"region", s->pkgs[i].region}),
                   3, s->pkgs[i].total);
}

static void s_links(cpn_om_t *om, const peer_obs_snapshot_t *s)
{
    size_t up = 0;
    cpn_om_family(om, "cpn_peer_broker_up", "gauge", NULL,
                  "1 if the link to the broker is connected");
    for (size_t i = 0; i < s->n_brokers; i++) {
        up += s->brokers[i].connected;
        cpn_om_u64(om, "cpn_peer_broker_up", S_LABELS({"endpoint", s->brokers[i].endpoint}), 1,
                   s->brokers[i].connected);
    }
    cpn_om_family(om, "cpn_peer_brokers_up", "gauge", NULL, "broker links connected");
    cpn_om_u64(om, "cpn_peer_brokers_up", NULL, 0, up);
    s_counter(om, "cpn_peer_ads_sent", "ADs sent to all brokers (one per advertisement)",
              s->ads_sent);
    s_counter(om, "cpn_peer_receive_errors", "frames that could not be received", s->recv_errors);
}

char *peer_obs_render(const peer_obs_snapshot_t *s, size_t *len)
{
    cpn_om_t om;
    char *text = NULL;
    cpn_om_init(&om);
    cpn_om_family(&om, "cpn_build", "info", NULL, "the program and its version");
    cpn_om_u64(&om, "cpn_build_info",
               S_LABELS({"program", "cpn-peer"}, {"version", PACKAGE_VERSION}, {"name", s->name},
                        {"key", s->kid}),
               4, 1);
    cpn_om_family(&om, "cpn_peer_start_time_seconds", "gauge", "seconds",
                  "when the peer started, seconds since the Unix epoch");
    cpn_om_us(&om, "cpn_peer_start_time_seconds", NULL, 0, s->started_ms * 1000u);
    s_leases(&om, s);
    s_inventory(&om, s);
    s_links(&om, s);
    cpn_om_family(&om, "cpn_http_responses", "counter", NULL,
                  "answers of this HTTP listener before this scrape, by status class");
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "2xx"}), 1, s->http.ok);
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "4xx"}), 1,
               s->http.client_errors);
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "5xx"}), 1,
               s->http.server_errors);
    return cpn_om_finish(&om, &text, len) == CPN_OK ? text : NULL;
}

static void s_serve(void *arg, const char *path, const cpn_http_counts_t *counts,
                    cpn_http_reply_t *out)
{
    peer_obs_t *self = arg;
    void *s = NULL;
    if (strcmp(path, "/metrics") != 0) {
        cpn_http_text(out, 404, S_TEXT, "not found: try /metrics\n");
        return;
    }
    if (cpn_snap_take(self->snap, PEER_OBS_WAIT_MS, &s) != CPN_OK || !s) {
        free(s);
        cpn_http_text(out, 503, S_TEXT, "the peer's event loop did not answer in time\n");
        return;
    }
    ((peer_obs_snapshot_t *)s)->http = *counts;
    out->body = peer_obs_render(s, &out->len);
    free(s);
    if (!out->body) {
        cpn_http_text(out, 503, S_TEXT, "out of memory, or the answer is over its size limit\n");
        return;
    }
    out->status = 200;
    out->type = CPN_OM_CONTENT_TYPE;
}

int peer_obs_new(const char *spec, peer_obs_t **out)
{
    peer_obs_t *self = calloc(1, sizeof *self);
    int r = CPN_E_NOMEM;
    *out = NULL;
    if (!self || !(self->snap = cpn_snap_new(free)))
        goto fail;
    if ((r = cpn_http_start(spec, s_serve, self, &self->http)) != CPN_OK)
        goto fail;
    log_info("http", "metrics on %s (port %u) at /metrics", spec,
             (unsigned)cpn_http_port(self->http));
    *out = self;
    return CPN_OK;
fail:
    peer_obs_destroy(&self);
    return r;
}

void peer_obs_destroy(peer_obs_t **self_p)
{
    peer_obs_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    void *none = NULL;
    if (self->snap)
        cpn_snap_publish(self->snap, &none);
    cpn_http_stop(&self->http);
    cpn_snap_destroy(&self->snap);
    free(self);
    *self_p = NULL;
}

bool peer_obs_wanted(peer_obs_t *self)
{
    return cpn_snap_wanted(self->snap);
}

void peer_obs_publish(peer_obs_t *self, peer_obs_snapshot_t **snap_p)
{
    void *s = *snap_p;
    *snap_p = NULL;
    cpn_snap_publish(self->snap, &s);
}

uint16_t peer_obs_port(const peer_obs_t *self)
{
    return cpn_http_port(self->http);
}
