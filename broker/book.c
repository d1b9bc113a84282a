/* book.c - the offer book: peers' latest ADs and the index the matcher walks.
 *
 * Why this shape. A linear scan of 100k offers costs ~150 us a request; the matcher's goal is
 * p99 < 50 us with 1M packages. Offers are far from random: a federation sells a few hundred
 * kinds of machine, replicated across many peers and regions. So the index groups them:
 *
 *   class  (vendor, model, accelerator count, region, storage class, direct-or-relayed, cores
 *          and memory buckets): what the matcher checks once per group (names, count,
 *          residency) and every ranking bonus (preferred region, preferred vendor, direct
 *          peer), so the rank of an offer inside a class depends on its price alone.
 *   shape  inside a class, the numeric hardware (cores, memory, accelerator memory and
 *          TFLOPS, storage size, fabric, egress): hundreds of identical copies of one machine
 *          type collapse into one shape, checked once.
 *   entry  one package (32 bytes) in its shape's array, sorted by (price, peer key, package
 *          id) - the matcher's tie order - with a bitmap of entries that have free units, so
 *          runs of sold-out entries are skipped 64 at a time.
 *
 * Classes are listed in partitions by (cores, memory, accelerator-count) buckets, powers of
 * two: a request for 64 cores and 320 GiB never looks at the many cheap small machines, one
 * for GPUs never at the CPU-only ones; a request naming a model looks only at the classes of
 * that model and its equivalents (per-model lists). Shapes in a class and classes in a
 * partition are kept sorted by their cheapest entry, so the matcher visits the cheapest
 * groups first and stops as soon as no later group can beat the candidates it holds
 * (match.c). Measured on the trace (docs/BENCHMARKS.md): without partitions a CPU-only
 * request looked at ~4,900 shapes in a book of 100k packages.
 *
 * Keeping the orders costs, per changed package, a shift of the entries priced between its
 * old and new price in its shape (a package keeping its shape is moved, not removed and
 * inserted, and is known by its id wherever it sits in the AD); a refreshed AD whose packages
 * keep their shape and price (the common case) only rewrites free counts in place. A package
 * changing shape leaves one sorted array and enters another (a shift of the entries after
 * its places). book_stats.ent_moves counts the entries shifted. Names (vendor, model, region, storage class) are interned case-folded and
 * reference counted by classes; empty shapes and classes are released, so the index never
 * holds more groups than there are packages. The book is bounded by max_offers packages (and
 * as many peer entries). Nothing here allocates per match.
 */
#include <stdlib.h>
#include <string.h>

#include "book.h"
#include "book_int.h"
#include "book_mask.h"
#include "log.h"

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t s_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t s_hash_bytes(const void *p, size_t len)
{
    /* FNV-1a then a finaliser: the inputs are short names and a few integers. */
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return s_mix(h);
}

static void s_fold(const char *in, char out[CPN_NAME_MAX])
{
    size_t i = 0;
    for (; i < CPN_NAME_MAX - 1 && in[i] != '\0'; i++) {
        char c = in[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    memset(out + i, 0, CPN_NAME_MAX - i);
}

static uint64_t s_key8(const uint8_t key[CPN_PK_LEN])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | key[i];
    return v;
}

static uint64_t s_mul_sat(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a)
        return UINT64_MAX;
    return a * b;
}

static bool s_zero(const uint8_t *k)
{
    if (k == NULL)
        return true;
    for (int i = 0; i < CPN_PK_LEN; i++)
        if (k[i] != 0)
            return false;
    return true;
}

/* Grow *arr (elements of `size`) to hold at least `need`, doubling. */
static int s_grow(void **arr, uint32_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return CPN_OK;
    if (need > UINT32_MAX / 2)
        return CPN_E_NOMEM;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / size)
        return CPN_E_NOMEM;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL)
        return CPN_E_NOMEM;
    *arr = p;
    *cap = (uint32_t)ncap;
    return CPN_OK;
}

/* ---- slot allocation: a free stack over a growing array ---------------------------------- */

static int s_slot_alloc(void **arr, uint32_t *n, uint32_t *cap, uint32_t **freel, uint32_t *n_free,
                        size_t size, uint32_t *id)
{
    if (*n_free > 0) {
        *id = (*freel)[--*n_free];
        return CPN_OK;
    }
    int r = s_grow(arr, cap, (size_t)*n + 1, size);
    if (r != CPN_OK)
        return r;
    /* The free stack can hold every slot, so releasing never allocates. */
    uint32_t fcap = *cap;
    uint32_t *f = realloc(*freel, (size_t)fcap * sizeof *f);
    if (f == NULL)
        return CPN_E_NOMEM;
    *freel = f;
    *id = (*n)++;
    memset((char *)*arr + (size_t)*id * size, 0, size);
    return CPN_OK;
}

/* ---- interned names ---------------------------------------------------------------------- */

static bool s_str_eq(const book_t *b, uint32_t id, const void *key)
{
    return memcmp(b->str[id], key, CPN_NAME_MAX) == 0;
}

uint32_t book__str_find(const book_t *self, const char *name)
{
    char f[CPN_NAME_MAX];
    s_fold(name, f);
    return book__ht_find(self, &self->str_ht, (uint32_t)s_hash_bytes(f, CPN_NAME_MAX), s_str_eq, f);
}

/* The arrays kept per name follow the name table's capacity. */
static int s_str_grow(book_t *b)
{
    size_t n = b->cap_str;
    uint32_t *ref = realloc(b->str_ref, n * sizeof *ref);
    if (ref == NULL)
        return CPN_E_NOMEM;
    b->str_ref = ref;
    uint32_t *nm = realloc(b->n_mcls, n * sizeof *nm);
    if (nm == NULL)
        return CPN_E_NOMEM;
    b->n_mcls = nm;
    uint32_t *cm = realloc(b->cap_mcls, n * sizeof *cm);
    if (cm == NULL)
        return CPN_E_NOMEM;
    b->cap_mcls = cm;
    uint32_t **ml = realloc(b->mcls, n * sizeof *ml);
    if (ml == NULL)
        return CPN_E_NOMEM;
    b->mcls = ml;
    for (size_t i = b->cap_aux; i < n; i++) {
        ml[i] = NULL;
        nm[i] = cm[i] = 0;
    }
    b->cap_aux = (uint32_t)n;
    return CPN_OK;
}

static int s_str_ref(book_t *b, const char *name, uint32_t *id)
{
    char f[CPN_NAME_MAX];
    s_fold(name, f);
    uint32_t h = (uint32_t)s_hash_bytes(f, CPN_NAME_MAX);
    uint32_t i = book__ht_find(b, &b->str_ht, h, s_str_eq, f);
    int r;
    if (i == BOOK_NONE) {
        if ((r = book__ht_reserve(&b->str_ht)) != CPN_OK)
            return r;
        if ((r = s_slot_alloc((void **)&b->str, &b->n_str, &b->cap_str, &b->str_free,
                              &b->n_str_free, sizeof *b->str, &i)) != CPN_OK)
            return r;
        if (b->cap_aux < b->cap_str && (r = s_str_grow(b)) != CPN_OK) {
            b->str_free[b->n_str_free++] = i;
            return r;
        }
        b->n_mcls[i] = 0;
        memcpy(b->str[i], f, CPN_NAME_MAX);
        b->str_ref[i] = 0;
        book__ht_add(&b->str_ht, h, i);
    }
    b->str_ref[i]++;
    *id = i;
    return CPN_OK;
}

