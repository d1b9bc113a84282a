/* test_statement.c - settlement statements (common/statement.c): lines, checks, and the
 * reconciliation of two brokers' statements, which agree to the thousandth or name every
 * lease that differs (a dropped lease, an altered amount or record, a mirrored direction). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statement.h"
#include "usage.h"

#define A_KEY 0xaa
#define B_KEY 0xbb

static cpn_stmt_line_t s_line(uint8_t peer, const char *id, uint8_t dir, uint64_t amount)
{
    cpn_stmt_line_t l;
    memset(&l, 0, sizeof l);
    memset(l.peer, peer, CPN_PK_LEN);
    snprintf(l.lease_id, sizeof l.lease_id, "%s", id);
    memset(l.tenant, 0x70 + peer, CPN_PK_LEN);
    l.dir = dir;
    l.n_first = 1;
    l.n_last = 3;
    l.amount = amount;
    memset(l.last, (int)(amount & 0xff), CPN_PK_LEN);
    return l;
}

/* A statement of `with` for December 2026 from n lines (copied: fill sorts them). */
static void s_stmt(cpn_statement_t *st, uint8_t with, const cpn_stmt_line_t *lines, size_t n,
                   uint8_t **buf)
{
    cpn_stmt_line_t copy[16];
    memcpy(copy, lines, n * sizeof *lines);
    memset(st, 0, sizeof *st);
    memset(st->with, with, CPN_PK_LEN);
    snprintf(st->period, sizeof st->period, "2026-12");
    assert_int_equal(cpn_usage_month_parse("2026-12", &st->from_ms, &st->to_ms), CPN_OK);
    st->part = st->parts = 1;
    assert_int_equal(cpn_stmt_fill(st, copy, n, buf), CPN_OK);
    char why[CPN_REASON_MAX];
    assert_int_equal(cpn_stmt_check(st, why), CPN_OK);
}

/* The mirror of a line: the other broker's view of the same lease. */
static cpn_stmt_line_t s_mirror(cpn_stmt_line_t l)
{
    l.dir = l.dir == CPN_STMT_OWE ? CPN_STMT_DUE : CPN_STMT_OWE;
    return l;
}

static void test_line_roundtrip(void **state)
{
    (void)state;
    cpn_stmt_line_t l = s_line(1, "LRuywK9v14eKsV4z1", CPN_STMT_DUE, 116666), back;
    uint8_t b[CPN_STMT_LINE_LEN];
    cpn_stmt_line_pack(&l, b);
    assert_int_equal(cpn_stmt_line_unpack(b, &back), CPN_OK);
    assert_memory_equal(&l, &back, sizeof l);
    assert_int_equal(b[96], 1);
    assert_int_equal(b[112], 116666 & 0xff); /* amount big-endian, last byte */
    uint8_t bad[CPN_STMT_LINE_LEN];
    memcpy(bad, b, sizeof bad);
    bad[96] = 2; /* direction */
    assert_int_equal(cpn_stmt_line_unpack(bad, &back), CPN_E_SCHEMA);
    memcpy(bad, b, sizeof bad);
    memset(bad + 32, 0, CPN_STMT_ID_MAX); /* empty lease id */
    assert_int_equal(cpn_stmt_line_unpack(bad, &back), CPN_E_SCHEMA);
    memcpy(bad, b, sizeof bad);
    bad[32 + 20] = 'x'; /* a byte after the id's end */
    assert_int_equal(cpn_stmt_line_unpack(bad, &back), CPN_E_SCHEMA);
    memcpy(bad, b, sizeof bad);
    bad[32 + 3] = ' ';
    assert_int_equal(cpn_stmt_line_unpack(bad, &back), CPN_E_SCHEMA);
    memcpy(bad, b, sizeof bad);
    memset(bad + 101, 0, 4); /* n_last 0 < n_first */
    assert_int_equal(cpn_stmt_line_unpack(bad, &back), CPN_E_SCHEMA);
}

