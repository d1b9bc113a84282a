/* inventory.c - totals and free counts per package. */
#include "inventory.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct peer_inventory {
    size_t n;
    cpn_package_t *pkgs; /* `free` kept current */
    cpn_slice_sum_t *sums; /* per package: the lists a shared one's `sum` points to */
    uint64_t *floors;
    uint64_t *used;
    peer_devices_t **dev; /* per package: its devices if shared, else NULL */
    fgd_workload_t *work; /* the workload all shared packages are placed against */
    bool *drained; /* the operator drained it: nothing free, whatever the leases */
    bool *none; /* the driver's inventory found no unit: total shows 1 (an AD's least), free 0 */
    uint64_t version;
    uint64_t shared_version; /* bumped when a shared package's summary changes */
    uint64_t work_seen;      /* the workload version the shared summaries were computed on */
};

static void s_refresh(peer_inventory_t *self, size_t i);

/* The workload from its priors: one whole device of each shared package. A mix the operator
 * gave (fixed) stays as it is. */
static int s_work_reset(peer_inventory_t *self)
{
    if (fgd_workload_fixed(self->work))
        return CPN_OK;
    fgd_workload_clear(self->work);
    for (size_t i = 0; i < self->n; i++)
        if (self->dev[i] && peer_devices_prior(self->dev[i], self->work) != CPN_OK)
            return CPN_E_NOMEM;
    return CPN_OK;
}

peer_inventory_t *peer_inventory_new(const cpn_package_t *pkgs, const uint64_t *floors, size_t n)
{
    peer_inventory_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->n = n;
    size_t cap = n ? n : 1;
    self->pkgs = calloc(cap, sizeof *self->pkgs);
    self->sums = calloc(cap, sizeof *self->sums);
    self->floors = calloc(cap, sizeof *self->floors);
    self->used = calloc(cap, sizeof *self->used);
    self->dev = calloc(cap, sizeof *self->dev);
    self->drained = calloc(cap, sizeof *self->drained);
    self->none = calloc(cap, sizeof *self->none);
    self->work = fgd_workload_new();
    if (!self->pkgs || !self->sums || !self->floors || !self->used || !self->dev ||
        !self->drained || !self->none || !self->work) {
        peer_inventory_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        self->pkgs[i] = pkgs[i];
        self->pkgs[i].free = pkgs[i].total;
        self->pkgs[i].slice_max = self->pkgs[i].frag = 0;
        self->pkgs[i].sum = pkgs[i].accel.share_min ? &self->sums[i] : NULL;
        self->floors[i] = floors ? floors[i] : 0;
        if (pkgs[i].accel.share_min && !(self->dev[i] = peer_devices_new(&pkgs[i], self->work))) {
            peer_inventory_destroy(&self);
            return NULL;
        }
    }
    if (s_work_reset(self) != CPN_OK) {
        peer_inventory_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        s_refresh(self, i);
    return self;
}

/* The mix into w, each class weighing its weight times its accelerator share. */
static int s_mix_add(fgd_workload_t *w, const fgd_task_t *cls, const double *weight, size_t n)
{
    int r = CPN_OK;
    if (n > FGD_CLASSES_MAX)
        return CPN_E_TOO_BIG;
    for (size_t i = 0; i < n && r == CPN_OK; i++)
        r = fgd_workload_add(w, &cls[i], weight[i] * peer_devices_weight(&cls[i]));
    return r;
}

int peer_inventory_set_mix(peer_inventory_t *self, const fgd_task_t *cls, const double *weight,
                           size_t n)
{
    if (n == 0)
        return CPN_E_INVAL;
    fgd_workload_t *trial = fgd_workload_new(); /* refuse a bad mix before changing anything */
    int r = trial ? s_mix_add(trial, cls, weight, n) : CPN_E_NOMEM;
    fgd_workload_destroy(&trial);
    if (r != CPN_OK)
        return r;
    fgd_workload_clear(self->work);
    if ((r = s_mix_add(self->work, cls, weight, n)) != CPN_OK)
        return r; /* out of memory only: the trial took the same classes */
    fgd_workload_fix(self->work);
    for (size_t i = 0; i < self->n; i++)
        s_refresh(self, i);
    return CPN_OK;
}

void peer_inventory_destroy(peer_inventory_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_inventory_t *self = *self_p;
    free(self->pkgs);
    free(self->sums);
    free(self->floors);
    free(self->used);
    for (size_t i = 0; self->dev && i < self->n; i++)
        peer_devices_destroy(&self->dev[i]);
    free(self->dev);
    fgd_workload_destroy(&self->work);
    free(self->drained);
    free(self->none);
    free(self);
    *self_p = NULL;
}

size_t peer_inventory_count(const peer_inventory_t *self)
{
    return self->n;
}

int peer_inventory_find(const peer_inventory_t *self, const char *id)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->pkgs[i].id, id) == 0)
            return (int)i;
    return -1;
}

