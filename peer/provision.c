/* provision.c - queue, run, time out and retry driver calls; report final outcomes. */
#include "provision.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "runner.h"

typedef struct {
    size_t driver;
    drv_call_t call; /* hints and state point at the copies below */
    char *hints;
    char *state;
    uint32_t tries;         /* commands of tries started so far (the first try included) */
    uint64_t due_mono;      /* queued: may start at */
    uint64_t deadline_mono; /* running: killed at */
    peer_runner_t *run;     /* NULL while queued */
} s_job_t;

struct provision {
    const drv_config_t *drivers;
    const drv_ops_t **ops;
    size_t n_drivers;
    uint32_t *running; /* per driver */
    size_t n_running;
    s_job_t *jobs[PROVISION_QUEUE_MAX]; /* in submission order */
    size_t n_jobs;
    provision_done_fn done;
    void *arg;
    provision_stats_t stats;
};

provision_t *provision_new(const drv_config_t *drivers, size_t n, provision_done_fn done,
                           void *arg)
{
    provision_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->drivers = drivers;
    self->n_drivers = n;
    self->done = done;
    self->arg = arg;
    self->ops = calloc(n ? n : 1, sizeof *self->ops);
    self->running = calloc(n ? n : 1, sizeof *self->running);
    if (!self->ops || !self->running) {
        provision_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!(self->ops[i] = driver_find(drivers[i].type))) {
            log_error("provision", "driver %s: unknown type %s", drivers[i].name,
                      drivers[i].type);
            provision_destroy(&self);
            return NULL;
        }
    return self;
}

static void s_job_free(s_job_t **job_p)
{
    s_job_t *job = *job_p;
    if (!job)
        return;
    runner_destroy(&job->run);
    free(job->hints);
    free(job->state);
    free(job);
    *job_p = NULL;
}

void provision_destroy(provision_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    provision_t *self = *self_p;
    for (size_t i = 0; i < self->n_jobs; i++)
        s_job_free(&self->jobs[i]);
    free(self->ops);
    free(self->running);
    free(self);
    *self_p = NULL;
}

static bool s_same(const s_job_t *job, size_t driver, const char *lease_id, drv_verb_t verb)
{
    if (job->call.verb != verb)
        return false;
    if (verb == DRV_LIST || verb == DRV_INVENTORY)
        return job->driver == driver;
    return strcmp(job->call.lease_id, lease_id) == 0;
}

bool provision_busy(const provision_t *self, const char *lease_id, drv_verb_t verb)
{
    for (size_t i = 0; i < self->n_jobs; i++)
        if (s_same(self->jobs[i], self->jobs[i]->driver, lease_id, verb))
            return true;
    return false;
}

bool provision_room(const provision_t *self)
{
    return self->n_jobs < PROVISION_QUEUE_MAX;
}

int provision_submit(provision_t *self, size_t driver, const drv_call_t *call)
{
    if (driver >= self->n_drivers || (unsigned)call->verb >= DRV__VERBS)
        return CPN_E_INVAL;
    for (size_t i = 0; i < self->n_jobs; i++)
        if (s_same(self->jobs[i], driver, call->lease_id, call->verb))
            return CPN_OK;
    if (self->n_jobs >= PROVISION_QUEUE_MAX) {
        self->stats.busy++;
        return CPN_E_BUSY;
    }
    s_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return CPN_E_NOMEM;
    job->driver = driver;
    job->call = *call;
    job->call.step = 0;
    job->call.state = NULL;
    job->call.hints = NULL;
    if (call->hints && !(job->hints = strdup(call->hints))) {
        free(job);
        return CPN_E_NOMEM;
    }
    job->call.hints = job->hints;
    job->due_mono = cpn_mono_ms();
    self->jobs[self->n_jobs++] = job;
    return CPN_OK;
}

size_t provision_fds(const provision_t *self, int *fds, short *events, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < self->n_jobs; i++) {
        if (!self->jobs[i]->run || n + RUNNER_FDS > cap)
            continue;
        n += runner_fds(self->jobs[i]->run, fds + n, events + n);
    }
    return n;
}

