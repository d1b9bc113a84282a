/* federation_int.h - what the files of the federation share, private to them: the links, the
 * table of forwarded messages, and the calls between the files. federation.h is the interface
 * for the rest of the broker.
 *
 * Who calls whom (no file calls round a loop back into itself, tests/test_structure.sh):
 *   federation.c (life cycle, membership, tick) -> fed_link, fed_sync, fed_forward
 *   fed_sync.c                                  -> fed_relay (its rules), fed_link
 *   fed_relay.c, fed_forward.c                  -> fed_link
 *   fed_link.c, fed_status.c                    -> no other file of the federation
 */
#ifndef CPN_FEDERATION_INT_H
#define CPN_FEDERATION_INT_H

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#include "fed_check.h"
#include "federation.h"
#include "link.h"

#define FED_RECONNECT_MAX_MS 5000
#define FED_SYNC_OVERHEAD 512 /* envelope and SYNC keys around the digest bytes */

/* One member's link (fed_link.c). */
typedef struct {
    uint8_t key[CPN_PK_LEN];
    char name[CPN_NAME_MAX];
    char endpoint[CPN_ENDPOINT_MAX];
    bool use_offers;
    cpn_link_t *link; /* rebuilt after a drop libzmq does not redial (link.h) */
    void *sock;       /* cpn_link_socket(link), taken again after every cpn_link_tick */
    bool up;          /* heard from within hello_timeout */
    bool tx_ok;       /* the last send on the link went out: it is connected */
    bool sync_due;    /* a SYNC to send as soon as the link takes it */
    uint64_t last_rx_mono, last_hello_mono, up_since_mono;
    uint64_t msgs_out, bytes_out, relays_out, relay_bytes_out, relays_in, drops, downs;
} fed_link_t;

/* A message we carried and whose answer will come back (fed_forward.c). */
typedef struct {
    bool used;
    bool origin;              /* we started it: the answer goes to claim.c */
    bool home;                /* we are the peer's home: the answer comes from the peer */
    uint64_t out_seq;         /* seq of what we sent on (our FORWARD or CLAIM; 0: the tenant's
                                 own RENEW/RELEASE) */
    uint8_t next[CPN_PK_LEN]; /* where it went: a member (or the peer, at home) */
    uint8_t from[CPN_PK_LEN]; /* the member it came from (not at the origin) */
    uint64_t in_seq;          /* seq of the FORWARD it came in */
    broker_fwd_ref_t ref;
    uint8_t tenant[CPN_PK_LEN];
    char req_id[CPN_NAME_MAX];
    uint64_t deadline_mono;
} fed_fwd_t;

struct federation {
    fed_link_t *links;
    size_t n_links;
    fed_fwd_t *fwd; /* FED_FWD_MAX slots */
    size_t n_fwd;
    struct {
        uint64_t relays_accepted, relays_refused, relays_dup, relays_ignored;
        uint64_t forwards_in, forwards_out, home_claims, answers_back, syncs_in, sync_relays;
    } st;
};

static inline bool fed_zero(const uint8_t key[CPN_PK_LEN])
{
    return sodium_is_zero(key, CPN_PK_LEN) != 0;
}

static inline uint64_t fed_timeout_ms(const broker_t *self)
{
    return self->pol->federation.hello_timeout_s * 1000;
}

/* ---- fed_link.c ---- */

/* The link to member `key`, or NULL. */
fed_link_t *fed_link_find(broker_t *self, const uint8_t key[CPN_PK_LEN]);
/* Open l's socket (l->key, name and endpoint set): CPN_OK or the error of cpn_link_new. */
int fed_link_open(broker_t *self, fed_link_t *l) CPN_WUR;
void fed_link_from_member(fed_link_t *l, const policy_member_t *m);
/* Close l and forget the offers that came through it (its member left the policy). */
void fed_link_close(broker_t *self, fed_link_t *l);
/* Send a built frame on l (counted): CPN_OK or CPN_E_UNREACHABLE (not connected). */
int fed_link_send(fed_link_t *l, const uint8_t *frame, size_t len);
/* Sign a message of ours and send it on l; *seq_out (may be NULL) gets its seq. */
int fed_link_build(broker_t *self, fed_link_t *l, cpn_msg_type_t type, const void *body,
                   uint64_t *seq_out);
/* Can l take a frame now (connected, with ZMQ_IMMEDIATE)? */
bool fed_link_writable(const fed_link_t *l);
int fed_link_hello(broker_t *self, fed_link_t *l);
/* The member at l fell silent: down, and what came through it forgotten. */
void fed_link_mark_down(broker_t *self, fed_link_t *l, uint64_t silent_ms);
/* Forget every offer that came through member `key`; how many peers' offers went. */
size_t fed_forget_via(broker_t *self, const uint8_t key[CPN_PK_LEN]);
/* Our book lost offers that came through `from`: every other member that is up gets our
 * digest on the next tick. */
void fed_tell_members(broker_t *self, const uint8_t from[CPN_PK_LEN]);

/* ---- fed_sync.c ---- */

/* Send our book's digest to l in SYNC frames (key ranges that each fit a frame). */
int fed_sync_send(broker_t *self, fed_link_t *l);
/* (A digest's form and look-ups are fed_check.h's fed_sync_check and fed_sync_find.) */

/* Pure: does our entry bp go to member `asker` (as a RELAY) in answer to its digest `sync`
 * (checked, bp in its range)? Not if withdrawn, expired or without its frame, if it came
 * through the asker (split horizon), if one more hop would exceed max_hops, or if the digest
 * holds it at the same seq or a newer one. */
bool fed_sync_offers(const book_peer_t *bp, const cpn_sync_t *sync, const uint8_t asker[CPN_PK_LEN],
                     uint64_t now_ms, uint32_t max_hops);

/* ---- fed_relay.c ---- */

/* Pure: may a frame of `type` come in a RELAY that says it crossed `hops` brokers? CPN_OK,
 * CPN_E_TYPE (not an AD or WITHDRAW), CPN_E_INVAL (hops outside 1..max_hops). */
int fed_relay_admit(cpn_msg_type_t type, uint32_t hops, uint32_t max_hops) CPN_WUR;
/* Pure: does a frame that crossed `hops` brokers go on to our members (hops + 1 <= max_hops)? */
bool fed_relay_goes_on(uint32_t hops, uint32_t max_hops);
/* Pure: is a relayed copy of a peer's offer shadowed by the peer's own connection to us? Yes if
 * its entry bp (NULL: unknown) came to us directly, is in force (not withdrawn, not expired at
 * now_ms) and `routed` (we have a connection to the peer): the relayed copy would only move the
 * offer's route away from the direct connection. */
bool fed_relay_shadowed(const book_peer_t *bp, uint64_t now_ms, bool routed);

/* ---- fed_forward.c ---- */

/* Forwarded messages whose answer did not come by their deadline leave the table. */
void fed_forward_expire(broker_t *self, uint64_t now_mono);

#endif
