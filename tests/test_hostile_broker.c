/* test_hostile_broker.c - a broker that sends a real cpn-peer correctly signed but
 * inconsistent CLAIMs, RENEWs and RELEASEs.
 *
 * The test plays the broker: a ROUTER on 127.0.0.1 whose key the peer's configuration names,
 * so everything it signs passes the peer's signature and key checks. It grants one honest
 * lease, then sends CLAIMs that spoil one term each: a REQUEST by a tenant the peer does not
 * accept (or by the broker itself, or not a REQUEST at all, or with a forged signature), more
 * units than requested, part of an unsplit request, another duration, a price below the
 * floor or above the tenant's ceiling, a package the REQUEST's constraints exclude (cores,
 * memory, region, vendor, accelerators; an accelerator model asked of a CPU package), a
 * package the peer does not have, another peer named, a deadline past, a
 * REQUEST older (or newer) than request_age, a garbage route, the honest request id with
 * other terms; replacements (CLAIM `replaces`) with a NOTICE by another key than the
 * lease's peer, longer than the rest of the lease, of another request, of a request that did
 * not ask rematch, or of this peer's own lease. Each gets its NACK with its code; then RENEW and RELEASE of the honest lease
 * signed by another tenant or by the broker, and a replayed (or older) RENEW. After the peer
 * stops, its SQLite store, opened read-only, holds the honest lease and nothing else, renewed
 * once.
 *
 * Every wait is bounded; each refusal is awaited as its NACK, and a refusal without one (a
 * replay dropped by the in-memory guard) is followed by a message whose NACK proves it was
 * read. CPN_TEST_KEEP=1 keeps the directory.
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

#include <sqlite3.h>
#include <zmq.h>

#include "chain.h"
#include "clock.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define WAIT_MS 10000  /* one answer from the peer on a loaded machine (a bound) */
#define READY_MS 30000 /* the peer up and saying HELLO */
#define STOP_MS 30000
#define REQUEST_AGE_S 30
#define POOL_FLOOR 1500 /* "1.5" */
#define POOL_PRICE 2000 /* "2.0" */

typedef struct {
    char dir[256], cfg[320], db[320], log[320], bin[1024];
    void *zctx, *router;
    uint8_t rid[CPN_RID_MAX];
    size_t rid_len;
    cpn_identity_t *peer, *broker, *tenant, *tenant2, *stranger, *other_peer;
    cpn_signer_t bsig, tsig, t2sig, ssig;
    pid_t pid;
    char lid[CPN_NAME_MAX]; /* the honest lease */
    uint64_t end0;          /* its end as granted */
} fx_t;

static fx_t g;

/* ---- what the peer sends ---- */

typedef struct {
    uint8_t *frame;
    size_t len;
    cpn_env_t env;
} rx_t;

static void s_rx_free(rx_t *rx)
{
    free(rx->frame);
    memset(rx, 0, sizeof *rx);
}

/* The next frame from the peer before `deadline` (mono ms), its envelope verified and signed
 * by the peer; the frame inside a RESEND is returned in its place. False on timeout. */
static bool s_next(uint64_t deadline, rx_t *rx)
{
    memset(rx, 0, sizeof *rx);
    for (;;) {
        uint8_t rid[CPN_RID_MAX];
        size_t rid_len = 0;
        int r = cpn_recv(g.router, 1, rid, &rid_len, &rx->frame, &rx->len);
        if (r == CPN_OK) {
            assert_int_equal(cpn_env_open(rx->frame, rx->len, &cpn_limits_default, &rx->env),
                             CPN_OK);
            assert_memory_equal(rx->env.from, cpn_identity_pk(g.peer), CPN_PK_LEN);
            memcpy(g.rid, rid, rid_len);
            g.rid_len = rid_len;
            return true;
        }
        assert_int_equal(r, CPN_E_TIMEOUT);
        uint64_t now = cpn_mono_ms();
        if (now >= deadline)
            return false;
        zmq_pollitem_t it = {.socket = g.router, .events = ZMQ_POLLIN};
        uint64_t t = deadline - now;
        zmq_poll(&it, 1, (long)(t > 100 ? 100 : t));
    }
}

static void s_send(const uint8_t *f, size_t n)
{
    assert_true(g.rid_len > 0);
    assert_int_equal(cpn_send_to(g.router, g.rid, g.rid_len, f, n), CPN_OK);
}

