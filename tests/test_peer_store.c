/* test_peer_store.c - the peer's pure cores and its SQLite store, on a real file:
 * store rows and constraints, expiry, recount, the seq ceiling across reopen, inventory
 * arithmetic, grant decisions, the shipped configurations, discover's parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "advertise.h"
#include "clock.h"
#include "discover.h"
#include "envelope.h"
#include "grant.h"
#include "identity.h"
#include "inventory.h"
#include "lease.h"
#include "peer_config.h"
#include "sender.h"
#include "store.h"

typedef struct {
    char dir[256];
    char db[300];
} fx_t;

static int s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cpn-peer-store-XXXXXX");
    if (!fx || !mkdtemp(fx->dir))
        return -1;
    snprintf(fx->db, sizeof fx->db, "%s/peer.db", fx->dir);
    *state = fx;
    return cpn_crypto_init() == CPN_OK ? 0 : -1;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static void s_row(peer_lease_row_t *row, const char *id, uint8_t tenant_byte, const char *req,
                  const char *pkg, uint32_t units, uint64_t end_ms)
{
    static uint8_t frame[] = {0x92, 0xc4, 0x01, 0x00, 0xc4, 0x00};
    memset(row, 0, sizeof *row);
    snprintf(row->lease_id, sizeof row->lease_id, "%s", id);
    memset(row->tenant, tenant_byte, CPN_PK_LEN);
    snprintf(row->request_id, sizeof row->request_id, "%s", req);
    snprintf(row->package, sizeof row->package, "%s", pkg);
    row->units = units;
    row->price = 210000;
    row->start_ms = 1000;
    row->end_ms = end_ms;
    row->state = PEER_LEASE_ACTIVE;
    row->frame = frame;
    row->frame_len = sizeof frame;
}

static int s_sum(const char *pkg, uint64_t units, void *arg)
{
    uint64_t *sums = arg;
    if (strcmp(pkg, "a") == 0)
        sums[0] += units;
    else if (strcmp(pkg, "b") == 0)
        sums[1] += units;
    else
        sums[2] += units;
    return 0;
}

static void test_store_rows(void **state)
{
    fx_t *fx = *state;
    peer_store_t *st = NULL;
    peer_lease_row_t row, got;
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);

    assert_int_equal(peer_store_begin(st), CPN_OK);
    assert_true(peer_store_in_txn(st));
    s_row(&row, "L1", 1, "r1", "a", 2, 5000);
    assert_int_equal(peer_store_insert(st, &row), CPN_OK);
    s_row(&row, "L2", 1, "r2", "a", 3, 9000);
    assert_int_equal(peer_store_insert(st, &row), CPN_OK);
    s_row(&row, "L3", 2, "r1", "b", 1, 7000); /* same request id, other tenant: fine */
    assert_int_equal(peer_store_insert(st, &row), CPN_OK);
    /* (tenant, request id) is unique, and so is the lease id */
    s_row(&row, "L9", 1, "r1", "a", 1, 5000);
    assert_int_equal(peer_store_insert(st, &row), CPN_E_CONFLICT);
    s_row(&row, "L1", 3, "rx", "a", 1, 5000);
    assert_int_equal(peer_store_insert(st, &row), CPN_E_CONFLICT);
    assert_int_equal(peer_store_commit(st), CPN_OK);
    assert_false(peer_store_in_txn(st));

    uint8_t t1[CPN_PK_LEN];
    memset(t1, 1, sizeof t1);
    assert_int_equal(peer_store_get_by_request(st, t1, "r2", &got), CPN_OK);
    assert_string_equal(got.lease_id, "L2");
    assert_int_equal(got.units, 3);
    assert_int_equal(got.frame_len, 6);
    peer_lease_row_clear(&got);
    assert_int_equal(peer_store_get(st, "nope", &got), CPN_E_NO_LEASE);

    uint64_t sums[3] = {0};
    assert_int_equal(peer_store_used(st, s_sum, sums), CPN_OK);
    assert_int_equal(sums[0], 5);
    assert_int_equal(sums[1], 1);

    /* A rolled-back write leaves nothing behind. */
    assert_int_equal(peer_store_begin(st), CPN_OK);
    s_row(&row, "L4", 4, "r4", "a", 1, 5000);
    assert_int_equal(peer_store_insert(st, &row), CPN_OK);
    peer_store_rollback(st);
    assert_int_equal(peer_store_get(st, "L4", &got), CPN_E_NO_LEASE);

    /* Update (renew) then expire by time. */
    assert_int_equal(peer_store_get(st, "L1", &got), CPN_OK);
    uint8_t *old = got.frame;
    uint8_t nf[] = {1, 2, 3};
    got.frame = nf;
    got.frame_len = 3;
    got.end_ms = 20000;
    got.renewals = 1;
    assert_int_equal(peer_store_update(st, &got), CPN_OK);
    got.frame = old;
    peer_lease_row_clear(&got);
    assert_int_equal(peer_store_get(st, "L1", &got), CPN_OK);
    assert_int_equal(got.end_ms, 20000);
    assert_int_equal(got.renewals, 1);
    assert_memory_equal(got.frame, nf, 3);
    peer_lease_row_clear(&got);

    uint64_t next = 0;
    bool found = false;
    assert_int_equal(peer_store_next_end(st, &next, &found), CPN_OK);
    assert_true(found);
    assert_int_equal(next, 7000);
    size_t n = 0;
    assert_int_equal(peer_store_expire(st, 9000, &n), CPN_OK);
    assert_int_equal(n, 2); /* L2 (9000) and L3 (7000); L1 was renewed to 20000 */
    uint64_t cnt = 0;
    assert_int_equal(peer_store_count(st, PEER_LEASE_ACTIVE, &cnt), CPN_OK);
    assert_int_equal(cnt, 1);
    assert_int_equal(peer_store_count(st, PEER_LEASE_EXPIRED, &cnt), CPN_OK);
    assert_int_equal(cnt, 2);
    memset(sums, 0, sizeof sums);
    assert_int_equal(peer_store_used(st, s_sum, sums), CPN_OK);
    assert_int_equal(sums[0], 2);
    assert_int_equal(sums[1], 0);

    uint64_t v = 0;
    assert_int_equal(peer_store_meta_get(st, "k", &v, &found), CPN_OK);
    assert_false(found);
    assert_int_equal(peer_store_meta_set(st, "k", UINT64_C(1) << 60), CPN_OK);
    assert_int_equal(peer_store_meta_set(st, "k", (UINT64_C(1) << 60) + 7), CPN_OK);
    peer_store_destroy(&st);
    assert_null(st);

    /* Everything committed is there after reopening, in WAL mode. */
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);
    assert_int_equal(peer_store_meta_get(st, "k", &v, &found), CPN_OK);
    assert_true(found);
    assert_int_equal(v, (UINT64_C(1) << 60) + 7);
    assert_int_equal(peer_store_get(st, "L1", &got), CPN_OK);
    assert_int_equal(got.state, PEER_LEASE_ACTIVE);
    peer_lease_row_clear(&got);
    assert_int_equal(peer_store_get(st, "L2", &got), CPN_OK);
    assert_int_equal(got.state, PEER_LEASE_EXPIRED);
    peer_lease_row_clear(&got);
    peer_store_destroy(&st);

    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* A database written by a peer from before leases.op_seq: it opens, its leases read with
 * op_seq 0, and op_seq then round-trips through update and reopen (the durable replay state
 * of RENEW/RELEASE). */
