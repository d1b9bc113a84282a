/* bench_frag.c - the fragmentation benchmark of issue 16 on the pure core (peer/fgd.c).
 *
 * The experiment of Weng et al., "Beware of Fragmentation" (USENIX ATC'23), section on the
 * evaluation, re-done from its description: the cluster is the trace's 1,523 nodes; tasks are
 * drawn at random (with replacement, seeded) from the trace's pods and arrive one after the
 * other, never leaving ("workload inflation"), until the GPUs they asked for reach --until
 * percent of the cluster's GPUs. A task that fits no node fails and is dropped. Recorded:
 * the unallocated GPUs (capacity minus the GPU shares placed) when the arrived GPU demand
 * crosses each 10 % of capacity; the headline is the share at 100 %.
 *
 * Policies, each re-implemented from its published description (none copied):
 *   random      a node drawn uniformly among those the task fits, a device likewise;
 *   dotprod     Tetris's alignment (Grandl et al., SIGCOMM'14): the node maximising the dot
 *               product of the task's demand and the node's free resources (CPU, memory,
 *               GPU, each normalised by the node's capacity);
 *   packing     GPU packing as the FGD paper describes it: a fraction goes first to a device
 *               already partly used, then to a node already in use, then to an idle node;
 *   clustering  Gandiva-like affinity: a node that already runs tasks with the same GPU ask,
 *               then an idle node, then any;
 *   bestfit     the node with the least free resources left after placing (the sum of free
 *               CPU, memory and GPU shares, each normalised by capacity);
 *   fgd         the paper's rule (peer/fgd.h, FGD_RULE_FGD), ties drawn at random as the
 *               Kubernetes scheduler does among equal scores;
 *   fgd-share   an ablation: the paper's rule and ties, with cpn's workload weights (below);
 *   cpn         cpn's peer placement (FGD_RULE_CPN): the same descent, ties to the tightest fit.
 * Inside a node the baselines but random put a fraction on the device it fits most tightly.
 * The target workload M is the trace's own pod mix (class = CPU, memory, GPU ask). For fgd a
 * class weighs its number of pods, as in the paper; for cpn it weighs the GPU share its pods
 * ask for (a 0.05-GPU class counts for what it can fill, not for how often it comes), which is
 * how the peer weighs the slices it has granted (peer/devices.c).
 *
 * --gpu-only keeps the GPU nodes and GPU pods only (what a run through daemons can replay: a
 * pod without GPUs is no slice request). --emit FILE writes seed0's task sequence up to
 * --until as scripts/bench/loadgen requests (slices; scripts/bench/frag_daemons.py);
 * --emit-mix FILE the GPU pods' mix as a peer's `workload:` list (frag_daemons.py --mix).
 * --whole-cores 1 rounds every pod's CPU up to whole cores, as those requests ask (a REQUEST's
 * `cores` is a whole number): the core then solves the task the daemons are given.
 *
 * Usage: bench_frag [--data DIR] [--seeds N] [--seed0 S] [--until PCT] [--policies a,b,..]
 *                   [--gpu-only 1] [--whole-cores 1] [--emit FILE] [--emit-mix FILE]
 * Output: one line per (policy, seed) "run POLICY SEED u50 u60 ... " and a summary table.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fgd.h"

#define S_NODES_MAX 4096
#define S_PODS_MAX 16384
#define S_SEEDS_MAX 1000
#define S_STEPS 20 /* checkpoints every 10 % of capacity, up to 200 % */
#define S_LINE_MAX 1024
#define S_MEMO_BITS 20 /* lossy memo of (node state, task class) -> growth, 2^20 slots */

typedef enum {
    P_RANDOM,
    P_DOTPROD,
    P_PACKING,
    P_CLUSTERING,
    P_BESTFIT,
    P_FGD,
    P_FGD_SHARE,
    P_CPN,
    P__N
} s_pol_t;
static const char *s_pol_name[P__N] = {"random",  "dotprod", "packing",   "clustering",
                                       "bestfit", "fgd",     "fgd-share", "cpn"};

typedef struct {
    fgd_node_t cap; /* the node empty */
    fgd_node_t now; /* the node as placed so far */
    double frag;    /* fgd_frag(now), kept current */
    uint64_t asks;  /* bit g: a task of accelerator ask g runs here (clustering) */
    bool used;      /* anything placed here */
} s_node_t;

