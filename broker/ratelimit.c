/* ratelimit.c - token buckets per sender: a chained hash table over a fixed array of
 * entries, with a least-recently-seen list for eviction.
 *
 * Tokens are kept in thousandths so that refill (rate tokens per second = rate thousandths
 * per millisecond) is exact integer arithmetic.
 */
#include "ratelimit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define S_NIL UINT32_MAX
#define S_MILLI 1000u

typedef struct {
    uint8_t key[CPN_PK_LEN];
    uint64_t tokens; /* thousandths of a token */
    uint64_t last_ms;
    uint32_t next;       /* hash chain, or free list */
    uint32_t prev_lru;   /* towards the most recently seen */
    uint32_t next_lru;   /* towards the least recently seen */
} s_entry_t;

struct ratelimit {
    uint32_t rate;
    uint32_t burst;
    uint64_t idle_ms; /* time a bucket takes to refill from empty */
    size_t capacity;
    size_t n;
    s_entry_t *entries;
    uint32_t *heads;
    size_t mask; /* number of chains - 1 (a power of two) */
    uint32_t free_head;
    uint32_t lru_head, lru_tail;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    uint64_t refused;
    uint64_t refused_full;
};

static uint64_t s_idle_ms(uint32_t rate, uint32_t burst)
{
    if (rate == 0)
        return 0;
    return ((uint64_t)burst * S_MILLI + rate - 1) / rate;
}

ratelimit_t *ratelimit_new(uint32_t rate, uint32_t burst, size_t capacity)
{
    ratelimit_t *self = NULL;
    size_t chains = 16;
    if (capacity == 0 || capacity > RATELIMIT_MAX_CAPACITY || (rate > 0 && burst == 0))
        return NULL;
    if (cpn_crypto_init() != CPN_OK)
        return NULL;
    while (chains < capacity)
        chains <<= 1;
    self = calloc(1, sizeof *self);
    if (!self)
        goto fail;
    self->entries = calloc(capacity, sizeof *self->entries);
    self->heads = malloc(chains * sizeof *self->heads);
    if (!self->entries || !self->heads)
        goto fail;
    for (size_t i = 0; i < chains; i++)
        self->heads[i] = S_NIL;
    for (size_t i = 0; i < capacity; i++)
        self->entries[i].next = i + 1 < capacity ? (uint32_t)(i + 1) : S_NIL;
    self->free_head = 0;
    self->lru_head = self->lru_tail = S_NIL;
    self->mask = chains - 1;
    self->capacity = capacity;
    self->rate = rate;
    self->burst = burst;
    self->idle_ms = s_idle_ms(rate, burst);
    randombytes_buf(self->hash_key, sizeof self->hash_key);
    return self;
fail:
    ratelimit_destroy(&self);
    return NULL;
}

void ratelimit_destroy(ratelimit_t **self_p)
{
    ratelimit_t *self;
    if (!self_p || !*self_p)
        return;
    self = *self_p;
    free(self->entries);
    free(self->heads);
    sodium_memzero(self->hash_key, sizeof self->hash_key);
    free(self);
    *self_p = NULL;
}

static size_t s_chain(const ratelimit_t *self, const uint8_t key[CPN_PK_LEN])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v = 0;
    crypto_shorthash(h, key, CPN_PK_LEN, self->hash_key);
    for (size_t i = 0; i < sizeof v && i < sizeof h; i++)
        v = (v << 8) | h[i];
    return (size_t)(v & self->mask);
}

static void s_lru_unlink(ratelimit_t *self, uint32_t i)
{
    s_entry_t *e = &self->entries[i];
    if (e->prev_lru != S_NIL)
        self->entries[e->prev_lru].next_lru = e->next_lru;
    else
        self->lru_head = e->next_lru;
    if (e->next_lru != S_NIL)
        self->entries[e->next_lru].prev_lru = e->prev_lru;
    else
        self->lru_tail = e->prev_lru;
    e->prev_lru = e->next_lru = S_NIL;
}

