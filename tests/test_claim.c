/* test_claim.c - the claim module alone (broker/claim.c, claim_index.c, claim_relay.c): its
 * request state machine, driven with an injected clock and a captured send layer
 * (tests/claim_fake_send.c), over a real offer book, a real policy file and a real SQLite
 * ledger in a temp dir. Frames are real: the tenant signs its REQUEST, the peer its LEASE
 * and NACK, and the claim module opens the chain as it does in the daemon.
 *
 * Every transition of the table: request -> claiming / queued / in-doubt / free (no
 * match); flush; lease (final, split, unrecorded); nack settled (next candidate, last one)
 * and open (in doubt); timeout (retry, final, in doubt); unsent (committed or not); stop.
 * Also a late LEASE after the timeout, and the index by seq against a reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "book.h"
#include "chain.h"
#include "claim.h"
#include "claim_fake_send.h"
#include "claim_index.h"
#include "clock.h"
#include "ledger.h"
#include "policy.h"
#include "sigcache.h"
#include "window.h"
#include "msg_typed.h"

static uint64_t s_now, s_mono;
static uint64_t s_now_ms(void)
{
    return s_now;
}
static uint64_t s_mono_ms(void)
{
    return s_mono;
}

enum { T_TENANT, T_PEER_A, T_PEER_B, T_BROKER, T_N };
static const char *const s_names[T_N] = {"tenant", "peer-a", "peer-b", "broker"};

/* What the claim module is given (claim_svc_t points into it): no broker. */
typedef struct {
    policy_t *pol;
    ledger_t *ledger;
    book_t *book;
    cpn_sigcache_t *sigcache;
    cpn_signer_t signer;
    cpn_limits_t lim;
    broker_stats_t stats;
} s_svc_t;

typedef struct {
    char dir[256];
    cpn_identity_t *id[T_N];
    cpn_signer_t signer[T_N];
    s_svc_t b;
    claim_t *claim;
    uint64_t ad_seq;
} s_fix_t;

static const char *s_policy_fmt = "broker:\n"
                                  "  name: test\n"
                                  "  key: broker.key\n"
                                  "  listen: tcp://127.0.0.1:7999\n"
                                  "  ledger: ledger.db\n"
                                  "  transport:\n"
                                  "    curve: false\n"
                                  "peers:\n"
                                  "  trusted: any\n"
                                  "tenants:\n"
                                  "  - name: t\n"
                                  "    key: tenant.pub\n"
                                  "%s"
                                  "limits:\n"
                                  "  claim_timeout: 5s\n"
                                  "  claim_tries: 3\n"
                                  "  skew: 30s\n";

static int s_setup_with(void **state, const char *placement)
{
    s_fix_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char path[400], text[2048];
    if (!f || cpn_crypto_init() != CPN_OK)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cpn-claim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    for (int i = 0; i < T_N; i++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, s_names[i]);
        if (cpn_identity_generate(&f->id[i]) != CPN_OK ||
            cpn_identity_save(f->id[i], path) != CPN_OK)
            return -1;
        f->signer[i].id = f->id[i];
    }
    snprintf(path, sizeof path, "%s/policy.yaml", f->dir);
    snprintf(text, sizeof text, s_policy_fmt, placement);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(text, fp);
    fclose(fp);
    if (policy_load(path, &f->b.pol, NULL) != CPN_OK)
        return -1;
    snprintf(path, sizeof path, "%s/ledger.db", f->dir);
    if (ledger_open(path, &f->b.ledger) != CPN_OK)
        return -1;
    f->b.signer.id = f->id[T_BROKER];
    f->b.lim = cpn_limits_default;
    f->b.book = book_new(1000);
    f->b.sigcache = cpn_sigcache_new(1024);
    s_now = cpn_now_ms(); /* the frames are signed with the real time: stay near it */
    s_mono = 1000000;
    claim_clock_t clock = {.now_ms = s_now_ms, .mono_ms = s_mono_ms};
    claim_svc_t svc = {.out = fake_out(&f->b.stats),
                       .ledger = f->b.ledger,
                       .book = f->b.book,
                       .pol = &f->b.pol,
                       .lim = &f->b.lim,
                       .sigcache = f->b.sigcache,
                       .signer = &f->b.signer,
                       .stats = &f->b.stats}; /* obs NULL: not observed */
    f->claim = claim_new(&svc, 16, &clock);
    if (!f->b.book || !f->b.sigcache || !f->claim)
        return -1;
    fake_reset();
    static const uint8_t rid[] = {1, 2, 3};
    fake_route_set(cpn_identity_pk(f->id[T_PEER_A]), rid, sizeof rid);
    fake_route_set(cpn_identity_pk(f->id[T_PEER_B]), rid, sizeof rid);
    *state = f;
    return 0;
}

