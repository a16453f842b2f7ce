package spool

import (
	"errors"
	"os"
	"sort"
)

// The ledger: which records are not done. A post is done once a stored
// batch covers it, a batch once it is stored; both only once the done
// record that says so is durable. A segment whose records are all done
// is deleted, oldest first, each deletion durable before the next: a
// batch record is always in the segment of the posts it covers or a later
// one, and a done record after its batch, so a crash between two
// deletions never leaves a post without what covers it.

// retire books the batch spooled as seq, and the posts it covers, as done.
// s.mu is held.
func (s *Spool) retire(seq uint64, covers []uint64) {
	for _, c := range covers {
		if seg := s.segmentOf(c); seg != nil {
			seg.pending--
		}
	}
	if seg := s.segmentOf(seq); seg != nil {
		seg.pending--
	}
	s.wake()
}

// allDone reports whether every record is done. s.mu is held.
func (s *Spool) allDone() bool {
	for _, seg := range s.segs {
		if seg.pending > 0 {
			return false
		}
	}
	return len(s.held) == 0
}

// deletable is the oldest segment if it can be deleted now: done, not
// the one appended to, read back or synced, and the directory trusted (a
// directory fault may mean that the path names another file now; a full
// disk, on the other hand, is exactly when deleting matters). s.mu is
// held.
func (s *Spool) deletable() *segment {
	if len(s.segs) < 2 || s.err != nil || s.fault != nil && s.fault.Op == opDirectory {
		return nil
	}
	seg := s.segs[0]
	if seg.pending > 0 || s.cur.seg == seg || s.syncing == seg {
		return nil
	}
	return seg
}

// deleteDone deletes the oldest segments while they are done, with the
// lock released for the file system's work: the state file first (input
// positions held only by those segments, and the new oldest record), then
// each file and the directory's sync.
func (s *Spool) deleteDone() {
	s.delMu.Lock()
	defer s.delMu.Unlock()
	for {
		s.mu.Lock()
		seg := s.deletable()
		var next uint64
		if seg != nil {
			next = s.segs[1].first
		}
		s.unlock()
		if seg == nil {
			return
		}
		err := s.saveState(next)
		if isNoSpace(err) {
			// The state file must be written before the segment goes, and
			// deleting it is what frees the disk: the reserve is for this
			// too.
			s.mu.Lock()
			gave := s.giveUpReserve()
			s.unlock()
			if gave {
				err = s.saveState(next)
			}
		}
		if err == nil {
			err = s.fs.Remove(seg.path)
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		}
		if err != nil {
			if !s.delFailing {
				s.log.Error("cannot delete a spool segment that is stored; it takes disk until it is (trying again every moment)", "segment", seg.path, "error", err)
			}
			s.delFailing = true
			return
		}
		s.delFailing = false
		if s.sync {
			if err := s.fs.SyncDir(s.dir); err != nil {
				s.log.Warn("deleting a stored segment may not be durable", "error", err)
			}
		}
		s.mu.Lock()
		if len(s.segs) > 0 && s.segs[0] == seg {
			s.segs = s.segs[1:]
			s.bytes -= seg.size
			s.stats.Deleted++
			if seg.f != nil {
				seg.f.Close()
				seg.f = nil
			}
			s.cond.Broadcast()
		}
		s.unlock()
	}
}

// removeAll deletes every segment, the spool being closed and every
// record done: the state file first, then the files.
func (s *Spool) removeAll() error {
	s.mu.Lock()
	segs := s.segs
	s.segs = nil
	next := s.next
	s.unlock()
	err := s.saveState(next)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
		if rerr := s.fs.Remove(seg.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if s.sync {
		err = errors.Join(err, s.fs.SyncDir(s.dir))
	}
	return err
}

// seqSet is a set of sequence numbers kept as sorted, disjoint,
// non-adjacent spans: the posts covered by batches form a few long runs,
// however many posts there are.
type seqSet struct{ spans []span }

type span struct{ lo, hi uint64 } // inclusive

// add adds seq.
func (q *seqSet) add(seq uint64) { q.addSpan(seq, seq) }

// addSpan adds lo..hi.
func (q *seqSet) addSpan(lo, hi uint64) {
	// i: the first span that ends at or after lo-1 (it may touch).
	i := sort.Search(len(q.spans), func(i int) bool { return q.spans[i].hi+1 >= lo })
	j := i
	for j < len(q.spans) && q.spans[j].lo <= hi+1 {
		lo, hi = min(lo, q.spans[j].lo), max(hi, q.spans[j].hi)
		j++
	}
	if i == j {
		q.spans = append(q.spans, span{})
		copy(q.spans[i+1:], q.spans[i:])
		q.spans[i] = span{lo, hi}
		return
	}
	q.spans[i] = span{lo, hi}
	q.spans = append(q.spans[:i+1], q.spans[j:]...)
}

// has reports whether seq is in the set.
func (q *seqSet) has(seq uint64) bool {
	i := sort.Search(len(q.spans), func(i int) bool { return q.spans[i].hi >= seq })
	return i < len(q.spans) && q.spans[i].lo <= seq
}

// len is the number of sequence numbers in the set.
func (q *seqSet) len() uint64 {
	var n uint64
	for _, sp := range q.spans {
		n += sp.hi - sp.lo + 1
	}
	return n
}
