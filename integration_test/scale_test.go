package integration_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/synthetic"
	"github.com/ingest-dev/ingest/sink"
)

// scalePosts writes posts posts of one publication, each naming 1,000
// distinct entities (of which the NER tags about nine in ten): most once, and a few dozen popular ones
// in every post to a varying degree, so counts have a head and a long
// tail of ties.
func scalePosts(t *testing.T, path, publication string, posts int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	next := 0
	for p := range posts {
		var names []string
		for k := range 40 { // popular: entity k in the posts where p % (k+1) == 0
			if p%(k+1) == 0 {
				names = append(names, synthetic.Name(900_000+k))
			}
		}
		for len(names) < 1000 {
			names = append(names, synthetic.Name(next))
			next++
		}
		var b strings.Builder
		for i := 0; i+3 < len(names); i += 4 {
			fmt.Fprintf(&b, "%s, %s, %s and %s met. ", names[i], names[i+1], names[i+2], names[i+3])
		}
		if err := enc.Encode(article{Publication: publication, Content: b.String()}); err != nil {
			t.Fatal(err)
		}
	}
}

type entity struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

// TestScaleRead builds a publication of about 100,000 distinct entities
// through ingest --input, then checks what makes its pages cost the same
// at any size: the read queries' plans read an index range and sort
// nothing, and paging the read API through all of it returns each entity
// exactly once, in order. Timings are not asserted (the benchmarks measure
// them). It ends with the migration of that file: with its indexes
// dropped, as an earlier version left it, the next start rebuilds them
// and logs how long that took.
func TestScaleRead(t *testing.T) {
	const publication = "Scale Daily"
	key := "scale daily"
	dir := t.TempDir()
	posts, db := filepath.Join(dir, "posts.ndjson"), filepath.Join(dir, "ingest.db")
	const nposts = 112 // 100,000 entities and a margin
	scalePosts(t, posts, publication, nposts)
	start := time.Now()
	out, err := exec.Command(binary, pinEngine([]string{"--input=" + posts, "--db=" + db, "--workers=2", "--top-n=0"})...).CombinedOutput()
	if err != nil {
		t.Fatalf("ingest --input: %v\n%s", err, out)
	}
	t.Logf("ingest --input of %d posts: %v", nposts, time.Since(start))

	// What the file holds, in the API's order, read with plain SQL.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var want []entity
	rows, err := raw.Query(`SELECT word, count FROM entities WHERE publication = ? ORDER BY count DESC, word ASC`, key)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e entity
		if err := rows.Scan(&e.Word, &e.Count); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	rows.Close()
	if len(want) < 100_000 || want[0].Count != nposts || want[len(want)-1].Count != 1 {
		t.Fatalf("stored %d entities, top %v; want at least 100,000, the most popular in all %d posts",
			len(want), want[:min(len(want), 3)], nposts)
	}

	s, err := sink.OpenSQLite(t.Context(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := s.ReadPlans(t.Context())
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	for name, plan := range plans {
		if strings.Contains(plan, "TEMP B-TREE") || !strings.Contains(plan, "USING") {
			t.Errorf("plan of %s reads without an index or sorts:\n%s", name, plan)
		}
	}

	p := startParent(t, nil, "--db="+db, "--workers=1")
	var got []entity
	path := "/publications/" + url.PathEscape(key) + "/entities?limit=1000"
	for pages := 0; ; pages++ {
		if pages > len(want)/1000+1 {
			t.Fatalf("more pages than %d entities make", len(want))
		}
		resp, err := http.Get(p.url + path)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Entities []entity `json:"entities"`
			Next     *string  `json:"next"`
		}
		if err := json.Unmarshal([]byte(readBody(t, resp)), &page); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		got = append(got, page.Entities...)
		if page.Next == nil {
			break
		}
		path = "/publications/" + url.PathEscape(key) + "/entities?limit=1000&after=" + url.QueryEscape(*page.Next)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %d entities; want each of the %d stored once, in order", len(got), len(want))
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("parent exited %d", code)
	}

	// An earlier version's file: the same tables without the indexes.
	if _, err := raw.Exec(`DROP INDEX entities_by_count; DROP INDEX publications_by_articles`); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "none.ndjson")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for run, wantLine := range []bool{true, false} {
		out, err := exec.Command(binary, "--input="+empty, "--db="+db, "--workers=1").CombinedOutput()
		if err != nil {
			t.Fatalf("ingest --input on the old file: %v\n%s", err, out)
		}
		var indexes int
		if err := raw.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('entities_by_count', 'publications_by_articles')`).Scan(&indexes); err != nil || indexes != 2 {
			t.Fatalf("start %d on the old file: %d of the 2 indexes (%v)", run+1, indexes, err)
		}
		// A migration over a large table takes time: the log says so, once.
		line := lines(string(out), "migration: created index entities_by_count over ")
		if wantLine != (len(line) == 1) {
			t.Fatalf("start %d on the old file logged %q; want the migration line on the first start only:\n%s", run+1, line, out)
		}
		for _, l := range line {
			t.Log(l)
		}
	}
}