static void test_store_old_schema(void **state)
{
    fx_t *fx = *state;
    static const char old_schema[] =
        "CREATE TABLE leases ("
        " lease_id TEXT PRIMARY KEY, tenant BLOB NOT NULL, request_id TEXT NOT NULL,"
        " package TEXT NOT NULL, units INTEGER NOT NULL, price INTEGER NOT NULL,"
        " start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, state TEXT NOT NULL,"
        " renewals INTEGER NOT NULL DEFAULT 0, frame BLOB NOT NULL,"
        " UNIQUE (tenant, request_id));"
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
        "INSERT INTO leases VALUES ('L1', zeroblob(32), 'r1', 'a', 1, 5, 1000, 9000, 'active',"
        " 2, x'00');";
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, old_schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    peer_store_t *st = NULL;
    peer_lease_row_t got;
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);
    assert_int_equal(peer_store_get(st, "L1", &got), CPN_OK);
    assert_int_equal(got.renewals, 2);
    assert_int_equal(got.op_seq, 0);
    got.op_seq = (UINT64_C(1700000000000) << 12) + 77;
    assert_int_equal(peer_store_begin(st), CPN_OK);
    assert_int_equal(peer_store_update(st, &got), CPN_OK);
    assert_int_equal(peer_store_commit(st), CPN_OK);
    peer_lease_row_clear(&got);
    peer_store_destroy(&st);

    /* reopened (the column exists now: no second ALTER), the seq is there */
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);
    assert_int_equal(peer_store_get(st, "L1", &got), CPN_OK);
    assert_int_equal(got.op_seq, (UINT64_C(1700000000000) << 12) + 77);
    peer_lease_row_clear(&got);
    /* a new lease starts with none */
    peer_lease_row_t row;
    s_row(&row, "L2", 1, "r2", "a", 1, 9000);
    row.op_seq = 99; /* insert does not take it: only RENEW/RELEASE set it */
    assert_int_equal(peer_store_insert(st, &row), CPN_OK);
    assert_int_equal(peer_store_get(st, "L2", &got), CPN_OK);
    assert_int_equal(got.op_seq, 0);
    peer_lease_row_clear(&got);
    peer_store_destroy(&st);
}

