/* test_broker.c - cpn-broker and cpn-peer as real processes; the test is the tenants.
 *
 * A temporary directory gets keys, a broker policy and two peer configurations; the built
 * $CPN_BUILDDIR/cpn-broker and two $CPN_BUILDDIR/cpn-peer start on 127.0.0.1 and the test
 * talks to the broker over ZeroMQ with the same client cpnctl uses (ctl/ctl_client.c).
 * It shows (issue 4, "Done when"): a request by model gets a lease whose signature chain
 * verifies; a request by capability is served by the domestic accelerator (Ascend); an
 * unmatched request is NACKed no-match naming the constraint; over quota is NACKed
 * over-quota, also when the requests that fill the quota are still in flight; an unknown
 * tenant and a bad signature are refused with those codes and counted in `status`; two
 * tenants racing for the last unit get exactly one lease; a peer that stops advertising
 * (SIGSTOP) leaves `offers` after its ttl and returns after SIGCONT; SIGHUP with a good
 * policy admits a new tenant, with a broken one keeps the old policy and logs why; a
 * restarted broker keeps its ledger and quotas; a retried request id returns the same GRANT
 * bytes; progress notes come only to a request that asks for them; every daemon exits
 * cleanly (status 0) on SIGTERM.
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

#define WAIT_MS 5000   /* one answer from the broker */
#define READY_MS 30000 /* a daemon up, a peer's offers in the book (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL (sanitizers on a loaded machine are slow) */
#define POLL_MS 100    /* between two looks at something that changes */
#define PORT_TRIES 5   /* fresh ports tried if the broker cannot bind */
#define REFRESH_S 1    /* peers re-advertise every second: offers live 3 s */

enum { T_ACME, T_BETA, T_RACE1, T_RACE2, T_GAMMA, T_STRANGER, T_DELTA, T__COUNT };
enum { P_EAST, P_FLAKY, P__COUNT };

typedef struct {
    const char *name, *region;
    cpn_identity_t *id;
    pid_t pid;
} peer_t;

typedef struct {
    char dir[256], policy[320], broker_log[320], bin[1024];
    int port;
    char endpoint[64];
    cpn_identity_t *broker;
    pid_t broker_pid;
    h_tenant_t t[T__COUNT];
    peer_t p[P__COUNT];
} fx_t;

static fx_t g = {
    .t = {{.name = "acme"},
          {.name = "beta"},
          {.name = "racer1"},
          {.name = "racer2"},
          {.name = "gamma"},
          {.name = "stranger"},
          {.name = "delta"}},
    .p = {{.name = "dc-east", .region = "cn-east"}, {.name = "dc-flaky", .region = "cn-north"}},
};

/* ---- files ---- */

/* How often `needle` occurs in a file (0 if it cannot be read). */
static int s_count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int count = 0;
    for (const char *p = buf; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    return count;
}

/* The broker policy: tenants acme (operator), beta (quota: 1 unit), racer1, racer2, delta
 * (quota: 8 accelerators), and gamma only when `gamma` is set; `broken` adds a tenant whose
 * key is no key. */
/* Extra lines of the `limits` map s_write_policy writes ("" normally). */
static const char *s_limits_extra = "";

static void s_write_policy(bool gamma, bool broken)
{
    char tenants[1024];
    snprintf(tenants, sizeof tenants,
             "  - name: beta\n"
             "    key: beta.pub\n"
             "    quota:\n"
             "      units: 1\n"
             "  - name: racer1\n"
             "    key: racer1.pub\n"
             "  - name: racer2\n"
             "    key: racer2.pub\n"
             "  - name: delta\n"
             "    key: delta.pub\n"
             "    quota:\n"
             "      accelerators: 8\n"
             "%s%s",
             gamma ? "  - name: gamma\n    key: gamma.pub\n" : "",
             broken ? "  - name: broken\n    key: not-a-key-at-all\n" : "");
    char limits[1024];
    snprintf(limits, sizeof limits, "  claim_timeout: 2s\n  claim_tries: 3\n%s", s_limits_extra);
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "test-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .peers = "dc-east dc-flaky",
                              .operators = "acme",
                              .tenants_more = tenants,
                              .limits = limits,
                              .more = "placement:\n"
                                      "  regions: [cn-east, cn-north]\n"
                                      "  prefer_vendors: [huawei]\n"
                                      "  max_price: \"300.0\"\n",
                          });
}

