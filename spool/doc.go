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
// saved before.
//
// # Durability
//
// Accept returns once its posts are written (one pwrite, under the lock)
// and synced (one fdatasync for everything written since the last, outside
// the lock: concurrent requests share it). A batch's callback runs once
// the batch is synced. A done record is written when every part of the
// batch is acknowledged; the batch and its posts are done once it is
// synced. Nothing the caller gives runs under the spool's lock.
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
// cannot be started. A full disk gives up the reserve for batch and done
// records first: a disk filled with posts can always drain.
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
// batches told the error); the next start recovers what is on disk.
//
// # Recovery
//
// Open reads every segment and checks every record (length, CRC-32C,
// kind, sequence number, body). A bad record does not end its segment:
// the scan finds the next intact record (resync) and goes on, so damage
// costs only the records it hit. Sequence numbers missing between records,
// between segments, or before the first segment (the state file says where
// the spool begins) are reported as lost. With Repair (the default) the
// unreadable bytes are copied to the quarantine directory, never cut away,
// and each damaged segment is rewritten without them, with a hole record
// standing for the records lost; each damage is logged at error level and
// returned in Recovery.Damage (the caller shows the totals in /status and
// its metrics). With Refuse, Open changes nothing and fails with a
// *CorruptionError. Bytes at the end of the newest segment that are not a
// whole record are a write a crash cut short, which was never
// acknowledged: they are quarantined too and reported as a torn tail.
//
// What damage can cost: a lost post that a batch in the spool covers is
// counted through that batch; any other lost post is lost, and reported.
// A lost batch record whose done record survives costs nothing; one whose
// done record is lost too means its posts are processed again (counted
// twice if it was stored): reported among the uncertain records. What no
// check can see: a missing oldest segment when the state file is lost as
// well, and a disk that acknowledges syncs it did not do.
package spool
