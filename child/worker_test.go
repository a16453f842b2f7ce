package child

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/ingest-dev/ingest/wire"
)

// fakeNER is the worker's Extractor in these tests: the entities of a text
// are its capitalised words, as they are. Words is only called from the
// worker loop, one call at a time.
type fakeNER struct {
	// cost is how long each call takes, so PostMicros has something to
	// measure; the call spins rather than sleeps, like real NER.
	cost time.Duration
	// fail: a text containing it fails, quarantining the post.
	fail string
	// A text containing "HOLD" sends it on held and then waits for
	// release, so a test can look at the worker while a post is in
	// progress.
	held    chan string
	release chan struct{}
}

func (f *fakeNER) Words(text string) ([]string, error) {
	for start := time.Now(); time.Since(start) < f.cost; {
	}
	if f.fail != "" && strings.Contains(text, f.fail) {
		return nil, fmt.Errorf("fake NER: cannot read %q", text)
	}
	if strings.Contains(text, "HOLD") {
		f.held <- text
		<-f.release
	}
	var words []string
	for _, w := range strings.Fields(text) {
		if r := []rune(w); unicode.IsUpper(r[0]) && w != "HOLD" && w != f.fail {
			words = append(words, w)
		}
	}
	return words, nil
}

// startWorker runs w over pipes with a fakeNER unless w has an Extractor,
// and checks its hello.
func startWorker(t *testing.T, w *Worker) *pipeChild {
	t.Helper()
	if w.Extractor == nil {
		w.Extractor = &fakeNER{}
	}
	w.Log = testLogger(t)
	c := startChild(t, w.Run)
	h := c.hello(t)
	if err := wire.CheckHello(h, wire.RoleWorker, w.ID); err != nil {
		t.Fatal(err)
	}
	if h.PID != os.Getpid() {
		t.Errorf("hello PID = %d, want this process's %d", h.PID, os.Getpid())
	}
	return c
}

// post sends a post and waits for a heartbeat saying the worker is done
// with it.
func (c *pipeChild) post(t *testing.T, p wire.Post) *wire.Heartbeat {
	t.Helper()
	c.send(t, &p)
	return c.heartbeat(t, func(hb *wire.Heartbeat) bool { return hb.Done == p.Seq })
}

// checkBatch compares a batch with want, ignoring ID and treating empty
// and nil slices alike.
func checkBatch(t *testing.T, got *wire.Batch, want wire.Batch) {
	t.Helper()
	if len(got.ID) != 32 {
		t.Errorf("batch ID = %q, want 32 hex digits", got.ID)
	}
	g := *got
	g.ID = ""
	if !reflect.DeepEqual(normalBatch(g), normalBatch(want)) {
		t.Errorf("batch\n got %+v\nwant %+v", normalBatch(g), normalBatch(want))
	}
}

func normalBatch(b wire.Batch) wire.Batch {
	if len(b.Publications) == 0 {
		b.Publications = nil
	}
	for i := range b.Publications {
		if len(b.Publications[i].Entities) == 0 {
			b.Publications[i].Entities = nil
		}
	}
	if len(b.Dead) == 0 {
		b.Dead = nil
	}
	if len(b.Keyed) == 0 {
		b.Keyed = nil
	}
	b.Keyed = slices.Clone(b.Keyed)
	for i := range b.Keyed {
		if len(b.Keyed[i].Counts.Entities) == 0 {
			b.Keyed[i].Counts.Entities = nil
		}
	}
	return b
}

// splitBatch reads the parts of a batch that had to be split to fit
// frames of maxFrame bytes: at least two.
func (c *pipeChild) splitBatch(t *testing.T, maxFrame int) []*wire.Batch {
	t.Helper()
	parts := []*wire.Batch{c.batch(t)}
	if n := parts[0].Parts; n < 2 {
		t.Fatalf("batch of %d parts, want it split to fit %d-byte frames", n, maxFrame)
	}
	for len(parts) < parts[0].Parts {
		parts = append(parts, c.batch(t))
	}
	return parts
}

// noBatch fails the test if ms holds a batch.
func noBatch(t *testing.T, ms []wire.Message) {
	t.Helper()
	for _, m := range ms {
		if m.Kind() != wire.KindHeartbeat {
			t.Errorf("unexpected %s frame %+v", m.Kind(), m)
		}
	}
}

