/* test_provision_broker.c - a real cpn-broker in front of a real cpn-peer whose package is
 * provisioned by a real exec driver (tests/prov_driver.py); the test is the tenant.
 *
 * Peer "dc" (1.0 per unit-hour, 2 units, driver) is the broker's first choice; peer "other"
 * (2.0, 2 units, no driver) is there to prove a request is not served elsewhere while dc may
 * still grant it. The broker's claim_timeout is 1 s, claim_tries 2.
 * - late LEASE: the driver blocks after making the resource; the tenant's REQUEST times out
 *   (NACK timeout); the same REQUEST again is not served by "other" (the intent at dc is
 *   open: NACK, never a GRANT) and gets no refusal from dc that would settle it; the driver
 *   is let go; the broker records the LEASE that arrives after its claim timed out, and the
 *   REQUEST sent again gets that lease as a GRANT whose chain verifies, its access details
 *   sealed to the tenant. Over both peers' databases the request has exactly one lease.
 * - driver failure: NACK provision-failed from dc settles its intent (the CLAIM was fenced),
 *   so the broker claims "other" (at once, or, when the driver was slower than claim_timeout
 *   and the tries went to dc, after the tenant's NACK provision-failed with the driver's
 *   reason, for the same request sent again), and the tenant gets a GRANT from it.
 *
 * Every wait is bounded and waits for a positive event. CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "clock.h"
#include "ctl_client.h"
#include "ctl_verify.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "seal.h"

#define WAIT_MS 15000  /* one answer from the broker (its claims may time out first) */
#define READY_MS 30000 /* a daemon up, offers in the book */
#define STOP_MS 30000
#define POLL_MS 50

typedef struct {
    const char *name;
    cpn_identity_t *id;
    pid_t pid;
    char db[400];
} peer_t;

typedef struct {
    char dir[256], bin[1024], policy[320], broker_log[320], drv[320];
    char endpoint[64];
    cpn_identity_t *broker;
    pid_t broker_pid;
    h_tenant_t t;
    peer_t dc, other;
} fx_t;

static fx_t g = {.t = {.name = "acme"}, .dc = {.name = "dc"}, .other = {.name = "other"}};

static void s_drv_touch(const char *name)
{
    h_write(g.drv, name, "");
}

static void s_drv_unlink(const char *name)
{
    char p[600];
    h_path(p, sizeof p, g.drv, name);
    assert_true(unlink(p) == 0 || errno == ENOENT);
}

static bool s_drv_wait(const char *name, uint64_t ms)
{
    char p[600];
    h_path(p, sizeof p, g.drv, name);
    uint64_t end = cpn_mono_ms() + ms;
    while (access(p, F_OK) != 0) {
        if (cpn_mono_ms() >= end)
            return false;
        usleep(POLL_MS * 1000);
    }
    return true;
}

static bool s_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static bool s_wait_log(const char *path, const char *needle, uint64_t ms)
{
    uint64_t end = cpn_mono_ms() + ms;
    while (!s_file_has(path, needle)) {
        if (cpn_mono_ms() >= end)
            return false;
        usleep(POLL_MS * 1000);
    }
    return true;
}

static int64_t s_leases(const peer_t *p, const char *id)
{
    return h_db_int(p->db, "SELECT COUNT(*) FROM leases WHERE request_id = ?1 AND state IN "
                           "('active', 'provisioning')", id);
}

/* ---- configuration and processes ---- */

