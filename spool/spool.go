package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ingest-dev/ingest/wire"
)

// Sentinel errors of Append. Match them with errors.Is.
var (
	// ErrFull: the spool holds --spool-max bytes; retry once workers
	// and the sink have caught up.
	ErrFull = errors.New("spool full")
	// ErrClosed: the spool takes no more posts (the service is draining).
	ErrClosed = errors.New("spool closed, service is draining")
)

// Options configure Open.
type Options struct {
	// Dir holds the segment files; created if missing.
	Dir string
	// Sync makes appends durable (fdatasync, shared by concurrent
	// appends) before Append returns or a batch is handed on; false
	// keeps the records in the page cache only (--durability none is
	// not spooled at all; tests and benchmarks use this).
	Sync bool
	// MaxBytes bounds the segment files together (--spool-max); posts
	// beyond it are refused with ErrFull. Batches are never refused:
	// they replace posts already counted.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started;
	// 0 means min(64 MiB, MaxBytes/8), at least 64 KiB: well below
	// MaxBytes, since the segment appended to is never deleted, and a
	// spool whose only segment filled MaxBytes could never make room.
	SegmentBytes int64
	// Log receives what recovery found and what a failure did.
	Log hclog.Logger
}

// Position is how far an input file was read: Rows rows (invalid ones
// included), ending at byte Offset of its text; the last of them started
// at LastAt and hashes to Hash, which tells the file from another under
// the same name. Source names the file.
type Position struct {
	Source string `json:"source"`
	Rows   int64  `json:"rows"`
	Offset int64  `json:"offset"`
	LastAt int64  `json:"last_row_at"`
	Hash   uint64 `json:"last_row_hash"`
}

// Batch is a batch recovered from the spool: its parts (wire frames) go to
// a saver again; the sink skips those it stored before the crash.
type Batch struct {
	Seq    uint64
	Parts  [][]byte
	Covers []uint64 // the posts it covers
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
	// Damage says what was cut off: a record cut short by a crash, or
	// bytes that fail their checksum. Empty if none.
	Damage []string
}

// Spool is the parent's write-ahead log: posts are appended (Append) and
// made durable before they are acknowledged, read back in order as
// workers free up (Next), and forgotten once the batches covering them are
// stored (Stored); batches are appended (AppendBatch) before any saver sees
// them, so that a restart replays exactly the posts no stored batch covers.
//
// All methods are safe for concurrent use, except that Next has one caller
// at a time.
type Spool struct {
	dir    string
	sync   bool
	max    int64
	segMax int64
	log    hclog.Logger

	mu   sync.Mutex
	cond *sync.Cond // written, synced, pending, closing: every change broadcasts

	segs    []*segment // oldest first; the last is the one appended to
	next    uint64     // seq of the next record
	written uint64     // last seq written
	synced  uint64     // last seq durable (== written without Sync)
	bytes   int64      // size of every segment file
	unread  int64      // bytes of post records Next has not returned
	err     error      // a write or sync failed: appends refuse from then on
	intake  bool       // Append accepts posts; CloseIntake ends it
	closed  bool

	waiters []waiter               // AppendBatch callbacks, by seq
	batches map[uint64]*batchState // spooled batches not yet stored
	covered map[uint64]struct{}    // recovered posts a recovered batch covers: Next skips them
	oldest  uint64                 // first seq of the oldest segment at start
	syncing *segment               // the segment whose file the sync loop syncs, outside the lock
	pos     map[string]posAt       // latest durable position per source
	pending []posAt                // positions appended, not yet durable
	saved   map[string]Position    // positions as in the positions file
	cur     cursor                 // Next's place
	syncer  chan struct{}          // closed when the sync loop ends
	stats   Stats
}

// Stats are the spool's counters.
type Stats struct {
	Appended uint64 // posts appended in this run
	Syncs    uint64 // fdatasync calls for appends
	Deleted  uint64 // segment files deleted
}

type segment struct {
	first   uint64 // seq of its first record (or the next one, if empty)
	path    string
	size    int64
	synced  int64 // bytes durable (readable by Next)
	pending int   // records not done: posts not covered by a stored batch, batches not stored
	f       *os.File
}

