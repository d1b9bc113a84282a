/* fuzz_driver.c - libFuzzer target for the exec driver's reading of what the operator's
 * program printed (peer/driver_exec.c): any bytes as its stdout, for every verb, with an exit
 * status and stderr taken from the input too.
 *
 * Whatever the bytes, the result must be one of the outcomes with a printable one-line
 * reason when it is not DRV_OK, access details only for a grant and at most DRV_ACCESS_MAX
 * bytes, lease ids within DRV_LIST_MAX, and drv_result_clear must free all of it.
 *
 *   scripts/fuzz driver 60
 * fuzz-sources: peer/driver.c peer/driver_exec.c
 * fuzz-sources: peer/driver_slurm.c peer/slurm.c peer/slurm_cmd.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    drv_config_t cfg;
    drv_call_t call;
    memset(&cfg, 0, sizeof cfg);
    memset(&call, 0, sizeof call);
    call.verb = (drv_verb_t)(data[0] % DRV__VERBS);
    int status = data[1] % 4;
    /* stdout, then (after the first NUL, if any) stderr */
    const uint8_t *out = data + 2, *nul = memchr(out, 0, size - 2);
    size_t out_len = nul ? (size_t)(nul - out) : size - 2;
    char *o = malloc(out_len + 1), *e = NULL;
    size_t err_len = nul ? size - 2 - out_len - 1 : 0;
    e = malloc(err_len + 1);
    if (!o || !e)
        abort();
    memcpy(o, out, out_len);
    o[out_len] = 0;
    if (err_len)
        memcpy(e, nul + 1, err_len);
    e[err_len] = 0;
    drv_run_t run = {.exited = status != 3,
                     .status = status,
                     .out = (const uint8_t *)o,
                     .out_len = out_len,
                     .err = (const uint8_t *)e,
                     .err_len = err_len};
    drv_result_t res;
    memset(&res, 0, sizeof res);
    driver_exec_ops.result(&cfg, &call, &run, &res);
    if (res.outcome != DRV_OK && res.outcome != DRV_FAILED && res.outcome != DRV_RETRY)
        abort(); /* exec never asks for a next step */
    if (res.outcome != DRV_OK) {
        size_t n = strnlen(res.reason, sizeof res.reason);
        if (n == 0 || n >= sizeof res.reason)
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)res.reason[i] < 0x20 || (unsigned char)res.reason[i] > 0x7e)
                abort();
    }
    if (res.access && (call.verb != DRV_GRANT || strlen(res.access) > DRV_ACCESS_MAX))
        abort();
    if (res.n_ids > DRV_LIST_MAX || res.n_lost > DRV_LIST_MAX || res.n_units > DRV_INVENTORY_MAX)
        abort();
    drv_result_clear(&res);
    free(o);
    free(e);
    return 0;
}
