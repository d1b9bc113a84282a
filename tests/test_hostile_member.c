/* test_hostile_member.c - a federation member that sends a real cpn-broker correctly signed
 * but inconsistent RELAYs, SYNCs and FORWARDs.
 *
 * Broker A (a real process, CURVE on every link) lists the test as its member tm: the test
 * binds tm's ROUTER where A's policy says tm listens (A's FORWARDs and SYNCs arrive there) and
 * speaks to A through a DEALER with tm's key. The test also plays peer pl, connected to A
 * directly, and holds the keys of peers pg, pm and pr, which A trusts but which are not
 * connected to it: their ADs reach A only as tm relays them.
 *
 * It shows: A lists no offer from an AD tm signed itself claiming to be a peer, from a peer's
 * AD with altered bytes, from a relay of zero hops or beyond max_hops, nor from an older AD
 * relayed after a newer one, and counts the refusals; a SYNC digest claiming peers tm does not
 * have and seqs far in the future changes nothing in A's book, and a newer AD is still taken;
 * a FORWARD whose CLAIM's REQUEST was altered, whose CLAIM names another peer than the
 * FORWARD, or was signed by someone other than tm never reaches pl (the next honest FORWARD
 * does, and is the first CLAIM pl sees); an answer to a FORWARD A never sent is counted and
 * recorded nowhere; a LEASE coming back for A's own CLAIM, correctly signed by the peer but at
 * another price, reaches the tenant as no GRANT and is not in A's ledger, while the honest
 * LEASE for the same kind of request becomes a GRANT.
 *
 * Every wait is bounded; a refusal is observed through the next honest message on the same
 * link (whose effect proves the hostile one was read before it) and through the counters.
 * CPN_TEST_KEEP=1 keeps the directory.
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

#include "chain.h"
#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define WAIT_MS 10000  /* one answer or effect at A on a loaded machine (a bound) */
#define READY_MS 30000 /* A up */
#define STOP_MS 30000
#define POLL_MS 100
#define PORT_TRIES 5
#define MAX_HOPS 4
#define CLAIM_TIMEOUT_S 2

typedef struct {
    char dir[256], bin[1024], policy[320], log[320];
    char endpoint[64], tm_endpoint[64];
    void *zctx;
    void *tm_router; /* where A's link to tm arrives */
    void *tm_dealer; /* tm's link to A */
    cpn_signer_t tm_sig;
    cpn_identity_t *a, *tm, *pg, *pm, *pr, *pl, *ops;
    pid_t pid;
    h_tenant_t tenant; /* ops, the operator: queries and requests */
    ctl_client_t *pl_cli;
    uint64_t ad_seq; /* the seqs of the ADs the test signs as pg, pm, pr: increasing */
    unsigned marker;
} fx_t;

static fx_t g = {.tenant = {.name = "ops"}};

/* ---- frames ---- */

/* Where `needle` (len bytes) first occurs in f (n bytes); NULL if nowhere. */
static uint8_t *s_find(uint8_t *f, size_t n, const char *needle, size_t len)
{
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(f + i, needle, len) == 0)
            return f + i;
    return NULL;
}

static uint64_t s_seq(void)
{
    uint64_t now = cpn_now_ms();
    g.ad_seq = cpn_seq_next(g.ad_seq, now);
    return g.ad_seq;
}

/* An AD signed by `signer` named `name`, one package `pkg` with `cores` cores. */
static void s_ad(cpn_identity_t *signer, const char *name, const char *pkg, uint32_t cores,
                 uint8_t **f, size_t *n)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", pkg);
    snprintf(p.region, sizeof p.region, "%s", "cn-east");
    p.cores = cores;
    p.mem_bytes = 8ull << 30;
    p.price = 1000;
    p.total = p.free = 100;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "%s", name);
    ad.ttl_s = 600;
    ad.n_packages = 1;
    ad.packages = &p;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(signer, CPN_MSG_AD, s_seq(), now, &ad, f, n), CPN_OK);
}

