/* resource.h - the resource model: packages a peer sells and requests a tenant makes.
 *
 * A package bundles compute (cores, memory, accelerators), storage and network as one unit;
 * a peer has `total` identical units of it. Prices are integers: thousandths of a currency
 * unit per unit-hour. Requests hold hard constraints per unit (all must hold) and
 * preferences (only rank). Both travel as msgpack maps (docs/PROTOCOL.md) and are written
 * in YAML with units (docs/POLICY.md).
 */
#ifndef CPN_RESOURCE_H
#define CPN_RESOURCE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "hints.h"
#include "mp.h"

#define CPN_NAME_MAX 64    /* ids, models, vendors, regions: at most 63 bytes */
/* A CLAIM's `alts`: package ids joined by ',' (so an id with a ',' is never one), at most
 * CPN_ALTS_LEN - 1 bytes: the broker names fewer alternatives rather than cut one. */
#define CPN_ALTS_LEN 1024
#define CPN_CLASS_MAX 16   /* storage class */
#define CPN_LIST_MAX 8     /* regions or vendors in one list */
#define CPN_PACKAGES_MAX 256 /* packages in one AD */
/* An AD's ttl_s: a peer refreshes at most hourly and its ads live 3 refreshes (3 h); a day is
 * the most any offer may outlive its peer's silence. */
#define CPN_AD_TTL_MIN_S 1
#define CPN_AD_TTL_MAX_S 86400

typedef struct {
    char vendor[CPN_NAME_MAX]; /* "nvidia", "huawei"; lower case */
    char model[CPN_NAME_MAX];  /* "H100-80GB", "Ascend-910B" */
    uint32_t count;            /* accelerators per unit; 0 = none */
    uint64_t mem_bytes;        /* memory per accelerator */
    uint32_t bf16_tflops;      /* dense BF16 TFLOPS per accelerator */
    uint32_t mem_bw_gbs;       /* memory bandwidth per accelerator, GB/s */
    /* Shared accelerators (issue 16): the smallest slice sold, in thousandths of one
     * accelerator (CPN_SHARE_WHOLE = whole devices only, but still placed per device); 0 = not
     * shared: the package sells whole units, as before. A shared package sells slices only. */
    uint32_t share_min;
} cpn_accel_t;

#define CPN_SHARE_WHOLE 1000  /* thousandths: one whole accelerator */
#define CPN_SHARE_DEVS_MAX 8  /* accelerators per unit of a shared package (one node) */
#define CPN_SHARE_UNITS_MAX 4096 /* units of one shared package: the peer scores every node
                                    for every slice it places */

/* A fit point of a shared package's summary: some node of the package has, free at once,
 * room for `accel` (thousandths of accelerators on that node: below CPN_SHARE_WHOLE a fraction
 * of one device with that much free; k * CPN_SHARE_WHOLE, k whole free devices) with `cpu`
 * thousandths of a core and `mem` MiB beside it. Points are lower bounds taken from real
 * nodes: a slice that a point covers fitted when the AD was made; one no point covers may
 * still fit (slice_max bounds it from above). */
typedef struct {
    uint32_t accel;
    uint32_t cpu;
    uint32_t mem;
} cpn_fit_t;
#define CPN_FIT_MAX 8 /* fit points in one package's summary (at most 8 x 17 bytes on the wire) */

/* A gradient of a shared package's summary: the least growth of the peer's fragmentation
 * measure F(M) (Weng et al., ATC'23; in thousandths of an accelerator, negative when the
 * slice fills capacity the workload could not use) that placing a slice of `accel` (as in
 * cpn_fit_t) causes on any node of the package, for the slices its workload asks most. */
typedef struct {
    uint32_t accel;
    int32_t delta;
} cpn_grad_t;
#define CPN_GRAD_MAX 8 /* gradients in one package's summary (at most 8 x 9 bytes on the wire) */

typedef struct {
    char id[CPN_NAME_MAX]; /* package name, unique within a peer */
    uint32_t cores;
    uint64_t mem_bytes;
    cpn_accel_t accel;
    char storage_class[CPN_CLASS_MAX]; /* "nvme", "ssd", "hdd", "" for none */
    uint64_t storage_bytes;
    uint32_t storage_iops;
    uint64_t fabric_bps; /* accelerator fabric (InfiniBand/RoCE) */
    uint64_t egress_bps;
    char region[CPN_NAME_MAX];
    uint64_t price; /* per unit-hour, thousandths */
    uint32_t total; /* units the peer has */
    uint32_t free;  /* units free now; of a shared package: units with a free slice */
    /* The compact fragmentation summary of a shared package (0 otherwise), set by the peer:
     * the largest free share of one accelerator now (thousandths), and the share of its free
     * accelerator capacity its workload cannot use (permille; Weng et al., ATC'23). */
    uint32_t slice_max;
    uint32_t frag;
    /* ... and where a slice fits with its CPU and memory: n_fit points, sorted by (accel,
     * cpu, mem) descending, none equal. */
    uint32_t n_fit;
    cpn_fit_t fit[CPN_FIT_MAX];
    /* ... and what a slice of each common size would cost in fragmentation: n_grad
     * gradients, sorted by accel ascending, distinct. */
    uint32_t n_grad;
    cpn_grad_t grad[CPN_GRAD_MAX];
    /* A broker's note, never on the wire (zero in a decoded AD): the slice the peer last
     * refused for want of units (accel 0: none). Until the next AD, no slice at least as
     * large in share, CPU and memory is offered: the package's slice bound, lowered. */
    cpn_fit_t refused;
} cpn_package_t;

typedef struct {
    char items[CPN_LIST_MAX][CPN_NAME_MAX];
    uint32_t n;
} cpn_namelist_t;

