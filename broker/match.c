/* match.c - the matcher: walk the book's index (book_int.h) cheapest group first.
 *
 * A request is first resolved against the book's interned names once (its model and the
 * policy's equivalents, vendor, storage class, the allowed regions = request's and policy's
 * intersected, the preferred regions and vendors), so that checking a class is a handful of
 * integer compares. Then:
 *
 *   for each non-empty partition (cores, memory, accelerator-count buckets) that can hold
 *   the request - or, if it names a model, for the classes of that model and equivalents -
 *     for each class of the partition, in order of its cheapest entry with free units (read
 *     from the partition's own array, in memory order):
 *       stop if even that price, with the largest bonus any class can get, cannot beat the
 *       worst candidate held (or exceeds the price ceiling);
 *       skip the class if it has no free entry, no shape large enough in cores or memory,
 *       or fails a name/count/region constraint;
 *       for each shape of the class, in order of its cheapest entry with free units:
 *           stop when that price cannot beat the worst candidate held;
 *           skip it if a numeric constraint fails (one check for all its copies);
 *           walk its free entries (bitmap) in (price, key, id) order, keeping the fitting ones
 *           until one cannot beat the worst candidate held.
 *
 * Inside a class every offer has the same bonus, so an offer's rank grows with its price and
 * the walks can stop early. The work per decision therefore depends on how many groups are
 * cheaper than the answer, not on how many packages the book holds; see docs/BENCHMARKS.md.
 *
 * When nothing matches, a second pass over all shapes (no entry walks; binary search for the
 * price ceiling) attributes every offer to the first constraint it fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "book_int.h"
#include "chain.h"
#include "match.h"

#define S_TOP_STACK 64
#define S_GRAD_OFFSET 16384 /* makes a gradient (at most 8 accelerators, +-8000) unsigned */
#define S_MODELS_MAX (1 + MATCH_EQUIV_MAX * CPN_LIST_MAX)

typedef struct {
    uint64_t rank;
    uint32_t bonus;
    uint32_t tie; /* slices: s_slice_tie; whole units: 0 */
    const book_ent_t *ent;
} s_cand_t;

/* A request resolved against the book's names. */
typedef struct {
    const cpn_request_t *req;
    bool any_model, any_vendor, any_sclass, any_region;
    uint32_t models[S_MODELS_MAX];
    uint32_t n_models;
    uint32_t vendor, sclass;
    uint32_t regions[CPN_LIST_MAX];
    uint32_t n_regions;
    uint32_t pref_regions[CPN_LIST_MAX];
    uint32_t n_pref_regions;
    uint32_t pref_vendors[2 * CPN_LIST_MAX];
    uint32_t n_pref_vendors;
    uint64_t ceiling; /* UINT64_MAX: none */
    uint32_t need;    /* free units an entry must have */
    uint32_t w_price, w_region, w_vendor, w_local;
    uint32_t max_bonus;
    uint64_t now_ms;
    bool local_only;
} s_req_t;

void match_policy_default(match_policy_t *pol)
{
    memset(pol, 0, sizeof *pol);
    pol->w_price = 1;
    pol->w_region = 20;
    pol->w_vendor = 10;
    pol->w_local = 5;
}

static bool s_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static bool s_list_ok(const cpn_namelist_t *l)
{
    if (l->n > CPN_LIST_MAX)
        return false;
    for (uint32_t i = 0; i < l->n; i++)
        if (!s_terminated(l->items[i], CPN_NAME_MAX) || l->items[i][0] == '\0')
            return false;
    return true;
}

