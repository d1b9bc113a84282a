/* loadgen.c - the tenants of the end-to-end benchmark (scripts/bench/e2e): replays
 * trace-derived requests as signed REQUESTs to a cpn-broker over several DEALER connections
 * (one tenant key each), open loop at a set rate or closed loop with N outstanding, and
 * reports request-to-lease latency, NACK reasons, and the CPU time and signature counts of
 * every process it is told to watch over the measured window.
 *
 * Every answer is handled as a tenant would (cpnctl): its envelope is parsed, it must come
 * from the broker's key and its signature is verified, STATUS progress notes included.
 * Latency of a request = GRANT received and verified minus REQUEST sent (monotonic clock).
 *
 * Requests file (tab-separated, one header line):
 *   id units accel_model accel_count cores mem_mib [share]
 * (per unit; accel_model may be "" or "A|B", which the broker's policy maps to A or B;
 * share, optional: a slice of shared accelerators in thousandths, resource.h).
 *
 * --sigbench SECONDS instead measures Ed25519 sign and verify per second on one core.
 * Output: one JSON object on stdout (or --json FILE). Every loop is bounded in time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "clock.h"
#include "envelope.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define LG_TENANTS_MAX 64
#define LG_WATCH_MAX 32
#define LG_DRAIN_MAX 1024 /* frames taken from one socket per poll pass */
#define LG_REASONS_MAX 64

/* The counters sigcount.c keeps per process (same layout). */
typedef struct {
    uint64_t magic;
    uint64_t signs, verifies;
    uint64_t sign_ns, verify_ns;
    uint64_t signs_timed, verifies_timed;
} lg_sigcount_t;
#define LG_SIGCOUNT_MAGIC 0x63706e7369673033ull

typedef struct {
    char id[CPN_NAME_MAX];
    uint32_t units, accel_count, cores, share;
    char model[CPN_NAME_MAX];
    uint64_t mem_mib;
    /* run state */
    uint64_t seq;      /* seq of the REQUEST sent */
    uint64_t sent_ns;  /* 0 = not sent */
    uint64_t done_ns;  /* 0 = no final answer yet */
    int code;          /* CPN_OK (GRANT) or the NACK/ERROR code */
    char reason[96];   /* the NACK's reason, for --answers */
} lg_req_t;

typedef struct {
    char name[32];
    long pid;
    double cpu0, cpu1;
    lg_sigcount_t sig0, sig1;
    bool have_sig;
} lg_watch_t;

typedef struct {
    char reason[128];
    int code;
    uint64_t n;
} lg_reason_t;

typedef struct {
    /* options */
    const char *broker, *broker_key, *requests, *prefix, *json, *sigdir, *answers;
    const char *tenant_keys[LG_TENANTS_MAX];
    size_t n_tenants;
    double rate, duration_s, timeout_s, sigbench_s;
    uint32_t outstanding;
    size_t limit;
    uint64_t lease_s;
    /* state */
    cpn_identity_t *ids[LG_TENANTS_MAX];
    cpn_signer_t signers[LG_TENANTS_MAX];
    void *socks[LG_TENANTS_MAX];
    void *zctx;
    uint8_t broker_pk[CPN_PK_LEN];
    lg_req_t *reqs;
    size_t n_reqs;
    size_t *index; /* open addressing: id hash -> request index + 1 */
    size_t index_cap;
    lg_watch_t watch[LG_WATCH_MAX];
    size_t n_watch;
    lg_reason_t reasons[LG_REASONS_MAX];
    size_t n_reasons;
    uint64_t sent, send_failed, answered, grants, statuses, dropped, late, in_flight;
    uint64_t max_lag_ns;
    double machine0, machine1; /* busy CPU seconds of the whole machine (/proc/stat) */
    uint64_t t_first_send, t_last_send, t_last_answer;
} lg_t;

