/* fuzz_claim.c - libFuzzer target for the peer's handling of what a broker sends it
 * (peer/lease.h): a CLAIM from the frame to the decision (envelope, broker key, signature,
 * replay guard, the embedded REQUEST and its signature, the idempotency lookup, the grant
 * checks, the reservation and the store), and RENEW / RELEASE of the leases it made.
 *
 * The input is up to S_PARTS specs (seal.h) separated by S_SEP, each sealed with fixed keys and
 * handled in a batch of its own on broker connection 0, whose key is seal.h's FZ_BROKER_A; the
 * peer is FZ_PEER and accepts the tenant FZ_TENANT only. Each input starts from an empty store
 * (an in-memory database the harness empties through a connection of its own) and an empty
 * inventory, so a finding replays from its input alone. The handler itself lives across
 * inputs: its replay guards are megabytes to allocate, and sealed frames' sequence numbers
 * only rise.
 *
 * After every batch: each reply is a frame the peer signed, a LEASE, NACK or RESEND; no
 * package has more units in use than it has; the units in use equal those the store's active
 * leases hold.
 *
 *   scripts/fuzz claim 60
 * fuzz-sources: peer/lease.c peer/grant.c peer/inventory.c peer/store.c peer/sender.c
 * fuzz-sources: peer/peer_config.c common/transport.c
 * fuzz-sources: peer/driver.c peer/driver_exec.c peer/provision.c peer/runner.c
 * fuzz-sources: peer/driver_slurm.c peer/slurm.c peer/slurm_cmd.c peer/notice_store.c
 * fuzz-sources: peer/devices.c peer/fgd.c peer/meter.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "lease.h"
#include "log.h"

#include <sqlite3.h>

#define S_SEP "FZ//"
#define S_PARTS 8

static const char s_config[] =
    "name: fuzz-peer\n"
    "key: peer.key\n"
    "database: peer.db\n"
    "region: cn-east\n"
    "max_lease: 1d\n"
    "brokers:\n"
    "  - endpoint: tcp://127.0.0.1:7400\n"
    "    key: broker.pub\n"
    "    curve: false\n"
    "tenants:\n"
    "  - acme.pub\n"
    "packages:\n"
    "  - id: gpu\n"
    "    count: 4\n"
    "    price: \"10.0\"\n"
    "    floor: \"5.0\"\n"
    "    cores: 96\n"
    "    accelerators: {vendor: nvidia, model: H100-80GB, count: 8, memory: 80GiB,\n"
    "                   bf16_tflops: 989, memory_bandwidth: 3350GB/s}\n"
    "  - id: cpu\n"
    "    count: 2\n"
    "    price: \"1.0\"\n"
    "    cores: 64\n";

/* The peer's store and the harness's own connection to it (shared cache, in memory). */
#define S_DB "file:cpn-fuzz-claim?mode=memory&cache=shared"

static peer_config_t *s_cfg;
static peer_batch_t s_batch;
static sqlite3 *s_db;
static peer_store_t *s_store;
static peer_sender_t s_sender;
static peer_inventory_t *s_inv;
static peer_lease_t *s_lease;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128];
    (void)argc;
    (void)argv;
    fz_dir_init();
    cpn_log_set_level(CPN_LOG_ERROR); /* every refusal logs a warning */
    fz_write_input((const uint8_t *)s_config, sizeof s_config - 1, path, sizeof path);
    yconf_t *doc = NULL;
    if (peer_config_load(path, &s_cfg, &doc) != CPN_OK) {
        yconf_print_errors(doc, stderr);
        abort();
    }
    yconf_destroy(&doc);
    const cpn_identity_t *id = fz_key(FZ_PEER);
    if (sqlite3_config(SQLITE_CONFIG_URI, 1) != SQLITE_OK ||
        sqlite3_open_v2(S_DB, &s_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                        NULL) != SQLITE_OK ||
        peer_store_open(S_DB, &s_store) != CPN_OK ||
        peer_sender_init(&s_sender, id, s_store) != CPN_OK ||
        !(s_inv = peer_inventory_new(s_cfg->packages, s_cfg->floors, s_cfg->n_packages)) ||
        !(s_lease = peer_lease_new(s_cfg, id, s_inv, s_store, &s_sender)))
        abort();
    return 0;
}

/* What the peer answers: frames it signed, LEASEs, NACKs and RESENDs (a stored LEASE sent
 * again for a retried CLAIM) only; a reply marked as a new LEASE (turned into a NACK should
 * the commit fail) is one. */
static void s_check_replies(const peer_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const peer_reply_t *rep = &b->replies[i];
        cpn_env_t env;
        if (!rep->frame)
            continue; /* a NACK that could not be built is not sent */
        if (cpn_env_open(rep->frame, rep->len, NULL, &env) != CPN_OK ||
            memcmp(env.from, cpn_identity_pk(fz_key(FZ_PEER)), CPN_PK_LEN) != 0 ||
            (env.type != CPN_MSG_LEASE && env.type != CPN_MSG_NACK && env.type != CPN_MSG_RESEND) ||
            (rep->lease && env.type != CPN_MSG_LEASE) || rep->broker != 0) {
            fprintf(stderr, "reply %zu: %s, lease %d, broker %zu\n", i, cpn_msg_name(env.type),
                    rep->lease, rep->broker);
            abort();
        }
    }
}

/* The inventory never gives more than it has, and agrees with the store. */
static void s_check_units(peer_lease_t *lease, peer_inventory_t *inv)
{
    uint64_t used[8];
    size_t n = peer_inventory_count(inv);
    if (n > 8)
        abort();
    for (size_t i = 0; i < n; i++) {
        used[i] = peer_inventory_used(inv, i);
        if (used[i] > peer_inventory_get(inv, i)->total)
            abort();
    }
    if (peer_lease_recount(lease) != CPN_OK)
        abort();
    for (size_t i = 0; i < n; i++)
        if (peer_inventory_used(inv, i) != used[i])
            abort();
}

static void s_one(peer_lease_t *lease, peer_inventory_t *inv, const uint8_t *spec, size_t len,
                  bool raw_too)
{
    uint8_t *frame = NULL;
    size_t flen = 0;
    peer_lease_batch_begin(lease, &s_batch);
    if (raw_too)
        peer_lease_handle(lease, &s_batch, 0, spec, len);
    if (fz_seal(spec, len, &frame, &flen) == CPN_OK)
        peer_lease_handle(lease, &s_batch, 0, frame, flen);
    free(frame);
    (void)peer_lease_batch_end(lease, &s_batch);
    s_check_replies(&s_batch);
    peer_batch_clear(&s_batch);
    s_check_units(lease, inv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A fresh start: no leases (store.h's tables), nothing in use. */
    if (sqlite3_exec(s_db, "DELETE FROM leases; DELETE FROM meta;", NULL, NULL, NULL) != SQLITE_OK)
        abort();
    peer_inventory_clear(s_inv);
    const uint8_t *p = data, *end = data + size;
    for (int part = 0; part < S_PARTS && p <= end; part++) {
        const uint8_t *sep = NULL;
        for (const uint8_t *q = p; q + 4 <= end && !sep; q++)
            if (memcmp(q, S_SEP, 4) == 0)
                sep = q;
        size_t len = (size_t)((sep ? sep : end) - p);
        s_one(s_lease, s_inv, p, len, part == 0);
        if (!sep)
            break;
        p = sep + 4;
    }
    return 0;
}
