/* identity.c - Ed25519 identities, their key files and printable forms.
 *
 * The 64-byte libsodium secret key (seed || public key) lives in sodium_malloc'd memory,
 * which has guard pages and is wiped by sodium_free. Key files hold one base64url line
 * (unpadded, 43 characters) and a newline; nothing else is accepted.
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define S_B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define S_TEXT_CHARS (CPN_PK_TEXT_LEN - 1) /* 43 */
/* A key file is at most 43 characters and "\r\n"; read a little more to see excess. */
#define S_FILE_READ_MAX 64

struct cpn_identity {
    uint8_t *sk; /* crypto_sign_SECRETKEYBYTES, sodium_malloc'd: seed || pk */
    uint8_t pk[CPN_PK_LEN];
};

int cpn_crypto_init(void)
{
    /* sodium_init returns 1 when already initialised, which is fine. */
    return sodium_init() < 0 ? CPN_E_INTERNAL : CPN_OK;
}

int cpn_identity_from_seed(const uint8_t seed[CPN_SEED_LEN], cpn_identity_t **out)
{
    int r = CPN_OK;
    cpn_identity_t *self = NULL;
    if (!seed || !out)
        return CPN_E_INVAL;
    if ((r = cpn_crypto_init()) != CPN_OK)
        return r;
    self = calloc(1, sizeof *self);
    if (!self) {
        r = CPN_E_NOMEM;
        goto out;
    }
    self->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!self->sk) {
        r = CPN_E_NOMEM;
        goto out;
    }
    if (crypto_sign_seed_keypair(self->pk, self->sk, seed) != 0) {
        r = CPN_E_INTERNAL;
        goto out;
    }
    *out = self;
    self = NULL;
out:
    cpn_identity_destroy(&self);
    return r;
}

int cpn_identity_generate(cpn_identity_t **out)
{
    uint8_t *seed;
    int r;
    if ((r = cpn_crypto_init()) != CPN_OK)
        return r;
    seed = sodium_malloc(CPN_SEED_LEN);
    if (!seed)
        return CPN_E_NOMEM;
    randombytes_buf(seed, CPN_SEED_LEN);
    r = cpn_identity_from_seed(seed, out);
    sodium_free(seed);
    return r;
}

void cpn_identity_destroy(cpn_identity_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpn_identity_t *self = *self_p;
    sodium_free(self->sk); /* wipes */
    sodium_memzero(self, sizeof *self);
    free(self);
    *self_p = NULL;
}

const uint8_t *cpn_identity_pk(const cpn_identity_t *self)
{
    return self->pk;
}

void cpn_identity_sign(const cpn_identity_t *self, const uint8_t *msg, size_t len,
                       uint8_t sig[CPN_SIG_LEN])
{
    crypto_sign_detached(sig, NULL, msg, len, self->sk);
}

int cpn_identity_curve(const cpn_identity_t *self, uint8_t curve_pk[32], uint8_t curve_sk[32])
{
    if (!self)
        return CPN_E_INVAL;
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, self->pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(curve_sk, self->sk) != 0) {
        sodium_memzero(curve_sk, 32);
        return CPN_E_KEY;
    }
    return CPN_OK;
}

/* Decode exactly one 43-character base64url key at text[0..len) into 32 bytes. libsodium
 * also refuses non-zero padding bits, so every key has exactly one text form. */
static int s_decode32(const char *text, size_t len, uint8_t out[32])
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (len != S_TEXT_CHARS)
        return CPN_E_KEY;
    if (sodium_base642bin(out, 32, text, len, NULL, &bin_len, &end, S_B64_VARIANT) != 0 ||
        bin_len != 32 || end != text + len)
        return CPN_E_KEY;
    return CPN_OK;
}

/* Length of the key text in a file's content: the content must be the text, optionally
 * followed by "\n" or "\r\n", and nothing else. Returns 0 if the shape is wrong. */
static size_t s_key_line(const char *buf, size_t n)
{
    size_t len = n;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    return len == S_TEXT_CHARS ? len : 0;
}

/* Read a whole small file (at most S_FILE_READ_MAX bytes) into buf. */
static int s_read_small(int fd, char *buf, size_t *n)
{
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, buf + got, S_FILE_READ_MAX + 1 - got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return CPN_E_IO;
        }
        if (k == 0)
            break;
        got += (size_t)k;
        if (got > S_FILE_READ_MAX)
            return CPN_E_KEY; /* far too long to be a key file */
    }
    *n = got;
    return CPN_OK;
}

