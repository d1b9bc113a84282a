/* test_metering_e2e.c - metering end to end in real daemons (issue 14, "Done when"): USAGE
 * records made by the peers, taken and countersigned by the brokers, carried across the
 * federation to the tenants' brokers, fetched by the tenants with `cpnctl bill` and checked
 * offline.
 *
 * Three cpn-broker processes (A, B, C, members of each other), one cpn-peer at each, one
 * tenant at each; the peer at B is the cheapest, so the tenant of B leases locally and the
 * tenants of A and C lease across the federation (the record goes peer -> B -> A or C). The
 * phases, one function each so that other checks (settlement) can reuse the set-up:
 *   mt_start      write keys, policies and peer configs; start the daemons; wait for offers
 *   mt_lease      each tenant submits its share of CPN_METER_LEASES leases (default 1,500) of
 *                 8..11 s, pipelined; every request ends with a GRANT (one answered in-doubt
 *                 by a loaded peer is sent again after claim_timeout: still one lease)
 *   mt_change     of the later half of each tenant's leases, one in 5 is renewed (+3 s), one
 *                 in 7 released early (one that ended meanwhile is refused `expired`)
 *   mt_kill_peer  the peer at B is killed with -9 mid-period and started again
 *   mt_settle     wait (bounded) until every lease has ended, every peer's records are
 *                 taken (RECEIPTs held) and no broker has records left to carry on
 *   mt_bills      each tenant's `cpnctl bill --save` from its broker; `cpnctl verify-bill`
 *                 accepts it; per tenant, the bill's total and record count equal those of
 *                 the records in the peers' SQLite files (decoded, signature checked), and
 *                 so do the sums over all tenants, to the thousandth
 *   mt_tamper     a bill with one byte of a record altered, or with a record dropped from the
 *                 middle of a chain, is refused by `cpnctl verify-bill`
 *   mt_hostile    the peers stopped, the test speaks as them: a record sent again is taken
 *                 again (RECEIPT naming its hash); a second version of a record, a record
 *                 beyond the lease's last (records missing before it, after its final
 *                 one), and another peer's record are refused with ERROR (inconsistent,
 *                 inconsistent, untrusted) and counted in `status`
 *   mt_statements every pair of brokers settles the month with `cpnctl settle`: each one's
 *                 statement says what the peers' records say its tenant used at the other's
 *                 peer, to the thousandth, and the two reconcile both ways; a record dropped
 *                 from B's ledger and another's amount altered are named lease by lease
 * CPN_METER_LEASES sets the number of leases (scripts/check's long mode raises it);
 * CPN_TEST_KEEP=1 keeps the directory. Every wait is bounded and waits for a positive event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "ctl_bill.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"
#include "usage.h"

#define MT_BROKERS 3
#define MT_LEASES_DEFAULT 1500
#define MT_LEASES_MAX 100000
#define MT_WAIT_MS 30000   /* all answers of one batch of requests, plus MT_PER_LEASE_MS each */
#define MT_PER_LEASE_MS 20 /* a bound on the time one lease takes, on a loaded machine */
#define MT_RUN_MS 60000    /* cpnctl run to its end (h_run), plus MT_PER_LEASE_MS a lease */
#define MT_READY_MS 30000  /* a daemon up, offers relayed */
#define MT_SETTLE_MS 90000 /* every lease ended and every record delivered (+ per lease) */
#define MT_STOP_MS 30000
#define MT_POLL_MS 200
#define MT_ROUNDS 4             /* rounds of sending the requests answered in-doubt again */
#define MT_DOUBT_WAIT_MS 11000 /* between rounds: past the policy's claim_timeout (10s) */
#define MT_INTERVAL "1s" /* the peers' usage_interval */

typedef struct {
    const char *name; /* broker a, b, c; its tenant ta, tb, tc; its peer pa, pb, pc */
    char endpoint[64];
    char policy[400], ledger[400], log[400];
    char peer_cfg[400], peer_db[400], peer_log[400];
    const char *price;
    cpn_identity_t *key, *peer_key;
    pid_t pid, peer_pid;
    h_tenant_t t;
    size_t n_leases;
    char (*lease_ids)[CPN_NAME_MAX]; /* the tenant's leases, in request order */
    uint64_t peer_sum;               /* from the peers' records of this tenant */
    size_t peer_records;
} mt_broker_t;

typedef struct {
    char dir[256], bin[1024];
    bool clean;
    size_t n_leases;
    mt_broker_t b[MT_BROKERS];
} mt_t;

static mt_t g = {
    .b = {{.name = "a", .price = "600.0", .t = {.name = "ta"}},
          {.name = "b", .price = "500.0", .t = {.name = "tb"}},
          {.name = "c", .price = "700.0", .t = {.name = "tc"}}},
};

enum { B_A, B_B, B_C };

/* ---- mt_start ---- */

