/* broker.h - the broker daemon's state, shared by its modules (server, claim, query, zap,
 * federation). Private to cpn-broker: nothing outside broker/ includes it.
 *
 * One thread, one event loop (server.c): the ROUTER receives, intake verifies, a table
 * dispatches each message type to its handler.
 */
#ifndef CPN_BROKER_H
#define CPN_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "book.h"
#include "broker_types.h"
#include "claim.h"
#include "envelope.h"
#include "ledger.h"
#include "match.h"
#include "metrics.h"
#include "msg.h"
#include "outbox.h"
#include "policy.h"
#include "ratelimit.h"
#include "recent.h"
#include "replay.h"
#include "sigcache.h"
#include "transport.h"
#include "window.h"

#define BROKER_ROUTES_MAX 65536  /* peers and members whose routing id we remember */
#define BROKER_BATCH 256         /* messages handled per loop pass */
#define BROKER_COMMIT_MS 5       /* a ledger transaction spans passes for up to this long */

typedef struct broker broker_t;
struct broker {
    policy_t *pol;
    cpn_identity_t *id;
    cpn_signer_t signer;
    void *zctx;
    void *router;
    void *zap; /* REP socket answering libzmq's ZAP requests (curve only) */
    ledger_t *ledger;
    struct spend *spend; /* tenants' spend in their budget period, from the ledger (spend.h) */
    book_t *book;
    cpn_replay_t *replay;
    cpn_sigcache_t *sigcache;
    ratelimit_t *rate;
    ratelimit_t *refusal_rate; /* signed ERRORs per connection (routing id) */
    cpn_limits_t lim;
    broker_route_t *routes; /* BROKER_ROUTES_MAX, open addressing by key */
    claim_t *claim; /* requests in flight and relays (claim.h) */
    struct rematch *rematch; /* replacements of revoked leases in flight (rematch.h) */
    struct federation *fed; /* links to the other brokers (federation.c) */
    struct usage_log *usage; /* USAGE records in the ledger (usage_log.h) */
    /* Where the answer to a CLAIM, RENEW or RELEASE that came back through the federation
     * goes: claim_on_remote_answer, wired by server_new. federation.c calls up through this
     * pointer, never claim.c by name, so the two do not call each other round a loop. */
    void (*on_remote_answer)(broker_t *self, const cpn_env_t *answer,
                             const struct broker_fwd_ref *ref);
    /* Where a NOTICE a member carried to us (FORWARD) goes: notice_on_frame, wired by
     * server_new, for the same reason. */
    void (*on_notice)(broker_t *self, const broker_rx_t *rx, const uint8_t *frame, size_t len);
    broker_stats_t stats;
    uint64_t next_status_mono; /* next STATUS= line to the service manager (server.c) */
    uint64_t started_ms;
    uint64_t next_tick_mono;
    outbox_t *outbox;       /* frames waiting for the ledger's commit (outbox.h) */
    struct obs *obs;        /* the HTTP listener (obs.h); NULL unless broker.http is set */
    recent_t *recent;       /* recent refusals, kept while obs is on (NULL otherwise) */
    bool tx_open;           /* a ledger transaction is open (server.c, s_tx_*) */
    uint64_t tx_since_mono; /* since when */
    volatile sig_atomic_t stop;   /* set from signal handlers: only sig_atomic_t is safe */
    volatile sig_atomic_t reload;
};


/* send.c: the ways out, which every handler calls down to (and which calls none back). */
void broker_count_refusal(broker_t *self, int code);
/* Sign and send a message to a connection; logs and counts a failure. */
int broker_send(broker_t *self, const uint8_t *rid, size_t rid_len, cpn_msg_type_t type,
                const void *body);
int broker_send_frame(broker_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *frame,
                      size_t len);
void broker_nack(broker_t *self, const uint8_t *rid, size_t rid_len, const char *ref,
                 uint64_t ref_seq, int code, const char *reason);
/* Refuse a message with an ERROR naming its seq, the code and the reason (NULL or "": the
 * code's own text). The caller counts the refusal (broker_count_refusal). */
void broker_error(broker_t *self, const uint8_t *rid, size_t rid_len, uint64_t ref_seq, int code,
                  const char *reason);
/* Queue a frame that needs the open ledger transaction committed before it leaves (outbox.h):
 * the outbox takes item->frame. If it cannot be queued, a GRANT's tenant gets NACK busy; the
 * caller of a CLAIM sees the error. */
int broker_queue(broker_t *self, outbox_item_t *item);
/* Queue a GRANT for a tenant; *frame_p taken. A NACK `database` naming (ref, ref_seq) takes
 * its place if the commit fails. */
void broker_queue_grant(broker_t *self, const uint8_t *rid, size_t rid_len, uint8_t **frame_p,
                        size_t len, const char *ref, uint64_t ref_seq);
void broker_route_set(broker_t *self, const uint8_t key[CPN_PK_LEN], const uint8_t *rid,
                      size_t rid_len);
const broker_route_t *broker_route(const broker_t *self, const uint8_t key[CPN_PK_LEN]);

/* query.c: STATUS answers. */
void query_answer(broker_t *self, const broker_rx_t *rx, const cpn_query_t *q);

/* zap.c: the ZAP handler that admits only keys the policy names. */
int zap_open(broker_t *self) CPN_WUR;
void zap_handle(broker_t *self);
/* May a connection whose User-Id (set by zap_handle: "ed:" + the policy key it authenticated
 * as, or "x:" + its CURVE key under `trusted: any`) carry frames signed by `ed_pk`? True for
 * NULL (a plain socket: nothing to bind); false for a User-Id that is neither (none at all). */
bool zap_binds(const char *user_id, const uint8_t ed_pk[CPN_PK_LEN]);

#endif
