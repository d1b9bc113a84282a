/* test_chain.c - the one chain opener (common/chain.c) and the typed decoders
 * (common/msg_typed.c), on chains made by hand: every inconsistency a correctly signed chain
 * can carry is refused with its code and a reason, the good chain (direct and through a
 * federation route) is accepted. `cpnctl verify` ($CPN_BUILDDIR/cpnctl), which opens chains
 * here too, is run on one crafted chain file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "identity.h"
#include "msg.h"
#include "msg_typed.h"

#define DAY_MS (24ull * 3600 * 1000)

typedef struct {
    cpn_identity_t *tenant, *broker, *peer, *other, *origin, *middle;
} keys_t;

static keys_t k;
static uint64_t s_seq = 1;

/* What a chain is made of; s_make() fills what is left zero with the consistent value. */
typedef struct {
    cpn_request_t req;
    uint64_t req_ts;
    const uint8_t *req_frame; /* instead of the REQUEST (another type, say) */
    size_t req_frame_len;
    cpn_claim_t claim;
    const cpn_identity_t *claim_signer;
    const uint8_t *claim_frame; /* instead of the CLAIM */
    size_t claim_frame_len;
    cpn_lease_t lease; /* lease_id "" = the rule's; end 0 = start + duration */
    const cpn_identity_t *lease_signer;
    const uint8_t *lease_frame; /* instead of the LEASE */
    size_t lease_frame_len;
    char grant_request_id[CPN_NAME_MAX]; /* "" = the request's id */
    const cpn_identity_t *grant_signer;
    uint64_t now;
} spec_t;

typedef struct {
    uint8_t *req, *claim, *lease, *grant;
    size_t req_len, claim_len, lease_len, grant_len;
} chain_t;

static uint8_t *s_build(const cpn_identity_t *id, cpn_msg_type_t t, uint64_t ts, const void *b,
                        size_t *len)
{
    uint8_t *f = NULL;
    assert_int_equal(cpn_msg_build(id, t, s_seq++, ts, b, &f, len), CPN_OK);
    return f;
}

static void s_spec(spec_t *s)
{
    memset(s, 0, sizeof *s);
    s->now = cpn_now_ms();
    snprintf(s->req.id, sizeof s->req.id, "%s", "job-1");
    s->req.units = 4;
    s->req.duration_s = 3600;
    s->req.cores = 8;
    s->req.max_price = 2000;
    s->req_ts = s->now;
    memcpy(s->claim.peer, cpn_identity_pk(k.peer), CPN_PK_LEN);
    snprintf(s->claim.package, sizeof s->claim.package, "%s", "h100x8");
    s->claim.units = 4;
    s->claim.price = 1000;
    s->claim.duration_s = 3600;
    s->claim_signer = k.broker;
    s->lease_signer = k.peer;
    s->grant_signer = k.broker;
    snprintf(s->lease.state, sizeof s->lease.state, "%s", "active");
}

static void s_make(spec_t *s, chain_t *c)
{
    memset(c, 0, sizeof *c);
    c->req = s_build(k.tenant, CPN_MSG_REQUEST, s->req_ts, &s->req, &c->req_len);
    cpn_claim_t cl = s->claim;
    cl.request.ptr = s->req_frame ? s->req_frame : c->req;
    cl.request.len = s->req_frame ? s->req_frame_len : c->req_len;
    c->claim = s_build(s->claim_signer, CPN_MSG_CLAIM, s->now, &cl, &c->claim_len);
    cpn_lease_t l = s->lease;
    l.claim.ptr = s->claim_frame ? s->claim_frame : c->claim;
    l.claim.len = s->claim_frame ? s->claim_frame_len : c->claim_len;
    if (!l.lease_id[0])
        cpn_chain_lease_id(s->claim.peer, cpn_identity_pk(k.tenant), s->req.id, l.lease_id);
    if (!l.package[0])
        snprintf(l.package, sizeof l.package, "%s", s->claim.package);
    if (!l.units)
        l.units = s->claim.units;
    if (!l.price)
        l.price = s->claim.price;
    if (!l.start_ms)
        l.start_ms = s->now;
    if (!l.end_ms)
        l.end_ms = l.start_ms + s->claim.duration_s * 1000;
    c->lease = s_build(s->lease_signer, CPN_MSG_LEASE, s->now, &l, &c->lease_len);
    cpn_grant_t g;
    memset(&g, 0, sizeof g);
    g.lease.ptr = s->lease_frame ? s->lease_frame : c->lease;
    g.lease.len = s->lease_frame ? s->lease_frame_len : c->lease_len;
    snprintf(g.request_id, sizeof g.request_id, "%s",
             s->grant_request_id[0] ? s->grant_request_id : s->req.id);
    c->grant = s_build(s->grant_signer, CPN_MSG_GRANT, s->now, &g, &c->grant_len);
}

