// Package spool is ingest's write-ahead log of accepted posts: every post
// is on disk before its 201, every batch a worker made of them is on disk
// before a saver sees it, and a record says when that batch is stored. A
// parent that dies, however it dies, finds on the next start exactly the
// posts that no stored batch covers (processed again) and the batches not
// known stored (offered to the sink again, which skips the parts it
// stored): every acknowledged post is counted once.
//
// # Where to read what
//
//	spool.go      Options, Open, the methods, Fault and the errors
//	record.go     the byte layout of segments and records (the format)
//	log.go        segments, writes, group commit, read-back (Next)
//	ledger.go     what is not done yet, and deleting what is
//	positions.go  how far --input files were read; the state file
//	recover.go    recovery at start: damage, resync, quarantine, holes
//	upkeep.go     the directory watch, healing faults, the reserve
//	fs.go         the file system seam (FS), for fault injection
//	lock.go       the data directory's lock
//
// # On disk
//
//	DIR/NNNNNNNNNNNNNNNNNNNN.seg   segments, named by their first record's sequence number
//	DIR/state.json                 the first record kept, and --input positions
//	DIR/RESERVE                    disk kept back for batch records when the disk fills
//	DIR/quarantine/SEG.OFFSET.bad  bytes recovery could not read, as they were
//
// A segment is a header and records (record.go has the layout): posts,
// batches (the posts they cover and their wire frames), done records (a
// batch stored) and hole records (records damage destroyed). Sequence
// numbers grow by one from record to record across segments. A segment is
// created whole under a temporary name and renamed into place; it is
// deleted once all its records are done, oldest first, the state file
// saved before (a start that finds segments wholly before the state
// file's first record finishes their deletion).
//
// # Durability
//
// Accept returns once its posts are written (one pwrite, under the lock)
// and synced (one fdatasync for everything written since the last, outside
// the lock: concurrent requests share it); a Close meanwhile lets that
// sync finish, and its answer says what it did. Next returns a post only
// once it is synced. A batch's callback runs once the batch is synced. A
// done record is written when every part of the batch is acknowledged
// (Stored); the batch and its posts are done once it is synced. Nothing
// the caller gives runs under the spool's lock.
//
// # Faults
//
// A failed write (no space, no permission, an I/O error, a short write) is
// cut back off the segment, so no partial record stays; the post gets a
// *Fault (ErrUnavailable), and from then on posts are refused and batch
// and done records held in memory, in order, until upkeep can write them
// and the disk has room again (checked every WatchEvery). A batch is never
// given to a saver before its record is durable, so a batch the disk
// cannot take waits, and the workers are not fed meanwhile (the caller
// counts held batches as waiting). The same holds when a new segment
// cannot be started (and no record goes into the full segment meanwhile:
// the file the failed start may have left is named for the next record).
// A full disk gives up the reserve for batch and done records, and for
// the state file that must be written before a stored segment is
// deleted; deleting goes on during such a fault: a disk filled with posts
// can always drain.
//
// The spool directory or the active segment removed or replaced, or the
// directory not writable, is noticed within WatchEvery (and a removed
// active segment at the next sync, before anything in it is
// acknowledged): posts are refused while upkeep makes the directory again
// and writes every segment anew from the files the spool holds open, so
// nothing acknowledged is lost even if the parent is killed afterwards.
//
// A failed fdatasync is Sticky: the kernel may have dropped what it could
// not write, so this process trusts the spool no more (posts refused,
// batches told the error, held ones too); the next start recovers what is
// on disk. What the failed sync was to make durable is cut off the
// segment, so that a refused post is not counted by the next start either
// (the cut itself cannot be synced: a crash right after it may leave
// them). A segment that cannot be read back is Sticky too.
//
// # Recovery
//
// Open reads every segment and checks every record (length, CRC-32C,
// kind, sequence number, body). A bad record does not end its segment:
// the scan finds the next intact record (resync) and goes on, so damage
// costs only the records it hit; a record whose length field alone was
// hit (the checksum does not cover it) is mended and kept. Sequence
// numbers missing between records, between segments, or before the first
// segment (the state file says where the spool begins) are reported as
// lost. With Repair (the default) each damage is logged at error level
// before anything changes, the unreadable bytes are copied to the
// quarantine directory (never over an earlier copy), never cut away, and
// each damaged segment is rewritten without them, with a hole record
// standing for the records lost, so that the next start finds nothing
// more; every damage is returned in Recovery.Damage (the caller shows the
// totals in /status and its metrics). With Refuse, Open changes nothing
// and fails with a *CorruptionError. Bytes at the end of the newest
// segment that are not a whole record (zeros, a record whose length runs
// past the end) are a write a crash cut short, which was never
// acknowledged: they are quarantined too and reported as a torn tail,
// which Refuse repairs as well. Records there that were written whole
// (their length fits, their header is recognisable) and then damaged are
// losses, not a torn tail.
//
// What damage can cost: a lost post that a batch in the spool covers is
// counted through that batch; any other lost post is lost, and reported.
// A lost batch record whose done record survives costs nothing; one whose
// done record is lost too means its posts are processed again (counted
// twice if it was stored): reported among the uncertain records. What no
// check can see: a missing oldest segment when the state file is lost as
// well; the newest segment cut at a record boundary, or deleted whole
// (nothing records how far the log went: it reads as records never
// written, and their numbers are used again); several damaged bytes among
// the last records of the newest segment, one of them a length field
// (they can read as a write cut short); and a disk that acknowledges
// syncs it did not do.
package spool
