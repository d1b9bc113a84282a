/* test_shared.c - shared accelerators (issue 16) in a real cpn-peer, driven over ZeroMQ.
 *
 * The test is the broker: one ROUTER on 127.0.0.1 and a tenant. The peer sells two shared
 * packages: "quarter" (2 nodes x 2 accelerators) and "pair" (1 node x 2 accelerators).
 * Shown: slices of 0.25 fill every device exactly to its capacity and the next is refused;
 * the slices' places, read from the peer's SQLite file, never sum above one device; a
 * whole-device request is never given a partly used device, and is refused when only partly
 * used ones are left; after kill -9 and a restart, every slice keeps its place (retried
 * CLAIMs return the same LEASE bytes, the store's rows are unchanged, and what is still free
 * is exactly what was free: a slice that only fits the old free space is granted there, one
 * more is refused). The ADs' fit points follow the CPU left beside a free share (package
 * "roomy"). Given a workload mix (peer.yaml `workload`), the ADs' gradients are for the
 * mix's asks, not what the peer placed. Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zmq.h>

#include "chain.h"
#include "clock.h"
#include "envelope.h"
#include "grant.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "transport.h"

#define WAIT_MS 5000
#define QUARTERS 16 /* 2 nodes x 2 devices x 4 slices of 0.25 */

static struct {
    char dir[256], cfg[320], db[320], log[320], bin[1024];
    void *zctx, *router;
    uint8_t rid[CPN_RID_MAX];
    size_t rid_len;
    cpn_identity_t *peer, *broker, *tenant;
    cpn_signer_t bsig, tsig;
    pid_t pid;
} g;

/* A claim we sent and the LEASE bytes that answered it. */
typedef struct {
    char id[CPN_NAME_MAX];
    uint8_t *claim, *lease;
    size_t claim_len, lease_len;
} s_granted_t;
static s_granted_t s_got[QUARTERS + 8];
static size_t s_ngot;

/* ---- what a broker and a tenant send ---- */

static void s_claim(const char *id, const char *pkg, const char *alts, uint32_t share,
                    uint32_t count, uint32_t cores, uint8_t **f, size_t *n)
{
    cpn_request_t req;
    uint8_t *rf = NULL;
    size_t rn = 0;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", id);
    req.units = 1;
    req.duration_s = 3600;
    req.cores = cores;
    req.share = share;
    req.accel_count = count;
    assert_int_equal(cpn_signer_build(&g.tsig, CPN_MSG_REQUEST, &req, &rf, &rn), CPN_OK);
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request.ptr = rf;
    c.request.len = rn;
    memcpy(c.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "%s", pkg);
    snprintf(c.alts, sizeof c.alts, "%s", alts ? alts : "");
    c.units = 1;
    c.price = 10000;
    c.duration_s = 3600;
    c.deadline = cpn_now_ms() + 60000;
    assert_int_equal(cpn_signer_build(&g.bsig, CPN_MSG_CLAIM, &c, f, n), CPN_OK);
    free(rf);
}

/* ---- what the peer sends ---- */

/* The next frame before the deadline (mono ms), opened; a RESEND is replaced by the LEASE
 * it carries. NULL frame on timeout. */
static uint8_t *s_next(uint64_t deadline, size_t *len, cpn_env_t *env)
{
    for (;;) {
        uint8_t rid[CPN_RID_MAX], *f = NULL;
        size_t rid_len = 0;
        zmq_pollitem_t item = {.socket = g.router, .events = ZMQ_POLLIN};
        zmq_poll(&item, 1, 100);
        int r = cpn_recv(g.router, 1, rid, &rid_len, &f, len);
        if (r == CPN_OK) {
            memcpy(g.rid, rid, rid_len);
            g.rid_len = rid_len;
            assert_int_equal(cpn_env_open(f, *len, &cpn_limits_default, env), CPN_OK);
            assert_memory_equal(env->from, cpn_identity_pk(g.peer), CPN_PK_LEN);
            if (env->type != CPN_MSG_RESEND)
                return f;
            cpn_resend_t rs;
            assert_int_equal(cpn_resend_decode(env, &cpn_limits_default, &rs), CPN_OK);
            uint8_t *copy = malloc(rs.frame.len);
            assert_non_null(copy);
            memcpy(copy, rs.frame.ptr, rs.frame.len);
            *len = rs.frame.len;
            free(f);
            assert_int_equal(cpn_env_open(copy, *len, &cpn_limits_default, env), CPN_OK);
            return copy;
        }
        assert_int_equal(r, CPN_E_TIMEOUT);
        if (cpn_mono_ms() >= deadline)
            return NULL;
    }
}

