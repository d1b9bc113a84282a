/* test_fed_summary.c - summaries for distant brokers (docs/FEDERATION.md), with real brokers.
 *
 * Brokers A - B - C in a line (plain TCP on 127.0.0.1), and a fourth member D of C's policy
 * that is no daemon: the test speaks for it, sending C RELAYs it builds itself. A real cpn-peer
 * pa on A advertises two packages. A publishes summaries; C keeps a budget of one package
 * for ADs from beyond one hop, so pa's AD (two packages, two hops away) stays out of C's
 * book and only A's summary reaches it; B, with no budget, keeps pa's AD.
 *
 *  - C lists A's summary rows and not pa's packages; a request at C gets a LEASE signed by
 *    pa: C claims the row from A, A picks pa's package and claims it (the GRANT's chain
 *    shows the route C -> B -> A, and verifies); the same request sent again gets the same
 *    lease (one intent per request id at C, one at A);
 *  - loss, duplication and reordering of summary RELAYs cannot resurrect an older summary
 *    (D sends summaries of a broker E out of order, and A's own older summary again): C keeps
 *    the newest; an empty summary ends E's rows for good, and one of a broker H never heard of
 *    keeps H's older rows out when they come after it; a WITHDRAW of a peer C never knew,
 *    overtaking the peer's AD, keeps that AD out too;
 *  - pa stops (its WITHDRAW): A's next summary is empty and C's copy of A's rows goes.
 *
 * Every wait is bounded and waits for a positive event (to know that C has handled what D
 * sent, D sends last a summary of another broker F on the same connection, and the test waits
 * until C lists it: C handles one connection's frames in order). Every process started is
 * stopped in the group teardown. CPN_TEST_KEEP=1 keeps the temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"

#define WAIT_MS 10000  /* one answer from a broker */
#define READY_MS 30000 /* daemons up, offers and summaries across the federation (a bound) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define POLL_MS 100
#define PORT_TRIES 5
#define HELLO_S 2 /* federation.hello_timeout */

enum { B_A, B_B, B_C, B_D, B__COUNT }; /* D: a member of C played by the test */

static struct {
    char dir[256], bin[1024];
    h_broker_t b[B__COUNT];
    cpn_identity_t *pa, *ops, *e, *f, *h; /* the peer; the operator; brokers D speaks for */
    cpn_identity_t *pz;                   /* a peer D speaks for (no daemon) */
    ctl_client_t *d;                      /* D's connection to C */
    pid_t pa_pid;
    uint32_t marker; /* F's summaries, each with a new row id */
} g = {
    .b = {{.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "d"}},
};

static void s_write_policy(int i)
{
    h_policy_t p = {
        .name = g.b[i].name,
        .listen = g.b[i].endpoint,
        .hello_s = HELLO_S,
        .fed_more = i == B_A   ? "  summary:\n    publish: true\n"
                    : i == B_C ? "  summary:\n    budget: 1\n    distance: 1\n"
                                 "    trust_any: true\n"
                               : "",
        .peers = "pa pz",
        .operators = "ops",
        .limits = "  claim_timeout: 3s\n"
                  "  rate:\n"
                  "    per_sender: 0/s\n",
    };
    size_t n = 0;
    if (i == B_A || i == B_C)
        p.members[n++] = (h_member_t){.name = g.b[B_B].name, .endpoint = g.b[B_B].endpoint};
    if (i == B_B) {
        p.members[n++] = (h_member_t){.name = g.b[B_A].name, .endpoint = g.b[B_A].endpoint};
        p.members[n++] = (h_member_t){.name = g.b[B_C].name, .endpoint = g.b[B_C].endpoint};
    }
    if (i == B_C)
        p.members[n++] = (h_member_t){.name = g.b[B_D].name, .endpoint = g.b[B_D].endpoint};
    h_write_policy(g.dir, &p);
}

