/* window.h - the batch window: REQUESTs that wait to be matched together (policy
 * placement.batch, broker/batch.h).
 *
 * It only remembers which requests wait (their slots in the claim module's table, in
 * arrival order) and when the oldest came, and says when the window must be matched: when it
 * holds `max` requests or its oldest has waited `wait_ms`. Matching, claiming and answering
 * are claim.c's. Pure: no sockets, the time comes in.
 */
#ifndef CPN_WINDOW_H
#define CPN_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "err.h"

#define WINDOW_CAP BATCH_MAX /* one window is one batch_plan */
#define WINDOW_NEVER UINT64_MAX

typedef struct {
    size_t slot[WINDOW_CAP]; /* pending slots, in arrival order */
    size_t n;
    uint64_t first_mono; /* arrival of slot[0] */
} window_t;

/* Queue a request's slot that arrived at now_mono. CPN_E_BUSY if the window is full. */
int window_add(window_t *self, size_t slot, uint64_t now_mono) CPN_WUR;

/* When the window must be matched (monotonic ms): WINDOW_NEVER if it is empty, 0 (now) if
 * it holds max requests or more (max 0: batch mode is off, match what is left now), else its
 * oldest arrival + wait_ms. */
uint64_t window_deadline(const window_t *self, uint32_t max, uint64_t wait_ms);

/* Move every queued slot to out (room for WINDOW_CAP) and empty the window; the count. */
size_t window_take(window_t *self, size_t *out);

#endif
