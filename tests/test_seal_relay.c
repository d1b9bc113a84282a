/* test_seal_relay.c - sealed access details cross the federation unread (issue 13, part 4).
 *
 * Brokers A - B, real processes on 127.0.0.1 (plain TCP); the test itself is the peer tp at B
 * (a DEALER on B's ROUTER, signing with its own key), standing in for a peer whose driver
 * hands out access. The tenant acme asks A for one unit with access hints (an SSH key, a
 * user); the CLAIM reaches tp through B, and the hints in the REQUEST it embeds are exactly
 * the tenant's. tp seals the details (a secret marker, and the SSH key it was given) to
 * acme's key in the LEASE's `access` and answers. Then:
 *   - acme's GRANT from A carries the very box tp sealed (byte for byte, through B and A);
 *   - `cpnctl access` with acme's key (and A pinned) prints the details, as text and --json;
 *     with another tenant's key it is refused as `sealed` (exit 1); a lease file with one
 *     bit of the box flipped is refused (its signature no longer verifies);
 *   - the same request again gets the GRANT from A's ledger, the same box; with other hints
 *     it is a `conflict` (the hints are terms);
 *   - the marker is in no file the brokers wrote (ledgers, WAL, logs): they relayed it unread;
 *   - the tenant's tool end to end: `cpnctl submit` with hints from the request YAML,
 *     --ssh-key and --access (all three reach tp), the lease file it saves, `cpnctl access`.
 *
 * Every wait is bounded and waits for a positive event; every process started is stopped in
 * the group teardown (and gets SIGKILL from the kernel should this test die first).
 * CPN_TEST_KEEP=1 keeps the temporary directory (configs, logs, databases).
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "chain.h"
#include "clock.h"
#include "ctl_client.h"
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "json_check.h"
#include "msg.h"
#include "seal.h"
#include "transport.h"

#define WAIT_MS 10000  /* one answer from a broker, one frame to tp */
#define READY_MS 30000 /* daemons up, offers across the federation (bound, not a timing) */
#define STOP_MS 30000  /* SIGTERM to exit, then SIGKILL */
#define RUN_MS 60000   /* one cpnctl run */
#define POLL_MS 100
#define PORT_TRIES 5
#define HELLO_S 2
#define CLAIM_TIMEOUT "20s"
#define SSH_KEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5 acme@laptop"

enum { B_A, B_B, B__COUNT };

static struct {
    char dir[256], bin[1024];
    h_broker_t b[B__COUNT]; /* cli: acme's connections */
    cpn_identity_t *acme, *eve, *tp;
    cpn_signer_t tp_signer;
    void *zctx, *tp_sock; /* tp's connection to B */
    char marker[48];      /* the secret in the sealed details */
} g = {
    .b = {{.name = "a"}, {.name = "b"}},
};

static void s_write_policy(int i)
{
    int m = i == B_A ? B_B : B_A;
    h_write_policy(g.dir, &(h_policy_t){
                              .name = g.b[i].name,
                              .listen = g.b[i].endpoint,
                              .hello_s = HELLO_S,
                              .members = {{g.b[m].name, g.b[m].endpoint}},
                              .peers = "tp",
                              .operators = "acme",
                              .limits = "  claim_timeout: " CLAIM_TIMEOUT "\n"
                                        "  rate:\n"
                                        "    per_sender: 0/s\n",
                          });
}

