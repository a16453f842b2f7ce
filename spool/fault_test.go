package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// ledger is a workload's bookkeeping: what the spool was given and what
// it answered, so that the test can tell after a restart whether every
// acknowledged post counts exactly once.
type ledger struct {
	t     *testing.T
	s     *Spool
	efs   *errorFS
	dir   string
	next  int
	posts map[string]*tpost // by publication

	taken   []*tpost // returned by Next, not yet in a batch
	batches []*tbatch
	calls   chan *tbatch // onDurable calls, handled by the test goroutine
	pad     int          // bytes added to each batch's part

	mu        sync.Mutex
	notOnDisk []string // batches reported durable whose record was not synced
}

type tpost struct {
	pub   string
	seq   uint64
	acked bool  // Accept returned nil
	err   error // what Accept returned
	taken bool  // Next returned it
}

type tbatch struct {
	id      string
	posts   []*tpost
	order   int // in AppendBatch order
	seq     uint64
	called  int // onDurable calls
	err     error
	durable bool // onDurable said so: a saver stores it
	stored  bool // Stored was called
}

func newLedger(t *testing.T, s *Spool, efs *errorFS, dir string) *ledger {
	return &ledger{t: t, s: s, efs: efs, dir: dir, posts: make(map[string]*tpost), calls: make(chan *tbatch, 1000)}
}

// accept offers n posts in one Accept and books the answer.
func (l *ledger) accept(n int) error {
	posts := testPosts(l.next, n, 150)
	l.next += n
	err := l.s.Accept(posts)
	for _, p := range posts {
		tp := &tpost{pub: p.Publication, seq: p.Spool, acked: err == nil, err: err}
		l.posts[tp.pub] = tp
	}
	return err
}

// take reads every post Next has for now (the acknowledged ones not yet
// read), giving up after a moment if Next has none.
func (l *ledger) take() {
	for range l.waiting() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p, ok := l.s.Next(ctx)
		cancel()
		if !ok {
			return
		}
		tp := l.posts[p.Publication]
		if tp == nil || tp.taken {
			l.t.Errorf("Next returned post %d %q: unknown or returned before", p.Spool, p.Publication)
			continue
		}
		tp.taken = true
		l.taken = append(l.taken, tp)
	}
}

func (l *ledger) waiting() int {
	n := 0
	for _, p := range l.posts {
		if p.acked && !p.taken {
			n++
		}
	}
	return n
}

// batch spools what was taken as one batch, as a worker's output.
func (l *ledger) batch() {
	if len(l.taken) == 0 {
		return
	}
	b := &tbatch{id: fmt.Sprintf("batch-%d", len(l.batches)), posts: l.taken, order: len(l.batches)}
	l.taken = nil
	covers := make([]uint64, len(b.posts))
	for i, p := range b.posts {
		covers[i] = p.seq
	}
	l.batches = append(l.batches, b)
	part := append([]byte(b.id), make([]byte, l.pad)...)
	err := l.s.AppendBatch(covers, [][]byte{part}, func(seq uint64, err error) {
		if err == nil && !l.onDisk(seq) {
			l.mu.Lock()
			l.notOnDisk = append(l.notOnDisk, fmt.Sprintf("%s (record %d)", b.id, seq))
			l.mu.Unlock()
		}
		b.seq, b.err = seq, err // read by the test goroutine after the channel
		b.called++
		l.calls <- b
	})
	if err != nil {
		b.err = err
		b.called = -1 // refused: never called
	}
}

// onDisk reports whether the batch record seq is in a segment file, whole,
// and synced.
func (l *ledger) onDisk(seq uint64) bool {
	for _, path := range segFiles(l.t, l.dir) {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		fi, _ := f.Stat()
		var buf []byte
		for off := int64(len(segmentHeader)); off < fi.Size(); {
			rec, err := readRecord(f, off, fi.Size()-off, &buf)
			if err != nil {
				break
			}
			kind, s, err := checkRecord(rec)
			if err != nil {
				break
			}
			off += int64(len(rec))
			if s == seq && kind == kindBatch {
				f.Close()
				return off <= l.efs.durable(path)
			}
		}
		f.Close()
	}
	return false
}

