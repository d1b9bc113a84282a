/* test_federation.c - brokers federated over CURVE as real processes on 127.0.0.1.
 *
 * Brokers A - B - C in a line, a peer (pc) only on C; a rogue broker R that lists A as its
 * member while A does not list R, with its own peer (pr); and the test itself acting as a
 * member of A (tm, in A's policy) to relay a forged AD. Policies list their peers (not
 * `trusted: any`, under which ZAP admits every key as a possible peer). Every link is CURVE (keys derived from
 * the Ed25519 identities), peers and tenants included. It shows (issue 5, "Done when"): a
 * request at A gets a lease from C's peer, whose route shows A, B and C and verifies offline
 * (renewal and release go the same way); two requests at A and at C racing for one unit get
 * exactly one lease; a broker not in the policy cannot join (refused by ZAP and counted, its
 * peer's offers never reach A); a forged AD relayed by a member is refused, counted and not
 * relayed on, while a genuine one through the same member is; a member coming up gets A's
 * digest (SYNC) and, for its own digest, the ADs it lacks and only those (never back what came
 * from it); a client whose CURVE key the
 * policy does not name delivers no message (the received counter does not move); an oversize
 * frame is dropped; B killed: A forgets what came through B while C keeps serving its peer;
 * B restarted: books converge again by SYNC (the peer re-advertises only every minute) and
 * A leases through B again.
 *
 * Every wait is bounded; every process started is stopped in the group teardown (and gets
 * SIGKILL from the kernel should this test die first: PR_SET_PDEATHSIG).
 * CPN_TEST_KEEP=1 keeps the temporary directory (configs, logs, databases).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "clock.h"
#include "ctl_client.h"
#include "ctl_verify.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define WAIT_MS 5000   /* one answer from a broker */
#define QUIET_MS 1500  /* test_rogue_broker: how long R's offer must stay absent from A */
#define READY_MS 10000 /* daemons up, offers across the federation */
#define STOP_MS 10000  /* SIGTERM to exit, then SIGKILL (sanitizers on a loaded machine are slow) */
#define POLL_MS 100    /* between two looks at something that changes */
#define PORT_TRIES 5   /* fresh ports tried if a broker cannot bind */
#define HELLO_S 2      /* federation.hello_timeout */

enum { B_A, B_B, B_C, B_R, B__COUNT };
enum { P_C, P_R, P__COUNT };
enum { T_OPS, T_RACE_A, T_RACE_C, T__COUNT };

typedef struct {
    const char *name;
    cpn_identity_t *id;
    int port;
    char endpoint[64];
    pid_t pid;
} broker_t;

typedef struct {
    const char *name;
    int home;
    cpn_identity_t *id;
    pid_t pid;
} peer_t;

static struct {
    char dir[256], bin[1024];
    broker_t b[B__COUNT];
    peer_t p[P__COUNT];
    const char *tenant[T__COUNT];
    cpn_identity_t *t[T__COUNT];
    ctl_client_t *cli[T__COUNT][B__COUNT];
    cpn_identity_t *tm;      /* the test as a member of A */
    cpn_identity_t *fg, *ff; /* peers (trusted everywhere) whose ADs tm relays: genuine, forged */
    cpn_identity_t *fw, *fx; /* peers whose offers are withdrawn (test_withdraw_sticks) */
    void *wd_socks[3];       /* its sockets, closed by the teardown should it fail */
    char tm_endpoint[64];    /* where A believes tm listens (nothing does) */
    cpn_identity_t *stranger; /* in no policy */
    void *zctx;
} g = {
    .b = {{.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "r"}},
    .p = {{.name = "pc", .home = B_C}, {.name = "pr", .home = B_R}},
    .tenant = {"ops", "race-a", "race-c"},
};

/* ---- files ---- */

/* A - B - C in a line; A also lists tm (the test); R lists A, which does not list R. */
static void s_write_policy(int i)
{
    h_policy_t p = {
        .name = g.b[i].name,
        .listen = g.b[i].endpoint,
        .curve = true,
        .hello_s = HELLO_S,
        .fed_more = "  max_hops: 8\n",
        .peers = "pc pr fg ff fw fx",
        .operators = "ops",
        .tenants = "race-a race-c",
        .limits = "  frame_size: 64KiB\n"
                  "  claim_timeout: 3s\n"
                  "  claim_tries: 3\n"
                  "  rate:\n"
                  "    per_sender: 0/s\n",
    };
    switch (i) {
    case B_A:
        p.members[0] = (h_member_t){.name = "b", .endpoint = g.b[B_B].endpoint};
        p.members[1] = (h_member_t){.name = "tm", .endpoint = g.tm_endpoint};
        break;
    case B_B:
        p.members[0] = (h_member_t){.name = "a", .endpoint = g.b[B_A].endpoint};
        p.members[1] = (h_member_t){.name = "c", .endpoint = g.b[B_C].endpoint};
        break;
    case B_C:
        p.members[0] = (h_member_t){.name = "b", .endpoint = g.b[B_B].endpoint};
        break;
    default:
        p.members[0] = (h_member_t){.name = "a", .endpoint = g.b[B_A].endpoint};
        break;
    }
    h_write_policy(g.dir, &p);
}

/* pc sells ten CPU nodes and one big machine (the unit raced for); pr sells small CPU nodes.
 * They re-advertise only every minute: what spreads faster than that spreads by SYNC. */
