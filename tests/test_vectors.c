/* test_vectors.c - docs/PROTOCOL.md and the code agree.
 *
 * Reads the test-vector block of docs/PROTOCOL.md (lines `vector-NAME: value`, hex values
 * continued on indented lines), rebuilds every value with the code and compares; also checks
 * that the document's error table and type list match err.h and msg_schema.def. */
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

#include "chain.h"
#include "harness.h"
#include "msg.h"
#include "msg_typed.h"
#include "seal.h"
#include "statement.h"
#include "usage.h"

#define S_MAX_VECTORS 64

typedef struct {
    char name[32];
    char *value; /* malloc'd; hex continuation lines appended without spaces */
} s_vec_t;

typedef struct {
    char *doc;
    s_vec_t vec[S_MAX_VECTORS];
    size_t n;
} s_doc_t;

static int s_setup(void **state)
{
    s_doc_t *d = calloc(1, sizeof *d);
    if (!d || cpn_crypto_init() != CPN_OK || !(d->doc = h_read_src("docs/PROTOCOL.md")))
        return -1;
    char *copy = strdup(d->doc), *save = NULL;
    s_vec_t *cur = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "vector-", 7) == 0) {
            char *colon = strchr(line, ':');
            if (!colon || d->n == S_MAX_VECTORS || (size_t)(colon - line - 7) >= 32)
                return -1;
            cur = &d->vec[d->n++];
            memcpy(cur->name, line + 7, (size_t)(colon - line - 7));
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            cur->value = strdup(v);
        } else if (cur && strncmp(line, "  ", 2) == 0 && line[2] != ' ') {
            size_t a = strlen(cur->value), b = strlen(line + 2);
            cur->value = realloc(cur->value, a + b + 1);
            memcpy(cur->value + a, line + 2, b + 1);
        } else {
            cur = NULL;
        }
    }
    free(copy);
    *state = d;
    return 0;
}

static int s_teardown(void **state)
{
    s_doc_t *d = *state;
    for (size_t i = 0; i < d->n; i++)
        free(d->vec[i].value);
    free(d->doc);
    free(d);
    return 0;
}

static const char *s_get(const s_doc_t *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->vec[i].name, name) == 0)
            return d->vec[i].value;
    fail_msg("docs/PROTOCOL.md has no vector-%s", name);
    return NULL;
}

/* Compare bytes with a hex vector, naming the first difference. */
static void s_check_hex(const s_doc_t *d, const char *name, const uint8_t *p, size_t n)
{
    const char *want = s_get(d, name);
    char *hex = malloc(2 * n + 1);
    assert_non_null(hex);
    sodium_bin2hex(hex, 2 * n + 1, p, n);
    if (strcmp(hex, want) != 0) {
        size_t i = 0;
        while (hex[i] && hex[i] == want[i])
            i++;
        fail_msg("vector-%s differs from the code at hex offset %zu:\n doc:  %s\n code: %s",
                 name, i, want, hex);
    }
    free(hex);
}

static void test_keys(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    s_check_hex(d, "seed-hex", seed, 32);
    cpn_identity_t *id = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);
    s_check_hex(d, "pk-hex", cpn_identity_pk(id), 32);
    char text[CPN_PK_TEXT_LEN];
    cpn_pk_to_text(cpn_identity_pk(id), text);
    assert_string_equal(text, s_get(d, "pk-text"));

    /* The key file of the document loads as this identity. */
    char dir[256], path[300], line[64];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cpn-test-vec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/v.key", dir);
    snprintf(line, sizeof line, "%s\n", s_get(d, "key-file"));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(line, f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    cpn_identity_t *loaded = NULL;
    assert_int_equal(cpn_identity_load(path, &loaded), CPN_OK);
    assert_memory_equal(cpn_identity_pk(loaded), cpn_identity_pk(id), 32);
    unlink(path);
    rmdir(dir);
    cpn_identity_destroy(&loaded);
    cpn_identity_destroy(&id);
}

