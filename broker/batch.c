/* batch.c - batch matching (see batch.h): candidates from match_find (one call per request
 * shape), multi-unit requests placed first, one-unit requests by an exact min-cost flow, then
 * a bounded repair of the multi-unit placements.
 *
 * The flow network: S -> shape (capacity = requests of that shape, cost (-value, 0)), shape ->
 * offer (cost (0, rank)), offer -> T (capacity = free units not held by multi-unit
 * placements, cost 0). Costs are pairs compared lexicographically, so minimising the cost
 * maximises the value (accelerators, then requests placed) first and minimises the rank sum
 * second. Primal-dual successive shortest paths: Dijkstra on reduced costs (potentials start
 * as the distances of the initial network, which is acyclic) finds the cost of the shortest
 * path; a DFS then augments every path of that cost. Path costs never decrease, so the first
 * phase whose paths do not lower the cost ends the search: the flow is a minimum-cost one of
 * any size. Phases = distinct path costs (a handful), each O(E log V).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

/* Rank keys are at most price * w_price <= 2^40 * 10^4; capping them at 2^40 keeps every
 * path sum of the flow inside int64 and only merges offers dearer than 10^9 per unit-hour. */
#define S_RANK_CAP ((int64_t)1 << 40)
/* value = accelerators << S_COUNT_BITS | 1: accelerators first, then requests placed. */
#define S_COUNT_BITS 20

typedef struct {
    int64_t hi, lo; /* hi: minus the value; lo: the rank sum */
} s_cost_t;

static const s_cost_t S_ZERO = {0, 0};
static const s_cost_t S_INF = {INT64_MAX, INT64_MAX};

static int s_cmp(s_cost_t a, s_cost_t b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

static s_cost_t s_plus(s_cost_t a, s_cost_t b)
{
    return (s_cost_t){a.hi + b.hi, a.lo + b.lo};
}

static s_cost_t s_minus(s_cost_t a, s_cost_t b)
{
    return (s_cost_t){a.hi - b.hi, a.lo - b.lo};
}

/* A distinct offer among the candidates. */
typedef struct {
    match_cand_t cand; /* as match_find gave it */
    uint32_t cap;      /* free units when planning */
    uint32_t multi;    /* units held by multi-unit placements */
    uint32_t node;     /* its node in the flow network */
    size_t to_sink;    /* its edge to T */
} s_offer_t;

typedef struct {
    uint32_t off;
    int64_t rank;
} s_opt_t; /* one candidate of a request */

typedef struct {
    uint32_t first, n; /* candidates: opts[first .. first+n), best first */
    uint32_t units;
    int64_t value;
    int64_t at;    /* offer index it is placed on, -1: none */
    bool multi;    /* several units: placed outside the flow */
    size_t rep;    /* first request of the same shape (itself if it is the first) */
    size_t next;   /* next request of the same shape, SIZE_MAX: none */
    size_t tail;   /* first of a shape: its last request so far */
    uint32_t size; /* first of a shape: how many requests have it */
    uint32_t node; /* first of a one-unit shape: its node in the flow network */
} s_req_t;

typedef struct {
    uint32_t to, cap, orig;
    int32_t next;
    s_cost_t cost;
} s_edge_t;

typedef struct {
    s_cost_t d;
    uint32_t v;
} s_heap_t;

typedef struct {
    s_req_t *req;
    size_t n_req;
    s_opt_t *opt;
    size_t n_opt, cap_opt;
    s_offer_t *off;
    size_t n_off, cap_off;
    uint32_t *slot; /* hash table of offer indices + 1 (0 = empty) */
    size_t n_slot;
    /* flow network */
    uint32_t n_node, src, sink, off_base; /* offer o is node off_base + o */
    s_edge_t *e;
    size_t n_e;
    int32_t *head;
    s_cost_t *pi, *dist;
    int32_t *prev;  /* edge into a node on the shortest path, -1 */
    int32_t *it;    /* DFS: next edge to look at */
    uint32_t *dead; /* DFS: phase in which the node was found not to reach T */
    uint32_t *stack;
    uint8_t *on_stack;
    uint32_t phase;
    uint8_t *wanted; /* per offer: a request left out could use it */
    s_heap_t *heap;
    size_t n_heap;
} s_plan_t;

/* ---- the offer table ---------------------------------------------------------------------- */

static uint64_t s_hash(const uint8_t *peer, const char *pkg)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < CPN_PK_LEN; i++)
        h = (h ^ peer[i]) * 1099511628211ull;
    for (size_t i = 0; i < CPN_NAME_MAX && pkg[i] != '\0'; i++)
        h = (h ^ (uint8_t)pkg[i]) * 1099511628211ull;
    return h;
}

