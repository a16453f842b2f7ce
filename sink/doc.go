// Package sink stores the counts that workers aggregate (wire.Batch) so
// that they can be read back.
//
// Savers call Open once and Apply for every batch part they receive. Apply
// is idempotent per wire.Batch.PartID: a part replayed after a crash is
// recognised and counts once. Two kinds exist (see Kinds): "sqlite", a
// SQLite file that several saver processes may share, and "none", which
// discards everything (the service's --no_persistence mode).
//
// # SQLite schema
//
// The SQLite file is a public contract: other tools read it directly. Open
// creates the tables when they are missing and never alters existing ones.
// The DDL is Schema:
//
//	publications(key TEXT PRIMARY KEY, name TEXT NOT NULL, articles INTEGER NOT NULL)
//	entities(publication TEXT NOT NULL, word TEXT NOT NULL, count INTEGER NOT NULL,
//	         PRIMARY KEY(publication, word))
//	applied_batches(id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)
//
// publications.key is wire.PubCount.Key (trimmed, lower-cased) and name is
// the first non-empty wire.PubCount.Name seen for it; articles is the sum
// of every applied part's Articles. entities.publication is a
// publications.key and count is the sum of every applied part's count for
// that word. applied_batches holds the PartID of every applied part and
// when it was applied (unix seconds); it is what makes Apply idempotent and
// must not be pruned while a part with that ID could still be replayed.
//
// # Several processes, one file
//
// The file is opened in WAL mode, so readers never block the writer. Every
// write transaction starts with BEGIN IMMEDIATE: it takes the write lock up
// front instead of upgrading a read lock mid-transaction, which is what
// lets several processes write the same file without the lock-upgrade
// deadlock that SQLite answers with an immediate SQLITE_BUSY. A writer
// waits for the lock (busy_timeout, 10s) and Apply retries a few times
// more with backoff before it gives up.
package sink
