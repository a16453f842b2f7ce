// Package supervisor is the ingest parent: it starts worker and saver child
// processes, feeds them posts from HTTP or a file, routes batches from
// workers to savers, and drains everything in order on shutdown.
package supervisor

import (
	"bytes"
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
	"github.com/ingest-dev/ingest/edge"
	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/queue"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// ErrDrainIncomplete is returned when a shutdown ended before every
// accepted post was stored: a second signal, --drain-timeout, or a child
// that died.
var ErrDrainIncomplete = errors.New("drain incomplete")

// Options are what Run needs besides the config.
type Options struct {
	Log        hclog.Logger
	Signals    <-chan os.Signal // SIGTERM/SIGINT: the first drains, the second kills
	Stdout     io.Writer        // where --input's summary is printed
	Executable string           // the binary to re-exec for children; "" = os.Executable()
	// Listening, if set, is called with the HTTP address once it serves.
	Listening func(addr string)
}

// batchItem is a batch part on its way from a worker to a saver.
type batchItem struct {
	raw   []byte // the whole frame, forwarded as is
	id    string // Batch.PartID()
	posts int    // posts covered, dead letters included (last part only)
	dead  int
}

type run struct {
	cfg  config.Config
	opts Options
	log  hclog.Logger
	q    *queue.Queue

	workers, savers []*process
	acks            map[*process]chan wire.Ack
	batches         chan batchItem // worker readers → saver dispatchers; closed when every worker has exited
	fatal           chan error     // one send at most per child
	abort           chan struct{}  // closed when children are killed: unblocks every send
	abortOnce       sync.Once
	draining        atomic.Bool

	stored, dead, failed, lost atomic.Int64
	skipped                    atomic.Int64 // --input rows that are not valid posts
	summary                    *summary     // --input only
}

// Run is the parent's whole life: start children, serve, drain on the
// first signal (or at the end of --input), and return nil only if every
// accepted post was stored.
func Run(cfg config.Config, opts Options) error {
	r := &run{
		cfg:   cfg,
		opts:  opts,
		log:   opts.Log,
		q:     queue.New(cfg.QueueSize),
		acks:  make(map[*process]chan wire.Ack),
		abort: make(chan struct{}),
	}
	exe := opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find own executable to start children: %w", err)
		}
	}
	if err := r.checkSink(); err != nil {
		return err
	}
	var src *input.Reader
	if cfg.Input != "" {
		var err error
		if src, err = input.Open(cfg.Input); err != nil {
			return err
		}
		defer src.Close()
		r.summary = newSummary()
	}
	var ln net.Listener
	if cfg.Input == "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("--listen %s: %w: pick a free port", cfg.Listen, err)
		}
		defer ln.Close()
	}

	start := time.Now()
	if err := r.startChildren(exe); err != nil {
		return err
	}
	r.batches = make(chan batchItem, 2*len(r.savers))
	r.fatal = make(chan error, len(r.workers)+len(r.savers))

	var dispatchers sync.WaitGroup
	for _, w := range r.workers {
		dispatchers.Go(func() { r.dispatchPosts(w) })
	}
	for _, s := range r.savers {
		dispatchers.Go(func() { r.dispatchBatches(s) })
	}
	var monitors sync.WaitGroup
	for _, p := range append(append([]*process(nil), r.workers...), r.savers...) {
		monitors.Go(func() { r.monitor(p) })
	}
	monitors.Go(func() {
		for _, w := range r.workers {
			<-w.exited
		}
		close(r.batches)
	})

	h := edge.New(edge.Config{Queue: r.q, Token: cfg.Token, MaxBody: cfg.MaxBody, Logger: r.log.Named("http"), Ready: r.ready})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: r.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	served := make(chan error, 1)
	fed := make(chan error, 1)
	if ln != nil {
		go func() { served <- srv.Serve(ln) }()
		r.log.Info("listening", "addr", "http://"+ln.Addr().String(), "workers", len(r.workers), "savers", len(r.savers), "sink", cfg.Sink)
		if opts.Listening != nil {
			opts.Listening(ln.Addr().String())
		}
	} else {
		go func() { fed <- r.feed(src) }()
		r.log.Info("reading", "input", cfg.Input, "format", src.Format(), "workers", len(r.workers), "savers", len(r.savers), "sink", cfg.Sink)
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
		r.log.Error("a child failed; draining and exiting non-zero", "error", err)
	case err := <-served:
		arm()
		failure = fmt.Errorf("http server: %w", err)
		r.log.Error("http server failed; draining", "error", err)
	}

	// Edge stops accepting; the queue drains through the workers, whose
	// dispatchers send STOP after the last post; workers flush and exit;
	// their batches reach the savers; savers get STOP once every worker
	// exited and every batch was acknowledged.
	r.draining.Store(true)
	if ln != nil {
		h.SetDraining()
	}
	r.q.Close()
	drained := make(chan struct{})
	go func() {
		dispatchers.Wait()
		monitors.Wait()
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
			r.log.Error("a child failed during the drain", "error", err)
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
	// Monitors have all returned: whatever they reported is buffered.
	for len(r.fatal) > 0 {
		failure = errors.Join(failure, <-r.fatal)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutdown)
	cancel()

	accepted := int64(r.q.Accepted())
	stored, dead := r.stored.Load(), r.dead.Load()
	notStored := accepted - stored - dead
	elapsed := time.Since(start)
	args := []any{"accepted", accepted, "stored", stored, "dead_lettered", dead, "not_stored", notStored,
		"elapsed", elapsed.Round(time.Millisecond), "sink", cfg.Sink}
	if r.summary != nil {
		r.summary.print(opts.Stdout, cfg.Input, accepted, stored, dead, r.skipped.Load(), elapsed)
	}
	if killed || notStored != 0 || failure != nil {
		r.log.Error("stopped; not every accepted post was stored", args...)
		return errors.Join(fmt.Errorf("%w: %d of %d accepted posts not stored", ErrDrainIncomplete, notStored, accepted), failure)
	}
	r.log.Info("stopped cleanly", args...)
	return nil
}

