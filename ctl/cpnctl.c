/* cpnctl - the enterprise's and the operator's tool: keys, requests, leases, queries,
 * offline verification, policy checks.
 *
 * Exit codes: 0 success; 1 refused (NACK, ERROR, invalid signature, policy errors);
 * 2 usage or local error (bad arguments, unreadable file); 3 no answer in time.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "ctl_access.h"
#include "ctl_bill.h"
#include "ctl_client.h"
#include "ctl_settle.h"
#include "ctl_verify.h"
#include "identity.h"
#include "ledger.h"
#include "log.h"
#include "msg.h"
#include "msg_typed.h"
#include "policy.h"
#include "units.h"
#include "usage_log.h"
#include "yconf.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3
#define CTL_FILE_MAX (16u * 1024 * 1024) /* largest message file `verify` reads */
#define CTL_WATCH_POLL_MS 500             /* `watch` asks for new notices this often */

typedef struct {
    const char *broker;     /* endpoint */
    const char *broker_key; /* .pub path or key text */
    const char *key;        /* tenant .key */
    const char *out_dir;    /* where submit saves lease files */
    bool json;
    bool plain;
    uint64_t timeout_s;
    int argc;
    char **argv;
} ctl_opts_t;

typedef int (*ctl_cmd_fn)(ctl_opts_t *o);
typedef struct {
    const char *name;
    int min_args;
    ctl_cmd_fn fn;
    const char *usage;
} ctl_cmd_t;

static int s_read_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cpnctl: %s: %s\n", path, strerror(errno));
        return CPN_E_IO;
    }
    uint8_t *b = malloc(CTL_FILE_MAX);
    size_t n = b ? fread(b, 1, CTL_FILE_MAX, f) : 0;
    int big = b && n == CTL_FILE_MAX && fgetc(f) != EOF;
    fclose(f);
    if (!b)
        return CPN_E_NOMEM;
    if (big) {
        fprintf(stderr, "cpnctl: %s: larger than %u bytes\n", path, CTL_FILE_MAX);
        free(b);
        return CPN_E_TOO_BIG;
    }
    *buf = b;
    *len = n;
    return CPN_OK;
}

static int s_write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) {
        fprintf(stderr, "cpnctl: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return CPN_E_IO;
    }
    return fclose(f) == 0 ? CPN_OK : CPN_E_IO;
}

/* JSON of one object on stdout; a write error shows up as a short line, not a crash. */
static void s_json(const msgpack_object *obj, FILE *out, int indent)
{
    if (mp_to_json(obj, out, indent) != CPN_OK)
        fputs("?", out);
}

/* A C string as one JSON string (escaped; invalid UTF-8 becomes U+FFFD): text that came from
 * a broker, a peer or a file never breaks the JSON around it. */
static void s_json_text(const char *text, FILE *out)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = text;
    o.via.str.size = (uint32_t)strnlen(text, CPN_REASON_MAX);
    s_json(&o, out, -1);
}

/* The broker key pinned by -B / CPN_BROKER_KEY into pk: pk, NULL if none is given, or
 * (after saying why) NULL with *bad set if it does not load. */
static const uint8_t *s_pinned(const ctl_opts_t *o, uint8_t pk[CPN_PK_LEN], bool *bad)
{
    *bad = false;
    if (!o->broker_key)
        return NULL;
    int r = cpn_pk_load(o->broker_key, pk);
    if (r == CPN_OK)
        return pk;
    fprintf(stderr, "cpnctl: broker key %s: %s\n", o->broker_key, cpn_strerror(r));
    *bad = true;
    return NULL;
}

/* ---- keygen, verify, policy check: offline ---- */

static int cmd_keygen(ctl_opts_t *o)
{
    const char *out = NULL;
    for (int i = 0; i < o->argc; i++)
        if (strcmp(o->argv[i], "--out") == 0 && i + 1 < o->argc)
            out = o->argv[++i];
    if (!out) {
        fprintf(stderr, "usage: cpnctl keygen --out NAME\n");
        return EXIT_USAGE;
    }
    cpn_identity_t *id = NULL;
    int r = cpn_identity_generate(&id);
    if (r == CPN_OK)
        r = cpn_identity_save(id, out);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: keygen %s: %s\n", out, cpn_strerror(r));
        cpn_identity_destroy(&id);
        return EXIT_USAGE;
    }
    char text[CPN_PK_TEXT_LEN];
    cpn_pk_to_text(cpn_identity_pk(id), text);
    if (o->json)
        printf("{\"key\": \"%s.key\", \"pub\": \"%s.pub\", \"public_key\": \"%s\"}\n", out,
               out, text);
    else
        printf("wrote %s.key (secret, mode 0600) and %s.pub\npublic key %s\n", out, out, text);
    cpn_identity_destroy(&id);
    return 0;
}

/* A USAGE record is verified on its own: signature and pricing (its chain: verify-bill). */
static int s_verify_usage(ctl_opts_t *o, uint8_t *buf, size_t len)
{
    char why[CPN_REASON_MAX];
    int r = ctl_bill_verify_record(buf, len, stdout, why);
    free(buf);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: INVALID: %s (%s)\n", o->argv[0], why, cpn_errname(r));
        return EXIT_REFUSED;
    }
    fprintf(stderr, "cpnctl: %s: valid USAGE record, signature and amounts check\n",
            o->argv[0]);
    return 0;

}

/* A replacement lease (on_failure: rematch) names the lease it replaces through its CLAIM's
 * `replaces`, the old peer's NOTICE: say which, once the NOTICE verifies. */
static void s_print_replaces(const char *file, const uint8_t *buf, size_t len)
{
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_env_t nenv;
    cpn_notice_t n;
    if (ch && cpn_chain_open(buf, len, CPN_MSG_NONE, NULL, ch) == CPN_OK &&
        ch->claim.replaces.len &&
        cpn_env_parse(ch->claim.replaces.ptr, ch->claim.replaces.len, &cpn_limits_default,
                      &nenv) == CPN_OK &&
        cpn_env_verify(&nenv) == CPN_OK && cpn_notice_decode(&nenv, NULL, &n) == CPN_OK) {
        char kid[CPN_KID_LEN];
        cpn_key_id(nenv.from, kid);
        fprintf(stderr, "cpnctl: %s: replaces lease %s (revoked by peer %s: %s: %s)\n", file,
                n.lease_id, kid, cpn_errname(n.code), n.reason);
    }
    free(ch);
}

