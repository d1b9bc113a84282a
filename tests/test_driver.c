/* test_driver.c - the exec driver's translation (peer/driver_exec.c), the shared driver helpers
 * (peer/driver.c), the `provision:` configuration (peer/peer_config.c) and the child runner
 * (peer/runner.c) with real child processes.
 *
 * The driver is a pure translation: its command for a call (argv, the JSON on stdin) and what
 * a finished command's output means are checked on given bytes, garbage included. The
 * configuration's errors each name their key. The runner runs real /bin/sh children: output
 * read, a timeout kill, an output cap, a program that does not read its stdin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "driver.h"
#include "peer_config.h"
#include "runner.h"
#include "yconf.h"

static drv_config_t s_cfg(void)
{
    drv_config_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "d");
    snprintf(c.type, sizeof c.type, "exec");
    snprintf(c.program, sizeof c.program, "/bin/true");
    c.timeout_s = 5;
    c.concurrency = 1;
    return c;
}

static drv_call_t s_call(drv_verb_t verb)
{
    drv_call_t call;
    memset(&call, 0, sizeof call);
    call.verb = verb;
    snprintf(call.lease_id, sizeof call.lease_id, "Labc");
    snprintf(call.tenant, sizeof call.tenant, "TTTT");
    snprintf(call.tenant_kid, sizeof call.tenant_kid, "kid");
    snprintf(call.package, sizeof call.package, "pool");
    call.units = 2;
    call.start_ms = 1000;
    call.end_ms = 2000;
    return call;
}

/* What `out` (stdout, exit status) means for a call of `verb`. */
static void s_result(drv_verb_t verb, const char *out, int status, drv_result_t *res)
{
    drv_config_t cfg = s_cfg();
    drv_call_t call = s_call(verb);
    drv_run_t run = {.exited = true,
                     .status = status,
                     .out = (const uint8_t *)out,
                     .out_len = strlen(out),
                     .err = (const uint8_t *)"first line\nsecond",
                     .err_len = 17};
    memset(res, 0, sizeof *res);
    driver_exec_ops.result(&cfg, &call, &run, res);
}

static void test_exec_command(void **state)
{
    (void)state;
    drv_config_t cfg = s_cfg();
    drv_call_t call = s_call(DRV_GRANT);
    drv_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    call.hints = "{\"ssh_key\":\"ssh-ed25519 AAAA k\"}";
    assert_int_equal(driver_exec_ops.command(&cfg, &call, &cmd), CPN_OK);
    assert_string_equal(cmd.argv[0], "/bin/true");
    assert_string_equal(cmd.argv[1], "grant");
    assert_null(cmd.argv[2]);
    assert_true(cmd.in_len > 0 && cmd.in[cmd.in_len - 1] == '\n');
    char *in = strndup((const char *)cmd.in, cmd.in_len);
    assert_non_null(strstr(in, "\"lease_id\":\"Labc\""));
    assert_non_null(strstr(in, "\"access\":{\"ssh_key\":\"ssh-ed25519 AAAA k\"}"));
    assert_non_null(strstr(in, "\"units\":2"));
    assert_non_null(strstr(in, "\"end_ms\":2000"));
    free(in);
    drv_cmd_clear(&cmd);
    /* list: only the verb */
    call = s_call(DRV_LIST);
    assert_int_equal(driver_exec_ops.command(&cfg, &call, &cmd), CPN_OK);
    assert_int_equal(cmd.in_len, strlen("{\"verb\":\"list\"}\n"));
    drv_cmd_clear(&cmd);
}

