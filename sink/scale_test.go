package sink

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// checkPlans fails t unless every read query of s reads its index and
// sorts nothing.
func checkPlans(t *testing.T, s *SQLite) {
	t.Helper()
	plans, err := s.ReadPlans(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, index := range map[string]string{
		"top entities": "entities_by_count", "top entities after": "entities_by_count",
		"publications": "publications_by_articles", "publications after": "publications_by_articles",
	} {
		plan, ok := plans[name]
		switch {
		case !ok:
			t.Errorf("no plan for %s", name)
		case strings.Contains(plan, "TEMP B-TREE"):
			t.Errorf("plan of %s sorts:\n%s", name, plan)
		case !strings.Contains(plan, "INDEX "+index):
			t.Errorf("plan of %s does not use %s:\n%s", name, index, plan)
		}
		for step := range strings.Lines(plan) {
			// An index scanned in order, stopped at the page, is fine.
			if strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SCAN (") && !strings.Contains(step, " USING ") {
				t.Errorf("plan of %s scans a table:\n%s", name, plan)
			}
		}
	}
	if t.Failed() {
		for name, plan := range plans {
			t.Logf("%s:\n%s", name, plan)
		}
	}
}

// TestQueryPlans: a page is a range of an index, on an empty file and on
// one with data and statistics (ANALYZE), which can change the planner's
// mind.
func TestQueryPlans(t *testing.T) {
	s := openTest(t)
	checkPlans(t, s)
	big := wire.PubCount{Key: "p", Name: "P", Articles: 1}
	for i := range 5000 {
		big.Entities = append(big.Entities, wire.EntityCount{Word: fmt.Sprintf("w%05d", i), Count: int64(1 + i%3)})
	}
	pubs := []wire.PubCount{big}
	for i := range 300 {
		pubs = append(pubs, wire.PubCount{Key: fmt.Sprintf("k%03d", i), Articles: int64(i % 7),
			Entities: []wire.EntityCount{{Word: "x", Count: 1}}})
	}
	apply(t, s, wire.Batch{ID: "fill", Publications: pubs})
	if _, err := s.w.ExecContext(t.Context(), "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	checkPlans(t, s)
}

// TestPageThroughTies pages through a publication whose entities mostly
// share a count, in pages of every small size: each entity comes once, in
// order, across the boundary between the two halves of a later page's
// query.
func TestPageThroughTies(t *testing.T) {
	s := openTest(t)
	pc := wire.PubCount{Key: "p", Name: "P", Articles: 1}
	for i := range 230 {
		c := int64(1)
		if i%10 == 0 {
			c = int64(2 + i%3)
		}
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: fmt.Sprintf("w%03d", (i*37)%230), Count: c})
	}
	apply(t, s, wire.Batch{ID: "a", Publications: []wire.PubCount{pc}})
	want := slices.Clone(pc.Entities)
	slices.SortFunc(want, func(a, b wire.EntityCount) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		return strings.Compare(a.Word, b.Word)
	})
	for _, limit := range []int{1, 2, 3, 7, 50, 229, 230, 231} {
		var got []wire.EntityCount
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatalf("limit %d: more pages than entities", limit)
			}
			page, next, err := s.TopEntities(t.Context(), "p", limit, after)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: paged %d entities, want each of %d once in order", limit, len(got), len(want))
		}
	}
}

