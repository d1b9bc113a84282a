/* obs_text.c - the broker's /metrics: a snapshot as OpenMetrics text (docs/METRICS.md lists
 * every family). Runs in the listener's thread; reads the snapshot only. */
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "obs.h"

#define S_LABELS(...) ((const cpn_om_label_t[]){__VA_ARGS__})
#define S_N(a) (sizeof(a) / sizeof((a)[0]))

/* A counter family with one sample per error code that has a count. */
static void s_by_code(cpn_om_t *om, const char *name, const char *help, const uint64_t *slots)
{
    char metric[96];
    snprintf(metric, sizeof metric, "%s_total", name);
    cpn_om_family(om, name, "counter", NULL, help);
    for (int i = 1; i < BROKER_ERR_SLOTS; i++)
        if (slots[i]) {
            cpn_om_label_t l[] = {{"code", cpn_errname(-i)}};
            cpn_om_u64(om, metric, l, 1, slots[i]);
        }
}

static void s_counter(cpn_om_t *om, const char *name, const char *help, uint64_t v)
{
    char metric[96];
    snprintf(metric, sizeof metric, "%s_total", name);
    cpn_om_family(om, name, "counter", NULL, help);
    cpn_om_u64(om, metric, NULL, 0, v);
}

static void s_gauge(cpn_om_t *om, const char *name, const char *help, uint64_t v)
{
    cpn_om_family(om, name, "gauge", NULL, help);
    cpn_om_u64(om, name, NULL, 0, v);
}

static void s_requests(cpn_om_t *om, const obs_snapshot_t *s)
{
    const broker_stats_t *st = &s->stats;
    s_counter(om, "cpn_broker_requests", "REQUESTs received from tenants", st->requests);
    s_counter(om, "cpn_broker_grants", "GRANTs (countersigned leases) sent to tenants",
              st->grants);
    s_by_code(om, "cpn_broker_nacks", "NACKs sent, by code", st->nacks_by_code);
    s_gauge(om, "cpn_broker_requests_in_flight", "requests between REQUEST and their last answer",
            s->in_flight);
    s_counter(om, "cpn_broker_requests_in_doubt",
              "requests refused in-doubt or unreachable for an open intent", st->in_doubt);
    s_counter(om, "cpn_broker_claims_sent", "CLAIMs sent to peers or forwarded", st->claims_sent);
    s_counter(om, "cpn_broker_claim_timeouts", "CLAIMs unanswered within limits.claim_timeout",
              st->claim_timeouts);
    cpn_om_family(om, "cpn_broker_request_to_lease_seconds", "histogram", "seconds",
                  "from a REQUEST's arrival to its GRANT");
    cpn_om_hist(om, "cpn_broker_request_to_lease_seconds", NULL, 0, &st->request_to_lease);
    cpn_om_family(om, "cpn_broker_match_seconds", "histogram", "seconds",
                  "one match of a request against the offer book (or one batch plan)");
    cpn_om_hist(om, "cpn_broker_match_seconds", NULL, 0, &st->match);
}

static void s_intake(cpn_om_t *om, const obs_snapshot_t *s)
{
    const broker_stats_t *st = &s->stats;
    s_counter(om, "cpn_broker_messages_received", "frames received on the ROUTER",
              st->received);
    s_counter(om, "cpn_broker_messages_accepted", "frames that passed every check",
              st->accepted);
    s_by_code(om, "cpn_broker_refusals",
              "messages refused, by code (bad-signature, replay, rate-limited, ...)", st->refused);
    s_counter(om, "cpn_broker_refusals_unanswered",
              "refusals past limits.rate.refusals: counted, not answered",
              st->refusals_unanswered);
    cpn_om_family(om, "cpn_broker_policy_reloads", "counter", NULL,
                  "SIGHUP reloads, by result (a failed one keeps the running policy)");
    cpn_om_u64(om, "cpn_broker_policy_reloads_total", S_LABELS({"result", "ok"}), 1, st->reloads);
    cpn_om_u64(om, "cpn_broker_policy_reloads_total", S_LABELS({"result", "failed"}), 1,
               st->reloads_failed);
}

static void s_book(cpn_om_t *om, const obs_snapshot_t *s)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"cpn_broker_offers", "packages in the offer book", offsetof(obs_group_t, offers)},
        {"cpn_broker_free_units", "free units in the offer book",
         offsetof(obs_group_t, free_units)},
        {"cpn_broker_total_units", "units the offers' peers have",
         offsetof(obs_group_t, total_units)},
    };
    s_gauge(om, "cpn_broker_peers", "peers with offers in the book", s->book.peers);
    for (size_t f = 0; f < S_N(fams); f++) {
        char help[128];
        snprintf(help, sizeof help, "%s, by accelerator model and region", fams[f].help);
        cpn_om_family(om, fams[f].name, "gauge", NULL, help);
        for (size_t i = 0; i < s->n_groups; i++) {
            const obs_group_t *g = &s->groups[i];
            uint64_t v;
            memcpy(&v, (const char *)g + fams[f].off, sizeof v);
            cpn_om_u64(om, fams[f].name,
                       S_LABELS({"model", g->model}, {"region", g->region}), 2, v);
        }
    }
}

