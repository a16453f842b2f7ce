package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// testTimeout bounds every wait in these tests: far above what any step
// takes, so that reaching it means a hang, not a slow machine.
const testTimeout = 20 * time.Second

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "spool", Level: hclog.Debug, Output: tWriter{t}})
}

// tWriter routes log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// openTest opens a spool with opts (a temp dir, a test logger and a large
// MaxBytes unless set) and closes it when the test ends.
func openTest(t testing.TB, opts Options) (*Spool, *Recovery) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 1 << 30
	}
	s, rec, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

// testPosts returns n posts numbered from first, each with a content of
// size bytes (at least the number).
func testPosts(first, n, size int) []wire.Post {
	posts := make([]wire.Post, n)
	for i := range posts {
		k := first + i
		c := fmt.Sprintf("content of post %d ", k)
		if len(c) < size {
			c += strings.Repeat("x", size-len(c))
		}
		posts[i] = wire.Post{Publication: fmt.Sprintf("pub-%d", k), Content: c, Attempts: k % 3}
	}
	return posts
}

// appendOneByOne appends each post on its own, as the HTTP API does.
func appendOneByOne(t testing.TB, s *Spool, posts []wire.Post, durable bool) {
	t.Helper()
	for i := range posts {
		if err := appendMode(s, posts[i:i+1], durable); err != nil {
			t.Fatalf("Append post %d: %v", i, err)
		}
	}
}

// nextPosts reads n posts, failing if Next gives up first.
func nextPosts(t testing.TB, s *Spool, n int) []wire.Post {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out := make([]wire.Post, 0, n)
	for len(out) < n {
		p, ok := s.Next(ctx)
		if !ok {
			t.Fatalf("Next gave up after %d of %d posts (ctx: %v, spool: %v)", len(out), n, ctx.Err(), s.Err())
		}
		out = append(out, p)
	}
	return out
}

// expectNoMore checks that Next says there is nothing more, without
// waiting for its context to end.
func expectNoMore(t testing.TB, s *Spool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if p, ok := s.Next(ctx); ok {
		t.Fatalf("Next returned post %d (%q), want none", p.Spool, p.Publication)
	}
	if ctx.Err() != nil {
		t.Fatal("Next waited for its context instead of saying there is no more")
	}
}

// samePosts checks that got are want in order, with Spool set to seqs.
func samePosts(t testing.TB, got, want []wire.Post, seqs []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d posts, want %d", len(got), len(want))
	}
	for i := range got {
		w := want[i]
		w.Spool = seqs[i]
		if got[i] != w {
			t.Errorf("post %d = {Spool:%d %q attempts %d}, want {Spool:%d %q attempts %d}",
				i, got[i].Spool, got[i].Publication, got[i].Attempts, w.Spool, w.Publication, w.Attempts)
		}
	}
}

func seqRange(first, n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(first + i)
	}
	return s
}

// segFiles lists the segment files in dir, oldest first.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// segFirst is the sequence number a segment file is named for.
func segFirst(t testing.TB, path string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// diskBytes is the size of every segment file in dir together.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, path := range segFiles(t, dir) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// checkBacklog checks that Backlog's size is what the files take on disk.
func checkBacklog(t testing.TB, s *Spool, dir string) {
	t.Helper()
	bytes, _ := s.Backlog()
	if disk := diskBytes(t, dir); bytes != disk {
		t.Errorf("Backlog reports %d bytes, the segment files hold %d", bytes, disk)
	}
}

// appendBatchDurable appends a batch and waits for its onDurable call,
// which must report success.
func appendBatchDurable(t testing.TB, s *Spool, covers []uint64, parts [][]byte) uint64 {
	t.Helper()
	done := make(chan error, 1)
	seq, err := s.AppendBatch(covers, parts, func(_ uint64, err error) { done <- err })
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("AppendBatch's onDurable: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("AppendBatch's onDurable was not called within %s", testTimeout)
	}
	return seq
}

// waitClosed waits for ch to close.
func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("%s: not done within %s", what, testTimeout)
	}
}