static void s_write_policy(mt_broker_t *b)
{
    char file[64], peers[64] = "";
    h_policy_t p = {
        .name = b->name,
        .listen = b->endpoint,
        .ledger = b->ledger,
        .hello_s = 3,
        .tenants = b->t.name,
        .limits = "  claim_timeout: 10s\n"
                  "  rate:\n"
                  "    per_sender: 0\n",
    };
    size_t n = 0;
    for (int i = 0; i < MT_BROKERS; i++) {
        if (&g.b[i] != b)
            p.members[n++] = (h_member_t){.name = g.b[i].name, .endpoint = g.b[i].endpoint};
        /* Every peer is trusted everywhere: a member relays the others' ADs. */
        size_t len = strlen(peers);
        snprintf(peers + len, sizeof peers - len, "%sp%s", len ? " " : "", g.b[i].name);
    }
    p.peers = peers;
    h_write_policy(g.dir, &p);
    snprintf(file, sizeof file, "%s.yaml", b->name);
    h_path(b->policy, sizeof b->policy, g.dir, file);
}

static void s_write_peer(mt_broker_t *b)
{
    char file[80], name[64], pkgs[256] = "";
    snprintf(name, sizeof name, "p%s", b->name);
    h_package(pkgs, sizeof pkgs, "cpu", (unsigned)(g.n_leases + 16), b->price, 8, "32GiB");
    h_write_peer_conf(g.dir, &(h_peer_conf_t){.name = name,
                                              .database = b->peer_db,
                                              .refresh = "1s",
                                              .more = "usage_interval: " MT_INTERVAL "\n",
                                              .broker = b->endpoint,
                                              .broker_name = b->name,
                                              .packages = pkgs});
    snprintf(file, sizeof file, "%s.yaml", name);
    h_path(b->peer_cfg, sizeof b->peer_cfg, g.dir, file);
}

static void s_start_peer(mt_broker_t *b)
{
    b->peer_pid = h_spawn(g.bin, "cpn-peer", b->peer_cfg, b->peer_log);
    assert_true(b->peer_pid > 0);
}

/* Offers of all three peers in every broker's book (relayed by the members). */
static bool s_offers_everywhere(void)
{
    for (int i = 0; i < MT_BROKERS; i++) {
        h_ans_t a;
        if (h_query(g.b[i].t.cli, "status", 4000, &a) != CPN_MSG_STATUS)
            return false;
        uint64_t peers = h_u64(h_get(&a.obj, "peers"));
        h_ans_free(&a);
        if (peers < MT_BROKERS)
            return false;
    }
    return true;
}

static void mt_start(void)
{
    char name[64];
    for (int i = 0; i < MT_BROKERS; i++) {
        mt_broker_t *b = &g.b[i];
        int port = h_free_port(NULL);
        assert_true(port > 0);
        snprintf(b->endpoint, sizeof b->endpoint, "tcp://127.0.0.1:%d", port);
        h_keygen(g.dir, b->name, &b->key);
        snprintf(name, sizeof name, "p%s", b->name);
        h_keygen(g.dir, name, &b->peer_key);
        h_keygen(g.dir, b->t.name, &b->t.id);
        snprintf(name, sizeof name, "%s-ledger.db", b->name);
        h_path(b->ledger, sizeof b->ledger, g.dir, name);
        snprintf(name, sizeof name, "p%s.db", b->name);
        h_path(b->peer_db, sizeof b->peer_db, g.dir, name);
        snprintf(name, sizeof name, "%s.log", b->name);
        h_path(b->log, sizeof b->log, g.dir, name);
        snprintf(name, sizeof name, "p%s.log", b->name);
        h_path(b->peer_log, sizeof b->peer_log, g.dir, name);
        b->lease_ids = calloc(g.n_leases, sizeof *b->lease_ids);
        assert_non_null(b->lease_ids);
    }
    for (int i = 0; i < MT_BROKERS; i++) {
        s_write_policy(&g.b[i]);
        s_write_peer(&g.b[i]);
    }
    for (int i = 0; i < MT_BROKERS; i++) {
        mt_broker_t *b = &g.b[i];
        b->pid = h_spawn(g.bin, "cpn-broker", b->policy, b->log);
        assert_int_equal(
            ctl_client_new(b->endpoint, b->t.id, cpn_identity_pk(b->key), true, &b->t.cli), CPN_OK);
    }
    for (int i = 0; i < MT_BROKERS; i++)
        assert_true(h_wait_up(&g.b[i].pid, g.b[i].t.cli, MT_READY_MS));
    for (int i = 0; i < MT_BROKERS; i++)
        s_start_peer(&g.b[i]);
    uint64_t deadline = cpn_mono_ms() + MT_READY_MS;
    bool ok = false;
    while (!(ok = s_offers_everywhere()) && cpn_mono_ms() < deadline)
        usleep(MT_POLL_MS * 1000);
    assert_true(ok);
}

/* ---- mt_lease: each tenant's share, pipelined ---- */

static void s_lease_id_of(const h_ans_t *a, char out[CPN_NAME_MAX])
{
    cpn_limits_t lim = h_big_limits();
    cpn_grant_t gr;
    cpn_env_t lenv;
    cpn_lease_t l;
    assert_int_equal(cpn_msg_decode(&a->env, &lim, &gr), CPN_OK);
    assert_int_equal(cpn_env_open(gr.lease.ptr, gr.lease.len, &lim, &lenv), CPN_OK);
    assert_int_equal(cpn_msg_decode(&lenv, &lim, &l), CPN_OK);
    snprintf(out, CPN_NAME_MAX, "%s", l.lease_id);
}

