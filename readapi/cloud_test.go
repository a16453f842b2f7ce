package readapi_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/wordcloud"
)

func cloudPath(key, query string) string {
	p := "/publications/" + url.PathEscape(key) + "/cloud.svg"
	if query != "" {
		p += "?" + query
	}
	return p
}

// svgTexts parses body as XML and returns the text of each <text>
// element, failing t on malformed XML or an element other than svg,
// title, g and text.
func svgTexts(t *testing.T, body string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(body))
	var texts []string
	var in []string
	var cur bytes.Buffer
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return texts
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, body)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch tok.Name.Local {
			case "svg", "title", "g", "text":
			default:
				t.Fatalf("unexpected element <%s> in SVG:\n%s", tok.Name.Local, body)
			}
			if tok.Name.Space != "http://www.w3.org/2000/svg" {
				t.Fatalf("element <%s> outside the SVG namespace", tok.Name.Local)
			}
			in = append(in, tok.Name.Local)
			if tok.Name.Local == "text" {
				cur.Reset()
			}
		case xml.EndElement:
			in = in[:len(in)-1]
			if tok.Name.Local == "text" {
				texts = append(texts, cur.String())
			}
		case xml.CharData:
			if len(in) > 0 && in[len(in)-1] == "text" {
				cur.Write(tok)
			}
		case xml.ProcInst, xml.Directive:
			t.Fatalf("unexpected %T in SVG", tok)
		}
	}
}

func TestCloud(t *testing.T) {
	store, f := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	r := get(t, srv.URL, cloudPath(keyGazette, ""))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for name, want := range map[string]string{
		"Content-Type": "image/svg+xml", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q: want default-src 'none' and no script source", csp)
	}
	if !strings.Contains(r.body, "<title>Word cloud: the 33 most frequent entities of the harbor gazette</title>") {
		t.Errorf("SVG title missing or cut:\n%.300s", r.body)
	}
	texts := svgTexts(t, r.body)
	ents := f.entities[keyGazette]
	if len(texts) != len(ents) { // 33 entities: all fit
		t.Fatalf("%d words in the cloud, want all %d", len(texts), len(ents))
	}
	for i, e := range ents {
		if texts[i] != e.Word {
			t.Errorf("word %d is %q, want %q (most frequent first)", i, texts[i], e.Word)
		}
	}
	// The same data gives the same bytes: the layout is deterministic.
	if again := get(t, srv.URL, cloudPath(keyGazette, "")); again.body != r.body {
		t.Errorf("two requests for the same cloud differ")
	}

	// limit: 1 to MaxCloudWords; larger is capped, bad is 400.
	if got := svgTexts(t, get(t, srv.URL, cloudPath(keyGazette, "limit=5")).body); len(got) != 5 {
		t.Errorf("limit=5: %d words", len(got))
	}
	if got := svgTexts(t, get(t, srv.URL, cloudPath(keyBig, "limit=100000")).body); len(got) > readapi.MaxCloudWords || len(got) < readapi.MaxCloudWords/2 {
		t.Errorf("limit=100000: %d words, want at most %d", len(got), readapi.MaxCloudWords)
	}
	if got := svgTexts(t, get(t, srv.URL, cloudPath(keyBig, "")).body); len(got) > readapi.DefaultCloudWords {
		t.Errorf("no limit: %d words, want at most %d", len(got), readapi.DefaultCloudWords)
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{cloudPath(keyGazette, "limit=0"), 400},
		{cloudPath(keyGazette, "limit=x"), 400},
		{cloudPath("no such paper", ""), 404},
		{cloudPath(keySlash, ""), 200},
		{cloudPath(keyUnicode, ""), 200},
		{cloudPath(keyEmpty, ""), 200},
	} {
		if got := get(t, srv.URL, tc.path); got.status != tc.status {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, got.status, tc.status, got.body)
		}
	}
	if n := len(svgTexts(t, get(t, srv.URL, cloudPath(keyEmpty, "")).body)); n != 0 {
		t.Errorf("publication without entities: %d words", n)
	}

	// Same auth as the read API; 503 without a read path.
	tsrv := server(t, readapi.Config{Reader: store, ReadToken: "tok"})
	if got := get(t, tsrv.URL, cloudPath(keyGazette, "")); got.status != http.StatusUnauthorized || got.header.Get("WWW-Authenticate") == "" {
		t.Errorf("without the token: %d, want 401 with WWW-Authenticate", got.status)
	}
	if got := get(t, tsrv.URL, cloudPath(keyGazette, ""), "Authorization", "Bearer tok"); got.status != http.StatusOK {
		t.Errorf("with the token: %d", got.status)
	}
	if got := get(t, server(t, readapi.Config{}).URL, cloudPath(keyGazette, "")); got.status != http.StatusServiceUnavailable {
		t.Errorf("no reader: %d, want 503", got.status)
	}
	if got := do(t, http.MethodHead, srv.URL, cloudPath(keyGazette, "")); got.status != http.StatusOK || got.body != "" ||
		got.header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("HEAD: %d %q %q", got.status, got.header.Get("Content-Type"), got.body)
	}
}

// TestCloudHostileEntities stores entities made to break the SVG and
// checks that the answer is still well-formed, holds only the expected
// elements, and gives each word back as text.
func TestCloudHostileEntities(t *testing.T) {
	store, err := sink.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ingest.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hostile := []string{
		`<script>alert(1)</script>`, `"quoted" & 'single'`, `]]><svg onload=alert(1)>`, "bad \xff\xfe utf-8",
		"مرحبا بالعالم", "עברית\u202eevil", "🎉🔥 emoji 👩‍👩‍👧", `<?xml-stylesheet href="x"?>`,
		`<!DOCTYPE x [<!ENTITY e "boom">]>&e;`, `</text><a href="javascript:alert(1)">x</a>`, "tab\tand\x01ctl",
	}
	pc := wire.PubCount{Key: `"><script>`, Name: `"><script>`, Articles: 1}
	for i, h := range hostile {
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: h, Count: int64(100 - i)})
	}
	if _, err := store.Apply(t.Context(), &wire.Batch{ID: "b", Posts: 1, Publications: []wire.PubCount{pc}}); err != nil {
		t.Fatal(err)
	}
	srv := server(t, readapi.Config{Reader: store})
	r := get(t, srv.URL, cloudPath(pc.Key, ""))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	texts := svgTexts(t, r.body)
	if len(texts) != len(hostile) {
		t.Fatalf("%d words, want %d:\n%s", len(texts), len(hostile), r.body)
	}
	stored, _, err := store.TopEntities(t.Context(), pc.Key, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var words []wordcloud.Word
	for _, e := range stored {
		words = append(words, wordcloud.Word{Text: e.Word, Count: e.Count})
	}
	for i, p := range wordcloud.Layout(words, 0) {
		if texts[i] != p.Text {
			t.Errorf("word %d: %q, want %q", i, texts[i], p.Text)
		}
	}
	if strings.Contains(r.body, "<script") || strings.Contains(r.body, "<a ") || strings.Contains(r.body, "<!DOCTYPE") {
		t.Errorf("markup from the data is in the SVG unescaped:\n%s", r.body)
	}
}
