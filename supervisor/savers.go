package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// batchItem is a batch part on its way from a worker to a saver.
type batchItem struct {
	raw   []byte // the whole frame, forwarded as is
	id    string // Batch.PartID()
	posts int    // posts covered, dead letters included (last part only)
	dead  int
	// entities and docs size the batch: entity rows, and documents the
	// original application wrote one RPC each (publications + entities).
	entities, docs int
}

// saverProc is one incarnation of a saver.
type saverProc struct {
	*process
	id   int
	acks chan wire.Ack // from the reader to the slot runner; one batch is outstanding at a time

	mu        sync.Mutex
	lastFrame time.Time

	retire     chan struct{}
	retireOnce sync.Once
}

func (s *saverProc) askRetire() { s.retireOnce.Do(func() { close(s.retire) }) }

// applyRetry is how long a slot waits before offering a batch again after
// the sink refused it.
const applyRetry = 2 * time.Second

func (r *run) onSaverFrame(s *saverProc) func(*process, wire.Frame) error {
	return func(p *process, f wire.Frame) error {
		s.mu.Lock()
		s.lastFrame = time.Now()
		s.mu.Unlock()
		switch f.Kind {
		case wire.KindHeartbeat:
			var hb wire.Heartbeat
			if err := f.Decode(&hb); err != nil {
				return err
			}
			r.observeChild(p, hb)
			if stopping, _ := p.state(); hb.Draining && !stopping && !r.draining.Load() {
				s.askRetire()
			}
			return nil
		case wire.KindAck:
			var ack wire.Ack
			if err := f.Decode(&ack); err != nil {
				return err
			}
			select {
			case s.acks <- ack:
			case <-r.ctx.Done():
			}
			return nil
		}
		return fmt.Errorf("unexpected %s frame from a saver", f.Kind)
	}
}

// runSaver owns saver slot id for the whole run: it starts the saver, sends
// it batches one at a time, restarts it when it dies (the batch it held
// goes to a saver again, and is applied idempotently), and returns once the
// batch queue is closed and drained and the saver exited cleanly, or when
// the run is aborted or the savers' restart budget is spent.
func (r *run) runSaver(id int, first *saverProc) {
	var pace backoff
	next := first
	for {
		s := next
		next = nil
		if s == nil {
			var err error
			if s, err = r.startSaver(id); err != nil {
				if !r.restartAllowed(wire.RoleSaver, id, reasonStartFailed, err) || !pace.wait(r.ctx, 0) {
					return
				}
				continue
			}
		}
		r.setCurrent(wire.RoleSaver, id, s.process, nil)
		started := time.Now()
		switch r.feedSaver(s) {
		case fedAll:
			s.stop("drain")
			<-s.exited
			if stopping, killed := s.state(); stopping && killed == "" && s.err == nil {
				return
			}
			s.log.Error("saver failed while stopping", "status", r.exitError(s.process))
		case feedRetire:
			s.log.Info("replacing saver: starting a new one first", "why", "it was sent SIGTERM")
			repl, err := r.startSaver(id)
			r.retiring.Go(func() {
				s.stop("retire")
				<-s.exited
			})
			if err != nil {
				s.log.Error("could not start a replacement saver", "error", err)
				if !r.restartAllowed(wire.RoleSaver, id, reasonStartFailed, err) || !pace.wait(r.ctx, 0) {
					return
				}
				continue
			}
			r.metrics.restarts.WithLabelValues(string(wire.RoleSaver), reasonRetired).Inc()
			next = repl
			continue
		case feedDied:
			<-s.exited
			if !r.aborted() {
				s.log.Error("saver died", "status", r.exitError(s.process))
			}
		}
		if !r.restartAllowed(wire.RoleSaver, id, deathReason(s.process), r.exitError(s.process)) || !pace.wait(r.ctx, time.Since(started)) {
			return
		}
	}
}

// feedSaver sends batches to s, one at a time, until the batch queue is
// closed and empty, s dies, or s asks to retire. A batch s did not
// acknowledge goes back to the front of the queue.
func (r *run) feedSaver(s *saverProc) feedResult {
	ctx, stop := r.feeding(s.exited, s.retire)
	defer stop()
	for {
		item, ok := r.batches.Take(ctx)
		if !ok {
			return why(ctx, s.retire)
		}
		if err := s.enc.WriteRaw(item.raw); err != nil {
			r.batches.Requeue([]batchItem{item})
			return feedDied
		}
		select {
		case ack := <-s.acks:
			if err := r.account(s, item, ack); err != nil {
				r.storeFailing(err)
				r.batches.Requeue([]batchItem{item})
				t := time.NewTimer(applyRetry)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
				continue
			}
			r.storeFailing(nil)
		case <-s.exited:
			r.batches.Requeue([]batchItem{item})
			return feedDied
		case <-r.ctx.Done():
			r.batches.Requeue([]batchItem{item})
			return feedDied
		}
	}
}

// account books an acknowledged batch part. A duplicate was stored by an
// earlier attempt, so it counts as stored. An error means the sink refused
// it: the caller keeps the batch and offers it again.
func (r *run) account(s *saverProc, item batchItem, ack wire.Ack) error {
	switch {
	case ack.ID != item.id:
		return fmt.Errorf("%s acknowledged batch %s while %s was outstanding", s, ack.ID, item.id)
	case ack.Err != "":
		return fmt.Errorf("%s could not store batch %s: %s", s, item.id, ack.Err)
	}
	r.stored.Add(int64(item.posts - item.dead))
	r.dead.Add(int64(item.dead))
	r.commits.Add(ack.Commits)
	r.writes.Add(ack.Writes)
	r.metrics.commits.Add(float64(ack.Commits))
	r.metrics.writes.Add(float64(ack.Writes))
	r.metrics.entities.Add(float64(item.entities))
	r.metrics.batches.Inc()
	if ack.Duplicate {
		r.metrics.duplicates.Inc()
	}
	return nil
}

// storeFailing records whether the last batch could be stored; while it
// could not, the parent is not ready and says why.
func (r *run) storeFailing(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && r.storeErr == nil {
		r.log.Error("batches cannot be stored; keeping them and retrying, not ready meanwhile", "error", err)
	}
	if err == nil && r.storeErr != nil {
		r.log.Info("batches are being stored again")
	}
	r.storeErr = err
}

func (r *run) startSaver(id int) (*saverProc, error) {
	if r.aborted() {
		return nil, errors.New("not starting a saver: the parent is shutting down")
	}
	s := &saverProc{id: id, acks: make(chan wire.Ack, 1), retire: make(chan struct{}), lastFrame: time.Now()}
	p, err := startProcess(r.exe, r.cfg.ChildArgs(wire.RoleSaver, id), wire.RoleSaver, id, r.log, r.onSaverFrame(s))
	if err != nil {
		return nil, err
	}
	s.process = p
	r.watch(s)
	return s, nil
}
