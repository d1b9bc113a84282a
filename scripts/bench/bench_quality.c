/* bench_quality.c - one batch of the quality benchmark (scripts/bench/quality): the broker's
 * placements against what an integer program can do with the same requests and packages.
 *
 * Input: a directory the driver wrote from the data set (formats in scripts/bench/quality):
 *   packages.tsv  id vendor model accel cores mem_mib region price total   (one per line)
 *   requests.tsv  id units model accel cores mem_mib                       (arrival order)
 *   equiv.tsv     model <tab> accepted,models                              (policy rules)
 * Each package is advertised by its own peer in a real signed AD (cpn_msg_build) into a
 * fresh book (book_put_ad), connected directly, so every offer gets the same bonus and the
 * matcher ranks by price (then key and id, as the broker does).
 *
 * What it does:
 *   1. feasibility: request r may go on package p when the matcher's hard constraints hold
 *      on the empty book: the model by name or by the policy's equivalence rule,
 *      cpn_package_fits for the rest (with the model cleared, as match.c does), the policy's
 *      residency and ceiling, and units <= total. Cross-checked: for every request,
 *      match_find on the fresh book returns exactly that set of packages (else exit 3);
 *   2. greedy: the broker's way (broker/claim.c), one request at a time in arrival order,
 *      match_find and the best candidate, book_take of its units;
 *   3. batch: the same requests through batch_plan (broker/batch.h) on a fresh book;
 *   Each mode runs 5 times on a fresh book (the book's making is not timed); us = the median.
 *   4. writes the instance as GNU MathProg data (inst.dat, for quality.mod) and each mode's
 *      placements (place_<mode>.tsv: request package units accelerators cost), each checked
 *      here against feasibility and capacity (exit 3 if a mode breaks either).
 * Output on stdout: key=value lines, one per mode.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batch.h"
#include "book.h"
#include "identity.h"
#include "match.h"
#include "msg.h"

#define Q_PKGS_MAX 4096
#define Q_REQS_MAX 65536
#define Q_LINE_MAX 1024
#define Q_FIELDS_MAX 16

typedef struct {
    cpn_package_t p;
    uint8_t key[CPN_PK_LEN];
} q_pkg_t;

static q_pkg_t *s_pkgs;
static size_t s_npk;
static cpn_request_t *s_reqs;
static size_t s_nreq;
static match_policy_t s_pol;
static uint8_t *s_feas; /* s_nreq x s_npk */
static const uint64_t s_now = 1700000000000ull;

static void s_die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_quality: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

static void s_fail(const char *what, const char *detail)
{
    fprintf(stderr, "bench_quality: CHECK FAILED: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    exit(3);
}

static uint64_t s_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Split a tab-separated line in place; returns the number of fields. */
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

static void s_copy(char *dst, size_t cap, const char *src, const char *what)
{
    if ((size_t)snprintf(dst, cap, "%s", src) >= cap)
        s_die("name too long", what);
}

static uint64_t s_u64(const char *s, const char *what)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || *s == '-')
        s_die("not a number", what);
    return v;
}

static FILE *s_open(const char *dir, const char *name, const char *mode)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        s_die("path too long", name);
    FILE *f = fopen(path, mode);
    if (f == NULL)
        s_die("cannot open", path);
    return f;
}

