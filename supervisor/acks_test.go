package supervisor

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/source"
	"github.com/ingest-dev/ingest/wire"
)

// ackLog records how each message was settled.
type ackLog map[string]error

func (l ackLog) ack(name string) func(error) {
	return func(err error) {
		if _, dup := l[name]; dup {
			panic("settled twice: " + name)
		}
		l[name] = err
	}
}

// register begins a message, expects its keys and closes it.
func register(r *pendingAcks, ack func(error), keys ...string) *pendingBatch {
	b := r.begin(ack)
	for _, k := range keys {
		r.expect(b, k)
	}
	r.close(b)
	return b
}

func TestPendingAcks(t *testing.T) {
	l := ackLog{}
	r := newPendingAcks()
	register(r, l.ack("one"), "m1")
	register(r, l.ack("ndjson"), "m2#0", "m2#1")
	register(r, l.ack("retry A"), "a:7")
	register(r, l.ack("retry B"), "a:7") // the same article_id: one post

	r.stored([]string{"m1", "m2#0"})
	if _, ok := l["ndjson"]; ok || l["one"] != nil || len(l) != 1 {
		t.Fatalf("after m1 and m2#0: %v; want one acked, ndjson waiting", l)
	}
	r.stored([]string{"m2#1", "a:7"})
	if len(l) != 4 || l["ndjson"] != nil || l["retry A"] != nil || l["retry B"] != nil {
		t.Fatalf("after every key: %v; want all acked", l)
	}
	if r.len() != 0 {
		t.Fatalf("%d still waiting", r.len())
	}
	r.stored([]string{"m1"}) // a duplicate store: nothing waits
	if len(l) != 4 {
		t.Fatalf("a second store settled something: %v", l)
	}
}

// A message stays open while its posts are put in the queue: a post
// stored before the last is registered does not settle it.
func TestPendingAcksOpen(t *testing.T) {
	l := ackLog{}
	r := newPendingAcks()
	b := r.begin(l.ack("m"))
	r.expect(b, "m#0")
	r.stored([]string{"m#0"})
	r.expect(b, "m#1")
	if len(l) != 0 {
		t.Fatalf("settled while open: %v", l)
	}
	r.close(b)
	r.stored([]string{"m#1"})
	if err, ok := l["m"]; !ok || err != nil {
		t.Fatalf("%v; want m acked", l)
	}
}

// A post the queue did not take gives its message back, once its other
// posts are settled; giveBackAll gives back what waits and counts the
// posts that were in the pipeline.
func TestPendingAcksGiveBack(t *testing.T) {
	l := ackLog{}
	r := newPendingAcks()
	b := r.begin(l.ack("short"))
	r.expect(b, "s#0")
	r.expect(b, "s#1")
	r.unexpect(b, "s#1")
	r.close(b)
	if len(l) != 0 {
		t.Fatalf("given back before its posts in the pipeline were settled: %v", l)
	}
	r.stored([]string{"s#0"})
	if !errors.Is(l["short"], source.ErrNotStored) {
		t.Fatalf("%v; want short given back", l)
	}
	register(r, l.ack("left"), "x#0", "x#1", "x#2")
	register(r, l.ack("none"))
	r.stored([]string{"x#1"})
	if n := r.giveBackAll(source.ErrNotStored); n != 2 {
		t.Fatalf("giveBackAll returned %d posts, want the 2 of x not stored", n)
	}
	if !errors.Is(l["left"], source.ErrNotStored) || l["none"] != nil {
		t.Fatalf("%v; want left given back, none (no posts) acked at its close", l)
	}
	if r.len() != 0 {
		t.Fatalf("%d still waiting", r.len())
	}
}

// The hotspot meter counts one write of a publication's document per
// stored part holding it, and reports the busiest over the window.
func TestHotspot(t *testing.T) {
	h := newHotspot(hclog.NewNullLogger())
	enc := wire.NewEncoder(nil, 0)
	frame := func(keys ...string) []byte {
		b := wire.Batch{ID: wire.NewBatchID(), Parts: 1}
		for _, k := range keys {
			b.Publications = append(b.Publications, wire.PubCount{Key: k, Articles: 1}, wire.PubCount{Key: k, Articles: 1})
		}
		raw, err := enc.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	now := time.Now()
	for i := range 90 {
		h.meter(frame("hot", "warm"), now)
		if i%3 == 0 {
			h.meter(frame("warm"), now)
		}
	}
	h.meter([]byte("not a frame"), now)
	key, rate := h.hottest()
	if key != "warm" || rate != float64(120)/hotWindow {
		t.Fatalf("hottest %q at %v/s; want warm at 2/s", key, rate)
	}
}
