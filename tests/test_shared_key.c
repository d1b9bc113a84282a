/* test_shared_key.c - many clients of one tenant key at once (issue 10, defect 3).
 *
 * An enterprise runs many clients under one identity. With a replay guard that wanted each
 * seq above the last one accepted, 8 parallel `cpnctl submit` with one key had about a
 * quarter of their requests refused `replay`: each cpnctl signs its REQUEST before its
 * connection is up, so a later-signed REQUEST often arrives first. Here a real cpn-broker and
 * cpn-peer run on 127.0.0.1 and 8 workers each run the real cpnctl 20 times in a row, all
 * with the same tenant key: every request ends with a lease (the peer has units for all),
 * none is refused as a replay, none goes unanswered, and the broker's `replay` refusals are
 * only the seq collisions cpnctl reported and sent again (1 in 4096 per pair of clients
 * signing in the same millisecond; usually none). Then: a RENEW the peer refuses `replay`
 * (its lease holds a higher seq from another client of the key) is sent again by cpnctl once,
 * not more.
 *
 * Every wait is bounded; every process started is stopped in the teardown (and gets SIGKILL
 * from the kernel should this test die first). CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "ctl_client.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"

#define WORKERS 8
#define EACH 20
#define UNITS 200        /* more than WORKERS * EACH: every request can get a lease */
#define READY_MS 30000   /* a daemon up, the peer's offer in the book (bound, not a timing) */
#define STOP_MS 30000    /* SIGTERM to exit, then SIGKILL */
#define RUN_MS 240000    /* all workers done (bound; about 5-20 s on an idle machine) */
#define CTL_TIMEOUT "30" /* cpnctl -t: seconds for one answer */
#define PORT_TRIES 5
#define TEST_BOUND_S 420

typedef struct {
    char dir[256], policy[320], broker_log[320], peer_cfg[320], peer_log[320], bin[1024];
    char endpoint[64];
    cpn_identity_t *broker, *peer;
    pid_t broker_pid, peer_pid;
    pid_t worker[WORKERS];
    h_tenant_t ops; /* the operator: reads the broker's counters */
    cpn_identity_t *shared;
} fx_t;

static fx_t g = {.ops = {.name = "ops"}};

static void s_write_policy(void)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "shared-key-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .peers = "dc-one",
                              .operators = "ops",
                              .tenants = "shared",
                              .limits = "  claim_timeout: 10s\n",
                          });
}

static void s_write_peer(void)
{
    char pkgs[256] = "";
    h_package(pkgs, sizeof pkgs, "cpu", UNITS, "1.0", 4, "16GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = "dc-one",
                                 .refresh = "1s",
                                 .max_lease = "7d",
                                 .broker = g.endpoint,
                                 .broker_name = "broker",
                                 .packages = pkgs,
                             });
}

/* One request file per submit: ids shared-W-I, one unit for an hour. */
static void s_write_requests(void)
{
    for (int w = 0; w < WORKERS; w++)
        for (int i = 0; i < EACH; i++) {
            char name[64], text[256];
            snprintf(name, sizeof name, "req-%d-%d.yaml", w, i);
            snprintf(text, sizeof text, "id: shared-%d-%d\nunits: 1\nduration: 1h\ncores: 2\n", w,
                     i);
            h_write(g.dir, name, text);
        }
}

/* The free units of dc-one's `cpu` in the broker's offers; -1 if not listed. */
static long s_offer_free(void)
{
    h_ans_t a;
    long fr = -1;
    if (h_query(g.ops.cli, "offers", 5000, &a) != CPN_MSG_STATUS)
        return -2;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "name"), "dc-one") && h_str_is(h_get(row, "package"), "cpu"))
            fr = (long)h_u64(h_get(row, "free"));
    }
    h_ans_free(&a);
    return fr;
}

/* status: refused.<code> */
static uint64_t s_refused(const char *code)
{
    h_ans_t a;
    assert_int_equal(h_query(g.ops.cli, "status", 5000, &a), CPN_MSG_STATUS);
    uint64_t n = h_u64(h_get(h_get(&a.obj, "refused"), code));
    h_ans_free(&a);
    return n;
}

/* Run cpnctl with the shared key and `cmd`, `arg1`, `arg2` (NULL ends), its stdout and stderr
 * appended to `out` and `err`; its exit status (-1 if it did not exit normally). */
