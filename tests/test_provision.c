/* test_provision.c - a real cpn-peer provisioning leases through a real exec driver
 * (tests/prov_driver.py), with the test playing its broker.
 *
 * The test is the broker: a ROUTER on 127.0.0.1 whose key the peer's configuration names. The
 * peer sells "pool" (16 units, served by the driver), "plain" (4 units, no driver: the path
 * of before) and "hang" (the same driver program with a timeout of 3 s). The driver keeps its resources as files, logs its calls, and can be made to
 * fail, print garbage, hang, or block at a step until the test lets it go, so the test can
 * kill -9 the peer at a known point without sleeping. Cases: a grant through the driver; the
 * plain package never calls it; a failure, garbage and a hang each end in NACK
 * provision-failed with the driver's reason and the units back; concurrency 1 holds; a CLAIM
 * again while the lease is provisioning gets no NACK, and the LEASE when the driver is done;
 * renew, release and expiry call the driver, and a released lease's units stay used until
 * its teardown ran; kill -9 of the peer before the driver ran, during it (resource made,
 * not answered), with the LEASE lost on the way, and during a teardown, each followed by a
 * restart; an orphan resource is released at start, a missing one recreated. After every restart the invariant is
 * checked: every active lease has its resource, and the driver holds nothing without an
 * active or provisioning lease.
 *
 * Every wait is bounded and waits for a positive event. CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
#include "seal.h"
#include "transport.h"

#define WAIT_MS 60000  /* one answer from the peer, driver included, on a loaded machine */
#define READY_MS 30000 /* the peer up and saying HELLO */
#define STOP_MS 30000
#define POOL_PRICE 2000

typedef struct {
    char dir[256], cfg[320], db[320], log[320], bin[1024], drv[320];
    void *zctx, *router;
    uint8_t rid[CPN_RID_MAX];
    size_t rid_len;
    cpn_identity_t *peer, *broker, *tenant;
    cpn_signer_t bsig, tsig;
    pid_t pid;
} fx_t;

static fx_t g;

/* ---- files ---- */

static void s_path(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", g.drv, name);
    assert_true(n > 0 && (size_t)n < cap);
}

static bool s_exists(const char *name)
{
    char p[600];
    s_path(p, sizeof p, name);
    return access(p, F_OK) == 0;
}

static void s_touch(const char *name, const char *text)
{
    h_write(g.drv, name, text ? text : "");
}

static void s_unlink(const char *name)
{
    char p[600];
    s_path(p, sizeof p, name);
    assert_true(unlink(p) == 0 || errno == ENOENT);
}

/* Wait until file `name` exists (or, want false, is gone); false after ms. */
static bool s_wait_file(const char *name, bool want, uint64_t ms)
{
    uint64_t end = cpn_mono_ms() + ms;
    while (s_exists(name) != want) {
        if (cpn_mono_ms() >= end)
            return false;
        usleep(10000);
    }
    return true;
}

static bool s_held(const char *lease_id)
{
    char name[200];
    snprintf(name, sizeof name, "res/%s", lease_id);
    return s_exists(name);
}

/* Lines of calls.log equal to "verb lease_id". */
static int s_calls(const char *verb, const char *lease_id)
{
    char p[600], want[200], line[256];
    int n = 0;
    s_path(p, sizeof p, "calls.log");
    snprintf(want, sizeof want, "%s %s\n", verb, lease_id);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strcmp(line, want) == 0;
    fclose(f);
    return n;
}

static void s_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char p[700];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            s_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
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

static bool s_wait_db(const char *sql, const char *arg, int64_t want, uint64_t ms)
{
    uint64_t end = cpn_mono_ms() + ms;
    while (s_db_int(sql, arg) != want) {
        if (cpn_mono_ms() >= end)
            return false;
        usleep(20000);
    }
    return true;
}

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

/* The answer about lease `lease_id` (a LEASE, or a RESEND of one) or a NACK naming one of
 * the seqs in nack_seqs (n of them); ADs and the rest are skipped. *nk gets the NACK, *l the
 * lease (its frame in rx). CPN_MSG_NONE on timeout. */