static void s_tm_send(cpn_msg_type_t type, const void *body, uint64_t *seq)
{
    uint8_t *f = NULL;
    size_t n = 0;
    assert_int_equal(cpn_signer_build(&g.tm_sig, type, body, &f, &n), CPN_OK);
    if (seq) {
        cpn_env_t env;
        assert_int_equal(cpn_env_parse(f, n, NULL, &env), CPN_OK);
        *seq = env.seq;
    }
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_send(g.tm_dealer, f, n)) != CPN_OK && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    assert_int_equal(r, CPN_OK);
    free(f);
}

static void s_relay(const uint8_t *inner, size_t len, uint32_t hops)
{
    cpn_relay_t rel = {.hops = hops, .msg = {inner, len}};
    s_tm_send(CPN_MSG_RELAY, &rel, NULL);
}

/* ---- A's answers ---- */

static uint64_t s_status_u64(const char *key, const char *sub)
{
    h_ans_t a;
    assert_int_equal(h_query(g.tenant.cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    const msgpack_object *v = h_get(&a.obj, key);
    if (sub)
        v = v && v->type == MSGPACK_OBJECT_MAP ? h_get(v, sub) : NULL;
    uint64_t n = h_u64(v);
    h_ans_free(&a);
    return n;
}

/* All refusals A counted, whatever the code. */
static uint64_t s_refused_total(void)
{
    h_ans_t a;
    uint64_t n = 0;
    assert_int_equal(h_query(g.tenant.cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    const msgpack_object *m = h_get(&a.obj, "refused");
    for (uint32_t i = 0; m && m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++)
        n += h_u64(&m->via.map.ptr[i].val);
    h_ans_free(&a);
    return n;
}

/* Wait until the refusals A counted reach `want`; the total at the end. */
static uint64_t s_wait_u64_total(uint64_t want)
{
    uint64_t n = 0, until = cpn_mono_ms() + WAIT_MS;
    while ((n = s_refused_total()) < want && cpn_mono_ms() < until)
        usleep(POLL_MS * 1000);
    return n;
}

/* Wait until counter key[/sub] reaches `want`; its value at the end. */
static uint64_t s_wait_u64(const char *key, const char *sub, uint64_t want)
{
    uint64_t n = 0, until = cpn_mono_ms() + WAIT_MS;
    while ((n = s_status_u64(key, sub)) < want && cpn_mono_ms() < until)
        usleep(POLL_MS * 1000);
    return n;
}

/* Is an offer of peer `name`, package `pkg` in A's book? */
static bool s_offer(const char *name, const char *pkg)
{
    h_ans_t a;
    bool found = false;
    if (h_query(g.tenant.cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        found = found ||
                (h_str_is(h_get(row, "name"), name) && h_str_is(h_get(row, "package"), pkg));
    }
    h_ans_free(&a);
    return found;
}

static bool s_wait_offer(const char *name, const char *pkg)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    do {
        if (s_offer(name, pkg))
            return true;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* A genuine AD of pm relayed by tm, and A listing it: everything tm sent before it on the
 * link has been read. */
static void s_marker(void)
{
    char pkg[32];
    snprintf(pkg, sizeof pkg, "mark-%u", ++g.marker);
    uint8_t *f = NULL;
    size_t n = 0;
    s_ad(g.pm, "pm", pkg, 2, &f, &n);
    s_relay(f, n, 1);
    free(f);
    if (!s_wait_offer("pm", pkg))
        fail_msg("the marker %s never reached A's book", pkg);
}

/* Does the tenant's `leases` list one with `key` = `value`? */
static bool s_ledger_has(const char *key, const char *value)
{
    h_ans_t a;
    bool found = false;
    assert_int_equal(h_query(g.tenant.cli, "leases", WAIT_MS, &a), CPN_MSG_STATUS);
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++)
        found = found || h_str_is(h_get(&a.obj.via.array.ptr[i], key), value);
    h_ans_free(&a);
    return found;
}

/* The next frame of `type` A sends tm (on tm's ROUTER), opened; false if none in time. */
static bool s_tm_recv(cpn_msg_type_t type, uint8_t **frame, size_t *len, cpn_env_t *env)
{
    cpn_limits_t lim = h_big_limits();
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (cpn_mono_ms() < deadline) {
        zmq_pollitem_t it = {g.tm_router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, POLL_MS) <= 0)
            continue;
        uint8_t rid[CPN_RID_MAX];
        size_t rid_len = 0;
        if (cpn_recv(g.tm_router, 1, rid, &rid_len, frame, len) != CPN_OK)
            continue;
        if (cpn_env_open(*frame, *len, &lim, env) == CPN_OK && env->type == type &&
            memcmp(env->from, cpn_identity_pk(g.a), CPN_PK_LEN) == 0)
            return true;
        free(*frame);
        *frame = NULL;
    }
    return false;
}

/* ---- setup ---- */

static void s_write_policy(void)
{
    char hops[32], limits[256];
    snprintf(hops, sizeof hops, "  max_hops: %d\n", MAX_HOPS);
    snprintf(limits, sizeof limits,
             "  frame_size: 64KiB\n"
             "  claim_timeout: %ds\n"
             "  claim_tries: 1\n"
             "  rate:\n"
             "    per_sender: 0/s\n",
             CLAIM_TIMEOUT_S);
    h_write_policy(g.dir, &(h_policy_t){
                              .name = "a",
                              .listen = g.endpoint,
                              .curve = true,
                              .hello_s = 3600, /* never, within the test */
                              .fed_more = hops,
                              .members = {{"tm", g.tm_endpoint}},
                              .peers = "pg pm pr pl",
                              .operators = "ops",
                              .limits = limits,
                          });
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()) ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "hostile-member") != 0)
        return -1;
    snprintf(g.policy, sizeof g.policy, "%s/a.yaml", g.dir);
    snprintf(g.log, sizeof g.log, "%s/a.log", g.dir);
    h_keygen(g.dir, "a", &g.a);
    h_keygen(g.dir, "tm", &g.tm);
    h_keygen(g.dir, "pg", &g.pg);
    h_keygen(g.dir, "pm", &g.pm);
    h_keygen(g.dir, "pr", &g.pr);
    h_keygen(g.dir, "pl", &g.pl);
    h_keygen(g.dir, "ops", &g.tenant.id);
    g.tm_sig.id = g.tm;
    cpn_limits_t lim = h_big_limits();
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        int port = h_free_port(NULL), tport = h_free_port(NULL);
        if (port <= 0 || tport <= 0 || port == tport)
            continue;
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
        snprintf(g.tm_endpoint, sizeof g.tm_endpoint, "tcp://127.0.0.1:%d", tport);
        cpn_curve_t server = {.enabled = 1, .self = g.tm};
        if (cpn_sock_router(g.zctx, g.tm_endpoint, lim.max_frame, &server, &g.tm_router) !=
            CPN_OK)
            continue;
        s_write_policy();
        h_tenants_open(&g.tenant, 1, g.endpoint, cpn_identity_pk(g.a), false);
        g.pid = h_spawn(g.bin, "cpn-broker", g.policy, g.log);
        up = h_wait_up(&g.pid, g.tenant.cli, READY_MS);
        if (!up) {
            h_stop(&g.pid, STOP_MS);
            h_tenants_close(&g.tenant, 1);
            zmq_close(g.tm_router);
            g.tm_router = NULL;
        }
    }
    if (!up) {
        fprintf(stderr, "# cpn-broker did not come up (log: %s)\n", g.log);
        return -1;
    }
    cpn_curve_t client = {.enabled = 1, .self = g.tm};
    memcpy(client.server_pk, cpn_identity_pk(g.a), CPN_PK_LEN);
    if (cpn_sock_dealer(g.zctx, g.endpoint, lim.max_frame, &client, &g.tm_dealer) != CPN_OK ||
        ctl_client_new(g.endpoint, g.pl, cpn_identity_pk(g.a), false, &g.pl_cli) != CPN_OK)
        return -1;
    /* pl, A's local peer: one package, and A listing it. */
    uint8_t *f = NULL;
    size_t n = 0;
    uint64_t until = cpn_mono_ms() + READY_MS;
    bool listed = false;
    while (!listed && cpn_mono_ms() < until) {
        s_ad(g.pl, "pl", "pl-cpu", 4, &f, &n);
        if (ctl_client_send_frame(g.pl_cli, f, n) != CPN_OK)
            return -1;
        free(f);
        f = NULL;
        listed = s_wait_offer("pl", "pl-cpu");
    }
    if (!listed) {
        fprintf(stderr, "# pl's offer did not reach A's book (log: %s)\n", g.log);
        return -1;
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pid, STOP_MS);
    if (!clean)
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
    ctl_client_destroy(&g.pl_cli);
    h_tenants_close(&g.tenant, 1);
    if (g.tm_dealer)
        zmq_close(g.tm_dealer);
    if (g.tm_router)
        zmq_close(g.tm_router);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    cpn_identity_t **ids[] = {&g.a, &g.tm, &g.pg, &g.pm, &g.pr, &g.pl, &g.tenant.id};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        cpn_identity_destroy(ids[i]);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

/* ---- RELAY ---- */

/* Forged, altered, out-of-bounds and replayed ADs through tm: none in A's book, each refusal
 * counted; the genuine ones through the same link are. */
static void test_forged_relays_refused(void **state)
{
    (void)state;
    s_marker(); /* tm is up at A */
    uint64_t refused0 = s_status_u64("relays_refused", NULL);
    uint8_t *f = NULL, *older = NULL;
    size_t n = 0, older_len = 0;

    /* tm's own key, claiming to be pg */
    s_ad(g.tm, "pg", "fake-own-key", 2, &f, &n);
    s_relay(f, n, 1);
    free(f);
    /* pg's AD with one byte of its body changed (the package id: fake-alter -> fake-altes) */
    s_ad(g.pg, "pg", "fake-alter", 2, &f, &n);
    uint8_t *p = s_find(f, n, "fake-alter", 10);
    assert_non_null(p);
    p[9] = 's';
    s_relay(f, n, 1);
    free(f);
    /* pg's genuine AD, zero hops and beyond max_hops */
    s_ad(g.pg, "pg", "fake-hops0", 2, &f, &n);
    s_relay(f, n, 0);
    free(f);
    s_ad(g.pg, "pg", "fake-hops", 2, &f, &n);
    s_relay(f, n, MAX_HOPS + 1);
    free(f);
    /* an older AD after a newer one: the newer stays */
    s_ad(g.pg, "pg", "fake-older", 2, &older, &older_len);
    s_ad(g.pg, "pg", "pg-newer", 2, &f, &n);
    s_relay(f, n, 1);
    free(f);
    s_relay(older, older_len, 1);
    free(older);
    s_marker();

    assert_true(s_offer("pg", "pg-newer"));
    const char *fakes[] = {"fake-own-key", "fake-alter", "fake-altes", "fake-hops0",
                           "fake-hops", "fake-older"};
    for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++)
        if (s_offer("pg", fakes[i]))
            fail_msg("A lists %s", fakes[i]);
    uint64_t refused = s_wait_u64("relays_refused", NULL, refused0 + 4);
    if (refused < refused0 + 4)
        fail_msg("relays_refused %" PRIu64 " -> %" PRIu64 ", not 4 more", refused0, refused);
}