const cpn_package_t *peer_inventory_get(const peer_inventory_t *self, size_t i)
{
    return i < self->n ? &self->pkgs[i] : NULL;
}

uint64_t peer_inventory_floor(const peer_inventory_t *self, size_t i)
{
    return i < self->n ? self->floors[i] : 0;
}

uint32_t peer_inventory_free(const peer_inventory_t *self, size_t i)
{
    return i < self->n ? self->pkgs[i].free : 0;
}

uint64_t peer_inventory_used(const peer_inventory_t *self, size_t i)
{
    return i < self->n ? self->used[i] : 0;
}

/* Recompute free for package i and bump the version if it changed. */
static void s_refresh(peer_inventory_t *self, size_t i)
{
    cpn_package_t *p = &self->pkgs[i];
    if (self->dev[i]) {
        uint32_t fr, max, frag;
        cpn_fit_t fit[CPN_FIT_MAX];
        peer_devices_summary(self->dev[i], &fr, &max, &frag);
        uint32_t nfit = peer_devices_fit(self->dev[i], fit);
        cpn_grad_t grad[CPN_GRAD_MAX];
        uint32_t ngrad = peer_devices_grad(self->dev[i], grad);
        if (self->drained[i]) /* drained: no slice for anyone (the slices held stay) */
            fr = 0, max = 0, nfit = 0, ngrad = 0;
        cpn_slice_sum_t *s = p->sum; /* set in peer_inventory_new for every shared package */
        if (fr != p->free || max != p->slice_max || frag != p->frag || nfit != s->n_fit ||
            memcmp(fit, s->fit, nfit * sizeof fit[0]) != 0 || ngrad != s->n_grad ||
            memcmp(grad, s->grad, ngrad * sizeof grad[0]) != 0) {
            self->version++;
            self->shared_version++;
        }
        p->free = fr, p->slice_max = max, p->frag = frag, s->n_fit = nfit, s->n_grad = ngrad;
        memcpy(s->fit, fit, nfit * sizeof fit[0]);
        memcpy(s->grad, grad, ngrad * sizeof grad[0]);
        return;
    }
    uint64_t total = self->pkgs[i].total;
    uint32_t fr = self->drained[i] || self->none[i] || self->used[i] >= total
                      ? 0
                      : (uint32_t)(total - self->used[i]);
    if (fr != self->pkgs[i].free) {
        self->pkgs[i].free = fr;
        self->version++;
    }
}

int peer_inventory_reserve(peer_inventory_t *self, size_t i, uint32_t units)
{
    if (i >= self->n || units == 0 || self->dev[i])
        return CPN_E_INVAL;
    if (units > self->pkgs[i].free)
        return CPN_E_NO_UNITS;
    self->used[i] += units;
    s_refresh(self, i);
    return CPN_OK;
}

void peer_inventory_release(peer_inventory_t *self, size_t i, uint32_t units)
{
    if (i >= self->n)
        return;
    self->used[i] = units >= self->used[i] ? 0 : self->used[i] - units;
    s_refresh(self, i);
}

