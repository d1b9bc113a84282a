/* hostport.c - "PORT" or "IPV4:PORT". */
#include "hostport.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cpn_hostport_parse(const char *spec, struct sockaddr_in *out, const char **why)
{
    char host[CPN_HTTP_ADDR_MAX];
    const char *colon = spec ? strrchr(spec, ':') : NULL, *port = colon ? colon + 1 : spec;
    unsigned long p = 0;
    char *end = NULL;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    *why = NULL;
    if (!spec || !*spec || strlen(spec) >= sizeof host) {
        *why = "expected PORT or IPV4:PORT";
        return CPN_E_INVAL;
    }
    if (*port >= '0' && *port <= '9')
        p = strtoul(port, &end, 10);
    if (!end || *end || p > 65535) {
        *why = "the port is not a number from 0 to 65535";
        return CPN_E_INVAL;
    }
    out->sin_port = htons((uint16_t)p);
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - spec) : 0, spec);
    if (!colon || strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "%s", CPN_HTTP_DEFAULT_HOST);
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1) {
        *why = "the address is not an IPv4 address (or localhost)";
        return CPN_E_INVAL;
    }
    return CPN_OK;
}
