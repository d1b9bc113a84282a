/* daemon.c - sockets, the event loop and its timers; decisions live in lease.c. */
#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "advertise.h"
#include "clock.h"
#include "fulfil.h"
#include "identity.h"
#include "inventory.h"
#include "lease.h"
#include "meter.h"
#include "link.h"
#include "log.h"
#include "observe.h"
#include "notice.h"
#include "provision.h"
#include "sender.h"
#include "service.h"
#include "store.h"
#include "transport.h"

typedef struct {
    cpn_link_t *link; /* the DEALER; rebuilt after a drop libzmq does not redial (link.h) */
    bool hello_due;
    bool connected;
} s_link_t;

struct peer_daemon {
    peer_config_t *cfg;
    cpn_identity_t *id;
    peer_store_t *store;
    peer_inventory_t *inv;
    peer_sender_t sender;
    peer_lease_t *lease;
    peer_notice_t *notice;
    peer_meter_t *meter;      /* USAGE records (meter.h), delivered by notice.c */
    uint64_t next_meter_mono; /* the meter's next tick */
    bool meter_armed;         /* a lease may be due: false while no lease is metered */
    uint64_t next_drain_mono; /* the drains table is read again then (notice.h) */
    peer_batch_t *batch;
    provision_t *prov;     /* NULL without a `provision:` section */
    peer_fulfil_t *fulfil; /* likewise */
    void *zctx;
    s_link_t links[PEER_BROKERS_MAX];
    uint64_t ad_version; /* inventory version last advertised */
    uint64_t ad_shared;  /* shared summaries' version last advertised */
    uint64_t next_resummarize_mono;
    uint64_t last_ad_mono;
    uint64_t next_refresh_mono;
    uint64_t next_end_ms; /* earliest end of an active lease (wall clock) */
    bool have_next_end;
    uint64_t recv_errors;
    uint64_t ads_sent;
    uint64_t started_ms;
    peer_obs_t *obs;   /* the metrics listener (observe.h); NULL unless `http` is set */
    cpn_hist_t commit; /* store commit latency, observed only while obs is on */
    uint64_t next_status_mono; /* next STATUS= line to the service manager */
};

#define PEER_STATUS_MS 10000 /* a STATUS= line for the service manager this often */
/* The meter looks for due records this often (or every usage_interval, if shorter): a final
 * record is made at most this long after its lease ended. Only while a lease is metered. */
#define PEER_METER_TICK_MS 1000

static int s_link_open(peer_daemon_t *self, size_t i)
{
    const peer_broker_cfg_t *b = &self->cfg->brokers[i];
    cpn_link_cfg_t lc = {
        .endpoint = b->endpoint,
        .max_msg = cpn_limits_default.max_frame,
        .curve = {.enabled = b->curve, .self = self->id},
        .reconnect_ms = PEER_RECONNECT_MS,
        .reconnect_max_ms = PEER_RECONNECT_MAX_MS,
        /* A broker that vanished without closing the connection is noticed and redialled. */
        .heartbeat_ms = PEER_HEARTBEAT_MS,
        .heartbeat_timeout_ms = PEER_HEARTBEAT_TIMEOUT_MS,
        .name = "broker link",
    };
    memcpy(lc.curve.server_pk, b->key, CPN_PK_LEN);
    return cpn_link_new(self->zctx, &lc, &self->links[i].link);
}

/* The engine's final outcomes, inside the batch the provisioning pass opened. */
static void s_on_driver_done(void *arg, size_t driver, const drv_call_t *call,
                             const drv_result_t *res)
{
    peer_daemon_t *self = arg;
    fulfil_done(self->fulfil, self->batch, driver, call, res);
}

/* Earliest lease end, for the expiry timer. */
static void s_refresh_next_end(peer_daemon_t *self)
{
    if (peer_store_next_end(self->store, &self->next_end_ms, &self->have_next_end) != CPN_OK)
        self->have_next_end = false;
}

/* A NOTICE (or its RESEND) for broker connection b (notice.h's send callback). */
static void s_notice_send(size_t b, const uint8_t *frame, size_t len, void *arg)
{
    peer_daemon_t *self = arg;
    int r = cpn_send(cpn_link_socket(self->links[b].link), frame, len);
    if (r != CPN_OK)
        log_debug("peer", "notice to %s not sent now: %s (it is re-sent)",
                  self->cfg->brokers[b].endpoint, cpn_errname(r));
}

