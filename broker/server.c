/* server.c - the broker's event loop: receive, verify, dispatch.
 *
 * Verify before read, in this order, each refusal counted by code and answered with an
 * ERROR where there is someone to answer (at most limits.rate.refusals a second per
 * connection): frame size; envelope structure; who the sender is
 * (tenant, trusted peer, federation member) and whether that role may send this type; the
 * sender's rate; the signature (through the cache, so the same bytes are never verified
 * twice); seq and timestamp (replay guard); only then the body is decoded and the handler
 * for the type runs.
 */
#include "msg_typed.h"
#include "server.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <zmq.h>

#include "broker.h"
#include "clock.h"
#include "federation.h"
#include "log.h"
#include "obs.h"
#include "service.h"
#include "notice.h"
#include "rematch.h"
#include "spend.h"
#include "usage_in.h"
#include "usage_log.h"

#define BROKER_TICK_MS 200 /* timers: claim timeouts, ttl expiry, lease expiry */
#define BROKER_STOP_LINGER_MS 1000 /* for the NACKs of requests in flight, at stop */
#define BROKER_STATUS_MS 10000 /* a STATUS= line for the service manager this often */

/* ---- handlers, one per type ---- */

typedef union {
    cpn_hello_t hello;
    cpn_ad_t ad;
    cpn_withdraw_t withdraw;
    cpn_request_t request;
    cpn_lease_t lease;
    cpn_nack_t nack;
    cpn_renew_t renew;
    cpn_release_t release;
    cpn_query_t query;
    cpn_error_t error;
    cpn_relay_t relay;
    cpn_forward_t forward;
    cpn_sync_t sync;
    cpn_resend_t resend;
    cpn_notice_t notice;
    cpn_status_t status;
    cpn_usage_t usage;
    cpn_meter_t meter;
    cpn_receipt_t receipt;
} s_body_t;

typedef void (*s_handler_fn)(broker_t *self, const broker_rx_t *rx, s_body_t *body);

static void s_on_hello(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    if (rx->roles & CPN_ROLE_BROKER)
        federation_on_hello(self, rx, &b->hello);
    else
        log_info("net", "HELLO from %s %s (%s)", b->hello.role, kid, b->hello.name);
}

static void s_on_ad(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    int r = book_put_ad(self->book, rx->env.from, rx->env.seq, rx->env.ts_ms, &b->ad,
                        rx->env.frame, rx->env.frame_len, NULL, 0);
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("book", "AD from %s seq %" PRIu64 " refused: %s", kid, rx->env.seq,
                 cpn_errname(r));
        return;
    }
    log_debug("book", "AD from %s (%s): %u packages, ttl %us", kid, b->ad.name,
              b->ad.n_packages, b->ad.ttl_s);
    claim_on_ad(self->claim, rx->env.from);
    federation_publish(self, rx->env.frame, rx->env.frame_len, 0, NULL);
}

static void s_on_withdraw(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    int r = book_withdraw_from(self->book, rx->env.from, rx->env.seq, rx->env.frame,
                               rx->env.frame_len, NULL, 0);
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    if (r != CPN_OK)
        broker_count_refusal(self, r);
    log_info("book", "WITHDRAW from %s: %s", kid, cpn_errname(r));
    if (r == CPN_OK)
        federation_publish(self, rx->env.frame, rx->env.frame_len, 0, NULL);
}

static void s_on_request(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    claim_on_request(self->claim, rx, &b->request);
}

static void s_on_lease(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    if (!rematch_on_lease(self, rx, &b->lease))
        claim_on_lease(self->claim, rx, &b->lease);
}

static void s_on_nack(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    if (!rematch_on_nack(self, rx, &b->nack))
        claim_on_nack(self->claim, rx, &b->nack);
}

static void s_on_renew(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    claim_on_tenant_op(self->claim, rx, b->renew.peer, b->renew.lease_id, b->renew.extend_s);
}

static void s_on_release(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    claim_on_tenant_op(self->claim, rx, b->release.peer, b->release.lease_id, 0);
}

static void s_on_query(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    query_answer(self, rx, &b->query);
}

/* A relayed AD replaced the peer's offers as a direct one does (s_on_ad): the units of CLAIMs
 * still in flight to that peer are held again. */
static void s_on_relay(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    uint8_t peer[CPN_PK_LEN];
    if (federation_on_relay(self, rx, &b->relay, peer))
        claim_on_ad(self->claim, peer);
}

