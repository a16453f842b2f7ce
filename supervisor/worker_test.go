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

// fakeWorkerHost is the parent as a worker incarnation sees it.
type fakeWorkerHost struct {
	posts chan wire.Post // takePost's; close it for a closed, empty queue

	mu          sync.Mutex
	given       []wire.Post // giveBack's
	handed      []handOff   // handOn's
	drainingNow bool
	abortedNow  bool
	ner         []time.Duration
}

type handOff struct {
	items  []batchItem
	covers []uint64
	keys   []string
}

func newFakeWorkerHost(posts ...wire.Post) *fakeWorkerHost {
	h := &fakeWorkerHost{posts: make(chan wire.Post, len(posts)+64)}
	for _, p := range posts {
		h.posts <- p
	}
	return h
}

func (h *fakeWorkerHost) waitForSink(ctx context.Context) bool { return ctx.Err() == nil }

func (h *fakeWorkerHost) takePost(ctx context.Context) (wire.Post, bool) {
	select {
	case p, ok := <-h.posts:
		return p, ok
	case <-ctx.Done():
		return wire.Post{}, false
	}
}

func (h *fakeWorkerHost) giveBack(posts []wire.Post) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.given = append(h.given, posts...)
}

func (h *fakeWorkerHost) handOn(items []batchItem, covers []uint64, keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.handed = append(h.handed, handOff{items, covers, keys})
}

func (h *fakeWorkerHost) draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drainingNow
}

func (h *fakeWorkerHost) aborted() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.abortedNow
}

func (h *fakeWorkerHost) observeNER(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ner = append(h.ner, d)
}

func (h *fakeWorkerHost) handOffs() []handOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]handOff(nil), h.handed...)
}

// testWorker is a worker incarnation on a fake process, with cfg's limits
// (config.Default's where edit leaves them).
func testWorker(t *testing.T, host workerHost, edit func(*config.Config)) (*workerInc, *fakeOS) {
	t.Helper()
	cfg := config.Default()
	if edit != nil {
		edit(&cfg)
	}
	w := newWorkerInc(host, &cfg, 0)
	pro, fos := newFakeProcess(t, wire.RoleWorker, 0)
	w.bind(pro)
	return w, fos
}

// sendPosts tracks n posts as feed does, their spool numbers 101, 102…
func sendPosts(w *workerInc, n int) {
	for i := range n {
		w.track(wire.Post{Publication: "p", Content: "post " + string(rune('a'+i)), Spool: uint64(101 + i)})
	}
}

// batchFrame is a worker's batch part covering the posts through seq.
func batchFrame(t *testing.T, id string, part, parts int, through uint64, posts int) wire.Frame {
	t.Helper()
	return frameOf(t, &wire.Batch{ID: id, Part: part, Parts: parts, Through: through, Posts: posts,
		Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: int64(posts), Entities: []wire.EntityCount{{Word: "w", Count: 1}}}}})
}

