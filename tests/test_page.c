/* test_page.c - broker/page.c: a listing page bounded by bytes as rows are encoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "page.h"

/* A row that packs to exactly `len` bytes (len >= 3): a str8 of len - 2 bytes. */
static void s_row(page_t *pg, size_t len)
{
    static const char fill[512];
    assert_true(len >= 3 && len - 2 <= sizeof fill && len - 2 >= 32);
    msgpack_pack_str(page_packer(pg), len - 2);
    msgpack_pack_str_body(page_packer(pg), fill, len - 2);
}

static void s_parse(const msgpack_sbuffer *sb, msgpack_unpacked *u)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, sb->data, sb->size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb->size);
}

/* Rows go in while the page with them (array header included) fits the budget; the first
 * that does not ends the page, and the cursor is the last row kept. */
static void test_bounded_by_bytes(void **state)
{
    (void)state;
    page_t *pg = page_new(100, 1000);
    assert_non_null(pg);
    assert_true(page_take((s_row(pg, 34), pg), "a"));
    assert_true(page_take((s_row(pg, 34), pg), "b"));
    assert_false(page_take((s_row(pg, 34), pg), "c")); /* 5 + 102 > 100 */
    assert_false(page_take((s_row(pg, 34), pg), "d")); /* full stays full */
    assert_int_equal(page_rows(pg), 2);
    assert_true(page_more(pg));
    assert_string_equal(page_next(pg), "b");
    assert_int_equal(page_error(pg, NULL, 0), CPN_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    page_finish(pg, false, &sb);
    assert_true(sb.size <= 100);
    msgpack_unpacked u;
    s_parse(&sb, &u);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(u.data.via.array.size, 2);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    page_destroy(&pg);
    assert_null(pg);
    page_destroy(&pg); /* NULL is fine */
}

static void test_row_count_bound(void **state)
{
    (void)state;
    page_t *pg = page_new(10000, 2);
    assert_true(page_take((s_row(pg, 40), pg), "1"));
    assert_true(page_take((s_row(pg, 40), pg), "2"));
    assert_false(page_take((s_row(pg, 40), pg), "3"));
    assert_true(page_more(pg));
    assert_string_equal(page_next(pg), "2");
    page_destroy(&pg);
    assert_null(page_new(100, 0));
}

/* A row alone larger than a page cannot go anywhere: an error with the sizes, not a page
 * that leaves it out. */
static void test_row_too_big(void **state)
{
    (void)state;
    page_t *pg = page_new(100, 10);
    assert_false(page_take((s_row(pg, 200), pg), "big"));
    char why[128];
    assert_int_equal(page_error(pg, why, sizeof why), CPN_E_COUNT);
    assert_non_null(strstr(why, "200 bytes"));
    assert_non_null(strstr(why, "100 bytes"));
    assert_int_equal(page_rows(pg), 0);
    page_destroy(&pg);
}

/* An empty listing is an empty array and no cursor; a bare page is its one object. */
static void test_empty_and_bare(void **state)
{
    (void)state;
    page_t *pg = page_new(100, 10);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    page_finish(pg, false, &sb);
    msgpack_unpacked u;
    s_parse(&sb, &u);
    assert_int_equal(u.data.via.array.size, 0);
    assert_false(page_more(pg));
    assert_string_equal(page_next(pg), "");
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(page_packer(pg), 0);
    assert_true(page_take(pg, ""));
    page_finish(pg, true, &sb);
    s_parse(&sb, &u);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    page_destroy(&pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_by_bytes),
        cmocka_unit_test(test_row_count_bound),
        cmocka_unit_test(test_row_too_big),
        cmocka_unit_test(test_empty_and_bare),
    };
    return cmocka_run_group_tests_name("page", tests, NULL, NULL);
}
