/* test_envelope.c - seal/open, strict parsing, tamper and truncation, the 2^24-element bomb
 * under a hard memory cap, domain separation, the signature cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "envelope.h"
#include "sigcache.h"

static cpn_identity_t *s_id;
static const uint8_t s_body[] = {0x82, 0xa4, 'r', 'o', 'l', 'e', 0xa4, 'p', 'e', 'e', 'r',
                                 0xa4, 'n', 'a', 'm', 'e', 0xa2, 'd', '1'};

static int s_setup(void **state)
{
    (void)state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0x40 + i);
    return cpn_crypto_init() == CPN_OK && cpn_identity_from_seed(seed, &s_id) == CPN_OK ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    cpn_identity_destroy(&s_id);
    return 0;
}

static void s_seal(cpn_msg_type_t type, uint8_t **frame, size_t *len)
{
    assert_int_equal(cpn_env_seal(s_id, type, 12345, 1700000000000ull, s_body, sizeof s_body,
                                  frame, len),
                     CPN_OK);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    s_seal(CPN_MSG_HELLO, &frame, &len);
    assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);
    assert_int_equal(env.type, CPN_MSG_HELLO);
    assert_memory_equal(env.from, cpn_identity_pk(s_id), 32);
    assert_true(env.seq == 12345);
    assert_true(env.ts_ms == 1700000000000ull);
    assert_int_equal(env.body_len, sizeof s_body);
    assert_memory_equal(env.body, s_body, sizeof s_body);
    assert_ptr_equal(env.frame, frame);
    assert_true(env.payload > frame && env.payload + env.payload_len <= frame + len);
    assert_true(env.sig + 64 == frame + len);
    /* the sig is Ed25519 over the context, the type, a zero byte and the payload */
    size_t mlen = 6 + 5 + 1 + env.payload_len;
    uint8_t *m = malloc(mlen);
    assert_non_null(m);
    memcpy(m, "cpn/1/HELLO", 11);
    m[11] = 0;
    memcpy(m + 12, env.payload, env.payload_len);
    assert_int_equal(crypto_sign_verify_detached(env.sig, m, mlen, env.from), 0);
    free(m);
    free(frame);

    /* Every type seals and opens. */
    for (int t = CPN_MSG_NONE + 1; t < CPN_MSG__COUNT; t++) {
        s_seal((cpn_msg_type_t)t, &frame, &len);
        assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);
        assert_int_equal(env.type, t);
        free(frame);
    }
    /* Seal refuses a body that is not one map, and an unknown type. */
    assert_int_equal(cpn_env_seal(s_id, CPN_MSG_HELLO, 1, 1, (const uint8_t *)"\x91\x01", 2,
                                  &frame, &len),
                     CPN_E_INVAL);
    assert_int_equal(cpn_env_seal(s_id, CPN_MSG_HELLO, 1, 1, (const uint8_t *)"\x81\x01", 2,
                                  &frame, &len),
                     CPN_E_COUNT);
    assert_int_equal(cpn_env_seal(s_id, CPN_MSG__COUNT, 1, 1, s_body, sizeof s_body, &frame,
                                  &len),
                     CPN_E_TYPE);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(cpn_msg_name(CPN_MSG_AD), "AD");
    assert_null(cpn_msg_name(CPN_MSG_NONE));
    assert_null(cpn_msg_name(CPN_MSG__COUNT));
    assert_int_equal(cpn_msg_type("WITHDRAW", 8), CPN_MSG_WITHDRAW);
    assert_int_equal(cpn_msg_type("WITHDRAWX", 9), CPN_MSG_NONE);
    assert_int_equal(cpn_msg_type("WITHDRA", 7), CPN_MSG_NONE);
    assert_int_equal(cpn_msg_roles(CPN_MSG_AD), CPN_ROLE_PEER);
    assert_int_equal(cpn_msg_roles(CPN_MSG__COUNT), 0);
}

static void test_every_bit_flip_rejected(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    s_seal(CPN_MSG_AD, &frame, &len);
    size_t rejected = 0;
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            frame[i] ^= (uint8_t)(1u << b);
            int r = cpn_env_open(frame, len, NULL, &env);
            if (r == CPN_OK)
                fail_msg("flipping bit %d of byte %zu still verifies", b, i);
            rejected++;
            frame[i] ^= (uint8_t)(1u << b);
        }
    }
    assert_int_equal(rejected, len * 8);
    assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK); /* restored */
    free(frame);
}

