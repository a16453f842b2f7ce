// Package supervisor is the ingest parent: it starts worker and saver child
// processes, feeds them posts from HTTP or a file, routes batches from
// workers to savers, restarts children that die or hang without losing or
// double-counting anything, and drains everything in order on shutdown.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/internal/sdnotify"
	"github.com/ingest-dev/ingest/queue"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// ErrDrainIncomplete is returned when a shutdown ended before every
// accepted post was stored: a second signal, --drain-timeout, or children
// that kept failing.
var ErrDrainIncomplete = errors.New("drain incomplete")

// Options are what Run needs besides the config.
type Options struct {
	Log        hclog.Logger
	Signals    <-chan os.Signal // SIGTERM/SIGINT: the first drains, the second kills
	Stdout     io.Writer        // where --input's summary is printed
	Executable string           // the binary to re-exec for children; "" = os.Executable()
}

type run struct {
	cfg  config.Config
	opts Options
	log  hclog.Logger
	exe  string

	// ctx ends when the run is aborted (children killed): every wait on a
	// queue or a child watches it.
	ctx    context.Context
	cancel context.CancelFunc

	posts   *queue.Queue[wire.Post] // accepted posts → workers (dead workers' posts come back in front)
	batches *queue.Queue[batchItem] // complete batches → savers (unacknowledged ones come back in front)
	store   sink.Sink               // the parent's own handle: readiness and reads
	slots   []*slot
	budgets map[wire.Role]*budget
	metrics *metrics
	summary *summary // --input only

	fatal    chan error // the first failure that ends the run
	draining atomic.Bool
	retiring sync.WaitGroup // old incarnations being stopped after their replacement started

	mu       sync.Mutex
	storeErr error // the last batch the sink refused, until one is stored again
	watched  map[watched]struct{}

	stored, dead, skipped atomic.Int64
	commits, writes       atomic.Int64 // the sink's work, from the savers' acks
	docs                  atomic.Int64 // documents in the batches: the original's one RPC each
}

