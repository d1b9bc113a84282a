/* test_service.c - cpn-broker and cpn-peer speak systemd's notify protocol (common/service.c)
 * to a real NOTIFY_SOCKET, and tag their log lines for the journal.
 *
 * The test is the service manager: it binds an AF_UNIX datagram socket, starts each daemon
 * with NOTIFY_SOCKET naming it and WATCHDOG_USEC set (as systemd does for Type=notify with
 * WatchdogSec=), and reads what arrives: READY=1 with a STATUS= line once the sockets are
 * bound and the state loaded; WATCHDOG=1 again and again, never further apart than the
 * deadline; nothing while the daemon is stopped by SIGSTOP (a wedged loop stops the pings,
 * which is what makes systemd's watchdog useful), and pings again after SIGCONT; RELOADING=1
 * then READY=1 on the broker's SIGHUP; STOPPING=1 on SIGTERM. Then the journal: with
 * JOURNAL_STREAM naming the daemon's stderr each line starts with its syslog priority (<6>
 * for info); with JOURNAL_STREAM naming another file, lines start with the time as before.
 *
 * Every wait is bounded; every process started is stopped in the teardown (and gets SIGKILL
 * from the kernel should this test die first). CPN_TEST_KEEP=1 keeps the directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"
#include "identity.h"

#define READY_MS 30000   /* a daemon up and READY=1 (a bound, not a timing) */
#define STOP_MS 30000    /* SIGTERM to exit, then SIGKILL */
#define WAIT_MS 10000    /* one expected notification */
#define WATCHDOG_US 2000000 /* WatchdogSec=2s: pings every second, 2 s is the deadline */
#define PINGS 4          /* consecutive pings whose spacing is checked */
#define WEDGE_MS 3000    /* how long a daemon stays stopped: longer than the deadline */
#define PORT_TRIES 5
#define MSG_MAX 4096

static struct {
    char dir[256], bin[1024];
    int port;
    char endpoint[64];
    pid_t broker, peer;
    int fd[2]; /* notify sockets: [0] broker, [1] peer */
} g;

/* ---- the service manager's end: a datagram socket ---- */

static int s_notify_open(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[sizeof sa.sun_path];
    h_path(path, sizeof path, g.dir, name);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* One datagram within `ms`, NUL-terminated in buf; its length, or 0 if none came. */
static size_t s_recv(int fd, uint64_t ms, char *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, (int)ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return 0;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (size_t)n;
}

/* Does the newline-separated assignment list `msg` hold the line `line`? */
static bool s_has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* Read datagrams until one holds the line `line` (others are skipped), for up to `ms`. True
 * with that datagram in buf and its arrival time (monotonic) in *at_ms. */
static bool s_wait_line(int fd, const char *line, uint64_t ms, char *buf, size_t cap,
                        uint64_t *at_ms)
{
    uint64_t end = cpn_mono_ms() + ms;
    for (int i = 0; i < 100000; i++) {
        uint64_t now = cpn_mono_ms();
        if (now >= end || !s_recv(fd, end - now, buf, cap))
            return false;
        if (s_has_line(buf, line)) {
            if (at_ms)
                *at_ms = cpn_mono_ms();
            return true;
        }
    }
    return false;
}

/* Drop whatever waits in the socket. */
static void s_drain(int fd)
{
    char buf[MSG_MAX];
    for (int i = 0; i < 100000 && s_recv(fd, 0, buf, sizeof buf); i++)
        ;
}

/* ---- files and processes ---- */

static void s_write_policy(void)
{
    h_write_policy(g.dir, &(h_policy_t){
                              .file = "policy.yaml",
                              .name = "svc-broker",
                              .key = "broker.key",
                              .listen = g.endpoint,
                              .ledger = "ledger.db",
                              .tenants = "acme",
                          });
}

static void s_write_peer(void)
{
    char pkgs[256] = "";
    h_package(pkgs, sizeof pkgs, "cpu16", 4, "1.0", 16, "64GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .file = "peer.yaml",
                                 .name = "svc-peer",
                                 .key = "peer.key",
                                 .database = "peer.db",
                                 .broker = g.endpoint,
                                 .broker_name = "broker",
                                 .packages = pkgs,
                             });
}

/* Start `prog` with the environment systemd gives a Type=notify service with WatchdogSec=
 * (notify socket `sock`, or none if NULL), and JOURNAL_STREAM=`journal` if not NULL. */