static void s_load(const char *dir)
{
    char line[Q_LINE_MAX];
    char *f[Q_FIELDS_MAX];
    FILE *in = s_open(dir, "packages.tsv", "r");

    s_pkgs = calloc(Q_PKGS_MAX, sizeof *s_pkgs);
    s_reqs = calloc(Q_REQS_MAX, sizeof *s_reqs);
    if (s_pkgs == NULL || s_reqs == NULL)
        s_die("out of memory", NULL);
    if (fgets(line, sizeof line, in) == NULL)
        s_die("empty", "packages.tsv");
    while (fgets(line, sizeof line, in) != NULL) {
        if (s_npk == Q_PKGS_MAX)
            s_die("too many packages", NULL);
        if (s_fields(line, f, Q_FIELDS_MAX) != 9)
            s_die("bad line in", "packages.tsv");
        cpn_package_t *p = &s_pkgs[s_npk].p;
        s_copy(p->id, sizeof p->id, f[0], "package id");
        s_copy(p->accel.vendor, sizeof p->accel.vendor, f[1], "vendor");
        s_copy(p->accel.model, sizeof p->accel.model, f[2], "model");
        p->accel.count = (uint32_t)s_u64(f[3], "accel");
        if (p->accel.count > 0) {
            /* Not in the node trace; the protocol wants both above 0 and no request here
             * asks by capability, so the smallest valid figures. */
            p->accel.mem_bytes = 1ull << 30;
            p->accel.bf16_tflops = 1;
        }
        p->cores = (uint32_t)s_u64(f[4], "cores");
        p->mem_bytes = s_u64(f[5], "mem_mib") << 20;
        s_copy(p->region, sizeof p->region, f[6], "region");
        p->price = s_u64(f[7], "price");
        p->total = (uint32_t)s_u64(f[8], "total");
        p->free = p->total;
        s_npk++;
    }
    fclose(in);

    in = s_open(dir, "requests.tsv", "r");
    if (fgets(line, sizeof line, in) == NULL)
        s_die("empty", "requests.tsv");
    while (fgets(line, sizeof line, in) != NULL) {
        if (s_nreq == Q_REQS_MAX)
            s_die("too many requests", NULL);
        if (s_fields(line, f, Q_FIELDS_MAX) != 6)
            s_die("bad line in", "requests.tsv");
        cpn_request_t *r = &s_reqs[s_nreq++];
        s_copy(r->id, sizeof r->id, f[0], "request id");
        r->units = (uint32_t)s_u64(f[1], "units");
        s_copy(r->accel_model, sizeof r->accel_model, f[2], "model");
        r->accel_count = (uint32_t)s_u64(f[3], "accel");
        r->cores = (uint32_t)s_u64(f[4], "cores");
        r->mem_bytes = s_u64(f[5], "mem_mib") << 20;
        r->duration_s = 3600;
    }
    fclose(in);

    match_policy_default(&s_pol);
    in = s_open(dir, "equiv.tsv", "r");
    while (fgets(line, sizeof line, in) != NULL) {
        if (s_pol.n_equiv == MATCH_EQUIV_MAX)
            s_die("more equivalence rules than a policy holds", NULL);
        if (s_fields(line, f, Q_FIELDS_MAX) != 2)
            s_die("bad line in", "equiv.tsv");
        match_equiv_t *e = &s_pol.equiv[s_pol.n_equiv++];
        s_copy(e->model, sizeof e->model, f[0], "equivalence");
        char *save = NULL;
        for (char *tok = strtok_r(f[1], ",", &save); tok != NULL;
             tok = strtok_r(NULL, ",", &save)) {
            if (e->accept.n == CPN_LIST_MAX)
                s_die("equivalence list too long", f[0]);
            s_copy(e->accept.items[e->accept.n++], CPN_NAME_MAX, tok, "equivalence");
        }
    }
    fclose(in);
    const char *why = NULL;
    if (match_policy_validate(&s_pol, &why) != CPN_OK)
        s_die("policy", why);
    if (s_npk == 0 || s_nreq == 0)
        s_die("no packages or no requests", NULL);
    for (size_t i = 0; i < s_nreq; i++)
        if (cpn_request_validate(&s_reqs[i], &why) != CPN_OK)
            s_die(s_reqs[i].id, why);
}

/* ---- the book: one peer per package ------------------------------------------------------ */