type batchState struct {
	covers []uint64
}

type waiter struct {
	seq uint64
	fn  func(uint64, error)
}

type posAt struct {
	seq uint64
	pos Position
}

type cursor struct {
	seg *segment
	off int64
	f   *os.File
	buf []byte
}

const positionsFile = "positions.json"

// Open opens the spool in opts.Dir, reading every segment: a record cut
// short or failing its checksum ends what is read of its segment and is
// cut off (reported in Recovery.Damage and logged). The caller must hold
// the directory's Lock and Close the spool.
func Open(opts Options) (*Spool, *Recovery, error) {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.MaxBytes <= 0 {
		return nil, nil, fmt.Errorf("spool: MaxBytes must be positive (got %d)", opts.MaxBytes)
	}
	seg := opts.SegmentBytes
	if seg <= 0 {
		seg = max(min(64<<20, opts.MaxBytes/8), 64<<10)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("spool: %w: point --data-dir at a writable directory", err)
	}
	s := &Spool{
		dir: opts.Dir, sync: opts.Sync, max: opts.MaxBytes, segMax: seg, log: opts.Log,
		next: 1, intake: true,
		batches: make(map[uint64]*batchState),
		covered: make(map[uint64]struct{}),
		pos:     make(map[string]posAt),
		saved:   make(map[string]Position),
		syncer:  make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	if err := s.loadPositions(); err != nil {
		return nil, nil, err
	}
	rec, err := s.recover()
	if err != nil {
		s.closeFiles()
		return nil, nil, err
	}
	if s.sync {
		go s.syncLoop()
	} else {
		close(s.syncer)
	}
	return s, rec, nil
}

// segmentName is the file name of the segment whose first record is seq:
// names sort as their sequence numbers do.
func segmentName(seq uint64) string { return fmt.Sprintf("%020d.seg", seq) }

// recover reads every segment, cuts damage off, and rebuilds the state.
func (s *Spool) recover() (*Recovery, error) {
	names, err := filepath.Glob(filepath.Join(s.dir, "*.seg"))
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	type found struct {
		first uint64
		path  string
	}
	var files []found
	for _, path := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("spool: %s is not a segment file name (want 20 digits and .seg): move it out of %s", path, s.dir)
		}
		files = append(files, found{first, path})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].first < files[j].first })

	rec := &Recovery{Segments: len(files)}
	posts := 0 // post records found
	if len(files) > 0 {
		s.oldest = files[0].first
	}
	for i, fd := range files {
		last := i == len(files)-1
		seg := &segment{first: fd.first, path: fd.path}
		if fd.first < s.next {
			return nil, fmt.Errorf("spool: %s starts at record %d, before the end of the segment before it (%d): the spool directory %s was changed by hand; move the older files out", fd.path, fd.first, s.next, s.dir)
		}
		s.next = fd.first
		damage, err := s.scan(seg, last, &posts, rec)
		if err != nil {
			return nil, err
		}
		if damage != "" {
			rec.Damage = append(rec.Damage, damage)
			s.log.Error("the spool was damaged; cut the damage off and kept every complete record before it", "damage", damage)
		}
		rec.Bytes += seg.size
		s.segs = append(s.segs, seg)
	}
	s.written, s.synced = s.next-1, s.next-1
	rec.Posts = posts - len(s.covered)

	if len(s.segs) == 0 {
		if err := s.newSegment(); err != nil {
			return nil, err
		}
	} else {
		active := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(active.path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("spool: reopen %s to append: %w", active.path, err)
		}
		active.f = f
	}
	s.cur = cursor{seg: s.segs[0], off: int64(len(segmentHeader))}
	s.deleteDone()
	return rec, nil
}

