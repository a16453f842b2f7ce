package child

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/aggregate"
	"github.com/ingest-dev/ingest/wire"
)

// Extractor is what a worker needs of package ner: the entity words of a
// text, or an error that quarantines the post. *ner.Extractor is the one
// ingest runs; tests pass their own.
type Extractor interface {
	Words(text string) ([]string, error)
}

// Worker extracts entities from posts and flushes aggregated batches.
type Worker struct {
	ID            int
	Extractor     Extractor
	CacheSize     int           // flush when this many posts are held
	FlushInterval time.Duration // flush when the oldest held post is this old
	TopN          int           // entities per publication per flush; 0 = all
	Log           hclog.Logger
	MaxFrame      int // 0 = wire.DefaultMaxFrame

	// enc marshals batches and never writes: link has its own encoder,
	// because an Encoder is not safe for concurrent use and the heartbeat
	// ticker encodes through link while a flush marshals its parts.
	enc   *wire.Encoder
	link  *link
	cache *aggregate.Cache
	// beatEvery is the heartbeat interval, HeartbeatInterval when 0; only
	// this package's tests shorten it.
	beatEvery time.Duration
}

// Run sends the handshake, then processes posts from in until a STOP frame,
// flushes and returns nil. After each post, and every HeartbeatInterval, it
// sends a Heartbeat. SIGTERM on term flushes at once, marks heartbeats
// Draining (the parent then routes elsewhere, starts a replacement and
// sends STOP) and carries on until STOP.
// It returns ErrParentGone if in ends without STOP (nothing is flushed:
// nobody could receive it). Run owns the goroutine reading in; it has
// ended when Run returns, except after ErrParentGone-like write failures,
// after which the process is expected to exit.
func (w *Worker) Run(in io.Reader, out io.Writer, term <-chan os.Signal) error {
	w.enc = wire.NewEncoder(out, w.MaxFrame)
	w.link = newLink(wire.NewEncoder(out, w.MaxFrame))
	w.cache = aggregate.New()
	if err := hello(w.link.enc, wire.RoleWorker, w.ID); err != nil {
		return fmt.Errorf("worker %d: send hello: %w", w.ID, err)
	}
	stopBeat := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		w.link.beat(stopBeat, cmp.Or(w.beatEvery, HeartbeatInterval))
	}()
	defer func() { close(stopBeat); <-beating }()
	w.Log.Debug("worker ready", "cache_size", w.CacheSize, "flush_interval", w.FlushInterval.String(), "top_n", w.TopN)

	posts := make(chan wire.Post, 16)
	readErr := make(chan error, 1)
	go func() {
		defer close(posts)
		readErr <- readFrames(in, func(f wire.Frame) error {
			var p wire.Post
			if err := f.Decode(&p); err != nil {
				return fmt.Errorf("worker %d: %w", w.ID, err)
			}
			posts <- p
			return nil
		})
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		if deadline, ok := w.cache.Deadline(w.FlushInterval); ok {
			timer.Reset(time.Until(deadline))
			due = timer.C
		}
		select {
		case p, ok := <-posts:
			if !ok {
				if err := <-readErr; err != nil {
					return err
				}
				return w.flush("stop")
			}
			began := time.Now()
			w.process(p)
			w.link.done.Store(p.Seq)
			if err := w.link.progress(time.Since(began)); err != nil {
				return fmt.Errorf("worker %d: report progress: %w", w.ID, err)
			}
			if w.cache.Due(time.Now(), w.CacheSize, w.FlushInterval) {
				if err := w.flush("due"); err != nil {
					return err
				}
			}
		case <-due:
			if err := w.flush("interval"); err != nil {
				return err
			}
		case <-term:
			w.Log.Debug("SIGTERM: flushing now and finishing the posts already sent until STOP; unless it sent the signal itself, the parent starts a replacement")
			w.link.draining.Store(true)
			if err := w.flush("sigterm"); err != nil {
				return err
			}
			if err := w.link.heartbeat(); err != nil {
				return fmt.Errorf("worker %d: report draining: %w", w.ID, err)
			}
		}
	}
}

func (w *Worker) process(p wire.Post) {
	words, err := w.Extractor.Words(p.Content)
	now := time.Now()
	if err != nil {
		w.Log.Error("post quarantined: NER failed", "seq", p.Seq, "publication", p.Publication, "error", err)
		w.cache.AddDead(p.Seq, wire.DeadLetter{Key: p.Key, Publication: p.Publication, Content: p.Content, Error: err.Error(), Attempts: p.Attempts + 1}, now)
		return
	}
	if p.Key != "" {
		// Apart from the others, so that the sink can count it once
		// whatever batch it comes in (see package aggregate).
		w.cache.AddKeyed(p.Seq, p.Key, p.Publication, words, now)
		return
	}
	w.cache.Add(p.Seq, p.Publication, words, now)
}

// flush sends everything held as one batch, split into parts only if it
// would exceed the frame limit.
func (w *Worker) flush(why string) error {
	if w.cache.Posts() == 0 {
		return nil
	}
	b := w.cache.Flush(w.TopN)
	b.ID, b.Worker = wire.NewBatchID(), w.ID
	for parts := 1; ; parts *= 2 {
		err := w.sendParts(aggregate.Split(b, parts))
		if err == nil {
			w.Log.Debug("flushed", "why", why, "batch", b.ID, "posts", b.Posts, "publications", len(b.Publications), "keyed", len(b.Keyed), "parts", parts)
			return nil
		}
		if !errors.Is(err, wire.ErrFrameTooLarge) || parts >= 1<<16 {
			return fmt.Errorf("worker %d: send batch %s: %w", w.ID, b.ID, err)
		}
	}
}

// sendParts encodes every part before writing any, so a too-large part
// leaves nothing half sent.
func (w *Worker) sendParts(parts []wire.Batch) error {
	frames := make([][]byte, len(parts))
	for i := range parts {
		f, err := w.enc.Marshal(&parts[i])
		if err != nil {
			return err
		}
		frames[i] = f
	}
	return w.link.sendFrames(frames)
}
