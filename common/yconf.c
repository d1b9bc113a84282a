/* yconf.c - YAML configuration: a bounded tree built from libyaml events, and binding of
 * maps to C structs by tables.
 *
 * Why events and not libyaml's document API: the document loader builds the whole tree
 * before we could look at it, and libyaml 0.2.5 has no nesting limit of its own, so a
 * file of 50,000 '[' would be walked entirely (quadratically) before we saw its depth. On
 * the event stream we count depth and nodes as they open and stop at the limit, so such a
 * file costs a few dozen events. The size limit comes first, before libyaml sees a byte.
 *
 * Every error is recorded as one line "name:line:col: path: message"; parsing stops at the
 * first syntax or limit error, binding carries on so one pass reports every error.
 */
#include "yconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "identity.h"
#include "units.h"

#define S_PATH_MAX 256  /* key paths in messages; longer ones are cut */
#define S_MSG_MAX 512   /* one error line */
#define S_KEY_SHOWN 64  /* characters of a key quoted in a message */
#define S_FIELDS_MAX 64 /* entries in one binding table */
#define S_SMALL_MAP 16  /* maps up to this size are checked for duplicates pairwise */

struct yconf {
    char *name;     /* as given: used in every message */
    char *dir;      /* directory of the file ("" for buffers): .pub paths resolve here */
    ynode_t *root;  /* NULL after a failed load */
    size_t n_nodes; /* nodes and keys seen while parsing */
    char *errors[YCONF_MAX_ERRORS];
    size_t n_errors; /* stored */
    size_t n_total;  /* recorded, including those past the cap */
};

/* ---- small helpers ---- */

static char *s_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* vsnprintf that reports truncation instead of hiding it; the output is always terminated. */
static bool s_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool s_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < cap;
}

