/* replay.h - per-sender replay guard with bounded memory.
 *
 * A message from sender K with (seq, ts) is accepted when:
 *   |ts - now| <= skew_ms                         else CPN_E_TS_SKEW
 *   seq <= (ts + skew_ms) << 12                   else CPN_E_SEQ_JUMP
 *   seq >  the last seq accepted from K           else CPN_E_REPLAY
 * The second rule bounds how far a stolen key can push K's seq: at most skew_ms of clock
 * into the future, which the owner's own clock-derived seq (cpn_seq_next) overtakes within
 * skew_ms. The table holds at most `capacity` senders. When full, an entry idle for more
 * than 2 * skew_ms is evicted (every message it guarded is outside the window by then);
 * if none is, the new sender is refused with CPN_E_REPLAY_FULL and nothing changes.
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

cpn_replay_t *cpn_replay_new(size_t capacity, uint64_t skew_ms);
void cpn_replay_destroy(cpn_replay_t **self_p);

/* Check and, if accepted, record. Call only after the signature verified. */
int cpn_replay_check(cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                     uint64_t ts_ms, uint64_t now_ms) CPN_WUR;
/* Check without recording (for a caller that may still refuse the message). */
int cpn_replay_peek(const cpn_replay_t *self, const uint8_t from[CPN_PK_LEN], uint64_t seq,
                    uint64_t ts_ms, uint64_t now_ms) CPN_WUR;
size_t cpn_replay_size(const cpn_replay_t *self);

#endif
