/* test_hostile_peer.c - a peer that answers CLAIMs with correctly signed but inconsistent
 * LEASEs, against a real cpn-broker; and cpnctl handed files that are not what they claim.
 *
 * The test plays the peer itself: a DEALER with the peer's key (trusted by the broker's
 * policy) advertises one package, then answers each CLAIM the broker sends with a LEASE it
 * signs correctly but spoils one way: price 1 instead of the claim's, a made-up lease id, an
 * end 1000 days out (and a start 999 days out), state "released", and, unasked, an old CLAIM
 * under a new lease id. The broker must record nothing (the tenant's `leases` do not show
 * it), send no GRANT (the tenant gets its NACK `timeout` instead), and count each refusal
 * (`refused` `inconsistent` in status). An honest LEASE still becomes a GRANT that verifies.
 *
 * cpnctl: `release` on a file holding a REQUEST (or a GRANT embedding a REQUEST) exits 2 with
 * a message, never crashing (it decoded before checking types: a stack overflow under ASan);
 * `verify -B` refuses a chain not granted by the pinned broker; `--json verify` prints valid
 * JSON whatever the input (a garbage route, hostile strings).
 *
 * Every wait is bounded; the broker is stopped in the teardown and gets SIGKILL should the
 * test die first. CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define WAIT_MS 8000   /* one answer from the broker: claim_timeout 1 s, loaded machine */
#define READY_MS 30000 /* the broker up, the offer in the book (a bound, not a timing) */
#define STOP_MS 30000
#define POLL_MS 100
#define PORT_TRIES 5
#define RUN_MS 60000 /* one cpnctl run */
#define DAY_MS (24ull * 3600 * 1000)

typedef struct {
    char dir[256], policy[320], log[320], bin[1024];
    char endpoint[64];
    cpn_identity_t *broker, *peer, *other;
    pid_t pid;
    h_tenant_t tenant;
    ctl_client_t *evil;  /* the test, as the peer */
    uint8_t *good_claim; /* the CLAIM of the honest case, for the replay case */
    size_t good_claim_len;
} fx_t;

static fx_t g = {.tenant = {.name = "acme"}};

/* ---- files, processes ---- */

static void s_write_bytes(const char *name, const uint8_t *b, size_t n)
{
    char p[400];
    h_path(p, sizeof p, g.dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static char *s_read_text(const char *name)
{
    char p[400];
    h_path(p, sizeof p, g.dir, name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Run cpnctl with args (NULL-terminated), stdout and stderr into files of the directory;
 * its exit status, or -1 if it was killed by a signal (a crash) or ran out of time. */
static int s_cpnctl(const char *out, const char *err, const char *const *args)
{
    char bin[1100], po[400], pe[400];
    snprintf(bin, sizeof bin, "%s/cpnctl", g.bin);
    h_path(po, sizeof po, g.dir, out);
    h_path(pe, sizeof pe, g.dir, err);
    const char *argv[16] = {bin};
    size_t n = 1;
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(po, "w", stdout) || !freopen(pe, "w", stderr))
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    uint64_t until = cpn_mono_ms() + RUN_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (cpn_mono_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- a small strict JSON checker: one value, then only whitespace ---- */

static const char *s_js_value(const char *p, int depth);

static const char *s_js_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *s_js_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (;;) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"')
            return p;
        if (c < 0x20)
            return NULL; /* raw control character: unescaped */
        if (c == '\\') {
            char e = *p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, p++)
                    if (!strchr("0123456789abcdefABCDEF", *p) || !*p)
                        return NULL;
            } else if (!e || !strchr("\"\\/bfnrt", e))
                return NULL;
        }
    }
}

static const char *s_js_value(const char *p, int depth)
{
    p = s_js_ws(p);
    if (depth > 200)
        return NULL;
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = s_js_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (!(p = s_js_string(s_js_ws(p))))
                    return NULL;
                p = s_js_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if (!(p = s_js_value(p, depth + 1)))
                return NULL;
            p = s_js_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (*p == '"')
        return s_js_string(p);
    if (!strncmp(p, "true", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    if (!strncmp(p, "null", 4))
        return p + 4;
    const char *s = p;
    if (*p == '-')
        p++;
    while ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
           *p == '-')
        p++;
    return p > s ? p : NULL;
}

static bool s_json_valid(const char *text)
{
    const char *end = s_js_value(text, 0);
    return end && *s_js_ws(end) == 0;
}

/* ---- the broker ---- */

static void s_write_policy(void)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "test-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .peers = "evil-dc",
                              .operators = "acme",
                              .limits = "  claim_timeout: 1s\n"
                                        "  claim_tries: 1\n",
                          });
}