func TestPublicationsPage(t *testing.T) {
	s := openTest(t)
	if pubs, next, err := s.PublicationsPage(t.Context(), 10, ""); err != nil || len(pubs) != 0 || next != "" {
		t.Fatalf("PublicationsPage of an empty file = %v, %q, %v", pubs, next, err)
	}
	var in []wire.PubCount
	for i := range 97 {
		in = append(in, wire.PubCount{Key: fmt.Sprintf("k%02d", (i*13)%97), Name: "N", Articles: int64(i % 4)})
	}
	apply(t, s, wire.Batch{ID: "a", Publications: in})
	want, err := s.Publications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 5, 24, 96, 97, 98} {
		var got []Publication
		after := ""
		for {
			page, next, err := s.PublicationsPage(t.Context(), limit, after)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: paged %v, want %v", limit, got, want)
		}
	}
	// The two lists' cursors are not interchangeable.
	_, ecur, err := s.TopEntities(t.Context(), "k00", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	_, pcur, err := s.PublicationsPage(t.Context(), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TopEntities(t.Context(), "k00", 1, pcur); !errors.Is(err, ErrBadCursor) {
		t.Errorf("TopEntities with a publications cursor: %v, want ErrBadCursor", err)
	}
	if ecur != "" {
		t.Errorf("one-entity publication gave a next cursor %q", ecur)
	}
	if _, _, err := s.PublicationsPage(t.Context(), 1, encodeCursor(cursor{1, "k"})); !errors.Is(err, ErrBadCursor) {
		t.Errorf("PublicationsPage with an entities cursor: %v, want ErrBadCursor", err)
	}
}

// oldSchema is Schema as ingest wrote it before schema_version 2: no
// indexes but the primary keys.
const oldSchema = `CREATE TABLE publications (key TEXT PRIMARY KEY, name TEXT NOT NULL, articles INTEGER NOT NULL);
CREATE TABLE entities (publication TEXT NOT NULL, word TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (publication, word));
CREATE TABLE applied_batches (id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);
CREATE TABLE dead_letters (publication TEXT NOT NULL, content TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE TABLE ingest_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO publications VALUES ('p', 'P', 3);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO entities SELECT 'p', 'w' || i, i % 10 FROM n;`

// TestMigration: a file from before the indexes gains them on open, with
// one log line each; a second open builds and logs nothing.
func TestMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(oldSchema); err != nil {
		t.Fatal(err)
	}
	db.Close()

	migrated := func() []string {
		lines := make(chan string, 100)
		s, err := OpenSQLite(t.Context(), path, testLogger(t, lines))
		if err != nil {
			t.Fatal(err)
		}
		checkPlans(t, s)
		ents, _, err := s.TopEntities(t.Context(), "p", 2, "")
		if err != nil || !slices.Equal(ents, []wire.EntityCount{{Word: "w109", Count: 9}, {Word: "w119", Count: 9}}) {
			t.Errorf("TopEntities after migration = %v, %v", ents, err)
		}
		var version string
		if err := s.r.QueryRowContext(t.Context(), `SELECT value FROM ingest_meta WHERE key = 'schema_version'`).Scan(&version); err != nil || version != strconv.Itoa(SchemaVersion) {
			t.Errorf("schema_version = %q, %v; want %d", version, err, SchemaVersion)
		}
		// A file from before keyed posts gains applied_keys, empty.
		var keys int
		if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM applied_keys`).Scan(&keys); err != nil || keys != 0 {
			t.Errorf("applied_keys after migration: %d rows, %v", keys, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		close(lines)
		var out []string
		for l := range lines {
			if strings.Contains(l, "migration:") {
				out = append(out, l)
			}
		}
		return out
	}
	first := migrated()
	if len(first) != 3 ||
		!strings.Contains(first[0], "migration: created index entities_by_count over 1000 rows in ") ||
		!strings.Contains(first[1], "migration: created index publications_by_articles over 1 rows in ") ||
		!strings.Contains(first[2], "migration: created index applied_batches_by_time over 0 rows in ") {
		t.Errorf("first open logged %q, want one migration line per index", first)
	}
	if again := migrated(); len(again) != 0 {
		t.Errorf("second open logged %q, want no migration", again)
	}
	// A new file is created with the indexes: no migration to log.
	lines := make(chan string, 100)
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "new.db"), testLogger(t, lines))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	close(lines)
	for l := range lines {
		if strings.Contains(l, "migration") {
			t.Errorf("new file logged %q", l)
		}
	}
}

// TestPrune: applied_batches rows older than ReplayHorizon go, on open and
// while applying; newer ones stay, so a replay within the horizon still
// counts once.
func TestPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ingest.db")
	s := openAt(t, path)
	apply(t, s, wire.Batch{ID: "recent", Publications: []wire.PubCount{{Key: "p", Articles: 1}}})
	now := time.Now()
	age := func(id string, d time.Duration) {
		if _, err := s.w.ExecContext(t.Context(), `INSERT INTO applied_batches (id, applied_at) VALUES (?1, ?2)`,
			id, now.Add(-d).Unix()); err != nil {
			t.Fatal(err)
		}
	}
	age("old", ReplayHorizon+time.Hour)
	age("edge", ReplayHorizon-time.Hour)
	ids := func() []string {
		var out []string
		query(t, s.w, `SELECT id FROM applied_batches ORDER BY id`, func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			out = append(out, id)
			return err
		})
		return out
	}
	// While applying: not before the next prune is due, then at once.
	apply(t, s, wire.Batch{ID: "b2"})
	if got := ids(); !slices.Equal(got, []string{"b2", "edge", "old", "recent"}) {
		t.Fatalf("before the hourly prune: %v", got)
	}
	s.nextPrune.Store(0)
	apply(t, s, wire.Batch{ID: "b3"})
	if got := ids(); !slices.Equal(got, []string{"b2", "b3", "edge", "recent"}) {
		t.Fatalf("after the prune: %v, want old gone", got)
	}
	// A replay within the horizon is still recognised.
	if dup, err := s.Apply(t.Context(), &wire.Batch{ID: "recent", Publications: []wire.PubCount{{Key: "p", Articles: 1}}}); err != nil || !dup {
		t.Fatalf("replay of a recent batch: duplicate %v, %v", dup, err)
	}
	// On open, in chunks: more rows than one chunk.
	if _, err := s.w.ExecContext(t.Context(), `WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?1)
INSERT INTO applied_batches SELECT 'x' || i, ?2 FROM r`, pruneChunk+5, now.Add(-2*ReplayHorizon).Unix()); err != nil {
		t.Fatal(err)
	}
	again := openAt(t, path)
	var n int
	if err := again.r.QueryRowContext(t.Context(), `SELECT count(*) FROM applied_batches`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("after open: %d rows, %v; want the 4 within the horizon", n, err)
	}
}
