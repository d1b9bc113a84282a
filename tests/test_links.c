/* test_links.c - links come back after anything the other side sends (issue 11, item 1), and
 * garbage on one connection does not buy a signed ERROR per frame (item 5).
 *
 * Real processes on 127.0.0.1, every link CURVE: broker A with its peer pa, broker B federated
 * with A. Two fault-injecting TCP proxies of the test (tcpproxy.h) sit on the links that used to
 * die for good: X1 between pa and A (pa's DEALER dials X1), X2 between A's member link and B
 * (A's policy names X2 as B's endpoint). B's own link to A is direct.
 *
 * - one bit flipped in A -> pa (a CURVE MESSAGE that no longer decrypts): pa redials (X1 sees a
 *   new connection) and a request at A is granted again, well inside the 30 s offer ttl;
 * - one 70,000-byte frame A -> pa (over pa's ZMQ_MAXMSGSIZE), or 16 bytes that are no ZMTP
 *   frame: the same;
 * - A falls silent towards pa (X1 drops A's bytes, the connection stays open): pa's heartbeat
 *   ends the connection within 20 s and pa redials;
 * - one flipped bit, one 70,000-byte frame, or silence, B -> A on A's member link: A redials B, and a request at
 *   B for pa's offer is granted (the LEASE comes back to B on that link);
 * - a flood of garbage frames on one tenant connection gets at most the policy's refusal burst
 *   of ERRORs back, while another tenant's request on another connection is granted.
 * - in process, no daemons: the largest frame that arrives under ZMQ_MAXMSGSIZE 64 KiB is 65,503
 *   bytes over CURVE and 65,536 in plain TCP; one byte more drops the connection, unanswered,
 *   and a cpn_link_t comes back.
 * Reconnect times are printed (# lines in the log).
 *
 * Every wait is bounded and waits for a positive event. CPN_TEST_KEEP=1 keeps the directory;
 * CPN_TEST_FILTER=pattern runs only the tests whose names match.
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
#include "link.h"
#include "msg.h"
#include "tcpproxy.h"
#include "transport.h"

#define WAIT_MS 5000     /* one answer from a broker */
#define READY_MS 15000   /* daemons up, offers across the federation */
#define LINK_UP_MS 20000 /* a new link's first connection, rebuilds included */
#define STOP_MS 10000    /* SIGTERM to exit, then SIGKILL */
#define POLL_MS 50       /* between two looks at something that changes */
#define FAULT_MS 5000    /* the proxy made the fault it was told to */
#define RECOVER_MS 10000 /* fault to a granted request again: a third of the offers' 30 s ttl */
#define SILENCE_MS 28000 /* after silence: 5 s to the PING + 15 s timeout + a claim retry */
#define PORT_TRIES 5
#define HELLO_S 3      /* federation.hello_timeout */
#define OVERSIZE 70000 /* bytes in the injected frame; frame_size is 64 KiB everywhere */
#define REFUSALS 5     /* limits.rate.refusals of A, per second and burst */
#define GARBAGE 200    /* frames of the flood */

enum { B_A, B_B, B__COUNT };

static struct {
    char dir[256], bin[1024];
    struct {
        const char *name;
        cpn_identity_t *id;
        int port;
        char endpoint[64];
        pid_t pid;
    } b[B__COUNT];
    cpn_identity_t *pa, *ops, *other;
    pid_t pa_pid;
    tcpproxy_t *x1, *x2; /* pa -> A, A -> B */
    ctl_client_t *cli[B__COUNT];
    void *zctx;
    unsigned req_serial;
    /* the frame-limit tests' link and router: closed by the teardown too, so that a failed
     * assertion (which leaves the test function at once) cannot hold zmq_ctx_term forever */
    cpn_link_t *lim_link;
    void *lim_router;
} g = {.b = {{.name = "a"}, {.name = "b"}}};

/* ---- files and processes ---- */