int match_policy_validate(const match_policy_t *pol, const char **why)
{
    const char *w = NULL;
    if (pol == NULL)
        w = "no policy";
    else if (pol->w_price > MATCH_WEIGHT_MAX || pol->w_region > MATCH_WEIGHT_MAX ||
             pol->w_vendor > MATCH_WEIGHT_MAX || pol->w_local > MATCH_WEIGHT_MAX)
        w = "a weight is above 10000";
    else if (!s_list_ok(&pol->prefer_vendors))
        w = "bad preferred vendor list";
    else if (!s_list_ok(&pol->allowed_regions))
        w = "bad allowed region list";
    else if (pol->n_equiv > MATCH_EQUIV_MAX)
        w = "more than 32 equivalence rules";
    for (uint32_t i = 0; w == NULL && i < pol->n_equiv; i++) {
        if (!s_terminated(pol->equiv[i].model, CPN_NAME_MAX) || pol->equiv[i].model[0] == '\0')
            w = "equivalence rule without a model";
        else if (!s_list_ok(&pol->equiv[i].accept) || pol->equiv[i].accept.n == 0)
            w = "equivalence rule with a bad accept list";
    }
    if (why != NULL)
        *why = w;
    return w == NULL ? CPN_OK : CPN_E_CONFIG;
}

static bool s_in(const uint32_t *ids, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void s_add(uint32_t *ids, uint32_t *n, uint32_t cap, uint32_t id)
{
    if (id != BOOK_NONE && *n < cap && !s_in(ids, *n, id))
        ids[(*n)++] = id;
}

static bool s_name_in(const cpn_namelist_t *l, const char *name)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (strncasecmp(l->items[i], name, CPN_NAME_MAX) == 0)
            return true;
    return false;
}

static int s_resolve(const book_t *b, const cpn_request_t *req, const match_policy_t *pol,
                     uint64_t now_ms, s_req_t *q)
{
    if (req->units == 0 || !s_list_ok(&req->regions) || !s_list_ok(&req->prefer_regions) ||
        !s_list_ok(&req->prefer_vendors) || match_policy_validate(pol, NULL) != CPN_OK ||
        !s_terminated(req->accel_model, CPN_NAME_MAX) ||
        !s_terminated(req->accel_vendor, CPN_NAME_MAX) ||
        !s_terminated(req->storage_class, CPN_CLASS_MAX))
        return CPN_E_INVAL;
    memset(q, 0, sizeof *q);
    q->req = req;
    q->now_ms = now_ms;
    q->need = req->split ? 1 : req->units;
    q->w_price = pol->w_price;
    q->w_region = pol->w_region;
    q->w_vendor = pol->w_vendor;
    q->w_local = pol->w_local;
    q->local_only = pol->local_only;

    q->any_model = req->accel_model[0] == '\0';
    if (!q->any_model) {
        s_add(q->models, &q->n_models, S_MODELS_MAX, book__str_find(b, req->accel_model));
        for (uint32_t i = 0; i < pol->n_equiv; i++) {
            if (strncasecmp(pol->equiv[i].model, req->accel_model, CPN_NAME_MAX) != 0)
                continue;
            for (uint32_t j = 0; j < pol->equiv[i].accept.n; j++)
                s_add(q->models, &q->n_models, S_MODELS_MAX,
                      book__str_find(b, pol->equiv[i].accept.items[j]));
        }
    }
    q->any_vendor = req->accel_vendor[0] == '\0';
    q->vendor = q->any_vendor ? BOOK_NONE : book__str_find(b, req->accel_vendor);
    q->any_sclass = req->storage_class[0] == '\0';
    q->sclass = q->any_sclass ? BOOK_NONE : book__str_find(b, req->storage_class);

    /* Residency: the request's regions and the policy's, both, when both are set. */
    const cpn_namelist_t *rr = &req->regions, *pr = &pol->allowed_regions;
    q->any_region = rr->n == 0 && pr->n == 0;
    if (rr->n > 0) {
        for (uint32_t i = 0; i < rr->n; i++)
            if (pr->n == 0 || s_name_in(pr, rr->items[i]))
                s_add(q->regions, &q->n_regions, CPN_LIST_MAX, book__str_find(b, rr->items[i]));
    } else {
        for (uint32_t i = 0; i < pr->n; i++)
            s_add(q->regions, &q->n_regions, CPN_LIST_MAX, book__str_find(b, pr->items[i]));
    }

    for (uint32_t i = 0; i < req->prefer_regions.n; i++)
        s_add(q->pref_regions, &q->n_pref_regions, CPN_LIST_MAX,
              book__str_find(b, req->prefer_regions.items[i]));
    for (uint32_t i = 0; i < pol->prefer_vendors.n; i++)
        s_add(q->pref_vendors, &q->n_pref_vendors, 2 * CPN_LIST_MAX,
              book__str_find(b, pol->prefer_vendors.items[i]));
    for (uint32_t i = 0; i < req->prefer_vendors.n; i++)
        s_add(q->pref_vendors, &q->n_pref_vendors, 2 * CPN_LIST_MAX,
              book__str_find(b, req->prefer_vendors.items[i]));

    uint64_t c = UINT64_MAX;
    if (req->max_price > 0)
        c = req->max_price;
    if (pol->max_price > 0 && pol->max_price < c)
        c = pol->max_price;
    q->ceiling = c;
    q->max_bonus =
        (q->n_pref_regions ? q->w_region : 0) + (q->n_pref_vendors ? q->w_vendor : 0) + q->w_local;
    return CPN_OK;
}