static int cmd_verify(ctl_opts_t *o)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (s_read_file(o->argv[0], &buf, &len) != CPN_OK)
        return EXIT_USAGE;
    cpn_env_t env;
    if (cpn_env_parse(buf, len, NULL, &env) == CPN_OK && env.type == CPN_MSG_USAGE)
        return s_verify_usage(o, buf, len);
    char why[CPN_REASON_MAX];
    uint8_t pk[CPN_PK_LEN];
    bool bad = false;
    const uint8_t *pinned = s_pinned(o, pk, &bad);
    if (bad) {
        free(buf);
        return EXIT_USAGE;
    }
    int r = ctl_verify_chain_pinned(buf, len, pinned, stdout, why);
    if (r != CPN_OK) {
        free(buf);
        fprintf(stderr, "cpnctl: %s: INVALID: %s (%s)\n", o->argv[0], why, cpn_errname(r));
        return EXIT_REFUSED;
    }
    fprintf(stderr, "cpnctl: %s: valid, every signature in the chain verifies and every link "
                    "holds%s\n", o->argv[0], pinned ? " (GRANT by the pinned broker)" : "");
    char route[1024];
    if (ctl_verify_route(buf, len, route, sizeof route) == CPN_OK && route[0])
        fprintf(stderr, "cpnctl: %s: route (brokers, first to the peer's home): %s\n",
                o->argv[0], route);
    s_print_replaces(o->argv[0], buf, len);
    free(buf);
    return 0;
}

/* ---- bills: offline, from a bill file (ctl_bill.h) ---- */

/* Parse "--from MS --to MS --csv [--save FILE]" from argv[first]; false on a bad option. */
static bool s_bill_args(ctl_opts_t *o, int first, uint64_t *from, uint64_t *to,
                        ctl_bill_fmt_t *fmt, const char **save)
{
    *from = *to = 0;
    *fmt = o->json ? CTL_BILL_JSON : CTL_BILL_TEXT;
    for (int i = first; i < o->argc; i++) {
        const char *a = o->argv[i];
        char *end = NULL;
        if (save && strcmp(a, "--save") == 0 && i + 1 < o->argc) {
            *save = o->argv[++i];
        } else if ((strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0) && i + 1 < o->argc) {
            uint64_t v = strtoull(o->argv[++i], &end, 10);
            if (!end || *end || end == o->argv[i])
                return false;
            *(a[2] == 'f' ? from : to) = v;
        } else if (strcmp(a, "--csv") == 0) {
            *fmt = CTL_BILL_CSV;
        } else if (strcmp(a, "--json") == 0) {
            *fmt = CTL_BILL_JSON;
        } else {
            return false;
        }
    }
    return true;
}

/* Check a bill file in memory (named `name` in messages) and print it, or its verdict. */
static int s_bill_check(const char *name, const uint8_t *buf, size_t len, uint64_t from,
                        uint64_t to, ctl_bill_fmt_t fmt, bool print)
{
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    int r = ctl_bill_load(buf, len, from, to, &bill, why);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: INVALID: %s (%s)\n", name, why, cpn_errname(r));
        return EXIT_REFUSED;
    }
    if (print)
        ctl_bill_print(bill, fmt, stdout);
    else
        fprintf(stderr, "cpnctl: %s: valid: %zu records of %zu leases (%zu open), every "
                        "signature and chain checks, total %" PRIu64 " thousandths\n",
                name, ctl_bill_records(bill), ctl_bill_leases(bill),
                ctl_bill_open_leases(bill), ctl_bill_total(bill));
    ctl_bill_destroy(&bill);
    return 0;
}

/* bill FILE: print; verify-bill FILE: the same checks, a verdict. */
static int s_bill(ctl_opts_t *o, bool print)
{
    uint64_t from, to;
    ctl_bill_fmt_t fmt;
    if (!s_bill_args(o, 1, &from, &to, &fmt, NULL)) {
        fprintf(stderr, "usage: cpnctl bill FILE [--from MS] [--to MS] [--json|--csv]\n");
        return EXIT_USAGE;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (s_read_file(o->argv[0], &buf, &len) != CPN_OK)
        return EXIT_USAGE;
    int rc = s_bill_check(o->argv[0], buf, len, from, to, fmt, print);
    free(buf);
    return rc;
}

static int s_bill_fetch(ctl_opts_t *o);

/* bill [FILE]: without a file, the tenant's records are fetched from its broker. */
static int cmd_bill(ctl_opts_t *o)
{
    if (o->argc == 0 || strncmp(o->argv[0], "--", 2) == 0)
        return s_bill_fetch(o);
    return s_bill(o, true);
}
static int cmd_verify_bill(ctl_opts_t *o)
{
    return s_bill(o, false);
}

/* ---- ledger export: the operator's records, re-checked, as CSV (or a bill file) ---- */

typedef struct {
    const char *path, *out;
    uint64_t from, to;
    uint8_t tenant[CPN_PK_LEN];
    bool has_tenant;
} s_export_t;

static bool s_export_args(ctl_opts_t *o, s_export_t *e)
{
    memset(e, 0, sizeof *e);
    if (o->argc < 2 || strcmp(o->argv[0], "export") != 0)
        return false;
    e->path = o->argv[1];
    for (int i = 2; i + 1 < o->argc; i += 2) {
        const char *a = o->argv[i], *v = o->argv[i + 1];
        char *end = NULL;
        if (strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0) {
            uint64_t x = strtoull(v, &end, 10);
            if (!end || *end || end == v)
                return false;
            *(a[2] == 'f' ? &e->from : &e->to) = x;
        } else if (strcmp(a, "--tenant") == 0) {
            if (cpn_pk_load(v, e->tenant) != CPN_OK)
                return false;
            e->has_tenant = true;
        } else if (strcmp(a, "--out") == 0) {
            e->out = v;
        } else {
            return false;
        }
    }
    return (o->argc % 2) == 0;
}

static int s_export_append(const uint8_t *frame, size_t len, void *arg)
{
    void **b = arg;
    return ctl_bill_append((uint8_t **)&b[0], (size_t *)b[1], frame, len);
}

/* Read the records out of the ledger into a bill file in memory (*buf the caller's). */
static int s_export_read(const s_export_t *e, uint8_t **buf, size_t *len)
{
    ledger_t *lg = NULL;
    usage_log_t *ul = NULL;
    void *b[2] = {NULL, len};
    int r = ledger_open(e->path, &lg);
    if (r == CPN_OK)
        r = usage_log_open(lg, &ul);
    if (r == CPN_OK)
        r = usage_log_each(ul, e->has_tenant ? e->tenant : NULL, e->from, e->to, s_export_append,
                           b);
    *buf = b[0];
    usage_log_destroy(&ul);
    ledger_destroy(&lg);
    return r;
}

static int cmd_ledger(ctl_opts_t *o)
{
    s_export_t e;
    if (!s_export_args(o, &e)) {
        fprintf(stderr, "usage: cpnctl ledger export LEDGER [--from MS] [--to MS] "
                        "[--tenant KEY] [--out BILL-FILE]\n");
        return EXIT_USAGE;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = s_export_read(&e, &buf, &len);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: %s\n", e.path, cpn_strerror(r));
        free(buf);
        return EXIT_USAGE;
    }
    /* What the operator exports is checked like a tenant's bill: a ledger that does not
     * verify is reported, not exported. The period was applied when reading. */
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    r = ctl_bill_load(buf, len, 0, 0, &bill, why);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: INVALID: %s (%s)\n", e.path, why, cpn_errname(r));
        free(buf);
        return EXIT_REFUSED;
    }
    if (e.out && s_write_file(e.out, buf, len) != CPN_OK)
        r = CPN_E_IO;
    else
        ctl_bill_print(bill, o->json ? CTL_BILL_JSON : CTL_BILL_CSV, stdout);
    ctl_bill_destroy(&bill);
    free(buf);
    return r == CPN_OK ? 0 : EXIT_USAGE;
}