static void s_on_forward(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    federation_on_forward(self, rx, &b->forward);
}

static void s_on_sync(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    federation_on_sync(self, rx, &b->sync);
}

/* A LEASE the peer sent before, in a fresh envelope (the outer one passed the replay guard).
 * The inner LEASE must be the same peer's and verify; its seq is not checked again: a LEASE
 * is idempotent (the same lease id, recorded once). Then it is handled as a LEASE. */
static void s_on_resend(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    broker_rx_t in = {.rid = rx->rid, .rid_len = rx->rid_len, .roles = rx->roles};
    cpn_lease_t lease;
    int r;
    if ((r = cpn_env_parse(b->resend.frame.ptr, b->resend.frame.len, &self->lim, &in.env)) !=
        CPN_OK)
        goto refuse;
    if (in.env.type == CPN_MSG_NOTICE) { /* a notice re-sent until we took it (notice.h) */
        notice_on_frame(self, rx, b->resend.frame.ptr, b->resend.frame.len);
        return;
    }
    if (in.env.type != CPN_MSG_LEASE) {
        r = CPN_E_SCHEMA;
        goto refuse;
    }
    if (memcmp(in.env.from, rx->env.from, CPN_PK_LEN) != 0) {
        r = CPN_E_UNTRUSTED;
        goto refuse;
    }
    if ((r = cpn_sigcache_verify(self->sigcache, &in.env)) != CPN_OK ||
        (r = cpn_lease_decode(&in.env, &self->lim, &lease)) != CPN_OK)
        goto refuse;
    if (!rematch_on_lease(self, &in, &lease))
        claim_on_lease(self->claim, &in, &lease);
    return;
refuse:
    broker_count_refusal(self, r);
    {
        char kid[CPN_KID_LEN];
        cpn_key_id(rx->env.from, kid);
        log_warn("intake", "RESEND from %s seq %" PRIu64 " refused: %s", kid, rx->env.seq,
                 cpn_errname(r));
    }
    broker_error(self, rx->rid, rx->rid_len, rx->env.seq, r,
                 "the re-sent LEASE does not verify");
}

static void s_on_notice(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    (void)b;
    notice_on_frame(self, rx, rx->env.frame, rx->env.frame_len);
}

/* A member's STATUS: the receipt for a notice we carried on to it. */
static void s_on_status(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    notice_on_receipt(self, rx, &b->status);
}

/* A USAGE record, bare (its own envelope passed the replay guard) or in a METER (a peer's
 * record sent again, or a member carrying it on): usage_in.h. */
static void s_on_usage(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    (void)b;
    usage_in_frame(self, rx, rx->env.frame, rx->env.frame_len, NULL, 0);
}

static void s_on_meter(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    usage_in_frame(self, rx, b->meter.usage.ptr, b->meter.usage.len, b->meter.lease.ptr,
                   b->meter.lease.len);
}

static void s_on_receipt(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    usage_in_receipt(self, rx, &b->receipt);
}

static void s_on_error(broker_t *self, const broker_rx_t *rx, s_body_t *b)
{
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    log_warn("net", "ERROR from %s: %s (%s)", kid, cpn_errname(b->error.code), b->error.reason);
}

/* Which handler runs for a type, and who may send it to a broker (narrower than
 * msg_schema.def's roles: e.g. only tenants send REQUEST here). */
typedef struct {
    cpn_msg_type_t type;
    unsigned roles;
    s_handler_fn fn;
} s_dispatch_t;

