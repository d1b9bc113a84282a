/* fed_link.c - the links to the federation's members: open one per member (redialled through
 * common/link.c), send and sign on it, HELLO, read what the member answers on it, and forget
 * what came through a member that went down or left. Calls no other file of the federation.
 */
#include "federation_int.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "link.h"
#include "log.h"
#include "msg_typed.h"

fed_link_t *fed_link_find(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; f && i < f->n_links; i++)
        if (memcmp(f->links[i].key, key, CPN_PK_LEN) == 0)
            return &f->links[i];
    return NULL;
}

/* Send a built frame on a link; counts it, or notes that the link is down. */
int fed_link_send(fed_link_t *l, const uint8_t *frame, size_t len)
{
    int r = cpn_send(l->sock, frame, len);
    if (r == CPN_OK) {
        if (!l->tx_ok)
            log_debug("fed", "link to %s (%s) connected", l->name, l->endpoint);
        l->tx_ok = true;
        l->msgs_out++;
        l->bytes_out += len;
        return CPN_OK;
    }
    if (l->tx_ok)
        log_info("fed", "link to %s (%s) not connected: %s", l->name, l->endpoint, cpn_errname(r));
    l->tx_ok = false;
    l->drops++;
    return CPN_E_UNREACHABLE;
}

/* Sign a message of ours and send it on a link. *seq_out (may be NULL) gets its seq. */
int fed_link_build(broker_t *self, fed_link_t *l, cpn_msg_type_t type, const void *body,
                   uint64_t *seq_out)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    int r = cpn_signer_build(&self->signer, type, body, &frame, &len);
    if (r != CPN_OK) {
        log_error("fed", "cannot build %s: %s", cpn_msg_name(type), cpn_errname(r));
        return r;
    }
    if (seq_out)
        *seq_out = self->signer.last_seq;
    r = fed_link_send(l, frame, len);
    free(frame);
    return r;
}

/* Can the link take a frame now? With ZMQ_IMMEDIATE only a connected link is writable, so a
 * link that is down costs no signature per tick. */
bool fed_link_writable(const fed_link_t *l)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(l->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLOUT);
}

int fed_link_hello(broker_t *self, fed_link_t *l)
{
    cpn_hello_t h;
    memset(&h, 0, sizeof h);
    snprintf(h.role, sizeof h.role, "broker");
    snprintf(h.name, sizeof h.name, "%s", self->pol->broker.name);
    snprintf(h.endpoint, sizeof h.endpoint, "%s", self->pol->broker.listen);
    const struct federation *f = self->fed;
    memcpy(h.root, f->tree.root, CPN_PK_LEN);
    h.dist = f->tree.dist;
    memcpy(h.parent, f->tree.parent, CPN_PK_LEN);
    h.digest = f->digest;
    return fed_link_build(self, l, CPN_MSG_HELLO, &h, NULL);
}

int fed_link_open(broker_t *self, fed_link_t *l)
{
    const policy_t *pol = self->pol;
    cpn_curve_t curve = {.enabled = pol->broker.curve, .self = self->id};
    memcpy(curve.server_pk, l->key, CPN_PK_LEN);
    uint64_t max = fed_timeout_ms(self) / 3;
    if (max > FED_RECONNECT_MAX_MS)
        max = FED_RECONNECT_MAX_MS;
    if (max < FED_RECONNECT_MS)
        max = FED_RECONNECT_MS;
    cpn_link_cfg_t lc = {.endpoint = l->endpoint,
                         .max_msg = pol->limits.frame_size,
                         .curve = curve,
                         .reconnect_ms = FED_RECONNECT_MS,
                         .reconnect_max_ms = (int)max,
                         /* a dead connection is noticed within 3 heartbeats */
                         .heartbeat_ms = (int)max,
                         .heartbeat_timeout_ms = (int)max * 3,
                         .immediate = true,
                         .name = l->name};
    int r = cpn_link_new(self->zctx, &lc, &l->link);
    l->sock = r == CPN_OK ? cpn_link_socket(l->link) : NULL;
    if (r != CPN_OK)
        log_error("fed", "link to member %s (%s): %s", l->name, l->endpoint, cpn_strerror(r));
    else
        log_info("fed", "linking to member %s at %s%s", l->name, l->endpoint,
                 pol->broker.curve ? " with CURVE" : " in plain TCP");
    return r;
}

void fed_link_from_member(fed_link_t *l, const policy_member_t *m)
{
    memcpy(l->key, m->key, CPN_PK_LEN);
    snprintf(l->name, sizeof l->name, "%s", m->name);
    snprintf(l->endpoint, sizeof l->endpoint, "%s", m->endpoint);
    l->use_offers = m->use_offers;
}