static int s_cpnctl(const char *out, const char *err, const char *cmd, const char *arg1,
                    const char *arg2)
{
    char cpnctl[1100], key[400], bkey[400];
    snprintf(cpnctl, sizeof cpnctl, "%s/cpnctl", g.bin);
    h_path(key, sizeof key, g.dir, "shared.key");
    h_path(bkey, sizeof bkey, g.dir, "broker.pub");
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fo = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fo < 0 || fe < 0)
            _exit(2);
        dup2(fo, 1);
        dup2(fe, 2);
        close(fo);
        close(fe);
        execl(cpnctl, "cpnctl", "--json", "-b", g.endpoint, "-B", bkey, "--plain", "-k", key, "-o",
              g.dir, "-t", CTL_TIMEOUT, cmd, arg1, arg2, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* One worker: run cpnctl submit EACH times in a row, its output appended to out-W / err-W.
 * Exits with the number of runs that ended neither 0 (lease) nor 1 (refused): no answer (3),
 * or a local error (2). */
static void s_worker(int w)
{
    char out[400], err[400], name[64];
    snprintf(name, sizeof name, "out-%d", w);
    h_path(out, sizeof out, g.dir, name);
    snprintf(name, sizeof name, "err-%d", w);
    h_path(err, sizeof err, g.dir, name);
    int bad = 0;
    for (int i = 0; i < EACH; i++) {
        char req[400];
        snprintf(name, sizeof name, "req-%d-%d.yaml", w, i);
        h_path(req, sizeof req, g.dir, name);
        int rc = s_cpnctl(out, err, "submit", req, NULL);
        if (rc != 0 && rc != 1)
            bad++;
    }
    _exit(bad);
}

/* How many lines of the file `name` in the directory contain `needle` (0 if none). */
static int s_count_in(const char *name, const char *needle)
{
    char path[400], line[2048];
    int count = 0;
    h_path(path, sizeof path, g.dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            count++;
    fclose(f);
    return count;
}

/* The same over the files `prefix`-0 .. -(WORKERS-1). */
static int s_count_lines(const char *prefix, const char *needle)
{
    int count = 0;
    for (int w = 0; w < WORKERS; w++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%d", prefix, w);
        count += s_count_in(name, needle);
    }
    return count;
}

static void test_shared_key_concurrent_clients(void **state)
{
    (void)state;
    uint64_t replay0 = s_refused("replay");
    uint64_t t0 = cpn_mono_ms();
    for (int w = 0; w < WORKERS; w++) {
        g.worker[w] = fork();
        assert_true(g.worker[w] >= 0);
        if (g.worker[w] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            s_worker(w);
        }
    }
    int bad = 0, done = 0;
    uint64_t deadline = t0 + RUN_MS;
    while (done < WORKERS && cpn_mono_ms() < deadline) {
        for (int w = 0; w < WORKERS; w++) {
            int status = 0;
            if (g.worker[w] > 0 && waitpid(g.worker[w], &status, WNOHANG) == g.worker[w]) {
                g.worker[w] = 0;
                done++;
                bad += WIFEXITED(status) ? WEXITSTATUS(status) : EACH;
            }
        }
        usleep(50 * 1000);
    }
    uint64_t ms = cpn_mono_ms() - t0;
    assert_int_equal(done, WORKERS); /* else the teardown kills what is left */

    int leases = s_count_lines("out", "\"result\": \"lease\"");
    int refused = s_count_lines("out", "\"result\": \"refused\"");
    int replays = s_count_lines("out", "\"code\": \"replay\"");
    int resent = s_count_lines("err", "refused as a replay; sending it again");
    uint64_t replay_refusals = s_refused("replay") - replay0;
    fprintf(stderr,
            "# %d x %d submits with one key in %" PRIu64 " ms: %d leases, %d refused (%d as "
            "replay), %d unanswered; %d sent again after a seq collision, broker counted %" PRIu64
            " replay refusals\n",
            WORKERS, EACH, ms, leases, refused, replays, bad, resent, replay_refusals);
    assert_int_equal(replays, 0);
    assert_int_equal(bad, 0);
    /* units for all: every request got its lease (no legitimate NACK applies here) */
    assert_int_equal(leases, WORKERS * EACH);
    assert_int_equal(refused, 0);
    /* the broker refused only what cpnctl sent again, and that is rare */
    assert_int_equal(replay_refusals, (uint64_t)resent);
    assert_true(resent <= 2);
    /* and the peer granted exactly that many units */
    uint64_t until = cpn_mono_ms() + READY_MS;
    long fr;
    while ((fr = s_offer_free()) != UNITS - WORKERS * EACH && cpn_mono_ms() < until)
        usleep(100 * 1000);
    assert_int_equal(fr, UNITS - WORKERS * EACH);
}

/* A RENEW the peer refuses as a replay reaches cpnctl as NACK `replay`; cpnctl sends it once
 * more under a fresh seq, and no more. Here another client of the key renewed the lease under
 * a seq 3 s ahead (its clock runs fast), so the peer's lease row holds that seq: cpnctl's
 * seqs stay below it for 3 s and both tries are refused; after that a renewal goes through. */
static void test_renew_replay_retried_once(void **state)
{
    (void)state;
    char lease_file[400], out[400], err[400];
    h_path(lease_file, sizeof lease_file, g.dir, "shared-0-0.lease");
    h_path(out, sizeof out, g.dir, "renew.out");
    h_path(err, sizeof err, g.dir, "renew.err");
    /* the lease id and peer from the lease file cpnctl saved */
    FILE *f = fopen(lease_file, "rb");
    assert_non_null(f);
    static uint8_t buf[65536];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cpn_limits_t lim = h_big_limits();
    cpn_env_t genv, lenv;
    cpn_grant_t grant;
    cpn_lease_t lease;
    memset(&grant, 0, sizeof grant);
    memset(&lease, 0, sizeof lease);
    assert_int_equal(cpn_env_parse(buf, len, &lim, &genv), CPN_OK);
    assert_int_equal(cpn_grant_decode(&genv, &lim, &grant), CPN_OK);
    assert_int_equal(cpn_env_parse(grant.lease.ptr, grant.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &lease), CPN_OK);

    /* the fast-clock client: RENEW with ts and seq 3 s ahead (inside the skew window) */
    h_tenant_t fast = {.name = "shared", .id = g.shared};
    h_tenants_open(&fast, 1, g.endpoint, cpn_identity_pk(g.broker), true);
    cpn_renew_t rn;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", lease.lease_id);
    memcpy(rn.peer, lenv.from, CPN_PK_LEN);
    rn.extend_s = 60;
    uint64_t ts = cpn_now_ms() + 3000, seq = ts << 12;
    uint8_t *frame = NULL;
    size_t flen = 0;
    assert_int_equal(cpn_msg_build(g.shared, CPN_MSG_RENEW, seq, ts, &rn, &frame, &flen), CPN_OK);
    assert_int_equal(ctl_client_send_frame(fast.cli, frame, flen), CPN_OK);
    free(frame);
    h_ans_t a;
    assert_int_equal(h_await(fast.cli, seq, "shared-0-0", NULL, 10000, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
    h_tenants_close(&fast, 1);

    /* cpnctl renew: refused `replay`, sent again once, refused again: exit 1 */
    assert_int_equal(s_cpnctl(out, err, "renew", lease_file, "1m"), 1);
    assert_int_equal(s_count_in("renew.err", "refused as a replay; sending it again"), 1);
    assert_int_equal(s_count_in("renew.out", "\"code\": \"replay\""), 1);
    /* once its clock has passed the other client's seq, cpnctl renews */
    while (cpn_now_ms() <= ts + 5)
        usleep(50 * 1000);
    assert_int_equal(s_cpnctl(out, err, "renew", lease_file, "1m"), 0);
    assert_int_equal(s_count_in("renew.out", "\"result\": \"lease\""), 1);
    assert_int_equal(s_count_in("renew.err", "refused as a replay; sending it again"), 1);
}

/* ---- fixture ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int w = 0; w < WORKERS; w++)
        if (g.worker[w] > 0) {
            kill(g.worker[w], SIGKILL);
            waitpid(g.worker[w], NULL, 0);
            g.worker[w] = 0;
        }
    if (!h_stop(&g.peer_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-peer did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    if (!h_stop(&g.broker_pid, STOP_MS)) {
        fprintf(stderr, "# cpn-broker did not exit cleanly on SIGTERM\n");
        clean = false;
    }
    h_tenants_close(&g.ops, 1);
    cpn_identity_destroy(&g.ops.id);
    cpn_identity_destroy(&g.shared);
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
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "shared-key") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_path(g.peer_cfg, sizeof g.peer_cfg, g.dir, "dc-one.yaml");
    h_path(g.peer_log, sizeof g.peer_log, g.dir, "dc-one.log");
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, "dc-one", &g.peer);
    h_keygen(g.dir, "ops", &g.ops.id);
    h_keygen(g.dir, "shared", &g.shared);
    s_write_requests();
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++) {
        int port = h_free_port(NULL);
        if (port <= 0)
            continue;
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
        s_write_policy();
        h_tenants_open(&g.ops, 1, g.endpoint, cpn_identity_pk(g.broker), true);
        g.broker_pid = h_spawn(g.bin, "cpn-broker", g.policy, g.broker_log);
        up = h_wait_up(&g.broker_pid, g.ops.cli, READY_MS);
        if (!up) { /* most likely someone took the port: another one */
            h_stop(&g.broker_pid, STOP_MS);
            h_tenants_close(&g.ops, 1);
        }
    }
    if (!up) {
        fprintf(stderr, "# cpn-broker did not come up (log: %s)\n", g.broker_log);
        return -1;
    }
    s_write_peer();
    g.peer_pid = h_spawn(g.bin, "cpn-peer", g.peer_cfg, g.peer_log);
    uint64_t until = cpn_mono_ms() + READY_MS;
    while (s_offer_free() != UNITS && cpn_mono_ms() < until)
        usleep(100 * 1000);
    if (s_offer_free() != UNITS) {
        fprintf(stderr, "# the peer's offer did not reach the broker (log: %s)\n", g.peer_log);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_key_concurrent_clients),
        cmocka_unit_test(test_renew_replay_retried_once),
    };
    alarm(TEST_BOUND_S); /* a hard bound on the whole file, whatever hangs */
    return cmocka_run_group_tests_name("shared_key", tests, s_setup, s_teardown);
}
