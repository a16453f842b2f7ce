package input

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/wire"
)

// MaxRecordBytes is the longest NDJSON line or CSV record a Reader accepts.
// For CSV it is approximate: encoding/csv reads ahead in 4 KiB chunks. An
// article is rarely over
// a few hundred KB; the limit exists so that a file without newlines or
// with an unclosed quote cannot exhaust memory.
const MaxRecordBytes = 16 << 20

// bufSize is the read buffer on each layer (raw file and decompressed
// text); 64 KiB keeps syscalls and gzip refills few without costing much.
const bufSize = 64 << 10

// Formats reported by Reader.Format.
const (
	FormatNDJSON = "ndjson"
	FormatCSV    = "csv"
)

// RowError reports a row that is not a valid post. The Reader that returned
// it stays usable: the caller counts or logs it and calls Next again.
type RowError struct {
	// Line is the 1-based line of the row: the line itself for NDJSON,
	// the line where the record starts for CSV (a record may span lines).
	Line int64
	// Reason says what is wrong and, where useful, what a valid row needs.
	// It never quotes the row's content beyond a single character.
	Reason string
}

func (e *RowError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Reader streams posts from NDJSON or CSV input, plain or gzip. It is not
// safe for concurrent use. Its memory is bounded by a small multiple of
// MaxRecordBytes at worst (the longest row read so far, plus fixed
// buffers), whatever the input's length.
//
// The strings in a returned wire.Post do not alias buffers that the Reader
// reuses, so a caller may keep them.
type Reader struct {
	name    string
	file    *os.File     // owned; nil for stdin and for NewReader
	gz      *gzip.Reader // nil for plain input
	br      *bufio.Reader
	format  string
	maxLine int
	// limitName is the setting behind maxLine, for messages ("" for
	// none).
	limitName string
	err       error // sticky: io.EOF, a fatal error, or errClosed

	// lines counts the lines consumed before the current position: for
	// NDJSON every line read so far, for CSV only the blank lines skipped
	// before the header (encoding/csv counts the rest).
	lines int64
	buf   []byte // NDJSON line buffer, reused

	csv     *csv.Reader
	lim     *limitReader
	pubCol  int
	textCol int
	// textName is the text column's header name ("content" or "article"),
	// so that row errors speak the file's language.
	textName string
	lastLine int64 // start line of the last CSV record read, for errors
	header   []string

	// keep names a field kept from each row (Keep), keepCol its CSV
	// column; kept is the last row's value.
	keep    string
	keepCol int
	kept    string

	read *countingReader // bytes of the file read so far; nil for NewReader
	size int64           // the file's size; 0 when unknown

	// text counts the bytes of text (decompressed, for gzip) read into br,
	// for Offset; csvBase is the text offset at which the current
	// encoding/csv reader started.
	text    *countingReader
	csvBase int64
}

// countingReader counts the bytes read through it, for Progress.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Progress reports how many bytes of the file (compressed, for .gz) were
// read so far and the file's size, 0 when unknown (standard input, a pipe,
// NewReader). Reading runs ahead of the returned posts by at most a buffer.
// Unlike the other methods it is safe to call from any goroutine.
func (r *Reader) Progress() (read, size int64) {
	if r.read == nil {
		return 0, 0
	}
	return r.read.n.Load(), r.size
}

// Open opens the file at path and prepares to read posts from it; "-"
// means standard input. Compression and format are detected as described in
// the package documentation, which reads the first bytes (and, for CSV, the
// header) before Open returns. The caller must Close the Reader; Close
// closes the file but never standard input.
func Open(path string) (*Reader, error) {
	return OpenLimited(path, MaxRecordBytes, "")
}

// OpenLimited is Open for rows (NDJSON lines, CSV records) of at most
// maxRow bytes, at most MaxRecordBytes; setting names what sets the limit
// (ingest passes --max-body, so that --input takes no post the HTTP API
// would refuse as too large) for the errors of rows over it, "" for none.
// A longer row is skipped as it is read, never held whole.
func OpenLimited(path string, maxRow int64, setting string) (*Reader, error) {
	limit := int(min(max(maxRow, 1), MaxRecordBytes))
	if path == "-" {
		r, err := newReader(os.Stdin, "stdin", limit)
		if r != nil {
			r.limitName = setting
		}
		return r, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, openError(err)
	}
	var size int64
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("input: %s is a directory: give the path of an NDJSON or CSV file", path)
	} else if err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	counted := &countingReader{r: f}
	r, err := newReader(counted, path, limit)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file, r.read, r.size, r.limitName = f, counted, size, setting
	return r, nil
}

