package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// The log: segment files of records, appended under s.mu with one pwrite,
// made durable by one fdatasync for everything written since the last
// (group commit, outside the lock), read back in order by Next.

type segment struct {
	first   uint64 // seq of its first record (or the next one, if empty)
	path    string
	size    int64
	synced  int64 // bytes durable (readable by Next)
	pending int   // records not done: posts not covered by a stored batch, batches not stored
	// full: starting the next segment was tried and failed, and may have
	// left its file (named for the next record) behind: no record may be
	// written here any more, or that file would name a record it does
	// not hold. The next write starts the segment again.
	full bool
	// f stays open for the spool's life: appended to (the last segment),
	// read back by Next, and copied from if its file is removed.
	f File
}

// waiter is an action due once the record seq is durable. It runs with
// s.mu held: it may only change the spool's state or queue a call.
type waiter struct {
	seq uint64
	fn  func(err error)
}

type cursor struct {
	seg *segment
	off int64
	buf []byte
}

// segmentName is the file name of the segment whose first record is seq:
// names sort as their sequence numbers do.
func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }

// errRotated is write's answer when it started the next segment instead
// of writing: s.mu was released meanwhile, so the caller checks again
// whether it may write (a fault, Close, records held) and calls again.
var errRotated = errors.New("spool: a new segment was started; check again")

// waitRotation waits until no writer is starting a segment. Every writer
// calls it before it decides to write, so that what it checked still
// holds when it writes. s.mu is held.
func (s *Spool) waitRotation() {
	for s.rotating {
		s.cond.Wait()
	}
}

// write writes records of kind (buf, split at offs, body CRCs crcs) at the
// end of the active segment and returns the last seq. If the active
// segment is full, it starts the next one instead and returns errRotated
// (or why it could not). On a failed write the segment is cut back, so
// that the spool never holds a partial record it did not report; the
// error is a *Fault (Sticky if the cut failed too), or ErrClosed. s.mu is
// held, and no rotation is under way (waitRotation).
func (s *Spool) write(kind byte, buf []byte, offs []int, crcs []uint32) (uint64, error) {
	switch {
	case s.err != nil:
		return 0, s.err
	case s.closed:
		return 0, ErrClosed
	}
	active := s.segs[len(s.segs)-1]
	if active.full || active.size+int64(len(buf)) > s.segMax && active.size > int64(len(segmentHeader)) {
		if err := s.rotate(); err != nil {
			return 0, err
		}
		return 0, errRotated
	}
	first := s.next
	for i := range crcs {
		putHeader(buf[offs[i]:offs[i+1]], kind, first+uint64(i), crcs[i])
	}
	if _, err := active.f.WriteAt(buf, active.size); err != nil {
		if terr := active.f.Truncate(active.size); terr != nil {
			return 0, s.fail(&Fault{Op: "write", Path: active.path, Sticky: true,
				Err: fmt.Errorf("%w; and cutting back the partial write failed: %v", err, terr)})
		}
		return 0, &Fault{Op: "write", Path: active.path, Err: err}
	}
	n := uint64(len(crcs))
	s.next += n
	s.written = s.next - 1
	active.size += int64(len(buf))
	if kind == kindPost || kind == kindBatch {
		active.pending += int(n)
	}
	s.bytes += int64(len(buf))
	if !s.sync {
		s.synced = s.written
		active.synced = active.size
	}
	s.cond.Broadcast()
	return s.written, nil
}