static void s_free(chain_t *c)
{
    free(c->req);
    free(c->claim);
    free(c->lease);
    free(c->grant);
}

/* Open the GRANT of a chain made from s with opts; the code, and the reason checked to
 * contain `why` (NULL: anything). */
static int s_open(spec_t *s, const cpn_chain_opts_t *o, const char *why)
{
    chain_t c;
    s_make(s, &c);
    cpn_chain_t *ch = malloc(sizeof *ch);
    assert_non_null(ch);
    int r = cpn_chain_open(c.grant, c.grant_len, CPN_MSG_GRANT, o, ch);
    if (why && !strstr(ch->why, why))
        fail_msg("reason \"%s\" lacks \"%s\"", ch->why, why);
    assert_true(ch->why[0] != 0);
    free(ch);
    s_free(&c);
    return r;
}

static int s_setup(void **state)
{
    (void)state;
    cpn_identity_t **ids[] = {&k.tenant, &k.broker, &k.peer, &k.other, &k.origin, &k.middle};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (cpn_identity_generate(ids[i]) != CPN_OK)
            return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    cpn_identity_destroy(&k.tenant);
    cpn_identity_destroy(&k.broker);
    cpn_identity_destroy(&k.peer);
    cpn_identity_destroy(&k.other);
    cpn_identity_destroy(&k.origin);
    cpn_identity_destroy(&k.middle);
    return 0;
}

/* ---- the good chain ---- */

static void test_good_chain_accepted_at_every_level(void **state)
{
    (void)state;
    spec_t s;
    chain_t c;
    s_spec(&s);
    s_make(&s, &c);
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t o = {.broker_pk = cpn_identity_pk(k.broker),
                          .tenant_pk = cpn_identity_pk(k.tenant),
                          .peer_pk = cpn_identity_pk(k.peer),
                          .now_ms = s.now,
                          .max_request_age_ms = 60000,
                          .max_start_skew_ms = 30000,
                          .flags = CPN_CHAIN_NEW};
    assert_int_equal(cpn_chain_open(c.grant, c.grant_len, CPN_MSG_GRANT, &o, ch), CPN_OK);
    assert_true(ch->has_grant && ch->has_lease);
    assert_string_equal(ch->req.id, "job-1");
    assert_int_equal(ch->lease.price, 1000);
    assert_int_equal(ch->n_forwards, 0);
    assert_int_equal(ch->n_brokers, 1);
    assert_memory_equal(ch->brokers[0], cpn_identity_pk(k.broker), CPN_PK_LEN);
    /* whichever level the frame starts at, and CPN_MSG_NONE learning it from the frame */
    assert_int_equal(cpn_chain_open(c.lease, c.lease_len, CPN_MSG_LEASE, NULL, ch), CPN_OK);
    assert_false(ch->has_grant);
    assert_int_equal(cpn_chain_open(c.claim, c.claim_len, CPN_MSG_CLAIM, NULL, ch), CPN_OK);
    assert_false(ch->has_lease);
    assert_int_equal(cpn_chain_open(c.req, c.req_len, CPN_MSG_REQUEST, NULL, ch), CPN_OK);
    assert_int_equal(cpn_chain_open(c.grant, c.grant_len, CPN_MSG_NONE, NULL, ch), CPN_OK);
    assert_int_equal(ch->top, CPN_MSG_GRANT);
    free(ch);
    s_free(&c);
}

