/* fulfil.c - reconcile the store with the drivers: at start, every sweep, and on their answers. */
#include "fulfil.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct peer_fulfil {
    const peer_config_t *cfg;
    peer_store_t *store;
    peer_lease_t *lease;
    provision_t *prov;
    uint64_t next_sweep_mono;
    uint64_t *next_inventory_mono; /* per driver */
    fulfil_stats_t stats;
};

peer_fulfil_t *fulfil_new(const peer_config_t *cfg, peer_store_t *store, peer_lease_t *lease,
                          provision_t *prov)
{
    peer_fulfil_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->store = store;
    self->lease = lease;
    self->prov = prov;
    self->next_inventory_mono = calloc(cfg->n_drivers ? cfg->n_drivers : 1, sizeof(uint64_t));
    if (!self->next_inventory_mono)
        fulfil_destroy(&self);
    return self;
}

void fulfil_destroy(peer_fulfil_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->next_inventory_mono);
    free(*self_p);
    *self_p = NULL;
}

/* What a driven row needs now: provisioning -> grant, due teardown -> release, and (at start
 * only) active -> status. */
typedef struct {
    peer_fulfil_t *self;
    bool start;
    size_t submitted, deferred;
} s_walk_t;

static int s_due(const peer_lease_row_t *row, void *arg)
{
    s_walk_t *w = arg;
    drv_verb_t verb;
    if (row->state == PEER_LEASE_PROVISIONING)
        verb = DRV_GRANT;
    else if (row->teardown)
        verb = DRV_RELEASE;
    else if (row->state == PEER_LEASE_ACTIVE && w->start)
        verb = DRV_STATUS;
    else
        return 0;
    if (peer_lease_submit(w->self->lease, row, verb) == CPN_OK)
        w->submitted++;
    else
        w->deferred++; /* the next sweep */
    return 0;
}

static int s_walk(peer_fulfil_t *self, bool start)
{
    s_walk_t w = {.self = self, .start = start};
    int r = peer_store_each_driven(self->store, s_due, &w);
    if (w.submitted || w.deferred)
        log_info("fulfil", "%s: %zu driver call(s) submitted, %zu deferred",
                 start ? "reconciling" : "sweep", w.submitted, w.deferred);
    return r;
}

int fulfil_reconcile(peer_fulfil_t *self)
{
    int r = s_walk(self, true);
    for (size_t d = 0; r == CPN_OK && d < self->cfg->n_drivers; d++) {
        drv_call_t call;
        memset(&call, 0, sizeof call);
        call.verb = DRV_LIST;
        if (provision_submit(self->prov, d, &call) != CPN_OK)
            log_warn("fulfil", "driver %s: list not submitted", self->cfg->drivers[d].name);
    }
    self->next_sweep_mono = 0;
    return r;
}

int fulfil_sweep(peer_fulfil_t *self)
{
    return s_walk(self, false);
}

uint64_t fulfil_tick(peer_fulfil_t *self, uint64_t now)
{
    if (self->next_sweep_mono == 0)
        self->next_sweep_mono = now + PEER_SWEEP_MS;
    if (now >= self->next_sweep_mono) {
        if (fulfil_sweep(self) != CPN_OK)
            log_error("fulfil", "sweep failed");
        self->next_sweep_mono = now + PEER_SWEEP_MS;
    }
    uint64_t next = self->next_sweep_mono - now;
    for (size_t d = 0; d < self->cfg->n_drivers; d++) {
        uint64_t every = self->cfg->drivers[d].inventory_s * 1000u;
        if (every == 0)
            continue;
        if (now >= self->next_inventory_mono[d]) {
            drv_call_t call;
            memset(&call, 0, sizeof call);
            call.verb = DRV_INVENTORY;
            if (provision_submit(self->prov, d, &call) != CPN_OK)
                log_warn("fulfil", "driver %s: inventory not submitted",
                         self->cfg->drivers[d].name);
            self->next_inventory_mono[d] = now + every;
        }
        if (self->next_inventory_mono[d] - now < next)
            next = self->next_inventory_mono[d] - now;
    }
    return next;
}

/* The driver holds `id`: an orphan unless the store has it provisioning, active or due a
 * teardown (which releases it anyway). */
static void s_check_held(peer_fulfil_t *self, size_t driver, const char *id)
{
    peer_lease_row_t row;
    int r = peer_store_get(self->store, id, &row);
    if (r == CPN_OK && (row.state == PEER_LEASE_PROVISIONING || row.state == PEER_LEASE_ACTIVE ||
                        row.teardown)) {
        peer_lease_row_clear(&row);
        return;
    }
    if (r != CPN_OK && r != CPN_E_NO_LEASE) {
        log_error("fulfil", "list of %s: lookup of %s failed", self->cfg->drivers[driver].name,
                  id);
        return;
    }
    drv_call_t call;
    char hints[DRV_HINTS_MAX];
    if (r == CPN_OK) {
        peer_lease_call_of(&row, DRV_RELEASE, &call, hints);
        peer_lease_row_clear(&row);
    } else {
        memset(&call, 0, sizeof call); /* not ours at all: only its id is known */
        call.verb = DRV_RELEASE;
        snprintf(call.lease_id, sizeof call.lease_id, "%s", id);
    }
    self->stats.orphans++;
    log_warn("fulfil", "driver %s holds %s, which has no live lease: releasing it",
             self->cfg->drivers[driver].name, id);
    if (provision_submit(self->prov, driver, &call) != CPN_OK)
        log_warn("fulfil", "orphan %s: release not submitted (the next start tries again)", id);
}

static void s_status(peer_fulfil_t *self, peer_batch_t *batch, const drv_call_t *call,
                     const drv_result_t *res)
{
    peer_lease_row_t row;
    if (res->outcome != DRV_OK || res->present)
        return; /* present, or the driver cannot say: nothing to do now */
    if (peer_store_get(self->store, call->lease_id, &row) != CPN_OK)
        return;
    if (row.state == PEER_LEASE_ACTIVE) {
        self->stats.missing++;
        log_warn("fulfil", "lease %s: its resource is missing; recreating it", row.lease_id);
        if (peer_lease_submit(self->lease, &row, DRV_GRANT) != CPN_OK)
            peer_lease_lost(self->lease, batch, row.lease_id, "resource missing");
        else
            self->stats.recreated++;
    }
    peer_lease_row_clear(&row);
}

void fulfil_done(peer_fulfil_t *self, peer_batch_t *batch, size_t driver, const drv_call_t *call,
                 const drv_result_t *res)
{
    switch (call->verb) {
    case DRV_STATUS:
        s_status(self, batch, call, res);
        break;
    case DRV_LIST:
        for (size_t i = 0; res->outcome == DRV_OK && i < res->n_ids; i++)
            s_check_held(self, driver, res->ids[i]);
        break;
    case DRV_INVENTORY:
        /* The units each package really has (a change makes a new AD) and the leases whose
         * capacity was lost (the notice branch ends them with a NOTICE). */
        for (size_t i = 0; res->outcome == DRV_OK && i < res->n_units; i++)
            peer_lease_set_units(self->lease, res->units[i].package, res->units[i].units);
        for (size_t i = 0; res->outcome == DRV_OK && i < res->n_lost; i++)
            peer_lease_lost(self->lease, batch, res->lost[i], "capacity lost (inventory)");
        break;
    default:
        peer_lease_driver_done(self->lease, batch, call, res);
        break;
    }
}

void fulfil_stats(const peer_fulfil_t *self, fulfil_stats_t *out)
{
    *out = self->stats;
}
