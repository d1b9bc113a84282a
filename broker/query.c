/* query.c - STATUS answers to QUERY: status, offers, leases, federation.
 *
 * One table (s_queries, like Redis's command table) says for every `what` who may ask it and
 * which handler answers; every sender, federation members included, goes through it, and a
 * `what` it does not list is refused. Each answer is one msgpack object in STATUS.data: a map
 * (status) or an array of row maps, which cpnctl prints as a table or as JSON.
 *
 * Lists come in pages (docs/PROTOCOL.md, "Queries"). A page is bounded by bytes as its rows are
 * encoded, not by a guessed row count: a row is taken only if the page with it still fits in
 * one frame, so an answer of any size goes out as several STATUS frames, each with a `next`
 * cursor while rows remain. Rows are listed in a fixed order of their key and a cursor is the
 * key of the last row sent, so a row that stays in the book (or ledger) across the pages is
 * listed exactly once, however the rest changes in between. An answer that cannot be built (a
 * single row or the status map larger than a page) is never dropped: the client gets NACK
 * too-long with the sizes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "broker.h"
#include "clock.h"
#include "federation.h"
#include "ledger_notice.h"
#include "log.h"
#include "page.h"
#include "units.h"
#include "usage_log.h"

/* What a STATUS frame holds besides `data` and `next`, at most (msgpack sizes): the frame's
 * array and bin headers (6), the payload map with v, type "STATUS", from, seq, ts and the
 * body's bin header (98), the signature (66), and the body map with `what` (≤ 31) and the
 * keys and bin header of `data` (48): 218 bytes. `next` adds at most 5 + 2 + 255. So a page
 * of rows is at most frame - 480 bytes, one map (status, no `next`) frame - 218: exact upper
 * bounds, not a guess, and query_answer still checks the frame it built. */
#define S_FRAME_OVERHEAD 218
#define S_NEXT_OVERHEAD (5 + 2 + CPN_CURSOR_MAX - 1)
/* Rows per page, whatever `limit` says: a receiver with the default limits parses at most
 * 4096 entries per container and 65536 objects per frame (rows of 10 keys are 21 objects). */
#define S_PAGE_ROWS_MAX 1024
_Static_assert(PAGE_CURSOR_MAX == CPN_CURSOR_MAX, "a page's cursor is a QUERY's `after`");
#define S_HEX_LEN (2 * CPN_PK_LEN) /* a key in a cursor: lowercase hex, orders as its bytes */

/* Who may ask: any tenant of the policy, an operator (a tenant with operator: true), a
 * federation member. */
enum { Q_TENANT = 1u << 0, Q_OPERATOR = 1u << 1, Q_MEMBER = 1u << 2 };

/* One answer being built: its page and, for an error, what could not be answered. */
typedef struct {
    page_t *page;
    char why[CPN_REASON_MAX];
} s_answer_t;

typedef int (*s_answer_fn)(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q,
                           s_answer_t *ans);

/* After the rows: CPN_E_COUNT (why set) if a row alone could not fit a page. */
static int s_rows_done(s_answer_t *ans)
{
    return page_error(ans->page, ans->why, sizeof ans->why);
}

static size_t s_max_rows(const cpn_query_t *q)
{
    return q->limit && q->limit < S_PAGE_ROWS_MAX ? q->limit : S_PAGE_ROWS_MAX;
}

static bool s_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- status: one map ---- */

