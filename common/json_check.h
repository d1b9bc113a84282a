/* json_check.h - is a text exactly one JSON object (RFC 8259)? A validator, not a parser:
 * it allocates nothing and builds nothing, so bytes from a driver or from a sealed box can be
 * refused before anyone prints or forwards them as JSON.
 */
#ifndef CPN_JSON_CHECK_H
#define CPN_JSON_CHECK_H

#include <stddef.h>

#include "err.h"

/* CPN_OK if s[0..len) is valid UTF-8 and one JSON object (whitespace around it allowed),
 * nested at most max_depth deep (the object itself is depth 1); else CPN_E_SCHEMA. Bounded:
 * recursion at most max_depth deep, one pass over the bytes. Duplicate member names are not
 * checked. */
int cpn_json_object_check(const char *s, size_t len, size_t max_depth) CPN_WUR;

#endif
