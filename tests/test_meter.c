/* test_meter.c - the peer's USAGE records (peer/meter.c) on a real SQLite database: leases
 * metered at an interval and at their end, renewed and released early, acknowledged; and a
 * process making records killed with SIGKILL at a random moment, then restarted: every
 * lease's records still form one chain that sums to the exact charge of its whole duration
 * (checked offline by ctl_bill, as `cpnctl verify-bill` does) - nothing lost, nothing twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ctl_bill.h"
#include "harness.h"
#include "identity.h"
#include "meter.h"
#include "sender.h"
#include "store.h"
#include "usage.h"

#define T0 1796083200000ull
#define MIN_MS 60000ull
#define N_LEASES 40

typedef struct {
    char dir[256];
    char db[320];
    cpn_identity_t *id, *tenant;
} fx_t;

static int s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx || cpn_crypto_init() != CPN_OK)
        return -1;
    *state = fx;
    if (h_db_dir(fx->dir, sizeof fx->dir, fx->db, sizeof fx->db, "meter", "peer.db") != 0 ||
        cpn_identity_generate(&fx->id) != CPN_OK || cpn_identity_generate(&fx->tenant) != CPN_OK)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    h_dir_done(fx->dir, true);
    cpn_identity_destroy(&fx->id);
    cpn_identity_destroy(&fx->tenant);
    free(fx);
    return 0;
}

typedef struct {
    peer_store_t *store;
    peer_sender_t sender;
    peer_meter_t *meter;
} peer_t;

static void s_open(fx_t *fx, peer_t *p, uint64_t interval_ms)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(peer_store_open(fx->db, &p->store), CPN_OK);
    assert_int_equal(peer_sender_init(&p->sender, fx->id, p->store), CPN_OK);
    assert_int_equal(peer_meter_new(p->store, &p->sender, interval_ms, &p->meter), CPN_OK);
}

static void s_close(peer_t *p)
{
    peer_meter_destroy(&p->meter);
    peer_store_destroy(&p->store);
}

static void s_lease(fx_t *fx, peer_t *p, int i, uint64_t start, uint64_t end)
{
    peer_lease_row_t row;
    static uint8_t frame[1] = {0};
    memset(&row, 0, sizeof row);
    snprintf(row.lease_id, sizeof row.lease_id, "L%04d", i);
    memcpy(row.tenant, cpn_identity_pk(fx->tenant), CPN_PK_LEN);
    snprintf(row.request_id, sizeof row.request_id, "job-%d", i);
    snprintf(row.package, sizeof row.package, "%s", i % 2 ? "h100x8" : "ascend910x8");
    row.units = 1 + (uint32_t)(i % 4);
    row.price = 1000 + 7 * (uint64_t)i; /* odd figures: rounding happens */
    row.start_ms = start;
    row.end_ms = end;
    row.state = PEER_LEASE_ACTIVE;
    row.frame = frame;
    row.frame_len = sizeof frame;
    assert_int_equal(peer_store_begin(p->store), CPN_OK);
    assert_int_equal(peer_store_insert(p->store, &row), CPN_OK);
    assert_int_equal(peer_store_commit(p->store), CPN_OK);
}

/* Change a lease's end (renewal) or state and end (release). */
static void s_set_end(peer_t *p, int i, uint64_t end, peer_lease_state_t state)
{
    char id[CPN_NAME_MAX];
    peer_lease_row_t row;
    snprintf(id, sizeof id, "L%04d", i);
    assert_int_equal(peer_store_get(p->store, id, &row), CPN_OK);
    row.end_ms = end;
    row.state = state;
    assert_int_equal(peer_store_begin(p->store), CPN_OK);
    assert_int_equal(peer_store_update(p->store, &row), CPN_OK);
    assert_int_equal(peer_store_commit(p->store), CPN_OK);
    peer_lease_row_clear(&row);
}

/* Provisioning done: the lease is granted with a new start and end. */
static void s_set_start(peer_t *p, int i, uint64_t start, uint64_t end)
{
    char id[CPN_NAME_MAX];
    snprintf(id, sizeof id, "L%04d", i);
    peer_lease_row_t row;
    assert_int_equal(peer_store_get(p->store, id, &row), CPN_OK);
    peer_lease_row_clear(&row);
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE leases SET start_ms = %" PRIu64 ", end_ms = %" PRIu64
             ", state = 'active' WHERE lease_id = '%s'",
             start, end, id);
    assert_int_equal(sqlite3_exec(peer_store_db(p->store), sql, NULL, NULL, NULL), SQLITE_OK);
}

/* Collect what peer_meter_pending hands out into a bill file. */
typedef struct {
    uint8_t *buf;
    size_t len;
    size_t n;
} bill_t;

static void s_collect(const char *lease_id, uint32_t n, const uint8_t *frame, size_t len, void *arg)
{
    bill_t *b = arg;
    (void)lease_id;
    (void)n;
    if (ctl_bill_append(&b->buf, &b->len, frame, len) == CPN_OK)
        b->n++;
}

