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

// spilledBatch is one line of a batches spill file.
type spilledBatch struct {
	ID           string               `json:"id"`
	Part         int                  `json:"part"`
	Parts        int                  `json:"parts"`
	Posts        int                  `json:"posts"`
	Publications []spilledPublication `json:"publications"`
	Dead         []spilledDead        `json:"dead,omitempty"`
}

type spilledPublication struct {
	Key      string          `json:"key"`
	Name     string          `json:"name"`
	Articles int64           `json:"articles"`
	Entities []spilledEntity `json:"entities"`
}

type spilledEntity struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

type spilledDead struct {
	Publication string `json:"publication"`
	Content     string `json:"content"`
	Error       string `json:"error"`
	Attempts    int    `json:"attempts"`
}

type spilledPost struct {
	Publication string `json:"publication"`
	Content     string `json:"content"`
}

func toSpilled(b *wire.Batch) spilledBatch {
	s := spilledBatch{ID: b.ID, Part: b.Part, Parts: b.Parts, Posts: b.Posts}
	for _, p := range b.Publications {
		sp := spilledPublication{Key: p.Key, Name: p.Name, Articles: p.Articles}
		for _, e := range p.Entities {
			sp.Entities = append(sp.Entities, spilledEntity{e.Word, e.Count})
		}
		s.Publications = append(s.Publications, sp)
	}
	for _, d := range b.Dead {
		s.Dead = append(s.Dead, spilledDead{d.Publication, d.Content, d.Error, d.Attempts})
	}
	return s
}

func (s *spilledBatch) batch() *wire.Batch {
	b := &wire.Batch{ID: s.ID, Part: s.Part, Parts: s.Parts, Posts: s.Posts}
	for _, p := range s.Publications {
		pc := wire.PubCount{Key: p.Key, Name: p.Name, Articles: p.Articles}
		for _, e := range p.Entities {
			pc.Entities = append(pc.Entities, wire.EntityCount{Word: e.Word, Count: e.Count})
		}
		b.Publications = append(b.Publications, pc)
	}
	for _, d := range s.Dead {
		b.Dead = append(b.Dead, wire.DeadLetter{Publication: d.Publication, Content: d.Content, Error: d.Error, Attempts: d.Attempts})
	}
	return b
}

// spill writes whatever is left in the queues after the run ended. It
// returns the files written ("" if nothing was left).
func (r *run) spill() (string, error) {
	batches := r.batches.Drain()
	posts := r.posts.Drain()
	if len(batches) == 0 && len(posts) == 0 {
		return "", nil
	}
	dir := r.cfg.SpillDirectory()
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var written []string
	if len(batches) > 0 {
		path := filepath.Join(dir, "ingest-spill-"+stamp+"-batches.ndjson")
		err := writeLines(path, len(batches), func(i int) (any, error) {
			var b wire.Batch
			if err := wire.Unmarshal(batches[i].raw[5:], &b); err != nil {
				return nil, err
			}
			return toSpilled(&b), nil
		})
		if err != nil {
			return "", fmt.Errorf("spill %d unstored batches to %s: %w", len(batches), path, err)
		}
		r.log.Error("batches not stored were written to a spill file; apply them with `ingest --replay FILE`",
			"file", path, "batches", len(batches))
		written = append(written, path)
	}
	if len(posts) > 0 {
		path := filepath.Join(dir, "ingest-spill-"+stamp+"-posts.ndjson")
		err := writeLines(path, len(posts), func(i int) (any, error) {
			return spilledPost{posts[i].Publication, posts[i].Content}, nil
		})
		if err != nil {
			return "", fmt.Errorf("spill %d unprocessed posts to %s: %w", len(posts), path, err)
		}
		r.log.Error("accepted posts not processed were written to a spill file; ingest them with `ingest --input FILE`",
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
		var sb spilledBatch
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
		dup, err := s.Apply(ctx, sb.batch())
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