static void s_write_bytes(const char *name, const uint8_t *b, size_t n)
{
    char p[400];
    h_path(p, sizeof p, g.dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A whole file of the directory (at most 64 MiB), *len its size; NULL if unreadable. */
static uint8_t *s_read_file(const char *name, size_t *len)
{
    char p[400];
    h_path(p, sizeof p, g.dir, name);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap && cap < (64u << 20)) {
            uint8_t *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        } else if (n == cap) {
            break;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    *len = n;
    return buf;
}

/* Start cpnctl with args (NULL-terminated), stdout and stderr into files of the directory. */
static pid_t s_cpnctl_start(const char *out, const char *err, const char *const *args)
{
    char bin[1100], po[400], pe[400];
    snprintf(bin, sizeof bin, "%s/cpnctl", g.bin);
    h_path(po, sizeof po, g.dir, out);
    h_path(pe, sizeof pe, g.dir, err);
    const char *argv[32] = {bin};
    size_t n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    assert_null(args[n - 1]); /* all of them fit */
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(po, "w", stdout) || !freopen(pe, "w", stderr))
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Its exit status, or -1 if it was killed by a signal (a crash) or ran out of time. */
static int s_cpnctl_wait(pid_t pid)
{
    int st = 0;
    uint64_t until = cpn_mono_ms() + RUN_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (cpn_mono_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_cpnctl(const char *out, const char *err, const char *const *args)
{
    return s_cpnctl_wait(s_cpnctl_start(out, err, args));
}

/* ---- tp, the peer at B ---- */

static void s_tp_send(cpn_msg_type_t type, const void *body)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    assert_int_equal(cpn_signer_build(&g.tp_signer, type, body, &frame, &len), CPN_OK);
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    int r;
    while ((r = cpn_send(g.tp_sock, frame, len)) != CPN_OK && cpn_mono_ms() < deadline)
        usleep(20 * 1000); /* not connected yet */
    assert_int_equal(r, CPN_OK);
    free(frame);
}

static void s_tp_advertise(void)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "slurm-gpu");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 16;
    p.mem_bytes = 8ull << 30;
    p.price = 1000;
    p.total = 4;
    p.free = 4;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "tp");
    ad.ttl_s = 600;
    ad.n_packages = 1;
    ad.packages = &p;
    s_tp_send(CPN_MSG_AD, &ad);
}

/* The next CLAIM B sends tp, within WAIT_MS: its frame (caller frees); NULL if none came. */
static uint8_t *s_tp_claim(size_t *len)
{
    cpn_limits_t lim = h_big_limits();
    uint64_t deadline = cpn_mono_ms() + WAIT_MS;
    while (cpn_mono_ms() < deadline) {
        zmq_pollitem_t it = {g.tp_sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, POLL_MS) <= 0)
            continue;
        uint8_t *frame = NULL;
        cpn_env_t env;
        if (cpn_recv(g.tp_sock, 0, NULL, NULL, &frame, len) != CPN_OK)
            continue;
        if (cpn_env_open(frame, *len, &lim, &env) == CPN_OK && env.type == CPN_MSG_CLAIM &&
            memcmp(env.from, cpn_identity_pk(g.b[B_B].id), CPN_PK_LEN) == 0)
            return frame;
        free(frame);
    }
    return NULL;
}

/* tp grants the CLAIM in `frame`, its access details sealed to the REQUEST's signer (acme);
 * the box it sent into box/box_len, the hints the REQUEST carried into *seen. */
static void s_tp_grant(const uint8_t *frame, size_t len, uint8_t box[CPN_ACCESS_BOX_MAX],
                       size_t *box_len, cpn_hints_t *seen)
{
    cpn_chain_opts_t o = {.lim = NULL};
    cpn_chain_t *ch = malloc(sizeof *ch);
    assert_non_null(ch);
    assert_int_equal(cpn_chain_open(frame, len, CPN_MSG_CLAIM, &o, ch), CPN_OK);
    assert_true(ch->n_forwards > 0); /* it did cross the federation */
    assert_memory_equal(ch->req_env.from, cpn_identity_pk(g.acme), CPN_PK_LEN);
    *seen = ch->req.access;
    assert_non_null(cpn_hints_get(seen, "ssh_key"));

    char details[1024];
    int n = snprintf(details, sizeof details,
                     "{\"cluster\": \"tp\", \"reservation\": \"cpn-%s\", \"login\": "
                     "\"acme@login.tp.example\", \"password\": \"%s\", \"ssh_key\": \"%s\"}",
                     ch->req.id, g.marker, cpn_hints_get(&ch->req.access, "ssh_key"));
    assert_true(n > 0 && (size_t)n < sizeof details);
    cpn_lease_t l;
    memset(&l, 0, sizeof l);
    l.claim.ptr = frame;
    l.claim.len = len;
    cpn_chain_lease_id(cpn_identity_pk(g.tp), ch->req_env.from, ch->req.id, l.lease_id);
    snprintf(l.package, sizeof l.package, "%s", ch->claim.package);
    l.units = ch->claim.units;
    l.price = ch->claim.price;
    l.start_ms = cpn_now_ms();
    l.end_ms = l.start_ms + ch->claim.duration_s * 1000;
    snprintf(l.state, sizeof l.state, "active");
    assert_int_equal(cpn_lease_seal_access(&l, ch->req_env.from, details, (size_t)n, box), CPN_OK);
    assert_null(memmem(box, l.access.len, g.marker, strlen(g.marker)));
    *box_len = l.access.len;
    s_tp_send(CPN_MSG_LEASE, &l);
    free(ch);
}

