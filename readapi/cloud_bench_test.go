package readapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// benchHandler serves a real SQLite store holding one publication of 1,000
// entities, their counts falling off as in news text.
func benchHandler(b *testing.B) (*readapi.Handler, string) {
	b.Helper()
	s, err := sink.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "ingest.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	const key = "the harbor gazette"
	pc := wire.PubCount{Key: key, Name: "The Harbor Gazette", Articles: 300}
	for i := range 1000 {
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: fmt.Sprintf("entity name %03d", i), Count: int64(20000/(i+1) + 1)})
	}
	if _, err := s.Apply(b.Context(), &wire.Batch{ID: "bench", Parts: 1, Posts: 300, Publications: []wire.PubCount{pc}}); err != nil {
		b.Fatal(err)
	}
	return readapi.New(readapi.Config{Reader: s}), "/publications/" + url.PathEscape(key)
}

func serveOnce(b *testing.B, h http.Handler, path string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
	}
}

// BenchmarkCloudCold draws a cloud every time (the counts change between
// requests, as they would after every batch).
func BenchmarkCloudCold(b *testing.B) {
	h, base := benchHandler(b)
	limit := 0
	for b.Loop() {
		// Another limit is other data: never in the cache.
		serveOnce(b, h, fmt.Sprintf("%s/cloud.svg?limit=%d", base, 50+limit%150))
		limit++
	}
}

// BenchmarkCloudCached serves the same cloud again: the read of the top
// entities, a hash and a copy.
func BenchmarkCloudCached(b *testing.B) {
	h, base := benchHandler(b)
	serveOnce(b, h, base+"/cloud.svg")
	for b.Loop() {
		serveOnce(b, h, base+"/cloud.svg")
	}
}

// BenchmarkEntitiesPage is the JSON page a cached cloud is compared with:
// the default 50 entities, and the cloud's 60.
func BenchmarkEntitiesPage(b *testing.B) {
	for _, limit := range []int{50, 60, 1000} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			h, base := benchHandler(b)
			for b.Loop() {
				serveOnce(b, h, fmt.Sprintf("%s/entities?limit=%d", base, limit))
			}
		})
	}
}