/* Leases the drivers lost (peer_lease_lost, queued during a batch): revoked, each with its
 * NOTICE, now that no batch transaction is open; a driver tears down what is left. */
static void s_lost(peer_daemon_t *self)
{
    char id[CPN_NAME_MAX], why[CPN_REASON_MAX];
    bool any = false;
    while (peer_lease_take_lost(self->lease, id, why)) {
        if (peer_notice_lost(self->notice, id, CPN_E_CAPACITY_LOST, why) != CPN_OK)
            log_error("peer", "lease %s: not revoked (its driver reports it again)", id);
        any = true;
    }
    if (any && self->fulfil && fulfil_sweep(self->fulfil) != CPN_OK)
        log_error("peer", "cannot submit the teardowns of revoked leases");
    if (any)
        self->meter_armed = true; /* revoked: its final record is due */
}

/* Drained packages (cpn-peer --drain): 0 free, their leases revoked with a NOTICE. */
static void s_drains(peer_daemon_t *self)
{
    bool more = false;
    peer_notice_stats_t before, after;
    peer_notice_stats(self->notice, &before);
    if (peer_notice_drains(self->notice, &more) != CPN_OK)
        log_error("peer", "cannot apply the drains table");
    peer_notice_stats(self->notice, &after);
    if (after.revoked != before.revoked && self->fulfil && fulfil_sweep(self->fulfil) != CPN_OK)
        log_error("peer", "cannot submit the teardowns of revoked leases");
    if (after.revoked != before.revoked)
        self->meter_armed = true;
    /* More leases than one pass revokes: the next pass comes at once. */
    self->next_drain_mono = cpn_mono_ms() + (more ? 0 : PEER_DRAIN_POLL_MS);
}

int peer_daemon_new(peer_config_t **cfg_p, peer_daemon_t **out)
{
    int r;
    peer_daemon_t *self = calloc(1, sizeof *self);
    *out = NULL;
    if (!self)
        return CPN_E_NOMEM;
    self->cfg = *cfg_p;
    *cfg_p = NULL;
    const peer_config_t *cfg = self->cfg;
    if ((r = cpn_identity_load(cfg->key_path, &self->id)) != CPN_OK) {
        log_error("peer", "key %s: %s", cfg->key_path, cpn_strerror(r));
        goto out;
    }
    if ((r = peer_store_open(cfg->database, &self->store)) != CPN_OK ||
        (r = peer_sender_init(&self->sender, self->id, self->store)) != CPN_OK)
        goto out;
    self->inv = peer_inventory_new(cfg->packages, cfg->floors, cfg->n_packages);
    if (self->inv && cfg->n_workload > 0 &&
        (r = peer_inventory_set_mix(self->inv, cfg->workload, cfg->workload_weight,
                                    cfg->n_workload)) != CPN_OK) {
        log_error("peer", "workload: %s", cpn_strerror(r)); /* checked at load: memory */
        goto out;
    }
    self->batch = calloc(1, sizeof *self->batch);
    if (!self->inv || !self->batch ||
        !(self->lease = peer_lease_new(cfg, self->id, self->inv, self->store, &self->sender))) {
        r = CPN_E_NOMEM;
        goto out;
    }
    if (cfg->n_drivers > 0 &&
        (!(self->prov = provision_new(cfg->drivers, cfg->n_drivers, s_on_driver_done, self)) ||
         !(self->fulfil = fulfil_new(cfg, self->store, self->lease, self->prov)))) {
        r = CPN_E_NOMEM;
        goto out;
    }
    peer_lease_set_provision(self->lease, self->prov);
    size_t ad_len = 0;
    if ((r = advertise_check_size(cfg, self->inv, cpn_limits_default.max_frame, &ad_len)) !=
        CPN_OK) {
        log_error("peer",
                  "the AD of %zu packages would take up to %zu bytes, above the frame "
                  "limit of %zu: split the packages over several peers",
                  cfg->n_packages, ad_len, cpn_limits_default.max_frame);
        goto out;
    }
    /* Leases that ended while the peer was down end now; the rest hold their units. */
    size_t expired = 0;
    if ((r = peer_lease_expire(self->lease, cpn_now_ms(), &expired)) != CPN_OK ||
        (r = peer_lease_recount(self->lease)) != CPN_OK)
        goto out;
    if ((r = peer_notice_new(cfg, self->id, self->inv, self->store, &self->sender, s_notice_send,
                             self, &self->notice)) != CPN_OK ||
        (r = peer_store_meta_set(self->store, PEER_META_PID, (uint64_t)getpid())) != CPN_OK ||
        (r = peer_meter_new(self->store, &self->sender, cfg->usage_interval_s * 1000u,
                            &self->meter)) != CPN_OK)
        goto out;
    peer_notice_set_meter(self->notice, self->meter);
    peer_lease_set_meter(self->lease, self->meter);
    self->meter_armed = true; /* leases of before a restart may be due */
    /* After a kill -9 at any point: what the store says is due, and what the drivers hold. */
    if (self->fulfil && (r = fulfil_reconcile(self->fulfil)) != CPN_OK)
        goto out;
    s_refresh_next_end(self);
    {
        char kid[CPN_KID_LEN];
        cpn_key_id(cpn_identity_pk(self->id), kid);
        log_info("peer", "%s (%s): %zu package(s), %zu broker(s), seq from %" PRIu64, cfg->name,
                 kid, cfg->n_packages, cfg->n_brokers, self->sender.signer.last_seq);
        for (size_t i = 0; i < cfg->n_packages; i++)
            log_info("peer", "package %s: %" PRIu32 " of %" PRIu32 " free", cfg->packages[i].id,
                     peer_inventory_free(self->inv, i), cfg->packages[i].total);
    }
    if (!(self->zctx = zmq_ctx_new())) {
        r = CPN_E_IO;
        goto out;
    }
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        if ((r = s_link_open(self, i)) != CPN_OK)
            goto out;
        self->links[i].hello_due = true;
    }
    self->started_ms = cpn_now_ms();
    if (cfg->http[0] && (r = peer_obs_new(cfg->http, &self->obs)) != CPN_OK)
        goto out;
    r = CPN_OK;
