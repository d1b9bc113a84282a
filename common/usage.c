/* usage.c - USAGE pricing and chain rules (see usage.h). */
#include "usage.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

int cpn_usage_total(uint32_t units, uint64_t price, uint64_t start_ms, uint64_t at_ms,
                    uint64_t *out)
{
    if (at_ms < start_ms)
        return CPN_E_INVAL;
    /* units * price * ms needs up to 32 + 64 + 64 bits: split so nothing overflows. The
     * product units * price fits 96 bits; it is checked against what a 128-bit product with
     * the duration allows before multiplying. */
    unsigned __int128 up = (unsigned __int128)units * price;
    uint64_t ms = at_ms - start_ms;
    if (ms && up > ((unsigned __int128)~(uint64_t)0 * CPN_USAGE_MS_PER_HOUR) / ms)
        return CPN_E_INVAL; /* the result would not fit 64 bits anyway */
    unsigned __int128 t = up * ms / CPN_USAGE_MS_PER_HOUR;
    if (t > (unsigned __int128)UINT64_MAX)
        return CPN_E_INVAL;
    *out = (uint64_t)t;
    return CPN_OK;
}

void cpn_usage_hash(const uint8_t *frame, size_t len, uint8_t out[CPN_USAGE_HASH_LEN])
{
    crypto_generichash(out, CPN_USAGE_HASH_LEN, frame, len, NULL, 0);
}

int cpn_usage_next(const cpn_usage_t *prev, const uint8_t prev_hash[CPN_USAGE_HASH_LEN],
                   const cpn_usage_t *first, uint64_t to_ms, bool final, cpn_usage_t *rec)
{
    const cpn_usage_t *terms = prev ? prev : first;
    uint64_t from = prev ? prev->to_ms : first->start_ms, before = prev ? prev->total : 0;
    uint64_t total = 0;
    if ((prev && prev->final) || to_ms < from)
        return CPN_E_INVAL;
    if (cpn_usage_total(terms->units, terms->price, terms->start_ms, to_ms, &total) != CPN_OK ||
        total < before)
        return CPN_E_INVAL;
    cpn_usage_t r;
    memset(&r, 0, sizeof r);
    memcpy(r.lease_id, terms->lease_id, sizeof r.lease_id);
    memcpy(r.tenant, terms->tenant, sizeof r.tenant);
    memcpy(r.package, terms->package, sizeof r.package);
    r.units = terms->units;
    r.price = terms->price;
    r.start_ms = terms->start_ms;
    r.n = prev ? prev->n + 1 : 1;
    if (prev)
        memcpy(r.prev, prev_hash, CPN_USAGE_HASH_LEN);
    r.from_ms = from;
    r.to_ms = to_ms;
    r.unit_ms = (uint64_t)r.units * (to_ms - from); /* units < 2^32: checked in total() */
    r.total = total;
    r.amount = total - before;
    r.final = final;
    *rec = r;
    return CPN_OK;
}

static int s_bad(char why[CPN_REASON_MAX], const char *what, const cpn_usage_t *rec)
{
    snprintf(why, CPN_REASON_MAX, "usage record %u of lease %s: %s", rec->n, rec->lease_id, what);
    return CPN_E_CHAIN;
}

int cpn_usage_check(const cpn_usage_t *rec, char why[CPN_REASON_MAX])
{
    uint64_t before = 0, total = 0;
    if (rec->n == 0)
        return s_bad(why, "n is 0 (records count from 1)", rec);
    if (rec->from_ms < rec->start_ms || rec->to_ms < rec->from_ms)
        return s_bad(why, "period outside the lease (from < start or to < from)", rec);
    if (cpn_usage_total(rec->units, rec->price, rec->start_ms, rec->from_ms, &before) != CPN_OK ||
        cpn_usage_total(rec->units, rec->price, rec->start_ms, rec->to_ms, &total) != CPN_OK)
        return s_bad(why, "charge does not fit 64 bits", rec);
    if (rec->unit_ms != (uint64_t)rec->units * (rec->to_ms - rec->from_ms))
        return s_bad(why, "unit_ms is not units * (to_ms - from_ms)", rec);
    if (rec->total != total)
        return s_bad(why, "total is not floor(units * price * (to - start) / 3600000)", rec);
    if (rec->amount != total - before)
        return s_bad(why, "amount is not total(to) - total(from)", rec);
    return CPN_OK;
}

