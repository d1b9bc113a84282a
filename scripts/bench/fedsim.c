/* fedsim.c - SIMULATION of a federation of many brokers in one process, driven by the broker's
 * own federation code (scripts/bench/federation_scale runs it; docs/BENCHMARKS.md).
 *
 * Real: the spanning tree (fed_tree_choose, fed_tree_edge), the hop limit (fed_relay_goes_on),
 * the offer book of every broker (book_put_ad deduplicating by (peer, seq)), the sync answer
 * rule (fed_sync_offers), and every frame: peers' ADs and brokers' RELAYs are signed with real
 * Ed25519 keys, each RELAY is built by cpn_signer_build (its size is what is counted), and a
 * broker's receive path (parse, verify the RELAY's and the peer's signatures, decode) and send
 * path (sign) run for real; their thread CPU time is the broker's service time.
 * Modelled: the wire. A frame takes --link-us microseconds from sender to receiver, and each
 * copy costs its sender --send-us (zmq_send and CURVE, not run here); each broker
 * handles its frames one at a time (a queue per broker, as its single-threaded loop does);
 * HELLOs cost the measured time of one signature check. Time is virtual (the sum of those).
 * In flood mode (the behaviour before the tree) on large meshes the crypto runs for the first
 * CRYPTO_SAMPLE deliveries only; later ones are charged the mean measured so far (the book's
 * dedup still runs for every one).
 *
 * Usage: fedsim --brokers N --topology line|star|rr|mesh [--degree 4] [--mode tree|flood]
 *               [--changes 20] [--cut 10] [--link-us 500] [--send-us 5]
 * Prints one line of JSON per phase (steady, cut, healed).
 */
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "book.h"
#include "federation_int.h"
#include "msg_typed.h"
#include "transport.h"

#define CRYPTO_SAMPLE 20000 /* deliveries whose crypto runs for real in flood mode */
#define EV_HELLO 0
#define EV_RELAY 1

typedef struct {
    cpn_identity_t *id, *peer_id;
    cpn_signer_t signer;
    book_t *book;
    fed_link_t *links;
    uint32_t *nbr;
    uint32_t *rev; /* rev[k]: our slot in nbr[k]'s lists */
    uint32_t n;
    fed_tree_t tree;
    double busy;
    uint64_t peer_seq;
} node_t;

typedef struct {
    double t;
    uint32_t type, src, dst, dslot, hops; /* dslot: src's slot in dst's links */
    fed_tree_t tree;       /* HELLO */
    const uint8_t *frame;  /* RELAY: owned by the frame store */
    size_t len;
} ev_t;

static struct {
    node_t *nodes;
    uint32_t n;
    ev_t *heap;
    size_t n_ev, cap_ev;
    uint8_t **frames;
    size_t n_frames, cap_frames;
    bool flood;
    bool repair_all; /* --repair all: every differing link syncs at once (the rule before) */
    double link_us, hello_us, send_us;
    uint32_t max_hops;
    cpn_limits_t lim;
    /* per phase */
    uint64_t relays, relay_bytes, deliveries, hellos, sync_relays, sync_bytes;
    double crypto_sum;
    uint64_t crypto_n;
    double *reach; /* per broker: when it took the change (-1: not yet) */
} g;

static double s_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void s_push(const ev_t *e)
{
    if (g.n_ev == g.cap_ev) {
        g.cap_ev = g.cap_ev ? g.cap_ev * 2 : 1024;
        g.heap = realloc(g.heap, g.cap_ev * sizeof *g.heap);
        if (!g.heap)
            abort();
    }
    size_t i = g.n_ev++;
    while (i && g.heap[(i - 1) / 2].t > e->t) {
        g.heap[i] = g.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    g.heap[i] = *e;
}

static ev_t s_pop(void)
{
    ev_t top = g.heap[0], last = g.heap[--g.n_ev];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= g.n_ev)
            break;
        if (c + 1 < g.n_ev && g.heap[c + 1].t < g.heap[c].t)
            c++;
        if (g.heap[c].t >= last.t)
            break;
        g.heap[i] = g.heap[c];
        i = c;
    }
    if (g.n_ev)
        g.heap[i] = last;
    return top;
}

static const uint8_t *s_keep(uint8_t *frame)
{
    if (g.n_frames == g.cap_frames) {
        g.cap_frames = g.cap_frames ? g.cap_frames * 2 : 1024;
        g.frames = realloc(g.frames, g.cap_frames * sizeof *g.frames);
        if (!g.frames)
            abort();
    }
    g.frames[g.n_frames++] = frame;
    return frame;
}

