package readapi_test

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/version"
	"github.com/ingest-dev/ingest/wire"
)

// Keys of the fixture publications. Keys are what workers store: trimmed,
// lower-cased names, which may hold '/', spaces, Unicode and markup.
const (
	keyGazette = "the harbor gazette"
	keySlash   = "news/wire a/b"
	keyUnicode = "zürich tagblatt – 日報"
	keyEmpty   = "empty quarterly"
	keyMarkup  = "<b>bold</b> & co"
	keyBig     = "big daily"
)

// bigEntities is how many entities keyBig has: more than readapi.MaxLimit, so
// the cap shows.
const bigEntities = readapi.MaxLimit + 25

// fixture is what the test store holds, in API order.
type fixture struct {
	pubs     []sink.Publication
	entities map[string][]wire.EntityCount // by key, ordered by count desc, word asc
}

// openStore returns a real SQLite sink in a temporary directory, filled by
// sink.Apply with the fixture batches, and what it holds.
func openStore(t testing.TB) (*sink.SQLite, fixture) {
	t.Helper()
	s, err := sink.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ingest.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	// The gazette's counts come in two batches, as from two workers:
	// stored counts are sums. Many ties on count test the word order.
	gazette1 := wire.PubCount{Key: keyGazette, Name: "The Harbor Gazette", Articles: 10}
	gazette2 := wire.PubCount{Key: keyGazette, Name: "  the harbor gazette ", Articles: 6}
	words := []string{"elena marsh", "port ashby", "daniel okafor", "brightwater marine", "miriam castellano",
		"thomas brandt", "baltimore", "norfolk", "city hall", "harbor", "ashby", "okafor", "marsh"}
	for i, w := range words {
		gazette1.Entities = append(gazette1.Entities, wire.EntityCount{Word: w, Count: int64(16 - i)})
		if i%3 == 0 {
			gazette2.Entities = append(gazette2.Entities, wire.EntityCount{Word: w, Count: 2})
		}
	}
	for i := range 20 {
		gazette2.Entities = append(gazette2.Entities, wire.EntityCount{Word: fmt.Sprintf("minor %02d", i), Count: int64(1 + i%3)})
	}
	big := wire.PubCount{Key: keyBig, Name: "Big Daily", Articles: 3}
	for i := range bigEntities {
		big.Entities = append(big.Entities, wire.EntityCount{Word: fmt.Sprintf("w%04d", i), Count: int64(1 + i%7)})
	}
	batches := []wire.Batch{
		{ID: "batch-1", Posts: 20, Publications: []wire.PubCount{
			gazette1,
			{Key: keySlash, Name: "News/Wire A/B", Articles: 5, Entities: []wire.EntityCount{
				{Word: "new york", Count: 4}, {Word: "ac/dc", Count: 2}, {Word: "bob", Count: 2},
			}},
			{Key: keyUnicode, Name: "Zürich Tagblatt – 日報", Articles: 4, Entities: []wire.EntityCount{
				{Word: "zürich", Count: 3}, {Word: "東京", Count: 2}, {Word: "ümlaut ünion", Count: 1},
			}},
		}},
		{ID: "batch-2", Posts: 11, Publications: []wire.PubCount{
			gazette2,
			{Key: keyEmpty, Name: "Empty Quarterly", Articles: 1},
			{Key: keyMarkup, Name: "<b>Bold</b> & Co", Articles: 2, Entities: []wire.EntityCount{
				{Word: "<script>alert(1)</script>", Count: 1}, {Word: "a & b", Count: 1},
			}},
			big,
		}},
	}
	for i := range batches {
		if _, err := s.Apply(t.Context(), &batches[i]); err != nil {
			t.Fatal(err)
		}
	}

	// What the store must hold, computed without it.
	var f fixture
	f.entities = map[string][]wire.EntityCount{}
	names := map[string]string{}
	articles := map[string]int64{}
	sums := map[string]map[string]int64{}
	for _, b := range batches {
		for _, pc := range b.Publications {
			if _, ok := names[pc.Key]; !ok {
				names[pc.Key] = pc.Name
				sums[pc.Key] = map[string]int64{}
			}
			articles[pc.Key] += pc.Articles
			for _, e := range pc.Entities {
				sums[pc.Key][e.Word] += e.Count
			}
		}
	}
	for key, name := range names {
		f.pubs = append(f.pubs, sink.Publication{Key: key, Name: name, Articles: articles[key]})
		ents := []wire.EntityCount{}
		for w, c := range sums[key] {
			ents = append(ents, wire.EntityCount{Word: w, Count: c})
		}
		slices.SortFunc(ents, func(a, b wire.EntityCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Word, b.Word))
		})
		f.entities[key] = ents
	}
	slices.SortFunc(f.pubs, func(a, b sink.Publication) int {
		return cmp.Or(cmp.Compare(b.Articles, a.Articles), cmp.Compare(a.Key, b.Key))
	})
	return s, f
}

// testStatus is a fixed live state for the strip.
func testStatus() readapi.Status {
	return readapi.Status{
		Build:          version.Info{Version: "1.2.0", Revision: "abc123", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		AcceptedPerSec: 12.5,
		Accepted:       1200,
		Stored:         1150,
		DeadLettered:   2,
		NotStored:      48,
		QueueDepth:     37,
		QueueCapacity:  1024,
		Children: []readapi.Child{
			{Role: "worker", ID: 0, PID: 4242, State: "running", Restarts: 0},
			{Role: "worker", ID: 1, PID: 4243, State: "running", Restarts: 2},
			{Role: "saver", ID: 0, PID: 4250, State: "running", Restarts: 0},
		},
	}
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: tWriter{t}})
}

// tWriter routes log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