static void s_lru_push_front(ratelimit_t *self, uint32_t i)
{
    s_entry_t *e = &self->entries[i];
    e->prev_lru = S_NIL;
    e->next_lru = self->lru_head;
    if (self->lru_head != S_NIL)
        self->entries[self->lru_head].prev_lru = i;
    self->lru_head = i;
    if (self->lru_tail == S_NIL)
        self->lru_tail = i;
}

static uint32_t s_find(const ratelimit_t *self, size_t chain, const uint8_t key[CPN_PK_LEN])
{
    for (uint32_t i = self->heads[chain]; i != S_NIL; i = self->entries[i].next)
        if (memcmp(self->entries[i].key, key, CPN_PK_LEN) == 0)
            return i;
    return S_NIL;
}

static void s_remove(ratelimit_t *self, uint32_t i)
{
    s_entry_t *e = &self->entries[i];
    uint32_t *link = &self->heads[s_chain(self, e->key)];
    while (*link != S_NIL && *link != i)
        link = &self->entries[*link].next;
    if (*link == i)
        *link = e->next;
    s_lru_unlink(self, i);
    memset(e, 0, sizeof *e);
    e->next = self->free_head;
    self->free_head = i;
    self->n--;
}

static void s_refill(const ratelimit_t *self, s_entry_t *e, uint64_t now_ms)
{
    uint64_t full = (uint64_t)self->burst * S_MILLI;
    uint64_t elapsed = now_ms > e->last_ms ? now_ms - e->last_ms : 0;
    /* Past idle_ms the bucket is full whatever it held, and capping first keeps the
     * product below 2^64. */
    if (elapsed > self->idle_ms)
        elapsed = self->idle_ms;
    e->tokens += elapsed * self->rate;
    if (e->tokens > full)
        e->tokens = full;
    if (now_ms > e->last_ms)
        e->last_ms = now_ms;
}

int ratelimit_take(ratelimit_t *self, const uint8_t key[CPN_PK_LEN], uint64_t now_ms)
{
    size_t chain;
    uint32_t i;
    s_entry_t *e;
    if (!self || !key)
        return CPN_E_INVAL;
    if (self->rate == 0)
        return CPN_OK;
    chain = s_chain(self, key);
    i = s_find(self, chain, key);
    if (i != S_NIL) {
        e = &self->entries[i];
        s_refill(self, e, now_ms);
        s_lru_unlink(self, i);
        s_lru_push_front(self, i);
        if (e->tokens < S_MILLI) {
            self->refused++;
            return CPN_E_RATE;
        }
        e->tokens -= S_MILLI;
        return CPN_OK;
    }
    if (self->n == self->capacity) {
        uint32_t t = self->lru_tail;
        const s_entry_t *old = &self->entries[t];
        if (now_ms < old->last_ms || now_ms - old->last_ms < self->idle_ms) {
            self->refused_full++;
            return CPN_E_BUSY;
        }
        s_remove(self, t);
    }
    i = self->free_head;
    e = &self->entries[i];
    self->free_head = e->next;
    memcpy(e->key, key, CPN_PK_LEN);
    e->tokens = (uint64_t)self->burst * S_MILLI - S_MILLI;
    e->last_ms = now_ms;
    e->next = self->heads[chain];
    self->heads[chain] = i;
    s_lru_push_front(self, i);
    self->n++;
    return CPN_OK;
}

int ratelimit_set(ratelimit_t *self, uint32_t rate, uint32_t burst)
{
    if (!self || (rate > 0 && burst == 0))
        return CPN_E_INVAL;
    self->rate = rate;
    self->burst = burst;
    self->idle_ms = s_idle_ms(rate, burst);
    /* Tokens above a lowered burst are cut at the next refill, which every take does
     * before it spends. */
    return CPN_OK;
}

size_t ratelimit_size(const ratelimit_t *self)
{
    return self ? self->n : 0;
}

uint64_t ratelimit_refused(const ratelimit_t *self)
{
    return self ? self->refused : 0;
}

uint64_t ratelimit_refused_full(const ratelimit_t *self)
{
    return self ? self->refused_full : 0;
}