/* ---- SYNC ---- */

static void s_entry(uint8_t *e, const uint8_t *pk, uint64_t seq)
{
    memcpy(e, pk, CPN_PK_LEN);
    for (int i = 0; i < 8; i++)
        e[CPN_PK_LEN + i] = (uint8_t)(seq >> (56 - 8 * i));
}

/* A digest from tm naming peers it does not have (pr, and a key nobody holds) and pg at a seq
 * far in the future: A's book keeps what it has, lists nothing new, and still takes pg's next
 * AD. */
static void test_lying_sync_changes_nothing(void **state)
{
    (void)state;
    uint8_t keys[3][CPN_PK_LEN], entries[3 * CPN_SYNC_ENTRY_LEN];
    memcpy(keys[0], cpn_identity_pk(g.pg), CPN_PK_LEN);
    memcpy(keys[1], cpn_identity_pk(g.pm), CPN_PK_LEN);
    memcpy(keys[2], cpn_identity_pk(g.pr), CPN_PK_LEN);
    /* sorted, as a digest must be */
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (memcmp(keys[j], keys[i], CPN_PK_LEN) < 0) {
                uint8_t t[CPN_PK_LEN];
                memcpy(t, keys[i], CPN_PK_LEN);
                memcpy(keys[i], keys[j], CPN_PK_LEN);
                memcpy(keys[j], t, CPN_PK_LEN);
            }
    for (int i = 0; i < 3; i++)
        s_entry(entries + i * CPN_SYNC_ENTRY_LEN, keys[i], UINT64_MAX - 1);
    cpn_sync_t sy;
    memset(&sy, 0, sizeof sy);
    memset(sy.hi, 0xff, sizeof sy.hi);
    sy.entries.ptr = entries;
    sy.entries.len = sizeof entries;
    s_tm_send(CPN_MSG_SYNC, &sy, NULL);
    s_marker();
    assert_true(s_offer("pl", "pl-cpu"));  /* local: tm has no say */
    assert_true(s_offer("pg", "pg-newer")); /* listed by tm: kept */
    assert_false(s_offer("pr", "pr-cpu")); /* never advertised */
    /* and pg's next genuine AD, far below the seq tm claimed, is taken */
    uint8_t *f = NULL;
    size_t n = 0;
    s_ad(g.pg, "pg", "pg-after-sync", 2, &f, &n);
    s_relay(f, n, 1);
    free(f);
    assert_true(s_wait_offer("pg", "pg-after-sync"));

    /* A malformed digest - keys out of order, or one outside [lo, hi] - is refused and
     * counted. Each covers pg's key without listing it: taken for tm's book, it would make A
     * forget pg's offer, which came through tm. */
    uint64_t n0 = s_refused_total();
    const uint8_t *pm = cpn_identity_pk(g.pm), *pr = cpn_identity_pk(g.pr);
    bool pm_first = memcmp(pm, pr, CPN_PK_LEN) < 0;
    uint8_t bad[2 * CPN_SYNC_ENTRY_LEN];
    s_entry(bad, pm_first ? pr : pm, 1); /* descending */
    s_entry(bad + CPN_SYNC_ENTRY_LEN, pm_first ? pm : pr, 1);
    sy.entries.ptr = bad;
    sy.entries.len = sizeof bad;
    s_tm_send(CPN_MSG_SYNC, &sy, NULL);
    memcpy(sy.lo, cpn_identity_pk(g.pg), CPN_PK_LEN);
    memcpy(sy.hi, cpn_identity_pk(g.pg), CPN_PK_LEN);
    s_entry(bad, pm, 1); /* not pg: outside [lo, hi] */
    sy.entries.len = CPN_SYNC_ENTRY_LEN;
    s_tm_send(CPN_MSG_SYNC, &sy, NULL);
    s_marker();
    if (s_wait_u64_total(n0 + 2) < n0 + 2)
        fail_msg("the malformed digests were not counted as refused");
    assert_true(s_offer("pg", "pg-after-sync"));
}

