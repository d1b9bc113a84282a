/* hostport.h - the address of a daemon's HTTP listener, "PORT" or "IPV4:PORT" (pure: the
 * parse opens no socket, so config validation can use it). "PORT" alone means 127.0.0.1:
 * the listener is loopback-only unless the operator names another address. */
#ifndef CPN_HOSTPORT_H
#define CPN_HOSTPORT_H

#include <netinet/in.h>

#include "err.h"

#define CPN_HTTP_ADDR_MAX 64 /* bytes of an address spec, NUL included */
#define CPN_HTTP_DEFAULT_HOST "127.0.0.1"

/* Parse "PORT", "IPV4:PORT" or "localhost:PORT" (port 0 .. 65535; 0: any free one). CPN_OK,
 * or CPN_E_INVAL with *why saying what is wrong. */
int cpn_hostport_parse(const char *spec, struct sockaddr_in *out, const char **why) CPN_WUR;

#endif
