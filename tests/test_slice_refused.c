/* test_slice_refused.c - the broker's refusal bound on a shared package (issue 16;
 * docs/PROTOCOL.md §7 AD, "Shared accelerators"), with real cpn-broker and cpn-peer processes
 * on 127.0.0.1; the test is the tenant.
 *
 * An AD's `slice_max` says how large a slice of one accelerator is free somewhere, not that the
 * CPU and memory beside it are: the broker may send a CLAIM that no node can take, and the
 * peer refuses it `no-units`. The broker then bounds that package (book_slice_refused) so that,
 * until the peer's next AD, no slice at least as large in share, cores and memory goes there.
 *
 * The peer sells "duo": 2 nodes of 16 cores and one A10 each, in slices (share_min 0.05). A
 * quarter A10 with 15 cores takes one node's CPU (call it A); a whole A10 with one core takes
 * the other's GPU (B). The broker's view: slice_max 750 (A), one node free. Then:
 * - half an A10 with 2 cores: slice_max allows it, no fit point covers it (A has one core, B
 *   no GPU). The CLAIM reaches the peer and is refused: the peer counts one `no-units`
 *   refusal, the broker one more CLAIM sent, the tenant gets NACK no-units.
 * - the same again, with no AD in between (the peer's count of ADs sent is unchanged): NACK
 *   no-match from the broker itself, no CLAIM sent. Then half an A10 with one core, which A
 *   can take, is granted: the peer's counts then are 3 granted and still 1 refusal, the
 *   broker's one more CLAIM (that one).
 * - B's whole A10 released; once the peer's next AD is in the broker's book (B free again),
 *   the request refused before is granted, on the device just released.
 *
 * The peer's counters are its OpenMetrics (`http`), read after a positive event each time (an
 * answer the broker could only give after the peer's). `refresh` is 1 h: the only ADs are those
 * a change of capacity triggers. Every wait is bounded. CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ctl_client.h"
#include "ctl_verify.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "om_parse.h"

#define WAIT_MS 10000  /* one answer from the broker */
#define READY_MS 30000 /* a daemon up, an AD in the book (a bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL (sanitizers on a loaded machine: slow) */
#define PORT_TRIES 5   /* fresh ports tried if a daemon cannot bind */

static struct {
    char dir[256], bin[1024];
    h_broker_t b[1];
    cpn_identity_t *peer;
    pid_t peer_pid;
    int http; /* the peer's /metrics port */
    h_tenant_t t;
    char quarter_slice[CPN_NAME_MAX], whole_slice[CPN_NAME_MAX]; /* "UNIT:DEV" */
    cpn_lease_t whole;
} g = {.b = {{.name = "broker"}}, .t = {.name = "acme"}};

/* ---- files and daemons ---- */

static void s_write_policy(int i)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .peers = "dc",
                              .operators = "acme",
                              .limits = "  claim_timeout: 5s\n",
                          });
}

static const char S_PACKAGES[] =
    "  - id: duo\n"
    "    count: 2\n"
    "    price: \"1.0\"\n"
    "    cores: 16\n"
    "    memory: 64GiB\n"
    "    accelerators: {vendor: nvidia, model: A10, count: 1, memory: 24GiB,\n"
    "                   bf16_tflops: 125, share_min: 0.05}\n";

/* Start the peer with its /metrics on a free port; false if it did not come up. */
static bool s_start_peer(void)
{
    char more[64];
    g.http = h_free_port(NULL);
    if (g.http <= 0)
        return false;
    snprintf(more, sizeof more, "http: 127.0.0.1:%d\n", g.http);
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = "dc",
                                 .region = "test-1",
                                 .refresh = "1h", /* no AD but those a change triggers */
                                 .max_lease = "7d",
                                 .more = more,
                                 .broker = g.b[0].endpoint,
                                 .broker_name = "broker",
                                 .packages = S_PACKAGES,
                             });
    g.peer_pid = h_start(g.bin, g.dir, "cpn-peer", "dc");
    return h_wait_free(g.b[0].cli, "dc", 2, 2, WAIT_MS, READY_MS) && h_alive(&g.peer_pid);
}

/* ---- the peer's counters ---- */

/* The sample `name` (with label=value if label is set) of the peer's /metrics; asserts that
 * the page parses and has it. */
