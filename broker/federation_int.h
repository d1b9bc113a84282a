/* federation_int.h - what the files of the federation share, private to them: the links, the
 * table of forwarded messages, and the calls between the files. federation.h is the interface
 * for the rest of the broker.
 *
 * Who calls whom (no file calls round a loop back into itself, tests/test_structure.sh):
 *   federation.c (life cycle, membership, tick) -> fed_link, fed_sync, fed_forward, fed_tree
 *   fed_sync.c                                  -> fed_relay (its rules), fed_link, fed_tree
 *   fed_relay.c                                 -> fed_link, fed_tree
 *   fed_forward.c                               -> fed_link
 *   fed_link.c, fed_status.c                    -> no other file of the federation
 *   fed_tree.c (the spanning tree, pure)        -> no other file of the federation
 *   fed_summary.c (summaries, ours and claims)  -> fed_relay (federation_publish)
 * (federation.c, fed_sync.c and fed_forward.c call fed_summary.c.)
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
/* Anti-entropy (docs/FEDERATION.md): every HELLO carries a fingerprint of the sender's book;
 * a member whose fingerprint differs from ours in FED_DIGEST_MISSES HELLOs in a row gets our
 * digest (SYNC), at most once per FED_DIGEST_SYNC_MIN_MS per link (members whose books differ
 * for good, e.g. beyond max_hops or left out of use_members, cost one SYNC per that period).
 * Offers expiring within FED_DIGEST_MARGIN_MS are left out of the fingerprint: both sides
 * drop them at slightly different moments. Ours is recomputed at most every
 * FED_DIGEST_EVERY_MS (one pass over the book). */
#define FED_DIGEST_MISSES 2
#define FED_DIGEST_SYNC_MIN_MS 30000
#define FED_DIGEST_MARGIN_MS 10000
#define FED_DIGEST_EVERY_MS 1000
#define FED_DIGEST_SEED 0x63706e2d64696721ULL /* the fingerprint of an empty book */
/* Off the spanning tree, a member's fingerprint must have differed for FED_DIGEST_OFFTREE_MS
 * before it gets our digest: after a loss the tree links repair the books within a few HELLO
 * periods and the off-tree links then agree, so a dense graph does not sync on every link
 * (docs/BENCHMARKS.md, "Federation at scale"); what a member off the tree keeps from us for
 * good (a member that drops what it should pass on) is still repaired, that much later. */
#define FED_DIGEST_OFFTREE_MS 30000
/* Our summary (federation.summary.publish) is made again at most every FED_SUMMARY_EVERY_MS
 * (one pass over the book) and sent when its rows changed or a third of its ttl passed. */
#define FED_SUMMARY_EVERY_MS 1000
/* A relayed WITHDRAW of a peer we never knew (its AD still on its way, or long expired here)
 * is kept as a tombstone for as long as that AD could live: it was signed before the
 * WITHDRAW, with a ttl of at most CPN_AD_TTL_MAX_S (book_withdraw_unknown). */
#define FED_TOMB_UNKNOWN_MS ((uint64_t)CPN_AD_TTL_MAX_S * 1000)

/* A broker's place in the federation's spanning tree (fed_tree.c): the smallest broker key
 * it hears of is the root; its parent is the member that offers the shortest way there. */
