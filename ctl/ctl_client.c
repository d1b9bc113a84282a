/* ctl_client.c - one DEALER to the broker, signed sends, verified receives. */
#include "ctl_client.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "msg.h"

struct ctl_client {
    void *zctx;
    void *sock;
    cpn_signer_t signer;
    uint8_t broker_pk[CPN_PK_LEN];
    bool have_broker_pk;
};

int ctl_client_new(const char *endpoint, const cpn_identity_t *id, const uint8_t *broker_pk,
                   bool plain, ctl_client_t **out)
{
    ctl_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->signer.id = id;
    self->signer.spread = true; /* other clients may use this key at the same moment */
    cpn_curve_t curve = {0};
    if (broker_pk) {
        memcpy(self->broker_pk, broker_pk, CPN_PK_LEN);
        self->have_broker_pk = true;
        if (!plain) {
            curve.enabled = 1;
            curve.self = id;
            memcpy(curve.server_pk, broker_pk, CPN_PK_LEN);
        }
    }
    int r = CPN_E_IO;
    self->zctx = zmq_ctx_new();
    if (self->zctx)
        r = cpn_sock_dealer(self->zctx, endpoint, cpn_limits_default.max_frame * 16, &curve,
                            &self->sock);
    if (r != CPN_OK) {
        ctl_client_destroy(&self);
        return r;
    }
    *out = self;
    return CPN_OK;
}

void ctl_client_destroy(ctl_client_t **self_p)
{
    ctl_client_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->sock)
        zmq_close(self->sock);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    free(self);
    *self_p = NULL;
}

cpn_signer_t *ctl_client_signer(ctl_client_t *self)
{
    return &self->signer;
}

int ctl_client_send_frame(ctl_client_t *self, const uint8_t *frame, size_t len)
{
    /* Before the connection is up a DEALER queues, so a non-blocking send succeeds. */
    return cpn_send(self->sock, frame, len);
}

int ctl_client_send(ctl_client_t *self, cpn_msg_type_t type, const void *body,
                    uint64_t *seq_out)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    int r = cpn_signer_build(&self->signer, type, body, &frame, &len);
    if (r == CPN_OK)
        r = ctl_client_send_frame(self, frame, len);
    if (r == CPN_OK && seq_out)
        *seq_out = self->signer.last_seq;
    free(frame);
    return r;
}

int ctl_client_recv(ctl_client_t *self, uint64_t until_mono_ms, uint8_t **frame, size_t *len,
                    cpn_env_t *env)
{
    for (;;) {
        uint64_t now = cpn_mono_ms();
        if (now >= until_mono_ms)
            return CPN_E_TIMEOUT;
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        long wait = (long)(until_mono_ms - now);
        if (zmq_poll(&item, 1, wait) <= 0 || !(item.revents & ZMQ_POLLIN))
            continue;
        uint8_t *buf = NULL;
        size_t n = 0;
        int r = cpn_recv(self->sock, 0, NULL, NULL, &buf, &n);
        if (r == CPN_E_TIMEOUT)
            continue;
        if (r != CPN_OK)
            return r;
        /* Answers come from the broker (large: offers lists), so allow 16 frames' worth. */
        cpn_limits_t lim = cpn_limits_default;
        lim.max_frame *= 16;
        lim.max_str *= 16;
        if ((r = cpn_env_parse(buf, n, &lim, env)) != CPN_OK ||
            (self->have_broker_pk && memcmp(env->from, self->broker_pk, CPN_PK_LEN) != 0 &&
             (r = CPN_E_UNTRUSTED)) ||
            (r = cpn_env_verify(env)) != CPN_OK) {
            log_warn("ctl", "dropped an answer: %s", cpn_errname(r));
            free(buf);
            continue;
        }
        *frame = buf;
        *len = n;
        return CPN_OK;
    }
}