static cpn_msg_type_t s_answer(const char *lease_id, const uint64_t *nack_seqs, size_t n,
                               rx_t *rx, cpn_nack_t *nk, cpn_lease_t *l)
{
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (s_next(deadline, rx)) {
        cpn_env_t env = rx->env, inner;
        if (env.type == CPN_MSG_RESEND) {
            cpn_resend_t rs;
            memset(&rs, 0, sizeof rs);
            assert_int_equal(cpn_resend_decode(&env, &cpn_limits_default, &rs), CPN_OK);
            assert_int_equal(cpn_env_open(rs.frame.ptr, rs.frame.len, &cpn_limits_default, &inner),
                             CPN_OK);
            env = inner;
        }
        if (env.type == CPN_MSG_LEASE) {
            memset(l, 0, sizeof *l);
            assert_int_equal(cpn_lease_decode(&env, &cpn_limits_default, l), CPN_OK);
            if (lease_id && strcmp(l->lease_id, lease_id) == 0)
                return rx->env.type;
        } else if (env.type == CPN_MSG_NACK) {
            memset(nk, 0, sizeof *nk);
            assert_int_equal(cpn_nack_decode(&env, &cpn_limits_default, nk), CPN_OK);
            for (size_t i = 0; i < n; i++)
                if (nk->ref_seq == nack_seqs[i])
                    return CPN_MSG_NACK;
        }
        s_rx_free(rx);
    }
    return CPN_MSG_NONE;
}

/* ---- building what the broker and the tenant send ---- */

typedef struct {
    char id[CPN_NAME_MAX];
    char lid[CPN_NAME_MAX];
    uint8_t *req, *claim;
    size_t req_len, claim_len;
    uint64_t claim_seq;
} s_claim_t;

static void s_claim_free(s_claim_t *c)
{
    free(c->req);
    free(c->claim);
    memset(c, 0, sizeof *c);
}

/* Sign a CLAIM for `units` of `package` for `duration` s (a fresh REQUEST `id` unless the
 * caller keeps c->req: then the same REQUEST again under a new CLAIM). */
