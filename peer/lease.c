/* lease.c - verify, decide, write and answer CLAIM / RENEW / RELEASE, in grouped commits. */
#include "lease.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chain.h"
#include "clock.h"
#include "envelope.h"
#include "grant.h"
#include "meter.h"
#include "log.h"
#include "msg.h"
#include "msg_typed.h"
#include "notice_store.h"
#include "seal.h"

struct peer_lease {
    const peer_config_t *cfg;
    const cpn_identity_t *id;
    peer_inventory_t *inv;
    peer_store_t *store;
    peer_sender_t *sender;
    provision_t *prov;            /* NULL: no package has a driver */
    peer_meter_t *meter;          /* NULL: RECEIPTs are not ours to record */
    cpn_replay_t *replay_brokers; /* CLAIM senders */
    cpn_replay_t *replay_tenants; /* RENEW/RELEASE senders: a replayed RENEW must not extend */
    uint64_t refused[PEER_ERR_SLOTS];
    uint64_t refused_total;
    peer_lease_stats_t stats;
    /* Leases the drivers lost, waiting for the daemon to revoke them with a NOTICE once the
     * batch has committed (notice.c runs a transaction of its own). */
    struct {
        char lease_id[CPN_NAME_MAX];
        char why[CPN_REASON_MAX];
    } lost[PEER_LOST_MAX];
    size_t n_lost;
};

/* Who must have signed a type the peer accepts, and its handler. */
typedef enum { S_FROM_BROKER, S_FROM_TENANT } s_signer_t;
typedef void (*s_handler_fn)(peer_lease_t *self, peer_batch_t *batch, size_t broker,
                             const cpn_env_t *env);

static void s_on_claim(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);
static void s_on_renew(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);
static void s_on_release(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);
static void s_on_note(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);
static void s_on_receipt(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);
static void s_on_usage_receipt(peer_lease_t *, peer_batch_t *, size_t, const cpn_env_t *);

static const struct {
    cpn_msg_type_t type;
    s_signer_t signer;
    s_handler_fn fn;
} s_dispatch[] = {
    {CPN_MSG_CLAIM, S_FROM_BROKER, s_on_claim},
    {CPN_MSG_RENEW, S_FROM_TENANT, s_on_renew},
    {CPN_MSG_RELEASE, S_FROM_TENANT, s_on_release},
    /* A broker's HELLO and ERROR are verified and logged; nothing to answer. */
    {CPN_MSG_HELLO, S_FROM_BROKER, s_on_note},
    {CPN_MSG_ERROR, S_FROM_BROKER, s_on_note},
    /* A broker's receipt for a NOTICE: it stops being re-sent (notice.h). */
    {CPN_MSG_STATUS, S_FROM_BROKER, s_on_receipt},
    /* A broker's countersignature of a USAGE record: it stops being re-sent (meter.h). */
    {CPN_MSG_RECEIPT, S_FROM_BROKER, s_on_usage_receipt},
};

peer_lease_t *peer_lease_new(const peer_config_t *cfg, const cpn_identity_t *id,
                             peer_inventory_t *inv, peer_store_t *store, peer_sender_t *sender)
{
    peer_lease_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->id = id;
    self->inv = inv;
    self->store = store;
    self->sender = sender;
    self->replay_brokers = cpn_replay_new(PEER_BROKERS_MAX * 4, CPN_REPLAY_DEFAULT_SKEW_MS);
    self->replay_tenants = cpn_replay_new(CPN_REPLAY_DEFAULT_CAPACITY, CPN_REPLAY_DEFAULT_SKEW_MS);
    if (!self->replay_brokers || !self->replay_tenants)
        peer_lease_destroy(&self);
    return self;
}

void peer_lease_destroy(peer_lease_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_lease_t *self = *self_p;
    cpn_replay_destroy(&self->replay_brokers);
    cpn_replay_destroy(&self->replay_tenants);
    free(self);
    *self_p = NULL;
}

void peer_lease_set_units(peer_lease_t *self, const char *package, uint32_t units)
{
    int pkg = peer_inventory_find(self->inv, package);
    if (pkg < 0) {
        log_warn("lease", "inventory names package %s, which is not configured", package);
        return;
    }
    uint32_t count = self->cfg->packages[pkg].total;
    uint32_t was = peer_inventory_get(self->inv, (size_t)pkg)->total;
    if (units > count)
        units = count;
    if (peer_inventory_set_total(self->inv, (size_t)pkg, units))
        log_info("lease", "package %s: %" PRIu32 " units now (was %" PRIu32 ", at most %" PRIu32
                 ")", package, units, was, count);
}

void peer_lease_set_meter(peer_lease_t *self, peer_meter_t *meter)
{
    self->meter = meter;
}

void peer_lease_set_provision(peer_lease_t *self, provision_t *prov)
{
    self->prov = prov;
}

/* Count and log a refusal. */
static void s_count(peer_lease_t *self, int code, const uint8_t *from, const char *what,
                    const char *why)
{
    char kid[CPN_KID_LEN] = "-";
    if (from)
        cpn_key_id(from, kid);
    unsigned slot = code < 0 && -code < PEER_ERR_SLOTS ? (unsigned)-code : 0;
    self->refused[slot]++;
    self->refused_total++;
    log_warn("lease", "refused %s from %s: %s%s%s", what, kid, cpn_errname(code),
             why && why[0] ? ": " : "", why ? why : "");
}

static peer_reply_t *s_reply_slot(peer_batch_t *batch)
{
    if (batch->n >= PEER_BATCH_MAX)
        return NULL;
    peer_reply_t *rep = &batch->replies[batch->n];
    memset(rep, 0, sizeof *rep);
    return rep;
}

/* Queue a NACK answering (ref, ref_seq) with code. */
static void s_nack(peer_lease_t *self, peer_batch_t *batch, size_t broker, const char *ref,
                   uint64_t ref_seq, int code, const char *why)
{
    cpn_nack_t nack;
    memset(&nack, 0, sizeof nack);
    snprintf(nack.ref, sizeof nack.ref, "%s", ref ? ref : "");
    nack.ref_seq = ref_seq;
    nack.code = code;
    snprintf(nack.reason, sizeof nack.reason, "%s", why && why[0] ? why : cpn_strerror(code));
    peer_reply_t *rep = s_reply_slot(batch);
    if (!rep)
        return;
    if (peer_sender_build(self->sender, CPN_MSG_NACK, &nack, &rep->frame, &rep->len) != CPN_OK) {
        log_error("lease", "cannot build NACK for %s", nack.ref);
        return;
    }
    rep->broker = broker;
    rep->lease = false;
    snprintf(rep->ref, sizeof rep->ref, "%s", nack.ref);
    rep->ref_seq = ref_seq;
    batch->n++;
}

/* Refuse a verified message: count, log and NACK. */
static void s_refuse(peer_lease_t *self, peer_batch_t *batch, size_t broker, const cpn_env_t *env,
                     const char *ref, int code, const char *why)
{
    s_count(self, code, env->from, cpn_msg_name(env->type), why);
    s_nack(self, batch, broker, ref, env->seq, code, why);
}

/* Queue a LEASE frame (taken) for sending after the commit; `new_write` if it depends on
 * this batch's commit (a RESEND of a stored lease does not). */
