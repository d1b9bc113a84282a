/* page.h - one page of a listing answer (STATUS rows), bounded by bytes as rows are encoded.
 *
 * Pure: no sockets, no clock. The caller packs a row with page_packer(), then page_take()
 * keeps it if the page with it still fits in `budget` bytes and `max_rows` rows, and records
 * the row's cursor; the first row that does not fit ends the page (`more`), and the cursor of
 * the last row kept is where the next page starts. A row alone larger than the budget cannot
 * go in any page: page_take() reports it (page_error()) instead of leaving it out silently.
 */
#ifndef CPN_PAGE_H
#define CPN_PAGE_H

#include <stdbool.h>
#include <stddef.h>

#include <msgpack.h>

#include "err.h"

#define PAGE_CURSOR_MAX 256 /* = CPN_CURSOR_MAX: a cursor travels as QUERY `after` */

typedef struct page page_t;

/* A page of at most `budget` bytes of rows (the array header included) and `max_rows` rows
 * (> 0). NULL if out of memory or max_rows is 0. The caller owns it. */
page_t *page_new(size_t budget, size_t max_rows);
void page_destroy(page_t **self_p);

/* Where the next row (one msgpack object) is packed. Owned by the page. */
msgpack_packer *page_packer(page_t *self);

/* Keep the row just packed if it fits, with its cursor (truncated to PAGE_CURSOR_MAX - 1: the
 * caller's cursors are shorter). False when the page is full: the caller stops. */
bool page_take(page_t *self, const char *cursor);

/* Rows kept; whether a row was left out; the cursor of the last row kept ("" if none). */
size_t page_rows(const page_t *self);
bool page_more(const page_t *self);
const char *page_next(const page_t *self);
/* CPN_E_COUNT if a row alone was larger than the budget (why: the sizes), else CPN_OK. */
int page_error(const page_t *self, char *why, size_t cap);

/* The kept rows as one msgpack array appended to `out`; with `bare`, the rows as they are
 * (a page of one map answer: status). */
void page_finish(const page_t *self, bool bare, msgpack_sbuffer *out);

#endif