static void s_claim_make(s_claim_t *c, const char *id, const char *package, uint32_t units,
                         uint64_t duration)
{
    cpn_request_t q;
    cpn_claim_t cl;
    memset(&q, 0, sizeof q);
    snprintf(q.id, sizeof q.id, "%s", id);
    q.units = units;
    q.duration_s = duration;
    q.cores = 1;
    assert_int_equal(cpn_hints_set(&q.access, "ssh_key", "ssh-ed25519 AAAAtest tenant@test"),
                     CPN_OK);
    if (!c->req) {
        snprintf(c->id, sizeof c->id, "%s", id);
        assert_int_equal(cpn_signer_build(&g.tsig, CPN_MSG_REQUEST, &q, &c->req, &c->req_len),
                         CPN_OK);
        cpn_chain_lease_id(cpn_identity_pk(g.peer), cpn_identity_pk(g.tenant), id, c->lid);
    }
    free(c->claim);
    memset(&cl, 0, sizeof cl);
    cl.request.ptr = c->req;
    cl.request.len = c->req_len;
    memcpy(cl.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
    snprintf(cl.package, sizeof cl.package, "%s", package);
    cl.units = units;
    cl.price = POOL_PRICE;
    cl.duration_s = duration;
    cl.deadline = cpn_now_ms() + 60000;
    assert_int_equal(cpn_signer_build(&g.bsig, CPN_MSG_CLAIM, &cl, &c->claim, &c->claim_len),
                     CPN_OK);
    c->claim_seq = s_seq_of(c->claim, c->claim_len);
}

/* Send the CLAIM and expect its LEASE (a new one, active) within WAIT_MS; the access details
 * it carries, opened with the tenant's key, into access (may be NULL; "" if none). */
static void s_expect_lease_access(s_claim_t *c, char *access, size_t cap)
{
    rx_t rx;
    cpn_nack_t nk;
    cpn_lease_t l;
    s_send(c->claim, c->claim_len);
    cpn_msg_type_t t = s_answer(c->lid, &c->claim_seq, 1, &rx, &nk, &l);
    if (t == CPN_MSG_NACK)
        fail_msg("%s: NACK %s (%s)", c->id, cpn_errname(nk.code), nk.reason);
    assert_int_not_equal(t, CPN_MSG_NONE);
    assert_string_equal(l.state, "active");
    if (access) {
        size_t n = 0;
        access[0] = '\0';
        if (l.access.len > 0)
            assert_int_equal(cpn_seal_open(g.tenant, l.access.ptr, l.access.len, access, cap, &n),
                             CPN_OK);
    }
    s_rx_free(&rx);
}

static void s_expect_lease(s_claim_t *c)
{
    s_expect_lease_access(c, NULL, 0);
}

/* Send the CLAIM and expect NACK `code` with `part` in its reason. */
static void s_expect_nack(s_claim_t *c, int code, const char *part)
{
    rx_t rx;
    cpn_nack_t nk;
    cpn_lease_t l;
    s_send(c->claim, c->claim_len);
    cpn_msg_type_t t = s_answer(c->lid, &c->claim_seq, 1, &rx, &nk, &l);
    if (t != CPN_MSG_NACK)
        fail_msg("%s: %s, not NACK %s", c->id, t ? cpn_msg_name(t) : "nothing", cpn_errname(code));
    if (nk.code != code || !strstr(nk.reason, part))
        fail_msg("%s: NACK %s (%s), not %s with \"%s\"", c->id, cpn_errname(nk.code), nk.reason,
                 cpn_errname(code), part);
    s_rx_free(&rx);
}

static void s_tenant_op(cpn_msg_type_t type, const char *lease_id, uint64_t extend_s,
                        const char *state)
{
    uint8_t *f = NULL;
    size_t n = 0;
    rx_t rx;
    cpn_nack_t nk;
    cpn_lease_t l;
    if (type == CPN_MSG_RENEW) {
        cpn_renew_t rn;
        memset(&rn, 0, sizeof rn);
        snprintf(rn.lease_id, sizeof rn.lease_id, "%s", lease_id);
        memcpy(rn.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
        rn.extend_s = extend_s;
        assert_int_equal(cpn_signer_build(&g.tsig, type, &rn, &f, &n), CPN_OK);
    } else {
        cpn_release_t rl;
        memset(&rl, 0, sizeof rl);
        snprintf(rl.lease_id, sizeof rl.lease_id, "%s", lease_id);
        memcpy(rl.peer, cpn_identity_pk(g.peer), CPN_PK_LEN);
        assert_int_equal(cpn_signer_build(&g.tsig, type, &rl, &f, &n), CPN_OK);
    }
    uint64_t seq = s_seq_of(f, n);
    s_send(f, n);
    cpn_msg_type_t t = s_answer(lease_id, &seq, 1, &rx, &nk, &l);
    if (t == CPN_MSG_NACK)
        fail_msg("%s %s: NACK %s (%s)", cpn_msg_name(type), lease_id, cpn_errname(nk.code),
                 nk.reason);
    assert_int_equal(t, CPN_MSG_LEASE);
    assert_string_equal(l.state, state);
    s_rx_free(&rx);
    free(f);
}

/* ---- the daemon ---- */

static void s_write_config(void)
{
    char ep[256], bk[CPN_PK_TEXT_LEN], text[3072];
    size_t n = sizeof ep;
    assert_int_equal(zmq_getsockopt(g.router, ZMQ_LAST_ENDPOINT, ep, &n), 0);
    cpn_pk_to_text(cpn_identity_pk(g.broker), bk);
    int k = snprintf(text, sizeof text,
                     "name: provision-test-peer\n"
                     "key: peer.key\n"
                     "database: peer.db\n"
                     "region: test-1\n"
                     "refresh: 1s\n"
                     "max_lease: 1h\n"
                     "brokers:\n"
                     "  - endpoint: %s\n"
                     "    key: %s\n"
                     "tenants:\n"
                     "  - tenant.pub\n"
                     "packages:\n"
                     "  - id: pool\n"
                     "    count: 16\n"
                     "    price: \"2.0\"\n"
                     "    cores: 8\n"
                     "    memory: 32GiB\n"
                     "  - id: plain\n"
                     "    count: 4\n"
                     "    price: \"2.0\"\n"
                     "    cores: 8\n"
                     "    memory: 32GiB\n"
                     "  - id: hang\n"
                     "    count: 4\n"
                     "    price: \"2.0\"\n"
                     "    cores: 8\n"
                     "    memory: 32GiB\n"
                     "provision:\n"
                     "  drivers:\n"
                     "    - name: testdrv\n"
                     "      type: exec\n"
                     "      program: drv/driver.py\n"
                     "      timeout: 60s\n"
                     "      concurrency: 1\n"
                     "      retries: 1\n"
                     "      backoff: 1s\n"
                     "    - name: hangdrv\n"
                     "      type: exec\n"
                     "      program: drv/driver.py\n"
                     "      timeout: 3s\n"
                     "      retries: 1\n"
                     "      backoff: 1s\n"
                     "  packages:\n"
                     "    pool: testdrv\n"
                     "    hang: hangdrv\n",
                     ep, bk);
    assert_true(k > 0 && (size_t)k < sizeof text);
    h_write(g.dir, "peer.yaml", text);
}

static bool s_peer_start(void)
{
    g.rid_len = 0;
    g.pid = h_spawn(g.bin, "cpn-peer", g.cfg, g.log);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    rx_t rx;
    bool hello = false;
    while (!hello && s_next(deadline, &rx)) {
        hello = rx.env.type == CPN_MSG_HELLO;
        s_rx_free(&rx);
    }
    if (!hello)
        fprintf(stderr, "# cpn-peer did not say HELLO (log: %s)\n", g.log);
    return hello;
}

static void s_peer_kill9(void)
{
    assert_true(g.pid > 0);
    assert_int_equal(kill(g.pid, SIGKILL), 0);
    uint64_t end = cpn_mono_ms() + STOP_MS;
    while (h_alive(&g.pid) && cpn_mono_ms() < end)
        usleep(10000);
    assert_int_equal(g.pid, -1);
    g.pid = 0;
    /* Frames the dead peer sent before its end are not answers to anything now. */
    rx_t rx;
    while (s_next(cpn_mono_ms(), &rx))
        s_rx_free(&rx);
}

static void s_peer_restart(void)
{
    assert_true(s_peer_start());
}

/* The invariant after a restart, once nothing is due: every active lease has its resource,
 * and every resource belongs to an active lease. */
static void s_check_invariant(void)
{
    assert_true(s_wait_db("SELECT COUNT(*) FROM leases WHERE state = 'provisioning' OR "
                          "teardown = 1", NULL, 0, WAIT_MS));
    char p[600];
    s_path(p, sizeof p, "res");
    /* driver -> store */
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *e;
    uint64_t end = cpn_mono_ms() + WAIT_MS;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp"))
            continue;
        /* An orphan's release may still be on its way: wait for it (bounded). */
        while (s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = 'active'",
                        e->d_name) != 1 && s_held(e->d_name) && cpn_mono_ms() < end)
            usleep(20000);
        if (s_held(e->d_name) &&
            s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = 'active'",
                     e->d_name) != 1)
            fail_msg("the driver holds %s without an active lease", e->d_name);
    }
    closedir(d);
    /* store -> driver */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT lease_id FROM leases WHERE state = 'active' "
                                        "AND driver <> ''",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!s_held(id))
            fail_msg("active lease %s has no resource at the driver", id);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int s_setup(void **state)
{
    (void)state;
    memset(&g, 0, sizeof g);
    const char *src = getenv("CPN_SRCDIR");
    char from[600], cmd[2000];
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "provision") != 0)
        return -1;
    snprintf(g.cfg, sizeof g.cfg, "%s/peer.yaml", g.dir);
    snprintf(g.db, sizeof g.db, "%s/peer.db", g.dir);
    snprintf(g.log, sizeof g.log, "%s/peer.log", g.dir);
    snprintf(g.drv, sizeof g.drv, "%s/drv", g.dir);
    snprintf(from, sizeof from, "%s/tests/prov_driver.py", src && src[0] ? src : "..");
    if (mkdir(g.drv, 0700) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/driver.py' && chmod 755 '%s/driver.py'", from, g.drv,
             g.drv);
    if (system(cmd) != 0) {
        fprintf(stderr, "# cannot copy %s (set CPN_SRCDIR)\n", from);
        return -1;
    }
    h_keygen(g.dir, "peer", &g.peer);
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, "tenant", &g.tenant);
    g.bsig.id = g.broker;
    g.tsig.id = g.tenant;
    g.zctx = zmq_ctx_new();
    if (!g.zctx || cpn_sock_router(g.zctx, "tcp://127.0.0.1:*", cpn_limits_default.max_frame,
                                   NULL, &g.router) != CPN_OK)
        return -1;
    s_write_config();
    return s_peer_start() ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.pid, STOP_MS);
    /* Let any driver still blocked go, then remove its directory. */
    s_touch("go-grant-before", NULL);
    s_touch("go-grant-after", NULL);
    s_touch("go-release-before", NULL);
    s_touch("go-release-after", NULL);
    if (g.router)
        zmq_close(g.router);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    cpn_identity_destroy(&g.peer);
    cpn_identity_destroy(&g.broker);
    cpn_identity_destroy(&g.tenant);
    if (clean && !getenv("CPN_TEST_KEEP"))
        s_rm_tree(g.drv);
    h_dir_done(g.dir, clean);
    return 0;
}

