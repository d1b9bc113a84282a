/* test_fed_down.c - offers behind a federation link that went down, with real brokers.
 *
 * Brokers A - B - C in a line (plain TCP on 127.0.0.1, hello_timeout 2 s), a cheap peer pc
 * on C and a dearer one pa on A, both real cpn-peer processes advertising every 60 s (ttl
 * 180 s). A request at A goes to pc through B and C. Then C stops (SIGSTOP: its TCP
 * connections stay open, it just falls silent). B marks C down after hello_timeout and
 * forgets pc's offer; it shows (issue 10, "Also seen"): A, which hears B fine, stops listing
 * and matching pc within a few seconds, not when pc's ttl runs out three minutes later (B's
 * digest tells A what B no longer has); a request at A is then served at once by pa; after
 * SIGCONT, pc's offer comes back to A and A's requests go to pc again.
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

#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"

#define WAIT_MS 10000  /* one answer from a broker */
#define READY_MS 30000 /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define POLL_MS 100
#define PORT_TRIES 5
#define HELLO_S 2                         /* federation.hello_timeout */
#define FORGET_MS (HELLO_S * 1000 + 6000) /* C down at B, then B's digest at A: bound */

enum { B_A, B_B, B_C, B__COUNT };
enum { P_C, P_A, P__COUNT };

static struct {
    char dir[256], bin[1024];
    h_broker_t b[B__COUNT];
    struct {
        const char *name, *pkg, *price;
        int home;
        cpn_identity_t *id;
        pid_t pid;
    } p[P__COUNT];
    cpn_identity_t *ops;
} g = {
    .b = {{.name = "a"}, {.name = "b"}, {.name = "c"}},
    .p = {{.name = "pc", .pkg = "far8", .price = "2.0", .home = B_C},
          {.name = "pa", .pkg = "near8", .price = "9.0", .home = B_A}},
};

/* A - B - C in a line. */
static void s_write_policy(int i)
{
    h_policy_t p = {
        .name = g.b[i].name,
        .listen = g.b[i].endpoint,
        .hello_s = HELLO_S,
        .peers = "pc pa",
        .operators = "ops",
        .limits = "  claim_timeout: 3s\n"
                  "  rate:\n"
                  "    per_sender: 0/s\n",
    };
    size_t n = 0;
    if (i != B_A) {
        int m = i == B_B ? B_C : B_B;
        p.members[n++] = (h_member_t){.name = g.b[m].name, .endpoint = g.b[m].endpoint};
    }
    if (i != B_C) {
        int m = i == B_B ? B_A : B_B;
        p.members[n++] = (h_member_t){.name = g.b[m].name, .endpoint = g.b[m].endpoint};
    }
    h_write_policy(g.dir, &p);
}

static void s_write_peer(int i)
{
    char pkgs[256] = "";
    h_package(pkgs, sizeof pkgs, g.p[i].pkg, 10, g.p[i].price, 8, "32GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = g.p[i].name,
                                 .refresh = "60s",
                                 .max_lease = "7d",
                                 .broker = g.b[g.p[i].home].endpoint,
                                 .broker_name = g.b[g.p[i].home].name,
                                 .packages = pkgs,
                             });
}

/* ---- asking A ---- */

/* Wait up to ms until `pkg` is (or is no longer) listed at A; how long it took, or -1. */
static int64_t s_wait_listed(const char *pkg, bool listed, uint64_t ms)
{
    uint64_t t0 = cpn_mono_ms(), deadline = t0 + ms;
    do {
        if (h_listed(g.b[B_A].cli, pkg, WAIT_MS) == listed)
            return (int64_t)(cpn_mono_ms() - t0);
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return -1;
}

/* Is member `member` "up" at broker b? */
static bool s_member_up(int b, const char *member)
{
    h_ans_t a;
    bool up = false;
    if (h_query(g.b[b].cli, "federation", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "name"), member))
            up = h_str_is(h_get(row, "state"), "up");
    }
    h_ans_free(&a);
    return up;
}

