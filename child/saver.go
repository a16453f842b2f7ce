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
		ack := wire.Ack{ID: b.PartID()}
		counter, counts := s.Sink.(sink.Counter)
		var commits, writes int64
		if counts {
			commits, writes = counter.Counts()
		}
		dup, err := s.Sink.Apply(ctx, &b)
		if counts {
			c, w := counter.Counts()
			ack.Commits, ack.Writes = c-commits, w-writes
		}
		if err != nil {
			s.Log.Error("batch not stored", "batch", ack.ID, "error", err)
			ack.Err = err.Error()
		} else if dup {
			s.Log.Info("batch was stored before; not applied again", "batch", ack.ID)
		}
		ack.Duplicate = dup
		return l.send(&ack)
	})
}
