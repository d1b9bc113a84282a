/* summary.c - a broker's summary of its own peers' offers (see summary.h). */
#include "summary.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"

uint32_t summary_band(uint64_t price)
{
    return price ? 64u - (uint32_t)__builtin_clzll(price) : 0;
}

uint64_t summary_band_top(uint32_t band)
{
    return band >= 64 ? UINT64_MAX : (UINT64_C(1) << band) - 1;
}

/* The part of a package a row groups by, in a zeroed struct (memcmp-able): the shape and the
 * region; id, counts, price and the slice fields cleared. */
static void s_key(const cpn_package_t *p, cpn_package_t *k)
{
    memset(k, 0, sizeof *k);
    k->cores = p->cores;
    k->mem_bytes = p->mem_bytes;
    snprintf(k->accel.vendor, sizeof k->accel.vendor, "%s", p->accel.vendor);
    snprintf(k->accel.model, sizeof k->accel.model, "%s", p->accel.model);
    k->accel.count = p->accel.count;
    k->accel.mem_bytes = p->accel.mem_bytes;
    k->accel.bf16_tflops = p->accel.bf16_tflops;
    k->accel.mem_bw_gbs = p->accel.mem_bw_gbs;
    snprintf(k->storage_class, sizeof k->storage_class, "%s", p->storage_class);
    k->storage_bytes = p->storage_bytes;
    k->storage_iops = p->storage_iops;
    k->fabric_bps = p->fabric_bps;
    k->egress_bps = p->egress_bps;
    snprintf(k->region, sizeof k->region, "%s", p->region);
    k->price = summary_band(p->price); /* the band stands in for the price in the key */
}

/* The row's id: a hash of its key's fields in a fixed encoding (msgpack, s_key's order), not
 * of the struct's bytes, whose layout a build may change: a row keeps its id across the home
 * broker's upgrades and restarts, and a CLAIM for it made before one still resolves. */
static void s_row_id(const cpn_package_t *k, char id[CPN_NAME_MAX])
{
    const char *strs[] = {k->accel.vendor, k->accel.model, k->storage_class, k->region};
    const uint64_t nums[] = {k->cores,           k->mem_bytes,      k->accel.count,
                             k->accel.mem_bytes, k->accel.bf16_tflops, k->accel.mem_bw_gbs,
                             k->storage_bytes,   k->storage_iops,   k->fabric_bps,
                             k->egress_bps,      k->price};
    uint8_t h[8];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        mp_pack_str(&pk, strs[i]);
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    crypto_generichash(h, sizeof h, (const uint8_t *)sb.data, sb.size, NULL, 0);
    msgpack_sbuffer_destroy(&sb);
    int n = snprintf(id, CPN_NAME_MAX, "s");
    for (size_t i = 0; i < sizeof h; i++)
        n += snprintf(id + n, (size_t)(CPN_NAME_MAX - n), "%02x", h[i]);
}

static uint32_t s_add_sat(uint32_t a, uint32_t b, uint32_t max)
{
    return a > max - (b < max ? b : max) ? max : a + b;
}

/* Does package p lower the row's price? The row's price is the lowest among its packages
 * with free units (among all of them while none has any): what a CLAIM for the row can get. */
static bool s_cheaper(const cpn_package_t *row, uint32_t row_free_before, const cpn_package_t *p)
{
    if (p->free && !row_free_before)
        return true;
    return (p->free || !row_free_before) && p->price < row->price;
}

/* Fold package p (grouping key k) into the rows: a row of the same key, or a new one. */
static void s_fold(cpn_ad_t *out, cpn_package_t *keys, const cpn_package_t *p,
                   const cpn_package_t *k, uint32_t *dropped)
{
    const uint32_t max = 1000000; /* a package's `total` bound (PROTOCOL.md §7) */
    for (uint32_t i = 0; i < out->n_packages; i++) {
        if (memcmp(&keys[i], k, sizeof *k) != 0)
            continue;
        cpn_package_t *row = &out->packages[i];
        uint32_t free_before = row->free;
        row->total = s_add_sat(row->total, p->total, max);
        row->free = s_add_sat(row->free, p->free, row->total);
        if (s_cheaper(row, free_before, p))
            row->price = p->price;
        return;
    }
    if (out->n_packages == SUMMARY_ROWS_MAX) {
        if (dropped)
            (*dropped)++;
        return;
    }
    cpn_package_t *row = &out->packages[out->n_packages];
    keys[out->n_packages++] = *k;
    *row = *k;
    row->price = p->price;
    row->total = p->total > max ? max : p->total;
    row->free = p->free > row->total ? row->total : p->free;
    s_row_id(k, row->id);
}

int summary_build(const book_t *book, uint64_t now_ms, cpn_ad_t *out, uint32_t *dropped)
{
    cpn_package_t *keys = calloc(SUMMARY_ROWS_MAX, sizeof *keys);
    out->packages = calloc(SUMMARY_ROWS_MAX, sizeof *out->packages);
    out->n_packages = 0;
    if (dropped)
        *dropped = 0;
    if (!keys || !out->packages) {
        free(keys);
        cpn_ad_clear(out);
        return CPN_E_NOMEM;
    }
    size_t cur = 0;
    const book_peer_t *bp;
    while ((bp = book_next(book, &cur)) != NULL) {
        if (bp->withdrawn || bp->expires_ms <= now_ms || !sodium_is_zero(bp->via, CPN_PK_LEN))
            continue;
        for (uint32_t i = 0; i < bp->n_packages; i++) {
            const cpn_package_t *p = &bp->packages[i];
            if (p->accel.share_min || p->total == 0)
                continue;
            cpn_package_t k;
            s_key(p, &k);
            s_fold(out, keys, p, &k, dropped);
        }
    }
    free(keys);
    if (out->n_packages == 0)
        cpn_ad_clear(out);
    return CPN_OK;
}

uint64_t summary_hash(const cpn_ad_t *s)
{
    crypto_generichash_state st;
    uint8_t h[8];
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    for (uint32_t i = 0; i < s->n_packages; i++) {
        const cpn_package_t *p = &s->packages[i];
        uint64_t v[3] = {p->price, p->total, p->free};
        crypto_generichash_update(&st, (const uint8_t *)p->id, strlen(p->id));
        crypto_generichash_update(&st, (const uint8_t *)v, sizeof v);
    }
    crypto_generichash_final(&st, h, sizeof h);
    uint64_t x;
    memcpy(&x, h, sizeof x);
    return x;
}
