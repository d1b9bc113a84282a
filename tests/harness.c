/* harness.c - shared helpers of the daemon integration tests: see harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "clock.h"
#include "harness.h"
#include "mp.h"

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

int h_dirs(char *bin, size_t bin_cap, char *dir, size_t dir_cap, const char *tag)
{
    const char *b = getenv("CPN_BUILDDIR");
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(bin, bin_cap, "%s", b && b[0] ? b : ".");
    int m = snprintf(dir, dir_cap, "%s/cpn-test-%s.XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    assert_true(n > 0 && (size_t)n < bin_cap && m > 0 && (size_t)m < dir_cap);
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        return -1;
    }
    return 0;
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
