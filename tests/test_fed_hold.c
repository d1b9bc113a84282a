/* test_fed_hold.c - a relayed AD keeps the units held by CLAIMs in flight (issue 12).
 *
 * Brokers A - B, real processes on 127.0.0.1 (plain TCP); the test itself is the peer tp at B
 * (a DEALER on B's ROUTER, signing with its own key), so it decides when a CLAIM is answered
 * and when it advertises. tp sells one unit of `big`. A request at A matches it through B: A
 * holds the unit in its book (book_take) and sends the CLAIM, which B hands to tp. While the
 * CLAIM is unanswered tp advertises again, as a real peer's periodic AD can: the unit still
 * counts as free (it was not decided when the AD was written), and a marker package `mark`
 * shows when the AD has reached A. A direct AD would have the units of CLAIMs in flight held
 * again (claim_on_ad); before the fix, the same AD relayed by B reset them, and a second
 * request at A was matched to the unit the first one is claiming (it then waits on a second
 * CLAIM for claim_timeout instead of being refused at once). Then tp refuses the first CLAIM
 * and that request ends with a NACK.
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

#define WAIT_MS 10000  /* one answer from a broker, one frame to tp */
#define READY_MS 30000 /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define POLL_MS 100
#define PORT_TRIES 5
#define HELLO_S 2 /* federation.hello_timeout */
/* claim_timeout: longer than every wait of the case, so that a second CLAIM sent by mistake
 * shows as a request left unanswered, and the first CLAIM stays in flight throughout */
#define CLAIM_TIMEOUT "60s"

enum { B_A, B_B, B__COUNT };

static struct {
    char dir[256], bin[1024];
    h_broker_t b[B__COUNT];
    cpn_identity_t *ops, *tp;
    cpn_signer_t tp_signer;
    void *zctx, *tp_sock; /* tp's connection to B */
} g = {
    .b = {{.name = "a"}, {.name = "b"}},
};

static void s_write_policy(int i)
{
    int m = i == B_A ? B_B : B_A;
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .hello_s = HELLO_S,
                              .members = {{g.b[m].name, g.b[m].endpoint}},
                              .peers = "tp",
                              .operators = "ops",
                              .limits = "  claim_timeout: " CLAIM_TIMEOUT "\n"
                                        "  rate:\n"
                                        "    per_sender: 0/s\n",
                          });
}

/* ---- tp, the peer at B ---- */

static void s_pkg(cpn_package_t *p, const char *id, uint32_t cores, uint32_t free_units)
{
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    snprintf(p->region, sizeof p->region, "cn-east");
    p->cores = cores;
    p->mem_bytes = 8ull << 30;
    p->price = 1000;
    p->total = 1;
    p->free = free_units;
}

/* tp advertises one unit of `big` (64 cores), free, and with `mark` also a one-core package. */
static void s_tp_advertise(bool mark)
{
    cpn_package_t pk[2];
    s_pkg(&pk[0], "big", 64, 1);
    s_pkg(&pk[1], "mark", 1, 1);
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "tp");
    ad.ttl_s = 600;
    ad.n_packages = mark ? 2 : 1;
    ad.packages = pk;
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&g.tp_signer, CPN_MSG_AD, &ad, &frame, &len), CPN_OK);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_send(g.tp_sock, frame, len)) != CPN_OK && cpn_mono_ms() < deadline)
        usleep(20 * 1000); /* not connected yet */
    assert_int_equal(r, CPN_OK);
    free(frame);
}

/* The next CLAIM B sends tp, within WAIT_MS: its seq into *seq; false if none came. */
static bool s_tp_claim(uint64_t *seq)
{
    cpn_limits_t lim = h_big_limits();
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (cpn_mono_ms() < deadline) {
        zmq_pollitem_t it = {g.tp_sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, POLL_MS) <= 0)
            continue;
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        if (cpn_recv(g.tp_sock, 0, NULL, NULL, &frame, &len) != CPN_OK)
            continue;
        bool claim = cpn_env_open(frame, len, &lim, &env) == CPN_OK && env.type == CPN_MSG_CLAIM &&
                     memcmp(env.from, cpn_identity_pk(g.b[B_B].id), CPN_PK_LEN) == 0;
        if (claim)
            *seq = env.seq;
        free(frame);
        if (claim)
            return true;
    }
    return false;
}

/* tp refuses the CLAIM with seq `seq`. */
static void s_tp_refuse(uint64_t seq)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "one");
    n.ref_seq = seq;
    n.code = CPN_E_BUSY;
    snprintf(n.reason, sizeof n.reason, "the test refuses");
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&g.tp_signer, CPN_MSG_NACK, &n, &frame, &len), CPN_OK);
    assert_int_equal(cpn_send(g.tp_sock, frame, len), CPN_OK);
    free(frame);
}

/* ---- asking A ---- */

/* Send a request for one unit with 64 cores at A; its seq. */
static uint64_t s_request(const char *id)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 64;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    return seq;
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (g.tp_sock)
        zmq_close(g.tp_sock);
    g.tp_sock = NULL;
    clean = h_brokers_stop(g.b, B__COUNT, STOP_MS) && clean;
    cpn_identity_destroy(&g.ops);
    cpn_identity_destroy(&g.tp);
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
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "fed-hold") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    h_keygen(g.dir, "ops", &g.ops);
    h_keygen(g.dir, "tp", &g.tp);
    g.tp_signer.id = g.tp;
    if (!h_brokers_start(g.b, B__COUNT, g.bin, g.dir, g.zctx, s_write_policy, g.ops, PORT_TRIES,
                         READY_MS))
        return -1;
    cpn_curve_t plain = {.enabled = 0};
    if (cpn_sock_dealer(g.zctx, g.b[B_B].endpoint, cpn_limits_default.max_frame, &plain,
                        &g.tp_sock) != CPN_OK)
        return -1;
    return 0;
}

/* ---- the case ---- */

static void test_relayed_ad_keeps_held_units(void **state)
{
    (void)state;
    s_tp_advertise(false);
    assert_true(h_wait_listed(g.b[B_A].cli, "big", WAIT_MS, READY_MS));

    /* The first request at A claims tp's only unit through B; tp holds the CLAIM. */
    uint64_t seq1 = s_request("one");
    uint64_t claim1 = 0;
    assert_true(s_tp_claim(&claim1));

    /* tp's AD, written while the CLAIM is undecided, reaches A relayed by B. */
    s_tp_advertise(true);
    assert_true(h_wait_listed(g.b[B_A].cli, "mark", WAIT_MS, WAIT_MS));

    /* The unit is still held for the first request: the second is refused at once. */
    uint64_t seq2 = s_request("two");
    h_ans_t a;
    cpn_msg_type_t t = h_await(g.b[B_A].cli, seq2, "two", NULL, WAIT_MS, &a);
    if (t != CPN_MSG_NACK || a.code != CPN_E_NO_MATCH)
        fprintf(stderr, "# second request: %s %s (%s): matched to the held unit\n", cpn_msg_name(t),
                a.code ? cpn_errname(a.code) : "", a.reason);
    assert_int_equal(t, CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_NO_MATCH);
    h_ans_free(&a);

    /* tp refuses the first CLAIM: that request ends with a NACK (no other candidate). */
    s_tp_refuse(claim1);
    assert_int_equal(h_await(g.b[B_A].cli, seq1, "one", NULL, WAIT_MS, &a), CPN_MSG_NACK);
    h_ans_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relayed_ad_keeps_held_units),
    };
    return cmocka_run_group_tests_name("fed_hold", tests, s_setup, s_teardown);
}
