package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/internal/sdnotify"
	"github.com/ingest-dev/ingest/internal/token"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/source"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// ErrDrainIncomplete is returned when a shutdown ended before every
// accepted post was stored: a second signal, --drain-timeout, or children
// that kept failing.
var ErrDrainIncomplete = errors.New("drain incomplete")

// ErrInputUnfinished is returned when a run on --input stopped (a signal)
// before the end of the file; every post read was stored.
var ErrInputUnfinished = errors.New("stopped before the end of the input")

// Options are what Run needs besides the config.
type Options struct {
	Log     hclog.Logger
	Signals <-chan os.Signal // SIGTERM/SIGINT: the first drains, the second kills
	// Hangups delivers SIGHUP, which re-reads the token files (see
	// reload); nil means none arrive.
	Hangups <-chan os.Signal
	Stdout  io.Writer // where --input's summary is printed
	// Executable is the binary re-executed for the children; "" means
	// this process's own (os.Executable). Tests point it at a test binary.
	Executable string
	// ProgressBar, when not nil, is where --input draws its progress bar
	// (a terminal). nil logs the progress every few seconds instead.
	ProgressBar io.Writer
	// Notify, when not nil, is told the parent's state as systemd is
	// (sd_notify): "READY=1" once it serves or reads --input,
	// "STOPPING=1" when it drains. nil tells systemd (NOTIFY_SOCKET,
	// internal/sdnotify); tests wait on it instead of a log line.
	Notify func(state string) error
}

// parent is the state of one run of the parent. Its phases, in order, are
// Run's: open, start, serve, drain, report. What it does is split among
// parts with small interfaces: the children (slots, their runners, the
// watchdog), the worker and saver incarnations (workerHost, saverHost,
// which the parent implements), the intakes (writeapi.Intake), and the
// tally, which holds every count.
type parent struct {
	cfg     config.Config
	opts    Options
	log     hclog.Logger
	exe     string
	started time.Time

	// ctx ends when the run is aborted (children killed): every wait on a
	// queue or a child watches it.
	ctx    context.Context
	cancel context.CancelFunc

	tally    *tally    // every count of the run, kept once
	children *children // the slots, their runners and the watchdog
	metrics  *metrics
	summary  *summary  // --input only
	hot      *hotspot  // writes of each publication's document (--sink firestore)
	ner      nerRecord // which NER engine counts (engine.go)

	posts      *queue.Queue[wire.Post] // accepted posts → workers (a dead worker's posts come back in front)
	batches    *batchQueue             // complete batches → savers (unacknowledged ones come back in front)
	batchLimit int                     // workers are fed only while fewer batches than this wait
	sinkBehind atomic.Bool             // the batch backlog reached batchLimit; see waitForSink
	store      sink.Sink               // the parent's own handle: readiness and reads
	storing    storeHealth             // the sink's last refusal, until a batch is stored again
	spool      *spool.Spool            // accepted posts and complete batches, on disk (nil with --durability none)
	lock       *spool.Lock             // the data directory's, held by the children too
	spooling   sync.WaitGroup          // batches handed to the spool, not yet durable: the batch queue stays open for them
	spoolFail  sync.Once               // the spool failed for good: give up once

	// Where posts come from (sources.go): --input, or the HTTP intake
	// and a Pub/Sub subscription, each driven by a goroutine of bg.
	sources []source.Source
	in      inputFile      // --input
	httpIn  *source.HTTP   // the write API's intake, when listening
	pubsub  *source.PubSub // --pubsub-subscription
	pending *pendingAcks   // posts of AckStored sources, until stored
	closing sync.WaitGroup // the sources' Close, from the drain on
	// closingCtx ends the sources' Close (settleSources); stopClosing is
	// nil until closeSources ran.
	closingCtx  context.Context
	stopClosing context.CancelFunc

	ln         net.Listener      // HTTP, through conns (nil with --input or --listen "")
	conns      *limitListener    // caps the connections open at once
	http       *writeapi.Handler // nil without a listener
	srv        *http.Server
	tokens     *token.Source // the write and read tokens, which SIGHUP may replace
	readTokens *token.Source
	reloads    *reloader // SIGHUP's, made at the first; only Run's goroutine touches the pointer

	fatal      chan error     // failures that end the run; buffered, never blocks a sender (giveUp)
	drainBegun atomic.Bool    // set once, when the drain begins
	bg         sync.WaitGroup // HTTP server, the sources' readers, progress, spool pump
	served     chan error     // the HTTP server's end
	intakeDone chan struct{}  // closed when the intake stops: ends the progress report
	fed        chan error     // the input feeder's end (nil error at EOF)
}

