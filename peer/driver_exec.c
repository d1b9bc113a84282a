/* driver_exec.c - the `exec` driver: the operator's program, called as `program VERB` with one
 * JSON object on stdin, answering one JSON object on stdout (docs/PROVISIONING.md). */
#include "driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

static int s_check(const drv_config_t *cfg, char why[CPN_REASON_MAX])
{
    if (cfg->program[0] == '\0') {
        snprintf(why, CPN_REASON_MAX, "%s", "an exec driver needs `program`");
        return CPN_E_CONFIG;
    }
    if (access(cfg->program, X_OK) != 0) {
        snprintf(why, CPN_REASON_MAX, "program %.200s is not an executable file", cfg->program);
        return CPN_E_CONFIG;
    }
    if (cfg->n_options > 0) {
        snprintf(why, CPN_REASON_MAX, "an exec driver has no options (%.60s)",
                 cfg->options[0].key);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

/* The call as the JSON object the program reads on stdin. */
static json_t *s_call_json(const drv_call_t *call)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "verb", json_string(drv_verb_name(call->verb)));
    if (call->verb == DRV_LIST || call->verb == DRV_INVENTORY)
        return bad ? (json_decref(o), NULL) : o;
    json_t *hints = NULL;
    if (call->hints && call->hints[0]) {
        hints = json_loads(call->hints, JSON_REJECT_DUPLICATES, NULL);
        if (hints && !json_is_object(hints)) {
            json_decref(hints);
            hints = NULL;
        }
    }
    bad |= json_object_set_new(o, "lease_id", json_string(call->lease_id));
    bad |= json_object_set_new(o, "tenant", json_string(call->tenant));
    bad |= json_object_set_new(o, "tenant_kid", json_string(call->tenant_kid));
    bad |= json_object_set_new(o, "package", json_string(call->package));
    bad |= json_object_set_new(o, "units", json_integer(call->units));
    bad |= json_object_set_new(o, "start_ms", json_integer((json_int_t)call->start_ms));
    bad |= json_object_set_new(o, "end_ms", json_integer((json_int_t)call->end_ms));
    bad |= json_object_set_new(o, "access", hints ? hints : json_null());
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int s_command(const drv_config_t *cfg, const drv_call_t *call, drv_cmd_t *cmd)
{
    int r;
    json_t *o = s_call_json(call);
    if (!o)
        return CPN_E_NOMEM;
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return CPN_E_NOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* the terminator becomes the line end: one line, then EOF */
    cmd->in = (uint8_t *)text;
    cmd->in_len = n + 1;
    if ((r = drv_cmd_arg(cmd, cfg->program)) != CPN_OK ||
        (r = drv_cmd_arg(cmd, drv_verb_name(call->verb))) != CPN_OK)
        return r;
    return CPN_OK;
}

/* The first line of stderr, for a reason. */
static void s_err_line(const drv_run_t *run, char *out, size_t cap)
{
    const char *e = run->err ? (const char *)run->err : "";
    size_t n = strcspn(e, "\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), e);
}

static void s_ids(json_t *arr, char (**out)[CPN_NAME_MAX], size_t *n, drv_result_t *res,
                  const char *what)
{
    size_t k = json_array_size(arr);
    if (k > DRV_LIST_MAX) {
        drv_result_set(res, DRV_RETRY, "driver `%s` has %zu ids, more than %d", what, k,
                       DRV_LIST_MAX);
        return;
    }
    *out = calloc(k ? k : 1, CPN_NAME_MAX);
    if (!*out) {
        drv_result_set(res, DRV_RETRY, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < k; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || strlen(s) >= CPN_NAME_MAX) {
            drv_result_set(res, DRV_RETRY, "driver `%s`[%zu] is not a lease id", what, i);
            return;
        }
        memcpy((*out)[i], s, strlen(s) + 1);
    }
    *n = k;
}

/* What an {"ok": true, ...} means for the verb. */
static void s_ok(const drv_call_t *call, json_t *o, drv_result_t *res)
{
    res->outcome = DRV_OK;
    json_t *v;
    switch (call->verb) {
    case DRV_GRANT:
        v = json_object_get(o, "access");
        if (v && !json_is_null(v)) {
            if (!json_is_object(v)) {
                drv_result_set(res, DRV_RETRY, "%s", "driver `access` is not a JSON object");
                return;
            }
            res->access = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
            if (!res->access || strlen(res->access) > DRV_ACCESS_MAX) {
                free(res->access);
                res->access = NULL;
                drv_result_set(res, DRV_FAILED, "driver `access` over %d bytes", DRV_ACCESS_MAX);
            }
        }
        break;
    case DRV_STATUS:
        v = json_object_get(o, "present");
        if (!json_is_boolean(v))
            drv_result_set(res, DRV_RETRY, "%s", "driver status without a boolean `present`");
        else
            res->present = json_is_true(v);
        break;
    case DRV_LIST:
        v = json_object_get(o, "leases");
        if (!json_is_array(v))
            drv_result_set(res, DRV_RETRY, "%s", "driver list without an array `leases`");
        else
            s_ids(v, &res->ids, &res->n_ids, res, "leases");
        break;
    case DRV_INVENTORY: {
        json_t *units = json_object_get(o, "units"), *lost = json_object_get(o, "lost");
        const char *k;
        json_t *u;
        if (units && !json_is_object(units)) {
            drv_result_set(res, DRV_RETRY, "%s", "driver `units` is not an object");
            return;
        }
        json_object_foreach(units, k, u)
        {
            if (res->n_units >= DRV_INVENTORY_MAX || strlen(k) >= CPN_NAME_MAX ||
                !json_is_integer(u) || json_integer_value(u) < 0 ||
                json_integer_value(u) > UINT32_MAX) {
                drv_result_set(res, DRV_RETRY, "%s", "driver `units` is not {package: count}");
                return;
            }
            memcpy(res->units[res->n_units].package, k, strlen(k) + 1);
            res->units[res->n_units++].units = (uint32_t)json_integer_value(u);
        }
        if (lost && !json_is_array(lost))
            drv_result_set(res, DRV_RETRY, "%s", "driver `lost` is not an array");
        else if (lost)
            s_ids(lost, &res->lost, &res->n_lost, res, "lost");
        break;
    }
    default:
        break;
    }
}

static void s_result(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                     drv_result_t *res)
{
    (void)cfg;
    char err[CPN_REASON_MAX];
    json_error_t jerr;
    s_err_line(run, err, sizeof err);
    json_t *o = json_loadb((const char *)run->out, run->out_len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *ok = json_object_get(o, "ok");
    if (!o || !json_is_object(o) || !json_is_boolean(ok)) {
        if (run->exited && run->status == 0)
            drv_result_set(res, DRV_RETRY, "driver output is not a JSON object with `ok`%s%s",
                           err[0] ? ": " : "", err);
        else
            drv_result_set(res, DRV_RETRY, "driver %s %d%s%s",
                           run->exited ? "exited with" : "killed by signal", run->status,
                           err[0] ? ": " : "", err);
        goto out;
    }
    if (json_is_true(ok) && run->exited && run->status == 0) {
        s_ok(call, o, res);
        goto out;
    }
    const char *e = json_string_value(json_object_get(o, "error"));
    bool retry = json_is_true(json_object_get(o, "retry"));
    if (json_is_true(ok)) /* said ok but exited non-zero: not believed */
        drv_result_set(res, DRV_RETRY, "driver said ok but exited with %d", run->status);
    else
        drv_result_set(res, retry ? DRV_RETRY : DRV_FAILED, "%s", e && e[0] ? e : "driver error");
out:
    json_decref(o);
}

const drv_ops_t driver_exec_ops = {
    .type = "exec",
    .check = s_check,
    .command = s_command,
    .result = s_result,
};
