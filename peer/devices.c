/* devices.c - nodes and devices of a shared package, placed by fragmentation gradient
 * descent (fgd.h). */
#include "devices.h"

#include <stdlib.h>
#include <string.h>

struct peer_devices {
    uint32_t n;           /* nodes (the package's total units) */
    fgd_node_t cap;       /* one node empty */
    fgd_node_t *nodes;    /* n nodes, as placed */
    double *frag;         /* fgd_frag of each node against work at version seen */
    fgd_workload_t *work; /* the peer's workload (see devices.h), not owned */
    uint64_t seen;
    uint32_t share_min;
};

static uint64_t s_mib(uint64_t bytes)
{
    return (bytes + (1u << 20) - 1) >> 20;
}

int peer_devices_prior(const peer_devices_t *self, fgd_workload_t *work)
{
    fgd_task_t whole = {.cpu = self->cap.cpu_free / self->cap.ndev,
                        .mem = self->cap.mem_free / self->cap.ndev,
                        .ndev = 1,
                        .milli = FGD_MILLI};
    return fgd_workload_add(work, &whole, 1.0);
}

static void s_refrag(peer_devices_t *self)
{
    for (uint32_t i = 0; i < self->n; i++)
        self->frag[i] = fgd_frag(self->work, &self->nodes[i]);
    self->seen = fgd_workload_version(self->work);
}

/* The workload moved (a slice placed on another package): every node's measure moves. */
static void s_fresh(peer_devices_t *self)
{
    if (self->seen != fgd_workload_version(self->work))
        s_refrag(self);
}

peer_devices_t *peer_devices_new(const cpn_package_t *p, fgd_workload_t *work)
{
    if (!work || !p->accel.share_min || p->accel.count == 0 || p->accel.count > FGD_DEV_MAX)
        return NULL;
    peer_devices_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->n = p->total;
    self->work = work;
    self->share_min = p->accel.share_min;
    self->cap.cpu_free = p->cores * 1000u;
    self->cap.mem_free = p->mem_bytes >> 20;
    self->cap.ndev = p->accel.count;
    for (uint32_t d = 0; d < self->cap.ndev; d++)
        self->cap.dev_free[d] = FGD_MILLI;
    self->nodes = calloc(self->n, sizeof *self->nodes);
    self->frag = calloc(self->n, sizeof *self->frag);
    if (!self->nodes || !self->frag) {
        peer_devices_destroy(&self);
        return NULL;
    }
    peer_devices_clear(self);
    return self;
}

void peer_devices_destroy(peer_devices_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_devices_t *self = *self_p;
    free(self->nodes);
    free(self->frag);
    free(self);
    *self_p = NULL;
}

void peer_devices_clear(peer_devices_t *self)
{
    for (uint32_t i = 0; i < self->n; i++)
        self->nodes[i] = self->cap;
    s_refrag(self);
}

int peer_devices_ask(const cpn_request_t *r, fgd_task_t *out)
{
    if (r->share == 0 || r->share > FGD_MILLI)
        return CPN_E_INVAL;
    out->cpu = r->cores * 1000u;
    out->mem = s_mib(r->mem_bytes);
    out->milli = (uint16_t)r->share;
    out->ndev = r->accel_count ? r->accel_count : 1;
    return fgd_task_valid(out) ? CPN_OK : CPN_E_INVAL;
}

/* The slice taken from node i by ask on device dev, read off before and after. */
static void s_record(const fgd_node_t *before, const fgd_node_t *after, uint32_t i,
                     const fgd_task_t *ask, peer_slice_t *out)
{
    memset(out, 0, sizeof *out);
    out->node = i;
    out->share = ask->milli;
    out->cpu = ask->cpu;
    out->mem = ask->mem;
    for (uint32_t d = 0; d < before->ndev; d++)
        if (after->dev_free[d] != before->dev_free[d])
            out->devmask |= 1u << d;
}

double peer_devices_weight(const fgd_task_t *t)
{
    return (double)t->ndev * t->milli / FGD_MILLI;
}

/* The workload learns the slice's class, weighted by its share, unless it is a mix the
 * operator gave (fixed). Past FGD_CLASSES_MAX classes it stops learning new ones: placement
 * goes on against what it knows. */
static void s_learn(peer_devices_t *self, const fgd_task_t *ask)
{
    int r = fgd_workload_learn(self->work, ask, peer_devices_weight(ask));
    (void)r;
}

int peer_devices_choose(peer_devices_t *self, const fgd_task_t *ask, peer_choice_t *out)
{
    out->node = -1;
    s_fresh(self);
    for (uint32_t i = 0; i < self->n; i++) {
        double d;
        int dev =
            fgd_best_device(self->work, &self->nodes[i], self->frag[i], ask, FGD_RULE_CPN, &d);
        if (dev < 0)
            continue;
        fgd_node_t after = self->nodes[i];
        fgd_take(&after, ask, dev);
        if (out->node < 0 || fgd_better(FGD_RULE_CPN, d, &after, out->growth, &out->after))
            out->node = (int)i, out->growth = d, out->after = after;
    }
    return out->node < 0 ? CPN_E_NO_UNITS : CPN_OK;
}

