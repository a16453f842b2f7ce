package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/spool"
)

// httpServer is the parent's HTTP server: every route (newHTTPHandler)
// over the parent's queue, sink, status and metrics.
func (p *parent) httpServer() *http.Server {
	reader, _ := p.store.(sink.Reader) // nil for --sink none: the read routes answer 503
	handler, write := newHTTPHandler(httpDeps{
		Intake:     p.httpIn,
		Tokens:     p.tokens,
		ReadTokens: p.readTokens,
		MaxBody:    p.cfg.MaxBody,
		Log:        p.log.Named("http"),
		Ready:      p.ready,
		Status:     p.status(),
		Reader:     reader,
		Metrics:    p.metrics.reg,
		// Without a token only loopback clients may call: refuse other
		// Host names (DNS rebinding) and non-JSON bodies (cross-site posts).
		LoopbackOnly: p.cfg.Token == "",
		Listen:       p.cfg.Listen,
		CORSOrigins:  p.cfg.CORSOrigins,
	})
	p.http = write
	p.metrics.registerWriteAPI(write)
	return &http.Server{Handler: handler,
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: p.cfg.ReadTimeout, WriteTimeout: writeTimeout, IdleTimeout: p.cfg.IdleTimeout,
		ErrorLog: p.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
}

// status is GET /status: the live strip of the results page.
func (p *parent) status() func() readapi.Status {
	accepted := readapi.NewRate(10*time.Second, func() uint64 { return uint64(p.tally.counts().Accepted) })
	return func() readapi.Status {
		c := p.tally.counts()
		st := readapi.Status{
			Build:          p.build(),
			AcceptedPerSec: accepted.PerSec(),
			Accepted:       c.Accepted,
			Stored:         c.Stored,
			DeadLettered:   c.DeadLettered,
			NotStored:      c.NotStored,
			QueueDepth:     p.posts.Len(),
			QueueCapacity:  p.posts.Cap(),
			Draining:       p.draining(),
		}
		if p.spool != nil {
			st.SpoolBytes, _ = p.spool.Backlog()
			st.SpoolMax = p.spool.Max()
			st.SpoolFault = spoolCause(p.spool.Err())
			ss := p.spool.Stats()
			st.SpoolLostRecords, st.SpoolUncertainPosts, st.SpoolQuarantinedBytes = ss.LostRecords, ss.UncertainPosts, ss.Quarantined
		}
		for _, c := range p.children.states() {
			st.Children = append(st.Children, readapi.Child{Role: string(c.role), ID: c.id, PID: c.pid, State: c.state, Restarts: c.restarts})
		}
		if p.pubsub != nil {
			ps := p.pubsub.Stats()
			st.Sources = append(st.Sources, readapi.Source{Kind: "pubsub", Name: ps.Subscription, Reachable: ps.Unreachable == "",
				Error: ps.Unreachable, Received: ps.Received, Acked: ps.Acked, Nacked: ps.Nacked, Redelivered: ps.Redelivered,
				DeadLettered: ps.DeadLettered, Outstanding: ps.Outstanding})
		}
		st.Returned = c.Returned
		if p.hot != nil {
			st.HotPublication, st.HotWritesPerSec = p.hot.hottest()
		}
		return st
	}
}

// spoolCause is why the spool takes no posts, in words without file
// names; "" if it takes them.
func spoolCause(err error) string {
	var f *spool.Fault
	switch {
	case err == nil:
		return ""
	case errors.As(err, &f) && f.Sticky:
		return "a sync failed: this instance cannot keep posts any more (" + f.Cause() + ")"
	case errors.As(err, &f):
		return f.Cause()
	}
	return err.Error()
}

// ready is /readyz: every child running, the sink reachable and storing
// without a backlog, not draining. A stalled sink makes the parent not
// ready (and stops the feeding of workers), it never kills a worker.
func (p *parent) ready() error {
	if p.draining() {
		return errors.New("draining")
	}
	for _, st := range p.children.states() {
		if st.state != stateRunning.String() || !st.alive {
			return fmt.Errorf("%s %d is %s", st.role, st.id, st.state)
		}
	}
	if err := p.storing.failing(); err != nil {
		return fmt.Errorf("batches cannot be stored: %w", err)
	}
	if d := p.children.slowestStore(time.Now()); d > slowStore {
		return fmt.Errorf("the sink is slow: a batch has waited %s to be stored", d.Round(time.Second))
	}
	if p.spool != nil {
		if err := p.spool.Err(); err != nil {
			return fmt.Errorf("the spool cannot take posts: %s", spoolCause(err))
		}
		if bytes, _ := p.spool.Backlog(); bytes > p.spool.Max()/10*9 {
			return fmt.Errorf("the spool is nearly full: %.1f MiB of --spool-max %s", float64(bytes)/(1<<20), &p.cfg.SpoolMax)
		}
	}
	if n := p.batches.len(); n >= p.batchLimit {
		return fmt.Errorf("the sink is behind: %d batches wait for a saver (workers are not fed until fewer than %d wait)", n, p.batchLimit)
	}
	if p.pubsub != nil {
		if err := p.pubsub.Ready(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.store.Ping(ctx); err != nil {
		return fmt.Errorf("sink unreachable: %w", err)
	}
	return nil
}
