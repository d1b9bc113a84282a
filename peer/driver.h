/* driver.h - what a provisioning driver is: a table of operations that turns a call on a
 * lease into a command to run, and the finished command into a result.
 *
 * A driver does no I/O of its own. The engine (provision.h) asks it for the command of a call
 * (argv and the bytes to write on the child's stdin), runs that command as a child process
 * whose pipes sit in the daemon's poll set (runner.h), and hands the exit status, stdout and
 * stderr back to the driver, which says what they mean. So a driver is a pure translation
 * (tests can feed it output), and every driver gets the same timeout, output cap, bounded
 * concurrency and retries with backoff.
 *
 * Every call is idempotent by lease id: grant of a lease the driver already holds answers
 * as the first grant did (same resource, access details again); release of a lease it does
 * not hold succeeds; renew sets the end, it does not add to it. The engine relies on this to
 * retry after a timeout and to re-run calls after a peer was killed at any point.
 *
 * A driver may need more than one command for a call (Slurm creates a reservation, then reads
 * which nodes it got): its result is then DRV_NEXT with `next` set, and the engine runs the
 * command of the same call again with call->step one higher and call->state the `next` text
 * (what the driver wants to remember between steps). At most DRV_STEPS_MAX steps per call.
 *
 * Drivers are found by their type name (driver_find): "exec" (driver_exec.c: the operator's
 * program, JSON on stdin and stdout, docs/PROVISIONING.md) and "slurm" (driver_slurm.c).
 */
#ifndef PEER_DRIVER_H
#define PEER_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hints.h"
#include "identity.h"
#include "msg.h"
#include "resource.h"

#define DRV_STEPS_MAX 8            /* commands for one call (DRV_NEXT chains) */
#define DRV_ARGV_MAX 32            /* arguments of one command, the program included */
#define DRV_OPTIONS_MAX 16         /* driver-specific `options` keys of one driver */
#define DRV_OPTION_LEN 256         /* bytes of one option value (and key: CPN_NAME_MAX) */
#define DRV_ACCESS_MAX CPN_ACCESS_MAX /* bytes of access details (JSON) a grant may return */
#define DRV_HINTS_MAX 8192 /* the REQUEST's access hints as JSON text (CPN_HINTS_BYTES escaped) */
#define DRV_LIST_MAX 65536         /* lease ids one `list` may return */
#define DRV_INVENTORY_MAX CPN_PACKAGES_MAX

typedef enum {
    DRV_GRANT = 0, /* make the lease's resource exist; answer its access details */
    DRV_RENEW,     /* set the resource's end to call->end_ms */
    DRV_RELEASE,   /* tear the resource down (nothing held: success) */
    DRV_STATUS,    /* does the resource exist and work? (result.present) */
    DRV_LIST,      /* which lease ids does the driver hold resources for? (result.ids) */
    DRV_INVENTORY, /* what units does each package really have now? (optional) */
    DRV__VERBS
} drv_verb_t;

/* "grant", "renew", "release", "status", "list", "inventory". */
const char *drv_verb_name(drv_verb_t v);

/* A driver's configuration, from the peer config's `provision.drivers[]` (peer_config.h). */
typedef struct {
    char key[CPN_NAME_MAX];
    char value[DRV_OPTION_LEN];
} drv_option_t;

typedef struct {
    char name[CPN_NAME_MAX];       /* what packages refer to */
    char type[CPN_NAME_MAX];       /* "exec", "slurm" */
    char program[4096];            /* exec: the operator's program; slurm: unused ("") */
    uint64_t timeout_s;            /* per command; the child is killed (SIGKILL) at it */
    uint32_t concurrency;          /* children of this driver at once */
    uint32_t retries;              /* further tries of a retryable failure */
    uint64_t backoff_s;            /* before the first retry; doubles each time (capped) */
    uint64_t inventory_s;          /* 0: no inventory polling; else every this many s */
    size_t n_options;
    drv_option_t options[DRV_OPTIONS_MAX]; /* driver-specific keys, validated by the driver */
} drv_config_t;

/* Value of a driver option, or NULL. */
const char *drv_option(const drv_config_t *cfg, const char *key);

/* One call on one lease. Strings are borrowed for the call's life. For DRV_LIST and
 * DRV_INVENTORY only `verb`, `step` and `state` mean anything. */
typedef struct {
    drv_verb_t verb;
    char lease_id[CPN_NAME_MAX];
    char tenant[CPN_PK_TEXT_LEN]; /* the tenant's Ed25519 key, base64url (43 characters) */
    char tenant_kid[CPN_KID_LEN]; /* its short key id, for names and logs */
    char package[CPN_NAME_MAX];
    uint32_t units;
    uint64_t start_ms, end_ms;
    const char *hints; /* the REQUEST's `access` hints as JSON text, or NULL */
    uint32_t step;     /* 0 for the first command of the call */
    const char *state; /* the previous step's `next` (step > 0), else NULL */
} drv_call_t;

