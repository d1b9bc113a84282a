/* test_exactly_once.c - a request id ends with at most one lease, through crashes, stalls and
 * a full ledger disk (issue 10, defects 1, 2 and 4; docs/PROTOCOL.md §13).
 *
 * Real cpn-broker and cpn-peer processes on 127.0.0.1 (tests/harness.c); the test is the
 * tenant. Each case writes its own policy, peer configurations and database files (named
 * with the case's prefix) in one temporary directory, starts what it needs and stops it:
 * - stalled peer: one broker (claim_timeout 1 s, claim_tries 1), two peers of one unit each;
 *   SIGSTOP the cheaper; submit R (NACK timeout); kill -9 and restart the broker; SIGCONT the
 *   peer: it refuses the CLAIM still in its socket (claim-expired, its deadline passed);
 *   submit R again: the lease comes from the peer the intent names, and over both peers'
 *   databases R holds exactly one lease.
 * - lost LEASE: the peer grants while the broker is stopped, the broker is killed before it
 *   reads the LEASE; after the restart, R again returns the peer's lease (a RESEND, whose
 *   chain verifies), not a refusal as a replay.
 * - peer gone: a CLAIM to a stopped peer times out; the peer is killed; R sent again is NACKed
 *   (timeout or unreachable), not served by the other peer that has a free unit; once the
 *   first peer is back, R gets its lease there.
 * - full ledger disk: the ledger on a small tmpfs that the test fills: requests get NACK
 *   `database` and no peer grants anything; with the filler deleted, the same request ids
 *   get leases that the ledger file records.
 *
 * - RESEND refused: one that holds another peer's LEASE, a frame that is not a LEASE, or a
 *   LEASE whose signature fails is answered ERROR with that code, counted, and records nothing.
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
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
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

#define WAIT_MS 8000   /* one answer from the broker (a CLAIM may time out first) */
#define READY_MS 30000 /* a daemon up, offers in the book (a bound, not a timing) */
#define STOP_MS 30000
#define POLL_MS 100
#define PORT_TRIES 5

enum { P_CHEAP, P_DEAR, P__COUNT };

typedef struct {
    const char *name;
    cpn_identity_t *id;
    pid_t pid;
    char db[400];
} peer_t;

typedef struct {
    char dir[256], bin[1024], policy[320], broker_log[320], ledger[400], mnt[320];
    bool mounted;
    bool clean; /* every daemon exited cleanly on SIGTERM: the directory may go */
    char endpoint[64];
    int port;
    cpn_identity_t *broker;
    pid_t broker_pid;
    h_tenant_t t;
    peer_t p[P__COUNT];
} fx_t;

static fx_t g = {
    .t = {.name = "acme"},
    .p = {{.name = "cheap"}, {.name = "dear"}},
};

/* ---- files ---- */

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

/* Wait until a file (a daemon's log) contains one of two strings; which one (1, 2) or 0. */
static int s_wait_log(const char *path, const char *a, const char *b, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (s_file_has(path, a))
            return 1;
        if (b && s_file_has(path, b))
            return 2;
        usleep(POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return 0;
}

/* Leases a peer's database holds for request `id`. */
static int64_t s_peer_leases(const peer_t *p, const char *id)
{
    return h_db_int(p->db, "SELECT COUNT(*) FROM leases WHERE request_id = ?1", id);
}

/* The broker's policy for a case: its ledger at `ledger`, the two peers trusted. */
static void s_write_policy(const char *ledger, const char *claim_timeout)
{
    char limits[128];
    snprintf(limits, sizeof limits, "  claim_timeout: %s\n  claim_tries: 1\n", claim_timeout);
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "eo-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = ledger,
                              .peers = "cheap dear",
                              .operators = "acme",
                              .limits = limits,
                          });
    snprintf(g.ledger, sizeof g.ledger, "%s", ledger);
}

/* A peer selling `count` units of package `cpu` at `price`, its database `tag`-name.db. */
static void s_write_peer(peer_t *p, const char *tag, const char *price, int count)
{
    char name[128], pkgs[256] = "";
    snprintf(name, sizeof name, "%s-%s.db", tag, p->name);
    h_path(p->db, sizeof p->db, g.dir, name);
    h_package(pkgs, sizeof pkgs, "cpu", (unsigned)count, price, 8, "32GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = p->name,
                                 .database = p->db,
                                 .refresh = "1s",
                                 .max_lease = "7d",
                                 .broker = g.endpoint,
                                 .broker_name = "broker",
                                 .packages = pkgs,
                             });
}