static const s_dispatch_t s_dispatch[] = {
    {CPN_MSG_HELLO, CPN_ROLE_PEER | CPN_ROLE_TENANT | CPN_ROLE_BROKER, s_on_hello},
    {CPN_MSG_AD, CPN_ROLE_PEER, s_on_ad},
    {CPN_MSG_WITHDRAW, CPN_ROLE_PEER, s_on_withdraw},
    {CPN_MSG_REQUEST, CPN_ROLE_TENANT, s_on_request},
    {CPN_MSG_LEASE, CPN_ROLE_PEER, s_on_lease},
    {CPN_MSG_NACK, CPN_ROLE_PEER, s_on_nack},
    {CPN_MSG_RENEW, CPN_ROLE_TENANT, s_on_renew},
    {CPN_MSG_RELEASE, CPN_ROLE_TENANT, s_on_release},
    {CPN_MSG_QUERY, CPN_ROLE_TENANT | CPN_ROLE_BROKER, s_on_query},
    {CPN_MSG_ERROR, CPN_ROLE_PEER | CPN_ROLE_TENANT | CPN_ROLE_BROKER, s_on_error},
    {CPN_MSG_RELAY, CPN_ROLE_BROKER, s_on_relay},
    {CPN_MSG_FORWARD, CPN_ROLE_BROKER, s_on_forward},
    {CPN_MSG_SYNC, CPN_ROLE_BROKER, s_on_sync},
    {CPN_MSG_RESEND, CPN_ROLE_PEER, s_on_resend},
    {CPN_MSG_NOTICE, CPN_ROLE_PEER, s_on_notice},
    {CPN_MSG_STATUS, CPN_ROLE_BROKER, s_on_status},
    {CPN_MSG_USAGE, CPN_ROLE_PEER, s_on_usage},
    {CPN_MSG_METER, CPN_ROLE_PEER | CPN_ROLE_BROKER, s_on_meter},
    {CPN_MSG_RECEIPT, CPN_ROLE_BROKER, s_on_receipt},
};

static const s_dispatch_t *s_find(cpn_msg_type_t type)
{
    for (size_t i = 0; i < sizeof s_dispatch / sizeof s_dispatch[0]; i++)
        if (s_dispatch[i].type == type)
            return &s_dispatch[i];
    return NULL;
}

static unsigned s_roles_of(const broker_t *self, const uint8_t pk[CPN_PK_LEN])
{
    unsigned roles = 0;
    if (policy_tenant(self->pol, pk))
        roles |= CPN_ROLE_TENANT;
    if (policy_member(self->pol, pk))
        roles |= CPN_ROLE_BROKER;
    if (policy_peer_trusted(self->pol, pk) && !(roles & CPN_ROLE_TENANT))
        roles |= CPN_ROLE_PEER;
    return roles;
}

/* The refusal for a sender whose role does not fit the type. */
static int s_role_refusal(cpn_msg_type_t type, unsigned roles)
{
    if (roles)
        return CPN_E_ROLE;
    switch (type) {
    case CPN_MSG_REQUEST:
    case CPN_MSG_RENEW:
    case CPN_MSG_RELEASE:
    case CPN_MSG_QUERY:
        return CPN_E_UNKNOWN_TENANT;
    default:
        return CPN_E_UNTRUSTED;
    }
}

/* May a refusal on this connection cost a signed ERROR? A token bucket per routing id
 * (limits.rate.refusals): garbage on an admitted connection buys at most that many signatures
 * a second; past it the refusal is counted and not answered. */
static bool s_refusal_answered(broker_t *self, const uint8_t *rid, size_t rid_len)
{
    uint8_t key[CPN_PK_LEN];
    crypto_generichash(key, sizeof key, rid, rid_len, NULL, 0);
    if (ratelimit_take(self->refusal_rate, key, cpn_mono_ms()) == CPN_OK)
        return true;
    self->stats.refusals_unanswered++;
    return false;
}

