/* test_query.c - queries against a real cpn-broker: answers of any size in pages, and one
 * table of who may ask what, federation members included.
 *
 * Broker Q (frame_size 64 KiB) gets 2,500 packages from ten test peers (250 packages per AD:
 * one AD could not carry them all); broker S has frame_size 1 KiB, the smallest a policy
 * allows, and 40 packages. It shows (issue 10, defect 5; issue 12, "Federation members skip
 * policy_query_allowed"): the real `cpnctl offers` lists every one of the 2,500 packages
 * exactly once, as JSON and as a table (it got no answer at all above about 500); QUERY with
 * `limit` and `after` walks the book in key order, every page within the frame limit, each
 * package exactly once even when a peer re-advertises between pages, and pages of 3 rows give
 * the order byte-bounded ones give; a tenant's 30 leases (in Q's real SQLite ledger) come in
 * pages of 7, newest first, each once, and `cpnctl leases` lists them all; a bad cursor is NACKed
 * with a reason; S answers in pages of at most 1 KiB (it used to send one frame larger than
 * its own limit); a member asking an unknown `what` or a tenant's `leases` is refused (it
 * used to get the federation rows), while it may still ask status and offers; a tenant asking
 * an operator's query or an unknown one is refused with the code and a reason.
 *
 * Every wait is bounded; every process started is stopped in the group teardown (and gets
 * SIGKILL from the kernel should this test die first: PR_SET_PDEATHSIG).
 * CPN_TEST_KEEP=1 keeps the temporary directory (configs, logs, databases).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "ledger.h"
#include "msg.h"
#include "msg_typed.h"

#define WAIT_MS 10000  /* one answer from a broker */
#define READY_MS 30000 /* a daemon up, the ADs in its book (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL (sanitizers on a loaded machine are slow)  \
                        */
#define CTL_MS 120000  /* one cpnctl run, all its pages */
#define POLL_MS 100
#define PORT_TRIES 5
#ifndef N_PEERS /* -DN_PEERS=400 for a measurement with 100,000 packages */
#define N_PEERS 10
#endif
#define PKGS_PER_PEER 250
#define N_PKGS (N_PEERS * PKGS_PER_PEER)
#define S_PKGS 4    /* per AD to S */
#define N_LEASES 30 /* of tenant ten in Q's ledger */

enum { B_Q, B_S, B__COUNT };
enum { T_OPS, T_TEN, T_MEM, T__COUNT };

static struct {
    char dir[256], bin[1024];
    struct {
        const char *name, *long_name; /* key files, logs; policy broker.name if set */
        unsigned frame_kib;
        cpn_identity_t *id;
        int port;
        char endpoint[64];
        pid_t pid;
        ctl_client_t *cli[T__COUNT];
    } b[B__COUNT];
    const char *tname[T__COUNT];
    cpn_identity_t *t[T__COUNT];
    cpn_identity_t *peer[N_PEERS];
    ctl_client_t *pcli[B__COUNT][N_PEERS];
    uint64_t pseq[B__COUNT][N_PEERS];
} g = {
    .b = {{.name = "q", .frame_kib = 64},
          {.name = "s",
           .frame_kib = 1,
           .long_name = "s-a-broker-whose-name-fills-most-of-its-63-chars"}},
    .tname = {"ops", "ten", "mem"},
};

/* ---- files and processes ---- */

/* ops is an operator, ten a plain tenant, mem a federation member (nothing listens at its
 * endpoint: the test itself speaks as mem); any peer key is trusted. */
static void s_write_policy(int b)
{
    char key[64], ledger[64], file[64], limits[128];
    snprintf(key, sizeof key, "%s.key", g.b[b].name);
    snprintf(ledger, sizeof ledger, "%s-ledger.db", g.b[b].name);
    snprintf(file, sizeof file, "%s.yaml", g.b[b].name);
    snprintf(limits, sizeof limits,
             "  frame_size: %uKiB\n"
             "  rate:\n"
             "    per_sender: 0/s\n",
             g.b[b].frame_kib);
    h_write_policy(g.dir, &(h_policy_t){
                              .file = file,
                              .name = g.b[b].long_name ? g.b[b].long_name : g.b[b].name,
                              .key = key,
                              .listen = g.b[b].endpoint,
                              .ledger = ledger,
                              .members = {{"mem", "tcp://127.0.0.1:9"}},
                              .operators = "ops",
                              .tenants = "ten",
                              .limits = limits,
                          });
}