static uint64_t s_seq_of(const uint8_t *f, size_t n)
{
    cpn_env_t env;
    assert_int_equal(cpn_env_parse(f, n, &cpn_limits_default, &env), CPN_OK);
    return env.seq;
}

/* The peer's answer to the message of seq `ref_seq`: a LEASE (returned as such, whatever it
 * is: the caller decides) or a NACK naming ref_seq. Anything else (ADs) is skipped. Lease
 * answers are recognised by `lease_id` when given. CPN_MSG_NONE on timeout. */
static cpn_msg_type_t s_answer(uint64_t ref_seq, const char *lease_id, rx_t *rx)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (s_next(deadline, rx)) {
        if (rx->env.type == CPN_MSG_LEASE) {
            cpn_lease_t l;
            memset(&l, 0, sizeof l);
            assert_int_equal(cpn_lease_decode(&rx->env, &cpn_limits_default, &l), CPN_OK);
            if (!lease_id || strcmp(l.lease_id, lease_id) == 0)
                return CPN_MSG_LEASE;
        } else if (rx->env.type == CPN_MSG_RESEND) {
            return CPN_MSG_RESEND; /* a stored lease sent again: never expected here */
        } else if (rx->env.type == CPN_MSG_NACK) {
            cpn_nack_t nk;
            memset(&nk, 0, sizeof nk);
            assert_int_equal(cpn_nack_decode(&rx->env, &cpn_limits_default, &nk), CPN_OK);
            if (nk.ref_seq == ref_seq)
                return CPN_MSG_NACK;
        }
        s_rx_free(rx);
    }
    return CPN_MSG_NONE;
}

/* Send `f` and check that a NACK with `code` (and `reason_part` in its reason) answers it;
 * false, with what came instead printed, if not. */
static bool s_try_refused(const char *what, const uint8_t *f, size_t n, int code,
                          const char *reason_part)
{
    rx_t rx;
    s_send(f, n);
    cpn_msg_type_t t = s_answer(s_seq_of(f, n), NULL, &rx);
    bool ok = false;
    if (t != CPN_MSG_NACK) {
        print_error("%s: got %s, not NACK %s\n", what, t ? cpn_msg_name(t) : "nothing",
                    cpn_errname(code));
    } else {
        cpn_nack_t nk;
        memset(&nk, 0, sizeof nk);
        assert_int_equal(cpn_nack_decode(&rx.env, &cpn_limits_default, &nk), CPN_OK);
        ok = nk.code == code && (!reason_part || strstr(nk.reason, reason_part));
        if (!ok)
            print_error("%s: NACK %s (%s), not %s%s%s\n", what, cpn_errname(nk.code), nk.reason,
                        cpn_errname(code), reason_part ? " with " : "",
                        reason_part ? reason_part : "");
    }
    s_rx_free(&rx);
    return ok;
}

static void s_refused(const char *what, const uint8_t *f, size_t n, int code,
                      const char *reason_part)
{
    if (!s_try_refused(what, f, n, code, reason_part))
        fail_msg("%s: not refused as it should be", what);
}

/* ---- the store, read-only ---- */

