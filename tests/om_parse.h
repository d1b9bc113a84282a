/* om_parse.h - a strict reader of OpenMetrics text for the tests: what the daemons serve is
 * parsed back and checked against the format's rules, then its samples looked up.
 *
 * Checked: every line ends in \n and the text ends with "# EOF\n" and nothing after; # TYPE
 * comes before the family's samples, once, with a known type; # UNIT names the family's last
 * word; a sample's name is its family's name plus a suffix its type allows (counter _total,
 * histogram _bucket/_count/_sum, info _info, gauge none); label names are [a-zA-Z_][a-zA-Z0-9_]*
 * and values quoted with \\, \" and \n escapes only; a value is a number (or +Inf/NaN); a
 * histogram's buckets rise, end with le="+Inf" and that bucket equals _count.
 */
#ifndef CPN_TESTS_OM_PARSE_H
#define CPN_TESTS_OM_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define OM_SAMPLES_MAX 4096
#define OM_LABELS_MAX 8

typedef struct {
    char name[128];
    size_t n_labels;
    char label[OM_LABELS_MAX][2][256]; /* name, unescaped value */
    double value;
} om_sample_t;

typedef struct {
    size_t n;
    om_sample_t s[OM_SAMPLES_MAX];
    size_t n_families;
    char error[256]; /* why parsing failed */
} om_doc_t;

/* Parse `text` (len bytes) into doc (caller-allocated: it is big). false with doc->error set
 * at the first rule broken. */
bool om_parse(const char *text, size_t len, om_doc_t *doc);

/* The value of the sample `name` whose labels include label=value (label NULL: any sample of
 * that name, the first); false if there is none. */
bool om_find(const om_doc_t *doc, const char *name, const char *label, const char *value,
             double *out);

#endif