/* ---- constraints: class level, shape level, in cpn_constraint_t order -------------------- */

static cpn_constraint_t s_class_fail(const s_req_t *q, const book_hot_t *c)
{
    const cpn_request_t *r = q->req;
    if (!q->any_model && (c->count == 0 || !s_in(q->models, q->n_models, c->model)))
        return CPN_C_ACCEL_MODEL;
    if (!q->any_vendor && c->vendor != q->vendor)
        return CPN_C_ACCEL_VENDOR;
    if (c->count < r->accel_count)
        return CPN_C_ACCEL_COUNT;
    if (!q->any_sclass && c->sclass != q->sclass)
        return CPN_C_STORAGE_CLASS;
    if (!q->any_region && !s_in(q->regions, q->n_regions, c->region))
        return CPN_C_REGION;
    return CPN_C_OK;
}

static cpn_constraint_t s_shape_fail(const cpn_request_t *r, const book_shape_t *s)
{
    if (s->tflops < r->min_tflops)
        return CPN_C_TFLOPS;
    if (s->accel_mem < r->min_accel_mem)
        return CPN_C_ACCEL_MEM;
    if (s->cores < r->cores)
        return CPN_C_CORES;
    if (s->mem_bytes < r->mem_bytes)
        return CPN_C_MEMORY;
    if (s->storage_bytes < r->storage_bytes)
        return CPN_C_STORAGE_SIZE;
    if (s->fabric_bps < r->fabric_bps)
        return CPN_C_FABRIC;
    if (s->egress_bps < r->egress_bps)
        return CPN_C_EGRESS;
    /* whole units from unshared shapes, slices from shared ones no coarser than asked */
    if ((r->share == 0) != (s->share_min == 0) || r->share < s->share_min)
        return CPN_C_SHARE;
    return CPN_C_OK;
}

/* ---- ranking ------------------------------------------------------------------------------ */

static uint32_t s_bonus(const s_req_t *q, const book_hot_t *c)
{
    uint32_t bonus = 0;
    if (q->n_pref_regions && s_in(q->pref_regions, q->n_pref_regions, c->region))
        bonus += q->w_region;
    if (q->n_pref_vendors && s_in(q->pref_vendors, q->n_pref_vendors, c->vendor))
        bonus += q->w_vendor;
    if (c->local)
        bonus += q->w_local;
    return bonus;
}

