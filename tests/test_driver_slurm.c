/* test_driver_slurm.c - the slurm driver (peer/driver_slurm.c) run by the provisioning engine
 * (peer/provision.c: real child processes) against a real Slurm cluster on 127.0.0.1, started
 * and stopped by tests/slurm_cluster.sh: c1, c2 (gpu:h100:2, feature h100), c3, c4 (gpu:a100:2,
 * feature a100), partition gpu (all) and cpu (c3, c4). The tenant's mapped Unix user is
 * `daemon`; `bin` is another user. Root runs the tests (slurmd, mknod, runuser).
 *
 * What is asserted comes from Slurm itself (scontrol, squeue), never from the driver's word. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "driver.h"
#include "provision.h"

#define S_KID "tenant0001"  /* the tenant's key id, mapped to user daemon */
#define S_WAIT_MS 30000     /* one driver call, retries included */
#define S_JOB_WAIT_MS 30000 /* a job to start running */

static char s_dir[4096];
static char s_src[4096];
static drv_config_t s_cfg;
static provision_t *s_prov;
static bool s_done;
static drv_result_t s_res;

/* ---- shell ---- */

/* Run a shell command (SLURM_CONF and TZ=UTC0 in its environment); its stdout and stderr
 * into out (cap bytes); returns the exit status, or -1. */
static int s_sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd - 8, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof cmd - 8);
    strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0;
    if (out && cap)
        out[0] = '\0';
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, p)) > 0)
        if (out && len + 1 < cap) {
            size_t c = k < cap - 1 - len ? k : cap - 1 - len;
            memcpy(out + len, tmp, c);
            len += c;
            out[len] = '\0';
        }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the engine ---- */

static void s_on_done(void *arg, size_t driver, const drv_call_t *call, const drv_result_t *res)
{
    (void)arg;
    (void)driver;
    (void)call;
    drv_result_clear(&s_res);
    s_res = *res; /* take a deep copy of what the checks below read */
    s_res.access = res->access ? strdup(res->access) : NULL;
    s_res.next = NULL;
    s_res.ids = NULL;
    s_res.lost = NULL;
    if (res->n_ids) {
        s_res.ids = calloc(res->n_ids, CPN_NAME_MAX);
        memcpy(s_res.ids, res->ids, res->n_ids * CPN_NAME_MAX);
    }
    if (res->n_lost) {
        s_res.lost = calloc(res->n_lost, CPN_NAME_MAX);
        memcpy(s_res.lost, res->lost, res->n_lost * CPN_NAME_MAX);
    }
    s_done = true;
}

/* Run one call on engine `prov` to its end (bounded); returns the outcome and the time it
 * took. */
static drv_outcome_t s_call_on(provision_t *prov, drv_verb_t verb, const char *lease,
                               const char *package, uint32_t units, uint64_t end_ms,
                               uint64_t *took_ms)
{
    drv_call_t c = {.verb = verb, .units = units, .start_ms = cpn_now_ms(), .end_ms = end_ms};
    snprintf(c.lease_id, sizeof c.lease_id, "%s", lease ? lease : "");
    snprintf(c.package, sizeof c.package, "%s", package ? package : "");
    snprintf(c.tenant_kid, sizeof c.tenant_kid, "%s", S_KID);
    uint64_t t0 = cpn_mono_ms();
    s_done = false;
    assert_int_equal(provision_submit(prov, 0, &c), CPN_OK);
    while (!s_done && cpn_mono_ms() - t0 < S_WAIT_MS) {
        int fds[PROVISION_FDS_MAX];
        short ev[PROVISION_FDS_MAX];
        struct pollfd pfd[PROVISION_FDS_MAX];
        size_t n = provision_fds(prov, fds, ev, PROVISION_FDS_MAX);
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = ev[i]};
        int to = provision_timeout_ms(prov, cpn_mono_ms());
        poll(pfd, n, to < 0 || to > 100 ? 100 : to);
        provision_run(prov, cpn_mono_ms());
    }
    assert_true(s_done);
    if (took_ms)
        *took_ms = cpn_mono_ms() - t0;
    print_message("# %s %s: %s (%s) in %llu ms\n", drv_verb_name(verb), lease ? lease : "",
                  s_res.outcome == DRV_OK ? "ok" : "failed", s_res.reason,
                  (unsigned long long)(cpn_mono_ms() - t0));
    return s_res.outcome;
}

