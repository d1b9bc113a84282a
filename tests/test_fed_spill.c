/* test_fed_spill.c - ordered spill-over (federation.spill, issue 17): local offers first, then
 * the members in the policy's order, one at a time.
 *
 * Four brokers, real processes on 127.0.0.1 (plain TCP): A in the middle, B, C and D its
 * members. The test itself is the four peers pa .. pd (a DEALER on the ROUTER of A .. D each,
 * signing with its own key), so it sees every CLAIM and decides every answer. Each sells one
 * package of 8 cores: pa at 5.000 (the dearest, but local to A), pb at 1.000, pc at 3.000 and
 * pd at 0.500 (the cheapest). A tenant's request at A is refused by every peer in turn, and
 * the test checks the order the CLAIMs come in:
 *   spill: [c, b]   pa, pc, pb; pd never (D is not listed)
 *   spill: cost     pa, pd, pb, pc (members by their best offer)
 *   no spill key    pd, pb, pc, pa (rank alone: today's behaviour)
 * A request is never at two brokers at once: while a peer holds a CLAIM no other peer gets
 * one (the test watches all four connections all the time), and A's own count of FORWARDs
 * sent is exactly the members tried so far; at the end every member tried counts exactly
 * one FORWARD received, and a member left out none.
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

#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "transport.h"

#define WAIT_MS 10000  /* one answer from a broker, one frame to a peer */
#define READY_MS 30000 /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define POLL_MS 50
#define PORT_TRIES 5
#define HELLO_S 2 /* federation.hello_timeout */
/* claim_timeout: longer than every wait, so a CLAIM is only ever answered by the test */
#define CLAIM_TIMEOUT "60s"

enum { B_A, B_B, B_C, B_D, B__COUNT };

static struct {
    char dir[256], bin[1024];
    h_broker_t b[B__COUNT];
    struct {
        cpn_identity_t *id; /* the test's peer at broker i, p<name> */
        cpn_signer_t signer;
        void *sock;
        uint64_t price; /* of its package */
    } peer[B__COUNT];
    cpn_identity_t *ops;
    void *zctx;
    unsigned reloads; /* of A's policy */
} g = {
    .b = {{.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "d"}},
    .peer = {{.price = 5000}, {.price = 1000}, {.price = 3000}, {.price = 500}},
};

/* A's members are B, C and D; theirs is A. `spill` is A's federation.spill line ("" none). */
static void s_write_policy(int i, const char *spill)
{
    h_policy_t p = {
        .name = g.b[i].name,
        .listen = g.b[i].endpoint,
        .hello_s = HELLO_S,
        .fed_more = spill,
        .operators = "ops",
        .limits = "  claim_timeout: " CLAIM_TIMEOUT "\n"
                  "  claim_tries: 16\n"
                  "  rate:\n"
                  "    per_sender: 0/s\n",
    };
    size_t n = 0;
    for (int m = 0; m < B__COUNT; m++) {
        if (m == i || (i != B_A && m != B_A))
            continue;
        p.members[n++] = (h_member_t){.name = g.b[m].name, .endpoint = g.b[m].endpoint};
    }
    h_write_policy(g.dir, &p);
}

/* ---- the peers ---- */

/* Peer i advertises one package "p-<broker>": 8 cores, 5 units free, at its price. */
static void s_advertise(int i)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "p-%s", g.b[i].name);
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 8;
    p.mem_bytes = 8ull << 30;
    p.price = g.peer[i].price;
    p.total = 5;
    p.free = 5;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "p%s", g.b[i].name);
    ad.ttl_s = 600;
    ad.n_packages = 1;
    ad.packages = &p;
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&g.peer[i].signer, CPN_MSG_AD, &ad, &frame, &len), CPN_OK);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_send(g.peer[i].sock, frame, len)) != CPN_OK && cpn_mono_ms() < deadline)
        usleep(20 * 1000); /* not connected yet */
    assert_int_equal(r, CPN_OK);
    free(frame);
}