static uint64_t s_rank(const s_req_t *q, uint64_t price, uint32_t bonus)
{
    unsigned __int128 v = (unsigned __int128)price * q->w_price * 100u / (100u + bonus);
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

/* Compare (rank, -bonus, price) only: < 0 if x is better. */
static int s_cmp3(uint64_t rx, uint32_t bx, uint64_t px, uint64_t ry, uint32_t by, uint64_t py)
{
    if (rx != ry)
        return rx < ry ? -1 : 1;
    if (bx != by)
        return bx > by ? -1 : 1;
    if (px != py)
        return px < py ? -1 : 1;
    return 0;
}

static int s_cand_cmp(const book_t *b, const s_cand_t *x, const s_cand_t *y)
{
    int c = s_cmp3(x->rank, x->bonus, x->ent->price, y->rank, y->bonus, y->ent->price);
    if (c == 0 && x->tie != y->tie)
        return x->tie < y->tie ? -1 : 1;
    return c != 0 ? c : book__ent_cmp(b, x->ent, y->ent);
}

/* Among slices offered at the same rank, lower is better: first a package whose fit points
 * say the slice fits with its CPU and memory (a claim elsewhere may be refused); then the
 * least growth of the peer's fragmentation F(M) its gradient for that slice size promises
 * (Weng et al., ATC'23: the broker's half of the descent, the peer placing on the node that
 * achieves it); packages without a gradient for that size after those with one; then, from
 * the summary alone, the more fragmented free capacity (a slice there uses shares its
 * workload cannot) and the tighter largest free slice. */
static uint32_t s_slice_tie(const cpn_package_t *p, const cpn_request_t *r)
{
    uint32_t unsure = cpn_package_fit_covers(p, r) ? 0u : 1u;
    int32_t d;
    if (cpn_package_grad(p, r, &d)) /* |d| <= 8000 (resource.c): 15 bits once offset */
        return unsure << 31 | (uint32_t)(d + S_GRAD_OFFSET) << 10 | (CPN_SHARE_WHOLE - p->frag);
    return unsure << 31 | 1u << 30 | ((CPN_SHARE_WHOLE - p->frag) << 16) | p->slice_max;
}

typedef struct {
    s_cand_t *v;
    size_t n, max;
} s_top_t;

/* Can a group whose cheapest price is `price` (at `bonus`) still place a candidate? */
static bool s_may_beat(const s_req_t *q, const s_top_t *t, uint64_t price, uint32_t bonus)
{
    if (t->n < t->max)
        return true;
    const s_cand_t *w = &t->v[t->n - 1];
    /* Equal on all three: a lower key could still win. */
    return s_cmp3(s_rank(q, price, bonus), bonus, price, w->rank, w->bonus, w->ent->price) <= 0;
}

/* Insert if it is among the best `max`; false if it is not (nor is anything after it). */
static bool s_top_push(const book_t *b, s_top_t *t, const s_cand_t *c)
{
    size_t i = t->n;
    if (t->n == t->max) {
        if (s_cand_cmp(b, c, &t->v[t->n - 1]) >= 0)
            return false;
        i = t->n - 1;
    } else {
        t->n++;
    }
    while (i > 0 && s_cand_cmp(b, c, &t->v[i - 1]) < 0) {
        t->v[i] = t->v[i - 1];
        i--;
    }
    t->v[i] = *c;
    return true;
}

/* Walk a fitting shape's free entries in order. */
static void s_walk(const book_t *b, const s_req_t *q, const book_shape_t *s, uint32_t bonus,
                   s_top_t *t)
{
    uint32_t nw = (s->n + 63) / 64;
    for (uint32_t w = 0; w < nw; w++) {
        uint64_t bits = s->mask[w];
        while (bits != 0) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            const book_ent_t *e = &s->ents[i];
            if (e->price > q->ceiling)
                return;
            if (!s_may_beat(q, t, e->price, bonus))
                return;
            if (e->free < q->need)
                continue;
            if (b->peers[e->peer].pub.expires_ms <= q->now_ms)
                continue;
            s_cand_t c = {s_rank(q, e->price, bonus), bonus, 0, e};
            if (q->req->share) {
                /* a slice needs a device with that much free (the AD's summary, per entry);
                 * the summary reorders equal prices, so a full top list stops nothing here */
                const cpn_package_t *p = &b->peers[e->peer].pkgs[e->pkg];
                if (!cpn_package_slice_open(p, q->req))
                    continue;
                c.tie = s_slice_tie(p, q->req);
                (void)s_top_push(b, t, &c);
                continue;
            }
            if (!s_top_push(b, t, &c))
                return;
        }
    }
}