/* ---- asking A ---- */

static cpn_request_t s_req(const char *id, const char *ssh_key)
{
    cpn_request_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.units = 1;
    r.duration_s = 3600;
    r.cores = 16;
    assert_int_equal(cpn_hints_set(&r.access, "ssh_key", ssh_key), CPN_OK);
    assert_int_equal(cpn_hints_set(&r.access, "user", "acme"), CPN_OK);
    return r;
}

/* The `access` bytes of the lease in a GRANT frame (chain opened, A pinned). */
static void s_grant_box(const h_ans_t *a, mp_bytes_t *box, cpn_chain_t *ch)
{
    cpn_chain_opts_t o = {.broker_pk = cpn_identity_pk(g.b[B_A].id)};
    assert_int_equal(cpn_chain_open(a->frame, a->len, CPN_MSG_GRANT, &o, ch), CPN_OK);
    *box = ch->lease.access;
}

/* Does any file the brokers wrote (their ledgers with WAL and journal, their logs) hold
 * `needle`? */
static bool s_broker_files_hold(const char *needle)
{
    DIR *d = opendir(g.dir);
    struct dirent *e;
    bool found = false;
    int files = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL && !found) {
        const char *f = e->d_name;
        if (strncmp(f, "a-ledger.db", 11) != 0 && strncmp(f, "b-ledger.db", 11) != 0 &&
            strcmp(f, "a.log") != 0 && strcmp(f, "b.log") != 0)
            continue;
        size_t len = 0;
        uint8_t *buf = s_read_file(e->d_name, &len);
        if (!buf)
            continue;
        files++;
        found = memmem(buf, len, needle, strlen(needle)) != NULL;
        free(buf);
    }
    closedir(d);
    assert_true(files >= 4); /* a-ledger.db, b-ledger.db, a.log, b.log at least */
    return found;
}

/* ---- setup ---- */

static int s_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (g.tp_sock)
        zmq_close(g.tp_sock);
    g.tp_sock = NULL;
    clean = h_brokers_stop(g.b, B__COUNT, STOP_MS) && clean;
    cpn_identity_destroy(&g.acme);
    cpn_identity_destroy(&g.eve);
    cpn_identity_destroy(&g.tp);
    if (g.zctx)
        zmq_ctx_term(g.zctx);
    g.zctx = NULL;
    h_dir_done(g.dir, clean);
    return clean ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    uint8_t rnd[16];
    if (cpn_crypto_init() != CPN_OK || !(g.zctx = zmq_ctx_new()) ||
        h_dirs(g.bin, sizeof g.bin, g.dir, sizeof g.dir, "seal-relay") != 0)
        return -1;
    randombytes_buf(rnd, sizeof rnd);
    memcpy(g.marker, "S3CRET-", 7);
    sodium_bin2hex(g.marker + 7, sizeof g.marker - 7, rnd, sizeof rnd);
    for (int i = 0; i < B__COUNT; i++)
        h_keygen(g.dir, g.b[i].name, &g.b[i].id);
    h_keygen(g.dir, "acme", &g.acme);
    h_keygen(g.dir, "eve", &g.eve);
    h_keygen(g.dir, "tp", &g.tp);
    g.tp_signer.id = g.tp;
    if (!h_brokers_start(g.b, B__COUNT, g.bin, g.dir, g.zctx, s_write_policy, g.acme, PORT_TRIES,
                         READY_MS))
        return -1;
    cpn_curve_t plain = {.enabled = 0};
    if (cpn_sock_dealer(g.zctx, g.b[B_B].endpoint, cpn_limits_default.max_frame, &plain,
                        &g.tp_sock) != CPN_OK)
        return -1;
    return 0;
}

/* ---- the case ---- */