static void s_clients_close(int b)
{
    for (int t = 0; t < T__COUNT; t++)
        ctl_client_destroy(&g.b[b].cli[t]);
}

static bool s_start_broker(int b)
{
    for (int attempt = 0; attempt < PORT_TRIES; attempt++) {
        g.b[b].port = h_free_port(NULL);
        if (g.b[b].port <= 0)
            continue;
        snprintf(g.b[b].endpoint, sizeof g.b[b].endpoint, "tcp://127.0.0.1:%d", g.b[b].port);
        s_write_policy(b);
        for (int t = 0; t < T__COUNT; t++)
            assert_int_equal(ctl_client_new(g.b[b].endpoint, g.t[t], cpn_identity_pk(g.b[b].id),
                                            true, &g.b[b].cli[t]),
                             CPN_OK);
        g.b[b].pid = h_start(g.bin, g.dir, "cpn-broker", g.b[b].name);
        /* mem asks: S's status map is larger than its page, a member may not ask leases:
         * federation rows (an empty array on a fresh broker) say it is up. */
        uint64_t deadline = cpn_mono_ms() + READY_MS;
        while (cpn_mono_ms() < deadline && h_alive(&g.b[b].pid)) {
            h_ans_t a;
            cpn_msg_type_t type = h_query(g.b[b].cli[T_OPS], "federation", 500, &a);
            h_ans_free(&a);
            if (type == CPN_MSG_STATUS)
                return true;
        }
        h_stop(&g.b[b].pid, STOP_MS);
        s_clients_close(b);
    }
    return false;
}

/* ---- peers: the test advertises as ten peers ---- */

/* Peer i's AD to broker b: 250 packages "pkg-iii-kkk" of 4 cores (to S: 4, its frames are
 * 1 KiB); `free` differs per AD, so a newer AD changes what the rows say, not which rows
 * there are. */
static void s_advertise(int b, int i, uint32_t free_units)
{
    int n_pkgs = b == B_Q ? PKGS_PER_PEER : S_PKGS;
    static cpn_package_t pk[PKGS_PER_PEER];
    memset(pk, 0, sizeof pk);
    for (int k = 0; k < n_pkgs; k++) {
        snprintf(pk[k].id, sizeof pk[k].id, "pkg-%03d-%03d", i, k);
        snprintf(pk[k].region, sizeof pk[k].region, "cn-east");
        pk[k].cores = 4;
        pk[k].mem_bytes = 8ull << 30;
        pk[k].price = 1000 + (uint64_t)k;
        pk[k].total = 10;
        pk[k].free = free_units;
    }
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "bulk-%d", i);
    ad.ttl_s = 3600;
    ad.n_packages = (uint32_t)n_pkgs;
    ad.packages = pk;
    uint64_t now = cpn_now_ms();
    g.pseq[b][i] = cpn_seq_next(g.pseq[b][i], now);
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_msg_build(g.peer[i], CPN_MSG_AD, g.pseq[b][i], now, &ad, &frame, &len),
                     CPN_OK);
    assert_true(len <= g.b[b].frame_kib * 1024);
    if (!g.pcli[b][i])
        assert_int_equal(ctl_client_new(g.b[b].endpoint, g.peer[i], cpn_identity_pk(g.b[b].id),
                                        true, &g.pcli[b][i]),
                         CPN_OK);
    assert_int_equal(ctl_client_send_frame(g.pcli[b][i], frame, len), CPN_OK);
    free(frame);
}

