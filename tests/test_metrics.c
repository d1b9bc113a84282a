/* test_metrics.c - common/metrics.c (histograms, the OpenMetrics text), hostport.c and the
 * snapshot handoff (snap.c): what is written parses back under the format's rules (om_parse.h)
 * with the values that went in; limits and bad input give their codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hostport.h"
#include "metrics.h"
#include "om_parse.h"
#include "snap.h"

static om_doc_t *s_doc(void)
{
    om_doc_t *d = malloc(sizeof *d);
    assert_non_null(d);
    return d;
}

static void test_hist_buckets(void **state)
{
    (void)state;
    cpn_hist_t h;
    memset(&h, 0, sizeof h);
    cpn_hist_observe(&h, 0);        /* le 0.0001 */
    cpn_hist_observe(&h, 100);      /* le 0.0001: the bound is inclusive */
    cpn_hist_observe(&h, 101);      /* le 0.00025 */
    cpn_hist_observe(&h, 10000000); /* le 10 */
    cpn_hist_observe(&h, 10000001); /* +Inf */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[CPN_HIST_BUCKETS - 1], 1);
    assert_int_equal(h.bucket[CPN_HIST_BUCKETS], 1);
    assert_int_equal(h.count, 5);
    assert_int_equal(h.sum_us, 20000202);
}

static void test_fmt_seconds(void **state)
{
    (void)state;
    char b[32];
    cpn_fmt_seconds(100, b, sizeof b);
    assert_string_equal(b, "0.0001");
    cpn_fmt_seconds(2500000, b, sizeof b);
    assert_string_equal(b, "2.5");
    cpn_fmt_seconds(10000000, b, sizeof b);
    assert_string_equal(b, "10.0");
    cpn_fmt_seconds(0, b, sizeof b);
    assert_string_equal(b, "0.0");
    cpn_fmt_seconds(UINT64_MAX, b, sizeof b);
    assert_string_equal(b, "18446744073709.551615");
}

/* Families of every type, labels that need escaping: parsed back, same values. */
static void test_roundtrip(void **state)
{
    (void)state;
    cpn_om_t om;
    cpn_hist_t h;
    char *text = NULL;
    size_t len = 0;
    double v;
    memset(&h, 0, sizeof h);
    cpn_hist_observe(&h, 300);
    cpn_hist_observe(&h, 3000000);
    cpn_om_init(&om);
    cpn_om_family(&om, "cpn_build", "info", NULL, "a help with a \\ and a\nnewline");
    cpn_om_u64(&om, "cpn_build_info",
               (const cpn_om_label_t[]){{"version", "0.1.0"}, {"name", "b\"q\\x\ny"}}, 2, 1);
    cpn_om_family(&om, "cpn_x_requests", "counter", NULL, "requests");
    cpn_om_u64(&om, "cpn_x_requests_total", (const cpn_om_label_t[]){{"code", "no-match"}}, 1,
               7);
    cpn_om_u64(&om, "cpn_x_requests_total", (const cpn_om_label_t[]){{"code", "busy"}}, 1,
               UINT64_MAX);
    cpn_om_family(&om, "cpn_x_sent_bytes", "counter", "bytes", "bytes");
    cpn_om_u64(&om, "cpn_x_sent_bytes_total", NULL, 0, 4096);
    cpn_om_family(&om, "cpn_x_empty", "gauge", NULL, "a family with no sample yet");
    cpn_om_family(&om, "cpn_x_latency_seconds", "histogram", "seconds", "latency");
    cpn_om_hist(&om, "cpn_x_latency_seconds", NULL, 0, &h);
    cpn_om_family(&om, "cpn_x_start_time_seconds", "gauge", "seconds", "start");
    cpn_om_us(&om, "cpn_x_start_time_seconds", NULL, 0, 1500);
    assert_int_equal(cpn_om_finish(&om, &text, &len), CPN_OK);
    assert_int_equal(strlen(text), len);
    assert_true(len > 6 && strcmp(text + len - 6, "# EOF\n") == 0);

    om_doc_t *d = s_doc();
    if (!om_parse(text, len, d))
        fail_msg("%s\n%s", d->error, text);
    assert_int_equal(d->n_families, 6);
    assert_true(om_find(d, "cpn_build_info", "name", "b\"q\\x\ny", &v));
    assert_true(v == 1);
    assert_true(om_find(d, "cpn_x_requests_total", "code", "no-match", &v) && v == 7);
    assert_true(om_find(d, "cpn_x_requests_total", "code", "busy", &v) &&
                v == (double)UINT64_MAX);
    assert_true(om_find(d, "cpn_x_sent_bytes_total", NULL, NULL, &v) && v == 4096);
    assert_true(om_find(d, "cpn_x_latency_seconds_bucket", "le", "0.0005", &v) && v == 1);
    assert_true(om_find(d, "cpn_x_latency_seconds_bucket", "le", "2.5", &v) && v == 1);
    assert_true(om_find(d, "cpn_x_latency_seconds_bucket", "le", "5.0", &v) && v == 2);
    assert_true(om_find(d, "cpn_x_latency_seconds_bucket", "le", "+Inf", &v) && v == 2);
    assert_true(om_find(d, "cpn_x_latency_seconds_count", NULL, NULL, &v) && v == 2);
    assert_true(om_find(d, "cpn_x_latency_seconds_sum", NULL, NULL, &v) && v == 3.0003);
    assert_true(om_find(d, "cpn_x_start_time_seconds", NULL, NULL, &v) && v == 0.0015);
    free(d);
    free(text);
}