// Run is the parent's whole life, phase by phase:
//
//  1. open: the sink (fail fast on a bad --db or --project), the spool
//     (locking the data directory, recovering what a dead parent left),
//     then the input file or the listening socket;
//  2. start: every worker and saver, waiting for their handshakes; then
//     one runner per slot, the watchdog, and the HTTP server or the input
//     feeder;
//  3. serve: until a signal, a failure, or the end of --input;
//  4. drain: stop intake and let every accepted post reach the sink, in
//     order, within --drain-timeout (drain says how);
//  5. report: without a spool, spill what could not be stored (with one,
//     it stays there for the next start); print the summary, log the last
//     line.
//
// It returns what the run did, and an error unless every accepted post
// was stored (rep.Ending says how it ended; rep.Error is the error's
// text). A --replay run reports only how it ended.
func Run(cfg config.Config, opts Options) (rep Report, err error) {
	defer func() {
		if err != nil {
			rep.Error = err.Error()
		}
	}()
	if cfg.Replay != "" {
		return Report{Ending: EndedBeforeStart, Sink: cfg.Sink}, Replay(cfg, opts)
	}
	p, err := open(cfg, opts)
	if err != nil {
		return Report{Ending: EndedBeforeStart, Sink: cfg.Sink}, err
	}
	defer p.close()
	if err := p.start(); err != nil {
		return p.reportBeforeStart(), err
	}
	cause := p.serve()
	killed, failure := p.drain(cause)
	return p.report(killed, failure)
}

// open prepares a run: the sink, the input or the listener. Nothing is
// started yet; close releases what open took.
func open(cfg config.Config, opts Options) (*parent, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &parent{
		cfg: cfg, opts: opts, log: opts.Log,
		ctx: ctx, cancel: cancel,
		tally:      newTally(),
		posts:      queue.New[wire.Post](cfg.QueueSize),
		batches:    newBatchQueue(),
		batchLimit: max(4, 2*cfg.Savers),
		storing:    storeHealth{log: opts.Log},
		fatal:      make(chan error, cfg.Workers+cfg.Savers+3),
		served:     make(chan error, 1),
		fed:        make(chan error, 1),
		intakeDone: make(chan struct{}),
		tokens:     token.NewSource(cfg.Token),
		readTokens: token.NewSource(cfg.ReadToken),
		pending:    newPendingAcks(),
	}
	if cfg.Sink == sink.KindFirestore {
		p.hot = newHotspot(opts.Log)
	}
	p.children = newChildren(ctx, opts.Log, cfg.MaxRestarts, cfg.RestartWindow, p.tally, p.giveUp)
	p.metrics = newMetrics(p)
	for i := range cfg.Workers {
		p.children.add(wire.RoleWorker, i, func() (incarnation, error) { return p.startWorker(i) })
	}
	for i := range cfg.Savers {
		p.children.add(wire.RoleSaver, i, func() (incarnation, error) { return p.startSaver(i) })
	}
	p.exe = opts.Executable
	if p.exe == "" {
		var err error
		if p.exe, err = os.Executable(); err != nil {
			cancel()
			return nil, fmt.Errorf("find own executable to start children: %w", err)
		}
	}
	err := checkSpillDir(cfg)
	if err == nil {
		err = p.openSink()
	}
	if err == nil && cfg.Spooled() {
		err = p.openSpool()
	}
	if err == nil && cfg.Input == "" && cfg.Listen != "" {
		if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			err = fmt.Errorf("--listen %s: %w: pick a free port", cfg.Listen, err)
		} else {
			p.conns = newLimitListener(p.ln, cfg, p.tokens, p.readTokens, p.log)
			p.ln = p.conns
		}
	}
	if err == nil {
		err = p.openSources()
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// openSink opens the parent's own handle on the sink before any child
// starts, so a bad --db or --project fails at once with the sink's own
// message (it also creates the schema). The handle serves readiness checks
// and reads.
func (p *parent) openSink() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sink.Open(ctx, sink.Config{Kind: p.cfg.Sink, DB: p.cfg.DB, Project: p.cfg.Project, KeyTTL: p.cfg.KeyTTL, Logger: p.log.Named("sink")})
	if err != nil {
		return err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return err
	}
	if err := p.recordEngine(ctx, s); err != nil {
		s.Close()
		return err
	}
	p.store = s
	return nil
}