// Run is the parent's whole life: start children, serve, drain on the
// first signal (or at the end of --input), and return nil only if every
// accepted post was stored.
func Run(cfg config.Config, opts Options) error {
	if cfg.Replay != "" {
		return Replay(cfg, opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &run{
		cfg: cfg, opts: opts, log: opts.Log,
		ctx: ctx, cancel: cancel,
		posts:   queue.New[wire.Post](cfg.QueueSize),
		batches: queue.New[batchItem](max(4, 2*cfg.Savers)),
		budgets: map[wire.Role]*budget{
			wire.RoleWorker: {max: cfg.MaxRestarts, window: cfg.RestartWindow},
			wire.RoleSaver:  {max: cfg.MaxRestarts, window: cfg.RestartWindow},
		},
		fatal:   make(chan error, 1),
		watched: make(map[watched]struct{}),
	}
	r.metrics = newMetrics(r)
	for i := range cfg.Workers {
		r.slots = append(r.slots, &slot{role: wire.RoleWorker, id: i, state: "starting"})
	}
	for i := range cfg.Savers {
		r.slots = append(r.slots, &slot{role: wire.RoleSaver, id: i, state: "starting"})
	}
	r.exe = opts.Executable
	if r.exe == "" {
		var err error
		if r.exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find own executable to start children: %w", err)
		}
	}
	if err := r.openSink(); err != nil {
		return err
	}
	defer r.store.Close()

	var src *input.Reader
	var ln net.Listener
	if cfg.Input != "" {
		var err error
		if src, err = input.Open(cfg.Input); err != nil {
			return err
		}
		defer src.Close()
		r.summary = newSummary()
	} else {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("--listen %s: %w: pick a free port", cfg.Listen, err)
		}
		defer ln.Close()
	}

	start := time.Now()
	workers, savers, err := r.startAll()
	if err != nil {
		return err
	}

	watchdogDone := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { r.watchdog(watchdogDone) })
	var workerRunners, saverRunners sync.WaitGroup
	for i, w := range workers {
		workerRunners.Go(func() { r.runWorker(i, w) })
	}
	for i, s := range savers {
		saverRunners.Go(func() { r.runSaver(i, s) })
	}
	// Savers stop once no worker can produce another batch.
	bg.Go(func() {
		workerRunners.Wait()
		r.retiring.Wait()
		r.batches.Close()
	})

	handler, h := newHTTPHandler(r.httpDeps())
	r.metrics.registerWriteAPI(h)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: r.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	served := make(chan error, 1)
	fed := make(chan error, 1)
	if ln != nil {
		bg.Go(func() { served <- srv.Serve(ln) })
		r.log.Info("listening", "addr", "http://"+ln.Addr().String(), "workers", cfg.Workers, "savers", cfg.Savers, "sink", cfg.Sink)
	} else {
		bg.Go(func() { fed <- r.feed(src) })
		r.log.Info("reading", "input", cfg.Input, "format", src.Format(), "workers", cfg.Workers, "savers", cfg.Savers, "sink", cfg.Sink)
	}

	if _, err := sdnotify.Notify("READY=1"); err != nil {
		r.log.Warn("could not tell systemd the service is ready", "error", err)
	}

	// The drain deadline runs from a signal or a failure. The end of
	// --input is not a shutdown: the whole file is processed, however long
	// that takes, unless a signal arrives.
	var deadline *time.Timer
	var deadlineC <-chan time.Time
	arm := func() {
		if deadline == nil {
			deadline = time.NewTimer(cfg.DrainTimeout)
			deadlineC = deadline.C
		}
	}
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()

	var failure error
	select {
	case sig := <-opts.Signals:
		arm()
		r.log.Info("signal received: draining; a second signal kills the children", "signal", sig, "drain_timeout", cfg.DrainTimeout)
	case err := <-fed:
		if err != nil {
			arm()
			failure = err
			r.log.Error("reading input failed; draining what was read", "error", err)
		}
	case err := <-r.fatal:
		arm()
		failure = err
		r.log.Error("giving up: draining what can be stored, then exiting non-zero", "error", err)
	case err := <-served:
		arm()
		failure = fmt.Errorf("http server: %w", err)
		r.log.Error("http server failed; draining", "error", err)
	}

	// Order: the edge refuses new posts; the queue drains through the
	// workers, each sent STOP after its last post; they flush and exit;
	// their batches reach the savers; the savers get STOP once every worker
	// exited and every batch was acknowledged.
	r.draining.Store(true)
	sdnotify.Notify("STOPPING=1")
	if ln != nil {
		h.SetDraining()
	}
	r.posts.Close()
	drained := make(chan struct{})
	go func() {
		workerRunners.Wait()
		saverRunners.Wait()
		r.retiring.Wait()
		close(drained)
	}()
	killed := false
	kill := func(why string, args ...any) {
		if !killed {
			r.log.Error(why, args...)
			r.killAll()
			killed = true
		}
	}
wait:
	for {
		select {
		case <-drained:
			break wait
		case err := <-r.fatal:
			arm()
			failure = errors.Join(failure, err)
			r.log.Error("giving up during the drain", "error", err)
		case err := <-fed:
			if err != nil {
				arm()
				failure = errors.Join(failure, err)
			}
		case sig := <-opts.Signals:
			if deadline == nil {
				arm()
				r.log.Info("signal received: finishing what was read, then exiting; a second signal kills the children",
					"signal", sig, "drain_timeout", cfg.DrainTimeout)
				continue
			}
			kill("second signal: killing the children now", "signal", sig)
		case <-deadlineC:
			kill("--drain-timeout expired: killing the children", "drain_timeout", cfg.DrainTimeout)
		}
	}
	close(watchdogDone)
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutdown)
	cancelShutdown()
	r.cancel()
	bg.Wait()
	for len(r.fatal) > 0 {
		failure = errors.Join(failure, <-r.fatal)
	}

	accepted := int64(r.posts.Accepted())
	stored, dead := r.stored.Load(), r.dead.Load()
	notStored := accepted - stored - dead
	spilled, err := r.spill()
	failure = errors.Join(failure, err)
	elapsed := time.Since(start)
	args := []any{"accepted", accepted, "stored", stored, "dead_lettered", dead, "not_stored", notStored,
		"elapsed", elapsed.Round(time.Millisecond), "sink", cfg.Sink,
		"sink_commits", r.commits.Load(), "sink_writes", r.writes.Load(), "one_rpc_per_document", r.docs.Load()}
	if spilled != "" {
		args = append(args, "spilled", spilled)
	}
	if r.summary != nil {
		r.summary.print(opts.Stdout, cfg.Input, accepted, stored, dead, r.skipped.Load(), elapsed)
		fmt.Fprintf(opts.Stdout, "\nsink %s: %d commits, %d writes (per 1000 posts: %.1f commits, %.0f writes); one RPC per document, as the original wrote: %d RPCs (%.0f per 1000 posts)\n",
			cfg.Sink, r.commits.Load(), r.writes.Load(), per1000(r.commits.Load(), accepted), per1000(r.writes.Load(), accepted),
			r.docs.Load(), per1000(r.docs.Load(), accepted))
	}
	if killed || notStored != 0 || failure != nil {
		r.log.Error("stopped; not every accepted post was stored", args...)
		return errors.Join(fmt.Errorf("%w: %d of %d accepted posts not stored", ErrDrainIncomplete, notStored, accepted), failure)
	}
	r.log.Info("stopped cleanly", args...)
	return nil
}