static void s_write_peer(void)
{
    char pkgs[512] = "";
    h_package(pkgs, sizeof pkgs, "p8", 10, "2.0", 8, "32GiB");
    h_package(pkgs, sizeof pkgs, "p16", 4, "3.5", 16, "64GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){.name = "pa",
                                              .refresh = "60s",
                                              .max_lease = "7d",
                                              .broker = g.b[B_A].endpoint,
                                              .broker_name = "a",
                                              .packages = pkgs});
}

/* ---- what a broker lists ---- */

/* Packages in broker b's offers whose id starts with `prefix`, and whether `exact` is one. */
static uint32_t s_listed(int b, const char *prefix, const char *exact, bool *has_exact)
{
    h_ans_t a;
    uint32_t n = 0;
    if (has_exact)
        *has_exact = false;
    if (h_query(g.b[b].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return 0;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *p = h_get(&a.obj.via.array.ptr[i], "package");
        if (!p || p->type != MSGPACK_OBJECT_STR)
            continue;
        if (p->via.str.size >= strlen(prefix) &&
            memcmp(p->via.str.ptr, prefix, strlen(prefix)) == 0)
            n++;
        if (has_exact && exact && h_str_is(p, exact))
            *has_exact = true;
    }
    h_ans_free(&a);
    return n;
}

static bool s_lists(int b, const char *pkg)
{
    bool has = false;
    (void)s_listed(b, "", pkg, &has);
    return has;
}

/* Wait up to ms until broker b lists `pkg` (or no longer does). */
static bool s_wait_lists(int b, const char *pkg, bool listed, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_lists(b, pkg) == listed)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* Wait up to ms until broker b lists exactly `n` summary rows of A's (ids "s" + 16 hex). */
static bool s_wait_rows(int b, uint32_t n, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_listed(b, "s", NULL, NULL) == n)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* Counter `key` of broker b's status (0 if absent). */
static uint64_t s_status_u64(int b, const char *key)
{
    h_ans_t a;
    uint64_t v = 0;
    if (h_query(g.b[b].cli, "status", WAIT_MS, &a) == CPN_MSG_STATUS)
        v = h_u64(h_get(&a.obj, key));
    h_ans_free(&a);
    return v;
}

/* Wait up to WAIT_MS until counter `key` of broker b is at least `min` (a STATUS may answer
 * an earlier QUERY of the connection, from before); its last value. */
static uint64_t s_wait_status(int b, const char *key, uint64_t min)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS, v = 0;
    while ((v = s_status_u64(b, key)) < min && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    return v;
}

/* ---- D's RELAYs ---- */

/* A SUMMARY of broker `who` with seq `seq` and one row `row` (NULL: no rows). */
static void s_summary(const cpn_identity_t *who, uint64_t seq, const char *row, uint8_t **frame,
                      size_t *len)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    cpn_ad_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "test");
    s.ttl_s = 600;
    if (row) {
        snprintf(p.id, sizeof p.id, "%s", row);
        snprintf(p.region, sizeof p.region, "cn-east");
        p.cores = 4;
        p.mem_bytes = (uint64_t)8 << 30;
        p.price = 1000;
        p.total = 5;
        p.free = 5;
        s.packages = &p;
        s.n_packages = 1;
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    assert_int_equal(cpn_msg_encode(CPN_MSG_SUMMARY, &s, &body, &body_len), CPN_OK);
    assert_int_equal(cpn_env_seal(who, CPN_MSG_SUMMARY, seq, cpn_now_ms(), body, body_len, frame,
                                  len),
                     CPN_OK);
    free(body);
}

/* D relays a frame to C (hops 1). */
static void s_relay(const uint8_t *frame, size_t len)
{
    cpn_relay_t r = {.hops = 1, .msg = {frame, len}};
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.d, CPN_MSG_RELAY, &r, &seq), CPN_OK);
}

