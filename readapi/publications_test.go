package readapi_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

type pubsPageJSON struct {
	Publications []pubJSON `json:"publications"`
	Next         *string   `json:"next"`
}

// TestPublicationsPaging pages through GET /publications with limit and
// after and gets the unpaged list, each publication once, in order.
func TestPublicationsPaging(t *testing.T) {
	store, f := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	var want []pubJSON
	for _, p := range f.pubs {
		want = append(want, pubJSON{p.Key, p.Name, p.Articles})
	}
	for _, limit := range []int{1, 2, len(want) - 1, len(want), 5000} {
		var got []pubJSON
		path := fmt.Sprintf("/publications?limit=%d", limit)
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatalf("limit %d: more pages than publications", limit)
			}
			r := get(t, srv.URL, path)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: status %d: %s", path, r.status, r.body)
			}
			var page pubsPageJSON
			decode(t, r, &page)
			if page.Publications == nil || len(page.Publications) > limit {
				t.Fatalf("GET %s: %d publications for limit %d", path, len(page.Publications), limit)
			}
			got = append(got, page.Publications...)
			if page.Next == nil {
				if link := r.header.Get("Link"); link != "" {
					t.Errorf("last page has Link %q", link)
				}
				break
			}
			// The Link header names the next page, as the body does.
			link := r.header.Get("Link")
			if !strings.HasPrefix(link, "</publications?") || !strings.HasSuffix(link, `>; rel="next"`) {
				t.Fatalf("GET %s: Link %q, want the next page", path, link)
			}
			next := strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
			path = fmt.Sprintf("/publications?limit=%d&after=%s", limit, *page.Next)
			if next != path {
				t.Fatalf("Link %q, want <%s>", link, path)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: paged\n%v\nwant\n%v", limit, got, want)
		}
	}
	// after alone pages with the default size.
	r := get(t, srv.URL, "/publications?limit=1")
	var first pubsPageJSON
	decode(t, r, &first)
	r = get(t, srv.URL, "/publications?after="+*first.Next)
	var rest pubsPageJSON
	decode(t, r, &rest)
	if !slices.Equal(append(first.Publications, rest.Publications...), want) || rest.Next != nil {
		t.Errorf("limit=1 then after alone: %v + %v, want %v", first.Publications, rest.Publications, want)
	}
}

func TestPublicationsBadParameters(t *testing.T) {
	store, _ := openStore(t)
	srv := server(t, readapi.Config{Reader: store})
	// An entities cursor is not a publications cursor.
	var page pageJSON
	decode(t, get(t, srv.URL, entitiesPath(keyBig, "limit=1")), &page)
	ent := *page.Next
	for query, param := range map[string]string{
		"limit=0": "limit", "limit=-3": "limit", "limit=x": "limit", "limit=": "limit",
		"after=nonsense": "after", "after=" + ent: "after", "limit=2&after=%%": "query string",
	} {
		r := get(t, srv.URL, "/publications?"+query)
		if r.status != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400 (%s)", query, r.status, r.body)
			continue
		}
		var e struct {
			Error string `json:"error"`
		}
		decode(t, r, &e)
		if !strings.HasPrefix(e.Error, param) {
			t.Errorf("?%s: error %q, want it to name %s", query, e.Error, param)
		}
	}
}

// TestPublicationsCap: without limit and after, GET /publications answers
// the first MaxPublications as an array, and a Link to the rest.
func TestPublicationsCap(t *testing.T) {
	store, err := sink.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "many.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := &wire.Batch{ID: "many"}
	for i := range readapi.MaxPublications + 3 {
		b.Publications = append(b.Publications, wire.PubCount{Key: fmt.Sprintf("p%05d", i), Name: "P", Articles: 1})
	}
	if _, err := store.Apply(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	srv := server(t, readapi.Config{Reader: store})
	r := get(t, srv.URL, "/publications")
	var got []pubJSON
	decode(t, r, &got)
	if len(got) != readapi.MaxPublications || got[len(got)-1].Key != fmt.Sprintf("p%05d", readapi.MaxPublications-1) {
		t.Fatalf("GET /publications: %d publications, want the first %d", len(got), readapi.MaxPublications)
	}
	link := r.header.Get("Link")
	if !strings.HasPrefix(link, fmt.Sprintf("</publications?limit=%d&after=", readapi.MaxLimit)) {
		t.Fatalf("Link %q, want the next page", link)
	}
	next := strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
	var rest pubsPageJSON
	decode(t, get(t, srv.URL, next), &rest)
	if len(rest.Publications) != 3 || rest.Publications[0].Key != fmt.Sprintf("p%05d", readapi.MaxPublications) || rest.Next != nil {
		t.Fatalf("GET %s = %+v, want the last 3", next, rest)
	}
}
