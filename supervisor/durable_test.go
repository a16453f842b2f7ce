package supervisor

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// crashedSpool leaves in dir (a data directory) what a parent killed
// mid-run leaves: posts spooled, and a batch covering the first covered of
// them, spooled but (unless stored) not applied. It returns the posts and
// the batch.
func crashedSpool(t *testing.T, dir string, posts []string, covered int) ([]wire.Post, *wire.Batch) {
	t.Helper()
	sdir := filepath.Join(dir, "ingest-spool")
	lock, err := spool.Acquire(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	s, _, err := spool.Open(spool.Options{Dir: sdir, Sync: true, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	wp := make([]wire.Post, len(posts))
	for i, c := range posts {
		wp[i] = wire.Post{Publication: fmt.Sprintf("pub%d", i%3), Content: c}
	}
	if err := s.Accept(wp); err != nil {
		t.Fatal(err)
	}
	// The batch a worker would have made of the first posts.
	b := &wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: covered}
	pubs := map[string]*wire.PubCount{}
	var covers []uint64
	for i := range covered {
		key := wp[i].Publication
		pc := pubs[key]
		if pc == nil {
			pc = &wire.PubCount{Key: key, Name: key}
			pubs[key] = pc
		}
		pc.Articles++
		words, _ := fakeNER{}.Words(wp[i].Content)
		for _, w := range words {
			pc.Entities = append(pc.Entities, wire.EntityCount{Word: w, Count: 1})
		}
		covers = append(covers, wp[i].Spool)
	}
	for _, pc := range pubs {
		b.Publications = append(b.Publications, *pc)
	}
	raw, err := wire.NewEncoder(nil, 0).Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	durable := make(chan error, 1)
	if err := s.AppendBatch(covers, [][]byte{raw}, func(_ uint64, err error) { durable <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-durable; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // nothing is done: the segments stay
		t.Fatal(err)
	}
	return wp, b
}

// TestRecoveryCountsEachPostOnce: a parent started on a spool that a
// killed parent left stores every spooled post exactly once, whether the
// spooled batch was stored before the crash or not, and leaves the spool
// empty.
func TestRecoveryCountsEachPostOnce(t *testing.T) {
	for _, storedBefore := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch stored before the crash=%v", storedBefore), func(t *testing.T) {
			dir := t.TempDir()
			posts := manyPosts(40)
			_, batch := crashedSpool(t, dir, posts, 15)
			db := filepath.Join(dir, "ingest.db")
			if storedBefore {
				ctx := context.Background()
				s, err := sink.Open(ctx, sink.Config{Kind: sink.KindSQLite, DB: db})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Apply(ctx, batch); err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
			r := startRun(t, []string{}, "--db", db, "--data-dir", dir, "--top-n", "0")
			if err := r.wait(t, 60*time.Second); err != nil {
				t.Fatalf("Run: %v", err)
			}
			r.db = db
			assertStored(t, r, posts)
			assertEnded(t, r, EndedClean, 40, 40, 0)
			if r.rep.Recovered != 40 {
				t.Errorf("recovered %d posts (25 alone, 15 in a batch), want 40", r.rep.Recovered)
			}
			wantDuplicates := int64(0)
			if storedBefore {
				wantDuplicates = 1 // the recovered batch, offered again
			}
			if r.rep.Duplicates != wantDuplicates {
				t.Errorf("%d duplicate batches, want %d", r.rep.Duplicates, wantDuplicates)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "ingest-spool", "*.seg"))
			if len(segs) != 0 {
				t.Errorf("segments left after everything was stored: %v", segs)
			}

			// A second start finds nothing to recover and counts nothing again.
			again := startRun(t, []string{}, "--db", db, "--data-dir", dir, "--top-n", "0")
			if err := again.wait(t, 60*time.Second); err != nil {
				t.Fatalf("second Run: %v", err)
			}
			again.db = db
			assertStored(t, again, posts)
			assertEnded(t, again, EndedClean, 0, 0, 0)
			if again.rep.Recovered != 0 {
				t.Errorf("the second start recovered %d posts", again.rep.Recovered)
			}
		})
	}
}

// TestSecondParentRefused: a parent on a data directory another holds
// exits with an error naming the holder, before starting any child.
func TestSecondParentRefused(t *testing.T) {
	dir := t.TempDir()
	lock, err := spool.Acquire(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	r := startRun(t, []string{}, "--data-dir", dir)
	err = r.wait(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "is used by another ingest (pid") || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("Run on a locked data directory: %v; want a refusal naming the holder and --data-dir", err)
	}
	if r.rep.Ending != EndedBeforeStart {
		t.Errorf("Run reported %s, want %s: no child started", r.rep.Ending, EndedBeforeStart)
	}
}