/* The reader is strict: text that breaks a rule is refused (so the round trip means something). */
static void test_parser_refuses(void **state)
{
    (void)state;
    static const char *bad[] = {
        "# TYPE a counter\na_total 1\n",                      /* no EOF */
        "# TYPE a counter\na 1\n# EOF\n",                     /* counter without _total */
        "a_total 1\n# EOF\n",                                 /* no TYPE */
        "# TYPE a counter\na_total{x=\"\\t\"} 1\n# EOF\n",    /* bad escape */
        "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\n# EOF\n", /* unit not the suffix */
        "# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"
        "h_sum 0\n# EOF\n",                                   /* buckets fall */
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\nh_sum 0\n# EOF\n",
        "# TYPE a gauge\na 1\n# EOF\na 2\n",                  /* after EOF */
        "# TYPE a gauge\na one\n# EOF\n",                     /* not a number */
    };
    om_doc_t *d = s_doc();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (om_parse(bad[i], strlen(bad[i]), d))
            fail_msg("accepted case %zu: %s", i, bad[i]);
    free(d);
}

/* Past CPN_OM_MAX the writer stops and says so; nothing is handed over. */
static void test_too_big(void **state)
{
    (void)state;
    cpn_om_t om;
    char *text = (char *)"untouched";
    size_t len = 0;
    char value[1024];
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    cpn_om_init(&om);
    cpn_om_family(&om, "cpn_big", "gauge", NULL, "big");
    for (size_t i = 0; i < CPN_OM_MAX / 1000 + 1; i++)
        cpn_om_u64(&om, "cpn_big", (const cpn_om_label_t[]){{"v", value}}, 1, i);
    assert_int_equal(cpn_om_finish(&om, &text, &len), CPN_E_TOO_BIG);
    assert_string_equal(text, "untouched");
    assert_null(om.buf); /* the writer was reset */
}

static void test_hostport(void **state)
{
    (void)state;
    struct sockaddr_in sa;
    const char *why = NULL;
    assert_int_equal(cpn_hostport_parse("9464", &sa, &why), CPN_OK);
    assert_int_equal(ntohs(sa.sin_port), 9464);
    assert_int_equal(ntohl(sa.sin_addr.s_addr), 0x7f000001); /* loopback by default */
    assert_int_equal(cpn_hostport_parse("0.0.0.0:80", &sa, &why), CPN_OK);
    assert_int_equal(sa.sin_addr.s_addr, 0);
    assert_int_equal(cpn_hostport_parse("localhost:0", &sa, &why), CPN_OK);
    assert_int_equal(ntohl(sa.sin_addr.s_addr), 0x7f000001);
    static const char *bad[] = {"", "x", "70000", "1.2.3:80", "host:80", "127.0.0.1:",
                                "127.0.0.1:8a", "-1",
                                "0123456789012345678901234567890123456789012345678901234567890:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(cpn_hostport_parse(bad[i], &sa, &why), CPN_E_INVAL);
        assert_non_null(why);
    }
    assert_int_equal(cpn_hostport_parse(NULL, &sa, &why), CPN_E_INVAL);
}

/* ---- the handoff between a loop and a reader thread ---- */

typedef struct {
    cpn_snap_t *snap;
    int turns; /* loop passes before it gives up */
    int published;
} s_loop_t;

static void *s_loop(void *arg)
{
    s_loop_t *l = arg;
    for (int i = 0; i < l->turns && !l->published; i++) {
        if (cpn_snap_wanted(l->snap)) {
            int *v = malloc(sizeof *v);
            *v = 42;
            cpn_snap_publish(l->snap, (void **)&v);
            l->published = 1;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_snap_handoff(void **state)
{
    (void)state;
    s_loop_t l = {.snap = cpn_snap_new(free), .turns = 5000};
    pthread_t t;
    void *data = NULL;
    assert_non_null(l.snap);
    assert_false(cpn_snap_wanted(l.snap)); /* nobody asked: the loop does nothing */
    assert_int_equal(pthread_create(&t, NULL, s_loop, &l), 0);
    assert_int_equal(cpn_snap_take(l.snap, 5000, &data), CPN_OK);
    assert_non_null(data);
    assert_int_equal(*(int *)data, 42);
    free(data);
    pthread_join(t, NULL);
    assert_false(cpn_snap_wanted(l.snap));

    /* No loop answering: the reader gets CPN_E_TIMEOUT after its wait, not later. */
    uint64_t t0 = cpn_mono_ms();
    assert_int_equal(cpn_snap_take(l.snap, 200, &data), CPN_E_TIMEOUT);
    assert_null(data);
    uint64_t took = cpn_mono_ms() - t0;
    assert_true(took >= 190 && took < 5000);
    assert_true(cpn_snap_wanted(l.snap)); /* the request stays until the loop answers */
    /* A snapshot nobody takes is freed with the handoff (valgrind/ASan would say otherwise). */
    int *late = malloc(sizeof *late);
    cpn_snap_publish(l.snap, (void **)&late);
    assert_null(late);
    cpn_snap_destroy(&l.snap);
    assert_null(l.snap);
    cpn_snap_destroy(&l.snap); /* NULL is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),  cmocka_unit_test(test_fmt_seconds),
        cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_parser_refuses),
        cmocka_unit_test(test_too_big),       cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_snap_handoff),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
