package supervisor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// saverInc is one incarnation of a saver. It is sent one batch part at a
// time; the part stays the parent's until the saver acknowledges it.
type saverInc struct {
	p   *parent
	id  int
	pro *process

	// acks carries the saver's acknowledgement from the stdout reader to
	// the feeder. One part is outstanding at a time, so one slot is
	// enough; a second ack would be a protocol error, never a wait.
	acks chan wire.Ack

	retire     chan struct{}
	retireOnce sync.Once

	// sentAt is when the outstanding part was sent (unix nanoseconds), 0
	// when none is: readiness watches how long the sink takes.
	sentAt atomic.Int64
}

// slowStore is how long a batch part may wait for the sink before the
// parent says it is not ready: a commit takes well under a second.
const slowStore = 5 * time.Second

// storingFor is how long the outstanding part has waited for the sink, 0
// when none is outstanding.
func (s *saverInc) storingFor(now time.Time) time.Duration {
	if at := s.sentAt.Load(); at != 0 {
		return now.Sub(time.Unix(0, at))
	}
	return 0
}

// applyRetry is how long a saver waits before offering a batch again after
// the sink refused it.
const applyRetry = 2 * time.Second

func (p *parent) startSaver(id int) (incarnation, error) {
	s := &saverInc{p: p, id: id, acks: make(chan wire.Ack, 1), retire: make(chan struct{})}
	if _, err := p.launch(wire.RoleSaver, id, s); err != nil {
		return nil, err
	}
	p.watch(s)
	return s, nil
}

func (s *saverInc) proc() *process    { return s.pro }
func (s *saverInc) bind(pro *process) { s.pro = pro }
func (s *saverInc) inflight() int     { return 0 }
func (s *saverInc) retireWhy() string { return "it was sent SIGTERM" }

// onFrame handles a frame from the saver's stdout, on the reader
// goroutine, without blocking.
func (s *saverInc) onFrame(f wire.Frame) error {
	switch f.Kind {
	case wire.KindHeartbeat:
		var hb wire.Heartbeat
		if err := f.Decode(&hb); err != nil {
			return err
		}
		s.pro.observe(&hb)
		if hb.Draining && !s.pro.stopping.Load() && !s.p.draining.Load() {
			s.retireOnce.Do(func() { close(s.retire) })
		}
		return nil
	case wire.KindAck:
		var ack wire.Ack
		if err := f.Decode(&ack); err != nil {
			return err
		}
		select {
		case s.acks <- ack:
			return nil
		default:
			return fmt.Errorf("acknowledgement of batch %s while another was not yet taken: one batch is outstanding at a time", ack.ID)
		}
	}
	return fmt.Errorf("unexpected %s frame from a saver", f.Kind)
}

// feed sends batch parts to the saver, one at a time, until the batch queue
// is closed and empty, the saver dies, or it asks to retire. A part the
// saver did not acknowledge as stored goes back to the front of the queue.
func (s *saverInc) feed(ctx context.Context) feedResult {
	parent := ctx
	ctx, stop := feeding(ctx, s.pro.exited, s.retire)
	defer stop()
	p := s.p
	for {
		item, ok := p.batches.take(ctx)
		if !ok {
			return why(ctx, s.retire)
		}
		s.sentAt.Store(time.Now().UnixNano())
		if err := s.pro.sendRaw(item.raw); err != nil {
			s.sentAt.Store(0)
			p.batches.requeue(item)
			return feedDied
		}
		// Wait for the outcome even if the saver asked to retire meanwhile.
		var ack wire.Ack
		select {
		case ack = <-s.acks:
		case <-s.pro.exited:
			s.sentAt.Store(0)
			<-s.pro.drained // an ack it sent before dying is in s.acks by now
			select {
			case ack = <-s.acks:
				if p.account(s.pro, item, ack) == nil {
					return feedDied
				}
			default:
			}
			p.batches.requeue(item) // not known stored: a saver applies it again, idempotently
			return feedDied
		case <-parent.Done():
			s.sentAt.Store(0)
			p.batches.requeue(item)
			return feedDied
		}
		s.sentAt.Store(0)
		if err := p.account(s.pro, item, ack); err != nil {
			p.storeFailing(err)
			p.batches.requeue(item)
			t := time.NewTimer(applyRetry)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		p.storeFailing(nil)
	}
}

// finish: a saver holds nothing between parts; feed already gave back the
// part it was sent.
func (s *saverInc) finish(clean bool) bool { return false }

// hung: silent past --heartbeat-timeout. A saver inside a slow commit still
// beats, so a slow sink is not a hang.
func (s *saverInc) hung(now time.Time) string {
	if d := s.pro.silentFor(now); d > s.p.cfg.HeartbeatTimeout {
		return fmt.Sprintf("silent for %s (--heartbeat-timeout %s)", d.Round(time.Millisecond), s.p.cfg.HeartbeatTimeout)
	}
	return ""
}

// account books an acknowledged batch part. A duplicate was stored by an
// earlier attempt, so it counts as stored. An error means the sink refused
// it: the caller keeps the batch and offers it again.
func (p *parent) account(proc *process, item batchItem, ack wire.Ack) error {
	switch {
	case ack.ID != item.id:
		return fmt.Errorf("%s acknowledged batch %s while %s was outstanding", proc, ack.ID, item.id)
	case ack.Err != "":
		return fmt.Errorf("%s could not store batch %s: %s", proc, item.id, ack.Err)
	}
	if p.summary != nil {
		// The summary shows what was stored, so it counts a batch here,
		// once the sink acknowledged it (a duplicate too: the parent
		// learns only now that an earlier attempt stored it), not when a
		// worker sent it.
		if err := p.summary.addFrame(item.raw); err != nil {
			p.log.Error("the --input summary cannot read a stored batch; its counts are in the sink, not in the summary", "batch", item.id, "error", err)
		}
	}
	p.partStored(item)
	p.stored.Add(int64(item.posts - item.dead))
	p.dead.Add(int64(item.dead))
	p.commits.Add(ack.Commits)
	p.writes.Add(ack.Writes)
	p.metrics.commits.Add(float64(ack.Commits))
	p.metrics.writes.Add(float64(ack.Writes))
	p.metrics.entities.Add(float64(item.entities))
	p.metrics.batches.Inc()
	if ack.Duplicate {
		p.metrics.duplicates.Inc()
	}
	return nil
}

// storeFailing records whether the last batch could be stored; while it
// could not, the parent is not ready and says why.
func (p *parent) storeFailing(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.storeErr == nil {
		p.log.Error("batches cannot be stored; keeping them and retrying, not ready meanwhile", "error", err)
	}
	if err == nil && p.storeErr != nil {
		p.log.Info("batches are being stored again")
	}
	p.storeErr = err
}
