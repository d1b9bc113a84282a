/* policy.h - the broker's policy: identity and endpoints, federation members, trusted peers,
 * tenants with quotas and priorities, placement rules and limits, loaded from YAML.
 *
 * Every key is bound through yconf tables (docs/POLICY.md lists them with type, default and
 * bounds). Loading reports EVERY error it finds, each as "file:line:col: key.path: message",
 * and keeps them in the yconf document for the caller to print: `cpnctl policy check FILE`
 * prints them all; a SIGHUP reload that fails keeps the running policy.
 *
 * Relative paths in the file (broker.key, broker.ledger, the .pub files of tenants, peers and
 * members) are relative to the directory of the policy file, not to the daemon's cwd.
 *
 * Pure after loading: lookups do no I/O. A loaded policy is immutable; a reload builds a new
 * one and the daemon swaps the pointer.
 */
#ifndef CPN_POLICY_H
#define CPN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hostport.h"
#include "identity.h"
#include "match.h"
#include "msg.h"
#include "resource.h"
#include "ledger_types.h"
#include "yconf.h"

#define POLICY_PATH_MAX 1024
#define POLICY_UNLIMITED UINT64_MAX /* a quota that was not set, or set to "unlimited" */
#define POLICY_TENANTS_MAX 100000
#define POLICY_PEERS_MAX 100000
#define POLICY_MEMBERS_MAX 1024
#define POLICY_BUDGET_MAX 1000000000000000ULL /* tenants[].budget.amount: 10^12 units */
#define POLICY_REFUSALS_DEFAULT 10 /* limits.rate.refusals: ERRORs a second per connection */

/* Priority classes; an integer from 0 to POLICY_PRIO_MAX may be written instead. Higher
 * is served first when requests wait. */
#define POLICY_PRIO_LOW 0
#define POLICY_PRIO_NORMAL 50
#define POLICY_PRIO_HIGH 100
#define POLICY_PRIO_MAX 1000

typedef struct {
    uint64_t accelerators; /* concurrent accelerators; POLICY_UNLIMITED if not set */
    uint64_t units;        /* concurrent units */
    uint64_t spend_rate;   /* sum of price * units of active leases, thousandths per hour */
} policy_quota_t;

/* A tenant's budget per calendar period (UTC): what its leases of the period may cost in
 * all, committed + running + in flight (broker/budget.h). amount 0: no budget, and the
 * tenant's requests take exactly the path they took before budgets existed. */
typedef enum { POLICY_BUDGET_MONTH = 0, POLICY_BUDGET_DAY } policy_budget_period_t;

typedef struct {
    uint64_t amount; /* thousandths per period; 0 = none */
    uint32_t period; /* policy_budget_period_t */
} policy_budget_t;

typedef struct {
    char name[CPN_NAME_MAX];
    uint8_t key[CPN_PK_LEN];
    uint32_t priority; /* 0 .. POLICY_PRIO_MAX */
    bool is_operator;  /* may query offers and federation */
    policy_quota_t quota;
    policy_budget_t budget;
} policy_tenant_t;

typedef struct {
    char name[CPN_NAME_MAX];
    uint8_t key[CPN_PK_LEN];
} policy_peer_t;

typedef struct {
    char name[CPN_NAME_MAX];
    uint8_t key[CPN_PK_LEN];
    char endpoint[CPN_ENDPOINT_MAX];
    bool use_offers; /* named in federation.use_members (or that list is absent) */
    uint32_t spill_pos; /* its place in a federation.spill list; POLICY_SPILL_UNLISTED if none */
} policy_member_t;

/* federation.spill: in what order a request's candidates are tried (broker/spill.h). */
typedef enum {
    POLICY_SPILL_RANK = 0, /* absent: rank alone (and local_first), as before the key */
    POLICY_SPILL_COST,     /* local offers, then member by member, cheapest member first */
    POLICY_SPILL_LATENCY,  /* local offers, then members by the fewest hops to their offers */
    POLICY_SPILL_LIST      /* local offers, then the members the list names, in its order */
} policy_spill_t;
#define POLICY_SPILL_UNLISTED UINT32_MAX

typedef struct {
    uint64_t frame_size;      /* bytes; 1 KiB .. 16 MiB */
    uint32_t rate_per_sender; /* messages per second per sender key; 0 = no limit */
    uint32_t rate_burst;      /* bucket size */
    uint32_t rate_senders;    /* senders the rate table holds */
    uint32_t rate_refusals;   /* signed refusals (ERROR) per second per connection, also the
                                 burst; past it refusals are counted, not answered; 0 = no limit */
    uint32_t max_offers;      /* packages in the offer book */
    uint32_t max_pending;     /* requests in flight */
    uint64_t claim_timeout_s; /* a peer silent this long after a CLAIM: try the next */
    uint32_t claim_tries;     /* CLAIMs per request before NACK */
    uint64_t skew_s;          /* replay guard's timestamp window */
    uint32_t replay_capacity; /* senders the replay guard holds */
    uint64_t audit_rows;      /* audit log rows kept in the ledger */
} policy_limits_t;