static int64_t s_db_int(const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ---- building what a broker and tenants send ---- */

static void s_req_init(cpn_request_t *q, const char *id, uint32_t units, uint64_t duration)
{
    memset(q, 0, sizeof *q);
    snprintf(q->id, sizeof q->id, "%s", id);
    q->units = units;
    q->duration_s = duration;
    q->cores = 1;
}

static void s_build(cpn_signer_t *s, cpn_msg_type_t type, const void *body, uint8_t **f, size_t *n)
{
    assert_int_equal(cpn_signer_build(s, type, body, f, n), CPN_OK);
}

/* A CLAIM by the broker for the "pool" package on the terms of `q`, the REQUEST framed in
 * req (req_len); the caller then spoils c and signs it with s_sign_claim. */
static void s_claim_init(cpn_claim_t *c, const uint8_t *req, size_t req_len,
                         const cpn_request_t *q)
{
    memset(c, 0, sizeof *c);
    c->request.ptr = req;
    c->request.len = req_len;
    memcpy(c->peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    snprintf(c->package, sizeof c->package, "%s", "pool");
    c->units = q->units;
    c->price = POOL_PRICE;
    c->duration_s = q->duration_s;
    c->deadline = cpn_now_ms() + 60000;
}

/* ---- the daemon ---- */

static void s_write_config(void)
{
    char ep[256], bk[CPN_PK_TEXT_LEN], text[2048];
    size_t n = sizeof ep;
    assert_int_equal(zmq_getsockopt(g.router, ZMQ_LAST_ENDPOINT, ep, &n), 0);
    cpn_pk_to_text(cpn_identity_pk(g.broker), bk);
    int k = snprintf(text, sizeof text,
                     "name: hostile-test-peer\n"
                     "key: peer.key\n"
                     "database: peer.db\n"
                     "region: test-1\n"
                     "refresh: 1s\n"
                     "max_lease: 1h\n"
                     "request_age: %ds\n"
                     "brokers:\n"
                     "  - endpoint: %s\n"
                     "    key: %s\n"
                     "    curve: false\n"
                     "tenants:\n"
                     "  - tenant.pub\n"
                     "  - tenant2.pub\n"
                     "packages:\n"
                     "  - id: pool\n"
                     "    count: 4\n"
                     "    price: \"2.0\"\n"
                     "    floor: \"1.5\"\n"
                     "    cores: 8\n"
                     "    memory: 32GiB\n",
                     REQUEST_AGE_S, ep, bk);
    assert_true(k > 0 && (size_t)k < sizeof text);
    h_write(g.dir, "peer.yaml", text);
}

static int s_setup(void **state)
{
    (void)state;
    memset(&g, 0, sizeof g);
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "hostile-broker") != 0)
        return -1;
    snprintf(g.cfg, sizeof g.cfg, "%s/peer.yaml", g.dir);
    snprintf(g.db, sizeof g.db, "%s/peer.db", g.dir);
    snprintf(g.log, sizeof g.log, "%s/peer.log", g.dir);
    h_keygen(g.dir, "peer", &g.peer);
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, "tenant", &g.tenant);
    h_keygen(g.dir, "tenant2", &g.tenant2);
    h_keygen(g.dir, "stranger", &g.stranger);
    h_keygen(g.dir, "other-peer", &g.other_peer);
    g.bsig.id = g.broker;
    g.tsig.id = g.tenant;
    g.t2sig.id = g.tenant2;
    g.ssig.id = g.stranger;
    g.zctx = zmq_ctx_new();
    if (!g.zctx || cpn_sock_router(g.zctx, "tcp://127.0.0.1:*", cpn_limits_default.max_frame,
                                   NULL, &g.router) != CPN_OK)
        return -1;
    s_write_config();
    g.pid = h_spawn(g.bin, "cpn-peer", g.cfg, g.log);
    /* It says HELLO once connected: that gives the test its routing id. */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    rx_t rx;
    bool hello = false;
    while (!hello && s_next(deadline, &rx)) {
        hello = rx.env.type == CPN_MSG_HELLO;
        s_rx_free(&rx);
    }
    if (!hello) {
        fprintf(stderr, "# cpn-peer did not say HELLO (log: %s)\n", g.log);
        return -1;
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pid, STOP_MS);
    if (g.router)
        zmq_close(g.router);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    cpn_identity_t **ids[] = {&g.peer,    &g.broker,   &g.tenant,
                              &g.tenant2, &g.stranger, &g.other_peer};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        cpn_identity_destroy(ids[i]);
    h_dir_done(g.dir, clean);
    return 0;
}

/* ---- the hostile broker ---- */

