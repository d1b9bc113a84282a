/* yconf.c - YAML configuration: the document, a bounded tree built from libyaml events, and
 * its errors. Binding maps to C structs by tables is ybind.c; the resource model's tables are
 * yresource.c.
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

#include "yconf_int.h"

#define S_MSG_MAX 512   /* one error line */
#define S_SMALL_MAP 16  /* maps up to this size are checked for duplicates pairwise */

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

bool yconf_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < cap;
}

void yconf_child_path(char *buf, size_t cap, const char *path, const char *key)
{
    if (!yconf_fmt(buf, cap, "%s%s%.*s", path, path[0] ? "." : "", YCONF_KEY_SHOWN, key) && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

void yconf_index_path(char *buf, size_t cap, const char *path, size_t i)
{
    if (!yconf_fmt(buf, cap, "%s[%zu]", path, i) && cap > 4)
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
    char msg[S_MSG_MAX], pos[32] = "", full[S_MSG_MAX + YCONF_PATH_MAX + 64];
    self->n_total++;
    if (self->n_errors >= YCONF_MAX_ERRORS)
        return;
    if (self->n_errors == YCONF_MAX_ERRORS - 1) {
        yconf_fmt(full, sizeof full, "%s: too many errors, only the first %d are shown", self->name,
              YCONF_MAX_ERRORS - 1);
    } else {
        vsnprintf(msg, sizeof msg, fmt, ap);
        if (line > 0)
            yconf_fmt(pos, sizeof pos, ":%d:%d", line, col);
        yconf_fmt(full, sizeof full, "%s%s: %s%s%s", self->name, pos, path ? path : "",
              path && path[0] ? ": " : "", msg);
    }
    char *copy = s_strndup(full, strlen(full));
    if (copy) /* out of memory loses the text, never the count */
        self->errors[self->n_errors++] = copy;
}

void yconf_error_pos(yconf_t *self, int line, int col, const char *path, const char *fmt, ...)
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
    char tmp[YCONF_PATH_MAX];
    buf[0] = '\0';
    for (size_t i = 1; i <= ld->depth; i++) {
        const ynode_t *parent = ld->stack[i - 1].node;
        const char *pending = ld->stack[i - 1].key;
        if (i == ld->depth && parent->kind == YNODE_MAP && !pending)
            break;
        if (parent->kind == YNODE_MAP)
            yconf_child_path(tmp, sizeof tmp, buf,
                         i < ld->depth ? parent->keys[parent->n - 1] : pending);
        else
            yconf_index_path(tmp, sizeof tmp, buf, i < ld->depth ? parent->n - 1 : parent->n);
        yconf_fmt(buf, cap, "%s", tmp);
    }
}

static void s_parse_error(s_loader_t *ld, const yaml_mark_t *mark, bool with_path, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void s_parse_error(s_loader_t *ld, const yaml_mark_t *mark, bool with_path, const char *fmt,
                          ...)
{
    char path[YCONF_PATH_MAX] = "";
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
    char path[YCONF_PATH_MAX], kp[YCONF_PATH_MAX];
    s_stack_path(ld, path, sizeof path);
    yconf_child_path(kp, sizeof kp, path, map->keys[dup]);
    yconf_error_pos(ld->doc, map->key_line[dup], map->key_col[dup], kp,
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
        yconf_error_pos(ld->doc, 0, 0, NULL, "byte %zu: %s", p->problem_offset, problem);
        return;
    }
    if (p->context)
        yconf_error_pos(ld->doc, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, NULL,
                   "%s %s (line %d column %d)", problem, p->context, (int)p->context_mark.line + 1,
                   (int)p->context_mark.column + 1);
    else
        yconf_error_pos(ld->doc, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, NULL,
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
        yconf_error_pos(doc, 0, 0, NULL, "%zu bytes, more than the limit of %d", len, YCONF_MAX_FILE);
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
        yconf_error_pos(doc, 0, 0, NULL, "%s", strerror(errno));
        r = CPN_E_IO;
        goto out;
    }
    /* Pipes are fine (`<(...)`); the bounded read below limits them like files. */
    if (S_ISDIR(st.st_mode)) {
        yconf_error_pos(doc, 0, 0, NULL, "is a directory");
        r = CPN_E_IO;
        goto out;
    }
    if (st.st_size > YCONF_MAX_FILE) {
        yconf_error_pos(doc, 0, 0, NULL, "file is %lld bytes, more than the limit of %d",
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
            yconf_error_pos(doc, 0, 0, NULL, "%s", strerror(errno));
            r = CPN_E_IO;
            goto out;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    if (len > YCONF_MAX_FILE) {
        yconf_error_pos(doc, 0, 0, NULL, "file is larger than the limit of %d bytes", YCONF_MAX_FILE);
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

