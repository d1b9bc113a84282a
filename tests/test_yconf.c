/* test_yconf.c - YAML loading: the example files load; errors carry file:line:column and the
 * key path; limits (size, depth, nodes) refuse hostile files quickly; binding of every field
 * kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "identity.h"
#include "yconf.h"

#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static const char *s_srcdir(void)
{
    const char *d = getenv("CPN_SRCDIR");
    return d && *d ? d : ".";
}

static void s_path(char *buf, size_t cap, const char *rel)
{
    int k = snprintf(buf, cap, "%s/%s", s_srcdir(), rel);
    assert_true(k > 0 && (size_t)k < cap);
}

/* Does any recorded error contain `needle`? Prints them all if not, to show why. */
static bool s_has_error(const yconf_t *doc, const char *needle)
{
    for (size_t i = 0; i < yconf_error_count(doc); i++)
        if (strstr(yconf_error_at(doc, i), needle))
            return true;
    print_error("no error contains: %s\n", needle);
    yconf_print_errors(doc, stderr);
    return false;
}

static yconf_t *s_load(const char *text, int want)
{
    yconf_t *doc = NULL;
    int r = yconf_load_buffer("x.yaml", text, strlen(text), &doc);
    if (r != want)
        yconf_print_errors(doc, stderr);
    assert_int_equal(r, want);
    assert_non_null(doc);
    return doc;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the example files ---- */

static void test_conf_requests_load(void **state)
{
    (void)state;
    char path[1024];
    cpn_request_t r;
    yconf_t *doc = NULL;

    s_path(path, sizeof path, "conf/request-h100.yaml");
    int rc = yconf_request_file(path, &r, &doc);
    if (rc != CPN_OK)
        yconf_print_errors(doc, stderr);
    assert_int_equal(rc, CPN_OK);
    assert_int_equal(yconf_error_count(doc), 0);
    assert_string_equal(r.accel_model, "H100-80GB");
    assert_int_equal(r.accel_count, 8);
    assert_int_equal(r.units, 1);
    assert_int_equal(r.duration_s, 4 * 3600);
    assert_int_equal(r.regions.n, 1);
    assert_string_equal(r.regions.items[0], "cn-east");
    assert_int_equal(r.mem_bytes, 512 * GiB);
    assert_int_equal(r.storage_bytes, 10000000000000ULL);
    assert_int_equal(r.fabric_bps, 400000000000ULL);
    assert_int_equal(r.max_price, 250000);
    yconf_destroy(&doc);
    assert_null(doc);

    s_path(path, sizeof path, "conf/request-capability.yaml");
    assert_int_equal(yconf_request_file(path, &r, NULL), CPN_OK);
    assert_string_equal(r.accel_model, "");
    assert_string_equal(r.accel_vendor, "");
    assert_int_equal(r.min_tflops, 2000);
    assert_int_equal(r.min_accel_mem, 256 * GiB);
    assert_int_equal(r.max_price, 120000);
    assert_int_equal(r.max_cost, 400000);
    assert_int_equal(r.regions.n, 0);
    assert_int_equal(r.prefer_regions.n, 1);

    s_path(path, sizeof path, "conf/request-impossible.yaml");
    assert_int_equal(yconf_request_file(path, &r, NULL), CPN_OK);
    assert_string_equal(r.accel_model, "B200");
    assert_int_equal(r.accel_count, 16);
    assert_string_equal(r.regions.items[0], "eu-west");
}

static void test_packages_load(void **state)
{
    (void)state;
    char path[1024], ip[64];
    yconf_t *doc = NULL;
    s_path(path, sizeof path, "tests/data/packages.yaml");
    assert_int_equal(yconf_load_file(path, &doc), CPN_OK);
    const ynode_t *list = yconf_get(yconf_root(doc), "packages");
    assert_non_null(list);
    assert_int_equal(list->kind, YNODE_SEQ);
    assert_int_equal(list->n, 4);
    cpn_package_t p[4];
    for (size_t i = 0; i < list->n; i++) {
        snprintf(ip, sizeof ip, "packages[%zu]", i);
        int rc = yconf_package(doc, list->items[i], ip, &p[i]);
        if (rc != CPN_OK)
            yconf_print_errors(doc, stderr);
        assert_int_equal(rc, CPN_OK);
    }
    assert_string_equal(p[0].id, "h100x8-nvme");
    assert_string_equal(p[0].accel.vendor, "nvidia"); /* vendors are kept in lower case */
    assert_int_equal(p[0].accel.count, 8);
    assert_int_equal(p[0].accel.mem_bytes, 80 * GiB);
    assert_int_equal(p[0].accel.bf16_tflops, 989);
    assert_int_equal(p[0].accel.mem_bw_gbs, 3350);
    assert_int_equal(p[0].mem_bytes, TiB);
    assert_int_equal(p[0].storage_bytes, 15000000000000ULL);
    assert_int_equal(p[0].storage_iops, 1000000);
    assert_int_equal(p[0].fabric_bps, 400000000000ULL);
    assert_int_equal(p[0].egress_bps, 25000000000ULL);
    assert_int_equal(p[0].price, 210000);
    assert_int_equal(p[0].total, 12);
    assert_int_equal(p[0].free, 12);
    assert_int_equal(p[1].accel.mem_bw_gbs, 1600); /* plain number: GB/s */
    assert_int_equal(p[1].storage_bytes, 7680000000000ULL);
    assert_int_equal(p[1].price, 90000);
    assert_int_equal(p[2].accel.count, 0);
    assert_int_equal(p[2].price, 3200);
    assert_int_equal(p[3].cores, 0);
    assert_int_equal(p[3].storage_bytes, 1000000000000000ULL);
    assert_int_equal(p[3].price, 450);
    /* The capability request is met by the Ascend unit and priced out on the H100 one. */
    cpn_request_t r;
    char rpath[1024];
    s_path(rpath, sizeof rpath, "conf/request-capability.yaml");
    assert_int_equal(yconf_request_file(rpath, &r, NULL), CPN_OK);
    assert_int_equal(cpn_package_fits(&p[1], &r), CPN_C_OK);
    assert_int_equal(cpn_package_fits(&p[0], &r), CPN_C_PRICE);
    assert_int_equal(cpn_package_fits(&p[2], &r), CPN_C_TFLOPS);
    s_path(rpath, sizeof rpath, "conf/request-h100.yaml");
    assert_int_equal(yconf_request_file(rpath, &r, NULL), CPN_OK);
    assert_int_equal(cpn_package_fits(&p[0], &r), CPN_C_OK);
    assert_int_equal(cpn_package_fits(&p[1], &r), CPN_C_ACCEL_MODEL);
    yconf_destroy(&doc);
}

/* ---- errors name file:line:col and the key path ---- */

static void test_error_position_and_path(void **state)
{
    (void)state;
    yconf_t *doc = s_load("packages:\n"
                          "  - id: a\n"
                          "    accelerators:\n"
                          "      count: 0\n"
                          "      vendor: nvidia\n"
                          "  - id: b\n"
                          "    count: two\n",
                          CPN_OK);
    const ynode_t *list = yconf_get(yconf_root(doc), "packages");
    cpn_package_t p;
    assert_int_equal(yconf_package(doc, list->items[0], "packages[0]", &p), CPN_E_CONFIG);
    assert_int_equal(yconf_package(doc, list->items[1], "packages[1]", &p), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:4:14: packages[0].accelerators.count: expected an "
                                 "integer from 1 to 1024"));
    assert_true(s_has_error(doc, "x.yaml:4:7: packages[0].accelerators: missing required "
                                 "key \"model\""));
    assert_true(s_has_error(doc, "x.yaml:2:5: packages[0]: missing required key \"count\""));
    assert_true(s_has_error(doc, "x.yaml:2:5: packages[0]: missing required key \"price\""));
    assert_true(s_has_error(doc, "x.yaml:7:12: packages[1].count: expected an integer from 1 "
                                 "to 1000000"));
    /* Binding went on past the first error: every mistake is reported in one pass. */
    assert_true(yconf_error_count(doc) >= 8);
    yconf_destroy(&doc);

    /* The example of the issue, exactly. */
    doc = s_load("packages:\n- id: x\n  accelerators:\n    count: -1\n", CPN_OK);
    list = yconf_get(yconf_root(doc), "packages");
    const yfield_t count_only[] = {
        {.key = "count", .kind = YF_U32, .off = 0, .required = true, .min = 1},
    };
    const yfield_t acc[] = {
        {.key = "id", .kind = YF_STR, .off = 4, .size = 8},
        {.key = "accelerators", .kind = YF_MAP, .off = 0, .sub = count_only, .n_sub = 1},
    };
    uint8_t dst[16];
    assert_int_equal(yconf_bind(doc, list->items[0], "packages[1]", acc, 2, dst), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:4:12: packages[1].accelerators.count: expected a "
                                 "positive integer"));
    yconf_destroy(&doc);
}