// scan reads one segment: it counts its records, collects batches and
// positions, and cuts off what follows the first damaged record. It
// returns a description of the damage, "" if none.
func (s *Spool) scan(seg *segment, last bool, posts *int, rec *Recovery) (string, error) {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("spool: open %s: %w", seg.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("spool: %s: %w", seg.path, err)
	}
	size := fi.Size()
	hdr := make([]byte, len(segmentHeader))
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr) != segmentHeader {
		if size >= int64(len(segmentHeader)) && string(hdr) != segmentHeader {
			return "", fmt.Errorf("spool: %s does not start like a spool segment: it is not ingest's, or from another version; move it out of %s", seg.path, s.dir)
		}
		// Created, header not yet written: a crash at creation.
		if err := rewriteHeader(f); err != nil {
			return "", fmt.Errorf("spool: %s: %w", seg.path, err)
		}
		seg.size, seg.synced = int64(len(segmentHeader)), int64(len(segmentHeader))
		s.bytes += seg.size
		return "", nil
	}
	off := int64(len(segmentHeader))
	var buf []byte
	var damage string
	for off < size {
		recBytes, err := readRecord(f, off, size-off, &buf)
		var kind byte
		var seq uint64
		if err == nil {
			kind, seq, err = checkRecord(recBytes)
		}
		if err == nil && seq != s.next {
			err = fmt.Errorf("%w: record %d where %d was due", errDamaged, seq, s.next)
		}
		if err == nil {
			err = s.recoverRecord(seg, kind, seq, recBytes[recordHeader:], posts, rec)
		}
		if err != nil {
			where := "its end"
			if !last {
				where = "a segment that is not the last: a disk error, not a crash"
			}
			damage = fmt.Sprintf("%s: %v at byte %d of %d (%s); cut %d bytes after record %d",
				seg.path, err, off, size, where, size-off, s.next-1)
			if err := f.Truncate(off); err != nil {
				return "", fmt.Errorf("spool: cut the damage off %s: %w", seg.path, err)
			}
			if err := f.Sync(); err != nil {
				return "", fmt.Errorf("spool: %s: %w", seg.path, err)
			}
			size = off
			break
		}
		off += int64(len(recBytes))
		s.next = seq + 1
	}
	seg.size, seg.synced = size, size
	s.bytes += size
	return damage, nil
}

// recoverRecord adds one valid record to the recovered state.
func (s *Spool) recoverRecord(seg *segment, kind byte, seq uint64, body []byte, posts *int, rec *Recovery) error {
	switch kind {
	case kindPost:
		_, pos, err := decodePost(body)
		if err != nil {
			return err
		}
		*posts++
		seg.pending++
		s.unread += int64(recordHeader + len(body))
		if pos != nil {
			s.pos[pos.Source] = posAt{seq, *pos}
		}
	case kindBatch:
		covers, parts, err := decodeBatch(body)
		if err != nil {
			return err
		}
		// A batch may cover posts of a segment already deleted (it was
		// stored, and so were they); it keeps only those still here. (A
		// batch record always follows the posts it covers, so a torn
		// tail never cuts a covered post and keeps its batch.)
		held := covers[:0:0]
		for _, c := range covers {
			if c >= s.oldest && c < seq {
				held = append(held, c)
				s.covered[c] = struct{}{}
			}
		}
		covers = held
		cp := make([][]byte, len(parts))
		for i, part := range parts {
			cp[i] = append([]byte(nil), part...)
		}
		s.batches[seq] = &batchState{covers: covers}
		seg.pending++
		rec.Batches = append(rec.Batches, Batch{Seq: seq, Parts: cp, Covers: covers})
	}
	return nil
}

func rewriteHeader(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(segmentHeader), 0); err != nil {
		return err
	}
	return f.Sync()
}

// newSegment starts a segment for the next record. s.mu is held (or Open
// runs alone).
func (s *Spool) newSegment() error {
	path := filepath.Join(s.dir, segmentName(s.next))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", path, err)
	}
	if _, err := f.Write([]byte(segmentHeader)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("spool: write %s: %w", path, err)
	}
	if s.sync {
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("spool: sync %s: %w", path, err)
		}
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
	}
	n := int64(len(segmentHeader))
	s.segs = append(s.segs, &segment{first: s.next, path: path, size: n, synced: n, f: f})
	s.bytes += n
	return nil
}

