/* test_units.c - exact parsing of sizes, rates, durations and prices; formatting that
 * parses back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "units.h"

typedef struct {
    const char *text;
    uint64_t want;
} s_good_t;

static void test_bytes_good(void **state)
{
    (void)state;
    static const s_good_t cases[] = {
        {"0", 0},
        {"4096", 4096},
        {"4096B", 4096},
        {"80GiB", 80ULL << 30},
        {"1TiB", 1ULL << 40},
        {"512MiB", 512ULL << 20},
        {"1.5TB", 1500000000000ULL},
        {"15TB", 15000000000000ULL},
        {"1.5GiB", 3ULL << 29},
        {"0.5KiB", 512},
        {"2kB", 2000},
        {"2KB", 2000},
        {"1.50TB", 1500000000000ULL}, /* trailing zeros of the fraction do not matter */
        {"80 GiB", 80ULL << 30},      /* one space between number and unit is fine */
        {"1PiB", 1ULL << 50},
        {"18446744073709551615", UINT64_MAX},
        {"16383PiB", 16383ULL << 50},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = 12345;
        int r = cpn_parse_bytes(cases[i].text, &v);
        if (r != CPN_OK)
            print_error("input %s\n", cases[i].text);
        assert_int_equal(r, CPN_OK);
        assert_int_equal(v, cases[i].want);
    }
}

static void test_bytes_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "-1",
        "+1",
        "GiB",
        "1.",
        ".5GiB",
        "1..5GB",
        "1.5.0GB",
        "80gib",
        "80GIB",
        "80 ",
        " 80",
        "80GiBx",
        "80 GiB ",
        "1.5B",
        "0.1GiB",
        "1e9",
        "0x10",
        "1,5GB",
        "16384PiB",
        "18446744073709551616",
        "99999999999999999999999",
        "1.0000000000000000001TB",
        "12 34",
        "80Gi",
        "NaN",
        "16EiB",
        "80  GiB",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 777;
        int r = cpn_parse_bytes(bad[i], &v);
        if (r == CPN_OK)
            print_error("accepted %s as %llu\n", bad[i], (unsigned long long)v);
        assert_int_equal(r, CPN_E_INVAL);
        assert_int_equal(v, 777); /* output untouched on error */
    }
    uint64_t v;
    assert_int_equal(cpn_parse_bytes(NULL, &v), CPN_E_INVAL);
}