/* Send a claim (of `cores` beside the share, naming `alts`) and wait for its answer: the
 * LEASE (kept in s_got) or the NACK's code. */
static int s_ask_alts(const char *id, const char *pkg, const char *alts, uint32_t share,
                      uint32_t count, uint32_t cores, cpn_lease_t *lease_out)
{
    uint8_t *claim = NULL;
    size_t claim_len = 0, len = 0;
    s_claim(id, pkg, alts, share, count, cores, &claim, &claim_len);
    assert_true(g.rid_len > 0);
    assert_int_equal(cpn_send_to(g.router, g.rid, g.rid_len, claim, claim_len), CPN_OK);
    char lid[CPN_NAME_MAX];
    grant_lease_id(cpn_identity_pk(g.peer), cpn_identity_pk(g.tenant), id, lid);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    cpn_env_t env;
    uint8_t *f;
    while ((f = s_next(deadline, &len, &env)) != NULL) {
        if (env.type == CPN_MSG_LEASE) {
            cpn_lease_t l;
            memset(&l, 0, sizeof l);
            assert_int_equal(cpn_lease_decode(&env, &cpn_limits_default, &l), CPN_OK);
            if (strcmp(l.lease_id, lid) == 0) {
                if (lease_out)
                    *lease_out = l;
                assert_true(s_ngot < sizeof s_got / sizeof s_got[0]);
                s_granted_t *gr = &s_got[s_ngot++];
                snprintf(gr->id, sizeof gr->id, "%s", id);
                gr->claim = claim, gr->claim_len = claim_len;
                gr->lease = f, gr->lease_len = len;
                return CPN_OK;
            }
        } else if (env.type == CPN_MSG_NACK) {
            cpn_nack_t nk;
            memset(&nk, 0, sizeof nk);
            assert_int_equal(cpn_nack_decode(&env, &cpn_limits_default, &nk), CPN_OK);
            if (strcmp(nk.ref, id) == 0) {
                free(f);
                free(claim);
                return nk.code;
            }
        }
        free(f);
    }
    fail_msg("no answer to claim %s", id);
    return CPN_E_TIMEOUT;
}

static int s_ask_cores(const char *id, const char *pkg, uint32_t share, uint32_t count,
                       uint32_t cores, cpn_lease_t *lease_out)
{
    return s_ask_alts(id, pkg, NULL, share, count, cores, lease_out);
}

static int s_ask(const char *id, const char *pkg, uint32_t share, uint32_t count,
                 cpn_lease_t *lease_out)
{
    return s_ask_cores(id, pkg, share, count, 1, lease_out);
}

/* Wait (bounded) for an AD whose package pkg carries exactly the n fit points want. */
static bool s_wait_fit(const char *pkg, const cpn_fit_t *want, uint32_t n)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    size_t len;
    cpn_env_t env;
    uint8_t *f;
    while ((f = s_next(deadline, &len, &env)) != NULL) {
        bool same = false;
        cpn_ad_t ad;
        memset(&ad, 0, sizeof ad);
        if (env.type == CPN_MSG_AD) {
            assert_int_equal(cpn_msg_decode(&env, &cpn_limits_default, &ad), CPN_OK);
            for (uint32_t i = 0; i < ad.n_packages; i++)
                if (strcmp(ad.packages[i].id, pkg) == 0)
                    same = ad.packages[i].sum != NULL && ad.packages[i].sum->n_fit == n &&
                           memcmp(ad.packages[i].sum->fit, want, n * sizeof want[0]) == 0;
            cpn_ad_clear(&ad);
        }
        free(f);
        if (same)
            return true;
    }
    return false;
}

