/* book_htab.c - the offer book's open-addressing hash of ids (peers, names, classes,
 * shapes): an id is stored as id + 1 beside its hash, so a probe compares hashes before it
 * asks the caller's equality. Linear probing, tombstones counted and swept by a rehash when
 * live and dead slots pass three quarters. Apart from book.c so that the book's own file
 * holds the index and not its containers.
 */
#include <stdlib.h>
#include <string.h>

#include "book_int.h"
#include "err.h"

#define S_HT_MIN 64u /* slots of a table's first allocation */

static int s_rehash(book_htab_t *t, size_t ncap)
{
    uint32_t *slot = calloc(ncap, sizeof *slot);
    uint32_t *hash = calloc(ncap, sizeof *hash);
    if (slot == NULL || hash == NULL) {
        free(slot);
        free(hash);
        return CPN_E_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot[i] == 0 || t->slot[i] == UINT32_MAX)
            continue;
        size_t j = t->hash[i] & (ncap - 1);
        while (slot[j] != 0)
            j = (j + 1) & (ncap - 1);
        slot[j] = t->slot[i];
        hash[j] = t->hash[i];
    }
    free(t->slot);
    free(t->hash);
    t->slot = slot;
    t->hash = hash;
    t->cap = ncap;
    t->dead = 0;
    return CPN_OK;
}

uint32_t book__ht_find(const book_t *b, const book_htab_t *t, uint32_t h, book_eq_fn eq,
                       const void *key)
{
    if (t->cap == 0)
        return BOOK_NONE;
    size_t i = h & (t->cap - 1);
    while (t->slot[i] != 0) {
        if (t->slot[i] != UINT32_MAX && t->hash[i] == h && eq(b, t->slot[i] - 1, key))
            return t->slot[i] - 1;
        i = (i + 1) & (t->cap - 1);
    }
    return BOOK_NONE;
}

/* Make room for one more id (call before book__ht_add, which then cannot fail). */
int book__ht_reserve(book_htab_t *t)
{
    if (t->cap == 0)
        return s_rehash(t, S_HT_MIN);
    if ((t->used + t->dead + 1) * 4 >= t->cap * 3) {
        size_t ncap = (t->used + 1) * 4 >= t->cap * 2 ? t->cap * 2 : t->cap;
        return s_rehash(t, ncap);
    }
    return CPN_OK;
}

void book__ht_add(book_htab_t *t, uint32_t h, uint32_t id)
{
    size_t i = h & (t->cap - 1);
    while (t->slot[i] != 0 && t->slot[i] != UINT32_MAX)
        i = (i + 1) & (t->cap - 1);
    if (t->slot[i] == UINT32_MAX)
        t->dead--;
    t->slot[i] = id + 1;
    t->hash[i] = h;
    t->used++;
}

void book__ht_del(book_htab_t *t, uint32_t h, uint32_t id)
{
    if (t->cap == 0)
        return;
    size_t i = h & (t->cap - 1);
    while (t->slot[i] != 0) {
        if (t->slot[i] == id + 1) {
            t->slot[i] = UINT32_MAX;
            t->used--;
            t->dead++;
            return;
        }
        i = (i + 1) & (t->cap - 1);
    }
}

void book__ht_free(book_htab_t *t)
{
    free(t->slot);
    free(t->hash);
    memset(t, 0, sizeof *t);
}