typedef struct {
    fgd_task_t t;
    int cls; /* index into s_classes, for the memo */
    int ask; /* index of its accelerator ask (ndev, milli), for clustering */
} s_pod_t;

static s_node_t s_nodes[S_NODES_MAX];
static size_t s_nnodes;
static s_pod_t s_pods[S_PODS_MAX];
static size_t s_npods;
static uint64_t s_gpu_cap; /* milli */
static bool s_gpu_only;
static bool s_whole_cores;
static fgd_workload_t *s_work_count; /* the paper's M: weight = number of pods */
static fgd_workload_t *s_work_gpu;   /* cpn's M: weight = GPU share asked (see the top) */
static fgd_workload_t *s_work;       /* the one of the policy running */

/* ---- randomness: splitmix64, seeded per run ---- */
static uint64_t s_rng;
static uint64_t s_rand(void)
{
    uint64_t z = (s_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static size_t s_rand_below(size_t n)
{
    return (size_t)(s_rand() % n);
}

/* ---- data ---- */
static int s_split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return n;
}

static FILE *s_open(const char *dir, const char *name)
{
    char path[S_LINE_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        fprintf(stderr, "bench_frag: %s: %s\n", path, strerror(errno));
    return f;
}

static int s_load_nodes(const char *dir)
{
    FILE *f = s_open(dir, "alibaba_gpu_v2023_nodes.csv");
    char line[S_LINE_MAX];
    if (!f || !fgets(line, sizeof(line), f))
        return -1;
    while (fgets(line, sizeof(line), f) && s_nnodes < S_NODES_MAX) {
        char *c[5];
        if (s_split(line, c, 5) < 4)
            continue;
        if (s_gpu_only && strtoul(c[3], NULL, 10) == 0)
            continue;
        s_node_t *n = &s_nodes[s_nnodes++];
        memset(n, 0, sizeof(*n));
        n->cap.cpu_free = (uint32_t)strtoul(c[1], NULL, 10);
        n->cap.mem_free = strtoull(c[2], NULL, 10);
        n->cap.ndev = (uint32_t)strtoul(c[3], NULL, 10);
        if (n->cap.ndev > FGD_DEV_MAX) {
            fprintf(stderr, "bench_frag: a node with %u GPUs\n", n->cap.ndev);
            fclose(f);
            return -1;
        }
        for (uint32_t i = 0; i < n->cap.ndev; i++)
            n->cap.dev_free[i] = FGD_MILLI;
        s_gpu_cap += (uint64_t)n->cap.ndev * FGD_MILLI;
    }
    fclose(f);
    return 0;
}

/* Classes and asks, found by linear search (151 classes, 25 asks in the trace). */
static fgd_task_t s_classes[FGD_CLASSES_MAX];
static size_t s_ncls;
static fgd_task_t s_asks[64];
static size_t s_nasks;

static int s_index(fgd_task_t *tab, size_t *n, size_t max, const fgd_task_t *t, bool ask_only)
{
    for (size_t i = 0; i < *n; i++)
        if (tab[i].ndev == t->ndev && tab[i].milli == t->milli &&
            (ask_only || (tab[i].cpu == t->cpu && tab[i].mem == t->mem)))
            return (int)i;
    if (*n == max)
        return -1;
    tab[*n] = *t;
    return (int)(*n)++;
}

static int s_load_pods(const char *dir)
{
    FILE *f = s_open(dir, "alibaba_gpu_v2023_pods.csv");
    char line[S_LINE_MAX];
    if (!f || !fgets(line, sizeof(line), f))
        return -1;
    while (fgets(line, sizeof(line), f) && s_npods < S_PODS_MAX) {
        char *c[11];
        if (s_split(line, c, 11) < 5)
            continue;
        s_pod_t *p = &s_pods[s_npods];
        p->t.cpu = (uint32_t)strtoul(c[1], NULL, 10);
        p->t.mem = strtoull(c[2], NULL, 10);
        p->t.ndev = (uint32_t)strtoul(c[3], NULL, 10);
        uint32_t milli = (uint32_t)strtoul(c[4], NULL, 10);
        p->t.milli = p->t.ndev == 0 ? 0 : p->t.ndev > 1 ? FGD_MILLI : (uint16_t)milli;
        if (s_whole_cores)
            p->t.cpu = (p->t.cpu + 999) / 1000 * 1000;
        if (!fgd_task_valid(&p->t) || (s_gpu_only && p->t.ndev == 0))
            continue;
        p->cls = s_index(s_classes, &s_ncls, FGD_CLASSES_MAX, &p->t, false);
        p->ask = s_index(s_asks, &s_nasks, 64, &p->t, true);
        /* CPU-only pods weigh a constant in cpn's M: it shifts every node's growth alike */
        double gpu = p->t.ndev ? (double)p->t.ndev * p->t.milli / FGD_MILLI : 1.0;
        if (p->cls < 0 || p->ask < 0 || fgd_workload_add(s_work_count, &p->t, 1.0) != CPN_OK ||
            fgd_workload_add(s_work_gpu, &p->t, gpu) != CPN_OK) {
            fclose(f);
            return -1;
        }
        s_npods++;
    }
    fclose(f);
    return 0;
}

/* ---- the memo: a node's state and a class give the same growth wherever they occur ---- */
typedef struct {
    uint32_t cpu;
    uint32_t cls;
    uint64_t mem;
    uint16_t dev[FGD_DEV_MAX]; /* sorted descending */
    uint32_t ndev;
    bool used;
    int32_t dev_free; /* free share of the chosen device, -1 if the task does not fit */
    double delta;
} s_memo_t;
static s_memo_t *s_memo;

static void s_key(const fgd_node_t *n, int cls, s_memo_t *k)
{
    memset(k, 0, sizeof(*k));
    k->cpu = n->cpu_free;
    k->mem = n->mem_free;
    k->cls = (uint32_t)cls;
    k->ndev = n->ndev;
    memcpy(k->dev, n->dev_free, sizeof(k->dev));
    for (uint32_t i = 1; i < n->ndev; i++) /* insertion sort, 8 at most */
        for (uint32_t j = i; j > 0 && k->dev[j] > k->dev[j - 1]; j--) {
            uint16_t x = k->dev[j];
            k->dev[j] = k->dev[j - 1];
            k->dev[j - 1] = x;
        }
}

static size_t s_hash(const s_memo_t *k)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *b = (const uint8_t *)k;
    size_t len = offsetof(s_memo_t, used);
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return (size_t)(h & ((1u << S_MEMO_BITS) - 1));
}

/* Device (index in n) and growth of the placement of pod p on node n under `rule`; -1 if
 * it does not fit. Memoised by the node's sorted state. */
static int s_best(const s_node_t *n, const s_pod_t *p, fgd_rule_t rule, double *delta)
{
    s_memo_t k;
    s_key(&n->now, p->cls, &k);
    s_memo_t *slot = &s_memo[s_hash(&k)];
    int dev;
    if (slot->used && memcmp(slot, &k, offsetof(s_memo_t, used)) == 0) {
        *delta = slot->delta;
        if (slot->dev_free < 0)
            return -1;
        if (p->t.ndev != 1 || p->t.milli == FGD_MILLI)
            return 0;
        for (dev = 0; dev < (int)n->now.ndev; dev++)
            if (n->now.dev_free[dev] == slot->dev_free)
                return dev;
        return 0;
    }
    dev = fgd_best_device(s_work, &n->now, n->frag, &p->t, rule, delta);
    k.used = true;
    k.delta = *delta;
    k.dev_free = dev < 0 ? -1 : n->now.dev_free[dev];
    *slot = k;
    return dev;
}

/* ---- the baselines ---- */
static int s_tightest_dev(const fgd_node_t *n, const fgd_task_t *t)
{
    if (t->ndev != 1 || t->milli == FGD_MILLI)
        return 0;
    int best = -1;
    for (uint32_t i = 0; i < n->ndev; i++)
        if (n->dev_free[i] >= t->milli && (best < 0 || n->dev_free[i] < n->dev_free[best]))
            best = (int)i;
    return best;
}

static int s_random_dev(const fgd_node_t *n, const fgd_task_t *t)
{
    if (t->ndev != 1 || t->milli == FGD_MILLI)
        return 0;
    int pick = -1;
    size_t seen = 0;
    for (uint32_t i = 0; i < n->ndev; i++)
        if (n->dev_free[i] >= t->milli && s_rand_below(++seen) == 0)
            pick = (int)i;
    return pick;
}

static double s_norm(double v, double cap)
{
    return cap > 0 ? v / cap : 0;
}

/* Lower is better for every baseline score. */
static double s_score(s_pol_t pol, const s_node_t *n, const s_pod_t *p, int dev)
{
    const fgd_node_t *c = &n->cap, *f = &n->now;
    double gcap = (double)c->ndev * FGD_MILLI, gasked = (double)p->t.ndev * p->t.milli;
    double gfree = fgd_free_milli(f);
    switch (pol) {
    case P_DOTPROD:
        return -(s_norm(p->t.cpu, c->cpu_free) * s_norm(f->cpu_free, c->cpu_free) +
                 s_norm((double)p->t.mem, (double)c->mem_free) *
                     s_norm((double)f->mem_free, (double)c->mem_free) +
                 s_norm(gasked, gcap) * s_norm(gfree, gcap));
    case P_PACKING: {
        bool partly = p->t.ndev == 1 && p->t.milli < FGD_MILLI && f->dev_free[dev] < FGD_MILLI;
        double tier = partly ? 0 : n->used ? 1 : 2;
        return tier * 1e6 + gfree; /* within a tier, the fuller node */
    }
    case P_CLUSTERING: {
        double tier = (n->asks >> p->ask) & 1 ? 0 : !n->used ? 1 : 2;
        return tier;
    }
    case P_BESTFIT:
        return s_norm(f->cpu_free - p->t.cpu, c->cpu_free) +
               s_norm((double)(f->mem_free - p->t.mem), (double)c->mem_free) +
               s_norm(gfree - gasked, gcap);
    default:
        return 0;
    }
}

/* Node and device for pod p under policy pol; -1 if it fits nowhere. Ties among equal
 * scores are drawn at random (reservoir), except cpn's, which its rule breaks. */
static int s_choose(s_pol_t pol, const s_pod_t *p, int *dev_out)
{
    int best = -1, best_dev = -1;
    double best_s = 0;
    fgd_node_t best_after;
    size_t ties = 0;
    for (size_t i = 0; i < s_nnodes; i++) {
        const s_node_t *n = &s_nodes[i];
        if (!fgd_fits(&n->now, &p->t))
            continue;
        int dev;
        double s;
        if (pol == P_FGD || pol == P_FGD_SHARE || pol == P_CPN) {
            dev = s_best(n, p, pol == P_CPN ? FGD_RULE_CPN : FGD_RULE_FGD, &s);
            if (dev < 0)
                continue;
        } else {
            dev = pol == P_RANDOM ? s_random_dev(&n->now, &p->t) : s_tightest_dev(&n->now, &p->t);
            s = s_score(pol, n, p, dev);
        }
        if (pol == P_CPN) {
            fgd_node_t after = n->now;
            fgd_take(&after, &p->t, dev);
            if (best < 0 || fgd_better(FGD_RULE_CPN, s, &after, best_s, &best_after)) {
                best = (int)i, best_dev = dev, best_s = s, best_after = after;
            }
            continue;
        }
        if (best < 0 || s < best_s - 1e-9) {
            best = (int)i, best_dev = dev, best_s = s, ties = 1;
        } else if (s <= best_s + 1e-9 && s_rand_below(++ties) == 0) {
            best = (int)i, best_dev = dev;
        }
    }
    *dev_out = best_dev;
    return best;
}

/* ---- one run ---- */
typedef struct {
    double unalloc[S_STEPS]; /* % of GPU capacity unallocated at arrived = 10 %, 20 %, ... */
    size_t steps;
    size_t failed, placed;
} s_run_t;

static void s_reset(void)
{
    for (size_t i = 0; i < s_nnodes; i++) {
        s_node_t *n = &s_nodes[i];
        n->now = n->cap;
        n->frag = fgd_frag(s_work, &n->now);
        n->asks = 0;
        n->used = false;
    }
}

static int s_run(s_pol_t pol, uint64_t seed, unsigned until_pct, s_run_t *out)
{
    memset(out, 0, sizeof(*out));
    s_reset();
    uint64_t arrived = 0, alloc = 0;
    uint64_t draw = seed * 0x2545f4914f6cdd1dull + 1; /* the same task sequence for every policy */
    while (out->steps < S_STEPS && out->steps * 10 < until_pct) {
        s_rng = draw;
        const s_pod_t *p = &s_pods[s_rand_below(s_npods)];
        draw = s_rng;
        s_rng ^= (uint64_t)pol << 32; /* the policy's own randomness */
        uint64_t gpu = (uint64_t)p->t.ndev * p->t.milli;
        int dev, ni = s_choose(pol, p, &dev);
        if (ni < 0) {
            out->failed++;
        } else {
            s_node_t *n = &s_nodes[ni];
            if (!fgd_fits_on(&n->now, &p->t, dev))
                return -1; /* a policy chose what does not fit: a bug, never a result */
            fgd_take(&n->now, &p->t, dev);
            n->frag = fgd_frag(s_work, &n->now);
            n->asks |= 1ull << p->ask;
            n->used = true;
            alloc += gpu;
            out->placed++;
        }
        arrived += gpu;
        while (out->steps < S_STEPS && arrived * 10 >= s_gpu_cap * (out->steps + 1))
            out->unalloc[out->steps++] = 100.0 * (double)(s_gpu_cap - alloc) / (double)s_gpu_cap;
    }
    return 0;
}

/* Seed's task sequence (the draws of s_run) until arrived GPU demand reaches until_pct. */
static int s_emit(const char *path, uint64_t seed, unsigned until_pct)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "id\tunits\taccel_model\taccel_count\tcores\tmem_mib\tshare\n");
    uint64_t arrived = 0, draw = seed * 0x2545f4914f6cdd1dull + 1;
    for (size_t k = 0; arrived * 100 < s_gpu_cap * until_pct; k++) {
        s_rng = draw;
        const s_pod_t *p = &s_pods[s_rand_below(s_npods)];
        draw = s_rng;
        arrived += (uint64_t)p->t.ndev * p->t.milli;
        fprintf(f, "t%06zu\t1\t\t%u\t%u\t%" PRIu64 "\t%u\n", k, p->t.ndev, (p->t.cpu + 999) / 1000,
                p->t.mem, p->t.milli);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* The pods' mix as a peer's `workload:` list (docs/POLICY.md): one class per (GPU ask,
 * cores, memory) as --emit writes the requests (cores rounded up to whole ones), weighing its
 * number of pods; the peer weighs each by its GPU share, as cpn's M here does. */
static int s_emit_mix(const char *path)
{
    static fgd_task_t cls[FGD_CLASSES_MAX];
    static uint64_t pods[FGD_CLASSES_MAX];
    size_t n = 0;
    for (size_t i = 0; i < s_npods; i++) {
        fgd_task_t t = s_pods[i].t;
        if (t.ndev == 0) /* no slice request: not in a peer's mix */
            continue;
        t.cpu = (t.cpu + 999) / 1000; /* whole cores, as the requests ask */
        size_t k = 0;
        while (k < n && !(cls[k].ndev == t.ndev && cls[k].milli == t.milli && cls[k].cpu == t.cpu &&
                          cls[k].mem == t.mem))
            k++;
        if (k == FGD_CLASSES_MAX)
            return -1;
        if (k == n)
            cls[n++] = t;
        pods[k]++;
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "# the trace's GPU-pod mix, %zu classes (bench_frag --emit-mix)\nworkload:\n", n);
    for (size_t k = 0; k < n; k++) {
        if (cls[k].milli < FGD_MILLI)
            fprintf(f, "  - {share: %um", cls[k].milli);
        else
            fprintf(f, "  - {count: %u", cls[k].ndev);
        fprintf(f, ", cores: %u, memory: %" PRIu64 "MiB, weight: %" PRIu64 "}\n", cls[k].cpu,
                cls[k].mem, pods[k]);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- main ---- */
static bool s_want(const char *list, const char *name)
{
    if (!list)
        return true;
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += len)
        if ((p == list || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
            return true;
    return false;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *data = getenv("CPN_DATA"), *pols = NULL, *emit = NULL, *emit_mix = NULL;
    unsigned seeds = 10, until = 100;
    uint64_t seed0 = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data"))
            data = argv[i + 1];
        else if (!strcmp(argv[i], "--seeds"))
            seeds = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--seed0"))
            seed0 = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--until"))
            until = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--policies"))
            pols = argv[i + 1];
        else if (!strcmp(argv[i], "--gpu-only"))
            s_gpu_only = strcmp(argv[i + 1], "0") != 0;
        else if (!strcmp(argv[i], "--whole-cores"))
            s_whole_cores = strcmp(argv[i + 1], "0") != 0;
        else if (!strcmp(argv[i], "--emit"))
            emit = argv[i + 1];
        else if (!strcmp(argv[i], "--emit-mix"))
            emit_mix = argv[i + 1];
        else {
            fprintf(stderr, "bench_frag: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!data || seeds == 0 || seeds > S_SEEDS_MAX || until < 10 || until > S_STEPS * 10) {
        fprintf(stderr,
                "usage: bench_frag --data DIR [--seeds 1..%d] [--seed0 S] "
                "[--until 10..%d] [--policies a,b]\n",
                S_SEEDS_MAX, S_STEPS * 10);
        return 2;
    }
    s_work_count = fgd_workload_new();
    s_work_gpu = fgd_workload_new();
    s_memo = calloc((size_t)1 << S_MEMO_BITS, sizeof(*s_memo));
    if (!s_work_count || !s_work_gpu || !s_memo || s_load_nodes(data) != 0 ||
        s_load_pods(data) != 0 || !s_npods)
        return 1;
    printf("# %zu nodes, %" PRIu64 " GPUs, %zu pods in %zu classes, %zu GPU asks\n", s_nnodes,
           s_gpu_cap / FGD_MILLI, s_npods, fgd_workload_classes(s_work_count), s_nasks);
    if (emit && s_emit(emit, seed0, until) != 0) {
        fprintf(stderr, "bench_frag: cannot write %s\n", emit);
        return 1;
    }
    if (emit_mix && s_emit_mix(emit_mix) != 0) {
        fprintf(stderr, "bench_frag: cannot write %s\n", emit_mix);
        return 1;
    }
    static double head[P__N][S_SEEDS_MAX];
    size_t hstep = 9; /* arrived = 100 % */
    for (int pol = 0; pol < P__N; pol++) {
        if (!s_want(pols, s_pol_name[pol]))
            continue;
        memset(s_memo, 0, ((size_t)1 << S_MEMO_BITS) * sizeof(*s_memo));
        s_work = pol == P_CPN || pol == P_FGD_SHARE ? s_work_gpu : s_work_count;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (unsigned s = 0; s < seeds; s++) {
            s_run_t r;
            if (s_run((s_pol_t)pol, seed0 + s, until, &r) != 0) {
                fprintf(stderr, "bench_frag: %s over-committed a node\n", s_pol_name[pol]);
                return 1;
            }
            printf("run %-10s seed %-4" PRIu64 " placed %zu failed %zu unalloc%%", s_pol_name[pol],
                   seed0 + s, r.placed, r.failed);
            for (size_t k = 0; k < r.steps; k++)
                printf(" %.2f", r.unalloc[k]);
            printf("\n");
            head[pol][s] = r.steps > hstep ? r.unalloc[hstep] : NAN;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        double v[S_SEEDS_MAX], sum = 0, sq = 0;
        memcpy(v, head[pol], seeds * sizeof(double));
        for (unsigned s = 0; s < seeds; s++)
            sum += v[s], sq += v[s] * v[s];
        double mean = sum / seeds, sd = seeds > 1 ? sqrt((sq - sum * mean) / (seeds - 1)) : 0;
        qsort(v, seeds, sizeof(double), s_cmp_double);
        printf("summary %-10s seeds %u unalloc@100%% mean %.2f sd %.2f min %.2f median %.2f "
               "max %.2f GPUs %.0f (%.1f s)\n",
               s_pol_name[pol], seeds, mean, sd, v[0], v[seeds / 2], v[seeds - 1],
               mean * (double)s_gpu_cap / FGD_MILLI / 100, secs);
        fflush(stdout);
    }
    if (s_want(pols, "fgd") && s_want(pols, "cpn")) {
        /* the same seeds, paired: the goal is cpn <= fgd */
        unsigned le = 0;
        double d = 0;
        for (unsigned s = 0; s < seeds; s++) {
            le += head[P_CPN][s] <= head[P_FGD][s];
            d += head[P_CPN][s] - head[P_FGD][s];
        }
        printf("paired cpn - fgd: mean %+.2f points of capacity; cpn <= fgd on %u of %u seeds\n",
               d / seeds, le, seeds);
    }
    fgd_workload_destroy(&s_work_count);
    fgd_workload_destroy(&s_work_gpu);
    free(s_memo);
    return 0;
}
