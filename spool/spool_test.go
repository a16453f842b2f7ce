package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

func TestRoundTrip(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			s, rec := openTest(t, Options{Dir: dir, Sync: mode.sync})
			if rec.Segments != 0 || rec.Posts != 0 || len(rec.Batches) != 0 || len(rec.Damage) != 0 {
				t.Fatalf("a new spool recovered %+v", rec)
			}
			want := testPosts(1, 7, 20)
			calls := [][]wire.Post{want[0:1], want[1:5], want[5:7]}
			for _, posts := range calls {
				if err := appendMode(s, posts, mode.durable); err != nil {
					t.Fatalf("append: %v", err)
				}
			}
			for i := range want {
				if want[i].Spool != uint64(i+1) {
					t.Errorf("append set post %d's Spool to %d, want %d", i, want[i].Spool, i+1)
				}
			}
			got := nextPosts(t, s, len(want))
			samePosts(t, got, unspooled(want), seqRange(1, len(want)))
			if st := s.Stats(); st.Appended != uint64(len(want)) {
				t.Errorf("Stats().Appended = %d, want %d", st.Appended, len(want))
			}
			if _, unread := s.Backlog(); unread != 0 {
				t.Errorf("Backlog unread = %d after Next returned every post, want 0", unread)
			}
			checkBacklog(t, s, dir)
			if s.Max() != 1<<30 || s.Dir() != dir {
				t.Errorf("Max() = %d, Dir() = %s; want %d, %s", s.Max(), s.Dir(), 1<<30, dir)
			}
			if err := s.Err(); err != nil {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

func TestAppendNothingIsNoop(t *testing.T) {
	s, _ := openTest(t, Options{})
	if err := s.Feed(context.Background(), nil, &Position{Source: "x", Rows: 1}); err != nil {
		t.Fatalf("Feed(nil) = %v", err)
	}
	if err := s.Accept(nil); err != nil {
		t.Fatalf("Accept(nil) = %v", err)
	}
	if st := s.Stats(); st.Appended != 0 {
		t.Errorf("Appended = %d", st.Appended)
	}
	if _, ok := s.Position("x"); ok {
		t.Error("an empty Feed recorded a position")
	}
}

// durableThrough is the last record known durable.
func durableThrough(s *Spool) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

func TestDurableAppendsShareSyncs(t *testing.T) {
	const goroutines, each = 16, 25
	s, _ := openTest(t, Options{Sync: true})
	var wg sync.WaitGroup
	seqs := make([][]uint64, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				posts := testPosts(g*1000+i, 1, 30)
				if err := s.Accept(posts); err != nil {
					t.Errorf("goroutine %d: Accept: %v", g, err)
					return
				}
				if d := durableThrough(s); d < posts[0].Spool {
					t.Errorf("Accept returned for record %d with only %d durable", posts[0].Spool, d)
				}
				seqs[g] = append(seqs[g], posts[0].Spool)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitClosed(t, done, "concurrent durable appends")

	var all []uint64
	for _, g := range seqs {
		all = append(all, g...)
	}
	slices.Sort(all)
	if !slices.Equal(all, seqRange(1, goroutines*each)) {
		t.Errorf("appends got sequence numbers %v, want 1..%d each once", all, goroutines*each)
	}
	st := s.Stats()
	t.Logf("%d durable appends, %d syncs", st.Appended, st.Syncs)
	if st.Appended != goroutines*each {
		t.Errorf("Appended = %d, want %d", st.Appended, goroutines*each)
	}
	if st.Syncs == 0 || st.Syncs >= st.Appended {
		t.Errorf("%d syncs for %d concurrent durable appends: want at least one, and fewer than the appends (group commit)", st.Syncs, st.Appended)
	}
}

func TestAcceptWaitsForTheSync(t *testing.T) {
	// Accept returns only once its posts are synced; the sync is held
	// back here until the test lets it go.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		gate := efs.gateSyncs()
		s, _ := openTest(t, Options{Sync: true, FS: efs})
		posts := testPosts(1, 2, 10)
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = s.Accept(posts)
		}()
		synctest.Wait()
		if isClosed(done) {
			t.Fatalf("Accept returned (%v) before its sync", err)
		}
		close(gate)
		waitClosed(t, done, "Accept once synced")
		if err != nil {
			t.Fatal(err)
		}
		if efs.count(opSync, isSegment) == 0 {
			t.Error("Accept returned without a sync of the segment")
		}
	})
}