/* One honest CLAIM first: granted, recorded. The rest of the test refers to this lease. */
static void test_honest_claim_granted(void **state)
{
    (void)state;
    cpn_request_t q;
    cpn_claim_t c;
    uint8_t *req = NULL, *claim = NULL;
    size_t req_len = 0, claim_len = 0;
    rx_t rx;
    s_req_init(&q, "honest", 1, 600);
    s_build(&g.tsig, CPN_MSG_REQUEST, &q, &req, &req_len);
    s_claim_init(&c, req, req_len, &q);
    s_build(&g.bsig, CPN_MSG_CLAIM, &c, &claim, &claim_len);
    cpn_chain_lease_id(cpn_identity_pk(g.peer), cpn_identity_pk(g.tenant), "honest", g.lid);
    s_send(claim, claim_len);
    assert_int_equal(s_answer(s_seq_of(claim, claim_len), g.lid, &rx), CPN_MSG_LEASE);
    cpn_chain_t *ch = calloc(1, sizeof *ch);
    assert_non_null(ch);
    cpn_chain_opts_t o = {.claim_pk = cpn_identity_pk(g.broker),
                          .peer_pk = cpn_identity_pk(g.peer),
                          .tenant_pk = cpn_identity_pk(g.tenant),
                          .now_ms = cpn_now_ms(),
                          .flags = CPN_CHAIN_NEW};
    if (cpn_chain_open(rx.frame, rx.len, CPN_MSG_LEASE, &o, ch) != CPN_OK)
        fail_msg("the honest LEASE: %s", ch->why);
    g.end0 = ch->lease.end_ms;
    free(ch);
    s_rx_free(&rx);
    free(claim);
    free(req);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases", NULL), 1);
}

/* How a case spoils its REQUEST or its CLAIM. */
typedef struct {
    const char *name;
    int code;
    const char *reason_part;
    cpn_signer_t *req_signer; /* NULL: the tenant */
    void (*req_fn)(cpn_request_t *q);
    void (*claim_fn)(cpn_claim_t *c);
    int64_t req_age_s; /* the REQUEST's ts this far in the past (negative: future) */
    bool forge_req_sig;
    bool req_not_request; /* a RENEW where the REQUEST goes */
} s_case_t;

static void s_units_more(cpn_claim_t *c)
{
    c->units = 2;
}
static void s_units_zero(cpn_claim_t *c)
{
    c->units = 0;
}
static void s_req_two_units(cpn_request_t *q)
{
    q->units = 2; /* unsplit */
}
static void s_units_one(cpn_claim_t *c)
{
    c->units = 1; /* half of an unsplit request */
}
static void s_longer(cpn_claim_t *c)
{
    c->duration_s = 900;
}
static void s_shorter(cpn_claim_t *c)
{
    c->duration_s = 60;
}
static void s_req_long(cpn_request_t *q)
{
    q->duration_s = 7200; /* beyond max_lease 1 h; the CLAIM asks the same */
}
static void s_below_floor(cpn_claim_t *c)
{
    c->price = POOL_FLOOR - 1;
}
static void s_req_ceiling(cpn_request_t *q)
{
    q->max_price = POOL_PRICE;
}
static void s_above_ceiling(cpn_claim_t *c)
{
    c->price = POOL_PRICE + 1;
}
static void s_req_cores(cpn_request_t *q)
{
    q->cores = 64; /* the pool has 8 */
}
static void s_req_memory(cpn_request_t *q)
{
    q->mem_bytes = 64ull << 30; /* the pool has 32 GiB */
}
static void s_req_region(cpn_request_t *q)
{
    snprintf(q->regions.items[0], sizeof q->regions.items[0], "%s", "eu-west");
    q->regions.n = 1;
}
static void s_req_vendor(cpn_request_t *q)
{
    snprintf(q->accel_vendor, sizeof q->accel_vendor, "%s", "nvidia");
}
static void s_req_gpus(cpn_request_t *q)
{
    q->accel_count = 8;
}
static void s_req_model(cpn_request_t *q)
{
    snprintf(q->accel_model, sizeof q->accel_model, "%s", "H100-80GB"); /* the pool: CPUs */
    q->accel_count = 1;
}
static void s_no_package(cpn_claim_t *c)
{
    snprintf(c->package, sizeof c->package, "%s", "nope");
}
static void s_other_peer(cpn_claim_t *c)
{
    memcpy(c->peer, cpn_identity_pk(g.other_peer), CPN_PK_LEN);
}
static void s_deadline_past(cpn_claim_t *c)
{
    c->deadline = cpn_now_ms() - 1000;
}
static const uint8_t s_garbage[] = {0x92, 0xc4, 0x03, 'a', 'b', 'c', 0xc4, 0x01, 0x00};
static void s_garbage_route(cpn_claim_t *c)
{
    c->route.ptr = s_garbage;
    c->route.len = sizeof s_garbage;
}
static void s_honest_id_other_terms(cpn_request_t *q)
{
    snprintf(q->id, sizeof q->id, "%s", "honest");
    q->cores = 2;
}

/* Each CLAIM below is signed by the broker the peer trusts and refused with its code; the
 * store gains no row. */
