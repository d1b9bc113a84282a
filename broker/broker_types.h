/* broker_types.h - the plain types the broker's modules share without sharing the broker:
 * limits of the request tables, where a key is reached, what a forwarded message was, the
 * counters, one verified message. Data only: no function, no module behind it. broker.h
 * (the daemon's state) and the claim module (claim.h, which is given services, not the
 * broker) both include it.
 */
#ifndef CPN_BROKER_TYPES_H
#define CPN_BROKER_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "identity.h"
#include "metrics.h"
#include "msg.h"
#include "transport.h"

#define BROKER_CANDS_MAX 16 /* candidates kept per request */
#define BROKER_OPS_MAX 4096 /* RENEW/RELEASE relays waiting for the peer */
#define BROKER_TRIES_MAX 16 /* CLAIMs per request, whatever the policy says */

/* Where a key can be reached: the routing id of its connection to our ROUTER. */
typedef struct {
    uint8_t key[CPN_PK_LEN];
    uint8_t rid[CPN_RID_MAX];
    size_t rid_len;
    uint64_t seen_mono;
    bool used;
} broker_route_t;

/* What a message we forwarded to another broker was, so its answer finds its way home
 * (federation.c -> claim.c). */
typedef struct broker_fwd_ref {
    cpn_msg_type_t kind;         /* CLAIM, RENEW or RELEASE */
    uint8_t peer[CPN_PK_LEN];    /* the peer it is for */
    uint64_t claim_seq;          /* CLAIM: the seq of the CLAIM inside */
    char lease_id[CPN_NAME_MAX]; /* RENEW/RELEASE: the lease */
    uint64_t tenant_seq;         /* RENEW/RELEASE: the tenant's seq, which a NACK names */
} broker_fwd_ref_t;

/* Counters: messages refused, per error code (index = -code), and events. */
#define BROKER_ERR_SLOTS 128
typedef struct {
    uint64_t received, accepted;
    uint64_t refused[BROKER_ERR_SLOTS];
    uint64_t requests, grants, nacks, claims_sent, claim_timeouts;
    uint64_t reloads, reloads_failed;
    uint64_t commit_failures;     /* ledger commits that failed: their GRANTs/CLAIMs refused */
    uint64_t in_doubt;            /* requests refused in-doubt or unreachable for an intent */
    uint64_t refusals_unanswered; /* refusals past limits.rate.refusals: counted, no ERROR */
    uint64_t nacks_by_code[BROKER_ERR_SLOTS]; /* NACKs sent, per code (index = -code) */
    /* Latencies, observed only while the HTTP listener is on (broker_t.obs, claim_svc_t.obs): the
     * clock is read then and only then. */
    cpn_hist_t request_to_lease; /* REQUEST received -> its GRANT queued */
    cpn_hist_t match;            /* one match_find, or one batch plan */
    cpn_hist_t ledger_commit;    /* one ledger transaction's commit */
    uint64_t notices;            /* NOTICEs recorded (each lease's once) */
    uint64_t rematched;          /* revoked leases replaced elsewhere (on_failure: rematch) */
    uint64_t usage_taken;        /* USAGE records taken into the ledger (each once) */
    uint64_t usage_dup;          /* records taken again unchanged (re-sends) */
    uint64_t usage_refused;      /* records refused (also counted under their code) */
    uint64_t usage_relayed;      /* records the next broker on the route took from us */
} broker_stats_t;

/* One verified message being handled. */
typedef struct broker_rx {
    const uint8_t *rid;
    size_t rid_len;
    cpn_env_t env;
    unsigned roles; /* what the sender is to us: CPN_ROLE_* bits */
} broker_rx_t;

#endif
