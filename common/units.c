/* units.c - quantities with units, parsed exactly.
 *
 * Why not strtod: "1.5TB" must be exactly 1500000000000 bytes, and binary floating point
 * neither represents most decimal fractions nor reports overflow of a uint64 cleanly. So a
 * number is read as integer digits and fraction digits, and the fraction is scaled by the
 * unit's multiplier with integers only. A fraction that does not come out as a whole number
 * of the base unit ("0.1GiB" = 107374182.4 bytes, "1.5B") is refused rather than rounded:
 * what the operator wrote is what the machine uses, or an error says why not.
 */
#include "units.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* More significant fraction digits than this cannot be exact for any multiplier we have
 * (the largest is 2^50), and 10^18 is the largest power of ten below 2^64. */
#define S_FRAC_DIGITS_MAX 18

typedef struct {
    const char *suffix;
    uint64_t mult;
} s_unit_t;

#define S_K 1000ULL
#define S_KI 1024ULL

static const s_unit_t s_byte_units[] = {
    {"", 1},
    {"B", 1},
    {"kB", S_K},
    {"KB", S_K},
    {"MB", S_K *S_K},
    {"GB", S_K *S_K *S_K},
    {"TB", S_K *S_K *S_K *S_K},
    {"PB", S_K *S_K *S_K *S_K *S_K},
    {"KiB", S_KI},
    {"MiB", S_KI *S_KI},
    {"GiB", S_KI *S_KI *S_KI},
    {"TiB", S_KI *S_KI *S_KI *S_KI},
    {"PiB", S_KI *S_KI *S_KI *S_KI *S_KI},
};

static const s_unit_t s_bitrate_units[] = {
    {"", 1},
    {"bps", 1},
    {"kbps", S_K},
    {"Kbps", S_K},
    {"Mbps", S_K *S_K},
    {"Gbps", S_K *S_K *S_K},
    {"Tbps", S_K *S_K *S_K *S_K},
};

/* Largest first: compound durations must name their parts in this order ("1h30m"). */
static const s_unit_t s_duration_units[] = {
    {"d", 86400},
    {"h", 3600},
    {"m", 60},
    {"s", 1},
};

#define S_N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    uint64_t ipart;    /* integer digits */
    uint64_t frac;     /* fraction digits as an integer, trailing zeros removed */
    unsigned frac_len; /* significant fraction digits */
} s_number_t;

static bool s_isdigit(char c)
{
    return c >= '0' && c <= '9';
}

/* Read "123" or "123.456" at *pp; advances *pp. At least one digit before the point and,
 * if there is a point, at least one after it. */
static int s_read_number(const char **pp, s_number_t *num)
{
    const char *p = *pp;
    memset(num, 0, sizeof *num);
    if (!s_isdigit(*p))
        return CPN_E_INVAL;
    for (; s_isdigit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (num->ipart > (UINT64_MAX - d) / 10)
            return CPN_E_INVAL;
        num->ipart = num->ipart * 10 + d;
    }
    if (*p == '.') {
        p++;
        if (!s_isdigit(*p))
            return CPN_E_INVAL;
        const char *start = p;
        while (s_isdigit(*p))
            p++;
        const char *end = p;
        while (end > start && end[-1] == '0') /* "1.50" is "1.5" */
            end--;
        if (end - start > S_FRAC_DIGITS_MAX)
            return CPN_E_INVAL;
        for (const char *q = start; q < end; q++)
            num->frac = num->frac * 10 + (uint64_t)(*q - '0');
        num->frac_len = (unsigned)(end - start);
    }
    *pp = p;
    return CPN_OK;
}

static uint64_t s_gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* num * mult exactly, or an error when the result overflows or is not a whole number. */
static int s_scale(const s_number_t *num, uint64_t mult, uint64_t *out)
{
    if (num->ipart != 0 && num->ipart > UINT64_MAX / mult)
        return CPN_E_INVAL;
    uint64_t whole = num->ipart * mult;
    uint64_t part = 0;
    if (num->frac_len > 0) {
        uint64_t den = 1;
        for (unsigned i = 0; i < num->frac_len; i++)
            den *= 10;
        /* frac/den * mult is whole iff den/g divides frac, g = gcd(mult, den); then the
         * value is (frac / (den/g)) * (mult/g), which is below mult and cannot overflow. */
        uint64_t g = s_gcd(mult, den);
        uint64_t den_r = den / g;
        if (num->frac % den_r != 0)
            return CPN_E_INVAL;
        part = (num->frac / den_r) * (mult / g);
    }
    if (whole > UINT64_MAX - part)
        return CPN_E_INVAL;
    *out = whole + part;
    return CPN_OK;
}

static const s_unit_t *s_find_unit(const s_unit_t *units, size_t n, const char *suffix, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(units[i].suffix) == len && memcmp(units[i].suffix, suffix, len) == 0)
            return &units[i];
    return NULL;
}

/* One number, an optional space, one suffix from the table, end of text. */
static int s_parse_simple(const char *text, const s_unit_t *units, size_t n, uint64_t *out)
{
    s_number_t num;
    const char *p = text;
    uint64_t v;
    if (!text || !out || s_read_number(&p, &num) != CPN_OK)
        return CPN_E_INVAL;
    if (*p == ' ') { /* "80 GiB": one space before a unit, none after the number alone */
        p++;
        if (*p == '\0')
            return CPN_E_INVAL;
    }
    const s_unit_t *u = s_find_unit(units, n, p, strlen(p));
    if (!u || s_scale(&num, u->mult, &v) != CPN_OK)
        return CPN_E_INVAL;
    *out = v;
    return CPN_OK;
}

