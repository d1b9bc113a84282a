/* devices.h - the accelerators of one shared package, device by device: pure, no I/O.
 *
 * A shared package (accel.share_min > 0, resource.h) sells slices of its accelerators
 * instead of whole units. Each unit is a node with the package's cores, memory and
 * accel.count devices; each device has FGD_MILLI thousandths. A slice takes CPU and memory of
 * one node and either a fraction of one device or whole devices of that node; no device ever
 * gives more than it has. The node and devices are chosen by fragmentation gradient descent
 * (peer/fgd.h, cpn's rule) against the peer's workload, one for all its shared packages (as
 * FGD measures one cluster against one workload): the slices placed since the last clear (a
 * recount from the store clears), each class weighted by the accelerator share its slices
 * take, plus one whole device per shared package (so that whole devices count while nothing
 * is placed). Or, when the operator gives the federation's mix (peer.yaml `workload`), that
 * mix, fixed (fgd_workload_fix): placements then teach it nothing. The caller owns the
 * workload; every package's measure follows it.
 */
#ifndef PEER_DEVICES_H
#define PEER_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "fgd.h"
#include "resource.h"

/* Where one slice sits: what a lease records and the store keeps. */
typedef struct {
    uint32_t node;    /* unit index, 0-based */
    uint32_t devmask; /* bit d: device d of the node */
    uint32_t share;   /* thousandths taken from each device in devmask */
    uint32_t cpu;     /* thousandths of a core */
    uint64_t mem;     /* MiB */
} peer_slice_t;

typedef struct peer_devices peer_devices_t;

/* Nodes for a shared package p (all free), placed against `work` (the caller's, which must
 * outlive the result); NULL if p is not shared or on allocation failure. */
peer_devices_t *peer_devices_new(const cpn_package_t *p, fgd_workload_t *work);
/* Add this package's prior to a workload: one whole device with its node's share of CPU and
 * memory, weight 1. */
int peer_devices_prior(const peer_devices_t *self, fgd_workload_t *work) CPN_WUR;
void peer_devices_destroy(peer_devices_t **self_p);

/* What one task of ask t weighs in the peer's workload: its accelerator share (k whole
 * devices weigh k), so that a class counts for the capacity it can fill, not for how often
 * it comes. A learnt slice adds this; a class of a given mix, its weight times this. */
double peer_devices_weight(const fgd_task_t *t);

/* The ask of a slice request r on package p (CPU and memory per slice, devices, share).
 * CPN_E_INVAL if r asks for no slice. */
int peer_devices_ask(const cpn_request_t *r, fgd_task_t *out) CPN_WUR;

/* Where a slice would go and what it would cost: the placement cpn's rule picks. */
typedef struct {
    int node;         /* -1: none can hold it */
    double growth;    /* of F_n(M) */
    fgd_node_t after; /* the node once the slice is on it */
} peer_choice_t;

/* Place a slice: *out says where. CPN_E_NO_UNITS if no node can hold it (nothing changes). */
int peer_devices_place(peer_devices_t *self, const fgd_task_t *ask, peer_slice_t *out) CPN_WUR;
/* The same in two steps, so that a caller can compare packages (a CLAIM's alts) against the
 * one workload before it places: choose (CPN_E_NO_UNITS if none, nothing changes), then
 * commit the choice made on this package with nothing placed on it in between. */
int peer_devices_choose(peer_devices_t *self, const fgd_task_t *ask, peer_choice_t *out) CPN_WUR;
/* Is a better than b under cpn's rule (a placement beats none; equal ones are not better)? */
bool peer_devices_better(const peer_choice_t *a, const peer_choice_t *b);
void peer_devices_commit(peer_devices_t *self, const fgd_task_t *ask, const peer_choice_t *c,
                         peer_slice_t *out);
/* Take a slice recorded earlier (recount from the store): CPN_E_INVAL if it names a node or
 * device that does not exist, CPN_E_NO_UNITS if it does not fit what is left (a smaller
 * configuration than the one it was granted under); nothing changes then. */
int peer_devices_take(peer_devices_t *self, const peer_slice_t *s) CPN_WUR;
/* Give a slice back (never above a device's capacity). */
void peer_devices_give(peer_devices_t *self, const peer_slice_t *s);
/* Forget every slice (the workload is the caller's to clear). */
void peer_devices_clear(peer_devices_t *self);

/* The compact summary an AD carries: nodes with a free share of at least share_min on some
 * device (`free` units), the largest free share of one device, and the fragmentation of the
 * free capacity in permille (sum over nodes of F_n(M) over the free share). */
void peer_devices_summary(peer_devices_t *self, uint32_t *free_nodes, uint32_t *slice_max,
                          uint32_t *frag_permille);
/* The summary's fit points (resource.h cpn_fit_t), at most CPN_FIT_MAX, written to fit[]:
 * for each band of slice sizes (share_min, 0.25, 0.5 of one device; 1, 2, 4, 8 and all whole
 * devices of a node), the node that can take a slice of that band with the most CPU and
 * memory beside it (the larger of the two shares it has left is the smaller), each as that
 * node's free room; points another point covers are left out. Returns their count. */
uint32_t peer_devices_fit(const peer_devices_t *self, cpn_fit_t fit[CPN_FIT_MAX]);
/* Gradients cost CPN_GRAD_MAX placements' worth of scoring each time a package changes: a
 * package of more units than this advertises none (brokers rank it by frag and slice_max). */
#define PEER_GRAD_UNITS_MAX 1024

/* The summary's gradients (resource.h cpn_grad_t), at most CPN_GRAD_MAX, written to grad[]
 * sorted by accel: for each of the workload's heaviest accelerator asks (with its classes'
 * mean CPU and memory), the least growth of F_n(M) placing it on any node would cause, as
 * the placement itself scores it. Asks no node can take are left out; none at all for a
 * package of more than PEER_GRAD_UNITS_MAX units. Returns their count. */
uint32_t peer_devices_grad(peer_devices_t *self, cpn_grad_t grad[CPN_GRAD_MAX]);
/* Free share of device dev of node (tests, status). */
uint32_t peer_devices_free(const peer_devices_t *self, uint32_t node, uint32_t dev);

#endif