static void test_check(void **state)
{
    (void)state;
    cpn_stmt_line_t l[3] = {s_line(2, "Lb", CPN_STMT_OWE, 5000), s_line(1, "La", CPN_STMT_DUE, 7),
                            s_line(2, "La", CPN_STMT_OWE, 1)};
    cpn_statement_t st;
    uint8_t *buf = NULL;
    char why[CPN_REASON_MAX];
    s_stmt(&st, B_KEY, l, 3, &buf);
    assert_true(st.owe == 5001 && st.due == 7);
    /* sorted by peer then lease id */
    cpn_stmt_line_t first;
    assert_int_equal(cpn_stmt_line_unpack(st.lines.ptr, &first), CPN_OK);
    assert_string_equal(first.lease_id, "La");
    /* totals that are not the lines' sums */
    st.owe++;
    assert_int_equal(cpn_stmt_check(&st, why), CPN_E_CHAIN);
    st.owe--;
    /* a partial line */
    st.lines.len--;
    assert_int_equal(cpn_stmt_check(&st, why), CPN_E_SCHEMA);
    st.lines.len++;
    /* lines out of order */
    uint8_t swapped[3 * CPN_STMT_LINE_LEN];
    memcpy(swapped, buf + CPN_STMT_LINE_LEN, CPN_STMT_LINE_LEN);
    memcpy(swapped + CPN_STMT_LINE_LEN, buf, CPN_STMT_LINE_LEN);
    memcpy(swapped + 2 * CPN_STMT_LINE_LEN, buf + 2 * CPN_STMT_LINE_LEN, CPN_STMT_LINE_LEN);
    st.lines.ptr = swapped;
    assert_int_equal(cpn_stmt_check(&st, why), CPN_E_SCHEMA);
    st.lines.ptr = buf;
    /* a period and bounds that disagree; a period that is no month */
    st.to_ms++;
    assert_int_equal(cpn_stmt_check(&st, why), CPN_E_CHAIN);
    st.to_ms--;
    snprintf(st.period, sizeof st.period, "2026-13");
    assert_int_equal(cpn_stmt_check(&st, why), CPN_E_SCHEMA);
    free(buf);
    /* one lease twice */
    cpn_stmt_line_t twice[2] = {s_line(1, "La", CPN_STMT_OWE, 1), s_line(1, "La", CPN_STMT_DUE, 2)};
    assert_int_equal(cpn_stmt_fill(&st, twice, 2, &buf), CPN_E_INVAL);
    assert_null(buf);
}

/* A's and B's statements of the same leases, mirrored: reconciled; then each way one can
 * differ is named, lease by lease. */
static void test_reconcile(void **state)
{
    (void)state;
    uint8_t a[CPN_PK_LEN], b[CPN_PK_LEN];
    memset(a, A_KEY, sizeof a);
    memset(b, B_KEY, sizeof b);
    cpn_stmt_line_t la[4] = {s_line(1, "L1", CPN_STMT_OWE, 35000), s_line(1, "L2", CPN_STMT_OWE, 1),
                             s_line(9, "L3", CPN_STMT_DUE, 116666),
                             s_line(9, "L4", CPN_STMT_DUE, 0)};
    cpn_stmt_line_t lb[4];
    for (int i = 0; i < 4; i++)
        lb[i] = s_mirror(la[i]);
    cpn_statement_t sa, sb;
    uint8_t *ba = NULL, *bb = NULL;
    cpn_stmt_diff_t d[8];
    size_t n = 0;
    char why[CPN_REASON_MAX];
    s_stmt(&sa, B_KEY, la, 4, &ba);
    s_stmt(&sb, A_KEY, lb, 4, &bb);
    assert_int_equal(cpn_stmt_reconcile(a, &sa, b, &sb, d, 8, &n, why), CPN_OK);
    assert_int_equal(n, 0);
    assert_true(sa.owe == sb.due && sa.due == sb.owe && sa.owe == 35001 && sa.due == 116666);
    /* the same from B's side */
    assert_int_equal(cpn_stmt_reconcile(b, &sb, a, &sa, d, 8, &n, why), CPN_OK);
    free(bb);

    /* B dropped L2, altered L3's amount by one thousandth, holds one record more of L1, and
     * signed another last record of L4 */
    cpn_stmt_line_t lx[3] = {lb[0], lb[2], lb[3]};
    lx[0].n_last = 4;
    lx[1].amount += 1;
    lx[2].last[0] ^= 1;
    s_stmt(&sb, A_KEY, lx, 3, &bb);
    assert_int_equal(cpn_stmt_reconcile(a, &sa, b, &sb, d, 8, &n, why), CPN_E_CHAIN);
    assert_int_equal(n, 4);
    assert_non_null(strstr(why, "4 leases differ"));
    assert_string_equal(d[0].lease_id, "L1");
    assert_string_equal(d[0].what, "records 1..3 / 1..4");
    assert_string_equal(d[1].lease_id, "L2");
    assert_string_equal(d[1].what, "only in ours");
    assert_true(d[1].ours == 1 && d[1].theirs == 0);
    assert_string_equal(d[2].what, "amount");
    assert_true(d[2].ours == 116666 && d[2].theirs == 116667);
    assert_string_equal(d[3].what, "record 3 differs (hash)");
    /* fewer slots than differences: all counted */
    assert_int_equal(cpn_stmt_reconcile(a, &sa, b, &sb, d, 2, &n, why), CPN_E_CHAIN);
    assert_int_equal(n, 4);
    free(bb);

    /* B claims the lease the same way round as A (both say "owe") */
    cpn_stmt_line_t same[4];
    memcpy(same, lb, sizeof same);
    same[0].dir = CPN_STMT_OWE;
    s_stmt(&sb, A_KEY, same, 4, &bb);
    assert_int_equal(cpn_stmt_reconcile(a, &sa, b, &sb, d, 8, &n, why), CPN_E_CHAIN);
    assert_int_equal(n, 1);
    assert_non_null(strstr(d[0].what, "direction"));
    /* not of one pair; not of one period */
    assert_int_equal(cpn_stmt_reconcile(b, &sa, a, &sb, d, 8, &n, why), CPN_E_CHAIN);
    assert_non_null(strstr(why, "pair"));
    snprintf(sb.period, sizeof sb.period, "2027-01");
    assert_int_equal(cpn_stmt_reconcile(a, &sa, b, &sb, d, 8, &n, why), CPN_E_CHAIN);
    assert_non_null(strstr(why, "periods"));
    free(bb);
    free(ba);
}

