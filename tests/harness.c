/* harness.c - shared helpers of the daemon integration tests: see harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zmq.h>

#include "clock.h"
#include "harness.h"
#include "mp.h"

/* How often the h_wait_* helpers ask again. */
#define H_POLL_MS 100

/* ---- processes ---- */

pid_t h_spawn(const char *bin_dir, const char *prog, const char *cfg, const char *log)
{
    char bin[1100];
    int n = snprintf(bin, sizeof bin, "%s/%s", bin_dir, prog);
    assert_true(n > 0 && (size_t)n < sizeof bin);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, prog, "--config", cfg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Read the child's output from fd until its end or the deadline (mono ms); false at the
 * deadline. */
static bool s_read_all(int fd, char *out, size_t cap, uint64_t deadline)
{
    size_t n = 0;
    char rest[512];
    bool done = false;
    for (;;) {
        uint64_t now = cpn_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = now < deadline ? poll(&p, 1, (int)(deadline - now)) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t k = read(fd, n < cap - 1 ? out + n : rest, n < cap - 1 ? cap - 1 - n : sizeof rest);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            done = true;
            break;
        }
        if (n < cap - 1)
            n += (size_t)k;
    }
    out[n] = '\0';
    return done;
}

int h_run(const char *bin_dir, const char *const *argv, char *out, size_t cap, uint64_t ms)
{
    char bin[1100];
    int fds[2];
    int n = snprintf(bin, sizeof bin, "%s/%s", bin_dir, argv[0]);
    assert_true(n > 0 && (size_t)n < sizeof bin && cap > 0);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    if (!s_read_all(fds[0], out, cap, cpn_mono_ms() + ms)) {
        fprintf(stderr, "# %s still running after %" PRIu64 " ms: killed\n", argv[0], ms);
        kill(pid, SIGKILL);
    }
    close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

bool h_alive(pid_t *pid_p)
{
    if (*pid_p > 0 && waitpid(*pid_p, NULL, WNOHANG) != 0)
        *pid_p = -1;
    return *pid_p > 0;
}

bool h_stop(pid_t *pid_p, uint64_t wait_ms)
{
    pid_t pid = *pid_p, w = 0;
    int status = 0;
    *pid_p = 0;
    if (pid <= 0)
        return pid == 0;
    /* A stopped (SIGSTOP) daemon would not act on SIGTERM; to a running one SIGCONT is a no-op
     * (no daemon catches it), so every caller may send it. */
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    uint64_t deadline = cpn_mono_ms() + wait_ms;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && cpn_mono_ms() < deadline)
        usleep(20 * 1000);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int h_free_port(void *zctx)
{
    void *ctx = zctx ? zctx : zmq_ctx_new();
    void *s = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    char ep[64] = "";
    size_t len = sizeof ep;
    int port = -1;
    if (s && zmq_bind(s, "tcp://127.0.0.1:*") == 0 &&
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len) == 0) {
        const char *colon = strrchr(ep, ':');
        port = colon ? atoi(colon + 1) : -1;
    }
    if (s)
        zmq_close(s);
    if (ctx && !zctx)
        zmq_ctx_term(ctx);
    return port;
}

void h_rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n > 0 && (size_t)n < sizeof path)
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* $TMPDIR/cpn-test-`tag`.XXXXXX, made: 0, or -1 with dir "". */
static int s_tmp_dir(char *dir, size_t dir_cap, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    int m = snprintf(dir, dir_cap, "%s/cpn-test-%s.XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    assert_true(m > 0 && (size_t)m < dir_cap);
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        return -1;
    }
    return 0;
}

int h_dirs(char *bin, size_t bin_cap, char *dir, size_t dir_cap, const char *tag)
{
    const char *b = getenv("CPN_BUILDDIR");
    int n = snprintf(bin, bin_cap, "%s", b && b[0] ? b : ".");
    assert_true(n > 0 && (size_t)n < bin_cap);
    return s_tmp_dir(dir, dir_cap, tag);
}

int h_db_dir(char *dir, size_t dir_cap, char *db, size_t db_cap, const char *tag, const char *name)
{
    if (s_tmp_dir(dir, dir_cap, tag) != 0)
        return -1;
    h_path(db, db_cap, dir, name);
    return 0;
}

void h_db_remove(const char *path)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char p[600];
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        int n = snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        assert_true(n > 0 && (size_t)n < sizeof p);
        unlink(p);
    }
}