// rotate ends the active segment (durably) and starts the next. s.mu is
// held.
func (s *Spool) rotate() error {
	active := s.segs[len(s.segs)-1]
	if s.sync {
		if err := unix.Fdatasync(int(active.f.Fd())); err != nil {
			return fmt.Errorf("spool: sync %s: %w", active.path, err)
		}
		s.stats.Syncs++
		s.advance(s.written, active, active.size)
	}
	return s.newSegment()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

// Append adds posts (with Spool set to their sequence numbers in place),
// all or none. pos, if not nil, is the position of the input they were
// read from, after the last of them. With durable (and Options.Sync) it
// returns once they are on disk. With wait it waits for room (and for Next
// to catch up to within a segment or two, so that an input file is not
// copied whole into the spool) instead of returning ErrFull.
func (s *Spool) Append(ctx context.Context, posts []wire.Post, pos *Position, durable, wait bool) error {
	if len(posts) == 0 {
		return nil
	}
	offs := make([]int, len(posts)+1)
	crcs := make([]uint32, len(posts))
	var buf []byte
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
	need := int64(len(buf))

	if wait {
		defer s.wakeOnDone(ctx)()
	}
	s.mu.Lock()
	for {
		switch {
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return err
		case !s.intake || s.closed:
			s.mu.Unlock()
			return ErrClosed
		}
		full := s.bytes+need > s.max && s.bytes > int64(len(segmentHeader))
		behind := wait && s.unread > 2*s.segMax
		if !full && !behind {
			break
		}
		if !wait {
			s.mu.Unlock()
			return fmt.Errorf("%w: %d bytes spooled, --spool-max %d", ErrFull, s.bytes, s.max)
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return err
		}
		s.cond.Wait()
	}
	last, err := s.writeLocked(kindPost, buf, offs, crcs)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	for i := range posts {
		posts[i].Spool = last - uint64(len(posts)-1-i)
	}
	s.unread += need
	s.stats.Appended += uint64(len(posts))
	if pos != nil {
		s.pending = append(s.pending, posAt{last, *pos})
		if !s.sync {
			s.promotePositions(last)
		}
	}
	if !durable || !s.sync {
		s.mu.Unlock()
		return nil
	}
	for s.synced < last && s.err == nil {
		s.cond.Wait()
	}
	err = s.err
	s.mu.Unlock()
	return err
}

// writeLocked writes records (buf, split at offs, body CRCs crcs) of kind
// at the end of the active segment and returns the last seq. On a failed
// write the segment is cut back, so the spool never holds a partial
// record it did not report. s.mu is held.
func (s *Spool) writeLocked(kind byte, buf []byte, offs []int, crcs []uint32) (uint64, error) {
	active := s.segs[len(s.segs)-1]
	if active.size+int64(len(buf)) > s.segMax && active.size > int64(len(segmentHeader)) {
		if err := s.rotate(); err != nil {
			return 0, s.fail(err)
		}
		active = s.segs[len(s.segs)-1]
	}
	first := s.next
	for i := range crcs {
		putHeader(buf[offs[i]:offs[i+1]], kind, first+uint64(i), crcs[i])
	}
	if _, err := active.f.WriteAt(buf, active.size); err != nil {
		if terr := active.f.Truncate(active.size); terr != nil {
			return 0, s.fail(fmt.Errorf("spool: write %s: %w; and cutting back the partial write failed: %v", active.path, err, terr))
		}
		return 0, fmt.Errorf("spool: write %s: %w: free space on the disk of --data-dir, or lower --spool-max", active.path, err)
	}
	n := uint64(len(crcs))
	s.next += n
	s.written = s.next - 1
	active.size += int64(len(buf))
	active.pending += int(n)
	s.bytes += int64(len(buf))
	if !s.sync {
		s.synced = s.written
		active.synced = active.size
	}
	s.cond.Broadcast()
	return s.written, nil
}

// fail makes err sticky: the spool can no longer be trusted to hold what
// it is given. s.mu is held.
func (s *Spool) fail(err error) error {
	if s.err == nil {
		s.err = err
		s.log.Error("the spool cannot be written: refusing posts from now on; what it holds is kept", "error", err)
		s.cond.Broadcast()
	}
	return s.err
}

// AppendBatch spools a complete batch: its parts (wire frames, kept as
// they are) and the posts it covers. onDurable is called with the batch's
// sequence number (for Stored) once it is on disk (nil error), or if it
// cannot be (the error); only then may a saver be given the parts.
// onDurable must not block nor call into the spool: with Sync it runs with
// the spool's lock held, on the spool's sync goroutine or on that of the
// Append or AppendBatch that starts a new segment (with ErrClosed, on that
// of Close), possibly before AppendBatch returns; without Sync, before
// AppendBatch returns. If AppendBatch returns an error, onDurable is never
// called. Batches are never refused for room: they only replace posts
// already spooled.
func (s *Spool) AppendBatch(covers []uint64, parts [][]byte, onDurable func(seq uint64, err error)) (uint64, error) {
	covers = sortedCovers(covers)
	buf := make([]byte, recordHeader, recordHeader+16+len(covers)*2)
	buf = appendBatch(buf, covers, parts)
	crc := crc32.Checksum(buf[recordHeader:], castagnoli)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	seq, err := s.writeLocked(kindBatch, buf, []int{0, len(buf)}, []uint32{crc})
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	s.batches[seq] = &batchState{covers: covers}
	if s.sync {
		s.waiters = append(s.waiters, waiter{seq, onDurable})
		s.mu.Unlock()
		return seq, nil
	}
	s.mu.Unlock()
	onDurable(seq, nil)
	return seq, nil
}

// syncLoop makes what was written durable, one fdatasync for everything
// written since the last: concurrent appends share a sync.
func (s *Spool) syncLoop() {
	defer close(s.syncer)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for s.synced == s.written && !s.closed && s.err == nil {
			s.cond.Wait()
		}
		if s.err != nil {
			s.runWaiters(s.written, s.err)
			return
		}
		if s.synced == s.written {
			return // closed, nothing left
		}
		target := s.written
		active := s.segs[len(s.segs)-1]
		off := active.size
		f := active.f
		s.syncing = active // deleteDone keeps its file open meanwhile
		s.mu.Unlock()
		err := unix.Fdatasync(int(f.Fd()))
		s.mu.Lock()
		s.syncing = nil
		s.stats.Syncs++
		if err != nil {
			s.fail(fmt.Errorf("spool: sync %s: %w", active.path, err))
			continue
		}
		s.advance(target, active, off)
		s.deleteDone() // one it kept for this sync may be done
	}
}

