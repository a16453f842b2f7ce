package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/source"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// Where posts come from: every source (package source) is driven here the
// same way, one reader goroutine each (drive), and what differs is said by
// the source itself:
//
//	source  AckPoint  Full    its batches go to                 acknowledged
//	http    accepted  refuse  the intake (spool, else queue)    201 once synced; a Refusal (503, 413) at once
//	input   accepted  wait    the spool with the file position  nothing to tell: the position is in the spool
//	pubsub  stored    wait    the post queue, keyed, unspooled  message acked once the batch counting it is stored
//
// An AckStored source's posts never enter the spool: its origin keeps
// them until the ack, so a node that dies for good loses nothing. They
// wait in pendingAcks meanwhile, by key, and a stored batch settles them
// (batchGroup.keys). A drain stops every source at once (closeSources): a
// broker's messages not yet read go back to it at the start of the drain,
// those in the pipeline are stored and acknowledged, and what the drain
// could not store is given back at its end (settleSources).

// openSources connects the run's sources: the --input file, or the HTTP
// intake (when listening) and the Pub/Sub subscription (when given).
func (p *parent) openSources() error {
	cfg := p.cfg
	if cfg.Input != "" {
		f := &source.File{Path: cfg.Input, MaxRow: cfg.MaxBody, Restart: cfg.InputRestart,
			DataDir: cfg.DataDirectory(), Log: p.log, OnSkip: p.skipRow}
		if p.spool != nil {
			if src := inputSource(cfg); src != "" {
				f.Source = src
				if at, ok := p.spool.Position(src); ok {
					f.Resume = &at
				}
			}
		}
		if err := f.Connect(p.ctx); err != nil {
			return err
		}
		p.in.src = f
		p.summary = newSummary()
		p.sources = append(p.sources, f)
		return nil
	}
	if p.ln != nil {
		p.httpIn = source.NewHTTP()
		p.sources = append(p.sources, p.httpIn)
	}
	if cfg.PubSubSubscription != "" {
		ps := source.NewPubSub(source.PubSubConfig{
			Subscription:        cfg.PubSubSubscription,
			Project:             cfg.Project,
			MaxOutstanding:      cfg.PubSubMaxOutstanding,
			MaxOutstandingBytes: int(cfg.PubSubMaxOutstandingBytes),
			MaxExtension:        cfg.PubSubMaxExtension,
			Streams:             cfg.PubSubStreams,
			MaxBody:             cfg.MaxBody,
			Log:                 p.log.Named("pubsub"),
		})
		if err := ps.Connect(p.ctx); err != nil {
			return err
		}
		p.pubsub = ps
		p.sources = append(p.sources, ps)
		p.metrics.reg.MustRegister(ps.Collectors()...)
	}
	return nil
}

// drive reads src until it has no more (io.EOF: a file's end, or the
// source closed at the drain) or the run is aborted, and delivers each
// batch as the source's AckPoint and Full say. The --input file's end,
// or its failure, goes to fed; another source that fails ends the run.
func (p *parent) drive(src source.Source) {
	var refused sync.WaitGroup // deliveries of a Refuse source, one per batch
	err := p.read(src, &refused)
	refused.Wait()
	if src == source.Source(p.in.src) && p.in.src != nil {
		if n := p.tally.counts().RowsSkipped; n > 0 {
			p.log.Warn("rows skipped because they are not valid posts", "skipped", n)
		}
		p.fed <- err
		return
	}
	if err != nil {
		p.giveUp(fmt.Errorf("reading from %s: %w", src.Name(), err))
	}
}

// read is drive's loop.
func (p *parent) read(src source.Source, refused *sync.WaitGroup) error {
	for {
		b, err := src.Read(p.ctx)
		switch {
		case errors.Is(err, io.EOF), err != nil && p.ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		switch {
		case src.AckPoint() == source.AckStored:
			p.deliverStored(b)
		case src.Full() == source.Refuse:
			// Concurrently: the spool's group commit then syncs many
			// requests at once, as when each handler called it.
			refused.Go(func() { b.Ack(p.intake().TryPutAll(b.Posts)) })
		default:
			if stop, err := p.deliverAccepted(b); stop {
				return err
			}
		}
	}
}

// deliverAccepted puts a batch of a Wait, AckAccepted source (the --input
// file) in the spool, with its position, or in the queue, waiting for
// room. stop says reading must stop: the intake closed (nil error), or
// it failed.
func (p *parent) deliverAccepted(b source.Batch) (stop bool, err error) {
	if p.spool != nil {
		err = p.spool.Feed(p.ctx, b.Posts, b.At)
	} else {
		for _, post := range b.Posts {
			if err = p.posts.Put(p.ctx, post); err != nil {
				break
			}
		}
	}
	if err == nil {
		for range b.Posts {
			p.tally.row(false)
		}
		p.tally.accept(len(b.Posts))
	}
	b.Ack(err)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, queue.ErrClosed) || errors.Is(err, spool.ErrClosed) || errors.Is(err, context.Canceled):
		return true, nil
	}
	p.spoolFailed(err)
	return true, err
}

