/* inventory.h - what the peer has and what is free: pure arithmetic, no I/O.
 *
 * Each package has `total` units (from the configuration) and `used` units (the sum over the
 * active leases, including tentative reservations of the batch being decided). free =
 * total - used, or 0 if a smaller configuration now holds more leases than it has units
 * (the leases stand; no new ones are granted until enough of them end).
 * A change counter lets the daemon notice that free capacity changed and advertise it.
 *
 * A shared package (accel.share_min > 0) sells slices, placed device by device
 * (peer/devices.h): its `free` is the number of units with a free slice, and its slice_max
 * and frag fields and its `sum` (lists the inventory holds, as long as it lives) carry the
 * summary its AD advertises, measured against one workload for all shared packages (learnt,
 * or the operator's mix: peer_inventory_set_mix). Units of it are never reserved whole.
 */
#ifndef PEER_INVENTORY_H
#define PEER_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices.h"
#include "err.h"
#include "resource.h"

typedef struct peer_inventory peer_inventory_t;

/* A copy of the n packages is kept (their `free` fields are ignored). floors[i] is the
 * lowest price per unit-hour package i may be leased at; floors may be NULL (no floors). */
peer_inventory_t *peer_inventory_new(const cpn_package_t *pkgs, const uint64_t *floors, size_t n);
void peer_inventory_destroy(peer_inventory_t **self_p);

size_t peer_inventory_count(const peer_inventory_t *self);
/* Index of the package with that id, or -1. */
int peer_inventory_find(const peer_inventory_t *self, const char *id);
/* Package i with `free` filled in; NULL if i is out of range. */
const cpn_package_t *peer_inventory_get(const peer_inventory_t *self, size_t i);
uint64_t peer_inventory_floor(const peer_inventory_t *self, size_t i);
uint32_t peer_inventory_free(const peer_inventory_t *self, size_t i);
uint64_t peer_inventory_used(const peer_inventory_t *self, size_t i);

/* Take units of package i: CPN_E_NO_UNITS if fewer are free (nothing changes), CPN_E_INVAL
 * for a bad index or zero units. */
int peer_inventory_reserve(peer_inventory_t *self, size_t i, uint32_t units) CPN_WUR;
/* Give units of package i back (never below zero used). */
void peer_inventory_release(peer_inventory_t *self, size_t i, uint32_t units);
/* The units package i really has now (a driver's inventory: Slurm nodes up and not busy with
 * other work); free follows. None at all: the total shows 1 (an AD's package has at least
 * one) and free is 0. Returns true if it changed (the version is bumped: a new AD). */
bool peer_inventory_set_total(peer_inventory_t *self, size_t i, uint32_t total);
/* Forget all use (before recounting from the store). */
void peer_inventory_clear(peer_inventory_t *self);
/* Add used units by package id (recount from the store); CPN_E_NO_PACKAGE if the id is not
 * configured (a package removed from the config while leases on it are active). */
int peer_inventory_add_used(peer_inventory_t *self, const char *id, uint64_t units) CPN_WUR;

/* Place a slice of shared package i for request r (peer_devices_place): CPN_E_INVAL if i is
 * not shared or r asks for no slice, CPN_E_NO_UNITS if no node holds it. */
int peer_inventory_place(peer_inventory_t *self, size_t i, const cpn_request_t *r,
                         peer_slice_t *out) CPN_WUR;
/* The same among shared packages pkgs[0..n) (a CLAIM's package and its alts, all checked by
 * the caller): the slice goes where the peer's fragmentation grows least, as if they were one
 * package; *chosen says which. Drained packages are passed over. */
int peer_inventory_place_among(peer_inventory_t *self, const size_t *pkgs, size_t n,
                               const cpn_request_t *r, size_t *chosen, peer_slice_t *out) CPN_WUR;
/* Give a slice of package i back. */
void peer_inventory_unplace(peer_inventory_t *self, size_t i, const peer_slice_t *s);
/* Take a recorded slice by package id (recount from the store): CPN_E_NO_PACKAGE if the id
 * is not a configured shared package, else peer_devices_take's code. */
int peer_inventory_add_slice(peer_inventory_t *self, const char *id, const peer_slice_t *s) CPN_WUR;
/* Measure every shared package against the n classes of a mix the operator gave (peer.yaml
 * `workload`) instead of learning one: the workload is exactly these classes, class i
 * weighing weight[i] times its accelerator share (peer_devices_weight, as a learnt slice
 * weighs), and neither placements nor a recount (peer_inventory_clear) change it again.
 * CPN_E_INVAL for no class, a malformed one or a weight not above 0, CPN_E_TOO_BIG past
 * FGD_CLASSES_MAX classes or FGD_GROUPS_MAX accelerator asks: nothing changes then. */
int peer_inventory_set_mix(peer_inventory_t *self, const fgd_task_t *cls, const double *weight,
                           size_t n) CPN_WUR;
/* Is package i shared? */
bool peer_inventory_shared(const peer_inventory_t *self, size_t i);
/* The devices of shared package i, NULL for others (read only: tests, status). */
const peer_devices_t *peer_inventory_devices(const peer_inventory_t *self, size_t i);
/* A drained package (cpn-peer --drain) has 0 free units whatever its leases: no new grant,
 * an AD saying 0. Undrained, it counts as before. */
void peer_inventory_set_drained(peer_inventory_t *self, size_t i, bool drained);
bool peer_inventory_drained(const peer_inventory_t *self, size_t i);

/* Bumped whenever a free count changes. */
uint64_t peer_inventory_version(const peer_inventory_t *self);
/* Bumped whenever a shared package's summary (free, slice_max, frag, fit, grad) changes: a
 * placement moves the brokers' choice at once, so the daemon advertises before it answers. */
uint64_t peer_inventory_shared_version(const peer_inventory_t *self);
/* A placement refreshes its own package's summary only, but the workload it learnt moves
 * every shared package's gradients: recompute all of them (once per workload change) before
 * an AD, so that no package advertises gradients against an old workload. */
void peer_inventory_resummarize(peer_inventory_t *self);

#endif
