/* peer_config.h - peer.yaml: who the peer is, what it sells, whom it talks to and accepts.
 *
 * Keys (docs/POLICY.md, section "cpn-peer configuration"): name, key, database, region,
 * refresh, max_lease, log_level, http, brokers[] {endpoint, key, curve}, tenants (any | list of
 * keys), packages[] (the resource model's package keys, plus `floor`), provision
 * {drivers[], packages} (docs/PROVISIONING.md), workload[] {share, count, cores, memory,
 * weight}. Relative paths (key, database, and key files named in brokers/tenants) are
 * relative to the directory of the configuration file, so a configuration and its files can
 * be moved together.
 */
#ifndef PEER_PEER_CONFIG_H
#define PEER_PEER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"
#include "err.h"
#include "fgd.h"
#include "hostport.h"
#include "identity.h"
#include "msg.h"
#include "resource.h"
#include "yconf.h"

#define PEER_PATH_MAX 4096
#define PEER_BROKERS_MAX 16   /* brokers one peer advertises to */
#define PEER_TENANTS_MAX 4096 /* keys in an explicit tenants list */
#define PEER_REFRESH_MIN_S 1
#define PEER_REFRESH_MAX_S 3600
#define PEER_REFRESH_DEFAULT_S 10
#define PEER_MAX_LEASE_DEFAULT_S (7u * 24u * 3600u)
#define PEER_MAX_LEASE_MAX_S (366u * 24u * 3600u)
/* A CLAIM's embedded REQUEST must be signed within this of now (either way): the broker's
 * whole try (skew 30 s + batch wait + claim_tries x claim_timeout) fits well inside it. */
#define PEER_REQUEST_AGE_DEFAULT_S 300u
#define PEER_REQUEST_AGE_MIN_S 10u
#define PEER_REQUEST_AGE_MAX_S (24u * 3600u)

/* The `provision:` section (docs/PROVISIONING.md): drivers, and which package uses which. */
#define PEER_DRIVERS_MAX 16
#define PEER_DRIVER_TIMEOUT_DEFAULT_S 30
#define PEER_DRIVER_CONCURRENCY_DEFAULT 4
#define PEER_DRIVER_RETRIES_DEFAULT 3
#define PEER_DRIVER_BACKOFF_DEFAULT_S 1

/* The `workload:` list: the federation's workload mix, which every shared package's
 * fragmentation is measured against (FGD's M, peer/devices.h) instead of the mix the peer
 * learns from its own slices. Absent: learnt, as before. */
#define PEER_WORKLOAD_MAX FGD_CLASSES_MAX     /* classes in the list (fgd.h) */
#define PEER_WORKLOAD_ASKS_MAX FGD_GROUPS_MAX /* distinct (share, count) among them */
#define PEER_WORKLOAD_WEIGHT_MAX 1e9          /* a class's weight: above 0, at most this */

typedef struct {
    char endpoint[CPN_ENDPOINT_MAX]; /* "tcp://host:port" */
    uint8_t key[CPN_PK_LEN];         /* the broker's Ed25519 key: it must sign its CLAIMs */
    bool curve;                      /* CURVE-encrypt the link (server key = `key`) */
} peer_broker_cfg_t;

typedef struct {
    char path[PEER_PATH_MAX]; /* the configuration file, as given */
    char name[CPN_NAME_MAX];
    char key_path[PEER_PATH_MAX]; /* resolved against the config's directory */
    char database[PEER_PATH_MAX]; /* resolved likewise */
    char region[CPN_NAME_MAX];    /* default region of packages that name none */
    char log_level[16];           /* "" = leave the default */
    char http[CPN_HTTP_ADDR_MAX]; /* metrics listener, "PORT" or "IPV4:PORT"; "" = off */
    uint64_t refresh_s;           /* AD every refresh; ttl = 3 * refresh */
    uint64_t usage_interval_s;    /* a USAGE record per running lease this often (meter.h) */
    uint64_t max_lease_s;         /* longest lease, renewals included */
    uint64_t request_age_s;       /* oldest embedded REQUEST a CLAIM may carry */
    size_t n_brokers;
    peer_broker_cfg_t brokers[PEER_BROKERS_MAX];
    bool tenants_any;
    size_t n_tenants;
    uint8_t (*tenants)[CPN_PK_LEN]; /* malloc'd */
    size_t n_packages;
    cpn_package_t *packages; /* malloc'd; total set, free = total */
    uint64_t *floors;        /* malloc'd; per package, thousandths per unit-hour */
    size_t n_drivers;
    drv_config_t *drivers;   /* malloc'd, n_drivers */
    int *pkg_driver;         /* malloc'd; per package: index in drivers, or -1 (no driver) */
    size_t n_workload;       /* classes of `workload`; 0 = learn the mix from the slices */
    fgd_task_t *workload;    /* malloc'd, n_workload: each class's ask as a slice's (CPU in
                                thousandths of a core, memory in MiB rounded up) */
    double *workload_weight; /* malloc'd, n_workload: the weights as written */
} peer_config_t;

/* Load and validate. On CPN_OK *out is the caller's. On failure *out is NULL and, if
 * *doc_out is not NULL, it holds every error found (yconf_print_errors); the caller
 * destroys it. A file that cannot be read is reported in *doc_out when possible. */
int peer_config_load(const char *path, peer_config_t **out, yconf_t **doc_out) CPN_WUR;
void peer_config_destroy(peer_config_t **self_p);

/* The index of the driver named `name`, or -1. */
int peer_config_driver(const peer_config_t *self, const char *name);

/* Is this tenant key accepted? */
bool peer_config_tenant_ok(const peer_config_t *self, const uint8_t pk[CPN_PK_LEN]);

#endif