/* The fake peer's AD: one CPU package, plenty of units. */
static void s_advertise(void)
{
    cpn_package_t pkg;
    memset(&pkg, 0, sizeof pkg);
    snprintf(pkg.id, sizeof pkg.id, "%s", "cpu8");
    pkg.cores = 8;
    pkg.mem_bytes = 32ull << 30;
    snprintf(pkg.region, sizeof pkg.region, "%s", "cn-east");
    pkg.price = 1000;
    pkg.total = 100;
    pkg.free = 100;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "%s", "evil-dc");
    ad.ttl_s = 3600;
    ad.n_packages = 1;
    ad.packages = &pkg;
    assert_int_equal(ctl_client_send(g.evil, CPN_MSG_AD, &ad, NULL), CPN_OK);
}

static uint64_t s_status_refused(const char *slug)
{
    h_ans_t a;
    assert_int_equal(h_query(g.tenant.cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    uint64_t n = h_u64(h_get(h_get(&a.obj, "refused"), slug));
    h_ans_free(&a);
    return n;
}

/* Wait until the broker counts `want` refusals under `slug`; the count at the end. */
static uint64_t s_wait_refused(const char *slug, uint64_t want)
{
    uint64_t n = 0, until = cpn_mono_ms() + WAIT_MS;
    while ((n = s_status_refused(slug)) < want && cpn_mono_ms() < until)
        usleep(POLL_MS * 1000);
    return n;
}

/* Does the tenant's `leases` list a lease whose `key` is `value`? */
static bool s_ledger_has(const char *key, const char *value)
{
    h_ans_t a;
    bool found = false;
    assert_int_equal(h_query(g.tenant.cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < a.obj.via.array.size; i++)
        found = found || h_str_is(h_get(&a.obj.via.array.ptr[i], key), value);
    h_ans_free(&a);
    return found;
}

static bool s_offer_listed(void)
{
    h_ans_t a;
    bool found = false;
    if (h_query(g.tenant.cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++)
        found = found || h_str_is(h_get(&a.obj.via.array.ptr[i], "package"), "cpu8");
    h_ans_free(&a);
    return found;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pid, STOP_MS);
    if (!clean)
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
    ctl_client_destroy(&g.evil);
    h_tenants_close(&g.tenant, 1);
    cpn_identity_destroy(&g.tenant.id);
    cpn_identity_destroy(&g.broker);
    cpn_identity_destroy(&g.peer);
    cpn_identity_destroy(&g.other);
    free(g.good_claim);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "hostile") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.log, sizeof g.log, g.dir, "broker.log");
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, "evil-dc", &g.peer);
    h_keygen(g.dir, "other", &g.other);
    h_keygen(g.dir, "acme", &g.tenant.id);
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        int port = h_free_port(NULL);
        if (port <= 0)
            continue;
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
        s_write_policy();
        h_tenants_open(&g.tenant, 1, g.endpoint, cpn_identity_pk(g.broker), true);
        g.pid = h_spawn(g.bin, "cpn-broker", g.policy, g.log);
        up = h_wait_up(&g.pid, g.tenant.cli, READY_MS);
        if (!up) {
            h_stop(&g.pid, STOP_MS);
            h_tenants_close(&g.tenant, 1);
        }
    }
    if (!up) {
        fprintf(stderr, "# cpn-broker did not come up (log: %s)\n", g.log);
        return -1;
    }
    /* No broker key pinned: the tenant's RELEASE, relayed verbatim, is signed by the tenant. */
    if (ctl_client_new(g.endpoint, g.peer, NULL, true, &g.evil) != CPN_OK)
        return -1;
    uint64_t until = cpn_mono_ms() + READY_MS;
    bool listed = false;
    while (!listed && cpn_mono_ms() < until) {
        s_advertise();
        listed = s_offer_listed();
        if (!listed)
            usleep(POLL_MS * 1000);
    }
    if (!listed) {
        fprintf(stderr, "# the fake peer's offer did not reach the book\n");
        return -1;
    }
    return 0;
}