/* ---- the peer's database, read from the test ---- */

static int64_t s_db_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The highest use of any one device of pkg: the sum of the shares on it (devmask bit d). */
static int64_t s_max_device_use(const char *pkg)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH d(b) AS (VALUES (0),(1)) SELECT MAX(u) FROM (SELECT node, b, SUM(share) AS u "
             "FROM slices JOIN d ON (devmask >> b) & 1 WHERE package = '%s' GROUP BY node, b)",
             pkg);
    return s_db_int(sql);
}

/* ---- the daemon ---- */

static void s_start(void)
{
    g.pid = fork();
    assert_true(g.pid >= 0);
    if (g.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(g.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execl(g.bin, "cpn-peer", "--config", g.cfg, (char *)NULL);
        _exit(127);
    }
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    size_t len;
    cpn_env_t env;
    uint8_t *f;
    bool hello = false;
    while (!hello && (f = s_next(deadline, &len, &env)) != NULL) {
        hello = env.type == CPN_MSG_HELLO;
        free(f);
    }
    assert_true(hello);
}

static void s_kill9(void)
{
    assert_int_equal(kill(g.pid, SIGKILL), 0);
    assert_int_equal(waitpid(g.pid, NULL, 0), g.pid);
    g.pid = 0;
    g.rid_len = 0;
}

static int s_setup(void **state)
{
    (void)state;
    const char *bd = getenv("CPN_BUILDDIR");
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    snprintf(g.bin, sizeof g.bin, "%s/cpn-peer", bd ? bd : ".");
    snprintf(g.dir, sizeof g.dir, "/tmp/cpn-test-shared-XXXXXX");
    if (access(g.bin, X_OK) != 0 || !mkdtemp(g.dir))
        return -1;
    snprintf(g.cfg, sizeof g.cfg, "%s/peer.yaml", g.dir);
    snprintf(g.db, sizeof g.db, "%s/peer.db", g.dir);
    snprintf(g.log, sizeof g.log, "%s/peer.log", g.dir);
    if (cpn_identity_generate(&g.peer) != CPN_OK || cpn_identity_generate(&g.broker) != CPN_OK ||
        cpn_identity_generate(&g.tenant) != CPN_OK)
        return -1;
    g.bsig.id = g.broker;
    g.tsig.id = g.tenant;
    g.zctx = zmq_ctx_new();
    if (cpn_sock_router(g.zctx, "tcp://127.0.0.1:*", cpn_limits_default.max_frame, NULL,
                        &g.router) != CPN_OK)
        return -1;
    char ep[256], bk[CPN_PK_TEXT_LEN], tk[CPN_PK_TEXT_LEN], path[400];
    size_t n = sizeof ep;
    if (zmq_getsockopt(g.router, ZMQ_LAST_ENDPOINT, ep, &n) != 0)
        return -1;
    cpn_pk_to_text(cpn_identity_pk(g.broker), bk);
    cpn_pk_to_text(cpn_identity_pk(g.tenant), tk);
    FILE *f = fopen(g.cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "name: shared-peer\nkey: peer.key\ndatabase: peer.db\nregion: test-1\n"
            "refresh: 1s\nmax_lease: 2h\nlog_level: info\n"
            "brokers:\n  - endpoint: %s\n    key: %s\n    curve: false\n"
            "tenants:\n  - %s\n"
            "packages:\n"
            "  - id: quarter\n    count: 2\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n"
            "    accelerators: {vendor: nvidia, model: A10, count: 2, memory: 24GiB,\n"
            "                   bf16_tflops: 125, share_min: 0.05}\n"
            "  - id: pair\n    count: 1\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n"
            "    accelerators: {vendor: nvidia, model: A10, count: 2, memory: 24GiB,\n"
            "                   bf16_tflops: 125, share_min: 0.05}\n"
            "  - id: roomy\n    count: 1\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n"
            "    accelerators: {vendor: nvidia, model: A10, count: 2, memory: 24GiB,\n"
            "                   bf16_tflops: 125, share_min: 0.05}\n"
            "  - id: alt-a\n    count: 1\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n"
            "    accelerators: {vendor: nvidia, model: A10, count: 2, memory: 24GiB,\n"
            "                   bf16_tflops: 125, share_min: 0.05}\n"
            "  - id: alt-b\n    count: 1\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n"
            "    accelerators: {vendor: nvidia, model: A10, count: 2, memory: 24GiB,\n"
            "                   bf16_tflops: 125, share_min: 0.05}\n"
            "  - id: whole\n    count: 1\n    price: \"1.0\"\n    cores: 16\n"
            "    memory: 64GiB\n",
            ep, bk, tk);
    fclose(f);
    snprintf(path, sizeof path, "%s/peer", g.dir);
    if (cpn_identity_save(g.peer, path) != CPN_OK)
        return -1;
    s_start();
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    if (g.pid > 0) {
        kill(g.pid, SIGKILL);
        waitpid(g.pid, NULL, 0);
    }
    for (size_t i = 0; i < s_ngot; i++) {
        free(s_got[i].claim);
        free(s_got[i].lease);
    }
    zmq_close(g.router);
    zmq_ctx_term(g.zctx);
    cpn_identity_destroy(&g.peer);
    cpn_identity_destroy(&g.broker);
    cpn_identity_destroy(&g.tenant);
    if (!getenv("CPN_KEEP_TMP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g.dir);
        (void)system(cmd);
    }
    return 0;
}

/* ---- the tests, in order: one peer, one database ---- */

/* The AD's fit points say what is left beside a free share (package "roomy", 1 node of 16
 * cores, 64 GiB, 2 A10): empty, both GPUs with all of it; after a quarter GPU that takes all
 * 16 cores, a whole GPU is still free (slice_max 1000) but the points say no core is left
 * beside it, and indeed a half GPU with one core is refused. */
static void test_ad_fit_points(void **state)
{
    (void)state;
    cpn_fit_t empty = {2000, 16000, 65536};
    assert_true(s_wait_fit("roomy", &empty, 1));
    cpn_lease_t l;
    assert_int_equal(s_ask_cores("r-cpu", "roomy", 250, 1, 16, &l), CPN_OK);
    cpn_fit_t no_core = {1000, 0, 65536};
    assert_true(s_wait_fit("roomy", &no_core, 1));
    assert_int_equal(s_ask_cores("r-more", "roomy", 500, 1, 1, NULL), CPN_E_NO_UNITS);
}

/* 16 quarters fill the 4 devices exactly; the 17th is refused; no device holds more than
 * 1000 thousandths, and every device holds exactly 1000. */
static void test_quarters_fill_exactly(void **state)
{
    (void)state;
    for (int i = 0; i < QUARTERS; i++) {
        char id[32];
        cpn_lease_t l;
        snprintf(id, sizeof id, "q-%02d", i);
        assert_int_equal(s_ask(id, "quarter", 250, 1, &l), CPN_OK);
        assert_true(l.slice[0] != '\0'); /* the lease says where: "UNIT:DEV" */
    }
    int r = s_ask("q-extra", "quarter", 250, 1, NULL);
    assert_true(r == CPN_E_NO_MATCH || r == CPN_E_NO_UNITS);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM slices WHERE package = 'quarter'"), QUARTERS);
    assert_int_equal(s_max_device_use("quarter"), 1000);
    assert_int_equal(s_db_int("SELECT MIN(u) FROM (SELECT SUM(share) AS u FROM slices "
                              "WHERE package = 'quarter' GROUP BY node, devmask)"),
                     1000);
}

/* On "pair" (2 devices): a quarter on one device, then a whole device goes to the other;
 * a second whole device is refused although 0.75 of the first device is free. */
static void test_whole_never_partly_used(void **state)
{
    (void)state;
    cpn_lease_t a, b;
    assert_int_equal(s_ask("p-quarter", "pair", 250, 1, &a), CPN_OK);
    assert_int_equal(s_ask("p-whole", "pair", 1000, 1, &b), CPN_OK);
    assert_string_not_equal(a.slice, b.slice);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM slices s1 JOIN slices s2 ON "
                              "s1.package = s2.package AND s1.node = s2.node "
                              "AND (s1.devmask & s2.devmask) != 0 "
                              "AND s1.lease_id < s2.lease_id WHERE s1.package = 'pair'"),
                     0);
    int r = s_ask("p-whole-2", "pair", 1000, 1, NULL);
    assert_true(r == CPN_E_NO_MATCH || r == CPN_E_NO_UNITS);
    assert_int_equal(s_max_device_use("pair"), 1000);
}

