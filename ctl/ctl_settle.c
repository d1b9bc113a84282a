/* ctl_settle.c - cpnctl settle: make, sign and reconcile settlement statements (ctl_settle.h). */
#include "ctl_settle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "identity.h"
#include "ledger.h"
#include "msg.h"
#include "msg_typed.h"
#include "policy.h"
#include "settle.h"
#include "statement.h"
#include "usage.h"
#include "yconf.h"

#define S_REFUSED 1
#define S_USAGE 2

typedef struct {
    const char *policy, *with, *period, *out, *theirs;
    bool json;
    policy_t *pol;
    cpn_identity_t *id;
    uint8_t them[CPN_PK_LEN];
    char them_name[CPN_NAME_MAX];
    uint64_t from_ms, to_ms;
} s_args_t;

static bool s_parse(int argc, char **argv, s_args_t *a)
{
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        const char **slot = strcmp(k, "--policy") == 0   ? &a->policy
                            : strcmp(k, "--with") == 0   ? &a->with
                            : strcmp(k, "--period") == 0 ? &a->period
                            : strcmp(k, "--out") == 0    ? &a->out
                            : strcmp(k, "--theirs") == 0 ? &a->theirs
                                                         : NULL;
        if (!slot)
            return false;
        *slot = v;
    }
    return argc % 2 == 0 && a->policy && a->with && a->period;
}

/* The policy, our key, the other broker and the period; messages on stderr. */
static int s_load(s_args_t *a)
{
    yconf_t *doc = NULL;
    int r = policy_load(a->policy, &a->pol, &doc);
    if (r != CPN_OK) {
        if (doc)
            yconf_print_errors(doc, stderr);
        fprintf(stderr, "cpnctl: %s: %s\n", a->policy, cpn_strerror(r));
        yconf_destroy(&doc);
        return r;
    }
    yconf_destroy(&doc);
    const policy_t *p = a->pol;
    for (size_t i = 0; i < p->federation.n_members; i++)
        if (strcmp(p->federation.members[i].name, a->with) == 0) {
            memcpy(a->them, p->federation.members[i].key, CPN_PK_LEN);
            snprintf(a->them_name, sizeof a->them_name, "%s", a->with);
        }
    if (!a->them_name[0]) {
        if (cpn_pk_load(a->with, a->them) != CPN_OK) {
            fprintf(stderr, "cpnctl: --with %s: neither a member of %s nor a key\n", a->with,
                    a->policy);
            return CPN_E_INVAL;
        }
        cpn_key_id(a->them, a->them_name);
    }
    if (cpn_usage_month_parse(a->period, &a->from_ms, &a->to_ms) != CPN_OK) {
        fprintf(stderr, "cpnctl: --period %s: expected YYYY-MM (1970 on)\n", a->period);
        return CPN_E_INVAL;
    }
    if ((r = cpn_identity_load(p->broker.key_path, &a->id)) != CPN_OK)
        fprintf(stderr, "cpnctl: %s: %s\n", p->broker.key_path, cpn_strerror(r));
    return r;
}

/* Append one signed part to the file in *file (4-byte big-endian length, then the frame). */
static int s_add_part(const s_args_t *a, cpn_statement_t *part, uint8_t **file, size_t *flen)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    /* A statement is a file, never sent on a link: its seq is 1 and no replay guard sees it
     * (docs/PROTOCOL.md "STATEMENT"). */
    int r = cpn_msg_build(a->id, CPN_MSG_STATEMENT, 1, cpn_now_ms(), part, &frame, &len);
    uint8_t *g = r == CPN_OK ? realloc(*file, *flen + 4 + len) : NULL;
    if (r == CPN_OK && !g)
        r = CPN_E_NOMEM;
    if (r == CPN_OK) {
        for (int k = 0; k < 4; k++)
            g[*flen + (size_t)k] = (uint8_t)(len >> (24 - 8 * k));
        memcpy(g + *flen + 4, frame, len);
        *file = g;
        *flen += 4 + len;
    }
    free(frame);
    return r;
}