typedef struct {
    uint8_t root[CPN_PK_LEN];
    uint32_t dist;              /* links to the root; 0 at the root */
    uint8_t parent[CPN_PK_LEN]; /* zero at the root */
} fed_tree_t;

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
    /* What the member's last HELLO said (fed_tree.c); has_tree false: nothing since it came
     * up, or a broker without a tree, to which every RELAY goes. */
    bool has_tree;
    fed_tree_t tree;
    uint64_t digest;           /* its book's fingerprint (0: none) */
    uint32_t digest_misses;    /* its HELLOs in a row whose fingerprint differed from ours */
    uint64_t digest_miss_mono; /* when the last of them came */
    uint64_t digest_diff_mono; /* when the first of them came */
    uint64_t digest_sync_mono; /* when its fingerprint last made us SYNC */
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
    fed_tree_t tree;       /* our place in the spanning tree */
    uint64_t digest;       /* our book's fingerprint, as of digest_mono */
    uint64_t digest_mono;
    struct {                /* our last SUMMARY (fed_summary.c) */
        uint8_t *frame;     /* signed, as sent; NULL: none made */
        size_t len;
        uint64_t seq, expires_ms, hash, next_mono;
        uint32_t rows;
    } sum;
    struct {
        uint64_t relays_accepted, relays_refused, relays_dup, relays_ignored;
        uint64_t forwards_in, forwards_out, home_claims, answers_back, syncs_in, sync_relays;
        uint64_t tree_changes, digest_syncs, relays_pruned;
        uint64_t summaries_out, summaries_in, summary_claims, relays_over_budget;
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
/* Our book's fingerprint for HELLOs: the (peer, seq) of every entry, tombstones included, that
 * does not expire within FED_DIGEST_MARGIN_MS of now_ms, folded by fed_tree_fold. */
uint64_t fed_sync_fingerprint(broker_t *self, uint64_t now_ms);
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

/* ---- fed_tree.c (pure) ---- */

/* Our place in the tree from what the n members say: the smallest root key heard (ours if
 * none is smaller), by the member with the fewest links to it (then the smallest key). A member
 * is a candidate if it is up, has said where it stands, does not name us as its parent, and is
 * fewer than max_dist links from its root. Writes *out; true if it differs from *out before. */
bool fed_tree_choose(const uint8_t self_key[CPN_PK_LEN], const fed_link_t *links, size_t n,
                     uint32_t max_dist, fed_tree_t *out);

/* Does a RELAY go on to the member at l? Yes on a tree link (l is our parent, or we are its),
 * and also where the tree says nothing yet (l has not told us where it stands, or its root is
 * not ours: trees being rebuilt, or a forest of trees each max_dist deep): there the flood of
 * old is the safe choice, and the book's (peer, seq) check ends it. */
bool fed_tree_edge(const fed_tree_t *ours, const uint8_t self_key[CPN_PK_LEN],
                   const fed_link_t *l);

/* Pure: does a member whose fingerprint has differed from ours in `misses` HELLOs in a row,
 * for `differ_ms`, get our digest now? On a tree link (`tree_edge`, fed_tree_edge) after
 * FED_DIGEST_MISSES of them; off the tree only once they span FED_DIGEST_OFFTREE_MS too. */
bool fed_tree_sync_due(bool tree_edge, uint32_t misses, uint64_t differ_ms);

/* Fold one book entry (peer key, seq) into a fingerprint (order does not matter: XOR). */
uint64_t fed_tree_fold(uint64_t fp, const uint8_t key[CPN_PK_LEN], uint64_t seq);

/* ---- fed_summary.c ---- */

/* Make our summary again if FED_SUMMARY_EVERY_MS passed, and send it on if it changed or is a
 * third of its ttl old (federation.summary.publish only). */
void fed_summary_tick(broker_t *self, uint64_t now_mono);
/* Our summary in force at now_ms (for digests and fingerprints): true and its seq. */
bool fed_summary_ours(const broker_t *self, uint64_t now_ms, uint64_t *seq);
/* A FORWARD brought `inner`, a CLAIM for a row of our summary (its `peer` is us): pick the
 * package (an open intent of ours for the request, else the best offer of a peer connected to
 * us at most the CLAIM's price), record our intent, and queue our CLAIM to that peer with the
 * FORWARD chain as route (it leaves once the intent committed). e becomes the table's entry
 * for the answer (home, its next and ref.peer the peer). CPN_OK; CPN_E_IN_DOUBT: an intent of
 * ours is open and cannot be claimed again (answer nothing: the origin keeps its own intent);
 * else the code of the NACK to send back, *why saying why. */
int fed_summary_resolve(broker_t *self, const broker_rx_t *rx, const cpn_env_t *inner,
                        fed_fwd_t *e, const char **why) CPN_WUR;

/* ---- fed_forward.c ---- */

/* Forwarded messages whose answer did not come by their deadline leave the table. */
void fed_forward_expire(broker_t *self, uint64_t now_mono);

#endif
