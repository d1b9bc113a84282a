/* test_observe.c - the HTTP listeners of real daemons, read by real clients: the OpenMetrics
 * text parsed back, a real Prometheus scraping a broker and a peer (PromQL through its HTTP
 * API), the dashboard in a real headless Chromium (its DOM against the broker's state, and a
 * screenshot kept in the build directory as dashboard.png).
 *
 * Brokers A and B federate (plain TCP on 127.0.0.1); peer pa (10 x H100-80GB, cn-east) is A's,
 * peer pb (8 x Ascend-910B, cn-north) is B's. A and pa serve `http`. The known workload at A:
 * N_LEASES requests for one H100 unit (granted by pa), N_REFUSED for a model nobody has
 * (NACK no-match), N_GARBAGE frames that are not msgpack (refused at intake, each answered
 * with an ERROR). Every number asserted follows from it.
 *
 * Prometheus and Chromium are started by tests/prometheus.sh and tests/chromium.sh, which
 * install them if missing and stop exactly what they started. Every wait is bounded and waits
 * for a positive event. CPN_TEST_KEEP=1 keeps the temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "om_parse.h"
#include "transport.h"

#include <zmq.h>

#define WAIT_MS 10000    /* one answer from a broker */
#define READY_MS 30000   /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000    /* SIGTERM to exit, then SIGKILL */
#define SCRAPE_MS 60000  /* Prometheus has scraped the workload's numbers (bound) */
#define POLL_MS 200
#define PORT_TRIES 5
#define N_LEASES 3
#define N_REFUSED 2
#define N_GARBAGE 2 /* frames that are not msgpack: refused at intake, `malformed` */
#define H100_UNITS 10
#define FILE_MAX (1u << 20) /* bytes of a file Chromium wrote (DOM, screenshot) read back */

enum { B_A, B_B, B__COUNT };
enum { P_A, P_B, P__COUNT };

static struct {
    char dir[256], bin[1024], prom_dir[300];
    h_broker_t b[B__COUNT];
    int http_a; /* A's HTTP port (B has none) */
    struct {
        const char *name, *pkg, *model, *vendor, *region;
        unsigned count;
        int home, http;
        cpn_identity_t *id;
        pid_t pid;
    } p[P__COUNT];
    cpn_identity_t *acme;
    char lease_ids[N_LEASES][CPN_NAME_MAX];
    int prom_port;
} g = {
    .b = {{.name = "a"}, {.name = "b"}},
    .p = {{.name = "pa", .pkg = "h100x8", .model = "H100-80GB", .vendor = "nvidia",
           .region = "cn-east", .count = H100_UNITS, .home = B_A},
          {.name = "pb", .pkg = "ascend8", .model = "Ascend-910B", .vendor = "huawei",
           .region = "cn-north", .count = 8, .home = B_B}},
};

/* ---- processes and files ---- */

/* Run argv (a helper script) to its end; its exit status, or -1. */
static int s_run(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void s_script(char *out, size_t cap, const char *name)
{
    const char *src = getenv("CPN_SRCDIR");
    int n = snprintf(out, cap, "%s/tests/%s", src && src[0] ? src : "..", name);
    assert_true(n > 0 && (size_t)n < cap);
}

static char *s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f)
        return NULL;
    buf = malloc(FILE_MAX + 1);
    *len = buf ? fread(buf, 1, FILE_MAX, f) : 0;
    if (buf)
        buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* ---- configs ---- */

static void s_write_policy(int i)
{
    char http[64] = "";
    int o = i == B_A ? B_B : B_A;
    if (i == B_A) {
        g.http_a = h_free_port(NULL);
        snprintf(http, sizeof http, "  http: %d\n", g.http_a); /* "PORT": loopback */
    }
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .broker_more = http,
                              .hello_s = 5,
                              .members = {{g.b[o].name, g.b[o].endpoint}},
                              .peers = "pa pb",
                              .operators = "acme",
                              .limits = "  rate:\n"
                                        "    per_sender: 0/s\n",
                          });
}