func TestWorkerHelloThenProgress(t *testing.T) {
	t.Parallel()
	const cost = 2 * time.Millisecond
	c := startWorker(t, &Worker{ID: 3, Extractor: &fakeNER{cost: cost}, CacheSize: 100, FlushInterval: time.Hour})
	for seq := uint64(1); seq <= 3; seq++ {
		c.send(t, &wire.Post{Seq: seq, Publication: "BBC", Content: "Hello London"})
		// The one sent right after the post, not a tick that saw it done.
		hb := c.heartbeat(t, func(hb *wire.Heartbeat) bool { return hb.Done == seq && hb.PostMicros != 0 })
		if hb.PostMicros < cost.Microseconds() {
			t.Errorf("post %d: PostMicros = %d, want at least the extractor's %d", seq, hb.PostMicros, cost.Microseconds())
		}
		if hb.Draining || hb.RSS <= 0 || hb.CPUMillis < 0 {
			t.Errorf("post %d: heartbeat %+v, want not draining, RSS > 0, CPUMillis >= 0", seq, hb)
		}
	}
	c.stop(t)
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 3, Through: 3, Posts: 3, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 3, Entities: []wire.EntityCount{{Word: "Hello", Count: 3}, {Word: "London", Count: 3}}},
	}})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerFlushesAtCacheSize(t *testing.T) {
	t.Parallel()
	c := startWorker(t, &Worker{ID: 1, CacheSize: 3, FlushInterval: time.Hour})
	c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "London and Paris"})
	c.post(t, wire.Post{Seq: 2, Publication: " bbc ", Content: "London calling"})
	c.post(t, wire.Post{Seq: 3, Publication: "Reuters", Content: "from Berlin"})
	first := c.batch(t)
	checkBatch(t, first, wire.Batch{Parts: 1, Worker: 1, Through: 3, Posts: 3, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 2, Entities: []wire.EntityCount{{Word: "London", Count: 2}, {Word: "Paris", Count: 1}}},
		{Key: "reuters", Name: "Reuters", Articles: 1, Entities: []wire.EntityCount{{Word: "Berlin", Count: 1}}},
	}})
	c.post(t, wire.Post{Seq: 4, Publication: "Reuters", Content: "Rome"})
	c.post(t, wire.Post{Seq: 5, Publication: "AP", Content: "no entities here"})
	c.stop(t)
	second := c.batch(t)
	checkBatch(t, second, wire.Batch{Parts: 1, Worker: 1, Through: 5, Posts: 2, Publications: []wire.PubCount{
		{Key: "ap", Name: "AP", Articles: 1},
		{Key: "reuters", Name: "Reuters", Articles: 1, Entities: []wire.EntityCount{{Word: "Rome", Count: 1}}},
	}})
	if first.ID == second.ID {
		t.Errorf("two flushes share batch ID %s", first.ID)
	}
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerFlushesAtInterval(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	c := startWorker(t, &Worker{ID: 2, CacheSize: 100, FlushInterval: interval})
	for seq := uint64(1); seq <= 2; seq++ {
		sent := time.Now()
		c.post(t, wire.Post{Seq: seq, Publication: "AP", Content: "Oslo"})
		b := c.batch(t)
		if took := time.Since(sent); took < interval {
			t.Errorf("post %d flushed after %v, before the flush interval %v", seq, took, interval)
		}
		checkBatch(t, b, wire.Batch{Parts: 1, Worker: 2, Through: seq, Posts: 1, Publications: []wire.PubCount{
			{Key: "ap", Name: "AP", Articles: 1, Entities: []wire.EntityCount{{Word: "Oslo", Count: 1}}},
		}})
	}
	c.stop(t) // nothing held: no batch
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerFlushesAtStopKeepingTopN(t *testing.T) {
	t.Parallel()
	c := startWorker(t, &Worker{ID: 4, CacheSize: 100, FlushInterval: time.Hour, TopN: 2})
	c.post(t, wire.Post{Seq: 1, Publication: "Guardian", Content: "Alpha Alpha Beta Gamma"})
	c.post(t, wire.Post{Seq: 2, Publication: "Guardian", Content: "Alpha Gamma Beta Delta"})
	c.post(t, wire.Post{Seq: 3, Publication: "FT", Content: "Zeta"})
	c.stop(t)
	// Beta and Gamma tie on 2: the word order decides.
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 4, Through: 3, Posts: 3, Publications: []wire.PubCount{
		{Key: "ft", Name: "FT", Articles: 1, Entities: []wire.EntityCount{{Word: "Zeta", Count: 1}}},
		{Key: "guardian", Name: "Guardian", Articles: 2, Entities: []wire.EntityCount{{Word: "Alpha", Count: 3}, {Word: "Beta", Count: 2}}},
	}})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerQuarantinesFailedPost(t *testing.T) {
	t.Parallel()
	ext := &fakeNER{fail: "BOOM"}
	c := startWorker(t, &Worker{ID: 5, Extractor: ext, CacheSize: 100, FlushInterval: time.Hour})
	c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "London"})
	c.post(t, wire.Post{Seq: 2, Publication: "BBC", Content: "BOOM in Leeds", Attempts: 2})
	c.post(t, wire.Post{Seq: 3, Publication: "Sky", Content: "BOOM"})
	c.stop(t)
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 5, Through: 3, Posts: 3,
		Publications: []wire.PubCount{
			{Key: "bbc", Name: "BBC", Articles: 1, Entities: []wire.EntityCount{{Word: "London", Count: 1}}},
		},
		Dead: []wire.DeadLetter{
			{Publication: "BBC", Content: "BOOM in Leeds", Error: `fake NER: cannot read "BOOM in Leeds"`, Attempts: 3},
			{Publication: "Sky", Content: "BOOM", Error: `fake NER: cannot read "BOOM"`, Attempts: 1},
		},
	})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

