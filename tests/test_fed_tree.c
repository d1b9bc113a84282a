/* test_fed_tree.c - the federation's spanning tree (broker/fed_tree.c, pure): which member a
 * broker takes as its parent, which links a RELAY goes on, and the book fingerprint of HELLO.
 * The same functions drive scripts/bench/fedsim, which measures them on 1,000 brokers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "federation_int.h"

static void s_key(uint8_t k[CPN_PK_LEN], uint8_t first)
{
    memset(k, 0x11, CPN_PK_LEN);
    k[0] = first;
}

/* A member that is up and says it stands at (root, dist) under `parent` (0: none). */
static void s_member(fed_link_t *l, uint8_t key, uint8_t root, uint32_t dist, uint8_t parent)
{
    memset(l, 0, sizeof *l);
    s_key(l->key, key);
    l->up = true;
    l->has_tree = true;
    s_key(l->tree.root, root);
    l->tree.dist = dist;
    if (parent)
        s_key(l->tree.parent, parent);
}

static void test_choose(void **state)
{
    (void)state;
    uint8_t me[CPN_PK_LEN];
    s_key(me, 0x50);
    fed_link_t l[3];
    memset(l, 0, sizeof l);
    fed_tree_t t;
    memset(&t, 0, sizeof t);
    /* alone: our own root */
    assert_true(fed_tree_choose(me, l, 0, 8, &t));
    assert_memory_equal(t.root, me, CPN_PK_LEN);
    assert_int_equal(t.dist, 0);
    assert_false(fed_tree_choose(me, l, 0, 8, &t)); /* unchanged */

    /* the smallest root wins, then the fewest links, then the smallest member key */
    s_member(&l[0], 0x60, 0x10, 3, 0x70); /* root 0x10 at 4 through 0x60 */
    s_member(&l[1], 0x40, 0x10, 1, 0x10); /* root 0x10 at 2 through 0x40 */
    s_member(&l[2], 0x30, 0x20, 0, 0);    /* root 0x20 (itself) at 1 */
    assert_true(fed_tree_choose(me, l, 3, 8, &t));
    uint8_t k[CPN_PK_LEN];
    s_key(k, 0x10);
    assert_memory_equal(t.root, k, CPN_PK_LEN);
    assert_int_equal(t.dist, 2);
    assert_memory_equal(t.parent, l[1].key, CPN_PK_LEN);
    s_member(&l[0], 0x60, 0x10, 1, 0x10); /* a tie at 2: the smaller key, 0x40, stays */
    assert_false(fed_tree_choose(me, l, 3, 8, &t));

    /* a member that took us as its parent is never ours (no loop of two) */
    s_member(&l[1], 0x40, 0x10, 1, 0x50);
    assert_true(fed_tree_choose(me, l, 3, 8, &t));
    assert_memory_equal(t.parent, l[0].key, CPN_PK_LEN);

    /* one at max_dist from its root is not taken: a root that went away is not counted up
     * for ever; nor one that is down or has said nothing */
    s_member(&l[0], 0x60, 0x10, 7, 0x70);
    l[1].up = false;
    assert_true(fed_tree_choose(me, l, 3, 8, &t)); /* 0x60 at 8 links: still fine */
    assert_int_equal(t.dist, 8);
    s_member(&l[0], 0x60, 0x10, 8, 0x70);
    assert_true(fed_tree_choose(me, l, 3, 8, &t));
    assert_memory_equal(t.root, l[2].tree.root, CPN_PK_LEN); /* 0x20 through 0x30 */
    l[2].has_tree = false;
    assert_true(fed_tree_choose(me, l, 3, 8, &t));
    assert_memory_equal(t.root, me, CPN_PK_LEN);
}

static void test_edge(void **state)
{
    (void)state;
    uint8_t me[CPN_PK_LEN];
    s_key(me, 0x50);
    fed_tree_t t;
    memset(&t, 0, sizeof t);
    s_key(t.root, 0x10);
    t.dist = 2;
    s_key(t.parent, 0x40);
    fed_link_t parent, child, other, silent, foreign;
    s_member(&parent, 0x40, 0x10, 1, 0x10);
    s_member(&child, 0x60, 0x10, 3, 0x50);
    s_member(&other, 0x70, 0x10, 2, 0x30);
    s_member(&silent, 0x80, 0x10, 2, 0x30);
    silent.has_tree = false;
    s_member(&foreign, 0x90, 0x05, 4, 0x31); /* another tree (being rebuilt, or max_dist) */
    assert_true(fed_tree_edge(&t, me, &parent));
    assert_true(fed_tree_edge(&t, me, &child));
    assert_false(fed_tree_edge(&t, me, &other)); /* a link off the tree: no copy */
    assert_true(fed_tree_edge(&t, me, &silent));
    assert_true(fed_tree_edge(&t, me, &foreign));
}

static void test_fold(void **state)
{
    (void)state;
    uint8_t a[CPN_PK_LEN], b[CPN_PK_LEN];
    s_key(a, 1);
    s_key(b, 2);
    uint64_t x = fed_tree_fold(fed_tree_fold(7, a, 5), b, 9);
    uint64_t y = fed_tree_fold(fed_tree_fold(7, b, 9), a, 5);
    assert_true(x == y); /* order does not matter */
    assert_true(x != fed_tree_fold(fed_tree_fold(7, b, 9), a, 6)); /* a seq differs */
    assert_true(x != fed_tree_fold(7, a, 5));                      /* an entry missing */
    assert_true(fed_tree_fold(fed_tree_fold(7, a, 5), a, 5) == 7); /* folding is its inverse */
}

/* The digest comparison: on a tree link after FED_DIGEST_MISSES differing HELLOs; off the
 * tree only once they have differed for FED_DIGEST_OFFTREE_MS (the tree repairs first). */
static void test_sync_due(void **state)
{
    (void)state;
    assert_false(fed_tree_sync_due(true, FED_DIGEST_MISSES - 1, 0));
    assert_true(fed_tree_sync_due(true, FED_DIGEST_MISSES, 0));
    assert_false(fed_tree_sync_due(false, FED_DIGEST_MISSES, FED_DIGEST_OFFTREE_MS - 1));
    assert_false(fed_tree_sync_due(false, 1, FED_DIGEST_OFFTREE_MS));
    assert_true(fed_tree_sync_due(false, FED_DIGEST_MISSES, FED_DIGEST_OFFTREE_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_due),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_edge),
        cmocka_unit_test(test_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
