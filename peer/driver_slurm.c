/* driver_slurm.c - the `slurm` driver: a lease is a Slurm reservation "cpn-<lease id>" whose
 * users are the tenant's mapped Unix user (or accounts its account); the packages are Slurm
 * node sets, one unit one node (docs/PROVISIONING.md, "The slurm driver").
 *
 * Like every driver it only translates (driver.h): the commands come from slurm_cmd.h and
 * Slurm's answers are read by slurm.h. A call that needs several commands carries what it
 * knows in the step state (call->state), a word and its data:
 *   grant      ""         create with nodecnt=, or for a set by GRES model (no reservation
 *                         key selects by GRES): show reservations, then
 *              "pick\n<reservations>"  show nodes, pick idle ones in no reservation (a new
 *                         reservation's nodes are flagged RESERVED only a moment later)
 *              "nodes:L"  create with nodes=L
 *              "read"     show the reservation: its nodes become the access details
 *              "check:WHY" a create refused: show the reservation anyway, for a retried grant
 *                         finds it made (22.05 says "nodes are busy" before "duplicate name"
 *                         when its own nodes are the only ones); absent: fail with WHY
 *              "undo:WHY" delete a reservation Slurm made smaller than asked; fail with WHY
 *   release    ""         scancel its jobs (a reservation in use cannot be deleted)
 *              "delete"   delete it (gone already: success)
 *   inventory  ""         show nodes;  "resv\n<nodes>": show reservations, count the sets
 */
#include "driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slurm.h"
#include "slurm_cmd.h"

#define S_SET_PREFIX "set."
#define S_SET_LEN 4 /* strlen(S_SET_PREFIX) */

/* Options a slurm driver takes besides `set.<package id>` (docs/PROVISIONING.md). */
static const char *const s_keys[] = {"cluster",  "login",    "user",    "users",      "account",
                                     "accounts", "scontrol", "scancel", "slurm_conf", NULL};

static const char *s_opt(const drv_config_t *cfg, const char *key, const char *dflt)
{
    const char *v = drv_option(cfg, key);
    return v && v[0] ? v : dflt;
}

/* "partition=gpu feature=h100 gres=h100:8" (words split by spaces or commas). */
static int s_parse_set(const char *text, slurm_set_t *set, char why[CPN_REASON_MAX])
{
    char buf[DRV_OPTION_LEN];
    memset(set, 0, sizeof *set);
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *w = strtok_r(buf, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
        char *eq = strchr(w, '=');
        char *dst = NULL;
        if (eq)
            *eq = '\0';
        if (eq && strcmp(w, "partition") == 0)
            dst = set->partition;
        else if (eq && strcmp(w, "feature") == 0)
            dst = set->feature;
        else if (eq && strcmp(w, "gres") == 0)
            dst = set->gres;
        if (!dst || !eq[1] || strlen(eq + 1) >= SLURM_NAME_MAX) {
            snprintf(why, CPN_REASON_MAX,
                     "slurm set \"%.80s\": expected words partition=P, feature=F, gres=MODEL[:N]",
                     text);
            return CPN_E_CONFIG;
        }
        snprintf(dst, SLURM_NAME_MAX, "%s", eq + 1);
    }
    char *colon = strchr(set->gres, ':');
    if (colon) {
        char *end;
        unsigned long n = strtoul(colon + 1, &end, 10);
        if (*end || end == colon + 1 || n == 0 || n > UINT32_MAX) {
            snprintf(why, CPN_REASON_MAX, "slurm set \"%.80s\": gres count not a number", text);
            return CPN_E_CONFIG;
        }
        set->gres_min = (uint32_t)n;
        *colon = '\0';
    }
    return CPN_OK;
}