func openError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("input: %w: check the path given to --input", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("input: %w: make the file readable by this user", err)
	default:
		return fmt.Errorf("input: %w", err)
	}
}

// NewReader is Open over any reader; name identifies the input in error
// messages. It reads the first bytes of r (and, for CSV, the header) before
// returning. The Reader does not own r: Close does not close it.
func NewReader(r io.Reader, name string) (*Reader, error) {
	return newReader(r, name, MaxRecordBytes)
}

// newReader lets tests use a small line limit.
func newReader(src io.Reader, name string, maxLine int) (*Reader, error) {
	r := &Reader{name: name, maxLine: maxLine, format: FormatNDJSON}
	r.text = &countingReader{r: src}
	br := bufio.NewReaderSize(r.text, bufSize)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("input %s: read: %w", name, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("input %s: starts like gzip but its header is unreadable: %w: check the file with gzip -t", name, err)
		}
		r.gz = gz
		r.text = &countingReader{r: gz}
		br = bufio.NewReaderSize(r.text, bufSize)
	}
	r.br = br

	first, err := r.skipPreamble()
	if err != nil {
		return nil, err
	}
	switch first {
	case 0:
		r.err = io.EOF
	case '{':
	default:
		if err := r.startCSV(first); err != nil {
			return nil, err
		}
	}
	return r, nil
}

var bom = []byte{0xef, 0xbb, 0xbf}

// skipPreamble consumes a byte order mark and leading whitespace, counting
// newlines, and returns the first other byte without consuming it, or 0 if
// the input has nothing else.
func (r *Reader) skipPreamble() (byte, error) {
	if b, _ := r.br.Peek(len(bom)); bytes.Equal(b, bom) {
		r.br.Discard(len(bom))
	}
	for {
		c, err := r.br.ReadByte()
		if errors.Is(err, io.EOF) {
			return 0, nil
		}
		if err != nil {
			return 0, r.readError(err)
		}
		switch c {
		case '\n':
			r.lines++
		case ' ', '\t', '\r':
		default:
			r.br.UnreadByte()
			return c, nil
		}
	}
}

// readError wraps an error from the underlying reader, which is always
// fatal.
func (r *Reader) readError(err error) error {
	if r.gz != nil {
		return fmt.Errorf("input %s: read gzip data: %w: the file is truncated or damaged; check it with gzip -t", r.name, err)
	}
	return fmt.Errorf("input %s: read: %w", r.name, err)
}

// Next returns the next post, or io.EOF after the last one.
//
// A row that is not a valid post returns a *RowError (match it with
// errors.As); the Reader stays usable and the next call goes on with the
// following row. Any other error is fatal: the stream cannot be read
// further, and Next keeps returning that error, as it keeps returning
// io.EOF at the end.
func (r *Reader) Next() (wire.Post, error) {
	if r.err != nil {
		return wire.Post{}, r.err
	}
	var p wire.Post
	var err error
	if r.csv != nil {
		p, err = r.nextCSV()
	} else {
		p, err = r.nextNDJSON()
	}
	if err != nil {
		var rowErr *RowError
		if !errors.As(err, &rowErr) {
			r.err = err
		}
	}
	return p, err
}

// Keep asks the reader to keep one more field of each row besides the
// post: in NDJSON a top-level string or number (its text), in CSV a column
// (its header name matched as the post's columns are: trimmed, in any
// case). Kept returns it for the row Next returned last, "" where the
// row lacks it. A CSV input without such a column is an error, which
// names the columns found. Call it before the first Next.
func (r *Reader) Keep(field string) error {
	r.keep, r.keepCol = field, -1
	if r.csv == nil {
		return nil
	}
	for i, h := range r.header {
		if strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(field)) {
			r.keepCol = i
			return nil
		}
	}
	return fmt.Errorf("input %s: no column %q in the CSV header (found: %s)", r.name, field, columnList(r.header))
}

// Kept is the field Keep named, of the row Next returned last.
func (r *Reader) Kept() string { return r.kept }

