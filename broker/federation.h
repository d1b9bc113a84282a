/* federation.h - the broker's links to the other brokers of its federation: membership,
 * offer relay, sync on connect, and claims forwarded to a peer's home broker. One file per
 * job implements it: federation.c (life cycle, membership, tick), fed_link.c, fed_sync.c,
 * fed_relay.c, fed_forward.c, fed_status.c, fed_tree.c, fed_summary.c (federation_int.h: what
 * they share).
 *
 * Summaries (federation.summary, docs/FEDERATION.md). A broker may send a SUMMARY of its own
 * peers' offers (rows by shape, region and price band) instead of relying on every broker
 * keeping every AD; a distant broker over its budget keeps the summary, matches against its
 * rows, and its CLAIM for a row goes (FORWARD) to that broker, which resolves it to one of its
 * peers' packages and claims it as the peer's home.
 *
 * Membership. Every member named in the policy gets one outgoing DEALER (CURVE when the policy
 * says so, the server key being the member's own key) on which we send; the member's messages
 * reach us on our ROUTER like anyone else's, verified by the intake. We send HELLO on the link
 * every hello_timeout/3 and as soon as the link (re)connects; a member we have not
 * heard from for hello_timeout is marked down and the offers that came through it are
 * forgotten; the first message after that marks it up again and we send it a SYNC.
 *
 * Offer exchange. An AD or WITHDRAW the book accepted (from a peer, or relayed) goes on in a
 * RELAY {hops + 1, the peer's frame verbatim} while hops + 1 <= max_hops, to the other members
 * on the federation's spanning tree (fed_tree.c; HELLOs say where each broker stands), and to
 * those of which the tree says nothing yet: one copy per broker once it has settled. A
 * RELAY in is opened like a direct message (the peer trusted by our policy, its signature, its
 * ts not ahead of the skew window, the AD not expired) but not through the replay guard: the
 * book deduplicates by (peer, seq), which also ends floods in a mesh.
 *
 * Sync. SYNC carries a digest of our book, (peer key, seq) pairs sorted by key in key ranges
 * that fit a frame; the member answers with RELAYs of what we lack or hold older. Offers that
 * came through the member asking are never sent back to it (split horizon). A digest also
 * says what its sender no longer has: the receiver forgets the offers in the digest's range
 * that came through the sender and are not in it (tombstones stay: a WITHDRAW is the peer's
 * word whatever the route; sync answers carry its frame). Every HELLO carries a fingerprint of
 * the sender's book; a member whose fingerprint stays different from ours gets our digest, so
 * what the tree lost on a broken link comes back. A broker that forgets offers (a member
 * down, or such a digest) sends its digest to its other members, so they stop matching
 * offers behind a link that went down within a tick per hop, not at the offers' ttl.
 *
 * Forwarded claims. A CLAIM for a peer whose offer came through member V travels in
 * FORWARD {to: peer, hops, msg} to V; each broker that is not the peer's home wraps the FORWARD
 * it got in its own and sends it on towards its own `via`; the home broker signs a CLAIM of its
 * own that embeds the tenant's REQUEST verbatim and the FORWARD chain as `route`. The peer's
 * LEASE or NACK comes back hop by hop, each FORWARD naming in ref_seq the frame it answers,
 * which a bounded table of forwarded messages (with timeouts) maps to where it came from.
 * RENEW and RELEASE of remote leases go the same way with the tenant's frame inside.
 */
#ifndef CPN_FEDERATION_H
#define CPN_FEDERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "broker.h"

#define FED_FWD_MAX 4096    /* forwarded messages awaiting an answer */
#define FED_DRAIN_MAX 64    /* frames read from one link per loop pass */
#define FED_RECONNECT_MS 100

/* Open a link to every member of the policy. Call once the ROUTER is bound. */
int federation_new(broker_t *self) CPN_WUR;
void federation_destroy(broker_t *self);
/* After a policy reload: links to members that left are closed (their offers forgotten),
 * links to new members opened, changed endpoints reconnected. */
void federation_reload(broker_t *self);

/* The links' sockets for zmq_poll: fills up to cap items, returns how many. */
size_t federation_pollitems(broker_t *self, zmq_pollitem_t *items, size_t cap);
/* Read what arrived on the links (answers such as ERRORs to what we sent). */
void federation_readable(broker_t *self, const zmq_pollitem_t *items, size_t n);
/* Heartbeats, members marked down, pending syncs, forwarded messages that timed out. */
void federation_tick(broker_t *self, uint64_t now_mono);

/* A verified message from member `key` arrived: it is alive (and up, if it was down). */
void federation_seen(broker_t *self, const uint8_t key[CPN_PK_LEN]);

/* The book accepted an AD or WITHDRAW: pass the peer's frame on to the members. `hops` is how
 * many brokers it crossed before us (0 for a peer of ours), `from` the member it came from
 * (NULL for a peer of ours). */