out:
    if (r != CPN_OK)
        peer_daemon_destroy(&self);
    *out = self;
    return r;
}

void peer_daemon_destroy(peer_daemon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_daemon_t *self = *self_p;
    peer_obs_destroy(&self->obs); /* first: its thread may be waiting on our loop */
    for (size_t i = 0; i < PEER_BROKERS_MAX; i++)
        cpn_link_destroy(&self->links[i].link);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    if (self->batch)
        peer_batch_clear(self->batch);
    free(self->batch);
    peer_notice_destroy(&self->notice);
    peer_meter_destroy(&self->meter);
    fulfil_destroy(&self->fulfil);
    provision_destroy(&self->prov); /* kills children: their calls re-run at the next start */
    peer_lease_destroy(&self->lease);
    peer_inventory_destroy(&self->inv);
    peer_store_destroy(&self->store);
    cpn_identity_destroy(&self->id);
    peer_config_destroy(&self->cfg);
    free(self);
    *self_p = NULL;
}

/* Build one message and send it to broker i (or to all if i == SIZE_MAX). */
static void s_send_body(peer_daemon_t *self, size_t i, cpn_msg_type_t type, const void *body)
{
    size_t from = i == SIZE_MAX ? 0 : i, to = i == SIZE_MAX ? self->cfg->n_brokers : i + 1;
    for (size_t k = from; k < to; k++) {
        uint8_t *frame = NULL;
        size_t len = 0;
        /* Each broker gets its own seq: a broker may relay what it got to the others. */
        if (peer_sender_build(&self->sender, type, body, &frame, &len) != CPN_OK) {
            log_error("peer", "cannot build %s", cpn_msg_name(type));
            return;
        }
        int r = cpn_send(cpn_link_socket(self->links[k].link), frame, len);
        if (r != CPN_OK)
            log_debug("peer", "%s to %s not sent: %s", cpn_msg_name(type),
                      self->cfg->brokers[k].endpoint, cpn_errname(r));
        free(frame);
    }
}

