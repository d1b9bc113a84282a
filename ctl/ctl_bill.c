/* ctl_bill.c - load, check, sum and print a bill file (see ctl_bill.h). */
#include "ctl_bill.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "envelope.h"
#include "msg_typed.h"
#include "usage.h"

/* One checked record: its body, its frame's hash and who signed it. */
typedef struct {
    cpn_usage_t rec;
    uint8_t hash[CPN_USAGE_HASH_LEN];
    uint8_t signer[CPN_PK_LEN];
    size_t index; /* frame number in the file, for messages */
} s_rec_t;

/* A lease's terms, from its GRANT or LEASE in the file. */
typedef struct {
    char lease_id[CPN_NAME_MAX];
    uint8_t peer[CPN_PK_LEN], tenant[CPN_PK_LEN];
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t price, start_ms;
} s_terms_t;

/* One lease of the bill, after its chain checked. */
typedef struct {
    const cpn_usage_t *last;
    size_t records;
    uint64_t amount; /* of the records selected by the period */
    uint64_t from_ms, to_ms;
} s_line_t;

struct ctl_bill {
    s_rec_t *recs;
    size_t n_recs, cap_recs;
    s_terms_t *terms;
    size_t n_terms, cap_terms;
    s_line_t *lines;
    size_t n_lines;
    uint64_t total;
    size_t open;
};

static int s_grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return CPN_OK;
    size_t c = *cap ? *cap * 2 : 64;
    void *q = c <= SIZE_MAX / size ? realloc(*p, c * size) : NULL;
    if (!q)
        return CPN_E_NOMEM;
    *p = q;
    *cap = c;
    return CPN_OK;
}

static int s_fail(char why[CPN_REASON_MAX], size_t index, int r, const char *what)
{
    snprintf(why, CPN_REASON_MAX, "frame %zu: %.200s", index, what);
    return r;
}

static int s_add_usage(ctl_bill_t *self, const cpn_env_t *env, size_t index,
                       char why[CPN_REASON_MAX])
{
    int r;
    if ((r = s_grow((void **)&self->recs, &self->cap_recs, self->n_recs, sizeof *self->recs)))
        return r;
    s_rec_t *x = &self->recs[self->n_recs];
    if ((r = cpn_usage_decode(env, NULL, &x->rec)) != CPN_OK)
        return s_fail(why, index, r, "USAGE body does not decode");
    if ((r = cpn_usage_check(&x->rec, why)) != CPN_OK) {
        char w[CPN_REASON_MAX];
        snprintf(w, sizeof w, "%s", why);
        return s_fail(why, index, r, w);
    }
    cpn_usage_hash(env->frame, env->frame_len, x->hash);
    memcpy(x->signer, env->from, CPN_PK_LEN);
    x->index = index;
    self->n_recs++;
    return CPN_OK;
}

static int s_add_lease(ctl_bill_t *self, const uint8_t *frame, size_t len, size_t index,
                       char why[CPN_REASON_MAX])
{
    int r;
    cpn_chain_t *ch = malloc(sizeof *ch);
    if (!ch)
        return CPN_E_NOMEM;
    if ((r = cpn_chain_open(frame, len, CPN_MSG_NONE, NULL, ch)) != CPN_OK || !ch->has_lease) {
        r = r ? r : CPN_E_WRONG_TYPE;
        s_fail(why, index, r, ch->has_lease || ch->why[0] ? ch->why : "not a lease");
        goto out;
    }
    if ((r = s_grow((void **)&self->terms, &self->cap_terms, self->n_terms, sizeof *self->terms)))
        goto out;
    s_terms_t *t = &self->terms[self->n_terms++];
    memcpy(t->lease_id, ch->lease.lease_id, sizeof t->lease_id);
    memcpy(t->peer, ch->claim.peer, CPN_PK_LEN);
    memcpy(t->tenant, ch->req_env.from, CPN_PK_LEN);
    memcpy(t->package, ch->lease.package, sizeof t->package);
    t->units = ch->lease.units;
    t->price = ch->lease.price;
    t->start_ms = ch->lease.start_ms;
out:
    free(ch);
    return r;
}