// openSink opens the parent's own handle on the sink before any child
// starts, so a bad --db or --project fails at once with the sink's own
// message (it also creates the schema). The handle serves readiness checks
// and reads.
func (r *run) openSink() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sink.Open(ctx, sink.Config{Kind: r.cfg.Sink, DB: r.cfg.DB, Project: r.cfg.Project, Logger: r.log.Named("sink")})
	if err != nil {
		return err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return err
	}
	r.store = s
	return nil
}

// startAll starts every worker and saver concurrently and waits for their
// handshakes. A child that cannot start now is a configuration problem:
// the others are killed and the error returned, with no restarts.
func (r *run) startAll() ([]*workerProc, []*saverProc, error) {
	workers := make([]*workerProc, r.cfg.Workers)
	savers := make([]*saverProc, r.cfg.Savers)
	errs := make([]error, r.cfg.Workers+r.cfg.Savers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { workers[i], errs[i] = r.startWorker(i) })
	}
	for i := range savers {
		wg.Go(func() { savers[i], errs[r.cfg.Workers+i] = r.startSaver(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range workers {
			if w != nil {
				w.kill("start-up failed")
				<-w.exited
			}
		}
		for _, s := range savers {
			if s != nil {
				s.kill("start-up failed")
				<-s.exited
			}
		}
		return nil, nil, fmt.Errorf("starting children: %w", err)
	}
	return workers, savers, nil
}

// ready is /readyz: every child running, the sink reachable and storing,
// not draining.
func (r *run) ready() error {
	if r.draining.Load() {
		return errors.New("draining")
	}
	for _, st := range r.childStates() {
		if st.state != "running" || !st.alive {
			return fmt.Errorf("%s %d is %s", st.role, st.id, st.state)
		}
	}
	r.mu.Lock()
	err := r.storeErr
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("batches cannot be stored: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.store.Ping(ctx); err != nil {
		return fmt.Errorf("sink unreachable: %w", err)
	}
	return nil
}

// feed reads --input into the queue, waiting for room, until the end of
// the file or until the queue is closed by a signal.
func (r *run) feed(src *input.Reader) error {
	defer func() {
		if n := r.skipped.Load(); n > 0 {
			r.log.Warn("rows skipped because they are not valid posts", "skipped", n)
		}
	}()
	for {
		p, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var rowErr *input.RowError
		if errors.As(err, &rowErr) {
			if r.skipped.Add(1) <= 10 {
				r.log.Warn("skipping row", "input", r.cfg.Input, "error", rowErr)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := r.posts.Put(r.ctx, wire.Post{Publication: p.Publication, Content: p.Content}); err != nil {
			if errors.Is(err, queue.ErrClosed) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
	}
}

func (r *run) aborted() bool { return r.ctx.Err() != nil }

// killAll aborts the run: every wait ends and every child is killed.
// Idempotent.
func (r *run) killAll() {
	r.cancel()
	r.mu.Lock()
	list := make([]watched, 0, len(r.watched))
	for w := range r.watched {
		list = append(list, w)
	}
	r.mu.Unlock()
	for _, w := range list {
		w.proc().kill("the parent is shutting down without a complete drain")
	}
}

func per1000(n, posts int64) float64 {
	if posts == 0 {
		return 0
	}
	return float64(n) * 1000 / float64(posts)
}
