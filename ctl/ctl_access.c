/* ctl_access.c - open sealed access details for the tenant; access hints from flags. */
#include "ctl_access.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "seal.h"

#define CTL_SSH_KEY_FILE_MAX 16384 /* an OpenSSH .pub file: one line, a few KiB at most */

static int s_open(const uint8_t *frame, size_t len, const uint8_t *pinned, const cpn_identity_t *id,
                  cpn_chain_t *ch, ctl_access_t *out, char why[CPN_REASON_MAX])
{
    cpn_chain_opts_t opts = {.broker_pk = pinned};
    int r = cpn_chain_open(frame, len, CPN_MSG_NONE, &opts, ch);
    if (r != CPN_OK) {
        snprintf(why, CPN_REASON_MAX, "%s", ch->why);
        return r;
    }
    if (!ch->has_lease) {
        snprintf(why, CPN_REASON_MAX, "a %s, not a lease", cpn_msg_name(ch->top));
        return CPN_E_WRONG_TYPE;
    }
    snprintf(out->lease_id, sizeof out->lease_id, "%s", ch->lease.lease_id);
    snprintf(out->package, sizeof out->package, "%s", ch->lease.package);
    memcpy(out->peer, ch->lease_env.from, CPN_PK_LEN);
    if (ch->lease.access.len == 0) {
        snprintf(why, CPN_REASON_MAX, "lease %s carries no access details", out->lease_id);
        return CPN_OK;
    }
    if (sodium_memcmp(ch->req_env.from, cpn_identity_pk(id), CPN_PK_LEN) != 0) {
        char mine[CPN_KID_LEN], theirs[CPN_KID_LEN];
        cpn_key_id(cpn_identity_pk(id), mine);
        cpn_key_id(ch->req_env.from, theirs);
        snprintf(why, CPN_REASON_MAX,
                 "lease %s is tenant %s's: its access details are sealed to that key, not to "
                 "%s",
                 out->lease_id, theirs, mine);
        return CPN_E_SEALED;
    }
    r = cpn_seal_open(id, ch->lease.access.ptr, ch->lease.access.len, out->text, sizeof out->text,
                      &out->len);
    if (r == CPN_E_SEALED)
        snprintf(why, CPN_REASON_MAX,
                 "the access details of lease %s do not open with this key (altered, or sealed "
                 "to another key)",
                 out->lease_id);
    else if (r != CPN_OK)
        snprintf(why, CPN_REASON_MAX,
                 "the access details of lease %s are not a JSON object "
                 "(%s)",
                 out->lease_id, cpn_errname(r));
    else
        snprintf(why, CPN_REASON_MAX, "opened");
    return r;
}

int ctl_access_open(const uint8_t *frame, size_t len, const uint8_t *pinned,
                    const cpn_identity_t *id, ctl_access_t *out, char why[CPN_REASON_MAX])
{
    if (!frame || !id || !out || !why)
        return CPN_E_INVAL;
    memset(out, 0, sizeof *out);
    cpn_chain_t *ch = malloc(sizeof *ch); /* large: not on the stack */
    if (!ch) {
        snprintf(why, CPN_REASON_MAX, "out of memory");
        return CPN_E_NOMEM;
    }
    int r = s_open(frame, len, pinned, id, ch, out, why);
    free(ch);
    if (r != CPN_OK)
        ctl_access_wipe(out);
    return r;
}

void ctl_access_wipe(ctl_access_t *a)
{
    if (a) {
        sodium_memzero(a->text, sizeof a->text);
        a->len = 0;
    }
}

int ctl_access_hint_arg(cpn_hints_t *hints, const char *key_eq_value, char why[CPN_REASON_MAX])
{
    const char *eq = key_eq_value ? strchr(key_eq_value, '=') : NULL;
    char key[CPN_HINT_KEY_MAX];
    if (!eq || (size_t)(eq - key_eq_value) >= sizeof key) {
        snprintf(why, CPN_REASON_MAX, "--access %s: expected KEY=VALUE",
                 key_eq_value ? key_eq_value : "");
        return CPN_E_INVAL;
    }
    memcpy(key, key_eq_value, (size_t)(eq - key_eq_value));
    key[eq - key_eq_value] = '\0';
    int r = cpn_hints_set(hints, key, eq + 1);
    if (r == CPN_E_INVAL)
        snprintf(why, CPN_REASON_MAX,
                 "--access %s: KEY is 1-%d characters of a-z, 0-9 and _; VALUE a non-empty line "
                 "of UTF-8 text",
                 key, CPN_HINT_KEY_MAX - 1);
    else if (r != CPN_OK)
        snprintf(why, CPN_REASON_MAX, "--access %s: more than %d hints or %d bytes in all", key,
                 CPN_HINTS_MAX, CPN_HINTS_BYTES);
    return r;
}

int ctl_access_ssh_key_file(cpn_hints_t *hints, const char *path, char why[CPN_REASON_MAX])
{
    char *buf = malloc(CTL_SSH_KEY_FILE_MAX + 1);
    FILE *f = fopen(path, "rb");
    size_t n = 0;
    int r = CPN_OK;
    if (!buf || !f) {
        snprintf(why, CPN_REASON_MAX, "--ssh-key %s: %s", path,
                 buf ? strerror(errno) : "no memory");
        r = buf ? CPN_E_IO : CPN_E_NOMEM;
        goto out;
    }
    n = fread(buf, 1, CTL_SSH_KEY_FILE_MAX + 1, f);
    if (n > CTL_SSH_KEY_FILE_MAX) {
        snprintf(why, CPN_REASON_MAX, "--ssh-key %s: larger than %d bytes", path,
                 CTL_SSH_KEY_FILE_MAX);
        r = CPN_E_TOO_BIG;
        goto out;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0'; /* the key is the first line */
    if ((r = cpn_hints_set(hints, "ssh_key", buf)) != CPN_OK)
        snprintf(why, CPN_REASON_MAX,
                 "--ssh-key %s: the first line is not one line of text of at most %d bytes", path,
                 CPN_HINTS_BYTES - 10);
out:
    if (f)
        fclose(f);
    free(buf);
    return r;
}