static int s_setup(void **state)
{
    return s_setup_with(state, "");
}

static int s_setup_batch(void **state)
{
    return s_setup_with(state, "placement:\n  batch:\n    max: 8\n    wait: 1s\n");
}

static int s_teardown(void **state)
{
    s_fix_t *f = *state;
    char cmd[400];
    claim_destroy(&f->claim);
    assert_null(f->claim);
    claim_destroy(&f->claim); /* NULL is fine */
    fake_reset();
    ledger_destroy(&f->b.ledger);
    book_destroy(&f->b.book);
    cpn_sigcache_destroy(&f->b.sigcache);
    policy_destroy(&f->b.pol);
    for (int i = 0; i < T_N; i++)
        cpn_identity_destroy(&f->id[i]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

/* The peer `who` offers `free` units of package "gpu" at `price`. */
static void s_offer(s_fix_t *f, int who, uint32_t free_units, uint64_t price)
{
    cpn_package_t pkg;
    memset(&pkg, 0, sizeof pkg);
    snprintf(pkg.id, sizeof pkg.id, "gpu");
    snprintf(pkg.region, sizeof pkg.region, "here");
    pkg.cores = 8;
    pkg.mem_bytes = 1ull << 30;
    pkg.price = price;
    pkg.total = 8;
    pkg.free = free_units;
    cpn_ad_t ad = {.ttl_s = 3600, .n_packages = 1, .packages = &pkg};
    snprintf(ad.name, sizeof ad.name, "%s", s_names[who]);
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&f->signer[who], CPN_MSG_AD, &ad, &frame, &len), CPN_OK);
    assert_int_equal(book_put_ad(f->b.book, cpn_identity_pk(f->id[who]), ++f->ad_seq, s_now, &ad,
                                 frame, len, NULL, 0),
                     CPN_OK);
    free(frame);
}

/* Sign `body` as `who` and hand it to fn as the event loop would (rx verified). */
typedef struct {
    uint8_t *frame;
    broker_rx_t rx;
} s_msg_t;

static void s_msg(s_fix_t *f, int who, cpn_msg_type_t type, const void *body, s_msg_t *m)
{
    static const uint8_t rid[] = {9, 9};
    size_t len = 0;
    memset(m, 0, sizeof *m);
    assert_int_equal(cpn_signer_build(&f->signer[who], type, body, &m->frame, &len), CPN_OK);
    assert_int_equal(cpn_env_parse(m->frame, len, &f->b.lim, &m->rx.env), CPN_OK);
    m->rx.rid = rid;
    m->rx.rid_len = sizeof rid;
}

static void s_request(s_fix_t *f, const char *id, uint32_t units, bool split)
{
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "%s", id);
    req.units = units;
    req.split = split;
    req.duration_s = 3600;
    req.cores = 1;
    s_msg_t m;
    s_msg(f, T_TENANT, CPN_MSG_REQUEST, &req, &m);
    claim_on_request(f->claim, &m.rx, &req);
    free(m.frame);
}

static const char *s_state(s_fix_t *f, const char *id)
{
    return claim_request_state(f->claim, cpn_identity_pk(f->id[T_TENANT]), id);
}

/* The n-th captured item of kind k (from the end if n < 0); fails if none. */
static const fake_sent_t *s_find(fake_kind_t k, int n)
{
    int seen = 0;
    if (n >= 0) {
        for (size_t i = 0; i < g_n_sent; i++)
            if (g_sent[i].kind == k && seen++ == n)
                return &g_sent[i];
    } else {
        for (size_t i = g_n_sent; i-- > 0;)
            if (g_sent[i].kind == k && --seen == n)
                return &g_sent[i];
    }
    fail_msg("no captured item of kind %d number %d", (int)k, n);
    return NULL;
}

static size_t s_count(fake_kind_t k)
{
    size_t n = 0;
    for (size_t i = 0; i < g_n_sent; i++)
        n += g_sent[i].kind == k;
    return n;
}

static bool s_claim_to(const fake_sent_t *c, s_fix_t *f, int who)
{
    return memcmp(c->peer, cpn_identity_pk(f->id[who]), CPN_PK_LEN) == 0;
}

