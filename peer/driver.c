/* driver.c - the table of drivers and what every driver shares: commands, results, reasons. */
#include "driver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const s_verbs[DRV__VERBS] = {
    [DRV_GRANT] = "grant",   [DRV_RENEW] = "renew", [DRV_RELEASE] = "release",
    [DRV_STATUS] = "status", [DRV_LIST] = "list",   [DRV_INVENTORY] = "inventory",
};

/* Every driver there is; a new one adds its line. */
static const drv_ops_t *const s_drivers[] = {
    &driver_exec_ops,
    &driver_slurm_ops,
};

const char *drv_verb_name(drv_verb_t v)
{
    return (unsigned)v < DRV__VERBS ? s_verbs[v] : "unknown";
}

const drv_ops_t *driver_find(const char *type)
{
    for (size_t i = 0; i < sizeof s_drivers / sizeof s_drivers[0]; i++)
        if (type && strcmp(s_drivers[i]->type, type) == 0)
            return s_drivers[i];
    return NULL;
}

const char *drv_option(const drv_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n_options; i++)
        if (strcmp(cfg->options[i].key, key) == 0)
            return cfg->options[i].value;
    return NULL;
}

void drv_cmd_clear(drv_cmd_t *cmd)
{
    if (!cmd)
        return;
    for (size_t i = 0; i < DRV_ARGV_MAX && cmd->argv[i]; i++) {
        free(cmd->argv[i]);
        cmd->argv[i] = NULL;
    }
    free(cmd->in);
    cmd->in = NULL;
    cmd->in_len = 0;
}

int drv_cmd_arg(drv_cmd_t *cmd, const char *arg)
{
    size_t n = 0;
    while (n < DRV_ARGV_MAX && cmd->argv[n])
        n++;
    if (n >= DRV_ARGV_MAX)
        return CPN_E_TOO_BIG;
    if (!(cmd->argv[n] = strdup(arg)))
        return CPN_E_NOMEM;
    cmd->argv[n + 1] = NULL;
    return CPN_OK;
}

void drv_result_clear(drv_result_t *res)
{
    if (!res)
        return;
    free(res->access);
    free(res->next);
    free(res->ids);
    free(res->lost);
    memset(res, 0, sizeof *res);
}

void drv_sanitize(char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n >= cap && cap > 0) { /* not terminated within cap: cut */
        n = cap - 1;
        s[n] = '\0';
    }
    /* Control characters (a newline from a script's echo) become spaces, other bytes '?'. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            s[i] = ' ';
        else if (c > 0x7e)
            s[i] = '?';
    }
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
}

void drv_result_set(drv_result_t *res, drv_outcome_t outcome, const char *fmt, ...)
{
    va_list ap;
    res->outcome = outcome;
    va_start(ap, fmt);
    int n = vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof res->reason && sizeof res->reason > 4)
        memcpy(res->reason + sizeof res->reason - 4, "...", 4);
    drv_sanitize(res->reason, sizeof res->reason);
    if (res->reason[0] == '\0') /* only blanks: a NACK still says something */
        snprintf(res->reason, sizeof res->reason, "%s", "driver error (no reason given)");
}

int drv_hints_json(const cpn_hints_t *h, char *out, size_t cap)
{
    json_t *o = json_object();
    const char *k, *v;
    int r = o ? CPN_OK : CPN_E_NOMEM;
    for (uint32_t i = 0; r == CPN_OK && cpn_hints_at(h, i, &k, &v); i++)
        if (json_object_set_new(o, k, json_string(v)) != 0)
            r = CPN_E_INVAL; /* not UTF-8: hints.c refuses that before */
    if (r == CPN_OK) {
        size_t n = json_dumpb(o, out, cap, JSON_COMPACT | JSON_SORT_KEYS);
        if (n == 0 || n >= cap)
            r = CPN_E_TOO_BIG;
        else
            out[n] = '\0';
    }
    json_decref(o);
    return r;
}
