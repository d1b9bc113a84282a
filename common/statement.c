/* statement.c - settlement statement lines, checks and reconciliation (statement.h). */
#include "statement.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"

static void s_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void s_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t s_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

void cpn_stmt_line_pack(const cpn_stmt_line_t *l, uint8_t out[CPN_STMT_LINE_LEN])
{
    memset(out, 0, CPN_STMT_LINE_LEN);
    memcpy(out, l->peer, CPN_PK_LEN);
    memcpy(out + 32, l->lease_id, strnlen(l->lease_id, CPN_STMT_ID_MAX - 1));
    memcpy(out + 64, l->tenant, CPN_PK_LEN);
    out[96] = l->dir;
    s_be32(out + 97, l->n_first);
    s_be32(out + 101, l->n_last);
    s_be64(out + 105, l->amount);
    memcpy(out + 113, l->last, CPN_PK_LEN);
}

int cpn_stmt_line_unpack(const uint8_t in[CPN_STMT_LINE_LEN], cpn_stmt_line_t *l)
{
    memset(l, 0, sizeof *l);
    memcpy(l->peer, in, CPN_PK_LEN);
    size_t len = 0;
    while (len < CPN_STMT_ID_MAX && in[32 + len])
        len++;
    if (len == 0 || len >= CPN_STMT_ID_MAX)
        return CPN_E_SCHEMA;
    for (size_t i = 0; i < CPN_STMT_ID_MAX; i++) {
        uint8_t c = in[32 + i];
        if (i < len ? (c <= 0x20 || c >= 0x7f) : c != 0)
            return CPN_E_SCHEMA; /* printable, no spaces; zeros after it */
    }
    memcpy(l->lease_id, in + 32, len);
    memcpy(l->tenant, in + 64, CPN_PK_LEN);
    l->dir = in[96];
    l->n_first = (uint32_t)s_get(in + 97, 4);
    l->n_last = (uint32_t)s_get(in + 101, 4);
    l->amount = s_get(in + 105, 8);
    memcpy(l->last, in + 113, CPN_PK_LEN);
    if (l->dir > CPN_STMT_DUE || l->n_first == 0 || l->n_last < l->n_first)
        return CPN_E_SCHEMA;
    return CPN_OK;
}

int cpn_stmt_line_cmp(const cpn_stmt_line_t *a, const cpn_stmt_line_t *b)
{
    int c = memcmp(a->peer, b->peer, CPN_PK_LEN);
    return c ? c : memcmp(a->lease_id, b->lease_id, CPN_STMT_ID_MAX);
}

static int s_cmp(const void *a, const void *b)
{
    return cpn_stmt_line_cmp(a, b);
}

/* Add v to *sum; false if it would pass 64 bits. */
static bool s_add(uint64_t *sum, uint64_t v)
{
    if (v > UINT64_MAX - *sum)
        return false;
    *sum += v;
    return true;
}

int cpn_stmt_fill(cpn_statement_t *st, cpn_stmt_line_t *lines, size_t n, uint8_t **buf)
{
    *buf = NULL;
    if (n > CPN_STMT_LINES_MAX)
        return CPN_E_INVAL;
    if (n) /* lines may be NULL when there are none: qsort's pointer must not be */
        qsort(lines, n, sizeof *lines, s_cmp);
    uint8_t *b = malloc(n ? n * CPN_STMT_LINE_LEN : 1);
    if (!b)
        return CPN_E_NOMEM;
    st->owe = st->due = 0;
    for (size_t i = 0; i < n; i++) {
        cpn_stmt_line_t back;
        cpn_stmt_line_pack(&lines[i], b + i * CPN_STMT_LINE_LEN);
        if ((i && cpn_stmt_line_cmp(&lines[i - 1], &lines[i]) == 0) ||
            cpn_stmt_line_unpack(b + i * CPN_STMT_LINE_LEN, &back) != CPN_OK ||
            !s_add(lines[i].dir == CPN_STMT_OWE ? &st->owe : &st->due, lines[i].amount)) {
            free(b);
            return CPN_E_INVAL;
        }
    }
    st->lines.ptr = b;
    st->lines.len = n * CPN_STMT_LINE_LEN;
    *buf = b;
    return CPN_OK;
}

#define S_WHY(code, ...)                                                                           \
    do {                                                                                           \
        snprintf(why, CPN_REASON_MAX, __VA_ARGS__);                                                \
        return (code);                                                                             \
    } while (0)

