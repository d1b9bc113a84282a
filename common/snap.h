/* snap.h - hands a snapshot of a daemon's state from its event loop to another thread.
 *
 * The daemon's loop is single-threaded and never waits for anyone; the HTTP server (httpd.h)
 * runs in a thread of its own. So a reader does not touch the daemon's state: it asks for a
 * snapshot (cpn_snap_take), the loop sees the request at its next turn (cpn_snap_wanted: one
 * relaxed atomic load per turn, the only cost while nobody reads), builds a snapshot of its own
 * making and publishes it (cpn_snap_publish: one mutex, taken only then), and the reader takes
 * it away and renders it in its own thread. A loop that does not answer within the reader's
 * wait leaves the reader with CPN_E_TIMEOUT (a wedged loop shows as a failed scrape).
 */
#ifndef CPN_SNAP_H
#define CPN_SNAP_H

#include <stdbool.h>

#include "err.h"

typedef struct cpn_snap cpn_snap_t;
typedef void (*cpn_snap_free_fn)(void *data);

/* NULL if out of memory. free_fn frees a snapshot nobody took. The caller owns the result. */
cpn_snap_t *cpn_snap_new(cpn_snap_free_fn free_fn);
void cpn_snap_destroy(cpn_snap_t **self_p);

/* The loop, once per turn: does a reader wait for a snapshot? */
bool cpn_snap_wanted(cpn_snap_t *self);
/* The loop: publish *data_p (taken; a snapshot nobody took is freed) and wake the reader. */
void cpn_snap_publish(cpn_snap_t *self, void **data_p);

/* A reader: ask for a fresh snapshot and wait at most wait_ms for it. CPN_OK and *data_p the
 * snapshot (the caller frees it with the free_fn), or CPN_E_TIMEOUT. Readers are served one at
 * a time. */
int cpn_snap_take(cpn_snap_t *self, int wait_ms, void **data_p) CPN_WUR;

#endif
