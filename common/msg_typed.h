/* msg_typed.h - typed decoders: one function per message type, each refusing a frame of any
 * other type before it touches the body.
 *
 * cpn_msg_decode() fills a `void *` with the struct of whatever type the frame declares, so a
 * REQUEST handed to code that expects a GRANT writes a cpn_request_t into a cpn_grant_t. These
 * wrappers make the expected type part of the signature: cpn_claim_decode(env, lim, &claim)
 * returns CPN_E_WRONG_TYPE (and leaves the body zeroed) unless env->type is CLAIM.
 *
 * One per type of msg_schema.def: cpn_<stem>_decode fills a cpn_<stem>_t.
 */
#ifndef CPN_MSG_TYPED_H
#define CPN_MSG_TYPED_H

#include <stddef.h>

#include "msg.h"

/* Decode env->body as `type` into body (size bytes, zeroed first): CPN_E_WRONG_TYPE if the
 * frame is of another type, else what cpn_msg_decode returns. Call after the envelope
 * verified. lim NULL: cpn_limits_default. */
int cpn_msg_decode_as(const cpn_env_t *env, cpn_msg_type_t type, const cpn_limits_t *lim,
                      void *body, size_t size) CPN_WUR;

/* cpn_hello_decode(env, lim, cpn_hello_t *), cpn_ad_decode(..., cpn_ad_t *), ... */
#define CPN_TYPE(e, wire, stem, roles)                                                             \
    int cpn_##stem##_decode(const cpn_env_t *env, const cpn_limits_t *lim, cpn_##stem##_t *body)  \
        CPN_WUR;
#include "msg_schema.def"

#endif