/* A CLAIM's alts: the peer places the slice where its fragmentation grows least, among the
 * CLAIM's package and the alts it can sell the slice from, and the LEASE names that package.
 * alt-b has a quarter on one GPU; half a GPU claimed on the empty alt-a, with alts naming
 * an unknown package, an unshared one and alt-b, goes beside that quarter on alt-b (on alt-a
 * it would break a whole GPU); the chain verifies. Alts that cannot take the slice leave it
 * on the CLAIM's own package. */
static void test_alts_placed_where_best(void **state)
{
    (void)state;
    cpn_lease_t q, h, o;
    assert_int_equal(s_ask("b-quarter", "alt-b", 250, 1, &q), CPN_OK);
    assert_int_equal(s_ask_alts("a-half", "alt-a", "no-such,whole,alt-b", 500, 1, 1, &h), CPN_OK);
    assert_string_equal(h.package, "alt-b");
    assert_string_equal(h.slice, q.slice); /* the same node and GPU */
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM slices WHERE package = 'alt-a'"), 0);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE package = 'alt-b'"), 2);
    const s_granted_t *gr = &s_got[s_ngot - 1];
    cpn_chain_t ch;
    assert_int_equal(cpn_chain_open(gr->lease, gr->lease_len, CPN_MSG_LEASE, NULL, &ch), CPN_OK);
    assert_string_equal(ch.claim.package, "alt-a");
    assert_string_equal(ch.lease.package, "alt-b");
    /* alt-b has 0.25 left on that GPU and a whole one: 0.5 with alt-b named goes where the
     * peer's rule says, but never beyond a GPU; a slice alt-b cannot take stays on alt-a. */
    assert_int_equal(s_ask_alts("a-big", "alt-a", "alt-b", 1000, 2, 1, &o), CPN_OK);
    assert_string_equal(o.package, "alt-a");
    assert_int_equal(s_max_device_use("alt-b"), 750);
}