static void s_frames_free(void)
{
    for (size_t i = 0; i < g.n_frames; i++)
        free(g.frames[i]);
    g.n_frames = 0;
}

static uint32_t s_rand(uint32_t n)
{
    return randombytes_uniform(n);
}

/* ---- topology ---- */

static bool s_linked(const node_t *a, uint32_t b)
{
    for (uint32_t i = 0; i < a->n; i++)
        if (a->nbr[i] == b)
            return true;
    return false;
}

static void s_link(uint32_t a, uint32_t b)
{
    node_t *x = &g.nodes[a], *y = &g.nodes[b];
    x->nbr = realloc(x->nbr, (x->n + 1) * sizeof *x->nbr);
    y->nbr = realloc(y->nbr, (y->n + 1) * sizeof *y->nbr);
    if (!x->nbr || !y->nbr)
        abort();
    x->nbr[x->n++] = b;
    y->nbr[y->n++] = a;
}

static bool s_connected(void)
{
    uint32_t *q = malloc(g.n * sizeof *q), h = 0, t = 0, seen = 1;
    bool *vis = calloc(g.n, 1);
    q[t++] = 0;
    vis[0] = true;
    while (h < t) {
        node_t *x = &g.nodes[q[h++]];
        for (uint32_t i = 0; i < x->n; i++)
            if (!vis[x->nbr[i]]) {
                vis[x->nbr[i]] = true;
                q[t++] = x->nbr[i];
                seen++;
            }
    }
    free(q);
    free(vis);
    return seen == g.n;
}

static void s_topology(const char *topo, uint32_t degree)
{
    if (strcmp(topo, "line") == 0) {
        for (uint32_t i = 1; i < g.n; i++)
            s_link(i - 1, i);
    } else if (strcmp(topo, "star") == 0) {
        for (uint32_t i = 1; i < g.n; i++)
            s_link(0, i);
    } else if (strcmp(topo, "mesh") == 0) {
        for (uint32_t i = 0; i < g.n; i++)
            for (uint32_t j = i + 1; j < g.n; j++)
                s_link(i, j);
    } else { /* random regular: random pairings of free stubs, retried until connected */
        for (int attempt = 0; attempt < 100; attempt++) {
            for (uint32_t i = 0; i < g.n; i++)
                g.nodes[i].n = 0;
            for (uint32_t i = 0; i < g.n; i++)
                for (uint32_t tries = 0; g.nodes[i].n < degree && tries < 50 * degree; tries++) {
                    uint32_t j = s_rand(g.n);
                    if (j != i && g.nodes[j].n < degree && !s_linked(&g.nodes[i], j))
                        s_link(i, j);
                }
            if (s_connected())
                return;
        }
        fprintf(stderr, "no connected random graph\n");
        exit(1);
    }
}

static uint32_t s_slot(const node_t *x, uint32_t nb)
{
    for (uint32_t k = 0; k < x->n; k++)
        if (x->nbr[k] == nb)
            return k;
    abort();
}

/* fed_link_t for every neighbour, as fed_link.c keeps them. */
static void s_links(void)
{
    for (uint32_t i = 0; i < g.n; i++) {
        node_t *x = &g.nodes[i];
        x->links = calloc(x->n ? x->n : 1, sizeof *x->links);
        if (!x->links)
            abort();
        for (uint32_t k = 0; k < x->n; k++) {
            memcpy(x->links[k].key, cpn_identity_pk(g.nodes[x->nbr[k]].id), CPN_PK_LEN);
            x->links[k].up = true;
            x->links[k].use_offers = true;
        }
        (void)fed_tree_choose(cpn_identity_pk(x->id), x->links, 0, g.max_hops, &x->tree);
    }
    for (uint32_t i = 0; i < g.n; i++) {
        node_t *x = &g.nodes[i];
        x->rev = malloc((x->n ? x->n : 1) * sizeof *x->rev);
        for (uint32_t k = 0; k < x->n; k++)
            x->rev[k] = s_slot(&g.nodes[x->nbr[k]], i);
    }
}

/* ---- the protocol ---- */

