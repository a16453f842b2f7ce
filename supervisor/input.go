package supervisor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"sync/atomic"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// --input: a file read through the same pipeline as HTTP. The feeder reads
// it into the post queue, or with a spool into the spool with the file's
// position after each post, so that a run killed midway resumes after the
// last row spooled; at the end a summary is printed (progress.go shows
// how far it is meanwhile).

// inputFile is --input as the feeder reads it.
type inputFile struct {
	src         *input.Reader
	resumedRows atomic.Int64 // rows an earlier run on this data directory read, skipped by this one
	// earlier says what became of the rows an earlier run on this data
	// directory read of a file under this name; nil if none did. Like
	// readAll, the feeder sets it before it reports on fed.
	earlier *InputStart
	readAll bool // read to its end
}

// feed reads --input into the queue, waiting for room, until the end of
// the file or until the queue is closed by a signal. With a spool, the
// rows go to the spool, each post with the input's position after it, so
// that a run killed midway resumes after the last row spooled.
func (p *parent) feed() error {
	defer func() {
		if n := p.tally.counts().RowsSkipped; n > 0 {
			p.log.Warn("rows skipped because they are not valid posts", "skipped", n)
		}
	}()
	pos, err := p.resumeInput()
	if err != nil {
		return err
	}
	src := p.in.src
	for {
		rowAt := src.Offset()
		post, err := src.Next()
		if errors.Is(err, io.EOF) {
			p.in.readAll = true
			return nil
		}
		var rowErr *input.RowError
		if errors.As(err, &rowErr) {
			pos.Rows++ // recorded with the next post
			if p.tally.row(true) <= 10 {
				p.log.Warn("skipping row", "input", p.cfg.Input, "error", rowErr)
			}
			continue
		}
		if err != nil {
			return err
		}
		if p.spool != nil {
			pos.Rows++
			pos.Offset, pos.LastAt, pos.Hash = src.Offset(), rowAt, rowHash(&post)
			var at *spool.Position
			if pos.Source != "" {
				at = &pos
			}
			err = p.spool.Feed(p.ctx, []wire.Post{post}, at)
		} else {
			err = p.posts.Put(p.ctx, post)
		}
		if err == nil {
			p.tally.row(false)
			p.tally.accept(1)
		}
		if err != nil {
			if errors.Is(err, queue.ErrClosed) || errors.Is(err, spool.ErrClosed) || errors.Is(err, context.Canceled) {
				return nil
			}
			p.spoolFailed(err)
			return err
		}
	}
}

func per1000(n, posts int64) float64 {
	if posts == 0 {
		return 0
	}
	return float64(n) * 1000 / float64(posts)
}

// printSummary prints --input's summary on Options.Stdout: the counts,
// each publication with its top entities, the sink's work, the engine.
func (p *parent) printSummary(rep Report, unfinished error) {
	out, c := p.opts.Stdout, rep.Counts
	p.summary.print(out, p.cfg.Input, c.Accepted, c.Stored, c.DeadLettered, c.RowsSkipped, rep.Elapsed)
	fmt.Fprintf(out, "\nsink %s: %d commits, %d writes (per 1000 posts: %.1f commits, %.0f writes); %d documents touched, as many RPCs as a sink writing one document per RPC would make (%.0f per 1000 posts)\n",
		p.cfg.Sink, c.Commits, c.Writes, per1000(c.Commits, c.Accepted), per1000(c.Writes, c.Accepted),
		c.Documents, per1000(c.Documents, c.Accepted))
	p.printEngine(out)
	if unfinished != nil {
		fmt.Fprintf(out, "\nstopped before the end of %s: %v\n", p.cfg.Input, unfinished)
	}
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