static uint64_t s_metric(const char *name, const char *label, const char *value)
{
    h_http_t h;
    om_doc_t *d = malloc(sizeof *d);
    double v = -1;
    assert_non_null(d);
    assert_true(h_http("GET", g.http, "/metrics", NULL, &h));
    assert_int_equal(h.status, 200);
    if (!om_parse(h.body, h.len, d))
        fail_msg("the peer's /metrics does not parse: %s", d->error);
    bool found = om_find(d, name, label, value, &v);
    h_http_free(&h);
    free(d);
    if (!found)
        return 0; /* a refusal counter appears at its first count */
    assert_true(v >= 0);
    return (uint64_t)v;
}

static uint64_t s_peer_no_units(void)
{
    return s_metric("cpn_peer_refusals_total", "code", "no-units");
}

static uint64_t s_peer_granted(void)
{
    return s_metric("cpn_peer_lease_events_total", "event", "granted");
}

static uint64_t s_peer_ads(void)
{
    return s_metric("cpn_peer_ads_sent_total", NULL, NULL);
}

/* The broker's count of CLAIMs sent. */
static uint64_t s_claims_sent(void)
{
    h_ans_t a;
    assert_int_equal(h_query(g.b[0].cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    uint64_t n = h_u64(h_get(&a.obj, "claims_sent"));
    h_ans_free(&a);
    return n;
}

/* ---- requests ---- */

/* Ask for a slice: `share` thousandths of one A10 (1000: the whole of one) with `cores`; the
 * broker's answer in *a. */
static cpn_msg_type_t s_slice(const char *id, uint32_t share, uint32_t cores, h_ans_t *a)
{
    cpn_request_t r;
    uint64_t seq = 0;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.share = share;
    r.accel_count = 1;
    r.cores = cores;
    assert_int_equal(ctl_client_send(g.t.cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    return h_await(g.t.cli, seq, id, NULL, WAIT_MS, a);
}

/* A slice that must be granted: its lease (chain verified) in *l. */
static void s_granted(const char *id, uint32_t share, uint32_t cores, cpn_lease_t *l)
{
    h_ans_t a;
    cpn_limits_t lim = h_big_limits();
    cpn_env_t lenv;
    cpn_grant_t gr;
    const char *why = NULL;
    cpn_msg_type_t t = s_slice(id, share, cores, &a);
    if (t != CPN_MSG_GRANT)
        fail_msg("%s: %s %s (%s), not a GRANT", id, cpn_msg_name(t), cpn_errname(a.code), a.reason);
    assert_int_equal(ctl_verify_chain(a.frame, a.len, NULL, &why), CPN_OK);
    assert_int_equal(cpn_grant_decode(&a.env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, l), CPN_OK);
    assert_string_equal(l->package, "duo");
    assert_true(l->slice[0] != '\0');
    h_ans_free(&a);
}

/* A slice that must be refused with NACK `code`. */
static void s_refused(const char *id, uint32_t share, uint32_t cores, int32_t code)
{
    h_ans_t a;
    cpn_msg_type_t t = s_slice(id, share, cores, &a);
    if (t != CPN_MSG_NACK || a.code != code)
        fail_msg("%s: %s %s (%s), not NACK %s", id, cpn_msg_name(t), cpn_errname(a.code), a.reason,
                 cpn_errname(code));
    fprintf(stderr, "# %s: NACK %s (%s)\n", id, cpn_errname(a.code), a.reason);
    h_ans_free(&a);
}

/* Release a lease of acme's (the peer's answer comes back as a GRANT for request `id`). */
static void s_release(const cpn_lease_t *l, const char *id)
{
    cpn_release_t rl;
    uint64_t seq = 0;
    h_ans_t a;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", l->lease_id);
    memcpy(rl.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    assert_int_equal(ctl_client_send(g.t.cli, CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    assert_int_equal(h_await(g.t.cli, seq, id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

/* The node of a lease's slice ("UNIT:DEV" -> "UNIT"). */
static void s_node(const char *slice, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", (int)strcspn(slice, ":"), slice);
}

/* ---- fixture ---- */

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "slice-refused") != 0)
        return -1;
    h_keygen(g.dir, "broker", &g.b[0].id);
    h_keygen(g.dir, "dc", &g.peer);
    h_keygen(g.dir, g.t.name, &g.t.id);
    if (!h_brokers_start(g.b, 1, g.bin, g.dir, NULL, s_write_policy, g.t.id, PORT_TRIES,
                         READY_MS)) {
        fprintf(stderr, "# cpn-broker did not come up\n");
        return -1;
    }
    g.t.cli = g.b[0].cli; /* acme is the test's connection (h_brokers_start) */
    bool up = false;
    for (int i = 0; i < PORT_TRIES && !up; i++)
        if (!(up = s_start_peer())) /* most likely someone took the HTTP port */
            h_stop(&g.peer_pid, STOP_MS);
    if (!up) {
        fprintf(stderr, "# cpn-peer did not come up or its AD did not reach the broker\n");
        return -1;
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (!h_stop(&g.peer_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-peer did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    g.t.cli = NULL; /* closed with the broker's */
    if (!h_brokers_stop(g.b, 1, STOP_MS)) {
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    cpn_identity_destroy(&g.t.id);
    cpn_identity_destroy(&g.peer);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

/* ---- cases, in order: one broker, one peer ---- */

/* The state: A has 0.75 of its A10 and one core free, B 15 cores and no GPU. The broker sends
 * half an A10 with 2 cores there (slice_max 750), the peer refuses it. */
static void test_refused_at_peer(void **state)
{
    (void)state;
    cpn_lease_t quarter;
    s_granted("quarter", 250, 15, &quarter);
    s_granted("whole", 1000, 1, &g.whole);
    snprintf(g.quarter_slice, sizeof g.quarter_slice, "%s", quarter.slice);
    snprintf(g.whole_slice, sizeof g.whole_slice, "%s", g.whole.slice);
    char na[CPN_NAME_MAX], nb[CPN_NAME_MAX];
    s_node(g.quarter_slice, na, sizeof na);
    s_node(g.whole_slice, nb, sizeof nb);
    assert_string_not_equal(na, nb); /* the whole A10 could only go to the other node */
    /* The AD after both: one node (A) with a slice free. */
    assert_true(h_wait_free(g.b[0].cli, "dc", 1, 1, WAIT_MS, READY_MS));
    assert_int_equal(s_peer_granted(), 2);
    assert_int_equal(s_peer_no_units(), 0);
    uint64_t claims = s_claims_sent();

    s_refused("half-2c", 500, 2, CPN_E_NO_UNITS);
    assert_int_equal(s_peer_no_units(), 1);
    assert_int_equal(s_peer_granted(), 2);
    assert_int_equal(s_claims_sent(), claims + 1);
}

/* The same slice again, before the peer's next AD: the broker answers itself. A slice with
 * one core less, which A can take, is granted; only then are the counts read: the peer saw
 * that CLAIM and not the doomed one. */
static void test_not_sent_again(void **state)
{
    (void)state;
    uint64_t ads = s_peer_ads(), claims = s_claims_sent();
    s_refused("half-2c-again", 500, 2, CPN_E_NO_MATCH);
    /* The bound held because no AD came between (refresh is 1 h, nothing changed). */
    assert_int_equal(s_peer_ads(), ads);
    assert_int_equal(s_claims_sent(), claims);

    cpn_lease_t l;
    s_granted("half-1c", 500, 1, &l);
    char na[CPN_NAME_MAX], nl[CPN_NAME_MAX];
    s_node(g.quarter_slice, na, sizeof na);
    s_node(l.slice, nl, sizeof nl);
    assert_string_equal(nl, na); /* on A, beside the quarter */
    assert_int_equal(s_claims_sent(), claims + 1);
    assert_int_equal(s_peer_granted(), 3);
    assert_int_equal(s_peer_no_units(), 1);
}

/* B's A10 released: the peer's next AD shows B free, and the slice refused before is granted,
 * where the whole A10 was. */
static void test_granted_after_next_ad(void **state)
{
    (void)state;
    s_release(&g.whole, "whole");
    assert_true(h_wait_free(g.b[0].cli, "dc", 2, 2, WAIT_MS, READY_MS));
    cpn_lease_t l;
    s_granted("half-2c-later", 500, 2, &l);
    assert_string_equal(l.slice, g.whole_slice);
    assert_int_equal(s_peer_granted(), 4);
    assert_int_equal(s_peer_no_units(), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_at_peer),
        cmocka_unit_test(test_not_sent_again),
        cmocka_unit_test(test_granted_after_next_ad),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