func TestAcceptAnswersWhatCloseMadeDurable(t *testing.T) {
	// A Close while Accept waits for its sync lets that sync finish; the
	// post it made durable is answered nil, since the next start counts
	// it.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		gate := efs.gateSyncs()
		dir := t.TempDir()
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs})
		posts := testPosts(1, 1, 10)
		accepted := make(chan struct{})
		var err error
		go func() {
			defer close(accepted)
			err = s.Accept(posts)
		}()
		synctest.Wait() // Accept waits for the sync, the sync for the gate
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			s.Close()
		}()
		synctest.Wait()
		if isClosed(accepted) {
			t.Fatalf("Accept returned (%v) while its sync was under way", err)
		}
		close(gate)
		waitClosed(t, closed, "Close")
		waitClosed(t, accepted, "Accept")
		if err != nil {
			t.Fatalf("Accept of a post the closing sync made durable: %v, want nil", err)
		}
		_, rec := openTest(t, Options{Dir: dir, Sync: true})
		if rec.Posts != 1 {
			t.Fatalf("recovered %d posts, want the one accepted", rec.Posts)
		}
	})
}

func TestRecovery(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openTest(t, Options{Dir: dir, Sync: mode.sync})
			posts := testPosts(1, 6, 50)
			if err := appendMode(s, posts, mode.durable); err != nil {
				t.Fatal(err)
			}
			parts := [][]byte{[]byte("first part"), {}, bytes.Repeat([]byte{0, 1, 0xfe, 0xff}, 30000)}
			batch := appendBatchDurable(t, s, []uint64{5, 2, 4, 2}, parts)
			if batch != 7 {
				t.Fatalf("the batch is record %d, want 7", batch)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if files := segFiles(t, dir); len(files) != 1 {
				t.Fatalf("Close with nothing stored left %d segment files, want 1", len(files))
			}

			s, rec := openTest(t, Options{Dir: dir, Sync: mode.sync})
			if rec.Segments != 1 || rec.Bytes != diskBytes(t, dir) || len(rec.Damage) != 0 {
				t.Errorf("recovered %d segments of %d bytes, damage %v; want 1 of %d, none", rec.Segments, rec.Bytes, rec.Damage, diskBytes(t, dir))
			}
			if rec.Posts != 3 {
				t.Errorf("Recovery.Posts = %d, want the 3 no batch covers", rec.Posts)
			}
			if len(rec.Batches) != 1 {
				t.Fatalf("recovered %d batches, want 1", len(rec.Batches))
			}
			b := rec.Batches[0]
			if b.Seq != batch || !slices.Equal(b.Covers, []uint64{2, 4, 5}) {
				t.Errorf("recovered batch %d covering %v, want %d covering [2 4 5]", b.Seq, b.Covers, batch)
			}
			if len(b.Parts) != len(parts) {
				t.Fatalf("recovered batch has %d parts, want %d", len(b.Parts), len(parts))
			}
			for i := range parts {
				if !bytes.Equal(b.Parts[i], parts[i]) {
					t.Errorf("recovered part %d differs from the one spooled (%d bytes, want %d)", i, len(b.Parts[i]), len(parts[i]))
				}
			}
			posts = unspooled(posts)
			got := nextPosts(t, s, 3)
			samePosts(t, got, []wire.Post{posts[0], posts[2], posts[5]}, []uint64{1, 3, 6})
			checkBacklog(t, s, dir)

			// The spool goes on where it was.
			more := testPosts(8, 1, 10)
			if err := appendMode(s, more, mode.durable); err != nil {
				t.Fatal(err)
			}
			if more[0].Spool != 8 {
				t.Errorf("the first post after recovery is record %d, want 8", more[0].Spool)
			}
			samePosts(t, nextPosts(t, s, 1), unspooled(more), []uint64{8})

			s.Stored(batch)
			s.Stored(batch) // twice: nothing more
			s.Stored(12345) // unknown: nothing
			last := appendBatchDurable(t, s, []uint64{1, 3, 6, 8}, [][]byte{[]byte("second")})
			if last != 10 {
				t.Errorf("the second batch is record %d, want 10 (9 is the first one's done record)", last)
			}
			s.Stored(last)
			s.CloseIntake()
			expectNoMore(t, s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if files := segFiles(t, dir); len(files) != 0 {
				t.Errorf("Close with everything stored left %v", files)
			}

			s, rec = openTest(t, Options{Dir: dir, Sync: mode.sync})
			if rec.Segments != 0 || rec.Posts != 0 || len(rec.Batches) != 0 || len(rec.Damage) != 0 {
				t.Errorf("reopened after everything was stored, recovered %+v", rec)
			}
			// Sequence numbers go on after those of the deleted segments
			// (the state file says where the spool was).
			p := testPosts(20, 1, 10)
			if err := s.Accept(p); err != nil {
				t.Fatal(err)
			}
			if p[0].Spool != 12 {
				t.Errorf("the first post after everything was deleted is record %d, want 12", p[0].Spool)
			}
		})
	}
}