static uint64_t s_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the id index ---- */

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int s_index_build(lg_t *self)
{
    self->index_cap = 16;
    while (self->index_cap < self->n_reqs * 2)
        self->index_cap *= 2;
    self->index = calloc(self->index_cap, sizeof *self->index);
    if (!self->index)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < self->n_reqs; i++) {
        size_t k = s_hash(self->reqs[i].id) & (self->index_cap - 1);
        while (self->index[k]) {
            if (strcmp(self->reqs[self->index[k] - 1].id, self->reqs[i].id) == 0) {
                fprintf(stderr, "loadgen: request id %s twice in the file\n", self->reqs[i].id);
                return CPN_E_INVAL;
            }
            k = (k + 1) & (self->index_cap - 1);
        }
        self->index[k] = i + 1;
    }
    return CPN_OK;
}

static lg_req_t *s_find(lg_t *self, const char *id)
{
    size_t k = s_hash(id) & (self->index_cap - 1);
    for (size_t probe = 0; probe < self->index_cap && self->index[k]; probe++) {
        lg_req_t *q = &self->reqs[self->index[k] - 1];
        if (strcmp(q->id, id) == 0)
            return q;
        k = (k + 1) & (self->index_cap - 1);
    }
    return NULL;
}

/* ---- input ---- */

static int s_load_requests(lg_t *self)
{
    FILE *f = fopen(self->requests, "r");
    char line[1024];
    size_t cap = 0;
    int r = CPN_E_IO;
    if (!f) {
        fprintf(stderr, "loadgen: %s: %s\n", self->requests, strerror(errno));
        return CPN_E_IO;
    }
    if (!fgets(line, sizeof line, f)) /* header */
        goto out;
    while (fgets(line, sizeof line, f) && (self->limit == 0 || self->n_reqs < self->limit)) {
        if (self->n_reqs == cap) {
            cap = cap ? cap * 2 : 1024;
            lg_req_t *n = realloc(self->reqs, cap * sizeof *n);
            if (!n) {
                r = CPN_E_NOMEM;
                goto out;
            }
            self->reqs = n;
        }
        lg_req_t *q = &self->reqs[self->n_reqs];
        memset(q, 0, sizeof *q);
        char *save = NULL, *tok[7] = {0};
        size_t nt = 0;
        line[strcspn(line, "\r\n")] = '\0';
        /* strsep keeps empty fields (an empty model) */
        for (char *p = line; nt < 7 && (save = strsep(&p, "\t")) != NULL;)
            tok[nt++] = save;
        if (nt < 6 || snprintf(q->id, sizeof q->id, "%s%s", self->prefix, tok[0]) >=
                           (int)sizeof q->id) {
            fprintf(stderr, "loadgen: %s: bad line %zu\n", self->requests, self->n_reqs + 2);
            r = CPN_E_INVAL;
            goto out;
        }
        q->units = (uint32_t)strtoul(tok[1], NULL, 10);
        snprintf(q->model, sizeof q->model, "%s", tok[2]);
        q->accel_count = (uint32_t)strtoul(tok[3], NULL, 10);
        q->cores = (uint32_t)strtoul(tok[4], NULL, 10);
        q->mem_mib = strtoull(tok[5], NULL, 10);
        q->share = nt == 7 ? (uint32_t)strtoul(tok[6], NULL, 10) : 0;
        self->n_reqs++;
    }
    r = self->n_reqs ? CPN_OK : CPN_E_INVAL;
    if (r != CPN_OK)
        fprintf(stderr, "loadgen: %s: no requests\n", self->requests);
out:
    fclose(f);
    return r;
}

/* ---- what the watched processes spent ---- */