static void test_every_truncation_rejected(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    s_seal(CPN_MSG_CLAIM, &frame, &len);
    for (size_t n = 0; n < len; n++) {
        /* a fresh copy of exactly n bytes, so ASan sees any read past the end */
        uint8_t *cut = malloc(n ? n : 1);
        assert_non_null(cut);
        memcpy(cut, frame, n);
        int r = cpn_env_open(n ? cut : NULL, n, NULL, &env);
        if (r == CPN_OK)
            fail_msg("truncation to %zu of %zu bytes accepted", n, len);
        free(cut);
    }
    /* and one byte too many */
    uint8_t *more = malloc(len + 1);
    assert_non_null(more);
    memcpy(more, frame, len);
    more[len] = 0;
    assert_int_equal(cpn_env_open(more, len + 1, NULL, &env), CPN_E_TRAILING);
    free(more);
    free(frame);
}

static void test_oversize_refused_first(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    s_seal(CPN_MSG_HELLO, &frame, &len);
    cpn_limits_t lim = cpn_limits_default;
    lim.max_frame = len;
    assert_int_equal(cpn_env_open(frame, len, &lim, &env), CPN_OK);
    lim.max_frame = len - 1;
    assert_int_equal(cpn_env_parse(frame, len, &lim, &env), CPN_E_FRAME_SIZE);
    free(frame);
    /* 70,000 bytes of garbage: the size is refused before any byte is read */
    size_t big = 70000;
    uint8_t *junk = malloc(big);
    assert_non_null(junk);
    memset(junk, 0xc1, big);
    assert_int_equal(cpn_env_parse(junk, big, NULL, &env), CPN_E_FRAME_SIZE);
    free(junk);
}

/* ---- hand-made frames for the strict-structure checks ---- */

typedef struct {
    uint64_t v;
    const char *type;
    size_t from_len;
    size_t sig_len;
    bool swap_seq_ts; /* keys out of order */
    bool extra_key;
    const uint8_t *body;
    size_t body_len;
} s_spec_t;

