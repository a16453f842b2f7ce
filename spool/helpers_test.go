package spool

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// testTimeout bounds every wait in these tests: far above what any step
// takes, so that reaching it means a hang, not a slow machine. In a
// synctest bubble it is fake time, and passes at once once every
// goroutine waits.
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

// bubble runs f in a synctest bubble: time is fake, and synctest.Wait
// returns once every goroutine of the spool (the sync loop, upkeep) and
// of the test waits, so that "has not returned" is a fact, not a guess.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
}

// testOptions fills in a temp dir, a test logger, a large MaxBytes and no
// reserve (the tests of the reserve ask for one) where opts leaves them
// unset.
func testOptions(t testing.TB, opts Options) Options {
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.Reserve == 0 {
		opts.Reserve = -1
	}
	return opts
}

// openTest opens a spool with testOptions(opts) and closes it when the
// test ends.
func openTest(t testing.TB, opts Options) (*Spool, *Recovery) {
	t.Helper()
	opts = testOptions(t, opts)
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

// appendMode appends posts as the HTTP API does (Accept: durable) or as
// an input does (Feed: not synced one by one).
func appendMode(s *Spool, posts []wire.Post, durable bool) error {
	if durable {
		return s.Accept(posts)
	}
	return s.Feed(context.Background(), posts, nil)
}

// feedSynced feeds posts and waits until they are durable, so that their
// position counts.
func feedSynced(s *Spool, posts []wire.Post, pos *Position) error {
	if err := s.Feed(context.Background(), posts, pos); err != nil || len(posts) == 0 {
		return err
	}
	last := posts[len(posts)-1].Spool
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.synced < last && s.err == nil && !s.syncDone {
		s.cond.Wait()
	}
	if s.synced < last {
		return fmt.Errorf("post %d never became durable: %v", last, s.err)
	}
	return nil
}

// appendOneByOne accepts each post on its own, as the HTTP API does.
func appendOneByOne(t testing.TB, s *Spool, posts []wire.Post) {
	t.Helper()
	for i := range posts {
		if err := s.Accept(posts[i : i+1]); err != nil {
			t.Fatalf("append post %d: %v", i, err)
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

// drain closes intake and reads every post Next has left.
func drain(t testing.TB, s *Spool) []wire.Post {
	t.Helper()
	s.CloseIntake()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out []wire.Post
	for {
		p, ok := s.Next(ctx)
		if !ok {
			break
		}
		out = append(out, p)
	}
	if ctx.Err() != nil {
		t.Fatalf("Next did not end after CloseIntake (%d posts read): %v", len(out), ctx.Err())
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

func seqsOf(posts []wire.Post) []uint64 {
	seqs := make([]uint64, len(posts))
	for i, p := range posts {
		seqs[i] = p.Spool
	}
	return seqs
}

// unspooled is posts with Spool cleared, as they were before Accept.
func unspooled(posts []wire.Post) []wire.Post {
	out := slices.Clone(posts)
	for i := range out {
		out[i].Spool = 0
	}
	return out
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
		n += diskBytesOf(t, path)
	}
	return n
}

func diskBytesOf(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
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
// which must report success, and returns the batch's seq.
func appendBatchDurable(t testing.TB, s *Spool, covers []uint64, parts [][]byte) uint64 {
	t.Helper()
	type result struct {
		seq uint64
		err error
	}
	done := make(chan result, 1)
	if err := s.AppendBatch(covers, parts, func(seq uint64, err error) { done <- result{seq, err} }); err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("AppendBatch's onDurable: %v", r.err)
		}
		return r.seq
	case <-time.After(testTimeout):
		t.Fatalf("AppendBatch's onDurable was not called within %s", testTimeout)
	}
	return 0
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

// isClosed reports whether ch is closed, for a check right after
// synctest.Wait.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

var syncModes = []struct {
	name    string
	sync    bool
	durable bool
}{
	{"no sync", false, false},
	{"sync, fed", true, false},
	{"sync, accepted", true, true},
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

// snapshot is the content of every file under a directory, by path
// relative to it.
type snapshot map[string][]byte

// takeSnapshot reads every file under dir.
func takeSnapshot(t testing.TB, dir string) snapshot {
	t.Helper()
	snap := make(snapshot)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		snap[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// write makes dir hold exactly the snapshot's files.
func (snap snapshot) write(t testing.TB, dir string) {
	t.Helper()
	for rel, b := range snap {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// equal reports how two snapshots differ, "" if they do not.
func (snap snapshot) diff(other snapshot) string {
	var out []string
	for rel, b := range snap {
		o, ok := other[rel]
		switch {
		case !ok:
			out = append(out, rel+" is gone")
		case string(o) != string(b):
			out = append(out, fmt.Sprintf("%s changed (%d bytes, then %d)", rel, len(b), len(o)))
		}
	}
	for rel := range other {
		if _, ok := snap[rel]; !ok {
			out = append(out, rel+" is new")
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}