static double s_proc_cpu(long pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static bool s_sigcount(const lg_t *self, long pid, lg_sigcount_t *out)
{
    char path[4096];
    memset(out, 0, sizeof *out);
    if (!self->sigdir)
        return false;
    snprintf(path, sizeof path, "%s/sig.%ld", self->sigdir, pid);
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    bool ok = fread(out, sizeof *out, 1, f) == 1 && out->magic == LG_SIGCOUNT_MAGIC;
    fclose(f);
    return ok;
}

/* Busy CPU seconds of the whole machine: what every process spent, ours or not. */
static double s_machine_cpu(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* Seconds in all calls, from the CPU time of the sampled ones (sigcount.c times 1 in 16). */
static double s_scaled(uint64_t ns, uint64_t calls, uint64_t timed)
{
    return timed ? (double)ns / 1e9 * (double)calls / (double)timed : 0;
}

static void s_snapshot(lg_t *self, bool end)
{
    if (end)
        self->machine1 = s_machine_cpu();
    else
        self->machine0 = s_machine_cpu();
    for (size_t i = 0; i < self->n_watch; i++) {
        lg_watch_t *w = &self->watch[i];
        if (end) {
            w->cpu1 = s_proc_cpu(w->pid);
            w->have_sig = s_sigcount(self, w->pid, &w->sig1) && w->have_sig;
        } else {
            w->cpu0 = s_proc_cpu(w->pid);
            w->have_sig = s_sigcount(self, w->pid, &w->sig0);
        }
    }
}

/* ---- sending and receiving ---- */

static void s_send(lg_t *self, size_t i)
{
    lg_req_t *q = &self->reqs[i];
    size_t t = i % self->n_tenants;
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", q->id);
    req.units = q->units;
    req.duration_s = self->lease_s;
    snprintf(req.accel_model, sizeof req.accel_model, "%s", q->model);
    req.accel_count = q->accel_count;
    req.share = q->share;
    req.cores = q->cores;
    req.mem_bytes = q->mem_mib << 20;
    uint8_t *frame = NULL;
    size_t len = 0;
    int r = cpn_signer_build(&self->signers[t], CPN_MSG_REQUEST, &req, &frame, &len);
    uint64_t now = s_ns();
    if (r == CPN_OK)
        r = cpn_send(self->socks[t], frame, len);
    free(frame);
    q->sent_ns = now;
    if (!self->t_first_send)
        self->t_first_send = now;
    self->t_last_send = now;
    self->sent++;
    if (r != CPN_OK) { /* counted as answered with its own code: nothing will come */
        self->send_failed++;
        q->done_ns = now;
        q->code = r;
        self->answered++;
        return;
    }
    q->seq = self->signers[t].last_seq;
    self->in_flight++;
}

static void s_reason(lg_t *self, int code, const char *text)
{
    /* Peer key ids and numbers vary per request: fold them so that reasons group. */
    char raw[CPN_REASON_MAX], norm[128];
    snprintf(raw, sizeof raw, "%s", text);
    for (char *peer = raw; (peer = strstr(peer, "peer ")) != NULL; peer += 5)
        if (strlen(peer) > 15 && peer[15] == ':') /* "peer XXXXXXXXXX: ..." */
            memmove(peer + 4, peer + 15, strlen(peer + 15) + 1);
    size_t o = 0;
    for (const char *p = raw; *p && o + 1 < sizeof norm; p++) {
        if (*p >= '0' && *p <= '9') {
            if (o == 0 || norm[o - 1] != '#')
                norm[o++] = '#';
            continue;
        }
        norm[o++] = *p;
    }
    norm[o] = '\0';
    for (size_t i = 0; i < self->n_reasons; i++)
        if (self->reasons[i].code == code && strcmp(self->reasons[i].reason, norm) == 0) {
            self->reasons[i].n++;
            return;
        }
    if (self->n_reasons < LG_REASONS_MAX) {
        lg_reason_t *r = &self->reasons[self->n_reasons++];
        snprintf(r->reason, sizeof r->reason, "%s", norm);
        r->code = code;
        r->n = 1;
    }
}

static void s_finish(lg_t *self, lg_req_t *q, int code, const char *reason, uint64_t now)
{
    if (!q || !q->sent_ns) {
        self->dropped++;
        return;
    }
    if (q->done_ns) { /* a second answer to a request already answered */
        self->late++;
        return;
    }
    q->done_ns = now;
    q->code = code;
    self->answered++;
    self->in_flight--;
    self->t_last_answer = now;
    if (code == CPN_OK)
        self->grants++;
    else {
        s_reason(self, code, reason ? reason : "");
        snprintf(q->reason, sizeof q->reason, "%s", reason ? reason : "");
    }
}

static lg_req_t *s_find_seq(lg_t *self, uint64_t seq)
{
    for (size_t i = 0; i < self->n_reqs; i++)
        if (self->reqs[i].seq == seq && self->reqs[i].sent_ns)
            return &self->reqs[i];
    return NULL;
}

static void s_on_frame(lg_t *self, const uint8_t *frame, size_t len)
{
    cpn_limits_t lim = cpn_limits_default;
    lim.max_frame *= 16;
    lim.max_str *= 16;
    cpn_env_t env;
    if (cpn_env_parse(frame, len, &lim, &env) != CPN_OK ||
        memcmp(env.from, self->broker_pk, CPN_PK_LEN) != 0 || cpn_env_verify(&env) != CPN_OK) {
        self->dropped++;
        return;
    }
    uint64_t now = s_ns();
    switch (env.type) {
    case CPN_MSG_GRANT: {
        cpn_grant_t g;
        memset(&g, 0, sizeof g);
        if (cpn_grant_decode(&env, &lim, &g) != CPN_OK) {
            self->dropped++;
            return;
        }
        s_finish(self, s_find(self, g.request_id), CPN_OK, NULL, now);
        return;
    }
    case CPN_MSG_NACK: {
        cpn_nack_t n;
        memset(&n, 0, sizeof n);
        if (cpn_nack_decode(&env, &lim, &n) != CPN_OK) {
            self->dropped++;
            return;
        }
        s_finish(self, s_find(self, n.ref), n.code, n.reason, now);
        return;
    }
    case CPN_MSG_ERROR: {
        cpn_error_t e;
        memset(&e, 0, sizeof e);
        if (cpn_error_decode(&env, &lim, &e) != CPN_OK) {
            self->dropped++;
            return;
        }
        s_finish(self, s_find_seq(self, e.ref_seq), e.code, e.reason, now);
        return;
    }
    case CPN_MSG_STATUS:
        self->statuses++;
        return;
    default:
        self->dropped++;
        return;
    }
}

/* Take what is waiting on every connection; wait up to timeout_ms for the first. */
static void s_poll(lg_t *self, long timeout_ms)
{
    zmq_pollitem_t items[LG_TENANTS_MAX];
    for (size_t t = 0; t < self->n_tenants; t++)
        items[t] = (zmq_pollitem_t){self->socks[t], 0, ZMQ_POLLIN, 0};
    if (zmq_poll(items, (int)self->n_tenants, timeout_ms) <= 0)
        return;
    for (size_t t = 0; t < self->n_tenants; t++) {
        if (!(items[t].revents & ZMQ_POLLIN))
            continue;
        for (int k = 0; k < LG_DRAIN_MAX; k++) {
            uint8_t *frame = NULL;
            size_t len = 0;
            int r = cpn_recv(self->socks[t], 0, NULL, NULL, &frame, &len);
            if (r == CPN_E_TIMEOUT)
                break;
            if (r == CPN_OK)
                s_on_frame(self, frame, len);
            else
                self->dropped++;
            free(frame);
        }
    }
}

/* Every connection up and known to the broker: one QUERY status answered on each. */
static int s_warm_up(lg_t *self)
{
    cpn_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "status");
    for (size_t t = 0; t < self->n_tenants; t++) {
        uint8_t *frame = NULL;
        size_t len = 0;
        int r = cpn_signer_build(&self->signers[t], CPN_MSG_QUERY, &q, &frame, &len);
        if (r == CPN_OK)
            r = cpn_send(self->socks[t], frame, len);
        free(frame);
        if (r != CPN_OK)
            return r;
    }
    uint64_t until = s_ns() + 10000000000ull;
    while (self->statuses < self->n_tenants && s_ns() < until)
        s_poll(self, 100);
    if (self->statuses < self->n_tenants) {
        fprintf(stderr, "loadgen: the broker answered %" PRIu64 " of %zu status queries in 10 s\n",
                self->statuses, self->n_tenants);
        return CPN_E_TIMEOUT;
    }
    self->statuses = 0;
    self->dropped = 0;
    return CPN_OK;
}

static void s_run(lg_t *self)
{
    uint64_t timeout = (uint64_t)(self->timeout_s * 1e9);
    size_t next = 0;
    s_snapshot(self, false);
    uint64_t t0 = s_ns();
    uint64_t stop_send = self->duration_s > 0 ? t0 + (uint64_t)(self->duration_s * 1e9) : 0;
    for (;;) {
        uint64_t now = s_ns();
        bool sending = next < self->n_reqs && (!stop_send || now < stop_send);
        long wait_ms = 50;
        if (sending && self->rate > 0) {
            /* open loop: request i is due at t0 + i / rate, whatever came back */
            uint64_t due;
            while (next < self->n_reqs &&
                   (due = t0 + (uint64_t)((double)next * 1e9 / self->rate)) <= now) {
                if (now - due > self->max_lag_ns)
                    self->max_lag_ns = now - due;
                s_send(self, next++);
            }
            if (next < self->n_reqs) {
                due = t0 + (uint64_t)((double)next * 1e9 / self->rate);
                /* round up: sleeping to the next millisecond beats spinning on 2 cores */
                wait_ms = (long)((due - now + 999999) / 1000000);
            }
        } else if (sending) {
            /* closed loop: keep `outstanding` unanswered */
            while (next < self->n_reqs && self->in_flight < self->outstanding)
                s_send(self, next++);
        }
        now = s_ns();
        sending = next < self->n_reqs && (!stop_send || now < stop_send);
        if (!sending && self->in_flight == 0)
            break;
        /* Nothing sent or answered for `timeout`: what is missing is reported unanswered. */
        uint64_t progress = self->t_last_answer > self->t_last_send ? self->t_last_answer
                                                                    : self->t_last_send;
        if (self->in_flight && now > progress + timeout)
            break;
        if (now > t0 + 3600ull * 1000000000u + timeout)
            break; /* a hard bound whatever happens */
        s_poll(self, wait_ms);
    }
    s_snapshot(self, true);
}

/* ---- report ---- */

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double s_pct(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t k = (size_t)(p * (double)n); /* nearest rank, upper */
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1e6;
}

static void s_json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if ((unsigned char)*s < 0x20)
            continue;
        fputc(*s, out);
    }
    fputc('"', out);
}

