package supervisor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/wire"
)

// saverHost is what a saver incarnation calls of the parent (the parent
// implements it; the unit tests a fake). Its methods are safe for
// concurrent use and return at once.
type saverHost interface {
	// draining reports whether the run is draining: a saver is not
	// retired then, it is stopped.
	draining() bool
	// stored books a batch part the sink acknowledged as stored (a
	// duplicate too: an earlier attempt stored it).
	stored(item batchItem, ack wire.Ack)
	// storeFailing records whether the last part could be stored: the
	// sink's refusal, or nil once a part is stored again.
	storeFailing(err error)
}

// saverInc is one incarnation of a saver. It is sent one batch part at a
// time; the part stays the parent's until the saver acknowledges it.
type saverInc struct {
	host    saverHost
	batches *batchQueue
	cfg     *config.Config // --heartbeat-timeout
	id      int
	pro     *process
	// retryAfter is how long it waits before offering a part again after
	// the sink refused it: applyRetry.
	retryAfter time.Duration

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

func newSaverInc(host saverHost, batches *batchQueue, cfg *config.Config, id int) *saverInc {
	return &saverInc{host: host, batches: batches, cfg: cfg, id: id, retryAfter: applyRetry,
		acks: make(chan wire.Ack, 1), retire: make(chan struct{})}
}

func (p *parent) startSaver(id int) (incarnation, error) {
	s := newSaverInc(p, p.batches, &p.cfg, id)
	if _, err := p.launch(wire.RoleSaver, id, s); err != nil {
		return nil, err
	}
	p.children.watch(s)
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
		if hb.Draining && !s.pro.stopping.Load() && !s.host.draining() {
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
	for {
		item, ok := s.batches.take(ctx)
		if !ok {
			return why(ctx, s.retire)
		}
		s.sentAt.Store(time.Now().UnixNano())
		if err := s.pro.sendRaw(item.raw); err != nil {
			s.sentAt.Store(0)
			s.batches.requeue(item)
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
				if s.account(item, ack) == nil {
					return feedDied
				}
			default:
			}
			s.batches.requeue(item) // not known stored: a saver applies it again, idempotently
			return feedDied
		case <-parent.Done():
			s.sentAt.Store(0)
			s.batches.requeue(item)
			return feedDied
		}
		s.sentAt.Store(0)
		if err := s.account(item, ack); err != nil {
			s.host.storeFailing(err)
			s.batches.requeue(item)
			t := time.NewTimer(s.retryAfter)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		s.host.storeFailing(nil)
	}
}

// finish: a saver holds nothing between parts; feed already gave back the
// part it was sent.
func (s *saverInc) finish(clean bool) bool { return false }

// hung: silent past --heartbeat-timeout. A saver inside a slow commit still
// beats, so a slow sink is not a hang.
func (s *saverInc) hung(now time.Time) string {
	return silent(s.pro, now, s.cfg.HeartbeatTimeout)
}

// account books an acknowledged batch part with the parent. A duplicate
// was stored by an earlier attempt, so it counts as stored. An error means
// the part is not known stored: the sink refused it, or the saver
// acknowledged another part (a protocol error); the caller keeps the part
// and offers it again.
func (s *saverInc) account(item batchItem, ack wire.Ack) error {
	switch {
	case ack.ID != item.id:
		return fmt.Errorf("%s acknowledged batch %s while %s was outstanding", s.pro, ack.ID, item.id)
	case ack.Err != "":
		return fmt.Errorf("%s could not store batch %s: %s", s.pro, item.id, ack.Err)
	}
	s.host.stored(item, ack)
	return nil
}

// The parent's side of saverHost.

// stored books a part the sink acknowledged: in the --input summary, in
// the spool (the batch is forgotten once its last part is stored), and
// in the tally.
func (p *parent) stored(item batchItem, ack wire.Ack) {
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
	p.tally.store(item, ack)
	if p.hot != nil && !ack.Duplicate {
		p.hot.stored(item.raw)
	}
}

func (p *parent) storeFailing(err error) { p.storing.set(err) }

// storeHealth is whether batches can be stored: the sink's last refusal,
// until a batch is stored again. While there is one, the parent is not
// ready (/readyz says why). Safe for concurrent use.
type storeHealth struct {
	log hclog.Logger

	mu  sync.Mutex
	err error
}

// set records the outcome of the last batch, logging each change once.
func (h *storeHealth) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil && h.err == nil {
		h.log.Error("batches cannot be stored; keeping them and retrying, not ready meanwhile", "error", err)
	}
	if err == nil && h.err != nil {
		h.log.Info("batches are being stored again")
	}
	h.err = err
}

// failing is the sink's last refusal, nil once a batch was stored again.
func (h *storeHealth) failing() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
