package source

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// File is --input as a source: an NDJSON or CSV file (.gz allowed, "-"
// for standard input) read row by row, each valid row one batch of one
// post. A batch is acknowledged once it is in the spool, with the
// file's position after it, so that a run killed midway resumes after the
// last row spooled: the first Read skips to the position an earlier run
// recorded (Resume), by the bytes, if the row recorded there is still the
// one read then. Rows that are not valid posts (the write API's rules and
// limits, and any row over MaxRow) are skipped, told to OnSkip, never
// returned.
type File struct {
	// Path is the file, "-" for standard input.
	Path string
	// MaxRow bounds a line or CSV record, as --max-body bounds a request.
	MaxRow int64
	// Resume is how far an earlier run on this data directory read a
	// file under this name (the spool's record), or nil. Its Source
	// keys the positions batches carry (At); "" reads without
	// positions (standard input, which cannot be resumed).
	Resume *spool.Position
	// Source is the key of this file's positions in the spool (its
	// absolute path); "" for standard input.
	Source string
	// Restart (--input-restart) reads the file from its first row even
	// where Resume says an earlier run read part of it.
	Restart bool
	// DataDir is the data directory, for messages.
	DataDir string
	// OnSkip is told of each row skipped and why; it may be nil.
	OnSkip func(err *input.RowError)
	Log    hclog.Logger

	src     atomic.Pointer[input.Reader] // replaced when a resume finds another file under the name
	resumed sync.Once
	pos     spool.Position // the position after the last row read (Read's goroutine only)
	earlier atomic.Pointer[Resumption]
	skipped atomic.Int64 // rows an earlier run read, skipped by this one
	atEnd   atomic.Bool
	closed  chan struct{}
	once    sync.Once
}

// Resumption says what became of the rows an earlier run on the data
// directory read of a file under this name.
type Resumption struct {
	// EarlierRows are the rows the earlier run read (and spooled: they
	// are counted, whatever this run does).
	EarlierRows int64
	// Resumed: this run goes on after them. Not resumed: the file is
	// another one, or Restart asked for it, and it is read from its
	// first row.
	Resumed bool
}

var _ Source = (*File)(nil)

func (*File) Name() string       { return "input" }
func (*File) AckPoint() AckPoint { return AckAccepted }
func (*File) Full() Full         { return Wait }

// Connect opens the file: a missing or unreadable one fails the run at
// once, before any child starts. The resume, which may skip gigabytes,
// waits for the first Read.
func (f *File) Connect(context.Context) error {
	if f.Log == nil {
		f.Log = hclog.NewNullLogger()
	}
	f.closed = make(chan struct{})
	r, err := input.OpenLimited(f.Path, f.MaxRow, "--max-body") // no row HTTP would refuse as too large
	if err != nil {
		return err
	}
	f.src.Store(r)
	return nil
}

// Format is the file's format (input.FormatNDJSON or input.FormatCSV).
func (f *File) Format() string { return f.src.Load().Format() }

// Progress is how far the file is read: bytes read and its size (0 when
// unknown). Safe beside Read.
func (f *File) Progress() (read, size int64) { return f.src.Load().Progress() }

// ResumedRows are the rows an earlier run read that this one skipped.
func (f *File) ResumedRows() int64 { return f.skipped.Load() }

// Earlier is what became of the rows an earlier run read, nil if none
// did. It is known once the first Read returned.
func (f *File) Earlier() *Resumption { return f.earlier.Load() }

// ReadAll reports whether Read reached the file's end.
func (f *File) ReadAll() bool { return f.atEnd.Load() }

// Read returns the next valid row as a batch of one post, with the
// file's position after it. Its Ack does nothing: the position travels
// with the post into the spool.
func (f *File) Read(ctx context.Context) (Batch, error) {
	var err error
	f.resumed.Do(func() { err = f.resume() })
	if err != nil {
		return Batch{}, err
	}
	for {
		select {
		case <-f.closed:
			return Batch{}, io.EOF
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		default:
		}
		src := f.src.Load()
		rowAt := src.Offset()
		post, err := src.Next()
		var rowErr *input.RowError
		switch {
		case errors.Is(err, io.EOF):
			f.atEnd.Store(true)
			return Batch{}, io.EOF
		case errors.As(err, &rowErr):
			f.pos.Rows++ // recorded with the next post
			if f.OnSkip != nil {
				f.OnSkip(rowErr)
			}
			continue
		case err != nil:
			return Batch{}, err
		}
		f.pos.Rows++
		f.pos.Offset, f.pos.LastAt, f.pos.Hash = src.Offset(), rowAt, RowHash(&post)
		b := Batch{Posts: []wire.Post{post}, Ack: func(error) {}}
		if f.pos.Source != "" {
			at := f.pos
			b.At = &at
		}
		return b, nil
	}
}

