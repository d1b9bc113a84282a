/* claim_fake_send.c - the claim module's ways out (claim_out_t, claim.h) for
 * tests/test_claim.c: nothing is signed onto a socket; every way out is captured in g_sent, so
 * a test reads what the claim module would have sent, in order. No broker behind it: the
 * context is the test's counters (broker_stats_t), and routes are a small table here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claim_fake_send.h"

fake_sent_t g_sent[FAKE_SENT_MAX];
size_t g_n_sent;
uint64_t g_refusals;
static broker_route_t s_routes[8];

static fake_sent_t *s_slot(void)
{
    if (g_n_sent >= FAKE_SENT_MAX)
        return NULL;
    fake_sent_t *s = &g_sent[g_n_sent++];
    memset(s, 0, sizeof *s);
    return s;
}

void fake_reset(void)
{
    for (size_t i = 0; i < g_n_sent; i++)
        free(g_sent[i].frame);
    g_n_sent = 0;
    g_refusals = 0;
    memset(s_routes, 0, sizeof s_routes);
}

static void s_count_refusal(void *ctx, int code)
{
    (void)ctx;
    (void)code;
    g_refusals++;
}

static int s_send_frame(void *ctx, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                        size_t len)
{
    (void)ctx;
    (void)rid;
    (void)rid_len;
    fake_sent_t *s = s_slot();
    if (s) {
        s->kind = FAKE_FRAME;
        s->frame = malloc(len);
        if (s->frame)
            memcpy(s->frame, frame, len);
        s->len = len;
    }
    return CPN_OK;
}

static int s_send(void *ctx, const uint8_t *rid, size_t rid_len, cpn_msg_type_t type,
                  const void *body)
{
    (void)ctx;
    (void)rid;
    (void)rid_len;
    (void)body;
    fake_sent_t *s = s_slot();
    if (s) {
        s->kind = FAKE_MSG;
        s->type = type;
    }
    return CPN_OK;
}

static void s_nack(void *ctx, const uint8_t *rid, size_t rid_len, const char *ref, uint64_t ref_seq,
                   int code, const char *reason)
{
    broker_stats_t *stats = ctx;
    (void)rid;
    (void)rid_len;
    stats->nacks++;
    fake_sent_t *s = s_slot();
    if (s) {
        s->kind = FAKE_NACK;
        s->type = CPN_MSG_NACK;
        snprintf(s->ref, sizeof s->ref, "%s", ref ? ref : "");
        s->ref_seq = ref_seq;
        s->code = code;
        snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "");
    }
}

static int s_queue(void *ctx, outbox_item_t *item)
{
    (void)ctx;
    fake_sent_t *s = s_slot();
    if (!s) {
        free(item->frame);
        item->frame = NULL;
        return CPN_E_NOMEM;
    }
    s->kind = item->kind == OUTBOX_CLAIM ? FAKE_CLAIM : FAKE_GRANT;
    s->type = item->kind == OUTBOX_CLAIM ? CPN_MSG_CLAIM : CPN_MSG_GRANT;
    s->frame = item->frame;
    s->len = item->len;
    item->frame = NULL;
    s->claim_seq = item->claim_seq;
    memcpy(s->peer, item->peer, CPN_PK_LEN);
    snprintf(s->ref, sizeof s->ref, "%s", item->ref);
    s->ref_seq = item->ref_seq;
    return CPN_OK;
}

static void s_queue_grant(void *ctx, const uint8_t *rid, size_t rid_len, uint8_t **frame_p,
                          size_t len, const char *ref, uint64_t ref_seq)
{
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    it.kind = OUTBOX_GRANT;
    memcpy(it.rid, rid, rid_len);
    it.rid_len = rid_len;
    it.frame = *frame_p;
    it.len = len;
    *frame_p = NULL;
    snprintf(it.ref, sizeof it.ref, "%s", ref ? ref : "");
    it.ref_seq = ref_seq;
    (void)s_queue(ctx, &it);
}

void fake_route_set(const uint8_t key[CPN_PK_LEN], const uint8_t *rid, size_t rid_len)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++)
        if (!s_routes[i].used || memcmp(s_routes[i].key, key, CPN_PK_LEN) == 0) {
            s_routes[i].used = true;
            memcpy(s_routes[i].key, key, CPN_PK_LEN);
            memcpy(s_routes[i].rid, rid, rid_len);
            s_routes[i].rid_len = rid_len;
            return;
        }
}

static const broker_route_t *s_route(void *ctx, const uint8_t key[CPN_PK_LEN])
{
    (void)ctx;
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++)
        if (s_routes[i].used && memcmp(s_routes[i].key, key, CPN_PK_LEN) == 0)
            return &s_routes[i];
    return NULL;
}

/* The test has no federation: no offer comes through a member, no answer is carried. */
static int s_forward(void *ctx, const uint8_t member[CPN_PK_LEN], const uint8_t *frame, size_t len,
                     const broker_fwd_ref_t *ref)
{
    (void)ctx;
    (void)member;
    (void)frame;
    (void)len;
    (void)ref;
    return CPN_E_UNREACHABLE;
}

static bool s_peer_answer(void *ctx, const cpn_env_t *answer, uint64_t claim_seq,
                          const uint8_t *tenant, const char *request_id, const char *lease_id)
{
    (void)ctx;
    (void)answer;
    (void)claim_seq;
    (void)tenant;
    (void)request_id;
    (void)lease_id;
    return false;
}

claim_out_t fake_out(broker_stats_t *stats)
{
    return (claim_out_t){.ctx = stats,
                         .send = s_send,
                         .send_frame = s_send_frame,
                         .nack = s_nack,
                         .queue = s_queue,
                         .queue_grant = s_queue_grant,
                         .count_refusal = s_count_refusal,
                         .route = s_route,
                         .forward = s_forward,
                         .peer_answer = s_peer_answer};
}
