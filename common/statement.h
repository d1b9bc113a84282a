/* statement.h - settlement statements between two brokers: their lines, their checks, and
 * the reconciliation of two statements (docs/PROTOCOL.md "STATEMENT").
 *
 * A pure core (no clock, no files, no sockets). A broker's statement with another broker for
 * a month lists, per lease, what the lease's USAGE records ending in the month bill, for the
 * leases of one broker's tenants served by the other's peers, in both directions. Each line
 * has a fixed size, big-endian integers:
 *
 *   offset  size  field
 *        0    32  peer      the lease's peer (the USAGE records' signer)
 *       32    32  lease_id  ASCII, 1..31 bytes, the rest zero
 *       64    32  tenant    the lease's tenant
 *       96     1  dir       0: the signer's tenant, the other broker's peer (the signer owes);
 *                           1: the other's tenant, the signer's peer (due to the signer)
 *       97     4  n_first   the first record of the lease counted (n of USAGE)
 *      101     4  n_last    the last record counted
 *      105     8  amount    the sum of the counted records' `amount`, thousandths
 *      113    32  last      BLAKE2b-256 of record n_last's whole frame (usage.h)
 *
 * Lines are sorted by (peer, lease_id) as byte strings, each lease once. A statement of more
 * than CPN_STMT_PART_LINES lines is sent as several STATEMENT frames (parts), in line order;
 * cpn_stmt_join puts them back together. Two statements of
 * one pair and month reconcile when every lease is in both with the direction mirrored and
 * every other field equal, so the totals agree to the thousandth.
 */
#ifndef CPN_STATEMENT_H
#define CPN_STATEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "msg.h"

#define CPN_STMT_LINE_LEN 145
#define CPN_STMT_ID_MAX 32        /* lease_id field: at most 31 bytes */
#define CPN_STMT_LINES_MAX 100000 /* lines in one statement, all parts (14.5 MB) */
/* Lines in one part: 400 x 145 = 58 000 bytes, so that a part's frame stays within the
 * default limits every receiver applies (64 KiB frames and strings). */
#define CPN_STMT_PART_LINES 400
#define CPN_STMT_PARTS_MAX 250 /* CPN_STMT_LINES_MAX / CPN_STMT_PART_LINES */
#define CPN_STMT_OWE 0
#define CPN_STMT_DUE 1

typedef struct {
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_STMT_ID_MAX];
    uint8_t tenant[CPN_PK_LEN];
    uint8_t dir; /* CPN_STMT_OWE or CPN_STMT_DUE */
    uint32_t n_first, n_last;
    uint64_t amount;
    uint8_t last[CPN_PK_LEN];
} cpn_stmt_line_t;

void cpn_stmt_line_pack(const cpn_stmt_line_t *l, uint8_t out[CPN_STMT_LINE_LEN]);
/* CPN_E_SCHEMA for a line that breaks the format (direction, lease id, n). */
int cpn_stmt_line_unpack(const uint8_t in[CPN_STMT_LINE_LEN], cpn_stmt_line_t *l) CPN_WUR;
/* Order of lines: by peer, then lease_id bytes. */
int cpn_stmt_line_cmp(const cpn_stmt_line_t *a, const cpn_stmt_line_t *b);

/* Fill st's lines, owe and due from `lines` (sorted here, in place): *buf (malloc'd, the
 * caller's) holds the packed lines st->lines points to. st's other fields are the caller's.
 * CPN_E_INVAL for two lines of one lease, a bad line, more than CPN_STMT_LINES_MAX lines or
 * totals beyond 64 bits; CPN_E_NOMEM. */
int cpn_stmt_fill(cpn_statement_t *st, cpn_stmt_line_t *lines, size_t n, uint8_t **buf) CPN_WUR;

/* One part as received: 1 <= part <= parts <= CPN_STMT_PARTS_MAX, at most
 * CPN_STMT_PART_LINES lines, and cpn_stmt_check. */
int cpn_stmt_check_part(const cpn_statement_t *st, char why[CPN_REASON_MAX]) CPN_WUR;

/* Join the n parts of one statement, in their order: each checked (cpn_stmt_check_part),
 * numbered 1..n of n, all of one pair and period; *out gets their lines one after the other
 * (in *buf, malloc'd, the caller's) and the sums of their owe and due, and is checked as a
 * whole (the order runs across parts). CPN_OK, or the first failure with why. */
int cpn_stmt_join(const cpn_statement_t *parts, size_t n, cpn_statement_t *out, uint8_t **buf,
                  char why[CPN_REASON_MAX]) CPN_WUR;

/* A statement (or a joined one) on its own: period "YYYY-MM" with from_ms/to_ms its bounds, lines
 * whole, valid, sorted, each lease once, at most CPN_STMT_LINES_MAX, and owe/due their
 * sums. CPN_OK, or CPN_E_SCHEMA / CPN_E_CHAIN ("inconsistent") with why. */
int cpn_stmt_check(const cpn_statement_t *st, char why[CPN_REASON_MAX]) CPN_WUR;

/* One lease on which two statements differ. */
typedef struct {
    uint8_t peer[CPN_PK_LEN];
    char lease_id[CPN_STMT_ID_MAX];
    char what[96];         /* "only in ours", "amount", "records 1..3 / 1..4", ... */
    uint64_t ours, theirs; /* the amounts (0 where absent) */
} cpn_stmt_diff_t;

/* Reconcile `ours` (signed by us) with `theirs` (signed by them), each checked already
 * (cpn_stmt_check). They must be of one pair (ours->with = them, theirs->with = us) and one
 * period, else CPN_E_CHAIN with why. Then every lease is compared: up to cap
 * differences go to diffs, *n_diffs counts them all. CPN_OK when there are none (the totals
 * then agree: ours->owe = theirs->due, ours->due = theirs->owe), else CPN_E_CHAIN. */
int cpn_stmt_reconcile(const uint8_t us[CPN_PK_LEN], const cpn_statement_t *ours,
                       const uint8_t them[CPN_PK_LEN], const cpn_statement_t *theirs,
                       cpn_stmt_diff_t *diffs, size_t cap, size_t *n_diffs,
                       char why[CPN_REASON_MAX]) CPN_WUR;

#endif