int cpn_identity_load(const char *key_path, cpn_identity_t **out)
{
    int r = CPN_OK, fd = -1;
    struct stat st;
    size_t n = 0, len;
    char *buf = NULL;    /* file content: the secret, so sodium memory */
    uint8_t *seed = NULL;
    if (!key_path || !out)
        return CPN_E_INVAL;
    if ((r = cpn_crypto_init()) != CPN_OK)
        return r;
    buf = sodium_malloc(S_FILE_READ_MAX + 1);
    seed = sodium_malloc(CPN_SEED_LEN);
    if (!buf || !seed) {
        r = CPN_E_NOMEM;
        goto out;
    }
    fd = open(key_path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        r = CPN_E_KEY;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        r = CPN_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = CPN_E_KEY;
        goto out;
    }
    /* Like ssh: any permission for group or others on a secret is refused. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        r = CPN_E_KEY_PERM;
        goto out;
    }
    if ((r = s_read_small(fd, buf, &n)) != CPN_OK)
        goto out;
    len = s_key_line(buf, n);
    if (len == 0 || (r = s_decode32(buf, len, seed)) != CPN_OK) {
        r = CPN_E_KEY;
        goto out;
    }
    r = cpn_identity_from_seed(seed, out);
out:
    if (fd >= 0)
        close(fd);
    sodium_free(buf);
    sodium_free(seed);
    return r;
}

/* Write `text` and a newline to a new file `path` (never an existing one). */
static int s_write_new(const char *path, const char *text, mode_t mode)
{
    int r = CPN_OK;
    size_t len = strlen(text), done = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, mode);
    if (fd < 0)
        return errno == EEXIST ? CPN_E_INVAL : CPN_E_IO;
    while (done < len) {
        ssize_t k = write(fd, text + done, len - done);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r = CPN_E_IO;
            break;
        }
        done += (size_t)k;
    }
    if (r == CPN_OK && fsync(fd) != 0)
        r = CPN_E_IO;
    if (close(fd) != 0 && r == CPN_OK)
        r = CPN_E_IO;
    if (r != CPN_OK)
        unlink(path);
    return r;
}

int cpn_identity_save(const cpn_identity_t *self, const char *base)
{
    int r = CPN_OK;
    char *key_path = NULL, *pub_path = NULL;
    char *sk_text = NULL; /* the secret as text: sodium memory */
    char pk_text[CPN_PK_TEXT_LEN + 1];
    size_t blen;
    if (!self || !base || !*base)
        return CPN_E_INVAL;
    blen = strlen(base);
    key_path = malloc(blen + 5);
    pub_path = malloc(blen + 5);
    sk_text = sodium_malloc(CPN_PK_TEXT_LEN + 1);
    if (!key_path || !pub_path || !sk_text) {
        r = CPN_E_NOMEM;
        goto out;
    }
    memcpy(key_path, base, blen);
    memcpy(key_path + blen, ".key", 5);
    memcpy(pub_path, base, blen);
    memcpy(pub_path + blen, ".pub", 5);

    /* The seed is the first half of libsodium's secret key. */
    sodium_bin2base64(sk_text, CPN_PK_TEXT_LEN, self->sk, CPN_SEED_LEN, S_B64_VARIANT);
    memcpy(sk_text + S_TEXT_CHARS, "\n", 2);
    cpn_pk_to_text(self->pk, pk_text);
    memcpy(pk_text + S_TEXT_CHARS, "\n", 2);

    if ((r = s_write_new(key_path, sk_text, 0600)) != CPN_OK)
        goto out;
    if ((r = s_write_new(pub_path, pk_text, 0644)) != CPN_OK) {
        unlink(key_path); /* all or nothing */
        goto out;
    }
out:
    free(key_path);
    free(pub_path);
    sodium_free(sk_text);
    return r;
}

void cpn_pk_to_text(const uint8_t pk[CPN_PK_LEN], char out[CPN_PK_TEXT_LEN])
{
    sodium_bin2base64(out, CPN_PK_TEXT_LEN, pk, CPN_PK_LEN, S_B64_VARIANT);
}

int cpn_pk_from_text(const char *text, uint8_t pk[CPN_PK_LEN])
{
    uint8_t tmp[CPN_PK_LEN];
    if (!text || s_decode32(text, strlen(text), tmp) != CPN_OK)
        return CPN_E_KEY;
    memcpy(pk, tmp, sizeof tmp);
    return CPN_OK;
}

int cpn_pk_load(const char *path_or_text, uint8_t pk[CPN_PK_LEN])
{
    int r, fd;
    char buf[S_FILE_READ_MAX + 1];
    size_t n = 0, len;
    if (!path_or_text)
        return CPN_E_INVAL;
    if (cpn_pk_from_text(path_or_text, pk) == CPN_OK)
        return CPN_OK;
    fd = open(path_or_text, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return CPN_E_KEY;
    r = s_read_small(fd, buf, &n);
    close(fd);
    if (r != CPN_OK)
        return r;
    len = s_key_line(buf, n);
    if (len == 0)
        return CPN_E_KEY;
    return s_decode32(buf, len, pk);
}

void cpn_key_id(const uint8_t pk[CPN_PK_LEN], char out[CPN_KID_LEN])
{
    char text[CPN_PK_TEXT_LEN];
    cpn_pk_to_text(pk, text);
    memcpy(out, text, CPN_KID_LEN - 1);
    out[CPN_KID_LEN - 1] = '\0';
}
