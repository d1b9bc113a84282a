/* usage_in.c - USAGE at a broker: check, take, countersign, carry on (usage_in.h). */
#include "usage_in.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chain.h"
#include "clock.h"
#include "federation.h"
#include "log.h"
#include "msg_typed.h"
#include "usage.h"
#include "usage_log.h"

/* Terms and route from the LEASE that came with record 1. */
static int s_lease_terms(broker_t *self, const cpn_env_t *uenv, const cpn_usage_t *u,
                         const uint8_t *lease, size_t lease_len, usage_terms_t *t,
                         char why[CPN_REASON_MAX])
{
    cpn_chain_t *ch = calloc(1, sizeof *ch);
    int r = CPN_E_NOMEM;
    snprintf(why, CPN_REASON_MAX, "out of memory");
    if (!ch)
        return r;
    cpn_chain_opts_t co = {.lim = &self->lim, .sigcache = self->sigcache, .peer_pk = uenv->from};
    if ((r = cpn_chain_open(lease, lease_len, CPN_MSG_LEASE, &co, ch)) != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "the record's lease: %.200s", ch->why);
        goto out;
    }
    r = CPN_E_CHAIN;
    snprintf(why, CPN_REASON_MAX, "the record names another lease than the one it carries");
    if (strcmp(ch->lease.lease_id, u->lease_id) != 0)
        goto out;
    uint32_t at = 0;
    const uint8_t *me = cpn_identity_pk(self->id);
    while (at < ch->n_brokers && sodium_memcmp(ch->brokers[at], me, CPN_PK_LEN) != 0)
        at++;
    r = CPN_E_UNTRUSTED;
    snprintf(why, CPN_REASON_MAX, "a lease this broker neither claimed nor carried");
    if (at == ch->n_brokers)
        goto out;
    memcpy(t->tenant, ch->req_env.from, CPN_PK_LEN);
    snprintf(t->package, sizeof t->package, "%s", ch->lease.package);
    t->units = ch->lease.units;
    t->price = ch->lease.price;
    t->start_ms = ch->lease.start_ms;
    t->lease = lease;
    t->lease_len = lease_len;
    if ((t->has_via = at > 0))
        memcpy(t->via, ch->brokers[at - 1], CPN_PK_LEN);
    r = CPN_OK;
out:
    free(ch);
    return r;
}

/* RECEIPT {peer, lease_id, n, hash}, signed now, leaving once the record is committed: to a
 * peer on its connection, to a member on our link to it. */
static void s_receipt(broker_t *self, const broker_rx_t *rx, const cpn_env_t *uenv,
                      const cpn_usage_t *u)
{
    cpn_receipt_t rc;
    memset(&rc, 0, sizeof rc);
    memcpy(rc.peer, uenv->from, CPN_PK_LEN);
    snprintf(rc.lease_id, sizeof rc.lease_id, "%s", u->lease_id);
    rc.n = u->n;
    cpn_usage_hash(uenv->frame, uenv->frame_len, rc.hash);
    outbox_item_t it;
    memset(&it, 0, sizeof it);
    it.kind = OUTBOX_RECEIPT;
    if (cpn_signer_build(&self->signer, CPN_MSG_RECEIPT, &rc, &it.frame, &it.len) != CPN_OK)
        return;
    memcpy(it.rid, rx->rid, rx->rid_len);
    it.rid_len = rx->rid_len;
    if (rx->roles & CPN_ROLE_BROKER) {
        it.remote = true;
        memcpy(it.via, rx->env.from, CPN_PK_LEN);
    }
    (void)broker_queue(self, &it);
}

static int s_take(broker_t *self, const broker_rx_t *rx, const cpn_env_t *uenv,
                  const uint8_t *lease, size_t lease_len, cpn_usage_t *u, bool *dup,
                  char why[CPN_REASON_MAX])
{
    usage_terms_t t;
    int r;
    memset(&t, 0, sizeof t);
    snprintf(why, CPN_REASON_MAX, "the USAGE record's signature or body");
    if (uenv->type != CPN_MSG_USAGE) {
        snprintf(why, CPN_REASON_MAX, "not a USAGE record");
        return CPN_E_WRONG_TYPE;
    }
    if ((r = cpn_sigcache_verify(self->sigcache, uenv)) != CPN_OK ||
        (r = cpn_usage_decode(uenv, &self->lim, u)) != CPN_OK)
        return r;
    /* A peer speaks only for its own records; a member carries any peer's. */
    snprintf(why, CPN_REASON_MAX, "the record is not signed by the peer that sent it");
    if (!(rx->roles & CPN_ROLE_BROKER) && sodium_memcmp(uenv->from, rx->env.from, CPN_PK_LEN) != 0)
        return CPN_E_UNTRUSTED;
    if (lease_len > 0 &&
        (r = s_lease_terms(self, uenv, u, lease, lease_len, &t, why)) != CPN_OK)
        return r;
    return usage_log_take_terms(self->usage, uenv, lease_len > 0 ? &t : NULL, dup, why);
}

void usage_in_frame(broker_t *self, const broker_rx_t *rx, const uint8_t *frame, size_t len,
                    const uint8_t *lease, size_t lease_len)
{
    char why[CPN_REASON_MAX];
    cpn_env_t uenv;
    cpn_usage_t u;
    bool dup = false;
    memset(&u, 0, sizeof u);
    snprintf(why, sizeof why, "the USAGE record does not parse");
    int r = cpn_env_parse(frame, len, &self->lim, &uenv);
    if (r == CPN_OK)
        r = s_take(self, rx, &uenv, lease, lease_len, &u, &dup, why);
    if (r == CPN_OK) {
        if (dup)
            self->stats.usage_dup++;
        else
            self->stats.usage_taken++;
        s_receipt(self, rx, &uenv, &u);
        return;
    }
    broker_count_refusal(self, r);
    self->stats.usage_refused++;
    char kid[CPN_KID_LEN];
    cpn_key_id(rx->env.from, kid);
    log_warn("usage", "USAGE via %s refused: %s: %s", kid, cpn_errname(r), why);
    broker_error(self, rx->rid, rx->rid_len, rx->env.seq, r, why);
}

void usage_in_receipt(broker_t *self, const broker_rx_t *rx, const cpn_receipt_t *rc)
{
    bool found = false;
    if (usage_log_relayed(self->usage, rc->peer, rc->lease_id, rc->n, rc->hash, rx->env.from,
                          &found) != CPN_OK)
        log_error("usage", "cannot record the receipt for record %" PRIu32 " of %s", rc->n,
                  rc->lease_id);
    else if (found)
        self->stats.usage_relayed++;
    else /* a receipt for nothing we carried to that member: changes nothing */
        broker_count_refusal(self, CPN_E_UNTRUSTED);
}

static void s_relay_one(const usage_relay_t *rel, void *arg)
{
    broker_t *self = arg;
    cpn_meter_t m = {.usage = {rel->frame, rel->len}};
    if (rel->lease)
        m.lease = (mp_bytes_t){rel->lease, rel->lease_len};
    if (federation_send(self, rel->via, CPN_MSG_METER, &m) != CPN_OK)
        log_debug("usage", "record %" PRIu32 " of %s: the link back is down; again later", rel->n,
                  rel->lease_id);
}

void usage_in_tick(broker_t *self, uint64_t now_ms)
{
    if (usage_log_relay_due(self->usage, now_ms, USAGE_RELAY_RETRY_MS, USAGE_RELAY_BATCH,
                            s_relay_one, self) != CPN_OK)
        log_error("usage", "cannot list the records to carry on");
}