// rotate makes the active segment durable and starts the next one, with
// s.mu released meanwhile (other writers wait in waitRotation). A failed
// sync is Sticky. A segment synced into a file that is no longer in the
// directory is not durable for a restart: a directory fault, which
// upkeep heals by restoring the file (and then its records count as
// durable). A segment that cannot be started is a Fault that lasts until
// a write can start one. s.mu is held.
func (s *Spool) rotate() error {
	active := s.segs[len(s.segs)-1]
	target, size, first, f := s.written, active.size, s.next, active.f
	s.rotating = true
	s.mu.Unlock()
	var syncErr, err error
	var seg *segment
	if s.sync {
		syncErr = f.Sync()
	}
	gone := syncErr == nil && unlinked(f)
	if syncErr == nil && !gone {
		seg, err = s.createSegment(first)
	}
	s.mu.Lock()
	s.rotating = false
	s.cond.Broadcast()
	if syncErr != nil {
		f := s.fail(&Fault{Op: "sync", Path: active.path, Err: syncErr, Sticky: true})
		s.cutUnsynced(active)
		return f
	}
	if gone {
		return &Fault{Op: opDirectory, Path: s.dir, Err: errors.New("the segment appended to was removed")}
	}
	if s.sync {
		s.stats.Syncs++
		s.advance(target, active, size)
	}
	if err != nil {
		active.full = true
		return &Fault{Op: "start a segment", Path: filepath.Join(s.dir, segmentName(first)), Err: err}
	}
	s.segs = append(s.segs, seg)
	s.bytes += seg.size
	return nil
}

// createSegment starts the segment file for first: written whole under a
// temporary name, synced, then renamed into place and the directory
// synced, so that a segment file always starts with a complete header
// and one that does not is damage, not a crash. It runs without s.mu.
func (s *Spool) createSegment(first uint64) (*segment, error) {
	path := filepath.Join(s.dir, segmentName(first))
	f, err := s.writeFile(path, []byte(segmentHeader))
	if err != nil {
		return nil, err
	}
	n := int64(len(segmentHeader))
	return &segment{first: first, path: path, size: n, synced: n, f: f}, nil
}