/* access: a map of hints for the peer's driver; each name and value checked as on the wire. */
static void test_request_access_hints(void **state)
{
    (void)state;
    yconf_t *doc = s_load("id: r1\n"
                          "duration: 1h\n"
                          "cores: 4\n"
                          "access:\n"
                          "  user: acme\n"
                          "  ssh_key: \"ssh-ed25519 AAAAC3 acme@laptop\"\n",
                          CPN_OK);
    cpn_request_t r;
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_OK);
    assert_int_equal(r.access.n, 2);
    assert_string_equal(cpn_hints_get(&r.access, "ssh_key"), "ssh-ed25519 AAAAC3 acme@laptop");
    assert_string_equal(cpn_hints_get(&r.access, "user"), "acme");
    yconf_destroy(&doc);

    doc = s_load("id: r1\n"
                 "duration: 1h\n"
                 "cores: 4\n"
                 "access:\n"
                 "  SSH-Key: x\n"
                 "  user: [a, b]\n"
                 "  group: \"tab\\there\"\n",
                 CPN_OK);
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:5:3: access.SSH-Key: an access hint's name is 1-31 "
                                 "characters of a-z, 0-9 and _"));
    assert_true(s_has_error(doc, "x.yaml:6:9: access.user: expected a non-empty line of text "
                                 "(no control characters)"));
    assert_true(s_has_error(doc, "x.yaml:7:10: access.group: expected a non-empty line of text "
                                 "(no control characters)"));
    yconf_destroy(&doc);

    doc = s_load("id: r1\nduration: 1h\ncores: 4\naccess: ssh-ed25519 AAAA\n", CPN_OK);
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:4:9: access: expected a map of access hints such as "
                                 "{ssh_key: \"...\"}"));
    yconf_destroy(&doc);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    yconf_t *doc = s_load("id: r1\n"
                          "duration: 1h\n"
                          "acelerators: {count: 1}\n"
                          "cores: 4\n"
                          "colour: red\n",
                          CPN_OK);
    cpn_request_t r;
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:3:1: unknown key \"acelerators\" (did you mean "
                                 "\"accelerators\"?)"));
    assert_true(s_has_error(doc, "x.yaml:5:1: unknown key \"colour\""));
    yconf_destroy(&doc);

    /* Inside a nested map the path leads to it. */
    doc = s_load("id: r1\nduration: 1h\naccelerators:\n  count: 1\n  modle: H100\n", CPN_OK);
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:5:3: accelerators: unknown key \"modle\" (did you "
                                 "mean \"model\"?)"));
    yconf_destroy(&doc);

    /* Extra keys a caller handles itself are ignored; others still are errors. */
    doc = s_load("id: p\ncount: 1\nregion: r\nprice: \"1.0\"\ncores: 2\nfloor: \"0.5\"\n", CPN_OK);
    static const char *const extra[] = {"floor", NULL};
    cpn_package_t p;
    assert_int_equal(yconf_package_ex(doc, yconf_root(doc), "", &p, extra), CPN_OK);
    assert_int_equal(yconf_error_count(doc), 0);
    assert_int_equal(yconf_package(doc, yconf_root(doc), "", &p), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:6:1: unknown key \"floor\""));
    yconf_destroy(&doc);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    yconf_t *doc = s_load("id: a\ncores: 4\nid: b\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:3:1: id: duplicate key (first at line 1)"));
    assert_null(yconf_root(doc));
    yconf_destroy(&doc);

    /* In a big map too (sorted check), with the path of the map. */
    char buf[4096];
    size_t len = 0;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "outer:\n  inner:\n");
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "    k%d: %d\n", i, i);
    len += (size_t)snprintf(buf + len, sizeof buf - len, "    k7: again\n");
    doc = s_load(buf, CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:43:5: outer.inner.k7: duplicate key (first at line "
                                 "10)"));
    yconf_destroy(&doc);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    yconf_t *doc = s_load("id: a\nlist: [1, 2\nnext: 3\n", CPN_E_YAML);
    assert_int_equal(yconf_error_count(doc), 1);
    int line = 0, col = 0;
    assert_int_equal(sscanf(yconf_error_at(doc, 1 - 1), "x.yaml:%d:%d:", &line, &col), 2);
    assert_int_equal(line, 3);
    assert_true(col >= 1);
    yconf_destroy(&doc);

    doc = s_load("a: 1\n  b: 2\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:2:4: mapping values are not allowed in this context"));
    yconf_destroy(&doc);

    doc = s_load("a: \"unterminated\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:2:1: found unexpected end of stream"));
    yconf_destroy(&doc);

    /* Invalid UTF-8 is a reader error, located by byte offset. */
    doc = s_load("a: \xff\xfe\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml: byte 3: invalid leading UTF-8 octet"));
    yconf_destroy(&doc);

    doc = s_load("a: 1\n---\nb: 2\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:2:1: more than one document"));
    yconf_destroy(&doc);

    doc = s_load("? [a, b]\n: 1\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:1:3: map keys must be plain scalars"));
    yconf_destroy(&doc);

    doc = s_load("a: \"x\\0y\"\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:1:4: a: NUL character in a string"));
    yconf_destroy(&doc);
}