static void test_sigcache_verifies_each_frame_once(void **state)
{
    (void)state;
    spec_t s;
    chain_t c;
    s_spec(&s);
    s_make(&s, &c);
    /* Direct-mapped: two of the four frames share a slot with probability ~6 / slots, so
     * many slots (about 1e-5 here) keep this from failing by chance. */
    cpn_sigcache_t *cache = cpn_sigcache_new(1u << 20);
    cpn_chain_t *ch = malloc(sizeof *ch);
    cpn_chain_opts_t o = {.sigcache = cache};
    assert_int_equal(cpn_chain_open(c.grant, c.grant_len, CPN_MSG_GRANT, &o, ch), CPN_OK);
    assert_int_equal(cpn_sigcache_hits(cache), 0);
    assert_int_equal(cpn_chain_open(c.grant, c.grant_len, CPN_MSG_GRANT, &o, ch), CPN_OK);
    assert_int_equal(cpn_sigcache_hits(cache), 4); /* GRANT, LEASE, CLAIM, REQUEST */
    free(ch);
    cpn_sigcache_destroy(&cache);
    s_free(&c);
}

/* ---- the inconsistencies, one by one ---- */

static void test_grant_request_id_mismatch_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    snprintf(s.grant_request_id, sizeof s.grant_request_id, "%s", "job-2");
    assert_int_equal(s_open(&s, NULL, "request_id"), CPN_E_CHAIN);
}

static void test_lease_price_differs_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.lease.price = 1; /* the claim said 1000 */
    assert_int_equal(s_open(&s, NULL, "price"), CPN_E_CHAIN);
}

static void test_lease_units_differ_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.lease.units = 3;
    assert_int_equal(s_open(&s, NULL, "units"), CPN_E_CHAIN);
}

static void test_lease_package_differs_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "t4x1");
    assert_int_equal(s_open(&s, NULL, "package"), CPN_E_CHAIN);
}

/* A slice CLAIM's alts: the LEASE may name one of them (the peer placed the slice there), not
 * any other package, and only a slice REQUEST may carry them. */
static void test_lease_package_from_alts(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.req.units = s.claim.units = 1;
    s.req.share = 500;
    snprintf(s.claim.package, sizeof s.claim.package, "%s", "a10-a");
    snprintf(s.claim.alts, sizeof s.claim.alts, "%s", "a10-b,a10-bb");
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "a10-bb");
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "a10-b");
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "a10");
    assert_int_equal(s_open(&s, NULL, "nor one of its alts"), CPN_E_CHAIN);
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "a10-b,a10-bb");
    assert_int_equal(s_open(&s, NULL, "nor one of its alts"), CPN_E_CHAIN);
    s.req.share = 0;
    snprintf(s.lease.package, sizeof s.lease.package, "%s", "a10-a");
    assert_int_equal(s_open(&s, NULL, "asks for no slice"), CPN_E_CHAIN);
}

static void test_claim_alts_split(void **state)
{
    (void)state;
    char ids[3][CPN_NAME_MAX];
    assert_int_equal(cpn_claim_alts_split("a,,b,c,d", ids, 3), 3);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[1], "b");
    assert_string_equal(ids[2], "c");
    char longer[CPN_NAME_MAX + 8];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    longer[0] = ',';
    assert_int_equal(cpn_claim_alts_split(longer, ids, 3), 0);
    assert_int_equal(cpn_claim_alts_split("", ids, 3), 0);
    assert_true(cpn_claim_alt("a,b", "b"));
    assert_false(cpn_claim_alt("a,bb", "b"));
    assert_false(cpn_claim_alt("a,b", ""));
}

static void test_lease_end_not_start_plus_duration_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.lease.start_ms = s.now;
    s.lease.end_ms = s.now + 1000 * DAY_MS;
    assert_int_equal(s_open(&s, NULL, "start + duration"), CPN_E_CHAIN);
    s_spec(&s);
    s.lease.start_ms = s.now;
    s.lease.end_ms = s.now + 1; /* shorter is as wrong */
    assert_int_equal(s_open(&s, NULL, "start + duration"), CPN_E_CHAIN);
}