static void test_store_open_fails_cleanly(void **state)
{
    (void)state;
    peer_store_t *st = (peer_store_t *)1;
    assert_int_equal(peer_store_open("/nonexistent-dir/x/peer.db", &st), CPN_E_DB);
    assert_null(st);
}

static void test_sender_ceiling(void **state)
{
    fx_t *fx = *state;
    peer_store_t *st = NULL;
    cpn_identity_t *id = NULL;
    peer_sender_t snd;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    cpn_withdraw_t w = {.reason = "t"};
    bool found = false;
    uint64_t ceiling = 0, seen = 0;
    assert_int_equal(cpn_identity_generate(&id), CPN_OK);
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);
    assert_int_equal(peer_sender_init(&snd, id, st), CPN_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(peer_sender_build(&snd, CPN_MSG_WITHDRAW, &w, &frame, &len), CPN_OK);
        assert_int_equal(cpn_env_open(frame, len, &cpn_limits_default, &env), CPN_OK);
        assert_true(env.seq > seen);
        seen = env.seq;
        free(frame);
        assert_int_equal(peer_store_meta_get(st, PEER_META_SEQ_CEILING, &ceiling, &found), CPN_OK);
        assert_true(found);
        assert_true(ceiling >= seen); /* stored before use */
        assert_true(ceiling <= seen + PEER_SEQ_RESERVE);
    }
    peer_store_destroy(&st);

    /* With the clock set back an hour, the restarted sender still continues above. */
    cpn_clock_set_fake(cpn_now_ms() - 3600 * 1000);
    assert_int_equal(peer_store_open(fx->db, &st), CPN_OK);
    assert_int_equal(peer_sender_init(&snd, id, st), CPN_OK);
    assert_int_equal(peer_sender_build(&snd, CPN_MSG_WITHDRAW, &w, &frame, &len), CPN_OK);
    assert_int_equal(cpn_env_open(frame, len, &cpn_limits_default, &env), CPN_OK);
    assert_true(env.seq > seen);
    free(frame);
    cpn_clock_set_fake(0);

    /* A ceiling written inside a rolled-back transaction is not trusted. */
    uint64_t durable = snd.durable_ceiling;
    assert_int_equal(peer_store_begin(st), CPN_OK);
    snd.signer.last_seq = snd.ceiling; /* force a new reservation */
    assert_int_equal(peer_sender_build(&snd, CPN_MSG_WITHDRAW, &w, &frame, &len), CPN_OK);
    free(frame);
    assert_true(snd.ceiling > durable);
    peer_store_rollback(st);
    peer_sender_rollback(&snd);
    assert_int_equal(snd.ceiling, durable);
    assert_int_equal(peer_store_meta_get(st, PEER_META_SEQ_CEILING, &ceiling, &found), CPN_OK);
    assert_int_equal(ceiling, durable);
    peer_store_destroy(&st);
    cpn_identity_destroy(&id);
}