static int cmd_settle(ctl_opts_t *o)
{
    return ctl_settle(o->argc, o->argv, o->json);
}

static int cmd_policy(ctl_opts_t *o)
{
    if (strcmp(o->argv[0], "check") != 0 || o->argc < 2) {
        fprintf(stderr, "usage: cpnctl policy check FILE\n");
        return EXIT_USAGE;
    }
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = policy_load(o->argv[1], &pol, &doc);
    if (doc)
        yconf_print_errors(doc, stderr);
    if (r == CPN_OK)
        printf("%s: ok\n", o->argv[1]);
    else if (!doc || yconf_error_count(doc) == 0)
        fprintf(stderr, "%s: %s\n", o->argv[1], cpn_strerror(r));
    policy_destroy(&pol);
    yconf_destroy(&doc);
    return r == CPN_OK ? 0 : EXIT_REFUSED;
}

/* ---- online commands ---- */

typedef struct {
    cpn_identity_t *id;
    uint8_t broker_pk[CPN_PK_LEN];
    ctl_client_t *client;
} ctl_session_t;

static void s_session_close(ctl_session_t *s)
{
    ctl_client_destroy(&s->client);
    cpn_identity_destroy(&s->id);
}

static int s_session_open(ctl_opts_t *o, ctl_session_t *s)
{
    memset(s, 0, sizeof *s);
    int r;
    if (!o->key || !o->broker) {
        fprintf(stderr, "cpnctl: need --key (or CPN_KEY) and --broker (or CPN_BROKER)\n");
        return EXIT_USAGE;
    }
    if ((r = cpn_identity_load(o->key, &s->id)) != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: %s\n", o->key, cpn_strerror(r));
        return EXIT_USAGE;
    }
    if (o->broker_key && (r = cpn_pk_load(o->broker_key, s->broker_pk)) != CPN_OK) {
        fprintf(stderr, "cpnctl: broker key %s: %s\n", o->broker_key, cpn_strerror(r));
        s_session_close(s);
        return EXIT_USAGE;
    }
    r = ctl_client_new(o->broker, s->id, o->broker_key ? s->broker_pk : NULL, o->plain,
                       &s->client);
    if (r != CPN_OK) {
        fprintf(stderr, "cpnctl: connect %s: %s\n", o->broker, cpn_strerror(r));
        s_session_close(s);
        return EXIT_USAGE;
    }
    return 0;
}

static void s_print_refusal(const cpn_env_t *env, bool json)
{
    cpn_nack_t nack;
    cpn_error_t err;
    memset(&nack, 0, sizeof nack);
    memset(&err, 0, sizeof err);
    int code = CPN_E_INTERNAL;
    const char *reason = "";
    if (cpn_nack_decode(env, &cpn_limits_default, &nack) == CPN_OK) {
        code = nack.code;
        reason = nack.reason;
    } else if (cpn_error_decode(env, &cpn_limits_default, &err) == CPN_OK) {
        code = err.code;
        reason = err.reason;
    }
    if (json) {
        printf("{\"result\": \"refused\", \"code\": \"%s\", \"value\": %d, \"reason\": ",
               cpn_errname(code), code);
        s_json_text(reason, stdout);
        printf("}\n");
    } else
        printf("refused: %s: %s\n", cpn_errname(code), reason[0] ? reason : cpn_strerror(code));
}

/* Is `env` a `replay` refusal of our message `seq`? Another client of the same key may have
 * signed the same seq in the same millisecond (1 in 4096), or, for RENEW and RELEASE, changed
 * the lease under a higher seq first. The refused message changed nothing, so the caller
 * sends it once more under a fresh seq (docs/PROTOCOL.md, section 5). */
static bool s_replay_of(const cpn_env_t *env, uint64_t seq)
{
    cpn_nack_t nack;
    cpn_error_t err;
    if (cpn_nack_decode(env, &cpn_limits_default, &nack) == CPN_OK)
        return nack.code == CPN_E_REPLAY && nack.ref_seq == seq;
    if (cpn_error_decode(env, &cpn_limits_default, &err) == CPN_OK)
        return err.code == CPN_E_REPLAY && err.ref_seq == seq;
    return false;
}

/* Send `body` again under a fresh seq after a `replay` refusal, at most once per command
 * (*retried). False if it was not a replay of `*seq`, or the one retry is spent, or the send
 * failed: then the refusal stands. */
static bool s_retry_replay(ctl_session_t *s, const cpn_env_t *env, cpn_msg_type_t type,
                           const void *body, uint64_t *seq, bool *retried)
{
    if (*retried || !s_replay_of(env, *seq))
        return false;
    *retried = true;
    fprintf(stderr, "cpnctl: %s seq %" PRIu64 " refused as a replay; sending it again\n",
            cpn_msg_name(type), *seq);
    return ctl_client_send(s->client, type, body, seq) == CPN_OK;
}

/* A GRANT frame opened by the one chain opener (common/chain.h): every type is checked
 * before a body is decoded, every signature and link verified, and the GRANT must be signed
 * by the pinned broker when one is (pinned NULL: any). Pointers point into the frame. */
typedef cpn_chain_t s_grant_view_t;

static int s_open_grant(const uint8_t *frame, size_t len, const uint8_t *pinned,
                        s_grant_view_t *v)
{
    cpn_chain_opts_t opts = {.broker_pk = pinned};
    return cpn_chain_open(frame, len, CPN_MSG_GRANT, &opts, v);
}