static void test_lease_start_far_from_now_refused_for_new_grant(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.lease.start_ms = s.now + 999 * DAY_MS; /* end = start + duration, but 999 days out */
    cpn_chain_opts_t o = {.now_ms = s.now, .max_start_skew_ms = 30000, .flags = CPN_CHAIN_NEW};
    assert_int_equal(s_open(&s, &o, "after now"), CPN_E_CHAIN);
    /* before the tenant signed its REQUEST */
    s_spec(&s);
    s.req_ts = s.now;
    s.lease.start_ms = s.now - 3600 * 1000;
    assert_int_equal(s_open(&s, &o, "before its REQUEST"), CPN_E_CHAIN);
    /* ten minutes ago, after the REQUEST: the first answer to a CLAIM retried since */
    s_spec(&s);
    s.req_ts = s.now - 700 * 1000;
    s.lease.start_ms = s.now - 600 * 1000;
    assert_int_equal(s_open(&s, &o, NULL), CPN_OK);
}

static void test_lease_state_released_refused_for_new_grant(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    snprintf(s.lease.state, sizeof s.lease.state, "%s", "released");
    cpn_chain_opts_t o = {.flags = CPN_CHAIN_NEW};
    assert_int_equal(s_open(&s, &o, "must be new"), CPN_E_CHAIN);
    /* a released lease is a fine chain to verify offline (the RELEASE's answer) */
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    snprintf(s.lease.state, sizeof s.lease.state, "%s", "granted");
    assert_int_equal(s_open(&s, NULL, "state"), CPN_E_CHAIN);
    /* renewed: active, and at least one second per renewal past the term */
    s_spec(&s);
    s.lease.renewals = 1;
    s.lease.start_ms = s.now;
    s.lease.end_ms = s.now + 3600 * 1000 + 600 * 1000;
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    assert_int_equal(s_open(&s, &o, "must be new"), CPN_E_CHAIN);
    s.lease.end_ms = s.now + 3600 * 1000;
    assert_int_equal(s_open(&s, NULL, "renewals"), CPN_E_CHAIN);
}

static void test_made_up_lease_id_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    snprintf(s.lease.lease_id, sizeof s.lease.lease_id, "%s", "Lmadeup0000000000");
    assert_int_equal(s_open(&s, NULL, "lease id"), CPN_E_CHAIN);
}

static void test_old_claim_under_new_lease_id_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    /* the id of another request of the same tenant: a new lease id for the old CLAIM */
    cpn_chain_lease_id(s.claim.peer, cpn_identity_pk(k.tenant), "job-0", s.lease.lease_id);
    assert_int_equal(s_open(&s, NULL, "lease id"), CPN_E_CHAIN);
}

static void test_grant_signer_not_pinned_broker_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    /* a chain made entirely with the attacker's own keys */
    s.claim_signer = k.other;
    s.grant_signer = k.other;
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    cpn_chain_opts_t o = {.broker_pk = cpn_identity_pk(k.broker)};
    assert_int_equal(s_open(&s, &o, "GRANT"), CPN_E_UNTRUSTED);
}

static void test_grant_signer_not_claim_signer_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.grant_signer = k.other;
    assert_int_equal(s_open(&s, NULL, "broker that claimed"), CPN_E_CHAIN);
}

static void test_lease_signer_not_claim_peer_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.lease_signer = k.other;
    assert_int_equal(s_open(&s, NULL, "CLAIM's peer"), CPN_E_UNTRUSTED);
}

static void test_claim_signer_pinned(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    cpn_chain_opts_t o = {.claim_pk = cpn_identity_pk(k.other)};
    assert_int_equal(s_open(&s, &o, "CLAIM"), CPN_E_UNTRUSTED);
    cpn_chain_opts_t t = {.tenant_pk = cpn_identity_pk(k.other)};
    assert_int_equal(s_open(&s, &t, "REQUEST"), CPN_E_UNTRUSTED);
}

static void test_wrong_embedded_type_refused_at_each_level(void **state)
{
    (void)state;
    spec_t s;
    chain_t good;
    s_spec(&s);
    s_make(&s, &good);
    /* GRANT > REQUEST: what overflowed cpnctl's stack (a cpn_request_t into a cpn_lease_t) */
    s_spec(&s);
    s.lease_frame = good.req;
    s.lease_frame_len = good.req_len;
    assert_int_equal(s_open(&s, NULL, "not a LEASE"), CPN_E_WRONG_TYPE);
    /* LEASE > REQUEST instead of a CLAIM */
    s_spec(&s);
    s.claim_frame = good.req;
    s.claim_frame_len = good.req_len;
    assert_int_equal(s_open(&s, NULL, "not a CLAIM"), CPN_E_WRONG_TYPE);
    /* CLAIM > CLAIM instead of a REQUEST */
    s_spec(&s);
    s.req_frame = good.claim;
    s.req_frame_len = good.claim_len;
    assert_int_equal(s_open(&s, NULL, "not a REQUEST"), CPN_E_WRONG_TYPE);
    /* the outermost frame of the wrong type */
    cpn_chain_t *ch = malloc(sizeof *ch);
    assert_int_equal(cpn_chain_open(good.req, good.req_len, CPN_MSG_GRANT, NULL, ch),
                     CPN_E_WRONG_TYPE);
    assert_int_equal(cpn_chain_open(good.lease, good.lease_len, CPN_MSG_CLAIM, NULL, ch),
                     CPN_E_WRONG_TYPE);
    free(ch);
    s_free(&good);
}