// deliverStored puts a batch of an AckStored source (a broker's message)
// in the post queue, waiting for room, its ack held in pendingAcks until
// the batches counting its posts are stored. A message that is not a post
// becomes a dead letter, acknowledged once stored. A post the queue no
// longer takes (it closed for the drain) gives the message back, once
// its posts that were put in the queue are settled.
func (p *parent) deliverStored(b source.Batch) {
	pb := p.pending.begin(b.Ack)
	defer p.pending.close(pb)
	if inv := b.Invalid; inv != nil {
		p.pending.expect(pb, inv.Key)
		p.tally.accept(1)
		p.deadLetter(inv)
		return
	}
	for _, post := range b.Posts {
		p.pending.expect(pb, post.Key)
		if err := p.posts.Put(p.ctx, post); err != nil {
			p.pending.unexpect(pb, post.Key)
			return
		}
		p.tally.accept(1)
	}
}

// deadLetter hands a message that is not a post to the savers as a dead
// letter of its own. Its batch id is derived from the message's key, so
// that a message dead-lettered on two nodes (a redelivery) is stored once.
func (p *parent) deadLetter(inv *source.Invalid) {
	p.log.Error("message is not a post: storing it as a dead letter, then acknowledging it", "key", inv.Key, "why", inv.Reason, "bytes", len(inv.Data))
	b := wire.Batch{ID: keyedBatchID("invalid", inv.Key), Parts: 1, Posts: 1, Dead: []wire.DeadLetter{{
		Content: string(inv.Data), Error: inv.Reason, Attempts: inv.Attempts}}}
	raw, err := wire.NewEncoder(nil, 0).Marshal(&b)
	if err != nil {
		p.log.Error("cannot encode the dead letter; the message stays unacknowledged and is redelivered", "key", inv.Key, "error", err)
		return
	}
	p.handOn([]batchItem{{raw: raw, id: b.PartID(), posts: 1, dead: 1}}, nil, []string{inv.Key})
}

// keyedBatchID is the id of a batch made for one keyed post (a dead
// letter): the same on every node, so that the sink stores it once.
func keyedBatchID(kind, key string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// skipRow counts a row of --input that is not a valid post and logs the
// first ten.
func (p *parent) skipRow(err *input.RowError) {
	if p.tally.row(true) <= 10 {
		p.log.Warn("skipping row", "input", p.cfg.Input, "error", err)
	}
}

// closeSources stops every source at the start of the drain: the HTTP
// intake refuses, the file is read no further, a broker gets back the
// messages not yet read. Each Close then waits, in the background, until
// the batches it gave are acknowledged (settleSources ends that).
func (p *parent) closeSources() {
	p.closingCtx, p.stopClosing = context.WithCancel(context.Background())
	for _, src := range p.sources {
		p.closing.Go(func() {
			if err := src.Close(p.closingCtx); err != nil && !errors.Is(err, context.Canceled) {
				p.log.Warn("closing a source", "source", src.Name(), "error", err)
			}
		})
	}
}

// settleSources runs once no source is read any more and the children
// are done: what an AckStored source gave and the run did not store is
// given back (its origin redelivers it), counted as returned; then it
// waits for the sources to close (a broker's acknowledgements sent), at
// most closeWait.
func (p *parent) settleSources() {
	if n := p.pending.giveBackAll(source.ErrNotStored); n > 0 {
		p.tally.returned(n)
		p.log.Warn("posts not stored were given back to their broker, which redelivers them", "posts", n)
	}
	if p.stopClosing == nil {
		p.closeSources()
	}
	done := make(chan struct{})
	go func() {
		p.closing.Wait()
		close(done)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.log.Error("the sources did not close in time; exiting anyway", "waited", closeWait)
		p.stopClosing()
	}
	p.stopClosing()
}

// closeWait bounds settleSources' wait: a broker's acknowledgements are
// sent within seconds (source.PubSub waits 10 s at most).
const closeWait = 15 * time.Second