/* dc-east sells H100s, Ascend 910Bs, one last MI300X unit and CPU nodes with SSD; dc-flaky
 * sells CPU nodes only (it is the one that stops advertising). */
static void s_write_peer(const peer_t *p)
{
    static const char east[] =
        "  - id: h100x8\n"
        "    count: 4\n"
        "    price: \"210.0\"\n"
        "    cores: 96\n"
        "    memory: 1TiB\n"
        "    accelerators: {vendor: nvidia, model: H100-80GB, count: 8, memory: 80GiB,\n"
        "                   bf16_tflops: 989}\n"
        "  - id: ascend910b-x8\n"
        "    count: 4\n"
        "    price: \"90.0\"\n"
        "    cores: 192\n"
        "    memory: 1536GiB\n"
        "    accelerators: {vendor: huawei, model: Ascend-910B, count: 8, memory: 64GiB,\n"
        "                   bf16_tflops: 320}\n"
        "  - id: mi300x-last\n"
        "    count: 1\n"
        "    price: \"100.0\"\n"
        "    cores: 32\n"
        "    memory: 256GiB\n"
        "    accelerators: {vendor: amd, model: MI300X, count: 1, memory: 192GiB,\n"
        "                   bf16_tflops: 1300}\n"
        "  - id: cpu16-ssd\n"
        "    count: 20\n"
        "    price: \"1.0\"\n"
        "    cores: 16\n"
        "    memory: 64GiB\n"
        "    storage: {class: ssd, size: 1TB}\n";
    static const char flaky[] = "  - id: flaky-cpu\n"
                                "    count: 2\n"
                                "    price: \"0.5\"\n"
                                "    cores: 8\n"
                                "    memory: 32GiB\n";
    char refresh[16];
    snprintf(refresh, sizeof refresh, "%ds", REFRESH_S);
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = p->name,
                                 .region = p->region,
                                 .refresh = refresh,
                                 .max_lease = "7d",
                                 .broker = g.endpoint,
                                 .broker_name = "broker",
                                 .packages = p == &g.p[P_EAST] ? east : flaky,
                             });
}

/* ---- processes ---- */

/* A signal to one daemon we started; never to 0 or -1 (a whole group, every process). */
static void s_signal(pid_t pid, int sig)
{
    assert_true(pid > 0);
    assert_int_equal(kill(pid, sig), 0);
}

static void s_start_broker(void)
{
    g.broker_pid = h_spawn(g.bin, "cpn-broker", g.policy, g.broker_log);
}

static void s_start_peer(peer_t *p)
{
    p->pid = h_start(g.bin, g.dir, "cpn-peer", p->name);
}

/* ---- talking to the broker ---- */

static cpn_request_t s_req(const char *id)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    return r;
}

/* One unit of the CPU-with-SSD package (only dc-east's cpu16-ssd fits). */
static cpn_request_t s_req_cpu(const char *id)
{
    cpn_request_t r = s_req(id);
    r.cores = 16;
    snprintf(r.storage_class, sizeof r.storage_class, "ssd");
    return r;
}

static cpn_msg_type_t s_submit(int t, const cpn_request_t *req, h_ans_t *a)
{
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.t[t].cli, CPN_MSG_REQUEST, req, &seq), CPN_OK);
    return h_await(g.t[t].cli, seq, req->id, NULL, WAIT_MS, a);
}

