/* main.c - cpn-peer: arguments, signals, then the daemon. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "advertise.h"
#include "clock.h"
#include "daemon.h"
#include "discover.h"
#include "httpd.h"
#include "fulfil.h"
#include "identity.h"
#include "inventory.h"
#include "lease.h"
#include "log.h"
#include "notice.h"
#include "notice_store.h"
#include "peer_config.h"
#include "provision.h"
#include "sender.h"
#include "store.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

static volatile sig_atomic_t s_stop, s_wake;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_wake(int sig)
{
    (void)sig;
    s_wake = 1;
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: cpn-peer --config FILE       run the peer daemon\n"
            "       cpn-peer --config FILE --check   validate the configuration and exit\n"
            "       cpn-peer --config FILE --drain PACKAGE     take a package out of service\n"
            "       cpn-peer --config FILE --undrain PACKAGE   put it back\n"
            "       cpn-peer --discover          print a package skeleton for this host\n"
            "       cpn-peer --help | --version\n"
            "\n"
            "A data centre's side of cpn: advertises the packages in FILE to its brokers,\n"
            "grants leases on CLAIMs (signed by a configured broker, embedding a request\n"
            "signed by an accepted tenant), keeps them in SQLite and ends them at their end\n"
            "time, whether or not any broker is reachable. A package with a driver is\n"
            "granted once the driver made its resource (docs/PROVISIONING.md).\n"
            "See cpn-peer(8), docs/POLICY.md.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   the peer configuration (YAML); relative paths in it are\n"
            "                      relative to its directory\n"
            "  -C, --check         validate FILE (and load its key); errors as\n"
            "                      file:line:column: key: message; exit 1 on any error\n"
            "  -d, --discover      cores, memory, disks and NVIDIA GPUs of this host as YAML\n"
            "      --drain PACKAGE record in the peer's database that PACKAGE is out of\n"
            "                      service and wake the running daemon (SIGUSR1; it also\n"
            "                      looks every %d ms, and at start): the package advertises\n"
            "                      0 free units and each of its active leases is revoked\n"
            "                      with a signed NOTICE to the broker that claimed it\n"
            "      --undrain PACKAGE  the package is advertised again (revoked leases stay\n"
            "                      ended)\n"
            "  -h, --help          this text\n"
            "  -V, --version       the version\n"
            "\n"
            "limits:\n"
            "  batch               up to %d messages decided per commit (group commit);\n"
            "                      no LEASE is sent before its commit\n"
            "  advertisements      at start, on every (re)connection, every `refresh`\n"
            "                      (default %ds, ttl %d x refresh) and on free-capacity\n"
            "                      changes, at most one per %d ms\n"
            "  reconnect           every %d ms, backing off to %d ms; a link silent\n"
            "                      for %d ms (heartbeat every %d ms) is redialled\n"
            "  brokers             at most %d; tenants list at most %d keys\n"
            "  notices             re-sent every %d ms until the broker's receipt, or the\n"
            "                      lease's old end; at most %d per pass; at most %d leases\n"
            "                      revoked per pass\n"
            "  usage records       a USAGE record per running lease every `usage_interval`\n"
            "                      (default %ds) and at its end, at most %d made per pass,\n"
            "                      sent to the lease's broker and re-sent every %d ms\n"
            "                      until its RECEIPT, at most %d per pass\n"
            "  sequence numbers    a ceiling %llu above the last one used is stored\n"
            "                      before use, so a restart continues above it\n"
            "  database            WAL, synchronous=FULL, busy timeout %d ms\n"
            "  metrics             config `http: PORT` (127.0.0.1 unless an address is\n"
            "                      named; off unless set): OpenMetrics at /metrics, at most\n"
            "                      %d connections, rendered from a snapshot of the loop\n"
            "  drivers             (provision section, docs/PROVISIONING.md) at most %d;\n"
            "                      %d children at once, %d calls queued (a CLAIM beyond:\n"
            "                      NACK busy), %d bytes of output and `timeout` per\n"
            "                      command, backoff doubling to %d s; teardowns due are\n"
            "                      submitted again every %d ms\n"
            "  shutdown            SIGTERM/SIGINT: WITHDRAW to every broker (waits at most\n"
            "                      %d ms to deliver), exit 0. SIGHUP is ignored: restart\n"
            "                      to change the configuration (leases survive restarts).\n"
            "                      SIGUSR1: read the drains table now\n"
            "\n"
            "environment: CPN_LOG_LEVEL=debug|info|warn|error (config log_level wins)\n"
            "systemd (cpn-peer.service, Type=notify): READY=1 once the store is open,\n"
            "STATUS= lines, WATCHDOG=1 from the loop at half WATCHDOG_USEC; log lines carry\n"
            "<N> syslog priorities when stderr is the journal (JOURNAL_STREAM)\n"
            "exit status: 0 ok, 1 configuration or runtime error, 2 usage\n",
            PEER_DRAIN_POLL_MS, PEER_BATCH_MAX, PEER_REFRESH_DEFAULT_S, PEER_AD_TTL_REFRESHES,
            PEER_AD_COALESCE_MS, PEER_RECONNECT_MS, PEER_RECONNECT_MAX_MS,
            PEER_HEARTBEAT_TIMEOUT_MS, PEER_HEARTBEAT_MS, PEER_BROKERS_MAX, PEER_TENANTS_MAX,
            PEER_NOTICE_RESEND_MS, PEER_NOTICE_BATCH, PEER_REVOKE_BATCH,
            CPN_USAGE_INTERVAL_DEFAULT_S, PEER_METER_BATCH_MAX, PEER_NOTICE_RESEND_MS,
            PEER_METER_PENDING_MAX, (unsigned long long)PEER_SEQ_RESERVE, PEER_STORE_BUSY_MS, CPN_HTTP_CONN_MAX,
            PEER_DRIVERS_MAX, PROVISION_CHILDREN_MAX, PROVISION_QUEUE_MAX, PROVISION_OUTPUT_MAX,
            PROVISION_BACKOFF_MAX_S, PEER_SWEEP_MS, PEER_WITHDRAW_LINGER_MS);
}

/* Load the configuration, printing every error. NULL on failure. */
static peer_config_t *s_load(const char *path)
{
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    int r = peer_config_load(path, &cfg, &doc);
    if (r != CPN_OK) {
        if (doc && yconf_error_count(doc) > 0)
            yconf_print_errors(doc, stderr);
        else
            fprintf(stderr, "%s: %s\n", path, cpn_strerror(r));
    }
    yconf_destroy(&doc);
    return cfg;
}

