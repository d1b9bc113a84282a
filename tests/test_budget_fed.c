/* test_budget_fed.c - a tenant's budget held by its home broker while its requests are in
 * flight at several brokers at once (issue 14).
 *
 * Brokers A, B and C, real processes on 127.0.0.1 (plain TCP), A linked to B and to C; real
 * peers pb (home B, region r-b) and pc (home C, region r-c), each selling units at 3600.0 an
 * hour (1.000 a second). The tenant `t` has a budget of 250.0 a month at A, its home broker;
 * each of its requests is one unit for 100 s: 100.000.
 *   1. pb and pc are stopped (SIGSTOP): a request for r-b and one for r-c are claimed through
 *      B and C and stay in flight; a third is refused over-budget, naming the budget and the
 *      200.000 in flight at the two members.
 *   2. pb and pc go on (SIGCONT): both requests are granted; a third is still refused, now
 *      for the running leases, with nothing in flight.
 *   3. The first lease is released: the budget it frees admits the next request; the one
 *      after is refused and names what the released lease committed.
 *      A renewal of the second lease that would go over is refused too.
 *   4. A is restarted: the same refusal names the same committed figure (read from the
 *      ledger, not from memory).
 *   5. A request with its own max_cost below the cost is refused naming the ceiling, for a
 *      tenant without a budget.
 *
 * Every wait is bounded and waits for a positive event; every process started is stopped in
 * the group teardown (and gets SIGKILL from the kernel should this test die first).
 * CPN_TEST_KEEP=1 keeps the temporary directory (configs, logs, databases).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"

#define WAIT_MS 30000  /* one answer from a broker (a lost one comes with the retried CLAIM) */
#define READY_MS 30000 /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define PORT_TRIES 5
#define HELLO_S 5
/* claim_timeout: longer than the stall of step 1 (milliseconds), so the CLAIMs stay in flight
 * throughout it; an answer lost with a member link that a loaded machine let time out comes
 * with the CLAIM retried after it */
#define CLAIM_TIMEOUT "10s"

enum { B_A, B_B, B_C, B__COUNT };
enum { P_B, P_C, P__COUNT };

static struct {
    char dir[256], bin[1024];
    struct {
        const char *name;
        cpn_identity_t *id;
        int port;
        char endpoint[64];
        pid_t pid;
    } b[B__COUNT];
    struct {
        const char *name, *region;
        int home;
        cpn_identity_t *id;
        pid_t pid;
    } p[P__COUNT];
    cpn_identity_t *ops, *t;
    ctl_client_t *ops_cli, *t_cli; /* both at A */
    void *zctx;
} g = {
    .b = {{.name = "a"}, {.name = "b"}, {.name = "c"}},
    .p = {{.name = "pb", .region = "r-b", .home = B_B},
          {.name = "pc", .region = "r-c", .home = B_C}},
};

static void s_write_policy(int i)
{
    h_policy_t p = {
        .name = g.b[i].name,
        .listen = g.b[i].endpoint,
        .hello_s = HELLO_S,
        .operators = "ops",
        .tenants_more = "  - name: t\n"
                        "    key: t.pub\n"
                        "    budget: {amount: \"250.0\", period: month}\n",
        .limits = "  claim_timeout: " CLAIM_TIMEOUT "\n"
                  "  rate:\n"
                  "    per_sender: 0/s\n",
    };
    size_t n = 0;
    for (int m = 0; m < B__COUNT; m++) {
        if (m == i || (i != B_A && m != B_A))
            continue; /* a star: A is linked to B and C */
        p.members[n++] = (h_member_t){.name = g.b[m].name, .endpoint = g.b[m].endpoint};
    }
    h_write_policy(g.dir, &p);
}

static void s_write_peer(int i)
{
    char pkgs[256] = "", id[64];
    snprintf(id, sizeof id, "n-%s", g.p[i].region);
    h_package(pkgs, sizeof pkgs, id, 8, "3600.0", 8, "8GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){.name = g.p[i].name,
                                              .region = g.p[i].region,
                                              .refresh = "60s",
                                              .max_lease = "7d",
                                              .broker = g.b[g.p[i].home].endpoint,
                                              .broker_name = g.b[g.p[i].home].name,
                                              .packages = pkgs});
}

/* ---- asking A ---- */

static bool s_wait_listed(const char *pkg)
{
    return h_wait_listed(g.ops_cli, pkg, WAIT_MS, READY_MS);
}