static void s_write_policy(int i)
{
    char member[128], limits[256];
    int o = 1 - i;
    /* A reaches B through X2; B reaches A directly. */
    if (i == B_A)
        snprintf(member, sizeof member, "tcp://127.0.0.1:%d", tcpproxy_port(g.x2));
    else
        snprintf(member, sizeof member, "%s", g.b[o].endpoint);
    snprintf(limits, sizeof limits,
             "  frame_size: 64KiB\n"
             "  claim_timeout: 2s\n"
             "  claim_tries: 2\n"
             "  rate:\n"
             "    per_sender: 0/s\n"
             "    refusals: %d/s\n",
             REFUSALS);
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .curve = true,
                              .hello_s = HELLO_S,
                              .members = {{g.b[o].name, member}},
                              .peers = "pa",
                              .operators = "ops",
                              .tenants = "other",
                              .limits = limits,
                          });
}

/* pa reaches A through X1. */
static void s_write_peer(void)
{
    char pkgs[256] = "", endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", tcpproxy_port(g.x1));
    h_package(pkgs, sizeof pkgs, "cpu8", 200, "2.0", 8, "32GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = "pa",
                                 .refresh = "60s",
                                 .max_lease = "7d",
                                 .broker = endpoint,
                                 .broker_name = "a",
                                 .curve = true,
                                 .packages = pkgs,
                             });
}

static ctl_client_t *s_cli(int b)
{
    if (!g.cli[b])
        assert_int_equal(
            ctl_client_new(g.b[b].endpoint, g.ops, cpn_identity_pk(g.b[b].id), false, &g.cli[b]),
            CPN_OK);
    return g.cli[b];
}

/* ---- what the brokers say ---- */

static bool s_offer(int b, const char *name)
{
    h_ans_t a;
    bool found = false;
    if (h_query(s_cli(b), "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++)
        found = found || h_str_is(h_get(&a.obj.via.array.ptr[i], "name"), name);
    h_ans_free(&a);
    return found;
}

static bool s_wait_offer(int b, const char *name, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_offer(b, name))
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

static cpn_request_t s_req(const char *tag)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s-%u", tag, ++g.req_serial);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 8;
    return r;
}

/* Send a request at broker b, not waiting for its answer; its seq. */
static uint64_t s_send(int b, const cpn_request_t *req)
{
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(s_cli(b), CPN_MSG_REQUEST, req, &seq), CPN_OK);
    return seq;
}

/* Requests at broker b, one after the other, until one is granted or `ms` pass. Returns the
 * time to the grant in ms from `since`, or UINT64_MAX. */
static uint64_t s_grant_within(int b, const char *tag, uint64_t since, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        cpn_request_t req = s_req(tag);
        h_ans_t a;
        cpn_msg_type_t t = h_await(s_cli(b), s_send(b, &req), req.id, NULL, WAIT_MS, &a);
        if (t == CPN_MSG_NACK)
            fprintf(stderr, "# %s: NACK %s (%s)\n", req.id, cpn_errname(a.code), a.reason);
        h_ans_free(&a);
        if (t == CPN_MSG_GRANT)
            return cpn_mono_ms() - since;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return UINT64_MAX;
}

static bool s_wait_count(tcpproxy_t *x, uint64_t (*count)(tcpproxy_t *), uint64_t above,
                         uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    while (count(x) <= above)
        if (cpn_mono_ms() >= deadline)
            return false;
        else
            usleep(10 * 1000);
    return true;
}