/* Read every frame: signature first, then by type. */
static int s_read(ctl_bill_t *self, const uint8_t *buf, size_t len, char why[CPN_REASON_MAX])
{
    size_t off = 0, index = 0;
    int r;
    while (off < len) {
        if (index >= CTL_BILL_FRAMES_MAX)
            return s_fail(why, index, CPN_E_TOO_BIG, "more frames than a bill may hold");
        if (len - off < 4)
            return s_fail(why, index, CPN_E_MSGPACK, "truncated length");
        size_t n = (size_t)buf[off] << 24 | (size_t)buf[off + 1] << 16 | (size_t)buf[off + 2] << 8 |
                   buf[off + 3];
        off += 4;
        if (n > len - off)
            return s_fail(why, index, CPN_E_MSGPACK, "truncated frame");
        cpn_env_t env;
        if ((r = cpn_env_open(buf + off, n, NULL, &env)) != CPN_OK)
            return s_fail(why, index, r, cpn_strerror(r));
        if (env.type == CPN_MSG_USAGE)
            r = s_add_usage(self, &env, index, why);
        else if (env.type == CPN_MSG_GRANT || env.type == CPN_MSG_LEASE)
            r = s_add_lease(self, buf + off, n, index, why);
        else
            r = s_fail(why, index, CPN_E_WRONG_TYPE, "neither USAGE nor GRANT nor LEASE");
        if (r != CPN_OK)
            return r;
        off += n;
        index++;
    }
    return CPN_OK;
}

static int s_cmp_rec(const void *a, const void *b)
{
    const s_rec_t *x = a, *y = b;
    int c = strcmp(x->rec.lease_id, y->rec.lease_id);
    if (c)
        return c;
    return x->rec.n < y->rec.n ? -1 : x->rec.n > y->rec.n;
}

static const s_terms_t *s_find_terms(const ctl_bill_t *self, const char *lease_id)
{
    for (size_t i = 0; i < self->n_terms; i++)
        if (strcmp(self->terms[i].lease_id, lease_id) == 0)
            return &self->terms[i];
    return NULL;
}

/* The lease's terms against its first record and signer. */
static int s_check_terms(const s_terms_t *t, const s_rec_t *x, char why[CPN_REASON_MAX])
{
    const cpn_usage_t *u = &x->rec;
    if (memcmp(t->peer, x->signer, CPN_PK_LEN) != 0)
        return s_fail(why, x->index, CPN_E_UNTRUSTED,
                      "record not signed by the peer that granted the lease");
    if (memcmp(t->tenant, u->tenant, CPN_PK_LEN) != 0 || strcmp(t->package, u->package) != 0 ||
        t->units != u->units || t->price != u->price || t->start_ms != u->start_ms)
        return s_fail(why, x->index, CPN_E_CHAIN,
                      "record's tenant, package, units, price or start differ from the lease's");
    return CPN_OK;
}

/* Check the chain of recs[lo, hi) (one lease, sorted by n) and sum it into a line. */
static int s_check_lease(ctl_bill_t *self, size_t lo, size_t hi, uint64_t from_ms, uint64_t to_ms,
                         char why[CPN_REASON_MAX])
{
    s_line_t *line = &self->lines[self->n_lines++];
    const s_terms_t *t = s_find_terms(self, self->recs[lo].rec.lease_id);
    char w[CPN_REASON_MAX];
    int r;
    memset(line, 0, sizeof *line);
    if (t && (r = s_check_terms(t, &self->recs[lo], why)) != CPN_OK)
        return r;
    for (size_t i = lo; i < hi; i++) {
        const s_rec_t *x = &self->recs[i], *p = i > lo ? &self->recs[i - 1] : NULL;
        if (p && memcmp(p->signer, x->signer, CPN_PK_LEN) != 0)
            return s_fail(why, x->index, CPN_E_UNTRUSTED,
                          "records of one lease signed by different keys");
        if ((r = cpn_usage_check_link(p ? &p->rec : NULL, p ? p->hash : NULL, &x->rec, w)))
            return s_fail(why, x->index, r, w);
        if (x->rec.to_ms > from_ms && (!to_ms || x->rec.to_ms <= to_ms)) {
            if (!line->records || x->rec.from_ms < line->from_ms)
                line->from_ms = x->rec.from_ms;
            line->to_ms = x->rec.to_ms;
            line->amount += x->rec.amount;
            line->records++;
        }
        line->last = &x->rec;
    }
    self->total += line->amount;
    self->open += !line->last->final;
    return CPN_OK;
}

