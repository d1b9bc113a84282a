/* window.c - the batch window (see window.h). */
#include <string.h>

#include "window.h"

int window_add(window_t *self, size_t slot, uint64_t now_mono)
{
    if (self->n >= WINDOW_CAP)
        return CPN_E_BUSY;
    if (self->n == 0)
        self->first_mono = now_mono;
    self->slot[self->n++] = slot;
    return CPN_OK;
}

uint64_t window_deadline(const window_t *self, uint32_t max, uint64_t wait_ms)
{
    if (self->n == 0)
        return WINDOW_NEVER;
    if (self->n >= max)
        return 0;
    return self->first_mono + wait_ms;
}

size_t window_take(window_t *self, size_t *out)
{
    size_t n = self->n;
    memcpy(out, self->slot, n * sizeof *out);
    self->n = 0;
    return n;
}
