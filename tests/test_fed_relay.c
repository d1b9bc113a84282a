/* test_fed_relay.c - the pure rules of RELAY (broker/fed_relay.c): what a RELAY may carry and
 * how many hops it may say it crossed, how far an offer goes on, and when a relayed copy of a
 * peer's offer is shadowed by the peer's own connection (against a real book).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "book.h"
#include "federation_int.h"

#define NOW 1000000u

static const uint8_t s_frame[] = {0x92, 0xc4, 0x03, 'a', 'b', 'c', 0xc4, 0x00};

static void test_admit(void **state)
{
    (void)state;
    assert_int_equal(fed_relay_admit(CPN_MSG_AD, 1, 8), CPN_OK);
    assert_int_equal(fed_relay_admit(CPN_MSG_WITHDRAW, 8, 8), CPN_OK);
    assert_int_equal(fed_relay_admit(CPN_MSG_AD, 0, 8), CPN_E_INVAL); /* from no broker */
    assert_int_equal(fed_relay_admit(CPN_MSG_AD, 9, 8), CPN_E_INVAL);
    assert_int_equal(fed_relay_admit(CPN_MSG_AD, UINT32_MAX, 8), CPN_E_INVAL);
    /* only a peer's offers travel in a RELAY; the type is refused before the hops */
    static const cpn_msg_type_t others[] = {CPN_MSG_REQUEST, CPN_MSG_CLAIM,   CPN_MSG_LEASE,
                                            CPN_MSG_RELAY,   CPN_MSG_FORWARD, CPN_MSG_SYNC};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_int_equal(fed_relay_admit(others[i], 1, 8), CPN_E_TYPE);
        assert_int_equal(fed_relay_admit(others[i], 0, 8), CPN_E_TYPE);
    }
}

static void test_goes_on(void **state)
{
    (void)state;
    assert_true(fed_relay_goes_on(0, 1)); /* our own peer's AD: to our members */
    assert_false(fed_relay_goes_on(1, 1));
    assert_true(fed_relay_goes_on(7, 8));
    assert_false(fed_relay_goes_on(8, 8));
    assert_false(fed_relay_goes_on(0, 0));
    assert_false(fed_relay_goes_on(UINT32_MAX, 8)); /* hops + 1 would wrap to 0 */
}

static void s_put(book_t *b, const uint8_t k[CPN_PK_LEN], uint64_t seq, const uint8_t *via,
                  uint32_t hops)
{
    cpn_package_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "cpu");
    snprintf(p.region, sizeof p.region, "cn-east");
    p.cores = 8;
    p.mem_bytes = 8ull << 30;
    p.price = 1000;
    p.total = p.free = 2;
    cpn_ad_t ad;
    memset(&ad, 0, sizeof ad);
    snprintf(ad.name, sizeof ad.name, "p");
    ad.ttl_s = 60;
    ad.n_packages = 1;
    ad.packages = &p;
    assert_int_equal(book_put_ad(b, k, seq, NOW, &ad, s_frame, sizeof s_frame, via, hops), CPN_OK);
}

static void test_shadowed(void **state)
{
    (void)state;
    uint8_t direct[CPN_PK_LEN], relayed[CPN_PK_LEN], member[CPN_PK_LEN];
    memset(direct, 1, sizeof direct);
    memset(relayed, 2, sizeof relayed);
    memset(member, 3, sizeof member);
    book_t *b = book_new(100);
    assert_non_null(b);
    assert_false(fed_relay_shadowed(NULL, NOW, false)); /* a peer we do not know */
    s_put(b, direct, 5, NULL, 0);
    s_put(b, relayed, 5, member, 1);
    const book_peer_t *d = book_peer(b, direct), *r = book_peer(b, relayed);
    assert_non_null(d);
    assert_non_null(r);
    assert_true(fed_relay_shadowed(d, NOW, true));
    assert_false(fed_relay_shadowed(d, NOW, false));        /* its connection is gone */
    assert_false(fed_relay_shadowed(d, NOW + 60000, true)); /* its own AD expired */
    assert_false(fed_relay_shadowed(r, NOW, true));         /* came relayed itself */
    assert_int_equal(book_withdraw(b, direct, 6), CPN_OK);
    assert_false(fed_relay_shadowed(book_peer(b, direct), NOW, true));
    book_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_goes_on),
        cmocka_unit_test(test_shadowed),
    };
    return cmocka_run_group_tests_name("fed_relay", tests, NULL, NULL);
}
