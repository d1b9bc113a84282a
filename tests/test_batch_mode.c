/* test_batch_mode.c - the broker's batch matching mode (policy placement.batch) with real
 * cpn-broker and cpn-peer processes on 127.0.0.1; the test is the tenant.
 *
 * One peer sells one unit of a cheap T4 and one unit of a dearer G2. Request A takes any
 * accelerator, request B only a T4, sent back to back. Matched one at a time (batch off,
 * the default), A takes the cheap T4 and B is refused; with `placement.batch` on (switched
 * on by SIGHUP) both are in one window and both are granted: A on the G2, B on the T4. A
 * request alone in a window is answered once the window's wait has passed (bounded, not
 * timed), and a request still in the window when the broker stops gets a NACK busy, not
 * silence, and the broker exits cleanly (status 0, which a sanitizer's report would spoil).
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

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define WAIT_MS 5000   /* one answer from the broker */
#define READY_MS 30000 /* a daemon up, a peer's offers in the book (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL (sanitizers on a loaded machine: slow) */
#define POLL_MS 100    /* between two looks at something that changes */
#define PORT_TRIES 5   /* fresh ports tried if the broker cannot bind */
#define BATCH_WAIT_MS 1000 /* the policy's placement.batch.wait below */

enum { T_OPS, T_ALICE, T__COUNT };

typedef struct {
    char dir[256], policy[320], broker_log[320], bin[1024];
    char endpoint[64];
    cpn_identity_t *broker, *peer;
    pid_t broker_pid, peer_pid;
    h_tenant_t t[T__COUNT];
} fx_t;

static fx_t g = {.t = {{.name = "ops"}, {.name = "alice"}}};

/* ---- files ---- */

/* Tenants ops (operator) and alice; batch matching only when `batch` is set: a window of
 * at most 2 requests, closed BATCH_WAIT_MS after its first. */
static void s_write_policy(bool batch)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "batch-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .peers = "dc",
                              .operators = "ops",
                              .tenants = "alice",
                              .limits = "  claim_timeout: 2s\n",
                              .more = batch ? "placement:\n"
                                              "  max_price: \"100.0\"\n"
                                              "  batch: {max: 2, wait: 1s}\n"
                                            : "placement:\n"
                                              "  max_price: \"100.0\"\n",
                          });
}

/* One T4 unit (cheap), one G2 unit (dearer), and CPU nodes with SSD for the other cases. */
static const char S_PACKAGES[] =
    "  - id: t4\n"
    "    count: 1\n"
    "    price: \"1.0\"\n"
    "    cores: 8\n"
    "    memory: 32GiB\n"
    "    accelerators: {vendor: nvidia, model: T4, count: 1, memory: 16GiB,\n"
    "                   bf16_tflops: 65}\n"
    "  - id: g2\n"
    "    count: 1\n"
    "    price: \"2.0\"\n"
    "    cores: 8\n"
    "    memory: 32GiB\n"
    "    accelerators: {vendor: nvidia, model: G2, count: 1, memory: 16GiB,\n"
    "                   bf16_tflops: 30}\n"
    "  - id: cpu-ssd\n"
    "    count: 10\n"
    "    price: \"0.5\"\n"
    "    cores: 4\n"
    "    memory: 8GiB\n"
    "    storage: {class: ssd, size: 100GB}\n";

static void s_write_peer(void)
{
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = "dc",
                                 .region = "test-1",
                                 .refresh = "1s",
                                 .max_lease = "7d",
                                 .broker = g.endpoint,
                                 .broker_name = "broker",
                                 .packages = S_PACKAGES,
                             });
}

/* ---- talking to the broker ---- */

