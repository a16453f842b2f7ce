package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// workerWindow is how many posts a worker may hold that it has not
// finished: enough to keep it busy between the parent's sends, small enough
// that the post queue, not the pipes, is where accepted posts wait, and
// that a stalled sink stops the feeding within a few posts.
const workerWindow = 16

// workerInc is one incarnation of a worker: the process and what the
// parent knows about the posts it was sent.
//
// Posts sent but not yet covered by a stored-bound batch are kept in held,
// in sequence order, so that if the process dies they can be given to
// another worker. A batch goes to the savers only once all its parts
// arrived, and the posts it covers leave held only after that: a crash at
// any point loses nothing and counts nothing twice.
type workerInc struct {
	p   *parent
	id  int
	pro *process

	// credits holds a token for each post sent and not finished; the
	// feeder blocks on a full channel, the stdout reader takes tokens
	// back, never blocking.
	credits chan struct{}

	mu         sync.Mutex
	held       []wire.Post // sent, not covered by a batch, by Seq
	seq        uint64      // last sequence number sent
	done       uint64      // last sequence number the worker finished
	progressAt time.Time   // when done last advanced, or work arrived at an idle worker
	sent       int         // posts sent to this incarnation
	parts      []batchItem // parts of the batch being received (reader only)

	retire     chan struct{} // closed to ask the slot runner for a replacement
	retireOnce sync.Once
	why        string
}

// startWorker starts a worker incarnation for slot id.
func (p *parent) startWorker(id int) (incarnation, error) {
	w := &workerInc{p: p, id: id, credits: make(chan struct{}, workerWindow), retire: make(chan struct{}), progressAt: time.Now()}
	if _, err := p.launch(wire.RoleWorker, id, w); err != nil {
		return nil, err
	}
	p.watch(w)
	return w, nil
}

func (w *workerInc) proc() *process    { return w.pro }
func (w *workerInc) bind(pro *process) { w.pro = pro }

func (w *workerInc) inflight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held)
}

// askRetire asks the slot runner to replace this incarnation. Idempotent.
func (w *workerInc) askRetire(why string) {
	w.retireOnce.Do(func() {
		w.mu.Lock()
		w.why = why
		w.mu.Unlock()
		close(w.retire)
	})
}

func (w *workerInc) retireWhy() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.why
}

// feed sends posts from the queue while the batch backlog is below its
// limit and the worker has room in its window.
func (w *workerInc) feed(ctx context.Context) feedResult {
	ctx, stop := feeding(ctx, w.pro.exited, w.retire)
	defer stop()
	p := w.p
	for {
		if !p.waitForSink(ctx) {
			return why(ctx, w.retire)
		}
		select {
		case w.credits <- struct{}{}:
		case <-ctx.Done():
			return why(ctx, w.retire)
		}
		post, ok := p.posts.Take(ctx)
		if !ok {
			<-w.credits
			return why(ctx, w.retire)
		}
		post.Seq = w.track(post)
		if err := w.pro.send(&post); err != nil {
			return feedDied // the post is held: finish gives it back
		}
		if p.cfg.WorkerMaxPosts > 0 && w.sent >= p.cfg.WorkerMaxPosts {
			w.askRetire(fmt.Sprintf("it processed --worker-max-posts %d posts", p.cfg.WorkerMaxPosts))
		}
	}
}

// waitForSink waits while the batch backlog is at its limit: a sink that
// cannot keep up stops the feeding of workers, so that what piles up is
// bounded by what they already hold. It logs the start and end of each
// such episode once, and reports false if ctx ended first.
func (p *parent) waitForSink(ctx context.Context) bool {
	if p.batches.len() < p.batchLimit {
		return true
	}
	if !p.sinkBehind.Swap(true) {
		p.log.Warn("the sink is behind: workers are not fed until fewer batches wait", "waiting_batches", p.batches.len(), "limit", p.batchLimit)
	}
	if !p.batches.waitBelow(ctx, p.batchLimit) {
		return false
	}
	if p.sinkBehind.Swap(false) {
		p.log.Info("the sink caught up: feeding workers again")
	}
	return true
}

// track records a post about to be sent and returns its sequence number.
func (w *workerInc) track(post wire.Post) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seq == w.done {
		w.progressAt = time.Now() // an idle worker gets work: the clock starts now
	}
	w.seq++
	w.sent++
	post.Seq = w.seq
	w.held = append(w.held, post)
	return w.seq
}

// onFrame handles a frame from the worker's stdout. It runs on the reader
// goroutine and never blocks: heartbeats are recorded, complete batches
// pushed to the batch queue, which takes them whatever its length.
func (w *workerInc) onFrame(f wire.Frame) error {
	p := w.p
	switch f.Kind {
	case wire.KindHeartbeat:
		var hb wire.Heartbeat
		if err := f.Decode(&hb); err != nil {
			return err
		}
		w.heartbeat(&hb)
		return nil
	case wire.KindBatch:
		b, err := wire.PeekBatch(f.Payload) // routing needs the header only
		if err != nil {
			return err
		}
		item := batchItem{raw: bytes.Clone(f.Raw), id: b.PartID(), posts: b.Posts, dead: b.Dead,
			entities: b.Entities, docs: b.Publications + b.Entities}
		p.docs.Add(int64(item.docs))
		w.parts = append(w.parts, item)
		if b.Part < b.Parts-1 {
			return nil
		}
		w.mu.Lock()
		cut := 0
		var covers []uint64
		for cut < len(w.held) && w.held[cut].Seq <= b.Through {
			if s := w.held[cut].Spool; s != 0 {
				covers = append(covers, s)
			}
			cut++
		}
		w.held = append([]wire.Post(nil), w.held[cut:]...)
		w.mu.Unlock()
		p.handOn(w.parts, covers)
		w.parts = nil
		return nil
	}
	return fmt.Errorf("unexpected %s frame from a worker", f.Kind)
}