static void s_write_files(void)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "prov-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .peers = "dc other",
                              .operators = "acme",
                              .limits = "  claim_timeout: 1s\n"
                                        "  claim_tries: 2\n",
                          });
    peer_t *ps[] = {&g.dc, &g.other};
    for (int i = 0; i < 2; i++) {
        char name[64], pkgs[256] = "";
        snprintf(name, sizeof name, "%s.db", ps[i]->name);
        h_path(ps[i]->db, sizeof ps[i]->db, g.dir, name);
        h_package(pkgs, sizeof pkgs, "cpu", 2, i == 0 ? "1.0" : "2.0", 8, "32GiB");
        h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                     .name = ps[i]->name,
                                     .refresh = "1s",
                                     .broker = g.endpoint,
                                     .broker_name = "broker",
                                     .packages = pkgs,
                                     .tail = i == 0 ? "provision:\n"
                                                      "  drivers:\n"
                                                      "    - name: local\n"
                                                      "      type: exec\n"
                                                      "      program: drv/driver.py\n"
                                                      "      timeout: 30s\n"
                                                      "      retries: 0\n"
                                                      "  packages:\n"
                                                      "    cpu: local\n"
                                                    : NULL,
                                 });
    }
}

static bool s_wait_offer(const char *name, long min_free)
{
    return h_wait_free(g.t.cli, name, min_free, LONG_MAX, WAIT_MS, READY_MS);
}

static cpn_msg_type_t s_submit(const char *id, h_ans_t *a)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.cores = 8;
    r.duration_s = 3600;
    assert_int_equal(cpn_hints_set(&r.access, "ssh_key", "ssh-ed25519 AAAAbroker acme@test"),
                     CPN_OK);
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.t.cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    return h_await(g.t.cli, seq, id, NULL, WAIT_MS, a);
}

/* The GRANT's chain verifies; its LEASE's signer and sealed access details. */
static void s_grant(const h_ans_t *a, uint8_t peer[CPN_PK_LEN], char *access, size_t cap)
{
    cpn_limits_t lim = h_big_limits();
    cpn_grant_t gr;
    cpn_env_t lenv;
    cpn_lease_t l;
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a->frame, a->len, NULL, &why), CPN_OK);
    assert_int_equal(cpn_grant_decode(&a->env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &l), CPN_OK);
    memcpy(peer, lenv.from, CPN_PK_LEN);
    size_t n = 0;
    access[0] = '\0';
    if (l.access.len > 0)
        assert_int_equal(cpn_seal_open(g.t.id, l.access.ptr, l.access.len, access, cap, &n),
                         CPN_OK);
}

/* ---- cases ---- */

