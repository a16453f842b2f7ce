package writeapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/queue"
	"github.com/ingest-dev/ingest/wire"
)

// Bodies held by requests in flight are capped: with two slow 1000-byte
// bodies being read and a cap of 2000 bytes, a third request gets 503 with
// Retry-After instead of more memory; once they finish, room is back.
func TestBodyMemoryIsCapped(t *testing.T) {
	h := New(Config{Queue: queue.New[wire.Post](16), MaxBody: 1000, BodyMemory: 2000})
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := `{"publication":"P","content":"` + strings.Repeat("x", 967) + `"}` // 1000 bytes
	type result struct {
		status int
		err    error
	}
	var writers []*io.PipeWriter
	done := make(chan result, 2)
	for range 2 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/post/enqueue", pr)
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			resp.Body.Close()
			done <- result{status: resp.StatusCode}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.inBody.Load() < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("the two slow requests reserved %d bytes, want 2000", h.inBody.Load())
		}
		<-time.After(5 * time.Millisecond)
	}
	resp, err := http.Post(srv.URL+"/post/enqueue", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if h.Stats().Busy != 1 {
		t.Errorf("Stats().Busy = %d, want 1", h.Stats().Busy)
	}
	for _, pw := range writers {
		io.WriteString(pw, body)
		pw.Close()
	}
	for range 2 {
		if r := <-done; r.err != nil || r.status != http.StatusCreated {
			t.Fatalf("slow request: %d %v, want 201", r.status, r.err)
		}
	}
	if n := h.inBody.Load(); n != 0 {
		t.Fatalf("%d body bytes still reserved after every request ended", n)
	}
	resp, err = http.Post(srv.URL+"/post/enqueue", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("after the slow ones: %d, want 201", resp.StatusCode)
	}
}
