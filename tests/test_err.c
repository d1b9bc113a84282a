/* test_err.c - error codes: distinct, named, round-trip through their slugs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

static const int s_codes[] = {
#define X(name, val, slug, reason) (val),
    CPN_ERRORS(X)
#undef X
};

static void test_codes_distinct_and_named(void **state)
{
    (void)state;
    size_t n = sizeof s_codes / sizeof s_codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_true(s_codes[i] <= 0);
        assert_string_not_equal(cpn_errname(s_codes[i]), "unknown");
        assert_int_equal(cpn_errcode(cpn_errname(s_codes[i])), s_codes[i]);
        for (size_t j = i + 1; j < n; j++) {
            assert_int_not_equal(s_codes[i], s_codes[j]);
            assert_string_not_equal(cpn_errname(s_codes[i]), cpn_errname(s_codes[j]));
        }
    }
}

static void test_unknown_code(void **state)
{
    (void)state;
    assert_string_equal(cpn_strerror(-9999), "unknown error");
    assert_string_equal(cpn_errname(12345), "unknown");
    assert_int_equal(cpn_errcode("no-such-slug"), CPN_E_INVAL);
    assert_string_equal(cpn_errname(CPN_E_NO_MATCH), "no-match");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_distinct_and_named),
        cmocka_unit_test(test_unknown_code),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
