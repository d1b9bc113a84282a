/* test_policy.c - the broker's policy: a good file loads with every value where it belongs,
 * the shipped conf/policy.yaml is valid, each kind of error is reported with
 * file:line:column and key path, several errors in one file are all reported, and lookups,
 * query rights and quota checks answer as documented. */
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

#include "batch.h"
#include "policy.h"

typedef struct {
    char dir[256];
    char path[320];
    uint8_t acme[CPN_PK_LEN], beta[CPN_PK_LEN], peer[CPN_PK_LEN], peer2[CPN_PK_LEN];
    uint8_t member[CPN_PK_LEN];
} s_fixture_t;

static const char *const s_keys[] = {"broker", "acme", "beta", "peer", "peer2", "broker-b"};

static void s_rm_dir(const char *dir)
{
    char p[400];
    static const char *const files[] = {"policy.yaml", "other.yaml"};
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++) {
        snprintf(p, sizeof p, "%s/%s.key", dir, s_keys[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.pub", dir, s_keys[i]);
        unlink(p);
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int s_setup(void **state)
{
    s_fixture_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char base[400];
    uint8_t *pks[] = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (!f || cpn_crypto_init() != CPN_OK)
        return -1;
    pks[1] = f->acme;
    pks[2] = f->beta;
    pks[3] = f->peer;
    pks[4] = f->peer2;
    pks[5] = f->member;
    snprintf(f->dir, sizeof f->dir, "%s/cpn-policy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/policy.yaml", f->dir);
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++) {
        cpn_identity_t *id = NULL;
        snprintf(base, sizeof base, "%s/%s", f->dir, s_keys[i]);
        if (cpn_identity_generate(&id) != CPN_OK || cpn_identity_save(id, base) != CPN_OK)
            return -1;
        if (pks[i])
            memcpy(pks[i], cpn_identity_pk(id), CPN_PK_LEN);
        cpn_identity_destroy(&id);
    }
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fixture_t *f = *state;
    s_rm_dir(f->dir);
    free(f);
    return 0;
}

static void s_write(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Load `text` as policy.yaml in the fixture's directory. */
static int s_load(s_fixture_t *f, const char *text, policy_t **pol, yconf_t **doc)
{
    s_write(f->path, text);
    return policy_load(f->path, pol, doc);
}

/* Is there an error line ending in "<file>:<where>"? where = "3:3: broker: unknown key". */
static bool s_has_error(const yconf_t *doc, const char *where)
{
    char want[600];
    snprintf(want, sizeof want, "policy.yaml:%s", where);
    for (size_t i = 0; i < yconf_error_count(doc); i++)
        if (strstr(yconf_error_at(doc, i), want))
            return true;
    return false;
}

static void s_dump(const yconf_t *doc)
{
    for (size_t i = 0; i < yconf_error_count(doc); i++)
        fprintf(stderr, "# %s\n", yconf_error_at(doc, i));
}

static const char s_good[] =
    "broker:\n"
    "  name: east-1\n"
    "  key: broker.key\n"
    "  listen: tcp://127.0.0.1:7400\n"
    "  ledger: state/ledger.db\n"
    "  transport: {curve: false}\n"
    "federation:\n"
    "  local_first: true\n"
    "  hello_timeout: 20s\n"
    "  max_hops: 4\n"
    "  use_members: [broker-b]\n"
    "  members:\n"
    "    - {name: broker-b, key: broker-b.pub, endpoint: 'tcp://10.0.0.2:7400'}\n"
    "peers:\n"
    "  trusted:\n"
    "    - {name: sh-dc1, key: peer.pub}\n"
    "    - {name: bj-dc2, key: peer2.pub}\n"
    "tenants:\n"
    "  - name: acme-ml\n"
    "    key: acme.pub\n"
    "    priority: high\n"
    "    operator: true\n"
    "    quota: {accelerators: 64, units: 8, spend_rate: '2000.5'}\n"
    "  - name: beta-labs\n"
    "    key: beta.pub\n"
    "    priority: 7\n"
    "    quota: {units: unlimited, accelerators: 0}\n"
    "placement:\n"
    "  regions: [cn-east, cn-north]\n"
    "  prefer_vendors: huawei\n"
    "  equivalences:\n"
    "    - {model: H100-80GB, accept: [H800-80GB, Ascend-910B]}\n"
    "  max_price: '300.0'\n"
    "  weights: {price: 2, region: 30, vendor: 0, local: 7}\n"
    "limits:\n"
    "  frame_size: 128KiB\n"
    "  rate: {per_sender: 50/s, burst: 80, senders: 1000, refusals: 7/s}\n"
    "  max_offers: 5000\n"
    "  max_pending: 77\n"
    "  claim_timeout: 2s\n"
    "  claim_tries: 5\n"
    "  skew: 1m\n"
    "  replay_capacity: 4096\n"
    "  audit_rows: 20000\n";

static void test_good_file(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    char want[600];
    int r = s_load(f, s_good, &pol, &doc);
    if (r != CPN_OK)
        s_dump(doc);
    assert_int_equal(r, CPN_OK);
    assert_non_null(pol);
    assert_int_equal(yconf_error_count(doc), 0);
    yconf_destroy(&doc);

    assert_string_equal(pol->broker.name, "east-1");
    assert_string_equal(pol->broker.listen, "tcp://127.0.0.1:7400");
    /* Relative paths resolve against the policy file's directory (absolute). */
    assert_true(pol->broker.key_path[0] == '/');
    snprintf(want, sizeof want, "/broker.key");
    assert_non_null(strstr(pol->broker.key_path, want));
    assert_non_null(strstr(pol->broker.ledger_path, "/state/ledger.db"));
    assert_false(pol->broker.curve);

    assert_true(pol->federation.local_first);
    assert_int_equal(pol->federation.hello_timeout_s, 20);
    assert_int_equal(pol->federation.max_hops, 4);
    assert_int_equal(pol->federation.n_members, 1);
    assert_string_equal(pol->federation.members[0].endpoint, "tcp://10.0.0.2:7400");
    assert_true(pol->federation.members[0].use_offers);
    assert_ptr_equal(policy_member(pol, f->member), &pol->federation.members[0]);
    assert_ptr_equal(policy_member_by_name(pol, "broker-b"), &pol->federation.members[0]);

    assert_false(pol->peers.any);
    assert_int_equal(pol->peers.n_trusted, 2);
    assert_true(policy_peer_trusted(pol, f->peer));
    assert_true(policy_peer_trusted(pol, f->peer2));
    assert_false(policy_peer_trusted(pol, f->acme));
    assert_string_equal(policy_peer(pol, f->peer2)->name, "bj-dc2");

    assert_int_equal(pol->n_tenants, 2);
    const policy_tenant_t *acme = policy_tenant(pol, f->acme);
    const policy_tenant_t *beta = policy_tenant(pol, f->beta);
    assert_non_null(acme);
    assert_non_null(beta);
    assert_string_equal(acme->name, "acme-ml");
    assert_int_equal(acme->priority, POLICY_PRIO_HIGH);
    assert_true(acme->is_operator);
    assert_int_equal(acme->quota.accelerators, 64);
    assert_int_equal(acme->quota.units, 8);
    assert_int_equal(acme->quota.spend_rate, 2000500);
    assert_string_equal(beta->name, "beta-labs");
    assert_int_equal(beta->priority, 7);
    assert_false(beta->is_operator);
    assert_int_equal(beta->quota.units, POLICY_UNLIMITED);
    assert_int_equal(beta->quota.accelerators, 0);
    assert_int_equal(beta->quota.spend_rate, POLICY_UNLIMITED);
    assert_null(policy_tenant(pol, f->peer));

    assert_int_equal(pol->placement.allowed_regions.n, 2);
    assert_string_equal(pol->placement.allowed_regions.items[1], "cn-north");
    assert_int_equal(pol->placement.prefer_vendors.n, 1);
    assert_int_equal(pol->placement.n_equiv, 1);
    assert_string_equal(pol->placement.equiv[0].model, "H100-80GB");
    assert_int_equal(pol->placement.equiv[0].accept.n, 2);
    assert_string_equal(pol->placement.equiv[0].accept.items[1], "Ascend-910B");
    assert_int_equal(pol->placement.max_price, 300000);
    assert_int_equal(pol->placement.w_price, 2);
    assert_int_equal(pol->placement.w_region, 30);
    assert_int_equal(pol->placement.w_vendor, 0);
    assert_int_equal(pol->placement.w_local, 7);

    assert_int_equal(pol->limits.frame_size, 128 * 1024);
    assert_int_equal(pol->limits.rate_per_sender, 50);
    assert_int_equal(pol->limits.rate_burst, 80);
    assert_int_equal(pol->limits.rate_senders, 1000);
    assert_int_equal(pol->limits.rate_refusals, 7);
    assert_int_equal(pol->limits.max_offers, 5000);
    assert_int_equal(pol->limits.max_pending, 77);
    assert_int_equal(pol->limits.claim_timeout_s, 2);
    assert_int_equal(pol->limits.claim_tries, 5);
    assert_int_equal(pol->limits.skew_s, 60);
    assert_int_equal(pol->limits.replay_capacity, 4096);
    assert_int_equal(pol->limits.audit_rows, 20000);
    policy_destroy(&pol);
    assert_null(pol);
    policy_destroy(&pol);
}

static void test_defaults(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    int r = s_load(f, "broker: {key: broker.key, listen: 'tcp://*:7400'}\n", &pol, NULL);
    assert_int_equal(r, CPN_OK);
    assert_string_equal(pol->broker.name, "cpn-broker");
    assert_non_null(strstr(pol->broker.ledger_path, "/ledger.db"));
    assert_true(pol->broker.curve); /* CURVE unless switched off in writing */
    assert_int_equal(pol->federation.hello_timeout_s, 15);
    assert_int_equal(pol->federation.max_hops, 8);
    assert_false(pol->federation.local_first);
    assert_false(pol->peers.any); /* deny by default */
    assert_false(policy_peer_trusted(pol, f->peer));
    assert_int_equal(pol->n_tenants, 0);
    assert_int_equal(pol->limits.frame_size, 64 * 1024);
    assert_int_equal(pol->limits.rate_per_sender, 200);
    assert_int_equal(pol->limits.rate_burst, 400);
    assert_int_equal(pol->limits.rate_refusals, POLICY_REFUSALS_DEFAULT);
    assert_int_equal(pol->limits.max_offers, 1000000);
    assert_int_equal(pol->limits.max_pending, 10000);
    assert_int_equal(pol->limits.claim_timeout_s, 5);
    assert_int_equal(pol->limits.claim_tries, 3);
    assert_int_equal(pol->limits.skew_s, 30);
    assert_int_equal(pol->limits.replay_capacity, 65536);
    assert_int_equal(pol->limits.audit_rows, 1000000);
    policy_destroy(&pol);

    /* `trusted: any` admits every peer key. */
    r = s_load(f,
               "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
               "peers: {trusted: any}\n",
               &pol, NULL);
    assert_int_equal(r, CPN_OK);
    assert_true(policy_peer_trusted(pol, f->peer));
    assert_null(policy_peer(pol, f->peer));
    policy_destroy(&pol);
}

/* The shipped example, with the keys the demo generates next to it. */
static void test_conf_example(void **state)
{
    s_fixture_t *f = *state;
    const char *src = getenv("CPN_SRCDIR");
    char in[600];
    char *buf;
    long len;
    FILE *fp;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    snprintf(in, sizeof in, "%s/conf/policy.yaml", src && *src ? src : ".");
    fp = fopen(in, "r");
    if (!fp)
        skip();
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    len = ftell(fp);
    assert_true(len > 0);
    rewind(fp);
    buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    int r = s_load(f, buf, &pol, &doc);
    free(buf);
    if (r != CPN_OK)
        s_dump(doc);
    assert_int_equal(r, CPN_OK);
    yconf_destroy(&doc);
    assert_string_equal(policy_tenant(pol, f->acme)->name, "acme-ml");
    assert_string_equal(policy_tenant(pol, f->beta)->name, "beta-labs");
    assert_true(policy_peer_trusted(pol, f->peer));
    assert_true(policy_peer_trusted(pol, f->peer2));
    assert_true(pol->placement.n_equiv >= 1);
    assert_int_equal(pol->limits.rate_per_sender, 200);
    policy_destroy(&pol);
}

static void test_unknown_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = s_load(f,
                   "broker:\n"
                   "  key: broker.key\n"
                   "  listen: tcp://127.0.0.1:7400\n"
                   "  transport: {curve: true, courve: false}\n"
                   "limitz: {}\n",
                   &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    assert_null(pol);
    s_dump(doc);
    assert_true(s_has_error(doc, "4:28: broker.transport: unknown key \"courve\""));
    assert_true(s_has_error(doc, "5:1: unknown key \"limitz\" (did you mean \"limits\"?)"));
    assert_int_equal(yconf_error_count(doc), 2);
    yconf_destroy(&doc);
}

static void test_bad_type(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = s_load(f,
                   "broker:\n"
                   "  key: broker.key\n"
                   "  listen: tcp://127.0.0.1:7400\n"
                   "  transport: {curve: maybe}\n"
                   "tenants: acme\n"
                   "peers: {trusted: [{name: p, key: not-a-key}]}\n"
                   "limits:\n"
                   "  rate: {per_sender: 200/h, refusals: 2000000/s}\n"
                   "  claim_tries: 0\n",
                   &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "4:22: broker.transport.curve: expected true or false"));
    assert_true(s_has_error(doc, "5:10: tenants: expected a list of tenants, found a scalar"));
    assert_true(s_has_error(doc, "6:34: peers.trusted[0].key: expected a public key"));
    assert_true(s_has_error(doc, "8:22: limits.rate.per_sender: expected a rate"));
    assert_true(s_has_error(doc, "8:39: limits.rate.refusals: expected a rate"));
    assert_true(s_has_error(doc, "9:16: limits.claim_tries: expected an integer from 1 to 16"));
    assert_int_equal(yconf_error_count(doc), 6);
    yconf_destroy(&doc);
}

static void test_missing_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = s_load(f,
                   "broker:\n"
                   "  key: broker.key\n"
                   "tenants:\n"
                   "  - name: acme-ml\n"
                   "    priority: low\n",
                   &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "2:3: broker: missing required key \"listen\""));
    assert_true(s_has_error(doc, "4:5: tenants[0]: missing required key \"key\""));
    assert_int_equal(yconf_error_count(doc), 2);
    yconf_destroy(&doc);

    /* No broker section at all; an empty file. */
    r = s_load(f, "tenants: []\n", &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "1:1: missing required key \"broker\""));
    yconf_destroy(&doc);
    r = s_load(f, "", &pol, &doc);
    assert_int_not_equal(r, CPN_OK);
    assert_true(yconf_error_count(doc) >= 1);
    yconf_destroy(&doc);
    /* A missing secret key file is reported where it is named. */
    r = s_load(f, "broker: {key: nowhere.key, listen: 'tcp://*:1'}\n", &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "1:15: broker.key: cannot use"));
    yconf_destroy(&doc);
}