/* ---- the cases ---- */

/* A CLAIM for "pool": the driver's grant makes the resource, then the LEASE comes; the lease
 * is active in the store and its resource names it. */
static void test_grant_through_driver(void **state)
{
    (void)state;
    s_claim_t c = {0};
    char access[CPN_ACCESS_MAX + 1], want[128], p[600], held[4096];
    char kid[CPN_KID_LEN];
    s_claim_make(&c, "grant-1", "pool", 1, 600);
    s_expect_lease_access(&c, access, sizeof access);
    assert_true(s_held(c.lid));
    assert_int_equal(s_calls("grant", c.lid), 1);
    /* The driver's access details, sealed to the tenant; the REQUEST's hints reached it. */
    cpn_key_id(cpn_identity_pk(g.tenant), kid);
    snprintf(want, sizeof want, "\"user\":\"t-%s\"", kid);
    if (!strstr(access, want))
        fail_msg("access details %s lack %s", access, want);
    snprintf(p, sizeof p, "%s/res/%s", g.drv, c.lid);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t hn = fread(held, 1, sizeof held - 1, f);
    held[hn] = '\0';
    fclose(f);
    if (!strstr(held, "\"ssh_key\": \"ssh-ed25519 AAAAtest tenant@test\""))
        fail_msg("the driver did not get the access hints: %s", held);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = "
                              "'active' AND driver = 'testdrv'", c.lid), 1);
    /* The same CLAIM again: the stored LEASE (RESEND), the driver not called again. */
    s_claim_make(&c, "grant-1", "pool", 1, 600);
    s_expect_lease(&c);
    assert_int_equal(s_calls("grant", c.lid), 1);
    s_claim_free(&c);
}

