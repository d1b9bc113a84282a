/* chain.c - the one opener of signed chains (chain.h). */
#include "chain.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "msg_typed.h"
#include "usage.h"

typedef struct {
    const cpn_chain_opts_t *o;
    const cpn_limits_t *lim;
    cpn_chain_t *ch;
} s_ctx_t;

static int s_fail(s_ctx_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int s_fail(s_ctx_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->ch->why, sizeof c->ch->why, fmt, ap);
    va_end(ap);
    return code;
}

static bool s_key_eq(const uint8_t *a, const uint8_t *b)
{
    return sodium_memcmp(a, b, CPN_PK_LEN) == 0;
}

/* One frame of the chain, in the order "verify before read" asks: structure, type, signature,
 * signer. `what` names the level in the reason ("the GRANT", "the CLAIM's REQUEST"). */
static int s_frame(s_ctx_t *c, const uint8_t *frame, size_t len, cpn_msg_type_t want,
                   const char *what, bool verify, const uint8_t *signer, cpn_env_t *env)
{
    int r;
    if (len == 0 || !frame)
        return s_fail(c, CPN_E_SCHEMA, "%s is missing", what);
    if ((r = cpn_env_parse(frame, len, c->lim, env)) != CPN_OK)
        return s_fail(c, r, "%s: malformed envelope (%s)", what, cpn_errname(r));
    if (env->type != want)
        return s_fail(c, CPN_E_WRONG_TYPE, "%s is a %s, not a %s", what, cpn_msg_name(env->type),
                      cpn_msg_name(want));
    if (verify && (r = cpn_sigcache_verify(c->o->sigcache, env)) != CPN_OK)
        return s_fail(c, r, "%s: signature does not verify", what);
    if (signer && !s_key_eq(env->from, signer))
        return s_fail(c, CPN_E_UNTRUSTED, "%s is not signed by the expected key", what);
    return CPN_OK;
}

/* The CLAIM's route (see chain.h). Fills n_forwards, origin_env, origin and brokers[]. */
static int s_route(s_ctx_t *c)
{
    cpn_chain_t *ch = c->ch;
    uint32_t max = c->o->max_hops ? c->o->max_hops : CPN_CHAIN_ROUTE_MAX;
    if (max > CPN_CHAIN_ROUTE_MAX)
        max = CPN_CHAIN_ROUTE_MAX;
    const uint8_t *cur = ch->claim.route.ptr;
    size_t cur_len = ch->claim.route.len;
    uint8_t outer_first[CPN_CHAIN_ROUTE_MAX][CPN_PK_LEN];
    uint8_t to[CPN_PK_LEN]; /* what every FORWARD names: the peer, or a summary's broker */
    uint32_t n = 0, hops_above = 0;
    cpn_env_t env;
    int r;
    for (;;) {
        if ((r = cpn_env_parse(cur, cur_len, c->lim, &env)) != CPN_OK)
            return s_fail(c, r, "route: malformed envelope at depth %" PRIu32 " (%s)", n,
                          cpn_errname(r));
        if (env.type == CPN_MSG_CLAIM)
            break;
        if (env.type != CPN_MSG_FORWARD)
            return s_fail(c, CPN_E_WRONG_TYPE, "route holds a %s, not a FORWARD or CLAIM",
                          cpn_msg_name(env.type));
        if (n == max)
            return s_fail(c, CPN_E_DEPTH, "route longer than %" PRIu32 " FORWARDs", max);
        if ((r = cpn_sigcache_verify(c->o->sigcache, &env)) != CPN_OK)
            return s_fail(c, r, "route: a FORWARD's signature does not verify");
        cpn_forward_t f;
        if ((r = cpn_forward_decode(&env, c->lim, &f)) != CPN_OK)
            return s_fail(c, r, "route: a FORWARD body does not decode (%s)", cpn_errname(r));
        if (n == 0)
            memcpy(to, f.to, CPN_PK_LEN);
        if (!s_key_eq(f.to, to) || f.ref_seq != 0)
            return s_fail(c, CPN_E_CHAIN, "route: a FORWARD names another peer or has a ref_seq");
        if (n > 0 && f.hops + 1 != hops_above)
            return s_fail(c, CPN_E_CHAIN, "route: FORWARD hops do not count down by one");
        hops_above = f.hops;
        memcpy(outer_first[n++], env.from, CPN_PK_LEN);
        cur = f.msg.ptr;
        cur_len = f.msg.len;
    }
    if (n == 0 || hops_above != 1)
        return s_fail(c, CPN_E_CHAIN,
                      "route must be FORWARDs, hops counting down to 1, around the first CLAIM");
    if ((r = cpn_sigcache_verify(c->o->sigcache, &env)) != CPN_OK)
        return s_fail(c, r, "route: the first CLAIM's signature does not verify");
    if (!s_key_eq(env.from, outer_first[n - 1]))
        return s_fail(c, CPN_E_CHAIN,
                      "route: the first CLAIM is not signed by the broker that forwarded it first");
    if ((r = cpn_claim_decode(&env, c->lim, &ch->origin)) != CPN_OK)
        return s_fail(c, r, "route: the first CLAIM's body does not decode (%s)", cpn_errname(r));
    const cpn_claim_t *o = &ch->origin, *h = &ch->claim;
    /* A CLAIM for a summary row names the broker that made the summary: that broker, and only
     * it, resolves it to one of its peers' packages at no more than the row's price. */
    bool resolved = !s_key_eq(o->peer, h->peer) && s_key_eq(o->peer, ch->claim_env.from);
    if (!s_key_eq(to, o->peer) || (!resolved && !s_key_eq(to, h->peer)))
        return s_fail(c, CPN_E_CHAIN, "route: a FORWARD names another peer than the CLAIMs");
    if (o->route.len != 0 || o->request.len != h->request.len ||
        memcmp(o->request.ptr, h->request.ptr, o->request.len) != 0 || o->units != h->units ||
        o->duration_s != h->duration_s ||
        (resolved ? h->price > o->price
                  : strcmp(o->package, h->package) != 0 || o->price != h->price ||
                        strcmp(o->alts, h->alts) != 0))
        return s_fail(c, CPN_E_CHAIN, "route: the CLAIM differs from the first CLAIM it carries");
    ch->origin_env = env;
    ch->n_forwards = n;
    ch->n_brokers = 0;
    for (uint32_t i = n; i-- > 0;)
        memcpy(ch->brokers[ch->n_brokers++], outer_first[i], CPN_PK_LEN);
    return CPN_OK;
}