static int s_status(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, s_answer_t *ans)
{
    (void)rx;
    (void)q;
    msgpack_packer *pk = page_packer(ans->page);
    book_stats_t bs;
    ledger_counts_t lc;
    memset(&lc, 0, sizeof lc);
    book_stats(self->book, &bs);
    if (ledger_counts(self->ledger, cpn_now_ms(), &lc) != CPN_OK)
        log_warn("ledger", "counts unavailable for status");
    char kid[CPN_KID_LEN];
    cpn_key_id(cpn_identity_pk(self->id), kid);
    size_t n_refused = 0;
    for (int i = 1; i < BROKER_ERR_SLOTS; i++)
        n_refused += self->stats.refused[i] != 0;
    uint64_t intents = 0;
    if (ledger_intent_count(self->ledger, &intents) != CPN_OK)
        log_warn("ledger", "intent count unavailable for status");
    msgpack_pack_map(pk, 30 + FED_STATUS_KEYS);
    mp_pack_kstr(pk, "name", self->pol->broker.name);
    mp_pack_kstr(pk, "key", kid);
    mp_pack_kstr(pk, "version", PACKAGE_VERSION);
    mp_pack_ku64(pk, "uptime_s", (cpn_now_ms() - self->started_ms) / 1000);
    mp_pack_ku64(pk, "peers", bs.peers);
    mp_pack_ku64(pk, "packages", bs.packages);
    mp_pack_ku64(pk, "free_units", bs.free_units);
    mp_pack_ku64(pk, "requests", self->stats.requests);
    mp_pack_ku64(pk, "requests_in_flight", claim_in_flight(self->claim));
    mp_pack_ku64(pk, "grants", self->stats.grants);
    mp_pack_ku64(pk, "nacks", self->stats.nacks);
    mp_pack_ku64(pk, "claims_sent", self->stats.claims_sent);
    mp_pack_ku64(pk, "claim_timeouts", self->stats.claim_timeouts);
    mp_pack_ku64(pk, "claims_in_doubt", intents);
    mp_pack_ku64(pk, "requests_in_doubt", self->stats.in_doubt);
    mp_pack_ku64(pk, "ledger_commit_failures", self->stats.commit_failures);
    mp_pack_ku64(pk, "leases_active", lc.active);
    mp_pack_ku64(pk, "units_leased", lc.active_units);
    mp_pack_ku64(pk, "messages_received", self->stats.received);
    mp_pack_ku64(pk, "messages_accepted", self->stats.accepted);
    mp_pack_ku64(pk, "refusals_unanswered", self->stats.refusals_unanswered);
    mp_pack_ku64(pk, "notices", self->stats.notices);
    mp_pack_ku64(pk, "leases_rematched", self->stats.rematched);
    mp_pack_ku64(pk, "usage_taken", self->stats.usage_taken);
    mp_pack_ku64(pk, "usage_resent", self->stats.usage_dup);
    mp_pack_ku64(pk, "usage_refused", self->stats.usage_refused);
    mp_pack_ku64(pk, "usage_relayed", self->stats.usage_relayed);
    mp_pack_ku64(pk, "policy_reloads", self->stats.reloads);
    mp_pack_ku64(pk, "policy_reloads_failed", self->stats.reloads_failed);
    federation_status(self, pk);
    mp_pack_str(pk, "refused");
    msgpack_pack_map(pk, n_refused);
    for (int i = 1; i < BROKER_ERR_SLOTS; i++)
        if (self->stats.refused[i])
            mp_pack_ku64(pk, cpn_errname(-i), self->stats.refused[i]);
    /* One map, one row: it fits, or the client hears why. */
    (void)page_take(ans->page, "");
    return s_rows_done(ans);
}

/* ---- offers: by (peer key, package id); cursor "<peer key hex>/<package id>" ---- */

typedef struct {
    const book_peer_t *bp;
    char hex[S_HEX_LEN + 1];
} s_peer_ref_t;

static int s_peer_cmp(const void *a, const void *b)
{
    return memcmp(((const s_peer_ref_t *)a)->hex, ((const s_peer_ref_t *)b)->hex, S_HEX_LEN);
}

/* Keep the `cap` smallest refs seen in a max-heap refs[0 .. *n). */
static void s_heap_keep(s_peer_ref_t *h, size_t *n, size_t cap, const s_peer_ref_t *r)
{
    size_t i;
    if (*n < cap) {
        for (i = (*n)++; i && s_peer_cmp(&h[(i - 1) / 2], r) < 0; i = (i - 1) / 2)
            h[i] = h[(i - 1) / 2];
        h[i] = *r;
        return;
    }
    if (s_peer_cmp(r, &h[0]) >= 0)
        return;
    for (i = 0;;) { /* sift the new root down */
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && s_peer_cmp(&h[c + 1], &h[c]) > 0)
            c++;
        if (s_peer_cmp(&h[c], r) <= 0)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = *r;
}