/* Print a lease as one table row (or JSON) from a GRANT frame. */
static int s_print_grant(const uint8_t *frame, size_t len, const uint8_t *pinned,
                         const char *saved, bool json)
{
    s_grant_view_t *v = malloc(sizeof *v);
    int r = v ? s_open_grant(frame, len, pinned, v) : CPN_E_NOMEM;
    if (r != CPN_OK) {
        if (v)
            fprintf(stderr, "cpnctl: the broker's GRANT is refused: %s (%s)\n", v->why,
                    cpn_errname(r));
        free(v);
        return r;
    }
    const cpn_lease_t *l = &v->lease;
    char peer[CPN_KID_LEN], price[32], dur[32];
    cpn_key_id(v->lease_env.from, peer);
    cpn_fmt_price(l->price, price, sizeof price);
    cpn_fmt_duration((l->end_ms - l->start_ms) / 1000, dur, sizeof dur);
    if (json) {
        printf("{\"result\": \"lease\", \"lease_id\": ");
        s_json_text(l->lease_id, stdout);
        printf(", \"request_id\": ");
        s_json_text(v->grant.request_id, stdout);
        printf(", \"peer\": \"%s\", \"package\": ", peer);
        s_json_text(l->package, stdout);
        printf(", \"units\": %u, \"price\": \"%s\", \"start_ms\": %" PRIu64
               ", \"end_ms\": %" PRIu64 ", \"state\": ",
               l->units, price, l->start_ms, l->end_ms);
        s_json_text(l->state, stdout);
        printf(", \"file\": ");
        s_json_text(saved ? saved : "", stdout);
        /* sealed access details to open with `cpnctl access FILE` */
        printf(", \"access\": %s}\n", l->access.len ? "true" : "false");
    } else
        printf("%-20s %-14s %-10s %-16s %5u %10s %8s %-8s %s\n", l->lease_id,
               v->grant.request_id, peer, l->package, l->units, price, dur, l->state,
               saved ? saved : "");
    free(v);
    return CPN_OK;
}

static void s_lease_header(bool json)
{
    if (!json)
        printf("%-20s %-14s %-10s %-16s %5s %10s %8s %-8s %s\n", "LEASE", "REQUEST", "PEER",
               "PACKAGE", "UNITS", "PRICE/H", "LENGTH", "STATE", "FILE");
}

static void s_print_progress(const cpn_env_t *env, bool json)
{
    cpn_status_t st;
    memset(&st, 0, sizeof st);
    if (json || cpn_status_decode(env, &cpn_limits_default, &st) != CPN_OK)
        return;
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_zone_init(&zone, 1024);
    if (mp_parse(st.data.ptr, st.data.len, &cpn_limits_default, &zone, &obj) == CPN_OK &&
        obj.type == MSGPACK_OBJECT_STR)
        fprintf(stderr, "  .. %.*s\n", (int)obj.via.str.size, obj.via.str.ptr);
    msgpack_zone_destroy(&zone);
}

/* submit's own arguments: REQUEST.yaml, then access hints that add to (or replace) those of
 * the file: --access KEY=VALUE (repeatable), --ssh-key FILE.pub. */
