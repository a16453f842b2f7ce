package integration_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/readapi/browsertest"
)

// TestReadAPIAndPage: a parent that ingested the fixture articles serves
// exactly what it stored through the read API, /status shows its real
// children, and the results page shows it all in headless Chromium.
func TestReadAPIAndPage(t *testing.T) {
	arts := fixtures(t)
	want := expected(arts)
	p := startParent(t, nil, "--workers=1", "--top-n=0", "--flush-interval=300ms")
	var nd strings.Builder
	for _, a := range arts {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	if r := p.post(t, "application/x-ndjson", nd.String(), nil); r.status != http.StatusCreated {
		t.Fatalf("NDJSON post: status %d body %s", r.status, r.body)
	}

	type pub struct {
		Key      string `json:"key"`
		Name     string `json:"name"`
		Articles int64  `json:"articles"`
	}
	var pubs []pub
	poll.Until(t, 90*time.Second, "GET /publications to count every fixture article", func() bool {
		pubs = nil
		if status, body := readAPI(t, p.url+"/publications", &pubs); status != http.StatusOK {
			t.Fatalf("GET /publications: status %d: %s (is package web mounted in the parent?)", status, body)
		}
		if len(pubs) != len(want.articles) {
			return false
		}
		for _, q := range pubs {
			if q.Articles != want.articles[q.Key] {
				return false
			}
		}
		return true
	})
	if len(pubs) != 6 {
		t.Fatalf("%d publications, want the fixtures' 6: %v", len(pubs), pubs)
	}
	if !slices.IsSortedFunc(pubs, func(a, b pub) int {
		return cmp.Or(cmp.Compare(b.Articles, a.Articles), cmp.Compare(a.Key, b.Key))
	}) {
		t.Errorf("publications not ordered by articles descending, then key: %v", pubs)
	}
	for _, q := range pubs {
		if !want.names[q.Key][q.Name] {
			t.Errorf("publication %q named %q, which no post used", q.Key, q.Name)
		}
	}

	// Every publication's entities, paged with the cursor, are exactly the
	// oracle's (--top-n=0 keeps them all), in order.
	type entity struct {
		Word  string `json:"word"`
		Count int64  `json:"count"`
	}
	pages := map[string][]entity{} // first page of each publication, for the browser check
	for _, q := range pubs {
		var got []entity
		after := ""
		for n := 0; ; n++ {
			u := p.url + "/publications/" + url.PathEscape(q.Key) + "/entities?limit=7"
			if after != "" {
				u += "&after=" + url.QueryEscape(after)
			}
			var page struct {
				Entities []entity `json:"entities"`
				Next     *string  `json:"next"`
			}
			if status, body := readAPI(t, u, &page); status != http.StatusOK {
				t.Fatalf("GET %s: status %d: %s", u, status, body)
			}
			if n == 0 {
				pages[q.Key] = page.Entities
			}
			got = append(got, page.Entities...)
			if page.Next == nil {
				break
			}
			if len(page.Entities) != 7 || n > len(want.entities[q.Key]) {
				t.Fatalf("%s: page %d has %d entities and a next cursor", q.Key, n, len(page.Entities))
			}
			after = *page.Next
		}
		var wantEnts []entity
		for w, c := range want.entities[q.Key] {
			wantEnts = append(wantEnts, entity{w, c})
		}
		slices.SortFunc(wantEnts, func(a, b entity) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Word, b.Word))
		})
		if !slices.Equal(got, wantEnts) {
			t.Errorf("%s: entities through the API =\n%v\nwant (count descending, then word)\n%v", q.Key, got, wantEnts)
		}
	}

	// Refusals.
	gazette := p.url + "/publications/" + url.PathEscape("the harbor gazette") + "/entities"
	for _, tc := range []struct {
		url     string
		status  int
		mention string
	}{
		{p.url + "/publications/" + url.PathEscape("no such paper") + "/entities", 404, "no such paper"},
		{gazette + "?limit=0", 400, "limit"},
		{gazette + "?limit=many", 400, "limit"},
		{gazette + "?after=bogus-cursor", 400, "after"},
	} {
		var e struct {
			Error string `json:"error"`
		}
		if status, body := readAPI(t, tc.url, &e); status != tc.status || !strings.Contains(e.Error, tc.mention) {
			t.Errorf("GET %s: %d %s; want %d and an error naming %q", tc.url, status, body, tc.status, tc.mention)
		}
	}

	// /status: the parent's real children, by role and pid.
	var st struct {
		AcceptedPerSec float64 `json:"accepted_per_sec"`
		QueueDepth     int     `json:"queue_depth"`
		QueueCapacity  int     `json:"queue_capacity"`
		Draining       bool    `json:"draining"`
		Children       []struct {
			Role     string `json:"role"`
			ID       int    `json:"id"`
			PID      int    `json:"pid"`
			State    string `json:"state"`
			Restarts int    `json:"restarts"`
		} `json:"children"`
	}
	if status, body := readAPI(t, p.url+"/status", &st); status != http.StatusOK {
		t.Fatalf("GET /status: %d %s", status, body)
	}
	kids := children(t, p.cmd.Process.Pid)
	roles := map[string]int{}
	for _, c := range st.Children {
		roles[c.Role]++
		if _, ok := kids[c.PID]; !ok {
			t.Errorf("/status lists %s %d with pid %d, which is not a child of the parent (children: %v)", c.Role, c.ID, c.PID, kids)
		}
	}
	if roles["worker"] != 1 || roles["saver"] != 1 || len(st.Children) != 2 {
		t.Errorf("/status children %+v: want one worker and one saver", st.Children)
	}
	if st.QueueCapacity != 1024 || st.Draining {
		t.Errorf("/status %+v: want queue capacity 1024 (the --queue-size default), not draining", st)
	}

	// The page, in a real browser, against the running parent.
	b := browsertest.Chromium(t)
	page := p.url + "/#pub=" + url.PathEscape("the harbor gazette")
	dom := b.DumpDOM(page)
	for _, part := range []string{"publications", "entities", "status"} {
		if !strings.Contains(dom, fmt.Sprintf(`data-%s="loaded"`, part)) {
			t.Errorf("the page did not finish loading %s", part)
		}
	}
	for _, q := range pubs {
		row := fmt.Sprintf(`<tr data-key="%s">`, html.EscapeString(q.Key))
		i := strings.Index(dom, row)
		if i < 0 {
			t.Errorf("page has no row for %q", q.Key)
			continue
		}
		end := i + strings.Index(dom[i:], "</tr>")
		if cell := fmt.Sprintf(`<td class="num">%d</td>`, q.Articles); !strings.Contains(dom[i:end], cell) {
			t.Errorf("row of %q lacks its article count %s", q.Key, cell)
		}
	}
	for i, e := range pages["the harbor gazette"] {
		row := fmt.Sprintf(`<td class="num rank">%d</td><td class="word">%s</td><td class="num">%d</td>`, i+1, html.EscapeString(e.Word), e.Count)
		if !strings.Contains(dom, row) {
			t.Errorf("page lacks the gazette's entity row %s", row)
		}
	}
	for _, c := range st.Children {
		if chip := fmt.Sprintf(`data-role="%s" data-pid="%d"`, c.Role, c.PID); !strings.Contains(dom, chip) {
			t.Errorf("live strip lacks %s", chip)
		}
	}
	b.Screenshot(page, "results-integration.png", 1280, 900)

	if code := p.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}

// TestReadAPISinkNone: with --sink none nothing is stored, so the read
// routes say so with 503; the page itself still loads.
func TestReadAPISinkNone(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--sink=none")
	for _, path := range []string{"/publications", "/publications/x/entities"} {
		var e struct {
			Error string `json:"error"`
		}
		status, body := readAPI(t, p.url+path, &e)
		if status != http.StatusServiceUnavailable || e.Error != "no read path: --sink none stores nothing" {
			t.Errorf("GET %s with --sink none: %d %s; want 503 and the no read path error", path, status, body)
		}
	}
	resp, err := http.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "/static/app.js") {
		t.Errorf("GET / with --sink none: %d; want the page", resp.StatusCode)
	}
	if code := p.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}

// readAPI GETs u and decodes a JSON body into v. It returns the status
// and the raw body, for messages.
func readAPI(t *testing.T, u string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q, want application/json (status %d, body %.200s)", u, ct, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: status %d, body %s: %v (is package web mounted in the parent?)", u, resp.StatusCode, body, err)
	}
	return resp.StatusCode, body
}
