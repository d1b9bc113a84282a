/* runner.c - fork/exec a driver command with three non-blocking pipes, read it, reap it. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} s_buf_t;

struct peer_runner {
    pid_t pid;    /* > 0 until reaped */
    int in_fd;    /* -1 once all written (or the child closed it) */
    int out_fd, err_fd;
    uint8_t *in;
    size_t in_len, in_off;
    size_t out_max;
    s_buf_t out, err;
    bool exited, killed, timed_out, overflow;
    int status;
};

static void s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void s_child(const drv_cmd_t *cmd, int in_r, int out_w, int err_w)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        _exit(126);
    execvp(cmd->argv[0], cmd->argv);
    _exit(127);
}

/* pipe2(O_CLOEXEC) is not POSIX: the daemon forks from one thread only, so setting the flag
 * right after pipe() leaves no window for another fork to inherit them. */
static int s_pipe(int p[2])
{
    if (pipe(p) < 0)
        return -1;
    if (fcntl(p[0], F_SETFD, FD_CLOEXEC) < 0 || fcntl(p[1], F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

static int s_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

int runner_start(const drv_cmd_t *cmd, size_t out_max, peer_runner_t **out)
{
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
    peer_runner_t *self = calloc(1, sizeof *self);
    *out = NULL;
    if (!self || !cmd->argv[0])
        goto fail;
    self->in_fd = self->out_fd = self->err_fd = -1;
    self->out_max = out_max;
    if (cmd->in_len && !(self->in = malloc(cmd->in_len)))
        goto fail;
    if (cmd->in_len)
        memcpy(self->in, cmd->in, cmd->in_len);
    self->in_len = cmd->in_len;
    if (s_pipe(in) < 0 || s_pipe(o) < 0 || s_pipe(e) < 0) {
        log_error("runner", "pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("runner", "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        s_child(cmd, in[0], o[1], e[1]);
    setpgid(pid, pid); /* also in the parent: no race with a kill before the child ran */
    self->pid = pid;
    close(in[0]);
    close(o[1]);
    close(e[1]);
    self->in_fd = in[1];
    self->out_fd = o[0];
    self->err_fd = e[0];
    if (s_nonblock(self->in_fd) || s_nonblock(self->out_fd) || s_nonblock(self->err_fd))
        log_warn("runner", "cannot make the pipes of %d non-blocking", (int)pid);
    if (self->in_len == 0)
        s_close(&self->in_fd);
    *out = self;
    return CPN_OK;
fail:
    for (int i = 0; i < 2; i++) {
        s_close(&in[i]);
        s_close(&o[i]);
        s_close(&e[i]);
    }
    if (self)
        free(self->in);
    free(self);
    return CPN_E_IO;
}

size_t runner_fds(const peer_runner_t *self, int fds[RUNNER_FDS], short events[RUNNER_FDS])
{
    size_t n = 0;
    if (self->in_fd >= 0) {
        fds[n] = self->in_fd;
        events[n++] = POLLOUT;
    }
    if (self->out_fd >= 0) {
        fds[n] = self->out_fd;
        events[n++] = POLLIN;
    }
    if (self->err_fd >= 0) {
        fds[n] = self->err_fd;
        events[n++] = POLLIN;
    }
    return n;
}

static void s_write_in(peer_runner_t *self)
{
    while (self->in_fd >= 0 && self->in_off < self->in_len) {
        ssize_t w = write(self->in_fd, self->in + self->in_off, self->in_len - self->in_off);
        if (w > 0) {
            self->in_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            return;
        } else {
            break; /* EPIPE: the program did not read its input; its answer says the rest */
        }
    }
    s_close(&self->in_fd);
}

/* Read what is there; over out_max the runner is killed (overflow). */
static void s_read(peer_runner_t *self, int *fd, s_buf_t *b)
{
    while (*fd >= 0) {
        if (b->cap - b->len < 4096 + 1) {
            size_t cap = b->cap ? b->cap * 2 : 4096 + 1;
            if (cap > self->out_max + 4096 + 1)
                cap = self->out_max + 4096 + 1;
            uint8_t *nb = cap > b->cap ? realloc(b->buf, cap) : NULL;
            if (!nb) {
                self->overflow = true;
                runner_kill(self, false);
                return;
            }
            b->buf = nb;
            b->cap = cap;
        }
        ssize_t r = read(*fd, b->buf + b->len, b->cap - b->len - 1);
        if (r > 0) {
            b->len += (size_t)r;
            if (b->len > self->out_max) {
                self->overflow = true;
                runner_kill(self, false);
                return;
            }
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && errno == EAGAIN) {
            return;
        } else {
            s_close(fd); /* EOF or error */
        }
    }
}

static void s_reap(peer_runner_t *self, bool block)
{
    if (self->pid <= 0)
        return;
    int st = 0;
    pid_t w;
    do
        w = waitpid(self->pid, &st, block ? 0 : WNOHANG);
    while (w < 0 && errno == EINTR);
    if (w == 0)
        return;
    if (w == self->pid) {
        self->exited = WIFEXITED(st);
        self->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? WTERMSIG(st) : -1;
    }
    self->pid = 0; /* reaped (or lost: ECHILD) */
}

bool runner_step(peer_runner_t *self)
{
    s_write_in(self);
    s_read(self, &self->out_fd, &self->out);
    s_read(self, &self->err_fd, &self->err);
    if (self->out_fd < 0 && self->err_fd < 0)
        s_reap(self, false);
    return self->pid <= 0 && self->out_fd < 0 && self->err_fd < 0;
}

bool runner_reaping(const peer_runner_t *self)
{
    return self->pid > 0 && self->out_fd < 0 && self->err_fd < 0;
}

void runner_kill(peer_runner_t *self, bool timed_out)
{
    self->timed_out = self->timed_out || timed_out;
    if (self->pid > 0) {
        self->killed = true;
        kill(-self->pid, SIGKILL);
        kill(self->pid, SIGKILL);
        s_reap(self, true); /* SIGKILL: it goes at once */
    }
    s_close(&self->in_fd);
    s_close(&self->out_fd);
    s_close(&self->err_fd);
}

void runner_run(const peer_runner_t *self, drv_run_t *run)
{
    memset(run, 0, sizeof *run);
    run->timed_out = self->timed_out;
    run->overflow = self->overflow;
    run->exited = self->exited && !self->killed;
    run->status = self->status;
    run->out = self->out.buf ? self->out.buf : (const uint8_t *)"";
    run->out_len = self->out.len;
    run->err = self->err.buf ? self->err.buf : (const uint8_t *)"";
    run->err_len = self->err.len;
    if (self->out.buf)
        self->out.buf[self->out.len] = '\0';
    if (self->err.buf)
        self->err.buf[self->err.len] = '\0';
}

pid_t runner_pid(const peer_runner_t *self)
{
    return self->pid;
}

void runner_destroy(peer_runner_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_runner_t *self = *self_p;
    runner_kill(self, false);
    free(self->in);
    free(self->out.buf);
    free(self->err.buf);
    free(self);
    *self_p = NULL;
}
