package readapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// server serves readapi.New(cfg) over real HTTP on loopback, so requests go
// through net/http's parsing of escaped paths as a browser's would.
func server(t *testing.T, cfg readapi.Config) *httptest.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv := httptest.NewServer(readapi.New(cfg))
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, base, path string, header ...string) response {
	t.Helper()
	return do(t, http.MethodGet, base, path, header...)
}

// do sends method to base+path (path as sent: already escaped) with
// header given as name, value pairs.
func do(t *testing.T, method, base, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
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
	return response{resp.StatusCode, resp.Header, string(b)}
}

func entitiesPath(key string, query string) string {
	p := "/publications/" + url.PathEscape(key) + "/entities"
	if query != "" {
		p += "?" + query
	}
	return p
}

type pubJSON struct {
	Key      string `json:"key"`
	Name     string `json:"name"`
	Articles int64  `json:"articles"`
}

type pageJSON struct {
	Entities []wire.EntityCount `json:"entities"`
	Next     *string            `json:"next"`
}

// decode parses r's body strictly into v: a field the API does not
// document fails the test.
func decode(t *testing.T, r response, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (body %s)", ct, r.body)
	}
	d := json.NewDecoder(strings.NewReader(r.body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

func TestPublications(t *testing.T) {
	store, f := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	r := get(t, srv.URL, "/publications")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var got []pubJSON
	decode(t, r, &got)
	var want []pubJSON
	for _, p := range f.pubs {
		want = append(want, pubJSON{p.Key, p.Name, p.Articles})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("GET /publications =\n%v\nwant (articles descending, then key)\n%v", got, want)
	}
	if got[0].Key != keyGazette || got[0].Name != "The Harbor Gazette" || got[0].Articles != 16 {
		t.Fatalf("first publication %+v: want the gazette, its first name, 10+6 articles", got[0])
	}
}

func TestPublicationsEmptyStoreIsEmptyArray(t *testing.T) {
	store, err := sink.OpenSQLite(t.Context(), t.TempDir()+"/empty.db", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := server(t, readapi.Config{Reader: store})
	if r := get(t, srv.URL, "/publications"); r.status != http.StatusOK || r.body != "[]" {
		t.Fatalf("empty store: status %d body %s; want 200 []", r.status, r.body)
	}
}

// TestEntitiesPaging pages through every publication with the cursor and
// gets exactly its entities, in order, each once.
func TestEntitiesPaging(t *testing.T) {
	store, f := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	for key, want := range f.entities {
		for _, limit := range []int{1, 7, 1000} {
			if limit == 1 && len(want) > 100 {
				continue // a request per entity: slow under -race, and 7 covers it
			}
			t.Run(fmt.Sprintf("%s/limit=%d", key, limit), func(t *testing.T) {
				var got []wire.EntityCount
				after := ""
				for pages := 1; ; pages++ {
					q := url.Values{"limit": {fmt.Sprint(limit)}}
					if after != "" {
						q.Set("after", after)
					}
					r := get(t, srv.URL, entitiesPath(key, q.Encode()))
					if r.status != http.StatusOK {
						t.Fatalf("page %d: status %d: %s", pages, r.status, r.body)
					}
					var page pageJSON
					decode(t, r, &page)
					if page.Entities == nil {
						t.Fatalf("page %d: entities is null, want an array: %s", pages, r.body)
					}
					if len(page.Entities) > limit {
						t.Fatalf("page %d: %d entities, limit %d", pages, len(page.Entities), limit)
					}
					got = append(got, page.Entities...)
					if page.Next == nil {
						if !strings.HasSuffix(r.body, `"next":null}`) {
							t.Fatalf("last page: next is not null: %s", r.body)
						}
						break
					}
					if len(page.Entities) != limit {
						t.Fatalf("page %d: short page (%d of %d) with a next cursor", pages, len(page.Entities), limit)
					}
					after = *page.Next
					if pages > len(want)+1 {
						t.Fatalf("more pages than entities: the cursor does not advance")
					}
				}
				if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("paged entities =\n%v\nwant (count descending, then word)\n%v", got, want)
				}
			})
		}
	}
}

func TestEntitiesLimits(t *testing.T) {
	store, f := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	big := f.entities[keyBig]
	if len(big) <= readapi.MaxLimit {
		t.Fatalf("fixture: %d entities, need more than MaxLimit %d", len(big), readapi.MaxLimit)
	}
	for _, tc := range []struct {
		query string
		n     int
	}{
		{"", readapi.DefaultLimit},
		{"limit=1", 1},
		{"limit=1000", readapi.MaxLimit},
		{"limit=1001", readapi.MaxLimit},
		{"limit=5000", readapi.MaxLimit},
		{"limit=99999999999999999999999", readapi.MaxLimit}, // overflows int64: still capped
		{"after=", readapi.DefaultLimit},                    // empty cursor: from the top
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := get(t, srv.URL, entitiesPath(keyBig, tc.query))
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var page pageJSON
			decode(t, r, &page)
			if len(page.Entities) != tc.n || page.Next == nil {
				t.Fatalf("%d entities (next %v), want %d and a next cursor", len(page.Entities), page.Next, tc.n)
			}
			if !slices.Equal(page.Entities, big[:tc.n]) {
				t.Fatalf("not the top %d entities", tc.n)
			}
		})
	}
}