static bool s_same(const match_cand_t *a, const match_cand_t *b)
{
    return memcmp(a->peer, b->peer, CPN_PK_LEN) == 0 &&
           strncmp(a->package, b->package, CPN_NAME_MAX) == 0;
}

static int s_rehash(s_plan_t *p, size_t n_slot)
{
    uint32_t *slot = calloc(n_slot, sizeof *slot);
    if (slot == NULL)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < p->n_off; i++) {
        size_t h = s_hash(p->off[i].cand.peer, p->off[i].cand.package) & (n_slot - 1);
        while (slot[h] != 0)
            h = (h + 1) & (n_slot - 1);
        slot[h] = (uint32_t)i + 1;
    }
    free(p->slot);
    p->slot = slot;
    p->n_slot = n_slot;
    return CPN_OK;
}

/* The index of c's offer, added if new. */
static int s_offer(s_plan_t *p, const match_cand_t *c, uint32_t *idx)
{
    int r;
    if (2 * (p->n_off + 1) > p->n_slot &&
        (r = s_rehash(p, p->n_slot ? 2 * p->n_slot : 256)) != CPN_OK)
        return r;
    size_t h = s_hash(c->peer, c->package) & (p->n_slot - 1);
    while (p->slot[h] != 0) {
        if (s_same(&p->off[p->slot[h] - 1].cand, c)) {
            *idx = p->slot[h] - 1;
            return CPN_OK;
        }
        h = (h + 1) & (p->n_slot - 1);
    }
    if (p->n_off == p->cap_off) {
        size_t cap = p->cap_off ? 2 * p->cap_off : 256;
        s_offer_t *o = realloc(p->off, cap * sizeof *o);
        if (o == NULL)
            return CPN_E_NOMEM;
        p->off = o;
        p->cap_off = cap;
    }
    s_offer_t *o = &p->off[p->n_off];
    memset(o, 0, sizeof *o);
    o->cand = *c;
    o->cap = c->free;
    p->slot[h] = (uint32_t)p->n_off + 1;
    *idx = (uint32_t)p->n_off++;
    return CPN_OK;
}

/* ---- candidates --------------------------------------------------------------------------- */

/* What decides a request's candidates: all of it but its id, duration and access hints (for
 * the peer's driver, not for matching), i.e. the bytes [units, duration_s) and [accel_model,
 * access) (`progress` is among them: requests that differ only there cost a second
 * match_find, nothing more). Requests with the same shape share one candidate list (a window of trace requests has few distinct shapes, and match_find for 128
 * candidates is the dearest step). Padding bytes are compared too: unequal padding only costs
 * a second match_find, never a wrong list. */
#define S_A0 offsetof(cpn_request_t, units)
#define S_A1 offsetof(cpn_request_t, duration_s)
#define S_B0 offsetof(cpn_request_t, accel_model)
#define S_B1 offsetof(cpn_request_t, access)
_Static_assert(offsetof(cpn_request_t, id) == 0 && S_A0 < S_A1 && S_B0 == S_A1 + sizeof(uint64_t),
               "s_same_shape: cpn_request_t is id, units, split, progress, duration_s, ...");
_Static_assert(S_B1 + sizeof(cpn_hints_t) == sizeof(cpn_request_t),
               "s_same_shape: the access hints are the last field of cpn_request_t");