/* Submit an 8-core request at A; the peer that granted it (P__COUNT for none) and how long
 * the answer took. */
static int s_submit(const char *id, uint64_t *ms)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 8;
    uint64_t seq = 0, t0 = cpn_mono_ms();
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    h_ans_t a;
    cpn_msg_type_t type = h_await(g.b[B_A].cli, seq, id, NULL, WAIT_MS * 2, &a);
    *ms = cpn_mono_ms() - t0;
    int who = P__COUNT;
    if (type == CPN_MSG_GRANT) {
        cpn_grant_t gr;
        cpn_env_t lease;
        cpn_limits_t lim = h_big_limits();
        memset(&gr, 0, sizeof gr);
        assert_int_equal(cpn_grant_decode(&a.env, &lim, &gr), CPN_OK);
        assert_int_equal(cpn_env_parse(gr.lease.ptr, gr.lease.len, &lim, &lease), CPN_OK);
        for (int i = 0; i < P__COUNT; i++)
            if (memcmp(lease.from, cpn_identity_pk(g.p[i].id), CPN_PK_LEN) == 0)
                who = i;
    } else
        fprintf(stderr, "# %s: %s %s\n", id, cpn_msg_name(type), a.reason);
    h_ans_free(&a);
    return who;
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int i = 0; i < P__COUNT; i++)
        clean = h_stop(&g.p[i].pid, STOP_MS) && clean;
    clean = h_brokers_stop(g.b, B__COUNT, STOP_MS) && clean;
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    cpn_identity_destroy(&g.ops);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "fed-down") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    h_keygen(g.dir, "ops", &g.ops);
    if (!h_brokers_start(g.b, B__COUNT, g.bin, g.dir, NULL, s_write_policy, g.ops, PORT_TRIES,
                         READY_MS))
        return -1;
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(i);
        g.p[i].pid = h_start(g.bin, g.dir, "cpn-peer", g.p[i].name);
    }
    if (s_wait_listed("far8", true, READY_MS) < 0 || s_wait_listed("near8", true, READY_MS) < 0) {
        fprintf(stderr, "# offers did not spread (logs in %s)\n", g.dir);
        return -1;
    }
    return 0;
}

/* ---- the case ---- */

static void test_member_link_down(void **state)
{
    (void)state;
    uint64_t ms = 0;
    /* Both links up (B hears C, A hears B): the cheap far peer wins. */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while ((!s_member_up(B_B, "c") || !s_member_up(B_A, "b")) && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_submit("before", &ms), P_C);

    /* C falls silent. B marks it down after hello_timeout; A, two hops away, drops pc's offer
     * right after, not after its ttl (180 s). */
    assert_int_equal(kill(g.b[B_C].pid, SIGSTOP), 0);
    int64_t gone = s_wait_listed("far8", false, FORGET_MS);
    fprintf(stderr,
            "# C stopped: pc's offer left A's book after %" PRId64 " ms "
            "(hello_timeout %d s)\n",
            gone, HELLO_S);
    assert_true(gone >= 0);
    assert_false(s_member_up(B_B, "c"));
    assert_true(s_member_up(B_A, "b"));

    /* A request at A now goes to the local peer at once, not into the silent link. */
    assert_int_equal(s_submit("while-cut", &ms), P_A);
    fprintf(stderr, "# request while C is silent: granted by pa in %" PRIu64 " ms\n", ms);
    assert_true(ms < 3000); /* claim_timeout: it never waited on C */

    /* C back: its peer's offer returns to A (SYNC B <- C, RELAY B -> A) and wins again. */
    assert_int_equal(kill(g.b[B_C].pid, SIGCONT), 0);
    int64_t back = s_wait_listed("far8", true, READY_MS);
    fprintf(stderr, "# C resumed: pc's offer back at A after %" PRId64 " ms\n", back);
    assert_true(back >= 0);
    assert_int_equal(s_submit("after", &ms), P_C);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_link_down),
    };
    return cmocka_run_group_tests_name("fed_down", tests, s_setup, s_teardown);
}