static int s_submit_args(const ctl_opts_t *o, cpn_request_t *req)
{
    yconf_t *doc = NULL;
    char why[CPN_REASON_MAX];
    int r = yconf_request_file(o->argv[0], req, &doc);
    if (r != CPN_OK) {
        if (doc)
            yconf_print_errors(doc, stderr);
        else
            fprintf(stderr, "cpnctl: %s: %s\n", o->argv[0], cpn_strerror(r));
        yconf_destroy(&doc);
        return EXIT_USAGE;
    }
    yconf_destroy(&doc);
    for (int i = 1; i < o->argc; i++) {
        bool access = strcmp(o->argv[i], "--access") == 0;
        if ((!access && strcmp(o->argv[i], "--ssh-key") != 0) || i + 1 >= o->argc) {
            fprintf(stderr, "usage: cpnctl submit REQUEST.yaml [--access KEY=VALUE]... "
                            "[--ssh-key FILE.pub]\n");
            return EXIT_USAGE;
        }
        const char *arg = o->argv[++i];
        r = access ? ctl_access_hint_arg(&req->access, arg, why)
                   : ctl_access_ssh_key_file(&req->access, arg, why);
        if (r != CPN_OK) {
            fprintf(stderr, "cpnctl: %s\n", why);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int cmd_submit(ctl_opts_t *o)
{
    cpn_request_t req;
    int r = s_submit_args(o, &req);
    if (r != 0)
        return r;
    req.progress = true; /* a person is watching: print the broker's notes as they come */
    ctl_session_t s;
    int rc = s_session_open(o, &s);
    if (rc)
        return rc;
    uint64_t seq = 0;
    if ((r = ctl_client_send(s.client, CPN_MSG_REQUEST, &req, &seq)) != CPN_OK) {
        fprintf(stderr, "cpnctl: send: %s\n", cpn_strerror(r));
        s_session_close(&s);
        return EXIT_USAGE;
    }
    if (!o->json)
        fprintf(stderr, "submitted request %s (%u unit%s) to %s\n", req.id, req.units,
                req.units == 1 ? "" : "s", o->broker);
    uint64_t deadline = cpn_mono_ms() + o->timeout_s * 1000;
    uint32_t got_units = 0;
    int grants = 0;
    bool retried = false;
    rc = EXIT_TIMEOUT;
    while (got_units < req.units) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        r = ctl_client_recv(s.client, deadline, &frame, &len, &env);
        if (r != CPN_OK)
            break;
        if (env.type == CPN_MSG_STATUS) {
            s_print_progress(&env, o->json);
        } else if (env.type == CPN_MSG_GRANT) {
            char path[1024];
            int n = grants ? snprintf(path, sizeof path, "%s/%s.%d.lease", o->out_dir, req.id,
                                      grants)
                           : snprintf(path, sizeof path, "%s/%s.lease", o->out_dir, req.id);
            if (n < 0 || (size_t)n >= sizeof path || s_write_file(path, frame, len) != CPN_OK) {
                free(frame);
                rc = EXIT_USAGE;
                break;
            }
            s_grant_view_t *v = malloc(sizeof *v);
            const uint8_t *pinned = o->broker_key ? s.broker_pk : NULL;
            if (!grants++)
                s_lease_header(o->json);
            if (v && s_open_grant(frame, len, pinned, v) == CPN_OK) {
                got_units += v->lease.units;
                (void)s_print_grant(frame, len, pinned, path, o->json);
                if (v->lease.access.len && !o->json)
                    fprintf(stderr, "  access details sealed to your key: cpnctl access %s\n",
                            path);
                rc = 0;
            } else {
                /* Saved for `cpnctl verify` to say why, but not a lease: stop waiting. */
                fprintf(stderr, "cpnctl: %s: the broker's GRANT is refused: %s\n", path,
                        v ? v->why : cpn_strerror(CPN_E_NOMEM));
                got_units = req.units;
                rc = EXIT_REFUSED;
            }
            free(v);
        } else if (env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR) {
            if (s_retry_replay(&s, &env, CPN_MSG_REQUEST, &req, &seq, &retried)) {
                free(frame);
                continue;
            }
            s_print_refusal(&env, o->json);
            free(frame);
            rc = EXIT_REFUSED;
            break;
        }
        free(frame);
    }
    if (rc == EXIT_TIMEOUT)
        fprintf(stderr, "cpnctl: no answer from %s in %" PRIu64 " s (resubmitting the same "
                        "request id is safe: it returns the same lease)\n",
                o->broker, o->timeout_s);
    s_session_close(&s);
    return rc;
}

/* The access details of a lease file, opened with the tenant's key: the JSON object on
 * stdout (inside {"result": "access", ...} with --json), what it is on stderr. */
static int cmd_access(ctl_opts_t *o)
{
    uint8_t *buf = NULL, pk[CPN_PK_LEN];
    size_t len = 0;
    bool bad = false;
    cpn_identity_t *id = NULL;
    ctl_access_t *a = NULL;
    char why[CPN_REASON_MAX], peer[CPN_KID_LEN];
    int r, rc = EXIT_USAGE;
    const uint8_t *pinned = s_pinned(o, pk, &bad);
    if (bad)
        return EXIT_USAGE;
    if (!o->key) {
        fprintf(stderr, "cpnctl: access needs the tenant's --key (or CPN_KEY)\n");
        return EXIT_USAGE;
    }
    if ((r = cpn_identity_load(o->key, &id)) != CPN_OK) {
        fprintf(stderr, "cpnctl: %s: %s\n", o->key, cpn_strerror(r));
        return EXIT_USAGE;
    }
    if (s_read_file(o->argv[0], &buf, &len) != CPN_OK || !(a = malloc(sizeof *a)))
        goto out;
    rc = EXIT_REFUSED;
    if ((r = ctl_access_open(buf, len, pinned, id, a, why)) != CPN_OK) {
        if (o->json) {
            printf("{\"result\": \"refused\", \"code\": \"%s\", \"value\": %d, \"reason\": ",
                   cpn_errname(r), r);
            s_json_text(why, stdout);
            printf("}\n");
        }
        fprintf(stderr, "cpnctl: %s: %s (%s)\n", o->argv[0], why, cpn_errname(r));
        goto out;
    }
    cpn_key_id(a->peer, peer);
    if (a->len == 0) {
        if (o->json) {
            printf("{\"result\": \"none\", \"lease_id\": ");
            s_json_text(a->lease_id, stdout);
            printf("}\n");
        }
        fprintf(stderr, "cpnctl: %s: %s (package %s of peer %s has no driver)\n", o->argv[0],
                why, a->package, peer);
        goto out;
    }
    if (o->json) {
        printf("{\"result\": \"access\", \"lease_id\": ");
        s_json_text(a->lease_id, stdout);
        printf(", \"peer\": \"%s\", \"package\": ", peer);
        s_json_text(a->package, stdout);
        /* checked to be one JSON object when it was opened: embedded as it is */
        printf(", \"access\": %s}\n", a->text);
    } else {
        fprintf(stderr, "lease %s (package %s of peer %s): access details\n", a->lease_id,
                a->package, peer);
        printf("%s\n", a->text);
    }
    rc = fflush(stdout) == 0 ? 0 : EXIT_USAGE;
out:
    ctl_access_wipe(a);
    free(a);
    free(buf);
    cpn_identity_destroy(&id);
    return rc;
}

/* RENEW and RELEASE name a lease by its file (the GRANT cpnctl saved). */
static int s_lease_ref(const ctl_opts_t *o, const char *path, char lease_id[CPN_NAME_MAX],
                       uint8_t peer[CPN_PK_LEN])
{
    uint8_t *buf = NULL, pk[CPN_PK_LEN];
    size_t len = 0;
    bool bad = false;
    const uint8_t *pinned = s_pinned(o, pk, &bad);
    if (bad)
        return CPN_E_KEY;
    int r = s_read_file(path, &buf, &len);
    if (r != CPN_OK)
        return r;
    s_grant_view_t *v = malloc(sizeof *v);
    if (!v)
        r = CPN_E_NOMEM;
    else if ((r = s_open_grant(buf, len, pinned, v)) == CPN_OK) {
        memcpy(lease_id, v->lease.lease_id, CPN_NAME_MAX);
        memcpy(peer, v->lease_env.from, CPN_PK_LEN);
    } else
        fprintf(stderr, "cpnctl: %s: not a lease file: %s (%s)\n", path, v->why,
                cpn_errname(r));
    free(v);
    free(buf);
    return r;
}

static int s_await_lease(ctl_opts_t *o, ctl_session_t *s, const char *save_as, cpn_msg_type_t type,
                         const void *body, uint64_t seq)
{
    uint64_t deadline = cpn_mono_ms() + o->timeout_s * 1000;
    bool retried = false;
    for (;;) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        int r = ctl_client_recv(s->client, deadline, &frame, &len, &env);
        if (r != CPN_OK) {
            fprintf(stderr, "cpnctl: no answer in %" PRIu64 " s\n", o->timeout_s);
            return EXIT_TIMEOUT;
        }
        int rc = -1;
        if (env.type == CPN_MSG_GRANT) {
            /* Checked before it replaces the lease file: a bad GRANT must not overwrite it. */
            s_lease_header(o->json);
            if (s_print_grant(frame, len, o->broker_key ? s->broker_pk : NULL, save_as,
                              o->json) != CPN_OK)
                rc = EXIT_REFUSED;
            else
                rc = save_as && s_write_file(save_as, frame, len) != CPN_OK ? EXIT_USAGE : 0;
        } else if (env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR) {
            if (!s_retry_replay(s, &env, type, body, &seq, &retried)) {
                s_print_refusal(&env, o->json);
                rc = EXIT_REFUSED;
            }
        }
        free(frame);
        if (rc >= 0)
            return rc;
    }
}

/* RENEW and RELEASE: sign `body` about the lease in LEASE-FILE, wait for the new lease. */
static int s_lease_op(ctl_opts_t *o, cpn_msg_type_t type, const void *body)
{
    ctl_session_t s;
    int rc = s_session_open(o, &s);
    if (rc)
        return rc;
    uint64_t seq = 0;
    rc = ctl_client_send(s.client, type, body, &seq) == CPN_OK
             ? s_await_lease(o, &s, o->argv[0], type, body, seq)
             : EXIT_USAGE;
    s_session_close(&s);
    return rc;
}

static int cmd_renew(ctl_opts_t *o)
{
    cpn_renew_t rn;
    memset(&rn, 0, sizeof rn);
    if (cpn_parse_duration(o->argv[1], &rn.extend_s) != CPN_OK || rn.extend_s == 0) {
        fprintf(stderr, "usage: cpnctl renew LEASE-FILE DURATION (e.g. 2h)\n");
        return EXIT_USAGE;
    }
    if (s_lease_ref(o, o->argv[0], rn.lease_id, rn.peer) != CPN_OK)
        return EXIT_USAGE;
    return s_lease_op(o, CPN_MSG_RENEW, &rn);
}

static int cmd_release(ctl_opts_t *o)
{
    cpn_release_t rl;
    memset(&rl, 0, sizeof rl);
    if (s_lease_ref(o, o->argv[0], rl.lease_id, rl.peer) != CPN_OK)
        return EXIT_USAGE;
    return s_lease_op(o, CPN_MSG_RELEASE, &rl);
}

/* STATUS data is one msgpack object: a map (status) or an array of maps (rows). */
static void s_print_map(const msgpack_object *obj)
{
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        printf("%-22.*s ", (int)kv->key.via.str.size, kv->key.via.str.ptr);
        if (kv->val.type == MSGPACK_OBJECT_STR)
            printf("%.*s\n", (int)kv->val.via.str.size, kv->val.via.str.ptr);
        else {
            s_json(&kv->val, stdout, -1);
            putchar('\n');
        }
    }
}