static uint64_t s_mix(uint64_t h, const uint8_t *b, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, sizeof w);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t s_shape_hash(const cpn_request_t *r)
{
    const uint8_t *b = (const uint8_t *)r;
    uint64_t h = s_mix(1469598103934665603ull, b + S_A0, S_A1 - S_A0);
    return s_mix(h, b + S_B0, S_B1 - S_B0);
}

static bool s_shape_eq(const cpn_request_t *x, const cpn_request_t *y)
{
    const uint8_t *a = (const uint8_t *)x, *b = (const uint8_t *)y;
    return memcmp(a + S_A0, b + S_A0, S_A1 - S_A0) == 0 &&
           memcmp(a + S_B0, b + S_B0, S_B1 - S_B0) == 0;
}

/* The index of an earlier request with the same shape as reqs[i] (added if none): i if new. */
static size_t s_same_shape(const cpn_request_t *reqs, size_t i, size_t *tab, size_t n_tab)
{
    uint64_t hv = s_shape_hash(&reqs[i]);
    size_t h = (size_t)(hv ^ (hv >> 32)) & (n_tab - 1);
    while (tab[h] != 0) {
        if (s_shape_eq(&reqs[i], &reqs[tab[h] - 1]))
            return tab[h] - 1;
        h = (h + 1) & (n_tab - 1);
    }
    tab[h] = i + 1;
    return i;
}

/* A shape's candidates: the best-ranked offers, as many as it takes for their free units to
 * cover every unit the batch asks for (`need`), or for there to be one offer per request that
 * is not split (`whole`: each such request takes units from one offer only), from
 * BATCH_CANDS_MIN up to BATCH_CANDS_MAX. Either makes the cut harmless for one-unit requests:
 * whatever the others take, a free unit is left in the list, and it ranks at least as well as
 * any offer cut. `whole` bounds the lists when one request asks for many units: otherwise a
 * window holding a request for a million units would grow every shape's list to
 * BATCH_CANDS_MAX, on the broker's only thread. */
static int s_candidates(s_plan_t *p, const book_t *book, const cpn_request_t *req,
                        const match_policy_t *pol, uint64_t now_ms, uint64_t need, size_t whole,
                        match_cand_t **buf, size_t *cap, s_req_t *q)
{
    size_t max = BATCH_CANDS_MIN, n = 0;
    int r;
    for (;;) {
        if (max > *cap) {
            match_cand_t *c = realloc(*buf, max * sizeof *c);
            if (c == NULL)
                return CPN_E_NOMEM;
            *buf = c;
            *cap = max;
        }
        r = match_find(book, req, pol, now_ms, *buf, max, &n, NULL);
        if (r == CPN_E_NO_MATCH)
            return CPN_OK;
        if (r != CPN_OK)
            return r;
        uint64_t units = 0;
        for (size_t k = 0; k < n; k++)
            units += (*buf)[k].free;
        if (n < max || units >= need || n >= whole || max >= BATCH_CANDS_MAX)
            break;
        max *= 2;
    }
    if (p->n_opt + n > p->cap_opt) {
        size_t c = p->cap_opt ? 2 * p->cap_opt : 4096;
        while (c < p->n_opt + n)
            c *= 2;
        s_opt_t *o = realloc(p->opt, c * sizeof *o);
        if (o == NULL)
            return CPN_E_NOMEM;
        p->opt = o;
        p->cap_opt = c;
    }
    for (size_t k = 0; k < n; k++) {
        s_opt_t *o = &p->opt[p->n_opt];
        if ((r = s_offer(p, &(*buf)[k], &o->off)) != CPN_OK)
            return r;
        uint64_t rank = (*buf)[k].rank;
        o->rank = rank < (uint64_t)S_RANK_CAP ? (int64_t)rank : S_RANK_CAP;
        p->n_opt++;
    }
    q->n = (uint32_t)(p->n_opt - q->first);
    return CPN_OK;
}