static void s_write_peer(const peer_t *p)
{
    char pkgs[512] = "";
    if (p == &g.p[P_C]) {
        h_package(pkgs, sizeof pkgs, "cpu8", 10, "2.0", 8, "32GiB");
        h_package(pkgs, sizeof pkgs, "solo", 1, "9.0", 200, "64GiB");
    } else {
        h_package(pkgs, sizeof pkgs, "rogue-cpu", 5, "1.0", 4, "8GiB");
    }
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = p->name,
                                 .refresh = "60s",
                                 .max_lease = "7d",
                                 .broker = g.b[p->home].endpoint,
                                 .broker_name = g.b[p->home].name,
                                 .curve = true,
                                 .packages = pkgs,
                             });
}

/* ---- talking to brokers (as the tenants) ---- */

static ctl_client_t *s_cli(int t, int b)
{
    if (!g.cli[t][b])
        assert_int_equal(ctl_client_new(g.b[b].endpoint, g.t[t], cpn_identity_pk(g.b[b].id),
                                        false, &g.cli[t][b]),
                         CPN_OK);
    return g.cli[t][b];
}

static void s_clients_close(int b)
{
    for (int t = 0; t < T__COUNT; t++)
        ctl_client_destroy(&g.cli[t][b]);
}

static cpn_request_t s_req(const char *id, uint32_t cores)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = cores;
    return r;
}

static uint64_t s_send_req(int t, int b, const cpn_request_t *req)
{
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(s_cli(t, b), CPN_MSG_REQUEST, req, &seq), CPN_OK);
    return seq;
}

static cpn_msg_type_t s_submit(int t, int b, const cpn_request_t *req, h_ans_t *a)
{
    uint64_t seq = s_send_req(t, b, req);
    return h_await(s_cli(t, b), seq, req->id, NULL, WAIT_MS, a);
}

static cpn_msg_type_t s_query(int b, const char *what, uint64_t ms, h_ans_t *a)
{
    return h_query(s_cli(T_OPS, b), what, ms, a);
}

/* A counter of broker b's status; `sub` looks inside the map `key`. */
static uint64_t s_status_u64(int b, const char *key, const char *sub)
{
    h_ans_t a;
    assert_int_equal(s_query(b, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    const msgpack_object *v = h_get(&a.obj, key);
    if (sub)
        v = v && v->type == MSGPACK_OBJECT_MAP ? h_get(v, sub) : NULL;
    uint64_t n = h_u64(v);
    h_ans_free(&a);
    return n;
}

/* The `via` column of peer `name`'s package `pkg` in broker b's offers into via (may be NULL);
 * false if not listed. */
static bool s_offer(int b, const char *name, const char *pkg, char via[CPN_KID_LEN + 8])
{
    h_ans_t a;
    bool found = false;
    if (s_query(b, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < a.obj.via.array.size && !found; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (!h_str_is(h_get(row, "name"), name) || !h_str_is(h_get(row, "package"), pkg))
            continue;
        found = true;
        const msgpack_object *v = h_get(row, "via");
        if (via && v && v->type == MSGPACK_OBJECT_STR && v->via.str.size < CPN_KID_LEN + 8) {
            memcpy(via, v->via.str.ptr, v->via.str.size);
            via[v->via.str.size] = 0;
        }
    }
    h_ans_free(&a);
    return found;
}

static bool s_wait_offer(int b, const char *name, const char *pkg, bool listed, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_offer(b, name, pkg, NULL) == listed)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* Member `member`'s row in broker b's `federation` answer: its state ("up"/"down") into
 * state; false if not a member. */
static bool s_member_state(int b, const char *member, char state[8], uint64_t *offers)
{
    h_ans_t a;
    bool found = false;
    if (s_query(b, "federation", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (!h_str_is(h_get(row, "name"), member))
            continue;
        found = true;
        snprintf(state, 8, "%s", h_str_is(h_get(row, "state"), "up") ? "up" : "down");
        if (offers)
            *offers = h_u64(h_get(row, "offers"));
    }
    h_ans_free(&a);
    return found;
}

static bool s_wait_member(int b, const char *member, const char *state, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    char st[8] = "";
    do {
        if (s_member_state(b, member, st, NULL) && strcmp(st, state) == 0)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* Is b's own link to `member` connected (its last send went through)? */
static bool s_member_linked(int b, const char *member)
{
    h_ans_t a;
    bool linked = false;
    if (s_query(b, "federation", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "name"), member))
            linked = h_str_is(h_get(row, "link"), "connected");
    }
    h_ans_free(&a);
    return linked;
}

static bool s_wait_linked(int b, const char *member, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_member_linked(b, member))
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

static bool s_wait_broker(int b, uint64_t ms)
{
    return h_wait_up(&g.b[b].pid, s_cli(T_OPS, b), ms);
}

static void s_kid(int b, char out[CPN_KID_LEN])
{
    cpn_key_id(cpn_identity_pk(g.b[b].id), out);
}

/* ---- fixture ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int i = 0; i < 3; i++)
        if (g.wd_socks[i])
            zmq_close(g.wd_socks[i]); /* else zmq_ctx_term would wait for ever */
    for (int i = 0; i < P__COUNT; i++)
        if (!h_stop(&g.p[i].pid, STOP_MS)) {
            fprintf(stderr, "# peer %s did not exit cleanly on SIGTERM\n", g.p[i].name);
            clean = false;
        }
    for (int i = 0; i < B__COUNT; i++) {
        if (!h_stop(&g.b[i].pid, STOP_MS)) {
            fprintf(stderr, "# broker %s did not exit cleanly on SIGTERM\n", g.b[i].name);
            clean = false;
        }
        s_clients_close(i);
    }
    for (int i = 0; i < B__COUNT; i++)
        cpn_identity_destroy(&g.b[i].id);
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    for (int i = 0; i < T__COUNT; i++)
        cpn_identity_destroy(&g.t[i]);
    cpn_identity_destroy(&g.tm);
    cpn_identity_destroy(&g.fg);
    cpn_identity_destroy(&g.fw);
    cpn_identity_destroy(&g.fx);
    cpn_identity_destroy(&g.ff);
    cpn_identity_destroy(&g.stranger);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static bool s_start_brokers(void)
{
    for (int i = 0; i < B__COUNT; i++) {
        g.b[i].port = h_free_port(g.zctx);
        if (g.b[i].port <= 0)
            return false;
        snprintf(g.b[i].endpoint, sizeof g.b[i].endpoint, "tcp://127.0.0.1:%d", g.b[i].port);
    }
    snprintf(g.tm_endpoint, sizeof g.tm_endpoint, "tcp://127.0.0.1:%d", h_free_port(g.zctx));
    for (int i = 0; i < B__COUNT; i++)
        s_write_policy(i);
    for (int i = 0; i < B__COUNT; i++)
        g.b[i].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[i].name);
    bool up = true;
    for (int i = 0; i < B__COUNT && up; i++)
        up = s_wait_broker(i, READY_MS);
    if (!up)
        for (int i = 0; i < B__COUNT; i++) { /* most likely someone took a port */
            h_stop(&g.b[i].pid, STOP_MS);
            s_clients_close(i);
        }
    return up;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()))
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "fed") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    for (int i = 0; i < T__COUNT; i++)
        h_keygen(g.dir, g.tenant[i], &g.t[i]);
    h_keygen(g.dir, "tm", &g.tm);
    h_keygen(g.dir, "fg", &g.fg);
    h_keygen(g.dir, "fw", &g.fw);
    h_keygen(g.dir, "fx", &g.fx);
    h_keygen(g.dir, "ff", &g.ff);
    if (cpn_identity_generate(&g.stranger) != CPN_OK)
        return -1;
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++)
        up = s_start_brokers();
    if (!up) {
        fprintf(stderr, "# the brokers did not come up (logs in %s)\n", g.dir);
        return -1;
    }
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(&g.p[i]);
        g.p[i].pid = h_start(g.bin, g.dir, "cpn-peer", g.p[i].name);
    }
    if (!s_wait_offer(B_A, "pc", "cpu8", true, READY_MS) ||
        !s_wait_offer(B_R, "pr", "rogue-cpu", true, READY_MS)) {
        fprintf(stderr, "# offers did not spread (logs in %s)\n", g.dir);
        return -1;
    }
    return 0;
}