/* The LEASE's terms against its CLAIM (see chain.h for the rule on end). */
static int s_lease_terms(s_ctx_t *c)
{
    cpn_chain_t *ch = c->ch;
    const cpn_lease_t *l = &ch->lease;
    const cpn_claim_t *cl = &ch->claim;
    const cpn_chain_opts_t *o = c->o;
    if (cl->alts[0] && !ch->req.share)
        return s_fail(c, CPN_E_CHAIN, "CLAIM names alts for a REQUEST that asks for no slice");
    if (strcmp(l->package, cl->package) != 0 && !cpn_claim_alt(cl->alts, l->package))
        return s_fail(c, CPN_E_CHAIN, "LEASE package %s is neither the CLAIM's %s nor one of its alts",
                      l->package, cl->package);
    if (l->units != cl->units)
        return s_fail(c, CPN_E_CHAIN, "LEASE units %" PRIu32 " differ from the CLAIM's %" PRIu32,
                      l->units, cl->units);
    if (l->price != cl->price)
        return s_fail(c, CPN_E_CHAIN, "LEASE price %" PRIu64 " differs from the CLAIM's %" PRIu64,
                      l->price, cl->price);
    char id[CPN_NAME_MAX];
    cpn_chain_lease_id(cl->peer, ch->req_env.from, ch->req.id, id);
    if (strcmp(l->lease_id, id) != 0)
        return s_fail(c, CPN_E_CHAIN, "lease id %s is not the peer's id for this request (%s)",
                      l->lease_id, id);
    bool active = strcmp(l->state, "active") == 0, released = strcmp(l->state, "released") == 0;
    if (!active && !released && strcmp(l->state, "expired") != 0)
        return s_fail(c, CPN_E_CHAIN, "LEASE state \"%s\" is not active, released or expired",
                      l->state);
    if (cl->duration_s > (UINT64_MAX - l->start_ms) / 1000)
        return s_fail(c, CPN_E_CHAIN, "LEASE start plus the CLAIM's duration overflows");
    uint64_t term_end = l->start_ms + cl->duration_s * 1000;
    if (l->end_ms < l->start_ms)
        return s_fail(c, CPN_E_CHAIN, "LEASE ends before it starts");
    if (l->renewals == 0 && !released && l->end_ms != term_end)
        return s_fail(c, CPN_E_CHAIN, "LEASE end %" PRIu64 " is not start + duration (%" PRIu64 ")",
                      l->end_ms, term_end);
    if (l->renewals == 0 && released && l->end_ms > term_end)
        return s_fail(c, CPN_E_CHAIN, "released LEASE ends after start + duration");
    if (l->renewals > 0 && active && l->end_ms < term_end + (uint64_t)l->renewals * 1000)
        return s_fail(c, CPN_E_CHAIN, "renewed LEASE ends before its renewals could take it");
    if (o->flags & CPN_CHAIN_NEW)
        return cpn_chain_check_new(ch, o->now_ms, o->max_start_skew_ms);
    return CPN_OK;
}