static int s_collect(s_plan_t *p, const book_t *book, const cpn_request_t *reqs,
                     const match_policy_t *pol, uint64_t now_ms)
{
    size_t n_tab = 2, cap = 0, whole = 0;
    uint64_t need = 0;
    while (n_tab < 2 * p->n_req)
        n_tab *= 2;
    match_cand_t *c = NULL;
    size_t *tab = calloc(n_tab, sizeof *tab);
    int r = CPN_OK;
    if (tab == NULL) {
        r = CPN_E_NOMEM;
        goto out;
    }
    /* Shapes first (and the units the batch asks for), then one candidate list per shape. */
    for (size_t i = 0; i < p->n_req; i++) {
        s_req_t *q = &p->req[i];
        q->at = -1;
        q->rep = i;
        q->next = SIZE_MAX;
        q->tail = i;
        q->size = 1;
        q->units = reqs[i].units;
        q->multi = reqs[i].units > 1;
        uint64_t acc = (uint64_t)reqs[i].units * reqs[i].accel_count;
        q->value = (int64_t)((acc << S_COUNT_BITS) | 1u);
        if (reqs[i].split)
            continue;
        need += reqs[i].units;
        whole++;
        size_t same = s_same_shape(reqs, i, tab, n_tab);
        if (same != i) {
            s_req_t *f = &p->req[same];
            q->rep = same;
            p->req[f->tail].next = i;
            f->tail = i;
            f->size++;
        }
    }
    for (size_t i = 0; i < p->n_req && r == CPN_OK; i++) {
        s_req_t *q = &p->req[i];
        q->first = (uint32_t)p->n_opt;
        if (reqs[i].split)
            continue;
        if (q->rep != i) {
            q->first = p->req[q->rep].first;
            q->n = p->req[q->rep].n;
            continue;
        }
        r = s_candidates(p, book, &reqs[i], pol, now_ms, need, whole, &c, &cap, q);
    }
out:
    free(tab);
    free(c);
    return r;
}

/* ---- the flow network --------------------------------------------------------------------- */

/* One node per shape of one-unit requests (its requests are interchangeable): S -> shape has
 * capacity = its number of requests; the flow is handed to them in arrival order. */
static bool s_flow_node(const s_req_t *q, size_t i)
{
    return !q->multi && q->n > 0 && q->rep == i;
}

static void s_edge(s_plan_t *p, uint32_t u, uint32_t v, uint32_t cap, s_cost_t cost)
{
    s_edge_t *e = &p->e[p->n_e];
    *e = (s_edge_t){v, cap, cap, p->head[u], cost};
    p->head[u] = (int32_t)p->n_e++;
    e = &p->e[p->n_e];
    *e = (s_edge_t){u, 0, 0, p->head[v], s_minus(S_ZERO, cost)};
    p->head[v] = (int32_t)p->n_e++;
}

