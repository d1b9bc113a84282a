/* federation.c - links to the federation's members, offer relay, sync, forwarded claims.
 * The protocol is described in federation.h and docs/PROTOCOL.md ("Federation").
 */
#include "federation.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "clock.h"
#include "fed_check.h"
#include "link.h"
#include "log.h"

#define FED_RECONNECT_MAX_MS 5000
#define FED_SYNC_OVERHEAD 512 /* envelope and SYNC keys around the digest bytes */

typedef struct {
    uint8_t key[CPN_PK_LEN];
    char name[CPN_NAME_MAX];
    char endpoint[CPN_ENDPOINT_MAX];
    bool use_offers;
    cpn_link_t *link; /* rebuilt after a drop libzmq does not redial (link.h) */
    void *sock;       /* cpn_link_socket(link), taken again after every cpn_link_tick */
    bool up;        /* heard from within hello_timeout */
    bool tx_ok;     /* the last send on the link went out: it is connected */
    bool sync_due;  /* a SYNC to send as soon as the link takes it */
    uint64_t last_rx_mono, last_hello_mono, up_since_mono;
    uint64_t msgs_out, bytes_out, relays_out, relay_bytes_out, relays_in, drops, downs;
} s_link_t;

/* A message we carried and whose answer will come back. */
typedef struct {
    bool used;
    bool origin;               /* we started it: the answer goes to claim.c */
    bool home;                 /* we are the peer's home: the answer comes from the peer */
    uint64_t out_seq;          /* seq of what we sent on (our FORWARD or CLAIM; 0: the tenant's
                                  own RENEW/RELEASE) */
    uint8_t next[CPN_PK_LEN];  /* where it went: a member (or the peer, at home) */
    uint8_t from[CPN_PK_LEN];  /* the member it came from (not at the origin) */
    uint64_t in_seq;           /* seq of the FORWARD it came in */
    broker_fwd_ref_t ref;
    uint8_t tenant[CPN_PK_LEN];
    char req_id[CPN_NAME_MAX];
    uint64_t deadline_mono;
} s_fwd_t;

struct federation {
    s_link_t *links;
    size_t n_links;
    s_fwd_t *fwd; /* FED_FWD_MAX slots */
    size_t n_fwd;
    struct {
        uint64_t relays_accepted, relays_refused, relays_dup, relays_ignored;
        uint64_t forwards_in, forwards_out, home_claims, answers_back, syncs_in, sync_relays;
    } st;
};

/* ---- small helpers ---- */

static bool s_zero(const uint8_t key[CPN_PK_LEN])
{
    return sodium_is_zero(key, CPN_PK_LEN) != 0;
}

/* For logs: the request (a claim) or the lease (a renewal or release) it is about. */
static const char *s_what(const s_fwd_t *e)
{
    return e->req_id[0] ? e->req_id : e->ref.lease_id;
}

static s_link_t *s_link(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; f && i < f->n_links; i++)
        if (memcmp(f->links[i].key, key, CPN_PK_LEN) == 0)
            return &f->links[i];
    return NULL;
}

static uint64_t s_timeout_ms(const broker_t *self)
{
    return self->pol->federation.hello_timeout_s * 1000;
}

/* Send a built frame on a link; counts it, or notes that the link is down. */
static int s_link_send(s_link_t *l, const uint8_t *frame, size_t len)
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
        log_info("fed", "link to %s (%s) not connected: %s", l->name, l->endpoint,
                 cpn_errname(r));
    l->tx_ok = false;
    l->drops++;
    return CPN_E_UNREACHABLE;
}

/* Sign a message of ours and send it on a link. *seq_out (may be NULL) gets its seq. */
static int s_link_build(broker_t *self, s_link_t *l, cpn_msg_type_t type, const void *body,
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
    r = s_link_send(l, frame, len);
    free(frame);
    return r;
}

/* Can the link take a frame now? With ZMQ_IMMEDIATE only a connected link is writable, so a
 * link that is down costs no signature per tick. */
static bool s_link_writable(const s_link_t *l)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(l->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLOUT);
}

static int s_send_hello(broker_t *self, s_link_t *l)
{
    cpn_hello_t h;
    memset(&h, 0, sizeof h);
    snprintf(h.role, sizeof h.role, "broker");
    snprintf(h.name, sizeof h.name, "%s", self->pol->broker.name);
    snprintf(h.endpoint, sizeof h.endpoint, "%s", self->pol->broker.listen);
    return s_link_build(self, l, CPN_MSG_HELLO, &h, NULL);
}

/* ---- links ---- */

