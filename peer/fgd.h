/* fgd.h - fragmentation of shared accelerators and the placement that grows it least.
 *
 * A pure core (no I/O, no clock, no randomness): nodes with CPU, memory and up to
 * FGD_DEV_MAX accelerators, each accelerator sold in thousandths ("milli"); tasks that ask
 * for CPU, memory and either nothing, one fraction of one device, or whole devices.
 *
 * The measure is the one of Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing
 * Workloads with Fragmentation Gradient Descent", USENIX ATC'23, re-implemented from its
 * description (no code of theirs is used):
 *   F_n(m), the fragmentation of node n for a task m, is the accelerator capacity of n that m
 *   cannot use: all of n's free accelerator capacity if m cannot run on n at all (too little
 *   CPU, memory or accelerator) or asks for no accelerator; otherwise the free capacity of
 *   every device whose free share is below what m needs from one device (min(m's share, 1)).
 *   F_n(M) = sum over task classes m of the target workload M of p_m * F_n(m), p_m the share
 *   of class m in M.
 * Fragmentation Gradient Descent places a task on the node and device whose F_n(M) grows
 * least. cpn's rule (FGD_RULE_CPN) is the same descent with a deterministic tie-break: among
 * placements whose growth is equal, the tightest fit (the device, then the node, with least
 * free capacity left), which keeps empty devices and nodes whole for the tasks that need them.
 */
#ifndef PEER_FGD_H
#define PEER_FGD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define FGD_DEV_MAX 8       /* accelerators on one node (a package unit) */
#define FGD_MILLI 1000      /* one whole accelerator */
#define FGD_CLASSES_MAX 512 /* task classes in a workload; fgd_workload_add refuses more */
#define FGD_GROUPS_MAX 64   /* distinct accelerator asks (devices, share) among the classes */

typedef struct {
    uint32_t cpu_free;              /* thousandths of a core */
    uint64_t mem_free;              /* MiB (any unit, the same as the tasks') */
    uint32_t ndev;                  /* accelerators on the node, <= FGD_DEV_MAX */
    uint16_t dev_free[FGD_DEV_MAX]; /* free share of each accelerator, 0..FGD_MILLI */
} fgd_node_t;

typedef struct {
    uint32_t cpu;   /* thousandths of a core */
    uint64_t mem;   /* MiB */
    uint32_t ndev;  /* 0: no accelerator; 1 with milli < FGD_MILLI: a fraction of one device;
                       k >= 1 with milli == FGD_MILLI: k whole devices */
    uint16_t milli; /* share of each device asked for; 0 when ndev == 0 */
} fgd_task_t;

typedef enum {
    FGD_RULE_FGD = 0, /* the paper's rule: least growth; ties left to the caller (first) */
    FGD_RULE_CPN      /* least growth, then the tightest fit (see above) */
} fgd_rule_t;

typedef struct fgd_workload fgd_workload_t;

/* An empty workload; NULL on allocation failure. */
fgd_workload_t *fgd_workload_new(void);
void fgd_workload_destroy(fgd_workload_t **self_p);
/* Count `weight` more of the class of t (tasks equal in every field are one class).
 * CPN_E_INVAL for a malformed task or a weight not above 0 or not finite, CPN_E_TOO_BIG past
 * FGD_CLASSES_MAX classes or FGD_GROUPS_MAX accelerator asks (nothing changes then). */
int fgd_workload_add(fgd_workload_t *self, const fgd_task_t *t, double weight) CPN_WUR;
size_t fgd_workload_classes(const fgd_workload_t *self);
/* Forget every class (the object stays, for those who hold it); a fixed workload stays
 * fixed. */
void fgd_workload_clear(fgd_workload_t *self);
/* Fix the workload: it is a mix someone gave, no longer one learnt from placements, so
 * fgd_workload_learn leaves it alone from now on (fgd_workload_add still adds). */
void fgd_workload_fix(fgd_workload_t *self);
bool fgd_workload_fixed(const fgd_workload_t *self);
/* What a placement teaches: fgd_workload_add, unless the workload is fixed (then CPN_OK and
 * nothing changes). */
int fgd_workload_learn(fgd_workload_t *self, const fgd_task_t *t, double weight) CPN_WUR;
/* A number that changes whenever the workload does (add, clear): holders of F values
 * computed against it know when to recompute. */
uint64_t fgd_workload_version(const fgd_workload_t *self);
/* The workload's heaviest accelerator asks (classes grouped by devices and share), at most
 * max, heaviest first (ties: the smaller ask first), each as a task with its classes'
 * weighted mean CPU and memory; asks without an accelerator are left out. Returns how many. */
size_t fgd_workload_asks(const fgd_workload_t *self, fgd_task_t *out, size_t max);

/* Is t well formed (see fgd_task_t)? */
bool fgd_task_valid(const fgd_task_t *t);
/* Can t run on n now? */
bool fgd_fits(const fgd_node_t *n, const fgd_task_t *t);
/* Can t run on n with its share on device dev? (dev ignored for whole or no devices) */
bool fgd_fits_on(const fgd_node_t *n, const fgd_task_t *t, int dev);
/* Take t from n: a fraction from device dev, whole devices from the lowest-numbered free
 * ones. The caller checked fgd_fits_on. */
void fgd_take(fgd_node_t *n, const fgd_task_t *t, int dev);
/* Sum of free accelerator shares of n, in milli. */
uint32_t fgd_free_milli(const fgd_node_t *n);

/* F_n(M) in milli of an accelerator (a weighted mean over the classes of M). */
double fgd_frag(const fgd_workload_t *w, const fgd_node_t *n);

/* The best device of node n for t under `rule`, and the growth of F_n(M) it causes
 * (*delta). Returns the device index (0 for tasks without a fraction), or -1 if t does not
 * fit n. frag_now is fgd_frag(w, n), which callers usually hold already. */
int fgd_best_device(const fgd_workload_t *w, const fgd_node_t *n, double frag_now,
                    const fgd_task_t *t, fgd_rule_t rule, double *delta);

/* Is placement a (growth da, node na after it) better than b under `rule`? Strictly:
 * equal placements are not better, so a caller scanning in order keeps the first. */
bool fgd_better(fgd_rule_t rule, double da, const fgd_node_t *na_after, double db,
                const fgd_node_t *nb_after);

#endif
