/* bench_match.c - the pure matcher in one process, on a book built from real catalog rows.
 *
 * Driven by scripts/bench/match, which converts the data set first (match_data.py) and runs
 * this once per book size and repetition. One run:
 *
 *   1. load package shapes (one per catalog row), trace requests and equivalence rules;
 *   2. build a book of N packages: peer i (P = N / per_peer peers, each with its own Ed25519
 *      key) advertises catalog rows i*per_peer .. i*per_peer+per_peer-1 (modulo the catalog),
 *      one unit each, in a real signed AD frame (cpn_msg_build); 1 peer in 10 is connected
 *      directly, the others came through one of 8 brokers. The shapes are real; replicating
 *      rows over distinct peers is how the book reaches 1M packages;
 *   3. resident memory per package: VmRSS after the book minus before, over N;
 *   4. decisions: the trace's requests in file order (cycling), match_find (4 candidates)
 *      timed one by one; a match takes its unit (book_take) and every 1,000 decisions the
 *      peers that leased re-advertise (book_put_ad with a newer seq restores their units).
 *      Each decision is also classed by getrusage (outside the timed region): one during
 *      which this thread was preempted or took a page fault is "interrupted", and the
 *      percentiles are given over all decisions and over the uninterrupted ones;
 *   5. two linear scans on the same book and requests, same constraints and ranking: the
 *      naive broker's (every peer's packages, cpn_package_fits for the literal constraints)
 *      and a tight one (64-byte records with names resolved to ids, read in order: the best
 *      a broker without an index could do); each baseline decision is also matched by the
 *      index and the three best candidates compared;
 *   6. CPU time per match (thread CPU clock, one pass through the trace without takes): the
 *      figure other processes on a shared machine cannot inflate;
 *   7. book upkeep: an AD that changes every price (remove + insert in the index), and
 *      book_expire when nothing expires and when one peer's AD ran out.
 * Output: key=value lines (the script aggregates runs).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "book.h"
#include "identity.h"
#include "match.h"
#include "msg.h"

#define PER_PEER_MAX 64

typedef struct {
    cpn_package_t p;
} s_shape_t;

typedef struct {
    uint32_t gpus;
    char model[CPN_NAME_MAX];
    uint32_t cores;
    uint64_t mem_bytes;
} s_req_t;

static s_shape_t *s_shapes;
static size_t s_nshapes;
static s_req_t *s_reqs;
static size_t s_nreqs;
static match_policy_t s_pol;

static uint64_t s_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t s_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Involuntary context switches and page faults of this (single-threaded) process so far: a decision
 * during which either moved was interrupted by something other than its own work. */
static long s_interruptions(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ru.ru_nivcsw + ru.ru_minflt + ru.ru_majflt;
}

static long s_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void s_die(const char *what)
{
    fprintf(stderr, "bench_match: %s\n", what);
    exit(2);
}

/* Split a tab-separated line in place. */
static int s_fields(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (t == NULL)
            break;
        *t = '\0';
        p = t + 1;
    }
    return n;
}