/* D relays a SUMMARY of `who`. */
static void s_relay_summary(const cpn_identity_t *who, uint64_t seq, const char *row)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    s_summary(who, seq, row, &frame, &len);
    s_relay(frame, len);
    free(frame);
}

/* D relays pz's AD (seq, one package `pkg`) or, pkg NULL, its WITHDRAW. */
static void s_relay_pz(uint64_t seq, const char *pkg)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    cpn_withdraw_t w;
    memset(&w, 0, sizeof w);
    if (pkg) {
        snprintf(p.id, sizeof p.id, "%s", pkg);
        snprintf(p.region, sizeof p.region, "cn-east");
        p.cores = 2;
        p.mem_bytes = (uint64_t)4 << 30;
        p.price = 700;
        p.total = 3;
        p.free = 3;
        snprintf(ad.name, sizeof ad.name, "pz");
        ad.ttl_s = 600;
        ad.packages = &p;
        ad.n_packages = 1;
    }
    cpn_msg_type_t type = pkg ? CPN_MSG_AD : CPN_MSG_WITHDRAW;
    uint8_t *body = NULL, *frame = NULL;
    size_t body_len = 0, len = 0;
    assert_int_equal(cpn_msg_encode(type, pkg ? (const void *)&ad : &w, &body, &body_len), CPN_OK);
    assert_int_equal(cpn_env_seal(g.pz, type, seq, cpn_now_ms(), body, body_len, &frame, &len),
                     CPN_OK);
    s_relay(frame, len);
    free(body);
    free(frame);
}

/* D sends a new summary of F last, and the test waits until C lists its row: C has handled
 * everything D sent before (one connection, in order). */
static void s_barrier(void)
{
    char row[32];
    snprintf(row, sizeof row, "fmark%u", ++g.marker);
    s_relay_summary(g.f, 1000 + g.marker, row);
    assert_true(s_wait_lists(B_C, row, true, WAIT_MS));
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pa_pid, STOP_MS);
    ctl_client_destroy(&g.d);
    clean = h_brokers_stop(g.b, B__COUNT, STOP_MS) && clean;
    cpn_identity_destroy(&g.pa);
    cpn_identity_destroy(&g.ops);
    cpn_identity_destroy(&g.e);
    cpn_identity_destroy(&g.f);
    cpn_identity_destroy(&g.h);
    cpn_identity_destroy(&g.pz);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

/* A, B and C are started; D is played by the test: C's policy names its endpoint. */
static bool s_start_brokers(void)
{
    g.b[B_D].port = h_free_port(NULL);
    if (g.b[B_D].port <= 0)
        return false;
    snprintf(g.b[B_D].endpoint, sizeof g.b[B_D].endpoint, "tcp://127.0.0.1:%d", g.b[B_D].port);
    return h_brokers_start(g.b, B_D, g.bin, g.dir, NULL, s_write_policy, g.ops, PORT_TRIES,
                           READY_MS);
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "fed-summary") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    h_keygen(g.dir, "pa", &g.pa);
    h_keygen(g.dir, "ops", &g.ops);
    h_keygen(g.dir, "e", &g.e);
    h_keygen(g.dir, "f", &g.f);
    h_keygen(g.dir, "h", &g.h);
    h_keygen(g.dir, "pz", &g.pz);
    if (!s_start_brokers())
        return -1;
    if (ctl_client_new(g.b[B_C].endpoint, g.b[B_D].id, cpn_identity_pk(g.b[B_C].id), true,
                       &g.d) != CPN_OK)
        return -1;
    s_write_peer();
    g.pa_pid = h_start(g.bin, g.dir, "cpn-peer", "pa");
    /* B keeps pa's AD; C gets A's two summary rows. */
    if (!s_wait_lists(B_B, "p8", true, READY_MS) || !s_wait_rows(B_C, 2, READY_MS)) {
        fprintf(stderr, "# offers and summaries did not spread (logs in %s)\n", g.dir);
        return -1;
    }
    return 0;
}