/* Everything between the bytes and the handler. Returns CPN_OK if the handler ran. */
static int s_intake(broker_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                    size_t len, const char *user_id)
{
    broker_rx_t rx = {.rid = rid, .rid_len = rid_len};
    const s_dispatch_t *d = NULL;
    bool parsed = false;
    s_body_t body;
    int r;
    uint64_t now = cpn_now_ms();
    memset(&body, 0, sizeof body);
    self->stats.received++;
    if ((r = cpn_env_parse(frame, len, &self->lim, &rx.env)) != CPN_OK)
        goto refuse;
    parsed = true;
    /* Over CURVE, a connection speaks only as the key it authenticated with: frames signed by
     * others travel embedded (RELAY, FORWARD, CLAIM), never as the outer envelope. */
    if (!zap_binds(user_id, rx.env.from)) {
        r = CPN_E_UNTRUSTED;
        goto refuse;
    }
    rx.roles = s_roles_of(self, rx.env.from);
    d = s_find(rx.env.type);
    if (!d || !(d->roles & rx.roles)) {
        r = d ? s_role_refusal(rx.env.type, rx.roles) : CPN_E_TYPE;
        goto refuse;
    }
    /* Members are not rate limited: what they send grows with the federation's peers (a SYNC
     * answer is one RELAY per offer), not with their own behaviour. */
    if ((!(rx.roles & CPN_ROLE_BROKER) &&
         (r = ratelimit_take(self->rate, rx.env.from, cpn_mono_ms())) != CPN_OK) ||
        (r = cpn_sigcache_verify(self->sigcache, &rx.env)) != CPN_OK ||
        (r = cpn_replay_check(self->replay, rx.env.from, rx.env.seq, rx.env.ts_ms, now)) !=
            CPN_OK ||
        (r = cpn_msg_decode(&rx.env, &self->lim, &body)) != CPN_OK)
        goto refuse;
    /* A peer or member is reached through the connection it last spoke on. */
    if (rx.roles & (CPN_ROLE_PEER | CPN_ROLE_BROKER))
        broker_route_set(self, rx.env.from, rid, rid_len);
    if (rx.roles & CPN_ROLE_BROKER)
        federation_seen(self, rx.env.from);
    self->stats.accepted++;
    d->fn(self, &rx, &body);
    if (rx.env.type == CPN_MSG_AD)
        cpn_ad_clear(&body.ad);
    return CPN_OK;
refuse:
    broker_count_refusal(self, r);
    {
        char kid[CPN_KID_LEN] = "?";
        if (parsed)
            cpn_key_id(rx.env.from, kid);
        log_warn("intake", "refused %s from %s (%zu bytes): %s",
                 parsed ? cpn_msg_name(rx.env.type) : "frame", kid, len, cpn_errname(r));
    }
    /* Answer what was refused, except to a flood (rate), except ERRORs (no ping-pong) and,
     * past limits.rate.refusals on this connection, at all (a signature each). */
    if (r != CPN_E_RATE && !(parsed && rx.env.type == CPN_MSG_ERROR) &&
        s_refusal_answered(self, rid, rid_len))
        broker_error(self, rid, rid_len, parsed ? rx.env.seq : 0, r, NULL);
    if (parsed && rx.env.type == CPN_MSG_AD)
        cpn_ad_clear(&body.ad);
    return r;
}

/* ---- life cycle ---- */

static int s_apply_limits(broker_t *self)
{
    const policy_limits_t *l = &self->pol->limits;
    self->lim = cpn_limits_default;
    self->lim.max_frame = l->frame_size;
    if (self->lim.max_str > l->frame_size)
        self->lim.max_str = l->frame_size;
    ledger_set_audit_max(self->ledger, l->audit_rows);
    int r = ratelimit_set(self->rate, l->rate_per_sender, l->rate_burst);
    return r != CPN_OK ? r : ratelimit_set(self->refusal_rate, l->rate_refusals, l->rate_refusals);
}

/* An answer back through the federation, to the claim module (federation.c calls this
 * through self->on_remote_answer and so never names claim.c). */
static void s_remote_answer(broker_t *self, const cpn_env_t *answer,
                            const broker_fwd_ref_t *ref)
{
    claim_on_remote_answer(self->claim, answer, ref);
}

/* ---- the claim module's ways out (claim.h): send.c and federation.c, on this broker ---- */

static int s_out_send(void *ctx, const uint8_t *rid, size_t rid_len, cpn_msg_type_t type,
                      const void *body)
{
    return broker_send(ctx, rid, rid_len, type, body);
}

static int s_out_send_frame(void *ctx, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                            size_t len)
{
    return broker_send_frame(ctx, rid, rid_len, frame, len);
}

static void s_out_nack(void *ctx, const uint8_t *rid, size_t rid_len, const char *ref,
                       uint64_t ref_seq, int code, const char *reason)
{
    broker_nack(ctx, rid, rid_len, ref, ref_seq, code, reason);
}

static int s_out_queue(void *ctx, outbox_item_t *item)
{
    return broker_queue(ctx, item);
}

static void s_out_queue_grant(void *ctx, const uint8_t *rid, size_t rid_len, uint8_t **frame_p,
                              size_t len, const char *ref, uint64_t ref_seq)
{
    broker_queue_grant(ctx, rid, rid_len, frame_p, len, ref, ref_seq);
}

static void s_out_count_refusal(void *ctx, int code)
{
    broker_count_refusal(ctx, code);
}

static const broker_route_t *s_out_route(void *ctx, const uint8_t key[CPN_PK_LEN])
{
    return broker_route(ctx, key);
}

static int s_out_forward(void *ctx, const uint8_t via[CPN_PK_LEN], const uint8_t *frame,
                         size_t len, const broker_fwd_ref_t *ref)
{
    return federation_forward(ctx, via, frame, len, ref);
}