static book_t *s_book(void)
{
    book_t *b = book_new(s_npk);
    if (b == NULL)
        s_die("out of memory", NULL);
    for (size_t i = 0; i < s_npk; i++) {
        uint8_t seed[CPN_SEED_LEN];
        cpn_identity_t *id = NULL;
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_ad_t ad;
        memset(seed, 0x51, sizeof seed);
        for (int k = 0; k < 8; k++)
            seed[k] = (uint8_t)(i >> (8 * k));
        memset(&ad, 0, sizeof ad);
        snprintf(ad.name, sizeof ad.name, "node-%zu", i);
        ad.ttl_s = 3600;
        ad.n_packages = 1;
        ad.packages = &s_pkgs[i].p;
        const char *why = NULL;
        if (cpn_package_validate(&s_pkgs[i].p, &why) != CPN_OK)
            s_die(s_pkgs[i].p.id, why);
        if (cpn_identity_from_seed(seed, &id) != CPN_OK)
            s_die("identity", NULL);
        memcpy(s_pkgs[i].key, cpn_identity_pk(id), CPN_PK_LEN);
        uint64_t seq = cpn_seq_next(0, s_now);
        if (cpn_msg_build(id, CPN_MSG_AD, seq, s_now, &ad, &frame, &len) != CPN_OK)
            s_die("cpn_msg_build", s_pkgs[i].p.id);
        cpn_identity_destroy(&id);
        if (book_put_ad(b, s_pkgs[i].key, seq, s_now, &ad, frame, len, NULL, 0) != CPN_OK)
            s_die("book_put_ad", s_pkgs[i].p.id);
        free(frame);
    }
    return b;
}

static size_t s_pkg_of(const uint8_t key[CPN_PK_LEN], const char *id)
{
    for (size_t i = 0; i < s_npk; i++)
        if (memcmp(s_pkgs[i].key, key, CPN_PK_LEN) == 0 &&
            strncmp(s_pkgs[i].p.id, id, CPN_NAME_MAX) == 0)
            return i;
    s_fail("the matcher named a package the book was not given", id);
    return 0;
}

/* ---- feasibility: the matcher's hard constraints, on an empty book ------------------------ */

static int s_model_ok(const cpn_request_t *r, const cpn_package_t *p)
{
    if (r->accel_model[0] == '\0')
        return 1;
    if (p->accel.count == 0)
        return 0;
    if (strcasecmp(r->accel_model, p->accel.model) == 0)
        return 1;
    for (uint32_t i = 0; i < s_pol.n_equiv; i++) {
        if (strcasecmp(s_pol.equiv[i].model, r->accel_model) != 0)
            continue;
        for (uint32_t j = 0; j < s_pol.equiv[i].accept.n; j++)
            if (strcasecmp(s_pol.equiv[i].accept.items[j], p->accel.model) == 0)
                return 1;
    }
    return 0;
}

static int s_in_list(const cpn_namelist_t *l, const char *name)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i], name) == 0)
            return 1;
    return 0;
}

static int s_fits(const cpn_request_t *r, const cpn_package_t *p)
{
    cpn_request_t q = *r;
    cpn_package_t e = *p;
    q.accel_model[0] = '\0';
    e.free = e.total;
    if (!s_model_ok(r, p) || cpn_package_fits(&e, &q) != CPN_C_OK)
        return 0;
    if (s_pol.allowed_regions.n > 0 && !s_in_list(&s_pol.allowed_regions, p->region))
        return 0;
    return s_pol.max_price == 0 || p->price <= s_pol.max_price;
}

static void s_feasibility(void)
{
    book_t *b = s_book();
    match_cand_t *c = calloc(s_npk, sizeof *c);
    uint8_t *seen = calloc(s_npk, 1);
    s_feas = calloc(s_nreq * s_npk, 1);
    if (c == NULL || seen == NULL || s_feas == NULL)
        s_die("out of memory", NULL);
    for (size_t r = 0; r < s_nreq; r++) {
        size_t n = 0, want = 0;
        for (size_t p = 0; p < s_npk; p++)
            want += s_feas[r * s_npk + p] = (uint8_t)s_fits(&s_reqs[r], &s_pkgs[p].p);
        int rc = match_find(b, &s_reqs[r], &s_pol, s_now, c, s_npk, &n, NULL);
        if (rc != CPN_OK && rc != CPN_E_NO_MATCH)
            s_die("match_find", cpn_strerror(rc));
        memset(seen, 0, s_npk);
        for (size_t i = 0; i < n; i++) {
            size_t p = s_pkg_of(c[i].peer, c[i].package);
            if (!s_feas[r * s_npk + p] || seen[p])
                s_fail("the matcher offered a package the check refuses", s_reqs[r].id);
            seen[p] = 1;
        }
        if (n != want)
            s_fail("the matcher missed a package the check accepts", s_reqs[r].id);
    }
    free(seen);
    free(c);
    book_destroy(&b);
}

