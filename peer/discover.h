/* discover.h - `cpn-peer --discover`: what this host has, as a YAML package skeleton an
 * operator edits into peer.yaml. Cores from sysconf, memory from /proc/meminfo, disks from
 * /sys/block (non-removable, with their size), NVIDIA GPUs from nvidia-smi when present.
 * The parsers are separate and pure so tests can feed them text.
 */
#ifndef PEER_DISCOVER_H
#define PEER_DISCOVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "resource.h"

#define DISCOVER_GPU_KINDS 8 /* distinct GPU models reported */

typedef struct {
    char model[CPN_NAME_MAX]; /* "H100-80GB-HBM3" (spaces to dashes, vendor prefix dropped) */
    uint32_t count;
    uint64_t mem_bytes;
} discover_gpu_t;

typedef struct {
    uint32_t cores;
    uint64_t mem_bytes;
    uint64_t nvme_bytes, ssd_bytes, hdd_bytes; /* sums over non-removable disks */
    size_t n_gpu_kinds;
    discover_gpu_t gpus[DISCOVER_GPU_KINDS];
} discover_host_t;

/* "MemTotal:  65843212 kB" -> bytes; CPN_E_INVAL if the line is not there. */
int discover_parse_meminfo(const char *text, uint64_t *bytes) CPN_WUR;
/* Lines of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`
 * ("NVIDIA H100 80GB HBM3, 81559"), one per GPU; identical models are counted together. */
void discover_parse_nvidia(const char *text, discover_host_t *host);
/* Dense BF16 TFLOPS per accelerator for well-known models (0 if unknown). */
uint32_t discover_bf16_tflops(const char *model);

/* Look at this host. Never fails: what cannot be read is left zero. */
void discover_host(discover_host_t *host);
/* Print the skeleton. */
void discover_print(const discover_host_t *host, const char *hostname, FILE *out);

#endif
