/* runner.h - one child process of a driver command, run without blocking the daemon.
 *
 * The child gets the command's bytes on stdin (then EOF) and its stdout and stderr are read
 * into buffers of at most `out_max` bytes each; all three pipes are non-blocking and the
 * daemon polls their descriptors with its sockets (runner_fds). It runs in a process group
 * of its own, so a timeout (runner_kill) kills what the program started too. The peer's
 * file descriptors are not inherited (all are close-on-exec).
 *
 * The process must ignore SIGPIPE (cpn-peer does): a program that exits without reading its
 * stdin makes the write fail with EPIPE, which the runner takes as the end of its input.
 *
 * A runner is done when the child exited and both of its output pipes reached EOF, or it
 * was killed; runner_run then says what happened (driver.h's drv_run_t).
 */
#ifndef PEER_RUNNER_H
#define PEER_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "driver.h"

#define RUNNER_FDS 3 /* descriptors one runner may want polled */

typedef struct peer_runner peer_runner_t;

/* Start cmd (argv and stdin bytes copied). CPN_E_IO with a log line if it cannot (the
 * program missing is not detected here: the child then exits with 127). */
int runner_start(const drv_cmd_t *cmd, size_t out_max, peer_runner_t **out) CPN_WUR;
/* Kill (SIGKILL to its group) if still running, reap, free. Accepts NULL. */
void runner_destroy(peer_runner_t **self_p);

/* The descriptors to poll now and for what (POLLIN/POLLOUT); returns how many (<= RUNNER_FDS). */
size_t runner_fds(const peer_runner_t *self, int fds[RUNNER_FDS], short events[RUNNER_FDS]);
/* Do whatever I/O is possible now, without blocking, and reap the child if it exited. True
 * once the runner is done. */
bool runner_step(peer_runner_t *self);
/* True if the pipes are closed but the child has not been reaped yet (the daemon then polls
 * with a short timeout, RUNNER_REAP_MS). */
bool runner_reaping(const peer_runner_t *self);
#define RUNNER_REAP_MS 10
/* Kill the child's process group now (timeout: `timed_out` says so in the result). */
void runner_kill(peer_runner_t *self, bool timed_out);
/* The finished command (pointers into the runner, valid until runner_destroy). */
void runner_run(const peer_runner_t *self, drv_run_t *run);
pid_t runner_pid(const peer_runner_t *self);

#endif
