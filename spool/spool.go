package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrFull: the spool holds --spool-max bytes; retry once workers
	// and the sink have caught up.
	ErrFull = errors.New("spool full")
	// ErrClosed: the spool takes no more posts (the service is draining).
	ErrClosed = errors.New("spool closed, service is draining")
	// ErrUnavailable: the file system under the spool failed (the error
	// is a *Fault that says how). A Fault that is not Sticky lasts until
	// the spool can write again, which it checks by itself.
	ErrUnavailable = errors.New("spool unavailable")
)

// Fault is a failure of the file system under the spool: a write, the
// start of a segment, or the spool directory itself (removed, replaced,
// not writable). While a fault lasts, posts are refused and batch and
// done records wait in memory; the spool retries by itself and takes
// posts again once it can write. A failed fdatasync is Sticky: the kernel
// may have dropped the data it could not write, so this process never
// trusts the spool again (a restart recovers what is on disk).
type Fault struct {
	Op     string // what failed: "write", "sync", "start a segment", "read back", "directory"
	Path   string // the file or directory
	Err    error  // why
	Sticky bool
}

func (f *Fault) Error() string {
	return fmt.Sprintf("spool: %s %s: %v", f.Op, f.Path, f.Err)
}

func (f *Fault) Unwrap() error { return f.Err }

// opDirectory is the Op of a fault of the spool directory itself (or of a
// segment file in it): removed, replaced, not writable. Only a restore
// (upkeep.go) ends it.
const opDirectory = "directory"

// Is makes every Fault match ErrUnavailable.
func (f *Fault) Is(target error) bool { return target == ErrUnavailable }

// Cause says what went wrong without naming files, for a client: the
// system's words for the error ("no space left on device"), or what the
// spool saw.
func (f *Fault) Cause() string {
	var errno syscall.Errno
	if errors.As(f.Err, &errno) {
		return errno.Error()
	}
	var pe *os.PathError
	if errors.As(f.Err, &pe) {
		return pe.Err.Error()
	}
	return f.Err.Error()
}

// DamagePolicy is what Open does with a spool that damage has cost
// records (a torn tail of the newest segment, which was never
// acknowledged, is not damage in this sense).
type DamagePolicy int

const (
	// Repair moves the unreadable bytes to the quarantine directory,
	// marks the records they held as lost (hole records), reports it
	// all in Recovery.Damage and at error level, and goes on.
	Repair DamagePolicy = iota
	// Refuse changes nothing and fails Open with a *CorruptionError.
	Refuse
)

// Options configure Open.
type Options struct {
	// Dir holds the segment files; created if missing.
	Dir string
	// Sync makes appends durable (fdatasync, shared by concurrent
	// appends) before Accept returns or a batch is handed on; false
	// keeps the records in the page cache only (tests and benchmarks).
	Sync bool
	// MaxBytes bounds the segment files together (--spool-max); posts
	// beyond it are refused with ErrFull. Batch and done records are
	// never refused for room: they only let posts already counted go.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started;
	// 0 means min(64 MiB, MaxBytes/8), at least 64 KiB: well below
	// MaxBytes, since the segment appended to is never deleted, and a
	// spool whose only segment filled MaxBytes could never make room.
	SegmentBytes int64
	// Reserve is the disk kept back, in the file RESERVE, for batch and
	// done records: when the disk is full, the reserve is given up so
	// that a batch can still be recorded and the posts it covers let go
	// (without it, a disk filled by posts could never drain). 0 means
	// min(8 MiB, MaxBytes/16, 1/32 of the file system); negative, none.
	Reserve int64
	// OnDamage is what Open does with damage; the default is Repair.
	OnDamage DamagePolicy
	// WatchEvery is how often the spool checks that its directory and
	// active segment are still there and writable, and retries after a
	// fault; 0 means 250ms.
	WatchEvery time.Duration
	// FS is the file system; nil means OS.
	FS FS
	// Log receives what recovery found and what a fault did.
	Log hclog.Logger
}

// Recovery is what Open found in the spool.
type Recovery struct {
	Segments int   // segment files found
	Bytes    int64 // their size
	// Posts is the number of spooled posts no spooled batch covers: Next
	// returns them again, first.
	Posts int
	// Batches are the spooled batches not known stored, in spool order.
	Batches []Batch
	// Damage is what could not be read: torn tails, damaged records,
	// missing segments. Empty if none.
	Damage []Damage
}

