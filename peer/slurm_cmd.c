/* slurm_cmd.c - argv vectors for scontrol/scancel and the meaning of what they print (pure). */
#include "slurm_cmd.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool s_plain(const char *s, const char *extra)
{
    if (!s || !*s || strlen(s) >= SLURM_TEXT_MAX)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || (extra && strchr(extra, c));
        if (!ok)
            return false;
    }
    return true;
}

static void s_reset(slurm_cmd_t *cmd)
{
    cmd->argc = 0;
    cmd->used = 0;
    cmd->argv[0] = NULL;
}

static int s_push(slurm_cmd_t *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_push(slurm_cmd_t *cmd, const char *fmt, ...)
{
    if (cmd->argc >= SLURM_ARGV_MAX)
        return CPN_E_TOO_BIG;
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof cmd->buf - cmd->used;
    int n = vsnprintf(cmd->buf + cmd->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return CPN_E_TOO_BIG;
    cmd->argv[cmd->argc++] = cmd->buf + cmd->used;
    cmd->argv[cmd->argc] = NULL;
    cmd->used += (size_t)n + 1;
    return CPN_OK;
}

int slurm_resv_name(const char *lease_id, char out[SLURM_NAME_MAX])
{
    if (!s_plain(lease_id, NULL))
        return CPN_E_INVAL;
    int n = snprintf(out, SLURM_NAME_MAX, "%s%s", SLURM_RESV_PREFIX, lease_id);
    return n < 0 || n >= SLURM_NAME_MAX ? CPN_E_INVAL : CPN_OK;
}

/* env TZ=UTC0 [SLURM_CONF=...] PROGRAM, and the reservation's name. */
static int s_start(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *prog, const char *lease_id,
                   char name[SLURM_NAME_MAX])
{
    int r;
    s_reset(cmd);
    if (!s_plain(prog, "/+") || (p->conf[0] && !s_plain(p->conf, "/+")) ||
        (lease_id && slurm_resv_name(lease_id, name) != CPN_OK))
        return CPN_E_INVAL;
    if ((r = s_push(cmd, "env")) != CPN_OK || (r = s_push(cmd, "TZ=UTC0")) != CPN_OK ||
        (p->conf[0] && (r = s_push(cmd, "SLURM_CONF=%s", p->conf)) != CPN_OK))
        return r;
    return s_push(cmd, "%s", prog);
}

/* endtime=YYYY-MM-DDTHH:MM:SS (UTC). */
static int s_push_end(slurm_cmd_t *cmd, uint64_t end_s)
{
    struct tm tm;
    time_t t = (time_t)end_s;
    if (end_s > (uint64_t)253402300799u || !gmtime_r(&t, &tm)) /* year 9999 */
        return CPN_E_INVAL;
    return s_push(cmd, "endtime=%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t s_days(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int slurm_time_parse(const char *text, uint64_t *out)
{
    unsigned y, mo, d, h, mi, s;
    char tail;
    if (strlen(text) != 19 ||
        sscanf(text, "%4u-%2u-%2uT%2u:%2u:%2u%c", &y, &mo, &d, &h, &mi, &s, &tail) != 6)
        return CPN_E_INVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return CPN_E_INVAL;
    *out = (uint64_t)s_days(y, mo, d) * 86400u + h * 3600u + mi * 60u + s;
    return CPN_OK;
}

int slurm_cmd_create(slurm_cmd_t *cmd, const slurm_progs_t *p, const slurm_grant_t *g)
{
    char name[SLURM_NAME_MAX];
    int r;
    bool user = g->user && g->user[0], account = g->account && g->account[0];
    if ((r = s_start(cmd, p, p->scontrol, g->lease_id, name)) != CPN_OK)
        return r;
    if (user == account || (user && !s_plain(g->user, NULL)) ||
        (account && !s_plain(g->account, NULL)) || (g->nodes && !s_plain(g->nodes, "[],")) ||
        (!g->nodes && g->units == 0))
        return CPN_E_INVAL;
    if ((r = s_push(cmd, "create")) != CPN_OK || (r = s_push(cmd, "reservation")) != CPN_OK ||
        (r = s_push(cmd, "reservationname=%s", name)) != CPN_OK ||
        (r = s_push(cmd, "starttime=now")) != CPN_OK || (r = s_push_end(cmd, g->end_s)) != CPN_OK)
        return r;
    if (g->nodes)
        r = s_push(cmd, "nodes=%s", g->nodes);
    else
        r = s_push(cmd, "nodecnt=%u", (unsigned)g->units);
    if (r == CPN_OK && !g->nodes && g->set && g->set->partition[0])
        r = s_plain(g->set->partition, NULL) ? s_push(cmd, "partition=%s", g->set->partition)
                                             : CPN_E_INVAL;
    if (r == CPN_OK && !g->nodes && g->set && g->set->feature[0])
        r = s_plain(g->set->feature, NULL) ? s_push(cmd, "features=%s", g->set->feature)
                                           : CPN_E_INVAL;
    if (r == CPN_OK)
        r = user ? s_push(cmd, "users=%s", g->user) : s_push(cmd, "accounts=%s", g->account);
    return r;
}

int slurm_cmd_update_end(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id,
                         uint64_t end_s)
{
    char name[SLURM_NAME_MAX];
    int r;
    if ((r = s_start(cmd, p, p->scontrol, lease_id, name)) != CPN_OK ||
        (r = s_push(cmd, "update")) != CPN_OK ||
        (r = s_push(cmd, "reservationname=%s", name)) != CPN_OK)
        return r;
    return s_push_end(cmd, end_s);
}

int slurm_cmd_cancel_jobs(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id)
{
    char name[SLURM_NAME_MAX];
    int r;
    if ((r = s_start(cmd, p, p->scancel, lease_id, name)) != CPN_OK)
        return r;
    return s_push(cmd, "--reservation=%s", name);
}

int slurm_cmd_delete(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id)
{
    char name[SLURM_NAME_MAX];
    int r;
    if ((r = s_start(cmd, p, p->scontrol, lease_id, name)) != CPN_OK ||
        (r = s_push(cmd, "delete")) != CPN_OK)
        return r;
    return s_push(cmd, "reservationname=%s", name);
}

int slurm_cmd_show_resv(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id)
{
    char name[SLURM_NAME_MAX];
    int r;
    if ((r = s_start(cmd, p, p->scontrol, lease_id, name)) != CPN_OK ||
        (r = s_push(cmd, "show")) != CPN_OK || (r = s_push(cmd, "reservation")) != CPN_OK ||
        (r = s_push(cmd, "-o")) != CPN_OK)
        return r;
    return lease_id ? s_push(cmd, "%s", name) : CPN_OK;
}

int slurm_cmd_show_nodes(slurm_cmd_t *cmd, const slurm_progs_t *p)
{
    int r;
    if ((r = s_start(cmd, p, p->scontrol, NULL, NULL)) != CPN_OK ||
        (r = s_push(cmd, "show")) != CPN_OK || (r = s_push(cmd, "node")) != CPN_OK)
        return r;
    return s_push(cmd, "-o");
}

/* ---- outcomes ---- */

static bool s_has(const char *text, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; nl <= len && i <= len - nl; i++)
        if (memcmp(text + i, needle, nl) == 0)
            return true;
    return false;
}

/* Messages of a controller that could not be asked, or was too busy to answer: try again.
 * ("Unexpected message received" is what 22.05's create prints when it cannot connect.) */
static const char *const s_transient[] = {
    "Unable to contact slurm controller",
    "Unexpected message received",
    "Socket timed out",
    "Zero Bytes were transmitted",
    "backup controller",
    "Resource temporarily unavailable",
    "Connection refused",
    "Communication connection failure",
    "Requested reservation is in use",
};

static void s_first_line(const char *t, size_t len, char why[SLURM_WHY_MAX])
{
    const char *nl = memchr(t, '\n', len);
    size_t l = nl ? (size_t)(nl - t) : len;
    if (l >= SLURM_WHY_MAX)
        l = SLURM_WHY_MAX - 1;
    for (size_t i = 0; i < l; i++) /* a reason travels in a NACK: printable bytes only */
        why[i] = t[i] >= 0x20 && t[i] < 0x7f ? t[i] : '?';
    why[l] = '\0';
}

slurm_outcome_t slurm_outcome(slurm_op_t op, int status, const char *out, size_t outlen,
                              const char *err, size_t errlen, char why[SLURM_WHY_MAX])
{
    const char *t = errlen ? err : out;
    size_t tl = errlen ? errlen : outlen;
    s_first_line(t ? t : "", t ? tl : 0, why);
    if (status == 0)
        return SLURM_OUT_OK;
    if (status < 0) {
        snprintf(why, SLURM_WHY_MAX, "%s", "the command was killed or could not run");
        return SLURM_OUT_RETRY;
    }
    bool invalid = s_has(err, errlen, "Requested reservation is invalid") ||
                   (s_has(out, outlen, "Reservation ") && s_has(out, outlen, " not found"));
    if (op == SLURM_OP_CREATE && s_has(err, errlen, "Duplicate reservation name"))
        return SLURM_OUT_EXISTS;
    if (op != SLURM_OP_CREATE && op != SLURM_OP_CANCEL && invalid)
        return SLURM_OUT_GONE;
    for (size_t i = 0; i < sizeof s_transient / sizeof s_transient[0]; i++)
        if (s_has(err, errlen, s_transient[i]))
            return SLURM_OUT_RETRY;
    if (!why[0])
        snprintf(why, SLURM_WHY_MAX, "exit status %d and no message", status);
    return SLURM_OUT_FAIL;
}

/* ---- access details ---- */

typedef struct {
    char *out;
    size_t cap, n;
    bool full;
} s_json_t;

static void s_put(s_json_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_put(s_json_t *j, const char *fmt, ...)
{
    if (j->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->out + j->n, j->cap - j->n, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= j->cap - j->n)
        j->full = true;
    else
        j->n += (size_t)n;
}

/* A JSON string of bytes that are plain names or a login endpoint: escape what JSON needs. */
static void s_str(s_json_t *j, const char *s)
{
    s_put(j, "\"");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            s_put(j, "\\%c", c);
        else if (c < 0x20)
            s_put(j, "\\u%04x", c);
        else
            s_put(j, "%c", c);
    }
    s_put(j, "\"");
}

int slurm_access_json(const char *cluster, const slurm_resv_t *resv, const char *login,
                      const char *user, char *out, size_t cap)
{
    char(*names)[SLURM_NAME_MAX] = calloc(SLURM_NODES_MAX, SLURM_NAME_MAX);
    size_t n = 0;
    if (!names)
        return CPN_E_NOMEM;
    int r = slurm_hostlist_expand(resv->nodes, names, SLURM_NODES_MAX, &n);
    s_json_t j = {.out = out, .cap = cap};
    if (r != CPN_OK || cap == 0)
        goto out;
    out[0] = '\0';
    s_put(&j, "{\"kind\":\"slurm\",\"cluster\":");
    s_str(&j, cluster);
    s_put(&j, ",\"reservation\":");
    s_str(&j, resv->name);
    if (login && login[0]) {
        s_put(&j, ",\"login\":");
        s_str(&j, login);
    }
    if (user && user[0]) {
        s_put(&j, ",\"user\":");
        s_str(&j, user);
    }
    s_put(&j, ",\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        s_put(&j, i ? "," : "");
        s_str(&j, names[i]);
    }
    char submit[SLURM_NAME_MAX + 32];
    snprintf(submit, sizeof submit, "sbatch --reservation=%s", resv->name);
    s_put(&j, "],\"submit\":");
    s_str(&j, submit);
    s_put(&j, "}");
    r = j.full ? CPN_E_TOO_BIG : CPN_OK;
out:
    free(names);
    return r;
}