static void test_access_relayed_unread(void **state)
{
    (void)state;
    s_tp_advertise();
    /* at A, relayed by B */
    assert_true(h_wait_listed(g.b[B_A].cli, "slurm-gpu", WAIT_MS, READY_MS));

    /* acme asks A; the CLAIM reaches tp through B with acme's hints; tp seals and grants */
    cpn_request_t req = s_req("job-sealed", SSH_KEY);
    uint64_t seq = 0;
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    size_t clen = 0, sent_len = 0;
    uint8_t *claim = s_tp_claim(&clen);
    assert_non_null(claim);
    uint8_t sent[CPN_ACCESS_BOX_MAX];
    cpn_hints_t seen;
    s_tp_grant(claim, clen, sent, &sent_len, &seen);
    assert_int_equal(seen.n, 2);
    assert_string_equal(cpn_hints_get(&seen, "ssh_key"), SSH_KEY);
    assert_string_equal(cpn_hints_get(&seen, "user"), "acme");

    /* the GRANT carries the very box, byte for byte */
    h_ans_t a;
    cpn_chain_t *ch = malloc(sizeof *ch);
    mp_bytes_t box;
    assert_non_null(ch);
    assert_int_equal(h_await(g.b[B_A].cli, seq, "job-sealed", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    s_grant_box(&a, &box, ch);
    assert_int_equal(box.len, sent_len);
    assert_memory_equal(box.ptr, sent, sent_len);
    s_write_bytes("acme.lease", a.frame, a.len);
    uint8_t *flipped = malloc(a.len);
    assert_non_null(flipped);
    memcpy(flipped, a.frame, a.len);
    flipped[(size_t)(box.ptr - a.frame) + box.len / 2] ^= 0x01;
    s_write_bytes("flipped.lease", flipped, a.len);
    free(flipped);
    h_ans_free(&a);

    /* cpnctl access: acme's key opens it; A pinned */
    char key[400], pin[400], lease[400], flip[400], eve[400];
    h_path(key, sizeof key, g.dir, "acme.key");
    h_path(pin, sizeof pin, g.dir, "a.pub");
    h_path(lease, sizeof lease, g.dir, "acme.lease");
    h_path(flip, sizeof flip, g.dir, "flipped.lease");
    h_path(eve, sizeof eve, g.dir, "eve.key");
    const char *ok_args[] = {"-k", key, "-B", pin, "access", lease, NULL};
    assert_int_equal(s_cpnctl("access.out", "access.err", ok_args), 0);
    size_t n = 0;
    char *out = (char *)s_read_file("access.out", &n);
    assert_non_null(out);
    assert_non_null(strstr(out, g.marker));
    assert_non_null(strstr(out, SSH_KEY));
    assert_int_equal(cpn_json_object_check(out, n, 16), CPN_OK); /* the details, one object */
    free(out);
    const char *json_args[] = {"--json", "-k", key, "access", lease, NULL};
    assert_int_equal(s_cpnctl("json.out", "json.err", json_args), 0);
    out = (char *)s_read_file("json.out", &n);
    assert_non_null(out);
    assert_int_equal(cpn_json_object_check(out, n, 16), CPN_OK);
    assert_non_null(strstr(out, "\"result\": \"access\""));
    assert_non_null(strstr(out, g.marker));
    free(out);

    /* another tenant's key: sealed, exit 1, no secret printed */
    const char *eve_args[] = {"-k", eve, "access", lease, NULL};
    assert_int_equal(s_cpnctl("eve.out", "eve.err", eve_args), 1);
    char *err = (char *)s_read_file("eve.err", &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "(sealed)"));
    free(err);
    out = (char *)s_read_file("eve.out", &n);
    assert_non_null(out);
    assert_null(strstr(out, g.marker));
    free(out);

    /* one bit of the box flipped: the peer's signature no longer holds */
    const char *flip_args[] = {"-k", key, "access", flip, NULL};
    assert_int_equal(s_cpnctl("flip.out", "flip.err", flip_args), 1);
    err = (char *)s_read_file("flip.err", &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "bad-signature"));
    free(err);

    /* the same request again: A's ledger holds the GRANT with the same box */
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &req, &seq), CPN_OK);
    assert_int_equal(h_await(g.b[B_A].cli, seq, "job-sealed", NULL, WAIT_MS, &a), CPN_MSG_GRANT);
    s_grant_box(&a, &box, ch);
    assert_int_equal(box.len, sent_len);
    assert_memory_equal(box.ptr, sent, sent_len);
    h_ans_free(&a);
    /* with another SSH key: the hints are terms */
    cpn_request_t other = s_req("job-sealed", "ssh-ed25519 AAAAOTHER acme@elsewhere");
    assert_int_equal(ctl_client_send(g.b[B_A].cli, CPN_MSG_REQUEST, &other, &seq), CPN_OK);
    assert_int_equal(h_await(g.b[B_A].cli, seq, "job-sealed", NULL, WAIT_MS, &a), CPN_MSG_NACK);
    assert_int_equal(a.code, CPN_E_CONFLICT);
    h_ans_free(&a);

    /* what the brokers stored and logged never held the secret (though it holds the lease:
     * the search does read what they wrote) */
    assert_true(s_broker_files_hold(ch->lease.lease_id));
    assert_false(s_broker_files_hold(g.marker));
    free(ch);
    free(claim);
}