static void test_duplicates(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = s_load(f,
                   "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                   "tenants:\n"
                   "  - name: acme-ml\n"
                   "    key: acme.pub\n"
                   "  - name: acme-ml\n"
                   "    key: beta.pub\n"
                   "  - name: acme-two\n"
                   "    key: acme.pub\n"
                   "peers:\n"
                   "  trusted:\n"
                   "    - name: dc1\n"
                   "      key: beta.pub\n"
                   "placement:\n"
                   "  equivalences:\n"
                   "    - {model: H100-80GB, accept: [H800-80GB]}\n"
                   "    - {model: h100-80gb, accept: [Ascend-910B]}\n",
                   &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    assert_null(pol);
    s_dump(doc);
    assert_true(s_has_error(doc, "8:10: tenants[2].key: same key as tenants[0] (acme-ml)"));
    assert_true(s_has_error(doc, "5:11: tenants[1].name: same name as tenants[0]"));
    /* One key, one role: beta's key is a tenant's and a peer's. */
    assert_true(s_has_error(doc, "6:10: tenants[1].key: same key as peers.trusted[0] (dc1): a key"));
    assert_true(s_has_error(doc, "16:15: placement.equivalences[1].model: a rule for"));
    assert_int_equal(yconf_error_count(doc), 4);
    yconf_destroy(&doc);
}

/* One file, many kinds of error: one pass reports them all, each at its line. */
static void test_many_errors(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    int r = s_load(f,
                   "broker:\n"                           /* 1 */
                   "  key: broker.key\n"                 /* 2 */
                   "  lisen: tcp://127.0.0.1:7400\n"     /* 3 */
                   "tenants:\n"                          /* 4 */
                   "  - name: acme-ml\n"                 /* 5 */
                   "    key: acme.pub\n"                 /* 6 */
                   "    quota:\n"                        /* 7 */
                   "      units: many\n"                 /* 8 */
                   "  - name: beta-labs\n"               /* 9 */
                   "    key: acme.pub\n"                 /* 10 */
                   "placement:\n"                        /* 11 */
                   "  weights:\n"                        /* 12 */
                   "    price: -1\n"                     /* 13 */
                   "limits:\n"                           /* 14 */
                   "  frame_size: 64MiB\n"               /* 15 */
                   "federation:\n"                       /* 16 */
                   "  use_members: [nobody]\n"           /* 17 */
                   "  members:\n"                        /* 18 */
                   "    - name: b\n"                     /* 19 */
                   "      key: broker-b.pub\n"           /* 20 */
                   "      endpoint: http://b\n",         /* 21 */
                   &pol, &doc);
    assert_int_equal(r, CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "3:3: broker: unknown key \"lisen\" (did you mean \"listen\"?)"));
    assert_true(s_has_error(doc, "2:3: broker: missing required key \"listen\""));
    assert_true(s_has_error(doc, "8:14: tenants[0].quota.units: expected a non-negative"));
    assert_true(s_has_error(doc, "10:10: tenants[1].key: same key as tenants[0] (acme-ml)"));
    assert_true(s_has_error(doc, "13:12: placement.weights.price: expected an integer from 0"));
    assert_true(s_has_error(doc, "15:15: limits.frame_size: must be from"));
    assert_true(s_has_error(doc, "17:17: federation.use_members[0]: no member named \"nobody\""));
    assert_true(s_has_error(doc, "21:17: federation.members[0].endpoint: expected an endpoint"));
    assert_int_equal(yconf_error_count(doc), 8);
    yconf_destroy(&doc);
}