/* A statement in three parts joins back to the whole; parts missing, repeated, out of order,
 * of another period, over-full, or whose lines are out of order across parts are refused. */
static void test_join(void **state)
{
    (void)state;
    cpn_stmt_line_t l[6];
    const char *ids[6] = {"L1", "L2", "L3", "L4", "L5", "L6"};
    for (int i = 0; i < 6; i++)
        l[i] = s_line(1, ids[i], i % 2 ? CPN_STMT_DUE : CPN_STMT_OWE, 1000 + (uint64_t)i);
    cpn_statement_t whole, p[3], joined;
    uint8_t *bw = NULL, *bp[3] = {NULL, NULL, NULL}, *bj = NULL;
    char why[CPN_REASON_MAX];
    s_stmt(&whole, B_KEY, l, 6, &bw);
    for (int k = 0; k < 3; k++) {
        s_stmt(&p[k], B_KEY, l + 2 * k, 2, &bp[k]);
        p[k].part = (uint32_t)k + 1;
        p[k].parts = 3;
        assert_int_equal(cpn_stmt_check_part(&p[k], why), CPN_OK);
    }
    assert_int_equal(cpn_stmt_join(p, 3, &joined, &bj, why), CPN_OK);
    assert_true(joined.owe == whole.owe && joined.due == whole.due);
    assert_int_equal(joined.lines.len, whole.lines.len);
    assert_memory_equal(joined.lines.ptr, whole.lines.ptr, whole.lines.len);
    free(bj);
    /* a part missing: numbered 1 and 3 of 3 */
    cpn_statement_t gap[2] = {p[0], p[2]};
    assert_int_equal(cpn_stmt_join(gap, 2, &joined, &bj, why), CPN_E_SCHEMA);
    assert_null(bj);
    /* out of order */
    cpn_statement_t swap[3] = {p[1], p[0], p[2]};
    assert_int_equal(cpn_stmt_join(swap, 3, &joined, &bj, why), CPN_E_SCHEMA);
    /* lines out of order across parts, each part fine and numbered right */
    cpn_statement_t cross[3] = {p[1], p[0], p[2]};
    for (int k = 0; k < 3; k++)
        cross[k].part = (uint32_t)k + 1;
    assert_int_equal(cpn_stmt_join(cross, 3, &joined, &bj, why), CPN_E_SCHEMA);
    assert_non_null(strstr(why, "out of order"));
    /* another period in one part */
    cpn_statement_t other[3] = {p[0], p[1], p[2]};
    snprintf(other[1].period, sizeof other[1].period, "2027-01");
    assert_int_equal(cpn_usage_month_parse("2027-01", &other[1].from_ms, &other[1].to_ms), CPN_OK);
    assert_int_equal(cpn_stmt_join(other, 3, &joined, &bj, why), CPN_E_CHAIN);
    /* part 0, and a part fuller than CPN_STMT_PART_LINES */
    cpn_statement_t bad = p[0];
    bad.part = 0;
    assert_int_equal(cpn_stmt_check_part(&bad, why), CPN_E_SCHEMA);
    cpn_stmt_line_t *many = calloc(CPN_STMT_PART_LINES + 1, sizeof *many);
    assert_non_null(many);
    for (int i = 0; i <= CPN_STMT_PART_LINES; i++) {
        char id[16];
        snprintf(id, sizeof id, "L%05d", i);
        many[i] = s_line(1, id, CPN_STMT_OWE, 1);
    }
    uint8_t *bm = NULL;
    cpn_statement_t full = whole;
    assert_int_equal(cpn_stmt_fill(&full, many, CPN_STMT_PART_LINES + 1, &bm), CPN_OK);
    full.part = full.parts = 1;
    assert_int_equal(cpn_stmt_check(&full, why), CPN_OK);
    assert_int_equal(cpn_stmt_check_part(&full, why), CPN_E_SCHEMA);
    free(bm);
    free(many);
    for (int k = 0; k < 3; k++)
        free(bp[k]);
    free(bw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_roundtrip),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_reconcile),
        cmocka_unit_test(test_join),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
