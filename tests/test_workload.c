/* test_workload.c - the federation's workload mix a peer is given (peer.yaml `workload`,
 * issue 16): the key's parsing and refusals (peer/peer_config.c), and an inventory measured
 * against the given mix, which its placements and recounts do not change (peer/inventory.c,
 * peer/devices.c, peer/fgd.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices.h"
#include "fgd.h"
#include "identity.h"
#include "inventory.h"
#include "peer_config.h"

#define S_GIB (1ULL << 30)

typedef struct {
    char dir[256];
    char path[300];
    char head[512]; /* the keys every configuration needs */
} fx_t;

static int s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx || cpn_crypto_init() != CPN_OK)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cpn-workload-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/peer.yaml", fx->dir);
    uint8_t pk[CPN_PK_LEN];
    char text[CPN_PK_TEXT_LEN];
    memset(pk, 7, sizeof pk);
    cpn_pk_to_text(pk, text);
    snprintf(fx->head, sizeof fx->head,
             "name: p\nkey: p.key\ndatabase: p.db\n"
             "brokers:\n  - endpoint: tcp://127.0.0.1:1\n    key: %s\n"
             "tenants: any\n"
             "packages:\n  - {id: a10, count: 2, region: r, price: \"1.0\", cores: 16,\n"
             "     memory: 64GiB, accelerators: {vendor: nvidia, model: A10, count: 2,\n"
             "     memory: 24GiB, bf16_tflops: 125, share_min: 0.05}}\n",
             text);
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int r = system(cmd);
    free(fx);
    return r == 0 ? 0 : -1;
}

/* Load head + body; *doc keeps the errors. */
static int s_load(fx_t *fx, const char *body, peer_config_t **cfg, yconf_t **doc)
{
    FILE *f = fopen(fx->path, "w");
    assert_non_null(f);
    fputs(fx->head, f);
    fputs(body, f);
    fclose(f);
    return peer_config_load(fx->path, cfg, doc);
}

/* Does some error of doc contain both a and b? */
static bool s_has(const yconf_t *doc, const char *a, const char *b)
{
    for (size_t i = 0; i < yconf_error_count(doc); i++) {
        const char *e = yconf_error_at(doc, i);
        if (strstr(e, a) && strstr(e, b))
            return true;
    }
    return false;
}

static void test_parse(void **state)
{
    fx_t *fx = *state;
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    int r = s_load(fx,
                   "workload:\n"
                   "  - {share: 0.46, cores: 4, memory: 16GiB, weight: 0.12}\n"
                   "  - {count: 2, cores: 12, memory: 1000000000B, weight: 3}\n"
                   "  - {share: 1g.10gb, weight: 120.5}\n"
                   "  - {share: 1, count: 4, cores: 1, weight: 1}\n",
                   &cfg, &doc);
    if (r != CPN_OK && doc)
        yconf_print_errors(doc, stderr);
    assert_int_equal(r, CPN_OK);
    yconf_destroy(&doc);
    assert_int_equal(cfg->n_workload, 4);
    const fgd_task_t *w = cfg->workload;
    assert_int_equal(w[0].ndev, 1);
    assert_int_equal(w[0].milli, 460);
    assert_int_equal(w[0].cpu, 4000);
    assert_int_equal(w[0].mem, 16384);
    assert_true(cfg->workload_weight[0] == 0.12);
    assert_int_equal(w[1].ndev, 2); /* whole devices: share 1 each */
    assert_int_equal(w[1].milli, 1000);
    assert_int_equal(w[1].mem, 954); /* MiB rounded up, as a slice request's */
    assert_true(cfg->workload_weight[1] == 3.0);
    assert_int_equal(w[2].milli, 142); /* the MIG profile's compute share */
    assert_int_equal(w[2].cpu, 0);
    assert_true(cfg->workload_weight[2] == 120.5);
    assert_int_equal(w[3].ndev, 4);
    peer_config_destroy(&cfg);
    /* the example of docs/POLICY.md and conf/peer2.yaml */
    assert_int_equal(s_load(fx,
                            "workload:\n"
                            "  - {share: 0.46, cores: 6, memory: 12GiB, weight: 0.31}\n"
                            "  - {share: 0.25, cores: 4, memory: 8GiB, weight: 0.22}\n"
                            "  - {count: 1, cores: 12, memory: 24GiB, weight: 0.40}\n"
                            "  - {count: 8, cores: 64, memory: 512GiB, weight: 0.07}\n",
                            &cfg, NULL),
                     CPN_OK);
    assert_int_equal(cfg->n_workload, 4);
    assert_int_equal(cfg->workload[3].ndev, 8);
    peer_config_destroy(&cfg);
    /* absent: nothing given, the peer learns */
    assert_int_equal(s_load(fx, "", &cfg, NULL), CPN_OK);
    assert_int_equal(cfg->n_workload, 0);
    assert_null(cfg->workload);
    peer_config_destroy(&cfg);
}

