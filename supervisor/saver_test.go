package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/wire"
)

// fakeSaverHost is the parent as a saver incarnation sees it.
type fakeSaverHost struct {
	mu          sync.Mutex
	drainingNow bool
	storedParts []string // the ids stored() was told, in order
	duplicates  int      // of them, acknowledged as duplicates
	failing     []error  // storeFailing's arguments, in order
	tally       *tally   // what stored() counts
}

func newFakeSaverHost() *fakeSaverHost { return &fakeSaverHost{tally: newTally()} }

func (h *fakeSaverHost) draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drainingNow
}

func (h *fakeSaverHost) stored(item batchItem, ack wire.Ack) {
	h.mu.Lock()
	h.storedParts = append(h.storedParts, item.id)
	if ack.Duplicate {
		h.duplicates++
	}
	h.mu.Unlock()
	h.tally.store(item, ack)
}

func (h *fakeSaverHost) storeFailing(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing = append(h.failing, err)
}

func (h *fakeSaverHost) parts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.storedParts...)
}

// testSaver is a saver incarnation on a fake process, fed from q.
func testSaver(t *testing.T, host saverHost, q *batchQueue) (*saverInc, *fakeOS) {
	t.Helper()
	cfg := config.Default()
	s := newSaverInc(host, q, &cfg, 0)
	s.retryAfter = time.Second // fake time, in a bubble
	pro, fos := newFakeProcess(t, wire.RoleSaver, 0)
	s.bind(pro)
	return s, fos
}

// part is a batch part as a worker hands it on: its frame and its size.
func part(t *testing.T, id string, posts, dead int) batchItem {
	t.Helper()
	b := wire.Batch{ID: id, Parts: 1, Posts: posts}
	for range dead {
		b.Dead = append(b.Dead, wire.DeadLetter{Publication: "p", Content: "c"})
	}
	raw, err := wire.NewEncoder(nil, 0).Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	return batchItem{raw: raw, id: id, posts: posts, dead: dead, entities: 2, docs: 3}
}

// ack is the saver's acknowledgement of part id, as its stdout reader
// hands it on.
func ack(t *testing.T, s *saverInc, a wire.Ack) {
	t.Helper()
	if err := s.onFrame(frameOf(t, &a)); err != nil {
		t.Fatal(err)
	}
}

// sentIDs are the ids of the batch parts the parent sent the saver.
func sentIDs(t *testing.T, fos *fakeOS) []string {
	t.Helper()
	var ids []string
	for _, f := range fos.frames(t) {
		var b wire.Batch
		if f.Decode(&b) == nil {
			ids = append(ids, b.PartID())
		}
	}
	return ids
}

// One part outstanding at a time: the next is sent only once the saver
// acknowledged the last, and each acknowledged part is booked once, a
// duplicate (stored by an earlier attempt) as stored too.
func TestSaverFeedsOnePartAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newBatchQueue()
		q.push(part(t, "a", 3, 1), part(t, "b", 2, 0))
		host := newFakeSaverHost()
		s, fos := testSaver(t, host, q)
		result := make(chan feedResult, 1)
		go func() { result <- s.feed(context.Background()) }()
		synctest.Wait()
		if got := sentIDs(t, fos); len(got) != 1 || got[0] != "a" {
			t.Fatalf("sent %v before any ack, want [a]", got)
		}
		if s.storingFor(time.Now().Add(time.Second)) == 0 {
			t.Error("no part outstanding while one is")
		}
		ack(t, s, wire.Ack{ID: "a", Commits: 1, Writes: 5})
		synctest.Wait()
		if got := sentIDs(t, fos); len(got) != 2 || got[1] != "b" {
			t.Fatalf("sent %v after a's ack, want [a b]", got)
		}
		ack(t, s, wire.Ack{ID: "b", Duplicate: true, Commits: 1, Writes: 2, Reads: 3, DuplicateKeys: 2})
		synctest.Wait()
		q.close()
		synctest.Wait()
		if r := <-result; r != fedAll {
			t.Fatalf("feed = %d after the queue closed, want fedAll", r)
		}
		if got := host.parts(); len(got) != 2 || host.duplicates != 1 {
			t.Errorf("stored %v with %d duplicates, want a and b, one duplicate", got, host.duplicates)
		}
		c := host.tally.counts()
		if c.Stored != 4 || c.DeadLettered != 1 || c.Batches != 2 || c.Duplicates != 1 || c.Commits != 2 || c.Writes != 7 || c.Reads != 3 || c.DuplicateKeys != 2 || c.Entities != 4 || c.Documents != 6 {
			t.Errorf("tally %+v", c)
		}
		if s.storingFor(time.Now()) != 0 {
			t.Error("a part outstanding after the last ack")
		}
	})
}

