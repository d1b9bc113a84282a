/* gen_seeds.c - writes the seed corpora of the targets that take specs (seal.h): real chains
 * of the protocol with the fixed keys, so fuzzing starts from inputs that pass every check.
 *
 *   scripts/fuzz seeds        (writes fuzz/corpus/{verify,federation,claim}/, and the bodies
 *                              with access hints and a sealed box in fuzz/corpus/envelope/)
 * fuzz-sources: peer/grant.c peer/peer_config.c peer/inventory.c
 * fuzz-sources: peer/driver.c peer/driver_exec.c
 * fuzz-sources: peer/driver_slurm.c peer/slurm.c peer/slurm_cmd.c
 * fuzz-sources: peer/devices.c peer/fgd.c
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"
#include "msg.h"
#include "seal.h"

typedef struct {
    uint8_t *p;
    size_t n;
} s_buf_t;

static const char *s_root;

#define S_FAR_MS UINT64_C(4102444800000) /* 2100-01-01 */

/* The spec of `type` by key `who` around `body` (a struct of msg.h or cpn_request_t). */
static s_buf_t s_spec(cpn_msg_type_t type, int who, const void *body)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    s_buf_t b;
    int r = cpn_msg_encode(type, body, &enc, &len);
    if (r != CPN_OK) {
        fprintf(stderr, "gen_seeds: cannot encode %s: %s\n", cpn_msg_name(type), cpn_errname(r));
        exit(1);
    }
    b.p = fz_spec(type, who, enc, len, &b.n);
    free(enc);
    return b;
}

static void s_write(const char *target, const char *name, const s_buf_t *parts, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", s_root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (i)
            fwrite("FZ//", 1, 4, f);
        fwrite(parts[i].p, 1, parts[i].n, f);
    }
    if (fclose(f) != 0)
        abort();
}