static void test_inconsistent_claims_refused(void **state)
{
    (void)state;
    s_case_t cases[] = {
        {"stranger's REQUEST", CPN_E_TENANT_REFUSED, NULL, .req_signer = &g.ssig},
        {"the broker's own REQUEST", CPN_E_TENANT_REFUSED, NULL, .req_signer = &g.bsig},
        {"a RENEW as the REQUEST", CPN_E_WRONG_TYPE, NULL, .req_not_request = true},
        {"a forged REQUEST signature", CPN_E_SIG, NULL, .forge_req_sig = true},
        {"more units than requested", CPN_E_CHAIN, "units", .claim_fn = s_units_more},
        {"zero units", CPN_E_CHAIN, "units", .claim_fn = s_units_zero},
        {"part of an unsplit request", CPN_E_CHAIN, "units", .req_fn = s_req_two_units,
         .claim_fn = s_units_one},
        {"a longer duration", CPN_E_CHAIN, "duration", .claim_fn = s_longer},
        {"a shorter duration", CPN_E_CHAIN, "duration", .claim_fn = s_shorter},
        {"beyond max_lease", CPN_E_INVAL, "max_lease", .req_fn = s_req_long},
        {"a price below the floor", CPN_E_PRICE_FLOOR, NULL, .claim_fn = s_below_floor},
        {"a price above the ceiling", CPN_E_CHAIN, "price", .req_fn = s_req_ceiling,
         .claim_fn = s_above_ceiling},
        {"too few cores", CPN_E_NO_MATCH, "cores", .req_fn = s_req_cores},
        {"too little memory", CPN_E_NO_MATCH, "memory", .req_fn = s_req_memory},
        {"another region", CPN_E_NO_MATCH, "region", .req_fn = s_req_region},
        {"another vendor", CPN_E_NO_MATCH, "vendor", .req_fn = s_req_vendor},
        {"accelerators the package lacks", CPN_E_NO_MATCH, "accelerator",
         .req_fn = s_req_gpus},
        {"a CPU package for an accelerator model", CPN_E_NO_MATCH, "accelerator.model",
         .req_fn = s_req_model},
        {"no such package", CPN_E_NO_PACKAGE, NULL, .claim_fn = s_no_package},
        {"another peer named", CPN_E_INVAL, "another peer", .claim_fn = s_other_peer},
        {"a deadline past", CPN_E_CLAIM_EXPIRED, NULL, .claim_fn = s_deadline_past},
        {"a REQUEST older than request_age", CPN_E_STALE, "request_age",
         .req_age_s = 4 * REQUEST_AGE_S},
        {"a REQUEST from beyond request_age ahead", CPN_E_STALE, "request_age",
         .req_age_s = -4 * REQUEST_AGE_S},
        {"a garbage route", CPN_E_SCHEMA, "route", .claim_fn = s_garbage_route},
        {"the honest request id for other terms", CPN_E_CONFLICT, "other terms",
         .req_fn = s_honest_id_other_terms},
    };
    int64_t rows = s_db_int("SELECT COUNT(*) FROM leases", NULL);
    size_t failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const s_case_t *k = &cases[i];
        char id[CPN_NAME_MAX];
        snprintf(id, sizeof id, "hostile-%zu", i);
        cpn_request_t q;
        cpn_claim_t c;
        uint8_t *req = NULL, *claim = NULL;
        size_t req_len = 0, claim_len = 0;
        s_req_init(&q, id, 1, 600);
        if (k->req_fn)
            k->req_fn(&q);
        if (k->req_not_request) {
            cpn_renew_t rn;
            memset(&rn, 0, sizeof rn);
            snprintf(rn.lease_id, sizeof rn.lease_id, "%s", g.lid);
            memcpy(rn.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
            rn.extend_s = 60;
            s_build(&g.tsig, CPN_MSG_RENEW, &rn, &req, &req_len);
        } else if (k->req_age_s) {
            uint64_t ts = cpn_now_ms() - (uint64_t)(k->req_age_s * 1000);
            assert_int_equal(cpn_msg_build(g.tenant, CPN_MSG_REQUEST, cpn_seq_next(0, ts), ts, &q,
                                           &req, &req_len),
                             CPN_OK);
        } else {
            s_build(k->req_signer ? k->req_signer : &g.tsig, CPN_MSG_REQUEST, &q, &req, &req_len);
        }
        if (k->forge_req_sig)
            req[req_len - 1] ^= 0x01;
        s_claim_init(&c, req, req_len, &q);
        if (k->claim_fn)
            k->claim_fn(&c);
        s_build(&g.bsig, CPN_MSG_CLAIM, &c, &claim, &claim_len);
        bool ok = s_try_refused(k->name, claim, claim_len, k->code, k->reason_part);
        free(claim);
        free(req);
        int64_t now_rows = s_db_int("SELECT COUNT(*) FROM leases", NULL);
        if (now_rows != rows) {
            print_error("%s: the store gained a row\n", k->name);
            rows = now_rows; /* the next case is judged on its own */
            ok = false;
        }
        failed += !ok;
    }
    if (failed)
        fail_msg("%zu of %zu inconsistent CLAIMs not refused as they should be", failed,
                 sizeof cases / sizeof cases[0]);
}