static void s_hello_all(uint32_t i, double t)
{
    node_t *x = &g.nodes[i];
    for (uint32_t k = 0; k < x->n; k++) {
        if (!x->links[k].up)
            continue;
        ev_t e = {.t = t + g.link_us, .type = EV_HELLO, .src = i, .dst = x->nbr[k],
                  .dslot = x->rev[k], .tree = x->tree};
        s_push(&e);
        g.hellos++;
    }
}

/* Broker i took a frame that crossed `hops` brokers, from `from` (UINT32_MAX: its own peer):
 * one signed RELAY to every member fed_tree_edge allows (every member in flood mode). */
static double s_publish(uint32_t i, uint32_t from, const uint8_t *frame, size_t len,
                        uint32_t hops, double t)
{
    node_t *x = &g.nodes[i];
    if (!fed_relay_goes_on(hops, g.max_hops))
        return 0;
    double c0 = s_cpu_us();
    cpn_relay_t rel = {.hops = hops + 1, .msg = {frame, len}};
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (cpn_signer_build(&x->signer, CPN_MSG_RELAY, &rel, &out, &out_len) != CPN_OK)
        abort();
    double cost = s_cpu_us() - c0;
    s_keep(out);
    /* each copy costs the sender --send-us more (zmq_send and the transport's encryption) */
    for (uint32_t k = 0; k < x->n; k++) {
        if (x->nbr[k] == from || !x->links[k].up)
            continue;
        if (!g.flood && !fed_tree_edge(&x->tree, cpn_identity_pk(x->id), &x->links[k]))
            continue;
        cost += g.send_us;
        ev_t e = {.t = t + cost + g.link_us, .type = EV_RELAY, .src = i, .dst = x->nbr[k],
                  .dslot = x->rev[k], .hops = hops + 1, .frame = out, .len = out_len};
        s_push(&e);
        g.relays++;
        g.relay_bytes += out_len;
    }
    return cost;
}

/* The receive path of fed_relay.c: the RELAY's envelope and signature, the peer's frame and
 * its signature, the AD decoded, the book. Returns the service time; *took: the book took it. */
static double s_receive(uint32_t i, const ev_t *e, cpn_env_t *inner, bool *took)
{
    node_t *x = &g.nodes[i];
    double c0 = s_cpu_us(), cost;
    cpn_env_t env;
    cpn_relay_t rel;
    cpn_ad_t ad;
    bool real = !g.flood || g.deliveries < CRYPTO_SAMPLE;
    g.deliveries++;
    if (cpn_env_parse(e->frame, e->len, &g.lim, &env) != CPN_OK ||
        (real && cpn_env_verify(&env) != CPN_OK) || cpn_relay_decode(&env, &g.lim, &rel) != CPN_OK ||
        cpn_env_parse(rel.msg.ptr, rel.msg.len, &g.lim, inner) != CPN_OK ||
        fed_relay_admit(inner->type, rel.hops, g.max_hops) != CPN_OK ||
        (real && cpn_env_verify(inner) != CPN_OK) || cpn_ad_decode(inner, &g.lim, &ad) != CPN_OK)
        abort();
    *took = book_put_ad(x->book, inner->from, inner->seq, inner->ts_ms, &ad, inner->frame,
                        inner->frame_len, cpn_identity_pk(g.nodes[e->src].id), rel.hops) == CPN_OK;
    cpn_ad_clear(&ad);
    cost = s_cpu_us() - c0;
    if (real) {
        g.crypto_sum += cost;
        g.crypto_n++;
    } else {
        cost = g.crypto_sum / (double)g.crypto_n;
    }
    return cost;
}

static double s_run(void)
{
    double last = 0;
    while (g.n_ev) {
        ev_t e = s_pop();
        node_t *x = &g.nodes[e.dst];
        uint32_t k = e.dslot;
        if (!x->links[k].up)
            continue; /* the link was cut while it travelled */
        double start = e.t > x->busy ? e.t : x->busy;
        if (e.type == EV_HELLO) {
            fed_link_t *l = &x->links[k];
            l->has_tree = true;
            l->tree = e.tree;
            x->busy = start + g.hello_us;
            if (fed_tree_choose(cpn_identity_pk(x->id), x->links, x->n, g.max_hops, &x->tree))
                s_hello_all(e.dst, x->busy);
        } else {
            cpn_env_t inner;
            bool took = false;
            double cost = s_receive(e.dst, &e, &inner, &took);
            x->busy = start + cost;
            if (took) {
                if (g.reach && g.reach[e.dst] < 0)
                    g.reach[e.dst] = x->busy;
                x->busy += s_publish(e.dst, e.src, inner.frame, inner.frame_len, e.hops, x->busy);
            }
        }
        last = x->busy;
    }
    return last;
}