static drv_outcome_t s_call(drv_verb_t verb, const char *lease, const char *package, uint32_t units,
                            uint64_t end_ms, uint64_t *took_ms)
{
    return s_call_on(s_prov, verb, lease, package, units, end_ms, took_ms);
}

static void s_opt(const char *k, const char *v)
{
    assert_true(s_cfg.n_options < DRV_OPTIONS_MAX);
    snprintf(s_cfg.options[s_cfg.n_options].key, CPN_NAME_MAX, "%s", k);
    snprintf(s_cfg.options[s_cfg.n_options].value, DRV_OPTION_LEN, "%s", v);
    s_cfg.n_options++;
}

static int s_setup(void **state)
{
    (void)state;
    char out[4096], conf[4200];
    const char *src = getenv("CPN_SRCDIR"), *tmp = getenv("TMPDIR");
    snprintf(s_src, sizeof s_src, "%s", src ? src : ".");
    snprintf(s_dir, sizeof s_dir, "%s/cpn-test-slurm.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(s_dir))
        return -1;
    uint64_t t0 = cpn_mono_ms();
    int st = s_sh(out, sizeof out, "%s/tests/slurm_cluster.sh start %s --owner %d", s_src, s_dir,
                  (int)getpid());
    print_message("# %s", out);
    if (st != 0)
        return -1;
    print_message("# cluster up in %llu ms\n", (unsigned long long)(cpn_mono_ms() - t0));
    snprintf(conf, sizeof conf, "%s/etc/slurm.conf", s_dir);
    setenv("SLURM_CONF", conf, 1);
    setenv("TZ", "UTC0", 1);
    snprintf(s_cfg.name, sizeof s_cfg.name, "slurm");
    snprintf(s_cfg.type, sizeof s_cfg.type, "slurm");
    s_cfg.timeout_s = 10;
    s_cfg.concurrency = 4;
    s_cfg.retries = 2;
    s_cfg.backoff_s = 1;
    s_opt("cluster", "cpntest");
    s_opt("login", "127.0.0.1:22");
    s_opt("users", "other00001=bin," S_KID "=daemon");
    s_opt("slurm_conf", conf);
    s_opt("set.h100", "partition=gpu feature=h100");
    s_opt("set.a100", "gres=a100:2");
    s_opt("set.cpu", "partition=cpu");
    s_opt("set.all", "partition=gpu");
    char why[CPN_REASON_MAX] = "";
    const drv_ops_t *ops = driver_find("slurm");
    assert_non_null(ops);
    assert_int_equal(ops->check(&s_cfg, why), CPN_OK);
    s_prov = provision_new(&s_cfg, 1, s_on_done, NULL);
    return s_prov ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    char out[4096];
    provision_destroy(&s_prov);
    drv_result_clear(&s_res);
    uint64_t t0 = cpn_mono_ms();
    int st = s_sh(out, sizeof out, "%s/tests/slurm_cluster.sh stop %s", s_src, s_dir);
    print_message("# cluster stopped in %llu ms\n", (unsigned long long)(cpn_mono_ms() - t0));
    if (st == 0 && !getenv("CPN_TEST_KEEP"))
        s_sh(NULL, 0, "rm -rf %s", s_dir);
    else
        print_message("# kept %s\n", s_dir);
    return st == 0 ? 0 : -1;
}

/* The value of KEY= in scontrol's one-line record of reservation cpn-LEASE ("" if none). */
static bool s_resv_field(const char *lease, const char *key, char *val, size_t cap)
{
    char out[4096];
    val[0] = '\0';
    if (s_sh(out, sizeof out, "scontrol show reservation -o cpn-%s", lease) != 0)
        return false;
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(out, pat);
    if (!p)
        return false;
    p += strlen(pat);
    snprintf(val, cap, "%.*s", (int)strcspn(p, " \n"), p);
    return true;
}

/* Wait until job `id` runs; its node into node. */
static bool s_job_runs(const char *id, char *node, size_t cap)
{
    char out[1024];
    uint64_t t0 = cpn_mono_ms();
    while (cpn_mono_ms() - t0 < S_JOB_WAIT_MS) {
        if (s_sh(out, sizeof out, "squeue -h -j %s -o '%%T %%N'", id) == 0 &&
            strncmp(out, "RUNNING ", 8) == 0) {
            snprintf(node, cap, "%.*s", (int)strcspn(out + 8, "\n"), out + 8);
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

/* grant -> reservation for the mapped user; the tenant's job runs on the leased node, another
 * user's job is refused; renew moves its end; release ends it, running job and all. */
static void test_lease_life(void **state)
{
    (void)state;
    char val[256], out[4096], node[64], jobid[32];
    uint64_t took, now = cpn_now_ms(), end = now / 1000 * 1000 + 3600 * 1000;
    assert_int_equal(s_call(DRV_GRANT, "Llife1", "h100", 1, end, &took), DRV_OK);
    print_message("# grant: %s\n", s_res.access);
    assert_non_null(s_res.access);
    assert_non_null(strstr(s_res.access, "\"reservation\":\"cpn-Llife1\""));
    assert_non_null(strstr(s_res.access, "\"cluster\":\"cpntest\""));
    assert_non_null(strstr(s_res.access, "\"user\":\"daemon\""));
    assert_true(s_resv_field("Llife1", "Users", val, sizeof val));
    assert_string_equal(val, "daemon");
    assert_true(s_resv_field("Llife1", "NodeCnt", val, sizeof val));
    assert_string_equal(val, "1");
    char leased[64];
    assert_true(s_resv_field("Llife1", "Nodes", leased, sizeof leased));
    assert_true(strcmp(leased, "c1") == 0 || strcmp(leased, "c2") == 0);
    char want[128];
    snprintf(want, sizeof want, "\"nodes\":[\"%s\"]", leased);
    assert_non_null(strstr(s_res.access, want));
    /* the end is the lease's, to the second (TZ=UTC0 both ways) */
    assert_true(s_resv_field("Llife1", "EndTime", val, sizeof val));
    char endtxt[32];
    time_t e = (time_t)(end / 1000);
    struct tm tm;
    gmtime_r(&e, &tm);
    strftime(endtxt, sizeof endtxt, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_string_equal(val, endtxt);

    /* a grant again (a retry after a crash) answers the same reservation */
    assert_int_equal(s_call(DRV_GRANT, "Llife1", "h100", 1, end, NULL), DRV_OK);
    assert_non_null(strstr(s_res.access, want));

    /* the tenant's job runs there, as the tenant's user */
    assert_int_equal(s_sh(out, sizeof out,
                          "cd %s/jobs && runuser -u daemon -- sbatch --parsable "
                          "--reservation=cpn-Llife1 -o %s/jobs/%%j.out --wrap 'sleep 300'",
                          s_dir, s_dir),
                     0);
    snprintf(jobid, sizeof jobid, "%.*s", (int)strcspn(out, "\n;"), out);
    uint64_t t0 = cpn_mono_ms();
    assert_true(s_job_runs(jobid, node, sizeof node));
    print_message("# job %s runs on %s, %llu ms after sbatch\n", jobid, node,
                  (unsigned long long)(cpn_mono_ms() - t0));
    assert_string_equal(node, leased);
    assert_int_equal(s_sh(out, sizeof out, "squeue -h -j %s -o %%u", jobid), 0);
    assert_string_equal(out, "daemon\n");
    /* another user is refused there */
    assert_int_not_equal(s_sh(out, sizeof out,
                              "cd %s/jobs && runuser -u bin -- sbatch --reservation=cpn-Llife1 "
                              "-o /dev/null --wrap 'sleep 1'",
                              s_dir),
                         0);
    assert_non_null(strstr(out, "Access denied to requested reservation"));

    /* renew: the end moves */
    uint64_t end2 = end + 7200 * 1000;
    assert_int_equal(s_call(DRV_RENEW, "Llife1", "h100", 1, end2, NULL), DRV_OK);
    e = (time_t)(end2 / 1000);
    gmtime_r(&e, &tm);
    strftime(endtxt, sizeof endtxt, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_true(s_resv_field("Llife1", "EndTime", val, sizeof val));
    assert_string_equal(val, endtxt);

    /* status and list see it */
    assert_int_equal(s_call(DRV_STATUS, "Llife1", "h100", 1, end2, NULL), DRV_OK);
    assert_true(s_res.present);
    assert_int_equal(s_call(DRV_LIST, NULL, NULL, 0, 0, NULL), DRV_OK);
    assert_int_equal(s_res.n_ids, 1);
    assert_string_equal(s_res.ids[0], "Llife1");

    /* release with the job still running: the job is cancelled, the reservation gone */
    assert_int_equal(s_call(DRV_RELEASE, "Llife1", "h100", 1, end2, &took), DRV_OK);
    assert_int_not_equal(s_sh(out, sizeof out, "scontrol show reservation -o cpn-Llife1"), 0);
    assert_non_null(strstr(out, "not found"));
    s_sh(out, sizeof out, "squeue -h -j %s -o %%T", jobid);
    assert_null(strstr(out, "RUNNING"));
    /* idempotent: releasing what is gone succeeds; status says absent */
    assert_int_equal(s_call(DRV_RELEASE, "Llife1", "h100", 1, end2, NULL), DRV_OK);
    assert_int_equal(s_call(DRV_STATUS, "Llife1", "h100", 1, end2, NULL), DRV_OK);
    assert_false(s_res.present);
    /* renewing what is gone fails for good */
    assert_int_equal(s_call(DRV_RENEW, "Llife1", "h100", 1, end2, NULL), DRV_FAILED);
}

/* A set by GRES model: the driver picks idle nodes and reserves them by name. */
static void test_gres_pick(void **state)
{
    (void)state;
    char val[256], out[256];
    uint64_t end = cpn_now_ms() + 600 * 1000;
    assert_int_equal(s_call(DRV_GRANT, "Lgres1", "a100", 2, end, NULL), DRV_OK);
    assert_true(s_resv_field("Lgres1", "Nodes", val, sizeof val));
    assert_string_equal(val, "c[3-4]");
    assert_non_null(strstr(s_res.access, "\"nodes\":[\"c3\",\"c4\"]"));
    /* none left: refused with a reason, nothing reserved */
    assert_int_equal(s_call(DRV_GRANT, "Lgres2", "a100", 1, end, NULL), DRV_FAILED);
    assert_non_null(strstr(s_res.reason, "0 of 1 nodes"));
    assert_int_not_equal(s_sh(out, sizeof out, "scontrol show reservation -o cpn-Lgres2"), 0);
    assert_int_equal(s_call(DRV_RELEASE, "Lgres1", "a100", 2, end, NULL), DRV_OK);
}

/* nodecnt beyond what is free: Slurm makes a smaller reservation; the driver undoes it. */
static void test_too_many(void **state)
{
    (void)state;
    char out[1024];
    uint64_t end = cpn_now_ms() + 600 * 1000;
    assert_int_equal(s_call(DRV_GRANT, "Lbig1", "h100", 3, end, NULL), DRV_FAILED);
    assert_non_null(strstr(s_res.reason, "not available"));
    assert_int_not_equal(s_sh(out, sizeof out, "scontrol show reservation -o cpn-Lbig1"), 0);
    /* without features Slurm reserves what it has (4 nodes for nodecnt=9): undone */
    assert_int_equal(s_call(DRV_GRANT, "Lbig2", "all", 9, end, NULL), DRV_FAILED);
    assert_non_null(strstr(s_res.reason, "slurm reserved 4 of 9 nodes"));
    assert_int_not_equal(s_sh(out, sizeof out, "scontrol show reservation -o cpn-Lbig2"), 0);
    /* a tenant with no Unix user is refused before Slurm is asked */
    drv_call_t c = {.verb = DRV_GRANT, .units = 1, .end_ms = end};
    snprintf(c.lease_id, sizeof c.lease_id, "Lnouser");
    snprintf(c.package, sizeof c.package, "h100");
    snprintf(c.tenant_kid, sizeof c.tenant_kid, "nobody0001");
    drv_cmd_t cmd = {0};
    assert_int_equal(driver_slurm_ops.command(&s_cfg, &c, &cmd), CPN_E_TENANT_REFUSED);
    drv_cmd_clear(&cmd);
}

/* Inventory: units per package from the cluster; a node DOWN shrinks its package and marks
 * the lease on it lost, unless Slurm already moved the reservation to another node. */
static void test_inventory(void **state)
{
    (void)state;
    char out[1024];
    uint64_t end = cpn_now_ms() + 600 * 1000;
    assert_int_equal(s_call(DRV_INVENTORY, NULL, NULL, 0, 0, NULL), DRV_OK);
    assert_int_equal(s_res.n_units, 4);
    for (size_t i = 0; i < s_res.n_units; i++) /* h100: c1 c2, a100: c3 c4, cpu: c3 c4, all */
        assert_int_equal(s_res.units[i].units, strcmp(s_res.units[i].package, "all") ? 2 : 4);
    assert_int_equal(s_res.n_lost, 0);
    assert_int_equal(s_call(DRV_GRANT, "Linv1", "cpu", 1, end, NULL), DRV_OK);
    char node[64];
    assert_true(s_resv_field("Linv1", "Nodes", node, sizeof node));
    assert_int_equal(
        s_sh(out, sizeof out, "scontrol update nodename=%s state=down reason=test", node), 0);
    assert_int_equal(s_call(DRV_INVENTORY, NULL, NULL, 0, 0, NULL), DRV_OK);
    for (size_t i = 0; i < s_res.n_units; i++) /* a100, cpu and all lost the node */
        assert_int_equal(s_res.units[i].units, strcmp(s_res.units[i].package, "h100") == 0  ? 2
                                               : strcmp(s_res.units[i].package, "all") == 0 ? 3
                                                                                            : 1);
    if (s_res.n_lost == 0) {
        /* Slurm may move a reservation off a DOWN node before the poll looks (it picked the
         * node by count): then the lease still has its node and nothing is lost. What must
         * never be: the reservation on the DOWN node and the lease not reported lost. */
        char now_on[64];
        assert_true(s_resv_field("Linv1", "Nodes", now_on, sizeof now_on));
        assert_true(now_on[0] != '\0' && strcmp(now_on, node) != 0);
    } else {
        assert_int_equal(s_res.n_lost, 1);
        assert_string_equal(s_res.lost[0], "Linv1");
    }
    assert_int_equal(s_call(DRV_RELEASE, "Linv1", "cpu", 1, end, NULL), DRV_OK);
    assert_int_equal(s_sh(out, sizeof out, "scontrol update nodename=%s state=resume", node), 0);
}

/* A controller that cannot be reached (a slurm.conf naming a port nobody listens on): every
 * call is retried with backoff, then fails with Slurm's reason; nothing is left behind. */
static void test_unreachable(void **state)
{
    (void)state;
    char out[256], conf[4200];
    snprintf(conf, sizeof conf, "%s/etc/unreachable.conf", s_dir);
    assert_int_equal(s_sh(out, sizeof out,
                          "sed 's/^SlurmctldPort=.*/SlurmctldPort=9/' %s/etc/slurm.conf >%s && "
                          "echo MessageTimeout=2 >>%s",
                          s_dir, conf, conf),
                     0);
    drv_config_t bad = s_cfg;
    for (size_t i = 0; i < bad.n_options; i++)
        if (strcmp(bad.options[i].key, "slurm_conf") == 0)
            assert_true(snprintf(bad.options[i].value, DRV_OPTION_LEN, "%.*s", DRV_OPTION_LEN - 1,
                                 conf) < DRV_OPTION_LEN);
    bad.retries = 1;
    provision_t *prov = provision_new(&bad, 1, s_on_done, NULL);
    assert_non_null(prov);
    uint64_t took, end = cpn_now_ms() + 600 * 1000;
    assert_int_equal(s_call_on(prov, DRV_GRANT, "Lunreach", "h100", 1, end, &took), DRV_FAILED);
    assert_non_null(strstr(s_res.reason, "Unexpected message received"));
    assert_int_equal(s_call_on(prov, DRV_RELEASE, "Lunreach", "h100", 1, end, &took), DRV_FAILED);
    assert_non_null(strstr(s_res.reason, "Unable to contact slurm controller"));
    provision_stats_t st;
    provision_stats(prov, &st);
    assert_true(st.retried >= 2); /* each call was tried again before it failed */
    provision_destroy(&prov);
    assert_int_not_equal(s_sh(out, sizeof out, "scontrol show reservation -o cpn-Lunreach"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_life),  cmocka_unit_test(test_gres_pick),
        cmocka_unit_test(test_too_many),    cmocka_unit_test(test_inventory),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