/* The partitions that can hold a fit have cores, memory and accelerator-count buckets at
 * least the request's (any accelerator constraint rules out the CPU-only bucket). */
static void s_buckets(const cpn_request_t *r, uint32_t *cb0, uint32_t *mb0, uint32_t *ab0)
{
    *cb0 = book__cores_bucket(r->cores);
    *mb0 = book__mem_bucket(r->mem_bytes);
    *ab0 = book__bucket(r->accel_count, BOOK_AB);
    if (*ab0 == 0 &&
        (r->accel_model[0] || r->accel_vendor[0] || r->min_tflops > 0 || r->min_accel_mem > 0))
        *ab0 = 1;
}

/* Search one class, given its hot fields (from its partition's array or the class itself);
 * false if its cheapest entry cannot beat the candidates held. Only a class that may hold a
 * fit is looked up. */
static bool s_search_class(const book_t *b, const s_req_t *q, const book_hot_t *h, s_top_t *t)
{
    if (h->n_free == 0)
        return true;
    if (h->min_price > q->ceiling || !s_may_beat(q, t, h->min_price, q->max_bonus))
        return false;
    if (h->max_cores < q->req->cores || h->max_mem < q->req->mem_bytes ||
        (q->local_only && !h->local) || s_class_fail(q, h) != CPN_C_OK)
        return true;
    uint32_t bonus = s_bonus(q, h);
    const book_class_t *c = &b->cls[h->cls];
    for (uint32_t si = 0; si < c->n_shapes; si++) {
        const book_shape_t *s = &b->shp[c->shapes[si]];
        uint64_t smin = book__shape_min(s);
        if (smin > q->ceiling || !s_may_beat(q, t, smin, bonus))
            break;
        if (s->n_free == 0 || s_shape_fail(q->req, s) != CPN_C_OK)
            continue;
        s_walk(b, q, s, bonus, t);
    }
    return true;
}

static void s_search(const book_t *b, const s_req_t *q, s_top_t *t)
{
    uint32_t cb0, mb0, ab0;
    s_buckets(q->req, &cb0, &mb0, &ab0);
    if (!q->any_model) {
        /* A named model: only the classes of that model and its equivalents. */
        for (uint32_t i = 0; i < q->n_models; i++) {
            uint32_t m = q->models[i];
            for (uint32_t j = 0; j < b->n_mcls[m]; j++) {
                const book_class_t *c = &b->cls[b->mcls[m][j]];
                if (c->cb >= cb0 && c->mb >= mb0)
                    (void)s_search_class(b, q, &c->h, t);
            }
        }
        return;
    }
    /* Otherwise the non-empty partitions with large enough buckets, each cheapest first. */
    for (uint64_t cbm = b->ne_cb & ~((UINT64_C(1) << cb0) - 1); cbm != 0; cbm &= cbm - 1) {
        uint32_t cb = (uint32_t)__builtin_ctzll(cbm);
        for (uint64_t mbm = b->ne_mb[cb] & ~((UINT64_C(1) << mb0) - 1); mbm != 0; mbm &= mbm - 1) {
            uint32_t mb = (uint32_t)__builtin_ctzll(mbm);
            for (uint32_t abm = b->ne_ab[cb][mb] & ~((1u << ab0) - 1); abm != 0; abm &= abm - 1) {
                const book_part_t *pt =
                    &b->part[book__part_of(cb, mb, (uint32_t)__builtin_ctz(abm))];
                for (uint32_t oi = 0; oi < pt->n; oi++)
                    if (!s_search_class(b, q, &pt->order[oi], t))
                        break;
            }
        }
    }
}

/* ---- diagnosis ---------------------------------------------------------------------------- */