/* Send tenant cli's request `id`: one unit for 100 s in `region` (max_cost 0: none). */
static uint64_t s_request(ctl_client_t *cli, const char *id, const char *region, uint64_t max_cost)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 100;
    r.cores = 8;
    r.max_cost = max_cost;
    snprintf(r.regions.items[0], sizeof r.regions.items[0], "%s", region);
    r.regions.n = 1;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    return seq;
}

/* The answer to t's request (seq, id): its type; a is filled (the caller frees it). */
static cpn_msg_type_t s_answer(uint64_t seq, const char *id, h_ans_t *a)
{
    cpn_msg_type_t type = h_await(g.t_cli, seq, id, NULL, WAIT_MS, a);
    fprintf(stderr, "# %s: %s %s %s\n", id, cpn_msg_name(type), a->code ? cpn_errname(a->code) : "",
            a->reason);
    return type;
}

/* t's request `id` is refused over-budget; the reason must hold each of the `n` texts. */
static void s_refused(const char *id, const char *region, char *reason, size_t cap, size_t n, ...)
{
    h_ans_t a;
    assert_int_equal(s_answer(s_request(g.t_cli, id, region, 0), id, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_BUDGET);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        assert_non_null(strstr(a.reason, va_arg(ap, const char *)));
    va_end(ap);
    if (reason)
        snprintf(reason, cap, "%s", a.reason);
    h_ans_free(&a);
}

/* The "committed X" figure of an over-budget reason. */
static void s_committed(const char *reason, char out[32])
{
    const char *c = strstr(reason, "committed ");
    assert_non_null(c);
    assert_int_equal(sscanf(c, "committed %31s", out), 1);
}

/* The lease id and peer of the GRANT in a. */
static void s_lease_of(const h_ans_t *a, char lease_id[CPN_NAME_MAX], uint8_t peer[CPN_PK_LEN])
{
    cpn_limits_t lim = h_big_limits();
    cpn_env_t genv, lenv;
    cpn_grant_t gr;
    cpn_lease_t lease;
    assert_int_equal(cpn_env_open(a->frame, a->len, &lim, &genv), CPN_OK);
    assert_int_equal(cpn_msg_decode(&genv, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_msg_decode(&lenv, &lim, &lease), CPN_OK);
    snprintf(lease_id, CPN_NAME_MAX, "%s", lease.lease_id);
    memcpy(peer, lenv.from, CPN_PK_LEN);
}

/* ---- setup ---- */

static bool s_start_a(void)
{
    g.b[B_A].pid = h_start(g.bin, g.dir, "cpn-broker", "a");
    return h_wait_up(&g.b[B_A].pid, g.ops_cli, READY_MS);
}

static bool s_start_brokers(void)
{
    for (int i = 0; i < B__COUNT; i++) {
        g.b[i].port = h_free_port(g.zctx);
        if (g.b[i].port <= 0)
            return false;
        snprintf(g.b[i].endpoint, sizeof g.b[i].endpoint, "tcp://127.0.0.1:%d", g.b[i].port);
    }
    for (int i = 0; i < B__COUNT; i++)
        s_write_policy(i);
    assert_int_equal(
        ctl_client_new(g.b[B_A].endpoint, g.ops, cpn_identity_pk(g.b[B_A].id), true, &g.ops_cli),
        CPN_OK);
    assert_int_equal(
        ctl_client_new(g.b[B_A].endpoint, g.t, cpn_identity_pk(g.b[B_A].id), true, &g.t_cli),
        CPN_OK);
    bool up = s_start_a();
    for (int i = B_B; i < B__COUNT && up; i++) {
        ctl_client_t *cli = NULL;
        g.b[i].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[i].name);
        assert_int_equal(
            ctl_client_new(g.b[i].endpoint, g.ops, cpn_identity_pk(g.b[i].id), true, &cli), CPN_OK);
        up = h_wait_up(&g.b[i].pid, cli, READY_MS);
        ctl_client_destroy(&cli);
    }
    if (!up) /* most likely someone took a port */
        for (int i = 0; i < B__COUNT; i++)
            h_stop(&g.b[i].pid, STOP_MS);
    if (!up) {
        ctl_client_destroy(&g.ops_cli);
        ctl_client_destroy(&g.t_cli);
    }
    return up;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    ctl_client_destroy(&g.ops_cli);
    ctl_client_destroy(&g.t_cli);
    for (int i = 0; i < P__COUNT; i++) {
        clean = h_stop(&g.p[i].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.p[i].id);
    }
    for (int i = 0; i < B__COUNT; i++) {
        clean = h_stop(&g.b[i].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.b[i].id);
    }
    cpn_identity_destroy(&g.ops);
    cpn_identity_destroy(&g.t);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()) ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "budget-fed") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    h_keygen(g.dir, "ops", &g.ops);
    h_keygen(g.dir, "t", &g.t);
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++)
        up = s_start_brokers();
    if (!up)
        return -1;
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(i);
        g.p[i].pid = h_start(g.bin, g.dir, "cpn-peer", g.p[i].name);
    }
    return s_wait_listed("n-r-b") && s_wait_listed("n-r-c") ? 0 : -1;
}

