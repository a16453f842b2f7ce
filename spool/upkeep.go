package spool

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// Upkeep: one goroutine that owns what the spool does on its own. Every
// WatchEvery, and whenever kicked, it
//
//   - watches the directory: the spool directory or the active segment
//     removed or replaced, or the directory not writable, is a fault
//     (posts refused, batch records held) noticed within WatchEvery;
//   - heals a fault: restores a removed directory from the segment files
//     it still holds open (nothing acknowledged is lost, even if the
//     parent is killed afterwards), starts the segment that could not be
//     started, writes the held records in order, and takes posts again
//     once the disk has room;
//   - deletes done segments, oldest first;
//   - keeps the reserve: the disk given up for batches when it filled,
//     taken back once there is room again.

func (s *Spool) upkeep() {
	defer close(s.upkept)
	t := time.NewTicker(s.watch)
	defer t.Stop()
	for {
		tick := false
		select {
		case <-s.stop:
			return
		case <-s.kick: // a fault, a record held, a segment that may be done
		case <-t.C:
			tick = true
			s.checkDir()
		}
		s.heal()
		s.deleteDone()
		if tick { // not at every kick: a sync kicks, and this asks the file system
			s.keepReserve()
		}
	}
}

// checkDir sets a fault if the spool directory is gone, replaced or not
// writable, or a segment file is gone or replaced: the active segment at
// every check, the others a few at a time (a large spool has many).
func (s *Spool) checkDir() {
	s.mu.Lock()
	if s.closed || s.err != nil || len(s.segs) == 0 {
		s.unlock()
		return
	}
	check := []*segment{s.segs[len(s.segs)-1]}
	for range min(len(s.segs)-1, checkSegments) {
		s.checkAt = (s.checkAt + 1) % (len(s.segs) - 1)
		check = append(check, s.segs[s.checkAt])
	}
	files := make([]File, len(check))
	for i, seg := range check {
		files[i] = seg.f
	}
	dirID := s.dirID
	s.unlock()
	var why error
	if fi, err := s.fs.Stat(s.dir); err != nil {
		why = fmt.Errorf("the spool directory is gone (%v)", errors.Unwrap(err))
	} else if !os.SameFile(fi, dirID) {
		why = errors.New("the spool directory was removed and another made in its place")
	} else if err := s.fs.Writable(s.dir); err != nil {
		why = fmt.Errorf("the spool directory is not writable (%v)", errors.Unwrap(err))
	} else {
		for i, seg := range check {
			if fi, err := s.fs.Stat(seg.path); err != nil {
				why = fmt.Errorf("segment %s is gone (%v)", filepath.Base(seg.path), errors.Unwrap(err))
				break
			} else if own, err := files[i].Stat(); err != nil || !os.SameFile(fi, own) {
				why = fmt.Errorf("segment %s was replaced", filepath.Base(seg.path))
				break
			}
		}
	}
	if why == nil {
		return
	}
	s.mu.Lock()
	defer s.unlock()
	if !s.closed && (s.fault == nil || s.fault.Op != opDirectory) {
		s.setFault(&Fault{Op: opDirectory, Path: s.dir, Err: why})
	}
}

// heal tries to end a fault: restore the directory, write the held
// records (starting a segment if need be), and, that done, take posts
// again if the disk has room for them.
func (s *Spool) heal() {
	s.mu.Lock()
	defer s.unlock()
	if s.fault == nil && len(s.held) == 0 || s.err != nil || s.closed {
		return
	}
	if s.fault != nil && s.fault.Op == opDirectory {
		s.unlock()
		err := s.restore()
		s.mu.Lock()
		if err != nil {
			if s.fault != nil && s.err == nil && !s.closed {
				// A new Fault, not a change to the one callers were given.
				s.fault = &Fault{Op: opDirectory, Path: s.dir, Err: err}
			}
			return
		}
	}
	for len(s.held) > 0 {
		s.waitRotation()
		if s.err != nil || s.closed || len(s.held) == 0 {
			return // fail and Close tell the held batches
		}
		err := s.writeHeld(s.held[0])
		if errors.Is(err, errRotated) {
			continue
		}
		if err != nil {
			var f *Fault
			if errors.As(err, &f) && !f.Sticky {
				s.setFault(f)
				return // still cannot: the fault goes on
			}
			// Failed for good (fail told the held batches), or closed.
			return
		}
		s.held = s.held[1:]
	}
	if s.fault == nil {
		return
	}
	// Posts take the room that is left: take them again once there is
	// some beyond the reserve's worth (a full disk frees slowly; without
	// a margin every post would fail again at once).
	if free, _, err := s.fs.Free(s.dir); err == nil && free < max(s.reserveMax, minFree) {
		return
	}
	if err := s.fs.Writable(s.dir); err != nil {
		return
	}
	s.clearFault()
}

