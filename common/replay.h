/* replay.h - per-sender replay guard with bounded memory.
 *
 * A message from sender K with (seq, ts) is accepted when:
 *   |ts - now| <= skew_ms                         else CPN_E_TS_SKEW
 *   seq <= (ts + skew_ms) << 12                   else CPN_E_SEQ_JUMP
 *   seq is inside K's window and not yet seen     else CPN_E_REPLAY
 * K's window is the CPN_REPLAY_WINDOW highest seqs accepted from K (the highest, `top`, and
 * the CPN_REPLAY_WINDOW - 1 below it that came out of order). A seq above `top` is always
 * inside; one below `top` is inside unless the window is full and the seq is below all of
 * it, or it lies more than UINT32_MAX below `top` (the window stores 32-bit distances:
 * 2^32 seqs are 2^20 ms, about 17.5 minutes of clock). A seq that leaves the window (the
 * lowest, when a new one enters a full window) can never come back: everything at or below
 * it is refused from then on. So every message is accepted at most once, and any number of
 * clients sharing K's key are all accepted as long as fewer than CPN_REPLAY_WINDOW messages
 * with a higher seq from K arrive before a given one. Why a window of seen seqs and not a
 * bitmap of seq values: clock-derived seqs (cpn_seq_next) are 4096 apart per millisecond, so a
 * bitmap covering 1 s of clock spread would cost 512 KiB per sender; 64 stored distances
 * cover any spread up to the window's count. (Nothing else is kept: below a full window,
 * seqs are refused by the first condition; one that left a window that is no longer full left
 * it by being more than UINT32_MAX below `top`, and `top` only rises.)
 *
 * The second rule bounds how far a stolen key can push K's seq: at most skew_ms of clock
 * into the future, which the owner's own clock-derived seq (cpn_seq_next) overtakes within
 * skew_ms. The table holds at most `capacity` senders (CPN_REPLAY_ENTRY_BYTES each, plus 8
 * bytes of index). When full, an entry idle for more than 2 * skew_ms is evicted (every
 * message it guarded is outside the skew window by then); if none is, the new sender is
 * refused with CPN_E_REPLAY_FULL and nothing changes.
 */
#ifndef CPN_REPLAY_H
#define CPN_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"

typedef struct cpn_replay cpn_replay_t;

#define CPN_REPLAY_DEFAULT_CAPACITY 65536
#define CPN_REPLAY_DEFAULT_SKEW_MS 30000
/* Seqs remembered per sender: enough for 64 messages of one key to overtake each other in
 * flight (at 1,000 messages/s of one key: 63 ms of clock spread plus transit jitter between
 * its clients; at 100/s: 630 ms). 312 bytes per sender: 19.5 MiB at 65,536 senders. */
#define CPN_REPLAY_WINDOW 64
#define CPN_REPLAY_ENTRY_BYTES 312 /* sizeof one table entry (checked by test_replay) */

cpn_replay_t *cpn_replay_new(size_t capacity, uint64_t skew_ms);
void cpn_replay_destroy(cpn_replay_t **self_p);

/* Check and, if accepted, record. Call only after the signature verified. */
int cpn_replay_check(cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                     uint64_t ts_ms, uint64_t now_ms) CPN_WUR;
/* Check without recording (for a caller that may still refuse the message). */
int cpn_replay_peek(const cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                    uint64_t ts_ms, uint64_t now_ms) CPN_WUR;
size_t cpn_replay_size(const cpn_replay_t *self);
/* Bytes of one sender's entry (for the documentation's memory figure and its test). */
size_t cpn_replay_entry_bytes(void);

#endif