void h_write(const char *dir, const char *name, const char *text)
{
    char path[600];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

void h_keygen(const char *dir, const char *name, cpn_identity_t **id)
{
    char base[600];
    int n = snprintf(base, sizeof base, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof base);
    assert_int_equal(cpn_identity_generate(id), CPN_OK);
    assert_int_equal(cpn_identity_save(*id, base), CPN_OK);
}

void h_dir_done(const char *dir, bool clean)
{
    const char *keep = getenv("CPN_TEST_KEEP");
    if (!dir[0])
        return;
    if (!clean || (keep && strcmp(keep, "1") == 0))
        fprintf(stderr, "# kept %s\n", dir);
    else
        h_rm_dir(dir);
}

void h_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

pid_t h_start(const char *bin_dir, const char *dir, const char *prog, const char *name)
{
    char cfg[600], log[600], file[128];
    snprintf(file, sizeof file, "%s.yaml", name);
    h_path(cfg, sizeof cfg, dir, file);
    snprintf(file, sizeof file, "%s.log", name);
    h_path(log, sizeof log, dir, file);
    return h_spawn(bin_dir, prog, cfg, log);
}

/* ---- configs ---- */

/* A config being written: the text so far; asserts that it fits. */
typedef struct {
    char text[8192];
    size_t len;
} s_conf_t;

static void s_add(s_conf_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_add(s_conf_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->text + c->len, sizeof c->text - c->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof c->text - c->len);
    c->len += (size_t)n;
}

/* For each name of the space-separated list `names`, the line `fmt` with the name twice. */
static void s_add_each(s_conf_t *c, const char *names, const char *fmt)
{
    char name[CPN_NAME_MAX];
    for (const char *p = names; p && *p;) {
        size_t n = strcspn(p, " ");
        assert_true(n < sizeof name);
        memcpy(name, p, n);
        name[n] = 0;
        if (n > 0)
            s_add(c, fmt, name, name);
        p += n + (p[n] == ' ');
    }
}

/* Write c->text as `file`, or as `name` + `ext` when file is NULL. */
static void s_conf_done(const s_conf_t *c, const char *dir, const char *file, const char *name,
                        const char *ext)
{
    char fname[128];
    if (!file) {
        int n = snprintf(fname, sizeof fname, "%s%s", name, ext);
        assert_true(n > 0 && (size_t)n < sizeof fname);
        file = fname;
    }
    h_write(dir, file, c->text);
}

/* broker: (name, key, listen, ledger, more, transport) */
static void s_policy_broker(s_conf_t *c, const h_policy_t *p)
{
    s_add(c, "broker:\n  name: %s\n", p->name);
    if (p->key)
        s_add(c, "  key: %s\n", p->key);
    else
        s_add(c, "  key: %s.key\n", p->name);
    s_add(c, "  listen: %s\n", p->listen);
    if (p->ledger)
        s_add(c, "  ledger: %s\n", p->ledger);
    else
        s_add(c, "  ledger: %s-ledger.db\n", p->name);
    s_add(c, "%s  transport:\n    curve: %s\n", p->broker_more ? p->broker_more : "",
          p->curve ? "true" : "false");
}

/* federation: with its members, if there are any */
static void s_policy_federation(s_conf_t *c, const h_policy_t *p)
{
    if (!p->members[0].name)
        return;
    s_add(c, "federation:\n");
    if (p->hello_s > 0)
        s_add(c, "  hello_timeout: %ds\n", p->hello_s);
    s_add(c, "%s  members:\n", p->fed_more ? p->fed_more : "");
    for (size_t i = 0; i < H_MEMBERS_MAX && p->members[i].name; i++) {
        const h_member_t *m = &p->members[i];
        s_add(c, "    - name: %s\n", m->name);
        if (m->key)
            s_add(c, "      key: %s\n", m->key);
        else
            s_add(c, "      key: %s.pub\n", m->name);
        s_add(c, "      endpoint: %s\n", m->endpoint);
    }
}

/* peers: and tenants: */
static void s_policy_people(s_conf_t *c, const h_policy_t *p)
{
    if (p->peers) {
        s_add(c, "peers:\n  trusted:\n");
        s_add_each(c, p->peers, "    - {name: %s, key: %s.pub}\n");
    } else {
        s_add(c, "peers:\n  trusted: any\n");
    }
    if (p->operators || p->tenants || p->tenants_more) {
        s_add(c, "tenants:\n");
        s_add_each(c, p->operators, "  - name: %s\n    key: %s.pub\n    operator: true\n");
        s_add_each(c, p->tenants, "  - name: %s\n    key: %s.pub\n");
        s_add(c, "%s", p->tenants_more ? p->tenants_more : "");
    }
}

void h_write_policy(const char *dir, const h_policy_t *p)
{
    s_conf_t c = {.len = 0};
    s_policy_broker(&c, p);
    s_policy_federation(&c, p);
    s_policy_people(&c, p);
    if (p->limits)
        s_add(&c, "limits:\n%s", p->limits);
    if (p->more)
        s_add(&c, "%s", p->more);
    s_conf_done(&c, dir, p->file, p->name, ".yaml");
}

void h_write_peer_conf(const char *dir, const h_peer_conf_t *p)
{
    s_conf_t c = {.len = 0};
    s_add(&c, "name: %s\n", p->name);
    if (p->key)
        s_add(&c, "key: %s\n", p->key);
    else
        s_add(&c, "key: %s.key\n", p->name);
    if (p->database)
        s_add(&c, "database: %s\n", p->database);
    else
        s_add(&c, "database: %s.db\n", p->name);
    s_add(&c, "region: %s\n", p->region ? p->region : "cn-east");
    if (p->refresh)
        s_add(&c, "refresh: %s\n", p->refresh);
    if (p->max_lease)
        s_add(&c, "max_lease: %s\n", p->max_lease);
    s_add(&c,
          "%sbrokers:\n"
          "  - endpoint: %s\n"
          "    key: %s.pub\n"
          "    curve: %s\n"
          "tenants: any\n"
          "packages:\n%s%s",
          p->more ? p->more : "", p->broker, p->broker_name, p->curve ? "true" : "false",
          p->packages ? p->packages : "", p->tail ? p->tail : "");
    s_conf_done(&c, dir, p->file, p->name, ".yaml");
}

void h_package(char *buf, size_t cap, const char *id, unsigned count, const char *price,
               unsigned cores, const char *memory)
{
    size_t used = strlen(buf);
    assert_true(used < cap);
    int n = snprintf(buf + used, cap - used,
                     "  - id: %s\n"
                     "    count: %u\n"
                     "    price: \"%s\"\n"
                     "    cores: %u\n"
                     "    memory: %s\n",
                     id, count, price, cores, memory);
    assert_true(n > 0 && (size_t)n < cap - used);
}

int64_t h_db_int(const char *path, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            (!arg || sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT) == SQLITE_OK) &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

bool h_wait_db(const char *path, const char *sql, const char *arg, int64_t want, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (h_db_int(path, sql, arg) == want)
            return true;
        usleep(H_POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

/* ---- answers ---- */

void h_ans_free(h_ans_t *a)
{
    free(a->frame);
    if (a->has_zone)
        msgpack_zone_destroy(&a->zone);
    memset(a, 0, sizeof *a);
}

cpn_limits_t h_big_limits(void)
{
    cpn_limits_t lim = cpn_limits_default;
    lim.max_frame *= 16;
    lim.max_str *= 16;
    lim.max_total *= 16;
    return lim;
}

bool h_match(h_ans_t *a, uint64_t seq, const char *id, const char *what)
{
    cpn_limits_t lim = h_big_limits();
    if (a->env.type == CPN_MSG_GRANT) {
        cpn_grant_t gr;
        memset(&gr, 0, sizeof gr);
        return id && cpn_msg_decode(&a->env, &lim, &gr) == CPN_OK && strcmp(gr.request_id, id) == 0;
    }
    if (a->env.type == CPN_MSG_NACK || a->env.type == CPN_MSG_ERROR) {
        cpn_nack_t n;
        cpn_error_t e;
        memset(&n, 0, sizeof n);
        memset(&e, 0, sizeof e);
        bool nack = a->env.type == CPN_MSG_NACK;
        if ((nack ? cpn_msg_decode(&a->env, &lim, &n) : cpn_msg_decode(&a->env, &lim, &e)) !=
                CPN_OK ||
            (nack ? n.ref_seq : e.ref_seq) != seq)
            return false;
        a->code = nack ? n.code : e.code;
        memcpy(a->reason, nack ? n.reason : e.reason, sizeof a->reason);
        return true;
    }
    if (a->env.type == CPN_MSG_STATUS && what) {
        cpn_status_t st;
        memset(&st, 0, sizeof st);
        if (cpn_msg_decode(&a->env, &lim, &st) != CPN_OK || strcmp(st.what, what) != 0)
            return false;
        msgpack_zone_init(&a->zone, 4096);
        a->has_zone = true;
        assert_int_equal(mp_parse(st.data.ptr, st.data.len, &lim, &a->zone, &a->obj), CPN_OK);
        return true;
    }
    return false;
}

void h_await_n(ctl_client_t *cli, size_t n, const uint64_t *seq, const char *const *id,
               const char *const *what, uint64_t ms, h_ans_t *ans)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    size_t got = 0;
    h_ans_t a;
    for (size_t i = 0; i < n; i++)
        memset(&ans[i], 0, sizeof ans[i]);
    memset(&a, 0, sizeof a);
    while (got < n && ctl_client_recv(cli, deadline, &a.frame, &a.len, &a.env) == CPN_OK) {
        for (size_t i = 0; i < n; i++) {
            if (ans[i].type == CPN_MSG_NONE && h_match(&a, seq[i], id[i], what[i])) {
                a.type = a.env.type;
                ans[i] = a; /* ans[i] takes the frame and zone */
                memset(&a, 0, sizeof a);
                got++;
                break;
            }
        }
        h_ans_free(&a);
    }
}

cpn_msg_type_t h_await(ctl_client_t *cli, uint64_t seq, const char *id, const char *what,
                       uint64_t ms, h_ans_t *a)
{
    h_await_n(cli, 1, &seq, &id, &what, ms, a);
    return a->type;
}

/* Send QUERY `what`; *seq its seq. The client's error code (busy: its queue is full). */
static int s_send_query(ctl_client_t *cli, const char *what, uint64_t *seq)
{
    cpn_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.what, sizeof q.what, "%s", what);
    return ctl_client_send(cli, CPN_MSG_QUERY, &q, seq);
}

cpn_msg_type_t h_query(ctl_client_t *cli, const char *what, uint64_t ms, h_ans_t *a)
{
    uint64_t seq = 0;
    assert_int_equal(s_send_query(cli, what, &seq), CPN_OK);
    return h_await(cli, seq, NULL, what, ms, a);
}

bool h_wait_up(pid_t *pid_p, ctl_client_t *cli, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    while (cpn_mono_ms() < deadline) {
        if (!h_alive(pid_p))
            return false;
        /* Not h_query: while the broker is not listening yet, the client's queue may be
         * full (a send refused "busy"); that only means "not up yet". */
        uint64_t seq = 0;
        if (s_send_query(cli, "status", &seq) != CPN_OK) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        h_ans_t a;
        cpn_msg_type_t t = h_await(cli, seq, NULL, "status", 500, &a);
        h_ans_free(&a);
        if (t == CPN_MSG_STATUS)
            return true;
    }
    return false;
}

bool h_start_broker(const char *bin_dir, const char *cfg, const char *log, pid_t *pid_p,
                    const char *endpoint, cpn_identity_t *as, const uint8_t *broker_pk,
                    bool plain, ctl_client_t **cli, uint64_t ms)
{
    *pid_p = h_spawn(bin_dir, "cpn-broker", cfg, log);
    if (!*cli && ctl_client_new(endpoint, as, broker_pk, plain, cli) != CPN_OK)
        return false;
    return h_wait_up(pid_p, *cli, ms);
}

/* One try of h_brokers_start. */
static bool s_brokers_try(h_broker_t *b, size_t n, const char *bin_dir, const char *dir,
                          void *zctx, void (*write_policy)(int i), cpn_identity_t *as, uint64_t ms)
{
    for (size_t i = 0; i < n; i++) {
        b[i].port = h_free_port(zctx);
        if (b[i].port <= 0)
            return false;
        snprintf(b[i].endpoint, sizeof b[i].endpoint, "tcp://127.0.0.1:%d", b[i].port);
    }
    for (size_t i = 0; i < n; i++) {
        write_policy((int)i);
        b[i].pid = h_start(bin_dir, dir, "cpn-broker", b[i].name);
        assert_int_equal(
            ctl_client_new(b[i].endpoint, as, cpn_identity_pk(b[i].id), true, &b[i].cli), CPN_OK);
    }
    bool up = true;
    for (size_t i = 0; i < n && up; i++)
        up = h_wait_up(&b[i].pid, b[i].cli, ms);
    if (!up)
        for (size_t i = 0; i < n; i++) {
            h_stop(&b[i].pid, ms);
            ctl_client_destroy(&b[i].cli);
        }
    return up;
}

bool h_brokers_start(h_broker_t *b, size_t n, const char *bin_dir, const char *dir, void *zctx,
                     void (*write_policy)(int i), cpn_identity_t *as, int tries, uint64_t ms)
{
    bool up = false;
    for (int t = 0; t < tries && !up; t++)
        up = s_brokers_try(b, n, bin_dir, dir, zctx, write_policy, as, ms);
    return up;
}

bool h_brokers_stop(h_broker_t *b, size_t n, uint64_t ms)
{
    bool clean = true;
    for (size_t i = 0; i < n; i++) {
        ctl_client_destroy(&b[i].cli);
        clean = h_stop(&b[i].pid, ms) && clean;
        cpn_identity_destroy(&b[i].id);
    }
    return clean;
}

long h_offer_free(ctl_client_t *cli, const char *peer, uint64_t ms)
{
    h_ans_t a;
    long fr = -1;
    if (h_query(cli, "offers", ms, &a) != CPN_MSG_STATUS)
        return -2;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++) {
        const msgpack_object *row = &a.obj.via.array.ptr[i];
        if (h_str_is(h_get(row, "name"), peer))
            fr = (long)h_u64(h_get(row, "free"));
    }
    h_ans_free(&a);
    return fr;
}

