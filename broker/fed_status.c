/* fed_status.c - what `cpnctl federation` and `cpnctl status` show of the member links. */
#include "federation_int.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

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
    const fed_link_t *l = &f->links[i];
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
    mp_pack_ku64(pk, "relays_dup", f ? f->st.relays_dup : 0);
    mp_pack_ku64(pk, "relays_pruned", f ? f->st.relays_pruned : 0);
    mp_pack_ku64(pk, "tree_changes", f ? f->st.tree_changes : 0);
    mp_pack_ku64(pk, "digest_syncs", f ? f->st.digest_syncs : 0);
    mp_pack_ku64(pk, "forwards_in", f ? f->st.forwards_in : 0);
    mp_pack_ku64(pk, "forwards_out", f ? f->st.forwards_out : 0);
    mp_pack_ku64(pk, "summaries_out", f ? f->st.summaries_out : 0);
    mp_pack_ku64(pk, "summaries_in", f ? f->st.summaries_in : 0);
    mp_pack_ku64(pk, "summary_claims", f ? f->st.summary_claims : 0);
    mp_pack_ku64(pk, "relays_over_budget", f ? f->st.relays_over_budget : 0);
}

bool federation_link_info(const broker_t *self, size_t i, federation_link_info_t *out)
{
    if (i >= federation_n_rows(self))
        return false;
    const fed_link_t *l = &self->fed->links[i];
    uint64_t now = cpn_mono_ms();
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", l->name);
    memcpy(out->key, l->key, CPN_PK_LEN);
    out->up = l->up;
    out->connected = l->tx_ok;
    out->silent_ms = l->last_rx_mono && now > l->last_rx_mono ? now - l->last_rx_mono : 0;
    out->relays_in = l->relays_in;
    out->relays_out = l->relays_out;
    out->relay_bytes_out = l->relay_bytes_out;
    out->bytes_out = l->bytes_out;
    out->downs = l->downs;
    return true;
}

void federation_counts(const broker_t *self, federation_counts_t *out)
{
    const struct federation *f = self->fed;
    memset(out, 0, sizeof *out);
    if (!f)
        return;
    out->relays_accepted = f->st.relays_accepted;
    out->relays_refused = f->st.relays_refused;
    out->forwards_in = f->st.forwards_in;
    out->forwards_out = f->st.forwards_out;
}