var syncModes = []struct {
	name    string
	sync    bool
	durable bool
}{
	{"no sync", false, false},
	{"sync, not durable", true, false},
	{"sync, durable", true, true},
}

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
					t.Fatalf("Append: %v", err)
				}
			}
			for i := range want {
				if want[i].Spool != uint64(i+1) {
					t.Errorf("Append set post %d's Spool to %d, want %d", i, want[i].Spool, i+1)
				}
				want[i].Spool = 0
			}
			got := nextPosts(t, s, len(want))
			samePosts(t, got, want, seqRange(1, len(want)))
			if st := s.Stats(); st.Appended != uint64(len(want)) {
				t.Errorf("Stats().Appended = %d, want %d", st.Appended, len(want))
			}
			if _, unread := s.Backlog(); unread != 0 {
				t.Errorf("Backlog unread = %d after Next returned every post, want 0", unread)
			}
			checkBacklog(t, s, dir)
			if s.Max() != 1<<30 {
				t.Errorf("Max() = %d, want %d", s.Max(), 1<<30)
			}
			if err := s.Err(); err != nil {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

func TestAppendNothingIsNoop(t *testing.T) {
	s, _ := openTest(t, Options{})
	if err := feedSynced(s, nil, &Position{Source: "x", Rows: 1}); err != nil {
		t.Fatalf("Append(nil) = %v", err)
	}
	if st := s.Stats(); st.Appended != 0 {
		t.Errorf("Appended = %d", st.Appended)
	}
	if _, ok := s.Position("x"); ok {
		t.Error("an empty Append recorded a position")
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
					t.Errorf("goroutine %d: Append: %v", g, err)
					return
				}
				if d := durableThrough(s); d < posts[0].Spool {
					t.Errorf("Append(durable) returned for record %d with only %d durable", posts[0].Spool, d)
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
				t.Errorf("recovered %d segments of %d bytes, damage %q; want 1 of %d, none", rec.Segments, rec.Bytes, rec.Damage, diskBytes(t, dir))
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
			for i := range posts {
				posts[i].Spool = 0
			}
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
			more[0].Spool = 0
			samePosts(t, nextPosts(t, s, 1), more, []uint64{8})

			s.Stored(batch)
			s.Stored(batch) // twice: nothing more
			s.Stored(12345) // unknown: nothing
			last := appendBatchDurable(t, s, []uint64{1, 3, 6, 8}, [][]byte{[]byte("second")})
			s.Stored(last)
			s.CloseIntake()
			expectNoMore(t, s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if files := segFiles(t, dir); len(files) != 0 {
				t.Errorf("Close with everything stored left %v", files)
			}

			_, rec = openTest(t, Options{Dir: dir, Sync: mode.sync})
			if rec.Segments != 0 || rec.Posts != 0 || len(rec.Batches) != 0 {
				t.Errorf("reopened after everything was stored, recovered %+v", rec)
			}
		})
	}
}

func TestRecoveredBatchOfDeletedPosts(t *testing.T) {
	// A batch whose posts were in a segment already deleted covers only
	// the posts still spooled: the others were stored with it.
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, SegmentBytes: 1024})
	posts := testPosts(1, 12, 200)
	appendOneByOne(t, s, posts, false)
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
	// Delete the first segment by hand, as Stored would have.
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
}

// writeDamage changes a closed spool's last segment; prev and end are
// where its last two records end.
type writeDamage func(t *testing.T, path string, prev, end int64)

func truncateTo(off func(prev, end int64) int64) writeDamage {
	return func(t *testing.T, path string, prev, end int64) {
		if err := os.Truncate(path, off(prev, end)); err != nil {
			t.Fatal(err)
		}
	}
}

