/* files.h - a private directory for targets whose parser reads a file: the fixed keys of
 * seal.h saved there under the names the files of conf/ use (broker.key, peer.pub, acme.pub,
 * ...), so real configurations validate, and the input written to a file in it. The directory
 * is removed at exit. Header-only, like seal.h.
 */
#ifndef CPN_FUZZ_FILES_H
#define CPN_FUZZ_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seal.h"

static char fz_dir[64];

static void fz_dir_remove(void)
{
    static const char *const names[] = {"broker", "peer",     "peer2",    "acme",
                                        "beta",   "broker-b", "broker-c", "input.yaml"};
    char p[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s.key", fz_dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.pub", fz_dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
    }
    rmdir(fz_dir);
}

/* Make the directory and the key files; aborts on failure (a harness problem). */
static inline void fz_dir_init(void)
{
    static const struct {
        const char *base;
        int key;
    } files[] = {{"broker", FZ_BROKER_A}, {"broker-b", FZ_BROKER_B}, {"broker-c", FZ_BROKER_C},
                 {"peer", FZ_PEER},       {"peer2", FZ_OTHER},       {"acme", FZ_TENANT},
                 {"beta", FZ_TENANT2}};
    char base[256];
    fz_keys_init();
    /* tmpfs when there is one: a file rewritten per input must not wait on a disk journal */
    snprintf(fz_dir, sizeof fz_dir, "%s/cpn-fuzz-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(fz_dir))
        abort();
    atexit(fz_dir_remove);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(base, sizeof base, "%s/%s", fz_dir, files[i].base);
        if (cpn_identity_save(fz_key(files[i].key), base) != CPN_OK)
            abort();
    }
}

/* Write the input to <dir>/input.yaml; its path into path. */
static inline void fz_write_input(const uint8_t *data, size_t size, char *path, size_t cap)
{
    snprintf(path, cap, "%s/input.yaml", fz_dir);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

#endif