/* One page of rows; the header (the first row's keys) only before the listing's first row. */
static void s_print_rows(const msgpack_object *obj, bool header)
{
    for (uint32_t i = 0; i < obj->via.array.size; i++) {
        const msgpack_object *row = &obj->via.array.ptr[i];
        if (row->type != MSGPACK_OBJECT_MAP)
            continue;
        if (header) {
            for (uint32_t k = 0; k < row->via.map.size; k++)
                if (row->via.map.ptr[k].key.type == MSGPACK_OBJECT_STR)
                    printf("%-14.*s ", (int)row->via.map.ptr[k].key.via.str.size,
                           row->via.map.ptr[k].key.via.str.ptr);
            putchar('\n');
            header = false;
        }
        for (uint32_t k = 0; k < row->via.map.size; k++) {
            const msgpack_object *v = &row->via.map.ptr[k].val;
            if (v->type == MSGPACK_OBJECT_STR)
                printf("%-14.*s ", (int)v->via.str.size, v->via.str.ptr);
            else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                printf("%-14" PRIu64 " ", v->via.u64);
            else if (v->type == MSGPACK_OBJECT_BOOLEAN)
                printf("%-14s ", v->via.boolean ? "yes" : "no");
            else {
                s_json(v, stdout, -1);
                putchar(' ');
            }
        }
        putchar('\n');
    }
}

/* Pages one listing follows at most; with --timeout, this bounds a listing in count and time
 * (1,024 rows a page: over 100 million rows). */
#define CTL_PAGES_MAX 100000

/* A listing printed as it comes, page after page. */
typedef struct {
    bool json, started, ended;
    uint64_t rows;
} s_listing_t;

/* Print one STATUS answer: a map as it is, rows as part of the listing. */
static void s_print_page(s_listing_t *ls, const msgpack_object *obj)
{
    if (obj->type == MSGPACK_OBJECT_MAP) {
        if (ls->json) {
            s_json(obj, stdout, 2);
            putchar('\n');
        } else
            s_print_map(obj);
        return;
    }
    if (obj->type != MSGPACK_OBJECT_ARRAY)
        return;
    if (ls->json)
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            fputs(ls->started ? ",\n" : "[\n", stdout);
            s_json(&obj->via.array.ptr[i], stdout, 2);
            ls->started = true;
        }
    else
        s_print_rows(obj, ls->rows == 0);
    ls->rows += obj->via.array.size;
}

/* After the last page, or before a refusal that cut the listing short: close the JSON array
 * (once), say "(none)" for an empty table. */
static void s_listing_end(s_listing_t *ls, bool list)
{
    if (!list || ls->ended)
        return;
    ls->ended = true;
    if (ls->json)
        fputs(ls->started ? "\n]\n" : "[]\n", stdout);
    else if (ls->rows == 0)
        printf("(none)\n");
}

/* Rows of one page, to a caller that keeps them instead of printing (bill). */
typedef int (*s_rows_fn)(const msgpack_object *rows, void *arg);

/* QUERY `what`, following `next` until the last page (each page waits up to --timeout); the
 * pages are printed, or handed to fn (if not NULL; non-zero from it ends with that code). */
static int s_query_rows(ctl_opts_t *o, const char *what, s_rows_fn fn, void *arg)
{
    ctl_session_t s;
    int rc = s_session_open(o, &s);
    if (rc)
        return rc;
    s_listing_t ls = {.json = o->json, .ended = fn != NULL}; /* fn's rows are not printed */
    bool list = false, done = false, retried = false;
    cpn_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "%s", what);
    size_t pages = 0;
    for (; !done && pages < CTL_PAGES_MAX; pages++) {
        uint64_t seq = 0;
        if (ctl_client_send(s.client, CPN_MSG_QUERY, &q, &seq) != CPN_OK) {
            rc = EXIT_USAGE;
            break;
        }
        uint64_t deadline = cpn_mono_ms() + o->timeout_s * 1000;
        rc = EXIT_TIMEOUT;
        for (;;) {
            uint8_t *frame = NULL;
            size_t len = 0;
            cpn_env_t env;
            if (ctl_client_recv(s.client, deadline, &frame, &len, &env) != CPN_OK)
                break;
            cpn_status_t st;
            memset(&st, 0, sizeof st);
            cpn_limits_t lim = cpn_limits_default;
            lim.max_frame *= 16;
            lim.max_str *= 16;
            lim.max_total *= 16;
            if (cpn_status_decode(&env, &lim, &st) == CPN_OK &&
                strcmp(st.what, what) == 0) {
                msgpack_zone zone;
                msgpack_object obj;
                msgpack_zone_init(&zone, 4096);
                rc = EXIT_REFUSED;
                if (mp_parse(st.data.ptr, st.data.len, &lim, &zone, &obj) == CPN_OK) {
                    list = obj.type == MSGPACK_OBJECT_ARRAY;
                    if (fn)
                        rc = list ? fn(&obj, arg) : EXIT_REFUSED;
                    else {
                        s_print_page(&ls, &obj);
                        rc = 0;
                    }
                }
                /* The cursor must move on, or a broker could keep us here. */
                done = rc != 0 || !list || !st.next[0] || strcmp(st.next, q.after) == 0;
                if (!done)
                    snprintf(q.after, sizeof q.after, "%s", st.next);
                msgpack_zone_destroy(&zone);
                free(frame);
                break;
            }
            if (env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR) {
                if (s_retry_replay(&s, &env, CPN_MSG_QUERY, &q, &seq, &retried)) {
                    free(frame);
                    continue;
                }
                s_listing_end(&ls, list);
                s_print_refusal(&env, o->json);
                free(frame);
                rc = EXIT_REFUSED;
                break;
            }
            free(frame);
        }
        if (rc != 0)
            break;
    }
    if (rc == 0 && !done) {
        fprintf(stderr, "cpnctl: %s: more than %d pages; the listing is incomplete\n", what,
                CTL_PAGES_MAX);
        rc = EXIT_REFUSED;
    }
    s_listing_end(&ls, list);
    if (rc == EXIT_TIMEOUT)
        fprintf(stderr, "cpnctl: no answer from %s (page %zu of %s)\n", o->broker, pages + 1,
                what);
    s_session_close(&s);
    return rc;
}