func xorAt(off func(prev, end int64) int64, x byte) writeDamage {
	return func(t *testing.T, path string, prev, end int64) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[off(prev, end)] ^= x
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func appendBytes(tail []byte) writeDamage {
	return func(t *testing.T, path string, prev, end int64) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(tail); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTornTail(t *testing.T) {
	const n = 5
	cases := []struct {
		name   string
		damage writeDamage
		keep   int // posts that survive
	}{
		{"cut in the last body", truncateTo(func(prev, end int64) int64 { return end - 3 }), n - 1},
		{"cut in the last header", truncateTo(func(prev, end int64) int64 { return prev + 5 }), n - 1},
		{"cut after the last header", truncateTo(func(prev, end int64) int64 { return prev + recordHeader }), n - 1},
		{"byte flipped in the last body", xorAt(func(prev, end int64) int64 { return end - 2 }, 0x01), n - 1},
		{"byte flipped in the last crc", xorAt(func(prev, end int64) int64 { return prev + 5 }, 0x80), n - 1},
		{"byte flipped in the last seq", xorAt(func(prev, end int64) int64 { return prev + 10 }, 0x04), n - 1},
		{"last length made huge", xorAt(func(prev, end int64) int64 { return prev + 3 }, 0x7f), n - 1},
		{"zeros after the last record", appendBytes(make([]byte, 100)), n},
		{"a partial record after the last", appendBytes(record(kindPost, n+1, []byte("abcdef"))[:20]), n},
		{"a record out of sequence after the last", appendBytes(record(kindPost, n+5, appendPost(nil, &wire.Post{}, nil))), n},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openTest(t, Options{Dir: dir})
			posts := testPosts(1, n, 40)
			ends := make([]int64, n)
			for i := range posts {
				if err := s.Feed(context.Background(), posts[i:i+1], nil); err != nil {
					t.Fatal(err)
				}
				ends[i] = diskBytes(t, dir)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := segFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d segment files, want 1", len(files))
			}
			path := files[0]
			tc.damage(t, path, ends[n-2], ends[n-1])

			s, rec := openTest(t, Options{Dir: dir})
			if len(rec.Damage) != 1 || !strings.Contains(rec.Damage[0], path) {
				t.Errorf("Recovery.Damage = %q, want one line naming %s", rec.Damage, path)
			}
			if rec.Posts != tc.keep {
				t.Errorf("Recovery.Posts = %d, want %d", rec.Posts, tc.keep)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := ends[tc.keep-1]; fi.Size() != want {
				t.Errorf("the damaged segment is %d bytes after Open, want it cut back to %d", fi.Size(), want)
			}
			checkBacklog(t, s, dir)
			for i := range posts {
				posts[i].Spool = 0
			}
			samePosts(t, nextPosts(t, s, tc.keep), posts[:tc.keep], seqRange(1, tc.keep))

			more := testPosts(100, 1, 10)
			if err := s.Feed(context.Background(), more, nil); err != nil {
				t.Fatalf("Append after recovery: %v", err)
			}
			if more[0].Spool != uint64(tc.keep+1) {
				t.Errorf("the post after recovery is record %d, want %d", more[0].Spool, tc.keep+1)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			_, rec = openTest(t, Options{Dir: dir})
			if len(rec.Damage) != 0 || rec.Posts != tc.keep+1 {
				t.Errorf("second reopen: damage %q, %d posts; want none, %d", rec.Damage, rec.Posts, tc.keep+1)
			}
		})
	}
}

func TestDamageInAnEarlierSegment(t *testing.T) {
	// Damage in a segment that is not the last is cut off too (with what
	// follows it in that segment); the later segments are kept.
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, SegmentBytes: 1024})
	posts := testPosts(1, 12, 200)
	appendOneByOne(t, s, posts, false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segment files, want at least 3", len(files))
	}
	inFirst := int(segFirst(t, files[1]) - 1)
	if err := os.Truncate(files[0], diskBytesOf(t, files[0])-1); err != nil {
		t.Fatal(err)
	}
	s, rec := openTest(t, Options{Dir: dir, SegmentBytes: 1024})
	if len(rec.Damage) != 1 || !strings.Contains(rec.Damage[0], files[0]) || !strings.Contains(rec.Damage[0], "not the last") {
		t.Errorf("Recovery.Damage = %q, want one line naming %s as not the last", rec.Damage, files[0])
	}
	if want := len(posts) - 1; rec.Posts != want {
		t.Errorf("Recovery.Posts = %d, want %d", rec.Posts, want)
	}
	got := nextPosts(t, s, len(posts)-1)
	for i, p := range got {
		want := uint64(i + 1)
		if i >= inFirst-1 {
			want++ // the last post of the first segment is gone
		}
		if p.Spool != want {
			t.Errorf("post %d is record %d, want %d", i, p.Spool, want)
		}
	}
	checkBacklog(t, s, dir)
}