static void s_advertise(peer_daemon_t *self, size_t i)
{
    cpn_ad_t ad;
    uint64_t mono = cpn_mono_ms();
    if (mono >= self->next_resummarize_mono) {
        peer_inventory_resummarize(self->inv);
        self->next_resummarize_mono = mono + PEER_RESUMMARIZE_MS;
    }
    advertise_ad(self->cfg, self->inv, &ad);
    s_send_body(self, i, CPN_MSG_AD, &ad);
    if (i == SIZE_MAX) {
        self->ads_sent++;
        self->ad_version = peer_inventory_version(self->inv);
        self->ad_shared = peer_inventory_shared_version(self->inv);
        self->last_ad_mono = cpn_mono_ms();
        self->next_refresh_mono = self->last_ad_mono + self->cfg->refresh_s * 1000u;
    }
}

static void s_hello(peer_daemon_t *self, size_t i)
{
    cpn_hello_t hello;
    advertise_hello(self->cfg, &hello);
    s_send_body(self, i, CPN_MSG_HELLO, &hello);
    s_advertise(self, i);
}

/* What the link saw: a connection up (say HELLO), a connection lost. */
static void s_link_tick(peer_daemon_t *self, size_t i, uint64_t now)
{
    s_link_t *l = &self->links[i];
    int ev = cpn_link_tick(l->link, now);
    if (ev & CPN_LINK_DOWN) {
        log_warn("peer", "lost %s; leases keep running, reconnecting",
                 self->cfg->brokers[i].endpoint);
        l->connected = false;
    }
    if (ev & CPN_LINK_UP) {
        log_info("peer", "connected to %s", self->cfg->brokers[i].endpoint);
        l->connected = true;
        l->hello_due = true;
        peer_notice_resend(self->notice); /* what this broker may have missed */
    }
}

static void s_batch_finish(peer_daemon_t *self, size_t taken);

/* One batch: up to PEER_BATCH_MAX frames taken round-robin from the brokers, decided, one
 * commit, then every reply sent. */
static void s_batch(peer_daemon_t *self)
{
    peer_batch_t *batch = self->batch;
    size_t taken = 0;
    peer_lease_batch_begin(self->lease, batch);
    for (bool more = true; more && taken < PEER_BATCH_MAX;) {
        more = false;
        for (size_t i = 0; i < self->cfg->n_brokers && taken < PEER_BATCH_MAX; i++) {
            uint8_t *frame = NULL;
            size_t len = 0;
            int r = cpn_recv(cpn_link_socket(self->links[i].link), 0, NULL, NULL, &frame, &len);
            if (r == CPN_E_TIMEOUT)
                continue;
            more = true;
            taken++;
            if (r != CPN_OK) {
                self->recv_errors++;
                log_warn("peer", "receive from %s: %s", self->cfg->brokers[i].endpoint,
                         cpn_errname(r));
                continue;
            }
            peer_lease_handle(self->lease, batch, i, frame, len);
            free(frame);
        }
    }
    if (taken == 0)
        return;
    s_batch_finish(self, taken);
}

/* Commit the batch, then send its replies. */
static void s_batch_finish(peer_daemon_t *self, size_t taken)
{
    peer_batch_t *batch = self->batch;
    bool wrote = batch->wrote;
    uint64_t t0 = self->obs && wrote ? cpn_mono_us() : 0; /* the clock only while observed */
    if (peer_lease_batch_end(self->lease, batch) != CPN_OK)
        log_error("peer", "batch of %zu not committed", taken);
    if (t0)
        cpn_hist_observe(&self->commit, cpn_mono_us() - t0);
    /* A slice placed or given back moves which package the brokers should pick next: they
     * get the AD before the answers (same connection, so in order), or the next requests are
     * matched on the old summary and refused `no-units` or placed worse. One AD a batch;
     * whole-unit packages are counted by the brokers themselves and keep the coalescing. */
    if (peer_inventory_shared_version(self->inv) != self->ad_shared)
        s_advertise(self, SIZE_MAX);
    for (size_t k = 0; k < batch->n; k++) {
        peer_reply_t *rep = &batch->replies[k];
        if (!rep->frame)
            continue;
        int r = cpn_send(cpn_link_socket(self->links[rep->broker].link), rep->frame, rep->len);
        if (r != CPN_OK)
            log_warn("peer", "reply %s to %s not sent: %s", rep->ref,
                     self->cfg->brokers[rep->broker].endpoint, cpn_errname(r));
    }
    if (wrote || batch->changed) {
        s_refresh_next_end(self);
        self->meter_armed = true; /* a lease granted, renewed or released */
    }
    peer_batch_clear(batch);
}