/* The tenant's tool end to end: `cpnctl submit` with hints from the request file and from
 * --ssh-key and --access, the lease file it saves, `cpnctl access` on that file. */
static void test_cpnctl_submit_then_access(void **state)
{
    (void)state;
    char yaml[400], pub[400], key[400], lease[400], dir[300];
    h_path(yaml, sizeof yaml, g.dir, "job-cli.yaml");
    h_path(pub, sizeof pub, g.dir, "id_ed25519.pub");
    h_path(key, sizeof key, g.dir, "acme.key");
    h_path(lease, sizeof lease, g.dir, "job-cli.lease");
    snprintf(dir, sizeof dir, "%s", g.dir);
    h_write(g.dir, "job-cli.yaml",
            "id: job-cli\nduration: 1h\ncores: 16\naccess:\n  user: acme\n  group: nobody\n");
    h_write(g.dir, "id_ed25519.pub", SSH_KEY "\n");
    const char *submit[] = {"--plain", "-b", g.b[B_A].endpoint, "-k", key, "-o", dir, "-t", "20",
                            "submit", yaml, "--ssh-key", pub, "--access", "group=gpu-users",
                            NULL};
    pid_t pid = s_cpnctl_start("submit.out", "submit.err", submit);
    size_t clen = 0, sent_len = 0, n = 0;
    uint8_t *claim = s_tp_claim(&clen);
    assert_non_null(claim);
    uint8_t sent[CPN_ACCESS_BOX_MAX];
    cpn_hints_t seen;
    s_tp_grant(claim, clen, sent, &sent_len, &seen);
    assert_int_equal(s_cpnctl_wait(pid), 0);
    /* the file's hints, the flag's SSH key, the flag's group over the file's */
    assert_int_equal(seen.n, 3);
    assert_string_equal(cpn_hints_get(&seen, "user"), "acme");
    assert_string_equal(cpn_hints_get(&seen, "ssh_key"), SSH_KEY);
    assert_string_equal(cpn_hints_get(&seen, "group"), "gpu-users");
    char *err = (char *)s_read_file("submit.err", &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "cpnctl access"));
    free(err);

    /* the saved lease file holds the box as sent, and opens with acme's key */
    uint8_t *file = s_read_file("job-cli.lease", &n);
    assert_non_null(file);
    assert_non_null(memmem(file, n, sent, sent_len));
    free(file);
    const char *access[] = {"-k", key, "access", lease, NULL};
    assert_int_equal(s_cpnctl("cli.out", "cli.err", access), 0);
    char *out = (char *)s_read_file("cli.out", &n);
    assert_non_null(out);
    assert_non_null(strstr(out, g.marker));
    free(out);
    free(claim);

    /* the same submit again, --json: A's ledger answers; the row says the lease has access */
    const char *again[] = {"--json", "--plain", "-b", g.b[B_A].endpoint, "-k", key, "-o", dir,
                           "submit", yaml, "--ssh-key", pub, "--access", "group=gpu-users",
                           NULL};
    assert_int_equal(s_cpnctl("again.out", "again.err", again), 0);
    out = (char *)s_read_file("again.out", &n);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"access\": true"));
    free(out);

    /* a hint the rules refuse: cpnctl says which, exit 2, nothing sent */
    const char *bad[] = {"--plain", "-b", g.b[B_A].endpoint, "-k", key, "submit", yaml,
                         "--access", "Bad-Key=x", NULL};
    assert_int_equal(s_cpnctl("bad.out", "bad.err", bad), 2);
    err = (char *)s_read_file("bad.err", &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "--access Bad-Key"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_relayed_unread),
        cmocka_unit_test(test_cpnctl_submit_then_access),
    };
    return cmocka_run_group_tests_name("seal_relay", tests, s_setup, s_teardown);
}