/* Request k of broker i's tenant (the same id and terms each time it is sent). */
static void s_request(int i, size_t k, cpn_request_t *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s-%zu", g.b[i].t.name, k);
    r->units = 1;
    r->cores = 8;
    r->duration_s = 8 + (uint32_t)(k % 4);
}

/* One round's requests of one broker's tenant: those not granted yet (todo[k]). */
typedef struct {
    size_t n;
    uint64_t *seq;
    char (*ids)[CPN_NAME_MAX];
    const char **idp;
    size_t *k; /* the request each sent one is */
} s_round_t;

static void s_send_round(int i, size_t per, const bool *todo, s_round_t *rd)
{
    rd->n = 0;
    for (size_t k = 0; k < per; k++) {
        if (!todo[k])
            continue;
        cpn_request_t r;
        s_request(i, k, &r);
        size_t j = rd->n++;
        snprintf(rd->ids[j], sizeof rd->ids[j], "%s", r.id);
        rd->idp[j] = rd->ids[j];
        rd->k[j] = k;
        assert_int_equal(ctl_client_send(g.b[i].t.cli, CPN_MSG_REQUEST, &r, &rd->seq[j]), CPN_OK);
    }
}

/* The answers of broker i's round: a GRANT records the lease; `in-doubt` (a CLAIM timed out at
 * a loaded peer, PROTOCOL.md section 13) leaves the request to be sent again, as a client
 * must; anything else fails the test. */
static void s_take_round(int i, bool *todo, const s_round_t *rd, const char **whatp, h_ans_t *ans,
                         size_t *grants, size_t *doubts)
{
    mt_broker_t *b = &g.b[i];
    h_await_n(b->t.cli, rd->n, rd->seq, rd->idp, whatp, MT_WAIT_MS + g.n_leases * MT_PER_LEASE_MS,
              ans);
    for (size_t j = 0; j < rd->n; j++) {
        if (ans[j].type == CPN_MSG_GRANT) {
            s_lease_id_of(&ans[j], b->lease_ids[(*grants)++]);
            todo[rd->k[j]] = false;
        } else if (ans[j].type == CPN_MSG_NACK && ans[j].code == CPN_E_IN_DOUBT) {
            (*doubts)++;
        } else {
            fprintf(stderr, "# %s: %s (%s)\n", rd->ids[j], cpn_msg_name(ans[j].type),
                    ans[j].reason);
            fail();
        }
        h_ans_free(&ans[j]);
    }
}

/* Each tenant's share of the leases, all tenants at once (the three brokers and the federation
 * work in parallel), until every request is answered by a GRANT: one answered `in-doubt` is
 * sent again after the broker's claim_timeout and gets its one lease (exactly once), in at
 * most MT_ROUNDS rounds. */
static void mt_lease(void)
{
    size_t per = g.n_leases / MT_BROKERS;
    s_round_t rd[MT_BROKERS];
    bool *todo = calloc(MT_BROKERS * per, sizeof *todo);
    h_ans_t *ans = calloc(per, sizeof *ans);
    const char **whatp = calloc(per, sizeof *whatp); /* all NULL: answers are GRANTs or NACKs */
    assert_true(todo && ans && whatp);
    for (int i = 0; i < MT_BROKERS; i++) {
        rd[i].seq = calloc(per, sizeof *rd[i].seq);
        rd[i].ids = calloc(per, sizeof *rd[i].ids);
        rd[i].idp = calloc(per, sizeof *rd[i].idp);
        rd[i].k = calloc(per, sizeof *rd[i].k);
        assert_true(rd[i].seq && rd[i].ids && rd[i].idp && rd[i].k);
    }
    for (size_t x = 0; x < MT_BROKERS * per; x++)
        todo[x] = true;
    size_t grants[MT_BROKERS] = {0}, doubts = 0;
    for (int round = 0; round < MT_ROUNDS; round++) {
        if (round > 0) {
            if (doubts == 0)
                break;
            fprintf(stderr, "# round %d: %zu requests were in doubt, sent again\n", round, doubts);
            usleep(MT_DOUBT_WAIT_MS * 1000);
            doubts = 0;
        }
        for (int i = 0; i < MT_BROKERS; i++)
            s_send_round(i, per, todo + (size_t)i * per, &rd[i]);
        for (int i = 0; i < MT_BROKERS; i++)
            s_take_round(i, todo + (size_t)i * per, &rd[i], whatp, ans, &grants[i], &doubts);
    }
    for (int i = 0; i < MT_BROKERS; i++) {
        g.b[i].n_leases = grants[i];
        assert_int_equal(grants[i], per);
        free(rd[i].seq);
        free(rd[i].ids);
        free(rd[i].idp);
        free(rd[i].k);
    }
    free(todo);
    free(ans);
    free(whatp);
}

/* ---- mt_change: renewals and early releases ---- */

