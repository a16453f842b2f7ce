package writeapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// postJSON is a post with these fields, JSON-encoded.
func postJSON(publication, content string) string {
	return fmt.Sprintf(`{"publication": %s, "content": %s}`, strconv.Quote(publication), strconv.Quote(content))
}

func TestEnqueueRefusesPostsOutsideTheLimits(t *testing.T) {
	longest := strings.Repeat("é", wire.MaxPublicationBytes/2) // 256 bytes of 2-byte characters
	for _, tt := range []struct {
		name, body string
		ndjson     bool
		want       []string // empty: accepted
	}{
		{name: "longest publication", body: postJSON("  "+longest+"\t", "C")},
		{name: "publication of only spaces", body: postJSON(" \t\n ", "C"), want: []string{`"publication"`, "white space"}},
		{name: "publication of unicode spaces", body: postJSON("\u00a0\u2003", "C"), want: []string{`"publication"`, "white space"}},
		{name: "publication a dot segment", body: postJSON(" .. ", "C"), want: []string{`"publication"`, `".."`}},
		{name: "publication of dots", body: postJSON("...", "C")},
		{name: "content of only spaces", body: postJSON("P", "  \n"), want: []string{`"content"`, "white space"}},
		{name: "publication one byte too long", body: postJSON(longest+"x", "C"),
			want: []string{`"publication"`, "257 bytes", "limit of 256 bytes"}},
		{name: "long publication on the fast path's fallback", body: `{"publication": "` + strings.Repeat(`\u0041`, 300) + `", "content": "C"}`,
			want: []string{"300 bytes", "limit of 256 bytes"}},
		{name: "ndjson names the line", ndjson: true, body: goodPost + "\n" + postJSON(strings.Repeat("p", 1000), "C") + "\n",
			want: []string{"line 2:", "1000 bytes", "limit of 256 bytes"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(4)
			h := New(Config{Intake: q, Logger: testLogger(t)})
			req := request{body: tt.body}
			if tt.ndjson {
				req.header = map[string]string{"Content-Type": "application/x-ndjson"}
			}
			rec := serve(h, req)
			if len(tt.want) == 0 {
				if rec.Code != http.StatusCreated {
					t.Fatalf("status %d (%s), want 201", rec.Code, rec.Body)
				}
				return
			}
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", rec.Code, rec.Body)
			}
			assertContains(t, errorMessage(t, rec), tt.want...)
			if q.Len() != 0 {
				t.Fatalf("queue holds %d posts after a refusal", q.Len())
			}
		})
	}
}

func TestEnqueueContentTypeWithoutToken(t *testing.T) {
	for _, tt := range []struct {
		contentType string
		token       string
		want        int
	}{
		{"application/json", "", http.StatusCreated},
		{"application/json; charset=utf-8", "", http.StatusCreated},
		{"application/x-ndjson", "", http.StatusCreated},
		{"application/ndjson", "", http.StatusCreated},
		// What a browser sends from any page without a CORS preflight.
		{"text/plain", "", http.StatusUnsupportedMediaType},
		{"text/plain; charset=utf-8", "", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"multipart/form-data; boundary=x", "", http.StatusUnsupportedMediaType},
		{"", "", http.StatusUnsupportedMediaType}, // fetch() with a binary body sends none
		// With a token, the request is authenticated: as before.
		{"text/plain", "s3cret", http.StatusCreated},
		{"", "s3cret", http.StatusCreated},
	} {
		t.Run(fmt.Sprintf("%q token=%v", tt.contentType, tt.token != ""), func(t *testing.T) {
			q := newMemIntake(4)
			h := New(Config{Intake: q, Token: tt.token, Logger: testLogger(t)})
			rec := serve(h, request{body: goodPost, header: map[string]string{"Content-Type": tt.contentType, "access_token": tt.token}})
			if rec.Code != tt.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want == http.StatusUnsupportedMediaType {
				assertContains(t, errorMessage(t, rec), "application/json", "application/x-ndjson")
				if got := h.Stats().Unsupported; got != 1 {
					t.Errorf("Stats().Unsupported = %d, want 1", got)
				}
			}
		})
	}
}

func gzipped(t *testing.T, b []byte) string { return string(gzipBytes(t, b)) }

func TestEnqueueContentEncoding(t *testing.T) {
	const maxBody = 4096
	batch := strings.Repeat(goodPost+"\n", 3)
	bomb := gzipped(t, bytes.Repeat([]byte(" "), 1<<20)) // ~1 KB that inflates to 1 MiB
	for _, tt := range []struct {
		name, encoding, contentType, body string
		want                              int
		msg                               []string
	}{
		{name: "gzip", encoding: "gzip", body: gzipped(t, []byte(goodPost)), want: 201},
		{name: "x-gzip", encoding: "x-gzip", body: gzipped(t, []byte(goodPost)), want: 201},
		{name: "gzip ndjson", encoding: "GZIP", contentType: "application/x-ndjson", body: gzipped(t, []byte(batch)), want: 201},
		{name: "identity", encoding: "identity", body: goodPost, want: 201},
		{name: "gzip bomb", encoding: "gzip", body: bomb, want: 413, msg: []string{"decompressed", "--max-body"}},
		{name: "not gzip", encoding: "gzip", body: goodPost, want: 400, msg: []string{"not valid gzip"}},
		{name: "truncated gzip", encoding: "gzip", body: gzipped(t, []byte(goodPost))[:20], want: 400, msg: []string{"not valid gzip"}},
		{name: "br with a plain body", encoding: "br", body: goodPost, want: 415, msg: []string{"br", "gzip"}},
		{name: "deflate", encoding: "deflate", body: goodPost, want: 415, msg: []string{"deflate", "gzip"}},
		{name: "gzip twice", encoding: "gzip, gzip", body: gzipped(t, []byte(gzipped(t, []byte(goodPost)))), want: 415},
		{name: "gzip then br", encoding: "gzip, br", body: goodPost, want: 415},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(8)
			h := New(Config{Intake: q, MaxBody: maxBody, Logger: testLogger(t)})
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			rec := serve(h, request{body: tt.body, header: map[string]string{"Content-Encoding": tt.encoding, "Content-Type": ct}})
			if rec.Code != tt.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want != 201 {
				assertContains(t, errorMessage(t, rec), tt.msg...)
				if q.Len() != 0 {
					t.Fatalf("queue holds %d posts after a refusal", q.Len())
				}
				return
			}
			for _, p := range takeAll(q) {
				if p.Publication != "Daily" || p.Content != "Rain again." {
					t.Fatalf("enqueued %+v, want the posted post", p)
				}
			}
		})
	}
}