static void s_latency(FILE *out, const char *name, lg_t *self, bool grants)
{
    uint64_t *v = malloc((self->n_reqs + 1) * sizeof *v);
    size_t n = 0;
    double sum = 0;
    for (size_t i = 0; v && i < self->n_reqs; i++) {
        const lg_req_t *q = &self->reqs[i];
        if (q->sent_ns && q->done_ns && (q->code == CPN_OK) == grants &&
            q->done_ns >= q->sent_ns) {
            v[n++] = q->done_ns - q->sent_ns;
            sum += (double)(q->done_ns - q->sent_ns);
        }
    }
    if (v)
        qsort(v, n, sizeof *v, s_cmp_u64);
    fprintf(out,
            "  \"%s\": {\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
            "\"max\": %.3f, \"mean\": %.3f},\n",
            name, n, s_pct(v, n, 0.5), s_pct(v, n, 0.9), s_pct(v, n, 0.99), s_pct(v, n, 0.999),
            n ? (double)v[n - 1] / 1e6 : -1, n ? sum / (double)n / 1e6 : -1);
    free(v);
}

/* --answers: one line per request: id, outcome, latency in ms, reason. */
static int s_answers(const lg_t *self)
{
    FILE *f = fopen(self->answers, "w");
    if (!f)
        return CPN_E_IO;
    fprintf(f, "id\toutcome\tlatency_ms\treason\n");
    for (size_t i = 0; i < self->n_reqs; i++) {
        const lg_req_t *q = &self->reqs[i];
        if (!q->sent_ns)
            continue;
        fprintf(f, "%s\t%s\t%.3f\t%s\n", q->id,
                !q->done_ns ? "unanswered" : q->code == CPN_OK ? "lease" : cpn_errname(q->code),
                q->done_ns ? (double)(q->done_ns - q->sent_ns) / 1e6 : -1.0, q->reason);
    }
    return fclose(f) == 0 ? CPN_OK : CPN_E_IO;
}