static void test_bitrate(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(cpn_parse_bitrate("400Gbps", &v), CPN_OK);
    assert_int_equal(v, 400000000000ULL);
    assert_int_equal(cpn_parse_bitrate("25Gbps", &v), CPN_OK);
    assert_int_equal(v, 25000000000ULL);
    assert_int_equal(cpn_parse_bitrate("100Mbps", &v), CPN_OK);
    assert_int_equal(v, 100000000ULL);
    assert_int_equal(cpn_parse_bitrate("10kbps", &v), CPN_OK);
    assert_int_equal(v, 10000);
    assert_int_equal(cpn_parse_bitrate("1Tbps", &v), CPN_OK);
    assert_int_equal(v, 1000000000000ULL);
    assert_int_equal(cpn_parse_bitrate("2.5Gbps", &v), CPN_OK);
    assert_int_equal(v, 2500000000ULL);
    assert_int_equal(cpn_parse_bitrate("1000", &v), CPN_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(cpn_parse_bitrate("18446744073709551615bps", &v), CPN_OK);
    assert_int_equal(v, UINT64_MAX);
    static const char *const bad[] = {"400GB",  "400gbps", "400G",         "-1Gbps",   "",
                                      "1.5bps", "Gbps",    "18446745Tbps", "400Gbit/s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cpn_parse_bitrate(bad[i], &v), CPN_E_INVAL);
}

static void test_duration(void **state)
{
    (void)state;
    static const s_good_t cases[] = {
        {"90", 90},     {"90s", 90},    {"30m", 1800},   {"2h", 7200},
        {"4h", 14400},  {"7d", 604800}, {"1h30m", 5400}, {"1d2h3m4s", 93784},
        {"1.5h", 5400}, {"0s", 0},      {"2h0m", 7200},  {"0.5m", 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = 0;
        assert_int_equal(cpn_parse_duration(cases[i].text, &v), CPN_OK);
        assert_int_equal(v, cases[i].want);
    }
    static const char *const bad[] = {"",
                                      "h",
                                      "2x",
                                      "30m1h",
                                      "1h1h",
                                      "-5s",
                                      "1h 30m",
                                      "1.1s",
                                      "2H",
                                      "1h30",
                                      "s30",
                                      "213503982334602d",
                                      "99999999999999999999s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        int r = cpn_parse_duration(bad[i], &v);
        if (r == CPN_OK)
            print_error("accepted %s\n", bad[i]);
        assert_int_equal(r, CPN_E_INVAL);
    }
}

static void test_price(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(cpn_parse_price("210.0", &v), CPN_OK);
    assert_int_equal(v, 210000);
    assert_int_equal(cpn_parse_price("12.345", &v), CPN_OK);
    assert_int_equal(v, 12345);
    assert_int_equal(cpn_parse_price("90", &v), CPN_OK);
    assert_int_equal(v, 90000);
    assert_int_equal(cpn_parse_price("0.001", &v), CPN_OK);
    assert_int_equal(v, 1);
    assert_int_equal(cpn_parse_price("1.2300", &v), CPN_OK); /* exact: 1230 thousandths */
    assert_int_equal(v, 1230);
    assert_int_equal(cpn_parse_price("18446744073709551.615", &v), CPN_OK);
    assert_int_equal(v, UINT64_MAX);
    static const char *const bad[] = {
        "12.3456", "-1.0", "1,5", "$5", "", "5 USD", "0.0001", "18446744073709551.616", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cpn_parse_price(bad[i], &v), CPN_E_INVAL);
}

static void test_format(void **state)
{
    (void)state;
    char buf[32];
    uint64_t v;
    cpn_fmt_bytes(80ULL << 30, buf, sizeof buf);
    assert_string_equal(buf, "80GiB");
    cpn_fmt_bytes(15000000000000ULL, buf, sizeof buf);
    assert_string_equal(buf, "15TB");
    cpn_fmt_bytes(1ULL << 40, buf, sizeof buf);
    assert_string_equal(buf, "1TiB");
    cpn_fmt_bytes(0, buf, sizeof buf);
    assert_string_equal(buf, "0B");
    cpn_fmt_bytes(123, buf, sizeof buf);
    assert_string_equal(buf, "123B");
    cpn_fmt_bytes(123456789, buf, sizeof buf); /* not exact in any unit: one decimal */
    assert_string_equal(buf, "117.7MiB");
    cpn_fmt_bitrate(400000000000ULL, buf, sizeof buf);
    assert_string_equal(buf, "400Gbps");
    cpn_fmt_bitrate(0, buf, sizeof buf);
    assert_string_equal(buf, "0bps");
    cpn_fmt_bitrate(1500, buf, sizeof buf);
    assert_string_equal(buf, "1.5kbps");
    cpn_fmt_bitrate(1234567, buf, sizeof buf);
    assert_string_equal(buf, "1.2Mbps");
    cpn_fmt_duration(7200, buf, sizeof buf);
    assert_string_equal(buf, "2h0m");
    cpn_fmt_duration(93784, buf, sizeof buf);
    assert_string_equal(buf, "1d2h3m4s");
    cpn_fmt_duration(45, buf, sizeof buf);
    assert_string_equal(buf, "45s");
    cpn_fmt_price(210000, buf, sizeof buf);
    assert_string_equal(buf, "210.000");
    cpn_fmt_price(12345, buf, sizeof buf);
    assert_string_equal(buf, "12.345");

    /* Sizes exact in some unit parse back to the same value. */
    static const uint64_t sizes[] = {
        0, 1, 1000, 1023, 1024, 80ULL << 30, 1500000000000ULL, 16383ULL << 50, 3ULL << 29};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cpn_fmt_bytes(sizes[i], buf, sizeof buf);
        assert_int_equal(cpn_parse_bytes(buf, &v), CPN_OK);
        assert_int_equal(v, sizes[i]);
    }
    static const uint64_t secs[] = {0, 59, 60, 3599, 3600, 86399, 86400, 93784, 31622400};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        cpn_fmt_duration(secs[i], buf, sizeof buf);
        assert_int_equal(cpn_parse_duration(buf, &v), CPN_OK);
        assert_int_equal(v, secs[i]);
    }
    cpn_fmt_price(UINT64_MAX, buf, sizeof buf);
    assert_int_equal(cpn_parse_price(buf, &v), CPN_OK);
    assert_int_equal(v, UINT64_MAX);

    /* Truncation is safe and terminated. */
    char small[4];
    cpn_fmt_bytes(80ULL << 30, small, sizeof small);
    assert_string_equal(small, "80G");
    cpn_fmt_price(210000, small, 1);
    assert_string_equal(small, "");
    cpn_fmt_price(210000, NULL, 0); /* no crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_good), cmocka_unit_test(test_bytes_bad),
        cmocka_unit_test(test_bitrate),    cmocka_unit_test(test_duration),
        cmocka_unit_test(test_price),      cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
