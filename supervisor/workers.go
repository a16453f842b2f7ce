package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// workerProc is one incarnation of a worker: the process and what the
// parent knows about the posts it was sent.
//
// Posts sent but not yet covered by a batch are kept in inflight, in
// sequence order, so that if the process dies they can be given to another
// worker. A batch is forwarded to the savers only once all its parts
// arrived, and the posts it covers are dropped from inflight only after
// that: a crash at any point loses nothing and counts nothing twice.
type workerProc struct {
	*process
	id int

	mu         sync.Mutex
	inflight   []sentPost
	seq        uint64    // last sequence number sent
	done       uint64    // last sequence number the worker finished
	progressAt time.Time // when done last advanced, or work arrived at an idle worker
	lastFrame  time.Time
	sent       int         // posts sent to this incarnation
	parts      []batchItem // parts of the batch being received

	retire     chan struct{} // closed to ask the slot runner for a replacement
	retireOnce sync.Once
	retireWhy  string
}

type sentPost struct {
	seq  uint64
	post wire.Post
}

func newWorkerProc(id int) *workerProc {
	now := time.Now()
	return &workerProc{id: id, retire: make(chan struct{}), progressAt: now, lastFrame: now}
}

// askRetire asks the slot runner to replace this incarnation. Idempotent.
func (w *workerProc) askRetire(why string) {
	w.retireOnce.Do(func() {
		w.mu.Lock()
		w.retireWhy = why
		w.mu.Unlock()
		close(w.retire)
	})
}

// track records a post about to be sent and returns its sequence number.
func (w *workerProc) track(p wire.Post) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seq == w.done {
		w.progressAt = time.Now() // an idle worker gets work: the clock starts now
	}
	w.seq++
	w.sent++
	w.inflight = append(w.inflight, sentPost{seq: w.seq, post: p})
	return w.seq
}

// holding is the number of posts sent that no batch covers yet.
func (w *workerProc) holding() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// takeLeftovers empties inflight after the process exited. suspect is the
// post it was working on (the first one not finished), if any.
func (w *workerProc) takeLeftovers() (left []sentPost, suspect int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	left, w.inflight = w.inflight, nil
	suspect = -1
	for i, sp := range left {
		if sp.seq > w.done {
			suspect = i
			break
		}
	}
	return left, suspect
}

// onWorkerFrame runs in the worker's stdout reader for every frame after
// the handshake.
func (r *run) onWorkerFrame(w *workerProc) func(*process, wire.Frame) error {
	return func(p *process, f wire.Frame) error {
		now := time.Now()
		w.mu.Lock()
		w.lastFrame = now
		w.mu.Unlock()
		switch f.Kind {
		case wire.KindHeartbeat:
			var hb wire.Heartbeat
			if err := f.Decode(&hb); err != nil {
				return err
			}
			w.mu.Lock()
			if hb.Done > w.done {
				w.done = hb.Done
				w.progressAt = now
			}
			w.mu.Unlock()
			r.observeChild(p, hb)
			switch stopping, _ := p.state(); {
			case stopping || r.draining.Load():
			case hb.Draining:
				w.askRetire("it was sent SIGTERM")
			case r.cfg.WorkerMaxRSS > 0 && hb.RSS > int64(r.cfg.WorkerMaxRSS):
				w.askRetire(fmt.Sprintf("its resident memory %d MiB exceeds --worker-max-rss %s", hb.RSS>>20, &r.cfg.WorkerMaxRSS))
			}
			return nil
		case wire.KindBatch:
			b, err := wire.PeekBatch(f.Payload) // routing needs the header only
			if err != nil {
				return err
			}
			if r.summary != nil {
				var full wire.Batch
				if err := f.Decode(&full); err != nil {
					return err
				}
				r.summary.add(&full)
			}
			item := batchItem{raw: bytes.Clone(f.Raw), id: b.PartID(), posts: b.Posts, dead: b.Dead,
				entities: b.Entities, docs: b.Publications + b.Entities}
			r.docs.Add(int64(item.docs))
			w.parts = append(w.parts, item) // only this reader touches parts
			if b.Part < b.Parts-1 {
				return nil
			}
			parts := w.parts
			w.parts = nil
			for _, it := range parts {
				if err := r.batches.Put(r.ctx, it); err != nil {
					return nil // aborted: the inflight posts stay uncovered and are reported
				}
			}
			w.mu.Lock()
			cut := 0
			for cut < len(w.inflight) && w.inflight[cut].seq <= b.Through {
				cut++
			}
			w.inflight = append([]sentPost(nil), w.inflight[cut:]...)
			w.mu.Unlock()
			return nil
		}
		return fmt.Errorf("unexpected %s frame from a worker", f.Kind)
	}
}

