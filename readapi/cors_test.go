package readapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/readapi"
)

// corsHeaders are every header CORS may set.
var corsHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"}

func corsRoutes() []string {
	return []string{"/status", "/publications", entitiesPath(keyGazette, ""), cloudPath(keyGazette, "")}
}

func TestCORSOffByDefault(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store, Status: testStatus})
	for _, path := range corsRoutes() {
		r := get(t, srv.URL, path, "Origin", "https://example.org")
		if r.status != http.StatusOK {
			t.Errorf("GET %s: %d", path, r.status)
		}
		for _, h := range append(corsHeaders, "Vary") {
			if v := r.header.Get(h); v != "" {
				t.Errorf("GET %s without --cors-origin: %s: %q, want none", path, h, v)
			}
		}
		if r := do(t, http.MethodOptions, srv.URL, path, "Origin", "https://example.org", "Access-Control-Request-Method", "GET"); r.status != http.StatusMethodNotAllowed || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("OPTIONS %s without --cors-origin: %d %v, want 405 without CORS headers", path, r.status, r.header)
		}
	}
}

func TestCORSListedOrigins(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store, Status: testStatus, ReadToken: "tok",
		CORSOrigins: []string{"https://Example.org", "http://localhost:3000"}})
	for _, path := range corsRoutes() {
		// A listed origin is echoed as sent, with Vary: Origin, and never
		// with credentials.
		r := get(t, srv.URL, path, "Origin", "https://example.org", "Authorization", "Bearer tok")
		if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "https://example.org" ||
			!strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("GET %s from a listed origin: %d %v", path, r.status, r.header)
		}
		// A 401 carries the header too, so the other page can read why.
		if r := get(t, srv.URL, path, "Origin", "http://localhost:3000"); r.status != http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
			t.Errorf("GET %s without the token from a listed origin: %d %v", path, r.status, r.header)
		}
		// An unlisted origin gets no Allow-Origin (the browser hides the
		// answer) but Vary all the same.
		for _, origin := range []string{"https://evil.example", "http://localhost:3001", "https://example.org.evil", "null"} {
			r := get(t, srv.URL, path, "Origin", origin, "Authorization", "Bearer tok")
			if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Vary") == "" {
				t.Errorf("GET %s from %s: %v, want Vary and no Allow-Origin", path, origin, r.header)
			}
		}

		// Preflight: no token needed; the methods, headers and max age.
		p := do(t, http.MethodOptions, srv.URL, path, "Origin", "https://example.org",
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
		if p.status != http.StatusNoContent {
			t.Fatalf("preflight %s: %d %s", path, p.status, p.body)
		}
		for h, want := range map[string]string{
			"Access-Control-Allow-Origin":  "https://example.org",
			"Access-Control-Allow-Methods": "GET, HEAD",
			"Access-Control-Allow-Headers": "Authorization, access_token",
			"Access-Control-Max-Age":       "600",
		} {
			if got := p.header.Get(h); got != want {
				t.Errorf("preflight %s: %s %q, want %q", path, h, got, want)
			}
		}
		if p.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s: credentials allowed", path)
		}
		p = do(t, http.MethodOptions, srv.URL, path, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
		if p.status != http.StatusForbidden || p.header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(p.body, "--cors-origin") {
			t.Errorf("preflight %s from an unlisted origin: %d %v %s, want 403 naming --cors-origin", path, p.status, p.header, p.body)
		}
	}
	// The page and its files are same-origin only; other methods stay 405.
	if r := get(t, srv.URL, "/", "Origin", "https://example.org"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the page answered with CORS headers")
	}
	if r := do(t, http.MethodPost, srv.URL, "/publications", "Origin", "https://example.org"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /publications: %d, want 405", r.status)
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store, Status: testStatus, CORSOrigins: []string{"*"}})
	for _, path := range corsRoutes() {
		r := get(t, srv.URL, path, "Origin", "https://anything.example")
		if r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("GET %s with *: %v, want Allow-Origin * and no credentials", path, r.header)
		}
		p := do(t, http.MethodOptions, srv.URL, path, "Origin", "https://anything.example", "Access-Control-Request-Method", "GET")
		if p.status != http.StatusNoContent || p.header.Get("Access-Control-Allow-Origin") != "*" || p.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s with *: %d %v", path, p.status, p.header)
		}
		// No Origin: not a CORS request, no CORS header.
		if r := get(t, srv.URL, path); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s without Origin: Allow-Origin set", path)
		}
	}
}