static bool s_out_peer_answer(void *ctx, const cpn_env_t *answer, uint64_t claim_seq,
                              const uint8_t *tenant, const char *req_id, const char *lease_id)
{
    return federation_peer_answer(ctx, answer, claim_seq, tenant, req_id, lease_id);
}

/* The claim module, given what it touches of this broker and nothing else. */
static claim_t *s_claim_new(broker_t *self)
{
    claim_svc_t svc = {
        .out = {.ctx = self,
                .send = s_out_send,
                .send_frame = s_out_send_frame,
                .nack = s_out_nack,
                .queue = s_out_queue,
                .queue_grant = s_out_queue_grant,
                .count_refusal = s_out_count_refusal,
                .route = s_out_route,
                .forward = s_out_forward,
                .peer_answer = s_out_peer_answer},
        .ledger = self->ledger,
        .spend = self->spend,
        .book = self->book,
        .pol = &self->pol,
        .lim = &self->lim,
        .sigcache = self->sigcache,
        .signer = &self->signer,
        .stats = &self->stats,
        .obs = &self->obs,
    };
    return claim_new(&svc, self->pol->limits.max_pending, NULL);
}

int server_new(const char *policy_path, broker_t **out)
{
    broker_t *self = calloc(1, sizeof *self);
    yconf_t *doc = NULL;
    int r;
    if (!self)
        return CPN_E_NOMEM;
    if ((r = policy_load(policy_path, &self->pol, &doc)) != CPN_OK) {
        if (doc)
            yconf_print_errors(doc, stderr);
        goto out;
    }
    const policy_t *p = self->pol;
    if ((r = cpn_identity_load(p->broker.key_path, &self->id)) != CPN_OK) {
        log_error("broker", "%s: %s", p->broker.key_path, cpn_strerror(r));
        goto out;
    }
    self->signer.id = self->id;
    r = CPN_E_NOMEM;
    self->routes = calloc(BROKER_ROUTES_MAX, sizeof *self->routes);
    self->rematch = rematch_new();
    self->book = book_new(p->limits.max_offers);
    self->replay = cpn_replay_new(p->limits.replay_capacity, p->limits.skew_s * 1000);
    self->sigcache = cpn_sigcache_new(1u << 16);
    self->rate = ratelimit_new(p->limits.rate_per_sender, p->limits.rate_burst,
                               p->limits.rate_senders);
    self->refusal_rate =
        ratelimit_new(p->limits.rate_refusals, p->limits.rate_refusals, p->limits.rate_senders);
    self->zctx = zmq_ctx_new();
    self->outbox = outbox_new();
    if (!self->routes || !self->rematch || !self->book || !self->replay || !self->sigcache ||
        !self->rate || !self->refusal_rate || !self->zctx || !self->outbox)
        goto out;
    if ((r = ledger_open(p->broker.ledger_path, &self->ledger)) != CPN_OK) {
        log_error("broker", "ledger %s: %s", p->broker.ledger_path, cpn_strerror(r));
        goto out;
    }
    if ((r = spend_open(self->ledger, &self->spend)) != CPN_OK)
        goto out;
    if (!(self->claim = s_claim_new(self))) { /* after the book, the ledger, the sigcache,
                                                 the spend reader */
        r = CPN_E_NOMEM;
        goto out;
    }
    if ((r = usage_log_open(self->ledger, &self->usage)) != CPN_OK ||
        (r = s_apply_limits(self)) != CPN_OK)
        goto out;
    cpn_curve_t curve = {.enabled = p->broker.curve, .self = self->id};
    if (p->broker.curve && (r = zap_open(self)) != CPN_OK)
        goto out;
    /* Large answers (offers, status) leave through this socket; incoming frames are bounded
     * by ZMQ_MAXMSGSIZE = the policy's frame_size. */
    if ((r = cpn_sock_router(self->zctx, p->broker.listen, p->limits.frame_size, &curve,
                             &self->router)) != CPN_OK)
        goto out;
    int handover = 1; /* a reconnecting client with the same identity takes over its route */
    zmq_setsockopt(self->router, ZMQ_ROUTER_HANDOVER, &handover, sizeof handover);
    self->on_remote_answer = s_remote_answer; /* federation -> claim, wired here */
    self->on_notice = notice_on_frame;        /* federation -> notice */
    if ((r = federation_new(self)) != CPN_OK)
        goto out;
    self->started_ms = cpn_now_ms();
    if (p->broker.http[0] && (r = obs_new(self, p->broker.http, &self->obs)) != CPN_OK)
        goto out;
    char kid[CPN_KID_LEN];
    cpn_key_id(cpn_identity_pk(self->id), kid);
    log_info("broker", "%s (%s) listening on %s%s", p->broker.name, kid, p->broker.listen,
             p->broker.curve ? " with CURVE" : " in plain TCP (policy says curve: false)");
    r = CPN_OK;
out:
    yconf_destroy(&doc);
    if (r != CPN_OK)
        server_destroy(&self);
    *out = self;
    return r;
}