static void s_report(lg_t *self, FILE *out)
{
    double window = self->t_last_answer > self->t_first_send
                        ? (double)(self->t_last_answer - self->t_first_send) / 1e9
                        : 0;
    double send_window = (double)(self->t_last_send - self->t_first_send) / 1e9;
    fprintf(out, "{\n  \"mode\": \"%s\", \"rate\": %.1f, \"outstanding\": %u, \"tenants\": %zu,\n",
            self->rate > 0 ? "open" : "closed", self->rate, self->rate > 0 ? 0 : self->outstanding,
            self->n_tenants);
    fprintf(out,
            "  \"requests\": %zu, \"sent\": %" PRIu64 ", \"send_failed\": %" PRIu64
            ", \"grants\": %" PRIu64 ", \"nacks\": %" PRIu64 ", \"unanswered\": %" PRIu64
            ", \"late\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"statuses\": %" PRIu64 ",\n",
            self->n_reqs, self->sent, self->send_failed, self->grants,
            self->answered - self->grants - self->send_failed, self->in_flight, self->late,
            self->dropped, self->statuses);
    fprintf(out,
            "  \"window_s\": %.4f, \"send_window_s\": %.4f, \"offered_per_s\": %.1f, "
            "\"leases_per_s\": %.1f, \"answers_per_s\": %.1f, \"max_send_lag_ms\": %.3f,\n",
            window, send_window, send_window > 0 ? (double)self->sent / send_window : 0,
            window > 0 ? (double)self->grants / window : 0,
            window > 0 ? (double)self->answered / window : 0, (double)self->max_lag_ns / 1e6);
    s_latency(out, "latency_ms", self, true);
    s_latency(out, "nack_latency_ms", self, false);
    fprintf(out, "  \"nack_reasons\": [");
    for (size_t i = 0; i < self->n_reasons; i++) {
        fprintf(out, "%s\n    {\"code\": \"%s\", \"n\": %" PRIu64 ", \"reason\": ",
                i ? "," : "", cpn_errname(self->reasons[i].code), self->reasons[i].n);
        s_json_str(out, self->reasons[i].reason);
        fputc('}', out);
    }
    fprintf(out, "],\n  \"machine_busy_cpu_s\": %.3f,\n  \"procs\": {",
            self->machine1 - self->machine0);
    for (size_t i = 0; i < self->n_watch; i++) {
        const lg_watch_t *w = &self->watch[i];
        fprintf(out, "%s\n    \"%s\": {\"pid\": %ld, \"cpu_s\": %.3f", i ? "," : "", w->name,
                w->pid, w->cpu1 - w->cpu0);
        if (w->have_sig)
            fprintf(out,
                    ", \"signs\": %" PRIu64 ", \"verifies\": %" PRIu64
                    ", \"sign_s\": %.6f, \"verify_s\": %.6f",
                    w->sig1.signs - w->sig0.signs, w->sig1.verifies - w->sig0.verifies,
                    s_scaled(w->sig1.sign_ns - w->sig0.sign_ns, w->sig1.signs - w->sig0.signs,
                             w->sig1.signs_timed - w->sig0.signs_timed),
                    s_scaled(w->sig1.verify_ns - w->sig0.verify_ns,
                             w->sig1.verifies - w->sig0.verifies,
                             w->sig1.verifies_timed - w->sig0.verifies_timed));
        fputc('}', out);
    }
    fprintf(out, "\n  }\n}\n");
}

