/* zap.c - the ZeroMQ authentication (ZAP, RFC 27) handler for the broker's CURVE socket.
 *
 * A CURVE server without a ZAP handler admits any client key. This one denies by default
 * and admits a connection only if its CURVE key derives from an Ed25519 key the policy
 * names: a tenant, a listed peer (or any peer under `trusted: any`), a federation member.
 * Messages are still verified one by one afterwards; this keeps strangers off the socket.
 * The admitted CURVE key becomes the connection's User-Id, and intake refuses a frame whose
 * envelope `from` does not derive to it (zap_binds): one admitted key cannot speak as another.
 */
#include <string.h>
#include <sodium.h>
#include <zmq.h>

#include "broker.h"
#include "log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 7 /* version, request id, domain, address, identity, mechanism, key */
#define ZAP_USER_MAX (3 + 2 * 32 + 1) /* "ed:" or "x:", a key in hex */

int zap_open(broker_t *self)
{
    int linger = 0; /* a ZAP reply still queued at shutdown must not hold zmq_ctx_term */
    self->zap = zmq_socket(self->zctx, ZMQ_REP);
    if (!self->zap || zmq_setsockopt(self->zap, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(self->zap, ZAP_ENDPOINT) != 0) {
        log_error("zap", "cannot bind %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        return CPN_E_IO;
    }
    return CPN_OK;
}

/* Is there a key in the policy whose CURVE form is `curve_pk`? *ed gets it (NULL when admitted
 * under `trusted: any`, where no policy key names the client). */
static bool s_admitted(const broker_t *self, const uint8_t curve_pk[32], const char **who,
                       const uint8_t **ed)
{
    const policy_t *pol = self->pol;
    uint8_t c[32];
    *ed = NULL;
#define S_CHECK(list, n, label)                                                                \
    for (size_t i = 0; i < (n); i++)                                                           \
        if (crypto_sign_ed25519_pk_to_curve25519(c, (list)[i].key) == 0 &&                     \
            sodium_memcmp(c, curve_pk, 32) == 0) {                                             \
            *who = (label);                                                                    \
            *ed = (list)[i].key;                                                               \
            return true;                                                                       \
        }
    S_CHECK(pol->tenants, pol->n_tenants, "tenant")
    S_CHECK(pol->federation.members, pol->federation.n_members, "member")
    S_CHECK(pol->peers.trusted, pol->peers.n_trusted, "peer")
#undef S_CHECK
    if (pol->peers.any) {
        *who = "peer (trusted: any)";
        return true;
    }
    return false;
}

void zap_handle(broker_t *self)
{
    zmq_msg_t parts[ZAP_FRAMES];
    int n = 0, more = 1;
    while (more && n < ZAP_FRAMES) {
        zmq_msg_init(&parts[n]);
        if (zmq_msg_recv(&parts[n], self->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&parts[n]);
            break;
        }
        more = zmq_msg_more(&parts[n]);
        n++;
    }
    while (more) { /* more frames than ZAP defines: drain them */
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        if (zmq_msg_recv(&extra, self->zap, ZMQ_DONTWAIT) < 0)
            more = 0;
        else
            more = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
    }
    const char *status = "400", *text = "denied: key not in policy", *who = "";
    const uint8_t *ed = NULL;
    char user[ZAP_USER_MAX] = "";
    if (n == ZAP_FRAMES && zmq_msg_size(&parts[5]) == 5 &&
        memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0 && zmq_msg_size(&parts[6]) == 32 &&
        s_admitted(self, zmq_msg_data(&parts[6]), &who, &ed)) {
        status = "200";
        text = "OK";
        /* The User-Id of every frame on this connection, so intake can check that the
         * envelope's `from` is the key the connection authenticated with: "ed:" and the policy
         * key it matched (a plain compare per frame), or under `trusted: any` "x:" and the
         * CURVE key (a conversion per frame, as costly as a signature check). */
        memcpy(user, ed ? "ed:" : "x:", ed ? 4 : 3);
        sodium_bin2hex(user + strlen(user), sizeof user - strlen(user),
                       ed ? ed : (const uint8_t *)zmq_msg_data(&parts[6]), 32);
        log_debug("zap", "admitted a %s", who);
    }
    if (status[0] != '2') {
        broker_count_refusal(self, CPN_E_UNTRUSTED);
        log_warn("zap", "connection refused: %s", text);
    }
    /* Reply: version, request id, status code, status text, user id, metadata. */
    const void *reqid = n > 1 ? zmq_msg_data(&parts[1]) : "";
    size_t reqid_len = n > 1 ? zmq_msg_size(&parts[1]) : 0;
    zmq_send(self->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(self->zap, reqid, reqid_len, ZMQ_SNDMORE);
    zmq_send(self->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(self->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(self->zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(self->zap, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

bool zap_binds(const char *user_id, const uint8_t ed_pk[CPN_PK_LEN])
{
    uint8_t key[32], mine[32];
    size_t n = 0;
    if (!user_id)
        return true; /* no CURVE on this socket: nothing to bind to */
    bool is_ed = strncmp(user_id, "ed:", 3) == 0, is_x = strncmp(user_id, "x:", 2) == 0;
    const char *hex = user_id + (is_ed ? 3 : 2);
    if ((!is_ed && !is_x) ||
        sodium_hex2bin(key, sizeof key, hex, strlen(hex), NULL, &n, NULL) != 0 ||
        n != sizeof key)
        return false;
    if (is_ed)
        return sodium_memcmp(key, ed_pk, sizeof key) == 0;
    return crypto_sign_ed25519_pk_to_curve25519(mine, ed_pk) == 0 &&
           sodium_memcmp(mine, key, sizeof mine) == 0;
}