static void test_refused(void **state)
{
    fx_t *fx = *state;
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    assert_int_equal(s_load(fx,
                            "workload:\n"
                            "  - {share: 0.5, cores: 2, weight: -1}\n"    /* 0: sign */
                            "  - {share: 1.5, weight: 1}\n"               /* 1: share > 1 */
                            "  - {share: 0.5, weight: 1, colour: blue}\n" /* 2: unknown */
                            "  - {count: 9, weight: 1}\n"                 /* 3: > 8 devices */
                            "  - {share: 0.5, count: 2, weight: 1}\n"     /* 4: mixed */
                            "  - {cores: 4, weight: 1}\n"                 /* 5: no ask */
                            "  - {share: 0.5, weight: 0}\n"               /* 6: zero */
                            "  - {share: 0.5}\n"                          /* 7: no weight */
                            "  - {share: 0.5, cores: -2, weight: 1}\n"    /* 8: negative */
                            "  - {share: 0.5, weight: 1e3}\n"             /* 9: exponent */
                            "  - {share: 0.5, weight: 2000000000}\n"      /* 10: too heavy */
                            "  - {share: 0.5, memory: lots, weight: 1}\n" /* 11: not a size */
                            "  - [0.5, 1]\n",                             /* 12: not a map */
                            &cfg, &doc),
                     CPN_E_CONFIG);
    assert_null(cfg);
    assert_true(s_has(doc, "workload[0].weight", "expected a weight above 0"));
    assert_true(s_has(doc, "workload[1].share", "expected a share"));
    assert_true(s_has(doc, "workload[2]", "colour"));
    assert_true(s_has(doc, "workload[3].count", "8"));
    assert_true(s_has(doc, "workload[4].count", "a share below 1"));
    assert_true(s_has(doc, "workload[5]", "expected `share`"));
    assert_true(s_has(doc, "workload[6].weight", "above 0"));
    assert_true(s_has(doc, "workload[7]", "weight"));
    assert_true(s_has(doc, "workload[8].cores", ""));
    assert_true(s_has(doc, "workload[9].weight", "above 0"));
    assert_true(s_has(doc, "workload[10].weight", "at most 1000000000"));
    assert_true(s_has(doc, "workload[11].memory", ""));
    assert_true(s_has(doc, "workload[12]", "expected a map"));
    yconf_destroy(&doc);
    /* not a list, an empty list */
    assert_int_equal(s_load(fx, "workload: {share: 0.5, weight: 1}\n", &cfg, &doc), CPN_E_CONFIG);
    assert_true(s_has(doc, "workload", "expected a list of 1 to 512 classes"));
    yconf_destroy(&doc);
    assert_int_equal(s_load(fx, "workload: []\n", &cfg, &doc), CPN_E_CONFIG);
    assert_true(s_has(doc, "workload", "expected a list of 1 to 512 classes"));
    yconf_destroy(&doc);
}

/* A list of n classes: shares 1..asks thousandths (asks distinct asks), cores 1.. . */
static char *s_many(size_t n, size_t asks)
{
    size_t cap = 64 + n * 64, len = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    len += (size_t)snprintf(b + len, cap - len, "workload:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "  - {share: %zum, cores: %zu, weight: 1}\n",
                                1 + i % asks, 1 + i / asks);
    assert_true(len < cap);
    return b;
}

static void test_limits(void **state)
{
    fx_t *fx = *state;
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    char *b = s_many(PEER_WORKLOAD_MAX, 8); /* exactly at both limits: taken */
    assert_int_equal(s_load(fx, b, &cfg, &doc), CPN_OK);
    assert_int_equal(cfg->n_workload, PEER_WORKLOAD_MAX);
    peer_config_destroy(&cfg);
    yconf_destroy(&doc);
    free(b);
    b = s_many(PEER_WORKLOAD_MAX + 1, 8);
    assert_int_equal(s_load(fx, b, &cfg, &doc), CPN_E_CONFIG);
    assert_true(s_has(doc, "workload", "expected a list of 1 to 512 classes"));
    yconf_destroy(&doc);
    free(b);
    b = s_many(PEER_WORKLOAD_ASKS_MAX, PEER_WORKLOAD_ASKS_MAX);
    assert_int_equal(s_load(fx, b, &cfg, &doc), CPN_OK);
    peer_config_destroy(&cfg);
    yconf_destroy(&doc);
    free(b);
    b = s_many(PEER_WORKLOAD_ASKS_MAX + 1, PEER_WORKLOAD_ASKS_MAX + 1);
    assert_int_equal(s_load(fx, b, &cfg, &doc), CPN_E_CONFIG);
    assert_true(s_has(doc, "workload[64]", "more than 64 distinct accelerator asks"));
    yconf_destroy(&doc);
    free(b);
}