static void s_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static void s_load(const char *dir)
{
    char path[4096], line[1024];
    char *f[16];
    size_t cap = 0;
    FILE *in;

    snprintf(path, sizeof path, "%s/shapes.tsv", dir);
    if ((in = fopen(path, "r")) == NULL)
        s_die("cannot open shapes.tsv");
    if (fgets(line, sizeof line, in) == NULL)
        s_die("empty shapes.tsv");
    while (fgets(line, sizeof line, in) != NULL) {
        if (s_fields(line, f, 16) != 12)
            s_die("bad line in shapes.tsv");
        if (s_nshapes == cap) {
            cap = cap ? cap * 2 : 1024;
            s_shapes = realloc(s_shapes, cap * sizeof *s_shapes);
            if (s_shapes == NULL)
                s_die("out of memory");
        }
        cpn_package_t *p = &s_shapes[s_nshapes].p;
        memset(p, 0, sizeof *p);
        snprintf(p->id, sizeof p->id, "r%zu-%.50s", s_nshapes, f[1]);
        s_copy(p->accel.vendor, sizeof p->accel.vendor, f[2]);
        s_copy(p->accel.model, sizeof p->accel.model, f[3]);
        p->accel.count = (uint32_t)strtoul(f[4], NULL, 10);
        if (p->accel.count > 0) {
            /* Not in the catalogs (match_data.py); required > 0 by the protocol; no trace
             * request asks by capability, so the smallest valid figures. */
            p->accel.mem_bytes = 1ull << 30;
            p->accel.bf16_tflops = 1;
        }
        p->cores = (uint32_t)strtoul(f[5], NULL, 10);
        p->mem_bytes = strtoull(f[6], NULL, 10) << 20;
        s_copy(p->storage_class, sizeof p->storage_class, f[7]);
        p->storage_bytes = strtoull(f[8], NULL, 10) << 30;
        p->egress_bps = strtoull(f[9], NULL, 10) * 1000000000ull;
        s_copy(p->region, sizeof p->region, f[10]);
        p->price = strtoull(f[11], NULL, 10);
        p->total = 1;
        p->free = 1;
        s_nshapes++;
    }
    fclose(in);

    cap = 0;
    snprintf(path, sizeof path, "%s/requests.tsv", dir);
    if ((in = fopen(path, "r")) == NULL)
        s_die("cannot open requests.tsv");
    if (fgets(line, sizeof line, in) == NULL)
        s_die("empty requests.tsv");
    while (fgets(line, sizeof line, in) != NULL) {
        if (s_fields(line, f, 16) != 5)
            s_die("bad line in requests.tsv");
        if (s_nreqs == cap) {
            cap = cap ? cap * 2 : 4096;
            s_reqs = realloc(s_reqs, cap * sizeof *s_reqs);
            if (s_reqs == NULL)
                s_die("out of memory");
        }
        s_req_t *q = &s_reqs[s_nreqs++];
        q->gpus = (uint32_t)strtoul(f[1], NULL, 10);
        s_copy(q->model, sizeof q->model, f[2]);
        q->cores = (uint32_t)strtoul(f[3], NULL, 10);
        q->mem_bytes = strtoull(f[4], NULL, 10) << 20;
    }
    fclose(in);

    match_policy_default(&s_pol);
    snprintf(path, sizeof path, "%s/equiv.tsv", dir);
    if ((in = fopen(path, "r")) == NULL)
        s_die("cannot open equiv.tsv");
    while (fgets(line, sizeof line, in) != NULL && s_pol.n_equiv < MATCH_EQUIV_MAX) {
        if (s_fields(line, f, 16) != 2)
            s_die("bad line in equiv.tsv");
        match_equiv_t *e = &s_pol.equiv[s_pol.n_equiv++];
        s_copy(e->model, sizeof e->model, f[0]);
        for (char *tok = strtok(f[1], ","); tok && e->accept.n < CPN_LIST_MAX;
             tok = strtok(NULL, ","))
            s_copy(e->accept.items[e->accept.n++], CPN_NAME_MAX, tok);
    }
    fclose(in);
    const char *why;
    if (match_policy_validate(&s_pol, &why) != CPN_OK)
        s_die(why);
    if (s_nshapes == 0 || s_nreqs == 0)
        s_die("no shapes or no requests");
}

static void s_request(size_t i, cpn_request_t *r)
{
    const s_req_t *q = &s_reqs[i % s_nreqs];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "req-%zu", i);
    r->units = 1;
    r->duration_s = 3600;
    r->accel_count = q->gpus;
    memcpy(r->accel_model, q->model, CPN_NAME_MAX);
    r->cores = q->cores;
    r->mem_bytes = q->mem_bytes;
}

/* ---- the book ----------------------------------------------------------------------------- */

static size_t s_per_peer = 10;
static uint64_t s_ts = 1700000000000ull;

static void s_peer_seed(size_t i, uint8_t seed[CPN_SEED_LEN])
{
    memset(seed, 0x5a, CPN_SEED_LEN);
    for (int b = 0; b < 8; b++)
        seed[b] = (uint8_t)(i >> (8 * b));
}

static void s_via(size_t i, uint8_t via[CPN_PK_LEN])
{
    memset(via, 0, CPN_PK_LEN);
    if (i % 10 != 0) {
        via[0] = 0xb0;
        via[1] = (uint8_t)(1 + i % 8);
    }
}