/* Pack a payload per spec and sign it properly, so only the structure is wrong. */
static uint8_t *s_craft(const s_spec_t *sp, size_t *len)
{
    msgpack_sbuffer pay, fr;
    msgpack_packer pk;
    uint8_t from[64] = {0}, sig[80] = {0};
    msgpack_sbuffer_init(&pay);
    msgpack_sbuffer_init(&fr);
    msgpack_packer_init(&pk, &pay, msgpack_sbuffer_write);
    memcpy(from, cpn_identity_pk(s_id), 32);
    msgpack_pack_map(&pk, sp->extra_key ? 7 : 6);
    mp_pack_str(&pk, "v");
    msgpack_pack_uint64(&pk, sp->v);
    mp_pack_kstr(&pk, "type", sp->type);
    mp_pack_str(&pk, "from");
    mp_pack_bin(&pk, from, sp->from_len);
    mp_pack_ku64(&pk, sp->swap_seq_ts ? "ts" : "seq", 1);
    mp_pack_ku64(&pk, sp->swap_seq_ts ? "seq" : "ts", 1);
    mp_pack_str(&pk, "body");
    mp_pack_bin(&pk, sp->body, sp->body_len);
    if (sp->extra_key)
        mp_pack_ku64(&pk, "x", 1);
    /* sign as the real type would be signed */
    size_t tn = strlen(sp->type), mlen = 6 + tn + 1 + pay.size;
    uint8_t *m = malloc(mlen);
    assert_non_null(m);
    memcpy(m, "cpn/1/", 6);
    memcpy(m + 6, sp->type, tn);
    m[6 + tn] = 0;
    memcpy(m + 7 + tn, pay.data, pay.size);
    cpn_identity_sign(s_id, m, mlen, sig);
    free(m);
    msgpack_packer_init(&pk, &fr, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    mp_pack_bin(&pk, (const uint8_t *)pay.data, pay.size);
    mp_pack_bin(&pk, sig, sp->sig_len);
    msgpack_sbuffer_destroy(&pay);
    *len = fr.size;
    return (uint8_t *)msgpack_sbuffer_release(&fr);
}

static int s_open_spec(const s_spec_t *sp)
{
    size_t len;
    cpn_env_t env;
    uint8_t *f = s_craft(sp, &len);
    int r = cpn_env_open(f, len, NULL, &env);
    free(f);
    return r;
}

static void test_strict_structure(void **state)
{
    (void)state;
    const s_spec_t good = {1, "HELLO", 32, 64, false, false, s_body, sizeof s_body};
    s_spec_t sp;
    assert_int_equal(s_open_spec(&good), CPN_OK); /* the crafting itself is right */

    sp = good, sp.v = 2;
    assert_int_equal(s_open_spec(&sp), CPN_E_VERSION);
    sp = good, sp.v = 0;
    assert_int_equal(s_open_spec(&sp), CPN_E_VERSION);
    sp = good, sp.type = "HELO";
    assert_int_equal(s_open_spec(&sp), CPN_E_TYPE);
    sp = good, sp.type = "hello";
    assert_int_equal(s_open_spec(&sp), CPN_E_TYPE);
    sp = good, sp.from_len = 31;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.from_len = 33;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.sig_len = 63;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.sig_len = 65;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.swap_seq_ts = true;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.extra_key = true;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    /* body: not a map, trailing bytes, truncated, over-deep */
    sp = good, sp.body = (const uint8_t *)"\x91\x01", sp.body_len = 2;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    sp = good, sp.body = (const uint8_t *)"\x80\x01", sp.body_len = 2;
    assert_int_equal(s_open_spec(&sp), CPN_E_TRAILING);
    sp = good, sp.body = (const uint8_t *)"\x81\x01", sp.body_len = 2;
    assert_int_equal(s_open_spec(&sp), CPN_E_COUNT);
    sp = good, sp.body = NULL, sp.body_len = 0;
    assert_int_equal(s_open_spec(&sp), CPN_E_SCHEMA);
    uint8_t deep[40];
    deep[0] = 0x81;
    deep[1] = 0x01;
    memset(deep + 2, 0x91, sizeof deep - 3);
    deep[sizeof deep - 1] = 0x01;
    sp = good, sp.body = deep, sp.body_len = sizeof deep;
    assert_int_equal(s_open_spec(&sp), CPN_E_DEPTH);

    /* frame: not an array of two, 3 elements */
    cpn_env_t env;
    assert_int_equal(cpn_env_parse((const uint8_t *)"\x91\xc4\x00", 3, NULL, &env), CPN_E_SCHEMA);
    assert_int_equal(cpn_env_parse((const uint8_t *)"\x80", 1, NULL, &env), CPN_E_SCHEMA);
    assert_int_equal(cpn_env_parse((const uint8_t *)"\x92\x01\x02", 3, NULL, &env), CPN_E_SCHEMA);
}

static void test_over_deep_frame(void **state)
{
    (void)state;
    uint8_t frame[64];
    cpn_env_t env;
    memset(frame, 0x91, sizeof frame);
    frame[sizeof frame - 1] = 0x01;
    assert_int_equal(cpn_env_parse(frame, sizeof frame, NULL, &env), CPN_E_DEPTH);
    /* A signed frame whose body nests 3 deep, under a depth limit of 2. */
    const uint8_t body[] = {0x81, 0x01, 0x91, 0x91, 0x01};
    uint8_t *f = NULL;
    size_t len;
    assert_int_equal(cpn_env_seal(s_id, CPN_MSG_STATUS, 1, 1, body, sizeof body, &f, &len),
                     CPN_OK);
    cpn_limits_t lim = cpn_limits_default;
    lim.max_depth = 3;
    assert_int_equal(cpn_env_open(f, len, &lim, &env), CPN_OK);
    lim.max_depth = 2;
    assert_int_equal(cpn_env_open(f, len, &lim, &env), CPN_E_DEPTH);
    free(f);
}

/* ---- the 5-byte frame declaring 2^24 elements ---- */

/* Current address-space size of this process, from /proc (bytes), 0 if unknown. */
static size_t s_vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* Run fn in a child whose address space may grow by at most `headroom` bytes; returns the
 * child's exit code, or 100 + signal if it was killed (ASan aborts when an allocation is
 * refused, plain malloc returns NULL). */
static int s_capped(int (*fn)(void), size_t headroom, bool quiet)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (quiet && !freopen("/dev/null", "w", stderr)) /* ASan's report of the refusal */
            _exit(92);
        size_t now = s_vm_size();
        if (now == 0)
            _exit(90);
        struct rlimit rl = {now + headroom, now + headroom};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(91);
        _exit(fn());
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static const uint8_t s_bomb_array[] = {0xdd, 0x01, 0x00, 0x00, 0x00}; /* array32, 2^24 */
static const uint8_t s_bomb_map[] = {0xdf, 0x01, 0x00, 0x00, 0x00};   /* map32, 2^24 */