/* ---- tests ---- */

/* C's peer is seen at C directly, at B through C, at A through B; the members are up. */
static void test_line_offers(void **state)
{
    (void)state;
    char via[CPN_KID_LEN + 8] = "", kb[CPN_KID_LEN], kc[CPN_KID_LEN], st[8] = "";
    s_kid(B_B, kb);
    s_kid(B_C, kc);
    assert_true(s_offer(B_C, "pc", "solo", via));
    assert_string_equal(via, "local");
    assert_true(s_wait_offer(B_B, "pc", "solo", true, READY_MS));
    assert_true(s_offer(B_B, "pc", "solo", via));
    assert_string_equal(via, kc);
    assert_true(s_offer(B_A, "pc", "solo", via));
    assert_string_equal(via, kb);
    uint64_t offers = 0;
    assert_true(s_member_state(B_A, "b", st, &offers));
    assert_string_equal(st, "up");
    assert_int_equal(offers, 2);
    assert_true(s_member_state(B_B, "c", st, NULL));
    assert_string_equal(st, "up");
}

/* A request at A is served by C's peer; the lease's route is A -> B -> C and verifies offline;
 * renewing and releasing through A reach the peer the same way. */
static void test_remote_lease(void **state)
{
    (void)state;
    cpn_request_t req = s_req("far-1", 8);
    h_ans_t a;
    assert_int_equal(s_submit(T_OPS, B_A, &req, &a), CPN_MSG_GRANT);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a.frame, a.len, NULL, &why), CPN_OK);
    char route[256], want[256], ka[CPN_KID_LEN], kb[CPN_KID_LEN], kc[CPN_KID_LEN];
    s_kid(B_A, ka);
    s_kid(B_B, kb);
    s_kid(B_C, kc);
    snprintf(want, sizeof want, "%s -> %s -> %s", ka, kb, kc);
    assert_int_equal(ctl_verify_route(a.frame, a.len, route, sizeof route), CPN_OK);
    assert_string_equal(route, want);
    /* The GRANT is A's, the LEASE pc's. */
    cpn_limits_t lim = h_big_limits();
    cpn_env_t genv, lenv;
    cpn_grant_t gr;
    cpn_lease_t lease;
    assert_int_equal(cpn_env_open(a.frame, a.len, &lim, &genv), CPN_OK);
    assert_memory_equal(genv.from, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    assert_int_equal(cpn_grant_decode(&genv, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_memory_equal(lenv.from, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &lease), CPN_OK);
    char lease_id[CPN_NAME_MAX];
    snprintf(lease_id, sizeof lease_id, "%s", lease.lease_id);
    /* A flipped byte anywhere in the route breaks the verification. */
    uint8_t *bad = malloc(a.len);
    assert_non_null(bad);
    memcpy(bad, a.frame, a.len);
    bad[a.len / 2] ^= 0x01;
    assert_int_not_equal(ctl_verify_chain(bad, a.len, NULL, &why), CPN_OK);
    free(bad);
    h_ans_free(&a);

    cpn_renew_t rn;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", lease_id);
    memcpy(rn.peer, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN);
    rn.extend_s = 600;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(s_cli(T_OPS, B_A), CPN_MSG_RENEW, &rn, &seq), CPN_OK);
    assert_int_equal(h_await(s_cli(T_OPS, B_A), seq, "far-1", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    cpn_release_t rl;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", lease_id);
    memcpy(rl.peer, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN);
    assert_int_equal(ctl_client_send(s_cli(T_OPS, B_A), CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    assert_int_equal(h_await(s_cli(T_OPS, B_A), seq, "far-1", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    assert_int_equal(cpn_env_open(a.frame, a.len, &lim, &genv), CPN_OK);
    assert_int_equal(cpn_grant_decode(&genv, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &lease), CPN_OK);
    assert_string_equal(lease.state, "released");
    h_ans_free(&a);
}

/* The peer decides: requests at A (through B and C) and at C for its last unit, at once. */
static void test_race_one_unit(void **state)
{
    (void)state;
    cpn_request_t ra = s_req("race-solo", 200), rc = s_req("race-solo", 200);
    uint64_t sa = s_send_req(T_RACE_A, B_A, &ra);
    uint64_t sc = s_send_req(T_RACE_C, B_C, &rc);
    h_ans_t a, c;
    h_await(s_cli(T_RACE_A, B_A), sa, ra.id, NULL, WAIT_MS * 2, &a);
    h_await(s_cli(T_RACE_C, B_C), sc, rc.id, NULL, WAIT_MS * 2, &c);
    int grants = (a.type == CPN_MSG_GRANT) + (c.type == CPN_MSG_GRANT);
    int nacks = (a.type == CPN_MSG_NACK) + (c.type == CPN_MSG_NACK);
    if (grants != 1 || nacks != 1)
        fprintf(stderr, "# race: A got %s (%s), C got %s (%s)\n", cpn_msg_name(a.type),
                a.reason, cpn_msg_name(c.type), c.reason);
    assert_int_equal(grants, 1);
    assert_int_equal(nacks, 1);
    h_ans_free(&a);
    h_ans_free(&c);
}

/* R lists A, A does not list R: ZAP refuses R's link (counted), R's peer never reaches A. */
static void test_rogue_broker(void **state)
{
    (void)state;
    char st[8] = "";
    assert_true(s_offer(B_R, "pr", "rogue-cpu", NULL)); /* R works */
    assert_true(s_member_state(B_R, "a", st, NULL));
    assert_string_equal(st, "down"); /* A never speaks to R */
    assert_true(s_status_u64(B_A, "refused", "untrusted") > 0);
    uint64_t deadline = cpn_mono_ms() + QUIET_MS;
    while (cpn_mono_ms() < deadline) {
        assert_false(s_offer(B_A, "pr", "rogue-cpu", NULL));
        usleep(POLL_MS * 1000);
    }
    assert_false(s_offer(B_B, "pr", "rogue-cpu", NULL));
}

/* The test as member tm of A: one signed frame on a CURVE link to A. */
static void *s_tm_link(void)
{
    void *sock = NULL;
    cpn_curve_t curve = {.enabled = 1, .self = g.tm};
    memcpy(curve.server_pk, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    assert_int_equal(cpn_sock_dealer(g.zctx, g.b[B_A].endpoint, cpn_limits_default.max_frame,
                                     &curve, &sock),
                     CPN_OK);
    return sock;
}

static void s_ad_frame(cpn_identity_t *peer, const char *pkg, uint8_t **frame, size_t *len)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", pkg);
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 4;
    p.mem_bytes = 8ull << 30;
    p.price = 1000;
    p.total = p.free = 3;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "%s", pkg);
    ad.ttl_s = 60;
    ad.n_packages = 1;
    ad.packages = &p;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(peer, CPN_MSG_AD, cpn_seq_next(0, now), now, &ad, frame, len),
                     CPN_OK);
}

static void s_tm_relay(void *sock, cpn_signer_t *signer, const uint8_t *inner, size_t len)
{
    cpn_relay_t rel = {.hops = 1, .msg = {inner, len}};
    uint8_t *frame = NULL;
    size_t flen = 0;
    assert_int_equal(cpn_signer_build(signer, CPN_MSG_RELAY, &rel, &frame, &flen), CPN_OK);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_send(sock, frame, flen)) != CPN_OK && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    assert_int_equal(r, CPN_OK);
    free(frame);
}

/* A member relays a peer's AD whose signature is wrong: A refuses and counts it and does not
 * pass it on; a genuine AD through the same member reaches A and, relayed, B. */
static void test_forged_relay(void **state)
{
    (void)state;
    cpn_identity_t *good = g.fg, *forger = g.ff;
    void *sock = s_tm_link();
    cpn_signer_t signer = {.id = g.tm};
    uint64_t sig0 = s_status_u64(B_A, "refused", "bad-signature");
    uint64_t refused0 = s_status_u64(B_A, "relays_refused", NULL);

    uint8_t *forged = NULL, *genuine = NULL;
    size_t forged_len = 0, genuine_len = 0;
    s_ad_frame(forger, "forged-pkg", &forged, &forged_len);
    forged[forged_len - 1] ^= 0x01; /* the peer's signature no longer verifies */
    s_tm_relay(sock, &signer, forged, forged_len);
    s_ad_frame(good, "genuine-pkg", &genuine, &genuine_len);
    s_tm_relay(sock, &signer, genuine, genuine_len);

    assert_true(s_wait_offer(B_A, "genuine-pkg", "genuine-pkg", true, WAIT_MS));
    assert_true(s_wait_offer(B_B, "genuine-pkg", "genuine-pkg", true, WAIT_MS));
    assert_false(s_offer(B_A, "forged-pkg", "forged-pkg", NULL));
    assert_false(s_offer(B_B, "forged-pkg", "forged-pkg", NULL));
    assert_false(s_offer(B_C, "forged-pkg", "forged-pkg", NULL));
    assert_int_equal(s_status_u64(B_A, "refused", "bad-signature"), sig0 + 1);
    assert_int_equal(s_status_u64(B_A, "relays_refused", NULL), refused0 + 1);
    free(forged);
    free(genuine);
    zmq_close(sock);
}

/* Frames A sends to tm on its link (tm's ROUTER), opened; false if none came in time. */
static bool s_tm_recv(void *router, uint64_t deadline, cpn_msg_type_t type, uint8_t **frame,
                      size_t *len, cpn_env_t *env)
{
    cpn_limits_t lim = h_big_limits();
    while (cpn_mono_ms() < deadline) {
        zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, POLL_MS) <= 0)
            continue;
        uint8_t rid[CPN_RID_MAX];
        size_t rid_len = 0;
        if (cpn_recv(router, 1, rid, &rid_len, frame, len) != CPN_OK)
            continue;
        if (cpn_env_open(*frame, *len, &lim, env) == CPN_OK && env->type == type &&
            memcmp(env->from, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN) == 0)
            return true;
        free(*frame);
        *frame = NULL;
    }
    return false;
}

static void s_tm_sync(void *sock, cpn_signer_t *signer, const uint8_t *entries, size_t len)
{
    static const uint8_t none[1];
    cpn_sync_t sy;
    memset(&sy, 0, sizeof sy);
    memset(sy.hi, 0xff, sizeof sy.hi);
    sy.entries.ptr = len ? entries : none;
    sy.entries.len = len;
    uint8_t *frame = NULL;
    size_t flen = 0;
    assert_int_equal(cpn_signer_build(signer, CPN_MSG_SYNC, &sy, &frame, &flen), CPN_OK);
    assert_int_equal(cpn_send(sock, frame, flen), CPN_OK);
    free(frame);
}

/* tm's row in A's `federation` table: RELAYs A sent on its link to tm, RELAYs it took from tm. */
static void s_tm_counts(uint64_t *out, uint64_t *in)
{
    h_ans_t a;
    bool found = false;
    assert_int_equal(s_query(B_A, "federation", WAIT_MS, &a), CPN_MSG_STATUS);
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (!h_str_is(h_get(row, "name"), "tm"))
            continue;
        found = true;
        *out = h_u64(h_get(row, "relays_out"));
        *in = h_u64(h_get(row, "relays_in"));
    }
    h_ans_free(&a);
    assert_true(found);
}