// Batch is a batch recovered from the spool: its parts (wire frames) go to
// a saver again; the sink skips those it stored before the crash.
type Batch struct {
	Seq    uint64
	Parts  [][]byte
	Covers []uint64 // the posts it covers
}

// Stats are the spool's counters and gauges.
type Stats struct {
	Appended uint64 // posts appended in this run
	Syncs    uint64 // fdatasync calls for appends
	Deleted  uint64 // segment files deleted
	Held     int    // batch and done records waiting in memory for the disk
	Faults   uint64 // faults begun in this run (each lasts until healed)
	// Found at start: records lost to damage, how many of them may have
	// been acknowledged posts (not known covered by a batch), and the
	// bytes moved to the quarantine.
	LostRecords    uint64
	UncertainPosts uint64
	Quarantined    int64
}

// Spool is the parent's write-ahead log: posts are appended (Accept,
// Feed) and made durable before they are acknowledged, read back in order
// as workers free up (Next), and forgotten once the batches covering them
// are stored (Stored); batches are appended (AppendBatch) before any saver
// sees them, so that a restart replays exactly the posts no stored batch
// covers. The package documentation says how it is laid out on disk and
// what survives which fault.
//
// All methods are safe for concurrent use, except that Next has one caller
// at a time.
type Spool struct {
	fs         FS
	dir        string
	quarantine string
	sync       bool
	max        int64
	segMax     int64
	reserveMax int64
	log        hclog.Logger

	mu   sync.Mutex
	cond *sync.Cond // any change of the state below broadcasts

	// The log (log.go): segment files, oldest first, the last being the
	// one appended to; sequence numbers written and durable.
	segs     []*segment
	next     uint64   // seq of the next record
	written  uint64   // last seq written
	synced   uint64   // last seq durable (== written without Sync)
	bytes    int64    // size of every segment file
	unread   int64    // bytes of post records Next has not returned
	rotating bool     // a writer is starting the next segment, outside the lock
	syncing  *segment // the segment the sync loop is syncing, outside the lock
	syncDone bool     // the sync loop has ended: no more syncs
	waiters  []waiter // records written, waiting to be durable, by seq
	cur      cursor   // Next's place

	// The ledger (ledger.go): what is not done yet.
	batches map[uint64][]uint64 // spooled batches not yet stored: the posts they cover
	covered seqSet              // recovered posts that a recovered batch covers: Next skips them
	oldest  uint64              // the first seq the spool holds; below it, everything was done

	// Input positions (positions.go).
	pos     map[string]posAt    // latest durable position per source
	pending []posAt             // positions appended, not yet durable
	saved   map[string]Position // positions as in the state file

	err     *Fault // sticky: nothing is written again
	fault   *Fault // lasts until heal clears it
	faultAt time.Time
	refused uint64 // posts refused during the fault
	held    []*heldRecord
	intake  bool // Accept and Feed take posts; CloseIntake ends it
	closed  bool
	calls   []call // AppendBatch callbacks due, run by unlock

	dirID   os.FileInfo // the spool directory as opened (or restored)
	checkAt int         // where checkDir goes on among the older segments
	reserve File        // the RESERVE file, nil while given up
	lost    seqSet      // sequence numbers known lost (hole records)

	delMu      sync.Mutex    // one deleter of segments at a time
	delFailing bool          // deleting a segment failed (logged once); under delMu
	stateMu    sync.Mutex    // one writer of the state file at a time
	stateStale bool          // the state file does not say what it should yet; under stateMu
	kick       chan struct{} // wakes upkeep; buffered 1
	stop       chan struct{} // closed by Close: upkeep ends
	syncer     chan struct{} // closed when the sync loop ends
	upkept     chan struct{} // closed when upkeep ends
	watch      time.Duration
	stats      Stats
}

// call is an AppendBatch callback due.
type call struct {
	fn  func(uint64, error)
	seq uint64
	err error
}

// heldRecord is a batch or done record that could not be written yet.
type heldRecord struct {
	kind      byte
	buf       []byte // header room and body
	crc       uint32 // of the body
	written   func(seq uint64)
	onDurable func(uint64, error) // a batch's: told ErrClosed if never written
}