/* ---- processes ---- */

/* Bytes waiting unread in the receive queue of a TCP socket of process `pid` connected to
 * port `port` on 127.0.0.1 (/proc/PID/fd and /proc/net/tcp): the proof that a frame sent to a
 * stopped process has reached it. */
static long s_rx_queued(pid_t pid, int port)
{
    char path[64], link[64];
    unsigned long inodes[64];
    size_t n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        char fd_path[320];
        snprintf(fd_path, sizeof fd_path, "%s/%s", path, e->d_name);
        ssize_t k = readlink(fd_path, link, sizeof link - 1);
        if (k <= 0)
            continue;
        link[k] = 0;
        unsigned long ino = 0;
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            inodes[n++] = ino;
    }
    closedir(d);
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    long total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned rport = 0;
        unsigned long txq = 0, rxq = 0, ino = 0;
        /* sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
         * inode */
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %*x %lx:%lx %*x:%*x %*x %*u %*u %lu", &rport, &txq,
                   &rxq, &ino) != 4)
            continue;
        for (size_t i = 0; i < n; i++)
            if (inodes[i] == ino && (int)rport == port)
                total += (long)rxq;
    }
    fclose(f);
    return total;
}

static void s_signal(pid_t pid, int sig)
{
    assert_true(pid > 0); /* never 0 or -1: a whole group */
    assert_int_equal(kill(pid, sig), 0);
}

static void s_start_peer(peer_t *p)
{
    char cfg[400], log[400], name[128];
    snprintf(name, sizeof name, "%s.yaml", p->name);
    h_path(cfg, sizeof cfg, g.dir, name);
    snprintf(name, sizeof name, "%s.log", p->name);
    h_path(log, sizeof log, g.dir, name);
    p->pid = h_spawn(g.bin, "cpn-peer", cfg, log);
}

static void s_peer_log(const peer_t *p, char *out, size_t cap)
{
    char name[128];
    snprintf(name, sizeof name, "%s.log", p->name);
    h_path(out, cap, g.dir, name);
}

/* Start the broker (and connect the tenant) and wait until it answers. */
static bool s_start_broker(void)
{
    return h_start_broker(g.bin, g.policy, g.broker_log, &g.broker_pid, g.endpoint, g.t.id,
                          cpn_identity_pk(g.broker), true, &g.t.cli, READY_MS);
}

/* kill -9 (the broker may be stopped: SIGKILL works on a stopped process), reap. */
static void s_kill_broker(void)
{
    s_signal(g.broker_pid, SIGKILL);
    uint64_t deadline = cpn_mono_ms() + STOP_MS;
    while (h_alive(&g.broker_pid) && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    assert_false(h_alive(&g.broker_pid));
    g.broker_pid = 0;
    ctl_client_destroy(&g.t.cli);
}

static void s_stop_all(void)
{
    for (int i = 0; i < P__COUNT; i++)
        assert_true(h_stop(&g.p[i].pid, STOP_MS));
    assert_true(h_stop(&g.broker_pid, STOP_MS));
    ctl_client_destroy(&g.t.cli);
}

/* Wait until the broker lists the peer with at least `min_free` units free. */
static bool s_wait_offer(const char *name, long min_free)
{
    return h_wait_free(g.t.cli, name, min_free, LONG_MAX, WAIT_MS, READY_MS);
}

static uint64_t s_status_u64(const char *key)
{
    h_ans_t a;
    assert_int_equal(h_query(g.t.cli, "status", WAIT_MS, &a), CPN_MSG_STATUS);
    uint64_t n = h_u64(h_get(&a.obj, key));
    h_ans_free(&a);
    return n;
}

static cpn_request_t s_req(const char *id)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.cores = 8;
    r.duration_s = 3600;
    return r;
}

static uint64_t s_send(const char *id)
{
    cpn_request_t r = s_req(id);
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.t.cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    return seq;
}

static cpn_msg_type_t s_submit(const char *id, h_ans_t *a)
{
    uint64_t seq = s_send(id);
    return h_await(g.t.cli, seq, id, NULL, WAIT_MS, a);
}

/* Submit until the answer is not NACK in-doubt (bounded): what a tenant told "send it again
 * after T" does. */