func TestStoredBatchIsNeverOfferedAgain(t *testing.T) {
	// A done record says a batch is stored: a restart neither offers it
	// again nor processes its posts again, whatever the sink still
	// remembers, and however long the segment lives.
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{Dir: dir, Sync: true}
		s, _ := openTest(t, opts)
		posts := testPosts(1, 6, 30)
		if err := s.Accept(posts); err != nil {
			t.Fatal(err)
		}
		got := nextPosts(t, s, 6)
		stored := appendBatchDurable(t, s, seqsOf(got[:3]), [][]byte{[]byte("stored")})
		pending := appendBatchDurable(t, s, seqsOf(got[3:5]), [][]byte{[]byte("pending")})
		s.Stored(stored)
		synctest.Wait() // the done record is durable
		crash := takeSnapshot(t, dir)
		s.Close()

		dir2 := t.TempDir()
		crash.write(t, dir2)
		s2, rec := openTest(t, Options{Dir: dir2, Sync: true})
		if len(rec.Batches) != 1 || rec.Batches[0].Seq != pending {
			t.Fatalf("recovered batches %+v, want only the one not stored (%d)", rec.Batches, pending)
		}
		if rec.Posts != 1 {
			t.Errorf("Recovery.Posts = %d, want 1: post 6, that no batch covers", rec.Posts)
		}
		if got := drain(t, s2); len(got) != 1 || got[0].Spool != 6 {
			t.Errorf("Next after the restart returned %v, want post 6 alone", seqsOf(got))
		}
	})
}