static void test_anchors_refused(void **state)
{
    (void)state;
    yconf_t *doc = s_load("a: &x 1\nb: *x\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:1:4: a: anchors and aliases are not allowed"));
    yconf_destroy(&doc);
    /* The billion laughs never gets going. */
    doc = s_load("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "anchors and aliases are not allowed"));
    yconf_destroy(&doc);
    doc = s_load("list:\n  - *undefined\n", CPN_E_YAML);
    assert_true(s_has_error(doc, "x.yaml:2:5: list[0]: anchors and aliases are not allowed"));
    yconf_destroy(&doc);
}

static void test_size_limit(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpn-yconf-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* Valid YAML all the way: the size alone refuses it, before parsing. */
    fputs("comment: |\n", f);
    for (size_t n = 11; n <= YCONF_MAX_FILE;) {
        fputs("  0123456789012345678901234567890123456789012345678901234567890123456789\n", f);
        n += 73;
    }
    fclose(f);
    yconf_t *doc = NULL;
    double t0 = s_now();
    assert_int_equal(yconf_load_file(path, &doc), CPN_E_TOO_BIG);
    assert_true(s_now() - t0 < 0.5);
    assert_non_null(doc);
    assert_true(s_has_error(doc, "big.yaml: file is "));
    assert_true(s_has_error(doc, "more than the limit of 1048576"));
    yconf_destroy(&doc);
    unlink(path);

    /* Exactly at the limit is fine. */
    char *buf = malloc(YCONF_MAX_FILE + 1);
    assert_non_null(buf);
    memset(buf, ' ', YCONF_MAX_FILE);
    memcpy(buf, "a: 1\n#", 6);
    assert_int_equal(yconf_load_buffer("edge.yaml", buf, YCONF_MAX_FILE, &doc), CPN_OK);
    yconf_destroy(&doc);
    assert_int_equal(yconf_load_buffer("edge.yaml", buf, YCONF_MAX_FILE + 1, &doc), CPN_E_TOO_BIG);
    assert_true(s_has_error(doc, "edge.yaml: 1048577 bytes, more than the limit"));
    yconf_destroy(&doc);
    free(buf);

    /* A missing file reports its name. */
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    assert_int_equal(yconf_load_file(path, &doc), CPN_E_IO);
    assert_true(s_has_error(doc, "missing.yaml: No such file or directory"));
    yconf_destroy(&doc);
    rmdir(dir);
}