static void test_not_loadable(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    char path[400];
    /* YAML syntax error: the parser's position. */
    int r = s_load(f, "broker: {key: broker.key\nlisten: [\n", &pol, &doc);
    assert_int_equal(r, CPN_E_YAML);
    assert_null(pol);
    assert_true(yconf_error_count(doc) >= 1);
    assert_non_null(strstr(yconf_error_at(doc, 0), "policy.yaml:"));
    yconf_destroy(&doc);
    /* No such file. */
    snprintf(path, sizeof path, "%s/other.yaml", f->dir);
    r = policy_load(path, &pol, &doc);
    assert_int_equal(r, CPN_E_IO);
    assert_null(pol);
    assert_true(yconf_error_count(doc) >= 1);
    yconf_destroy(&doc);
    /* doc_out may be NULL. */
    r = policy_load(path, &pol, NULL);
    assert_int_equal(r, CPN_E_IO);
    assert_int_equal(policy_load(NULL, &pol, NULL), CPN_E_INVAL);
}

static void test_queries_quota_reload(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL, *other = NULL;
    char why[128];
    assert_int_equal(s_load(f, s_good, &pol, NULL), CPN_OK);
    /* Query rights come from these (broker/query.c's table; tests/test_query.c). */
    assert_true(policy_tenant(pol, f->acme)->is_operator);
    assert_false(policy_tenant(pol, f->beta)->is_operator);
    assert_null(policy_tenant(pol, f->peer));

    /* Quotas: acme has 64 accelerators, 8 units, 2000.500 per hour. */
    const policy_tenant_t *acme = policy_tenant(pol, f->acme);
    ledger_usage_t used = {.accelerators = 56, .units = 7, .spend_rate = 1000000};
    ledger_usage_t add = {.accelerators = 8, .units = 1, .spend_rate = 1000500};
    assert_int_equal(policy_quota_check(acme, &used, &add, why, sizeof why), CPN_OK);
    add.accelerators = 9;
    assert_int_equal(policy_quota_check(acme, &used, &add, why, sizeof why), CPN_E_OVER_QUOTA);
    assert_string_equal(why, "accelerators: 56 in use + 9 asked > quota 64");
    add.accelerators = 8;
    add.units = 2;
    assert_int_equal(policy_quota_check(acme, &used, &add, why, sizeof why), CPN_E_OVER_QUOTA);
    assert_non_null(strstr(why, "units"));
    add.units = 1;
    add.spend_rate = 1000501;
    assert_int_equal(policy_quota_check(acme, &used, &add, why, sizeof why), CPN_E_OVER_QUOTA);
    assert_non_null(strstr(why, "spend_rate"));
    add.spend_rate = UINT64_MAX; /* no overflow on the way */
    assert_int_equal(policy_quota_check(acme, &used, &add, why, sizeof why), CPN_E_OVER_QUOTA);
    /* beta: units unlimited, accelerators 0: CPU-only leases pass, any accelerator fails. */
    const policy_tenant_t *beta = policy_tenant(pol, f->beta);
    ledger_usage_t big = {.accelerators = 0, .units = 1000000, .spend_rate = 1};
    assert_int_equal(policy_quota_check(beta, &big, &big, NULL, 0), CPN_OK);
    big.accelerators = 1;
    assert_int_equal(policy_quota_check(beta, &used, &big, NULL, 0), CPN_E_OVER_QUOTA);

    /* Reload: the same file needs no restart; a new listen endpoint does. */
    assert_int_equal(s_load(f, s_good, &other, NULL), CPN_OK);
    assert_null(policy_restart_needed(pol, other));
    strcpy(other->broker.listen, "tcp://127.0.0.1:7401");
    assert_string_equal(policy_restart_needed(pol, other), "broker.listen");
    policy_destroy(&other);
    /* Tables sized at start (pending requests, the replay guard's window) need a restart too;
     * what is read on use applies live. */
    assert_int_equal(s_load(f, s_good, &other, NULL), CPN_OK);
    other->limits.max_pending++;
    assert_string_equal(policy_restart_needed(pol, other), "limits.max_pending");
    other->limits.max_pending--;
    other->limits.skew_s++;
    assert_string_equal(policy_restart_needed(pol, other), "limits.skew");
    other->limits.skew_s--;
    other->limits.rate_senders++;
    assert_string_equal(policy_restart_needed(pol, other), "limits.rate.senders");
    other->limits.rate_senders--;
    other->broker.curve = !other->broker.curve;
    assert_string_equal(policy_restart_needed(pol, other), "broker.transport.curve");
    other->broker.curve = !other->broker.curve;
    other->limits.claim_timeout_s++;
    other->limits.rate_per_sender++;
    other->federation.hello_timeout_s++;
    assert_null(policy_restart_needed(pol, other));
    policy_destroy(&other);

    assert_string_equal(policy_priority_name(POLICY_PRIO_HIGH), "high");
    assert_string_equal(policy_priority_name(POLICY_PRIO_LOW), "low");
    assert_null(policy_priority_name(7));
    policy_destroy(&pol);
}