/* placement.batch: requests wait in a window and are matched together (broker/batch.h). */
#define POLICY_BATCH_MAX_DEFAULT 200 /* requests in one window; 1 .. BATCH_MAX */
#define POLICY_BATCH_WAIT_DEFAULT_MS 10
#define POLICY_BATCH_WAIT_MIN_MS 1
#define POLICY_BATCH_WAIT_MAX_MS 1000 /* a window holds a request at most this long */

typedef struct {
    bool on;          /* the key is present; off: each request is matched on arrival */
    uint32_t max;     /* a window this full is matched at once */
    uint64_t wait_ms; /* a window whose oldest request waited this long is matched */
} policy_batch_t;

typedef struct policy policy_t;
struct policy {
    char path[POLICY_PATH_MAX]; /* the file it came from */
    char dir[POLICY_PATH_MAX];  /* that file's directory, absolute */
    struct {
        char name[CPN_NAME_MAX];
        char key_path[POLICY_PATH_MAX];    /* the broker's .key, resolved */
        char listen[CPN_ENDPOINT_MAX];     /* ROUTER endpoint, "tcp://127.0.0.1:7400" */
        char ledger_path[POLICY_PATH_MAX]; /* SQLite file, resolved */
        bool curve;                        /* CURVE on every link; false only if written */
        char http[CPN_HTTP_ADDR_MAX];      /* metrics and dashboard listener; "" = off */
    } broker;
    struct {
        bool local_first;         /* try our own peers before any remote one */
        policy_spill_t spill;     /* federation.spill */
        uint64_t hello_timeout_s; /* a member silent this long is marked down */
        uint32_t max_hops;        /* relays an AD may cross */
        /* federation.summary (docs/FEDERATION.md, "Summaries for distant brokers"). */
        struct {
            bool publish;      /* send SUMMARYs of our own peers' offers */
            bool trust_any;    /* accept SUMMARYs of brokers that are not members */
            uint32_t budget;   /* packages; 0: every AD is kept, however far */
            uint32_t distance; /* ADs that crossed more brokers go over budget */
            uint64_t ttl_s;    /* a SUMMARY's life; resent every ttl / 3 */
        } summary;
        policy_member_t *members; /* n_members, in file order */
        size_t n_members;
    } federation;
    struct {
        bool any;                /* `trusted: any` */
        policy_peer_t *trusted;  /* n_trusted, in file order (empty when any) */
        size_t n_trusted;
    } peers;
    policy_tenant_t *tenants; /* n_tenants, in file order */
    size_t n_tenants;
    match_policy_t placement;
    policy_batch_t batch; /* placement.batch */
    policy_limits_t limits;
    /* Lookup indexes sorted by key (private to policy.c). */
    const policy_tenant_t **by_key_tenant;
    const policy_peer_t **by_key_peer;
    const policy_member_t **by_key_member;
};

/* Load and validate the policy at `path`. On CPN_OK *out is the policy (caller owns, free
 * with policy_destroy). On failure *out is NULL and the code is CPN_E_CONFIG (invalid),
 * CPN_E_YAML, CPN_E_TOO_BIG or CPN_E_IO. If doc_out is not NULL, *doc_out receives the
 * document with every error recorded (yconf_print_errors), also on success (no errors); the
 * caller destroys it. doc_out may be NULL, and *doc_out may be NULL if memory ran out. */
int policy_load(const char *path, policy_t **out, yconf_t **doc_out) CPN_WUR;
void policy_destroy(policy_t **self_p);

/* Lookups by public key; NULL / false when not found. Pointers live as long as the policy. */
const policy_tenant_t *policy_tenant(const policy_t *self, const uint8_t pk[CPN_PK_LEN]);
/* Is a peer with this key admitted (trusted: any, or listed)? */
bool policy_peer_trusted(const policy_t *self, const uint8_t pk[CPN_PK_LEN]);
/* The listed peer with this key (NULL if not listed, also under `trusted: any`). */
const policy_peer_t *policy_peer(const policy_t *self, const uint8_t pk[CPN_PK_LEN]);
const policy_member_t *policy_member(const policy_t *self, const uint8_t pk[CPN_PK_LEN]);
const policy_member_t *policy_member_by_name(const policy_t *self, const char *name);

/* Would `used` + `add` stay within the tenant's quota? CPN_OK, or CPN_E_OVER_QUOTA with the
 * first quota exceeded written to why ("units: 3 in use + 2 asked > quota 4"). */
int policy_quota_check(const policy_tenant_t *tenant, const ledger_usage_t *used,
                       const ledger_usage_t *add, char *why, size_t cap) CPN_WUR;

/* Keys a reload cannot change in a running daemon (sockets, identity, ledger file, tables
 * sized at start: the rows marked restart in policy.c's tables, docs/POLICY.md "Reload"):
 * the key path of the first that differs ("limits.max_pending"), or NULL if a reload may
 * apply. The string is static, valid until the next call. */
const char *policy_restart_needed(const policy_t *old, const policy_t *neu);

/* Name of a priority value: "high", "normal", "low", or NULL for another integer. */
const char *policy_priority_name(uint32_t priority);

#endif