static void s_deep(const char *unit, size_t times, const char *tail, const char *needle)
{
    size_t ul = strlen(unit), len = ul * times + strlen(tail);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < times; i++)
        memcpy(buf + i * ul, unit, ul);
    memcpy(buf + ul * times, tail, strlen(tail) + 1);
    yconf_t *doc = NULL;
    double t0 = s_now();
    int r = yconf_load_buffer("deep.yaml", buf, len, &doc);
    double dt = s_now() - t0;
    assert_int_equal(r, CPN_E_TOO_BIG);
    assert_true(s_has_error(doc, needle));
    assert_null(yconf_root(doc));
    if (dt >= 1.0)
        print_error("took %.3f s\n", dt);
    assert_true(dt < 1.0);
    yconf_destroy(&doc);
    free(buf);
}

static void test_depth_limit(void **state)
{
    (void)state;
    s_deep("[", 50000, "", "deep.yaml:1:33: nesting deeper than 32 levels");
    s_deep("{a: ", 50000, "", "deep.yaml:1:129: nesting deeper than 32 levels");
    s_deep("- ", 50000, "x\n", "deep.yaml:1:65: nesting deeper than 32 levels");
    /* 32 levels are allowed. */
    char ok[80];
    memset(ok, '[', 32);
    memset(ok + 32, ']', 32);
    ok[64] = '\0';
    yconf_t *doc = s_load(ok, CPN_OK);
    yconf_destroy(&doc);
}

