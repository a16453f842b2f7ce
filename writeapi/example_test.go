package writeapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

func Example() {
	q := queue.New[wire.Post](100)
	h := writeapi.New(writeapi.Config{Queue: q, Token: "s3cret", Logger: hclog.NewNullLogger()})

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

	fmt.Println(q.Len(), "posts queued")
	// Output:
	// 201 {"accepted":1}
	// 201 {"accepted":2}
	// 400 {"error":"line 2: \"content\" is missing: send {\"publication\": \"...\", \"content\": \"...\"} with non-empty strings"}
	// 3 posts queued
}