bool h_wait_free(ctl_client_t *cli, const char *peer, long lo, long hi, uint64_t ask_ms,
                 uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        long fr = h_offer_free(cli, peer, ask_ms);
        if (fr >= lo && fr <= hi)
            return true;
        usleep(H_POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

bool h_listed(ctl_client_t *cli, const char *pkg, uint64_t ms)
{
    h_ans_t a;
    bool found = false;
    if (h_query(cli, "offers", ms, &a) != CPN_MSG_STATUS)
        return false;
    for (uint32_t i = 0; a.obj.type == MSGPACK_OBJECT_ARRAY && i < a.obj.via.array.size; i++)
        found = found || h_str_is(h_get(&a.obj.via.array.ptr[i], "package"), pkg);
    h_ans_free(&a);
    return found;
}

bool h_wait_listed(ctl_client_t *cli, const char *pkg, uint64_t ask_ms, uint64_t ms)
{
    uint64_t deadline = cpn_mono_ms() + ms;
    do {
        if (h_listed(cli, pkg, ask_ms))
            return true;
        usleep(H_POLL_MS * 1000);
    } while (cpn_mono_ms() < deadline);
    return false;
}

void h_tenants_open(h_tenant_t *t, size_t n, const char *endpoint, const uint8_t *broker_pk,
                    bool plain)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ctl_client_new(endpoint, t[i].id, broker_pk, plain, &t[i].cli), CPN_OK);
}