/* Broker o's peer signs a new AD (a new seq): o takes it and relays it. */
static void s_change(uint32_t o, double t0)
{
    node_t *x = &g.nodes[o];
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "cpu64");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 64;
    p.mem_bytes = 256ull << 30;
    p.price = 1000 + s_rand(1000);
    p.total = 16;
    p.free = 1 + s_rand(16);
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "p%u", o);
    ad.ttl_s = 3600;
    ad.n_packages = 1;
    ad.packages = &p;
    uint64_t now = (uint64_t)time(NULL) * 1000;
    x->peer_seq = x->peer_seq ? x->peer_seq + 1 : now << 12;
    uint8_t *frame = NULL;
    size_t len = 0;
    if (cpn_msg_build(x->peer_id, CPN_MSG_AD, x->peer_seq, now, &ad, &frame, &len) != CPN_OK ||
        book_put_ad(x->book, cpn_identity_pk(x->peer_id), x->peer_seq, now, &ad, frame, len, NULL,
                    0) != CPN_OK)
        abort();
    s_keep(frame);
    if (g.reach)
        g.reach[o] = t0;
    x->busy = t0;
    x->busy += s_publish(o, UINT32_MAX, frame, len, 0, t0);
}

static int s_dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_pct(double *v, size_t n, double q)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, s_dcmp);
    size_t i = (size_t)ceil(q * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

/* Brokers reachable from o over links that are up. */
static uint32_t s_component(uint32_t o, bool *in)
{
    uint32_t *q = malloc(g.n * sizeof *q), h = 0, t = 0;
    memset(in, 0, g.n);
    q[t++] = o;
    in[o] = true;
    while (h < t) {
        node_t *x = &g.nodes[q[h++]];
        for (uint32_t k = 0; k < x->n; k++)
            if (x->links[k].up && !in[x->nbr[k]]) {
                in[x->nbr[k]] = true;
                q[t++] = x->nbr[k];
            }
    }
    free(q);
    return t;
}

/* --changes changes from random brokers, one after the other; one JSON line. */
static void s_measure(const char *phase, uint32_t changes)
{
    double *spread = calloc(changes, sizeof *spread), t = 0;
    bool *in = malloc(g.n);
    g.reach = malloc(g.n * sizeof *g.reach);
    uint64_t relays0 = g.relays, bytes0 = g.relay_bytes, missed = 0, brokers = 0;
    for (uint32_t c = 0; c < changes; c++) {
        uint32_t o = s_rand(g.n);
        uint32_t comp = s_component(o, in);
        for (uint32_t i = 0; i < g.n; i++)
            g.reach[i] = -1;
        t += 1e6; /* one change at a time: the last one has settled */
        for (uint32_t i = 0; i < g.n; i++)
            g.nodes[i].busy = t;
        s_change(o, t);
        (void)s_run();
        double worst = 0;
        for (uint32_t i = 0; i < g.n; i++) {
            if (!in[i])
                continue;
            if (g.reach[i] < 0)
                missed++;
            else if (g.reach[i] - t > worst)
                worst = g.reach[i] - t;
        }
        brokers += comp;
        spread[c] = worst / 1000.0;
        s_frames_free();
    }
    double copies = (double)(g.relays - relays0) / (double)brokers;
    double bytes = (double)(g.relay_bytes - bytes0) / (double)brokers;
    printf("{\"phase\": \"%s\", \"brokers\": %u, \"mode\": \"%s\", \"changes\": %u, "
           "\"reached_avg\": %.1f, \"missed\": %" PRIu64 ", \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
           "\"max_ms\": %.2f, \"relays_per_broker\": %.3f, \"relay_bytes_per_broker\": %.1f, "
           "\"service_us\": %.1f}\n",
           phase, g.n, g.flood ? "flood" : "tree", changes, (double)brokers / changes, missed,
           s_pct(spread, changes, 0.5), s_pct(spread, changes, 0.99),
           s_pct(spread, changes, 1.0), copies, bytes, g.crypto_n ? g.crypto_sum / g.crypto_n : 0);
    fflush(stdout);
    free(spread);
    free(in);
    free(g.reach);
    g.reach = NULL;
}

/* The tree settles: every broker says where it stands; HELLOs go again on every change. */
static void s_converge(const char *phase, const uint32_t *from, size_t n_from)
{
    uint64_t h0 = g.hellos;
    for (uint32_t i = 0; i < g.n; i++)
        g.nodes[i].busy = 0;
    for (size_t i = 0; i < n_from; i++) {
        node_t *x = &g.nodes[from[i]];
        (void)fed_tree_choose(cpn_identity_pk(x->id), x->links, x->n, g.max_hops, &x->tree);
        s_hello_all(from[i], 0);
    }
    double t = s_run();
    uint32_t roots = 0;
    for (uint32_t i = 0; i < g.n; i++)
        roots += sodium_is_zero(g.nodes[i].tree.parent, CPN_PK_LEN);
    printf("{\"phase\": \"%s tree\", \"brokers\": %u, \"settled_ms\": %.2f, \"hellos\": %" PRIu64
           ", \"roots\": %u}\n",
           phase, g.n, t / 1000.0, g.hellos - h0, roots);
}

static int s_key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, CPN_PK_LEN);
}