int cpn_stmt_check(const cpn_statement_t *st, char why[CPN_REASON_MAX])
{
    uint64_t from = 0, to = 0, owe = 0, due = 0;
    if (cpn_usage_month_parse(st->period, &from, &to) != CPN_OK)
        S_WHY(CPN_E_SCHEMA, "period \"%s\" is not YYYY-MM", st->period);
    if (from != st->from_ms || to != st->to_ms)
        S_WHY(CPN_E_CHAIN, "from_ms/to_ms are not the bounds of %s", st->period);
    if (st->lines.len % CPN_STMT_LINE_LEN)
        S_WHY(CPN_E_SCHEMA, "lines hold %zu bytes, not a multiple of %d", st->lines.len,
              CPN_STMT_LINE_LEN);
    size_t n = st->lines.len / CPN_STMT_LINE_LEN;
    if (n > CPN_STMT_LINES_MAX)
        S_WHY(CPN_E_SCHEMA, "%zu lines, at most %d", n, CPN_STMT_LINES_MAX);
    cpn_stmt_line_t prev, l;
    for (size_t i = 0; i < n; i++) {
        if (cpn_stmt_line_unpack(st->lines.ptr + i * CPN_STMT_LINE_LEN, &l) != CPN_OK)
            S_WHY(CPN_E_SCHEMA, "line %zu is malformed", i);
        if (i && cpn_stmt_line_cmp(&prev, &l) >= 0)
            S_WHY(CPN_E_SCHEMA, "line %zu (%s) is out of order or repeated", i, l.lease_id);
        if (!s_add(l.dir == CPN_STMT_OWE ? &owe : &due, l.amount))
            S_WHY(CPN_E_CHAIN, "the amounts pass 64 bits");
        prev = l;
    }
    if (owe != st->owe || due != st->due)
        S_WHY(CPN_E_CHAIN,
              "owe %" PRIu64 " / due %" PRIu64 " are not the lines' sums %" PRIu64 " / %" PRIu64,
              st->owe, st->due, owe, due);
    return CPN_OK;
}

int cpn_stmt_check_part(const cpn_statement_t *st, char why[CPN_REASON_MAX])
{
    if (st->part < 1 || st->part > st->parts || st->parts > CPN_STMT_PARTS_MAX)
        S_WHY(CPN_E_SCHEMA, "part %" PRIu32 " of %" PRIu32 " (at most %d parts)", st->part,
              st->parts, CPN_STMT_PARTS_MAX);
    if (st->lines.len > (size_t)CPN_STMT_PART_LINES * CPN_STMT_LINE_LEN)
        S_WHY(CPN_E_SCHEMA, "part %" PRIu32 " holds more than %d lines", st->part,
              CPN_STMT_PART_LINES);
    return cpn_stmt_check(st, why);
}

int cpn_stmt_join(const cpn_statement_t *parts, size_t n, cpn_statement_t *out, uint8_t **buf,
                  char why[CPN_REASON_MAX])
{
    *buf = NULL;
    if (n == 0 || n > CPN_STMT_PARTS_MAX)
        S_WHY(CPN_E_SCHEMA, "%zu parts (1 to %d)", n, CPN_STMT_PARTS_MAX);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const cpn_statement_t *p = &parts[i];
        int r = cpn_stmt_check_part(p, why);
        if (r != CPN_OK)
            return r;
        if (p->part != i + 1 || p->parts != n)
            S_WHY(CPN_E_SCHEMA, "frame %zu is part %" PRIu32 " of %" PRIu32 ", not %zu of %zu", i,
                  p->part, p->parts, i + 1, n);
        if (memcmp(p->with, parts[0].with, CPN_PK_LEN) || strcmp(p->period, parts[0].period))
            S_WHY(CPN_E_CHAIN, "part %" PRIu32 " is of another pair or period", p->part);
        total += p->lines.len;
    }
    uint8_t *b = malloc(total ? total : 1);
    if (!b)
        return CPN_E_NOMEM;
    *out = parts[0];
    out->owe = out->due = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].lines.len) /* an empty part may decode with a NULL pointer */
            memcpy(b + at, parts[i].lines.ptr, parts[i].lines.len);
        at += parts[i].lines.len;
        if (!s_add(&out->owe, parts[i].owe) || !s_add(&out->due, parts[i].due)) {
            free(b);
            S_WHY(CPN_E_CHAIN, "the parts' totals pass 64 bits");
        }
    }
    out->part = out->parts = 1;
    out->lines.ptr = b;
    out->lines.len = total;
    int r = cpn_stmt_check(out, why);
    if (r != CPN_OK)
        free(b);
    else
        *buf = b;
    return r;
}

