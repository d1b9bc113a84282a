/* msg_typed.c - typed decoders (msg_typed.h). */
#include "msg_typed.h"

#include <string.h>

int cpn_msg_decode_as(const cpn_env_t *env, cpn_msg_type_t type, const cpn_limits_t *lim,
                      void *body, size_t size)
{
    if (!env || !body)
        return CPN_E_INVAL;
    /* Cleared whatever happens, so a refused frame leaves nothing half-filled behind. */
    memset(body, 0, size);
    if (env->type != type)
        return CPN_E_WRONG_TYPE;
    return cpn_msg_decode(env, lim, body);
}

#define CPN_TYPE(e, wire, stem, roles)                                                             \
    int cpn_##stem##_decode(const cpn_env_t *env, const cpn_limits_t *lim, cpn_##stem##_t *body)  \
    {                                                                                              \
        return cpn_msg_decode_as(env, CPN_MSG_##e, lim, body, sizeof *body);                       \
    }
#include "msg_schema.def"
