/* ctl_verify.c - verify a message chain offline and print it as JSON. */
#include "ctl_verify.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "msg.h"

#define CTL_ROUTE_MAX 64 /* FORWARDs in a route (the policy's max_hops is at most 64) */
/* embedding depth: GRANT > LEASE > CLAIM > REQUEST, or through a route: GRANT > LEASE >
 * CLAIM > FORWARD x hops > CLAIM > REQUEST */
#define CTL_CHAIN_MAX (CTL_ROUTE_MAX + 6)

typedef struct {
    FILE *out;
    const char *why;
} s_ctx_t;

static int s_frame(s_ctx_t *ctx, const uint8_t *frame, size_t len, int depth);

/* Keys whose bin value is an embedded signed frame. */
static int s_is_embedded(const msgpack_object_kv *kv)
{
    static const char *const keys[] = {"request", "claim", "lease", "msg", "route"};
    if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_BIN ||
        kv->val.via.bin.size == 0)
        return 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (kv->key.via.str.size == strlen(keys[i]) &&
            memcmp(kv->key.via.str.ptr, keys[i], kv->key.via.str.size) == 0)
            return 1;
    return 0;
}

static void s_key(FILE *out, const char *k, size_t n)
{
    if (!out)
        return;
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputs("\": ", out);
}

/* Print a body map; embedded frames are verified and expanded in place. */
static int s_body(s_ctx_t *ctx, const msgpack_object *map, int depth)
{
    FILE *out = ctx->out;
    int r = CPN_OK;
    if (out)
        fputs("{", out);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (out && i)
            fputs(", ", out);
        if (kv->key.type == MSGPACK_OBJECT_STR)
            s_key(out, kv->key.via.str.ptr, kv->key.via.str.size);
        else if (out)
            fputs("\"?\": ", out);
        int rr;
        if (s_is_embedded(kv))
            rr = s_frame(ctx, (const uint8_t *)kv->val.via.bin.ptr, kv->val.via.bin.size,
                         depth + 1);
        else if (kv->val.type == MSGPACK_OBJECT_BIN && kv->val.via.bin.size == CPN_PK_LEN) {
            char text[CPN_PK_TEXT_LEN];
            cpn_pk_to_text((const uint8_t *)kv->val.via.bin.ptr, text);
            if (out)
                fprintf(out, "\"%s\"", text);
            rr = CPN_OK;
        } else
            rr = out ? mp_to_json(&kv->val, out, -1) : CPN_OK;
        if (rr != CPN_OK && r == CPN_OK)
            r = rr;
    }
    if (out)
        fputs("}", out);
    return r;
}

static int s_frame(s_ctx_t *ctx, const uint8_t *frame, size_t len, int depth)
{
    cpn_env_t env;
    msgpack_zone zone;
    msgpack_object body;
    int r;
    if (depth > CTL_CHAIN_MAX) {
        ctx->why = "messages embedded too deep";
        return CPN_E_DEPTH;
    }
    if ((r = cpn_env_parse(frame, len, &cpn_limits_default, &env)) != CPN_OK) {
        ctx->why = "malformed envelope";
        return r;
    }
    int sig = cpn_env_verify(&env);
    if (sig != CPN_OK && !ctx->why)
        ctx->why = "a signature does not verify";
    char from[CPN_PK_TEXT_LEN];
    cpn_pk_to_text(env.from, from);
    if (ctx->out)
        fprintf(ctx->out,
                "{\"type\": \"%s\", \"from\": \"%s\", \"seq\": %" PRIu64 ", \"ts\": %" PRIu64
                ", \"signature\": \"%s\", \"body\": ",
                cpn_msg_name(env.type), from, env.seq, env.ts_ms,
                sig == CPN_OK ? "valid" : "INVALID");
    msgpack_zone_init(&zone, 2048);
    r = mp_parse(env.body, env.body_len, &cpn_limits_default, &zone, &body);
    if (r == CPN_OK && body.type == MSGPACK_OBJECT_MAP)
        r = s_body(ctx, &body, depth);
    else if (r == CPN_OK)
        r = CPN_E_SCHEMA;
    msgpack_zone_destroy(&zone);
    if (ctx->out)
        fputs("}", ctx->out);
    return sig != CPN_OK ? sig : r;
}