/* Keep the frame of record 1 of lease L0002 (and collect like s_collect). */
static uint8_t s_l2_hash[CPN_USAGE_HASH_LEN];
static bool s_l2_seen;
static void s_collect_l2(const char *lease_id, uint32_t n, const uint8_t *frame, size_t len,
                         void *arg)
{
    if (strcmp(lease_id, "L0002") == 0 && n == 1) {
        cpn_usage_hash(frame, len, s_l2_hash);
        s_l2_seen = true;
    }
    s_collect(lease_id, n, frame, len, arg);
}

static uint64_t s_charge(int i, uint64_t start, uint64_t end)
{
    uint64_t t = 0;
    assert_int_equal(cpn_usage_total(1 + (uint32_t)(i % 4), 1000 + 7 * (uint64_t)i, start, end, &t),
                     CPN_OK);
    return t;
}

/* Intervals, a renewal, an early release, a lease shorter than the interval, acks. */
static void test_meter_lifecycle(void **state)
{
    fx_t *fx = *state;
    peer_t p;
    s_open(fx, &p, 5 * MIN_MS);
    s_lease(fx, &p, 0, T0, T0 + 60 * MIN_MS);         /* renewed to 90 min */
    s_lease(fx, &p, 1, T0, T0 + 60 * MIN_MS);         /* released at 7 min 3 ms */
    s_lease(fx, &p, 2, T0 + 1000, T0 + 1000 + 20000); /* 20 s: shorter than the interval */
    s_lease(fx, &p, 3, T0, T0 + 60 * MIN_MS);         /* provisioning, then granted at 3 min */
    s_lease(fx, &p, 4, T0, T0 + 60 * MIN_MS);         /* its driver failed: never granted */
    s_set_end(&p, 3, T0 + 60 * MIN_MS, PEER_LEASE_PROVISIONING);
    s_set_end(&p, 4, T0 + 60 * MIN_MS, PEER_LEASE_PROVISIONING);
    size_t made = 0;
    assert_int_equal(peer_meter_tick(p.meter, T0 + 2 * MIN_MS, &made), CPN_OK);
    assert_int_equal(made, 1); /* lease 2 ended at 21 s: its final record; the others run */
    assert_int_equal(peer_meter_tick(p.meter, T0 + 5 * MIN_MS, &made), CPN_OK);
    assert_int_equal(made, 2); /* 0 and 1: their first period; 3 and 4 still provisioning */
    s_set_start(&p, 3, T0 + 3 * MIN_MS, T0 + 33 * MIN_MS);
    s_set_end(&p, 4, T0 + 5 * MIN_MS, PEER_LEASE_FAILED);
    assert_int_equal(peer_meter_tick(p.meter, T0 + 5 * MIN_MS + 1, &made), CPN_OK);
    assert_int_equal(made, 0);
    uint64_t open = 0;
    assert_int_equal(peer_meter_open(p.meter, &open), CPN_OK);
    assert_int_equal(open, 3); /* 0, 1 and 3 run; 2 ended, 4 failed before any record */
    s_set_end(&p, 0, T0 + 90 * MIN_MS, PEER_LEASE_ACTIVE);
    s_set_end(&p, 1, T0 + 7 * MIN_MS + 3, PEER_LEASE_RELEASED);
    for (uint64_t t = 6 * MIN_MS; t <= 100 * MIN_MS; t += MIN_MS)
        assert_int_equal(peer_meter_tick(p.meter, T0 + t, NULL), CPN_OK);
    assert_int_equal(peer_meter_open(p.meter, &open), CPN_OK);
    assert_int_equal(open, 0); /* every lease's final record made: the daemon stops ticking */

    bill_t b = {0};
    size_t handed = 0;
    assert_int_equal(peer_meter_pending(p.meter, T0 + 100 * MIN_MS, 30000, s_collect, &b, &handed),
                     CPN_OK);
    assert_int_equal(handed, b.n);
    uint64_t records = 0, unacked = 0;
    assert_int_equal(peer_meter_counts(p.meter, &records, &unacked), CPN_OK);
    assert_int_equal(records, b.n);
    /* lease 0: 90 min / 5 = 18 records; lease 1: 5 min, then final at 7 min; lease 2: 1;
     * lease 3: 30 min from 3 min = 6; lease 4: none */
    assert_int_equal(b.n, 18 + 2 + 1 + 6);
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    assert_int_equal(ctl_bill_load(b.buf, b.len, 0, 0, &bill, why), CPN_OK);
    assert_int_equal(ctl_bill_open_leases(bill), 0);
    assert_int_equal(ctl_bill_total(bill), s_charge(0, T0, T0 + 90 * MIN_MS) +
                                               s_charge(1, T0, T0 + 7 * MIN_MS + 3) +
                                               s_charge(2, T0 + 1000, T0 + 21000) +
                                               s_charge(3, T0 + 3 * MIN_MS, T0 + 33 * MIN_MS));
    ctl_bill_destroy(&bill);

    /* handed out: not again before resend_ms; then again until acknowledged */
    bill_t again = {0};
    assert_int_equal(
        peer_meter_pending(p.meter, T0 + 100 * MIN_MS + 1, 30000, s_collect, &again, &handed),
        CPN_OK);
    assert_int_equal(handed, 0);
    assert_int_equal(peer_meter_acked(p.meter, "L0000", 10), CPN_OK);
    assert_int_equal(peer_meter_acked(p.meter, "L0001", 2), CPN_OK);
    assert_int_equal(
        peer_meter_pending(p.meter, T0 + 101 * MIN_MS, 30000, s_collect_l2, &again, &handed),
        CPN_OK);
    assert_int_equal(handed, 8 + 1 + 6); /* L0000 11..18, L0002 1, L0003 1..6 */
    assert_int_equal(peer_meter_counts(p.meter, &records, &unacked), CPN_OK);
    assert_int_equal(unacked, 15);
    /* A broker's RECEIPT: naming another hash it changes nothing; naming the record's, the
     * record is taken and the receipt kept with it. */
    assert_true(s_l2_seen);
    uint8_t wrong[CPN_USAGE_HASH_LEN];
    memcpy(wrong, s_l2_hash, sizeof wrong);
    wrong[0] ^= 1;
    bool found = true;
    static const uint8_t rcpt[4] = {9, 9, 9, 9};
    assert_int_equal(peer_meter_receipt(p.meter, "L0002", 1, wrong, rcpt, sizeof rcpt, &found),
                     CPN_OK);
    assert_false(found);
    assert_int_equal(peer_meter_receipt(p.meter, "L0002", 1, s_l2_hash, rcpt, sizeof rcpt, &found),
                     CPN_OK);
    assert_true(found);
    assert_int_equal(peer_meter_counts(p.meter, &records, &unacked), CPN_OK);
    assert_int_equal(unacked, 14);
    free(again.buf);
    free(b.buf);
    s_close(&p);
}

