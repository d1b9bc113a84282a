/* test_notice.c - a peer that loses the capacity under a lease says so, and the tenant hears
 * it (issue 13, deliverable 5; docs/PROTOCOL.md §7 NOTICE, §14).
 *
 * Real cpn-broker and cpn-peer processes on 127.0.0.1 (tests/harness.c), cpnctl run as the
 * tenant would, and the test speaking as a peer where it forges. Each case writes its own
 * policy and databases (named with the case's prefix) in one temporary directory:
 * - drain: a lease on the cheap peer; `cpn-peer --drain cpu` against the running peer; the
 *   tenant's `cpnctl watch --count 1` prints the NOTICE; the lease is revoked in the peer's
 *   store and in the broker's ledger (`cpnctl leases` shows the notice); the peer has the
 *   broker's receipt; the drained package is advertised with 0 free; the GRANT the tenant
 *   holds still verifies; no other lease for the request exists (it did not ask rematch).
 * - forged: NOTICEs signed by another peer than the lease's, naming another tenant, or
 *   another lease id are refused with ERROR (untrusted, inconsistent), counted, and change
 *   nothing (the lease stays active, no notice is recorded).
 * - broker restart: the broker is killed before the peer drains; the notice waits in the
 *   peer's store and reaches the restarted broker (re-sent in a RESEND); after the receipt
 *   the broker is killed again and the restarted one still shows the notice.
 * - rematch: a REQUEST with on_failure: rematch; after the drain the broker places the rest
 *   of the lease on the other peer: one new lease there, active, whose GRANT verifies, ending
 *   no later than the old one; the notice names it; one replacement only, no intent left.
 * - driver lost: an exec driver's inventory names a lease lost: the peer revokes it with a
 *   NOTICE the tenant sees, and calls the driver's release.
 * - federated: the tenant's broker is not the peer's: the peer's home broker records the
 *   notice and carries it on (FORWARD) to the tenant's broker, which ends the lease and shows
 *   it to `cpnctl watch`; every hop holds the next one's receipt.
 *
 * Every wait is bounded and waits for a positive event. CPN_TEST_KEEP=1 keeps the directory.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "ctl_client.h"
#include "ctl_verify.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"

#define WAIT_MS 8000   /* one answer from the broker */
#define READY_MS 30000 /* a daemon up, offers in the book, a row written (a bound) */
#define STOP_MS 30000
#define POLL_MS 100
#define WATCH_S "30" /* cpnctl watch's --timeout */
#define RUN_MS 60000 /* a program of the build run to its end (h_run): past WATCH_S */

enum { P_CHEAP, P_DEAR, P__COUNT };

typedef struct {
    const char *name;
    cpn_identity_t *id;
    pid_t pid;
    char db[400], cfg[400];
} peer_t;

typedef struct {
    char dir[256], bin[1024], policy[320], broker_log[320], ledger[400];
    bool clean;
    char endpoint[64], endpoint2[64];
    cpn_identity_t *broker, *beta, *b2;
    pid_t broker_pid, b2_pid;
    h_tenant_t t;
    peer_t p[P__COUNT];
} fx_t;

static fx_t g = {
    .t = {.name = "acme"},
    .p = {{.name = "cheap"}, {.name = "dear"}},
};

/* ---- files and databases ---- */

/* Wait until the query gives `want` (bounded). */
static bool s_wait_db(const char *path, const char *sql, const char *arg, int64_t want)
{
    return h_wait_db(path, sql, arg, want, READY_MS);
}

static void s_write_policy(const char *tag)
{
    char name[128];
    snprintf(name, sizeof name, "%s-ledger.db", tag);
    h_path(g.ledger, sizeof g.ledger, g.dir, name);
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "notice-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = g.ledger,
                              .peers = "cheap dear",
                              .operators = "acme",
                              .tenants = "beta",
                              .limits = "  claim_timeout: 2s\n",
                          });
}