static void test_node_limit(void **state)
{
    (void)state;
    /* 200,000 nodes in 400 KB: flat, so only the node count stops it. */
    size_t n = 2 + 2 * 200000;
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    buf[0] = '[';
    for (size_t i = 0; i < 200000; i++)
        memcpy(buf + 1 + 2 * i, "1,", 2);
    buf[n - 1] = ']';
    buf[n] = '\0';
    yconf_t *doc = NULL;
    assert_int_equal(yconf_load_buffer("wide.yaml", buf, n, &doc), CPN_E_TOO_BIG);
    assert_true(s_has_error(doc, "wide.yaml:1:"));
    assert_true(s_has_error(doc, "more than 100000 nodes"));
    yconf_destroy(&doc);
    free(buf);
}

/* ---- binding of every kind ---- */

typedef struct {
    char name[16];
    uint32_t u32;
    uint64_t u64;
    bool flag;
    uint64_t bytes, rate, dur, price;
    uint8_t key[32], key2[32];
    cpn_namelist_t one, many;
    struct {
        uint32_t x;
    } sub;
    int custom;
} s_all_t;

static int s_custom_even(yconf_t *doc, const ynode_t *node, const char *path, void *dst, void *arg)
{
    assert_ptr_equal(arg, (void *)&s_custom_even);
    if (node->kind != YNODE_SCALAR || atoi(node->value) % 2 != 0) {
        yconf_error(doc, node, path, "expected an even number");
        return CPN_E_CONFIG;
    }
    *(int *)dst = atoi(node->value);
    return CPN_OK;
}