/* ---- the cases ---- */

/* Request `id` at C: the GRANT's frame (caller frees) or NULL, with the answer's reason. */
static uint8_t *s_submit(const char *id, size_t *len)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 8;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.b[B_C].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    h_ans_t a;
    cpn_msg_type_t type = h_await(g.b[B_C].cli, seq, id, NULL, WAIT_MS * 2, &a);
    uint8_t *out = NULL;
    if (type == CPN_MSG_GRANT && (out = malloc(a.len)) != NULL) {
        memcpy(out, a.frame, a.len);
        *len = a.len;
    } else
        fprintf(stderr, "# %s: %s %s\n", id, cpn_msg_name(type), a.reason);
    h_ans_free(&a);
    return out;
}

static void test_far_broker_sees_summary_and_gets_lease(void **state)
{
    (void)state;
    /* C holds A's rows, not pa's packages: they are over its budget. */
    assert_false(s_lists(B_C, "p8"));
    assert_false(s_lists(B_C, "p16"));
    assert_true(s_lists(B_B, "p16"));

    size_t len = 0, len2 = 0;
    uint8_t *grant = s_submit("far-1", &len);
    assert_non_null(grant);
    cpn_limits_t lim = h_big_limits();
    cpn_chain_opts_t o = {.lim = &lim, .broker_pk = cpn_identity_pk(g.b[B_C].id)};
    cpn_chain_t ch;
    int r = cpn_chain_open(grant, len, CPN_MSG_GRANT, &o, &ch);
    if (r != CPN_OK)
        fprintf(stderr, "# chain: %s\n", ch.why);
    assert_int_equal(r, CPN_OK);
    /* pa granted p8; the route C -> B -> A: C's CLAIM named A (the row), A's named pa. */
    assert_memory_equal(ch.lease_env.from, cpn_identity_pk(g.pa), CPN_PK_LEN);
    assert_string_equal(ch.lease.package, "p8");
    assert_int_equal(ch.n_forwards, 2);
    assert_memory_equal(ch.origin.peer, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    assert_memory_equal(ch.claim_env.from, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    assert_memory_equal(ch.claim.peer, cpn_identity_pk(g.pa), CPN_PK_LEN);
    char lease_id[CPN_NAME_MAX];
    snprintf(lease_id, sizeof lease_id, "%s", ch.lease.lease_id);

    /* The same request again: the same lease (C's ledger), not a second one. */
    uint8_t *again = s_submit("far-1", &len2);
    assert_non_null(again);
    assert_int_equal(cpn_chain_open(again, len2, CPN_MSG_GRANT, &o, &ch), CPN_OK);
    assert_string_equal(ch.lease.lease_id, lease_id);
    free(grant);
    free(again);
    /* What the counters say: C left pa's AD out and took A's summaries; A resolved one
     * CLAIM (the retry got C's GRANT from its ledger). */
    assert_true(s_wait_status(B_C, "relays_over_budget", 1) >= 1);
    assert_true(s_wait_status(B_C, "summaries_in", 1) >= 1);
    assert_true(s_wait_status(B_A, "summaries_out", 1) >= 1);
    assert_int_equal(s_wait_status(B_A, "summary_claims", 1), 1);
    assert_int_equal(s_wait_status(B_A, "summary_claims", 1), 1);
}

static void test_old_summaries_never_come_back(void **state)
{
    (void)state;
    /* Reordered: E's seq 20 arrives, then its seq 10 (late), and seq 20 again (duplicated). */
    s_relay_summary(g.e, 20, "enew");
    s_relay_summary(g.e, 10, "eold");
    s_relay_summary(g.e, 20, "enew");
    s_barrier();
    assert_true(s_lists(B_C, "enew"));
    assert_false(s_lists(B_C, "eold"));

    /* E's summary ends (no rows, seq 30); then its older ones come again. */
    s_relay_summary(g.e, 30, NULL);
    s_relay_summary(g.e, 20, "enew");
    s_relay_summary(g.e, 10, "eold");
    s_barrier();
    assert_false(s_lists(B_C, "enew"));
    assert_false(s_lists(B_C, "eold"));

    /* H, never heard of: its empty summary (seq 50) comes before its rows (seq 40). The
     * empty one leaves a tombstone all the same, and the rows stay out. */
    s_relay_summary(g.h, 50, NULL);
    s_relay_summary(g.h, 40, "hold");
    s_barrier();
    assert_false(s_lists(B_C, "hold"));

    /* pz, a peer C never knew: its WITHDRAW (seq 20) overtakes its AD (seq 10). C keeps the
     * WITHDRAW as a tombstone, and the late AD stays out; pz back with a newer AD gets in. */
    s_relay_pz(20, NULL);
    s_relay_pz(10, "zold");
    s_barrier();
    assert_false(s_lists(B_C, "zold"));
    s_relay_pz(30, "znew");
    assert_true(s_wait_lists(B_C, "znew", true, WAIT_MS));

    /* A summary of A's that is older than the one C holds (seq 1) is refused too. */
    s_relay_summary(g.b[B_A].id, 1, "aold");
    s_barrier();
    assert_false(s_lists(B_C, "aold"));
    assert_int_equal(s_listed(B_C, "s", NULL, NULL), 2);
}

/* Free units of package `pkg` in broker b's offers; -1 if not listed or no answer. */
static long s_free(int b, const char *pkg)
{
    h_ans_t a;
    long fr = -1;
    if (h_query(g.b[b].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return -1;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "package"), pkg))
            fr = (long)h_u64(h_get(row, "free"));
    }
    h_ans_free(&a);
    return fr;
}