static void test_exec_results(void **state)
{
    (void)state;
    drv_result_t res;
    s_result(DRV_GRANT, "{\"ok\": true, \"access\": {\"host\": \"h\", \"port\": 22}}\n", 0, &res);
    assert_int_equal(res.outcome, DRV_OK);
    assert_string_equal(res.access, "{\"host\":\"h\",\"port\":22}");
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": true}", 0, &res);
    assert_int_equal(res.outcome, DRV_OK);
    assert_null(res.access);
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": false, \"error\": \"no\\nGPUs\"}", 0, &res);
    assert_int_equal(res.outcome, DRV_FAILED);
    assert_string_equal(res.reason, "no GPUs"); /* one printable line */
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": false, \"error\": \"\\n\\t \"}", 0, &res);
    assert_int_equal(res.outcome, DRV_FAILED);
    assert_string_equal(res.reason, "driver error (no reason given)");
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": false, \"error\": \"busy\", \"retry\": true}", 3, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": true}", 1, &res); /* ok but a failing exit: not believed */
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
    s_result(DRV_GRANT, "{\"ok\": true, \"access\": [1]}", 0, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
    const char *garbage[] = {"", "not json", "[1,2]", "{\"ok\": 1}", "{\"ok\": true, \"ok\": false}",
                             "\xff\xfe{", "{\"ok\": true} trailing"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        s_result(DRV_GRANT, garbage[i], 0, &res);
        assert_int_equal(res.outcome, DRV_RETRY);
        assert_non_null(strstr(res.reason, "not a JSON object"));
        drv_result_clear(&res);
    }
    s_result(DRV_GRANT, "", 2, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    assert_string_equal(res.reason, "driver exited with 2: first line");
    drv_result_clear(&res);
    s_result(DRV_STATUS, "{\"ok\": true, \"present\": false}", 0, &res);
    assert_int_equal(res.outcome, DRV_OK);
    assert_false(res.present);
    drv_result_clear(&res);
    s_result(DRV_STATUS, "{\"ok\": true}", 0, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
    s_result(DRV_LIST, "{\"ok\": true, \"leases\": [\"L1\", \"L2\"]}", 0, &res);
    assert_int_equal(res.outcome, DRV_OK);
    assert_int_equal(res.n_ids, 2);
    assert_string_equal(res.ids[1], "L2");
    drv_result_clear(&res);
    s_result(DRV_LIST, "{\"ok\": true, \"leases\": [\"L1\", 7]}", 0, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
    s_result(DRV_INVENTORY, "{\"ok\": true, \"units\": {\"pool\": 3}, \"lost\": [\"L9\"]}", 0, &res);
    assert_int_equal(res.outcome, DRV_OK);
    assert_int_equal(res.n_units, 1);
    assert_int_equal(res.units[0].units, 3);
    assert_int_equal(res.n_lost, 1);
    drv_result_clear(&res);
    s_result(DRV_INVENTORY, "{\"ok\": true, \"units\": {\"pool\": -3}}", 0, &res);
    assert_int_equal(res.outcome, DRV_RETRY);
    drv_result_clear(&res);
}

static void test_sanitize_and_hints(void **state)
{
    (void)state;
    char s[16] = "ab\ncd\x01\xc3\xa9";
    drv_sanitize(s, sizeof s);
    assert_string_equal(s, "ab cd ??");
    drv_result_t res;
    memset(&res, 0, sizeof res);
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    drv_result_set(&res, DRV_FAILED, "%s", big);
    assert_int_equal(strlen(res.reason), CPN_REASON_MAX - 1);
    assert_string_equal(res.reason + CPN_REASON_MAX - 4, "...");
    cpn_hints_t h;
    memset(&h, 0, sizeof h);
    char json[DRV_HINTS_MAX];
    assert_int_equal(cpn_hints_set(&h, "user", "al\"ice"), CPN_OK);
    assert_int_equal(cpn_hints_set(&h, "ssh_key", "k"), CPN_OK);
    assert_int_equal(drv_hints_json(&h, json, sizeof json), CPN_OK);
    assert_string_equal(json, "{\"ssh_key\":\"k\",\"user\":\"al\\\"ice\"}");
    assert_int_equal(drv_hints_json(&h, json, 8), CPN_E_TOO_BIG);
    assert_null(driver_find("nope"));
    assert_ptr_equal(driver_find("exec"), &driver_exec_ops);
}

/* ---- the provision section ---- */

static char s_dir[256];

static int s_config(const char *provision, char *errors, size_t cap)
{
    char path[400], text[4096];
    snprintf(path, sizeof path, "%s/peer.yaml", s_dir);
    snprintf(text, sizeof text,
             "name: p\nkey: peer.key\ndatabase: peer.db\nregion: r\n"
             "brokers:\n  - endpoint: tcp://127.0.0.1:1\n"
             "    key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
             "tenants: any\npackages:\n  - id: pool\n    count: 2\n    price: \"1.0\"\n"
             "    cores: 1\n%s",
             provision);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    int r = peer_config_load(path, &cfg, &doc);
    errors[0] = 0;
    if (doc) {
        FILE *m = fmemopen(errors, cap, "w");
        yconf_print_errors(doc, m);
        fclose(m);
    }
    if (r == CPN_OK) {
        assert_int_equal(cfg->n_drivers, 1);
        assert_int_equal(cfg->pkg_driver[0], 0);
        assert_int_equal(cfg->drivers[0].timeout_s, 7);
        assert_int_equal(cfg->drivers[0].concurrency, PEER_DRIVER_CONCURRENCY_DEFAULT);
    }
    peer_config_destroy(&cfg);
    yconf_destroy(&doc);
    return r;
}

static void test_provision_config(void **state)
{
    (void)state;
    char err[4096], drv[400];
    snprintf(drv, sizeof drv, "%s/drv.sh", s_dir);
    FILE *f = fopen(drv, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n", f);
    fclose(f);
    chmod(drv, 0755);
    if (s_config("provision:\n  drivers:\n    - {name: d, type: exec, program: drv.sh, "
                 "timeout: 7s}\n  packages: {pool: d}\n",
                 err, sizeof err) != CPN_OK)
        fail_msg("a good provision section refused: %s", err);
    static const struct {
        const char *yaml, *says;
    } bad[] = {
        {"provision:\n  drivers:\n    - {name: d, type: ftp, program: drv.sh}\n  packages: {pool: d}\n",
         "unknown driver type"},
        {"provision:\n  drivers:\n    - {name: d, type: exec, program: nothere.sh}\n  packages: {pool: d}\n",
         "not an executable"},
        {"provision:\n  drivers:\n    - {name: d, type: exec}\n  packages: {pool: d}\n",
         "needs `program`"},
        {"provision:\n  drivers:\n    - {name: d, type: exec, program: drv.sh}\n  packages: {gpu: d}\n",
         "provision.packages.gpu: no package"},
        {"provision:\n  drivers:\n    - {name: d, type: exec, program: drv.sh}\n  packages: {pool: e}\n",
         "expected the name of a driver"},
        {"provision:\n  drivers:\n    - {name: d, type: exec, program: drv.sh, concurrency: 0}\n"
         "  packages: {pool: d}\n",
         "concurrency"},
        {"provision:\n  drivers: []\n  packages: {pool: d}\n", "expected a list of 1 to 16"},
        {"provision:\n  drivers:\n    - {name: d, type: exec, program: drv.sh}\n  packages: {pool: d}\n"
         "  extra: 1\n",
         "unknown key \"extra\""},
        {"provision: yes\n", "expected a map"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(s_config(bad[i].yaml, err, sizeof err), CPN_OK);
        if (!strstr(err, bad[i].says))
            fail_msg("case %zu: errors \"%s\" do not say \"%s\"", i, err, bad[i].says);
    }
}

/* ---- the runner, with real children ---- */

static peer_runner_t *s_run(const char *script, const char *in, uint64_t limit_ms, bool *killed)
{
    drv_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    assert_int_equal(drv_cmd_arg(&cmd, "/bin/sh"), CPN_OK);
    assert_int_equal(drv_cmd_arg(&cmd, "-c"), CPN_OK);
    assert_int_equal(drv_cmd_arg(&cmd, script), CPN_OK);
    if (in) {
        cmd.in = (uint8_t *)strdup(in);
        cmd.in_len = strlen(in);
    }
    peer_runner_t *r = NULL;
    assert_int_equal(runner_start(&cmd, 1024, &r), CPN_OK);
    drv_cmd_clear(&cmd);
    uint64_t end = cpn_mono_ms() + limit_ms;
    *killed = false;
    while (!runner_step(r)) {
        if (cpn_mono_ms() >= end) {
            runner_kill(r, true);
            *killed = true;
            break;
        }
        struct pollfd p[RUNNER_FDS];
        int fds[RUNNER_FDS];
        short ev[RUNNER_FDS];
        size_t n = runner_fds(r, fds, ev);
        for (size_t i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = fds[i], .events = ev[i]};
        poll(p, n, runner_reaping(r) ? RUNNER_REAP_MS : 100);
    }
    return r;
}

static void test_runner(void **state)
{
    (void)state;
    bool killed;
    drv_run_t run;
    peer_runner_t *r = s_run("read l; echo \"got $l\"; echo oops >&2; exit 3", "hello\n", 20000,
                             &killed);
    runner_run(r, &run);
    assert_false(killed);
    assert_true(run.exited);
    assert_int_equal(run.status, 3);
    assert_string_equal((const char *)run.out, "got hello\n");
    assert_string_equal((const char *)run.err, "oops\n");
    runner_destroy(&r);
    /* A hang: killed (its group: the sleep too) at the test's limit. */
    r = s_run("sleep 30 & wait", NULL, 300, &killed);
    runner_run(r, &run);
    assert_true(killed && run.timed_out && !run.exited);
    runner_destroy(&r);
    /* More output than the cap (1024): killed. */
    r = s_run("yes 0123456789", NULL, 20000, &killed);
    runner_run(r, &run);
    assert_false(killed);
    assert_true(run.overflow);
    runner_destroy(&r);
    /* A program that never reads its stdin, and one that is not there. */
    char big[200000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    r = s_run("echo done", big, 20000, &killed);
    runner_run(r, &run);
    assert_true(run.exited && run.status == 0);
    runner_destroy(&r);
    r = s_run("exec /nonexistent/driver", NULL, 20000, &killed);
    runner_run(r, &run);
    assert_true(run.exited && run.status == 127);
    runner_destroy(&r);
}

static int s_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as cpn-peer: a child that does not read its stdin */
    snprintf(s_dir, sizeof s_dir, "%s/cpn-test-driver.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(s_dir) ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_command),       cmocka_unit_test(test_exec_results),
        cmocka_unit_test(test_sanitize_and_hints), cmocka_unit_test(test_provision_config),
        cmocka_unit_test(test_runner),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
