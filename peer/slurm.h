/* slurm.h - what Slurm's commands print, read into structs: a pure core (no processes, no
 * clock, no I/O), so that the slurm driver's shell is thin and every parser is tested on
 * real captured output (tests/data/slurm/).
 *
 * Read here: `scontrol show node -o` and `scontrol show reservation -o` (one record a line,
 * KEY=VALUE words), Slurm host lists ("c[1-3,7],gpu01"), and, from those, what a package of
 * Slurm nodes holds now (slurm_set_count) and which nodes of a reservation are lost.
 * Every limit is a #define below; input beyond one is refused with CPN_E_TOO_BIG and a reason
 * naming it, anything else malformed with CPN_E_INVAL; nothing is partly filled on error.
 */
#ifndef PEER_SLURM_H
#define PEER_SLURM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SLURM_NAME_MAX 64          /* node, partition, feature, GRES, user, account names */
#define SLURM_NODE_PARTS_MAX 16    /* partitions one node belongs to */
#define SLURM_NODE_FEATURES_MAX 32 /* active features of one node */
#define SLURM_NODE_GRES_MAX 8      /* GRES entries of one node ("gpu:h100:8,nic:2") */
#define SLURM_NODES_MAX 65536      /* nodes in one listing, or in one expanded host list */
#define SLURM_LINE_MAX 16384       /* bytes of one record line */
#define SLURM_TEXT_MAX 1024        /* a kept value: host list, users, reason, times */
#define SLURM_WHY_MAX 256          /* a parse error's reason */

/* A node's state: its base state and the flags after it ("IDLE+DRAIN+RESERVED"). */
typedef enum {
    SLURM_BASE_UNKNOWN = 0, /* UNKNOWN, or a base state this code does not know */
    SLURM_BASE_IDLE,
    SLURM_BASE_ALLOCATED,
    SLURM_BASE_MIXED,
    SLURM_BASE_DOWN,
    SLURM_BASE_FUTURE,
    SLURM_BASE_ERROR,
} slurm_base_t;

enum {
    SLURM_F_DRAIN = 1u << 0, /* DRAIN, DRAINING, DRAINED: no new work */
    SLURM_F_RESERVED = 1u << 1,
    SLURM_F_COMPLETING = 1u << 2,
    SLURM_F_NOT_RESPONDING = 1u << 3,
    SLURM_F_FAIL = 1u << 4,
    SLURM_F_MAINT = 1u << 5,
    SLURM_F_POWER = 1u << 6,  /* POWERED_DOWN, POWERING_DOWN, POWERING_UP, POWER_DOWN */
    SLURM_F_REBOOT = 1u << 7, /* REBOOT_REQUESTED, REBOOT_ISSUED */
    SLURM_F_INVALID_REG = 1u << 8,
    SLURM_F_OTHER = 1u << 15, /* a flag this code does not know (kept as text only) */
};

typedef struct {
    char name[SLURM_NAME_MAX]; /* "gpu" */
    char type[SLURM_NAME_MAX]; /* "h100"; "" if the GRES has no type */
    uint32_t count;
} slurm_gres_t;

typedef struct {
    char name[SLURM_NAME_MAX];
    slurm_base_t base;
    uint32_t flags;                 /* SLURM_F_* */
    char state[SLURM_NAME_MAX * 2]; /* as printed, for logs */
    uint32_t cpus;                  /* CPUTot */
    uint64_t memory_mib;            /* RealMemory */
    size_t n_parts;
    char parts[SLURM_NODE_PARTS_MAX][SLURM_NAME_MAX];
    size_t n_features;
    char features[SLURM_NODE_FEATURES_MAX][SLURM_NAME_MAX]; /* ActiveFeatures */
    size_t n_gres;
    slurm_gres_t gres[SLURM_NODE_GRES_MAX];
    char reason[SLURM_TEXT_MAX]; /* Reason=, "" if none */
} slurm_node_t;