int provision_timeout_ms(const provision_t *self, uint64_t now)
{
    int64_t t = -1;
    for (size_t i = 0; i < self->n_jobs; i++) {
        const s_job_t *job = self->jobs[i];
        int64_t d;
        if (job->run)
            d = runner_reaping(job->run) ? RUNNER_REAP_MS
                                         : (int64_t)(job->deadline_mono - (job->deadline_mono > now ? now : job->deadline_mono));
        else if (self->running[job->driver] < self->drivers[job->driver].concurrency &&
                 self->n_running < PROVISION_CHILDREN_MAX)
            d = job->due_mono > now ? (int64_t)(job->due_mono - now) : 0;
        else
            continue; /* waits for a child to end, which its pipes signal */
        if (t < 0 || d < t)
            t = d;
    }
    return (int)(t > 60000 ? 60000 : t);
}

/* Start job's command. False if it could not (it is then due again after the backoff). */
static bool s_start(provision_t *self, s_job_t *job, uint64_t now)
{
    const drv_config_t *cfg = &self->drivers[job->driver];
    drv_cmd_t cmd;
    drv_result_t res;
    memset(&cmd, 0, sizeof cmd);
    memset(&res, 0, sizeof res);
    int r = self->ops[job->driver]->command(cfg, &job->call, &cmd);
    if (r == CPN_OK)
        r = runner_start(&cmd, PROVISION_OUTPUT_MAX, &job->run);
    drv_cmd_clear(&cmd);
    if (r != CPN_OK) {
        /* No command (a bug, or fork failing): try again later as any failure. */
        log_warn("provision", "%s %s on %s: cannot start: %s", drv_verb_name(job->call.verb),
                 job->call.lease_id, cfg->name, cpn_errname(r));
        job->due_mono = now + cfg->backoff_s * 1000u;
        job->tries++;
        return false;
    }
    if (job->call.step == 0)
        job->tries++;
    job->deadline_mono = now + cfg->timeout_s * 1000u;
    self->running[job->driver]++;
    self->n_running++;
    if (self->n_running > self->stats.running_max)
        self->stats.running_max = self->n_running;
    self->stats.started++;
    log_debug("provision", "%s %s on %s: started (pid %d, try %" PRIu32 ", step %" PRIu32 ")",
              drv_verb_name(job->call.verb), job->call.lease_id, cfg->name,
              (int)runner_pid(job->run), job->tries, job->call.step);
    return true;
}

/* Remove job i (keeping the order) and report its outcome. */
static void s_finish(provision_t *self, size_t i, drv_result_t *res)
{
    s_job_t *job = self->jobs[i];
    memmove(&self->jobs[i], &self->jobs[i + 1], (self->n_jobs - i - 1) * sizeof self->jobs[0]);
    self->n_jobs--;
    const drv_config_t *cfg = &self->drivers[job->driver];
    if (res->outcome == DRV_OK) {
        self->stats.ok++;
        log_info("provision", "%s %s on %s: ok", drv_verb_name(job->call.verb),
                 job->call.lease_id, cfg->name);
    } else {
        self->stats.failed++;
        log_warn("provision", "%s %s on %s: failed: %s", drv_verb_name(job->call.verb),
                 job->call.lease_id, cfg->name, res->reason);
    }
    if (self->done)
        self->done(self->arg, job->driver, &job->call, res);
    s_job_free(&job);
}