/* A scrape waits: a copy of the counters, the inventory and the links for it. */
static void s_observe(peer_daemon_t *self)
{
    peer_obs_snapshot_t *s = calloc(1, sizeof *s);
    if (s) {
        snprintf(s->name, sizeof s->name, "%s", self->cfg->name);
        cpn_key_id(cpn_identity_pk(self->id), s->kid);
        s->started_ms = self->started_ms;
        peer_lease_stats(self->lease, &s->leases);
        for (int i = 1; i < PEER_ERR_SLOTS; i++)
            s->refused[i] = peer_lease_refused(self->lease, -i);
        s->recv_errors = self->recv_errors;
        s->ads_sent = self->ads_sent;
        s->store_ok = peer_store_count(self->store, PEER_LEASE_ACTIVE, &s->active) == CPN_OK;
        s->commit = self->commit;
        s->n_pkgs = peer_inventory_count(self->inv);
        for (size_t i = 0; i < s->n_pkgs && i < CPN_PACKAGES_MAX; i++) {
            const cpn_package_t *p = peer_inventory_get(self->inv, i);
            peer_obs_pkg_t *o = &s->pkgs[i];
            snprintf(o->id, sizeof o->id, "%s", p->id);
            snprintf(o->model, sizeof o->model, "%s",
                     p->accel.count && p->accel.model[0] ? p->accel.model : "none");
            snprintf(o->region, sizeof o->region, "%s", p->region);
            o->free = peer_inventory_free(self->inv, i);
            o->total = p->total;
        }
        s->n_brokers = self->cfg->n_brokers;
        for (size_t i = 0; i < s->n_brokers; i++) {
            snprintf(s->brokers[i].endpoint, sizeof s->brokers[i].endpoint, "%s",
                     self->cfg->brokers[i].endpoint);
            s->brokers[i].connected = cpn_link_is_up(self->links[i].link);
        }
    } else
        log_warn("http", "no memory for a snapshot: the scrape gets 503");
    peer_obs_publish(self->obs, &s);
}

/* The drivers' children: I/O, ends, retries; their outcomes committed in one batch. */
static void s_provision(peer_daemon_t *self)
{
    if (!self->prov)
        return;
    peer_batch_t *batch = self->batch;
    /* Twice: calls submitted after the first commit may start at once, and a call that ends
     * in the second round (a child already done) writes its outcome: inside a batch too, or
     * the store would be left in an open transaction. */
    for (int round = 0; round < 2; round++) {
        peer_lease_batch_begin(self->lease, batch);
        provision_run(self->prov, cpn_mono_ms());
        if (batch->n || batch->wrote || batch->n_calls)
            s_batch_finish(self, batch->n);
    }
}

static int s_timeout(const peer_daemon_t *self)
{
    uint64_t now = cpn_mono_ms(), wall = cpn_now_ms();
    uint64_t t = PEER_POLL_MAX_MS;
    if (self->next_refresh_mono <= now)
        return 0;
    if (self->next_refresh_mono - now < t)
        t = self->next_refresh_mono - now;
    if (peer_inventory_version(self->inv) != self->ad_version) {
        uint64_t due = self->last_ad_mono + PEER_AD_COALESCE_MS;
        if (due <= now)
            return 0;
        if (due - now < t)
            t = due - now;
    }
    uint64_t nt = peer_notice_timeout(self->notice, now);
    if (nt < t)
        t = nt;
    if (self->meter_armed) {
        if (self->next_meter_mono <= now)
            return 0;
        if (self->next_meter_mono - now < t)
            t = self->next_meter_mono - now;
    }
    if (self->next_drain_mono <= now)
        return 0;
    if (self->next_drain_mono - now < t)
        t = self->next_drain_mono - now;
    if (self->have_next_end) {
        if (self->next_end_ms <= wall)
            return 0;
        if (self->next_end_ms - wall < t)
            t = self->next_end_ms - wall;
    }
    for (size_t i = 0; i < self->cfg->n_brokers; i++) {
        int lt = cpn_link_timeout_ms(self->links[i].link, now);
        if (lt >= 0 && (uint64_t)lt < t)
            t = (uint64_t)lt;
    }
    if (self->prov) {
        int pt = provision_timeout_ms(self->prov, now);
        if (pt >= 0 && (uint64_t)pt < t)
            t = (uint64_t)pt;
    }
    int wd = cpn_service_watchdog_timeout(now); /* -1 outside systemd's watchdog */
    if (wd >= 0 && (uint64_t)wd < t)
        t = (uint64_t)wd;
    return (int)t;
}

