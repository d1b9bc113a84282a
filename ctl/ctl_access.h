/* ctl_access.h - the tenant's side of sealed access details: open a lease file's `access`
 * box (common/seal.h) once the whole chain verified, and read access hints from the
 * command line for a REQUEST.
 */
#ifndef CPN_CTL_ACCESS_H
#define CPN_CTL_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "msg.h"

typedef struct {
    char lease_id[CPN_NAME_MAX];
    char package[CPN_NAME_MAX];
    uint8_t peer[CPN_PK_LEN];
    char text[CPN_ACCESS_MAX + 1]; /* the details, NUL-terminated; "" if the lease has none */
    size_t len;
} ctl_access_t;

/* Open the access details of the lease in `frame` (a lease file: a GRANT, or a LEASE) for
 * tenant `id`. The chain is opened by cpn_chain_open first (every signature and link; the
 * GRANT by `pinned` when not NULL); then the REQUEST must be signed by `id` and the box open
 * with its key. A lease without `access` (a package without a driver) is CPN_OK with len 0.
 * Errors: the opener's codes; CPN_E_SEALED (the lease is another tenant's, or the box does
 * not open with this key: altered or sealed to another); CPN_E_SCHEMA (it opens, but holds
 * no JSON object). `why` says what failed. The caller wipes out->text (ctl_access_wipe). */
int ctl_access_open(const uint8_t *frame, size_t len, const uint8_t *pinned,
                    const cpn_identity_t *id, ctl_access_t *out, char why[CPN_REASON_MAX]) CPN_WUR;

/* Zero the details (they may hold a credential). */
void ctl_access_wipe(ctl_access_t *a);

/* One access hint from the command line into hints: "KEY=VALUE" (--access), or the first line
 * of an OpenSSH public key file as `ssh_key` (--ssh-key). CPN_E_INVAL / CPN_E_TOO_BIG /
 * CPN_E_IO with why set. */
int ctl_access_hint_arg(cpn_hints_t *hints, const char *key_eq_value,
                        char why[CPN_REASON_MAX]) CPN_WUR;
int ctl_access_ssh_key_file(cpn_hints_t *hints, const char *path, char why[CPN_REASON_MAX]) CPN_WUR;

#endif