// Close stops reading and closes the file. Nothing waits for an ack.
func (f *File) Close(context.Context) error {
	f.once.Do(func() {
		if f.closed != nil {
			close(f.closed)
		}
	})
	return nil
}

// Release closes the file; call it once Read is no longer called.
func (f *File) Release() {
	if r := f.src.Load(); r != nil {
		r.Close()
	}
}

// RowHash identifies a row's post: the last row of a recorded position
// must hash the same when a run resumes, or the file is another one.
func RowHash(post *wire.Post) uint64 {
	h := fnv.New64a()
	h.Write([]byte(post.Publication))
	h.Write([]byte{0})
	h.Write([]byte(post.Content))
	return h.Sum64()
}

// resume goes on where an earlier run on this data directory stopped, if
// it is the same file: the rows before are skipped by their bytes,
// without decoding them, and the last of them must be the row recorded
// there. A file that ends before that position is refused (a shortened
// copy would count its rows again), unless Restart asks to read it from
// the start.
func (f *File) resume() error {
	f.pos = spool.Position{Source: f.Source}
	at := f.Resume
	if f.Source == "" || at == nil || at.Rows == 0 {
		return nil
	}
	if f.Restart {
		f.earlier.Store(&Resumption{EarlierRows: at.Rows})
		f.Log.Warn("--input-restart: reading --input from its first row; an earlier run on this data directory read part of it, and those rows are counted again",
			"input", f.Path, "rows_before", at.Rows)
		return nil
	}
	src := f.src.Load()
	if err := src.SkipTo(at.LastAt); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return f.shortened(at)
		}
		return f.restart(at, err.Error())
	}
	post, err := src.Next()
	switch {
	case errors.Is(err, io.EOF):
		return f.shortened(at)
	case err == nil && RowHash(&post) == at.Hash && src.Offset() == at.Offset:
		f.skipped.Store(at.Rows)
		f.earlier.Store(&Resumption{EarlierRows: at.Rows, Resumed: true})
		f.pos = *at
		f.Log.Info(fmt.Sprintf("resuming at row %d of %s: an earlier run on this data directory read the rows before it", at.Rows+1, f.Path),
			"input", f.Path, "rows_done", at.Rows, "skipped_bytes", at.Offset, "data_dir", f.DataDir)
		return nil
	}
	// Another row where the recorded one was: another file, unless this
	// one ends before the recorded position.
	for src.Offset() < at.Offset {
		_, err := src.Next()
		var rowErr *input.RowError
		if errors.Is(err, io.EOF) {
			return f.shortened(at)
		}
		if err != nil && !errors.As(err, &rowErr) {
			break
		}
	}
	why := fmt.Sprintf("row %d differs from the one read before", at.Rows)
	if err != nil {
		why = fmt.Sprintf("no post where row %d was (%v)", at.Rows, err)
	}
	return f.restart(at, why)
}

// shortened is the error for a file that ends before where an earlier
// run stopped reading it.
func (f *File) shortened(at *spool.Position) error {
	return fmt.Errorf("--input %s ends before byte %d, where an earlier run on --data-dir %s stopped after %d rows: it is a shortened copy of the file read then, or another file under its name. "+
		"Reading it from its start would count those rows again: to do that, add --input-restart; to go on with the file read then, put it back",
		f.Path, at.Offset, f.DataDir, at.Rows)
}

// restart reads the file from its start after all: it is not the file an
// earlier run read under that name.
func (f *File) restart(at *spool.Position, why string) error {
	f.earlier.Store(&Resumption{EarlierRows: at.Rows})
	f.Log.Warn("--input is not the file an earlier run read under this name: reading it from the start", "input", f.Path, "why", why, "rows_before", at.Rows)
	src, err := input.Open(f.Path)
	if err != nil {
		return err
	}
	old := f.src.Swap(src)
	old.Close()
	f.pos = spool.Position{Source: f.Source}
	return nil
}