/* A counter of the broker's status (acme asks); `sub` looks inside the map `key`. */
static uint64_t s_status_u64(const char *key, const char *sub)
{
    h_ans_t a;
    assert_int_equal(h_query(g.t[T_ACME].cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    const msgpack_object *v = h_get(&a.obj, key);
    if (sub) {
        assert_non_null(v);
        assert_int_equal(v->type, MSGPACK_OBJECT_MAP);
        v = h_get(v, sub);
    }
    uint64_t n = h_u64(v);
    h_ans_free(&a);
    return n;
}

/* Free units of peer `name`'s package `pkg` in the broker's offers; -1 if not listed. */
static long s_offer_free(const char *name, const char *pkg)
{
    h_ans_t a;
    long fr = -1;
    if (h_query(g.t[T_ACME].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return -2;
    assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "name"), name) && h_str_is(h_get(row, "package"), pkg))
            fr = (long)h_u64(h_get(row, "free"));
    }
    h_ans_free(&a);
    return fr;
}

/* Wait until the offers list (or no longer lists) a package; false after `ms`. */
static bool s_wait_offer(const char *name, const char *pkg, bool listed, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if ((s_offer_free(name, pkg) >= 0) == listed)
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* Decode a GRANT's chain: the LEASE (signed by the peer) and the REQUEST inside its CLAIM. */
typedef struct {
    cpn_env_t genv, lenv, cenv, renv;
    cpn_grant_t grant;
    cpn_lease_t lease;
    cpn_claim_t claim;
} chain_t;

static void s_chain(const h_ans_t *a, chain_t *c)
{
    memset(c, 0, sizeof *c);
    cpn_limits_t lim = h_big_limits();
    assert_int_equal(cpn_env_open(a->frame, a->len, &lim, &c->genv), CPN_OK);
    assert_int_equal(cpn_grant_decode(&c->genv, &lim, &c->grant), CPN_OK);
    assert_int_equal(cpn_env_open(c->grant.lease.ptr, c->grant.lease.len, &lim, &c->lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&c->lenv, &lim, &c->lease), CPN_OK);
    assert_int_equal(cpn_env_open(c->lease.claim.ptr, c->lease.claim.len, &lim, &c->cenv), CPN_OK);
    assert_int_equal(cpn_claim_decode(&c->cenv, &lim, &c->claim), CPN_OK);
    assert_int_equal(cpn_env_open(c->claim.request.ptr, c->claim.request.len, &lim, &c->renv),
                     CPN_OK);
}

/* ---- fixture ---- */

/* Stops everything; fails (and keeps the directory) if a daemon did not exit cleanly. */
static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int i = 0; i < P__COUNT; i++)
        if (!h_stop(&g.p[i].pid, STOP_MS)) {
            fprintf(stderr, "# %s did not exit cleanly on SIGTERM\n", g.p[i].name);
            clean = false;
        }
    if (!h_stop(&g.broker_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    h_tenants_close(g.t, T__COUNT);
    for (int i = 0; i < T__COUNT; i++)
        cpn_identity_destroy(&g.t[i].id);
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    cpn_identity_destroy(&g.broker);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "broker") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_keygen(g.dir, "broker", &g.broker);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    for (int i = 0; i < T__COUNT; i++)
        h_keygen(g.dir, g.t[i].name, &g.t[i].id);

    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        g.port = h_free_port(NULL);
        if (g.port <= 0)
            continue;
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", g.port);
        s_write_policy(false, false);
        h_tenants_open(g.t, T__COUNT, g.endpoint, cpn_identity_pk(g.broker), true);
        s_start_broker();
        up = h_wait_up(&g.broker_pid, g.t[T_ACME].cli, READY_MS);
        if (!up) { /* most likely someone took the port: another one */
            h_stop(&g.broker_pid, STOP_MS);
            h_tenants_close(g.t, T__COUNT);
        }
    }
    if (!up) {
        fprintf(stderr, "# cpn-broker did not come up (log: %s)\n", g.broker_log);
        return -1;
    }
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(&g.p[i]);
        s_start_peer(&g.p[i]);
    }
    if (!s_wait_offer("dc-east", "cpu16-ssd", true, READY_MS) ||
        !s_wait_offer("dc-flaky", "flaky-cpu", true, READY_MS)) {
        fprintf(stderr, "# the peers' offers did not reach the broker\n");
        return -1;
    }
    return 0;
}

/* ---- cases ---- */