/* A "KID=name,KID=name" map's name for kid, or NULL. */
static bool s_map(const char *map, const char *kid, char out[SLURM_NAME_MAX])
{
    size_t kl = strlen(kid);
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl + 1 && memcmp(p, kid, kl) == 0 && p[kl] == '=' &&
            len - kl - 1 < SLURM_NAME_MAX) {
            snprintf(out, SLURM_NAME_MAX, "%.*s", (int)(len - kl - 1), p + kl + 1);
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* The tenant's Unix user or account: its own entry of users/accounts, else user/account. */
static void s_who(const drv_config_t *cfg, const char *kid, char user[SLURM_NAME_MAX],
                  char account[SLURM_NAME_MAX])
{
    user[0] = account[0] = '\0';
    if (s_map(drv_option(cfg, "users"), kid, user))
        return;
    if (s_map(drv_option(cfg, "accounts"), kid, account))
        return;
    snprintf(user, SLURM_NAME_MAX, "%s", s_opt(cfg, "user", ""));
    if (!user[0])
        snprintf(account, SLURM_NAME_MAX, "%s", s_opt(cfg, "account", ""));
}

static void s_progs(const drv_config_t *cfg, slurm_progs_t *p)
{
    snprintf(p->scontrol, sizeof p->scontrol, "%s", s_opt(cfg, "scontrol", "scontrol"));
    snprintf(p->scancel, sizeof p->scancel, "%s", s_opt(cfg, "scancel", "scancel"));
    snprintf(p->conf, sizeof p->conf, "%s", s_opt(cfg, "slurm_conf", ""));
}

static int s_check(const drv_config_t *cfg, char why[CPN_REASON_MAX])
{
    bool who = false;
    for (size_t i = 0; i < cfg->n_options; i++) {
        const char *k = cfg->options[i].key;
        bool known = strncmp(k, S_SET_PREFIX, S_SET_LEN) == 0 && k[S_SET_LEN];
        for (size_t j = 0; !known && s_keys[j]; j++)
            known = strcmp(k, s_keys[j]) == 0;
        if (!known) {
            snprintf(why, CPN_REASON_MAX, "slurm driver: unknown option \"%.60s\"", k);
            return CPN_E_CONFIG;
        }
        slurm_set_t set;
        if (known && strncmp(k, S_SET_PREFIX, S_SET_LEN) == 0 &&
            s_parse_set(cfg->options[i].value, &set, why) != CPN_OK)
            return CPN_E_CONFIG;
        who = who || strcmp(k, "user") == 0 || strcmp(k, "users") == 0 ||
              strcmp(k, "account") == 0 || strcmp(k, "accounts") == 0;
    }
    if (!who) {
        snprintf(why, CPN_REASON_MAX, "%s",
                 "slurm driver: needs user, users, account or accounts (whose reservation)");
        return CPN_E_CONFIG;
    }
    /* every command must be buildable: a program or path that is not a plain name fails here */
    slurm_progs_t p;
    slurm_cmd_t cmd;
    s_progs(cfg, &p);
    if (slurm_cmd_show_nodes(&cmd, &p) != CPN_OK ||
        slurm_cmd_cancel_jobs(&cmd, &p, "x") != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "%s",
                 "slurm driver: scontrol, scancel and slurm_conf must be plain paths");
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

/* The package's node set, from its `set.<package id>` option. */
static int s_set_of(const drv_config_t *cfg, const char *package, slurm_set_t *set)
{
    char key[CPN_NAME_MAX + 8], why[CPN_REASON_MAX];
    snprintf(key, sizeof key, "%s%s", S_SET_PREFIX, package);
    const char *v = drv_option(cfg, key);
    return v ? s_parse_set(v, set, why) : CPN_E_NO_PACKAGE;
}

static bool s_state_is(const drv_call_t *call, const char *word)
{
    size_t n = strlen(word);
    return call->state && strncmp(call->state, word, n) == 0;
}

static int s_copy_cmd(const slurm_cmd_t *sc, drv_cmd_t *cmd)
{
    int r = CPN_OK;
    for (size_t i = 0; r == CPN_OK && i < sc->argc; i++)
        r = drv_cmd_arg(cmd, sc->argv[i]);
    return r;
}

static int s_grant_cmd(const drv_config_t *cfg, const drv_call_t *call, const slurm_progs_t *p,
                       slurm_cmd_t *sc)
{
    slurm_set_t set;
    char user[SLURM_NAME_MAX], account[SLURM_NAME_MAX];
    int r = s_set_of(cfg, call->package, &set);
    if (r != CPN_OK)
        return r;
    if (s_state_is(call, "read") || s_state_is(call, "check:"))
        return slurm_cmd_show_resv(sc, p, call->lease_id);
    if (s_state_is(call, "undo:"))
        return slurm_cmd_delete(sc, p, call->lease_id);
    if (!call->state && set.gres[0]) /* a GRES model is no reservation key: pick nodes */
        return slurm_cmd_show_resv(sc, p, NULL);
    if (s_state_is(call, "pick\n"))
        return slurm_cmd_show_nodes(sc, p);
    s_who(cfg, call->tenant_kid, user, account);
    slurm_grant_t g = {.lease_id = call->lease_id,
                       .set = &set,
                       .units = call->units,
                       .nodes = s_state_is(call, "nodes:") ? call->state + 6 : NULL,
                       .user = user[0] ? user : NULL,
                       .account = account[0] ? account : NULL,
                       .end_s = (call->end_ms + 999) / 1000};
    if (!g.user && !g.account)
        return CPN_E_TENANT_REFUSED; /* no Unix user or account for this tenant */
    return slurm_cmd_create(sc, p, &g);
}

static int s_command(const drv_config_t *cfg, const drv_call_t *call, drv_cmd_t *cmd)
{
    slurm_progs_t p;
    slurm_cmd_t sc;
    int r;
    s_progs(cfg, &p);
    switch (call->verb) {
    case DRV_GRANT:
        r = s_grant_cmd(cfg, call, &p, &sc);
        break;
    case DRV_RENEW:
        r = slurm_cmd_update_end(&sc, &p, call->lease_id, (call->end_ms + 999) / 1000);
        break;
    case DRV_RELEASE:
        r = s_state_is(call, "delete") ? slurm_cmd_delete(&sc, &p, call->lease_id)
                                       : slurm_cmd_cancel_jobs(&sc, &p, call->lease_id);
        break;
    case DRV_STATUS:
        r = slurm_cmd_show_resv(&sc, &p, call->lease_id);
        break;
    case DRV_LIST:
        r = slurm_cmd_show_resv(&sc, &p, NULL);
        break;
    case DRV_INVENTORY:
        r = s_state_is(call, "resv\n") ? slurm_cmd_show_resv(&sc, &p, NULL)
                                       : slurm_cmd_show_nodes(&sc, &p);
        break;
    default:
        return CPN_E_INVAL;
    }
    return r == CPN_OK ? s_copy_cmd(&sc, cmd) : r;
}

/* ---- results ---- */

static slurm_outcome_t s_outcome(slurm_op_t op, const drv_run_t *run, char why[SLURM_WHY_MAX])
{
    return slurm_outcome(op, run->exited ? run->status : -1, (const char *)run->out, run->out_len,
                         (const char *)run->err, run->err_len, why);
}

static void s_next(drv_result_t *res, const char *state, size_t len)
{
    res->outcome = DRV_NEXT;
    res->next = malloc(len + 1);
    if (!res->next) {
        drv_result_set(res, DRV_RETRY, "%s", "out of memory");
        return;
    }
    memcpy(res->next, state, len);
    res->next[len] = '\0';
}

/* Next step, remembering this command's stdout after `word`. */
static void s_keep(drv_result_t *res, const char *word, const drv_run_t *run)
{
    size_t wl = strlen(word);
    char *state = malloc(wl + run->out_len + 1);
    if (!state) {
        drv_result_set(res, DRV_RETRY, "%s", "out of memory");
        return;
    }
    memcpy(state, word, wl);
    memcpy(state + wl, run->out, run->out_len);
    s_next(res, state, wl + run->out_len);
    free(state);
}

/* A failure that is not OK: RETRY stays retryable, the rest fails for good. */
static void s_not_ok(drv_result_t *res, slurm_outcome_t o, const char *what, const char *why)
{
    drv_result_set(res, o == SLURM_OUT_RETRY ? DRV_RETRY : DRV_FAILED, "slurm %s: %s", what, why);
}

/* Is node `name` in one of the reservations? */
static bool s_in_resv(const slurm_resv_t *rv, size_t nr, const char *name,
                      char (*tmp)[SLURM_NAME_MAX])
{
    for (size_t i = 0; i < nr; i++) {
        size_t k = 0;
        if (slurm_hostlist_expand(rv[i].nodes, tmp, SLURM_NODES_MAX, &k) != CPN_OK)
            return true; /* unreadable: stay clear of it */
        for (size_t j = 0; j < k; j++)
            if (strcmp(tmp[j], name) == 0)
                return true;
    }
    return false;
}

/* The idle, usable nodes of the set in no reservation: the first `units` as "nodes:a,b".
 * The reservations were read by the step before (call->state after "pick\n"). */
static void s_pick(const slurm_set_t *set, const drv_call_t *call, const drv_run_t *run,
                   drv_result_t *res)
{
    slurm_node_t *nodes = NULL;
    slurm_resv_t *rv = NULL;
    size_t n, nr, got = 0;
    char why[SLURM_WHY_MAX];
    char(*tmp)[SLURM_NAME_MAX] = calloc(SLURM_NODES_MAX, SLURM_NAME_MAX);
    size_t cap = 6 + (size_t)call->units * SLURM_NAME_MAX + 1;
    char *state = call->units <= SLURM_NODES_MAX ? malloc(cap) : NULL, *p = state;
    if (!tmp || !state) {
        drv_result_set(res, DRV_FAILED, "%s", "slurm: out of memory or too many units");
        goto out;
    }
    if (slurm_resvs_parse(call->state + 5, strlen(call->state + 5), &rv, &nr, why) != CPN_OK ||
        slurm_nodes_parse((const char *)run->out, run->out_len, &nodes, &n, why) != CPN_OK) {
        drv_result_set(res, DRV_RETRY, "slurm show: %s", why);
        goto out;
    }
    char name[SLURM_NAME_MAX];
    if (slurm_resv_name(call->lease_id, name) == CPN_OK && slurm_resv_find(rv, nr, name)) {
        s_next(res, "read", 4); /* a retried grant: made already */
        goto out;
    }
    p += snprintf(p, cap, "nodes:");
    for (size_t i = 0; i < n && got < call->units; i++) {
        const slurm_node_t *nd = &nodes[i];
        if (!slurm_set_has(set, nd) || !slurm_node_usable(nd) || nd->base != SLURM_BASE_IDLE ||
            (nd->flags & SLURM_F_RESERVED) || s_in_resv(rv, nr, nd->name, tmp))
            continue;
        p += snprintf(p, cap - (size_t)(p - state), "%s%s", got ? "," : "", nd->name);
        got++;
    }
    if (got < call->units)
        drv_result_set(res, DRV_FAILED, "slurm: %zu of %u nodes of package %s free", got,
                       (unsigned)call->units, call->package);
    else
        s_next(res, state, strlen(state));
out:
    free(tmp);
    free(state);
    free(nodes);
    free(rv);
}

/* "read": the reservation as Slurm made it; too small is undone (Slurm may reserve fewer
 * nodes than nodecnt= asked for when fewer are free). */
static void s_read(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                   drv_result_t *res)
{
    char why[SLURM_WHY_MAX], name[SLURM_NAME_MAX], user[SLURM_NAME_MAX], acct[SLURM_NAME_MAX];
    slurm_resv_t *rv = NULL;
    size_t n;
    slurm_outcome_t o = s_outcome(SLURM_OP_SHOW, run, why);
    if (o != SLURM_OUT_OK) {
        s_not_ok(res, o == SLURM_OUT_GONE ? SLURM_OUT_RETRY : o, "show reservation", why);
        return;
    }
    if (slurm_resv_name(call->lease_id, name) != CPN_OK ||
        slurm_resvs_parse((const char *)run->out, run->out_len, &rv, &n, why) != CPN_OK) {
        drv_result_set(res, DRV_RETRY, "slurm show reservation: %s", why);
        return;
    }
    const slurm_resv_t *r = slurm_resv_find(rv, n, name);
    if (!r) {
        drv_result_set(res, DRV_RETRY, "slurm: reservation %s not listed", name);
    } else if (r->node_cnt != call->units) {
        char undo[CPN_REASON_MAX];
        int k = snprintf(undo, sizeof undo, "undo:slurm reserved %u of %u nodes", r->node_cnt,
                         (unsigned)call->units);
        s_next(res, undo, (size_t)k);
    } else {
        char *json = malloc(DRV_ACCESS_MAX + 1);
        s_who(cfg, call->tenant_kid, user, acct);
        if (!json || slurm_access_json(s_opt(cfg, "cluster", "slurm"), r, s_opt(cfg, "login", ""),
                                       user, json, DRV_ACCESS_MAX + 1) != CPN_OK) {
            drv_result_set(res, DRV_FAILED, "slurm: access details of %s over %d bytes", name,
                           DRV_ACCESS_MAX);
            free(json);
        } else {
            res->outcome = DRV_OK;
            res->access = json;
        }
    }
    free(rv);
}

static void s_grant_result(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                           drv_result_t *res)
{
    char why[SLURM_WHY_MAX];
    slurm_set_t set;
    if (s_set_of(cfg, call->package, &set) != CPN_OK) {
        drv_result_set(res, DRV_FAILED, "slurm: no set.%s option", call->package);
        return;
    }
    if (s_state_is(call, "read")) {
        s_read(cfg, call, run, res);
        return;
    }
    if (s_state_is(call, "check:")) {
        slurm_outcome_t o = s_outcome(SLURM_OP_SHOW, run, why);
        if (o == SLURM_OUT_GONE)
            drv_result_set(res, DRV_FAILED, "%s", call->state + 6);
        else if (o == SLURM_OUT_OK)
            s_read(cfg, call, run, res);
        else
            s_not_ok(res, SLURM_OUT_RETRY, "show reservation", why);
        return;
    }
    if (s_state_is(call, "undo:")) {
        slurm_outcome_t o = s_outcome(SLURM_OP_DELETE, run, why);
        if (o == SLURM_OUT_OK || o == SLURM_OUT_GONE)
            drv_result_set(res, DRV_FAILED, "%s", call->state + 5);
        else
            s_not_ok(res, o, "delete", why);
        return;
    }
    if ((!call->state && set.gres[0]) || s_state_is(call, "pick\n")) {
        slurm_outcome_t o = s_outcome(SLURM_OP_SHOW, run, why);
        if (o != SLURM_OUT_OK)
            s_not_ok(res, SLURM_OUT_RETRY, "show", why);
        else if (call->state)
            s_pick(&set, call, run, res);
        else
            s_keep(res, "pick\n", run);
        return;
    }
    slurm_outcome_t o = s_outcome(SLURM_OP_CREATE, run, why);
    if (o == SLURM_OUT_OK || o == SLURM_OUT_EXISTS)
        s_next(res, "read", 4);
    else if (o == SLURM_OUT_RETRY)
        s_not_ok(res, o, "create reservation", why);
    else if (call->state && strstr(why, "busy")) /* the nodes picked were taken: pick again */
        drv_result_set(res, DRV_RETRY, "slurm create reservation: %s", why);
    else {
        char check[CPN_REASON_MAX + 8];
        int k = snprintf(check, sizeof check, "check:slurm create reservation: %s", why);
        s_next(res, check, k < 0 ? 0 : (size_t)k >= sizeof check ? sizeof check - 1 : (size_t)k);
    }
}

static void s_list(const drv_run_t *run, drv_result_t *res)
{
    char why[SLURM_WHY_MAX];
    slurm_resv_t *rv;
    size_t n, k = 0, pl = strlen(SLURM_RESV_PREFIX);
    slurm_outcome_t o = s_outcome(SLURM_OP_SHOW, run, why);
    if (o != SLURM_OUT_OK) {
        drv_result_set(res, DRV_RETRY, "slurm show reservation: %s", why);
        return;
    }
    if (slurm_resvs_parse((const char *)run->out, run->out_len, &rv, &n, why) != CPN_OK) {
        drv_result_set(res, DRV_RETRY, "slurm show reservation: %s", why);
        return;
    }
    res->ids = calloc(n ? n : 1, CPN_NAME_MAX);
    for (size_t i = 0; res->ids && i < n; i++)
        if (strncmp(rv[i].name, SLURM_RESV_PREFIX, pl) == 0 && rv[i].name[pl])
            snprintf(res->ids[k++], CPN_NAME_MAX, "%s", rv[i].name + pl);
    res->n_ids = k;
    if (res->ids)
        res->outcome = DRV_OK;
    else
        drv_result_set(res, DRV_RETRY, "%s", "out of memory");
    free(rv);
}

/* Units of every package named by a set.<id> option, and the leases with lost nodes. */
static void s_count(const drv_config_t *cfg, const slurm_node_t *nodes, size_t nn,
                    const slurm_resv_t *rv, size_t nr, drv_result_t *res)
{
    size_t pl = strlen(SLURM_RESV_PREFIX);
    for (size_t i = 0; i < cfg->n_options && res->n_units < DRV_INVENTORY_MAX; i++) {
        slurm_set_t set;
        char why[CPN_REASON_MAX];
        const char *k = cfg->options[i].key;
        if (strncmp(k, S_SET_PREFIX, S_SET_LEN) != 0 || strlen(k + S_SET_LEN) >= CPN_NAME_MAX ||
            s_parse_set(cfg->options[i].value, &set, why) != CPN_OK)
            continue;
        uint32_t units;
        if (slurm_set_count(&set, nodes, nn, rv, nr, &units) != CPN_OK) {
            drv_result_set(res, DRV_RETRY, "%s", "slurm: a cpn reservation's host list is bad");
            return;
        }
        snprintf(res->units[res->n_units].package, CPN_NAME_MAX, "%s", k + S_SET_LEN);
        res->units[res->n_units++].units = units;
    }
    res->lost = calloc(nr ? nr : 1, CPN_NAME_MAX);
    if (!res->lost) {
        drv_result_set(res, DRV_RETRY, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < nr; i++) {
        uint32_t lost = 0;
        if (strncmp(rv[i].name, SLURM_RESV_PREFIX, pl) != 0 || !rv[i].name[pl])
            continue;
        if (slurm_resv_lost(&rv[i], nodes, nn, &lost) != CPN_OK || lost > 0)
            snprintf(res->lost[res->n_lost++], CPN_NAME_MAX, "%s", rv[i].name + pl);
    }
    res->outcome = DRV_OK;
}

static void s_inventory(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                        drv_result_t *res)
{
    char why[SLURM_WHY_MAX];
    slurm_outcome_t o = s_outcome(SLURM_OP_SHOW, run, why);
    if (o != SLURM_OUT_OK) {
        drv_result_set(res, DRV_RETRY, "slurm show: %s", why);
        return;
    }
    if (!s_state_is(call, "resv\n")) { /* nodes read: keep them for the next step */
        s_keep(res, "resv\n", run);
        return;
    }
    slurm_node_t *nodes = NULL;
    slurm_resv_t *rv = NULL;
    size_t nn, nr;
    if (slurm_nodes_parse(call->state + 5, strlen(call->state + 5), &nodes, &nn, why) != CPN_OK ||
        slurm_resvs_parse((const char *)run->out, run->out_len, &rv, &nr, why) != CPN_OK)
        drv_result_set(res, DRV_RETRY, "slurm: %s", why);
    else
        s_count(cfg, nodes, nn, rv, nr, res);
    free(nodes);
    free(rv);
}

static void s_result(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                     drv_result_t *res)
{
    char why[SLURM_WHY_MAX];
    slurm_outcome_t o;
    switch (call->verb) {
    case DRV_GRANT:
        s_grant_result(cfg, call, run, res);
        break;
    case DRV_RENEW:
        o = s_outcome(SLURM_OP_UPDATE, run, why);
        if (o == SLURM_OUT_OK)
            res->outcome = DRV_OK;
        else
            s_not_ok(res, o, "update reservation", o == SLURM_OUT_GONE ? "reservation gone" : why);
        break;
    case DRV_RELEASE:
        if (!s_state_is(call, "delete")) {
            o = s_outcome(SLURM_OP_CANCEL, run, why);
            if (o == SLURM_OUT_RETRY)
                s_not_ok(res, o, "scancel", why);
            else
                s_next(res, "delete", 6); /* a failed scancel: the delete says whether it matters */
            break;
        }
        o = s_outcome(SLURM_OP_DELETE, run, why);
        if (o == SLURM_OUT_OK || o == SLURM_OUT_GONE)
            res->outcome = DRV_OK;
        else
            s_not_ok(res, o, "delete reservation", why);
        break;
    case DRV_STATUS:
        o = s_outcome(SLURM_OP_SHOW, run, why);
        if (o == SLURM_OUT_OK || o == SLURM_OUT_GONE) {
            res->outcome = DRV_OK;
            res->present = o == SLURM_OUT_OK;
        } else {
            s_not_ok(res, SLURM_OUT_RETRY, "show reservation", why);
        }
        break;
    case DRV_LIST:
        s_list(run, res);
        break;
    case DRV_INVENTORY:
        s_inventory(cfg, call, run, res);
        break;
    default:
        drv_result_set(res, DRV_FAILED, "%s", "slurm: unknown verb");
    }
}

const drv_ops_t driver_slurm_ops = {
    .type = "slurm",
    .check = s_check,
    .command = s_command,
    .result = s_result,
};