const (
	reserveFile    = "RESERVE"
	quarantineDir  = "quarantine"
	tmpSuffix      = ".tmp"
	defaultWatch   = 250 * time.Millisecond
	maxReserve     = 8 << 20
	dirPerm        = 0o750
	filePerm       = 0o640
	segmentSuffix  = ".seg"
	quarantineName = "%s.%d.bad" // segment, byte offset
	// checkSegments is how many segments besides the active one each
	// directory check looks at.
	checkSegments = 16
	// minFree is the disk a fault waits for beyond the reserve before
	// posts are taken again.
	minFree = 64 << 10
)

// Open opens the spool in opts.Dir and recovers what it holds (recover.go
// says how). The caller must hold the data directory's Lock and Close the
// spool.
func Open(opts Options) (*Spool, *Recovery, error) {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.FS == nil {
		opts.FS = OS
	}
	if opts.MaxBytes <= 0 {
		return nil, nil, fmt.Errorf("spool: MaxBytes must be positive (got %d)", opts.MaxBytes)
	}
	seg := opts.SegmentBytes
	if seg <= 0 {
		seg = max(min(64<<20, opts.MaxBytes/8), 64<<10)
	}
	watch := opts.WatchEvery
	if watch <= 0 {
		watch = defaultWatch
	}
	s := &Spool{
		fs: opts.FS, dir: filepath.Clean(opts.Dir), sync: opts.Sync, max: opts.MaxBytes, segMax: seg, log: opts.Log,
		intake: true, watch: watch,
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		syncer: make(chan struct{}),
		upkept: make(chan struct{}),
	}
	s.quarantine = filepath.Join(s.dir, quarantineDir)
	s.cond = sync.NewCond(&s.mu)
	s.batches = make(map[uint64][]uint64)
	s.pos = make(map[string]posAt)
	s.saved = make(map[string]Position)
	if err := mkdirDurable(s.fs, s.dir, dirPerm); err != nil {
		return nil, nil, fmt.Errorf("spool: create %s: %w: point --data-dir at a writable directory", s.dir, err)
	}
	var err error
	if s.dirID, err = s.fs.Stat(s.dir); err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	if err := s.loadState(); err != nil {
		return nil, nil, err
	}
	rec, err := s.recover(opts.OnDamage)
	if err != nil {
		s.closeFiles()
		return nil, nil, err
	}
	s.reserveMax = s.reserveSize(opts.Reserve)
	s.keepReserve()
	if s.sync {
		go s.syncLoop()
	} else {
		close(s.syncer)
	}
	go s.upkeep()
	return s, rec, nil
}

// encodePosts lays out post records (headers to be filled by write) and
// their body checksums.
func encodePosts(posts []wire.Post, pos *Position) (buf []byte, offs []int, crcs []uint32) {
	offs = make([]int, len(posts)+1)
	crcs = make([]uint32, len(posts))
	for i := range posts {
		offs[i] = len(buf)
		buf = append(buf, make([]byte, recordHeader)...)
		var tail *Position
		if i == len(posts)-1 {
			tail = pos
		}
		buf = appendPost(buf, &posts[i], tail)
		crcs[i] = crc32.Checksum(buf[offs[i]+recordHeader:], castagnoli)
	}
	offs[len(posts)] = len(buf)
	return buf, offs, crcs
}

// Accept appends posts, all or none, and returns once they are durable
// (with Options.Sync): what the HTTP API does before its 201. It sets each
// post's Spool to its sequence number. It never waits for room: a full
// spool is ErrFull, a fault a *Fault (ErrUnavailable), a draining one
// ErrClosed. A nil error means the posts are on disk and will be
// counted; any other means they will not: a write that failed is cut
// back, and so is what a failed sync could not make durable (that cut
// is the one thing not synced: a crash right after it may still leave
// such posts for the next start to count).
func (s *Spool) Accept(posts []wire.Post) error {
	if len(posts) == 0 {
		return nil
	}
	buf, offs, crcs := encodePosts(posts, nil)
	s.mu.Lock()
	last, err := s.appendPosts(nil, posts, buf, offs, crcs, nil)
	if err != nil {
		s.unlock()
		return err
	}
	if !s.sync {
		s.unlock()
		return nil
	}
	// A fault does not end this wait: the posts are in the spool, so they
	// will be counted, and the answer must not say otherwise. A removed
	// directory is restored, then the sync acknowledges them. Close does
	// not end it either until the sync loop has made its last sync: a
	// post that sync makes durable is counted, so it must be answered so.
	for s.synced < last && s.err == nil && !s.syncDone {
		s.cond.Wait()
	}
	switch {
	case s.synced >= last:
		err = nil // durable is durable, whatever came after
	case s.err != nil:
		err = s.err
	default:
		err = ErrClosed
	}
	s.unlock()
	return err
}