/* A package without a driver takes the path of before: LEASE at once, no driver call. */
static void test_plain_package_no_driver(void **state)
{
    (void)state;
    s_claim_t c = {0};
    s_claim_make(&c, "plain-1", "plain", 1, 600);
    s_expect_lease(&c);
    assert_int_equal(s_calls("grant", c.lid), 0);
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND driver = ''",
                              c.lid), 1);
    s_claim_free(&c);
}

/* The driver refuses: NACK provision-failed with its reason, the lease `failed`, the units
 * back (a CLAIM for all that is left is granted), and a CLAIM again gets the same NACK. */
static void test_driver_failure(void **state)
{
    (void)state;
    s_claim_t c = {0}, after = {0};
    s_touch("fail-grant", "no GPUs left in rack 7\n");
    s_claim_make(&c, "fail-1", "pool", 15, 600);
    s_expect_nack(&c, CPN_E_PROVISION_FAILED, "no GPUs left in rack 7");
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = "
                              "'failed'", c.lid), 1);
    s_claim_make(&c, "fail-1", "pool", 15, 600);
    s_expect_nack(&c, CPN_E_PROVISION_FAILED, "failed");
    s_unlink("fail-grant");
    s_claim_make(&after, "after-fail", "pool", 15, 600); /* grant-1 holds 1 of 16 */
    s_expect_lease(&after);
    /* Its cleanup release ran (nothing held under the failed lease). */
    assert_true(s_wait_db("SELECT teardown FROM leases WHERE lease_id = ?", c.lid, 0, WAIT_MS));
    s_tenant_op(CPN_MSG_RELEASE, after.lid, 0, "released");
    assert_true(s_wait_db("SELECT teardown FROM leases WHERE lease_id = ?", after.lid, 0,
                          WAIT_MS));
    s_claim_free(&c);
    s_claim_free(&after);
}