static int s_pkg_cmp(const void *a, const void *b)
{
    return strcmp((*(const cpn_package_t *const *)a)->id, (*(const cpn_package_t *const *)b)->id);
}

static void s_offer_row(msgpack_packer *pk, const book_peer_t *bp, const cpn_package_t *p,
                        uint64_t now)
{
    char kid[CPN_KID_LEN], via[CPN_KID_LEN], price[32], accel[96];
    cpn_key_id(bp->key, kid);
    if (sodium_is_zero(bp->via, CPN_PK_LEN))
        snprintf(via, sizeof via, "local");
    else
        cpn_key_id(bp->via, via);
    cpn_fmt_price(p->price, price, sizeof price);
    if (p->accel.count)
        snprintf(accel, sizeof accel, "%ux%s", p->accel.count, p->accel.model);
    else
        snprintf(accel, sizeof accel, "-");
    msgpack_pack_map(pk, 10);
    mp_pack_kstr(pk, "peer", kid);
    mp_pack_kstr(pk, "name", bp->name);
    mp_pack_kstr(pk, "package", p->id);
    mp_pack_kstr(pk, "accelerators", accel);
    mp_pack_kstr(pk, "region", p->region);
    mp_pack_kstr(pk, "price", price);
    mp_pack_ku64(pk, "free", p->free);
    mp_pack_ku64(pk, "total", p->total);
    mp_pack_kstr(pk, "via", via);
    mp_pack_ku64(pk, "expires_s", bp->expires_ms > now ? (bp->expires_ms - now) / 1000 : 0);
}

static int s_offers(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, s_answer_t *ans)
{
    (void)rx;
    const char *after = q->after, *after_pkg = NULL;
    size_t alen = strlen(after);
    if (alen && (alen < S_HEX_LEN + 2 || after[S_HEX_LEN] != '/' || !s_is_hex(after, S_HEX_LEN))) {
        snprintf(ans->why, sizeof ans->why,
                 "`after` is not an offers cursor (peer key hex/package)");
        return CPN_E_INVAL;
    }
    if (alen)
        after_pkg = after + S_HEX_LEN + 1;
    /* Every peer gives a page at least one row, so the page needs at most max_rows + 1 peers
     * (the cursor's own may have none left): the smallest keys from the cursor on, kept in a
     * bounded heap, O(peers x log page) per page, then sorted. */
    size_t cur = 0, n = 0, cap = s_max_rows(q) + 1;
    const book_peer_t *bp;
    s_peer_ref_t *refs = malloc(cap * sizeof *refs), r;
    if (!refs) {
        snprintf(ans->why, sizeof ans->why, "out of memory listing offers");
        return CPN_E_NOMEM;
    }
    while ((bp = book_next(self->book, &cur)) != NULL) {
        if (bp->withdrawn || bp->n_packages == 0)
            continue;
        sodium_bin2hex(r.hex, sizeof r.hex, bp->key, CPN_PK_LEN);
        r.bp = bp;
        if (!(alen && memcmp(r.hex, after, S_HEX_LEN) < 0))
            s_heap_keep(refs, &n, cap, &r);
    }
    if (n)
        qsort(refs, n, sizeof *refs, s_peer_cmp);
    uint64_t now = cpn_now_ms();
    const cpn_package_t *pkgs[CPN_PACKAGES_MAX];
    bool room = true;
    for (size_t i = 0; room && i < n; i++) {
        bp = refs[i].bp;
        bool at_cursor = alen && memcmp(refs[i].hex, after, S_HEX_LEN) == 0;
        size_t np = bp->n_packages < CPN_PACKAGES_MAX ? bp->n_packages : CPN_PACKAGES_MAX;
        for (size_t k = 0; k < np; k++)
            pkgs[k] = &bp->packages[k];
        qsort(pkgs, np, sizeof pkgs[0], s_pkg_cmp);
        for (size_t k = 0; room && k < np; k++) {
            if (at_cursor && strcmp(pkgs[k]->id, after_pkg) <= 0)
                continue;
            char cursor[CPN_CURSOR_MAX];
            snprintf(cursor, sizeof cursor, "%s/%s", refs[i].hex, pkgs[k]->id);
            s_offer_row(page_packer(ans->page), bp, pkgs[k], now);
            room = page_take(ans->page, cursor);
        }
    }
    free(refs);
    return s_rows_done(ans);
}

