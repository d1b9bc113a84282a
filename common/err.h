/* err.h - the one error enum of cpn.
 *
 * Every failure has a distinct negative code, a short slug (travels in NACK and ERROR
 * messages as `code` and is what scripts match on) and a readable reason. The numeric
 * values are part of the wire protocol (docs/PROTOCOL.md): never renumber, only append.
 */
#ifndef CPN_ERR_H
#define CPN_ERR_H

#define CPN_WUR __attribute__((warn_unused_result))

/* X(NAME, value, slug, reason) */
#define CPN_ERRORS(X)                                                                          \
    X(CPN_OK, 0, "ok", "success")                                                              \
    X(CPN_E_NOMEM, -1, "no-memory", "out of memory")                                           \
    X(CPN_E_INVAL, -2, "invalid", "invalid argument")                                          \
    X(CPN_E_IO, -3, "io", "input/output error")                                                \
    X(CPN_E_INTERNAL, -4, "internal", "internal error")                                        \
    X(CPN_E_FRAME_SIZE, -10, "frame-size", "frame larger than the size limit")                 \
    X(CPN_E_MSGPACK, -11, "malformed", "malformed msgpack")                                    \
    X(CPN_E_DEPTH, -12, "too-deep", "msgpack nesting deeper than the limit")                   \
    X(CPN_E_COUNT, -13, "too-long", "declared length exceeds the limit or the frame")          \
    X(CPN_E_TRAILING, -14, "trailing-bytes", "trailing bytes after the message")               \
    X(CPN_E_SCHEMA, -15, "schema", "field missing, unknown, duplicated or of the wrong type")   \
    X(CPN_E_VERSION, -16, "version", "unsupported protocol version")                           \
    X(CPN_E_TYPE, -17, "unknown-type", "unknown message type")                                 \
    X(CPN_E_WRONG_TYPE, -18, "wrong-type", "frame is not of the type expected here")           \
    X(CPN_E_SIG, -20, "bad-signature", "signature does not verify")                            \
    X(CPN_E_REPLAY, -21, "replay", "sequence number already seen or below the replay window")  \
    X(CPN_E_SEQ_JUMP, -22, "seq-jump", "sequence number implausibly far ahead")                \
    X(CPN_E_TS_SKEW, -23, "clock-skew", "timestamp outside the skew window")                   \
    X(CPN_E_REPLAY_FULL, -24, "replay-table-full", "replay table full, new sender refused")    \
    X(CPN_E_KEY, -25, "bad-key", "key file missing or malformed")                              \
    X(CPN_E_KEY_PERM, -26, "key-permissions", "secret key file readable by group or others")   \
    X(CPN_E_CHAIN, -27, "inconsistent", "embedded signed messages do not agree")               \
    X(CPN_E_STALE, -28, "stale-request", "embedded request older than the age bound")          \
    X(CPN_E_UNTRUSTED, -30, "untrusted", "sender not trusted by policy")                       \
    X(CPN_E_UNKNOWN_TENANT, -31, "unknown-tenant", "tenant not known to the policy")           \
    X(CPN_E_ROLE, -32, "wrong-role", "sender's role may not send this message type")           \
    X(CPN_E_RATE, -33, "rate-limited", "sender over its rate limit")                           \
    X(CPN_E_YAML, -40, "yaml", "YAML syntax error")                                            \
    X(CPN_E_CONFIG, -41, "config", "invalid configuration")                                    \
    X(CPN_E_TOO_BIG, -42, "too-big", "input larger than its limit")                            \
    X(CPN_E_NO_MATCH, -50, "no-match", "no offer satisfies the request")                       \
    X(CPN_E_OVER_QUOTA, -51, "over-quota", "tenant over its quota")                            \
    X(CPN_E_NO_UNITS, -52, "no-units", "not enough free units")                                \
    X(CPN_E_PRICE_FLOOR, -53, "below-floor", "price below the peer's floor")                   \
    X(CPN_E_TENANT_REFUSED, -54, "tenant-refused", "tenant not accepted by the peer")          \
    X(CPN_E_NO_LEASE, -55, "no-lease", "no such lease")                                        \
    X(CPN_E_RENEW_REFUSED, -56, "renew-refused", "renewal beyond what the peer allows")        \
    X(CPN_E_NO_PACKAGE, -57, "no-package", "no such package")                                  \
    X(CPN_E_CONFLICT, -58, "conflict", "request id reused with different terms")               \
    X(CPN_E_EXPIRED, -59, "expired", "lease already ended")                                    \
    X(CPN_E_TIMEOUT, -60, "timeout", "no answer in time")                                      \
    X(CPN_E_UNREACHABLE, -61, "unreachable", "peer or broker unreachable")                     \
    X(CPN_E_BUSY, -62, "busy", "queue full, try again")                                        \
    X(CPN_E_DB, -70, "database", "database error")                                             \
    X(CPN_E_CLAIM_EXPIRED, -63, "claim-expired", "claim's deadline has passed")                \
    X(CPN_E_IN_DOUBT, -64, "in-doubt", "a claim for this request may still be granted")      \
    X(CPN_E_PROVISION_FAILED, -65, "provision-failed", "the peer's driver could not provide the lease") \
    X(CPN_E_CAPACITY_LOST, -66, "capacity-lost", "capacity under the lease was lost")          \
    X(CPN_E_SEALED, -68, "sealed", "sealed access details do not open with this key")         \
    X(CPN_E_OVER_BUDGET, -69, "over-budget", "cost over the tenant's budget or the request's cost ceiling")

typedef enum {
#define CPN_X_ENUM(name, val, slug, reason) name = (val),
    CPN_ERRORS(CPN_X_ENUM)
#undef CPN_X_ENUM
} cpn_err_t;

/* Readable reason for a code; never NULL ("unknown error" for an unknown code). */
const char *cpn_strerror(int code);
/* Short stable slug for a code ("no-match"); never NULL ("unknown"). */
const char *cpn_errname(int code);
/* Code for a slug, or CPN_E_INVAL if none has that name. */
int cpn_errcode(const char *slug);

#endif
