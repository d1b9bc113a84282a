/* daemon.h - the cpn-peer daemon: one thread, one zmq_poll loop, timers.
 *
 * It connects one link (link.h: a DEALER that comes back after anything, with backoff from
 * PEER_RECONNECT_MS to PEER_RECONNECT_MAX_MS; a fresh socket after an oversize or corrupted
 * frame, which libzmq does not redial; heartbeats so a broker that vanished without closing
 * the connection is noticed) to each configured broker, says HELLO and sends an AD on
 * every (re)connection, re-advertises every `refresh` and whenever free capacity changed
 * (at most one AD per PEER_AD_COALESCE_MS), decides CLAIM/RENEW/RELEASE in batches of up
 * to PEER_BATCH_MAX with one commit each (lease.h), and expires leases at their end time
 * whether or not any broker is reachable, revokes the leases of drained packages and sends
 * and re-sends their NOTICEs (notice.h). On stop it sends WITHDRAW to every broker.
 */
#ifndef PEER_DAEMON_H
#define PEER_DAEMON_H

#include <signal.h>

#include "peer_config.h"

#define PEER_RECONNECT_MS 100
#define PEER_RECONNECT_MAX_MS 5000
#define PEER_HEARTBEAT_MS 5000          /* ZeroMQ PING on a quiet broker link */
#define PEER_HEARTBEAT_TIMEOUT_MS 15000 /* no traffic for this long: reconnect; and a link not
                                           up for this long gets a fresh socket */
#define PEER_POLL_MAX_MS 1000           /* the loop wakes at least this often */
#define PEER_WITHDRAW_LINGER_MS 500     /* how long shutdown waits to deliver WITHDRAWs */

typedef struct peer_daemon peer_daemon_t;

/* Load the identity, open the store, expire leases that ended while the peer was down,
 * recount free units, connect to the brokers. Takes *cfg_p. */
int peer_daemon_new(peer_config_t **cfg_p, peer_daemon_t **out) CPN_WUR;
/* Run until *stop becomes non-zero (a signal handler sets it); then WITHDRAW. *wake (may be
 * NULL) non-zero: read the drains table now (SIGUSR1 from cpn-peer --drain); it is cleared. */
int peer_daemon_run(peer_daemon_t *self, volatile sig_atomic_t *stop,
                    volatile sig_atomic_t *wake) CPN_WUR;
void peer_daemon_destroy(peer_daemon_t **self_p);

#endif