/* ---- leases: the asker's, newest first; cursor "<start_ms>/<peer key hex>/<lease id>" ---- */

typedef struct {
    s_answer_t *ans;
    uint64_t now;
    broker_t *b;
} s_lease_ctx_t;

/* "code: reason" of the lease's notice, or "" (a lease its peer never revoked). */
static void s_notice_text(broker_t *b, const ledger_lease_t *l, char *out, size_t cap)
{
    ledger_notice_t n;
    out[0] = '\0';
    if (strcmp(l->state, "revoked") == 0 &&
        ledger_notice_get(b->ledger, l->peer, l->lease_id, &n, NULL, NULL) == CPN_OK)
        snprintf(out, cap, "%s: %s", cpn_errname(n.code), n.reason);
}

static int s_lease_row(const ledger_lease_t *l, void *arg)
{
    s_lease_ctx_t *ctx = arg;
    msgpack_packer *pk = page_packer(ctx->ans->page);
    char kid[CPN_KID_LEN], price[32], left[32], hex[S_HEX_LEN + 1], cursor[CPN_CURSOR_MAX];
    char notice[CPN_REASON_MAX + 32];
    cpn_key_id(l->peer, kid);
    cpn_fmt_price(l->price, price, sizeof price);
    cpn_fmt_duration(l->end_ms > ctx->now ? (l->end_ms - ctx->now) / 1000 : 0, left, sizeof left);
    s_notice_text(ctx->b, l, notice, sizeof notice);
    msgpack_pack_map(pk, 9);
    mp_pack_kstr(pk, "lease", l->lease_id);
    mp_pack_kstr(pk, "request", l->request_id);
    mp_pack_kstr(pk, "peer", kid);
    mp_pack_kstr(pk, "package", l->package);
    mp_pack_ku64(pk, "units", l->units);
    mp_pack_kstr(pk, "price", price);
    mp_pack_kstr(pk, "state", l->state);
    mp_pack_kstr(pk, "ends_in", left);
    mp_pack_kstr(pk, "notice", notice);
    sodium_bin2hex(hex, sizeof hex, l->peer, CPN_PK_LEN);
    snprintf(cursor, sizeof cursor, "%" PRIu64 "/%s/%s", l->start_ms, hex, l->lease_id);
    return page_take(ctx->ans->page, cursor) ? 0 : 1;
}

static int s_lease_cursor(const char *s, ledger_cursor_t *c)
{
    char *end = NULL;
    memset(c, 0, sizeof *c);
    if (s[0] < '0' || s[0] > '9')
        return CPN_E_INVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '/' || v > INT64_MAX || strlen(end + 1) < S_HEX_LEN + 2 ||
        !s_is_hex(end + 1, S_HEX_LEN) || end[1 + S_HEX_LEN] != '/')
        return CPN_E_INVAL;
    const char *id = end + 2 + S_HEX_LEN;
    size_t bin_len = 0;
    if (strlen(id) >= sizeof c->lease_id ||
        sodium_hex2bin(c->peer, CPN_PK_LEN, end + 1, S_HEX_LEN, NULL, &bin_len, NULL) != 0 ||
        bin_len != CPN_PK_LEN)
        return CPN_E_INVAL;
    c->start_ms = v;
    snprintf(c->lease_id, sizeof c->lease_id, "%s", id);
    return CPN_OK;
}