/* The lease id rule of §7 on the keys of this section (common/chain.c implements it). */
static void test_lease_id_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    cpn_identity_t *peer = NULL, *tenant = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &peer), CPN_OK);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(32 + i);
    s_check_hex(d, "tenant-seed-hex", seed, 32);
    assert_int_equal(cpn_identity_from_seed(seed, &tenant), CPN_OK);
    s_check_hex(d, "tenant-pk-hex", cpn_identity_pk(tenant), 32);
    char id[CPN_NAME_MAX];
    cpn_chain_lease_id(cpn_identity_pk(peer), cpn_identity_pk(tenant), s_get(d, "request-id"),
                       id);
    assert_string_equal(id, s_get(d, "lease-id"));
    cpn_identity_destroy(&peer);
    cpn_identity_destroy(&tenant);
}

/* The sealed access details of §7: the tenant's X25519 keys, the box sealed with the fixed
 * ephemeral seed (common/seal.c rebuilds it byte for byte), and the document's box opened with
 * the tenant's identity (and by libsodium's own crypto_box_seal_open). */
static void test_access_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32], eph[CPN_SEAL_EPH_SEED_LEN], xpk[32], xsk[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(32 + i);
    for (int i = 0; i < 32; i++)
        eph[i] = (uint8_t)(64 + i);
    s_check_hex(d, "access-eph-seed-hex", eph, sizeof eph);
    cpn_identity_t *tenant = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &tenant), CPN_OK);
    assert_int_equal(cpn_identity_curve(tenant, xpk, xsk), CPN_OK);
    s_check_hex(d, "tenant-x25519-pk-hex", xpk, 32);
    s_check_hex(d, "tenant-x25519-sk-hex", xsk, 32);

    const char *plain = s_get(d, "access-plain");
    uint8_t box[CPN_ACCESS_BOX_MAX], opened[CPN_ACCESS_MAX];
    size_t n = 0, tl = 0;
    assert_int_equal(cpn_seal_with(cpn_identity_pk(tenant), eph, plain, strlen(plain), box,
                                   sizeof box, &n),
                     CPN_OK);
    s_check_hex(d, "access-box-hex", box, n);

    const char *bh = s_get(d, "access-box-hex");
    size_t bn = strlen(bh) / 2, got = 0;
    uint8_t docbox[CPN_ACCESS_BOX_MAX];
    assert_true(bn <= sizeof docbox);
    assert_int_equal(sodium_hex2bin(docbox, sizeof docbox, bh, strlen(bh), NULL, &got, NULL), 0);
    assert_int_equal(got, bn);
    char text[CPN_ACCESS_MAX + 1];
    assert_int_equal(cpn_seal_open(tenant, docbox, bn, text, sizeof text, &tl), CPN_OK);
    assert_string_equal(text, plain);
    assert_int_equal(crypto_box_seal_open(opened, docbox, bn, xpk, xsk), 0);
    assert_memory_equal(opened, plain, strlen(plain));
    sodium_memzero(xsk, sizeof xsk);
    cpn_identity_destroy(&tenant);
}