/* ---- modes -------------------------------------------------------------------------------- */

typedef struct {
    size_t req, pkg;
    uint32_t units;
} q_place_t;

typedef struct {
    const char *name;
    q_place_t *pl;
    size_t n;
    double us; /* median over Q_TIMED runs, each on a fresh book */
} q_run_t;

#define Q_TIMED 5

static int s_dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The broker's way: arrival order, the best candidate, book_take. */
static double s_greedy(q_run_t *run)
{
    book_t *b = s_book();
    match_cand_t c;
    run->n = 0;
    uint64_t t0 = s_ns();
    for (size_t r = 0; r < s_nreq; r++) {
        size_t n = 0;
        int rc = match_find(b, &s_reqs[r], &s_pol, s_now, &c, 1, &n, NULL);
        if (rc == CPN_E_NO_MATCH)
            continue;
        if (rc != CPN_OK)
            s_die("match_find", cpn_strerror(rc));
        if (book_take(b, c.peer, c.package, c.units) != CPN_OK)
            s_fail("book_take refused the matcher's best candidate", s_reqs[r].id);
        run->pl[run->n++] = (q_place_t){r, s_pkg_of(c.peer, c.package), c.units};
    }
    double us = (double)(s_ns() - t0) / 1e3;
    book_destroy(&b);
    return us;
}

static double s_batch(q_run_t *run)
{
    book_t *b = s_book();
    batch_place_t *out = calloc(s_nreq, sizeof *out);
    if (out == NULL)
        s_die("out of memory", NULL);
    size_t n = 0;
    uint64_t t0 = s_ns();
    int rc = batch_plan(b, s_reqs, s_nreq, &s_pol, s_now, out, &n);
    double us = (double)(s_ns() - t0) / 1e3;
    if (rc != CPN_OK)
        s_die("batch_plan", cpn_strerror(rc));
    run->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].req >= s_nreq)
            s_fail("batch_plan named a request out of range", NULL);
        run->pl[run->n++] = (q_place_t){out[i].req, s_pkg_of(out[i].cand.peer, out[i].cand.package),
                                        out[i].cand.units};
    }
    free(out);
    book_destroy(&b);
    return us;
}

/* Run a mode Q_TIMED times (it is deterministic: the last run's placements are kept). */
static void s_run(q_run_t *run, double (*mode)(q_run_t *))
{
    double us[Q_TIMED];
    run->pl = calloc(s_nreq, sizeof *run->pl);
    if (run->pl == NULL)
        s_die("out of memory", NULL);
    for (int i = 0; i < Q_TIMED; i++)
        us[i] = mode(run);
    qsort(us, Q_TIMED, sizeof us[0], s_dbl_cmp);
    run->us = us[Q_TIMED / 2];
}

static uint64_t s_accel(size_t r)
{
    return (uint64_t)s_reqs[r].units * s_reqs[r].accel_count;
}

static uint64_t s_cost(size_t r, size_t p)
{
    return (uint64_t)s_reqs[r].units * s_pkgs[p].p.price;
}