/* Our statement: *st (the whole, its lines in *lines_buf) and the signed parts in *file. */
static int s_make(s_args_t *a, cpn_statement_t *st, uint8_t **lines_buf, uint8_t **file,
                  size_t *flen, size_t *n_lines)
{
    ledger_t *lg = NULL;
    cpn_stmt_line_t *lines = NULL;
    size_t unknown = 0;
    int r = ledger_open(a->pol->broker.ledger_path, &lg);
    if (r == CPN_OK)
        r = settle_lines(lg, cpn_identity_pk(a->id), a->them, a->from_ms, a->to_ms, &lines, n_lines,
                         &unknown);
    ledger_destroy(&lg);
    memset(st, 0, sizeof *st);
    memcpy(st->with, a->them, CPN_PK_LEN);
    snprintf(st->period, sizeof st->period, "%s", a->period);
    st->from_ms = a->from_ms;
    st->to_ms = a->to_ms;
    st->part = st->parts = 1;
    if (r == CPN_OK)
        r = cpn_stmt_fill(st, lines, *n_lines, lines_buf); /* sorts lines */
    size_t parts = *n_lines ? (*n_lines + CPN_STMT_PART_LINES - 1) / CPN_STMT_PART_LINES : 1;
    for (size_t k = 0; r == CPN_OK && k < parts; k++) {
        cpn_statement_t part = *st;
        uint8_t *pbuf = NULL;
        size_t at = k * CPN_STMT_PART_LINES, m = *n_lines - at;
        part.part = (uint32_t)(k + 1);
        part.parts = (uint32_t)parts;
        r = cpn_stmt_fill(&part, lines + at, m < CPN_STMT_PART_LINES ? m : CPN_STMT_PART_LINES,
                          &pbuf);
        if (r == CPN_OK)
            r = s_add_part(a, &part, file, flen);
        free(pbuf);
    }
    free(lines);
    if (r != CPN_OK)
        fprintf(stderr, "cpnctl: statement from %s: %s\n", a->pol->broker.ledger_path,
                cpn_strerror(r));
    else if (unknown)
        fprintf(stderr,
                "cpnctl: %zu lease%s with records in %s could not be attributed (no lease "
                "chain in the ledger): left out\n",
                unknown, unknown == 1 ? "" : "s", a->period);
    return r;
}

static int s_read(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cpnctl: %s: %s\n", path, strerror(errno));
        return CPN_E_IO;
    }
    uint8_t *b = malloc(CTL_SETTLE_FILE_MAX);
    size_t n = b ? fread(b, 1, CTL_SETTLE_FILE_MAX, f) : 0;
    bool big = b && n == CTL_SETTLE_FILE_MAX && fgetc(f) != EOF;
    fclose(f);
    if (!b || big) {
        free(b);
        fprintf(stderr, "cpnctl: %s: %s\n", path, b ? "larger than 16 MiB" : "out of memory");
        return b ? CPN_E_TOO_BIG : CPN_E_NOMEM;
    }
    *buf = b;
    *len = n;
    return CPN_OK;
}