static int s_link_open(broker_t *self, s_link_t *l)
{
    const policy_t *pol = self->pol;
    cpn_curve_t curve = {.enabled = pol->broker.curve, .self = self->id};
    memcpy(curve.server_pk, l->key, CPN_PK_LEN);
    uint64_t max = s_timeout_ms(self) / 3;
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

static void s_link_from_member(s_link_t *l, const policy_member_t *m)
{
    memcpy(l->key, m->key, CPN_PK_LEN);
    snprintf(l->name, sizeof l->name, "%s", m->name);
    snprintf(l->endpoint, sizeof l->endpoint, "%s", m->endpoint);
    l->use_offers = m->use_offers;
}

/* Forget every offer that came through `key`: it is no longer reachable that way. */
static size_t s_forget_via(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    size_t cur = 0, n = 0, cap = 0;
    uint8_t (*keys)[CPN_PK_LEN] = NULL;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL)
        if (memcmp(bp->via, key, CPN_PK_LEN) == 0)
            cap++;
    if (cap && !(keys = malloc(cap * sizeof *keys))) {
        log_error("fed", "out of memory forgetting offers");
        return 0;
    }
    cur = 0;
    while ((bp = book_next(self->book, &cur)) != NULL && n < cap)
        if (memcmp(bp->via, key, CPN_PK_LEN) == 0)
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
static void s_tell_members(broker_t *self, const uint8_t from[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; i < f->n_links; i++)
        if (f->links[i].up && memcmp(f->links[i].key, from, CPN_PK_LEN) != 0)
            f->links[i].sync_due = true;
}

static void s_mark_down(broker_t *self, s_link_t *l, uint64_t silent_ms)
{
    l->up = false;
    l->downs++;
    size_t gone = s_forget_via(self, l->key);
    log_warn("fed", "member %s down: silent for %" PRIu64 " ms; %zu peers' offers through it "
                    "forgotten",
             l->name, silent_ms, gone);
    if (gone)
        s_tell_members(self, l->key);
}

static void s_link_close(broker_t *self, s_link_t *l)
{
    cpn_link_destroy(&l->link);
    l->sock = NULL;
    size_t gone = s_forget_via(self, l->key);
    if (gone)
        log_info("fed", "member %s left the policy: %zu peers' offers forgotten", l->name, gone);
}

int federation_new(broker_t *self)
{
    const policy_t *pol = self->pol;
    struct federation *f = calloc(1, sizeof *f);
    if (!f)
        return CPN_E_NOMEM;
    self->fed = f;
    f->fwd = calloc(FED_FWD_MAX, sizeof *f->fwd);
    f->links = calloc(pol->federation.n_members ? pol->federation.n_members : 1,
                      sizeof *f->links);
    if (!f->fwd || !f->links)
        return CPN_E_NOMEM;
    for (size_t i = 0; i < pol->federation.n_members; i++) {
        s_link_t *l = &f->links[f->n_links];
        s_link_from_member(l, &pol->federation.members[i]);
        if (s_link_open(self, l) == CPN_OK)
            f->n_links++;
    }
    /* The first HELLOs go out from the first tick, once connections are up. */
    return CPN_OK;
}

void federation_destroy(broker_t *self)
{
    struct federation *f = self->fed;
    if (!f)
        return;
    for (size_t i = 0; i < f->n_links; i++)
        cpn_link_destroy(&f->links[i].link);
    free(f->links);
    free(f->fwd);
    free(f);
    self->fed = NULL;
}

void federation_reload(broker_t *self)
{
    struct federation *f = self->fed;
    const policy_t *pol = self->pol;
    size_t n = pol->federation.n_members;
    s_link_t *neu = calloc(n ? n : 1, sizeof *neu);
    if (!f || !neu) {
        free(neu);
        log_error("fed", "out of memory: links unchanged after the reload");
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const policy_member_t *m = &pol->federation.members[i];
        s_link_t *old = s_link(self, m->key), *l = &neu[kept];
        if (old && old->sock && strcmp(old->endpoint, m->endpoint) == 0) {
            *l = *old;
            old->sock = NULL; /* moved */
            old->link = NULL;
            s_link_from_member(l, m);
            if (!l->use_offers)
                (void)s_forget_via(self, l->key);
            kept++;
            continue;
        }
        s_link_from_member(l, m);
        if (s_link_open(self, l) == CPN_OK)
            kept++;
    }
    for (size_t i = 0; i < f->n_links; i++)
        if (f->links[i].sock)
            s_link_close(self, &f->links[i]);
    free(f->links);
    f->links = neu;
    f->n_links = kept;
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
static void s_link_drain(broker_t *self, s_link_t *l)
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
            if (env.type == CPN_MSG_ERROR && cpn_msg_decode(&env, &self->lim, &e) == CPN_OK)
                log_warn("fed", "member %s refused our message seq %" PRIu64 ": %s (%s)",
                         l->name, e.ref_seq, cpn_errname(e.code), e.reason);
            else
                log_debug("fed", "member %s sent %s on our link", l->name,
                          cpn_msg_name(env.type));
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

/* ---- sync ---- */

static int s_key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, CPN_PK_LEN);
}

static void s_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* key + 1 as a big-endian number; false if key was all 0xff. */
static bool s_key_inc(uint8_t key[CPN_PK_LEN])
{
    for (int i = CPN_PK_LEN - 1; i >= 0; i--)
        if (++key[i] != 0)
            return true;
    return false;
}