// close releases what open took. Idempotent.
func (p *parent) close() {
	p.cancel()
	if p.ln != nil {
		p.ln.Close()
	}
	if p.stopClosing == nil && len(p.sources) > 0 {
		p.closeSources() // a run that ended before its drain: nothing was read
		p.settleSources()
	}
	if p.in.src != nil {
		p.in.src.Release()
	}
	if p.store != nil {
		p.store.Close()
	}
	if p.spool != nil {
		if err := p.spool.Close(); err != nil {
			p.log.Error("closing the spool", "error", err)
		}
	}
	p.lock.Release() // the children, which share it, have exited
}

// start starts every worker and saver, as many at a time as there are
// CPUs, and waits for their handshakes. A child that cannot start now is a configuration problem:
// the others are killed and the error returned, with no restarts. Then it
// starts the slot runners, the watchdog, and the intake: the HTTP server
// or the input feeder.
func (p *parent) start() error {
	p.started = time.Now()
	slots := p.children.slots
	first := make([]incarnation, len(slots))
	errs := make([]error, len(slots))
	// In stages of one child per CPU: each worker loads the NER model as
	// it starts, and a burst of them at once only makes each slower.
	stage := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, s := range slots {
		wg.Go(func() {
			stage <- struct{}{}
			defer func() { <-stage }()
			first[i], errs[i] = s.start()
		})
	}
	if sig := p.awaitStarts(&wg); sig != nil {
		errs = append(errs, fmt.Errorf("%s received while the children were starting: stopped them", sig))
	}
	if err := errors.Join(errs...); err != nil {
		for _, inc := range first {
			if inc != nil {
				inc.proc().kill("start-up failed")
				inc.proc().wait()
			}
		}
		return fmt.Errorf("starting children: %w", err)
	}
	// Savers stop once no worker can produce another batch, and every
	// batch handed to the spool is settled.
	p.children.start(first, func() {
		p.spooling.Wait()
		p.batches.close()
	})
	if p.spool != nil {
		p.bg.Go(p.pumpSpool)
	}

	for _, src := range p.sources {
		p.bg.Go(func() { p.drive(src) })
	}
	if p.hot != nil {
		p.bg.Go(func() { p.hot.run(p.intakeDone) })
	}
	switch {
	case p.ln != nil:
		p.srv = p.httpServer()
		p.bg.Go(func() { p.served <- p.srv.Serve(p.ln) })
		p.log.Info("listening", "addr", "http://"+p.ln.Addr().String(), "workers", p.cfg.Workers, "savers", p.cfg.Savers, "sink", p.cfg.Sink)
	case p.in.src != nil:
		p.bg.Go(func() { p.progress(p.intakeDone) })
		p.log.Info("reading", "input", p.cfg.Input, "format", p.in.src.Format(), "workers", p.cfg.Workers, "savers", p.cfg.Savers, "sink", p.cfg.Sink)
	default:
		p.log.Info("pulling, without HTTP (--listen \"\")", "subscription", p.cfg.PubSubSubscription, "workers", p.cfg.Workers, "savers", p.cfg.Savers, "sink", p.cfg.Sink)
	}
	if err := p.notify("READY=1"); err != nil {
		p.log.Warn("could not tell systemd the service is ready", "error", err)
	}
	return nil
}