/* ---- fixture ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pa_pid, STOP_MS);
    for (int i = 0; i < B__COUNT; i++) {
        ctl_client_destroy(&g.cli[i]);
        clean = h_stop(&g.b[i].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.b[i].id);
    }
    tcpproxy_destroy(&g.x1);
    tcpproxy_destroy(&g.x2);
    cpn_link_destroy(&g.lim_link);
    if (g.lim_router)
        zmq_close(g.lim_router);
    g.lim_router = NULL;
    cpn_identity_destroy(&g.pa);
    cpn_identity_destroy(&g.ops);
    cpn_identity_destroy(&g.other);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static bool s_start_brokers(void)
{
    for (int i = 0; i < B__COUNT; i++) {
        if ((g.b[i].port = h_free_port(g.zctx)) <= 0)
            return false;
        snprintf(g.b[i].endpoint, sizeof g.b[i].endpoint, "tcp://127.0.0.1:%d", g.b[i].port);
    }
    tcpproxy_destroy(&g.x1);
    tcpproxy_destroy(&g.x2);
    if (!(g.x1 = tcpproxy_new(g.b[B_A].port)) || !(g.x2 = tcpproxy_new(g.b[B_B].port)))
        return false;
    for (int i = 0; i < B__COUNT; i++)
        s_write_policy(i);
    for (int i = 0; i < B__COUNT; i++)
        g.b[i].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[i].name);
    bool up = true;
    for (int i = 0; i < B__COUNT && up; i++)
        up = h_wait_up(&g.b[i].pid, s_cli(i), READY_MS);
    if (!up)
        for (int i = 0; i < B__COUNT; i++) {
            h_stop(&g.b[i].pid, STOP_MS);
            ctl_client_destroy(&g.cli[i]);
        }
    return up;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()))
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "links") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    h_keygen(g.dir, "pa", &g.pa);
    h_keygen(g.dir, "ops", &g.ops);
    h_keygen(g.dir, "other", &g.other);
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++)
        up = s_start_brokers();
    if (!up) {
        fprintf(stderr, "# the brokers did not come up (logs in %s)\n", g.dir);
        return -1;
    }
    s_write_peer();
    g.pa_pid = h_start(g.bin, g.dir, "cpn-peer", "pa");
    if (!s_wait_offer(B_A, "pa", READY_MS) || !s_wait_offer(B_B, "pa", READY_MS)) {
        fprintf(stderr, "# pa's offer did not reach A and B (logs in %s)\n", g.dir);
        return -1;
    }
    return 0;
}

/* ---- tests ---- */

typedef enum { F_FLIP, F_OVERSIZE, F_MALFORMED, F_MUTE } s_fault_t;

static const char *const s_fault_name[] = {"bit flip", "oversize frame", "malformed frame",
                                           "silence"};

/* Make the fault on proxy x, in the server -> client direction. A flip needs traffic: the
 * request `trigger` (may be -1) is sent at broker `trigger` to set it off. */
static void s_fault(tcpproxy_t *x, s_fault_t fault, int trigger)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    switch (fault) {
    case F_FLIP:
        tcpproxy_flip(x, TCPPROXY_TO_CLIENT);
        if (trigger >= 0) {
            cpn_request_t req = s_req("trigger"); /* its CLAIM carries the flipped bit */
            (void)s_send(trigger, &req);
        }
        break;
    case F_OVERSIZE:
        tcpproxy_zmtp_frame(OVERSIZE, &frame, &len);
        assert_non_null(frame);
        tcpproxy_inject(x, TCPPROXY_TO_CLIENT, frame, len);
        break;
    case F_MALFORMED: /* ZMTP flags with reserved bits set: not a frame at all */
        frame = calloc(1, 16);
        assert_non_null(frame);
        memset(frame, 0xff, 16);
        tcpproxy_inject(x, TCPPROXY_TO_CLIENT, frame, 16);
        break;
    case F_MUTE:
        tcpproxy_mute(x, TCPPROXY_TO_CLIENT);
        break;
    }
    free(frame);
}

/* A fault on the A -> pa stream; pa must redial and lease again within `ms`. */
static void s_peer_fault(s_fault_t fault, uint64_t ms)
{
    uint64_t acc0 = tcpproxy_accepted(g.x1), f0 = tcpproxy_faults(g.x1);
    assert_true(s_grant_within(B_A, "before", cpn_mono_ms(), WAIT_MS) != UINT64_MAX);
    uint64_t t0 = cpn_mono_ms();
    s_fault(g.x1, fault, B_A);
    /* A mute shows on the first chunk it drops: pa's heartbeat answered, at the latest. */
    assert_true(s_wait_count(g.x1, tcpproxy_faults, f0, fault == F_MUTE ? ms : FAULT_MS));
    uint64_t t_fault = fault == F_MUTE ? t0 : cpn_mono_ms();
    assert_true(s_wait_count(g.x1, tcpproxy_accepted, acc0, ms));
    uint64_t t_redial = cpn_mono_ms() - t_fault;
    uint64_t t_grant = s_grant_within(B_A, "after", t_fault, ms);
    fprintf(stderr,
            "# %s A -> pa: redialled %" PRIu64 " ms after the fault, request granted after "
            "%" PRIu64 " ms\n",
            s_fault_name[fault], t_redial, t_grant);
    assert_true(t_grant <= ms);
    assert_true(s_offer(B_A, "pa"));
}

