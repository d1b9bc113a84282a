/* fgd.c - the fragmentation measure of Weng et al. (USENIX ATC'23) and the placement that
 * grows it least; see fgd.h for the definitions. Re-implemented from the paper's text.
 *
 * Speed: a node is scored for every arriving task and every free device, so F_n(M) is
 * computed per *accelerator ask* (devices, share) rather than per class: the GPU half of
 * "can m run here" and the fragment sum depend only on the ask; only CPU and memory differ
 * between the classes of one ask. Rewritten as
 *   F_n(M) = P * free(n) - sum over asks a that fit n's devices of
 *            (sum of p_m over a's classes that fit n's CPU and memory) * (free(n) - frag_a(n))
 * with P the total weight (classes that fit nowhere, or ask for no device, count all free).
 */
#include "fgd.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#define S_EPS 1e-9 /* growths closer than this are equal (sums of weights times milli) */

typedef struct {
    uint32_t cpu;
    uint64_t mem;
    double w;
} s_class_t;

typedef struct {
    uint32_t ndev;
    uint16_t milli;
    size_t n;
    s_class_t *cls; /* n classes, owned */
} s_group_t;

struct fgd_workload {
    s_group_t groups[FGD_GROUPS_MAX];
    size_t ngroups;
    size_t nclasses;
    double total;     /* sum of all weights, normalising F to a mean */
    uint64_t version; /* bumped by every change */
    bool fixed;       /* given, not learnt: fgd_workload_learn leaves it alone */
};

fgd_workload_t *fgd_workload_new(void)
{
    return calloc(1, sizeof(fgd_workload_t));
}

void fgd_workload_destroy(fgd_workload_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fgd_workload_t *self = *self_p;
    for (size_t i = 0; i < self->ngroups; i++)
        free(self->groups[i].cls);
    free(self);
    *self_p = NULL;
}

void fgd_workload_clear(fgd_workload_t *self)
{
    for (size_t i = 0; i < self->ngroups; i++)
        free(self->groups[i].cls);
    uint64_t v = self->version;
    bool fixed = self->fixed;
    memset(self, 0, sizeof *self);
    self->version = v + 1;
    self->fixed = fixed;
}

void fgd_workload_fix(fgd_workload_t *self)
{
    self->fixed = true;
}

bool fgd_workload_fixed(const fgd_workload_t *self)
{
    return self->fixed;
}

uint64_t fgd_workload_version(const fgd_workload_t *self)
{
    return self->version;
}

size_t fgd_workload_classes(const fgd_workload_t *self)
{
    return self->nclasses;
}

bool fgd_task_valid(const fgd_task_t *t)
{
    if (t->ndev == 0)
        return t->milli == 0;
    if (t->ndev > FGD_DEV_MAX || t->milli == 0 || t->milli > FGD_MILLI)
        return false;
    return t->ndev == 1 || t->milli == FGD_MILLI;
}

static s_group_t *s_group(fgd_workload_t *self, const fgd_task_t *t)
{
    for (size_t i = 0; i < self->ngroups; i++)
        if (self->groups[i].ndev == t->ndev && self->groups[i].milli == t->milli)
            return &self->groups[i];
    if (self->ngroups == FGD_GROUPS_MAX)
        return NULL;
    s_group_t *g = &self->groups[self->ngroups++];
    memset(g, 0, sizeof(*g));
    g->ndev = t->ndev;
    g->milli = t->milli;
    return g;
}

int fgd_workload_add(fgd_workload_t *self, const fgd_task_t *t, double weight)
{
    if (!fgd_task_valid(t) || !(weight > 0 && weight <= DBL_MAX))
        return CPN_E_INVAL;
    s_group_t *g = s_group(self, t);
    if (!g)
        return CPN_E_TOO_BIG;
    for (size_t i = 0; i < g->n; i++)
        if (g->cls[i].cpu == t->cpu && g->cls[i].mem == t->mem) {
            g->cls[i].w += weight;
            self->total += weight;
            self->version++;
            return CPN_OK;
        }
    if (self->nclasses == FGD_CLASSES_MAX)
        return CPN_E_TOO_BIG;
    s_class_t *c = realloc(g->cls, (g->n + 1) * sizeof(*c));
    if (!c)
        return CPN_E_NOMEM;
    g->cls = c;
    g->cls[g->n++] = (s_class_t){.cpu = t->cpu, .mem = t->mem, .w = weight};
    self->nclasses++;
    self->total += weight;
    self->version++;
    return CPN_OK;
}

int fgd_workload_learn(fgd_workload_t *self, const fgd_task_t *t, double weight)
{
    return self->fixed ? CPN_OK : fgd_workload_add(self, t, weight);
}

/* The group's task with its classes' weighted mean CPU and memory, and its weight. */
static double s_group_task(const s_group_t *g, fgd_task_t *t)
{
    double w = 0, cpu = 0, mem = 0;
    for (size_t k = 0; k < g->n; k++) {
        w += g->cls[k].w;
        cpu += g->cls[k].w * g->cls[k].cpu;
        mem += g->cls[k].w * (double)g->cls[k].mem;
    }
    *t = (fgd_task_t){.ndev = g->ndev, .milli = g->milli};
    if (w > 0)
        t->cpu = (uint32_t)(cpu / w), t->mem = (uint64_t)(mem / w);
    return w;
}

static bool s_ask_before(const fgd_task_t *a, double wa, const fgd_task_t *b, double wb)
{
    if (wa != wb)
        return wa > wb;
    return (uint32_t)a->ndev * a->milli < (uint32_t)b->ndev * b->milli;
}