/* Our book's digest, in key ranges that each fit a frame. */
static int s_send_sync(broker_t *self, s_link_t *l)
{
    static const uint8_t none[1];
    size_t cur = 0, n = 0;
    const book_peer_t *bp;
    while (book_next(self->book, &cur))
        n++;
    uint8_t *ents = malloc(n ? n * CPN_SYNC_ENTRY_LEN : 1);
    if (!ents)
        return CPN_E_NOMEM;
    size_t k = 0;
    cur = 0;
    while ((bp = book_next(self->book, &cur)) != NULL && k < n) {
        memcpy(ents + k * CPN_SYNC_ENTRY_LEN, bp->key, CPN_PK_LEN);
        s_put_be64(ents + k * CPN_SYNC_ENTRY_LEN + CPN_PK_LEN, bp->seq);
        k++;
    }
    qsort(ents, k, CPN_SYNC_ENTRY_LEN, s_key_cmp);
    size_t room = self->lim.max_frame > FED_SYNC_OVERHEAD * 2
                      ? (self->lim.max_frame - FED_SYNC_OVERHEAD) / CPN_SYNC_ENTRY_LEN
                      : 1;
    if (room * CPN_SYNC_ENTRY_LEN > self->lim.max_str)
        room = self->lim.max_str / CPN_SYNC_ENTRY_LEN;
    cpn_sync_t s;
    memset(&s, 0, sizeof s);
    memset(s.hi, 0xff, sizeof s.hi);
    int r = CPN_OK;
    size_t i = 0, frames = 0;
    do {
        size_t take = k - i < room ? k - i : room;
        bool last = i + take == k;
        memset(s.hi, 0xff, sizeof s.hi);
        if (!last)
            memcpy(s.hi, ents + (i + take - 1) * CPN_SYNC_ENTRY_LEN, CPN_PK_LEN);
        s.entries.ptr = take ? ents + i * CPN_SYNC_ENTRY_LEN : none;
        s.entries.len = take * CPN_SYNC_ENTRY_LEN;
        if ((r = s_link_build(self, l, CPN_MSG_SYNC, &s, NULL)) != CPN_OK)
            break;
        frames++;
        i += take;
        memcpy(s.lo, s.hi, CPN_PK_LEN);
        if (!last)
            (void)s_key_inc(s.lo);
    } while (i < k);
    free(ents);
    if (r == CPN_OK) {
        l->sync_due = false;
        log_info("fed", "sent %s a SYNC digest of %zu peers in %zu frame%s", l->name, k, frames,
                 frames == 1 ? "" : "s");
    }
    return r;
}

/* Forget the offers that came through member l, lie in the digest's range and are not in
 * it: l no longer has them (it lost the link they came by, or forgot them), so they cannot be
 * reached through l. The digest is l's book when it sent it, and what l relays to us comes
 * in order on the same link: an offer it relayed before the SYNC is in the digest. */
static size_t s_forget_missing(broker_t *self, const s_link_t *l, const cpn_sync_t *sync)
{
    size_t cur = 0, n = 0, cap = 0, gone = 0;
    uint64_t seq = 0;
    const book_peer_t *bp;
    uint8_t (*keys)[CPN_PK_LEN] = NULL;
    for (int pass = 0; pass < 2; pass++) {
        cur = 0;
        while ((bp = book_next(self->book, &cur)) != NULL) {
            if (memcmp(bp->via, l->key, CPN_PK_LEN) != 0 ||
                memcmp(bp->key, sync->lo, CPN_PK_LEN) < 0 ||
                memcmp(bp->key, sync->hi, CPN_PK_LEN) > 0 || fed_sync_find(sync, bp->key, &seq))
                continue;
            if (pass == 0)
                cap++;
            else if (n < cap)
                memcpy(keys[n++], bp->key, CPN_PK_LEN);
        }
        if (pass == 0 && (!cap || !(keys = malloc(cap * sizeof *keys))))
            break;
    }
    if (cap && !keys)
        log_error("fed", "out of memory forgetting offers");
    for (size_t i = 0; i < n; i++)
        gone += book_forget(self->book, keys[i]) == CPN_OK;
    free(keys);
    return gone;
}

static int s_send_relay(broker_t *self, s_link_t *l, const uint8_t *frame, size_t len,
                        uint32_t hops)
{
    cpn_relay_t rel = {.hops = hops, .msg = {frame, len}};
    uint8_t *out = NULL;
    size_t out_len = 0;
    int r = cpn_signer_build(&self->signer, CPN_MSG_RELAY, &rel, &out, &out_len);
    if (r == CPN_OK && (r = s_link_send(l, out, out_len)) == CPN_OK) {
        l->relays_out++;
        l->relay_bytes_out += out_len;
    }
    free(out);
    return r;
}

void federation_on_sync(broker_t *self, const broker_rx_t *rx, const cpn_sync_t *sync)
{
    struct federation *f = self->fed;
    s_link_t *l = s_link(self, rx->env.from);
    if (!l)
        return;
    f->st.syncs_in++;
    int r = fed_sync_check(sync);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("fed", "SYNC from %s refused: %s", l->name, cpn_errname(r));
        return;
    }
    uint64_t now = cpn_now_ms();
    uint32_t max_hops = self->pol->federation.max_hops;
    size_t cur = 0, in_range = 0, sent = 0;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL) {
        if (memcmp(bp->key, sync->lo, CPN_PK_LEN) < 0 || memcmp(bp->key, sync->hi, CPN_PK_LEN) > 0)
            continue;
        in_range++;
        uint64_t theirs = 0;
        /* Split horizon: what came through the asker is never sent back to it. */
        if (bp->withdrawn || !bp->frame || bp->expires_ms <= now ||
            memcmp(bp->via, l->key, CPN_PK_LEN) == 0 || bp->hops + 1 > max_hops ||
            (fed_sync_find(sync, bp->key, &theirs) && theirs >= bp->seq))
            continue;
        if (s_send_relay(self, l, bp->frame, bp->frame_len, bp->hops + 1) != CPN_OK)
            break; /* link down: it asks again when it comes back */
        sent++;
    }
    f->st.sync_relays += sent;
    size_t gone = s_forget_missing(self, l, sync);
    log_info("fed", "SYNC from %s: %zu of our peers in its range, %zu offers sent, %zu that "
                    "came through it and it no longer has forgotten",
             l->name, in_range, sent, gone);
    if (gone)
        s_tell_members(self, l->key);
}

