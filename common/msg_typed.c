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

#define CPN_X_COUNT(fn, e, st) +1
_Static_assert(0 CPN_TYPED_BODIES(CPN_X_COUNT) == CPN_MSG__COUNT - 1,
               "every message type in msg_schema.def needs a row in CPN_TYPED_BODIES");
#undef CPN_X_COUNT

#define CPN_X_DEF(fn, e, st)                                                                       \
    int cpn_##fn##_decode(const cpn_env_t *env, const cpn_limits_t *lim, st *body)                 \
    {                                                                                              \
        return cpn_msg_decode_as(env, CPN_MSG_##e, lim, body, sizeof *body);                       \
    }
CPN_TYPED_BODIES(CPN_X_DEF)
#undef CPN_X_DEF
