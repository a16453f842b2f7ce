package child

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// openSQLite opens a fresh SQLite sink in a temporary directory, closed
// when the test ends.
func openSQLite(t *testing.T) *sink.SQLite {
	t.Helper()
	db, err := sink.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ingest.db"), testLogger(t).Named("sink"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startSaver runs s over pipes and checks its hello.
func startSaver(t *testing.T, s *Saver) *pipeChild {
	t.Helper()
	s.Log = testLogger(t)
	c := startChild(t, s.Run)
	h := c.hello(t)
	if err := wire.CheckHello(h, wire.RoleSaver, s.ID); err != nil {
		t.Fatal(err)
	}
	return c
}

// stored is what a sink holds: per publication key, the article count
// (under "") and each entity's count.
func stored(t *testing.T, db *sink.SQLite) map[string]map[string]int64 {
	t.Helper()
	ctx := t.Context()
	pubs, err := db.Publications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int64{}
	for _, p := range pubs {
		out[p.Key] = map[string]int64{"": p.Articles}
		ents, _, err := db.TopEntities(ctx, p.Key, 1000, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out[p.Key][e.Word] = e.Count
		}
	}
	return out
}

func checkStored(t *testing.T, db *sink.SQLite, want map[string]map[string]int64) {
	t.Helper()
	if got := stored(t, db); !reflect.DeepEqual(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// checkAck compares an ack with a success (or duplicate) for part id.
func checkAck(t *testing.T, a *wire.Ack, id string, duplicate bool) {
	t.Helper()
	if a.ID != id || a.Duplicate != duplicate || a.Err != "" {
		t.Errorf("ack %+v, want ID %s, Duplicate %v and no error", a, id, duplicate)
	}
	if !duplicate && (a.Commits < 1 || a.Writes < 1) {
		t.Errorf("ack %+v of a new part, want its commits and writes counted", a)
	}
}

func TestSaverStoresEachPartOnce(t *testing.T) {
	t.Parallel()
	db := openSQLite(t)
	c := startSaver(t, &Saver{ID: 1, Sink: db})

	one := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Worker: 2, Through: 2, Posts: 2, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 2, Entities: []wire.EntityCount{{Word: "London", Count: 3}, {Word: "Paris", Count: 1}}},
	}}
	c.send(t, &one)
	checkAck(t, c.ack(t), one.ID, false)
	after := map[string]map[string]int64{"bbc": {"": 2, "London": 3, "Paris": 1}}
	checkStored(t, db, after)

	c.send(t, &one) // a replay, e.g. after the parent lost the first ack
	checkAck(t, c.ack(t), one.ID, true)
	checkStored(t, db, after)

	// A batch in two parts: each is acknowledged, and replayed, on its own.
	id := wire.NewBatchID()
	parts := []wire.Batch{
		{ID: id, Part: 0, Parts: 2, Publications: []wire.PubCount{
			{Key: "bbc", Name: "BBC", Articles: 1, Entities: []wire.EntityCount{{Word: "London", Count: 1}}},
		}},
		{ID: id, Part: 1, Parts: 2, Through: 3, Posts: 2, Publications: []wire.PubCount{
			{Key: "reuters", Name: "Reuters", Articles: 1, Entities: []wire.EntityCount{{Word: "Berlin", Count: 2}}},
		}},
	}
	for i := range parts {
		c.send(t, &parts[i])
		checkAck(t, c.ack(t), parts[i].PartID(), false)
	}
	after = map[string]map[string]int64{"bbc": {"": 3, "London": 4, "Paris": 1}, "reuters": {"": 1, "Berlin": 2}}
	checkStored(t, db, after)
	c.send(t, &parts[1])
	checkAck(t, c.ack(t), id+"/1", true)
	checkStored(t, db, after)

	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

// A keyed post counts once whatever batch brings it again, and the Ack
// of the batch that brought it again says so; the rest of that batch
// counts.
func TestSaverCountsKeyedPostsOnce(t *testing.T) {
	t.Parallel()
	db := openSQLite(t)
	c := startSaver(t, &Saver{ID: 1, Sink: db})
	keyed := func(key, word string) wire.KeyedCount {
		return wire.KeyedCount{Key: key, Counts: wire.PubCount{Key: "bbc", Name: "BBC", Articles: 1,
			Entities: []wire.EntityCount{{Word: word, Count: 1}}}}
	}
	first := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 2, Keyed: []wire.KeyedCount{keyed("m1", "London"), keyed("m2", "Paris")}}
	c.send(t, &first)
	if a := c.ack(t); a.Err != "" || a.Duplicate || a.DuplicateKeys != 0 || a.Commits != 1 || a.Writes != 6 {
		t.Errorf("first ack %+v; want 1 commit of 6 rows (the part, 2 keys, a publication, 2 entities), no duplicates", a)
	}
	// m2 redelivered inside a batch cut differently, with a new post.
	again := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 2, Keyed: []wire.KeyedCount{keyed("m2", "Paris"), keyed("m3", "Rome")}}
	c.send(t, &again)
	if a := c.ack(t); a.Err != "" || a.Duplicate || a.DuplicateKeys != 1 {
		t.Errorf("second ack %+v; want one duplicate key", a)
	}
	checkStored(t, db, map[string]map[string]int64{"bbc": {"": 3, "London": 1, "Paris": 1, "Rome": 1}})
	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

