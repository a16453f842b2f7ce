package httpjson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	rec := httptest.NewRecorder()
	Error(rec, http.StatusTeapot, `no "tea" <here>`)
	if rec.Code != http.StatusTeapot {
		t.Errorf("status %d, want %d", rec.Code, http.StatusTeapot)
	}
	for name, want := range map[string]string{
		"Content-Type":           "application/json",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if got, want := rec.Header().Get("Content-Length"), strconv.Itoa(rec.Body.Len()); got != want {
		t.Errorf("Content-Length: %q, want %q", got, want)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != `no "tea" <here>` {
		t.Errorf("body %s (%v): want the message as {\"error\": ...}", rec.Body, err)
	}
}

// TestMux: routes answer, and everything else is a JSON 404 or 405.
func TestMux(t *testing.T) {
	m := NewMux(nil, func(r *http.Request) string { return "no route " + r.URL.Path })
	m.HandleFunc("POST /in", func(w http.ResponseWriter, r *http.Request) { Write(w, 201, []byte(`{}`)) })
	m.HandleFunc("GET /items/{key}/parts", func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(r.PathValue("key"))
		Write(w, 200, b)
	})
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { Write(w, 200, []byte(`"root"`)) })
	for _, tc := range []struct {
		method, target string
		status         int
		allow, body    string
	}{
		{"POST", "/in", 201, "", `{}`},
		{"GET", "/", 200, "", `"root"`},
		{"HEAD", "/", 200, "", `"root"`},
		{"GET", "/items/a%2Fb/parts", 200, "", `"a/b"`},
		{"GET", "/items/a%20b/parts", 200, "", `"a b"`},
		{"HEAD", "/items/x/parts", 200, "", `"x"`},
		{"GET", "/in", 405, "POST", `{"error":"method GET not allowed on /in: use POST"}`},
		{"DELETE", "/items/x/parts", 405, "GET, HEAD", `{"error":"method DELETE not allowed on /items/x/parts: use GET"}`},
		{"POST", "/", 405, "GET, HEAD", `{"error":"method POST not allowed on /: use GET"}`},
		{"GET", "/nope", 404, "", `{"error":"no route /nope"}`},
		{"GET", "/in/", 404, "", `{"error":"no route /in/"}`},
		{"GET", "/items/a/b/parts", 404, "", `{"error":"no route /items/a/b/parts"}`},
		{"GET", "/items//parts", 404, "", `{"error":"no route /items//parts"}`},
		{"GET", "/items/x/../y/parts", 404, "", `{"error":"no route /items/x/../y/parts"}`},
		{"GET", "/./", 404, "", `{"error":"no route /./"}`},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow || rec.Body.String() != tc.body {
				t.Errorf("got %d Allow %q %s; want %d Allow %q %s", rec.Code, rec.Header().Get("Allow"), rec.Body,
					tc.status, tc.allow, tc.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Write(w, http.StatusOK, []byte(`{}`)) })
	h := LoopbackHost(ok, "127.0.0.1:8000")
	named := LoopbackHost(ok, "ingest.internal:8000")
	for _, tt := range []struct {
		handler http.Handler
		host    string
		want    int
	}{
		{h, "127.0.0.1:8000", 200},
		{h, "127.0.0.1", 200},
		{h, "127.1.2.3:9", 200},
		{h, "localhost:8000", 200},
		{h, "LocalHost.", 200},
		{h, "[::1]:8000", 200},
		{h, "[::1]", 200},
		{h, "[::ffff:127.0.0.1]:8000", 200},
		{h, "", 200}, // HTTP/1.0: no browser sends it
		{named, "ingest.internal:8000", 200},
		{named, "localhost", 200},
		// What a rebinding page's requests carry: its own name.
		{h, "evil.example:8000", 421},
		{h, "evil.example", 421},
		{h, "localhost.evil.example", 421},
		{h, "127.0.0.1.nip.io:8000", 421},
		{h, "10.0.0.1:8000", 421},
		{h, "[fe80::1%25eth0]:8000", 421},
		{h, "0.0.0.0:8000", 421},
		{named, "other.internal:8000", 421},
	} {
		r := httptest.NewRequest(http.MethodGet, "/status", nil)
		r.Host = tt.host
		rec := httptest.NewRecorder()
		tt.handler.ServeHTTP(rec, r)
		if rec.Code != tt.want {
			t.Errorf("Host %q: status %d, want %d (%s)", tt.host, rec.Code, tt.want, rec.Body)
			continue
		}
		if tt.want == 421 {
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, "127.0.0.1") || !strings.Contains(e.Error, "--token-file") {
				t.Errorf("Host %q: body %s: want a JSON error naming 127.0.0.1 and --token-file", tt.host, rec.Body)
			}
		}
	}
}