/* ---- --sigbench: Ed25519 on this machine, one core ---- */

/* CPU time of this thread: on a loaded machine, wall time would count the waits. */
static uint64_t s_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int s_sigbench(double seconds, FILE *out)
{
    static const size_t sizes[] = {256, 1024};
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t msg[1024], sig[crypto_sign_BYTES];
    crypto_sign_keypair(pk, sk);
    randombytes_buf(msg, sizeof msg);
    fprintf(out, "{\"sigbench\": [");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        double per[2];
        for (int verify = 0; verify < 2; verify++) {
            uint64_t n = 0, t0 = s_cpu_ns(), until = s_ns() + (uint64_t)(seconds / 4 * 1e9);
            crypto_sign_detached(sig, NULL, msg, sizes[s], sk);
            do {
                for (int k = 0; k < 64; k++) {
                    if (verify) {
                        if (crypto_sign_verify_detached(sig, msg, sizes[s], pk) != 0)
                            return CPN_E_SIG;
                    } else {
                        crypto_sign_detached(sig, NULL, msg, sizes[s], sk);
                    }
                }
                n += 64;
            } while (s_ns() < until);
            per[verify] = (double)n / ((double)(s_cpu_ns() - t0) / 1e9);
        }
        fprintf(out, "%s{\"bytes\": %zu, \"sign_per_s\": %.0f, \"verify_per_s\": %.0f}",
                s ? ", " : "", sizes[s], per[0], per[1]);
    }
    fprintf(out, "]}\n");
    return CPN_OK;
}

