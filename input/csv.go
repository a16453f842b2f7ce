package input

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ingest-dev/ingest/wire"
)

// errRecordTooLong is returned by limitReader once a CSV record has read
// past the limit; it never leaves the package.
var errRecordTooLong = errors.New("record too long")

// limitReader fails reads once more than max bytes were read since n was
// last reset, which Reader does before each record. encoding/csv has no
// limit of its own and would buffer a record without end. It also follows
// the record structure of every byte it passes (scan), so that after a
// record too long the Reader can skip to the next record.
type limitReader struct {
	r      *bufio.Reader
	n, max int64
	scan   csvScan
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, errRecordTooLong
	}
	if rest := l.max - l.n + 1; int64(len(p)) > rest {
		p = p[:rest] // never more than one byte past the limit
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	l.scan.feed(p[:n], false)
	return n, err
}

// skipRecord consumes the rest of the record being read, through the
// newline that ends it (or to the end of input, for a quote never closed),
// without keeping it. eof reports that the input ended first.
func (l *limitReader) skipRecord() (eof bool, err error) {
	for {
		if _, err := l.r.Peek(1); err != nil {
			return errors.Is(err, io.EOF), err
		}
		chunk, _ := l.r.Peek(l.r.Buffered())
		if end := l.scan.feed(chunk, true); end >= 0 {
			_, err := l.r.Discard(end)
			return false, err
		}
		if _, err := l.r.Discard(len(chunk)); err != nil {
			return false, err
		}
	}
}

// csvState is where csvScan is within a record.
type csvState uint8

const (
	fieldStart   csvState = iota // at the start of a field
	unquoted                     // in a field that did not start with a quote
	quoted                       // in a quoted field
	quoteInQuote                 // a quote in a quoted field: it ends the field, or is doubled, or (LazyQuotes) literal
	quoteThenCR                  // that quote followed by '\r'
)

// csvScan follows the record structure of CSV as encoding/csv reads it
// with LazyQuotes and a comma separator: a record ends at a newline
// outside quotes; a quote opens a quoted field only at a field's start;
// inside one, a quote ends it before a comma or newline, "" is a quote,
// and any other quote is literal.
type csvScan struct {
	state csvState
	lines int64 // newlines fed, plus the lines before the CSV started
	// recordLines is lines when the current record started, so the
	// record's first line is recordLines+1.
	recordLines int64
}

// feed advances the scan over b. With stop it returns the index just past
// the first record end in b and leaves the rest unfed; otherwise, or when b
// ends no record, it returns -1.
func (s *csvScan) feed(b []byte, stop bool) int {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if s.state == quoted {
			// The common case, an article's text: jump to the next quote.
			q := bytes.IndexByte(b[i:], '"')
			if q < 0 {
				s.lines += int64(bytes.Count(b[i:], newline))
				return -1
			}
			s.lines += int64(bytes.Count(b[i:i+q], newline))
			i += q
			s.state = quoteInQuote
			continue
		}
		if c == '\n' {
			s.lines++
		}
		end := false
		switch s.state {
		case fieldStart, unquoted:
			switch {
			case c == '\n':
				end = true
			case c == ',':
				s.state = fieldStart
			case c == '"' && s.state == fieldStart:
				s.state = quoted
			default:
				s.state = unquoted
			}
		case quoteInQuote, quoteThenCR:
			switch {
			case c == '\n':
				end = true
			case c == ',' && s.state == quoteInQuote:
				s.state = fieldStart
			case c == '\r' && s.state == quoteInQuote:
				s.state = quoteThenCR
			case c == '"' && s.state == quoteInQuote:
				s.state = quoted // "" is a quote
			case c == '"':
				s.state = quoteInQuote
			default:
				s.state = quoted
			}
		}
		if end {
			s.state, s.recordLines = fieldStart, s.lines
			if stop {
				return i + 1
			}
		}
	}
	return -1
}

var newline = []byte{'\n'}

// startCSV reads the header and picks the columns. first is the header's
// first byte, for a hint when the input looks like a JSON array.
func (r *Reader) startCSV(first byte) error {
	r.format = FormatCSV
	r.lim = &limitReader{r: r.br, max: int64(r.maxLine), scan: csvScan{lines: r.lines, recordLines: r.lines}}
	r.newCSV()

	header, err := r.csv.Read()
	if err != nil {
		if errors.Is(err, errRecordTooLong) {
			return fmt.Errorf("input %s: the CSV header is longer than %s: the input must be NDJSON (one JSON object a line) or CSV with a header row",
				r.name, sizeText(r.maxLine))
		}
		return r.readError(err)
	}
	line, _ := r.csv.FieldPos(0)
	r.lastLine = int64(line) + r.lines
	r.header = slices.Clone(header)

	r.pubCol, r.textCol = -1, -1
	contentCol, articleCol := -1, -1
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(h)) {
		case "publication":
			if r.pubCol < 0 {
				r.pubCol = i
			}
		case "content":
			if contentCol < 0 {
				contentCol = i
			}
		case "article":
			if articleCol < 0 {
				articleCol = i
			}
		}
	}
	switch {
	case contentCol >= 0:
		r.textCol, r.textName = contentCol, "content"
	case articleCol >= 0:
		r.textCol, r.textName = articleCol, "article"
	}

	var missing, todo string
	switch {
	case r.pubCol < 0 && r.textCol < 0:
		missing = `no "publication" column and no "content" or "article" column`
		todo = "the input must be NDJSON (one JSON object a line, starting with '{') or CSV whose header names a publication column and a text column"
		if first == '[' {
			todo = "a JSON array is not supported: write one JSON object a line (NDJSON) instead"
		}
	case r.textCol < 0:
		missing = `no "content" or "article" column`
		todo = "the file needs a publication column and a text column"
	case r.pubCol < 0:
		missing = `no "publication" column`
		todo = "the file needs a publication column and a text column"
	default:
		return nil
	}
	return fmt.Errorf("input %s: CSV header has %s (found: %s): %s", r.name, missing, columnList(header), todo)
}

