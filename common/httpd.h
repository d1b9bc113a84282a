/* httpd.h - a small read-only HTTP server for a daemon's metrics and pages (libmicrohttpd).
 *
 * It runs in libmicrohttpd's own thread, never in the daemon's event loop: the daemon's
 * handler (called in that thread) must not touch the loop's state; it takes a snapshot
 * (snap.h) and renders it. GET and HEAD only (anything else: 405); no request body; at most
 * CPN_HTTP_CONN_MAX connections at once (more are refused by the server), each closed after
 * CPN_HTTP_TIMEOUT_S of silence. The address is "PORT" (on 127.0.0.1: loopback unless the
 * operator names another address) or "IPV4:PORT" (hostport.h); port 0 picks a free one
 * (cpn_http_port).
 * Signals stay with the daemon's thread: the server's thread blocks them all.
 */
#ifndef CPN_HTTPD_H
#define CPN_HTTPD_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hostport.h"

#define CPN_HTTP_CONN_MAX 16      /* connections served at once */
#define CPN_HTTP_TIMEOUT_S 10     /* an idle connection is closed after this */

typedef struct cpn_http cpn_http_t;

/* What a handler answers: status (200, 404, 503...), content type (a static string), body
 * (malloc'd; the server takes it; NULL for none). */
typedef struct {
    unsigned status;
    const char *type;
    char *body;
    size_t len;
} cpn_http_reply_t;

/* Answers sent so far, by status class (a handler gets them: they are written and read in
 * the server's thread only). */
typedef struct {
    uint64_t ok;            /* 2xx */
    uint64_t client_errors; /* 4xx: unknown path, wrong method, a body */
    uint64_t server_errors; /* 5xx: the loop did not answer, out of memory */
} cpn_http_counts_t;

/* Called in the server's thread for each GET/HEAD of `path` (no query string), with the
 * answers sent before this one. */
typedef void (*cpn_http_fn)(void *arg, const char *path, const cpn_http_counts_t *counts,
                            cpn_http_reply_t *out);

/* Bind and start serving. CPN_E_INVAL (address), CPN_E_IO (cannot bind: in use, no
 * permission), CPN_E_NOMEM. The caller owns *out. */
int cpn_http_start(const char *spec, cpn_http_fn fn, void *arg, cpn_http_t **out) CPN_WUR;
/* Stop the thread, close the socket. Accepts NULL. */
void cpn_http_stop(cpn_http_t **self_p);
/* The port bound (useful with port 0). */
uint16_t cpn_http_port(const cpn_http_t *self);


/* A reply of text: status, type, and a malloc'd copy of `text` (503 if out of memory). */
void cpn_http_text(cpn_http_reply_t *out, unsigned status, const char *type, const char *text);

#endif