static const yfield_t s_sub_fields[] = {
    {.key = "x", .kind = YF_U32, .off = 0, .required = true, .min = 1, .max = 9},
};

static const yfield_t s_all_fields[] = {
    {.key = "name", .kind = YF_STR, .off = offsetof(s_all_t, name), .size = 16, .min = 1},
    {.key = "u32", .kind = YF_U32, .off = offsetof(s_all_t, u32)},
    {.key = "u64", .kind = YF_U64, .off = offsetof(s_all_t, u64), .min = 10, .max = 20},
    {.key = "flag", .kind = YF_BOOL, .off = offsetof(s_all_t, flag)},
    {.key = "bytes", .kind = YF_BYTES, .off = offsetof(s_all_t, bytes), .min = 1024},
    {.key = "rate", .kind = YF_BITRATE, .off = offsetof(s_all_t, rate)},
    {.key = "dur", .kind = YF_DURATION, .off = offsetof(s_all_t, dur), .max = 86400},
    {.key = "price", .kind = YF_PRICE, .off = offsetof(s_all_t, price)},
    {.key = "key", .kind = YF_KEY, .off = offsetof(s_all_t, key)},
    {.key = "key2", .kind = YF_KEY, .off = offsetof(s_all_t, key2)},
    {.key = "one", .kind = YF_NAMES, .off = offsetof(s_all_t, one)},
    {.key = "many", .kind = YF_NAMES, .off = offsetof(s_all_t, many)},
    {.key = "sub", .kind = YF_MAP, .off = offsetof(s_all_t, sub), .sub = s_sub_fields, .n_sub = 1},
    {.key = "custom",
     .kind = YF_CUSTOM,
     .off = offsetof(s_all_t, custom),
     .custom = s_custom_even,
     .arg = (void *)&s_custom_even},
};
#define S_N_ALL (sizeof s_all_fields / sizeof s_all_fields[0])