int cpn_chain_check_new(cpn_chain_t *ch, uint64_t now_ms, uint64_t max_start_skew_ms)
{
    const cpn_lease_t *l = &ch->lease;
    if (!ch->has_lease) {
        snprintf(ch->why, sizeof ch->why, "%s", "no LEASE in the chain");
        return CPN_E_WRONG_TYPE;
    }
    if (strcmp(l->state, "active") != 0 || l->renewals != 0) {
        snprintf(ch->why, sizeof ch->why,
                 "a LEASE answering a CLAIM must be new: active and never renewed (state %s, "
                 "renewals %" PRIu32 ")",
                 l->state, l->renewals);
        return CPN_E_CHAIN;
    }
    /* Not later than now, nor before the tenant asked (both give or take the skew). A peer
     * answering a retried CLAIM sends the LEASE it granted the first time, so an earlier
     * start than now is normal; one before the REQUEST was signed is not. */
    if (max_start_skew_ms && now_ms && l->start_ms > now_ms + max_start_skew_ms) {
        snprintf(ch->why, sizeof ch->why,
                 "new LEASE starts at %" PRIu64 ", more than %" PRIu64 " ms after now (%" PRIu64
                 ")",
                 l->start_ms, max_start_skew_ms, now_ms);
        return CPN_E_CHAIN;
    }
    if (max_start_skew_ms && l->start_ms + max_start_skew_ms < ch->req_env.ts_ms) {
        snprintf(ch->why, sizeof ch->why,
                 "new LEASE starts at %" PRIu64 ", before its REQUEST was signed (%" PRIu64 ")",
                 l->start_ms, ch->req_env.ts_ms);
        return CPN_E_CHAIN;
    }
    return CPN_OK;
}

/* The CLAIM against its REQUEST, and the REQUEST's age. */
static int s_claim_terms(s_ctx_t *c)
{
    const cpn_chain_t *ch = c->ch;
    const cpn_claim_t *cl = &ch->claim;
    const cpn_request_t *q = &ch->req;
    const cpn_chain_opts_t *o = c->o;
    if (cl->units == 0 || cl->units > q->units)
        return s_fail(c, CPN_E_CHAIN, "CLAIM units %" PRIu32 " not in 1..%" PRIu32 " requested",
                      cl->units, q->units);
    if (cl->duration_s == 0 || cl->duration_s > q->duration_s)
        return s_fail(c, CPN_E_CHAIN,
                      "CLAIM duration %" PRIu64 " s not in 1..%" PRIu64 " s requested",
                      cl->duration_s, q->duration_s);
    if (q->max_price && cl->price > q->max_price)
        return s_fail(c, CPN_E_CHAIN,
                      "CLAIM price %" PRIu64 " above the request's ceiling %" PRIu64, cl->price,
                      q->max_price);
    /* The terms a peer holds a new grant to (docs/PROTOCOL.md, "terms at a peer"): an unsplit
     * REQUEST is claimed whole, and a broker never shortens the duration asked. A replacement
     * (`replaces`) is held to the rest of the lease it replaces instead, which only the NOTICE
     * it carries tells: the peer opens that (grant_check_replacement). */
    if (!cl->replaces.len && !q->split && cl->units != q->units)
        return s_fail(c, CPN_E_CHAIN,
                      "CLAIM units %" PRIu32 " are not the %" PRIu32 " of an unsplit request",
                      cl->units, q->units);
    if (!cl->replaces.len && cl->duration_s != q->duration_s)
        return s_fail(c, CPN_E_CHAIN,
                      "CLAIM duration %" PRIu64 " s is not the %" PRIu64 " s requested",
                      cl->duration_s, q->duration_s);
    /* The whole lease at the CLAIM's terms, priced by the usage rule (usage.h): the ceiling
     * is on what the tenant can be billed for this CLAIM's units. */
    uint64_t cost = 0;
    if (q->max_cost && (cl->duration_s > UINT64_MAX / 1000 ||
                        cpn_usage_total(cl->units, cl->price, 0, cl->duration_s * 1000, &cost) !=
                            CPN_OK ||
                        cost > q->max_cost))
        return s_fail(c, CPN_E_CHAIN,
                      "CLAIM cost %" PRIu64 " above the request's ceiling max_cost %" PRIu64, cost,
                      q->max_cost);
    uint64_t ts = ch->req_env.ts_ms, age = o->max_request_age_ms;
    if (age && o->now_ms && (ts + age < o->now_ms || ts > o->now_ms + age))
        return s_fail(c, CPN_E_STALE,
                      "REQUEST %s signed at %" PRIu64 ", outside now %" PRIu64 " +- %" PRIu64 " ms",
                      q->id, ts, o->now_ms, age);
    return CPN_OK;
}

