package sink

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// testLogger routes a sink's logs to t.Log. Each line is also sent to
// lines, if not nil, so a test can wait for one; lines that do not fit
// its buffer are dropped.
func testLogger(t testing.TB, lines chan<- string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "sink",
		Level:  hclog.Trace,
		Output: logWriter{t: t, lines: lines},
	})
}

type logWriter struct {
	t     testing.TB
	lines chan<- string
}

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.t.Log(line)
	if w.lines != nil {
		select {
		case w.lines <- line:
		default: // nobody waits for this many lines
		}
	}
	return len(p), nil
}

// openTest opens a SQLite sink on a new file in t.TempDir.
func openTest(t testing.TB) *SQLite {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "ingest.db"))
}

// openAt opens path as one saver process would, closed at the end of t.
func openAt(t testing.TB, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// stored is everything in the file, read as an outside tool would: with
// plain SQL against the public schema.
type stored struct {
	Pubs     map[string]Publication
	Entities map[string]map[string]int64 // publication -> word -> count
	Applied  []string                    // applied_batches.id, sorted
}

func readStored(t testing.TB, path string) stored {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := stored{Pubs: map[string]Publication{}, Entities: map[string]map[string]int64{}}
	query(t, db, "SELECT key, name, articles FROM publications", func(r *sql.Rows) error {
		var p Publication
		err := r.Scan(&p.Key, &p.Name, &p.Articles)
		st.Pubs[p.Key] = p
		return err
	})
	query(t, db, "SELECT publication, word, count FROM entities", func(r *sql.Rows) error {
		var pub, word string
		var n int64
		err := r.Scan(&pub, &word, &n)
		if st.Entities[pub] == nil {
			st.Entities[pub] = map[string]int64{}
		}
		st.Entities[pub][word] = n
		return err
	})
	query(t, db, "SELECT id FROM applied_batches ORDER BY id", func(r *sql.Rows) error {
		var id string
		err := r.Scan(&id)
		st.Applied = append(st.Applied, id)
		return err
	})
	return st
}

func query(t testing.TB, db *sql.DB, q string, row func(*sql.Rows) error) {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenKinds(t *testing.T) {
	ctx := t.Context()
	b := &wire.Batch{ID: "b1", Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: 1}}}

	t.Run("none discards", func(t *testing.T) {
		s, err := Open(ctx, Config{Kind: "none"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if dup, err := s.Apply(ctx, b); dup || err != nil {
				t.Fatalf("Apply = %v, %v; want false, nil", dup, err)
			}
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sqlite stores", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		s, err := Open(ctx, Config{Kind: "sqlite", DB: path, Logger: testLogger(t, nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got := readStored(t, path).Pubs["p"].Articles; got != 1 {
			t.Fatalf("articles = %d, want 1", got)
		}
	})

	for _, kind := range []string{"x", "", "SQLite"} {
		t.Run("unknown "+kind, func(t *testing.T) {
			_, err := Open(ctx, Config{Kind: kind, DB: filepath.Join(t.TempDir(), "x.db")})
			want := `sink: unknown kind "` + kind + `": use one of sqlite, firestore, none (--sink)`
			if err == nil || err.Error() != want {
				t.Fatalf("Open error = %v, want %q", err, want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string // substrings of the error
	}{
		{"no path", "", []string{"pass --db"}},
		{"missing directory", filepath.Join(dir, "missing", "x.db"),
			[]string{"sqlite: open " + filepath.Join(dir, "missing", "x.db") + ": ", "check that the directory exists and is writable, or pass --db"}},
		{"path is a directory", dir, []string{"sqlite: open " + dir + ": it is a directory: pass --db with the path of a file"}},
		{"not a database", notDB, []string{"sqlite: open " + notDB + ": ", "not a SQLite database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenSQLite(t.Context(), tt.path, testLogger(t, nil))
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite succeeded")
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// The file that was not a database is left alone.
	if b, err := os.ReadFile(notDB); err != nil || !strings.HasPrefix(string(b), "not a database") {
		t.Fatalf("notes.txt changed: %q, %v", b[:min(len(b), 20)], err)
	}
}

// A file name means itself, even with characters that a SQLite URI or
// the driver's DSN would otherwise interpret.
func TestOpenOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a?mode=ro&b#c%41 d.db")
	s := openAt(t, path)
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "b", Publications: []wire.PubCount{{Key: "k", Articles: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if got := readStored(t, "file:"+strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)).Pubs["k"].Articles; got != 1 {
		t.Fatalf("articles = %d, want 1", got)
	}
}

// The tables and columns are a public contract: other tools read them.
func TestSchemaContract(t *testing.T) {
	s := openTest(t)
	db, err := sql.Open("sqlite", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type column struct {
		Name, Type string
		NotNull    bool
		PK         int
	}
	want := map[string][]column{
		"publications":    {{"key", "TEXT", false, 1}, {"name", "TEXT", true, 0}, {"articles", "INTEGER", true, 0}},
		"entities":        {{"publication", "TEXT", true, 1}, {"word", "TEXT", true, 2}, {"count", "INTEGER", true, 0}},
		"applied_batches": {{"id", "TEXT", false, 1}, {"applied_at", "INTEGER", true, 0}},
		"dead_letters": {{"publication", "TEXT", true, 0}, {"content", "TEXT", true, 0}, {"error", "TEXT", true, 0},
			{"attempts", "INTEGER", true, 0}, {"at", "INTEGER", true, 0}},
	}
	for table, cols := range want {
		var got []column
		query(t, db, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('"+table+"')", func(r *sql.Rows) error {
			var c column
			err := r.Scan(&c.Name, &c.Type, &c.NotNull, &c.PK)
			got = append(got, c)
			return err
		})
		if !slices.Equal(got, cols) {
			t.Errorf("table %s: columns %+v, want %+v", table, got, cols)
		}
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestCloseTwice(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "x.db"), testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "late"}); err == nil || !strings.Contains(err.Error(), "late") {
		t.Fatalf("Apply after Close = %v, want an error naming the batch", err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

// errsOf collects the errors of goroutines, which must not call t.Fatal.
type errsOf struct {
	mu   sync.Mutex
	errs []error
}

func (e *errsOf) add(err error) {
	if err != nil {
		e.mu.Lock()
		e.errs = append(e.errs, err)
		e.mu.Unlock()
	}
}

func (e *errsOf) err() error { return errors.Join(e.errs...) }

func TestDeadLettersStoredOnceWithTheirBatch(t *testing.T) {
	s := openTest(t)
	b := &wire.Batch{ID: "dl", Parts: 1, Posts: 2,
		Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: 1}},
		Dead:         []wire.DeadLetter{{Publication: "P", Content: "poison", Error: "ner: prose panicked: x", Attempts: 2}}}
	for range 2 {
		if _, err := s.Apply(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, attempts int
	var pub, content, msg string
	if err := db.QueryRow("SELECT count(*), publication, content, error, attempts FROM dead_letters").Scan(&n, &pub, &content, &msg, &attempts); err != nil {
		t.Fatal(err)
	}
	if n != 1 || pub != "P" || content != "poison" || msg != "ner: prose panicked: x" || attempts != 2 {
		t.Fatalf("dead_letters: %d rows, %q %q %q %d; want the one dead letter once", n, pub, content, msg, attempts)
	}
}