static void s_diagnose_part(const book_t *b, const s_req_t *q, const book_part_t *pt, uint64_t *cnt)
{
    for (uint32_t oi = 0; oi < pt->n; oi++) {
        const book_class_t *c = &b->cls[pt->order[oi].cls];
        cpn_constraint_t cf = s_class_fail(q, &c->h);
        if (cf != CPN_C_OK && cf < CPN_C_TFLOPS) {
            cnt[cf] += c->n_ents; /* model, vendor, count: before any shape constraint */
            continue;
        }
        for (uint32_t si = 0; si < c->n_shapes; si++) {
            const book_shape_t *s = &b->shp[c->shapes[si]];
            cpn_constraint_t sf = s_shape_fail(q->req, s);
            cpn_constraint_t f = cf;
            if (sf != CPN_C_OK && (f == CPN_C_OK || sf < f))
                f = sf;
            if (f != CPN_C_OK) {
                cnt[f] += s->n;
                continue;
            }
            /* Entries above the ceiling fail on price; the rest on units (or expiry). Only
             * entries with free units can fit, so only those are looked at. */
            uint32_t lo = 0, hi = s->n;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (s->ents[mid].price <= q->ceiling)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            cnt[CPN_C_PRICE] += s->n - lo;
            uint32_t fit = 0, small = 0; /* small: a slice larger than any free one */
            for (uint32_t w = 0; w < (lo + 63) / 64; w++) {
                uint64_t bits = s->mask[w];
                if (w == lo / 64 && lo % 64 != 0)
                    bits &= ((uint64_t)1 << (lo % 64)) - 1;
                while (bits != 0) {
                    const book_ent_t *e = &s->ents[w * 64 + (uint32_t)__builtin_ctzll(bits)];
                    bits &= bits - 1;
                    if (e->free >= q->need && b->peers[e->peer].pub.expires_ms > q->now_ms) {
                        if (q->req->share &&
                            !cpn_package_slice_open(&b->peers[e->peer].pkgs[e->pkg], q->req))
                            small++;
                        else
                            fit++;
                    }
                }
            }
            cnt[CPN_C_SHARE] += small;
            cnt[CPN_C_UNITS] += lo - fit - small;
        }
    }
}

static void s_verdict(const book_t *b, const uint64_t *cnt, bool short_split, match_fail_t *why)
{
    memset(why, 0, sizeof *why);
    why->total = (uint32_t)b->n_packages;
    if (short_split) {
        /* Offers fit, but too few units between them: units is the reason. */
        why->constraint = CPN_C_UNITS;
        why->excluded = (uint32_t)cnt[CPN_C_UNITS];
        return;
    }
    /* The two largest counts; ties go to the constraint first in enum order. */
    for (int i = 1; i < CPN_C__COUNT; i++) {
        if (cnt[i] > why->excluded) {
            why->next = why->constraint;
            why->next_excluded = why->excluded;
            why->excluded = (uint32_t)cnt[i];
            why->constraint = (cpn_constraint_t)i;
        } else if (cnt[i] > why->next_excluded) {
            why->next_excluded = (uint32_t)cnt[i];
            why->next = (cpn_constraint_t)i;
        }
    }
}

static void s_diagnose(const book_t *b, const s_req_t *q, bool short_split, match_fail_t *why)
{
    uint64_t cnt[CPN_C__COUNT] = {0};
    for (uint64_t cbm = b->ne_cb; cbm != 0; cbm &= cbm - 1) {
        uint32_t cb = (uint32_t)__builtin_ctzll(cbm);
        for (uint64_t mbm = b->ne_mb[cb]; mbm != 0; mbm &= mbm - 1) {
            uint32_t mb = (uint32_t)__builtin_ctzll(mbm);
            for (uint32_t abm = b->ne_ab[cb][mb]; abm != 0; abm &= abm - 1)
                s_diagnose_part(b, q, &b->part[book__part_of(cb, mb, (uint32_t)__builtin_ctz(abm))],
                                cnt);
        }
    }
    s_verdict(b, cnt, short_split, why);
}