void h_tenants_close(h_tenant_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ctl_client_destroy(&t[i].cli);
}

/* ---- HTTP ---- */

void h_http_free(h_http_t *h)
{
    free(h->body);
    memset(h, 0, sizeof *h);
}

/* Split a whole answer (buf, n bytes, NUL-terminated) into status, type and body. */
static bool s_http_parse(const char *buf, size_t n, h_http_t *out)
{
    const char *body = strstr(buf, "\r\n\r\n");
    if (!body || sscanf(buf, "HTTP/1.%*d %u", &out->status) != 1)
        return false;
    const char *ct = strstr(buf, "\r\nContent-Type: ");
    if (ct && ct < body)
        sscanf(ct + 16, "%127[^\r]", out->type);
    out->len = n - (size_t)(body + 4 - buf);
    out->body = malloc(out->len + 1);
    assert_non_null(out->body);
    memcpy(out->body, body + 4, out->len);
    out->body[out->len] = '\0';
    return true;
}

bool h_http(const char *method, int port, const char *path, const char *body, h_http_t *out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 10};
    char req[2048], *buf = malloc(H_HTTP_MAX + 1);
    size_t n = 0;
    bool ok = false;
    memset(out, 0, sizeof *out);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0 && buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rl = body ? snprintf(req, sizeof req,
                             "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n"
                             "\r\n%s",
                             method, path, strlen(body), body)
                  : snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                             method, path);
    assert_true(rl > 0 && (size_t)rl < sizeof req);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, req, (size_t)rl) == (ssize_t)rl) {
        ssize_t r;
        while (n < H_HTTP_MAX && (r = read(fd, buf + n, H_HTTP_MAX - n)) > 0)
            n += (size_t)r;
        buf[n] = '\0';
        ok = s_http_parse(buf, n, out);
    }
    close(fd);
    free(buf);
    return ok;
}

/* ---- msgpack ---- */

const msgpack_object *h_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

bool h_str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

uint64_t h_u64(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

char *h_read_src(const char *rel)
{
    const char *src = getenv("CPN_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", src && *src ? src : ".", rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (set CPN_SRCDIR)\n", path);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t k;
    while (mem && (k = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, k, mem);
    fclose(f);
    if (mem)
        fclose(mem);
    return buf;
}