size_t fgd_workload_asks(const fgd_workload_t *self, fgd_task_t *out, size_t max)
{
    double wt[FGD_GROUPS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < self->ngroups; i++) {
        fgd_task_t t;
        double w = s_group_task(&self->groups[i], &t);
        if (t.ndev == 0 || w <= 0)
            continue;
        size_t at = n < max ? n : max; /* insertion into the best `max` so far */
        while (at > 0 && s_ask_before(&t, w, &out[at - 1], wt[at - 1])) {
            if (at < max)
                out[at] = out[at - 1], wt[at] = wt[at - 1];
            at--;
        }
        if (at < max) {
            out[at] = t, wt[at] = w;
            if (n < max)
                n++;
        }
    }
    return n;
}

uint32_t fgd_free_milli(const fgd_node_t *n)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i < n->ndev; i++)
        s += n->dev_free[i];
    return s;
}

/* Do n's devices (only) hold an ask of ndev devices of `milli` each? */
static bool s_devices_fit(const fgd_node_t *n, uint32_t ndev, uint16_t milli)
{
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n->ndev; i++)
        if (n->dev_free[i] >= milli)
            ok++;
    return ok >= ndev;
}

bool fgd_fits(const fgd_node_t *n, const fgd_task_t *t)
{
    if (n->cpu_free < t->cpu || n->mem_free < t->mem)
        return false;
    return t->ndev == 0 || s_devices_fit(n, t->ndev, t->milli);
}

bool fgd_fits_on(const fgd_node_t *n, const fgd_task_t *t, int dev)
{
    if (!fgd_fits(n, t))
        return false;
    if (t->ndev != 1 || t->milli == FGD_MILLI)
        return true;
    return dev >= 0 && (uint32_t)dev < n->ndev && n->dev_free[dev] >= t->milli;
}

void fgd_take(fgd_node_t *n, const fgd_task_t *t, int dev)
{
    n->cpu_free -= t->cpu;
    n->mem_free -= t->mem;
    if (t->ndev == 1 && t->milli < FGD_MILLI) {
        n->dev_free[dev] = (uint16_t)(n->dev_free[dev] - t->milli);
        return;
    }
    uint32_t left = t->ndev;
    for (uint32_t i = 0; i < n->ndev && left > 0; i++)
        if (n->dev_free[i] == FGD_MILLI) {
            n->dev_free[i] = 0;
            left--;
        }
}

/* Free share of the devices too small for one device's share of the ask. */
static uint32_t s_frag_sum(const fgd_node_t *n, uint16_t milli)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i < n->ndev; i++)
        if (n->dev_free[i] < milli)
            s += n->dev_free[i];
    return s;
}

double fgd_frag(const fgd_workload_t *w, const fgd_node_t *n)
{
    uint32_t free_all = fgd_free_milli(n);
    if (free_all == 0 || w->total <= 0)
        return 0;
    double usable = 0; /* weight times the free share a class could use */
    for (size_t i = 0; i < w->ngroups; i++) {
        const s_group_t *g = &w->groups[i];
        if (g->ndev == 0 || !s_devices_fit(n, g->ndev, g->milli))
            continue;
        double wfit = 0;
        for (size_t k = 0; k < g->n; k++)
            if (g->cls[k].cpu <= n->cpu_free && g->cls[k].mem <= n->mem_free)
                wfit += g->cls[k].w;
        usable += wfit * (double)(free_all - s_frag_sum(n, g->milli));
    }
    return ((double)free_all * w->total - usable) / w->total;
}

/* Is device a a tighter home than device b for a fraction (less left after it)? */
static bool s_tighter(const fgd_node_t *n, int a, int b)
{
    return b < 0 || n->dev_free[a] < n->dev_free[b];
}

int fgd_best_device(const fgd_workload_t *w, const fgd_node_t *n, double frag_now,
                    const fgd_task_t *t, fgd_rule_t rule, double *delta)
{
    if (!fgd_fits(n, t))
        return -1;
    fgd_node_t after;
    if (t->ndev != 1 || t->milli == FGD_MILLI) {
        after = *n;
        fgd_take(&after, t, 0);
        *delta = fgd_frag(w, &after) - frag_now;
        return 0;
    }
    int best = -1;
    double best_d = 0;
    for (uint32_t i = 0; i < n->ndev; i++) {
        if (n->dev_free[i] < t->milli)
            continue;
        bool seen = false; /* devices with equal free shares score alike: score one */
        for (uint32_t k = 0; k < i && !seen; k++)
            seen = n->dev_free[k] == n->dev_free[i];
        if (seen)
            continue;
        after = *n;
        fgd_take(&after, t, (int)i);
        double d = fgd_frag(w, &after) - frag_now;
        bool better = best < 0 || d < best_d - S_EPS;
        if (!better && rule == FGD_RULE_CPN && d <= best_d + S_EPS)
            better = s_tighter(n, (int)i, best);
        if (better) {
            best = (int)i;
            best_d = d;
        }
    }
    *delta = best_d;
    return best;
}

bool fgd_better(fgd_rule_t rule, double da, const fgd_node_t *na_after, double db,
                const fgd_node_t *nb_after)
{
    if (da < db - S_EPS)
        return true;
    if (da > db + S_EPS || rule == FGD_RULE_FGD)
        return false;
    uint32_t fa = fgd_free_milli(na_after), fb = fgd_free_milli(nb_after);
    if (fa != fb)
        return fa < fb;
    return na_after->cpu_free < nb_after->cpu_free;
}
