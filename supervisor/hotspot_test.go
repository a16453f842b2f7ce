package supervisor

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// Keyed posts (Pub/Sub messages) write their publication's document too:
// the meter counts one write per stored part holding the publication, keyed
// or not; above once a second it warns, once an hour.
func TestHotspotKeyedPostsAndWarning(t *testing.T) {
	var logged bytes.Buffer
	h := newHotspot(hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Warn}))
	enc := wire.NewEncoder(nil, 0)
	frame := func(b *wire.Batch) []byte {
		raw, err := enc.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	pub := func(key string) wire.PubCount { return wire.PubCount{Key: key, Name: key, Articles: 1} }
	unkeyed := frame(&wire.Batch{ID: "u", Parts: 1, Posts: 2, Publications: []wire.PubCount{pub("a"), pub("b")}})
	// Two keyed posts of "a" in one part: one write of a's document.
	keyed := frame(&wire.Batch{ID: "k", Parts: 1, Posts: 2, Keyed: []wire.KeyedCount{{Key: "m1", Counts: pub("a")}, {Key: "m2", Counts: pub("a")}}})

	start := time.Unix(1_000_000, 0)
	for i := range 30 {
		h.meter(unkeyed, start.Add(time.Duration(i)*time.Second))
		h.meter(keyed, start.Add(time.Duration(i)*time.Second))
	}
	h.mu.Lock()
	key, rate := h.hottestLocked(start.Add(29 * time.Second))
	h.mu.Unlock()
	if key != "a" || rate != 60.0/hotWindow {
		t.Errorf("hottest %q at %.2f writes/s, want a at %.2f (60 writes in the minute)", key, rate, 60.0/hotWindow)
	}
	if bytes.Contains(logged.Bytes(), []byte("more than once a second")) {
		t.Errorf("warned at 1 write a second: %s", logged.Bytes())
	}
	for i := range 40 { // a second burst takes the minute over 100 writes
		h.meter(keyed, start.Add(30*time.Second+time.Duration(i)*time.Second/2))
		h.meter(keyed, start.Add(30*time.Second+time.Duration(i)*time.Second/2))
	}
	if n := bytes.Count(logged.Bytes(), []byte("more than once a second")); n != 1 {
		t.Errorf("warned %d times above once a second, want once (an hour apart):\n%s", n, logged.Bytes())
	}
	h.mu.Lock()
	_, rate = h.hottestLocked(start.Add(10 * time.Minute))
	h.mu.Unlock()
	if rate != 0 {
		t.Errorf("%.2f writes/s ten minutes after the last write, want 0", rate)
	}
	h.meter([]byte("not a frame"), start) // ignored

	// A part of 300 keyed posts of one publication, 10 entities each,
	// fills 3,600 / 500 commits: its document is written 8 times.
	big := wire.Batch{ID: "big", Parts: 1, Posts: 300}
	for i := range 300 {
		c := pub("big")
		for j := range 10 {
			c.Entities = append(c.Entities, wire.EntityCount{Word: fmt.Sprintf("w%d-%d", i, j), Count: 1})
		}
		big.Keyed = append(big.Keyed, wire.KeyedCount{Key: fmt.Sprint("m", i), Counts: c})
	}
	later := start.Add(time.Hour)
	h.meter(frame(&big), later)
	h.mu.Lock()
	key, rate = h.hottestLocked(later)
	h.mu.Unlock()
	if want := float64((300*12+sink.CommitWrites-1)/sink.CommitWrites) / hotWindow; key != "big" || rate != want {
		t.Errorf("a part of 300 keyed posts: %q at %.3f writes/s, want big at %.3f (8 commits)", key, rate, want)
	}

	// The same entities unkeyed are one entry: its document is written
	// once, however many commits its entities take.
	wide := pub("wide")
	for i := range 3600 {
		wide.Entities = append(wide.Entities, wire.EntityCount{Word: fmt.Sprint("w", i), Count: 1})
	}
	later = later.Add(time.Hour)
	h.meter(frame(&wire.Batch{ID: "wide", Parts: 1, Posts: 300, Publications: []wire.PubCount{wide}}), later)
	h.mu.Lock()
	key, rate = h.hottestLocked(later)
	h.mu.Unlock()
	if key != "wide" || rate != 1.0/hotWindow {
		t.Errorf("an unkeyed publication of 3,600 entities: %q at %.3f writes/s, want wide at %.3f (one write)", key, rate, 1.0/hotWindow)
	}
}
