package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

type ents = []wire.EntityCount

// applyCase is one idempotency case: batches applied in order, whether
// each was a duplicate, and what must be stored after.
type applyCase struct {
	name    string
	batches []wire.Batch
	dups    []bool // Apply's duplicate, per batch
	want    stored
}

// applyCases are the cases every sink must pass. keptName says which
// display name a sink keeps when batches disagree: SQLite keeps the
// "first", Firestore the "last" (keeping the first would cost it a read).
func applyCases(keptName string) []applyCase {
	times := wire.PubCount{Key: "times", Name: "The Times", Articles: 2,
		Entities: ents{{Word: "london", Count: 3}, {Word: "paris", Count: 1}}}
	timesAgain := wire.PubCount{Key: "times", Name: "THE TIMES", Articles: 1,
		Entities: ents{{Word: "london", Count: 1}, {Word: "rome", Count: 4}}}
	post := wire.PubCount{Key: "post", Name: "Post", Articles: 1, Entities: ents{{Word: "london", Count: 7}}}
	names := map[string]string{"first": "The Times", "last": "THE TIMES"}
	return []applyCase{{

		name:    "same batch twice counts once",
		batches: []wire.Batch{{ID: "a", Publications: []wire.PubCount{times, post}}, {ID: "a", Publications: []wire.PubCount{times, post}}},
		dups:    []bool{false, true},
		want: stored{
			Pubs: map[string]Publication{"times": {"times", "The Times", 2}, "post": {"post", "Post", 1}},
			Entities: map[string]map[string]int64{
				"times": {"london": 3, "paris": 1},
				"post":  {"london": 7},
			},
			Applied: []string{"a"},
		},
	}, {
		name:    "a replay counts once even when its content differs",
		batches: []wire.Batch{{ID: "a", Publications: []wire.PubCount{post}}, {ID: "a", Publications: []wire.PubCount{times}}},
		dups:    []bool{false, true},
		want: stored{
			Pubs:     map[string]Publication{"post": {"post", "Post", 1}},
			Entities: map[string]map[string]int64{"post": {"london": 7}},
			Applied:  []string{"a"},
		},
	}, {
		name:    "different batches add up, " + keptName + " name kept",
		batches: []wire.Batch{{ID: "a", Publications: []wire.PubCount{times}}, {ID: "b", Publications: []wire.PubCount{timesAgain, post}}},
		dups:    []bool{false, false},
		want: stored{
			Pubs: map[string]Publication{"times": {"times", names[keptName], 3}, "post": {"post", "Post", 1}},
			Entities: map[string]map[string]int64{
				"times": {"london": 4, "paris": 1, "rome": 4},
				"post":  {"london": 7},
			},
			Applied: []string{"a", "b"},
		},
	}, {
		name: "split parts apply independently and idempotently",
		batches: []wire.Batch{
			{ID: "s", Part: 1, Parts: 2, Posts: 3, Publications: []wire.PubCount{{Key: "times", Name: "The Times", Articles: 3,
				Entities: ents{{Word: "rome", Count: 2}}}}},
			// The first part carries entities under a publication with no
			// articles (and here no name) of its own.
			{ID: "s", Part: 0, Parts: 2, Publications: []wire.PubCount{{Key: "times", Entities: ents{{Word: "london", Count: 5}}},
				{Key: "post", Entities: ents{{Word: "oslo", Count: 1}}}}},
			{ID: "s", Part: 1, Parts: 2, Posts: 3, Publications: []wire.PubCount{{Key: "times", Name: "The Times", Articles: 3,
				Entities: ents{{Word: "rome", Count: 2}}}}},
			{ID: "s", Part: 0, Parts: 2, Publications: []wire.PubCount{{Key: "times", Entities: ents{{Word: "london", Count: 5}}}}},
		},
		dups: []bool{false, false, true, true},
		want: stored{
			Pubs: map[string]Publication{"times": {"times", "The Times", 3}, "post": {"post", "", 0}},
			Entities: map[string]map[string]int64{
				"times": {"london": 5, "rome": 2},
				"post":  {"oslo": 1},
			},
			Applied: []string{"s/0", "s/1"},
		},
	}, {
		name: "a word twice in one batch adds up",
		batches: []wire.Batch{{ID: "a", Publications: []wire.PubCount{
			{Key: "post", Name: "Post", Articles: 1, Entities: ents{{Word: "x", Count: 1}, {Word: "x", Count: 2}}},
			{Key: "post", Name: "Post", Articles: 1, Entities: ents{{Word: "x", Count: 4}}},
		}}},
		dups: []bool{false},
		want: stored{
			Pubs:     map[string]Publication{"post": {"post", "Post", 2}},
			Entities: map[string]map[string]int64{"post": {"x": 7}},
			Applied:  []string{"a"},
		},
	}, {
		name:    "empty batch is recorded",
		batches: []wire.Batch{{ID: "e"}, {ID: "e"}},
		dups:    []bool{false, true},
		want:    stored{Pubs: map[string]Publication{}, Entities: map[string]map[string]int64{}, Applied: []string{"e"}},
	}}
}