/* cpn's path: refused with CPN_E_COUNT. Exit 0 on exactly that. */
static int s_cpn_path(void)
{
    cpn_env_t env;
    msgpack_zone z;
    msgpack_object o;
    if (cpn_env_open(s_bomb_array, 5, NULL, &env) != CPN_E_COUNT ||
        cpn_env_open(s_bomb_map, 5, NULL, &env) != CPN_E_COUNT)
        return 1;
    if (!msgpack_zone_init(&z, 1024))
        return 2;
    int r = mp_parse(s_bomb_array, 5, NULL, &z, &o);
    msgpack_zone_destroy(&z);
    return r == CPN_E_COUNT ? 0 : 3;
}

/* The control: msgpack-c unpacking the same 5 bytes directly. Exit 0 if it managed without
 * asking for more memory than the cap allows (it does not: it reserves 2^24 * 24 bytes). */
static int s_raw_msgpack(void)
{
    msgpack_zone z;
    msgpack_object o;
    size_t off = 0;
    if (!msgpack_zone_init(&z, 1024))
        return 2;
    msgpack_unpack_return r = msgpack_unpack((const char *)s_bomb_array, 5, &off, &z, &o);
    msgpack_zone_destroy(&z);
    return r == MSGPACK_UNPACK_NOMEM_ERROR ? 4 : 0;
}

static void test_count_bomb_small_memory(void **state)
{
    (void)state;
    const size_t cap = 32u << 20; /* 32 MiB more address space, against a 384 MiB reservation */
    /* The cap is real: msgpack-c alone cannot unpack the bomb under it. */
    /* exit 4: malloc returned NULL; 1 or a signal: ASan refused the allocation */
    int control = s_capped(s_raw_msgpack, cap, true);
    if (!(control == 4 || control == 1 || control >= 100))
        fail_msg("the memory cap did not stop msgpack-c (child exit %d)", control);
    /* cpn refuses it under the same cap, so it never asked for more. */
    assert_int_equal(s_capped(s_cpn_path, cap, false), 0);
}

/* ---- domain separation ---- */