typedef struct {
    char id[CPN_NAME_MAX]; /* tenant-chosen; (tenant, id) is the idempotency key */
    uint32_t units;        /* >= 1 */
    bool split;            /* units may come from several peers */
    bool progress;         /* the tenant wants STATUS progress notes (each costs a signature) */
    uint64_t duration_s;   /* lease length asked for, > 0 */
    /* hard constraints, each per unit; zero / empty = no constraint */
    char accel_model[CPN_NAME_MAX];  /* by name (policy equivalences apply) */
    char accel_vendor[CPN_NAME_MAX];
    uint32_t accel_count;    /* at least this many accelerators */
    uint64_t min_tflops;     /* at least this total dense BF16 TFLOPS */
    uint64_t min_accel_mem;  /* at least this total accelerator memory, bytes */
    /* A slice of shared accelerators: thousandths of one accelerator (1..999: a fraction of
     * one device; CPN_SHARE_WHOLE: accel_count (>= 1) whole devices of one unit); 0 = whole
     * units as before. A slice request asks for one slice (units 1, not split) and is served
     * by shared packages only. */
    uint32_t share;
    uint32_t cores;
    uint64_t mem_bytes;
    char storage_class[CPN_CLASS_MAX];
    uint64_t storage_bytes;
    uint64_t fabric_bps;
    uint64_t egress_bps;
    cpn_namelist_t regions;  /* allowed regions (data residency); empty = any */
    uint64_t max_price;      /* per unit-hour, thousandths; 0 = no ceiling */
    uint64_t max_cost;       /* the whole lease's cost (units x price x duration), thousandths;
                                0 = no ceiling */
    /* preferences */
    cpn_namelist_t prefer_regions;
    cpn_namelist_t prefer_vendors;
    /* what the tenant wants when the peer loses the capacity under the lease (a NOTICE):
     * "" = the lease ends; "rematch" = its broker places the rest of it elsewhere */
    char on_failure[16];
    /* for the peer's driver, not for matching; last, so matching code can stop before it */
    cpn_hints_t access;      /* access hints (hints.h); n = 0: none */
} cpn_request_t;

#define CPN_ON_FAILURE_REMATCH "rematch"

/* Totals per unit. */
uint64_t cpn_package_tflops(const cpn_package_t *p);
uint64_t cpn_package_accel_mem(const cpn_package_t *p);

/* Validation (bounds and consistency): CPN_E_CONFIG with *why set to a static reason. */
int cpn_package_validate(const cpn_package_t *p, const char **why) CPN_WUR;
int cpn_request_validate(const cpn_request_t *r, const char **why) CPN_WUR;

/* msgpack forms: a map per docs/PROTOCOL.md. Decoding is strict (mp_decode_map). */
int cpn_package_pack(msgpack_packer *pk, const cpn_package_t *p) CPN_WUR;
int cpn_package_unpack(const msgpack_object *obj, cpn_package_t *p) CPN_WUR;
int cpn_request_pack(msgpack_packer *pk, const cpn_request_t *r) CPN_WUR;
int cpn_request_unpack(const msgpack_object *obj, cpn_request_t *r) CPN_WUR;
/* REQUEST's keys on the wire, in encoding order (the list keys, kind MPF_OBJ, last): the
 * schema of the one message type whose body is not declared in msg_schema.def, for the test
 * that checks docs/PROTOCOL.md against it. Static; *n set to the count. */
const mp_field_t *cpn_request_fields(size_t *n);

/* Does package p satisfy every hard constraint of r, with p->free units for it (1 if
 * r->split)? Returns CPN_C_OK if yes, else the first failing constraint in enum order (see
 * cpn_constraint_name). Pure. Model, vendor, storage class and region compare literally,
 * ignoring case: policy equivalences ("H800 serves H100") are the matcher's business, which
 * checks the name itself and calls this with accel_model cleared in a copy of r. */
typedef enum {
    CPN_C_OK = 0,
    CPN_C_ACCEL_MODEL,
    CPN_C_ACCEL_VENDOR,
    CPN_C_ACCEL_COUNT,
    CPN_C_TFLOPS,
    CPN_C_ACCEL_MEM,
    CPN_C_CORES,
    CPN_C_MEMORY,
    CPN_C_STORAGE_CLASS,
    CPN_C_STORAGE_SIZE,
    CPN_C_FABRIC,
    CPN_C_EGRESS,
    CPN_C_REGION,
    CPN_C_PRICE,
    CPN_C_SHARE, /* slice asked of an unshared package, or no free slice that large */
    CPN_C_UNITS,
    CPN_C__COUNT
} cpn_constraint_t;
const char *cpn_constraint_name(cpn_constraint_t c); /* "accelerator.model", ... */
cpn_constraint_t cpn_package_fits(const cpn_package_t *p, const cpn_request_t *r);

/* A slice request's ask in fit-point terms (cpn_fit_t); accel 0 if r asks for no slice. */
cpn_fit_t cpn_slice_ask(const cpn_request_t *r);
/* The gradient p advertises for slice request r's size: true and *delta if it has one. */
bool cpn_package_grad(const cpn_package_t *p, const cpn_request_t *r, int32_t *delta);
/* Does a fit point of shared package p cover slice request r (r surely fitted at the AD)? */
bool cpn_package_fit_covers(const cpn_package_t *p, const cpn_request_t *r);
/* Is a slice of r's size open on shared package p: share within slice_max and not at least
 * as large as the slice last refused there (refused)? */
bool cpn_package_slice_open(const cpn_package_t *p, const cpn_request_t *r);
/* The peer refused slice request r on p for want of units: until the next AD, p offers no
 * slice at least as large as r in share, CPU and memory (p->refused) and no point covers r. */
void cpn_package_slice_refused(cpn_package_t *p, const cpn_request_t *r);

#endif