/* tm sends A a SYNC with `entries` and reports what A answered without
 * waiting for silence: tm then relays an AD of fg's, which A handles after the SYNC (one
 * connection, in order); once A counts it in relays_in, every RELAY the SYNC caused has been
 * sent, and relays_out has grown by their number. Exactly that many are read (an offer that
 * came through tm never goes back to tm, so the marker adds none): whether one carried pc's AD
 * with seq `seq` (any seq if 0), at which hops, and whether one carried fg's AD. */
static void s_tm_sync_answer(void *sock, cpn_signer_t *signer, void *router,
                             const uint8_t *entries, size_t n, uint64_t seq, bool *pc,
                             uint32_t *hops, bool *fg)
{
    uint64_t out0 = 0, in0 = 0, out = 0, in = 0;
    uint8_t *ad = NULL, *frame = NULL;
    size_t ad_len = 0, len = 0;
    cpn_env_t env, inner;
    cpn_limits_t lim = h_big_limits();
    s_tm_counts(&out0, &in0);
    s_tm_sync(sock, signer, entries, n);
    s_ad_frame(g.fg, "genuine-pkg", &ad, &ad_len);
    s_tm_relay(sock, signer, ad, ad_len);
    free(ad);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    do {
        usleep(POLL_MS * 1000);
        s_tm_counts(&out, &in);
    } while (in == in0 && cpn_mono_ms() < deadline);
    assert_true(in > in0);
    *pc = *fg = false;
    for (uint64_t k = 0; k < out - out0; k++) {
        assert_true(s_tm_recv(router, cpn_mono_ms() + WAIT_MS, CPN_MSG_RELAY, &frame, &len, &env));
        cpn_relay_t rel;
        assert_int_equal(cpn_relay_decode(&env, &lim, &rel), CPN_OK);
        assert_int_equal(cpn_env_open(rel.msg.ptr, rel.msg.len, &lim, &inner), CPN_OK);
        if (memcmp(inner.from, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN) == 0 &&
            (seq == 0 || inner.seq == seq)) {
            *pc = true;
            *hops = rel.hops;
        }
        if (memcmp(inner.from, cpn_identity_pk(g.fg), CPN_PK_LEN) == 0)
            *fg = true;
        free(frame);
        frame = NULL;
    }
}

