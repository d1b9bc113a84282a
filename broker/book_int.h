/* book_int.h - the offer book's index, shared by book.c (which maintains it) and match.c (which
 * reads it). Private to those two files: the daemon uses book.h only.
 *
 * Layout (why it is shaped so: see the comment at the top of book.c):
 *   class  = offers with the same (vendor, model, accelerator count, region, storage class,
 *            direct-or-relayed, cores bucket, memory bucket): everything the matcher checks
 *            once per group and every ranking bonus.
 *   partition = the classes of one (cores bucket, memory bucket, accelerator-count bucket),
 *            half octaves for cores and memory, octaves for the count; each lists its live
 *            classes (a copy of their hot fields) sorted by their cheapest entry with free
 *            units, and bitmaps say which partitions are non-empty, so a request visits only
 *            the non-empty partitions that can hold it. Classes are also listed per model,
 *            for requests that name one.
 *   shape  = within a class, offers with the same numeric hardware (cores, memory, per
 *            accelerator memory and TFLOPS, storage size, fabric, egress). A shape's entries
 *            are sorted by (price, peer key, package id); a bitmap marks entries with free > 0.
 *            A class's shapes are sorted by their cheapest entry with free units.
 *   entry  = one package: 32 bytes, pointing back at its peer slot and package index.
 */
#ifndef CPN_BOOK_INT_H
#define CPN_BOOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "book.h"

#define BOOK_NONE UINT32_MAX
#define BOOK_CB 48 /* cores buckets, half octaves: 0, 1, 2, 3, 4-5, 6-7, 8-11, 12-15, ... */
#define BOOK_MB 48 /* memory buckets, of whole GiB, likewise (the last ones hold the rest) */
#define BOOK_AB 8  /* accelerator-count buckets, octaves: 0, 1, 2-3, 4-7, ... */
#define BOOK_PARTS (BOOK_CB * BOOK_MB * BOOK_AB)

/* Octave bucket: 0 for 0, else the bit length (1 -> 1, 2-3 -> 2, 4-7 -> 3, ...). */
static inline uint32_t book__bucket(uint32_t v, uint32_t n)
{
    uint32_t b = v ? 32u - (uint32_t)__builtin_clz(v) : 0;
    return b < n ? b : n - 1;
}

/* Half-octave bucket (0, 1, 2, 3, 4-5, 6-7, 8-11, 12-15, ...), monotone in v. Half octaves
 * because the bucket a request falls in holds machines slightly too small for it, which the
 * matcher must look at and pass by; octaves left twice as many (measured on the trace). */
static inline uint32_t book__hbucket(uint32_t v, uint32_t n)
{
    if (v < 2)
        return v;
    uint32_t b = 32u - (uint32_t)__builtin_clz(v);
    uint32_t k = 2 * (b - 1) + ((v >> (b - 2)) & 1u);
    return k < n ? k : n - 1;
}

static inline uint32_t book__cores_bucket(uint32_t cores)
{
    return book__hbucket(cores, BOOK_CB);
}

static inline uint32_t book__mem_bucket(uint64_t mem_bytes)
{
    uint64_t gib = mem_bytes >> 30;
    return book__hbucket(gib > UINT32_MAX ? UINT32_MAX : (uint32_t)gib, BOOK_MB);
}

static inline uint32_t book__part_of(uint32_t cb, uint32_t mb, uint32_t ab)
{
    return (cb * BOOK_MB + mb) * BOOK_AB + ab;
}

static inline uint32_t book__part(uint32_t cores, uint64_t mem_bytes, uint32_t count)
{
    return book__part_of(book__cores_bucket(cores), book__mem_bucket(mem_bytes),
                         book__bucket(count, BOOK_AB));
}

typedef struct {
    uint64_t price;
    uint64_t key8; /* the peer key's first 8 bytes, big-endian: most ties end here */
    uint32_t peer; /* peer slot */
    uint32_t pkg;  /* index in the peer's packages */
    uint32_t free; /* mirror of the package's free units */
} book_ent_t;

typedef struct {
    /* Hot, read by the matcher for every shape it looks at: first. */
    uint64_t min_price; /* cheapest entry with free units (UINT64_MAX: none) */
    uint32_t n_free;    /* entries with free > 0 */
    uint32_t cores;
    uint64_t mem_bytes;
    uint64_t tflops;    /* per unit: count * bf16_each (saturated) */
    uint64_t accel_mem; /* per unit: count * accel_mem_each (saturated) */
    uint64_t storage_bytes;
    uint64_t fabric_bps;
    uint64_t egress_bps;
    book_ent_t *ents; /* sorted by (price, peer key, package id) */
    uint64_t *mask;   /* bit i set <=> ents[i].free > 0 */
    uint32_t n, cap;
    uint32_t cls;
    uint32_t pos; /* index in its class's shape list; BOOK_NONE while it has no entries */
    uint64_t accel_mem_each; /* key parts, per accelerator */
    uint32_t bf16_each;
    uint32_t share_min; /* key part: shared accelerators' smallest slice; 0 = whole units */
    uint32_t pending; /* entries reserved by a put in progress */
    bool used;
} book_shape_t;

/* What the matcher reads of every class it looks at. The class holds the authoritative copy;
 * its partition's order array holds another, so scanning a partition reads memory in order
 * instead of chasing one class struct per step (the difference is most of the tail latency
 * in a book of 1M packages). */