// A part the sink refused, or an ack for another part, is not booked: the
// part goes back in front of the queue, readiness hears why, and it is
// offered again after the retry pause.
func TestSaverKeepsWhatTheSinkRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newBatchQueue()
		q.push(part(t, "a", 1, 0))
		host := newFakeSaverHost()
		s, fos := testSaver(t, host, q)
		go s.feed(context.Background())
		synctest.Wait()
		ack(t, s, wire.Ack{ID: "a", Err: "database is locked"})
		synctest.Wait()
		if q.len() != 1 || len(host.parts()) != 0 {
			t.Fatalf("after a refusal: %d in the queue, stored %v; want the part back, nothing stored", q.len(), host.parts())
		}
		if len(host.failing) != 1 || host.failing[0] == nil || !strings.Contains(host.failing[0].Error(), "database is locked") {
			t.Fatalf("storeFailing got %v, want the sink's refusal", host.failing)
		}
		time.Sleep(s.retryAfter) // fake time: the retry pause passes
		synctest.Wait()
		if got := sentIDs(t, fos); len(got) != 2 || got[1] != "a" {
			t.Fatalf("sent %v, want a offered again", got)
		}
		ack(t, s, wire.Ack{ID: "elsewhere"})
		synctest.Wait()
		if len(host.parts()) != 0 || q.len() != 1 || !strings.Contains(host.failing[1].Error(), "acknowledged batch elsewhere while a was outstanding") {
			t.Fatalf("an ack for another part: stored %v, failing %v", host.parts(), host.failing)
		}
		time.Sleep(s.retryAfter)
		synctest.Wait()
		ack(t, s, wire.Ack{ID: "a"})
		synctest.Wait()
		if got := host.parts(); len(got) != 1 || host.failing[len(host.failing)-1] != nil {
			t.Fatalf("stored %v, failing %v; want a stored once and the sink healthy again", got, host.failing)
		}
		q.close()
	})
}

// A saver that dies with a part outstanding: the part goes back unless the
// saver had acknowledged it before dying, in which case it is booked.
func TestSaverDeathWithAPartOutstanding(t *testing.T) {
	for _, ackedFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "not acknowledged", true: "acknowledged, then died"}[ackedFirst], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newBatchQueue()
				q.push(part(t, "a", 2, 0))
				host := newFakeSaverHost()
				s, fos := testSaver(t, host, q)
				result := make(chan feedResult, 1)
				go func() { result <- s.feed(context.Background()) }()
				synctest.Wait()
				if ackedFirst {
					// The ack and the exit arrive together: feed may see
					// either first.
					s.acks <- wire.Ack{ID: "a"}
				}
				fos.exit(errors.New("signal: killed"))
				synctest.Wait()
				if r := <-result; r != feedDied {
					t.Fatalf("feed = %d, want feedDied", r)
				}
				stored, back := len(host.parts()), q.len()
				if ackedFirst && (stored != 1 || back != 0) || !ackedFirst && (stored != 0 || back != 1) {
					t.Errorf("stored %d, %d back in the queue", stored, back)
				}
			})
		})
	}
}

// The stdout reader never waits: a second ack while one is not yet taken
// is a protocol error; a heartbeat asking for a replacement retires the
// saver unless the run drains.
func TestSaverFrames(t *testing.T) {
	host := newFakeSaverHost()
	s, _ := testSaver(t, host, newBatchQueue())
	ack(t, s, wire.Ack{ID: "a"})
	if err := s.onFrame(frameOf(t, &wire.Ack{ID: "b"})); err == nil {
		t.Error("a second ack while one waits was taken")
	}
	if err := s.onFrame(frameOf(t, &wire.Post{Publication: "p", Content: "c"})); err == nil {
		t.Error("a post from a saver was taken")
	}

	host.drainingNow = true
	if err := s.onFrame(frameOf(t, &wire.Heartbeat{Draining: true, RSS: 7})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.retire:
		t.Fatal("retired while the run drains")
	default:
	}
	if s.pro.rss.Load() != 7 {
		t.Error("heartbeat not recorded")
	}
	host.drainingNow = false
	if err := s.onFrame(frameOf(t, &wire.Heartbeat{Draining: true})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.retire:
	default:
		t.Fatal("a saver sent SIGTERM was not retired")
	}
	if why := s.hung(time.Now().Add(time.Hour)); !strings.Contains(why, "--heartbeat-timeout") {
		t.Errorf("silent an hour: hung %q", why)
	}
}