// handOn handles the onDurable calls that came: a durable batch is
// stored (a saver took it), then Stored.
func (l *ledger) handOn() {
	for {
		select {
		case b := <-l.calls:
			if b.err == nil {
				b.durable = true
				b.stored = true
				l.s.Stored(b.seq)
			}
		default:
			return
		}
	}
}

// round is one turn of the workload: posts accepted, read, batched,
// stored.
func (l *ledger) round() {
	l.batch() // what the last round took: a worker's batch comes later
	l.accept(1)
	l.accept(3)
	l.take()
	synctest.Wait()
	l.handOn()
	l.batch()
	l.accept(2)
	l.take()
	synctest.Wait()
	l.handOn()
}

// settle lets the spool's goroutines run (upkeep every WatchEvery) and
// hands on what came durable meanwhile.
func (l *ledger) settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
	l.handOn()
}

// check reopens the spool's directory (the spool closed, or a copy of it
// as a crash left it) and checks that every acknowledged post counts
// exactly once: through a batch a saver stored (its onDurable said
// durable), a batch offered again (which the sink stores unless it has
// it), or Next after the restart. A refused post counts never, except
// those allowed to.
func (l *ledger) check(dir string, mayCount func(p *tpost) bool) {
	t := l.t
	t.Helper()
	s, rec := openTest(t, Options{Dir: dir, Sync: true})
	for _, d := range rec.Damage {
		if d.Serious() {
			t.Errorf("faults left damage: %v", d)
		}
	}
	count := make(map[string]int)
	sink := make(map[string]bool)
	for _, b := range l.batches {
		if b.durable {
			sink[b.id] = true
			for _, p := range b.posts {
				count[p.pub]++
			}
		}
	}
	for _, rb := range rec.Batches {
		id := string(bytes.TrimRight(rb.Parts[0], "\x00"))
		if sink[id] {
			continue // the sink has it and skips it
		}
		var b *tbatch
		for _, x := range l.batches {
			if x.id == id {
				b = x
			}
		}
		if b == nil {
			t.Errorf("recovered a batch never spooled: %q", id)
			continue
		}
		sink[id] = true
		for _, p := range b.posts {
			count[p.pub]++
		}
	}
	for _, p := range drain(t, s) {
		count[p.Publication]++
	}
	acked, refused := 0, 0
	for pub, p := range l.posts {
		switch {
		case p.acked:
			acked++
			if count[pub] != 1 {
				t.Errorf("acknowledged post %s (record %d) counted %d times", pub, p.seq, count[pub])
			}
		default:
			refused++
			if count[pub] > 1 || count[pub] == 1 && (mayCount == nil || !mayCount(p)) {
				t.Errorf("post %s, refused (%v), counted %d times", pub, p.err, count[pub])
			}
		}
	}
	l.mu.Lock()
	if len(l.notOnDisk) > 0 {
		t.Errorf("batches reported durable before their record was synced: %v", l.notOnDisk)
	}
	l.mu.Unlock()
	t.Logf("%d posts acknowledged, %d refused, %d batches (%d durable), recovered %d posts and %d batches",
		acked, refused, len(l.batches), len(sink), rec.Posts, len(rec.Batches))
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestFaults(t *testing.T) {
	const watch = 250 * time.Millisecond
	cases := []struct {
		name   string
		rules  []rule // the fault: each must be hit
		sticky bool   // the spool fails for good
		refuse bool   // posts are refused while the fault lasts
		holds  bool   // batch records wait in memory while it lasts
		// postFirst: what the rounds before took is spooled before the
		// fault, so that its first write is a post's, whatever order the
		// spool's goroutines run in (a single failed write of a batch
		// ends at once: upkeep writes the batch again, and no post would
		// see the fault).
		postFirst bool
		// mayCount: refused posts that may be counted all the same,
		// as the package documentation says.
		mayCount func(p *tpost) bool
	}{
		{name: "start a segment: open, no space", rules: []rule{{op: opOpen, match: isNewSeg, err: syscall.ENOSPC, n: -1}}, refuse: true, holds: true},
		{name: "start a segment: open, no permission", rules: []rule{{op: opOpen, match: isNewSeg, err: syscall.EACCES, n: -1}}, refuse: true, holds: true},
		{name: "start a segment: write, no space", rules: []rule{{op: opWrite, match: isNewSeg, err: syscall.ENOSPC, n: -1}}, refuse: true, holds: true},
		{name: "start a segment: sync, I/O error", rules: []rule{{op: opSync, match: isNewSeg, err: syscall.EIO, n: -1}}, refuse: true, holds: true},
		{name: "start a segment: rename, no space", rules: []rule{{op: opRename, match: isSegment, err: syscall.ENOSPC, n: -1}}, refuse: true, holds: true},
		{name: "start a segment: directory sync, I/O error", rules: []rule{{op: opSyncDir, err: syscall.EIO, n: -1}}, refuse: true, holds: true},
		{name: "write, no space", rules: []rule{{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: -1}}, refuse: true, holds: true},
		{name: "write, no permission", rules: []rule{{op: opWrite, match: isSegment, err: syscall.EACCES, n: -1}}, refuse: true, holds: true},
		{name: "write, I/O error", rules: []rule{{op: opWrite, match: isSegment, err: syscall.EIO, n: -1}}, refuse: true, holds: true},
		{name: "write, short", rules: []rule{{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: -1, short: true}}, refuse: true, holds: true},
		{name: "write, once", rules: []rule{{op: opWrite, match: isSegment, err: syscall.EIO, n: 1}}, refuse: true, postFirst: true},
		{name: "write and its cut-back fail", rules: []rule{{op: opWrite, match: isSegment, err: syscall.EIO, n: 1}, {op: opTruncate, match: isSegment, err: syscall.EIO, n: -1}}, sticky: true},
		{name: "sync of a segment", rules: []rule{{op: opSync, match: isSegment, err: syscall.EIO, n: 1}}, sticky: true},
		{name: "sync of a segment, and the cut-back", rules: []rule{{op: opSync, match: isSegment, err: syscall.EIO, n: 1}, {op: opTruncate, match: isSegment, err: syscall.EIO, n: -1}}, sticky: true,
			mayCount: func(p *tpost) bool { // documented: what the sync did not make durable is then on disk
				var f *Fault
				return errors.As(p.err, &f) && f.Sticky && f.Op == "sync"
			}},
		{name: "read back", rules: []rule{{op: opRead, match: isSegment, err: syscall.EIO, n: -1}}, sticky: true},
		{name: "delete a stored segment", rules: []rule{{op: opRemove, match: isSegment, err: syscall.EIO, n: -1}}},
		{name: "save the state file, no space", rules: []rule{{op: opOpen, match: isState, err: syscall.ENOSPC, n: -1}}},
		{name: "write the state file", rules: []rule{{op: opWrite, match: isState, err: syscall.EIO, n: -1}}},
		{name: "statfs, while writes fail", rules: []rule{{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: 3}, {op: opFree, err: syscall.EIO, n: -1}}, refuse: true},
		{name: "fallocate the reserve, once given up", rules: []rule{{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: 1}, {op: opAllocate, err: syscall.ENOSPC, n: -1}}},
		{name: "directory not writable", rules: []rule{{op: opWritable, err: syscall.EACCES, n: -1}}, refuse: true, holds: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				dir := t.TempDir()
				efs := newErrorFS()
				opts := Options{Dir: dir, Sync: true, FS: efs, SegmentBytes: 1024, WatchEvery: watch}
				if tc.rules[len(tc.rules)-1].op == opAllocate {
					opts.Reserve = 64 << 10
				}
				s, _ := openTest(t, opts)
				l := newLedger(t, s, efs, dir)
				for range 3 {
					l.round()
				}
				if err := s.Err(); err != nil {
					t.Fatalf("before the fault: %v", err)
				}
				if tc.postFirst {
					l.batch()
					synctest.Wait()
					l.handOn()
				}

				// The fault, while posts come and batches are stored.
				var rules []*rule
				for _, r := range tc.rules {
					rules = append(rules, efs.inject(r))
				}
				heldDuring, refusedDuring := 0, 0
				var faultErr error
				for range 6 {
					l.round()
					if err := s.Err(); err != nil {
						faultErr = err
					}
					heldDuring = max(heldDuring, s.Stats().Held)
					l.settle(watch)
				}
				for _, p := range l.posts {
					if !p.acked {
						refusedDuring++
					}
				}
				for _, r := range rules {
					if efs.hits(r) == 0 {
						t.Fatalf("the workload never reached the call site of %s", r.op)
					}
				}
				if tc.refuse && refusedDuring == 0 {
					t.Errorf("no post refused during the fault (Err: %v)", faultErr)
				}
				if !tc.refuse && !tc.sticky && refusedDuring > 0 {
					t.Errorf("%d posts refused during a fault that should not stop intake", refusedDuring)
				}
				if tc.holds && heldDuring == 0 {
					t.Errorf("no batch record was held during the fault")
				}
				for _, p := range l.posts {
					if p.err != nil && !errors.Is(p.err, ErrUnavailable) {
						t.Errorf("post %s refused with %v, want ErrUnavailable (a *Fault)", p.pub, p.err)
					}
				}

				// The fault clears; intake comes back within a few checks,
				// unless the fault is sticky.
				efs.clear()
				back := false
				for range 10 {
					if err := l.accept(1); err == nil {
						back = true
						break
					}
					l.settle(watch)
				}
				var f *Fault
				switch {
				case tc.sticky:
					if back || !errors.As(s.Err(), &f) || !f.Sticky {
						t.Errorf("after a fault that should be sticky: intake back %v, Err %v", back, s.Err())
					}
				case !back:
					t.Fatalf("intake did not come back within 10 checks after the fault cleared: %v", s.Err())
				}
				for range 3 {
					l.round()
					l.settle(watch)
				}
				if !tc.sticky {
					if st := s.Stats(); st.Held != 0 || s.Err() != nil {
						t.Errorf("after the fault: %d records held, Err %v", st.Held, s.Err())
					}
					// Held batches were written in the order they were
					// given.
					var prev uint64
					for _, b := range l.batches {
						if b.called != 1 && b.called != -1 {
							t.Errorf("%s: onDurable called %d times", b.id, b.called)
						}
						if b.err != nil {
							t.Errorf("%s: %v", b.id, b.err)
							continue
						}
						if b.seq <= prev {
							t.Errorf("%s is record %d, after %d: batches out of order", b.id, b.seq, prev)
						}
						prev = b.seq
					}
				}

				// A crash now, and a clean Close: either way every
				// acknowledged post counts once.
				crash := t.TempDir()
				takeSnapshot(t, dir).write(t, crash)
				l.check(crash, tc.mayCount)
				s.Close()
				for _, b := range l.batches {
					if b.called == 0 {
						t.Errorf("%s: onDurable never called, though the spool was closed", b.id)
					}
				}
				l.check(dir, tc.mayCount)
			})
		})
	}
}

