/* json_check.c - RFC 8259 by recursive descent, bounded by a depth the caller names. */
#include "json_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "mp.h"

typedef struct {
    const char *p, *end;
    size_t depth_left;
} s_in_t;

static bool s_value(s_in_t *in);

static void s_ws(s_in_t *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
}

static bool s_eat(s_in_t *in, char c)
{
    if (in->p < in->end && *in->p == c) {
        in->p++;
        return true;
    }
    return false;
}

static bool s_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* UTF-8 is checked on the whole text first, so only the JSON rules remain here. */
static bool s_string(s_in_t *in)
{
    if (!s_eat(in, '"'))
        return false;
    while (in->p < in->end) {
        unsigned char c = (unsigned char)*in->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        if (in->p >= in->end)
            return false;
        c = (unsigned char)*in->p++;
        if (c == 'u') {
            if (in->end - in->p < 4)
                return false;
            for (int i = 0; i < 4; i++)
                if (!s_hex(in->p[i]))
                    return false;
            in->p += 4;
        } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
            return false;
        }
    }
    return false;
}

static size_t s_digits(s_in_t *in)
{
    size_t n = 0;
    while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
        in->p++, n++;
    return n;
}

static bool s_number(s_in_t *in)
{
    (void)s_eat(in, '-');
    if (s_eat(in, '0')) {
        /* no leading zeros */
    } else if (s_digits(in) == 0) {
        return false;
    }
    if (s_eat(in, '.') && s_digits(in) == 0)
        return false;
    if (s_eat(in, 'e') || s_eat(in, 'E')) {
        if (!s_eat(in, '+'))
            (void)s_eat(in, '-');
        if (s_digits(in) == 0)
            return false;
    }
    return true;
}

static bool s_word(s_in_t *in, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(in->end - in->p) < n || memcmp(in->p, w, n) != 0)
        return false;
    in->p += n;
    return true;
}

/* An object or an array: `close` ends it, members are "name": value when `object`. */
static bool s_container(s_in_t *in, bool object)
{
    char close = object ? '}' : ']';
    if (in->depth_left == 0)
        return false;
    in->depth_left--;
    in->p++; /* the opening bracket, seen by the caller */
    s_ws(in);
    if (s_eat(in, close))
        goto done;
    for (;;) {
        s_ws(in);
        if (object) {
            if (!s_string(in))
                return false;
            s_ws(in);
            if (!s_eat(in, ':'))
                return false;
            s_ws(in);
        }
        if (!s_value(in))
            return false;
        s_ws(in);
        if (s_eat(in, close))
            break;
        if (!s_eat(in, ','))
            return false;
    }
done:
    in->depth_left++;
    return true;
}

static bool s_value(s_in_t *in)
{
    if (in->p >= in->end)
        return false;
    switch (*in->p) {
    case '{':
        return s_container(in, true);
    case '[':
        return s_container(in, false);
    case '"':
        return s_string(in);
    case 't':
        return s_word(in, "true");
    case 'f':
        return s_word(in, "false");
    case 'n':
        return s_word(in, "null");
    default:
        return s_number(in);
    }
}

int cpn_json_object_check(const char *s, size_t len, size_t max_depth)
{
    if (!s || !mp_utf8_ok((const uint8_t *)s, len) || memchr(s, '\0', len))
        return CPN_E_SCHEMA;
    s_in_t in = {s, s + len, max_depth};
    s_ws(&in);
    if (in.p >= in.end || *in.p != '{' || !s_container(&in, true))
        return CPN_E_SCHEMA;
    s_ws(&in);
    return in.p == in.end ? CPN_OK : CPN_E_SCHEMA;
}
