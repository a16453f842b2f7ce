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

// spill writes whatever is left in the queues after the run ended. It
// returns the files written ("" if nothing was left).
func (p *parent) spill() (string, error) {
	batches := p.batches.drain()
	posts := p.posts.Drain()
	if len(batches) == 0 && len(posts) == 0 {
		return "", nil
	}
	dir := p.cfg.SpillDirectory()
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var written []string
	if len(batches) > 0 {
		path := filepath.Join(dir, "ingest-spill-"+stamp+"-batches.ndjson")
		err := writeLines(path, len(batches), func(i int) (any, error) {
			f, err := wire.ParseFrame(batches[i].raw)
			if err != nil {
				return nil, err
			}
			var b wire.Batch
			if err := f.Decode(&b); err != nil {
				return nil, err
			}
			return &b, nil
		})
		if err != nil {
			return "", fmt.Errorf("spill %d unstored batches to %s: %w", len(batches), path, err)
		}
		p.log.Error("batches not stored were written to a spill file; apply them with `ingest --replay FILE`",
			"file", path, "batches", len(batches))
		written = append(written, path)
	}
	if len(posts) > 0 {
		path := filepath.Join(dir, "ingest-spill-"+stamp+"-posts.ndjson")
		err := writeLines(path, len(posts), func(i int) (any, error) {
			return &posts[i], nil
		})
		if err != nil {
			return "", fmt.Errorf("spill %d unprocessed posts to %s: %w", len(posts), path, err)
		}
		p.log.Error("accepted posts not processed were written to a spill file; ingest them with `ingest --input FILE`",
			"file", path, "posts", len(posts))
		written = append(written, path)
	}
	return fmt.Sprint(written), nil
}

func writeLines(path string, n int, line func(int) (any, error)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range n {
		v, err := line(i)
		if err == nil {
			err = enc.Encode(v)
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Replay applies the batches of a spill file (--replay) to the sink. Each
// batch is applied idempotently, so a file replayed twice, or a batch that
// was in fact stored before the spill, counts once.
func Replay(cfg config.Config, opts Options) error {
	f, err := os.Open(cfg.Replay)
	if err != nil {
		return fmt.Errorf("--replay: %w: give the path of an ingest-spill-…-batches.ndjson file", err)
	}
	defer f.Close()
	ctx := context.Background()
	s, err := sink.Open(ctx, sink.Config{Kind: cfg.Sink, DB: cfg.DB, Project: cfg.Project, Logger: opts.Log.Named("sink")})
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
