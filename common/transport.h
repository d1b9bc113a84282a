/* transport.h - ZeroMQ sockets as cpn uses them, and the sender side of the envelope.
 *
 * A broker binds one ROUTER; peers, clients and other brokers connect DEALERs to it.
 * Every cpn message is exactly one ZeroMQ frame (a sealed envelope); a ROUTER sees it
 * preceded by the routing id frame. Every socket gets ZMQ_MAXMSGSIZE (larger frames are
 * dropped by libzmq, which also drops that connection and, on a connecting socket, does not
 * redial it: link.h rebuilds the long-lived ones), ZMQ_LINGER 0 on close and a
 * bounded send high-water mark (ZMQ_SNDHWM); a send that would block is dropped and
 * returns CPN_E_BUSY, never stalls the event loop.
 */
#ifndef CPN_TRANSPORT_H
#define CPN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

#define CPN_HWM_DEFAULT 10000

/* Curve settings for one socket; `enabled` false means plain TCP. */
typedef struct {
    int enabled;
    const cpn_identity_t *self;         /* our identity: the CURVE key pair derives from it */
    uint8_t server_pk[CPN_PK_LEN];      /* DEALER only: the Ed25519 key of the server */
} cpn_curve_t;

/* A DEALER connected to endpoint. *out owned by the caller (zmq_close). */
int cpn_sock_dealer(void *zctx, const char *endpoint, size_t max_msg, const cpn_curve_t *curve,
                    void **out) CPN_WUR;
/* Options of a long-lived DEALER (a peer's broker link, a broker's member link, see link.h),
 * set before it connects (libzmq copies them into a connection when it is made). */
typedef struct {
    int reconnect_ms, reconnect_max_ms;     /* ZMQ_RECONNECT_IVL, ZMQ_RECONNECT_IVL_MAX */
    int heartbeat_ms, heartbeat_timeout_ms; /* ZMQ_HEARTBEAT_IVL, ZMQ_HEARTBEAT_TIMEOUT */
    int immediate;                          /* ZMQ_IMMEDIATE */
} cpn_sock_opts_t;

/* A DEALER with these options, connected to endpoint. *out owned by the caller (zmq_close). */
int cpn_sock_dealer_opts(void *zctx, const char *endpoint, size_t max_msg,
                         const cpn_curve_t *curve, const cpn_sock_opts_t *opts,
                         void **out) CPN_WUR;
/* A ROUTER bound to endpoint. With curve enabled, the caller must run a ZAP handler
 * (zap.h) or libzmq admits any client key. */
int cpn_sock_router(void *zctx, const char *endpoint, size_t max_msg, const cpn_curve_t *curve,
                    void **out) CPN_WUR;

/* Send one frame on a DEALER / to a routing id on a ROUTER. Non-blocking. */
int cpn_send(void *sock, const uint8_t *frame, size_t len) CPN_WUR;
int cpn_send_to(void *router, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                size_t len) CPN_WUR;

#define CPN_RID_MAX 256 /* bytes in a ROUTER routing id */

/* Receive one message without blocking. On CPN_OK, *frame is malloc'd (caller frees);
 * extra frames beyond the expected ones are discarded and reported as CPN_E_MSGPACK.
 * CPN_E_TIMEOUT when nothing is waiting. `rid`/`rid_len` may be NULL for a DEALER. */
int cpn_recv(void *sock, int is_router, uint8_t *rid, size_t *rid_len, uint8_t **frame,
             size_t *len) CPN_WUR;
/* cpn_recv, and the ZeroMQ message property `prop` of the frame (e.g. "User-Id", which the
 * broker's ZAP handler sets for each CURVE connection) into val, NUL-terminated; "" if the
 * frame has none or it does not fit in cap bytes. */
int cpn_recv_prop(void *sock, int is_router, uint8_t *rid, size_t *rid_len, uint8_t **frame,
                  size_t *len, const char *prop, char *val, size_t cap) CPN_WUR;

/* The sender side: an identity and its sequence counter. A client that may share its key
 * with other processes at once (cpnctl) sets `spread`: its seqs then get random low bits
 * (cpn_seq_next_rand); daemons, one process per key, keep cpn_seq_next. */
typedef struct {
    const cpn_identity_t *id; /* borrowed */
    uint64_t last_seq;
    bool spread;
} cpn_signer_t;

/* Encode body, seal with the next seq and the current time. *frame_p malloc'd, caller owns. */
int cpn_signer_build(cpn_signer_t *self, cpn_msg_type_t type, const void *body,
                     uint8_t **frame_p, size_t *len) CPN_WUR;

#endif
