package supervisor

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// Durable acceptance (--durability fsync, the default). Every accepted
// post is appended to the spool, on disk, before its 201; the post queue
// in memory only holds what the spool pump read back for the workers. A
// worker's complete batch is appended to the spool too, with the spool
// numbers of the posts it covers, before any saver sees it; once every
// part is acknowledged the spool forgets both. A parent that died is
// restarted on the same data directory and finds, in the spool, the posts
// no batch covers (processed again) and the batches not known stored
// (offered to the savers again; the sink skips the parts it had stored,
// by their ids). So each post is counted once, whenever the parent dies.

// openSpool locks the data directory and opens the spool in it, logging
// what it recovered. The lock's descriptor goes to every child, so that a
// parent restarted after a crash waits until the old children are gone.
func (p *parent) openSpool() error {
	dir := p.cfg.SpoolDirectory()
	lock, err := spool.Acquire(p.cfg.DataDirectory(), p.log)
	if err != nil {
		return err
	}
	policy := spool.Repair
	if p.cfg.SpoolDamaged == config.SpoolDamagedRefuse {
		policy = spool.Refuse
	}
	sp, rec, err := spool.Open(spool.Options{Dir: dir, Sync: true, MaxBytes: int64(p.cfg.SpoolMax), OnDamage: policy, Log: p.log.Named("spool")})
	if err != nil {
		lock.Release()
		var corrupt *spool.CorruptionError
		if errors.As(err, &corrupt) {
			return err
		}
		return fmt.Errorf("%w: the spool in %s cannot be read; move the directory aside to start without it (what it holds is then not counted)", err, dir)
	}
	p.lock, p.spool = lock, sp
	var inBatches int64
	for _, b := range rec.Batches {
		n, err := p.requeueRecovered(b)
		if err != nil {
			return err
		}
		inBatches += n
	}
	p.tally.recovered(int64(rec.Posts) + inBatches)
	if rec.Posts > 0 || len(rec.Batches) > 0 {
		p.log.Info("recovered from the spool: posts not yet counted will be processed, batches not known stored offered to the sink again",
			"spool", dir, "posts", rec.Posts, "batches", len(rec.Batches),
			"posts_in_batches", inBatches, "segments", rec.Segments, "bytes", rec.Bytes)
	}
	if st := sp.Stats(); st.LostRecords > 0 {
		p.log.Error("the spool was damaged: records lost; see the lines above for where, and the quarantine for the bytes",
			"lost_records", st.LostRecords, "up_to_acknowledged_posts_lost", st.UncertainPosts,
			"quarantined_bytes", st.Quarantined, "quarantine", filepath.Join(dir, "quarantine"),
			"to_refuse_instead", "--spool-damaged=refuse")
	}
	return nil
}

// requeueRecovered puts a batch found in the spool on the batch queue and
// returns the number of posts it covers.
func (p *parent) requeueRecovered(b spool.Batch) (posts int64, err error) {
	g := &batchGroup{spool: b.Seq, spooled: true}
	items := make([]batchItem, 0, len(b.Parts))
	for _, raw := range b.Parts {
		f, err := wire.ParseFrame(raw)
		if err == nil && f.Kind != wire.KindBatch {
			err = fmt.Errorf("a %s frame", f.Kind)
		}
		var hdr wire.BatchInfo
		if err == nil {
			hdr, err = wire.PeekBatch(f.Payload)
		}
		if err != nil {
			return 0, fmt.Errorf("spool record %d holds a batch that cannot be read (%v): it is ingest's own file, so this is a bug or a disk error; move %s aside to start without it", b.Seq, err, p.cfg.SpoolDirectory())
		}
		items = append(items, batchItem{raw: raw, id: hdr.PartID(), posts: hdr.Posts, dead: hdr.Dead,
			entities: hdr.Entities, docs: hdr.Publications + hdr.Entities, group: g})
		posts += int64(hdr.Posts)
	}
	g.left.Store(int32(len(items)))
	p.batches.push(items...)
	return posts, nil
}

// batchGroup ties the parts of one batch together, when something waits
// for the last of them to be stored: the spool, which then forgets a
// spooled batch, and the keyed posts the batch covers, whose messages
// are acknowledged then (pendingAcks).
type batchGroup struct {
	spool   uint64 // the batch's spool record, when spooled
	spooled bool
	keys    []string // keys of the posts it covers (wire.Post.Key)
	left    atomic.Int32
}