/* The `packages` counter of b's status. */
static uint64_t s_packages(int b)
{
    h_ans_t a;
    uint64_t n = 0;
    if (h_query(g.b[b].cli[T_OPS], "status", WAIT_MS, &a) == CPN_MSG_STATUS)
        n = h_u64(h_get(&a.obj, "packages"));
    h_ans_free(&a);
    return n;
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    for (int b = 0; b < B__COUNT; b++)
        for (int i = 0; i < N_PEERS; i++)
            ctl_client_destroy(&g.pcli[b][i]);
    for (int b = 0; b < B__COUNT; b++) {
        s_clients_close(b);
        clean = h_stop(&g.b[b].pid, STOP_MS) && clean;
        cpn_identity_destroy(&g.b[b].id);
    }
    for (int t = 0; t < T__COUNT; t++)
        cpn_identity_destroy(&g.t[t]);
    for (int i = 0; i < N_PEERS; i++)
        cpn_identity_destroy(&g.peer[i]);
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "query") != 0)
        return -1;
    for (int b = 0; b < B__COUNT; b++)
        h_keygen(g.dir, g.b[b].name, &g.b[b].id);
    for (int t = 0; t < T__COUNT; t++)
        h_keygen(g.dir, g.tname[t], &g.t[t]);
    for (int i = 0; i < N_PEERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "bulk-%d", i);
        h_keygen(g.dir, name, &g.peer[i]);
    }
    /* Q's ledger, written before Q opens it: ten's leases, three to a start time. */
    char path[400];
    ledger_t *lg = NULL;
    h_path(path, sizeof path, g.dir, "q-ledger.db");
    assert_int_equal(ledger_open(path, &lg), CPN_OK);
    for (int i = 0; i < N_LEASES; i++) {
        ledger_lease_t l;
        memset(&l, 0, sizeof l);
        snprintf(l.lease_id, sizeof l.lease_id, "L%02d", i);
        memcpy(l.tenant, cpn_identity_pk(g.t[T_TEN]), CPN_PK_LEN);
        memcpy(l.peer, cpn_identity_pk(g.peer[i % 2]), CPN_PK_LEN);
        snprintf(l.package, sizeof l.package, "pkg-000-000");
        l.units = 1;
        l.price = 1000;
        l.start_ms = cpn_now_ms() - 60000 + (uint64_t)(i / 3) * 1000;
        l.end_ms = l.start_ms + 3600000;
        snprintf(l.request_id, sizeof l.request_id, "r%02d", i);
        assert_int_equal(ledger_record_grant(lg, &l, NULL, 0), CPN_OK);
    }
    ledger_destroy(&lg);
    for (int b = 0; b < B__COUNT; b++)
        if (!s_start_broker(b)) {
            fprintf(stderr, "# cpn-broker %s did not come up\n", g.b[b].name);
            return -1;
        }
    for (int i = 0; i < N_PEERS; i++) {
        s_advertise(B_Q, i, 5);
        s_advertise(B_S, i, 5);
    }
    uint64_t deadline = cpn_mono_ms() + READY_MS;
    while ((s_packages(B_Q) != N_PKGS || s_packages(B_S) != N_PEERS * S_PKGS) &&
           cpn_mono_ms() < deadline)
        usleep(POLL_MS * 1000);
    if (s_packages(B_Q) != N_PKGS || s_packages(B_S) != N_PEERS * S_PKGS) {
        fprintf(stderr, "# the ADs did not reach the books\n");
        return -1;
    }
    return 0;
}

/* ---- cpnctl, the real binary ---- */

/* Run cpnctl with `args` (NULL-terminated, after the connection options) on Q with the secret
 * key file `key`; its stdout goes to `out`. Returns its exit status, -1 if it did not end
 * within CTL_MS. */
