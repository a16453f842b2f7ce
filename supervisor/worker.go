package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/wire"
)

// workerWindow is how many posts a worker may hold that it has not
// finished: enough to keep it busy between the parent's sends, small enough
// that the post queue, not the pipes, is where accepted posts wait, and
// that a stalled sink stops the feeding within a few posts.
const workerWindow = 16

// workerHost is what a worker incarnation reads and calls of the parent
// (the parent implements it; the unit tests a fake). All its methods are
// safe for concurrent use and, but for the two waits, return at once.
type workerHost interface {
	// waitForSink waits while the batch backlog is at its limit; it
	// reports false if ctx ended first.
	waitForSink(ctx context.Context) bool
	// takePost waits for the next post to send; ok is false once the
	// post queue is closed and empty, or when ctx ends.
	takePost(ctx context.Context) (post wire.Post, ok bool)
	// giveBack puts posts a worker held back in front of the post queue.
	giveBack(posts []wire.Post)
	// handOn gives a complete batch to the savers; covers are the spool
	// numbers of the posts it covers, keys the keys of its keyed posts.
	// It never blocks: the worker's stdout reader calls it.
	handOn(items []batchItem, covers []uint64, keys []string)
	// draining reports whether the run is draining: a worker is not
	// retired then, it is stopped.
	draining() bool
	// aborted reports whether the run was aborted: the post a killed
	// worker was on is not blamed for its death then.
	aborted() bool
	// observeNER records how long the NER of one post took.
	observeNER(d time.Duration)
}

// workerInc is one incarnation of a worker: the process and what the
// parent knows about the posts it was sent.
//
// Posts sent but not yet covered by a stored-bound batch are kept in held,
// in sequence order, so that if the process dies they can be given to
// another worker. A batch goes to the savers only once all its parts
// arrived, and the posts it covers leave held only after that: a crash at
// any point loses nothing and counts nothing twice.
type workerInc struct {
	host workerHost
	cfg  *config.Config // the limits: --worker-max-posts, --worker-max-rss, --max-attempts and the timeouts
	id   int
	pro  *process

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

func newWorkerInc(host workerHost, cfg *config.Config, id int) *workerInc {
	return &workerInc{host: host, cfg: cfg, id: id, credits: make(chan struct{}, workerWindow), retire: make(chan struct{}), progressAt: time.Now()}
}

// startWorker starts a worker incarnation for slot id.
func (p *parent) startWorker(id int) (incarnation, error) {
	w := newWorkerInc(p, &p.cfg, id)
	if _, err := p.launch(wire.RoleWorker, id, w); err != nil {
		return nil, err
	}
	p.children.watch(w)
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
	for {
		if !w.host.waitForSink(ctx) {
			return why(ctx, w.retire)
		}
		select {
		case w.credits <- struct{}{}:
		case <-ctx.Done():
			return why(ctx, w.retire)
		}
		post, ok := w.host.takePost(ctx)
		if !ok {
			<-w.credits
			return why(ctx, w.retire)
		}
		post.Seq = w.track(post)
		if err := w.pro.send(&post); err != nil {
			return feedDied // the post is held: finish gives it back
		}
		if w.cfg.WorkerMaxPosts > 0 && w.sent >= w.cfg.WorkerMaxPosts {
			w.askRetire(fmt.Sprintf("it processed --worker-max-posts %d posts", w.cfg.WorkerMaxPosts))
		}
	}
}

// The parent's side of workerHost.

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

func (p *parent) takePost(ctx context.Context) (wire.Post, bool) { return p.posts.Take(ctx) }
func (p *parent) giveBack(posts []wire.Post)                     { p.posts.Requeue(posts) }
func (p *parent) observeNER(d time.Duration)                     { p.metrics.nerSeconds.Observe(d.Seconds()) }

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
		w.parts = append(w.parts, item)
		if b.Part < b.Parts-1 {
			return nil
		}
		w.mu.Lock()
		cut := 0
		var covers []uint64
		var keys []string
		for cut < len(w.held) && w.held[cut].Seq <= b.Through {
			if s := w.held[cut].Spool; s != 0 {
				covers = append(covers, s)
			}
			if k := w.held[cut].Key; k != "" {
				keys = append(keys, k)
			}
			cut++
		}
		w.held = append([]wire.Post(nil), w.held[cut:]...)
		w.mu.Unlock()
		w.host.handOn(w.parts, covers, keys)
		w.parts = nil
		return nil
	}
	return fmt.Errorf("unexpected %s frame from a worker", f.Kind)
}