void server_destroy(broker_t **self_p)
{
    broker_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    obs_destroy(&self->obs); /* first: its thread reads nothing of ours, but waits on us */
    self->recent = NULL;
    federation_destroy(self);
    if (self->router)
        zmq_close(self->router);
    if (self->zap)
        zmq_close(self->zap);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    claim_destroy(&self->claim);
    rematch_destroy(&self->rematch);
    free(self->routes);
    outbox_destroy(&self->outbox);
    book_destroy(&self->book);
    cpn_replay_destroy(&self->replay);
    cpn_sigcache_destroy(&self->sigcache);
    ratelimit_destroy(&self->rate);
    ratelimit_destroy(&self->refusal_rate);
    spend_destroy(&self->spend);
    usage_log_destroy(&self->usage);
    ledger_destroy(&self->ledger);
    cpn_identity_destroy(&self->id);
    policy_destroy(&self->pol);
    free(self);
    *self_p = NULL;
}

/* SIGHUP: a policy that fails validation, or changes what needs a restart, is refused and
 * the running one stays. */
static void s_reload(broker_t *self)
{
    cpn_service_reloading();
    policy_t *neu = NULL;
    yconf_t *doc = NULL;
    int r = policy_load(self->pol->path, &neu, &doc);
    const char *restart = r == CPN_OK ? policy_restart_needed(self->pol, neu) : NULL;
    if (r != CPN_OK || restart) {
        if (doc)
            yconf_print_errors(doc, stderr);
        self->stats.reloads_failed++;
        log_error("policy", "reload of %s refused (%s); the running policy stays",
                  self->pol->path, restart ? restart : cpn_strerror(r));
        if (restart)
            log_error("policy", "%s needs a restart: the new value cannot be applied live",
                      restart);
        policy_destroy(&neu);
        yconf_destroy(&doc);
        cpn_service_ready("reload of %s refused (%s); the running policy stays",
                          self->pol->path, restart ? restart : cpn_strerror(r));
        return;
    }
    policy_destroy(&self->pol);
    self->pol = neu;
    yconf_destroy(&doc);
    if (s_apply_limits(self) != CPN_OK)
        log_error("policy", "rate limits of the new policy not applied");
    federation_reload(self);
    self->stats.reloads++;
    log_info("policy", "reloaded %s: %zu tenants, %zu members", self->pol->path,
             self->pol->n_tenants, self->pol->federation.n_members);
    cpn_service_ready("policy reloaded: %zu tenants, %zu members", self->pol->n_tenants,
                      self->pol->federation.n_members);
}

/* What `systemctl status` shows between events: the counters since the start. */
static void s_service_status(broker_t *self, uint64_t mono)
{
    if (mono < self->next_status_mono)
        return;
    self->next_status_mono = mono + BROKER_STATUS_MS;
    cpn_service_status("%s on %s: %" PRIu64 " requests, %" PRIu64 " leases granted, %" PRIu64
                       " NACKs, %" PRIu64 " messages not accepted",
                       self->pol->broker.name, self->pol->broker.listen, self->stats.requests,
                       self->stats.grants, self->stats.nacks,
                       self->stats.received - self->stats.accepted);
}

static void s_tick(broker_t *self)
{
    uint64_t now = cpn_now_ms(), mono = cpn_mono_ms();
    size_t gone = book_expire(self->book, now);
    if (gone)
        log_info("book", "%zu peers expired (ttl passed without a new AD)", gone);
    uint64_t ended = 0;
    if (ledger_expire(self->ledger, now, &ended) == CPN_OK && ended)
        log_info("ledger", "%" PRIu64 " leases ended", ended);
    /* An intent whose every possible lease has ended settles nothing any more: with the
     * peer's clock up to skew_s ahead of ours, a CLAIM with deadline d can be granted until
     * our d + skew, and that lease ends duration_s later (docs/PROTOCOL.md). */
    uint64_t skew_ms = (uint64_t)self->pol->limits.skew_s * 1000, dropped = 0;
    if (now > skew_ms && ledger_intent_expire(self->ledger, now - skew_ms, &dropped) == CPN_OK &&
        dropped)
        log_info("ledger", "%" PRIu64 " intents dropped: any lease from them has ended", dropped);
    claim_tick(self->claim, mono);
    notice_tick(self, now);
    usage_in_tick(self, now);
    rematch_tick(self, now);
    federation_tick(self, mono);
    if (self->obs)
        obs_tick(self->obs, self, mono);
    s_service_status(self, mono);
}