// awaitStarts waits for the children's starts. A signal meanwhile (a
// child loading its model may take seconds, one that never says hello
// up to handshakeTimeout) kills them all, those being forked included,
// and is returned: nothing was accepted yet, so there is nothing to
// drain, and a stop must not wait for the starts to finish.
func (p *parent) awaitStarts(starts *sync.WaitGroup) os.Signal {
	done := make(chan struct{})
	go func() {
		starts.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case sig := <-p.opts.Signals:
		p.log.Warn("signal received while the children were starting: killing them and exiting", "signal", sig)
		p.kill()
		<-done // each start returns once its child is killed
		return sig
	}
}

// drainCause is why serving ended.
type drainCause struct {
	signal  os.Signal // a first SIGTERM or SIGINT
	failure error     // a child role gave up, the server or the input failed
	// neither: --input reached its end, which is not a shutdown: the whole
	// file is processed however long it takes, unless a signal comes.
}

// serve waits for the end of serving: a signal, a failure, or the end of
// --input.
func (p *parent) serve() drainCause {
	for {
		select {
		case sig := <-p.opts.Signals:
			p.log.Info("signal received: draining; a second signal kills the children", "signal", sig, "drain_timeout", p.cfg.DrainTimeout)
			return drainCause{signal: sig}
		case <-p.opts.Hangups:
			p.reload()
		case err := <-p.fed:
			if err != nil {
				p.log.Error("reading input failed; draining what was read", "error", err)
				return drainCause{failure: err}
			}
			return drainCause{}
		case err := <-p.fatal:
			p.log.Error("giving up: draining what can be stored, then exiting non-zero", "error", err)
			return drainCause{failure: err}
		case err := <-p.served:
			p.log.Error("http server failed; draining", "error", err)
			return drainCause{failure: fmt.Errorf("http server: %w", err)}
		}
	}
}

// reload is SIGHUP: the parent keeps running (a terminal closing, or an
// operator expecting a reload, must not cost accepted posts) and re-reads
// the token files, so that a token can be rotated without a restart. It
// returns at once: the files are read off the signal loop (see reloader),
// so a file system that blocks never delays a SIGTERM.
func (p *parent) reload() {
	if p.cfg.TokenFile == "" && p.cfg.ReadTokenFile == "" {
		p.log.Info("SIGHUP: nothing to reload (no --token-file or --read-token-file); carrying on")
		return
	}
	if p.reloads == nil {
		p.reloads = &reloader{
			log:     p.log,
			timeout: reloadTimeout,
			read:    func() (config.Tokens, error) { return p.cfg.ReloadTokens(os.Getenv) },
			apply: func(t config.Tokens) {
				p.tokens.Set(t.Write)
				p.readTokens.Set(t.Read)
				p.log.Info("SIGHUP: tokens reloaded", "token_file", p.cfg.TokenFile, "read_token_file", p.cfg.ReadTokenFile)
			},
			decided: func(o reloadOutcome) { p.metrics.reloads.WithLabelValues(o.String()).Inc() },
		}
	}
	p.reloads.start()
}