static void s_str_unref(book_t *b, uint32_t id)
{
    if (--b->str_ref[id] > 0)
        return;
    book__ht_del(&b->str_ht, (uint32_t)s_hash_bytes(b->str[id], CPN_NAME_MAX), id);
    b->str[id][0] = '\0';
    b->str_free[b->n_str_free++] = id;
}

/* ---- classes ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t vendor, model, region, sclass, count, cb, mb;
    bool local;
} s_ckey_t;

static uint32_t s_ckey_hash(const s_ckey_t *k)
{
    uint64_t h = s_mix(((uint64_t)k->vendor << 32) ^ k->model);
    h = s_mix(h ^ (((uint64_t)k->region << 32) | k->sclass));
    h = s_mix(h ^ (((uint64_t)k->count << 16) | ((uint64_t)k->mb << 8) | ((uint64_t)k->cb << 1) |
                   (k->local ? 1u : 0u)));
    return (uint32_t)h;
}

static bool s_cls_eq(const book_t *b, uint32_t id, const void *key)
{
    const s_ckey_t *k = key;
    const book_class_t *c = &b->cls[id];
    return c->h.vendor == k->vendor && c->h.model == k->model && c->h.region == k->region &&
           c->h.sclass == k->sclass && c->h.count == k->count && c->cb == k->cb && c->mb == k->mb &&
           c->h.local == k->local;
}

/* Class order: cheapest entry, then id (a total order, so positions are stable). */
static bool s_hot_less(const book_hot_t *x, const book_hot_t *y)
{
    return x->min_price < y->min_price || (x->min_price == y->min_price && x->cls < y->cls);
}

/* Move a listed class to its place in its partition and refresh the copy there. */
static void s_order_fix(book_t *b, uint32_t c)
{
    book_class_t *cl = &b->cls[c];
    book_part_t *pt = &b->part[cl->part];
    uint32_t pos = cl->pos;
    while (pos > 0 && s_hot_less(&cl->h, &pt->order[pos - 1])) {
        pt->order[pos] = pt->order[pos - 1];
        b->cls[pt->order[pos].cls].pos = pos;
        pos--;
    }
    while (pos + 1 < pt->n && s_hot_less(&pt->order[pos + 1], &cl->h)) {
        pt->order[pos] = pt->order[pos + 1];
        b->cls[pt->order[pos].cls].pos = pos;
        pos++;
    }
    pt->order[pos] = cl->h;
    cl->pos = pos;
}

/* Refresh the partition's copy of a class's hot fields (if it is listed). */
static void s_hot_sync(book_t *b, const book_class_t *c)
{
    if (c->pos != BOOK_NONE)
        b->part[c->part].order[c->pos] = c->h;
}

static int s_cls_get(book_t *b, const cpn_package_t *p, bool local, uint32_t *out)
{
    s_ckey_t k = {.count = p->accel.count,
                  .cb = book__cores_bucket(p->cores),
                  .mb = book__mem_bucket(p->mem_bytes),
                  .local = local};
    uint32_t ids[4] = {BOOK_NONE, BOOK_NONE, BOOK_NONE, BOOK_NONE};
    const char *names[4] = {p->accel.vendor, p->accel.model, p->region, p->storage_class};
    int r = CPN_OK;
    uint32_t id;

    for (int i = 0; i < 4; i++)
        if ((r = s_str_ref(b, names[i], &ids[i])) != CPN_OK)
            goto out;
    k.vendor = ids[0];
    k.model = ids[1];
    k.region = ids[2];
    k.sclass = ids[3];
    uint32_t h = s_ckey_hash(&k);
    id = book__ht_find(b, &b->cls_ht, h, s_cls_eq, &k);
    if (id != BOOK_NONE) {
        *out = id;
        goto out; /* the class already holds its references */
    }
    /* The partition's order can hold all its classes, so listing one never allocates. */
    uint32_t part = book__part(p->cores, p->mem_bytes, p->accel.count);
    book_part_t *pt = &b->part[part];
    if ((r = s_grow((void **)&pt->order, &pt->cap, (size_t)pt->n_cls + 1, sizeof *pt->order)) !=
            CPN_OK ||
        (r = s_grow((void **)&b->mcls[k.model], &b->cap_mcls[k.model],
                    (size_t)b->n_mcls[k.model] + 1, sizeof **b->mcls)) != CPN_OK ||
        (r = book__ht_reserve(&b->cls_ht)) != CPN_OK ||
        (r = s_slot_alloc((void **)&b->cls, &b->n_cls, &b->cap_cls, &b->cls_free, &b->n_cls_free,
                          sizeof *b->cls, &id)) != CPN_OK)
        goto out;
    pt->n_cls++;
    book_class_t *c = &b->cls[id];
    memset(c, 0, sizeof *c);
    c->h.vendor = k.vendor;
    c->h.model = k.model;
    c->h.region = k.region;
    c->h.sclass = k.sclass;
    c->h.count = k.count;
    c->cb = k.cb;
    c->mb = k.mb;
    c->part = part;
    c->mpos = b->n_mcls[k.model];
    b->mcls[k.model][b->n_mcls[k.model]++] = id;
    c->h.local = k.local;
    c->h.cls = id;
    c->used = true;
    c->pos = BOOK_NONE;
    book__ht_add(&b->cls_ht, h, id);
    b->n_cls_live++;
    *out = id;
    return CPN_OK; /* keeps the four references */
out:
    for (int i = 0; i < 4; i++)
        if (ids[i] != BOOK_NONE)
            s_str_unref(b, ids[i]);
    return r;
}

static void s_cls_release(book_t *b, uint32_t id)
{
    book_class_t *c = &b->cls[id];
    s_ckey_t k = {c->h.vendor, c->h.model, c->h.region, c->h.sclass,
                  c->h.count,  c->cb,      c->mb,       c->h.local};
    book__ht_del(&b->cls_ht, s_ckey_hash(&k), id);
    b->part[c->part].n_cls--;
    uint32_t *ml = b->mcls[c->h.model], last = ml[--b->n_mcls[c->h.model]];
    ml[c->mpos] = last;
    b->cls[last].mpos = c->mpos;
    s_str_unref(b, c->h.vendor);
    s_str_unref(b, c->h.model);
    s_str_unref(b, c->h.region);
    s_str_unref(b, c->h.sclass);
    free(c->shapes);
    memset(c, 0, sizeof *c);
    b->cls_free[b->n_cls_free++] = id;
    b->n_cls_live--;
}

/* ---- shapes ------------------------------------------------------------------------------- */

typedef struct {
    uint32_t cls, cores, bf16_each, share_min;
    uint64_t mem_bytes, accel_mem_each, storage_bytes, fabric_bps, egress_bps;
} s_skey_t;

static uint32_t s_skey_hash(const s_skey_t *k)
{
    uint64_t h = s_mix(((uint64_t)k->cls << 32) ^ k->cores);
    h = s_mix(h ^ k->mem_bytes ^ ((uint64_t)k->bf16_each << 40));
    h = s_mix(h ^ k->accel_mem_each);
    h = s_mix(h ^ k->storage_bytes);
    h = s_mix(h ^ k->fabric_bps);
    h = s_mix(h ^ k->egress_bps ^ ((uint64_t)k->share_min << 52));
    return (uint32_t)h;
}