bool peer_devices_better(const peer_choice_t *a, const peer_choice_t *b)
{
    return a->node >= 0 &&
           (b->node < 0 || fgd_better(FGD_RULE_CPN, a->growth, &a->after, b->growth, &b->after));
}

void peer_devices_commit(peer_devices_t *self, const fgd_task_t *ask, const peer_choice_t *c,
                         peer_slice_t *out)
{
    uint32_t i = (uint32_t)c->node;
    s_record(&self->nodes[i], &c->after, i, ask, out);
    self->nodes[i] = c->after;
    s_learn(self, ask);
    self->frag[i] = fgd_frag(self->work, &self->nodes[i]);
}

int peer_devices_place(peer_devices_t *self, const fgd_task_t *ask, peer_slice_t *out)
{
    peer_choice_t c;
    int r = peer_devices_choose(self, ask, &c);
    if (r == CPN_OK)
        peer_devices_commit(self, ask, &c, out);
    return r;
}

int peer_devices_take(peer_devices_t *self, const peer_slice_t *s)
{
    if (s->node >= self->n || s->devmask == 0 || s->share == 0 || s->share > FGD_MILLI ||
        (s->devmask >> self->cap.ndev) != 0)
        return CPN_E_INVAL;
    fgd_node_t *n = &self->nodes[s->node];
    if (n->cpu_free < s->cpu || n->mem_free < s->mem)
        return CPN_E_NO_UNITS;
    uint32_t ndev = 0;
    for (uint32_t d = 0; d < n->ndev; d++)
        if (s->devmask >> d & 1) {
            if (n->dev_free[d] < s->share)
                return CPN_E_NO_UNITS;
            ndev++;
        }
    if (ndev > 1 && s->share != FGD_MILLI)
        return CPN_E_INVAL;
    n->cpu_free -= s->cpu;
    n->mem_free -= s->mem;
    for (uint32_t d = 0; d < n->ndev; d++)
        if (s->devmask >> d & 1)
            n->dev_free[d] = (uint16_t)(n->dev_free[d] - s->share);
    fgd_task_t ask = {.cpu = s->cpu, .mem = s->mem, .ndev = ndev, .milli = (uint16_t)s->share};
    s_learn(self, &ask);
    self->frag[s->node] = fgd_frag(self->work, n);
    return CPN_OK;
}

void peer_devices_give(peer_devices_t *self, const peer_slice_t *s)
{
    if (s->node >= self->n)
        return;
    fgd_node_t *n = &self->nodes[s->node];
    n->cpu_free =
        n->cpu_free + s->cpu > self->cap.cpu_free ? self->cap.cpu_free : n->cpu_free + s->cpu;
    n->mem_free =
        n->mem_free + s->mem > self->cap.mem_free ? self->cap.mem_free : n->mem_free + s->mem;
    for (uint32_t d = 0; d < n->ndev; d++)
        if (s->devmask >> d & 1) {
            uint32_t f = n->dev_free[d] + s->share;
            n->dev_free[d] = (uint16_t)(f > FGD_MILLI ? FGD_MILLI : f);
        }
    self->frag[s->node] = fgd_frag(self->work, n);
}

void peer_devices_summary(peer_devices_t *self, uint32_t *free_nodes, uint32_t *slice_max,
                          uint32_t *frag_permille)
{
    uint32_t nodes = 0, max = 0;
    double frag = 0, free_all = 0;
    s_fresh(self);
    for (uint32_t i = 0; i < self->n; i++) {
        const fgd_node_t *n = &self->nodes[i];
        bool any = false;
        for (uint32_t d = 0; d < n->ndev; d++) {
            if (n->dev_free[d] > max)
                max = n->dev_free[d];
            any = any || n->dev_free[d] >= self->share_min;
        }
        nodes += any;
        frag += self->frag[i];
        free_all += fgd_free_milli(n);
    }
    *free_nodes = nodes;
    *slice_max = max;
    *frag_permille = free_all > 0 ? (uint32_t)(frag * 1000.0 / free_all + 0.5) : 0;
    if (*frag_permille > 1000)
        *frag_permille = 1000;
}

uint32_t peer_devices_free(const peer_devices_t *self, uint32_t node, uint32_t dev)
{
    if (node >= self->n || dev >= self->cap.ndev)
        return 0;
    return self->nodes[node].dev_free[dev];
}

/* ---- the summary's fit points ---- */

#define S_BANDS_MAX 8

/* The bands of slice sizes a point is picked for, ascending; their count. */
static uint32_t s_bands(const peer_devices_t *self, uint32_t band[S_BANDS_MAX])
{
    static const uint32_t frac[] = {250, 500};
    uint32_t n = 0, all = self->cap.ndev * FGD_MILLI;
    if (self->share_min < FGD_MILLI)
        band[n++] = self->share_min;
    for (size_t i = 0; i < sizeof frac / sizeof frac[0]; i++)
        if (frac[i] > self->share_min)
            band[n++] = frac[i];
    for (uint32_t w = FGD_MILLI; w < all && n < S_BANDS_MAX - 1; w *= 2)
        band[n++] = w;
    band[n++] = all;
    return n;
}

