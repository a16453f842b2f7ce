package child

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// Saver applies batches to a sink and acknowledges each.
type Saver struct {
	ID   int
	Sink sink.Sink
	Log  hclog.Logger
}

// Run sends the handshake, then applies each batch frame from in and
// answers it with an Ack on out, until a STOP frame, sending a Heartbeat
// every HeartbeatInterval. SIGTERM marks heartbeats Draining (the parent
// starts a replacement and sends STOP); the saver stores what it is sent
// until STOP.
func (s *Saver) Run(in io.Reader, out io.Writer, term <-chan os.Signal) error {
	enc := wire.NewEncoder(out, 0)
	if err := hello(enc, wire.RoleSaver, s.ID); err != nil {
		return fmt.Errorf("saver %d: send hello: %w", s.ID, err)
	}
	l := newLink(enc)
	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { l.beat(done, HeartbeatInterval) })
	bg.Go(func() {
		for {
			select {
			case <-term:
				s.Log.Debug("SIGTERM: storing what the parent sends until STOP; unless it sent the signal itself, the parent starts a replacement")
				l.draining.Store(true)
				l.heartbeat()
			case <-done:
				return
			}
		}
	})
	defer func() { close(done); bg.Wait() }()
	ctx := context.Background()
	return readFrames(in, func(f wire.Frame) error {
		var b wire.Batch
		if err := f.Decode(&b); err != nil {
			return fmt.Errorf("saver %d: %w", s.ID, err)
		}
		ack := s.apply(ctx, &b)
		return l.send(&ack)
	})
}

// apply stores b and says what happened in an Ack: through ApplyReport
// when the sink reports what it did, else through Apply and the sink's
// cumulative Counts (the saver applies one batch at a time).
func (s *Saver) apply(ctx context.Context, b *wire.Batch) wire.Ack {
	ack := wire.Ack{ID: b.PartID()}
	var res sink.Applied
	var err error
	if r, ok := s.Sink.(sink.Reporter); ok {
		res, err = r.ApplyReport(ctx, b)
	} else {
		counter, counts := s.Sink.(sink.Counter)
		var commits, writes int64
		if counts {
			commits, writes = counter.Counts()
		}
		res.Duplicate, err = s.Sink.Apply(ctx, b)
		if counts {
			c, w := counter.Counts()
			res.Commits, res.Writes = c-commits, w-writes
		}
	}
	ack.Commits, ack.Writes, ack.Reads = res.Commits, res.Writes, res.Reads
	switch {
	case err != nil:
		s.Log.Error("batch not stored", "batch", ack.ID, "error", err)
		ack.Err = err.Error()
	case res.Duplicate:
		s.Log.Info("batch was stored before; not applied again", "batch", ack.ID)
		ack.Duplicate = true
	case res.DuplicateKeys > 0:
		// A redelivered message, counted before by another batch or node.
		s.Log.Info("keyed posts counted before; not counted again", "batch", ack.ID,
			"duplicate_keys", res.DuplicateKeys, "keys_counted", res.Keys)
		ack.DuplicateKeys = res.DuplicateKeys
	}
	return ack
}