static int s_leases(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, s_answer_t *ans)
{
    ledger_cursor_t after;
    if (q->after[0] && s_lease_cursor(q->after, &after) != CPN_OK) {
        snprintf(ans->why, sizeof ans->why,
                 "`after` is not a leases cursor (start_ms/peer key hex/lease id)");
        return CPN_E_INVAL;
    }
    s_lease_ctx_t ctx = {ans, cpn_now_ms(), self};
    /* One row more than a page holds tells whether more remain. */
    int r = ledger_list_page(self->ledger, rx->env.from, false, ctx.now,
                             q->after[0] ? &after : NULL, s_max_rows(q) + 1, s_lease_row, &ctx);
    if (r != CPN_OK) {
        snprintf(ans->why, sizeof ans->why, "the ledger could not list leases: %s",
                 cpn_strerror(r));
        return r;
    }
    return s_rows_done(ans);
}

/* ---- notices: the asker's, in arrival order; cursor: the last one's id (decimal) ---- */

static int s_notice_row(const ledger_notice_t *n, void *arg)
{
    s_answer_t *ans = arg;
    msgpack_packer *pk = page_packer(ans->page);
    char kid[CPN_KID_LEN], cursor[CPN_CURSOR_MAX];
    cpn_key_id(n->peer, kid);
    msgpack_pack_map(pk, 8);
    mp_pack_ku64(pk, "id", (uint64_t)n->id);
    mp_pack_kstr(pk, "lease", n->lease_id);
    mp_pack_kstr(pk, "peer", kid);
    mp_pack_kstr(pk, "code", cpn_errname(n->code));
    mp_pack_kstr(pk, "reason", n->reason);
    mp_pack_ku64(pk, "effective_ms", n->effective_ms);
    mp_pack_ku64(pk, "units_left", n->units);
    mp_pack_kstr(pk, "replaced_by", n->replaced_by);
    snprintf(cursor, sizeof cursor, "%" PRId64, n->id);
    return page_take(ans->page, cursor) ? 0 : 1;
}

static int s_notices(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, s_answer_t *ans)
{
    char *end = NULL;
    long long after = 0;
    if (q->after[0]) {
        after = strtoll(q->after, &end, 10);
        if (q->after[0] < '0' || q->after[0] > '9' || *end || after < 0) {
            snprintf(ans->why, sizeof ans->why, "`after` is not a notices cursor (an id)");
            return CPN_E_INVAL;
        }
    }
    int r = ledger_notice_list(self->ledger, rx->env.from, cpn_identity_pk(self->id), after,
                               s_max_rows(q) + 1, s_notice_row, ans);
    if (r != CPN_OK) {
        snprintf(ans->why, sizeof ans->why, "the ledger could not list notices: %s",
                 cpn_strerror(r));
        return r;
    }
    return s_rows_done(ans);
}

/* ---- usage: the asker's USAGE records (an operator: everyone's), for `cpnctl bill`;
 * order (peer, lease id, n); cursor: <peer key hex>/<n decimal>/<lease id> ---- */

static int s_usage_row(const usage_cursor_t *c, const uint8_t *frame, size_t len, void *arg)
{
    s_answer_t *ans = arg;
    msgpack_packer *pk = page_packer(ans->page);
    char hex[S_HEX_LEN + 1], cursor[CPN_CURSOR_MAX];
    msgpack_pack_map(pk, 3);
    mp_pack_kstr(pk, "lease", c->lease_id);
    mp_pack_ku64(pk, "n", c->n);
    mp_pack_str(pk, "record");
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, frame, len);
    sodium_bin2hex(hex, sizeof hex, c->peer, CPN_PK_LEN);
    snprintf(cursor, sizeof cursor, "%s/%" PRIu32 "/%s", hex, c->n, c->lease_id);
    return page_take(ans->page, cursor) ? 0 : 1;
}

