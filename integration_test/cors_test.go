package integration_test

import (
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
)

// TestCORSAndCloud runs the binary with --cors-origin and no token
// (loopback mode, which checks Host, not Origin): a page on the listed
// origin may read the read API, /status and the cloud SVG, preflights
// included; another origin and the write API get no CORS header.
func TestCORSAndCloud(t *testing.T) {
	const allowed = "http://localhost:5173"
	p := startParent(t, nil, "--workers=1", "--flush-interval=300ms", "--cors-origin="+allowed, "--cors-origin=https://dash.example.org")
	arts := fixtures(t)
	var nd strings.Builder
	for _, a := range arts {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	r := p.post(t, "application/x-ndjson", nd.String(), map[string]string{"Origin": allowed})
	if r.status != http.StatusCreated {
		t.Fatalf("NDJSON post: status %d body %s", r.status, r.body)
	}
	if v := r.header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("the write API answered with Access-Control-Allow-Origin %q", v)
	}

	var pubs []struct {
		Key string `json:"key"`
	}
	poll.Until(t, 90*time.Second, "a publication stored", func() bool {
		pubs = nil
		readAPI(t, p.url+"/publications", &pubs)
		return len(pubs) > 0
	})
	key := url.PathEscape(pubs[0].Key)

	send := func(method, path string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, p.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp
	}
	for _, path := range []string{"/status", "/publications", "/publications/" + key + "/entities?limit=3", "/publications/" + key + "/cloud.svg"} {
		pre := send(http.MethodOptions, path, "Origin", allowed, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
		if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != allowed ||
			pre.Header.Get("Access-Control-Allow-Methods") != "GET, HEAD" || pre.Header.Get("Access-Control-Allow-Headers") != "Authorization, access_token" ||
			pre.Header.Get("Access-Control-Max-Age") == "" || pre.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s: %d %v", path, pre.StatusCode, pre.Header)
		}
		get := send(http.MethodGet, path, "Origin", allowed)
		if get.StatusCode != http.StatusOK || get.Header.Get("Access-Control-Allow-Origin") != allowed || get.Header.Get("Vary") == "" {
			t.Errorf("GET %s from %s: %d %v", path, allowed, get.StatusCode, get.Header)
		}
		if other := send(http.MethodGet, path, "Origin", "http://localhost:5174"); other.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s from an unlisted origin: Access-Control-Allow-Origin %q", path, other.Header.Get("Access-Control-Allow-Origin"))
		}
		if pre := send(http.MethodOptions, path, "Origin", "http://evil.example", "Access-Control-Request-Method", "GET"); pre.StatusCode != http.StatusForbidden {
			t.Errorf("preflight %s from an unlisted origin: %d, want 403", path, pre.StatusCode)
		}
	}
	if svg := send(http.MethodGet, "/publications/"+key+"/cloud.svg"); svg.Header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("cloud.svg: Content-Type %q", svg.Header.Get("Content-Type"))
	}
	if pre := send(http.MethodOptions, "/post/enqueue", "Origin", allowed, "Access-Control-Request-Method", "POST"); pre.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("preflight of the write API: %d, want 405", pre.StatusCode)
	}
	if code := p.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}

	// A bad origin is refused at start, naming the flag.
	out, err := exec.Command(binary, "--cors-origin=https://example.org/app").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--cors-origin") {
		t.Errorf("--cors-origin with a path: %v\n%s; want a refusal naming the flag", err, out)
	}
}