// drain stops intake and lets everything accepted reach the sink, in this
// order:
//
//  1. the HTTP API refuses new posts (503) and the post queue closes;
//  2. each worker runner, once the queue is empty, sends its worker STOP;
//     the worker flushes and exits, its batches go to the batch queue;
//  3. once every worker runner (and every retiring worker) is done, the
//     batch queue closes;
//  4. each saver runner, once the batch queue is empty, sends its saver
//     STOP; the saver has acknowledged every batch it stored, and exits.
//
// Steps 2 to 4 are the slot runners' own (runSlot); drain waits for them.
// The deadline, --drain-timeout, runs from a signal or a failure, not from
// the end of --input. When it passes, or at a second signal, every child
// is killed (kill) and drain returns at once, killed saying why; what was
// not stored stays in the queues for report to spill.
func (p *parent) drain(cause drainCause) (killed string, failure error) {
	failure = cause.failure
	var deadline <-chan time.Time
	arm := func() {
		if deadline == nil {
			deadline = time.After(p.cfg.DrainTimeout)
		}
	}
	if cause.signal != nil || cause.failure != nil {
		arm()
	}

	p.drainBegun.Store(true)
	p.notify("STOPPING=1")
	if p.http != nil {
		p.http.SetDraining()
	}
	p.closeIntake()
	p.closeSources()
	drained := make(chan struct{})
	go func() {
		p.children.wait()
		close(drained)
	}()
	for killed == "" {
		select {
		case <-drained:
			p.stopIntake()
			p.settleSources()
			return "", errors.Join(failure, p.pendingFailures())
		case err := <-p.fatal:
			arm()
			failure = errors.Join(failure, err)
			p.log.Error("giving up during the drain", "error", err)
		case err := <-p.fed:
			if err != nil {
				arm()
				failure = errors.Join(failure, err)
			}
		case <-p.opts.Hangups:
			p.reload()
		case sig := <-p.opts.Signals:
			if deadline == nil {
				arm()
				p.log.Info("signal received: finishing what was read, then exiting; a second signal kills the children",
					"signal", sig, "drain_timeout", p.cfg.DrainTimeout)
				continue
			}
			p.log.Error("second signal: killing the children now", "signal", sig)
			killed = KilledBySignal
		case <-deadline:
			p.log.Error("--drain-timeout expired: killing the children", "drain_timeout", p.cfg.DrainTimeout)
			killed = KilledByDrainTimeout
		}
	}
	p.kill()
	p.awaitKilled(drained)
	p.stopIntake()
	p.settleSources()
	return killed, errors.Join(failure, p.pendingFailures())
}

// killGrace bounds how long the runners may take to notice a kill: a
// killed child's pipes close at once, so they return within moments.
const killGrace = 10 * time.Second

// kill aborts the run: every wait ends and every child is killed, those
// still starting too (family). The runners see the abort, hand back what
// their children held, and return. Idempotent.
func (p *parent) kill() {
	p.cancel()
	p.children.killAll("the parent is shutting down without a complete drain")
}

// awaitKilled waits, after kill, for drained to close, at most killGrace:
// a shutdown ends within its deadline even if a runner does not return,
// which would be a bug, logged with what is still alive.
func (p *parent) awaitKilled(drained <-chan struct{}) {
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		p.log.Error("BUG: the slot runners did not return after the kill; exiting anyway", "waited", killGrace, "children_alive", p.children.family.size())
	}
}

// stopIntake ends the HTTP server (answering requests in flight) and waits
// for the background goroutines.
func (p *parent) stopIntake() {
	if p.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if p.srv.Shutdown(ctx) != nil {
			p.srv.Close() // requests still in flight after 5 s are cut: the exit must not wait for a client
		}
		cancel()
	}
	p.cancel() // ends the input feeder if it still waits for room
	close(p.intakeDone)
	p.bg.Wait()
}

// pendingFailures collects failures reported after the drain stopped
// listening for them.
func (p *parent) pendingFailures() error {
	var err error
	for len(p.fatal) > 0 {
		err = errors.Join(err, <-p.fatal)
	}
	return err
}