// restoreCase runs a workload, does something to the spool directory
// while the spool runs, and checks that the spool notices, refuses posts
// only meanwhile, restores its files, and that nothing acknowledged is
// lost whether the parent is killed after the restore or closes.
func restoreCase(t *testing.T, do func(t *testing.T, s *Spool, dir string)) {
	bubble(t, func(t *testing.T) {
		const watch = 250 * time.Millisecond
		dir := filepath.Join(t.TempDir(), "spool")
		efs := newErrorFS()
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, SegmentBytes: 1024, WatchEvery: watch})
		l := newLedger(t, s, efs, dir)
		for range 4 {
			l.round()
		}
		for range 3 { // and some not batched yet, in older segments
			l.accept(2)
			l.take()
		}
		state := filepath.Join(dir, stateFile)
		if err := s.Forget("nothing"); err != nil { // no state file yet: nothing was deleted
			t.Fatal(err)
		}
		do(t, s, dir)
		// Posts offered now are refused or acknowledged; none is lost.
		l.accept(1)
		l.settle(2 * watch)
		l.round()
		l.settle(2 * watch)
		if err := s.Err(); err != nil {
			t.Fatalf("the spool did not restore its directory: %v", err)
		}
		if s.Stats().Faults == 0 {
			t.Error("no fault was noticed")
		}
		for _, path := range segFiles(t, dir) {
			if _, err := os.Stat(path); err != nil {
				t.Error(err)
			}
		}
		if _, err := os.Stat(state); err != nil {
			t.Errorf("the state file was not restored: %v", err)
		}
		for range 2 {
			l.round()
		}
		if err := l.accept(1); err != nil {
			t.Errorf("Accept after the restore: %v", err)
		}
		crash := t.TempDir()
		takeSnapshot(t, dir).write(t, crash)
		l.check(crash, nil)
		s.Close()
		l.check(dir, nil)
	})
}