static int s_usage_cursor(const char *s, usage_cursor_t *c)
{
    char *end = NULL;
    size_t bin_len = 0;
    memset(c, 0, sizeof *c);
    if (strlen(s) < S_HEX_LEN + 3 || !s_is_hex(s, S_HEX_LEN) || s[S_HEX_LEN] != '/' ||
        s[S_HEX_LEN + 1] < '0' || s[S_HEX_LEN + 1] > '9' ||
        sodium_hex2bin(c->peer, CPN_PK_LEN, s, S_HEX_LEN, NULL, &bin_len, NULL) != 0 ||
        bin_len != CPN_PK_LEN)
        return CPN_E_INVAL;
    unsigned long v = strtoul(s + S_HEX_LEN + 1, &end, 10);
    if (*end != '/' || v > UINT32_MAX || strlen(end + 1) >= sizeof c->lease_id)
        return CPN_E_INVAL;
    c->n = (uint32_t)v;
    snprintf(c->lease_id, sizeof c->lease_id, "%s", end + 1);
    return CPN_OK;
}

static int s_usage(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, s_answer_t *ans)
{
    usage_cursor_t after;
    if (q->after[0] && s_usage_cursor(q->after, &after) != CPN_OK) {
        snprintf(ans->why, sizeof ans->why,
                 "`after` is not a usage cursor (peer key hex/n/lease id)");
        return CPN_E_INVAL;
    }
    const policy_tenant_t *t = policy_tenant(self->pol, rx->env.from);
    int r = usage_log_page(self->usage, t && t->is_operator ? NULL : rx->env.from,
                           q->after[0] ? &after : NULL, s_max_rows(q) + 1, s_usage_row, ans);
    if (r != CPN_OK) {
        snprintf(ans->why, sizeof ans->why, "the ledger could not list usage records: %s",
                 cpn_strerror(r));
        return r;
    }
    return s_rows_done(ans);
}

/* ---- federation: members by name; cursor: the member's name ---- */

typedef struct {
    const char *name;
    size_t i;
} s_member_ref_t;

static int s_member_cmp(const void *a, const void *b)
{
    return strcmp(((const s_member_ref_t *)a)->name, ((const s_member_ref_t *)b)->name);
}

static int s_federation(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q,
                        s_answer_t *ans)
{
    (void)rx;
    size_t n = federation_n_rows(self), m = 0;
    s_member_ref_t *refs = n ? malloc(n * sizeof *refs) : NULL;
    if (n && !refs) {
        snprintf(ans->why, sizeof ans->why, "out of memory listing %zu members", n);
        return CPN_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = federation_row_name(self, i);
        if (strcmp(name, q->after) > 0)
            refs[m++] = (s_member_ref_t){name, i};
    }
    if (m)
        qsort(refs, m, sizeof *refs, s_member_cmp);
    for (size_t k = 0; k < m; k++) {
        federation_row(self, refs[k].i, page_packer(ans->page));
        if (!page_take(ans->page, refs[k].name))
            break;
    }
    free(refs);
    return s_rows_done(ans);
}

/* ---- the table ---- */

static const struct {
    const char *what;
    unsigned who; /* Q_* bits: who may ask */
    bool rows;    /* an array of rows, in pages; else one map */
    s_answer_fn answer;
} s_queries[] = {
    {"status", Q_TENANT | Q_MEMBER, false, s_status},
    {"leases", Q_TENANT, true, s_leases}, /* the asker's own: a member has none */
    {"notices", Q_TENANT, true, s_notices}, /* the asker's own, for `cpnctl watch` */
    {"usage", Q_TENANT, true, s_usage}, /* the asker's own records; an operator's: all */
    {"offers", Q_OPERATOR | Q_MEMBER, true, s_offers},
    {"federation", Q_OPERATOR | Q_MEMBER, true, s_federation},
};

