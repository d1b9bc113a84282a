/* snap.c - the snapshot handoff: a generation counter under a mutex, a condition variable on
 * the monotonic clock, and an atomic flag the loop reads without the mutex. */
#include "snap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

struct cpn_snap {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t readers; /* one reader at a time */
    atomic_int wanted;
    uint64_t gen;  /* snapshots published */
    void *data;    /* the last one, until taken */
    cpn_snap_free_fn free_fn;
};

cpn_snap_t *cpn_snap_new(cpn_snap_free_fn free_fn)
{
    cpn_snap_t *self = calloc(1, sizeof *self);
    pthread_condattr_t ca;
    if (!self)
        return NULL;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&self->mu, NULL) != 0 || pthread_cond_init(&self->cv, &ca) != 0 ||
        pthread_mutex_init(&self->readers, NULL) != 0) {
        pthread_condattr_destroy(&ca);
        free(self);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    atomic_init(&self->wanted, 0);
    self->free_fn = free_fn;
    return self;
}

void cpn_snap_destroy(cpn_snap_t **self_p)
{
    cpn_snap_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->data && self->free_fn)
        self->free_fn(self->data);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    pthread_mutex_destroy(&self->readers);
    free(self);
    *self_p = NULL;
}

bool cpn_snap_wanted(cpn_snap_t *self)
{
    return atomic_load_explicit(&self->wanted, memory_order_relaxed) != 0;
}

void cpn_snap_publish(cpn_snap_t *self, void **data_p)
{
    void *old;
    pthread_mutex_lock(&self->mu);
    old = self->data;
    self->data = *data_p;
    *data_p = NULL;
    self->gen++;
    atomic_store_explicit(&self->wanted, 0, memory_order_relaxed);
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    if (old && self->free_fn)
        self->free_fn(old);
}

int cpn_snap_take(cpn_snap_t *self, int wait_ms, void **data_p)
{
    struct timespec until;
    int r = CPN_E_TIMEOUT;
    *data_p = NULL;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&self->readers);
    pthread_mutex_lock(&self->mu);
    uint64_t gen = self->gen;
    atomic_store_explicit(&self->wanted, 1, memory_order_relaxed);
    while (self->gen == gen)
        if (pthread_cond_timedwait(&self->cv, &self->mu, &until) == ETIMEDOUT)
            break;
    if (self->gen != gen && self->data) {
        *data_p = self->data;
        self->data = NULL;
        r = CPN_OK;
    }
    pthread_mutex_unlock(&self->mu);
    pthread_mutex_unlock(&self->readers);
    return r;
}