/* Peer p at the broker `broker` (key `broker`.pub) listening at `endpoint`. */
static void s_write_peer_at(peer_t *p, const char *tag, const char *price, const char *endpoint,
                            const char *broker)
{
    char name[128], pkgs[256] = "";
    snprintf(name, sizeof name, "%s-%s.db", tag, p->name);
    h_path(p->db, sizeof p->db, g.dir, name);
    h_package(pkgs, sizeof pkgs, "cpu", 2, price, 8, "32GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = p->name,
                                 .database = p->db,
                                 .refresh = "1s",
                                 .max_lease = "7d",
                                 .broker = endpoint,
                                 .broker_name = broker,
                                 .packages = pkgs,
                             });
    snprintf(name, sizeof name, "%s.yaml", p->name);
    h_path(p->cfg, sizeof p->cfg, g.dir, name);
}

static void s_write_peer(peer_t *p, const char *tag, const char *price)
{
    s_write_peer_at(p, tag, price, g.endpoint, "broker");
}

/* An exec driver (docs/PROVISIONING.md) for package cpu: grants at once, logs every call to
 * calls.log, and its inventory names as lost the lease id written in the file `lost`. */
static const char S_DRIVER[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\")\n"
    "cat >/dev/null\n"
    "echo \"$1 $(cat \"$d/lost\" 2>/dev/null)\" >>\"$d/calls.log\"\n"
    "case \"$1\" in\n"
    "status) echo '{\"ok\": true, \"present\": true}' ;;\n"
    "list) echo '{\"ok\": true, \"leases\": []}' ;;\n"
    "inventory) if [ -s \"$d/lost\" ]; then\n"
    "    printf '{\"ok\": true, \"lost\": [\"%s\"]}\\n' \"$(cat \"$d/lost\")\"\n"
    "  else echo '{\"ok\": true}'; fi ;;\n"
    "*) echo '{\"ok\": true}' ;;\n"
    "esac\n";

static void s_add_driver(peer_t *p)
{
    char path[400];
    h_path(path, sizeof path, g.dir, "drv.sh");
    h_write(g.dir, "drv.sh", S_DRIVER);
    assert_int_equal(chmod(path, 0755), 0);
    FILE *f = fopen(p->cfg, "a");
    assert_non_null(f);
    fputs("provision:\n"
          "  drivers:\n"
          "    - name: d\n"
          "      type: exec\n"
          "      program: drv.sh\n"
          "      timeout: 20s\n"
          "      inventory: 1s\n"
          "  packages:\n"
          "    cpu: d\n",
          f);
    assert_int_equal(fclose(f), 0);
}

/* ---- processes ---- */

static void s_start_peer(peer_t *p)
{
    char log[400], name[128];
    snprintf(name, sizeof name, "%s.log", p->name);
    h_path(log, sizeof log, g.dir, name);
    p->pid = h_spawn(g.bin, "cpn-peer", p->cfg, log);
}

static bool s_start_broker(void)
{
    return h_start_broker(g.bin, g.policy, g.broker_log, &g.broker_pid, g.endpoint, g.t.id,
                          cpn_identity_pk(g.broker), true, &g.t.cli, READY_MS);
}

static void s_kill_broker(void)
{
    assert_true(g.broker_pid > 0);
    assert_int_equal(kill(g.broker_pid, SIGKILL), 0);
    uint64_t deadline = cpn_mono_ms() + STOP_MS;
    while (h_alive(&g.broker_pid) && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    assert_false(h_alive(&g.broker_pid));
    g.broker_pid = 0;
    ctl_client_destroy(&g.t.cli);
}

/* `cpnctl ... ARGS` as the tenant acme. */
static int s_cpnctl(const char *cmd, const char *a1, const char *a2, char *out, size_t cap)
{
    char key[400], bkey[400];
    h_path(key, sizeof key, g.dir, "acme.key");
    h_path(bkey, sizeof bkey, g.dir, "broker.pub");
    const char *argv[] = {"cpnctl", "--plain", "--json", "-t", WATCH_S, "-b", g.endpoint, "-B",
                          bkey,     "-k",      key,      cmd,  a1,      a2,   NULL};
    return h_run(g.bin, argv, out, cap, RUN_MS);
}

static int s_drain(peer_t *p)
{
    char out[1024];
    const char *argv[] = {"cpn-peer", "--config", p->cfg, "--drain", "cpu", NULL};
    int rc = h_run(g.bin, argv, out, sizeof out, RUN_MS);
    fprintf(stderr, "# %s", out);
    return rc;
}

/* Wait until the broker lists the peer with exactly `want` units free. */
static bool s_wait_offer(const char *name, long want)
{
    return h_wait_free(g.t.cli, name, want, want, WAIT_MS, READY_MS);
}

static uint64_t s_refused(const char *slug)
{
    h_ans_t a;
    assert_int_equal(h_query(g.t.cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    uint64_t n = h_u64(h_get(h_get(&a.obj, "refused"), slug));
    h_ans_free(&a);
    return n;
}

/* Submit request `id` (1 unit of 8 cores for 1 h; with on_failure `rematch` if `rematch`): the
 * GRANT in *a, its lease id out. */
static void s_lease_ex(const char *id, bool rematch, h_ans_t *a, char lease_id[CPN_NAME_MAX])
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    if (rematch)
        snprintf(r.on_failure, sizeof r.on_failure, "rematch");
    r.units = 1;
    r.cores = 8;
    r.duration_s = 3600;
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.t.cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    assert_int_equal(h_await(g.t.cli, seq, id, NULL, WAIT_MS, a), CPN_MSG_GRANT);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a->frame, a->len, NULL, &why), CPN_OK);
    cpn_limits_t lim = h_big_limits();
    cpn_grant_t gr;
    cpn_env_t lenv;
    cpn_lease_t l;
    assert_int_equal(cpn_grant_decode(&a->env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &l), CPN_OK);
    snprintf(lease_id, CPN_NAME_MAX, "%s", l.lease_id);
}

static void s_lease(const char *id, h_ans_t *a, char lease_id[CPN_NAME_MAX])
{
    s_lease_ex(id, false, a, lease_id);
}

/* A copy of one blob from a SQLite file (the caller frees it); NULL if none. */
static uint8_t *s_db_blob(const char *path, const char *sql, const char *arg, size_t *len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint8_t *out = NULL;
    *len = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) > 0) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        out = malloc(*len);
        assert_non_null(out);
        memcpy(out, sqlite3_column_blob(st, 0), *len);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void s_case_start(const char *tag)
{
    s_write_policy(tag);
    s_write_peer(&g.p[P_CHEAP], tag, "1.0");
    s_write_peer(&g.p[P_DEAR], tag, "2.0");
    assert_true(s_start_broker());
    for (int i = 0; i < P__COUNT; i++)
        s_start_peer(&g.p[i]);
    assert_true(s_wait_offer("cheap", 2));
    assert_true(s_wait_offer("dear", 2));
}

