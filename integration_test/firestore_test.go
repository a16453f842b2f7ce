package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/sink"
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
	summary := lines(p.logs.String(), "stopped cleanly")
	if len(summary) != 1 || !strings.Contains(summary[0], "stored="+itoa(len(arts))) {
		t.Fatalf("summary line %q; want stored=%d", summary, len(arts))
	}
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
	// Both nodes read the shared totals once both have stored their half.
	want := expected(arts)
	waitFor(t, 2*time.Minute, "both halves stored", func() bool {
		var pubs []struct {
			Key      string `json:"key"`
			Articles int64  `json:"articles"`
		}
		resp, err := http.Get(a.url + "/publications")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&pubs) != nil {
			return false
		}
		total := int64(0)
		for _, p := range pubs {
			total += p.Articles
		}
		return total == int64(len(arts))
	})
	for _, p := range []*parent{a, b} {
		if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
			t.Fatalf("exit %d", code)
		}
	}
	assertCounts(t, storedFirestore(t, project), want)
}