static int s_query(ctl_opts_t *o, const char *what)
{
    return s_query_rows(o, what, NULL, NULL);
}

/* One page of `usage` rows ({lease, n, record}): each record appended to the bill file. */
static int s_bill_rows(const msgpack_object *rows, void *arg)
{
    void **b = arg;
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        const msgpack_object *row = &rows->via.array.ptr[i];
        const msgpack_object *rec = NULL;
        for (uint32_t k = 0; row->type == MSGPACK_OBJECT_MAP && k < row->via.map.size; k++) {
            const msgpack_object_kv *kv = &row->via.map.ptr[k];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6 &&
                memcmp(kv->key.via.str.ptr, "record", 6) == 0 && kv->val.type == MSGPACK_OBJECT_BIN)
                rec = &kv->val;
        }
        if (!rec) {
            fprintf(stderr, "cpnctl: usage row %" PRIu32 " without a record\n", i);
            return EXIT_REFUSED;
        }
        if (ctl_bill_append((uint8_t **)&b[0], (size_t *)b[1], (const uint8_t *)rec->via.bin.ptr,
                            rec->via.bin.size) != CPN_OK)
            return EXIT_USAGE;
    }
    return 0;
}

/* bill [--from MS] [--to MS] [--json|--csv] [--save FILE]: the tenant's records (an
 * operator's: everyone's) from the broker, checked and printed as for a file. */
static int s_bill_fetch(ctl_opts_t *o)
{
    uint64_t from, to;
    ctl_bill_fmt_t fmt;
    const char *save = NULL;
    if (!s_bill_args(o, 0, &from, &to, &fmt, &save)) {
        fprintf(stderr, "usage: cpnctl bill [FILE] [--from MS] [--to MS] [--json|--csv] "
                        "[--save FILE]\n");
        return EXIT_USAGE;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    void *b[2] = {NULL, &len};
    int rc = s_query_rows(o, "usage", s_bill_rows, b);
    buf = b[0];
    if (rc == 0 && save && s_write_file(save, buf ? buf : (const uint8_t *)"", len) != CPN_OK)
        rc = EXIT_USAGE;
    if (rc == 0)
        rc = s_bill_check(o->broker ? o->broker : "broker", buf ? buf : (const uint8_t *)"", len,
                          from, to, fmt, true);
    free(buf);
    return rc;
}

static int cmd_leases(ctl_opts_t *o)
{
    return s_query(o, "leases");
}
static int cmd_offers(ctl_opts_t *o)
{
    return s_query(o, "offers");
}
static int cmd_status(ctl_opts_t *o)
{
    return s_query(o, "status");
}
static int cmd_federation(ctl_opts_t *o)
{
    return s_query(o, "federation");
}

/* ---- watch: a tenant follows its notices (QUERY `notices`, polled) ---- */

/* One row of the `notices` listing, as it came. */
static void s_print_notice(const msgpack_object *row, bool json)
{
    if (json) {
        s_json(row, stdout, -1);
        putchar('\n');
        return;
    }
    for (uint32_t k = 0; k < row->via.map.size; k++) {
        const msgpack_object_kv *kv = &row->via.map.ptr[k];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        printf("%s%.*s=", k ? " " : "notice ", (int)kv->key.via.str.size, kv->key.via.str.ptr);
        if (kv->val.type == MSGPACK_OBJECT_STR)
            s_json(&kv->val, stdout, -1);
        else if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            printf("%" PRIu64, kv->val.via.u64);
    }
    putchar('\n');
}

/* The `id` of a notice row (the next cursor); 0 if it has none. */
static uint64_t s_notice_id(const msgpack_object *row)
{
    for (uint32_t k = 0; row->type == MSGPACK_OBJECT_MAP && k < row->via.map.size; k++) {
        const msgpack_object_kv *kv = &row->via.map.ptr[k];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
            memcmp(kv->key.via.str.ptr, "id", 2) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return kv->val.via.u64;
    }
    return 0;
}

/* One QUERY `notices` after q->after: print its rows, move the cursor. 0 with *rows set, 1
 * refused, 3 no answer by `deadline`. */
static int s_watch_page(ctl_session_t *s, cpn_query_t *q, uint64_t deadline, bool json,
                        uint64_t *rows, bool *more)
{
    uint64_t seq = 0;
    bool retried = false;
    *rows = 0;
    *more = false;
    if (ctl_client_send(s->client, CPN_MSG_QUERY, q, &seq) != CPN_OK)
        return EXIT_USAGE;
    for (;;) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        cpn_status_t st;
        if (ctl_client_recv(s->client, deadline, &frame, &len, &env) != CPN_OK)
            return EXIT_TIMEOUT;
        if (cpn_status_decode(&env, NULL, &st) == CPN_OK && strcmp(st.what, "notices") == 0) {
            msgpack_zone zone;
            msgpack_object obj;
            int rc = EXIT_REFUSED;
            msgpack_zone_init(&zone, 4096);
            if (mp_parse(st.data.ptr, st.data.len, &cpn_limits_default, &zone, &obj) == CPN_OK &&
                obj.type == MSGPACK_OBJECT_ARRAY) {
                for (uint32_t i = 0; i < obj.via.array.size; i++) {
                    const msgpack_object *row = &obj.via.array.ptr[i];
                    if (row->type != MSGPACK_OBJECT_MAP)
                        continue;
                    s_print_notice(row, json);
                    snprintf(q->after, sizeof q->after, "%" PRIu64, s_notice_id(row));
                    (*rows)++;
                }
                *more = st.next[0] != '\0';
                rc = 0;
            }
            fflush(stdout);
            msgpack_zone_destroy(&zone);
            free(frame);
            return rc;
        }
        if (env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR) {
            if (s_retry_replay(s, &env, CPN_MSG_QUERY, q, &seq, &retried)) {
                free(frame);
                continue;
            }
            s_print_refusal(&env, json);
            free(frame);
            return EXIT_REFUSED;
        }
        free(frame);
    }
}

/* watch [--count N] [--after ID]: print this tenant's notices as they come, from the first
 * (or after ID), asking every CTL_WATCH_POLL_MS; ends after N notices (exit 0), or when
 * --timeout passes (exit 0 without --count, 3 with fewer than N). */
