/* notice.c - revoke, sign, record, send and re-send NOTICEs (notice.h). */
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "msg.h"
#include "msg_typed.h"
#include "notice_store.h"

struct peer_notice {
    const peer_config_t *cfg;
    const cpn_identity_t *id;
    peer_inventory_t *inv;
    peer_store_t *store;
    peer_sender_t *sender;
    peer_notice_send_fn send;
    void *arg;
    uint64_t next_resend_mono;
    peer_notice_stats_t stats;
    peer_meter_t *meter; /* NULL: no USAGE records to deliver */
};

int peer_notice_new(const peer_config_t *cfg, const cpn_identity_t *id, peer_inventory_t *inv,
                    peer_store_t *store, peer_sender_t *sender, peer_notice_send_fn send, void *arg,
                    peer_notice_t **out)
{
    *out = NULL;
    int r = peer_nstore_init(store);
    if (r != CPN_OK)
        return r;
    peer_notice_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    *self = (peer_notice_t){.cfg = cfg,
                            .id = id,
                            .inv = inv,
                            .store = store,
                            .sender = sender,
                            .send = send,
                            .arg = arg};
    *out = self;
    return CPN_OK;
}

void peer_notice_destroy(peer_notice_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

/* The configured broker connection whose key is `key`; SIZE_MAX if none. */
static size_t s_broker_index(const peer_notice_t *self, const uint8_t key[CPN_PK_LEN])
{
    for (size_t i = 0; i < self->cfg->n_brokers; i++)
        if (sodium_memcmp(self->cfg->brokers[i].key, key, CPN_PK_LEN) == 0)
            return i;
    return SIZE_MAX;
}

/* The broker that claimed a lease: the signer of the CLAIM inside our own stored LEASE. */
static int s_claimer(const peer_lease_row_t *row, uint8_t broker[CPN_PK_LEN])
{
    cpn_env_t lenv, cenv;
    cpn_lease_t lease;
    if (cpn_env_parse(row->frame, row->frame_len, &cpn_limits_default, &lenv) != CPN_OK ||
        cpn_lease_decode(&lenv, &cpn_limits_default, &lease) != CPN_OK ||
        cpn_env_parse(lease.claim.ptr, lease.claim.len, &cpn_limits_default, &cenv) != CPN_OK ||
        cenv.type != CPN_MSG_CLAIM) {
        log_error("notice", "stored frame of %s unreadable", row->lease_id);
        return CPN_E_DB;
    }
    memcpy(broker, cenv.from, CPN_PK_LEN);
    return CPN_OK;
}

/* Revoke the row and record its NOTICE in one transaction; *frame_p the NOTICE (caller
 * frees) once committed. */
static int s_revoke(peer_notice_t *self, peer_lease_row_t *row, int code, const char *reason,
                    const uint8_t broker[CPN_PK_LEN], uint8_t **frame_p, size_t *len)
{
    uint64_t now = cpn_now_ms(), old_end = row->end_ms;
    cpn_notice_t n;
    memset(&n, 0, sizeof n);
    n.lease = (mp_bytes_t){row->frame, row->frame_len};
    snprintf(n.lease_id, sizeof n.lease_id, "%s", row->lease_id);
    memcpy(n.tenant, row->tenant, CPN_PK_LEN);
    n.code = code;
    snprintf(n.reason, sizeof n.reason, "%s", reason ? reason : cpn_strerror(code));
    n.effective_ms = now;
    n.units = 0; /* this version ends the lease; a shrink would say what is left */
    int r = peer_store_begin(self->store);
    if (r != CPN_OK)
        return r;
    row->state = PEER_LEASE_REVOKED;
    row->end_ms = now < old_end ? now : old_end;
    /* A lease served by a driver keeps its units until the driver tore it down (lease_row.h:
     * the teardown sweep calls the driver's release). */
    row->teardown = row->driver[0] != '\0';
    if ((r = peer_sender_build(self->sender, CPN_MSG_NOTICE, &n, frame_p, len)) != CPN_OK ||
        (r = peer_store_update(self->store, row)) != CPN_OK ||
        (r = peer_nstore_put(self->store, row->lease_id, broker, *frame_p, *len, old_end)) !=
            CPN_OK ||
        (r = peer_store_commit(self->store)) != CPN_OK) {
        peer_store_rollback(self->store);
        peer_sender_rollback(self->sender);
        free(*frame_p);
        *frame_p = NULL;
        return r;
    }
    peer_sender_commit(self->sender);
    return CPN_OK;
}

int peer_notice_lost(peer_notice_t *self, const char *lease_id, int code, const char *reason)
{
    peer_lease_row_t row;
    uint8_t broker[CPN_PK_LEN], *frame = NULL;
    size_t len = 0;
    memset(&row, 0, sizeof row);
    int r = peer_store_get(self->store, lease_id, &row);
    if (r == CPN_E_NO_LEASE || (r == CPN_OK && row.state != PEER_LEASE_ACTIVE)) {
        r = CPN_OK; /* nothing live to end: said before, or never granted */
        goto out;
    }
    if (r != CPN_OK || (r = s_claimer(&row, broker)) != CPN_OK ||
        (r = s_revoke(self, &row, code, reason, broker, &frame, &len)) != CPN_OK) {
        log_error("notice", "cannot revoke %s: %s", lease_id, cpn_errname(r));
        goto out;
    }
    int pkg = peer_inventory_find(self->inv, row.package);
    if (pkg >= 0 && !row.teardown)
        peer_inventory_release(self->inv, (size_t)pkg, row.units);
    self->stats.revoked++;
    size_t b = s_broker_index(self, broker);
    char kid[CPN_KID_LEN];
    cpn_key_id(broker, kid);
    log_warn("notice", "revoked %s (%" PRIu32 " x %s): %s; NOTICE to broker %s", lease_id,
             row.units, row.package, reason ? reason : cpn_errname(code), kid);
    if (b == SIZE_MAX)
        log_warn("notice", "broker %s of lease %s is not configured: the notice waits for it", kid,
                 lease_id);
    else {
        self->send(b, frame, len, self->arg);
        self->stats.sent++;
    }
out:
    free(frame);
    peer_lease_row_clear(&row);
    return r;
}

/* ---- drains ---- */

typedef struct {
    peer_notice_t *self;
    bool *drained; /* per inventory package */
    char (*ids)[CPN_NAME_MAX];
    size_t n_ids;
} s_drain_ctx_t;

static void s_on_drained(const char *package, void *arg)
{
    s_drain_ctx_t *c = arg;
    int i = peer_inventory_find(c->self->inv, package);
    if (i >= 0)
        c->drained[i] = true;
    else
        log_warn("notice", "drained package %s is not configured: nothing to do", package);
}

static void s_on_active(const char *lease_id, void *arg)
{
    s_drain_ctx_t *c = arg;
    if (c->n_ids < PEER_REVOKE_BATCH)
        snprintf(c->ids[c->n_ids++], CPN_NAME_MAX, "%s", lease_id);
}

int peer_notice_drains(peer_notice_t *self, bool *more)
{
    size_t n = peer_inventory_count(self->inv);
    s_drain_ctx_t c = {.self = self};
    int r = CPN_E_NOMEM;
    if (more)
        *more = false;
    c.drained = calloc(n ? n : 1, sizeof *c.drained);
    c.ids = calloc(PEER_REVOKE_BATCH, sizeof *c.ids);
    if (!c.drained || !c.ids)
        goto out;
    if ((r = peer_nstore_drains(self->store, s_on_drained, &c)) != CPN_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (c.drained[i] != peer_inventory_drained(self->inv, i))
            log_info("notice", "package %s %s", peer_inventory_get(self->inv, i)->id,
                     c.drained[i] ? "drained: 0 units advertised, its leases revoked"
                                  : "undrained: advertised again");
        peer_inventory_set_drained(self->inv, i, c.drained[i]);
        /* Collected first, revoked after: no write while the listing statement runs. */
        if (c.drained[i] &&
            (r = peer_nstore_active_leases(self->store, peer_inventory_get(self->inv, i)->id,
                                           PEER_REVOKE_BATCH, s_on_active, &c)) != CPN_OK)
            goto out;
    }
    for (size_t k = 0; k < c.n_ids; k++) {
        if ((r = peer_notice_lost(self, c.ids[k], CPN_E_CAPACITY_LOST,
                                  "package drained by the peer's operator")) != CPN_OK)
            goto out;
    }
    if (more)
        *more = c.n_ids == PEER_REVOKE_BATCH;
    r = CPN_OK;
out:
    free(c.drained);
    free(c.ids);
    return r;
}

/* ---- re-sending ---- */

static void s_resend_one(const char *lease_id, const uint8_t broker[CPN_PK_LEN],
                         const uint8_t *frame, size_t len, void *arg)
{
    peer_notice_t *self = arg;
    size_t b = s_broker_index(self, broker);
    if (b == SIZE_MAX)
        return;
    /* The NOTICE keeps its bytes (and its seq, which the broker's replay guard has passed by
     * now): a RESEND carries it in a fresh envelope, as for a stored LEASE. */
    cpn_resend_t rs = {.frame = {frame, len}};
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (peer_sender_build(self->sender, CPN_MSG_RESEND, &rs, &out, &out_len) != CPN_OK) {
        log_error("notice", "cannot sign the re-sent notice of %s", lease_id);
        return;
    }
    self->send(b, out, out_len, self->arg);
    self->stats.resent++;
    log_debug("notice", "re-sent the notice of %s", lease_id);
    free(out);
}

/* ---- USAGE records: delivered like notices, to the broker that claimed the lease ---- */

void peer_notice_set_meter(peer_notice_t *self, peer_meter_t *meter)
{
    self->meter = meter;
}

/* One record handed out by the meter: to the lease's claiming broker, in a METER (a fresh
 * envelope: the record keeps its bytes and seq), with the LEASE along for record 1. */
static void s_usage_one(const char *lease_id, uint32_t n, const uint8_t *frame, size_t len,
                        void *arg)
{
    peer_notice_t *self = arg;
    peer_lease_row_t row;
    uint8_t broker[CPN_PK_LEN], *out = NULL;
    size_t b = SIZE_MAX, out_len = 0;
    memset(&row, 0, sizeof row);
    if (peer_store_get(self->store, lease_id, &row) == CPN_OK &&
        s_claimer(&row, broker) == CPN_OK)
        b = s_broker_index(self, broker);
    if (b == SIZE_MAX) {
        log_debug("meter", "record %" PRIu32 " of %s: its broker is not configured now", n,
                  lease_id);
        goto out;
    }
    cpn_meter_t m = {.usage = {frame, len}};
    if (n == 1)
        m.lease = (mp_bytes_t){row.frame, row.frame_len};
    int r = peer_sender_build(self->sender, CPN_MSG_METER, &m, &out, &out_len);
    if (r != CPN_OK) {
        log_error("meter", "cannot sign the METER of record %" PRIu32 " of %s: %s", n, lease_id,
                  cpn_errname(r));
        goto out;
    }
    self->send(b, out, out_len, self->arg);
    self->stats.usage_sent++;
out:
    free(out);
    peer_lease_row_clear(&row);
}

void peer_notice_usage(peer_notice_t *self)
{
    size_t handed = 0;
    if (self->meter && peer_meter_pending(self->meter, cpn_now_ms(), PEER_NOTICE_RESEND_MS,
                                          s_usage_one, self, &handed) != CPN_OK)
        log_error("meter", "cannot list the USAGE records to send");
}

void peer_notice_resend(peer_notice_t *self)
{
    uint64_t gone = 0;
    if (peer_nstore_pending(self->store, cpn_now_ms(), PEER_NOTICE_BATCH, s_resend_one, self) !=
        CPN_OK)
        log_error("notice", "cannot list the notices to re-send");
    if (peer_nstore_prune(self->store, cpn_now_ms(), &gone) != CPN_OK)
        log_error("notice", "cannot prune the notices");
    else if (gone)
        log_info("notice", "%" PRIu64 " notice(s) of leases past their end forgotten", gone);
    peer_notice_usage(self);
    self->next_resend_mono = cpn_mono_ms() + PEER_NOTICE_RESEND_MS;
}

void peer_notice_tick(peer_notice_t *self, uint64_t now_mono)
{
    if (now_mono >= self->next_resend_mono)
        peer_notice_resend(self);
}

uint64_t peer_notice_timeout(const peer_notice_t *self, uint64_t now_mono)
{
    return self->next_resend_mono > now_mono ? self->next_resend_mono - now_mono : 0;
}

void peer_notice_stats(const peer_notice_t *self, peer_notice_stats_t *out)
{
    *out = self->stats;
}
