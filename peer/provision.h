/* provision.h - the peer's provisioning engine: driver calls run as child processes, without
 * blocking the daemon's loop.
 *
 * A call (driver.h: a verb on a lease) is submitted with the index of the driver that serves
 * it; the engine queues it, starts it when its driver has fewer than `concurrency` children
 * running (and all drivers fewer than PROVISION_CHILDREN_MAX), feeds the child, reads it
 * (runner.h; the daemon polls provision_fds with its sockets), kills it at the driver's
 * `timeout`, asks the driver what the output means, runs its next step if it asks for one,
 * and retries what may work later (DRV_RETRY, a timeout, output over PROVISION_OUTPUT_MAX)
 * up to `retries` times, waiting `backoff` doubled each time (at most PROVISION_BACKOFF_MAX_S).
 * A grant is not retried past its lease's end.
 *
 * The final outcome of each call (DRV_OK or DRV_FAILED: a retryable failure whose tries are
 * spent is reported DRV_FAILED, its reason saying so) goes to the callback its owner wired
 * (the daemon routes it to lease.c or reconcile.c), from within provision_run.
 *
 * Submitting is idempotent: a call for a (lease id, verb) already queued or running is not
 * queued twice (DRV_LIST and DRV_INVENTORY: one per driver). The queue holds at most
 * PROVISION_QUEUE_MAX calls; provision_submit refuses more with CPN_E_BUSY (a CLAIM is then
 * refused `busy` before anything is reserved; a teardown stays pending in the store and is
 * submitted again by the next sweep).
 */
#ifndef PEER_PROVISION_H
#define PEER_PROVISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

#define PROVISION_CHILDREN_MAX 64       /* driver children at once, all drivers */
#define PROVISION_CONCURRENCY_MAX 64    /* a driver's `concurrency` at most */
#define PROVISION_QUEUE_MAX 4096        /* calls queued or running */
#define PROVISION_OUTPUT_MAX (64 * 1024) /* bytes of stdout, and of stderr, of one command */
#define PROVISION_RETRIES_MAX 20        /* a driver's `retries` at most */
#define PROVISION_BACKOFF_MAX_S 300     /* the wait before a retry, at most */
#define PROVISION_TIMEOUT_MAX_S 3600    /* a driver's `timeout` at most */
#define PROVISION_FDS_MAX (PROVISION_CHILDREN_MAX * 3)

typedef struct provision provision_t;

/* The final outcome of a call; res->outcome is DRV_OK or DRV_FAILED. `call` and `res` are
 * valid during the callback only. */
typedef void (*provision_done_fn)(void *arg, size_t driver, const drv_call_t *call,
                                  const drv_result_t *res);

/* drivers: borrowed, n of them (their ops found by type). */
provision_t *provision_new(const drv_config_t *drivers, size_t n, provision_done_fn done,
                           void *arg);
/* Kills every child still running (their calls are re-run by the next start's
 * reconciliation). Accepts NULL. */
void provision_destroy(provision_t **self_p);

/* Queue `call` (copied, hints included) for driver `driver`. CPN_OK (also when the same call
 * is already queued), CPN_E_BUSY when the queue is full, CPN_E_INVAL for a bad driver. */
int provision_submit(provision_t *self, size_t driver, const drv_call_t *call) CPN_WUR;
/* Room for another call? */
bool provision_room(const provision_t *self);
/* Is a call for (lease id, verb) queued or running? */
bool provision_busy(const provision_t *self, const char *lease_id, drv_verb_t verb);

/* The descriptors to poll (with their events), at most cap; returns how many. */
size_t provision_fds(const provision_t *self, int *fds, short *events, size_t cap);
/* Milliseconds until the engine needs provision_run again (-1: nothing to wait for). */
int provision_timeout_ms(const provision_t *self, uint64_t now_mono);
/* Start what may start, do the children's I/O, finish, retry, call back. */
void provision_run(provision_t *self, uint64_t now_mono);

typedef struct {
    uint64_t started, ok, failed, retried, timeouts, overflows, busy;
    size_t queued, running, running_max;
} provision_stats_t;
void provision_stats(const provision_t *self, provision_stats_t *out);

#endif