/* tm comes up at A: A sends it a digest of its book (SYNC). tm answers with a digest that
 * already holds pc's offer: nothing comes back for it; with an empty digest, pc's AD comes
 * back verbatim as a RELAY one hop further, but not fg's, which came from tm (split horizon). */
static void test_sync_with_member(void **state)
{
    (void)state;
    cpn_limits_t lim = h_big_limits();
    void *router = NULL;
    cpn_curve_t server = {.enabled = 1, .self = g.tm};
    assert_int_equal(cpn_sock_router(g.zctx, g.tm_endpoint, lim.max_frame, &server, &router),
                     CPN_OK);
    void *sock = s_tm_link();
    cpn_signer_t signer = {.id = g.tm};
    /* Offers through tm are forgotten once tm is down: a fresh fg AD through tm. */
    uint8_t *ad = NULL;
    size_t ad_len = 0;
    s_ad_frame(g.fg, "genuine-pkg", &ad, &ad_len);
    s_tm_relay(sock, &signer, ad, ad_len);
    free(ad);
    assert_true(s_wait_offer(B_A, "genuine-pkg", "genuine-pkg", true, WAIT_MS));

    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    assert_true(s_tm_recv(router, cpn_mono_ms() + READY_MS, CPN_MSG_SYNC, &frame, &len, &env));
    cpn_sync_t digest;
    assert_int_equal(cpn_sync_decode(&env, &lim, &digest), CPN_OK);
    assert_int_equal(digest.entries.len % CPN_SYNC_ENTRY_LEN, 0);
    uint64_t pc_seq = 0;
    uint8_t mine[2 * CPN_SYNC_ENTRY_LEN];
    size_t n_mine = 0;
    for (size_t i = 0; i < digest.entries.len; i += CPN_SYNC_ENTRY_LEN) {
        const uint8_t *e = digest.entries.ptr + i;
        if (i)
            assert_true(memcmp(e - CPN_SYNC_ENTRY_LEN, e, CPN_PK_LEN) < 0); /* sorted */
        if (memcmp(e, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN) == 0) {
            for (int k = 0; k < 8; k++)
                pc_seq = pc_seq << 8 | e[CPN_PK_LEN + k];
        }
        bool pc = memcmp(e, cpn_identity_pk(g.p[P_C].id), CPN_PK_LEN) == 0;
        bool fg = memcmp(e, cpn_identity_pk(g.fg), CPN_PK_LEN) == 0;
        if ((pc || fg) && n_mine < 2)
            memcpy(mine + CPN_SYNC_ENTRY_LEN * n_mine++, e, CPN_SYNC_ENTRY_LEN);
    }
    free(frame);
    assert_true(pc_seq > 0);
    assert_int_equal(n_mine, 2);

    bool pc = false, fg = false;
    uint32_t hops = 0;
    /* we have what A has */
    s_tm_sync_answer(sock, &signer, router, mine, n_mine * CPN_SYNC_ENTRY_LEN, pc_seq, &pc,
                     &hops, &fg);
    assert_false(pc);
    assert_false(fg);
    /* we have nothing */
    s_tm_sync_answer(sock, &signer, router, NULL, 0, 0, &pc, &hops, &fg);
    assert_true(pc);
    assert_int_equal(hops, 3); /* C -> B (1) -> A (2) -> tm (3) */
    assert_false(fg);
    zmq_close(sock);
    zmq_close(router);
}