/* Package k of the book is catalog row k * R / N when the book is smaller than the catalog
 * (evenly spaced rows keep the catalog's mix), else row k mod R (every row, replicated). */
static uint32_t s_peer_pkgs(size_t i, size_t n_total, cpn_package_t *out)
{
    uint32_t n = 0;
    for (size_t j = 0; j < s_per_peer; j++) {
        size_t k = i * s_per_peer + j;
        if (k >= n_total)
            break;
        size_t row = n_total < s_nshapes ? (size_t)((unsigned __int128)k * s_nshapes / n_total)
                                         : k % s_nshapes;
        out[n++] = s_shapes[row].p;
    }
    return n;
}

typedef struct {
    uint8_t (*keys)[CPN_PK_LEN];
    uint64_t *seq;
    size_t peers;
} s_peers_t;

static book_t *s_build(size_t n_total, s_peers_t *pp, double *put_us, double *sign_us)
{
    size_t peers = (n_total + s_per_peer - 1) / s_per_peer;
    book_t *b = book_new(n_total);
    pp->keys = calloc(peers, CPN_PK_LEN);
    pp->seq = calloc(peers, sizeof *pp->seq);
    pp->peers = peers;
    if (b == NULL || pp->keys == NULL || pp->seq == NULL)
        s_die("out of memory");
    uint64_t t_put = 0, t_sign = 0;
    cpn_package_t pk[PER_PEER_MAX];
    for (size_t i = 0; i < peers; i++) {
        uint8_t seed[CPN_SEED_LEN], via[CPN_PK_LEN];
        cpn_identity_t *id = NULL;
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_ad_t ad;
        memset(&ad, 0, sizeof ad);
        snprintf(ad.name, sizeof ad.name, "dc-%zu", i);
        ad.ttl_s = 3600;
        ad.n_packages = s_peer_pkgs(i, n_total, pk);
        ad.packages = pk;
        s_peer_seed(i, seed);
        uint64_t t0 = s_ns();
        if (cpn_identity_from_seed(seed, &id) != CPN_OK)
            s_die("identity");
        memcpy(pp->keys[i], cpn_identity_pk(id), CPN_PK_LEN);
        pp->seq[i] = cpn_seq_next(0, s_ts);
        int r = cpn_msg_build(id, CPN_MSG_AD, pp->seq[i], s_ts, &ad, &frame, &len);
        if (r != CPN_OK) {
            const char *why = "";
            for (uint32_t j = 0; j < ad.n_packages; j++)
                if (cpn_package_validate(&pk[j], &why) != CPN_OK) {
                    fprintf(stderr, "bench_match: package %s: %s\n", pk[j].id, why);
                    break;
                }
            s_die(cpn_strerror(r));
        }
        cpn_identity_destroy(&id);
        uint64_t t1 = s_ns();
        s_via(i, via);
        if (book_put_ad(b, pp->keys[i], pp->seq[i], s_ts, &ad, frame, len, via, via[0] ? 1 : 0) !=
            CPN_OK)
            s_die("book_put_ad");
        uint64_t t2 = s_ns();
        free(frame);
        t_sign += t1 - t0;
        t_put += t2 - t1;
    }
    *put_us = (double)t_put / 1e3 / (double)peers;
    *sign_us = (double)t_sign / 1e3 / (double)peers;
    return b;
}

/* Re-advertise peer i: its catalog rows again (units restored), optionally re-priced. */
static uint64_t s_readvertise(book_t *b, s_peers_t *pp, size_t i, size_t n_total, int64_t dprice,
                              uint32_t ttl_s)
{
    cpn_package_t pk[PER_PEER_MAX];
    cpn_ad_t ad;
    uint8_t via[CPN_PK_LEN];
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "dc-%zu", i);
    ad.ttl_s = ttl_s;
    ad.n_packages = s_peer_pkgs(i, n_total, pk);
    ad.packages = pk;
    for (uint32_t j = 0; j < ad.n_packages; j++)
        pk[j].price = (uint64_t)((int64_t)pk[j].price + dprice);
    const book_peer_t *pe = book_peer(b, pp->keys[i]);
    s_via(i, via);
    pp->seq[i]++;
    /* The frame bytes are the peer's previous ones: the book copies before it frees. */
    uint64_t t0 = s_ns();
    int r = book_put_ad(b, pp->keys[i], pp->seq[i], s_ts, &ad, pe ? pe->frame : NULL,
                        pe ? pe->frame_len : 0, via, via[0] ? 1 : 0);
    uint64_t t1 = s_ns();
    if (r != CPN_OK)
        s_die("re-advertise");
    return t1 - t0;
}

