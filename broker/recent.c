/* recent.c - the ring of recent refusals. */
#include "recent.h"

#include <stdio.h>

void recent_add(recent_t *self, uint64_t ts_ms, int code, const char *ref, const char *reason)
{
    recent_row_t *r = &self->rows[self->next];
    r->ts_ms = ts_ms;
    r->code = code;
    snprintf(r->ref, sizeof r->ref, "%s", ref ? ref : "");
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    self->next = (self->next + 1) % RECENT_MAX;
    self->n++;
}

size_t recent_copy(const recent_t *self, recent_row_t *out)
{
    size_t n = self->n < RECENT_MAX ? (size_t)self->n : RECENT_MAX;
    for (size_t i = 0; i < n; i++)
        out[i] = self->rows[(self->next + RECENT_MAX - 1 - i) % RECENT_MAX];
    return n;
}