// advance records that everything up to seq (and off bytes of seg) is
// durable. s.mu is held.
func (s *Spool) advance(seq uint64, seg *segment, off int64) {
	if seq > s.synced {
		s.synced = seq
	}
	if off > seg.synced {
		seg.synced = off
	}
	s.promotePositions(seq)
	s.runWaiters(seq, nil)
	s.cond.Broadcast()
}

// runWaiters calls the AppendBatch callbacks up to seq. s.mu is held; the
// callbacks must not call back into the spool.
func (s *Spool) runWaiters(seq uint64, err error) {
	n := 0
	for n < len(s.waiters) && s.waiters[n].seq <= seq {
		s.waiters[n].fn(s.waiters[n].seq, err)
		n++
	}
	s.waiters = append(s.waiters[:0], s.waiters[n:]...)
}

// promotePositions makes the positions appended up to seq durable ones.
func (s *Spool) promotePositions(seq uint64) {
	n := 0
	for n < len(s.pending) && s.pending[n].seq <= seq {
		s.pos[s.pending[n].pos.Source] = s.pending[n]
		n++
	}
	s.pending = append(s.pending[:0], s.pending[n:]...)
}

// Next returns the next spooled post that no spooled batch covers,
// waiting until one is durable. ok is false once CloseIntake was called
// and every post was returned, after Close, or when ctx ends. One caller
// at a time.
func (s *Spool) Next(ctx context.Context) (post wire.Post, ok bool) {
	defer s.wakeOnDone(ctx)()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed || ctx.Err() != nil {
			return wire.Post{}, false
		}
		c := &s.cur
		if c.off < c.seg.synced {
			rec, err := s.readLocked(c)
			if err != nil {
				s.fail(err)
				return wire.Post{}, false
			}
			kind, seq, err := checkRecord(rec)
			if err != nil {
				s.fail(fmt.Errorf("spool: %s at byte %d: %w", c.seg.path, c.off, err))
				return wire.Post{}, false
			}
			c.off += int64(len(rec))
			if kind != kindPost {
				continue
			}
			s.unread -= int64(len(rec))
			s.cond.Broadcast() // an input waiting for Next to catch up
			if _, skip := s.covered[seq]; skip {
				delete(s.covered, seq)
				continue
			}
			p, _, err := decodePost(rec[recordHeader:])
			if err != nil {
				s.fail(fmt.Errorf("spool: %s record %d: %w", c.seg.path, seq, err))
				return wire.Post{}, false
			}
			p.Spool = seq
			return p, true
		}
		if nxt := s.after(c.seg); nxt != nil && c.off >= c.seg.size {
			if c.f != nil {
				c.f.Close()
			}
			*c = cursor{seg: nxt, off: int64(len(segmentHeader)), buf: c.buf}
			s.deleteDone()
			continue
		}
		if !s.intake && s.synced == s.written {
			return wire.Post{}, false
		}
		s.cond.Wait()
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

// after is the segment after seg, nil if seg is the last.
func (s *Spool) after(seg *segment) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > seg.first })
	if i < len(s.segs) {
		return s.segs[i]
	}
	return nil
}

