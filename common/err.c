/* err.c - names and reasons of cpn_err_t codes. */
#include "err.h"

#include <string.h>

typedef struct {
    int code;
    const char *slug;
    const char *reason;
} s_err_entry_t;

static const s_err_entry_t s_errors[] = {
#define CPN_X_ROW(name, val, slug, reason) {(val), (slug), (reason)},
    CPN_ERRORS(CPN_X_ROW)
#undef CPN_X_ROW
};

static const s_err_entry_t *s_find(int code)
{
    for (size_t i = 0; i < sizeof s_errors / sizeof s_errors[0]; i++)
        if (s_errors[i].code == code)
            return &s_errors[i];
    return NULL;
}

const char *cpn_strerror(int code)
{
    const s_err_entry_t *e = s_find(code);
    return e ? e->reason : "unknown error";
}

const char *cpn_errname(int code)
{
    const s_err_entry_t *e = s_find(code);
    return e ? e->slug : "unknown";
}

int cpn_errcode(const char *slug)
{
    for (size_t i = 0; i < sizeof s_errors / sizeof s_errors[0]; i++)
        if (strcmp(s_errors[i].slug, slug) == 0)
            return s_errors[i].code;
    return CPN_E_INVAL;
}
