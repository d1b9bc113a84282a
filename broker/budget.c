/* budget.c - admission against a budget and a cost ceiling (budget.h). */
#include "budget.h"

#include <inttypes.h>
#include <stdio.h>

#include "usage.h"

int budget_request_cost(uint32_t units, uint64_t price, uint64_t duration_s, uint64_t *cost)
{
    if (duration_s > UINT64_MAX / 1000)
        return CPN_E_INVAL;
    return cpn_usage_total(units, price, 0, duration_s * 1000, cost);
}

uint64_t budget_lease_rest(uint32_t units, uint64_t price, uint64_t start_ms, uint64_t end_ms,
                           uint64_t now_ms)
{
    uint64_t at = now_ms > start_ms ? now_ms : start_ms, a = 0, b = 0;
    if (end_ms <= at || cpn_usage_total(units, price, start_ms, at, &a) != CPN_OK ||
        cpn_usage_total(units, price, start_ms, end_ms, &b) != CPN_OK)
        return 0;
    return b - a;
}

/* "12.345" */
static void s_money(uint64_t v, char out[32])
{
    snprintf(out, 32, "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
}

int budget_admit(const budget_state_t *s, uint64_t cost, uint64_t ceiling, char why[CPN_REASON_MAX])
{
    char a[32], b[32], c[32], d[32], e[32], f[32];
    if (ceiling && cost > ceiling) {
        s_money(cost, a);
        s_money(ceiling, b);
        snprintf(why, CPN_REASON_MAX, "cost %s over the request's ceiling %s", a, b);
        return CPN_E_OVER_BUDGET;
    }
    if (!s->budget)
        return CPN_OK;
    uint64_t sum = s->committed, parts[] = {s->running, s->in_flight, cost};
    bool overflow = false;
    for (size_t i = 0; i < 3; i++) {
        overflow |= parts[i] > UINT64_MAX - sum;
        sum = overflow ? UINT64_MAX : sum + parts[i];
    }
    if (!overflow && sum <= s->budget)
        return CPN_OK;
    s_money(s->budget, a);
    s_money(s->committed, b);
    s_money(s->running, c);
    s_money(s->in_flight, d);
    s_money(cost, e);
    s_money(sum, f);
    char text[512]; /* 6 figures of at most 24 characters and the words: fits */
    snprintf(text, sizeof text,
             "budget %s: committed %s + running %s + in flight %s + this request %s = %s%s", a, b,
             c, d, e, f, overflow ? " (overflow)" : "");
    snprintf(why, CPN_REASON_MAX, "%.200s", text);
    return CPN_E_OVER_BUDGET;
}

uint64_t budget_cost(uint32_t units, uint64_t price, uint64_t duration_s)
{
    uint64_t cost = 0;
    return budget_request_cost(units, price, duration_s, &cost) == CPN_OK ? cost : UINT64_MAX;
}

int budget_filter(const budget_state_t *s, match_cand_t *cands, size_t *n, uint32_t units,
                  uint64_t duration_s, uint64_t ceiling, char why[CPN_REASON_MAX])
{
    size_t kept = 0;
    int first = CPN_OK;
    for (size_t i = 0; i < *n; i++) {
        char w[CPN_REASON_MAX];
        int r = budget_admit(s, budget_cost(units, cands[i].price, duration_s), ceiling, w);
        if (r == CPN_OK)
            cands[kept++] = cands[i];
        else if (first == CPN_OK) {
            first = r;
            snprintf(why, CPN_REASON_MAX, "%s", w);
        }
    }
    *n = kept;
    return kept ? CPN_OK : first;
}
