/* test_identity.c - key pairs, key files and their permissions, printable keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "identity.h"

typedef struct {
    char dir[256];
    char base[300];
    char path[320];
} s_tmp_t;

static int s_setup(void **state)
{
    s_tmp_t *t = calloc(1, sizeof *t);
    const char *tmp = getenv("TMPDIR");
    if (!t || cpn_crypto_init() != CPN_OK)
        return -1;
    snprintf(t->dir, sizeof t->dir, "%s/cpn-test-id-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->base, sizeof t->base, "%s/alice", t->dir);
    *state = t;
    return 0;
}

static int s_teardown(void **state)
{
    s_tmp_t *t = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        return -1;
    free(t);
    return 0;
}

/* Write `content` to DIR/name with `mode`, return the path (in t->path). */
static const char *s_write(s_tmp_t *t, const char *name, const char *content, mode_t mode)
{
    snprintf(t->path, sizeof t->path, "%s/%s", t->dir, name);
    unlink(t->path);
    FILE *f = fopen(t->path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(t->path, mode), 0);
    return t->path;
}

static void test_rfc8032_vector(void **state)
{
    (void)state;
    /* RFC 8032, section 7.1, TEST 1: the empty message. */
    uint8_t seed[32], pk[32], want_sig[64], sig[64];
    const char *seed_hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const char *pk_hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const char *sig_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                          "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    assert_int_equal(sodium_hex2bin(seed, 32, seed_hex, 64, NULL, NULL, NULL), 0);
    assert_int_equal(sodium_hex2bin(pk, 32, pk_hex, 64, NULL, NULL, NULL), 0);
    assert_int_equal(sodium_hex2bin(want_sig, 64, sig_hex, 128, NULL, NULL, NULL), 0);
    cpn_identity_t *id = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);
    assert_memory_equal(cpn_identity_pk(id), pk, 32);
    cpn_identity_sign(id, (const uint8_t *)"", 0, sig);
    assert_memory_equal(sig, want_sig, 64);
    cpn_identity_destroy(&id);
    assert_null(id);
    cpn_identity_destroy(&id); /* NULL is fine */
}

static void test_save_load_round_trip(void **state)
{
    s_tmp_t *t = *state;
    cpn_identity_t *a = NULL, *b = NULL;
    uint8_t sa[64], sb[64], pk[32];
    struct stat st;
    char path[340];

    assert_int_equal(cpn_identity_generate(&a), CPN_OK);
    assert_int_equal(cpn_identity_save(a, t->base), CPN_OK);
    snprintf(path, sizeof path, "%s.key", t->base);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 44); /* 43 characters and a newline */

    assert_int_equal(cpn_identity_load(path, &b), CPN_OK);
    assert_memory_equal(cpn_identity_pk(a), cpn_identity_pk(b), 32);
    cpn_identity_sign(a, (const uint8_t *)"hello", 5, sa);
    cpn_identity_sign(b, (const uint8_t *)"hello", 5, sb);
    assert_memory_equal(sa, sb, 64);
    assert_int_equal(crypto_sign_verify_detached(sa, (const uint8_t *)"hello", 5,
                                                 cpn_identity_pk(a)), 0);

    /* The .pub file holds the same public key. */
    snprintf(path, sizeof path, "%s.pub", t->base);
    assert_int_equal(cpn_pk_load(path, pk), CPN_OK);
    assert_memory_equal(pk, cpn_identity_pk(a), 32);

    /* Never overwrites. */
    assert_int_not_equal(cpn_identity_save(b, t->base), CPN_OK);
    cpn_identity_destroy(&a);
    cpn_identity_destroy(&b);
}

static void test_permissions_refused(void **state)
{
    s_tmp_t *t = *state;
    cpn_identity_t *id = NULL;
    const char *good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"; /* seed 00..1f */
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0600), &id), CPN_OK);
    cpn_identity_destroy(&id);
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0400), &id), CPN_OK);
    cpn_identity_destroy(&id);
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0644), &id), CPN_E_KEY_PERM);
    assert_null(id);
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0640), &id), CPN_E_KEY_PERM);
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0604), &id), CPN_E_KEY_PERM);
    assert_int_equal(cpn_identity_load(s_write(t, "k.key", good, 0620), &id), CPN_E_KEY_PERM);
    assert_null(id);
}