/* ---- membership ---- */

void federation_seen(broker_t *self, const uint8_t key[CPN_PK_LEN])
{
    s_link_t *l = s_link(self, key);
    if (!l)
        return;
    uint64_t now = cpn_mono_ms();
    l->last_rx_mono = now;
    if (l->up)
        return;
    l->up = true;
    l->up_since_mono = now;
    log_info("fed", "member %s up", l->name);
    /* Back after a restart: our link may be in its reconnect backoff (up to
     * FED_RECONNECT_MAX_MS) and would refuse FORWARDs until then; a fresh socket connects now. */
    if (!l->tx_ok) {
        cpn_link_t *old = l->link;
        void *old_sock = l->sock;
        l->link = NULL;
        if (s_link_open(self, l) == CPN_OK)
            cpn_link_destroy(&old);
        else { /* keep the one in backoff: it still connects, later */
            l->link = old;
            l->sock = old_sock;
        }
    }
    /* What we lack of its book: ask now, and again on every tick until the link takes it. */
    l->sync_due = l->use_offers;
    if (l->sync_due)
        (void)s_send_sync(self, l);
}

void federation_on_hello(broker_t *self, const broker_rx_t *rx, const cpn_hello_t *hello)
{
    s_link_t *l = s_link(self, rx->env.from);
    if (l)
        log_debug("fed", "HELLO from member %s (%s, %s)", l->name, hello->name,
                  hello->endpoint);
}

void federation_tick(broker_t *self, uint64_t now)
{
    struct federation *f = self->fed;
    if (!f)
        return;
    uint64_t timeout = s_timeout_ms(self), period = timeout / 3;
    for (size_t i = 0; i < f->n_links; i++) {
        s_link_t *l = &f->links[i];
        /* A connection lost, even to an oversize frame or one that failed to decrypt (which
         * libzmq does not redial), comes back; HELLO as soon as it does (below). */
        if (cpn_link_tick(l->link, now) & CPN_LINK_DOWN)
            l->tx_ok = false;
        l->sock = cpn_link_socket(l->link);
        /* Until a send goes through, every tick looks whether the link came up: a restarted
         * member hears from us at once. */
        bool due = l->tx_ok ? now - l->last_hello_mono >= period : s_link_writable(l);
        if (due && s_send_hello(self, l) == CPN_OK)
            l->last_hello_mono = now;
        if (l->up && now - l->last_rx_mono > timeout)
            s_mark_down(self, l, now - l->last_rx_mono);
        if (l->up && l->sync_due && l->tx_ok)
            (void)s_send_sync(self, l);
    }
    for (size_t i = 0; i < FED_FWD_MAX && f->n_fwd; i++) {
        s_fwd_t *e = &f->fwd[i];
        if (e->used && now >= e->deadline_mono) {
            log_debug("fed", "forwarded %s for %s: no answer in time",
                      cpn_msg_name(e->ref.kind), s_what(e));
            memset(e, 0, sizeof *e);
            f->n_fwd--;
        }
    }
}

/* ---- relay ---- */

void federation_publish(broker_t *self, const uint8_t *frame, size_t len, uint32_t hops,
                        const uint8_t *from)
{
    struct federation *f = self->fed;
    uint32_t out = hops + 1;
    if (!f || !f->n_links || out > self->pol->federation.max_hops)
        return;
    cpn_relay_t rel = {.hops = out, .msg = {frame, len}};
    uint8_t *relay = NULL;
    size_t relay_len = 0;
    /* One signed RELAY for every member: nothing in it depends on the receiver. A member whose
     * link is down misses it and catches up by SYNC when it comes back. */
    if (cpn_signer_build(&self->signer, CPN_MSG_RELAY, &rel, &relay, &relay_len) != CPN_OK) {
        log_error("fed", "cannot build a RELAY");
        return;
    }
    for (size_t i = 0; i < f->n_links; i++) {
        s_link_t *l = &f->links[i];
        if (from && memcmp(l->key, from, CPN_PK_LEN) == 0)
            continue;
        if (s_link_send(l, relay, relay_len) == CPN_OK) {
            l->relays_out++;
            l->relay_bytes_out += relay_len;
        }
    }
    free(relay);
}

static void s_error_to(broker_t *self, const broker_rx_t *rx, int code, const char *reason)
{
    cpn_error_t e;
    memset(&e, 0, sizeof e);
    e.code = code;
    e.ref_seq = rx->env.seq;
    snprintf(e.reason, sizeof e.reason, "%s", reason);
    (void)broker_send(self, rx->rid, rx->rid_len, CPN_MSG_ERROR, &e);
}