// runApplyCase applies tc's batches to s and compares what read returns.
func runApplyCase(t *testing.T, s Sink, tc applyCase, read func() stored) {
	t.Helper()
	for i := range tc.batches {
		dup, err := s.Apply(t.Context(), &tc.batches[i])
		if err != nil {
			t.Fatalf("Apply #%d: %v", i, err)
		}
		if dup != tc.dups[i] {
			t.Errorf("Apply #%d (%s): duplicate = %v, want %v", i, tc.batches[i].PartID(), dup, tc.dups[i])
		}
	}
	if got := read(); !reflect.DeepEqual(got, tc.want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, tc.want)
	}
}

func TestApply(t *testing.T) {
	tests := append(applyCases("first"), applyCase{
		name: "first non-empty name kept",
		batches: []wire.Batch{
			{ID: "a", Publications: []wire.PubCount{{Key: "post", Articles: 0}}},
			{ID: "b", Publications: []wire.PubCount{{Key: "post", Name: "Post", Articles: 1}}},
			{ID: "c", Publications: []wire.PubCount{{Key: "post", Name: "POST", Articles: 1}}},
		},
		dups: []bool{false, false, false},
		want: stored{
			Pubs:     map[string]Publication{"post": {"post", "Post", 2}},
			Entities: map[string]map[string]int64{},
			Applied:  []string{"a", "b", "c"},
		},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			runApplyCase(t, s, tt, func() stored { return readStored(t, s.path) })
		})
	}
}

// A batch of many rows crosses every chunk size of the entity upsert.
func TestApplyManyRows(t *testing.T) {
	s := openTest(t)
	for _, n := range []int{0, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000, 4097} {
		b := wire.Batch{ID: fmt.Sprint("n", n), Publications: []wire.PubCount{{Key: fmt.Sprint("p", n), Articles: 1}}}
		want := map[string]int64{}
		for i := range n {
			w := fmt.Sprintf("w%05d", i)
			b.Publications[0].Entities = append(b.Publications[0].Entities, wire.EntityCount{Word: w, Count: int64(i + 1)})
			want[w] = int64(i + 1)
		}
		for range 2 {
			if _, err := s.Apply(t.Context(), &b); err != nil {
				t.Fatal(err)
			}
		}
		got := readStored(t, s.path).Entities[fmt.Sprint("p", n)]
		if len(want) == 0 {
			want = nil
		}
		if !maps.Equal(got, want) {
			t.Errorf("%d rows: stored %d rows, want %d", n, len(got), len(want))
		}
	}
}

