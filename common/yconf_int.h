/* yconf_int.h - what the three parts of the YAML configuration module share, private to
 * them: yconf.c (the document: a bounded tree from libyaml events, its errors), ybind.c
 * (binding maps to C structs by tables) and yresource.c (the resource model's tables).
 * Nothing outside common/yconf*.c includes it. */
#ifndef CPN_YCONF_INT_H
#define CPN_YCONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yconf.h"

#define YCONF_PATH_MAX 256 /* key paths in messages; longer ones are cut */
#define YCONF_KEY_SHOWN 64 /* characters of a key quoted in a message */

struct yconf {
    char *name;     /* as given: used in every message */
    char *dir;      /* directory of the file ("" for buffers): .pub paths resolve here */
    ynode_t *root;  /* NULL after a failed load */
    size_t n_nodes; /* nodes and keys seen while parsing */
    char *errors[YCONF_MAX_ERRORS];
    size_t n_errors; /* stored */
    size_t n_total;  /* recorded, including those past the cap */
};

/* vsnprintf that reports truncation instead of hiding it; the output is always terminated. */
bool yconf_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "path.key" and "path[i]" into buf, cut with "..." if too long. */
void yconf_child_path(char *buf, size_t cap, const char *path, const char *key);
void yconf_index_path(char *buf, size_t cap, const char *path, size_t i);
/* Record an error at a line and column (a map key's position, which no node has). */
void yconf_error_pos(yconf_t *self, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* yconf_bind, skipping the keys listed in `ignore` (NULL-terminated; may be NULL). */
int yconf_bind_ignoring(yconf_t *doc, const ynode_t *map, const char *path,
                        const yfield_t *fields, size_t n, void *dst,
                        const char *const *ignore) CPN_WUR;
/* A decimal uint64 with nothing else, no overflow. */
bool yconf_parse_uint(const char *s, uint64_t *out);
bool yconf_ends_with(const char *s, const char *suffix);

#endif
