/* claim_index.c - key -> slot, open addressing (see claim_index.h). */
#include <stdbool.h>
#include <stdlib.h>

#include "claim_index.h"

typedef struct {
    uint64_t key;
    uint32_t slot;
    bool used;
} s_entry_t;

struct claim_index {
    s_entry_t *e;
    size_t mask; /* capacity - 1 */
    size_t n, max;
};

/* Keys are seqs (consecutive) or hashes: mix them so consecutive seqs do not cluster. */
static size_t s_home(const claim_index_t *self, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & self->mask;
}

claim_index_t *claim_index_new(size_t max_keys)
{
    if (max_keys == 0 || max_keys > ((size_t)1 << 28))
        return NULL;
    claim_index_t *self = calloc(1, sizeof *self);
    size_t cap = 1;
    while (cap < 2 * max_keys)
        cap <<= 1;
    if (self)
        self->e = calloc(cap, sizeof *self->e);
    if (!self || !self->e) {
        free(self);
        return NULL;
    }
    self->mask = cap - 1;
    self->max = max_keys;
    return self;
}

void claim_index_destroy(claim_index_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->e);
    free(*self_p);
    *self_p = NULL;
}

int claim_index_put(claim_index_t *self, uint64_t key, uint32_t slot)
{
    if (self->n >= self->max)
        return CPN_E_BUSY;
    size_t i = s_home(self, key);
    while (self->e[i].used) /* at most half full: a free entry comes */
        i = (i + 1) & self->mask;
    self->e[i] = (s_entry_t){.key = key, .slot = slot, .used = true};
    self->n++;
    return CPN_OK;
}

int claim_index_next(const claim_index_t *self, uint64_t key, size_t *cursor, uint32_t *slot)
{
    size_t i = (s_home(self, key) + *cursor) & self->mask;
    for (; self->e[i].used; i = (i + 1) & self->mask) {
        (*cursor)++;
        if (self->e[i].key == key) {
            *slot = self->e[i].slot;
            return 1;
        }
    }
    return 0;
}

int claim_index_del(claim_index_t *self, uint64_t key, uint32_t slot)
{
    size_t i = s_home(self, key);
    for (; self->e[i].used; i = (i + 1) & self->mask)
        if (self->e[i].key == key && self->e[i].slot == slot)
            break;
    if (!self->e[i].used)
        return 0;
    /* Shift back every following entry of the run that may move into the hole: one whose
     * home is not in (hole, j] cyclically. */
    size_t hole = i;
    for (size_t j = (i + 1) & self->mask; self->e[j].used; j = (j + 1) & self->mask) {
        size_t h = s_home(self, self->e[j].key);
        bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (stays)
            continue;
        self->e[hole] = self->e[j];
        hole = j;
    }
    self->e[hole].used = false;
    self->n--;
    return 1;
}

size_t claim_index_len(const claim_index_t *self)
{
    return self->n;
}