/* A route: the FORWARD chain in the home broker's CLAIM. Walked from the outermost FORWARD (the
 * last broker before the home) to the originating broker's CLAIM; signers[] gets the brokers
 * in the order the request travelled (origin first), *n how many. */
typedef struct {
    uint8_t signers[CTL_ROUTE_MAX + 1][CPN_PK_LEN];
    size_t n;
} s_route_t;

static int s_check_route(const cpn_claim_t *home, s_route_t *rt, const char **why)
{
    const uint8_t *cur = home->route.ptr;
    size_t cur_len = home->route.len, n = 0;
    uint8_t outer_first[CTL_ROUTE_MAX][CPN_PK_LEN];
    uint32_t hops_above = 0;
    cpn_env_t env;
    int r;
    for (;;) {
        if ((r = cpn_env_parse(cur, cur_len, &cpn_limits_default, &env)) != CPN_OK)
            return r;
        if (env.type != CPN_MSG_FORWARD)
            break;
        cpn_forward_t f;
        memset(&f, 0, sizeof f);
        if (n == CTL_ROUTE_MAX || (r = cpn_msg_decode(&env, &cpn_limits_default, &f)) != CPN_OK) {
            *why = "a route FORWARD does not decode (or the route is too long)";
            return n == CTL_ROUTE_MAX ? CPN_E_DEPTH : r;
        }
        if (memcmp(f.to, home->peer, CPN_PK_LEN) != 0 || f.ref_seq != 0 ||
            (n && f.hops + 1 != hops_above)) {
            *why = "a route FORWARD names another peer, or its hops do not count down";
            return CPN_E_SCHEMA;
        }
        hops_above = f.hops;
        memcpy(outer_first[n++], env.from, CPN_PK_LEN);
        cur = f.msg.ptr;
        cur_len = f.msg.len;
    }
    cpn_claim_t own;
    memset(&own, 0, sizeof own);
    if (n == 0 || hops_above != 1 || env.type != CPN_MSG_CLAIM ||
        cpn_msg_decode(&env, &cpn_limits_default, &own) != CPN_OK) {
        *why = "a route must be FORWARDs (hops counting down to 1) around the first CLAIM";
        return CPN_E_SCHEMA;
    }
    if (memcmp(env.from, outer_first[n - 1], CPN_PK_LEN) != 0) {
        *why = "the route's CLAIM is not signed by the broker that forwarded it first";
        return CPN_E_SIG;
    }
    if (memcmp(own.peer, home->peer, CPN_PK_LEN) != 0 || own.request.len != home->request.len ||
        memcmp(own.request.ptr, home->request.ptr, own.request.len) != 0 ||
        strcmp(own.package, home->package) != 0 || own.units != home->units ||
        own.price != home->price || own.duration_s != home->duration_s) {
        *why = "the home broker's CLAIM differs from the one its route carries";
        return CPN_E_SCHEMA;
    }
    rt->n = 0;
    for (size_t i = n; i-- > 0;)
        memcpy(rt->signers[rt->n++], outer_first[i], CPN_PK_LEN);
    return CPN_OK;
}

/* The chain must hang together: whoever the CLAIM names as the peer signed the LEASE; a CLAIM
 * that came through the federation carries its route, which starts at the broker that
 * countersigned (granter, NULL if not known here). */