/* The ledger records what one loop pass did in one transaction, and what leaves because of
 * it waits in the outbox until that transaction has committed: a CLAIM leaves only once its
 * intent is on disk, a GRANT only once its lease is (docs/PROTOCOL.md, "Exactly one lease per
 * request"). So a pass that queued something commits at its end (group commit: one fsync for
 * everything the pass produced); a pass that only wrote what nobody waits for (audit rows,
 * expiries) lets the transaction run on for up to BROKER_COMMIT_MS, as before. */
static void s_tx_begin(broker_t *self)
{
    if (!self->tx_open && ledger_begin(self->ledger) == CPN_OK) {
        self->tx_open = true;
        self->tx_since_mono = cpn_mono_ms();
    }
}

static void s_send_item(const outbox_item_t *it, void *arg)
{
    broker_t *self = arg;
    int r;
    if (it->kind == OUTBOX_RECEIPT && it->remote) { /* to a member: on our link to it */
        if (federation_send_frame(self, it->via, it->frame, it->len) != CPN_OK)
            log_debug("usage", "receipt not sent: the link is down (the member sends again)");
        return;
    }
    if (it->kind == OUTBOX_GRANT || it->kind == OUTBOX_RECEIPT || it->kind == OUTBOX_HOME_CLAIM) {
        (void)broker_send_frame(self, it->rid, it->rid_len, it->frame, it->len);
        return;
    }
    if (it->remote) {
        broker_fwd_ref_t ref = {.kind = CPN_MSG_CLAIM, .claim_seq = it->claim_seq};
        memcpy(ref.peer, it->peer, CPN_PK_LEN);
        r = federation_forward(self, it->via, it->frame, it->len, &ref);
    } else
        r = broker_send_frame(self, it->rid, it->rid_len, it->frame, it->len);
    if (r == CPN_OK)
        self->stats.claims_sent++;
    else
        claim_on_unsent(self->claim, it->claim_seq, true, r);
}

static void s_refuse_item(const outbox_item_t *it, void *arg)
{
    broker_t *self = arg;
    if (it->kind == OUTBOX_RECEIPT || it->kind == OUTBOX_HOME_CLAIM)
        return; /* not recorded: its sender sends it again (a notice; a CLAIM, at its timeout) */
    if (it->kind == OUTBOX_GRANT)
        broker_nack(self, it->rid, it->rid_len, it->ref, it->ref_seq, CPN_E_DB,
                    "the broker could not record the lease (ledger commit failed); the peer "
                    "holds it: send the same request again");
    else
        claim_on_unsent(self->claim, it->claim_seq, false, CPN_E_DB);
}

/* Commit if something waits for it (or `now`, or the transaction is BROKER_COMMIT_MS old),
 * then send what waited, or refuse it if the commit failed. claim_on_unsent may queue a CLAIM
 * to the next candidate: that one waits for the next pass's commit. */
static void s_tx_commit(broker_t *self, bool now)
{
    bool waiting = outbox_len(self->outbox) > 0, ok = true;
    if (self->tx_open) {
        if (!now && !waiting && cpn_mono_ms() < self->tx_since_mono + BROKER_COMMIT_MS)
            return;
        self->tx_open = false;
        uint64_t t0 = self->obs ? cpn_mono_us() : 0; /* the clock only while observed */
        int rc = ledger_commit(self->ledger);
        if (t0)
            cpn_hist_observe(&self->stats.ledger_commit, cpn_mono_us() - t0);
        if (rc != CPN_OK) {
            ok = false;
            self->stats.commit_failures++;
            log_error("ledger", "commit failed: %zu answers waiting for it refused",
                      outbox_len(self->outbox));
        }
    }
    if (waiting)
        (void)outbox_drain(self->outbox, ok ? s_send_item : s_refuse_item, self);
}