static cpn_package_t s_pkg(const char *id, uint32_t total, uint64_t price)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 8;
    p.total = total;
    p.price = price;
    return p;
}

static void test_inventory(void **state)
{
    (void)state;
    cpn_package_t pk[2] = {s_pkg("a", 3, 1000), s_pkg("b", 1, 500)};
    uint64_t floors[2] = {800, 0};
    peer_inventory_t *inv = peer_inventory_new(pk, floors, 2);
    assert_non_null(inv);
    assert_int_equal(peer_inventory_find(inv, "b"), 1);
    assert_int_equal(peer_inventory_find(inv, "c"), -1);
    assert_int_equal(peer_inventory_free(inv, 0), 3);
    assert_int_equal(peer_inventory_floor(inv, 0), 800);
    uint64_t v0 = peer_inventory_version(inv);
    assert_int_equal(peer_inventory_reserve(inv, 0, 2), CPN_OK);
    assert_int_equal(peer_inventory_free(inv, 0), 1);
    assert_true(peer_inventory_version(inv) > v0);
    assert_int_equal(peer_inventory_reserve(inv, 0, 2), CPN_E_NO_UNITS);
    assert_int_equal(peer_inventory_free(inv, 0), 1); /* refused: unchanged */
    assert_int_equal(peer_inventory_reserve(inv, 0, 0), CPN_E_INVAL);
    assert_int_equal(peer_inventory_reserve(inv, 7, 1), CPN_E_INVAL);
    assert_int_equal(peer_inventory_reserve(inv, 0, 1), CPN_OK);
    assert_int_equal(peer_inventory_free(inv, 0), 0);
    peer_inventory_release(inv, 0, 2);
    assert_int_equal(peer_inventory_free(inv, 0), 2);
    peer_inventory_release(inv, 0, 99); /* never below zero used */
    assert_int_equal(peer_inventory_free(inv, 0), 3);
    /* Recount: more leases than a smaller config now has leaves free at 0. */
    peer_inventory_clear(inv);
    assert_int_equal(peer_inventory_add_used(inv, "b", 4), CPN_OK);
    assert_int_equal(peer_inventory_free(inv, 1), 0);
    assert_int_equal(peer_inventory_add_used(inv, "zz", 1), CPN_E_NO_PACKAGE);
    assert_int_equal(peer_inventory_get(inv, 1)->free, 0);
    assert_null(peer_inventory_get(inv, 2));
    peer_inventory_destroy(&inv);
    assert_null(inv);
}

