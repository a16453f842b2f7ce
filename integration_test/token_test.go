package integration_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
)

// TestTokenSameVerdictEverywhere: with a write token and a different read
// token, each way of sending a route's token gets the same verdict on
// every guarded route of the parent: the write API, the read API, /status
// and /metrics.
func TestTokenSameVerdictEverywhere(t *testing.T) {
	const writeToken, readToken = "w-s3cret", "r-s3cret"
	dir := t.TempDir()
	writeFile, readFile := filepath.Join(dir, "token"), filepath.Join(dir, "read-token")
	for path, tok := range map[string]string{writeFile: writeToken, readFile: readToken} {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := startParent(t, nil, "--workers=1", "--flush-interval=200ms",
		"--token-file="+writeFile, "--read-token-file="+readFile)

	// A stored publication, whose key has a '/' in it, for the entities route.
	const pub = "Token/Wire"
	post := `{"publication":"` + pub + `","content":"Elena Marsh visited Chicago."}`
	if r := p.post(t, "application/json", post, map[string]string{"access_token": writeToken}); r.status != http.StatusCreated {
		t.Fatalf("seed post: %d %s", r.status, r.body)
	}
	entities := "/publications/" + url.PathEscape(strings.ToLower(pub)) + "/entities"
	poll.Until(t, 90*time.Second, "the seed post stored", func() bool {
		status, _ := send(t, http.MethodGet, p.url+entities, "", []string{"access_token", readToken})
		return status == http.StatusOK
	})

	routes := []struct {
		method, path, token string
	}{
		{http.MethodPost, "/post/enqueue", writeToken},
		{http.MethodGet, "/publications", readToken},
		{http.MethodGet, entities, readToken},
		{http.MethodGet, "/status", readToken},
		{http.MethodGet, "/metrics", readToken},
	}
	for _, v := range []struct {
		name   string
		header func(tok string) []string // name, value pairs
		ok     bool
	}{
		{"Bearer T", func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }, true},
		{"bearer T", func(tok string) []string { return []string{"Authorization", "bearer " + tok} }, true},
		{"BEARER  T (two spaces)", func(tok string) []string { return []string{"Authorization", "BEARER  " + tok} }, true},
		{"Bearer<TAB>T", func(tok string) []string { return []string{"Authorization", "Bearer\t" + tok} }, true},
		{"access_token: T", func(tok string) []string { return []string{"access_token", tok} }, true},
		{"right access_token, wrong Authorization", func(tok string) []string {
			return []string{"access_token", tok, "Authorization", "Bearer wrong"}
		}, true},
		{"wrong access_token, right Authorization", func(tok string) []string {
			return []string{"access_token", "wrong", "Authorization", "Bearer " + tok}
		}, true},
		{"no header", func(string) []string { return nil }, false},
		{"Bearer with no token", func(string) []string { return []string{"Authorization", "Bearer"} }, false},
		{"Basic T", func(tok string) []string { return []string{"Authorization", "Basic " + tok} }, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			var verdicts []string
			for _, route := range routes {
				status, body := send(t, route.method, p.url+route.path, post, v.header(route.token))
				verdicts = append(verdicts, route.method+" "+route.path+": "+http.StatusText(status))
				if ok := status/100 == 2; ok != v.ok || (!ok && status != http.StatusUnauthorized) {
					t.Errorf("%s %s: %d %.200s; want %s, as on every guarded route", route.method, route.path, status, body,
						map[bool]string{true: "2xx", false: "401"}[v.ok])
				}
			}
			if t.Failed() {
				t.Logf("verdicts: %s", strings.Join(verdicts, "; "))
			}
		})
	}
	if code := p.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}

// send sends method to u with header (name, value pairs); a POST carries
// body as JSON. It returns the status and the body.
func send(t *testing.T, method, u, body string, header []string) (int, string) {
	t.Helper()
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readBody(t, resp)
}