/* The seq of a frame we built. */
static uint64_t s_seq_of(const uint8_t *frame, size_t len)
{
    cpn_env_t env;
    cpn_limits_t lim = h_big_limits();
    assert_int_equal(cpn_env_parse(frame, len, &lim, &env), CPN_OK);
    return env.seq;
}

static void s_withdraw_frame(cpn_identity_t *peer, uint64_t after, uint8_t **frame, size_t *len)
{
    cpn_withdraw_t w;
    memset(&w, 0, sizeof w);
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(peer, CPN_MSG_WITHDRAW, cpn_seq_next(after, now), now, &w,
                                   frame, len),
                     CPN_OK);
}

/* tm relays n frames; returns once A has taken them all in (its relays_in counter for tm). */
static void s_tm_relay_n(void *sock, cpn_signer_t *signer, uint8_t *const *frames,
                         const size_t *lens, size_t n)
{
    uint64_t out = 0, in0 = 0, in = 0;
    s_tm_counts(&out, &in0);
    for (size_t i = 0; i < n; i++)
        s_tm_relay(sock, signer, frames[i], lens[i]);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    do {
        usleep(POLL_MS * 1000);
        s_tm_counts(&out, &in);
    } while (in < in0 + n && cpn_mono_ms() < deadline);
    assert_true(in >= in0 + n);
}

/* A WITHDRAW is never undone by what travels late, and reaches a member that was away:
 * fw's and fx's ADs come through tm; fx withdraws through tm, fw at A directly. tm, which "was
 * away", sends A a digest that still lists fw's AD and nothing else: A answers with fw's
 * WITHDRAW frame (before: nothing, and tm kept the offer until its ttl), and forgets what came
 * through tm and is not in the digest, but not fx's tombstone (before: forgotten too). Then tm
 * relays the old ADs again (duplicated, late): neither comes back, at A or at B. */
