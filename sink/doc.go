// Package sink stores the counts that workers aggregate (wire.Batch) so
// that they can be read back.
//
// Savers call Open once and Apply (or ApplyReport, which says what it
// did) for every batch part they receive. Apply is idempotent per
// wire.Batch.PartID: a part replayed after a crash is recognised and
// counts once. Within a part, each keyed entry (wire.Batch.Keyed, and a
// dead letter with a Key) counts iff its key was never applied, by any
// part of any batch on any node, within the key TTL (Config.KeyTTL): a
// message a broker redelivers in a batch cut differently counts once. Three kinds exist (see Kinds): "sqlite", a
// SQLite file that several saver processes may share; "firestore", a Cloud
// Firestore database that many ingest nodes may share; and "none", which
// discards everything. SQLite and Firestore also implement Reader, the
// read path.
//
// # Data models
//
// What each store holds, table by table and document by document, is
// written once, for the people and tools that read it, in docs/storage.md
// at the repository root (a test there keeps its copy of the DDL equal to
// Schema). The SQLite tables and columns are a public contract: other
// tools read the file. In this package's terms: a publication's key is
// wire.PubCount.Key and its name a wire.PubCount.Name (SQLite keeps the
// first non-empty one, Firestore the last: a commit cannot keep the first
// without a read); its articles are the sum of every applied part's
// Articles, and an entity's count the sum of every applied part's count
// for that word. What makes Apply idempotent is the PartID of every
// applied part, kept in applied_batches (SQLite) or as the marker
// documents of its commits (Firestore). Those must outlive any replay of
// their part, and are forgotten after ReplayHorizon and MarkerTTL. The
// keys of keyed entries counted are kept in applied_keys (SQLite) or as
// ingest_keys marker documents (Firestore), written with their counts,
// and forgotten after the key TTL: a key that comes again later counts
// again.
//
// # SQLite
//
// Open creates the tables of Schema when they are missing, adds the
// indexes of SchemaVersion (a migration, below) and never alters a table.
// Apply stores a part in one transaction that first records its PartID in
// applied_batches, then inserts each keyed entry's key into applied_keys
// (ON CONFLICT DO NOTHING) and counts the entries whose row it inserted
// with the part's aggregate. applied_batches rows older than
// ReplayHorizon, and applied_keys rows older than the key TTL, are pruned
// on open and hourly while applying.
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
// # Firestore
//
// Every count is written with an increment, so any number of processes and
// machines may add to the same documents. Document ids are made by docID
// (a publication's key, escaped into a valid id, injectively) and entID (a
// word's SHA-256 prefix: one document per word wherever and whenever it is
// written); strings stored in fields have invalid UTF-8 replaced by
// U+FFFD, while ids are made from the bytes before that replacement.
//
// A batch part is written in WriteBatch commits of at most 500 writes
// (plan): keyed units first, each whole in one commit with its marker
// ingest_keys/{keyMarkerID} (a keyed post, or a chunk of one of more than
// maxUnitDocs documents), those of one publication together; then the
// unkeyed publications in batch order, each followed by its entities, and
// the dead letters; entries of one key, and a word twice under one key,
// are merged first, and a commit writes each document once. A commit
// creates its keyed units' markers, then its own marker document
// ingest_batches/{partID}-{n} (escaped like pubID), then its documents.
// Creating a marker that exists fails the whole commit with AlreadyExists:
// Apply then reads the commit's markers (resolve): its own marker present
// means the commit was applied before, and is skipped; a key marker
// present means that key was counted before, and the commit is sent
// again without it. The split depends only on the batch, so a replay
// makes the same markers and the same units in each commit. Markers
// carry expire_at, MarkerTTL (key markers: the key TTL) after the commit,
// for Firestore TTL policies on ingest_batches.expire_at and
// ingest_keys.expire_at to delete them (the commands are in
// docs/storage.md); they must outlive any replay of their batch, and any
// redelivery of their message.
//
// TopEntities' queries need one composite index on Cloud Firestore: the
// ent collection group, count descending then word ascending;
// PublicationsPage's another: the publications collection, count
// descending then key ascending (docs/storage.md gives the commands).
package sink