/* ---- the inventory against a given mix ---- */

static cpn_package_t s_pkg(uint32_t nodes)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "a10x2");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 16;
    p.mem_bytes = 64 * S_GIB;
    snprintf(p.accel.vendor, sizeof p.accel.vendor, "nvidia");
    snprintf(p.accel.model, sizeof p.accel.model, "A10");
    p.accel.count = 2;
    p.accel.mem_bytes = 24 * S_GIB;
    p.accel.bf16_tflops = 125;
    p.accel.share_min = 50;
    p.total = p.free = nodes;
    p.price = 1000;
    return p;
}

/* The mix of these tests: halves (60 % of the pods) and whole GPUs (40 %). */
static const fgd_task_t s_mix[] = {
    {.cpu = 2000, .mem = 4096, .ndev = 1, .milli = 500},
    {.cpu = 8000, .mem = 16384, .ndev = 1, .milli = 1000},
};
static const double s_mix_w[] = {0.6, 0.4};

static void s_place(peer_inventory_t *inv, uint32_t share, uint32_t cores, peer_slice_t *out)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    r.units = 1, r.share = share, r.accel_count = 1, r.cores = cores, r.mem_bytes = S_GIB;
    assert_int_equal(peer_inventory_place(inv, 0, &r, out), CPN_OK);
}

/* The gradients a package of the inventory's node state advertises against the mix alone,
 * computed afresh: a devices object on a workload that holds exactly the mix (weights as
 * the peer weighs them), fixed, with the same slices taken. */
static uint32_t s_reference(const cpn_package_t *p, const peer_slice_t *s, size_t n,
                            cpn_grad_t g[CPN_GRAD_MAX], uint32_t *frag)
{
    fgd_workload_t *w = fgd_workload_new();
    assert_non_null(w);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(
            fgd_workload_add(w, &s_mix[i], s_mix_w[i] * peer_devices_weight(&s_mix[i])), CPN_OK);
    fgd_workload_fix(w);
    peer_devices_t *d = peer_devices_new(p, w);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(peer_devices_take(d, &s[i]), CPN_OK);
    uint32_t fr, max, ng = peer_devices_grad(d, g);
    peer_devices_summary(d, &fr, &max, frag);
    peer_devices_destroy(&d);
    fgd_workload_destroy(&w);
    return ng;
}

/* What inventory package 0 advertises equals the reference for the slices it holds. */
static void s_same_as_reference(peer_inventory_t *inv, const peer_slice_t *s, size_t n)
{
    const cpn_package_t *p = peer_inventory_get(inv, 0);
    cpn_grad_t ref[CPN_GRAD_MAX];
    uint32_t frag;
    uint32_t nref = s_reference(p, s, n, ref, &frag);
    assert_int_equal(p->sum->n_grad, nref);
    assert_memory_equal(p->sum->grad, ref, nref * sizeof ref[0]);
    assert_int_equal(p->frag, frag);
}

/* Two peers with different placements (quarters on one, tenths on the other, neither in
 * the mix) advertise gradients for the mix's asks only, each what the mix alone gives for
 * its nodes; a peer that learns lists the sizes it placed instead. */