/* A child makes records for N_LEASES leases on a simulated clock and is killed with SIGKILL at a
 * random moment; the restarted meter continues. Every chain is whole and exact. */
static void test_meter_kill9(void **state)
{
    fx_t *fx = *state;
    h_db_remove(fx->db);
    peer_t p;
    s_open(fx, &p, MIN_MS);
    for (int i = 0; i < N_LEASES; i++)
        s_lease(fx, &p, i, T0 + (uint64_t)i * 1777, T0 + (uint64_t)i * 1777 + (30 + i) * MIN_MS);
    s_close(&p);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        peer_t c;
        s_open(fx, &c, MIN_MS);
        for (uint64_t t = 0; t < 100 * MIN_MS; t += 7000) { /* a tick every 7 s of its clock */
            if (peer_meter_tick(c.meter, T0 + t, NULL) != CPN_OK)
                _exit(2);
            if (t == 7000 * 20 && write(fds[1], "x", 1) != 1) /* working: the parent may kill */
                _exit(3);
        }
        _exit(0); /* finished before the kill: the test still checks the result */
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1); /* bounded: the child writes or exits */
    close(fds[0]);
    struct timespec ts = {0, (long)(rand() % 50) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    print_message("writer %s\n", WIFSIGNALED(status) ? "killed mid-run" : "finished first");

    s_open(fx, &p, MIN_MS);
    for (uint64_t t = 60 * MIN_MS; t <= 120 * MIN_MS; t += 11000)
        assert_int_equal(peer_meter_tick(p.meter, T0 + t, NULL), CPN_OK);
    bill_t b = {0};
    size_t handed = 0;
    for (int round = 0; round < 100; round++) { /* bounded: PENDING_MAX a call */
        assert_int_equal(
            peer_meter_pending(p.meter, T0 + 200 * MIN_MS, 1000, s_collect, &b, &handed), CPN_OK);
        if (handed == 0)
            break;
    }
    uint64_t records = 0, unacked = 0;
    assert_int_equal(peer_meter_counts(p.meter, &records, &unacked), CPN_OK);
    assert_int_equal(records, b.n);
    ctl_bill_t *bill = NULL;
    char why[CPN_REASON_MAX];
    if (ctl_bill_load(b.buf, b.len, 0, 0, &bill, why) != CPN_OK)
        fail_msg("bill after kill -9: %s", why);
    uint64_t want = 0;
    for (int i = 0; i < N_LEASES; i++)
        want += s_charge(i, T0 + (uint64_t)i * 1777, T0 + (uint64_t)i * 1777 + (30 + i) * MIN_MS);
    assert_int_equal(ctl_bill_leases(bill), N_LEASES);
    assert_int_equal(ctl_bill_open_leases(bill), 0);
    assert_int_equal(ctl_bill_total(bill), want);
    ctl_bill_destroy(&bill);
    free(b.buf);
    s_close(&p);
}

int main(void)
{
    srand((unsigned)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meter_lifecycle),
        cmocka_unit_test(test_meter_kill9),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