static int s_check_links(const uint8_t *frame, size_t len, const uint8_t *granter,
                         s_route_t *rt, const char **why)
{
    cpn_env_t env, inner;
    int r = cpn_env_parse(frame, len, &cpn_limits_default, &env);
    if (r != CPN_OK)
        return r;
    if (env.type == CPN_MSG_GRANT) {
        cpn_grant_t g;
        memset(&g, 0, sizeof g);
        if ((r = cpn_msg_decode(&env, &cpn_limits_default, &g)) != CPN_OK)
            return r;
        if ((r = cpn_env_parse(g.lease.ptr, g.lease.len, &cpn_limits_default, &inner)) != CPN_OK)
            return r;
        if (inner.type != CPN_MSG_LEASE) {
            *why = "a GRANT must embed a LEASE";
            return CPN_E_SCHEMA;
        }
        return s_check_links(g.lease.ptr, g.lease.len, env.from, rt, why);
    }
    if (env.type == CPN_MSG_LEASE) {
        cpn_lease_t l;
        cpn_claim_t c;
        memset(&l, 0, sizeof l);
        memset(&c, 0, sizeof c);
        if ((r = cpn_msg_decode(&env, &cpn_limits_default, &l)) != CPN_OK)
            return r;
        if ((r = cpn_env_parse(l.claim.ptr, l.claim.len, &cpn_limits_default, &inner)) != CPN_OK)
            return r;
        if (inner.type != CPN_MSG_CLAIM ||
            (r = cpn_msg_decode(&inner, &cpn_limits_default, &c)) != CPN_OK) {
            *why = "a LEASE must embed a CLAIM";
            return CPN_E_SCHEMA;
        }
        if (memcmp(c.peer, env.from, CPN_PK_LEN) != 0) {
            *why = "the LEASE is not signed by the peer the CLAIM names";
            return CPN_E_SIG;
        }
        cpn_env_t req;
        if ((r = cpn_env_parse(c.request.ptr, c.request.len, &cpn_limits_default, &req)) !=
                CPN_OK ||
            req.type != CPN_MSG_REQUEST) {
            *why = "a CLAIM must embed a REQUEST";
            return r != CPN_OK ? r : CPN_E_SCHEMA;
        }
        if (c.route.len == 0)
            return CPN_OK;
        if ((r = s_check_route(&c, rt, why)) != CPN_OK)
            return r;
        memcpy(rt->signers[rt->n++], inner.from, CPN_PK_LEN); /* the home broker */
        if (granter && memcmp(granter, rt->signers[0], CPN_PK_LEN) != 0) {
            *why = "the GRANT is not signed by the broker the route started at";
            return CPN_E_SIG;
        }
    }
    return CPN_OK;
}

int ctl_verify_chain(const uint8_t *frame, size_t len, FILE *out, const char **why)
{
    s_ctx_t ctx = {out, NULL};
    s_route_t *rt = calloc(1, sizeof *rt);
    int r = rt ? s_frame(&ctx, frame, len, 0) : CPN_E_NOMEM;
    if (out)
        fputc('\n', out);
    if (r == CPN_OK)
        r = s_check_links(frame, len, NULL, rt, &ctx.why);
    *why = ctx.why ? ctx.why : cpn_strerror(r);
    free(rt);
    return r;
}

int ctl_verify_route(const uint8_t *frame, size_t len, char *buf, size_t cap)
{
    const char *why = NULL;
    s_route_t *rt = calloc(1, sizeof *rt);
    if (!rt)
        return CPN_E_NOMEM;
    if (cap == 0) {
        free(rt);
        return CPN_E_TOO_BIG;
    }
    buf[0] = 0;
    int r = s_check_links(frame, len, NULL, rt, &why);
    size_t used = 0;
    for (size_t i = 0; r == CPN_OK && i < rt->n; i++) {
        char kid[CPN_KID_LEN];
        cpn_key_id(rt->signers[i], kid);
        int k = snprintf(buf + used, cap - used, "%s%s", i ? " -> " : "", kid);
        if (k < 0 || (size_t)k >= cap - used) {
            r = CPN_E_TOO_BIG;
            break;
        }
        used += (size_t)k;
    }
    free(rt);
    return r;
}
