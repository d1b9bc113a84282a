/* test_fgd.c - the fragmentation measure (Weng et al., ATC'23) and the placements of
 * peer/fgd.c on small nodes whose answers are worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fgd.h"

static fgd_node_t s_node(uint32_t ndev, const uint16_t *free)
{
    fgd_node_t n = {.cpu_free = 64000, .mem_free = 262144, .ndev = ndev};
    for (uint32_t i = 0; i < ndev; i++)
        n.dev_free[i] = free ? free[i] : FGD_MILLI;
    return n;
}

static fgd_task_t s_frac(uint16_t milli)
{
    return (fgd_task_t){.cpu = 4000, .mem = 8192, .ndev = 1, .milli = milli};
}

static void test_task_valid(void **state)
{
    (void)state;
    fgd_task_t t = s_frac(500);
    assert_true(fgd_task_valid(&t));
    t.milli = 0;
    assert_false(fgd_task_valid(&t)); /* a device share of nothing */
    t = (fgd_task_t){.ndev = 2, .milli = 500};
    assert_false(fgd_task_valid(&t)); /* fractions come one device at a time */
    t = (fgd_task_t){.ndev = 9, .milli = FGD_MILLI};
    assert_false(fgd_task_valid(&t));
    t = (fgd_task_t){.ndev = 0, .milli = 0, .cpu = 1};
    assert_true(fgd_task_valid(&t));
    fgd_workload_t *w = fgd_workload_new();
    t.milli = 7;
    assert_int_equal(fgd_workload_add(w, &t, 1), CPN_E_INVAL);
    t.milli = 0;
    assert_int_equal(fgd_workload_add(w, &t, 0), CPN_E_INVAL);
    assert_int_equal(fgd_workload_classes(w), 0);
    fgd_workload_destroy(&w);
    assert_null(w);
}

/* One class asking 0.5: devices with less than 0.5 free are fragments, the rest is not;
 * a class that cannot run at all makes every free share a fragment. */
static void test_frag_by_hand(void **state)
{
    (void)state;
    fgd_workload_t *w = fgd_workload_new();
    fgd_task_t half = s_frac(500);
    assert_int_equal(fgd_workload_add(w, &half, 1), CPN_OK);
    uint16_t f1[] = {1000, 300, 200, 0};
    fgd_node_t n = s_node(4, f1);
    assert_true(fgd_frag(w, &n) > 499.999 && fgd_frag(w, &n) < 500.001);
    n.cpu_free = 1000; /* the class no longer fits: all 1,500 free milli are fragments */
    assert_true(fgd_frag(w, &n) > 1499.999 && fgd_frag(w, &n) < 1500.001);
    /* a second class of whole devices, weighted 3: on the full-CPU node it fits the one
     * free device; fragments are the partly used ones (500): F = (1*500 + 3*500) / 4 */
    fgd_task_t whole = {.cpu = 4000, .mem = 8192, .ndev = 1, .milli = FGD_MILLI};
    assert_int_equal(fgd_workload_add(w, &whole, 3), CPN_OK);
    n = s_node(4, f1);
    assert_true(fgd_frag(w, &n) > 499.999 && fgd_frag(w, &n) < 500.001);
    assert_int_equal(fgd_workload_classes(w), 2);
    fgd_workload_destroy(&w);
}

/* A 0.2 task beside a 0.5 workload: placing it on the device with 0.3 free leaves 0.1 (a
 * fragment either way) and keeps the whole device whole, so FGD chooses it. */
static void test_best_device(void **state)
{
    (void)state;
    fgd_workload_t *w = fgd_workload_new();
    fgd_task_t half = s_frac(500), small = s_frac(200);
    assert_int_equal(fgd_workload_add(w, &half, 1), CPN_OK);
    uint16_t f[] = {1000, 300};
    fgd_node_t n = s_node(2, f);
    double d = 0, now = fgd_frag(w, &n);
    int dev = fgd_best_device(w, &n, now, &small, FGD_RULE_FGD, &d);
    assert_int_equal(dev, 1);
    assert_true(d < -199.999 && d > -200.001); /* 0.3 fragment becomes 0.1 */
    /* too big for any device */
    fgd_task_t big = s_frac(999);
    n.dev_free[0] = 900;
    assert_int_equal(fgd_best_device(w, &n, fgd_frag(w, &n), &big, FGD_RULE_CPN, &d), -1);
    fgd_workload_destroy(&w);
}

/* Never over one device's capacity: taking and fitting agree. */
static void test_take_never_over(void **state)
{
    (void)state;
    fgd_node_t n = s_node(1, NULL);
    fgd_task_t t = s_frac(300);
    int placed = 0;
    for (int i = 0; i < 10; i++)
        if (fgd_fits_on(&n, &t, 0)) {
            fgd_take(&n, &t, 0);
            placed++;
        }
    assert_int_equal(placed, 3);
    assert_int_equal(n.dev_free[0], 100);
    fgd_task_t whole = {.ndev = 1, .milli = FGD_MILLI};
    assert_false(fgd_fits(&n, &whole)); /* a partly used device is no whole device */
    fgd_node_t two = s_node(2, NULL);
    fgd_take(&two, &t, 1);
    assert_true(fgd_fits(&two, &whole));
    fgd_take(&two, &whole, 0);
    assert_int_equal(two.dev_free[0], 0);
    assert_int_equal(two.dev_free[1], 700);
}

/* Ties: FGD keeps the first; cpn prefers the node left with less free. */
static void test_better_ties(void **state)
{
    (void)state;
    fgd_node_t a = s_node(2, NULL), b = s_node(2, NULL);
    b.dev_free[0] = 100;
    assert_false(fgd_better(FGD_RULE_FGD, 0, &b, 0, &a));
    assert_true(fgd_better(FGD_RULE_CPN, 0, &b, 0, &a));
    assert_false(fgd_better(FGD_RULE_CPN, 0, &a, 0, &b));
    assert_true(fgd_better(FGD_RULE_FGD, -1, &a, 0, &b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_valid),  cmocka_unit_test(test_frag_by_hand),
        cmocka_unit_test(test_best_device), cmocka_unit_test(test_take_never_over),
        cmocka_unit_test(test_better_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
