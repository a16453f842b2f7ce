package writeapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// inbox is an Intake that keeps every post in memory. A real one refuses
// with a *writeapi.Refusal when it has no room (503 with Retry-After) or
// is closed (ReasonDraining).
type inbox struct {
	mu    sync.Mutex
	posts []wire.Post
}

func (b *inbox) TryPutAll(posts []wire.Post) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.posts = append(b.posts, posts...)
	return nil
}

func Example() {
	in := &inbox{}
	h := writeapi.New(writeapi.Config{Intake: in, Token: "s3cret", Logger: hclog.NewNullLogger()})

	post := func(contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/post/enqueue", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Authorization", "Bearer s3cret")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Body)
	}
	post("application/json", `{"publication": "Daily", "content": "Rain again."}`)
	post("application/x-ndjson", `{"publication": "Daily", "content": "Sun."}
{"publication": "Weekly", "content": "Snow."}`)
	post("application/x-ndjson", `{"publication": "Daily", "content": "Sun."}
{"publication": "Weekly"}`)

	fmt.Println(len(in.posts), "posts taken")
	// Output:
	// 201 {"accepted":1}
	// 201 {"accepted":2}
	// 400 {"error":"line 2: \"content\" is missing: send {\"publication\": \"...\", \"content\": \"...\"} with non-empty strings"}
	// 3 posts taken
}