static void test_grant(void **state)
{
    (void)state;
    uint8_t self_pk[CPN_PK_LEN], tenant[CPN_PK_LEN], other[CPN_PK_LEN];
    memset(self_pk, 7, sizeof self_pk);
    memset(tenant, 8, sizeof tenant);
    memset(other, 9, sizeof other);
    char id1[CPN_NAME_MAX], id2[CPN_NAME_MAX], id3[CPN_NAME_MAX];
    grant_lease_id(self_pk, tenant, "req-1", id1);
    grant_lease_id(self_pk, tenant, "req-1", id2);
    grant_lease_id(self_pk, other, "req-1", id3);
    assert_string_equal(id1, id2);
    assert_string_not_equal(id1, id3);
    assert_int_equal(strlen(id1), 17);
    assert_int_equal(id1[0], 'L');

    cpn_package_t pk[1] = {s_pkg("a", 3, 1000)};
    uint64_t floors[1] = {800};
    peer_inventory_t *inv = peer_inventory_new(pk, floors, 1);
    peer_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_lease_s = 3600;
    cfg.tenants = &tenant;
    cfg.n_tenants = 1;
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    memcpy(c.peer, self_pk, CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "a");
    c.units = 1;
    c.price = 900;
    c.duration_s = 60;
    cpn_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.id, sizeof q.id, "req-1");
    q.units = 2;
    q.split = true; /* one unit of two is a part of it */
    q.duration_s = 60;
    int pkg = -1;
    const char *why = NULL;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q, &pkg, &why), CPN_OK);
    assert_int_equal(pkg, 0);
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, other, &c, &q, &pkg, &why),
                     CPN_E_TENANT_REFUSED);
    cfg.tenants_any = true;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, other, &c, &q, &pkg, &why), CPN_OK);
    cpn_claim_t b = c;
    b.price = 799;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &b, &q, &pkg, &why),
                     CPN_E_PRICE_FLOOR);
    b = c;
    snprintf(b.package, sizeof b.package, "zz");
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &b, &q, &pkg, &why),
                     CPN_E_NO_PACKAGE);
    b = c;
    b.duration_s = 3601;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &b, &q, &pkg, &why),
                     CPN_E_INVAL);
    b = c;
    b.units = 3; /* more than requested */
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &b, &q, &pkg, &why),
                     CPN_E_INVAL);
    b = c;
    memcpy(b.peer, other, CPN_PK_LEN);
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &b, &q, &pkg, &why),
                     CPN_E_INVAL);
    cpn_request_t q2 = q;
    q2.max_price = 850;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_INVAL);
    /* the CLAIM's terms are the REQUEST's: all units of an unsplit request, its duration */
    q2 = q;
    q2.split = false;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_CHAIN);
    q2.units = 1;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why), CPN_OK);
    q2 = q;
    q2.duration_s = 600;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_CHAIN);
    /* and the package meets the REQUEST's constraints, but the model (broker equivalences) */
    q2 = q;
    q2.cores = 9;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_NO_MATCH);
    assert_non_null(strstr(why, "cores"));
    q2 = q;
    snprintf(q2.regions.items[0], sizeof q2.regions.items[0], "%s", "eu-west");
    q2.regions.n = 1;
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_NO_MATCH);
    assert_non_null(strstr(why, "region"));
    q2 = q;
    snprintf(q2.accel_model, sizeof q2.accel_model, "%s", "H100-80GB");
    assert_int_equal(grant_check_claim(&cfg, inv, self_pk, tenant, &c, &q2, &pkg, &why),
                     CPN_E_NO_MATCH); /* no accelerators at all */
    assert_non_null(strstr(why, "accelerator.model"));
    cpn_package_t gp = s_pkg("g", 1, 1000);
    snprintf(gp.accel.vendor, sizeof gp.accel.vendor, "%s", "nvidia");
    snprintf(gp.accel.model, sizeof gp.accel.model, "%s", "H800-80GB");
    gp.accel.count = 8;
    uint64_t gfloor = 0;
    peer_inventory_t *ginv = peer_inventory_new(&gp, &gfloor, 1);
    assert_non_null(ginv);
    cpn_claim_t gc = c;
    snprintf(gc.package, sizeof gc.package, "g");
    assert_int_equal(grant_check_claim(&cfg, ginv, self_pk, tenant, &gc, &q2, &pkg, &why),
                     CPN_OK); /* another model: a broker's equivalence, not the peer's call */
    q2.accel_count = 16;
    assert_int_equal(grant_check_claim(&cfg, ginv, self_pk, tenant, &gc, &q2, &pkg, &why),
                     CPN_E_NO_MATCH);
    peer_inventory_destroy(&ginv);

    peer_lease_row_t row;
    memset(&row, 0, sizeof row);
    memcpy(row.tenant, tenant, CPN_PK_LEN);
    row.start_ms = 1000000;
    row.end_ms = 1000000 + 1800 * 1000;
    row.state = PEER_LEASE_ACTIVE;
    uint64_t end = 0;
    assert_int_equal(grant_check_renew(&cfg, &row, tenant, 1800, 1000001, &end, &why), CPN_OK);
    assert_int_equal(end, 1000000 + 3600 * 1000);
    assert_int_equal(grant_check_renew(&cfg, &row, tenant, 1801, 1000001, &end, &why),
                     CPN_E_RENEW_REFUSED);
    assert_int_equal(grant_check_renew(&cfg, &row, tenant, UINT64_MAX / 2, 1000001, &end, &why),
                     CPN_E_RENEW_REFUSED);
    assert_int_equal(grant_check_renew(&cfg, &row, other, 10, 1000001, &end, &why), CPN_E_NO_LEASE);
    assert_int_equal(grant_check_renew(&cfg, &row, tenant, 0, 1000001, &end, &why), CPN_E_INVAL);
    assert_int_equal(grant_check_renew(&cfg, &row, tenant, 10, row.end_ms, &end, &why),
                     CPN_E_EXPIRED);
    assert_int_equal(grant_check_release(&row, tenant, 1000001, &why), CPN_OK);
    assert_int_equal(grant_check_release(&row, other, 1000001, &why), CPN_E_NO_LEASE);
    row.state = PEER_LEASE_RELEASED;
    assert_int_equal(grant_check_release(&row, tenant, 1000001, &why), CPN_E_EXPIRED);
    peer_inventory_destroy(&inv);
}