// Feed appends posts read from an input file, pos being the file's
// position after the last of them, for a later run to resume from. It
// waits for room, for Next to catch up to within two segments (so that a
// file is not copied whole into the spool), and for a fault to heal; it
// returns ctx's error if ctx ends first, ErrClosed once intake is closed,
// or a Sticky fault. The posts are not synced one by one: a crash loses
// the last ones read, and a rerun reads them again.
func (s *Spool) Feed(ctx context.Context, posts []wire.Post, pos *Position) error {
	if len(posts) == 0 {
		return nil
	}
	buf, offs, crcs := encodePosts(posts, pos)
	defer s.wakeOnDone(ctx)()
	s.mu.Lock()
	defer s.unlock()
	_, err := s.appendPosts(ctx, posts, buf, offs, crcs, pos)
	return err
}

// appendPosts writes post records once the spool can take them: at once
// (ctx nil) or waiting for room and for faults to heal. s.mu is held.
func (s *Spool) appendPosts(ctx context.Context, posts []wire.Post, buf []byte, offs []int, crcs []uint32, pos *Position) (uint64, error) {
	need := int64(len(buf))
	for {
		s.waitRotation()
		switch {
		case s.err != nil:
			return 0, s.err
		case !s.intake || s.closed:
			return 0, ErrClosed
		}
		var why error
		switch {
		case s.fault != nil:
			why = s.fault
		case len(s.held) > 0: // room that comes back goes to them first
			why = s.heldFault()
		case s.bytes+need > s.max && s.bytes > int64(len(segmentHeader)):
			why = fmt.Errorf("%w: %d bytes spooled, --spool-max %d", ErrFull, s.bytes, s.max)
		case ctx != nil && s.unread > 2*s.segMax:
			why = ErrFull // Next is behind: wait, whatever ctx
		}
		if why == nil {
			last, err := s.write(kindPost, buf, offs, crcs)
			if errors.Is(err, errRotated) {
				continue // s.mu was released: check again
			}
			if err == nil {
				for i := range posts {
					posts[i].Spool = last - uint64(len(posts)-1-i)
				}
				s.unread += need
				s.stats.Appended += uint64(len(posts))
				s.notePosition(last, pos)
				return last, nil
			}
			var f *Fault
			if !errors.As(err, &f) || f.Sticky {
				return 0, err
			}
			why = s.setFault(f)
		}
		if ctx == nil {
			if errors.Is(why, ErrUnavailable) {
				s.refused++
			}
			return 0, why
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		s.cond.Wait()
	}
}

// AppendBatch spools a complete batch: its parts (wire frames, kept as
// they are) and the posts it covers. onDurable is called exactly once:
// with the batch's sequence number (for Stored) once it is on disk (nil
// error), and only then may a saver be given the parts; or, if that can
// no longer happen, with ErrClosed (the spool was closed first) or the
// Sticky fault that ended the spool. If the disk cannot take the batch
// now, the spool holds it in memory and writes it as soon as it can: a
// batch is never stored before it is recorded, or its posts would be
// counted again by the next start. onDurable is never called with the
// spool's lock held, and must not block (nor call Close, which waits for
// the goroutine it may run on); it may run before AppendBatch returns, on
// any goroutine. AppendBatch returns an error only if the
// spool failed for good (a Sticky fault) or is closed: then onDurable is
// never called. Whenever the batch is not made durable, the posts it
// covers stay in the spool for the next start.
func (s *Spool) AppendBatch(covers []uint64, parts [][]byte, onDurable func(seq uint64, err error)) error {
	covers = sortedCovers(covers)
	buf := make([]byte, recordHeader, recordHeader+16+len(covers)*2)
	buf = appendBatch(buf, covers, parts)
	h := &heldRecord{kind: kindBatch, buf: buf, crc: crc32.Checksum(buf[recordHeader:], castagnoli), onDurable: onDurable}
	h.written = func(seq uint64) {
		s.batches[seq] = covers
		s.awaitDurable(seq, func(err error) { s.calls = append(s.calls, call{onDurable, seq, err}) })
	}
	s.mu.Lock()
	defer s.unlock()
	return s.writeOrHold(h)
}

// Stored records that the batch spooled as seq is stored (every part
// acknowledged by a saver): a done record says so in the spool, and once
// it is durable the batch and the posts it covers are done, and a segment
// whose records are all done is deleted, oldest first.
func (s *Spool) Stored(seq uint64) {
	s.mu.Lock()
	defer s.unlock()
	covers, ok := s.batches[seq]
	if !ok || s.closed {
		return
	}
	delete(s.batches, seq)
	buf := make([]byte, recordHeader, recordHeader+16+len(covers)*2)
	buf = appendDone(buf, seq, covers)
	h := &heldRecord{kind: kindDone, buf: buf, crc: crc32.Checksum(buf[recordHeader:], castagnoli)}
	h.written = func(done uint64) {
		s.awaitDurable(done, func(err error) {
			if err == nil {
				s.retire(seq, covers)
			}
		})
	}
	s.writeOrHold(h) // if the spool failed or closed, the next start offers the batch again
}

// CloseIntake stops Accept and Feed (ErrClosed); Next returns what was
// appended, then ok=false. Idempotent.
func (s *Spool) CloseIntake() {
	s.mu.Lock()
	defer s.unlock()
	s.intake = false
	s.cond.Broadcast()
}

// Backlog reports the spool's size in bytes and the posts Next has not
// returned, in bytes of records.
func (s *Spool) Backlog() (bytes, unread int64) {
	s.mu.Lock()
	defer s.unlock()
	return s.bytes, s.unread
}

// Max is Options.MaxBytes.
func (s *Spool) Max() int64 { return s.max }

// Dir is Options.Dir.
func (s *Spool) Dir() string { return s.dir }

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.unlock()
	st := s.stats
	st.Held = len(s.held)
	return st
}