/* ---- the naive broker: a linear scan -------------------------------------------------------- */

typedef struct {
    uint64_t rank, price;
    uint32_t bonus;
    const uint8_t *key;
    const char *id;
} s_best_t;

static bool s_better(const s_best_t *a, const s_best_t *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank;
    if (a->bonus != b->bonus)
        return a->bonus > b->bonus;
    if (a->price != b->price)
        return a->price < b->price;
    int c = memcmp(a->key, b->key, CPN_PK_LEN);
    return c != 0 ? c < 0 : strcmp(a->id, b->id) < 0;
}

static bool s_model_ok(const cpn_package_t *p, const cpn_request_t *r)
{
    if (r->accel_model[0] == '\0')
        return true;
    if (p->accel.count == 0)
        return false;
    if (strcasecmp(p->accel.model, r->accel_model) == 0)
        return true;
    for (uint32_t i = 0; i < s_pol.n_equiv; i++) {
        if (strcasecmp(s_pol.equiv[i].model, r->accel_model) != 0)
            continue;
        for (uint32_t j = 0; j < s_pol.equiv[i].accept.n; j++)
            if (strcasecmp(s_pol.equiv[i].accept.items[j], p->accel.model) == 0)
                return true;
    }
    return false;
}

static bool s_linear(const book_t *b, const cpn_request_t *r, uint64_t now, s_best_t *best)
{
    cpn_request_t lit = *r;
    lit.accel_model[0] = '\0';
    size_t cur = 0;
    const book_peer_t *pe;
    bool found = false;
    while ((pe = book_next(b, &cur)) != NULL) {
        if (pe->withdrawn || pe->expires_ms <= now)
            continue;
        bool local = true;
        for (int k = 0; k < CPN_PK_LEN; k++)
            local = local && pe->via[k] == 0;
        for (uint32_t i = 0; i < pe->n_packages; i++) {
            const cpn_package_t *p = &pe->packages[i];
            if (!s_model_ok(p, r) || cpn_package_fits(p, &lit) != CPN_C_OK)
                continue;
            uint32_t bonus = local ? s_pol.w_local : 0;
            s_best_t c = {p->price * s_pol.w_price * 100 / (100 + bonus), p->price, bonus, pe->key,
                          p->id};
            if (!found || s_better(&c, best)) {
                *best = c;
                found = true;
            }
        }
    }
    return found;
}

/* ---- a tight linear scan: compact records, names resolved to ids once ------------------- */

/* One package in 64 bytes; the scan reads them in order and checks the same constraints. */
typedef struct {
    uint64_t price, mem, tflops, amem, storage;
    uint32_t cores, count, free;
    uint16_t model, vendor, region, sclass;
    uint32_t egress_gbps; /* rates in Gbit/s keep the record at 64 bytes */
    uint32_t local : 1, owner : 31;
    uint32_t pkg;
} s_flat_t;

typedef struct {
    char name[CPN_NAME_MAX];
} s_name_t;

static s_name_t *s_names;
static uint32_t s_nnames;
static uint32_t s_name_ht[8192]; /* id + 1 */

static uint16_t s_name_id(const char *name, bool add)
{
    uint32_t h = 2166136261u;
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c)) * 16777619u;
    for (uint32_t i = h & 8191;; i = (i + 1) & 8191) {
        if (s_name_ht[i] == 0) {
            if (!add || s_nnames >= 8000)
                return UINT16_MAX;
            s_names = realloc(s_names, (s_nnames + 1) * sizeof *s_names);
            if (s_names == NULL)
                s_die("out of memory");
            s_copy(s_names[s_nnames].name, CPN_NAME_MAX, name);
            s_name_ht[i] = ++s_nnames;
            return (uint16_t)(s_nnames - 1);
        }
        if (strcasecmp(s_names[s_name_ht[i] - 1].name, name) == 0)
            return (uint16_t)(s_name_ht[i] - 1);
    }
}