static int s_network(s_plan_t *p)
{
    size_t n_unit = 0, n_arc = 0;
    for (size_t i = 0; i < p->n_req; i++)
        if (s_flow_node(&p->req[i], i)) {
            n_unit++;
            n_arc += p->req[i].n;
        }
    p->n_node = (uint32_t)(2 + n_unit + p->n_off);
    p->src = 0;
    p->sink = p->n_node - 1;
    size_t n_edge = 2 * (n_unit + n_arc + p->n_off);
    p->e = malloc(n_edge * sizeof *p->e);
    p->head = malloc(p->n_node * sizeof *p->head);
    p->pi = malloc(p->n_node * sizeof *p->pi);
    p->dist = malloc(p->n_node * sizeof *p->dist);
    p->prev = malloc(p->n_node * sizeof *p->prev);
    p->heap = malloc((n_edge + p->n_node) * sizeof *p->heap);
    p->it = malloc(p->n_node * sizeof *p->it);
    p->dead = calloc(p->n_node, sizeof *p->dead);
    p->stack = malloc(p->n_node * sizeof *p->stack);
    p->on_stack = calloc(p->n_node, sizeof *p->on_stack);
    p->wanted = calloc(p->n_off + 1, 1);
    if (p->e == NULL || p->head == NULL || p->pi == NULL || p->dist == NULL || p->prev == NULL ||
        p->heap == NULL || p->it == NULL || p->dead == NULL || p->stack == NULL ||
        p->on_stack == NULL || p->wanted == NULL)
        return CPN_E_NOMEM;
    for (uint32_t v = 0; v < p->n_node; v++)
        p->head[v] = -1;
    uint32_t node = 1;
    for (size_t i = 0; i < p->n_req; i++)
        if (s_flow_node(&p->req[i], i))
            p->req[i].node = node++;
    p->off_base = node;
    for (size_t o = 0; o < p->n_off; o++)
        p->off[o].node = node++;
    for (size_t i = 0; i < p->n_req; i++) {
        const s_req_t *q = &p->req[i];
        if (!s_flow_node(q, i))
            continue;
        s_edge(p, p->src, q->node, q->size, (s_cost_t){-q->value, 0});
        /* Worst candidate first: the list at the node's head is then best first. */
        for (uint32_t k = q->n; k-- > 0;) {
            const s_opt_t *o = &p->opt[q->first + k];
            s_edge(p, q->node, p->off[o->off].node, q->size, (s_cost_t){0, o->rank});
        }
    }
    /* Last, so that it heads the offer's list: the DFS looks at the way out first. */
    for (size_t o = 0; o < p->n_off; o++) {
        p->off[o].to_sink = p->n_e;
        s_edge(p, p->off[o].node, p->sink, p->off[o].cap, S_ZERO);
    }
    return CPN_OK;
}

static void s_heap_push(s_plan_t *p, s_cost_t d, uint32_t v)
{
    size_t i = p->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        int c = s_cmp(d, p->heap[up].d);
        if (c > 0 || (c == 0 && v >= p->heap[up].v))
            break;
        p->heap[i] = p->heap[up];
        i = up;
    }
    p->heap[i] = (s_heap_t){d, v};
}

static s_heap_t s_heap_pop(s_plan_t *p)
{
    s_heap_t top = p->heap[0], last = p->heap[--p->n_heap];
    size_t i = 0;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= p->n_heap)
            break;
        if (k + 1 < p->n_heap) {
            int c = s_cmp(p->heap[k + 1].d, p->heap[k].d);
            if (c < 0 || (c == 0 && p->heap[k + 1].v < p->heap[k].v))
                k++;
        }
        int c = s_cmp(p->heap[k].d, last.d);
        if (c > 0 || (c == 0 && p->heap[k].v >= last.v))
            break;
        p->heap[i] = p->heap[k];
        i = k;
    }
    p->heap[i] = last;
    return top;
}

/* Distances of the initial network (acyclic: S, requests, offers, T in that order). */
static void s_potentials(s_plan_t *p)
{
    for (uint32_t v = 0; v < p->n_node; v++)
        p->pi[v] = S_INF;
    p->pi[p->src] = S_ZERO;
    for (int32_t k = p->head[p->src]; k >= 0; k = p->e[k].next)
        if (p->e[k].cap > 0)
            p->pi[p->e[k].to] = p->e[k].cost;
    for (size_t i = 0; i < p->n_req; i++) {
        const s_req_t *q = &p->req[i];
        if (!s_flow_node(q, i))
            continue;
        for (int32_t k = p->head[q->node]; k >= 0; k = p->e[k].next) {
            const s_edge_t *e = &p->e[k];
            if (e->cap == 0)
                continue;
            s_cost_t d = s_plus(p->pi[q->node], e->cost);
            if (s_cmp(d, p->pi[e->to]) < 0)
                p->pi[e->to] = d;
        }
    }
    for (size_t o = 0; o < p->n_off; o++) {
        uint32_t v = p->off[o].node;
        if (p->off[o].cap > p->off[o].multi && s_cmp(p->pi[v], p->pi[p->sink]) < 0)
            p->pi[p->sink] = p->pi[v];
    }
}