/* ---- FORWARD towards A's local peer ---- */

static void s_request(const char *id, uint32_t cores, uint8_t **f, size_t *n)
{
    cpn_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.id, sizeof q.id, "%s", id);
    q.units = 1;
    q.duration_s = 600;
    q.cores = cores;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(g.tenant.id, CPN_MSG_REQUEST, cpn_seq_next(0, now), now, &q, f,
                                   n),
                     CPN_OK);
}

/* tm's FORWARD of a CLAIM signed by `signer` for `peer`, the REQUEST `req`. */
static void s_forward_claim(cpn_identity_t *signer, cpn_identity_t *to, cpn_identity_t *peer,
                            const uint8_t *req, size_t req_len, const char *pkg)
{
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request.ptr = req;
    c.request.len = req_len;
    memcpy(c.peer, cpn_identity_pk(peer), CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "%s", pkg);
    c.units = 1;
    c.price = 1000;
    c.duration_s = 600;
    c.deadline = cpn_now_ms() + 60000;
    uint8_t *cf = NULL;
    size_t cn = 0;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(signer, CPN_MSG_CLAIM, cpn_seq_next(0, now), now, &c, &cf, &cn),
                     CPN_OK);
    cpn_forward_t fw;
    memset(&fw, 0, sizeof fw);
    memcpy(fw.to, cpn_identity_pk(to), CPN_PK_LEN);
    fw.hops = 1;
    fw.msg.ptr = cf;
    fw.msg.len = cn;
    s_tm_send(CPN_MSG_FORWARD, &fw, NULL);
    free(cf);
}