static void s_write_peer(int i)
{
    char pkgs[1024], http[64] = "";
    if (g.p[i].http)
        snprintf(http, sizeof http, "http: 127.0.0.1:%d\n", g.p[i].http);
    int n = snprintf(pkgs, sizeof pkgs,
                     "  - id: %s\n"
                     "    count: %u\n"
                     "    price: \"10.0\"\n"
                     "    cores: 64\n"
                     "    memory: 512GiB\n"
                     "    accelerators:\n"
                     "      vendor: %s\n"
                     "      model: %s\n"
                     "      count: 8\n"
                     "      memory: 64GiB\n"
                     "      bf16_tflops: 900\n",
                     g.p[i].pkg, g.p[i].count, g.p[i].vendor, g.p[i].model);
    assert_true(n > 0 && (size_t)n < sizeof pkgs);
    h_write_peer_conf(g.dir, &(h_peer_conf_t){
                                 .name = g.p[i].name,
                                 .region = g.p[i].region,
                                 .refresh = "60s",
                                 .more = http,
                                 .broker = g.b[g.p[i].home].endpoint,
                                 .broker_name = g.b[g.p[i].home].name,
                                 .packages = pkgs,
                             });
}

/* ---- the workload ---- */

static size_t s_offers_at_a(void)
{
    h_ans_t a;
    size_t n = 0;
    if (h_query(g.b[B_A].cli, "offers", WAIT_MS, &a) != CPN_MSG_STATUS)
        return 0;
    if (a.obj.type == MSGPACK_OBJECT_ARRAY)
        n = a.obj.via.array.size;
    h_ans_free(&a);
    return n;
}

/* Submit one unit of `model` at A: the GRANT's lease id into lease_id (NULL: expect a NACK,
 * whose code is returned). */
static int s_submit(const char *id, const char *model, char *lease_id)
{
    cpn_request_t r;
    uint64_t seq = 0;
    h_ans_t a;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.accel_model, sizeof r.accel_model, "%s", model);
    r.accel_count = 8;
    r.units = 1;
    r.duration_s = 3600;
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &r, &seq), CPN_OK);
    cpn_msg_type_t type = h_await(g.b[B_A].cli, seq, id, NULL, WAIT_MS * 2, &a);
    int code = type == CPN_MSG_NACK ? a.code : type == CPN_MSG_GRANT ? CPN_OK : CPN_E_TIMEOUT;
    if (type == CPN_MSG_GRANT && lease_id) {
        cpn_grant_t gr;
        cpn_env_t env;
        cpn_lease_t lease;
        cpn_limits_t lim = h_big_limits();
        memset(&gr, 0, sizeof gr);
        memset(&lease, 0, sizeof lease);
        assert_int_equal(cpn_grant_decode(&a.env, &lim, &gr), CPN_OK);
        assert_int_equal(cpn_env_parse(gr.lease.ptr, gr.lease.len, &lim, &env), CPN_OK);
        assert_int_equal(cpn_lease_decode(&env, &lim, &lease), CPN_OK);
        snprintf(lease_id, CPN_NAME_MAX, "%s", lease.lease_id);
    }
    h_ans_free(&a);
    return code;
}

/* Send N_GARBAGE frames of garbage to A on a connection of their own and wait (bounded) for
 * the ERROR each gets: then A has counted them. True if every ERROR came. */