// A keyed post (Post.Key set, as the Pub/Sub source does) is counted apart
// from the others, with --top-n applied to it alone; its dead letter
// carries its key.
func TestWorkerKeepsKeyedPostsApart(t *testing.T) {
	t.Parallel()
	ext := &fakeNER{fail: "BOOM"}
	c := startWorker(t, &Worker{ID: 5, Extractor: ext, CacheSize: 100, FlushInterval: time.Hour, TopN: 2})
	c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "London Leeds"})
	c.post(t, wire.Post{Seq: 2, Key: "m-1", Publication: "BBC", Content: "York York Leeds Hull Hull Bath"})
	c.post(t, wire.Post{Seq: 3, Key: "m-2", Publication: "Sky", Content: "BOOM", Attempts: 1})
	c.post(t, wire.Post{Seq: 4, Key: "a:77", Publication: "BBC", Content: "London"})
	c.stop(t)
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 5, Through: 4, Posts: 4,
		Publications: []wire.PubCount{
			{Key: "bbc", Name: "BBC", Articles: 1, Entities: []wire.EntityCount{{Word: "Leeds", Count: 1}, {Word: "London", Count: 1}}},
		},
		Dead: []wire.DeadLetter{{Key: "m-2", Publication: "Sky", Content: "BOOM", Error: `fake NER: cannot read "BOOM"`, Attempts: 2}},
		Keyed: []wire.KeyedCount{
			{Key: "m-1", Counts: wire.PubCount{Key: "bbc", Name: "BBC", Articles: 1,
				Entities: []wire.EntityCount{{Word: "Hull", Count: 2}, {Word: "York", Count: 2}}}},
			{Key: "a:77", Counts: wire.PubCount{Key: "bbc", Name: "BBC", Articles: 1,
				Entities: []wire.EntityCount{{Word: "London", Count: 1}}}},
		},
	})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