/* Dijkstra on reduced costs from S; true if T is reached. */
static bool s_dijkstra(s_plan_t *p)
{
    for (uint32_t v = 0; v < p->n_node; v++) {
        p->dist[v] = S_INF;
        p->prev[v] = -1;
    }
    p->n_heap = 0;
    p->dist[p->src] = S_ZERO;
    s_heap_push(p, S_ZERO, p->src);
    while (p->n_heap > 0) {
        s_heap_t h = s_heap_pop(p);
        if (s_cmp(h.d, p->dist[h.v]) > 0)
            continue;
        for (int32_t k = p->head[h.v]; k >= 0; k = p->e[k].next) {
            const s_edge_t *e = &p->e[k];
            if (e->cap == 0)
                continue;
            s_cost_t d = s_plus(h.d, s_minus(s_plus(e->cost, p->pi[h.v]), p->pi[e->to]));
            if (s_cmp(d, p->dist[e->to]) < 0) {
                p->dist[e->to] = d;
                p->prev[e->to] = k;
                s_heap_push(p, d, e->to);
            }
        }
    }
    return p->prev[p->sink] >= 0;
}

static s_cost_t s_reduced(const s_plan_t *p, uint32_t u, const s_edge_t *e)
{
    return s_minus(s_plus(e->cost, p->pi[u]), p->pi[e->to]);
}

/* One path S -> T over edges with room and reduced cost 0 (shortest paths, as the potentials
 * stand), avoiding nodes on the path and nodes already found not to reach T in this phase
 * (augmenting never lets them reach T again: the edges it adds start on the path, which they
 * could not reach). Each node keeps its current edge through the phase (skipped edges are
 * not looked at again; at worst a path is left for the next phase). Augments one unit along
 * the path found; false if there is none. */
static bool s_dfs(s_plan_t *p)
{
    size_t sp = 0;
    p->stack[sp++] = p->src;
    p->on_stack[p->src] = 1;
    while (sp > 0) {
        uint32_t u = p->stack[sp - 1];
        if (u == p->sink)
            break;
        int32_t k = p->it[u];
        while (k >= 0) {
            const s_edge_t *e = &p->e[k];
            if (e->cap > 0 && !p->on_stack[e->to] && p->dead[e->to] != p->phase &&
                s_cmp(s_reduced(p, u, e), S_ZERO) == 0)
                break;
            k = e->next;
        }
        p->it[u] = k;
        if (k < 0) {
            p->dead[u] = p->phase;
            p->on_stack[u] = 0;
            if (--sp > 0) {
                uint32_t w = p->stack[sp - 1];
                p->it[w] = p->e[p->it[w]].next;
            }
            continue;
        }
        uint32_t v = p->e[k].to;
        p->prev[v] = k;
        p->on_stack[v] = 1;
        p->stack[sp++] = v;
    }
    for (size_t i = 0; i < sp; i++)
        p->on_stack[p->stack[i]] = 0;
    if (sp == 0)
        return false;
    for (size_t i = 1; i < sp; i++) {
        p->e[p->prev[p->stack[i]]].cap--;
        p->e[p->prev[p->stack[i]] ^ 1].cap++;
    }
    return true;
}

/* Solve the flow for the current multi-unit placements; *total = its cost.
 * Primal-dual: a Dijkstra gives the cost of the shortest path and makes every shortest path's
 * edges reduced-cost 0; then all of them are augmented by DFS. Phases = distinct path costs. */
