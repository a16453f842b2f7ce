package load

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"

	"github.com/ingest-dev/ingest/input"
)

// source is an open input: the post reader, and the bytes read from the
// file so far, for the progress bar (on the compressed bytes of a .gz, so
// the fraction is right either way).
type source struct {
	name string
	r    *input.Reader
	file *os.File // nil for stdin
	size int64    // file size in bytes; 0 when unknown
	pos  atomic.Int64
}

// openSource opens path ("-" is stdin, or the given reader) and detects its
// format by reading its start. Errors say what to check.
func openSource(path string, stdin io.Reader) (*source, error) {
	s := &source{name: path}
	if path == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		s.name = "stdin"
		r, err := input.NewReader(&countingReader{r: stdin, n: &s.pos}, s.name)
		if err != nil {
			return nil, err
		}
		s.r = r
		return s, nil
	}
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("input %w: check the path of the NDJSON or CSV file", err)
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("input %w: make the file readable by this user", err)
		}
		return nil, fmt.Errorf("input: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("input: %w", err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("input %s is a directory: give the path of an NDJSON or CSV file", path)
	}
	if fi.Mode().IsRegular() {
		s.size = fi.Size()
	}
	r, err := input.NewReader(&countingReader{r: f, n: &s.pos}, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.r, s.file = r, f
	return s, nil
}

// close releases the reader and the file. Safe to call twice.
func (s *source) close() {
	s.r.Close()
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// countingReader counts the bytes read through it; the count may be read
// concurrently.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