/* v's digest (SYNC) to u; u answers with what v lacks (fed_sync_offers), as RELAYs. */
static void s_sync_pair(uint32_t u, uint32_t v, uint8_t *ents, uint64_t now)
{
    size_t cur = 0, k = 0;
    const book_peer_t *bp;
    while ((bp = book_next(g.nodes[v].book, &cur)) != NULL && k < g.n) {
        uint8_t *e = ents + k * CPN_SYNC_ENTRY_LEN;
        memcpy(e, bp->key, CPN_PK_LEN);
        for (int b = 0; b < 8; b++)
            e[CPN_PK_LEN + b] = (uint8_t)(bp->seq >> (56 - 8 * b));
        k++;
    }
    qsort(ents, k, CPN_SYNC_ENTRY_LEN, s_key_cmp);
    cpn_sync_t sy;
    memset(&sy, 0, sizeof sy);
    memset(sy.hi, 0xff, sizeof sy.hi);
    sy.entries.ptr = ents;
    sy.entries.len = k * CPN_SYNC_ENTRY_LEN;
    g.sync_bytes += sy.entries.len + FED_SYNC_OVERHEAD;
    node_t *x = &g.nodes[u];
    cur = 0;
    while ((bp = book_next(x->book, &cur)) != NULL) {
        if (!fed_sync_offers(bp, &sy, cpn_identity_pk(g.nodes[v].id), now, g.max_hops))
            continue;
        cpn_relay_t rel = {.hops = bp->hops + 1, .msg = {bp->frame, bp->frame_len}};
        uint8_t *out = NULL;
        size_t out_len = 0;
        if (cpn_signer_build(&x->signer, CPN_MSG_RELAY, &rel, &out, &out_len) != CPN_OK)
            abort();
        s_keep(out);
        ev_t e = {.t = g.link_us, .type = EV_RELAY, .src = u, .dst = v,
                  .dslot = s_slot(&g.nodes[v], u), .hops = bp->hops + 1, .frame = out,
                  .len = out_len};
        s_push(&e);
        g.sync_relays++;
        g.sync_bytes += out_len;
    }
}

/* fed_sync_fingerprint's fold over a book (the HELLO `digest`). */
static uint64_t s_fp(const book_t *b)
{
    uint64_t fp = FED_DIGEST_SEED;
    size_t cur = 0;
    const book_peer_t *bp;
    while ((bp = book_next(b, &cur)) != NULL)
        fp = fed_tree_fold(fp, bp->key, bp->seq);
    return fp;
}

/* Anti-entropy: on every link that is up whose two ends' fingerprints differ (as their HELLOs
 * would show), both ends send their digest and answer the other's; what comes in spreads on
 * along the tree. Reports how long until it settles, what it cost, and how many (broker, peer)
 * pairs still lack the peer's latest AD though a path of links that are up joins them. */
/* Is the link u -> nbr[k] a tree link at either end (fed_tree_edge)? */
static bool s_tree_link(uint32_t u, uint32_t k)
{
    const node_t *x = &g.nodes[u], *y = &g.nodes[x->nbr[k]];
    return fed_tree_edge(&x->tree, cpn_identity_pk(x->id), &x->links[k]) ||
           fed_tree_edge(&y->tree, cpn_identity_pk(y->id), &y->links[x->rev[k]]);
}

