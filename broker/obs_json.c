/* obs_json.c - the dashboard's /api/state: a snapshot as one JSON object (docs/METRICS.md
 * shows its shape). Runs in the listener's thread; reads the snapshot only. Strings from
 * outside (names in ADs, reasons) are escaped here and shown as text by the page. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs.h"

#define S_JSON_MAX (4u * 1024 * 1024) /* bytes of one answer, at most */

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} s_out_t;

static void s_put(s_out_t *o, const char *p, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16384;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *b = cap <= S_JSON_MAX ? realloc(o->buf, cap) : NULL;
        if (!b) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void s_fmt(s_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fmt(s_out_t *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        o->failed = true; /* only numbers and keys go through here */
    else
        s_put(o, tmp, (size_t)n);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void s_str(s_out_t *o, const char *s)
{
    s_put(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            s_put(o, e, 2);
        } else if (c < 0x20)
            s_fmt(o, "\\u%04x", c);
        else
            s_put(o, s, 1);
    }
    s_put(o, "\"", 1);
}

/* "key": */
static void s_key(s_out_t *o, const char *k, bool first)
{
    if (!first)
        s_put(o, ",", 1);
    s_str(o, k);
    s_put(o, ":", 1);
}

static void s_kstr(s_out_t *o, const char *k, const char *v, bool first)
{
    s_key(o, k, first);
    s_str(o, v);
}

static void s_ku64(s_out_t *o, const char *k, uint64_t v, bool first)
{
    s_key(o, k, first);
    s_fmt(o, "%" PRIu64, v);
}

static void s_members(s_out_t *o, const obs_snapshot_t *s)
{
    s_key(o, "members", false);
    s_put(o, "[", 1);
    for (size_t i = 0; i < s->n_members; i++) {
        const federation_link_info_t *m = &s->members[i];
        char kid[CPN_KID_LEN];
        cpn_key_id(m->key, kid);
        s_put(o, i ? ",{" : "{", i ? 2 : 1);
        s_kstr(o, "name", m->name, true);
        s_kstr(o, "key", kid, false);
        s_kstr(o, "state", m->up ? "up" : "down", false);
        s_kstr(o, "link", m->connected ? "connected" : "connecting", false);
        s_ku64(o, "silent_s", m->silent_ms / 1000, false);
        s_ku64(o, "relays_in", m->relays_in, false);
        s_ku64(o, "relays_out", m->relays_out, false);
        s_ku64(o, "relay_bytes_out", m->relay_bytes_out, false);
        s_put(o, "}", 1);
    }
    s_put(o, "]", 1);
}

static void s_offers(s_out_t *o, const obs_snapshot_t *s)
{
    s_key(o, "offers", false);
    s_put(o, "[", 1);
    for (size_t i = 0; i < s->n_groups; i++) {
        const obs_group_t *g = &s->groups[i];
        s_put(o, i ? ",{" : "{", i ? 2 : 1);
        s_kstr(o, "model", g->model, true);
        s_kstr(o, "region", g->region, false);
        s_ku64(o, "offers", g->offers, false);
        s_ku64(o, "free", g->free_units, false);
        s_ku64(o, "total", g->total_units, false);
        s_put(o, "}", 1);
    }
    s_put(o, "]", 1);
}

/* [[ts_ms, free, leased], ...], oldest first, the present last. */
static void s_history(s_out_t *o, const obs_snapshot_t *s)
{
    s_key(o, "history", false);
    s_put(o, "[", 1);
    for (size_t i = 0; i < s->n_samples; i++)
        s_fmt(o, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", s->samples[i].ts_ms,
              s->samples[i].free_units, s->samples[i].leased_units);
    if (s->ledger_ok)
        s_fmt(o, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", s->n_samples ? "," : "", s->now_ms,
              s->book.free_units, s->ledger.active_units);
    s_put(o, "]", 1);
}

static void s_refusals(s_out_t *o, const obs_snapshot_t *s)
{
    bool first = true;
    s_key(o, "refusals_by_code", false);
    s_put(o, "{", 1);
    for (int i = 1; i < BROKER_ERR_SLOTS; i++)
        if (s->stats.nacks_by_code[i]) {
            s_ku64(o, cpn_errname(-i), s->stats.nacks_by_code[i], first);
            first = false;
        }
    s_put(o, "}", 1);
    s_key(o, "recent_refusals", false);
    s_put(o, "[", 1);
    for (size_t i = 0; i < s->n_recent; i++) {
        const recent_row_t *r = &s->recent[i];
        s_put(o, i ? ",{" : "{", i ? 2 : 1);
        s_ku64(o, "ts_ms", r->ts_ms, true);
        s_kstr(o, "code", cpn_errname(r->code), false);
        s_kstr(o, "ref", r->ref, false);
        s_kstr(o, "reason", r->reason, false);
        s_put(o, "}", 1);
    }
    s_put(o, "]", 1);
}

static void s_leases(s_out_t *o, const obs_snapshot_t *s)
{
    s_key(o, "leases", false);
    s_put(o, "[", 1);
    for (size_t i = 0; i < s->n_leases; i++) {
        const obs_lease_t *l = &s->leases[i];
        s_put(o, i ? ",{" : "{", i ? 2 : 1);
        s_kstr(o, "lease_id", l->lease_id, true);
        s_kstr(o, "tenant", l->tenant, false);
        s_kstr(o, "peer", l->peer, false);
        s_kstr(o, "package", l->package, false);
        s_ku64(o, "units", l->units, false);
        s_kstr(o, "state", l->state, false);
        s_ku64(o, "start_ms", l->start_ms, false);
        s_ku64(o, "end_ms", l->end_ms, false);
        s_put(o, "}", 1);
    }
    s_put(o, "]", 1);
}

char *obs_render_json(const obs_snapshot_t *s, size_t *len)
{
    s_out_t o = {0};
    s_put(&o, "{", 1);
    s_kstr(&o, "name", s->name, true);
    s_kstr(&o, "key", s->kid, false);
    s_kstr(&o, "version", PACKAGE_VERSION, false);
    s_ku64(&o, "now_ms", s->now_ms, false);
    s_ku64(&o, "uptime_s", (s->now_ms - s->started_ms) / 1000, false);
    s_ku64(&o, "sample_s", OBS_SAMPLE_MS / 1000, false);
    s_ku64(&o, "poll_s", OBS_PAGE_POLL_S, false);
    s_ku64(&o, "peers", s->book.peers, false);
    s_ku64(&o, "free_units", s->book.free_units, false);
    s_ku64(&o, "requests", s->stats.requests, false);
    s_ku64(&o, "grants", s->stats.grants, false);
    s_ku64(&o, "nacks", s->stats.nacks, false);
    s_ku64(&o, "in_flight", s->in_flight, false);
    if (s->ledger_ok) {
        s_ku64(&o, "leases_active", s->ledger.active, false);
        s_ku64(&o, "units_leased", s->ledger.active_units, false);
    }
    s_members(&o, s);
    s_offers(&o, s);
    s_history(&o, s);
    s_refusals(&o, s);
    s_leases(&o, s);
    s_put(&o, "}\n", 2);
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
