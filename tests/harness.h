/* harness.h - what the daemon integration tests (test_broker, test_federation and the others)
 * share: starting and stopping real cpn-broker / cpn-peer processes (one, or a federation of
 * them), a free port on 127.0.0.1, the temporary directory, the policies and peer configs they
 * run with, and waiting on a ctl_client connection for the answer to one message among the
 * other frames that arrive there (progress notes, stale answers), for a broker to come up, or
 * for an offer to reach its book.
 *
 * The helpers assert with cmocka where a failure means the test itself is broken (a path too
 * long, fork failing); what a daemon does is returned for the test to assert on.
 */
#ifndef CPN_TESTS_HARNESS_H
#define CPN_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

#include "ctl_client.h"
#include "envelope.h"
#include "identity.h"
#include "msg.h"

/* ---- processes ---- */

/* Start `bin_dir`/`prog` with --config `cfg`, its stdout and stderr appended to `log`. The child
 * gets SIGKILL should the test die first (PR_SET_PDEATHSIG). Returns its pid. */
pid_t h_spawn(const char *bin_dir, const char *prog, const char *cfg, const char *log);

/* Run `bin_dir`/argv[0] (a program of the build) with argv to its end, its stdout and stderr into
 * out (NUL-terminated; what does not fit in cap is read and dropped, so the child never blocks
 * on a write). A child still running after `ms` gets SIGKILL, as it does should the test die
 * first. Returns its exit status; -1 if a signal ended it (also that SIGKILL). */
int h_run(const char *bin_dir, const char *const *argv, char *out, size_t cap, uint64_t ms);

/* Still running? A child that exited is reaped here and *pid_p becomes -1, so that no signal
 * goes later to a pid the system may have given to another process. */
bool h_alive(pid_t *pid_p);

/* SIGCONT (in case it was stopped), SIGTERM, up to `wait_ms` for it to exit, then SIGKILL.
 * *pid_p becomes 0. True if it exited by itself with status 0 (a sanitizer's report makes the
 * status non-zero), or if *pid_p was 0 (never started, or already stopped); false for -1 (it
 * had exited by itself before: h_alive saw it). */