/* FORWARDs whose CLAIM is not what it should be never reach pl: the first CLAIM pl gets is
 * the honest one sent after them. */
static void test_forward_inconsistent_claim_not_delivered(void **state)
{
    (void)state;
    uint8_t *req = NULL;
    size_t req_len = 0;
    uint64_t refused0 = s_refused_total();
    /* the REQUEST altered after the tenant signed it */
    s_request("fwd-altered", 4, &req, &req_len);
    uint8_t *p = s_find(req, req_len, "fwd-altered", 11);
    assert_non_null(p);
    p[10] = 'D';
    s_forward_claim(g.tm, g.pl, g.pl, req, req_len, "pl-cpu");
    free(req);
    /* the CLAIM names another peer than the FORWARD's `to` */
    s_request("fwd-other-peer", 4, &req, &req_len);
    s_forward_claim(g.tm, g.pl, g.pr, req, req_len, "pl-cpu");
    free(req);
    /* the CLAIM signed by someone other than tm (a peer's key) */
    s_request("fwd-signer", 4, &req, &req_len);
    s_forward_claim(g.pg, g.pl, g.pl, req, req_len, "pl-cpu");
    free(req);
    /* then the honest one */
    s_request("fwd-honest", 4, &req, &req_len);
    s_forward_claim(g.tm, g.pl, g.pl, req, req_len, "pl-cpu");

    uint8_t *f = NULL;
    size_t n = 0;
    cpn_env_t env;
    uint64_t until = cpn_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(ctl_client_recv(g.pl_cli, until, &f, &n, &env), CPN_OK);
        if (env.type == CPN_MSG_CLAIM)
            break;
        free(f);
    }
    cpn_chain_t *ch = calloc(1, sizeof *ch);
    assert_non_null(ch);
    cpn_chain_opts_t o = {.claim_pk = cpn_identity_pk(g.a),
                          .peer_pk = cpn_identity_pk(g.pl),
                          .tenant_pk = cpn_identity_pk(g.tenant.id),
                          .max_hops = MAX_HOPS,
                          .now_ms = cpn_now_ms()};
    if (cpn_chain_open(f, n, CPN_MSG_CLAIM, &o, ch) != CPN_OK)
        fail_msg("A's CLAIM to pl: %s", ch->why);
    if (strcmp(ch->req.id, "fwd-honest") != 0)
        fail_msg("the first CLAIM pl got is for %s", ch->req.id);
    assert_int_equal(ch->n_forwards, 1);
    assert_int_equal(ch->claim.request.len, req_len); /* the REQUEST, byte for byte */
    assert_memory_equal(ch->claim.request.ptr, req, req_len);
    free(ch);
    free(f);
    free(req);
    uint64_t refused = s_refused_total();
    if (refused < refused0 + 3)
        fail_msg("refusals %" PRIu64 " -> %" PRIu64 ", not 3 more", refused0, refused);
}

