/* test_devices.c - the devices of a shared package (peer/devices.c): the summary's fit
 * points are real rooms (a slice a point covers can be placed) and say what is left beside
 * a free share (a node whose CPU is gone offers no slice that needs CPU). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices.h"
#include "fgd.h"

#define S_GIB (1ULL << 30)

static cpn_package_t s_pkg(uint32_t nodes, uint32_t gpus)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "a10x%u", gpus);
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 16;
    p.mem_bytes = 64 * S_GIB;
    snprintf(p.accel.vendor, sizeof p.accel.vendor, "nvidia");
    snprintf(p.accel.model, sizeof p.accel.model, "A10");
    p.accel.count = gpus;
    p.accel.mem_bytes = 24 * S_GIB;
    p.accel.bf16_tflops = 125;
    p.accel.share_min = 50;
    p.total = p.free = nodes;
    p.price = 1000;
    return p;
}

static fgd_task_t s_ask(uint32_t accel, uint32_t cpu, uint32_t mem)
{
    if (accel < FGD_MILLI)
        return (fgd_task_t){.cpu = cpu, .mem = mem, .ndev = 1, .milli = (uint16_t)accel};
    return (fgd_task_t){.cpu = cpu, .mem = mem, .ndev = accel / FGD_MILLI, .milli = FGD_MILLI};
}

/* Every point can be placed as it stands (then given back), and the points pass the
 * package's validation as an AD would carry them. */
static void s_points_real(peer_devices_t *d, const cpn_package_t *p)
{
    cpn_fit_t fit[CPN_FIT_MAX];
    uint32_t n = peer_devices_fit(d, fit);
    assert_true(n <= CPN_FIT_MAX);
    cpn_package_t q = *p;
    cpn_slice_sum_t sum;
    memset(&sum, 0, sizeof sum);
    sum.n_fit = n;
    memcpy(sum.fit, fit, n * sizeof fit[0]);
    q.sum = &sum;
    const char *why = NULL;
    assert_int_equal(cpn_package_validate(&q, &why), CPN_OK);
    for (uint32_t i = 0; i < n; i++) {
        fgd_task_t t = s_ask(fit[i].accel, fit[i].cpu, fit[i].mem);
        peer_slice_t s;
        assert_int_equal(peer_devices_place(d, &t, &s), CPN_OK);
        peer_devices_give(d, &s);
    }
}

static void test_fit_beside_cpu(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(2, 2);
    fgd_workload_t *w = fgd_workload_new();
    peer_devices_t *d = peer_devices_new(&p, w);
    assert_non_null(d);
    cpn_fit_t fit[CPN_FIT_MAX];
    uint32_t n = peer_devices_fit(d, fit);
    assert_int_equal(n, 1); /* two empty nodes: one point covers every band */
    assert_int_equal(fit[0].accel, 2000);
    assert_int_equal(fit[0].cpu, 16000);
    assert_int_equal(fit[0].mem, 65536);
    s_points_real(d, &p);
    /* A tenth of a GPU with all 16 cores: that node keeps 1.9 GPUs free but no CPU. */
    peer_slice_t a, b;
    fgd_task_t t = s_ask(100, 16000, 1024);
    assert_int_equal(peer_devices_place(d, &t, &a), CPN_OK);
    s_points_real(d, &p);
    /* Both GPUs of the other node, one core: what is left is GPU share without CPU. */
    t = s_ask(2000, 1000, 1024);
    assert_int_equal(peer_devices_place(d, &t, &b), CPN_OK);
    assert_true(a.node != b.node);
    n = peer_devices_fit(d, fit);
    assert_true(n >= 1);
    for (uint32_t i = 0; i < n; i++)
        assert_true(fit[i].cpu == 0); /* no point offers a core */
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    r.units = 1, r.share = 500, r.accel_count = 1, r.cores = 1, r.mem_bytes = S_GIB;
    cpn_slice_sum_t sum;
    memset(&sum, 0, sizeof sum);
    sum.n_fit = n;
    memcpy(sum.fit, fit, n * sizeof fit[0]);
    p.sum = &sum;
    assert_false(cpn_package_fit_covers(&p, &r)); /* the broker is told: no room with a core */
    r.cores = 0;
    assert_true(cpn_package_fit_covers(&p, &r));
    s_points_real(d, &p);
    peer_devices_destroy(&d);
    fgd_workload_destroy(&w);
}

