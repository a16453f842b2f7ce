package aggregate

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

func TestDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		posts int
		at    time.Duration // when Due is asked, after the first post
		want  bool
	}{
		{"empty is never due", 0, time.Hour, false},
		{"below size and young", 2, time.Second, false},
		{"size reached", 3, 0, true},
		{"oldest post aged out", 1, 2 * time.Second, true},
		{"just below the interval", 1, 2*time.Second - time.Nanosecond, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			for i := range tc.posts {
				c.Add(uint64(i+1), "P", nil, t0)
			}
			if got := c.Due(t0.Add(tc.at), 3, 2*time.Second); got != tc.want {
				t.Fatalf("Due = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDeadlineFollowsOldestUnflushedPost(t *testing.T) {
	t0 := time.Unix(100, 0)
	c := New()
	if _, ok := c.Deadline(time.Second); ok {
		t.Fatal("empty cache has a deadline")
	}
	c.Add(1, "P", nil, t0)
	c.Add(2, "P", nil, t0.Add(500*time.Millisecond))
	if d, _ := c.Deadline(time.Second); !d.Equal(t0.Add(time.Second)) {
		t.Fatalf("deadline %v, want first post + interval", d)
	}
	c.Flush(0)
	c.Add(3, "P", nil, t0.Add(5*time.Second))
	if d, _ := c.Deadline(time.Second); !d.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("after flush deadline %v, want the new oldest + interval", d)
	}
}

func TestFlushMergesKeysAndOrdersTopN(t *testing.T) {
	c := New()
	now := time.Now()
	c.Add(1, "The Harbor Gazette", []string{"chicago", "elena marsh", "chicago", "zurich"}, now)
	c.Add(2, "  the harbor gazette ", []string{"elena marsh", "anna", "bob"}, now)
	c.AddDead(3, wire.DeadLetter{Publication: "X", Content: "c", Error: "boom", Attempts: 1}, now)
	c.Add(4, "Capital Ledger", []string{"paris"}, now)
	b := c.Flush(3)
	want := wire.Batch{Parts: 1, Through: 4, Posts: 4,
		Dead: []wire.DeadLetter{{Publication: "X", Content: "c", Error: "boom", Attempts: 1}},
		Publications: []wire.PubCount{
			{Key: "capital ledger", Name: "Capital Ledger", Articles: 1, Entities: []wire.EntityCount{{Word: "paris", Count: 1}}},
			// ties (count 1) broken by word ascending: anna, bob before zurich
			{Key: "the harbor gazette", Name: "The Harbor Gazette", Articles: 2, Entities: []wire.EntityCount{{Word: "chicago", Count: 2}, {Word: "elena marsh", Count: 2}, {Word: "anna", Count: 1}}},
		}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("flush:\n got %+v\nwant %+v", b, want)
	}
	if c.Posts() != 0 || len(c.Flush(0).Publications) != 0 {
		t.Fatal("cache not empty after flush")
	}
}

func TestTopZeroMeansAll(t *testing.T) {
	counts := map[string]int64{"b": 1, "a": 1, "c": 5}
	got := Top(counts, 0)
	want := []wire.EntityCount{{Word: "c", Count: 5}, {Word: "a", Count: 1}, {Word: "b", Count: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Top(0) = %v, want %v", got, want)
	}
}

func TestSplitKeepsEveryCountOnce(t *testing.T) {
	b := wire.Batch{ID: "id", Worker: 1, Posts: 9, Through: 9, Dead: []wire.DeadLetter{{Error: "x"}}}
	for p, n := range []int{1, 50, 3} {
		pc := wire.PubCount{Key: string(rune('a' + p)), Name: "N", Articles: int64(p + 1)}
		for e := range n {
			pc.Entities = append(pc.Entities, wire.EntityCount{Word: string(rune('A' + e)), Count: int64(e + 1)})
		}
		b.Publications = append(b.Publications, pc)
	}
	for _, parts := range []int{1, 2, 4, 7} {
		out := Split(b, parts)
		articles := map[string]int64{}
		ents := map[string]int64{}
		posts := 0
		for i, p := range out {
			if p.ID != "id" || p.Part != i || p.Parts != len(out) {
				t.Fatalf("parts=%d: part %d labelled %d/%d id %q", parts, i, p.Part, p.Parts, p.ID)
			}
			posts += p.Posts
			if i < len(out)-1 && (p.Posts != 0 || p.Dead != nil) {
				t.Fatalf("parts=%d: post count or dead letters on a non-final part", parts)
			}
			for _, pc := range p.Publications {
				articles[pc.Key] += pc.Articles
				for _, e := range pc.Entities {
					ents[pc.Key+"/"+e.Word] += e.Count
				}
			}
		}
		if posts != 9 || articles["a"] != 1 || articles["b"] != 2 || articles["c"] != 3 || len(ents) != 54 || ents["b/C"] != 3 {
			t.Fatalf("parts=%d: counts changed by splitting: posts %d articles %v ents %d", parts, posts, articles, len(ents))
		}
		if parts > 1 && len(out) < 2 {
			t.Fatalf("parts=%d: got %d parts", parts, len(out))
		}
	}
}

// Keyed posts are not merged with the others nor with each other (the same
// key twice stays twice: the sink decides), and topN applies to each alone.
func TestFlushKeepsKeyedPostsApart(t *testing.T) {
	c := New()
	now := time.Now()
	c.Add(1, "Harbor Gazette", []string{"chicago"}, now)
	c.AddKeyed(2, "m1", " The Harbor Gazette", []string{"chicago", "anna", "chicago", "bob", strings.Repeat("x", wire.MaxEntityBytes+1)}, now)
	c.AddDead(3, wire.DeadLetter{Key: "m2", Publication: "X", Content: "c", Error: "boom", Attempts: 1}, now)
	c.AddKeyed(4, "m1", "Harbor Gazette", []string{"zurich"}, now)
	c.AddKeyed(5, "m3", "Capital Ledger", nil, now)
	b := c.Flush(2)
	want := wire.Batch{Parts: 1, Through: 5, Posts: 5,
		Publications: []wire.PubCount{{Key: "harbor gazette", Name: "Harbor Gazette", Articles: 1, Entities: []wire.EntityCount{{Word: "chicago", Count: 1}}}},
		Dead:         []wire.DeadLetter{{Key: "m2", Publication: "X", Content: "c", Error: "boom", Attempts: 1}},
		Keyed: []wire.KeyedCount{
			{Key: "m1", Counts: wire.PubCount{Key: "the harbor gazette", Name: " The Harbor Gazette", Articles: 1,
				Entities: []wire.EntityCount{{Word: "chicago", Count: 2}, {Word: "anna", Count: 1}}}},
			{Key: "m1", Counts: wire.PubCount{Key: "harbor gazette", Name: "Harbor Gazette", Articles: 1,
				Entities: []wire.EntityCount{{Word: "zurich", Count: 1}}}},
			{Key: "m3", Counts: wire.PubCount{Key: "capital ledger", Name: "Capital Ledger", Articles: 1, Entities: []wire.EntityCount{}}},
		}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("flush:\n got %+v\nwant %+v", b, want)
	}
	if c.Posts() != 0 || len(c.Flush(0).Keyed) != 0 {
		t.Fatal("cache not empty after flush")
	}
}

// Split spreads keyed entries over parts but never cuts one, even one
// larger than a part.
func TestSplitKeepsKeyedEntriesWhole(t *testing.T) {
	b := wire.Batch{ID: "id", Posts: 12, Through: 12, Publications: []wire.PubCount{{Key: "p", Articles: 2,
		Entities: []wire.EntityCount{{Word: "a", Count: 1}, {Word: "b", Count: 2}}}}}
	for k, n := range []int{3, 0, 40, 1, 5, 2, 2, 9, 1, 0} {
		kc := wire.KeyedCount{Key: string(rune('k' + k)), Counts: wire.PubCount{Key: "q", Articles: 1}}
		for e := range n {
			kc.Counts.Entities = append(kc.Counts.Entities, wire.EntityCount{Word: string(rune('A' + e)), Count: 1})
		}
		b.Keyed = append(b.Keyed, kc)
	}
	for _, parts := range []int{1, 2, 3, 8, 64} {
		var got []wire.KeyedCount
		out := Split(b, parts)
		for _, p := range out {
			got = append(got, p.Keyed...)
		}
		if !reflect.DeepEqual(got, b.Keyed) {
			t.Fatalf("parts=%d: keyed entries across the parts differ from the batch's", parts)
		}
		if parts > 1 && len(out) < 2 {
			t.Fatalf("parts=%d: got %d parts", parts, len(out))
		}
	}
}

func BenchmarkAddFlush(b *testing.B) {
	words := []string{"chicago", "elena marsh", "european union", "brussels", "riverside shipping company", "tomas reyes", "sacramento"}
	pubs := []string{"Harbor Gazette", "Capital Ledger", "Riverside Wire"}
	b.ReportAllocs()
	for b.Loop() {
		c := New()
		now := time.Now()
		for i := range 1000 {
			c.Add(uint64(i), pubs[i%len(pubs)], words, now)
		}
		c.Flush(2000)
	}
}

// A batch carries the spelling of a publication its posts used most, not
// the first one that happened to arrive; the first seen wins a tie.
func TestFlushNamesAPublicationByItsUsualSpelling(t *testing.T) {
	c := New()
	now := time.Now()
	for i, name := range []string{"  the harbor gazette ", "The Harbor Gazette", "The Harbor Gazette", "Riverside Wire", "riverside wire"} {
		c.Add(uint64(i+1), name, nil, now)
	}
	got := map[string]string{}
	for _, p := range c.Flush(0).Publications {
		got[p.Key] = p.Name
	}
	if got["the harbor gazette"] != "The Harbor Gazette" || got["riverside wire"] != "Riverside Wire" {
		t.Errorf("names = %q, want The Harbor Gazette (most used) and Riverside Wire (first of equals)", got)
	}
}

// TestAddDropsOverLongEntities: a word over wire.MaxEntityBytes is not
// counted; one at the limit is; the article still counts.
func TestAddDropsOverLongEntities(t *testing.T) {
	atLimit := strings.Repeat("é", wire.MaxEntityBytes/2)
	c := New()
	c.Add(1, "P", []string{atLimit, atLimit + "x", "marsh", strings.Repeat("y", 10_000)}, time.Unix(0, 0))
	b := c.Flush(0)
	want := []wire.EntityCount{{Word: "marsh", Count: 1}, {Word: atLimit, Count: 1}} // ties by word
	if len(b.Publications) != 1 || b.Publications[0].Articles != 1 || !reflect.DeepEqual(b.Publications[0].Entities, want) {
		t.Fatalf("flushed %+v, want one article with %+v", b.Publications, want)
	}
}