/* RENEW and RELEASE of the honest lease signed by another tenant, by the broker, or naming
 * another peer: refused, the lease unchanged. */
static void test_renew_release_not_the_tenants_refused(void **state)
{
    (void)state;
    cpn_renew_t rn;
    cpn_release_t rl;
    uint8_t *f = NULL;
    size_t n = 0;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", g.lid);
    memcpy(rn.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    rn.extend_s = 60;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", g.lid);
    memcpy(rl.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);

    s_build(&g.t2sig, CPN_MSG_RENEW, &rn, &f, &n);
    s_refused("RENEW by another tenant", f, n, CPN_E_NO_LEASE, NULL);
    free(f);
    s_build(&g.t2sig, CPN_MSG_RELEASE, &rl, &f, &n);
    s_refused("RELEASE by another tenant", f, n, CPN_E_NO_LEASE, NULL);
    free(f);
    s_build(&g.bsig, CPN_MSG_RENEW, &rn, &f, &n);
    s_refused("RENEW signed by the broker", f, n, CPN_E_TENANT_REFUSED, NULL);
    free(f);
    s_build(&g.bsig, CPN_MSG_RELEASE, &rl, &f, &n);
    s_refused("RELEASE signed by the broker", f, n, CPN_E_TENANT_REFUSED, NULL);
    free(f);
    s_build(&g.ssig, CPN_MSG_RELEASE, &rl, &f, &n);
    s_refused("RELEASE by a stranger", f, n, CPN_E_TENANT_REFUSED, NULL);
    free(f);
    memcpy(rn.peer, cpn_identity_pk(g.other_peer), CPN_PK_LEN);
    s_build(&g.tsig, CPN_MSG_RENEW, &rn, &f, &n);
    s_refused("RENEW naming another peer", f, n, CPN_E_INVAL, "another peer");
    free(f);
    memcpy(rl.peer, cpn_identity_pk(g.other_peer), CPN_PK_LEN);
    s_build(&g.tsig, CPN_MSG_RELEASE, &rl, &f, &n);
    s_refused("RELEASE naming another peer", f, n, CPN_E_INVAL, "another peer");
    free(f);
    assert_int_equal(s_db_int("SELECT end_ms FROM leases WHERE lease_id = ?", g.lid),
                     (int64_t)g.end0);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND "
                              "state = 'active'",
                              g.lid),
                     1);
}

/* The tenant's RENEW applied once; the same frame again, and a RENEW the tenant signed before
 * it but the broker held back, extend nothing. A RELEASE by the other tenant follows each:
 * its NACK proves the peer has read what came before it on the connection. */