// runWorker owns worker slot id for the whole run: it starts the worker,
// feeds it posts, restarts it when it dies, replaces it when it asks to
// retire, and returns once the post queue is closed and drained and the
// last incarnation exited cleanly, or when the run is aborted or the
// workers' restart budget is spent.
func (r *run) runWorker(id int, first *workerProc) {
	var pace backoff
	next := first
	for {
		w := next
		next = nil
		if w == nil {
			var err error
			if w, err = r.startWorker(id); err != nil {
				if !r.restartAllowed(wire.RoleWorker, id, reasonStartFailed, err) || !pace.wait(r.ctx, 0) {
					return
				}
				continue
			}
		}
		r.setCurrent(wire.RoleWorker, id, w.process, w.holding)
		started := time.Now()
		switch r.feedWorker(w) {
		case fedAll:
			w.stop("drain")
			<-w.exited
			if r.finishWorker(w) {
				return
			}
		case feedRetire:
			w.mu.Lock()
			why := w.retireWhy
			w.mu.Unlock()
			w.log.Info("retiring worker: starting a replacement first", "why", why)
			repl, err := r.startWorker(id)
			r.retiring.Go(func() {
				w.stop("retire")
				<-w.exited
				r.finishWorker(w)
			})
			if err == nil {
				r.metrics.restarts.WithLabelValues(string(wire.RoleWorker), reasonRetired).Inc()
				next = repl
				continue
			}
			w.log.Error("could not start a replacement; stopped the worker anyway", "error", err)
			if !r.restartAllowed(wire.RoleWorker, id, reasonStartFailed, err) || !pace.wait(r.ctx, 0) {
				return
			}
			continue
		case feedDied:
			<-w.exited
			r.finishWorker(w)
		}
		// The incarnation ended badly: restart it, within the budget.
		if !r.restartAllowed(wire.RoleWorker, id, deathReason(w.process), r.exitError(w.process)) || !pace.wait(r.ctx, time.Since(started)) {
			return
		}
	}
}

type feedResult int

const (
	fedAll     feedResult = iota // the queue is closed and empty
	feedRetire                   // the worker asked to be replaced
	feedDied                     // the worker exited or the run was aborted
)

// feeding returns a context that ends when the run is aborted, the child
// exits, or it asks to retire, so that a feed loop blocked on a queue wakes
// up; stop releases it and waits for its watcher.
func (r *run) feeding(exited, retire <-chan struct{}) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(r.ctx)
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

// why says why a feed loop's Take came back empty.
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

// feedWorker sends posts from the queue to w until one of feedResult
// happens.
func (r *run) feedWorker(w *workerProc) feedResult {
	ctx, stop := r.feeding(w.exited, w.retire)
	defer stop()
	for {
		post, ok := r.posts.Take(ctx)
		if !ok {
			return why(ctx, w.retire)
		}
		seq := w.track(post)
		if err := w.send(&wire.Post{Seq: seq, Publication: post.Publication, Content: post.Content}); err != nil {
			return feedDied // the post is in inflight: finishWorker gives it back
		}
		if r.cfg.WorkerMaxPosts > 0 && w.sent >= r.cfg.WorkerMaxPosts {
			w.askRetire(fmt.Sprintf("it processed --worker-max-posts %d posts", r.cfg.WorkerMaxPosts))
		}
	}
}

// finishWorker handles an exited worker: posts it held that no batch
// covered go back to the front of the queue; if it died while working on a
// post, that post's attempts grow, and at --max-attempts it is quarantined.
// It reports whether the exit was clean (after STOP, status 0).
func (r *run) finishWorker(w *workerProc) (clean bool) {
	stopping, killReason := w.state()
	clean = stopping && killReason == "" && w.err == nil
	left, suspect := w.takeLeftovers()
	if !clean && !r.aborted() {
		w.log.Error("worker died", "status", r.exitError(w.process), "uncovered_posts", len(left))
	}
	var back []wire.Post
	for i, sp := range left {
		if i == suspect && !clean && !r.aborted() {
			sp.post.Attempts++
			if sp.post.Attempts >= r.cfg.MaxAttempts {
				r.quarantine(sp.post, fmt.Sprintf("the worker processing it died %d times; last: %v", sp.post.Attempts, r.exitError(w.process)))
				continue
			}
		}
		back = append(back, sp.post)
	}
	r.posts.Requeue(back)
	return clean && len(left) == 0
}

// startWorker starts a worker incarnation for slot id.
func (r *run) startWorker(id int) (*workerProc, error) {
	if r.aborted() {
		return nil, errors.New("not starting a worker: the parent is shutting down")
	}
	w := newWorkerProc(id)
	p, err := startProcess(r.exe, r.cfg.ChildArgs(wire.RoleWorker, id), wire.RoleWorker, id, r.log, r.onWorkerFrame(w))
	if err != nil {
		return nil, err
	}
	w.process = p
	r.watch(w)
	return w, nil
}