int ctl_bill_load(const uint8_t *buf, size_t len, uint64_t from_ms, uint64_t to_ms,
                  ctl_bill_t **out, char why[CPN_REASON_MAX])
{
    ctl_bill_t *self = calloc(1, sizeof *self);
    int r = self ? CPN_OK : CPN_E_NOMEM;
    snprintf(why, CPN_REASON_MAX, "%s", "valid");
    if (r == CPN_OK)
        r = s_read(self, buf, len, why);
    if (r == CPN_OK && self->n_recs) {
        qsort(self->recs, self->n_recs, sizeof *self->recs, s_cmp_rec);
        if (!(self->lines = calloc(self->n_recs, sizeof *self->lines)))
            r = CPN_E_NOMEM;
    }
    for (size_t lo = 0, hi; r == CPN_OK && lo < self->n_recs; lo = hi) {
        for (hi = lo + 1; hi < self->n_recs &&
                          strcmp(self->recs[hi].rec.lease_id, self->recs[lo].rec.lease_id) == 0;
             hi++)
            ;
        r = s_check_lease(self, lo, hi, from_ms, to_ms, why);
    }
    if (r != CPN_OK)
        ctl_bill_destroy(&self);
    *out = self;
    return r;
}

void ctl_bill_destroy(ctl_bill_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->recs);
    free((*self_p)->terms);
    free((*self_p)->lines);
    free(*self_p);
    *self_p = NULL;
}

uint64_t ctl_bill_total(const ctl_bill_t *self)
{
    return self->total;
}
size_t ctl_bill_leases(const ctl_bill_t *self)
{
    return self->n_lines;
}
size_t ctl_bill_records(const ctl_bill_t *self)
{
    return self->n_recs;
}
size_t ctl_bill_open_leases(const ctl_bill_t *self)
{
    return self->open;
}