/* ---- the case ---- */

static void s_signal_peers(int sig)
{
    for (int i = 0; i < P__COUNT; i++)
        assert_int_equal(kill(g.p[i].pid, sig), 0);
}

static void test_budget_across_brokers(void **state)
{
    (void)state;
    h_ans_t a1, a2, a;
    /* 1. Two requests in flight at B and at C, their peers stalled. */
    s_signal_peers(SIGSTOP);
    uint64_t s1 = s_request(g.t_cli, "one", "r-b", 0);
    uint64_t s2 = s_request(g.t_cli, "two", "r-c", 0);
    s_refused("three", "r-b", NULL, 0, 3, "budget 250.000", "in flight 200.000",
              "this request 100.000");
    /* 2. The peers go on: both granted; now the leases run and nothing is in flight. */
    s_signal_peers(SIGCONT);
    uint64_t seqs[2] = {s1, s2};
    const char *const ids[2] = {"one", "two"}, *const whats[2] = {NULL, NULL};
    h_ans_t two[2]; /* in whatever order they come */
    h_await_n(g.t_cli, 2, seqs, ids, whats, WAIT_MS, two);
    a1 = two[0];
    a2 = two[1];
    assert_int_equal(a1.type, CPN_MSG_GRANT);
    assert_int_equal(a2.type, CPN_MSG_GRANT);
    s_refused("four", "r-c", NULL, 0, 2, "in flight 0.000", "running 200.000");
    /* 3. Releasing "one" frees what it had left. */
    cpn_release_t rl;
    cpn_renew_t rn;
    memset(&rl, 0, sizeof rl);
    memset(&rn, 0, sizeof rn);
    s_lease_of(&a1, rl.lease_id, rl.peer);
    s_lease_of(&a2, rn.lease_id, rn.peer);
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.t_cli, CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    assert_int_equal(h_await(g.t_cli, seq, "one", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    h_ans_free(&a1);
    h_ans_free(&a2);
    assert_int_equal(s_answer(s_request(g.t_cli, "five", "r-b", 0), "five", &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    /* A renewal is admitted like a request: 200 s more of "two" is 200.000. */
    rn.extend_s = 200;
    assert_int_equal(ctl_client_send(g.t_cli, CPN_MSG_RENEW, &rn, &seq), CPN_OK);
    assert_int_equal(h_await(g.t_cli, seq, NULL, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_BUDGET);
    assert_non_null(strstr(a.reason, "this request 200.000"));
    h_ans_free(&a);
    char before[CPN_REASON_MAX], after[CPN_REASON_MAX], c1[32], c2[32];
    s_refused("six", "r-b", before, sizeof before, 1, "in flight 0.000");
    s_committed(before, c1);
    assert_string_not_equal(c1, "0.000"); /* "one" ran for some time before its release */
    /* 4. A restarted keeps the committed figure. */
    assert_true(h_stop(&g.b[B_A].pid, STOP_MS));
    assert_true(s_start_a());
    /* its offer book is soft state, relearnt from B and C */
    assert_true(s_wait_listed("n-r-b") && s_wait_listed("n-r-c"));
    s_refused("seven", "r-b", after, sizeof after, 1, "in flight 0.000");
    s_committed(after, c2);
    assert_string_equal(c1, c2);
    /* 5. A request's own ceiling, for a tenant without a budget (ops). */
    seq = s_request(g.ops_cli, "cheap", "r-c", 99999);
    assert_int_equal(h_await(g.ops_cli, seq, "cheap", NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_BUDGET);
    assert_non_null(strstr(a.reason, "cost 100.000 over the request's ceiling 99.999"));
    h_ans_free(&a);
    seq = s_request(g.ops_cli, "enough", "r-c", 100000);
    assert_int_equal(h_await(g.ops_cli, seq, "enough", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_across_brokers),
    };
    return cmocka_run_group_tests_name("budget_fed", tests, s_setup, s_teardown);
}
