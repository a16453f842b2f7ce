package writeapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// FuzzEnqueueBody feeds arbitrary bytes to POST /post/enqueue, once as a
// JSON body and once as an NDJSON body. Whatever the bytes, the handler
// must not panic, must answer 201, 400, 413 or 503, and must leave the
// queue as it was unless it answered 201, in which case exactly the
// accepted posts, each with both fields set, were added.
func FuzzEnqueueBody(f *testing.F) {
	const (
		capacity = 4
		maxBody  = 4096
	)
	for _, seed := range []string{
		goodPost,
		`{"title": "t", "publication": "P", "content": "C"}`,
		goodPost + "\n" + goodPost + "\n\n" + goodPost,
		goodPost + "\r\n" + goodPost + "\r\n",
		strings.Repeat(goodPost+"\n", 3),   // fills the queue (one slot is taken)
		strings.Repeat(goodPost+"\n", 5),   // more than the queue holds
		strings.Repeat(goodPost+"\n", 100), // over maxBody
		"",
		"\n\n",
		"{",
		"{}",
		"[]",
		"null",
		`"s"`,
		"1e999",
		`{"publication": null, "content": "C"}`,
		`{"publication": "", "content": "C"}`,
		`{"publication": "P", "content": 1}`,
		`{"publication": "P", "content": {"a": [1, 2]}}`,
		`{"Publication": "P", "CONTENT": "C"}`,
		`{"publication": "P", "content": "C", "content": null}`,
		`{"publication": "P", "content": "\u00e9\ud800\n"}`,
		"{\"publication\": \"P\", \"content\": \"\xff\xfe\"}",
		goodPost + "x",
		goodPost + "}",
		goodPost + goodPost,
		"{\n\"publication\": \"P\",\n\"content\": \"C\"\n}",
		"\ufeff" + goodPost,
		`{"publication": "P\u00e9", "content": "a\"b\\c\/d\b\f\n\r\t\u0000\u20AC\ud83d\ude00"}`,
		`{"publication": "P", "content": "C", "x": "\ud800"}`,
		`{"publication": "P", "content": "C\`,
		`{"publication": "P", "content": "C", "n": 1, "o": {}, "a": [], "b": true}`,
		"{\"publication\": \"P\", \"content\": \"tab\there\"}",
	} {
		f.Add([]byte(seed))
	}
	// Seeds for the "raw gzip" case: valid gzip of a post and of a batch,
	// one that inflates past maxBody, one cut short.
	f.Add(gzipBytes(f, []byte(goodPost)))
	f.Add(gzipBytes(f, []byte(goodPost+"\n"+goodPost)))
	f.Add(gzipBytes(f, bytes.Repeat([]byte(" "), 2*maxBody)))
	f.Add(gzipBytes(f, []byte(goodPost))[:15])
	f.Add([]byte(`{"publication": " \u00a0 ", "content": "C"}`))
	f.Add([]byte(`{"publication": "` + strings.Repeat("x", 257) + `", "content": "C"}`))

	log := hclog.NewNullLogger()
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastPath(t, body)
		for line := range bytes.SplitSeq(body, []byte("\n")) {
			checkFastPath(t, line)
		}
		// Each body goes plain, gzip-compressed, and as is under
		// Content-Encoding: gzip, so that the fuzzer also feeds the
		// decompressor whatever it likes.
		for _, tc := range []struct{ contentType, encoding string }{
			{"application/json", ""}, {"application/x-ndjson", ""},
			{"application/json", "gzip"}, {"application/x-ndjson", "gzip"},
			{"application/json", "raw gzip"}, {"application/x-ndjson", "raw gzip"},
		} {
			contentType := tc.contentType + " " + tc.encoding
			q := newMemIntake(capacity)
			if err := q.TryPutAll([]wire.Post{{Publication: "p", Content: "already there"}}); err != nil {
				t.Fatal(err)
			}
			h := New(Config{Intake: q, MaxBody: maxBody, Logger: log})
			sent := body
			if tc.encoding == "gzip" {
				sent = gzipBytes(t, body)
			}
			r := httptest.NewRequest(http.MethodPost, "/post/enqueue", bytes.NewReader(sent))
			r.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				r.Header.Set("Content-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)

			var resp struct {
				Accepted int    `json:"accepted"`
				Error    string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("%s: response body %q is not JSON: %v", contentType, rec.Body, err)
			}
			switch rec.Code {
			case http.StatusCreated:
				if resp.Accepted < 1 {
					t.Fatalf("%s: 201 with accepted = %d", contentType, resp.Accepted)
				}
				if tc.encoding == "raw gzip" {
					if _, err := gzip.NewReader(bytes.NewReader(body)); err != nil {
						t.Fatalf("%s: 201 for a body that is not gzip", contentType)
					}
				} else if tc.contentType == "application/json" && (resp.Accepted != 1 || !json.Valid(body)) {
					t.Fatalf("%s: 201 accepting %d posts from %q", contentType, resp.Accepted, body)
				}
				if got := q.Len() - 1; got != resp.Accepted {
					t.Fatalf("%s: 201 says %d accepted, queue grew by %d", contentType, resp.Accepted, got)
				}
				for _, p := range takeAll(q)[1:] { // [0] was there before

					if why := wire.CheckPost(p); why != "" {
						t.Fatalf("%s: enqueued a post outside the limits (%s): %+v", contentType, why, p)
					}
				}
				if s := h.Stats(); s.Accepted != uint64(resp.Accepted) || s.Rejected() != 0 {
					t.Fatalf("%s: Stats = %+v after accepting %d", contentType, s, resp.Accepted)
				}
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable, http.StatusUnsupportedMediaType:
				if resp.Error == "" {
					t.Fatalf("%s: status %d without an error message: %q", contentType, rec.Code, rec.Body)
				}
				if q.Len() != 1 {
					t.Fatalf("%s: status %d changed the queue length from 1 to %d", contentType, rec.Code, q.Len())
				}
				if s := h.Stats(); s.Accepted != 0 || s.Rejected() != 1 {
					t.Fatalf("%s: Stats = %+v after one refusal", contentType, s)
				}
			default:
				t.Fatalf("%s: status %d, want 201, 400, 413, 415 or 503; body %q", contentType, rec.Code, rec.Body)
			}
		}
	})
}

// gzipBytes returns b gzip-compressed.
func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkFastPath fails t if decodePostFast accepts b but encoding/json
// would decode it differently or not at all.
func checkFastPath(t *testing.T, b []byte) {
	t.Helper()
	pub, content, ok := decodePostFast(b)
	if !ok {
		return
	}
	var f postFields
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", b, err)
	}
	if f.Publication != pub || f.Content != content {
		t.Fatalf("fast path decoded %q as (%q, %q), encoding/json as (%q, %q)", b, pub, content, f.Publication, f.Content)
	}
}