/* By model name: 8 x H100 in cn-east. The GRANT's whole chain verifies offline, names the
 * tenant who asked and the peer who granted; one flipped byte breaks it. */
static void test_by_model(void **state)
{
    (void)state;
    cpn_request_t req = s_req("model-h100-1");
    snprintf(req.accel_model, sizeof req.accel_model, "H100-80GB");
    req.accel_count = 8;
    req.regions.n = 1;
    snprintf(req.regions.items[0], sizeof req.regions.items[0], "cn-east");
    h_ans_t a;
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a.frame, a.len, NULL, &why), CPN_OK);
    chain_t c;
    s_chain(&a, &c);
    assert_memory_equal(c.genv.from, cpn_identity_pk(g.broker), CPN_PK_LEN);
    assert_memory_equal(c.lenv.from, cpn_identity_pk(g.p[P_EAST].id), CPN_PK_LEN);
    assert_memory_equal(c.cenv.from, cpn_identity_pk(g.broker), CPN_PK_LEN);
    assert_memory_equal(c.renv.from, cpn_identity_pk(g.t[T_ACME].id), CPN_PK_LEN);
    assert_string_equal(c.grant.request_id, "model-h100-1");
    assert_string_equal(c.lease.package, "h100x8");
    assert_int_equal(c.lease.units, 1);
    assert_string_equal(c.lease.state, "active");
    assert_true(c.lease.end_ms - c.lease.start_ms == 3600 * 1000);

    uint8_t *bad = malloc(a.len);
    assert_non_null(bad);
    memcpy(bad, a.frame, a.len);
    bad[a.len / 2] ^= 0x01; /* inside the embedded LEASE */
    assert_int_not_equal(ctl_verify_chain(bad, a.len, NULL, &why), CPN_OK);
    free(bad);
    h_ans_free(&a);
}

/* By capability, any vendor: >= 2000 BF16 TFLOPS and >= 256 GiB accelerator memory per unit
 * at <= 120.0/h. The H100 node qualifies on capability but not on price, the MI300X not on
 * capability: the Ascend 910B node serves it. */
static void test_by_capability(void **state)
{
    (void)state;
    cpn_request_t req = s_req("capability-1");
    req.min_tflops = 2000;
    req.min_accel_mem = 256ull << 30;
    req.max_price = 120000;
    h_ans_t a;
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a.frame, a.len, NULL, &why), CPN_OK);
    chain_t c;
    s_chain(&a, &c);
    assert_string_equal(c.lease.package, "ascend910b-x8");
    assert_true(c.lease.price <= 120000);
    h_ans_free(&a);

    /* and the package the broker offers under that name is the Ascend one */
    h_ans_t o;
    assert_int_equal(h_query(g.t[T_ACME].cli, "offers", WAIT_MS, &o), CPN_MSG_STATUS);
    bool seen = false;
    for (uint32_t i = 0; i < o.obj.via.array.size; i++) {
        const msgpack_object *row = &o.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "package"), "ascend910b-x8")) {
            assert_true(h_str_is(h_get(row, "accelerators"), "8xAscend-910B"));
            seen = true;
        }
    }
    assert_true(seen);
    h_ans_free(&o);
}

/* Unmatched: a NACK no-match whose reason names the constraint that excluded the offers. */
static void test_unmatched(void **state)
{
    (void)state;
    h_ans_t a;
    cpn_request_t req = s_req("nomatch-model");
    snprintf(req.accel_model, sizeof req.accel_model, "B200");
    req.accel_count = 16;
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_NO_MATCH);
    assert_non_null(strstr(a.reason, "accelerator.model"));
    h_ans_free(&a);

    req = s_req("nomatch-region");
    req.cores = 1;
    req.regions.n = 1;
    snprintf(req.regions.items[0], sizeof req.regions.items[0], "eu-west");
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_NO_MATCH);
    assert_non_null(strstr(a.reason, "region"));
    assert_null(strstr(a.reason, "accelerator"));
    h_ans_free(&a);
}