func TestRecoveredBatchOfDeletedPosts(t *testing.T) {
	// A batch whose posts were in a segment already deleted covers only
	// the posts still spooled: the others were stored with it.
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, SegmentBytes: 1024})
	posts := testPosts(1, 12, 200)
	appendOneByOne(t, s, posts)
	nextPosts(t, s, len(posts))
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segment files, want at least 3", len(files))
	}
	// Store everything but the first post of the second segment.
	keep := segFirst(t, files[1])
	var covers []uint64
	for _, p := range posts {
		if p.Spool != keep {
			covers = append(covers, p.Spool)
		}
	}
	batch := appendBatchDurable(t, s, covers, [][]byte{[]byte("b")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Delete the first segment by hand, as upkeep would have.
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	_, rec := openTest(t, Options{Dir: dir, SegmentBytes: 1024})
	if len(rec.Batches) != 1 || rec.Batches[0].Seq != batch {
		t.Fatalf("recovered batches %+v, want batch %d", rec.Batches, batch)
	}
	for _, c := range rec.Batches[0].Covers {
		if c < segFirst(t, files[1]) {
			t.Errorf("the recovered batch covers post %d of the deleted segment", c)
		}
	}
	if rec.Posts != 1 {
		t.Errorf("Recovery.Posts = %d, want 1 (post %d)", rec.Posts, keep)
	}
	if len(rec.Damage) != 0 {
		t.Errorf("a spool whose oldest segment was deleted (no state file to say otherwise) reported damage: %v", rec.Damage)
	}
}

func TestStoredDeletesDonePrefix(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				dir := t.TempDir()
				s, _ := openTest(t, Options{Dir: dir, Sync: mode.sync, SegmentBytes: 1024})
				posts := testPosts(1, 20, 200)
				appendOneByOne(t, s, posts)
				files := segFiles(t, dir)
				if len(files) < 4 {
					t.Fatalf("%d segment files for 20 posts of 200 bytes with 1 KiB segments, want at least 4", len(files))
				}
				for _, f := range files[:len(files)-1] {
					if size := diskBytesOf(t, f); size > 1024 {
						t.Errorf("%s is %d bytes, beyond SegmentBytes", f, size)
					}
				}
				nextPosts(t, s, len(posts))

				// Everything but the first post of the third segment is
				// stored: the first two segments go, the rest stay.
				hold := segFirst(t, files[2])
				var covers []uint64
				for _, p := range posts {
					if p.Spool != hold {
						covers = append(covers, p.Spool)
					}
				}
				s.Stored(appendBatchDurable(t, s, covers, [][]byte{[]byte("batch")}))
				synctest.Wait() // upkeep deletes
				left := segFiles(t, dir)
				if len(left) == 0 || left[0] != files[2] {
					t.Fatalf("after storing all but post %d, segments %v are left; want those from %s on", hold, left, files[2])
				}
				if st := s.Stats(); st.Deleted != 2 {
					t.Errorf("Stats().Deleted = %d, want 2", st.Deleted)
				}
				checkBacklog(t, s, dir)

				// Then that one too: everything before the segment Next is
				// reading goes.
				s.Stored(appendBatchDurable(t, s, []uint64{hold}, [][]byte{[]byte("batch 2")}))
				synctest.Wait()
				left = segFiles(t, dir)
				reading := files[len(files)-1] // Next returned the last post, in the last of files
				if len(left) == 0 || left[0] != reading {
					t.Errorf("after storing every post, segments %v are left; want those from %s (Next's) on", left, reading)
				}
				checkBacklog(t, s, dir)

				s.CloseIntake()
				expectNoMore(t, s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if left := segFiles(t, dir); len(left) != 0 {
					t.Errorf("Close with everything stored left %v", left)
				}
			})
		})
	}
}