/* Wait for the next CLAIM to any of the peers, within WAIT_MS: which peer got it (-1 if none
 * came), its seq in *seq. Other frames (nothing else is sent to a peer here) are skipped. */
static int s_next_claim(uint64_t *seq)
{
    cpn_limits_t lim = h_big_limits();
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (cpn_mono_ms() < deadline) {
        zmq_pollitem_t it[B__COUNT];
        for (int i = 0; i < B__COUNT; i++)
            it[i] = (zmq_pollitem_t){g.peer[i].sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(it, B__COUNT, POLL_MS) <= 0)
            continue;
        for (int i = 0; i < B__COUNT; i++) {
            if (!(it[i].revents & ZMQ_POLLIN))
                continue;
            uint8_t *frame = NULL;
            size_t len = 0;
            cpn_env_t env;
            if (cpn_recv(g.peer[i].sock, 0, NULL, NULL, &frame, &len) != CPN_OK)
                continue;
            bool claim = cpn_env_open(frame, len, &lim, &env) == CPN_OK &&
                         env.type == CPN_MSG_CLAIM &&
                         memcmp(env.from, cpn_identity_pk(g.b[i].id), CPN_PK_LEN) == 0;
            if (claim)
                *seq = env.seq;
            free(frame);
            if (claim)
                return i;
        }
    }
    return -1;
}

/* Peer i refuses the CLAIM `seq` (busy: the units stay free in the brokers' books). */
static void s_refuse(int i, uint64_t seq)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "spill");
    n.ref_seq = seq;
    n.code = CPN_E_BUSY;
    snprintf(n.reason, sizeof n.reason, "the test refuses");
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&g.peer[i].signer, CPN_MSG_NACK, &n, &frame, &len), CPN_OK);
    assert_int_equal(cpn_send(g.peer[i].sock, frame, len), CPN_OK);
    free(frame);
}

/* ---- asking the brokers ---- */

/* A counter of broker i's status (0 if it did not answer). */
static uint64_t s_status(int i, const char *key)
{
    h_ans_t a;
    uint64_t v = 0;
    if (h_query(g.b[i].cli, "status", WAIT_MS, &a) == CPN_MSG_STATUS)
        v = h_u64(h_get(&a.obj, key));
    h_ans_free(&a);
    return v;
}

/* Wait until broker i's status counter `key` is `want` (bounded); its last value. */
static uint64_t s_wait_status(int i, const char *key, uint64_t want)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS, v;
    while ((v = s_status(i, key)) != want && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    return v;
}