static void test_withdraw_sticks(void **state)
{
    (void)state;
    cpn_limits_t lim = h_big_limits();
    cpn_curve_t server = {.enabled = 1, .self = g.tm};
    /* the router of the test before may still hold the port a moment (zmq_close is async) */
    uint64_t bind_by = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_sock_router(g.zctx, g.tm_endpoint, lim.max_frame, &server,
                                &g.wd_socks[0])) != CPN_OK &&
           cpn_mono_ms() < bind_by)
        usleep(POLL_MS * 1000);
    assert_int_equal(r, CPN_OK);
    void *router = g.wd_socks[0], *sock = g.wd_socks[1] = s_tm_link();
    cpn_signer_t signer = {.id = g.tm};
    uint8_t *fw_ad = NULL, *fw_wd = NULL, *fx_ad = NULL, *fx_wd = NULL;
    size_t fw_ad_len = 0, fw_wd_len = 0, fx_ad_len = 0, fx_wd_len = 0;
    s_ad_frame(g.fw, "fw-pkg", &fw_ad, &fw_ad_len);
    s_ad_frame(g.fx, "fx-pkg", &fx_ad, &fx_ad_len);
    uint64_t fw_seq = s_seq_of(fw_ad, fw_ad_len), fx_seq = s_seq_of(fx_ad, fx_ad_len);
    uint8_t *ads[] = {fw_ad, fx_ad};
    size_t ad_lens[] = {fw_ad_len, fx_ad_len};
    s_tm_relay_n(sock, &signer, ads, ad_lens, 2);
    assert_true(s_wait_offer(B_A, "fw-pkg", "fw-pkg", true, WAIT_MS));
    assert_true(s_wait_offer(B_A, "fx-pkg", "fx-pkg", true, WAIT_MS));
    assert_true(s_wait_offer(B_B, "fw-pkg", "fw-pkg", true, WAIT_MS));

    /* fx withdraws through tm, fw at A directly (a peer's own connection) */
    s_withdraw_frame(g.fx, fx_seq, &fx_wd, &fx_wd_len);
    s_tm_relay_n(sock, &signer, &fx_wd, &fx_wd_len, 1);
    assert_true(s_wait_offer(B_A, "fx-pkg", "fx-pkg", false, WAIT_MS));
    s_withdraw_frame(g.fw, fw_seq, &fw_wd, &fw_wd_len);
    uint64_t fw_wd_seq = s_seq_of(fw_wd, fw_wd_len);
    cpn_curve_t pc = {.enabled = 1, .self = g.fw};
    memcpy(pc.server_pk, cpn_identity_pk(g.b[B_A].id), CPN_PK_LEN);
    assert_int_equal(cpn_sock_dealer(g.zctx, g.b[B_A].endpoint, lim.max_frame, &pc,
                                     &g.wd_socks[2]),
                     CPN_OK);
    uint64_t send_by = cpn_mono_ms() + WAIT_MS;
    while ((r = cpn_send(g.wd_socks[2], fw_wd, fw_wd_len)) != CPN_OK && cpn_mono_ms() < send_by)
        usleep(20 * 1000);
    assert_int_equal(r, CPN_OK);
    assert_true(s_wait_offer(B_A, "fw-pkg", "fw-pkg", false, WAIT_MS));
    assert_true(s_wait_offer(B_B, "fw-pkg", "fw-pkg", false, WAIT_MS)); /* relayed on */

    /* tm comes back holding fw's AD only: A's answer carries fw's WITHDRAW */
    uint8_t ent[CPN_SYNC_ENTRY_LEN];
    memcpy(ent, cpn_identity_pk(g.fw), CPN_PK_LEN);
    for (int k = 0; k < 8; k++)
        ent[CPN_PK_LEN + k] = (uint8_t)(fw_seq >> (56 - 8 * k));
    s_tm_sync(sock, &signer, ent, sizeof ent);
    bool got = false;
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while (!got && cpn_mono_ms() < deadline) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env, inner;
        if (!s_tm_recv(router, deadline, CPN_MSG_RELAY, &frame, &len, &env))
            break;
        cpn_relay_t rel;
        assert_int_equal(cpn_relay_decode(&env, &lim, &rel), CPN_OK);
        assert_int_equal(cpn_env_open(rel.msg.ptr, rel.msg.len, &lim, &inner), CPN_OK);
        got = memcmp(inner.from, cpn_identity_pk(g.fw), CPN_PK_LEN) == 0 &&
              inner.type == CPN_MSG_WITHDRAW && inner.seq == fw_wd_seq && rel.hops == 1;
        free(frame);
    }
    assert_true(got);

    /* the old ADs again, late; then a marker whose arrival means A has handled them */
    uint64_t dup0 = s_status_u64(B_A, "relays_dup", NULL);
    uint8_t *marker = NULL;
    size_t marker_len = 0;
    s_ad_frame(g.fg, "genuine-pkg", &marker, &marker_len);
    uint8_t *late[] = {fw_ad, fx_ad, fw_ad, marker};
    size_t late_lens[] = {fw_ad_len, fx_ad_len, fw_ad_len, marker_len};
    s_tm_relay_n(sock, &signer, late, late_lens, 4);
    assert_true(s_wait_offer(B_A, "genuine-pkg", "genuine-pkg", true, WAIT_MS));
    assert_false(s_offer(B_A, "fw-pkg", "fw-pkg", NULL));
    assert_false(s_offer(B_A, "fx-pkg", "fx-pkg", NULL));
    assert_false(s_offer(B_B, "fw-pkg", "fw-pkg", NULL));
    assert_false(s_offer(B_B, "fx-pkg", "fx-pkg", NULL));
    assert_true(s_status_u64(B_A, "relays_dup", NULL) >= dup0 + 3);
    free(fw_ad);
    free(fw_wd);
    free(fx_ad);
    free(fx_wd);
    free(marker);
    for (int i = 0; i < 3; i++) {
        zmq_close(g.wd_socks[i]);
        g.wd_socks[i] = NULL;
    }
}

/* R is quiet (A never speaks to it; its peer advertises once a minute): each status query
 * counts itself, so between a first query and a later one its received counter moves by the
 * queries in between and the later one, unless something else reached it. Nothing here waits
 * for silence: each case waits for an event after which what it sent would have been counted.
 * (A peer's AD may land in between: each case tries three times.) */

/* A client whose CURVE key no policy names: ZAP refuses the connection (counted as refused
 * `untrusted`, the event waited for: no message can pass a refused handshake), nothing arrives
 * at R and nothing comes back. */