static void test_type_is_signed(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    s_seal(CPN_MSG_AD, &frame, &len);
    assert_int_equal(cpn_env_open(frame, len, NULL, &env), CPN_OK);

    /* The same payload bytes presented as another type do not verify. */
    env.type = CPN_MSG_WITHDRAW;
    assert_int_equal(cpn_env_verify(&env), CPN_E_SIG);
    env.type = CPN_MSG_AD;
    assert_int_equal(cpn_env_verify(&env), CPN_OK);

    /* Rewrite "type":"AD" to "type":"WITHDRAW" in the payload and keep the signature. */
    msgpack_sbuffer pay, fr;
    msgpack_packer pk;
    msgpack_sbuffer_init(&pay);
    msgpack_packer_init(&pk, &pay, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mp_pack_ku64(&pk, "v", 1);
    mp_pack_kstr(&pk, "type", "WITHDRAW");
    mp_pack_str(&pk, "from");
    mp_pack_bin(&pk, env.from, 32);
    mp_pack_ku64(&pk, "seq", env.seq);
    mp_pack_ku64(&pk, "ts", env.ts_ms);
    mp_pack_str(&pk, "body");
    mp_pack_bin(&pk, env.body, env.body_len);
    msgpack_sbuffer_init(&fr);
    msgpack_packer_init(&pk, &fr, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    mp_pack_bin(&pk, (const uint8_t *)pay.data, pay.size);
    mp_pack_bin(&pk, env.sig, 64);
    cpn_env_t env2;
    assert_int_equal(cpn_env_parse((const uint8_t *)fr.data, fr.size, NULL, &env2), CPN_OK);
    assert_int_equal(env2.type, CPN_MSG_WITHDRAW);
    assert_int_equal(cpn_env_verify(&env2), CPN_E_SIG);
    assert_int_equal(cpn_env_open((const uint8_t *)fr.data, fr.size, NULL, &env2), CPN_E_SIG);
    msgpack_sbuffer_destroy(&pay);
    msgpack_sbuffer_destroy(&fr);

    /* Without the context the signature does not verify either (raw payload). */
    assert_int_not_equal(crypto_sign_verify_detached(env.sig, env.payload, env.payload_len,
                                                     env.from),
                         0);
    free(frame);
}

static void test_seq_next(void **state)
{
    (void)state;
    assert_true(cpn_seq_next(0, 1000) == 1000u << 12);
    assert_true(cpn_seq_next(1000u << 12, 1000) == (1000u << 12) + 1);
    assert_true(cpn_seq_next((2000ull << 12) + 5, 1000) == (2000ull << 12) + 6);
    assert_true(cpn_seq_next(UINT64_MAX, 1) == UINT64_MAX);
    assert_true(cpn_seq_next(0, UINT64_MAX) == UINT64_MAX);
    uint64_t s = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t n = cpn_seq_next(s, 1700000000000ull);
        assert_true(n > s);
        s = n;
    }
    /* A client's seq: the low 12 bits of the clock seq are random, the rest as above. */
    assert_true(cpn_seq_next_rand(0, 1000, 0x5a5) == ((1000u << 12) | 0x5a5));
    assert_true(cpn_seq_next_rand(0, 1000, 0xfffff123u) == ((1000u << 12) | 0x123));
    assert_true(cpn_seq_next_rand((1000u << 12) | 0x7ff, 1000, 3) == ((1000u << 12) | 0x800));
    assert_true(cpn_seq_next_rand(UINT64_MAX, 1, 1) == UINT64_MAX);
    assert_true(cpn_seq_next_rand(0, UINT64_MAX, 1) == UINT64_MAX);
    s = 0;
    for (uint32_t i = 0; i < 100; i++) {
        uint64_t n = cpn_seq_next_rand(s, 1700000000000ull + i / 10, i * 2654435761u);
        assert_true(n > s);
        assert_true(n < (1700000000000ull + i / 10 + 1) << 12);
        s = n;
    }
}

static void test_sigcache(void **state)
{
    (void)state;
    uint8_t *frame = NULL;
    size_t len = 0;
    cpn_env_t env;
    cpn_sigcache_t *c = cpn_sigcache_new(64);
    assert_non_null(c);
    s_seal(CPN_MSG_LEASE, &frame, &len);
    assert_int_equal(cpn_env_parse(frame, len, NULL, &env), CPN_OK);
    assert_int_equal(cpn_sigcache_verify(c, &env), CPN_OK);
    assert_int_equal(cpn_sigcache_hits(c), 0);
    assert_int_equal(cpn_sigcache_verify(c, &env), CPN_OK);
    assert_int_equal(cpn_sigcache_hits(c), 1);
    /* A different signature over the same payload is not a hit and fails. */
    uint8_t sig[64];
    memcpy(sig, env.sig, 64);
    sig[10] ^= 1;
    cpn_env_t bad = env;
    bad.sig = sig;
    assert_int_equal(cpn_sigcache_verify(c, &bad), CPN_E_SIG);
    assert_int_equal(cpn_sigcache_verify(c, &bad), CPN_E_SIG); /* failures are not cached */
    assert_int_equal(cpn_sigcache_hits(c), 1);
    /* The type is part of what verified. */
    bad = env;
    bad.type = CPN_MSG_GRANT;
    assert_int_equal(cpn_sigcache_verify(c, &bad), CPN_E_SIG);
    assert_int_equal(cpn_sigcache_hits(c), 1);
    /* NULL cache: plain verification */
    assert_int_equal(cpn_sigcache_verify(NULL, &env), CPN_OK);
    free(frame);
    /* add: a frame we signed ourselves is a hit at once */
    s_seal(CPN_MSG_CLAIM, &frame, &len);
    assert_int_equal(cpn_env_parse(frame, len, NULL, &env), CPN_OK);
    cpn_sigcache_add(c, &env);
    assert_int_equal(cpn_sigcache_verify(c, &env), CPN_OK);
    assert_int_equal(cpn_sigcache_hits(c), 2);
    free(frame);
    cpn_sigcache_destroy(&c);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_every_bit_flip_rejected),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_oversize_refused_first),
        cmocka_unit_test(test_strict_structure),
        cmocka_unit_test(test_over_deep_frame),
        cmocka_unit_test(test_count_bomb_small_memory),
        cmocka_unit_test(test_type_is_signed),
        cmocka_unit_test(test_seq_next),
        cmocka_unit_test(test_sigcache),
    };
    return cmocka_run_group_tests_name("envelope", tests, s_setup, s_teardown);
}