static uint64_t s_status_u64(const char *key)
{
    h_ans_t a;
    assert_int_equal(h_query(g.t[T_OPS].cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    const msgpack_object *v = h_get(&a.obj, key);
    uint64_t n = h_u64(v);
    h_ans_free(&a);
    return n;
}

/* Free units of package `pkg` in the broker's offers; -1 if not listed. */
static long s_offer_free(const char *pkg)
{
    h_ans_t a;
    long fr = -1;
    if (h_query(g.t[T_OPS].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return -2;
    assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        const msgpack_object *f = h_get(row, "free");
        if (h_str_is(h_get(row, "package"), pkg) && f &&
            f->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            fr = (long)f->via.u64;
    }
    h_ans_free(&a);
    return fr;
}

/* Wait until the offers show `want` free units of `pkg`; false after `ms`. */
static bool s_wait_free(const char *pkg, long want, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_offer_free(pkg) == want)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

static cpn_request_t s_req(const char *id)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    return r;
}

/* A: one accelerator of any model. B: one T4. */
static void s_req_pair(const char *a_id, const char *b_id, cpn_request_t *a, cpn_request_t *b)
{
    *a = s_req(a_id);
    a->accel_count = 1;
    *b = s_req(b_id);
    b->accel_count = 1;
    snprintf(b->accel_model, sizeof b->accel_model, "T4");
}

/* Send A and B back to back; their answers in ans[0], ans[1]. */
static void s_submit_pair(const cpn_request_t *a, const cpn_request_t *b, h_ans_t ans[2])
{
    uint64_t seqs[2] = {0, 0};
    assert_int_equal(ctl_client_send(g.t[T_ALICE].cli, CPN_MSG_REQUEST, a, &seqs[0]), CPN_OK);
    assert_int_equal(ctl_client_send(g.t[T_ALICE].cli, CPN_MSG_REQUEST, b, &seqs[1]), CPN_OK);
    const char *const ids[2] = {a->id, b->id}, *const whats[2] = {NULL, NULL};
    h_await_n(g.t[T_ALICE].cli, 2, seqs, ids, whats, BATCH_WAIT_MS + WAIT_MS, ans);
}

/* The package of a GRANT's lease, its chain verified; the peer and lease id for a RELEASE. */
static void s_granted(const h_ans_t *a, cpn_lease_t *lease, uint8_t peer[CPN_PK_LEN])
{
    cpn_limits_t lim = h_big_limits();
    cpn_env_t genv, lenv;
    cpn_grant_t gr;
    const char *why = NULL;
    assert_int_equal(a->type, CPN_MSG_GRANT);
    assert_int_equal(ctl_verify_chain(a->frame, a->len, NULL, &why), CPN_OK);
    assert_int_equal(cpn_env_open(a->frame, a->len, &lim, &genv), CPN_OK);
    assert_int_equal(cpn_grant_decode(&genv, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, lease), CPN_OK);
    memcpy(peer, lenv.from, CPN_PK_LEN);
}

/* Release a lease of alice's (the peer's answer comes back as a GRANT for request `id`). */
static void s_release(const cpn_lease_t *lease, const uint8_t peer[CPN_PK_LEN], const char *id)
{
    cpn_release_t rl;
    uint64_t seq = 0;
    h_ans_t a;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", lease->lease_id);
    memcpy(rl.peer, peer, CPN_PK_LEN);
    assert_int_equal(ctl_client_send(g.t[T_ALICE].cli, CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    assert_int_equal(h_await(g.t[T_ALICE].cli, seq, id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

/* ---- fixture ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (!h_stop(&g.peer_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-peer did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    if (!h_stop(&g.broker_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    h_tenants_close(g.t, T__COUNT);
    for (int i = 0; i < T__COUNT; i++)
        cpn_identity_destroy(&g.t[i].id);
    cpn_identity_destroy(&g.peer);
    cpn_identity_destroy(&g.broker);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "batch") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, "dc", &g.peer);
    for (int i = 0; i < T__COUNT; i++)
        h_keygen(g.dir, g.t[i].name, &g.t[i].id);

    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        int port = h_free_port(NULL);
        if (port <= 0)
            continue;
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
        s_write_policy(false);
        h_tenants_open(g.t, T__COUNT, g.endpoint, cpn_identity_pk(g.broker), true);
        g.broker_pid = h_spawn(g.bin, "cpn-broker", g.policy, g.broker_log);
        up = h_wait_up(&g.broker_pid, g.t[T_OPS].cli, READY_MS);
        if (!up) { /* most likely someone took the port: another one */
            h_stop(&g.broker_pid, STOP_MS);
            h_tenants_close(g.t, T__COUNT);
        }
    }
    if (!up) {
        fprintf(stderr, "# cpn-broker did not come up (log: %s)\n", g.broker_log);
        return -1;
    }
    s_write_peer();
    g.peer_pid = h_start(g.bin, g.dir, "cpn-peer", "dc");
    if (!s_wait_free("t4", 1, READY_MS) || !s_wait_free("g2", 1, READY_MS) ||
        !s_wait_free("cpu-ssd", 10, READY_MS)) {
        fprintf(stderr, "# the peer's offers did not reach the broker\n");
        return -1;
    }
    return 0;
}

/* ---- cases ---- */

/* Batch off (the default): A comes first and takes the cheapest fit, the T4; B, which can
 * use nothing else, is refused though the G2 stays free. A's lease is released after. */
static void test_greedy_loses(void **state)
{
    (void)state;
    cpn_request_t a, b;
    h_ans_t ans[2];
    cpn_lease_t lease;
    uint8_t peer[CPN_PK_LEN];
    s_req_pair("greedy-a", "greedy-b", &a, &b);
    s_submit_pair(&a, &b, ans);
    s_granted(&ans[0], &lease, peer);
    assert_string_equal(lease.package, "t4");
    assert_int_equal(ans[1].type, CPN_MSG_NACK);
    assert_true(ans[1].code == CPN_E_NO_MATCH || ans[1].code == CPN_E_NO_UNITS);
    assert_int_equal(s_offer_free("g2"), 1);
    h_ans_free(&ans[0]);
    h_ans_free(&ans[1]);
    s_release(&lease, peer, "greedy-a");
    assert_true(s_wait_free("t4", 1, READY_MS)); /* the peer's next AD */
}

/* SIGHUP turns placement.batch on: A and B share one window and both are granted, A on the
 * G2 and B on the T4. */
static void test_batch_wins(void **state)
{
    (void)state;
    uint64_t reloads0 = s_status_u64("policy_reloads");
    s_write_policy(true);
    assert_int_equal(kill(g.broker_pid, SIGHUP), 0);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (s_status_u64("policy_reloads") == reloads0 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_status_u64("policy_reloads"), reloads0 + 1);

    cpn_request_t a, b;
    h_ans_t ans[2];
    cpn_lease_t la, lb;
    uint8_t peer[CPN_PK_LEN];
    s_req_pair("batch-a", "batch-b", &a, &b);
    s_submit_pair(&a, &b, ans);
    s_granted(&ans[0], &la, peer);
    s_granted(&ans[1], &lb, peer);
    assert_string_equal(la.package, "g2");
    assert_string_equal(lb.package, "t4");
    h_ans_free(&ans[0]);
    h_ans_free(&ans[1]);
}

/* Alone in a window of 2, a request waits for the window's time and is then served: not
 * before BATCH_WAIT_MS (the broker cannot close the window sooner), and within a bound. */
static void test_lone_request_waits(void **state)
{
    (void)state;
    cpn_request_t r = s_req("lone-1");
    uint64_t seq = 0;
    h_ans_t a;
    r.cores = 4;
    snprintf(r.storage_class, sizeof r.storage_class, "ssd");
    uint64_t t0 = cpn_mono_ms();
    assert_int_equal(ctl_client_send(g.t[T_ALICE].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    assert_int_equal(h_await(g.t[T_ALICE].cli, seq, r.id, NULL, BATCH_WAIT_MS + WAIT_MS, &a),
                     CPN_MSG_GRANT);
    uint64_t took = cpn_mono_ms() - t0;
    assert_true(took >= BATCH_WAIT_MS - 100); /* the clocks' ms rounding, no more */
    cpn_lease_t lease;
    uint8_t peer[CPN_PK_LEN];
    s_granted(&a, &lease, peer);
    assert_string_equal(lease.package, "cpu-ssd");
    h_ans_free(&a);
}

/* SIGTERM while a request waits in the window and another's CLAIM is out to a peer that does
 * not answer (SIGSTOP): both tenants' requests get a NACK busy, and the broker exits with
 * status 0. Timing does not decide which case is tested: the request asks for progress notes,
 * and its first one ("waiting ... to be matched") says it is in the window; the broker is then
 * frozen (SIGSTOP) before the window's wait can have passed since the request was sent, stays
 * frozen until the window is due, and gets SIGTERM while frozen: when it resumes, the handler
 * has set the stop flag before the loop looks at the window, and a stopping broker matches
 * nothing more (server.c). Notes and answer travel in order on one connection: no "matched"
 * note before the NACK proves the request was answered from the window. */
/* Is `a` a STATUS note whose text contains `word`? */
static bool s_note_has(const h_ans_t *a, const char *word)
{
    size_t n = strlen(word);
    if (a->env.type != CPN_MSG_STATUS || a->obj.type != MSGPACK_OBJECT_STR)
        return false;
    for (size_t i = 0; i + n <= a->obj.via.str.size; i++)
        if (memcmp(a->obj.via.str.ptr + i, word, n) == 0)
            return true;
    return false;
}

static void test_stop_answers_window(void **state)
{
    (void)state;
    cpn_request_t r = s_req("stopping-1"), c = s_req("claimed-1");
    uint64_t seq = 0, cseq = 0;
    h_ans_t a;
    r.cores = 4;
    snprintf(r.storage_class, sizeof r.storage_class, "ssd");
    r.progress = true;
    c.cores = 4;
    snprintf(c.storage_class, sizeof c.storage_class, "ssd");
    /* The claimed one first: its window closes, its CLAIM goes to the stopped peer. */
    assert_int_equal(kill(g.peer_pid, SIGSTOP), 0);
    uint64_t claims0 = s_status_u64("claims_sent");
    assert_int_equal(ctl_client_send(g.t[T_OPS].cli, CPN_MSG_REQUEST, &c, &cseq), CPN_OK);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while (s_status_u64("claims_sent") == claims0 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_true(s_status_u64("claims_sent") > claims0);

    /* r in the window: its first note says so. Then freeze the broker, before r's window
     * can close (BATCH_WAIT_MS after r arrived, which is after t0). */
    uint64_t t0 = cpn_mono_ms();
    assert_int_equal(ctl_client_send(g.t[T_ALICE].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    assert_int_equal(h_await(g.t[T_ALICE].cli, seq, NULL, "progress", WAIT_MS, &a),
                     CPN_MSG_STATUS);
    assert_true(s_note_has(&a, "waiting"));
    h_ans_free(&a);
    assert_int_equal(kill(g.broker_pid, SIGSTOP), 0);
    uint64_t t_note = cpn_mono_ms();
    /* Frozen less than BATCH_WAIT_MS after t0: r's window was still open. (The note comes
     * within a round trip; only a machine stalled for a whole second misses this, and then
     * the claim path is what gets tested: said below, the answer is asserted all the same.) */
    bool in_window = t_note - t0 < BATCH_WAIT_MS;
    /* Frozen past the window's end (r arrived before t_note), so the broker wakes up with the
     * window due and the stop requested: it must answer, not match. */
    while (cpn_mono_ms() < t_note + BATCH_WAIT_MS + 200)
        usleep(POLL_MS * 1000);
    assert_int_equal(kill(g.broker_pid, SIGTERM), 0);
    assert_int_equal(kill(g.broker_pid, SIGCONT), 0);

    /* r's answer, and any note that came before it. */
    int matched = 0;
    bool answered = false;
    deadline = cpn_mono_ms() + WAIT_MS;
    memset(&a, 0, sizeof a);
    while (!answered &&
           ctl_client_recv(g.t[T_ALICE].cli, deadline, &a.frame, &a.len, &a.env) == CPN_OK) {
        if (h_match(&a, seq, NULL, "progress")) {
            if (a.env.type == CPN_MSG_STATUS)
                matched += s_note_has(&a, "matched");
            else {
                answered = true;
                assert_int_equal(a.env.type, CPN_MSG_NACK);
                assert_int_equal(a.code, CPN_E_BUSY);
                assert_non_null(strstr(a.reason, "stopping"));
            }
        }
        h_ans_free(&a);
    }
    assert_true(answered);
    if (in_window)
        assert_int_equal(matched, 0); /* answered from the window, never matched */
    else
        fprintf(stderr, "# frozen %llu ms after the request: its window may have closed\n",
                (unsigned long long)(cpn_mono_ms() - t0));
    assert_int_equal(h_await(g.t[T_OPS].cli, cseq, c.id, NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_BUSY);
    assert_non_null(strstr(a.reason, "stopping"));
    h_ans_free(&a);
    assert_true(h_stop(&g.broker_pid, STOP_MS));
    assert_int_equal(kill(g.peer_pid, SIGCONT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_loses),
        cmocka_unit_test(test_batch_wins),
        cmocka_unit_test(test_lone_request_waits),
        cmocka_unit_test(test_stop_answers_window),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("batch_mode", tests, s_setup, s_teardown);
}
