/* test_settle.c - two brokers settle a month: their statements, made by `cpnctl settle` from
 * their ledgers, reconcile to the thousandth; a dropped or altered record is named (issue 14).
 *
 * Brokers A and B, real processes on 127.0.0.1 (plain TCP), linked; real peers pa (home A,
 * region r-a) and pb (home B, region r-b) that meter every second. Tenant ta (at A) leases
 * on pb through B and on pa (local to A, no business of B's); tenant tb (at B) leases on pa
 * through A. All three leases are released; their final USAGE records reach both brokers
 * (METER along the route). Then, through the real cpnctl:
 *   - A's statement with B and B's with A list the same two leases, mirrored, and each
 *     reconciles with the other (exit 0); A owes B what ta's lease on pb cost, and B owes A
 *     what tb's lease on pa cost;
 *   - a statement file altered by one byte does not verify (exit 1);
 *   - B's ledger loses the last record of one lease and another record's amount is altered:
 *     B's new statement does not reconcile with A's (exit 1) and both leases are named.
 *
 * Every wait is bounded and waits for a positive event; every process started is stopped in
 * the group teardown. CPN_TEST_KEEP=1 keeps the temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zmq.h>

#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"

#define WAIT_MS 30000  /* one answer from a broker */
#define READY_MS 30000 /* daemons up, offers across the federation, records relayed (bound) */
#define STOP_MS 30000
#define POLL_MS 200
#define PORT_TRIES 5
#define HELLO_S 5
#define OUT_MAX 16384 /* what cpnctl prints */

enum { B_A, B_B, B__COUNT };
enum { P_A, P_B, P__COUNT };

static struct {
    char dir[256], bin[1024], period[16];
    struct {
        const char *name, *tenant;
        cpn_identity_t *id, *tid;
        int port;
        char endpoint[64];
        pid_t pid;
        ctl_client_t *cli; /* the tenant's, at this broker */
    } b[B__COUNT];
    struct {
        const char *name, *region;
        int home;
        cpn_identity_t *id;
        pid_t pid;
    } p[P__COUNT];
    void *zctx;
} g = {
    .b = {{.name = "a", .tenant = "ta"}, {.name = "b", .tenant = "tb"}},
    .p = {{.name = "pa", .region = "r-a", .home = B_A},
          {.name = "pb", .region = "r-b", .home = B_B}},
};

static void s_write_policy(int i)
{
    int m = 1 - i;
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .hello_s = HELLO_S,
                              .members = {{.name = g.b[m].name, .endpoint = g.b[m].endpoint}},
                              .operators = g.b[i].tenant,
                              .limits = "  claim_timeout: 10s\n"
                                        "  rate:\n"
                                        "    per_sender: 0/s\n",
                          });
}

static void s_write_peer(int i)
{
    char pkgs[256] = "", id[64];
    snprintf(id, sizeof id, "n-%s", g.p[i].region);
    h_package(pkgs, sizeof pkgs, id, 8, "3600.0", 8, "8GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){.name = g.p[i].name,
                                              .region = g.p[i].region,
                                              .refresh = "60s",
                                              .max_lease = "7d",
                                              .more = "usage_interval: 1s\n",
                                              .broker = g.b[g.p[i].home].endpoint,
                                              .broker_name = g.b[g.p[i].home].name,
                                              .packages = pkgs});
}

/* Run cpnctl with `args` (a shell word list) in the test directory; its stdout into out, its
 * exit status returned (-1 if it did not exit). */