/* One bit flipped broker -> peer: the CURVE MESSAGE fails to decrypt, libzmq drops the
 * connection and does not redial by itself; the peer must. */
static void test_peer_redials_after_bit_flip(void **state)
{
    (void)state;
    s_peer_fault(F_FLIP, RECOVER_MS);
}

/* One 70,000-byte frame broker -> peer: over ZMQ_MAXMSGSIZE, the same. */
static void test_peer_redials_after_oversize_frame(void **state)
{
    (void)state;
    s_peer_fault(F_OVERSIZE, RECOVER_MS);
}

/* Bytes that are no ZMTP frame broker -> peer: a protocol error, the same. */
static void test_peer_redials_after_malformed_frame(void **state)
{
    (void)state;
    s_peer_fault(F_MALFORMED, RECOVER_MS);
}

/* The broker falls silent (its bytes no longer arrive, the TCP connection stays open): the
 * peer's heartbeat (PING every 5 s, 15 s without an answer) ends the connection and redials. */
static void test_peer_redials_after_silence(void **state)
{
    (void)state;
    s_peer_fault(F_MUTE, SILENCE_MS);
}

/* A fault from member B on A's link to B: A redials B; a request at B for pa's offer gets its
 * lease back over that link. */
static void s_member_fault(s_fault_t fault, uint64_t ms)
{
    uint64_t acc0 = tcpproxy_accepted(g.x2), f0 = tcpproxy_faults(g.x2);
    assert_true(s_grant_within(B_B, "fed-before", cpn_mono_ms(), WAIT_MS) != UINT64_MAX);
    uint64_t t0 = cpn_mono_ms();
    s_fault(g.x2, fault, -1);
    assert_true(s_wait_count(g.x2, tcpproxy_faults, f0, fault == F_MUTE ? ms : FAULT_MS));
    uint64_t t_fault = fault == F_MUTE ? t0 : cpn_mono_ms();
    assert_true(s_wait_count(g.x2, tcpproxy_accepted, acc0, ms));
    uint64_t t_redial = cpn_mono_ms() - t_fault;
    assert_true(s_wait_offer(B_B, "pa", ms));
    uint64_t t_grant = s_grant_within(B_B, "fed-after", t_fault, ms);
    fprintf(stderr,
            "# %s B -> A on A's member link: redialled %" PRIu64
            " ms after the fault, request at B granted after %" PRIu64 " ms\n",
            s_fault_name[fault], t_redial, t_grant);
    assert_true(t_grant <= ms);
}

/* The flip hits the next thing B sends on A's link: a heartbeat PONG at the latest (A pings
 * every second). */
static void test_member_link_redials_after_bit_flip(void **state)
{
    (void)state;
    s_member_fault(F_FLIP, RECOVER_MS);
}

static void test_member_link_redials_after_oversize_frame(void **state)
{
    (void)state;
    s_member_fault(F_OVERSIZE, RECOVER_MS);
}

/* Member B silent on A's link (heartbeat every hello_timeout / 3, 3 of them unanswered). */
static void test_member_link_redials_after_silence(void **state)
{
    (void)state;
    s_member_fault(F_MUTE, RECOVER_MS);
}

/* A flood of garbage on one tenant connection: the first refusals get a signed ERROR, then at
 * most `refusals` a second; the rest are counted, not answered. A QUERY sent after the flood on
 * the same connection marks the end (the broker answers a connection in order). Another
 * tenant's request on its own connection is granted meanwhile. */