static void test_hello_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    cpn_identity_t *id = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);

    assert_string_equal(s_get(d, "type"), "HELLO");
    uint64_t ts = strtoull(s_get(d, "ts"), NULL, 10);
    uint64_t seq = strtoull(s_get(d, "seq"), NULL, 10);
    assert_true(ts == 1700000000000ull);
    assert_true(seq == ts << 12);

    cpn_hello_t hello = {.role = "peer", .name = "dc-1", .endpoint = "tcp://127.0.0.1:7100"};
    uint8_t *body = NULL, *frame = NULL;
    size_t body_len = 0, frame_len = 0;
    assert_int_equal(cpn_msg_encode(CPN_MSG_HELLO, &hello, &body, &body_len), CPN_OK);
    s_check_hex(d, "body-hex", body, body_len);

    assert_int_equal(cpn_env_seal(id, CPN_MSG_HELLO, seq, ts, body, body_len, &frame, &frame_len),
                     CPN_OK);
    s_check_hex(d, "frame-hex", frame, frame_len);

    cpn_env_t env;
    assert_int_equal(cpn_env_open(frame, frame_len, NULL, &env), CPN_OK);
    s_check_hex(d, "payload-hex", env.payload, env.payload_len);
    s_check_hex(d, "sig-hex", env.sig, CPN_SIG_LEN);

    /* the signed bytes: context || type || 0x00 || payload, and the signature is over them */
    size_t m_len = 6 + 5 + 1 + env.payload_len;
    uint8_t *m = malloc(m_len);
    assert_non_null(m);
    memcpy(m, CPN_SIG_CONTEXT "HELLO", 11);
    m[11] = 0;
    memcpy(m + 12, env.payload, env.payload_len);
    s_check_hex(d, "signed-hex", m, m_len);
    assert_int_equal(crypto_sign_verify_detached(env.sig, m, m_len, cpn_identity_pk(id)), 0);
    free(m);

    /* The document's frame, decoded from its hex, opens and decodes to the same HELLO. */
    const char *fh = s_get(d, "frame-hex");
    size_t n = strlen(fh) / 2, got = 0;
    uint8_t *docf = malloc(n);
    assert_non_null(docf);
    assert_int_equal(sodium_hex2bin(docf, n, fh, strlen(fh), NULL, &got, NULL), 0);
    assert_int_equal(got, n);
    assert_int_equal(cpn_env_open(docf, n, NULL, &env), CPN_OK);
    assert_true(env.seq == seq && env.ts_ms == ts);
    cpn_hello_t back;
    assert_int_equal(cpn_hello_decode(&env, NULL, &back), CPN_OK);
    assert_string_equal(back.endpoint, "tcp://127.0.0.1:7100");

    free(docf);
    free(body);
    free(frame);
    cpn_identity_destroy(&id);
}

/* A SUMMARY (§12, "Summaries for distant brokers") signed with the same key, seq and ts. */
static void test_summary_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    cpn_identity_t *id = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);
    cpn_package_t row = {.id = "s0123456789abcdef",
                         .region = "cn-east",
                         .price = 1500,
                         .total = 30,
                         .free = 7,
                         .cores = 8,
                         .mem_bytes = (uint64_t)32 << 30};
    cpn_ad_t sum = {.name = "broker-1", .ttl_s = 60, .n_packages = 1, .packages = &row};
    uint8_t *body = NULL, *frame = NULL;
    size_t body_len = 0, frame_len = 0;
    uint64_t ts = 1700000000000ull;
    assert_int_equal(cpn_msg_encode(CPN_MSG_SUMMARY, &sum, &body, &body_len), CPN_OK);
    s_check_hex(d, "summary-body-hex", body, body_len);
    assert_int_equal(
        cpn_env_seal(id, CPN_MSG_SUMMARY, ts << 12, ts, body, body_len, &frame, &frame_len),
        CPN_OK);
    s_check_hex(d, "summary-frame-hex", frame, frame_len);
    cpn_env_t env;
    assert_int_equal(cpn_env_open(frame, frame_len, NULL, &env), CPN_OK);
    assert_int_equal(env.type, CPN_MSG_SUMMARY);
    free(body);
    free(frame);
    cpn_identity_destroy(&id);
}

/* A shared package map as an AD carries it (issue 16): the fragmentation summary with its
 * fit points; the code packs exactly the document's bytes and reads them back. */
