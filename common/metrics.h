/* metrics.h - latency histograms and the OpenMetrics text format (pure: no I/O, no clock).
 *
 * A histogram counts observations in microseconds into fixed buckets (CPN_HIST_LATENCY_US, from
 * 100 us to 10 s): an observation is a short scan and two additions, cheap enough for the hot
 * path. Its owner (one thread) observes; a copy of it is rendered elsewhere.
 *
 * The writer renders metric families as OpenMetrics 1.0 text (the format Prometheus scrapes,
 * content type CPN_OM_CONTENT_TYPE): `# TYPE`, `# UNIT`, `# HELP`, samples whose label values
 * are escaped, histograms with cumulative `_bucket{le=...}`, `_count` and `_sum`, and the
 * closing `# EOF`. Names follow Prometheus's conventions, which the callers keep: a `cpn_`
 * prefix, counters named without `_total` in TYPE and with it on the sample, base units
 * (seconds, bytes) in the name's suffix. The text grows in a malloc'd buffer of at most
 * CPN_OM_MAX bytes; past that the writer stops and cpn_om_finish says CPN_E_TOO_BIG.
 */
#ifndef CPN_METRICS_H
#define CPN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CPN_OM_CONTENT_TYPE "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define CPN_OM_MAX (8u * 1024 * 1024) /* bytes of one exposition, at most */
#define CPN_HIST_BUCKETS 16           /* finite buckets; +Inf is added */

/* The bucket bounds, in microseconds, ascending (0.0001 s .. 10 s). */
extern const uint64_t CPN_HIST_LATENCY_US[CPN_HIST_BUCKETS];

typedef struct {
    uint64_t bucket[CPN_HIST_BUCKETS + 1]; /* per bucket, not cumulative; last: above 10 s */
    uint64_t count;
    uint64_t sum_us;
} cpn_hist_t;

/* Count one observation of `us` microseconds. */
void cpn_hist_observe(cpn_hist_t *h, uint64_t us);

/* One label: name (a valid label name) and value (any UTF-8, escaped when written). */
typedef struct {
    const char *name;
    const char *value;
} cpn_om_label_t;

typedef struct {
    char *buf; /* malloc'd, NUL-terminated; cpn_om_finish hands it over */
    size_t len, cap;
    bool full; /* CPN_OM_MAX reached or out of memory: nothing more is written */
} cpn_om_t;

void cpn_om_init(cpn_om_t *om);
/* A family's header: type is "counter", "gauge", "histogram" or "info"; unit ("" or NULL for
 * none) must be the name's last word (OpenMetrics); help is escaped. */
void cpn_om_family(cpn_om_t *om, const char *name, const char *type, const char *unit,
                   const char *help);
/* A sample `metric{labels} value` (metric is the full sample name: counters end in _total). */
void cpn_om_u64(cpn_om_t *om, const char *metric, const cpn_om_label_t *labels, size_t n,
                uint64_t value);
/* A sample whose value is microseconds written as seconds. */
void cpn_om_us(cpn_om_t *om, const char *metric, const cpn_om_label_t *labels, size_t n,
               uint64_t us);
/* A histogram family's samples (after its cpn_om_family): name_bucket{le} cumulative,
 * name_count, name_sum (seconds). */
void cpn_om_hist(cpn_om_t *om, const char *name, const cpn_om_label_t *labels, size_t n,
                 const cpn_hist_t *h);
/* Write `# EOF`; on CPN_OK *text (caller frees) and *len are the exposition, else
 * CPN_E_TOO_BIG (or CPN_E_NOMEM) and nothing is handed over. The writer is reset. */
int cpn_om_finish(cpn_om_t *om, char **text, size_t *len) CPN_WUR;
void cpn_om_clear(cpn_om_t *om);

/* Microseconds as decimal seconds ("0.0001", "2.5", "10.0") into out (>= 32 bytes). */
void cpn_fmt_seconds(uint64_t us, char *out, size_t cap);

#endif
