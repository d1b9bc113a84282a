/* outbox.c - a growable FIFO of frames waiting for the ledger's commit (outbox.h). */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#define S_CAP0 64

struct outbox {
    outbox_item_t *items;
    size_t n, cap;
};

outbox_t *outbox_new(void)
{
    return calloc(1, sizeof(outbox_t));
}

void outbox_destroy(outbox_t **self_p)
{
    outbox_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++)
        free(self->items[i].frame);
    free(self->items);
    free(self);
    *self_p = NULL;
}

int outbox_push(outbox_t *self, outbox_item_t *item)
{
    int r = CPN_OK;
    if (!self || !item || !item->frame) {
        r = CPN_E_INVAL;
        goto out;
    }
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : S_CAP0;
        outbox_item_t *grown =
            cap > SIZE_MAX / sizeof *grown ? NULL : realloc(self->items, cap * sizeof *grown);
        if (!grown) {
            r = CPN_E_NOMEM;
            goto out;
        }
        self->items = grown;
        self->cap = cap;
    }
    self->items[self->n++] = *item;
    item->frame = NULL; /* the outbox's now */
out:
    if (item && r != CPN_OK) {
        free(item->frame);
        item->frame = NULL;
    }
    return r;
}

size_t outbox_len(const outbox_t *self)
{
    return self ? self->n : 0;
}

size_t outbox_drain(outbox_t *self, outbox_fn fn, void *arg)
{
    if (!self)
        return 0;
    /* Detach the queue first: fn may push, and what it pushes waits for the next drain. */
    outbox_item_t *items = self->items;
    size_t n = self->n;
    self->items = NULL;
    self->n = self->cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (fn)
            fn(&items[i], arg);
        free(items[i].frame);
    }
    free(items);
    return n;
}
