/* replay.c - per-sender replay guard with bounded memory (rules in replay.h).
 *
 * Entries live in a fixed pool of `capacity` records, found through an open-addressing
 * index (linear probing, at most half full, keyed SipHash of the sender key so nobody can
 * choose keys that collide) and kept on a list in order of last use, so the entry idle the
 * longest is always at the head: eviction is O(1), and when the head is not idle long
 * enough no entry is.
 *
 * A sender's window is `top` plus up to CPN_REPLAY_WINDOW - 1 distances (top - seq) of the
 * other seqs it holds, unordered: 63 comparisons per message is cheaper than keeping order.
 */
#include "replay.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define S_NIL UINT32_MAX

#define S_DISTS (CPN_REPLAY_WINDOW - 1)

typedef struct {
    uint8_t key[CPN_PK_LEN];
    uint64_t top;     /* the highest seq accepted */
    uint64_t last_ms; /* when its last message was accepted (receiver's clock) */
    uint32_t prev, next;
    uint32_t n;             /* distances held */
    uint32_t dist[S_DISTS]; /* top - seq of the other seqs in the window, each >= 1 */
} s_entry_t;

struct cpn_replay {
    s_entry_t *pool;
    size_t capacity, used;
    uint32_t *index; /* slot -> pool index + 1; 0 = empty */
    size_t mask;     /* index size - 1 (a power of two) */
    uint32_t lru, mru;
    uint64_t skew_ms;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

cpn_replay_t *cpn_replay_new(size_t capacity, uint64_t skew_ms)
{
    cpn_replay_t *self = NULL;
    size_t slots = 1;
    if (capacity == 0 || capacity > (UINT32_MAX >> 2) || sodium_init() < 0)
        return NULL;
    while (slots < 2 * capacity)
        slots <<= 1;
    self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->pool = calloc(capacity, sizeof *self->pool);
    self->index = calloc(slots, sizeof *self->index);
    if (!self->pool || !self->index) {
        cpn_replay_destroy(&self);
        return NULL;
    }
    self->capacity = capacity;
    self->mask = slots - 1;
    self->lru = self->mru = S_NIL;
    self->skew_ms = skew_ms;
    randombytes_buf(self->hash_key, sizeof self->hash_key);
    return self;
}

void cpn_replay_destroy(cpn_replay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpn_replay_t *self = *self_p;
    free(self->pool);
    free(self->index);
    free(self);
    *self_p = NULL;
}

size_t cpn_replay_size(const cpn_replay_t *self)
{
    return self ? self->used : 0;
}

size_t cpn_replay_entry_bytes(void)
{
    return sizeof(s_entry_t);
}

static size_t s_home(const cpn_replay_t *self, const uint8_t key[CPN_PK_LEN])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v = 0;
    crypto_shorthash(h, key, CPN_PK_LEN, self->hash_key);
    memcpy(&v, h, sizeof v);
    return (size_t)v & self->mask;
}