static void s_ledger(cpn_om_t *om, const obs_snapshot_t *s)
{
    const broker_stats_t *st = &s->stats;
    if (s->ledger_ok) { /* unreadable: no sample rather than a false zero */
        s_gauge(om, "cpn_broker_leases_active", "active leases in the ledger", s->ledger.active);
        s_gauge(om, "cpn_broker_units_leased", "units in active leases", s->ledger.active_units);
        s_gauge(om, "cpn_broker_claims_in_doubt", "CLAIM intents not yet settled", s->intents);
    }
    cpn_om_family(om, "cpn_broker_ledger_commit_seconds", "histogram", "seconds",
                  "one ledger transaction's commit (group commit, fsync included)");
    cpn_om_hist(om, "cpn_broker_ledger_commit_seconds", NULL, 0, &st->ledger_commit);
    s_counter(om, "cpn_broker_ledger_commit_failures",
              "ledger commits that failed (their answers refused)", st->commit_failures);
}

static void s_federation(cpn_om_t *om, const obs_snapshot_t *s)
{
    static const struct {
        const char *name, *type, *unit, *help;
        size_t off;
    } fams[] = {
        {"cpn_broker_federation_relays_received", "counter", NULL, "RELAYs received, by member",
         offsetof(federation_link_info_t, relays_in)},
        {"cpn_broker_federation_relays_sent", "counter", NULL, "RELAYs sent, by member",
         offsetof(federation_link_info_t, relays_out)},
        {"cpn_broker_federation_relay_sent_bytes", "counter", "bytes",
         "bytes of RELAYs sent, by member", offsetof(federation_link_info_t, relay_bytes_out)},
        {"cpn_broker_federation_sent_bytes", "counter", "bytes",
         "bytes sent on the member link", offsetof(federation_link_info_t, bytes_out)},
    };
    size_t up = 0;
    for (size_t i = 0; i < s->n_members; i++)
        up += s->members[i].up;
    s_gauge(om, "cpn_broker_federation_members", "federation members in the policy",
            s->n_members);
    s_gauge(om, "cpn_broker_federation_members_up", "members heard from within hello_timeout",
            up);
    cpn_om_family(om, "cpn_broker_federation_member_up", "gauge", NULL,
                  "1 if the member was heard from within hello_timeout");
    for (size_t i = 0; i < s->n_members; i++)
        cpn_om_u64(om, "cpn_broker_federation_member_up",
                   S_LABELS({"member", s->members[i].name}), 1, s->members[i].up);
    for (size_t f = 0; f < S_N(fams); f++) {
        char metric[96];
        snprintf(metric, sizeof metric, "%s_total", fams[f].name);
        cpn_om_family(om, fams[f].name, fams[f].type, fams[f].unit, fams[f].help);
        for (size_t i = 0; i < s->n_members; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&s->members[i] + fams[f].off, sizeof v);
            cpn_om_u64(om, metric, S_LABELS({"member", s->members[i].name}), 1, v);
        }
    }
    s_counter(om, "cpn_broker_federation_relays_accepted", "RELAYs the book took",
              s->fed.relays_accepted);
    s_counter(om, "cpn_broker_federation_relays_refused", "RELAYs refused (checks failed)",
              s->fed.relays_refused);
    s_counter(om, "cpn_broker_federation_forwards_received", "FORWARDs received",
              s->fed.forwards_in);
    s_counter(om, "cpn_broker_federation_forwards_sent", "FORWARDs sent", s->fed.forwards_out);
}

char *obs_render_metrics(const obs_snapshot_t *s, size_t *len)
{
    cpn_om_t om;
    char *text = NULL;
    cpn_om_init(&om);
    cpn_om_family(&om, "cpn_build", "info", NULL, "the program and its version");
    cpn_om_u64(&om, "cpn_build_info",
               S_LABELS({"program", "cpn-broker"}, {"version", PACKAGE_VERSION},
                        {"name", s->name}, {"key", s->kid}),
               4, 1);
    cpn_om_family(&om, "cpn_broker_start_time_seconds", "gauge", "seconds",
                  "when the broker started, seconds since the Unix epoch");
    cpn_om_us(&om, "cpn_broker_start_time_seconds", NULL, 0, s->started_ms * 1000u);
    s_requests(&om, s);
    s_intake(&om, s);
    s_book(&om, s);
    s_ledger(&om, s);
    s_federation(&om, s);
    cpn_om_family(&om, "cpn_http_responses", "counter", NULL,
                  "answers of this HTTP listener before this scrape, by status class");
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "2xx"}), 1, s->http.ok);
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "4xx"}), 1,
               s->http.client_errors);
    cpn_om_u64(&om, "cpn_http_responses_total", S_LABELS({"class", "5xx"}), 1,
               s->http.server_errors);
    if (cpn_om_finish(&om, &text, len) != CPN_OK)
        return NULL;
    return text;
}
