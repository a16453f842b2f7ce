package supervisor

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// The post queue's errors become the write API's refusals here, and only
// here: full is 503 with the queue's Retry-After, a request larger than
// the queue 413 naming --queue-size, closed is draining.
func TestQueueIntakeRefusals(t *testing.T) {
	q := queue.New[wire.Post](2)
	in := queueIntake{q: q, tally: newTally()}
	post := wire.Post{Publication: "p", Content: "c"}
	if err := in.TryPutAll([]wire.Post{post, post}); err != nil {
		t.Fatalf("TryPutAll into an empty queue: %v", err)
	}
	if c := in.tally.counts(); c.Accepted != 2 {
		t.Errorf("tally after 2 posts taken: %+v", c)
	}
	refusal := func(err error) *writeapi.Refusal {
		t.Helper()
		var ref *writeapi.Refusal
		if !errors.As(err, &ref) {
			t.Fatalf("error %v is not a *writeapi.Refusal", err)
		}
		return ref
	}

	full := refusal(in.TryPutAll([]wire.Post{post}))
	if full.Status != http.StatusServiceUnavailable || full.Reason != writeapi.ReasonQueueFull || full.RetryAfter <= 0 ||
		!strings.Contains(full.Message, "input queue is full (capacity 2 posts)") {
		t.Errorf("full queue: %+v", full)
	}
	tooMany := refusal(in.TryPutAll([]wire.Post{post, post, post}))
	if tooMany.Status != http.StatusRequestEntityTooLarge || tooMany.Reason != writeapi.ReasonTooLarge ||
		!strings.Contains(tooMany.Message, "batch of 3 posts is larger than the queue capacity of 2 (--queue-size)") {
		t.Errorf("request larger than the queue: %+v", tooMany)
	}
	q.Close()
	if closed := refusal(in.TryPutAll([]wire.Post{post})); closed.Reason != writeapi.ReasonDraining {
		t.Errorf("closed queue: %+v, want draining", closed)
	}
	if c := in.tally.counts(); c.Accepted != 2 {
		t.Errorf("refused posts were counted: %+v", c)
	}
}

// Through the write API, a client of a full queue is told so, and when to
// come back.
func TestQueueIntakeThroughTheWriteAPI(t *testing.T) {
	q := queue.New[wire.Post](1)
	h := writeapi.New(writeapi.Config{Intake: queueIntake{q: q, tally: newTally()}, Logger: hclog.New(&hclog.LoggerOptions{Output: tLog{t}})})
	send := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/post/enqueue", strings.NewReader(`{"publication": "p", "content": "c"}`))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := send(); w.Code != http.StatusCreated {
		t.Fatalf("first post: %d %s", w.Code, w.Body)
	}
	w := send()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
		!strings.Contains(w.Body.String(), "input queue is full (capacity 1 posts): retry later") {
		t.Errorf("second post into a full queue: %d %s (Retry-After %q)", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
}