static void test_bad_signature_refused(void **state)
{
    (void)state;
    spec_t s;
    chain_t good;
    s_spec(&s);
    s_make(&s, &good);
    good.req[good.req_len - 1] ^= 1; /* last byte of the REQUEST's signature */
    s.req_frame = good.req;
    s.req_frame_len = good.req_len;
    assert_int_equal(s_open(&s, NULL, "signature"), CPN_E_SIG);
    s_free(&good);
}

static void test_claim_beyond_request_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.claim.units = 5; /* the tenant asked for 4 */
    assert_int_equal(s_open(&s, NULL, "units"), CPN_E_CHAIN);
    s_spec(&s);
    s.claim.price = 2001; /* its ceiling is 2000 */
    assert_int_equal(s_open(&s, NULL, "ceiling"), CPN_E_CHAIN);
    s_spec(&s);
    s.claim.duration_s = 7200;
    assert_int_equal(s_open(&s, NULL, "duration"), CPN_E_CHAIN);
}

/* What a peer refuses (peer/grant.c), no broker or tenant accepts either: an unsplit request
 * claimed in part, a duration shorter than asked. A split request may be claimed in part, and
 * a replacement (CLAIM `replaces`, a rematch) is held to the rest of the lease it replaces,
 * which the peer checks against the NOTICE: the chain leaves both alone. */
static void test_claim_short_of_request_refused(void **state)
{
    (void)state;
    static const uint8_t notice[] = "a NOTICE frame: the chain does not open it";
    spec_t s;
    s_spec(&s);
    s.claim.units = 3; /* of 4, not split */
    assert_int_equal(s_open(&s, NULL, "unsplit"), CPN_E_CHAIN);
    s_spec(&s);
    s.claim.duration_s = 1800; /* of 3600 */
    assert_int_equal(s_open(&s, NULL, "duration"), CPN_E_CHAIN);
    s_spec(&s);
    s.req.split = true;
    s.claim.units = 3;
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
    s_spec(&s);
    s.claim.replaces.ptr = notice;
    s.claim.replaces.len = sizeof notice;
    s.claim.units = 1;
    s.claim.duration_s = 600;
    assert_int_equal(s_open(&s, NULL, NULL), CPN_OK);
}

#define S_RUN_MS 30000 /* cpnctl verify of one small file: seconds at the very most */

/* Run `cpnctl verify FILE`; its exit code, stderr in err (NUL-terminated). */
static int s_cpnctl_verify(const char *file, char *err, size_t err_size)
{
    const char *bd = getenv("CPN_BUILDDIR");
    char bin[1024], errf[1100];
    if (!bd || !*bd)
        fail_msg("CPN_BUILDDIR is not set: it names the build tree with cpnctl");
    snprintf(bin, sizeof bin, "%s/cpnctl", bd);
    snprintf(errf, sizeof errf, "%s.err", file);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(errf, "w", stderr))
            _exit(127);
        execl(bin, bin, "verify", file, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    uint64_t until = cpn_mono_ms() + S_RUN_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (cpn_mono_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("cpnctl verify did not end within %d ms", S_RUN_MS);
        }
        usleep(10000);
    }
    FILE *f = fopen(errf, "r");
    assert_non_null(f);
    size_t n = fread(err, 1, err_size - 1, f);
    err[n] = '\0';
    fclose(f);
    unlink(errf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Write the GRANT of a chain made from s to file; cpnctl verify's exit code and stderr. */
static int s_verify_file(spec_t *s, const char *file, char *err, size_t err_size)
{
    chain_t c;
    s_make(s, &c);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(c.grant, 1, c.grant_len, f), c.grant_len);
    assert_int_equal(fclose(f), 0);
    s_free(&c);
    int rc = s_cpnctl_verify(file, err, err_size);
    unlink(file);
    return rc;
}