// report spills what was not stored, prints --input's summary and logs the
// last line; it returns what the run did, and an error unless every
// accepted post was stored.
func (p *parent) report(killed string, failure error) (Report, error) {
	failure = errors.Join(failure, p.tally.check())
	rep := Report{Counts: p.tally.counts(), Restarts: p.tally.restartCounts(), Sink: p.cfg.Sink, Killed: killed, Input: p.in.earlier()}
	c := &rep.Counts
	if p.spool == nil {
		var err error
		rep.Spilled, err = p.spill()
		failure = errors.Join(failure, err)
	} else if c.NotStored > 0 {
		rep.KeptInSpool = p.cfg.SpoolDirectory()
	}
	rep.Elapsed = time.Since(p.started)
	if c.NotStored == 0 && killed == "" && failure == nil && p.in.readAll() && p.spool != nil {
		if src := inputSource(p.cfg); src != "" {
			if err := p.spool.Forget(src); err != nil {
				p.log.Warn("could not forget how far --input was read; a later run on it resumes at its end, reading nothing", "error", err)
			}
		}
	}
	var unfinished error
	if p.in.src != nil && !p.in.readAll() && failure == nil {
		unfinished = fmt.Errorf("%w: --input %s was not read to its end (%d rows read in this run)", ErrInputUnfinished, p.cfg.Input, c.RowsRead)
		if p.spool != nil && inputSource(p.cfg) != "" {
			unfinished = fmt.Errorf("%w; run the same command again on this --data-dir to go on after the last row read", unfinished)
		}
	}
	if p.summary != nil {
		p.printSummary(rep, unfinished)
	}
	args := []any{"accepted", c.Accepted, "stored", c.Stored, "dead_lettered", c.DeadLettered, "not_stored", c.NotStored,
		"elapsed", rep.Elapsed.Round(time.Millisecond), "sink", p.cfg.Sink,
		"sink_commits", c.Commits, "sink_writes", c.Writes, "documents", c.Documents}
	if len(rep.Spilled) > 0 {
		args = append(args, "spilled", rep.Spilled)
	}
	if c.Recovered > 0 {
		args = append(args, "recovered", c.Recovered)
	}
	if rep.KeptInSpool != "" {
		args = append(args, "kept_in_spool", rep.KeptInSpool)
	}
	switch {
	case c.NotStored != 0:
		rep.Ending = EndedDrainIncomplete
		if p.spool != nil {
			p.log.Error("stopped; the accepted posts not stored are kept in the spool, and the next start on this data directory stores them", args...)
		} else {
			p.log.Error("stopped; not every accepted post was stored", args...)
		}
		return rep, errors.Join(fmt.Errorf("%w: %d of %d accepted posts not stored", ErrDrainIncomplete, c.NotStored, c.Accepted), failure)
	case failure != nil:
		rep.Ending = EndedFailed
		p.log.Error("stopped after a failure; every accepted post was stored", args...)
		return rep, errors.Join(failure, unfinished)
	case killed != "":
		rep.Ending = EndedKilled
		p.log.Error("stopped: the children were killed; every accepted post was stored", args...)
		return rep, errors.Join(fmt.Errorf("%w: the children were killed", ErrDrainIncomplete), unfinished)
	case unfinished != nil:
		rep.Ending = EndedInputUnfinished
		p.log.Warn("stopped before the end of --input; every post read was stored", args...)
		return rep, unfinished
	}
	rep.Ending = EndedClean
	p.log.Info("stopped cleanly", args...)
	return rep, nil
}

// reportBeforeStart is the report of a run whose start failed: nothing
// was accepted, whatever the spool holds stays there.
func (p *parent) reportBeforeStart() Report {
	return Report{Ending: EndedBeforeStart, Sink: p.cfg.Sink, Elapsed: time.Since(p.started)}
}

// giveUp reports a failure that ends the run: the parent drains and exits
// non-zero. It never blocks: fatal has room for every slot and more.
func (p *parent) giveUp(err error) {
	select {
	case p.fatal <- err:
	default:
		p.log.Error("another failure while stopping", "error", err)
	}
}

// notify tells systemd, or Options.Notify, the parent's state.
func (p *parent) notify(state string) error {
	if p.opts.Notify != nil {
		return p.opts.Notify(state)
	}
	_, err := sdnotify.Notify(state)
	return err
}

func (p *parent) aborted() bool  { return p.ctx.Err() != nil }
func (p *parent) draining() bool { return p.drainBegun.Load() }
