/* link.c - a DEALER, its monitor, and the state machine that rebuilds it (see link.h). */
#include "link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"

#define S_EVENTS                                                                                   \
    (ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |                    \
     ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                        \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
#define S_EVENTS_PER_TICK 64

typedef enum { S_CONNECTING, S_UP, S_DROPPED, S__STATES } s_state_t;
typedef enum { E_HANDSHAKE, E_DISCONNECTED, E_RETRYING, E_DEADLINE, E__EVENTS } s_event_t;
typedef enum { A_NONE, A_UP, A_DOWN, A_WAIT, A_REBUILD } s_action_t;

/* (state, event) -> action; the action sets the next state. */
static const s_action_t s_table[S__STATES][E__EVENTS] = {
    /*                 handshake  disconnected  retrying  deadline */
    [S_CONNECTING] = {A_UP, A_DOWN, A_NONE, A_REBUILD},
    [S_UP] = {A_NONE, A_DOWN, A_NONE, A_NONE},
    [S_DROPPED] = {A_UP, A_NONE, A_WAIT, A_REBUILD},
};

static const char *const s_state_name[S__STATES] = {"connecting", "up", "dropped"};

struct cpn_link {
    void *zctx;
    cpn_link_cfg_t cfg;
    char endpoint[256];
    char name[64];
    void *sock, *monitor;
    s_state_t state;
    uint64_t deadline; /* mono ms of E_DEADLINE; 0 = none */
    uint64_t backoff;  /* the next rebuild delay */
    uint64_t up_since;
    cpn_link_stats_t st;
};

static uint64_t s_monitor_serial;

static void s_close(void **sock, void **mon)
{
    if (*sock)
        (void)zmq_socket_monitor(*sock, NULL, 0);
    if (*mon)
        zmq_close(*mon);
    if (*sock)
        zmq_close(*sock);
    *sock = *mon = NULL;
}

static int s_open(cpn_link_t *self, void **sock_out, void **mon_out)
{
    void *sock = NULL, *mon_sock = NULL;
    cpn_sock_opts_t o = {.reconnect_ms = self->cfg.reconnect_ms,
                         .reconnect_max_ms = self->cfg.reconnect_max_ms,
                         .heartbeat_ms = self->cfg.heartbeat_ms,
                         .heartbeat_timeout_ms = self->cfg.heartbeat_timeout_ms,
                         .immediate = self->cfg.immediate};
    char mon[64];
    int r = cpn_sock_dealer_opts(self->zctx, self->endpoint, self->cfg.max_msg, &self->cfg.curve,
                                 &o, &sock);
    if (r != CPN_OK)
        return r;
    /* The monitor's inproc name must be unique in the context, rebuilds included. */
    snprintf(mon, sizeof mon, "inproc://cpn-link-%p-%llu", (void *)self,
             (unsigned long long)++s_monitor_serial);
    if (zmq_socket_monitor(sock, mon, S_EVENTS) != 0 ||
        !(mon_sock = zmq_socket(self->zctx, ZMQ_PAIR)) || zmq_connect(mon_sock, mon) != 0) {
        log_error("link", "monitor of %s: %s", self->endpoint, zmq_strerror(errno));
        s_close(&sock, &mon_sock);
        return CPN_E_IO;
    }
    *sock_out = sock;
    *mon_out = mon_sock;
    return CPN_OK;
}

int cpn_link_new(void *zctx, const cpn_link_cfg_t *cfg, cpn_link_t **out)
{
    *out = NULL;
    if (!cfg->endpoint || strlen(cfg->endpoint) >= sizeof((cpn_link_t *)0)->endpoint ||
        cfg->reconnect_ms <= 0 || cfg->reconnect_max_ms < cfg->reconnect_ms || cfg->stuck_ms < 0)
        return CPN_E_INVAL;
    cpn_link_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->zctx = zctx;
    self->cfg = *cfg;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->endpoint);
    snprintf(self->name, sizeof self->name, "%s", cfg->name ? cfg->name : cfg->endpoint);
    self->cfg.endpoint = self->endpoint;
    self->cfg.name = self->name;
    if (self->cfg.stuck_ms == 0)
        self->cfg.stuck_ms =
            cfg->heartbeat_timeout_ms > 0 ? cfg->heartbeat_timeout_ms : cfg->reconnect_max_ms * 3;
    self->backoff =
        (uint64_t)(cfg->reconnect_ms > CPN_LINK_GRACE_MS ? cfg->reconnect_ms : CPN_LINK_GRACE_MS);
    self->state = S_CONNECTING;
    int r = s_open(self, &self->sock, &self->monitor);
    if (r != CPN_OK) {
        cpn_link_destroy(&self);
        return r;
    }
    *out = self;
    return CPN_OK;
}

void cpn_link_destroy(cpn_link_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_close(&(*self_p)->sock, &(*self_p)->monitor);
    free(*self_p);
    *self_p = NULL;
}

void *cpn_link_socket(const cpn_link_t *self)
{
    return self->sock;
}

void *cpn_link_monitor(const cpn_link_t *self)
{
    return self->monitor;
}

bool cpn_link_is_up(const cpn_link_t *self)
{
    return self->state == S_UP;
}