/* The command to run: argv[0] is the program (a path: it is not looked up in PATH unless
 * it has no '/'). All malloc'd; drv_cmd_clear frees. */
typedef struct {
    char *argv[DRV_ARGV_MAX + 1]; /* NULL-terminated */
    uint8_t *in;                  /* written to the child's stdin, which is then closed */
    size_t in_len;
} drv_cmd_t;

void drv_cmd_clear(drv_cmd_t *cmd);
/* Append a copy of `arg` to cmd->argv: CPN_E_TOO_BIG beyond DRV_ARGV_MAX. */
int drv_cmd_arg(drv_cmd_t *cmd, const char *arg) CPN_WUR;

typedef enum {
    DRV_OK = 0,  /* done: the call succeeded */
    DRV_FAILED,  /* done: it failed for good (reason says why); no retry helps */
    DRV_RETRY,   /* it failed but may work later (timeouts, a busy scheduler): retried */
    DRV_NEXT,    /* run the next step of this call (next = its state) */
} drv_outcome_t;

/* What a finished command meant. Pointers are malloc'd; drv_result_clear frees. */
typedef struct {
    drv_outcome_t outcome;
    char reason[CPN_REASON_MAX]; /* DRV_FAILED / DRV_RETRY: printable, one line */
    char *access;                /* DRV_GRANT ok: access details, a JSON object's text, or NULL */
    char *next;                  /* DRV_NEXT: state for the next step */
    bool present;                /* DRV_STATUS ok: the resource exists and works */
    char (*ids)[CPN_NAME_MAX];   /* DRV_LIST ok: lease ids held */
    size_t n_ids;
    /* DRV_INVENTORY ok: units each package has now (packages not named keep theirs) and
     * leases whose capacity was lost (each becomes a NOTICE, notice branch). */
    size_t n_units;
    struct {
        char package[CPN_NAME_MAX];
        uint32_t units;
    } units[DRV_INVENTORY_MAX];
    char (*lost)[CPN_NAME_MAX];
    size_t n_lost;
} drv_result_t;

void drv_result_clear(drv_result_t *res);
/* Set outcome and a reason (printf format), made printable and one line (never empty). */
void drv_result_set(drv_result_t *res, drv_outcome_t outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The REQUEST's access hints as one JSON object of strings ("{}" for none) into out.
 * CPN_E_TOO_BIG if it does not fit cap. */
int drv_hints_json(const cpn_hints_t *h, char *out, size_t cap) CPN_WUR;

/* Make `s` safe to log and to put in a NACK reason: bytes outside printable ASCII become
 * '?', and it is cut to fit `cap` (with "..." when cut). */
void drv_sanitize(char *s, size_t cap);

/* The finished command as the engine saw it. */
typedef struct {
    bool timed_out;     /* killed at the timeout (status meaningless) */
    bool overflow;      /* stdout or stderr over PROVISION_OUTPUT_MAX: killed */
    bool exited;        /* exited normally: `status` is its exit code */
    int status;         /* exit code, or the signal number if !exited */
    const uint8_t *out; /* stdout (NUL-terminated copy, len bytes) */
    size_t out_len;
    const uint8_t *err; /* stderr, likewise */
    size_t err_len;
} drv_run_t;

typedef struct {
    const char *type;
    /* Check the driver's configuration (its options, the program): CPN_OK or CPN_E_CONFIG
     * with why. Called when the peer config is loaded. */
    int (*check)(const drv_config_t *cfg, char why[CPN_REASON_MAX]);
    /* The command for `call`. CPN_OK, or an error (the call fails with it, no retry). A verb
     * the driver cannot do: CPN_E_INVAL (DRV_INVENTORY is optional). */
    int (*command)(const drv_config_t *cfg, const drv_call_t *call, drv_cmd_t *cmd);
    /* What the finished command means for `call`. Never fails: garbage is a DRV_RETRY or
     * DRV_FAILED with a reason. Timeouts and overflows are handled by the engine first
     * (DRV_RETRY) and never reach here. */
    void (*result)(const drv_config_t *cfg, const drv_call_t *call, const drv_run_t *run,
                   drv_result_t *res);
} drv_ops_t;

/* The driver of a type name, or NULL. */
const drv_ops_t *driver_find(const char *type);

/* The drivers there are (driver.c lists them). */
extern const drv_ops_t driver_exec_ops;
extern const drv_ops_t driver_slurm_ops;

#endif