static const char *const S_STATE_SQL = "SELECT COUNT(*) FROM leases WHERE lease_id = ?1 AND "
                                       "state = 'revoked'";

/* ---- cases ---- */

static void test_drain_notice(void **state)
{
    (void)state;
    h_ans_t grant;
    char lease_id[CPN_NAME_MAX], out[8192];
    s_case_start("t1");
    s_lease("job-1", &grant, lease_id);
    assert_int_equal(
        h_db_int(g.p[P_CHEAP].db, "SELECT COUNT(*) FROM leases WHERE lease_id = ?1", lease_id), 1);
    assert_int_equal(s_drain(&g.p[P_CHEAP]), 0);
    /* The tenant follows its notices: the one for its lease comes. */
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    fprintf(stderr, "# watch: %s", out);
    assert_non_null(strstr(out, lease_id));
    assert_non_null(strstr(out, "capacity-lost"));
    /* Revoked at the peer and in the ledger; the peer holds the broker's receipt. */
    assert_int_equal(h_db_int(g.p[P_CHEAP].db, S_STATE_SQL, lease_id), 1);
    assert_int_equal(h_db_int(g.ledger, S_STATE_SQL, lease_id), 1);
    assert_true(s_wait_db(g.p[P_CHEAP].db,
                          "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND acked = 1",
                          lease_id, 1));
    /* `cpnctl leases` shows it. */
    assert_int_equal(s_cpnctl("leases", NULL, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "revoked"));
    assert_non_null(strstr(out, "capacity-lost: package drained"));
    /* The drained package advertises nothing free; the other peer is untouched. */
    assert_true(s_wait_offer("cheap", 0));
    assert_int_equal(h_offer_free(g.t.cli, "dear", WAIT_MS), 2);
    /* Without on_failure: rematch the lease just ends: no lease for job-1 elsewhere. */
    assert_int_equal(h_db_int(g.p[P_DEAR].db, "SELECT COUNT(*) FROM leases", NULL), 0);
    assert_int_equal(h_db_int(g.ledger, "SELECT COUNT(*) FROM leases", NULL), 1);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(grant.frame, grant.len, NULL, &why), CPN_OK);
    h_ans_free(&grant);
    for (int i = 0; i < P__COUNT; i++)
        assert_true(h_stop(&g.p[i].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
}

/* Sign a NOTICE over `lease` (a LEASE frame) and send it as `as`; the broker's answer. */
static cpn_msg_type_t s_forge(const cpn_identity_t *as, const cpn_lease_t *l, const uint8_t *frame,
                              size_t len, const uint8_t tenant[CPN_PK_LEN], const char *lease_id,
                              h_ans_t *a)
{
    ctl_client_t *cli = NULL;
    assert_int_equal(ctl_client_new(g.endpoint, as, cpn_identity_pk(g.broker), true, &cli), CPN_OK);
    cpn_notice_t n;
    memset(&n, 0, sizeof n);
    n.lease = (mp_bytes_t){frame, len};
    snprintf(n.lease_id, sizeof n.lease_id, "%s", lease_id ? lease_id : l->lease_id);
    memcpy(n.tenant, tenant, CPN_PK_LEN);
    n.code = CPN_E_CAPACITY_LOST;
    snprintf(n.reason, sizeof n.reason, "forged");
    n.effective_ms = cpn_now_ms();
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(cli, CPN_MSG_NOTICE, &n, &seq), CPN_OK);
    cpn_msg_type_t t = h_await(cli, seq, NULL, NULL, WAIT_MS, a);
    ctl_client_destroy(&cli);
    return t;
}