// checkSink opens the sink once before any child starts, so a bad --db
// fails at once with the sink's own message; it also creates the schema.
func (r *run) checkSink() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sink.Open(ctx, sink.Config{Kind: r.cfg.Sink, DB: r.cfg.DB, Logger: r.log.Named("sink")})
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Ping(ctx)
}

// startChildren starts savers and workers concurrently and waits for every
// handshake; on any failure it kills those already started.
func (r *run) startChildren(exe string) error {
	type started struct {
		p   *process
		err error
	}
	total := r.cfg.Savers + r.cfg.Workers
	results := make(chan started, total)
	spawn := func(role string, id int, onFrame func(*process, wire.Frame) error) {
		p, err := startProcess(exe, r.cfg.ChildArgs(role, id), role, id, r.log, onFrame)
		results <- started{p, err}
	}
	for i := range r.cfg.Savers {
		go spawn(wire.RoleSaver, i, r.onSaverFrame)
	}
	for i := range r.cfg.Workers {
		go spawn(wire.RoleWorker, i, r.onWorkerFrame)
	}
	var errs []error
	var all []*process
	for range total {
		s := <-results
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		all = append(all, s.p)
	}
	if len(errs) > 0 {
		for _, p := range all {
			p.kill()
			<-p.exited
		}
		return fmt.Errorf("starting children: %w", errors.Join(errs...))
	}
	workers := make([]*process, r.cfg.Workers)
	savers := make([]*process, r.cfg.Savers)
	for _, p := range all {
		if p.role == wire.RoleWorker {
			workers[p.id] = p
		} else {
			savers[p.id] = p
			r.acks[p] = make(chan wire.Ack, 1)
		}
		p.log.Debug("child started", "args", p.cmd.Args[1:])
	}
	r.workers, r.savers = workers, savers
	return nil
}

// ready is /readyz: every child alive and not draining.
func (r *run) ready() error {
	if r.draining.Load() {
		return errors.New("draining")
	}
	for _, p := range append(append([]*process(nil), r.workers...), r.savers...) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited", p)
		default:
		}
	}
	return nil
}