static void test_replayed_renew_refused(void **state)
{
    (void)state;
    cpn_renew_t rn;
    cpn_release_t rl;
    uint8_t *older = NULL, *renew = NULL, *f = NULL;
    size_t older_len = 0, renew_len = 0, n = 0;
    rx_t rx;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", g.lid);
    memcpy(rn.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    rn.extend_s = 30;
    s_build(&g.tsig, CPN_MSG_RENEW, &rn, &older, &older_len);
    rn.extend_s = 60;
    s_build(&g.tsig, CPN_MSG_RENEW, &rn, &renew, &renew_len);
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", g.lid);
    memcpy(rl.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);

    s_send(renew, renew_len);
    assert_int_equal(s_answer(s_seq_of(renew, renew_len), g.lid, &rx), CPN_MSG_LEASE);
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    assert_int_equal(cpn_lease_decode(&rx.env, &cpn_limits_default, &l), CPN_OK);
    assert_int_equal(l.end_ms, g.end0 + 60 * 1000);
    assert_int_equal(l.renewals, 1);
    s_rx_free(&rx);

    const struct {
        const char *what;
        const uint8_t *f;
        size_t n;
    } replays[] = {{"the same RENEW again", renew, renew_len},
                   {"an older RENEW after a newer", older, older_len}};
    for (size_t i = 0; i < 2; i++) {
        s_send(replays[i].f, replays[i].n);
        s_build(&g.t2sig, CPN_MSG_RELEASE, &rl, &f, &n);
        s_send(f, n);
        uint64_t sentinel = s_seq_of(f, n);
        free(f);
        /* Up to the sentinel's NACK: no LEASE; a NACK for the replay, if any, says replay. */
        uint64_t deadline = cpn_mono_ms() + WAIT_MS;
        bool done = false;
        while (!done && s_next(deadline, &rx)) {
            if (rx.env.type == CPN_MSG_LEASE || rx.env.type == CPN_MSG_RESEND)
                fail_msg("%s: the peer answered with %s", replays[i].what,
                         cpn_msg_name(rx.env.type));
            if (rx.env.type == CPN_MSG_NACK) {
                cpn_nack_t nk;
                memset(&nk, 0, sizeof nk);
                assert_int_equal(cpn_nack_decode(&rx.env, &cpn_limits_default, &nk), CPN_OK);
                if (nk.ref_seq == sentinel) {
                    assert_int_equal(nk.code, CPN_E_NO_LEASE);
                    done = true;
                } else if (nk.ref_seq == s_seq_of(replays[i].f, replays[i].n)) {
                    assert_int_equal(nk.code, CPN_E_REPLAY);
                }
            }
            s_rx_free(&rx);
        }
        if (!done)
            fail_msg("%s: no answer to the RELEASE sent after it", replays[i].what);
    }
    assert_int_equal(s_db_int("SELECT end_ms FROM leases WHERE lease_id = ?", g.lid),
                     (int64_t)(g.end0 + 60 * 1000));
    assert_int_equal(s_db_int("SELECT renewals FROM leases WHERE lease_id = ?", g.lid), 1);
    free(older);
    free(renew);
}

/* After all of it, the peer stopped: its store holds the honest lease, renewed once, active,
 * and nothing else. */
static void test_store_holds_only_the_honest_lease(void **state)
{
    (void)state;
    assert_true(h_stop(&g.pid, STOP_MS));
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases", NULL), 1);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = "
                              "'active' AND renewals = 1 AND units = 1 AND package = 'pool'",
                              g.lid),
                     1);
    assert_int_equal(s_db_int("SELECT end_ms FROM leases WHERE lease_id = ?", g.lid),
                     (int64_t)(g.end0 + 60 * 1000));
}

/* ---- replacements (on_failure: rematch) the peer must refuse ---- */

/* A lease `lessor` granted for REQUEST `req` (signed by the broker's CLAIM), started a minute
 * ago for 600 s, and the NOTICE `notifier` signed over it (effective a second ago). */
static void s_old_lease(const cpn_identity_t *lessor, const cpn_identity_t *notifier,
                        const uint8_t *req, size_t req_len, const cpn_request_t *q,
                        uint8_t **notice, size_t *notice_len)
{
    cpn_signer_t ls = {.id = lessor}, ns = {.id = notifier};
    cpn_claim_t c;
    cpn_lease_t l;
    cpn_notice_t n;
    uint8_t *cf = NULL, *lf = NULL;
    size_t cl = 0, ll = 0;
    uint64_t now = cpn_now_ms();
    s_claim_init(&c, req, req_len, q);
    memcpy(c.peer, cpn_identity_pk(lessor), CPN_PK_LEN);
    s_build(&g.bsig, CPN_MSG_CLAIM, &c, &cf, &cl);
    memset(&l, 0, sizeof l);
    l.claim = (mp_bytes_t){cf, cl};
    cpn_chain_lease_id(cpn_identity_pk(lessor), cpn_identity_pk(g.tenant), q->id, l.lease_id);
    snprintf(l.package, sizeof l.package, "pool");
    l.units = c.units;
    l.price = c.price;
    l.start_ms = now - 60000;
    l.end_ms = l.start_ms + c.duration_s * 1000;
    snprintf(l.state, sizeof l.state, "active");
    s_build(&ls, CPN_MSG_LEASE, &l, &lf, &ll);
    memset(&n, 0, sizeof n);
    n.lease = (mp_bytes_t){lf, ll};
    snprintf(n.lease_id, sizeof n.lease_id, "%s", l.lease_id);
    memcpy(n.tenant, cpn_identity_pk(g.tenant), CPN_PK_LEN);
    n.code = CPN_E_CAPACITY_LOST;
    n.effective_ms = now - 1000;
    s_build(&ns, CPN_MSG_NOTICE, &n, notice, notice_len);
    free(cf);
    free(lf);
}