static s_flat_t *s_flat;
static size_t s_nflat;
static const book_peer_t **s_owner;

/* Snapshot the book (as it is after the decisions) into compact records. */
static void s_flatten(const book_t *b, uint64_t now)
{
    book_stats_t st;
    book_stats(b, &st);
    s_flat = malloc(st.packages * sizeof *s_flat);
    s_owner = malloc(st.peers * sizeof *s_owner);
    if (s_flat == NULL || s_owner == NULL)
        s_die("out of memory");
    size_t cur = 0, np = 0;
    const book_peer_t *pe;
    s_nflat = 0;
    while ((pe = book_next(b, &cur)) != NULL) {
        if (pe->withdrawn || pe->expires_ms <= now)
            continue;
        bool local = true;
        for (int k = 0; k < CPN_PK_LEN; k++)
            local = local && pe->via[k] == 0;
        s_owner[np] = pe;
        for (uint32_t i = 0; i < pe->n_packages; i++) {
            const cpn_package_t *p = &pe->packages[i];
            s_flat_t *f = &s_flat[s_nflat++];
            f->price = p->price;
            f->mem = p->mem_bytes;
            f->tflops = cpn_package_tflops(p);
            f->amem = cpn_package_accel_mem(p);
            f->storage = p->storage_bytes;
            f->cores = p->cores;
            f->count = p->accel.count;
            f->free = p->free;
            f->model = s_name_id(p->accel.model, true);
            f->vendor = s_name_id(p->accel.vendor, true);
            f->region = s_name_id(p->region, true);
            f->sclass = s_name_id(p->storage_class, true);
            f->egress_gbps = (uint32_t)(p->egress_bps / 1000000000ull);
            f->local = local;
            f->owner = (uint32_t)np;
            f->pkg = i;
        }
        np++;
    }
}

static bool s_linear_flat(const cpn_request_t *r, s_best_t *best)
{
    uint16_t models[1 + MATCH_EQUIV_MAX * CPN_LIST_MAX];
    uint32_t nm = 0;
    bool any_model = r->accel_model[0] == '\0';
    if (!any_model) {
        models[nm++] = s_name_id(r->accel_model, false);
        for (uint32_t i = 0; i < s_pol.n_equiv; i++)
            if (strcasecmp(s_pol.equiv[i].model, r->accel_model) == 0)
                for (uint32_t j = 0; j < s_pol.equiv[i].accept.n; j++)
                    models[nm++] = s_name_id(s_pol.equiv[i].accept.items[j], false);
    }
    uint16_t vendor = r->accel_vendor[0] ? s_name_id(r->accel_vendor, false) : 0;
    uint16_t sclass = r->storage_class[0] ? s_name_id(r->storage_class, false) : 0;
    uint32_t egress = (uint32_t)((r->egress_bps + 999999999ull) / 1000000000ull);
    bool found = false;
    for (size_t k = 0; k < s_nflat; k++) {
        const s_flat_t *f = &s_flat[k];
        if (f->count < r->accel_count || f->cores < r->cores || f->mem < r->mem_bytes ||
            f->free < (r->split ? 1u : r->units) || f->tflops < r->min_tflops ||
            f->amem < r->min_accel_mem || f->storage < r->storage_bytes ||
            f->egress_gbps < egress || (r->max_price && f->price > r->max_price) ||
            (r->accel_vendor[0] && f->vendor != vendor) ||
            (r->storage_class[0] && f->sclass != sclass))
            continue;
        if (!any_model) {
            bool ok = false;
            for (uint32_t i = 0; i < nm && !ok; i++)
                ok = f->count > 0 && f->model == models[i] && models[i] != UINT16_MAX;
            if (!ok)
                continue;
        }
        if (r->regions.n > 0) {
            bool ok = false;
            for (uint32_t i = 0; i < r->regions.n && !ok; i++)
                ok = strcasecmp(s_names[f->region].name, r->regions.items[i]) == 0;
            if (!ok)
                continue;
        }
        uint32_t bonus = f->local ? s_pol.w_local : 0;
        uint64_t rank = f->price * s_pol.w_price * 100 / (100 + bonus);
        if (found && (rank > best->rank || (rank == best->rank && bonus < best->bonus) ||
                      (rank == best->rank && bonus == best->bonus && f->price > best->price)))
            continue;
        const book_peer_t *pe = s_owner[f->owner];
        s_best_t c = {rank, f->price, bonus, pe->key, pe->packages[f->pkg].id};
        if (!found || s_better(&c, best)) {
            *best = c;
            found = true;
        }
    }
    return found;
}