static bool s_shp_eq(const book_t *b, uint32_t id, const void *key)
{
    const s_skey_t *k = key;
    const book_shape_t *s = &b->shp[id];
    return s->cls == k->cls && s->cores == k->cores && s->bf16_each == k->bf16_each &&
           s->mem_bytes == k->mem_bytes && s->accel_mem_each == k->accel_mem_each &&
           s->storage_bytes == k->storage_bytes && s->fabric_bps == k->fabric_bps &&
           s->egress_bps == k->egress_bps && s->share_min == k->share_min;
}

static void s_skey(uint32_t cls, const cpn_package_t *p, s_skey_t *k)
{
    memset(k, 0, sizeof *k);
    k->cls = cls;
    k->cores = p->cores;
    k->bf16_each = p->accel.bf16_tflops;
    k->mem_bytes = p->mem_bytes;
    k->accel_mem_each = p->accel.mem_bytes;
    k->storage_bytes = p->storage_bytes;
    k->fabric_bps = p->fabric_bps;
    k->egress_bps = p->egress_bps;
    k->share_min = p->accel.share_min;
}

static bool s_shp_less(const book_t *b, uint32_t x, uint32_t y)
{
    uint64_t px = book__shape_min(&b->shp[x]), py = book__shape_min(&b->shp[y]);
    return px < py || (px == py && x < y);
}

/* Restore the order of a listed shape in its class, then of the class in `order`. */
static void s_shape_fix(book_t *b, uint32_t s)
{
    book_class_t *c = &b->cls[b->shp[s].cls];
    uint32_t pos = b->shp[s].pos;
    while (pos > 0 && s_shp_less(b, s, c->shapes[pos - 1])) {
        c->shapes[pos] = c->shapes[pos - 1];
        b->shp[c->shapes[pos]].pos = pos;
        pos--;
    }
    while (pos + 1 < c->n_shapes && s_shp_less(b, c->shapes[pos + 1], s)) {
        c->shapes[pos] = c->shapes[pos + 1];
        b->shp[c->shapes[pos]].pos = pos;
        pos++;
    }
    c->shapes[pos] = s;
    b->shp[s].pos = pos;
    c->h.min_price = b->shp[c->shapes[0]].min_price;
    s_order_fix(b, b->shp[s].cls);
}

/* Find or create the shape of package p (class included); reserve room for one more entry. */
static int s_shape_get(book_t *b, const cpn_package_t *p, bool local, uint32_t *out)
{
    uint32_t cls = BOOK_NONE, id = BOOK_NONE;
    s_skey_t k;
    int r;

    if ((r = s_cls_get(b, p, local, &cls)) != CPN_OK)
        return r;
    s_skey(cls, p, &k);
    uint32_t h = s_skey_hash(&k);
    id = book__ht_find(b, &b->shp_ht, h, s_shp_eq, &k);
    if (id == BOOK_NONE) {
        book_class_t *c = &b->cls[cls];
        if ((r = book__ht_reserve(&b->shp_ht)) != CPN_OK ||
            (r = s_grow((void **)&c->shapes, &c->cap_shapes, (size_t)c->n_owned + 1,
                        sizeof *c->shapes)) != CPN_OK ||
            (r = s_slot_alloc((void **)&b->shp, &b->n_shp, &b->cap_shp, &b->shp_free,
                              &b->n_shp_free, sizeof *b->shp, &id)) != CPN_OK)
            goto fail_cls;
        book_shape_t *s = &b->shp[id];
        memset(s, 0, sizeof *s);
        s->cls = cls;
        s->pos = BOOK_NONE;
        s->used = true;
        s->cores = k.cores;
        s->mem_bytes = k.mem_bytes;
        s->accel_mem_each = k.accel_mem_each;
        s->bf16_each = k.bf16_each;
        s->tflops = s_mul_sat(c->h.count, k.bf16_each);
        s->accel_mem = s_mul_sat(c->h.count, k.accel_mem_each);
        s->storage_bytes = k.storage_bytes;
        s->fabric_bps = k.fabric_bps;
        s->egress_bps = k.egress_bps;
        s->share_min = k.share_min;
        book__ht_add(&b->shp_ht, h, id);
        c->n_owned++;
        b->n_shp_live++;
    }
    book_shape_t *s = &b->shp[id];
    size_t need = (size_t)s->n + s->pending + 1;
    uint32_t cap = s->cap;
    if ((r = s_grow((void **)&s->ents, &s->cap, need, sizeof *s->ents)) != CPN_OK)
        goto fail_shape;
    if (s->cap != cap) {
        size_t words = ((size_t)s->cap + 63) / 64;
        uint64_t *m = realloc(s->mask, words * sizeof *m);
        if (m == NULL) {
            r = CPN_E_NOMEM;
            goto fail_shape;
        }
        size_t old = ((size_t)cap + 63) / 64;
        memset(m + old, 0, (words - old) * sizeof *m);
        s->mask = m;
    }
    s->pending++;
    *out = id;
    return CPN_OK;
fail_shape:
    /* The shape stays (maybe empty); the caller's clean-up releases empty shapes. */
    *out = id;
    return r;
fail_cls:
    if (b->cls[cls].n_owned == 0)
        s_cls_release(b, cls);
    return r;
}

/* Release a shape with no entries (and its class if that was its last shape). */
static void s_shape_gc(book_t *b, uint32_t id)
{
    book_shape_t *s = &b->shp[id];
    if (!s->used || s->n > 0 || s->pending > 0)
        return;
    s_skey_t k = {.cls = s->cls,
                  .cores = s->cores,
                  .bf16_each = s->bf16_each,
                  .mem_bytes = s->mem_bytes,
                  .accel_mem_each = s->accel_mem_each,
                  .storage_bytes = s->storage_bytes,
                  .fabric_bps = s->fabric_bps,
                  .egress_bps = s->egress_bps,
                  .share_min = s->share_min};
    uint32_t cls = s->cls;
    book__ht_del(&b->shp_ht, s_skey_hash(&k), id);
    free(s->ents);
    free(s->mask);
    memset(s, 0, sizeof *s);
    b->shp_free[b->n_shp_free++] = id;
    b->n_shp_live--;
    if (--b->cls[cls].n_owned == 0)
        s_cls_release(b, cls);
}

/* ---- entries: sorted arrays with a free bitmap --------------------------------------------- */

int book__ent_cmp(const book_t *self, const book_ent_t *a, const book_ent_t *b)
{
    if (a->price != b->price)
        return a->price < b->price ? -1 : 1;
    if (a->key8 != b->key8)
        return a->key8 < b->key8 ? -1 : 1;
    if (a->peer != b->peer) {
        int c = memcmp(self->peers[a->peer].pub.key, self->peers[b->peer].pub.key, CPN_PK_LEN);
        if (c != 0)
            return c;
    }
    if (a->pkg == b->pkg)
        return 0;
    int c = strcmp(self->peers[a->peer].pkgs[a->pkg].id, self->peers[b->peer].pkgs[b->pkg].id);
    return c != 0 ? c : (a->pkg < b->pkg ? -1 : 1);
}

