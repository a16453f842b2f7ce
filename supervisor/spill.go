package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// A spill is what a shutdown could not store in time, written so that
// nothing accepted is lost:
//
//   - ingest-spill-<time>-batches.ndjson: batches the workers produced but
//     no saver stored. `ingest --replay FILE` applies them; each carries its
//     batch id, so replaying twice counts once.
//   - ingest-spill-<time>-posts.ndjson: accepted posts no batch covered
//     yet, as {"publication", "content"} lines. None of them was counted,
//     so `ingest --input FILE` ingests them exactly once.

// spillStamp is the layout of the time in a spill file's name.
const spillStamp = "20060102T150405Z"

// spill writes whatever is left in the queues after the run ended, and
// returns the files written (none if nothing was left). Batches and posts are
// spilled independently, so that one failing does not cost the other. Each
// goes to --spill-dir (by default the directory of --db) or, if that
// fails (a full disk is the usual reason a drain ran out of time), to the
// system's temporary directory; a file that could not be completed is
// removed, so that no spill file is ever partial or empty; and what no
// file could take is written to the log, one item a line, rather than
// dropped.
func (p *parent) spill() ([]string, error) {
	batches := p.batches.drain()
	var posts []wire.Post
	for _, post := range p.posts.Drain() {
		if post.Key == "" { // a keyed post's message was given back: its broker redelivers it
			posts = append(posts, post)
		}
	}
	if len(batches) == 0 && len(posts) == 0 {
		return nil, nil
	}
	dirs := []string{p.cfg.SpillDirectory()}
	if tmp := os.TempDir(); filepath.Clean(tmp) != filepath.Clean(dirs[0]) {
		dirs = append(dirs, tmp)
	}
	stamp := time.Now().UTC().Format(spillStamp)
	var written []string
	var failed error
	if len(batches) > 0 {
		lines := make([]any, 0, len(batches))
		for _, it := range batches {
			var b wire.Batch
			f, err := wire.ParseFrame(it.raw)
			if err == nil {
				err = f.Decode(&b)
			}
			if err != nil { // cannot happen for frames the parent built or checked
				failed = errors.Join(failed, fmt.Errorf("batch %s cannot be decoded for the spill: %w", it.id, err))
				continue
			}
			lines = append(lines, &b)
		}
		path, err := p.spillTo(dirs, "ingest-spill-"+stamp+"-batches.ndjson", "batch", lines)
		if err == nil {
			p.log.Error("batches not stored were written to a spill file; apply them with `ingest --replay FILE`",
				"file", path, "batches", len(lines))
			written = append(written, path)
		}
		failed = errors.Join(failed, err)
	}
	if len(posts) > 0 {
		lines := make([]any, len(posts))
		for i := range posts {
			lines[i] = &posts[i]
		}
		path, err := p.spillTo(dirs, "ingest-spill-"+stamp+"-posts.ndjson", "post", lines)
		if err == nil {
			p.log.Error("accepted posts not processed were written to a spill file; ingest them with `ingest --input FILE`",
				"file", path, "posts", len(posts))
			written = append(written, path)
		}
		failed = errors.Join(failed, err)
	}
	return written, failed
}

// spillTo writes lines as NDJSON to name in the first of dirs that takes
// the whole file. If none does, it logs every line (under what) and
// returns an error saying so.
func (p *parent) spillTo(dirs []string, name, what string, lines []any) (string, error) {
	var errs error
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		err := writeLines(path, lines)
		if err == nil {
			return path, nil
		}
		p.log.Error("could not write a spill file; trying the next place", "file", path, "error", err)
		errs = errors.Join(errs, fmt.Errorf("spill %d %ss to %s: %w", len(lines), what, path, err))
	}
	for _, l := range lines {
		b, _ := json.Marshal(l)
		p.log.Error("not stored and no spill file could take it: it follows in this line", what, string(b))
	}
	return "", fmt.Errorf("%w; every %s is in the log instead, one a line", errs, what)
}