static void mt_change(void)
{
    for (int i = 0; i < MT_BROKERS; i++) {
        mt_broker_t *b = &g.b[i];
        size_t n = 0, cap = b->n_leases / 5 + b->n_leases / 7 + 2;
        uint64_t *seq = calloc(cap, sizeof *seq);
        assert_non_null(seq);
        for (size_t k = 0; k < b->n_leases && n < cap; k++) {
            /* Of the later half: those granted last have most of their time left. */
            bool late = k >= b->n_leases / 2;
            bool renew = late && k % 5 == 0, release = late && !renew && k % 7 == 0;
            if (!renew && !release)
                continue;
            if (renew) {
                cpn_renew_t rn;
                memset(&rn, 0, sizeof rn);
                snprintf(rn.lease_id, sizeof rn.lease_id, "%s", b->lease_ids[k]);
                memcpy(rn.peer, cpn_identity_pk(g.b[B_B].peer_key), CPN_PK_LEN);
                rn.extend_s = 3;
                assert_int_equal(ctl_client_send(b->t.cli, CPN_MSG_RENEW, &rn, &seq[n]), CPN_OK);
            } else {
                cpn_release_t rl;
                memset(&rl, 0, sizeof rl);
                snprintf(rl.lease_id, sizeof rl.lease_id, "%s", b->lease_ids[k]);
                memcpy(rl.peer, cpn_identity_pk(g.b[B_B].peer_key), CPN_PK_LEN);
                assert_int_equal(ctl_client_send(b->t.cli, CPN_MSG_RELEASE, &rl, &seq[n]), CPN_OK);
            }
            n++;
        }
        /* Answers are GRANTs (matched by the request id, which we do not track here) or a
         * NACK naming the seq: we wait for the broker to have passed them all on, bounded, by
         * counting what comes back. */
        size_t got = 0, refused = 0;
        uint64_t deadline = cpn_mono_ms() + MT_WAIT_MS;
        while (got < n && cpn_mono_ms() < deadline) {
            uint8_t *frame = NULL;
            size_t len = 0;
            cpn_env_t env;
            if (ctl_client_recv(b->t.cli, deadline, &frame, &len, &env) != CPN_OK)
                break;
            got += env.type == CPN_MSG_GRANT;
            /* A lease that ended before its renewal came is refused `expired`. */
            refused += env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR;
            got += env.type == CPN_MSG_NACK || env.type == CPN_MSG_ERROR;
            free(frame);
        }
        fprintf(stderr, "# %s: %zu renewals and releases, %zu refused\n", b->t.name, n, refused);
        assert_int_equal(got, n);
        free(seq);
    }
}

/* ---- mt_kill_peer: kill -9 mid-period, start again ---- */