static int cmd_watch(ctl_opts_t *o)
{
    uint64_t want = 0, seen = 0;
    cpn_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "notices");
    for (int i = 0; i < o->argc; i++) {
        char *end = NULL;
        if (strcmp(o->argv[i], "--count") == 0 && i + 1 < o->argc)
            want = strtoull(o->argv[++i], &end, 10);
        else if (strcmp(o->argv[i], "--after") == 0 && i + 1 < o->argc)
            snprintf(q.after, sizeof q.after, "%s", o->argv[++i]);
        else {
            fprintf(stderr, "usage: cpnctl [-t SECONDS] watch [--count N] [--after ID]\n");
            return EXIT_USAGE;
        }
        if (end && *end) {
            fprintf(stderr, "cpnctl: watch: --count wants a number\n");
            return EXIT_USAGE;
        }
    }
    ctl_session_t s;
    int rc = s_session_open(o, &s);
    if (rc)
        return rc;
    uint64_t deadline = cpn_mono_ms() + o->timeout_s * 1000;
    while (!(want && seen >= want)) {
        uint64_t rows = 0;
        bool more = false;
        if ((rc = s_watch_page(&s, &q, deadline, o->json, &rows, &more)) != 0)
            break;
        seen += rows;
        if (more || (want && seen >= want))
            continue;
        if (cpn_mono_ms() + CTL_WATCH_POLL_MS >= deadline) {
            rc = EXIT_TIMEOUT;
            break;
        }
        usleep(CTL_WATCH_POLL_MS * 1000);
    }
    if (rc == EXIT_TIMEOUT) {
        rc = want ? EXIT_TIMEOUT : 0;
        if (want)
            fprintf(stderr, "cpnctl: watch: %" PRIu64 " of %" PRIu64 " notices in %" PRIu64
                    " s\n", seen, want, o->timeout_s);
    }
    s_session_close(&s);
    return rc;
}

static const ctl_cmd_t s_cmds[] = {
    {"keygen", 0, cmd_keygen, "keygen --out NAME        write NAME.key (0600) and NAME.pub"},
    {"submit", 1, cmd_submit, "submit REQUEST.yaml [--access KEY=VALUE]... [--ssh-key FILE.pub]\n"
                              "                           ask for capacity, wait, save the lease;\n"
                              "                           access hints go to the peer's driver"},
    {"access", 1, cmd_access, "access LEASE-FILE        open the lease's access details (your --key)"},
    {"leases", 0, cmd_leases, "leases                   this tenant's leases at the broker"},
    {"watch", 0, cmd_watch, "watch [--count N] [--after ID]  follow this tenant's notices"},
    {"renew", 2, cmd_renew, "renew LEASE-FILE DUR     extend a lease (e.g. 2h)"},
    {"release", 1, cmd_release, "release LEASE-FILE       end a lease early"},
    {"offers", 0, cmd_offers, "offers                   the offers the broker sees"},
    {"status", 0, cmd_status, "status                   broker counters and uptime"},
    {"federation", 0, cmd_federation, "federation               members, state, offer counts"},
    {"verify", 1, cmd_verify, "verify FILE              verify a signed message chain or USAGE record\n"
                              "                           offline"},
    {"bill", 0, cmd_bill, "bill [FILE] [--from MS] [--to MS] [--json|--csv] [--save FILE]\n"
                          "                           amounts per lease and package, every record\n"
                          "                           checked: of a bill file, or (no FILE) this\n"
                          "                           tenant's records fetched from the broker"},
    {"verify-bill", 1, cmd_verify_bill, "verify-bill FILE         re-check every signature, chain and sum"},
    {"ledger", 2, cmd_ledger, "ledger export LEDGER [--from MS] [--to MS] [--tenant KEY] [--out FILE]\n"
                              "                           a broker ledger's USAGE records, checked, as CSV;\n"
                              "                           --out also writes them as a bill file"},
    {"settle", 6, cmd_settle, "settle --policy BROKER.yaml --with MEMBER --period YYYY-MM\n"
                              "       [--out FILE] [--theirs FILE]\n"
                              "                           the broker's signed settlement statement\n"
                              "                           with a member for a month, from its ledger;\n"
                              "                           --theirs reconciles it with the member's"},
    {"policy", 1, cmd_policy, "policy check FILE        validate a broker policy"},
};

static void s_usage(FILE *out)
{
    fprintf(out, "usage: cpnctl [options] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        fprintf(out, "  %s\n", s_cmds[i].usage);
    fprintf(out,
            "\noptions:\n"
            "  -b, --broker ENDPOINT   broker endpoint (env CPN_BROKER), e.g. tcp://127.0.0.1:7400\n"
            "  -B, --broker-key KEY    broker public key or .pub file (env CPN_BROKER_KEY);\n"
            "                          answers must carry its signature; enables CURVE\n"
            "  -k, --key FILE          tenant secret key file (env CPN_KEY)\n"
            "  -o, --out DIR           where submit saves lease files (default .)\n"
            "  -t, --timeout SECONDS   how long to wait for an answer (default 30)\n"
            "      --plain             no CURVE encryption (only for a broker that allows it)\n"
            "      --json              machine-readable output\n"
            "  -h, --help  -V, --version\n"
            "\nexit codes: 0 ok, 1 refused or invalid, 2 usage or local error, 3 no answer\n");
}

int main(int argc, char **argv)
{
    ctl_opts_t o = {.broker = getenv("CPN_BROKER"),
                    .broker_key = getenv("CPN_BROKER_KEY"),
                    .key = getenv("CPN_KEY"),
                    .out_dir = ".",
                    .timeout_s = 30};
    static const struct option longopts[] = {
        {"broker", required_argument, 0, 'b'}, {"broker-key", required_argument, 0, 'B'},
        {"key", required_argument, 0, 'k'},    {"out", required_argument, 0, 'o'},
        {"timeout", required_argument, 0, 't'}, {"plain", no_argument, 0, 'P'},
        {"json", no_argument, 0, 'j'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    cpn_log_set_ident("cpnctl");
    int c;
    /* "+" stops at the command, so its own options (keygen --out) reach it. */
    while ((c = getopt_long(argc, argv, "+b:B:k:o:t:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': o.broker = optarg; break;
        case 'B': o.broker_key = optarg; break;
        case 'k': o.key = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 't': o.timeout_s = strtoull(optarg, NULL, 10); break;
        case 'P': o.plain = true; break;
        case 'j': o.json = true; break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("cpnctl %s\n", PACKAGE_VERSION); return 0;
        default: s_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        s_usage(stderr);
        return EXIT_USAGE;
    }
    if (o.timeout_s == 0)
        o.timeout_s = 30;
    if (cpn_crypto_init() != CPN_OK) {
        fprintf(stderr, "cpnctl: libsodium failed to initialise\n");
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    o.argc = argc - optind - 1;
    o.argv = argv + optind + 1;
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        if (strcmp(name, s_cmds[i].name) != 0)
            continue;
        if (o.argc < s_cmds[i].min_args) {
            fprintf(stderr, "usage: cpnctl %s\n", s_cmds[i].usage);
            return EXIT_USAGE;
        }
        return s_cmds[i].fn(&o);
    }
    fprintf(stderr, "cpnctl: unknown command '%s'\n", name);
    s_usage(stderr);
    return EXIT_USAGE;
}
