/* walckpt.c - checkpoint a SQLite WAL on a thread of its own (see walckpt.h for why). */
#include "walckpt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"

struct cpn_walckpt {
    sqlite3 *db; /* the writer's connection, not ours */
    sqlite3 *ck; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    bool due, stop;
    uint64_t runs, inline_runs;
};

/* Called by SQLite in the writer's thread after each commit, with the log's size. */
static int s_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    cpn_walckpt_t *self = arg;
    if (pages >= CPN_WALCKPT_HARD_PAGES) {
        int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&self->mu);
        self->inline_runs += rc == SQLITE_OK;
        pthread_mutex_unlock(&self->mu);
    } else if (pages >= CPN_WALCKPT_PAGES) {
        pthread_mutex_lock(&self->mu);
        self->due = true;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
    }
    return SQLITE_OK;
}

static void *s_thread(void *arg)
{
    cpn_walckpt_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->due && !self->stop)
            pthread_cond_wait(&self->cv, &self->mu);
        if (self->stop)
            break;
        self->due = false;
        pthread_mutex_unlock(&self->mu);
        /* SQLITE_BUSY: another checkpoint holds the lock; the next commit wakes us again. */
        int rc = sqlite3_wal_checkpoint_v2(self->ck, "main", SQLITE_CHECKPOINT_PASSIVE, NULL,
                                           NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("walckpt", "checkpoint: %s", sqlite3_errmsg(self->ck));
        pthread_mutex_lock(&self->mu);
        self->runs += rc == SQLITE_OK;
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

int cpn_walckpt_start(sqlite3 *db, cpn_walckpt_t **out)
{
    if (!db || !out)
        return CPN_E_INVAL;
    *out = NULL;
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path)
        return CPN_E_INVAL; /* in memory or temporary: no log to checkpoint */
    cpn_walckpt_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->db = db;
    if (sqlite3_open_v2(path, &self->ck, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        log_error("walckpt", "open %s: %s", path,
                  self->ck ? sqlite3_errmsg(self->ck) : "out of memory");
        sqlite3_close(self->ck);
        free(self);
        return CPN_E_DB;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    if (pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        log_error("walckpt", "no checkpoint thread: SQLite checkpoints in the writer");
        pthread_cond_destroy(&self->cv);
        pthread_mutex_destroy(&self->mu);
        sqlite3_close(self->ck);
        free(self);
        return CPN_E_IO;
    }
    sqlite3_wal_hook(db, s_hook, self);
    *out = self;
    return CPN_OK;
}

void cpn_walckpt_stop(cpn_walckpt_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpn_walckpt_t *self = *self_p;
    sqlite3_wal_autocheckpoint(self->db, CPN_WALCKPT_PAGES); /* the hook is SQLite's again */
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    sqlite3_close(self->ck);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

uint64_t cpn_walckpt_runs(cpn_walckpt_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->runs;
    pthread_mutex_unlock(&self->mu);
    return n;
}

uint64_t cpn_walckpt_inline_runs(cpn_walckpt_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->inline_runs;
    pthread_mutex_unlock(&self->mu);
    return n;
}
