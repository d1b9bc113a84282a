/* slurm_cmd.h - the Slurm commands a lease needs, as argv vectors, and what their exit status
 * and messages mean: a pure core (no processes, no clock) under the slurm driver.
 *
 * A lease L is the reservation "cpn-L" (SLURM_RESV_PREFIX):
 *   grant    scontrol create reservation reservationname=cpn-L starttime=now
 *                endtime=END (nodes=LIST | nodecnt=UNITS [partition=P] [features=F])
 *                (users=U | accounts=A)
 *   renew    scontrol update reservationname=cpn-L endtime=END
 *   release  scancel --reservation=cpn-L   (a reservation with jobs cannot be deleted)
 *            scontrol delete reservationname=cpn-L
 *   status   scontrol show reservation -o cpn-L
 *   list     scontrol show reservation -o
 *   nodes    scontrol show node -o
 * END is the lease's end, YYYY-MM-DDTHH:MM:SS in UTC: scontrol reads (and prints) times in
 * its own local time zone, so the driver runs it with TZ=UTC0 (slurm_cmd_env). An absolute end
 * makes a retried command the same command. Every value put into an argv is checked to
 * be a plain name ([A-Za-z0-9._-], a host list may add "[],"), so that scontrol's KEY=VALUE
 * parser sees exactly one value: CPN_E_INVAL otherwise.
 */
#ifndef PEER_SLURM_CMD_H
#define PEER_SLURM_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "slurm.h"

#define SLURM_ARGV_MAX 16  /* words of one command */
#define SLURM_CMD_BUF 4096 /* bytes of all its words */

typedef struct {
    size_t argc;
    const char *argv[SLURM_ARGV_MAX + 1]; /* NULL-terminated; the words live in buf */
    char buf[SLURM_CMD_BUF];
    size_t used;
} slurm_cmd_t;

/* The programs to run (paths, or names found on PATH), and the slurm.conf they read ("": the
 * default, or SLURM_CONF of the peer's environment). Each command runs as
 * `env TZ=UTC0 [SLURM_CONF=conf] PROGRAM ...`. */
typedef struct {
    char scontrol[SLURM_TEXT_MAX];
    char scancel[SLURM_TEXT_MAX];
    char conf[SLURM_TEXT_MAX];
} slurm_progs_t;

/* What a grant asks of Slurm. */
typedef struct {
    const char *lease_id;
    const slurm_set_t *set; /* partition and feature go to the reservation */
    uint32_t units;         /* nodecnt, unless nodes is given */
    const char *nodes;      /* host list chosen by the caller, or NULL (Slurm chooses) */
    const char *user;       /* users=, or NULL */
    const char *account;    /* accounts=, or NULL; one of user and account is needed */
    uint64_t end_s;         /* the lease's end, Unix seconds */
} slurm_grant_t;

/* "cpn-" + lease id into out (SLURM_NAME_MAX); CPN_E_INVAL for a lease id that is not a name. */
int slurm_resv_name(const char *lease_id, char out[SLURM_NAME_MAX]) CPN_WUR;

int slurm_cmd_create(slurm_cmd_t *cmd, const slurm_progs_t *p, const slurm_grant_t *g) CPN_WUR;
int slurm_cmd_update_end(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id,
                         uint64_t end_s) CPN_WUR;
int slurm_cmd_cancel_jobs(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id) CPN_WUR;
int slurm_cmd_delete(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id) CPN_WUR;
/* lease_id NULL: every reservation. */
int slurm_cmd_show_resv(slurm_cmd_t *cmd, const slurm_progs_t *p, const char *lease_id) CPN_WUR;
int slurm_cmd_show_nodes(slurm_cmd_t *cmd, const slurm_progs_t *p) CPN_WUR;

/* Slurm's printed time ("2026-12-04T19:26:31", UTC under TZ=UTC0) as Unix seconds. */
int slurm_time_parse(const char *text, uint64_t *out) CPN_WUR;

/* Which command a finished process was, for reading its outcome. */
typedef enum {
    SLURM_OP_CREATE,
    SLURM_OP_UPDATE,
    SLURM_OP_CANCEL,
    SLURM_OP_DELETE,
    SLURM_OP_SHOW,
} slurm_op_t;

typedef enum {
    SLURM_OUT_OK,     /* done */
    SLURM_OUT_EXISTS, /* create: the reservation is there already (a retry): read it */
    SLURM_OUT_GONE,   /* the reservation does not exist (delete: that is success) */
    SLURM_OUT_RETRY,  /* the controller is unreachable, busy, or the reservation still in use */
    SLURM_OUT_FAIL,   /* refused for good (no such nodes free, bad user, ...): `why` says */
} slurm_outcome_t;

/* Classify a finished command from its exit status (as from waitpid's WEXITSTATUS; -1 for a
 * process killed or never started) and its stderr (errlen bytes, need not end in NUL; stdout
 * for scontrol's "not found"). `why` (SLURM_WHY_MAX) gets the first line Slurm printed, for
 * the lease's NACK and the log. */
slurm_outcome_t slurm_outcome(slurm_op_t op, int status, const char *out, size_t outlen,
                              const char *err, size_t errlen, char why[SLURM_WHY_MAX]);

/* The access details a tenant gets for a reservation, as one JSON object (cap bytes with
 * the NUL): {"kind":"slurm","cluster":C,"reservation":R,"login":E,"user":U,"nodes":[..],
 * "submit":"sbatch --reservation=R ..."}. login and user may be "" (left out).
 * CPN_E_TOO_BIG if it does not fit, CPN_E_INVAL for a host list that does not expand. */
int slurm_access_json(const char *cluster, const slurm_resv_t *resv, const char *login,
                      const char *user, char *out, size_t cap) CPN_WUR;

#endif
