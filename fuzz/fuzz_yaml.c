/* fuzz_yaml.c - libFuzzer target for the YAML resource loader: any bytes go through
 * yconf_load_buffer and, when they parse, through the package and request binders at the
 * root. Nothing may crash, hang or leak; the limits of yconf.h bound the work per input.
 *
 *   scripts/fuzz yaml 60
 */
#include <stddef.h>
#include <stdint.h>

#include "resource.h"
#include "yconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    yconf_t *doc = NULL;
    int r = yconf_load_buffer("fuzz.yaml", (const char *)data, size, &doc);
    if (r == CPN_OK) {
        cpn_package_t p;
        cpn_request_t q;
        static const char *const extra[] = {"floor", NULL};
        const ynode_t *root = yconf_root(doc);
        /* Results are irrelevant here; the error paths are what is being exercised. */
        r = yconf_package(doc, root, "", &p);
        r = yconf_package_ex(doc, root, "packages[0]", &p, extra);
        r = yconf_request(doc, root, "", &q);
        if (r == CPN_OK)
            (void)cpn_package_fits(&p, &q);
        for (size_t i = 0; i < yconf_error_count(doc); i++)
            (void)yconf_error_at(doc, i);
    }
    yconf_destroy(&doc);
    return 0;
}