/* The shipped example configurations load, with the broker key file next to them. */
/* A replacement CLAIM (on_failure: rematch) is held to the rest of the lease it replaces. */
static void test_grant_replacement(void **state)
{
    (void)state;
    uint8_t self_pk[CPN_PK_LEN], lost_pk[CPN_PK_LEN];
    memset(self_pk, 7, sizeof self_pk);
    memset(lost_pk, 9, sizeof lost_pk);
    static const uint8_t req_frame[] = {1, 2, 3, 4}, other_frame[] = {1, 2, 3, 5};
    cpn_chain_t *old = calloc(1, sizeof *old);
    assert_non_null(old);
    old->claim.request = (mp_bytes_t){req_frame, sizeof req_frame};
    snprintf(old->req.on_failure, sizeof old->req.on_failure, "rematch");
    old->req.duration_s = 3600;
    old->lease.units = 2;
    old->lease.start_ms = 1000000;
    old->lease.end_ms = 1000000 + 3600000;
    cpn_notice_t n;
    memset(&n, 0, sizeof n);
    n.effective_ms = 1000000 + 600000; /* 3000 s of the lease were left */
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request = old->claim.request;
    c.units = 2;
    c.duration_s = 3000;
    uint64_t now = n.effective_ms + 5000;
    const char *why = NULL;
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why), CPN_OK);
    /* Never on the peer that lost the capacity. */
    assert_int_equal(grant_check_replacement(self_pk, self_pk, &n, old, &c, now, &why),
                     CPN_E_INVAL);
    /* Another REQUEST, or one that did not ask rematch. */
    c.request = (mp_bytes_t){other_frame, sizeof other_frame};
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why),
                     CPN_E_CHAIN);
    c.request = old->claim.request;
    old->req.on_failure[0] = '\0';
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why),
                     CPN_E_CHAIN);
    snprintf(old->req.on_failure, sizeof old->req.on_failure, "rematch");
    /* More units than were lost. */
    c.units = 3;
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why),
                     CPN_E_CHAIN);
    c.units = 2;
    n.units = 1; /* the lease keeps one: one may be replaced */
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why),
                     CPN_E_CHAIN);
    c.units = 1;
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why), CPN_OK);
    /* Longer than the rest, or the old lease over. */
    c.duration_s = 3001;
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, now, &why),
                     CPN_E_CHAIN);
    c.duration_s = 3000;
    assert_int_equal(grant_check_replacement(self_pk, lost_pk, &n, old, &c, old->lease.end_ms,
                                             &why),
                     CPN_E_EXPIRED);
    free(old);
}