// monitor reports a child's unexpected exit, or a failed exit after STOP.
func (r *run) monitor(p *process) {
	<-p.exited
	switch {
	case !p.expected():
		r.fatal <- fmt.Errorf("%s exited unexpectedly (%v): see its log lines above", p, p.err)
	case p.err != nil && !r.aborted():
		r.fatal <- fmt.Errorf("%s exited with an error after STOP (%v): see its log lines above", p, p.err)
	default:
		p.log.Debug("child exited", "status", p.cmd.ProcessState)
	}
}

// dispatchPosts feeds one worker from the shared queue until the queue is
// closed and empty, then sends STOP.
func (r *run) dispatchPosts(w *process) {
	var seq uint64
	for {
		post, ok := r.q.Take()
		if !ok {
			w.stop("drain")
			return
		}
		seq++
		if err := w.send(&wire.Post{Seq: seq, Publication: post.Publication, Content: post.Content}); err != nil {
			r.lost.Add(1)
			w.log.Error("worker cannot take posts; one post lost", "error", err)
			return
		}
	}
}

// onWorkerFrame runs in a worker's stdout reader: it passes each batch on
// to the savers.
func (r *run) onWorkerFrame(p *process, f wire.Frame) error {
	if f.Kind != wire.KindBatch {
		return fmt.Errorf("unexpected %s frame from a worker", f.Kind)
	}
	var b wire.Batch
	if err := f.Decode(&b); err != nil {
		return err
	}
	if r.summary != nil {
		r.summary.add(&b)
	}
	item := batchItem{raw: bytes.Clone(f.Raw), id: b.PartID(), posts: b.Posts, dead: len(b.Dead)}
	select {
	case r.batches <- item:
	case <-r.abort:
		r.failed.Add(int64(item.posts))
	}
	return nil
}

// onSaverFrame runs in a saver's stdout reader: it hands acks to the
// saver's dispatcher.
func (r *run) onSaverFrame(p *process, f wire.Frame) error {
	var ack wire.Ack
	if err := f.Decode(&ack); err != nil {
		return err
	}
	select {
	case r.acks[p] <- ack:
	case <-r.abort:
	}
	return nil
}

// dispatchBatches sends batches to one saver, one at a time, and accounts
// each acknowledgement, until the batch channel is closed; then STOP.
func (r *run) dispatchBatches(s *process) {
	for item := range r.batches {
		if err := s.enc.WriteRaw(item.raw); err != nil {
			r.failed.Add(int64(item.posts))
			s.log.Error("saver cannot take batches", "batch", item.id, "error", err)
			return
		}
		select {
		case ack := <-r.acks[s]:
			r.account(s, item, ack)
		case <-s.exited:
			r.failed.Add(int64(item.posts))
			s.log.Error("saver exited before acknowledging a batch", "batch", item.id)
			return
		}
	}
	s.stop("drain")
}

func (r *run) account(s *process, item batchItem, ack wire.Ack) {
	switch {
	case ack.ID != item.id:
		r.failed.Add(int64(item.posts))
		s.log.Error("acknowledgement for the wrong batch", "sent", item.id, "acked", ack.ID)
	case ack.Err != "":
		r.failed.Add(int64(item.posts))
		s.log.Error("batch not stored", "batch", item.id, "posts", item.posts, "error", ack.Err)
	default:
		r.stored.Add(int64(item.posts - item.dead))
		r.dead.Add(int64(item.dead))
	}
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
		if err := r.q.Put(context.Background(), queue.Post{Publication: p.Publication, Content: p.Content}); err != nil {
			if errors.Is(err, queue.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

func (r *run) aborted() bool {
	select {
	case <-r.abort:
		return true
	default:
		return false
	}
}

// killAll kills every child and unblocks everything waiting on them.
// Idempotent.
func (r *run) killAll() {
	r.abortOnce.Do(func() { close(r.abort) })
	for _, p := range append(append([]*process(nil), r.workers...), r.savers...) {
		p.kill()
	}
}