/* The peer that got CLAIM c grants it (all its units): a LEASE as the peer signs it. */
static void s_lease(s_fix_t *f, int who, const fake_sent_t *c, const char *request_id)
{
    cpn_env_t cenv;
    cpn_claim_t cl;
    assert_int_equal(cpn_env_parse(c->frame, c->len, &f->b.lim, &cenv), CPN_OK);
    assert_int_equal(cpn_claim_decode(&cenv, &f->b.lim, &cl), CPN_OK);
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim.ptr = c->frame;
    l.claim.len = c->len;
    cpn_chain_lease_id(cl.peer, cpn_identity_pk(f->id[T_TENANT]), request_id, l.lease_id);
    snprintf(l.package, sizeof l.package, "%s", cl.package);
    l.units = cl.units;
    l.price = cl.price;
    l.start_ms = s_now;
    l.end_ms = s_now + cl.duration_s * 1000;
    snprintf(l.state, sizeof l.state, "active");
    s_msg_t m;
    s_msg(f, who, CPN_MSG_LEASE, &l, &m);
    claim_on_lease(f->claim, &m.rx, &l);
    free(m.frame);
}

static void s_nack(s_fix_t *f, int who, const fake_sent_t *c, int code)
{
    cpn_nack_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.ref, sizeof n.ref, "r");
    n.ref_seq = c->claim_seq;
    n.code = code;
    snprintf(n.reason, sizeof n.reason, "test refusal");
    s_msg_t m;
    s_msg(f, who, CPN_MSG_NACK, &n, &m);
    claim_on_nack(f->claim, &m.rx, &n);
    free(m.frame);
}

/* REQUEST -> claiming; LEASE -> GRANT, free; the lease and no intent left in the ledger. */
static void test_request_lease_grant(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_request(f, "r1", 1, false);
    assert_string_equal(s_state(f, "r1"), "claiming");
    assert_int_equal(claim_in_flight(f->claim), 1);
    const fake_sent_t *c = s_find(FAKE_CLAIM, 0);
    assert_true(s_claim_to(c, f, T_PEER_A));
    assert_true(claim_waiting(f->claim, c->claim_seq));
    s_lease(f, T_PEER_A, c, "r1");
    assert_string_equal(s_state(f, "r1"), "free");
    assert_int_equal(claim_in_flight(f->claim), 0);
    assert_false(claim_waiting(f->claim, s_find(FAKE_CLAIM, 0)->claim_seq));
    const fake_sent_t *g = s_find(FAKE_GRANT, 0);
    assert_string_equal(g->ref, "r1");
    assert_int_equal(f->b.stats.grants, 1);
    ledger_intent_t in[4];
    size_t n = 9;
    assert_int_equal(ledger_intents(f->b.ledger, cpn_identity_pk(f->id[T_TENANT]), "r1", in, 4, &n),
                     CPN_OK);
    assert_int_equal(n, 0);
}

/* No offer: REQUEST -> free at once, NACK no-match; nothing claimed. */
static void test_request_no_match(void **state)
{
    s_fix_t *f = *state;
    s_request(f, "r1", 1, false);
    assert_string_equal(s_state(f, "r1"), "free");
    assert_int_equal(s_find(FAKE_NACK, 0)->code, CPN_E_NO_MATCH);
    assert_int_equal(s_count(FAKE_CLAIM), 0);
    /* the same id while one is in flight is refused busy */
    s_offer(f, T_PEER_A, 4, 1000);
    s_request(f, "r2", 1, false);
    s_request(f, "r2", 1, false);
    assert_int_equal(s_find(FAKE_NACK, -1)->code, CPN_E_BUSY);
    assert_string_equal(s_state(f, "r2"), "claiming");
}

/* A NACK from the first candidate (settled: the only CLAIM to it) moves on to the next; a
 * NACK from the last ends in the tenant's NACK with the last reason, and the intents are
 * resolved. */