static int s_cpnctl(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_cpnctl(char *out, size_t cap, const char *fmt, ...)
{
    char args[1024], cmd[2 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char bin[PATH_MAX];
    assert_non_null(realpath(g.bin, bin)); /* the command runs in the test directory */
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && '%s/cpnctl' %s 2>&1", g.dir, bin, args);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = 0;
    int st = pclose(p);
    fprintf(stderr, "# cpnctl %s -> %d\n%s", args, WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- asking the brokers ---- */

static bool s_wait_listed(int b, const char *pkg)
{
    return h_wait_listed(g.b[b].cli, pkg, WAIT_MS, READY_MS);
}

/* Broker b's tenant leases one unit in `region` for 100 s, then releases it a second or so
 * later. */
static void s_lease_and_release(int b, const char *id, const char *region)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 100;
    r.cores = 8;
    snprintf(r.regions.items[0], sizeof r.regions.items[0], "%s", region);
    r.regions.n = 1;
    uint64_t seq = 0;
    h_ans_t a;
    assert_int_equal(ctl_client_send(g.b[b].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    assert_int_equal(h_await(g.b[b].cli, seq, id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    cpn_limits_t lim = h_big_limits();
    cpn_env_t genv, lenv;
    cpn_grant_t gr;
    cpn_lease_t lease;
    assert_int_equal(cpn_env_open(a.frame, a.len, &lim, &genv), CPN_OK);
    assert_int_equal(cpn_msg_decode(&genv, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_msg_decode(&lenv, &lim, &lease), CPN_OK);
    cpn_release_t rl;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", lease.lease_id);
    memcpy(rl.peer, lenv.from, CPN_PK_LEN);
    h_ans_free(&a);
    usleep(1200 * 1000); /* a record or two before the final one (usage_interval 1 s) */
    assert_int_equal(ctl_client_send(g.b[b].cli, CPN_MSG_RELEASE, &rl, &seq), CPN_OK);
    assert_int_equal(h_await(g.b[b].cli, seq, id, NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    h_ans_free(&a);
}

/* How many final USAGE records broker b's ledger holds (read beside the running broker). */
static int s_finals(int b)
{
    char path[400], file[64];
    snprintf(file, sizeof file, "%s-ledger.db", g.b[b].name);
    h_path(path, sizeof path, g.dir, file);
    return (int)h_db_int(path, "SELECT COUNT(*) FROM usage WHERE final = 1", NULL);
}

static void s_exec(int b, const char *sql)
{
    char path[400], file[64];
    snprintf(file, sizeof file, "%s-ledger.db", g.b[b].name);
    h_path(path, sizeof path, g.dir, file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_true(sqlite3_changes(db) == 1);
    sqlite3_close(db);
}

/* ---- setup ---- */

static bool s_start_brokers(void)
{
    for (int i = 0; i < B__COUNT; i++) {
        g.b[i].port = h_free_port(g.zctx);
        if (g.b[i].port <= 0)
            return false;
        snprintf(g.b[i].endpoint, sizeof g.b[i].endpoint, "tcp://127.0.0.1:%d", g.b[i].port);
    }
    bool up = true;
    for (int i = 0; i < B__COUNT; i++) {
        s_write_policy(i);
        g.b[i].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[i].name);
        assert_int_equal(ctl_client_new(g.b[i].endpoint, g.b[i].tid, cpn_identity_pk(g.b[i].id),
                                        true, &g.b[i].cli),
                         CPN_OK);
    }
    for (int i = 0; i < B__COUNT && up; i++)
        up = h_wait_up(&g.b[i].pid, g.b[i].cli, READY_MS);
    for (int i = 0; i < B__COUNT && !up; i++) {
        h_stop(&g.b[i].pid, STOP_MS);
        ctl_client_destroy(&g.b[i].cli);
    }
    return up;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int i = 0; i < P__COUNT; i++) {
        clean = h_stop(&g.p[i].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.p[i].id);
    }
    for (int i = 0; i < B__COUNT; i++) {
        ctl_client_destroy(&g.b[i].cli);
        clean = h_stop(&g.b[i].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.b[i].id);
        cpn_identity_destroy(&g.b[i].tid);
    }
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()) ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "settle") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++) {
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
        h_keygen(g.dir, g.b[i].tenant, &g.b[i].tid);
    }
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    bool up = false;
    for (int attempt = 0; attempt < PORT_TRIES && !up; attempt++)
        up = s_start_brokers();
    if (!up)
        return -1;
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(i);
        g.p[i].pid = h_start(g.bin, g.dir, "cpn-peer", g.p[i].name);
    }
    return s_wait_listed(B_A, "n-r-b") && s_wait_listed(B_B, "n-r-a") ? 0 : -1;
}

/* ---- the case ---- */

/* The value after `key` in cpnctl's text ("ab owes b  1.234"), as text. */
static void s_after(const char *out, const char *key, char *val, size_t cap)
{
    const char *p = strstr(out, key);
    assert_non_null(p);
    p += strlen(key);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, " \n");
    assert_true(n > 0 && n < cap);
    memcpy(val, p, n);
    val[n] = 0;
}

static void test_two_brokers_settle(void **state)
{
    (void)state;
    s_lease_and_release(B_A, "ta-on-pb", "r-b");
    s_lease_and_release(B_A, "ta-on-pa", "r-a"); /* local to A: not B's business */
    s_lease_and_release(B_B, "tb-on-pa", "r-a");
    /* the final records reach both brokers: A holds all three leases', B two */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while ((s_finals(B_A) < 3 || s_finals(B_B) < 2) && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_finals(B_A), 3);
    assert_int_equal(s_finals(B_B), 2);
    time_t now = time(NULL);
    struct tm tm;
    assert_non_null(gmtime_r(&now, &tm));
    snprintf(g.period, sizeof g.period, "%04d-%02d", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100);

    char out[OUT_MAX], owe_a[32], due_a[32], owe_b[32], due_b[32];
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy a.yaml --with b --period %s "
                              "--out a.stmt",
                              g.period),
                     0);
    assert_non_null(strstr(out, ": 2 leases"));
    s_after(out, "a owes b", owe_a, sizeof owe_a);
    s_after(out, "b owes a", due_a, sizeof due_a);
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy b.yaml --with a --period %s "
                              "--out b.stmt",
                              g.period),
                     0);
    s_after(out, "b owes a", owe_b, sizeof owe_b);
    s_after(out, "a owes b", due_b, sizeof due_b);
    assert_string_equal(owe_a, due_b);
    assert_string_equal(due_a, owe_b);
    assert_string_not_equal(owe_a, "0.000"); /* ta's lease on pb ran about a second */
    assert_string_not_equal(due_a, "0.000");
    /* each reconciles with the other's */
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy a.yaml --with b --period %s "
                              "--theirs b.stmt",
                              g.period),
                     0);
    assert_non_null(strstr(out, "reconciled with b's statement"));
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy b.yaml --with a --period %s "
                              "--theirs a.stmt",
                              g.period),
                     0);
    /* B's file altered by one byte does not verify; A's file is not B's */
    char path[400];
    h_path(path, sizeof path, g.dir, "b.stmt");
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 40, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 40, SEEK_SET), 0);
    fputc(c ^ 1, f);
    fclose(f);
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy a.yaml --with b --period %s "
                              "--theirs b.stmt",
                              g.period),
                     1);
    assert_non_null(strstr(out, "INVALID"));
    /* garbage, a truncated length and an empty file: refused with a reason, no crash */
    static const uint8_t junk8[] = {0, 0, 0, 8, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'};
    char jpath[400];
    h_path(jpath, sizeof jpath, g.dir, "junk.stmt");
    FILE *jf = fopen(jpath, "wb");
    assert_non_null(jf);
    assert_int_equal(fwrite(junk8, 1, sizeof junk8, jf), sizeof junk8);
    fclose(jf);
    h_write(g.dir, "short.stmt", "\x01");
    h_write(g.dir, "empty.stmt", "");
    const char *junk[] = {"junk.stmt", "short.stmt", "empty.stmt"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(s_cpnctl(out, sizeof out,
                                  "settle --policy a.yaml --with b --period %s --theirs %s",
                                  g.period, junk[k]),
                         1);
        assert_non_null(strstr(out, "INVALID"));
    }
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy a.yaml --with b --period %s "
                              "--theirs a.stmt",
                              g.period),
                     1);
    /* B loses the final record of tb's lease on pa and one amount of ta's lease on pb is
     * altered in its ledger: its new statement does not reconcile, both leases named */
    s_exec(B_B, "DELETE FROM usage WHERE final = 1 AND tenant = (SELECT tenant FROM usage "
                "u WHERE u.final = 1 ORDER BY u.rowid DESC LIMIT 1) AND rowid = (SELECT "
                "MAX(rowid) FROM usage WHERE final = 1)");
    s_exec(B_B, "UPDATE usage SET amount = amount + 1 WHERE rowid = (SELECT MIN(rowid) FROM "
                "usage WHERE final = 1)");
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy b.yaml --with a --period %s "
                              "--out b2.stmt",
                              g.period),
                     0);
    assert_int_equal(s_cpnctl(out, sizeof out,
                              "settle --policy a.yaml --with b --period %s "
                              "--theirs b2.stmt",
                              g.period),
                     1);
    assert_non_null(strstr(out, "NOT reconciled"));
    assert_non_null(strstr(out, "2 leases differ"));
    assert_non_null(strstr(out, "amount"));
    /* the lease whose last record went: fewer records, or none left in the month */
    assert_true(strstr(out, "records ") || strstr(out, "only in ours"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_brokers_settle),
    };
    return cmocka_run_group_tests_name("settle", tests, s_setup, s_teardown);
}