/* placement.batch: off unless written; a map turns it on with its defaults for what it
 * leaves out; max and wait are bounded, wait needs its unit; a reload may change it. */
static void test_batch_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL, *off = NULL;
    yconf_t *doc = NULL;
    assert_int_equal(s_load(f, "broker: {key: broker.key, listen: 'tcp://*:7400'}\n", &off, NULL),
                     CPN_OK);
    assert_false(off->batch.on);
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "placement:\n"
                            "  batch: {max: 1024, wait: 1s}\n",
                            &pol, NULL),
                     CPN_OK);
    assert_true(pol->batch.on);
    assert_int_equal(pol->batch.max, BATCH_MAX);
    assert_int_equal(pol->batch.wait_ms, 1000);
    assert_null(policy_restart_needed(off, pol)); /* SIGHUP may switch it on and off */
    assert_null(policy_restart_needed(pol, off));
    policy_destroy(&pol);
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "placement: {batch: {}}\n",
                            &pol, NULL),
                     CPN_OK);
    assert_true(pol->batch.on);
    assert_int_equal(pol->batch.max, POLICY_BATCH_MAX_DEFAULT);
    assert_int_equal(pol->batch.wait_ms, POLICY_BATCH_WAIT_DEFAULT_MS);
    policy_destroy(&pol);
    policy_destroy(&off);

    static const struct {
        const char *max, *wait, *error;
    } bad[] = {
        {"0", "10ms", "4:10: placement.batch.max: expected an integer from 1 to 1024"},
        {"1025", "10ms", "4:10: placement.batch.max: expected an integer from 1 to 1024"},
        {"2", "0ms", "5:11: placement.batch.wait: expected a time from 1ms to 1s such as 10ms"},
        {"2", "0", "5:11: placement.batch.wait: expected a time from 1ms to 1s"},
        {"2", "2s", "5:11: placement.batch.wait: expected a time from 1ms to 1s"},
        {"2", "1001ms", "5:11: placement.batch.wait: expected a time from 1ms to 1s"},
        {"2", "10", "5:11: placement.batch.wait: expected a time from 1ms to 1s"},
        {"2", "fast", "5:11: placement.batch.wait: expected a time from 1ms to 1s"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[300];
        snprintf(text, sizeof text,
                 "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                 "placement:\n"
                 "  batch:\n"
                 "    max: %s\n"
                 "    wait: %s\n",
                 bad[i].max, bad[i].wait);
        assert_int_equal(s_load(f, text, &pol, &doc), CPN_E_CONFIG);
        assert_null(pol);
        if (!s_has_error(doc, bad[i].error) || yconf_error_count(doc) != 1) {
            fprintf(stderr, "# case %zu: want %s\n", i, bad[i].error);
            s_dump(doc);
            fail();
        }
        yconf_destroy(&doc);
    }
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "placement:\n"
                            "  batch: on\n",
                            &pol, &doc),
                     CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "3:10: placement.batch: expected a map such as {max: 200, "
                                 "wait: 10ms}, found a scalar"));
    yconf_destroy(&doc);
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "placement:\n"
                            "  batch: {max: 2, size: 3}\n",
                            &pol, &doc),
                     CPN_E_CONFIG);
    s_dump(doc);
    assert_true(s_has_error(doc, "3:19: placement.batch: unknown key \"size\""));
    yconf_destroy(&doc);
}

