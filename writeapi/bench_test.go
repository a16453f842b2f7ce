package writeapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// benchPost is a post of about 3 KB, the size of a typical article.
var benchPost = func() []byte {
	sentence := "The council voted on Tuesday to extend the tram line past the river, \"a decade late\", critics said. "
	content := strings.Repeat(sentence, 3000/len(sentence)+1)
	return fmt.Appendf(nil, `{"title": "Tram line extended", "publication": "The Daily Example", "content": %q}`, content)
}()

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark measures the handler rather than a recorder.
type discardWriter struct {
	hdr    http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.hdr }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// reusableBody lets one request be served many times without allocating
// a new body each time.
type reusableBody struct{ bytes.Reader }

func (*reusableBody) Close() error { return nil }

func benchEnqueue(b *testing.B, payload []byte, contentType string, posts int) {
	q := newMemIntake(max(posts, 1024))
	h := New(Config{Intake: q, Token: "t", MaxBody: 4 << 20, Logger: hclog.NewNullLogger()})
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		body := &reusableBody{}
		r := httptest.NewRequest(http.MethodPost, "/post/enqueue", nil)
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Authorization", "Bearer t")
		r.ContentLength = int64(len(payload))
		w := &discardWriter{hdr: http.Header{}}
		for pb.Next() {
			body.Reset(payload)
			r.Body = body
			h.ServeHTTP(w, r)
			if w.status != http.StatusCreated {
				b.Errorf("status %d, want 201", w.status)
				return
			}
			for range posts {
				q.take()
			}
		}
	})
	b.ReportMetric(float64(b.N*posts)/b.Elapsed().Seconds(), "posts/s")
}

// BenchmarkEnqueueSingle serves one ~3 KB post per request from
// GOMAXPROCS goroutines; posts/s is the handler's ceiling on this machine.
func BenchmarkEnqueueSingle(b *testing.B) {
	benchEnqueue(b, benchPost, "application/json", 1)
}

// BenchmarkEnqueueNDJSON serves a batch of 100 ~3 KB posts per request.
func BenchmarkEnqueueNDJSON(b *testing.B) {
	const n = 100
	payload := bytes.Repeat(append(benchPost, '\n'), n)
	benchEnqueue(b, payload, "application/x-ndjson; charset=utf-8", n)
}

// BenchmarkDecodePost compares the fast path with encoding/json on one
// ~3 KB post: the reason decodePostFast exists.
func BenchmarkDecodePost(b *testing.B) {
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(benchPost)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := decodePostFast(benchPost); !ok {
				b.Fatal("fast path declined the benchmark post")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(benchPost)))
		b.ReportAllocs()
		for b.Loop() {
			var f postFields
			if err := json.Unmarshal(benchPost, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
