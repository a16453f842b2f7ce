// Package sink stores the counts that workers aggregate (wire.Batch) so
// that they can be read back.
//
// Savers call Open once and Apply for every batch part they receive. Apply
// is idempotent per wire.Batch.PartID: a part replayed after a crash is
// recognised and counts once. Three kinds exist (see Kinds): "sqlite", a
// SQLite file that several saver processes may share; "firestore", a Cloud
// Firestore database that many ingest nodes may share; and "none", which
// discards everything (the service's --no_persistence mode). SQLite and
// Firestore also implement Reader, the read path.
//
// # SQLite schema
//
// The SQLite file is a public contract: other tools read it directly. Open
// creates the tables when they are missing, adds the indexes of
// SchemaVersion (a migration, below) and never alters a table.
// The DDL is Schema:
//
//	publications(key TEXT PRIMARY KEY, name TEXT NOT NULL, articles INTEGER NOT NULL)
//	entities(publication TEXT NOT NULL, word TEXT NOT NULL, count INTEGER NOT NULL,
//	         PRIMARY KEY(publication, word))
//	applied_batches(id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)
//	dead_letters(publication, content, error TEXT, attempts, at INTEGER)
//	ingest_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)
//	INDEX entities_by_count ON entities(publication, count DESC, word)
//	INDEX publications_by_articles ON publications(articles DESC, key)
//	INDEX applied_batches_by_time ON applied_batches(applied_at)
//
// publications.key is wire.PubCount.Key (trimmed, lower-cased) and name is
// the first non-empty wire.PubCount.Name seen for it; articles is the sum
// of every applied part's Articles. entities.publication is a
// publications.key and count is the sum of every applied part's count for
// that word. applied_batches holds the PartID of every applied part and
// when it was applied (unix seconds); it is what makes Apply idempotent and
// must not be pruned while a part with that ID could still be replayed:
// rows older than ReplayHorizon are, on open and hourly while applying.
// ingest_meta holds 'schema_version' (SchemaVersion) and 'last_open'.
//
// The indexes make a page of TopEntities or PublicationsPage one range of
// an index, whatever the table's size (ReadPlans shows the plans). A file
// written before them (no schema_version) gains them on open: built inside
// the transaction that opens the file, so an interrupted open changes
// nothing, and logged as "migration: created index NAME over N rows in T"
// only when actually built.
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
//
// # Firestore data model
//
// The layout, which readers of the collections outside ingest (a web app
// reading Firestore directly) depend on:
//
//	publications/{pubID}             key (string), name (string), count (integer: articles)
//	publications/{pubID}/ent/{entID} word (string), count (integer)
//	dead_letters/{id}                publication, content, error (strings), attempts (integer),
//	                                 at (timestamp), truncated (true, only when a field was cut)
//	ingest_batches/{partID}-{n}      batch (string), commit, commits, writes (integers),
//	                                 expire_at (timestamp)
//
// key is wire.PubCount.Key and name the last non-empty wire.PubCount.Name
// stored for it (a commit cannot keep the first without a read). Every
// count is written with an increment, so any number of processes and
// machines may add to the same documents.
//
// pubID is the key made a valid document id by docID: '%', '/', control
// characters and bytes that are not UTF-8 are percent-escaped (%2F); an
// id that would be ".", "..", match __.*__, or be a JavaScript built-in
// name such as "constructor" (the emulator fails on those) has its first
// byte escaped; the empty key is "%"; an id over 1500 bytes keeps its first
// 1434 bytes followed by "%~" and the hex SHA-256 of the key. Distinct keys
// give distinct ids, and ordinary keys are their own id ("the times").
// entID is the first 16 bytes of the word's SHA-256 as 32 hex digits: a
// word has one document wherever and whenever it is written (a
// per-process hash would scatter one word over many). Strings stored in
// fields have invalid UTF-8 replaced by U+FFFD; ids are made from the
// bytes as received.
//
// A batch part is written in WriteBatch commits of at most 500 writes
// (plan): the publications in batch order, each followed by its entities,
// then the dead letters; entries of one key, and a word twice under one
// key, are merged first. Each commit's first write creates its marker
// document ingest_batches/{partID}-{n} (escaped like pubID), which fails
// with AlreadyExists if the commit was applied before: Apply then skips
// it. The split depends only on the batch, so a replay makes the same
// markers. Markers carry expire_at, MarkerTTL after the commit, for a
// Firestore TTL policy on ingest_batches.expire_at to delete them (see
// the README); they must outlive any replay of their batch.
//
// TopEntities' queries need one composite index on Cloud Firestore: the
// ent collection group, count descending then word ascending;
// PublicationsPage's another: the publications collection, count
// descending then key ascending.
package sink