func TestDirectoryRemoved(t *testing.T) {
	restoreCase(t, func(t *testing.T, s *Spool, dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDirectoryReplaced(t *testing.T) {
	restoreCase(t, func(t *testing.T, s *Spool, dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, segmentName(1)), "someone else's file")
	})
}

func TestActiveSegmentRemoved(t *testing.T) {
	restoreCase(t, func(t *testing.T, s *Spool, dir string) {
		files := segFiles(t, dir)
		if err := os.Remove(files[len(files)-1]); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOlderSegmentRemoved(t *testing.T) {
	restoreCase(t, func(t *testing.T, s *Spool, dir string) {
		// One that holds records not done yet, not the one appended to.
		s.mu.Lock()
		var path string
		for _, seg := range s.segs[:len(s.segs)-1] {
			if seg.pending > 0 {
				path = seg.path
				break
			}
		}
		s.mu.Unlock()
		if path == "" {
			t.Fatal("no older segment holds records not done yet")
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDirectoryRemovedIsNoticedAtOnce(t *testing.T) {
	// The directory removed between a post's write and its sync: the
	// sync notices (the file is unlinked), and the post is answered only
	// once its file is restored, so a kill right after the answer loses
	// nothing.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		gate := efs.gateSyncs()
		dir := filepath.Join(t.TempDir(), "spool")
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, WatchEvery: time.Hour})
		posts := testPosts(1, 1, 10)
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = s.Accept(posts)
		}()
		synctest.Wait() // written, waiting for the sync
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		mkdir := efs.inject(rule{op: opMkdir, err: syscall.EACCES, n: -1}) // no restore yet
		close(gate)
		synctest.Wait()
		if isClosed(done) {
			t.Fatalf("Accept answered (%v) for a post in a removed file, before the restore", err)
		}
		if efs.hits(mkdir) == 0 {
			t.Fatal("the removal was not noticed at the sync: no restore was tried")
		}
		efs.clear()
		s.wake() // upkeep runs; no need to wait for its tick
		waitClosed(t, done, "Accept after the restore")
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		crash := t.TempDir()
		takeSnapshot(t, dir).write(t, crash)
		s2, rec := openTest(t, Options{Dir: crash})
		if rec.Posts != 1 {
			t.Fatalf("a kill after the answer: recovered %d posts, want 1", rec.Posts)
		}
		s2.Close()
	})
}

func TestDirectoryNotWritable(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const watch = 250 * time.Millisecond
		efs := newErrorFS()
		dir := t.TempDir()
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, WatchEvery: watch})
		if err := s.Accept(testPosts(1, 1, 10)); err != nil {
			t.Fatal(err)
		}
		efs.inject(rule{op: opWritable, match: isDir(dir), err: syscall.EACCES, n: -1})
		time.Sleep(watch)
		synctest.Wait()
		err := s.Accept(testPosts(2, 1, 10))
		var f *Fault
		if !errors.As(err, &f) || f.Sticky || f.Op != opDirectory || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Accept with the directory not writable: %v, want a directory fault", err)
		}
		if s.Err() == nil {
			t.Error("Err() is nil while the directory is not writable")
		}
		efs.clear()
		time.Sleep(watch)
		synctest.Wait()
		if err := s.Accept(testPosts(3, 1, 10)); err != nil {
			t.Fatalf("Accept once the directory is writable again: %v", err)
		}
	})
}