/* The tick, or sooner if the batch window must be matched or the ledger committed. */
static int s_poll_ms(const broker_t *self)
{
    uint64_t due = claim_window_deadline(self->claim), now = cpn_mono_ms();
    uint64_t commit = self->tx_since_mono + BROKER_COMMIT_MS;
    if (outbox_len(self->outbox) > 0)
        return 0; /* queued while the last one drained: commit and send it now */
    if (self->tx_open && (due == WINDOW_NEVER || due > commit))
        due = commit;
    int wd = cpn_service_watchdog_timeout(now); /* -1 outside systemd's watchdog */
    if (wd >= 0 && (due == WINDOW_NEVER || due > now + (uint64_t)wd))
        due = now + (uint64_t)wd;
    if (due == WINDOW_NEVER || due >= now + BROKER_TICK_MS)
        return BROKER_TICK_MS;
    return due <= now ? 0 : (int)(due - now);
}

int server_run(broker_t *self)
{
    int rc = CPN_OK;
    uint8_t rid[CPN_RID_MAX];
    /* The ROUTER, the ZAP socket, then one link per federation member. */
    zmq_pollitem_t items[2 + POLICY_MEMBERS_MAX];
    /* Sockets are bound and the ledger open (server_new): tell the service manager. */
    cpn_service_init(cpn_mono_ms());
    cpn_service_ready("%s listening on %s: %zu tenants, %zu members", self->pol->broker.name,
                      self->pol->broker.listen, self->pol->n_tenants,
                      self->pol->federation.n_members);
    while (!self->stop) {
        if (self->reload) {
            self->reload = 0;
            s_reload(self);
        }
        size_t n = 0;
        memset(items, 0, 2 * sizeof items[0]);
        items[n].socket = self->router;
        items[n++].events = ZMQ_POLLIN;
        if (self->zap) {
            items[n].socket = self->zap;
            items[n++].events = ZMQ_POLLIN;
        }
        size_t n_links = federation_pollitems(self, items + n, POLICY_MEMBERS_MAX);
        if (zmq_poll(items, (int)(n + n_links), s_poll_ms(self)) < 0 && zmq_errno() != EINTR) {
            rc = CPN_E_IO; /* still answer the batch window below */
            break;
        }
        if (self->zap && (items[1].revents & ZMQ_POLLIN))
            zap_handle(self);
        s_tx_begin(self); /* answers through the federation are recorded too */
        if (n_links)
            federation_readable(self, items + n, n_links);
        if (items[0].revents & ZMQ_POLLIN) {
            for (int i = 0; i < BROKER_BATCH; i++) {
                uint8_t *frame = NULL;
                size_t len = 0, rid_len = 0;
                char user_id[3 + 2 * CPN_PK_LEN + 1];
                int r = cpn_recv_prop(self->router, 1, rid, &rid_len, &frame, &len, "User-Id",
                                      user_id, sizeof user_id);
                if (r == CPN_E_TIMEOUT)
                    break;
                if (r == CPN_OK)
                    (void)s_intake(self, rid, rid_len, frame, len, self->zap ? user_id : NULL);
                else
                    broker_count_refusal(self, r);
                free(frame);
            }
        }
        uint64_t mono = cpn_mono_ms();
        cpn_service_watchdog(mono); /* the loop turns: this pass got here */
        if (mono >= self->next_tick_mono) {
            self->next_tick_mono = mono + BROKER_TICK_MS;
            s_tick(self);
        }
        /* Stopping: what waits in the window gets its NACK busy from claim_stop below. A CLAIM
         * sent now could only be answered after we are gone: the peer would hold a lease the
         * tenant was told to ask for again. */
        if (!self->stop)
            claim_window_poll(self->claim, mono);
        s_tx_commit(self, false);
        if (self->obs)
            obs_turn(self->obs, self); /* a snapshot, only if a reader waits for one */
    }
    log_info("broker", "stopping");
    cpn_service_stopping();
    /* Requests in flight get a NACK, not silence; the router's linger is 0, so give those
     * NACKs a moment to leave before the socket closes. */
    s_tx_begin(self);
    if (claim_stop(self->claim) > 0) {
        int linger = BROKER_STOP_LINGER_MS;
        zmq_setsockopt(self->router, ZMQ_LINGER, &linger, sizeof linger);
    }
    s_tx_commit(self, true);
    return rc;
}

void server_request_stop(broker_t *self)
{
    self->stop = 1;
}

void server_request_reload(broker_t *self)
{
    self->reload = 1;
}