func TestFull(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{Dir: dir, MaxBytes: 4096, SegmentBytes: 1024}
		s, _ := openTest(t, opts)
		ctx := context.Background()

		// fill accepts posts until the spool refuses one, and returns
		// those it took and the one it refused.
		next := 1
		fill := func() (took []wire.Post, refused wire.Post) {
			t.Helper()
			for range 100 {
				p := testPosts(next, 1, 200)
				next++
				beforeBytes, beforeUnread := s.Backlog()
				beforeDisk := diskBytes(t, dir)
				err := s.Accept(p)
				if err == nil {
					took = append(took, p[0])
					continue
				}
				if !errors.Is(err, ErrFull) {
					t.Fatalf("Accept on a full spool: %v, want ErrFull", err)
				}
				if p[0].Spool != 0 {
					t.Errorf("a refused post got Spool %d", p[0].Spool)
				}
				if b, u := s.Backlog(); b != beforeBytes || u != beforeUnread || diskBytes(t, dir) != beforeDisk {
					t.Errorf("a refused Accept changed the spool: backlog %d/%d -> %d/%d", beforeBytes, beforeUnread, b, u)
				}
				return took, p[0]
			}
			t.Fatal("the spool took 100 posts of 200 bytes with MaxBytes 4096")
			return nil, wire.Post{}
		}
		took, refused := fill()
		if len(took) < 8 {
			t.Fatalf("the spool took %d posts before it was full, want at least 8", len(took))
		}

		// A Feed waits for room; given up, it changes nothing.
		short, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Feed(short, testPosts(next, 1, 200), &Position{Source: "in", Rows: 7})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Feed on a full spool, given up: %v, want its context's error", err)
		}
		if _, ok := s.Position("in"); ok {
			t.Error("a Feed that was given up recorded its position")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		// Nothing of the refused post is on disk.
		s, rec := openTest(t, opts)
		if rec.Posts != len(took) {
			t.Errorf("reopened a spool that took %d posts and recovered %d", len(took), rec.Posts)
		}
		got := nextPosts(t, s, len(took))
		for _, p := range got {
			if p.Publication == refused.Publication {
				t.Errorf("the refused post %q was spooled", p.Publication)
			}
		}
		if err := s.Accept(testPosts(next, 1, 200)); !errors.Is(err, ErrFull) {
			t.Fatalf("Accept on the reopened full spool: %v, want ErrFull", err)
		}

		// Storing what it holds makes room.
		s.Stored(appendBatchDurable(t, s, seqsOf(got), nil))
		synctest.Wait()
		if b, _ := s.Backlog(); b >= opts.MaxBytes/2 {
			t.Errorf("after storing every post the spool holds %d bytes", b)
		}
		if err := s.Accept(testPosts(next, 1, 200)); err != nil {
			t.Fatalf("Accept after Stored made room: %v", err)
		}
		next++
		roomy := nextPosts(t, s, 1)

		// A Feed on a full spool waits, and goes on once there is room.
		// (Next moving on may let upkeep delete a stored segment: fill
		// until the spool is full with every post read.)
		got = nil
		for {
			synctest.Wait()
			took, _ = fill()
			got = append(got, nextPosts(t, s, len(took))...)
			if len(took) == 0 {
				break
			}
		}
		waiting := testPosts(next, 1, 200)
		done := make(chan struct{})
		var waitErr error
		go func() {
			defer close(done)
			waitErr = s.Feed(ctx, waiting, nil)
		}()
		synctest.Wait()
		if isClosed(done) {
			t.Fatalf("Feed on a full spool returned at once: %v", waitErr)
		}
		s.Stored(appendBatchDurable(t, s, seqsOf(append(roomy, got...)), nil))
		waitClosed(t, done, "Feed after Stored made room")
		if waitErr != nil {
			t.Fatalf("Feed: %v", waitErr)
		}
		if waiting[0].Spool == 0 {
			t.Error("Feed did not set Spool")
		}
		if p := nextPosts(t, s, 1)[0]; p.Spool != waiting[0].Spool || p.Publication != waiting[0].Publication {
			t.Errorf("Next returned %d %q, want the waiting post %d %q", p.Spool, p.Publication, waiting[0].Spool, waiting[0].Publication)
		}

		// A waiting Feed gives up when its context ends.
		synctest.Wait() // upkeep deletes what Next moving on let go
		fill()
		cctx, cancel := context.WithCancel(ctx)
		done = make(chan struct{})
		go func() {
			defer close(done)
			waitErr = s.Feed(cctx, testPosts(next, 1, 200), nil)
		}()
		synctest.Wait()
		if isClosed(done) {
			t.Fatalf("Feed on a full spool returned at once: %v", waitErr)
		}
		cancel()
		waitClosed(t, done, "Feed after its context was canceled")
		if !errors.Is(waitErr, context.Canceled) {
			t.Errorf("Feed with its context canceled: %v, want context.Canceled", waitErr)
		}
	})
}

