package supervisor

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// tLog routes logs to t.Log.
type tLog struct{ t *testing.T }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fakeReader holds one publication whose key has a '/' in it.
type fakeReader struct{}

const fakeKey = "news/wire"

func (fakeReader) Publications(context.Context) ([]sink.Publication, error) {
	return []sink.Publication{{Key: fakeKey, Name: "News/Wire", Articles: 1}}, nil
}

func (r fakeReader) PublicationsPage(ctx context.Context, _ int, _ string) ([]sink.Publication, string, error) {
	pubs, err := r.Publications(ctx)
	return pubs, "", err
}

func (fakeReader) TopEntities(_ context.Context, key string, _ int, _ string) ([]wire.EntityCount, string, error) {
	if key != fakeKey {
		return nil, "", sink.ErrNotFound
	}
	return []wire.EntityCount{{Word: "elena marsh", Count: 1}}, "", nil
}

const (
	writeToken = "w-t0ken"
	readToken  = "r-t0ken"
)

func testHTTPServer(t *testing.T) (*httptest.Server, *queue.Queue[wire.Post]) {
	t.Helper()
	q := queue.New[wire.Post](1000)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "ingest_test_gauge", Help: "A metric to scrape."}))
	h, _ := newHTTPHandler(httpDeps{
		Intake: queueIntake{q: q, tally: newTally()}, Token: writeToken, ReadToken: readToken,
		Log:     hclog.New(&hclog.LoggerOptions{Name: "http", Level: hclog.Debug, Output: tLog{t}}),
		Status:  func() readapi.Status { return readapi.Status{QueueCapacity: q.Cap()} },
		Reader:  fakeReader{},
		Metrics: reg,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, q
}

// guardedRoute is one route that needs a token: which one, and how to
// call it.
type guardedRoute struct {
	method, path, token string
}

var guardedRoutes = []guardedRoute{
	{http.MethodPost, "/post/enqueue", writeToken},
	{http.MethodGet, "/publications", readToken},
	{http.MethodGet, "/publications/news%2Fwire/entities", readToken},
	{http.MethodGet, "/publications/news%2Fwire/cloud.svg", readToken},
	{http.MethodGet, "/status", readToken},
	{http.MethodGet, "/metrics", readToken},
}

// tokenVariants are ways to send (or not) the route's token t, and whether
// each is authorized: the same answer on every route.
var tokenVariants = []struct {
	name   string
	header func(t string) []string // name, value pairs
	ok     bool
}{
	{"Bearer T", func(t string) []string { return []string{"Authorization", "Bearer " + t} }, true},
	{"bearer T", func(t string) []string { return []string{"Authorization", "bearer " + t} }, true},
	{"BEARER  T (two spaces)", func(t string) []string { return []string{"Authorization", "BEARER  " + t} }, true},
	{"Bearer<TAB>T", func(t string) []string { return []string{"Authorization", "Bearer\t" + t} }, true},
	{"access_token: T", func(t string) []string { return []string{"access_token", t} }, true},
	{"right access_token, wrong Authorization", func(t string) []string {
		return []string{"access_token", t, "Authorization", "Bearer wrong"}
	}, true},
	{"wrong access_token, right Authorization", func(t string) []string {
		return []string{"access_token", "wrong", "Authorization", "Bearer " + t}
	}, true},
	{"no header", func(string) []string { return nil }, false},
	{"Bearer with no token", func(string) []string { return []string{"Authorization", "Bearer"} }, false},
	{"Basic T", func(t string) []string { return []string{"Authorization", "Basic " + t} }, false},
}

func send(t *testing.T, method, url string, header []string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"publication": "P", "content": "Elena Marsh visited Chicago."}`)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
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
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestTokenSameVerdictOnEveryRoute: each way of sending a token gets the
// same verdict on every guarded route, the write API, the read API,
// /status and /metrics alike.
func TestTokenSameVerdictOnEveryRoute(t *testing.T) {
	srv, q := testHTTPServer(t)
	for _, v := range tokenVariants {
		t.Run(v.name, func(t *testing.T) {
			for _, route := range guardedRoutes {
				status, hdr, body := send(t, route.method, srv.URL+route.path, v.header(route.token))
				authorized := status/100 == 2
				if authorized != v.ok {
					t.Errorf("%s %s: status %d (%s), want authorized=%v as on every route", route.method, route.path, status, body, v.ok)
				}
				if status == http.StatusUnauthorized {
					if hdr.Get("Content-Type") != "application/json" || !strings.Contains(body, "access_token or Authorization: Bearer") {
						t.Errorf("%s %s: 401 %s (%s): want the JSON error that says which headers", route.method, route.path,
							body, hdr.Get("Content-Type"))
					}
				}
			}
		})
	}
	want := 0
	for _, v := range tokenVariants {
		if v.ok {
			want++
		}
	}
	if q.Len() != want {
		t.Errorf("queue holds %d posts, want one per authorized variant (%d)", q.Len(), want)
	}
}

// TestTokensDoNotCross: the write token opens no read route, and the read
// token does not post.
func TestTokensDoNotCross(t *testing.T) {
	srv, _ := testHTTPServer(t)
	for _, route := range guardedRoutes {
		other := readToken
		if route.token == readToken {
			other = writeToken
		}
		if status, _, body := send(t, route.method, srv.URL+route.path, []string{"Authorization", "Bearer " + other}); status != http.StatusUnauthorized {
			t.Errorf("%s %s with the other API's token: %d %s, want 401", route.method, route.path, status, body)
		}
	}
}

// TestCORSRoutes: with --cors-origin the parent's table answers preflights
// of the read routes, in loopback mode too (CORS is about Origin, not
// Host), and adds the headers to GETs; the write API gets none.
func TestCORSRoutes(t *testing.T) {
	h, _ := newHTTPHandler(httpDeps{
		Intake: queueIntake{q: queue.New[wire.Post](10), tally: newTally()}, ReadToken: readToken, Reader: fakeReader{},
		Status:       func() readapi.Status { return readapi.Status{} },
		Metrics:      prometheus.NewRegistry(),
		LoopbackOnly: true, Listen: "127.0.0.1:0",
		CORSOrigins: []string{"http://localhost:3000"},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	origin := []string{"Origin", "http://localhost:3000", "Access-Control-Request-Method", "GET"}
	for _, path := range []string{"/status", "/publications", "/publications/news%2Fwire/entities", "/publications/news%2Fwire/cloud.svg"} {
		status, hdr, body := send(t, http.MethodOptions, srv.URL+path, origin)
		if status != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "http://localhost:3000" || hdr.Get("Access-Control-Allow-Methods") != "GET, HEAD" {
			t.Errorf("OPTIONS %s: %d %v %s", path, status, hdr, body)
		}
		status, hdr, body = send(t, http.MethodGet, srv.URL+path, []string{"Origin", "http://localhost:3000", "Authorization", "Bearer " + readToken})
		if status != http.StatusOK || hdr.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
			t.Errorf("GET %s: %d %v %s", path, status, hdr, body)
		}
	}
	for _, path := range []string{"/post/enqueue", "/metrics", "/healthz"} {
		status, hdr, _ := send(t, http.MethodOptions, srv.URL+path, origin)
		if status != http.StatusMethodNotAllowed || hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("OPTIONS %s: %d %v, want 405 without CORS", path, status, hdr)
		}
	}
}

// TestRouteTable: the parent's one table routes every path, HEAD where
// GET, and answers the rest with JSON 404 or 405.
func TestRouteTable(t *testing.T) {
	srv, _ := testHTTPServer(t)
	read := []string{"Authorization", "Bearer " + readToken}
	for _, tc := range []struct {
		method, path string
		header       []string
		status       int
		allow        string
		mention      string
	}{
		{"GET", "/healthz", nil, 200, "", `"ok"`},
		{"HEAD", "/healthz", nil, 200, "", ""},
		{"GET", "/readyz", nil, 200, "", `"ready"`},
		{"GET", "/", nil, 200, "", "/static/app.js"},
		{"HEAD", "/", nil, 200, "", ""},
		{"GET", "/static/app.js", nil, 200, "", "encodeURIComponent"},
		{"GET", "/metrics", read, 200, "", "ingest_test_gauge"},
		{"HEAD", "/publications", read, 200, "", ""},
		{"GET", "/publications/news%2Fwire/entities", read, 200, "", "elena marsh"},
		{"GET", "/publications/news/wire/entities", read, 404, "", "%2F"},
		{"GET", "/publications/nope/entities", read, 404, "", `no publication with key \"nope\"`},
		{"GET", "/publications/news%2Fwire/cloud.svg", read, 200, "", "elena marsh"},
		{"GET", "/publications/nope/cloud.svg", read, 404, "", `no publication with key \"nope\"`},
		{"OPTIONS", "/publications", nil, 405, "GET, HEAD", "use GET"}, // no --cors-origin: no preflights
		{"GET", "/nope", nil, 404, "", "/post/enqueue"},
		{"GET", "/static/nope.js", nil, 404, "", "/static/app.js"},
		{"GET", "/post/enqueue", nil, 405, "POST", "use POST"},
		{"POST", "/metrics", nil, 405, "GET, HEAD", "use GET"},
		{"DELETE", "/publications", nil, 405, "GET, HEAD", "use GET"},
		{"POST", "/", nil, 405, "GET, HEAD", "use GET"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, hdr, body := send(t, tc.method, srv.URL+tc.path, tc.header)
			if status != tc.status || hdr.Get("Allow") != tc.allow || !strings.Contains(body, tc.mention) {
				t.Fatalf("%d Allow %q %.300s; want %d Allow %q mentioning %q", status, hdr.Get("Allow"), body, tc.status, tc.allow, tc.mention)
			}
			if status >= 400 {
				var e struct{ Error string }
				if hdr.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
					t.Fatalf("error %s (%s) is not the JSON {\"error\": ...}", body, hdr.Get("Content-Type"))
				}
			}
		})
	}
}
