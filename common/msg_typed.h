/* msg_typed.h - typed decoders: one function per message type, each refusing a frame of any
 * other type before it touches the body.
 *
 * cpn_msg_decode() fills a `void *` with the struct of whatever type the frame declares, so a
 * REQUEST handed to code that expects a GRANT writes a cpn_request_t into a cpn_grant_t. These
 * wrappers make the expected type part of the signature: cpn_claim_decode(env, lim, &claim)
 * returns CPN_E_WRONG_TYPE (and leaves the body zeroed) unless env->type is CLAIM.
 *
 * The list below is the schema's (msg_schema.def) with the C struct of each type.
 */
#ifndef CPN_MSG_TYPED_H
#define CPN_MSG_TYPED_H

#include <stddef.h>

#include "msg.h"

/* X(function prefix, type enum suffix, body struct) */
#define CPN_TYPED_BODIES(X)                                                                        \
    X(hello, HELLO, cpn_hello_t)                                                                   \
    X(ad, AD, cpn_ad_t)                                                                            \
    X(withdraw, WITHDRAW, cpn_withdraw_t)                                                          \
    X(request, REQUEST, cpn_request_t)                                                             \
    X(claim, CLAIM, cpn_claim_t)                                                                   \
    X(lease, LEASE, cpn_lease_t)                                                                   \
    X(grant, GRANT, cpn_grant_t)                                                                   \
    X(nack, NACK, cpn_nack_t)                                                                      \
    X(renew, RENEW, cpn_renew_t)                                                                   \
    X(release, RELEASE, cpn_release_t)                                                             \
    X(query, QUERY, cpn_query_t)                                                                   \
    X(status, STATUS, cpn_status_t)                                                                \
    X(error, ERROR, cpn_error_t)                                                                   \
    X(relay, RELAY, cpn_relay_t)                                                                   \
    X(forward, FORWARD, cpn_forward_t)                                                             \
    X(sync, SYNC, cpn_sync_t)                                                                      \
    X(resend, RESEND, cpn_resend_t)                                                                \
    X(notice, NOTICE, cpn_notice_t)                                                                \
    X(usage, USAGE, cpn_usage_t)                                                                   \
    X(meter, METER, cpn_meter_t)                                                                   \
    X(receipt, RECEIPT, cpn_receipt_t)                                                             \
    X(statement, STATEMENT, cpn_statement_t)

/* Decode env->body as `type` into body (size bytes, zeroed first): CPN_E_WRONG_TYPE if the
 * frame is of another type, else what cpn_msg_decode returns. Call after the envelope
 * verified. lim NULL: cpn_limits_default. */
int cpn_msg_decode_as(const cpn_env_t *env, cpn_msg_type_t type, const cpn_limits_t *lim,
                      void *body, size_t size) CPN_WUR;

#define CPN_X_DECL(fn, e, st)                                                                      \
    int cpn_##fn##_decode(const cpn_env_t *env, const cpn_limits_t *lim, st *body) CPN_WUR;
CPN_TYPED_BODIES(CPN_X_DECL)
#undef CPN_X_DECL

#endif
