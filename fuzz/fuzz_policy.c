/* fuzz_policy.c - libFuzzer target for the broker's policy loader (broker/policy.c): any
 * bytes as a policy file, through yconf, the binding tables, the cross-field validation and
 * the lookups. The key files the conf/ policies name exist beside it (files.h).
 *
 * What a loaded policy promises is checked: every tenant, trusted peer and member is found
 * by its key, under the role it was listed with; a policy needs no restart against itself.
 * A refused one has at least one error, naming where.
 *
 *   scripts/fuzz policy 60
 * fuzz-sources: broker/policy.c broker/match.c broker/book.c broker/book_htab.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "policy.h"

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_dir_init();
    s_null = fopen("/dev/null", "w");
    return 0;
}

static void s_check(const policy_t *pol)
{
    for (size_t i = 0; i < pol->n_tenants; i++) {
        const policy_tenant_t *t = policy_tenant(pol, pol->tenants[i].key);
        if (!t || memcmp(t->key, pol->tenants[i].key, CPN_PK_LEN) != 0 ||
            policy_peer_trusted(pol, t->key) != pol->peers.any || policy_member(pol, t->key) ||
            t->priority > POLICY_PRIO_MAX)
            abort();
    }
    for (size_t i = 0; i < pol->peers.n_trusted; i++)
        if (!policy_peer_trusted(pol, pol->peers.trusted[i].key) ||
            policy_peer(pol, pol->peers.trusted[i].key) != &pol->peers.trusted[i] ||
            policy_tenant(pol, pol->peers.trusted[i].key))
            abort();
    for (size_t i = 0; i < pol->federation.n_members; i++) {
        const policy_member_t *m = &pol->federation.members[i];
        if (policy_member(pol, m->key) != m || policy_member_by_name(pol, m->name) != m)
            abort();
    }
    if (policy_restart_needed(pol, pol) != NULL)
        abort();
    (void)policy_priority_name(pol->n_tenants ? pol->tenants[0].priority : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    policy_t *pol = NULL;
    yconf_t *doc = NULL;
    fz_write_input(data, size, path, sizeof path);
    int r = policy_load(path, &pol, &doc);
    if (r == CPN_OK) {
        if (!pol || (doc && yconf_error_count(doc) != 0))
            abort();
        s_check(pol);
    } else if (pol || (r == CPN_E_CONFIG && doc && yconf_error_count(doc) == 0)) {
        abort(); /* refused without saying why */
    }
    if (doc && s_null)
        yconf_print_errors(doc, s_null);
    yconf_destroy(&doc);
    policy_destroy(&pol);
    return 0;
}