static bool s_chain_type(cpn_msg_type_t t)
{
    return t == CPN_MSG_GRANT || t == CPN_MSG_LEASE || t == CPN_MSG_CLAIM || t == CPN_MSG_REQUEST;
}

int cpn_chain_open(const uint8_t *frame, size_t len, cpn_msg_type_t top,
                   const cpn_chain_opts_t *opts, cpn_chain_t *ch)
{
    static const cpn_chain_opts_t none;
    s_ctx_t c = {opts ? opts : &none, NULL, ch};
    c.lim = c.o->lim ? c.o->lim : &cpn_limits_default;
    const uint8_t *cur = frame;
    size_t cur_len = len;
    bool verify_top = !(c.o->flags & CPN_CHAIN_TOP_VERIFIED);
    int r;
    if (!ch)
        return CPN_E_INVAL;
    memset(ch, 0, sizeof *ch);
    if (top == CPN_MSG_NONE) {
        cpn_env_t env;
        if ((r = cpn_env_parse(frame, len, c.lim, &env)) != CPN_OK)
            return s_fail(&c, r, "malformed envelope (%s)", cpn_errname(r));
        top = env.type;
    }
    if (!s_chain_type(top))
        return s_fail(&c, CPN_E_WRONG_TYPE, "a %s is not a GRANT, LEASE, CLAIM or REQUEST",
                      cpn_msg_name(top) ? cpn_msg_name(top) : "?");
    ch->top = top;
    if (top == CPN_MSG_GRANT) {
        if ((r = s_frame(&c, cur, cur_len, CPN_MSG_GRANT, "the GRANT", verify_top, c.o->broker_pk,
                         &ch->grant_env)) != CPN_OK)
            return r;
        if ((r = cpn_grant_decode(&ch->grant_env, c.lim, &ch->grant)) != CPN_OK)
            return s_fail(&c, r, "the GRANT body does not decode (%s)", cpn_errname(r));
        ch->has_grant = true;
        cur = ch->grant.lease.ptr;
        cur_len = ch->grant.lease.len;
    }
    if (top == CPN_MSG_GRANT || top == CPN_MSG_LEASE) {
        /* Its signer is checked against the CLAIM's peer once the CLAIM is open. */
        if ((r = s_frame(&c, cur, cur_len, CPN_MSG_LEASE,
                         ch->has_grant ? "the GRANT's LEASE" : "the LEASE",
                         ch->has_grant || verify_top, NULL, &ch->lease_env)) != CPN_OK)
            return r;
        if ((r = cpn_lease_decode(&ch->lease_env, c.lim, &ch->lease)) != CPN_OK)
            return s_fail(&c, r, "the LEASE body does not decode (%s)", cpn_errname(r));
        ch->has_lease = true;
        cur = ch->lease.claim.ptr;
        cur_len = ch->lease.claim.len;
    }
    if (top != CPN_MSG_REQUEST) {
        if ((r = s_frame(&c, cur, cur_len, CPN_MSG_CLAIM,
                         ch->has_lease ? "the LEASE's CLAIM" : "the CLAIM",
                         ch->has_lease || verify_top, c.o->claim_pk, &ch->claim_env)) != CPN_OK)
            return r;
        if ((r = cpn_claim_decode(&ch->claim_env, c.lim, &ch->claim)) != CPN_OK)
            return s_fail(&c, r, "the CLAIM body does not decode (%s)", cpn_errname(r));
        if (c.o->peer_pk && !s_key_eq(ch->claim.peer, c.o->peer_pk))
            return s_fail(&c, CPN_E_UNTRUSTED, "the CLAIM names another peer");
        if (ch->has_lease && !s_key_eq(ch->lease_env.from, ch->claim.peer))
            return s_fail(&c, CPN_E_UNTRUSTED, "the LEASE is not signed by the CLAIM's peer");
        if (ch->claim.route.len != 0 && (r = s_route(&c)) != CPN_OK)
            return r;
        memcpy(ch->brokers[ch->n_brokers++], ch->claim_env.from, CPN_PK_LEN);
        cur = ch->claim.request.ptr;
        cur_len = ch->claim.request.len;
    }
    if ((r = s_frame(&c, cur, cur_len, CPN_MSG_REQUEST,
                     top == CPN_MSG_REQUEST ? "the REQUEST" : "the CLAIM's REQUEST",
                     top != CPN_MSG_REQUEST || verify_top, c.o->tenant_pk, &ch->req_env)) != CPN_OK)
        return r;
    if ((r = cpn_request_decode(&ch->req_env, c.lim, &ch->req)) != CPN_OK)
        return s_fail(&c, r, "the REQUEST body does not decode (%s)", cpn_errname(r));
    if (top != CPN_MSG_REQUEST && (r = s_claim_terms(&c)) != CPN_OK)
        return r;
    if (ch->has_lease && (r = s_lease_terms(&c)) != CPN_OK)
        return r;
    if (ch->has_grant) {
        /* The broker that countersigns is the one that claimed for the tenant: the CLAIM's
         * signer, or the route's origin for a lease brokered across the federation. */
        if (!s_key_eq(ch->grant_env.from, ch->brokers[0]))
            return s_fail(&c, CPN_E_CHAIN, "the GRANT is not signed by the broker that claimed%s",
                          ch->n_forwards ? " (the route's origin)" : "");
        if (strcmp(ch->grant.request_id, ch->req.id) != 0)
            return s_fail(&c, CPN_E_CHAIN, "GRANT request_id %s differs from the REQUEST's id %s",
                          ch->grant.request_id, ch->req.id);
    }
    snprintf(ch->why, sizeof ch->why, "%s", "valid");
    return CPN_OK;
}