static void test_forged_notice(void **state)
{
    (void)state;
    h_ans_t grant, a;
    char lease_id[CPN_NAME_MAX];
    s_case_start("t2");
    s_lease("job-2", &grant, lease_id);
    cpn_limits_t lim = h_big_limits();
    cpn_grant_t gr;
    cpn_env_t lenv;
    cpn_lease_t l;
    assert_int_equal(cpn_grant_decode(&grant.env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &l), CPN_OK);
    const uint8_t *acme = cpn_identity_pk(g.t.id), *beta = cpn_identity_pk(g.beta);
    /* Another peer than the lease's. */
    assert_int_equal(s_forge(g.p[P_DEAR].id, &l, gr.lease.ptr, gr.lease.len, acme, NULL, &a),
                     CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_UNTRUSTED);
    h_ans_free(&a);
    /* The lease's peer, but naming another tenant, or another lease. */
    assert_int_equal(s_forge(g.p[P_CHEAP].id, &l, gr.lease.ptr, gr.lease.len, beta, NULL, &a),
                     CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_CHAIN);
    h_ans_free(&a);
    assert_int_equal(
        s_forge(g.p[P_CHEAP].id, &l, gr.lease.ptr, gr.lease.len, acme, "Lanother-lease00", &a),
        CPN_MSG_ERROR);
    assert_int_equal(a.code, CPN_E_CHAIN);
    h_ans_free(&a);
    /* A NOTICE whose `lease` is no frame at all. */
    static const uint8_t garbage[] = {0x80, 0x01, 0x02};
    assert_int_equal(s_forge(g.p[P_CHEAP].id, &l, garbage, sizeof garbage, acme, NULL, &a),
                     CPN_MSG_ERROR);
    assert_true(a.code < 0);
    h_ans_free(&a);
    /* Counted; nothing changed. */
    assert_int_equal(s_refused("untrusted"), 1);
    assert_int_equal(s_refused("inconsistent"), 2);
    assert_int_equal(h_db_int(g.ledger, "SELECT COUNT(*) FROM notices", NULL), 0);
    assert_int_equal(h_db_int(g.ledger,
                              "SELECT COUNT(*) FROM leases WHERE lease_id = ?1 AND "
                              "state = 'active'",
                              lease_id),
                     1);
    assert_int_equal(h_db_int(g.p[P_CHEAP].db,
                              "SELECT COUNT(*) FROM leases WHERE lease_id = ?1 AND "
                              "state = 'active'",
                              lease_id),
                     1);
    h_ans_free(&grant);
    for (int i = 0; i < P__COUNT; i++)
        assert_true(h_stop(&g.p[i].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
}

static void test_broker_restart(void **state)
{
    (void)state;
    h_ans_t grant;
    char lease_id[CPN_NAME_MAX], out[8192];
    s_case_start("t3");
    s_lease("job-3", &grant, lease_id);
    h_ans_free(&grant);
    /* The notice is made while no broker listens: it waits in the peer's store. */
    s_kill_broker();
    assert_int_equal(s_drain(&g.p[P_CHEAP]), 0);
    assert_true(s_wait_db(g.p[P_CHEAP].db,
                          "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND acked = 0",
                          lease_id, 1));
    assert_true(s_start_broker());
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_non_null(strstr(out, lease_id));
    assert_true(s_wait_db(g.p[P_CHEAP].db,
                          "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND acked = 1",
                          lease_id, 1));
    /* Taken, then the broker dies: the ledger still has it for the tenant. */
    s_kill_broker();
    assert_true(s_start_broker());
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_non_null(strstr(out, lease_id));
    assert_int_equal(h_db_int(g.ledger, S_STATE_SQL, lease_id), 1);
    assert_int_equal(h_db_int(g.ledger, "SELECT COUNT(*) FROM notices", NULL), 1);
    for (int i = 0; i < P__COUNT; i++)
        assert_true(h_stop(&g.p[i].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
}

/* on_failure: rematch: the rest of the revoked lease goes to the other peer, once. */
static void test_rematch(void **state)
{
    (void)state;
    h_ans_t grant;
    char lease_id[CPN_NAME_MAX], out[8192];
    s_case_start("t4");
    s_lease_ex("job-r", true, &grant, lease_id);
    h_ans_free(&grant);
    assert_int_equal(s_drain(&g.p[P_CHEAP]), 0);
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_non_null(strstr(out, lease_id));
    /* The broker places the rest on the other peer; the notice names the new lease. */
    assert_true(s_wait_db(g.ledger,
                          "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND replaced_by != ''",
                          lease_id, 1));
    assert_true(s_wait_db(g.p[P_DEAR].db,
                          "SELECT COUNT(*) FROM leases WHERE request_id = ?1 AND state = 'active'",
                          "job-r", 1));
    assert_int_equal(h_db_int(g.ledger,
                              "SELECT COUNT(*) FROM leases WHERE request_id = ?1 AND "
                              "state = 'active'",
                              "job-r"),
                     1);
    assert_int_equal(h_db_int(g.ledger, S_STATE_SQL, lease_id), 1);
    /* The new lease: its GRANT verifies, its CLAIM carries the NOTICE of the old one, and it
     * ends no later than the old one would have. */
    size_t glen = 0;
    uint8_t *gf = s_db_blob(g.ledger,
                            "SELECT grant_frame FROM leases WHERE request_id = ?1 AND "
                            "state = 'active'",
                            "job-r", &glen);
    assert_non_null(gf);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(gf, glen, NULL, &why), CPN_OK);
    /* `cpnctl verify` of the new lease file names the one it replaces. */
    char file[400], bkey[400];
    h_path(file, sizeof file, g.dir, "job-r-new.lease");
    h_path(bkey, sizeof bkey, g.dir, "broker.pub");
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(gf, 1, glen, f), glen);
    assert_int_equal(fclose(f), 0);
    free(gf);
    const char *verify[] = {"cpnctl", "-B", bkey, "verify", file, NULL};
    assert_int_equal(h_run(g.bin, verify, out, sizeof out, RUN_MS), 0);
    assert_non_null(strstr(out, "replaces lease "));
    assert_non_null(strstr(out, lease_id));
    assert_true(h_db_int(g.ledger,
                         "SELECT COUNT(*) FROM leases n, leases o WHERE n.request_id = ?1 AND "
                         "n.state = 'active' AND o.state = 'revoked' AND o.request_id = ?1 AND "
                         "n.end_ms <= o.start_ms + 3600000 + 1000 AND n.start_ms >= o.end_ms",
                         "job-r") == 1);
    /* The same REQUEST sent again returns the replacement, not the revoked lease. */
    char again[CPN_NAME_MAX];
    s_lease_ex("job-r", true, &grant, again);
    h_ans_free(&grant);
    assert_string_not_equal(again, lease_id);
    assert_int_equal(
        h_db_int(g.p[P_DEAR].db, "SELECT COUNT(*) FROM leases WHERE lease_id = ?1", again), 1);
    /* The tenant sees both, and the notice names the replacement. */
    assert_int_equal(s_cpnctl("leases", NULL, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "revoked"));
    assert_non_null(strstr(out, "active"));
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_null(strstr(out, "\"replaced_by\":\"\""));
    /* Exactly one replacement: still one lease per peer for the request a while later (the
     * broker's ticks keep running), and the broker counts one. */
    usleep(1500 * 1000);
    assert_int_equal(
        h_db_int(g.p[P_DEAR].db, "SELECT COUNT(*) FROM leases WHERE request_id = ?1", "job-r"), 1);
    assert_int_equal(
        h_db_int(g.ledger, "SELECT COUNT(*) FROM leases WHERE request_id = ?1", "job-r"), 2);
    assert_int_equal(h_db_int(g.ledger, "SELECT COUNT(*) FROM intents", NULL), 0);
    for (int i = 0; i < P__COUNT; i++)
        assert_true(h_stop(&g.p[i].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
}

/* A driver's inventory says the capacity under a lease is lost: the lease is revoked with a
 * NOTICE, which the tenant sees, and the driver is asked to release what is left. */
static void test_driver_lost(void **state)
{
    (void)state;
    h_ans_t grant;
    char lease_id[CPN_NAME_MAX], out[8192], calls[400], needle[128];
    s_write_policy("t6");
    s_write_peer(&g.p[P_CHEAP], "t6", "1.0");
    s_add_driver(&g.p[P_CHEAP]);
    assert_true(s_start_broker());
    s_start_peer(&g.p[P_CHEAP]);
    assert_true(s_wait_offer("cheap", 2));
    s_lease("job-d", &grant, lease_id);
    h_ans_free(&grant);
    h_write(g.dir, "lost", lease_id);
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_non_null(strstr(out, lease_id));
    assert_non_null(strstr(out, "capacity lost (inventory)"));
    assert_int_equal(h_db_int(g.p[P_CHEAP].db, S_STATE_SQL, lease_id), 1);
    assert_int_equal(h_db_int(g.ledger, S_STATE_SQL, lease_id), 1);
    /* The driver tears down what is left of it. */
    h_path(calls, sizeof calls, g.dir, "calls.log");
    snprintf(needle, sizeof needle, "release %s", lease_id);
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    bool released = false;
    while (!released && cpn_mono_ms() < deadline) {
        FILE *f = fopen(calls, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            released |= strncmp(line, needle, strlen(needle)) == 0;
        if (f)
            fclose(f);
        if (!released)
            usleep(POLL_MS * 1000);
    }
    assert_true(released);
    assert_true(h_stop(&g.p[P_CHEAP].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
}

/* Two brokers: the tenant's (b1, the test's `broker`) and the peer's home (b2), members of each
 * other. The notice goes peer -> b2 -> b1 and reaches the tenant at b1. */
static void s_write_fed_policy(const h_policy_t *p)
{
    h_policy_t q = *p;
    q.hello_s = 3;
    q.peers = "cheap";
    q.operators = "acme";
    q.limits = "  claim_timeout: 2s\n";
    h_write_policy(g.dir, &q);
}

static void test_federated(void **state)
{
    (void)state;
    h_ans_t grant;
    char lease_id[CPN_NAME_MAX], out[8192], ledger2[400], cfg2[400], log2[400];
    int port = h_free_port(NULL);
    assert_true(port > 0);
    snprintf(g.endpoint2, sizeof g.endpoint2, "tcp://127.0.0.1:%d", port);
    h_path(g.ledger, sizeof g.ledger, g.dir, "t5-ledger.db");
    h_path(ledger2, sizeof ledger2, g.dir, "t5-ledger2.db");
    s_write_fed_policy(&(h_policy_t){.file = "policy.yaml",
                                     .name = "b1",
                                     .key = "broker.key",
                                     .listen = g.endpoint,
                                     .ledger = g.ledger,
                                     .members = {{"b2", g.endpoint2}}});
    s_write_fed_policy(&(h_policy_t){.file = "policy2.yaml",
                                     .name = "b2",
                                     .listen = g.endpoint2,
                                     .ledger = ledger2,
                                     .members = {{"b1", g.endpoint, "broker.pub"}}});
    h_path(cfg2, sizeof cfg2, g.dir, "policy2.yaml");
    h_path(log2, sizeof log2, g.dir, "broker2.log");
    s_write_peer_at(&g.p[P_CHEAP], "t5", "1.0", g.endpoint2, "b2");
    g.b2_pid = h_spawn(g.bin, "cpn-broker", cfg2, log2);
    assert_true(s_start_broker());
    s_start_peer(&g.p[P_CHEAP]);
    assert_true(s_wait_offer("cheap", 2)); /* at b1, relayed by b2 */
    s_lease("job-f", &grant, lease_id);
    h_ans_free(&grant);
    assert_int_equal(s_drain(&g.p[P_CHEAP]), 0);
    /* The tenant, at its own broker, hears of it. */
    assert_int_equal(s_cpnctl("watch", "--count", "1", out, sizeof out), 0);
    assert_non_null(strstr(out, lease_id));
    assert_non_null(strstr(out, "capacity-lost"));
    assert_int_equal(h_db_int(g.ledger, S_STATE_SQL, lease_id), 1);
    /* b2 carried it on and holds b1's receipt; the peer holds b2's. */
    assert_true(s_wait_db(ledger2, "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND todo = 0",
                          lease_id, 1));
    assert_true(s_wait_db(g.p[P_CHEAP].db,
                          "SELECT COUNT(*) FROM notices WHERE lease_id = ?1 AND acked = 1",
                          lease_id, 1));
    assert_true(h_stop(&g.p[P_CHEAP].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
    assert_true(h_stop(&g.b2_pid, STOP_MS));
}

/* ---- fixture ---- */

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "notice") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, g.t.name, &g.t.id);
    h_keygen(g.dir, "beta", &g.beta);
    h_keygen(g.dir, "b2", &g.b2);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    int port = h_free_port(NULL);
    if (port <= 0)
        return -1;
    snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
    g.clean = true;
    return 0;
}

static int s_case_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < P__COUNT; i++)
        g.clean &= h_stop(&g.p[i].pid, STOP_MS);
    g.clean &= h_stop(&g.broker_pid, STOP_MS);
    g.clean &= h_stop(&g.b2_pid, STOP_MS);
    ctl_client_destroy(&g.t.cli);
    return 0;
}

static int s_teardown(void **state)
{
    (void)s_case_teardown(state);
    cpn_identity_destroy(&g.t.id);
    cpn_identity_destroy(&g.beta);
    cpn_identity_destroy(&g.b2);
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    cpn_identity_destroy(&g.broker);
    h_dir_done(g.dir, g.clean);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_drain_notice, s_case_teardown),
        cmocka_unit_test_teardown(test_forged_notice, s_case_teardown),
        cmocka_unit_test_teardown(test_broker_restart, s_case_teardown),
        cmocka_unit_test_teardown(test_rematch, s_case_teardown),
        cmocka_unit_test_teardown(test_federated, s_case_teardown),
        cmocka_unit_test_teardown(test_driver_lost, s_case_teardown),
    };
    return cmocka_run_group_tests_name("notice", tests, s_setup, s_teardown);
}
