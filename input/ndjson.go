package input

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ingest-dev/ingest/wire"
)

const ndjsonNeeds = `every post needs non-empty "publication" and "content"`

// jsonField records how a field appeared in a line: absent, a string, or
// some other JSON kind, so that a row error can say which.
type jsonField struct {
	set  bool
	kind byte // first byte of the JSON value
	s    string
}

func (f *jsonField) UnmarshalJSON(b []byte) error {
	// A repeated key calls this again; the last one wins, as in
	// encoding/json.
	*f = jsonField{set: true, kind: b[0]}
	if b[0] == '"' {
		return json.Unmarshal(b, &f.s)
	}
	return nil
}

type ndjsonRow struct {
	Publication jsonField `json:"publication"`
	Content     jsonField `json:"content"`
}

func (r *Reader) nextNDJSON() (wire.Post, error) {
	for {
		line, tooLong, err := r.readLine()
		if err != nil {
			return wire.Post{}, err
		}
		r.lines++
		if tooLong {
			return wire.Post{}, &RowError{Line: r.lines, Reason: r.tooLong("line", "")}
		}
		trimmed := bytes.TrimLeft(line, " \t\r")
		if len(trimmed) == 0 {
			continue
		}
		if trimmed[0] != '{' {
			return wire.Post{}, &RowError{Line: r.lines, Reason: fmt.Sprintf(
				"not a JSON object (it starts with %q): each line must hold one JSON object", rune(trimmed[0]))}
		}
		var row ndjsonRow
		if err := json.Unmarshal(line, &row); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				return wire.Post{}, &RowError{Line: r.lines, Reason: fmt.Sprintf(
					"invalid JSON at byte %d: %v: each line must hold one JSON object", syn.Offset, syn)}
			}
			return wire.Post{}, &RowError{Line: r.lines, Reason: fmt.Sprintf(
				"invalid JSON: %v: each line must hold one JSON object", err)}
		}
		if reason := checkJSONField("publication", row.Publication); reason != "" {
			return wire.Post{}, &RowError{Line: r.lines, Reason: reason}
		}
		if reason := checkJSONField("content", row.Content); reason != "" {
			return wire.Post{}, &RowError{Line: r.lines, Reason: reason}
		}
		p := wire.Post{Publication: wire.NormalPublication(row.Publication.s), Content: row.Content.s}
		if reason := wire.CheckPost(p); reason != "" {
			return wire.Post{}, &RowError{Line: r.lines, Reason: reason}
		}
		if r.keep != "" {
			r.kept = keptField(line, r.keep)
		}
		return p, nil
	}
}

func checkJSONField(name string, f jsonField) string {
	switch {
	case !f.set:
		return fmt.Sprintf("%q is missing: %s", name, ndjsonNeeds)
	case f.kind != '"':
		return fmt.Sprintf("%q is %s, not a string: %s", name, jsonKind(f.kind), ndjsonNeeds)
	case f.s == "":
		return fmt.Sprintf("%q is empty: %s", name, ndjsonNeeds)
	}
	return ""
}

func jsonKind(first byte) string {
	switch first {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// readLine returns the next line without its '\n'; the slice is valid until
// the next call. A line longer than r.maxLine is consumed to its end but not
// kept: readLine returns tooLong and an empty line. At the end of input it
// returns io.EOF; any other error is fatal and already wrapped.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		body := chunk
		if err == nil {
			body = chunk[:len(chunk)-1]
		}
		if !tooLong {
			if len(r.buf)+len(body) > r.maxLine {
				tooLong = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, body...)
			}
		}
		switch {
		case err == nil:
			return r.buf, tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.buf) > 0 || tooLong {
				// The last line has no '\n'; report it now and io.EOF on
				// the next call.
				return r.buf, tooLong, nil
			}
			return nil, false, io.EOF
		default:
			return nil, false, r.readError(err)
		}
	}
}

// keptField is the text of line's top-level field name when it is a
// string or a number, else "".
func keptField(line []byte, name string) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(line, &fields) != nil {
		return ""
	}
	raw := bytes.TrimSpace(fields[name])
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw)
	}
	return ""
}