static void test_shared_package_vector(void **state)
{
    s_doc_t *d = *state;
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "a10x2");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.price = 1000;
    p.total = 4;
    p.free = 3;
    p.cores = 16;
    p.mem_bytes = 64ULL << 30;
    p.slice_max = 1000;
    p.frag = 120;
    snprintf(p.accel.vendor, sizeof p.accel.vendor, "nvidia");
    snprintf(p.accel.model, sizeof p.accel.model, "A10");
    p.accel.count = 2;
    p.accel.mem_bytes = 24ULL << 30;
    p.accel.bf16_tflops = 125;
    p.accel.share_min = 50;
    cpn_slice_sum_t sum = {.n_fit = 2,
                           .fit = {{2000, 16000, 65536}, {700, 4000, 8192}},
                           .n_grad = 2,
                           .grad = {{250, -120}, {1000, 35}}};
    p.sum = &sum;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(cpn_package_pack(&pk, &p), CPN_OK);
    s_check_hex(d, "shared-package-hex", (const uint8_t *)sb.data, sb.size);
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_zone_init(&zone, 1024);
    assert_int_equal(
        mp_parse((const uint8_t *)sb.data, sb.size, &cpn_limits_default, &zone, &obj), CPN_OK);
    cpn_package_t back;
    cpn_slice_sum_t back_sum;
    assert_int_equal(cpn_package_unpack(&obj, &back, &back_sum), CPN_OK);
    assert_ptr_equal(back.sum, &back_sum); /* the lists land in the caller's room */
    assert_memory_equal(&back_sum, &sum, sizeof sum);
    back.sum = p.sum;
    assert_memory_equal(&back, &p, sizeof p);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* §7 USAGE: two records of the vector lease, signed by the vector peer, rebuilt byte for byte;
 * the second names the first's hash and prices by the cumulative rule. */
static void s_usage_frame(cpn_identity_t *peer, const cpn_usage_t *rec, uint8_t **f, size_t *n)
{
    assert_int_equal(cpn_msg_build(peer, CPN_MSG_USAGE, rec->to_ms << 12, rec->to_ms, rec, f, n),
                     CPN_OK);
}

static void test_usage_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32], h[CPN_USAGE_HASH_LEN];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    cpn_identity_t *peer = NULL, *tenant = NULL;
    assert_int_equal(cpn_identity_from_seed(seed, &peer), CPN_OK);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(32 + i);
    assert_int_equal(cpn_identity_from_seed(seed, &tenant), CPN_OK);
    cpn_usage_t first, r1, r2;
    memset(&first, 0, sizeof first);
    snprintf(first.lease_id, sizeof first.lease_id, "%s", s_get(d, "lease-id"));
    memcpy(first.tenant, cpn_identity_pk(tenant), CPN_PK_LEN);
    snprintf(first.package, sizeof first.package, "%s", s_get(d, "usage-package"));
    first.units = (uint32_t)strtoul(s_get(d, "usage-units"), NULL, 10);
    first.price = strtoull(s_get(d, "usage-price"), NULL, 10);
    first.start_ms = strtoull(s_get(d, "usage-start-ms"), NULL, 10);
    uint64_t to1 = strtoull(s_get(d, "usage1-to-ms"), NULL, 10);
    uint64_t to2 = strtoull(s_get(d, "usage2-to-ms"), NULL, 10);
    assert_int_equal(cpn_usage_next(NULL, NULL, &first, to1, false, &r1), CPN_OK);
    assert_int_equal(r1.amount, strtoull(s_get(d, "usage1-amount"), NULL, 10));
    uint8_t *f1 = NULL, *f2 = NULL;
    size_t n1 = 0, n2 = 0;
    s_usage_frame(peer, &r1, &f1, &n1);
    s_check_hex(d, "usage1-frame-hex", f1, n1);
    cpn_usage_hash(f1, n1, h);
    s_check_hex(d, "usage1-hash-hex", h, sizeof h);
    assert_int_equal(cpn_usage_next(&r1, h, &first, to2, true, &r2), CPN_OK);
    assert_int_equal(r2.amount, strtoull(s_get(d, "usage2-amount"), NULL, 10));
    assert_int_equal(r2.total, strtoull(s_get(d, "usage2-total"), NULL, 10));
    s_usage_frame(peer, &r2, &f2, &n2);
    s_check_hex(d, "usage2-frame-hex", f2, n2);
    free(f1);
    free(f2);
    cpn_identity_destroy(&peer);
    cpn_identity_destroy(&tenant);
}

