package load_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ingest-dev/ingest/internal/load"
)

// A server that refuses the first request with 503 and accepts the rest:
// the refused post is sent again after Retry-After, and every post is
// accounted for.
func ExampleRun() {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()

	dir, _ := os.MkdirTemp("", "load-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "posts.ndjson")
	os.WriteFile(path, []byte(`{"publication":"Town Crier","content":"The river festival drew a crowd."}
{"publication":"Valley Post","content":"A bakery opened on Elm Street."}
{"publication":"Valley Post"}
{"publication":"Town Crier","content":"Snow closed the pass."}
`), 0o644)

	res, err := load.Run(context.Background(), load.Config{URL: srv.URL, Input: path, Connections: 1, MaxRetryWait: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("read %d, skipped %d, accepted %d, retried %d, failed %d\n", res.Read, res.Skipped, res.Accepted, res.Retries, res.Failed())
	where, _, _ := strings.Cut(res.SkipSamples[0], ":")
	fmt.Println("skipped:", where)
	// Output:
	// read 3, skipped 1, accepted 3, retried 1, failed 0
	// skipped: line 3
}