static pid_t s_spawn(const char *prog, const char *cfg_name, const char *log_name,
                     const char *sock, const char *journal)
{
    char cfg[512], log[512], path[512], usec[32];
    h_path(cfg, sizeof cfg, g.dir, cfg_name);
    h_path(log, sizeof log, g.dir, log_name);
    if (sock) {
        h_path(path, sizeof path, g.dir, sock);
        snprintf(usec, sizeof usec, "%d", WATCHDOG_US);
        setenv("NOTIFY_SOCKET", path, 1);
        setenv("WATCHDOG_USEC", usec, 1);
    }
    if (journal)
        setenv("JOURNAL_STREAM", journal, 1);
    pid_t pid = h_spawn(g.bin, prog, cfg, log);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("JOURNAL_STREAM");
    return pid;
}

/* The broker on a free port, READY=1 on its socket; tries another port if it could not bind.
 * The READY datagram is left in buf. */
static void s_broker_start(char *buf, size_t cap)
{
    for (int t = 0; t < PORT_TRIES; t++) {
        g.port = h_free_port(NULL);
        assert_true(g.port > 0);
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", g.port);
        s_write_policy();
        g.broker = s_spawn("cpn-broker", "policy.yaml", "broker.log", "broker.sock", NULL);
        if (s_wait_line(g.fd[0], "READY=1", READY_MS, buf, cap, NULL))
            return;
        h_stop(&g.broker, STOP_MS); /* it could not bind: the port was taken meanwhile */
    }
    fail_msg("cpn-broker never said READY=1 (see %s/broker.log)", g.dir);
}

static int s_setup(void **state)
{
    (void)state;
    cpn_identity_t *id = NULL;
    memset(&g, 0, sizeof g);
    g.fd[0] = g.fd[1] = -1;
    if (cpn_crypto_init() != CPN_OK || h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "svc"))
        return -1;
    const char *names[] = {"broker", "peer", "acme"};
    for (size_t i = 0; i < 3; i++) {
        h_keygen(g.dir, names[i], &id);
        cpn_identity_destroy(&id);
    }
    g.fd[0] = s_notify_open("broker.sock");
    g.fd[1] = s_notify_open("peer.sock");
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = h_stop(&g.broker, STOP_MS);
    clean = h_stop(&g.peer, STOP_MS) && clean;
    for (int i = 0; i < 2; i++)
        if (g.fd[i] >= 0)
            close(g.fd[i]);
    h_dir_done(g.dir, clean);
    return 0;
}

/* ---- what the daemons say ---- */

/* PINGS WATCHDOG=1 in a row, none further than the deadline from the one before. */
static void s_assert_pings(int fd, const char *who)
{
    char buf[MSG_MAX];
    uint64_t prev = 0, at = 0;
    assert_true(s_wait_line(fd, "WATCHDOG=1", WAIT_MS, buf, sizeof buf, &prev));
    for (int i = 1; i < PINGS; i++) {
        if (!s_wait_line(fd, "WATCHDOG=1", WAIT_MS, buf, sizeof buf, &at))
            fail_msg("%s: ping %d of %d never came", who, i + 1, PINGS);
        if (at - prev >= WATCHDOG_US / 1000)
            fail_msg("%s: %" PRIu64 " ms between two pings, deadline %d ms", who, at - prev,
                     WATCHDOG_US / 1000);
        prev = at;
    }
}

/* Has process `pid` stopped (state T in /proc/PID/stat)? */
static bool s_is_stopped(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *rp = strrchr(stat, ')'); /* the name may hold spaces and parentheses */
    return rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
}

/* A wedged loop (the process stopped) sends nothing for WEDGE_MS, longer than the deadline
 * systemd would wait; after SIGCONT the pings come back. */
static void s_assert_wedge_stops_pings(int fd, pid_t pid, const char *who)
{
    char buf[MSG_MAX];
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t end = cpn_mono_ms() + WAIT_MS;
    for (int i = 0; i < 1000 && !s_is_stopped(pid) && cpn_mono_ms() < end; i++)
        usleep(10 * 1000);
    assert_true(s_is_stopped(pid));
    s_drain(fd); /* sent before it stopped */
    uint64_t until = cpn_mono_ms() + WEDGE_MS;
    for (int i = 0; i < 100000; i++) {
        uint64_t now = cpn_mono_ms();
        if (now >= until)
            break;
        if (s_recv(fd, until - now, buf, sizeof buf))
            fail_msg("%s sent '%s' while stopped", who, buf);
    }
    assert_int_equal(kill(pid, SIGCONT), 0);
    uint64_t cont = cpn_mono_ms(), at = 0;
    assert_true(s_wait_line(fd, "WATCHDOG=1", WAIT_MS, buf, sizeof buf, &at));
    assert_true(at >= cont);
}

