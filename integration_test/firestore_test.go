package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/supervisor"
)

// TestFirestorePipeline is TestPipeline with --sink firestore against the
// emulator ./scripts/test starts: HTTP in, two workers and a saver, SIGTERM
// drain, and Firestore holding exactly the counts prose gives directly.
func TestFirestorePipeline(t *testing.T) {
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		t.Skip("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test, which starts the Firestore emulator and sets it")
	}
	b := make([]byte, 6)
	rand.Read(b)
	project := "ingest-it-" + hex.EncodeToString(b) // a project of its own: nothing else writes there

	arts := fixtures(t)
	p := startParent(t, nil, "--workers=2", "--savers=1", "--top-n=0", "--flush-interval=300ms",
		"--sink=firestore", "--project="+project)
	var nd strings.Builder
	for _, a := range arts {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	if r := p.post(t, "application/x-ndjson", nd.String(), nil); r.status != http.StatusCreated {
		t.Fatalf("NDJSON post: status %d body %s", r.status, r.body)
	}
	if code := p.stop(syscall.SIGTERM, 120*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	assertCounts(t, storedFirestore(t, project), expected(arts))
}

// storedFirestore reads the counts of project through the sink's read
// path, as the HTTP read API will.
func storedFirestore(t *testing.T, project string) counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := sink.Open(ctx, sink.Config{Kind: "firestore", Project: project})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, ok := s.(sink.Reader)
	if !ok {
		t.Fatalf("the firestore sink (%T) is not a sink.Reader", s)
	}
	pubs, err := r.Publications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := counts{map[string]int64{}, map[string]map[string]bool{}, map[string]map[string]int64{}}
	for _, pub := range pubs {
		c.articles[pub.Key] = pub.Articles
		c.names[pub.Key] = map[string]bool{pub.Name: true}
		c.entities[pub.Key] = map[string]int64{}
		for after := ""; ; {
			ents, next, err := r.TopEntities(ctx, pub.Key, 100, after)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				c.entities[pub.Key][e.Word] = e.Count
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	return c
}

func emulatorProject(t *testing.T) string {
	t.Helper()
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		t.Skip("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test, which starts the Firestore emulator and sets it")
	}
	b := make([]byte, 6)
	rand.Read(b)
	return "ingest-it-" + hex.EncodeToString(b)
}

// TestTwoParentsShareFirestore: two ingest nodes, each with its own
// workers and savers, ingest two halves of a corpus into one project at
// the same time; the totals are the whole corpus's, and the read API of
// either node serves them.
func TestTwoParentsShareFirestore(t *testing.T) {
	project := emulatorProject(t)
	arts := fixtures(t)
	args := []string{"--workers=1", "--savers=1", "--top-n=0", "--flush-interval=200ms", "--sink=firestore", "--project=" + project}
	a := startParent(t, nil, args...)
	b := startParent(t, nil, args...)
	var wg sync.WaitGroup
	half := len(arts) / 2
	wg.Go(func() { postAll(t, a, arts[:half], 10) })
	wg.Go(func() { postAll(t, b, arts[half:], 10) })
	wg.Wait()
	// Either node's read API serves the shared totals, every entity paged
	// through the cursor (7 a page), once both halves are stored.
	want := expected(arts)
	var got counts
	poll.Until(t, 2*time.Minute, "both halves stored, as the read API of node b shows", func() bool {
		got = countsViaAPI(t, b.url)
		return sameCounts(got, want)
	})
	assertCounts(t, countsViaAPI(t, a.url), want)
	for _, p := range []*parent{a, b} {
		if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
			t.Fatalf("exit %d", code)
		}
	}
	assertCounts(t, storedFirestore(t, project), want)
}

// countsViaAPI reads every publication and all its entities through the
// HTTP read API, paging with the cursor.
func countsViaAPI(t *testing.T, base string) counts {
	t.Helper()
	c := counts{map[string]int64{}, map[string]map[string]bool{}, map[string]map[string]int64{}}
	var pubs []struct {
		Key      string `json:"key"`
		Name     string `json:"name"`
		Articles int64  `json:"articles"`
	}
	if status, body := readAPI(t, base+"/publications", &pubs); status != http.StatusOK {
		t.Fatalf("GET /publications: %d %s", status, body)
	}
	for _, p := range pubs {
		c.articles[p.Key] = p.Articles
		c.names[p.Key] = map[string]bool{p.Name: true}
		c.entities[p.Key] = map[string]int64{}
		after := ""
		for range 10000 {
			u := base + "/publications/" + url.PathEscape(p.Key) + "/entities?limit=7"
			if after != "" {
				u += "&after=" + url.QueryEscape(after)
			}
			var page struct {
				Entities []struct {
					Word  string `json:"word"`
					Count int64  `json:"count"`
				} `json:"entities"`
				Next *string `json:"next"`
			}
			if status, body := readAPI(t, u, &page); status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, status, body)
			}
			for _, e := range page.Entities {
				if _, dup := c.entities[p.Key][e.Word]; dup {
					t.Fatalf("%s: entity %q on two pages", p.Key, e.Word)
				}
				c.entities[p.Key][e.Word] = e.Count
			}
			if page.Next == nil {
				break
			}
			after = *page.Next
		}
	}
	return c
}

// sameCounts reports whether the articles and entity counts agree.
func sameCounts(got, want counts) bool {
	if !maps.Equal(got.articles, want.articles) || len(got.entities) != len(want.entities) {
		return false
	}
	for k, w := range want.entities {
		if !maps.Equal(got.entities[k], w) {
			return false
		}
	}
	return true
}