static void s_queue_lease(peer_batch_t *batch, size_t broker, uint8_t **frame_p, size_t len,
                          const char *ref, uint64_t ref_seq, bool new_write)
{
    peer_reply_t *rep = s_reply_slot(batch);
    if (!rep) { /* cannot happen: one reply per message, at most PEER_BATCH_MAX messages */
        free(*frame_p);
        *frame_p = NULL;
        return;
    }
    rep->broker = broker;
    rep->frame = *frame_p;
    rep->len = len;
    rep->lease = new_write;
    snprintf(rep->ref, sizeof rep->ref, "%s", ref);
    rep->ref_seq = ref_seq;
    *frame_p = NULL;
    batch->n++;
}

static int s_txn(peer_lease_t *self, peer_batch_t *batch)
{
    if (batch->wrote)
        return CPN_OK;
    int r = peer_store_begin(self->store);
    if (r == CPN_OK)
        batch->wrote = true;
    return r;
}

/* Open a CLAIM (its signature already checked) down to its REQUEST with the one chain opener:
 * types, signatures, the route, the CLAIM's terms against the REQUEST. Out-structs point into
 * env's frame; *req is filled as far as it was read, so a refusal can name the request. */
static int s_open_claim(peer_lease_t *self, const cpn_env_t *env, cpn_claim_t *claim,
                        cpn_env_t *renv, cpn_request_t *req, char why[CPN_REASON_MAX])
{
    cpn_chain_opts_t o = {.lim = &cpn_limits_default,
                          .claim_pk = env->from,
                          .flags = CPN_CHAIN_TOP_VERIFIED};
    cpn_chain_t *ch = malloc(sizeof *ch);
    if (!ch) {
        snprintf(why, CPN_REASON_MAX, "%s", "out of memory");
        return CPN_E_NOMEM;
    }
    int r = cpn_chain_open(env->frame, env->frame_len, CPN_MSG_CLAIM, &o, ch);
    *claim = ch->claim;
    *renv = ch->req_env;
    *req = ch->req;
    snprintf(why, CPN_REASON_MAX, "%s", ch->why);
    free(ch);
    return r;
}

/* A new grant only for a REQUEST signed within request_age of now, either way: a fresh CLAIM
 * carrying a day-old REQUEST is refused. A retried CLAIM for a lease already granted is
 * answered before this (the broker may retry the same REQUEST for a while). */
static int s_check_age(peer_lease_t *self, const cpn_env_t *renv, const char *req_id,
                       char why[CPN_REASON_MAX])
{
    uint64_t now = cpn_now_ms(), age = self->cfg->request_age_s * 1000;
    if (renv->ts_ms + age >= now && renv->ts_ms <= now + age)
        return CPN_OK;
    snprintf(why, CPN_REASON_MAX, "REQUEST %s signed at %" PRIu64 ", more than request_age %" PRIu64
             " s from now", req_id, renv->ts_ms, self->cfg->request_age_s);
    return CPN_E_STALE;
}

/* The same (tenant, request id) again. The lease still active and the REQUEST asking the same:
 * CPN_OK, the caller sends the stored LEASE again. Other terms: CPN_E_CONFLICT. The lease
 * released, expired or past its end: CPN_E_EXPIRED, never a LEASE saying "active". */
static int s_check_retry(peer_lease_t *self, const peer_lease_row_t *row, const cpn_request_t *req,
                         char why[CPN_REASON_MAX])
{
    (void)self;
    cpn_chain_t *ch = malloc(sizeof *ch);
    int r = ch ? cpn_chain_open(row->frame, row->frame_len, CPN_MSG_LEASE, NULL, ch)
               : CPN_E_NOMEM;
    if (r != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "stored lease %s unreadable", row->lease_id);
        r = CPN_E_DB;
    } else if (!cpn_chain_same_terms(&ch->req, req)) {
        snprintf(why, CPN_REASON_MAX, "request id %s was used for other terms (lease %s)",
                 req->id, row->lease_id);
        r = CPN_E_CONFLICT;
    } else if (row->state != PEER_LEASE_ACTIVE || row->end_ms <= cpn_now_ms()) {
        snprintf(why, CPN_REASON_MAX, "request id %s had lease %s, now %s", req->id,
                 row->lease_id,
                 row->state == PEER_LEASE_ACTIVE ? "ended" : peer_lease_state_name(row->state));
        r = CPN_E_EXPIRED;
    }
    free(ch);
    return r;
}

/* Units of package pkg back to the inventory after the store says so. A shared package's
 * slice has its place in the store: recount (a change of this batch is visible to our
 * connection before the commit, and a failed commit recounts again). */
static void s_give_back(peer_lease_t *self, size_t pkg, uint32_t units)
{
    if (!peer_inventory_shared(self->inv, pkg))
        peer_inventory_release(self->inv, pkg, units);
    else if (peer_lease_recount(self) != CPN_OK)
        log_error("lease", "cannot recount the inventory");
}

/* "UNIT:DEV[,DEV...]", the LEASE's slice field. */
static void s_slice_name(const peer_slice_t *sl, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%" PRIu32 ":", sl->node);
    const char *sep = "";
    for (uint32_t d = 0; d < 32 && n < cap; d++)
        if (sl->devmask >> d & 1) {
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRIu32, sep, d);
            sep = ",";
        }
}

/* A CLAIM with `replaces`: open the NOTICE it carries (signature, then the chain of the lease
 * it names, signed by the notice's signer) and judge the replacement (grant.h). On CPN_OK
 * *terms is the REQUEST with the claim's units and duration: what grant_check_claim holds a
 * replacement to. */
static int s_check_replaces(peer_lease_t *self, const cpn_claim_t *claim, const cpn_request_t *req,
                            cpn_request_t *terms, char why[CPN_REASON_MAX])
{
    cpn_env_t nenv;
    cpn_notice_t n;
    const char *w = "";
    cpn_chain_t *old = malloc(sizeof *old);
    int r = CPN_E_NOMEM;
    snprintf(why, CPN_REASON_MAX, "out of memory");
    if (!old)
        return r;
    if ((r = cpn_env_parse(claim->replaces.ptr, claim->replaces.len, &cpn_limits_default,
                           &nenv)) != CPN_OK ||
        (r = nenv.type == CPN_MSG_NOTICE ? CPN_OK : CPN_E_WRONG_TYPE) != CPN_OK ||
        (r = cpn_env_verify(&nenv)) != CPN_OK ||
        (r = cpn_notice_decode(&nenv, &cpn_limits_default, &n)) != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "the replaced lease's NOTICE: %s", cpn_errname(r));
        goto out;
    }
    cpn_chain_opts_t o = {.lim = &cpn_limits_default, .peer_pk = nenv.from};
    if ((r = cpn_chain_open(n.lease.ptr, n.lease.len, CPN_MSG_LEASE, &o, old)) != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "the replaced lease: %.200s", old->why);
        goto out;
    }
    if (strcmp(n.lease_id, old->lease.lease_id) != 0) {
        r = CPN_E_CHAIN;
        snprintf(why, CPN_REASON_MAX, "the NOTICE names another lease than it carries");
        goto out;
    }
    if ((r = grant_check_replacement(cpn_identity_pk(self->id), nenv.from, &n, old, claim,
                                     cpn_now_ms(), &w)) != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "%s", w);
        goto out;
    }
    *terms = *req;
    terms->units = claim->units;
    terms->duration_s = claim->duration_s;
    log_info("lease", "CLAIM for %s replaces lease %s (revoked by its peer)", req->id, n.lease_id);
