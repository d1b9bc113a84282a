/* page.c - a listing page bounded by bytes (see page.h). */
#include "page.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ARRAY_HEAD_MAX 5 /* msgpack array32 header */

struct page {
    msgpack_sbuffer rows, row;
    msgpack_packer pk; /* packs into row */
    size_t n, budget, max_rows;
    bool more;
    size_t too_big; /* size of a row that fits no page, 0 if none */
    char next[PAGE_CURSOR_MAX];
};

page_t *page_new(size_t budget, size_t max_rows)
{
    page_t *self = max_rows ? calloc(1, sizeof *self) : NULL;
    if (!self)
        return NULL;
    msgpack_sbuffer_init(&self->rows);
    msgpack_sbuffer_init(&self->row);
    msgpack_packer_init(&self->pk, &self->row, msgpack_sbuffer_write);
    self->budget = budget;
    self->max_rows = max_rows;
    return self;
}

void page_destroy(page_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_sbuffer_destroy(&(*self_p)->rows);
    msgpack_sbuffer_destroy(&(*self_p)->row);
    free(*self_p);
    *self_p = NULL;
}

msgpack_packer *page_packer(page_t *self)
{
    return &self->pk;
}

bool page_take(page_t *self, const char *cursor)
{
    size_t len = self->row.size;
    bool fits = !self->more && self->n < self->max_rows &&
                S_ARRAY_HEAD_MAX + self->rows.size + len <= self->budget;
    if (fits) {
        msgpack_sbuffer_write(&self->rows, self->row.data, len);
        self->n++;
        snprintf(self->next, sizeof self->next, "%s", cursor ? cursor : "");
    } else {
        self->more = true;
        if (self->n == 0 && !self->too_big)
            self->too_big = len;
    }
    msgpack_sbuffer_clear(&self->row);
    return fits;
}

size_t page_rows(const page_t *self)
{
    return self->n;
}

bool page_more(const page_t *self)
{
    return self->more;
}

const char *page_next(const page_t *self)
{
    return self->next;
}

int page_error(const page_t *self, char *why, size_t cap)
{
    if (!self->too_big)
        return CPN_OK;
    if (why && cap)
        snprintf(why, cap, "one row (%zu bytes) is larger than a page (%zu bytes)", self->too_big,
                 self->budget);
    return CPN_E_COUNT;
}

void page_finish(const page_t *self, bool bare, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (!bare)
        msgpack_pack_array(&pk, self->n);
    msgpack_sbuffer_write(out, self->rows.data, self->rows.size);
}