// Err is why the spool does not take posts now: a Sticky fault (for
// good), a fault that lasts, or records waiting for the disk. nil if it
// takes them.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.unlock()
	switch {
	case s.err != nil:
		return s.err
	case s.fault != nil:
		return s.fault
	case len(s.held) > 0:
		return s.heldFault()
	}
	return nil
}

// heldFault describes records waiting for the disk. s.mu is held.
func (s *Spool) heldFault() *Fault {
	return &Fault{Op: "write", Path: s.dir, Err: fmt.Errorf("%d batch records wait for room on the disk", len(s.held))}
}

// Close ends the spool: pending syncs finish, batches waiting for one (or
// held for want of room) are told ErrClosed, Next returns. If every record
// is done, the segments are deleted (and the input positions saved
// first). Idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.unlock()
		return nil
	}
	s.closed = true
	s.intake = false
	s.cond.Broadcast()
	s.unlock()
	close(s.stop)
	<-s.syncer
	<-s.upkept
	s.mu.Lock()
	s.waitRotation() // a writer starting a segment finishes, then sees closed
	s.failWaiters(ErrClosed)
	s.dropHeld(ErrClosed)
	var err error
	allDone := s.err == nil && s.allDone()
	if s.err == nil {
		s.promotePositions(s.synced)
	}
	s.unlock()
	if allDone {
		err = s.removeAll()
	}
	s.mu.Lock()
	s.closeFiles()
	if s.reserve != nil {
		s.reserve.Close()
		s.reserve = nil
	}
	s.unlock()
	return err
}

// unlock releases s.mu and then runs the AppendBatch callbacks that came
// due, so that no caller's code ever runs under the spool's lock.
func (s *Spool) unlock() {
	calls := s.calls
	s.calls = nil
	s.mu.Unlock()
	for _, c := range calls {
		if c.fn != nil {
			c.fn(c.seq, c.err)
		}
	}
}

// wakeOnDone wakes every wait on s.cond when ctx ends, so that a wait can
// notice; the returned stop releases it.
func (s *Spool) wakeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
}

// wake asks upkeep to run now.
func (s *Spool) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
