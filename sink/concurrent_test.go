package sink

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// writerBatches are the batches writer g applies in the concurrency
// tests: distinct IDs, the same publications and many of the same words
// as every other writer, so that writers update the same rows.
func writerBatches(g, n int) []wire.Batch {
	const pubs, words = 3, 40
	var bs []wire.Batch
	for i := range n {
		b := wire.Batch{ID: fmt.Sprintf("g%d-%d", g, i), Worker: g}
		for p := range pubs {
			key := fmt.Sprint("pub", p)
			pc := wire.PubCount{Key: key, Name: "Pub " + key, Articles: int64(g + i + p)}
			for w := (g + i + p) % 7; w < words; w += 1 + (g+i)%3 {
				pc.Entities = append(pc.Entities, wire.EntityCount{Word: fmt.Sprint("w", w), Count: int64(w + g)})
			}
			b.Publications = append(b.Publications, pc)
		}
		bs = append(bs, b)
	}
	return bs
}

// sumOf is what storing every batch once must give.
func sumOf(batches ...[]wire.Batch) stored {
	st := stored{Pubs: map[string]Publication{}, Entities: map[string]map[string]int64{}}
	for _, bs := range batches {
		for _, b := range bs {
			st.Applied = append(st.Applied, b.PartID())
			for _, pc := range b.Publications {
				p := st.Pubs[pc.Key]
				if p.Name == "" {
					p.Name = pc.Name
				}
				p.Key, p.Articles = pc.Key, p.Articles+pc.Articles
				st.Pubs[pc.Key] = p
				if st.Entities[pc.Key] == nil {
					st.Entities[pc.Key] = map[string]int64{}
				}
				for _, e := range pc.Entities {
					st.Entities[pc.Key][e.Word] += e.Count
				}
			}
		}
	}
	slices.Sort(st.Applied)
	return st
}

// Several goroutines in each of two handles on one file apply distinct
// batches, each batch first through one handle and then again through the
// other, while a reader lists publications. Every count is the exact sum.
func TestApplyConcurrent(t *testing.T) {
	const handles, goroutines, perG = 2, 4, 25
	path := filepath.Join(t.TempDir(), "ingest.db")
	var sinks [handles]*SQLite
	for i := range sinks {
		sinks[i] = openAt(t, path)
	}
	batches := make([][]wire.Batch, handles*goroutines)
	for g := range batches {
		batches[g] = writerBatches(g, perG)
	}

	if err := applyConcurrently(t.Context(), []storeReader{sinks[0], sinks[1]}, batches); err != nil {
		t.Fatal(err)
	}
	if got, want := readStored(t, path), sumOf(batches...); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
}

// saverEnv tells a test binary started by TestApplyProcesses to act as one
// saver process: "db-path writer count".
const saverEnv = "SINK_TEST_SAVER"

// Saver processes, each its own OS process with its own connections,
// apply their batches and replay the next process's into one file at the
// same time. Across all of them every batch is stored (answered
// duplicate=false) exactly once, and the counts are the exact sum.
func TestApplyProcesses(t *testing.T) {
	const procs, perProc = 3, 40
	path := filepath.Join(t.TempDir(), "ingest.db")
	outs := make([]bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for g := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSaverProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", saverEnv, path, g, procs, perProc))
		cmd.Stdout = &outs[g]
		cmd.Stderr = &outs[g]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[g] = cmd
	}
	var failed bool
	for g, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("saver %d: %v\n%s", g, err, outs[g].String())
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}

	stores := map[string]int{} // batch ID -> times stored
	batches := make([][]wire.Batch, procs)
	for g := range batches {
		batches[g] = writerBatches(g, perProc)
		for _, b := range batches[g] {
			stores[b.ID] = 0
		}
	}
	for g := range outs {
		sc := bufio.NewScanner(&outs[g])
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "stored "); ok {
				stores[id]++
			}
		}
	}
	for id, n := range stores {
		if n != 1 {
			t.Errorf("batch %s stored %d times, want once", id, n)
		}
	}
	if got, want := readStored(t, path), sumOf(batches...); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
}

// TestSaverProcess is one saver of TestApplyProcesses; run alone it skips.
// It prints "stored ID" for every Apply that answered duplicate=false.
func TestSaverProcess(t *testing.T) {
	spec := os.Getenv(saverEnv)
	if spec == "" {
		t.Skip("a child of TestApplyProcesses")
	}
	f := strings.Fields(spec)
	if len(f) != 4 {
		t.Fatalf("%s=%q: want \"db-path writer writers count\"", saverEnv, spec)
	}
	path := f[0]
	var n [3]int
	for i, s := range f[1:] {
		var err error
		if n[i], err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s=%q: %v", saverEnv, spec, err)
		}
	}
	g, procs, count := n[0], n[1], n[2]
	s := openAt(t, path)
	mine, next := writerBatches(g, count), writerBatches((g+1)%procs, count)
	for i := range count {
		for _, b := range []*wire.Batch{&mine[i], &next[i]} {
			dup, err := s.Apply(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			if !dup {
				fmt.Println("stored", b.ID)
			}
		}
	}
}

// storeReader is a sink with its read path, as both SQLite and Firestore are.
type storeReader interface {
	Sink
	Reader
}

// applyConcurrently runs one goroutine per batch list; each applies its
// batches first through sinks[g%n] and then again through sinks[(g+1)%n]
// (the replay must be a duplicate), while sinks[last] lists publications
// throughout. It returns every error seen.
func applyConcurrently(ctx context.Context, sinks []storeReader, batches [][]wire.Batch) error {
	var (
		errs    errsOf
		writers sync.WaitGroup
		reader  sync.WaitGroup
	)
	n := len(sinks)
	for g := range batches {
		first, replay := sinks[g%n], sinks[(g+1)%n]
		writers.Go(func() {
			for i := range batches[g] {
				b := &batches[g][i]
				for try, s := range []storeReader{first, replay} {
					dup, err := s.Apply(ctx, b)
					errs.add(err)
					if err == nil && dup != (try == 1) {
						errs.add(fmt.Errorf("batch %s, apply %d: duplicate = %v", b.ID, try+1, dup))
					}
				}
			}
		})
	}
	done := make(chan struct{})
	reader.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_, err := sinks[n-1].Publications(ctx)
			errs.add(err)
		}
	})
	writers.Wait()
	close(done)
	reader.Wait()
	return errs.err()
}