/* tenants[].budget: amount and period bound, absent = no budget; each bad value named. */
static void test_budget_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "tenants:\n"
                            "  - {name: a, key: acme.pub, budget: {amount: \"2500.5\"}}\n",
                            &pol, NULL),
                     CPN_OK);
    assert_int_equal(pol->tenants[0].budget.amount, 2500500);
    assert_int_equal(pol->tenants[0].budget.period, POLICY_BUDGET_MONTH);
    policy_destroy(&pol);
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "tenants:\n"
                            "  - {name: a, key: acme.pub, budget: {amount: 10, period: day}}\n",
                            &pol, NULL),
                     CPN_OK);
    assert_int_equal(pol->tenants[0].budget.amount, 10000);
    assert_int_equal(pol->tenants[0].budget.period, POLICY_BUDGET_DAY);
    policy_destroy(&pol);
    assert_int_equal(s_load(f,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                            "tenants:\n"
                            "  - {name: a, key: acme.pub}\n",
                            &pol, NULL),
                     CPN_OK);
    assert_int_equal(pol->tenants[0].budget.amount, 0); /* none */
    policy_destroy(&pol);
    static const struct {
        const char *budget, *error;
    } bad[] = {
        {"{amount: 0}", "tenants[0].budget.amount: expected an amount"},
        {"{amount: lots}", "tenants[0].budget.amount: expected an amount"},
        {"{amount: 1, period: week}", "tenants[0].budget.period: expected month or day"},
        {"{period: day}", "tenants[0].budget: missing required key \"amount\""},
        {"{amount: 1, every: day}", "tenants[0].budget: unknown key \"every\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[300];
        snprintf(text, sizeof text,
                 "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                 "tenants:\n"
                 "  - {name: a, key: acme.pub, budget: %s}\n",
                 bad[i].budget);
        assert_int_equal(s_load(f, text, &pol, &doc), CPN_E_CONFIG);
        assert_null(pol);
        bool found = false; /* the key path and message, whatever the column */
        for (size_t k = 0; k < yconf_error_count(doc); k++)
            found = found || strstr(yconf_error_at(doc, k), bad[i].error);
        if (!found) {
            fprintf(stderr, "# case %zu: want %s\n", i, bad[i].error);
            s_dump(doc);
            fail();
        }
        yconf_destroy(&doc);
    }
}

