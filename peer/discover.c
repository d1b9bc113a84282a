/* discover.c - inspect the host and print a package skeleton. */
#include "discover.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define S_READ_MAX 65536 /* bytes read from one /proc or /sys file or from nvidia-smi */

int discover_parse_meminfo(const char *text, uint64_t *bytes)
{
    const char *p = strstr(text, "MemTotal:");
    if (!p)
        return CPN_E_INVAL;
    p += strlen("MemTotal:");
    while (*p == ' ' || *p == '\t')
        p++;
    if (!isdigit((unsigned char)*p))
        return CPN_E_INVAL;
    char *end = NULL;
    unsigned long long kb = strtoull(p, &end, 10);
    if (kb > UINT64_MAX / 1024)
        return CPN_E_INVAL;
    *bytes = (uint64_t)kb * 1024u;
    return CPN_OK;
}

/* "NVIDIA H100 80GB HBM3" -> "H100-80GB-HBM3". */
static void s_model(const char *name, size_t len, char out[CPN_NAME_MAX])
{
    while (len && isspace((unsigned char)*name)) {
        name++;
        len--;
    }
    if (len >= 7 && strncasecmp(name, "NVIDIA ", 7) == 0) {
        name += 7;
        len -= 7;
    }
    while (len && isspace((unsigned char)name[len - 1]))
        len--;
    size_t k = 0;
    for (size_t i = 0; i < len && k < CPN_NAME_MAX - 1; i++) {
        unsigned char c = (unsigned char)name[i];
        out[k++] = isspace(c) ? '-' : isgraph(c) ? (char)c : '_';
    }
    out[k] = '\0';
}

void discover_parse_nvidia(const char *text, discover_host_t *host)
{
    const char *line = text;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *comma = memchr(line, ',', len);
        if (comma) {
            char model[CPN_NAME_MAX];
            s_model(line, (size_t)(comma - line), model);
            char num[32];
            size_t nlen = len - (size_t)(comma + 1 - line);
            if (nlen >= sizeof num)
                nlen = sizeof num - 1;
            memcpy(num, comma + 1, nlen);
            num[nlen] = '\0';
            uint64_t mib = strtoull(num, NULL, 10);
            size_t i = 0;
            while (i < host->n_gpu_kinds && strcmp(host->gpus[i].model, model) != 0)
                i++;
            if (model[0] && i == host->n_gpu_kinds && i < DISCOVER_GPU_KINDS) {
                memset(&host->gpus[i], 0, sizeof host->gpus[i]);
                memcpy(host->gpus[i].model, model, sizeof model);
                host->gpus[i].mem_bytes = mib * 1024u * 1024u;
                host->n_gpu_kinds++;
            }
            if (model[0] && i < host->n_gpu_kinds)
                host->gpus[i].count++;
        }
        line = nl ? nl + 1 : NULL;
    }
}

uint32_t discover_bf16_tflops(const char *model)
{
    /* Dense (no sparsity) BF16 tensor TFLOPS from the vendors' data sheets. */
    static const struct {
        const char *prefix;
        uint32_t tflops;
    } known[] = {
        {"H200", 989}, {"H100", 989}, {"H800", 989},  {"H20", 148},   {"A100", 312},
        {"A800", 312}, {"L40S", 362}, {"L40", 181},   {"L4", 121},    {"A40", 150},
        {"A30", 165},  {"A10", 125},  {"B200", 2250}, {"GH200", 989},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strncasecmp(model, known[i].prefix, strlen(known[i].prefix)) == 0)
            return known[i].tflops;
    return 0;
}

static size_t s_read(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static void s_disks(discover_host_t *host)
{
    DIR *d = opendir("/sys/block");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        char path[512], buf[64];
        /* Virtual and optical devices are not storage to sell. */
        if (n[0] == '.' || strncmp(n, "loop", 4) == 0 || strncmp(n, "ram", 3) == 0 ||
            strncmp(n, "zram", 4) == 0 || strncmp(n, "dm-", 3) == 0 || strncmp(n, "sr", 2) == 0 ||
            strncmp(n, "md", 2) == 0 || strncmp(n, "nbd", 3) == 0)
            continue;
        snprintf(path, sizeof path, "/sys/block/%s/removable", n);
        if (!s_read(path, buf, sizeof buf) || buf[0] != '0')
            continue;
        snprintf(path, sizeof path, "/sys/block/%s/size", n);
        if (!s_read(path, buf, sizeof buf))
            continue;
        uint64_t bytes = strtoull(buf, NULL, 10) * 512u; /* always 512-byte sectors */
        if (bytes == 0)
            continue;
        snprintf(path, sizeof path, "/sys/block/%s/queue/rotational", n);
        bool rotational = s_read(path, buf, sizeof buf) && buf[0] == '1';
        if (strncmp(n, "nvme", 4) == 0)
            host->nvme_bytes += bytes;
        else if (rotational)
            host->hdd_bytes += bytes;
        else
            host->ssd_bytes += bytes;
    }
    closedir(d);
}