int cpn_parse_bytes(const char *text, uint64_t *out)
{
    return s_parse_simple(text, s_byte_units, S_N(s_byte_units), out);
}

int cpn_parse_bitrate(const char *text, uint64_t *out)
{
    return s_parse_simple(text, s_bitrate_units, S_N(s_bitrate_units), out);
}

int cpn_parse_price(const char *text, uint64_t *milli)
{
    static const s_unit_t unit[] = {{"", 1000}};
    return s_parse_simple(text, unit, 1, milli);
}

int cpn_parse_duration(const char *text, uint64_t *seconds)
{
    const char *p = text;
    uint64_t total = 0;
    size_t next_unit = 0; /* parts must come largest first, each once */
    s_number_t num;
    if (!text || !seconds || s_read_number(&p, &num) != CPN_OK)
        return CPN_E_INVAL;
    if (*p == '\0') /* a plain number is seconds */
        return s_scale(&num, 1, seconds);
    for (;;) {
        const s_unit_t *u = NULL;
        for (size_t i = next_unit; i < S_N(s_duration_units); i++) {
            if (*p == s_duration_units[i].suffix[0]) {
                u = &s_duration_units[i];
                next_unit = i + 1;
                break;
            }
        }
        uint64_t v;
        if (!u || s_scale(&num, u->mult, &v) != CPN_OK || total > UINT64_MAX - v)
            return CPN_E_INVAL;
        total += v;
        p++;
        if (*p == '\0')
            break;
        if (s_read_number(&p, &num) != CPN_OK)
            return CPN_E_INVAL;
    }
    *seconds = total;
    return CPN_OK;
}

/* ---- formatting ---- */

/* Largest unit of `units` (ordered by size within a family) dividing v exactly. */
static const s_unit_t *s_exact_unit(const s_unit_t *units, size_t n, uint64_t v)
{
    const s_unit_t *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (units[i].suffix[0] == '\0')
            continue;
        if (v % units[i].mult == 0 && (!best || units[i].mult > best->mult))
            best = &units[i];
    }
    return best;
}

/* v in `u` with one decimal, rounded down: for tables, where "117.7MiB" reads better than
 * nine digits. */
static void s_fmt_approx(uint64_t v, const s_unit_t *u, char *out, size_t cap)
{
    uint64_t whole = v / u->mult;
    uint64_t tenth = (v % u->mult) / (u->mult / 10);
    snprintf(out, cap, "%" PRIu64 ".%" PRIu64 "%s", whole, tenth, u->suffix);
}

void cpn_fmt_bytes(uint64_t bytes, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    const s_unit_t *u = s_exact_unit(s_byte_units, S_N(s_byte_units), bytes);
    if (bytes > 0 && u && u->mult > 1) {
        snprintf(out, cap, "%" PRIu64 "%s", bytes / u->mult, u->suffix);
        return;
    }
    /* Not exact in any unit: the largest IEC unit not above the value, one decimal. */
    const s_unit_t *iec = &s_byte_units[8]; /* KiB */
    if (bytes < iec->mult) {
        snprintf(out, cap, "%" PRIu64 "B", bytes);
        return;
    }
    for (size_t i = 8; i < S_N(s_byte_units); i++)
        if (bytes >= s_byte_units[i].mult)
            iec = &s_byte_units[i];
    s_fmt_approx(bytes, iec, out, cap);
}

void cpn_fmt_bitrate(uint64_t bps, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    const s_unit_t *u = s_exact_unit(s_bitrate_units, S_N(s_bitrate_units), bps);
    if (bps < S_K || (u && u->mult >= S_K)) {
        uint64_t mult = bps < S_K ? 1 : u->mult;
        snprintf(out, cap, "%" PRIu64 "%s", bps / mult, bps < S_K ? "bps" : u->suffix);
        return;
    }
    const s_unit_t *si = &s_bitrate_units[2]; /* kbps */
    for (size_t i = 2; i < S_N(s_bitrate_units); i++)
        if (bps >= s_bitrate_units[i].mult && s_bitrate_units[i].mult > si->mult)
            si = &s_bitrate_units[i];
    s_fmt_approx(bps, si, out, cap);
}

void cpn_fmt_duration(uint64_t seconds, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    uint64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
             s = seconds % 60;
    /* Always parseable by cpn_parse_duration; seconds shown only where they are not 0 or the
     * value is under an hour. */
    if (d > 0)
        snprintf(out, cap, "%" PRIu64 "d%" PRIu64 "h%" PRIu64 "m", d, h, m);
    else if (h > 0)
        snprintf(out, cap, "%" PRIu64 "h%" PRIu64 "m", h, m);
    else if (m > 0)
        snprintf(out, cap, "%" PRIu64 "m%" PRIu64 "s", m, s);
    else
        snprintf(out, cap, "%" PRIu64 "s", s);
    if (s != 0 && (d > 0 || h > 0)) {
        size_t len = strlen(out);
        if (len < cap)
            snprintf(out + len, cap - len, "%" PRIu64 "s", s);
    }
}

void cpn_fmt_price(uint64_t milli, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    snprintf(out, cap, "%" PRIu64 ".%03" PRIu64, milli / 1000, milli % 1000);
}