bool h_stop(pid_t *pid_p, uint64_t wait_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (callers retry with another if a daemon
 * cannot bind it), or -1. `zctx` is the ZeroMQ context to use; NULL: a private one. */
int h_free_port(void *zctx);

/* Remove a temporary directory: flat, files only (keys, configs, logs, SQLite files). */
void h_rm_dir(const char *dir);

/* The group setup's first step: `bin` becomes $CPN_BUILDDIR (or "."), where the daemons were
 * built, and `dir` a fresh directory $TMPDIR/cpn-test-`tag`.XXXXXX (TMPDIR default /tmp).
 * Returns 0, or -1 with dir "" if it cannot be made. */
int h_dirs(char *bin, size_t bin_cap, char *dir, size_t dir_cap, const char *tag);

/* Write `text` to the file `name` in `dir` (replacing it). */
void h_write(const char *dir, const char *name, const char *text);

/* A fresh identity saved as `dir`/`name` (.key and .pub, see identity.h); *id takes it. */
void h_keygen(const char *dir, const char *name, cpn_identity_t **id);

/* The group teardown's last step: keep `dir` (and say so) if the run was not clean or
 * CPN_TEST_KEEP=1, for its configs and logs; else remove it. Nothing if dir is "". */
void h_dir_done(const char *dir, bool clean);

/* A unit test's SQLite database: a fresh directory as h_dirs makes it (`tag`), and in db the
 * path of the database file `name` there (not created). Returns 0, or -1 with dir "" if the
 * directory cannot be made. The teardown's h_dir_done removes the database with the rest. */
int h_db_dir(char *dir, size_t dir_cap, char *db, size_t db_cap, const char *tag, const char *name);

/* Remove the SQLite database `path` with its -wal and -shm files, for a test that wants a fresh
 * one; a file that is not there is no error. */
void h_db_remove(const char *path);

/* `dir`/`name` into out (asserts that it fits). */
void h_path(char *out, size_t cap, const char *dir, const char *name);
/* The whole of a file of the source tree ($CPN_SRCDIR, else ".": rel like
 * "docs/PROTOCOL.md"), NUL-terminated, malloc'd; NULL (and a line on stderr) if unreadable. */
char *h_read_src(const char *rel);

/* h_spawn of `prog` with the config `dir`/`name`.yaml, logging to `dir`/`name`.log. */
pid_t h_start(const char *bin_dir, const char *dir, const char *prog, const char *name);

/* ---- configs ---- */

/* Lists of names in these configs are one string, the names separated by spaces ("pa pb"); each
 * name's key file is NAME.pub in the test directory. */

/* A member of a broker's federation: its name, where to reach it, its key file. */
typedef struct {
    const char *name;
    const char *endpoint;
    const char *key; /* NULL: `name`.pub */
} h_member_t;

#define H_MEMBERS_MAX 8

/* A broker's policy (docs/POLICY.md) as the integration tests write it. A NULL string or a zero
 * leaves out the line it stands for, unless a default is named. Fields in the file's order. */
typedef struct {
    const char *file;        /* in the test directory; NULL: `name`.yaml */
    const char *name;        /* broker.name */
    const char *key;         /* broker.key; NULL: `name`.key */
    const char *listen;      /* broker.listen */
    const char *ledger;      /* broker.ledger; NULL: `name`-ledger.db */
    const char *broker_more; /* more lines of broker:, as they are ("  http: 8080\n") */
    bool curve;              /* broker.transport.curve */
    int hello_s;             /* federation.hello_timeout in s (only with members) */
    const char *fed_more;    /* more lines of federation:, as they are ("  max_hops: 8\n") */
    h_member_t members[H_MEMBERS_MAX]; /* up to the first without a name; none: no federation */
    const char *peers;       /* peers.trusted, names; NULL: any */
    const char *operators;   /* tenants with operator: true, names */
    const char *tenants;     /* the other tenants, names */
    const char *tenants_more; /* more entries of tenants: after those, as they are */
    const char *limits;      /* the lines of limits:, as they are ("  claim_timeout: 3s\n") */
    const char *more;        /* more top-level sections, as they are */
} h_policy_t;

/* Write the policy `p` into `dir`. */
void h_write_policy(const char *dir, const h_policy_t *p);

/* A peer's config (docs/PEER.md) as the integration tests write it; NULL and zero as above. */
typedef struct {
    const char *file;       /* in the test directory; NULL: `name`.yaml */
    const char *name;       /* name */
    const char *key;        /* NULL: `name`.key */
    const char *database;   /* NULL: `name`.db */
    const char *region;     /* NULL: cn-east */
    const char *refresh;    /* NULL: the peer's default */
    const char *max_lease;  /* e.g. "7d" */
    const char *more;       /* more top-level lines before brokers:, as they are */
    const char *broker;     /* the endpoint of its one broker */
    const char *broker_name; /* that broker's key: `broker_name`.pub */
    bool curve;             /* brokers[0].curve */
    const char *packages;   /* the lines of packages:, as they are (h_package writes them) */
    const char *tail;       /* more sections after packages (provision:), as they are */
} h_peer_conf_t;

/* Write the peer config `p` into `dir`. */
void h_write_peer_conf(const char *dir, const h_peer_conf_t *p);

/* Append to buf the package entry of a peer config: `count` units of `id`, each `cores` cores
 * and `memory` (such as "32GiB"), at `price` (such as "2.0"). */
void h_package(char *buf, size_t cap, const char *id, unsigned count, const char *price,
               unsigned cores, const char *memory);

/* One integer from a SQLite file, opened read only (a daemon may have it open in WAL mode):
 * the first column of the first row of `sql`, `arg` bound to ?1 if not NULL; -1 if it cannot
 * be read. */
int64_t h_db_int(const char *path, const char *sql, const char *arg);

/* Wait up to `ms` until h_db_int(path, sql, arg) gives `want` (asked every 100 ms). */
bool h_wait_db(const char *path, const char *sql, const char *arg, int64_t want, uint64_t ms);

/* ---- answers ---- */

/* One answer of a broker, kept with the frame it points into; h_ans_free releases it. */
typedef struct {
    cpn_msg_type_t type; /* CPN_MSG_NONE: no answer in time */
    uint8_t *frame;
    size_t len;
    cpn_env_t env;
    int32_t code; /* NACK, ERROR */
    char reason[CPN_REASON_MAX];
    msgpack_zone zone; /* STATUS: data parsed into obj */
    bool has_zone;
    msgpack_object obj;
} h_ans_t;

/* Free what `a` holds and zero it (a zeroed h_ans_t may be freed again). */
void h_ans_free(h_ans_t *a);

/* The default limits with frames, strings and totals 16 times larger: answers such as the
 * `offers` STATUS may be large. */
cpn_limits_t h_big_limits(void);

/* Is the frame in `a` (a->env opened) the answer to message `seq`: a GRANT for request `id`
 * (never if `id` is NULL), a NACK or ERROR naming `seq`, a STATUS `what` (never if NULL)? Fills
 * a's code and reason (NACK, ERROR) or parses the STATUS data into a->obj. */
bool h_match(h_ans_t *a, uint64_t seq, const char *id, const char *what);

/* Wait on `cli` for the answers to n messages (seq[i], id[i], what[i] as for h_match), in
 * whatever order they come; anything else is skipped. ans[i].type is CPN_MSG_NONE for an answer
 * that did not come within `ms`. The caller frees each ans[i]. */
void h_await_n(ctl_client_t *cli, size_t n, const uint64_t *seq, const char *const *id,
               const char *const *what, uint64_t ms, h_ans_t *ans);

/* h_await_n for one message; returns a->type. */
cpn_msg_type_t h_await(ctl_client_t *cli, uint64_t seq, const char *id, const char *what,
                       uint64_t ms, h_ans_t *a);

/* Send a QUERY `what` on `cli` and wait up to `ms` for its STATUS (a->obj); returns a->type. */
cpn_msg_type_t h_query(ctl_client_t *cli, const char *what, uint64_t ms, h_ans_t *a);

/* Wait up to `ms` until the daemon *pid_p answers a status QUERY on `cli`; false as soon as it
 * has exited (h_alive) or when `ms` pass. */
bool h_wait_up(pid_t *pid_p, ctl_client_t *cli, uint64_t ms);

/* Start cpn-broker (in `bin_dir`) with the policy `cfg`, logging to `log`, into *pid_p; connect
 * *cli to `endpoint` as `as` (broker_pk and plain as for ctl_client_new); wait up to `ms` until
 * it answers (h_wait_up). False if the connection cannot be made, the broker exited or did not
 * answer in time (the caller stops it: h_stop). */
bool h_start_broker(const char *bin_dir, const char *cfg, const char *log, pid_t *pid_p,
                    const char *endpoint, cpn_identity_t *as, const uint8_t *broker_pk,
                    bool plain, ctl_client_t **cli, uint64_t ms);

/* One of the brokers a test starts together (h_brokers_start), named in its policy. */
typedef struct {
    const char *name;  /* key files `name`.key/.pub, config `name`.yaml, log `name`.log */
    cpn_identity_t *id; /* made by the test (h_keygen) */
    int port;
    char endpoint[64]; /* tcp://127.0.0.1:port */
    pid_t pid;
    ctl_client_t *cli; /* the test's connection, plain */
} h_broker_t;

/* Start the n brokers b[]: give each a free port (h_free_port(zctx)) and its endpoint; then for
 * each, write_policy(i) writes `name`.yaml into `dir`, the broker is started (h_start) and the
 * test connects to it as `as`; then wait up to `ms` for each to answer (h_wait_up). If one does
 * not (most likely someone took a port), stop them all and try again with other ports, `tries`
 * times in all. True if all are up. */
bool h_brokers_start(h_broker_t *b, size_t n, const char *bin_dir, const char *dir, void *zctx,
                     void (*write_policy)(int i), cpn_identity_t *as, int tries, uint64_t ms);

/* For each of the n brokers: close the connection, h_stop it (up to `ms`), free its identity.
 * True if each exited cleanly (h_stop). */
bool h_brokers_stop(h_broker_t *b, size_t n, uint64_t ms);

/* Free units of the peer `peer` in the broker's `offers` (the sum over its packages is not
 * made: the last row of that peer counts, as a peer of these tests sells one package); -1 if
 * not listed, -2 if no STATUS came within `ms`. */
long h_offer_free(ctl_client_t *cli, const char *peer, uint64_t ms);

/* Wait up to `ms` until h_offer_free(peer) is within [lo, hi] (asked every 100 ms; each ask
 * waits up to `ask_ms`). */
bool h_wait_free(ctl_client_t *cli, const char *peer, long lo, long hi, uint64_t ask_ms,
                 uint64_t ms);

/* Is the package `pkg` in the broker's `offers` (false if no STATUS came within `ms`)? */
bool h_listed(ctl_client_t *cli, const char *pkg, uint64_t ms);

/* Wait up to `ms` until h_listed(pkg) (asked every 100 ms; each ask waits up to `ask_ms`). */
bool h_wait_listed(ctl_client_t *cli, const char *pkg, uint64_t ask_ms, uint64_t ms);

/* A tenant of a broker's policy: its name (key files `name`.key/.pub), identity, connection. */
typedef struct {
    const char *name;
    cpn_identity_t *id;
    ctl_client_t *cli;
} h_tenant_t;

/* Connect each of the n tenants to `endpoint` (see ctl_client_new for broker_pk and plain). */
void h_tenants_open(h_tenant_t *t, size_t n, const char *endpoint, const uint8_t *broker_pk,
                    bool plain);

/* Close the n tenants' connections (those open; the identities stay). */
void h_tenants_close(h_tenant_t *t, size_t n);

/* ---- HTTP ---- */

#define H_HTTP_MAX (1u << 20) /* bytes of an HTTP answer read; the rest is dropped */

/* An HTTP answer: the status, the Content-Type (empty if none), the body after the headers. */
typedef struct {
    unsigned status;
    char type[128];
    char *body; /* malloc'd, NUL-terminated */
    size_t len;
} h_http_t;

/* `method` http://127.0.0.1:port/path as HTTP/1.0 with `body` (NULL: none), reading the answer
 * to its end (at most H_HTTP_MAX bytes, 10 s without a byte ends it). False if no answer with
 * a status line and headers came; out is then empty. The caller frees it (h_http_free). */
bool h_http(const char *method, int port, const char *path, const char *body, h_http_t *out);

/* Free what `h` holds and zero it (a zeroed h_http_t may be freed again). */
void h_http_free(h_http_t *h);

/* ---- msgpack ---- */

/* The value of `key` in a msgpack map, or NULL (also when `map` is NULL or not a map). */
const msgpack_object *h_get(const msgpack_object *map, const char *key);

/* Is `o` the string `s`? False for NULL and for anything not a string. */
bool h_str_is(const msgpack_object *o, const char *s);

/* `o` as an unsigned integer; 0 for NULL and for anything else. */
uint64_t h_u64(const msgpack_object *o);

#endif
