package sink

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// BenchmarkSQLiteApply applies batches of rows entity rows spread over
// pubs publications. Each batch shares half its words with the one
// before, so half the rows update a stored entity and half insert one, as
// when a popular vocabulary keeps recurring; the table grows as it runs.
func BenchmarkSQLiteApply(b *testing.B) {
	for _, c := range []struct{ pubs, rows int }{{1, 100}, {1, 10_000}, {1, 100_000}, {50, 10_000}} {
		b.Run(fmt.Sprintf("pubs=%d/rows=%d", c.pubs, c.rows), func(b *testing.B) {
			s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"), hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			perPub := c.rows / c.pubs
			// Batch i takes a window of perPub words of vocab[p], sliding
			// by half a batch from one to the next.
			vocab := make([][]wire.EntityCount, c.pubs)
			for p := range vocab {
				for w := range 4 * perPub {
					vocab[p] = append(vocab[p], wire.EntityCount{Word: "entity-" + strconv.Itoa(w*7919%(4*perPub)), Count: int64(1 + w%5)})
				}
			}
			batch := func(i int) *wire.Batch {
				bt := &wire.Batch{ID: "bench-" + strconv.Itoa(i)}
				start := (i * perPub / 2) % (3 * perPub)
				for p := range c.pubs {
					bt.Publications = append(bt.Publications, wire.PubCount{
						Key: "pub-" + strconv.Itoa(p), Name: "Pub " + strconv.Itoa(p), Articles: 10,
						Entities: vocab[p][start : start+perPub],
					})
				}
				return bt
			}
			// Fill the table first so the timed batches meet a table of
			// realistic size rather than an empty one.
			const fill = 6
			for i := range fill {
				if _, err := s.Apply(b.Context(), batch(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := fill
			for b.Loop() {
				if dup, err := s.Apply(b.Context(), batch(i)); err != nil || dup {
					b.Fatal(dup, err)
				}
				i++
			}
			b.ReportMetric(float64((i-fill)*perPub*c.pubs)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkTopEntities reads the first page of a publication with 100k
// entities. Without an index on count, every page sorts them all (top-N):
// this is the read path's cost to watch.
func BenchmarkTopEntities(b *testing.B) {
	s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"), hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pc := wire.PubCount{Key: "p", Name: "P", Articles: 1}
	for w := range 100_000 {
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: "entity-" + strconv.Itoa(w), Count: int64(w*7919) % 1000})
	}
	if _, err := s.Apply(b.Context(), &wire.Batch{ID: "fill", Publications: []wire.PubCount{pc}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ents, _, err := s.TopEntities(b.Context(), "p", 50, ""); err != nil || len(ents) != 50 {
			b.Fatal(len(ents), err)
		}
	}
}