// heartbeat records a worker's progress, returns the window's credits for
// the posts it finished, and asks for a replacement when the worker wants
// one (SIGTERM from outside) or outgrew --worker-max-rss.
func (w *workerInc) heartbeat(hb *wire.Heartbeat) {
	p := w.p
	w.pro.observe(hb)
	if hb.PostMicros > 0 {
		p.metrics.nerSeconds.Observe(float64(hb.PostMicros) / 1e6)
	}
	w.mu.Lock()
	finished := 0
	if hb.Done > w.done {
		finished = int(hb.Done - w.done)
		w.done = hb.Done
		w.progressAt = time.Now()
	}
	w.mu.Unlock()
	for range finished {
		select {
		case <-w.credits:
		default:
		}
	}
	switch {
	case w.pro.stopping.Load() || p.draining.Load():
	case hb.Draining:
		w.askRetire("it was sent SIGTERM")
	case p.cfg.WorkerMaxRSS > 0 && hb.RSS > int64(p.cfg.WorkerMaxRSS):
		w.askRetire(fmt.Sprintf("its resident memory %d MiB exceeds --worker-max-rss %s", hb.RSS>>20, &p.cfg.WorkerMaxRSS))
	}
}

// hung: silent past --heartbeat-timeout, or no progress on a post for
// --post-timeout.
func (w *workerInc) hung(now time.Time) string {
	p := w.p
	if d := w.pro.silentFor(now); d > p.cfg.HeartbeatTimeout {
		return fmt.Sprintf("silent for %s (--heartbeat-timeout %s)", d.Round(time.Millisecond), p.cfg.HeartbeatTimeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seq > w.done {
		if d := now.Sub(w.progressAt); d > p.cfg.PostTimeout {
			return fmt.Sprintf("no progress on post %d for %s (--post-timeout %s)", w.done+1, d.Round(time.Millisecond), p.cfg.PostTimeout)
		}
	}
	return ""
}

// finish gives the posts no batch covered back to the front of the queue.
// If the worker died while working on a post, that post's attempts grow,
// and at --max-attempts it is quarantined instead.
func (w *workerInc) finish(clean bool) (leftovers bool) {
	p := w.p
	w.mu.Lock()
	left := w.held
	w.held = nil
	done := w.done
	w.mu.Unlock()
	if len(left) > 0 && !clean && !p.aborted() {
		w.pro.log.Warn("giving its posts to another worker", "uncovered_posts", len(left))
	}
	back := make([]wire.Post, 0, len(left))
	suspect := true // the first post not finished is the one it was on
	for _, post := range left {
		if post.Seq > done && suspect && !clean && !p.aborted() {
			suspect = false
			post.Attempts++
			if post.Attempts >= p.cfg.MaxAttempts {
				p.quarantine(post, fmt.Sprintf("the worker processing it died %d times; last: %v", post.Attempts, w.pro.exitError()))
				continue
			}
		}
		post.Seq = 0
		back = append(back, post)
	}
	p.posts.Requeue(back)
	return len(left) > 0
}

// quarantine stores a post as a dead letter instead of counting it.
func (p *parent) quarantine(post wire.Post, why string) {
	p.log.Error("post quarantined as a dead letter; it will not be retried", "publication", post.Publication,
		"attempts", post.Attempts, "why", why, "content_bytes", len(post.Content))
	p.metrics.deadLetter.Inc()
	b := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 1, Dead: []wire.DeadLetter{{
		Publication: post.Publication, Content: post.Content, Error: why, Attempts: post.Attempts}}}
	raw, err := wire.NewEncoder(nil, 0).Marshal(&b)
	if err != nil {
		p.log.Error("cannot encode the dead letter; it is lost", "error", err)
		return
	}
	var covers []uint64
	if post.Spool != 0 {
		covers = []uint64{post.Spool}
	}
	p.handOn([]batchItem{{raw: raw, id: b.PartID(), posts: 1, dead: 1}}, covers)
}

// feeding returns a context that ends when ctx does, the child exits, or
// it asks to retire, so that a feed loop blocked on a queue wakes up; stop
// releases it and waits for its watcher.
func feeding(ctx context.Context, exited, retire <-chan struct{}) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		select {
		case <-exited:
		case <-retire:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, func() { cancel(); <-watching }
}

// why says why a feed loop's wait came back empty.
func why(ctx context.Context, retire <-chan struct{}) feedResult {
	select {
	case <-retire:
		return feedRetire
	default:
	}
	if ctx.Err() != nil {
		return feedDied
	}
	return fedAll
}