void federation_on_relay(broker_t *self, const broker_rx_t *rx, const cpn_relay_t *relay)
{
    struct federation *f = self->fed;
    s_link_t *l = s_link(self, rx->env.from);
    cpn_env_t in;
    bool parsed = false;
    char why[CPN_REASON_MAX] = "";
    int r;
    if (!l)
        return;
    l->relays_in++;
    if (!l->use_offers) { /* federation.use_members leaves it out */
        f->st.relays_ignored++;
        return;
    }
    uint64_t now = cpn_now_ms(), skew = self->pol->limits.skew_s * 1000;
    if ((r = cpn_env_parse(relay->msg.ptr, relay->msg.len, &self->lim, &in)) != CPN_OK)
        goto refuse;
    parsed = true;
    if (in.type != CPN_MSG_AD && in.type != CPN_MSG_WITHDRAW) {
        r = CPN_E_TYPE;
        goto refuse;
    }
    if (relay->hops == 0 || relay->hops > self->pol->federation.max_hops) {
        r = CPN_E_INVAL;
        snprintf(why, sizeof why, "hops %u outside 1..max_hops", relay->hops);
        goto refuse;
    }
    if (!policy_peer_trusted(self->pol, in.from)) {
        r = CPN_E_UNTRUSTED;
        goto refuse;
    }
    if ((r = cpn_sigcache_verify(self->sigcache, &in)) != CPN_OK) {
        snprintf(why, sizeof why, "the peer's signature does not verify: forged or altered");
        goto refuse;
    }
    if (in.ts_ms > now + skew) {
        r = CPN_E_TS_SKEW;
        goto refuse;
    }
    /* A peer connected to us directly is ours to hear from: its relayed copies would only
     * move the offer's route away from the direct connection. */
    const book_peer_t *bp = book_peer(self->book, in.from);
    if (bp && !bp->withdrawn && s_zero(bp->via) && bp->expires_ms > now &&
        broker_route(self, in.from)) {
        f->st.relays_dup++;
        return;
    }
    uint32_t n_packages = 0;
    if (in.type == CPN_MSG_AD) {
        cpn_ad_t ad;
        if ((r = cpn_msg_decode(&in, &self->lim, &ad)) != CPN_OK)
            goto refuse;
        if (in.ts_ms + (uint64_t)ad.ttl_s * 1000 <= now) {
            cpn_ad_clear(&ad);
            r = CPN_E_EXPIRED;
            goto refuse;
        }
        n_packages = ad.n_packages;
        r = book_put_ad(self->book, in.from, in.seq, in.ts_ms, &ad, in.frame, in.frame_len,
                        l->key, relay->hops);
        cpn_ad_clear(&ad);
    } else {
        cpn_withdraw_t w;
        if ((r = cpn_msg_decode(&in, &self->lim, &w)) != CPN_OK)
            goto refuse;
        r = book_withdraw(self->book, in.from, in.seq);
    }
    if (r == CPN_E_REPLAY || r == CPN_E_NO_PACKAGE) { /* seen already: the flood ends here */
        f->st.relays_dup++;
        return;
    }
    if (r != CPN_OK)
        goto refuse;
    f->st.relays_accepted++;
    {
        char kid[CPN_KID_LEN];
        cpn_key_id(in.from, kid);
        log_debug("fed", "%s of %s seq %" PRIu64 " via %s, hops %u, %u packages, %" PRIu64
                         " ms after it was signed",
                  cpn_msg_name(in.type), kid, in.seq, l->name, relay->hops, n_packages,
                  now > in.ts_ms ? now - in.ts_ms : 0);
    }
    federation_publish(self, in.frame, in.frame_len, relay->hops, l->key);
    return;
refuse:
    f->st.relays_refused++;
    broker_count_refusal(self, r);
    {
        char kid[CPN_KID_LEN] = "?";
        if (parsed)
            cpn_key_id(in.from, kid);
        log_warn("fed", "RELAY from member %s: %s of peer %s refused: %s%s%s", l->name,
                 parsed ? cpn_msg_name(in.type) : "frame", kid, cpn_errname(r),
                 why[0] ? ": " : "", why);
        s_error_to(self, rx, r, why[0] ? why : cpn_strerror(r));
    }
}

/* ---- forwarded claims ---- */

static s_fwd_t *s_fwd_alloc(broker_t *self)
{
    struct federation *f = self->fed;
    if (f->n_fwd >= FED_FWD_MAX)
        return NULL;
    for (size_t i = 0; i < FED_FWD_MAX; i++)
        if (!f->fwd[i].used) {
            memset(&f->fwd[i], 0, sizeof f->fwd[i]);
            f->fwd[i].used = true;
            f->fwd[i].deadline_mono =
                cpn_mono_ms() + self->pol->limits.claim_timeout_s * 2000 + 1000;
            f->n_fwd++;
            return &f->fwd[i];
        }
    return NULL;
}

static void s_fwd_free(broker_t *self, s_fwd_t *e)
{
    memset(e, 0, sizeof *e);
    self->fed->n_fwd--;
}

int federation_route_open(broker_t *self, const uint8_t *route, size_t len,
                          const uint8_t peer[CPN_PK_LEN], cpn_env_t *inner, uint32_t *hops)
{
    return fed_route_open(&self->lim, self->sigcache, self->pol->federation.max_hops, route, len,
                          peer, inner, hops);
}

/* A refusal goes back the way the FORWARD came: our NACK inside a FORWARD naming it. */
static void s_nack_back(broker_t *self, s_link_t *l, uint64_t in_seq,
                        const uint8_t peer[CPN_PK_LEN], const char *ref, int code,
                        const char *reason)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "%s", ref ? ref : "");
    n.ref_seq = in_seq;
    n.code = code;
    snprintf(n.reason, sizeof n.reason, "broker %s: %s", self->pol->broker.name,
             reason ? reason : cpn_strerror(code));
    uint8_t *frame = NULL;
    size_t len = 0;
    if (cpn_signer_build(&self->signer, CPN_MSG_NACK, &n, &frame, &len) == CPN_OK) {
        cpn_forward_t b = {.hops = 1, .msg = {frame, len}, .ref_seq = in_seq};
        memcpy(b.to, peer, CPN_PK_LEN);
        (void)s_link_build(self, l, CPN_MSG_FORWARD, &b, NULL);
    }
    free(frame);
}