static int s_check(const char *path)
{
    peer_config_t *cfg = s_load(path);
    if (!cfg)
        return 1;
    cpn_identity_t *id = NULL;
    size_t ad_len = 0;
    peer_inventory_t *inv = peer_inventory_new(cfg->packages, cfg->floors, cfg->n_packages);
    int r =
        inv ? advertise_check_size(cfg, inv, cpn_limits_default.max_frame, &ad_len) : CPN_E_NOMEM;
    peer_inventory_destroy(&inv);
    if (r != CPN_OK) {
        fprintf(stderr,
                "%s: packages: the AD would take up to %zu bytes, above the frame limit of %zu: "
                "split the packages over several peers\n",
                path, ad_len, cpn_limits_default.max_frame);
        peer_config_destroy(&cfg);
        return 1;
    }
    r = cpn_identity_load(cfg->key_path, &id);
    if (r != CPN_OK)
        fprintf(stderr, "%s: key: %s: %s\n", path, cfg->key_path, cpn_strerror(r));
    else
        printf("%s: ok (%zu packages, %zu brokers)\n", path, cfg->n_packages, cfg->n_brokers);
    cpn_identity_destroy(&id);
    peer_config_destroy(&cfg);
    return r == CPN_OK ? 0 : 1;
}

/* Is `pid` a running cpn-peer? Its name, not only its existence: a pid left in the database
 * by a daemon that died may belong to another program by now, which must get no signal. */