func TestReserve(t *testing.T) {
	// The reserve is given up for a batch record that finds the disk
	// full, and made again once there is room.
	bubble(t, func(t *testing.T) {
		const watch = 250 * time.Millisecond
		efs := newErrorFS()
		dir := t.TempDir()
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, Reserve: 64 << 10, WatchEvery: watch})
		reserve := filepath.Join(dir, reserveFile)
		if fi, err := os.Stat(reserve); err != nil || fi.Size() != 64<<10 {
			t.Fatalf("the reserve after Open: %v, %v", fi, err)
		}
		if err := s.Accept(testPosts(1, 2, 10)); err != nil {
			t.Fatal(err)
		}
		got := nextPosts(t, s, 2)
		efs.inject(rule{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: 1})
		efs.setFree(0)
		batch := appendBatchDurable(t, s, seqsOf(got), [][]byte{[]byte("b")})
		if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the reserve is still there after a batch found the disk full: %v", err)
		}
		if st := s.Stats(); st.Held != 0 {
			t.Errorf("%d records held: the batch should have taken the reserve", st.Held)
		}
		s.Stored(batch)
		time.Sleep(3 * watch)
		synctest.Wait()
		if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the reserve was made again on a full disk: %v", err)
		}
		efs.setFree(-1)
		time.Sleep(3 * watch)
		synctest.Wait()
		if fi, err := os.Stat(reserve); err != nil || fi.Size() != 64<<10 {
			t.Errorf("the reserve was not made again once there was room: %v, %v", fi, err)
		}
	})
}