static void test_shipped_configs(void **state)
{
    fx_t *fx = *state;
    const char *src = getenv("CPN_SRCDIR");
    const char *names[] = {"peer.yaml", "peer2.yaml"};
    cpn_identity_t *broker = NULL;
    char base[400];
    assert_int_equal(cpn_identity_generate(&broker), CPN_OK);
    snprintf(base, sizeof base, "%s/broker", fx->dir);
    assert_int_equal(cpn_identity_save(broker, base), CPN_OK);
    for (size_t i = 0; i < 2; i++) {
        char cmd[1200], path[400];
        snprintf(cmd, sizeof cmd, "cp '%s/conf/%s' '%s/'", src ? src : ".", names[i], fx->dir);
        assert_int_equal(system(cmd), 0);
        snprintf(path, sizeof path, "%s/%s", fx->dir, names[i]);
        peer_config_t *cfg = NULL;
        yconf_t *doc = NULL;
        int r = peer_config_load(path, &cfg, &doc);
        if (r != CPN_OK && doc)
            yconf_print_errors(doc, stderr);
        assert_int_equal(r, CPN_OK);
        yconf_destroy(&doc);
        assert_int_equal(cfg->n_packages, i == 0 ? 4 : 5); /* peer2: + a shared A10 package */
        assert_int_equal(cfg->n_brokers, 1);
        assert_memory_equal(cfg->brokers[0].key, cpn_identity_pk(broker), CPN_PK_LEN);
        assert_true(cfg->tenants_any);
        assert_int_equal(cfg->refresh_s, 10);
        /* paths resolve against the configuration's directory */
        assert_int_equal(strncmp(cfg->database, fx->dir, strlen(fx->dir)), 0);
        assert_int_equal(strncmp(cfg->key_path, fx->dir, strlen(fx->dir)), 0);
        if (i == 0) {
            assert_string_equal(cfg->packages[0].id, "h100x8-nvme");
            assert_int_equal(cfg->packages[0].total, 12);
            assert_int_equal(cfg->packages[0].price, 210000);
            assert_int_equal(cfg->floors[0], 150000);
            assert_int_equal(cfg->packages[0].accel.count, 8);
            assert_int_equal(cfg->packages[0].fabric_bps, 400000000000ULL);
            assert_string_equal(cfg->packages[0].region, "cn-east"); /* the default */
            assert_int_equal(cfg->floors[3], 0);                     /* no floor given */
        } else {
            assert_string_equal(cfg->packages[4].id, "a10x8-shared");
            assert_int_equal(cfg->packages[4].accel.share_min, 50); /* 0.05 of one A10 */
        }
        peer_config_destroy(&cfg);
    }
    cpn_identity_destroy(&broker);
}

static void test_config_errors(void **state)
{
    fx_t *fx = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/bad.yaml", fx->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("name: x\n"
          "key: x.key\n"
          "database: x.db\n"
          "brokers:\n"
          "  - endpoint: http://nope\n"
          "    key: not-a-key\n"
          "tenants: maybe\n"
          "packages:\n"
          "  - id: p\n"
          "    region: r\n"
          "    count: 2\n"
          "    price: \"1.0\"\n"
          "    floor: \"2.0\"\n"
          "    cores: 4\n"
          "colour: blue\n"
          "http: 10.0.0:9465\n",
          f);
    fclose(f);
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    assert_int_equal(peer_config_load(path, &cfg, &doc), CPN_E_CONFIG);
    assert_null(cfg);
    assert_non_null(doc);
    size_t n = yconf_error_count(doc);
    bool endpoint = false, key = false, tenants = false, floor = false, unknown = false,
         http = false;
    for (size_t i = 0; i < n; i++) {
        const char *e = yconf_error_at(doc, i);
        assert_non_null(strstr(e, "bad.yaml:"));
        endpoint |= strstr(e, ":5:") && strstr(e, "brokers[0].endpoint") != NULL;
        key |= strstr(e, "brokers[0].key") != NULL;
        tenants |= strstr(e, ":7:") && strstr(e, "tenants") != NULL;
        floor |= strstr(e, "packages[0]") && strstr(e, "floor") != NULL;
        unknown |= strstr(e, "colour") != NULL;
        http |= strstr(e, ":16:") && strstr(e, "http: the address is not an IPv4") != NULL;
    }
    assert_true(endpoint && key && tenants && floor && unknown && http);
    yconf_destroy(&doc);
}