static void test_bind_all_kinds(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpn-yconf-XXXXXX", base[64], path[256], pktext[CPN_PK_TEXT_LEN];
    uint8_t seed[CPN_SEED_LEN];
    cpn_identity_t *id = NULL;
    assert_non_null(mkdtemp(dir));
    memset(seed, 7, sizeof seed);
    assert_int_equal(cpn_identity_from_seed(seed, &id), CPN_OK);
    snprintf(base, sizeof base, "%s/peer", dir);
    assert_int_equal(cpn_identity_save(id, base), CPN_OK);
    cpn_pk_to_text(cpn_identity_pk(id), pktext);

    snprintf(path, sizeof path, "%s/all.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "name: alpha\nu32: 4294967295\nu64: 15\nflag: true\nbytes: 2KiB\nrate: 10Gbps\n"
            "dur: 1h30m\nprice: \"12.5\"\nkey: %s\nkey2: peer.pub\none: cn-east\n"
            "many: [a, b, c]\nsub: {x: 3}\ncustom: 4\n",
            pktext);
    fclose(f);
    yconf_t *doc = NULL;
    s_all_t all;
    memset(&all, 0, sizeof all);
    assert_int_equal(yconf_load_file(path, &doc), CPN_OK);
    int rc = yconf_bind(doc, yconf_root(doc), "", s_all_fields, S_N_ALL, &all);
    if (rc != CPN_OK)
        yconf_print_errors(doc, stderr);
    assert_int_equal(rc, CPN_OK);
    assert_string_equal(all.name, "alpha");
    assert_int_equal(all.u32, UINT32_MAX);
    assert_int_equal(all.u64, 15);
    assert_true(all.flag);
    assert_int_equal(all.bytes, 2048);
    assert_int_equal(all.rate, 10000000000ULL);
    assert_int_equal(all.dur, 5400);
    assert_int_equal(all.price, 12500);
    assert_memory_equal(all.key, cpn_identity_pk(id), 32);
    assert_memory_equal(all.key2, cpn_identity_pk(id), 32); /* relative to the YAML's dir */
    assert_int_equal(all.one.n, 1);
    assert_string_equal(all.one.items[0], "cn-east");
    assert_int_equal(all.many.n, 3);
    assert_string_equal(all.many.items[2], "c");
    assert_int_equal(all.sub.x, 3);
    assert_int_equal(all.custom, 4);
    yconf_destroy(&doc);

    /* Every kind wrong at once: one error each, all reported. */
    doc = s_load("name: \"\"\nu32: 4294967296\nu64: 9\nflag: yes\nbytes: 1000\n"
                 "rate: 10GB\ndur: 2d\nprice: \"1.2345\"\nkey: notakey\nkey2: nope.pub\n"
                 "one: {a: 1}\nmany: [a, b, c, d, e, f, g, h, i]\nsub: {x: 10}\n"
                 "custom: 3\nname2: x\n",
                 CPN_OK);
    memset(&all, 0, sizeof all);
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "cfg", s_all_fields, S_N_ALL, &all),
                     CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:1:7: cfg.name: must not be empty"));
    assert_true(s_has_error(doc, "x.yaml:2:6: cfg.u32: expected a non-negative integer"));
    assert_true(s_has_error(doc, "x.yaml:3:6: cfg.u64: expected an integer from 10 to 20"));
    assert_true(s_has_error(doc, "x.yaml:4:7: cfg.flag: expected true or false"));
    assert_true(s_has_error(doc, "x.yaml:5:8: cfg.bytes: must be at least 1KiB"));
    assert_true(s_has_error(doc, "x.yaml:6:7: cfg.rate: expected a bit rate"));
    assert_true(s_has_error(doc, "x.yaml:7:6: cfg.dur: must be from 0s to 1d0h0m"));
    assert_true(s_has_error(doc, "x.yaml:8:8: cfg.price: expected a price"));
    assert_true(s_has_error(doc, "x.yaml:9:6: cfg.key: expected a public key"));
    assert_true(s_has_error(doc, "x.yaml:10:7: cfg.key2: cannot load public key nope.pub"));
    assert_true(s_has_error(doc, "x.yaml:11:6: cfg.one: expected a list of names"));
    assert_true(s_has_error(doc, "x.yaml:12:7: cfg.many: at most 8 names"));
    assert_true(s_has_error(doc, "x.yaml:13:10: cfg.sub.x: expected an integer from 1 to 9"));
    assert_true(s_has_error(doc, "x.yaml:14:9: cfg.custom: expected an even number"));
    assert_true(s_has_error(doc, "x.yaml:15:1: cfg: unknown key \"name2\" (did you mean "
                                 "\"name\"?)"));
    assert_int_equal(yconf_error_count(doc), 15);
    yconf_destroy(&doc);

    /* Required keys and kinds of node. */
    static const yfield_t req[] = {
        {.key = "must", .kind = YF_STR, .off = 0, .size = 8, .required = true},
    };
    char small[8];
    doc = s_load("must: [1]\n", CPN_OK);
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "", req, 1, small), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:1:7: must: expected a value, found a list"));
    yconf_destroy(&doc);
    doc = s_load("other: 1\n", CPN_OK);
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "", req, 1, small), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:1:1: missing required key \"must\""));
    yconf_destroy(&doc);
    doc = s_load("must: toolongvalue\n", CPN_OK);
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "", req, 1, small), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "must: longer than 7 characters"));
    yconf_destroy(&doc);

    cpn_identity_destroy(&id);
    snprintf(path, sizeof path, "%s/all.yaml", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s.key", base);
    unlink(path);
    snprintf(path, sizeof path, "%s.pub", base);
    unlink(path);
    rmdir(dir);
}