out:
    free(old);
    return r;
}

/* The (tenant, request id) of a lease not granted yet, again. Still provisioning and the
 * same terms: CPN_OK, no answer now (a NACK would settle the broker's intent as "not
 * granted", docs/PROTOCOL.md §13); the LEASE goes out when the driver is done. Other terms:
 * CPN_E_CONFLICT. Failed: CPN_E_PROVISION_FAILED, as final as the first answer. */
static int s_check_unprovisioned(peer_lease_t *self, const peer_lease_row_t *row,
                                 const cpn_request_t *req, char why[CPN_REASON_MAX])
{
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t o = {.lim = &cpn_limits_default, .flags = CPN_CHAIN_TOP_VERIFIED};
    int r = ch ? cpn_chain_open(row->frame, row->frame_len, CPN_MSG_CLAIM, &o, ch) : CPN_E_NOMEM;
    if (r != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "stored claim of %s unreadable", row->lease_id);
        r = CPN_E_DB;
    } else if (!cpn_chain_same_terms(&ch->req, req)) {
        snprintf(why, CPN_REASON_MAX, "request id %s was used for other terms (lease %s)",
                 req->id, row->lease_id);
        r = CPN_E_CONFLICT;
    } else if (row->state == PEER_LEASE_FAILED) {
        snprintf(why, CPN_REASON_MAX, "provisioning lease %s for request %s failed",
                 row->lease_id, req->id);
        r = CPN_E_PROVISION_FAILED;
    } else {
        self->stats.held++;
        log_info("lease", "request %s: lease %s still provisioning, answered when done", req->id,
                 row->lease_id);
    }
    free(ch);
    return r;
}

/* Queue a driver call for after the commit. */
static void s_call_later(peer_batch_t *batch, const char *lease_id, drv_verb_t verb)
{
    if (batch->n_calls >= PEER_BATCH_MAX)
        return; /* cannot happen (one per message); the sweep submits it anyway */
    peer_call_t *c = &batch->calls[batch->n_calls++];
    snprintf(c->lease_id, sizeof c->lease_id, "%s", lease_id);
    c->verb = verb;
}

/* A CLAIM for a package with a driver, its units reserved: commit the lease `provisioning`
 * with the CLAIM as its frame; its grant is submitted after the commit. */
static int s_claim_provision(peer_lease_t *self, peer_batch_t *batch, const cpn_env_t *env,
                             const cpn_env_t *renv, const cpn_claim_t *claim,
                             const cpn_request_t *req, int pkg, const char **why)
{
    peer_lease_row_t row;
    int r;
    if (!provision_room(self->prov)) {
        *why = "too many driver calls waiting";
        return CPN_E_BUSY;
    }
    memset(&row, 0, sizeof row);
    uint64_t now = cpn_now_ms();
    grant_lease_id(cpn_identity_pk(self->id), renv->from, req->id, row.lease_id);
    memcpy(row.tenant, renv->from, CPN_PK_LEN);
    snprintf(row.request_id, sizeof row.request_id, "%s", req->id);
    snprintf(row.package, sizeof row.package, "%s", claim->package);
    snprintf(row.driver, sizeof row.driver, "%s", self->cfg->drivers[self->cfg->pkg_driver[pkg]].name);
    row.units = claim->units;
    row.price = claim->price;
    /* The lease runs from now: its end stays within the broker's intent (deadline + duration),
     * however long the driver takes. */
    row.start_ms = now;
    row.end_ms = now + claim->duration_s * 1000u;
    row.state = PEER_LEASE_PROVISIONING;
    row.frame = (uint8_t *)env->frame; /* the CLAIM, verbatim: the LEASE will embed it */
    row.frame_len = env->frame_len;
    if ((r = s_txn(self, batch)) != CPN_OK || (r = peer_store_insert(self->store, &row)) != CPN_OK) {
        *why = "cannot record the lease";
        return r;
    }
    s_call_later(batch, row.lease_id, DRV_GRANT);
    self->stats.provisioning++;
    char kid[CPN_KID_LEN];
    cpn_key_id(renv->from, kid);
    log_info("lease", "provisioning %s: %" PRIu32 " x %s to %s through driver %s (request %s)",
             row.lease_id, row.units, row.package, kid, row.driver, req->id);
    return CPN_OK;
}

/* A slice goes on the CLAIM's package or one of its alts, wherever the peer's fragmentation
 * grows least (the broker picked among summaries, the peer sees the nodes); the CLAIM as
 * decoded then names the package chosen, which the LEASE and the store record. */
static int s_place_slice(peer_lease_t *self, const cpn_env_t *renv, cpn_claim_t *claim,
                         const cpn_request_t *terms, const cpn_request_t *req, int *pkg,
                         peer_slice_t *slice)
{
    size_t among[GRANT_ALTS_MAX + 1], chosen = (size_t)*pkg;
    size_t n = grant_claim_packages(self->cfg, self->inv, cpn_identity_pk(self->id), renv->from,
                                    claim, terms, *pkg, among);
    int r = peer_inventory_place_among(self->inv, among, n, req, &chosen, slice);
    if (r == CPN_OK && chosen != (size_t)*pkg) {
        *pkg = (int)chosen;
        snprintf(claim->package, sizeof claim->package, "%s",
                 peer_inventory_get(self->inv, chosen)->id);
    }
    return r;
}