/* What `systemctl status` shows between events. */
static void s_service_status(peer_daemon_t *self, uint64_t mono)
{
    if (mono < self->next_status_mono)
        return;
    self->next_status_mono = mono + PEER_STATUS_MS;
    size_t up = 0;
    for (size_t i = 0; i < self->cfg->n_brokers; i++)
        up += self->links[i].connected;
    peer_lease_stats_t st;
    peer_lease_stats(self->lease, &st);
    cpn_service_status("%s: %zu of %zu brokers connected; granted %" PRIu64 ", renewed %" PRIu64
                       ", released %" PRIu64 ", expired %" PRIu64 ", refused %" PRIu64,
                       self->cfg->name, up, self->cfg->n_brokers, st.granted, st.renewed,
                       st.released, st.expired, peer_lease_refused_total(self->lease));
}

/* Make the USAGE records due (their own committed transaction) and send them at once; stop
 * ticking when no lease is metered, until a batch writes a lease again. */
static void s_meter(peer_daemon_t *self, uint64_t mono)
{
    if (!self->meter_armed || mono < self->next_meter_mono)
        return;
    uint64_t tick = self->cfg->usage_interval_s * 1000u, open = 1;
    self->next_meter_mono = mono + (tick < PEER_METER_TICK_MS ? tick : PEER_METER_TICK_MS);
    size_t made = 0;
    if (peer_meter_tick(self->meter, cpn_now_ms(), &made) != CPN_OK) {
        log_error("peer", "cannot make the USAGE records due (tried again)");
        return;
    }
    if (made > 0)
        peer_notice_usage(self->notice);
    else if (peer_meter_open(self->meter, &open) == CPN_OK && open == 0)
        self->meter_armed = false;
}