/* ---- the hostile peer ---- */

typedef void (*s_spoil_fn)(cpn_lease_t *l);

/* The next CLAIM the broker sends the fake peer (frame kept in *frame_p), decoded. */
static void s_recv_claim(uint8_t **frame_p, size_t *len, cpn_env_t *env, cpn_claim_t *claim)
{
    uint64_t until = cpn_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(ctl_client_recv(g.evil, until, frame_p, len, env), CPN_OK);
        if (env->type == CPN_MSG_CLAIM)
            break;
        free(*frame_p); /* ERRORs, say: not what we wait for */
        *frame_p = NULL;
    }
    assert_int_equal(cpn_claim_decode(env, NULL, claim), CPN_OK);
}

/* The LEASE an honest peer would sign for `claim` (framed in claim_frame). */
static void s_honest(const uint8_t *claim_frame, size_t claim_len, const cpn_claim_t *claim,
                     const char *req_id, cpn_lease_t *l)
{
    memset(l, 0, sizeof *l);
    l->claim.ptr = claim_frame;
    l->claim.len = claim_len;
    cpn_chain_lease_id(cpn_identity_pk(g.peer), cpn_identity_pk(g.tenant.id), req_id, l->lease_id);
    snprintf(l->package, sizeof l->package, "%s", claim->package);
    l->units = claim->units;
    l->price = claim->price;
    l->start_ms = cpn_now_ms();
    l->end_ms = l->start_ms + claim->duration_s * 1000;
    snprintf(l->state, sizeof l->state, "%s", "active");
}

/* A request served by the fake peer, whose LEASE `spoil` changes (NULL: honest). The tenant's
 * answer is left in *a; the lease id the LEASE carried in lease_id. */
static void s_serve(const char *req_id, s_spoil_fn spoil, h_ans_t *a, char lease_id[CPN_NAME_MAX])
{
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", req_id);
    req.units = 1;
    req.duration_s = 3600;
    req.cores = 8;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    uint8_t *cf = NULL;
    size_t clen = 0;
    cpn_env_t cenv;
    cpn_claim_t claim;
    s_recv_claim(&cf, &clen, &cenv, &claim);
    cpn_lease_t l;
    s_honest(cf, clen, &claim, req_id, &l);
    if (spoil)
        spoil(&l);
    snprintf(lease_id, CPN_NAME_MAX, "%s", l.lease_id);
    assert_int_equal(ctl_client_send(g.evil, CPN_MSG_LEASE, &l, NULL), CPN_OK);
    h_await(g.tenant.cli, seq, req_id, NULL, WAIT_MS, a);
    if (!spoil) {
        free(g.good_claim);
        g.good_claim = cf;
        g.good_claim_len = clen;
    } else
        free(cf);
}

static void s_price_1(cpn_lease_t *l)
{
    l->price = 1;
}

static void s_made_up_id(cpn_lease_t *l)
{
    snprintf(l->lease_id, sizeof l->lease_id, "%s", "Lmadeup000000000");
}

static void s_end_far(cpn_lease_t *l)
{
    l->end_ms = l->start_ms + 1000 * DAY_MS;
}

static void s_start_far(cpn_lease_t *l)
{
    l->start_ms += 999 * DAY_MS; /* end = start + duration still, but 999 days out */
    l->end_ms += 999 * DAY_MS;
}

static void s_released(cpn_lease_t *l)
{
    snprintf(l->state, sizeof l->state, "%s", "released");
}