static void test_late_lease_recorded(void **state)
{
    (void)state;
    h_ans_t a;
    char access[CPN_ACCESS_MAX + 1];
    uint8_t who[CPN_PK_LEN];
    s_drv_touch("block-grant-after");
    assert_int_equal(s_submit("R1", &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_TIMEOUT);
    h_ans_free(&a);
    assert_true(s_drv_wait("at-grant-after", WAIT_MS));
    /* Still provisioning at dc: not served elsewhere, and not refused by dc either. */
    cpn_msg_type_t t = s_submit("R1", &a);
    if (t != CPN_MSG_NACK || a.code == CPN_E_PROVISION_FAILED)
        fail_msg("R1 again while provisioning: %s %s (%s)", t ? cpn_msg_name(t) : "nothing",
                 t == CPN_MSG_NACK ? cpn_errname(a.code) : "", a.reason);
    h_ans_free(&a);
    assert_int_equal(s_leases(&g.other, "R1"), 0);
    /* The driver done: the LEASE arrives after the broker's claims timed out. */
    s_drv_unlink("block-grant-after");
    s_drv_touch("go-grant-after");
    assert_true(s_wait_log(g.broker_log, "late LEASE", WAIT_MS));
    assert_int_equal(s_submit("R1", &a), CPN_MSG_GRANT);
    s_grant(&a, who, access, sizeof access);
    h_ans_free(&a);
    assert_memory_equal(who, cpn_identity_pk(g.dc.id), CPN_PK_LEN);
    if (!strstr(access, "\"host\""))
        fail_msg("access details: \"%s\"", access);
    assert_int_equal(s_leases(&g.dc, "R1"), 1);
    assert_int_equal(s_leases(&g.other, "R1"), 0);
    s_drv_unlink("go-grant-after");
    s_drv_unlink("at-grant-after");
}

static void test_failure_goes_elsewhere(void **state)
{
    (void)state;
    h_ans_t a;
    char access[CPN_ACCESS_MAX + 1];
    uint8_t who[CPN_PK_LEN];
    assert_true(s_wait_offer("dc", 1));
    h_write(g.drv, "fail-grant", "rack 7 is on fire\n");
    /* A driver slower than claim_timeout spends the broker's tries on dc: the tenant then has
     * dc's NACK, with the driver's reason; sent again, dc refuses at once (the lease failed,
     * as final as its first answer) and the broker goes on to "other". */
    cpn_msg_type_t t = s_submit("R2", &a);
    if (t == CPN_MSG_NACK) {
        assert_int_equal(a.code, CPN_E_PROVISION_FAILED);
        if (!strstr(a.reason, "rack 7 is on fire"))
            fail_msg("NACK reason: %s", a.reason);
        assert_int_equal(s_leases(&g.other, "R2"), 0);
        h_ans_free(&a);
        t = s_submit("R2", &a);
    }
    assert_int_equal(t, CPN_MSG_GRANT);
    s_grant(&a, who, access, sizeof access);
    h_ans_free(&a);
    assert_memory_equal(who, cpn_identity_pk(g.other.id), CPN_PK_LEN);
    assert_string_equal(access, ""); /* no driver at "other": no access details */
    assert_int_equal(h_db_int(g.dc.db, "SELECT COUNT(*) FROM leases WHERE request_id = ?1 AND "
                                       "state = 'failed'", "R2"), 1);
    char log[400];
    h_path(log, sizeof log, g.dir, "broker.log");
    assert_true(s_file_has(log, "rack 7 is on fire"));
    s_drv_unlink("fail-grant");
}

/* ---- fixture ---- */

static int s_setup(void **state)
{
    (void)state;
    const char *src = getenv("CPN_SRCDIR");
    char cmd[2000];
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "provision-broker") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_path(g.drv, sizeof g.drv, g.dir, "drv");
    if (mkdir(g.drv, 0700) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "cp '%s/tests/prov_driver.py' '%s/driver.py'",
             src && src[0] ? src : "..", g.drv);
    if (system(cmd) != 0)
        return -1;
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, g.t.name, &g.t.id);
    h_keygen(g.dir, "dc", &g.dc.id);
    h_keygen(g.dir, "other", &g.other.id);
    int port = h_free_port(NULL);
    if (port <= 0)
        return -1;
    snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
    s_write_files();
    if (!h_start_broker(g.bin, g.policy, g.broker_log, &g.broker_pid, g.endpoint, g.t.id,
                        cpn_identity_pk(g.broker), true, &g.t.cli, READY_MS))
        return -1;
    g.dc.pid = h_start(g.bin, g.dir, "cpn-peer", "dc");
    g.other.pid = h_start(g.bin, g.dir, "cpn-peer", "other");
    return s_wait_offer("dc", 2) && s_wait_offer("other", 2) ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.dc.pid, STOP_MS);
    clean &= h_stop(&g.other.pid, STOP_MS);
    clean &= h_stop(&g.broker_pid, STOP_MS);
    ctl_client_destroy(&g.t.cli);
    s_drv_touch("go-grant-after");
    cpn_identity_destroy(&g.t.id);
    cpn_identity_destroy(&g.dc.id);
    cpn_identity_destroy(&g.other.id);
    cpn_identity_destroy(&g.broker);
    if (clean && !getenv("CPN_TEST_KEEP")) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g.drv);
        if (system(cmd) != 0)
            fprintf(stderr, "# cannot remove %s\n", g.drv);
    }
    h_dir_done(g.dir, clean);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_late_lease_recorded),
        cmocka_unit_test(test_failure_goes_elsewhere),
    };
    return cmocka_run_group_tests_name("provision_broker", tests, s_setup, s_teardown);
}