/* kill -9, restart: the same LEASE bytes for every retried claim, the same rows, and only
 * the space that was free: 0.75 fits on pair's partly used device, then nothing more. */
static void test_kill9_keeps_slices(void **state)
{
    (void)state;
    int64_t before = s_db_int("SELECT SUM(node * 100 + devmask * 10 + share) FROM slices");
    s_kill9();
    s_start();
    assert_int_equal(s_db_int("SELECT SUM(node * 100 + devmask * 10 + share) FROM slices"), before);
    size_t n = s_ngot;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            cpn_send_to(g.router, g.rid, g.rid_len, s_got[i].claim, s_got[i].claim_len), CPN_OK);
        uint64_t deadline = cpn_mono_ms() + WAIT_MS;
        size_t len;
        cpn_env_t env;
        uint8_t *f;
        bool same = false;
        while (!same && (f = s_next(deadline, &len, &env)) != NULL) {
            same = len == s_got[i].lease_len && memcmp(f, s_got[i].lease, len) == 0;
            free(f);
        }
        assert_true(same);
    }
    cpn_lease_t l;
    assert_int_equal(s_ask("p-after", "pair", 750, 1, &l), CPN_OK);
    int r = s_ask("p-after-2", "pair", 50, 1, NULL);
    assert_true(r == CPN_E_NO_MATCH || r == CPN_E_NO_UNITS);
    r = s_ask("q-after", "quarter", 50, 1, NULL);
    assert_true(r == CPN_E_NO_MATCH || r == CPN_E_NO_UNITS);
    assert_int_equal(s_max_device_use("pair"), 1000);
    assert_int_equal(s_max_device_use("quarter"), 1000);
}