/* Garbage on stdout is retried (retries: 1), then NACK provision-failed saying so. */
static void test_driver_garbage(void **state)
{
    (void)state;
    s_claim_t c = {0};
    s_touch("garbage-grant", NULL);
    s_claim_make(&c, "garbage-1", "pool", 1, 600);
    s_expect_nack(&c, CPN_E_PROVISION_FAILED, "not a JSON object");
    s_unlink("garbage-grant");
    assert_int_equal(s_calls("grant", c.lid), 2);
    assert_false(s_held(c.lid));
    s_claim_free(&c);
}

/* A driver that hangs is killed at its timeout (hangdrv: 3 s), tried again, then NACK. */
static void test_driver_timeout(void **state)
{
    (void)state;
    s_claim_t c = {0};
    s_touch("sleep-grant", "60");
    s_claim_make(&c, "timeout-1", "hang", 1, 600);
    s_expect_nack(&c, CPN_E_PROVISION_FAILED, "driver timed out after 3 s (no tries left)");
    s_unlink("sleep-grant");
    assert_false(s_held(c.lid));
    s_claim_free(&c);
}

/* concurrency: 1. Two grants, the first blocked: the second waits; both end granted, and
 * the driver never saw two of itself at once. A CLAIM again for the blocked one, read by
 * the peer (a CLAIM after it is answered first), gets no NACK: the LEASE comes when the
 * driver is done. */
static void test_concurrency_and_retry_while_provisioning(void **state)
{
    (void)state;
    s_claim_t a = {0}, b = {0}, probe = {0};
    rx_t rx;
    cpn_nack_t nk;
    cpn_lease_t l;
    s_unlink("maxrun-grant");
    s_touch("block-grant-after", NULL);
    s_claim_make(&a, "conc-a", "pool", 1, 600);
    s_claim_make(&b, "conc-b", "pool", 1, 600);
    s_send(a.claim, a.claim_len);
    s_send(b.claim, b.claim_len);
    assert_true(s_wait_file("at-grant-after", true, WAIT_MS));
    uint64_t first_seq = a.claim_seq;
    s_claim_make(&a, "conc-a", "pool", 1, 600); /* the same REQUEST, a new CLAIM */
    s_send(a.claim, a.claim_len);
    s_claim_make(&probe, "conc-probe", "plain", 1, 600);
    s_send(probe.claim, probe.claim_len);
    uint64_t seqs[] = {first_seq, a.claim_seq, b.claim_seq};
    /* Until the probe's LEASE: no NACK for a's CLAIMs (nor b's). */
    cpn_msg_type_t t = s_answer(probe.lid, seqs, 3, &rx, &nk, &l);
    if (t == CPN_MSG_NACK)
        fail_msg("NACK %s (%s) while provisioning", cpn_errname(nk.code), nk.reason);
    assert_int_equal(t, CPN_MSG_LEASE);
    s_rx_free(&rx);
    s_unlink("block-grant-after");
    s_touch("go-grant-after", NULL);
    for (int i = 0; i < 2; i++) {
        uint64_t end = cpn_mono_ms() + WAIT_MS;
        bool got = false;
        while (!got && s_next(end, &rx)) {
            if (rx.env.type == CPN_MSG_LEASE) {
                assert_int_equal(cpn_lease_decode(&rx.env, &cpn_limits_default, &l), CPN_OK);
                got = strcmp(l.lease_id, a.lid) == 0 || strcmp(l.lease_id, b.lid) == 0;
            } else if (rx.env.type == CPN_MSG_NACK) {
                fail_msg("a NACK instead of a LEASE");
            }
            s_rx_free(&rx);
        }
        assert_true(got);
    }
    s_unlink("go-grant-after");
    s_unlink("at-grant-after");
    assert_true(s_held(a.lid) && s_held(b.lid));
    char p[600], buf[16] = "";
    s_path(p, sizeof p, "maxrun-grant");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_int_equal(atoi(buf), 1);
    s_claim_free(&a);
    s_claim_free(&b);
    s_claim_free(&probe);
}