static void s_on_claim(peer_lease_t *self, peer_batch_t *batch, size_t broker, const cpn_env_t *env)
{
    cpn_claim_t claim;
    cpn_env_t renv;
    cpn_request_t req;
    cpn_lease_t lease;
    peer_lease_row_t row;
    uint8_t *frame = NULL;
    size_t len = 0;
    const char *why = "";
    char why_buf[CPN_REASON_MAX];
    int pkg = -1, r;
    bool reserved = false, shared = false;
    peer_slice_t slice;
    memset(&slice, 0, sizeof slice);
    memset(&claim, 0, sizeof claim);
    memset(&req, 0, sizeof req);
    memset(&row, 0, sizeof row);

    /* The CLAIM, its route and the tenant's REQUEST, each by its own signature. */
    if ((r = s_open_claim(self, env, &claim, &renv, &req, why_buf)) != CPN_OK) {
        why = why_buf;
        goto refuse;
    }
    if (!peer_config_tenant_ok(self->cfg, renv.from)) {
        r = CPN_E_TENANT_REFUSED;
        why = "tenant not accepted by this peer";
        goto refuse;
    }
    if (sodium_memcmp(claim.peer, cpn_identity_pk(self->id), CPN_PK_LEN) != 0) {
        r = CPN_E_INVAL;
        why = "claim names another peer";
        goto refuse;
    }
    /* Idempotency: (tenant, request id) already granted -> the same lease, same bytes. */
    r = peer_store_get_by_request(self->store, renv.from, req.id, &row);
    if (r == CPN_OK &&
        (row.state == PEER_LEASE_PROVISIONING || row.state == PEER_LEASE_FAILED)) {
        if ((r = s_check_unprovisioned(self, &row, &req, why_buf)) != CPN_OK) {
            why = why_buf;
            goto refuse;
        }
        goto out; /* still provisioning: answered when the driver is done */
    }
    if (r == CPN_OK && (r = s_check_retry(self, &row, &req, why_buf)) != CPN_OK) {
        why = why_buf;
        goto refuse;
    }
    if (r == CPN_OK) {
        /* The stored LEASE bytes, in a RESEND with a fresh seq: the broker's replay guard
         * has seen newer messages from us than the LEASE's own seq (issue 10, defect 2). */
        cpn_resend_t rs = {.frame = {row.frame, row.frame_len}};
        if ((r = peer_sender_build(self->sender, CPN_MSG_RESEND, &rs, &frame, &len)) != CPN_OK) {
            why = "cannot sign the re-sent lease";
            goto refuse;
        }
        self->stats.retried++;
        s_queue_lease(batch, broker, &frame, len, req.id, env->seq, false);
        goto out;
    }
    if (r != CPN_E_NO_LEASE) {
        why = "lease lookup";
        goto refuse;
    }
    /* A replacement carries the REQUEST of the lease it replaces, signed long ago: the NOTICE
     * (fresh, signed by the peer that lost the capacity) makes it legitimate instead. */
    cpn_request_t terms = req;
    if (claim.replaces.len
            ? (r = s_check_replaces(self, &claim, &req, &terms, why_buf)) != CPN_OK
            : (r = s_check_age(self, &renv, req.id, why_buf)) != CPN_OK) {
        why = why_buf;
        goto refuse;
    }
    /* Past its deadline the broker may have given up on this CLAIM and served the request
     * elsewhere: granting now could make a second lease (docs/PROTOCOL.md, "Exactly one lease
     * per request"). Checked here, right before reserving; a lease already held is still
     * returned above, whatever the deadline. */
    if (cpn_now_ms() > claim.deadline) {
        r = CPN_E_CLAIM_EXPIRED;
        why = "the claim's deadline has passed";
        goto refuse;
    }
    if ((r = grant_check_claim(self->cfg, self->inv, cpn_identity_pk(self->id), renv.from, &claim,
                               &terms, &pkg, &why)) != CPN_OK)
        goto refuse;
    shared = peer_inventory_shared(self->inv, (size_t)pkg);
    r = shared ? s_place_slice(self, &renv, &claim, &terms, &req, &pkg, &slice)
               : peer_inventory_reserve(self->inv, (size_t)pkg, claim.units);
    if (r != CPN_OK) {
        why = shared ? "no accelerator has that slice free" : "not enough free units";
        goto refuse;
    }
    reserved = true;
    if (self->prov && self->cfg->pkg_driver[pkg] >= 0) {
        /* A package with a driver: the lease waits for it (docs/PROVISIONING.md). */
        if ((r = s_claim_provision(self, batch, env, &renv, &claim, &req, pkg, &why)) != CPN_OK)
            goto refuse;
        if (shared) { /* the slice's place, in the same transaction as the lease */
            char lid[CPN_NAME_MAX];
            grant_lease_id(cpn_identity_pk(self->id), renv.from, req.id, lid);
            if ((r = peer_store_slice_put(self->store, lid, claim.package, &slice)) != CPN_OK) {
                why = "cannot record the slice";
                goto refuse;
            }
        }
        reserved = false; /* now the store's */
        goto out;
    }

    uint64_t now = cpn_now_ms();
    memset(&lease, 0, sizeof lease);
    lease.claim.ptr = env->frame;
    lease.claim.len = env->frame_len;
    grant_lease_id(cpn_identity_pk(self->id), renv.from, req.id, lease.lease_id);
    snprintf(lease.package, sizeof lease.package, "%s", claim.package);
    lease.units = claim.units;
    lease.price = claim.price;
    lease.start_ms = now;
    lease.end_ms = now + claim.duration_s * 1000u;
    snprintf(lease.state, sizeof lease.state, "%s", peer_lease_state_name(PEER_LEASE_ACTIVE));
    lease.renewals = 0;
    if (shared)
        s_slice_name(&slice, lease.slice, sizeof lease.slice);

    if ((r = s_txn(self, batch)) != CPN_OK ||
        (r = peer_sender_build(self->sender, CPN_MSG_LEASE, &lease, &frame, &len)) != CPN_OK) {
        why = "cannot sign the lease";
        goto refuse;
    }
    memcpy(row.lease_id, lease.lease_id, sizeof row.lease_id);
    memcpy(row.tenant, renv.from, CPN_PK_LEN);
    snprintf(row.request_id, sizeof row.request_id, "%s", req.id);
    memcpy(row.package, lease.package, sizeof row.package);
    row.units = lease.units;
    row.price = lease.price;
    row.start_ms = lease.start_ms;
    row.end_ms = lease.end_ms;
    row.state = PEER_LEASE_ACTIVE;
    row.frame = frame;
    row.frame_len = len;
    r = peer_store_insert(self->store, &row);
    if (r == CPN_OK && shared)
        r = peer_store_slice_put(self->store, row.lease_id, row.package, &slice);
    row.frame = NULL; /* still ours as `frame` */
    if (r != CPN_OK) {
        why = "cannot record the lease";
        goto refuse;
    }
    reserved = false; /* now the store's */
    batch->changed = true;
    self->stats.granted++;
    {
        char kid[CPN_KID_LEN];
        cpn_key_id(renv.from, kid);
        log_info("lease", "granted %s: %" PRIu32 " x %s to %s for %" PRIu64 " s (request %s)",
                 lease.lease_id, lease.units, lease.package, kid, claim.duration_s, req.id);
    }
    s_queue_lease(batch, broker, &frame, len, req.id, env->seq, true);
    goto out;
refuse:
    if (reserved && shared)
        peer_inventory_unplace(self->inv, (size_t)pkg, &slice);
    else if (reserved)
        peer_inventory_release(self->inv, (size_t)pkg, claim.units);
    s_refuse(self, batch, broker, env, req.id, r, why);
out:
    free(frame);
    peer_lease_row_clear(&row);
}

/* Fetch a lease and the CLAIM frame its stored LEASE embeds (pointing into row->frame). */
static int s_load(peer_lease_t *self, const char *lease_id, peer_lease_row_t *row,
                  cpn_lease_t *stored)
{
    cpn_env_t lenv;
    int r = peer_store_get(self->store, lease_id, row);
    if (r != CPN_OK)
        return r;
    /* Our own committed frame: parse it to reuse the embedded CLAIM verbatim. */
    if (cpn_env_parse(row->frame, row->frame_len, &cpn_limits_default, &lenv) != CPN_OK ||
        cpn_lease_decode(&lenv, &cpn_limits_default, stored) != CPN_OK) {
        log_error("lease", "stored frame of %s unreadable", lease_id);
        return CPN_E_DB;
    }
    return CPN_OK;
}