/* Index slot holding `key`, or the empty slot where it would go (*found false). */
static size_t s_find(const cpn_replay_t *self, const uint8_t key[CPN_PK_LEN], bool *found)
{
    size_t i = s_home(self, key);
    for (;;) {
        uint32_t e = self->index[i];
        if (e == 0) {
            *found = false;
            return i;
        }
        if (memcmp(self->pool[e - 1].key, key, CPN_PK_LEN) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & self->mask;
    }
}

/* Remove index slot i, shifting later members of its probe run back (no tombstones). */
static void s_index_remove(cpn_replay_t *self, size_t i)
{
    size_t j = i;
    for (;;) {
        self->index[i] = 0;
        for (;;) {
            j = (j + 1) & self->mask;
            uint32_t e = self->index[j];
            if (e == 0)
                return;
            size_t home = s_home(self, self->pool[e - 1].key);
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
            if (!stays) {
                self->index[i] = e;
                i = j;
                break;
            }
        }
    }
}

static void s_list_unlink(cpn_replay_t *self, uint32_t e)
{
    s_entry_t *x = &self->pool[e];
    if (x->prev != S_NIL)
        self->pool[x->prev].next = x->next;
    else
        self->lru = x->next;
    if (x->next != S_NIL)
        self->pool[x->next].prev = x->prev;
    else
        self->mru = x->prev;
    x->prev = x->next = S_NIL;
}

static void s_list_push_mru(cpn_replay_t *self, uint32_t e)
{
    s_entry_t *x = &self->pool[e];
    x->prev = self->mru;
    x->next = S_NIL;
    if (self->mru != S_NIL)
        self->pool[self->mru].next = e;
    else
        self->lru = e;
    self->mru = e;
}

/* The window rule of replay.h: is seq inside x's window and not yet seen? */
static int s_window_check(const s_entry_t *x, uint64_t seq)
{
    if (seq > x->top)
        return CPN_OK;
    uint64_t d = x->top - seq;
    if (d == 0 || d > UINT32_MAX)
        return CPN_E_REPLAY;
    uint32_t lowest = 0; /* the largest distance: the lowest seq held */
    for (uint32_t i = 0; i < x->n; i++) {
        if (x->dist[i] == d)
            return CPN_E_REPLAY;
        if (x->dist[i] > lowest)
            lowest = x->dist[i];
    }
    if (x->n == S_DISTS && d > lowest)
        return CPN_E_REPLAY; /* below a full window */
    return CPN_OK;
}

/* Hold distance d; in a full window it replaces the lowest seq, which d is above. */
static void s_window_hold(s_entry_t *x, uint32_t d)
{
    if (x->n < S_DISTS) {
        x->dist[x->n++] = d;
        return;
    }
    uint32_t lo = 0;
    for (uint32_t i = 1; i < x->n; i++)
        if (x->dist[i] > x->dist[lo])
            lo = i;
    if (d < x->dist[lo])
        x->dist[lo] = d;
}

/* Record an accepted seq (s_window_check said CPN_OK). */
static void s_window_add(s_entry_t *x, uint64_t seq)
{
    if (seq <= x->top) {
        s_window_hold(x, (uint32_t)(x->top - seq));
        return;
    }
    /* A new top: every distance grows; one that no longer fits in 32 bits leaves the window
     * (its seq stays refused: it is more than UINT32_MAX below every later top). The same
     * pass finds the lowest seq held, which a full window gives up for the old top. */
    uint64_t delta = seq - x->top;
    uint32_t kept = 0, lo = 0;
    for (uint32_t i = 0; i < x->n; i++) {
        uint64_t nd = (uint64_t)x->dist[i] + delta;
        if (nd > UINT32_MAX)
            continue;
        x->dist[kept] = (uint32_t)nd;
        if (nd > x->dist[lo])
            lo = kept;
        kept++;
    }
    x->n = kept;
    x->top = seq;
    if (delta > UINT32_MAX)
        return;
    if (x->n < S_DISTS)
        x->dist[x->n++] = (uint32_t)delta; /* the old top, now the nearest below */
    else if (delta < x->dist[lo])
        x->dist[lo] = (uint32_t)delta;
}

/* The three rules of replay.h, given the sender's entry (NULL if none). */
static int s_rules(const cpn_replay_t *self, const s_entry_t *x, uint64_t seq, uint64_t ts_ms,
                   uint64_t now_ms)
{
    uint64_t skew = self->skew_ms;
    uint64_t dist = ts_ms > now_ms ? ts_ms - now_ms : now_ms - ts_ms;
    if (dist > skew)
        return CPN_E_TS_SKEW;
    uint64_t top = ts_ms > UINT64_MAX - skew ? UINT64_MAX : ts_ms + skew;
    uint64_t max_seq = top > (UINT64_MAX >> 12) ? UINT64_MAX : top << 12;
    if (seq > max_seq)
        return CPN_E_SEQ_JUMP;
    return x ? s_window_check(x, seq) : CPN_OK;
}

/* When the table is full: may its least recently used entry go? */
static bool s_can_evict(const cpn_replay_t *self, uint64_t now_ms)
{
    if (self->lru == S_NIL)
        return false;
    uint64_t last = self->pool[self->lru].last_ms;
    uint64_t idle = now_ms > last ? now_ms - last : 0;
    uint64_t limit = self->skew_ms > UINT64_MAX / 2 ? UINT64_MAX : 2 * self->skew_ms;
    return idle > limit;
}

int cpn_replay_peek(const cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                    uint64_t ts_ms, uint64_t now_ms)
{
    bool found;
    if (!self || !from)
        return CPN_E_INVAL;
    size_t i = s_find(self, from, &found);
    const s_entry_t *x = found ? &self->pool[self->index[i] - 1] : NULL;
    int r = s_rules(self, x, seq, ts_ms, now_ms);
    if (r == CPN_OK && !found && self->used == self->capacity && !s_can_evict(self, now_ms))
        r = CPN_E_REPLAY_FULL;
    return r;
}

int cpn_replay_check(cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                     uint64_t ts_ms, uint64_t now_ms)
{
    bool found;
    uint32_t e;
    int r = cpn_replay_peek(self, from, seq, ts_ms, now_ms);
    if (r != CPN_OK)
        return r;
    size_t i = s_find(self, from, &found);
    if (found) {
        e = self->index[i] - 1;
        s_list_unlink(self, e);
        s_window_add(&self->pool[e], seq);
    } else {
        if (self->used < self->capacity) {
            e = (uint32_t)self->used++;
        } else {
            /* peek made sure the least recently used entry may go */
            bool old_found;
            e = self->lru;
            size_t oi = s_find(self, self->pool[e].key, &old_found);
            s_list_unlink(self, e);
            s_index_remove(self, oi);
            i = s_find(self, from, &found); /* the removal may have moved the free slot */
        }
        memcpy(self->pool[e].key, from, CPN_PK_LEN);
        self->pool[e].top = seq;
        self->pool[e].n = 0;
        self->index[i] = e + 1;
    }
    self->pool[e].last_ms = now_ms;
    s_list_push_mru(self, e);
    return CPN_OK;
}