typedef struct {
    char name[SLURM_NAME_MAX];
    char start[32]; /* "2026-12-04T19:26:31", Slurm's local time, as printed */
    char end[32];
    char nodes[SLURM_TEXT_MAX]; /* host list, "" for (null) */
    uint32_t node_cnt;
    char partition[SLURM_NAME_MAX]; /* "" for (null) */
    char features[SLURM_NAME_MAX];
    char users[SLURM_TEXT_MAX];
    char accounts[SLURM_TEXT_MAX];
    char flags[SLURM_TEXT_MAX];
    char state[16]; /* ACTIVE, INACTIVE */
} slurm_resv_t;

/* Parse `scontrol show node -o` output (len bytes, need not end in NUL). On CPN_OK *out is
 * a malloc'd array of *n nodes (the caller frees it; NULL when there are none). On error
 * nothing is returned and `why` (SLURM_WHY_MAX bytes) names the line and the problem. */
int slurm_nodes_parse(const char *text, size_t len, slurm_node_t **out, size_t *n,
                      char why[SLURM_WHY_MAX]) CPN_WUR;

/* Parse `scontrol show reservation -o` output, as slurm_nodes_parse; "No reservations in the
 * system" is an empty list. */
int slurm_resvs_parse(const char *text, size_t len, slurm_resv_t **out, size_t *n,
                      char why[SLURM_WHY_MAX]) CPN_WUR;

/* Expand a Slurm host list ("c[1-3,07-08],login") into at most `cap` names written to
 * names[] (each SLURM_NAME_MAX bytes); *n gets the count. Zero-padded ranges keep their
 * width. One bracket group per name; nested or several groups are refused (CPN_E_INVAL),
 * more than `cap` names too (CPN_E_TOO_BIG). "" and "(null)" are empty lists. */
int slurm_hostlist_expand(const char *list, char (*names)[SLURM_NAME_MAX], size_t cap,
                          size_t *n) CPN_WUR;

/* Base state name: "IDLE", ...; never NULL. */
const char *slurm_base_name(slurm_base_t b);

/* May new work run on this node: base IDLE, ALLOCATED or MIXED and none of DRAIN, FAIL,
 * NOT_RESPONDING, MAINT, POWER, REBOOT, INVALID_REG. DOWN, FUTURE, ERROR and UNKNOWN are not. */
bool slurm_node_usable(const slurm_node_t *node);

/* Which Slurm nodes make one package: all of the given selectors must hold (an empty one
 * holds for every node). One unit of the package is one node. */
typedef struct {
    char partition[SLURM_NAME_MAX]; /* the node is in this partition */
    char feature[SLURM_NAME_MAX];   /* the node has this active feature */
    char gres[SLURM_NAME_MAX];      /* the node has a GRES of this type ("h100"), count > 0 */
    uint32_t gres_min;              /* ... with at least this many (0: any count) */
} slurm_set_t;

bool slurm_set_has(const slurm_set_t *set, const slurm_node_t *node);

/* The reservation prefix of cpn's leases: a lease L becomes reservation "cpn-L". */
#define SLURM_RESV_PREFIX "cpn-"

/* What the package `set` holds now: *units = its nodes that are usable and either in a
 * reservation of cpn (one of resvs[] whose name starts SLURM_RESV_PREFIX: they are the
 * leases' units) or idle and reserved by nobody. Nodes busy with the cluster's own jobs or
 * reservations are not for sale. CPN_E_INVAL/CPN_E_TOO_BIG for a host list of a cpn
 * reservation that does not expand. */
int slurm_set_count(const slurm_set_t *set, const slurm_node_t *nodes, size_t n_nodes,
                    const slurm_resv_t *resvs, size_t n_resvs, uint32_t *units) CPN_WUR;

/* How many nodes of reservation `resv` are not usable now (down, drained, gone from the
 * listing): the capacity a lease lost. CPN_E_INVAL/CPN_E_TOO_BIG for a host list that does
 * not expand. */
int slurm_resv_lost(const slurm_resv_t *resv, const slurm_node_t *nodes, size_t n_nodes,
                    uint32_t *lost) CPN_WUR;

/* Find a reservation by name in a list; NULL if absent. */
const slurm_resv_t *slurm_resv_find(const slurm_resv_t *resvs, size_t n, const char *name);

#endif