func TestFeedWaitsForNext(t *testing.T) {
	// Feed also holds back while Next is more than two segments behind,
	// so that an input is not copied whole to disk.
	bubble(t, func(t *testing.T) {
		s, _ := openTest(t, Options{SegmentBytes: 1024})
		for range 12 { // about 2.6 KiB unread: beyond two segments
			appendOneByOne(t, s, testPosts(1, 1, 200))
		}
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = s.Feed(context.Background(), testPosts(2, 1, 200), nil)
		}()
		synctest.Wait()
		if isClosed(done) {
			t.Fatalf("Feed returned with Next far behind: %v", err)
		}
		if err := s.Accept(testPosts(3, 1, 200)); err != nil {
			t.Errorf("Accept while Next is behind: %v; only Feed waits for it", err)
		}
		nextPosts(t, s, 12)
		waitClosed(t, done, "Feed after Next caught up")
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestCloseIntake(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			s, _ := openTest(t, Options{Sync: mode.sync})
			posts := testPosts(1, 3, 10)
			if err := appendMode(s, posts, mode.durable); err != nil {
				t.Fatal(err)
			}
			s.CloseIntake()
			s.CloseIntake() // idempotent
			if err := s.Accept(testPosts(4, 1, 10)); !errors.Is(err, ErrClosed) {
				t.Errorf("Accept after CloseIntake: %v, want ErrClosed", err)
			}
			if err := s.Feed(context.Background(), testPosts(4, 1, 10), nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Feed after CloseIntake: %v, want ErrClosed", err)
			}
			// Batches are still taken: workers flush what they hold.
			batch := appendBatchDurable(t, s, []uint64{1}, [][]byte{[]byte("b")})
			samePosts(t, nextPosts(t, s, 3), unspooled(posts), seqRange(1, 3))
			expectNoMore(t, s)
			s.Stored(batch)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNextWakesOnCloseIntake(t *testing.T) {
	bubble(t, func(t *testing.T) {
		s, _ := openTest(t, Options{Sync: true})
		got := make(chan bool, 1)
		go func() {
			_, ok := s.Next(context.Background())
			got <- ok
		}()
		synctest.Wait()
		if len(got) > 0 {
			t.Fatal("Next returned from an empty spool with intake open")
		}
		s.CloseIntake()
		select {
		case ok := <-got:
			if ok {
				t.Error("Next returned a post from an empty spool")
			}
		case <-time.After(testTimeout):
			t.Fatal("Next did not return after CloseIntake")
		}
	})
}

func TestNextWaitsForAppend(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				s, _ := openTest(t, Options{Sync: mode.sync})
				got := make(chan wire.Post, 1)
				go func() {
					p, _ := s.Next(context.Background())
					got <- p
				}()
				synctest.Wait()
				if len(got) > 0 {
					t.Fatal("Next returned from an empty spool")
				}
				posts := testPosts(1, 1, 10)
				if err := appendMode(s, posts, mode.durable); err != nil {
					t.Fatal(err)
				}
				select {
				case p := <-got:
					if p.Spool != 1 || p.Publication != posts[0].Publication {
						t.Errorf("Next = %d %q, want 1 %q", p.Spool, p.Publication, posts[0].Publication)
					}
				case <-time.After(testTimeout):
					t.Fatal("Next did not return the post appended while it waited")
				}
			})
		})
	}
}

func TestNextReturnsOnlyDurablePosts(t *testing.T) {
	// A post is read back only once it is durable: a worker never
	// processes a post a crash could still take away.
	bubble(t, func(t *testing.T) {
		efs := newErrorFS()
		gate := efs.gateSyncs()
		s, _ := openTest(t, Options{Sync: true, FS: efs})
		got := make(chan wire.Post, 1)
		go func() {
			p, _ := s.Next(context.Background())
			got <- p
		}()
		go s.Accept(testPosts(1, 1, 10))
		synctest.Wait()
		if len(got) > 0 {
			t.Fatal("Next returned a post before it was synced")
		}
		close(gate)
		select {
		case p := <-got:
			if p.Spool != 1 {
				t.Errorf("Next = %d, want 1", p.Spool)
			}
		case <-time.After(testTimeout):
			t.Fatal("Next did not return the post once synced")
		}
	})
}

