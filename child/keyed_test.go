package child

import (
	"fmt"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// batchesOf sends posts to a new worker of cache size, stops it and
// returns every batch it flushed.
func batchesOf(t *testing.T, cache int, posts []wire.Post) []*wire.Batch {
	t.Helper()
	c := startWorker(t, &Worker{ID: cache, CacheSize: cache, FlushInterval: time.Hour})
	for i := range posts {
		p := posts[i]
		p.Seq = uint64(i + 1)
		c.send(t, &p)
	}
	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	var out []*wire.Batch
	for _, m := range c.rest(t) {
		if b, ok := m.(*wire.Batch); ok {
			out = append(out, b)
		}
	}
	return out
}

// Messages a broker redelivers to another node land in batches cut
// differently: node A takes twelve keyed posts four a batch; node B,
// after A was lost, gets nine of them again, in another order, five a
// batch, among posts of its own. Through the real workers and one saver,
// every keyed post counts once, every unkeyed post once, and the acks of
// B's batches account for the nine.
func TestKeyedPostsCountOnceAcrossNodes(t *testing.T) {
	t.Parallel()
	var keyed []wire.Post
	for i := range 12 {
		keyed = append(keyed, wire.Post{Key: fmt.Sprint("msg-", i), Publication: []string{"BBC", "Sky"}[i%2],
			Content: fmt.Sprintf("Leeds and York%d met Hull", i%3)})
	}
	nodeA := append([]wire.Post{{Publication: "BBC", Content: "Only A"}}, keyed...)
	var nodeB []wire.Post
	for i := 11; i >= 3; i-- {
		nodeB = append(nodeB, keyed[i])
		if i%4 == 0 {
			nodeB = append(nodeB, wire.Post{Publication: "Sky", Content: fmt.Sprint("Only B", i)})
		}
	}
	batches := append(batchesOf(t, 4, nodeA), batchesOf(t, 5, nodeB)...)

	db := openSQLite(t)
	s := startSaver(t, &Saver{ID: 1, Sink: db})
	var duplicates int64
	for _, b := range batches {
		s.send(t, b)
		a := s.ack(t)
		checkAck(t, a, b.PartID(), false)
		duplicates += a.DuplicateKeys
	}
	if duplicates != 9 {
		t.Errorf("acks say %d keyed posts were counted before, want 9", duplicates)
	}
	checkStored(t, db, map[string]map[string]int64{
		"bbc": {"": 7, "Leeds": 6, "York0": 2, "York1": 2, "York2": 2, "Hull": 6, "Only": 1, "A": 1},
		"sky": {"": 8, "Leeds": 6, "York0": 2, "York1": 2, "York2": 2, "Hull": 6, "Only": 2, "B4": 1, "B8": 1},
	})
	s.stop(t)
	if err := s.wait(t); err != nil {
		t.Fatalf("saver Run after STOP: %v, want nil", err)
	}
}
