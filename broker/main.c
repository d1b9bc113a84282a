/* cpn-broker - the matchmaker daemon: `cpn-broker --config policy.yaml`. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "log.h"
#include "policy.h"
#include "server.h"
#include "yconf.h"

static broker_t *s_broker;

static void s_on_stop(int sig)
{
    (void)sig;
    if (s_broker)
        server_request_stop(s_broker);
}

static void s_on_hup(int sig)
{
    (void)sig;
    if (s_broker)
        server_request_reload(s_broker);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: cpn-broker --config POLICY.yaml [--check] [--log-level LEVEL]\n"
            "\n"
            "The cpn matchmaker: verifies every signed message against the policy, keeps the\n"
            "offer book of the peers' ADs, matches tenants' REQUESTs, CLAIMs units from peers\n"
            "and countersigns their LEASEs. Durable ledger and audit log in SQLite.\n"
            "\n"
            "  -c, --config FILE     broker policy (docs/POLICY.md)\n"
            "      --check           validate the policy, print every error, exit\n"
            "  -l, --log-level L     debug, info, warn, error (default info; env CPN_LOG_LEVEL)\n"
            "  -h, --help            this text\n"
            "  -V, --version         print the version\n"
            "\n"
            "Signals: SIGHUP reloads the policy (a policy that fails validation is refused and\n"
            "the running one stays); SIGTERM or SIGINT stop cleanly.\n"
            "Limits (policy `limits:`): frame size, messages per second per sender, offers in\n"
            "the book, requests in flight, claim timeout and tries; see cpn-broker(8).\n"
            "Metrics and dashboard (policy `broker.http: PORT`, on 127.0.0.1 unless an address\n"
            "is named; off unless set): /metrics (OpenMetrics), / (the federation dashboard),\n"
            "/api/state (its JSON); see docs/METRICS.md.\n"
            "systemd (cpn-broker.service, Type=notify): READY=1 once bound with the ledger open,\n"
            "STATUS= lines, WATCHDOG=1 from the loop at half WATCHDOG_USEC, RELOADING=1 on\n"
            "SIGHUP; log lines carry <N> syslog priorities when stderr is the journal.\n");
}

static int s_check(const char *path)
{
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = policy_load(path, &pol, &doc);
    if (doc)
        yconf_print_errors(doc, stderr);
    if (r == CPN_OK)
        printf("%s: ok\n", path);
    else if (!doc || !yconf_error_count(doc))
        fprintf(stderr, "%s: %s\n", path, cpn_strerror(r));
    policy_destroy(&pol);
    yconf_destroy(&doc);
    return r == CPN_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                              {"check", no_argument, 0, 'C'},
                                              {"log-level", required_argument, 0, 'l'},
                                              {"help", no_argument, 0, 'h'},
                                              {"version", no_argument, 0, 'V'},
                                              {0, 0, 0, 0}};
    const char *config = NULL;
    int check = 0, c;
    cpn_log_set_ident("cpn-broker");
    while ((c = getopt_long(argc, argv, "c:l:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'C': check = 1; break;
        case 'l':
            if (cpn_log_level_parse(optarg) < 0) {
                fprintf(stderr, "cpn-broker: unknown log level '%s'\n", optarg);
                return 2;
            }
            cpn_log_set_level((cpn_log_level_t)cpn_log_level_parse(optarg));
            break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("cpn-broker %s\n", PACKAGE_VERSION); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!config || optind != argc) {
        s_usage(stderr);
        return 2;
    }
    if (cpn_crypto_init() != CPN_OK) {
        fprintf(stderr, "cpn-broker: libsodium failed to initialise\n");
        return 1;
    }
    if (check)
        return s_check(config);
    if (server_new(config, &s_broker) != CPN_OK)
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = s_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int r = server_run(s_broker);
    server_destroy(&s_broker);
    return r == CPN_OK ? 0 : 1;
}