static void mt_kill_peer(int i)
{
    mt_broker_t *b = &g.b[i];
    /* Mid-period: some records made, not all leases ended. */
    uint64_t deadline = cpn_mono_ms() + MT_READY_MS;
    while (h_db_int(b->peer_db, "SELECT COUNT(*) FROM usage", NULL) < 1 && cpn_mono_ms() < deadline)
        usleep(50 * 1000);
    assert_true(h_db_int(b->peer_db, "SELECT COUNT(*) FROM usage", NULL) >= 1);
    assert_int_equal(kill(b->peer_pid, SIGKILL), 0);
    deadline = cpn_mono_ms() + MT_STOP_MS;
    while (h_alive(&b->peer_pid) && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    assert_false(h_alive(&b->peer_pid));
    s_start_peer(b);
}

/* ---- mt_settle ---- */

static bool s_settled(void)
{
    for (int i = 0; i < MT_BROKERS; i++) {
        const mt_broker_t *b = &g.b[i];
        if (h_db_int(b->peer_db, "SELECT COUNT(*) FROM leases", NULL) !=
                h_db_int(b->peer_db, "SELECT COUNT(*) FROM meter WHERE done = 1", NULL) ||
            h_db_int(b->peer_db, "SELECT COUNT(*) FROM usage WHERE acked = 0", NULL) != 0 ||
            h_db_int(b->ledger, "SELECT COUNT(*) FROM usage WHERE relay = 1", NULL) != 0)
            return false;
    }
    return true;
}

static void mt_settle(void)
{
    uint64_t deadline = cpn_mono_ms() + MT_SETTLE_MS + g.n_leases * MT_PER_LEASE_MS;
    bool ok = false;
    while (!(ok = s_settled()) && cpn_mono_ms() < deadline)
        usleep(MT_POLL_MS * 1000);
    if (!ok)
        for (int i = 0; i < MT_BROKERS; i++)
            fprintf(stderr,
                    "# %s: leases %" PRId64 ", metered %" PRId64 ", unacked %" PRId64
                    ", to relay %" PRId64 "\n",
                    g.b[i].name, h_db_int(g.b[i].peer_db, "SELECT COUNT(*) FROM leases", NULL),
                    h_db_int(g.b[i].peer_db, "SELECT COUNT(*) FROM meter WHERE done = 1", NULL),
                    h_db_int(g.b[i].peer_db, "SELECT COUNT(*) FROM usage WHERE acked = 0", NULL),
                    h_db_int(g.b[i].ledger, "SELECT COUNT(*) FROM usage WHERE relay = 1", NULL));
    assert_true(ok);
}

/* ---- mt_bills ---- */

/* Sum the peers' records per tenant, from their SQLite files, each frame's signature
 * verified. */
static void s_peer_sums(void)
{
    for (int i = 0; i < MT_BROKERS; i++) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open_v2(g.b[i].peer_db, &db, SQLITE_OPEN_READONLY, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT frame FROM usage", -1, &st, NULL),
                         SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            cpn_env_t env;
            cpn_usage_t u;
            assert_int_equal(cpn_env_open(sqlite3_column_blob(st, 0),
                                          (size_t)sqlite3_column_bytes(st, 0), NULL, &env),
                             CPN_OK);
            assert_int_equal(cpn_usage_decode(&env, NULL, &u), CPN_OK);
            assert_memory_equal(env.from, cpn_identity_pk(g.b[i].peer_key), CPN_PK_LEN);
            bool found = false;
            for (int k = 0; k < MT_BROKERS; k++)
                if (memcmp(u.tenant, cpn_identity_pk(g.b[k].t.id), CPN_PK_LEN) == 0) {
                    g.b[k].peer_sum += u.amount;
                    g.b[k].peer_records++;
                    found = true;
                }
            assert_true(found);
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

/* A program of the build run to its end (h_run), bounded by the work the run's leases make. */
static int s_run(const char *const *argv, char *out, size_t cap)
{
    return h_run(g.bin, argv, out, cap, MT_RUN_MS + g.n_leases * MT_PER_LEASE_MS);
}

static void s_bill_file(const mt_broker_t *b, char *out, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "%s.bill", b->t.name);
    h_path(out, cap, g.dir, name);
}

static int s_verify_bill(const char *file)
{
    char out[2048];
    const char *argv[] = {"cpnctl", "verify-bill", file, NULL};
    int rc = s_run(argv, out, sizeof out);
    fprintf(stderr, "# %s", out);
    return rc;
}

static uint8_t *s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void mt_bills(void)
{
    uint64_t bills = 0, peers = 0;
    s_peer_sums();
    for (int i = 0; i < MT_BROKERS; i++) {
        mt_broker_t *b = &g.b[i];
        char key[400], bkey[400], file[400], out[8192], name[64];
        snprintf(name, sizeof name, "%s.key", b->t.name);
        h_path(key, sizeof key, g.dir, name);
        snprintf(name, sizeof name, "%s.pub", b->name);
        h_path(bkey, sizeof bkey, g.dir, name);
        s_bill_file(b, file, sizeof file);
        const char *argv[] = {"cpnctl", "--plain",   "--json", "-t", "30",
                              "-b",     b->endpoint, "-B",     bkey, "-k",
                              key,      "bill",      "--save", file, NULL};
        int rc = s_run(argv, out, sizeof out);
        if (rc != 0)
            fprintf(stderr, "# cpnctl bill: %s\n", out);
        assert_int_equal(rc, 0);
        assert_int_equal(s_verify_bill(file), 0);
        size_t len = 0;
        uint8_t *buf = s_read(file, &len);
        ctl_bill_t *bill = NULL;
        char why[CPN_REASON_MAX];
        assert_int_equal(ctl_bill_load(buf, len, 0, 0, &bill, why), CPN_OK);
        fprintf(stderr,
                "# %s: bill %zu records of %zu leases (%zu open), %" PRIu64
                " thousandths; peers' records %zu, %" PRIu64 "\n",
                b->t.name, ctl_bill_records(bill), ctl_bill_leases(bill),
                ctl_bill_open_leases(bill), ctl_bill_total(bill), b->peer_records, b->peer_sum);
        assert_int_equal(ctl_bill_leases(bill), b->n_leases);
        assert_int_equal(ctl_bill_open_leases(bill), 0);
        assert_int_equal(ctl_bill_records(bill), b->peer_records);
        assert_int_equal(ctl_bill_total(bill), b->peer_sum);
        bills += ctl_bill_total(bill);
        peers += b->peer_sum;
        ctl_bill_destroy(&bill);
        free(buf);
    }
    assert_int_equal(bills, peers);
    assert_true(bills > 0);
}

/* ---- mt_tamper ---- */

/* The offsets of the frames of a bill file (4-byte big-endian length before each). */
static size_t s_frames(const uint8_t *buf, size_t len, size_t *off, size_t *flen, size_t cap)
{
    size_t n = 0, at = 0;
    while (at + 4 <= len && n < cap) {
        size_t l = (size_t)buf[at] << 24 | (size_t)buf[at + 1] << 16 | (size_t)buf[at + 2] << 8 |
                   buf[at + 3];
        off[n] = at;
        flen[n++] = l + 4;
        at += 4 + l;
    }
    return n;
}

static void mt_tamper(void)
{
    char file[400], bad[400];
    s_bill_file(&g.b[B_A], file, sizeof file);
    h_path(bad, sizeof bad, g.dir, "bad.bill");
    size_t len = 0;
    uint8_t *buf = s_read(file, &len);
    size_t cap = 1u << 20, *off = calloc(cap, sizeof *off), *flen = calloc(cap, sizeof *flen);
    assert_true(off && flen);
    size_t n = s_frames(buf, len, off, flen, cap);
    assert_true(n >= 3);
    /* Altered: one byte inside the body of the first record. */
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    copy[off[0] + flen[0] / 2] ^= 0x01;
    FILE *f = fopen(bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(copy, 1, len, f), len);
    fclose(f);
    assert_int_not_equal(s_verify_bill(bad), 0);
    /* Dropped: record 1 of a lease that has a record 2 (the bill orders a lease's records by
     * n), the rest of the file kept. */
    size_t drop = n;
    for (size_t i = 0; i + 1 < n && drop == n; i++) {
        cpn_env_t env;
        cpn_usage_t u;
        if (cpn_env_open(buf + off[i] + 4, flen[i] - 4, NULL, &env) == CPN_OK &&
            cpn_usage_decode(&env, NULL, &u) == CPN_OK && u.n == 1 && !u.final)
            drop = i;
    }
    assert_true(drop < n);
    f = fopen(bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, off[drop], f), off[drop]);
    size_t rest = off[drop] + flen[drop];
    assert_int_equal(fwrite(buf + rest, 1, len - rest, f), len - rest);
    fclose(f);
    assert_int_not_equal(s_verify_bill(bad), 0);
    free(copy);
    free(off);
    free(flen);
    free(buf);
}

/* ---- mt_hostile: re-sent, second version, gap, another peer's record ---- */

/* Wait for the answer to `seq`: a RECEIPT (returns 1, *hash set) or an ERROR naming it
 * (returns its code); 0 if none came in time. */
static int s_meter_answer(ctl_client_t *cli, uint64_t seq, uint8_t hash[CPN_PK_LEN])
{
    uint64_t deadline = cpn_mono_ms() + MT_WAIT_MS;
    int got = 0;
    while (!got && cpn_mono_ms() < deadline) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        if (ctl_client_recv(cli, deadline, &frame, &len, &env) != CPN_OK)
            break;
        cpn_receipt_t rc;
        cpn_error_t e;
        if (env.type == CPN_MSG_RECEIPT && cpn_receipt_decode(&env, NULL, &rc) == CPN_OK) {
            memcpy(hash, rc.hash, CPN_PK_LEN);
            got = 1;
        } else if (env.type == CPN_MSG_ERROR && cpn_error_decode(&env, NULL, &e) == CPN_OK &&
                   e.ref_seq == seq) {
            fprintf(stderr, "# refused: %s (%s)\n", cpn_errname(e.code), e.reason);
            got = e.code;
        }
        free(frame);
    }
    return got;
}