// newCSV starts an encoding/csv reader over r.lim: at the header, and
// again after a record too long, whose rest the old one had buffered.
func (r *Reader) newCSV() {
	r.csvBase = r.consumed()
	c := csv.NewReader(r.lim)
	c.ReuseRecord = true
	c.FieldsPerRecord = -1 // rows are checked for the columns we need only
	c.LazyQuotes = true    // the real data has stray quotes
	r.csv = c
}

// columnList quotes header names for an error message, shortening what
// could be a whole line of some other kind of file.
func columnList(header []string) string {
	const maxNames, maxLen = 16, 40
	var b strings.Builder
	for i, h := range header {
		if i == maxNames {
			fmt.Fprintf(&b, ", and %d more", len(header)-maxNames)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(h) > maxLen {
			h = h[:maxLen] + "..."
		}
		fmt.Fprintf(&b, "%q", h)
	}
	return b.String()
}

func (r *Reader) nextCSV() (wire.Post, error) {
	r.lim.n = 0
	rec, err := r.csv.Read()
	if err != nil {
		var parse *csv.ParseError
		switch {
		case errors.Is(err, io.EOF):
			return wire.Post{}, io.EOF
		case errors.Is(err, errRecordTooLong):
			// Skip to the record's end, as an over-long NDJSON line is
			// skipped, and go on with a fresh encoding/csv reader whose
			// line numbers start after it.
			line := r.lim.scan.recordLines + 1
			eof, err := r.lim.skipRecord()
			if err != nil && !eof {
				return wire.Post{}, r.readError(err)
			}
			r.lines = r.lim.scan.lines
			r.newCSV()
			to := fmt.Sprintf(", through line %d", r.lines)
			if eof {
				to = ", to the end of the input: a quoted field is probably never closed; fix the quoting in the file"
			}
			return wire.Post{}, &RowError{Line: line, Reason: r.tooLong("record", to)}
		case errors.As(err, &parse):
			// encoding/csv drops the rest of the bad line and goes on with
			// the next one, so the stream stays usable. With LazyQuotes and
			// FieldsPerRecord -1 it reports none today; this keeps the
			// contract if a later Go reports some.
			r.lastLine = int64(parse.StartLine) + r.lines
			return wire.Post{}, &RowError{Line: r.lastLine, Reason: fmt.Sprintf(
				"malformed CSV: %v: fix the quoting in this record", parse.Err)}
		default:
			return wire.Post{}, r.readError(err)
		}
	}
	line, _ := r.csv.FieldPos(0)
	r.lastLine = int64(line) + r.lines
	needs := fmt.Sprintf(`every post needs non-empty "publication" and %q`, r.textName)
	if len(rec) <= max(r.pubCol, r.textCol) {
		missing, col := "publication", r.pubCol
		if r.textCol > r.pubCol {
			missing, col = r.textName, r.textCol
		}
		return wire.Post{}, &RowError{Line: r.lastLine, Reason: fmt.Sprintf(
			"has %d fields, but %q is field %d: the record is cut short or its quotes are unbalanced; %s",
			len(rec), missing, col+1, needs)}
	}
	pub, text := rec[r.pubCol], rec[r.textCol]
	switch {
	case pub == "":
		return wire.Post{}, &RowError{Line: r.lastLine, Reason: fmt.Sprintf(`"publication" is empty: %s`, needs)}
	case text == "":
		return wire.Post{}, &RowError{Line: r.lastLine, Reason: fmt.Sprintf(`%q is empty: %s`, r.textName, needs)}
	}
	// A record's fields share one string; clone the short publication so
	// that a caller keeping it (say, as a map key) does not pin the
	// record. Content may pin the rest of its record, a few hundred bytes.
	p := wire.Post{Publication: wire.NormalPublication(validUTF8(strings.Clone(pub))), Content: validUTF8(text)}
	if reason := wire.CheckPost(p); reason != "" {
		return wire.Post{}, &RowError{Line: r.lastLine, Reason: reason}
	}
	if r.keepCol >= 0 && r.keep != "" {
		r.kept = ""
		if r.keepCol < len(rec) {
			r.kept = strings.Clone(rec[r.keepCol])
		}
	}
	return p, nil
}
