/* link.h - a DEALER to one endpoint that comes back after anything the other side sends.
 *
 * libzmq redials a DEALER by itself after a connection error (the TCP connection closed or
 * reset) and after a heartbeat timeout (ZMQ_HEARTBEAT_TIMEOUT: nothing heard for that long
 * after a PING), but not after a protocol error: a frame larger than ZMQ_MAXMSGSIZE, a frame
 * that fails CURVE decryption (one flipped bit), a malformed ZMTP stream or a failed handshake
 * end that connection's session for good (libzmq 4.3, session_base_t::engine_error), and the
 * socket stays connected to nothing. A cpn_link_t watches its socket's monitor and runs this
 * state machine (the table in link.c):
 *
 *   CONNECTING --handshake succeeded--> UP --disconnected--> DROPPED
 *   DROPPED --libzmq redials (CONNECT_RETRIED)--> CONNECTING
 *   DROPPED --no redial within CPN_LINK_GRACE_MS, or the backoff--> rebuilt: CONNECTING
 *   CONNECTING --no handshake for stuck_ms--> rebuilt: CONNECTING
 *
 * "Rebuilt" means a fresh socket (same options) connected to the endpoint. Rebuilds back off:
 * the delay starts at max(grace, reconnect_ms) and doubles up to reconnect_max_ms for as long
 * as connections do not stay up for reconnect_max_ms, so a server that drops us at once costs
 * at most one connection per reconnect_max_ms. Messages queued in the old socket are lost,
 * as they would be with the connection.
 *
 * The owner polls cpn_link_monitor() with the socket, calls cpn_link_tick() when the monitor
 * is readable or cpn_link_timeout_ms() has passed, and takes cpn_link_socket() again after
 * every tick (a rebuild replaces it).
 */
#ifndef CPN_LINK_H
#define CPN_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#define CPN_LINK_GRACE_MS 250 /* after a drop, how long libzmq has to show it redials */

typedef struct cpn_link cpn_link_t;

typedef struct {
    const char *endpoint;     /* copied */
    size_t max_msg;           /* ZMQ_MAXMSGSIZE */
    cpn_curve_t curve;        /* copied; curve.self borrowed for the link's life */
    int reconnect_ms;         /* libzmq's first redial delay, and the least rebuild delay */
    int reconnect_max_ms;     /* the longest of both */
    int heartbeat_ms;         /* ZMTP PING every so often on a quiet connection */
    int heartbeat_timeout_ms; /* silence after a PING that ends the connection */
    int stuck_ms;             /* not up for this long: rebuild (0: heartbeat_timeout_ms) */
    bool immediate;           /* ZMQ_IMMEDIATE: sends fail while not connected */
    const char *name;         /* for logs; copied */
} cpn_link_cfg_t;

/* What a tick saw happen (bits). */
enum {
    CPN_LINK_UP = 1,      /* a connection completed its handshake: say HELLO */
    CPN_LINK_DOWN = 2,    /* the connection dropped */
    CPN_LINK_REBUILT = 4, /* the socket was replaced: take cpn_link_socket() again */
};

typedef struct {
    uint64_t ups, drops, rebuilds, protocol_errors;
    uint64_t last_drop_mono, last_up_mono; /* 0: never */
} cpn_link_stats_t;

/* Open the socket and its monitor and connect. *out owned by the caller (cpn_link_destroy).
 * CPN_E_INVAL for bad options, CPN_E_IO if libzmq refuses. */
int cpn_link_new(void *zctx, const cpn_link_cfg_t *cfg, cpn_link_t **out) CPN_WUR;
void cpn_link_destroy(cpn_link_t **self_p);

/* The current socket and its monitor (borrowed; the socket changes on a rebuild). */
void *cpn_link_socket(const cpn_link_t *self);
void *cpn_link_monitor(const cpn_link_t *self);

/* Read the monitor's events and run the timers at now_mono (cpn_mono_ms). Returns the
 * CPN_LINK_* bits of what happened. */
int cpn_link_tick(cpn_link_t *self, uint64_t now_mono);
/* Milliseconds until a timer of the link is due (0: now), or -1 for none. */
int cpn_link_timeout_ms(const cpn_link_t *self, uint64_t now_mono);

/* Handshake done and not dropped since. */
bool cpn_link_is_up(const cpn_link_t *self);
void cpn_link_stats(const cpn_link_t *self, cpn_link_stats_t *out);
/* Change the linger of the current socket (the peer's WITHDRAW at stop). */
void cpn_link_linger(cpn_link_t *self, int linger_ms);

#endif