/* §7 RECEIPT: the broker's countersignature of the first USAGE record above, signed by the
 * broker key of seed 40 41 .. 5f, seq = ts << 12. */
static void test_receipt_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    cpn_identity_t *peer = NULL, *broker = NULL;
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    assert_int_equal(cpn_identity_from_seed(seed, &peer), CPN_OK);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0x40 + i);
    assert_int_equal(cpn_identity_from_seed(seed, &broker), CPN_OK);
    s_check_hex(d, "receipt-broker-pk-hex", cpn_identity_pk(broker), CPN_PK_LEN);
    cpn_receipt_t rc;
    memset(&rc, 0, sizeof rc);
    memcpy(rc.peer, cpn_identity_pk(peer), CPN_PK_LEN);
    snprintf(rc.lease_id, sizeof rc.lease_id, "%s", s_get(d, "lease-id"));
    rc.n = 1;
    const char *hh = s_get(d, "usage1-hash-hex");
    size_t got = 0;
    assert_int_equal(sodium_hex2bin(rc.hash, sizeof rc.hash, hh, strlen(hh), NULL, &got, NULL), 0);
    assert_int_equal(got, sizeof rc.hash);
    uint64_t ts = strtoull(s_get(d, "receipt-ts"), NULL, 10);
    uint8_t *f = NULL;
    size_t n = 0;
    assert_int_equal(cpn_msg_build(broker, CPN_MSG_RECEIPT, ts << 12, ts, &rc, &f, &n), CPN_OK);
    s_check_hex(d, "receipt-frame-hex", f, n);
    free(f);
    cpn_identity_destroy(&peer);
    cpn_identity_destroy(&broker);
}

/* §7 STATEMENT: broker A's statement with broker B for 2026-12, one line: the vector lease
 * (B's tenant on A's peer: due to A), its two USAGE records above, rebuilt byte for byte. */