/* Record one difference (counted even past cap). */
static void s_diff(cpn_stmt_diff_t *diffs, size_t cap, size_t *n, const cpn_stmt_line_t *key,
                   const char *what, uint64_t ours, uint64_t theirs)
{
    if (*n < cap) {
        cpn_stmt_diff_t *d = &diffs[*n];
        memcpy(d->peer, key->peer, CPN_PK_LEN);
        memcpy(d->lease_id, key->lease_id, CPN_STMT_ID_MAX);
        snprintf(d->what, sizeof d->what, "%s", what);
        d->ours = ours;
        d->theirs = theirs;
    }
    (*n)++;
}

/* The first field on which a lease's two lines disagree, into what; false if none. */
static bool s_differ(const cpn_stmt_line_t *o, const cpn_stmt_line_t *t, char what[96])
{
    if (o->dir == t->dir)
        snprintf(what, 96, "direction: both say %s", o->dir == CPN_STMT_OWE ? "owe" : "due");
    else if (memcmp(o->tenant, t->tenant, CPN_PK_LEN))
        snprintf(what, 96, "tenant");
    else if (o->n_first != t->n_first || o->n_last != t->n_last)
        snprintf(what, 96, "records %" PRIu32 "..%" PRIu32 " / %" PRIu32 "..%" PRIu32, o->n_first,
                 o->n_last, t->n_first, t->n_last);
    else if (o->amount != t->amount)
        snprintf(what, 96, "amount");
    else if (memcmp(o->last, t->last, CPN_PK_LEN))
        snprintf(what, 96, "record %" PRIu32 " differs (hash)", o->n_last);
    else
        return false;
    return true;
}

int cpn_stmt_reconcile(const uint8_t us[CPN_PK_LEN], const cpn_statement_t *ours,
                       const uint8_t them[CPN_PK_LEN], const cpn_statement_t *theirs,
                       cpn_stmt_diff_t *diffs, size_t cap, size_t *n_diffs,
                       char why[CPN_REASON_MAX])
{
    *n_diffs = 0;
    if (memcmp(ours->with, them, CPN_PK_LEN) || memcmp(theirs->with, us, CPN_PK_LEN))
        S_WHY(CPN_E_CHAIN, "the statements are not of one pair of brokers");
    if (strcmp(ours->period, theirs->period) != 0)
        S_WHY(CPN_E_CHAIN, "periods differ: %s / %s", ours->period, theirs->period);
    size_t no = ours->lines.len / CPN_STMT_LINE_LEN, nt = theirs->lines.len / CPN_STMT_LINE_LEN;
    size_t i = 0, j = 0;
    cpn_stmt_line_t o, t;
    char what[96];
    while (i < no || j < nt) {
        bool has_o =
            i < no && cpn_stmt_line_unpack(ours->lines.ptr + i * CPN_STMT_LINE_LEN, &o) == CPN_OK;
        bool has_t =
            j < nt && cpn_stmt_line_unpack(theirs->lines.ptr + j * CPN_STMT_LINE_LEN, &t) == CPN_OK;
        if ((i < no && !has_o) || (j < nt && !has_t))
            S_WHY(CPN_E_SCHEMA, "a statement was not checked (malformed line)");
        int c = !has_o ? 1 : !has_t ? -1 : cpn_stmt_line_cmp(&o, &t);
        if (c < 0) {
            s_diff(diffs, cap, n_diffs, &o, "only in ours", o.amount, 0);
            i++;
        } else if (c > 0) {
            s_diff(diffs, cap, n_diffs, &t, "only in theirs", 0, t.amount);
            j++;
        } else {
            if (s_differ(&o, &t, what))
                s_diff(diffs, cap, n_diffs, &o, what, o.amount, t.amount);
            i++;
            j++;
        }
    }
    if (*n_diffs)
        S_WHY(CPN_E_CHAIN, "%zu lease%s differ", *n_diffs, *n_diffs == 1 ? "" : "s");
    /* Every line equal and mirrored, and each statement's totals are its lines' sums. */
    if (ours->owe != theirs->due || ours->due != theirs->owe)
        S_WHY(CPN_E_CHAIN, "totals differ though the lines agree (statement not checked)");
    return CPN_OK;
}
