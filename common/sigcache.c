/* sigcache.c - a direct-mapped cache of frames whose signature verified.
 *
 * The digest is a keyed BLAKE2b-128 of type name || 0x00 || payload || signature || signer
 * key (what was verified: the signed bytes, the signature, the key). The hash key is
 * random per process, so nobody can aim frames at one slot to keep evicting an entry, and a
 * hit means these exact bytes verified before (a different frame with the same digest
 * would need a 128-bit collision under a key the sender does not know).
 */
#include "sigcache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define S_DIGEST_LEN 16

typedef struct {
    uint8_t digest[S_DIGEST_LEN];
    bool used;
} s_slot_t;

struct cpn_sigcache {
    s_slot_t *slots;
    size_t n;
    size_t hits;
    uint8_t key[crypto_generichash_KEYBYTES];
};

cpn_sigcache_t *cpn_sigcache_new(size_t slots)
{
    cpn_sigcache_t *self;
    if (slots == 0 || slots > SIZE_MAX / sizeof(s_slot_t) || sodium_init() < 0)
        return NULL;
    self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = calloc(slots, sizeof *self->slots);
    if (!self->slots) {
        free(self);
        return NULL;
    }
    self->n = slots;
    randombytes_buf(self->key, sizeof self->key);
    return self;
}

void cpn_sigcache_destroy(cpn_sigcache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

size_t cpn_sigcache_hits(const cpn_sigcache_t *self)
{
    return self ? self->hits : 0;
}

static s_slot_t *s_slot(const cpn_sigcache_t *self, const cpn_env_t *env,
                        uint8_t digest[S_DIGEST_LEN])
{
    crypto_generichash_state st;
    uint64_t v = 0;
    const char *name = cpn_msg_name(env->type);
    crypto_generichash_init(&st, self->key, sizeof self->key, S_DIGEST_LEN);
    /* the name with its NUL, as in the signed context */
    if (!name)
        name = "";
    crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1);
    crypto_generichash_update(&st, env->payload, env->payload_len);
    crypto_generichash_update(&st, env->sig, CPN_SIG_LEN);
    crypto_generichash_update(&st, env->from, CPN_PK_LEN);
    crypto_generichash_final(&st, digest, S_DIGEST_LEN);
    memcpy(&v, digest, sizeof v);
    return &self->slots[v % self->n];
}

int cpn_sigcache_verify(cpn_sigcache_t *self, const cpn_env_t *env)
{
    uint8_t digest[S_DIGEST_LEN];
    s_slot_t *slot = NULL;
    int r;
    if (!env || !env->payload || !env->sig)
        return CPN_E_INVAL;
    if (self) {
        slot = s_slot(self, env, digest);
        if (slot->used && memcmp(slot->digest, digest, S_DIGEST_LEN) == 0) {
            self->hits++;
            return CPN_OK;
        }
    }
    r = cpn_env_verify(env);
    if (r == CPN_OK && slot) {
        memcpy(slot->digest, digest, S_DIGEST_LEN);
        slot->used = true;
    }
    return r;
}

void cpn_sigcache_add(cpn_sigcache_t *self, const cpn_env_t *env)
{
    uint8_t digest[S_DIGEST_LEN];
    if (!self || !env || !env->payload || !env->sig)
        return;
    s_slot_t *slot = s_slot(self, env, digest);
    memcpy(slot->digest, digest, S_DIGEST_LEN);
    slot->used = true;
}