static bool s_is_peer(pid_t pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(comm, sizeof comm, f) && strncmp(comm, "cpn-peer", 8) == 0;
    fclose(f);
    return ok;
}

/* --drain / --undrain: the daemon learns it through its own database (it reads the drains
 * table at start, every PEER_DRAIN_POLL_MS and on SIGUSR1), so the command works whether the
 * daemon runs or not, and survives its restart. */
static int s_drain(const char *path, const char *package, bool on)
{
    peer_config_t *cfg = s_load(path);
    peer_store_t *store = NULL;
    uint64_t pid = 0;
    bool found = false, known = false;
    int r;
    if (!cfg)
        return 1;
    for (size_t i = 0; i < cfg->n_packages; i++)
        known |= strcmp(cfg->packages[i].id, package) == 0;
    if (!known) {
        fprintf(stderr, "cpn-peer: %s: no package %s in the configuration\n", path, package);
        peer_config_destroy(&cfg);
        return 1;
    }
    if ((r = peer_store_open(cfg->database, &store)) != CPN_OK ||
        (r = peer_nstore_init(store)) != CPN_OK ||
        (r = peer_nstore_drain_set(store, package, on, cpn_now_ms())) != CPN_OK ||
        (r = peer_store_meta_get(store, PEER_META_PID, &pid, &found)) != CPN_OK)
        fprintf(stderr, "cpn-peer: %s: %s\n", cfg->database, cpn_strerror(r));
    peer_store_destroy(&store);
    peer_config_destroy(&cfg);
    if (r != CPN_OK)
        return 1;
    if (found && pid > 1 && pid < INT32_MAX && s_is_peer((pid_t)pid) && kill((pid_t)pid, SIGUSR1) == 0)
        printf("%s %s: the daemon (pid %llu) was told\n", package, on ? "drained" : "undrained",
               (unsigned long long)pid);
    else
        printf("%s %s: no daemon running; it applies at the next start\n", package,
               on ? "drained" : "undrained");
    return 0;
}

static int s_discover(void)
{
    discover_host_t host;
    char hostname[256] = "";
    if (gethostname(hostname, sizeof hostname - 1) != 0)
        hostname[0] = '\0';
    discover_host(&host);
    discover_print(&host, hostname, stdout);
    return 0;
}

static int s_run(const char *path)
{
    peer_config_t *cfg = s_load(path);
    if (!cfg)
        return 1;
    if (cfg->log_level[0])
        cpn_log_set_level((cpn_log_level_t)cpn_log_level_parse(cfg->log_level));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal; /* no SA_RESTART: zmq_poll returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = s_on_wake;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    peer_daemon_t *d = NULL;
    if (peer_daemon_new(&cfg, &d) != CPN_OK) {
        peer_config_destroy(&cfg);
        return 1;
    }
    int r = peer_daemon_run(d, &s_stop, &s_wake);
    peer_daemon_destroy(&d);
    return r == CPN_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'C'},
        {"discover", no_argument, NULL, 'd'},     {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {"drain", required_argument, NULL, 'D'},
        {"undrain", required_argument, NULL, 'U'}, {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *drain = NULL;
    bool undrain = false;
    int check = 0, discover = 0, c;
    cpn_log_set_ident("cpn-peer");
    while ((c = getopt_long(argc, argv, "c:CdhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'C':
            check = 1;
            break;
        case 'd':
            discover = 1;
            break;
        case 'D':
        case 'U':
            drain = optarg;
            undrain = c == 'U';
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case 'V':
            printf("cpn-peer %s\n", PACKAGE_VERSION);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cpn-peer: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    if (discover)
        return s_discover();
    if (!config) {
        fprintf(stderr, "cpn-peer: --config FILE is required\n");
        s_usage(stderr);
        return 2;
    }
    if (cpn_crypto_init() != CPN_OK) {
        fprintf(stderr, "cpn-peer: cannot initialise libsodium\n");
        return 1;
    }
    if (drain)
        return s_drain(config, drain, !undrain);
    return check ? s_check(config) : s_run(config);
}