func TestNextEndsWithContextAndClose(t *testing.T) {
	bubble(t, func(t *testing.T) {
		s, _ := openTest(t, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan bool, 1)
		go func() {
			_, ok := s.Next(ctx)
			got <- ok
		}()
		synctest.Wait()
		if len(got) > 0 {
			t.Fatal("Next returned from an empty spool")
		}
		cancel()
		select {
		case ok := <-got:
			if ok {
				t.Error("Next returned a post from an empty spool")
			}
		case <-time.After(testTimeout):
			t.Fatal("Next did not return after its context was canceled")
		}

		go func() {
			_, ok := s.Next(context.Background())
			got <- ok
		}()
		synctest.Wait()
		if len(got) > 0 {
			t.Fatal("Next returned from an empty spool")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-got:
			if ok {
				t.Error("Next returned a post from an empty spool")
			}
		case <-time.After(testTimeout):
			t.Fatal("Next did not return after Close")
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := s.Accept(testPosts(1, 1, 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Accept after Close: %v, want ErrClosed", err)
		}
		if err := s.AppendBatch(nil, nil, func(uint64, error) { t.Error("onDurable called for a refused batch") }); !errors.Is(err, ErrClosed) {
			t.Errorf("AppendBatch after Close: %v, want ErrClosed", err)
		}
		s.Stored(1) // nothing
	})
}

func TestPositions(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, Sync: true})
	if _, ok := s.Position("in.csv"); ok {
		t.Fatal("a new spool has a position")
	}
	posts := testPosts(1, 3, 10)
	at := Position{Source: "in.csv", Rows: 3, Hash: 0xfeedface}
	if err := feedSynced(s, posts, &at); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Position("in.csv"); !ok || got != at {
		t.Errorf("Position after a durable Feed = %+v, %v; want %+v", got, ok, at)
	}
	other := Position{Source: "other.csv", Rows: 1, Hash: 7}
	if err := feedSynced(s, testPosts(4, 1, 10), &other); err != nil {
		t.Fatal(err)
	}
	later := Position{Source: "in.csv", Rows: 5, Hash: 0xbeef}
	if err := feedSynced(s, testPosts(5, 2, 10), &later); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Position("in.csv"); got != later {
		t.Errorf("Position = %+v, want the later %+v", got, later)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// From the segments.
	s, _ = openTest(t, Options{Dir: dir, Sync: true})
	if got, ok := s.Position("in.csv"); !ok || got != later {
		t.Errorf("Position recovered from the segments = %+v, %v; want %+v", got, ok, later)
	}
	s.Stored(appendBatchDurable(t, s, seqsOf(nextPosts(t, s, 6)), nil))
	s.CloseIntake()
	expectNoMore(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, dir); len(files) != 0 {
		t.Fatalf("segments %v left after everything was stored", files)
	}

	// From the state file, the segments being gone.
	s, _ = openTest(t, Options{Dir: dir, Sync: true})
	if got, ok := s.Position("in.csv"); !ok || got != later {
		t.Errorf("Position from the state file = %+v, %v; want %+v", got, ok, later)
	}
	if err := s.Forget("in.csv"); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if err := s.Forget("never.csv"); err != nil {
		t.Fatalf("Forget of an unknown source: %v", err)
	}
	if _, ok := s.Position("in.csv"); ok {
		t.Error("Position after Forget still has one")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openTest(t, Options{Dir: dir, Sync: true})
	if got, ok := s.Position("in.csv"); ok {
		t.Errorf("a forgotten position is back after a reopen: %+v", got)
	}
	if got, ok := s.Position("other.csv"); !ok || got != other {
		t.Errorf("Forget of another source lost %+v: %+v, %v", other, got, ok)
	}
}

func TestPositionsSavedWhenSegmentsAreDeleted(t *testing.T) {
	// A position read from a segment that is deleted is kept in the
	// state file, even though the spool is never closed.
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{Dir: dir, SegmentBytes: 1024}
		s, _ := openTest(t, opts)
		at := Position{Source: "in.csv", Rows: 1, Hash: 1}
		if err := s.Feed(context.Background(), testPosts(1, 1, 200), &at); err != nil {
			t.Fatal(err)
		}
		appendOneByOne(t, s, testPosts(2, 10, 200))
		got := nextPosts(t, s, 11)
		s.Stored(appendBatchDurable(t, s, seqsOf(got), nil))
		synctest.Wait()
		if s.Stats().Deleted == 0 {
			t.Fatal("no segment was deleted")
		}
		// The files as a crash leaves them: the position's record is
		// gone, the state file has it.
		crash := t.TempDir()
		takeSnapshot(t, dir).write(t, crash)
		opts.Dir = crash
		s2, rec := openTest(t, opts)
		if got, ok := s2.Position("in.csv"); !ok || got != at {
			t.Errorf("Position after its segment was deleted = %+v, %v; want %+v", got, ok, at)
		}
		if len(rec.Damage) != 0 {
			t.Errorf("damage reported after deletions: %v", rec.Damage)
		}
	})
}