// writeFile writes path's content through a temporary file, renamed into
// place once durable (with Options.Sync), and returns it open for reading
// and writing. Until the rename, a failure leaves nothing behind; once
// renamed, the file stays even if the directory's sync fails (it may
// replace a file that is gone now, as a repair or a restore does), and
// the error says that its name may not be durable.
func (s *Spool) writeFile(path string, content []byte) (File, error) {
	tmp := path + tmpSuffix
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteAt(content, 0)
	if err == nil && s.sync {
		err = f.Sync()
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err != nil {
		f.Close()
		s.fs.Remove(tmp)
		return nil, err
	}
	if s.sync {
		if err := s.fs.SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// fail makes f sticky: the spool can no longer be trusted to hold what it
// is given. Records waiting to be durable, and batches held for the
// disk, are told (their posts stay in the spool for the next start).
// s.mu is held.
func (s *Spool) fail(f *Fault) *Fault {
	if s.err == nil {
		s.err = f
		s.log.Error("the spool cannot be trusted any more: refusing posts for the rest of this run; what is on disk is recovered by the next start", "error", f)
		s.failWaiters(f)
		s.dropHeld(f)
		s.cond.Broadcast()
	}
	return s.err
}

// cutUnsynced cuts off seg what a failed sync could not make durable:
// records nobody was told are durable (Accept refused them, batches were
// told the error), which the next start must then not count either. The
// cut is as durable as the kernel makes it without a sync; a crash before
// it reaches the disk may leave them to be counted. s.mu is held, the
// spool failed.
func (s *Spool) cutUnsynced(seg *segment) {
	if seg.size <= seg.synced {
		return
	}
	if err := seg.f.Truncate(seg.synced); err != nil {
		s.log.Error("cannot cut off the records a failed sync did not make durable: the next start may count posts that were refused", "segment", seg.path, "error", err)
		return
	}
	s.bytes -= seg.size - seg.synced
	seg.size = seg.synced
}

// dropHeld gives up the records held for the disk, telling each batch's
// caller err. s.mu is held.
func (s *Spool) dropHeld(err error) {
	for _, h := range s.held {
		if h.onDurable != nil {
			s.calls = append(s.calls, call{h.onDurable, 0, err})
		}
	}
	s.held = nil
}

// failWaiters tells every record waiting to be durable that it will not
// be. s.mu is held.
func (s *Spool) failWaiters(err error) {
	for _, w := range s.waiters {
		w.fn(err)
	}
	s.waiters = nil
}

// awaitDurable runs fn once the record seq is durable: at once if it is.
// s.mu is held.
func (s *Spool) awaitDurable(seq uint64, fn func(error)) {
	if s.synced >= seq {
		fn(nil)
		return
	}
	s.waiters = append(s.waiters, waiter{seq, fn})
}

// syncLoop makes what was written durable, one fdatasync for everything
// written since the last: concurrent appends share a sync. It ends when
// the spool fails, or once it is closed and nothing written is left to
// sync; syncDone then tells those waiting for a sync that none will come.
func (s *Spool) syncLoop() {
	s.mu.Lock()
	defer func() {
		s.syncDone = true
		s.cond.Broadcast()
		s.unlock()
		close(s.syncer)
	}()
	for {
		for s.synced == s.written && !s.closed && s.err == nil {
			s.cond.Wait()
		}
		if s.err != nil || s.synced == s.written {
			return // failed (waiters told), or closed with nothing left
		}
		target := s.written
		active := s.segs[len(s.segs)-1]
		f, off := active.f, active.size
		s.syncing = active // neither deleted nor swapped by a restore meanwhile
		s.mu.Unlock()
		err := f.Sync()
		gone := err == nil && unlinked(f)
		s.mu.Lock()
		s.syncing = nil
		s.cond.Broadcast() // a restore may wait for it
		s.stats.Syncs++
		if err != nil {
			s.fail(&Fault{Op: "sync", Path: active.path, Err: err, Sticky: true})
			s.cutUnsynced(active)
			continue
		}
		if gone {
			// Synced into a file no longer in the directory: not durable
			// in any sense a restart could use. Acknowledge nothing until
			// upkeep has restored the file (restore then advances). A
			// closed spool restores nothing: Close tells the waiters.
			if s.closed {
				return
			}
			s.setFault(&Fault{Op: opDirectory, Path: s.dir, Err: errors.New("the segment appended to was removed")})
			for s.fault != nil && s.synced < target && !s.closed && s.err == nil {
				s.cond.Wait()
			}
			continue
		}
		s.advance(target, active, off)
		s.unlock() // runs the callbacks that came due
		s.mu.Lock()
		s.wake() // a segment may be done
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
	n := 0
	for n < len(s.waiters) && s.waiters[n].seq <= seq {
		s.waiters[n].fn(nil)
		n++
	}
	s.waiters = append(s.waiters[:0], s.waiters[n:]...)
	s.cond.Broadcast()
}

// writeOrHold writes a batch or done record, or holds it in memory while
// the disk cannot take it (upkeep writes it later, in order, after those
// held before it). It fails only if the spool failed for good or is
// closed: then the record is neither written nor held. s.mu is held.
func (s *Spool) writeOrHold(h *heldRecord) error {
	for {
		s.waitRotation()
		switch {
		case s.err != nil:
			return s.err
		case s.closed:
			return ErrClosed
		case s.fault != nil || len(s.held) > 0:
			s.held = append(s.held, h)
			s.wake()
			return nil
		}
		err := s.writeHeld(h)
		if err == nil {
			return nil
		}
		if errors.Is(err, errRotated) {
			continue
		}
		var f *Fault
		if !errors.As(err, &f) || f.Sticky {
			return err
		}
		s.setFault(f) // and hold it
	}
}

// writeHeld writes one batch or done record. A full disk gives up the
// reserve, which is there for exactly this, and tries once more. It
// returns errRotated (nothing written) when it started a segment
// instead. s.mu is held, no rotation under way.
func (s *Spool) writeHeld(h *heldRecord) error {
	offs, crcs := []int{0, len(h.buf)}, []uint32{h.crc}
	seq, err := s.write(h.kind, h.buf, offs, crcs)
	if isNoSpace(err) && s.giveUpReserve() {
		seq, err = s.write(h.kind, h.buf, offs, crcs)
	}
	if err != nil {
		return err
	}
	h.written(seq)
	return nil
}

// unlinked reports whether f's file was removed from its directory.
func unlinked(f File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// setFault records a fault that lasts until heal clears it: posts are
// refused meanwhile and batch records held. The first fault of an episode
// is logged, not every refusal; a directory fault takes the place of
// another, since only healing it (a restore) can end the episode. s.mu is
// held.
func (s *Spool) setFault(f *Fault) *Fault {
	switch {
	case s.fault == nil:
		s.faultAt = time.Now()
		s.refused = 0
		s.stats.Faults++
		s.log.Warn("the spool cannot be written: posts are refused (503) and batches wait in memory until it can; checking again every moment", "error", f)
	case f.Op == opDirectory && s.fault.Op != opDirectory:
		s.log.Warn("the spool's directory is not usable", "error", f)
	default:
		return s.fault
	}
	s.fault = f
	s.cond.Broadcast()
	s.wake()
	return s.fault
}

// clearFault ends a fault. s.mu is held.
func (s *Spool) clearFault() {
	if s.fault == nil {
		return
	}
	s.log.Info("the spool is written again: taking posts", "fault", s.fault, "lasted", time.Since(s.faultAt).Round(time.Millisecond), "posts_refused", s.refused)
	s.fault = nil
	s.cond.Broadcast()
}

// Next returns the next spooled post that no spooled batch covers,
// waiting until one is durable. ok is false once CloseIntake was called
// and every post was returned, after Close, or when ctx ends. One caller
// at a time.
func (s *Spool) Next(ctx context.Context) (post wire.Post, ok bool) {
	defer s.wakeOnDone(ctx)()
	s.mu.Lock()
	defer s.unlock()
	for {
		if s.closed || ctx.Err() != nil || s.err != nil {
			return wire.Post{}, false
		}
		c := &s.cur
		if c.off < c.seg.synced {
			rec, err := readRecord(c.seg.f, c.off, c.seg.synced-c.off, &c.buf)
			var kind byte
			var seq uint64
			if err == nil {
				kind, seq, err = checkRecord(rec)
			}
			if err != nil {
				s.fail(&Fault{Op: "read back", Path: c.seg.path, Err: fmt.Errorf("at byte %d: %w", c.off, err), Sticky: true})
				return wire.Post{}, false
			}
			c.off += int64(len(rec))
			if kind != kindPost {
				continue
			}
			s.unread -= int64(len(rec))
			s.cond.Broadcast() // an input waiting for Next to catch up
			if s.covered.has(seq) {
				continue
			}
			p, _, err := decodePost(rec[recordHeader:])
			if err != nil {
				s.fail(&Fault{Op: "read back", Path: c.seg.path, Err: fmt.Errorf("record %d: %w", seq, err), Sticky: true})
				return wire.Post{}, false
			}
			p.Spool = seq
			return p, true
		}
		if nxt := s.after(c.seg); nxt != nil && c.off >= c.seg.size {
			*c = cursor{seg: nxt, off: int64(len(segmentHeader)), buf: c.buf}
			s.wake() // the segment left behind may be done
			continue
		}
		if !s.intake && s.synced == s.written {
			return wire.Post{}, false
		}
		s.cond.Wait()
	}
}

// after is the segment after seg, nil if seg is the last.
func (s *Spool) after(seg *segment) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > seg.first })
	if i < len(s.segs) {
		return s.segs[i]
	}
	return nil
}

// segmentOf is the segment holding record seq.
func (s *Spool) segmentOf(seq uint64) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > seq })
	if i == 0 {
		return nil
	}
	return s.segs[i-1]
}

func (s *Spool) closeFiles() {
	for _, seg := range s.segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
	}
}

// readRecord reads the record at off of r, at most left bytes long, into
// *buf (grown as needed; a large one is let go for a small record). The
// bytes are valid until the next call with buf. Its errors are
// errDamaged.
func readRecord(r interface {
	ReadAt([]byte, int64) (int, error)
}, off, left int64, buf *[]byte) ([]byte, error) {
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
