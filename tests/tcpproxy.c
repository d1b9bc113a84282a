/* tcpproxy.c - one thread, one poll loop over the listener and the connection pairs. */
#include "tcpproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define S_PAIRS 16     /* connections at once; older ones are dropped beyond that */
#define S_CHUNK 65536  /* bytes read at once */
#define S_POLL_MS 10   /* how often the thread looks at new commands */
#define S_SEND_MS 2000 /* a write that blocks this long ends the connection */

typedef struct {
    int fd[2]; /* [TCPPROXY_TO_SERVER] reads the client, [TCPPROXY_TO_CLIENT] reads the server */
    uint64_t serial;
} s_pair_t;

struct tcpproxy {
    int lfd, port, target;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    bool stop;
    bool flip[2];
    uint8_t *inject[2];
    size_t inject_len[2];
    uint64_t mute[2]; /* serial of the connection muted in that direction; 0: none */
    uint64_t accepted, faults;
    s_pair_t pairs[S_PAIRS];
};

static void s_close_pair(s_pair_t *p)
{
    for (int d = 0; d < 2; d++)
        if (p->fd[d] >= 0)
            close(p->fd[d]);
    p->fd[0] = p->fd[1] = -1;
}

static bool s_write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

static int s_connect_target(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void s_sock_opts(int fd)
{
    int one = 1;
    struct timeval tv = {S_SEND_MS / 1000, (S_SEND_MS % 1000) * 1000};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void s_accept(tcpproxy_t *self)
{
    int cfd = accept(self->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    int sfd = s_connect_target(self->target);
    if (sfd < 0) { /* the server is down: the client sees its connection close */
        close(cfd);
        return;
    }
    s_sock_opts(cfd);
    s_sock_opts(sfd);
    s_pair_t *slot = NULL;
    for (size_t i = 0; i < S_PAIRS && !slot; i++)
        if (self->pairs[i].fd[0] < 0)
            slot = &self->pairs[i];
    if (!slot) { /* full: drop the oldest */
        slot = &self->pairs[0];
        for (size_t i = 1; i < S_PAIRS; i++)
            if (self->pairs[i].serial < slot->serial)
                slot = &self->pairs[i];
        s_close_pair(slot);
    }
    slot->fd[TCPPROXY_TO_SERVER] = cfd;
    slot->fd[TCPPROXY_TO_CLIENT] = sfd;
    pthread_mutex_lock(&self->mu);
    slot->serial = ++self->accepted;
    pthread_mutex_unlock(&self->mu);
}

static s_pair_t *s_newest(tcpproxy_t *self)
{
    s_pair_t *best = NULL;
    for (size_t i = 0; i < S_PAIRS; i++)
        if (self->pairs[i].fd[0] >= 0 && (!best || self->pairs[i].serial > best->serial))
            best = &self->pairs[i];
    return best;
}

/* Injections waiting: write them into the newest connection now. */
static void s_injections(tcpproxy_t *self)
{
    for (int d = 0; d < 2; d++) {
        pthread_mutex_lock(&self->mu);
        uint8_t *buf = self->inject[d];
        size_t len = self->inject_len[d];
        self->inject[d] = NULL;
        pthread_mutex_unlock(&self->mu);
        if (!buf)
            continue;
        s_pair_t *p = s_newest(self);
        /* fd[d] reads the stream going d, so the bytes go out on the other one */
        if (p && s_write_all(p->fd[1 - d], buf, len)) {
            pthread_mutex_lock(&self->mu);
            self->faults++;
            pthread_mutex_unlock(&self->mu);
        }
        free(buf);
    }
}

/* Forward one chunk read on p->fd[d]; false when the connection ended. */
static bool s_forward(tcpproxy_t *self, s_pair_t *p, int d, uint8_t *buf)
{
    ssize_t n = recv(p->fd[d], buf, S_CHUNK, 0);
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    pthread_mutex_lock(&self->mu);
    bool mute = self->mute[d] == p->serial;
    if (mute)
        self->faults++;
    pthread_mutex_unlock(&self->mu);
    if (mute)
        return true;
    if (p == s_newest(self)) {
        pthread_mutex_lock(&self->mu);
        if (self->flip[d]) {
            self->flip[d] = false;
            buf[n - 1] ^= 1;
            self->faults++;
        }
        pthread_mutex_unlock(&self->mu);
    }
    return s_write_all(p->fd[1 - d], buf, (size_t)n);
}

static void *s_run(void *arg)
{
    tcpproxy_t *self = arg;
    uint8_t *buf = malloc(S_CHUNK);
    struct pollfd pfd[1 + 2 * S_PAIRS];
    s_pair_t *owner[1 + 2 * S_PAIRS];
    int dir[1 + 2 * S_PAIRS];
    if (!buf)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&self->mu);
        bool stop = self->stop;
        pthread_mutex_unlock(&self->mu);
        if (stop)
            break;
        s_injections(self);
        nfds_t n = 0;
        pfd[n].fd = self->lfd;
        pfd[n].events = POLLIN;
        owner[n++] = NULL;
        for (size_t i = 0; i < S_PAIRS; i++)
            for (int d = 0; d < 2 && self->pairs[i].fd[0] >= 0; d++) {
                pfd[n].fd = self->pairs[i].fd[d];
                pfd[n].events = POLLIN;
                owner[n] = &self->pairs[i];
                dir[n++] = d;
            }
        if (poll(pfd, n, S_POLL_MS) <= 0)
            continue;
        for (nfds_t k = 1; k < n; k++)
            if (owner[k]->fd[0] >= 0 && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) &&
                !s_forward(self, owner[k], dir[k], buf))
                s_close_pair(owner[k]);
        if (pfd[0].revents & POLLIN)
            s_accept(self);
    }
    free(buf);
    return NULL;
}