// restore makes the spool whole again after its directory, or a segment
// file, was removed or replaced: the directory is made again, and every
// segment file that is not the one the spool holds open is written anew
// from the open file (the data lives on while it is open), then the state
// file. It runs without s.mu; the fault keeps writers and deletions off
// meanwhile.
func (s *Spool) restore() error {
	if err := mkdirDurable(s.fs, s.dir, dirPerm); err != nil {
		return fmt.Errorf("cannot make the spool directory again (%v): make it writable", errors.Unwrap(err))
	}
	if err := s.fs.Writable(s.dir); err != nil {
		return fmt.Errorf("the spool directory is not writable (%v)", errors.Unwrap(err))
	}
	dirID, err := s.fs.Stat(s.dir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.waitRotation() // the fault keeps new writers off; one under way finishes
	segs := append([]*segment(nil), s.segs...)
	sizes := make([]int64, len(segs))
	for i, seg := range segs {
		sizes[i] = seg.size
	}
	s.unlock()
	restored, activeRestored := 0, false
	for i, seg := range segs {
		fi, err := s.fs.Stat(seg.path)
		own, oerr := seg.f.Stat()
		if err == nil && oerr == nil && os.SameFile(fi, own) {
			continue
		}
		content := make([]byte, sizes[i])
		if _, err := seg.f.ReadAt(content, 0); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read back %s to restore it: %v", filepath.Base(seg.path), err)
		}
		f, err := s.writeFile(seg.path, content)
		if err != nil {
			return fmt.Errorf("cannot restore %s (%v)", filepath.Base(seg.path), errors.Unwrap(err))
		}
		s.mu.Lock()
		for s.syncing == seg || s.rotating {
			s.cond.Wait() // never close a file being synced
		}
		old := seg.f
		seg.f = f
		s.unlock()
		old.Close()
		restored++
		activeRestored = activeRestored || i == len(segs)-1
	}
	s.stateMu.Lock()
	s.mu.Lock()
	s.dirID = dirID
	if s.sync && activeRestored && segs[len(segs)-1] == s.segs[len(s.segs)-1] {
		active := segs[len(segs)-1]
		// Every record written is in the file just written and synced.
		s.advance(s.written, active, active.size)
	}
	st := state{Version: stateFileVersion, Oldest: s.oldest, Inputs: maps.Clone(s.saved)}
	s.unlock()
	s.stateStale = true // the file may be gone with the directory
	err = s.flushState(st)
	s.stateMu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot restore %s (%v)", stateFile, errors.Unwrap(err))
	}
	if restored > 0 {
		s.log.Warn("restored the spool's files from the copies it holds open: nothing accepted is lost", "dir", s.dir, "segments", restored)
	}
	s.mu.Lock()
	if s.reserve != nil {
		s.reserve.Close()
		s.reserve = nil // keepReserve makes it again
	}
	s.clearFault()
	s.unlock()
	return nil
}

// reserveSize is the reserve's size for opts.Reserve.
func (s *Spool) reserveSize(want int64) int64 {
	if want < 0 {
		return 0
	}
	if want > 0 {
		return want
	}
	n := min(int64(maxReserve), s.max/16)
	if _, size, err := s.fs.Free(s.dir); err == nil {
		n = min(n, size/32)
	}
	return n
}

// keepReserve holds the reserve file: one left by an earlier run is taken
// as it is (its disk is already set aside, however full the disk is now);
// a missing one is made once the disk has room to spare for it (four
// times its size), so that it never takes the last of the disk from
// posts.
func (s *Spool) keepReserve() {
	s.mu.Lock()
	need := s.reserve == nil && s.reserveMax > 0 && s.fault == nil && s.err == nil && !s.closed
	s.unlock()
	if !need {
		return
	}
	path := filepath.Join(s.dir, reserveFile)
	f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		if fi, serr := f.Stat(); serr != nil || fi.Size() < s.reserveMax {
			err = f.Allocate(s.reserveMax) // grow it, if it can be now
		}
		if err != nil {
			s.log.Debug("the spool's reserve is smaller than it should be", "error", err)
			err = nil // what it holds is kept back all the same
		}
	} else {
		if free, _, ferr := s.fs.Free(s.dir); ferr != nil || free < 4*s.reserveMax {
			return
		}
		f, err = s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE, filePerm)
		if err == nil {
			if err = f.Allocate(s.reserveMax); err != nil {
				f.Close()
				s.fs.Remove(path)
			}
		}
	}
	if err != nil {
		s.log.Debug("cannot make the spool's reserve now", "error", err)
		return
	}
	s.mu.Lock()
	if s.reserve == nil && !s.closed {
		s.reserve = f
		f = nil
	}
	s.unlock()
	if f != nil {
		f.Close()
	}
}

// giveUpReserve frees the reserve for a batch or done record that found
// the disk full, and reports whether there was one. s.mu is held.
func (s *Spool) giveUpReserve() bool {
	if s.reserve == nil {
		return false
	}
	path := filepath.Join(s.dir, reserveFile)
	s.reserve.Close()
	s.reserve = nil
	if err := s.fs.Remove(path); err != nil {
		s.log.Error("the disk is full and the spool's reserve cannot be given up", "error", err)
		return false
	}
	s.log.Warn("the disk is full: gave up the spool's reserve so that batches can still be recorded; it is made again once there is room", "bytes", s.reserveMax)
	return true
}
