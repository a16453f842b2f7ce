package readapi_test

import (
	"fmt"
	"html"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/internal/synthetic"
	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/readapi/browsertest"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/wordcloud"
)

// TestPageInBrowser loads the results page in headless Chromium against a
// real SQLite store and checks what a user sees once the scripts ran: the
// publications, the chosen publication's entities as a list and a chart,
// the live strip, markup in data shown as text. It saves screenshots as
// CI artifacts (paths in the log).
func TestPageInBrowser(t *testing.T) {
	b := browsertest.Chromium(t)
	store, f := openStore(t)
	srv := httptest.NewServer(readapi.New(readapi.Config{Reader: store, Status: testStatus, Logger: testLogger(t)}))
	t.Cleanup(srv.Close)

	dom := b.DumpDOM(srv.URL + "/#pub=" + jsEncodeURIComponent(keyGazette))
	loaded(t, dom, "publications", "entities", "status", "cloud")

	// Every publication, in the API's order, with its article count.
	var at int
	for _, p := range f.pubs {
		row := fmt.Sprintf(`<tr data-key="%s">`, html.EscapeString(p.Key))
		i := strings.Index(dom, row)
		if i < at {
			t.Fatalf("publication row %s missing or out of order", row)
		}
		at = i
		end := i + strings.Index(dom[i:], "</tr>")
		if cell := fmt.Sprintf(`<td class="num">%d</td>`, p.Articles); !strings.Contains(dom[i:end], cell) {
			t.Errorf("row of %q lacks %s: %s", p.Key, cell, dom[i:end])
		}
		if name := `<span class="pub-name">` + html.EscapeString(p.Name) + `</span>`; !strings.Contains(dom[i:end], name) {
			t.Errorf("row of %q lacks %s", p.Key, name)
		}
	}
	if !strings.Contains(dom, `data-key="`+keyGazette+`" title="key: `+keyGazette+`" aria-current="true"`) {
		t.Errorf("the gazette is not marked as chosen (aria-current)")
	}
	if strings.Contains(dom, "<b>Bold</b>") || strings.Contains(dom, "<script>alert") {
		t.Errorf("data rendered as markup: the page must set text, never HTML")
	}

	// The chosen publication: heading, the first page of entities in order
	// with ranks, one bar per entity, paging.
	if !strings.Contains(dom, `<h2 id="detail-h">The Harbor Gazette</h2>`) {
		t.Errorf("heading of the chosen publication missing")
	}
	ents := f.entities[keyGazette]
	const pageSize = 20 // PAGE_SIZE in app.js
	at = 0
	for i, e := range ents[:pageSize] {
		row := fmt.Sprintf(`<tr><td class="num rank">%d</td><td class="word">%s</td><td class="num">%d</td></tr>`,
			i+1, html.EscapeString(e.Word), e.Count)
		j := strings.Index(dom, row)
		if j < at {
			t.Fatalf("entity row %s missing or out of order", row)
		}
		at = j
	}
	if strings.Contains(dom, `<td class="word">`+ents[pageSize].Word+`</td>`) {
		t.Errorf("entity %d of the second page is on the first", pageSize+1)
	}
	if n := strings.Count(dom, `<rect class="bar"`); n != pageSize {
		t.Errorf("chart has %d bars, want %d", n, pageSize)
	}
	for _, want := range []string{
		`<svg viewBox=`, `role="img"`, "Entities 1–20",
		`id="prev" aria-disabled="true"`, `id="next" aria-disabled="false"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %s", want)
		}
	}

	// The live strip.
	for _, want := range []string{
		`<span id="rate">12.5</span>`, `<span id="queue">37 / 1,024</span>`, `>accepting</span>`,
		`data-role="worker" data-pid="4242"`, `<span class="name">worker 1</span>`, `<span class="pid">pid 4243</span>`,
		`<span class="restarts some">2 restarts</span>`, `<span class="name">saver 0</span>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("live strip lacks %s", want)
		}
	}

	// The word cloud beside the chart: the server's SVG in the DOM, one
	// <text> per word its layout placed, in the same order.
	cloud := cloudSVG(t, dom)
	var words []wordcloud.Word
	for _, e := range ents {
		words = append(words, wordcloud.Word{Text: e.Word, Count: e.Count})
	}
	placed := wordcloud.Layout(words, readapi.DefaultCloudWords) // the gazette has fewer: all of them
	if n := strings.Count(cloud, "<text "); n != len(placed) || n != len(ents) {
		t.Errorf("cloud has %d text elements, want %d (every entity of the gazette)", n, len(placed))
	}
	at = 0
	for _, p := range placed {
		j := strings.Index(cloud[at:], ">"+html.EscapeString(p.Text)+"</text>")
		if j < 0 {
			t.Fatalf("cloud lacks word %q after position %d", p.Text, at)
		}
		at += j
	}
	if !strings.Contains(dom, "Word cloud of the 33 most frequent entities") {
		t.Errorf("cloud caption missing")
	}

	b.Screenshot(srv.URL+"/#pub="+jsEncodeURIComponent(keyGazette), "results.png", 1280, 900)
	b.Screenshot(srv.URL+"/#pub="+jsEncodeURIComponent(keyGazette), "results-narrow.png", 420, 1100)
}