func TestApplyRejects(t *testing.T) {
	s := openTest(t)
	tests := []struct {
		name string
		b    *wire.Batch
		want string
	}{
		{"nil", nil, "nil batch"},
		{"no ID", &wire.Batch{Publications: []wire.PubCount{{Key: "p"}}}, "the worker must set Batch.ID"},
		{"part out of range", &wire.Batch{ID: "x", Part: 2, Parts: 2}, "part 2 out of range 0..1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(t.Context(), tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if got := readStored(t, s.path); len(got.Applied) != 0 || len(got.Pubs) != 0 {
		t.Fatalf("rejected batches stored: %+v", got)
	}
}

// holdWriteLock takes the file's write lock on a connection of its own, as
// another saver process in the middle of a transaction would. release
// ends that transaction.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Error(err)
			}
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// openLocked opens a sink on a file whose write lock another connection
// holds, with short lock waits. Its log lines go to the returned channel.
func openLocked(t *testing.T, retries int, backoff time.Duration) (*SQLite, <-chan string, func()) {
	path := filepath.Join(t.TempDir(), "ingest.db")
	lines := make(chan string, 100)
	s, err := openSQLite(t.Context(), path, testLogger(t, lines), lockWait{busy: 20 * time.Millisecond, retries: retries, backoff: backoff}, DefaultKeyTTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, lines, holdWriteLock(t, path)
}

// waitLine returns once a log line containing want arrives.
func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line containing %q within 30s", want)
		}
	}
}

// Savers open the file together: an open that finds it locked tries again,
// with backoff, as Apply does, and gives up saying what to check.
func TestOpenBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ingest.db")
	if err := openAt(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	open := func(retries int, lines chan string) (*SQLite, error) {
		return openSQLite(t.Context(), path, testLogger(t, lines), lockWait{busy: 20 * time.Millisecond, retries: retries, backoff: time.Millisecond}, DefaultKeyTTL)
	}

	release := holdWriteLock(t, path)
	if _, err := open(2, nil); err == nil || !strings.Contains(err.Error(), "another process holds the database locked") || sqliteCode(err) != 5 {
		t.Fatalf("open while locked, 2 retries: %v; want SQLITE_BUSY, saying what to check", err)
	}

	lines := make(chan string, 100)
	res := make(chan error, 1)
	go func() {
		s, err := open(1000, lines)
		if err == nil {
			err = s.Close()
		}
		res <- err
	}()
	waitLine(t, lines, "database busy while opening; trying again")
	release()
	if err := <-res; err != nil {
		t.Fatalf("open once the lock was released: %v", err)
	}
}

func TestApplyBusy(t *testing.T) {
	b := &wire.Batch{ID: "b", Publications: []wire.PubCount{{Key: "p", Articles: 1}}}

	t.Run("retries until the lock is released", func(t *testing.T) {
		s, lines, release := openLocked(t, 1000, time.Millisecond)
		res := make(chan error, 1)
		go func() {
			_, err := s.Apply(t.Context(), b)
			res <- err
		}()
		waitLine(t, lines, "database busy, retrying batch")
		release()
		if err := <-res; err != nil {
			t.Fatal(err)
		}
		if got := readStored(t, s.path).Pubs["p"].Articles; got != 1 {
			t.Fatalf("articles = %d, want 1", got)
		}
	})

	t.Run("gives up saying what to check", func(t *testing.T) {
		s, _, _ := openLocked(t, 2, time.Millisecond)
		_, err := s.Apply(t.Context(), b)
		if err == nil || !strings.Contains(err.Error(), "stayed locked by another process for 3 tries") {
			t.Fatalf("Apply = %v, want it to give up after 3 tries", err)
		}
		if sqliteCode(err) != 5 {
			t.Errorf("error does not wrap SQLITE_BUSY: %v", err)
		}
	})

	t.Run("stops when the context ends", func(t *testing.T) {
		s, lines, _ := openLocked(t, 1000, time.Millisecond)
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() {
			_, err := s.Apply(ctx, b)
			res <- err
		}()
		waitLine(t, lines, "database busy, retrying batch")
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Apply = %v, want context.Canceled", err)
		}
	})
}
