/* book.h - the offer book: every peer's latest AD, indexed for the matcher.
 *
 * Pure soft state: no sockets, no clock (time comes in as arguments), no SQLite; a restarted
 * broker relearns it from the next ADs. One entry per peer holds the peer's packages (as
 * decoded from its last AD, with `free` lowered by book_take), a verbatim copy of the signed
 * AD frame (for relaying and federation sync), the broker it came through and its hop count.
 * A newer AD (higher seq) replaces all of a peer's packages at once; an older or equal seq
 * changes nothing. The book is bounded: `max_offers` packages in total.
 *
 * Threading: none. Pointers returned by lookups stay valid until the next call that modifies
 * the book (put, withdraw, expire, take, destroy).
 */
#ifndef CPN_BOOK_H
#define CPN_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "msg.h"
#include "resource.h"

typedef struct book book_t;

/* One peer's entry, as the daemon sees it (read-only). */
typedef struct {
    uint8_t key[CPN_PK_LEN]; /* the peer's public key */
    uint8_t via[CPN_PK_LEN]; /* broker the AD came through; all-zero = connected to us */
    uint32_t hops;           /* brokers the AD crossed before reaching us */
    uint64_t seq;            /* seq of the AD (or of the WITHDRAW) in force */
    uint64_t ts_ms;          /* ts of that AD */
    uint64_t expires_ms;     /* ts_ms + ttl_s * 1000 */
    bool withdrawn;          /* WITHDRAWn: kept only to refuse older ADs until expiry */
    char name[CPN_NAME_MAX]; /* the peer's name from its AD */
    const uint8_t *frame;    /* the signed AD frame, verbatim; once withdrawn, the WITHDRAW
                                frame if the book was given one (book_withdraw_from), or NULL */
    size_t frame_len;
    uint32_t n_packages;           /* 0 once withdrawn */
    const cpn_package_t *packages; /* as advertised, `free` lowered by book_take */
} book_peer_t;

typedef struct {
    size_t peers;          /* peers with offers in force (withdrawn ones not counted) */
    size_t packages;       /* packages in the book */
    uint64_t free_units;   /* sum of free over all packages */
    size_t max_offers;     /* the bound */
    uint64_t refused_full; /* ADs refused with CPN_E_BUSY since the book was made */
    uint64_t replaced;     /* ADs that replaced an older AD of the same peer */
    uint64_t expired;      /* peers dropped by book_expire */
    uint64_t expire_visits; /* entries book_expire looked at: O(expired), not O(peers) */
    uint64_t ent_moves;     /* index entries shifted to keep shapes sorted: a re-priced package
                               moves past the entries priced between its old and new price
                               only, an unchanged one none (tests count it) */
    size_t classes;        /* index: groups of offers with the same shape (match.c) */
    size_t shapes;         /* index: distinct hardware shapes within those groups */
} book_stats_t;

/* A book holding at most max_offers packages (> 0). NULL if out of memory or max_offers == 0.
 * The caller owns the book. */
book_t *book_new(size_t max_offers);
void book_destroy(book_t **self_p);

/* Put a peer's AD into the book. `ad` is the decoded body of `frame` (whose signature the caller
 * has verified); the book copies both. `via` is the broker the AD came through (NULL or all-zero:
 * the peer is connected to us directly), `hops` how many brokers it crossed.
 * Replaces the peer's previous packages only if seq is newer than the entry's.
 * Errors: CPN_E_REPLAY (seq not newer; nothing changes), CPN_E_BUSY (the book would exceed
 * max_offers: a new peer, or a known peer growing; counted in refused_full, old entry kept),
 * CPN_E_INVAL (too many packages, empty or duplicate package id, or an invalid package),
 * CPN_E_NOMEM. */
int book_put_ad(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq, uint64_t ts_ms,
                const cpn_ad_t *ad, const uint8_t *frame, size_t len, const uint8_t via[CPN_PK_LEN],
                uint32_t hops) CPN_WUR;

/* A peer's WITHDRAW with sequence `seq`: its packages leave the book; the entry stays as a
 * tombstone (refusing older ADs) until its old expiry. Errors: CPN_E_REPLAY (seq not newer),
 * CPN_E_NO_PACKAGE (peer unknown or already withdrawn). */
int book_withdraw(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq) CPN_WUR;
/* book_withdraw that keeps the signed WITHDRAW `frame` in the tombstone (copied; for sync:
 * a member that missed it gets it again) and records the broker it came through (`via`, NULL
 * or all-zero: the peer itself) and its hops. Also CPN_E_NOMEM. */
int book_withdraw_from(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq,
                       const uint8_t *frame, size_t len, const uint8_t via[CPN_PK_LEN],
                       uint32_t hops) CPN_WUR;

/* A WITHDRAW (seq, signed at ts_ms) of a peer the book does not know: its AD may still be on
 * its way (RELAYs reordered). Keep a tombstone with the frame until expires_ms, so that AD,
 * older than the WITHDRAW, is refused (CPN_E_REPLAY) when it comes. A known peer: as
 * book_withdraw_from. Also CPN_E_BUSY (peer slots, bounded by max_offers, all taken; counted
 * in refused_full), CPN_E_NOMEM. */
int book_withdraw_unknown(book_t *self, const uint8_t peer[CPN_PK_LEN], uint64_t seq,
                          uint64_t ts_ms, uint64_t expires_ms, const uint8_t *frame, size_t len,
                          const uint8_t via[CPN_PK_LEN], uint32_t hops) CPN_WUR;

/* Forget a peer entirely (offers and tombstone), as if the book had never seen it: a federation
 * member that carried its AD went down, so the offer is no longer reachable through it, and the
 * same AD must be accepted again when a member brings it back. CPN_E_NO_PACKAGE if unknown. */
int book_forget(book_t *self, const uint8_t peer[CPN_PK_LEN]) CPN_WUR;

/* Drop every peer whose AD expired (expires_ms <= now_ms). Returns how many peers with offers
 * were dropped (tombstones are dropped silently). */
size_t book_expire(book_t *self, uint64_t now_ms);

/* Tentatively lower a package's free units when a CLAIM goes out (or a LEASE comes back), so
 * the next match does not pick the same units again; the peer's next AD restores the truth. Errors: CPN_E_NO_PACKAGE (no such
 * peer or package), CPN_E_NO_UNITS (fewer than `units` free; nothing changes). */
int book_take(book_t *self, const uint8_t peer[CPN_PK_LEN], const char *package,
              uint32_t units) CPN_WUR;
/* Give back units taken for a CLAIM the peer refused for a reason other than capacity; free
 * never rises above the package's total. Errors: CPN_E_NO_PACKAGE. */
int book_give(book_t *self, const uint8_t peer[CPN_PK_LEN], const char *package,
              uint32_t units) CPN_WUR;

/* The peer's entry, or NULL if the book does not know it. Owned by the book. */
const book_peer_t *book_peer(const book_t *self, const uint8_t peer[CPN_PK_LEN]);

/* Iterate over the peers in the book (withdrawn ones included; check `withdrawn`):
 *   size_t cur = 0; const book_peer_t *p;
 *   while ((p = book_next(book, &cur)) != NULL) ...
 * Order is unspecified; do not modify the book while iterating. */
const book_peer_t *book_next(const book_t *self, size_t *cursor);

void book_stats(const book_t *self, book_stats_t *out);

#endif