/* A peer whose AD would not fit in one frame is told so before it starts. */
static void test_ad_size(void **state)
{
    (void)state;
    static cpn_package_t pk[CPN_PACKAGES_MAX];
    peer_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "big");
    cfg.refresh_s = 10;
    for (size_t i = 0; i < CPN_PACKAGES_MAX; i++) {
        pk[i] = s_pkg("x", 1000, 210000);
        snprintf(pk[i].id, sizeof pk[i].id, "%060zu", i); /* 60-character ids */
        snprintf(pk[i].region, sizeof pk[i].region, "%s", "cn-east-shanghai-lingang-zone-b");
        snprintf(pk[i].accel.vendor, sizeof pk[i].accel.vendor, "nvidia");
        snprintf(pk[i].accel.model, sizeof pk[i].accel.model, "H100-80GB-HBM3-SXM5");
        pk[i].accel.count = 8;
        pk[i].accel.mem_bytes = 80ULL << 30;
        pk[i].accel.bf16_tflops = 989;
        pk[i].accel.mem_bw_gbs = 3350;
        pk[i].mem_bytes = 1ULL << 40;
        snprintf(pk[i].storage_class, sizeof pk[i].storage_class, "nvme");
        pk[i].storage_bytes = 15000000000000ULL;
        pk[i].storage_iops = 2000000;
        pk[i].fabric_bps = 400000000000ULL;
        pk[i].egress_bps = 25000000000ULL;
    }
    size_t len = 0;
    peer_inventory_t *inv = peer_inventory_new(pk, NULL, CPN_PACKAGES_MAX);
    assert_int_equal(advertise_check_size(&cfg, inv, cpn_limits_default.max_frame, &len),
                     CPN_E_TOO_BIG);
    assert_true(len > cpn_limits_default.max_frame);
    peer_inventory_destroy(&inv);
    inv = peer_inventory_new(pk, NULL, 8);
    assert_int_equal(advertise_check_size(&cfg, inv, cpn_limits_default.max_frame, &len),
                     CPN_OK);
    assert_true(len < cpn_limits_default.max_frame);
    peer_inventory_destroy(&inv);
}

static void test_discover_parsers(void **state)
{
    (void)state;
    uint64_t b = 0;
    assert_int_equal(discover_parse_meminfo("MemFree: 1 kB\nMemTotal:   65843212 kB\n", &b),
                     CPN_OK);
    assert_int_equal(b, 65843212ULL * 1024);
    assert_int_equal(discover_parse_meminfo("nothing here", &b), CPN_E_INVAL);
    discover_host_t h;
    memset(&h, 0, sizeof h);
    discover_parse_nvidia("NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\n"
                          "NVIDIA A100-SXM4-40GB, 40960\ngarbage line\n",
                          &h);
    assert_int_equal(h.n_gpu_kinds, 2);
    assert_string_equal(h.gpus[0].model, "H100-80GB-HBM3");
    assert_int_equal(h.gpus[0].count, 2);
    assert_int_equal(h.gpus[0].mem_bytes, 81559ULL << 20);
    assert_string_equal(h.gpus[1].model, "A100-SXM4-40GB");
    assert_int_equal(discover_bf16_tflops("H100-80GB-HBM3"), 989);
    assert_int_equal(discover_bf16_tflops("Mystery-1"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_rows, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_store_old_schema, s_setup, s_teardown),
        cmocka_unit_test(test_store_open_fails_cleanly),
        cmocka_unit_test(test_grant_replacement),
        cmocka_unit_test_setup_teardown(test_sender_ceiling, s_setup, s_teardown),
        cmocka_unit_test(test_inventory),
        cmocka_unit_test(test_grant),
        cmocka_unit_test_setup_teardown(test_shipped_configs, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, s_setup, s_teardown),
        cmocka_unit_test(test_ad_size),
        cmocka_unit_test(test_discover_parsers),
    };
    return cmocka_run_group_tests_name("peer_store", tests, NULL, NULL);
}