static void test_malformed_refused(void **state)
{
    s_tmp_t *t = *state;
    cpn_identity_t *id = NULL;
    static const char *const bad[] = {
        "",
        "\n",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh\n",    /* 42 characters */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A\n",  /* 44 characters */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9\n",   /* non-zero padding bits */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  /* padded */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd+h8\n",   /* standard, not url-safe */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n\n", /* extra line */
        " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",  /* leading space */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", /* two keys */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cpn_identity_load(s_write(t, "bad.key", bad[i], 0600), &id), CPN_E_KEY);
        assert_null(id);
    }
    /* CRLF is tolerated (a key file edited on another system). */
    assert_int_equal(cpn_identity_load(s_write(t, "crlf.key",
                                               "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\r\n",
                                               0600),
                                       &id),
                     CPN_OK);
    cpn_identity_destroy(&id);
    /* Missing file, a directory. */
    snprintf(t->path, sizeof t->path, "%s/none.key", t->dir);
    assert_int_equal(cpn_identity_load(t->path, &id), CPN_E_KEY);
    assert_int_equal(cpn_identity_load(t->dir, &id), CPN_E_KEY);
    assert_null(id);
}

static void test_text_round_trip(void **state)
{
    s_tmp_t *t = *state;
    uint8_t seed[32], pk[32];
    char text[CPN_PK_TEXT_LEN], kid[CPN_KID_LEN];
    cpn_identity_t *id = NULL;
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);
    cpn_pk_to_text(cpn_identity_pk(id), text);
    assert_int_equal(strlen(text), 43);
    assert_null(strpbrk(text, "+/="));
    assert_int_equal(cpn_pk_from_text(text, pk), CPN_OK);
    assert_memory_equal(pk, cpn_identity_pk(id), 32);
    cpn_key_id(pk, kid);
    assert_int_equal(strlen(kid), 10);
    assert_memory_equal(kid, text, 10);

    /* cpn_pk_load takes the text itself or a file holding it. */
    memset(pk, 0, sizeof pk);
    assert_int_equal(cpn_pk_load(text, pk), CPN_OK);
    assert_memory_equal(pk, cpn_identity_pk(id), 32);
    char line[CPN_PK_TEXT_LEN + 1];
    snprintf(line, sizeof line, "%s\n", text);
    memset(pk, 0, sizeof pk);
    assert_int_equal(cpn_pk_load(s_write(t, "x.pub", line, 0644), pk), CPN_OK);
    assert_memory_equal(pk, cpn_identity_pk(id), 32);

    /* Refused texts. */
    assert_int_equal(cpn_pk_from_text("", pk), CPN_E_KEY);
    assert_int_equal(cpn_pk_from_text("short", pk), CPN_E_KEY);
    text[5] = '*';
    assert_int_equal(cpn_pk_from_text(text, pk), CPN_E_KEY);
    assert_int_equal(cpn_pk_load("no/such/file.pub", pk), CPN_E_KEY);
    cpn_identity_destroy(&id);
}

static void test_curve_keys(void **state)
{
    (void)state;
    cpn_identity_t *id = NULL;
    uint8_t cpk[32], csk[32], derived[32];
    assert_int_equal(cpn_identity_generate(&id), CPN_OK);
    assert_int_equal(cpn_identity_curve(id, cpk, csk), CPN_OK);
    assert_int_equal(crypto_scalarmult_base(derived, csk), 0);
    assert_memory_equal(derived, cpk, 32);
    cpn_identity_destroy(&id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8032_vector),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_permissions_refused),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_curve_keys),
    };
    return cmocka_run_group_tests_name("identity", tests, s_setup, s_teardown);
}