static void s_money(uint64_t v, char out[32])
{
    snprintf(out, 32, "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
}

/* The other broker's statement from its file: its parts, each a STATEMENT signed by them,
 * joined into *st (lines in *joined, the caller's). */
static int s_open_theirs(const s_args_t *a, const uint8_t *buf, size_t len, cpn_statement_t *st,
                         uint8_t **joined)
{
    cpn_statement_t *parts = calloc(CPN_STMT_PARTS_MAX, sizeof *parts);
    char why[CPN_REASON_MAX] = "";
    size_t n = 0, at = 0;
    int r = parts ? CPN_OK : CPN_E_NOMEM;
    while (r == CPN_OK && at < len) {
        size_t flen = at + 4 <= len ? (size_t)buf[at] << 24 | (size_t)buf[at + 1] << 16 |
                                          (size_t)buf[at + 2] << 8 | buf[at + 3]
                                    : SIZE_MAX;
        cpn_env_t env;
        if (n == CPN_STMT_PARTS_MAX || flen > len - at - 4) {
            r = n == CPN_STMT_PARTS_MAX ? CPN_E_TOO_BIG : CPN_E_MSGPACK;
            snprintf(why, sizeof why, "frame %zu: %s", n,
                     n == CPN_STMT_PARTS_MAX ? "too many parts" : "truncated");
        } else if ((r = cpn_env_open(buf + at + 4, flen, NULL, &env)) != CPN_OK) {
            snprintf(why, sizeof why, "frame %zu", n);
        } else if (memcmp(env.from, a->them, CPN_PK_LEN) != 0) {
            r = CPN_E_UNTRUSTED;
            snprintf(why, sizeof why, "frame %zu signed by another key than %s's", n, a->them_name);
        } else if ((r = cpn_statement_decode(&env, NULL, &parts[n])) != CPN_OK) {
            snprintf(why, sizeof why, "frame %zu", n);
        }
        at += 4 + flen;
        n++;
    }
    if (r == CPN_OK)
        r = cpn_stmt_join(parts, n, st, joined, why);
    if (r != CPN_OK)
        fprintf(stderr, "cpnctl: %s: INVALID: %s%s%s\n", a->theirs, cpn_errname(r),
                why[0] ? ": " : "", why);
    free(parts);
    return r;
}

static void s_print_diff(const cpn_stmt_diff_t *d, bool json, bool first)
{
    char kid[CPN_KID_LEN], o[32], t[32];
    cpn_key_id(d->peer, kid);
    s_money(d->ours, o);
    s_money(d->theirs, t);
    if (json)
        printf("%s{\"peer\":\"%s\",\"lease_id\":\"%s\",\"what\":\"%s\",\"ours\":\"%s\","
               "\"theirs\":\"%s\"}",
               first ? "" : ",", kid, d->lease_id, d->what, o, t);
    else
        printf("differs  %s %s  %s  ours %s  theirs %s\n", kid, d->lease_id, d->what, o, t);
}

static int s_reconcile(const s_args_t *a, const cpn_statement_t *ours)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    uint8_t *joined = NULL;
    cpn_statement_t theirs;
    int r = s_read(a->theirs, &buf, &len);
    if (r != CPN_OK)
        return S_USAGE;
    if ((r = s_open_theirs(a, buf, len, &theirs, &joined)) != CPN_OK) {
        free(buf);
        return S_REFUSED;
    }
    cpn_stmt_diff_t *diffs = malloc(CTL_SETTLE_DIFFS_SHOWN * sizeof *diffs);
    size_t n = 0;
    char why[CPN_REASON_MAX] = "";
    r = diffs ? cpn_stmt_reconcile(cpn_identity_pk(a->id), ours, a->them, &theirs, diffs,
                                   CTL_SETTLE_DIFFS_SHOWN, &n, why)
              : CPN_E_NOMEM;
    size_t shown = n < CTL_SETTLE_DIFFS_SHOWN ? n : CTL_SETTLE_DIFFS_SHOWN;
    if (a->json) {
        printf(",\"reconciled\":%s,\"differs\":%zu,\"differing\":[", r == CPN_OK ? "true" : "false",
               n);
        for (size_t i = 0; diffs && i < shown; i++)
            s_print_diff(&diffs[i], true, i == 0);
        printf("]");
    } else {
        for (size_t i = 0; diffs && i < shown; i++)
            s_print_diff(&diffs[i], false, false);
        if (r == CPN_OK)
            printf("reconciled with %s's statement: every lease agrees to the thousandth\n",
                   a->them_name);
        else
            printf("NOT reconciled with %s's statement: %s\n", a->them_name,
                   why[0] ? why : cpn_strerror(r));
    }
    free(diffs);
    free(joined);
    free(buf);
    return r == CPN_OK ? 0 : S_REFUSED;
}

static void s_summary(const s_args_t *a, const cpn_statement_t *st, size_t n)
{
    char owe[32], due[32];
    s_money(st->owe, owe);
    s_money(st->due, due);
    const char *us = a->pol->broker.name;
    if (a->json)
        printf("{\"broker\":\"%s\",\"with\":\"%s\",\"period\":\"%s\",\"leases\":%zu,"
               "\"owe\":\"%s\",\"due\":\"%s\"",
               us, a->them_name, a->period, n, owe, due);
    else
        printf("statement of %s with %s for %s: %zu lease%s\n"
               "  %s owes %s  %s  (its tenants on %s's peers)\n"
               "  %s owes %s  %s  (its tenants on %s's peers)\n",
               us, a->them_name, a->period, n, n == 1 ? "" : "s", us, a->them_name, owe,
               a->them_name, a->them_name, us, due, us);
}

int ctl_settle(int argc, char **argv, bool json)
{
    s_args_t a;
    memset(&a, 0, sizeof a);
    a.json = json;
    if (!s_parse(argc, argv, &a)) {
        fprintf(stderr, "usage: cpnctl settle --policy BROKER.yaml --with MEMBER --period "
                        "YYYY-MM [--out FILE] [--theirs FILE]\n");
        return S_USAGE;
    }
    cpn_statement_t st;
    uint8_t *lines = NULL, *frame = NULL;
    size_t len = 0, n = 0;
    int code = S_USAGE;
    if (s_load(&a) == CPN_OK && s_make(&a, &st, &lines, &frame, &len, &n) == CPN_OK) {
        code = 0;
        FILE *f = a.out ? fopen(a.out, "wb") : NULL;
        if (a.out && (!f || fwrite(frame, 1, len, f) != len)) {
            fprintf(stderr, "cpnctl: %s: %s\n", a.out, strerror(errno));
            code = S_USAGE;
        }
        if (f && fclose(f) != 0)
            code = S_USAGE;
        if (code == 0) {
            s_summary(&a, &st, n);
            if (a.theirs)
                code = s_reconcile(&a, &st);
            if (a.json)
                printf("}\n");
        }
    }
    free(frame);
    free(lines);
    cpn_identity_destroy(&a.id);
    policy_destroy(&a.pol);
    return code;
}