/* What a forwarded frame is, for matching its answer later. */
static int s_describe(broker_t *self, const cpn_env_t *inner, const uint8_t peer[CPN_PK_LEN],
                      s_fwd_t *e)
{
    int r = CPN_OK;
    e->ref.kind = inner->type;
    memcpy(e->ref.peer, peer, CPN_PK_LEN);
    if (inner->type == CPN_MSG_CLAIM) {
        cpn_claim_t c;
        cpn_env_t renv;
        cpn_request_t req;
        if ((r = cpn_msg_decode(inner, &self->lim, &c)) != CPN_OK ||
            (r = cpn_env_open(c.request.ptr, c.request.len, &self->lim, &renv)) != CPN_OK)
            return r;
        if (renv.type != CPN_MSG_REQUEST)
            return CPN_E_SCHEMA;
        if ((r = cpn_msg_decode(&renv, &self->lim, &req)) != CPN_OK)
            return r;
        e->ref.claim_seq = inner->seq;
        memcpy(e->tenant, renv.from, CPN_PK_LEN);
        snprintf(e->req_id, sizeof e->req_id, "%s", req.id);
    } else if (inner->type == CPN_MSG_RENEW) {
        cpn_renew_t rn;
        if ((r = cpn_msg_decode(inner, &self->lim, &rn)) != CPN_OK)
            return r;
        snprintf(e->ref.lease_id, sizeof e->ref.lease_id, "%s", rn.lease_id);
    } else {
        cpn_release_t rl;
        if ((r = cpn_msg_decode(inner, &self->lim, &rl)) != CPN_OK)
            return r;
        snprintf(e->ref.lease_id, sizeof e->ref.lease_id, "%s", rl.lease_id);
    }
    if (inner->type != CPN_MSG_CLAIM) {
        e->ref.tenant_seq = inner->seq;
        memcpy(e->tenant, inner->from, CPN_PK_LEN);
    }
    return CPN_OK;
}

/* We hold the peer's connection: the CLAIM to the peer is ours, carrying the chain as route;
 * a tenant's RENEW or RELEASE goes to the peer as it is. */
static int s_home(broker_t *self, const broker_rx_t *rx, const cpn_env_t *inner,
                  const broker_route_t *route, s_fwd_t *e)
{
    int r;
    uint8_t *frame = NULL;
    size_t len = 0;
    if (inner->type != CPN_MSG_CLAIM) {
        r = broker_send_frame(self, route->rid, route->rid_len, inner->frame, inner->frame_len);
        e->out_seq = 0;
        goto out;
    }
    cpn_claim_t c;
    if ((r = cpn_msg_decode(inner, &self->lim, &c)) != CPN_OK)
        goto out;
    c.route.ptr = rx->env.frame;
    c.route.len = rx->env.frame_len;
    /* Never later than the deadline of the CLAIM we carry: the broker that sent it counts on
     * no grant after it (docs/PROTOCOL.md, "Exactly one lease per request"). */
    uint64_t ours = cpn_now_ms() + (uint64_t)self->pol->limits.claim_timeout_s * 1000;
    if (ours < c.deadline)
        c.deadline = ours;
    if ((r = cpn_signer_build(&self->signer, CPN_MSG_CLAIM, &c, &frame, &len)) != CPN_OK)
        goto out;
    e->out_seq = self->signer.last_seq;
    cpn_env_t env;
    /* The LEASE will carry this CLAIM back: remember it is ours and already good. */
    if (cpn_env_parse(frame, len, &self->lim, &env) == CPN_OK)
        cpn_sigcache_add(self->sigcache, &env);
    r = broker_send_frame(self, route->rid, route->rid_len, frame, len);
    self->fed->st.home_claims++;
    self->stats.claims_sent++;
out:
    free(frame);
    return r;
}

