package sink

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// fillScale stores, directly in SQL (a benchmark's set-up, not a path
// users take), publication "big" with n entities whose counts fall off
// like a news vocabulary's (count ~ n/rank, a long tail of 1s), and pubs
// other publications of one entity each.
func fillScale(b *testing.B, s *SQLite, n, pubs int) {
	b.Helper()
	_, err := s.w.ExecContext(b.Context(), `
INSERT INTO publications (key, name, articles) VALUES ('big', 'Big', 1000000);
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?1)
INSERT INTO entities (publication, word, count) SELECT 'big', 'entity-' || ((i * 7919) % ?1), max(1, ?1 / (i * 20)) FROM r;
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?2)
INSERT INTO publications (key, name, articles) SELECT 'pub-' || i, 'Pub ' || i, i % 5000 FROM r;
ANALYZE;`, n, pubs)
	if err != nil {
		b.Fatal(err)
	}
}

// dropIndexes makes s a file as an earlier version left it: no index but
// the primary keys.
func dropIndexes(b *testing.B, s *SQLite) {
	b.Helper()
	for _, m := range migrations {
		if _, err := s.w.ExecContext(b.Context(), "DROP INDEX "+m.index); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadScale reads the first page (50), a page 1% down (counts
// above 1) and a page halfway down (in the tail of count 1, where most
// entities are) of a publication of
// 10k, 100k and 1M entities, and the list of 10,000 publications (all at
// once, and a page of 50), with the indexes and, for comparison, without
// them (as before schema version 2).
func BenchmarkReadScale(b *testing.B) {
	for _, index := range []bool{true, false} {
		for _, n := range []int{10_000, 100_000, 1_000_000} {
			if !index && n > 100_000 {
				continue // seconds a page: the reason for the index
			}
			b.Run(fmt.Sprintf("index=%v/entities=%d", index, n), func(b *testing.B) {
				s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"), hclog.NewNullLogger())
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				fillScale(b, s, n, 10_000)
				if !index {
					dropIndexes(b, s)
				}
				// Pages after the entity at rank n/100 (counts above 1: the
				// head) and at n/2 (the tail of 1s).
				for _, page := range []struct {
					name string
					rank int
				}{{"first", -1}, {"deep-head", n / 100}, {"deep-tail", n / 2}} {
					var after string
					if page.rank >= 0 {
						var c cursor
						if err := s.r.QueryRowContext(b.Context(), `SELECT count, word FROM entities WHERE publication = 'big'
ORDER BY count DESC, word LIMIT 1 OFFSET ?1`, page.rank).Scan(&c.count, &c.word); err != nil {
							b.Fatal(err)
						}
						after = encodeCursor(c)
					}
					b.Run(page.name, func(b *testing.B) {
						for b.Loop() {
							if ents, _, err := s.TopEntities(b.Context(), "big", 50, after); err != nil || len(ents) != 50 {
								b.Fatal(len(ents), err)
							}
						}
					})
				}
				if n != 100_000 {
					return // the publication list does not depend on n
				}
				b.Run("publications-all", func(b *testing.B) {
					for b.Loop() {
						if pubs, _, err := s.PublicationsPage(b.Context(), 10_000, ""); err != nil || len(pubs) != 10_000 {
							b.Fatal(len(pubs), err)
						}
					}
				})
				b.Run("publications-page", func(b *testing.B) {
					for b.Loop() {
						if pubs, _, err := s.PublicationsPage(b.Context(), 50, ""); err != nil || len(pubs) != 50 {
							b.Fatal(len(pubs), err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkApplyLarge is the write side's price of entities_by_count:
// batches like a --top-n 0 flush (2,000 entity rows of one publication,
// half of them already stored, half new) applied to a file that already
// holds that publication with 200k entities, with the index and without.
// An update moves the row in the index (its count changes), an insert
// adds an index entry: both cost a second B-tree write per row.
func BenchmarkApplyLarge(b *testing.B) {
	const stored, rows = 200_000, 2_000
	for _, index := range []bool{false, true} {
		b.Run(fmt.Sprintf("index=%v", index), func(b *testing.B) {
			s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"), hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fillScale(b, s, stored, 100)
			if !index {
				dropIndexes(b, s)
			}
			i, fresh := 0, stored
			b.ReportAllocs()
			for b.Loop() {
				bt := &wire.Batch{ID: "bench-" + strconv.Itoa(i)}
				pc := wire.PubCount{Key: "big", Name: "Big", Articles: 100}
				for k := range rows / 2 {
					// Stored words, spread over the table; then new ones.
					pc.Entities = append(pc.Entities,
						wire.EntityCount{Word: "entity-" + strconv.Itoa((i*rows+k*97)%stored), Count: 1},
						wire.EntityCount{Word: "new-" + strconv.Itoa(fresh), Count: 1})
					fresh++
				}
				bt.Publications = []wire.PubCount{pc}
				if dup, err := s.Apply(b.Context(), bt); err != nil || dup {
					b.Fatal(dup, err)
				}
				i++
			}
			b.ReportMetric(float64(i*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