void federation_publish(broker_t *self, const uint8_t *frame, size_t len, uint32_t hops,
                        const uint8_t *from);

/* Handlers of the members' messages (server.c's dispatch table). */
/* A RELAY: true if the book took a relayed AD, whose peer's key goes to ad_peer. The caller
 * then holds again the units of CLAIMs to that peer still in flight (claim_on_ad), as for an
 * AD the peer sent us directly: the AD replaced the peer's offers, and what a CLAIM held with
 * them. The argument for a direct AD holds for a relayed one: the peer answers a CLAIM before
 * it advertises again, and its home broker sends the answer back (FORWARD) before it relays the
 * AD, on the same link. */
bool federation_on_relay(broker_t *self, const broker_rx_t *rx, const cpn_relay_t *relay,
                         uint8_t ad_peer[CPN_PK_LEN]) CPN_WUR;
void federation_on_hello(broker_t *self, const broker_rx_t *rx, const cpn_hello_t *hello);
void federation_on_forward(broker_t *self, const broker_rx_t *rx, const cpn_forward_t *fwd);
void federation_on_sync(broker_t *self, const broker_rx_t *rx, const cpn_sync_t *sync);

/* Originate a forward: `frame` (our CLAIM, or a tenant's RENEW/RELEASE) for `peer` goes to
 * member `via` in a FORWARD signed by us; `ref` says what to do with the answer. CPN_OK,
 * CPN_E_UNREACHABLE (not a member, or its link is down), CPN_E_BUSY (table full). */
int federation_forward(broker_t *self, const uint8_t via[CPN_PK_LEN], const uint8_t *frame,
                       size_t len, const broker_fwd_ref_t *ref) CPN_WUR;

/* Send to member `key` on our link to it: a message of ours signed now, or a frame built
 * already. CPN_E_UNREACHABLE if it is no member or its link is down. */
int federation_send(broker_t *self, const uint8_t key[CPN_PK_LEN], cpn_msg_type_t type,
                    const void *body) CPN_WUR;
int federation_send_frame(broker_t *self, const uint8_t key[CPN_PK_LEN], const uint8_t *frame,
                          size_t len) CPN_WUR;

/* A LEASE or NACK from a peer of ours (`answer`, verified) that may answer a message we carried
 * for another broker: LEASE with the seq of the CLAIM it embeds (claim_seq), that claim's tenant
 * and request id, and the lease id; NACK with its ref_seq as claim_seq (tenant, req_id,
 * lease_id NULL). Returns true if it was ours to pass back (and was passed back). */
bool federation_peer_answer(broker_t *self, const cpn_env_t *answer, uint64_t claim_seq,
                            const uint8_t *tenant, const char *req_id, const char *lease_id);

/* Walk a FORWARD chain (outermost first) to what it carries: every signature verifies, every
 * FORWARD names `peer` in `to`, at most max_hops FORWARDs nest, and the innermost frame is a
 * CLAIM for `peer` signed by whoever signed the innermost FORWARD (the originating broker), or a
 * tenant's RENEW or RELEASE naming `peer`. *inner points into `route`; *hops (may be NULL) gets
 * the number of FORWARDs. CPN_E_SCHEMA, CPN_E_SIG, CPN_E_DEPTH or a parse error. */
int federation_route_open(broker_t *self, const uint8_t *route, size_t len,
                          const uint8_t peer[CPN_PK_LEN], cpn_env_t *inner,
                          uint32_t *hops) CPN_WUR;

/* Rows of `cpnctl federation`, one map per member link i < federation_n_rows() (query.c pages
 * them, in the order of federation_row_name()), and the counters of `cpnctl status`. A name
 * is owned by the federation and valid until the next reload. */
size_t federation_n_rows(const broker_t *self);
const char *federation_row_name(const broker_t *self, size_t i);
void federation_row(broker_t *self, size_t i, msgpack_packer *pk);
#define FED_STATUS_KEYS 14
void federation_status(broker_t *self, msgpack_packer *pk);

/* One member link as the metrics and the dashboard see it (obs.c). */
typedef struct {
    char name[CPN_NAME_MAX];
    uint8_t key[CPN_PK_LEN];
    bool up;        /* heard from within hello_timeout */
    bool connected; /* the last send on the link went out */
    uint64_t silent_ms, relays_in, relays_out, relay_bytes_out, bytes_out, downs;
} federation_link_info_t;
/* Link i < federation_n_rows(); false past the end. */
bool federation_link_info(const broker_t *self, size_t i, federation_link_info_t *out);
/* The federation's counters (zero without a federation). */
typedef struct {
    uint64_t relays_accepted, relays_refused, forwards_in, forwards_out;
} federation_counts_t;
void federation_counts(const broker_t *self, federation_counts_t *out);

#endif