/* ---- main ---- */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --broker EP --broker-key PUB --tenant KEY [--tenant KEY ...]\n"
            "               --requests FILE (--rate R [--duration S] | --outstanding N)\n"
            "               [--limit N] [--prefix P] [--lease S] [--timeout S]\n"
            "               [--watch NAME=PID ...] [--sigdir DIR] [--json FILE] [--answers FILE]\n"
            "       loadgen --sigbench SECONDS\n");
}

static int s_opts(lg_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},   {"broker-key", required_argument, NULL, 'k'},
        {"tenant", required_argument, NULL, 't'},   {"requests", required_argument, NULL, 'r'},
        {"rate", required_argument, NULL, 'R'},     {"outstanding", required_argument, NULL, 'N'},
        {"duration", required_argument, NULL, 'd'}, {"limit", required_argument, NULL, 'n'},
        {"prefix", required_argument, NULL, 'p'},   {"lease", required_argument, NULL, 'L'},
        {"timeout", required_argument, NULL, 'T'},  {"watch", required_argument, NULL, 'w'},
        {"sigdir", required_argument, NULL, 's'},   {"json", required_argument, NULL, 'j'},
        {"sigbench", required_argument, NULL, 'S'}, {"help", no_argument, NULL, 'h'},
        {"answers", required_argument, NULL, 'A'},
        {NULL, 0, NULL, 0}};
    int c;
    self->prefix = "";
    self->lease_s = 86400;
    self->timeout_s = 30;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': self->broker = optarg; break;
        case 'k': self->broker_key = optarg; break;
        case 't':
            if (self->n_tenants == LG_TENANTS_MAX)
                return CPN_E_INVAL;
            self->tenant_keys[self->n_tenants++] = optarg;
            break;
        case 'r': self->requests = optarg; break;
        case 'R': self->rate = atof(optarg); break;
        case 'N': self->outstanding = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'd': self->duration_s = atof(optarg); break;
        case 'n': self->limit = strtoul(optarg, NULL, 10); break;
        case 'p': self->prefix = optarg; break;
        case 'L': self->lease_s = strtoull(optarg, NULL, 10); break;
        case 'T': self->timeout_s = atof(optarg); break;
        case 's': self->sigdir = optarg; break;
        case 'j': self->json = optarg; break;
        case 'S': self->sigbench_s = atof(optarg); break;
        case 'A': self->answers = optarg; break;
        case 'w': {
            const char *eq = strchr(optarg, '=');
            if (!eq || self->n_watch == LG_WATCH_MAX || (size_t)(eq - optarg) >= 32)
                return CPN_E_INVAL;
            lg_watch_t *w = &self->watch[self->n_watch++];
            snprintf(w->name, sizeof w->name, "%.*s", (int)(eq - optarg), optarg);
            w->pid = atol(eq + 1);
            break;
        }
        case 'h': s_usage(stdout); exit(0);
        default: return CPN_E_INVAL;
        }
    }
    if (self->sigbench_s > 0)
        return self->sigbench_s <= 600 ? CPN_OK : CPN_E_INVAL;
    if (!self->broker || !self->broker_key || !self->n_tenants || !self->requests ||
        (self->rate > 0) == (self->outstanding > 0) || self->rate < 0 || self->rate > 1e6 ||
        self->timeout_s <= 0 || self->timeout_s > 3600 || self->duration_s > 3600 ||
        self->lease_s == 0)
        return CPN_E_INVAL;
    return CPN_OK;
}