// writeLines writes lines as NDJSON to a new file at path and syncs it. On
// any failure it removes the file, so that a spill file is complete or
// absent.
func writeLines(path string, lines []any) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// checkSpillDir makes sure --spill-dir (or the directory of --db) exists
// and takes files, so that a drain that runs out of time has somewhere to
// put what it could not store.
func checkSpillDir(cfg config.Config) error {
	dir := cfg.SpillDirectory()
	fi, err := os.Stat(dir)
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".ingest-spill-check-*"); err == nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("--spill-dir %s: %w: a drain that runs out of time writes what it could not store there; give a writable directory", dir, err)
	}
	return nil
}

// replayWithin is the oldest spill file Replay applies without
// --replay-stale: a day inside the sink's replay horizon, so that every
// batch of the file that was stored before the spill (a saver that
// committed but was killed before its acknowledgement) is still
// remembered by the sink.
const replayWithin = sink.ReplayHorizon - 24*time.Hour

// Replay applies the batches of a spill file (--replay) to the sink. Each
// batch is applied idempotently, so a file replayed twice, or a batch that
// was in fact stored before the spill, counts once — as long as the sink
// still remembers the batches stored around the spill (sink.ReplayHorizon):
// a file spilled more than replayWithin ago is refused unless
// --replay-stale.
func Replay(cfg config.Config, opts Options) error {
	f, err := os.Open(cfg.Replay)
	if err != nil {
		return fmt.Errorf("--replay: %w: give the path of an ingest-spill-…-batches.ndjson file", err)
	}
	defer f.Close()
	spilled, err := spillTime(f)
	if err != nil {
		return fmt.Errorf("--replay %s: %w", cfg.Replay, err)
	}
	if age := time.Since(spilled); age > replayWithin {
		if !cfg.ReplayStale {
			return fmt.Errorf("--replay %s: spilled %s ago (%s), and the sink forgets applied batches after %s: "+
				"a batch of this file that was stored before the spill would count twice; "+
				"add --replay-stale to apply it anyway, or leave it out",
				cfg.Replay, age.Round(time.Hour), spilled.UTC().Format(time.RFC3339), sink.ReplayHorizon)
		}
		opts.Log.Warn("replaying a spill file older than the replay horizon (--replay-stale): a batch stored before the spill counts twice",
			"file", cfg.Replay, "spilled", spilled.UTC(), "horizon", sink.ReplayHorizon)
	}
	ctx := context.Background()
	s, err := sink.Open(ctx, sink.Config{Kind: cfg.Sink, DB: cfg.DB, Project: cfg.Project, KeyTTL: cfg.KeyTTL, Logger: opts.Log.Named("sink")})
	if err != nil {
		return err
	}
	defer s.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	var applied, duplicate, posts int
	for line := 1; ; line++ {
		var sb wire.Batch
		err := dec.Decode(&sb)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("--replay %s: batch %d: %w: the file is not a batches spill file, or it is damaged", cfg.Replay, line, err)
		}
		if sb.ID == "" {
			return fmt.Errorf("--replay %s: batch %d has no id: posts spill files are ingested with --input, not --replay", cfg.Replay, line)
		}
		dup, err := s.Apply(ctx, &sb)
		if err != nil {
			return fmt.Errorf("--replay %s: batch %d (%s): %w", cfg.Replay, line, sb.ID, err)
		}
		if dup {
			duplicate++
		} else {
			applied++
			posts += sb.Posts
		}
	}
	opts.Log.Info("replayed", "file", cfg.Replay, "applied", applied, "already_stored", duplicate, "posts", posts, "sink", cfg.Sink)
	return nil
}

// spillTime is when the spill file f was written: the time in its name
// (ingest-spill-<time>-batches.ndjson), which a copy keeps, else its
// modification time.
func spillTime(f *os.File) (time.Time, error) {
	name := filepath.Base(f.Name())
	if rest, ok := strings.CutPrefix(name, "ingest-spill-"); ok && len(rest) >= len(spillStamp) {
		if t, err := time.Parse(spillStamp, rest[:len(spillStamp)]); err == nil {
			return t, nil
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
