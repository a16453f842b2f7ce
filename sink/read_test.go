package sink

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

func TestPublications(t *testing.T) {
	s := openTest(t)
	if pubs, err := s.Publications(t.Context()); err != nil || len(pubs) != 0 {
		t.Fatalf("Publications of an empty file = %v, %v", pubs, err)
	}
	apply(t, s, wire.Batch{ID: "a", Publications: []wire.PubCount{
		{Key: "b", Name: "B", Articles: 5},
		{Key: "a", Name: "A", Articles: 5},
		{Key: "c", Name: "C", Articles: 9},
		{Key: "z", Name: "Z", Articles: 0},
		{Key: "d", Name: "D", Articles: 1},
	}})
	got, err := s.Publications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Publication{{"c", "C", 9}, {"a", "A", 5}, {"b", "B", 5}, {"d", "D", 1}, {"z", "Z", 0}}
	if !slices.Equal(got, want) {
		t.Fatalf("Publications = %v, want %v", got, want)
	}
}

func apply(t *testing.T, s *SQLite, b wire.Batch) {
	t.Helper()
	if _, err := s.Apply(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
}

// seedEntities stores, for publication "p", entities with many ties on
// count (and words that are not valid UTF-8) and returns them in the
// order TopEntities must return them.
func seedEntities(t *testing.T, s *SQLite) []wire.EntityCount {
	var pc = wire.PubCount{Key: "p", Name: "P", Articles: 1}
	var want []wire.EntityCount
	words := []string{"zeta", "alpha", "Alpha", "beta", "\xff\xfe", "a\x00b", "", "ünï", "gamma", "delta"}
	for i := range 53 {
		w := fmt.Sprintf("%s%d", words[i%len(words)], i/len(words))
		c := int64(i % 4) // ties on every count
		if i == 7 {
			c = -2 // counts are stored as given
		}
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: w, Count: c})
		want = append(want, wire.EntityCount{Word: w, Count: c})
	}
	apply(t, s, wire.Batch{ID: "seed", Publications: []wire.PubCount{pc, {Key: "empty", Name: "Empty"}}})
	slices.SortFunc(want, func(a, b wire.EntityCount) int {
		if a.Count != b.Count {
			return -cmpInt(a.Count, b.Count)
		}
		return strings.Compare(a.Word, b.Word)
	})
	return want
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestTopEntitiesPaging(t *testing.T) {
	s := openTest(t)
	want := seedEntities(t, s)
	for _, limit := range []int{1, 2, 3, 7, 52, 53, 54, 1000, int(^uint(0) >> 1)} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []wire.EntityCount
			after := ""
			for page := 0; ; page++ {
				if page > len(want) {
					t.Fatal("paging does not end")
				}
				ents, next, err := s.TopEntities(t.Context(), "p", limit, after)
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) > limit || len(ents) == 0 {
					t.Fatalf("page %d: %d entities, want 1..%d", page, len(ents), limit)
				}
				got = append(got, ents...)
				if next == "" {
					break
				}
				if strings.ContainsAny(next, "+/=?&#%") {
					t.Errorf("cursor %q is not URL-safe", next)
				}
				after = next
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pages\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// Paging continues from the position, not an offset: entities added
// before the cursor's position do not shift the next page.
func TestTopEntitiesCursorIsPosition(t *testing.T) {
	s := openTest(t)
	apply(t, s, wire.Batch{ID: "a", Publications: []wire.PubCount{{Key: "p", Entities: ents{
		{Word: "a", Count: 9}, {Word: "b", Count: 8}, {Word: "c", Count: 7}, {Word: "d", Count: 6}}}}})
	page, next, err := s.TopEntities(t.Context(), "p", 2, "")
	if err != nil || next == "" {
		t.Fatalf("first page = %v, %q, %v", page, next, err)
	}
	apply(t, s, wire.Batch{ID: "b", Publications: []wire.PubCount{{Key: "p", Entities: ents{{Word: "new", Count: 100}}}}})
	page, next, err = s.TopEntities(t.Context(), "p", 2, next)
	if want := []wire.EntityCount{{Word: "c", Count: 7}, {Word: "d", Count: 6}}; err != nil || next != "" || !slices.Equal(page, want) {
		t.Fatalf("second page = %v, %q, %v; want %v, \"\", nil", page, next, err, want)
	}
}

func TestTopEntitiesErrors(t *testing.T) {
	s := openTest(t)
	seedEntities(t, s)
	_, valid, err := s.TopEntities(t.Context(), "p", 1, "")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("publication without entities", func(t *testing.T) {
		ents, next, err := s.TopEntities(t.Context(), "empty", 10, "")
		if err != nil || len(ents) != 0 || next != "" {
			t.Fatalf("TopEntities = %v, %q, %v; want an empty page", ents, next, err)
		}
	})
	t.Run("limit below 1", func(t *testing.T) {
		_, _, err := s.TopEntities(t.Context(), "p", 0, "")
		if err == nil || !strings.Contains(err.Error(), "limit must be at least 1 (got 0)") {
			t.Fatalf("TopEntities = %v", err)
		}
	})
	for _, after := range []string{"", valid} {
		t.Run(fmt.Sprintf("unknown publication, cursor %q", after), func(t *testing.T) {
			_, _, err := s.TopEntities(t.Context(), "nope", 10, after)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("TopEntities = %v, want ErrNotFound", err)
			}
		})
	}
	bad := map[string]string{
		"not base64":       "!!!",
		"padded base64":    valid + "=",
		"empty payload":    "AA",
		"not msgpack":      base64.RawURLEncoding.EncodeToString([]byte("hello, world")),
		"truncated":        valid[:len(valid)-2],
		"trailing bytes":   base64.RawURLEncoding.EncodeToString(append(mustDecode(t, valid), 0)),
		"other version":    base64.RawURLEncoding.EncodeToString(append([]byte{0x93, 0x02}, mustDecode(t, valid)[2:]...)),
		"too long":         strings.Repeat("A", maxCursor+1),
		"offset, not pos.": "10",
	}
	for name, after := range bad {
		t.Run("bad cursor: "+name, func(t *testing.T) {
			_, _, err := s.TopEntities(t.Context(), "p", 10, after)
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("TopEntities(%q) = %v, want ErrBadCursor", after, err)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