typedef struct {
    uint64_t min_price;                     /* min_price of its first listed shape */
    uint64_t max_mem;                       /* the largest of its listed shapes */
    uint32_t max_cores;                     /* likewise: a class too small is skipped whole */
    uint32_t n_free;                        /* entries with free > 0 */
    uint32_t vendor, model, region, sclass; /* interned, case-folded names */
    uint32_t count;                         /* accelerators per unit */
    uint32_t cls;                           /* the class */
    bool local;                             /* peers connected to us directly */
} book_hot_t;

typedef struct {
    book_hot_t h;
    uint32_t cb, mb; /* cores and memory buckets of its shapes */
    bool used;
    uint32_t *shapes; /* listed shapes, sorted by cheapest entry */
    uint32_t n_shapes, cap_shapes;
    uint32_t part;    /* its partition */
    uint32_t pos;     /* index in its partition's order; BOOK_NONE while no shape is listed */
    uint32_t mpos;    /* index in its model's class list */
    uint32_t n_owned; /* shapes that belong to the class, listed or not */
    uint32_t n_ents;  /* entries in all its shapes */
} book_class_t;

typedef struct {
    book_peer_t pub;
    cpn_package_t *pkgs; /* pub.packages, mutable */
    uint32_t *shape_of;  /* per package: its shape */
    void *block;         /* one allocation: packages, shape_of, shared ones' sums, frame */
    bool used;
} book_pslot_t;

typedef struct {
    book_hot_t *order; /* listed classes, sorted by (cheapest entry, class id) */
    uint32_t n, cap;
    uint32_t n_cls; /* classes of the partition, listed or not (cap >= n_cls) */
} book_part_t;

typedef struct {
    uint32_t *slot; /* id + 1; 0 empty; UINT32_MAX deleted */
    uint32_t *hash;
    size_t cap, used, dead;
} book_htab_t;

/* book_htab.c: equality of the id in a table with a key is the caller's. */
typedef bool (*book_eq_fn)(const book_t *b, uint32_t id, const void *key);
uint32_t book__ht_find(const book_t *b, const book_htab_t *t, uint32_t h, book_eq_fn eq,
                       const void *key);
int book__ht_reserve(book_htab_t *t); /* room for one more id: book__ht_add cannot fail then */
void book__ht_add(book_htab_t *t, uint32_t h, uint32_t id);
void book__ht_del(book_htab_t *t, uint32_t h, uint32_t id);
void book__ht_free(book_htab_t *t);

/* When a peer's entry expires (book_expire): a min-heap on `at`. An entry is stale once its
 * slot was re-advertised, forgotten or reused (the slot's expires_ms differs); stale entries
 * leave when they reach the top, and the heap is rebuilt from the slots when they outnumber
 * the live ones (BOOK_EXP_SLACK). */
typedef struct {
    uint64_t at;
    uint32_t peer; /* peer slot */
} book_exp_t;
#define BOOK_EXP_SLACK 2 /* rebuild above 2 x (peer slots in use) + 64 heap entries */

struct book {
    size_t max_offers;
    size_t n_packages;
    size_t n_live_peers;
    uint64_t free_units;
    uint64_t refused_full, replaced, expired;
    uint64_t next_expiry; /* no entry expires before this: book_expire returns at once */
    book_exp_t *exp;      /* the expiry heap */
    uint32_t n_exp, cap_exp;
    uint64_t expire_visits; /* heap entries book_expire looked at */
    uint64_t ent_moves;     /* entries shifted in shapes' arrays (insert, remove, re-price) */

    book_pslot_t *peers;
    uint32_t n_peers, cap_peers; /* slots in use up to n_peers (high water) */
    uint32_t *peer_free;
    uint32_t n_peer_free;
    book_htab_t peer_ht;

    char (*str)[CPN_NAME_MAX];
    uint32_t *str_ref;
    uint32_t n_str, cap_str;
    uint32_t *str_free;
    uint32_t n_str_free;
    book_htab_t str_ht;
    uint32_t **mcls; /* per interned name: the classes with that model */
    uint32_t *n_mcls, *cap_mcls;
    uint32_t cap_aux; /* capacity of str_ref, mcls, n_mcls, cap_mcls */

    book_class_t *cls;
    uint32_t n_cls, cap_cls;
    uint32_t *cls_free;
    uint32_t n_cls_free;
    size_t n_cls_live;
    book_htab_t cls_ht;
    book_part_t part[BOOK_PARTS];
    /* Non-empty partitions: cores buckets; memory buckets per cores bucket; accelerator
     * buckets per (cores, memory) bucket. */
    uint64_t ne_cb;
    uint64_t ne_mb[BOOK_CB];
    uint8_t ne_ab[BOOK_CB][BOOK_MB];

    book_shape_t *shp;
    uint32_t n_shp, cap_shp;
    uint32_t *shp_free;
    uint32_t n_shp_free;
    size_t n_shp_live;
    book_htab_t shp_ht;
};

/* The interned id of a name (compared case-insensitively), BOOK_NONE if no offer uses it. */
uint32_t book__str_find(const book_t *self, const char *name);

/* Price of the cheapest entry with free units of a listed shape / class (UINT64_MAX: none),
 * kept in the struct: one load. */
static inline uint64_t book__shape_min(const book_shape_t *s)
{
    return s->min_price;
}

static inline uint64_t book__class_min(const book_t *b, const book_class_t *c)
{
    (void)b;
    return c->h.min_price;
}

/* Total order of two entries: price, then peer key, then package id. */
int book__ent_cmp(const book_t *self, const book_ent_t *a, const book_ent_t *b);

#endif