static void test_garbage_flood_gets_few_errors(void **state)
{
    (void)state;
    ctl_client_t *junk = NULL, *other = NULL;
    assert_int_equal(
        ctl_client_new(g.b[B_A].endpoint, g.ops, cpn_identity_pk(g.b[B_A].id), false, &junk),
        CPN_OK);
    assert_int_equal(
        ctl_client_new(g.b[B_A].endpoint, g.other, cpn_identity_pk(g.b[B_A].id), false, &other),
        CPN_OK);
    uint8_t garbage[64];
    memset(garbage, 0xc1, sizeof garbage); /* 0xc1: never used in msgpack */
    uint64_t t0 = cpn_mono_ms();
    for (int i = 0; i < GARBAGE; i++)
        assert_int_equal(ctl_client_send_frame(junk, garbage, sizeof garbage), CPN_OK);
    cpn_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "status");
    uint64_t qseq = 0;
    assert_int_equal(ctl_client_send(junk, CPN_MSG_QUERY, &q, &qseq), CPN_OK);
    /* Another tenant, another connection: served as usual. */
    cpn_request_t req = s_req("other");
    uint64_t rseq = 0;
    h_ans_t a;
    assert_int_equal(ctl_client_send(other, CPN_MSG_REQUEST, &req, &rseq), CPN_OK);
    assert_int_equal(h_await(other, rseq, req.id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    /* Count the ERRORs on the flooded connection up to the QUERY's STATUS. */
    size_t errors = 0;
    bool status = false;
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (!status && cpn_mono_ms() < deadline) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        if (ctl_client_recv(junk, deadline, &frame, &len, &env) != CPN_OK)
            break;
        if (env.type == CPN_MSG_ERROR)
            errors++;
        else if (env.type == CPN_MSG_STATUS)
            status = true;
        free(frame);
    }
    uint64_t elapsed_ms = cpn_mono_ms() - t0;
    /* The bucket: REFUSALS at first, REFUSALS more every second. */
    size_t bound = REFUSALS + (size_t)(REFUSALS * (elapsed_ms / 1000 + 1));
    fprintf(stderr, "# %d garbage frames in %" PRIu64 " ms: %zu ERRORs back (bound %zu)\n", GARBAGE,
            elapsed_ms, errors, bound);
    assert_true(status);
    assert_true(errors >= 1);
    assert_true(errors <= bound);
    /* Counted all the same. */
    assert_int_equal(h_query(s_cli(B_A), "status", WAIT_MS, &a), CPN_MSG_STATUS);
    assert_true(h_u64(h_get(&a.obj, "refusals_unanswered")) >= GARBAGE - errors);
    h_ans_free(&a);
    ctl_client_destroy(&junk);
    ctl_client_destroy(&other);
}

/* ---- the frame limit, in process ---- */

/* Tick `l` until its stats satisfy drops >= drops and ups >= ups, at most `ms`. */
static bool s_link_wait(cpn_link_t *l, uint64_t drops, uint64_t ups, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    cpn_link_stats_t st;
    for (;;) {
        (void)cpn_link_tick(l, cpn_mono_ms());
        cpn_link_stats(l, &st);
        if (st.drops >= drops && st.ups >= ups)
            return true;
        if (cpn_mono_ms() >= deadline)
            return false;
        zmq_pollitem_t it = {.socket = cpn_link_monitor(l), .events = ZMQ_POLLIN};
        (void)zmq_poll(&it, 1, 20);
    }
}

/* The next frame on `router` within `ms`: its length, or 0 if none came. */
static size_t s_router_next(void *router, uint64_t ms)
{
    zmq_pollitem_t it = {.socket = router, .events = ZMQ_POLLIN};
    uint8_t rid[CPN_RID_MAX], *frame = NULL;
    size_t rid_len = 0, len = 0;
    if (zmq_poll(&it, 1, (long)ms) <= 0 ||
        cpn_recv(router, 1, rid, &rid_len, &frame, &len) != CPN_OK)
        return 0;
    free(frame);
    return len;
}

/* With ZMQ_MAXMSGSIZE m, the largest frame that arrives is m bytes in plain TCP but m - 33
 * over CURVE (a CURVE MESSAGE adds 33 bytes: "\x07MESSAGE", an 8-byte nonce, a 16-byte MAC and a
 * flags byte), so 65,503 under cpn's 64 KiB. One byte more: libzmq drops the connection, the
 * frame is never delivered or answered, and the link comes back; what is sent next arrives. */