/* ---- answers coming back ---- */

typedef void (*s_spoil_fn)(cpn_lease_t *l);

/* pr's LEASE for `claim_frame` (a CLAIM signed by tm), spoilt by `spoil` (NULL: honest),
 * signed by `signer` (NULL: pr). */
static void s_lease(const uint8_t *claim_frame, size_t claim_len, const cpn_claim_t *claim,
                    const cpn_env_t *req_env, const char *req_id, s_spoil_fn spoil,
                    cpn_identity_t *signer, uint8_t **f, size_t *n)
{
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim.ptr = claim_frame;
    l.claim.len = claim_len;
    cpn_chain_lease_id(cpn_identity_pk(g.pr), req_env->from, req_id, l.lease_id);
    snprintf(l.package, sizeof l.package, "%s", claim->package);
    l.units = claim->units;
    l.price = claim->price;
    l.start_ms = cpn_now_ms();
    l.end_ms = l.start_ms + claim->duration_s * 1000;
    snprintf(l.state, sizeof l.state, "%s", "active");
    if (spoil)
        spoil(&l);
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(signer ? signer : g.pr, CPN_MSG_LEASE, s_seq(), now, &l, f, n),
                     CPN_OK);
}

/* An answer for a FORWARD A never sent: recorded nowhere, counted. */
static void test_unasked_answer_refused(void **state)
{
    (void)state;
    uint64_t n0 = s_status_u64("refused", "inconsistent");
    uint8_t *req = NULL, *cf = NULL, *lf = NULL;
    size_t req_len = 0, cn = 0, ln = 0;
    s_request("unasked", 16, &req, &req_len);
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request.ptr = req;
    c.request.len = req_len;
    memcpy(c.peer, cpn_identity_pk(g.pr), CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "%s", "pr-cpu");
    c.units = 1;
    c.price = 1000;
    c.duration_s = 600;
    c.deadline = cpn_now_ms() + 60000;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(g.tm, CPN_MSG_CLAIM, cpn_seq_next(0, now), now, &c, &cf, &cn),
                     CPN_OK);
    cpn_env_t renv;
    assert_int_equal(cpn_env_parse(req, req_len, NULL, &renv), CPN_OK);
    s_lease(cf, cn, &c, &renv, "unasked", NULL, NULL, &lf, &ln);
    cpn_forward_t fw;
    memset(&fw, 0, sizeof fw);
    memcpy(fw.to, cpn_identity_pk(g.pr), CPN_PK_LEN);
    fw.hops = 1;
    fw.msg.ptr = lf;
    fw.msg.len = ln;
    fw.ref_seq = 4242;
    s_tm_send(CPN_MSG_FORWARD, &fw, NULL);
    if (s_wait_u64("refused", "inconsistent", n0 + 1) < n0 + 1)
        fail_msg("an answer to nothing A forwarded was not counted");
    assert_false(s_ledger_has("request", "unasked"));
    free(lf);
    free(cf);
    free(req);
}

