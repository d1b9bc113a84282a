/* test_walckpt.c - the WAL checkpoint thread on a real SQLite file: it checkpoints once the
 * log passes CPN_WALCKPT_PAGES, nothing is lost across stop and reopen, a reader that pins
 * the log makes the writer checkpoint itself at CPN_WALCKPT_HARD_PAGES, and a database that
 * is not a file is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "clock.h"
#include "walckpt.h"

#define WAIT_MS 20000 /* a bound for the thread to get a turn, not a timing */

typedef struct {
    char dir[64];
    char db[96];
} fx_t;

static int s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cpn-walckpt-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->db, sizeof fx->db, "%s/t.db", fx->dir);
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    char path[128];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", fx->db, suffix[i]);
        unlink(path);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static sqlite3 *s_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                      "CREATE TABLE IF NOT EXISTS t (b BLOB)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

/* n rows of `bytes` each, `per_tx` rows a transaction. */
static void s_write(sqlite3 *db, int n, int bytes, int per_tx)
{
    char sql[64];
    snprintf(sql, sizeof sql, "INSERT INTO t (b) VALUES (randomblob(%d))", bytes);
    for (int i = 0; i < n; i += per_tx) {
        assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        for (int k = 0; k < per_tx && i + k < n; k++)
            assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    }
}

static int s_count(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM t", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ~12 MB through the log (3x the wake-up mark): the thread checkpoints, the writer never
 * has to, and every row is there after stop, close and reopen. */
static void test_thread_checkpoints(void **state)
{
    fx_t *fx = *state;
    sqlite3 *db = s_open(fx->db);
    cpn_walckpt_t *ck = NULL;
    assert_int_equal(cpn_walckpt_start(db, &ck), CPN_OK);
    int rows = 3000; /* 4 KB each: ~3,000 log pages, 3x the mark */
    s_write(db, rows, 4000, 10);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (cpn_walckpt_runs(ck) == 0 && cpn_mono_ms() < deadline)
        usleep(10 * 1000);
    assert_true(cpn_walckpt_runs(ck) >= 1);
    assert_int_equal(cpn_walckpt_inline_runs(ck), 0);
    cpn_walckpt_stop(&ck);
    assert_null(ck);
    s_write(db, 10, 100, 10); /* SQLite's own checkpointing again */
    rows += 10;
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    db = s_open(fx->db);
    assert_int_equal(s_count(db), rows);
    sqlite3_close(db);
}

/* A reader holding an old snapshot keeps the log from being reused: past the hard mark the
 * committing connection checkpoints itself rather than letting the file grow. */
static void test_hard_mark(void **state)
{
    fx_t *fx = *state;
    sqlite3 *db = s_open(fx->db);
    sqlite3 *reader = s_open(fx->db);
    cpn_walckpt_t *ck = NULL;
    assert_int_equal(cpn_walckpt_start(db, &ck), CPN_OK);
    s_write(db, 1, 10, 1);
    assert_int_equal(sqlite3_exec(reader, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(s_count(reader), 1); /* the read transaction now holds its snapshot */
    /* 16 KB rows: about CPN_WALCKPT_HARD_PAGES * 4 KB / 16 KB rows reach the mark. */
    s_write(db, CPN_WALCKPT_HARD_PAGES / 4 + 200, 16000, 50);
    assert_true(cpn_walckpt_inline_runs(ck) >= 1);
    assert_int_equal(s_count(reader), 1); /* the snapshot is untouched */
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(s_count(reader), CPN_WALCKPT_HARD_PAGES / 4 + 201);
    cpn_walckpt_stop(&ck);
    sqlite3_close(reader);
    sqlite3_close(db);
}

/* Nothing to checkpoint in memory: refused, and NULLs are refused or ignored. */
static void test_refusals(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    cpn_walckpt_t *ck = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(cpn_walckpt_start(db, &ck), CPN_E_INVAL);
    assert_null(ck);
    assert_int_equal(cpn_walckpt_start(NULL, &ck), CPN_E_INVAL);
    assert_int_equal(cpn_walckpt_start(db, NULL), CPN_E_INVAL);
    cpn_walckpt_stop(&ck);
    cpn_walckpt_stop(NULL);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_checkpoints, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hard_mark, s_setup, s_teardown),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests_name("walckpt", tests, NULL, NULL);
}