// heartbeat records a worker's progress, returns the window's credits for
// the posts it finished, and asks for a replacement when the worker wants
// one (SIGTERM from outside) or outgrew --worker-max-rss.
func (w *workerInc) heartbeat(hb *wire.Heartbeat) {
	w.pro.observe(hb)
	if hb.PostMicros > 0 {
		w.host.observeNER(time.Duration(hb.PostMicros) * time.Microsecond)
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
	case w.pro.stopping.Load() || w.host.draining():
	case hb.Draining:
		w.askRetire("it was sent SIGTERM")
	case w.cfg.WorkerMaxRSS > 0 && hb.RSS > int64(w.cfg.WorkerMaxRSS):
		w.askRetire(fmt.Sprintf("its resident memory %d MiB exceeds --worker-max-rss %s", hb.RSS>>20, &w.cfg.WorkerMaxRSS))
	}
}

// hung: silent past --heartbeat-timeout, or no progress on a post for
// --post-timeout.
func (w *workerInc) hung(now time.Time) string {
	if why := silent(w.pro, now, w.cfg.HeartbeatTimeout); why != "" {
		return why
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seq > w.done {
		if d := now.Sub(w.progressAt); d > w.cfg.PostTimeout {
			return fmt.Sprintf("no progress on post %d for %s (--post-timeout %s)", w.done+1, d.Round(time.Millisecond), w.cfg.PostTimeout)
		}
	}
	return ""
}

// silent says why a child is hung if it sent no frame for longer than
// --heartbeat-timeout, else "".
func silent(pro *process, now time.Time, timeout time.Duration) string {
	if d := pro.silentFor(now); d > timeout {
		return fmt.Sprintf("silent for %s (--heartbeat-timeout %s)", d.Round(time.Millisecond), timeout)
	}
	return ""
}

// finish gives the posts no batch covered back to the front of the queue.
// If the worker died while working on a post, that post's attempts grow,
// and at --max-attempts it is quarantined instead.
func (w *workerInc) finish(clean bool) (leftovers bool) {
	w.mu.Lock()
	left := w.held
	w.held = nil
	done := w.done
	w.mu.Unlock()
	blame := !clean && !w.host.aborted()
	if len(left) > 0 && blame {
		w.pro.log.Warn("giving its posts to another worker", "uncovered_posts", len(left))
	}
	back := make([]wire.Post, 0, len(left))
	suspect := true // the first post not finished is the one it was on
	for _, post := range left {
		if post.Seq > done && suspect && blame {
			suspect = false
			post.Attempts++
			if post.Attempts >= w.cfg.MaxAttempts {
				w.quarantine(post, fmt.Sprintf("the worker processing it died %d times; last: %v", post.Attempts, w.pro.exitError()))
				continue
			}
		}
		post.Seq = 0
		back = append(back, post)
	}
	w.host.giveBack(back)
	return len(left) > 0
}

// quarantine hands a post on as a dead letter, a batch of its own, instead
// of giving it to another worker. A keyed post's batch id is derived from
// its key, so that a message quarantined on two nodes is stored once.
func (w *workerInc) quarantine(post wire.Post, why string) {
	log := w.pro.log
	log.Error("post quarantined as a dead letter; it will not be retried", "publication", post.Publication,
		"attempts", post.Attempts, "why", why, "content_bytes", len(post.Content))
	b := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 1, Dead: []wire.DeadLetter{{
		Publication: post.Publication, Content: post.Content, Error: why, Attempts: post.Attempts}}}
	var keys []string
	if post.Key != "" {
		b.ID, keys = keyedBatchID("quarantine", post.Key), []string{post.Key}
	}
	raw, err := wire.NewEncoder(nil, 0).Marshal(&b)
	if err != nil {
		log.Error("cannot encode the dead letter; it is lost", "error", err)
		return
	}
	var covers []uint64
	if post.Spool != 0 {
		covers = []uint64{post.Spool}
	}
	w.host.handOn([]batchItem{{raw: raw, id: b.PartID(), posts: 1, dead: 1}}, covers, keys)
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