// Offset is where the next row starts in the input's text (decompressed,
// for gzip), in bytes: past the header and every row Next returned. Give
// it to SkipTo of a Reader over the same input to go on from there.
func (r *Reader) Offset() int64 {
	if r.csv != nil {
		return r.csvBase + r.csv.InputOffset()
	}
	return r.consumed()
}

// consumed is the text taken out of br, encoding/csv's read-ahead
// included.
func (r *Reader) consumed() int64 { return r.text.n.Load() - int64(r.br.Buffered()) }

// SkipTo goes on from offset, an Offset that a Reader over the same input
// returned: the next row is the one that started there. The bytes in
// between are not parsed, only counted for line numbers, so skipping
// gigabytes takes the time to read (and decompress) them, not to decode
// their rows. It fails if offset is behind the position, past the end of
// the input, or (CSV read ahead past it) not where a row starts.
func (r *Reader) SkipTo(offset int64) error {
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		return r.err
	}
	cur := r.consumed()
	if r.csv != nil && offset < cur {
		// encoding/csv buffered past offset: read the rows up to it.
		for r.Offset() < offset {
			_, err := r.Next()
			var rowErr *RowError
			if err != nil && !errors.As(err, &rowErr) {
				return fmt.Errorf("input %s: skip to byte %d: %w", r.name, offset, err)
			}
		}
		if r.Offset() != offset {
			return fmt.Errorf("input %s: no row starts at byte %d", r.name, offset)
		}
		return nil
	}
	if offset < cur {
		return fmt.Errorf("input %s: cannot skip back to byte %d from %d", r.name, offset, cur)
	}
	lines, err := r.discard(offset - cur)
	if err != nil {
		return err
	}
	if r.csv != nil {
		r.lines = r.lim.scan.lines + lines
		r.lim.scan = csvScan{lines: r.lines, recordLines: r.lines}
		r.lim.n = 0
		r.newCSV()
	} else {
		r.lines += lines
	}
	return nil
}

// discard drops n bytes of text, counting their newlines.
func (r *Reader) discard(n int64) (lines int64, err error) {
	for n > 0 {
		chunk, err := r.br.Peek(int(min(n, int64(r.br.Size()))))
		lines += int64(bytes.Count(chunk, newline))
		r.br.Discard(len(chunk))
		n -= int64(len(chunk))
		if err != nil && n > 0 {
			if errors.Is(err, io.EOF) {
				return lines, fmt.Errorf("input %s: ends %d bytes before the offset to skip to: %w", r.name, n, io.ErrUnexpectedEOF)
			}
			return lines, r.readError(err)
		}
	}
	return lines, nil
}

// Format reports the detected format: FormatNDJSON or FormatCSV. Empty
// input reports FormatNDJSON.
func (r *Reader) Format() string { return r.format }

// Close releases the Reader and closes the file that Open opened (never
// standard input, nor the reader given to NewReader). It may be called more
// than once; later calls return nil. Next after Close returns an error.
func (r *Reader) Close() error {
	if errors.Is(r.err, errClosed) {
		return nil
	}
	r.err = fmt.Errorf("input %s: %w", r.name, errClosed)
	if r.gz != nil {
		// The error would repeat one Next already returned, or be a
		// checksum not reached because the caller stopped early.
		_ = r.gz.Close()
	}
	if r.file != nil {
		if err := r.file.Close(); err != nil {
			return fmt.Errorf("input: close %s: %w", r.name, err)
		}
	}
	return nil
}

var errClosed = errors.New("Next called after Close")

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, the same repair encoding/json makes, so that both
// formats yield the same strings for the same bytes.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return string(out)
}

// tooLong is the reason of a row over the limit: what the limit is and
// what it means.
func (r *Reader) tooLong(what, skipped string) string {
	if r.limitName != "" {
		return fmt.Sprintf("%s longer than %s (%s): the HTTP API refuses such a post too (413); the %s was skipped%s",
			what, sizeText(r.maxLine), r.limitName, what, skipped)
	}
	return fmt.Sprintf("%s longer than %s: no post may be that long; the %s was skipped%s", what, sizeText(r.maxLine), what, skipped)
}

// sizeText renders a byte limit for messages ("16 MiB").
func sizeText(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