/* Sign a fresh LEASE for an updated row, write it and queue it. */
static int s_rewrite(peer_lease_t *self, peer_batch_t *batch, size_t broker, const cpn_env_t *env,
                     peer_lease_row_t *row, const cpn_lease_t *stored)
{
    cpn_lease_t lease = *stored;
    uint8_t *frame = NULL;
    size_t len = 0;
    uint8_t *old_frame = row->frame;
    size_t old_len = row->frame_len;
    int r;
    lease.end_ms = row->end_ms;
    lease.renewals = row->renewals;
    snprintf(lease.state, sizeof lease.state, "%s", peer_lease_state_name(row->state));
    if ((r = s_txn(self, batch)) != CPN_OK ||
        (r = peer_sender_build(self->sender, CPN_MSG_LEASE, &lease, &frame, &len)) != CPN_OK)
        goto out;
    row->frame = frame;
    row->frame_len = len;
    r = peer_store_update(self->store, row);
    row->frame = old_frame;
    row->frame_len = old_len;
    if (r != CPN_OK)
        goto out;
    batch->changed = true;
    s_queue_lease(batch, broker, &frame, len, row->lease_id, env->seq, true);
out:
    free(frame);
    return r;
}

/* The durable half of replay protection for RENEW and RELEASE, which are not idempotent:
 * the in-memory guard is empty after a restart, so the lease row keeps the seq of the last
 * operation applied to it (written in the same transaction) and an operation must be above
 * it. Called once the row is known to be env's tenant's; on CPN_OK the caller stores env's
 * seq in row->op_seq. */
static int s_op_seq_check(const peer_lease_row_t *row, const cpn_env_t *env, const char **why)
{
    if (env->seq > row->op_seq)
        return CPN_OK;
    *why = "seq not above the lease's last renewal or release";
    return CPN_E_REPLAY;
}

static void s_on_renew(peer_lease_t *self, peer_batch_t *batch, size_t broker, const cpn_env_t *env)
{
    cpn_renew_t renew;
    cpn_lease_t stored;
    peer_lease_row_t row;
    const char *why = "";
    uint64_t new_end = 0;
    int r;
    memset(&renew, 0, sizeof renew);
    memset(&row, 0, sizeof row);
    if ((r = cpn_renew_decode(env, &cpn_limits_default, &renew)) != CPN_OK) {
        why = "RENEW body";
        goto refuse;
    }
    if (sodium_memcmp(renew.peer, cpn_identity_pk(self->id), CPN_PK_LEN) != 0) {
        r = CPN_E_INVAL;
        why = "renewal for another peer";
        goto refuse;
    }
    if ((r = s_load(self, renew.lease_id, &row, &stored)) != CPN_OK) {
        why = r == CPN_E_NO_LEASE ? "no such lease" : "lease lookup";
        goto refuse;
    }
    if ((r = grant_check_renew(self->cfg, &row, env->from, renew.extend_s, cpn_now_ms(), &new_end,
                               &why)) != CPN_OK ||
        (r = s_op_seq_check(&row, env, &why)) != CPN_OK)
        goto refuse;
    row.end_ms = new_end;
    row.renewals++;
    row.op_seq = env->seq;
    if ((r = s_rewrite(self, batch, broker, env, &row, &stored)) != CPN_OK) {
        why = "cannot record the renewal";
        goto refuse;
    }
    self->stats.renewed++;
    if (row.driver[0])
        s_call_later(batch, row.lease_id, DRV_RENEW); /* the resource's end follows */
    log_info("lease", "renewed %s by %" PRIu64 " s (renewal %" PRIu32 ")", row.lease_id,
             renew.extend_s, row.renewals);
    goto out;
refuse:
    s_refuse(self, batch, broker, env, renew.lease_id, r, why);
out:
    peer_lease_row_clear(&row);
}

static void s_on_release(peer_lease_t *self, peer_batch_t *batch, size_t broker,
                         const cpn_env_t *env)
{
    cpn_release_t rel;
    cpn_lease_t stored;
    peer_lease_row_t row;
    const char *why = "";
    uint64_t now = cpn_now_ms();
    int r;
    memset(&rel, 0, sizeof rel);
    memset(&row, 0, sizeof row);
    if ((r = cpn_release_decode(env, &cpn_limits_default, &rel)) != CPN_OK) {
        why = "RELEASE body";
        goto refuse;
    }
    if (sodium_memcmp(rel.peer, cpn_identity_pk(self->id), CPN_PK_LEN) != 0) {
        r = CPN_E_INVAL;
        why = "release for another peer";
        goto refuse;
    }
    if ((r = s_load(self, rel.lease_id, &row, &stored)) != CPN_OK) {
        why = r == CPN_E_NO_LEASE ? "no such lease" : "lease lookup";
        goto refuse;
    }
    if ((r = grant_check_release(&row, env->from, now, &why)) != CPN_OK ||
        (r = s_op_seq_check(&row, env, &why)) != CPN_OK)
        goto refuse;
    row.state = PEER_LEASE_RELEASED;
    row.op_seq = env->seq;
    row.end_ms = now; /* when it really ended */
    row.teardown = row.driver[0] != '\0'; /* its units stay used until the driver released */
    if ((r = s_rewrite(self, batch, broker, env, &row, &stored)) != CPN_OK) {
        why = "cannot record the release";
        goto refuse;
    }
    int pkg = peer_inventory_find(self->inv, row.package);
    if (row.teardown) {
        s_call_later(batch, row.lease_id, DRV_RELEASE);
    } else if (pkg >= 0) {
        s_give_back(self, (size_t)pkg, row.units);
    }
    self->stats.released++;
    log_info("lease", "released %s: %" PRIu32 " x %s back", row.lease_id, row.units, row.package);
    goto out;
refuse:
    s_refuse(self, batch, broker, env, rel.lease_id, r, why);
out:
    peer_lease_row_clear(&row);
}

static void s_on_note(peer_lease_t *self, peer_batch_t *batch, size_t broker, const cpn_env_t *env)
{
    (void)self;
    (void)batch;
    cpn_error_t e;
    if (cpn_error_decode(env, &cpn_limits_default, &e) == CPN_OK)
        log_warn("lease", "broker %zu reports %s for seq %" PRIu64 ": %s", broker,
                 cpn_errname(e.code), e.ref_seq, e.reason);
    else
        log_debug("lease", "broker %zu says %s", broker, cpn_msg_name(env->type));
}

/* STATUS {what: "notice", data: str lease id} from the broker of this connection: it recorded
 * our NOTICE for that lease. Written in the batch's transaction; a receipt for nothing we
 * sent that broker changes nothing. */
static void s_on_receipt(peer_lease_t *self, peer_batch_t *batch, size_t broker,
                         const cpn_env_t *env)
{
    cpn_status_t st;
    msgpack_zone zone;
    msgpack_object obj;
    char lease_id[CPN_NAME_MAX];
    bool found = false;
    if (cpn_status_decode(env, &cpn_limits_default, &st) != CPN_OK ||
        strcmp(st.what, CPN_NOTICE_WHAT) != 0) {
        log_debug("lease", "broker %zu sent a STATUS that is no notice receipt", broker);
        return;
    }
    if (!msgpack_zone_init(&zone, 256))
        return;
    int r = mp_parse(st.data.ptr, st.data.len, &cpn_limits_default, &zone, &obj);
    if (r != CPN_OK || obj.type != MSGPACK_OBJECT_STR || obj.via.str.size == 0 ||
        obj.via.str.size >= sizeof lease_id) {
        s_count(self, CPN_E_SCHEMA, env->from, "STATUS", "notice receipt without a lease id");
        goto out;
    }
    memcpy(lease_id, obj.via.str.ptr, obj.via.str.size);
    lease_id[obj.via.str.size] = '\0';
    if ((r = s_txn(self, batch)) != CPN_OK ||
        (r = peer_nstore_ack(self->store, lease_id, env->from, &found)) != CPN_OK)
        log_error("lease", "cannot record the receipt for the notice of %s", lease_id);
    else if (found) {
        self->stats.notices_acked++;
        log_info("lease", "broker %zu took the notice of %s", broker, lease_id);
    }
out:
    msgpack_zone_destroy(&zone);
}

