/* ctl_bill.h - a tenant's bill, checked offline: USAGE records re-verified and re-added.
 *
 * A bill file ("records file", docs/PROTOCOL.md "Bills") is a sequence of signed frames, each
 * preceded by its length as a 4-byte big-endian integer: the USAGE records of the leases
 * billed, and optionally each lease's GRANT or LEASE frame. Loading one checks everything a
 * bill claims, with nothing but the bytes:
 *   - every frame's signature (envelope, then type, then signature, then body);
 *   - every lease's records form one chain from record 1 (usage.h): no record missing,
 *     altered, repeated or priced other than the rule says;
 *   - all records of a lease are signed by one key, and when the file holds the lease's
 *     GRANT/LEASE, that key is the peer that granted it and the records' tenant, package,
 *     units, price and start are the lease's.
 * The amounts are then summed per lease, per package and in all, in integer thousandths.
 */
#ifndef CPN_CTL_BILL_H
#define CPN_CTL_BILL_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "msg.h"

#define CTL_BILL_FRAMES_MAX 1000000u /* frames in one bill file: more is CPN_E_TOO_BIG */

typedef struct ctl_bill ctl_bill_t;

typedef enum { CTL_BILL_TEXT, CTL_BILL_JSON, CTL_BILL_CSV } ctl_bill_fmt_t;

/* Load and check a bill file (buf is not kept). Amounts are those of the records whose period
 * ends in (from_ms, to_ms] (to_ms 0: no upper bound); every record is checked whatever its
 * period. *out is the caller's (ctl_bill_destroy) on CPN_OK; on an error, why names the frame
 * (its index from 0) and what failed. Errors: CPN_E_MSGPACK (a truncated length or frame),
 * CPN_E_TOO_BIG, envelope and body codes, CPN_E_SIG, CPN_E_WRONG_TYPE (a frame that is no
 * USAGE, GRANT or LEASE), CPN_E_CHAIN, CPN_E_UNTRUSTED (records signed by another key than
 * the lease's peer), CPN_E_NOMEM. */
int ctl_bill_load(const uint8_t *buf, size_t len, uint64_t from_ms, uint64_t to_ms,
                  ctl_bill_t **out, char why[CPN_REASON_MAX]) CPN_WUR;
void ctl_bill_destroy(ctl_bill_t **self_p);

/* Totals in thousandths; counts. */
uint64_t ctl_bill_total(const ctl_bill_t *self);
size_t ctl_bill_leases(const ctl_bill_t *self);
size_t ctl_bill_records(const ctl_bill_t *self);
/* Leases whose last record is not final (still running, or their tail is not in the file). */
size_t ctl_bill_open_leases(const ctl_bill_t *self);

/* Print per lease and per package, then the total. */
void ctl_bill_print(const ctl_bill_t *self, ctl_bill_fmt_t fmt, FILE *out);

/* Append one frame to a bill file being built in memory (*buf malloc'd / grown, caller owns).
 * CPN_E_TOO_BIG for a frame over 4 GiB, CPN_E_NOMEM. */
int ctl_bill_append(uint8_t **buf, size_t *len, const uint8_t *frame, size_t frame_len) CPN_WUR;

/* `cpnctl verify` of a USAGE frame: its signature and its pricing (cpn_usage_check); prints
 * the record as one JSON line to out (may be NULL). CPN_OK or the error, with why. */
int ctl_bill_verify_record(const uint8_t *frame, size_t len, FILE *out,
                           char why[CPN_REASON_MAX]) CPN_WUR;

#endif