/* Many tenants: lookups by key stay correct (binary search over the sorted index). */
static void test_many_tenants(void **state)
{
    s_fixture_t *f = *state;
    enum { N = 300 };
    size_t cap = 100 * N + 256, len = 0;
    char *text = malloc(cap);
    uint8_t (*keys)[CPN_PK_LEN] = calloc(N, CPN_PK_LEN);
    char kt[CPN_PK_TEXT_LEN];
    policy_t *pol = NULL;
    assert_non_null(text);
    assert_non_null(keys);
    len += (size_t)snprintf(text + len, cap - len,
                            "broker: {key: broker.key, listen: 'tcp://*:7400'}\ntenants:\n");
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < CPN_PK_LEN; j++)
            keys[i][j] = (uint8_t)(j * 13 + 1);
        keys[i][5] = (uint8_t)(i & 0xff); /* distinct keys sharing long prefixes */
        keys[i][3] = (uint8_t)(i >> 8);
        cpn_pk_to_text(keys[i], kt);
        len += (size_t)snprintf(text + len, cap - len, "  - {name: t%d, key: %s}\n", i, kt);
        assert_true(len < cap);
    }
    int r = s_load(f, text, &pol, NULL);
    assert_int_equal(r, CPN_OK);
    for (int i = 0; i < N; i++) {
        const policy_tenant_t *t = policy_tenant(pol, keys[i]);
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        assert_non_null(t);
        assert_string_equal(t->name, name);
    }
    assert_null(policy_tenant(pol, f->acme));
    policy_destroy(&pol);
    free(keys);
    free(text);
}

