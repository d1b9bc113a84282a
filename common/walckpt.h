/* walckpt.h - checkpoint a SQLite WAL on a thread of its own, off the event loop.
 *
 * In WAL mode SQLite copies the log back into the database (a checkpoint) when the log
 * reaches 1,000 pages, inside the COMMIT that crossed the mark: that COMMIT then writes
 * megabytes and fsyncs the database file. In a daemon with one event loop every message
 * waits for it. In scripts/bench/e2e the broker's ledger grows by ~4 KB a request, so at
 * 1,000 requests/s the loop stalled for a checkpoint about once a second and the p99
 * request-to-lease latency at half of saturation was 31 ms; with the checkpoints moved off
 * the loop it was 9 ms (docs/BENCHMARKS.md).
 *
 * cpn_walckpt_start takes over checkpointing of one connection's main database: after each
 * commit, a log of CPN_WALCKPT_PAGES pages or more wakes a thread that runs a PASSIVE
 * checkpoint on its own connection (PASSIVE never blocks the writer or readers). If the log
 * still reaches CPN_WALCKPT_HARD_PAGES (the thread is starved, or a reader pins the log), the
 * committing connection checkpoints itself, as SQLite would have: a stall, not an unbounded
 * file. Durability is SQLite's either way; only who does the copying changes.
 */
#ifndef CPN_WALCKPT_H
#define CPN_WALCKPT_H

#include <stdint.h>

#include <sqlite3.h>

#include "err.h"

#define CPN_WALCKPT_PAGES 1000       /* log pages that wake the checkpoint thread (~4 MB) */
#define CPN_WALCKPT_HARD_PAGES 16000 /* log pages at which the writer checkpoints itself */

typedef struct cpn_walckpt cpn_walckpt_t;

/* Checkpoint db's main database (a file in WAL mode) on a new thread with its own
 * connection; installs db's WAL hook (replacing SQLite's autocheckpoint). Stop it with
 * cpn_walckpt_stop before closing db. On an error SQLite's autocheckpoint stays in force.
 * Errors: CPN_E_INVAL (NULL, or db's main database is not a file), CPN_E_NOMEM, CPN_E_DB
 * (the second connection could not open), CPN_E_IO (no thread). */
int cpn_walckpt_start(sqlite3 *db, cpn_walckpt_t **out) CPN_WUR;

/* Join the thread, close its connection and give db back SQLite's autocheckpoint, so the
 * last close of db checkpoints as usual. NULL-safe; sets *self_p to NULL. */
void cpn_walckpt_stop(cpn_walckpt_t **self_p);

/* Checkpoints the thread has completed, and those the writer had to do itself. */
uint64_t cpn_walckpt_runs(cpn_walckpt_t *self);
uint64_t cpn_walckpt_inline_runs(cpn_walckpt_t *self);

#endif