static void s_child_path(char *buf, size_t cap, const char *path, const char *key)
{
    if (!s_fmt(buf, cap, "%s%s%.*s", path, path[0] ? "." : "", S_KEY_SHOWN, key) && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

static void s_index_path(char *buf, size_t cap, const char *path, size_t i)
{
    if (!s_fmt(buf, cap, "%s[%zu]", path, i) && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

static void s_node_free(ynode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        s_node_free(n->items[i]);
    }
    free(n->value);
    free(n->keys);
    free(n->key_line);
    free(n->key_col);
    free(n->items);
    free(n);
}

/* ---- errors ---- */

static void s_verror(yconf_t *self, int line, int col, const char *path, const char *fmt,
                     va_list ap)
{
    char msg[S_MSG_MAX], pos[32] = "", full[S_MSG_MAX + S_PATH_MAX + 64];
    self->n_total++;
    if (self->n_errors >= YCONF_MAX_ERRORS)
        return;
    if (self->n_errors == YCONF_MAX_ERRORS - 1) {
        s_fmt(full, sizeof full, "%s: too many errors, only the first %d are shown", self->name,
              YCONF_MAX_ERRORS - 1);
    } else {
        vsnprintf(msg, sizeof msg, fmt, ap);
        if (line > 0)
            s_fmt(pos, sizeof pos, ":%d:%d", line, col);
        s_fmt(full, sizeof full, "%s%s: %s%s%s", self->name, pos, path ? path : "",
              path && path[0] ? ": " : "", msg);
    }
    char *copy = s_strndup(full, strlen(full));
    if (copy) /* out of memory loses the text, never the count */
        self->errors[self->n_errors++] = copy;
}

static void s_error_at(yconf_t *self, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void s_error_at(yconf_t *self, int line, int col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_verror(self, line, col, path, fmt, ap);
    va_end(ap);
}

void yconf_error(yconf_t *self, const ynode_t *node, const char *path, const char *fmt, ...)
{
    va_list ap;
    if (!self)
        return;
    va_start(ap, fmt);
    s_verror(self, node ? node->line : 0, node ? node->col : 0, path, fmt, ap);
    va_end(ap);
}

size_t yconf_error_count(const yconf_t *self)
{
    return self ? self->n_errors : 0;
}

const char *yconf_error_at(const yconf_t *self, size_t i)
{
    return self && i < self->n_errors ? self->errors[i] : NULL;
}

void yconf_print_errors(const yconf_t *self, FILE *out)
{
    for (size_t i = 0; self && i < self->n_errors; i++)
        fprintf(out, "%s\n", self->errors[i]);
}

const ynode_t *yconf_root(const yconf_t *self)
{
    return self ? self->root : NULL;
}

const char *yconf_name(const yconf_t *self)
{
    return self ? self->name : NULL;
}

/* ---- lifecycle ---- */

static yconf_t *s_doc_new(const char *name, const char *dir)
{
    yconf_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->name = s_strndup(name, strlen(name));
    self->dir = s_strndup(dir, strlen(dir));
    if (!self->name || !self->dir)
        yconf_destroy(&self);
    return self;
}

void yconf_destroy(yconf_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    yconf_t *self = *self_p;
    s_node_free(self->root);
    for (size_t i = 0; i < self->n_errors; i++)
        free(self->errors[i]);
    free(self->name);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* ---- parsing: libyaml events to a tree ---- */

typedef struct {
    ynode_t *node;
    size_t cap; /* allocated entries of node's arrays */
    char *key;  /* a map's key waiting for its value */
    int key_line, key_col;
} s_frame_t;

typedef struct {
    yconf_t *doc;
    yaml_parser_t parser;
    s_frame_t stack[YCONF_MAX_DEPTH];
    size_t depth;
    int docs;
    bool dup_seen; /* duplicate keys: reported, parsing goes on to find the others */
} s_loader_t;

/* Key path of the node being parsed, for messages while parsing: the open containers, then
 * the key waiting for its value or the index of the next item. */
static void s_stack_path(const s_loader_t *ld, char *buf, size_t cap)
{
    char tmp[S_PATH_MAX];
    buf[0] = '\0';
    for (size_t i = 1; i <= ld->depth; i++) {
        const ynode_t *parent = ld->stack[i - 1].node;
        const char *pending = ld->stack[i - 1].key;
        if (i == ld->depth && parent->kind == YNODE_MAP && !pending)
            break;
        if (parent->kind == YNODE_MAP)
            s_child_path(tmp, sizeof tmp, buf,
                         i < ld->depth ? parent->keys[parent->n - 1] : pending);
        else
            s_index_path(tmp, sizeof tmp, buf, i < ld->depth ? parent->n - 1 : parent->n);
        s_fmt(buf, cap, "%s", tmp);
    }
}

static void s_parse_error(s_loader_t *ld, const yaml_mark_t *mark, bool with_path, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void s_parse_error(s_loader_t *ld, const yaml_mark_t *mark, bool with_path, const char *fmt,
                          ...)
{
    char path[S_PATH_MAX] = "";
    va_list ap;
    if (with_path)
        s_stack_path(ld, path, sizeof path);
    va_start(ap, fmt);
    s_verror(ld->doc, (int)mark->line + 1, (int)mark->column + 1, path, fmt, ap);
    va_end(ap);
}

static int s_grow(s_frame_t *f)
{
    ynode_t *n = f->node;
    if (n->n < f->cap)
        return CPN_OK;
    size_t cap = f->cap ? f->cap * 2 : 4;
    ynode_t **items = realloc(n->items, cap * sizeof *items);
    if (!items)
        return CPN_E_NOMEM;
    n->items = items;
    if (n->kind == YNODE_MAP) {
        char **keys = realloc(n->keys, cap * sizeof *keys);
        if (!keys)
            return CPN_E_NOMEM;
        n->keys = keys;
        int *kl = realloc(n->key_line, cap * sizeof *kl);
        if (!kl)
            return CPN_E_NOMEM;
        n->key_line = kl;
        int *kc = realloc(n->key_col, cap * sizeof *kc);
        if (!kc)
            return CPN_E_NOMEM;
        n->key_col = kc;
    }
    f->cap = cap;
    return CPN_OK;
}

/* Hang a new node under the innermost container (or make it the root); the tree owns it
 * from here, so a failure later frees it with the rest. */
static int s_attach(s_loader_t *ld, ynode_t *node)
{
    if (ld->depth == 0) {
        ld->doc->root = node;
        return CPN_OK;
    }
    s_frame_t *f = &ld->stack[ld->depth - 1];
    if (s_grow(f) != CPN_OK) {
        s_node_free(node);
        return CPN_E_NOMEM;
    }
    ynode_t *parent = f->node;
    if (parent->kind == YNODE_MAP) {
        parent->keys[parent->n] = f->key;
        parent->key_line[parent->n] = f->key_line;
        parent->key_col[parent->n] = f->key_col;
        f->key = NULL;
    }
    parent->items[parent->n++] = node;
    return CPN_OK;
}

static ynode_t *s_node_new(ynode_kind_t kind, const yaml_mark_t *mark)
{
    ynode_t *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->line = (int)mark->line + 1;
        n->col = (int)mark->column + 1;
    }
    return n;
}

static int s_count_node(s_loader_t *ld, const yaml_mark_t *mark)
{
    if (++ld->doc->n_nodes > YCONF_MAX_NODES) {
        s_parse_error(ld, mark, false, "more than %d nodes", YCONF_MAX_NODES);
        return CPN_E_TOO_BIG;
    }
    return CPN_OK;
}

static bool s_awaits_key(const s_loader_t *ld)
{
    if (ld->depth == 0)
        return false;
    const s_frame_t *f = &ld->stack[ld->depth - 1];
    return f->node->kind == YNODE_MAP && f->key == NULL;
}

static int s_on_scalar(s_loader_t *ld, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    int r;
    if (ev->data.scalar.anchor) {
        s_parse_error(ld, &ev->start_mark, true, "anchors and aliases are not allowed");
        return CPN_E_YAML;
    }
    if ((r = s_count_node(ld, &ev->start_mark)) != CPN_OK)
        return r;
    if (len && memchr(v, '\0', len)) {
        s_parse_error(ld, &ev->start_mark, true, "NUL character in a string");
        return CPN_E_YAML;
    }
    char *text = s_strndup(v, len);
    if (!text)
        return CPN_E_NOMEM;
    if (s_awaits_key(ld)) {
        s_frame_t *f = &ld->stack[ld->depth - 1];
        f->key = text;
        f->key_line = (int)ev->start_mark.line + 1;
        f->key_col = (int)ev->start_mark.column + 1;
        return CPN_OK;
    }
    ynode_t *n = s_node_new(YNODE_SCALAR, &ev->start_mark);
    if (!n) {
        free(text);
        return CPN_E_NOMEM;
    }
    n->value = text;
    return s_attach(ld, n);
}

static int s_on_open(s_loader_t *ld, const yaml_event_t *ev, ynode_kind_t kind)
{
    const yaml_char_t *anchor =
        kind == YNODE_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    int r;
    if (anchor) {
        s_parse_error(ld, &ev->start_mark, true, "anchors and aliases are not allowed");
        return CPN_E_YAML;
    }
    if (s_awaits_key(ld)) {
        s_parse_error(ld, &ev->start_mark, true, "map keys must be plain scalars");
        return CPN_E_YAML;
    }
    if (ld->depth >= YCONF_MAX_DEPTH) {
        s_parse_error(ld, &ev->start_mark, false, "nesting deeper than %d levels", YCONF_MAX_DEPTH);
        return CPN_E_TOO_BIG;
    }
    if ((r = s_count_node(ld, &ev->start_mark)) != CPN_OK)
        return r;
    ynode_t *n = s_node_new(kind, &ev->start_mark);
    if (!n)
        return CPN_E_NOMEM;
    if ((r = s_attach(ld, n)) != CPN_OK)
        return r;
    ld->stack[ld->depth++] = (s_frame_t){.node = n};
    return CPN_OK;
}

typedef struct {
    const char *key;
    size_t idx;
} s_keyref_t;

static int s_keyref_cmp(const void *a, const void *b)
{
    const s_keyref_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

static void s_report_dup(s_loader_t *ld, const ynode_t *map, size_t first, size_t dup)
{
    char path[S_PATH_MAX], kp[S_PATH_MAX];
    s_stack_path(ld, path, sizeof path);
    s_child_path(kp, sizeof kp, path, map->keys[dup]);
    s_error_at(ld->doc, map->key_line[dup], map->key_col[dup], kp,
               "duplicate key (first at line %d)", map->key_line[first]);
    ld->dup_seen = true;
}

/* Duplicate keys are an error, not "last one wins": two values for one key in a policy is
 * a mistake whose silent resolution would surprise whoever wrote the first. */
static int s_check_dups(s_loader_t *ld, const ynode_t *map)
{
    if (map->n <= S_SMALL_MAP) {
        for (size_t j = 1; j < map->n; j++)
            for (size_t i = 0; i < j; i++)
                if (strcmp(map->keys[i], map->keys[j]) == 0) {
                    s_report_dup(ld, map, i, j);
                    break;
                }
        return CPN_OK;
    }
    s_keyref_t *refs = malloc(map->n * sizeof *refs);
    if (!refs)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < map->n; i++)
        refs[i] = (s_keyref_t){map->keys[i], i};
    qsort(refs, map->n, sizeof *refs, s_keyref_cmp);
    size_t first = 0;
    for (size_t k = 1; k < map->n; k++) {
        if (strcmp(refs[k].key, refs[first].key) == 0)
            s_report_dup(ld, map, refs[first].idx, refs[k].idx);
        else
            first = k;
    }
    free(refs);
    return CPN_OK;
}

static int s_on_close(s_loader_t *ld)
{
    int r = CPN_OK;
    s_frame_t *f = &ld->stack[ld->depth - 1];
    if (f->node->kind == YNODE_MAP)
        r = s_check_dups(ld, f->node);
    ld->depth--;
    return r;
}

static int s_on_event(s_loader_t *ld, const yaml_event_t *ev, bool *done)
{
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
    case YAML_NO_EVENT:
        return CPN_OK;
    case YAML_STREAM_END_EVENT:
        *done = true;
        return CPN_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (++ld->docs > 1) {
            s_parse_error(ld, &ev->start_mark, false, "more than one document");
            return CPN_E_YAML;
        }
        return CPN_OK;
    case YAML_ALIAS_EVENT:
        s_parse_error(ld, &ev->start_mark, true, "anchors and aliases are not allowed");
        return CPN_E_YAML;
    case YAML_SCALAR_EVENT:
        return s_on_scalar(ld, ev);
    case YAML_SEQUENCE_START_EVENT:
        return s_on_open(ld, ev, YNODE_SEQ);
    case YAML_MAPPING_START_EVENT:
        return s_on_open(ld, ev, YNODE_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return s_on_close(ld);
    }
    return CPN_E_INTERNAL;
}

static void s_syntax_error(s_loader_t *ld)
{
    const yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->error == YAML_READER_ERROR) {
        /* The reader has no mark of its own: the offset is in bytes. */
        s_error_at(ld->doc, 0, 0, NULL, "byte %zu: %s", p->problem_offset, problem);
        return;
    }
    if (p->context)
        s_error_at(ld->doc, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, NULL,
                   "%s %s (line %d column %d)", problem, p->context, (int)p->context_mark.line + 1,
                   (int)p->context_mark.column + 1);
    else
        s_error_at(ld->doc, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, NULL,
                   "%s", problem);
}

static int s_parse(yconf_t *doc, const char *buf, size_t len)
{
    s_loader_t ld;
    int r = CPN_OK;
    bool done = false;
    memset(&ld, 0, sizeof ld);
    ld.doc = doc;
    if (!yaml_parser_initialize(&ld.parser))
        return CPN_E_NOMEM;
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)buf, len);
    while (!done && r == CPN_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ld.parser, &ev)) {
            r = ld.parser.error == YAML_MEMORY_ERROR ? CPN_E_NOMEM : CPN_E_YAML;
            if (r == CPN_E_YAML)
                s_syntax_error(&ld);
            break;
        }
        r = s_on_event(&ld, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ld.parser);
    for (size_t i = 0; i < ld.depth; i++)
        free(ld.stack[i].key);
    if (r == CPN_OK && ld.dup_seen)
        r = CPN_E_YAML;
    if (r == CPN_OK && !doc->root) {
        /* An empty file is an empty scalar, so callers always get a root to complain at. */
        yaml_mark_t start = {0, 0, 0};
        doc->root = s_node_new(YNODE_SCALAR, &start);
        if (doc->root)
            doc->root->value = s_strndup("", 0);
        if (!doc->root || !doc->root->value)
            r = CPN_E_NOMEM;
    }
    if (r != CPN_OK) {
        s_node_free(doc->root);
        doc->root = NULL;
    }
    return r;
}

static int s_finish(yconf_t *doc, int r, yconf_t **out)
{
    if (r == CPN_OK ||
        ((r == CPN_E_YAML || r == CPN_E_TOO_BIG || r == CPN_E_IO) && doc->n_errors > 0)) {
        *out = doc;
        return r;
    }
    yconf_destroy(&doc);
    return r;
}

int yconf_load_buffer(const char *name, const char *buf, size_t len, yconf_t **out)
{
    yconf_t *doc;
    int r;
    if (!out || (!buf && len))
        return CPN_E_INVAL;
    *out = NULL;
    if (!(doc = s_doc_new(name ? name : "<buffer>", "")))
        return CPN_E_NOMEM;
    if (len > YCONF_MAX_FILE) {
        s_error_at(doc, 0, 0, NULL, "%zu bytes, more than the limit of %d", len, YCONF_MAX_FILE);
        r = CPN_E_TOO_BIG;
    } else {
        r = s_parse(doc, buf ? buf : "", len);
    }
    return s_finish(doc, r, out);
}

int yconf_load_file(const char *path, yconf_t **out)
{
    yconf_t *doc = NULL;
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    int r = CPN_OK, fd = -1;
    struct stat st;
    if (!path || !out)
        return CPN_E_INVAL;
    *out = NULL;
    const char *slash = strrchr(path, '/');
    dir = slash ? s_strndup(path, (size_t)(slash - path) + (slash == path)) : s_strndup("", 0);
    if (!dir || !(doc = s_doc_new(path, dir))) {
        r = CPN_E_NOMEM;
        goto out;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        s_error_at(doc, 0, 0, NULL, "%s", strerror(errno));
        r = CPN_E_IO;
        goto out;
    }
    /* Pipes are fine (`<(...)`); the bounded read below limits them like files. */
    if (S_ISDIR(st.st_mode)) {
        s_error_at(doc, 0, 0, NULL, "is a directory");
        r = CPN_E_IO;
        goto out;
    }
    if (st.st_size > YCONF_MAX_FILE) {
        s_error_at(doc, 0, 0, NULL, "file is %lld bytes, more than the limit of %d",
                   (long long)st.st_size, YCONF_MAX_FILE);
        r = CPN_E_TOO_BIG;
        goto out;
    }
    /* Read one byte past the limit: a file that grew since fstat is still refused. */
    if (!(buf = malloc(YCONF_MAX_FILE + 1))) {
        r = CPN_E_NOMEM;
        goto out;
    }
    while (len <= YCONF_MAX_FILE) {
        ssize_t k = read(fd, buf + len, YCONF_MAX_FILE + 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            s_error_at(doc, 0, 0, NULL, "%s", strerror(errno));
            r = CPN_E_IO;
            goto out;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    if (len > YCONF_MAX_FILE) {
        s_error_at(doc, 0, 0, NULL, "file is larger than the limit of %d bytes", YCONF_MAX_FILE);
        r = CPN_E_TOO_BIG;
        goto out;
    }
    r = s_parse(doc, buf, len);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(dir);
    if (!doc)
        return r;
    return s_finish(doc, r, out);
}

/* ---- binding ---- */

const ynode_t *yconf_get(const ynode_t *map, const char *key)
{
    if (!map || map->kind != YNODE_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

static bool s_errors_full(const yconf_t *doc)
{
    return doc->n_errors >= YCONF_MAX_ERRORS;
}

/* Edit distance for "did you mean"; only ever run on short keys. */
static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[S_KEY_SHOWN + 1];
    if (la > S_KEY_SHOWN || lb > S_KEY_SHOWN)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *s_suggest(const char *key, const yfield_t *fields, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3; /* at most two edits away */
    if (strlen(key) > S_KEY_SHOWN)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = s_distance(key, fields[i].key);
        if (d < best_d) {
            best_d = d;
            best = fields[i].key;
        }
    }
    return best;
}

static const char *s_kind_name(ynode_kind_t k)
{
    return k == YNODE_MAP ? "a map" : k == YNODE_SEQ ? "a list" : "a scalar";
}

static bool s_parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static void s_int_expect(const yfield_t *f, uint64_t max, char *buf, size_t cap)
{
    if (f->min == 0 && f->max == 0)
        s_fmt(buf, cap, "expected a non-negative integer");
    else if (f->min == 1 && f->max == 0)
        s_fmt(buf, cap, "expected a positive integer");
    else if (f->max == 0)
        s_fmt(buf, cap, "expected an integer of at least %llu", (unsigned long long)f->min);
    else
        s_fmt(buf, cap, "expected an integer from %llu to %llu", (unsigned long long)f->min,
              (unsigned long long)max);
}

typedef struct {
    int (*parse)(const char *, uint64_t *);
    void (*fmt)(uint64_t, char *, size_t);
    const char *expect;
} s_unit_kind_t;

static const s_unit_kind_t *s_unit_kind(yfield_kind_t k)
{
    static const s_unit_kind_t bytes = {cpn_parse_bytes, cpn_fmt_bytes,
                                        "expected a size such as 80GiB, 1.5TB or 4096"};
    static const s_unit_kind_t rate = {cpn_parse_bitrate, cpn_fmt_bitrate,
                                       "expected a bit rate such as 400Gbps or 25Gbps"};
    static const s_unit_kind_t dur = {cpn_parse_duration, cpn_fmt_duration,
                                      "expected a duration such as 90s, 30m, 4h or 1h30m"};
    static const s_unit_kind_t price = {cpn_parse_price, cpn_fmt_price,
                                        "expected a price such as 210.0 (at most 3 decimals)"};
    switch (k) {
    case YF_BYTES:
        return &bytes;
    case YF_BITRATE:
        return &rate;
    case YF_DURATION:
        return &dur;
    case YF_PRICE:
        return &price;
    default:
        return NULL;
    }
}

static bool s_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void s_bind_key(yconf_t *doc, const ynode_t *node, const char *path, uint8_t *pk)
{
    const char *text = node->value;
    char full[4096];
    int r;
    if (!s_ends_with(text, ".pub")) {
        if (cpn_pk_from_text(text, pk) != CPN_OK)
            yconf_error(doc, node, path,
                        "expected a public key (43 base64url characters) or a .pub file");
        return;
    }
    /* Relative key paths are relative to the file that names them, not to the cwd of
     * whoever started the daemon. */
    if (text[0] != '/' && doc->dir[0]) {
        if (!s_fmt(full, sizeof full, "%s/%s", doc->dir, text)) {
            yconf_error(doc, node, path, "key file path too long");
            return;
        }
    } else if (!s_fmt(full, sizeof full, "%s", text)) {
        yconf_error(doc, node, path, "key file path too long");
        return;
    }
    if ((r = cpn_pk_load(full, pk)) != CPN_OK)
        yconf_error(doc, node, path, "cannot load public key %.200s: %s", full, cpn_strerror(r));
}

static void s_bind_names(yconf_t *doc, const ynode_t *node, const char *path, cpn_namelist_t *l)
{
    char ip[S_PATH_MAX];
    memset(l, 0, sizeof *l);
    if (node->kind == YNODE_MAP) {
        yconf_error(doc, node, path, "expected a list of names, found a map");
        return;
    }
    size_t n = node->kind == YNODE_SCALAR ? 1 : node->n;
    if (n > CPN_LIST_MAX) {
        yconf_error(doc, node, path, "at most %d names", CPN_LIST_MAX);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ynode_t *it = node->kind == YNODE_SCALAR ? node : node->items[i];
        s_index_path(ip, sizeof ip, path, i);
        if (it->kind != YNODE_SCALAR) {
            yconf_error(doc, it, ip, "expected a name, found %s", s_kind_name(it->kind));
            continue;
        }
        size_t len = strlen(it->value);
        if (len == 0 || len >= CPN_NAME_MAX) {
            yconf_error(doc, it, ip, "expected a name of 1 to %d characters", CPN_NAME_MAX - 1);
            continue;
        }
        memcpy(l->items[l->n++], it->value, len + 1);
    }
}

static int s_bind(yconf_t *doc, const ynode_t *map, const char *path, const yfield_t *fields,
                  size_t n, void *dst, const char *const *ignore);

static void s_bind_value(yconf_t *doc, const ynode_t *node, const char *path, const yfield_t *f,
                         uint8_t *dst)
{
    void *at = dst + f->off;
    char expect[160];
    uint64_t v, max;
    const s_unit_kind_t *uk;

    if (f->kind == YF_MAP) {
        int r = s_bind(doc, node, path, f->sub, f->n_sub, at, NULL);
        (void)r; /* errors are recorded; the caller compares counts */
        return;
    }
    if (f->kind == YF_NAMES) {
        s_bind_names(doc, node, path, at);
        return;
    }
    if (f->kind == YF_CUSTOM) {
        size_t before = doc->n_total;
        if (f->custom(doc, node, path, at, f->arg) != CPN_OK && doc->n_total == before)
            yconf_error(doc, node, path, "invalid value");
        return;
    }
    if (node->kind != YNODE_SCALAR) {
        yconf_error(doc, node, path, "expected a value, found %s", s_kind_name(node->kind));
        return;
    }
    const char *text = node->value;
    switch (f->kind) {
    case YF_STR: {
        size_t len = strlen(text);
        if (len >= f->size) {
            yconf_error(doc, node, path, "longer than %zu characters", f->size - 1);
            return;
        }
        if (len < f->min) {
            if (f->min == 1)
                yconf_error(doc, node, path, "must not be empty");
            else
                yconf_error(doc, node, path, "shorter than %llu characters",
                            (unsigned long long)f->min);
            return;
        }
        for (size_t i = 0; i < len; i++) {
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) {
                yconf_error(doc, node, path, "control character in text");
                return;
            }
        }
        memcpy(at, text, len + 1);
        return;
    }
    case YF_U32:
    case YF_U64:
        max = f->kind == YF_U32 ? UINT32_MAX : UINT64_MAX;
        if (f->max && f->max < max)
            max = f->max;
        if (!s_parse_uint(text, &v) || v < f->min || v > max) {
            s_int_expect(f, max, expect, sizeof expect);
            yconf_error(doc, node, path, "%s", expect);
            return;
        }
        if (f->kind == YF_U32)
            *(uint32_t *)at = (uint32_t)v;
        else
            *(uint64_t *)at = v;
        return;
    case YF_BOOL:
        if (strcmp(text, "true") == 0)
            *(bool *)at = true;
        else if (strcmp(text, "false") == 0)
            *(bool *)at = false;
        else
            yconf_error(doc, node, path, "expected true or false");
        return;
    case YF_BYTES:
    case YF_BITRATE:
    case YF_DURATION:
    case YF_PRICE:
        uk = s_unit_kind(f->kind);
        if (uk->parse(text, &v) != CPN_OK) {
            yconf_error(doc, node, path, "%s", uk->expect);
            return;
        }
        if (v < f->min || (f->max && v > f->max)) {
            char lo[32], hi[32];
            uk->fmt(f->min, lo, sizeof lo);
            uk->fmt(f->max, hi, sizeof hi);
            if (f->max)
                yconf_error(doc, node, path, "must be from %s to %s", lo, hi);
            else
                yconf_error(doc, node, path, "must be at least %s", lo);
            return;
        }
        *(uint64_t *)at = v;
        return;
    case YF_KEY:
        s_bind_key(doc, node, path, at);
        return;
    case YF_NAMES:
    case YF_MAP:
    case YF_CUSTOM:
        break;
    }
}

static bool s_listed(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
}

static int s_bind(yconf_t *doc, const ynode_t *map, const char *path, const yfield_t *fields,
                  size_t n, void *dst, const char *const *ignore)
{
    bool seen[S_FIELDS_MAX] = {false};
    char kp[S_PATH_MAX];
    size_t before;
    if (!doc || !fields || !dst || n > S_FIELDS_MAX)
        return CPN_E_INVAL;
    if (!path)
        path = "";
    before = doc->n_total;
    if (!map || map->kind != YNODE_MAP) {
        yconf_error(doc, map, path, "expected a map, found %s",
                    map ? s_kind_name(map->kind) : "nothing");
        return CPN_E_CONFIG;
    }
    for (size_t i = 0; i < map->n; i++) {
        const char *key = map->keys[i];
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(fields[j].key, key) == 0)
                break;
        if (j == n) {
            if (s_listed(key, ignore))
                continue;
            const char *hint = s_errors_full(doc) ? NULL : s_suggest(key, fields, n);
            s_error_at(doc, map->key_line[i], map->key_col[i], path, "unknown key \"%.*s\"%s%s%s",
                       S_KEY_SHOWN, key, hint ? " (did you mean \"" : "", hint ? hint : "",
                       hint ? "\"?)" : "");
            continue;
        }
        seen[j] = true;
        s_child_path(kp, sizeof kp, path, key);
        s_bind_value(doc, map->items[i], kp, &fields[j], dst);
    }
    for (size_t j = 0; j < n; j++)
        if (fields[j].required && !seen[j])
            yconf_error(doc, map, path, "missing required key \"%s\"", fields[j].key);
    return doc->n_total == before ? CPN_OK : CPN_E_CONFIG;
}

int yconf_bind(yconf_t *doc, const ynode_t *map, const char *path, const yfield_t *fields, size_t n,
               void *dst)
{
    return s_bind(doc, map, path, fields, n, dst, NULL);
}

/* ---- the resource model ---- */

#define S_Y(k, kd, type, field, req, lo, hi)                                                       \
    {                                                                                              \
        .key = (k), .kind = (kd), .off = offsetof(type, field),                                    \
        .size = sizeof(((type *)0)->field), .required = (req), .min = (lo), .max = (hi)            \
    }
#define S_YMAP(k, off_, table)                                                                     \
    {                                                                                              \
        .key = (k), .kind = YF_MAP, .off = (off_), .sub = (table),                                 \
        .n_sub = sizeof(table) / sizeof((table)[0])                                                \
    }

/* "3350GB/s", "3.35TB/s" or a plain number of GB/s. */
static int s_bind_gbs(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    static const struct {
        const char *suffix;
        const char *as;
    } forms[] = {{"GB/s", "GB"}, {"TB/s", "TB"}};
    char buf[64];
    uint64_t bytes = 0, gbs = 0;
    bool ok = false;
    (void)arg;
    if (node->kind == YNODE_SCALAR && strlen(node->value) < sizeof buf - 4) {
        const char *t = node->value;
        if (s_parse_uint(t, &gbs)) /* a plain number is GB/s already */
            ok = true;
        for (size_t i = 0; !ok && i < sizeof forms / sizeof forms[0]; i++) {
            if (!s_ends_with(t, forms[i].suffix))
                continue;
            size_t len = strlen(t) - strlen(forms[i].suffix);
            if (s_fmt(buf, sizeof buf, "%.*s%s", (int)len, t, forms[i].as) &&
                cpn_parse_bytes(buf, &bytes) == CPN_OK && bytes % 1000000000ULL == 0) {
                gbs = bytes / 1000000000ULL;
                ok = true;
            }
        }
    }
    if (!ok || gbs > 1000000) {
        yconf_error(doc, node, path,
                    "expected a bandwidth such as 3350GB/s (whole GB/s, at most 1000000)");
        return CPN_E_CONFIG;
    }
    *(uint32_t *)dst = (uint32_t)gbs;
    return CPN_OK;
}

static const yfield_t s_pkg_accel[] = {
    S_Y("vendor", YF_STR, cpn_accel_t, vendor, true, 1, 0),
    S_Y("model", YF_STR, cpn_accel_t, model, true, 1, 0),
    S_Y("count", YF_U32, cpn_accel_t, count, true, 1, 1024),
    S_Y("memory", YF_BYTES, cpn_accel_t, mem_bytes, true, 1, 1ULL << 44),
    S_Y("bf16_tflops", YF_U32, cpn_accel_t, bf16_tflops, true, 1, 1000000),
    {.key = "memory_bandwidth",
     .kind = YF_CUSTOM,
     .off = offsetof(cpn_accel_t, mem_bw_gbs),
     .custom = s_bind_gbs},
};

static const yfield_t s_pkg_storage[] = {
    S_Y("class", YF_STR, cpn_package_t, storage_class, true, 1, 0),
    S_Y("size", YF_BYTES, cpn_package_t, storage_bytes, true, 1, 0),
    S_Y("iops", YF_U32, cpn_package_t, storage_iops, false, 0, 0),
};

static const yfield_t s_pkg_network[] = {
    S_Y("fabric", YF_BITRATE, cpn_package_t, fabric_bps, false, 0, 0),
    S_Y("egress", YF_BITRATE, cpn_package_t, egress_bps, false, 0, 0),
};

static const yfield_t s_pkg_fields[] = {
    S_Y("id", YF_STR, cpn_package_t, id, true, 1, 0),
    S_Y("count", YF_U32, cpn_package_t, total, true, 1, 1000000),
    S_Y("region", YF_STR, cpn_package_t, region, true, 1, 0),
    S_Y("price", YF_PRICE, cpn_package_t, price, true, 0, 0),
    S_Y("cores", YF_U32, cpn_package_t, cores, false, 1, 1u << 20),
    S_Y("memory", YF_BYTES, cpn_package_t, mem_bytes, false, 1, 0),
    S_YMAP("accelerators", offsetof(cpn_package_t, accel), s_pkg_accel),
    S_YMAP("storage", 0, s_pkg_storage),
    S_YMAP("network", 0, s_pkg_network),
};

static const yfield_t s_req_accel[] = {
    S_Y("model", YF_STR, cpn_request_t, accel_model, false, 1, 0),
    S_Y("vendor", YF_STR, cpn_request_t, accel_vendor, false, 1, 0),
    S_Y("count", YF_U32, cpn_request_t, accel_count, false, 1, 1024),
    S_Y("min_bf16_tflops", YF_U64, cpn_request_t, min_tflops, false, 1, 0),
    S_Y("min_memory", YF_BYTES, cpn_request_t, min_accel_mem, false, 1, 0),
};

static const yfield_t s_req_storage[] = {
    S_Y("class", YF_STR, cpn_request_t, storage_class, false, 1, 0),
    S_Y("size", YF_BYTES, cpn_request_t, storage_bytes, false, 1, 0),
};

static const yfield_t s_req_network[] = {
    S_Y("fabric", YF_BITRATE, cpn_request_t, fabric_bps, false, 0, 0),
    S_Y("egress", YF_BITRATE, cpn_request_t, egress_bps, false, 0, 0),
};

static const yfield_t s_req_prefer[] = {
    S_Y("regions", YF_NAMES, cpn_request_t, prefer_regions, false, 0, 0),
    S_Y("vendors", YF_NAMES, cpn_request_t, prefer_vendors, false, 0, 0),
};

static const yfield_t s_req_fields[] = {
    S_Y("id", YF_STR, cpn_request_t, id, true, 1, 0),
    S_Y("units", YF_U32, cpn_request_t, units, false, 1, 1000000),
    S_Y("split", YF_BOOL, cpn_request_t, split, false, 0, 0),
    S_Y("duration", YF_DURATION, cpn_request_t, duration_s, true, 1, 366ULL * 86400),
    S_YMAP("accelerators", 0, s_req_accel),
    S_Y("cores", YF_U32, cpn_request_t, cores, false, 1, 1u << 20),
    S_Y("memory", YF_BYTES, cpn_request_t, mem_bytes, false, 1, 0),
    S_YMAP("storage", 0, s_req_storage),
    S_YMAP("network", 0, s_req_network),
    S_Y("regions", YF_NAMES, cpn_request_t, regions, false, 0, 0),
    S_Y("max_price", YF_PRICE, cpn_request_t, max_price, false, 1, 0),
    S_YMAP("prefer", 0, s_req_prefer),
};

#undef S_Y
#undef S_YMAP

/* Vendors are compared ignoring case anyway; lower case keeps tables and logs uniform. */
static void s_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

int yconf_package_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_package_t *out,
                     const char *const *extra_keys)
{
    const char *why = NULL;
    int r;
    if (!doc || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    r = s_bind(doc, node, path, s_pkg_fields, sizeof s_pkg_fields / sizeof s_pkg_fields[0], out,
               extra_keys);
    if (r != CPN_OK)
        return r;
    out->free = out->total;
    s_lower(out->accel.vendor);
    /* Cross-field rules only once every field parsed, so one mistake is one message. */
    if (cpn_package_validate(out, &why) != CPN_OK) {
        yconf_error(doc, node, path, "%s", why);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

int yconf_package(yconf_t *doc, const ynode_t *node, const char *path, cpn_package_t *out)
{
    return yconf_package_ex(doc, node, path, out, NULL);
}

int yconf_request_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_request_t *out,
                     const char *const *extra_keys)
{
    const char *why = NULL;
    int r;
    if (!doc || !out)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    out->units = 1;
    r = s_bind(doc, node, path, s_req_fields, sizeof s_req_fields / sizeof s_req_fields[0], out,
               extra_keys);
    if (r != CPN_OK)
        return r;
    s_lower(out->accel_vendor);
    for (uint32_t i = 0; i < out->prefer_vendors.n; i++)
        s_lower(out->prefer_vendors.items[i]);
    if (cpn_request_validate(out, &why) != CPN_OK) {
        yconf_error(doc, node, path, "%s", why);
        return CPN_E_CONFIG;
    }
    return CPN_OK;
}

int yconf_request(yconf_t *doc, const ynode_t *node, const char *path, cpn_request_t *out)
{
    return yconf_request_ex(doc, node, path, out, NULL);
}

int yconf_request_file(const char *path, cpn_request_t *out, yconf_t **doc_out)
{
    yconf_t *doc = NULL;
    int r;
    if (doc_out)
        *doc_out = NULL;
    if (!path || !out)
        return CPN_E_INVAL;
    r = yconf_load_file(path, &doc);
    if (r == CPN_OK)
        r = yconf_request(doc, yconf_root(doc), "", out);
    if (doc_out)
        *doc_out = doc;
    else
        yconf_destroy(&doc);
    return r;
}