/* A request at A served by pr through tm. tm answers A's FORWARD as pr's home broker would,
 * with pr's LEASE spoilt by `spoil` and signed by `signer` (NULL, NULL: honest). The tenant's
 * answer in *a. */
static void s_serve_remote(const char *req_id, s_spoil_fn spoil, cpn_identity_t *signer,
                           h_ans_t *a)
{
    cpn_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.id, sizeof q.id, "%s", req_id);
    q.units = 1;
    q.duration_s = 600;
    q.cores = 16; /* only pr-cpu has 16 */
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.tenant.cli, CPN_MSG_REQUEST, &q, &seq), CPN_OK);

    uint8_t *ff = NULL;
    size_t fn = 0;
    cpn_env_t fenv;
    cpn_limits_t lim = h_big_limits();
    cpn_forward_t fw;
    cpn_env_t cenv, renv;
    cpn_claim_t ca;
    /* A's FORWARD of its CLAIM for pr (answers A sends back to tm for earlier FORWARDs,
     * which carry a ref_seq, are not it) */
    for (;;) {
        if (!s_tm_recv(CPN_MSG_FORWARD, &ff, &fn, &fenv))
            fail_msg("%s: A forwarded no CLAIM to tm", req_id);
        assert_int_equal(cpn_forward_decode(&fenv, &lim, &fw), CPN_OK);
        if (fw.ref_seq == 0 && memcmp(fw.to, cpn_identity_pk(g.pr), CPN_PK_LEN) == 0)
            break;
        free(ff);
        ff = NULL;
    }
    assert_int_equal(cpn_env_open(fw.msg.ptr, fw.msg.len, &lim, &cenv), CPN_OK);
    assert_int_equal(cenv.type, CPN_MSG_CLAIM);
    assert_int_equal(cpn_claim_decode(&cenv, &lim, &ca), CPN_OK);
    assert_int_equal(cpn_env_open(ca.request.ptr, ca.request.len, &lim, &renv), CPN_OK);

    /* tm, pr's home: its own CLAIM with A's FORWARD as the route, the same terms */
    cpn_claim_t ct = ca;
    ct.route.ptr = ff;
    ct.route.len = fn;
    uint8_t *cf = NULL, *lf = NULL;
    size_t cn = 0, ln = 0;
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_msg_build(g.tm, CPN_MSG_CLAIM, cpn_seq_next(0, now), now, &ct, &cf, &cn),
                     CPN_OK);
    s_lease(cf, cn, &ct, &renv, req_id, spoil, signer, &lf, &ln);
    cpn_forward_t back;
    memset(&back, 0, sizeof back);
    memcpy(back.to, cpn_identity_pk(g.pr), CPN_PK_LEN);
    back.hops = 1;
    back.msg.ptr = lf;
    back.msg.len = ln;
    back.ref_seq = fenv.seq;
    s_tm_send(CPN_MSG_FORWARD, &back, NULL);
    h_await(g.tenant.cli, seq, req_id, NULL, WAIT_MS + CLAIM_TIMEOUT_S * 1000, a);
    free(lf);
    free(cf);
    free(ff);
}