// readLocked reads the record at the cursor. It reads with the lock held:
// a page-cache read of one record, and it keeps the segment from being
// deleted under it.
func (s *Spool) readLocked(c *cursor) ([]byte, error) {
	if c.f == nil {
		f, err := os.Open(c.seg.path)
		if err != nil {
			return nil, fmt.Errorf("spool: open %s: %w", c.seg.path, err)
		}
		c.f = f
	}
	rec, err := readRecord(c.f, c.off, c.seg.synced-c.off, &c.buf)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s at byte %d: %w", c.seg.path, c.off, err)
	}
	return rec, nil
}

// Stored records that the batch spooled as seq is stored (every part
// acknowledged by a saver), with the posts it covers: a segment whose
// records are all done is deleted, oldest first.
func (s *Spool) Stored(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batches[seq]
	if !ok {
		return
	}
	delete(s.batches, seq)
	for _, c := range b.covers {
		if seg := s.segmentOf(c); seg != nil {
			seg.pending--
		}
	}
	if seg := s.segmentOf(seq); seg != nil {
		seg.pending--
	}
	s.deleteDone()
}

// segmentOf is the segment holding record seq.
func (s *Spool) segmentOf(seq uint64) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > seq })
	if i == 0 {
		return nil
	}
	return s.segs[i-1]
}

// deleteDone deletes the oldest segments while every record in them is
// done and they are not the one appended to. Oldest first, and each
// deletion durable before the next: a batch record is always in the
// segment of the posts it covers or a later one, so a crash between two
// deletions never leaves a post without the batch that covers it. s.mu
// is held.
func (s *Spool) deleteDone() {
	for len(s.segs) > 1 && s.segs[0].pending <= 0 && s.cur.seg != s.segs[0] && s.syncing != s.segs[0] {
		if err := s.savePositions(); err != nil {
			s.log.Error("cannot save the input positions; keeping the spool segment they are in", "error", err)
			return
		}
		seg := s.segs[0]
		if seg.f != nil {
			seg.f.Close()
		}
		if err := os.Remove(seg.path); err != nil {
			s.log.Error("cannot delete a spool segment that is stored; it takes disk until it is", "segment", seg.path, "error", err)
			return
		}
		if s.sync {
			if err := syncDir(s.dir); err != nil {
				s.log.Warn("deleting a stored segment may not be durable", "error", err)
			}
		}
		s.bytes -= seg.size
		s.segs = s.segs[1:]
		s.stats.Deleted++
		s.cond.Broadcast()
	}
}

// CloseIntake stops Append (ErrClosed); Next returns what was appended,
// then ok=false. Idempotent.
func (s *Spool) CloseIntake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intake = false
	s.cond.Broadcast()
}