/* First index in [lo, hi) whose entry is not less than e (hi if none). */
static uint32_t s_lower_in(const book_t *b, const book_shape_t *s, const book_ent_t *e, uint32_t lo,
                           uint32_t hi)
{
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (book__ent_cmp(b, &s->ents[mid], e) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index whose entry is not less than e. */
static uint32_t s_lower(const book_t *b, const book_shape_t *s, const book_ent_t *e)
{
    return s_lower_in(b, s, e, 0, s->n);
}

/* Keep the non-empty bitmaps of partitions in step as one becomes (non-)empty. */
static void s_part_mark(book_t *b, const book_class_t *c, bool nonempty)
{
    uint32_t ab = book__bucket(c->h.count, BOOK_AB);
    if (nonempty) {
        b->ne_ab[c->cb][c->mb] |= (uint8_t)(1u << ab);
        b->ne_mb[c->cb] |= UINT64_C(1) << c->mb;
        b->ne_cb |= UINT64_C(1) << c->cb;
        return;
    }
    b->ne_ab[c->cb][c->mb] &= (uint8_t) ~(1u << ab);
    if (b->ne_ab[c->cb][c->mb] == 0)
        b->ne_mb[c->cb] &= ~(UINT64_C(1) << c->mb);
    if (b->ne_mb[c->cb] == 0)
        b->ne_cb &= ~(UINT64_C(1) << c->cb);
}

/* The price of a shape's cheapest entry with free units (UINT64_MAX if none): what the
 * matcher can still get from it. Sold-out entries must not make a group look cheap, or a
 * drained book is scanned group by group for nothing (measured: p50 4 -> 11 us at 1M). */
static uint64_t s_free_min(const book_shape_t *s)
{
    uint32_t nw = (s->n + 63) / 64;
    for (uint32_t w = 0; w < nw; w++)
        if (s->mask[w] != 0)
            return s->ents[w * 64 + (uint32_t)__builtin_ctzll(s->mask[w])].price;
    return UINT64_MAX;
}

/* After a shape changed: re-place it (and its class) if its minimum moved, else refresh the
 * class's hot copy. */
static void s_shape_changed(book_t *b, uint32_t sid, bool force)
{
    book_shape_t *s = &b->shp[sid];
    uint64_t m = s_free_min(s);
    if (force || m != s->min_price) {
        s->min_price = m;
        s_shape_fix(b, sid);
    } else {
        s_hot_sync(b, &b->cls[s->cls]);
    }
}

static void s_ent_insert(book_t *b, uint32_t sid, const book_ent_t *e)
{
    book_shape_t *s = &b->shp[sid];
    book_class_t *c = &b->cls[s->cls];
    uint32_t pos = s_lower(b, s, e);
    bool was_empty = s->n == 0;
    memmove(&s->ents[pos + 1], &s->ents[pos], (size_t)(s->n - pos) * sizeof *s->ents);
    b->ent_moves += s->n - pos;
    s->ents[pos] = *e;
    book_mask_insert(s->mask, s->n, pos, e->free > 0);
    s->n++;
    s->pending--;
    c->n_ents++;
    if (e->free > 0) {
        s->n_free++;
        c->h.n_free++;
    }
    if (was_empty) {
        if (c->n_shapes == 0) {
            book_part_t *pt = &b->part[c->part];
            c->pos = pt->n;
            pt->order[pt->n++] = c->h; /* placed by s_shape_fix below */
            if (pt->n == 1)
                s_part_mark(b, c, true);
        }
        s->pos = c->n_shapes;
        c->shapes[c->n_shapes++] = sid;
        if (s->cores > c->h.max_cores)
            c->h.max_cores = s->cores;
        if (s->mem_bytes > c->h.max_mem)
            c->h.max_mem = s->mem_bytes;
    }
    s_shape_changed(b, sid, was_empty);
}

static void s_unlist_shape(book_t *b, uint32_t sid)
{
    book_shape_t *s = &b->shp[sid];
    book_class_t *c = &b->cls[s->cls];
    for (uint32_t i = s->pos; i + 1 < c->n_shapes; i++) {
        c->shapes[i] = c->shapes[i + 1];
        b->shp[c->shapes[i]].pos = i;
    }
    c->n_shapes--;
    s->pos = BOOK_NONE;
    c->h.max_cores = 0;
    c->h.max_mem = 0;
    for (uint32_t i = 0; i < c->n_shapes; i++) {
        const book_shape_t *o = &b->shp[c->shapes[i]];
        if (o->cores > c->h.max_cores)
            c->h.max_cores = o->cores;
        if (o->mem_bytes > c->h.max_mem)
            c->h.max_mem = o->mem_bytes;
    }
    if (c->n_shapes == 0) {
        book_part_t *pt = &b->part[c->part];
        for (uint32_t i = c->pos; i + 1 < pt->n; i++) {
            pt->order[i] = pt->order[i + 1];
            b->cls[pt->order[i].cls].pos = i;
        }
        pt->n--;
        c->pos = BOOK_NONE;
        if (pt->n == 0)
            s_part_mark(b, c, false);
    } else {
        c->h.min_price = b->shp[c->shapes[0]].min_price;
        s_order_fix(b, s->cls);
    }
}

static void s_ent_remove(book_t *b, uint32_t sid, const book_ent_t *e)
{
    book_shape_t *s = &b->shp[sid];
    book_class_t *c = &b->cls[s->cls];
    uint32_t pos = s_lower(b, s, e);
    if (pos >= s->n || book__ent_cmp(b, &s->ents[pos], e) != 0) {
        log_error("book", "index out of step: entry not found"); /* a bug, not input */
        return;
    }
    if (s->ents[pos].free > 0) {
        s->n_free--;
        c->h.n_free--;
    }
    memmove(&s->ents[pos], &s->ents[pos + 1], (size_t)(s->n - pos - 1) * sizeof *s->ents);
    b->ent_moves += s->n - pos - 1;
    book_mask_remove(s->mask, s->n, pos);
    s->n--;
    c->n_ents--;
    if (s->n == 0)
        s_unlist_shape(b, sid);
    else
        s_shape_changed(b, sid, false);
}

/* Set an entry's free units in place (its sort key does not change). */
static void s_ent_set_free(book_t *b, uint32_t sid, const book_ent_t *e, uint32_t nfree)
{
    book_shape_t *s = &b->shp[sid];
    book_class_t *c = &b->cls[s->cls];
    uint32_t pos = s_lower(b, s, e);
    if (pos >= s->n || book__ent_cmp(b, &s->ents[pos], e) != 0) {
        log_error("book", "index out of step: entry not found");
        return;
    }
    bool was = s->ents[pos].free > 0, now = nfree > 0;
    s->ents[pos].free = nfree;
    if (was != now) {
        book_mask_set(s->mask, pos, now);
        int d = now ? 1 : -1;
        s->n_free += (uint32_t)d;
        c->h.n_free += (uint32_t)d;
        s_shape_changed(b, sid, false);
    }
}

/* Re-price an entry within its shape, with `nfree` free units: it moves past the entries
 * priced between its old and new price only (a memmove of those), not the rest of the shape. */
static void s_ent_move(book_t *b, uint32_t sid, const book_ent_t *e, uint64_t price, uint32_t nfree)
{
    book_shape_t *s = &b->shp[sid];
    book_class_t *c = &b->cls[s->cls];
    uint32_t p = s_lower(b, s, e), q;
    if (p >= s->n || book__ent_cmp(b, &s->ents[p], e) != 0) {
        log_error("book", "index out of step: entry not found");
        return;
    }
    book_ent_t m = s->ents[p];
    bool was = m.free > 0, now = nfree > 0;
    m.price = price;
    m.free = nfree;
    if (book__ent_cmp(b, &m, e) > 0) { /* up: entries (p, q) shift down one */
        q = s_lower_in(b, s, &m, p + 1, s->n) - 1;
        memmove(&s->ents[p], &s->ents[p + 1], (size_t)(q - p) * sizeof *s->ents);
        if (q > p)
            book_mask_slide(s->mask, p, q - 1, true);
    } else { /* down: entries [q, p) shift up one */
        q = s_lower_in(b, s, &m, 0, p);
        memmove(&s->ents[q + 1], &s->ents[q], (size_t)(p - q) * sizeof *s->ents);
        if (p > q)
            book_mask_slide(s->mask, q + 1, p, false);
    }
    b->ent_moves += q > p ? q - p : p - q;
    s->ents[q] = m;
    book_mask_set(s->mask, q, now);
    if (was != now) {
        int d = now ? 1 : -1;
        s->n_free += (uint32_t)d;
        c->h.n_free += (uint32_t)d;
    }
    s_shape_changed(b, sid, false);
}

static void s_ent_of(const book_t *b, uint32_t peer, uint32_t pkg, book_ent_t *e)
{
    const book_pslot_t *ps = &b->peers[peer];
    e->price = ps->pkgs[pkg].price;
    e->key8 = s_key8(ps->pub.key);
    e->peer = peer;
    e->pkg = pkg;
    e->free = ps->pkgs[pkg].free;
}

/* Take every package of a peer out of the index. */
static void s_peer_unindex(book_t *b, uint32_t peer)
{
    book_pslot_t *ps = &b->peers[peer];
    for (uint32_t i = 0; i < ps->pub.n_packages; i++) {
        book_ent_t e;
        s_ent_of(b, peer, i, &e);
        b->free_units -= ps->pkgs[i].free;
        s_ent_remove(b, ps->shape_of[i], &e);
    }
    for (uint32_t i = 0; i < ps->pub.n_packages; i++)
        s_shape_gc(b, ps->shape_of[i]);
    b->n_packages -= ps->pub.n_packages;
}

/* ---- peers -------------------------------------------------------------------------------- */

static bool s_peer_eq(const book_t *b, uint32_t id, const void *key)
{
    return memcmp(b->peers[id].pub.key, key, CPN_PK_LEN) == 0;
}

static uint32_t s_peer_hash(const uint8_t key[CPN_PK_LEN])
{
    return (uint32_t)s_hash_bytes(key, CPN_PK_LEN);
}

static uint32_t s_peer_find(const book_t *b, const uint8_t key[CPN_PK_LEN])
{
    return book__ht_find(b, &b->peer_ht, s_peer_hash(key), s_peer_eq, key);
}

static void s_peer_release(book_t *b, uint32_t id)
{
    book_pslot_t *ps = &b->peers[id];
    book__ht_del(&b->peer_ht, s_peer_hash(ps->pub.key), id);
    free(ps->block);
    memset(ps, 0, sizeof *ps);
    b->peer_free[b->n_peer_free++] = id;
}

static bool s_name_ok(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int s_ad_check(const cpn_ad_t *ad)
{
    if (ad->n_packages > CPN_PACKAGES_MAX || (ad->n_packages > 0 && ad->packages == NULL))
        return CPN_E_INVAL;
    for (uint32_t i = 0; i < ad->n_packages; i++) {
        const cpn_package_t *p = &ad->packages[i];
        if (p->id[0] == '\0' || !s_name_ok(p->id, sizeof p->id) ||
            !s_name_ok(p->accel.vendor, sizeof p->accel.vendor) ||
            !s_name_ok(p->accel.model, sizeof p->accel.model) ||
            !s_name_ok(p->region, sizeof p->region) ||
            !s_name_ok(p->storage_class, sizeof p->storage_class) || p->free > p->total)
            return CPN_E_INVAL;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(ad->packages[j].id, p->id) == 0)
                return CPN_E_INVAL;
    }
    return CPN_OK;
}

/* ---- public ------------------------------------------------------------------------------- */

/* ---- expiry heap ------------------------------------------------------------------------- */

static void s_exp_down(book_exp_t *h, uint32_t n, uint32_t i)
{
    book_exp_t x = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1].at < h[c].at)
            c++;
        if (h[c].at >= x.at)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Room for one more entry: the only step that can fail, taken before a put changes anything. */
static int s_exp_reserve(book_t *b)
{
    return s_grow((void **)&b->exp, &b->cap_exp, (size_t)b->n_exp + 1, sizeof *b->exp);
}

/* The heap again from the slots in use, when stale entries outnumber live ones: O(peers), paid
 * for by the puts that made them. Needs no memory. */
static void s_exp_rebuild(book_t *b)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n_peers && n < b->cap_exp; i++)
        if (b->peers[i].used)
            b->exp[n++] = (book_exp_t){b->peers[i].pub.expires_ms, i};
    b->n_exp = n;
    for (uint32_t i = n / 2; i-- > 0;)
        s_exp_down(b->exp, n, i);
}