// TestCloudReadableInBrowser: on a wide screen and on a phone, the
// smallest word of a publication's cloud, as the page shows it, is at
// least 10 CSS pixels, and the most frequent several times larger; the
// page asks for fewer words where the cloud is narrower. Screenshots:
// cloud-wide.png, cloud-narrow.png.
func TestCloudReadableInBrowser(t *testing.T) {
	b := browsertest.Chromium(t)
	store, err := sink.OpenSQLite(t.Context(), t.TempDir()+"/cloud.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// 300 entities whose counts fall off as in news text, names of one or
	// two words as long as real ones (10 characters on average).
	pc := wire.PubCount{Key: "daily news", Name: "Daily News", Articles: 400}
	first := []string{"marsh", "ashby", "okafor", "harbor", "norfolk", "brandt", "castellano", "baltimore", "elena", "gull"}
	for i := range 300 {
		word := first[i%10]
		if i >= 10 {
			word += " " + strings.ToLower(synthetic.Name(i))[:3+i%5]
		}
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: word, Count: int64(3000/(i+1) + 2)})
	}
	if _, err := store.Apply(t.Context(), &wire.Batch{ID: "cloud", Parts: 1, Posts: 400, Publications: []wire.PubCount{pc}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(readapi.New(readapi.Config{Reader: store, Status: testStatus, Logger: testLogger(t)}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/#pub=" + jsEncodeURIComponent(pc.Key)
	words := map[string]int{}
	for _, sz := range []struct {
		name          string
		width, height int
	}{{"wide", 1280, 900}, {"narrow", 420, 1100}} {
		dom := b.DumpDOMAt(url, sz.width, sz.height)
		loaded(t, dom, "cloud")
		cloud := cloudSVG(t, dom)
		i := strings.Index(dom, `data-min-px="`)
		if i < 0 {
			t.Fatalf("%s: the page did not record the smallest word's size", sz.name)
		}
		px, _ := strconv.ParseFloat(dom[i+len(`data-min-px="`):i+strings.IndexByte(dom[i+len(`data-min-px="`):], '"')+len(`data-min-px="`)], 64)
		var sizes []int
		for _, m := range regexp.MustCompile(`font-size="(\d+)"`).FindAllStringSubmatch(cloud, -1) {
			n, _ := strconv.Atoi(m[1])
			sizes = append(sizes, n)
		}
		words[sz.name] = len(sizes)
		top, least := slices.Max(sizes), slices.Min(sizes)
		t.Logf("%s (%d px window): %d words, font sizes %d to %d, the smallest shown at %.1f px", sz.name, sz.width, len(sizes), top, least, px)
		if px < 10 {
			t.Errorf("%s: the smallest word is shown at %.1f px, want at least 10", sz.name, px)
		}
		if top < 3*least {
			t.Errorf("%s: the top word is %d, the smallest %d: want several times larger", sz.name, top, least)
		}
		b.Screenshot(url, "cloud-"+sz.name+".png", sz.width, sz.height)
	}
	if words["narrow"] >= words["wide"] {
		t.Errorf("a narrow cloud has %d words, a wide one %d: want fewer where it is narrower", words["narrow"], words["wide"])
	}
}

// TestPageInBrowserWithToken: a read token given in the fragment reaches
// the API and leaves the address bar; keys with '/', spaces and Unicode
// are chosen by the fragment; without the token the page asks for it.
func TestPageInBrowserWithToken(t *testing.T) {
	b := browsertest.Chromium(t)
	store, f := openStore(t)
	const token = "browser-t0ken"
	srv := httptest.NewServer(readapi.New(readapi.Config{Reader: store, Status: testStatus, ReadToken: token, Logger: testLogger(t)}))
	t.Cleanup(srv.Close)

	for _, key := range []string{keySlash, keyUnicode} {
		dom := b.DumpDOM(srv.URL + "/#token=" + token + "&pub=" + jsEncodeURIComponent(key))
		loaded(t, dom, "publications", "entities", "status")
		name := f.pubs[slices.IndexFunc(f.pubs, func(p sink.Publication) bool { return p.Key == key })].Name
		if !strings.Contains(dom, `<h2 id="detail-h">`+html.EscapeString(name)+`</h2>`) {
			t.Errorf("heading %q of %q missing", name, key)
		}
		for i, e := range f.entities[key] {
			row := fmt.Sprintf(`<td class="num rank">%d</td><td class="word">%s</td><td class="num">%d</td>`, i+1, html.EscapeString(e.Word), e.Count)
			if !strings.Contains(dom, row) {
				t.Errorf("%s: entity row %s missing", key, row)
			}
		}
		if !strings.Contains(dom, `<form class="auth" id="auth" hidden="">`) {
			t.Errorf("token form shown although the token was given")
		}
		if strings.Contains(dom, token) {
			t.Errorf("the token appears in the page's DOM")
		}
	}

	dom := b.DumpDOM(srv.URL + "/#pub=" + jsEncodeURIComponent(keyUnicode))
	if !strings.Contains(dom, `data-publications="error"`) || !strings.Contains(dom, `<form class="auth" id="auth">`) {
		t.Errorf("without a token: want the publications refused and the token form shown")
	}
	if !strings.Contains(dom, "missing or wrong read token") {
		t.Errorf("without a token: the API's error is not shown")
	}
}

// TestCloudInBrowserHostile: a publication whose entities hold markup
// gets a cloud whose words are text, not elements.
func TestCloudInBrowserHostile(t *testing.T) {
	b := browsertest.Chromium(t)
	store, f := openStore(t)
	srv := httptest.NewServer(readapi.New(readapi.Config{Reader: store, Status: testStatus, Logger: testLogger(t)}))
	t.Cleanup(srv.Close)
	dom := b.DumpDOM(srv.URL + "/#pub=" + jsEncodeURIComponent(keyMarkup))
	loaded(t, dom, "publications", "entities", "cloud")
	cloud := cloudSVG(t, dom)
	if n := strings.Count(cloud, "<text "); n != len(f.entities[keyMarkup]) {
		t.Errorf("cloud has %d words, want %d", n, len(f.entities[keyMarkup]))
	}
	if !strings.Contains(cloud, "&lt;script&gt;alert(1)&lt;/script&gt;</text>") || strings.Contains(dom, "<script>alert") {
		t.Errorf("the cloud's markup word is not text:\n%s", cloud)
	}
	b.Screenshot(srv.URL+"/#pub="+jsEncodeURIComponent(keyMarkup), "cloud-markup.png", 1280, 900)
}

// cloudSVG returns the word cloud's <svg> element in dom, failing t when
// there is none.
func cloudSVG(t *testing.T, dom string) string {
	t.Helper()
	i := strings.Index(dom, `id="cloud-box"`)
	if i < 0 {
		t.Fatalf("no cloud box in the DOM")
	}
	j := strings.Index(dom[i:], "<svg ")
	k := strings.Index(dom[i:], "</svg>")
	if j < 0 || k < j || strings.Contains(dom[i:i+j], "</figure>") {
		t.Fatalf("no SVG in the cloud box:\n%.2000s", dom[i:])
	}
	return dom[i+j : i+k+len("</svg>")]
}

// loaded fails t unless the page's script marked each part as loaded on
// <body>: it sets data-NAME="loaded" after rendering, "error" on failure.
func loaded(t *testing.T, dom string, parts ...string) {
	t.Helper()
	i := strings.Index(dom, "<body")
	if i < 0 {
		t.Fatalf("no <body> in the DOM:\n%s", dom)
	}
	body := dom[i : i+strings.IndexByte(dom[i:], '>')]
	for _, p := range parts {
		if !strings.Contains(body, fmt.Sprintf(`data-%s="loaded"`, p)) {
			t.Errorf("page did not finish loading %s (<body> is %s); DOM:\n%s", p, body, dom)
		}
	}
}

// TestPageWithManyPublications: with 5,000 publications the page stays
// usable: it draws at most 200 rows, says how many there are, and offers
// the filter box.
func TestPageWithManyPublications(t *testing.T) {
	b := browsertest.Chromium(t)
	store, err := sink.OpenSQLite(t.Context(), t.TempDir()+"/many.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	batch := wire.Batch{ID: "many", Parts: 1, Posts: 5000}
	for i := range 5000 {
		batch.Publications = append(batch.Publications, wire.PubCount{
			Key: fmt.Sprintf("paper %04d", i), Name: fmt.Sprintf("Paper %04d", i), Articles: 1,
			Entities: []wire.EntityCount{{Word: "alpha", Count: 1}}})
	}
	if _, err := store.Apply(t.Context(), &batch); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(readapi.New(readapi.Config{Reader: store, Status: testStatus, Logger: testLogger(t)}))
	t.Cleanup(srv.Close)
	dom := b.DumpDOM(srv.URL + "/")
	loaded(t, dom, "publications")
	if n := strings.Count(dom, `<button type="button" class="pub"`); n != 200 {
		t.Errorf("%d publication rows drawn, want 200", n)
	}
	if !strings.Contains(dom, "5,000 publications, 5,000 articles. 5,000 match; the first 200 are shown: narrow the filter.") {
		t.Errorf("the note does not say how many publications there are and how many are shown")
	}
	if !strings.Contains(dom, `id="pub-filter"`) || strings.Contains(dom, `id="pub-filter" class="pub-filter" placeholder="Filter publications" aria-label="Filter publications by name or key" autocomplete="off" hidden`) {
		t.Errorf("the filter box is missing or hidden")
	}
}
