/* book_mask.h - the free bitmap of a shape's sorted entries (book.c): bit i is set while entry
 * i has free units, so the matcher skips sold-out runs 64 entries at a time. When an entry
 * enters, leaves or moves within the array, its bit does the same here, a word at a time.
 * Private to book.c. */
#ifndef CPN_BOOK_MASK_H
#define CPN_BOOK_MASK_H

#include <stdbool.h>
#include <stdint.h>

static inline bool book_mask_get(const uint64_t *m, uint32_t i)
{
    return (m[i >> 6] >> (i & 63)) & 1u;
}

static inline void book_mask_set(uint64_t *m, uint32_t i, bool on)
{
    if (on)
        m[i >> 6] |= (uint64_t)1 << (i & 63);
    else
        m[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

/* Bits [pos, n) move up by one; bit pos becomes `on`. The bitmap has room for n + 1 bits. */
static inline void book_mask_insert(uint64_t *m, uint32_t n, uint32_t pos, bool on)
{
    uint32_t w = pos >> 6, last = n >> 6; /* word of the new last bit */
    uint64_t carry = 0;
    for (uint32_t i = w; i <= last; i++) {
        uint64_t v = m[i];
        uint64_t out = v >> 63;
        if (i == w) {
            uint32_t off = pos & 63;
            uint64_t low = off ? (v & (((uint64_t)1 << off) - 1)) : 0;
            uint64_t high = v & ~(off ? (((uint64_t)1 << off) - 1) : 0);
            v = low | (high << 1) | ((uint64_t)(on ? 1 : 0) << off);
        } else {
            v = (v << 1) | carry;
        }
        m[i] = v;
        carry = out;
    }
}

/* Bit pos leaves; bits (pos, n) move down by one; bit n - 1 clears. */
static inline void book_mask_remove(uint64_t *m, uint32_t n, uint32_t pos)
{
    uint32_t w = pos >> 6, last = (n - 1) >> 6;
    for (uint32_t i = w; i <= last; i++) {
        uint64_t v = m[i];
        uint64_t next = (i + 1 <= last) ? (m[i + 1] & 1u) : 0;
        if (i == w) {
            uint32_t off = pos & 63;
            uint64_t lowmask = off ? (((uint64_t)1 << off) - 1) : 0;
            uint64_t low = v & lowmask;
            uint64_t high = (off == 63) ? 0 : ((v >> (off + 1)) << off);
            v = low | high;
        } else {
            v >>= 1;
        }
        m[i] = v | (next << 63);
    }
    book_mask_set(m, n - 1, false);
}

/* Bits [lo, hi] take the value of their neighbour above (from_above) or below; the others
 * stay. A word at a time: a package moved past thousands of entries costs their words. The
 * neighbour read (hi + 1, or lo - 1) must be within the bitmap. */
static inline void book_mask_slide(uint64_t *m, uint32_t lo, uint32_t hi, bool from_above)
{
    uint32_t wlo = lo >> 6, whi = hi >> 6;
    for (uint32_t k = 0; k <= whi - wlo; k++) {
        uint32_t w = from_above ? wlo + k : whi - k;
        uint64_t v = m[w], sh;
        if (from_above)
            sh = (v >> 1) | (w + 1 <= (hi + 1) >> 6 ? (m[w + 1] & 1u) << 63 : 0);
        else
            sh = (v << 1) | (w > 0 && w - 1 >= (lo - 1) >> 6 ? m[w - 1] >> 63 : 0);
        uint32_t a = (lo > w * 64 ? lo : w * 64) - w * 64;
        uint32_t z = (hi < w * 64 + 63 ? hi : w * 64 + 63) - w * 64;
        uint64_t mk = (z == 63 ? ~UINT64_C(0) : (UINT64_C(1) << (z + 1)) - 1) &
                      ~((UINT64_C(1) << a) - 1);
        m[w] = (v & ~mk) | (sh & mk);
    }
}

#endif