// Position is the durable position of source, and whether there is one:
// a spooled post read from it, or the positions file.
func (s *Spool) Position(source string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.saved[source]
	if q, ok2 := s.pos[source]; ok2 && (!ok || q.pos.Rows >= p.Rows) {
		return q.pos, true
	}
	return p, ok
}

// Forget drops source's position: the input was read to its end and
// everything from it stored, so a later run reads it afresh. It is
// durable in the positions file at once, and for good once the segments
// holding posts read from source are deleted (Close deletes them when
// every record is done): until then, a crash brings the position back from
// those records, and a later run resumes at the input's end, reading
// nothing (and counting nothing twice).
func (s *Spool) Forget(source string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pos, source)
	s.pending = slices.DeleteFunc(s.pending, func(p posAt) bool { return p.pos.Source == source })
	if _, ok := s.saved[source]; !ok {
		return nil
	}
	delete(s.saved, source)
	return s.writePositions()
}

// savePositions writes the durable positions to the positions file if
// they moved since it was written. s.mu is held.
func (s *Spool) savePositions() error {
	changed := false
	for src, p := range s.pos {
		if old, ok := s.saved[src]; !ok || old != p.pos {
			s.saved[src] = p.pos
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return s.writePositions()
}

func (s *Spool) writePositions() error {
	b, err := json.MarshalIndent(s.saved, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, positionsFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: write %s: %w", path, err)
	}
	return nil
}

func (s *Spool) loadPositions() error {
	path := filepath.Join(s.dir, positionsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s.saved); err != nil {
		return fmt.Errorf("spool: %s is not valid JSON (%v): it records how far --input files were read; delete it to read them from the start", path, err)
	}
	return nil
}

// Backlog reports the spool's size in bytes and the posts Next has not
// returned, in bytes of records.
func (s *Spool) Backlog() (bytes, unread int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.unread
}

// Max is Options.MaxBytes.
func (s *Spool) Max() int64 { return s.max }

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Err is the failure that stopped appends, nil if none.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the spool: pending syncs finish, batches waiting for one are
// told, Next returns. If every record is done, the segments are deleted
// (and the input positions saved first). Idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.intake = false
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.syncer
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runWaiters(^uint64(0), ErrClosed)
	var err error
	if s.err == nil {
		s.promotePositions(s.synced)
		done := true
		for _, seg := range s.segs {
			done = done && seg.pending <= 0
		}
		if done {
			err = s.savePositions()
			if err == nil {
				s.closeFiles()
				for _, seg := range s.segs {
					if rerr := os.Remove(seg.path); rerr != nil {
						err = errors.Join(err, rerr)
					}
				}
				s.segs = nil
				if s.sync {
					err = errors.Join(err, syncDir(s.dir))
				}
			}
		}
	}
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	for _, seg := range s.segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
	}
	if s.cur.f != nil {
		s.cur.f.Close()
		s.cur.f = nil
	}
}

// readRecord reads the record at off of r, at most left bytes long, into
// *buf (grown as needed; a large one is let go for a small record). The
// bytes are valid until the next call with buf. Its errors are
// errDamaged.
func readRecord(r io.ReaderAt, off, left int64, buf *[]byte) ([]byte, error) {
	if left < recordHeader {
		return nil, fmt.Errorf("%w: %d bytes at the end, shorter than a record header (a write cut short)", errDamaged, left)
	}
	var hdr [recordHeader]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	n, err := bodyLen(hdr[:])
	if err != nil {
		return nil, err
	}
	if int64(recordHeader+n) > left {
		return nil, fmt.Errorf("%w: a record of %d bytes with %d left in the file (a write cut short)", errDamaged, recordHeader+n, left)
	}
	if cap(*buf) < recordHeader+n || cap(*buf) > 4<<20 && recordHeader+n < 1<<20 {
		*buf = make([]byte, recordHeader+n)
	}
	rec := (*buf)[:recordHeader+n]
	copy(rec, hdr[:])
	if _, err := r.ReadAt(rec[recordHeader:], off+recordHeader); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	return rec, nil
}