/* A longer mixed sequence on 8-GPU nodes: after every placement the points stay real. */
static void test_fit_points_real(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(6, 8);
    p.cores = 96;
    p.mem_bytes = 512 * S_GIB;
    fgd_workload_t *w = fgd_workload_new();
    peer_devices_t *d = peer_devices_new(&p, w);
    assert_non_null(d);
    static const uint32_t accel[] = {50, 250, 1000, 500, 4000, 120, 2000, 300, 1000, 750};
    uint32_t placed = 0;
    for (uint32_t i = 0; i < 60; i++) {
        fgd_task_t t = s_ask(accel[i % 10], 1000u * (1 + i % 13), 1024u * (2 + i % 29));
        peer_slice_t s;
        if (peer_devices_place(d, &t, &s) == CPN_OK)
            placed++;
        s_points_real(d, &p);
    }
    assert_true(placed > 20);
    peer_devices_destroy(&d);
    fgd_workload_destroy(&w);
}

/* Gradients: after a quarter GPU, the workload asks quarters and whole GPUs; a quarter's
 * least growth is negative (it fills the partly used device, where a whole GPU cannot go),
 * a whole GPU's is not, and the next quarter does go where its gradient said. One workload
 * for two packages: a slice placed on one moves the other's measure too. */
static void test_grad(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(2, 2), q = s_pkg(1, 2);
    fgd_workload_t *w = fgd_workload_new();
    peer_devices_t *d = peer_devices_new(&p, w), *e = peer_devices_new(&q, w);
    assert_non_null(d);
    assert_non_null(e);
    assert_int_equal(peer_devices_prior(d, w), CPN_OK);
    assert_int_equal(peer_devices_prior(e, w), CPN_OK);
    cpn_grad_t g[CPN_GRAD_MAX];
    uint32_t n = peer_devices_grad(e, g);
    assert_int_equal(n, 1); /* the priors: whole GPUs */
    assert_int_equal(g[0].accel, 1000);
    uint32_t fr, max, frag_e0, frag_e1;
    peer_devices_summary(e, &fr, &max, &frag_e0);
    peer_slice_t a, b;
    fgd_task_t t = s_ask(250, 1000, 1024);
    assert_int_equal(peer_devices_place(d, &t, &a), CPN_OK);
    n = peer_devices_grad(d, g);
    assert_int_equal(n, 2);
    assert_int_equal(g[0].accel, 250);
    assert_int_equal(g[1].accel, 1000);
    assert_true(g[0].delta < 0);
    assert_true(g[1].delta >= 0);
    assert_int_equal(peer_devices_place(d, &t, &b), CPN_OK);
    assert_int_equal(b.node, a.node);
    assert_int_equal(b.devmask, a.devmask); /* the partly used device */
    /* e placed nothing, but the workload now holds quarters: its gradients list them */
    n = peer_devices_grad(e, g);
    assert_int_equal(n, 2);
    assert_int_equal(g[0].accel, 250);
    peer_devices_summary(e, &fr, &max, &frag_e1);
    assert_int_equal(frag_e1, frag_e0); /* an empty node: nothing is fragmented yet */
    peer_devices_destroy(&d);
    peer_devices_destroy(&e);
    /* past PEER_GRAD_UNITS_MAX units: no gradients (the workload does have asks) */
    cpn_package_t big = s_pkg(PEER_GRAD_UNITS_MAX + 1, 2);
    peer_devices_t *f = peer_devices_new(&big, w);
    assert_non_null(f);
    assert_int_equal(peer_devices_grad(f, g), 0);
    peer_devices_destroy(&f);
    fgd_workload_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit_beside_cpu),
        cmocka_unit_test(test_fit_points_real),
        cmocka_unit_test(test_grad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