/* RECEIPT {peer, lease_id, n, hash} from the broker of this connection: it took our record n
 * of the lease. Kept with the record in the batch's transaction; a receipt for a record we
 * did not make (another hash, another signer) changes nothing and is counted. */
static void s_on_usage_receipt(peer_lease_t *self, peer_batch_t *batch, size_t broker,
                               const cpn_env_t *env)
{
    cpn_receipt_t rc;
    bool found = false;
    int r;
    if (!self->meter)
        return;
    if ((r = cpn_receipt_decode(env, &cpn_limits_default, &rc)) != CPN_OK) {
        s_count(self, r, env->from, "RECEIPT", "does not decode");
        return;
    }
    if (sodium_memcmp(rc.peer, cpn_identity_pk(self->id), CPN_PK_LEN) != 0) {
        s_count(self, CPN_E_UNTRUSTED, env->from, "RECEIPT", "for another peer's record");
        return;
    }
    if ((r = s_txn(self, batch)) != CPN_OK ||
        (r = peer_meter_receipt(self->meter, rc.lease_id, rc.n, rc.hash, env->frame,
                                env->frame_len, &found)) != CPN_OK)
        log_error("lease", "cannot record the receipt for record %" PRIu32 " of %s", rc.n,
                  rc.lease_id);
    else if (found)
        self->stats.usage_acked++;
    else
        s_count(self, CPN_E_CHAIN, env->from, "RECEIPT", "names a record we did not make");
    (void)broker;
}

void peer_lease_batch_begin(peer_lease_t *self, peer_batch_t *batch)
{
    batch->n = 0;
    /* A transaction still open is a batch somebody did not end (a bug): this batch's commit
     * takes its writes along rather than every later write failing. */
    batch->wrote = peer_store_in_txn(self->store);
    if (batch->wrote)
        log_error("lease", "a store transaction was left open; committed with the next batch");
    batch->changed = false;
    batch->n_calls = 0;
}

/* The driver calls of a committed batch. One that does not fit the engine's queue stays due
 * in the store (a provisioning row, a teardown) and the sweep submits it again. */
static void s_submit_calls(peer_lease_t *self, peer_batch_t *batch)
{
    for (size_t i = 0; self->prov && i < batch->n_calls; i++) {
        peer_lease_row_t row;
        int r = peer_store_get(self->store, batch->calls[i].lease_id, &row);
        if (r == CPN_OK)
            r = peer_lease_submit(self, &row, batch->calls[i].verb);
        if (r != CPN_OK)
            log_warn("lease", "%s of %s not submitted now: %s", drv_verb_name(batch->calls[i].verb),
                     batch->calls[i].lease_id, cpn_errname(r));
        peer_lease_row_clear(&row);
    }
    batch->n_calls = 0;
}

void peer_lease_handle(peer_lease_t *self, peer_batch_t *batch, size_t broker, const uint8_t *frame,
                       size_t len)
{
    cpn_env_t env;
    const peer_broker_cfg_t *bcfg = &self->cfg->brokers[broker];
    int r;
    if (batch->n >= PEER_BATCH_MAX) {
        s_count(self, CPN_E_BUSY, NULL, "frame", "batch full");
        return;
    }
    if ((r = cpn_env_parse(frame, len, &cpn_limits_default, &env)) != CPN_OK) {
        s_count(self, r, NULL, "frame", bcfg->endpoint);
        return;
    }
    size_t i = 0, n = sizeof s_dispatch / sizeof s_dispatch[0];
    while (i < n && s_dispatch[i].type != env.type)
        i++;
    if (i == n) {
        s_count(self, CPN_E_ROLE, env.from, cpn_msg_name(env.type), "not for a peer");
        return;
    }
    bool from_broker = s_dispatch[i].signer == S_FROM_BROKER;
    /* A broker's own messages must be signed by the key configured for this connection;
     * tenant messages it relays carry the tenant's key. */
    if (from_broker && sodium_memcmp(env.from, bcfg->key, CPN_PK_LEN) != 0) {
        s_count(self, CPN_E_UNTRUSTED, env.from, cpn_msg_name(env.type),
                "not this connection's broker key");
        return;
    }
    if ((r = cpn_env_verify(&env)) != CPN_OK) {
        s_count(self, r, env.from, cpn_msg_name(env.type), NULL);
        return;
    }
    if (!from_broker && !peer_config_tenant_ok(self->cfg, env.from)) {
        s_refuse(self, batch, broker, &env, "", CPN_E_TENANT_REFUSED,
                 "tenant not accepted by this peer");
        return;
    }
    r = cpn_replay_check(from_broker ? self->replay_brokers : self->replay_tenants, env.from,
                         env.seq, env.ts_ms, cpn_now_ms());
    if (r != CPN_OK) {
        s_count(self, r, env.from, cpn_msg_name(env.type), NULL);
        return;
    }
    s_dispatch[i].fn(self, batch, broker, &env);
}

int peer_lease_batch_end(peer_lease_t *self, peer_batch_t *batch)
{
    if (!batch->wrote) {
        s_submit_calls(self, batch);
        return CPN_OK;
    }
    batch->wrote = false;
    int r = peer_store_commit(self->store);
    if (r == CPN_OK) {
        peer_sender_commit(self->sender);
        s_submit_calls(self, batch);
        return CPN_OK;
    }
    batch->n_calls = 0; /* nothing they refer to was written */
    /* Nothing of this batch is durable: no LEASE may go out. */
    peer_sender_rollback(self->sender);
    log_error("lease", "commit failed: refusing the batch's %zu replies' grants", batch->n);
    for (size_t i = 0; i < batch->n; i++) {
        peer_reply_t *rep = &batch->replies[i];
        if (rep->committed) {
            free(rep->frame);
            rep->frame = NULL; /* a NACK now could settle the broker's intent: silence */
            continue;
        }
        if (!rep->lease)
            continue;
        cpn_nack_t nack;
        memset(&nack, 0, sizeof nack);
        snprintf(nack.ref, sizeof nack.ref, "%s", rep->ref);
        nack.ref_seq = rep->ref_seq;
        nack.code = CPN_E_DB;
        snprintf(nack.reason, sizeof nack.reason, "%s", "the peer could not record the lease");
        free(rep->frame);
        rep->frame = NULL;
        rep->len = 0;
        rep->lease = false;
        if (peer_sender_build(self->sender, CPN_MSG_NACK, &nack, &rep->frame, &rep->len) != CPN_OK)
            rep->frame = NULL; /* not sent */
        s_count(self, CPN_E_DB, NULL, "LEASE", rep->ref);
    }
    if (peer_lease_recount(self) != CPN_OK)
        log_error("lease", "cannot recount the inventory");
    return r;
}

