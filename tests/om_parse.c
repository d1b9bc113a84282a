/* om_parse.c - the strict OpenMetrics reader of the tests (om_parse.h). */
#include "om_parse.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[128], type[16], unit[32];
    bool seen_sample;
    /* histogram state */
    double last_bucket, last_le;
    bool have_bucket, inf_seen;
    double inf_value;
} s_family_t;

static bool s_fail(om_doc_t *d, size_t line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(d->error, sizeof d->error, "line %zu: ", line);
    va_start(ap, fmt);
    vsnprintf(d->error + n, sizeof d->error - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool s_name_ok(const char *s, bool label)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                     (!label && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

static bool s_ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The suffix a sample name may add to a family of this type. */
static bool s_suffix_ok(const char *type, const char *suffix)
{
    if (strcmp(type, "counter") == 0)
        return strcmp(suffix, "_total") == 0 || strcmp(suffix, "_created") == 0;
    if (strcmp(type, "histogram") == 0)
        return strcmp(suffix, "_bucket") == 0 || strcmp(suffix, "_count") == 0 ||
               strcmp(suffix, "_sum") == 0 || strcmp(suffix, "_created") == 0;
    if (strcmp(type, "info") == 0)
        return strcmp(suffix, "_info") == 0;
    return strcmp(suffix, "") == 0; /* gauge, unknown */
}

/* Parse `{a="x",b="y"}` at *p into sm; *p ends past the closing brace. */
static bool s_labels(om_doc_t *d, size_t line, const char **p, om_sample_t *sm)
{
    const char *q = *p + 1;
    while (*q != '}') {
        if (sm->n_labels == OM_LABELS_MAX)
            return s_fail(d, line, "too many labels");
        char *ln = sm->label[sm->n_labels][0], *lv = sm->label[sm->n_labels][1];
        size_t n = 0;
        while (*q && *q != '=' && n < 255)
            ln[n++] = *q++;
        ln[n] = '\0';
        if (*q++ != '=' || !s_name_ok(ln, true) || *q++ != '"')
            return s_fail(d, line, "bad label name or missing =\"");
        for (n = 0; *q != '"'; q++) {
            if (!*q || *q == '\n' || n == 255)
                return s_fail(d, line, "unterminated label value");
            if (*q == '\\') {
                q++;
                if (*q != '\\' && *q != '"' && *q != 'n')
                    return s_fail(d, line, "bad escape \\%c", *q);
                lv[n++] = *q == 'n' ? '\n' : *q;
            } else
                lv[n++] = *q;
        }
        lv[n] = '\0';
        for (size_t i = 0; i < sm->n_labels; i++)
            if (strcmp(sm->label[i][0], ln) == 0)
                return s_fail(d, line, "label %s twice", ln);
        sm->n_labels++;
        q++;
        if (*q == ',')
            q++;
        else if (*q != '}')
            return s_fail(d, line, "expected , or }");
    }
    *p = q + 1;
    return true;
}

static bool s_value(const char *s, double *out)
{
    char *end = NULL;
    if (strcmp(s, "+Inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    *out = strtod(s, &end);
    return end != s && *end == '\0';
}

static const char *s_label(const om_sample_t *sm, const char *name)
{
    for (size_t i = 0; i < sm->n_labels; i++)
        if (strcmp(sm->label[i][0], name) == 0)
            return sm->label[i][1];
    return NULL;
}

/* A histogram's sample: buckets rise, +Inf last equals _count. */
static bool s_hist(om_doc_t *d, size_t line, s_family_t *f, const char *suffix,
                   const om_sample_t *sm)
{
    if (strcmp(suffix, "_bucket") == 0) {
        const char *le = s_label(sm, "le");
        double lev;
        if (!le || !s_value(le, &lev))
            return s_fail(d, line, "bucket without a numeric le");
        if (f->have_bucket && lev <= f->last_le && !f->inf_seen)
            return s_fail(d, line, "le not increasing");
        if (f->have_bucket && sm->value < f->last_bucket && !f->inf_seen)
            return s_fail(d, line, "buckets not cumulative");
        f->have_bucket = true;
        f->last_le = lev;
        f->last_bucket = sm->value;
        if (isinf(lev)) {
            f->inf_seen = true;
            f->inf_value = sm->value;
        }
    } else if (strcmp(suffix, "_count") == 0) {
        if (!f->inf_seen || f->inf_value != sm->value)
            return s_fail(d, line, "_count is not the +Inf bucket");
        f->have_bucket = f->inf_seen = false; /* the next labelled histogram starts afresh */
    }
    return true;
}

static bool s_meta(om_doc_t *d, size_t line, char *l, s_family_t **fams, size_t *nf,
                   s_family_t **cur)
{
    char kind[8], name[128], rest[512] = "";
    if (sscanf(l, "# %7s %127s %511[^\n]", kind, name, rest) < 2)
        return s_fail(d, line, "bad comment line");
    if (strcmp(kind, "TYPE") == 0) {
        static const char *types[] = {"counter", "gauge", "histogram", "info", "unknown",
                                      "stateset", "gaugehistogram", "summary"};
        bool ok = false;
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            ok = ok || strcmp(rest, types[i]) == 0;
        if (!ok || !s_name_ok(name, false))
            return s_fail(d, line, "bad TYPE %s %s", name, rest);
        for (size_t i = 0; i < *nf; i++)
            if (strcmp((*fams)[i].name, name) == 0)
                return s_fail(d, line, "family %s declared twice", name);
        s_family_t *nfam = realloc(*fams, (*nf + 1) * sizeof **fams);
        if (!nfam)
            return s_fail(d, line, "out of memory");
        *fams = nfam;
        *cur = &(*fams)[(*nf)++];
        memset(*cur, 0, sizeof **cur);
        snprintf((*cur)->name, sizeof (*cur)->name, "%s", name);
        snprintf((*cur)->type, sizeof (*cur)->type, "%.15s", rest);
        return true;
    }
    if (!*cur || strcmp((*cur)->name, name) != 0 || (*cur)->seen_sample)
        return s_fail(d, line, "%s for %s outside its family's header", kind, name);
    if (strcmp(kind, "UNIT") == 0) {
        char suffix[600];
        snprintf(suffix, sizeof suffix, "_%s", rest);
        if (!s_ends(name, suffix))
            return s_fail(d, line, "UNIT %s is not the last word of %s", rest, name);
        return true;
    }
    if (strcmp(kind, "HELP") == 0)
        return true;
    return s_fail(d, line, "unknown comment %s", kind);
}

static bool s_sample(om_doc_t *d, size_t line, char *l, s_family_t *cur)
{
    if (d->n == OM_SAMPLES_MAX)
        return s_fail(d, line, "too many samples");
    om_sample_t *sm = &d->s[d->n];
    memset(sm, 0, sizeof *sm);
    const char *p = l;
    size_t n = 0;
    while (*p && *p != '{' && *p != ' ' && n < sizeof sm->name - 1)
        sm->name[n++] = *p++;
    if (!cur || strncmp(sm->name, cur->name, strlen(cur->name)) != 0 ||
        !s_suffix_ok(cur->type, sm->name + strlen(cur->name)))
        return s_fail(d, line, "sample %s does not belong to family %s", sm->name,
                      cur ? cur->name : "(none)");
    if (*p == '{' && !s_labels(d, line, &p, sm))
        return false;
    if (*p++ != ' ')
        return s_fail(d, line, "expected one space before the value");
    char val[64];
    if (sscanf(p, "%63s", val) != 1 || !s_value(val, &sm->value) || strchr(p, ' '))
        return s_fail(d, line, "bad value '%s'", p);
    cur->seen_sample = true;
    if (strcmp(cur->type, "histogram") == 0 &&
        !s_hist(d, line, cur, sm->name + strlen(cur->name), sm))
        return false;
    d->n++;
    return true;
}

bool om_parse(const char *text, size_t len, om_doc_t *d)
{
    s_family_t *fams = NULL, *cur = NULL;
    size_t nf = 0, line = 0;
    bool ok = true, eof = false;
    memset(d, 0, sizeof *d);
    if (len == 0 || text[len - 1] != '\n')
        return s_fail(d, 0, "the text does not end with a newline");
    for (size_t at = 0; ok && at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t ll = (size_t)(nl - (text + at));
        char l[1024];
        line++;
        if (eof) {
            ok = s_fail(d, line, "text after # EOF");
            break;
        }
        if (ll >= sizeof l || memchr(text + at, '\0', ll)) {
            ok = s_fail(d, line, "line too long or with a NUL");
            break;
        }
        memcpy(l, text + at, ll);
        l[ll] = '\0';
        at += ll + 1;
        if (strcmp(l, "# EOF") == 0)
            eof = true;
        else if (l[0] == '#')
            ok = s_meta(d, line, l, &fams, &nf, &cur);
        else
            ok = s_sample(d, line, l, cur);
    }
    if (ok && !eof)
        ok = s_fail(d, line, "no # EOF");
    d->n_families = nf;
    free(fams);
    return ok;
}

bool om_find(const om_doc_t *d, const char *name, const char *label, const char *value,
             double *out)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->s[i].name, name) != 0)
            continue;
        const char *v = label ? s_label(&d->s[i], label) : NULL;
        if (!label || (v && strcmp(v, value) == 0)) {
            *out = d->s[i].value;
            return true;
        }
    }
    return false;
}