static int s_send_record(ctl_client_t *cli, const uint8_t *frame, size_t len,
                         uint8_t hash[CPN_PK_LEN])
{
    cpn_meter_t m = {.usage = {frame, len}};
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(cli, CPN_MSG_METER, &m, &seq), CPN_OK);
    return s_meter_answer(cli, seq, hash);
}

static uint64_t s_status_u64(mt_broker_t *b, const char *key)
{
    h_ans_t a;
    assert_int_equal(h_query(b->t.cli, "status", MT_WAIT_MS, &a), CPN_MSG_STATUS);
    uint64_t v = h_u64(h_get(&a.obj, key));
    h_ans_free(&a);
    return v;
}

/* Records 1 and 2 of a lease of tenant tb (leased at B, where the peer pb is at home) with at
 * least two records, from pb's store. */
static void s_two_records(uint8_t **f1, size_t *l1, uint8_t **f2, size_t *l2)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    *f1 = *f2 = NULL;
    assert_int_equal(sqlite3_open_v2(g.b[B_B].peer_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT a.frame, b.frame FROM usage a JOIN usage b "
                                        "USING (lease_id) WHERE a.n = 1 AND b.n = 2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (!*f1 && sqlite3_step(st) == SQLITE_ROW) {
        cpn_env_t env;
        cpn_usage_t u;
        assert_int_equal(cpn_env_open(sqlite3_column_blob(st, 0),
                                      (size_t)sqlite3_column_bytes(st, 0), NULL, &env),
                         CPN_OK);
        assert_int_equal(cpn_usage_decode(&env, NULL, &u), CPN_OK);
        if (memcmp(u.tenant, cpn_identity_pk(g.b[B_B].t.id), CPN_PK_LEN) != 0)
            continue;
        *l1 = (size_t)sqlite3_column_bytes(st, 0);
        *l2 = (size_t)sqlite3_column_bytes(st, 1);
        *f1 = malloc(*l1);
        *f2 = malloc(*l2);
        assert_true(*f1 && *f2);
        memcpy(*f1, sqlite3_column_blob(st, 0), *l1);
        memcpy(*f2, sqlite3_column_blob(st, 1), *l2);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_non_null(*f1);
}

static void mt_hostile(void)
{
    mt_broker_t *a = &g.b[B_A], *b = &g.b[B_B];
    for (int i = 0; i < MT_BROKERS; i++) /* the test speaks as the peers from here on */
        assert_true(h_stop(&g.b[i].peer_pid, MT_STOP_MS));
    uint8_t *f1, *f2, *f4 = NULL, *alt = NULL, hash[CPN_PK_LEN], want[CPN_PK_LEN];
    size_t l1 = 0, l2 = 0, l4 = 0, lalt = 0;
    s_two_records(&f1, &l1, &f2, &l2);
    ctl_client_t *as_pb = NULL, *as_pa = NULL;
    assert_int_equal(
        ctl_client_new(b->endpoint, b->peer_key, cpn_identity_pk(b->key), true, &as_pb), CPN_OK);
    assert_int_equal(
        ctl_client_new(a->endpoint, a->peer_key, cpn_identity_pk(a->key), true, &as_pa), CPN_OK);
    uint64_t refused_b = s_status_u64(b, "usage_refused"), resent = s_status_u64(b, "usage_resent");
    uint64_t refused_a = s_status_u64(a, "usage_refused");
    /* Sent again: taken again, the RECEIPT names the record's hash. */
    cpn_usage_hash(f2, l2, want);
    assert_int_equal(s_send_record(as_pb, f2, l2, hash), 1);
    assert_memory_equal(hash, want, CPN_PK_LEN);
    /* A second version of record 2 (one more millisecond), signed by the same peer. */
    cpn_env_t e1, e2;
    cpn_usage_t r1, r2, x, y;
    assert_int_equal(cpn_env_open(f1, l1, NULL, &e1), CPN_OK);
    assert_int_equal(cpn_usage_decode(&e1, NULL, &r1), CPN_OK);
    assert_int_equal(cpn_env_open(f2, l2, NULL, &e2), CPN_OK);
    assert_int_equal(cpn_usage_decode(&e2, NULL, &r2), CPN_OK);
    uint8_t h1[CPN_USAGE_HASH_LEN], h2[CPN_USAGE_HASH_LEN];
    cpn_usage_hash(f1, l1, h1);
    cpn_usage_hash(f2, l2, h2);
    uint64_t now = cpn_now_ms();
    assert_int_equal(cpn_usage_next(&r1, h1, &r1, r2.to_ms + 1, r2.final, &x), CPN_OK);
    assert_int_equal(cpn_msg_build(b->peer_key, CPN_MSG_USAGE, now << 12, now, &x, &alt, &lalt),
                     CPN_OK);
    assert_int_equal(s_send_record(as_pb, alt, lalt, hash), CPN_E_CHAIN);
    /* n 1000 of the lease, priced right and signed by its peer, built on record 2 as if it
     * were not final: records missing before it, and after the lease's final record (the
     * broker names the latter; a gap alone is test_usage_log's). */
    r2.final = false;
    assert_int_equal(cpn_usage_next(&r2, h2, &r2, r2.to_ms + 1000, false, &y), CPN_OK);
    y.n = 1000;
    assert_int_equal(cpn_msg_build(b->peer_key, CPN_MSG_USAGE, (now << 12) + 1, now, &y, &f4, &l4),
                     CPN_OK);
    assert_int_equal(s_send_record(as_pb, f4, l4, hash), CPN_E_CHAIN);
    /* Another peer's record, from pa: untrusted. */
    assert_int_equal(s_send_record(as_pa, f2, l2, hash), CPN_E_UNTRUSTED);
    assert_true(s_status_u64(b, "usage_refused") >= refused_b + 2);
    assert_true(s_status_u64(b, "usage_resent") >= resent + 1);
    assert_true(s_status_u64(a, "usage_refused") >= refused_a + 1);
    ctl_client_destroy(&as_pb);
    ctl_client_destroy(&as_pa);
    free(f1);
    free(f2);
    free(f4);
    free(alt);
}

/* ---- mt_statements: the brokers settle with each other ---- */

/* What tenant i's records at broker j's peer add up to, from the peer's SQLite file (each
 * frame's signature checked): what broker i owes broker j for the month. */
static uint64_t s_pair_sum(int i, int j)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t sum = 0;
    assert_int_equal(sqlite3_open_v2(g.b[j].peer_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT frame FROM usage", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        cpn_env_t env;
        cpn_usage_t u;
        assert_int_equal(cpn_env_open(sqlite3_column_blob(st, 0),
                                      (size_t)sqlite3_column_bytes(st, 0), NULL, &env),
                         CPN_OK);
        assert_int_equal(cpn_usage_decode(&env, NULL, &u), CPN_OK);
        if (memcmp(u.tenant, cpn_identity_pk(g.b[i].t.id), CPN_PK_LEN) == 0)
            sum += u.amount;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return sum;
}

/* `cpnctl --json settle` of broker i with j for the period; --out FILE and --theirs FILE
 * when given. Its exit status; its output in out. */
static int s_settle(int i, int j, const char *period, const char *out_file, const char *theirs,
                    char *out, size_t cap)
{
    const char *argv[14] = {"cpnctl", "--json",    "settle",   "--policy", g.b[i].policy,
                            "--with", g.b[j].name, "--period", period};
    int k = 9;
    if (out_file) {
        argv[k++] = "--out";
        argv[k++] = out_file;
    }
    if (theirs) {
        argv[k++] = "--theirs";
        argv[k++] = theirs;
    }
    argv[k] = NULL;
    int rc = s_run(argv, out, cap);
    fprintf(stderr, "# settle %s with %s: %d %s", g.b[i].name, g.b[j].name, rc, out);
    return rc;
}

/* The JSON string value of `key` in cpnctl's output, into val. */
static void s_json_str(const char *out, const char *key, char *val, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(out, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    assert_true(n < cap);
    memcpy(val, p, n);
    val[n] = 0;
}

static void s_statement_file(int i, int j, const char *tag, char *out, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "%s-%s%s.stmt", g.b[i].name, g.b[j].name, tag);
    h_path(out, cap, g.dir, name);
}

/* Every pair of brokers: each one's statement with the other says what the peers' records
 * say the one's tenant used at the other's peer, to the thousandth, and the two statements
 * reconcile both ways. Then a record dropped from B's ledger and another's amount altered
 * there: B's new statement with A no longer reconciles, and both leases are named. */
static void mt_statements(void)
{
    char period[16], out[1 << 16], fi[400], fj[400], v[32], want[32];
    time_t now = time(NULL);
    struct tm tm;
    assert_non_null(gmtime_r(&now, &tm));
    snprintf(period, sizeof period, "%04d-%02d", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100);
    for (int i = 0; i < MT_BROKERS; i++)
        for (int j = i + 1; j < MT_BROKERS; j++) {
            uint64_t owe = s_pair_sum(i, j), due = s_pair_sum(j, i);
            s_statement_file(i, j, "", fi, sizeof fi);
            s_statement_file(j, i, "", fj, sizeof fj);
            assert_int_equal(s_settle(i, j, period, fi, NULL, out, sizeof out), 0);
            snprintf(want, sizeof want, "%" PRIu64 ".%03" PRIu64, owe / 1000, owe % 1000);
            s_json_str(out, "owe", v, sizeof v);
            assert_string_equal(v, want);
            snprintf(want, sizeof want, "%" PRIu64 ".%03" PRIu64, due / 1000, due % 1000);
            s_json_str(out, "due", v, sizeof v);
            assert_string_equal(v, want);
            assert_int_equal(s_settle(j, i, period, fj, NULL, out, sizeof out), 0);
            assert_int_equal(s_settle(i, j, period, NULL, fj, out, sizeof out), 0);
            assert_non_null(strstr(out, "\"reconciled\":true"));
            assert_int_equal(s_settle(j, i, period, NULL, fi, out, sizeof out), 0);
        }
    /* B (pb's home) loses the last record of one of A's tenant's leases; another record of
     * that tenant gets another amount. */
    char hex[2 * CPN_PK_LEN + 1], sql[1024];
    for (int k = 0; k < CPN_PK_LEN; k++)
        snprintf(hex + 2 * k, 3, "%02x", cpn_identity_pk(g.b[B_A].t.id)[k]);
    snprintf(sql, sizeof sql,
             "DELETE FROM usage WHERE rowid = (SELECT MAX(rowid) FROM usage WHERE final = 1 AND "
             "n > 1 AND tenant = x'%s');"
             "UPDATE usage SET amount = amount + 1 WHERE rowid = (SELECT MIN(rowid) FROM usage "
             "WHERE final = 1 AND tenant = x'%s');",
             hex, hex);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(g.b[B_B].ledger, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s_statement_file(B_B, B_A, "-bad", fj, sizeof fj);
    assert_int_equal(s_settle(B_B, B_A, period, fj, NULL, out, sizeof out), 0);
    assert_int_equal(s_settle(B_A, B_B, period, NULL, fj, out, sizeof out), 1);
    assert_non_null(strstr(out, "\"reconciled\":false,\"differs\":2"));
    assert_non_null(strstr(out, "\"what\":\"amount\""));
    assert_non_null(strstr(out, "\"what\":\"records "));
}

/* ---- the test ---- */

static void test_metering_e2e(void **state)
{
    (void)state;
    uint64_t t0 = cpn_mono_ms();
    mt_start();
    mt_lease();
    fprintf(stderr, "# %zu leases granted in %" PRIu64 " ms\n", g.n_leases, cpn_mono_ms() - t0);
    mt_change();
    mt_kill_peer(B_B);
    mt_settle();
    fprintf(stderr, "# settled after %" PRIu64 " ms\n", cpn_mono_ms() - t0);
    mt_bills();
    mt_tamper();
    mt_hostile();
    mt_statements(); /* last: it alters B's ledger */
}

static int s_setup(void **state)
{
    (void)state;
    if (cpn_crypto_init() != CPN_OK)
        return -1;
    if (h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "metering") != 0)
        return -1;
    const char *e = getenv("CPN_METER_LEASES");
    g.n_leases = e && e[0] ? strtoul(e, NULL, 10) : MT_LEASES_DEFAULT;
    if (g.n_leases < MT_BROKERS || g.n_leases > MT_LEASES_MAX)
        g.n_leases = MT_LEASES_DEFAULT;
    g.n_leases -= g.n_leases % MT_BROKERS;
    g.clean = true;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MT_BROKERS; i++) {
        mt_broker_t *b = &g.b[i];
        g.clean &= h_stop(&b->peer_pid, MT_STOP_MS);
        g.clean &= h_stop(&b->pid, MT_STOP_MS);
        ctl_client_destroy(&b->t.cli);
        cpn_identity_destroy(&b->t.id);
        cpn_identity_destroy(&b->key);
        cpn_identity_destroy(&b->peer_key);
        free(b->lease_ids);
    }
    h_dir_done(g.dir, g.clean);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metering_e2e),
    };
    return cmocka_run_group_tests_name("metering_e2e", tests, s_setup, s_teardown);
}