// TestErrors: every refusal's status, and a JSON error that names the
// problem.
func TestErrors(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	gazette := entitiesPath(keyGazette, "")
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		status  int
		mention string
	}{
		{"unknown publication", "GET", entitiesPath("no such paper", ""), 404, `no publication with key \"no such paper\"`},
		{"unknown publication, name not key", "GET", entitiesPath("The Harbor Gazette", ""), 404, "GET /publications lists the keys"},
		{"limit not a number", "GET", gazette + "?limit=ten", 400, "limit"},
		{"limit zero", "GET", gazette + "?limit=0", 400, "limit"},
		{"limit negative", "GET", gazette + "?limit=-3", 400, "limit"},
		{"limit fraction", "GET", gazette + "?limit=2.5", 400, "limit"},
		{"limit empty", "GET", gazette + "?limit=", 400, "limit"},
		{"limit hex", "GET", gazette + "?limit=0x10", 400, "limit"},
		{"limit huge negative", "GET", gazette + "?limit=-99999999999999999999999", 400, "limit"},
		{"cursor garbage", "GET", gazette + "?after=not-a-cursor!", 400, "after"},
		{"cursor base64 of nonsense", "GET", gazette + "?after=AAAA", 400, "after"},
		{"cursor too long", "GET", gazette + "?after=" + strings.Repeat("A", 5000), 400, "after"},
		{"query not parseable", "GET", gazette + "?limit=%zz", 400, "query"},
		{"no entities suffix", "GET", "/publications/" + url.PathEscape(keyGazette), 404, "no route"},
		{"unescaped slash in key", "GET", "/publications/news/wire%20a/b/entities", 404, "%2F"},
		{"trailing slash", "GET", gazette + "/", 404, "no route"},
		{"unknown route", "GET", "/nope", 404, "no route /nope"},
		{"unknown static file", "GET", "/static/nope.js", 404, "/static/app.js"},
		{"POST publications", "POST", "/publications", 405, "method POST not allowed"},
		{"DELETE entities", "DELETE", gazette, 405, "use GET"},
		{"PUT status", "PUT", "/status", 405, "use GET"},
		{"POST page", "POST", "/", 405, "use GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, srv.URL, tc.path)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", r.status, tc.status, r.body)
			}
			var e struct {
				Error string `json:"error"`
			}
			decode(t, r, &e)
			if !strings.Contains(r.body, tc.mention) {
				t.Fatalf("error %s does not mention %q", r.body, tc.mention)
			}
			if tc.status == 405 && r.header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("405 with Allow %q, want GET, HEAD", r.header.Get("Allow"))
			}
		})
	}
}

// TestKeyEscaping: keys with '/', spaces, Unicode and markup reach their
// publication, directly and through a ServeMux as the parent mounts it.
func TestKeyEscaping(t *testing.T) {
	store, f := openStore(t)
	h := readapi.New(readapi.Config{Reader: store, Logger: testLogger(t)})
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.NotFoundHandler()) // stands in for the write API's routes
	mux.Handle("/", h)
	for name, handler := range map[string]http.Handler{"direct": h, "mux": mux} {
		srv := httptest.NewServer(handler)
		t.Cleanup(srv.Close)
		for _, key := range []string{keySlash, keyUnicode, keyMarkup, keyGazette} {
			for _, escape := range []func(string) string{url.PathEscape, jsEncodeURIComponent} {
				path := "/publications/" + escape(key) + "/entities"
				t.Run(name+" "+path, func(t *testing.T) {
					r := get(t, srv.URL, path)
					if r.status != http.StatusOK {
						t.Fatalf("status %d: %s", r.status, r.body)
					}
					var page pageJSON
					decode(t, r, &page)
					if !slices.Equal(page.Entities, f.entities[key]) {
						t.Fatalf("entities %v, want %v", page.Entities, f.entities[key])
					}
				})
			}
		}
	}
}