/* "12.345": thousandths as a decimal, exactly. */
static void s_money(uint64_t v, char out[32])
{
    snprintf(out, 32, "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
}

/* A string from a signed record as a JSON string: escaped whatever its bytes. */
static void s_json_str(const char *v, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* A string as a CSV field (RFC 4180): quoted, quotes doubled, when it holds , " or a line. */
static void s_csv_str(const char *v, FILE *out)
{
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

/* Per-package sums: a small linear table (a bill has few packages). */
typedef struct {
    const char *package;
    uint64_t amount;
    size_t leases;
} s_pkg_t;

static size_t s_packages(const ctl_bill_t *self, s_pkg_t *pk)
{
    size_t n = 0;
    for (size_t i = 0; i < self->n_lines; i++) {
        const s_line_t *l = &self->lines[i];
        size_t j = 0;
        while (j < n && strcmp(pk[j].package, l->last->package) != 0)
            j++;
        if (j == n)
            pk[n++] = (s_pkg_t){l->last->package, 0, 0};
        pk[j].amount += l->amount;
        pk[j].leases++;
    }
    return n;
}

static void s_print_line(const s_line_t *l, ctl_bill_fmt_t fmt, bool first, FILE *out)
{
    const cpn_usage_t *u = l->last;
    char m[32];
    s_money(l->amount, m);
    if (fmt == CTL_BILL_CSV) {
        s_csv_str(u->lease_id, out);
        fputc(',', out);
        s_csv_str(u->package, out);
        fprintf(out, ",%u,%" PRIu64 ",%zu,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s,%s\n", u->units,
                u->price, l->records, l->from_ms, l->to_ms, l->amount, m,
                u->final ? "final" : "open");
    } else if (fmt == CTL_BILL_JSON) {
        fprintf(out, "%s\n    {\"lease\": ", first ? "" : ",");
        s_json_str(u->lease_id, out);
        fprintf(out, ", \"package\": ");
        s_json_str(u->package, out);
        fprintf(out,
                ", \"units\": %u, \"price\": %" PRIu64 ", \"records\": %zu, \"from_ms\": "
                "%" PRIu64 ", \"to_ms\": %" PRIu64 ", \"amount\": %" PRIu64 ", \"final\": %s}",
                u->units, u->price, l->records, l->from_ms, l->to_ms, l->amount,
                u->final ? "true" : "false");
    } else
        fprintf(out, "%-18s %-24s %5u %8zu %14s %s\n", u->lease_id, u->package, u->units,
                l->records, m, u->final ? "" : "(open)");
}

void ctl_bill_print(const ctl_bill_t *self, ctl_bill_fmt_t fmt, FILE *out)
{
    s_pkg_t *pk = calloc(self->n_lines ? self->n_lines : 1, sizeof *pk);
    size_t n_pk = pk ? s_packages(self, pk) : 0;
    char m[32];
    if (fmt == CTL_BILL_CSV)
        fprintf(out, "lease,package,units,price,records,from_ms,to_ms,amount_thousandths,"
                     "amount,state\n");
    else if (fmt == CTL_BILL_JSON)
        fprintf(out, "{\"leases\": [");
    else
        fprintf(out, "%-18s %-24s %5s %8s %14s\n", "lease", "package", "units", "records",
                "amount");
    for (size_t i = 0; i < self->n_lines; i++)
        s_print_line(&self->lines[i], fmt, i == 0, out);
    if (fmt == CTL_BILL_JSON) {
        fprintf(out, "],\n  \"packages\": [");
        for (size_t j = 0; j < n_pk; j++) {
            fprintf(out, "%s{\"package\": ", j ? ", " : "");
            s_json_str(pk[j].package, out);
            fprintf(out, ", \"leases\": %zu, \"amount\": %" PRIu64 "}", pk[j].leases, pk[j].amount);
        }
        fprintf(out, "],\n  \"records\": %zu, \"open_leases\": %zu, \"total\": %" PRIu64 "}\n",
                self->n_recs, self->open, self->total);
    } else if (fmt == CTL_BILL_TEXT) {
        for (size_t j = 0; j < n_pk; j++) {
            s_money(pk[j].amount, m);
            fprintf(out, "package %-24s %6zu leases %14s\n", pk[j].package, pk[j].leases, m);
        }
        s_money(self->total, m);
        fprintf(out, "total %s (%zu leases, %zu records, all verified)\n", m, self->n_lines,
                self->n_recs);
    }
    free(pk);
}

int ctl_bill_append(uint8_t **buf, size_t *len, const uint8_t *frame, size_t frame_len)
{
    if (frame_len > UINT32_MAX || *len > SIZE_MAX - 4 - frame_len)
        return CPN_E_TOO_BIG;
    uint8_t *b = realloc(*buf, *len + 4 + frame_len);
    if (!b)
        return CPN_E_NOMEM;
    uint8_t *p = b + *len;
    p[0] = (uint8_t)(frame_len >> 24);
    p[1] = (uint8_t)(frame_len >> 16);
    p[2] = (uint8_t)(frame_len >> 8);
    p[3] = (uint8_t)frame_len;
    memcpy(p + 4, frame, frame_len);
    *buf = b;
    *len += 4 + frame_len;
    return CPN_OK;
}

int ctl_bill_verify_record(const uint8_t *frame, size_t len, FILE *out, char why[CPN_REASON_MAX])
{
    cpn_env_t env;
    cpn_usage_t u;
    int r = cpn_env_open(frame, len, NULL, &env);
    snprintf(why, CPN_REASON_MAX, "%s", r ? cpn_strerror(r) : "valid");
    if (r == CPN_OK && (r = cpn_usage_decode(&env, NULL, &u)) != CPN_OK)
        snprintf(why, CPN_REASON_MAX, "USAGE body: %s", cpn_strerror(r));
    if (r == CPN_OK && (r = cpn_usage_check(&u, why)) == CPN_OK)
        snprintf(why, CPN_REASON_MAX, "%s", "valid");
    if (r != CPN_OK || !out)
        return r;
    char kid[CPN_KID_LEN], tid[CPN_KID_LEN];
    cpn_key_id(env.from, kid);
    cpn_key_id(u.tenant, tid);
    fprintf(out, "{\"type\": \"USAGE\", \"peer\": \"%s\", \"tenant\": \"%s\", \"lease\": ", kid,
            tid);
    s_json_str(u.lease_id, out);
    fprintf(out, ", \"n\": %u, \"package\": ", u.n);
    s_json_str(u.package, out);
    fprintf(out,
            ", \"units\": %u, \"price\": %" PRIu64 ", \"start_ms\": %" PRIu64
            ", \"from_ms\": %" PRIu64 ", \"to_ms\": %" PRIu64 ", \"unit_ms\": %" PRIu64
            ", \"amount\": %" PRIu64 ", \"total\": %" PRIu64 ", \"final\": %s}\n",
            u.units, u.price, u.start_ms, u.from_ms, u.to_ms, u.unit_ms, u.amount, u.total,
            u.final ? "true" : "false");
    return CPN_OK;
}
