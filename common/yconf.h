/* yconf.h - YAML configuration on libyaml: a bounded document tree with positions, and
 * table-driven binding of maps to C structs with errors that name file:line:column and the
 * key path.
 *
 * Limits (libyaml 0.2.5 has none of its own, and deep nesting costs it quadratic time):
 * the file is refused above YCONF_MAX_FILE bytes before parsing, and parsing stops at
 * nesting deeper than YCONF_MAX_DEPTH or more than YCONF_MAX_NODES nodes. Anchors and
 * aliases are refused (no billion-laughs); tags are ignored.
 *
 * Error lines look like:  peer.yaml:14:7: packages[1].accelerators.count: expected a
 * positive integer. Binding keeps going after an error so one pass reports every error.
 */
#ifndef CPN_YCONF_H
#define CPN_YCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "resource.h"

#define YCONF_MAX_FILE (1024 * 1024)
#define YCONF_MAX_DEPTH 32
#define YCONF_MAX_NODES 100000
#define YCONF_MAX_ERRORS 64

typedef enum { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ } ynode_kind_t;

typedef struct ynode ynode_t;
struct ynode {
    ynode_kind_t kind;
    int line, col; /* 1-based */
    char *value;   /* scalar text (NUL-terminated); NULL for maps and sequences */
    size_t n;      /* map pairs or sequence items */
    char **keys;   /* map keys (scalars only) */
    int *key_line, *key_col;
    ynode_t **items; /* map values or sequence items */
};

typedef struct yconf yconf_t;

/* Parse a file / a buffer (name used in messages). On CPN_E_YAML or CPN_E_TOO_BIG, the
 * errors are in the returned doc if *out is not NULL. */
int yconf_load_file(const char *path, yconf_t **out) CPN_WUR;
int yconf_load_buffer(const char *name, const char *buf, size_t len, yconf_t **out) CPN_WUR;
void yconf_destroy(yconf_t **self_p);

const ynode_t *yconf_root(const yconf_t *self);
const char *yconf_name(const yconf_t *self);

/* Record an error at node (may be NULL): "name:line:col: path: message". */
void yconf_error(yconf_t *self, const ynode_t *node, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t yconf_error_count(const yconf_t *self);
const char *yconf_error_at(const yconf_t *self, size_t i);
/* Print every error, one per line. */
void yconf_print_errors(const yconf_t *self, FILE *out);

/* Binding. */
typedef enum {
    YF_STR,      /* char[size]; min = minimum length (1: must not be empty) */
    YF_U32,      /* uint32_t within [min, max] (max 0 = UINT32_MAX) */
    YF_U64,      /* uint64_t within [min, max] (max 0 = UINT64_MAX) */
    YF_BOOL,     /* bool: true/false */
    YF_BYTES,    /* uint64_t, "80GiB" */
    YF_BITRATE,  /* uint64_t, "400Gbps" */
    YF_DURATION, /* uint64_t seconds, "2h" */
    YF_PRICE,    /* uint64_t thousandths, "210.0" */
    YF_KEY,      /* uint8_t[32]: public key text, or a path to a .pub file */
    YF_NAMES,    /* cpn_namelist_t from a sequence of scalars (or one scalar) */
    YF_MAP,      /* nested struct at off, bound by `sub` */
    YF_CUSTOM,   /* custom(doc, node, path, dst + off, arg) */
} yfield_kind_t;

typedef struct yfield yfield_t;
struct yfield {
    const char *key;
    yfield_kind_t kind;
    size_t off;
    size_t size; /* YF_STR: sizeof the array */
    bool required;
    uint64_t min, max;
    const yfield_t *sub; /* YF_MAP */
    size_t n_sub;
    int (*custom)(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg);
    void *arg;
    bool restart; /* a running daemon built something from the value once: a reload that
                     changes it is refused (not used by yconf_bind; broker/policy.c) */
};

/* Bind map node `map` into dst by the table. Unknown keys, missing required keys, wrong
 * kinds and out-of-range values are all recorded as errors. Returns CPN_OK if this call
 * added no error, else CPN_E_CONFIG. `path` is the key path of `map` ("" at the root). */
int yconf_bind(yconf_t *doc, const ynode_t *map, const char *path, const yfield_t *fields,
               size_t n, void *dst) CPN_WUR;

/* Child of a map by key, or NULL. */
const ynode_t *yconf_get(const ynode_t *map, const char *key);

/* Resource model from YAML (docs/POLICY.md lists the keys). */
int yconf_package(yconf_t *doc, const ynode_t *node, const char *path,
                  cpn_package_t *out) CPN_WUR;
int yconf_request(yconf_t *doc, const ynode_t *node, const char *path,
                  cpn_request_t *out) CPN_WUR;
/* The same, ignoring the listed keys (NULL-terminated; may be NULL) at the top level of
 * the node, for documents that embed a package or request among keys of their own (a peer's
 * `floor:` next to the package keys). The caller binds those keys itself. */
int yconf_package_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_package_t *out,
                     const char *const *extra_keys) CPN_WUR;
int yconf_request_ex(yconf_t *doc, const ynode_t *node, const char *path, cpn_request_t *out,
                     const char *const *extra_keys) CPN_WUR;
/* A binder for yfield_t.custom: a share of one accelerator as `accelerators.share` reads it
 * (0.46, 460m, 1 or a MIG profile such as 1g.10gb) into the uint32_t of thousandths at dst;
 * an error naming `path` otherwise. For documents with shares of their own (a peer's
 * `workload`). */
int yconf_bind_share(yconf_t *doc, const ynode_t *node, const char *path, void *dst,
                     void *arg) CPN_WUR;
/* A whole request file (the root map is one request). */
int yconf_request_file(const char *path, cpn_request_t *out, yconf_t **doc_out) CPN_WUR;

#endif