/* Renew sets the resource's end; release tears it down, and the units stay used until it
 * did (the teardown blocked: the row says teardown due); expiry tears down too. */
static void test_renew_release_expiry(void **state)
{
    (void)state;
    s_claim_t c = {0}, e = {0};
    s_claim_make(&c, "life-1", "pool", 1, 600);
    s_expect_lease(&c);
    s_tenant_op(CPN_MSG_RENEW, c.lid, 60, "active");
    uint64_t end = cpn_mono_ms() + WAIT_MS;
    while (s_calls("renew", c.lid) < 1 && cpn_mono_ms() < end)
        usleep(20000);
    assert_int_equal(s_calls("renew", c.lid), 1);
    s_touch("block-release-before", NULL);
    s_tenant_op(CPN_MSG_RELEASE, c.lid, 0, "released");
    assert_true(s_wait_file("at-release-before", true, WAIT_MS));
    assert_int_equal(s_db_int("SELECT teardown FROM leases WHERE lease_id = ?", c.lid), 1);
    assert_true(s_held(c.lid));
    s_unlink("block-release-before");
    s_touch("go-release-before", NULL);
    assert_true(s_wait_db("SELECT teardown FROM leases WHERE lease_id = ?", c.lid, 0, WAIT_MS));
    assert_false(s_held(c.lid));
    s_unlink("go-release-before");
    s_unlink("at-release-before");
    /* A lease of 2 s: the driver releases it at expiry. */
    s_claim_make(&e, "short-1", "pool", 1, 2);
    s_expect_lease(&e);
    assert_true(s_held(e.lid));
    assert_true(s_wait_db("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = 'expired' "
                          "AND teardown = 0", e.lid, 1, WAIT_MS));
    assert_false(s_held(e.lid));
    assert_int_equal(s_calls("release", e.lid), 1);
    s_claim_free(&c);
    s_claim_free(&e);
}

/* kill -9 of the peer while the grant blocks at `step` ("before": the driver started, did
 * nothing; "after": the resource made, not answered). After the restart the grant runs again
 * (idempotent) and the broker's next CLAIM gets the LEASE. */
static void s_kill_during_grant(const char *id, const char *step)
{
    s_claim_t c = {0};
    char block[64], at[64], go[64];
    snprintf(block, sizeof block, "block-grant-%s", step);
    snprintf(at, sizeof at, "at-grant-%s", step);
    snprintf(go, sizeof go, "go-grant-%s", step);
    s_touch(block, NULL);
    s_claim_make(&c, id, "pool", 1, 600);
    s_send(c.claim, c.claim_len);
    assert_true(s_wait_file(at, true, WAIT_MS));
    assert_int_equal(s_db_int("SELECT COUNT(*) FROM leases WHERE lease_id = ? AND state = "
                              "'provisioning'", c.lid), 1);
    s_peer_kill9();
    s_unlink(block);
    s_touch(go, NULL); /* the orphaned child finishes too: grants are idempotent */
    s_peer_restart();
    s_claim_make(&c, id, "pool", 1, 600);
    s_expect_lease(&c);
    s_check_invariant();
    assert_true(s_held(c.lid));
    s_unlink(go);
    s_unlink(at);
    s_claim_free(&c);
}