/* Forget every offer that came through `key`: it is no longer reachable that way. */
size_t fed_forget_via(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    size_t cur = 0, n = 0, cap = 0;
    uint8_t(*keys)[CPN_PK_LEN] = NULL;
    const book_peer_t *bp;
    /* Tombstones stay (the WITHDRAW is the peer's own word, whatever the route): forgetting
     * one would let a late copy of the AD it ended, through another member, come back. */
    while ((bp = book_next(self->book, &cur)) != NULL)
        if (!bp->withdrawn && memcmp(bp->via, key, CPN_PK_LEN) == 0)
            cap++;
    if (cap && !(keys = malloc(cap * sizeof *keys))) {
        log_error("fed", "out of memory forgetting offers");
        return 0;
    }
    cur = 0;
    while ((bp = book_next(self->book, &cur)) != NULL && n < cap)
        if (!bp->withdrawn && memcmp(bp->via, key, CPN_PK_LEN) == 0)
            memcpy(keys[n++], bp->key, CPN_PK_LEN);
    size_t gone = 0;
    for (size_t i = 0; i < n; i++)
        gone += book_forget(self->book, keys[i]) == CPN_OK;
    free(keys);
    return gone;
}

/* Our book lost offers that came through `from`: every other member that is up gets our
 * digest (SYNC) on the next tick, and forgets what it holds through us that the digest lacks.
 * So a member two hops away stops matching offers behind a link that went down as soon as the
 * broker at that link knows, not when their ttl runs out. */
void fed_tell_members(broker_t *self, const uint8_t from[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; i < f->n_links; i++)
        if (f->links[i].up && memcmp(f->links[i].key, from, CPN_PK_LEN) != 0)
            f->links[i].sync_due = true;
}

void fed_link_mark_down(broker_t *self, fed_link_t *l, uint64_t silent_ms)
{
    l->up = false;
    l->has_tree = false; /* it tells us again when it is back */
    l->digest = 0;
    l->digest_misses = 0;
    l->downs++;
    size_t gone = fed_forget_via(self, l->key);
    log_warn("fed",
             "member %s down: silent for %" PRIu64 " ms; %zu peers' offers through it "
             "forgotten",
             l->name, silent_ms, gone);
    if (gone)
        fed_tell_members(self, l->key);
}

void fed_link_close(broker_t *self, fed_link_t *l)
{
    cpn_link_destroy(&l->link);
    l->sock = NULL;
    size_t gone = fed_forget_via(self, l->key);
    if (gone)
        log_info("fed", "member %s left the policy: %zu peers' offers forgotten", l->name, gone);
}

size_t federation_pollitems(broker_t *self, zmq_pollitem_t *items, size_t cap)
{
    struct federation *f = self->fed;
    size_t n = 0;
    for (size_t i = 0; f && i < f->n_links && n < cap; i++, n++) {
        items[n].socket = f->links[i].sock;
        items[n].fd = 0;
        items[n].events = ZMQ_POLLIN;
        items[n].revents = 0;
    }
    return n;
}

/* Answers to what we sent arrive on the link: ERRORs are worth a line in the log. They do not
 * go through the replay guard (the member's ROUTER and DEALER are two streams of its seqs). */
static void s_link_drain(broker_t *self, fed_link_t *l)
{
    for (int k = 0; k < FED_DRAIN_MAX; k++) {
        uint8_t *frame = NULL;
        size_t len = 0;
        cpn_env_t env;
        cpn_error_t e;
        int r = cpn_recv(l->sock, 0, NULL, NULL, &frame, &len);
        if (r == CPN_E_TIMEOUT)
            return;
        if (r == CPN_OK && cpn_env_parse(frame, len, &self->lim, &env) == CPN_OK &&
            memcmp(env.from, l->key, CPN_PK_LEN) == 0 &&
            cpn_sigcache_verify(self->sigcache, &env) == CPN_OK) {
            if (cpn_error_decode(&env, &self->lim, &e) == CPN_OK)
                log_warn("fed", "member %s refused our message seq %" PRIu64 ": %s (%s)", l->name,
                         e.ref_seq, cpn_errname(e.code), e.reason);
            else
                log_debug("fed", "member %s sent %s on our link", l->name, cpn_msg_name(env.type));
        } else
            log_debug("fed", "unreadable frame on the link to %s", l->name);
        free(frame);
    }
}

void federation_readable(broker_t *self, const zmq_pollitem_t *items, size_t n)
{
    struct federation *f = self->fed;
    for (size_t i = 0; f && i < n && i < f->n_links; i++)
        if (items[i].revents & ZMQ_POLLIN)
            s_link_drain(self, &f->links[i]);
}