// A flush of keyed posts too large for one frame is split with every keyed
// entry whole, each in exactly one part.
func TestWorkerSplitsKeyedPostsWhole(t *testing.T) {
	t.Parallel()
	const maxFrame = 1024
	c := startWorker(t, &Worker{ID: 9, CacheSize: 100, FlushInterval: time.Hour, MaxFrame: maxFrame})
	want := map[string][]wire.EntityCount{}
	for seq := uint64(1); seq <= 12; seq++ {
		var words []string
		var ents []wire.EntityCount
		for i := range 10 {
			w := fmt.Sprintf("Entity%02d", int(seq)*3+i)
			words = append(words, w)
			ents = append(ents, wire.EntityCount{Word: w, Count: 1})
		}
		slices.SortFunc(ents, func(a, b wire.EntityCount) int { return strings.Compare(a.Word, b.Word) })
		key := fmt.Sprint("msg-", seq)
		want[key] = ents
		c.post(t, wire.Post{Seq: seq, Key: key, Publication: "alpha", Content: strings.Join(words, " ")})
	}
	c.stop(t)
	got := map[string][]wire.EntityCount{}
	for _, b := range c.splitBatch(t, maxFrame) {
		for _, k := range b.Keyed {
			if _, ok := got[k.Key]; ok {
				t.Errorf("key %s in two parts", k.Key)
			}
			got[k.Key] = k.Counts.Entities
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keyed entries across parts\n%v\nwant\n%v", got, want)
	}
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

func TestWorkerSIGTERMFlushesAndDrainsUntilStop(t *testing.T) {
	t.Parallel()
	c := startWorker(t, &Worker{ID: 6, CacheSize: 100, FlushInterval: time.Hour})
	for seq := uint64(1); seq <= 2; seq++ {
		if hb := c.post(t, wire.Post{Seq: seq, Publication: "BBC", Content: "Leeds"}); hb.Draining {
			t.Fatalf("heartbeat %+v draining before SIGTERM", hb)
		}
	}
	c.term <- syscall.SIGTERM
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 6, Through: 2, Posts: 2, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 2, Entities: []wire.EntityCount{{Word: "Leeds", Count: 2}}},
	}})
	c.heartbeat(t, func(hb *wire.Heartbeat) bool { return hb.Draining })

	// Still a worker: it takes posts until STOP.
	if hb := c.post(t, wire.Post{Seq: 3, Publication: "BBC", Content: "York"}); !hb.Draining {
		t.Errorf("heartbeat %+v after SIGTERM, want Draining", hb)
	}
	c.stop(t)
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 6, Through: 3, Posts: 1, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 1, Entities: []wire.EntityCount{{Word: "York", Count: 1}}},
	}})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerParentGoneFlushesNothing(t *testing.T) {
	t.Parallel()
	c := startWorker(t, &Worker{ID: 7, CacheSize: 100, FlushInterval: time.Hour})
	c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "Leeds"})
	c.post(t, wire.Post{Seq: 2, Publication: "BBC", Content: "York"})
	c.in.Close()
	if err := c.wait(t); !errors.Is(err, ErrParentGone) {
		t.Fatalf("Run after stdin EOF: %v, want ErrParentGone", err)
	}
	noBatch(t, c.rest(t))
}

func TestWorkerRefusesMalformedFrames(t *testing.T) {
	t.Parallel()
	cases := append(slices.Clip(malformedFrames), malformedFrame{"batch to a worker", mustMarshal(t, &wire.Batch{ID: "x", Parts: 1}),
		wire.ErrMalformed, "worker 8: wire: malformed frame: expected a post frame, got batch"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startWorker(t, &Worker{ID: 8, CacheSize: 100, FlushInterval: time.Hour})
			c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "Leeds"})
			c.sendRaw(t, tc.bytes)
			c.in.Close()
			err := c.wait(t)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Run: %v, want an error wrapping %v that says %q", err, tc.is, tc.says)
			}
		})
	}
}

func TestWorkerSplitsBatchOverMaxFrame(t *testing.T) {
	t.Parallel()
	const maxFrame = 1024
	ext := &fakeNER{fail: "BOOM"}
	c := startWorker(t, &Worker{ID: 9, Extractor: ext, CacheSize: 100, FlushInterval: time.Hour, MaxFrame: maxFrame})
	want := map[string]map[string]int64{} // publication key → word → count
	articles := map[string]int64{}
	seq := uint64(0)
	for _, pub := range []string{"alpha", "beta", "gamma"} {
		for post := range 4 {
			var words []string
			for i := range 20 {
				words = append(words, fmt.Sprintf("Entity%02d", post*20+i))
			}
			seq++
			c.post(t, wire.Post{Seq: seq, Publication: pub, Content: strings.Join(words, " ")})
			if want[pub] == nil {
				want[pub] = map[string]int64{}
			}
			for _, w := range words {
				want[pub][w]++
			}
			articles[pub]++
		}
	}
	seq++
	c.post(t, wire.Post{Seq: seq, Publication: "alpha", Content: "BOOM"})
	c.stop(t)

	got := map[string]map[string]int64{}
	gotArticles := map[string]int64{}
	enc := wire.NewEncoder(io.Discard, maxFrame)
	parts := c.splitBatch(t, maxFrame)
	first := parts[0]
	for i, b := range parts {
		if b.ID != first.ID || b.Part != i || b.Parts != first.Parts || b.Worker != 9 {
			t.Fatalf("part %d: ID %s part %d/%d worker %d, want ID %s part %d/%d worker 9",
				i, b.ID, b.Part, b.Parts, b.Worker, first.ID, i, first.Parts)
		}
		last := i == first.Parts-1
		if last && (b.Posts != int(seq) || b.Through != seq || len(b.Dead) != 1) {
			t.Errorf("last part: posts %d through %d dead %d, want %d, %d, 1", b.Posts, b.Through, len(b.Dead), seq, seq)
		}
		if !last && (b.Posts != 0 || b.Through != 0 || len(b.Dead) != 0) {
			t.Errorf("part %d: posts %d through %d dead %d, want only the last part to carry them", i, b.Posts, b.Through, len(b.Dead))
		}
		if _, err := enc.Marshal(b); err != nil {
			t.Errorf("part %d does not fit: %v", i, err)
		}
		for _, p := range b.Publications {
			gotArticles[p.Key] += p.Articles
			if got[p.Key] == nil {
				got[p.Key] = map[string]int64{}
			}
			for _, e := range p.Entities {
				got[p.Key][e.Word] += e.Count
			}
		}
	}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotArticles, articles) {
		t.Errorf("parts add up to articles %v entities %v,\nwant articles %v entities %v", gotArticles, got, articles, want)
	}
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
	noBatch(t, c.rest(t))
}

