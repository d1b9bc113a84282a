/* transport.c - ZeroMQ socket set-up, single-frame send/receive, the signer. */
#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "msg.h"

static int s_setup(void *sock, size_t max_msg)
{
    int64_t maxmsg = (int64_t)max_msg;
    int linger = 0, hwm = CPN_HWM_DEFAULT;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0)
        return CPN_E_IO;
    return CPN_OK;
}

static int s_curve(void *sock, const cpn_curve_t *curve, int server)
{
    if (!curve || !curve->enabled)
        return CPN_OK;
    uint8_t pk[32], sk[32], spk[32];
    int r = cpn_identity_curve(curve->self, pk, sk);
    if (r != CPN_OK)
        return r;
    if (server) {
        int one = 1;
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sk, 32) != 0)
            r = CPN_E_IO;
        /* The ZAP domain makes libzmq consult the ZAP handler for every connection. */
        else if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "cpn", 3) != 0)
            r = CPN_E_IO;
    } else {
        if (crypto_sign_ed25519_pk_to_curve25519(spk, curve->server_pk) != 0)
            r = CPN_E_KEY;
        else if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, spk, 32) != 0 ||
                 zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pk, 32) != 0 ||
                 zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sk, 32) != 0)
            r = CPN_E_IO;
    }
    sodium_memzero(sk, sizeof sk);
    return r;
}

static int s_link(void *sock, const cpn_sock_opts_t *o)
{
    if (zmq_setsockopt(sock, ZMQ_IMMEDIATE, &o->immediate, sizeof o->immediate) != 0 ||
        zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &o->reconnect_ms, sizeof o->reconnect_ms) != 0 ||
        zmq_setsockopt(sock, ZMQ_RECONNECT_IVL_MAX, &o->reconnect_max_ms,
                       sizeof o->reconnect_max_ms) != 0 ||
        zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &o->heartbeat_ms, sizeof o->heartbeat_ms) != 0 ||
        zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &o->heartbeat_timeout_ms,
                       sizeof o->heartbeat_timeout_ms) != 0)
        return CPN_E_IO;
    return CPN_OK;
}

static int s_open(void *zctx, int type, const char *endpoint, size_t max_msg,
                  const cpn_curve_t *curve, const cpn_sock_opts_t *link, void **out)
{
    void *sock = zmq_socket(zctx, type);
    if (!sock)
        return CPN_E_IO;
    int r = s_setup(sock, max_msg);
    if (r == CPN_OK && link)
        r = s_link(sock, link);
    if (r == CPN_OK)
        r = s_curve(sock, curve, type == ZMQ_ROUTER);
    if (r == CPN_OK) {
        int rc = type == ZMQ_ROUTER ? zmq_bind(sock, endpoint) : zmq_connect(sock, endpoint);
        if (rc != 0) {
            log_error("net", "%s %s: %s", type == ZMQ_ROUTER ? "bind" : "connect", endpoint,
                      zmq_strerror(errno));
            r = CPN_E_IO;
        }
    }
    if (r != CPN_OK) {
        zmq_close(sock);
        return r;
    }
    *out = sock;
    return CPN_OK;
}

int cpn_sock_dealer(void *zctx, const char *endpoint, size_t max_msg, const cpn_curve_t *curve,
                    void **out)
{
    return s_open(zctx, ZMQ_DEALER, endpoint, max_msg, curve, NULL, out);
}

int cpn_sock_dealer_opts(void *zctx, const char *endpoint, size_t max_msg, const cpn_curve_t *curve,
                         const cpn_sock_opts_t *opts, void **out)
{
    if (opts->reconnect_ms <= 0 || opts->reconnect_max_ms < opts->reconnect_ms ||
        opts->heartbeat_ms < 0 || opts->heartbeat_timeout_ms < 0)
        return CPN_E_INVAL;
    return s_open(zctx, ZMQ_DEALER, endpoint, max_msg, curve, opts, out);
}

int cpn_sock_router(void *zctx, const char *endpoint, size_t max_msg, const cpn_curve_t *curve,
                    void **out)
{
    return s_open(zctx, ZMQ_ROUTER, endpoint, max_msg, curve, NULL, out);
}

int cpn_send(void *sock, const uint8_t *frame, size_t len)
{
    if (zmq_send(sock, frame, len, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? CPN_E_BUSY : CPN_E_IO;
    return CPN_OK;
}

int cpn_send_to(void *router, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                size_t len)
{
    if (zmq_send(router, rid, rid_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
        return errno == EAGAIN ? CPN_E_BUSY : CPN_E_IO;
    if (zmq_send(router, frame, len, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? CPN_E_BUSY : CPN_E_IO;
    return CPN_OK;
}

/* Discard the rest of a multipart message; returns how many parts were dropped. */
static int s_drain(void *sock, int more)
{
    int dropped = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        dropped++;
    }
    return dropped;
}

int cpn_recv(void *sock, int is_router, uint8_t *rid, size_t *rid_len, uint8_t **frame,
             size_t *len)
{
    return cpn_recv_prop(sock, is_router, rid, rid_len, frame, len, NULL, NULL, 0);
}

int cpn_recv_prop(void *sock, int is_router, uint8_t *rid, size_t *rid_len, uint8_t **frame,
                  size_t *len, const char *prop, char *val, size_t cap)
{
    if (val && cap)
        val[0] = 0;
    zmq_msg_t m;
    int more;
    if (is_router) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return errno == EAGAIN ? CPN_E_TIMEOUT : CPN_E_IO;
        }
        size_t n = zmq_msg_size(&m);
        more = zmq_msg_more(&m);
        if (n > CPN_RID_MAX || !more) {
            zmq_msg_close(&m);
            s_drain(sock, more);
            return CPN_E_MSGPACK;
        }
        if (rid)
            memcpy(rid, zmq_msg_data(&m), n);
        if (rid_len)
            *rid_len = n;
        zmq_msg_close(&m);
    }
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, is_router ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return errno == EAGAIN ? CPN_E_TIMEOUT : CPN_E_IO;
    }
    more = zmq_msg_more(&m);
    if (more) { /* cpn messages are one frame: refuse the whole multipart message */
        zmq_msg_close(&m);
        s_drain(sock, more);
        return CPN_E_MSGPACK;
    }
    size_t n = zmq_msg_size(&m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        zmq_msg_close(&m);
        return CPN_E_NOMEM;
    }
    memcpy(buf, zmq_msg_data(&m), n);
    if (prop && val && cap) {
        /* Set by the ZAP handler for the connection (libzmq >= 4.1); absent without one. */
        const char *v = zmq_msg_gets(&m, prop);
        if (v && strlen(v) < cap)
            memcpy(val, v, strlen(v) + 1);
    }
    zmq_msg_close(&m);
    *frame = buf;
    *len = n;
    return CPN_OK;
}

int cpn_signer_build(cpn_signer_t *self, cpn_msg_type_t type, const void *body,
                     uint8_t **frame_p, size_t *len)
{
    uint64_t now = cpn_now_ms();
    uint64_t seq = self->spread ? cpn_seq_next_rand(self->last_seq, now, randombytes_random())
                                : cpn_seq_next(self->last_seq, now);
    int r = cpn_msg_build(self->id, type, seq, now, body, frame_p, len);
    if (r == CPN_OK)
        self->last_seq = seq;
    return r;
}