void peer_batch_clear(peer_batch_t *batch)
{
    for (size_t i = 0; i < batch->n; i++) {
        free(batch->replies[i].frame);
        batch->replies[i].frame = NULL;
    }
    batch->n = 0;
}

static int s_add_used(const char *package, uint64_t units, void *arg)
{
    peer_lease_t *self = arg;
    if (peer_inventory_add_used(self->inv, package, units) != CPN_OK)
        log_warn("lease", "active leases on package %s, which is no longer configured", package);
    return 0;
}

static int s_add_slice(const char *package, const peer_slice_t *sl, void *arg)
{
    peer_lease_t *self = arg;
    int r = peer_inventory_add_slice(self->inv, package, sl);
    if (r != CPN_OK) /* the lease stands; its devices are counted as they fit */
        log_warn("lease", "a slice on package %s (unit %" PRIu32 ") does not fit its "
                 "configuration: %s", package, sl->node, cpn_strerror(r));
    return 0;
}

int peer_lease_recount(peer_lease_t *self)
{
    int r;
    peer_inventory_clear(self->inv);
    if ((r = peer_store_used(self->store, s_add_used, self)) != CPN_OK)
        return r;
    return peer_store_slices(self->store, s_add_slice, self);
}

int peer_lease_expire(peer_lease_t *self, uint64_t now_ms, size_t *n)
{
    size_t k = 0;
    int r = peer_store_expire(self->store, now_ms, &k);
    if (r == CPN_OK && k > 0) {
        self->stats.expired += k;
        log_info("lease", "%zu lease(s) expired", k);
        r = peer_lease_recount(self);
    }
    if (n)
        *n = k;
    return r;
}

uint64_t peer_lease_refused(const peer_lease_t *self, int code)
{
    unsigned slot = code < 0 && -code < PEER_ERR_SLOTS ? (unsigned)-code : 0;
    return self->refused[slot];
}

uint64_t peer_lease_refused_total(const peer_lease_t *self)
{
    return self->refused_total;
}

void peer_lease_stats(const peer_lease_t *self, peer_lease_stats_t *out)
{
    *out = self->stats;
}

/* ---- provisioning: the driver's answers ---- */

/* The REQUEST's access hints, from the stored frame (the CLAIM while provisioning, then
 * the LEASE: both embed the REQUEST), as JSON into hints; NULL if none. */
static const char *s_hints_of(const peer_lease_row_t *row, char hints[DRV_HINTS_MAX])
{
    const char *r = NULL;
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t o = {.lim = &cpn_limits_default, .flags = CPN_CHAIN_TOP_VERIFIED};
    if (ch && cpn_chain_open(row->frame, row->frame_len, CPN_MSG_NONE, &o, ch) == CPN_OK &&
        ch->req.access.n > 0 && drv_hints_json(&ch->req.access, hints, DRV_HINTS_MAX) == CPN_OK)
        r = hints;
    free(ch);
    return r;
}

void peer_lease_call_of(const peer_lease_row_t *row, drv_verb_t verb, drv_call_t *call,
                        char hints[DRV_HINTS_MAX])
{
    memset(call, 0, sizeof *call);
    call->verb = verb;
    snprintf(call->lease_id, sizeof call->lease_id, "%s", row->lease_id);
    cpn_pk_to_text(row->tenant, call->tenant);
    cpn_key_id(row->tenant, call->tenant_kid);
    snprintf(call->package, sizeof call->package, "%s", row->package);
    call->units = row->units;
    call->start_ms = row->start_ms;
    call->end_ms = row->end_ms;
    call->hints = verb == DRV_GRANT || verb == DRV_RENEW ? s_hints_of(row, hints) : NULL;
}

int peer_lease_submit(peer_lease_t *self, const peer_lease_row_t *row, drv_verb_t verb)
{
    if (!self->prov)
        return CPN_E_NO_PACKAGE;
    int d = peer_config_driver(self->cfg, row->driver);
    if (d < 0) {
        log_error("lease", "lease %s: driver %s is not configured", row->lease_id, row->driver);
        return CPN_E_NO_PACKAGE;
    }
    drv_call_t call;
    char hints[DRV_HINTS_MAX];
    peer_lease_call_of(row, verb, &call, hints);
    return provision_submit(self->prov, (size_t)d, &call);
}

/* The broker connection whose key signed the stored CLAIM (frame), and the CLAIM's seq, so
 * that the answer goes where the CLAIM came from and names it. False if that broker is no
 * longer configured. */
static bool s_claim_origin(peer_lease_t *self, const uint8_t *frame, size_t len, size_t *broker,
                           uint64_t *seq)
{
    cpn_env_t cenv;
    if (cpn_env_parse(frame, len, &cpn_limits_default, &cenv) != CPN_OK)
        return false;
    *seq = cenv.seq;
    for (size_t i = 0; i < self->cfg->n_brokers; i++)
        if (sodium_memcmp(self->cfg->brokers[i].key, cenv.from, CPN_PK_LEN) == 0) {
            *broker = i;
            return true;
        }
    return false;
}

/* The grant failed (or came too late): `failed`, units back, NACK provision-failed to the
 * broker, and a release for whatever the driver may have left. */
static void s_provision_fail(peer_lease_t *self, peer_batch_t *batch, peer_lease_row_t *row,
                             const char *reason)
{
    size_t broker = 0;
    uint64_t seq = 0;
    bool answer = s_claim_origin(self, row->frame, row->frame_len, &broker, &seq);
    char why[CPN_REASON_MAX];
    snprintf(why, sizeof why, "driver %s: %s", row->driver, reason);
    drv_sanitize(why, sizeof why);
    row->state = PEER_LEASE_FAILED;
    row->teardown = true;
    if (s_txn(self, batch) != CPN_OK || peer_store_update(self->store, row) != CPN_OK) {
        log_error("lease", "cannot record the failed grant of %s", row->lease_id);
        return; /* still provisioning in the store: the next start re-runs the grant */
    }
    int pkg = peer_inventory_find(self->inv, row->package);
    if (pkg >= 0)
        s_give_back(self, (size_t)pkg, row->units);
    s_call_later(batch, row->lease_id, DRV_RELEASE);
    self->stats.provision_failed++;
    s_count(self, CPN_E_PROVISION_FAILED, row->tenant, "CLAIM", why);
    if (answer) {
        size_t n = batch->n;
        s_nack(self, batch, broker, row->request_id, seq, CPN_E_PROVISION_FAILED, why);
        if (batch->n > n)
            batch->replies[n].committed = true;
    }
}

/* The grant succeeded: sign the LEASE (it embeds the stored CLAIM), commit `active`, queue
 * the LEASE for the broker the CLAIM came from. */