static void test_cpnctl_verify_refuses_short_claim(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir[512], file[600], err[4096];
    snprintf(dir, sizeof dir, "%s/test_chain.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/job.lease", dir);
    spec_t s;
    s_spec(&s);
    int rc = s_verify_file(&s, file, err, sizeof err);
    if (rc != 0)
        fail_msg("cpnctl verify of a good chain: exit %d, stderr: %s", rc, err);
    s.claim.units = 3;
    rc = s_verify_file(&s, file, err, sizeof err);
    if (rc != 1 || !strstr(err, "INVALID") || !strstr(err, "unsplit"))
        fail_msg("cpnctl verify of a CLAIM for 3 of 4 unsplit units: exit %d, stderr: %s", rc,
                 err);
    s_spec(&s);
    s.claim.duration_s = 1800;
    rc = s_verify_file(&s, file, err, sizeof err);
    if (rc != 1 || !strstr(err, "INVALID") || !strstr(err, "duration"))
        fail_msg("cpnctl verify of a CLAIM for half the duration: exit %d, stderr: %s", rc, err);
    assert_int_equal(rmdir(dir), 0);
}

static void test_old_request_refused(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    s.req_ts = s.now - DAY_MS; /* signed a day ago, carried by a fresh CLAIM */
    cpn_chain_opts_t o = {.now_ms = s.now, .max_request_age_ms = 300000};
    assert_int_equal(s_open(&s, &o, "REQUEST"), CPN_E_STALE);
    s.req_ts = s.now + DAY_MS; /* or a day ahead */
    assert_int_equal(s_open(&s, &o, "REQUEST"), CPN_E_STALE);
    s.req_ts = s.now - 299000;
    assert_int_equal(s_open(&s, &o, NULL), CPN_OK);
}

/* ---- routes ---- */

/* A CLAIM by the home broker (k.broker) whose route holds the origin's CLAIM (signed by
 * k.origin) in `hops` FORWARDs: origin's, then k.middle's. `bad` spoils one thing. */
enum { R_GOOD, R_GARBAGE, R_NOT_FORWARD, R_OTHER_TERMS, R_OTHER_PEER, R_HOPS, R_SIGNER, R_ALTS };
/* A resolved summary row (docs/PROTOCOL.md §12): the origin's CLAIM names the home broker
 * (k.broker) and a row, at a price ceiling; R_SUM_* spoil one thing of it. */
enum { R_SUM_GOOD = 100, R_SUM_DEARER, R_SUM_NOT_HOME, R_SUM_TO_PEER, R_SUM_UNITS };

static bool s_sum(int bad)
{
    return bad >= R_SUM_GOOD;
}