int main(int argc, char **argv)
{
    lg_t self;
    FILE *out = stdout;
    int r;
    memset(&self, 0, sizeof self);
    if (s_opts(&self, argc, argv) != CPN_OK) {
        s_usage(stderr);
        return 2;
    }
    if (cpn_crypto_init() != CPN_OK)
        return 1;
    if (self.json && !(out = fopen(self.json, "w"))) {
        fprintf(stderr, "loadgen: %s: %s\n", self.json, strerror(errno));
        return 1;
    }
    if (self.sigbench_s > 0) {
        r = s_sigbench(self.sigbench_s, out);
        goto out;
    }
    cpn_log_set_level(CPN_LOG_ERROR);
    if ((r = cpn_pk_load(self.broker_key, self.broker_pk)) != CPN_OK ||
        (r = s_load_requests(&self)) != CPN_OK || (r = s_index_build(&self)) != CPN_OK)
        goto out;
    if (!(self.zctx = zmq_ctx_new())) {
        r = CPN_E_IO;
        goto out;
    }
    for (size_t t = 0; t < self.n_tenants; t++) {
        cpn_curve_t curve = {0}; /* the benchmark's broker runs plain TCP on loopback */
        if ((r = cpn_identity_load(self.tenant_keys[t], &self.ids[t])) != CPN_OK) {
            fprintf(stderr, "loadgen: %s: %s\n", self.tenant_keys[t], cpn_strerror(r));
            goto out;
        }
        self.signers[t].id = self.ids[t];
        if ((r = cpn_sock_dealer(self.zctx, self.broker, cpn_limits_default.max_frame * 16,
                                 &curve, &self.socks[t])) != CPN_OK)
            goto out;
    }
    {
        lg_watch_t *me = self.n_watch < LG_WATCH_MAX ? &self.watch[self.n_watch++] : NULL;
        if (me) {
            snprintf(me->name, sizeof me->name, "loadgen");
            me->pid = (long)getpid();
        }
    }
    if ((r = s_warm_up(&self)) != CPN_OK)
        goto out;
    s_run(&self);
    s_report(&self, out);
    r = self.answers ? s_answers(&self) : CPN_OK;
out:
    for (size_t t = 0; t < self.n_tenants; t++) {
        if (self.socks[t])
            zmq_close(self.socks[t]);
        cpn_identity_destroy(&self.ids[t]);
    }
    if (self.zctx)
        zmq_ctx_term(self.zctx);
    free(self.reqs);
    free(self.index);
    if (out != stdout)
        fclose(out);
    if (r != CPN_OK)
        fprintf(stderr, "loadgen: %s\n", cpn_strerror(r));
    return r == CPN_OK ? 0 : 1;
}
