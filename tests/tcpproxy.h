/* tcpproxy.h - a fault-injecting TCP proxy for the link tests, in a thread of the test.
 *
 * It listens on 127.0.0.1 (a free port) and forwards every connection it accepts, byte for
 * byte, to 127.0.0.1:target. On command it corrupts the stream of its newest connection in one
 * direction: it flips one bit of the next chunk that passes, writes given bytes into it
 * between two chunks (an oversize ZMTP frame, say), or mutes it (bytes are read and dropped,
 * the connection stays open: a silent other side). Every connection it accepted, every fault
 * it made, is counted, so that a test can wait for the event instead of sleeping.
 */
#ifndef CPN_TESTS_TCPPROXY_H
#define CPN_TESTS_TCPPROXY_H

#include <stddef.h>
#include <stdint.h>

typedef struct tcpproxy tcpproxy_t;

typedef enum {
    TCPPROXY_TO_SERVER, /* what the connecting side (a DEALER) sends */
    TCPPROXY_TO_CLIENT  /* what the listening side (a ROUTER) sends back */
} tcpproxy_dir_t;

/* Start a proxy to 127.0.0.1:target_port; NULL if it cannot listen or start its thread. */
tcpproxy_t *tcpproxy_new(int target_port);
/* Stop the thread, close every connection. Accepts NULL; clears *self_p. */
void tcpproxy_destroy(tcpproxy_t **self_p);
/* The port it listens on (127.0.0.1). */
int tcpproxy_port(const tcpproxy_t *self);

/* Flip the lowest bit of the last byte of the next chunk going `dir` on the newest connection
 * (with CURVE that byte is inside a MESSAGE's ciphertext, so the frame fails to decrypt). */
void tcpproxy_flip(tcpproxy_t *self, tcpproxy_dir_t dir);
/* Write `len` bytes (copied) into the `dir` stream of the newest connection, between two
 * chunks, as soon as the proxy thread sees the command. */
void tcpproxy_inject(tcpproxy_t *self, tcpproxy_dir_t dir, const uint8_t *bytes, size_t len);

/* From now on drop everything going `dir` on the connection accepted last (later
 * connections pass as usual). Each chunk dropped counts as a fault. */
void tcpproxy_mute(tcpproxy_t *self, tcpproxy_dir_t dir);

/* Counters: connections accepted, faults made (flips done, injections written, chunks
 * dropped by a mute). */
uint64_t tcpproxy_accepted(tcpproxy_t *self);
uint64_t tcpproxy_faults(tcpproxy_t *self);

/* A ZMTP 3 long frame header announcing a body of `body` bytes, followed by that body (zeros):
 * what a sender of one oversize frame puts on the wire. *out malloc'd, caller frees. */
void tcpproxy_zmtp_frame(uint64_t body, uint8_t **out, size_t *len);

#endif