/* broker.http: off unless set, loopback for a bare port, a restart key; a bad address is an
 * error naming the key. */
static void test_http_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL, *off = NULL;
    yconf_t *doc = NULL;
    assert_int_equal(s_load(f, "broker: {key: broker.key, listen: 'tcp://*:7400'}\n", &off, NULL),
                     CPN_OK);
    assert_string_equal(off->broker.http, "");
    assert_int_equal(
        s_load(f, "broker: {key: broker.key, listen: 'tcp://*:7400', http: 9464}\n", &pol, NULL),
        CPN_OK);
    assert_string_equal(pol->broker.http, "9464");
    assert_string_equal(policy_restart_needed(off, pol), "broker.http");
    policy_destroy(&pol);
    policy_destroy(&off);
    static const char *bad[] = {"70000", "example.org:80", "1.2.3:9", "x", "''"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[200];
        snprintf(text, sizeof text,
                 "broker: {key: broker.key, listen: 'tcp://*:7400', http: %s}\n", bad[i]);
        assert_int_equal(s_load(f, text, &pol, &doc), CPN_E_CONFIG);
        assert_null(pol);
        bool named = false;
        for (size_t k = 0; k < yconf_error_count(doc); k++)
            named = named || strstr(yconf_error_at(doc, k), "broker.http") != NULL;
        if (!named) {
            fprintf(stderr, "# http: %s\n", bad[i]);
            s_dump(doc);
            fail();
        }
        yconf_destroy(&doc);
    }
}