static int s_route(int bad, uint32_t hops, cpn_chain_t *ch, uint32_t max_hops)
{
    spec_t s;
    chain_t c;
    s_spec(&s);
    s_make(&s, &c);
    cpn_claim_t oc = s.claim;
    oc.request.ptr = c.req;
    oc.request.len = c.req_len;
    if (bad == R_OTHER_TERMS)
        oc.price = 999;
    if (s_sum(bad)) {
        memcpy(oc.peer, cpn_identity_pk(bad == R_SUM_NOT_HOME ? k.middle : k.broker), CPN_PK_LEN);
        snprintf(oc.package, sizeof oc.package, "s0123456789abcdef");
        oc.price = bad == R_SUM_DEARER ? s.claim.price - 1 : s.claim.price * 2;
        if (bad == R_SUM_UNITS)
            oc.units = s.claim.units + 1;
    }
    size_t olen, flen[8];
    uint8_t *ocf = s_build(bad == R_SIGNER ? k.other : k.origin, CPN_MSG_CLAIM, s.now, &oc, &olen);
    uint8_t *fw[8] = {0};
    const uint8_t *inner = bad == R_NOT_FORWARD ? c.req : ocf;
    size_t inner_len = bad == R_NOT_FORWARD ? c.req_len : olen;
    for (uint32_t i = 0; i < hops; i++) {
        cpn_forward_t f;
        memset(&f, 0, sizeof f);
        memcpy(f.to, bad == R_OTHER_PEER ? cpn_identity_pk(k.other) : cpn_identity_pk(k.peer),
               CPN_PK_LEN);
        if (s_sum(bad) && bad != R_SUM_TO_PEER)
            memcpy(f.to, oc.peer, CPN_PK_LEN);
        f.hops = bad == R_HOPS ? 5 : i + 1;
        f.msg.ptr = inner;
        f.msg.len = inner_len;
        fw[i] = s_build(i == 0 ? k.origin : k.middle, CPN_MSG_FORWARD, s.now, &f, &flen[i]);
        inner = fw[i];
        inner_len = flen[i];
    }
    static const uint8_t garbage[] = {0x92, 0xc4, 0x03, 'a', 'b', 'c', 0xc4, 0x01, 0x00};
    cpn_claim_t hc = oc;
    hc.price = s.claim.price;
    if (bad == R_ALTS) /* a broker on the way adds an alternative the origin did not name */
        snprintf(hc.alts, sizeof hc.alts, "%s", "t4x1");
    if (s_sum(bad)) { /* the home broker picked its peer's package */
        memcpy(hc.peer, s.claim.peer, CPN_PK_LEN);
        snprintf(hc.package, sizeof hc.package, "%s", s.claim.package);
        hc.units = s.claim.units;
    }
    if (bad == R_GARBAGE) {
        hc.route.ptr = garbage;
        hc.route.len = sizeof garbage;
    } else {
        hc.route.ptr = inner;
        hc.route.len = inner_len;
    }
    size_t hlen;
    uint8_t *hcf = s_build(k.broker, CPN_MSG_CLAIM, s.now, &hc, &hlen);
    cpn_chain_opts_t o = {.max_hops = max_hops};
    int r = cpn_chain_open(hcf, hlen, CPN_MSG_CLAIM, &o, ch);
    free(hcf);
    for (uint32_t i = 0; i < hops; i++)
        free(fw[i]);
    free(ocf);
    s_free(&c);
    return r;
}

static void test_route_good_lists_brokers(void **state)
{
    (void)state;
    cpn_chain_t *ch = malloc(sizeof *ch);
    assert_int_equal(s_route(R_GOOD, 2, ch, 0), CPN_OK);
    assert_int_equal(ch->n_forwards, 2);
    assert_int_equal(ch->n_brokers, 3);
    assert_memory_equal(ch->brokers[0], cpn_identity_pk(k.origin), CPN_PK_LEN);
    assert_memory_equal(ch->brokers[1], cpn_identity_pk(k.middle), CPN_PK_LEN);
    assert_memory_equal(ch->brokers[2], cpn_identity_pk(k.broker), CPN_PK_LEN);
    assert_memory_equal(ch->origin_env.from, cpn_identity_pk(k.origin), CPN_PK_LEN);
    free(ch);
}

static void test_garbage_route_refused(void **state)
{
    (void)state;
    cpn_chain_t *ch = malloc(sizeof *ch);
    int r = s_route(R_GARBAGE, 1, ch, 0);
    assert_int_not_equal(r, CPN_OK);
    assert_non_null(strstr(ch->why, "route"));
    assert_int_equal(s_route(R_NOT_FORWARD, 1, ch, 0), CPN_E_WRONG_TYPE);
    assert_int_equal(s_route(R_OTHER_TERMS, 1, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_OTHER_PEER, 1, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_HOPS, 2, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_SIGNER, 1, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_ALTS, 1, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_GOOD, 2, ch, 1), CPN_E_DEPTH); /* longer than max_hops */
    free(ch);
}

static void test_resolved_summary_route(void **state)
{
    (void)state;
    cpn_chain_t *ch = malloc(sizeof *ch);
    assert_int_equal(s_route(R_SUM_GOOD, 2, ch, 0), CPN_OK);
    assert_memory_equal(ch->origin.peer, cpn_identity_pk(k.broker), CPN_PK_LEN);
    assert_memory_equal(ch->claim.peer, cpn_identity_pk(k.peer), CPN_PK_LEN);
    /* Dearer than the row's ceiling, resolved by another broker than the row's, FORWARDs
     * naming the peer instead of the row's broker, other units: each refused. */
    assert_int_equal(s_route(R_SUM_DEARER, 2, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_SUM_NOT_HOME, 2, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_SUM_TO_PEER, 2, ch, 0), CPN_E_CHAIN);
    assert_int_equal(s_route(R_SUM_UNITS, 2, ch, 0), CPN_E_CHAIN);
    free(ch);
}

