package input_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ingest-dev/ingest/wire"

	"github.com/ingest-dev/ingest/input"
)

// datasetDir is ../shared/datasets relative to the repository root; tests
// run in the package directory, one level further down.
var datasetDir = filepath.Join("..", "..", "shared", "datasets")

func openDataset(t *testing.T, name string) *input.Reader {
	t.Helper()
	path := filepath.Join(datasetDir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not present; this test is optional", path)
	}
	r, err := input.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestSharedDataset reads the same 4,000 articles as NDJSON and as CSV in
// the "All the News 2.0" layout, in lockstep, and checks that both yield
// the same posts in the same order.
func TestSharedDataset(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 4,000 articles twice; skipped in -short mode")
	}
	const want = 4000
	ndjson := openDataset(t, "news-dev.ndjson.gz")
	csv := openDataset(t, "news-dev.atn2.csv.gz")
	if ndjson.Format() != "ndjson" || csv.Format() != "csv" {
		t.Fatalf("formats %q and %q, want ndjson and csv", ndjson.Format(), csv.Format())
	}
	next := func(r *input.Reader) (wire.Post, bool) {
		for {
			p, err := r.Next()
			var re *input.RowError
			switch {
			case err == nil:
				return p, true
			case errors.As(err, &re):
				t.Errorf("%s row error: %v", r.Format(), err)
			case errors.Is(err, io.EOF):
				return wire.Post{}, false
			default:
				t.Fatalf("%s: %v", r.Format(), err)
			}
		}
	}
	n := 0
	for {
		a, okA := next(ndjson)
		b, okB := next(csv)
		if okA != okB {
			t.Fatalf("after %d posts one format ended and the other did not (ndjson more: %v, csv more: %v)", n, okA, okB)
		}
		if !okA {
			break
		}
		n++
		if a.Publication != b.Publication || a.Content != b.Content {
			t.Fatalf("post %d differs: ndjson %q (%d bytes of content), csv %q (%d bytes)",
				n, a.Publication, len(a.Content), b.Publication, len(b.Content))
		}
	}
	if n != want {
		t.Errorf("read %d posts from each, want %d", n, want)
	}
}