/* federation.spill: rank unless set; cost, latency, or a list of member names (each a member,
 * once; the members it leaves out are not spilled to); anything else names the key. */
static void test_spill_key(void **state)
{
    s_fixture_t *f = *state;
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    static const char head[] = "broker: {key: broker.key, listen: 'tcp://*:7400'}\n"
                               "federation:\n"
                               "  members:\n"
                               "    - {name: m1, key: broker-b.pub, endpoint: 'tcp://10.0.0.2:7400'}\n"
                               "    - {name: m2, key: peer.pub, endpoint: 'tcp://10.0.0.3:7400'}\n";
    char text[1024];
    assert_int_equal(s_load(f, head, &pol, NULL), CPN_OK);
    assert_int_equal(pol->federation.spill, POLICY_SPILL_RANK);
    policy_destroy(&pol);
    static const struct {
        const char *v;
        policy_spill_t want;
    } ok[] = {{"rank", POLICY_SPILL_RANK},
              {"cost", POLICY_SPILL_COST},
              {"latency", POLICY_SPILL_LATENCY},
              {"[m2, m1]", POLICY_SPILL_LIST}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(text, sizeof text, "%s  spill: %s\n", head, ok[i].v);
        if (s_load(f, text, &pol, &doc) != CPN_OK) {
            s_dump(doc);
            fail();
        }
        assert_int_equal(pol->federation.spill, ok[i].want);
        policy_destroy(&pol);
        yconf_destroy(&doc);
    }
    snprintf(text, sizeof text, "%s  spill: [m2]\n", head);
    assert_int_equal(s_load(f, text, &pol, NULL), CPN_OK);
    assert_int_equal(pol->federation.members[1].spill_pos, 0);
    assert_int_equal(pol->federation.members[0].spill_pos, POLICY_SPILL_UNLISTED);
    policy_destroy(&pol);
    static const char *bad[] = {"cheapest", "[m3]", "[m1, m1]", "{a: 1}", "[[m1]]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s  spill: %s\n", head, bad[i]);
        assert_int_equal(s_load(f, text, &pol, &doc), CPN_E_CONFIG);
        assert_null(pol);
        if (!s_has_error(doc, "") || !strstr(yconf_error_at(doc, 0), "federation.spill")) {
            fprintf(stderr, "# spill: %s\n", bad[i]);
            s_dump(doc);
            fail();
        }
        yconf_destroy(&doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_defaults, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_conf_example, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_type, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_missing_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_many_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_not_loadable, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_queries_quota_reload, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_many_tenants, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_budget_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_http_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_spill_key, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