static void test_unknown_curve_client(void **state)
{
    (void)state;
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        uint64_t r0 = s_status_u64(B_R, "messages_received", NULL);
        uint64_t zap0 = s_status_u64(B_R, "refused", "untrusted");
        uint64_t queries = 1; /* status queries R answered since r0 */
        ctl_client_t *cli = NULL;
        assert_int_equal(ctl_client_new(g.b[B_R].endpoint, g.stranger,
                                         cpn_identity_pk(g.b[B_R].id), false, &cli),
                         CPN_OK);
        cpn_request_t req = s_req("stranger-1", 8);
        cpn_query_t q;
        memset(&q, 0, sizeof q);
        snprintf(q.what, sizeof q.what, "status");
        uint64_t seq = 0;
        assert_int_equal(ctl_client_send(cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
        assert_int_equal(ctl_client_send(cli, CPN_MSG_QUERY, &q, &seq), CPN_OK);
        uint64_t deadline = cpn_mono_ms() + READY_MS, zap = zap0;
        while (zap == zap0 && cpn_mono_ms() < deadline) {
            usleep(POLL_MS * 1000);
            zap = s_status_u64(B_R, "refused", "untrusted");
            queries++;
        }
        assert_true(zap > zap0);
        /* Nothing came back (nothing can, now): none waiting. */
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        assert_int_equal(ctl_client_recv(cli, cpn_mono_ms(), &frame, &len, &env), CPN_E_TIMEOUT);
        ctl_client_destroy(&cli);
        ok = s_status_u64(B_R, "messages_received", NULL) == r0 + queries + 1;
    }
    assert_true(ok);
}

/* A frame over frame_size is dropped by libzmq before the broker sees it; R keeps serving.
 * The client then asks for status on the same connection until R answers (libzmq closed the
 * connection: a query sent before it reconnects is lost): R reads a connection in order, so
 * the first answer it gives counts the big frame had R received it. */
static void test_oversize_frame(void **state)
{
    (void)state;
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        uint64_t r0 = s_status_u64(B_R, "messages_received", NULL), r1 = 0;
        ctl_client_t *cli = NULL; /* a tenant R knows, on a connection of its own */
        assert_int_equal(ctl_client_new(g.b[B_R].endpoint, g.t[T_OPS],
                                         cpn_identity_pk(g.b[B_R].id), false, &cli),
                         CPN_OK);
        size_t len = 200 * 1024; /* R's frame_size is 64 KiB */
        uint8_t *big = calloc(1, len);
        assert_non_null(big);
        assert_int_equal(ctl_client_send_frame(cli, big, len), CPN_OK);
        free(big);
        cpn_query_t q;
        memset(&q, 0, sizeof q);
        snprintf(q.what, sizeof q.what, "status");
        bool answered = false;
        uint64_t deadline = cpn_mono_ms() + READY_MS;
        while (!answered && cpn_mono_ms() < deadline) {
            uint64_t seq = 0;
            h_ans_t a;
            assert_int_equal(ctl_client_send(cli, CPN_MSG_QUERY, &q, &seq), CPN_OK);
            /* any status answer: the first R gave, whichever query it answers */
            if (h_await(cli, seq, NULL, "status", 500, &a) == CPN_MSG_STATUS) {
                answered = true;
                r1 = h_u64(h_get(&a.obj, "messages_received"));
            }
            h_ans_free(&a);
        }
        assert_true(answered);
        ctl_client_destroy(&cli);
        ok = r1 == r0 + 1;
    }
    assert_true(ok);
    assert_true(h_alive(&g.b[B_R].pid));
}

/* B killed: A marks it down and forgets what came through it; C keeps serving its peer. B
 * restarted: SYNC brings the books together again (pc re-advertises only every minute) and A
 * leases through B once more. */
static void test_restart_b(void **state)
{
    (void)state;
    h_ans_t a;
    char via[CPN_KID_LEN + 8] = "", kb[CPN_KID_LEN];
    s_kid(B_B, kb);
    assert_true(s_offer(B_A, "pc", "cpu8", NULL));
    assert_int_equal(kill(g.b[B_B].pid, SIGKILL), 0);
    waitpid(g.b[B_B].pid, NULL, 0);
    g.b[B_B].pid = 0;
    s_clients_close(B_B);
    assert_true(s_wait_member(B_A, "b", "down", (HELLO_S + 3) * 1000));
    assert_true(s_wait_member(B_C, "b", "down", (HELLO_S + 3) * 1000));
    assert_true(s_wait_offer(B_A, "pc", "cpu8", false, WAIT_MS));

    /* Cut off from C's peer, A says so; C, cut off from A, still serves what it reaches. */
    cpn_request_t ra = s_req("while-cut-a", 8), rc = s_req("while-cut-c", 8);
    assert_int_equal(s_submit(T_OPS, B_A, &ra, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_NO_MATCH);
    h_ans_free(&a);
    assert_int_equal(s_submit(T_OPS, B_C, &rc, &a), CPN_MSG_GRANT);
    h_ans_free(&a);

    g.b[B_B].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[B_B].name);
    assert_true(s_wait_broker(B_B, READY_MS));
    assert_true(s_wait_offer(B_B, "pc", "cpu8", true, READY_MS));
    assert_true(s_wait_offer(B_A, "pc", "cpu8", true, READY_MS));
    assert_true(s_offer(B_A, "pc", "cpu8", via));
    assert_string_equal(via, kb);
    assert_true(s_wait_member(B_A, "b", "up", READY_MS));
    /* Up means A hears from B; A's FORWARD needs its own link to B connected as well. */
    assert_true(s_wait_linked(B_A, "b", READY_MS));
    cpn_request_t again = s_req("after-heal", 8);
    assert_int_equal(s_submit(T_OPS, B_A, &again, &a), CPN_MSG_GRANT);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a.frame, a.len, NULL, &why), CPN_OK);
    h_ans_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_offers),   cmocka_unit_test(test_remote_lease),
        cmocka_unit_test(test_race_one_unit), cmocka_unit_test(test_rogue_broker),
        cmocka_unit_test(test_forged_relay),  cmocka_unit_test(test_sync_with_member),
        cmocka_unit_test(test_withdraw_sticks),
        cmocka_unit_test(test_unknown_curve_client),
        cmocka_unit_test(test_oversize_frame), cmocka_unit_test(test_restart_b),
    };
    return cmocka_run_group_tests_name("federation", tests, s_setup, s_teardown);
}
