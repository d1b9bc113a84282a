/* json_check.h - is a text exactly one JSON object (RFC 8259)? Bytes from a driver or from a
 * sealed box are refused before anyone prints or forwards them as JSON. jansson parses them
 * (and frees what it built); nothing of the parse is kept.
 */
#ifndef CPN_JSON_CHECK_H
#define CPN_JSON_CHECK_H

#include <stddef.h>

#include "err.h"

/* CPN_OK if s[0..len) is valid UTF-8 and one JSON object (whitespace around it allowed),
 * nested at most max_depth deep (the object itself is depth 1), with no member name twice in
 * one object and no NUL character; else CPN_E_SCHEMA. */
int cpn_json_object_check(const char *s, size_t len, size_t max_depth) CPN_WUR;

#endif