static void test_nack_settled_next_then_final(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_offer(f, T_PEER_B, 4, 2000);
    s_request(f, "r1", 1, false);
    const fake_sent_t *c1 = s_find(FAKE_CLAIM, 0);
    assert_true(s_claim_to(c1, f, T_PEER_A)); /* cheaper first */
    s_nack(f, T_PEER_A, c1, CPN_E_NO_UNITS);
    assert_string_equal(s_state(f, "r1"), "claiming");
    const fake_sent_t *c2 = s_find(FAKE_CLAIM, 1);
    assert_true(s_claim_to(c2, f, T_PEER_B));
    assert_false(claim_waiting(f->claim, 0));
    s_nack(f, T_PEER_B, c2, CPN_E_TENANT_REFUSED);
    assert_string_equal(s_state(f, "r1"), "free");
    const fake_sent_t *n = s_find(FAKE_NACK, 0);
    assert_int_equal(n->code, CPN_E_TENANT_REFUSED);
    assert_non_null(strstr(n->reason, "test refusal"));
    ledger_intent_t in[4];
    size_t k = 9;
    assert_int_equal(ledger_intents(f->b.ledger, cpn_identity_pk(f->id[T_TENANT]), "r1", in, 4, &k),
                     CPN_OK);
    assert_int_equal(k, 0);
}

/* Timeout: the same peer again under a new seq (CLAIMING -> CLAIMING) until claim_tries,
 * then NACK timeout (-> FREE). The intent stays: a LEASE that comes after is late, recorded,
 * and the same request sent again gets it without a new CLAIM. */
static void test_timeout_retry_then_late_lease(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_request(f, "r1", 1, false);
    uint64_t seq1 = s_find(FAKE_CLAIM, 0)->claim_seq;
    claim_tick(f->claim, s_mono); /* not yet */
    assert_int_equal(s_count(FAKE_CLAIM), 1);
    for (int i = 1; i < 3; i++) {
        s_mono += 5000;
        claim_tick(f->claim, s_mono);
        assert_int_equal(s_count(FAKE_CLAIM), (size_t)i + 1);
        assert_true(s_claim_to(s_find(FAKE_CLAIM, i), f, T_PEER_A));
        assert_string_equal(s_state(f, "r1"), "claiming");
    }
    assert_true(claim_waiting(f->claim, seq1)); /* an answer may come to any of them */
    s_mono += 5000;
    claim_tick(f->claim, s_mono);
    assert_string_equal(s_state(f, "r1"), "free");
    assert_int_equal(s_find(FAKE_NACK, 0)->code, CPN_E_TIMEOUT);
    assert_int_equal(f->b.stats.claim_timeouts, 3);
    assert_false(claim_waiting(f->claim, seq1));
    /* late: recorded, no GRANT now, counted */
    s_lease(f, T_PEER_A, s_find(FAKE_CLAIM, 0), "r1");
    assert_int_equal(s_count(FAKE_GRANT), 0);
    assert_int_equal(claim_stats(f->claim)->late, 1);
    ledger_lease_t prior;
    uint8_t *grant = NULL;
    size_t glen = 0;
    assert_int_equal(ledger_find_request(f->b.ledger, cpn_identity_pk(f->id[T_TENANT]), "r1",
                                         &prior, &grant, &glen),
                     CPN_OK);
    assert_non_null(grant);
    free(grant);
    size_t claims = s_count(FAKE_CLAIM);
    s_request(f, "r1", 1, false);
    assert_int_equal(s_count(FAKE_GRANT), 1);
    assert_int_equal(s_count(FAKE_CLAIM), claims);
}

/* An unresolved intent (the peer never answered) puts the same request sent again IN_DOUBT:
 * it claims from that peer only, even if another offers cheaper; its LEASE grants. */
static void test_in_doubt_restart_then_lease(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_B, 4, 2000);
    s_request(f, "r1", 1, false);
    for (int i = 0; i < 3; i++) {
        s_mono += 5000;
        claim_tick(f->claim, s_mono);
    }
    assert_int_equal(s_find(FAKE_NACK, 0)->code, CPN_E_TIMEOUT);
    s_offer(f, T_PEER_A, 4, 1000); /* cheaper now */
    s_request(f, "r1", 1, false);
    assert_string_equal(s_state(f, "r1"), "in-doubt");
    const fake_sent_t *c = s_find(FAKE_CLAIM, -1);
    assert_true(s_claim_to(c, f, T_PEER_B));
    /* a timeout in doubt retries the same peer, and ends in a NACK that says so */
    for (int i = 0; i < 2; i++) {
        s_mono += 5000;
        claim_tick(f->claim, s_mono);
        assert_string_equal(s_state(f, "r1"), "in-doubt");
        assert_true(s_claim_to(s_find(FAKE_CLAIM, -1), f, T_PEER_B));
    }
    s_lease(f, T_PEER_B, s_find(FAKE_CLAIM, -1), "r1");
    assert_string_equal(s_state(f, "r1"), "free");
    assert_string_equal(s_find(FAKE_GRANT, 0)->ref, "r1");
}