static bool s_wait_free(int b, const char *pkg, long want, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_free(b, pkg) == want)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* C stopped and started again on the same ledger; back once it holds A's rows again. */
static void s_restart_c(void)
{
    ctl_client_destroy(&g.b[B_C].cli);
    assert_true(h_stop(&g.b[B_C].pid, STOP_MS));
    g.b[B_C].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[B_C].name);
    assert_int_equal(ctl_client_new(g.b[B_C].endpoint, g.ops, cpn_identity_pk(g.b[B_C].id), true,
                                    &g.b[B_C].cli),
                     CPN_OK);
    assert_true(h_wait_up(&g.b[B_C].pid, g.b[B_C].cli, READY_MS));
    assert_true(s_wait_rows(B_C, 2, READY_MS));
}

/* The tenant's RENEW (extend_s > 0) or RELEASE (extend_s == 0) of lease_id at pa, sent to C:
 * the LEASE of C's GRANT (its chain verified), in *ch. */
static void s_tenant_op(const char *req_id, const char *lease_id, uint64_t extend_s,
                        uint8_t **grant, cpn_chain_t *ch)
{
    uint64_t seq = 0;
    if (extend_s) {
        cpn_renew_t rn;
        memset(&rn, 0, sizeof rn);
        snprintf(rn.lease_id, sizeof rn.lease_id, "%s", lease_id);
        memcpy(rn.peer, cpn_identity_pk(g.pa), CPN_PK_LEN);
        rn.extend_s = extend_s;
        assert_int_equal(ctl_client_send(g.b[B_C].cli, CPN_MSG_RENEW, &rn, &seq), CPN_OK);
    } else {
        cpn_release_t rl;
        memset(&rl, 0, sizeof rl);
        snprintf(rl.lease_id, sizeof rl.lease_id, "%s", lease_id);
        memcpy(rl.peer, cpn_identity_pk(g.pa), CPN_PK_LEN);
        assert_int_equal(ctl_client_send(g.b[B_C].cli, CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    }
    h_ans_t a;
    cpn_msg_type_t type = h_await(g.b[B_C].cli, seq, req_id, NULL, WAIT_MS * 2, &a);
    if (type != CPN_MSG_GRANT)
        fprintf(stderr, "# %s of %s: %s %s\n", extend_s ? "RENEW" : "RELEASE", lease_id,
                cpn_msg_name(type), a.reason);
    assert_int_equal(type, CPN_MSG_GRANT);
    *grant = malloc(a.len);
    assert_non_null(*grant);
    memcpy(*grant, a.frame, a.len);
    size_t len = a.len;
    h_ans_free(&a);
    cpn_limits_t lim = h_big_limits();
    cpn_chain_opts_t o = {.lim = &lim, .broker_pk = cpn_identity_pk(g.b[B_C].id)};
    int r = cpn_chain_open(*grant, len, CPN_MSG_GRANT, &o, ch);
    if (r != CPN_OK)
        fprintf(stderr, "# chain: %s\n", ch->why);
    assert_int_equal(r, CPN_OK);
    assert_memory_equal(ch->lease_env.from, cpn_identity_pk(g.pa), CPN_PK_LEN);
    assert_string_equal(ch->lease.lease_id, lease_id);
}

static void test_far_lease_renewed_and_released(void **state)
{
    (void)state;
    /* A lease at C through A's row: pa's p8 (one unit of ten is far-1's already). */
    size_t len = 0;
    uint8_t *grant = s_submit("far-2", &len);
    assert_non_null(grant);
    cpn_limits_t lim = h_big_limits();
    cpn_chain_opts_t o = {.lim = &lim, .broker_pk = cpn_identity_pk(g.b[B_C].id)};
    cpn_chain_t ch;
    assert_int_equal(cpn_chain_open(grant, len, CPN_MSG_GRANT, &o, &ch), CPN_OK);
    assert_memory_equal(ch.claim_env.from, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    char lease_id[CPN_NAME_MAX];
    snprintf(lease_id, sizeof lease_id, "%s", ch.lease.lease_id);
    uint64_t end0 = ch.lease.end_ms;
    free(grant);
    assert_true(s_wait_free(B_A, "p8", 8, READY_MS));

    /* C restarts in between: the way to pa (through A) comes from its ledger. */
    s_restart_c();

    /* Renewed by the tenant at C: pa's LEASE ends later, renewed once. */
    s_tenant_op("far-2", lease_id, 600, &grant, &ch);
    assert_string_equal(ch.lease.state, "active");
    assert_int_equal(ch.lease.renewals, 1);
    assert_true(ch.lease.end_ms >= end0 + 600 * 1000);
    free(grant);

    /* Released by the tenant at C: pa frees the unit, and A's offers show it. */
    s_tenant_op("far-2", lease_id, 0, &grant, &ch);
    assert_string_equal(ch.lease.state, "released");
    free(grant);
    assert_true(s_wait_free(B_A, "p8", 9, READY_MS));
    /* A carried both to pa as they are: no CLAIM beyond far-1's and far-2's. */
    assert_int_equal(s_wait_status(B_A, "summary_claims", 2), 2);
}

static void test_withdraw_drops_summary(void **state)
{
    (void)state;
    /* pa stops and withdraws: A's next summary has no rows, and C forgets A's. */
    assert_true(h_stop(&g.pa_pid, STOP_MS));
    assert_true(s_wait_rows(B_C, 0, READY_MS));
    assert_true(s_wait_lists(B_B, "p8", false, READY_MS));
    /* A late copy of the AD cannot bring pa back at C either: it never was there. */
    assert_false(s_lists(B_C, "p8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_far_broker_sees_summary_and_gets_lease),
        cmocka_unit_test(test_old_summaries_never_come_back),
        cmocka_unit_test(test_far_lease_renewed_and_released),
        cmocka_unit_test(test_withdraw_drops_summary),
    };
    return cmocka_run_group_tests_name("fed_summary", tests, s_setup, s_teardown);
}