void cpn_link_stats(const cpn_link_t *self, cpn_link_stats_t *out)
{
    *out = self->st;
}

void cpn_link_linger(cpn_link_t *self, int linger_ms)
{
    if (self->sock)
        (void)zmq_setsockopt(self->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
}

/* A fresh socket; if libzmq refuses one now, the old one stays and we try again later. */
static int s_rebuild(cpn_link_t *self, uint64_t now)
{
    void *sock = NULL, *mon = NULL;
    if (s_open(self, &sock, &mon) != CPN_OK) {
        log_error("link", "%s: cannot open a new socket; trying again in %llu ms", self->name,
                  (unsigned long long)self->backoff);
        self->deadline = now + self->backoff;
        return 0;
    }
    s_close(&self->sock, &self->monitor);
    self->sock = sock;
    self->monitor = mon;
    self->st.rebuilds++;
    log_info("link", "%s: new connection to %s (rebuild %llu)", self->name, self->endpoint,
             (unsigned long long)self->st.rebuilds);
    self->state = S_CONNECTING;
    self->deadline = now + (uint64_t)self->cfg.stuck_ms;
    return CPN_LINK_REBUILT;
}

static int s_step(cpn_link_t *self, s_event_t ev, uint64_t now)
{
    uint64_t max = (uint64_t)self->cfg.reconnect_max_ms;
    switch (s_table[self->state][ev]) {
    case A_NONE:
        return 0;
    case A_UP:
        self->state = S_UP;
        self->deadline = 0;
        self->up_since = now;
        self->st.ups++;
        self->st.last_up_mono = now;
        log_info("link", "%s: connected to %s", self->name, self->endpoint);
        return CPN_LINK_UP;
    case A_DOWN: {
        bool was_up = self->state == S_UP;
        /* A connection that did not last reconnect_max_ms does not reset the backoff. */
        if (was_up && now - self->up_since >= max)
            self->backoff =
                (uint64_t)(self->cfg.reconnect_ms > CPN_LINK_GRACE_MS ? self->cfg.reconnect_ms
                                                                      : CPN_LINK_GRACE_MS);
        self->state = S_DROPPED;
        self->deadline = now + self->backoff;
        self->st.drops++;
        self->st.last_drop_mono = now;
        if (was_up)
            log_warn("link", "%s: connection to %s lost", self->name, self->endpoint);
        return was_up ? CPN_LINK_DOWN : 0;
    }
    case A_WAIT: /* libzmq redials by itself; rebuild only if that never completes */
        self->state = S_CONNECTING;
        self->deadline = now + (uint64_t)self->cfg.stuck_ms;
        return 0;
    case A_REBUILD: {
        log_warn("link", "%s: %s to %s and no redial within %llu ms: new socket", self->name,
                 s_state_name[self->state], self->endpoint,
                 (unsigned long long)(self->state == S_DROPPED ? self->backoff
                                                               : (uint64_t)self->cfg.stuck_ms));
        self->backoff = self->backoff * 2 > max ? max : self->backoff * 2;
        return s_rebuild(self, now);
    }
    }
    return 0;
}

/* One monitor event: its id, or 0 when none is waiting. */
static uint16_t s_read_event(cpn_link_t *self)
{
    zmq_msg_t m;
    uint16_t event = 0;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, self->monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    if (zmq_msg_size(&m) >= 2)
        memcpy(&event, zmq_msg_data(&m), 2);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* the endpoint */
        zmq_msg_init(&m);
        more = zmq_msg_recv(&m, self->monitor, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return event ? event : UINT16_MAX;
}

int cpn_link_tick(cpn_link_t *self, uint64_t now)
{
    int out = 0;
    for (int k = 0; k < S_EVENTS_PER_TICK && !(out & CPN_LINK_REBUILT); k++) {
        uint16_t event = s_read_event(self);
        if (!event)
            break;
        switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            out |= s_step(self, E_HANDSHAKE, now);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            out |= s_step(self, E_DISCONNECTED, now);
            break;
        case ZMQ_EVENT_CONNECT_RETRIED:
            out |= s_step(self, E_RETRYING, now);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            /* A frame that fails CURVE decryption comes as a failed handshake, and libzmq
             * 4.3 sends no DISCONNECTED after it: the connection is gone all the same. */
            self->st.protocol_errors++;
            log_warn("link", "%s: protocol error or failed handshake on %s (event 0x%x)",
                     self->name, self->endpoint, event);
            out |= s_step(self, E_DISCONNECTED, now);
            break;
        default: /* CONNECTED: TCP only, the handshake may still fail */
            break;
        }
    }
    if (self->deadline && now >= self->deadline && !(out & CPN_LINK_REBUILT))
        out |= s_step(self, E_DEADLINE, now);
    /* A fresh link waits stuck_ms from its first tick for a handshake. */
    if (self->state == S_CONNECTING && !self->deadline)
        self->deadline = now + (uint64_t)self->cfg.stuck_ms;
    return out;
}

int cpn_link_timeout_ms(const cpn_link_t *self, uint64_t now)
{
    if (!self->deadline)
        return -1;
    if (self->deadline <= now)
        return 0;
    uint64_t t = self->deadline - now;
    return t > INT32_MAX ? INT32_MAX : (int)t;
}