/* Over quota: beta may hold 1 unit; the second request is NACKed over-quota. */
static void test_over_quota(void **state)
{
    (void)state;
    h_ans_t a;
    cpn_request_t req = s_req_cpu("beta-1");
    assert_int_equal(s_submit(T_BETA, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    req = s_req_cpu("beta-2");
    assert_int_equal(s_submit(T_BETA, &req, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_QUOTA);
    assert_true(a.reason[0] != 0);
    h_ans_free(&a);
    /* the quota is beta's, not everyone's: acme still gets the same package */
    req = s_req_cpu("acme-cpu-1");
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

/* Requests in flight count against the quota: delta may hold 8 accelerators and sends two
 * requests for one 8 x H100 unit at once; the second must not pass while the first is being
 * claimed (else both are granted, 16 accelerators). */
static void test_quota_in_flight(void **state)
{
    (void)state;
    cpn_request_t r1 = s_req("delta-1"), r2 = s_req("delta-2");
    snprintf(r1.accel_model, sizeof r1.accel_model, "H100-80GB");
    snprintf(r2.accel_model, sizeof r2.accel_model, "H100-80GB");
    r1.accel_count = r2.accel_count = 8;
    uint64_t s1 = 0, s2 = 0;
    assert_int_equal(ctl_client_send(g.t[T_DELTA].cli, CPN_MSG_REQUEST, &r1, &s1), CPN_OK);
    assert_int_equal(ctl_client_send(g.t[T_DELTA].cli, CPN_MSG_REQUEST, &r2, &s2), CPN_OK);
    /* the NACK may well come first: the LEASE for delta-1 takes a round trip to the peer */
    h_ans_t a[2];
    const uint64_t seqs[2] = {s1, s2};
    const char *const ids[2] = {"delta-1", "delta-2"}, *const whats[2] = {NULL, NULL};
    h_await_n(g.t[T_DELTA].cli, 2, seqs, ids, whats, WAIT_MS, a);
    assert_int_equal(a[0].type, CPN_MSG_GRANT);
    assert_int_equal(a[1].type, CPN_MSG_NACK);
    assert_int_equal(a[1].code, CPN_E_OVER_QUOTA);
    assert_non_null(strstr(a[1].reason, "accelerators"));
    h_ans_free(&a[0]);
    h_ans_free(&a[1]);
}

/* An unknown tenant and a bad signature: ERROR with that code, and counted in status. */
static void test_refusals_counted(void **state)
{
    (void)state;
    uint64_t unknown0 = s_status_u64("refused", "unknown-tenant");
    uint64_t badsig0 = s_status_u64("refused", "bad-signature");

    h_ans_t a;
    cpn_request_t req = s_req_cpu("stranger-1");
    assert_int_equal(s_submit(T_STRANGER, &req, &a), CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_UNKNOWN_TENANT);
    h_ans_free(&a);

    /* acme's request with one bit of its signature flipped */
    req = s_req_cpu("badsig-1");
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_signer_t *signer = ctl_client_signer(g.t[T_ACME].cli);
    assert_int_equal(cpn_signer_build(signer, CPN_MSG_REQUEST, &req, &frame, &len), CPN_OK);
    uint64_t seq = signer->last_seq;
    frame[len - 1] ^= 0x01; /* the signature is the frame's last 64 bytes */
    assert_int_equal(ctl_client_send_frame(g.t[T_ACME].cli, frame, len), CPN_OK);
    free(frame);
    assert_int_equal(h_await(g.t[T_ACME].cli, seq, req.id, NULL, WAIT_MS, &a), CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_SIG);
    h_ans_free(&a);

    assert_int_equal(s_status_u64("refused", "unknown-tenant"), unknown0 + 1);
    assert_int_equal(s_status_u64("refused", "bad-signature"), badsig0 + 1);
    /* and nothing was leased for either */
    assert_int_equal(h_query(g.t[T_ACME].cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    for (uint32_t i = 0; i < a.obj.via.array.size; i++)
        assert_false(h_str_is(h_get(&a.obj.via.array.ptr[i], "request"), "badsig-1"));
    h_ans_free(&a);
}

/* Two tenants, one unit left: both REQUESTs are in flight at once; exactly one lease. */
static void test_race_last_unit(void **state)
{
    (void)state;
    assert_int_equal(s_offer_free("dc-east", "mi300x-last"), 1);
    cpn_request_t r1 = s_req("race-1"), r2 = s_req("race-2");
    snprintf(r1.accel_model, sizeof r1.accel_model, "MI300X");
    snprintf(r2.accel_model, sizeof r2.accel_model, "MI300X");
    r1.accel_count = r2.accel_count = 1;
    uint64_t s1 = 0, s2 = 0;
    assert_int_equal(ctl_client_send(g.t[T_RACE1].cli, CPN_MSG_REQUEST, &r1, &s1), CPN_OK);
    assert_int_equal(ctl_client_send(g.t[T_RACE2].cli, CPN_MSG_REQUEST, &r2, &s2), CPN_OK);
    h_ans_t a1, a2;
    cpn_msg_type_t t1 = h_await(g.t[T_RACE1].cli, s1, "race-1", NULL, WAIT_MS + 2000, &a1);
    cpn_msg_type_t t2 = h_await(g.t[T_RACE2].cli, s2, "race-2", NULL, WAIT_MS + 2000, &a2);
    int grants = (t1 == CPN_MSG_GRANT) + (t2 == CPN_MSG_GRANT);
    int nacks = (t1 == CPN_MSG_NACK) + (t2 == CPN_MSG_NACK);
    assert_int_equal(grants, 1);
    assert_int_equal(nacks, 1);
    h_ans_t *lost = t1 == CPN_MSG_NACK ? &a1 : &a2;
    h_ans_t *won = t1 == CPN_MSG_GRANT ? &a1 : &a2;
    assert_true(lost->code == CPN_E_NO_UNITS || lost->code == CPN_E_NO_MATCH);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(won->frame, won->len, NULL, &why), CPN_OK);
    chain_t c;
    s_chain(won, &c);
    assert_string_equal(c.lease.package, "mi300x-last");
    h_ans_free(&a1);
    h_ans_free(&a2);
    /* the peer's next AD says so too */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while (s_offer_free("dc-east", "mi300x-last") != 0 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_offer_free("dc-east", "mi300x-last"), 0);
}

/* The same request id again returns the same lease, byte for byte. */
static void test_idempotent_retry(void **state)
{
    (void)state;
    h_ans_t a, b;
    cpn_request_t req = s_req_cpu("idem-1");
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    assert_int_equal(s_submit(T_ACME, &req, &b), CPN_MSG_GRANT);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.frame, b.frame, a.len);
    h_ans_free(&a);
    h_ans_free(&b);
    /* one lease in the ledger for it, not two */
    assert_int_equal(h_query(g.t[T_ACME].cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    int n = 0;
    for (uint32_t i = 0; i < a.obj.via.array.size; i++)
        n += h_str_is(h_get(&a.obj.via.array.ptr[i], "request"), "idem-1");
    assert_int_equal(n, 1);
    h_ans_free(&a);
}

/* Progress notes are opt-in: a REQUEST without `progress` gets its GRANT and nothing before
 * it; with `progress` the broker's notes ("matched", "claiming") come first, each signed by
 * the broker. Returns the number of progress notes seen before the GRANT. */
static int s_progress_notes(int t, const cpn_request_t *req)
{
    uint64_t seq = 0, deadline = cpn_mono_ms() + WAIT_MS;
    cpn_limits_t lim = h_big_limits();
    int notes = 0;
    bool granted = false;
    assert_int_equal(ctl_client_send(g.t[t].cli, CPN_MSG_REQUEST, req, &seq), CPN_OK);
    while (!granted) {
        h_ans_t a;
        memset(&a, 0, sizeof a);
        assert_int_equal(ctl_client_recv(g.t[t].cli, deadline, &a.frame, &a.len, &a.env),
                         CPN_OK);
        assert_memory_equal(a.env.from, cpn_identity_pk(g.broker), CPN_PK_LEN);
        cpn_status_t st;
        memset(&st, 0, sizeof st);
        if (a.env.type == CPN_MSG_STATUS && cpn_status_decode(&a.env, &lim, &st) == CPN_OK &&
            strcmp(st.what, "progress") == 0)
            notes++;
        granted = h_match(&a, seq, req->id, NULL) && a.env.type == CPN_MSG_GRANT;
        h_ans_free(&a);
    }
    return notes;
}

static void test_progress_opt_in(void **state)
{
    (void)state;
    cpn_request_t req = s_req_cpu("quiet-1");
    assert_int_equal(s_progress_notes(T_ACME, &req), 0);
    req = s_req_cpu("chatty-1");
    req.progress = true;
    assert_int_equal(s_progress_notes(T_ACME, &req), 2); /* matched, claiming */
}

/* A peer that stops advertising (SIGSTOP) leaves the offers after its ttl (3 x refresh =
 * 3 s), not before; after SIGCONT it is back. */
static void test_peer_ttl(void **state)
{
    (void)state;
    peer_t *p = &g.p[P_FLAKY];
    assert_true(s_wait_offer(p->name, "flaky-cpu", true, READY_MS));
    s_signal(p->pid, SIGSTOP);
    uint64_t t0 = cpn_mono_ms();
    /* its last AD is at most one refresh old: it has at least 2 s to live */
    assert_true(s_offer_free(p->name, "flaky-cpu") >= 0);
    bool gone = s_wait_offer(p->name, "flaky-cpu", false, 3000 * REFRESH_S + 3000);
    uint64_t took = cpn_mono_ms() - t0;
    s_signal(p->pid, SIGCONT);
    assert_true(gone);
    assert_true(took >= 1500 * REFRESH_S);
    assert_true(s_offer_free("dc-east", "cpu16-ssd") >= 0); /* the other peer stays */
    assert_true(s_wait_offer(p->name, "flaky-cpu", true, READY_MS));
}

/* SIGHUP with a good policy that adds gamma: gamma may submit. SIGHUP with a broken policy:
 * refused, logged, and the running policy (with gamma) stays. */
static void test_policy_reload(void **state)
{
    (void)state;
    h_ans_t a;
    cpn_request_t req = s_req_cpu("gamma-1");
    assert_int_equal(s_submit(T_GAMMA, &req, &a), CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_UNKNOWN_TENANT);
    h_ans_free(&a);

    uint64_t reloads0 = s_status_u64("policy_reloads", NULL);
    s_write_policy(true, false);
    s_signal(g.broker_pid, SIGHUP);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (s_status_u64("policy_reloads", NULL) == reloads0 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_status_u64("policy_reloads", NULL), reloads0 + 1);
    assert_int_equal(s_submit(T_GAMMA, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);

    int refused0 = s_count_in_file(g.broker_log, "refused (");
    s_write_policy(true, true);
    s_signal(g.broker_pid, SIGHUP);
    deadline = cpn_mono_ms() + WAIT_MS;
    while (s_count_in_file(g.broker_log, "refused (") == refused0 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_count_in_file(g.broker_log, "refused ("), refused0 + 1);
    assert_true(s_count_in_file(g.broker_log, "running policy stays") >= 1);
    assert_true(h_alive(&g.broker_pid));
    assert_int_equal(s_status_u64("policy_reloads", NULL), reloads0 + 1);
    /* the old policy: acme and gamma are still tenants */
    req = s_req_cpu("gamma-2");
    assert_int_equal(s_submit(T_GAMMA, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    req = s_req_cpu("acme-after-bad-reload");
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    s_write_policy(true, false); /* what the running broker has, for the restart case */
}

/* SIGHUP with a policy that changes a key the broker sized something with at start (the
 * pending table: limits.max_pending; the replay guard's window: limits.skew) is refused
 * naming the key, counted in policy_reloads_failed, and the running policy stays. */
static void test_policy_reload_needs_restart(void **state)
{
    (void)state;
    static const struct {
        const char *limits, *log;
    } cases[] = {
        {"  max_pending: 77\n", "limits.max_pending needs a restart"},
        {"  skew: 45s\n", "limits.skew needs a restart"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t failed0 = s_status_u64("policy_reloads_failed", NULL);
        uint64_t reloads0 = s_status_u64("policy_reloads", NULL);
        int named0 = s_count_in_file(g.broker_log, cases[i].log);
        s_limits_extra = cases[i].limits;
        s_write_policy(true, false);
        s_signal(g.broker_pid, SIGHUP);
        /* The refusal is counted once the broker has handled the signal: wait for that. */
        uint64_t deadline = cpn_mono_ms() + WAIT_MS;
        while (s_status_u64("policy_reloads_failed", NULL) == failed0 &&
               s_status_u64("policy_reloads", NULL) == reloads0 && cpn_mono_ms() < deadline)
            usleep(POLL_MS * 1000);
        assert_int_equal(s_status_u64("policy_reloads", NULL), reloads0);
        assert_int_equal(s_status_u64("policy_reloads_failed", NULL), failed0 + 1);
        assert_int_equal(s_count_in_file(g.broker_log, cases[i].log), named0 + 1);
        assert_true(h_alive(&g.broker_pid));
    }
    s_limits_extra = "";
    s_write_policy(true, false); /* what the running broker has, for the restart case */
}

/* The ledger survives a restart: beta, at its quota before, is over quota after; its lease
 * is still listed; its request id still returns the same GRANT bytes. */
static void test_restart_keeps_ledger(void **state)
{
    (void)state;
    h_ans_t a, before;
    cpn_request_t req = s_req_cpu("beta-1"); /* granted earlier, or now */
    assert_int_equal(s_submit(T_BETA, &req, &before), CPN_MSG_GRANT);
    chain_t c;
    s_chain(&before, &c);
    char lease_id[CPN_NAME_MAX];
    snprintf(lease_id, sizeof lease_id, "%s", c.lease.lease_id);
    req = s_req_cpu("beta-2");
    assert_int_equal(s_submit(T_BETA, &req, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_QUOTA);
    h_ans_free(&a);

    assert_true(h_stop(&g.broker_pid, STOP_MS)); /* SIGTERM: a clean stop */
    s_start_broker();
    assert_true(h_wait_up(&g.broker_pid, g.t[T_ACME].cli, READY_MS));
    /* the book is soft state: wait for dc-east's next AD before asking */
    assert_true(s_wait_offer("dc-east", "cpu16-ssd", true, READY_MS));

    req = s_req_cpu("beta-3");
    assert_int_equal(s_submit(T_BETA, &req, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_OVER_QUOTA);
    h_ans_free(&a);

    assert_int_equal(h_query(g.t[T_BETA].cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
    bool listed = false;
    for (uint32_t i = 0; i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "lease"), lease_id)) {
            listed = true;
            assert_true(h_str_is(h_get(row, "request"), "beta-1"));
            assert_true(h_str_is(h_get(row, "state"), "active"));
        }
    }
    assert_true(listed);
    h_ans_free(&a);

    req = s_req_cpu("beta-1");
    assert_int_equal(s_submit(T_BETA, &req, &a), CPN_MSG_GRANT);
    assert_int_equal(a.len, before.len);
    assert_memory_equal(a.frame, before.frame, a.len);
    h_ans_free(&a);
    h_ans_free(&before);

    /* and the restarted broker's CLAIMs are taken by the peer (its seq went on rising) */
    req = s_req_cpu("acme-after-restart");
    assert_int_equal(s_submit(T_ACME, &req, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_model),
        cmocka_unit_test(test_by_capability),
        cmocka_unit_test(test_unmatched),
        cmocka_unit_test(test_over_quota),
        cmocka_unit_test(test_quota_in_flight),
        cmocka_unit_test(test_refusals_counted),
        cmocka_unit_test(test_race_last_unit),
        cmocka_unit_test(test_idempotent_retry),
        cmocka_unit_test(test_progress_opt_in),
        cmocka_unit_test(test_peer_ttl),
        cmocka_unit_test(test_policy_reload),
        cmocka_unit_test(test_policy_reload_needs_restart),
        cmocka_unit_test(test_restart_keeps_ledger),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("broker", tests, s_setup, s_teardown);
}
