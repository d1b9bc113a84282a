/* recent.h - the last RECENT_MAX refusals (NACKs) the broker sent, for the dashboard.
 *
 * Pure: a ring of fixed-size rows, the oldest overwritten; no clock (time comes in), no I/O.
 * Written by the loop when the HTTP listener is on (broker_nack), copied into a snapshot.
 */
#ifndef CPN_RECENT_H
#define CPN_RECENT_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define RECENT_MAX 64 /* refusals kept; the oldest goes first */

typedef struct {
    uint64_t ts_ms;
    int code;
    char ref[CPN_NAME_MAX];      /* the request id (or lease) it answered */
    char reason[CPN_REASON_MAX]; /* the NACK's reason, as sent */
} recent_row_t;

typedef struct {
    recent_row_t rows[RECENT_MAX];
    size_t next;  /* where the next row goes */
    uint64_t n;   /* rows ever added */
} recent_t;

void recent_add(recent_t *self, uint64_t ts_ms, int code, const char *ref, const char *reason);
/* Copy the rows, newest first, into out (room for RECENT_MAX); returns how many. */
size_t recent_copy(const recent_t *self, recent_row_t *out);

#endif