/* The next AD (bounded wait): package pkg of it in *out. */
static bool s_next_pkg(const char *pkg, cpn_package_t *out, cpn_slice_sum_t *sum)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    size_t len;
    cpn_env_t env;
    uint8_t *f;
    while ((f = s_next(deadline, &len, &env)) != NULL) {
        bool found = false;
        cpn_ad_t ad;
        memset(&ad, 0, sizeof ad);
        if (env.type == CPN_MSG_AD) {
            assert_int_equal(cpn_msg_decode(&env, &cpn_limits_default, &ad), CPN_OK);
            for (uint32_t i = 0; i < ad.n_packages && !found; i++)
                if (strcmp(ad.packages[i].id, pkg) == 0) {
                    *out = ad.packages[i];
                    memset(sum, 0, sizeof *sum); /* the lists outlive the AD: copied */
                    if (out->sum)
                        *sum = *out->sum;
                    out->sum = sum;
                    found = true;
                }
            cpn_ad_clear(&ad);
        }
        free(f);
        if (found)
            return true;
    }
    return false;
}

/* Are p's gradients for exactly the asks accel[0..n) (ascending)? */
static bool s_grads_are(const cpn_package_t *p, const uint32_t *accel, uint32_t n)
{
    if (p->sum->n_grad != n)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (p->sum->grad[i].accel != accel[i])
            return false;
    return true;
}

/* The operator gives the workload mix (peer.yaml `workload`: tenths and halves): restarted
 * with it, the peer's first AD has gradients for exactly the mix's asks (learning would list
 * whole GPUs, the prior, and the quarters of the store), and after a 0.8 slice is placed
 * the AD that shows it still lists only the mix's. */
static void test_workload_given(void **state)
{
    (void)state;
    static const uint32_t mix[] = {100, 500};
    cpn_package_t p, q;
    cpn_slice_sum_t ps, qs;
    s_kill9();
    FILE *f = fopen(g.cfg, "a");
    assert_non_null(f);
    fputs("workload:\n  - {share: 0.1, weight: 3}\n  - {share: 0.5, weight: 1}\n", f);
    fclose(f);
    s_start();
    assert_true(s_next_pkg("roomy", &p, &ps));
    assert_true(s_grads_are(&p, mix, 2));
    cpn_lease_t l;
    /* 0.8: only the whole GPU holds it, so the fit points move (its 0.75 neighbour stays) */
    assert_int_equal(s_ask_cores("r-mix", "roomy", 800, 1, 0, &l), CPN_OK);
    bool moved = false; /* the first AD whose fit points show the new slice */
    for (int i = 0; i < 20 && !moved; i++) {
        assert_true(s_next_pkg("roomy", &q, &qs));
        moved = qs.n_fit != ps.n_fit || memcmp(qs.fit, ps.fit, ps.n_fit * sizeof ps.fit[0]) != 0;
    }
    assert_true(moved);
    assert_true(s_grads_are(&q, mix, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ad_fit_points),
        cmocka_unit_test(test_quarters_fill_exactly),
        cmocka_unit_test(test_whole_never_partly_used),
        cmocka_unit_test(test_alts_placed_where_best),
        cmocka_unit_test(test_kill9_keeps_slices),
        cmocka_unit_test(test_workload_given),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
