package input

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ingest-dev/ingest/wire"
)

// errRecordTooLong is returned by limitReader once a CSV record has read
// past the limit; it never leaves the package.
var errRecordTooLong = errors.New("record too long")

// limitReader fails reads once more than max bytes were read since n was
// last reset, which Reader does before each record. encoding/csv has no
// limit of its own and would buffer a record without end.
type limitReader struct {
	r      io.Reader
	n, max int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, errRecordTooLong
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// startCSV reads the header and picks the columns. first is the header's
// first byte, for a hint when the input looks like a JSON array.
func (r *Reader) startCSV(first byte) error {
	r.format = FormatCSV
	r.lim = &limitReader{r: r.br, max: int64(r.maxLine)}
	c := csv.NewReader(r.lim)
	c.ReuseRecord = true
	c.FieldsPerRecord = -1 // rows are checked for the columns we need only
	c.LazyQuotes = true    // the real data has stray quotes
	r.csv = c

	header, err := c.Read()
	if err != nil {
		if errors.Is(err, errRecordTooLong) {
			return fmt.Errorf("input %s: the CSV header is longer than %s: the input must be NDJSON (one JSON object a line) or CSV with a header row",
				r.name, sizeText(r.maxLine))
		}
		return r.readError(err)
	}
	line, _ := c.FieldPos(0)
	r.lastLine = int64(line) + r.lines

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
			return wire.Post{}, fmt.Errorf("input %s: a CSV record after line %d is longer than %s: a quoted field is probably never closed; fix the quoting in the file",
				r.name, r.lastLine, sizeText(r.maxLine))
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
	return wire.Post{Publication: validUTF8(strings.Clone(pub)), Content: validUTF8(text)}, nil
}