/* Check a mode's placements against feasibility and capacity; write them; print totals. */
static void s_report(const char *dir, const q_run_t *run)
{
    uint64_t *used = calloc(s_npk, sizeof *used);
    uint8_t *placed = calloc(s_nreq, 1);
    uint64_t acc = 0, cost = 0;
    char name[256];
    if (used == NULL || placed == NULL)
        s_die("out of memory", NULL);
    snprintf(name, sizeof name, "place_%s.tsv", run->name);
    FILE *out = s_open(dir, name, "w");
    fprintf(out, "request\tpackage\tunits\taccelerators\tcost\n");
    for (size_t i = 0; i < run->n; i++) {
        const q_place_t *q = &run->pl[i];
        if (placed[q->req] || !s_feas[q->req * s_npk + q->pkg] || q->units != s_reqs[q->req].units)
            s_fail("a placement breaks a hard constraint or places a request twice",
                   s_reqs[q->req].id);
        placed[q->req] = 1;
        used[q->pkg] += q->units;
        acc += s_accel(q->req);
        cost += s_cost(q->req, q->pkg);
        fprintf(out, "%s\t%s\t%u\t%" PRIu64 "\t%" PRIu64 "\n", s_reqs[q->req].id,
                s_pkgs[q->pkg].p.id, q->units, s_accel(q->req), s_cost(q->req, q->pkg));
    }
    fclose(out);
    for (size_t p = 0; p < s_npk; p++)
        if (used[p] > s_pkgs[p].p.total)
            s_fail("a package holds more units than it has", s_pkgs[p].p.id);
    printf("mode=%s placed=%zu accelerators=%" PRIu64 " cost=%" PRIu64 " us=%.1f\n", run->name,
           run->n, acc, cost, run->us);
    free(used);
    free(placed);
}

/* ---- the integer program's data ----------------------------------------------------------- */

static void s_write_dat(const char *dir)
{
    FILE *f = s_open(dir, "inst.dat", "w");
    uint64_t pairs = 0, demand = 0, supply = 0;
    fprintf(f, "/* written by bench_quality: %zu requests, %zu packages */\ndata;\n", s_nreq,
            s_npk);
    fprintf(f, "param: R: acc units :=\n");
    for (size_t r = 0; r < s_nreq; r++) {
        fprintf(f, "  r%zu %" PRIu64 " %u\n", r, s_accel(r), s_reqs[r].units);
        demand += s_accel(r);
    }
    fprintf(f, ";\nparam: P: cap :=\n");
    for (size_t p = 0; p < s_npk; p++) {
        fprintf(f, "  p%zu %u\n", p, s_pkgs[p].p.total);
        supply += (uint64_t)s_pkgs[p].p.total * s_pkgs[p].p.accel.count;
    }
    fprintf(f, ";\nparam: F: cost :=\n");
    for (size_t r = 0; r < s_nreq; r++)
        for (size_t p = 0; p < s_npk; p++)
            if (s_feas[r * s_npk + p]) {
                fprintf(f, "  r%zu p%zu %" PRIu64 "\n", r, p, s_cost(r, p));
                pairs++;
            }
    fprintf(f, ";\nend;\n");
    fclose(f);
    size_t never = 0;
    for (size_t r = 0; r < s_nreq; r++) {
        size_t k = 0;
        for (size_t p = 0; p < s_npk; p++)
            k += s_feas[r * s_npk + p];
        never += k == 0;
    }
    printf("instance requests=%zu packages=%zu pairs=%" PRIu64 " accel_asked=%" PRIu64
           " accel_offered=%" PRIu64 " fit_nowhere=%zu\n",
           s_nreq, s_npk, pairs, demand, supply, never);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_quality DIR   (see scripts/bench/quality)\n");
        return 2;
    }
    s_load(argv[1]);
    s_feasibility();
    s_write_dat(argv[1]);
    q_run_t runs[2] = {{.name = "greedy"}, {.name = "batch"}};
    s_run(&runs[0], s_greedy);
    s_run(&runs[1], s_batch);
    for (size_t i = 0; i < 2; i++) {
        s_report(argv[1], &runs[i]);
        free(runs[i].pl);
    }
    free(s_feas);
    free(s_pkgs);
    free(s_reqs);
    return 0;
}
