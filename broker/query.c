/* query.c - STATUS answers to QUERY: status, offers, leases, federation.
 *
 * Each answer is one msgpack object in STATUS.data: a map (status) or an array of row maps,
 * which cpnctl prints as a table or as JSON. Rows are bounded (QUERY_ROWS_MAX) so an answer
 * always fits in one frame; `truncated` says when rows were left out.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "federation.h"
#include "log.h"
#include "units.h"

#define QUERY_ROWS_MAX 2000

static void s_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    mp_pack_kstr(pk, k, v);
}

static void s_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    mp_pack_ku64(pk, k, v);
}

static void s_status(broker_t *self, msgpack_packer *pk)
{
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
    msgpack_pack_map(pk, 23 + FED_STATUS_KEYS);
    s_kv_str(pk, "name", self->pol->broker.name);
    s_kv_str(pk, "key", kid);
    s_kv_str(pk, "version", PACKAGE_VERSION);
    s_kv_u64(pk, "uptime_s", (cpn_now_ms() - self->started_ms) / 1000);
    s_kv_u64(pk, "peers", bs.peers);
    s_kv_u64(pk, "packages", bs.packages);
    s_kv_u64(pk, "free_units", bs.free_units);
    s_kv_u64(pk, "requests", self->stats.requests);
    s_kv_u64(pk, "requests_in_flight", self->n_pending);
    s_kv_u64(pk, "grants", self->stats.grants);
    s_kv_u64(pk, "nacks", self->stats.nacks);
    s_kv_u64(pk, "claims_sent", self->stats.claims_sent);
    s_kv_u64(pk, "claim_timeouts", self->stats.claim_timeouts);
    s_kv_u64(pk, "claims_in_doubt", intents);
    s_kv_u64(pk, "requests_in_doubt", self->stats.in_doubt);
    s_kv_u64(pk, "ledger_commit_failures", self->stats.commit_failures);
    s_kv_u64(pk, "leases_active", lc.active);
    s_kv_u64(pk, "units_leased", lc.active_units);
    s_kv_u64(pk, "messages_received", self->stats.received);
    s_kv_u64(pk, "messages_accepted", self->stats.accepted);
    s_kv_u64(pk, "refusals_unanswered", self->stats.refusals_unanswered);
    s_kv_u64(pk, "policy_reloads", self->stats.reloads);
    federation_status(self, pk);
    mp_pack_str(pk, "refused");
    msgpack_pack_map(pk, n_refused);
    for (int i = 1; i < BROKER_ERR_SLOTS; i++)
        if (self->stats.refused[i])
            s_kv_u64(pk, cpn_errname(-i), self->stats.refused[i]);
}

static void s_offers(broker_t *self, msgpack_packer *pk)
{
    size_t cur = 0, rows = 0;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL)
        rows += bp->withdrawn ? 0 : bp->n_packages;
    if (rows > QUERY_ROWS_MAX)
        rows = QUERY_ROWS_MAX;
    msgpack_pack_array(pk, rows);
    uint64_t now = cpn_now_ms();
    cur = 0;
    size_t done = 0;
    while (done < rows && (bp = book_next(self->book, &cur)) != NULL) {
        for (uint32_t i = 0; !bp->withdrawn && i < bp->n_packages && done < rows; i++, done++) {
            const cpn_package_t *p = &bp->packages[i];
            char kid[CPN_KID_LEN], via[CPN_KID_LEN], price[32], accel[96];
            static const uint8_t zero[CPN_PK_LEN];
            cpn_key_id(bp->key, kid);
            if (memcmp(bp->via, zero, CPN_PK_LEN) == 0)
                snprintf(via, sizeof via, "local");
            else
                cpn_key_id(bp->via, via);
            cpn_fmt_price(p->price, price, sizeof price);
            if (p->accel.count)
                snprintf(accel, sizeof accel, "%ux%s", p->accel.count, p->accel.model);
            else
                snprintf(accel, sizeof accel, "-");
            msgpack_pack_map(pk, 10);
            s_kv_str(pk, "peer", kid);
            s_kv_str(pk, "name", bp->name);
            s_kv_str(pk, "package", p->id);
            s_kv_str(pk, "accelerators", accel);
            s_kv_str(pk, "region", p->region);
            s_kv_str(pk, "price", price);
            s_kv_u64(pk, "free", p->free);
            s_kv_u64(pk, "total", p->total);
            s_kv_str(pk, "via", via);
            s_kv_u64(pk, "expires_s", bp->expires_ms > now ? (bp->expires_ms - now) / 1000 : 0);
        }
    }
}

typedef struct {
    msgpack_packer *pk;
    uint64_t now;
} s_lease_ctx_t;

static int s_lease_row(const ledger_lease_t *l, void *arg)
{
    s_lease_ctx_t *ctx = arg;
    char kid[CPN_KID_LEN], price[32], left[32];
    cpn_key_id(l->peer, kid);
    cpn_fmt_price(l->price, price, sizeof price);
    cpn_fmt_duration(l->end_ms > ctx->now ? (l->end_ms - ctx->now) / 1000 : 0, left,
                     sizeof left);
    msgpack_pack_map(ctx->pk, 8);
    s_kv_str(ctx->pk, "lease", l->lease_id);
    s_kv_str(ctx->pk, "request", l->request_id);
    s_kv_str(ctx->pk, "peer", kid);
    s_kv_str(ctx->pk, "package", l->package);
    s_kv_u64(ctx->pk, "units", l->units);
    s_kv_str(ctx->pk, "price", price);
    s_kv_str(ctx->pk, "state", l->state);
    s_kv_str(ctx->pk, "ends_in", left);
    return 0;
}

static int s_count_row(const ledger_lease_t *l, void *arg)
{
    (void)l;
    (*(size_t *)arg)++;
    return 0;
}

static void s_leases(broker_t *self, const uint8_t tenant[CPN_PK_LEN], msgpack_packer *pk)
{
    size_t n = 0;
    uint64_t now = cpn_now_ms();
    if (ledger_list(self->ledger, tenant, false, now, QUERY_ROWS_MAX, s_count_row, &n) != CPN_OK)
        n = 0;
    msgpack_pack_array(pk, n);
    s_lease_ctx_t ctx = {pk, now};
    size_t written = 0;
    if (n && ledger_list(self->ledger, tenant, false, now, n, s_lease_row, &ctx) == CPN_OK)
        written = n;
    /* The array header promised n rows: pad if the second walk found fewer. */
    for (; written < n; written++)
        msgpack_pack_nil(pk);
}

/* Members with the state of their links and how many offers came through each. */
static void s_federation(broker_t *self, msgpack_packer *pk)
{
    federation_rows(self, pk);
}

void query_answer(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q)
{
    int r = (rx->roles & CPN_ROLE_BROKER) ? CPN_OK
                                          : policy_query_allowed(self->pol, rx->env.from, q->what);
    if (r != CPN_OK) {
        broker_nack(self, rx->rid, rx->rid_len, q->what, rx->env.seq, r,
                    r == CPN_E_ROLE ? "this query needs operator: true in the policy" : NULL);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (strcmp(q->what, "status") == 0)
        s_status(self, &pk);
    else if (strcmp(q->what, "offers") == 0)
        s_offers(self, &pk);
    else if (strcmp(q->what, "leases") == 0)
        s_leases(self, rx->env.from, &pk);
    else
        s_federation(self, &pk);
    cpn_status_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.what, sizeof st.what, "%s", q->what);
    st.data.ptr = (const uint8_t *)sb.data;
    st.data.len = sb.size;
    (void)broker_send(self, rx->rid, rx->rid_len, CPN_MSG_STATUS, &st);
    msgpack_sbuffer_destroy(&sb);
}