// failingSink is the real SQLite sink, except that the first Apply of part
// fails as if the disk were full. Apply is called from the saver loop only.
type failingSink struct {
	*sink.SQLite
	part   string
	failed bool
}

var errDiskFull = errors.New("test: disk full")

func (s *failingSink) Apply(ctx context.Context, b *wire.Batch) (bool, error) {
	res, err := s.ApplyReport(ctx, b)
	return res.Duplicate, err
}

func (s *failingSink) ApplyReport(ctx context.Context, b *wire.Batch) (sink.Applied, error) {
	if b.PartID() == s.part && !s.failed {
		s.failed = true
		return sink.Applied{}, errDiskFull
	}
	return s.SQLite.ApplyReport(ctx, b)
}

func TestSaverReportsRefusedBatchAndGoesOn(t *testing.T) {
	t.Parallel()
	db := openSQLite(t)
	flaky := &failingSink{SQLite: db, part: wire.NewBatchID()}
	c := startSaver(t, &Saver{ID: 2, Sink: flaky})

	// The SQLite sink itself refuses a part number outside the batch.
	bad := wire.Batch{ID: wire.NewBatchID(), Part: 5, Parts: 2}
	c.send(t, &bad)
	a := c.ack(t)
	if a.ID != bad.ID+"/5" || a.Duplicate || !strings.Contains(a.Err, "part 5 out of range") || a.Commits != 0 || a.Writes != 0 {
		t.Errorf("ack %+v, want ID %s/5 and the sink's error, nothing written", a, bad.ID)
	}

	b := wire.Batch{ID: flaky.part, Parts: 1, Posts: 1, Through: 1, Publications: []wire.PubCount{
		{Key: "ap", Name: "AP", Articles: 1, Entities: []wire.EntityCount{{Word: "Oslo", Count: 1}}},
	}}
	c.send(t, &b)
	a = c.ack(t)
	if a.ID != b.ID || a.Duplicate || a.Err != errDiskFull.Error() {
		t.Errorf("ack %+v, want ID %s and Err %q", a, b.ID, errDiskFull)
	}
	checkStored(t, db, map[string]map[string]int64{})

	// The saver goes on: the parent retries the part, and it is stored once.
	c.send(t, &b)
	checkAck(t, c.ack(t), b.ID, false)
	c.send(t, &b)
	checkAck(t, c.ack(t), b.ID, true)
	checkStored(t, db, map[string]map[string]int64{"ap": {"": 1, "Oslo": 1}})

	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

func TestSaverHeartbeatsAndDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	db := openSQLite(t)
	c := startSaver(t, &Saver{ID: 3, Sink: db})
	hello := time.Now()
	hb := c.heartbeat(t, nil)
	if gap := time.Since(hello); gap < HeartbeatInterval/2 {
		t.Errorf("first heartbeat %v after the hello, want it after about %v", gap, HeartbeatInterval)
	}
	if hb.Done != 0 || hb.PostMicros != 0 || hb.Draining || hb.RSS <= 0 {
		t.Errorf("heartbeat %+v, want Done 0, PostMicros 0, not draining, RSS > 0", hb)
	}

	signalled := time.Now()
	c.term <- syscall.SIGTERM
	c.heartbeat(t, func(hb *wire.Heartbeat) bool { return hb.Draining })
	if took := time.Since(signalled); took >= HeartbeatInterval/2 {
		t.Errorf("draining heartbeat %v after SIGTERM, want it at once", took)
	}

	// Draining, it still stores what it is sent until STOP.
	b := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 1, Through: 1, Publications: []wire.PubCount{
		{Key: "ap", Name: "AP", Articles: 1},
	}}
	c.send(t, &b)
	checkAck(t, c.ack(t), b.ID, false)
	checkStored(t, db, map[string]map[string]int64{"ap": {"": 1}})
	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

func TestSaverParentGone(t *testing.T) {
	t.Parallel()
	c := startSaver(t, &Saver{ID: 4, Sink: openSQLite(t)})
	c.in.Close()
	if err := c.wait(t); !errors.Is(err, ErrParentGone) {
		t.Fatalf("Run after stdin EOF: %v, want ErrParentGone", err)
	}
}

func TestSaverRefusesMalformedFrames(t *testing.T) {
	t.Parallel()
	cases := append(slices.Clip(malformedFrames), malformedFrame{"post to a saver", mustMarshal(t, &wire.Post{Seq: 1}),
		wire.ErrMalformed, "saver 5: wire: malformed frame: expected a batch frame, got post"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startSaver(t, &Saver{ID: 5, Sink: openSQLite(t)})
			b := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 1, Through: 1}
			c.send(t, &b)
			checkAck(t, c.ack(t), b.ID, false)
			c.sendRaw(t, tc.bytes)
			c.in.Close()
			err := c.wait(t)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Run: %v, want an error wrapping %v that says %q", err, tc.is, tc.says)
			}
		})
	}
}