tcpproxy_t *tcpproxy_new(int target_port)
{
    tcpproxy_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    for (size_t i = 0; i < S_PAIRS; i++)
        self->pairs[i].fd[0] = self->pairs[i].fd[1] = -1;
    self->target = target_port;
    pthread_mutex_init(&self->mu, NULL);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    self->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (self->lfd < 0 || setsockopt(self->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(self->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(self->lfd, 16) != 0 ||
        getsockname(self->lfd, (struct sockaddr *)&a, &alen) != 0)
        goto fail;
    self->port = ntohs(a.sin_port);
    if (pthread_create(&self->thread, NULL, s_run, self) != 0)
        goto fail;
    self->started = true;
    return self;
fail:
    tcpproxy_destroy(&self);
    return NULL;
}

void tcpproxy_destroy(tcpproxy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tcpproxy_t *self = *self_p;
    if (self->started) {
        pthread_mutex_lock(&self->mu);
        self->stop = true;
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->thread, NULL);
    }
    for (size_t i = 0; i < S_PAIRS; i++)
        s_close_pair(&self->pairs[i]);
    if (self->lfd >= 0)
        close(self->lfd);
    for (int d = 0; d < 2; d++)
        free(self->inject[d]);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

int tcpproxy_port(const tcpproxy_t *self)
{
    return self->port;
}

void tcpproxy_flip(tcpproxy_t *self, tcpproxy_dir_t dir)
{
    pthread_mutex_lock(&self->mu);
    self->flip[dir] = true;
    pthread_mutex_unlock(&self->mu);
}

void tcpproxy_inject(tcpproxy_t *self, tcpproxy_dir_t dir, const uint8_t *bytes, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, bytes, len);
    pthread_mutex_lock(&self->mu);
    free(self->inject[dir]);
    self->inject[dir] = copy;
    self->inject_len[dir] = len;
    pthread_mutex_unlock(&self->mu);
}

void tcpproxy_mute(tcpproxy_t *self, tcpproxy_dir_t dir)
{
    pthread_mutex_lock(&self->mu);
    self->mute[dir] = self->accepted; /* the newest connection's serial */
    pthread_mutex_unlock(&self->mu);
}

uint64_t tcpproxy_accepted(tcpproxy_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->accepted;
    pthread_mutex_unlock(&self->mu);
    return n;
}

uint64_t tcpproxy_faults(tcpproxy_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->faults;
    pthread_mutex_unlock(&self->mu);
    return n;
}

void tcpproxy_zmtp_frame(uint64_t body, uint8_t **out, size_t *len)
{
    /* ZMTP 3: flags 0x02 (long, last frame of the message), then the size in 8 bytes, network
     * order (RFC 23). */
    size_t n = 9 + (size_t)body;
    uint8_t *f = calloc(1, n);
    *out = f;
    *len = f ? n : 0;
    if (!f)
        return;
    f[0] = 0x02;
    for (int i = 0; i < 8; i++)
        f[1 + i] = (uint8_t)(body >> (8 * (7 - i)));
}