static bool s_send_garbage(void)
{
    void *zctx = zmq_ctx_new(), *sock = NULL;
    cpn_curve_t plain = {.enabled = false};
    size_t answered = 0;
    if (zctx && cpn_sock_dealer(zctx, g.b[B_A].endpoint, 1 << 16, &plain, &sock) == CPN_OK) {
        static const uint8_t garbage[] = {0xc1, 0xde, 0xad, 0xbe, 0xef}; /* 0xc1: never msgpack */
        for (int i = 0; i < N_GARBAGE; i++)
            assert_int_equal(cpn_send(sock, garbage, sizeof garbage), CPN_OK);
        uint64_t deadline = cpn_mono_ms() + WAIT_MS;
        while (answered < N_GARBAGE && cpn_mono_ms() < deadline) {
            zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
            uint8_t *frame = NULL;
            size_t len = 0;
            if (zmq_poll(&it, 1, POLL_MS) > 0 &&
                cpn_recv(sock, 0, NULL, NULL, &frame, &len) == CPN_OK)
                answered++;
            free(frame);
        }
        zmq_close(sock);
    }
    if (zctx)
        zmq_ctx_term(zctx);
    return answered == N_GARBAGE;
}

/* ---- setup ---- */

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "observe") != 0)
        return -1;
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    for (int i = 0; i < P__COUNT; i++)
        h_keygen(g.dir, g.p[i].name, &g.p[i].id);
    h_keygen(g.dir, "acme", &g.acme);
    if (!h_brokers_start(g.b, B__COUNT, g.bin, g.dir, NULL, s_write_policy, g.acme, PORT_TRIES,
                         READY_MS))
        return -1;
    g.p[P_A].http = h_free_port(NULL);
    for (int i = 0; i < P__COUNT; i++) {
        s_write_peer(i);
        g.p[i].pid = h_start(g.bin, g.dir, "cpn-peer", g.p[i].name);
    }
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while (s_offers_at_a() < 2 && cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    if (s_offers_at_a() < 2) {
        fprintf(stderr, "# offers did not reach A (logs in %s)\n", g.dir);
        return -1;
    }
    /* The known workload. */
    for (int i = 0; i < N_LEASES; i++) {
        char id[32];
        snprintf(id, sizeof id, "lease-%d", i);
        if (s_submit(id, "H100-80GB", g.lease_ids[i]) != CPN_OK)
            return -1;
    }
    for (int i = 0; i < N_REFUSED; i++) {
        char id[32];
        snprintf(id, sizeof id, "nothing-%d", i);
        if (s_submit(id, "B200", NULL) != CPN_E_NO_MATCH)
            return -1;
    }
    return s_send_garbage() ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (g.prom_dir[0]) {
        char script[1200];
        s_script(script, sizeof script, "prometheus.sh");
        s_run((char *const[]){script, "stop", g.prom_dir, NULL});
        s_run((char *const[]){"/bin/rm", "-rf", g.prom_dir, NULL});
    }
    for (int i = 0; i < P__COUNT; i++)
        clean = h_stop(&g.p[i].pid, STOP_MS) && clean;
    /* exit 0: the listener stopped cleanly */
    clean = h_brokers_stop(g.b, B__COUNT, STOP_MS) && clean;
    for (int i = 0; i < P__COUNT; i++)
        cpn_identity_destroy(&g.p[i].id);
    cpn_identity_destroy(&g.acme);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

/* ---- the cases ---- */

static om_doc_t *s_scrape(int port)
{
    h_http_t h;
    om_doc_t *d = malloc(sizeof *d);
    assert_non_null(d);
    assert_true(h_http("GET", port, "/metrics", NULL, &h));
    assert_int_equal(h.status, 200);
    assert_string_equal(h.type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    if (!om_parse(h.body, h.len, d))
        fail_msg("/metrics on port %d does not parse: %s", port, d->error);
    h_http_free(&h);
    return d;
}

static double s_val(const om_doc_t *d, const char *name, const char *label, const char *value)
{
    double v = -1;
    if (!om_find(d, name, label, value, &v))
        fail_msg("no sample %s{%s=\"%s\"}", name, label ? label : "", value ? value : "");
    return v;
}

/* The broker's and the peer's /metrics, parsed back under OpenMetrics's rules. */
static void test_metrics_text(void **state)
{
    (void)state;
    om_doc_t *d = s_scrape(g.http_a);
    assert_true(s_val(d, "cpn_broker_requests_total", NULL, NULL) == N_LEASES + N_REFUSED);
    assert_true(s_val(d, "cpn_broker_grants_total", NULL, NULL) == N_LEASES);
    assert_true(s_val(d, "cpn_broker_nacks_total", "code", "no-match") == N_REFUSED);
    assert_true(s_val(d, "cpn_broker_refusals_total", "code", "malformed") == N_GARBAGE);
    assert_true(s_val(d, "cpn_broker_leases_active", NULL, NULL) == N_LEASES);
    assert_true(s_val(d, "cpn_broker_units_leased", NULL, NULL) == N_LEASES);
    assert_true(s_val(d, "cpn_broker_request_to_lease_seconds_count", NULL, NULL) == N_LEASES);
    assert_true(s_val(d, "cpn_broker_match_seconds_count", NULL, NULL) == N_LEASES + N_REFUSED);
    assert_true(s_val(d, "cpn_broker_ledger_commit_seconds_count", NULL, NULL) >= 1);
    assert_true(s_val(d, "cpn_broker_offers", "model", "H100-80GB") == 1);
    assert_true(s_val(d, "cpn_broker_offers", "region", "cn-north") == 1); /* pb, via B */
    assert_true(s_val(d, "cpn_broker_free_units", "model", "H100-80GB") == H100_UNITS - N_LEASES);
    assert_true(s_val(d, "cpn_broker_federation_members_up", NULL, NULL) == 1);
    assert_true(s_val(d, "cpn_broker_federation_member_up", "member", "b") == 1);
    assert_true(s_val(d, "cpn_broker_federation_relays_received_total", "member", "b") >= 1);
    assert_true(s_val(d, "cpn_build_info", "program", "cpn-broker") == 1);
    free(d);

    /* The peer's link to A is up (it granted through it); wait for the gauge to say so. */
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    double up = -1;
    while ((d = s_scrape(g.p[P_A].http)) && !(om_find(d, "cpn_peer_brokers_up", NULL, NULL, &up) &&
                                             up == 1) &&
           cpn_mono_ms() < deadline) {
        free(d);
        usleep(POLL_MS * 1000);
    }
    assert_true(up == 1);
    assert_true(s_val(d, "cpn_peer_broker_up", "endpoint", g.b[B_A].endpoint) == 1);
    assert_true(s_val(d, "cpn_peer_lease_events_total", "event", "granted") == N_LEASES);
    assert_true(s_val(d, "cpn_peer_leases_active", NULL, NULL) == N_LEASES);
    assert_true(s_val(d, "cpn_peer_free_units", "package", "h100x8") == H100_UNITS - N_LEASES);
    assert_true(s_val(d, "cpn_peer_store_commit_seconds_count", NULL, NULL) >= 1);
    free(d);

    /* What is not a route, or not a GET: refused with its status, the daemon unharmed. */
    h_http_t h;
    assert_true(h_http("GET", g.http_a, "/nothing", NULL, &h));
    assert_int_equal(h.status, 404);
    h_http_free(&h);
    assert_true(h_http("POST", g.http_a, "/metrics", NULL, &h));
    assert_int_equal(h.status, 405);
    h_http_free(&h);
    assert_true(h_http("GET", g.p[P_A].http, "/", NULL, &h));
    assert_int_equal(h.status, 404);
    h_http_free(&h);
    assert_true(h_http("GET", g.http_a, "/metrics", "{\"x\": 1}", &h));
    assert_int_equal(h.status, 400); /* a body: read, dropped, refused */
    h_http_free(&h);
    assert_true(h_http("POST", g.http_a, "/api/state", "garbage\n\1\2", &h));
    assert_int_equal(h.status, 405);
    h_http_free(&h);
    assert_true(h_alive(&g.b[B_A].pid) && h_alive(&g.p[P_A].pid));
    d = s_scrape(g.http_a); /* and counted */
    assert_true(s_val(d, "cpn_http_responses_total", "class", "4xx") >= 4);
    assert_true(s_val(d, "cpn_http_responses_total", "class", "2xx") >= 1);
    free(d);
}

/* One PromQL query through Prometheus's HTTP API: the value of the first (only) series. */
static bool s_promql(const char *query, double *out)
{
    char path[1024] = "/api/v1/query?query=", *p = path + strlen(path);
    h_http_t h;
    for (const char *q = query; *q && p < path + sizeof path - 4; q++) {
        if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
            *q == '_')
            *p++ = *q;
        else
            p += sprintf(p, "%%%02X", (unsigned char)*q);
    }
    *p = '\0';
    if (!h_http("GET", g.prom_port, path, NULL, &h))
        return false;
    const char *v = h.status == 200 ? strstr(h.body, "\"value\":[") : NULL;
    v = v ? strstr(v, ",\"") : NULL;
    bool ok = v && sscanf(v + 2, "%lf", out) == 1;
    h_http_free(&h);
    return ok;
}

/* Wait (bounded) until `query` gives `want`; the last value seen. */
static double s_prom_wait(const char *query, double want)
{
    uint64_t deadline = cpn_mono_ms() + SCRAPE_MS;
    double v = -1;
    while (cpn_mono_ms() < deadline) {
        if (s_promql(query, &v) && v == want)
            break;
        usleep(POLL_MS * 1000);
    }
    fprintf(stderr, "# promql %s = %g\n", query, v);
    return v;
}

/* A real Prometheus scrapes A and pa; PromQL gives the workload's numbers. */
static void test_prometheus(void **state)
{
    (void)state;
    char script[1200], port[16], broker[64], peer[64];
    int n = snprintf(g.prom_dir, sizeof g.prom_dir, "%s-prometheus", g.dir);
    assert_true(n > 0 && (size_t)n < sizeof g.prom_dir);
    assert_int_equal(mkdir(g.prom_dir, 0700), 0);
    s_script(script, sizeof script, "prometheus.sh");
    g.prom_port = h_free_port(NULL);
    snprintf(port, sizeof port, "%d", g.prom_port);
    snprintf(broker, sizeof broker, "cpn-broker=127.0.0.1:%d", g.http_a);
    snprintf(peer, sizeof peer, "cpn-peer=127.0.0.1:%d", g.p[P_A].http);
    assert_int_equal(s_run((char *const[]){script, "start", g.prom_dir, port, broker, peer, NULL}),
                     0);
    /* Both targets scraped and parsed (up is 1 only if the text parsed), then the numbers. */
    assert_true(s_prom_wait("up{job=\"cpn-broker\"}", 1) == 1);
    assert_true(s_prom_wait("up{job=\"cpn-peer\"}", 1) == 1);
    assert_true(s_prom_wait("cpn_broker_grants_total", N_LEASES) == N_LEASES);
    assert_true(s_prom_wait("sum(cpn_broker_nacks_total{code=\"no-match\"})", N_REFUSED) ==
                N_REFUSED);
    assert_true(s_prom_wait("cpn_broker_leases_active", N_LEASES) == N_LEASES);
    assert_true(s_prom_wait("cpn_broker_refusals_total{code=\"malformed\"}", N_GARBAGE) ==
                N_GARBAGE);
    assert_true(s_prom_wait("cpn_broker_request_to_lease_seconds_count", N_LEASES) == N_LEASES);
    assert_true(s_prom_wait("cpn_broker_offers{model=\"Ascend-910B\",region=\"cn-north\"}", 1) ==
                1);
    assert_true(s_prom_wait("cpn_broker_federation_members_up", 1) == 1);
    assert_true(s_prom_wait("cpn_peer_lease_events_total{event=\"granted\"}", N_LEASES) ==
                N_LEASES);
    assert_true(s_prom_wait("cpn_peer_free_units{package=\"h100x8\"}", H100_UNITS - N_LEASES) ==
                H100_UNITS - N_LEASES);
    /* A histogram Prometheus understands: every request-to-lease under 10 s. */
    assert_true(s_prom_wait("cpn_broker_request_to_lease_seconds_bucket{le=\"10.0\"}",
                            N_LEASES) == N_LEASES);
}

static bool s_has(const char *dom, const char *what)
{
    if (strstr(dom, what))
        return true;
    fprintf(stderr, "# the DOM lacks: %s\n", what);
    return false;
}

/* The dashboard in headless Chromium: its DOM shows the broker's state; a screenshot stays. */
static void test_dashboard(void **state)
{
    (void)state;
    char script[1200], url[64], dom_path[400], shot[1200], want[256];
    h_http_t h;
    size_t len = 0;
    /* The JSON the page polls, and the page itself. */
    assert_true(h_http("GET", g.http_a, "/api/state", NULL, &h));
    assert_int_equal(h.status, 200);
    assert_string_equal(h.type, "application/json");
    assert_non_null(strstr(h.body, "\"grants\":3"));
    h_http_free(&h);
    assert_true(h_http("GET", g.http_a, "/", NULL, &h));
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(h.body, "/api/state"));
    /* Nothing fetched from outside: no address but the SVG namespace's (a name, not a fetch),
     * no script, style or image from elsewhere. */
    for (const char *u = h.body; (u = strstr(u, "http")) != NULL; u++)
        if (strncmp(u, "https://", 8) == 0 ||
            (strncmp(u, "http://", 7) == 0 && strncmp(u, "http://www.w3.org/2000/svg\"", 27)))
            fail_msg("the page names an outside address: %.60s", u);
    assert_null(strstr(h.body, "<script src"));
    assert_null(strstr(h.body, "<link"));
    assert_null(strstr(h.body, "@import"));
    h_http_free(&h);

    s_script(script, sizeof script, "chromium.sh");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", g.http_a);
    snprintf(dom_path, sizeof dom_path, "%s/dashboard.html", g.dir);
    assert_int_equal(s_run((char *const[]){script, "dom", url, dom_path, NULL}), 0);
    char *dom = s_slurp(dom_path, &len);
    assert_non_null(dom);
    bool ok = s_has(dom, "<body data-loaded=\"1\">") &&
              s_has(dom, "<tr data-member=\"b\" data-state=\"up\">") &&
              s_has(dom, "data-model=\"Ascend-910B\" data-region=\"cn-north\" data-free=\"8\"") &&
              s_has(dom, "data-code=\"no-match\" data-n=\"2\"") &&
              s_has(dom, "data-series=\"leased\" data-last=\"3\"");
    snprintf(want, sizeof want, "data-model=\"H100-80GB\" data-region=\"cn-east\" data-free=\"%d\"",
             H100_UNITS - N_LEASES);
    ok = s_has(dom, want) && ok;
    for (int i = 0; i < N_LEASES; i++) {
        snprintf(want, sizeof want, "<tr data-lease=\"%s\" data-state=\"active\">",
                 g.lease_ids[i]);
        ok = s_has(dom, want) && ok;
    }
    free(dom);
    assert_true(ok);

    /* The screenshot, kept beside the build for people (and README). */
    snprintf(shot, sizeof shot, "%s/dashboard.png", g.bin);
    unlink(shot);
    assert_int_equal(s_run((char *const[]){script, "shot", url, shot, NULL}), 0);
    char *png = s_slurp(shot, &len);
    assert_non_null(png);
    assert_true(len > 1000 && memcmp(png, "\x89PNG", 4) == 0);
    free(png);
    fprintf(stderr, "# screenshot: %s (%zu bytes)\n", shot, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_dashboard),
    };
    return cmocka_run_group_tests_name("observe", tests, s_setup, s_teardown);
}
