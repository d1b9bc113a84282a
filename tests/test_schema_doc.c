/* test_schema_doc.c - docs/PROTOCOL.md's key table of every message type matches the schema.
 *
 * For each type of msg_schema.def (REQUEST: resource.c's table, cpn_request_fields) the first
 * `| key | type | req | meaning |` table under the type's `### NAME` heading must list the same
 * keys in the same (encoding) order, each with its type (`str ≤ N` with N = the longest
 * string the field takes, `uint32`, `key`, `frame`, ..., a bound in brackets may follow) and
 * `yes` exactly when the key is required. So the document cannot drift from the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "msg.h"
#include "resource.h"

#define S_CELL_MAX 128
#define S_KEYS_MAX 64 /* keys in one type's table; REQUEST has the most (23) */

static bool s_quiet; /* test_drift_is_found: count differences, do not print them */
#define S_SAY(...) (s_quiet ? (void)0 : print_error(__VA_ARGS__))

/* One schema row: a field, or (key NULL) the start of a type's rows. */
typedef struct {
    cpn_msg_type_t type;
    const char *key;
    mp_kind_t kind;
    const char *doc; /* the PROTOCOL.md type (msg_schema.def); NULL: from kind and size */
    size_t size;
    bool req;
} s_row_t;

static const s_row_t s_schema[] = {
#define CPN_TYPE(e, wire, stem, roles) {CPN_MSG_##e, NULL, MPF_U8, NULL, 0, false},
#define CPN_FIELD(stem, ctype, name, dim, kind, doc, req)                                          \
    {CPN_MSG_NONE, #name, kind, doc, sizeof(((cpn_##stem##_t *)0)->name), req},
#include "msg_schema.def"
};

/* The rows of one type, REQUEST's from resource.c. */
static size_t s_rows_of(cpn_msg_type_t type, s_row_t *out, size_t max)
{
    size_t n = 0;
    if (type == CPN_MSG_REQUEST) {
        size_t nf;
        const mp_field_t *f = cpn_request_fields(&nf);
        for (size_t i = 0; i < nf && n < max; i++)
            out[n++] = (s_row_t){type, f[i].key, f[i].kind, NULL, f[i].size, f[i].required};
        return n;
    }
    if (type == CPN_MSG_SUMMARY) /* an AD's body, the same keys */
        type = CPN_MSG_AD;
    size_t i = 0;
    while (i < sizeof s_schema / sizeof s_schema[0] &&
           !(s_schema[i].key == NULL && s_schema[i].type == type))
        i++;
    for (i++; i < sizeof s_schema / sizeof s_schema[0] && s_schema[i].key && n < max; i++)
        out[n++] = s_schema[i];
    return n;
}

/* Whether the document's type cell fits the row. */
static bool s_type_ok(const s_row_t *row, const char *cell)
{
    char want[S_CELL_MAX];
    if (row->kind == MPF_STR) {
        snprintf(want, sizeof want, "str ≤ %zu", row->size - 1);
        return strcmp(cell, want) == 0;
    }
    if (row->kind == MPF_OBJ && !row->doc) /* REQUEST's lists and hints */
        return strncmp(cell, "array of ", 9) == 0 || strncmp(cell, "map of ", 7) == 0;
    if (row->doc) { /* a bound may follow in brackets: "bin (50..4 144)" */
        size_t n = strlen(row->doc);
        return strncmp(cell, row->doc, n) == 0 &&
               (cell[n] == '\0' || strncmp(cell + n, " (", 2) == 0);
    }
    switch (row->kind) {
    case MPF_U32: return strcmp(cell, "uint32") == 0;
    case MPF_U64: return strcmp(cell, "uint64") == 0;
    case MPF_I32: return strcmp(cell, "int32") == 0;
    case MPF_BOOL: return strcmp(cell, "bool") == 0;
    case MPF_KEY: return strcmp(cell, "key") == 0;
    default: return false;
    }
}

/* Copy table cell `i` (0-based) of the row line `line` into cell, trimmed, backticks off. */
static bool s_cell(const char *line, int i, char *cell)
{
    const char *p = line;
    for (int k = 0; k <= i; k++)
        if (!(p = strchr(p, '|')))
            return false;
        else
            p++;
    const char *end = strchr(p, '|');
    if (!end)
        return false;
    while (p < end && (*p == ' ' || *p == '`'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '`'))
        end--;
    if ((size_t)(end - p) >= S_CELL_MAX)
        return false;
    memcpy(cell, p, (size_t)(end - p));
    cell[end - p] = '\0';
    return true;
}

/* Check one type's table in `doc`; print each difference; return how many. */
static int s_check_type(const char *doc, cpn_msg_type_t type)
{
    const char *name = cpn_msg_name(type);
    char head[64], key[S_CELL_MAX], ty[S_CELL_MAX], req[S_CELL_MAX];
    s_row_t rows[S_KEYS_MAX];
    size_t n = s_rows_of(type, rows, S_KEYS_MAX), i = 0;
    int bad = 0;
    snprintf(head, sizeof head, "\n### %s\n", name);
    const char *p = strstr(doc, head), *next;
    if (!p) {
        S_SAY("%s: no section `### %s`\n", name, name);
        return 1;
    }
    p += strlen(head);
    next = strstr(p, "\n#");
    const char *t = strstr(p, "| key | type | req | meaning |\n");
    if (!t || (next && t > next)) {
        S_SAY("%s: no key table under its heading\n", name);
        return 1;
    }
    t = strchr(t, '\n') + 1; /* the separator row */
    for (t = strchr(t, '\n') + 1; *t == '|'; t = strchr(t, '\n') + 1, i++) {
        if (!s_cell(t, 0, key) || !s_cell(t, 1, ty) || !s_cell(t, 2, req)) {
            S_SAY("%s: unreadable row: %.60s\n", name, t);
            return bad + 1;
        }
        if (i >= n) {
            S_SAY("%s: the document has `%s`, the schema does not\n", name, key);
            bad++;
            continue;
        }
        if (strcmp(key, rows[i].key) != 0) {
            S_SAY("%s: row %zu is `%s`, the schema's is `%s`\n", name, i + 1, key,
                        rows[i].key);
            bad++;
            continue;
        }
        if (!s_type_ok(&rows[i], ty)) {
            S_SAY("%s.%s: type `%s` does not match the schema's\n", name, key, ty);
            bad++;
        }
        if (strcmp(req, rows[i].req ? "yes" : "no") != 0) {
            S_SAY("%s.%s: req `%s`, the schema says %s\n", name, key, req,
                        rows[i].req ? "yes" : "no");
            bad++;
        }
    }
    for (; i < n; i++, bad++)
        S_SAY("%s: the schema has `%s`, the document does not\n", name, rows[i].key);
    return bad;
}

static int s_check_all(const char *doc)
{
    int bad = 0;
    for (int t = CPN_MSG_NONE + 1; t < CPN_MSG__COUNT; t++)
        bad += s_check_type(doc, (cpn_msg_type_t)t);
    return bad;
}

static int s_setup(void **state)
{
    *state = h_read_src("docs/PROTOCOL.md");
    return *state ? 0 : -1;
}

static int s_teardown(void **state)
{
    free(*state);
    return 0;
}

static void test_every_table_matches_the_schema(void **state)
{
    assert_int_equal(s_check_all(*state), 0);
}

/* Replace the first `from` in doc by `to` (a malloc'd copy). */
static char *s_edit(const char *doc, const char *from, const char *to)
{
    const char *at = strstr(doc, from);
    assert_non_null(at);
    size_t n = strlen(doc) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    assert_non_null(out);
    size_t pre = (size_t)(at - doc);
    memcpy(out, doc, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

/* The checker itself finds each kind of drift. */
static void test_drift_is_found(void **state)
{
    static const char *const edits[][2] = {
        {"| `deadline` | uint64 | yes |", "| `deadline` | uint64 | no |"},      /* req */
        {"| `extend_s` | uint64 | yes |", "| `extend_s` | uint32 | yes |"},    /* type */
        {"| `request_id` | str ≤ 63 | yes |", "| `request_id` | str ≤ 64 | yes |"},
        {"| `lease_id` | str ≤ 63 | yes | |\n| `peer` | key | yes | |\n",    /* RELEASE: a key */
         "| `lease_id` | str ≤ 63 | yes | |\n"},
        {"| `what` | str ≤ 31 | yes | as in the QUERY |\n",                   /* one more key */
         "| `what` | str ≤ 31 | yes | as in the QUERY |\n| `more` | bool | no | |\n"},
        {"| `duration` | uint64 | yes |", "| `duration_s` | uint64 | yes |"}, /* REQUEST key */
    };
    s_quiet = true;
    int base = s_check_all(*state);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *doc = s_edit(*state, edits[i][0], edits[i][1]);
        int bad = s_check_all(doc);
        free(doc);
        if (bad <= base)
            fail_msg("edit %zu (%s) went unnoticed", i, edits[i][1]);
    }
    s_quiet = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_table_matches_the_schema),
        cmocka_unit_test(test_drift_is_found),
    };
    return cmocka_run_group_tests_name("schema_doc", tests, s_setup, s_teardown);
}