static void test_kill_before_driver(void **state)
{
    (void)state;
    s_kill_during_grant("kill-before", "before");
}

static void test_kill_during_driver(void **state)
{
    (void)state;
    s_kill_during_grant("kill-during", "after");
}

/* The LEASE committed and sent, lost on the way, the peer killed: after the restart the
 * broker's next CLAIM gets the same lease (RESEND), its resource still there. */
static void test_kill_after_commit(void **state)
{
    (void)state;
    s_claim_t c = {0};
    rx_t rx;
    cpn_nack_t nk;
    cpn_lease_t l;
    s_claim_make(&c, "kill-after", "pool", 1, 600);
    s_send(c.claim, c.claim_len);
    assert_int_equal(s_answer(c.lid, &c.claim_seq, 1, &rx, &nk, &l), CPN_MSG_LEASE);
    s_rx_free(&rx); /* lost */
    s_peer_kill9();
    s_peer_restart();
    s_claim_make(&c, "kill-after", "pool", 1, 600);
    s_send(c.claim, c.claim_len);
    assert_int_equal(s_answer(c.lid, &c.claim_seq, 1, &rx, &nk, &l), CPN_MSG_RESEND);
    s_rx_free(&rx);
    assert_int_equal(s_calls("grant", c.lid), 1);
    s_check_invariant();
    s_claim_free(&c);
}

/* kill -9 during a teardown, an orphan the driver holds, and an active lease whose resource
 * is gone: after the restart the teardown and the orphan's release ran, and the missing
 * resource was recreated. */
static void test_kill_during_teardown_and_orphan(void **state)
{
    (void)state;
    s_claim_t c = {0};
    s_claim_make(&c, "kill-teardown", "pool", 1, 600);
    s_expect_lease(&c);
    s_touch("block-release-after", NULL);
    s_tenant_op(CPN_MSG_RELEASE, c.lid, 0, "released");
    assert_true(s_wait_file("at-release-after", true, WAIT_MS));
    s_peer_kill9();
    s_unlink("block-release-after");
    s_touch("go-release-after", NULL);
    s_touch("res/Lorphan000000000", "{}");
    /* An active lease whose resource vanished while the peer was down: status says missing,
     * the grant recreates it. */
    char gone[CPN_NAME_MAX], name[200];
    cpn_chain_lease_id(cpn_identity_pk(g.peer), cpn_identity_pk(g.tenant), "grant-1", gone);
    assert_true(s_held(gone));
    snprintf(name, sizeof name, "res/%s", gone);
    s_unlink(name);
    s_peer_restart();
    assert_true(s_wait_file(name, true, WAIT_MS));
    assert_true(s_calls("status", gone) >= 1);
    s_check_invariant();
    assert_false(s_held("Lorphan000000000"));
    assert_false(s_held(c.lid));
    assert_int_equal(s_db_int("SELECT teardown FROM leases WHERE lease_id = ?", c.lid), 0);
    s_unlink("go-release-after");
    s_unlink("at-release-after");
    s_claim_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grant_through_driver),
        cmocka_unit_test(test_plain_package_no_driver),
        cmocka_unit_test(test_driver_failure),
        cmocka_unit_test(test_driver_garbage),
        cmocka_unit_test(test_driver_timeout),
        cmocka_unit_test(test_concurrency_and_retry_while_provisioning),
        cmocka_unit_test(test_renew_release_expiry),
        cmocka_unit_test(test_kill_before_driver),
        cmocka_unit_test(test_kill_during_driver),
        cmocka_unit_test(test_kill_after_commit),
        cmocka_unit_test(test_kill_during_teardown_and_orphan),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