static void s_gpus(discover_host_t *host)
{
    /* nvidia-smi absent: the shell says so on stderr, which we silence; no GPUs then. */
    FILE *p = popen("nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits "
                    "2>/dev/null",
                    "r");
    if (!p)
        return;
    char *buf = malloc(S_READ_MAX);
    if (buf) {
        size_t n = fread(buf, 1, S_READ_MAX - 1, p);
        buf[n] = '\0';
        discover_parse_nvidia(buf, host);
        free(buf);
    }
    pclose(p);
}

void discover_host(discover_host_t *host)
{
    memset(host, 0, sizeof *host);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    host->cores = n > 0 ? (uint32_t)n : 0;
    char *buf = malloc(S_READ_MAX);
    if (buf) {
        if (s_read("/proc/meminfo", buf, S_READ_MAX) &&
            discover_parse_meminfo(buf, &host->mem_bytes) != CPN_OK)
            host->mem_bytes = 0;
        free(buf);
    }
    s_disks(host);
    s_gpus(host);
}

/* Whole GiB, rounded down (the operator keeps some for the host itself anyway). */
static uint64_t s_gib(uint64_t bytes)
{
    return bytes >> 30;
}

void discover_print(const discover_host_t *h, const char *hostname, FILE *out)
{
    char id[CPN_NAME_MAX];
    size_t k = 0;
    for (const char *p = hostname && hostname[0] ? hostname : "host"; *p && k < 40; p++)
        id[k++] = isalnum((unsigned char)*p) || *p == '-' ? (char)tolower((unsigned char)*p) : '-';
    id[k] = '\0';
    const char *cls = h->nvme_bytes ? "nvme" : h->ssd_bytes ? "ssd" : h->hdd_bytes ? "hdd" : NULL;
    uint64_t disk = h->nvme_bytes ? h->nvme_bytes : h->ssd_bytes ? h->ssd_bytes : h->hdd_bytes;

    fprintf(out, "# cpn-peer --discover: packages skeleton for host %s.\n",
            hostname && hostname[0] ? hostname : "(unknown)");
    fprintf(out, "# Edit id, region, count and price, keep some capacity for the host itself,\n"
                 "# then paste under `packages:` in peer.yaml (cpn-peer --check validates it).\n");
    fprintf(out,
            "# Found: %" PRIu32 " cores, %" PRIu64 " GiB memory, disks nvme %" PRIu64
            " GiB, ssd %" PRIu64 " GiB, hdd %" PRIu64 " GiB, %zu GPU model(s).\n",
            h->cores, s_gib(h->mem_bytes), s_gib(h->nvme_bytes), s_gib(h->ssd_bytes),
            s_gib(h->hdd_bytes), h->n_gpu_kinds);
    fprintf(out, "packages:\n");
    fprintf(out, "  - id: %s-%s\n", id, h->n_gpu_kinds ? "gpu" : "cpu");
    fprintf(out, "    count: 1\n");
    fprintf(out, "    region: CHANGE-ME\n");
    fprintf(out, "    price: \"0.0\"        # per unit-hour\n");
    fprintf(out, "    # floor: \"0.0\"      # lowest price accepted\n");
    if (h->cores)
        fprintf(out, "    cores: %" PRIu32 "\n", h->cores);
    if (s_gib(h->mem_bytes))
        fprintf(out, "    memory: %" PRIu64 "GiB\n", s_gib(h->mem_bytes));
    if (h->n_gpu_kinds) {
        const discover_gpu_t *g = &h->gpus[0];
        uint32_t tf = discover_bf16_tflops(g->model);
        fprintf(out, "    accelerators:\n");
        fprintf(out, "      vendor: nvidia\n");
        fprintf(out, "      model: %s\n", g->model);
        fprintf(out, "      count: %" PRIu32 "\n", g->count);
        fprintf(out, "      memory: %" PRIu64 "GiB\n", g->mem_bytes >> 30 ? g->mem_bytes >> 30 : 1);
        fprintf(out, "      bf16_tflops: %" PRIu32 "%s\n", tf ? tf : 1,
                tf ? "    # dense, per accelerator" : "    # CHANGE-ME: dense BF16 TFLOPS");
        for (size_t i = 1; i < h->n_gpu_kinds; i++)
            fprintf(out, "      # also found: %" PRIu32 " x %s (a package of its own)\n",
                    h->gpus[i].count, h->gpus[i].model);
    }
    if (cls && s_gib(disk)) {
        fprintf(out, "    storage:\n");
        fprintf(out, "      class: %s\n", cls);
        fprintf(out, "      size: %" PRIu64 "GiB\n", s_gib(disk));
    }
    fprintf(out, "    network:\n");
    fprintf(out, "      egress: 10Gbps     # CHANGE-ME: what the uplink sells\n");
}