static void s_flow(s_plan_t *p, s_cost_t *total)
{
    for (size_t k = 0; k < p->n_e; k++)
        p->e[k].cap = p->e[k].orig;
    for (size_t o = 0; o < p->n_off; o++)
        p->e[p->off[o].to_sink].cap = p->off[o].cap - p->off[o].multi;
    *total = S_ZERO;
    s_potentials(p);
    /* Each phase carries at least one unit from a distinct request: at most n_req phases. */
    for (size_t round = 0, paths = 0; round < p->n_req && paths < p->n_req; round++) {
        if (!s_dijkstra(p))
            break;
        s_cost_t c = s_plus(s_minus(p->dist[p->sink], p->pi[p->src]), p->pi[p->sink]);
        if (s_cmp(c, S_ZERO) >= 0)
            break;
        for (uint32_t v = 0; v < p->n_node; v++)
            if (s_cmp(p->dist[v], S_INF) != 0)
                p->pi[v] = s_plus(p->pi[v], p->dist[v]);
        p->phase++;
        for (uint32_t v = 0; v < p->n_node; v++)
            p->it[v] = p->head[v];
        while (paths < p->n_req && s_dfs(p)) {
            *total = s_plus(*total, c);
            paths++;
        }
    }
}

/* Read the one-unit requests' offers off the flow: a shape's units go to its requests in
 * arrival order, best offer first. */
static void s_flow_read(s_plan_t *p)
{
    for (size_t i = 0; i < p->n_req; i++) {
        if (!s_flow_node(&p->req[i], i))
            continue;
        size_t m = i;
        /* The shape's edges to offers run best first (s_network). */
        for (int32_t k = p->head[p->req[i].node]; k >= 0; k = p->e[k].next) {
            const s_edge_t *e = &p->e[k];
            if (e->orig == 0 || e->to == p->src)
                continue;
            for (uint32_t used = e->orig - e->cap; used > 0 && m != SIZE_MAX; used--) {
                p->req[m].at = (int64_t)(e->to - p->off_base);
                m = p->req[m].next;
            }
        }
        for (; m != SIZE_MAX; m = p->req[m].next)
            p->req[m].at = -1;
    }
}

/* ---- multi-unit requests ------------------------------------------------------------------ */

static s_cost_t s_multi_cost(const s_plan_t *p, const s_req_t *q, int64_t at)
{
    for (uint32_t k = 0; at >= 0 && k < q->n; k++)
        if (p->opt[q->first + k].off == (uint32_t)at)
            return (s_cost_t){-q->value, (int64_t)q->units * p->opt[q->first + k].rank};
    return S_ZERO;
}

static void s_move(s_plan_t *p, s_req_t *q, int64_t to)
{
    if (q->at >= 0)
        p->off[q->at].multi -= q->units;
    q->at = to;
    if (to >= 0)
        p->off[to].multi += q->units;
}

static bool s_room(const s_plan_t *p, const s_req_t *q, uint32_t off)
{
    const s_offer_t *o = &p->off[off];
    return o->cap - o->multi >= q->units;
}

static s_cost_t s_total(s_plan_t *p, const size_t *multi, size_t n_multi)
{
    s_cost_t t;
    s_flow(p, &t);
    for (size_t m = 0; m < n_multi; m++)
        t = s_plus(t, s_multi_cost(p, &p->req[multi[m]], p->req[multi[m]].at));
    return t;
}

typedef struct {
    int64_t value;
    uint32_t n;
    size_t i;
} s_key_t;

/* Most accelerators first, then fewest candidates, then arrival. */
static int s_multi_order(const void *a, const void *b)
{
    const s_key_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    return x->i < y->i ? -1 : 1;
}

/* Mark the offers that requests left out could use; false if none is left out. */
static bool s_wanted(s_plan_t *p)
{
    bool any = false;
    memset(p->wanted, 0, p->n_off);
    for (size_t i = 0; i < p->n_req; i++) {
        const s_req_t *q = &p->req[i];
        if (q->n == 0 || q->at >= 0)
            continue;
        any = true;
        for (uint32_t k = 0; k < q->n; k++)
            p->wanted[p->opt[q->first + k].off] = 1;
    }
    return any;
}

/* Each multi-unit request that is left out, or holds an offer a left-out request could use,
 * tries up to BATCH_TRIES other offers (and none); a move stays if the whole plan improves. */