static void s_provision_ok(peer_lease_t *self, peer_batch_t *batch, peer_lease_row_t *row,
                           const drv_result_t *res)
{
    cpn_lease_t lease;
    uint8_t *frame = NULL;
    size_t len = 0, broker = 0;
    uint64_t seq = 0;
    uint8_t *box = NULL;
    int r;
    if (row->end_ms <= cpn_now_ms()) {
        s_provision_fail(self, batch, row, "provisioned after the lease's end");
        return;
    }
    bool answer = s_claim_origin(self, row->frame, row->frame_len, &broker, &seq);
    memset(&lease, 0, sizeof lease);
    lease.claim.ptr = row->frame;
    lease.claim.len = row->frame_len;
    snprintf(lease.lease_id, sizeof lease.lease_id, "%s", row->lease_id);
    snprintf(lease.package, sizeof lease.package, "%s", row->package);
    lease.units = row->units;
    lease.price = row->price;
    lease.start_ms = row->start_ms;
    lease.end_ms = row->end_ms;
    snprintf(lease.state, sizeof lease.state, "%s", peer_lease_state_name(PEER_LEASE_ACTIVE));
    {
        peer_slice_t sl; /* a shared package's slice: recorded with the provisioning lease */
        bool found = false;
        if (peer_store_slice_get(self->store, row->lease_id, &sl, &found) == CPN_OK && found)
            s_slice_name(&sl, lease.slice, sizeof lease.slice);
    }
    /* What the driver handed out, for the tenant's eyes only (brokers relay it unread). */
    if (res->access && res->access[0]) {
        if (!(box = malloc(CPN_ACCESS_BOX_MAX))) {
            log_error("lease", "cannot seal the access details of %s: out of memory",
                      row->lease_id);
            goto out;
        }
        if ((r = cpn_lease_seal_access(&lease, row->tenant, res->access, strlen(res->access),
                                       box)) != CPN_OK) {
            char why[CPN_REASON_MAX];
            snprintf(why, sizeof why, "its access details cannot be sealed: %s",
                     cpn_strerror(r));
            s_provision_fail(self, batch, row, why);
            goto out;
        }
    }
    if (s_txn(self, batch) != CPN_OK ||
        peer_sender_build(self->sender, CPN_MSG_LEASE, &lease, &frame, &len) != CPN_OK) {
        log_error("lease", "cannot sign the lease %s", row->lease_id);
        goto out; /* still provisioning: re-run at the next start */
    }
    uint8_t *claim_frame = row->frame;
    size_t claim_len = row->frame_len;
    row->state = PEER_LEASE_ACTIVE;
    row->frame = frame;
    row->frame_len = len;
    r = peer_store_update(self->store, row);
    row->frame = claim_frame;
    row->frame_len = claim_len;
    if (r != CPN_OK) {
        log_error("lease", "cannot record the lease %s", row->lease_id);
        goto out;
    }
    batch->changed = true;
    self->stats.granted++;
    self->stats.provisioned++;
    log_info("lease", "granted %s: %" PRIu32 " x %s, provisioned by driver %s", row->lease_id,
             row->units, row->package, row->driver);
    if (answer) {
        size_t n = batch->n;
        s_queue_lease(batch, broker, &frame, len, row->request_id, seq, true);
        if (batch->n > n)
            batch->replies[n].committed = true;
    } else
        log_warn("lease", "lease %s: the broker of its CLAIM is not configured; it gets the "
                 "LEASE when it claims again", row->lease_id);
out:
    free(frame);
    if (box)
        sodium_memzero(box, CPN_ACCESS_BOX_MAX);
    free(box);
}

/* The driver released what a lease held: its units are free (a failed grant's were). */
static void s_torn_down(peer_lease_t *self, peer_batch_t *batch, peer_lease_row_t *row)
{
    row->teardown = false;
    if (s_txn(self, batch) != CPN_OK || peer_store_update(self->store, row) != CPN_OK) {
        log_error("lease", "cannot record the teardown of %s (done again later)", row->lease_id);
        return;
    }
    int pkg = peer_inventory_find(self->inv, row->package);
    if (row->state != PEER_LEASE_FAILED && pkg >= 0)
        s_give_back(self, (size_t)pkg, row->units);
    self->stats.torn_down++;
}

void peer_lease_lost(peer_lease_t *self, peer_batch_t *batch, const char *lease_id,
                     const char *why)
{
    (void)batch;
    self->stats.lost++;
    log_error("lease", "lease %s lost its resource: %s", lease_id, why);
    for (size_t i = 0; i < self->n_lost; i++)
        if (strcmp(self->lost[i].lease_id, lease_id) == 0)
            return;
    if (self->n_lost >= PEER_LOST_MAX) {
        /* The driver's next status or inventory poll reports it again. */
        log_warn("lease", "lease %s: %d lost leases wait already; its notice waits", lease_id,
                 PEER_LOST_MAX);
        return;
    }
    snprintf(self->lost[self->n_lost].lease_id, CPN_NAME_MAX, "%s", lease_id);
    snprintf(self->lost[self->n_lost].why, CPN_REASON_MAX, "%s", why ? why : "capacity lost");
    self->n_lost++;
}

bool peer_lease_take_lost(peer_lease_t *self, char lease_id[CPN_NAME_MAX],
                          char why[CPN_REASON_MAX])
{
    if (self->n_lost == 0)
        return false;
    self->n_lost--;
    snprintf(lease_id, CPN_NAME_MAX, "%s", self->lost[self->n_lost].lease_id);
    snprintf(why, CPN_REASON_MAX, "%s", self->lost[self->n_lost].why);
    return true;
}

/* A grant's answer for a lease that is not provisioning: a recreation (active), or a driver
 * that made something for a lease that has ended (release it). */
static void s_grant_other(peer_lease_t *self, peer_batch_t *batch, peer_lease_row_t *row,
                          const drv_result_t *res)
{
    if (row->state == PEER_LEASE_ACTIVE) {
        if (res->outcome == DRV_OK)
            log_info("lease", "lease %s: resource recreated by driver %s", row->lease_id,
                     row->driver);
        else
            peer_lease_lost(self, batch, row->lease_id, res->reason);
        return;
    }
    if (res->outcome == DRV_OK && !row->teardown) {
        row->teardown = true;
        if (s_txn(self, batch) == CPN_OK && peer_store_update(self->store, row) == CPN_OK)
            s_call_later(batch, row->lease_id, DRV_RELEASE);
    }
}

void peer_lease_driver_done(peer_lease_t *self, peer_batch_t *batch, const drv_call_t *call,
                            const drv_result_t *res)
{
    peer_lease_row_t row;
    int r = peer_store_get(self->store, call->lease_id, &row);
    if (r != CPN_OK) {
        if (r != CPN_E_NO_LEASE)
            log_error("lease", "%s of %s: lease lookup failed", drv_verb_name(call->verb),
                      call->lease_id);
        return; /* an orphan's release: nothing of ours */
    }
    switch (call->verb) {
    case DRV_GRANT:
        if (row.state != PEER_LEASE_PROVISIONING)
            s_grant_other(self, batch, &row, res);
        else if (res->outcome == DRV_OK)
            s_provision_ok(self, batch, &row, res);
        else
            s_provision_fail(self, batch, &row, res->reason);
        break;
    case DRV_RENEW:
        if (res->outcome != DRV_OK && row.state == PEER_LEASE_ACTIVE)
            peer_lease_lost(self, batch, row.lease_id, res->reason);
        break;
    case DRV_RELEASE:
        if (res->outcome == DRV_OK && row.teardown)
            s_torn_down(self, batch, &row);
        break;
    default:
        break;
    }
    peer_lease_row_clear(&row);
}