/* A node's room as a fit point: all its whole free devices, else its largest free share. */
static cpn_fit_t s_room(const fgd_node_t *n)
{
    uint32_t whole = 0, max = 0;
    for (uint32_t d = 0; d < n->ndev; d++) {
        whole += n->dev_free[d] == FGD_MILLI;
        max = n->dev_free[d] > max ? n->dev_free[d] : max;
    }
    cpn_fit_t f = {.accel = whole ? whole * FGD_MILLI : max,
                   .cpu = n->cpu_free,
                   .mem = n->mem_free > UINT32_MAX ? UINT32_MAX : (uint32_t)n->mem_free};
    return f;
}

/* The smaller of the node's CPU and memory shares left: what a slice of any shape can use. */
static double s_headroom(const peer_devices_t *self, const cpn_fit_t *f)
{
    double c = self->cap.cpu_free ? (double)f->cpu / self->cap.cpu_free : 1.0;
    double m = self->cap.mem_free ? (double)f->mem / (double)self->cap.mem_free : 1.0;
    return c < m ? c : m;
}

static bool s_covers(const cpn_fit_t *a, const cpn_fit_t *b)
{
    return a->accel >= b->accel && a->cpu >= b->cpu && a->mem >= b->mem;
}

/* Add f unless a point covers it; drop the points it covers; keep (accel, cpu, mem)
 * descending. */
static void s_fit_add(cpn_fit_t *fit, uint32_t *n, const cpn_fit_t *f)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < *n; i++)
        if (s_covers(&fit[i], f))
            return;
    for (uint32_t i = 0; i < *n; i++)
        if (!s_covers(f, &fit[i]))
            fit[k++] = fit[i];
    uint32_t at = k;
    while (at > 0 && (fit[at - 1].accel < f->accel ||
                      (fit[at - 1].accel == f->accel &&
                       (fit[at - 1].cpu < f->cpu ||
                        (fit[at - 1].cpu == f->cpu && fit[at - 1].mem < f->mem))))) {
        fit[at] = fit[at - 1];
        at--;
    }
    fit[at] = *f;
    *n = k + 1;
}

uint32_t peer_devices_fit(const peer_devices_t *self, cpn_fit_t fit[CPN_FIT_MAX])
{
    uint32_t band[S_BANDS_MAX], nb = s_bands(self, band), n = 0;
    cpn_fit_t best[S_BANDS_MAX];
    double best_h[S_BANDS_MAX];
    for (uint32_t b = 0; b < nb; b++)
        best_h[b] = -1;
    for (uint32_t i = 0; i < self->n; i++) {
        cpn_fit_t f = s_room(&self->nodes[i]);
        if (f.accel < self->share_min)
            continue;
        double h = s_headroom(self, &f);
        for (uint32_t b = 0; b < nb && band[b] <= f.accel; b++)
            if (h > best_h[b])
                best_h[b] = h, best[b] = f;
    }
    for (uint32_t b = 0; b < nb && n < CPN_FIT_MAX; b++)
        if (best_h[b] >= 0)
            s_fit_add(fit, &n, &best[b]);
    return n;
}

/* ---- the summary's gradients ---- */

uint32_t peer_devices_grad(peer_devices_t *self, cpn_grad_t grad[CPN_GRAD_MAX])
{
    fgd_task_t ask[CPN_GRAD_MAX];
    if (self->n > PEER_GRAD_UNITS_MAX)
        return 0;
    s_fresh(self);
    size_t na = fgd_workload_asks(self->work, ask, CPN_GRAD_MAX);
    uint32_t n = 0;
    for (size_t k = 0; k < na; k++) {
        if (ask[k].ndev > self->cap.ndev)
            continue;
        bool any = false;
        double best = 0;
        for (uint32_t i = 0; i < self->n; i++) {
            double d;
            if (fgd_best_device(self->work, &self->nodes[i], self->frag[i], &ask[k], FGD_RULE_CPN,
                                &d) >= 0 &&
                (!any || d < best))
                any = true, best = d;
        }
        if (!any)
            continue;
        uint32_t a = ask[k].milli < FGD_MILLI ? ask[k].milli : ask[k].ndev * FGD_MILLI;
        int32_t lim = (int32_t)(self->cap.ndev * FGD_MILLI);
        int32_t v = (int32_t)(best < 0 ? best - 0.5 : best + 0.5);
        v = v > lim ? lim : v < -lim ? -lim : v;
        uint32_t at = n++; /* insertion by accel */
        while (at > 0 && grad[at - 1].accel > a) {
            grad[at] = grad[at - 1];
            at--;
        }
        grad[at] = (cpn_grad_t){.accel = a, .delta = v};
    }
    return n;
}
