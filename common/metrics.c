/* metrics.c - histograms and the OpenMetrics text writer. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t CPN_HIST_LATENCY_US[CPN_HIST_BUCKETS] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

#define S_OM_CHUNK 4096 /* the buffer grows by at least this much */

void cpn_hist_observe(cpn_hist_t *h, uint64_t us)
{
    size_t i = 0;
    while (i < CPN_HIST_BUCKETS && us > CPN_HIST_LATENCY_US[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum_us += us;
}

void cpn_fmt_seconds(uint64_t us, char *out, size_t cap)
{
    char frac[8];
    snprintf(frac, sizeof frac, "%06" PRIu64, us % 1000000u);
    size_t n = strlen(frac);
    while (n > 1 && frac[n - 1] == '0') /* keep one digit: "1.0", not "1." */
        frac[--n] = '\0';
    snprintf(out, cap, "%" PRIu64 ".%s", us / 1000000u, frac);
}

void cpn_om_init(cpn_om_t *om)
{
    memset(om, 0, sizeof *om);
}

void cpn_om_clear(cpn_om_t *om)
{
    free(om->buf);
    cpn_om_init(om);
}

/* Room for `need` more bytes (and the NUL), or full. */
static bool s_room(cpn_om_t *om, size_t need)
{
    if (om->full)
        return false;
    if (om->len + need + 1 <= om->cap)
        return true;
    size_t cap = om->cap + (need + 1 > S_OM_CHUNK ? need + 1 : S_OM_CHUNK);
    if (cap < 2 * om->cap)
        cap = 2 * om->cap;
    if (cap > CPN_OM_MAX)
        cap = CPN_OM_MAX;
    char *b = om->len + need + 1 <= cap ? realloc(om->buf, cap) : NULL;
    if (!b) {
        om->full = true;
        return false;
    }
    om->buf = b;
    om->cap = cap;
    return true;
}

static void s_put(cpn_om_t *om, const char *s, size_t n)
{
    if (!s_room(om, n))
        return;
    memcpy(om->buf + om->len, s, n);
    om->len += n;
    om->buf[om->len] = '\0';
}

static void s_puts(cpn_om_t *om, const char *s)
{
    s_put(om, s, strlen(s));
}

/* Escape backslash, newline and (in label values) the double quote, as OpenMetrics says. */
static void s_escaped(cpn_om_t *om, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            s_put(om, "\\\\", 2);
        else if (*s == '\n')
            s_put(om, "\\n", 2);
        else if (*s == '"' && quote)
            s_put(om, "\\\"", 2);
        else
            s_put(om, s, 1);
    }
}

void cpn_om_family(cpn_om_t *om, const char *name, const char *type, const char *unit,
                   const char *help)
{
    s_puts(om, "# TYPE ");
    s_puts(om, name);
    s_puts(om, " ");
    s_puts(om, type);
    s_puts(om, "\n");
    if (unit && unit[0]) {
        s_puts(om, "# UNIT ");
        s_puts(om, name);
        s_puts(om, " ");
        s_puts(om, unit);
        s_puts(om, "\n");
    }
    s_puts(om, "# HELP ");
    s_puts(om, name);
    s_puts(om, " ");
    s_escaped(om, help, false);
    s_puts(om, "\n");
}

/* `metric{a="x",b="y"` plus `extra` (a label already written as k="v"), then `} `. */
static void s_head(cpn_om_t *om, const char *metric, const cpn_om_label_t *labels, size_t n,
                   const char *extra)
{
    s_puts(om, metric);
    if (n || extra) {
        s_puts(om, "{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                s_puts(om, ",");
            s_puts(om, labels[i].name);
            s_puts(om, "=\"");
            s_escaped(om, labels[i].value ? labels[i].value : "", true);
            s_puts(om, "\"");
        }
        if (extra) {
            if (n)
                s_puts(om, ",");
            s_puts(om, extra);
        }
        s_puts(om, "}");
    }
    s_puts(om, " ");
}

void cpn_om_u64(cpn_om_t *om, const char *metric, const cpn_om_label_t *labels, size_t n,
                uint64_t value)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64 "\n", value);
    s_head(om, metric, labels, n, NULL);
    s_puts(om, v);
}

void cpn_om_us(cpn_om_t *om, const char *metric, const cpn_om_label_t *labels, size_t n,
               uint64_t us)
{
    char v[32];
    cpn_fmt_seconds(us, v, sizeof v);
    s_head(om, metric, labels, n, NULL);
    s_puts(om, v);
    s_puts(om, "\n");
}

void cpn_om_hist(cpn_om_t *om, const char *name, const cpn_om_label_t *labels, size_t n,
                 const cpn_hist_t *h)
{
    char metric[128], le[48], secs[32];
    uint64_t cum = 0;
    snprintf(metric, sizeof metric, "%s_bucket", name);
    for (size_t i = 0; i <= CPN_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        if (i < CPN_HIST_BUCKETS) {
            cpn_fmt_seconds(CPN_HIST_LATENCY_US[i], secs, sizeof secs);
            snprintf(le, sizeof le, "le=\"%s\"", secs);
        } else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        char v[24];
        snprintf(v, sizeof v, "%" PRIu64 "\n", cum);
        s_head(om, metric, labels, n, le);
        s_puts(om, v);
    }
    snprintf(metric, sizeof metric, "%s_count", name);
    cpn_om_u64(om, metric, labels, n, h->count);
    snprintf(metric, sizeof metric, "%s_sum", name);
    cpn_om_us(om, metric, labels, n, h->sum_us);
}

int cpn_om_finish(cpn_om_t *om, char **text, size_t *len)
{
    s_puts(om, "# EOF\n");
    if (om->full || !om->buf) {
        int r = om->cap >= CPN_OM_MAX ? CPN_E_TOO_BIG : CPN_E_NOMEM;
        cpn_om_clear(om);
        return r;
    }
    *text = om->buf;
    *len = om->len;
    cpn_om_init(om);
    return CPN_OK;
}
