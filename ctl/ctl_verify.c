/* ctl_verify.c - verify a message chain offline and print it as JSON. */
#include "ctl_verify.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "identity.h"
#include "msg.h"
#include "sigcache.h"

#define CTL_ROUTE_MAX CPN_CHAIN_ROUTE_MAX
/* embedding depth: GRANT > LEASE > CLAIM > REQUEST, or through a route: GRANT > LEASE >
 * CLAIM > FORWARD x hops > CLAIM > REQUEST */
#define CTL_CHAIN_MAX (CTL_ROUTE_MAX + 6)

typedef struct {
    FILE *out;
    const char *why;
    cpn_sigcache_t *cache;
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

/* A key or any text as a JSON string, escaped by mp_to_json (control characters, quotes,
 * invalid UTF-8), so hostile bytes never break the output. */
static void s_text(FILE *out, const char *k, size_t n)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = k;
    o.via.str.size = (uint32_t)n;
    if (mp_to_json(&o, out, -1) != CPN_OK)
        fputs("\"?\"", out);
}

static void s_key(FILE *out, const char *k, size_t n)
{
    if (!out)
        return;
    s_text(out, k, n);
    fputs(": ", out);
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
            rr = out && mp_to_json(&kv->val, out, -1) != CPN_OK ? CPN_E_IO : CPN_OK;
        if (rr != CPN_OK && r == CPN_OK)
            r = rr;
    }
    if (out)
        fputs("}", out);
    return r;
}

/* One frame as a JSON object; a frame that cannot be shown is {"error": why}, so the output is
 * valid JSON whatever the input. */
static int s_frame(s_ctx_t *ctx, const uint8_t *frame, size_t len, int depth)
{
    cpn_env_t env;
    msgpack_zone zone;
    msgpack_object body;
    const char *err = NULL;
    int r = CPN_OK;
    if (depth > CTL_CHAIN_MAX) {
        err = "messages embedded too deep";
        r = CPN_E_DEPTH;
    } else if ((r = cpn_env_parse(frame, len, &cpn_limits_default, &env)) != CPN_OK)
        err = "malformed envelope";
    if (err) {
        if (!ctx->why)
            ctx->why = err;
        if (ctx->out) {
            fputs("{\"error\": ", ctx->out);
            s_text(ctx->out, err, strlen(err));
            fputs("}", ctx->out);
        }
        return r;
    }
    int sig = cpn_sigcache_verify(ctx->cache, &env);
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
    else {
        if (r == CPN_OK)
            r = CPN_E_SCHEMA;
        if (!ctx->why)
            ctx->why = "a body is not a msgpack map";
        if (ctx->out)
            fputs("null", ctx->out);
    }
    msgpack_zone_destroy(&zone);
    if (ctx->out)
        fputs("}", ctx->out);
    return sig != CPN_OK ? sig : r;
}

static bool s_is_chain(const uint8_t *frame, size_t len)
{
    cpn_env_t env;
    return cpn_env_parse(frame, len, &cpn_limits_default, &env) == CPN_OK &&
           (env.type == CPN_MSG_GRANT || env.type == CPN_MSG_LEASE ||
            env.type == CPN_MSG_CLAIM || env.type == CPN_MSG_REQUEST);
}

int ctl_verify_chain_pinned(const uint8_t *frame, size_t len, const uint8_t *pinned, FILE *out,
                            char why[CPN_REASON_MAX])
{
    cpn_sigcache_t *cache = cpn_sigcache_new(256); /* printing verifies; the opener need not */
    s_ctx_t ctx = {out, NULL, cache};
    cpn_chain_t *ch = calloc(1, sizeof *ch);
    int r = ch && cache ? s_frame(&ctx, frame, len, 0) : CPN_E_NOMEM;
    if (out)
        fputc('\n', out);
    snprintf(why, CPN_REASON_MAX, "%s", ctx.why ? ctx.why : cpn_strerror(r));
    if (r == CPN_OK && s_is_chain(frame, len)) {
        cpn_chain_opts_t o = {.sigcache = cache, .broker_pk = pinned};
        r = cpn_chain_open(frame, len, CPN_MSG_NONE, &o, ch);
        /* Without a GRANT, a pinned key names the broker that claimed (the route's origin). */
        if (r == CPN_OK && pinned && !ch->has_grant && ch->n_brokers &&
            memcmp(ch->brokers[0], pinned, CPN_PK_LEN) != 0) {
            r = CPN_E_UNTRUSTED;
            snprintf(ch->why, sizeof ch->why, "%s",
                     "the CLAIM (or the route's first) is not signed by the pinned broker");
        }
        snprintf(why, CPN_REASON_MAX, "%s", ch->why);
    } else if (r == CPN_OK && pinned) {
        r = CPN_E_WRONG_TYPE;
        snprintf(why, CPN_REASON_MAX, "%s", "a pinned broker key needs a GRANT, LEASE or CLAIM");
    }
    free(ch);
    cpn_sigcache_destroy(&cache);
    return r;
}

int ctl_verify_chain(const uint8_t *frame, size_t len, FILE *out, const char **why)
{
    static char reason[CPN_REASON_MAX];
    int r = ctl_verify_chain_pinned(frame, len, NULL, out, reason);
    *why = reason;
    return r;
}

int ctl_verify_route(const uint8_t *frame, size_t len, char *buf, size_t cap)
{
    if (cap == 0)
        return CPN_E_TOO_BIG;
    buf[0] = 0;
    cpn_chain_t *ch = calloc(1, sizeof *ch);
    int r = ch ? cpn_chain_open(frame, len, CPN_MSG_NONE, NULL, ch) : CPN_E_NOMEM;
    size_t used = 0;
    for (uint32_t i = 0; r == CPN_OK && ch->n_forwards && i < ch->n_brokers; i++) {
        char kid[CPN_KID_LEN];
        cpn_key_id(ch->brokers[i], kid);
        int k = snprintf(buf + used, cap - used, "%s%s", i ? " -> " : "", kid);
        if (k < 0 || (size_t)k >= cap - used) {
            r = CPN_E_TOO_BIG;
            break;
        }
        used += (size_t)k;
    }
    free(ch);
    return r;
}
