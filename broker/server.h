/* server.h - the broker daemon as main() sees it: make, run, stop, reload. */
#ifndef CPN_SERVER_H
#define CPN_SERVER_H

#include "err.h"

typedef struct broker broker_t;

/* Load the policy, the identity and the ledger, bind the ROUTER. Errors are logged (policy
 * errors with file:line:col). The caller owns *out. */
int server_new(const char *policy_path, broker_t **out) CPN_WUR;
void server_destroy(broker_t **self_p);
/* Run the event loop until server_request_stop. */
int server_run(broker_t *self) CPN_WUR;
/* Async-signal-safe: set flags the loop reads. */
void server_request_stop(broker_t *self);
void server_request_reload(broker_t *self);

#endif