static void s_frame_limit(bool curve, size_t largest)
{
    const size_t max = 64 * 1024;
    cpn_identity_t *server = NULL, *client = NULL;
    assert_int_equal(cpn_identity_generate(&server), CPN_OK);
    assert_int_equal(cpn_identity_generate(&client), CPN_OK);
    cpn_curve_t sc = {.enabled = curve, .self = server};
    void *router = NULL;
    int port = 0;
    char ep[64];
    for (int i = 0; i < PORT_TRIES && !router; i++) {
        port = h_free_port(NULL); /* a private context: the port is free on return */
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
        if (cpn_sock_router(g.zctx, ep, max, &sc, &router) != CPN_OK)
            router = NULL;
    }
    assert_non_null(router);
    g.lim_router = router;
    cpn_link_cfg_t lc = {.endpoint = ep,
                         .max_msg = max,
                         .curve = {.enabled = curve, .self = client},
                         .reconnect_ms = 100,
                         .reconnect_max_ms = 1000,
                         .heartbeat_ms = 1000,
                         .heartbeat_timeout_ms = 3000,
                         .name = "limit"};
    memcpy(lc.curve.server_pk, cpn_identity_pk(server), CPN_PK_LEN);
    cpn_link_t *l = NULL;
    assert_int_equal(cpn_link_new(g.zctx, &lc, &l), CPN_OK);
    g.lim_link = l;
    /* The first connection may need a rebuild (3 s) on a loaded machine: allow for one. */
    assert_true(s_link_wait(l, 0, 1, LINK_UP_MS));
    uint8_t *buf = calloc(1, largest + 1);
    assert_non_null(buf);
    assert_int_equal(cpn_send(cpn_link_socket(l), buf, largest), CPN_OK);
    assert_int_equal(s_router_next(router, WAIT_MS), largest);
    assert_int_equal(cpn_send(cpn_link_socket(l), buf, largest + 1), CPN_OK);
    assert_true(s_link_wait(l, 1, 2, WAIT_MS)); /* dropped, and up again */
    assert_int_equal(cpn_send(cpn_link_socket(l), buf, 10), CPN_OK);
    assert_int_equal(s_router_next(router, WAIT_MS), 10); /* the next to arrive: not the big one */
    cpn_link_stats_t st;
    cpn_link_stats(l, &st);
    fprintf(stderr,
            "# %s, ZMQ_MAXMSGSIZE %zu: %zu bytes arrive, %zu drop the connection; back "
            "in %" PRIu64 " ms\n",
            curve ? "CURVE" : "plain TCP", max, largest, largest + 1,
            st.last_up_mono - st.last_drop_mono);
    free(buf);
    cpn_link_destroy(&g.lim_link);
    zmq_close(g.lim_router);
    g.lim_router = NULL;
    cpn_identity_destroy(&server);
    cpn_identity_destroy(&client);
}

static void test_frame_limit_over_curve_is_65503(void **state)
{
    (void)state;
    s_frame_limit(true, 64 * 1024 - 33);
}

static void test_frame_limit_in_plain_tcp_is_65536(void **state)
{
    (void)state;
    s_frame_limit(false, 64 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_redials_after_bit_flip),
        cmocka_unit_test(test_peer_redials_after_oversize_frame),
        cmocka_unit_test(test_peer_redials_after_malformed_frame),
        cmocka_unit_test(test_peer_redials_after_silence),
        cmocka_unit_test(test_member_link_redials_after_bit_flip),
        cmocka_unit_test(test_member_link_redials_after_oversize_frame),
        cmocka_unit_test(test_member_link_redials_after_silence),
        cmocka_unit_test(test_garbage_flood_gets_few_errors),
        cmocka_unit_test(test_frame_limit_over_curve_is_65503),
        cmocka_unit_test(test_frame_limit_in_plain_tcp_is_65536),
    };
    /* CPN_TEST_FILTER=test_member* runs one test alone (each shows its fault by itself). */
    if (getenv("CPN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CPN_TEST_FILTER"));
    return cmocka_run_group_tests_name("links", tests, s_setup, s_teardown);
}