static void s_price_1(cpn_lease_t *l)
{
    l->price = 1;
}

static void s_made_up_id(cpn_lease_t *l)
{
    snprintf(l->lease_id, sizeof l->lease_id, "%s", "Lmadeup000000000");
}

static void s_end_far(cpn_lease_t *l)
{
    l->end_ms = l->start_ms + 1000ull * 24 * 3600 * 1000;
}

static void s_released(cpn_lease_t *l)
{
    snprintf(l->state, sizeof l->state, "%s", "released");
}

static void s_units_2(cpn_lease_t *l)
{
    l->units = 2;
}

/* pr's offer through tm; LEASEs coming back for A's CLAIM, each spoilt one way (another
 * price, a made-up lease id, an end 1000 days out, "released", other units, signed by
 * another trusted peer): no GRANT, nothing in the ledger, each counted; the honest LEASE: a
 * GRANT. */
static void test_inconsistent_remote_lease_not_granted(void **state)
{
    (void)state;
    uint8_t *f = NULL;
    size_t n = 0;
    s_ad(g.pr, "pr", "pr-cpu", 16, &f, &n);
    s_relay(f, n, 1);
    free(f);
    assert_true(s_wait_offer("pr", "pr-cpu"));

    const struct {
        const char *req;
        s_spoil_fn spoil;
        cpn_identity_t *signer;
    } cases[] = {
        {"remote-price-1", s_price_1, NULL},   {"remote-made-up-id", s_made_up_id, NULL},
        {"remote-end-far", s_end_far, NULL},   {"remote-released", s_released, NULL},
        {"remote-units-2", s_units_2, NULL},   {"remote-signed-by-pg", NULL, g.pg},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t n0 = s_refused_total();
        h_ans_t a;
        s_serve_remote(cases[i].req, cases[i].spoil, cases[i].signer, &a);
        if (a.type == CPN_MSG_GRANT)
            fail_msg("%s: a GRANT", cases[i].req);
        h_ans_free(&a);
        if (s_wait_u64_total(n0 + 1) < n0 + 1)
            fail_msg("%s: the LEASE was not counted as refused", cases[i].req);
        if (s_ledger_has("request", cases[i].req))
            fail_msg("%s: in the ledger", cases[i].req);
    }

    h_ans_t a;
    s_serve_remote("remote-honest", NULL, NULL, &a);
    if (a.type != CPN_MSG_GRANT)
        fail_msg("the honest remote LEASE got %s %s", a.type ? cpn_msg_name(a.type) : "nothing",
                 cpn_errname(a.code));
    h_ans_free(&a);
    assert_true(s_ledger_has("request", "remote-honest"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_relays_refused),
        cmocka_unit_test(test_lying_sync_changes_nothing),
        cmocka_unit_test(test_forward_inconsistent_claim_not_delivered),
        cmocka_unit_test(test_unasked_answer_refused),
        cmocka_unit_test(test_inconsistent_remote_lease_not_granted),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