static void test_statement_vector(void **state)
{
    s_doc_t *d = *state;
    uint8_t seed[32];
    cpn_identity_t *peer = NULL, *tenant = NULL, *a = NULL, *b = NULL;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 32; i++)
            seed[i] = (uint8_t)(k * 32 + i); /* peer, tenant, then 0x40.., 0x60.. */
        cpn_identity_t **id = k == 0 ? &peer : k == 1 ? &tenant : k == 2 ? &a : &b;
        assert_int_equal(cpn_identity_from_seed(seed, id), CPN_OK);
    }
    cpn_usage_t first, r1, r2;
    memset(&first, 0, sizeof first);
    snprintf(first.lease_id, sizeof first.lease_id, "%s", s_get(d, "lease-id"));
    memcpy(first.tenant, cpn_identity_pk(tenant), CPN_PK_LEN);
    snprintf(first.package, sizeof first.package, "%s", s_get(d, "usage-package"));
    first.units = (uint32_t)strtoul(s_get(d, "usage-units"), NULL, 10);
    first.price = strtoull(s_get(d, "usage-price"), NULL, 10);
    first.start_ms = strtoull(s_get(d, "usage-start-ms"), NULL, 10);
    uint8_t *f = NULL, h[CPN_USAGE_HASH_LEN];
    size_t n = 0;
    assert_int_equal(cpn_usage_next(NULL, NULL, &first,
                                    strtoull(s_get(d, "usage1-to-ms"), NULL, 10), false, &r1),
                     CPN_OK);
    s_usage_frame(peer, &r1, &f, &n);
    cpn_usage_hash(f, n, h);
    free(f);
    assert_int_equal(cpn_usage_next(&r1, h, &first, strtoull(s_get(d, "usage2-to-ms"), NULL, 10),
                                    true, &r2),
                     CPN_OK);
    s_usage_frame(peer, &r2, &f, &n);
    cpn_stmt_line_t line;
    memset(&line, 0, sizeof line);
    memcpy(line.peer, cpn_identity_pk(peer), CPN_PK_LEN);
    memcpy(line.lease_id, r2.lease_id, strlen(r2.lease_id)); /* 17 bytes */
    memcpy(line.tenant, cpn_identity_pk(tenant), CPN_PK_LEN);
    line.dir = CPN_STMT_DUE;
    line.n_first = 1;
    line.n_last = 2;
    line.amount = r1.amount + r2.amount;
    cpn_usage_hash(f, n, line.last);
    free(f);
    uint8_t packed[CPN_STMT_LINE_LEN];
    cpn_stmt_line_pack(&line, packed);
    s_check_hex(d, "statement-line-hex", packed, sizeof packed);
    cpn_statement_t st;
    memset(&st, 0, sizeof st);
    memcpy(st.with, cpn_identity_pk(b), CPN_PK_LEN);
    snprintf(st.period, sizeof st.period, "%s", s_get(d, "statement-period"));
    st.part = st.parts = 1;
    assert_int_equal(cpn_usage_month_parse(st.period, &st.from_ms, &st.to_ms), CPN_OK);
    uint8_t *lines = NULL;
    assert_int_equal(cpn_stmt_fill(&st, &line, 1, &lines), CPN_OK);
    assert_int_equal(st.due, strtoull(s_get(d, "usage2-total"), NULL, 10));
    uint64_t ts = strtoull(s_get(d, "statement-ts"), NULL, 10);
    assert_int_equal(cpn_msg_build(a, CPN_MSG_STATEMENT, 1, ts, &st, &f, &n), CPN_OK);
    s_check_hex(d, "statement-frame-hex", f, n);
    char why[CPN_REASON_MAX];
    assert_int_equal(cpn_stmt_check(&st, why), CPN_OK);
    free(f);
    free(lines);
    cpn_identity_destroy(&peer);
    cpn_identity_destroy(&tenant);
    cpn_identity_destroy(&a);
    cpn_identity_destroy(&b);
}

static void test_error_table(void **state)
{
    s_doc_t *d = *state;
    char row[256];
#define X(name, val, slug, reason)                                                           \
    snprintf(row, sizeof row, "| %d | `%s` | %s |", (val), (slug), (reason));                \
    if (!strstr(d->doc, row))                                                                 \
        fail_msg("docs/PROTOCOL.md lacks the error row: %s", row);
    CPN_ERRORS(X)
#undef X
}

static void test_type_list(void **state)
{
    s_doc_t *d = *state;
    char row[64];
    for (int t = CPN_MSG_NONE + 1; t < CPN_MSG__COUNT; t++) {
        snprintf(row, sizeof row, "\n### %s\n", cpn_msg_name((cpn_msg_type_t)t));
        if (!strstr(d->doc, row))
            fail_msg("docs/PROTOCOL.md has no section for %s", cpn_msg_name((cpn_msg_type_t)t));
        snprintf(row, sizeof row, "| `%s` |", cpn_msg_name((cpn_msg_type_t)t));
        if (!strstr(d->doc, row))
            fail_msg("docs/PROTOCOL.md's type table lacks %s", cpn_msg_name((cpn_msg_type_t)t));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_lease_id_vector),
        cmocka_unit_test(test_hello_vector),
        cmocka_unit_test(test_summary_vector),
        cmocka_unit_test(test_access_vector),
        cmocka_unit_test(test_shared_package_vector),
        cmocka_unit_test(test_usage_vector),
        cmocka_unit_test(test_receipt_vector),
        cmocka_unit_test(test_statement_vector),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_type_list),
    };
    return cmocka_run_group_tests_name("vectors", tests, s_setup, s_teardown);
}