bool peer_inventory_set_total(peer_inventory_t *self, size_t i, uint32_t total)
{
    if (i >= self->n || (self->pkgs[i].total == total && !self->none[i]) ||
        (total == 0 && self->none[i]))
        return false;
    self->none[i] = total == 0;
    self->pkgs[i].total = total ? total : 1;
    self->version++; /* the AD carries the total too */
    s_refresh(self, i);
    return true;
}

void peer_inventory_clear(peer_inventory_t *self)
{
    /* Out of memory leaves fewer priors: placement stays valid, only less informed. */
    (void)s_work_reset(self);
    for (size_t i = 0; i < self->n; i++) {
        self->used[i] = 0;
        if (self->dev[i])
            peer_devices_clear(self->dev[i]);
        s_refresh(self, i);
    }
}

int peer_inventory_add_used(peer_inventory_t *self, const char *id, uint64_t units)
{
    int i = peer_inventory_find(self, id);
    if (i < 0)
        return CPN_E_NO_PACKAGE;
    uint64_t u = self->used[i] + units;
    self->used[i] = u < self->used[i] ? UINT64_MAX : u;
    s_refresh(self, (size_t)i);
    return CPN_OK;
}

int peer_inventory_place(peer_inventory_t *self, size_t i, const cpn_request_t *r,
                         peer_slice_t *out)
{
    size_t chosen;
    return peer_inventory_place_among(self, &i, 1, r, &chosen, out);
}

int peer_inventory_place_among(peer_inventory_t *self, const size_t *pkgs, size_t n,
                               const cpn_request_t *r, size_t *chosen, peer_slice_t *out)
{
    fgd_task_t ask;
    peer_choice_t best = {.node = -1}, c;
    if (peer_devices_ask(r, &ask) != CPN_OK)
        return CPN_E_INVAL;
    for (size_t k = 0; k < n; k++) {
        size_t i = pkgs[k];
        if (i >= self->n || !self->dev[i])
            return CPN_E_INVAL;
        if (!self->drained[i] && peer_devices_choose(self->dev[i], &ask, &c) == CPN_OK &&
            peer_devices_better(&c, &best))
            best = c, *chosen = i;
    }
    if (best.node < 0)
        return CPN_E_NO_UNITS;
    peer_devices_commit(self->dev[*chosen], &ask, &best, out);
    s_refresh(self, *chosen);
    return CPN_OK;
}

void peer_inventory_unplace(peer_inventory_t *self, size_t i, const peer_slice_t *s)
{
    if (i >= self->n || !self->dev[i])
        return;
    peer_devices_give(self->dev[i], s);
    s_refresh(self, i);
}

int peer_inventory_add_slice(peer_inventory_t *self, const char *id, const peer_slice_t *s)
{
    int i = peer_inventory_find(self, id), rc;
    if (i < 0 || !self->dev[i])
        return CPN_E_NO_PACKAGE;
    if ((rc = peer_devices_take(self->dev[i], s)) == CPN_OK)
        s_refresh(self, (size_t)i);
    return rc;
}

bool peer_inventory_shared(const peer_inventory_t *self, size_t i)
{
    return i < self->n && self->dev[i] != NULL;
}

const peer_devices_t *peer_inventory_devices(const peer_inventory_t *self, size_t i)
{
    return i < self->n ? self->dev[i] : NULL;
}

uint64_t peer_inventory_version(const peer_inventory_t *self)
{
    return self->version;
}

uint64_t peer_inventory_shared_version(const peer_inventory_t *self)
{
    return self->shared_version;
}

void peer_inventory_resummarize(peer_inventory_t *self)
{
    uint64_t v = fgd_workload_version(self->work);
    if (v == self->work_seen)
        return;
    self->work_seen = v;
    for (size_t i = 0; i < self->n; i++)
        if (self->dev[i])
            s_refresh(self, i);
}

void peer_inventory_set_drained(peer_inventory_t *self, size_t i, bool drained)
{
    if (i >= self->n)
        return;
    self->drained[i] = drained;
    s_refresh(self, i);
}

bool peer_inventory_drained(const peer_inventory_t *self, size_t i)
{
    return i < self->n && self->drained[i];
}