// newBatchGroup ties items together, if anything waits for them: covers
// to spool, keys to settle. nil otherwise.
func newBatchGroup(items []batchItem, spooled bool, keys []string) *batchGroup {
	if !spooled && len(keys) == 0 {
		return nil
	}
	g := &batchGroup{spooled: spooled, keys: keys}
	g.left.Store(int32(len(items)))
	for i := range items {
		items[i].group = g
	}
	return g
}

// partStored books one stored part of a batch: once the last is stored,
// the spool forgets the batch and the messages of its keyed posts are
// acknowledged.
func (p *parent) partStored(item batchItem) {
	g := item.group
	if g == nil || g.left.Add(-1) != 0 {
		return
	}
	if g.spooled && p.spool != nil {
		p.spool.Stored(g.spool)
	}
	if len(g.keys) > 0 {
		p.pending.stored(g.keys)
	}
}

// handOn gives a complete batch to the savers: at once without a spool,
// else once the spool holds it durably. covers are the spool numbers of
// the posts it covers, keys the keys of its keyed posts (which are never
// spooled: a batch covering only those goes to the savers at once). A
// batch the spool cannot record now (its disk is
// full or gone) waits in the spool, counted as waiting for a saver, so
// that workers are not fed meanwhile; it is never stored unrecorded, or
// the next start would count its posts again. A batch the spool can never
// record (it failed for good, or closed) is dropped: its posts stay in
// the spool and the next start counts them. handOn never blocks (it runs
// on a worker's stdout reader); the batch queue closes only after every
// batch handed on is settled (spooling).
func (p *parent) handOn(items []batchItem, covers []uint64, keys []string) {
	spooled := p.spool != nil && len(covers) > 0
	g := newBatchGroup(items, spooled, keys)
	if !spooled {
		p.batches.push(items...)
		return
	}
	raws := make([][]byte, len(items))
	for i := range items {
		raws[i] = items[i].raw
	}
	p.spooling.Add(1)
	p.batches.expect(1)
	err := p.spool.AppendBatch(covers, raws, func(seq uint64, err error) {
		defer p.spooling.Done()
		if err != nil {
			p.batches.expect(-1)
			p.batchNotSpooled(err, items)
			return
		}
		g.spool = seq // before any saver can see the parts
		p.batches.arrive(items...)
	})
	if err != nil {
		p.spooling.Done()
		p.batches.expect(-1)
		p.batchNotSpooled(err, items)
	}
}

// batchNotSpooled drops a batch the spool can never record: its posts
// are in the spool, not covered, and the next start processes them.
func (p *parent) batchNotSpooled(err error, items []batchItem) {
	n := 0
	for _, it := range items {
		n += it.posts
	}
	if errors.Is(err, spool.ErrClosed) {
		p.log.Warn("a batch finished as the spool closed: its posts stay in the spool, and the next start counts them", "posts", n)
		return
	}
	p.log.Error("a batch cannot be recorded in the spool: its posts stay there, and the next start counts them", "posts", n, "error", err)
	p.spoolFailed(err)
}

// spoolFailed ends the run once the spool failed for good (a failed
// fdatasync): nothing more can be recorded, so the parent drains what it
// can and exits non-zero; a restart recovers what is on disk.
func (p *parent) spoolFailed(err error) {
	var f *spool.Fault
	if !errors.As(err, &f) || !f.Sticky {
		return
	}
	p.spoolFail.Do(func() {
		p.giveUp(fmt.Errorf("the spool cannot be trusted after a failed sync (%w): restart ingest; it recovers what is on disk", err))
	})
}

// pumpSpool reads spooled posts back into the post queue as the workers
// take them, and closes the queue when the spool has no more (after
// CloseIntake) or the run is aborted.
func (p *parent) pumpSpool() {
	defer p.posts.Close()
	for {
		post, ok := p.spool.Next(p.ctx)
		if !ok {
			p.spoolFailed(p.spool.Err())
			return
		}
		if err := p.posts.Put(p.ctx, post); err != nil {
			return
		}
	}
}

// closeIntake stops accepting posts; the workers still get every post
// accepted.
func (p *parent) closeIntake() {
	if p.spool != nil {
		p.spool.CloseIntake()
		return
	}
	p.posts.Close()
}