void cpn_chain_lease_id(const uint8_t peer[CPN_PK_LEN], const uint8_t tenant[CPN_PK_LEN],
                        const char *request_id, char out[CPN_NAME_MAX])
{
    uint8_t h[crypto_generichash_BYTES];
    char b64[sodium_base64_ENCODED_LEN(crypto_generichash_BYTES,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, peer, CPN_PK_LEN);
    crypto_generichash_update(&st, tenant, CPN_PK_LEN);
    crypto_generichash_update(&st, (const uint8_t *)request_id, strlen(request_id));
    crypto_generichash_final(&st, h, sizeof h);
    sodium_bin2base64(b64, sizeof b64, h, sizeof h, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out[0] = 'L';
    memcpy(out + 1, b64, 16);
    out[17] = '\0';
}

size_t cpn_claim_alts_split(const char *alts, char (*out)[CPN_NAME_MAX], size_t max)
{
    size_t n = 0;
    for (const char *p = alts; *p && n < max;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < CPN_NAME_MAX) {
            memcpy(out[n], p, len);
            out[n++][len] = '\0';
        }
        p += len + (p[len] == ',');
    }
    return n;
}

bool cpn_claim_alt(const char *alts, const char *package)
{
    size_t want = strlen(package);
    for (const char *p = alts; want && *p;) {
        size_t len = strcspn(p, ",");
        if (len == want && memcmp(p, package, len) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

bool cpn_chain_same_terms(const cpn_request_t *a, const cpn_request_t *b)
{
    cpn_request_t x, y;
    memcpy(&x, a, sizeof x); /* memcpy, not assignment: padding bytes are copied too */
    memcpy(&y, b, sizeof y);
    x.progress = y.progress = false;
    /* Decoded bodies are zeroed before they are filled (cpn_msg_decode), so the bytes after
     * each string's end and any padding compare equal. */
    return memcmp(&x, &y, sizeof x) == 0;
}