/* A NACK for a CLAIM that was not fenced (an earlier CLAIM to that peer could still be
 * granted when it read this one) ends IN_DOUBT: NACK in-doubt, the intent stays. The same
 * after the earlier CLAIM's deadline plus skew (fenced) settles it and moves on. */
static void test_nack_open_vs_fenced(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_offer(f, T_PEER_B, 4, 2000);
    s_request(f, "open", 1, false);
    s_mono += 5000; /* wall clock unchanged: the first CLAIM can still be granted */
    claim_tick(f->claim, s_mono);
    const fake_sent_t *c2 = s_find(FAKE_CLAIM, 1);
    assert_true(s_claim_to(c2, f, T_PEER_A));
    s_nack(f, T_PEER_A, c2, CPN_E_NO_UNITS);
    assert_string_equal(s_state(f, "open"), "free");
    assert_int_equal(s_find(FAKE_NACK, 0)->code, CPN_E_IN_DOUBT);
    assert_int_equal(s_count(FAKE_CLAIM), 2); /* not served elsewhere */
    ledger_intent_t in[4];
    size_t k = 0;
    assert_int_equal(
        ledger_intents(f->b.ledger, cpn_identity_pk(f->id[T_TENANT]), "open", in, 4, &k), CPN_OK);
    assert_int_equal(k, 1);

    s_request(f, "fenced", 1, false);
    s_mono += 5000;
    s_now += 5000 + 30000 + 1; /* past the first CLAIM's deadline plus skew */
    claim_tick(f->claim, s_mono);
    const fake_sent_t *d2 = s_find(FAKE_CLAIM, -1);
    assert_true(s_claim_to(d2, f, T_PEER_A));
    s_nack(f, T_PEER_A, d2, CPN_E_NO_UNITS);
    assert_string_equal(s_state(f, "fenced"), "claiming");
    assert_true(s_claim_to(s_find(FAKE_CLAIM, -1), f, T_PEER_B));
    k = 9;
    assert_int_equal(
        ledger_intents(f->b.ledger, cpn_identity_pk(f->id[T_TENANT]), "fenced", in, 4, &k), CPN_OK);
    assert_int_equal(k, 1); /* A's settled; B's open */
    assert_true(memcmp(in[0].peer, cpn_identity_pk(f->id[T_PEER_B]), CPN_PK_LEN) == 0);
}

/* A split request: 6 units from A (4) and B (the 2 left): two GRANTs, one request. */
static void test_split(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_offer(f, T_PEER_B, 4, 2000);
    s_request(f, "r1", 6, true);
    const fake_sent_t *c1 = s_find(FAKE_CLAIM, 0);
    assert_true(s_claim_to(c1, f, T_PEER_A));
    s_lease(f, T_PEER_A, c1, "r1");
    assert_string_equal(s_state(f, "r1"), "claiming");
    assert_int_equal(s_count(FAKE_GRANT), 1);
    const fake_sent_t *c2 = s_find(FAKE_CLAIM, 1);
    assert_true(s_claim_to(c2, f, T_PEER_B));
    cpn_env_t env;
    cpn_claim_t cl;
    assert_int_equal(cpn_env_parse(c2->frame, c2->len, &f->b.lim, &env), CPN_OK);
    assert_int_equal(cpn_claim_decode(&env, &f->b.lim, &cl), CPN_OK);
    assert_int_equal(cl.units, 2);
    s_lease(f, T_PEER_B, c2, "r1");
    assert_string_equal(s_state(f, "r1"), "free");
    assert_int_equal(s_count(FAKE_GRANT), 2);
}

/* A CLAIM whose ledger commit failed: NACK database (UNRECORDED). One committed but not
 * sent: the next candidate (UNSENT); in doubt: NACK unreachable. */
