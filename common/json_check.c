/* json_check.c - one JSON object, checked by jansson (the JSON library the peer's drivers
 * already use), then its depth counted. */
#include "json_check.h"

#include <jansson.h>

/* Depth of v: a scalar 0, a container 1 + its deepest member. jansson bounds its own parser's
 * nesting (JSON_PARSER_MAX_DEPTH), so this recursion is bounded too. */
static size_t s_depth(json_t *v)
{
    size_t d = 0, k;
    const char *key;
    json_t *m;
    if (json_is_object(v)) {
        json_object_foreach(v, key, m) {
            size_t e = s_depth(m);
            d = e > d ? e : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, k, m) {
            size_t e = s_depth(m);
            d = e > d ? e : d;
        }
        return d + 1;
    }
    return 0;
}

int cpn_json_object_check(const char *s, size_t len, size_t max_depth)
{
    json_error_t err;
    /* Without JSON_ALLOW_NUL a "\u0000" is refused; JSON_DISABLE_EOF_CHECK unset: nothing but
     * white space may follow the object. jansson checks UTF-8 itself. */
    json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);
    int r = v && json_is_object(v) && s_depth(v) <= max_depth ? CPN_OK : CPN_E_SCHEMA;
    json_decref(v);
    return r;
}
