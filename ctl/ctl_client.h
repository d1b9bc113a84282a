/* ctl_client.h - cpnctl's connection to a broker: send one signed message, then read the
 * broker's signed answers until the caller is satisfied or the deadline passes. */
#ifndef CPN_CTL_CLIENT_H
#define CPN_CTL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "envelope.h"
#include "transport.h"

typedef struct ctl_client ctl_client_t;

/* Connect to `endpoint`. With broker_pk set, CURVE is used (unless plain) and every answer
 * must be signed by that key. Keys are borrowed and must outlive the client. */
int ctl_client_new(const char *endpoint, const cpn_identity_t *id, const uint8_t *broker_pk,
                   bool plain, ctl_client_t **out) CPN_WUR;
void ctl_client_destroy(ctl_client_t **self_p);

/* Build, sign and send a message of `type`. *seq_out (may be NULL) gets its seq. */
int ctl_client_send(ctl_client_t *self, cpn_msg_type_t type, const void *body,
                    uint64_t *seq_out) CPN_WUR;
/* Send an already-signed frame as it is. */
int ctl_client_send_frame(ctl_client_t *self, const uint8_t *frame, size_t len) CPN_WUR;

/* Wait up to until_mono_ms for one verified answer. *frame malloc'd (caller frees); env
 * points into it. CPN_E_TIMEOUT if nothing came. */
int ctl_client_recv(ctl_client_t *self, uint64_t until_mono_ms, uint8_t **frame, size_t *len,
                    cpn_env_t *env) CPN_WUR;

/* The client's signer, for building frames to keep (RENEW, RELEASE). */
cpn_signer_t *ctl_client_signer(ctl_client_t *self);

#endif