/* One round: every link that is up, whose ends' fingerprints differ and that `which` selects
 * (0: every link; 1: tree links; 2: links off the tree) syncs both ways. Links synced. */
static uint64_t s_sync_round(int which, uint64_t now)
{
    uint64_t pairs = 0;
    uint8_t *ents = malloc((size_t)(g.n + 1) * CPN_SYNC_ENTRY_LEN);
    uint64_t *fp = malloc(g.n * sizeof *fp);
    for (uint32_t i = 0; i < g.n; i++)
        fp[i] = s_fp(g.nodes[i].book);
    for (uint32_t u = 0; u < g.n; u++)
        for (uint32_t k = 0; k < g.nodes[u].n; k++) {
            uint32_t v = g.nodes[u].nbr[k];
            if (v < u || !g.nodes[u].links[k].up || fp[u] == fp[v])
                continue;
            if (which && (which == 1) != s_tree_link(u, k))
                continue;
            pairs++;
            s_sync_pair(u, v, ents, now);
            s_sync_pair(v, u, ents, now);
        }
    free(ents);
    free(fp);
    return pairs;
}

/* tree_first: the broker's rule (fed_tree_sync_due): the tree links sync first; a link off
 * the tree only if its ends still differ FED_DIGEST_OFFTREE_MS later (counted in that time).
 * Otherwise every differing link at once (the rule before). */
static void s_repair(const char *phase, bool tree_first)
{
    uint64_t r0 = g.relays, b0 = g.relay_bytes, pairs = 0, offtree = 0;
    g.sync_relays = g.sync_bytes = 0;
    for (uint32_t i = 0; i < g.n; i++)
        g.nodes[i].busy = 0;
    uint64_t now = (uint64_t)time(NULL) * 1000;
    pairs = s_sync_round(tree_first ? 1 : 0, now);
    double t = s_run();
    if (tree_first && (offtree = s_sync_round(2, now)) > 0) {
        for (uint32_t i = 0; i < g.n; i++)
            g.nodes[i].busy = 0;
        t += FED_DIGEST_OFFTREE_MS * 1000.0 + s_run();
        pairs += offtree;
    }
    uint64_t stale = 0;
    bool *in = malloc(g.n);
    for (uint32_t j = 0; j < g.n; j++) {
        (void)s_component(j, in);
        for (uint32_t i = 0; i < g.n; i++) {
            const book_peer_t *bp = book_peer(g.nodes[i].book, cpn_identity_pk(g.nodes[j].peer_id));
            stale += in[i] && (!bp || bp->seq != g.nodes[j].peer_seq);
        }
    }
    free(in);
    printf("{\"phase\": \"%s\", \"brokers\": %u, \"links_synced\": %" PRIu64
           ", \"offtree_synced\": %" PRIu64
           ", \"settled_ms\": %.2f, \"stale_entries\": %" PRIu64 ", \"sync_relays\": %" PRIu64
           ", \"sync_bytes\": %" PRIu64 ", \"relays_after\": %" PRIu64
           ", \"relay_bytes_after\": %" PRIu64 "}\n",
           phase, g.n, pairs, offtree, t / 1000.0, stale, g.sync_relays, g.sync_bytes,
           g.relays - r0, g.relay_bytes - b0);
    fflush(stdout);
    s_frames_free();
}