static int s_cpnctl_as(const char *out, const char *key, const char *const *args)
{
    char prog[1200], pub[320];
    snprintf(prog, sizeof prog, "%s/cpnctl", g.bin);
    h_path(pub, sizeof pub, g.dir, "q.pub");
    const char *argv[16] = {prog,    "--broker", g.b[B_Q].endpoint, "--broker-key", pub,
                            "--key", key,        "--plain",         "--timeout",    "20"};
    size_t n = 10;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(127);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    uint64_t deadline = cpn_mono_ms() + CTL_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (cpn_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(20 * 1000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_cpnctl(const char *out, const char *const *args)
{
    char key[320];
    h_path(key, sizeof key, g.dir, "ops.key");
    return s_cpnctl_as(out, key, args);
}

static char *s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 1 << 22;
    char *buf = malloc(cap);
    assert_non_null(buf);
    *len = fread(buf, 1, cap - 1, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static int s_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every package id of the book exactly once among `ids`. */
static void s_all_once(char **ids, size_t n)
{
    assert_int_equal(n, N_PKGS);
    qsort(ids, n, sizeof ids[0], s_strcmp);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "pkg-%03zu-%03zu", i / PKGS_PER_PEER, i % PKGS_PER_PEER);
        assert_string_equal(ids[i], want);
    }
}

/* `cpnctl --json offers`: one JSON array with every package once; as a table: a header and
 * one line per package. */
static void test_cpnctl_offers_all(void **state)
{
    (void)state;
    char out[400];
    h_path(out, sizeof out, g.dir, "offers.json");
    const char *json[] = {"--json", "offers", NULL};
    uint64_t t0 = cpn_mono_ms();
    assert_int_equal(s_cpnctl(out, json), 0);
    fprintf(stderr, "# cpnctl --json offers: %d rows in %" PRIu64 " ms\n", N_PKGS,
            cpn_mono_ms() - t0);
    size_t len = 0;
    char *text = s_slurp(out, &len);
    assert_true(len > 2 && text[0] == '[' && strcmp(text + len - 2, "]\n") == 0);
    char **ids = calloc(N_PKGS + 1, sizeof *ids);
    size_t n = 0;
    for (char *p = text; (p = strstr(p, "\"package\": \"")) != NULL && n <= N_PKGS;) {
        p += strlen("\"package\": \"");
        char *end = strchr(p, '"');
        assert_non_null(end);
        *end = 0;
        ids[n++] = p;
        p = end + 1;
    }
    s_all_once(ids, n);
    free(ids);
    free(text);

    h_path(out, sizeof out, g.dir, "offers.txt");
    const char *table[] = {"offers", NULL};
    assert_int_equal(s_cpnctl(out, table), 0);
    text = s_slurp(out, &len);
    size_t lines = 0, rows = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    for (char *p = text; (p = strstr(p, "pkg-")) != NULL; p++)
        rows++;
    assert_int_equal(lines, N_PKGS + 1);
    assert_int_equal(rows, N_PKGS);
    assert_true(strncmp(text, "peer ", 5) == 0);
    free(text);
}

/* One QUERY page: the STATUS (a->obj, and its `next`) or the refusal. */
static cpn_msg_type_t s_page(int b, int t, const char *what, const char *after, uint32_t limit,
                             h_ans_t *a, char next[CPN_CURSOR_MAX])
{
    cpn_query_t q;
    uint64_t seq = 0;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "%s", what);
    snprintf(q.after, sizeof q.after, "%s", after);
    q.limit = limit;
    assert_int_equal(ctl_client_send(g.b[b].cli[t], CPN_MSG_QUERY, &q, &seq), CPN_OK);
    cpn_msg_type_t type = h_await(g.b[b].cli[t], seq, NULL, what, WAIT_MS, a);
    next[0] = 0;
    if (type == CPN_MSG_STATUS) {
        cpn_status_t st;
        cpn_limits_t lim = h_big_limits();
        memset(&st, 0, sizeof st);
        assert_int_equal(cpn_status_decode(&a->env, &lim, &st), CPN_OK);
        snprintf(next, CPN_CURSOR_MAX, "%s", st.next);
    }
    return type;
}

/* Walk `offers` in pages of `limit` rows (0: as many as fit); bulk-3 re-advertises after the
 * first page. Every page fits the frame limit; cursors rise; each package comes once. */
static size_t s_walk(uint32_t limit)
{
    char after[CPN_CURSOR_MAX] = "", next[CPN_CURSOR_MAX];
    char **ids = calloc(N_PKGS + 1, sizeof *ids);
    size_t n = 0, pages = 0;
    for (; pages < 100; pages++) {
        h_ans_t a;
        assert_int_equal(s_page(B_Q, T_OPS, "offers", after, limit, &a, next), CPN_MSG_STATUS);
        assert_true(a.len <= 64 * 1024);
        assert_int_equal(a.obj.type, MSGPACK_OBJECT_ARRAY);
        uint32_t rows = a.obj.via.array.size;
        assert_true(rows > 0 && (limit == 0 || rows <= limit));
        for (uint32_t i = 0; i < rows && n <= N_PKGS; i++) {
            const msgpack_object *p = h_get(&a.obj.via.array.ptr[i], "package");
            assert_non_null(p);
            assert_int_equal(p->type, MSGPACK_OBJECT_STR);
            ids[n++] = strndup(p->via.str.ptr, p->via.str.size);
        }
        h_ans_free(&a);
        if (!next[0])
            break;
        assert_true(strcmp(next, after) > 0);
        snprintf(after, sizeof after, "%s", next);
        if (pages == 0)
            s_advertise(B_Q, 3, 4);
    }
    s_all_once(ids, n);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return pages + 1;
}

/* The first n package ids of the `offers` listing, walked in pages of `limit` rows. */
static void s_first(uint32_t limit, size_t n, char **ids)
{
    char after[CPN_CURSOR_MAX] = "", next[CPN_CURSOR_MAX];
    size_t got = 0;
    for (size_t pages = 0; got < n && pages < n; pages++) {
        h_ans_t a;
        assert_int_equal(s_page(B_Q, T_OPS, "offers", after, limit, &a, next), CPN_MSG_STATUS);
        for (uint32_t i = 0; i < a.obj.via.array.size && got < n; i++) {
            const msgpack_object *p = h_get(&a.obj.via.array.ptr[i], "package");
            assert_non_null(p);
            ids[got++] = strndup(p->via.str.ptr, p->via.str.size);
        }
        h_ans_free(&a);
        assert_true(next[0] || got == n);
        snprintf(after, sizeof after, "%s", next);
    }
    assert_int_equal(got, n);
}

static void test_pages(void **state)
{
    (void)state;
    /* Pages of fewer rows than there are peers, across a peer's last package: the same order
     * as byte-bounded pages. */
    char *small[PKGS_PER_PEER + 10], *big[PKGS_PER_PEER + 10];
    s_first(3, PKGS_PER_PEER + 10, small);
    s_first(0, PKGS_PER_PEER + 10, big);
    for (size_t i = 0; i < PKGS_PER_PEER + 10; i++) {
        assert_string_equal(small[i], big[i]);
        free(small[i]);
        free(big[i]);
    }
    assert_int_equal(s_walk(100), N_PKGS / 100);
    size_t pages = s_walk(0); /* bounded by bytes: 64 KiB frames */
    fprintf(stderr, "# 2,500 offers: %zu pages of at most 64 KiB\n", pages);
    assert_true(pages >= 3 && pages < N_PKGS / 100);
    /* A cursor that is not one is refused, with the code and a reason. */
    h_ans_t a;
    char next[CPN_CURSOR_MAX];
    assert_int_equal(s_page(B_Q, T_OPS, "offers", "nonsense", 0, &a, next), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_INVAL);
    assert_non_null(strstr(a.reason, "cursor"));
    h_ans_free(&a);
    assert_int_equal(s_page(B_Q, T_TEN, "leases", "1/zz/L", 0, &a, next), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_INVAL);
    h_ans_free(&a);
    /* An old client's QUERY (no paging fields) gets the first page and a cursor. */
    assert_int_equal(h_query(g.b[B_Q].cli[T_OPS], "offers", WAIT_MS, &a), CPN_MSG_STATUS);
    assert_true(a.obj.via.array.size > 0 && a.obj.via.array.size < N_PKGS);
    h_ans_free(&a);
}

/* ten's 30 leases in pages of 7: newest first, each once; the real `cpnctl leases` lists
 * them all. */
static void test_lease_pages(void **state)
{
    (void)state;
    char after[CPN_CURSOR_MAX] = "", next[CPN_CURSOR_MAX], seen[N_LEASES] = {0};
    size_t rows = 0, pages = 0;
    for (; pages < 10; pages++) {
        h_ans_t a;
        assert_int_equal(s_page(B_Q, T_TEN, "leases", after, 7, &a, next), CPN_MSG_STATUS);
        assert_true(a.obj.via.array.size <= 7);
        for (uint32_t i = 0; i < a.obj.via.array.size; i++) {
            const msgpack_object *l = h_get(&a.obj.via.array.ptr[i], "lease");
            assert_non_null(l);
            char id[8] = "";
            assert_true(l->type == MSGPACK_OBJECT_STR && l->via.str.size == 3);
            memcpy(id, l->via.str.ptr + 1, 2);
            int k = atoi(id);
            assert_true(k >= 0 && k < N_LEASES && !seen[k]);
            /* newest start first: L27-L29 start last, L00-L02 first */
            assert_int_equal(k / 3, (N_LEASES - 1 - (int)rows) / 3);
            seen[k] = 1;
            rows++;
        }
        h_ans_free(&a);
        if (!next[0])
            break;
        snprintf(after, sizeof after, "%s", next);
    }
    assert_int_equal(rows, N_LEASES);
    assert_int_equal(pages + 1, (N_LEASES + 6) / 7);

    char out[400], key[320];
    h_path(out, sizeof out, g.dir, "leases.json");
    h_path(key, sizeof key, g.dir, "ten.key");
    const char *json[] = {"--json", "leases", NULL};
    assert_int_equal(s_cpnctl_as(out, key, json), 0);
    size_t len = 0;
    char *text = s_slurp(out, &len);
    size_t n = 0;
    for (char *p = text; (p = strstr(p, "\"lease\": \"L")) != NULL; p++)
        n++;
    assert_int_equal(n, N_LEASES);
    free(text);
}

/* S's frames are at most 1 KiB (its policy's frame_size: what its members' links accept):
 * its 40 offers (about 8 KiB) come in pages that each fit, and the status map fits too. (The
 * smallest page, 1024 - 480 bytes, holds any single row these queries have, so NACK
 * too-long for a row alone is tested on broker/page.c in tests/test_page.c.) */
static void test_small_frames(void **state)
{
    (void)state;
    h_ans_t a;
    char after[CPN_CURSOR_MAX] = "", next[CPN_CURSOR_MAX];
    size_t rows = 0, pages = 0;
    for (; pages < 100; pages++) {
        assert_int_equal(s_page(B_S, T_OPS, "offers", after, 0, &a, next), CPN_MSG_STATUS);
        assert_true(a.len <= 1024);
        assert_true(a.obj.via.array.size > 0);
        rows += a.obj.via.array.size;
        h_ans_free(&a);
        if (!next[0])
            break;
        snprintf(after, sizeof after, "%s", next);
    }
    assert_int_equal(rows, N_PEERS * S_PKGS);
    assert_true(pages >= 8);
    assert_int_equal(s_page(B_S, T_OPS, "status", "", 0, &a, next), CPN_MSG_STATUS);
    assert_true(a.len <= 1024);
    assert_non_null(h_get(&a.obj, "refused"));
    h_ans_free(&a);
}

/* Who may ask what: the one table, for tenants and members alike. */
static void test_who_may_ask(void **state)
{
    (void)state;
    static const struct {
        int t;
        const char *what;
        int code; /* 0: a STATUS */
    } cases[] = {
        {T_MEM, "secrets", CPN_E_INVAL}, /* used to get the federation rows */
        {T_MEM, "leases", CPN_E_ROLE},   /* a member has no leases to list */
        {T_MEM, "status", 0},
        {T_MEM, "offers", 0},
        {T_MEM, "federation", 0},
        {T_TEN, "offers", CPN_E_ROLE},
        {T_TEN, "federation", CPN_E_ROLE},
        {T_TEN, "secrets", CPN_E_INVAL},
        {T_TEN, "status", 0},
        {T_TEN, "leases", 0},
        {T_OPS, "offers", 0},
        {T_TEN, "usage", 0},          /* its own USAGE records (none here: an empty page) */
        {T_OPS, "usage", 0},          /* an operator's: every tenant's */
        {T_MEM, "usage", CPN_E_ROLE}, /* a member has no records to bill */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        h_ans_t a;
        char next[CPN_CURSOR_MAX];
        cpn_msg_type_t type = s_page(B_Q, cases[i].t, cases[i].what, "", 0, &a, next);
        if (cases[i].code == 0)
            assert_int_equal(type, CPN_MSG_STATUS);
        else {
            if (type != CPN_MSG_NACK)
                fprintf(stderr, "# %s asking %s: %s\n", g.tname[cases[i].t], cases[i].what,
                        cpn_msg_name(type));
            assert_int_equal(type, CPN_MSG_NACK);
            assert_int_equal(a.code, cases[i].code);
            assert_true(strlen(a.reason) > 10);
        }
        h_ans_free(&a);
    }
    /* A usage cursor that does not parse. */
    h_ans_t a;
    char next[CPN_CURSOR_MAX];
    assert_int_equal(s_page(B_Q, T_TEN, "usage", "nothex/1/L", 0, &a, next), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_INVAL);
    h_ans_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpnctl_offers_all), cmocka_unit_test(test_pages),
        cmocka_unit_test(test_lease_pages),       cmocka_unit_test(test_small_frames),
        cmocka_unit_test(test_who_may_ask),
    };
    return cmocka_run_group_tests_name("query", tests, s_setup, s_teardown);
}