static const uint8_t *s_pk(int who)
{
    return cpn_identity_pk(fz_key(who));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR\n");
        return 2;
    }
    s_root = argv[1];
    fz_keys_init();

    /* tenant -> REQUEST */
    cpn_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.id, sizeof req.id, "r1");
    req.units = 2;
    req.duration_s = 3600;
    snprintf(req.accel_model, sizeof req.accel_model, "H100-80GB");
    req.accel_count = 8;
    s_buf_t request = s_spec(CPN_MSG_REQUEST, FZ_TENANT, &req);
    s_buf_t request2 = s_spec(CPN_MSG_REQUEST, FZ_TENANT2, &req);

    /* broker A -> CLAIM for the peer */
    cpn_claim_t c;
    memset(&c, 0, sizeof c);
    c.request = (mp_bytes_t){request.p, request.n};
    memcpy(c.peer, s_pk(FZ_PEER), CPN_PK_LEN);
    snprintf(c.package, sizeof c.package, "gpu");
    c.units = 2;
    c.price = 10000;
    c.duration_s = 3600;
    /* Seeds are sealed when fuzzed, long after they were written: times far ahead stay valid
     * (a CLAIM's deadline, a lease that may not start before its REQUEST). */
    c.deadline = S_FAR_MS;
    s_buf_t claim = s_spec(CPN_MSG_CLAIM, FZ_BROKER_A, &c);
    cpn_claim_t c2 = c;
    c2.request = (mp_bytes_t){request2.p, request2.n};
    s_buf_t claim_t2 = s_spec(CPN_MSG_CLAIM, FZ_BROKER_A, &c2);

    /* peer -> LEASE, broker A -> GRANT */
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim = (mp_bytes_t){claim.p, claim.n};
    grant_lease_id(s_pk(FZ_PEER), s_pk(FZ_TENANT), req.id, l.lease_id);
    snprintf(l.package, sizeof l.package, "gpu");
    l.units = 2;
    l.price = 10000;
    l.start_ms = S_FAR_MS - 3600 * 1000;
    l.end_ms = l.start_ms + 3600 * 1000;
    snprintf(l.state, sizeof l.state, "active");
    s_buf_t lease = s_spec(CPN_MSG_LEASE, FZ_PEER, &l);
    cpn_grant_t g;
    memset(&g, 0, sizeof g);
    g.lease = (mp_bytes_t){lease.p, lease.n};
    snprintf(g.request_id, sizeof g.request_id, "r1");
    s_buf_t grant = s_spec(CPN_MSG_GRANT, FZ_BROKER_A, &g);

    /* The same chain with access: hints in the REQUEST, a box sealed to the tenant in the
     * LEASE (crypto_box_seal to the X25519 form of its key, as common/seal.c does). */
    cpn_request_t req_h = req;
    snprintf(req_h.id, sizeof req_h.id, "r2");
    if (cpn_hints_set(&req_h.access, "ssh_key", "ssh-ed25519 AAAAC3NzaC1 fuzz@seed") != CPN_OK ||
        cpn_hints_set(&req_h.access, "user", "fuzz") != CPN_OK)
        abort();
    s_buf_t request_h = s_spec(CPN_MSG_REQUEST, FZ_TENANT, &req_h);
    cpn_claim_t c_h = c;
    c_h.request = (mp_bytes_t){request_h.p, request_h.n};
    s_buf_t claim_h = s_spec(CPN_MSG_CLAIM, FZ_BROKER_A, &c_h);
    static const char details[] = "{\"cluster\":\"dc-1\",\"login\":\"fuzz@login\"}";
    uint8_t xpk[32], box[sizeof details - 1 + crypto_box_SEALBYTES];
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, s_pk(FZ_TENANT)) != 0 ||
        crypto_box_seal(box, (const uint8_t *)details, sizeof details - 1, xpk) != 0)
        abort();
    cpn_lease_t l_h = l;
    l_h.claim = (mp_bytes_t){claim_h.p, claim_h.n};
    grant_lease_id(s_pk(FZ_PEER), s_pk(FZ_TENANT), req_h.id, l_h.lease_id);
    l_h.access = (mp_bytes_t){box, sizeof box};
    s_buf_t lease_h = s_spec(CPN_MSG_LEASE, FZ_PEER, &l_h);
    cpn_grant_t g_h = g;
    g_h.lease = (mp_bytes_t){lease_h.p, lease_h.n};
    snprintf(g_h.request_id, sizeof g_h.request_id, "r2");
    s_buf_t grant_h = s_spec(CPN_MSG_GRANT, FZ_BROKER_A, &g_h);
    uint8_t *body_req_h = NULL, *body_lease_h = NULL;
    size_t body_req_h_len = 0, body_lease_h_len = 0;
    if (cpn_msg_encode(CPN_MSG_REQUEST, &req_h, &body_req_h, &body_req_h_len) != CPN_OK ||
        cpn_msg_encode(CPN_MSG_LEASE, &l_h, &body_lease_h, &body_lease_h_len) != CPN_OK)
        abort();
    s_buf_t body_request_h = {body_req_h, body_req_h_len};
    s_buf_t body_lease_h_b = {body_lease_h, body_lease_h_len};

    /* Across the federation: A originates, B relays, C is the peer's home. */
    cpn_forward_t fa = {.hops = 1, .msg = {claim.p, claim.n}};
    memcpy(fa.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t fwd_a = s_spec(CPN_MSG_FORWARD, FZ_BROKER_A, &fa);
    cpn_forward_t fb = {.hops = 2, .msg = {fwd_a.p, fwd_a.n}};
    memcpy(fb.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t fwd_b = s_spec(CPN_MSG_FORWARD, FZ_BROKER_B, &fb);
    cpn_claim_t ch = c;
    ch.route = (mp_bytes_t){fwd_b.p, fwd_b.n};
    s_buf_t claim_home = s_spec(CPN_MSG_CLAIM, FZ_BROKER_C, &ch);
    cpn_lease_t lh = l;
    lh.claim = (mp_bytes_t){claim_home.p, claim_home.n};
    s_buf_t lease_home = s_spec(CPN_MSG_LEASE, FZ_PEER, &lh);
    cpn_grant_t gh = g;
    gh.lease = (mp_bytes_t){lease_home.p, lease_home.n};
    s_buf_t grant_routed = s_spec(CPN_MSG_GRANT, FZ_BROKER_A, &gh);

    /* tenant -> RENEW / RELEASE of that lease */
    cpn_renew_t rn;
    memset(&rn, 0, sizeof rn);
    snprintf(rn.lease_id, sizeof rn.lease_id, "%s", l.lease_id);
    memcpy(rn.peer, s_pk(FZ_PEER), CPN_PK_LEN);
    rn.extend_s = 600;
    s_buf_t renew = s_spec(CPN_MSG_RENEW, FZ_TENANT, &rn);
    cpn_release_t rl;
    memset(&rl, 0, sizeof rl);
    snprintf(rl.lease_id, sizeof rl.lease_id, "%s", l.lease_id);
    memcpy(rl.peer, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t release = s_spec(CPN_MSG_RELEASE, FZ_TENANT, &rl);
    cpn_forward_t fr = {.hops = 1, .msg = {release.p, release.n}};
    memcpy(fr.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t fwd_release = s_spec(CPN_MSG_FORWARD, FZ_BROKER_A, &fr);
    cpn_forward_t fn = {.hops = 1, .msg = {renew.p, renew.n}};
    memcpy(fn.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t fwd_renew = s_spec(CPN_MSG_FORWARD, FZ_BROKER_A, &fn);

    /* Answers on the way back: the peer's LEASE or a broker's NACK inside FORWARDs. */
    cpn_forward_t ra = {.hops = 1, .msg = {lease_home.p, lease_home.n}, .ref_seq = 77};
    memcpy(ra.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t back_c = s_spec(CPN_MSG_FORWARD, FZ_BROKER_C, &ra);
    cpn_forward_t rb = {.hops = 2, .msg = {back_c.p, back_c.n}, .ref_seq = 78};
    memcpy(rb.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t back_b = s_spec(CPN_MSG_FORWARD, FZ_BROKER_B, &rb);
    cpn_nack_t nk;
    memset(&nk, 0, sizeof nk);
    snprintf(nk.ref, sizeof nk.ref, "r1");
    nk.ref_seq = 77;
    nk.code = CPN_E_NO_UNITS;
    snprintf(nk.reason, sizeof nk.reason, "no units");
    s_buf_t nack = s_spec(CPN_MSG_NACK, FZ_BROKER_C, &nk);
    cpn_forward_t rn2 = {.hops = 1, .msg = {nack.p, nack.n}, .ref_seq = 79};
    memcpy(rn2.to, s_pk(FZ_PEER), CPN_PK_LEN);
    s_buf_t back_nack = s_spec(CPN_MSG_FORWARD, FZ_BROKER_C, &rn2);

    /* A SYNC body: three peers, sorted, inside [lo, hi]. */
    uint8_t entries[3 * CPN_SYNC_ENTRY_LEN];
    cpn_sync_t sy;
    memset(&sy, 0, sizeof sy);
    memset(sy.hi, 0xff, CPN_PK_LEN);
    for (int i = 0; i < 3; i++) {
        memset(entries + i * CPN_SYNC_ENTRY_LEN, 0x20 * (i + 1), CPN_PK_LEN);
        memset(entries + i * CPN_SYNC_ENTRY_LEN + CPN_PK_LEN, 0, 8);
        entries[i * CPN_SYNC_ENTRY_LEN + CPN_SYNC_ENTRY_LEN - 1] = (uint8_t)(i + 1);
    }
    sy.entries = (mp_bytes_t){entries, sizeof entries};
    uint8_t *sync_body = NULL;
    size_t sync_len = 0;
    if (cpn_msg_encode(CPN_MSG_SYNC, &sy, &sync_body, &sync_len) != CPN_OK)
        abort();
    s_buf_t sync = {sync_body, sync_len};

    s_write("verify", "grant", &grant, 1);
    s_write("verify", "grant-routed", &grant_routed, 1);
    s_write("verify", "lease", &lease, 1);
    s_write("verify", "grant-access", &grant_h, 1);
    s_write("claim", "claim-access", &claim_h, 1);
    s_write("envelope", "body-request-access", &body_request_h, 1);
    s_write("envelope", "body-lease-access", &body_lease_h_b, 1);
    s_write("verify", "claim-routed", &claim_home, 1);
    s_write("federation", "forward-claim", &fwd_b, 1);
    s_write("federation", "forward-renew", &fwd_renew, 1);
    s_write("federation", "forward-release", &fwd_release, 1);
    s_write("federation", "answer-lease", &back_b, 1);
    s_write("federation", "answer-nack", &back_nack, 1);
    s_write("federation", "sync-body", &sync, 1);
    s_write("claim", "claim", &claim, 1);
    s_write("claim", "claim-routed", &claim_home, 1);
    s_write("claim", "claim-other-tenant", &claim_t2, 1);
    s_buf_t retry[] = {claim, claim};
    s_write("claim", "claim-retry", retry, 2);
    s_buf_t renew_release[] = {claim, renew, release, release};
    s_write("claim", "claim-renew-release", renew_release, 4);

    s_buf_t all[] = {request,      request2, claim,   claim_t2,    lease,
                     grant,        fwd_a,    fwd_b,   claim_home,  lease_home,
                     grant_routed, renew,    release, fwd_release, fwd_renew,
                     back_c,       back_b,   nack,    back_nack,   sync,
                     request_h,    claim_h,  lease_h, grant_h,     body_request_h,
                     body_lease_h_b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i].p);
    return 0;
}