int peer_daemon_run(peer_daemon_t *self, volatile sig_atomic_t *stop,
                    volatile sig_atomic_t *wake)
{
    size_t nb = self->cfg->n_brokers;
    zmq_pollitem_t items[2 * PEER_BROKERS_MAX + PROVISION_FDS_MAX];
    int fds[PROVISION_FDS_MAX];
    short fd_events[PROVISION_FDS_MAX];
    /* The first AD goes out at once, queued until each connection is up. */
    for (size_t i = 0; i < nb; i++)
        self->links[i].hello_due = false;
    s_drains(self); /* a package drained while we were down advertises 0 from the first AD */
    s_hello(self, SIZE_MAX);
    /* The store is open, leases that ended are expired, the links are dialling (a peer
     * connects outward: there is nothing to bind). */
    cpn_service_init(cpn_mono_ms());
    cpn_service_ready("%s: %zu packages, advertising to %zu brokers", self->cfg->name,
                      self->cfg->n_packages, nb);
    self->next_status_mono = cpn_mono_ms() + PEER_STATUS_MS;
    while (!*stop) {
        /* A link's socket changes when it is rebuilt: the items are taken afresh each pass. */
        memset(items, 0, sizeof items);
        for (size_t i = 0; i < nb; i++) {
            items[i].socket = cpn_link_socket(self->links[i].link);
            items[i].events = ZMQ_POLLIN;
            items[nb + i].socket = cpn_link_monitor(self->links[i].link);
            items[nb + i].events = ZMQ_POLLIN;
        }
        /* The drivers' pipes: POLLIN and POLLOUT have ZMQ_POLLIN's and ZMQ_POLLOUT's meaning. */
        size_t nf = self->prov ? provision_fds(self->prov, fds, fd_events, PROVISION_FDS_MAX) : 0;
        for (size_t k = 0; k < nf; k++) {
            items[2 * nb + k].fd = fds[k];
            items[2 * nb + k].events = fd_events[k] == POLLOUT ? ZMQ_POLLOUT : ZMQ_POLLIN;
        }
        int rc = zmq_poll(items, (int)(2 * nb + nf), s_timeout(self));
        if (rc < 0 && errno != EINTR) {
            log_error("peer", "poll: %s", zmq_strerror(errno));
            return CPN_E_IO;
        }
        if (*stop)
            break;
        uint64_t mono = cpn_mono_ms();
        cpn_service_watchdog(mono); /* the loop turns: this pass got here */
        s_service_status(self, mono);
        for (size_t i = 0; i < nb; i++)
            s_link_tick(self, i, mono);
        s_batch(self);
        s_provision(self);
        s_lost(self);
        uint64_t wall = cpn_now_ms();
        if (self->have_next_end && self->next_end_ms <= wall) {
            size_t expired = 0;
            if (peer_lease_expire(self->lease, wall, &expired) != CPN_OK)
                log_error("peer", "cannot expire leases");
            /* Leases with a driver keep their units until it tore them down. */
            if (expired > 0 && self->fulfil && fulfil_sweep(self->fulfil) != CPN_OK)
                log_error("peer", "cannot submit the teardowns of expired leases");
            s_refresh_next_end(self);
            self->meter_armed = true;
        }
        if ((wake && *wake) || cpn_mono_ms() >= self->next_drain_mono) {
            if (wake)
                *wake = 0;
            s_drains(self);
        }
        s_meter(self, cpn_mono_ms());
        peer_notice_tick(self->notice, cpn_mono_ms());
        if (self->fulfil)
            (void)fulfil_tick(self->fulfil, cpn_mono_ms());
        for (size_t i = 0; i < nb; i++)
            if (self->links[i].hello_due) {
                self->links[i].hello_due = false;
                s_hello(self, i);
            }
        uint64_t now = cpn_mono_ms();
        if (now >= self->next_refresh_mono ||
            (peer_inventory_version(self->inv) != self->ad_version &&
             now >= self->last_ad_mono + PEER_AD_COALESCE_MS))
            s_advertise(self, SIZE_MAX);
        if (self->obs && peer_obs_wanted(self->obs))
            s_observe(self);
    }
    log_info("peer", "stopping: withdrawing from %zu broker(s)", nb);
    cpn_service_stopping();
    cpn_withdraw_t w;
    advertise_withdraw("shutdown", &w);
    s_send_body(self, SIZE_MAX, CPN_MSG_WITHDRAW, &w);
    int linger = PEER_WITHDRAW_LINGER_MS;
    for (size_t i = 0; i < nb; i++)
        cpn_link_linger(self->links[i].link, linger);
    peer_lease_stats_t st;
    peer_lease_stats(self->lease, &st);
    peer_notice_stats_t ns;
    peer_notice_stats(self->notice, &ns);
    log_info("peer",
             "granted %" PRIu64 ", retried %" PRIu64 ", renewed %" PRIu64 ", released %" PRIu64
             ", expired %" PRIu64 ", revoked %" PRIu64 ", refused %" PRIu64,
             st.granted, st.retried, st.renewed, st.released, st.expired, ns.revoked,
             peer_lease_refused_total(self->lease));
    log_info("peer", "notices sent %" PRIu64 ", re-sent %" PRIu64 ", receipts %" PRIu64,
             ns.sent, ns.resent, st.notices_acked);
    log_info("peer", "usage records sent %" PRIu64 " (re-sends included), taken %" PRIu64,
             ns.usage_sent, st.usage_acked);
    static const int codes[] = {
#define S_X(name, val, slug, reason) (val),
        CPN_ERRORS(S_X)
#undef S_X
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i] != CPN_OK && peer_lease_refused(self->lease, codes[i]) > 0)
            log_info("peer", "refused %s: %" PRIu64, cpn_errname(codes[i]),
                     peer_lease_refused(self->lease, codes[i]));
    return CPN_OK;
}