static void test_mix_not_learnt(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(3);
    peer_inventory_t *a = peer_inventory_new(&p, NULL, 1), *b = peer_inventory_new(&p, NULL, 1),
                     *learns = peer_inventory_new(&p, NULL, 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(learns);
    assert_int_equal(peer_inventory_set_mix(a, s_mix, s_mix_w, 2), CPN_OK);
    assert_int_equal(peer_inventory_set_mix(b, s_mix, s_mix_w, 2), CPN_OK);
    s_same_as_reference(a, NULL, 0);
    peer_slice_t sa[4], sb[4], sl[4];
    for (size_t i = 0; i < 4; i++) {
        s_place(a, 250, 1, &sa[i]);
        s_place(b, 100, 3, &sb[i]);
        s_place(learns, 250, 1, &sl[i]);
        s_same_as_reference(a, sa, i + 1);
        s_same_as_reference(b, sb, i + 1);
    }
    const cpn_package_t *pa = peer_inventory_get(a, 0), *pb = peer_inventory_get(b, 0),
                        *pl = peer_inventory_get(learns, 0);
    assert_int_equal(pa->sum->n_grad, 2);
    assert_int_equal(pa->sum->grad[0].accel, 500);
    assert_int_equal(pa->sum->grad[1].accel, 1000);
    assert_int_equal(pb->sum->n_grad, 2);
    assert_int_equal(pb->sum->grad[0].accel, 500);
    bool quarter = false; /* the learner's workload holds the quarters it placed */
    for (uint32_t i = 0; i < pl->sum->n_grad; i++)
        quarter |= pl->sum->grad[i].accel == 250;
    assert_true(quarter);
    /* a recount (clear, then the slices again) keeps the mix: no priors, nothing learnt */
    peer_inventory_clear(a);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(peer_inventory_add_slice(a, p.id, &sa[i]), CPN_OK);
    s_same_as_reference(a, sa, 4);
    peer_inventory_destroy(&a);
    peer_inventory_destroy(&b);
    peer_inventory_destroy(&learns);
}

/* The given mix decides the placement: with halves in the mix, a quarter goes to a node
 * that keeps a half free beside it; the same quarter weighs nothing in the mix afterwards. */
static void test_mix_places(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(2);
    peer_inventory_t *inv = peer_inventory_new(&p, NULL, 1);
    assert_non_null(inv);
    assert_int_equal(peer_inventory_set_mix(inv, s_mix, s_mix_w, 2), CPN_OK);
    peer_slice_t s[3];
    s_place(inv, 250, 1, &s[0]);
    s_place(inv, 250, 1, &s[1]);
    /* two quarters fill one device to a half, which the mix's halves can still use */
    assert_int_equal(s[1].node, s[0].node);
    assert_int_equal(s[1].devmask, s[0].devmask);
    const peer_devices_t *d = peer_inventory_devices(inv, 0);
    uint32_t dev = s[0].devmask == 1 ? 0 : 1;
    assert_int_equal(peer_devices_free(d, s[0].node, dev), 500);
    s_same_as_reference(inv, s, 2);
    peer_inventory_destroy(&inv);
}

/* Bad mixes are refused and change nothing. */
static void test_set_mix_refused(void **state)
{
    (void)state;
    cpn_package_t p = s_pkg(2);
    peer_inventory_t *inv = peer_inventory_new(&p, NULL, 1);
    assert_non_null(inv);
    const cpn_package_t *pk = peer_inventory_get(inv, 0);
    cpn_grad_t before[CPN_GRAD_MAX];
    uint32_t nb = pk->sum->n_grad;
    memcpy(before, pk->sum->grad, sizeof before);
    assert_int_equal(nb, 1); /* the prior: whole GPUs */
    double bad_w[] = {0.6, -1};
    assert_int_equal(peer_inventory_set_mix(inv, s_mix, bad_w, 2), CPN_E_INVAL);
    fgd_task_t bad_t[] = {s_mix[0], {.ndev = 1, .milli = 1200}};
    assert_int_equal(peer_inventory_set_mix(inv, bad_t, s_mix_w, 2), CPN_E_INVAL);
    assert_int_equal(peer_inventory_set_mix(inv, s_mix, s_mix_w, 0), CPN_E_INVAL);
    static fgd_task_t many[FGD_GROUPS_MAX + 1];
    static double many_w[FGD_GROUPS_MAX + 1];
    for (size_t i = 0; i <= FGD_GROUPS_MAX; i++)
        many[i] = (fgd_task_t){.ndev = 1, .milli = (uint16_t)(10 + i)}, many_w[i] = 1;
    assert_int_equal(peer_inventory_set_mix(inv, many, many_w, FGD_GROUPS_MAX + 1), CPN_E_TOO_BIG);
    assert_int_equal(pk->sum->n_grad, nb);
    assert_memory_equal(pk->sum->grad, before, nb * sizeof before[0]);
    /* and still learns: a quarter placed shows up */
    peer_slice_t s;
    s_place(inv, 250, 1, &s);
    assert_int_equal(pk->sum->n_grad, 2);
    peer_inventory_destroy(&inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_limits, s_setup, s_teardown),
        cmocka_unit_test(test_mix_not_learnt),
        cmocka_unit_test(test_mix_places),
        cmocka_unit_test(test_set_mix_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