static void test_unsent(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 4, 1000);
    s_offer(f, T_PEER_B, 4, 2000);
    s_request(f, "r1", 1, false);
    claim_on_unsent(f->claim, s_find(FAKE_CLAIM, 0)->claim_seq, false, CPN_E_DB);
    assert_string_equal(s_state(f, "r1"), "free");
    assert_int_equal(s_find(FAKE_NACK, 0)->code, CPN_E_DB);

    s_request(f, "r2", 1, false);
    claim_on_unsent(f->claim, s_find(FAKE_CLAIM, -1)->claim_seq, true, CPN_E_UNREACHABLE);
    assert_string_equal(s_state(f, "r2"), "claiming");
    assert_true(s_claim_to(s_find(FAKE_CLAIM, -1), f, T_PEER_B));
    /* an answer to a CLAIM of a request that is gone, or never ours, changes nothing */
    claim_on_unsent(f->claim, 987654321, true, CPN_E_UNREACHABLE);
    assert_string_equal(s_state(f, "r2"), "claiming");
}

/* Stop: every request in flight (queued in the window, claiming) gets NACK busy. */
static void test_stop_in_flight(void **state)
{
    s_fix_t *f = *state;
    s_offer(f, T_PEER_A, 8, 1000);
    s_request(f, "q1", 1, false);
    s_request(f, "q2", 1, false);
    assert_string_equal(s_state(f, "q1"), "queued");
    assert_int_equal(s_count(FAKE_CLAIM), 0);
    /* the window's time: both matched together (FLUSH), each claims */
    assert_int_equal(claim_window_deadline(f->claim), s_mono + 1000);
    s_mono += 1000;
    claim_window_poll(f->claim, s_mono);
    assert_string_equal(s_state(f, "q1"), "claiming");
    assert_string_equal(s_state(f, "q2"), "claiming");
    s_request(f, "q3", 1, false);
    assert_string_equal(s_state(f, "q3"), "queued");
    assert_int_equal(claim_stop(f->claim), 3);
    assert_int_equal(claim_in_flight(f->claim), 0);
    assert_int_equal(s_count(FAKE_NACK), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s_find(FAKE_NACK, i)->code, CPN_E_BUSY);
    assert_string_equal(s_state(f, "q3"), "free");
    assert_int_equal(claim_window_deadline(f->claim), WINDOW_NEVER);
}

/* The index by seq against a reference: keys come and go (backward-shift deletion), every
 * lookup agrees; a full table refuses. */
static void test_index(void **state)
{
    (void)state;
    enum { N = 64, ROUNDS = 20000 };
    claim_index_t *ix = claim_index_new(N);
    assert_non_null(ix);
    uint64_t keys[N];
    bool in[N];
    memset(in, 0, sizeof in);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < N; i++)
        keys[i] = 1000 + i * 4096; /* many share a home bucket before mixing */
    for (int r = 0; r < ROUNDS; r++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t i = x % N;
        if (in[i])
            assert_int_equal(claim_index_del(ix, keys[i], (uint32_t)i), 1);
        else
            assert_int_equal(claim_index_put(ix, keys[i], (uint32_t)i), CPN_OK);
        in[i] = !in[i];
        size_t j = (x >> 20) % N, cur = 0;
        uint32_t slot = 0;
        int hit = claim_index_next(ix, keys[j], &cur, &slot);
        assert_int_equal(hit, in[j]);
        if (hit)
            assert_int_equal(slot, j);
    }
    size_t held = 0;
    for (size_t i = 0; i < N; i++)
        held += in[i];
    assert_int_equal(claim_index_len(ix), held);
    for (size_t i = 0; i < N; i++)
        if (!in[i])
            assert_int_equal(claim_index_put(ix, keys[i], (uint32_t)i), CPN_OK);
    assert_int_equal(claim_index_put(ix, 1, 0), CPN_E_BUSY);
    /* two slots under one key: both found */
    claim_index_t *two = claim_index_new(4);
    assert_int_equal(claim_index_put(two, 7, 1), CPN_OK);
    assert_int_equal(claim_index_put(two, 7, 2), CPN_OK);
    size_t cur = 0;
    uint32_t a = 0, b = 0, c = 0;
    assert_int_equal(claim_index_next(two, 7, &cur, &a), 1);
    assert_int_equal(claim_index_next(two, 7, &cur, &b), 1);
    assert_int_equal(claim_index_next(two, 7, &cur, &c), 0);
    assert_int_equal(a + b, 3);
    claim_index_destroy(&two);
    claim_index_destroy(&ix);
    assert_null(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_lease_grant, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_request_no_match, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_nack_settled_next_then_final, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_retry_then_late_lease, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_in_doubt_restart_then_lease, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_nack_open_vs_fenced, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_split, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unsent, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stop_in_flight, s_setup_batch, s_teardown),
        cmocka_unit_test(test_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