/* What the sender is to the policy, as Q_* bits (0: neither tenant nor member). */
static unsigned s_asker(const broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    unsigned who = 0;
    const policy_tenant_t *t = policy_tenant(self->pol, key);
    if (t)
        who |= Q_TENANT | (t->is_operator ? Q_OPERATOR : 0);
    if (policy_member(self->pol, key))
        who |= Q_MEMBER;
    return who;
}

/* Is the query allowed? CPN_OK, or the code and (in why) the reason for the NACK. */
static int s_allowed(const broker_t *self, const broker_rx_t *rx, const cpn_query_t *q, size_t *row,
                     char *why, size_t cap)
{
    size_t n = sizeof s_queries / sizeof s_queries[0];
    for (*row = 0; *row < n && strcmp(s_queries[*row].what, q->what) != 0; (*row)++)
        ;
    if (*row == n) {
        snprintf(why, cap,
                 "unknown query \"%s\": status, leases, notices, usage, offers or federation",
                 q->what);
        return CPN_E_INVAL;
    }
    unsigned who = s_asker(self, rx->env.from), may = s_queries[*row].who;
    if (who & may)
        return CPN_OK;
    if (!who) {
        snprintf(why, cap, "not a tenant or member of this broker's policy");
        return CPN_E_UNKNOWN_TENANT;
    }
    if ((who & Q_TENANT) && (may & Q_OPERATOR))
        snprintf(why, cap, "this query needs operator: true in the policy");
    else
        snprintf(why, cap, "\"%s\" is not a query federation members may ask", q->what);
    return CPN_E_ROLE;
}

void query_answer(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q)
{
    s_answer_t ans;
    uint8_t *frame = NULL;
    size_t len = 0, row = 0;
    msgpack_sbuffer data;
    memset(&ans, 0, sizeof ans);
    msgpack_sbuffer_init(&data);
    int r = s_allowed(self, rx, q, &row, ans.why, sizeof ans.why);
    if (r != CPN_OK)
        goto out;
    size_t frame_max = self->lim.max_frame < cpn_limits_default.max_str
                           ? self->lim.max_frame
                           : cpn_limits_default.max_str;
    size_t over = S_FRAME_OVERHEAD + (s_queries[row].rows ? S_NEXT_OVERHEAD : 0);
    ans.page =
        page_new(frame_max > over ? frame_max - over : 0, s_queries[row].rows ? s_max_rows(q) : 1);
    if (!ans.page) {
        r = CPN_E_NOMEM;
        snprintf(ans.why, sizeof ans.why, "out of memory");
        goto out;
    }
    if ((r = s_queries[row].answer(self, rx, q, &ans)) != CPN_OK)
        goto out;
    cpn_status_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.what, sizeof st.what, "%s", q->what);
    page_finish(ans.page, !s_queries[row].rows, &data);
    st.data.ptr = (const uint8_t *)data.data;
    st.data.len = data.size;
    if (page_more(ans.page))
        snprintf(st.next, sizeof st.next, "%s", page_next(ans.page));
    /* The page was bounded to fit; should the envelope still not fit, the client hears so. */
    if ((r = cpn_signer_build(&self->signer, CPN_MSG_STATUS, &st, &frame, &len)) != CPN_OK ||
        len > self->lim.max_frame) {
        snprintf(ans.why, sizeof ans.why,
                 "the answer (%zu bytes) does not fit in a frame (%zu bytes): %s", st.data.len,
                 self->lim.max_frame, r != CPN_OK ? cpn_errname(r) : "too-long");
        r = CPN_E_COUNT;
        goto out;
    }
    (void)broker_send_frame(self, rx->rid, rx->rid_len, frame, len);
out:
    if (r != CPN_OK) {
        log_info("query", "QUERY %s seq %" PRIu64 " refused: %s (%s)", q->what, rx->env.seq,
                 cpn_errname(r), ans.why);
        broker_count_refusal(self, r);
        broker_nack(self, rx->rid, rx->rid_len, q->what, rx->env.seq, r, ans.why);
    }
    free(frame);
    msgpack_sbuffer_destroy(&data);
    page_destroy(&ans.page);
}
