/* test_budget.c - admission against a budget and a cost ceiling (broker/budget.c): exactly at
 * the limit is admitted, a thousandth over is refused naming every figure; the ceiling; the
 * rest of a running lease; sums that would overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "budget.h"
#include "usage.h"

#define T0 1796083200000ull
#define HOUR_MS 3600000ull

static void test_cost_and_rest(void **state)
{
    (void)state;
    uint64_t c = 0;
    assert_int_equal(budget_request_cost(8, 210000, 3600, &c), CPN_OK);
    assert_int_equal(c, 8ull * 210000);
    assert_int_equal(budget_request_cost(1, 1000, 1, &c), CPN_OK);
    assert_int_equal(c, 0); /* 1.000/h for 1 s: 0.277 thousandths, floored */
    assert_int_equal(budget_request_cost(UINT32_MAX, UINT64_MAX, 3600, &c), CPN_E_INVAL);
    assert_int_equal(budget_request_cost(1, 1, UINT64_MAX, &c), CPN_E_INVAL);
    /* a 2-hour lease of 2 units at 3.000, half run: 6.000 left */
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 + HOUR_MS), 6000);
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 - 5), 12000);
    assert_int_equal(budget_lease_rest(2, 3000, T0, T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS), 0);
    /* rest + what was metered = the whole, whatever the cut (the usage rule) */
    uint64_t whole = budget_lease_rest(7, 1234, T0, T0 + 2 * HOUR_MS, T0);
    for (uint64_t at = T0; at < T0 + 2 * HOUR_MS; at += 777777) {
        uint64_t rest = budget_lease_rest(7, 1234, T0, T0 + 2 * HOUR_MS, at), done = 0;
        assert_int_equal(cpn_usage_total(7, 1234, T0, at, &done), CPN_OK);
        assert_int_equal(done + rest, whole);
    }
}

static void test_admit(void **state)
{
    (void)state;
    char why[CPN_REASON_MAX] = "";
    budget_state_t s = {.budget = 100000, .committed = 60000, .running = 30000, .in_flight = 5000};
    assert_int_equal(budget_admit(&s, 5000, 0, why), CPN_OK); /* exactly at the limit */
    assert_int_equal(budget_admit(&s, 5001, 0, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "budget 100.000"));
    assert_non_null(strstr(why, "committed 60.000 + running 30.000 + in flight 5.000 + this "
                                "request 5.001 = 100.001"));
    /* no budget: only the ceiling */
    budget_state_t none = {0};
    assert_int_equal(budget_admit(&none, UINT64_MAX, 0, why), CPN_OK);
    assert_int_equal(budget_admit(&none, 10001, 10000, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "cost 10.001 over the request's ceiling 10.000"));
    assert_int_equal(budget_admit(&none, 10000, 10000, why), CPN_OK);
    /* a sum that would wrap refuses */
    budget_state_t big = {.budget = UINT64_MAX, .committed = UINT64_MAX - 1, .running = 1};
    assert_int_equal(budget_admit(&big, 1, 0, why), CPN_E_OVER_BUDGET);
    assert_non_null(strstr(why, "overflow"));
    assert_string_equal(cpn_errname(CPN_E_OVER_BUDGET), "over-budget");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_and_rest),
        cmocka_unit_test(test_admit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