/* Every peer's package in A's book. */
static bool s_all_listed(void)
{
    h_ans_t a;
    int found = 0;
    if (h_query(g.b[B_A].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (int k = 0; k < B__COUNT; k++) {
        char pkg[16];
        snprintf(pkg, sizeof pkg, "p-%s", g.b[k].name);
        for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++)
            if (h_str_is(h_get(&a.obj.via.array.ptr[i], "package"), pkg)) {
                found++;
                break;
            }
    }
    h_ans_free(&a);
    return found == B__COUNT;
}

/* A's policy with `spill` (a federation.spill line, "" none), reloaded by SIGHUP. */
static void s_reload_a(const char *spill)
{
    s_write_policy(B_A, spill);
    assert_int_equal(kill(g.b[B_A].pid, SIGHUP), 0);
    g.reloads++;
    assert_int_equal(s_wait_status(B_A, "policy_reloads", g.reloads), g.reloads);
    assert_int_equal(s_status(B_A, "policy_reloads_failed"), 0);
}

/* A request at A, refused by every peer it reaches: the peers must get its CLAIMs in the
 * order `want` (n of them, broker indexes), one at a time. Then the tenant's NACK, and each
 * member's FORWARDs received grew by one if it was tried, by none if not. */
static void s_run(const char *id, const int *want, size_t n)
{
    uint64_t fin0[B__COUNT], fout0 = s_status(B_A, "forwards_out");
    for (int i = B_B; i < B__COUNT; i++)
        fin0[i] = s_status(i, "forwards_in");
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 4;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    uint64_t remote = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t cseq = 0;
        int who = s_next_claim(&cseq);
        if (who != want[k])
            fprintf(stderr, "# request %s, try %zu: CLAIM at p%s, expected p%s\n", id, k + 1,
                    who < 0 ? "(none)" : g.b[who].name, g.b[want[k]].name);
        assert_int_equal(who, want[k]);
        /* While this CLAIM is out, A has sent exactly one FORWARD per member tried so far
         * (the last one being this CLAIM's, if remote): nothing went to a second member. */
        remote += who != B_A;
        assert_int_equal(s_status(B_A, "forwards_out") - fout0, remote);
        s_refuse(who, cseq);
    }
    h_ans_t a;
    assert_int_equal(h_await(g.b[B_A].cli, seq, id, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    h_ans_free(&a);
    assert_int_equal(s_status(B_A, "forwards_out") - fout0, remote);
    for (int i = B_B; i < B__COUNT; i++) {
        bool tried = false;
        for (size_t k = 0; k < n; k++)
            tried = tried || want[k] == i;
        if (tried)
            assert_int_equal(s_wait_status(i, "forwards_in", fin0[i] + 1), fin0[i] + 1);
        else
            assert_int_equal(s_status(i, "forwards_in"), fin0[i]);
    }
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < B__COUNT; i++) {
        if (g.peer[i].sock)
            zmq_close(g.peer[i].sock);
        g.peer[i].sock = NULL;
        cpn_identity_destroy(&g.peer[i].id);
    }
    bool clean = h_brokers_stop(g.b, B__COUNT, STOP_MS);
    cpn_identity_destroy(&g.ops);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

/* A's policy at the start: spill to C, then B. */
static void s_write_start_policy(int i)
{
    s_write_policy(i, i == B_A ? "  spill: [c, b]\n" : "");
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()) ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "fed-spill") != 0)
        return -1;
    h_keygen(g.dir, "ops", &g.ops);
    for (int i = 0; i < B__COUNT; i++) {
        char name[16];
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
        snprintf(name, sizeof name, "p%s", g.b[i].name);
        h_keygen(g.dir, name, &g.peer[i].id);
        g.peer[i].signer.id = g.peer[i].id;
    }
    if (!h_brokers_start(g.b, B__COUNT, g.bin, g.dir, g.zctx, s_write_start_policy, g.ops,
                         PORT_TRIES, READY_MS))
        return -1;
    cpn_curve_t plain = {.enabled = 0};
    for (int i = 0; i < B__COUNT; i++)
        if (cpn_sock_dealer(g.zctx, g.b[i].endpoint, cpn_limits_default.max_frame, &plain,
                            &g.peer[i].sock) != CPN_OK)
            return -1;
    return 0;
}

/* ---- the cases ---- */

static void test_spill_order(void **state)
{
    (void)state;
    for (int i = 0; i < B__COUNT; i++)
        s_advertise(i);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    bool listed;
    while (!(listed = s_all_listed()) && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_true(listed);

    /* The list: local first, then C, then B; D is not spilled to, though the cheapest. */
    const int list[] = {B_A, B_C, B_B};
    s_run("list", list, 3);

    /* Cost: local first, then the members by their best offer. */
    s_reload_a("  spill: cost\n");
    const int cost[] = {B_A, B_D, B_B, B_C};
    s_run("cost", cost, 4);

    /* No spill key: rank alone decides, as before the key existed. */
    s_reload_a("");
    const int rank[] = {B_D, B_B, B_C, B_A};
    s_run("rank", rank, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spill_order),
    };
    return cmocka_run_group_tests_name("fed_spill", tests, s_setup, s_teardown);
}