static void test_misc(void **state)
{
    (void)state;
    /* An empty file is an empty scalar: binding says what it expected. */
    yconf_t *doc = s_load("", CPN_OK);
    assert_non_null(yconf_root(doc));
    assert_int_equal(yconf_root(doc)->kind, YNODE_SCALAR);
    cpn_request_t r;
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:1:1: expected a map, found a scalar"));
    assert_string_equal(yconf_name(doc), "x.yaml");
    yconf_destroy(&doc);
    yconf_destroy(&doc); /* NULL is fine */
    yconf_destroy(NULL);

    /* Errors are capped; the last line says so. */
    char buf[8192];
    size_t len = 0;
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "bad%d: 1\n", i);
    doc = s_load(buf, CPN_OK);
    static const yfield_t none[] = {{.key = "good", .kind = YF_BOOL, .off = 0}};
    bool b;
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "", none, 1, &b), CPN_E_CONFIG);
    assert_int_equal(yconf_error_count(doc), YCONF_MAX_ERRORS);
    assert_non_null(strstr(yconf_error_at(doc, YCONF_MAX_ERRORS - 1), "too many errors"));
    assert_null(yconf_error_at(doc, YCONF_MAX_ERRORS));
    /* Still failing once the cap is reached. */
    assert_int_equal(yconf_bind(doc, yconf_root(doc), "", none, 1, &b), CPN_E_CONFIG);
    yconf_destroy(&doc);

    /* A request with cross-field mistakes gets the validation reason at its node. */
    doc = s_load("id: r\nduration: 1h\naccelerators: {model: H100-80GB}\n", CPN_OK);
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "x.yaml:1:1: an accelerator model needs a count"));
    yconf_destroy(&doc);

    /* Defaults: units 1, split false; vendors lower-cased. */
    doc = s_load("id: r\nduration: 30m\naccelerators: {vendor: Huawei, count: 8}\n"
                 "prefer: {vendors: [Huawei, NVIDIA]}\nsplit: false\n",
                 CPN_OK);
    assert_int_equal(yconf_request(doc, yconf_root(doc), "", &r), CPN_OK);
    assert_int_equal(r.units, 1);
    assert_false(r.split);
    assert_string_equal(r.accel_vendor, "huawei");
    assert_string_equal(r.prefer_vendors.items[1], "nvidia");
    assert_int_equal(r.duration_s, 1800);
    yconf_destroy(&doc);

    /* Memory bandwidth forms. */
    doc = s_load("id: p\ncount: 1\nregion: r\nprice: \"1\"\naccelerators: {vendor: v, "
                 "model: m, count: 1, memory: 1GiB, bf16_tflops: 1, memory_bandwidth: 3.35TB/s}\n",
                 CPN_OK);
    cpn_package_t p;
    assert_int_equal(yconf_package(doc, yconf_root(doc), "", &p), CPN_OK);
    assert_int_equal(p.accel.mem_bw_gbs, 3350);
    yconf_destroy(&doc);
    doc = s_load("id: p\ncount: 1\nregion: r\nprice: \"1\"\naccelerators: {vendor: v, "
                 "model: m, count: 1, memory: 1GiB, bf16_tflops: 1, memory_bandwidth: 3GiB/s}\n",
                 CPN_OK);
    assert_int_equal(yconf_package(doc, yconf_root(doc), "", &p), CPN_E_CONFIG);
    assert_true(s_has_error(doc, "accelerators.memory_bandwidth: expected a bandwidth"));
    yconf_destroy(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_requests_load),
        cmocka_unit_test(test_packages_load),
        cmocka_unit_test(test_error_position_and_path),
        cmocka_unit_test(test_request_access_hints),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_anchors_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_bind_all_kinds),
        cmocka_unit_test(test_misc),
    };
    return cmocka_run_group_tests_name("yconf", tests, NULL, NULL);
}