/* ---- public ------------------------------------------------------------------------------- */

int match_find(const book_t *book, const cpn_request_t *req, const match_policy_t *pol,
               uint64_t now_ms, match_cand_t *out, size_t max, size_t *n, match_fail_t *why)
{
    s_cand_t stack[S_TOP_STACK];
    s_top_t t = {stack, 0, max};
    s_req_t q;
    int r;

    if (n != NULL)
        *n = 0;
    if (book == NULL || req == NULL || pol == NULL || out == NULL || n == NULL || max == 0)
        return CPN_E_INVAL;
    if ((r = s_resolve(book, req, pol, now_ms, &q)) != CPN_OK)
        return r;
    if (max > S_TOP_STACK) {
        t.v = malloc(max * sizeof *t.v); /* only split requests ask for this many */
        if (t.v == NULL)
            return CPN_E_NOMEM;
    }
    s_search(book, &q, &t);

    uint64_t covered = 0;
    for (size_t i = 0; i < t.n; i++) {
        const book_ent_t *e = t.v[i].ent;
        const book_pslot_t *ps = &book->peers[e->peer];
        match_cand_t *o = &out[i];
        memcpy(o->peer, ps->pub.key, CPN_PK_LEN);
        memcpy(o->package, ps->pkgs[e->pkg].id, CPN_NAME_MAX);
        o->free = e->free;
        o->units = req->split ? (e->free < req->units ? e->free : req->units) : req->units;
        o->price = e->price;
        o->rank = t.v[i].rank;
        covered += o->units;
    }
    if (t.n == 0 || covered < req->units) {
        if (why != NULL)
            s_diagnose(book, &q, t.n > 0, why);
        r = CPN_E_NO_MATCH;
        goto out;
    }
    *n = t.n;
    r = CPN_OK;
out:
    if (t.v != stack)
        free(t.v);
    return r;
}

void match_fail_format(const match_fail_t *why, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return;
    if (why == NULL || why->total == 0 || why->constraint == CPN_C_OK)
        snprintf(buf, cap, "no offers in the book");
    else if (why->next == CPN_C_OK)
        snprintf(buf, cap, "%s excluded %u of %u offers", cpn_constraint_name(why->constraint),
                 why->excluded, why->total);
    else
        snprintf(buf, cap, "%s excluded %u of %u offers; %s excluded %u",
                 cpn_constraint_name(why->constraint), why->excluded, why->total,
                 cpn_constraint_name(why->next), why->next_excluded);
}

size_t match_alts(const cpn_request_t *req, const match_cand_t *cands, size_t n,
                  const match_cand_t *c, char *out, size_t cap)
{
    size_t used = 0, named = 0;
    out[0] = '\0';
    for (size_t i = 0; req->share && i < n; i++) {
        const match_cand_t *a = &cands[i];
        size_t len = strlen(a->package);
        if (a->price != c->price || memcmp(a->peer, c->peer, CPN_PK_LEN) != 0 ||
            strcmp(a->package, c->package) == 0 || strchr(a->package, ',') ||
            used + !!used + len >= cap)
            continue;
        if (used)
            out[used++] = ',';
        memcpy(out + used, a->package, len + 1);
        used += len;
        named++;
    }
    return named;
}

size_t match_drop_alts(const cpn_request_t *req, match_cand_t *cands, size_t n, size_t k)
{
    char alts[CPN_ALTS_LEN];
    if (k == 0 || k > n || match_alts(req, cands, n, &cands[k - 1], alts, sizeof alts) == 0)
        return n;
    const match_cand_t *c = &cands[k - 1];
    size_t kept = k;
    for (size_t i = k; i < n; i++)
        if (memcmp(cands[i].peer, c->peer, CPN_PK_LEN) != 0 || cands[i].price != c->price ||
            !cpn_claim_alt(alts, cands[i].package))
            cands[kept++] = cands[i];
    return kept;
}