// A batch goes to the savers only once its last part arrived, with the
// spool numbers of the posts it covers; those posts leave the worker's
// hands then, and not before.
func TestWorkerHandsOnCompleteBatches(t *testing.T) {
	host := newFakeWorkerHost()
	w, _ := testWorker(t, host, nil)
	sendPosts(w, 4)
	if err := w.onFrame(batchFrame(t, "b1", 0, 2, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if got := host.handOffs(); len(got) != 0 || w.inflight() != 4 {
		t.Fatalf("after the first of two parts: %d hand-offs, %d posts held; want 0 and 4", len(got), w.inflight())
	}
	if err := w.onFrame(batchFrame(t, "b1", 1, 2, 3, 3)); err != nil {
		t.Fatal(err)
	}
	got := host.handOffs()
	if len(got) != 1 || len(got[0].items) != 2 || got[0].items[0].id != "b1/0" || got[0].items[1].id != "b1/1" || got[0].items[1].posts != 3 {
		t.Fatalf("hand-offs %+v; want one batch of parts b1/0 and b1/1 covering 3 posts", got)
	}
	if c := got[0].covers; len(c) != 3 || c[0] != 101 || c[2] != 103 {
		t.Errorf("covers %v, want the spool numbers 101..103", c)
	}
	if n := w.inflight(); n != 1 {
		t.Errorf("%d posts held after a batch covered 3 of 4, want 1", n)
	}
	if err := w.onFrame(frameOf(t, &wire.Ack{ID: "x"})); err == nil {
		t.Error("an ack from a worker was taken: want a protocol error")
	}
}

// A worker that dies gives back every post no batch covered, in order and
// with their sequence numbers cleared; the first one it had not finished
// (the one it was on) gets an attempt more.
func TestWorkerFinishGivesBackWhatNoBatchCovers(t *testing.T) {
	host := newFakeWorkerHost()
	w, fos := testWorker(t, host, func(c *config.Config) { c.MaxAttempts = 3 })
	sendPosts(w, 4)
	w.heartbeat(&wire.Heartbeat{Done: 2})
	if err := w.onFrame(batchFrame(t, "b1", 0, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	fos.exit(errors.New("exit status 3"))
	if leftovers := w.finish(false); !leftovers {
		t.Fatal("finish reported no leftovers with 3 posts uncovered")
	}
	if len(host.given) != 3 {
		t.Fatalf("given back %d posts, want 3: %+v", len(host.given), host.given)
	}
	for i, p := range host.given {
		wantAttempts := 0
		if p.Spool == 103 { // seq 3: the first not finished (done was 2)
			wantAttempts = 1
		}
		if p.Spool != uint64(102+i) || p.Seq != 0 || p.Attempts != wantAttempts {
			t.Errorf("given back %+v; want spool %d, seq 0, attempts %d", p, 102+i, wantAttempts)
		}
	}
	if n := w.inflight(); n != 0 {
		t.Errorf("%d posts still held after finish", n)
	}
}

// At --max-attempts the post the worker died on is quarantined: handed on
// as a dead letter of its own, covering its spool number, never given to
// another worker.
func TestWorkerQuarantinesAtMaxAttempts(t *testing.T) {
	host := newFakeWorkerHost()
	w, fos := testWorker(t, host, func(c *config.Config) { c.MaxAttempts = 2 })
	w.track(wire.Post{Publication: "p", Content: "poison", Spool: 7, Attempts: 1})
	w.track(wire.Post{Publication: "p", Content: "innocent", Spool: 8})
	fos.exit(errors.New("signal: segmentation fault"))
	w.finish(false)
	if len(host.given) != 1 || host.given[0].Content != "innocent" || host.given[0].Attempts != 0 {
		t.Fatalf("given back %+v; want only the innocent post, not blamed", host.given)
	}
	got := host.handOffs()
	if len(got) != 1 || len(got[0].items) != 1 || len(got[0].covers) != 1 || got[0].covers[0] != 7 {
		t.Fatalf("hand-offs %+v; want one dead-letter batch covering spool number 7", got)
	}
	it := got[0].items[0]
	f, err := wire.ParseFrame(it.raw)
	if err != nil {
		t.Fatal(err)
	}
	var b wire.Batch
	if err := f.Decode(&b); err != nil {
		t.Fatal(err)
	}
	if it.posts != 1 || it.dead != 1 || len(b.Dead) != 1 || b.Dead[0].Content != "poison" || b.Dead[0].Attempts != 2 ||
		!strings.Contains(b.Dead[0].Error, "died 2 times") || !strings.Contains(b.Dead[0].Error, "segmentation fault") {
		t.Errorf("dead letter %+v (item posts %d dead %d)", b.Dead, it.posts, it.dead)
	}
}

// Nobody is blamed when the worker exited cleanly (STOP) or the run was
// aborted (the parent killed everything): posts go back as they were.
func TestWorkerFinishBlamesNobodyOnACleanExitOrAnAbort(t *testing.T) {
	for _, tc := range []struct {
		name           string
		clean, aborted bool
	}{{"clean exit", true, false}, {"run aborted", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			host := newFakeWorkerHost()
			host.abortedNow = tc.aborted
			w, fos := testWorker(t, host, func(c *config.Config) { c.MaxAttempts = 1 })
			sendPosts(w, 2)
			fos.exit(nil)
			w.finish(tc.clean)
			if len(host.given) != 2 || host.given[0].Attempts != 0 || len(host.handOffs()) != 0 {
				t.Errorf("given back %+v, %d hand-offs; want both posts back unblamed, no dead letter", host.given, len(host.handOffs()))
			}
		})
	}
}

// A heartbeat returns the window's credits for the posts finished and
// records the NER time; the worker asks to be retired when it was sent
// SIGTERM or outgrew --worker-max-rss, but not while the run drains.
func TestWorkerHeartbeatRules(t *testing.T) {
	host := newFakeWorkerHost()
	w, _ := testWorker(t, host, func(c *config.Config) { c.WorkerMaxRSS = 100 << 20 })
	sendPosts(w, 3)
	for range 3 {
		w.credits <- struct{}{}
	}
	w.heartbeat(&wire.Heartbeat{Done: 2, PostMicros: 1500, RSS: 50 << 20})
	if n := len(w.credits); n != 1 {
		t.Errorf("%d credits held after 2 of 3 posts finished, want 1", n)
	}
	if len(host.ner) != 1 || host.ner[0] != 1500*time.Microsecond {
		t.Errorf("NER times %v, want 1.5ms", host.ner)
	}
	if w.pro.rss.Load() != 50<<20 {
		t.Errorf("rss %d not recorded", w.pro.rss.Load())
	}
	select {
	case <-w.retire:
		t.Fatal("retired under its limits")
	default:
	}

	host.drainingNow = true
	w.heartbeat(&wire.Heartbeat{Done: 2, RSS: 200 << 20, Draining: true})
	select {
	case <-w.retire:
		t.Fatal("retired while the run drains")
	default:
	}

	host.drainingNow = false
	w.heartbeat(&wire.Heartbeat{Done: 3, RSS: 200 << 20})
	select {
	case <-w.retire:
	default:
		t.Fatal("not retired over --worker-max-rss")
	}
	if why := w.retireWhy(); !strings.Contains(why, "--worker-max-rss") {
		t.Errorf("retired because %q, want --worker-max-rss named", why)
	}

	w2, _ := testWorker(t, host, nil)
	w2.heartbeat(&wire.Heartbeat{Draining: true})
	if why := w2.retireWhy(); why != "it was sent SIGTERM" {
		t.Errorf("a worker sent SIGTERM: retire reason %q", why)
	}
}

// Hung is silent past --heartbeat-timeout, or holding a post it makes no
// progress on for --post-timeout; an idle worker is never hung for want of
// progress.
func TestWorkerHangRules(t *testing.T) {
	host := newFakeWorkerHost()
	w, _ := testWorker(t, host, func(c *config.Config) { c.HeartbeatTimeout, c.PostTimeout = 10*time.Second, 30*time.Second })
	now := time.Now()
	if why := w.hung(now.Add(time.Minute)); !strings.Contains(why, "--heartbeat-timeout") {
		t.Errorf("silent a minute: hung %q, want --heartbeat-timeout", why)
	}
	w.pro.lastFrame.Store(now.Add(time.Hour).UnixNano()) // it keeps beating
	if why := w.hung(now.Add(time.Hour)); why != "" {
		t.Errorf("idle and beating: hung %q", why)
	}
	sendPosts(w, 1)
	if why := w.hung(now.Add(time.Hour)); !strings.Contains(why, "no progress on post 1") || !strings.Contains(why, "--post-timeout") {
		t.Errorf("beating, stuck on a post an hour: hung %q", why)
	}
	w.heartbeat(&wire.Heartbeat{Done: 1})
	if why := w.hung(time.Now()); why != "" {
		t.Errorf("after finishing its post: hung %q", why)
	}
}

// feed sends posts with their sequence numbers, at most workerWindow
// unfinished at a time, and stops when the queue is closed and empty.
func TestWorkerFeedKeepsItsWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var posts []wire.Post
		for range workerWindow + 4 {
			posts = append(posts, wire.Post{Publication: "p", Content: "c"})
		}
		host := newFakeWorkerHost(posts...)
		w, fos := testWorker(t, host, nil)
		result := make(chan feedResult, 1)
		go func() { result <- w.feed(context.Background()) }()
		synctest.Wait()
		if n := len(fos.frames(t)); n != workerWindow {
			t.Fatalf("%d posts sent before any finished, want the window, %d", n, workerWindow)
		}
		w.heartbeat(&wire.Heartbeat{Done: 4})
		synctest.Wait()
		frames := fos.frames(t)
		if len(frames) != workerWindow+4 {
			t.Fatalf("%d posts sent after 4 finished, want %d", len(frames), workerWindow+4)
		}
		var last wire.Post
		if err := frames[len(frames)-1].Decode(&last); err != nil || last.Seq != workerWindow+4 {
			t.Fatalf("last post sent: %+v (%v), want sequence number %d", last, err, workerWindow+4)
		}
		w.heartbeat(&wire.Heartbeat{Done: workerWindow + 4}) // room again: feed finds the queue closed
		close(host.posts)
		synctest.Wait()
		if r := <-result; r != fedAll {
			t.Fatalf("feed = %d after the queue closed, want fedAll", r)
		}
	})
}

// feed asks for a replacement after --worker-max-posts, and reports a
// process that died.
func TestWorkerFeedRetiresAndDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		post := wire.Post{Publication: "p", Content: "c"}
		host := newFakeWorkerHost(post, post, post)
		w, _ := testWorker(t, host, func(c *config.Config) { c.WorkerMaxPosts = 2 })
		if r := w.feed(context.Background()); r != feedRetire {
			t.Fatalf("feed = %d after --worker-max-posts 2, want feedRetire", r)
		}
		// It may be sent one more while its feeding ends: the replacement
		// is started first, and this one finishes what it holds on STOP.
		if w.sent < 2 || !strings.Contains(w.retireWhy(), "--worker-max-posts 2") {
			t.Errorf("sent %d, retired because %q", w.sent, w.retireWhy())
		}

		w, fos := testWorker(t, newFakeWorkerHost(), nil)
		result := make(chan feedResult, 1)
		go func() { result <- w.feed(context.Background()) }()
		synctest.Wait()
		fos.exit(errors.New("signal: killed"))
		synctest.Wait()
		if r := <-result; r != feedDied {
			t.Fatalf("feed = %d after the process died, want feedDied", r)
		}
	})
}