/* ---- main --------------------------------------------------------------------------------- */

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double s_pct(const uint64_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e3; /* ns -> us */
}

int main(int argc, char **argv)
{
    const char *data = NULL;
    size_t n_total = 0, decisions = 200000, baseline = 0, maxc = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else if (strcmp(argv[i], "--packages") == 0)
            n_total = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--per-peer") == 0)
            s_per_peer = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--decisions") == 0)
            decisions = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--baseline") == 0)
            baseline = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--max") == 0)
            maxc = strtoull(argv[i + 1], NULL, 10);
        else
            s_die("usage: bench_match --data DIR --packages N [--per-peer 10] "
                  "[--decisions 200000] [--baseline 0] [--max 4]");
    }
    if (data == NULL || n_total == 0 || s_per_peer == 0 || s_per_peer > PER_PEER_MAX || maxc == 0 ||
        maxc > 64 || decisions == 0)
        s_die("usage: bench_match --data DIR --packages N [--per-peer 10] "
              "[--decisions 200000] [--baseline 0] [--max 4]");
    if (cpn_crypto_init() != CPN_OK)
        s_die("libsodium");
    s_load(data);

    long rss0 = s_rss_kib();
    s_peers_t pp;
    double put_us, sign_us;
    uint64_t tb0 = s_ns();
    book_t *b = s_build(n_total, &pp, &put_us, &sign_us);
    double build_s = (double)(s_ns() - tb0) / 1e9;
    long rss1 = s_rss_kib();
    book_stats_t st;
    book_stats(b, &st);
    size_t frame_bytes = 0, fcur = 0;
    for (const book_peer_t *fp; (fp = book_next(b, &fcur)) != NULL;)
        frame_bytes += fp->frame_len;

    /* Decisions. */
    uint64_t *lat = malloc(decisions * sizeof *lat);
    uint64_t *clean = malloc(decisions * sizeof *clean); /* decisions not interrupted */
    size_t n_clean = 0;
    uint8_t *dirty = calloc(pp.peers, 1);
    size_t *dirty_list = malloc(pp.peers * sizeof *dirty_list);
    size_t n_dirty = 0, matched = 0, refreshes = 0;
    uint64_t t_take = 0, n_take = 0, t_refresh = 0, reasons[CPN_C__COUNT] = {0};
    uint64_t now = s_ts + 1000;
    match_cand_t out[64];
    if (lat == NULL || clean == NULL || dirty == NULL || dirty_list == NULL)
        s_die("out of memory");
    uint64_t tl0 = s_ns(), t_match = 0;
    for (size_t d = 0; d < decisions; d++) {
        cpn_request_t r;
        size_t n = 0;
        match_fail_t why;
        s_request(d, &r);
        long i0 = s_interruptions(); /* outside the timed region */
        uint64_t t0 = s_ns();
        int rc = match_find(b, &r, &s_pol, now, out, maxc, &n, &why);
        uint64_t t1 = s_ns();
        lat[d] = t1 - t0;
        if (s_interruptions() == i0)
            clean[n_clean++] = t1 - t0;
        t_match += t1 - t0;
        if (rc == CPN_OK) {
            matched++;
            uint64_t t2 = s_ns();
            if (book_take(b, out[0].peer, out[0].package, out[0].units) != CPN_OK)
                s_die("book_take");
            t_take += s_ns() - t2;
            n_take++;
            /* The peer to refresh: its AD name carries its index ("dc-<i>"). */
            const book_peer_t *pe = book_peer(b, out[0].peer);
            size_t idx = (size_t)(strtoull(pe->name + 3, NULL, 10));
            if (!dirty[idx]) {
                dirty[idx] = 1;
                dirty_list[n_dirty++] = idx;
            }
        } else {
            reasons[why.constraint]++;
        }
        if ((d + 1) % 1000 == 0) {
            for (size_t k = 0; k < n_dirty; k++) {
                t_refresh += s_readvertise(b, &pp, dirty_list[k], n_total, 0, 3600);
                dirty[dirty_list[k]] = 0;
                refreshes++;
            }
            n_dirty = 0;
        }
    }
    double loop_s = (double)(s_ns() - tl0) / 1e9;
    qsort(lat, decisions, sizeof *lat, s_cmp_u64);
    qsort(clean, n_clean, sizeof *clean, s_cmp_u64);

    /* CPU time per decision, which other processes on the machine do not inflate: one pass
     * over the trace (at most once through it) without taking anything. */
    size_t n_cpu = decisions < s_nreqs ? decisions : s_nreqs;
    uint64_t t_cpu = 0;
    size_t ok_cpu = 0;
    cpn_request_t *chunk = malloc(256 * sizeof *chunk);
    if (chunk == NULL)
        s_die("out of memory");
    for (size_t d0 = 0; d0 < n_cpu; d0 += 256) {
        size_t m = n_cpu - d0 < 256 ? n_cpu - d0 : 256;
        for (size_t k = 0; k < m; k++)
            s_request(d0 + k, &chunk[k]);
        uint64_t tc0 = s_cpu_ns();
        for (size_t k = 0; k < m; k++) {
            size_t n = 0;
            ok_cpu += match_find(b, &chunk[k], &s_pol, now, out, maxc, &n, NULL) == CPN_OK;
        }
        t_cpu += s_cpu_ns() - tc0;
    }
    free(chunk);
    double cpu_us = (double)t_cpu / 1e3 / (double)n_cpu;

    /* Baselines, with agreement checks. */
    uint64_t *blat = baseline ? malloc(baseline * sizeof *blat) : NULL;
    uint64_t *flat = baseline ? malloc(baseline * sizeof *flat) : NULL;
    size_t agree = 0, compared = 0;
    uint64_t t_base = 0, t_flat = 0;
    if (baseline)
        s_flatten(b, now);
    for (size_t d = 0; d < baseline; d++) {
        cpn_request_t r;
        s_best_t best = {0, 0, 0, NULL, NULL};
        size_t n = 0;
        s_request(d, &r);
        uint64_t t0 = s_ns();
        bool found = s_linear(b, &r, now, &best);
        uint64_t t1 = s_ns();
        blat[d] = t1 - t0;
        t_base += t1 - t0;
        s_best_t fbest = {0, 0, 0, NULL, NULL};
        uint64_t t2 = s_ns();
        bool ffound = s_linear_flat(&r, &fbest);
        uint64_t t3 = s_ns();
        flat[d] = t3 - t2;
        t_flat += t3 - t2;
        int rc = match_find(b, &r, &s_pol, now, out, maxc, &n, NULL);
        compared++;
        if ((rc == CPN_OK) == found && found == ffound &&
            (!found ||
             (memcmp(out[0].peer, best.key, CPN_PK_LEN) == 0 &&
              strcmp(out[0].package, best.id) == 0 &&
              memcmp(fbest.key, best.key, CPN_PK_LEN) == 0 && strcmp(fbest.id, best.id) == 0)))
            agree++;
    }
    if (baseline) {
        qsort(blat, baseline, sizeof *blat, s_cmp_u64);
        qsort(flat, baseline, sizeof *flat, s_cmp_u64);
    }

    /* Upkeep: ADs that re-price every package (index remove + insert), and expiry scans. */
    size_t reprice = pp.peers < 2000 ? pp.peers : 2000;
    uint64_t t_rep = 0;
    for (size_t k = 0; k < reprice; k++)
        t_rep += s_readvertise(b, &pp, (k * 7919) % pp.peers, n_total, 1, 3600);
    uint64_t te0 = s_ns();
    size_t expired = 0;
    for (int k = 0; k < 20; k++)
        expired += book_expire(b, now);
    double expire_us = (double)(s_ns() - te0) / 1e3 / 20;
    /* One peer's AD runs out (ttl 0): book_expire then scans every peer. */
    (void)s_readvertise(b, &pp, pp.peers / 2, n_total, 0, 0);
    te0 = s_ns();
    expired += book_expire(b, now);
    double expire_one_us = (double)(s_ns() - te0) / 1e3;

    printf("packages=%zu\npeers=%zu\nclasses=%zu\nshapes=%zu\nrows=%zu\nrequests=%zu\n",
           st.packages, st.peers, st.classes, st.shapes, s_nshapes, s_nreqs);
    printf("frame_bytes_per_package=%.1f\n", (double)frame_bytes / (double)st.packages);
    printf("rss_book_kib=%ld\nbytes_per_package=%.1f\nbuild_s=%.2f\nad_put_us=%.2f\n"
           "ad_sign_us=%.2f\n",
           rss1 - rss0, (double)(rss1 - rss0) * 1024.0 / (double)st.packages, build_s, put_us,
           sign_us);
    printf("decisions=%zu\nmatched=%zu\nmatch_per_s=%.0f\nloop_per_s=%.0f\n", decisions, matched,
           (double)decisions / ((double)t_match / 1e9), (double)decisions / loop_s);
    printf("uninterrupted=%zu\nclean_p50_us=%.2f\nclean_p99_us=%.2f\nclean_p999_us=%.2f\n", n_clean,
           n_clean ? s_pct(clean, n_clean, 0.50) : 0.0, n_clean ? s_pct(clean, n_clean, 0.99) : 0.0,
           n_clean ? s_pct(clean, n_clean, 0.999) : 0.0);
    printf("p50_us=%.2f\np90_us=%.2f\np99_us=%.2f\np999_us=%.2f\nmax_us=%.2f\nmean_us=%.2f\n",
           s_pct(lat, decisions, 0.50), s_pct(lat, decisions, 0.90), s_pct(lat, decisions, 0.99),
           s_pct(lat, decisions, 0.999), (double)lat[decisions - 1] / 1e3,
           (double)t_match / 1e3 / (double)decisions);
    printf("cpu_us_per_match=%.3f\ncpu_pass_matched=%zu\n", cpu_us, ok_cpu);
    printf("take_us=%.3f\nrefresh_ads=%zu\nrefresh_ad_us=%.2f\nreprice_ad_us=%.2f\n"
           "expire_scan_us=%.2f\nexpire_one_us=%.1f\nexpired=%zu\n",
           n_take ? (double)t_take / 1e3 / (double)n_take : 0.0, refreshes,
           refreshes ? (double)t_refresh / 1e3 / (double)refreshes : 0.0,
           reprice ? (double)t_rep / 1e3 / (double)reprice : 0.0, expire_us, expire_one_us,
           expired);
    for (int c = 1; c < CPN_C__COUNT; c++)
        if (reasons[c])
            printf("nomatch_%s=%" PRIu64 "\n", cpn_constraint_name((cpn_constraint_t)c),
                   reasons[c]);
    if (baseline) {
        printf("baseline_decisions=%zu\nbaseline_p50_us=%.2f\nbaseline_p99_us=%.2f\n"
               "baseline_per_s=%.0f\nflat_p50_us=%.2f\nflat_p99_us=%.2f\nflat_per_s=%.0f\n"
               "agree=%zu\ncompared=%zu\n",
               baseline, s_pct(blat, baseline, 0.50), s_pct(blat, baseline, 0.99),
               (double)baseline / ((double)t_base / 1e9), s_pct(flat, baseline, 0.50),
               s_pct(flat, baseline, 0.99), (double)baseline / ((double)t_flat / 1e9), agree,
               compared);
    }
    book_destroy(&b);
    free(lat);
    free(clean);
    free(blat);
    free(flat);
    free(s_flat);
    free(s_owner);
    free(s_names);
    free(dirty);
    free(dirty_list);
    free(pp.keys);
    free(pp.seq);
    free(s_shapes);
    free(s_reqs);
    return agree == compared ? 0 : 1;
}