static void test_broker_notify(void **state)
{
    (void)state;
    char buf[MSG_MAX];
    s_broker_start(buf, sizeof buf);
    assert_non_null(strstr(buf, "STATUS=svc-broker listening on tcp://127.0.0.1:"));
    s_assert_pings(g.fd[0], "cpn-broker");

    /* SIGHUP: RELOADING=1, then READY=1 again with what the reload did */
    assert_int_equal(kill(g.broker, SIGHUP), 0);
    assert_true(s_wait_line(g.fd[0], "RELOADING=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_true(s_wait_line(g.fd[0], "READY=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_non_null(strstr(buf, "STATUS=policy reloaded: 1 tenants"));
    /* a policy that fails validation: READY=1 still (the old one runs), the STATUS says so */
    h_write(g.dir, "policy.yaml", "broker: [this is not a policy\n");
    assert_int_equal(kill(g.broker, SIGHUP), 0);
    assert_true(s_wait_line(g.fd[0], "RELOADING=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_true(s_wait_line(g.fd[0], "READY=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_non_null(strstr(buf, "STATUS=reload of "));
    assert_non_null(strstr(buf, "refused"));
    s_write_policy();

    s_assert_wedge_stops_pings(g.fd[0], g.broker, "cpn-broker");

    assert_int_equal(kill(g.broker, SIGTERM), 0);
    assert_true(s_wait_line(g.fd[0], "STOPPING=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_true(h_stop(&g.broker, STOP_MS));
}

/* The peer needs no broker to be ready: it dials out (here to a port nobody listens on). */
static void test_peer_notify(void **state)
{
    (void)state;
    char buf[MSG_MAX];
    if (!g.port) {
        g.port = h_free_port(NULL);
        snprintf(g.endpoint, sizeof g.endpoint, "tcp://127.0.0.1:%d", g.port);
    }
    s_write_peer();
    g.peer = s_spawn("cpn-peer", "peer.yaml", "peer.log", "peer.sock", NULL);
    assert_true(s_wait_line(g.fd[1], "READY=1", READY_MS, buf, sizeof buf, NULL));
    assert_non_null(strstr(buf, "STATUS=svc-peer: 1 packages, advertising to 1 brokers"));
    s_assert_pings(g.fd[1], "cpn-peer");
    s_assert_wedge_stops_pings(g.fd[1], g.peer, "cpn-peer");
    assert_int_equal(kill(g.peer, SIGTERM), 0);
    assert_true(s_wait_line(g.fd[1], "STOPPING=1", WAIT_MS, buf, sizeof buf, NULL));
    assert_true(h_stop(&g.peer, STOP_MS));
}

/* The first line of file `name` that holds `needle`, within READY_MS; false if none. */
static bool s_wait_log(const char *name, const char *needle, char *line, size_t cap)
{
    char path[512];
    h_path(path, sizeof path, g.dir, name);
    uint64_t end = cpn_mono_ms() + READY_MS;
    for (int i = 0; i < 100000 && cpn_mono_ms() < end; i++) {
        FILE *f = fopen(path, "r");
        for (int l = 0; f && l < 100000 && fgets(line, (int)cap, f); l++)
            if (strstr(line, needle)) {
                fclose(f);
                return true;
            }
        if (f)
            fclose(f);
        usleep(50 * 1000);
    }
    return false;
}

/* JOURNAL_STREAM=DEV:INO of the daemon's stderr: priority prefixes; of another file: none. */
static void test_journal_prefix(void **state)
{
    (void)state;
    char log[512], other[512], js[64], line[1024];
    struct stat st;
    h_path(log, sizeof log, g.dir, "journal.log");
    h_path(other, sizeof other, g.dir, "other.log");
    h_write(g.dir, "journal.log", "");
    h_write(g.dir, "other.log", "");
    assert_int_equal(stat(log, &st), 0);
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    s_write_peer();
    g.peer = s_spawn("cpn-peer", "peer.yaml", "journal.log", NULL, js);
    assert_true(s_wait_log("journal.log", "package cpu16", line, sizeof line));
    assert_true(strncmp(line, "<6>info  peer   ", 16) == 0);
    assert_true(h_stop(&g.peer, STOP_MS));

    assert_int_equal(stat(other, &st), 0);
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    g.peer = s_spawn("cpn-peer", "peer.yaml", "plain.log", NULL, js);
    assert_true(s_wait_log("plain.log", "package cpu16", line, sizeof line));
    assert_true(line[0] >= '2' && line[0] <= '9' && line[4] == '-'); /* 2026-12-04T... */
    assert_non_null(strstr(line, " cpn-peer info  peer   "));
    assert_true(h_stop(&g.peer, STOP_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_notify),
        cmocka_unit_test(test_peer_notify),
        cmocka_unit_test(test_journal_prefix),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