/* Push (room reserved by s_exp_reserve). */
static void s_exp_push(book_t *b, uint64_t at, uint32_t peer)
{
    uint32_t i = b->n_exp++;
    while (i && b->exp[(i - 1) / 2].at > at) {
        b->exp[i] = b->exp[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    b->exp[i] = (book_exp_t){at, peer};
    uint32_t live = b->n_peers - b->n_peer_free;
    if (b->n_exp > BOOK_EXP_SLACK * live + 64)
        s_exp_rebuild(b);
    b->next_expiry = b->exp[0].at;
}

book_t *book_new(size_t max_offers)
{
    if (max_offers == 0 || max_offers > UINT32_MAX / 4)
        return NULL;
    book_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->max_offers = max_offers;
    b->next_expiry = UINT64_MAX;
    return b;
}

void book_destroy(book_t **self_p)
{
    if (self_p == NULL || *self_p == NULL)
        return;
    book_t *b = *self_p;
    for (uint32_t i = 0; i < b->n_peers; i++)
        free(b->peers[i].block);
    for (uint32_t i = 0; i < b->n_shp; i++) {
        free(b->shp[i].ents);
        free(b->shp[i].mask);
    }
    for (uint32_t i = 0; i < b->n_cls; i++)
        free(b->cls[i].shapes);
    free(b->peers);
    free(b->peer_free);
    free(b->exp);
    for (uint32_t i = 0; i < b->n_str; i++)
        free(b->mcls[i]);
    free(b->mcls);
    free(b->n_mcls);
    free(b->cap_mcls);
    free(b->str);
    free(b->str_ref);
    free(b->str_free);
    free(b->cls);
    free(b->cls_free);
    for (int i = 0; i < BOOK_PARTS; i++)
        free(b->part[i].order);
    free(b->shp);
    free(b->shp_free);
    book__ht_free(&b->peer_ht);
    book__ht_free(&b->str_ht);
    book__ht_free(&b->cls_ht);
    book__ht_free(&b->shp_ht);
    free(b);
    *self_p = NULL;
}

/* Give back the room reserved in the shapes of n packages (and release shapes left empty). */
static void s_put_unreserve(book_t *self, const uint32_t *shape_of, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        self->shp[shape_of[i]].pending--;
    for (uint32_t i = 0; i < n; i++)
        s_shape_gc(self, shape_of[i]);
}

/* A peer's block, one malloc: its packages, their shapes, the summary lists of its shared
 * packages (each shared package's `sum` points there, unshared ones have none: the block is
 * their one owner, and the 184 bytes are paid by shared packages only), then its frame. */
typedef struct {
    size_t shapes, sums, frame, size; /* offsets of the parts, and the whole size */
} s_layout_t;

static s_layout_t s_layout(const cpn_ad_t *ad, size_t len)
{
    size_t n = ad->n_packages, n_shared = 0;
    for (size_t i = 0; i < n; i++)
        n_shared += ad->packages[i].accel.share_min != 0;
    s_layout_t l;
    l.shapes = n * sizeof(cpn_package_t);
    l.sums = l.shapes + n * sizeof(uint32_t);
    l.frame = l.sums + n_shared * sizeof(cpn_slice_sum_t);
    l.size = l.frame + len + 1;
    return l;
}

/* Copy the AD's packages into the block, each shared one with its own copy of its lists (a
 * refusal note starts as the AD has it: none, for a decoded AD). */
static void s_put_copy(uint8_t *block, const s_layout_t *l, const cpn_ad_t *ad)
{
    cpn_package_t *pkgs = (cpn_package_t *)(void *)block;
    cpn_slice_sum_t *sums = (cpn_slice_sum_t *)(void *)(block + l->sums);
    if (ad->n_packages > 0)
        memcpy(pkgs, ad->packages, l->shapes);
    for (uint32_t i = 0, k = 0; i < ad->n_packages; i++) {
        const cpn_slice_sum_t *from = ad->packages[i].sum;
        pkgs[i].sum = NULL;
        if (!pkgs[i].accel.share_min)
            continue;
        if (from)
            sums[k] = *from;
        else
            memset(&sums[k], 0, sizeof sums[k]);
        pkgs[i].sum = &sums[k++];
    }
}

/* book_put_ad's step 1: the new block (*block_p, malloc'd; its layout *lay_p), the shape of
 * every package with room reserved, a slot in the expiry heap. On an error nothing is held. */
static int s_put_reserve(book_t *self, const cpn_ad_t *ad, bool local, const uint8_t *frame,
                         size_t len, uint8_t **block_p, s_layout_t *lay_p)
{
    uint32_t n = ad->n_packages, n_reserved = 0;
    s_layout_t lay = s_layout(ad, len);
    uint8_t *block = malloc(lay.size);
    if (block == NULL)
        return CPN_E_NOMEM;
    cpn_package_t *pkgs = (cpn_package_t *)(void *)block;
    uint32_t *shape_of = (uint32_t *)(void *)(block + lay.shapes);
    s_put_copy(block, &lay, ad);
    if (len > 0)
        memcpy(block + lay.frame, frame, len);
    int r = CPN_OK;
    for (uint32_t i = 0; i < n && r == CPN_OK; i++) {
        uint32_t sid = BOOK_NONE;
        r = s_shape_get(self, &pkgs[i], local, &sid);
        if (r != CPN_OK && sid != BOOK_NONE)
            s_shape_gc(self, sid);
        if (r == CPN_OK)
            shape_of[n_reserved++] = sid;
    }
    if (r == CPN_OK)
        r = s_exp_reserve(self);
    if (r != CPN_OK) {
        s_put_unreserve(self, shape_of, n_reserved);
        free(block);
        return r;
    }
    *block_p = block;
    *lay_p = lay;
    return CPN_OK;
}

/* For each new package j, the index of the old package with the same id in from[j]
 * (BOOK_NONE: a new id). Ids are unique within an AD (s_ad_check). Positions first (an AD
 * usually lists its packages in the same order); a small hash of the old ids otherwise. */
static void s_pair(const cpn_package_t *old, uint32_t n_old, const cpn_package_t *nw,
                   uint32_t n_new, uint32_t *from)
{
    bool all = true;
    for (uint32_t j = 0; j < n_new; j++) {
        from[j] = j < n_old && strcmp(old[j].id, nw[j].id) == 0 ? j : BOOK_NONE;
        all = all && from[j] != BOOK_NONE;
    }
    if (all || n_old == 0)
        return;
    uint16_t slot[2 * CPN_PACKAGES_MAX]; /* old index + 1; 0 empty. Load <= 1/2 */
    const uint32_t mask = 2 * CPN_PACKAGES_MAX - 1;
    memset(slot, 0, sizeof slot);
    for (uint32_t i = 0; i < n_old; i++) {
        uint32_t h = (uint32_t)s_hash_bytes(old[i].id, strlen(old[i].id)) & mask;
        while (slot[h])
            h = (h + 1) & mask;
        slot[h] = (uint16_t)(i + 1);
    }
    for (uint32_t j = 0; j < n_new; j++) {
        if (from[j] != BOOK_NONE)
            continue;
        uint32_t h = (uint32_t)s_hash_bytes(nw[j].id, strlen(nw[j].id)) & mask;
        for (; slot[h]; h = (h + 1) & mask)
            if (strcmp(old[slot[h] - 1].id, nw[j].id) == 0) {
                from[j] = slot[h] - 1u;
                break;
            }
    }
}

/* book_put_ad's step 2 for the old packages of peer slot `id` (still in the slot): each kept
 * by a new package of the same id and shape (kept[j]) is updated in place or re-priced within
 * its shape; the others leave the index. The old block stays live for the comparisons. at[j]:
 * where kept[j]'s entry stands then (nothing moves it until the new packages are inserted),
 * so that its package index is set directly once the new block is in. */
static void s_put_old(book_t *self, uint32_t id, const cpn_package_t *pkgs, uint32_t n_new,
                      const uint32_t *shape_of, const uint32_t *from, bool *kept, uint32_t *at)
{
    book_pslot_t *ps = &self->peers[id];
    uint32_t n_old = ps->pub.n_packages, to[CPN_PACKAGES_MAX];
    for (uint32_t i = 0; i < n_old; i++)
        to[i] = BOOK_NONE;
    for (uint32_t j = 0; j < n_new; j++)
        if (from[j] != BOOK_NONE && shape_of[j] == ps->shape_of[from[j]])
            to[from[j]] = j;
    for (uint32_t i = 0; i < n_old; i++) {
        book_ent_t e;
        uint32_t j = to[i];
        s_ent_of(self, id, i, &e);
        self->free_units -= ps->pkgs[i].free;
        if (j == BOOK_NONE)
            s_ent_remove(self, ps->shape_of[i], &e);
        else if (pkgs[j].price == ps->pkgs[i].price)
            s_ent_set_free(self, shape_of[j], &e, pkgs[j].free);
        else
            s_ent_move(self, shape_of[j], &e, pkgs[j].price, pkgs[j].free);
        if (j != BOOK_NONE)
            kept[j] = true;
    }
    for (uint32_t j = 0; j < n_new; j++) {
        if (!kept[j])
            continue;
        book_ent_t e;
        s_ent_of(self, id, from[j], &e);
        e.price = pkgs[j].price;
        at[j] = s_lower(self, &self->shp[shape_of[j]], &e);
    }
}

int book_put_ad(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq, uint64_t ts_ms,
                const cpn_ad_t *ad, const uint8_t *frame, size_t len, const uint8_t via[CPN_PK_LEN],
                uint32_t hops)
{
    if (self == NULL || peer == NULL || ad == NULL || (frame == NULL && len > 0))
        return CPN_E_INVAL;
    int r;
    if ((r = s_ad_check(ad)) != CPN_OK)
        return r;

    uint32_t id = s_peer_find(self, peer);
    bool fresh = id == BOOK_NONE;
    uint32_t n_new = ad->n_packages, n_old = 0;
    if (!fresh) {
        if (seq <= self->peers[id].pub.seq)
            return CPN_E_REPLAY;
        n_old = self->peers[id].pub.n_packages;
    }
    if (self->n_packages - n_old + n_new > self->max_offers ||
        (fresh && (size_t)self->n_peers - self->n_peer_free >= self->max_offers)) {
        self->refused_full++;
        return CPN_E_BUSY;
    }
    bool local = s_zero(via);

    /* 1. Everything that can fail: the block, shapes with reserved room, the peer slot. */
    uint8_t *block = NULL;
    s_layout_t lay;
    if ((r = s_put_reserve(self, ad, local, frame, len, &block, &lay)) != CPN_OK)
        return r;
    cpn_package_t *pkgs = (cpn_package_t *)(void *)block;
    uint32_t *shape_of = (uint32_t *)(void *)(block + lay.shapes);
    uint8_t *fcopy = block + lay.frame;
    if (fresh) {
        if ((r = book__ht_reserve(&self->peer_ht)) != CPN_OK ||
            (r = s_slot_alloc((void **)&self->peers, &self->n_peers, &self->cap_peers,
                              &self->peer_free, &self->n_peer_free, sizeof *self->peers, &id)) !=
                CPN_OK)
            goto fail;
        book_pslot_t *ps = &self->peers[id];
        memset(ps, 0, sizeof *ps);
        ps->used = true;
        memcpy(ps->pub.key, peer, CPN_PK_LEN);
        book__ht_add(&self->peer_ht, s_peer_hash(peer), id);
    }

    /* 2. Nothing below fails. A package is known by its id, wherever it sits in the AD: one
     * keeping its shape is updated in place (its free units) or moved within the shape (its
     * price); the others leave and enter the index. */
    book_pslot_t *ps = &self->peers[id];
    uint32_t from[CPN_PACKAGES_MAX], at[CPN_PACKAGES_MAX];
    bool kept[CPN_PACKAGES_MAX];
    memset(kept, 0, sizeof kept);
    if (!fresh) {
        s_pair(ps->pkgs, n_old, pkgs, n_new, from);
        s_put_old(self, id, pkgs, n_new, shape_of, from, kept, at);
        if (!ps->pub.withdrawn)
            self->replaced++;
        else
            self->n_live_peers++;
    } else {
        self->n_live_peers++;
    }
    uint32_t *old_shapes = ps->shape_of;
    void *old_block = ps->block;
    ps->block = block;
    ps->pkgs = pkgs;
    ps->shape_of = shape_of;
    ps->pub.packages = pkgs;
    ps->pub.n_packages = n_new;
    ps->pub.frame = len > 0 ? fcopy : NULL;
    ps->pub.frame_len = len;
    ps->pub.seq = seq;
    ps->pub.ts_ms = ts_ms;
    ps->pub.expires_ms = ts_ms + (uint64_t)ad->ttl_s * 1000u;
    s_exp_push(self, ps->pub.expires_ms, id);
    ps->pub.withdrawn = false;
    ps->pub.hops = hops;
    if (local)
        memset(ps->pub.via, 0, CPN_PK_LEN);
    else
        memcpy(ps->pub.via, via, CPN_PK_LEN);
    memcpy(ps->pub.name, ad->name, CPN_NAME_MAX);
    ps->pub.name[CPN_NAME_MAX - 1] = '\0';
    for (uint32_t i = 0; i < n_new; i++) /* before any insert moves them */
        if (kept[i]) {
            self->shp[shape_of[i]].ents[at[i]].pkg = i;
            self->shp[shape_of[i]].pending--;
        }
    for (uint32_t i = 0; i < n_new; i++) {
        self->free_units += pkgs[i].free;
        if (kept[i])
            continue;
        book_ent_t e;
        s_ent_of(self, id, i, &e);
        s_ent_insert(self, shape_of[i], &e);
    }
    self->n_packages = self->n_packages - n_old + n_new;
    for (uint32_t i = 0; i < n_old; i++)
        s_shape_gc(self, old_shapes[i]);
    free(old_block);
    return CPN_OK;

fail:
    s_put_unreserve(self, shape_of, n_new);
    free(block);
    return r;
}

int book_withdraw(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq)
{
    return book_withdraw_from(self, peer, seq, NULL, 0, NULL, 0);
}

int book_withdraw_from(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq,
                       const uint8_t *frame, size_t len, const uint8_t via[CPN_PK_LEN],
                       uint32_t hops)
{
    if (self == NULL || peer == NULL || (frame == NULL && len > 0))
        return CPN_E_INVAL;
    uint32_t id = s_peer_find(self, peer);
    if (id == BOOK_NONE || self->peers[id].pub.withdrawn)
        return CPN_E_NO_PACKAGE;
    book_pslot_t *ps = &self->peers[id];
    if (seq <= ps->pub.seq)
        return CPN_E_REPLAY;
    /* The tombstone keeps the WITHDRAW frame: a member that was away when it went round gets
     * it in answer to its digest (fed_sync.c), instead of keeping the offer until its ttl. */
    uint8_t *block = malloc(len + 1);
    if (block == NULL)
        return CPN_E_NOMEM;
    if (len > 0)
        memcpy(block, frame, len);
    s_peer_unindex(self, id);
    free(ps->block);
    ps->block = block;
    ps->pkgs = NULL;
    ps->shape_of = NULL;
    ps->pub.packages = NULL;
    ps->pub.n_packages = 0;
    ps->pub.frame = len > 0 ? block : NULL;
    ps->pub.frame_len = len;
    ps->pub.seq = seq;
    ps->pub.withdrawn = true;
    ps->pub.hops = hops;
    if (s_zero(via))
        memset(ps->pub.via, 0, CPN_PK_LEN);
    else
        memcpy(ps->pub.via, via, CPN_PK_LEN);
    self->n_live_peers--;
    return CPN_OK;
}

int book_withdraw_unknown(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq,
                          uint64_t ts_ms, uint64_t expires_ms, const uint8_t *frame, size_t len,
                          const uint8_t via[CPN_PK_LEN], uint32_t hops)
{
    if (self == NULL || peer == NULL || (frame == NULL && len > 0))
        return CPN_E_INVAL;
    if (s_peer_find(self, peer) != BOOK_NONE)
        return book_withdraw_from(self, peer, seq, frame, len, via, hops);
    /* A tombstone takes a peer slot: slots are bounded by max_offers, as for offers. */
    if ((size_t)self->n_peers - self->n_peer_free >= self->max_offers) {
        self->refused_full++;
        return CPN_E_BUSY;
    }
    uint8_t *block = malloc(len + 1);
    uint32_t id = BOOK_NONE;
    int r;
    if (block == NULL)
        return CPN_E_NOMEM;
    if ((r = s_exp_reserve(self)) != CPN_OK || (r = book__ht_reserve(&self->peer_ht)) != CPN_OK ||
        (r = s_slot_alloc((void **)&self->peers, &self->n_peers, &self->cap_peers,
                          &self->peer_free, &self->n_peer_free, sizeof *self->peers, &id)) !=
            CPN_OK) {
        free(block);
        return r;
    }
    if (len > 0)
        memcpy(block, frame, len);
    book_pslot_t *ps = &self->peers[id];
    memset(ps, 0, sizeof *ps);
    ps->used = true;
    ps->block = block;
    memcpy(ps->pub.key, peer, CPN_PK_LEN);
    ps->pub.frame = len > 0 ? block : NULL;
    ps->pub.frame_len = len;
    ps->pub.seq = seq;
    ps->pub.ts_ms = ts_ms;
    ps->pub.expires_ms = expires_ms;
    ps->pub.withdrawn = true;
    ps->pub.hops = hops;
    if (!s_zero(via))
        memcpy(ps->pub.via, via, CPN_PK_LEN);
    book__ht_add(&self->peer_ht, s_peer_hash(peer), id);
    s_exp_push(self, expires_ms, id);
    return CPN_OK;
}

int book_forget(book_t *self, const uint8_t peer[CPN_PK_LEN])
{
    if (self == NULL || peer == NULL)
        return CPN_E_INVAL;
    uint32_t id = s_peer_find(self, peer);
    if (id == BOOK_NONE)
        return CPN_E_NO_PACKAGE;
    if (!self->peers[id].pub.withdrawn) {
        s_peer_unindex(self, id);
        self->n_live_peers--;
    }
    s_peer_release(self, id);
    return CPN_OK;
}

size_t book_expire(book_t *self, uint64_t now_ms)
{
    size_t n = 0;
    if (self == NULL || now_ms < self->next_expiry)
        return 0; /* the daemon calls this every second; most calls end here */
    /* Only what is due is looked at: O(expired + stale entries), not O(peers). */
    while (self->n_exp && self->exp[0].at <= now_ms) {
        book_exp_t e = self->exp[0];
        self->exp[0] = self->exp[--self->n_exp];
        if (self->n_exp)
            s_exp_down(self->exp, self->n_exp, 0);
        self->expire_visits++;
        book_pslot_t *ps = e.peer < self->n_peers ? &self->peers[e.peer] : NULL;
        if (!ps || !ps->used || ps->pub.expires_ms != e.at)
            continue; /* re-advertised, forgotten or reused since */
        if (!ps->pub.withdrawn) {
            s_peer_unindex(self, e.peer);
            self->n_live_peers--;
            n++;
        }
        s_peer_release(self, e.peer);
    }
    self->next_expiry = self->n_exp ? self->exp[0].at : UINT64_MAX;
    self->expired += n;
    return n;
}

int book_take(book_t *self, const uint8_t peer[CPN_PK_LEN], const char *package, uint32_t units)
{
    if (self == NULL || peer == NULL || package == NULL)
        return CPN_E_INVAL;
    uint32_t id = s_peer_find(self, peer);
    if (id == BOOK_NONE)
        return CPN_E_NO_PACKAGE;
    book_pslot_t *ps = &self->peers[id];
    for (uint32_t i = 0; i < ps->pub.n_packages; i++) {
        if (strcmp(ps->pkgs[i].id, package) != 0)
            continue;
        /* A shared package's free units are nodes with some slice free: one slice granted
         * says nothing certain about them. The next AD says; the peer refuses meanwhile. */
        if (ps->pkgs[i].accel.share_min)
            return CPN_OK;
        if (ps->pkgs[i].free < units)
            return CPN_E_NO_UNITS;
        book_ent_t e;
        s_ent_of(self, id, i, &e);
        s_ent_set_free(self, ps->shape_of[i], &e, ps->pkgs[i].free - units);
        ps->pkgs[i].free -= units;
        self->free_units -= units;
        return CPN_OK;
    }
    return CPN_E_NO_PACKAGE;
}

int book_give(book_t *self, const uint8_t peer[CPN_PK_LEN], const char *package, uint32_t units)
{
    if (self == NULL || peer == NULL || package == NULL)
        return CPN_E_INVAL;
    uint32_t id = s_peer_find(self, peer);
    if (id == BOOK_NONE)
        return CPN_E_NO_PACKAGE;
    book_pslot_t *ps = &self->peers[id];
    for (uint32_t i = 0; i < ps->pub.n_packages; i++) {
        if (strcmp(ps->pkgs[i].id, package) != 0)
            continue;
        if (ps->pkgs[i].accel.share_min) /* taken as nothing (book_take) */
            return CPN_OK;
        uint32_t room = ps->pkgs[i].total - ps->pkgs[i].free;
        if (units > room)
            units = room;
        book_ent_t e;
        s_ent_of(self, id, i, &e);
        s_ent_set_free(self, ps->shape_of[i], &e, ps->pkgs[i].free + units);
        ps->pkgs[i].free += units;
        self->free_units += units;
        return CPN_OK;
    }
    return CPN_E_NO_PACKAGE;
}

int book_slice_refused(book_t *self, const uint8_t peer[CPN_PK_LEN], const char *package,
                       const cpn_request_t *r)
{
    if (self == NULL || peer == NULL || package == NULL || r == NULL)
        return CPN_E_INVAL;
    uint32_t id = s_peer_find(self, peer);
    if (id == BOOK_NONE)
        return CPN_E_NO_PACKAGE;
    book_pslot_t *ps = &self->peers[id];
    for (uint32_t i = 0; i < ps->pub.n_packages; i++)
        if (strcmp(ps->pkgs[i].id, package) == 0) {
            cpn_package_slice_refused(&ps->pkgs[i], r); /* slice_max is no index key */
            return CPN_OK;
        }
    return CPN_E_NO_PACKAGE;
}

const book_peer_t *book_peer(const book_t *self, const uint8_t peer[CPN_PK_LEN])
{
    if (self == NULL || peer == NULL)
        return NULL;
    uint32_t id = s_peer_find(self, peer);
    return id == BOOK_NONE ? NULL : &self->peers[id].pub;
}

const book_peer_t *book_next(const book_t *self, size_t *cursor)
{
    if (self == NULL || cursor == NULL)
        return NULL;
    while (*cursor < self->n_peers) {
        const book_pslot_t *ps = &self->peers[(*cursor)++];
        if (ps->used)
            return &ps->pub;
    }
    return NULL;
}

void book_stats(const book_t *self, book_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (self == NULL)
        return;
    out->peers = self->n_live_peers;
    out->packages = self->n_packages;
    out->free_units = self->free_units;
    out->max_offers = self->max_offers;
    out->refused_full = self->refused_full;
    out->replaced = self->replaced;
    out->expired = self->expired;
    out->expire_visits = self->expire_visits;
    out->ent_moves = self->ent_moves;
    out->classes = self->n_cls_live;
    out->shapes = self->n_shp_live;
}
