/* fuzz_peer_config.c - libFuzzer target for the peer's configuration loader
 * (peer/peer_config.c): any bytes as peer.yaml, through yconf, the binders of brokers,
 * tenants and packages, and the key files they name (files.h makes those of conf/).
 *
 * A loaded configuration must hold what it promises: brokers and tenants within their
 * limits, every package valid with its floor, accepted tenants found by key, every class of
 * a workload mix a valid ask with a weight in bounds.
 *
 *   scripts/fuzz peer_config 60
 * fuzz-sources: peer/peer_config.c peer/driver.c peer/driver_exec.c
 * fuzz-sources: peer/driver_slurm.c peer/slurm.c peer/slurm_cmd.c
 * fuzz-sources: peer/devices.c peer/fgd.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "files.h"
#include "peer_config.h"

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_dir_init();
    s_null = fopen("/dev/null", "w");
    return 0;
}

static void s_check(const peer_config_t *cfg)
{
    if (cfg->n_brokers == 0 || cfg->n_brokers > PEER_BROKERS_MAX ||
        cfg->n_tenants > PEER_TENANTS_MAX || !cfg->name[0] || !cfg->key_path[0] ||
        !cfg->database[0] || cfg->refresh_s < PEER_REFRESH_MIN_S ||
        cfg->refresh_s > PEER_REFRESH_MAX_S || cfg->max_lease_s > PEER_MAX_LEASE_MAX_S)
        abort();
    for (size_t i = 0; i < cfg->n_tenants; i++)
        if (!peer_config_tenant_ok(cfg, cfg->tenants[i]))
            abort();
    (void)peer_config_tenant_ok(cfg, cpn_identity_pk(fz_key(FZ_TENANT)));
    for (size_t i = 0; i < cfg->n_packages; i++)
        if (!cfg->packages[i].id[0] || cfg->packages[i].free != cfg->packages[i].total)
            abort();
    if (cfg->n_workload > PEER_WORKLOAD_MAX)
        abort();
    for (size_t i = 0; i < cfg->n_workload; i++)
        if (!fgd_task_valid(&cfg->workload[i]) || !(cfg->workload_weight[i] > 0) ||
            cfg->workload_weight[i] > PEER_WORKLOAD_WEIGHT_MAX)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    peer_config_t *cfg = NULL;
    yconf_t *doc = NULL;
    fz_write_input(data, size, path, sizeof path);
    int r = peer_config_load(path, &cfg, &doc);
    if (r == CPN_OK) {
        if (!cfg || (doc && yconf_error_count(doc) != 0))
            abort();
        s_check(cfg);
    } else if (cfg || (r == CPN_E_CONFIG && doc && yconf_error_count(doc) == 0)) {
        abort(); /* refused without saying why */
    }
    if (doc && s_null)
        yconf_print_errors(doc, s_null);
    yconf_destroy(&doc);
    peer_config_destroy(&cfg);
    return 0;
}