int cpn_usage_check_link(const cpn_usage_t *prev, const uint8_t prev_hash[CPN_USAGE_HASH_LEN],
                         const cpn_usage_t *rec, char why[CPN_REASON_MAX])
{
    static const uint8_t zero[CPN_USAGE_HASH_LEN];
    int r = cpn_usage_check(rec, why);
    if (r != CPN_OK)
        return r;
    if (!prev) {
        if (rec->n != 1)
            return s_bad(why, "the chain does not start at record 1 (records missing)", rec);
        if (sodium_memcmp(rec->prev, zero, CPN_USAGE_HASH_LEN) != 0)
            return s_bad(why, "record 1 names a previous record", rec);
        if (rec->from_ms != rec->start_ms)
            return s_bad(why, "record 1 does not start at the lease's start", rec);
        return CPN_OK;
    }
    if (prev->final)
        return s_bad(why, "a record follows the lease's final record", rec);
    if (rec->n != prev->n + 1)
        return s_bad(why, "n does not follow the previous record (record missing)", rec);
    if (sodium_memcmp(rec->prev, prev_hash, CPN_USAGE_HASH_LEN) != 0)
        return s_bad(why, "prev is not the hash of the previous record (altered or missing)", rec);
    if (rec->from_ms != prev->to_ms)
        return s_bad(why, "period does not start where the previous one ended", rec);
    if (strcmp(rec->lease_id, prev->lease_id) != 0 ||
        memcmp(rec->tenant, prev->tenant, CPN_PK_LEN) != 0 ||
        strcmp(rec->package, prev->package) != 0 || rec->units != prev->units ||
        rec->price != prev->price || rec->start_ms != prev->start_ms)
        return s_bad(why, "terms (lease, tenant, package, units, price, start) changed", rec);
    return CPN_OK;
}

/* ---- calendar periods ---- */

#define S_MS_PER_DAY 86400000ULL

/* Days since 1970-01-01 of y-m-01 (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static uint64_t s_days(uint64_t y, unsigned m)
{
    y -= m <= 2;
    uint64_t era = y / 400, yoe = y - era * 400;
    uint64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5;
    uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year and month holding day number d (civil_from_days). */
static void s_civil(uint64_t d, uint64_t *y, unsigned *m)
{
    d += 719468;
    uint64_t era = d / 146097, doe = d - era * 146097;
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static void s_month_bounds(uint64_t y, unsigned m, uint64_t *from_ms, uint64_t *to_ms)
{
    *from_ms = s_days(y, m) * S_MS_PER_DAY;
    *to_ms = (m == 12 ? s_days(y + 1, 1) : s_days(y, m + 1)) * S_MS_PER_DAY;
}

void cpn_usage_month(uint64_t at_ms, uint64_t *from_ms, uint64_t *to_ms)
{
    uint64_t y;
    unsigned m;
    s_civil(at_ms / S_MS_PER_DAY, &y, &m);
    s_month_bounds(y, m, from_ms, to_ms);
}

void cpn_usage_day(uint64_t at_ms, uint64_t *from_ms, uint64_t *to_ms)
{
    *from_ms = at_ms / S_MS_PER_DAY * S_MS_PER_DAY;
    *to_ms = *from_ms + S_MS_PER_DAY;
}

int cpn_usage_month_parse(const char *text, uint64_t *from_ms, uint64_t *to_ms)
{
    unsigned y = 0, m = 0;
    for (int i = 0; i < 7; i++) {
        char c = text[i];
        if (i == 4 ? c != '-' : (c < '0' || c > '9'))
            return CPN_E_INVAL;
        if (i < 4)
            y = y * 10 + (unsigned)(c - '0');
        else if (i > 4)
            m = m * 10 + (unsigned)(c - '0');
    }
    if (text[7] || y < 1970 || m < 1 || m > 12)
        return CPN_E_INVAL;
    s_month_bounds(y, m, from_ms, to_ms);
    return CPN_OK;
}