func TestPipeline(t *testing.T) {
	// The whole life of a post, concurrently, as the parent runs it:
	// durable appends from several goroutines, Next feeding batches,
	// batches stored as their onDurable reports them; with small segments,
	// so that segments are started and deleted throughout.
	const producers, each, perBatch = 4, 150, 5
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, Sync: true, SegmentBytes: 2048, WatchEvery: time.Millisecond})

	var appenders sync.WaitGroup
	for g := range producers {
		appenders.Go(func() {
			for i := range each {
				if err := s.Accept(testPosts(g*each+i, 1, 150)); err != nil {
					t.Errorf("Accept: %v", err)
					return
				}
			}
		})
	}

	durable := make(chan uint64, producers*each) // one per batch at most
	var batches sync.WaitGroup
	stored := make(chan struct{})
	go func() {
		defer close(stored)
		for seq := range durable {
			s.Stored(seq)
		}
	}()
	consumed := make(chan int, 1)
	go func() {
		n := 0
		var covers []uint64
		flush := func() {
			if len(covers) == 0 {
				return
			}
			batches.Add(1)
			err := s.AppendBatch(covers, [][]byte{[]byte("part")}, func(seq uint64, err error) {
				defer batches.Done()
				if err != nil {
					t.Errorf("onDurable: %v", err)
					return
				}
				durable <- seq // buffered: never blocks
			})
			if err != nil {
				t.Errorf("AppendBatch: %v", err)
				batches.Done()
			}
			covers = covers[:0]
		}
		for {
			p, ok := s.Next(context.Background())
			if !ok {
				break
			}
			n++
			covers = append(covers, p.Spool)
			if len(covers) == perBatch {
				flush()
			}
		}
		flush()
		consumed <- n
	}()

	done := make(chan struct{})
	go func() { appenders.Wait(); close(done) }()
	waitClosed(t, done, "appends")
	s.CloseIntake()
	select {
	case n := <-consumed:
		if n != producers*each {
			t.Errorf("Next returned %d posts, want %d", n, producers*each)
		}
	case <-time.After(testTimeout):
		t.Fatal("Next did not end after CloseIntake")
	}
	done = make(chan struct{})
	go func() { batches.Wait(); close(done) }()
	waitClosed(t, done, "every batch durable")
	close(durable) // every send on it is done
	waitClosed(t, stored, "every batch stored")

	if err := s.Err(); err != nil {
		t.Fatalf("the spool failed: %v", err)
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Deleted == 0 {
		t.Error("no segment was deleted while batches were stored")
	}
	if left := segFiles(t, dir); len(left) != 0 {
		t.Errorf("Close with everything stored left %v", left)
	}
}

// BenchmarkAppendDurable measures durable appends of one post each, as
// HTTP requests make them, from many goroutines at once: group commit
// shares one fdatasync among the appends waiting for it.
func BenchmarkAppendDurable(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", par), func(b *testing.B) {
			s, _ := openTest(b, Options{Sync: true})
			post := testPosts(1, 1, 300)[0]
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				posts := make([]wire.Post, 1)
				for pb.Next() {
					posts[0] = post
					if err := s.Accept(posts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Appended)/elapsed.Seconds(), "appends/s")
			b.ReportMetric(float64(st.Syncs)/float64(max(st.Appended, 1)), "syncs/append")
		})
	}
}
