package supervisor

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"sync/atomic"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/input"
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
	g := &batchGroup{spool: b.Seq}
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

// batchGroup ties the parts of one spooled batch together: the spool
// forgets it when the last part is stored.
type batchGroup struct {
	spool uint64 // the batch's spool record
	left  atomic.Int32
}

// partStored books one stored part of a spooled batch.
func (p *parent) partStored(item batchItem) {
	if g := item.group; g != nil && g.left.Add(-1) == 0 && p.spool != nil {
		p.spool.Stored(g.spool)
	}
}

// handOn gives a complete batch to the savers: at once without a spool,
// else once the spool holds it durably. covers are the spool numbers of
// the posts it covers. A batch the spool cannot record now (its disk is
// full or gone) waits in the spool, counted as waiting for a saver, so
// that workers are not fed meanwhile; it is never stored unrecorded, or
// the next start would count its posts again. A batch the spool can never
// record (it failed for good, or closed) is dropped: its posts stay in
// the spool and the next start counts them. handOn never blocks (it runs
// on a worker's stdout reader); the batch queue closes only after every
// batch handed on is settled (spooling).
func (p *parent) handOn(items []batchItem, covers []uint64) {
	if p.spool == nil || len(covers) == 0 {
		p.batches.push(items...)
		return
	}
	g := &batchGroup{}
	g.left.Store(int32(len(items)))
	raws := make([][]byte, len(items))
	for i := range items {
		items[i].group = g
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

// inputSource is the key of --input's position in the spool: its
// absolute path. "" for standard input, which cannot be resumed.
func inputSource(cfg config.Config) string {
	if cfg.Input == "-" || cfg.Input == "" {
		return ""
	}
	abs, err := filepath.Abs(cfg.Input)
	if err != nil {
		return ""
	}
	return abs
}

// rowHash identifies a row's post: the last row of a recorded position
// must hash the same when a run resumes, or the file is another one.
func rowHash(post *wire.Post) uint64 {
	f := fnv.New64a()
	f.Write([]byte(post.Publication))
	f.Write([]byte{0})
	f.Write([]byte(post.Content))
	return f.Sum64()
}

// resumeInput goes on with --input where an earlier run on this data
// directory stopped, if it is the same file: the rows before are skipped
// by their bytes, without decoding them, and the last of them must be the
// row recorded there. A file that ends before that position is refused
// (a shortened copy would count its rows again), unless --input-restart
// asks to read it from the start. It returns the position to continue
// from.
func (p *parent) resumeInput() (spool.Position, error) {
	src := inputSource(p.cfg)
	start := spool.Position{Source: src}
	if p.spool == nil || src == "" {
		return start, nil
	}
	at, ok := p.spool.Position(src)
	if !ok || at.Rows == 0 {
		return start, nil
	}
	if p.cfg.InputRestart {
		p.in.earlier = &InputStart{EarlierRows: at.Rows}
		p.log.Warn("--input-restart: reading --input from its first row; an earlier run on this data directory read part of it, and those rows are counted again",
			"input", p.cfg.Input, "rows_before", at.Rows)
		return start, nil
	}
	if err := p.in.src.SkipTo(at.LastAt); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return spool.Position{}, p.shortened(at)
		}
		return p.restartInput(at, err.Error())
	}
	post, err := p.in.src.Next()
	switch {
	case errors.Is(err, io.EOF):
		return spool.Position{}, p.shortened(at)
	case err == nil && rowHash(&post) == at.Hash && p.in.src.Offset() == at.Offset:
		p.in.resumedRows.Store(at.Rows)
		p.in.earlier = &InputStart{EarlierRows: at.Rows, Resumed: true}
		p.log.Info(fmt.Sprintf("resuming at row %d of %s: an earlier run on this data directory read the rows before it", at.Rows+1, p.cfg.Input),
			"input", p.cfg.Input, "rows_done", at.Rows, "skipped_bytes", at.Offset, "data_dir", p.cfg.DataDirectory())
		return at, nil
	}
	// Another row where the recorded one was: another file, unless this
	// one ends before the recorded position.
	for p.in.src.Offset() < at.Offset {
		_, err := p.in.src.Next()
		var rowErr *input.RowError
		if errors.Is(err, io.EOF) {
			return spool.Position{}, p.shortened(at)
		}
		if err != nil && !errors.As(err, &rowErr) {
			break
		}
	}
	why := fmt.Sprintf("row %d differs from the one read before", at.Rows)
	if err != nil {
		why = fmt.Sprintf("no post where row %d was (%v)", at.Rows, err)
	}
	return p.restartInput(at, why)
}

// shortened is the error for an --input that ends before where an
// earlier run stopped reading it.
func (p *parent) shortened(at spool.Position) error {
	return fmt.Errorf("--input %s ends before byte %d, where an earlier run on --data-dir %s stopped after %d rows: it is a shortened copy of the file read then, or another file under its name. "+
		"Reading it from its start would count those rows again: to do that, add --input-restart; to go on with the file read then, put it back",
		p.cfg.Input, at.Offset, p.cfg.DataDirectory(), at.Rows)
}

// restartInput reads --input from its start after all: it is not the file
// an earlier run read under that name.
func (p *parent) restartInput(at spool.Position, why string) (spool.Position, error) {
	p.in.earlier = &InputStart{EarlierRows: at.Rows}
	p.log.Warn("--input is not the file an earlier run read under this name: reading it from the start", "input", p.cfg.Input, "why", why, "rows_before", at.Rows)
	p.in.src.Close()
	src, err := input.Open(p.cfg.Input)
	if err != nil {
		return spool.Position{}, err
	}
	p.in.src = src
	return spool.Position{Source: inputSource(p.cfg)}, nil
}