// TestWorkerHeartbeatsWhileExtracting: the ticker keeps reporting while a
// post is stuck in NER, with Done still at the last post finished, so the
// parent can tell a slow post from a dead worker.
func TestWorkerHeartbeatsWhileExtracting(t *testing.T) {
	t.Parallel()
	ext := &fakeNER{held: make(chan string, 1), release: make(chan struct{})}
	c := startWorker(t, &Worker{ID: 10, Extractor: ext, CacheSize: 100, FlushInterval: time.Hour, beatEvery: 20 * time.Millisecond})
	c.post(t, wire.Post{Seq: 1, Publication: "BBC", Content: "Leeds"})
	c.send(t, &wire.Post{Seq: 2, Publication: "BBC", Content: "HOLD York"})
	select {
	case <-ext.held:
	case <-time.After(waitFor):
		t.Fatal("post 2 never reached the extractor")
	}
	released := false
	defer func() {
		if !released {
			close(ext.release)
		}
	}()
	for range 3 {
		if hb := c.heartbeat(t, nil); hb.Done != 1 || hb.PostMicros != 0 {
			t.Errorf("heartbeat while post 2 is in NER: %+v, want Done 1 and no PostMicros", hb)
		}
	}
	close(ext.release)
	released = true
	c.heartbeat(t, func(hb *wire.Heartbeat) bool { return hb.Done == 2 })
	c.stop(t)
	checkBatch(t, c.batch(t), wire.Batch{Parts: 1, Worker: 10, Through: 2, Posts: 2, Publications: []wire.PubCount{
		{Key: "bbc", Name: "BBC", Articles: 2, Entities: []wire.EntityCount{{Word: "Leeds", Count: 1}, {Word: "York", Count: 1}}},
	}})
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}

// TestWorkerTicksDuringFlushes flushes after every post, with batches big
// enough that encoding one takes a while, until the heartbeat ticker has
// fired ticks times meanwhile: the ticker and the flush share the child's
// stdout, and every frame must still arrive whole (and -race must see no
// race).
func TestWorkerTicksDuringFlushes(t *testing.T) {
	t.Parallel()
	var words []string
	for i := range 1000 {
		words = append(words, fmt.Sprintf("Entity%04d", i))
	}
	content := strings.Join(words, " ")
	c := startWorker(t, &Worker{ID: 11, CacheSize: 1, FlushInterval: time.Hour, beatEvery: 10 * time.Millisecond})
	const ticks = 30
	ticked := 0
	deadline := time.Now().Add(waitFor)
	for seq := uint64(1); ticked < ticks; seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d ticks in %v, want %d", ticked, waitFor, ticks)
		}
		c.send(t, &wire.Post{Seq: seq, Publication: "BBC", Content: content})
	frames:
		for {
			select {
			case m, ok := <-c.frames:
				if !ok {
					t.Fatalf("after post %d the child's stdout ended: %v", seq, <-c.readErr)
				}
				switch m := m.(type) {
				case *wire.Heartbeat:
					if m.PostMicros == 0 {
						ticked++
					}
				case *wire.Batch:
					if m.Through != seq || len(m.Publications) != 1 || len(m.Publications[0].Entities) != len(words) {
						t.Fatalf("batch after post %d: through %d, %d publications", seq, m.Through, len(m.Publications))
					}
					break frames
				default:
					t.Fatalf("unexpected %s frame %+v", m.Kind(), m)
				}
			case <-time.After(waitFor):
				t.Fatalf("no batch for post %d within %v", seq, waitFor)
			}
		}
	}
	c.stop(t)
	if err := c.wait(t); err != nil {
		t.Fatalf("Run after STOP: %v, want nil", err)
	}
}