static void s_on_outbound(broker_t *self, const broker_rx_t *rx, s_link_t *l,
                          const cpn_forward_t *fwd)
{
    struct federation *f = self->fed;
    cpn_env_t inner;
    uint32_t hops = 0;
    s_fwd_t *e = NULL;
    char kid[CPN_KID_LEN];
    const char *why = NULL;
    int r;
    cpn_key_id(fwd->to, kid);
    f->st.forwards_in++;
    if ((r = federation_route_open(self, rx->env.frame, rx->env.frame_len, fwd->to, &inner,
                                   &hops)) != CPN_OK) {
        why = "the FORWARD chain does not verify";
        goto refuse;
    }
    if (fwd->hops != hops) {
        r = CPN_E_SCHEMA;
        why = "hops differs from the FORWARDs nested";
        goto refuse;
    }
    if (!(e = s_fwd_alloc(self))) {
        r = CPN_E_BUSY;
        why = "too many forwarded messages in flight";
        goto refuse;
    }
    if ((r = s_describe(self, &inner, fwd->to, e)) != CPN_OK) {
        why = "the forwarded message does not decode";
        goto refuse;
    }
    memcpy(e->from, l->key, CPN_PK_LEN);
    e->in_seq = rx->env.seq;
    if (ledger_audit(self->ledger, rx->env.ts_ms, "FORWARD", rx->env.from, CPN_OK,
                     rx->env.frame, rx->env.frame_len) != CPN_OK)
        log_warn("ledger", "audit of a FORWARD not written");
    const book_peer_t *bp = book_peer(self->book, fwd->to);
    const broker_route_t *route = broker_route(self, fwd->to);
    if (route && (!bp || s_zero(bp->via))) {
        e->home = true;
        memcpy(e->next, fwd->to, CPN_PK_LEN);
        if ((r = s_home(self, rx, &inner, route, e)) != CPN_OK) {
            why = "the peer's connection did not take it";
            goto refuse;
        }
        log_info("fed", "%s from %s for peer %s (%s), %u hops: sent to the peer",
                 cpn_msg_name(inner.type), l->name, kid, s_what(e), hops);
        return;
    }
    s_link_t *next = bp && !bp->withdrawn ? s_link(self, bp->via) : NULL;
    if (!next || next == l) {
        r = CPN_E_UNREACHABLE;
        why = "no route to the peer from here";
        goto refuse;
    }
    if (hops + 1 > self->pol->federation.max_hops) {
        r = CPN_E_UNREACHABLE;
        why = "the peer is more than max_hops away";
        goto refuse;
    }
    cpn_forward_t w = {.hops = hops + 1, .msg = {rx->env.frame, rx->env.frame_len}};
    memcpy(w.to, fwd->to, CPN_PK_LEN);
    if ((r = s_link_build(self, next, CPN_MSG_FORWARD, &w, &e->out_seq)) != CPN_OK) {
        why = "the next member's link is down";
        goto refuse;
    }
    memcpy(e->next, next->key, CPN_PK_LEN);
    f->st.forwards_out++;
    log_info("fed", "%s from %s for peer %s (%s): on to %s", cpn_msg_name(inner.type),
             l->name, kid, s_what(e), next->name);
    return;
refuse:
    log_warn("fed", "FORWARD from %s for peer %s refused: %s (%s)", l->name, kid,
             cpn_errname(r), why ? why : "-");
    broker_count_refusal(self, r);
    s_nack_back(self, l, rx->env.seq, fwd->to, e ? e->req_id : NULL, r, why);
    if (e)
        s_fwd_free(self, e);
}

static s_fwd_t *s_fwd_by_out(broker_t *self, uint64_t seq, const uint8_t next[CPN_PK_LEN])
{
    struct federation *f = self->fed;
    for (size_t i = 0; i < FED_FWD_MAX && f->n_fwd; i++) {
        s_fwd_t *e = &f->fwd[i];
        if (e->used && !e->home && e->out_seq == seq && memcmp(e->next, next, CPN_PK_LEN) == 0)
            return e;
    }
    return NULL;
}

/* An answer coming back: pass it on towards where the FORWARD came from, or, at the origin,
 * open it and hand it to claim.c. */
static void s_on_return(broker_t *self, const broker_rx_t *rx, s_link_t *l,
                        const cpn_forward_t *fwd)
{
    struct federation *f = self->fed;
    s_fwd_t *e = s_fwd_by_out(self, fwd->ref_seq, l->key);
    if (!e) {
        /* Never sent, or given up on: refused like any answer that does not match our CLAIM. */
        broker_count_refusal(self, CPN_E_CHAIN);
        log_warn("fed", "answer from %s for nothing we forwarded (seq %" PRIu64 ")", l->name,
                 fwd->ref_seq);
        return;
    }
    if (!e->origin) {
        s_link_t *back = s_link(self, e->from);
        cpn_forward_t b = {.hops = fwd->hops + 1,
                           .msg = {rx->env.frame, rx->env.frame_len},
                           .ref_seq = e->in_seq};
        memcpy(b.to, fwd->to, CPN_PK_LEN);
        if (back && s_link_build(self, back, CPN_MSG_FORWARD, &b, NULL) == CPN_OK)
            f->st.answers_back++;
        else
            log_warn("fed", "answer for %s could not go back: link down", s_what(e));
        s_fwd_free(self, e);
        return;
    }
    /* At the origin: the answer inside the FORWARDs of the way back. */
    cpn_env_t env;
    int r = fed_answer_open(&self->lim, self->sigcache, self->pol->federation.max_hops,
                            fwd->msg.ptr, fwd->msg.len, &env);
    broker_fwd_ref_t ref = e->ref;
    s_fwd_free(self, e);
    if (r != CPN_OK) {
        broker_count_refusal(self, r);
        log_warn("fed", "answer from %s refused: %s", l->name, cpn_errname(r));
        return;
    }
    if (self->on_remote_answer)
        self->on_remote_answer(self, &env, &ref);
}

void federation_on_forward(broker_t *self, const broker_rx_t *rx, const cpn_forward_t *fwd)
{
    s_link_t *l = s_link(self, rx->env.from);
    if (!l)
        return;
    if (fwd->ref_seq)
        s_on_return(self, rx, l, fwd);
    else
        s_on_outbound(self, rx, l, fwd);
}