static cpn_msg_type_t s_submit_settled(const char *id, h_ans_t *a)
{
    uint64_t deadline = cpn_mono_ms() + 90000;
    cpn_msg_type_t t;
    for (;;) {
        t = s_submit(id, a);
        if (!(t == CPN_MSG_NACK && a->code == CPN_E_IN_DOUBT) || cpn_mono_ms() >= deadline)
            return t;
        fprintf(stderr, "# %s: in doubt (%s); again in 1 s\n", id, a->reason);
        h_ans_free(a);
        sleep(1);
    }
}

/* The LEASE inside a GRANT: its lease id and signer. */
static void s_grant_lease(const h_ans_t *a, char lease_id[CPN_NAME_MAX], uint8_t peer[CPN_PK_LEN])
{
    cpn_limits_t lim = h_big_limits();
    cpn_grant_t gr;
    cpn_env_t lenv;
    cpn_lease_t l;
    assert_int_equal(cpn_grant_decode(&a->env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(lenv.type, CPN_MSG_LEASE);
    assert_int_equal(cpn_lease_decode(&lenv, &lim, &l), CPN_OK);
    snprintf(lease_id, CPN_NAME_MAX, "%s", l.lease_id);
    memcpy(peer, lenv.from, CPN_PK_LEN);
    const char *why = NULL;
    assert_int_equal(ctl_verify_chain(a->frame, a->len, NULL, &why), CPN_OK);
}

/* A case's start: policy, broker, peers; both peers' offers in the book. */
static void s_case_start(const char *tag, const char *ledger, const char *claim_timeout, int count)
{
    s_write_policy(ledger, claim_timeout);
    s_write_peer(&g.p[P_CHEAP], tag, "1.0", count);
    s_write_peer(&g.p[P_DEAR], tag, "2.0", count);
    assert_true(s_start_broker());
    for (int i = 0; i < P__COUNT; i++)
        s_start_peer(&g.p[i]);
    assert_true(s_wait_offer("cheap", count));
    assert_true(s_wait_offer("dear", count));
}

/* ---- cases ---- */

/* Defect 1. The CLAIM to the stalled peer stays in its socket while the broker gives up and
 * dies; when the peer wakes it must not grant it (its deadline passed), and the request sent
 * again must go to that peer, not to the other one. */
static void test_stalled_peer_one_lease(void **state)
{
    (void)state;
    char ledger[400], log[400];
    h_ans_t a;
    h_path(ledger, sizeof ledger, g.dir, "t1-ledger.db");
    s_case_start("t1", ledger, "1s", 1);
    s_peer_log(&g.p[P_CHEAP], log, sizeof log);

    s_signal(g.p[P_CHEAP].pid, SIGSTOP);
    assert_int_equal(s_submit("R1", &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_TIMEOUT);
    h_ans_free(&a);
    /* The intent of that CLAIM is on disk: it was committed before the CLAIM left. */
    assert_int_equal(h_db_int(ledger, "SELECT COUNT(*) FROM intents WHERE request_id = ?1", "R1"),
                     1);

    s_kill_broker();
    assert_true(s_start_broker());
    s_signal(g.p[P_CHEAP].pid, SIGCONT);
    /* The peer handles the CLAIM that waited in its socket: past its deadline, refused. */
    assert_int_equal(s_wait_log(log, "claim-expired", "granted L", READY_MS), 1);
    assert_true(s_wait_offer("cheap", 1));
    assert_true(s_wait_offer("dear", 1));

    /* R1 again: claimed from the peer the intent names (it grants now), never elsewhere. */
    assert_int_equal(s_submit_settled("R1", &a), CPN_MSG_GRANT);
    char lid[CPN_NAME_MAX];
    uint8_t who[CPN_PK_LEN];
    s_grant_lease(&a, lid, who);
    assert_memory_equal(who, cpn_identity_pk(g.p[P_CHEAP].id), CPN_PK_LEN);
    uint8_t *first = malloc(a.len);
    size_t first_len = a.len;
    assert_non_null(first);
    memcpy(first, a.frame, a.len);
    h_ans_free(&a);
    /* Settled: no intent left, and the same GRANT once more. */
    assert_int_equal(h_db_int(ledger, "SELECT COUNT(*) FROM intents WHERE request_id = ?1", "R1"),
                     0);
    assert_int_equal(s_submit("R1", &a), CPN_MSG_GRANT);
    assert_int_equal(a.len, first_len);
    assert_memory_equal(a.frame, first, first_len);
    h_ans_free(&a);
    free(first);

    s_stop_all();
    assert_int_equal(s_peer_leases(&g.p[P_CHEAP], "R1"), 1);
    assert_int_equal(s_peer_leases(&g.p[P_DEAR], "R1"), 0);
}

/* Defect 2 (and the first half of defect 1: the peer granted, the broker never heard). The
 * peer grants while the broker is stopped; the broker dies with the LEASE unread. */
static void test_lost_lease_resent(void **state)
{
    (void)state;
    char ledger[400];
    h_ans_t a;
    h_path(ledger, sizeof ledger, g.dir, "t2-ledger.db");
    s_case_start("t2", ledger, "20s", 1);

    s_signal(g.p[P_CHEAP].pid, SIGSTOP);
    long before = s_rx_queued(g.p[P_CHEAP].pid, g.port);
    assert_true(before >= 0);
    (void)s_send("R2");
    /* Wait until the CLAIM is in the stopped peer's socket, then freeze the broker. */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while (s_rx_queued(g.p[P_CHEAP].pid, g.port) <= before && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_true(s_rx_queued(g.p[P_CHEAP].pid, g.port) > before);
    s_signal(g.broker_pid, SIGSTOP);
    s_signal(g.p[P_CHEAP].pid, SIGCONT);
    deadline = cpn_mono_ms() + READY_MS;
    while (s_peer_leases(&g.p[P_CHEAP], "R2") != 1 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(s_peer_leases(&g.p[P_CHEAP], "R2"), 1);
    s_kill_broker();

    assert_true(s_start_broker());
    assert_true(s_wait_offer("cheap", 0));
    assert_true(s_wait_offer("dear", 1));
    /* The peer's seq has moved on (HELLO, ADs): its stored LEASE arrives in a RESEND. */
    assert_int_equal(s_submit_settled("R2", &a), CPN_MSG_GRANT);
    char lid[CPN_NAME_MAX];
    uint8_t who[CPN_PK_LEN];
    s_grant_lease(&a, lid, who);
    assert_memory_equal(who, cpn_identity_pk(g.p[P_CHEAP].id), CPN_PK_LEN);
    h_ans_free(&a);
    assert_int_equal(h_db_int(ledger, "SELECT COUNT(*) FROM leases WHERE request_id = ?1", "R2"),
                     1);
    s_stop_all();
    assert_int_equal(s_peer_leases(&g.p[P_CHEAP], "R2"), 1);
    assert_int_equal(s_peer_leases(&g.p[P_DEAR], "R2"), 0);
}

/* Defect 1, the path that made two leases: the peer a CLAIM may have reached is gone when the
 * request comes again. It must not be served by the other peer; once the first peer is back,
 * it is served there. */
static void test_in_doubt_peer_gone(void **state)
{
    (void)state;
    char ledger[400];
    h_ans_t a;
    h_path(ledger, sizeof ledger, g.dir, "t4-ledger.db");
    s_case_start("t4", ledger, "1s", 1);

    s_signal(g.p[P_CHEAP].pid, SIGSTOP);
    assert_int_equal(s_submit("R4", &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_TIMEOUT);
    h_ans_free(&a);
    s_signal(g.p[P_CHEAP].pid, SIGKILL); /* the CLAIM dies unread with it */
    uint64_t deadline = cpn_mono_ms() + STOP_MS;
    while (h_alive(&g.p[P_CHEAP].pid) && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    g.p[P_CHEAP].pid = 0;

    /* Its offer leaves the book (ttl); dear has the free unit; the request must not go there. */
    deadline = cpn_mono_ms() + READY_MS;
    while (h_offer_free(g.t.cli, "cheap", WAIT_MS) != -1 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    assert_int_equal(h_offer_free(g.t.cli, "cheap", WAIT_MS), -1);
    assert_int_equal(s_submit("R4", &a), CPN_MSG_NACK);
    assert_true(a.code == CPN_E_UNREACHABLE || a.code == CPN_E_TIMEOUT);
    fprintf(stderr, "# R4 while its peer is gone: %s (%s)\n", cpn_errname(a.code), a.reason);
    h_ans_free(&a);
    assert_int_equal(s_peer_leases(&g.p[P_DEAR], "R4"), 0);
    assert_true(s_status_u64("claims_in_doubt") >= 1);

    /* The peer is back: R4 is served there. */
    s_start_peer(&g.p[P_CHEAP]);
    assert_true(s_wait_offer("cheap", 1));
    assert_int_equal(s_submit_settled("R4", &a), CPN_MSG_GRANT);
    char lid[CPN_NAME_MAX];
    uint8_t who[CPN_PK_LEN];
    s_grant_lease(&a, lid, who);
    assert_memory_equal(who, cpn_identity_pk(g.p[P_CHEAP].id), CPN_PK_LEN);
    h_ans_free(&a);
    s_stop_all();
    assert_int_equal(s_peer_leases(&g.p[P_CHEAP], "R4"), 1);
    assert_int_equal(s_peer_leases(&g.p[P_DEAR], "R4"), 0);
}

/* Fill the file system under `dir` with one file until it is full. */
static void s_fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[4096];
    memset(block, 0x5a, sizeof block);
    for (int i = 0; i < 100000; i++) { /* bounded: 400 MB, far above the tmpfs size */
        ssize_t w = write(fd, block, sizeof block);
        if (w < (ssize_t)sizeof block) {
            assert_true(w >= 0 || errno == ENOSPC);
            break;
        }
    }
    close(fd);
}

/* Defect 4: the ledger on a full disk. No GRANT for a lease the broker cannot record. */
static void test_full_ledger_disk(void **state)
{
    (void)state;
    enum { N = 5 };
    char ledger[400], filler[400];
    h_path(g.mnt, sizeof g.mnt, g.dir, "t3-fs");
    assert_int_equal(mkdir(g.mnt, 0700), 0);
    assert_int_equal(mount("tmpfs", g.mnt, "tmpfs", 0, "size=1m,mode=0700"), 0);
    g.mounted = true;
    snprintf(ledger, sizeof ledger, "%s/ledger.db", g.mnt);
    snprintf(filler, sizeof filler, "%s/filler", g.mnt);
    s_case_start("t3", ledger, "5s", 10);

    s_fill(filler);
    const char *ids[N] = {"F1", "F2", "F3", "F4", "F5"};
    for (int i = 0; i < N; i++) {
        h_ans_t a;
        assert_int_equal(s_submit(ids[i], &a), CPN_MSG_NACK);
        assert_int_equal(a.code, CPN_E_DB);
        h_ans_free(&a);
    }
    assert_true(s_file_has(g.broker_log, "full"));
    for (int i = 0; i < N; i++)
        for (int k = 0; k < P__COUNT; k++)
            assert_int_equal(s_peer_leases(&g.p[k], ids[i]), 0);

    /* Space returns: the same ids get leases, and the ledger records each. */
    assert_int_equal(unlink(filler), 0);
    for (int i = 0; i < N; i++) {
        h_ans_t a;
        assert_int_equal(s_submit_settled(ids[i], &a), CPN_MSG_GRANT);
        h_ans_free(&a);
        assert_int_equal(
            h_db_int(ledger, "SELECT COUNT(*) FROM leases WHERE request_id = ?1", ids[i]), 1);
    }
    s_stop_all();
    for (int i = 0; i < N; i++)
        assert_int_equal(s_peer_leases(&g.p[P_CHEAP], ids[i]) + s_peer_leases(&g.p[P_DEAR], ids[i]),
                         1);
}

/* A RESEND that does not hold a good LEASE of its own signer is refused with a code, counted,
 * and changes nothing. */
static void test_resend_refused(void **state)
{
    (void)state;
    char ledger[400];
    h_path(ledger, sizeof ledger, g.dir, "t5-ledger.db");
    s_write_policy(ledger, "5s");
    assert_true(s_start_broker());
    ctl_client_t *peer = NULL; /* the test speaks as the trusted peer `cheap` */
    assert_int_equal(
        ctl_client_new(g.endpoint, g.p[P_CHEAP].id, cpn_identity_pk(g.broker), true, &peer),
        CPN_OK);
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    static const uint8_t not_a_claim[] = {0x80};
    l.claim = (mp_bytes_t){not_a_claim, sizeof not_a_claim};
    snprintf(l.lease_id, sizeof l.lease_id, "Lforged");
    snprintf(l.package, sizeof l.package, "cpu");
    l.units = 1;
    l.end_ms = 1;
    snprintf(l.state, sizeof l.state, "active");
    cpn_hello_t hello;
    memset(&hello, 0, sizeof hello);
    snprintf(hello.role, sizeof hello.role, "peer");
    snprintf(hello.name, sizeof hello.name, "cheap");
    uint64_t now = cpn_now_ms(), seq = now << 12;
    struct {
        const cpn_identity_t *signer;
        cpn_msg_type_t type;
        const void *body;
        bool flip;
        int code;
    } cases[] = {
        {g.p[P_DEAR].id, CPN_MSG_LEASE, &l, false, CPN_E_UNTRUSTED},   /* another peer's LEASE */
        {g.p[P_CHEAP].id, CPN_MSG_HELLO, &hello, false, CPN_E_SCHEMA}, /* not a LEASE */
        {g.p[P_CHEAP].id, CPN_MSG_LEASE, &l, true, CPN_E_SIG},         /* does not verify */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *inner = NULL;
        size_t inner_len = 0;
        assert_int_equal(cpn_msg_build(cases[i].signer, cases[i].type, seq + i, now, cases[i].body,
                                       &inner, &inner_len),
                         CPN_OK);
        if (cases[i].flip)
            inner[inner_len - 1] ^= 1; /* the signature's last byte */
        cpn_resend_t rs = {.frame = {inner, inner_len}};
        uint64_t out_seq = 0;
        assert_int_equal(ctl_client_send(peer, CPN_MSG_RESEND, &rs, &out_seq), CPN_OK);
        h_ans_t a;
        assert_int_equal(h_await(peer, out_seq, NULL, NULL, WAIT_MS, &a), CPN_MSG_ERROR);
        assert_int_equal(a.code, cases[i].code);
        h_ans_free(&a);
        free(inner);
    }
    /* A STATUS is matched by `what`: one answering a query of the start-up wait may still
     * be queued. Ask until the status is one taken after the three refusals (bounded). */
    h_ans_t st;
    const msgpack_object *refused = NULL;
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(h_query(g.t.cli, "status", WAIT_MS, &st), CPN_MSG_STATUS);
        refused = h_get(&st.obj, "refused");
        if (h_u64(h_get(refused, "bad-signature")) > 0 || cpn_mono_ms() >= deadline)
            break;
        h_ans_free(&st);
    }
    assert_int_equal(h_u64(h_get(refused, "untrusted")), 1);
    assert_int_equal(h_u64(h_get(refused, "schema")), 1);
    assert_int_equal(h_u64(h_get(refused, "bad-signature")), 1);
    assert_int_equal(h_u64(h_get(&st.obj, "grants")), 0);
    h_ans_free(&st);
    assert_int_equal(h_db_int(ledger, "SELECT COUNT(*) FROM leases", NULL), 0);
    ctl_client_destroy(&peer);
}

/* ---- fixture ---- */

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "exactly-once") != 0)
        return -1;
    h_path(g.policy, sizeof g.policy, g.dir, "policy.yaml");
    h_path(g.broker_log, sizeof g.broker_log, g.dir, "broker.log");
    h_keygen(g.dir, "broker", &g.broker);
    h_keygen(g.dir, g.t.name, &g.t.id);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    int port = h_free_port(NULL);
    if (port <= 0)
        return -1;
    snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", port);
    g.port = port;
    g.clean = true;
    return 0;
}

/* After each case: whatever it left running is stopped (a failed assertion skips its end). */
static int s_case_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < P__COUNT; i++)
        g.clean &= h_stop(&g.p[i].pid, STOP_MS);
    g.clean &= h_stop(&g.broker_pid, STOP_MS);
    ctl_client_destroy(&g.t.cli);
    if (g.mounted) {
        if (umount2(g.mnt, MNT_DETACH) != 0)
            fprintf(stderr, "# umount %s: %s\n", g.mnt, strerror(errno));
        g.mounted = false;
        (void)rmdir(g.mnt);
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)s_case_teardown(state);
    cpn_identity_destroy(&g.t.id);
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    cpn_identity_destroy(&g.broker);
    h_dir_done(g.dir, g.clean);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stalled_peer_one_lease, s_case_teardown),
        cmocka_unit_test_teardown(test_lost_lease_resent, s_case_teardown),
        cmocka_unit_test_teardown(test_in_doubt_peer_gone, s_case_teardown),
        cmocka_unit_test_teardown(test_full_ledger_disk, s_case_teardown),
        cmocka_unit_test_teardown(test_resend_refused, s_case_teardown),
    };
    return cmocka_run_group_tests_name("exactly_once", tests, s_setup, s_teardown);
}