// jsEncodeURIComponent escapes as the page's script does: everything but
// A-Z a-z 0-9 - _ . ! ~ * ' ( ).
func jsEncodeURIComponent(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestReadToken(t *testing.T) {
	store, _ := openStore(t)
	const token = "r3ad-t0ken"
	srv := server(t, readapi.Config{Reader: store, Status: testStatus, ReadToken: token})
	protected := []string{"/publications", entitiesPath(keyGazette, "limit=2"), "/status"}
	for _, tc := range []struct {
		name   string
		header []string
		status int
	}{
		{"no token", nil, 401},
		{"wrong access_token", []string{"access_token", "nope"}, 401},
		{"token prefix", []string{"access_token", token[:4]}, 401},
		{"token with suffix", []string{"Authorization", "Bearer " + token + "x"}, 401},
		{"Basic, not Bearer", []string{"Authorization", "Basic " + token}, 401},
		{"bare token in Authorization", []string{"Authorization", token}, 401},
		{"access_token header", []string{"access_token", token}, 200},
		{"Bearer", []string{"Authorization", "Bearer " + token}, 200},
		{"bearer, any case", []string{"Authorization", "bEARER " + token}, 200},
		{"wrong access_token, right Bearer", []string{"access_token", "nope", "Authorization", "Bearer " + token}, 200},
	} {
		for _, path := range protected {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				r := get(t, srv.URL, path, tc.header...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d (body %s)", r.status, tc.status, r.body)
				}
				if tc.status == 401 {
					if !strings.Contains(r.body, "access_token or Authorization: Bearer") {
						t.Fatalf("401 body %s does not say which headers", r.body)
					}
					if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Fatalf("401 without WWW-Authenticate: Bearer")
					}
					if strings.Contains(r.body, "Gazette") {
						t.Fatalf("401 leaks data: %s", r.body)
					}
				}
			})
		}
	}
	// The page holds no data: it loads without the token and asks for it.
	for _, path := range []string{"/", "/static/app.js", "/static/style.css"} {
		if r := get(t, srv.URL, path); r.status != 200 {
			t.Errorf("%s without token: status %d, want 200", path, r.status)
		}
	}
	// 404 and 405 come before the token check: they reveal nothing.
	if r := get(t, srv.URL, "/nope"); r.status != 404 {
		t.Errorf("unknown route without token: %d, want 404", r.status)
	}
}