static void s_repair(s_plan_t *p, const size_t *multi, size_t n_multi, s_cost_t *best)
{
    for (size_t m = 0; m < n_multi && s_wanted(p); m++) {
        s_req_t *q = &p->req[multi[m]];
        if (q->at >= 0 && !p->wanted[q->at])
            continue;
        int64_t keep = q->at;
        uint32_t tries = 0;
        for (int64_t k = -1; k < (int64_t)q->n && tries < BATCH_TRIES; k++) {
            int64_t to = k < 0 ? -1 : (int64_t)p->opt[q->first + k].off;
            if (to == keep)
                continue;
            s_move(p, q, -1);
            if (to >= 0 && !s_room(p, q, (uint32_t)to)) {
                s_move(p, q, keep);
                continue;
            }
            s_move(p, q, to);
            tries++;
            s_cost_t t = s_total(p, multi, n_multi);
            if (s_cmp(t, *best) < 0) {
                *best = t;
                keep = to;
                s_flow_read(p);
            }
            s_move(p, q, keep);
        }
    }
}

static void s_plan_free(s_plan_t *p)
{
    free(p->req);
    free(p->opt);
    free(p->off);
    free(p->slot);
    free(p->e);
    free(p->head);
    free(p->pi);
    free(p->dist);
    free(p->prev);
    free(p->it);
    free(p->dead);
    free(p->stack);
    free(p->on_stack);
    free(p->wanted);
    free(p->heap);
}

int batch_plan(const book_t *book, const cpn_request_t *reqs, size_t n, const match_policy_t *pol,
               uint64_t now_ms, batch_place_t *out, size_t *n_out)
{
    s_plan_t p;
    size_t *multi = NULL, n_multi = 0;
    s_key_t *key = NULL;
    const char *why;
    int r;

    memset(&p, 0, sizeof p);
    if (n_out != NULL)
        *n_out = 0;
    if (book == NULL || (reqs == NULL && n > 0) || pol == NULL || (out == NULL && n > 0) ||
        n_out == NULL || n > BATCH_MAX || match_policy_validate(pol, &why) != CPN_OK)
        return CPN_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (cpn_request_validate(&reqs[i], &why) != CPN_OK)
            return CPN_E_INVAL;
    if (n == 0)
        return CPN_OK;
    p.n_req = n;
    p.req = calloc(n, sizeof *p.req);
    multi = calloc(n, sizeof *multi);
    key = malloc(n * sizeof *key);
    if (p.req == NULL || multi == NULL || key == NULL) {
        r = CPN_E_NOMEM;
        goto out;
    }
    if ((r = s_collect(&p, book, reqs, pol, now_ms)) != CPN_OK || (r = s_network(&p)) != CPN_OK)
        goto out;

    /* Multi-unit requests first, each on its best candidate with room. */
    for (size_t i = 0; i < n; i++)
        if (p.req[i].multi && p.req[i].n > 0)
            key[n_multi++] = (s_key_t){p.req[i].value, p.req[i].n, i};
    qsort(key, n_multi, sizeof *key, s_multi_order);
    for (size_t m = 0; m < n_multi; m++)
        multi[m] = key[m].i;
    for (size_t m = 0; m < n_multi; m++) {
        s_req_t *q = &p.req[multi[m]];
        for (uint32_t k = 0; k < q->n && q->at < 0; k++)
            if (s_room(&p, q, p.opt[q->first + k].off))
                s_move(&p, q, p.opt[q->first + k].off);
    }
    s_cost_t best = s_total(&p, multi, n_multi);
    s_flow_read(&p);
    if (n_multi > 0 && s_wanted(&p)) {
        s_repair(&p, multi, n_multi, &best);
        (void)s_total(&p, multi, n_multi);
        s_flow_read(&p);
    }

    for (size_t i = 0; i < n; i++) {
        const s_req_t *q = &p.req[i];
        if (q->at < 0)
            continue;
        batch_place_t *o = &out[(*n_out)++];
        o->req = i;
        o->cand = p.off[q->at].cand;
        o->cand.units = q->units;
    }
    r = CPN_OK;
out:
    free(key);
    free(multi);
    s_plan_free(&p);
    return r;
}
