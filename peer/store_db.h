/* store_db.h - the store's SQLite handle, for the modules that keep their own tables in the
 * same file (notice_store.c), so their writes join the store's transactions. */
#ifndef PEER_STORE_DB_H
#define PEER_STORE_DB_H

#include <sqlite3.h>

#include "store.h"

/* Borrowed: valid until peer_store_destroy. */
sqlite3 *peer_store_sqlite(peer_store_t *self);

#endif