func TestNoReader(t *testing.T) {
	srv := server(t, readapi.Config{Status: testStatus})
	for _, path := range []string{"/publications", entitiesPath(keyGazette, ""), entitiesPath(keyGazette, "limit=0")} {
		r := get(t, srv.URL, path)
		if r.status != http.StatusServiceUnavailable || r.body != `{"error":"no read path: --sink none stores nothing"}` {
			t.Errorf("%s with no Reader: %d %s; want 503 and the --sink none error", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/", "/status"} {
		if r := get(t, srv.URL, path); r.status != 200 {
			t.Errorf("%s with no Reader: %d, want 200", path, r.status)
		}
	}
	// The token is checked first: 401, not 503.
	srv = server(t, readapi.Config{ReadToken: "t"})
	if r := get(t, srv.URL, "/publications"); r.status != 401 {
		t.Errorf("no Reader, no token: %d, want 401", r.status)
	}
}

func TestStatus(t *testing.T) {
	srv := server(t, readapi.Config{Status: testStatus})
	r := get(t, srv.URL, "/status")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	const want = `{"build":{"version":"1.2.0","revision":"abc123","dirty":false,"go_version":"go1.26.8","platform":"linux/amd64"},` +
		`"accepted_per_sec":12.5,"accepted":1200,"stored":1150,"dead_lettered":2,"not_stored":48,"queue_depth":37,"queue_capacity":1024,"draining":false,"children":[` +
		`{"role":"worker","id":0,"pid":4242,"state":"running","restarts":0},` +
		`{"role":"worker","id":1,"pid":4243,"state":"running","restarts":2},` +
		`{"role":"saver","id":0,"pid":4250,"state":"running","restarts":0}]}`
	if r.body != want {
		t.Fatalf("GET /status =\n%s\nwant\n%s", r.body, want)
	}
	var st readapi.Status
	decode(t, r, &st)

	// No children yet: an empty array, never null.
	srv = server(t, readapi.Config{Status: func() readapi.Status { return readapi.Status{Draining: true} }})
	if r := get(t, srv.URL, "/status"); !strings.Contains(r.body, `"draining":true`) || !strings.Contains(r.body, `"children":[]`) {
		t.Fatalf("draining, no children: %s", r.body)
	}
	// A rate that JSON cannot carry is a 500 that says so, not a broken body.
	srv = server(t, readapi.Config{Status: func() readapi.Status { return readapi.Status{AcceptedPerSec: math.NaN()} }})
	if r := get(t, srv.URL, "/status"); r.status != 500 || !strings.Contains(r.body, "encode") {
		t.Fatalf("NaN rate: %d %s", r.status, r.body)
	}
	// No Status func.
	srv = server(t, readapi.Config{})
	if r := get(t, srv.URL, "/status"); r.status != 503 {
		t.Fatalf("nil Status: %d %s, want 503", r.status, r.body)
	}
}

func TestPageAndAssets(t *testing.T) {
	srv := server(t, readapi.Config{})
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/static/app.js" defer></script>`},
		{"/static/app.js", "text/javascript; charset=utf-8", "encodeURIComponent(key)"},
		{"/static/style.css", "text/css; charset=utf-8", "system-ui"},
		{"/static/icon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := get(t, srv.URL, tc.path)
			if r.status != 200 || r.header.Get("Content-Type") != tc.contentType || !strings.Contains(r.body, tc.contains) {
				t.Fatalf("status %d, Content-Type %q, body has %q: %v", r.status, r.header.Get("Content-Type"), tc.contains,
					strings.Contains(r.body, tc.contains))
			}
			// Nothing from elsewhere: no CDN, works offline.
			for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
				if strings.Contains(strings.ReplaceAll(r.body, "http://www.w3.org/2000/svg", ""), bad) {
					t.Errorf("%s refers to %q: the page must not load anything from elsewhere", tc.path, bad)
				}
			}
			etag := r.header.Get("ETag")
			if etag == "" || r.header.Get("Cache-Control") != "no-cache" {
				t.Fatalf("ETag %q, Cache-Control %q: want a validator and no-cache", etag, r.header.Get("Cache-Control"))
			}
			if again := get(t, srv.URL, tc.path, "If-None-Match", etag); again.status != http.StatusNotModified {
				t.Fatalf("revalidation with the ETag: %d, want 304", again.status)
			}
			if head := do(t, http.MethodHead, srv.URL, tc.path); head.status != 200 || head.body != "" {
				t.Fatalf("HEAD: %d with %d bytes of body", head.status, len(head.body))
			}
		})
	}
	r := get(t, srv.URL, "/")
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("page CSP %q: want only its own scripts and API", csp)
	}
	// Accessibility landmarks the page promises.
	for _, want := range []string{`aria-live="polite"`, `<th scope="col">Publication</th>`, `<button type="button" id="next">`, `lang="en"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// TestHEAD: the read API answers HEAD with GET's status and no body.
func TestHEAD(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store, Status: testStatus})
	for path, status := range map[string]int{
		"/publications":                     200,
		"/status":                           200,
		entitiesPath(keyGazette, ""):        200,
		entitiesPath("nope", ""):            404,
		entitiesPath(keyGazette, "limit=x"): 400,
	} {
		r := do(t, http.MethodHead, srv.URL, path)
		if r.status != status || r.body != "" {
			t.Errorf("HEAD %s: %d with body %q, want %d and none", path, r.status, r.body, status)
		}
	}
}

// FuzzEntitiesRequest sends arbitrary paths and queries to the entities
// route: the answer is always one of the documented statuses with a JSON
// body, and never a panic.
func FuzzEntitiesRequest(f *testing.F) {
	store, _ := openStore(f)
	h := readapi.New(readapi.Config{Reader: store, Status: testStatus})
	for _, seed := range []string{
		entitiesPath(keyGazette, "limit=3"),
		entitiesPath(keySlash, "limit=2&after=kwHOAAAAAAKjYm9i"),
		entitiesPath(keyUnicode, "after=%ff%fe"),
		"/publications/%2F%2F/entities?limit=-0",
		"/publications//entities",
		"/publications/a%zzb/entities",
		"/publications/x/entities?limit=1&limit=2&after=&after=x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "http://x/", nil)
		req.URL = u
		req.RequestURI = target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 404:
		default:
			t.Fatalf("%s: status %d: %s", target, rec.Code, rec.Body)
		}
		if !strings.HasPrefix(u.Path, "/static/") && u.Path != "/" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: body is not JSON: %s", target, rec.Body)
		}
	})
}
