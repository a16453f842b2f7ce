package integration_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/wire"
)

// TestEveryAcceptedKeyIsReadable posts publications at the extremes the
// limits allow (the longest, made of characters whose lower case is longer
// in UTF-8, with '/', '%', '?', '#' and spaces; dots) and reads
// each back through GET /publications/{escaped key}/entities: every
// accepted key is reachable, none gets 431 or a redirect. Whitespace-only,
// over-long, "." and ".." publications get 400.
func TestEveryAcceptedKeyIsReadable(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--flush-interval=100ms")
	const ascii = " A/b%2F c?d#e& " // trimmed: 13 bytes
	// 'Ⱥ' is 2 bytes and lower-cases to the 3-byte 'ⱥ': the key is 1.5× the
	// publication, the most lower-casing can add.
	longest := ascii + strings.Repeat("Ⱥ", (wire.MaxPublicationBytes-len(strings.TrimSpace(ascii)))/2)
	if n := len(strings.TrimSpace(longest)); n != wire.MaxPublicationBytes-1 && n != wire.MaxPublicationBytes {
		t.Fatalf("test publication is %d bytes, want the limit", n)
	}
	const content = "Mayor Elena Marsh met Daniel Okafor in Port Ashby."
	pubs := []string{longest, "%2e", "a/../b", "...", " ./"}
	for _, pub := range pubs {
		if r := p.post(t, "application/json", jsonPost(t, article{pub, content}), nil); r.status != http.StatusCreated {
			t.Fatalf("post %q: %d %s", pub, r.status, r.body)
		}
	}
	for _, bad := range []string{" \t ", "\u00a0", longest + "x", ".", " .. "} {
		if r := p.post(t, "application/json", jsonPost(t, article{bad, content}), nil); r.status != http.StatusBadRequest ||
			!strings.Contains(r.body, "publication") {
			t.Errorf("post publication %q: %d %s, want 400 naming the publication", bad, r.status, r.body)
		}
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, pub := range pubs {
		key := strings.ToLower(strings.TrimSpace(pub))
		u := p.url + "/publications/" + url.PathEscape(key) + "/entities"
		if len(u) < 40 && pub == longest {
			t.Fatal("escaped URL unexpectedly short")
		}
		var status int
		var body string
		poll.Until(t, 30*time.Second, "GET "+u, func() bool {
			resp, err := client.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			b := new(bytes.Buffer)
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, b.String()
			return status != http.StatusNotFound || !strings.Contains(body, "no publication")
		})
		if status != http.StatusOK || !strings.Contains(body, "elena marsh") {
			t.Errorf("GET %s (%d bytes): %d %.300s, want 200 with the entities", u, len(u), status, body)
		}
	}
}

// TestHostileRequests: the no-token mode refuses what a web page could
// send (text/plain, form, no Content-Type) with 415, any Content-Encoding
// but gzip with 415, and takes gzip within --max-body.
func TestHostileRequests(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--max-body=65536")
	post := `{"publication": "Hostile Times", "content": "Elena Marsh visited Chicago."}`
	var zipped, bomb bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte(post))
	zw.Close()
	zw = gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte(" "), 10<<20))
	zw.Close()
	for _, tc := range []struct {
		name, contentType, encoding, body string
		want                              int
		mention                           string
	}{
		{"text/plain from a page", "text/plain", "", post, 415, "application/json"},
		{"form from a page", "application/x-www-form-urlencoded", "", post, 415, "Content-Type"},
		{"multipart from a page", "multipart/form-data; boundary=x", "", post, 415, "Content-Type"},
		{"no Content-Type", "", "", post, 415, "application/json"},
		{"br with a plain body", "application/json", "br", post, 415, "gzip"},
		{"gzip", "application/json", "gzip", zipped.String(), 201, ""},
		{"gzip bomb", "application/json", "gzip", bomb.String(), 413, "--max-body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, p.url+"/post/enqueue", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", "http://evil.example")
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.mention) {
				t.Fatalf("%d %s, want %d mentioning %q", resp.StatusCode, body, tc.want, tc.mention)
			}
		})
	}
}

// TestRebindingGets421: without a token, a request whose Host is not a
// loopback name (what a DNS-rebinding page sends) gets 421 on every route,
// the read API and /status included; loopback names are served.
func TestRebindingGets421(t *testing.T) {
	p := startParent(t, nil, "--workers=1")
	port := strings.TrimPrefix(p.url, "http://127.0.0.1")
	for _, tc := range []struct {
		method, path, host string
		want               int
	}{
		{"GET", "/status", "evil.example" + port, 421},
		{"GET", "/publications", "evil.example" + port, 421},
		{"GET", "/publications/x/entities", "evil.example", 421},
		{"GET", "/metrics", "evil.example" + port, 421},
		{"GET", "/healthz", "evil.example" + port, 421},
		{"POST", "/post/enqueue", "evil.example" + port, 421},
		{"GET", "/status", "localhost" + port, 200},
		{"GET", "/status", "127.0.0.1" + port, 200},
		{"GET", "/status", "[::1]" + port, 200},
	} {
		req, err := http.NewRequest(tc.method, p.url+tc.path, strings.NewReader(`{"publication": "P", "content": "C"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s Host %s: %d %s, want %d", tc.method, tc.path, tc.host, resp.StatusCode, body, tc.want)
		} else if tc.want == 421 && !strings.Contains(body, "127.0.0.1") {
			t.Errorf("%s %s Host %s: 421 %s does not say what to do", tc.method, tc.path, tc.host, body)
		}
	}
}

// TestTooManyWorkersRefused: --workers far over --max-workers exits 2 at
// once, naming the flags, before any worker starts.
func TestTooManyWorkersRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--workers=100000", "--listen="+freePort(t), "--db="+t.TempDir()+"/ingest.db")
	cmd.Env = append(os.Environ(), "INGEST_TOKEN=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("err %v, want exit status 2; output:\n%s", err, out)
	}
	for _, want := range []string{"--workers 100000", "--max-workers"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not contain %q", out, want)
		}
	}
	if strings.Contains(string(out), "worker.") {
		t.Errorf("a worker started:\n%s", out)
	}
}