/* An honest LEASE still becomes a GRANT whose whole chain the opener accepts. */
static void test_honest_lease_granted(void **state)
{
    (void)state;
    h_ans_t a;
    char id[CPN_NAME_MAX];
    s_serve("honest-1", NULL, &a, id);
    assert_int_equal(a.type, CPN_MSG_GRANT);
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t o = {.broker_pk = cpn_identity_pk(g.broker)};
    assert_int_equal(cpn_chain_open(a.frame, a.len, CPN_MSG_GRANT, &o, ch), CPN_OK);
    free(ch);
    s_write_bytes("honest.lease", a.frame, a.len);
    h_ans_free(&a);
    assert_true(s_ledger_has("lease", id));
}

/* Each spoiled LEASE: no GRANT (the tenant's answer is the NACK timeout), nothing in the
 * ledger, one more `inconsistent` refusal. */
static void test_inconsistent_leases_not_countersigned(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        s_spoil_fn spoil;
    } cases[] = {
        {"price-1", s_price_1},     {"made-up-id", s_made_up_id}, {"end-far", s_end_far},
        {"start-far", s_start_far}, {"released", s_released},
    };
    uint64_t n0 = s_status_refused("inconsistent");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        h_ans_t a;
        char id[CPN_NAME_MAX];
        s_serve(cases[i].req, cases[i].spoil, &a, id);
        if (a.type != CPN_MSG_NACK || a.code != CPN_E_TIMEOUT)
            fail_msg("%s: the tenant got %s (code %d), not NACK timeout", cases[i].req,
                     cpn_msg_name(a.type) ? cpn_msg_name(a.type) : "nothing", a.code);
        h_ans_free(&a);
        assert_int_equal(s_wait_refused("inconsistent", n0 + i + 1), n0 + i + 1);
        if (s_ledger_has("request", cases[i].req))
            fail_msg("%s: the ledger records a lease for it", cases[i].req);
    }
}

/* Unasked: the honest CLAIM again, signed into a LEASE under a new lease id. */
static void test_old_claim_under_new_lease_id_refused(void **state)
{
    (void)state;
    assert_non_null(g.good_claim);
    cpn_env_t cenv;
    cpn_claim_t claim;
    assert_int_equal(cpn_env_parse(g.good_claim, g.good_claim_len, NULL, &cenv), CPN_OK);
    assert_int_equal(cpn_claim_decode(&cenv, NULL, &claim), CPN_OK);
    cpn_lease_t l;
    s_honest(g.good_claim, g.good_claim_len, &claim, "honest-1", &l);
    snprintf(l.lease_id, sizeof l.lease_id, "%s", "Lsecond000000000");
    uint64_t n0 = s_status_refused("inconsistent");
    assert_int_equal(ctl_client_send(g.evil, CPN_MSG_LEASE, &l, NULL), CPN_OK);
    assert_int_equal(s_wait_refused("inconsistent", n0 + 1), n0 + 1);
    assert_false(s_ledger_has("lease", "Lsecond000000000"));
}

/* The state of lease `id` in the tenant's `leases` ("" if not listed). */
static void s_ledger_state(const char *id, char *out, size_t cap)
{
    h_ans_t a;
    out[0] = 0;
    assert_int_equal(h_query(g.tenant.cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        const msgpack_object *st = h_get(row, "state");
        if (h_str_is(h_get(row, "lease"), id) && st && st->type == MSGPACK_OBJECT_STR)
            snprintf(out, cap, "%.*s", (int)st->via.str.size, st->via.str.ptr);
    }
    h_ans_free(&a);
}

/* A RENEW the broker relays, answered with a "released" LEASE: not the answer to a RENEW.
 * No GRANT (the tenant's RENEW times out), the ledger keeps the lease active, one more
 * `inconsistent`. */
static void test_renew_answered_by_release_refused(void **state)
{
    (void)state;
    assert_non_null(g.good_claim);
    cpn_env_t cenv;
    cpn_claim_t claim;
    assert_int_equal(cpn_env_parse(g.good_claim, g.good_claim_len, NULL, &cenv), CPN_OK);
    assert_int_equal(cpn_claim_decode(&cenv, NULL, &claim), CPN_OK);
    cpn_lease_t l;
    s_honest(g.good_claim, g.good_claim_len, &claim, "honest-1", &l);
    uint64_t n0 = s_status_refused("inconsistent");
    cpn_renew_t rn;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", l.lease_id);
    memcpy(rn.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    rn.extend_s = 60;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_RENEW, &rn, &seq), CPN_OK);
    uint8_t *f = NULL;
    size_t n = 0;
    cpn_env_t env;
    uint64_t until = cpn_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(ctl_client_recv(g.evil, until, &f, &n, &env), CPN_OK);
        if (env.type == CPN_MSG_RENEW)
            break;
        free(f);
    }
    free(f);
    snprintf(l.state, sizeof l.state, "%s", "released");
    l.end_ms = cpn_now_ms();
    assert_int_equal(ctl_client_send(g.evil, CPN_MSG_LEASE, &l, NULL), CPN_OK);
    h_ans_t a;
    cpn_msg_type_t t = h_await(g.tenant.cli, seq, "honest-1", NULL, WAIT_MS, &a);
    if (t != CPN_MSG_NACK || a.code != CPN_E_TIMEOUT)
        fail_msg("the RENEW got %s %s, not NACK timeout", t ? cpn_msg_name(t) : "nothing",
                 cpn_errname(a.code));
    h_ans_free(&a);
    assert_int_equal(s_wait_refused("inconsistent", n0 + 1), n0 + 1);
    char st[32];
    s_ledger_state(l.lease_id, st, sizeof st);
    assert_string_equal(st, "active");
}