/* A finished command: what it means, and what comes next. True if job i left the queue. */
static bool s_ended(provision_t *self, size_t i, uint64_t now)
{
    s_job_t *job = self->jobs[i];
    const drv_config_t *cfg = &self->drivers[job->driver];
    drv_run_t run;
    drv_result_t res;
    memset(&res, 0, sizeof res);
    runner_run(job->run, &run);
    if (run.timed_out) {
        self->stats.timeouts++;
        drv_result_set(&res, DRV_RETRY, "driver timed out after %" PRIu64 " s", cfg->timeout_s);
    } else if (run.overflow) {
        self->stats.overflows++;
        drv_result_set(&res, DRV_RETRY, "driver wrote more than %d bytes", PROVISION_OUTPUT_MAX);
    } else {
        self->ops[job->driver]->result(cfg, &job->call, &run, &res);
    }
    runner_destroy(&job->run);
    self->running[job->driver]--;
    self->n_running--;
    if (res.outcome == DRV_NEXT) {
        if (job->call.step + 1 >= DRV_STEPS_MAX) {
            drv_result_set(&res, DRV_FAILED, "driver asked for more than %d steps", DRV_STEPS_MAX);
        } else {
            free(job->state);
            job->state = res.next;
            res.next = NULL;
            job->call.state = job->state;
            job->call.step++;
            job->due_mono = now;
            drv_result_clear(&res);
            return false;
        }
    }
    if (res.outcome == DRV_RETRY) {
        bool past_end = job->call.verb == DRV_GRANT && cpn_now_ms() >= job->call.end_ms;
        if (job->tries <= cfg->retries && !past_end) {
            uint64_t wait = cfg->backoff_s;
            for (uint32_t k = 1; k < job->tries && wait < PROVISION_BACKOFF_MAX_S; k++)
                wait *= 2;
            if (wait > PROVISION_BACKOFF_MAX_S)
                wait = PROVISION_BACKOFF_MAX_S;
            log_warn("provision", "%s %s on %s: %s; try %" PRIu32 " of %" PRIu32 " in %" PRIu64
                     " s", drv_verb_name(job->call.verb), job->call.lease_id, cfg->name,
                     res.reason, job->tries + 1, cfg->retries + 1, wait);
            self->stats.retried++;
            job->call.step = 0;
            free(job->state);
            job->state = NULL;
            job->call.state = NULL;
            job->due_mono = now + wait * 1000u;
            drv_result_clear(&res);
            return false;
        }
        char why[CPN_REASON_MAX];
        snprintf(why, sizeof why, "%s", res.reason);
        drv_result_set(&res, DRV_FAILED, "%s (%s)", why,
                       past_end ? "the lease ended" : "no tries left");
    }
    s_finish(self, i, &res);
    drv_result_clear(&res);
    return true;
}

void provision_run(provision_t *self, uint64_t now)
{
    for (size_t i = 0; i < self->n_jobs;) {
        s_job_t *job = self->jobs[i];
        if (job->run) {
            bool end = runner_step(job->run);
            if (!end && now >= job->deadline_mono) {
                runner_kill(job->run, true);
                end = true;
            }
            if (end && s_ended(self, i, now))
                continue; /* job i left: the next one is at i now */
        }
        i++;
    }
    for (size_t i = 0; i < self->n_jobs && self->n_running < PROVISION_CHILDREN_MAX;) {
        s_job_t *job = self->jobs[i];
        const drv_config_t *cfg = &self->drivers[job->driver];
        if (job->run || job->due_mono > now || self->running[job->driver] >= cfg->concurrency) {
            i++;
            continue;
        }
        if (job->call.verb == DRV_GRANT && job->call.step == 0 &&
            cpn_now_ms() >= job->call.end_ms) {
            drv_result_t res;
            memset(&res, 0, sizeof res);
            drv_result_set(&res, DRV_FAILED, "%s", "the lease ended before it was provisioned");
            s_finish(self, i, &res);
            continue;
        }
        if (!s_start(self, job, now) && job->tries > cfg->retries) {
            drv_result_t res;
            memset(&res, 0, sizeof res);
            drv_result_set(&res, DRV_FAILED, "%s", "cannot start the driver (no tries left)");
            s_finish(self, i, &res);
            continue;
        }
        i++;
    }
}

void provision_stats(const provision_t *self, provision_stats_t *out)
{
    *out = self->stats;
    out->queued = self->n_jobs;
    out->running = self->n_running;
}