func diskBytesOf(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestPartialSegmentHeader(t *testing.T) {
	// A crash while a segment file is created leaves it with part of its
	// header; Open writes the header and appends there.
	cases := []struct {
		name    string
		before  int // posts spooled, closed, before the partial file
		partial string
	}{
		{"only segment, empty", 0, ""},
		{"only segment, part of the header", 0, segmentHeader[:9]},
		{"after a full segment", 3, segmentHeader[:4]},
		{"after a full segment, all but one byte", 3, segmentHeader[:len(segmentHeader)-1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before > 0 {
				s, _ := openTest(t, Options{Dir: dir})
				appendOneByOne(t, s, testPosts(1, tc.before, 10), false)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, segmentName(uint64(tc.before+1)))
			if err := os.WriteFile(path, []byte(tc.partial), 0o640); err != nil {
				t.Fatal(err)
			}
			s, rec := openTest(t, Options{Dir: dir})
			if rec.Posts != tc.before || len(rec.Damage) != 0 {
				t.Errorf("recovered %d posts, damage %q; want %d, none", rec.Posts, rec.Damage, tc.before)
			}
			if want := min(tc.before, 1) + 1; rec.Segments != want {
				t.Errorf("Recovery.Segments = %d, want %d", rec.Segments, want)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != segmentHeader {
				t.Errorf("after Open the segment holds %q, want the header", b)
			}
			if rec.Bytes != diskBytes(t, dir) {
				t.Errorf("Recovery.Bytes = %d, the files hold %d", rec.Bytes, diskBytes(t, dir))
			}
			checkBacklog(t, s, dir)
			more := testPosts(100, 1, 10)
			if err := s.Feed(context.Background(), more, nil); err != nil {
				t.Fatal(err)
			}
			if more[0].Spool != uint64(tc.before+1) {
				t.Errorf("the post after recovery is record %d, want %d", more[0].Spool, tc.before+1)
			}
			checkBacklog(t, s, dir)
			nextPosts(t, s, tc.before+1)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, rec = openTest(t, Options{Dir: dir})
			if rec.Posts != tc.before+1 || len(rec.Damage) != 0 {
				t.Errorf("second reopen: %d posts, damage %q; want %d, none", rec.Posts, rec.Damage, tc.before+1)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // files to put in dir
		opts  Options
		want  string // in the error
	}{
		{"MaxBytes not positive", nil, Options{MaxBytes: -1}, "MaxBytes"},
		{"a file not named like a segment", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "notes.seg"), "hello")
		}, Options{}, "notes.seg"},
		{"a segment from elsewhere", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, segmentName(1)), "SOME OTHER FILE FORMAT\n")
		}, Options{}, segmentName(1)},
		{"segments that overlap", func(t *testing.T, dir string) {
			s, _ := openTest(t, Options{Dir: dir})
			appendOneByOne(t, s, testPosts(1, 3, 10), false)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, segmentName(2)), segmentHeader)
		}, Options{}, segmentName(2)},
		{"a positions file that is not JSON", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, positionsFile), "{")
		}, Options{}, positionsFile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			opts := tc.opts
			opts.Dir = dir
			opts.Log = testLogger(t)
			if opts.MaxBytes == 0 {
				opts.MaxBytes = 1 << 30
			}
			s, _, err := Open(opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v; want it to name %q", err, tc.want)
			}
		})
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestStoredDeletesDonePrefix(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openTest(t, Options{Dir: dir, Sync: mode.sync, SegmentBytes: 1024})
			posts := testPosts(1, 20, 200)
			appendOneByOne(t, s, posts, mode.durable)
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
			left = segFiles(t, dir)
			reading := files[len(files)-1] // Next returned the last post, in the last of files
			if len(left) == 0 || left[0] != reading {
				t.Errorf("after storing every post, segments %v are left; want those from %s (Next's) on", left, reading)
			}
			if left[len(left)-1] < files[len(files)-1] {
				t.Errorf("the segment being appended to is gone: %v", left)
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
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, MaxBytes: 4096, SegmentBytes: 1024}
	s, _ := openTest(t, opts)
	ctx := context.Background()

	// fill appends posts until the spool refuses one, and returns those
	// it took and the one it refused.
	next := 1
	fill := func() (took []wire.Post, refused wire.Post) {
		t.Helper()
		for range 100 {
			p := testPosts(next, 1, 200)
			next++
			beforeBytes, beforeUnread := s.Backlog()
			beforeDisk := diskBytes(t, dir)
			err := s.Feed(ctx, p, &Position{Source: "in", Rows: int64(next)})
			if err == nil {
				took = append(took, p[0])
				continue
			}
			if !errors.Is(err, ErrFull) {
				t.Fatalf("Append on a full spool: %v, want ErrFull", err)
			}
			if p[0].Spool != 0 {
				t.Errorf("a refused post got Spool %d", p[0].Spool)
			}
			if b, u := s.Backlog(); b != beforeBytes || u != beforeUnread || diskBytes(t, dir) != beforeDisk {
				t.Errorf("a refused Append changed the spool: backlog %d/%d -> %d/%d", beforeBytes, beforeUnread, b, u)
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
	if pos, _ := s.Position("in"); pos.Rows != int64(len(took)+1) {
		t.Errorf("the refused post moved the position to %d rows, want %d", pos.Rows, len(took)+1)
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
	if err := s.Append(ctx, testPosts(next, 1, 200), nil, false, false); !errors.Is(err, ErrFull) {
		t.Fatalf("Append on the reopened full spool: %v, want ErrFull", err)
	}

	// Storing what it holds makes room.
	s.Stored(appendBatchDurable(t, s, seqsOf(got), nil))
	if b, _ := s.Backlog(); b >= opts.MaxBytes/2 {
		t.Errorf("after storing every post the spool holds %d bytes", b)
	}
	if err := s.Append(ctx, testPosts(next, 1, 200), nil, false, false); err != nil {
		t.Fatalf("Append after Stored made room: %v", err)
	}
	next++
	roomy := nextPosts(t, s, 1)

	// A waiting Append on a full spool returns once there is room.
	took, _ = fill()
	got = nextPosts(t, s, len(took))
	waiting := testPosts(next, 1, 200)
	done := make(chan struct{})
	var waitErr error
	go func() {
		defer close(done)
		waitErr = s.Feed(ctx, waiting, nil)
	}()
	select {
	case <-done:
		t.Fatalf("Append(wait) on a full spool returned at once: %v", waitErr)
	default:
	}
	s.Stored(appendBatchDurable(t, s, seqsOf(append(roomy, got...)), nil))
	waitClosed(t, done, "Append(wait) after Stored made room")
	if waitErr != nil {
		t.Fatalf("Append(wait): %v", waitErr)
	}
	if waiting[0].Spool == 0 {
		t.Error("Append(wait) did not set Spool")
	}
	if p := nextPosts(t, s, 1)[0]; p.Spool != waiting[0].Spool || p.Publication != waiting[0].Publication {
		t.Errorf("Next returned %d %q, want the waiting post %d %q", p.Spool, p.Publication, waiting[0].Spool, waiting[0].Publication)
	}

	// A waiting Append gives up when its context ends.
	fill()
	cctx, cancel := context.WithCancel(ctx)
	done = make(chan struct{})
	go func() {
		defer close(done)
		waitErr = s.Append(cctx, testPosts(next, 1, 200), nil, false, true)
	}()
	cancel()
	waitClosed(t, done, "Append(wait) after its context was canceled")
	if !errors.Is(waitErr, context.Canceled) {
		t.Errorf("Append(wait) with its context canceled: %v, want context.Canceled", waitErr)
	}
}

func seqsOf(posts []wire.Post) []uint64 {
	seqs := make([]uint64, len(posts))
	for i, p := range posts {
		seqs[i] = p.Spool
	}
	return seqs
}

func TestAppendWaitsForNext(t *testing.T) {
	// With wait, Append also holds back while Next is more than two
	// segments behind, so that an input is not copied whole to disk.
	s, _ := openTest(t, Options{SegmentBytes: 1024})
	for range 12 { // about 2.6 KiB unread: beyond two segments
		appendOneByOne(t, s, testPosts(1, 1, 200), false)
	}
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = s.Append(context.Background(), testPosts(2, 1, 200), nil, false, true)
	}()
	select {
	case <-done:
		t.Fatalf("Append(wait) returned with Next far behind: %v", err)
	default:
	}
	nextPosts(t, s, 12)
	waitClosed(t, done, "Append(wait) after Next caught up")
	if err != nil {
		t.Fatal(err)
	}
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
			if err := s.Append(context.Background(), testPosts(4, 1, 10), nil, mode.durable, false); !errors.Is(err, ErrClosed) {
				t.Errorf("Append after CloseIntake: %v, want ErrClosed", err)
			}
			if err := s.Append(context.Background(), testPosts(4, 1, 10), nil, mode.durable, true); !errors.Is(err, ErrClosed) {
				t.Errorf("Append(wait) after CloseIntake: %v, want ErrClosed", err)
			}
			// Batches are still taken: workers flush what they hold.
			batch := appendBatchDurable(t, s, []uint64{1}, [][]byte{[]byte("b")})
			for i := range posts {
				posts[i].Spool = 0
			}
			samePosts(t, nextPosts(t, s, 3), posts, seqRange(1, 3))
			expectNoMore(t, s)
			s.Stored(batch)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNextWakesOnCloseIntake(t *testing.T) {
	s, _ := openTest(t, Options{Sync: true})
	got := make(chan bool, 1)
	go func() {
		_, ok := s.Next(context.Background())
		got <- ok
	}()
	s.CloseIntake()
	select {
	case ok := <-got:
		if ok {
			t.Error("Next returned a post from an empty spool")
		}
	case <-time.After(testTimeout):
		t.Fatal("Next did not return after CloseIntake")
	}
}

func TestNextWaitsForAppend(t *testing.T) {
	s, _ := openTest(t, Options{Sync: true})
	got := make(chan wire.Post, 1)
	go func() {
		p, _ := s.Next(context.Background())
		got <- p
	}()
	posts := testPosts(1, 1, 10)
	if err := s.Feed(context.Background(), posts, nil); err != nil {
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
}

func TestNextEndsWithContextAndClose(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan bool, 1)
	go func() {
		_, ok := s.Next(ctx)
		got <- ok
	}()
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
	if err := s.Append(context.Background(), testPosts(1, 1, 1), nil, false, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.AppendBatch(nil, nil, func(uint64, error) { t.Error("onDurable called for a refused batch") }); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendBatch after Close: %v, want ErrClosed", err)
	}
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
		t.Errorf("Position after a durable Append = %+v, %v; want %+v", got, ok, at)
	}
	other := Position{Source: "other.csv", Rows: 1, Hash: 7}
	if err := s.Append(context.Background(), testPosts(4, 1, 10), &other, true, false); err != nil {
		t.Fatal(err)
	}
	later := Position{Source: "in.csv", Rows: 5, Hash: 0xbeef}
	if err := s.Append(context.Background(), testPosts(5, 2, 10), &later, true, false); err != nil {
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

	// From the positions file, the segments being gone.
	s, _ = openTest(t, Options{Dir: dir, Sync: true})
	if got, ok := s.Position("in.csv"); !ok || got != later {
		t.Errorf("Position from the positions file = %+v, %v; want %+v", got, ok, later)
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
	// positions file, even though the spool is never closed.
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1024}
	s, _ := openTest(t, opts)
	at := Position{Source: "in.csv", Rows: 1, Hash: 1}
	if err := s.Append(context.Background(), testPosts(1, 1, 200), &at, false, false); err != nil {
		t.Fatal(err)
	}
	appendOneByOne(t, s, testPosts(2, 10, 200), false)
	got := nextPosts(t, s, 11)
	s.Stored(appendBatchDurable(t, s, seqsOf(got), nil))
	if s.Stats().Deleted == 0 {
		t.Fatal("no segment was deleted")
	}
	// A second spool on the same files, as after a crash: it must still
	// know the position, though its record is gone.
	s2, _ := openTest(t, opts)
	if got, ok := s2.Position("in.csv"); !ok || got != at {
		t.Errorf("Position after its segment was deleted = %+v, %v; want %+v", got, ok, at)
	}
}

func TestPipeline(t *testing.T) {
	// The whole life of a post, concurrently, as the parent runs it:
	// durable appends from several goroutines, Next feeding batches,
	// batches stored as their onDurable reports them; with small segments,
	// so that segments are started and deleted throughout.
	const producers, each, perBatch = 4, 150, 5
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir, Sync: true, SegmentBytes: 2048})

	var appenders sync.WaitGroup
	for g := range producers {
		appenders.Go(func() {
			for i := range each {
				if err := s.Append(context.Background(), testPosts(g*each+i, 1, 150), nil, true, false); err != nil {
					t.Errorf("Append: %v", err)
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
			// onDurable must not call into the spool, and it may run
			// before AppendBatch returns the seq: it hands on from a
			// goroutine that waits for the seq.
			var seq uint64
			ready := make(chan struct{})
			seq, err := s.AppendBatch(covers, [][]byte{[]byte("part")}, func(_ uint64, err error) {
				if err != nil {
					t.Errorf("onDurable: %v", err)
					batches.Done()
					return
				}
				go func() {
					defer batches.Done()
					<-ready
					durable <- seq
				}()
			})
			close(ready)
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
	if st.Deleted == 0 {
		t.Error("no segment was deleted while batches were stored")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
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