int federation_forward(broker_t *self, const uint8_t via[CPN_PK_LEN], const uint8_t *frame,
                       size_t len, const broker_fwd_ref_t *ref)
{
    s_link_t *l = s_link(self, via);
    if (!l)
        return CPN_E_UNREACHABLE;
    s_fwd_t *e = s_fwd_alloc(self);
    if (!e)
        return CPN_E_BUSY;
    cpn_forward_t f = {.hops = 1, .msg = {frame, len}};
    memcpy(f.to, ref->peer, CPN_PK_LEN);
    int r = s_link_build(self, l, CPN_MSG_FORWARD, &f, &e->out_seq);
    if (r != CPN_OK) {
        s_fwd_free(self, e);
        return CPN_E_UNREACHABLE;
    }
    e->origin = true;
    e->ref = *ref;
    memcpy(e->next, via, CPN_PK_LEN);
    self->fed->st.forwards_out++;
    return CPN_OK;
}

bool federation_peer_answer(broker_t *self, const cpn_env_t *answer, uint64_t claim_seq,
                            const uint8_t *tenant, const char *req_id, const char *lease_id)
{
    struct federation *f = self->fed;
    s_fwd_t *hit = NULL;
    bool lease = answer->type == CPN_MSG_LEASE;
    for (size_t i = 0; f && i < FED_FWD_MAX && f->n_fwd && !hit; i++) {
        s_fwd_t *e = &f->fwd[i];
        if (!e->used || !e->home || memcmp(e->ref.peer, answer->from, CPN_PK_LEN) != 0)
            continue;
        if (e->ref.kind == CPN_MSG_CLAIM) {
            /* A retried claim is answered with the lease of the first one: match it by the
             * tenant's request too. */
            if (e->out_seq == claim_seq ||
                (lease && tenant && req_id && memcmp(e->tenant, tenant, CPN_PK_LEN) == 0 &&
                 strcmp(e->req_id, req_id) == 0))
                hit = e;
        } else if (lease ? lease_id && strcmp(e->ref.lease_id, lease_id) == 0
                         : e->ref.tenant_seq == claim_seq)
            hit = e;
    }
    if (!hit)
        return false;
    s_link_t *back = s_link(self, hit->from);
    cpn_forward_t b = {.hops = 1, .msg = {answer->frame, answer->frame_len},
                       .ref_seq = hit->in_seq};
    memcpy(b.to, answer->from, CPN_PK_LEN);
    if (back && s_link_build(self, back, CPN_MSG_FORWARD, &b, NULL) == CPN_OK) {
        f->st.answers_back++;
        log_info("fed", "%s for %s passed back to %s", cpn_msg_name(answer->type), s_what(hit),
                 back->name);
    } else
        log_warn("fed", "%s for %s could not go back: link down", cpn_msg_name(answer->type),
                 s_what(hit));
    s_fwd_free(self, hit);
    return true;
}

/* ---- what cpnctl shows ---- */

size_t federation_n_rows(const broker_t *self)
{
    return self->fed ? self->fed->n_links : 0;
}

const char *federation_row_name(const broker_t *self, size_t i)
{
    return i < federation_n_rows(self) ? self->fed->links[i].name : NULL;
}

void federation_row(broker_t *self, size_t i, msgpack_packer *pk)
{
    struct federation *f = self->fed;
    uint64_t now = cpn_mono_ms();
    if (i >= federation_n_rows(self)) {
        msgpack_pack_nil(pk);
        return;
    }
    const s_link_t *l = &f->links[i];
    size_t peers = 0, offers = 0, cur = 0;
    const book_peer_t *bp;
    while ((bp = book_next(self->book, &cur)) != NULL)
        if (!bp->withdrawn && memcmp(bp->via, l->key, CPN_PK_LEN) == 0) {
            peers++;
            offers += bp->n_packages;
        }
    char kid[CPN_KID_LEN];
    cpn_key_id(l->key, kid);
    msgpack_pack_map(pk, 13);
    mp_pack_kstr(pk, "name", l->name);
    mp_pack_kstr(pk, "key", kid);
    mp_pack_kstr(pk, "endpoint", l->endpoint);
    mp_pack_kstr(pk, "state", l->up ? "up" : "down");
    mp_pack_kstr(pk, "link", l->tx_ok ? "connected" : "connecting");
    mp_pack_kstr(pk, "use_offers", l->use_offers ? "yes" : "no");
    mp_pack_ku64(pk, "peers", peers);
    mp_pack_ku64(pk, "offers", offers);
    mp_pack_ku64(pk, "silent_s", l->last_rx_mono ? (now - l->last_rx_mono) / 1000 : 0);
    mp_pack_ku64(pk, "relays_in", l->relays_in);
    mp_pack_ku64(pk, "relays_out", l->relays_out);
    mp_pack_ku64(pk, "relay_bytes_out", l->relay_bytes_out);
    mp_pack_ku64(pk, "bytes_out", l->bytes_out);
}

void federation_status(broker_t *self, msgpack_packer *pk)
{
    struct federation *f = self->fed;
    size_t up = 0;
    for (size_t i = 0; f && i < f->n_links; i++)
        up += f->links[i].up;
    mp_pack_ku64(pk, "members", f ? f->n_links : 0);
    mp_pack_ku64(pk, "members_up", up);
    mp_pack_ku64(pk, "relays_accepted", f ? f->st.relays_accepted : 0);
    mp_pack_ku64(pk, "relays_refused", f ? f->st.relays_refused : 0);
    mp_pack_ku64(pk, "forwards_in", f ? f->st.forwards_in : 0);
    mp_pack_ku64(pk, "forwards_out", f ? f->st.forwards_out : 0);
}