/* A CLAIM of the REQUEST `req` for this peer, `duration_s` long, replacing `notice`. */
static void s_replacement(const uint8_t *req, size_t req_len, const cpn_request_t *q,
                          const uint8_t *notice, size_t notice_len, uint64_t duration_s,
                          uint8_t **f, size_t *n)
{
    cpn_claim_t c;
    s_claim_init(&c, req, req_len, q);
    c.duration_s = duration_s;
    c.replaces = (mp_bytes_t){notice, notice_len};
    s_build(&g.bsig, CPN_MSG_CLAIM, &c, f, n);
}

static void test_forged_replacements_refused(void **state)
{
    (void)state;
    cpn_request_t q, q2;
    uint8_t *req = NULL, *req2 = NULL, *nt = NULL, *f = NULL;
    size_t req_len = 0, req2_len = 0, nt_len = 0, n = 0;
    s_req_init(&q, "rep-1", 1, 600);
    snprintf(q.on_failure, sizeof q.on_failure, "rematch");
    s_build(&g.tsig, CPN_MSG_REQUEST, &q, &req, &req_len);
    s_req_init(&q2, "rep-2", 1, 600); /* did not ask rematch */
    s_build(&g.tsig, CPN_MSG_REQUEST, &q2, &req2, &req2_len);

    /* A NOTICE signed by someone else than the peer that granted the lease. */
    s_old_lease(g.other_peer, g.stranger, req, req_len, &q, &nt, &nt_len);
    s_replacement(req, req_len, &q, nt, nt_len, 500, &f, &n);
    s_refused("a NOTICE not by the lease's peer", f, n, CPN_E_UNTRUSTED, "replaced lease");
    free(f);
    free(nt);
    /* The rest of a lease is 541 s: more is refused. */
    s_old_lease(g.other_peer, g.other_peer, req, req_len, &q, &nt, &nt_len);
    s_replacement(req, req_len, &q, nt, nt_len, 600, &f, &n);
    s_refused("longer than the rest", f, n, CPN_E_CHAIN, "longer than the rest");
    free(f);
    /* Another REQUEST than the replaced lease's. */
    s_replacement(req2, req2_len, &q2, nt, nt_len, 500, &f, &n);
    s_refused("another request", f, n, CPN_E_CHAIN, "another request");
    free(f);
    free(nt);
    /* A request that did not ask rematch. */
    s_old_lease(g.other_peer, g.other_peer, req2, req2_len, &q2, &nt, &nt_len);
    s_replacement(req2, req2_len, &q2, nt, nt_len, 500, &f, &n);
    s_refused("no rematch asked", f, n, CPN_E_CHAIN, "did not ask");
    free(f);
    free(nt);
    /* This very peer's own lease: never a replacement on the capacity that was lost. */
    s_old_lease(g.peer, g.peer, req, req_len, &q, &nt, &nt_len);
    s_replacement(req, req_len, &q, nt, nt_len, 500, &f, &n);
    s_refused("a replacement of its own lease", f, n, CPN_E_INVAL, "lost the capacity");
    free(f);
    free(nt);
    free(req);
    free(req2);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE request_id LIKE 'rep-%'", NULL),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_honest_claim_granted),
        cmocka_unit_test(test_inconsistent_claims_refused),
        cmocka_unit_test(test_renew_release_not_the_tenants_refused),
        cmocka_unit_test(test_replayed_renew_refused),
        cmocka_unit_test(test_forged_replacements_refused),
        cmocka_unit_test(test_store_holds_only_the_honest_lease),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