func TestReserveLeftByAnEarlierRunIsTaken(t *testing.T) {
	// A reserve file on a disk that is full now is held as it is: it can
	// still be given up.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		dir := t.TempDir()
		reserve := filepath.Join(dir, reserveFile)
		writeFile(t, reserve, string(make([]byte, 32<<10)))
		efs.setFree(0)
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, Reserve: 32 << 10})
		if err := s.Accept(testPosts(1, 1, 10)); err != nil {
			t.Fatal(err)
		}
		got := nextPosts(t, s, 1)
		efs.inject(rule{op: opWrite, match: isSegment, err: syscall.ENOSPC, n: 1})
		appendBatchDurable(t, s, seqsOf(got), nil)
		if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the reserve left by an earlier run was not given up: %v", err)
		}
	})
}

func TestSpoolDirectoryCreationIsDurable(t *testing.T) {
	efs := newErrorFS()
	parent := t.TempDir()
	dir := filepath.Join(parent, "data", "spool")
	s, _ := openTest(t, Options{Dir: dir, FS: efs})
	s.Close()
	for _, d := range []string{parent, filepath.Join(parent, "data")} {
		if efs.count(opSyncDir, isDir(d)) == 0 {
			t.Errorf("%s, which a new directory was made in, was not synced", d)
		}
	}
	// An existing directory is not created again.
	efs2 := newErrorFS()
	s, _ = openTest(t, Options{Dir: dir, FS: efs2})
	s.Close()
	if n := efs2.count(opMkdir, anyPath); n != 0 {
		t.Errorf("%d directories made for an existing spool", n)
	}
	// A spool directory that cannot be made is an error that says what
	// to do.
	efs3 := newErrorFS()
	efs3.inject(rule{op: opMkdir, err: syscall.EACCES, n: -1})
	_, _, err := Open(testOptions(t, Options{Dir: filepath.Join(parent, "other"), FS: efs3}))
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("Open where the directory cannot be made: %v, want EACCES", err)
	}
}

func TestHeldBatchIsToldClose(t *testing.T) {
	// A batch held for the disk when the spool closes is told ErrClosed,
	// and its posts are there for the next start.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		dir := t.TempDir()
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs})
		if err := s.Accept(testPosts(1, 2, 10)); err != nil {
			t.Fatal(err)
		}
		got := nextPosts(t, s, 2)
		efs.inject(rule{op: opWrite, match: isSegment, err: syscall.EIO, n: -1})
		called := make(chan error, 1)
		if err := s.AppendBatch(seqsOf(got), nil, func(_ uint64, err error) { called <- err }); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(called) > 0 || s.Stats().Held != 1 {
			t.Fatalf("a batch the disk cannot take: called %v, held %d; want held, not called", len(called) > 0, s.Stats().Held)
		}
		s.Close()
		if err := <-called; !errors.Is(err, ErrClosed) {
			t.Errorf("onDurable of a held batch at Close: %v, want ErrClosed", err)
		}
		s2, rec := openTest(t, Options{Dir: dir})
		if rec.Posts != 2 || len(rec.Batches) != 0 {
			t.Errorf("recovered %d posts and %d batches, want the 2 posts", rec.Posts, len(rec.Batches))
		}
		s2.Close()
	})
}