/* ---- terms, lease ids, typed decoding ---- */

static void test_same_terms_ignores_progress_only(void **state)
{
    (void)state;
    spec_t s;
    s_spec(&s);
    cpn_request_t a = s.req, b = s.req;
    b.progress = true;
    assert_true(cpn_chain_same_terms(&a, &b));
    b.units = 5;
    assert_false(cpn_chain_same_terms(&a, &b));
}

static void test_lease_id_rule(void **state)
{
    (void)state;
    char a[CPN_NAME_MAX], b[CPN_NAME_MAX];
    cpn_chain_lease_id(cpn_identity_pk(k.peer), cpn_identity_pk(k.tenant), "job-1", a);
    cpn_chain_lease_id(cpn_identity_pk(k.peer), cpn_identity_pk(k.tenant), "job-2", b);
    assert_int_equal(strlen(a), 17);
    assert_int_equal(a[0], 'L');
    assert_string_not_equal(a, b);
}

static void test_typed_decode_refuses_other_type(void **state)
{
    (void)state;
    spec_t s;
    chain_t c;
    s_spec(&s);
    s_make(&s, &c);
    cpn_env_t env;
    assert_int_equal(cpn_env_parse(c.req, c.req_len, NULL, &env), CPN_OK);
    cpn_grant_t g;
    memset(&g, 0xAA, sizeof g);
    assert_int_equal(cpn_grant_decode(&env, NULL, &g), CPN_E_WRONG_TYPE);
    for (size_t i = 0; i < sizeof g; i++)
        assert_int_equal(((const uint8_t *)&g)[i], 0); /* cleared, nothing written past it */
    cpn_request_t q;
    assert_int_equal(cpn_request_decode(&env, NULL, &q), CPN_OK);
    assert_string_equal(q.id, "job-1");
    cpn_claim_t cl;
    assert_int_equal(cpn_claim_decode(&env, NULL, &cl), CPN_E_WRONG_TYPE);
    s_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_chain_accepted_at_every_level),
        cmocka_unit_test(test_sigcache_verifies_each_frame_once),
        cmocka_unit_test(test_grant_request_id_mismatch_refused),
        cmocka_unit_test(test_lease_price_differs_refused),
        cmocka_unit_test(test_lease_units_differ_refused),
        cmocka_unit_test(test_lease_package_differs_refused),
        cmocka_unit_test(test_lease_package_from_alts),
        cmocka_unit_test(test_claim_alts_split),
        cmocka_unit_test(test_lease_end_not_start_plus_duration_refused),
        cmocka_unit_test(test_lease_start_far_from_now_refused_for_new_grant),
        cmocka_unit_test(test_lease_state_released_refused_for_new_grant),
        cmocka_unit_test(test_made_up_lease_id_refused),
        cmocka_unit_test(test_old_claim_under_new_lease_id_refused),
        cmocka_unit_test(test_grant_signer_not_pinned_broker_refused),
        cmocka_unit_test(test_grant_signer_not_claim_signer_refused),
        cmocka_unit_test(test_lease_signer_not_claim_peer_refused),
        cmocka_unit_test(test_claim_signer_pinned),
        cmocka_unit_test(test_wrong_embedded_type_refused_at_each_level),
        cmocka_unit_test(test_bad_signature_refused),
        cmocka_unit_test(test_claim_beyond_request_refused),
        cmocka_unit_test(test_claim_short_of_request_refused),
        cmocka_unit_test(test_cpnctl_verify_refuses_short_claim),
        cmocka_unit_test(test_old_request_refused),
        cmocka_unit_test(test_route_good_lists_brokers),
        cmocka_unit_test(test_garbage_route_refused),
        cmocka_unit_test(test_resolved_summary_route),
        cmocka_unit_test(test_same_terms_ignores_progress_only),
        cmocka_unit_test(test_lease_id_rule),
        cmocka_unit_test(test_typed_decode_refuses_other_type),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