int main(int argc, char **argv)
{
    const char *topo = "rr", *mode = "tree";
    uint32_t n = 64, degree = 4, changes = 20, cut_pct = 10;
    g.link_us = 500;
    g.send_us = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--brokers"))
            n = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--topology"))
            topo = argv[i + 1];
        else if (!strcmp(argv[i], "--degree"))
            degree = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--repair"))
            g.repair_all = strcmp(argv[i + 1], "all") == 0;
        else if (!strcmp(argv[i], "--changes"))
            changes = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cut"))
            cut_pct = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--link-us"))
            g.link_us = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--send-us"))
            g.send_us = atof(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (sodium_init() < 0 || n < 2 || !changes)
        return 1;
    g.n = n;
    g.flood = strcmp(mode, "flood") == 0;
    g.max_hops = n; /* the policy allows up to 64; a line of n needs n - 1 */
    g.lim = cpn_limits_default;
    g.nodes = calloc(n, sizeof *g.nodes);
    for (uint32_t i = 0; i < n; i++) {
        node_t *x = &g.nodes[i];
        if (cpn_identity_generate(&x->id) != CPN_OK ||
            cpn_identity_generate(&x->peer_id) != CPN_OK || !(x->book = book_new(4 * n + 16)))
            return 1;
        x->signer.id = x->id;
    }
    s_topology(topo, degree);
    s_links();
    /* one signature check: what a HELLO costs its receiver */
    {
        uint8_t *f = NULL;
        size_t len = 0;
        cpn_hello_t h = {.role = "broker", .name = "b"};
        cpn_env_t env;
        if (cpn_signer_build(&g.nodes[0].signer, CPN_MSG_HELLO, &h, &f, &len) != CPN_OK)
            return 1;
        double c0 = s_cpu_us();
        for (int k = 0; k < 100; k++)
            if (cpn_env_open(f, len, &g.lim, &env) != CPN_OK)
                return 1;
        g.hello_us = (s_cpu_us() - c0) / 100;
        free(f);
    }
    uint32_t *all = malloc(n * sizeof *all);
    for (uint32_t i = 0; i < n; i++)
        all[i] = i;
    s_converge("initial", all, g.flood ? 0 : n);
    free(all);
    /* every broker's peer advertises once: every book holds n peers. Set up directly (not
     * measured): the AD in every book, through the broker's tree parent (hops 1). */
    for (uint32_t i = 0; i < n; i++) {
        s_change(i, 0);
        g.n_ev = 0; /* not spread: put below */
        const book_peer_t *own = book_peer(g.nodes[i].book, cpn_identity_pk(g.nodes[i].peer_id));
        cpn_env_t env;
        cpn_ad_t ad;
        if (!own || cpn_env_parse(own->frame, own->frame_len, &g.lim, &env) != CPN_OK ||
            cpn_ad_decode(&env, &g.lim, &ad) != CPN_OK)
            abort();
        for (uint32_t j = 0; j < n; j++) {
            node_t *y = &g.nodes[j];
            if (j != i && book_put_ad(y->book, env.from, env.seq, env.ts_ms, &ad, env.frame,
                                      env.frame_len, y->links[0].key, 1) != CPN_OK)
                abort();
        }
        cpn_ad_clear(&ad);
        s_frames_free();
    }
    g.relays = g.relay_bytes = 0;
    s_measure("steady", changes);
    if (!cut_pct)
        return 0;
    /* cut: cut_pct % of the links go down (as a member silent for hello_timeout) */
    size_t n_links = 0;
    for (uint32_t i = 0; i < n; i++)
        n_links += g.nodes[i].n;
    n_links /= 2;
    size_t n_cut = (n_links * cut_pct + 99) / 100;
    uint32_t(*cut)[2] = malloc(n_cut * sizeof *cut);
    uint32_t *ends = malloc(2 * n_cut * sizeof *ends);
    for (size_t c = 0; c < n_cut; c++) {
        for (;;) {
            uint32_t a = s_rand(n);
            node_t *x = &g.nodes[a];
            if (!x->n)
                continue;
            uint32_t k = s_rand(x->n);
            if (!x->links[k].up)
                continue;
            uint32_t b = x->nbr[k];
            x->links[k].up = false;
            x->links[k].has_tree = false;
            node_t *y = &g.nodes[b];
            uint32_t kb = s_slot(y, a);
            y->links[kb].up = false;
            y->links[kb].has_tree = false;
            cut[c][0] = a;
            cut[c][1] = b;
            ends[2 * c] = a;
            ends[2 * c + 1] = b;
            break;
        }
    }
    /* before the ends notice (hello_timeout): frames on cut links are lost */
    s_measure("cut, not yet noticed", changes);
    for (size_t c = 0; c < n_cut; c++)
        for (int side = 0; side < 2; side++) {
            node_t *x = &g.nodes[cut[c][side]];
            x->links[s_slot(x, cut[c][!side])].has_tree = false;
        }
    if (!g.flood)
        s_converge("cut", ends, 2 * n_cut);
    s_repair("cut: fingerprints differ, SYNC", !g.flood && !g.repair_all);
    s_measure("cut", changes);
    for (size_t c = 0; c < n_cut; c++)
        for (int side = 0; side < 2; side++) {
            node_t *x = &g.nodes[cut[c][side]];
            x->links[s_slot(x, cut[c][!side])].up = true;
        }
    s_converge("healed", ends, 2 * n_cut);
    s_repair("healed: SYNC on connect", false);
    s_measure("healed", changes);
    free(cut);
    free(ends);
    return 0;
}