/* The same request id again: the same GRANT for the same terms; NACK conflict for other
 * terms; and once the lease is released, NACK expired, never the old GRANT saying "active". */
static void test_retry_conflict_and_after_release(void **state)
{
    (void)state;
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", "honest-1");
    req.units = 1;
    req.duration_s = 3600;
    req.cores = 8;
    h_ans_t a;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    assert_int_equal(h_await(g.tenant.cli, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);

    req.cores = 4; /* the same id for something else */
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    assert_int_equal(h_await(g.tenant.cli, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_CONFLICT);
    h_ans_free(&a);

    /* RELEASE through the broker; the fake peer answers honestly: released, ended now */
    cpn_env_t cenv;
    cpn_claim_t claim;
    assert_int_equal(cpn_env_parse(g.good_claim, g.good_claim_len, NULL, &cenv), CPN_OK);
    assert_int_equal(cpn_claim_decode(&cenv, NULL, &claim), CPN_OK);
    cpn_lease_t l;
    s_honest(g.good_claim, g.good_claim_len, &claim, "honest-1", &l);
    cpn_release_t rel;
    memset(&rel, 0, sizeof rel);
    snprintf(rel.lease_id, sizeof rel.lease_id, "%s", l.lease_id);
    memcpy(rel.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_RELEASE, &rel, &seq), CPN_OK);
    uint8_t *f = NULL;
    size_t n = 0;
    cpn_env_t env;
    uint64_t until = cpn_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(ctl_client_recv(g.evil, until, &f, &n, &env), CPN_OK);
        if (env.type == CPN_MSG_RELEASE)
            break;
        free(f);
    }
    free(f);
    snprintf(l.state, sizeof l.state, "%s", "released");
    l.end_ms = cpn_now_ms();
    if (l.end_ms < l.start_ms)
        l.end_ms = l.start_ms;
    assert_int_equal(ctl_client_send(g.evil, CPN_MSG_LEASE, &l, NULL), CPN_OK);
    assert_int_equal(h_await(g.tenant.cli, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);

    req.cores = 8;
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    assert_int_equal(h_await(g.tenant.cli, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_EXPIRED);
    assert_non_null(strstr(a.reason, "released"));
    h_ans_free(&a);
}

/* Over CURVE, a connection speaks only as the key it authenticated with. A second broker
 * with curve: true; tenant `other`'s connection carries a REQUEST signed by acme: refused at
 * intake (ERROR untrusted, counted), while acme's own connection is served. */
static void test_curve_key_binds_signer(void **state)
{
    (void)state;
    char ep[64], policy[400], log[400];
    pid_t pid = 0;
    ctl_client_t *acme = NULL, *other = NULL;
    bool up = false;
    h_path(policy, sizeof policy, g.dir, "policy-curve.yaml");
    h_path(log, sizeof log, g.dir, "broker-curve.log");
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        int port = h_free_port(NULL);
        if (port <= 0)
            continue;
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
        h_write_policy(g.dir, &(h_policy_t){
                                  .file = "policy-curve.yaml",
                                  .name = "curve-broker",
                                  .key = "broker.key",
                                  .listen = ep,
                                  .ledger = "ledger-curve.db",
                                  .curve = true,
                                  .peers = "evil-dc",
                                  .operators = "acme",
                                  .tenants = "other",
                              });
        up = h_start_broker(g.bin, policy, log, &pid, ep, g.tenant.id, cpn_identity_pk(g.broker),
                            false, &acme, READY_MS);
        if (!up) {
            h_stop(&pid, STOP_MS);
            ctl_client_destroy(&acme);
        }
    }
    assert_true(up);
    assert_int_equal(ctl_client_new(ep, g.other, cpn_identity_pk(g.broker), false, &other), CPN_OK);
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", "carried");
    req.units = 1;
    req.duration_s = 60;
    req.cores = 1;
    uint64_t now = cpn_now_ms(), seq = cpn_seq_next(0, now);
    uint8_t *f = NULL;
    size_t n = 0;
    assert_int_equal(cpn_msg_build(g.tenant.id, CPN_MSG_REQUEST, seq, now, &req, &f, &n), CPN_OK);
    assert_int_equal(ctl_client_send_frame(other, f, n), CPN_OK);
    free(f);
    h_ans_t a;
    cpn_msg_type_t t = h_await(other, seq, req.id, NULL, WAIT_MS, &a);
    if (t != CPN_MSG_ERROR || a.code != CPN_E_UNTRUSTED)
        fail_msg("acme's REQUEST on other's connection: %s %s", t ? cpn_msg_name(t) : "nothing",
                 cpn_errname(a.code));
    h_ans_free(&a);
    /* acme itself is served (no offers here: NACK no-match, but served) */
    snprintf(req.id, sizeof req.id, "%s", "own");
    assert_int_equal(ctl_client_send(acme, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    assert_int_equal(h_await(acme, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_NO_MATCH);
    h_ans_free(&a);
    ctl_client_destroy(&other);
    ctl_client_destroy(&acme);
    assert_true(h_stop(&pid, STOP_MS));
}

/* ---- cpnctl and files ---- */

static void test_cpnctl_release_request_file_refused(void **state)
{
    (void)state;
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", "not-a-lease");
    req.units = 1;
    req.duration_s = 60;
    req.cores = 1;
    uint8_t *f = NULL;
    size_t n = 0;
    assert_int_equal(cpn_msg_build(g.tenant.id, CPN_MSG_REQUEST, 1, cpn_now_ms(), &req, &f, &n),
                     CPN_OK);
    s_write_bytes("request.frame", f, n);
    /* and a GRANT (by the real broker key even) that embeds the REQUEST where a LEASE goes */
    cpn_grant_t gr;
    memset(&gr, 0, sizeof gr);
    gr.lease.ptr = f;
    gr.lease.len = n;
    snprintf(gr.request_id, sizeof gr.request_id, "%s", "not-a-lease");
    uint8_t *gf = NULL;
    size_t gn = 0;
    assert_int_equal(cpn_msg_build(g.broker, CPN_MSG_GRANT, 2, cpn_now_ms(), &gr, &gf, &gn),
                     CPN_OK);
    s_write_bytes("grant-of-request.lease", gf, gn);
    free(gf);
    free(f);
    char key[400], file[400];
    h_path(key, sizeof key, g.dir, "acme.key");
    const char *names[] = {"request.frame", "grant-of-request.lease"};
    for (size_t i = 0; i < 2; i++) {
        h_path(file, sizeof file, g.dir, names[i]);
        const char *args[] = {"-k", key, "-b", g.endpoint, "release", file, NULL};
        int rc = s_cpnctl("release.out", "release.err", args);
        char *err = s_read_text("release.err");
        if (rc != 2 || !strstr(err, "not a lease file"))
            fail_msg("cpnctl release %s: exit %d, stderr: %s", names[i], rc, err);
        free(err);
    }
    /* a real lease, but the broker pinned is another: refused before anything is sent */
    char opub[400];
    h_path(opub, sizeof opub, g.dir, "other.pub");
    h_path(file, sizeof file, g.dir, "honest.lease");
    const char *pinned[] = {"--plain", "-t", "5",        "-B",      opub, "-k",
                            key,       "-b", g.endpoint, "release", file, NULL};
    int rc = s_cpnctl("release.out", "release.err", pinned);
    char *err = s_read_text("release.err");
    if (rc != 2 || !strstr(err, "not signed by the expected key"))
        fail_msg("cpnctl -B other release honest.lease: exit %d, stderr: %s", rc, err);
    free(err);
}

static void test_cpnctl_verify_honours_pinned_broker(void **state)
{
    (void)state;
    char file[400], bpub[400], opub[400];
    h_path(file, sizeof file, g.dir, "honest.lease");
    h_path(bpub, sizeof bpub, g.dir, "broker.pub");
    h_path(opub, sizeof opub, g.dir, "other.pub");
    const char *good[] = {"-B", bpub, "verify", file, NULL};
    assert_int_equal(s_cpnctl("verify.out", "verify.err", good), 0);
    const char *bad[] = {"-B", opub, "verify", file, NULL};
    assert_int_equal(s_cpnctl("verify.out", "verify.err", bad), 1);
    char *err = s_read_text("verify.err");
    if (!strstr(err, "INVALID"))
        fail_msg("verify -B other: %s", err);
    free(err);
}

/* A CLAIM by the broker whose route is garbage, and strings with quotes and control
 * characters: the JSON cpnctl prints stays JSON. */
static void test_cpnctl_json_verify_valid_whatever_the_input(void **state)
{
    (void)state;
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", "q\"uo\\te}");
    req.units = 1;
    req.duration_s = 60;
    req.cores = 1;
    uint8_t *rf = NULL, *cf = NULL;
    size_t rn = 0, cn = 0;
    assert_int_equal(cpn_msg_build(g.tenant.id, CPN_MSG_REQUEST, 1, cpn_now_ms(), &req, &rf, &rn),
                     CPN_OK);
    static const uint8_t garbage[] = {0x92, 0xc4, 0x02, '{', '"', 0xc4, 0x01, 0x00};
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request.ptr = rf;
    c.request.len = rn;
    memcpy(c.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "%s", "pk\"g\n");
    c.units = 1;
    c.price = 1;
    c.duration_s = 60;
    c.route.ptr = garbage;
    c.route.len = sizeof garbage;
    assert_int_equal(cpn_msg_build(g.broker, CPN_MSG_CLAIM, 2, cpn_now_ms(), &c, &cf, &cn), CPN_OK);
    s_write_bytes("garbage-route.claim", cf, cn);
    free(cf);
    free(rf);
    char file[400];
    h_path(file, sizeof file, g.dir, "garbage-route.claim");
    const char *args[] = {"--json", "verify", file, NULL};
    assert_int_equal(s_cpnctl("json.out", "json.err", args), 1);
    char *out = s_read_text("json.out");
    if (!s_json_valid(out))
        fail_msg("not JSON: %s", out);
    free(out);
    /* and the honest lease's JSON too */
    h_path(file, sizeof file, g.dir, "honest.lease");
    const char *ok[] = {"--json", "verify", file, NULL};
    assert_int_equal(s_cpnctl("json.out", "json.err", ok), 0);
    out = s_read_text("json.out");
    assert_true(s_json_valid(out));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_honest_lease_granted),
        cmocka_unit_test(test_inconsistent_leases_not_countersigned),
        cmocka_unit_test(test_old_claim_under_new_lease_id_refused),
        cmocka_unit_test(test_renew_answered_by_release_refused),
        cmocka_unit_test(test_retry_conflict_and_after_release),
        cmocka_unit_test(test_curve_key_binds_signer),
        cmocka_unit_test(test_cpnctl_release_request_file_refused),
        cmocka_unit_test(test_cpnctl_verify_honours_pinned_broker),
        cmocka_unit_test(test_cpnctl_json_verify_valid_whatever_the_input),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
